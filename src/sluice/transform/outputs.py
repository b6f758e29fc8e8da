"""A RAW key's PROCESSED outputs kept in line with its receipt, whatever its versions do.

Outputs have stable names derived from the RAW key (``data/<key>``, ``errors/<key>.jsonl``,
``thumbnails/<size>/<key>.<ext>``: :func:`possible_outputs`), so every version of a key
writes over the same names, and PROCESSED must end up holding exactly what the key's
receipt lists. Three cases break that, and each is mended here, under the key's lease
(:mod:`sluice.leases`), where no other version of the key writes:

* **left behind**: the receipt being replaced lists outputs the new one does not (an
  errors report, data of a now-rejected file, thumbnails of a now-rejected image or of a
  size no longer configured): :func:`left_behind` names them, and they are removed before
  the new receipt is written;
* **deleted before it was processed**: a key gone from RAW with no receipt owns nothing;
  outputs a delivery that died mid-way left go, and the version ledger says ``deleted``
  (:func:`forget_deleted`);
* **deleted while it was transformed**: the version's fresh outputs go, except where they
  took the names of what an earlier version's receipt lists: those are put back as that
  receipt wrote them (:func:`deleted_while_processing`, :func:`restore_outputs`).

Deletes HEAD first (:func:`delete_if_present`), so no delete marker is made for a name that
never existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sluice import image_items
from sluice.events import S3ObjectRef, normalize_etag
from sluice.keys import (
    DATA_PREFIX,
    ERRORS_PREFIX,
    derived_key,
    image_id,
    images_archive_key,
    thumbnail_key,
)
from sluice.receipts import (
    Receipt,
    read_receipt,
    source_of,
    version_record,
    write_version_record,
)
from sluice.runtime import make_logger
from sluice.s3io import head
from sluice.settings import TransformSettings
from sluice.thumbnails import OUTPUT_FORMATS
from sluice.timestamps import parse_utc_iso
from sluice.transform.sources import Deleted, Source, kind_of, version_id_by_etag

logger = make_logger("transform")


def output_entry(
    bucket: str,
    key: str,
    content_type: str,
    size: int,
    *,
    version_id: str | None,
    etag: str | None,
) -> dict[str, Any]:
    """One output as a receipt lists it, with the version id and ETag S3 answered the write
    with: they say exactly which version of the name is this receipt's
    (:func:`restore_outputs`)."""
    return {
        "bucket": bucket,
        "key": key,
        "content_type": content_type,
        "size": size,
        "version_id": version_id or None,
        "etag": normalize_etag(etag),
    }


def possible_outputs(settings: TransformSettings, key: str) -> list[str]:
    """Every PROCESSED name a version of ``key`` can produce, receipt aside."""
    kind = kind_of(key)
    if kind == "data":
        return [derived_key(DATA_PREFIX, key), derived_key(ERRORS_PREFIX, key, ".jsonl")]
    if kind == "image":
        extension = OUTPUT_FORMATS[settings.thumbnail_format].extension
        return [thumbnail_key(key, size, extension) for size in settings.thumbnail_sizes]
    return []


def delete_if_present(s3: Any, bucket: str, keys: list[str]) -> None:
    """Remove outputs an earlier version left; HEAD first so no delete marker is made for
    keys that never existed."""
    for key in keys:
        if head(s3, bucket, key) is None:
            continue
        s3.delete_object(Bucket=bucket, Key=key)
        logger.info("deleted an output of an earlier version", output_key=key)


def previous_receipt(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The receipt this one overwrites, for its ``replaces``; one that is not JSON (nothing
    sluice wrote) has no history to keep and must not stop the new receipt."""
    try:
        return read_receipt(s3, bucket, key)
    except ValueError:
        logger.warning("the previous receipt is not JSON; its history is not kept")
        return None


def left_behind(previous: Mapping[str, Any] | None, receipt: Receipt, bucket: str) -> list[str]:
    """PROCESSED outputs the receipt being replaced lists and this one does not: those of
    settings that changed since (a thumbnail size dropped, a reprocess after a fix). They
    belong to the same key (the receipt is at the key's own name), so they are removed
    before the new receipt is written, and PROCESSED matches the receipt again."""
    if not previous or (previous.get("source") or {}).get("key") != receipt.source["key"]:
        return []
    kept = {str(output["key"]) for output in receipt.outputs}
    return [
        str(output["key"])
        for output in previous.get("outputs") or []
        if isinstance(output, dict)
        and output.get("bucket") == bucket
        and isinstance(output.get("key"), str)
        and output["key"] not in kept
    ]


