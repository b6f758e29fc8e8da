"""Archive handler against moto: server-side move RAW -> ARCHIVE, verified, idempotent."""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import replace
from typing import Any

import boto3
import pytest

from sluice.archive_copy import ArchiveRequest, ArchiveVerificationError, copy_problems
from sluice.handlers import archive
from sluice.handlers.archive import Dependencies
from sluice.image_items import plain
from sluice.keys import image_id, superseded_archive_key, version_record_key
from sluice.leases import LEASE_MARGIN_SECONDS
from sluice.receipts import Receipt, parse_receipt, write_receipt
from sluice.runtime import Handler
from sluice.s3copy import part_ranges
from sluice.settings import ArchiveSettings
from sluice.units import MIB
from tests.conftest import FakeContext, Pipeline
from tests.s3events import object_event_for


@pytest.fixture
def deps(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Dependencies:
    """The archive function's settings and moto clients, as its cold start builds them."""
    monkeypatch.setenv("ARCHIVE_STORAGE_CLASS", "STANDARD_IA")
    return Dependencies.from_env(os.environ)


@pytest.fixture
def handler(deps: Dependencies) -> Handler:
    return archive.make_handler(deps)


class S3Proxy:
    """The real (moto) client, with some operations replaced to inject faults."""

    def __init__(self, client: Any, **overrides: Any) -> None:
        self._client = client
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._client, name)


def put_raw(p: Pipeline, key: str, body: bytes, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = p.s3.put_object(Bucket=p.raw, Key=key, Body=body, **extra)
    return response


def receipt_event(
    p: Pipeline,
    raw_key: str,
    *,
    status: str = "processed",
    kind: str = "image",
    with_version: bool = True,
) -> dict[str, Any]:
    """Write the receipt the transform would write for RAW's current object; its event."""
    head = p.s3.head_object(Bucket=p.raw, Key=raw_key)
    source = {
        "bucket": p.raw,
        "key": raw_key,
        "etag": head["ETag"].strip('"'),
        "version_id": head.get("VersionId") if with_version else None,
        "size": head["ContentLength"],
        "sequencer": None,
    }
    receipt = Receipt(status=status, kind=kind, source=source)  # type: ignore[arg-type]
    key = write_receipt(p.s3, p.processed, receipt)
    return object_event_for(p.s3, p.processed, key)


def raw_versions(p: Pipeline, key: str) -> tuple[list[Any], list[Any]]:
    listing = p.s3.list_object_versions(Bucket=p.raw, Prefix=key)
    versions = [v for v in listing.get("Versions", []) if v["Key"] == key]
    markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key]
    return versions, markers


