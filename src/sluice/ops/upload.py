"""``sluice upload``: send a folder to RAW, one object per file, with progress."""

from __future__ import annotations

import mimetypes
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from sluice.keys import MAX_KEY_BYTES
from sluice.units import MIB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# Multipart above 64 MiB, in 16 MiB parts sent 4 at a time: few requests for typical
# files, and a lost connection costs one part, not the whole object.
TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=64 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4
)
REDRAW_SECONDS = 0.1


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str
    size: int


def normalize_prefix(prefix: str) -> str:
    """``batch-7`` and ``batch-7/`` both put files under ``batch-7/``."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def files_to_upload(folder: Path, prefix: str = "") -> list[LocalFile]:
    """Every regular file under ``folder``, keyed by its path relative to it, in key order."""
    prefix = normalize_prefix(prefix)
    found = []
    # followlinks=False: a link back up the tree must not make the walk endless.
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            if not path.is_file():
                continue
            relative = path.relative_to(folder).as_posix()
            found.append(LocalFile(path, prefix + relative, path.stat().st_size))
    return sorted(found, key=lambda item: item.key)


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Bytes and files done out of total, on one redrawn line on a terminal.

    Elsewhere (a pipe, a CI log) it writes one line per finished file instead, so logs
    carry no carriage returns. boto3 reports bytes from its worker threads, hence the lock.
    """

    def __init__(
        self,
        total_files: int,
        total_bytes: int,
        stream: TextIO | None = None,
        *,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.files_done = 0
        self.bytes_done = 0
        self._clock = clock
        self._last_draw = float("-inf")
        self._lock = threading.Lock()

    def line(self) -> str:
        percent = 100 * self.bytes_done / self.total_bytes if self.total_bytes else 100.0
        return (
            f"{self.files_done}/{self.total_files} files,"
            f" {human_bytes(self.bytes_done)}/{human_bytes(self.total_bytes)} ({percent:.0f}%)"
        )

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count
            if self.interactive and self._clock() - self._last_draw >= REDRAW_SECONDS:
                self._draw()

    def file_done(self, key: str, error: str | None = None) -> None:
        with self._lock:
            self.files_done += 1
            if self.interactive:
                if error:
                    self.stream.write(f"\r\x1b[Kfailed: {key}: {error}\n")
                self._draw()
            else:
                outcome = f"failed: {error}" if error else "ok"
                self.stream.write(f"[{self.line()}] {key}: {outcome}\n")
                self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            with self._lock:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()

    def _draw(self) -> None:
        self.stream.write(f"\r\x1b[K{self.line()}")
        self.stream.flush()
        self._last_draw = self._clock()


@dataclass
class UploadReport:
    bucket: str
    uploaded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(key, reason)"""
    bytes_sent: int = 0


def upload_folder(
    s3: S3Client,
    bucket: str,
    files: list[LocalFile],
    progress: Progress | None = None,
) -> UploadReport:
    """Upload ``files``; a failed file is recorded and the rest still go.

    Connection and credential errors are not per-file failures: they propagate.
    """
    report = UploadReport(bucket)
    for item in files:
        error = None
        if len(item.key.encode("utf-8")) > MAX_KEY_BYTES:
            error = f"key is longer than S3's {MAX_KEY_BYTES} bytes"
        else:
            content_type = mimetypes.guess_type(item.path.name)[0] or "application/octet-stream"
            try:
                s3.upload_file(
                    str(item.path),
                    bucket,
                    item.key,
                    ExtraArgs={"ContentType": content_type},
                    Callback=progress.add_bytes if progress else None,
                    Config=TRANSFER_CONFIG,
                )
            except (S3UploadFailedError, ClientError, OSError) as exc:
                error = str(exc)
        if error:
            report.failed.append((item.key, error))
        else:
            report.uploaded.append(item.key)
            report.bytes_sent += item.size
        if progress:
            progress.file_done(item.key, error)
    if progress:
        progress.finish()
    return report
