"""Helpers to write a zip archive as a stream, with memory bounded by one chunk.

The standard library's :class:`zipfile.ZipFile` does the format work. Given a
non-seekable file object (such as :class:`sluice.s3io.MultipartWriter`) it writes each
entry's sizes and CRC in a data descriptor after the data instead of seeking back, and it
switches to zip64 by itself for entries, offsets past 4 GiB and more than 65,535 entries,
provided it knows an entry's size up front: :func:`add_stream` sets it from the source's
length so large entries get zip64 headers. What grows with the number of entries is only
the central directory ``ZipFile`` keeps for the end of the archive (a few hundred bytes per
entry), never the entries' contents.

Already-compressed formats (JPEG, PNG, WebP, ...) are stored: deflating them costs CPU and
saves nothing. Everything else, e.g. the JSON manifest, is deflated.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Protocol

from sluice.units import MIB

CHUNK_SIZE = MIB

STORED_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
        ".gif",
        ".heic",
        ".heif",
        ".avif",
        ".jxl",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".zst",
        ".7z",
        ".mp4",
        ".mov",
        ".mp3",
    }
)

_ZIP_MIN_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MAX_DATE_TIME = (2107, 12, 31, 23, 59, 58)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def compress_type_for(name: str) -> int:
    """``ZIP_STORED`` for already-compressed formats, ``ZIP_DEFLATED`` for the rest."""
    extension = posixpath.splitext(name)[1].lower()
    return zipfile.ZIP_STORED if extension in STORED_EXTENSIONS else zipfile.ZIP_DEFLATED


def zip_date_time(when: datetime | None) -> tuple[int, int, int, int, int, int]:
    """A zip timestamp (local-header format, 1980..2107) for ``when``; 1980 if unknown."""
    if when is None:
        return _ZIP_MIN_DATE_TIME
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    return max(_ZIP_MIN_DATE_TIME, min(stamp, _ZIP_MAX_DATE_TIME))


def safe_entry_name(path: str) -> str:
    """A relative entry name that cannot escape the extraction directory.

    Drops empty, ``.`` and ``..`` segments (so no absolute paths and no traversal) and
    turns backslashes into slashes, which Windows tools would treat as separators anyway.
    Raises ``ValueError`` when nothing is left.
    """
    segments = [
        segment for segment in path.replace("\\", "/").split("/") if segment not in ("", ".", "..")
    ]
    if not segments:
        raise ValueError(f"no usable entry name in {path!r}")
    return "/".join(segments)


class EntryNames:
    """Hands out unique entry names; a clash gets ``~2``, ``~3`` ... before its extension.

    Names are compared case-insensitively: on macOS and Windows ``A.jpg`` and ``a.jpg``
    would overwrite each other when the archive is extracted.
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._taken = {name.casefold() for name in reserved}

    def claim(self, name: str) -> str:
        candidate = name
        stem, extension = posixpath.splitext(name)
        counter = 1
        while candidate.casefold() in self._taken:
            counter += 1
            candidate = f"{stem}~{counter}{extension}"
        self._taken.add(candidate.casefold())
        return candidate


def add_stream(
    archive: zipfile.ZipFile,
    name: str,
    source: Readable,
    size: int,
    *,
    date_time: tuple[int, int, int, int, int, int] = _ZIP_MIN_DATE_TIME,
    compress_type: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Copy ``size`` bytes from ``source`` into a new entry, one chunk at a time.

    ``size`` must be the source's exact length (e.g. ``ContentLength``): it decides
    whether the entry needs zip64 headers, which cannot be added after the fact on a
    non-seekable stream. A source that yields a different number of bytes raises
    ``ValueError``; the caller then abandons the whole archive.
    """
    if size < 0:
        raise ValueError(f"{name}: size must not be negative")
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = compress_type_for(name) if compress_type is None else compress_type
    info.file_size = size  # read by ZipFile to choose zip64 before the header is written
    info.external_attr = 0o644 << 16  # rw-r--r-- for unzip on Unix
    copied = 0
    entry: IO[bytes]
    with archive.open(info, "w") as entry:
        while True:
            chunk = source.read(chunk_size)
            if not chunk:
                break
            copied += len(chunk)
            if copied > size:
                raise ValueError(f"{name}: source is longer than its declared {size} bytes")
            entry.write(chunk)
    if copied != size:
        raise ValueError(f"{name}: source ended after {copied} of {size} bytes")
    return copied
