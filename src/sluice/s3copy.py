"""Server-side copies of one exact object version, of any size (no bytes through us).

Shared by the archive handler (RAW -> ARCHIVE) and ``sluice reprocess`` (ARCHIVE -> RAW):
``CopyObject`` up to 5 GiB, above that a multipart copy with ``UploadPartCopy`` driven
here rather than by s3transfer, so that it carries Content-Type, Content-Encoding/
Disposition/Language, Cache-Control, Expires and user metadata the same way whatever
s3transfer version the runtime bundles (older ones dropped them on multipart copies).
Every request is pinned to the source's ETag (``CopySourceIfMatch``) and, when the bucket
has versions, to its version id, so a copy is never of an object that changed meanwhile.
A multipart copy asks S3 for a full-object checksum of the source's CRC algorithm, so a
source with one can be compared end to end afterwards; a failed part aborts the upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sluice.s3io import MAX_PARTS
from sluice.units import GIB, MIB

MAX_SINGLE_COPY_BYTES = 5 * GIB
"""CopyObject's limit; larger objects need a multipart copy."""
DEFAULT_COPY_PART_SIZE = 512 * MIB
DEFAULT_COPY_CONCURRENCY = 8

CARRIED_HEADERS = (
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
    "Expires",
)
"""HeadObject fields a copy with ``MetadataDirective=REPLACE`` must set again."""
CHECKSUM_FIELDS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)
_FULL_OBJECT_CRCS = ("CRC64NVME", "CRC32C", "CRC32")


def carried_headers(head: Mapping[str, Any]) -> dict[str, Any]:
    """The source's headers, as arguments of the copy that replaces its metadata."""
    return {name: head[name] for name in CARRIED_HEADERS if head.get(name)}


def full_object_checksum(head: Mapping[str, Any], field: str) -> str | None:
    """A checksum of the whole object; composite ones (``...-N``) depend on the parts."""
    value = head.get(field)
    if not isinstance(value, str) or "-" in value:
        return None
    if head.get("ChecksumType") == "COMPOSITE":
        return None
    return value


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges covering ``size`` in at most 10,000 parts of >= ``part_size``."""
    needed = -(-size // MAX_PARTS)
    part_size = max(part_size, -(-needed // MIB) * MIB)
    return [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]


def copy_version(
    s3: Any,
    source: Mapping[str, str],
    source_head: Mapping[str, Any],
    bucket: str,
    key: str,
    destination_args: Mapping[str, Any],
    *,
    multipart_threshold: int = MAX_SINGLE_COPY_BYTES,
    part_size: int = DEFAULT_COPY_PART_SIZE,
    max_concurrency: int = DEFAULT_COPY_CONCURRENCY,
) -> tuple[str | None, bool]:
    """Copy ``source`` (``Bucket``, ``Key``, optional ``VersionId``; ``source_head`` its
    HeadObject) to ``bucket``/``key`` with ``destination_args`` (metadata, headers, storage
    class). Returns (the new version id, whether it was a multipart copy)."""
    size = int(source_head["ContentLength"])
    if size <= multipart_threshold:
        response = s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource=dict(source),
            CopySourceIfMatch=str(source_head["ETag"]),
            MetadataDirective="REPLACE",
            TaggingDirective="REPLACE",
            **destination_args,
        )
        return response.get("VersionId"), False
    return _multipart_copy(
        s3, source, source_head, bucket, key, destination_args, part_size, max_concurrency
    ), True


def _multipart_copy(
    s3: Any,
    source: Mapping[str, str],
    source_head: Mapping[str, Any],
    bucket: str,
    key: str,
    destination_args: Mapping[str, Any],
    part_size: int,
    max_concurrency: int,
) -> str | None:
    create_args = dict(destination_args)
    algorithm = next(
        (crc for crc in _FULL_OBJECT_CRCS if full_object_checksum(source_head, f"Checksum{crc}")),
        None,
    )
    if algorithm:
        create_args.update(ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]

    def copy_part(numbered_range: tuple[int, tuple[int, int]]) -> dict[str, Any]:
        number, (first, last) = numbered_range
        result = s3.upload_part_copy(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource=dict(source),
            CopySourceIfMatch=str(source_head["ETag"]),
            CopySourceRange=f"bytes={first}-{last}",
        )["CopyPartResult"]
        part = {"PartNumber": number, "ETag": result["ETag"]}
        part.update({name: result[name] for name in CHECKSUM_FIELDS if result.get(name)})
        return part

    ranges = list(enumerate(part_ranges(int(source_head["ContentLength"]), part_size), 1))
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(ranges)))) as pool:
            parts = list(pool.map(copy_part, ranges))
        response = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except Exception:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    version_id: str | None = response.get("VersionId")
    return version_id
