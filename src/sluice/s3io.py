"""S3 helpers every module shares: what an error means, reads that may find nothing, and
streaming writes with bounded memory.

**Missing, changed.** An object that is not there answers ``NoSuchKey`` (GET),
``NoSuchVersion`` (a version id), ``NotFound`` or a bare ``404`` (HEAD has no body);
a conditional request whose condition no longer holds answers ``PreconditionFailed`` /
``412``. :func:`is_missing`, :func:`is_precondition_failed` and :func:`is_gone_or_changed`
say which (:func:`is_conditional_conflict`: a conditional write lost a race), by code or
HTTP status, so no caller lists the codes again; :func:`head`, :func:`get` and
:func:`get_json` return None instead of raising for an object that is gone (or, with
``if_match``, changed).

**Streaming writes.**

:class:`MultipartWriter` is a write-only, non-seekable file object: bytes written to it
are buffered up to one part and sent with ``UploadPart``; ``close()`` completes the
upload, and leaving a ``with`` block on an exception (or failing to complete) aborts it,
so a failed stream never leaves a partial object behind (the bucket's lifecycle rule
cleans up after a crash). Objects smaller than one part are sent with a single
``PutObject``.

One part is uploaded on a background thread while the next one fills, so reading the
source and sending to S3 overlap (a bundle streams at the speed of the slower of the
two, not of their sum); memory stays bounded at two parts.
"""

from __future__ import annotations

import contextlib
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from sluice.units import MIB

MIN_PART_SIZE = 5 * MIB
DEFAULT_PART_SIZE = 8 * MIB
MAX_PARTS = 10_000

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})
PRECONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412"})


def error_code(error: Any) -> str:
    """The service's error code of a botocore ``ClientError`` ("" when it has none)."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def _http_status(error: Any) -> int:
    metadata = getattr(error, "response", {}).get("ResponseMetadata", {})
    return int(metadata.get("HTTPStatusCode", 0) or 0)


def is_missing(error: Any) -> bool:
    """The object (or the version asked for) does not exist."""
    return error_code(error) in MISSING_CODES or _http_status(error) == 404


def is_precondition_failed(error: Any) -> bool:
    """A conditional request (``IfMatch``, ``IfNoneMatch``) found the object changed."""
    return error_code(error) in PRECONDITION_FAILED_CODES or _http_status(error) == 412


def is_conditional_conflict(error: Any) -> bool:
    """A conditional write lost: the object changed (412), or another conditional write on
    the same key was under way (409 ``ConditionalRequestConflict``)."""
    conflict = error_code(error) == "ConditionalRequestConflict" or _http_status(error) == 409
    return conflict or is_precondition_failed(error)


def is_gone_or_changed(error: Any) -> bool:
    """The object an event or a read named is no longer the current one."""
    return is_missing(error) or is_precondition_failed(error)


def _unless_gone(call: Any, **request: Any) -> dict[str, Any] | None:
    try:
        response: dict[str, Any] = call(**request)
    except ClientError as error:
        if is_gone_or_changed(error):
            return None
        raise
    return response


def head(s3: Any, bucket: str, key: str, **extra: Any) -> dict[str, Any] | None:
    """HeadObject, or None when there is no such object (or version, or ETag with
    ``IfMatch`` in ``extra``)."""
    return _unless_gone(s3.head_object, Bucket=bucket, Key=key, **extra)


def head_with_checksums(s3: Any, bucket: str, key: str, **extra: Any) -> dict[str, Any] | None:
    """:func:`head` that also asks for the object's checksums, to compare a copy with its
    source (S3 returns them only when asked)."""
    return head(s3, bucket, key, ChecksumMode="ENABLED", **extra)


def get(
    s3: Any, bucket: str, key: str, *, if_match: str | None = None, **extra: Any
) -> dict[str, Any] | None:
    """GetObject, or None when there is no such object or, with ``if_match`` (an ETag,
    quoted or not), when it has changed since."""
    if if_match:
        # The quoted form is what HTTP specifies (and what every S3 implementation accepts).
        extra["IfMatch"] = '"' + if_match.strip('"') + '"'
    return _unless_gone(s3.get_object, Bucket=bucket, Key=key, **extra)


def get_json(s3: Any, bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object stored at ``key`` and its ETag (for a conditional write over it):
    ``(None, None)`` when there is none, ``(None, etag)`` when it is not a JSON object."""
    response = get(s3, bucket, key)
    if response is None:
        return None, None
    try:
        document = json.loads(response["Body"].read())
    except ValueError:
        document = None
    return (document if isinstance(document, dict) else None), str(response["ETag"])


