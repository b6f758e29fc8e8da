"""A verified copy into ARCHIVE: the one rule that decides when a source may be deleted.

The archive handler copies the version a receipt names (RAW -> ``images/``, ``data/`` or
``rejected/``), and :mod:`sluice.supersession` copies every other version of the key to
``superseded/<version>/``. Both go through :func:`copy_verified`, so no source is ever
deleted on weaker evidence than another: the copy is server side
(:func:`sluice.s3copy.copy_version`, pinned to the source's version and ETag), stamped
with ``sluice-source-etag`` (and the source's version id), stored in the archive's storage
class, then compared with its source (:func:`copy_problems`). A faithful copy already there
(a retry after a crash between copy and delete) is not made again.

No object bytes pass through the function: ``CopyObject`` up to 5 GiB, a multipart
``UploadPartCopy`` above, both carrying Content-Type, Content-Encoding/Disposition/
Language, Cache-Control, Expires and user metadata. Object tags are not carried on either
path (sluice does not use them, and a multipart copy would need extra tagging calls and
permissions to carry them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.events import normalize_etag
from sluice.keys import (
    SOURCE_ETAG_METADATA,
    SOURCE_VERSION_METADATA,
    archive_key_for,
    images_archive_key,
)
from sluice.receipts import ParsedReceipt
from sluice.s3copy import CHECKSUM_FIELDS, carried_headers, copy_version, full_object_checksum
from sluice.s3io import head_with_checksums, is_precondition_failed
from sluice.settings import ArchiveSettings

_KMS_ENCRYPTION = ("aws:kms", "aws:kms:dsse")


class ArchiveVerificationError(RuntimeError):
    """The archive copy does not match its source; the source was not deleted."""


@dataclass(frozen=True)
class ArchiveRequest:
    """One copy to make: this source version to this ARCHIVE key."""

    source_bucket: str
    source_key: str
    source_etag: str
    source_version_id: str | None
    archive_key: str
    status: str
    kind: str
    replaces: Mapping[str, Any] | None = None
    """The receipt's ``replaces``: the previous version's receipt in brief, which goes into
    that version's ``superseded`` record (sluice.receipts, history)."""

    @property
    def is_library_image(self) -> bool:
        """A processed image: the copy the library lists, labels and bundles."""
        return self.kind == "image" and self.archive_key == images_archive_key(self.source_key)

    @classmethod
    def of(cls, receipt: ParsedReceipt, raw_bucket: str) -> ArchiveRequest:
        """What a receipt asks for: its RAW version, under the name its verdict gives."""
        return cls(
            source_bucket=raw_bucket,
            source_key=receipt.key,
            source_etag=receipt.etag,
            source_version_id=receipt.version_id,
            archive_key=archive_key_for(receipt.kind, receipt.status, receipt.key),
            status=receipt.status,
            kind=receipt.kind,
            replaces=receipt.replaces,
        )


@dataclass(frozen=True)
class Copied:
    """A copy that was made (for the handler's log line)."""

    source_key: str
    archive_key: str
    bytes: int
    multipart: bool


def _plain_md5_etag(head_response: Mapping[str, Any]) -> str | None:
    etag = normalize_etag(head_response.get("ETag")) or ""
    if (
        len(etag) != 32
        or "-" in etag
        or head_response.get("ServerSideEncryption") in _KMS_ENCRYPTION
        or head_response.get("SSECustomerAlgorithm")
    ):
        return None
    return etag


