#!/usr/bin/env python3
"""Generate the bad-input corpus in ``tests/corpus/files/`` (deterministic; output committed).

    python scripts/make_corpus.py [--out tests/corpus/files] [--check]

Every corpus file is built here, byte by byte, so each case says how it was made: JSON
data files that are malformed, truncated, not UTF-8, the wrong shape, too deep, full of
huge numbers or of schema violations; images that are truncated, corrupt, decompression
bombs (small files whose headers *declare* huge dimensions), CMYK, 16-bit or animated;
and files whose name says one type while the bytes are another.
``tests/corpus/manifest.json`` says under which RAW key each file is uploaded and what
receipt it must produce; ``tests/integration/test_corpus.py`` checks exactly that.

Files larger than ``COMMIT_LIMIT_BYTES`` (a record over the 1 MiB record cap, a number of
100,000 digits) are not written: the test builds them in memory with :func:`build`.
``--check`` exits non-zero when a committed file differs from what this script makes.

The patient names are made up; none names a real person.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COMMIT_LIMIT_BYTES = 64 * 1024
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "files"

Builder = Callable[[], bytes]
BUILDERS: dict[str, Builder] = {}


def case(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        if name in BUILDERS:
            raise ValueError(f"duplicate corpus file {name}")
        BUILDERS[name] = builder
        return builder

    return register


def build(name: str) -> bytes:
    return BUILDERS[name]()


# --- JSON records --------------------------------------------------------------------------


def record(number: int, **changes: Any) -> dict[str, Any]:
    """A valid retina record (made-up patient); ``changes`` replace or (None) drop fields."""
    names = ("Corpa Velanthe", "Osric Mendalor", "Tiveli Arnsworth", "Quenby Halvardo")
    base: dict[str, Any] = {
        "patient_id": f"P9{number:05d}",
        "patient_name": names[number % len(names)],
        "scan_date": "2024-05-17",
        "retina_thickness_microns": 271.5,
        "optic_disc_cup_ratio": 0.42,
        "diagnosis": "normal",
    }
    for field, value in changes.items():
        if value is _DROP:
            base.pop(field)
        else:
            base[field] = value
    return base


_DROP = object()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def array(*records: Any) -> bytes:
    return ("[\n" + ",\n".join(dumps(r) for r in records) + "\n]\n").encode("utf-8")


def lines(*records: Any) -> bytes:
    return "".join(dumps(r) + "\n" for r in records).encode("utf-8")


def valid_array(count: int = 3) -> bytes:
    return array(*(record(n) for n in range(count)))


# Malformed: the error follows a record that holds a patient name, so a parser message that
# quoted its context would put the name in the receipt and the logs.


@case("malformed-trailing-comma.json")
def _trailing_comma() -> bytes:
    return valid_array(2).replace(b"\n]\n", b",\n]\n")


@case("malformed-missing-colon.json")
def _missing_colon() -> bytes:
    return valid_array(2).replace(b'"diagnosis": "normal"}\n]', b'"diagnosis" "normal"}\n]')


@case("malformed-single-quotes.json")
def _single_quotes() -> bytes:
    return b"[\n" + dumps(record(0)).replace('"', "'").encode("utf-8") + b"\n]\n"


@case("malformed-unquoted-key.json")
def _unquoted_key() -> bytes:
    return valid_array(1).replace(b'"scan_date"', b"scan_date")


@case("malformed-comment.json")
def _comment() -> bytes:
    return b"// exported from the clinic system\n" + valid_array(1)


@case("malformed-nan.json")
def _nan() -> bytes:
    return valid_array(1).replace(b"271.5", b"NaN")


@case("malformed-two-values.json")
def _two_values() -> bytes:
    return valid_array(1) + valid_array(1)


@case("malformed-whitespace-only.json")
def _whitespace_only() -> bytes:
    return b" \n\t\r\n  \n"


@case("truncated-mid-record.json")
def _truncated_mid_record() -> bytes:
    data = valid_array(3)
    return data[: data.index(b"2024-05-17", len(data) // 2) + 4]


@case("truncated-after-open-bracket.json")
def _truncated_open_bracket() -> bytes:
    return b"[\n"


@case("truncated-last-line.jsonl")
def _truncated_last_line() -> bytes:
    data = lines(record(0), record(1), record(2))
    return data[: len(data) - 20]


@case("bom-utf8.json")
def _bom_utf8() -> bytes:
    return b"\xef\xbb\xbf" + valid_array(2)


@case("bom-utf8.jsonl")
def _bom_utf8_lines() -> bytes:
    return b"\xef\xbb\xbf" + lines(record(0), record(1))


@case("bom-utf16le.json")
def _bom_utf16() -> bytes:
    return b"\xff\xfe" + valid_array(1).decode("utf-8").encode("utf-16-le")


@case("not-utf8-latin1.json")
def _latin1() -> bytes:
    return (
        array(record(0), record(1, patient_name="Zoë Émondeville"))
        .decode("utf-8")
        .encode("latin-1")
    )


@case("not-utf8-latin1.jsonl")
def _latin1_lines() -> bytes:
    text = lines(record(0), record(1, patient_name="Renée Faucheterre")).decode("utf-8")
    return text.encode("latin-1")


@case("not-utf8-overlong.json")
def _overlong() -> bytes:
    # 0xC0 0xAF is an overlong "/", the classic UTF-8 validator bypass.
    return valid_array(1).replace(b"2024-05-17", b"2024\xc0\xaf05-17")


@case("not-utf8-cut-character.json")
def _cut_character() -> bytes:
    # An upload cut off inside a 2-byte character of a name: the file ends mid-sequence.
    data = array(record(0), record(1, patient_name="Ana Søndergaard"))
    return data[: data.index("ø".encode()) + 1]


@case("wrong-shape-object.json")
def _object() -> bytes:
    return (dumps(record(0)) + "\n").encode("utf-8")


@case("wrong-shape-string.json")
def _string() -> bytes:
    return b'"retina scans"\n'


@case("wrong-shape-number.json")
def _number() -> bytes:
    return b"42\n"


@case("wrong-shape-null.json")
def _null() -> bytes:
    return b"null\n"


@case("wrong-shape-records-not-objects.json")
def _records_not_objects() -> bytes:
    return b'[1, "P900000", null, true, [], {}]\n'


@case("too-deep-array.json")
def _too_deep_array() -> bytes:
    nested: Any = "bottom"
    for _ in range(40):
        nested = [nested]
    return array(record(0), record(1, diagnosis=nested))


@case("too-deep-bracket-bomb.json")
def _bracket_bomb() -> bytes:
    # 50,000 opening brackets: a naive recursive builder or a path-tracking parser explodes.
    return b"[" * 50_000


@case("too-deep-line.jsonl")
def _too_deep_line() -> bytes:
    nested: Any = {}
    for _ in range(40):
        nested = {"x": nested}
    return lines(record(0), record(1, diagnosis=nested), record(2))


@case("too-deep-line-recursion.jsonl")
def _too_deep_line_recursion() -> bytes:
    # Deep enough to hit Python's recursion limit inside json.loads.
    return lines(record(0)) + b"[" * 20_000 + b"]" * 20_000 + b"\n" + lines(record(2))


@case("huge-numbers.json")
def _huge_numbers() -> bytes:
    return (
        "[\n"
        + ",\n".join(
            [
                dumps(record(0)).replace("271.5", "1e400"),
                dumps(record(1)).replace("0.42", "-1e400"),
                dumps(record(2)).replace("271.5", "1" + "0" * 400),
                dumps(record(3)).replace("0.42", "0." + "0" * 400 + "1"),
            ]
        )
        + "\n]\n"
    ).encode("utf-8")


@case("huge-numbers.jsonl")
def _huge_numbers_lines() -> bytes:
    return (
        dumps(record(0)).replace("271.5", "1e400")
        + "\n"
        + dumps(record(1)).replace("271.5", "Infinity")
        + "\n"
        + dumps(record(2))
        + "\n"
    ).encode("utf-8")


@case("schema-violations.json")
def _schema_violations() -> bytes:
    """One record per kind of violation, after one valid record (index 0)."""
    return array(
        record(0),
        record(1, patient_name=_DROP),  # 1 required
        record(2, referring_doctor="Dr Ilse Vantongeren"),  # 2 additionalProperties
        record(3, retina_thickness_microns="271.5"),  # 3 type
        record(4, patient_id=""),  # 4 minLength (no id format is assumed, but one is needed)
        record(5, scan_date="2024-13-45"),  # 5 format
        record(6, diagnosis=42),  # 6 type (free text, but text)
        record(7, retina_thickness_microns=0),  # 7 exclusiveMinimum
        record(8, optic_disc_cup_ratio=1.01),  # 8 maximum
        record(9, patient_name=""),  # 9 minLength
        record(10, patient_name="Ulvar " + "Brennik" * 30),  # 10 maxLength
        record(11, patient_name="   "),  # 11 pattern (\S)
        record(12, scan_date=None),  # 12 type (null)
        record(13, patient_name=_DROP, scan_date=_DROP),  # 13 two required
    )


@case("schema-duplicate-key.json")
def _duplicate_key() -> bytes:
    # The last of two equal keys wins (as in every mainstream parser): 12 is not a string.
    text = dumps(record(0)).replace(
        '"patient_id": "P900000"', '"patient_id": "P900000", "patient_id": 12'
    )
    return f"[\n{text}\n]\n".encode()


@case("empty-array.json")
def _empty_array() -> bytes:
    return b"[]\n"


@case("valid.json")
def _valid() -> bytes:
    return valid_array(2)


@case("valid.jsonl")
def _valid_lines() -> bytes:
    return lines(record(0), record(1))


@case("zero-bytes")
def _zero() -> bytes:
    return b""


@case("notes.txt")
def _text() -> bytes:
    return b"Call back Corpa Velanthe about the scan.\n"


@case("archive.zip")
def _zip() -> bytes:
    return b"PK\x05\x06" + b"\x00" * 18  # an empty zip archive


# Records bigger than the 1 MiB record cap (plus the one 64 KiB read the reader may run
# past it before checking): built in memory by the test, not committed.
RECORD_OVER_CAP = 1024 * 1024 + 128 * 1024


@case("record-too-large.json")
def _record_too_large() -> bytes:
    return array(record(0), record(1, notes="n" * RECORD_OVER_CAP))


@case("record-too-large.jsonl")
def _line_too_large() -> bytes:
    return lines(record(0), record(1, notes="n" * RECORD_OVER_CAP), record(2))


# --- poison tokens (GitHub issue 10) ---------------------------------------------------------
# ijson's C parser converts numbers itself: an integer over 4300 digits crashed the worker
# (5,000 digits raised, 100,000 segfaulted it); an exponent over 18 digits raised. A lone
# surrogate escape was rewritten as "?" in an array and crashed the JSON Lines report.


def _with_raw(number: int, field: str, raw: str) -> str:
    """A record whose ``field`` holds ``raw`` JSON text, unparsed."""
    return dumps(record(number, **{field: "@RAW@"})).replace('"@RAW@"', raw)


@case("number-too-long.json")
def _number_too_long() -> bytes:
    raw = "7" * 5_000
    body = ",\n".join([dumps(record(0)), _with_raw(1, "retina_thickness_microns", raw)])
    return f"[\n{body}\n]\n".encode()


@case("number-too-long-segfault.json")
def _number_too_long_segfault() -> bytes:
    body = ",\n".join([dumps(record(0)), _with_raw(1, "retina_thickness_microns", "7" * 100_000)])
    return f"[\n{body}\n]\n".encode()


@case("number-too-long.jsonl")
def _number_too_long_lines() -> bytes:
    return (
        dumps(record(0))
        + "\n"
        + _with_raw(1, "retina_thickness_microns", "7" * 5_000)
        + "\n"
        + _with_raw(2, "optic_disc_cup_ratio", "4e" + "1" * 19)
        + "\n"
        + dumps(record(3))
        + "\n"
    ).encode()


@case("number-exponent-too-long.json")
def _exponent_too_long() -> bytes:
    body = ",\n".join([dumps(record(0)), _with_raw(1, "optic_disc_cup_ratio", "4e" + "1" * 19)])
    return f"[\n{body}\n]\n".encode()


@case("lone-surrogate.json")
def _lone_surrogate() -> bytes:
    body = ",\n".join([dumps(record(0)), _with_raw(1, "patient_name", '"Corpa \\ud800"')])
    return f"[\n{body}\n]\n".encode()


@case("lone-surrogate-key.json")
def _lone_surrogate_key() -> bytes:
    return b'[\n{"\\udc00": 1}\n]\n'


@case("lone-surrogate.jsonl")
def _lone_surrogate_lines() -> bytes:
    return (
        dumps(record(0))
        + "\n"
        + '{"\\ud800": 1}\n'
        + _with_raw(2, "patient_name", '"Osric \\udbff\\u0041"')
        + "\n"
        + dumps(record(3))
        + "\n"
    ).encode()


@case("property-name-too-long.json")
def _property_name_too_long() -> bytes:
    return array(record(0), {**record(1), "k" * 2_000: 1})


@case("property-name-too-long.jsonl")
def _property_name_too_long_lines() -> bytes:
    return lines(record(0), {**record(1), "k" * 2_000: 1}, record(2))


# --- images ----------------------------------------------------------------------------------


def picture(size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 90, 160))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse(
        (width // 8, height // 8, width - width // 8, height - height // 8), fill=(240, 180, 40)
    )
    draw.rectangle((0, height - height // 5, width, height), fill=(20, 120, 40))
    return image


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def png_declaring(
    width: int, height: int, idat: bytes, *, depth: int = 8, colour: int = 2
) -> bytes:
    """A PNG whose header says ``width`` x ``height`` whatever ``idat`` holds."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG with the frame header's dimensions rewritten."""
    data = bytearray(encode(picture((16, 16)), "JPEG", quality=50))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@case("photo.jpg")
