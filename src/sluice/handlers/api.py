"""API handler: the HTTP API's one function, routed with Powertools' ``APIGatewayHttpResolver``.

API Gateway (payload format 2.0) checks the bearer token with its JWT authorizer before
this function runs; the handler reads the verified claims from
``requestContext.authorizer.jwt.claims`` and still answers 401 when a guarded route
arrives without them (defence in depth: a route left without its authorizer serves
nobody). ``DELETE /images/{id}`` needs the ``admin`` group (``cognito:groups``).

The routes are those of ``docs/openapi.yaml`` (tests check both lists are equal). Request
bodies are validated against the JSON Schemas in ``sluice/schemas/``; every error is
``{"error": {"code", "message"}}`` with its status (400 malformed, 401, 403, 404, 409, 413,
415, 422). Nothing here logs a token, a presigned URL or a body: log lines carry the route,
status and ids.

The logic lives in plain modules (``sluice.uploads``, ``sluice.image_items``,
``sluice.labels``, ``sluice.receipts``, ``sluice.bundles``); the routes only translate
between HTTP and them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import unquote

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from sluice import deletion, image_items, uploads
from sluice.bundles import BundleRequestError, read_status
from sluice.datasets import Dataset
from sluice.image_items import InvalidCursorError
from sluice.keys import (
    BUNDLE_ID_PATTERN,
    DATA_PREFIX,
    ERRORS_PREFIX,
    RECEIPTS_PREFIX,
    bundle_request_key,
)
from sluice.labels import InvalidPageTokenError, images_for_label, label_counts
from sluice.leases import DEFAULT_LEASE_SECONDS, LEASE_MARGIN_SECONDS, KeyBusyError, LeaseTerms
from sluice.ops.bundle import write_request
from sluice.receipts import read_receipt
from sluice.runtime import make_logger
from sluice.settings import ApiSettings
from sluice.timestamps import utc_iso

MAX_BODY_BYTES = 1024 * 1024
"""A complete request lists up to 10,000 parts (about 600 KB); API Gateway takes 10 MB."""
DEFAULT_PAGE = 50
MAX_PAGE = 100
MAX_KEYS_SCANNED = 1000
"""Receipt keys one ``GET /inputs`` call looks at, so a page is bounded in time."""
ADMIN_GROUP = "admin"

logger = make_logger("api")


# Errors ------------------------------------------------------------------------------------
class ApiError(Exception):
    """An answer other than success: its status, a stable code and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int, code: str, message: str, details: list[dict[str, str]] | None = None
) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"error": error}, ensure_ascii=False),
    )


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, ensure_ascii=False),
        headers=headers,
    )


# Request bodies ------------------------------------------------------------------------------
def _load_schema(name: str) -> Dataset:
    """A request schema, compiled like a dataset's: a fast yes/no check at cold start and,
    for an invalid body, every violation by JSON path with messages that never echo a value."""
    text = resources.files("sluice").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    return Dataset.compile(name, "", json.loads(text), ())


SCHEMAS = {
    name: _load_schema(name) for name in ("upload_request", "multipart_complete", "bundle_request")
}


def parse_body(raw: str | None, schema: str) -> dict[str, Any]:
    """The JSON body, valid against ``schema``; 400 when not JSON, 422 when invalid."""
    if raw is None or not raw.strip():
        raise ApiError(400, "missing_body", "a JSON body is required")
    if len(raw.encode("utf-8")) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    validator = SCHEMAS[schema]
    if not validator.is_valid(document):
        details = [
            {"path": violation.path, "message": violation.message}
            for violation in validator.violations(document)
        ]
        raise ApiError(422, "invalid_request", "the body does not match its schema", details)
    result: dict[str, Any] = document
    return result


# Who is calling ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    sub: str
    groups: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


def parse_groups(value: Any) -> frozenset[str]:
    """``cognito:groups`` as API Gateway passes it: a list, or a string ``[a b]``/``[a, b]``."""
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return frozenset(str(item) for item in parsed)
            text = text.strip("[]")
        return frozenset(part for part in re.split(r"[\s,]+", text) if part)
    return frozenset()


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    """The verified caller, or 401 when the authorizer left no claims."""
    context = event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    return Caller(sub=sub, groups=parse_groups(claims.get("cognito:groups")))


