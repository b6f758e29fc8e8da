"""Archive handler: move each receipt's source object from RAW to ARCHIVE.

Triggered by PROCESSED ``receipts/`` objects (the transform's last write), so an input
is only archived once its outputs exist. For each receipt:

1. Read the receipt. A ``receipts/`` object that is not a sluice receipt (bad JSON, wrong
   shape, or naming a bucket other than RAW) is logged as an error with
   ``code=invalid_receipt`` and skipped: a retry cannot repair it, and dead-lettering
   would only move the same message around. Nothing is lost, because the RAW object is
   left untouched and still shows up in the inputs = receipts = archived check.
2. HeadObject the RAW key. When RAW holds a newer object than the receipt names (other
   ETag, or other version id when both are known) it is left alone: it has its own
   receipt, and its archiving will account for this version. When RAW no longer holds
   the key and ARCHIVE holds the receipt's ETag, the move already happened (duplicate
   delivery, or a retry after deleting): success. When neither holds it, the input was
   deleted from RAW after its receipt and before it could be archived: what it owns is
   removed and the version recorded ``deleted`` (:func:`sluice.deletion.remove_unarchived`).
3. Copy server side (no object bytes through the function) to
   ``keys.archive_key_for(kind, status, raw key)``, pinned to the exact source version
   (``VersionId`` when the bucket has versions, and ``CopySourceIfMatch`` always):
   ``CopyObject`` up to 5 GiB, above that a multipart copy with ``UploadPartCopy``
   (:mod:`sluice.s3copy`, shared with ``sluice reprocess``), which carries ContentType,
   Content-Encoding/Disposition/Language, Cache-Control, Expires and user metadata.
   Every copy gets the ``ARCHIVE_STORAGE_CLASS`` and the user metadata key
   ``sluice-source-etag`` (the RAW ETag), which is how step 2 recognises its own work.
   Object tags are not carried on either path (sluice does not use them, and a multipart
   copy would need extra tagging calls and permissions to carry them). A
   crash after copying and before deleting does not copy again: when ARCHIVE already
   holds the ETag, the retry goes straight to verification.
4. Verify before deleting anything (:func:`copy_problems`): sizes must be equal and the
   ``sluice-source-etag`` stamp present; ETags must be equal when both are plain MD5
   ETags (single-part, not SSE-KMS/SSE-C: those ETags are not content hashes, and a
   multipart copy's ETag is a hash of its parts); and every full-object checksum
   (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) that both sides report must be equal. A
   multipart copy asks S3 for a full-object checksum of the source's CRC algorithm, so a
   source with one (S3 has given every new object a CRC since 2024) is compared end to
   end. A failed verification raises and leaves RAW as it was; the retry copies again.
5. Account for every other version of the key first (docs/contracts.md, "Ownership
   and versions"): a copy of an older version under any of the key's archive names
   (``images/``, ``data/``, ``rejected/``) is copied to ``superseded/<version>/<key>``,
   verified, recorded in the version ledger, then made noncurrent (so a status flip
   leaves no stale copy, and a rejected newest image withdraws the older one from the
   library: :func:`withdraw_replaced_image`); every RAW version older than this one
   (``ListObjectVersions`` lists them newest first) is archived the same way and deleted
   from RAW by version id. Only then is this version copied (steps 3-4).
6. Delete the RAW object: on a versioned bucket the exact version that was copied (no
   delete marker is left, and a newer upload is never touched); on an unversioned bucket
   a conditional delete (``IfMatch`` the ETag), which fails harmlessly when the key was
   overwritten meanwhile. No older version can become current again: step 5 removed
   them all.
7. A processed image's metadata item learns where its original lies (archive bucket and
   time, :func:`sluice.image_items.record_archived`), only if the item still describes
   this version. Also on the "already archived" path, so a retry after a crash between
   the delete and this write still records it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice import deletion, image_items, s3io
from sluice.events import S3ObjectRef, normalize_etag
from sluice.keys import (
    RECEIPTS_PREFIX,
    SOURCE_ETAG_METADATA,
    SOURCE_VERSION_METADATA,
    archive_key_for,
    archive_keys_of,
    image_id,
    superseded_archive_key,
    version_token,
)
from sluice.leases import LEASE_MARGIN_SECONDS, LeaseTerms
from sluice.receipts import (
    read_receipt,
    version_record,
    version_record_key_of,
    write_version_record,
)
from sluice.runtime import make_logger, run
from sluice.s3copy import (
    CHECKSUM_FIELDS,
    carried_headers,
    copy_version,
    full_object_checksum,
)
from sluice.s3io import MIB, is_missing, is_precondition_failed
from sluice.settings import ArchiveSettings

MAX_RECEIPT_BYTES = 16 * MIB
"""Far above any real receipt (errors are capped at 1,000); reading stops there."""

_KMS_ENCRYPTION = ("aws:kms", "aws:kms:dsse")

Outcome = Literal[
    "archived", "already_archived", "superseded", "source_missing", "deleted", "skipped"
]


class ArchiveVerificationError(RuntimeError):
    """The archive copy does not match its source; the source was not deleted."""


class InvalidReceiptError(ValueError):
    """A receipts/ object that is not a sluice receipt."""


@dataclass(frozen=True)
class ArchiveRequest:
    """What one receipt asks for: move this RAW object to this ARCHIVE key."""

    source_bucket: str
    source_key: str
    source_etag: str
    source_version_id: str | None
    archive_key: str
    status: str
    kind: str
    replaces: Mapping[str, Any] | None = None
    """The receipt's ``replaces``: the previous version's receipt in brief, which goes into
    that version's ``superseded`` record (sluice.receipts, history)."""