def forget_deleted(
    s3: Any, dynamodb: Any, settings: TransformSettings, ref: S3ObjectRef, deleted: Deleted
) -> None:
    """A key that never got a receipt and is gone from RAW: nothing of it stays, and the
    ledger says so, so the audit need not look for it forever. Outputs (and an image's
    item) can exist when an earlier delivery died between writing them and its receipt
    (a timeout, a crash); they are the key's own, and no other version writes any while
    the caller holds the key's lease."""
    delete_if_present(s3, settings.processed_bucket, possible_outputs(settings, ref.key))
    if kind_of(ref.key) == "image":
        item_id = image_id(images_archive_key(ref.key))
        if image_items.forget_unreceipted(dynamodb, settings.images_table, item_id, deleted.etag):
            logger.info("removed the image item a run that died before its receipt wrote")
    version_id = ref.version_id or version_id_by_etag(s3, ref.bucket, ref.key, deleted.etag)
    source = source_of(ref, etag=deleted.etag, version_id=version_id, size=ref.size)
    record = version_record(source, "deleted", deleted_from="raw")
    if write_version_record(s3, settings.processed_bucket, record, only_if_absent=True):
        logger.info("input deleted from RAW before it was processed; recorded in the ledger")
    else:
        # A late or repeated event of a version the ledger already accounts for: removed
        # after its receipt (decision 30), superseded, or recorded by an earlier delivery.
        logger.info("deleted version already recorded in the ledger; kept as it is")


def deleted_while_processing(s3: Any, bucket: str, source: Source, receipt: Receipt) -> None:
    """The object was deleted from RAW while it was transformed: nothing of it stays.

    Its outputs have the names of the key's current receipt's, if an earlier version has
    one (issue 10): those are put back as that receipt wrote them (:func:`restore_outputs`),
    the others deleted, so the receipt lists exactly what PROCESSED holds."""
    current = read_receipt(s3, bucket, source.ref.key)
    owned = {
        str(output["key"])
        for output in (current or {}).get("outputs") or []
        if output.get("bucket") == bucket
    }
    delete_if_present(
        s3, bucket, [str(o["key"]) for o in receipt.outputs if str(o["key"]) not in owned]
    )
    if current is not None and owned:
        lost = restore_outputs(s3, bucket, current)
        if lost:
            logger.warning(
                "outputs of the key's receipt could not be restored (their versions expired)",
                code="outputs_lost",
                outputs_lost=len(lost),
            )
    # Named by the version id S3 answered with; a late duplicate of an event without one
    # finds the same version by its ETag (:func:`forget_deleted`) and this record with it.
    record = version_record(source.receipt_source(), "deleted", deleted_from="raw")
    write_version_record(s3, bucket, record, only_if_absent=True)
    logger.info("input deleted from RAW while it was transformed; outputs removed")


def restore_outputs(s3: Any, bucket: str, receipt: Mapping[str, Any]) -> list[str]:
    """Put back each PROCESSED output ``receipt`` lists as that receipt's transform wrote
    it (PROCESSED is versioned): the version the receipt names by version id, else (a
    bucket without versioning) the newest of its ETag. Returns the keys whose version is
    gone (expired). A receipt written before outputs named their version is matched as it
    was then: the newest version of the listed size written before the receipt."""
    lost = []
    written_before = _legacy_cutoff(receipt)
    for output in receipt.get("outputs") or []:
        if output.get("bucket") != bucket:
            continue
        key = str(output["key"])
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
        versions = [v for v in listing.get("Versions", []) if v["Key"] == key]
        chosen = next((v for v in versions if _is_written_version(v, output, written_before)), None)
        if chosen is None:
            lost.append(key)
        elif not chosen.get("IsLatest"):
            s3.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": bucket, "Key": key, "VersionId": chosen["VersionId"]},
            )
            logger.info("restored an output of the key's receipt", output_key=key)
    return lost


def _legacy_cutoff(receipt: Mapping[str, Any]) -> datetime | None:
    """For receipts written before outputs named their version: their outputs were written
    before this (``processed_at``; LastModified may be truncated to the second, so that
    second still counts). None when it is no time (an error only if an output needs it)."""
    written = parse_utc_iso(receipt.get("processed_at"))
    return None if written is None else written.replace(microsecond=0) + timedelta(seconds=1)


def _is_written_version(
    version: Mapping[str, Any], output: Mapping[str, Any], written_before: datetime | None
) -> bool:
    """Is ``version`` (a ListObjectVersions entry) the one ``output`` was?"""
    if output.get("version_id"):
        return bool(version["VersionId"] == output["version_id"])
    if output.get("etag"):
        return normalize_etag(version.get("ETag")) == normalize_etag(str(output["etag"]))
    # A receipt written before outputs named their version: by size, written before it.
    if written_before is None:
        raise ValueError("receipt processed_at is no time")
    return bool(version["Size"] == output.get("size") and version["LastModified"] < written_before)