def _now() -> datetime:
    return datetime.now(UTC)


def _query_int(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an integer") from None
    if not 1 <= number <= maximum:
        raise ApiError(400, "invalid_query", f"{name} must be between 1 and {maximum}")
    return number


# Views -------------------------------------------------------------------------------------
def display_name(item: Mapping[str, Any]) -> str:
    """The image's file name as sent, without the uniqueness prefix the API added."""
    key = str(item.get("source_key") or item.get("archive_key") or "")
    name = key.rsplit("/", 1)[-1]
    return re.sub(r"^[0-9a-f]{32}-", "", name) or str(item.get("image_id", ""))


def image_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    labels = item.get("labels")
    return {
        "id": str(item["image_id"]),
        "name": display_name(item),
        "width": item.get("width"),
        "height": item.get("height"),
        "format": item.get("format"),
        "bytes": image_items.source_bytes_of(item),
        "labels": sorted(str(label) for label in labels) if isinstance(labels, list) else [],
        "created_at": item.get("created_at"),
    }


def _presigned_get(s3: Any, bucket: str, key: str, ttl: int) -> str:
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl
    )
    return url


def _expires_at(now: datetime, ttl: int) -> str:
    return utc_iso(now + _seconds(ttl))


THUMBNAIL_FIELDS = ("width", "height", "bytes", "content_type")
"""What a client sees of a thumbnail besides its link. Not its bucket, key or ``s3://``
URI: a browser cannot use them without AWS credentials, and naming buckets tells a client
nothing it needs (docs/decisions.md, decision 32)."""


