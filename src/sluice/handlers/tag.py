"""Tag handler: label each archived image and keep per-label counts exact; remove
what a removed archived input owned.

Triggered by ARCHIVE ``images/`` objects created, and by ARCHIVE ``images/``, ``data/``,
``rejected/`` and ``superseded/`` objects removed. A removal goes to
:func:`sluice.deletion.remove_archived` (thumbnails or data outputs, the image's item,
memberships and counts, the receipt; recorded ``deleted`` in the version ledger): this
handler owns the label counts and the image lease, and it never writes ARCHIVE, so no
removal it makes can trigger it again (decision 30). For each image created:

1. HeadObject with ``IfMatch`` = the event's ETag. 412/404 means the object changed or
   went away since the event: a newer event covers it, so this one is skipped. The
   labeler then reads exactly that version (``VersionId``), never a later one.
2. Take a lease on the image's item in the images table (a conditional UpdateItem that
   also creates the item if the transform has not; :mod:`sluice.image_items`). Runs for
   one image are serialised by it; a second delivery that finds the lease held fails and
   is retried after the visibility timeout. A crashed run's lease expires with its
   invocation's deadline. Then the object is looked at once more: a withdrawal
   (``image_items.withdraw_under_lease``) makes the copy noncurrent *before* it takes
   the same lease, so a run that gets the lease after a withdrawal always sees the copy
   gone and stops, and one that got it before makes the withdrawal wait for it.
3. If the item already holds labels from this labeler for this ETag, stop: duplicate
   delivery costs no labeler call. (Labels are computed once per content version and
   labeler; changing the thresholds applies to new images.)
4. Label it (:mod:`sluice.labelers`). An image that cannot be labelled gets an empty
   label set and ``label_error`` on its item, instead of a retry loop.
5. Diff against what the image may already have, and apply each change in its own
   transaction (:mod:`sluice.labels`), so counts never move on a duplicate. Before any
   membership is written, its label is added to the item's ``labels_touched`` set, so the
   item always names a superset of the image's memberships; a run that crashed halfway
   leaves no membership a later run (even for different content) cannot find and remove.
6. Record the result on the item (``labels``, ``label_confidence``, ``labeler``,
   ``labels_updated_at``, ``updated_at``, ``archive_etag``, ``archive_version_id``,
   ``label_error``) and release the lease in
   the same conditional write, so a run that lost its lease cannot overwrite a newer one.
   Only these attributes are written: the transform's attributes are left as they are.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice import deletion, image_items
from sluice.events import S3ObjectRef, normalize_etag
from sluice.keys import (
    ARCHIVE_DATA_PREFIX,
    ARCHIVE_IMAGES_PREFIX,
    ARCHIVE_REJECTED_PREFIX,
    ARCHIVE_SUPERSEDED_PREFIX,
    image_id,
)
from sluice.labelers import (
    ImageObject,
    Label,
    Labeler,
    OfflineLabeler,
    RekognitionLabeler,
    UnlabelableImageError,
)
from sluice.labels import add_membership, confidence_value, remove_membership
from sluice.leases import LeaseTerms
from sluice.receipts import utc_now
from sluice.runtime import make_logger, run
from sluice.settings import TagSettings

LEASE_MARGIN_SECONDS = 30.0
DEFAULT_LEASE_SECONDS = 900.0 + LEASE_MARGIN_SECONDS

ImageBusyError = image_items.ImageBusyError
"""Another invocation holds this image's lease (re-exported: callers catch it from here)."""

TagOutcome = Literal["tagged", "unchanged", "skipped"]


class LeaseLostError(RuntimeError):
    """This run's lease expired and another run took the image over."""


@dataclass(frozen=True)
class Lease:
    owner: str
    seconds: float = DEFAULT_LEASE_SECONDS
    clock: Callable[[], float] = time.time


def _strings(attribute: dict[str, Any] | None) -> list[str]:
    if not attribute:
        return []
    if "SS" in attribute:
        return list(attribute["SS"])
    return [value["S"] for value in attribute.get("L", []) if "S" in value]