def archive_versions(p: Pipeline, key: str) -> list[Any]:
    listing = p.s3.list_object_versions(Bucket=p.archive, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_single_copy_keeps_headers_metadata_and_storage_class_then_deletes_source(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    key = "cams/front door/2026 11+22 ü.jpg"
    body = os.urandom(2048)
    put = put_raw(
        pipeline,
        key,
        body,
        ContentType="image/jpeg",
        ContentDisposition='attachment; filename="x.jpg"',
        CacheControl="max-age=60",
        ContentLanguage="en",
        Metadata={"uploader": "cli"},
        Tagging="owner=someone",
    )
    result = handler(receipt_event(pipeline, key), lambda_context)

    assert result == {"batchItemFailures": []}
    head = pipeline.s3.head_object(Bucket=pipeline.archive, Key=f"images/{key}")
    assert head["ContentType"] == "image/jpeg"
    assert head["ContentDisposition"] == 'attachment; filename="x.jpg"'
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentLanguage"] == "en"
    assert head["Metadata"] == {
        "uploader": "cli",
        "sluice-source-etag": put["ETag"].strip('"'),
        "sluice-source-version-id": put["VersionId"],
    }
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ETag"] == put["ETag"]
    # Tags are not carried, on this path as on the multipart one.
    assert (
        pipeline.s3.get_object_tagging(Bucket=pipeline.archive, Key=f"images/{key}")["TagSet"] == []
    )
    archived = pipeline.s3.get_object(Bucket=pipeline.archive, Key=f"images/{key}")
    assert archived["Body"].read() == body
    # The exact version is gone: no object, and no delete marker left behind.
    assert raw_versions(pipeline, key) == ([], [])


def test_multipart_copy_for_large_objects(pipeline: Pipeline) -> None:
    key = "big/scan.tiff"
    body = os.urandom(12 * MIB)
    put_raw(pipeline, key, body, ContentType="image/tiff", Metadata={"site": "lab-2"})
    settings = ArchiveSettings(
        raw_bucket=pipeline.raw,
        archive_bucket=pipeline.archive,
        processed_bucket=pipeline.processed,
        images_table=pipeline.images_table,
        storage_class="GLACIER_IR",
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    calls: list[str] = []

    def upload_part_copy(**kwargs: Any) -> Any:
        calls.append(kwargs["CopySourceRange"])
        return pipeline.s3.upload_part_copy(**kwargs)

    def copy_object(**kwargs: Any) -> Any:
        raise AssertionError("a large object must not go through CopyObject")

    s3 = S3Proxy(pipeline.s3, upload_part_copy=upload_part_copy, copy_object=copy_object)
    receipt = Receipt(
        status="processed",
        kind="image",
        source={"bucket": pipeline.raw, "key": key, "etag": _etag(pipeline, key)},
    )
    request = ArchiveRequest.of(parse_receipt(receipt.to_json(), pipeline.raw), pipeline.raw)

    assert archive.archive_object(Dependencies(settings, s3, pipeline.dynamodb), request) == (
        "archived"
    )
    assert set(calls) == {
        f"bytes=0-{5 * MIB - 1}",
        f"bytes={5 * MIB}-{10 * MIB - 1}",
        f"bytes={10 * MIB}-{12 * MIB - 1}",
    }
    head = pipeline.s3.head_object(Bucket=pipeline.archive, Key=f"images/{key}")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "image/tiff"
    assert head["Metadata"]["site"] == "lab-2"
    assert head["StorageClass"] == "GLACIER_IR"
    archived = pipeline.s3.get_object(Bucket=pipeline.archive, Key=f"images/{key}")
    assert archived["Body"].read() == body
    assert raw_versions(pipeline, key) == ([], [])


def _etag(p: Pipeline, key: str) -> str:
    return str(p.s3.head_object(Bucket=p.raw, Key=key)["ETag"].strip('"'))


def test_failed_multipart_copy_is_aborted_and_source_kept(pipeline: Pipeline) -> None:
    key = "big/broken.bin"
    put_raw(pipeline, key, os.urandom(11 * MIB))
    settings = ArchiveSettings(
        pipeline.raw,
        pipeline.archive,
        pipeline.processed,
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )

    def upload_part_copy(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise RuntimeError("network went away")
        return pipeline.s3.upload_part_copy(**kwargs)

    request = ArchiveRequest(
        pipeline.raw, key, _etag(pipeline, key), None, f"data/{key}", "processed", "data"
    )
    with pytest.raises(RuntimeError, match="network"):
        archive.archive_object(
            Dependencies(
                settings, S3Proxy(pipeline.s3, upload_part_copy=upload_part_copy), pipeline.dynamodb
            ),
            request,
        )

    assert pipeline.s3.list_multipart_uploads(Bucket=pipeline.archive).get("Uploads", []) == []
    assert archive_versions(pipeline, f"data/{key}") == []
    assert len(raw_versions(pipeline, key)[0]) == 1


def test_duplicate_delivery_copies_once(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    key = "data/readings.json"
    put_raw(pipeline, key, b'{"a": 1}', ContentType="application/json")
    event = receipt_event(pipeline, key, kind="data")

    assert handler(event, lambda_context) == {"batchItemFailures": []}
    assert handler(event, lambda_context) == {"batchItemFailures": []}

    assert len(archive_versions(pipeline, f"data/{key}")) == 1
    assert raw_versions(pipeline, key) == ([], [])


def test_crash_between_copy_and_delete_resumes_without_copying_again(
    pipeline: Pipeline, deps: Dependencies
) -> None:
    key = "photos/cat.png"
    put_raw(pipeline, key, b"png bytes", ContentType="image/png")
    receipt_event(pipeline, key, with_version=False)  # what moto server's events look like
    receipt_key = f"receipts/{key}.json"

    def delete_object(**kwargs: Any) -> Any:
        raise ConnectionError("function timed out")

    crashing = S3Proxy(pipeline.s3, delete_object=delete_object)
    with pytest.raises(ConnectionError):
        archive.process(replace(deps, s3=crashing), pipeline.processed, receipt_key)
    assert len(raw_versions(pipeline, key)[0]) == 1

    outcome = archive.process(deps, pipeline.processed, receipt_key)

    assert outcome == "archived"
    assert len(archive_versions(pipeline, f"images/{key}")) == 1
    assert raw_versions(pipeline, key) == ([], [])


def test_source_gone_and_archive_holds_it_is_success(
    pipeline: Pipeline, deps: Dependencies
) -> None:
    key = "photos/dog.jpg"
    put_raw(pipeline, key, b"jpeg")
    receipt_event(pipeline, key)
    receipt_key = f"receipts/{key}.json"
    assert archive.process(deps, pipeline.processed, receipt_key) == "archived"

    again = archive.process(deps, pipeline.processed, receipt_key)

    assert again == "already_archived"
    assert len(archive_versions(pipeline, f"images/{key}")) == 1


def test_source_deleted_after_its_receipt_is_recorded_deleted_not_retried(
    pipeline: Pipeline, deps: Dependencies, handler: Handler, lambda_context: FakeContext
) -> None:
    """Deleted from RAW after its receipt, before archiving: the receipt goes, the version
    ledger says why (sluice.deletion; tests/integration/test_deletion.py has the rest)."""
    key = "photos/vanished.jpg"
    put_raw(pipeline, key, b"jpeg")
    event = receipt_event(pipeline, key)
    version = pipeline.s3.head_object(Bucket=pipeline.raw, Key=key)["VersionId"]
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=key, VersionId=version)

    assert handler(event, lambda_context) == {"batchItemFailures": []}
    assert archive.process(deps, pipeline.processed, f"receipts/{key}.json") == "skipped"
    record = pipeline.s3.get_object(
        Bucket=pipeline.processed, Key=f"versions/{version}/{key}.json"
    )["Body"].read()
    assert json.loads(record)["deleted_from"] == "raw"


def test_newer_raw_version_is_left_alone(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    key = "photos/overwritten.jpg"
    put_raw(pipeline, key, b"first upload")
    event = receipt_event(pipeline, key)
    newer = put_raw(pipeline, key, b"second upload, with its own receipt to come")

    assert handler(event, lambda_context) == {"batchItemFailures": []}

    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key=key)
    assert head["VersionId"] == newer["VersionId"]
    assert archive_versions(pipeline, f"images/{key}") == []


def test_newest_version_wins_older_upload_is_archived_as_superseded_not_resurfaced(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    key = "photos/rewritten.jpg"
    older = put_raw(pipeline, key, b"first upload")
    older_event = receipt_event(pipeline, key)
    put_raw(pipeline, key, b"second upload")
    newer_event = receipt_event(pipeline, key)

    assert handler(older_event, lambda_context) == {"batchItemFailures": []}
    assert handler(newer_event, lambda_context) == {"batchItemFailures": []}

    archived = pipeline.s3.get_object(Bucket=pipeline.archive, Key=f"images/{key}")
    assert archived["Body"].read() == b"second upload"
    # The older upload is archived under its version, recorded, and gone from RAW: nothing
    # can become current again there.
    kept = pipeline.s3.get_object(
        Bucket=pipeline.archive, Key=superseded_archive_key(key, older["VersionId"])
    )
    assert kept["Body"].read() == b"first upload"
    record = json.loads(
        pipeline.s3.get_object(
            Bucket=pipeline.processed, Key=version_record_key(key, older["VersionId"])
        )["Body"].read()
    )
    assert record["status"] == "superseded"
    assert record["source"]["version_id"] == older["VersionId"]
    assert raw_versions(pipeline, key) == ([], [])


def test_same_bytes_uploaded_again_is_a_newer_version_too(
    pipeline: Pipeline, deps: Dependencies
) -> None:
    key = "photos/twice.jpg"
    put_raw(pipeline, key, b"identical")
    receipt_event(pipeline, key)
    put_raw(pipeline, key, b"identical")

    outcome = archive.process(deps, pipeline.processed, f"receipts/{key}.json")

    assert outcome == "superseded"


def test_rejected_inputs_are_archived_under_rejected(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    key = "inbox/notes.docx"
    put_raw(pipeline, key, b"PK\x03\x04 not supported", ContentType="application/msword")
    event = receipt_event(pipeline, key, status="rejected", kind="unsupported")

    assert handler(event, lambda_context) == {"batchItemFailures": []}

    head = pipeline.s3.head_object(Bucket=pipeline.archive, Key=f"rejected/{key}")
    assert head["ContentType"] == "application/msword"
    assert raw_versions(pipeline, key) == ([], [])


def test_zero_byte_object_is_archived(pipeline: Pipeline, deps: Dependencies) -> None:
    key = "empty.json"
    put_raw(pipeline, key, b"")
    receipt_event(pipeline, key, status="rejected", kind="data")
    outcome = archive.process(deps, pipeline.processed, f"receipts/{key}.json")
    assert outcome == "archived"
    assert (
        pipeline.s3.head_object(Bucket=pipeline.archive, Key=f"rejected/{key}")["ContentLength"]
        == 0
    )


def test_verification_failure_keeps_the_source_and_fails_the_message(
    pipeline: Pipeline, deps: Dependencies, lambda_context: FakeContext
) -> None:
    key = "photos/corrupted.jpg"
    put_raw(pipeline, key, b"the real bytes")
    event = receipt_event(pipeline, key)

    def copy_object(**kwargs: Any) -> Any:
        # A copy that lands the wrong bytes under the right stamp.
        return pipeline.s3.put_object(
            Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=b"other", Metadata=kwargs["Metadata"]
        )

    corrupting = replace(deps, s3=S3Proxy(pipeline.s3, copy_object=copy_object))
    result = archive.make_handler(corrupting)(event, lambda_context)

    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert len(raw_versions(pipeline, key)[0]) == 1
    with pytest.raises(ArchiveVerificationError, match="size 5 != source size 14"):
        archive.process(corrupting, pipeline.processed, f"receipts/{key}.json")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"receipt_version": 1, "status": "processed", "kind": "image", "source": {}}',
        b'{"receipt_version": 1, "status": "processed", "kind": "image",'
        b' "source": {"bucket": "someone-elses-bucket", "key": "k", "etag": "e"}}',
        b'{"receipt_version": 2, "status": "processed", "kind": "image", "source": {}}',
    ],
    ids=["bad-json", "not-object", "no-source-key", "foreign-bucket", "future-version"],
)
def test_a_receipts_object_that_is_not_a_receipt_is_skipped(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext, body: bytes
) -> None:
    put_raw(pipeline, "k", b"stays where it is")
    pipeline.s3.put_object(Bucket=pipeline.processed, Key="receipts/k.json", Body=body)
    event = object_event_for(pipeline.s3, pipeline.processed, "receipts/k.json")

    assert handler(event, lambda_context) == {"batchItemFailures": []}
    assert (
        pipeline.s3.get_object(Bucket=pipeline.raw, Key="k")["Body"].read() == b"stays where it is"
    )
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.archive).get("KeyCount") == 0


def test_events_it_does_not_act_on_are_ignored(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    put_raw(pipeline, "photo.jpg", b"raw")
    pipeline.s3.put_object(Bucket=pipeline.processed, Key="data/photo.json", Body=b"{}")
    event = object_event_for(pipeline.s3, pipeline.processed, "data/photo.json")
    assert handler(event, lambda_context) == {"batchItemFailures": []}
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.archive).get("KeyCount") == 0


def test_unversioned_raw_bucket_uses_a_conditional_delete(pipeline: Pipeline) -> None:
    pipeline.s3.create_bucket(Bucket="plain-raw")
    pipeline.s3.put_object(Bucket="plain-raw", Key="a.csv", Body=b"x,y\n")
    etag = pipeline.s3.head_object(Bucket="plain-raw", Key="a.csv")["ETag"].strip('"')
    settings = ArchiveSettings("plain-raw", pipeline.archive, pipeline.processed)
    request = ArchiveRequest("plain-raw", "a.csv", etag, None, "data/a.csv", "processed", "data")
    deletes: list[dict[str, Any]] = []

    def delete_object(**kwargs: Any) -> Any:
        deletes.append(kwargs)
        return pipeline.s3.delete_object(**kwargs)

    s3 = S3Proxy(pipeline.s3, delete_object=delete_object)
    assert archive.archive_object(Dependencies(settings, s3, pipeline.dynamodb), request) == (
        "archived"
    )
    assert deletes == [{"Bucket": "plain-raw", "Key": "a.csv", "IfMatch": f'"{etag}"'}]
    assert pipeline.s3.list_objects_v2(Bucket="plain-raw").get("KeyCount") == 0


# verification rules (pure) -------------------------------------------------------------


MD5 = "0123456789abcdef0123456789abcdef"
STAMP = {"sluice-source-etag": MD5}


def test_copy_problems_accepts_a_faithful_copy() -> None:
    source = {"ContentLength": 10, "ETag": f'"{MD5}"', "ChecksumCRC32": "AAAA"}
    copy = {**source, "Metadata": STAMP}
    assert copy_problems(source, copy, MD5) == []


def test_copy_problems_flags_each_mismatch() -> None:
    source = {"ContentLength": 10, "ETag": f'"{MD5}"', "ChecksumSHA256": "abc="}
    copy = {
        "ContentLength": 11,
        "ETag": '"ffffffffffffffffffffffffffffffff"',
        "ChecksumSHA256": "xyz=",
        "Metadata": {},
    }
    problems = copy_problems(source, copy, MD5)
    assert len(problems) == 4
    assert any("size" in p for p in problems)
    assert any("sluice-source-etag" in p for p in problems)
    assert any("ETag" in p for p in problems)
    assert any("ChecksumSHA256" in p for p in problems)


def test_copy_problems_skips_values_that_are_not_content_hashes() -> None:
    source = {"ContentLength": 10, "ETag": f'"{MD5}-2"', "ChecksumCRC32C": "AAAA==-2"}
    copy = {
        "ContentLength": 10,
        "ETag": '"ffffffffffffffffffffffffffffffff"',
        "ChecksumCRC32C": "BBBB==",
        "Metadata": STAMP,
    }
    assert copy_problems(source, copy, MD5) == []
    kms_source = {"ContentLength": 10, "ETag": f'"{MD5}"', "ServerSideEncryption": "aws:kms"}
    kms_copy = {
        "ContentLength": 10,
        "ETag": '"ffffffffffffffffffffffffffffffff"',
        "Metadata": STAMP,
    }
    assert copy_problems(kms_source, kms_copy, MD5) == []


def test_part_ranges_cover_the_object_within_the_part_limit() -> None:
    assert part_ranges(12 * MIB, 5 * MIB) == [
        (0, 5 * MIB - 1),
        (5 * MIB, 10 * MIB - 1),
        (10 * MIB, 12 * MIB - 1),
    ]
    huge = 5 * 1024**4  # S3's largest object
    ranges = part_ranges(huge, 5 * MIB)
    assert len(ranges) <= 10_000
    assert ranges[0][0] == 0 and ranges[-1][1] == huge - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))


