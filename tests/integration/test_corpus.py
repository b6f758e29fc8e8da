"""The bad-input corpus (tests/corpus/manifest.json) through transform and archive, in moto.

Every file case: uploaded to RAW under its key, the transform's real event gives an empty
batch response (a bad file is rejected, not retried: decision 3, docs/decisions.md) and exactly one
receipt with the expected status, codes, record positions and byte positions; PROCESSED
holds exactly what the receipt lists; then the archive handler, driven by the receipt's
event, moves the input to ARCHIVE (``rejected/`` for rejections) and RAW keeps no version
of it. Inputs = receipts = archived objects: nothing is lost.

Every event case: sent in one SQS batch with a good upload's event. A message that can
never be understood fails alone (``batchItemFailures``) and, on a queue with a redrive
policy, reaches the dead-letter queue after ``maxReceiveCount`` deliveries; an event the
handler does not act on is skipped (deleted, no receipt). The good message always
succeeds.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from types import ModuleType
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from sluice.keys import archive_key_for, derived_key, image_id, receipt_key, thumbnail_key
from sluice.local.lambdas.invocation import settle_batch, sqs_event
from tests.conftest import FakeContext, Pipeline, load_handler
from tests.s3events import object_event_for, s3_event, s3_record, sqs_batch
from tests.security_support import (
    CORPUS_FILES_DIR,
    MAX_KEY_BYTES,
    case_key,
    corpus_bytes,
    event_cases,
    file_cases,
    make_corpus,
    manifest,
    personal_values,
)

THUMBNAIL_SIZES = (128, 512)
BYSTANDER_KEY = "retina/corpus/bystander.json"
GOOD_KEY = "retina/corpus/good.json"
MAX_RECEIVE_COUNT = 3
FILE_CASES = file_cases()
EVENT_CASES = event_cases()
FAILING_EVENT_CASES = [c for c in EVENT_CASES if c["expect"] == "failed" and "drop_body" not in c]


# --- the manifest itself -------------------------------------------------------------------


def test_corpus_has_enough_cases_and_covers_every_category() -> None:
    cases = FILE_CASES + EVENT_CASES
    assert len(cases) >= 40
    ids = [case["id"] for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    covered = Counter(tag for case in cases for tag in case["categories"])
    missing = set(manifest()["required_categories"]) - set(covered)
    assert not missing, f"no case covers {sorted(missing)}"


def test_every_case_is_well_formed() -> None:
    known_files = set(make_corpus().BUILDERS)
    keys = [case_key(case) for case in FILE_CASES]
    assert len(keys) == len(set(keys)), "each case needs its own RAW key"
    for case in FILE_CASES:
        assert case["file"] in known_files, f"{case['id']}: {case['file']} is not built"
        expect = case["expect"]
        assert expect["status"] in ("processed", "rejected")
        assert expect["status"] == "processed" or expect["errors"], case["id"]
        assert len(case_key(case).encode("utf-8")) <= MAX_KEY_BYTES
    lengths = [len(case_key(c).encode()) for c in FILE_CASES if not isinstance(c["key"], str)]
    assert lengths and set(lengths) == {MAX_KEY_BYTES}
    for case in EVENT_CASES:
        assert case["expect"] in ("failed", "skipped"), case["id"]


def test_committed_corpus_files_are_what_make_corpus_builds() -> None:
    builder = make_corpus()
    committed = sorted(path.name for path in CORPUS_FILES_DIR.iterdir())
    assert committed == builder.committed_names()
    for name in committed:
        assert (CORPUS_FILES_DIR / name).read_bytes() == builder.build(name), name
    total = sum((CORPUS_FILES_DIR / name).stat().st_size for name in committed)
    assert total < 500 * 1024
    generated = {c["file"] for c in FILE_CASES if c.get("generated")}
    assert generated and not generated & set(committed)


# --- file cases ----------------------------------------------------------------------------


@pytest.fixture
def handlers(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, ModuleType]:
    monkeypatch.setenv("THUMBNAIL_SIZES", ",".join(str(size) for size in THUMBNAIL_SIZES))
    return load_handler("transform"), load_handler("archive")


def _error_shape(error: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies an error; a file-level error's line is checked with its byte."""
    record_level = "record_index" in error
    line = error.get("line") if record_level else None
    return (error.get("code"), error.get("record_index"), error.get("path"), line)


def _expected_byte(data: bytes, position: dict[str, Any]) -> tuple[int, int]:
    """The range of byte offsets the reported position may take."""
    if position.get("at_start"):
        start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        return start, start
    if position.get("at_end"):
        return len(data), len(data)
    token = bytes.fromhex(position["token_hex"]) if "token_hex" in position else None
    token = token or position["token"].encode("utf-8")
    start = data.index(token) + position.get("offset", 0)
    # yajl stops at or just after the offending token, so "near" spans the token.
    return start, data.index(token) + len(token)