def _acquire_lease(
    dynamodb: Any, settings: TagSettings, item_id: str, archive_key: str, lease: Lease
) -> dict[str, Any]:
    """Take the image's lease and return its item as it stands (sluice.image_items)."""
    now = lease.clock()
    item = image_items.acquire_lease(
        dynamodb,
        settings.images_table,
        item_id,
        owner=lease.owner,
        now=now,
        until=now + lease.seconds,
        archive_key=archive_key,
    )
    if item is None:  # pragma: no cover - created when missing, since archive_key is given
        raise ImageBusyError(f"image {item_id}: item vanished while taking the lease")
    return item


def _release_lease(dynamodb: Any, settings: TagSettings, item_id: str, lease: Lease) -> None:
    image_items.release_lease(dynamodb, settings.images_table, item_id, lease.owner)


def _already_tagged(item: dict[str, Any], etag: str, labeler: str) -> bool:
    return (
        item.get("archive_etag", {}).get("S") == etag
        and item.get("labeler", {}).get("S") == labeler
        and "labels" in item
        and set(_strings(item.get("labels_touched"))) <= set(_strings(item.get("labels")))
    )


def _mark_touched(
    dynamodb: Any, settings: TagSettings, item_id: str, names: list[str], lease: Lease
) -> None:
    try:
        dynamodb.update_item(
            TableName=settings.images_table,
            Key={"image_id": {"S": item_id}},
            UpdateExpression="ADD labels_touched :names",
            ConditionExpression="tag_lease_owner = :owner",
            ExpressionAttributeValues={":names": {"SS": names}, ":owner": {"S": lease.owner}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise LeaseLostError(f"image {item_id}: lease lost before labelling") from None


def _record_labels(
    dynamodb: Any,
    settings: TagSettings,
    item_id: str,
    image: ImageObject,
    labels: list[Label],
    labeler: str,
    label_error: str | None,
    lease: Lease,
) -> None:
    names = [label.name for label in labels]
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
        ":confidence": {"M": {label.name: confidence_value(label.confidence) for label in labels}},
        ":labeler": {"S": labeler},
        ":now": {"S": utc_now()},
        ":etag": {"S": image.etag},
        ":owner": {"S": lease.owner},
    }
    for attribute, value in (
        ("archive_version_id", image.version_id),
        ("label_error", label_error),
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
            TableName=settings.images_table,
            Key={"image_id": {"S": item_id}},
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression="tag_lease_owner = :owner",
            ExpressionAttributeValues=values,
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise LeaseLostError(f"image {item_id}: lease lost before recording labels") from None


def _head_event_version(s3: Any, ref: S3ObjectRef) -> dict[str, Any] | None:
    """The object version the event announced, or None if it changed or went away."""
    # Quoted, as HTTP wants it: notifications carry the ETag bare.
    extra = {"IfMatch": f'"{ref.etag}"'} if ref.etag else {}
    try:
        response: dict[str, Any] = s3.head_object(Bucket=ref.bucket, Key=ref.key, **extra)
    except s3.exceptions.ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (404, 412):
            return None
        raise
    return response


def tag_image(
    s3: Any,
    dynamodb: Any,
    labeler: Labeler,
    settings: TagSettings,
    ref: S3ObjectRef,
    lease: Lease,
) -> TagOutcome:
    """Label one archived image and bring its memberships and counts in line (idempotent)."""
    head = _head_event_version(s3, ref)
    if head is None:
        logger.info("image changed or was removed since this event; a newer event covers it")
        return "skipped"
    image = ImageObject(
        bucket=ref.bucket,
        key=ref.key,
        etag=str(normalize_etag(head.get("ETag"))),
        version_id=head.get("VersionId"),
        size=head.get("ContentLength"),
    )
    item_id = image_id(ref.key)
    item = _acquire_lease(dynamodb, settings, item_id, ref.key, lease)
    if _head_event_version(s3, ref) is None:
        # Made noncurrent (its key's newest version was rejected, and the image withdrawn)
        # between the first look and the lease: labelling it now would undo the withdrawal.
        image_items.abandon_lease(dynamodb, settings.images_table, item_id, lease.owner)
        logger.info("image withdrawn while the lease was taken; nothing to label")
        return "skipped"
    try:
        if _already_tagged(item, image.etag, labeler.name):
            _release_lease(dynamodb, settings, item_id, lease)
            logger.info("image already labelled for this content", image_id=item_id)
            return "unchanged"
        label_error = None
        try:
            labels = labeler.detect(image)
        except UnlabelableImageError as error:
            labels, label_error = [], str(error)
            logger.warning("image cannot be labelled", image_id=item_id, reason=label_error)
        wanted = {label.name for label in labels}
        possibly_held = set(_strings(item.get("labels"))) | set(
            _strings(item.get("labels_touched"))
        )
        if wanted:
            _mark_touched(dynamodb, settings, item_id, sorted(wanted), lease)
        added = removed = 0
        for label in labels:
            added += add_membership(
                dynamodb,
                settings.labels_table,
                label.name,
                item_id,
                archive_key=ref.key,
                confidence=label.confidence,
            )
        for name in sorted(possibly_held - wanted):
            removed += remove_membership(dynamodb, settings.labels_table, name, item_id)
        _record_labels(dynamodb, settings, item_id, image, labels, labeler.name, label_error, lease)
    except BaseException:
        # Best effort, so a retry need not wait for the lease to expire; never mask the error.
        with contextlib.suppress(Exception):
            _release_lease(dynamodb, settings, item_id, lease)
        raise
    logger.info(
        "image labelled",
        image_id=item_id,
        labeler=labeler.name,
        labels=sorted(wanted),
        memberships_added=added,
        memberships_removed=removed,
    )
    return "tagged"


def build_labeler(name: str, s3: Any, *, min_confidence: float, max_labels: int) -> Labeler:
    if name == "offline":
        return OfflineLabeler(s3, min_confidence=min_confidence, max_labels=max_labels)
    return RekognitionLabeler(
        boto3.client("rekognition"), min_confidence=min_confidence, max_labels=max_labels
    )


def is_archived_image(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.key.startswith(ARCHIVE_IMAGES_PREFIX)


REMOVAL_PREFIXES = (
    ARCHIVE_IMAGES_PREFIX,
    ARCHIVE_DATA_PREFIX,
    ARCHIVE_REJECTED_PREFIX,
    ARCHIVE_SUPERSEDED_PREFIX,
)
"""ARCHIVE names whose removal removes an input (docs/contracts.md)."""


def is_archived_input_removed(ref: S3ObjectRef) -> bool:
    return ref.is_removed and ref.key.startswith(REMOVAL_PREFIXES)


SETTINGS = TagSettings.from_env(os.environ)
DELETION = deletion.DeletionSettings.of(SETTINGS)
logger = make_logger("tag")
s3_client = boto3.client("s3")
dynamodb_client = boto3.client("dynamodb")
LABELER = build_labeler(
    SETTINGS.labeler,
    s3_client,
    min_confidence=SETTINGS.label_min_confidence,
    max_labels=SETTINGS.label_max_labels,
)


def _accepts(ref: S3ObjectRef) -> bool:
    return ref.bucket == SETTINGS.archive_bucket and (
        is_archived_image(ref) or is_archived_input_removed(ref)
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def process(ref: S3ObjectRef) -> None:
        # The lease outlives this invocation's deadline, after which a crashed run is dead.
        owner = f"{context.aws_request_id}/{uuid.uuid4().hex}"
        seconds = context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
        if ref.is_removed:
            outcome = deletion.remove_archived(
                s3_client,
                dynamodb_client,
                DELETION,
                ref.key,
                LeaseTerms(owner=owner, seconds=seconds),
            )
            logger.info("archived input removal", outcome=outcome)
            return
        tag_image(s3_client, dynamodb_client, LABELER, SETTINGS, ref, Lease(owner, seconds))

    return run(event, context, process, logger, accepts=_accepts)
