"""The chaos run's inputs, generated deterministically, each with its expected outcome.

What every input should become is known from how it was generated (a valid JSON array,
a file cut in the middle, a rotated JPEG, ...), not read back from the pipeline. Records
and pictures come from the generators of ``scripts/make_samples.py`` (made-up names, no
real person), at a smaller size so the run is quick.

Besides the bulk, a few inputs aim at the promises of issue 10 (:func:`add_issue_10_mix`):
keys sent in several versions back to back (the newest decides the receipt), names that
collide unless derived names are injective (case, extension, a key whose names are
hashed and the short key spelling that hash), poison data files, and keys the chaos
harness deletes from RAW at a chosen step of their transform (:data:`DELETE_STEPS`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

from sluice.keys import (
    DATA_PREFIX,
    ERRORS_PREFIX,
    HASHED_SEGMENT,
    MAX_KEY_BYTES,
    archive_key_for,
    derived_key,
    split_extension,
    thumbnail_key,
)
from sluice.labelers import pixel_labels, select_labels

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261122


def _make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sluice_make_samples", ROOT / "scripts" / "make_samples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


samples = _make_samples()


@dataclass(frozen=True)
class Input:
    key: str
    data: bytes
    status: str
    """Expected receipt status: processed or rejected."""
    kind: str
    """Expected receipt kind: data, image or unsupported."""
    reason: str | None = None
    """Expected error code of a rejection."""
    invalid_records: int = 0
    """Expected invalid records of a processed data file (an errors report iff > 0)."""

    def archive_key(self) -> str:
        return archive_key_for(self.kind, self.status, self.key)

    def output_keys(self, thumbnail_sizes: tuple[int, ...], thumbnail_ext: str) -> set[str]:
        """The PROCESSED keys other than the receipt that this input must have."""
        if self.status != "processed":
            return set()
        if self.kind == "image":
            return {thumbnail_key(self.key, size, thumbnail_ext) for size in thumbnail_sizes}
        keys = {derived_key(DATA_PREFIX, self.key)}
        if self.invalid_records:
            keys.add(derived_key(ERRORS_PREFIX, self.key, ".jsonl"))
        return keys

    def labels(self, min_confidence: float, max_labels: int) -> list[str]:
        """The offline labeler's labels for these bytes (the same pure function as tag's)."""
        if self.status != "processed" or self.kind != "image":
            return []
        return [
            label.name
            for label in select_labels(pixel_labels(self.data), min_confidence, max_labels)
        ]


DELETE_STEPS = {
    "before-read": False,
    "after-read": False,
    "after-receipt": False,
}
"""When the chaos harness deletes a key from RAW (tests/chaos/faults.py, ``DeletePlan``),
and whether the key still ends with its receipt: *before-read*, as the transform first
looks at it (its event was queued); *after-read*, once the transform has the bytes and
is making outputs; *after-receipt*, once the receipt is written and the archive handler
is yet to move it. Each leaves nothing but one ``deleted`` record: after the receipt the
archive handler removes what the version owns (decision 30)."""


@dataclass
class Corpus:
    inputs: dict[str, Input] = field(default_factory=dict)
    """The newest version of every key that must end with a receipt."""
    versions: dict[str, list[Input]] = field(default_factory=dict)
    """Keys sent more than once: every version in the order sent (the last is newest)."""
    bursts: set[str] = field(default_factory=set)
    """Keys of ``versions`` whose versions are sent back to back (the others apart)."""
    deletes: dict[str, str] = field(default_factory=dict)
    """Keys the harness deletes from RAW, and at which of :data:`DELETE_STEPS`."""
    gone: dict[str, Input] = field(default_factory=dict)
    """What was sent for the deleted keys that must end with no receipt at all."""

    def add(self, item: Input) -> None:
        assert item.key not in self.inputs, f"duplicate key {item.key!r}"
        self.inputs[item.key] = item

    def add_versions(self, *items: Input, burst: bool) -> None:
        """One key sent once per item, in this order: the last one must win."""
        assert len({item.key for item in items}) == 1 and len(items) > 1
        self.add(items[-1])
        self.versions[items[-1].key] = list(items)
        if burst:
            self.bursts.add(items[-1].key)

    def add_deleted(self, item: Input, step: str) -> None:
        keeps_receipt = DELETE_STEPS[step]
        if keeps_receipt:
            self.add(item)
        else:
            assert item.key not in self.inputs, f"duplicate key {item.key!r}"
            self.gone[item.key] = item
        self.deletes[item.key] = step

    @property
    def superseded(self) -> dict[str, list[Input]]:
        """Every version sent before the newest one of its key."""
        return {key: versions[:-1] for key, versions in self.versions.items()}

    def uploads(self) -> int:
        return len(self.inputs) + len(self.gone) + sum(len(v) - 1 for v in self.versions.values())

    def label_counts(self, min_confidence: float, max_labels: int) -> Counter[str]:
        return Counter(
            label
            for item in self.inputs.values()
            for label in set(item.labels(min_confidence, max_labels))
        )


# --- generators ----------------------------------------------------------------------------

# Keys S3 allows that are easy to get wrong: spaces, '+', unicode, '=' and '&', dots.
_ODD_NAMES = ("scan +1", "día ñ", "a=b&c", "x..y", "名前", "tab\tname", "100%", "(1)")


def _name(rng: random.Random, number: int) -> str:
    if rng.random() < 0.2:
        return f"{rng.choice(_ODD_NAMES)} {number:04d}"
    return f"file-{number:04d}"


def _records(rng: random.Random, count: int, start: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [samples.retina_record(rng, start + n) for n in range(count)]
    return records


_VIOLATIONS: tuple[Callable[[dict[str, Any]], None], ...] = (
    lambda r: r.update(patient_id=""),
    lambda r: r.update(diagnosis=None),
    lambda r: r.update(optic_disc_cup_ratio=1.3),
    lambda r: r.pop("scan_date"),
    lambda r: r.update(retina_thickness_microns="275"),
)


def _spoil(rng: random.Random, records: list[dict[str, Any]]) -> int:
    """Make some records violate the schema; how many."""
    spoilt = rng.sample(range(len(records)), k=rng.randint(1, max(1, len(records) // 2)))
    for index in spoilt:
        rng.choice(_VIOLATIONS)(records[index])
    return len(spoilt)


def _image(rng: random.Random, fmt: str, orientation: int = 1) -> bytes:
    kind = rng.choice(("sunset", "ocean", "forest", "night", "desert", "rose"))
    side = rng.randint(80, 256)
    size = (side, rng.randint(64, side)) if rng.random() < 0.5 else (rng.randint(64, side), side)
    image = samples.scene(kind, rng, size)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        stored = samples._STORE_FOR_ORIENTATION[orientation]
        if stored is not None:
            image = image.transpose(stored)
        exif = samples.exif_bytes(orientation, "2024:06:21 20:41:07", "Fujifilm", "X-T4")
        image.save(buffer, "JPEG", quality=75, exif=exif)
    elif fmt == "PNG-alpha":
        image = image.convert("RGBA")
        image.putalpha(Image.new("L", image.size, rng.randint(120, 255)))
        image.save(buffer, "PNG")
    elif fmt == "GIF":
        image.quantize(colors=32).save(buffer, "GIF")
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


_IMAGE_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "PNG-alpha": ".png", "WEBP": ".webp"}
_IMAGE_EXTENSIONS["GIF"] = ".gif"


def _data_file(rng: random.Random, number: int, *, lines: bool, spoil: bool) -> Input:
    records = _records(rng, rng.randint(2, 8), number * 10)
    invalid = _spoil(rng, records) if spoil else 0
    data = samples.json_lines(records) if lines else samples.json_array(records)
    key = f"retina/{_name(rng, number)}{'.jsonl' if lines else '.json'}"
    return Input(key, data, "processed", "data", invalid_records=invalid)


def build(total: int = 520, seed: int = SEED) -> Corpus:
    """``total`` inputs (and a few keys uploaded twice), the same for the same seed."""
    rng = random.Random(seed)
    corpus = Corpus()
    # (share of the total, maker); the makers draw from the one generator in order.
    plan: list[tuple[float, Callable[[int], Input]]] = [
        (0.25, lambda n: _data_file(rng, n, lines=False, spoil=False)),
        (0.10, lambda n: _data_file(rng, n, lines=True, spoil=False)),
        (0.08, lambda n: _data_file(rng, n, lines=rng.random() < 0.5, spoil=True)),
        (0.05, lambda n: _malformed(rng, n)),
        (0.03, lambda n: _not_utf8(rng, n)),
        (0.03, lambda n: _wrong_shape(rng, n)),
        (0.03, lambda n: _no_dataset(rng, n)),
        (0.25, lambda n: _good_image(rng, n)),
        (0.04, lambda n: _corrupt_image(rng, n)),
        (0.04, lambda n: _unsupported(rng, n)),
    ]
    number = 0
    for share, make in plan:
        for _ in range(round(share * total)):
            number += 1
            corpus.add(make(number))
    while len(corpus.inputs) < total:
        number += 1
        corpus.add(_empty(rng, number))
    # Keys uploaded twice, far apart, with different content of the same kind and status;
    # the pipeline must end with the second.
    candidates = sorted(key for key, item in corpus.inputs.items() if item.status == "processed")
    for key in rng.sample(candidates, k=12):
        first = corpus.inputs.pop(key)
        if first.kind == "image":
            data = _image(rng, _format_of(key))
        else:
            records = _records(rng, rng.randint(2, 8), 90000 + len(corpus.versions) * 10)
            lines = split_extension(key)[1] != ".json"
            data = samples.json_lines(records) if lines else samples.json_array(records)
        corpus.add_versions(first, Input(key, data, "processed", first.kind), burst=False)
    add_issue_10_mix(corpus, rng)
    return corpus


# --- issue 10: versions, collisions, poison, deletes -------------------------------------------


def add_issue_10_mix(corpus: Corpus, rng: random.Random) -> None:
    """A few small inputs for each promise of issue 10 (module docstring)."""

    def data(key: str, count: int, *, spoil: bool = False) -> Input:
        records = _records(rng, count, 95000 + rng.randint(0, 999) * 10)
        invalid = _spoil(rng, records) if spoil else 0
        lines = split_extension(key)[1] != ".json"
        body = samples.json_lines(records) if lines else samples.json_array(records)
        return Input(key, body, "processed", "data", invalid_records=invalid)

    def image(key: str) -> Input:
        return Input(key, _image(rng, _format_of(key)), "processed", "image")

    def corrupt(key: str) -> Input:
        return Input(key, rng.randbytes(300), "rejected", "image", "content_mismatch")

    # Several versions of one key sent back to back, while two transform workers run:
    # the newest decides, whatever its status, and every older one is accounted for.
    scans, flip, back, lines = (
        "retina/burst/scans.json",
        "photos/burst/flip.jpg",
        "photos/burst/back.png",
        "retina/burst/lines.jsonl",
    )
    malformed = Input(scans, b'[{"patient_id": ', "rejected", "data", "malformed_json")
    corpus.add_versions(
        data(scans, 4), malformed, data(scans, 5, spoil=True), data(scans, 3), burst=True
    )
    corpus.add_versions(image(flip), image(flip), corrupt(flip), burst=True)
    corpus.add_versions(corrupt(back), image(back), burst=True)
    corpus.add_versions(data(lines, 2), data(lines, 3), data(lines, 2, spoil=True), burst=True)

    # Names that collide unless every derived name keeps the whole key: case, extension,
    # and the hashed namespace (a key too long for its derived names, then the short key
    # spelling the hashed name it gets; S3 keys stop at 1,024 bytes, so the long key is
    # 1,019 bytes and only its derived names pass the limit).
    for key in ("photos/collide/a.JPG", "photos/collide/a.jpg"):
        corpus.add(image(key))
    for key in ("photos/collide/x.png", "photos/collide/x.jpg"):
        corpus.add(image(key))
    corpus.add(corrupt("photos/collide/x.gif"))
    long_other = "other/collide/" + "y" * (1019 - len("other/collide/"))
    long_photo = "photos/collide/" + "z" * (1019 - len("photos/collide/.jpg")) + ".jpg"
    assert len(long_other.encode()) == len(long_photo.encode()) == 1019 <= MAX_KEY_BYTES
    corpus.add(Input(long_other, b"notes\n", "rejected", "unsupported", "unsupported_type"))
    corpus.add(image(long_photo))
    for long_key in (long_other, long_photo):
        lookalike = HASHED_SEGMENT + hashlib.sha256(long_key.encode()).hexdigest()
        corpus.add(Input(lookalike, b"short\n", "rejected", "unsupported", "unsupported_type"))

    # Poison data files (each small): number tokens past the parser's limits, lone
    # surrogates in both formats, and an amplifier (six errors per record, bounded).
    record = json.dumps(_records(rng, 1, 97000)[0]).encode()
    huge = b"5" + b"0" * 4999
    for key, body, status, reason, invalid in (
        (
            "retina/poison/5000-digits.json",
            b"[" + record[:-1] + b', "n": ' + huge + b"}]",
            "rejected",
            "number_too_long",
            0,
        ),
        (
            "retina/poison/100000-digits.json",
            b"[" + b"7" * 100_000 + b"]",
            "rejected",
            "number_too_long",
            0,
        ),
        (
            "retina/poison/surrogate.jsonl",
            record + b'\n{"\\ud800": 1}\n',
            "processed",
            "lone_surrogate",
            1,
        ),
        (
            "retina/poison/surrogate.json",
            b"[" + record + b', {"patient_name": "\\udc00"}]',
            "rejected",
            "lone_surrogate",
            0,
        ),
        (
            "retina/poison/amplifier.jsonl",
            b"{}\n" * AMPLIFIER_RECORDS,
            "processed",
            "schema_violation",
            AMPLIFIER_RECORDS,
        ),
    ):
        corpus.add(Input(key, body, status, "data", reason, invalid_records=invalid))

    # Deleted from RAW by the harness at each step of DELETE_STEPS, an image and a data
    # file each.
    for step in DELETE_STEPS:
        corpus.add_deleted(image(f"photos/deleted/{step}.jpg"), step)
        corpus.add_deleted(data(f"retina/deleted/{step}.jsonl", 3), step)


AMPLIFIER_RECORDS = 1700
"""``{}`` records of the amplifier: more errors than a receipt lists, and than a report
holds in full (records.DEFAULT_MAX_REPORT_ERRORS), in 5 KB."""


def _format_of(key: str) -> str:
    extension = split_extension(key)[1]
    return {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF"}[extension]


def _malformed(rng: random.Random, number: int) -> Input:
    text = samples.json_array(_records(rng, 4, number * 10))
    cut = text[: rng.randint(5, len(text) - 5)]
    return Input(f"retina/{_name(rng, number)}.json", cut, "rejected", "data", "malformed_json")


def _not_utf8(rng: random.Random, number: int) -> Input:
    records = _records(rng, 3, number * 10)
    records[0]["patient_name"] = "Renée Dalo"
    data = samples.json_array(records).decode().encode("latin-1")
    return Input(f"retina/{_name(rng, number)}.json", data, "rejected", "data", "not_utf8")


def _wrong_shape(rng: random.Random, number: int) -> Input:
    data = json.dumps({"records": _records(rng, 2, number * 10)}).encode()
    return Input(f"retina/{_name(rng, number)}.json", data, "rejected", "data", "wrong_shape")


def _no_dataset(rng: random.Random, number: int) -> Input:
    data = samples.json_array(_records(rng, 2, number * 10))
    return Input(f"misc/{_name(rng, number)}.json", data, "rejected", "data", "unknown_dataset")


def _good_image(rng: random.Random, number: int) -> Input:
    fmt = rng.choice(("JPEG", "JPEG", "JPEG", "PNG", "PNG-alpha", "WEBP", "GIF"))
    orientation = rng.choice((1, 3, 6, 8)) if fmt == "JPEG" else 1
    data = _image(rng, fmt, orientation)
    extension = _IMAGE_EXTENSIONS[fmt]
    if fmt == "JPEG" and rng.random() < 0.2:
        extension = ".JPG"
    key = f"photos/{_name(rng, number)}{extension}"
    return Input(key, data, "processed", "image")


def _corrupt_image(rng: random.Random, number: int) -> Input:
    whole = _image(rng, "JPEG")
    if rng.random() < 0.5:
        # Not a JPEG at all, whatever its name says.
        data, reason = rng.randbytes(rng.randint(50, 500)), "content_mismatch"
    else:
        data, reason = whole[: len(whole) * 3 // 4], "truncated_image"
    return Input(f"photos/{_name(rng, number)}.jpg", data, "rejected", "image", reason)


def _unsupported(rng: random.Random, number: int) -> Input:
    extension = rng.choice((".txt", ".csv", ".pdf", ""))
    data = f"notes {number}\n".encode()
    key = f"other/{_name(rng, number)}{extension}"
    return Input(key, data, "rejected", "unsupported", "unsupported_type")


def _empty(rng: random.Random, number: int) -> Input:
    choice = rng.choice(("retina/{}.json", "photos/{}.png", "other/{}.bin"))
    key = choice.format(_name(rng, number))
    if key.startswith("retina/"):
        return Input(key, b"", "rejected", "data", "empty_file")
    if key.startswith("photos/"):
        return Input(key, b"", "rejected", "image", "empty_file")
    return Input(key, b"", "rejected", "unsupported", "unsupported_type")