def _check_position(data: bytes, error: dict[str, Any], position: dict[str, Any]) -> None:
    low, high = _expected_byte(data, position)
    byte = error["byte"]
    assert low <= byte <= high, f"byte {byte} is not at the bad input ({low}..{high})"
    head = data[:byte]
    assert error["line"] == head.count(b"\n") + 1
    assert error["column"] == byte - head.rfind(b"\n")  # 1-based byte column
    if error["code"] in ("malformed_json", "not_utf8"):
        assert f"byte {byte} (line {error['line']}" in error["message"]


def _check_errors(case: dict[str, Any], data: bytes, receipt: dict[str, Any]) -> None:
    expected = case["expect"]["errors"]
    actual = receipt["errors"]
    assert sorted(map(_error_shape, actual), key=repr) == sorted(
        map(_error_shape, expected), key=repr
    )
    unmatched = list(actual)
    for want in expected:
        for got in unmatched:
            if (
                _error_shape(got) == _error_shape(want)
                and want.get("message_contains", "") in got["message"]
            ):
                unmatched.remove(got)
                if "position" in want:
                    _check_position(data, got, want["position"])
                break
        else:
            pytest.fail(f"no error matches {want}; got {actual}")
    assert receipt["errors_truncated"] is False
    # Messages name the rule, never the value: no patient name or id reaches a receipt.
    for value in personal_values(data):
        assert not any(value in error["message"] for error in actual), value


def _processed_keys(p: Pipeline) -> set[str]:
    paginator = p.s3.get_paginator("list_objects_v2")
    return {
        o["Key"]
        for page in paginator.paginate(Bucket=p.processed)
        for o in page.get("Contents", [])
    }


def _check_outputs(p: Pipeline, case: dict[str, Any], key: str, receipt: dict[str, Any]) -> None:
    outputs = receipt["outputs"]
    expect = case["expect"]
    if expect["status"] == "rejected":
        assert outputs == []
    elif expect["kind"] == "data":
        wanted = [derived_key("data/", key)]
        if expect["errors"]:
            wanted.append(derived_key("errors/", key, ".jsonl"))
        assert [o["key"] for o in outputs] == wanted
    else:
        assert sorted(o["key"] for o in outputs) == sorted(
            thumbnail_key(key, size, ".jpg") for size in THUMBNAIL_SIZES
        )
    for output in outputs:
        head = p.s3.head_object(Bucket=output["bucket"], Key=output["key"])
        assert head["ContentLength"] == output["size"] and output["bucket"] == p.processed
    # PROCESSED holds what the receipt lists, and nothing else.
    assert _processed_keys(p) == {receipt_key(key)} | {o["key"] for o in outputs}


def _check_image_item(p: Pipeline, key: str, wanted: dict[str, Any]) -> None:
    archive_key = archive_key_for("image", "processed", key)
    raw_item = p.dynamodb.get_item(
        TableName=p.images_table, Key={"image_id": {"S": image_id(archive_key)}}
    )["Item"]
    deserialize = TypeDeserializer().deserialize
    item = {name: deserialize(value) for name, value in raw_item.items()}
    assert item["source_key"] == key
    assert {name: item[name] for name in wanted} == wanted


def _raw_versions(p: Pipeline, key: str) -> list[Any]:
    listing = p.s3.list_object_versions(Bucket=p.raw, Prefix=key)
    return [
        v for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []) if v["Key"] == key
    ]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c["id"] for c in FILE_CASES])
