"""Transform handler: turn each new RAW object into its outputs and, last, its receipt.

What an object becomes depends on its extension (case-insensitive):

* ``.json`` (one JSON array of records), ``.jsonl``/``.ndjson`` (JSON Lines), under a
  dataset prefix, or at the bucket root when a dataset takes root-level files (the
  environment's ``DATASETS``, ``sluice.datasets``): every record is validated against the
  dataset's schema; valid records, projected, go to PROCESSED ``data/<raw key>`` in the input's
  format; the invalid-record report (bounded) goes to ``errors/<raw key>.jsonl``. Both are
  streamed (``sluice.records``, ``MultipartWriter``): memory does not grow with the file.
* ``.jpg``/``.jpeg``/``.png``/``.webp``/``.gif``/``.tif``/``.tiff``: thumbnails to
  ``thumbnails/<size>/<raw key>.<ext>`` (``sluice.images``; the source's extension is kept
  so ``a.png`` and ``a.jpg`` never share one, ``sluice.keys``) and the image's
  metadata item in the images table.
* anything else: rejected, ``unsupported_type``.

Status rule: **processed** when the input could be read as a whole, even if some or all
of its records are invalid (they are listed in the receipt and the report); **rejected**
when it could not (empty, not UTF-8, malformed JSON, wrong top-level shape, too deep, not
the image format its name says, truncated, a decompression bomb, no dataset for its
prefix, unsupported type). A rejection is a verdict on the input and is never retried;
unexpected failures (throttling, network, bugs) raise, so the message is retried and
finally dead-lettered.

Idempotency and ordering (DESIGN decision 4): the object is read with ``IfMatch`` the
event's ETag. If it is gone or has changed, a newer upload (with its own event) or the
archive handler got there first: the event is a duplicate when the receipt already names
this ETag, stale otherwise, and in both cases nothing is done (a key that is gone and has
no receipt at all was deleted before it could be processed: under the key's lease, any
outputs a delivery that died mid-way left are removed, and the version ledger says so).
Every output is a PUT derived only from the input and the metadata item is an UpdateItem
that sets ``created_at`` once, so a retry after a crash redoes the same work; the
receipt is the last write. Outputs a previous version of the same key left behind and
this version does not produce (an errors report, data of a now-rejected file, thumbnails
of a now-rejected image, or of a size no longer configured: whatever the receipt being
replaced lists and the new one does not) are deleted so PROCESSED always matches the
receipt. The new receipt names the one it replaces (``replaces``, sluice.receipts).

Newest version wins (docs/contracts.md, "Ownership and versions"): the work on a key runs
under its lease (:mod:`sluice.leases`), so two versions of one key are never transformed
at once, and once the outputs exist the RAW key is looked at again
(:func:`current_verdict`): still this version -> image item, then receipt; a newer
version -> no receipt (its transform, waiting for the lease, overwrites these outputs, and
the archive handler records this version as superseded); gone -> outputs removed and the
version recorded as deleted. "Newest" is S3's current version, the last PUT to complete.

Records are personal data: logs carry keys, counts and codes, never a record or a value;
receipts and reports name a record's fields only as the schema does (``sluice.datasets``).

Budgets (a verdict on the file, so a rejection on the first attempt, never a retry into the
dead-letter queue): a data file larger than ``MAX_DATA_BYTES`` is rejected unread
(``data_too_large``). Time comes from the Lambda context as a :class:`Deadline` argument:
the records are read until less than the margin is left (5 s, or a fifth of a shorter
invocation: :attr:`Deadline.margin_ms`), the margin being what
aborting the uploads and writing the receipt take. A file stopped there is rejected
(``time_budget_exceeded``) when, at the pace it went, it could not finish within a whole
invocation's time; otherwise it only had too little of this invocation's time (it came
after batch-mates, or had less than half an invocation to show its pace) and the message is
retried (:class:`OutOfTimeRetryError`). Either way the multipart uploads are aborted, so
nothing half-written remains.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError

from sluice import image_items
from sluice.datasets import Dataset
from sluice.events import S3ObjectRef, normalize_etag
from sluice.images import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    ImageRejectedError,
    ImageResult,
    make_thumbnails,
)
from sluice.keys import (
    DATA_PREFIX,
    ERRORS_PREFIX,
    archive_key_for,
    derived_key,
    image_id,
    split_extension,
    thumbnail_key,
)
from sluice.leases import LEASE_MARGIN_SECONDS, LeaseTerms, key_lease, release_own
from sluice.metrics import Outcome
from sluice.receipts import (
    MAX_RECEIPT_ERRORS,
    REPROCESS_METADATA,
    Kind,
    Receipt,
    read_receipt,
    replacement,
    source_of,
    version_record,
    write_receipt,
    write_version_record,
)
from sluice.records import (
    DATA_FORMATS,
    FileRejectedError,
    OutOfTimeError,
    RecordFormat,
    transform_records,
)
from sluice.runtime import make_logger, run
from sluice.s3io import MultipartWriter, head, is_gone_or_changed
from sluice.settings import TransformSettings

DATA_CONTENT_TYPES = {"array": "application/json", "lines": "application/x-ndjson"}
ERRORS_CONTENT_TYPE = "application/x-ndjson"


TIME_MARGIN_MS = 5_000
"""Time kept for aborting the uploads, removing stale outputs and writing the receipt."""
TIME_MARGIN_SHARE = 0.2
"""A short invocation keeps this share of its time instead: a fixed 5 s would leave a 3 s
function nothing to read with (the chaos environment's functions are that short)."""


@dataclass(frozen=True)
class Deadline:
    """How much of the invocation's time is left (the Lambda context's clock), and how much
    the invocation had when it began: a plain argument, so tests pass a fake clock."""

    remaining_ms: Callable[[], int]
    budget_ms: int

    @classmethod
    def of(cls, context: Any) -> Deadline:
        return cls(context.get_remaining_time_in_millis, context.get_remaining_time_in_millis())

    @property
    def margin_ms(self) -> int:
        """Time kept for the clean-up and the receipt: ``TIME_MARGIN_MS``, or a fifth of an
        invocation shorter than 25 s."""
        return min(TIME_MARGIN_MS, int(self.budget_ms * TIME_MARGIN_SHARE))

    @classmethod
    def unbounded(cls) -> Deadline:
        """No limit: scripts and benchmarks that call the logic outside Lambda."""
        return cls(lambda: 2**62, 2**62)


class OutOfTimeRetryError(Exception):
    """A data file could finish in a fresh invocation but not in what was left of this one:
    the message is retried (nothing was written)."""


@dataclass(frozen=True)
class Source:
    """The object as S3 has it now, confirmed to be the one the event announced."""

    ref: S3ObjectRef
    etag: str
    version_id: str | None
    size: int
    body: Any
    metadata: Mapping[str, str] = field(default_factory=dict)
    """The object's user metadata (``sluice reprocess`` marks its copies there)."""

    def receipt_source(self) -> dict[str, Any]:
        return source_of(self.ref, etag=self.etag, version_id=self.version_id, size=self.size)


@dataclass(frozen=True)
class Clients:
    s3: Any
    dynamodb: Any


def kind_of(key: str) -> Kind:
    _, extension = split_extension(key)
    if extension in DATA_FORMATS:
        return "data"
    if extension in INPUT_FORMATS:
        return "image"
    return "unsupported"


# --- reading the source --------------------------------------------------------------------


def _receipt_names(receipt: Mapping[str, Any] | None, etag: str, version_id: str | None) -> bool:
    if not receipt:
        return False
    source = receipt.get("source") or {}
    if normalize_etag(source.get("etag")) != etag:
        return False
    return version_id is None or source.get("version_id") in (None, version_id)


def _previous_receipt(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The receipt this one overwrites, for its ``replaces``; one that is not JSON (nothing
    sluice wrote) has no history to keep and must not stop the new receipt."""
    try:
        return read_receipt(s3, bucket, key)
    except ValueError:
        logger.warning("the previous receipt is not JSON; its history is not kept")
        return None


def _outputs_left_behind(
    previous: Mapping[str, Any] | None, receipt: Receipt, bucket: str
) -> list[str]:
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


def _key_is_gone(s3: Any, ref: S3ObjectRef) -> bool:
    return head(s3, ref.bucket, ref.key) is None


@dataclass(frozen=True)
class Deleted:
    """The event's object is gone from RAW and its key has no receipt: it was deleted
    before it could be processed (:func:`forget_deleted` settles it, under the lease)."""

    etag: str


def possible_outputs(settings: TransformSettings, key: str) -> list[str]:
    """Every PROCESSED name a version of ``key`` can produce, receipt aside."""
    kind = kind_of(key)
    if kind == "data":
        return [derived_key(DATA_PREFIX, key), derived_key(ERRORS_PREFIX, key, ".jsonl")]
    if kind == "image":
        extension = OUTPUT_FORMATS[settings.thumbnail_format].extension
        return [thumbnail_key(key, size, extension) for size in settings.thumbnail_sizes]
    return []


def forget_deleted(
    s3: Any, settings: TransformSettings, ref: S3ObjectRef, deleted: Deleted
) -> None:
    """A key that never got a receipt and is gone from RAW: nothing of it stays, and the
    ledger says so, so the audit need not look for it forever. Outputs can exist when an
    earlier delivery died between writing them and looking at RAW again (a timeout, a
    crash); they are the key's own, and no other version writes any while the caller
    holds the key's lease."""
    _delete_if_present(s3, settings.processed_bucket, possible_outputs(settings, ref.key))
    version_id = ref.version_id or _version_id_by_etag(s3, ref.bucket, ref.key, deleted.etag)
    source = source_of(ref, etag=deleted.etag, version_id=version_id, size=ref.size)
    record = version_record(source, "deleted", deleted_from="raw")
    if write_version_record(s3, settings.processed_bucket, record, only_if_absent=True):
        logger.info("input deleted from RAW before it was processed; recorded in the ledger")
    else:
        # A late or repeated event of a version the ledger already accounts for: removed
        # after its receipt (decision 30), superseded, or recorded by an earlier delivery.
        logger.info("deleted version already recorded in the ledger; kept as it is")


def _version_id_by_etag(s3: Any, bucket: str, key: str, etag: str) -> str | None:
    """The version of ``key`` with ``etag`` (the newest, if the same bytes were uploaded
    twice), for an event that carries no version id (moto's; AWS's carry one on a
    versioned bucket). A deleted version is noncurrent behind the delete marker and keeps
    its ETag; None when RAW holds no such version or has no versions (``"null"``), and the
    ledger names the version by its ETag instead (:func:`sluice.keys.version_token`)."""
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for version in page.get("Versions", []):
            if version["Key"] == key and normalize_etag(version.get("ETag")) == etag:
                found = str(version.get("VersionId") or "")
                return found if found and found != "null" else None
    return None


def fetch_source(
    clients: Clients, settings: TransformSettings, ref: S3ObjectRef, *, with_body: bool
) -> Source | Deleted | None:
    """The object the event names, :class:`Deleted` when it was deleted before it got a
    receipt, or None when the event is a duplicate or stale."""
    s3 = clients.s3
    etag = ref.etag
    if ref.version_id is not None and etag is not None:
        existing = read_receipt(s3, settings.processed_bucket, ref.key)
        if _receipt_names(existing, etag, ref.version_id):
            logger.info("duplicate event: this version already has its receipt")
            return None
    if etag is None:
        # Some emitters omit the ETag: take the current object as the one meant.
        current = head(s3, ref.bucket, ref.key)
        if current is None:
            logger.info("stale event: the object no longer exists")
            return None
        etag = normalize_etag(current.get("ETag")) or ""
    # The quoted form is what HTTP specifies (and what every S3 implementation accepts).
    request = {"Bucket": ref.bucket, "Key": ref.key, "IfMatch": f'"{etag}"'}
    try:
        response = s3.get_object(**request) if with_body else s3.head_object(**request)
    except ClientError as error:
        if not is_gone_or_changed(error):
            raise
        existing = read_receipt(s3, settings.processed_bucket, ref.key)
        if _receipt_names(existing, etag, ref.version_id):
            logger.info("duplicate event: already processed, and the object has moved on")
        elif (
            existing is None
            and _key_is_gone(s3, ref)
            # Asked again after RAW: the archive handler empties RAW only once a receipt
            # exists, so a newer version archived between the two looks shows up here.
            and read_receipt(s3, settings.processed_bucket, ref.key) is None
        ):
            return Deleted(etag)
        else:
            logger.info("stale event: the object was replaced or deleted since")
        return None
    version_id = response.get("VersionId")
    if ref.version_id is not None and version_id not in (None, ref.version_id):
        # Same bytes uploaded again: the newer version's own event will handle it.
        if with_body:
            response["Body"].close()
        logger.info("stale event: a newer version with the same content exists")
        return None
    return Source(
        ref=ref,
        etag=etag,
        version_id=version_id or ref.version_id,
        size=int(response.get("ContentLength", 0)),
        body=response.get("Body"),
        metadata=response.get("Metadata") or {},
    )


# --- outputs -------------------------------------------------------------------------------


def _output(bucket: str, key: str, content_type: str, size: int) -> dict[str, Any]:
    return {"bucket": bucket, "key": key, "content_type": content_type, "size": size}


def _delete_if_present(s3: Any, bucket: str, keys: list[str]) -> None:
    """Remove outputs an earlier version left; HEAD first so no delete marker is made for
    keys that never existed."""
    for key in keys:
        if head(s3, bucket, key) is None:
            continue
        s3.delete_object(Bucket=bucket, Key=key)
        logger.info("deleted an output of an earlier version", output_key=key)


class _LazyWriter:
    """Starts its upload on the first write, so no errors report exists without errors."""

    def __init__(self, factory: Callable[[], MultipartWriter]) -> None:
        self._factory = factory
        self.writer: MultipartWriter | None = None

    def write(self, data: bytes) -> int:
        if self.writer is None:
            self.writer = self._factory()
        return self.writer.write(data)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def complete(self) -> None:
        if self.writer is not None:
            self.writer.complete()


def _rejected(
    source: Source, kind: Kind, error: dict[str, Any], dataset: str | None = None
) -> Receipt:
    return Receipt(
        status="rejected",
        kind=kind,
        source=source.receipt_source(),
        dataset=dataset,
        errors=[error],
    )


# --- data ----------------------------------------------------------------------------------


def transform_data(
    clients: Clients, settings: TransformSettings, source: Source, deadline: Deadline
) -> Receipt:
    key = source.ref.key
    bucket = settings.processed_bucket
    data_key = derived_key(DATA_PREFIX, key)
    errors_key = derived_key(ERRORS_PREFIX, key, ".jsonl")
    dataset = settings.datasets.for_key(key)
    if dataset is None:
        return _rejected(
            source,
            "data",
            {
                "code": "unknown_dataset",
                "message": "no dataset for this key; data files must be"
                f" {settings.datasets.placement()}",
            },
        )
    if source.size == 0 or source.size > settings.max_data_bytes:
        _delete_if_present(clients.s3, bucket, [data_key, errors_key])
        error = {"code": "empty_file", "message": "empty file"}
        if source.size:
            error = {
                "code": "data_too_large",
                "message": f"data file is {source.size} bytes, larger than the limit of"
                f" {settings.max_data_bytes} bytes",
            }
        return _rejected(source, "data", error, dataset.name)
    fmt = DATA_FORMATS[split_extension(key)[1]]
    return _stream_records(
        clients, settings, dataset, source, fmt, (data_key, errors_key), deadline
    )


def _time_rejection(
    source: Source, deadline: Deadline, started_ms: int, bytes_read: int
) -> dict[str, Any]:
    """The ``time_budget_exceeded`` error, or :class:`OutOfTimeRetryError` when the file
    would finish within a whole invocation at the pace it went, or had less than half an
    invocation to show its pace (it came after slow batch-mates)."""
    spent_ms = max(started_ms - deadline.remaining_ms(), 1)
    done = bytes_read / source.size
    usable_ms = deadline.budget_ms - deadline.margin_ms
    had_ms = started_ms - deadline.margin_ms
    if had_ms < usable_ms / 2 or spent_ms < done * usable_ms:
        raise OutOfTimeRetryError(
            f"stopped after {bytes_read} of {source.size} bytes; retried with a whole invocation"
        )
    return {
        "code": "time_budget_exceeded",
        "message": f"the file cannot be processed within the function's time: {bytes_read}"
        f" of {source.size} bytes were read in {spent_ms} ms, of the {usable_ms} ms an"
        " invocation has",
    }


def _stream_records(
    clients: Clients,
    settings: TransformSettings,
    dataset: Dataset,
    source: Source,
    fmt: RecordFormat,
    keys: tuple[str, str],
    deadline: Deadline,
) -> Receipt:
    data_key, errors_key = keys
    s3 = clients.s3
    bucket = settings.processed_bucket
    data_out = MultipartWriter(s3, bucket, data_key, content_type=DATA_CONTENT_TYPES[fmt])
    errors_out = _LazyWriter(
        lambda: MultipartWriter(s3, bucket, errors_key, content_type=ERRORS_CONTENT_TYPE)
    )

    def report(error: dict[str, Any]) -> None:
        errors_out.write(json.dumps(error, ensure_ascii=False).encode("utf-8") + b"\n")

    started_ms = deadline.remaining_ms()

    def out_of_time() -> bool:
        return deadline.remaining_ms() < deadline.margin_ms

    try:
        result = transform_records(
            source.body,
            fmt,
            dataset,
            data_out,
            report,
            max_errors=MAX_RECEIPT_ERRORS,
            out_of_time=out_of_time,
        )
    except (FileRejectedError, OutOfTimeError) as stop:
        data_out.abort()
        errors_out.abort()
        if isinstance(stop, OutOfTimeError):
            error = _time_rejection(source, deadline, started_ms, stop.bytes_read)
        else:
            error = stop.as_error()
        _delete_if_present(s3, bucket, [data_key, errors_key])
        return _rejected(source, "data", error, dataset.name)
    except BaseException:
        data_out.abort()
        errors_out.abort()
        raise
    data_out.complete()
    errors_out.complete()
    outputs = [_output(bucket, data_key, DATA_CONTENT_TYPES[fmt], data_out.bytes_written)]
    if errors_out.writer is not None:
        outputs.append(
            _output(bucket, errors_key, ERRORS_CONTENT_TYPE, errors_out.writer.bytes_written)
        )
    else:
        _delete_if_present(s3, bucket, [errors_key])
    if result.bom_skipped:
        logger.info("UTF-8 byte order mark skipped")
    return Receipt(
        status="processed",
        kind="data",
        source=source.receipt_source(),
        dataset=dataset.name,
        outputs=outputs,
        errors=result.errors,
        errors_truncated=result.errors_truncated,
        stats=result.stats(),
    )


# --- images --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageOutcome:
    """A transformed image: its receipt, and the metadata item to write once it is known
    to be its key's current version (None when rejected)."""

    receipt: Receipt
    result: ImageResult | None = None
    thumbnails: Mapping[str, dict[str, Any]] | None = None
    """By longest side: the item's thumbnail entries (``image_items.thumbnail_entry``)."""


def transform_image(clients: Clients, settings: TransformSettings, source: Source) -> ImageOutcome:
    key = source.ref.key
    output = OUTPUT_FORMATS[settings.thumbnail_format]
    thumbnail_keys = [
        thumbnail_key(key, size, output.extension) for size in settings.thumbnail_sizes
    ]
    try:
        if source.size > settings.max_image_bytes:
            raise ImageRejectedError(
                "image_too_large",
                f"image is {source.size} bytes, larger than the limit of"
                f" {settings.max_image_bytes} bytes",
            )
        if source.size == 0:
            raise ImageRejectedError("empty_file", "empty file")
        data = source.body.read()
        result = make_thumbnails(
            data,
            expected_format=INPUT_FORMATS[split_extension(key)[1]],
            sizes=settings.thumbnail_sizes,
            output_format=settings.thumbnail_format,
            quality=settings.thumbnail_quality,
            max_pixels=settings.max_image_pixels,
        )
    except ImageRejectedError as rejection:
        _delete_if_present(clients.s3, settings.processed_bucket, thumbnail_keys)
        return ImageOutcome(
            _rejected(source, "image", {"code": rejection.code, "message": rejection.message})
        )
    outputs = []
    entries = {}
    for thumbnail in result.thumbnails:
        out_key = thumbnail_key(key, thumbnail.size, output.extension)
        clients.s3.put_object(
            Bucket=settings.processed_bucket,
            Key=out_key,
            Body=thumbnail.data,
            ContentType=thumbnail.content_type,
        )
        entries[str(thumbnail.size)] = image_items.thumbnail_entry(
            settings.processed_bucket,
            out_key,
            width=thumbnail.width,
            height=thumbnail.height,
            size_bytes=len(thumbnail.data),
            content_type=thumbnail.content_type,
        )
        outputs.append(
            _output(settings.processed_bucket, out_key, thumbnail.content_type, len(thumbnail.data))
        )
    for note in result.info.notes:
        logger.info(note)
    receipt = Receipt(
        status="processed", kind="image", source=source.receipt_source(), outputs=outputs
    )
    return ImageOutcome(receipt, result, entries)


def put_image_item(
    dynamodb: Any,
    table: str,
    source: Source,
    result: ImageResult,
    thumbnails: Mapping[str, dict[str, Any]],
) -> None:
    """Create or refresh the image's item (docs/contracts.md, "Image metadata item").

    The tag handler's attributes (labels, lease) and the archive handler's (where the
    original lies) stay; the shape-1 attributes ``thumbnail_keys`` and ``bytes`` are
    removed, so a refreshed item has one shape.
    """
    info = result.info
    archive_key = archive_key_for("image", "processed", source.ref.key)
    image_items.put_image_item(
        dynamodb,
        table,
        image_id(archive_key),
        {
            "item_version": image_items.ITEM_VERSION,
            "source_bucket": source.ref.bucket,
            "source_key": source.ref.key,
            "source_etag": source.etag,
            "source_bytes": info.bytes,
            "archive_key": archive_key,
            "thumbnails": {size: dict(entry) for size, entry in thumbnails.items()},
            "width": info.width,
            "height": info.height,
            "format": info.format,
            "sha256": info.sha256,
            "animated": info.animated,
        },
        {
            "source_version_id": source.version_id,
            "captured_at": info.captured_at,
            "camera": info.camera,
            "thumbnail_keys": None,
            "bytes": None,
        },
    )


def _unsupported(source: Source) -> Receipt:
    _, extension = split_extension(source.ref.key)
    return _rejected(
        source,
        "unsupported",
        {
            "code": "unsupported_type",
            "message": f"unsupported type: {extension or 'no extension'}"
            " (expected a JSON data file under a dataset prefix, or a JPEG, PNG, WebP, GIF"
            " or TIFF image)",
        },
    )


# --- one object ----------------------------------------------------------------------------


Verdict = Literal["current", "superseded", "deleted"]


def current_verdict(s3: Any, source: Source) -> Verdict:
    """Is ``source`` still its key's current version in RAW (module docstring: newest)?"""
    current = head(s3, source.ref.bucket, source.ref.key)
    if current is None:
        return "deleted"
    version_id = current.get("VersionId")
    if normalize_etag(current.get("ETag")) != source.etag or (
        source.version_id and version_id and version_id != source.version_id
    ):
        return "superseded"
    return "current"


def _transform(
    clients: Clients, settings: TransformSettings, source: Source, kind: Kind, deadline: Deadline
) -> ImageOutcome:
    try:
        if kind == "data":
            return ImageOutcome(transform_data(clients, settings, source, deadline))
        if kind == "image":
            return transform_image(clients, settings, source)
        return ImageOutcome(_unsupported(source))
    finally:
        if source.body is not None:
            source.body.close()


def _restore_outputs(s3: Any, bucket: str, receipt: Mapping[str, Any]) -> list[str]:
    """Put back each PROCESSED output ``receipt`` lists as that receipt's transform wrote
    it: the newest version of the key, of the listed size, written before the receipt
    (PROCESSED is versioned). Returns the keys whose version is gone (expired)."""
    written = datetime.fromisoformat(str(receipt["processed_at"]).replace("Z", "+00:00"))
    # LastModified may be truncated to the second: a version of that second still counts.
    latest = written.replace(microsecond=0) + timedelta(seconds=1)
    lost = []
    for output in receipt.get("outputs") or []:
        if output.get("bucket") != bucket:
            continue
        key = str(output["key"])
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
        chosen = next(
            (
                version
                for version in listing.get("Versions", [])
                if version["Key"] == key
                and version["Size"] == output.get("size")
                and version["LastModified"] < latest
            ),
            None,
        )
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


def _deleted_while_processing(
    clients: Clients, settings: TransformSettings, source: Source, receipt: Receipt
) -> None:
    """The object was deleted from RAW while it was transformed: nothing of it stays.

    Its outputs have the names of the key's current receipt's, if an earlier version has
    one (issue 10): those are put back as that receipt wrote them (:func:`_restore_outputs`),
    the others deleted, so the receipt lists exactly what PROCESSED holds."""
    current = read_receipt(clients.s3, settings.processed_bucket, source.ref.key)
    owned = {
        str(output["key"])
        for output in (current or {}).get("outputs") or []
        if output.get("bucket") == settings.processed_bucket
    }
    _delete_if_present(
        clients.s3,
        settings.processed_bucket,
        [str(o["key"]) for o in receipt.outputs if str(o["key"]) not in owned],
    )
    if current is not None and owned:
        lost = _restore_outputs(clients.s3, settings.processed_bucket, current)
        if lost:
            logger.warning(
                "outputs of the key's receipt could not be restored (their versions expired)",
                code="outputs_lost",
                outputs_lost=len(lost),
            )
    # Named by the version id S3 answered with; a late duplicate of an event without one
    # finds the same version by its ETag (:func:`forget_deleted`) and this record with it.
    record = version_record(source.receipt_source(), "deleted", deleted_from="raw")
    write_version_record(clients.s3, settings.processed_bucket, record, only_if_absent=True)
    logger.info("input deleted from RAW while it was transformed; outputs removed")


def lease_owner(ref: S3ObjectRef) -> str:
    """The lease's owner is the version being transformed, not the invocation: a retry of
    a run that crashed holding the lease (or lost the answer to taking it) takes it over at
    once, while another version of the key waits. Two deliveries of one version may run
    together; they write the same bytes, which is the idempotency the handler already has."""
    identity = "\0".join((ref.key, ref.etag or "", ref.version_id or ""))
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def transform_object(
    clients: Clients,
    settings: TransformSettings,
    ref: S3ObjectRef,
    deadline: Deadline | None = None,
    *,
    lease: LeaseTerms | None = None,
) -> Receipt | None:
    """Process one RAW object and write its receipt; None when there was nothing to do.
    ``deadline`` is the invocation's clock (none: no time limit).

    Under the key's lease (sluice.leases), and the receipt only if the version is still
    current once its outputs exist (module docstring: newest version wins).
    """
    kind = kind_of(ref.key)
    terms = lease or LeaseTerms(owner=lease_owner(ref))
    # A stale or duplicate event is recognised without taking the lease; a lease that an
    # earlier delivery of this version took and could not release is released here.
    if fetch_source(clients, settings, ref, with_body=False) is None:
        release_own(clients.s3, settings.processed_bucket, ref.key, terms.owner)
        return None
    with key_lease(clients.s3, settings.processed_bucket, ref.key, terms):
        source = fetch_source(clients, settings, ref, with_body=kind != "unsupported")
        if isinstance(source, Deleted):
            # Asked again under the lease (a deletion seen before it is settled only here).
            forget_deleted(clients.s3, settings, ref, source)
            return None
        if source is None:
            return None
        outcome = _transform(clients, settings, source, kind, deadline or Deadline.unbounded())
        receipt = outcome.receipt
        verdict = current_verdict(clients.s3, source)
        if verdict == "superseded":
            # Its outputs are overwritten by the newer version's transform, which waits for
            # this lease; the archive handler records this version as superseded.
            logger.info("a newer version was uploaded meanwhile; no receipt for this one")
            return None
        if verdict == "deleted":
            if _receipt_names(
                read_receipt(clients.s3, settings.processed_bucket, ref.key),
                source.etag,
                source.version_id,
            ):
                # Archived, not deleted: an earlier delivery's receipt had the archive
                # handler move it meanwhile (it empties RAW only once a receipt exists).
                logger.info("duplicate delivery: this version was archived meanwhile")
                return None
            _deleted_while_processing(clients, settings, source, receipt)
            return None
        if outcome.result is not None and outcome.thumbnails is not None:
            put_image_item(
                clients.dynamodb,
                settings.images_table,
                source,
                outcome.result,
                outcome.thumbnails,
            )
        previous = _previous_receipt(clients.s3, settings.processed_bucket, ref.key)
        _delete_if_present(
            clients.s3,
            settings.processed_bucket,
            _outputs_left_behind(previous, receipt, settings.processed_bucket),
        )
        receipt.replaces = replacement(
            previous, receipt.source, source.metadata.get(REPROCESS_METADATA)
        )
        write_receipt(clients.s3, settings.processed_bucket, receipt)
    logger.info(
        "input transformed",
        status=receipt.status,
        kind=receipt.kind,
        dataset=receipt.dataset,
        outputs=len(receipt.outputs),
        error_codes=sorted({str(error.get("code")) for error in receipt.errors}),
        stats=receipt.stats,
    )
    return receipt


# --- cold start ------------------------------------------------------------------------------

SETTINGS = TransformSettings.from_env(os.environ)
logger = make_logger("transform")
_retrying = Config(retries={"mode": "standard", "max_attempts": 5})
CLIENTS = Clients(
    s3=boto3.client("s3", config=_retrying),
    dynamodb=boto3.client("dynamodb", config=_retrying),
)


def _is_raw_object_created(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.bucket == SETTINGS.raw_bucket


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline.of(context)

    def transform(ref: S3ObjectRef) -> Outcome | None:
        """The receipt's verdict for the metrics; its dataset is a registry name (bounded)."""
        # The lease outlives this invocation's deadline, after which a crashed run is dead.
        lease = LeaseTerms(
            owner=lease_owner(ref),
            seconds=context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS,
        )
        receipt = transform_object(CLIENTS, SETTINGS, ref, deadline, lease=lease)
        return None if receipt is None else Outcome(receipt.status, receipt.dataset)

    return run(event, context, transform, logger, accepts=_is_raw_object_created)
