"""What a client may see of the pipeline's records: images, inputs (receipts) and bundles.

Views leave out buckets, ETags, versions and output keys: a browser cannot use them without
AWS credentials, and naming buckets tells a client nothing it needs (docs/decisions.md,
decision 32). What it may fetch comes as presigned GETs (``LINK_TTL_SECONDS``), always
signed for this environment's own buckets, whatever bucket a record names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sluice import image_items
from sluice.keys import DATA_PREFIX, ERRORS_PREFIX
from sluice.settings import ApiSettings
from sluice.timestamps import utc_iso

THUMBNAIL_FIELDS = ("width", "height", "bytes", "content_type")
"""What a client sees of a thumbnail besides its link."""
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


def presigned_get(s3: Any, bucket: str, key: str, ttl: int) -> str:
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl
    )
    return url


def expires_at(now: datetime, ttl: int) -> str:
    return utc_iso(now + timedelta(seconds=ttl))


# Images ------------------------------------------------------------------------------------
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


def image_detail(
    s3: Any, settings: ApiSettings, item: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """An image's metadata with presigned links to its original and thumbnails."""
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
        "original_url": presigned_get(s3, settings.archive_bucket, str(archive_key), ttl)
        if archive_key
        else None,
        "thumbnails": {
            size: {
                "url": presigned_get(s3, settings.processed_bucket, str(entry["key"]), ttl),
                **{name: entry.get(name) for name in THUMBNAIL_FIELDS},
            }
            for size, entry in sorted(thumbnails.items(), key=lambda pair: int(pair[0]))
        },
        "links_expire_at": expires_at(now, ttl),
    }


# Inputs and bundles --------------------------------------------------------------------------
def input_view(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """What a client may see of a receipt."""
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


def input_with_links(
    s3: Any, settings: ApiSettings, receipt: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The receipt's view and, for a processed data file, presigned GETs of its clean
    output and errors report (null when there is none)."""
    view = input_view(receipt)
    if receipt.get("kind") != "data":
        return view
    ttl = settings.link_ttl_seconds
    bucket = settings.processed_bucket
    keys = data_output_keys(receipt, bucket)
    links = {
        f"{role}_url": presigned_get(s3, bucket, keys[role], ttl) if role in keys else None
        for role in ("output", "errors_report")
    }
    return {**view, **links, "links_expire_at": expires_at(now, ttl) if keys else None}


def bundle_view(status: Mapping[str, Any]) -> dict[str, Any]:
    """What a client may see of a bundle's status document."""
    return {name: status.get(name) for name in BUNDLE_FIELDS if name in status}