def test_archive_under_the_environments_kms_key_copies_verifies_and_deletes(
    pipeline: Pipeline, handler: Handler, lambda_context: FakeContext
) -> None:
    # kms_cmk_enabled: RAW and ARCHIVE encrypt with SSE-KMS and a bucket key by default.
    # Their ETags are not MD5 digests, so verification rests on size and checksums.
    key_arn = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    for bucket in (pipeline.raw, pipeline.archive):
        pipeline.s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": key_arn,
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
    key = "photos/kms.jpg"
    put_raw(pipeline, key, os.urandom(4096))
    assert (
        pipeline.s3.head_object(Bucket=pipeline.raw, Key=key)["ServerSideEncryption"] == "aws:kms"
    )

    assert handler(receipt_event(pipeline, key), lambda_context) == {"batchItemFailures": []}

    head = pipeline.s3.head_object(Bucket=pipeline.archive, Key=f"images/{key}")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn
    assert raw_versions(pipeline, key) == ([], [])


def _image_item(p: Pipeline, key: str, etag: str) -> dict[str, Any]:
    item = {
        "image_id": {"S": image_id(f"images/{key}")},
        "source_key": {"S": key},
        "source_etag": {"S": etag},
        "archive_key": {"S": f"images/{key}"},
    }
    p.dynamodb.put_item(TableName=p.images_table, Item=item)
    return item


