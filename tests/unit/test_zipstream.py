"""Streaming zip helpers, written through a non-seekable sink like MultipartWriter."""

from __future__ import annotations

import io
import struct
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.zipstream import (
    EntryNames,
    add_stream,
    compress_type_for,
    safe_entry_name,
    zip_date_time,
)

DATA_DESCRIPTOR_FLAG = 0x08
ZIP64_EXTRA_ID = 0x0001
ZIP64_END_SIGNATURE = b"PK\x06\x06"


class NonSeekableSink(io.RawIOBase):
    """Keeps what is written, but like an S3 upload it can neither seek nor read back."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return len(self.data)

    def write(self, data: Any) -> int:
        self.data += data
        return len(data)


class HeadAndTailSink(io.RawIOBase):
    """Counts bytes and keeps only the start and the end, for archives too big to keep."""

    def __init__(self) -> None:
        self.size = 0
        self.head = bytearray()
        self.tail = bytearray()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if len(self.head) < 4096:
            self.head += chunk[: 4096 - len(self.head)]
        self.tail = (self.tail + chunk)[-4096:]
        self.size += len(chunk)
        return len(chunk)


class Zeros:
    """A source of ``size`` zero bytes that allocates one chunk, however large ``size`` is."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = bytes(1024 * 1024)

    def read(self, size: int = -1) -> bytes:
        count = min(size, self.left, len(self.block))
        self.left -= count
        return self.block if count == len(self.block) else self.block[:count]


def write_archive(entries: list[tuple[str, bytes]]) -> bytes:
    sink = NonSeekableSink()
    with zipfile.ZipFile(sink, "w") as archive:
        for name, body in entries:
            add_stream(archive, name, io.BytesIO(body), len(body), chunk_size=1000)
    return bytes(sink.data)


@pytest.mark.parametrize(
    "name", ["a.jpg", "b.JPEG", "c.png", "d.webp", "e.gif", "f.heic", "g.avif", "h.zip", "i.gz"]
)
def test_already_compressed_formats_are_stored(name: str) -> None:
    assert compress_type_for(name) == zipfile.ZIP_STORED


@pytest.mark.parametrize("name", ["manifest.json", "notes.txt", "data.csv", "raw.tiff", "noext"])
def test_other_files_are_deflated(name: str) -> None:
    assert compress_type_for(name) == zipfile.ZIP_DEFLATED


def test_zip_date_time_is_clamped_to_what_zip_can_hold() -> None:
    assert zip_date_time(None) == (1980, 1, 1, 0, 0, 0)
    assert zip_date_time(datetime(1970, 1, 1, tzinfo=UTC)) == (1980, 1, 1, 0, 0, 0)
    assert zip_date_time(datetime(2026, 11, 22, 9, 15, 2, tzinfo=UTC)) == (2026, 11, 22, 9, 15, 2)
    assert zip_date_time(datetime(2200, 1, 1, tzinfo=UTC)) == (2107, 12, 31, 23, 59, 58)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("dogs/rex.jpg", "dogs/rex.jpg"),
        ("/etc/passwd", "etc/passwd"),
        ("../../outside.jpg", "outside.jpg"),
        ("a/./b//c/../d.jpg", "a/b/c/d.jpg"),
        ("a\\..\\b.jpg", "a/b.jpg"),
        ("my photo +1 été.jpg", "my photo +1 été.jpg"),
    ],
)
def test_safe_entry_name_never_escapes(path: str, expected: str) -> None:
    assert safe_entry_name(path) == expected


@pytest.mark.parametrize("path", ["", "/", "..", "./..//."])
def test_safe_entry_name_with_nothing_left_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="no usable entry name"):
        safe_entry_name(path)


def test_entry_names_are_unique_case_insensitively() -> None:
    names = EntryNames(reserved=["manifest.json"])

    claimed = [names.claim(n) for n in ["a.jpg", "a.jpg", "A.JPG", "b", "b", "Manifest.JSON"]]

    assert claimed == ["a.jpg", "a~2.jpg", "A~3.JPG", "b", "b~2", "Manifest~2.JSON"]


def test_streamed_archive_holds_exact_bytes_with_the_right_compression() -> None:
    jpeg = bytes(range(256)) * 50
    manifest = b'{"images": []}' * 100

    raw = write_archive([("images/a.jpg", jpeg), ("manifest.json", manifest)])

    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert archive.testzip() is None  # every CRC checks out
        assert archive.namelist() == ["images/a.jpg", "manifest.json"]
        assert archive.read("images/a.jpg") == jpeg
        assert archive.read("manifest.json") == manifest
        image, text = archive.infolist()
        assert image.compress_type == zipfile.ZIP_STORED
        assert image.compress_size == len(jpeg)
        assert text.compress_type == zipfile.ZIP_DEFLATED
        assert text.compress_size < len(manifest)
        # Non-seekable output: sizes follow the data in a data descriptor.
        assert image.flag_bits & DATA_DESCRIPTOR_FLAG
        assert (image.external_attr >> 16) == 0o644


def test_zero_byte_entry() -> None:
    raw = write_archive([("images/empty.jpg", b"")])

    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert archive.read("images/empty.jpg") == b""


def test_source_shorter_than_declared_is_an_error() -> None:
    with (
        zipfile.ZipFile(NonSeekableSink(), "w") as archive,
        pytest.raises(ValueError, match="ended after 3 of 10"),
    ):
        add_stream(archive, "a.jpg", io.BytesIO(b"abc"), 10)


def test_source_longer_than_declared_is_an_error() -> None:
    with (
        zipfile.ZipFile(NonSeekableSink(), "w") as archive,
        pytest.raises(ValueError, match="longer than"),
    ):
        add_stream(archive, "a.jpg", io.BytesIO(b"abcdef"), 3, chunk_size=2)


def test_large_entry_gets_zip64_headers_on_a_non_seekable_stream() -> None:
    # Just past zipfile's zip64 threshold, streamed as zeros into a sink that keeps only
    # the first and last bytes: the point is the headers, not the payload.
    size = zipfile.ZIP64_LIMIT + 10
    sink = HeadAndTailSink()

    with zipfile.ZipFile(sink, "w") as archive:
        add_stream(archive, "big.jpg", Zeros(size), size)

    assert sink.size > size
    name_length, extra_length = struct.unpack("<HH", sink.head[26:30])
    extra = sink.head[30 + name_length : 30 + name_length + extra_length]
    assert struct.unpack("<H", extra[:2])[0] == ZIP64_EXTRA_ID
    assert ZIP64_END_SIGNATURE in sink.tail
