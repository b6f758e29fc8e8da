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
   transaction (:mod:`sluice.label_items`), so counts never move on a duplicate. Before any
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sluice import deletion, image_items
from sluice.events import S3ObjectRef, normalize_etag
from sluice.image_items import ImageBusyError, LabelRecord, LeaseLostError
from sluice.keys import (
    ARCHIVE_DATA_PREFIX,
    ARCHIVE_IMAGES_PREFIX,
    ARCHIVE_REJECTED_PREFIX,
    ARCHIVE_SUPERSEDED_PREFIX,
    image_id,
)
from sluice.label_items import add_membership, remove_membership
from sluice.labelers import (
    ImageObject,
    Labeler,
    OfflineLabeler,
    RekognitionLabeler,
    UnlabelableImageError,
)
from sluice.leases import LeaseTerms
from sluice.runtime import Handler, client, entry_point, make_logger, process_event
from sluice.s3io import head
from sluice.settings import TagSettings

__all__ = ["ImageBusyError", "LeaseLostError", "handler", "make_handler", "process"]

LEASE_MARGIN_SECONDS = 30.0
DEFAULT_LEASE_SECONDS = 900.0 + LEASE_MARGIN_SECONDS

TagOutcome = Literal["tagged", "unchanged", "skipped"]

REMOVAL_PREFIXES = (
    ARCHIVE_IMAGES_PREFIX,
    ARCHIVE_DATA_PREFIX,
    ARCHIVE_REJECTED_PREFIX,
    ARCHIVE_SUPERSEDED_PREFIX,
)
"""ARCHIVE names whose removal removes an input (docs/contracts.md)."""

logger = make_logger("tag")


@dataclass(frozen=True)
class Lease:
    owner: str
    seconds: float = DEFAULT_LEASE_SECONDS
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Dependencies:
    """What the tag function works with: built once per execution environment."""

    settings: TagSettings
    s3: Any
    dynamodb: Any
    labeler: Labeler

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dependencies:
        settings = TagSettings.from_env(env)
        s3 = client("s3")
        return cls(settings, s3, client("dynamodb"), build_labeler(settings, s3))

    @property
    def deletion(self) -> deletion.DeletionSettings:
        return deletion.DeletionSettings.of(self.settings)


def build_labeler(settings: TagSettings, s3: Any) -> Labeler:
    confidence, most = settings.label_min_confidence, settings.label_max_labels
    if settings.labeler == "offline":
        return OfflineLabeler(s3, min_confidence=confidence, max_labels=most)
    return RekognitionLabeler(client("rekognition"), min_confidence=confidence, max_labels=most)


def is_archived_image(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.key.startswith(ARCHIVE_IMAGES_PREFIX)


def is_archived_input_removed(ref: S3ObjectRef) -> bool:
    return ref.is_removed and ref.key.startswith(REMOVAL_PREFIXES)


def _event_version(s3: Any, ref: S3ObjectRef) -> dict[str, Any] | None:
    """The object version the event announced, or None if it changed or went away."""
    # Quoted, as HTTP wants it: notifications carry the ETag bare.
    return head(s3, ref.bucket, ref.key, **({"IfMatch": f'"{ref.etag}"'} if ref.etag else {}))


def tag_image(
    s3: Any,
    dynamodb: Any,
    labeler: Labeler,
    settings: TagSettings,
    ref: S3ObjectRef,
    lease: Lease,
) -> TagOutcome:
    """Label one archived image and bring its memberships and counts in line (idempotent)."""
    table = settings.images_table
    # 1. The version the event announced, or nothing to do.
    head_response = _event_version(s3, ref)
    if head_response is None:
        logger.info("image changed or was removed since this event; a newer event covers it")
        return "skipped"
    image = ImageObject(
        bucket=ref.bucket,
        key=ref.key,
        etag=str(normalize_etag(head_response.get("ETag"))),
        version_id=head_response.get("VersionId"),
        size=head_response.get("ContentLength"),
    )
    # 2. The image's lease, then one more look: a withdrawal may have come first.
    item_id = image_id(ref.key)
    now = lease.clock()
    item = image_items.acquire_lease(
        dynamodb,
        table,
        item_id,
        owner=lease.owner,
        now=now,
        until=now + lease.seconds,
        archive_key=ref.key,
    )
    if item is None:  # pragma: no cover - created when missing, since archive_key is given
        raise ImageBusyError(f"image {item_id}: item vanished while taking the lease")
    if _event_version(s3, ref) is None:
        image_items.abandon_lease(dynamodb, table, item_id, lease.owner)
        logger.info("image withdrawn while the lease was taken; nothing to label")
        return "skipped"
    try:
        # 3. A duplicate delivery costs no labeler call.
        if image_items.labelled_for(item, image.etag, labeler.name):
            image_items.release_lease(dynamodb, table, item_id, lease.owner)
            logger.info("image already labelled for this content", image_id=item_id)
            return "unchanged"
        # 4. Label it; an image that cannot be labelled gets no labels and a reason.
        label_error = None
        try:
            labels = labeler.detect(image)
        except UnlabelableImageError as error:
            labels, label_error = [], str(error)
            logger.warning("image cannot be labelled", image_id=item_id, reason=label_error)
        # 5. Memberships and counts, each change in its own transaction.
        wanted = {label.name for label in labels}
        possibly_held = image_items.labels_held(item)
        if wanted:
            image_items.mark_touched(dynamodb, table, item_id, sorted(wanted), lease.owner)
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
        # 6. The result on the item, releasing the lease in the same conditional write.
        record = LabelRecord(
            confidences={label.name: label.confidence for label in labels},
            labeler=labeler.name,
            archive_etag=image.etag,
            archive_version_id=image.version_id,
            label_error=label_error,
        )
        image_items.record_labels(dynamodb, table, item_id, record, lease.owner)
    except BaseException:
        # Best effort, so a retry need not wait for the lease to expire; never mask the error.
        with contextlib.suppress(Exception):
            image_items.release_lease(dynamodb, table, item_id, lease.owner)
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


def process(deps: Dependencies, ref: S3ObjectRef, context: Any) -> None:
    """Label an archived image, or remove what a removed archived input owned."""
    # The lease outlives this invocation's deadline, after which a crashed run is dead.
    owner = f"{context.aws_request_id}/{uuid.uuid4().hex}"
    seconds = context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
    if ref.is_removed:
        terms = LeaseTerms(owner=owner, seconds=seconds)
        outcome = deletion.remove_archived(deps.s3, deps.dynamodb, deps.deletion, ref.key, terms)
        logger.info("archived input removal", outcome=outcome)
        return
    tag_image(deps.s3, deps.dynamodb, deps.labeler, deps.settings, ref, Lease(owner, seconds))


def make_handler(deps: Dependencies) -> Handler:
    def accepts(ref: S3ObjectRef) -> bool:
        return ref.bucket == deps.settings.archive_bucket and (
            is_archived_image(ref) or is_archived_input_removed(ref)
        )

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_event(
            event, context, lambda ref: process(deps, ref, context), logger, accepts
        )

    return handle


handler = entry_point(logger, lambda: make_handler(Dependencies.from_env(os.environ)))
