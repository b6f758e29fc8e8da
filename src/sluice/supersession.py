"""Every other version of a key accounted for, before its newest is archived.

docs/contracts.md, "Ownership and versions": a key's receipt describes its newest version
and every other version has one record in the version ledger (:mod:`sluice.receipts`).
The archive handler keeps that true when it archives a version (its step 3), with what is
here:

* :func:`supersede_archived_copies`: a copy of an older version under any of the key's
  archive names (``images/``, ``data/``, ``rejected/``: the key's status flipped, or the
  name is about to be reused) is copied to ``superseded/<version>/<key>``, verified
  (:mod:`sluice.archive_copy`), recorded ``superseded``, then made noncurrent, so the name
  that is current again describes the newest version only;
* :func:`supersede_older_versions`: every RAW version older than the one archived is
  archived the same way and deleted from RAW by version id, so none can become current
  again there;
* :func:`withdraw_image`: an older image leaves the library (item, memberships, counts)
  when its key's newest version is no image of it: rejected (:func:`versions_to_keep`
  says which newer versions' items stay), or deleted.

Each step records before it deletes, so a crash half-way leaves a record and a retry
finishes the rest; each is idempotent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sluice import image_items
from sluice.archive_copy import ArchiveRequest, Copied, copy_verified, owned_by
from sluice.events import normalize_etag
from sluice.keys import (
    SOURCE_ETAG_METADATA,
    SOURCE_VERSION_METADATA,
    archive_keys_of,
    image_id,
    images_archive_key,
    superseded_archive_key,
    version_token,
)
from sluice.receipts import (
    read_receipt,
    version_record,
    version_record_key_of,
    write_version_record,
)
from sluice.s3io import head_with_checksums, is_missing, is_precondition_failed
from sluice.settings import ArchiveSettings


@dataclass(frozen=True)
class Superseded:
    """One other version of the key, kept under ``superseded/`` and recorded."""

    moved_from: str
    """The name it was under: one of the key's archive names, or the RAW key."""
    kept_as: str
    copied: Copied | None
    """None when a faithful copy was there already (a retry)."""
    raced: bool = False
    """Another run of the same receipt archived it and deleted it from RAW meanwhile."""


def _superseded_request(
    request: ArchiveRequest, bucket: str, name: str, etag: str, version_id: str | None
) -> ArchiveRequest:
    return ArchiveRequest(
        source_bucket=bucket,
        source_key=name,
        source_etag=etag,
        source_version_id=version_id,
        archive_key=superseded_archive_key(request.source_key, version_token(version_id, etag)),
        status="superseded",
        kind=request.kind,
    )


def _record_superseded(
    s3: Any,
    settings: ArchiveSettings,
    request: ArchiveRequest,
    superseded: ArchiveRequest,
    size: int,
) -> None:
    source = {
        "bucket": settings.raw_bucket,
        "key": superseded.source_key,
        "etag": superseded.source_etag,
        "version_id": superseded.source_version_id,
        "size": size,
        "sequencer": None,
    }
    replaced = request.replaces
    record = version_record(
        source,
        "superseded",
        archive_key=superseded.archive_key,
        superseded_by={"etag": request.source_etag, "version_id": request.source_version_id},
        receipt=dict(replaced)
        if replaced and replaced.get("record") == version_record_key_of(source)
        else None,
    )
    write_version_record(s3, settings.processed_bucket, record)


def supersede_archived_copies(
    s3: Any, settings: ArchiveSettings, request: ArchiveRequest
) -> list[Superseded]:
    """Move every archived copy of another version of the key to ``superseded/`` (module
    docstring); the names made noncurrent are the ``moved_from`` of the result."""
    moved = []
    for name in archive_keys_of(request.source_key):
        held = head_with_checksums(s3, settings.archive_bucket, name)
        if held is None or owned_by(held, request):
            continue
        metadata = held.get("Metadata", {})
        etag = normalize_etag(metadata.get(SOURCE_ETAG_METADATA)) or str(
            normalize_etag(held.get("ETag"))
        )
        version_id = metadata.get(SOURCE_VERSION_METADATA) or None
        older = _superseded_request(request, settings.archive_bucket, name, etag, version_id)
        copied = copy_verified(s3, settings, older, held)
        size = int(held["ContentLength"])
        _record_superseded(
            s3, settings, request, replace(older, source_key=request.source_key), size
        )
        try:
            s3.delete_object(Bucket=settings.archive_bucket, Key=name, IfMatch=str(held["ETag"]))
        except s3.exceptions.ClientError as error:
            if not is_precondition_failed(error):
                raise
        moved.append(Superseded(name, older.archive_key, copied))
    return moved