def _photo_jpeg() -> bytes:
    return encode(picture(), "JPEG", quality=80)


@case("photo.png")
def _photo_png() -> bytes:
    return encode(picture(), "PNG")


@case("truncated.jpg")
def _truncated_jpeg() -> bytes:
    data = _photo_jpeg()
    return data[: len(data) // 2]


@case("truncated.png")
def _truncated_png() -> bytes:
    data = _photo_png()
    return data[: len(data) // 2]


@case("truncated.gif")
def _truncated_gif() -> bytes:
    data = encode(picture(), "GIF")
    return data[: len(data) - 40]


@case("truncated.tif")
def _truncated_tiff() -> bytes:
    data = encode(picture((32, 24)), "TIFF")
    return data[: len(data) // 2]


@case("truncated-header.png")
def _truncated_png_header() -> bytes:
    return _photo_png()[:20]


@case("truncated.webp")
def _truncated_webp() -> bytes:
    data = encode(picture(), "WEBP", quality=70)
    return data[: len(data) // 2]


@case("corrupt-huffman.jpg")
def _corrupt_jpeg() -> bytes:
    data = bytearray(_photo_jpeg())
    table = data.index(b"\xff\xc4")
    data[table + 4 : table + 30] = b"\xff" * 26
    return bytes(data)


@case("corrupt-lzw.gif")
def _corrupt_gif() -> bytes:
    data = bytearray(encode(picture(), "GIF"))
    data[len(data) - 30 : len(data) - 2] = b"\xff" * 28
    return bytes(data)


@case("corrupt-idat.png")
def _corrupt_png() -> bytes:
    # A well-formed PNG whose pixel stream is not zlib data (checksums all correct).
    return png_declaring(16, 16, b"\x78\x9c" + b"\xff" * 30)


@case("corrupt-zero-width.png")
def _zero_width_png() -> bytes:
    return png_declaring(0, 16, zlib.compress(b"\x00" * 16))


@case("bomb-gigapixel.png")
def _bomb_png() -> bytes:
    # 100,000 x 100,000 pixels declared; the compressed data would be ~30 MB of zeros.
    return png_declaring(100_000, 100_000, zlib.compress(b"\x00" * 1024))


@case("bomb-over-limit.png")
def _bomb_png_over_limit() -> bytes:
    # 80 MP: under Pillow's own warning threshold, above sluice's MAX_IMAGE_PIXELS (64 MP).
    return png_declaring(10_000, 8_000, zlib.compress(b"\x00" * 1024))


@case("bomb-max-dimensions.jpg")
def _bomb_jpeg() -> bytes:
    return jpeg_declaring(65_500, 65_500)


@case("bomb-max-dimensions.gif")
def _bomb_gif() -> bytes:
    data = bytearray(encode(picture((16, 16)), "GIF"))
    data[6:10] = struct.pack("<HH", 65_535, 65_535)  # logical screen
    image_descriptor = data.index(b"\x2c", 13)
    data[image_descriptor + 5 : image_descriptor + 9] = struct.pack("<HH", 65_535, 65_535)
    return bytes(data)


@case("cmyk.jpg")
def _cmyk_jpeg() -> bytes:
    return encode(picture().convert("CMYK"), "JPEG", quality=80)


@case("grey-16bit.png")
def _grey16_png() -> bytes:
    ramp = Image.linear_gradient("L").resize((64, 48)).convert("I").point(lambda v: v * 257)
    return encode(ramp.convert("I;16"), "PNG")


@case("grey-16bit.tif")
def _grey16_tiff() -> bytes:
    ramp = Image.linear_gradient("L").resize((32, 24)).convert("I").point(lambda v: v * 257)
    return encode(ramp.convert("I;16"), "TIFF", compression="tiff_deflate")


def _frames(count: int) -> list[Image.Image]:
    return [picture((40, 30)).rotate(90 * index) for index in range(count)]


@case("animated.gif")
def _animated_gif() -> bytes:
    first, *rest = _frames(3)
    return encode(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


@case("animated.png")
def _animated_png() -> bytes:
    first, *rest = _frames(3)
    return encode(first, "PNG", save_all=True, append_images=rest, duration=100)


@case("animated.webp")
def _animated_webp() -> bytes:
    first, *rest = _frames(3)
    return encode(first, "WEBP", save_all=True, append_images=rest, duration=100, quality=60)


# --- writing ---------------------------------------------------------------------------------


def committed_names() -> list[str]:
    return sorted(name for name in BUILDERS if len(build(name)) <= COMMIT_LIMIT_BYTES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    names = committed_names()
    if args.check:
        stale = [
            n
            for n in names
            if not (args.out / n).is_file() or (args.out / n).read_bytes() != build(n)
        ]
        extra = sorted(p.name for p in args.out.iterdir() if p.name not in names)
        for name in stale:
            print(f"out of date: {name}", file=sys.stderr)
        for name in extra:
            print(f"not made by this script: {name}", file=sys.stderr)
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        (args.out / name).write_bytes(build(name))
    total = sum(len(build(name)) for name in names)
    print(f"wrote {len(names)} corpus files to {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
