"""Transform handler: turn each new RAW object into its outputs and, last, its receipt.

Triggered by RAW objects created; the logic is in :mod:`sluice.transform` (``sources``,
``data_files``, ``image_files``, ``outputs``). What an object becomes depends on its
extension (case-insensitive, ``sources.kind_of``):

* a data file (``.json``, ``.jsonl``, ``.ndjson``) under a dataset prefix: its valid
  records, projected, to PROCESSED ``data/<raw key>`` and the report of the others to
  ``errors/<raw key>.jsonl``, streamed, within the invocation's time (``data_files``);
* an image (``.jpg``, ``.jpeg``, ``.png``, ``.webp``, ``.gif``, ``.tif``, ``.tiff``): its
  thumbnails to ``thumbnails/<size>/<raw key>.<ext>`` and its metadata item in the images
  table (``image_files``);
* anything else: rejected, ``unsupported_type``.

Status rule: **processed** when the input could be read as a whole, even if some or all
of its records are invalid (they are listed in the receipt and the report); **rejected**
when it could not (empty, not UTF-8, malformed JSON, wrong top-level shape, too deep, not
the image format its name says, truncated, a decompression bomb, too large, out of time,
no dataset for its prefix, unsupported type). A rejection is a verdict on the input and is
never retried; unexpected failures (throttling, network, bugs) raise, so the message is
retried and finally dead-lettered.

For each object (idempotency and ordering: decision 4; newest version wins:
docs/contracts.md, "Ownership and versions"):

1. Look before taking anything (``sources.fetch_source``: HeadObject with ``IfMatch`` the
   event's ETag). A duplicate (the receipt already names this version) or a stale event
   (a newer upload, with its own event, or the archive handler got there first) stops
   here, releasing a lease an earlier delivery of this version took and could not release.
2. Take the key's lease (:mod:`sluice.leases`), held until the receipt is written: two
   versions of one key are never transformed at once. Its owner is the version
   (:func:`lease_owner`), so a retry of a crashed delivery takes it over at once.
3. Read the object (GetObject with ``IfMatch``) under the lease. Gone, and its key has no
   receipt at all: deleted before it could be processed; outputs a delivery that died
   mid-way left are removed and the version ledger records it ``deleted``
   (``outputs.forget_deleted``). A duplicate or stale event stops here too.
4. Transform it by kind. Every output is a PUT derived only from the input, so a retry
   after a crash redoes the same work.
5. Look at RAW again (``sources.current_verdict``). A newer version: no receipt (its
   transform, waiting for the lease, overwrites these outputs, and the archive handler
   records this version as superseded). Gone: archived, if the key's receipt names this
   version (a duplicate delivery whose first receipt had it moved meanwhile); else
   deleted while it was transformed, so nothing of it stays
   (``outputs.deleted_while_processing``).
6. An image: create or refresh its metadata item (``image_files.put_image_item``,
   ``created_at`` set once).
7. Remove the outputs the receipt being replaced lists and this one does not
   (``outputs.left_behind``: a size no longer configured, an errors report, the data of a
   now-rejected file), so PROCESSED matches the receipt.
8. Write the receipt, the last write, naming the receipt it replaces (``replaces``,
   :func:`sluice.receipts.replacement`).

Records are personal data: logs carry keys, counts and codes, never a record or a value.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.events import S3ObjectRef
from sluice.keys import split_extension
from sluice.leases import LEASE_MARGIN_SECONDS, LeaseTerms, key_lease, release_own
from sluice.metrics import Outcome
from sluice.receipts import (
    REPROCESS_METADATA,
    Kind,
    Receipt,
    read_receipt,
    replacement,
    write_receipt,
)
from sluice.runtime import Handler, client, entry_point, make_logger, process_event
from sluice.settings import TransformSettings
from sluice.transform.data_files import Deadline, transform_data
from sluice.transform.image_files import ImageItem, put_image_item, transform_image
from sluice.transform.outputs import (
    delete_if_present,
    deleted_while_processing,
    forget_deleted,
    left_behind,
    previous_receipt,
)
from sluice.transform.sources import (
    Deleted,
    Source,
    current_verdict,
    fetch_source,
    kind_of,
    receipt_names,
)

__all__ = ["Deadline", "Dependencies", "handler", "make_handler", "process"]

logger = make_logger("transform")


@dataclass(frozen=True)
class Dependencies:
    """What the transform function works with: built once per execution environment."""

    settings: TransformSettings
    s3: Any
    dynamodb: Any

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dependencies:
        return cls(TransformSettings.from_env(env), client("s3"), client("dynamodb"))


def lease_owner(ref: S3ObjectRef) -> str:
    """The lease's owner is the version being transformed, not the invocation: a retry of
    a run that crashed holding the lease (or lost the answer to taking it) takes it over at
    once, while another version of the key waits. Two deliveries of one version may run
    together; they write the same bytes, which is the idempotency the handler already has."""
    identity = "\0".join((ref.key, ref.etag or "", ref.version_id or ""))
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def _unsupported(source: Source) -> Receipt:
    _, extension = split_extension(source.ref.key)
    return source.rejected(
        "unsupported",
        {
            "code": "unsupported_type",
            "message": f"unsupported type: {extension or 'no extension'}"
            " (expected a JSON data file under a dataset prefix, or a JPEG, PNG, WebP, GIF"
            " or TIFF image)",
        },
    )


def transform_input(
    deps: Dependencies, source: Source, kind: Kind, deadline: Deadline
) -> tuple[Receipt, ImageItem | None]:
    """Step 4: the outputs of ``source`` by its kind; its receipt, and an image's item."""
    try:
        if kind == "data":
            return transform_data(deps.s3, deps.settings, source, deadline), None
        if kind == "image":
            return transform_image(deps.s3, deps.settings, source)
        return _unsupported(source), None
    finally:
        if source.body is not None:
            source.body.close()


