"""The images table as the API reads it, and withdrawing an image from the catalogue.

An image is its item in the images table (written by transform, labelled by tag,
docs/contracts.md), its thumbnails in PROCESSED, its archived original in ARCHIVE and
one membership per label in the labels table (with the label's count).

:func:`withdraw_image` is the one storage function that removes an image from the
catalogue: thumbnails, label memberships (each with its count, through
:func:`sluice.labels.remove_membership`, so counts stay exact under retries) and, last,
the item, so a retry after a crash still finds what is left to remove. Deleting the
archived original is the caller's (the API's ``DELETE /images/{id}``) first step; the
versioned ARCHIVE keeps the old version until its noncurrent-version lifecycle rule
expires it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from sluice.labels import remove_membership

_deserializer = TypeDeserializer()
_ID_KEY = "image_id"


class InvalidCursorError(ValueError):
    """A cursor this module did not issue."""


def plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python (numbers as int when whole, else float)."""
    return {name: _plain_value(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain_value(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    if isinstance(value, list | set | frozenset):
        return [_plain_value(v) for v in value]
    return value


def get_image(dynamodb: Any, table: str, image_id: str) -> dict[str, Any] | None:
    response = dynamodb.get_item(
        TableName=table, Key={_ID_KEY: {"S": image_id}}, ConsistentRead=True
    )
    item = response.get("Item")
    return plain(item) if item else None


def batch_get_images(
    dynamodb: Any, table: str, image_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Items of up to 100 ids by id; ids without an item are left out."""
    ids = list(dict.fromkeys(image_ids))
    found: dict[str, dict[str, Any]] = {}
    pending: dict[str, Any] = (
        {table: {"Keys": [{_ID_KEY: {"S": image_id}} for image_id in ids]}} if ids else {}
    )
    while pending:
        response = dynamodb.batch_get_item(RequestItems=pending)
        for item in response.get("Responses", {}).get(table, []):
            image = plain(item)
            found[str(image[_ID_KEY])] = image
        pending = response.get("UnprocessedKeys") or {}
    return found


def encode_cursor(last_key: Mapping[str, Any]) -> str:
    raw = json.dumps(last_key, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidCursorError("cursor is not one this API issued") from None
    if (
        not isinstance(key, dict)
        or set(key) != {_ID_KEY}
        or not isinstance(key[_ID_KEY], dict)
        or not isinstance(key[_ID_KEY].get("S"), str)
    ):
        raise InvalidCursorError("cursor is not one this API issued")
    return key


@dataclass(frozen=True)
class ImagePage:
    images: list[dict[str, Any]]
    next_cursor: str | None


def list_images(dynamodb: Any, table: str, *, limit: int, cursor: str | None) -> ImagePage:
    """One page of the table (a ``Scan``; the cursor is its ``LastEvaluatedKey``)."""
    request: dict[str, Any] = {"TableName": table, "Limit": limit}
    if cursor:
        request["ExclusiveStartKey"] = decode_cursor(cursor)
    response = dynamodb.scan(**request)
    last = response.get("LastEvaluatedKey")
    return ImagePage(
        images=[plain(item) for item in response.get("Items", [])],
        next_cursor=encode_cursor(last) if last else None,
    )


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | set | tuple) else []


@dataclass(frozen=True)
class Withdrawal:
    thumbnails_deleted: int
    labels_uncounted: int


def withdraw_image(
    s3: Any,
    dynamodb: Any,
    *,
    images_table: str,
    labels_table: str,
    processed_bucket: str,
    item: Mapping[str, Any],
) -> Withdrawal:
    """Remove an image's thumbnails, label memberships (and counts), then its item.

    ``item`` is the image's item as :func:`get_image` returns it. Idempotent: a repeated
    call finds nothing left to uncount and deletes what is already gone.
    """
    thumbnails = item.get("thumbnail_keys") or {}
    keys = [str(key) for key in thumbnails.values()] if isinstance(thumbnails, dict) else []
    for key in keys:
        s3.delete_object(Bucket=processed_bucket, Key=key)
    # Labels the tag handler may have counted: the recorded ones and any it was touching.
    labels = set(_strings(item.get("labels"))) | set(_strings(item.get("labels_touched")))
    image_id = str(item[_ID_KEY])
    uncounted = sum(
        1 for label in sorted(labels) if remove_membership(dynamodb, labels_table, label, image_id)
    )
    dynamodb.delete_item(TableName=images_table, Key={_ID_KEY: {"S": image_id}})
    return Withdrawal(thumbnails_deleted=len(keys), labels_uncounted=uncounted)
