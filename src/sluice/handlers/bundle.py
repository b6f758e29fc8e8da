"""Bundle handler: zip the archived images that carry the requested labels.

Trigger: WORK ``requests/<id>.json`` (ObjectCreated, through the bundle queue). Output:
WORK ``bundles/<id>.zip`` and the status object ``bundles/<id>.json``, written at every
outcome (``ready``, ``empty`` or ``error``), and one SNS notification to the environment's
bundle topic. WORK ``bundles/`` is not a trigger prefix, so nothing here re-triggers it.

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
   2020-12). Not JSON, not valid, or larger than 64 KiB: error status and notification,
   no exception, so it is not retried.
5. ``any`` is the union of the labels' memberships, ``all`` the intersection: the
   smallest label (by its count item) is read first and each further label only keeps
   the ids already found. Images are deduplicated and sorted by archive key.
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
8. The notification is published, then the status written: a crash in between repeats
   the notification on retry (at least once) instead of losing it.

Personal data: a request may carry ``notify`` (a recipient) and ``name`` (free text). They
stay in the request object the requester wrote and are copied nowhere: not into the
status, the manifest, the SNS message (subject, body or attributes) or a log line. What
an operator or a subscriber needs is the bundle id, status, counts and link.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal, cast

import boto3
import fastjsonschema
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from sluice.events import S3ObjectRef, normalize_etag
from sluice.image_items import fetch_image_metadata
from sluice.keys import (
    ARCHIVE_IMAGES_PREFIX,
    REQUESTS_PREFIX,
    bundle_id_for,
    bundle_status_key,
    bundle_zip_key,
)
from sluice.labels import LabelledImage, iter_images_for_label, label_count
from sluice.metrics import REJECTED, Outcome
from sluice.runtime import make_logger, run
from sluice.s3io import MIB, MultipartWriter, get
from sluice.settings import MAX_URL_TTL_SECONDS, BundleSettings
from sluice.timestamps import utc_iso
from sluice.zipstream import EntryNames, add_stream, safe_entry_name, zip_date_time

MAX_REQUEST_BYTES = 64 * 1024
MAX_REPORTED_ERRORS = 20
MAX_ERROR_MESSAGE = 300
METADATA_BATCH = 100  # BatchGetItem's limit
MANIFEST_NAME = "manifest.json"
ZIP_IMAGES_DIR = "images/"
FINAL_STATUSES = frozenset({"ready", "empty", "error"})

Match = Literal["any", "all"]
Status = Literal["ready", "empty", "error"]

_REQUEST_SCHEMA: dict[str, Any] = json.loads(
    resources.files("sluice").joinpath("schemas/bundle_request.schema.json").read_text("utf-8")
)
# Every request passes the fast yes/no check compiled here, at cold start. Only an invalid
# one pays for importing jsonschema (60-140 ms), which lists all of its problems.
_request_check = fastjsonschema.compile(_REQUEST_SCHEMA, use_default=False)

logger = make_logger("bundle")


# Keys ------------------------------------------------------------------------------------
def invalid_bundle_id(request_key: str) -> str:
    """Where an invalid request's error status goes; valid ids never start with ``_``."""
    return "_invalid-" + hashlib.sha256(request_key.encode("utf-8")).hexdigest()[:16]


# Request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleRequest:
    """What a bundle is made of. ``notify`` and ``name`` are left out on purpose (module
    docstring, "Personal data")."""

    labels: tuple[str, ...]
    match: Match = "any"

    def as_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "match": self.match}


