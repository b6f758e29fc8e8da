"""Removing an input: what it owns goes with it, and the ledger says so (issue 12).

**What "removed" means.** ARCHIVE is versioned, so ``aws s3 rm`` of an archived input
leaves a delete marker and keeps the bytes as a noncurrent version for the bucket's
noncurrent retention (30 days, a year in prod; docs/contracts.md). For sluice the input
is removed when its archive name (``images/``, ``data/``, ``rejected/`` + raw key) has no
current version any more and the newest version still listed under the name (the copy
that was removed) is a copy of the version its receipt names. Deleting *every* version of
the name by version id (``ObjectRemoved:Delete`` events, the bucket's retention bypassed)
leaves no version to compare; it is the same removal when RAW no longer holds the
receipt's version either: the archive handler deletes that version from RAW (by version
id) only after its copy is archived, so a receipt whose version is in neither bucket had
its copy archived and deleted. Recorded with ``archived_copy_kept: false`` (a delete
marker's removal keeps the copy as a noncurrent version: ``true``). While RAW still holds
the version it is simply not archived yet (``pending``).

**What goes.** The removed version's receipt names what it owns: its PROCESSED outputs
(thumbnails; a data file's ``data/`` and ``errors/``) are deleted; for an image, its item in
the images table, its label memberships and each label's count once
(:func:`sluice.image_items.withdraw_under_lease`, under the tag handler's lease, so never
while a labelling run could still add a membership); then the receipt itself. First, the
version ledger records the version as ``deleted`` (``deleted_from``, ``archive_key``,
``outputs_removed``), so a crash half-way leaves the record and a retry finishes the rest;
``sluice audit`` then finds no receipt whose archived copy or outputs are missing and
nothing orphaned. A version deleted from RAW after its receipt was written and before it
was archived goes the same way (:func:`remove_unarchived`, from the archive handler).

**Order and duplicates.** Everything runs under the RAW key's transform lease
(:mod:`sluice.leases`): a new upload of the same key, whose outputs have the same names,
is never transformed while they are being deleted. Every check is made again under the
lease, so a duplicate removal event finds the receipt gone (``nothing``), a replayed
creation event for the removed copy finds no object (the tag handler skips it), and a
removal that is the archive handler's own work (making an older copy noncurrent: that
copy is recorded ``superseded`` first, and is not the receipt's version) is left alone.

A removed ``superseded/<version>/`` copy turns its ``superseded`` record into a
``deleted`` one, so the audit does not look for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sluice import image_items
from sluice.events import normalize_etag
from sluice.keys import (
    ARCHIVE_SUPERSEDED_PREFIX,
    SOURCE_ETAG_METADATA,
    SOURCE_VERSION_METADATA,
    archive_key_for,
    image_id,
    ledger_key_of_archive_key,
    receipt_key,
    version_token,
)
from sluice.leases import LeaseTerms, key_lease
from sluice.receipts import (
    read_version_record,
    version_record,
    version_record_key_of,
    write_version_record,
)
from sluice.s3io import get, head, is_gone_or_changed

RemovalOutcome = Literal["removed", "present", "not_owned", "pending", "nothing"]
"""``removed``: the version and what it owned are gone and recorded; ``present``: the name
still has a current object (a stale event); ``not_owned``: the removed copy is not the one
the ledger names there (the archive handler's own supersession, or an older copy);
``pending``: no copy of the receipt's version was ever archived under the name (not yet
archived; or, from RAW, still there); ``nothing``: no receipt or record owns the name any
more (a duplicate)."""


@dataclass(frozen=True)
class DeletionSettings:
    raw_bucket: str
    processed_bucket: str
    archive_bucket: str
    images_table: str
    labels_table: str

    @classmethod
    def of(cls, settings: Any) -> DeletionSettings:
        """The buckets and tables of a function's settings (tag, archive, api) that a
        removal touches."""
        return cls(
            raw_bucket=settings.raw_bucket,
            processed_bucket=settings.processed_bucket,
            archive_bucket=settings.archive_bucket,
            images_table=settings.images_table,
            labels_table=settings.labels_table,
        )


@dataclass(frozen=True)
class _Entry:
    """A ledger object as read: its body and the object's ETag (for a conditional delete)."""

    body: dict[str, Any]
    etag: str


def _read(s3: Any, bucket: str, key: str) -> _Entry | None:
    response = get(s3, bucket, key)
    if response is None:
        return None
    return _Entry(json.loads(response["Body"].read()), str(response["ETag"]))


