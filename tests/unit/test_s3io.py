"""MultipartWriter against a fake in-memory S3 client (no network)."""

# The fake mirrors boto3's keyword names (Bucket, Key, ...).
# ruff: noqa: N803

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sluice import s3io
from sluice.s3io import MultipartWriter
from sluice.units import MIB


class FakeS3Error(Exception):
    pass


class FakeS3:
    """Just enough of the S3 client for MultipartWriter, with S3's multipart rules."""

    def __init__(self, *, min_part_size: int = s3io.MIN_PART_SIZE) -> None:
        self.objects: dict[str, bytes] = {}
        self.object_args: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.completed: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.min_part_size = min_part_size
        self.fail_on: dict[str, int] = {}  # operation -> fail on its n-th call (1-based)
        self._counts: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls.append(name)
        self._counts[name] = self._counts.get(name, 0) + 1
        if self.fail_on.get(name) == self._counts[name]:
            raise FakeS3Error(f"{name} failed")

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> dict[str, Any]:
        self._call("put_object")
        self.objects[f"{Bucket}/{Key}"] = bytes(Body)
        self.object_args[f"{Bucket}/{Key}"] = kwargs
        return {"ETag": f'"{hashlib.md5(Body).hexdigest()}"'}  # noqa: S324 - S3's ETag

    def create_multipart_upload(self, *, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
        self._call("create_multipart_upload")
        upload_id = f"upload-{len(self.uploads) + 1}"
        self.uploads[upload_id] = {"key": f"{Bucket}/{Key}", "parts": {}, "args": kwargs}
        return {"UploadId": upload_id}

    def upload_part(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes
    ) -> dict[str, Any]:
        self._call("upload_part")
        assert 1 <= PartNumber <= s3io.MAX_PARTS
        self.uploads[UploadId]["parts"][PartNumber] = bytes(Body)
        return {"ETag": f'"etag-{PartNumber}"'}

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> dict[str, Any]:
        self._call("complete_multipart_upload")
        upload = self.uploads.pop(UploadId)
        self.completed[UploadId] = upload
        listed = MultipartUpload["Parts"]
        numbers = [part["PartNumber"] for part in listed]
        assert numbers == list(range(1, len(numbers) + 1)), "parts must be listed in order"
        assert [part["ETag"] for part in listed] == [f'"etag-{n}"' for n in numbers]
        bodies = [upload["parts"][n] for n in numbers]
        for body in bodies[:-1]:
            assert len(body) >= self.min_part_size, "EntityTooSmall"
        self.objects[upload["key"]] = b"".join(bodies)
        self.object_args[upload["key"]] = upload["args"]
        return {"ETag": f'"multipart-{len(bodies)}"'}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self._call("abort_multipart_upload")
        del self.uploads[UploadId]
        return {}

    def part_sizes(self, upload_id: str = "upload-1") -> list[int]:
        parts = (self.uploads.get(upload_id) or self.completed[upload_id])["parts"]
        return [len(parts[n]) for n in sorted(parts)]


def pattern(size: int) -> bytes:
    """Bytes that differ from part to part, so a misplaced part changes the result."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


def write_in_chunks(writer: MultipartWriter, data: bytes, chunk: int) -> None:
    for offset in range(0, len(data), chunk):
        writer.write(data[offset : offset + chunk])


def test_small_object_is_one_put_with_its_content_type_and_metadata() -> None:
    s3 = FakeS3()
    data = b"x" * 1000

    with MultipartWriter(
        s3, "bucket", "small.bin", content_type="application/zip", metadata={"bundle": "b1"}
    ) as writer:
        writer.write(data)

    assert s3.calls == ["put_object"]
    assert s3.objects == {"bucket/small.bin": data}
    assert s3.object_args["bucket/small.bin"] == {
        "ContentType": "application/zip",
        "Metadata": {"bundle": "b1"},
    }
    assert writer.etag == hashlib.md5(data).hexdigest()  # noqa: S324
    assert writer.bytes_written == 1000
    assert writer.closed


def test_nothing_written_gives_a_zero_byte_object() -> None:
    s3 = FakeS3()

    with MultipartWriter(s3, "bucket", "empty"):
        pass

    assert s3.objects == {"bucket/empty": b""}


def test_object_larger_than_a_part_is_uploaded_in_numbered_parts() -> None:
    s3 = FakeS3()
    data = pattern(12 * MIB + 123)

    with MultipartWriter(s3, "bucket", "big.zip", part_size=5 * MIB) as writer:
        # Odd write sizes that never line up with part boundaries.
        write_in_chunks(writer, data, 777_777)
        # Parts go out while writing (one may still be in flight): it streams, not hoards.
        assert s3.part_sizes()[:1] == [5 * MIB]
        assert writer.tell() == len(data)

    assert s3.part_sizes() == [5 * MIB, 5 * MIB, 2 * MIB + 123]

    assert s3.calls.count("create_multipart_upload") == 1
    assert s3.calls.count("upload_part") == 3
    assert s3.calls[-1] == "complete_multipart_upload"
    assert "put_object" not in s3.calls
    assert s3.objects["bucket/big.zip"] == data
    assert writer.etag == "multipart-3"
    assert s3.uploads == {}


def test_exact_multiple_of_the_part_size_has_no_empty_last_part() -> None:
    s3 = FakeS3()
    data = pattern(10 * MIB)

    with MultipartWriter(s3, "bucket", "even", part_size=5 * MIB) as writer:
        writer.write(data)

    assert s3.calls.count("upload_part") == 2
    assert s3.objects["bucket/even"] == data


def test_one_huge_write_is_split_into_parts() -> None:
    s3 = FakeS3()
    data = pattern(16 * MIB)

    with MultipartWriter(s3, "bucket", "huge", part_size=5 * MIB) as writer:
        writer.write(memoryview(data))

    assert s3.calls.count("upload_part") == 4
    assert s3.objects["bucket/huge"] == data


def test_exception_inside_with_aborts_the_upload_and_leaves_no_object() -> None:
    s3 = FakeS3()

    with (
        pytest.raises(RuntimeError, match="source vanished"),
        MultipartWriter(s3, "bucket", "partial", part_size=5 * MIB) as writer,
    ):
        writer.write(pattern(6 * MIB))
        raise RuntimeError("source vanished")

    assert s3.calls[-1] == "abort_multipart_upload"
    assert "complete_multipart_upload" not in s3.calls
    assert s3.objects == {}
    assert s3.uploads == {}


def test_exception_before_the_first_part_writes_nothing() -> None:
    s3 = FakeS3()

    with pytest.raises(RuntimeError), MultipartWriter(s3, "bucket", "partial") as writer:
        writer.write(b"some bytes")
        raise RuntimeError("boom")

    assert s3.calls == []
    assert s3.objects == {}


def test_failed_part_upload_aborts() -> None:
    s3 = FakeS3()
    s3.fail_on["upload_part"] = 2

    with (
        pytest.raises(FakeS3Error),
        MultipartWriter(s3, "bucket", "k", part_size=5 * MIB) as writer,
    ):
        writer.write(pattern(11 * MIB))

    assert s3.calls[-1] == "abort_multipart_upload"
    assert s3.objects == {}
    assert s3.uploads == {}


@pytest.mark.parametrize("failing", ["upload_part", "complete_multipart_upload"])
def test_failure_while_completing_aborts_the_upload(failing: str) -> None:
    # The last part and the completion happen on leaving the block; a failure there must
    # not leave an upload that only the lifecycle rule would clean up.
    s3 = FakeS3()
    s3.fail_on[failing] = 2 if failing == "upload_part" else 1

    with pytest.raises(FakeS3Error), MultipartWriter(s3, "b", "k", part_size=5 * MIB) as writer:
        writer.write(pattern(6 * MIB))

    assert s3.calls[-1] == "abort_multipart_upload"
    assert s3.objects == {}
    assert s3.uploads == {}


def test_write_after_completion_is_an_error() -> None:
    s3 = FakeS3()
    with MultipartWriter(s3, "bucket", "k") as writer:
        writer.write(b"a")

    with pytest.raises(ValueError, match="closed"):
        writer.write(b"b")


def test_complete_twice_and_abort_after_complete_are_no_ops() -> None:
    s3 = FakeS3()
    writer = MultipartWriter(s3, "bucket", "k")
    writer.write(b"a")
    writer.complete()
    writer.complete()
    writer.abort()

    assert s3.calls == ["put_object"]
    assert s3.objects == {"bucket/k": b"a"}


def test_abandoned_writer_is_never_completed_by_garbage_collection() -> None:
    s3 = FakeS3()
    writer = MultipartWriter(s3, "bucket", "k")
    writer.write(b"half")
    del writer

    assert s3.calls == []


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="part_size"):
        MultipartWriter(FakeS3(), "bucket", "k", part_size=5 * MIB - 1)


def test_not_seekable_not_readable() -> None:
    writer = MultipartWriter(FakeS3(), "bucket", "k")
    assert writer.writable()
    assert not writer.seekable()
    assert not writer.readable()


def test_parts_grow_so_ten_thousand_parts_cover_large_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Scaled down (10-byte parts) so the growth after parts 1000 and 5000 is cheap to see.
    monkeypatch.setattr(s3io, "MIN_PART_SIZE", 1)
    s3 = FakeS3(min_part_size=1)
    data = pattern(10 * 1000 + 40 * 4000 + 160 + 50)

    with MultipartWriter(s3, "bucket", "k", part_size=10) as writer:
        write_in_chunks(writer, data, 4096)
    sizes = s3.part_sizes()

    assert len(sizes) == 1000 + 4000 + 1 + 1  # the last, short part is sent on close
    assert set(sizes[:1000]) == {10}
    assert set(sizes[1000:5000]) == {40}
    assert sizes[5000:] == [160, 50]
    assert s3.objects["bucket/k"] == data


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    ("code", "status", "missing", "changed"),
    [
        ("NoSuchKey", 404, True, False),  # GetObject
        ("404", 404, True, False),  # HeadObject has no body, so no code of its own
        ("NoSuchVersion", 404, True, False),
        ("", 404, True, False),  # only the status says it
        ("PreconditionFailed", 412, False, True),
        ("412", 412, False, True),
        ("AccessDenied", 403, False, False),
        ("SlowDown", 503, False, False),
    ],
)
def test_an_error_is_missing_or_changed_by_its_code_or_status(
    code: str, status: int, missing: bool, changed: bool
) -> None:
    error = _client_error(code, status)
    assert s3io.is_missing(error) is missing
    assert s3io.is_precondition_failed(error) is changed
    assert s3io.is_gone_or_changed(error) is (missing or changed)


class _Answering:
    """A client whose reads raise ``error`` (or answer), recording what was asked."""

    def __init__(self, error: ClientError | None) -> None:
        self.error = error
        self.requests: list[dict[str, Any]] = []

    def _answer(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return {"ETag": '"abc"'}

    head_object = get_object = _answer


def test_head_and_get_answer_none_for_a_gone_or_changed_object_and_raise_otherwise() -> None:
    assert s3io.head(_Answering(_client_error("404", 404)), "b", "k") is None
    assert s3io.get(_Answering(_client_error("PreconditionFailed", 412)), "b", "k") is None
    with pytest.raises(ClientError):
        s3io.get(_Answering(_client_error("AccessDenied", 403)), "b", "k")
    assert s3io.head(_Answering(None), "b", "k") == {"ETag": '"abc"'}


def test_a_conditional_get_sends_the_etag_quoted_once() -> None:
    client = _Answering(None)
    s3io.get(client, "b", "k", if_match="abc")
    s3io.get(client, "b", "k", if_match='"abc"')
    s3io.get(client, "b", "k")
    assert [request.get("IfMatch") for request in client.requests] == ['"abc"', '"abc"', None]