class RequestError(Exception):
    """The request cannot be served as written; ``errors`` say why, for the status."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(error["message"] for error in errors))
        self.errors = errors


def _clip(message: str) -> str:
    return (
        message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 3] + "..."
    )


def schema_errors(
    document: Any, first: fastjsonschema.JsonSchemaValueException
) -> list[dict[str, str]]:
    """Every way an invalid request breaks the schema, by path (``first``: the fast check's)."""
    from jsonschema import Draft202012Validator

    problems = sorted(
        Draft202012Validator(_REQUEST_SCHEMA).iter_errors(document), key=lambda e: e.json_path
    )
    if not problems:  # the validators disagree: the fast check's finding still says why
        path = "$" + str(first.name).removeprefix("data")
        message = path + str(first.message).removeprefix(str(first.name))
        if _is_personal(path):
            message = f"{path} does not meet the request schema"
        return [{"code": "schema", "path": path, "message": _clip(message)}]
    return [
        {
            "code": "schema",
            "path": problem.json_path,
            # jsonschema's messages quote the value ("'...' is too long"): not for these.
            "message": _clip(
                f"{problem.json_path} breaks the schema's {problem.validator} rule"
                if _is_personal(problem.json_path)
                else problem.message
            ),
        }
        for problem in problems[:MAX_REPORTED_ERRORS]
    ]


def _is_personal(json_path: str) -> bool:
    return json_path.split(".")[1:2] in (["name"], ["notify"])


def parse_request(body: bytes) -> BundleRequest:
    """Decode and validate a request document; raises :class:`RequestError`."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        error = {"code": "invalid_json", "path": "$", "message": _clip(f"not JSON: {exc}")}
        raise RequestError([error]) from None
    try:
        _request_check(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise RequestError(schema_errors(document, exc)) from None
    return BundleRequest(
        labels=tuple(document["labels"]), match=cast(Match, document.get("match", "any"))
    )


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
            "request": request.as_dict(),
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


def read_status(s3: Any, bucket: str, bundle_id: str) -> dict[str, Any] | None:
    response = get(s3, bucket, bundle_status_key(bundle_id))
    if response is None:
        return None
    try:
        status = json.loads(response["Body"].read())
    except ValueError:
        return None  # unreadable: rebuild and overwrite it
    return status if isinstance(status, dict) else None


NOTIFICATION_FIELDS = (
    "bundle_id",
    "status",
    "image_count",
    "bytes",
    "url",
    "expires_at",
    "zip_key",
    "status_key",
    "errors",
)


def publish_outcome(sns: Any, topic_arn: str, status: Mapping[str, Any]) -> None:
    attributes = {"status": {"DataType": "String", "StringValue": str(status["status"])}}
    message = {name: status.get(name) for name in NOTIFICATION_FIELDS}
    sns.publish(
        TopicArn=topic_arn,
        Subject=f"sluice bundle {status['status']}: {status['bundle_id']}"[:100],
        Message=json.dumps(message, ensure_ascii=False),
        MessageAttributes=attributes,
    )


def finish(s3: Any, sns: Any, config: BundleSettings, status: dict[str, Any]) -> None:
    """Notify, then record the outcome (see the module docstring for why in this order)."""
    publish_outcome(sns, config.topic_arn, status)
    s3.put_object(
        Bucket=config.work_bucket,
        Key=status["status_key"],
        Body=json.dumps(status, ensure_ascii=False, indent=2).encode("utf-8"),
        ContentType="application/json",
    )
    logger.info(
        "bundle finished",
        bundle_id=status["bundle_id"],
        status=status["status"],
        image_count=status["image_count"],
        bytes=status["bytes"],
    )


def read_request(s3: Any, ref: S3ObjectRef) -> tuple[bytes | None, str] | None:
    """The request's bytes (None when too large) and ETag; None when superseded or gone."""
    response = get(s3, ref.bucket, ref.key, if_match=ref.etag)
    if response is None:
        logger.info("request was overwritten or deleted since this event; nothing to do")
        return None
    etag = normalize_etag(response.get("ETag")) or ref.etag or ""
    with closing(response["Body"]) as body:
        if int(response.get("ContentLength", 0)) > MAX_REQUEST_BYTES:
            return None, etag
        return body.read(), etag


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
    body, request_etag = fetched
    previous = read_status(s3, config.work_bucket, bundle_id)
    if (
        previous is not None
        and previous.get("request_etag") == request_etag
        and previous.get("status") in FINAL_STATUSES
    ):
        logger.info("duplicate delivery: this request already has an outcome", bundle_id=bundle_id)
        return None

    status: dict[str, Any] = {
        "bundle_id": bundle_id,
        "status": "error",
        "labels": [],
        "match": None,
        "image_count": 0,
        "bytes": 0,
        "zip_key": None,
        "manifest": None,
        "url": None,
        "expires_at": None,
        "missing": [],
        "errors": [],
        "status_key": bundle_status_key(bundle_id),
        "request_key": ref.key,
        "request_etag": request_etag,
        "created_at": utc_iso(now()),
    }
    try:
        if key_error is not None:
            raise RequestError([key_error])
        if body is None:
            message = f"request is larger than {MAX_REQUEST_BYTES} bytes"
            raise RequestError([{"code": "too_large", "path": "$", "message": message}])
        request = parse_request(body)
    except RequestError as error:
        status["errors"] = error.errors
        logger.warning("request rejected", bundle_id=bundle_id, errors=len(error.errors))
        finish(s3, sns, config, status)
        return "error"

    status.update(labels=list(request.labels), match=request.match)
    images = find_images(dynamodb, config, request)
    logger.info("request matched", bundle_id=bundle_id, matched=len(images))
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
        finish(s3, sns, config, status)
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
    finish(s3, sns, config, status)
    return "ready"


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


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run(event, context, _process, logger, accepts=is_request)