def raw_versions(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """Every version of exactly ``key`` in RAW, newest first (delete markers left out).

    ListObjectVersions lists a key's versions newest first, and a key before every longer
    key it is a prefix of, so the listing stops at the first other key.
    """
    found: list[dict[str, Any]] = []
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        versions = page.get("Versions", [])
        found.extend(version for version in versions if version["Key"] == key)
        if any(version["Key"] != key for version in versions):
            break
    return found


def supersede_older_versions(
    s3: Any, settings: ArchiveSettings, request: ArchiveRequest, current: Mapping[str, Any]
) -> list[Superseded]:
    """Archive every RAW version older than ``current`` under ``superseded/``, record it,
    then delete it from RAW (module docstring)."""
    versions = raw_versions(s3, request.source_bucket, request.source_key)
    ids = [version["VersionId"] for version in versions]
    if current.get("VersionId") not in ids:
        return []
    done = []
    for version in versions[ids.index(current["VersionId"]) + 1 :]:
        version_id = version["VersionId"]
        bucket, key = request.source_bucket, request.source_key
        source = head_with_checksums(s3, bucket, key, VersionId=version_id)
        if source is None:
            continue  # a concurrent run of this receipt got there first
        etag = str(normalize_etag(source.get("ETag")))
        superseded = _superseded_request(request, bucket, key, etag, version_id)
        try:
            copied = copy_verified(s3, settings, superseded, source)
        except s3.exceptions.ClientError as error:
            if not is_missing(error):
                raise
            # Another run of this receipt archived it and deleted it from RAW meanwhile
            # (it copies, verifies and records before it deletes): nothing left to do.
            done.append(Superseded(key, superseded.archive_key, None, raced=True))
            continue
        _record_superseded(s3, settings, request, superseded, int(source["ContentLength"]))
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        done.append(Superseded(key, superseded.archive_key, copied))
    return done


def versions_to_keep(s3: Any, request: ArchiveRequest, current: Mapping[str, Any]) -> set[str]:
    """The versions (ids and ETags) of ``request``'s key from ``current`` on: an item
    written meanwhile for one of them is not withdrawn with the older image."""
    versions = raw_versions(s3, request.source_bucket, request.source_key)
    ids = [version["VersionId"] for version in versions]
    position = ids.index(current["VersionId"]) if current.get("VersionId") in ids else -1
    newer = versions[: position + 1]
    keep = {request.source_etag} | {str(normalize_etag(v.get("ETag"))) for v in newer}
    return keep | {str(v["VersionId"]) for v in newer}


def withdraw_image(
    dynamodb: Any, settings: ArchiveSettings, raw_key: str, *, keep: Collection[str]
) -> bool:
    """Withdraw the key's image from the library unless its item describes a version in
    ``keep``. Its ``images/`` copy is already noncurrent, so no new labelling run can start
    on it; one still running holds the item's lease, and the withdrawal waits for it
    (ImageBusyError: the message is retried). True if an item was withdrawn."""
    now = time.time()
    return image_items.withdraw_under_lease(
        dynamodb,
        settings.images_table,
        settings.labels_table,
        image_id(images_archive_key(raw_key)),
        owner=f"archive/{uuid.uuid4().hex}",
        now=now,
        until=now + settings.lease_seconds,
        keep_versions=keep,
    )


def receipt_names(s3: Any, settings: ArchiveSettings, request: ArchiveRequest) -> bool:
    """Is the key's receipt still the one ``request`` came from (not removed, not newer)?"""
    receipt = read_receipt(s3, settings.processed_bucket, request.source_key)
    source = (receipt or {}).get("source") or {}
    return (
        normalize_etag(source.get("etag")) == request.source_etag
        and (source.get("version_id") or None) == request.source_version_id
    )
