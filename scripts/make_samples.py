#!/usr/bin/env python3
"""Generate the sample inputs in ``samples/`` (deterministic; the output is committed).

    python scripts/make_samples.py [--out samples]

* ``retina/``: retina-scan data files for the ``retina`` dataset: valid (JSON array and
  JSON Lines), partly invalid (one of each kind of schema violation, plus a line that is
  not JSON in the JSON Lines file), malformed JSON, and a file that is not UTF-8.
  Patient names are made up from syllables; no real person is named.
* ``photos/``: small generated photos with different dominant colours and shapes (so a
  content-based labeler tells them apart): JPEGs with EXIF orientation 3/6/8 and
  DateTimeOriginal/Make/Model, an upper-case ``.JPG``, a PNG with alpha, a palette PNG, a
  WebP and a CMYK JPEG. Each oriented JPEG is stored rotated, so it only looks upright
  when its orientation tag is applied (an arrow points up).
* ``other/``: a file of an unsupported type.
* ``ikerian_sample.json`` (at the top): a user's own retina file exactly as the usual
  raw -> processed tutorial has it (other identifiers, free-text diagnosis), which lands at
  the bucket root, where the default configuration's root dataset (retina) takes it.

Upload them with ``aws s3 cp --recursive samples/ s3://<raw bucket>/`` (the ``retina/``
prefix selects the dataset; a file at the root goes to the root dataset).
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SEED = 20241122
DIAGNOSES = (
    "normal",
    "normal",
    "normal",
    "glaucoma_suspect",
    "glaucoma",
    "diabetic_retinopathy",
    "macular_degeneration",
    "retinal_detachment",
)
SYLLABLES = ("ka", "lo", "mi", "ren", "ta", "vos", "el", "da", "ri", "sun", "be", "no", "zar", "ul")

ORIENTATION_TAG = 0x0112
EXIF_IFD = 0x8769
DATETIME_ORIGINAL_TAG = 0x9003
MAKE_TAG = 0x010F
MODEL_TAG = 0x0110


def fake_name(rng: random.Random) -> str:
    def word(parts: int) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()

    return f"{word(rng.randint(2, 3))} {word(rng.randint(2, 4))}"


def retina_record(rng: random.Random, number: int) -> dict[str, Any]:
    diagnosis = rng.choice(DIAGNOSES)
    thickness = (
        rng.uniform(240, 320) if diagnosis != "macular_degeneration" else rng.uniform(320, 480)
    )
    cup = rng.uniform(0.2, 0.5) if "glaucoma" not in diagnosis else rng.uniform(0.55, 0.9)
    return {
        "patient_id": f"P{number:06d}",
        "patient_name": fake_name(rng),
        "scan_date": (date(2024, 1, 2) + timedelta(days=rng.randint(0, 360))).isoformat(),
        "retina_thickness_microns": round(thickness, 1),
        "optic_disc_cup_ratio": round(cup, 2),
        "diagnosis": diagnosis,
    }


def json_array(records: list[Any]) -> bytes:
    lines = ",\n".join("  " + json.dumps(record, ensure_ascii=False) for record in records)
    return f"[\n{lines}\n]\n".encode()


def json_lines(records: list[Any]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()


def make_retina(out: Path, rng: random.Random) -> None:
    folder = out / "retina"
    folder.mkdir(parents=True, exist_ok=True)
    valid = [retina_record(rng, 100 + n) for n in range(50)]
    (folder / "scans-2024-q1.json").write_bytes(json_array(valid))
    (folder / "scans-2024-q2.jsonl").write_bytes(
        json_lines([retina_record(rng, 200 + n) for n in range(40)])
    )

    partly = [retina_record(rng, 300 + n) for n in range(30)]
    partly[2]["patient_id"] = "   "  # pattern: blank
    partly[5]["patient_name"] = ""  # minLength
    partly[8]["scan_date"] = "2024-02-30"  # format: no such date
    partly[11]["retina_thickness_microns"] = 1912.4  # maximum
    partly[14]["optic_disc_cup_ratio"] = 1.3  # maximum
    partly[17]["diagnosis"] = ["cataract"]  # type
    del partly[20]["scan_date"]  # required
    partly[23]["referring_doctor"] = "Dr Talo"  # additionalProperties
    partly[26]["retina_thickness_microns"] = "275"  # type
    partly[28]["optic_disc_cup_ratio"] = -0.1  # minimum
    (folder / "scans-partly-invalid.json").write_bytes(json_array(partly))

    mixed = json_lines([retina_record(rng, 400 + n) for n in range(12)]).splitlines(keepends=True)
    mixed[4] = b'{"patient_id": "P000404", "patient_name": "Kalo Ren"\n'  # not JSON
    mixed[9] = json.dumps({**retina_record(rng, 409), "diagnosis": None}).encode() + b"\n"
    (folder / "scans-mixed.ndjson").write_bytes(b"".join(mixed))

    malformed = json_array([retina_record(rng, 500 + n) for n in range(8)])
    cut = malformed.index(b"},\n", len(malformed) // 2)
    (folder / "scans-malformed.json").write_bytes(malformed[:cut] + b"\n" + malformed[cut + 3 :])

    latin = [retina_record(rng, 600 + n) for n in range(5)]
    latin[3]["patient_name"] = "Renée Dalo"
    (folder / "scans-latin1.json").write_bytes(json_array(latin).decode().encode("latin-1"))


# --- photos -----------------------------------------------------------------------------------


def scene(kind: str, rng: random.Random, size: tuple[int, int] = (640, 480)) -> Image.Image:
    width, height = size
    palettes = {
        "sunset": ((255, 140, 40), (120, 30, 90)),
        "ocean": ((20, 90, 200), (200, 230, 255)),
        "forest": ((20, 110, 40), (150, 200, 90)),
        "night": ((10, 10, 40), (60, 60, 120)),
        "desert": ((230, 200, 120), (180, 120, 60)),
        "rose": ((230, 60, 110), (250, 200, 220)),
    }
    top, bottom = palettes[kind]
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / (height - 1)
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randint(10, 60)
        shade = tuple(min(255, c + rng.randint(-40, 60)) for c in bottom)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=shade)
    # An arrow pointing up, so a wrongly oriented thumbnail is obvious.
    draw.polygon([(width // 2, 40), (width // 2 - 50, 130), (width // 2 + 50, 130)], fill="white")
    draw.rectangle((width // 2 - 15, 130, width // 2 + 15, 230), fill="white")
    return image


# The stored pixels for each orientation, so that applying the tag makes the image upright.
_STORE_FOR_ORIENTATION = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def exif_bytes(orientation: int, taken: str, make: str, model: str) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[MAKE_TAG] = make
    exif[MODEL_TAG] = model
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL_TAG] = taken
    return exif.tobytes()


def make_photos(out: Path, rng: random.Random) -> None:
    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    oriented = [
        ("sunset-beach.jpg", "sunset", 1, "2024:06:21 20:41:07", "Fujifilm", "X-T4"),
        ("ocean-rotated-6.jpg", "ocean", 6, "2024:07:02 11:15:30", "Canon", "Canon EOS R6"),
        ("forest-upside-down-3.jpg", "forest", 3, "2024:09:14 08:02:55", "NIKON", "Z 6II"),
        ("night-rotated-8.jpg", "night", 8, "2024:12:31 23:59:01", "Apple", "iPhone 13"),
        ("IMG_0042.JPG", "desert", 1, "2025:03:08 13:20:00", "Sony", "ILCE-7M3"),
    ]
    for name, kind, orientation, taken, make, model in oriented:
        image = scene(kind, rng)
        stored = _STORE_FOR_ORIENTATION[orientation]
        if stored is not None:
            image = image.transpose(stored)
        image.save(
            folder / name, "JPEG", quality=80, exif=exif_bytes(orientation, taken, make, model)
        )

    logo = scene("rose", rng, (320, 320)).convert("RGBA")
    mask = Image.new("L", logo.size, 0)
    ImageDraw.Draw(mask).ellipse((10, 10, 310, 310), fill=255)
    logo.putalpha(mask)
    logo.save(folder / "rose-logo-alpha.png", "PNG", optimize=True)

    scene("forest", rng, (320, 240)).quantize(colors=16).save(
        folder / "forest-palette.png", "PNG", optimize=True
    )
    scene("ocean", rng).save(folder / "ocean-waves.webp", "WEBP", quality=70)
    scene("sunset", rng).convert("CMYK").save(folder / "sunset-print-cmyk.jpg", "JPEG", quality=80)


# Byte for byte the tutorial's file: its layout is part of what must work.
IKERIAN_SAMPLE = """\
[{"patient_id": "A12345", "patient_name": "Ikerian A", "scan_date": "2025-01-01",
  "retina_thickness_microns": 275, "optic_disc_cup_ratio": 0.4, "diagnosis": "normal"},
 {"patient_id": "B67890", "patient_name": "Ikerian B", "scan_date": "2025-02-15",
  "retina_thickness_microns": 305, "optic_disc_cup_ratio": 0.6, "diagnosis": "suspected glaucoma"}]
"""


def make_ikerian(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ikerian_sample.json").write_text(IKERIAN_SAMPLE, encoding="utf-8")


def make_other(out: Path) -> None:
    folder = out / "other"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clinic-notes.txt").write_text(
        "Plain text is not a supported input type; sluice rejects it with unsupported_type.\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "samples"
    )
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    make_retina(args.out, rng)
    make_photos(args.out, rng)
    make_other(args.out)
    make_ikerian(args.out)
    total = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"wrote samples to {args.out} ({total} bytes)")


if __name__ == "__main__":
    main()
