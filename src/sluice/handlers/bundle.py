"""Bundle handler: zip the archived images that carry the requested labels.

Trigger: WORK ``requests/<id>.json`` (ObjectCreated, through the bundle queue), and the
sweep rule's scheduled events on the same queue. Output: WORK ``bundles/<id>.zip`` and the
status object ``bundles/<id>.json``, written at every outcome (``ready``, ``empty`` or
``error``), one SNS notification to the environment's bundle topic, and one to the
request's own topic when it names a recipient. WORK ``bundles/`` is not a trigger prefix,
so nothing here re-triggers it.

Steps for one request object:

1. The bundle id is the key's stem. An id that is not 1-128 of ``[A-Za-z0-9._-]``
   (starting with a letter or digit), or a key not ending in ``.json``, gets an error
   status under ``_invalid-<sha256 of the key>``, a name no valid id can take, so nothing
   is ever written outside ``bundles/``.
2. The request is read with ``IfMatch`` = the event's ETag. 412 means it was overwritten
   since; the newer version has its own event, so this one is skipped (an older event
   arriving late can never overwrite a newer bundle).
3. If ``bundles/<id>.json`` already records an outcome for this request ETag, the
   delivery is a duplicate and nothing is done (no second notification).
4. The request is validated against ``schemas/bundle_request.schema.json`` (Draft
   2020-12) by :mod:`sluice.bundles`, which owns the request, status and notification
   formats. Not JSON, not valid, or larger than 64 KiB: error status and notification,
   no exception, so it is not retried.
5. ``any`` is the union of the labels' memberships, ``all`` the intersection: the
   smallest label (by its count item) is read first and each further label only keeps
   the ids already found. Images are deduplicated and sorted by archive key.
   With cold storage (``ARCHIVE_COLD_STORAGE``), every matched image is looked at first
   (:mod:`sluice.restores`): archived ones are restored, the status is ``restoring`` with
   counts, and the sweep serves the request again once a check is due (decision 35).
6. The zip is streamed into a :class:`~sluice.s3io.MultipartWriter`: each archive
   object is copied 1 MiB at a time into its entry (``images/<path under images/>``, made
   safe and unique), JPEG and other compressed formats stored, the manifest deflated.
   Memory holds one part buffer (8 MiB) plus one chunk whatever the bundle's size; what
   grows with the number of images is about 200 bytes each (matched ids and keys, and
   zipfile's central directory), e.g. ~40 MB for 100,000 images. The manifest is spooled
   through a temporary file, not kept in memory. A failure aborts the multipart upload;
   a retry rebuilds from scratch.
7. A presigned GET URL for the zip, valid for ``BUNDLE_URL_TTL_SECONDS`` (at most 7
   days, SigV4's limit). A URL signed with temporary credentials (the Lambda role's) stops
   working when those credentials expire, which can be sooner than ``expires_at``; use a
   longer-lived signer (e.g. CloudFront) if that matters.
8. The operators' notification is published, then the status written: a crash in between
   repeats the notification on retry (at least once) instead of losing it.
9. A request with ``notify`` has a topic of its own (:mod:`sluice.request_topics`),
   created and subscribed before the images are matched, so an email confirmation can be
   under way while the zip is made. Once the status is written, the recipient's message is
   published there and the topic deleted, unless the subscription still waits for its
   confirmation. A crash after the status leaves the topic to the sweep, never a second
   subscription (a retry of a finished request stops at step 3).

The sweep: an EventBridge rule puts a scheduled event on the bundle queue every few
minutes; the handler then delivers to recipients who have confirmed since and deletes
every topic past its request's expiry (docs/decisions.md, 34).

Personal data: a request may carry ``notify`` (a recipient) and ``name`` (free text). They
stay in the request object the requester wrote (which WORK's lifecycle rule expires) and
in SNS's subscription of the request's topic, and are copied nowhere else: not into the
status, the manifest, a topic's name or tags, the operators' SNS message (subject, body or
attributes) or a log line. What an operator or a subscriber needs is the bundle id,
status, counts and link.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from sluice import bundles, request_topics, restores
from sluice.bundles import BundleRequest, BundleRequestError, Match
from sluice.events import S3ObjectRef, normalize_etag
from sluice.image_items import fetch_image_metadata
from sluice.keys import (
    ARCHIVE_IMAGES_PREFIX,
    REQUESTS_PREFIX,
    bundle_id_for,
    bundle_zip_key,
    invalid_bundle_id,
)
from sluice.labels import LabelledImage, iter_images_for_label, label_count
from sluice.metrics import REJECTED, Outcome
from sluice.runtime import make_logger, run
from sluice.s3io import MIB, MultipartWriter, get
from sluice.settings import MAX_URL_TTL_SECONDS, BundleSettings
from sluice.timestamps import utc_iso
from sluice.zipstream import EntryNames, add_stream, safe_entry_name, zip_date_time

METADATA_BATCH = 100  # BatchGetItem's limit
MANIFEST_NAME = "manifest.json"
ZIP_IMAGES_DIR = "images/"

Status = Literal["ready", "empty", "error"]

logger = make_logger("bundle")


# Matching --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchedImage:
    image_id: str
    archive_key: str
    labels: tuple[str, ...]
    """The requested labels this image carries, in request order."""


ImagesOf = Callable[[str], Iterable[LabelledImage]]


def match_images(labels: Sequence[str], match: Match, images_of: ImagesOf) -> list[MatchedImage]:
    """Images with any / all of ``labels``, deduplicated, sorted by archive key.

    For ``all`` pass the labels smallest first: the first label bounds the working set,
    and reading stops as soon as it is empty.
    """
    found: dict[str, tuple[str, list[str]]] = {}
    for index, label in enumerate(labels):
        if match == "any" or index == 0:
            for image in images_of(label):
                entry = found.setdefault(image.image_id, (image.archive_key, []))
                if label not in entry[1]:
                    entry[1].append(label)
        else:
            survivors: dict[str, tuple[str, list[str]]] = {}
            for image in images_of(label):
                if image.image_id in found and image.image_id not in survivors:
                    entry = found[image.image_id]
                    entry[1].append(label)
                    survivors[image.image_id] = entry
            found = survivors
            if not found:
                break
    order = {label: position for position, label in enumerate(dict.fromkeys(labels))}
    images = [
        MatchedImage(image_id, key, tuple(sorted(carried, key=order.__getitem__)))
        for image_id, (key, carried) in found.items()
    ]
    images.sort(key=lambda image: (image.archive_key, image.image_id))
    return images


def find_images(
    dynamodb: Any, config: BundleSettings, request: BundleRequest
) -> list[MatchedImage]:
    labels: Sequence[str] = request.labels
    if request.match == "all":
        # Counts only order the reads; the result does not depend on them being exact.
        labels = sorted(labels, key=lambda label: label_count(dynamodb, config.labels_table, label))

    def images_of(label: str) -> Iterable[LabelledImage]:
        return iter_images_for_label(dynamodb, config.labels_table, label)

    return match_images(labels, request.match, images_of)


# Image metadata (images table) -----------------------------------------------------------
# Zip -------------------------------------------------------------------------------------
@dataclass
class BundleContents:
    image_count: int = 0
    image_bytes: int = 0
    zip_bytes: int = 0
    zip_etag: str | None = None
    missing: list[str] = field(default_factory=list)


class _NothingToBundleError(Exception):
    """Every matched image vanished from the archive; abort the upload, report empty."""


def _entry_name(names: EntryNames, image: MatchedImage) -> str:
    relative = image.archive_key.removeprefix(ARCHIVE_IMAGES_PREFIX)
    try:
        safe = safe_entry_name(relative)
    except ValueError:
        safe = image.image_id
    return names.claim(ZIP_IMAGES_DIR + safe)


def write_bundle_zip(
    s3: Any,
    dynamodb: Any,
    config: BundleSettings,
    bundle_id: str,
    request: BundleRequest,
    images: Sequence[MatchedImage],
    *,
    request_etag: str,
    created_at: str,
) -> BundleContents:
    """Stream the matching images and a manifest into ``bundles/<id>.zip``.

    Raises :class:`_NothingToBundleError` (after aborting the upload) when none of the
    images is in the archive any more.
    """
    contents = BundleContents()
    names = EntryNames(reserved=[MANIFEST_NAME])
    key = bundle_zip_key(bundle_id)
    metadata = {"bundle-id": bundle_id, "request-etag": request_etag}
    with (
        tempfile.SpooledTemporaryFile(max_size=MIB) as manifest,
        MultipartWriter(
            s3, config.work_bucket, key, content_type="application/zip", metadata=metadata
        ) as sink,
        zipfile.ZipFile(sink, "w", allowZip64=True) as archive,
    ):
        header = {
            "bundle_id": bundle_id,
            "created_at": created_at,
            "request": request.summary(),
            "request_etag": request_etag,
            "zip_key": key,
        }
        manifest.write(json.dumps(header, ensure_ascii=False)[:-1].encode("utf-8"))
        manifest.write(b', "images": [')
        for start in range(0, len(images), METADATA_BATCH):
            batch = images[start : start + METADATA_BATCH]
            extra = fetch_image_metadata(
                dynamodb, config.images_table, [image.image_id for image in batch]
            )
            for image in batch:
                entry = _add_image(s3, config, archive, names, image, extra)
                if entry is None:
                    contents.missing.append(image.archive_key)
                    continue
                separator = b"\n  " if contents.image_count == 0 else b",\n  "
                manifest.write(separator + json.dumps(entry, ensure_ascii=False).encode())
                contents.image_count += 1
                contents.image_bytes += entry["size"]
        if contents.image_count == 0:
            raise _NothingToBundleError
        tail = {"image_count": contents.image_count, "missing": contents.missing}
        manifest.write(b"\n],")
        manifest.write(json.dumps(tail, ensure_ascii=False)[1:].encode("utf-8"))
        manifest_size = manifest.tell()
        manifest.seek(0)
        add_stream(archive, MANIFEST_NAME, manifest, manifest_size)
    contents.zip_bytes = sink.bytes_written
    contents.zip_etag = sink.etag
    return contents


def _add_image(
    s3: Any,
    config: BundleSettings,
    archive: zipfile.ZipFile,
    names: EntryNames,
    image: MatchedImage,
    extra: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    if not image.archive_key:
        return None
    response = get(s3, config.archive_bucket, image.archive_key)
    if response is None:
        logger.warning("archived image is gone; left out", archive_key=image.archive_key)
        return None
    name = _entry_name(names, image)
    size = int(response["ContentLength"])
    with closing(response["Body"]) as body:
        add_stream(archive, name, body, size, date_time=zip_date_time(response.get("LastModified")))
    known = extra.get(image.image_id, {})
    return {
        "name": name,
        "archive_key": image.archive_key,
        "image_id": image.image_id,
        "size": size,
        "etag": normalize_etag(response.get("ETag")),
        "sha256": known.get("sha256"),
        "labels": known.get("labels") or list(image.labels),
        "matched_labels": list(image.labels),
    }


# Outcome ---------------------------------------------------------------------------------
def presigned_zip_url(s3: Any, bucket: str, bundle_id: str, ttl_seconds: int) -> str:
    """A GET URL for the zip, downloading as ``<id>.zip``; the lifetime is capped at 7 days."""
    url: str = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": bundle_zip_key(bundle_id),
            "ResponseContentDisposition": f'attachment; filename="{bundle_id}.zip"',
        },
        ExpiresIn=max(1, min(ttl_seconds, MAX_URL_TTL_SECONDS)),
    )
    return url


def finish(
    s3: Any,
    sns: Any,
    config: BundleSettings,
    status: dict[str, Any],
    recipient_topic: str | None = None,
) -> None:
    """Notify the operators, record the outcome, then tell the recipient (module
    docstring, step 8, for why in this order)."""
    sns.publish(TopicArn=config.topic_arn, **bundles.operator_notification(status))
    bundles.write_status(s3, config.work_bucket, status)
    delivery = None
    if recipient_topic is not None:
        message = bundles.recipient_notification(status)
        delivery = request_topics.deliver(sns, recipient_topic, message)
    logger.info(
        "bundle finished",
        bundle_id=status["bundle_id"],
        status=status["status"],
        image_count=status["image_count"],
        bytes=status["bytes"],
        recipient=delivery,
    )


def open_recipient_topic(
    sns: Any, config: BundleSettings, bundle_id: str, request: BundleRequest, fetched: RequestObject
) -> str | None:
    """The request's own topic with ``notify`` subscribed, when it asks for one."""
    if request.notify is None or request.notify_protocol is None:
        return None
    return request_topics.open_topic(
        sns,
        request_topics.topic_name(config.notify_topic_prefix, bundle_id, fetched.etag),
        protocol=request.notify_protocol,
        endpoint=request.notify,
        bundle_id=bundle_id,
        request_etag=fetched.etag,
        expires_at=fetched.written_at + timedelta(days=config.request_expiration_days),
    )


