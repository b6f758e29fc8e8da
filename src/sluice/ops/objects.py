"""Listing and reading the objects the ledger is made of."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.events import normalize_etag
from sluice.keys import RECEIPTS_PREFIX, VERSIONS_PREFIX
from sluice.receipts import STATUSES, VERSION_STATUSES
from sluice.s3io import get

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

READ_WORKERS = 16
"""Receipts are small: reading them is latency-bound, so read several at a time."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str | None
    size: int


def list_objects(s3: S3Client, bucket: str, prefix: str = "") -> Iterator[StoredObject]:
    """Current objects under ``prefix`` (delete markers and old versions are not listed)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield StoredObject(
                key=item["Key"], etag=normalize_etag(item.get("ETag")), size=item.get("Size", 0)
            )


@dataclass(frozen=True)
class ReceiptRead:
    """One object under ``receipts/``: its parsed body, or why it could not be read."""

    key: str
    body: dict[str, Any] | None
    problem: str | None = None


RECEIPT_STATUSES: tuple[str, ...] = STATUSES


def _read_receipt(
    s3: S3Client, bucket: str, key: str, statuses: tuple[str, ...] = RECEIPT_STATUSES
) -> ReceiptRead:
    response = get(s3, bucket, key)
    if response is None:
        return ReceiptRead(key, None, "deleted while being read")
    raw = response["Body"].read()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return ReceiptRead(key, None, f"not JSON: {exc}")
    if not isinstance(body, dict):
        return ReceiptRead(key, None, "not a JSON object")
    source = body.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("key"), str):
        return ReceiptRead(key, None, "has no source.key")
    if body.get("status") not in statuses:
        return ReceiptRead(key, None, f"has unknown status {body.get('status')!r}")
    return ReceiptRead(key, body)


def _read_ledger(
    s3: S3Client, bucket: str, prefix: str, keys: Iterable[str] | None, statuses: tuple[str, ...]
) -> Iterator[ReceiptRead]:
    if keys is None:
        keys = (item.key for item in list_objects(s3, bucket, prefix))
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        yield from pool.map(lambda key: _read_receipt(s3, bucket, key, statuses), keys)


def read_receipts(
    s3: S3Client, bucket: str, keys: Iterable[str] | None = None
) -> Iterator[ReceiptRead]:
    """Every receipt in ``bucket`` (or the given receipt keys), read concurrently."""
    return _read_ledger(s3, bucket, RECEIPTS_PREFIX, keys, RECEIPT_STATUSES)


def read_version_records(
    s3: S3Client, bucket: str, keys: Iterable[str] | None = None
) -> Iterator[ReceiptRead]:
    """Every record of the version ledger (``versions/``: superseded and deleted versions)."""
    return _read_ledger(s3, bucket, VERSIONS_PREFIX, keys, VERSION_STATUSES)