def _stored(p: Pipeline, key: str) -> dict[str, Any]:
    found = p.dynamodb.get_item(
        TableName=p.images_table, Key={"image_id": {"S": image_id(f"images/{key}")}}
    )
    return plain(found["Item"])


def test_archived_image_item_names_where_its_original_lies(
    pipeline: Pipeline, deps: Dependencies
) -> None:
    """Step 7: the item gets the archive bucket and time once the copy is made, also when a
    crash came between the delete and that write (the retry finds the image archived)."""
    key = "photos/owl.jpg"
    put_raw(pipeline, key, b"jpeg bytes", ContentType="image/jpeg")
    etag = _etag(pipeline, key)
    _image_item(pipeline, key, etag)
    receipt_event(pipeline, key)
    receipt_key = f"receipts/{key}.json"

    class CrashError(Exception):
        pass

    def update_item(**kwargs: Any) -> Any:
        raise CrashError("function timed out")

    crashing = S3Proxy(pipeline.dynamodb, update_item=update_item)
    with pytest.raises(CrashError):
        archive.process(replace(deps, dynamodb=crashing), pipeline.processed, receipt_key)
    assert "archive_bucket" not in _stored(pipeline, key)

    again = archive.process(deps, pipeline.processed, receipt_key)

    assert again == "already_archived"
    item = _stored(pipeline, key)
    assert item["archive_bucket"] == pipeline.archive
    assert item["archive_key"] == f"images/{key}"
    assert item["archived_source_etag"] == etag
    assert item["archived_at"] == item["updated_at"]


