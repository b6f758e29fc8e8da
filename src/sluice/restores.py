"""Archived images a bundle must restore before it can read them (docs/decisions.md, 35).

An environment may keep ARCHIVE ``images/`` in S3 Intelligent-Tiering with its Archive
Access / Deep Archive Access tiers, or move them to Glacier Flexible Retrieval by lifecycle
rule (``archive_cold_storage`` in ``env/<env>.tfvars``). Such an object answers ``GetObject``
with ``InvalidObjectState`` until a ``RestoreObject`` has made a temporary copy readable
(minutes to hours, by tier). ``HeadObject`` tells which state an object is in:

* ``StorageClass`` ``GLACIER`` / ``DEEP_ARCHIVE``, or ``INTELLIGENT_TIERING`` with an
  ``ArchiveStatus``: archived;
* ``Restore: ongoing-request="true"``: being restored; ``ongoing-request="false"``:
  restored, readable until its ``expiry-date``.

:func:`check` sorts a bundle's images into readable, restoring and archived, and asks for
the restores still missing (``RestoreAlreadyInProgress`` is fine: another bundle or an
earlier attempt asked first). :func:`wait` writes a marker under ``bundles/_restoring/`` and
status ``restoring`` with the counts; the bundle handler's scheduled sweep serves the
markers that are due again (:func:`serve_due`), with a back-off that doubles up to a
bound, and builds the bundle once nothing is left to restore. No Lambda waits for a
restore.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from sluice import bundles
from sluice.events import S3ObjectRef
from sluice.keys import RESTORING_PREFIX, bundle_id_of_restore_marker, restore_marker_key
from sluice.s3io import error_code, get_json, head
from sluice.timestamps import parse_utc_iso, utc_iso

TIERS = ("Standard", "Bulk", "Expedited")
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
FIRST_CHECK = timedelta(minutes=5)
LAST_CHECK_INTERVAL = timedelta(hours=2)
"""The back-off's bound: Glacier Flexible Retrieval takes 3-5 h (Standard) to 5-12 h
(Bulk), Deep Archive up to 48 h; checking more often than this only costs requests."""


@dataclass
class RestoreCheck:
    """A bundle's images by state; only counts go into its status."""

    tier: str
    readable: int = 0
    restoring: list[str] = field(default_factory=list)
    requested: int = 0
    """Restores asked for by this check (the others were under way already)."""

    @property
    def waiting(self) -> bool:
        return bool(self.restoring)

    def as_status(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "images": self.readable + len(self.restoring),
            "restored": self.readable,
            "restoring": len(self.restoring),
        }


def _restore_state(head: Mapping[str, Any]) -> str:
    """``readable``, ``restoring`` or ``archived``."""
    restore = str(head.get("Restore") or "")
    if 'ongoing-request="false"' in restore:
        return "readable"
    if 'ongoing-request="true"' in restore:
        return "restoring"
    archived = head.get("StorageClass") in ARCHIVED_CLASSES or (
        head.get("StorageClass") == "INTELLIGENT_TIERING" and head.get("ArchiveStatus")
    )
    return "archived" if archived else "readable"


def _restore_request(head: Mapping[str, Any], tier: str, days: int) -> dict[str, Any]:
    if head.get("StorageClass") == "INTELLIGENT_TIERING":
        # The object goes back to the Frequent Access tier: no Days. Deep Archive Access
        # has no Expedited retrieval.
        if tier == "Expedited" and head.get("ArchiveStatus") == "DEEP_ARCHIVE_ACCESS":
            tier = "Standard"
        return {"GlacierJobParameters": {"Tier": tier}}
    if tier == "Expedited" and head.get("StorageClass") == "DEEP_ARCHIVE":
        tier = "Standard"
    return {"Days": days, "GlacierJobParameters": {"Tier": tier}}