class MultipartWriter(io.RawIOBase):
    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._content_type = content_type
        self._metadata = metadata or {}
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._next_part_number = 1
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: Future[dict[str, Any]] | None = None
        self._written = 0
        self._finished = False
        self.etag: str | None = None
        self.version_id: str | None = None
        """The object's version once complete (None in a bucket without versioning)."""

    # io.RawIOBase protocol -------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        if self.closed or self._finished:
            raise ValueError("write to a closed MultipartWriter")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self._part_size:
            # Read the size once: _send_part may grow it, and the bytes it sent are these.
            size = self._part_size
            # Hand the buffer itself to UploadPart and keep only the (small) overflow, so a
            # part is never held twice: memory stays at one part plus one write.
            part, self._buffer = self._buffer, self._buffer[size:]
            del part[size:]
            self._send_part(part)
        return len(view)

    @property
    def bytes_written(self) -> int:
        return self._written

    # upload ----------------------------------------------------------------------------
    def _send_part(self, body: bytes | bytearray) -> None:
        if self._upload_id is None:
            response = self._s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ContentType=self._content_type,
                Metadata=self._metadata,
            )
            self._upload_id = response["UploadId"]
        part_number = self._next_part_number
        if part_number > MAX_PARTS:
            raise ValueError(f"{self.key}: more than {MAX_PARTS} parts; raise part_size")
        self._next_part_number += 1
        # At most one part in flight: wait for it (and surface its error) before the next.
        self._wait_in_flight()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        self._in_flight = self._executor.submit(self._upload_part, part_number, body)
        # Grow parts as the object grows so 10,000 parts cover far more than 80 GB.
        if part_number in (1000, 5000):
            self._part_size *= 4

    def _upload_part(self, part_number: int, body: bytes | bytearray) -> dict[str, Any]:
        response = self._s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=part_number,
            Body=body,
        )
        return {"PartNumber": part_number, "ETag": response["ETag"]}

    def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._parts.append(future.result())

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def complete(self) -> None:
        """Finish the object; after this the writer is closed."""
        if self._finished:
            return
        try:
            if self._upload_id is None:
                response = self._s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=bytes(self._buffer),
                    ContentType=self._content_type,
                    Metadata=self._metadata,
                )
            else:
                if self._buffer:
                    self._send_part(self._buffer)
                self._wait_in_flight()
                response = self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except Exception:
            # The original error matters more than a failed abort; the lifecycle rule
            # removes an upload that even the abort could not.
            with contextlib.suppress(Exception):
                self.abort()
            raise
        self._shutdown()
        self._buffer = bytearray()
        self._finished = True
        self.etag = str(response.get("ETag", "")).strip('"') or None
        self.version_id = response.get("VersionId") or None
        super().close()

    def abort(self) -> None:
        """Drop everything written; no object is created."""
        if self._finished:
            return
        # A part still uploading would otherwise land after the abort.
        with contextlib.suppress(Exception):
            self._wait_in_flight()
        self._shutdown()
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
            )
        self._buffer = bytearray()
        self._finished = True
        super().close()

    def close(self) -> None:
        self.complete()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.complete()

    def __del__(self) -> None:
        # IOBase.__del__ would close() and so complete an abandoned upload; never do that:
        # an upload nobody completed is left for the lifecycle rule to abort.
        pass
