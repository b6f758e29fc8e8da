"""Key layout shared by every handler (see docs/contracts.md)."""

from __future__ import annotations

import hashlib
import posixpath

MAX_KEY_BYTES = 1024

RECEIPTS_PREFIX = "receipts/"
DATA_PREFIX = "data/"
ERRORS_PREFIX = "errors/"
THUMBNAILS_PREFIX = "thumbnails/"
ARCHIVE_IMAGES_PREFIX = "images/"
ARCHIVE_DATA_PREFIX = "data/"
ARCHIVE_REJECTED_PREFIX = "rejected/"
REQUESTS_PREFIX = "requests/"
BUNDLES_PREFIX = "bundles/"
UPLOADS_SEGMENT = "uploads/"
"""RAW keys the API hands out: ``[<dataset prefix>]uploads/<user>/<date>/<uuid>-<name>``."""


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derived_key(prefix: str, raw_key: str, suffix: str = "") -> str:
    """Return ``prefix + raw_key + suffix``, or a hashed form when that exceeds S3's limit.

    S3 keys are at most 1024 bytes of UTF-8, and a raw key may already be that long; the
    hashed form stays unique and the receipt always records the original key.
    """
    key = f"{prefix}{raw_key}{suffix}"
    if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
        return key
    return f"{prefix}_long/{_sha256_hex(raw_key)}{suffix}"


def receipt_key(raw_key: str) -> str:
    return derived_key(RECEIPTS_PREFIX, raw_key, ".json")


def split_extension(key: str) -> tuple[str, str]:
    """Split ``a/b.c.JPG`` into (``a/b.c``, ``.jpg``); the extension is lower-cased."""
    stem, ext = posixpath.splitext(key)
    return stem, ext.lower()


def image_id(archive_key: str) -> str:
    """Stable image identifier derived from the archive key (transform and tag agree on it)."""
    return _sha256_hex(archive_key)[:32]


def archive_key_for(kind: str, status: str, raw_key: str) -> str:
    """Where the archive handler puts a raw object: by kind, rejected inputs apart."""
    if status == "rejected":
        return derived_key(ARCHIVE_REJECTED_PREFIX, raw_key)
    if kind == "image":
        return derived_key(ARCHIVE_IMAGES_PREFIX, raw_key)
    return derived_key(ARCHIVE_DATA_PREFIX, raw_key)