def check(s3: Any, bucket: str, keys: Iterable[str], *, tier: str, days: int) -> RestoreCheck:
    """Sort ``keys`` by restore state, asking for each missing restore (see module doc)."""
    result = RestoreCheck(tier=tier)
    for key in keys:
        found = head(s3, bucket, key)
        if found is None:
            result.readable += 1  # gone: the zip lists it as missing
            continue
        state = _restore_state(found)
        if state == "readable":
            result.readable += 1
            continue
        if state == "archived":
            try:
                s3.restore_object(
                    Bucket=bucket, Key=key, RestoreRequest=_restore_request(found, tier, days)
                )
                result.requested += 1
            except ClientError as error:
                if error_code(error) != "RestoreAlreadyInProgress":
                    raise
        result.restoring.append(key)
    return result


# Markers (keys.restore_marker_key) ---------------------------------------------------------
def write_marker(
    s3: Any, bucket: str, bundle_id: str, *, request_key: str, request_etag: str, now: datetime
) -> datetime:
    """Record that ``bundle_id`` waits, and when to look again; returns that time.

    The interval doubles with each check of the same request (the earlier marker counts
    them), from 5 minutes up to 2 hours; a new request under the id starts again at 5.
    """
    earlier = read_marker(s3, bucket, bundle_id) or {}
    checks = int(earlier.get("checks") or 0) if earlier.get("request_etag") == request_etag else 0
    interval: timedelta = min(FIRST_CHECK * (2 ** min(checks, 16)), LAST_CHECK_INTERVAL)
    due: datetime = now + interval
    marker = {
        "bundle_id": bundle_id,
        "request_key": request_key,
        "request_etag": request_etag,
        "checks": checks + 1,
        "next_check_at": utc_iso(due),
    }
    s3.put_object(
        Bucket=bucket,
        Key=restore_marker_key(bundle_id),
        Body=json.dumps(marker).encode("utf-8"),
        ContentType="application/json",
    )
    return due


def read_marker(s3: Any, bucket: str, bundle_id: str) -> dict[str, Any] | None:
    return get_json(s3, bucket, restore_marker_key(bundle_id))[0]


def delete_marker(s3: Any, bucket: str, bundle_id: str) -> None:
    s3.delete_object(Bucket=bucket, Key=restore_marker_key(bundle_id))


def due_markers(s3: Any, bucket: str, now: datetime) -> Iterator[dict[str, Any]]:
    """Markers whose next check is due (or unreadable ones: checked again to be safe)."""
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=RESTORING_PREFIX
    ):
        for item in page.get("Contents", []):
            bundle_id = bundle_id_of_restore_marker(item["Key"])
            marker = read_marker(s3, bucket, bundle_id)
            if marker is None:
                continue
            due = parse_utc_iso(marker.get("next_check_at"))
            if due is None or due <= now:
                yield marker


# The bundle handler's side ---------------------------------------------------------------
def wait(
    s3: Any, bucket: str, status: dict[str, Any], held: bundles.Claim, now: datetime
) -> datetime:
    """Make ``status`` wait for its restores: the marker the sweep comes back to, then status
    ``restoring`` (in this order, so a crash in between never leaves a wait that nobody
    comes back to). Returns when the next check is due."""
    due = write_marker(
        s3,
        bucket,
        status["bundle_id"],
        request_key=status["request_key"],
        request_etag=status["request_etag"],
        now=now,
    )
    status["status"] = bundles.RESTORING
    bundles.write_status(s3, bucket, status, held)
    return due


def serve_due(
    s3: Any, bucket: str, now: datetime, serve: Callable[[S3ObjectRef], object]
) -> tuple[int, int]:
    """Serve each bundle whose check is due through the request path (``serve``); a marker
    goes once its bundle no longer waits for that request. A bundle another invocation
    holds (:class:`~sluice.bundles.BundleBusyError`) keeps its marker for the next sweep.
    Returns (served, busy)."""
    served = busy = 0
    for marker in list(due_markers(s3, bucket, now)):
        bundle_id, etag = str(marker.get("bundle_id")), str(marker.get("request_etag") or "")
        key = str(marker.get("request_key"))
        try:
            serve(S3ObjectRef(bucket, key, "ObjectCreated:Put", etag=etag or None))
        except bundles.BundleBusyError:
            busy += 1
            continue
        served += 1
        status = bundles.read_status(s3, bucket, bundle_id)
        if (
            status is None
            or status["status"] != bundles.RESTORING
            or not bundles.answers(status, etag)
        ):
            delete_marker(s3, bucket, bundle_id)
    return served, busy
