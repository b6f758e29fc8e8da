"""``sluice bundle``: write a bundle request to WORK and, optionally, wait for its status."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.events import normalize_etag
from sluice.keys import BUNDLE_ID_PATTERN, bundle_request_key, bundle_status_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MATCH_MODES = ("any", "all")
FINAL_STATUSES = ("ready", "empty", "error")


class BundleRequestError(ValueError):
    """The request cannot be written as given; the message says why."""


def new_bundle_id(now: datetime | None = None) -> str:
    """A sortable, unique id: UTC timestamp plus a short random suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def request_body(
    labels: Sequence[str], match: str, notify: str | None, name: str | None = None
) -> dict[str, Any]:
    cleaned = list(dict.fromkeys(label.strip() for label in labels))
    if not cleaned or any(not label for label in cleaned):
        raise BundleRequestError("labels must be non-empty, e.g. sluice bundle Dog Cat")
    if match not in MATCH_MODES:
        raise BundleRequestError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    body: dict[str, Any] = {"labels": cleaned, "match": match}
    if notify:
        body["notify"] = notify
    if name:
        body["name"] = name
    return body


@dataclass(frozen=True)
class BundleRequest:
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
) -> BundleRequest:
    bundle_id = new_bundle_id() if bundle_id is None else bundle_id
    if not BUNDLE_ID_PATTERN.fullmatch(bundle_id):
        raise BundleRequestError(
            f"bundle id {bundle_id!r} must be 1-128 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    body = request_body(labels, match, notify, name)
    key = bundle_request_key(bundle_id)
    response = s3.put_object(
        Bucket=work_bucket,
        Key=key,
        Body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        ContentType="application/json",
    )
    return BundleRequest(bundle_id, work_bucket, key, normalize_etag(response.get("ETag")), body)


def read_status(s3: S3Client, request: BundleRequest) -> dict[str, Any] | None:
    """The bundle's final status, or None while there is none for this very request."""
    try:
        raw = s3.get_object(Bucket=request.bucket, Key=request.status_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    try:
        status = json.loads(raw)
    except ValueError:
        return None  # being replaced, or not ours to judge: keep waiting
    if not isinstance(status, dict) or status.get("status") not in FINAL_STATUSES:
        return None
    # A status left by an earlier request with the same id is not an answer to this one.
    answered = normalize_etag(status.get("request_etag"))
    if answered and request.etag and answered != request.etag:
        return None
    return status


def wait_for_status(
    s3: S3Client,
    request: BundleRequest,
    *,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """Poll for the status until ``timeout``; None if none came."""
    deadline = clock() + timeout
    while True:
        status = read_status(s3, request)
        if status is not None or clock() >= deadline:
            return status
        sleep(min(interval, max(0.0, deadline - clock())))
