"""``sluice bundle``: write a bundle request to WORK and, optionally, wait for its status.

The request and status formats are :mod:`sluice.bundles`'; the keys :mod:`sluice.keys`'.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice import bundles
from sluice.bundles import BundleRequestError
from sluice.events import normalize_etag
from sluice.keys import BUNDLE_ID_PATTERN, bundle_request_key, bundle_status_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def new_bundle_id(now: datetime | None = None) -> str:
    """A sortable, unique id: UTC timestamp plus a short random suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WrittenRequest:
    """A request object as written: where it is, its ETag, and what it says."""

    bundle_id: str
    bucket: str
    key: str
    etag: str | None
    body: dict[str, Any]

    @property
    def status_key(self) -> str:
        return bundle_status_key(self.bundle_id)


def write_request(
    s3: S3Client,
    work_bucket: str,
    labels: Sequence[str],
    *,
    match: str = "any",
    notify: str | None = None,
    bundle_id: str | None = None,
    name: str | None = None,
) -> WrittenRequest:
    """Validate (the handler's own schema) and write ``requests/<id>.json``; raises
    :class:`~sluice.bundles.BundleRequestError` with what is wrong."""
    bundle_id = new_bundle_id() if bundle_id is None else bundle_id
    if not BUNDLE_ID_PATTERN.fullmatch(bundle_id):
        message = (
            f"bundle id {bundle_id!r} must be 1-128 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
        raise BundleRequestError([{"code": "invalid_bundle_id", "path": "$", "message": message}])
    body = bundles.request_document(labels, match, notify, name)
    key = bundle_request_key(bundle_id)
    response = s3.put_object(
        Bucket=work_bucket,
        Key=key,
        Body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        ContentType="application/json",
    )
    return WrittenRequest(bundle_id, work_bucket, key, normalize_etag(response.get("ETag")), body)


def read_outcome(s3: S3Client, request: WrittenRequest) -> dict[str, Any] | None:
    """The bundle's final status, or None while there is none for this very request."""
    status = bundles.read_status(s3, request.bucket, request.bundle_id)
    if status is None or status.get("status") not in bundles.FINAL_STATUSES:
        return None
    return status if bundles.answers(status, request.etag) else None


def wait_for_status(
    s3: S3Client,
    request: WrittenRequest,
    *,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """Poll for the final status until ``timeout``; None if none came."""
    deadline = clock() + timeout
    while True:
        status = read_outcome(s3, request)
        if status is not None or clock() >= deadline:
            return status
        sleep(min(interval, max(0.0, deadline - clock())))