def parse_receipt(body: bytes, raw_bucket: str) -> ArchiveRequest:
    """The archive request a receipt stands for; raises :class:`InvalidReceiptError`."""
    try:
        receipt = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidReceiptError(f"not JSON: {error}") from None
    if not isinstance(receipt, dict):
        raise InvalidReceiptError("not a JSON object")
    if receipt.get("receipt_version") != 1:
        raise InvalidReceiptError(f"unsupported receipt_version {receipt.get('receipt_version')!r}")
    status, kind, source = receipt.get("status"), receipt.get("kind"), receipt.get("source")
    if status not in ("processed", "rejected"):
        raise InvalidReceiptError(f"unknown status {status!r}")
    if kind not in ("data", "image", "unsupported"):
        raise InvalidReceiptError(f"unknown kind {kind!r}")
    if not isinstance(source, dict):
        raise InvalidReceiptError("source is not an object")
    bucket, key, etag = source.get("bucket"), source.get("key"), source.get("etag")
    version_id = source.get("version_id")
    if bucket != raw_bucket:
        # Never let a receipt point the function at another bucket.
        raise InvalidReceiptError(f"source bucket {bucket!r} is not the RAW bucket")
    if not isinstance(key, str) or not key:
        raise InvalidReceiptError("source.key is missing")
    if not isinstance(etag, str) or not normalize_etag(etag):
        raise InvalidReceiptError("source.etag is missing")
    if version_id is not None and not isinstance(version_id, str):
        raise InvalidReceiptError("source.version_id is not a string")
    return ArchiveRequest(
        source_bucket=bucket,
        source_key=key,
        source_etag=str(normalize_etag(etag)),
        source_version_id=version_id or None,
        archive_key=archive_key_for(kind, status, key),
        status=status,
        kind=kind,
        replaces=receipt["replaces"] if isinstance(receipt.get("replaces"), dict) else None,
    )


def head(s3: Any, bucket: str, key: str, **extra: Any) -> dict[str, Any] | None:
    """HeadObject with checksums, or None when there is no such object (or version)."""
    return s3io.head(s3, bucket, key, ChecksumMode="ENABLED", **extra)


def _plain_md5_etag(head_response: Mapping[str, Any]) -> str | None:
    etag = normalize_etag(head_response.get("ETag")) or ""
    if (
        len(etag) != 32
        or "-" in etag
        or head_response.get("ServerSideEncryption") in _KMS_ENCRYPTION
        or head_response.get("SSECustomerAlgorithm")
    ):
        return None
    return etag


def copy_problems(
    source: Mapping[str, Any], archived: Mapping[str, Any], source_etag: str
) -> list[str]:
    """Why ``archived`` is not a faithful copy of ``source`` (empty: it is). Pure."""
    problems = []
    if source.get("ContentLength") != archived.get("ContentLength"):
        problems.append(
            f"size {archived.get('ContentLength')} != source size {source.get('ContentLength')}"
        )
    stamp = archived.get("Metadata", {}).get(SOURCE_ETAG_METADATA)
    if stamp != source_etag:
        problems.append(f"{SOURCE_ETAG_METADATA} is {stamp!r}, expected {source_etag!r}")
    source_md5, archived_md5 = _plain_md5_etag(source), _plain_md5_etag(archived)
    if source_md5 and archived_md5 and source_md5 != archived_md5:
        problems.append(f"ETag {archived_md5} != source ETag {source_md5}")
    for field in CHECKSUM_FIELDS:
        ours, theirs = full_object_checksum(source, field), full_object_checksum(archived, field)
        if ours and theirs and ours != theirs:
            problems.append(f"{field} {theirs} != source {field} {ours}")
    return problems


