"""Per-key leases in S3: one transform at a time for each RAW key.

Why a lease: a key's outputs have stable names (``data/<key>``, ``thumbnails/...``), so
two transforms of two versions of one key that overlap would interleave their writes, and
the older one, finishing last, would leave its outputs over the newer one's (issue 10:
a large v1 and a one-record v2 uploaded 3.5 s apart). Re-checking the RAW key's current
version before the receipt stops a stale *receipt*, not stale *outputs*. With the lease
held from before the source is read until after the receipt is written, the transforms of
one key run one after the other, and each one's last step re-checks that its version is
still current; so the last transform to finish for a key is that of its newest version.

How: the lease is ``PROCESSED leases/<raw key>.json``, written with S3 conditional writes,
which are atomic: ``PutObject IfNoneMatch="*"`` takes a free lease; an expired one is
taken over with ``PutObject IfMatch=<its ETag>``, so of two takers exactly one wins;
``DeleteObject IfMatch=<our ETag>`` releases it only if it is still ours. A lease lasts
the invocation's remaining time plus a margin, so a crashed holder's lease expires soon
after the Lambda service has stopped it; a live holder never loses it. No table is needed,
and the lease lives in the bucket whose objects it protects.

The PROCESSED bucket is versioned: each release leaves a noncurrent version and a delete
marker, which its noncurrent-version lifecycle rule removes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from sluice.keys import lease_key
from sluice.s3io import get, is_conditional_conflict, is_missing

LEASE_MARGIN_SECONDS = 30.0
DEFAULT_LEASE_SECONDS = 900.0 + LEASE_MARGIN_SECONDS
"""The Lambda maximum timeout plus the margin, for callers without a context."""


class KeyBusyError(RuntimeError):
    """Another invocation holds the key's lease; the message is retried later."""


@dataclass(frozen=True)
class LeaseTerms:
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    seconds: float = DEFAULT_LEASE_SECONDS
    clock: Callable[[], float] = time.time


def _put(s3: Any, bucket: str, key: str, terms: LeaseTerms, **condition: str) -> str:
    body = {"owner": terms.owner, "until": round(terms.clock() + terms.seconds, 3)}
    response = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(body).encode("utf-8"),
        ContentType="application/json",
        **condition,
    )
    return str(response["ETag"])


def _acquire(s3: Any, bucket: str, key: str, terms: LeaseTerms) -> str:
    try:
        return _put(s3, bucket, key, terms, IfNoneMatch="*")
    except ClientError as error:
        if not is_conditional_conflict(error):  # 412 or 409: another taker won
            raise
    held = get(s3, bucket, key)
    if held is None:
        raise KeyBusyError("lease released while being read; retry")
    lease = json.loads(held["Body"].read())
    if lease.get("owner") != terms.owner and float(lease.get("until", 0)) > terms.clock():
        raise KeyBusyError("another invocation is transforming this key")
    try:
        return _put(s3, bucket, key, terms, IfMatch=str(held["ETag"]))
    except ClientError as error:
        if is_conditional_conflict(error):
            raise KeyBusyError("another invocation took the expired lease first") from None
        raise


def _release(s3: Any, bucket: str, key: str, etag: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as error:
        if not is_conditional_conflict(error) and not is_missing(error):
            raise  # the message is retried, and the retry releases it (release_own)
        # lost (expired and taken over) or already gone: nothing of ours to release


def release_own(s3: Any, bucket: str, raw_key: str, owner: str) -> None:
    """Release the lease of ``raw_key`` if ``owner`` holds it: a retry whose earlier run did
    its work but could not release the lease (the work is done, so it needs no lease)."""
    key = lease_key(raw_key)
    held = get(s3, bucket, key)
    if held is None:
        return
    if json.loads(held["Body"].read()).get("owner") == owner:
        _release(s3, bucket, key, str(held["ETag"]))


@contextmanager
def key_lease(s3: Any, bucket: str, raw_key: str, terms: LeaseTerms) -> Iterator[None]:
    """Hold the lease of ``raw_key`` for the block; raises :class:`KeyBusyError` if held.

    A release that fails after the block succeeded raises, so the message is retried
    (its retry finds the work done and calls :func:`release_own`); after a failed block
    the release is best effort and the block's error is the one raised.
    """
    key = lease_key(raw_key)
    etag = _acquire(s3, bucket, key, terms)
    try:
        yield
    except BaseException:
        with suppress(Exception):
            _release(s3, bucket, key, etag)
        raise
    _release(s3, bucket, key, etag)