def copy_problems(
    source: Mapping[str, Any], archived: Mapping[str, Any], source_etag: str
) -> list[str]:
    """Why ``archived`` is not a faithful copy of ``source`` (empty: it is). Pure.

    Sizes must be equal and the ``sluice-source-etag`` stamp present; ETags must be equal
    when both are plain MD5 ETags (single-part, not SSE-KMS/SSE-C: those ETags are not
    content hashes, and a multipart copy's ETag is a hash of its parts); and every
    full-object checksum both sides report must be equal. A multipart copy asks S3 for a
    full-object checksum of the source's CRC algorithm, so a source with one (S3 has given
    every new object a CRC since 2024) is compared end to end.
    """
    problems = []
    if source.get("ContentLength") != archived.get("ContentLength"):
        problems.append(
            f"size {archived.get('ContentLength')} != source size {source.get('ContentLength')}"
        )
    stamp = archived.get("Metadata", {}).get(SOURCE_ETAG_METADATA)
    if stamp != source_etag:
        problems.append(f"{SOURCE_ETAG_METADATA} is {stamp!r}, expected {source_etag!r}")
    source_md5, archived_md5 = _plain_md5_etag(source), _plain_md5_etag(archived)
    if source_md5 and archived_md5 and source_md5 != archived_md5:
        problems.append(f"ETag {archived_md5} != source ETag {source_md5}")
    for field in CHECKSUM_FIELDS:
        ours, theirs = full_object_checksum(source, field), full_object_checksum(archived, field)
        if ours and theirs and ours != theirs:
            problems.append(f"{field} {theirs} != source {field} {ours}")
    return problems


def owned_by(held: Mapping[str, Any], request: ArchiveRequest) -> bool:
    """Is the archived copy ``held`` a copy of the version ``request`` names?"""
    metadata = held.get("Metadata", {})
    stamped_version = metadata.get(SOURCE_VERSION_METADATA)
    return metadata.get(SOURCE_ETAG_METADATA) == request.source_etag and (
        not stamped_version
        or not request.source_version_id
        or stamped_version == request.source_version_id
    )


def _copy_source(request: ArchiveRequest, source: Mapping[str, Any]) -> dict[str, str]:
    copy_source = {"Bucket": request.source_bucket, "Key": request.source_key}
    if source.get("VersionId"):
        copy_source["VersionId"] = str(source["VersionId"])
    return copy_source


def _destination_args(
    source: Mapping[str, Any], request: ArchiveRequest, storage_class: str
) -> dict[str, Any]:
    args = carried_headers(source)
    args["Metadata"] = {**source.get("Metadata", {}), SOURCE_ETAG_METADATA: request.source_etag}
    if request.source_version_id:
        args["Metadata"][SOURCE_VERSION_METADATA] = request.source_version_id
    args["StorageClass"] = storage_class
    return args


def copy_verified(
    s3: Any, settings: ArchiveSettings, request: ArchiveRequest, source: Mapping[str, Any]
) -> Copied | None:
    """Copy ``source`` (its HeadObject) to ``request.archive_key`` unless a faithful copy is
    there, then verify; raises :class:`ArchiveVerificationError`. The copy made, if any."""
    archived = head_with_checksums(s3, settings.archive_bucket, request.archive_key)
    copied = None
    if archived is None or copy_problems(source, archived, request.source_etag):
        version_id, multipart = copy_version(
            s3,
            _copy_source(request, source),
            source,
            settings.archive_bucket,
            request.archive_key,
            _destination_args(source, request, settings.storage_class),
            multipart_threshold=settings.multipart_threshold,
            part_size=settings.part_size,
            max_concurrency=settings.max_concurrency,
        )
        extra = {"VersionId": version_id} if version_id else {}
        archived = head_with_checksums(s3, settings.archive_bucket, request.archive_key, **extra)
        if archived is None:
            raise ArchiveVerificationError(f"{request.archive_key}: copy is missing after copying")
        size = int(source["ContentLength"])
        copied = Copied(request.source_key, request.archive_key, size, multipart)
    problems = copy_problems(source, archived, request.source_etag)
    if problems:
        raise ArchiveVerificationError(
            f"{request.archive_key}: archive copy does not match its source, source kept: "
            + "; ".join(problems)
        )
    return copied


def delete_source(s3: Any, request: ArchiveRequest, source: Mapping[str, Any]) -> bool:
    """Delete exactly the version that was archived; False if RAW changed meanwhile.

    On a versioned bucket by version id (no delete marker is left, and a newer upload is
    never touched); on an unversioned one conditionally (``IfMatch`` the ETag)."""
    version_id = source.get("VersionId")
    condition = {"VersionId": version_id} if version_id else {"IfMatch": str(source["ETag"])}
    try:
        s3.delete_object(Bucket=request.source_bucket, Key=request.source_key, **condition)
    except s3.exceptions.ClientError as error:
        if is_precondition_failed(error):
            return False
        raise
    return True