@dataclass(frozen=True)
class RequestObject:
    body: bytes
    """At most one byte more than the limit: enough to tell it is too large."""
    etag: str
    written_at: datetime


def read_request(s3: Any, ref: S3ObjectRef) -> RequestObject | None:
    """The request object as the event named it; None when superseded or gone."""
    response = get(s3, ref.bucket, ref.key, if_match=ref.etag)
    if response is None:
        logger.info("request was overwritten or deleted since this event; nothing to do")
        return None
    etag = normalize_etag(response.get("ETag")) or ref.etag or ""
    written_at = response.get("LastModified") or datetime.now(UTC)
    with closing(response["Body"]) as body:
        return RequestObject(body.read(bundles.MAX_REQUEST_BYTES + 1), etag, written_at)


def process_request(
    ref: S3ObjectRef,
    *,
    s3: Any,
    dynamodb: Any,
    sns: Any,
    config: BundleSettings,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Status | None:
    """Serve one request object; returns its outcome, or None when there was nothing to do."""
    bundle_id = bundle_id_for(ref.key)
    key_error = None
    if bundle_id is None:
        bundle_id = invalid_bundle_id(ref.key)
        key_error = {
            "code": "invalid_request_key",
            "path": "$",
            "message": "request keys must look like requests/<id>.json, <id> being 1-128 of"
            " A-Z a-z 0-9 . _ - and starting with a letter or digit",
        }
    fetched = read_request(s3, ref)
    if fetched is None:
        return None
    request_etag = fetched.etag
    previous = bundles.read_status(s3, config.work_bucket, bundle_id)
    if (
        previous is not None
        and previous.get("request_etag") == request_etag
        and previous.get("status") in bundles.FINAL_STATUSES
    ):
        logger.info("duplicate delivery: this request already has an outcome", bundle_id=bundle_id)
        return None

    status = bundles.new_status(
        bundle_id, request_key=ref.key, request_etag=request_etag, created_at=utc_iso(now())
    )
    try:
        if key_error is not None:
            raise BundleRequestError([key_error])
        request = bundles.parse_request(fetched.body)
    except BundleRequestError as error:
        status["errors"] = error.errors
        logger.warning("request rejected", bundle_id=bundle_id, errors=len(error.errors))
        finish(s3, sns, config, status)
        return "error"

    status.update(request.summary(), notification=request.notify_protocol)
    topic = open_recipient_topic(sns, config, bundle_id, request, fetched)
    images = find_images(dynamodb, config, request)
    logger.info("request matched", bundle_id=bundle_id, matched=len(images))
    if images and config.cold_storage != "none":
        restore = restores.check(
            s3,
            config.archive_bucket,
            [image.archive_key for image in images if image.archive_key],
            tier=config.restore_tier,
            days=config.restore_days,
        )
        status["restore"] = restore.as_status()
        if restore.waiting:
            wait_for_restores(s3, config, status, restore, now())
            return None
    contents: BundleContents | None = None
    if images:
        try:
            contents = write_bundle_zip(
                s3,
                dynamodb,
                config,
                bundle_id,
                request,
                images,
                request_etag=request_etag,
                created_at=status["created_at"],
            )
        except _NothingToBundleError:
            status["missing"] = [image.archive_key for image in images]
    if contents is None:
        status["status"] = "empty"
        finish(s3, sns, config, status, topic)
        return "empty"

    ttl = min(config.url_ttl_seconds, MAX_URL_TTL_SECONDS)
    signed_at = now()
    status.update(
        status="ready",
        image_count=contents.image_count,
        bytes=contents.zip_bytes,
        image_bytes=contents.image_bytes,
        zip_key=bundle_zip_key(bundle_id),
        zip_etag=contents.zip_etag,
        manifest=MANIFEST_NAME,
        missing=contents.missing,
        url=presigned_zip_url(s3, config.work_bucket, bundle_id, ttl),
        expires_at=utc_iso(signed_at + timedelta(seconds=ttl)),
    )
    finish(s3, sns, config, status, topic)
    return "ready"


def wait_for_restores(
    s3: Any,
    config: BundleSettings,
    status: dict[str, Any],
    restore: restores.RestoreCheck,
    now: datetime,
) -> None:
    """Status ``restoring`` with its counts, and a marker the sweep comes back to."""
    status["status"] = bundles.RESTORING
    bundles.write_status(s3, config.work_bucket, status)
    earlier = restores.read_marker(s3, config.work_bucket, status["bundle_id"])
    checks = 0
    if earlier is not None and earlier.get("request_etag") == status["request_etag"]:
        checks = int(earlier.get("checks") or 0)
    due = restores.write_marker(
        s3,
        config.work_bucket,
        status["bundle_id"],
        request_key=status["request_key"],
        request_etag=status["request_etag"],
        checks=checks,
        now=now,
    )
    logger.info(
        "waiting for archived images to be restored",
        bundle_id=status["bundle_id"],
        restoring=len(restore.restoring),
        requested=restore.requested,
        next_check_at=utc_iso(due),
    )


# Sweep (scheduled) -------------------------------------------------------------------------
def sweep_restores(s3: Any, dynamodb: Any, sns: Any, config: BundleSettings, now: datetime) -> int:
    """Serve again each bundle whose restore check is due (sluice.restores); a marker goes
    once its bundle is no longer restoring for that request. Returns the bundles served."""
    served = 0
    for marker in list(restores.due_markers(s3, config.work_bucket, now)):
        bundle_id = str(marker.get("bundle_id"))
        etag = str(marker.get("request_etag") or "")
        ref = S3ObjectRef(
            bucket=config.work_bucket,
            key=str(marker.get("request_key")),
            event_name="ObjectCreated:Put",
            etag=etag or None,
        )
        process_request(ref, s3=s3, dynamodb=dynamodb, sns=sns, config=config, now=lambda: now)
        served += 1
        status = bundles.read_status(s3, config.work_bucket, bundle_id)
        if (
            status is None
            or status["status"] != bundles.RESTORING
            or not bundles.answers(status, etag)
        ):
            restores.delete_marker(s3, config.work_bucket, bundle_id)
    return served


def sweep(
    s3: Any, sns: Any, config: BundleSettings, now: datetime, dynamodb: Any = None
) -> request_topics.SweepReport:
    """Serve bundles whose restores may be done (with ``dynamodb``), then deliver to
    recipients who confirmed since and delete expired topics (sluice.request_topics)."""
    if dynamodb is not None:
        served = sweep_restores(s3, dynamodb, sns, config, now)
        logger.info("restore checks done", bundles=served)

    def recipient_message(bundle_id: str, request_etag: str) -> Mapping[str, Any] | None:
        status = bundles.read_status(s3, config.work_bucket, bundle_id) if bundle_id else None
        if (
            status is None
            or status["status"] not in bundles.FINAL_STATUSES
            or not bundles.answers(status, request_etag)
        ):
            return None
        return bundles.recipient_notification(status)

    report = request_topics.sweep(sns, config.notify_topic_prefix, recipient_message, now)
    logger.info(
        "sweep done",
        topics=report.seen,
        delivered=report.delivered,
        expired=report.expired,
        waiting=report.waiting,
    )
    return report


def is_schedule(payload: Any) -> bool:
    """An EventBridge scheduled event (the sweep rule's), direct or as an SQS body."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return False
    return (
        isinstance(payload, Mapping)
        and payload.get("source") == "aws.events"
        and payload.get("detail-type") == "Scheduled Event"
    )


# Lambda entry point (clients and configuration are built once, at cold start) -------------
CONFIG = BundleSettings.from_env(os.environ)
_s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
_dynamodb = boto3.client("dynamodb")
_sns = boto3.client("sns")


def is_request(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.key.startswith(REQUESTS_PREFIX)


def _process(ref: S3ObjectRef) -> Outcome | None:
    """An invalid request (error status) counts as rejected in the metrics."""
    outcome = process_request(ref, s3=_s3, dynamodb=_dynamodb, sns=_sns, config=CONFIG)
    return REJECTED if outcome == "error" else None


def _sweep_now() -> None:
    sweep(_s3, _sns, CONFIG, datetime.now(UTC), dynamodb=_dynamodb)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Request objects go through :func:`sluice.runtime.run`; the sweep rule's messages
    (the same queue) run the sweep, a failed one handed back like a failed object."""
    if is_schedule(event):
        _sweep_now()
        return {"swept": 1}
    records = event.get("Records") or []
    ticks = [r for r in records if r.get("eventSource") == "aws:sqs" and is_schedule(r.get("body"))]
    if not ticks:
        return run(event, context, _process, logger, accepts=is_request)
    failures = []
    for record in ticks:
        try:
            _sweep_now()
        except Exception:
            logger.exception(
                "sweep failed; the message is handed back", message_id=record.get("messageId")
            )
            failures.append({"itemIdentifier": record["messageId"]})
    rest = [record for record in records if record not in ticks]
    response = (
        run({**event, "Records": rest}, context, _process, logger, accepts=is_request)
        if rest
        else {"batchItemFailures": []}
    )
    response["batchItemFailures"] = failures + list(response.get("batchItemFailures") or [])
    return response