def _copy_source(request: ArchiveRequest, source: Mapping[str, Any]) -> dict[str, str]:
    copy_source = {"Bucket": request.source_bucket, "Key": request.source_key}
    if source.get("VersionId"):
        copy_source["VersionId"] = str(source["VersionId"])
    return copy_source


def _destination_args(
    source: Mapping[str, Any], request: ArchiveRequest, storage_class: str
) -> dict[str, Any]:
    args = carried_headers(source)
    args["Metadata"] = {**source.get("Metadata", {}), SOURCE_ETAG_METADATA: request.source_etag}
    if request.source_version_id:
        args["Metadata"][SOURCE_VERSION_METADATA] = request.source_version_id
    args["StorageClass"] = storage_class
    return args


def _delete_source(s3: Any, request: ArchiveRequest, source: Mapping[str, Any]) -> bool:
    """Delete exactly the version that was archived; False if RAW changed meanwhile."""
    version_id = source.get("VersionId")
    try:
        if version_id:
            s3.delete_object(
                Bucket=request.source_bucket, Key=request.source_key, VersionId=version_id
            )
        else:
            s3.delete_object(
                Bucket=request.source_bucket, Key=request.source_key, IfMatch=str(source["ETag"])
            )
    except s3.exceptions.ClientError as error:
        if is_precondition_failed(error):
            return False
        raise
    return True


def _copy_verified(
    s3: Any, settings: ArchiveSettings, request: ArchiveRequest, source: Mapping[str, Any]
) -> None:
    """Copy ``source`` to ``request.archive_key`` unless a faithful copy is there; verify."""
    archived = head(s3, settings.archive_bucket, request.archive_key)
    if archived is None or copy_problems(source, archived, request.source_etag):
        size = int(source["ContentLength"])
        version_id, multipart = copy_version(
            s3,
            _copy_source(request, source),
            source,
            settings.archive_bucket,
            request.archive_key,
            _destination_args(source, request, settings.storage_class),
            multipart_threshold=settings.multipart_threshold,
            part_size=settings.part_size,
            max_concurrency=settings.max_concurrency,
        )
        extra = {"VersionId": version_id} if version_id else {}
        archived = head(s3, settings.archive_bucket, request.archive_key, **extra)
        if archived is None:
            raise ArchiveVerificationError(f"{request.archive_key}: copy is missing after copying")
        logger.info(
            "copied",
            bytes=size,
            multipart=multipart,
            source_key=request.source_key,
            archive_key=request.archive_key,
        )
    problems = copy_problems(source, archived, request.source_etag)
    if problems:
        raise ArchiveVerificationError(
            f"{request.archive_key}: archive copy does not match its source, source kept: "
            + "; ".join(problems)
        )


