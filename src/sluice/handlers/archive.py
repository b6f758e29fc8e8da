"""Archive handler: move each receipt's source object from RAW to ARCHIVE.

Triggered by PROCESSED ``receipts/`` objects (the transform's last write), so an input
is only archived once its outputs exist. For each receipt:

1. Read the receipt (:func:`sluice.receipts.load_receipt`). A ``receipts/`` object that is
   not a sluice receipt (bad JSON, wrong shape, or naming a bucket other than RAW) is
   logged as an error with ``code=invalid_receipt`` and skipped: a retry cannot repair it,
   and dead-lettering would only move the same message around. Nothing is lost, because
   the RAW object is left untouched and still shows up in the inputs = receipts =
   archived check.
2. HeadObject the RAW key. When RAW holds a newer object than the receipt names (other
   ETag, or other version id when both are known) it is left alone: it has its own
   receipt, and its archiving will account for this version. When RAW no longer holds
   the key and ARCHIVE holds the receipt's ETag, the move already happened (duplicate
   delivery, or a retry after deleting): success. When neither holds it, the input was
   deleted from RAW after its receipt and before it could be archived: what it owns is
   removed and the version recorded ``deleted`` (:func:`sluice.deletion.remove_unarchived`).
3. Account for every other version of the key first (docs/contracts.md, "Ownership
   and versions"; :mod:`sluice.supersession`): a copy of an older version under any of
   the key's archive names (``images/``, ``data/``, ``rejected/``) is copied to
   ``superseded/<version>/<key>``, verified, recorded in the version ledger, then made
   noncurrent (so a status flip leaves no stale copy, and a rejected newest image
   withdraws the older one from the library); every RAW version older than this one is
   archived the same way and deleted from RAW by version id.
4. Copy server side, pinned to the exact source version (:mod:`sluice.archive_copy`), to
   ``keys.archive_key_for(kind, status, raw key)``: ``CopyObject`` up to 5 GiB, above that
   a multipart ``UploadPartCopy`` (:mod:`sluice.s3copy`, shared with ``sluice
   reprocess``); headers and user metadata are carried, tags are not. Every copy gets
   the ``ARCHIVE_STORAGE_CLASS`` and the user metadata key ``sluice-source-etag`` (the
   RAW ETag), which is how step 2 recognises its own work. A crash after copying and
   before deleting does not copy again: when ARCHIVE already holds the ETag, the retry
   goes straight to verification.
5. Verify before deleting anything (:func:`sluice.archive_copy.copy_problems`): equal
   sizes, the ``sluice-source-etag`` stamp, equal ETags where both are MD5 digests, equal
   full-object checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) where both report one.
   A failed verification raises and leaves RAW as it was; the retry copies again.
6. Delete the RAW object: on a versioned bucket the exact version that was copied (no
   delete marker is left, and a newer upload is never touched); on an unversioned bucket
   a conditional delete (``IfMatch`` the ETag), which fails harmlessly when the key was
   overwritten meanwhile. No older version can become current again: step 3 removed
   them all.
7. A processed image's metadata item learns where its original lies (archive bucket and
   time, :func:`sluice.image_items.record_archived`), only if the item still describes
   this version. Also on the "already archived" path, so a retry after a crash between
   the delete and this write still records it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from sluice import deletion, image_items
from sluice.archive_copy import ArchiveRequest, Copied, copy_verified, delete_source
from sluice.events import S3ObjectRef, normalize_etag
from sluice.keys import RECEIPTS_PREFIX, SOURCE_ETAG_METADATA, image_id, images_archive_key
from sluice.leases import LEASE_MARGIN_SECONDS, LeaseTerms
from sluice.receipts import InvalidReceiptError, load_receipt
from sluice.runtime import Handler, client, entry_point, make_logger, process_event
from sluice.s3io import head_with_checksums
from sluice.settings import ArchiveSettings
from sluice.supersession import (
    receipt_names,
    supersede_archived_copies,
    supersede_older_versions,
    versions_to_keep,
    withdraw_image,
)

ArchiveOutcome = Literal[
    "archived", "already_archived", "superseded", "source_missing", "deleted", "skipped"
]

logger = make_logger("archive")


@dataclass(frozen=True)
class Dependencies:
    """What the archive function works with: built once per execution environment."""

    settings: ArchiveSettings
    s3: Any
    dynamodb: Any

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dependencies:
        return cls(ArchiveSettings.from_env(env), client("s3"), client("dynamodb"))

    def leasing_until_deadline(self, context: Any) -> Dependencies:
        """A lease this invocation takes outlives its deadline by the margin only: a run
        killed halfway (timeout, out of memory) holds the key no longer than that, as in tag."""
        seconds = context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
        return replace(self, settings=replace(self.settings, lease_seconds=seconds))


def process(deps: Dependencies, receipt_bucket: str, receipt_key: str) -> ArchiveOutcome:
    """Read one receipt (step 1) and carry out what it asks (:func:`archive_object`)."""
    try:
        receipt = load_receipt(deps.s3, receipt_bucket, receipt_key, deps.settings.raw_bucket)
    except InvalidReceiptError as error:
        logger.error(
            "not a sluice receipt; skipped, nothing archived",
            code="invalid_receipt",
            receipt_key=receipt_key,
            reason=str(error),
        )
        return "skipped"
    if receipt is None:
        logger.warning("receipt is gone; a newer event will name its replacement")
        return "skipped"
    return archive_object(deps, ArchiveRequest.of(receipt, deps.settings.raw_bucket))


def archive_object(deps: Dependencies, request: ArchiveRequest) -> ArchiveOutcome:
    """Move one RAW version to ARCHIVE (steps 2-7). Idempotent."""
    s3, settings = deps.s3, deps.settings
    log: dict[str, Any] = {"source_key": request.source_key, "archive_key": request.archive_key}
    # 2. The RAW key: gone, newer than the receipt, or the version it names.
    source = head_with_checksums(s3, request.source_bucket, request.source_key)
    if source is None:
        return _source_gone(deps, request, log)
    current_version = source.get("VersionId")
    if normalize_etag(source.get("ETag")) != request.source_etag or (
        request.source_version_id
        and current_version
        and current_version != request.source_version_id
    ):
        logger.info(
            "RAW holds a newer object than the receipt names; leaving it to its own receipt",
            current_etag=normalize_etag(source.get("ETag")),
            current_version_id=current_version,
            **log,
        )
        return "superseded"

    # 3. Every other version of the key first: archived copies, a replaced image, RAW.
    _supersede_archived_copies(deps, request)
    if request.kind == "image" and not request.is_library_image:  # a rejected image
        keep = versions_to_keep(s3, request, source)
        if withdraw_image(deps.dynamodb, settings, request.source_key, keep=keep):
            logger.info("withdrew the older image of a key whose newest version is rejected")
    for older in supersede_older_versions(s3, settings, request, source):
        if older.raced:
            logger.info("older version archived by a concurrent run", source_key=older.moved_from)
            continue
        _log_copied(older.copied)
        logger.info(
            "archived a superseded version", source_key=older.moved_from, archive_key=older.kept_as
        )
    # 4-5. This version, copied and verified.
    _log_copied(copy_verified(s3, settings, request, source))
    # 6. Out of RAW: exactly the version copied.
    if not delete_source(s3, request, source):
        logger.info("RAW changed after the copy; the newer object is left to its receipt", **log)
    # 7. The image's item learns where its original lies.
    record_archived_image(deps, request)
    logger.info("archived", storage_class=settings.storage_class, **log)
    return "archived"


def _source_gone(
    deps: Dependencies, request: ArchiveRequest, log: dict[str, Any]
) -> ArchiveOutcome:
    """Step 2 when RAW no longer holds the key: archived already, or deleted before."""
    s3, settings = deps.s3, deps.settings
    held = head_with_checksums(s3, settings.archive_bucket, request.archive_key)
    if held and held.get("Metadata", {}).get(SOURCE_ETAG_METADATA) == request.source_etag:
        record_archived_image(deps, request)
        logger.info("already archived", **log)
        return "already_archived"
    # The key's newest version is gone: a copy of an older version still under the
    # key's names is kept as superseded (by the deleted one) and its image withdrawn,
    # before the receipt goes, so a retry still finds the receipt (issue 10).
    if receipt_names(s3, settings, request):
        moved = _supersede_archived_copies(deps, request)
        if images_archive_key(request.source_key) in moved:
            withdraw_image(deps.dynamodb, settings, request.source_key, keep=())
    removal = deletion.remove_unarchived(
        s3,
        deps.dynamodb,
        deletion.DeletionSettings.of(settings),
        request.source_key,
        {"etag": request.source_etag, "version_id": request.source_version_id},
        LeaseTerms(owner=f"archive/{uuid.uuid4().hex}", seconds=settings.lease_seconds),
    )
    if removal == "removed":
        logger.info("deleted from RAW before it was archived; removed and recorded", **log)
        return "deleted"
    logger.warning(
        "source is gone and the archive does not hold it; nothing to archive",
        code="source_missing",
        removal=removal,
        **log,
    )
    return "source_missing"


def _supersede_archived_copies(deps: Dependencies, request: ArchiveRequest) -> set[str]:
    """Step 3's first part, logged; the archive names made noncurrent."""
    moved = supersede_archived_copies(deps.s3, deps.settings, request)
    for copy in moved:
        _log_copied(copy.copied)
        logger.info(
            "superseded an archived copy", archive_key=copy.moved_from, kept_as=copy.kept_as
        )
    return {copy.moved_from for copy in moved}


def _log_copied(copied: Copied | None) -> None:
    if copied is not None:
        logger.info("copied", **asdict(copied))


def record_archived_image(deps: Dependencies, request: ArchiveRequest) -> None:
    """Step 7: a processed image's item names its archived original (other inputs have none)."""
    if not request.is_library_image:
        return
    recorded = image_items.record_archived(
        deps.dynamodb,
        deps.settings.images_table,
        image_id(request.archive_key),
        bucket=deps.settings.archive_bucket,
        source_etag=request.source_etag,
    )
    if not recorded:
        logger.info("the image's item describes another version (or none); left as it is")


def is_receipt_event(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.key.startswith(RECEIPTS_PREFIX) and ref.key.endswith(".json")


def make_handler(deps: Dependencies) -> Handler:
    def accepts(ref: S3ObjectRef) -> bool:
        return ref.bucket == deps.settings.processed_bucket and is_receipt_event(ref)

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        invocation = deps.leasing_until_deadline(context)

        def one(ref: S3ObjectRef) -> None:
            process(invocation, ref.bucket, ref.key)

        return process_event(event, context, one, logger, accepts)

    return handle


handler = entry_point(logger, lambda: make_handler(Dependencies.from_env(os.environ)))