def test_an_item_describing_another_version_is_not_marked_archived(
    pipeline: Pipeline, deps: Dependencies
) -> None:
    """The item was refreshed by a newer version's transform: this version's archiving
    must not claim the newer one is archived (nor bring back a withdrawn item)."""
    key = "photos/lynx.jpg"
    put_raw(pipeline, key, b"jpeg bytes", ContentType="image/jpeg")
    _image_item(pipeline, key, "0" * 32)
    receipt_event(pipeline, key)
    gone = "photos/gone.jpg"
    put_raw(pipeline, gone, b"other bytes", ContentType="image/jpeg")
    receipt_event(pipeline, gone)

    for archived in (key, gone):
        outcome = archive.process(deps, pipeline.processed, f"receipts/{archived}.json")
        assert outcome == "archived"

    assert "archive_bucket" not in _stored(pipeline, key)
    assert "Item" not in pipeline.dynamodb.get_item(
        TableName=pipeline.images_table, Key={"image_id": {"S": image_id(f"images/{gone}")}}
    )


def test_a_lease_left_by_a_killed_run_ends_with_its_deadline_not_fifteen_minutes_later(
    deps: Dependencies, pipeline: Pipeline, lambda_context: FakeContext
) -> None:
    """A version deleted from RAW after its receipt is removed under the key's lease. A run
    killed inside it leaves the lease behind: it must lapse at the invocation's deadline
    plus the margin (as tag's does), or every retry meets KeyBusyError until the message
    is dead-lettered (found by the chaos run)."""
    key = "photos/deleted-after-receipt.jpg"
    put_raw(pipeline, key, b"not really a jpeg")
    event = receipt_event(pipeline, key)
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=key)
    client = deps.s3

    def get_object(**kwargs: Any) -> Any:
        held = client.list_objects_v2(Bucket=pipeline.processed, Prefix="leases/")
        if kwargs["Key"].startswith("receipts/") and held.get("KeyCount"):
            raise RuntimeError("killed inside the lease")
        return client.get_object(**kwargs)

    def delete_object(**kwargs: Any) -> Any:
        if kwargs["Key"].startswith("leases/"):
            raise RuntimeError("killed before the release")
        return client.delete_object(**kwargs)

    killed = replace(deps, s3=S3Proxy(client, get_object=get_object, delete_object=delete_object))
    started = time.time()
    result = archive.make_handler(killed)(event, lambda_context)

    assert len(result["batchItemFailures"]) == 1
    (lease,) = pipeline.s3.list_objects_v2(Bucket=pipeline.processed, Prefix="leases/")["Contents"]
    until = json.loads(
        pipeline.s3.get_object(Bucket=pipeline.processed, Key=lease["Key"])["Body"].read()
    )["until"]
    deadline = started + lambda_context.get_remaining_time_in_millis() / 1000
    assert deadline < until <= time.time() + 300 + LEASE_MARGIN_SECONDS
