"""Transform handler against moto: outputs, receipts, rejections, idempotency."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from sluice.image_items import plain
from sluice.keys import archive_key_for, image_id, receipt_key
from tests.conftest import IKERIAN_EXPECTED, FakeContext, Pipeline, load_handler
from tests.s3events import golden, object_event_for, s3_event, s3_record, sqs_batch

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture
def transform(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("THUMBNAIL_SIZES", "128,512")
    return load_handler("transform")


def sample(relative: str) -> bytes:
    return (SAMPLES / relative).read_bytes()


def put(p: Pipeline, key: str, body: bytes) -> dict[str, Any]:
    response: dict[str, Any] = p.s3.put_object(Bucket=p.raw, Key=key, Body=body)
    return response


def run(transform: ModuleType, event: dict[str, Any], context: FakeContext) -> dict[str, Any]:
    response: dict[str, Any] = transform.handler(event, context)
    return response


def upload_and_transform(
    p: Pipeline, transform: ModuleType, context: FakeContext, key: str, body: bytes
) -> dict[str, Any]:
    put(p, key, body)
    response = run(transform, object_event_for(p.s3, p.raw, key), context)
    assert response == {"batchItemFailures": []}
    return receipt_of(p, key)


def receipt_of(p: Pipeline, key: str) -> dict[str, Any]:
    body = p.s3.get_object(Bucket=p.processed, Key=receipt_key(key))["Body"].read()
    result: dict[str, Any] = json.loads(body)
    return result


def processed_keys(p: Pipeline) -> set[str]:
    response = p.s3.list_objects_v2(Bucket=p.processed)
    return {item["Key"] for item in response.get("Contents", [])}


def read(p: Pipeline, key: str) -> tuple[bytes, str]:
    response = p.s3.get_object(Bucket=p.processed, Key=key)
    return response["Body"].read(), response["ContentType"]


ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def image_item(p: Pipeline, raw_key: str) -> dict[str, Any] | None:
    key = image_id(archive_key_for("image", "processed", raw_key))
    item: dict[str, Any] | None = p.dynamodb.get_item(
        TableName=p.images_table, Key={"image_id": {"S": key}}
    ).get("Item")
    return item


# --- data ------------------------------------------------------------------------------------


def test_valid_json_array_goes_to_data_projected_with_a_receipt(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/2024/scans-2024-q1.json"
    body = sample("retina/scans-2024-q1.json")
    receipt = upload_and_transform(pipeline, transform, lambda_context, key, body)

    assert receipt["status"] == "processed"
    assert receipt["kind"] == "data" and receipt["dataset"] == "retina"
    assert receipt["stats"] == {"records_total": 50, "records_valid": 50, "records_invalid": 0}
    assert receipt["errors"] == [] and receipt["errors_truncated"] is False
    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key=key)
    assert receipt["source"]["etag"] == head["ETag"].strip('"')
    assert receipt["source"]["version_id"] == head["VersionId"]
    assert receipt["source"]["size"] == len(body)
    assert receipt["handler_version"]
    data, content_type = read(pipeline, f"data/{key}")
    assert content_type == "application/json"
    written = pipeline.s3.head_object(Bucket=pipeline.processed, Key=f"data/{key}")
    assert receipt["outputs"] == [
        {
            "bucket": pipeline.processed,
            "key": f"data/{key}",
            "content_type": "application/json",
            "size": len(data),
            "version_id": written["VersionId"],
            "etag": written["ETag"].strip('"'),
        }
    ]
    records = json.loads(data)
    originals = json.loads(body)
    assert records == [
        {"patient_id": r["patient_id"], "patient_name": r["patient_name"]} for r in originals
    ]
    assert processed_keys(pipeline) == {f"data/{key}", receipt_key(key)}


def test_partly_invalid_file_lists_errors_and_writes_the_full_report(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/scans-partly-invalid.json"
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, key, sample("retina/scans-partly-invalid.json")
    )
    assert receipt["status"] == "processed"
    assert receipt["stats"] == {"records_total": 30, "records_valid": 20, "records_invalid": 10}
    by_record = {(e["record_index"], e["path"]) for e in receipt["errors"]}
    assert {(2, "$.patient_id"), (8, "$.scan_date"), (20, "$.scan_date")} <= by_record
    assert (23, "$") in by_record  # an unexpected property: its name is not repeated
    report, content_type = read(pipeline, f"errors/{key}.jsonl")
    assert content_type == "application/x-ndjson"
    assert [json.loads(line) for line in report.splitlines()] == receipt["errors"]
    assert [o["key"] for o in receipt["outputs"]] == [f"data/{key}", f"errors/{key}.jsonl"]
    assert len(json.loads(read(pipeline, f"data/{key}")[0])) == 20
    # Personal data stays out of the receipt's messages.
    assert not any("Dr Talo" in e["message"] for e in receipt["errors"])


def test_json_lines_stay_json_lines_with_bad_lines_reported(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/scans-mixed.ndjson"
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, key, sample("retina/scans-mixed.ndjson")
    )
    assert receipt["stats"] == {"records_total": 12, "records_valid": 10, "records_invalid": 2}
    assert {(e["record_index"], e["line"], e["code"]) for e in receipt["errors"]} >= {
        (4, 5, "invalid_json"),
        (9, 10, "schema_violation"),
    }
    data, content_type = read(pipeline, f"data/{key}")
    assert content_type == "application/x-ndjson"
    assert len([json.loads(line) for line in data.splitlines()]) == 10


@pytest.mark.parametrize(
    ("name", "code", "fragment"),
    [
        ("scans-malformed.json", "malformed_json", "malformed JSON near byte"),
        ("scans-latin1.json", "not_utf8", "file is not UTF-8: invalid byte 0xe9 at byte"),
    ],
)
def test_unreadable_data_file_is_rejected_with_position_and_no_output(
    pipeline: Pipeline,
    transform: ModuleType,
    lambda_context: FakeContext,
    name: str,
    code: str,
    fragment: str,
) -> None:
    key = f"retina/{name}"
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, key, sample(f"retina/{name}")
    )
    assert receipt["status"] == "rejected"
    assert receipt["outputs"] == []
    [error] = receipt["errors"]
    assert error["code"] == code
    assert fragment in error["message"]
    assert error["line"] >= 1 and error["byte"] > 0
    assert processed_keys(pipeline) == {receipt_key(key)}


def test_data_file_outside_any_dataset_prefix_is_rejected(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    receipt = upload_and_transform(pipeline, transform, lambda_context, "misc/a.json", b"[]")
    assert receipt["status"] == "rejected"
    assert receipt["errors"] == [
        {
            "code": "unknown_dataset",
            "message": "no dataset for this key; data files must be under one of: retina/,"
            " or at the bucket root",
        }
    ]


@pytest.mark.parametrize("key", ["ikerian_sample.json", "retina/ikerian_sample.json"])
def test_users_sample_at_the_root_or_under_retina_is_processed_as_retina(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext, key: str
) -> None:
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, key, sample("ikerian_sample.json")
    )
    assert receipt["status"] == "processed" and receipt["dataset"] == "retina"
    assert receipt["errors"] == []
    assert receipt["stats"] == {"records_total": 2, "records_valid": 2, "records_invalid": 0}
    data, content_type = read(pipeline, f"data/{key}")
    assert content_type == "application/json"
    assert json.loads(data) == IKERIAN_EXPECTED
    assert processed_keys(pipeline) == {f"data/{key}", receipt_key(key)}


def test_the_same_name_at_the_root_and_under_retina_keeps_two_sets_of_outputs(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    keys = ["ikerian_sample.json", "retina/ikerian_sample.json"]
    for key in keys:
        upload_and_transform(
            pipeline, transform, lambda_context, key, sample("ikerian_sample.json")
        )
    assert processed_keys(pipeline) == {
        *(f"data/{key}" for key in keys),
        *(receipt_key(key) for key in keys),
    }
    for key in keys:
        assert receipt_of(pipeline, key)["source"]["key"] == key


def test_datasets_come_from_the_environment(
    pipeline: Pipeline, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second dataset, with its own prefix and projection and no root: configuration only.
    monkeypatch.setenv(
        "DATASETS",
        json.dumps(
            {
                "clinic_b": {
                    "prefix": "clinic-b/",
                    "schema": "retina.schema.json",
                    "projection": ["patient_id"],
                }
            }
        ),
    )
    transform = load_handler("transform")
    body = sample("ikerian_sample.json")
    receipt = upload_and_transform(pipeline, transform, lambda_context, "clinic-b/s.json", body)
    assert receipt["status"] == "processed" and receipt["dataset"] == "clinic_b"
    assert json.loads(read(pipeline, "data/clinic-b/s.json")[0]) == [
        {"patient_id": "A12345"},
        {"patient_id": "B67890"},
    ]
    for key in ("ikerian_sample.json", "retina/ikerian_sample.json"):
        receipt = upload_and_transform(pipeline, transform, lambda_context, key, body)
        assert receipt["status"] == "rejected"
        assert receipt["errors"] == [
            {
                "code": "unknown_dataset",
                "message": "no dataset for this key; data files must be under one of: clinic-b/",
            }
        ]


@pytest.mark.parametrize(
    ("key", "kind"), [("retina/empty.json", "data"), ("photos/e.png", "image")]
)
def test_zero_byte_file_is_rejected_as_empty(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext, key: str, kind: str
) -> None:
    receipt = upload_and_transform(pipeline, transform, lambda_context, key, b"")
    assert receipt["status"] == "rejected" and receipt["kind"] == kind
    assert receipt["errors"] == [{"code": "empty_file", "message": "empty file"}]


def test_unsupported_type_is_rejected(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, "other/notes.txt", sample("other/clinic-notes.txt")
    )
    assert receipt["status"] == "rejected" and receipt["kind"] == "unsupported"
    assert receipt["errors"][0]["code"] == "unsupported_type"
    assert "unsupported type: .txt" in receipt["errors"][0]["message"]


# --- images ----------------------------------------------------------------------------------


def test_image_gets_thumbnails_and_a_metadata_item(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "photos/Ocean Rotated.JPG"
    body = sample("photos/ocean-rotated-6.jpg")
    receipt = upload_and_transform(pipeline, transform, lambda_context, key, body)
    assert receipt["status"] == "processed" and receipt["kind"] == "image"
    expected = {
        "thumbnails/128/photos/Ocean Rotated.JPG.jpg": (128, 96),
        "thumbnails/512/photos/Ocean Rotated.JPG.jpg": (512, 384),
    }
    assert {o["key"] for o in receipt["outputs"]} == set(expected)
    for thumbnail_key, size in expected.items():
        data, content_type = read(pipeline, thumbnail_key)
        assert content_type == "image/jpeg"
        thumbnail = Image.open(io.BytesIO(data))
        # Stored as portrait with orientation 6: upright it is landscape, arrow on top.
        assert thumbnail.size == size
        arrow = thumbnail.getpixel((size[0] // 2, size[1] * 36 // 96))
        assert isinstance(arrow, tuple) and min(arrow) > 200

    item = image_item(pipeline, key)
    assert item is not None
    assert item["source_key"] == {"S": key}
    assert item["archive_key"] == {"S": f"images/{key}"}
    assert item["width"] == {"N": "640"} and item["height"] == {"N": "480"}
    assert item["format"] == {"S": "JPEG"}
    assert item["captured_at"] == {"S": "2024-07-02T11:15:30"}
    assert item["camera"] == {"S": "Canon EOS R6"}
    assert item["source_etag"]["S"] == receipt["source"]["etag"]
    assert item["created_at"] == item["updated_at"]


def test_image_item_holds_the_metadata_the_thumbnail_tutorials_store(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    """Issue 12: id, source, where each thumbnail is (bucket, key, s3:// URI) with its pixel
    and byte size, the source's own size and format, created and updated (docs/contracts.md,
    "Image metadata item")."""
    key = "photos/Ocean Rotated.JPG"
    body = sample("photos/ocean-rotated-6.jpg")
    receipt = upload_and_transform(pipeline, transform, lambda_context, key, body)
    item = plain(image_item(pipeline, key) or {})
    sizes = {o["key"]: o["size"] for o in receipt["outputs"]}
    thumbnails = {}
    for side, (width, height) in {"128": (128, 96), "512": (512, 384)}.items():
        thumbnail_key = f"thumbnails/{side}/{key}.jpg"
        thumbnails[side] = {
            "bucket": pipeline.processed,
            "key": thumbnail_key,
            "uri": f"s3://{pipeline.processed}/{thumbnail_key}",
            "width": width,
            "height": height,
            "bytes": len(read(pipeline, thumbnail_key)[0]),
            "content_type": "image/jpeg",
        }
        assert thumbnails[side]["bytes"] == sizes[thumbnail_key]
    created = item.pop("created_at")
    updated = item.pop("updated_at")
    assert item == {
        "image_id": image_id(f"images/{key}"),
        "item_version": 2,
        "source_bucket": pipeline.raw,
        "source_key": key,
        "source_version_id": receipt["source"]["version_id"],
        "source_etag": receipt["source"]["etag"],
        "source_bytes": len(body),
        "archive_key": f"images/{key}",
        "thumbnails": thumbnails,
        "width": 640,
        "height": 480,
        "format": "JPEG",
        "sha256": hashlib.sha256(body).hexdigest(),
        "animated": False,
        "captured_at": "2024-07-02T11:15:30",
        "camera": "Canon EOS R6",
    }
    assert ISO_UTC.fullmatch(created) and created == updated


def test_refreshing_an_image_item_keeps_created_moves_updated_and_drops_the_old_shape(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    """A key uploaded again: created_at is the first write's, updated_at the latest; an item
    written in shape 1 (``thumbnail_keys``, ``bytes`` = source size) comes out in shape 2."""
    key = "photos/again.png"
    item_id = image_id(f"images/{key}")
    pipeline.dynamodb.put_item(
        TableName=pipeline.images_table,
        Item={
            "image_id": {"S": item_id},
            "source_key": {"S": key},
            "thumbnail_keys": {"M": {"128": {"S": f"thumbnails/128/{key}.jpg"}}},
            "bytes": {"N": "5"},
            "created_at": {"S": "2025-01-01T00:00:00.000Z"},
            "updated_at": {"S": "2025-01-01T00:00:00.000Z"},
            "labels": {"L": [{"S": "Rose"}]},
        },
    )
    body = sample("photos/rose-logo-alpha.png")
    upload_and_transform(pipeline, transform, lambda_context, key, body)
    item = plain(image_item(pipeline, key) or {})
    assert item["created_at"] == "2025-01-01T00:00:00.000Z"
    assert ISO_UTC.fullmatch(item["updated_at"]) and item["updated_at"] > item["created_at"]
    assert "thumbnail_keys" not in item and "bytes" not in item
    assert item["source_bytes"] == len(body) and item["item_version"] == 2
    assert set(item["thumbnails"]) == {"128", "512"}
    assert item["labels"] == ["Rose"], "the tag handler's attributes are not the transform's"


def test_thumbnail_format_is_configurable(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    monkeypatch.setenv("THUMBNAIL_FORMAT", "WEBP")
    monkeypatch.setenv("THUMBNAIL_SIZES", "64")
    transform = load_handler("transform")
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, "p/logo.png", sample("photos/rose-logo-alpha.png")
    )
    [output] = receipt["outputs"]
    assert output["key"] == "thumbnails/64/p/logo.png.webp"
    assert output["content_type"] == "image/webp"
    assert Image.open(io.BytesIO(read(pipeline, output["key"])[0])).mode == "RGBA"


def png_bomb(side: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        ("p/bomb.png", png_bomb(30_000), "decompression_bomb"),
        ("p/cut.jpg", sample("photos/sunset-beach.jpg")[:6000], "truncated_image"),
        ("p/liar.jpg", sample("photos/forest-palette.png"), "content_mismatch"),
    ],
)
def test_bad_images_are_rejected_without_outputs(
    pipeline: Pipeline,
    transform: ModuleType,
    lambda_context: FakeContext,
    key: str,
    body: bytes,
    code: str,
) -> None:
    receipt = upload_and_transform(pipeline, transform, lambda_context, key, body)
    assert receipt["status"] == "rejected"
    assert receipt["errors"][0]["code"] == code
    assert receipt["outputs"] == []
    assert processed_keys(pipeline) == {receipt_key(key)}
    assert image_item(pipeline, key) is None


def test_image_over_the_byte_limit_is_rejected_unread(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1000")
    transform = load_handler("transform")
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, "p/big.webp", sample("photos/ocean-waves.webp")
    )
    assert receipt["errors"][0]["code"] == "image_too_large"
    assert "larger than the limit of 1000 bytes" in receipt["errors"][0]["message"]


# --- keys, events --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "retina/with space/a b.json",
        "retina/plus+sign/a+b.json",
        "retina/ünïcødé/名前.json",
        "retina/" + "x" * 990 + ".json",
    ],
)
def test_odd_keys_round_trip(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext, key: str
) -> None:
    receipt = upload_and_transform(pipeline, transform, lambda_context, key, b"[]")
    assert receipt["source"]["key"] == key
    assert receipt["status"] == "processed"
    [output] = receipt["outputs"]
    if len(key.encode()) + len("data/") > 1024:
        assert output["key"].startswith("data/_long/")
    else:
        assert output["key"] == f"data/{key}"
    assert json.loads(read(pipeline, output["key"])[0]) == []


def test_long_image_key_gets_hashed_thumbnail_keys(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "p/" + "y" * 1000 + ".png"
    receipt = upload_and_transform(
        pipeline, transform, lambda_context, key, sample("photos/forest-palette.png")
    )
    assert receipt["status"] == "processed"
    assert all(o["key"].startswith("thumbnails/") for o in receipt["outputs"])
    assert all(len(o["key"].encode()) <= 1024 for o in receipt["outputs"])


def test_s3_test_event_is_skipped(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    response = run(transform, sqs_batch(golden("s3_test_event.json")), lambda_context)
    assert response == {"batchItemFailures": []}
    assert processed_keys(pipeline) == set()


def test_event_without_etag_uses_the_current_object(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/no-etag.json"
    put(pipeline, key, b"[]")
    response = run(transform, sqs_batch(s3_event(s3_record(pipeline.raw, key))), lambda_context)
    assert response == {"batchItemFailures": []}
    assert receipt_of(pipeline, key)["status"] == "processed"


def test_one_failing_message_is_the_only_batch_item_failure(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    put(pipeline, "retina/ok.json", b"[]")
    good = json.loads(
        object_event_for(pipeline.s3, pipeline.raw, "retina/ok.json")["Records"][0]["body"]
    )
    response = run(transform, sqs_batch(good, "this is not an S3 event"), lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert receipt_of(pipeline, "retina/ok.json")["status"] == "processed"


# --- idempotency and ordering --------------------------------------------------------------


def receipt_versions(p: Pipeline, key: str) -> int:
    response = p.s3.list_object_versions(Bucket=p.processed, Prefix=receipt_key(key))
    return len(response.get("Versions", []))


def test_duplicate_delivery_gives_the_same_end_state(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "photos/sunset.jpg"
    put(pipeline, key, sample("photos/sunset-beach.jpg"))
    event = object_event_for(pipeline.s3, pipeline.raw, key)
    run(transform, event, lambda_context)
    first_receipt = receipt_of(pipeline, key)
    first_item = image_item(pipeline, key)
    before = processed_keys(pipeline)

    assert run(transform, event, lambda_context) == {"batchItemFailures": []}
    assert receipt_of(pipeline, key) == first_receipt
    assert receipt_versions(pipeline, key) == 1
    assert processed_keys(pipeline) == before
    assert image_item(pipeline, key) == first_item


def test_duplicate_without_version_id_redoes_the_same_work(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    # Emulators omit versionId: the duplicate is processed again, to the same result.
    key = "photos/night.jpg"
    put(pipeline, key, sample("photos/night-rotated-8.jpg"))
    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key=key)
    event = sqs_batch(s3_event(s3_record(pipeline.raw, key, etag=head["ETag"].strip('"'))))
    run(transform, event, lambda_context)
    first = receipt_of(pipeline, key)
    first_item = image_item(pipeline, key)
    before = processed_keys(pipeline)
    run(transform, event, lambda_context)
    second = receipt_of(pipeline, key)
    second_item = image_item(pipeline, key)

    def same_work(receipt: dict[str, Any]) -> dict[str, Any]:
        """The receipt but its time and the versions it wrote (new ones, same bytes)."""
        outputs = [{k: v for k, v in o.items() if k != "version_id"} for o in receipt["outputs"]]
        return {**{k: v for k, v in receipt.items() if k != "processed_at"}, "outputs": outputs}

    assert same_work(second) == same_work(first)
    assert {o["version_id"] for o in second["outputs"]}.isdisjoint(
        o["version_id"] for o in first["outputs"]
    )
    assert processed_keys(pipeline) == before
    assert first_item is not None and second_item is not None
    assert second_item["created_at"] == first_item["created_at"]
    assert {k: v for k, v in second_item.items() if k != "updated_at"} == {
        k: v for k, v in first_item.items() if k != "updated_at"
    }


def test_duplicate_after_archive_moved_the_object_does_nothing(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/moved.json"
    put(pipeline, key, b"[]")
    event = object_event_for(pipeline.s3, pipeline.raw, key)
    run(transform, event, lambda_context)
    first = receipt_of(pipeline, key)
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=key)  # what archive does
    assert run(transform, event, lambda_context) == {"batchItemFailures": []}
    assert receipt_of(pipeline, key) == first


def test_stale_event_after_a_newer_upload_does_nothing(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/scans.json"
    put(pipeline, key, sample("retina/scans-partly-invalid.json"))
    old_event = object_event_for(pipeline.s3, pipeline.raw, key)
    put(pipeline, key, sample("retina/scans-2024-q1.json"))
    new_event = object_event_for(pipeline.s3, pipeline.raw, key)
    run(transform, new_event, lambda_context)
    newest = receipt_of(pipeline, key)

    assert run(transform, old_event, lambda_context) == {"batchItemFailures": []}
    assert receipt_of(pipeline, key) == newest
    assert newest["stats"]["records_invalid"] == 0
    assert processed_keys(pipeline) == {f"data/{key}", receipt_key(key)}


def test_new_version_removes_outputs_the_old_one_left(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    key = "retina/fixed-later.json"
    upload_and_transform(
        pipeline, transform, lambda_context, key, sample("retina/scans-partly-invalid.json")
    )
    assert f"errors/{key}.jsonl" in processed_keys(pipeline)
    upload_and_transform(
        pipeline, transform, lambda_context, key, sample("retina/scans-2024-q1.json")
    )
    assert f"errors/{key}.jsonl" not in processed_keys(pipeline)
    upload_and_transform(pipeline, transform, lambda_context, key, b"[{")
    assert processed_keys(pipeline) == {receipt_key(key)}


def test_crash_before_the_receipt_then_retry_ends_correct(
    pipeline: Pipeline,
    transform: ModuleType,
    lambda_context: FakeContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "photos/forest.jpg"
    put(pipeline, key, sample("photos/forest-upside-down-3.jpg"))
    event = object_event_for(pipeline.s3, pipeline.raw, key)
    real_write = transform.write_receipt
    calls = {"n": 0}

    def crash_once(*args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("simulated crash before the receipt")
        result: str = real_write(*args, **kwargs)
        return result

    monkeypatch.setattr(transform, "write_receipt", crash_once)
    assert run(transform, event, lambda_context) == {
        "batchItemFailures": [{"itemIdentifier": "msg-0"}]
    }
    assert receipt_key(key) not in processed_keys(pipeline)
    created = image_item(pipeline, key)
    assert created is not None

    assert run(transform, event, lambda_context) == {"batchItemFailures": []}
    receipt = receipt_of(pipeline, key)
    assert receipt["status"] == "processed"
    assert {o["key"] for o in receipt["outputs"]} <= processed_keys(pipeline)
    item = image_item(pipeline, key)
    assert item is not None and item["created_at"] == created["created_at"]


def test_events_for_other_buckets_are_ignored(
    pipeline: Pipeline, transform: ModuleType, lambda_context: FakeContext
) -> None:
    pipeline.s3.put_object(Bucket=pipeline.processed, Key="receipts/x.json", Body=b"{}")
    event = object_event_for(pipeline.s3, pipeline.processed, "receipts/x.json")
    assert run(transform, event, lambda_context) == {"batchItemFailures": []}
    assert processed_keys(pipeline) == {"receipts/x.json"}


def test_metrics_count_receipts_by_verdict_and_dataset(
    pipeline: Pipeline,
    transform: ModuleType,
    lambda_context: FakeContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    keys = {
        "retina/good.json": sample("retina/scans-2024-q1.json"),
        "retina/bad.json": b"[{",
        "other/notes.txt": b"not a supported type",
    }
    for key, body in keys.items():
        put(pipeline, key, body)
    capsys.readouterr()
    bodies = [
        object_event_for(pipeline.s3, pipeline.raw, key)["Records"][0]["body"] for key in keys
    ]
    event = sqs_batch(*bodies)

    assert run(transform, event, lambda_context) == {"batchItemFailures": []}

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    metrics = [line for line in lines if "_aws" in line]
    by_dimensions = {
        tuple(sorted(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])): line
        for line in metrics
    }
    function, dataset = by_dimensions[("service",)], by_dimensions[("dataset", "service")]
    assert function["service"] == dataset["service"] == lambda_context.function_name
    assert (function["ItemsProcessed"], function["ItemsRejected"]) == ([1.0], [2.0])
    assert function["ItemsFailed"] == [0.0]
    # The unsupported file has no dataset: only the retina files are counted under it.
    assert dataset["dataset"] == "retina"
    assert (dataset["ItemsProcessed"], dataset["ItemsRejected"]) == ([1.0], [1.0])