def _owned_by(held: Mapping[str, Any], request: ArchiveRequest) -> bool:
    """Is the archived copy ``held`` a copy of the version ``request`` names?"""
    metadata = held.get("Metadata", {})
    stamped_version = metadata.get(SOURCE_VERSION_METADATA)
    return metadata.get(SOURCE_ETAG_METADATA) == request.source_etag and (
        not stamped_version
        or not request.source_version_id
        or stamped_version == request.source_version_id
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
) -> list[str]:
    """Move every archived copy of an older version of the key to ``superseded/``.

    A key's current version is archived under one of three names (images/, data/,
    rejected/, by kind and status). A copy of another version under any of them (the
    key's status flipped, or the same name is about to be reused) is copied, verified and
    recorded under its version's own name, then made noncurrent, so the name that is
    current again describes the newest version only. Returns the names made noncurrent.
    """
    moved = []
    for name in archive_keys_of(request.source_key):
        held = head(s3, settings.archive_bucket, name)
        if held is None or _owned_by(held, request):
            continue
        metadata = held.get("Metadata", {})
        etag = normalize_etag(metadata.get(SOURCE_ETAG_METADATA)) or str(
            normalize_etag(held.get("ETag"))
        )
        version_id = metadata.get(SOURCE_VERSION_METADATA) or None
        older = ArchiveRequest(
            source_bucket=settings.archive_bucket,
            source_key=name,
            source_etag=etag,
            source_version_id=version_id,
            archive_key=superseded_archive_key(request.source_key, version_token(version_id, etag)),
            status="superseded",
            kind=request.kind,
        )
        _copy_verified(s3, settings, older, held)
        _record_superseded(
            s3,
            settings,
            request,
            replace(older, source_key=request.source_key),
            int(held["ContentLength"]),
        )
        try:
            s3.delete_object(Bucket=settings.archive_bucket, Key=name, IfMatch=str(held["ETag"]))
        except s3.exceptions.ClientError as error:
            if not is_precondition_failed(error):
                raise
        moved.append(name)
        logger.info("superseded an archived copy", archive_key=name, kept_as=older.archive_key)
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
) -> int:
    """Archive every RAW version older than ``current`` under ``superseded/``, record it,
    then delete it from RAW (module docstring: step 4). Returns how many."""
    versions = raw_versions(s3, request.source_bucket, request.source_key)
    ids = [version["VersionId"] for version in versions]
    if current.get("VersionId") not in ids:
        return 0
    older = versions[ids.index(current["VersionId"]) + 1 :]
    for version in older:
        source = head(s3, request.source_bucket, request.source_key, VersionId=version["VersionId"])
        if source is None:
            continue  # a concurrent run of this receipt got there first
        etag = str(normalize_etag(source.get("ETag")))
        superseded = ArchiveRequest(
            source_bucket=request.source_bucket,
            source_key=request.source_key,
            source_etag=etag,
            source_version_id=version["VersionId"],
            archive_key=superseded_archive_key(
                request.source_key, version_token(version["VersionId"], etag)
            ),
            status="superseded",
            kind=request.kind,
        )
        try:
            _copy_verified(s3, settings, superseded, source)
        except s3.exceptions.ClientError as error:
            if not is_missing(error):
                raise
            # Another run of this receipt archived it and deleted it from RAW meanwhile
            # (it copies, verifies and records before it deletes): nothing left to do.
            logger.info("older version archived by a concurrent run", source_key=request.source_key)
            continue
        _record_superseded(s3, settings, request, superseded, int(source["ContentLength"]))
        s3.delete_object(
            Bucket=request.source_bucket, Key=request.source_key, VersionId=version["VersionId"]
        )
        logger.info(
            "archived a superseded version",
            source_key=request.source_key,
            archive_key=superseded.archive_key,
        )
    return len(older)