def process(
    deps: Dependencies,
    ref: S3ObjectRef,
    deadline: Deadline | None = None,
    *,
    lease: LeaseTerms | None = None,
) -> Receipt | None:
    """Process one RAW object and write its receipt (module docstring, steps 1-8); None
    when there was nothing to do. ``deadline`` is the invocation's clock (none: no limit)."""
    s3, settings = deps.s3, deps.settings
    bucket = settings.processed_bucket
    kind = kind_of(ref.key)
    terms = lease or LeaseTerms(owner=lease_owner(ref))
    # 1. A stale or duplicate event is recognised without taking the lease.
    if fetch_source(s3, bucket, ref, with_body=False) is None:
        release_own(s3, bucket, ref.key, terms.owner)
        return None
    # 2. The key's lease, until the receipt is written.
    with key_lease(s3, bucket, ref.key, terms):
        # 3. Asked again under the lease (a deletion seen before it is settled only here).
        source = fetch_source(s3, bucket, ref, with_body=kind != "unsupported")
        if isinstance(source, Deleted):
            forget_deleted(s3, deps.dynamodb, settings, ref, source)
            return None
        if source is None:
            return None
        # 4. The outputs.
        receipt, item = transform_input(deps, source, kind, deadline or Deadline.unbounded())
        # 5. Still the key's current version?
        verdict = current_verdict(s3, source)
        if verdict == "superseded":
            logger.info("a newer version was uploaded meanwhile; no receipt for this one")
            return None
        if verdict == "deleted":
            if receipt_names(read_receipt(s3, bucket, ref.key), source.etag, source.version_id):
                # Archived, not deleted: an earlier delivery's receipt had the archive
                # handler move it meanwhile (it empties RAW only once a receipt exists).
                logger.info("duplicate delivery: this version was archived meanwhile")
                return None
            deleted_while_processing(s3, bucket, source, receipt)
            return None
        # 6. The image's metadata item.
        if item is not None:
            put_image_item(deps.dynamodb, settings.images_table, source, item)
        # 7. What the receipt being replaced lists and this one does not.
        previous = previous_receipt(s3, bucket, ref.key)
        delete_if_present(s3, bucket, left_behind(previous, receipt, bucket))
        # 8. The receipt, last.
        reprocess_of = source.metadata.get(REPROCESS_METADATA)
        receipt.replaces = replacement(previous, receipt.source, reprocess_of)
        write_receipt(s3, bucket, receipt)
    logger.info(
        "input transformed",
        status=receipt.status,
        kind=receipt.kind,
        dataset=receipt.dataset,
        outputs=len(receipt.outputs),
        error_codes=sorted({str(error.get("code")) for error in receipt.errors}),
        stats=receipt.stats,
    )
    return receipt


def make_handler(deps: Dependencies) -> Handler:
    def accepts(ref: S3ObjectRef) -> bool:
        return ref.is_created and ref.bucket == deps.settings.raw_bucket

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        deadline = Deadline.of(context)

        def transform(ref: S3ObjectRef) -> Outcome | None:
            """The receipt's verdict for the metrics; its dataset is a registry name (bounded)."""
            # The lease outlives this invocation's deadline, after which a crashed run is dead.
            seconds = context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
            lease = LeaseTerms(owner=lease_owner(ref), seconds=seconds)
            receipt = process(deps, ref, deadline, lease=lease)
            return None if receipt is None else Outcome(receipt.status, receipt.dataset)

        return process_event(event, context, transform, logger, accepts)

    return handle


handler = entry_point(logger, lambda: make_handler(Dependencies.from_env(os.environ)))