def test_bad_file_gets_one_receipt_and_is_archived(
    pipeline: Pipeline,
    handlers: tuple[ModuleType, ModuleType],
    lambda_context: FakeContext,
    case: dict[str, Any],
) -> None:
    transform, archive = handlers
    key = case_key(case)
    data = corpus_bytes(case["file"])
    expect = case["expect"]
    put = pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=data)
    etag = put["ETag"].strip('"')

    response = transform.handler(object_event_for(pipeline.s3, pipeline.raw, key), lambda_context)

    assert response == {"batchItemFailures": []}
    receipts = {k for k in _processed_keys(pipeline) if k.startswith("receipts/")}
    assert receipts == {receipt_key(key)}
    receipt = json.loads(
        pipeline.s3.get_object(Bucket=pipeline.processed, Key=receipt_key(key))["Body"].read()
    )
    assert (receipt["status"], receipt["kind"]) == (expect["status"], expect["kind"])
    assert receipt["source"]["bucket"] == pipeline.raw
    assert receipt["source"]["key"] == key
    assert receipt["source"]["etag"] == etag
    assert receipt["source"]["version_id"] == put["VersionId"]
    assert receipt["source"]["size"] == len(data)
    if "stats" in expect:
        total, valid, invalid = expect["stats"]
        assert receipt["stats"] == {
            "records_total": total,
            "records_valid": valid,
            "records_invalid": invalid,
        }
    _check_errors(case, data, receipt)
    _check_outputs(pipeline, case, key, receipt)
    if "item" in expect:
        _check_image_item(pipeline, key, expect["item"])

    archived = archive.handler(
        object_event_for(pipeline.s3, pipeline.processed, receipt_key(key)), lambda_context
    )

    assert archived == {"batchItemFailures": []}
    archive_key = archive_key_for(receipt["kind"], receipt["status"], key)
    if expect["status"] == "rejected":
        assert archive_key.startswith("rejected/")
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.archive).get("Contents", [])
    assert [item["Key"] for item in listing] == [archive_key]
    copy_ = pipeline.s3.get_object(Bucket=pipeline.archive, Key=archive_key)
    assert copy_["Body"].read() == data
    assert copy_["Metadata"]["sluice-source-etag"] == etag
    assert _raw_versions(pipeline, key) == []


# --- event cases ---------------------------------------------------------------------------


def _render(value: Any, raw_bucket: str) -> Any:
    """The manifest's event with ``{raw}`` replaced by this test's RAW bucket."""
    return json.loads(json.dumps(value).replace("{raw}", raw_bucket))


def _body(case: dict[str, Any], raw_bucket: str) -> str:
    if "body_text" in case:
        text: str = case["body_text"]
        return text
    return json.dumps(_render(case.get("body"), raw_bucket))


def _put_good_and_bystander(p: Pipeline) -> dict[str, Any]:
    """The upload whose event rides in the same batch, and an object the odd events name."""
    valid = corpus_bytes("valid.json")
    p.s3.put_object(Bucket=p.raw, Key=BYSTANDER_KEY, Body=valid)
    p.s3.put_object(Bucket=p.raw, Key=GOOD_KEY, Body=valid)
    head = p.s3.head_object(Bucket=p.raw, Key=GOOD_KEY)
    return s3_event(
        s3_record(p.raw, GOOD_KEY, etag=head["ETag"].strip('"'), size=head["ContentLength"])
    )


@pytest.mark.parametrize("case", EVENT_CASES, ids=[c["id"] for c in EVENT_CASES])
def test_odd_event_fails_or_is_skipped_alone(
    pipeline: Pipeline,
    handlers: tuple[ModuleType, ModuleType],
    lambda_context: FakeContext,
    case: dict[str, Any],
) -> None:
    transform, _ = handlers
    good = _put_good_and_bystander(pipeline)
    batch = sqs_batch("placeholder", good)
    batch["Records"][0]["body"] = _body(case, pipeline.raw)
    if case.get("drop_body"):
        del batch["Records"][0]["body"]

    response = transform.handler(copy.deepcopy(batch), lambda_context)

    failed = [{"itemIdentifier": "msg-0"}] if case["expect"] == "failed" else []
    assert response == {"batchItemFailures": failed}
    receipts = {k for k in _processed_keys(pipeline) if k.startswith("receipts/")}
    assert receipts == {receipt_key(GOOD_KEY)}


@pytest.mark.parametrize("case", FAILING_EVENT_CASES, ids=[c["id"] for c in FAILING_EVENT_CASES])
def test_message_that_cannot_be_understood_is_dead_lettered_after_max_receives(
    pipeline: Pipeline,
    handlers: tuple[ModuleType, ModuleType],
    lambda_context: FakeContext,
    case: dict[str, Any],
) -> None:
    """Served the way the Lambda poller serves a queue: it never loops and is never lost."""
    transform, _ = handlers
    sqs = pipeline.sqs
    dlq_url = sqs.create_queue(QueueName="corpus-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    queue_url = sqs.create_queue(
        QueueName="corpus-transform", Attributes={"RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    body = _body(case, pipeline.raw)
    sqs.send_message(QueueUrl=queue_url, MessageBody=body or " ")  # SQS refuses an empty body

    deliveries = 0
    for _ in range(MAX_RECEIVE_COUNT + 2):
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        deliveries += len(messages)
        response = transform.handler(sqs_event(messages, queue_arn, "us-east-1"), lambda_context)
        settlement = settle_batch(
            [m["MessageId"] for m in messages], response, report_batch_item_failures=True
        )
        assert settlement.retry == tuple(m["MessageId"] for m in messages)
        for message in messages:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )

    assert deliveries == MAX_RECEIVE_COUNT
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == [body or " "]