def archive_object(
    s3: Any, settings: ArchiveSettings, request: ArchiveRequest, dynamodb: Any = None
) -> Outcome:
    """Move one RAW object to ARCHIVE (module docstring: steps 2-6). Idempotent."""
    log: dict[str, Any] = {"source_key": request.source_key, "archive_key": request.archive_key}
    source = head(s3, request.source_bucket, request.source_key)
    if source is None:
        held = head(s3, settings.archive_bucket, request.archive_key)
        if held and held.get("Metadata", {}).get(SOURCE_ETAG_METADATA) == request.source_etag:
            record_archived_image(dynamodb, settings, request)
            logger.info("already archived", **log)
            return "already_archived"
        # The key's newest version is gone: a copy of an older version still under the
        # key's names is kept as superseded (by the deleted one) and its image withdrawn,
        # before the receipt goes, so a retry still finds the receipt (issue 10).
        if _receipt_names_request(s3, settings, request):
            moved = supersede_archived_copies(s3, settings, request)
            if images_key_of(request.source_key) in moved:
                _withdraw(dynamodb, settings, request.source_key, keep=())
        removal = deletion.remove_unarchived(
            s3,
            dynamodb,
            deletion_settings(settings),
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

    supersede_archived_copies(s3, settings, request)
    if request.kind == "image" and request.archive_key != images_key_of(request.source_key):
        withdraw_replaced_image(s3, dynamodb, settings, request, source)
    supersede_older_versions(s3, settings, request, source)
    _copy_verified(s3, settings, request, source)
    if not _delete_source(s3, request, source):
        logger.info("RAW changed after the copy; the newer object is left to its receipt", **log)
    record_archived_image(dynamodb, settings, request)
    logger.info("archived", storage_class=settings.storage_class, **log)
    return "archived"


def deletion_settings(settings: ArchiveSettings) -> deletion.DeletionSettings:
    return deletion.DeletionSettings.of(settings)


def images_key_of(raw_key: str) -> str:
    return archive_key_for("image", "processed", raw_key)


def record_archived_image(
    dynamodb: Any, settings: ArchiveSettings, request: ArchiveRequest
) -> None:
    """Step 7: a processed image's item names its archived original (other inputs have none)."""
    if request.kind != "image" or request.archive_key != images_key_of(request.source_key):
        return
    if dynamodb is None:
        raise ValueError("recording an archived image needs a DynamoDB client")
    recorded = image_items.record_archived(
        dynamodb,
        settings.images_table,
        image_id(request.archive_key),
        bucket=settings.archive_bucket,
        source_etag=request.source_etag,
    )
    if not recorded:
        logger.info("the image's item describes another version (or none); left as it is")


def withdraw_replaced_image(
    s3: Any,
    dynamodb: Any,
    settings: ArchiveSettings,
    request: ArchiveRequest,
    current: Mapping[str, Any],
) -> None:
    """The key's newest version is a rejected image: withdraw the older one from the
    library (item, memberships, counts). Its ``images/`` copy is already noncurrent, so no
    new labelling run can start on it; one still running holds the item's lease, and the
    withdrawal waits for it (ImageBusyError: the message is retried)."""
    if dynamodb is None:
        raise ValueError("withdrawing an image needs a DynamoDB client")
    versions = raw_versions(s3, request.source_bucket, request.source_key)
    ids = [version["VersionId"] for version in versions]
    position = ids.index(current["VersionId"]) if current.get("VersionId") in ids else -1
    newer = versions[: position + 1]
    # An item written meanwhile for a version uploaded after this one is not withdrawn.
    keep = {request.source_etag} | {str(normalize_etag(v.get("ETag"))) for v in newer}
    keep |= {str(v["VersionId"]) for v in newer}
    if _withdraw(dynamodb, settings, request.source_key, keep=keep):
        logger.info("withdrew the older image of a key whose newest version is rejected")


def _withdraw(
    dynamodb: Any, settings: ArchiveSettings, raw_key: str, *, keep: Collection[str]
) -> bool:
    if dynamodb is None:
        raise ValueError("withdrawing an image needs a DynamoDB client")
    now = time.time()
    return image_items.withdraw_under_lease(
        dynamodb,
        settings.images_table,
        settings.labels_table,
        image_id(images_key_of(raw_key)),
        owner=f"archive/{uuid.uuid4().hex}",
        now=now,
        until=now + settings.lease_seconds,
        keep_versions=keep,
    )


def _receipt_names_request(s3: Any, settings: ArchiveSettings, request: ArchiveRequest) -> bool:
    """Is the key's receipt still the one ``request`` came from (not removed, not newer)?"""
    receipt = read_receipt(s3, settings.processed_bucket, request.source_key)
    source = (receipt or {}).get("source") or {}
    return (
        normalize_etag(source.get("etag")) == request.source_etag
        and (source.get("version_id") or None) == request.source_version_id
    )


def archive_receipt(
    s3: Any,
    settings: ArchiveSettings,
    receipt_bucket: str,
    receipt_key: str,
    dynamodb: Any = None,
) -> Outcome:
    """Read one receipt and carry out what it asks (module docstring: step 1)."""
    try:
        body = s3.get_object(Bucket=receipt_bucket, Key=receipt_key)["Body"].read(
            MAX_RECEIPT_BYTES + 1
        )
    except s3.exceptions.NoSuchKey:
        logger.warning("receipt is gone; a newer event will name its replacement")
        return "skipped"
    try:
        if len(body) > MAX_RECEIPT_BYTES:
            raise InvalidReceiptError(f"larger than {MAX_RECEIPT_BYTES} bytes")
        request = parse_receipt(body, settings.raw_bucket)
    except InvalidReceiptError as error:
        logger.error(
            "not a sluice receipt; skipped, nothing archived",
            code="invalid_receipt",
            receipt_key=receipt_key,
            reason=str(error),
        )
        return "skipped"
    return archive_object(s3, settings, request, dynamodb)


def is_receipt_event(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.key.startswith(RECEIPTS_PREFIX) and ref.key.endswith(".json")


SETTINGS = ArchiveSettings.from_env(os.environ)
PROCESSED_BUCKET = SETTINGS.processed_bucket
logger = make_logger("archive")
s3_client = boto3.client("s3")
dynamodb_client = boto3.client("dynamodb")


def _is_receipt_event(ref: S3ObjectRef) -> bool:
    return ref.bucket == PROCESSED_BUCKET and is_receipt_event(ref)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A lease this invocation takes outlives its deadline by the margin only: a run killed
    # halfway (timeout, out of memory) holds the key no longer than that, as in tag.
    remaining = context.get_remaining_time_in_millis() / 1000
    settings = replace(SETTINGS, lease_seconds=remaining + LEASE_MARGIN_SECONDS)

    def process(ref: S3ObjectRef) -> None:
        archive_receipt(s3_client, settings, ref.bucket, ref.key, dynamodb_client)

    return run(event, context, process, logger, accepts=_is_receipt_event)
