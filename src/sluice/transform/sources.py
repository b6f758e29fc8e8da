"""The RAW object an event announces, as S3 has it now: the transform's first and last look.

A notification can come late, twice, or after its object changed (decision 4), so nothing
is written before :func:`fetch_source` has read the object with ``IfMatch`` the event's
ETag and said which case this is:

* a :class:`Source`: the version the event announced, still current in RAW;
* None, a **duplicate**: the key's receipt already names this version;
* None, **stale**: a newer upload (with its own event) replaced it, or the archive handler
  moved it out of RAW once its receipt existed;
* :class:`Deleted`: gone from RAW and its key has no receipt at all: deleted before it
  could be processed (:func:`sluice.transform.outputs.forget_deleted` settles it).

Once the outputs exist, :func:`current_verdict` looks again (docs/contracts.md, "Ownership
and versions"): still current, superseded by a newer version, or deleted meanwhile.
"Newest" is S3's current version, the last PUT to complete.

The receipt's ``source`` block comes from here (:meth:`Source.receipt_source`), so it says
what S3 answered rather than what the event claimed; so do rejections
(:meth:`Source.rejected`), which are verdicts on this version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from sluice.events import S3ObjectRef, normalize_etag
from sluice.file_formats import DATA_FORMATS, INPUT_FORMATS
from sluice.keys import split_extension
from sluice.receipts import Kind, Receipt, read_receipt, source_of
from sluice.runtime import make_logger
from sluice.s3io import head, is_gone_or_changed

logger = make_logger("transform")

Verdict = Literal["current", "superseded", "deleted"]


def kind_of(key: str) -> Kind:
    """What a RAW key holds, by its extension (case-insensitive): the transform's path."""
    _, extension = split_extension(key)
    if extension in DATA_FORMATS:
        return "data"
    if extension in INPUT_FORMATS:
        return "image"
    return "unsupported"


@dataclass(frozen=True)
class Source:
    """The object as S3 has it now, confirmed to be the one the event announced."""

    ref: S3ObjectRef
    etag: str
    version_id: str | None
    size: int
    body: Any
    metadata: Mapping[str, str] = field(default_factory=dict)
    """The object's user metadata (``sluice reprocess`` marks its copies there)."""

    def receipt_source(self) -> dict[str, Any]:
        return source_of(self.ref, etag=self.etag, version_id=self.version_id, size=self.size)

    def rejected(self, kind: Kind, error: dict[str, Any], dataset: str | None = None) -> Receipt:
        """This version's rejection: a verdict on the input, never retried."""
        return Receipt(
            status="rejected",
            kind=kind,
            source=self.receipt_source(),
            dataset=dataset,
            errors=[error],
        )


@dataclass(frozen=True)
class Deleted:
    """The event's object is gone from RAW and its key has no receipt: it was deleted
    before it could be processed (settled under the lease by
    :func:`sluice.transform.outputs.forget_deleted`)."""

    etag: str


def receipt_names(receipt: Mapping[str, Any] | None, etag: str, version_id: str | None) -> bool:
    """Does ``receipt`` describe the version with ``etag`` (and ``version_id``, if known)?"""
    if not receipt:
        return False
    source = receipt.get("source") or {}
    if normalize_etag(source.get("etag")) != etag:
        return False
    return version_id is None or source.get("version_id") in (None, version_id)


def _key_is_gone(s3: Any, ref: S3ObjectRef) -> bool:
    return head(s3, ref.bucket, ref.key) is None


def fetch_source(
    s3: Any, processed_bucket: str, ref: S3ObjectRef, *, with_body: bool
) -> Source | Deleted | None:
    """The object the event names, :class:`Deleted` when it was deleted before it got a
    receipt, or None when the event is a duplicate or stale."""
    etag = ref.etag
    if ref.version_id is not None and etag is not None:
        existing = read_receipt(s3, processed_bucket, ref.key)
        if receipt_names(existing, etag, ref.version_id):
            logger.info("duplicate event: this version already has its receipt")
            return None
    if etag is None:
        # Some emitters omit the ETag: take the current object as the one meant.
        current = head(s3, ref.bucket, ref.key)
        if current is None:
            logger.info("stale event: the object no longer exists")
            return None
        etag = normalize_etag(current.get("ETag")) or ""
    # The quoted form is what HTTP specifies (and what every S3 implementation accepts).
    request = {"Bucket": ref.bucket, "Key": ref.key, "IfMatch": f'"{etag}"'}
    try:
        response = s3.get_object(**request) if with_body else s3.head_object(**request)
    except ClientError as error:
        if not is_gone_or_changed(error):
            raise
        existing = read_receipt(s3, processed_bucket, ref.key)
        if receipt_names(existing, etag, ref.version_id):
            logger.info("duplicate event: already processed, and the object has moved on")
        elif (
            existing is None
            and _key_is_gone(s3, ref)
            # Asked again after RAW: the archive handler empties RAW only once a receipt
            # exists, so a newer version archived between the two looks shows up here.
            and read_receipt(s3, processed_bucket, ref.key) is None
        ):
            return Deleted(etag)
        else:
            logger.info("stale event: the object was replaced or deleted since")
        return None
    version_id = response.get("VersionId")
    if ref.version_id is not None and version_id not in (None, ref.version_id):
        # Same bytes uploaded again: the newer version's own event will handle it.
        if with_body:
            response["Body"].close()
        logger.info("stale event: a newer version with the same content exists")
        return None
    return Source(
        ref=ref,
        etag=etag,
        version_id=version_id or ref.version_id,
        size=int(response.get("ContentLength", 0)),
        body=response.get("Body"),
        metadata=response.get("Metadata") or {},
    )


def current_verdict(s3: Any, source: Source) -> Verdict:
    """Is ``source`` still its key's current version in RAW (module docstring: newest)?"""
    current = head(s3, source.ref.bucket, source.ref.key)
    if current is None:
        return "deleted"
    version_id = current.get("VersionId")
    if normalize_etag(current.get("ETag")) != source.etag or (
        source.version_id and version_id and version_id != source.version_id
    ):
        return "superseded"
    return "current"


def version_id_by_etag(s3: Any, bucket: str, key: str, etag: str) -> str | None:
    """The version of ``key`` with ``etag`` (the newest, if the same bytes were uploaded
    twice), for an event that carries no version id (moto's; AWS's carry one on a
    versioned bucket). A deleted version is noncurrent behind the delete marker and keeps
    its ETag; None when RAW holds no such version or has no versions (``"null"``), and the
    ledger names the version by its ETag instead (:func:`sluice.keys.version_token`)."""
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for version in page.get("Versions", []):
            if version["Key"] == key and normalize_etag(version.get("ETag")) == etag:
                found = str(version.get("VersionId") or "")
                return found if found and found != "null" else None
    return None