def removed_copy(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The newest version of exactly ``key`` that is not a delete marker, with its
    metadata (HeadObject by version id); None when no version is left."""
    response = s3.list_object_versions(Bucket=bucket, Prefix=key, MaxKeys=50)
    versions = [v for v in response.get("Versions", []) if v["Key"] == key]
    if not versions:
        return None
    return head(s3, bucket, key, VersionId=versions[0]["VersionId"])


def _names_version(source: dict[str, Any], copy: dict[str, Any]) -> bool:
    """Is the archived ``copy`` a copy of the version ``source`` (a ledger source) names?"""
    metadata = copy.get("Metadata", {})
    stamped_version = metadata.get(SOURCE_VERSION_METADATA)
    return normalize_etag(metadata.get(SOURCE_ETAG_METADATA)) == normalize_etag(
        source.get("etag")
    ) and (
        not stamped_version
        or not source.get("version_id")
        or stamped_version == source.get("version_id")
    )


def _raw_keeps(s3: Any, settings: DeletionSettings, source: dict[str, Any]) -> bool:
    """Does RAW still hold the version ``source`` names, current or not? (The archive
    handler deletes it by version id once it is archived.)"""
    if not source.get("version_id"):
        return _raw_holds(s3, settings, source)
    kept = head(s3, settings.raw_bucket, str(source["key"]), VersionId=source["version_id"])
    return kept is not None


def _raw_holds(s3: Any, settings: DeletionSettings, source: dict[str, Any]) -> bool:
    """Is the version ``source`` names RAW's current version of its key?"""
    current_head = head(s3, settings.raw_bucket, str(source["key"]))
    if current_head is None:
        return False
    current = current_head.get("VersionId")
    return normalize_etag(current_head.get("ETag")) == normalize_etag(source.get("etag")) and not (
        source.get("version_id") and current and current != source.get("version_id")
    )


def _withdraw_image(
    dynamodb: Any, settings: DeletionSettings, archive_key: str, terms: LeaseTerms
) -> bool:
    now = terms.clock()
    return image_items.withdraw_under_lease(
        dynamodb,
        settings.images_table,
        settings.labels_table,
        image_id(archive_key),
        owner=f"delete/{terms.owner}",
        now=now,
        until=now + terms.seconds,
    )


def _remove_version(
    s3: Any,
    dynamodb: Any,
    settings: DeletionSettings,
    ledger_key: str,
    receipt: _Entry,
    *,
    archive_key: str | None,
    deleted_from: Literal["raw", "archive"],
    terms: LeaseTerms,
    archived_copy_kept: bool | None = None,
) -> None:
    """Record the receipt's version as deleted, remove what it owns, then the receipt."""
    body = receipt.body
    outputs = [
        str(output["key"])
        for output in body.get("outputs") or []
        if output.get("bucket") == settings.processed_bucket and output.get("key")
    ]
    record = version_record(
        dict(body["source"]),
        "deleted",
        archive_key=archive_key,
        deleted_from=deleted_from,
        outputs_removed=outputs,
        archived_copy_kept=archived_copy_kept,
    )
    write_version_record(s3, settings.processed_bucket, record)
    if body.get("kind") == "image" and body.get("status") == "processed":
        if dynamodb is None:
            raise ValueError("removing an image needs a DynamoDB client")
        _withdraw_image(
            dynamodb,
            settings,
            archive_key_for("image", "processed", str(body["source"]["key"])),
            terms,
        )
    for key in outputs:
        s3.delete_object(Bucket=settings.processed_bucket, Key=key)
    try:
        s3.delete_object(Bucket=settings.processed_bucket, Key=ledger_key, IfMatch=receipt.etag)
    except s3.exceptions.ClientError as error:
        if not is_gone_or_changed(error):
            raise  # 412: a newer receipt was written meanwhile; it is that version's


def _record_unaccounted(
    s3: Any, settings: DeletionSettings, raw_key: str, archive_key: str, copy: dict[str, Any]
) -> None:
    """A removed copy of a version no ledger entry names (an older copy deleted before the
    archive handler could supersede it): record it as deleted, so it is accounted for."""
    metadata = copy.get("Metadata", {})
    etag = normalize_etag(metadata.get(SOURCE_ETAG_METADATA))
    if not etag:
        return  # not a copy the archive handler made: nothing of sluice's
    source = {
        "bucket": settings.raw_bucket,
        "key": raw_key,
        "etag": etag,
        "version_id": metadata.get(SOURCE_VERSION_METADATA) or None,
        "size": copy.get("ContentLength"),
        "sequencer": None,
    }
    if read_version_record(s3, settings.processed_bucket, version_record_key_of(source)):
        return
    record = version_record(source, "deleted", archive_key=archive_key, deleted_from="archive")
    write_version_record(s3, settings.processed_bucket, record)


def _remove_superseded(
    s3: Any, settings: DeletionSettings, archive_key: str, record_key: str
) -> RemovalOutcome:
    record = _read(s3, settings.processed_bucket, record_key)
    if record is None or record.body.get("status") != "superseded":
        return "nothing"
    if record.body.get("archive_key") != archive_key:
        return "not_owned"
    body = {**record.body, "status": "deleted", "deleted_from": "archive", "outputs_removed": []}
    write_version_record(s3, settings.processed_bucket, body)
    return "removed"


def remove_archived(
    s3: Any,
    dynamodb: Any,
    settings: DeletionSettings,
    archive_key: str,
    terms: LeaseTerms,
) -> RemovalOutcome:
    """The ARCHIVE name ``archive_key`` lost its current version: remove the input it held
    (module docstring). Idempotent; raises KeyBusyError or ImageBusyError while a
    transform or labelling run holds the key or image (the message is retried)."""
    ledger_key = ledger_key_of_archive_key(archive_key)
    if ledger_key is None:
        return "not_owned"
    if head(s3, settings.archive_bucket, archive_key) is not None:
        return "present"
    if archive_key.startswith(ARCHIVE_SUPERSEDED_PREFIX):
        return _remove_superseded(s3, settings, archive_key, ledger_key)
    receipt = _read(s3, settings.processed_bucket, ledger_key)
    if receipt is None:
        return "nothing"
    raw_key = str(receipt.body["source"]["key"])
    with key_lease(s3, settings.processed_bucket, raw_key, terms):
        receipt = _read(s3, settings.processed_bucket, ledger_key)
        if receipt is None:
            return "nothing"
        if head(s3, settings.archive_bucket, archive_key) is not None:
            return "present"
        source = receipt.body["source"]
        # The copy removed must be the receipt's version: not an older copy that the
        # archive handler superseded (recorded first) or that was deleted before it could.
        copy = removed_copy(s3, settings.archive_bucket, archive_key)
        kind, status = str(receipt.body.get("kind")), str(receipt.body.get("status"))
        if archive_key_for(kind, status, raw_key) != archive_key or (
            copy is not None and not _names_version(source, copy)
        ):
            if copy is not None:
                _record_unaccounted(s3, settings, raw_key, archive_key, copy)
            return "not_owned"
        if copy is None and _raw_keeps(s3, settings, source):
            return "pending"
        # No version left under the name: every one was deleted by version id.
        _remove_version(
            s3,
            dynamodb,
            settings,
            ledger_key,
            receipt,
            archive_key=archive_key,
            deleted_from="archive",
            terms=terms,
            archived_copy_kept=copy is not None,
        )
    return "removed"


def remove_unarchived(
    s3: Any,
    dynamodb: Any,
    settings: DeletionSettings,
    raw_key: str,
    source: dict[str, Any],
    terms: LeaseTerms,
) -> RemovalOutcome:
    """The version ``source`` got its receipt and was deleted from RAW before it was
    archived: remove what it owns and record it (module docstring). Idempotent."""
    ledger_key = receipt_key(raw_key)
    with key_lease(s3, settings.processed_bucket, raw_key, terms):
        receipt = _read(s3, settings.processed_bucket, ledger_key)
        if receipt is None:
            return "nothing"
        named = receipt.body["source"]
        if normalize_etag(named.get("etag")) != normalize_etag(source.get("etag")) or (
            version_token(named.get("version_id"), str(named.get("etag")))
            != version_token(source.get("version_id"), str(source.get("etag")))
        ):
            return "not_owned"  # a newer version's receipt: its own archiving decides
        if _raw_holds(s3, settings, named):
            return "pending"
        _remove_version(
            s3,
            dynamodb,
            settings,
            ledger_key,
            receipt,
            archive_key=None,
            deleted_from="raw",
            terms=terms,
        )
    return "removed"
