"""The images table: every read and write of an image's item goes through here.

An image is its item in the images table (keyed by ``image_id`` =
``keys.image_id(images/<raw key>)``, docs/contracts.md), its thumbnails in PROCESSED, its
archived original in ARCHIVE and one membership per label in the labels table (with the
label's count). Each party writes only its own attributes:

* the transform creates or refreshes the metadata (:func:`put_image_item`; the item's
  shape is docs/contracts.md, "Image metadata item"), and the archive handler notes where
  the original went (:func:`record_archived`);
* the tag handler takes the item's lease (:func:`acquire_lease`, :func:`release_lease`)
  and records labels, with their confidence, under it (:func:`mark_touched`,
  :func:`record_labels`);
* the bundle handler reads what a manifest needs (:func:`fetch_image_metadata`), the API
  reads items and pages (:func:`get_image`, :func:`batch_get_images`, :func:`list_images`)
  through readers that take both item shapes (:func:`thumbnails_of`,
  :func:`source_bytes_of`, :func:`label_confidences`);
* :func:`withdraw_under_lease` removes an image from the catalogue, memberships first
  (each with its count, through :func:`sluice.label_items.remove_membership`, so counts stay
  exact under retries) and the item last, so a retry after a crash still finds what is
  left. It takes the tag handler's lease, so it never runs while a labelling run could
  still add a membership. Its callers: the archive handler, when a key's newest version
  is a rejected image (the transform has already removed the thumbnails, and the old
  ``images/`` copy is already noncurrent), and :mod:`sluice.deletion`, when an archived
  image is removed (the tag handler on an ARCHIVE removal, the API's
  ``DELETE /images/{id}``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from sluice.label_items import confidence_value, remove_membership
from sluice.receipts import utc_now

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


_serialize = TypeSerializer().serialize

ITEM_VERSION = 2
"""The shape the transform writes (docs/contracts.md, "Image metadata item"). Items of
shape 1 (no ``item_version``: ``thumbnail_keys`` and ``bytes`` = the source's size) may
still be in a table written before; the readers below take both."""


def thumbnail_entry(
    bucket: str, key: str, *, width: int, height: int, size_bytes: int, content_type: str
) -> dict[str, Any]:
    """One thumbnail as the item holds it, with the ``s3://`` URI that tools copy from."""
    return {
        "bucket": bucket,
        "key": key,
        "uri": f"s3://{bucket}/{key}",
        "width": width,
        "height": height,
        "bytes": size_bytes,
        "content_type": content_type,
    }


def thumbnails_of(item: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Thumbnails by longest side (``"128"``), each with at least its ``key``.

    A shape-1 item only knew the keys (``thumbnail_keys``): its entries have no bucket,
    URI, pixel or byte size. Reads plain items (:func:`plain`).
    """
    thumbnails = item.get("thumbnails")
    if isinstance(thumbnails, dict):
        return {
            str(size): dict(entry)
            for size, entry in thumbnails.items()
            if isinstance(entry, dict) and entry.get("key")
        }
    keys = item.get("thumbnail_keys")
    if isinstance(keys, dict):
        return {str(size): {"key": str(key)} for size, key in keys.items() if key}
    return {}


def source_bytes_of(item: Mapping[str, Any]) -> int | None:
    """The source image's size in bytes (shape 1 called it ``bytes``)."""
    value = item.get("source_bytes", item.get("bytes"))
    return int(value) if isinstance(value, int | float) else None


def label_confidences(item: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """The image's labels with their confidence (0-100), most confident first.

    An item labelled before the tag handler kept ``label_confidence`` has names only:
    their confidence is None (the labels table's memberships still hold it).
    """
    names = _strings(item.get("labels"))
    confidence = item.get("label_confidence")
    scores = confidence if isinstance(confidence, dict) else {}

    def score(name: str) -> float | None:
        value = scores.get(name)
        return float(value) if isinstance(value, int | float) else None

    return sorted(
        ((name, score(name)) for name in dict.fromkeys(names)),
        key=lambda pair: (-(pair[1] if pair[1] is not None else -1.0), pair[0]),
    )


def record_archived(
    dynamodb: Any, table: str, item_id: str, *, bucket: str, source_etag: str
) -> bool:
    """Note where the image's original now lies, once the archive handler has copied it.

    Only on the item that describes the archived version (``source_etag``): an item a newer
    version's transform has refreshed waits for that version's own archiving, and a
    withdrawn image's item is not brought back. True if the item was updated.
    """
    now = utc_now()
    try:
        dynamodb.update_item(
            TableName=table,
            Key={_ID_KEY: {"S": item_id}},
            UpdateExpression=(
                "SET archive_bucket = :bucket, archived_source_etag = :etag,"
                " archived_at = :now, updated_at = :now"
            ),
            ConditionExpression="source_etag = :etag",
            ExpressionAttributeValues={
                ":bucket": {"S": bucket},
                ":etag": {"S": source_etag},
                ":now": {"S": now},
            },
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False
    return True


class ImageBusyError(RuntimeError):
    """Another invocation holds this image's lease; the message is retried later."""


def _attribute_strings(attribute: dict[str, Any] | None) -> list[str]:
    if not attribute:
        return []
    if "SS" in attribute:
        return list(attribute["SS"])
    return [value["S"] for value in attribute.get("L", []) if "S" in value]


def labels_held(item: dict[str, Any]) -> set[str]:
    """Every label the image may have a membership of (``labels`` and ``labels_touched``)."""
    return set(_attribute_strings(item.get("labels"))) | set(
        _attribute_strings(item.get("labels_touched"))
    )


def put_image_item(
    dynamodb: Any,
    table: str,
    item_id: str,
    values: dict[str, Any],
    optional: dict[str, Any],
) -> None:
    """Create or refresh an item's metadata; labels and lease attributes stay as they are.

    ``values`` are set; ``optional`` ones are set when not None and removed when None;
    ``created_at`` is set once and ``updated_at`` every time.
    """
    now = utc_now()
    values = {**values, "updated_at": now}
    values.update({name: value for name, value in optional.items() if value is not None})
    removed = [name for name, value in optional.items() if value is None]
    names = {f"#{index}": name for index, name in enumerate([*values, *removed, "created_at"])}
    by_name = {name: alias for alias, name in names.items()}
    assignments = [f"{by_name[name]} = :{index}" for index, name in enumerate(values)]
    assignments.append(f"{by_name['created_at']} = if_not_exists({by_name['created_at']}, :now)")
    expression = "SET " + ", ".join(assignments)
    if removed:
        expression += " REMOVE " + ", ".join(by_name[name] for name in removed)
    attribute_values = {
        f":{index}": _serialize(value) for index, value in enumerate(values.values())
    }
    attribute_values[":now"] = _serialize(now)
    dynamodb.update_item(
        TableName=table,
        Key={"image_id": {"S": item_id}},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=attribute_values,
    )


def forget_unreceipted(dynamodb: Any, table: str, item_id: str, source_etag: str) -> bool:
    """Delete the item a transform wrote for a version that never got its receipt and is
    gone from RAW (the run died between the item and the receipt; the object was deleted
    before a retry). Only that version's item goes, and only while nothing else holds it
    (no labels, no lease): an item another version refreshed is that version's. Returns
    whether an item was deleted."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"image_id": {"S": item_id}},
            ConditionExpression=(
                "source_etag = :etag AND attribute_not_exists(labels)"
                " AND attribute_not_exists(labels_touched)"
                " AND attribute_not_exists(tag_lease_owner)"
            ),
            ExpressionAttributeValues={":etag": {"S": source_etag}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def acquire_lease(
    dynamodb: Any,
    table: str,
    item_id: str,
    *,
    owner: str,
    now: float,
    until: float,
    archive_key: str | None = None,
) -> dict[str, Any] | None:
    """Take the image's lease and return its item as it stands; raises ImageBusyError.

    With ``archive_key`` the item is created if missing (the tag handler may run before
    the transform's item exists); without it a missing item is not created and None is
    returned (a withdrawal has nothing to withdraw).
    """
    values = {
        ":owner": {"S": owner},
        ":until": {"N": f"{until:.3f}"},
        ":now": {"N": f"{now:.3f}"},
    }
    expression = "SET tag_lease_owner = :owner, tag_lease_until = :until"
    condition = (
        "(attribute_not_exists(tag_lease_until) OR tag_lease_until < :now"
        " OR tag_lease_owner = :owner)"
    )
    if archive_key is not None:
        expression += ", archive_key = if_not_exists(archive_key, :archive_key)"
        values[":archive_key"] = {"S": archive_key}
    else:
        condition = f"attribute_exists(image_id) AND {condition}"
    try:
        response = dynamodb.update_item(
            TableName=table,
            Key={"image_id": {"S": item_id}},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            # Tells "no item" from "leased" without a read (and without a GetItem grant).
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except dynamodb.exceptions.ConditionalCheckFailedException as error:
        if archive_key is None and not error.response.get("Item"):
            return None
        raise ImageBusyError(f"image {item_id} is being tagged by another invocation") from None
    item: dict[str, Any] = response["Attributes"]
    return item


def release_lease(dynamodb: Any, table: str, item_id: str, owner: str) -> None:
    with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.update_item(
            TableName=table,
            Key={"image_id": {"S": item_id}},
            UpdateExpression="REMOVE tag_lease_owner, tag_lease_until",
            ConditionExpression="tag_lease_owner = :owner",
            ExpressionAttributeValues={":owner": {"S": owner}},
        )


class LeaseLostError(RuntimeError):
    """This run's lease expired and another run took the image over."""


def labelled_for(item: Mapping[str, Any], etag: str, labeler: str) -> bool:
    """The item already holds ``labeler``'s labels for this content (an ETag), and no
    membership outside them: a duplicate delivery needs no labeler call."""
    return (
        item.get("archive_etag", {}).get("S") == etag
        and item.get("labeler", {}).get("S") == labeler
        and "labels" in item
        and set(_attribute_strings(item.get("labels_touched")))
        <= set(_attribute_strings(item.get("labels")))
    )


def mark_touched(dynamodb: Any, table: str, item_id: str, names: list[str], owner: str) -> None:
    """Add ``names`` to ``labels_touched`` under the lease, before any membership is written,
    so the item always names a superset of the image's memberships."""
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"image_id": {"S": item_id}},
            UpdateExpression="ADD labels_touched :names",
            ConditionExpression="tag_lease_owner = :owner",
            ExpressionAttributeValues={":names": {"SS": names}, ":owner": {"S": owner}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise LeaseLostError(f"image {item_id}: lease lost before labelling") from None


@dataclass(frozen=True)
class LabelRecord:
    """What a labelling run leaves on the item (docs/contracts.md, "Image metadata item")."""

    confidences: Mapping[str, float]
    """Each label's confidence, in the labeler's order."""
    labeler: str
    archive_etag: str
    archive_version_id: str | None
    label_error: str | None


def record_labels(dynamodb: Any, table: str, item_id: str, record: LabelRecord, owner: str) -> None:
    """Write the labels and release the lease in one conditional write, so a run that lost
    its lease cannot overwrite a newer one. Only the tag handler's attributes are written."""
    names = list(record.confidences)
    sets = [
        "labels = :labels",
        "label_confidence = :confidence",
        "labeler = :labeler",
        "labels_updated_at = :now",
        "updated_at = :now",
        "created_at = if_not_exists(created_at, :now)",
        "archive_etag = :etag",
    ]
    removes = ["tag_lease_owner", "tag_lease_until"]
    values: dict[str, Any] = {
        ":labels": {"L": [{"S": name} for name in names]},
        ":confidence": {
            "M": {name: confidence_value(value) for name, value in record.confidences.items()}
        },
        ":labeler": {"S": record.labeler},
        ":now": {"S": utc_now()},
        ":etag": {"S": record.archive_etag},
        ":owner": {"S": owner},
    }
    for attribute, value in (
        ("archive_version_id", record.archive_version_id),
        ("label_error", record.label_error),
    ):
        if value:
            sets.append(f"{attribute} = :{attribute}")
            values[f":{attribute}"] = {"S": value}
        else:
            removes.append(attribute)
    if names:
        sets.append("labels_touched = :touched")
        values[":touched"] = {"SS": names}
    else:
        removes.append("labels_touched")
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"image_id": {"S": item_id}},
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression="tag_lease_owner = :owner",
            ExpressionAttributeValues=values,
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise LeaseLostError(f"image {item_id}: lease lost before recording labels") from None


def abandon_lease(dynamodb: Any, table: str, item_id: str, owner: str) -> None:
    """Release the lease; drop the item if the lease alone made it (no metadata, no labels),
    as when a tag run finds its image withdrawn after taking the lease."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"image_id": {"S": item_id}},
            ConditionExpression=(
                "tag_lease_owner = :owner AND attribute_not_exists(source_key)"
                " AND attribute_not_exists(labels) AND attribute_not_exists(labels_touched)"
            ),
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        release_lease(dynamodb, table, item_id, owner)


def fetch_image_metadata(
    dynamodb: Any, table: str, image_ids: Sequence[str], *, max_attempts: int = 8
) -> dict[str, dict[str, Any]]:
    """``sha256`` and ``labels`` of up to 100 images; images without an item are left out."""
    if not image_ids:
        return {}
    pending: dict[str, Any] = {
        table: {
            "Keys": [{"image_id": {"S": image_id}} for image_id in dict.fromkeys(image_ids)],
            "ProjectionExpression": "#id, #sha, #labels",
            "ExpressionAttributeNames": {"#id": "image_id", "#sha": "sha256", "#labels": "labels"},
        }
    }
    found: dict[str, dict[str, Any]] = {}
    for attempt in range(max_attempts):
        response = dynamodb.batch_get_item(RequestItems=pending)
        for item in response.get("Responses", {}).get(table, []):
            found[item["image_id"]["S"]] = {
                "sha256": item.get("sha256", {}).get("S"),
                "labels": _string_list(item.get("labels")),
            }
        pending = response.get("UnprocessedKeys") or {}
        if not pending:
            return found
        time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise RuntimeError(f"images table kept {len(pending[table]['Keys'])} keys unprocessed")


def _string_list(value: Mapping[str, Any] | None) -> list[str] | None:
    """A string set (sorted) or list attribute as a list; None when absent."""
    if not value:
        return None
    if "SS" in value:
        return sorted(value["SS"])
    if "L" in value:
        return [item["S"] for item in value["L"] if "S" in item]
    return None


def withdraw_under_lease(
    dynamodb: Any,
    images_table: str,
    labels_table: str,
    item_id: str,
    *,
    owner: str,
    now: float,
    until: float,
    keep_versions: Collection[str] = (),
) -> bool:
    """Remove the image from the library: memberships, counts, then its item.

    Idempotent: a retry after a crash removes what is left. ``keep_versions``: source
    version ids (or ETags) that are not to be withdrawn, because they are newer than the
    caller's view (an item that now describes one of them is left alone). Raises
    ImageBusyError while a labelling run holds the item. True if an item was withdrawn.
    """
    item = acquire_lease(dynamodb, images_table, item_id, owner=owner, now=now, until=until)
    if item is None:
        return False
    described = {
        item.get("source_version_id", {}).get("S"),
        item.get("source_etag", {}).get("S"),
    }
    if described & set(keep_versions):
        release_lease(dynamodb, images_table, item_id, owner)
        return False
    try:
        for label in sorted(labels_held(item)):
            remove_membership(dynamodb, labels_table, label, item_id)
        dynamodb.delete_item(
            TableName=images_table,
            Key={"image_id": {"S": item_id}},
            ConditionExpression="tag_lease_owner = :owner",
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
    except BaseException:
        with contextlib.suppress(Exception):
            release_lease(dynamodb, images_table, item_id, owner)
        raise
    return True