def image_detail(
    s3: Any, settings: ApiSettings, item: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """An image's metadata with presigned links (``LINK_TTL_SECONDS``). Links are always
    signed for this environment's own buckets, whatever bucket an item names."""
    ttl = settings.link_ttl_seconds
    archive_key = item.get("archive_key")
    thumbnails = image_items.thumbnails_of(item)
    return {
        **image_summary(item),
        "updated_at": item.get("updated_at"),
        "archived_at": item.get("archived_at"),
        "captured_at": item.get("captured_at"),
        "camera": item.get("camera"),
        "label_details": [
            {"label": label, "confidence": confidence}
            for label, confidence in image_items.label_confidences(item)
        ],
        "original_url": _presigned_get(s3, settings.archive_bucket, str(archive_key), ttl)
        if archive_key
        else None,
        "thumbnails": {
            size: {
                "url": _presigned_get(s3, settings.processed_bucket, str(entry["key"]), ttl),
                **{name: entry.get(name) for name in THUMBNAIL_FIELDS},
            }
            for size, entry in sorted(thumbnails.items(), key=lambda pair: int(pair[0]))
        },
        "links_expire_at": _expires_at(now, ttl),
    }


def _seconds(count: int) -> timedelta:
    return timedelta(seconds=count)


INPUT_ERROR_FIELDS = ("code", "message", "record_index", "path", "line")
BUNDLE_FIELDS = (
    "bundle_id",
    "status",
    "name",
    "labels",
    "match",
    "image_count",
    "bytes",
    "url",
    "expires_at",
    "errors",
    "restore",
    "notification",
    "created_at",
)


def input_view(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """What a client may see of a receipt: no buckets, ETags, versions or output keys."""
    source = receipt.get("source") or {}
    errors = receipt.get("errors") or []
    return {
        "key": str(source.get("key", "")),
        "status": receipt.get("status"),
        "kind": receipt.get("kind"),
        "dataset": receipt.get("dataset"),
        "size": source.get("size"),
        "processed_at": receipt.get("processed_at"),
        "stats": dict(receipt.get("stats") or {}),
        "errors": [
            {name: error[name] for name in INPUT_ERROR_FIELDS if name in error}
            for error in errors
            if isinstance(error, dict)
        ],
        "errors_truncated": bool(receipt.get("errors_truncated")),
    }


def data_output_keys(receipt: Mapping[str, Any], processed_bucket: str) -> dict[str, str]:
    """A data file's outputs in PROCESSED by role: ``output`` (``data/``, its valid records)
    and ``errors_report`` (``errors/``, when records were invalid). A rejected file has
    neither: the transform removes them, and its reasons are in the receipt itself."""
    if receipt.get("kind") != "data" or receipt.get("status") != "processed":
        return {}
    roles = {DATA_PREFIX: "output", ERRORS_PREFIX: "errors_report"}
    found: dict[str, str] = {}
    for output in receipt.get("outputs") or []:
        if not isinstance(output, dict) or output.get("bucket") != processed_bucket:
            continue
        key = str(output.get("key", ""))
        for prefix, role in roles.items():
            if key.startswith(prefix):
                found[role] = key
    return found


def _may_see(caller: Caller, key: str) -> bool:
    """Admins see every input; members the ones they uploaded through the API."""
    return caller.is_admin or uploads.key_owner(key) == caller.sub


def _raw_key_of_receipt(receipt_object_key: str) -> str | None:
    """The RAW key a receipt's object key names (None for hashed ``_long/`` names)."""
    name = receipt_object_key.removeprefix(RECEIPTS_PREFIX)
    if name.startswith("_long/") or not name.endswith(".json"):
        return None
    return name.removesuffix(".json")


# The service ------------------------------------------------------------------------------
class Api:
    """The routes' logic with its clients and settings (tests build one against moto)."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        s3: Any,
        dynamodb: Any,
        sts: Any,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.s3 = s3
        self.dynamodb = dynamodb
        self.sts = sts
        self.now = now

    # uploads ------------------------------------------------------------------------
    def _plan(self, caller: Caller, body: Mapping[str, Any]) -> uploads.PlannedUpload:
        return uploads.plan_upload(
            uploads.UploadRequest.from_json(body),
            user=caller.sub,
            registry=self.settings.datasets,
            max_bytes=self.settings.max_upload_bytes,
            max_data_bytes=self.settings.max_data_bytes,
            now=self.now(),
        )

    def create_upload(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        planned = self._plan(caller, body)
        return uploads.presigned_put(
            self.s3,
            self.settings.raw_bucket,
            planned,
            ttl_seconds=self.settings.upload_url_ttl_seconds,
            now=self.now(),
        )

    def create_multipart(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        planned = self._plan(caller, body)
        return uploads.start_multipart(
            self.s3,
            self.settings.raw_bucket,
            planned,
            ttl_seconds=self.settings.upload_url_ttl_seconds,
            now=self.now(),
        )

    def complete_multipart(
        self, caller: Caller, token: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        key, upload_id = uploads.decode_upload_id(token, caller.sub)
        return uploads.complete_multipart(
            self.s3, self.settings.raw_bucket, key, upload_id, list(body["parts"])
        )

    def abort_multipart(self, caller: Caller, token: str) -> None:
        key, upload_id = uploads.decode_upload_id(token, caller.sub)
        uploads.abort_multipart(self.s3, self.settings.raw_bucket, key, upload_id)

    def create_credentials(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        planned = self._plan(caller, body)
        return uploads.one_key_credentials(
            self.sts,
            self.settings.upload_role_arn,
            self.settings.raw_bucket,
            planned,
            ttl_seconds=self.settings.upload_url_ttl_seconds,
            region=self.settings.region,
        )

    # images and labels --------------------------------------------------------------
    def list_images(self, label: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        table = self.settings.images_table
        if label is None:
            page = image_items.list_images(self.dynamodb, table, limit=limit, cursor=cursor)
            return {
                "images": [image_summary(item) for item in page.images],
                "next_cursor": page.next_cursor,
            }
        members, token = images_for_label(
            self.dynamodb, self.settings.labels_table, label, limit, cursor
        )
        items = image_items.batch_get_images(
            self.dynamodb, table, [member.image_id for member in members]
        )
        return {
            "images": [
                image_summary(items[member.image_id])
                for member in members
                if member.image_id in items
            ],
            "next_cursor": token,
        }

    def get_image(self, image_id: str) -> dict[str, Any]:
        item = image_items.get_image(self.dynamodb, self.settings.images_table, image_id)
        if item is None:
            raise ApiError(404, "not_found", "no such image")
        return image_detail(self.s3, self.settings, item, self.now())

    def delete_image(
        self, caller: Caller, image_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        """Remove the archived original, then everything it owns, the way a removal from
        ARCHIVE does (``sluice.deletion.remove_archived``: under the key's transform lease
        and the image's tag lease, recorded ``deleted`` in the version ledger)."""
        if not caller.is_admin:
            raise ApiError(403, "forbidden", f"deleting images needs the {ADMIN_GROUP} group")
        item = image_items.get_image(self.dynamodb, self.settings.images_table, image_id)
        if item is None:
            raise ApiError(404, "not_found", "no such image")
        archive_key = str(item["archive_key"])
        terms = LeaseTerms(owner=f"api/{uuid.uuid4().hex}", seconds=lease_seconds)
        settings = deletion.DeletionSettings.of(self.settings)
        try:
            self.s3.head_object(Bucket=self.settings.archive_bucket, Key=archive_key)
        except self.s3.exceptions.ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise
        else:  # only an original that is there is removed (no delete marker over nothing)
            self.s3.delete_object(Bucket=self.settings.archive_bucket, Key=archive_key)
        try:
            outcome = deletion.remove_archived(self.s3, self.dynamodb, settings, archive_key, terms)
            if outcome == "pending":
                raise ApiError(
                    409, "not_archived_yet", "the image is still being processed; try again"
                )
            if outcome != "removed":
                # No receipt owns it any more (a half-finished earlier deletion): the item
                # and its memberships are all that is left of the image.
                now = terms.clock()
                image_items.withdraw_under_lease(
                    self.dynamodb,
                    self.settings.images_table,
                    self.settings.labels_table,
                    image_id,
                    owner=f"delete/{terms.owner}",
                    now=now,
                    until=now + terms.seconds,
                )
        except (KeyBusyError, image_items.ImageBusyError):
            raise ApiError(409, "busy", "the image is being processed; try again") from None
        logger.info("image deleted", image_id=image_id, outcome=outcome)

    def list_labels(self) -> dict[str, Any]:
        counts = label_counts(self.dynamodb, self.settings.labels_table)
        return {"labels": [{"label": label, "count": count} for label, count in counts]}

    # bundles -----------------------------------------------------------------------
    def create_bundle(self, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            request = write_request(
                self.s3,
                self.settings.work_bucket,
                list(body["labels"]),
                match=str(body.get("match", "any")),
                notify=body.get("notify"),
                name=body.get("name"),
            )
        except BundleRequestError as error:
            raise ApiError(422, "invalid_request", str(error)) from None
        return {"bundle_id": request.bundle_id, "status": "pending"}

    def get_bundle(self, bundle_id: str) -> dict[str, Any]:
        if not BUNDLE_ID_PATTERN.fullmatch(bundle_id):
            raise ApiError(404, "not_found", "no such bundle")
        bucket = self.settings.work_bucket
        key = bundle_request_key(bundle_id)
        status = read_status(self.s3, bucket, bundle_id)
        if status is not None:
            return {name: status.get(name) for name in BUNDLE_FIELDS if name in status}
        if self._exists(bucket, key):
            return {"bundle_id": bundle_id, "status": "pending"}
        raise ApiError(404, "not_found", "no such bundle")

    def _exists(self, bucket: str, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in listed.get("Contents", []))

    # inputs ------------------------------------------------------------------------
    def input_with_links(self, receipt: Mapping[str, Any]) -> dict[str, Any]:
        """The receipt's view and, for a processed data file, presigned GETs of its clean
        output and errors report (``LINK_TTL_SECONDS``; null when there is none)."""
        view = input_view(receipt)
        if receipt.get("kind") != "data":
            return view
        ttl = self.settings.link_ttl_seconds
        bucket = self.settings.processed_bucket
        keys = data_output_keys(receipt, bucket)
        links = {
            f"{role}_url": _presigned_get(self.s3, bucket, keys[role], ttl)
            if role in keys
            else None
            for role in ("output", "errors_report")
        }
        return {**view, **links, "links_expire_at": _expires_at(self.now(), ttl) if keys else None}

    def list_inputs(
        self,
        caller: Caller,
        *,
        prefix: str,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        start_after = _decode_key_cursor(cursor) if cursor else None
        found: list[dict[str, Any]] = []
        scanned = 0
        request: dict[str, Any] = {
            "Bucket": self.settings.processed_bucket,
            "Prefix": RECEIPTS_PREFIX + prefix,
        }
        last_key: str | None = start_after
        while True:
            if last_key:
                request["StartAfter"] = last_key
            request["MaxKeys"] = min(1000, MAX_KEYS_SCANNED - scanned)
            page = self.s3.list_objects_v2(**request)
            contents = page.get("Contents", [])
            for entry in contents:
                scanned += 1
                last_key = entry["Key"]
                raw_key = _raw_key_of_receipt(entry["Key"])
                if raw_key is None or not _may_see(caller, raw_key):
                    continue
                receipt = read_receipt(self.s3, self.settings.processed_bucket, raw_key)
                if receipt is None or (status and receipt.get("status") != status):
                    continue
                found.append(self.input_with_links(receipt))
                if len(found) == limit:
                    return {"inputs": found, "next_cursor": _encode_key_cursor(entry["Key"])}
            if not page.get("IsTruncated") or not contents:
                return {"inputs": found, "next_cursor": None}
            if scanned >= MAX_KEYS_SCANNED:
                # More may follow: hand back where the scan stopped.
                return {"inputs": found, "next_cursor": _encode_key_cursor(str(last_key))}

    def get_input(self, caller: Caller, key: str) -> dict[str, Any]:
        if not key or not _may_see(caller, key):
            raise ApiError(404, "not_found", "no such input")
        receipt = read_receipt(self.s3, self.settings.processed_bucket, key)
        if receipt is not None:
            return self.input_with_links(receipt)
        if uploads.key_owner(key) is not None and self._exists(self.settings.raw_bucket, key):
            return {"key": key, "status": "pending"}
        raise ApiError(404, "not_found", "no such input (or no receipt yet)")


def _encode_key_cursor(key: str) -> str:
    return image_items.encode_cursor({"image_id": {"S": key}})


def _decode_key_cursor(cursor: str) -> str:
    key = str(image_items.decode_cursor(cursor)["image_id"]["S"])
    if not key.startswith(RECEIPTS_PREFIX):
        raise InvalidCursorError("cursor is not one this API issued")
    return key


# Routes ------------------------------------------------------------------------------------
app = APIGatewayHttpResolver()
_api: Api | None = None


def service() -> Api:
    if _api is None:
        raise RuntimeError("the api is not configured")
    return _api


def _caller() -> Caller:
    return caller_from_event(app.current_event.raw_event)


def _body(schema: str) -> dict[str, Any]:
    return parse_body(request_text(app.current_event.raw_event), schema)


def request_text(event: Mapping[str, Any]) -> str | None:
    """The body as text; a body that is not UTF-8 (base64 from API Gateway) is not JSON."""
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return body if isinstance(body, str) else None
    try:
        return base64.b64decode(body).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not UTF-8 JSON") from None


def _query(name: str) -> str | None:
    value = (app.current_event.query_string_parameters or {}).get(name)
    return value if isinstance(value, str) else None


@app.get("/health")
def health() -> Response[str]:
    return json_response(200, {"status": "ok"})


@app.post("/uploads")
def create_upload() -> Response[str]:
    caller = _caller()
    return json_response(201, service().create_upload(caller, _body("upload_request")))


@app.post("/uploads/multipart")
def create_multipart_upload() -> Response[str]:
    caller = _caller()
    return json_response(201, service().create_multipart(caller, _body("upload_request")))


@app.post("/uploads/multipart/<upload_id>/complete")
def complete_multipart_upload(upload_id: str) -> Response[str]:
    caller = _caller()
    body = _body("multipart_complete")
    return json_response(200, service().complete_multipart(caller, unquote(upload_id), body))


@app.delete("/uploads/multipart/<upload_id>")
def abort_multipart_upload(upload_id: str) -> Response[str]:
    caller = _caller()
    service().abort_multipart(caller, unquote(upload_id))
    return Response(status_code=204, content_type="application/json", body="")


@app.post("/uploads/credentials")
def create_upload_credentials() -> Response[str]:
    caller = _caller()
    return json_response(201, service().create_credentials(caller, _body("upload_request")))


@app.get("/images")
def list_images() -> Response[str]:
    _caller()
    label = _query("label")
    if label is not None and not 1 <= len(label) <= 200:
        raise ApiError(400, "invalid_query", "label must be 1-200 characters")
    limit = _query_int(_query("limit"), "limit", DEFAULT_PAGE, MAX_PAGE)
    return json_response(200, service().list_images(label, limit, _query("cursor") or None))


@app.get("/images/<image_id>")
def get_image(image_id: str) -> Response[str]:
    _caller()
    return json_response(200, service().get_image(unquote(image_id)))


@app.delete("/images/<image_id>")
def delete_image(image_id: str) -> Response[str]:
    caller = _caller()
    # The leases taken outlive this invocation by the margin, no more, if it crashes.
    seconds = app.lambda_context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
    service().delete_image(caller, unquote(image_id), seconds)
    return Response(status_code=204, content_type="application/json", body="")


@app.get("/labels")
def list_labels() -> Response[str]:
    _caller()
    return json_response(200, service().list_labels())


@app.post("/bundles")
def create_bundle() -> Response[str]:
    _caller()
    created = service().create_bundle(_body("bundle_request"))
    return json_response(202, created, headers={"Location": f"/bundles/{created['bundle_id']}"})


@app.get("/bundles/<bundle_id>")
def get_bundle(bundle_id: str) -> Response[str]:
    _caller()
    return json_response(200, service().get_bundle(unquote(bundle_id)))


@app.get("/inputs")
def list_inputs() -> Response[str]:
    caller = _caller()
    status = _query("status") or None
    if status is not None and status not in ("processed", "rejected"):
        raise ApiError(400, "invalid_query", "status must be processed or rejected")
    prefix = _query("prefix") or ""
    if len(prefix) > 1024:
        raise ApiError(400, "invalid_query", "prefix must be at most 1024 characters")
    limit = _query_int(_query("limit"), "limit", DEFAULT_PAGE, MAX_PAGE)
    page = service().list_inputs(
        caller, prefix=prefix, status=status, limit=limit, cursor=_query("cursor") or None
    )
    return json_response(200, page)


@app.get("/inputs/<key>")
def get_input(key: str) -> Response[str]:
    caller = _caller()
    return json_response(200, service().get_input(caller, unquote(key)))


@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
def _api_error(error: ApiError) -> Response[str]:
    logger.info("request refused", status=error.status, code=error.code)
    return error_response(error.status, error.code, error.message, error.details)


@app.exception_handler(uploads.UploadError)  # type: ignore[untyped-decorator]
def _upload_error(error: uploads.UploadError) -> Response[str]:
    logger.info("upload refused", status=error.status, code=error.code)
    return error_response(error.status, error.code, error.message)


@app.exception_handler(InvalidCursorError)  # type: ignore[untyped-decorator]
@app.exception_handler(InvalidPageTokenError)  # type: ignore[untyped-decorator]
def _bad_cursor(error: ValueError) -> Response[str]:
    return error_response(400, "invalid_cursor", "cursor is not one this API issued")


@app.not_found
def _not_found(_error: Exception) -> Response[str]:
    return error_response(404, "not_found", "no such route")


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def _unexpected(error: Exception) -> Response[str]:
    # The exception's type and traceback, never the request (it may hold a token).
    logger.exception("unexpected error", error_type=type(error).__name__)
    return error_response(500, "internal_error", "something went wrong; it has been logged")


# Lambda entry point (clients and configuration are built once, at cold start) --------------
def build_service(env: Mapping[str, str]) -> Api:
    settings = ApiSettings.from_env(env)
    s3 = boto3.client("s3", region_name=settings.region, config=Config(signature_version="s3v4"))
    return Api(
        settings,
        s3=s3,
        dynamodb=boto3.client("dynamodb", region_name=settings.region),
        sts=boto3.client("sts", region_name=settings.region),
    )


_api = build_service(os.environ)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
