"""The API's logic: what each route does, over its clients and settings.

:class:`Api` is plain: it takes its clients (S3, DynamoDB, STS) and its settings, so a test
builds one against moto. Storage goes through the modules that own it (``sluice.uploads``,
``sluice.image_items``, ``sluice.label_items``, ``sluice.receipts``, ``sluice.bundles``,
``sluice.deletion``); what a client sees is shaped by :mod:`sluice.api.views`. Refusals are
:class:`~sluice.api.protocol.ApiError` (or the storage modules' own errors, which the
handler answers too).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice import deletion, image_items, s3io, uploads
from sluice.api.protocol import ADMIN_GROUP, ApiError, Caller
from sluice.api.views import bundle_view, image_detail, image_summary, input_with_links
from sluice.bundles import BundleRequestError, read_status
from sluice.image_items import InvalidCursorError
from sluice.keys import (
    BUNDLE_ID_PATTERN,
    RECEIPTS_PREFIX,
    bundle_request_key,
    raw_key_of_receipt_key,
)
from sluice.label_items import images_for_label, label_counts
from sluice.leases import DEFAULT_LEASE_SECONDS, KeyBusyError, LeaseTerms
from sluice.ops.bundle import write_request
from sluice.receipts import read_receipt
from sluice.settings import ApiSettings

MAX_KEYS_SCANNED = 1000
"""Receipt keys one ``GET /inputs`` call looks at, so a page is bounded in time."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Api:
    """The routes' logic with its clients and settings."""

    settings: ApiSettings
    s3: Any
    dynamodb: Any
    sts: Any
    now: Callable[[], datetime] = _now

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
        """A presigned PUT for one new RAW key."""
        return self._start(uploads.presigned_put, caller, body)

    def create_multipart(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """A multipart upload to one new RAW key, with its presigned part URLs."""
        return self._start(uploads.start_multipart, caller, body)

    def _start(
        self, start: Callable[..., dict[str, Any]], caller: Caller, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        planned = self._plan(caller, body)
        return start(
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
    ) -> str:
        """Remove the archived original, then everything it owns, the way a removal from
        ARCHIVE does (``sluice.deletion.remove_archived``: under the key's transform lease
        and the image's tag lease, recorded ``deleted`` in the version ledger). Returns
        what the removal found (``removed`` or what a half-finished one left)."""
        if not caller.is_admin:
            raise ApiError(403, "forbidden", f"deleting images needs the {ADMIN_GROUP} group")
        item = image_items.get_image(self.dynamodb, self.settings.images_table, image_id)
        if item is None:
            raise ApiError(404, "not_found", "no such image")
        archive_key = str(item["archive_key"])
        terms = LeaseTerms(owner=f"api/{uuid.uuid4().hex}", seconds=lease_seconds)
        settings = deletion.DeletionSettings.of(self.settings)
        # Only an original that is there is removed (no delete marker over nothing).
        if s3io.head(self.s3, self.settings.archive_bucket, archive_key) is not None:
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
        return str(outcome)

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
        status = read_status(self.s3, bucket, bundle_id)
        if status is not None:
            return bundle_view(status)
        if self._exists(bucket, bundle_request_key(bundle_id)):
            return {"bundle_id": bundle_id, "status": "pending"}
        raise ApiError(404, "not_found", "no such bundle")

    def _exists(self, bucket: str, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in listed.get("Contents", []))

    # inputs ------------------------------------------------------------------------
    def _may_see(self, caller: Caller, key: str) -> bool:
        """Admins see every input; members the ones they uploaded through the API."""
        return caller.is_admin or uploads.key_owner(key) == caller.sub

    def list_inputs(
        self,
        caller: Caller,
        *,
        prefix: str,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        """Receipts under ``prefix`` the caller may see, ``limit`` at the most, looking at
        no more than :data:`MAX_KEYS_SCANNED` keys (the cursor says where it stopped)."""
        bucket = self.settings.processed_bucket
        request: dict[str, Any] = {"Bucket": bucket, "Prefix": RECEIPTS_PREFIX + prefix}
        last_key = _decode_key_cursor(cursor) if cursor else None
        found: list[dict[str, Any]] = []
        scanned = 0
        while True:
            if last_key:
                request["StartAfter"] = last_key
            request["MaxKeys"] = min(1000, MAX_KEYS_SCANNED - scanned)
            page = self.s3.list_objects_v2(**request)
            contents = page.get("Contents", [])
            for entry in contents:
                scanned += 1
                last_key = entry["Key"]
                raw_key = raw_key_of_receipt_key(entry["Key"])
                if raw_key is None or not self._may_see(caller, raw_key):
                    continue
                receipt = read_receipt(self.s3, bucket, raw_key)
                if receipt is None or (status and receipt.get("status") != status):
                    continue
                found.append(input_with_links(self.s3, self.settings, receipt, self.now()))
                if len(found) == limit:
                    return {"inputs": found, "next_cursor": _encode_key_cursor(entry["Key"])}
            if not page.get("IsTruncated") or not contents:
                return {"inputs": found, "next_cursor": None}
            if scanned >= MAX_KEYS_SCANNED:
                # More may follow: hand back where the scan stopped.
                return {"inputs": found, "next_cursor": _encode_key_cursor(str(last_key))}

    def get_input(self, caller: Caller, key: str) -> dict[str, Any]:
        if not key or not self._may_see(caller, key):
            raise ApiError(404, "not_found", "no such input")
        receipt = read_receipt(self.s3, self.settings.processed_bucket, key)
        if receipt is not None:
            return input_with_links(self.s3, self.settings, receipt, self.now())
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
