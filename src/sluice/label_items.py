"""Label storage in the labels table, and the queries the tag, bundle and CLI parts share.

Layout (docs/contracts.md), one table:

- count item      ``pk = "LABELS"``, ``sk = <label>``, ``image_count``
- membership item ``pk = "LABEL#<label>"``, ``sk = "IMAGE#<image_id>"``, ``archive_key``,
  ``confidence``

Every image of a label is its own item, so a label with 100,000 (or 100 million) images
never comes near DynamoDB's 400 KB item limit, and paging through a label is a plain
``Query`` on its partition.

Counts stay exact because a membership and its count change together in one
``TransactWriteItems``: adding puts the membership only if it does not exist and adds 1
to the count; removing deletes the membership only if it exists and adds -1. A repeated
add or remove fails its condition and cancels the whole transaction, so duplicates and
retries never move a count. One label is one transaction, so a crash between labels
leaves every label either fully applied or not at all, and a retry converges.

Functions take a low-level ``dynamodb`` client and the table name; nothing is cached.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

COUNTS_PK = "LABELS"
LABEL_PK_PREFIX = "LABEL#"
IMAGE_SK_PREFIX = "IMAGE#"
MAX_LABEL_LENGTH = 200
"""Rekognition label names are far shorter; the bound keeps keys well inside 1 KB."""

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TRANSACTION_ATTEMPTS = 8
_BACKOFF_BASE_SECONDS = 0.05


class InvalidPageTokenError(ValueError):
    """A page token that this module did not issue for this label."""


@dataclass(frozen=True)
class LabelledImage:
    """One image of a label, as its membership item records it."""

    image_id: str
    archive_key: str
    confidence: float


def validate_label(label: str) -> str:
    if not label or not label.strip():
        raise ValueError("label must not be empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise ValueError(f"label is longer than {MAX_LABEL_LENGTH} characters: {label[:40]!r}...")
    return label


def count_key(label: str) -> dict[str, Any]:
    return {"pk": {"S": COUNTS_PK}, "sk": {"S": validate_label(label)}}


def membership_key(label: str, image_id: str) -> dict[str, Any]:
    return {
        "pk": {"S": LABEL_PK_PREFIX + validate_label(label)},
        "sk": {"S": IMAGE_SK_PREFIX + image_id},
    }


def confidence_value(confidence: float) -> dict[str, str]:
    # DynamoDB numbers are decimal strings; three places is more than any labeler resolves.
    return {"N": str(Decimal(str(round(confidence, 3))))}


def _cancellation_codes(error: Any) -> list[str]:
    reasons = error.response.get("CancellationReasons") or []
    return [str(reason.get("Code") or "None") for reason in reasons]


def _transact(dynamodb: Any, items: list[dict[str, Any]]) -> bool:
    """Run one transaction; False when its first item's condition failed (already applied).

    ``TransactionConflict`` (another transaction touching the same count item, e.g. many
    images of one label tagged at once) is retried with jittered backoff; the SDK does
    not retry cancellations by itself.
    """
    for attempt in range(_TRANSACTION_ATTEMPTS):
        try:
            dynamodb.transact_write_items(TransactItems=items)
            return True
        except dynamodb.exceptions.TransactionCanceledException as error:
            codes = _cancellation_codes(error)
            if codes and codes[0] == "ConditionalCheckFailed":
                return False
            if "TransactionConflict" not in codes or attempt == _TRANSACTION_ATTEMPTS - 1:
                raise
        time.sleep(random.uniform(0, _BACKOFF_BASE_SECONDS * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def add_membership(
    dynamodb: Any,
    table: str,
    label: str,
    image_id: str,
    *,
    archive_key: str,
    confidence: float,
) -> bool:
    """Record that ``image_id`` has ``label``; True if this call counted it.

    When the membership already exists the count is left alone and only its
    confidence is refreshed (new content under the same key may score differently).
    """
    key = membership_key(label, image_id)
    added = _transact(
        dynamodb,
        [
            {
                "Put": {
                    "TableName": table,
                    "Item": {
                        **key,
                        "archive_key": {"S": archive_key},
                        "confidence": confidence_value(confidence),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": table,
                    "Key": count_key(label),
                    "UpdateExpression": "ADD image_count :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ],
    )
    if not added:
        # If it was removed concurrently, whoever removed it also uncounted it.
        with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET confidence = :confidence",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":confidence": confidence_value(confidence)},
            )
    return added


def remove_membership(dynamodb: Any, table: str, label: str, image_id: str) -> bool:
    """Record that ``image_id`` no longer has ``label``; True if this call uncounted it."""
    return _transact(
        dynamodb,
        [
            {
                "Delete": {
                    "TableName": table,
                    "Key": membership_key(label, image_id),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": table,
                    "Key": count_key(label),
                    "UpdateExpression": "ADD image_count :minus_one",
                    "ExpressionAttributeValues": {":minus_one": {"N": "-1"}},
                }
            },
        ],
    )


def label_counts(dynamodb: Any, table: str) -> list[tuple[str, int]]:
    """Every label that has images, with its count: most images first, then by name."""
    counts: list[tuple[str, int]] = []
    paginator = dynamodb.get_paginator("query")
    pages = paginator.paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": COUNTS_PK}},
    )
    for page in pages:
        for item in page.get("Items", []):
            count = int(item.get("image_count", {}).get("N", "0"))
            # A count item stays behind at 0 when its last image is re-tagged away.
            if count > 0:
                counts.append((item["sk"]["S"], count))
    counts.sort(key=lambda pair: (-pair[1], pair[0]))
    return counts


def label_count(dynamodb: Any, table: str, label: str) -> int:
    item = dynamodb.get_item(TableName=table, Key=count_key(label), ConsistentRead=True)
    return int(item.get("Item", {}).get("image_count", {}).get("N", "0"))


def encode_page_token(last_evaluated_key: dict[str, Any]) -> str:
    raw = json.dumps(last_evaluated_key, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def decode_page_token(token: str, label: str) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` a token stands for; it must belong to ``label``."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidPageTokenError("page token is not one this service issued") from None
    expected_pk = LABEL_PK_PREFIX + label
    if (
        not isinstance(key, dict)
        or set(key) != {"pk", "sk"}
        or key["pk"] != {"S": expected_pk}
        or not isinstance(key["sk"], dict)
        or not isinstance(key["sk"].get("S"), str)
        or not key["sk"]["S"].startswith(IMAGE_SK_PREFIX)
    ):
        raise InvalidPageTokenError(f"page token does not belong to label {label!r}")
    return key


def _labelled_image(item: dict[str, Any]) -> LabelledImage:
    return LabelledImage(
        image_id=item["sk"]["S"][len(IMAGE_SK_PREFIX) :],
        archive_key=item.get("archive_key", {}).get("S", ""),
        confidence=float(item.get("confidence", {}).get("N", "0")),
    )


def images_for_label(
    dynamodb: Any,
    table: str,
    label: str,
    page_size: int = DEFAULT_PAGE_SIZE,
    start_token: str | None = None,
) -> tuple[list[LabelledImage], str | None]:
    """One page of the images of ``label`` (in image id order) and the next page's token.

    The token is opaque (base64 of DynamoDB's ``LastEvaluatedKey``) and None after the
    last page. A page may be empty with a token when DynamoDB stopped at its 1 MB limit.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": LABEL_PK_PREFIX + validate_label(label)}},
        "Limit": page_size,
    }
    if start_token:
        request["ExclusiveStartKey"] = decode_page_token(start_token, label)
    response = dynamodb.query(**request)
    images = [_labelled_image(item) for item in response.get("Items", [])]
    last_key = response.get("LastEvaluatedKey")
    return images, encode_page_token(last_key) if last_key else None


def iter_images_for_label(
    dynamodb: Any, table: str, label: str, page_size: int = MAX_PAGE_SIZE
) -> Iterator[LabelledImage]:
    """Every image of ``label``, fetched a page at a time (memory bounded by one page)."""
    token: str | None = None
    while True:
        images, token = images_for_label(dynamodb, table, label, page_size, token)
        yield from images
        if token is None:
            return
