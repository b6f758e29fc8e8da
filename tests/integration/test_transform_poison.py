"""Poison inputs through the transform handler in moto (GitHub issue 10).

No input may crash the handler, stall it past its timeout or take its batch-mates to the
dead-letter queue: a poison file gets a rejected receipt with a specific reason on its
first attempt, its batch-mates get theirs, and the batch response is empty. Budgets are a
verdict on the file too: a file over ``MAX_DATA_BYTES`` is rejected unread, and a file
that cannot finish within the function's time is rejected with nothing half-written left
behind. The clock is the Lambda context's, faked here so that nothing depends on timing.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from sluice.keys import receipt_key
from tests.conftest import FakeContext, Pipeline, load_handler
from tests.s3events import object_event_for, sqs_batch


@pytest.fixture
def transform(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("THUMBNAIL_SIZES", "128")
    return load_handler("transform")


def scan(number: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "patient_id": f"P{number:06d}",
        "patient_name": "Talo Venri",
        "scan_date": "2024-03-01",
        "retina_thickness_microns": 262.5,
        "optic_disc_cup_ratio": 0.31,
        "diagnosis": "normal",
    }
    record.update(changes)
    return record


def valid_array(count: int = 3) -> bytes:
    return json.dumps([scan(n) for n in range(count)]).encode()


def body_of(p: Pipeline, key: str) -> dict[str, Any]:
    """The SQS message body S3 would send for ``key`` (real ETag and size)."""
    batch = object_event_for(p.s3, p.raw, key)
    body: dict[str, Any] = json.loads(batch["Records"][0]["body"])
    return body


def receipt_of(p: Pipeline, key: str) -> dict[str, Any]:
    body = p.s3.get_object(Bucket=p.processed, Key=receipt_key(key))["Body"].read()
    result: dict[str, Any] = json.loads(body)
    return result


def processed_keys(p: Pipeline) -> set[str]:
    response = p.s3.list_objects_v2(Bucket=p.processed)
    return {item["Key"] for item in response.get("Contents", [])}


def open_uploads(p: Pipeline) -> list[str]:
    response = p.s3.list_multipart_uploads(Bucket=p.processed)
    return [upload["Key"] for upload in response.get("Uploads", [])]


class SteppingContext(FakeContext):
    """A Lambda context whose clock moves ``step_ms`` every time it is read: the transform
    reads it once per chunk, so time passes with the bytes, deterministically."""

    def __init__(self, budget_ms: int, step_ms: int) -> None:
        self._remaining = budget_ms
        self._step = step_ms

    def get_remaining_time_in_millis(self) -> int:
        now = self._remaining
        self._remaining = max(self._remaining - self._step, 0)
        return now


# --- poison in a batch -----------------------------------------------------------------------

POISON = {
    "retina/poison/long-integer.json": b"[" + b"7" * 100_000 + b"]",
    "retina/poison/long-exponent.jsonl": b'{"retina_thickness_microns": 1e' + b"9" * 30 + b"}\n",
    "retina/poison/lone-surrogate.jsonl": b'{"\\ud800": 1}\n',
    "retina/poison/lone-surrogate.json": b'[{"patient_name": "\\udc00"}]',
    "retina/poison/long-name.json": b'[{"' + b"k" * 5_000 + b'": 1}]',
    "retina/poison/amplifier.jsonl": b"{}\n" * 50_000,
}
EXPECTED = {
    "retina/poison/long-integer.json": ("rejected", "number_too_long"),
    "retina/poison/long-exponent.jsonl": ("processed", "number_too_long"),
    "retina/poison/lone-surrogate.jsonl": ("processed", "lone_surrogate"),
    "retina/poison/lone-surrogate.json": ("rejected", "lone_surrogate"),
    "retina/poison/long-name.json": ("rejected", "property_name_too_long"),
    "retina/poison/amplifier.jsonl": ("processed", "schema_violation"),
}


def test_a_poison_file_never_takes_its_batch_mates_to_the_dead_letter_queue(
    pipeline: Pipeline, transform: ModuleType
) -> None:
    valid = {"retina/poison/mate-a.json": valid_array(), "retina/poison/mate-b.jsonl": b""}
    valid["retina/poison/mate-b.jsonl"] = b"\n".join(json.dumps(scan(n)).encode() for n in (4, 5))
    for key, data in {**valid, **POISON}.items():
        pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=data)
    for key in POISON:
        # Each poison file shares a batch with the two valid files, as SQS may deliver it.
        keys = ["retina/poison/mate-a.json", key, "retina/poison/mate-b.jsonl"]
        response = transform.handler(
            sqs_batch(*(body_of(pipeline, k) for k in keys)), FakeContext()
        )
        assert response == {"batchItemFailures": []}, key
        status, code = EXPECTED[key]
        receipt = receipt_of(pipeline, key)
        assert receipt["status"] == status, key
        assert code in {error["code"] for error in receipt["errors"]}, key
        for mate in valid:
            assert receipt_of(pipeline, mate)["status"] == "processed"
            assert receipt_of(pipeline, mate)["stats"]["records_invalid"] == 0
    assert open_uploads(pipeline) == []


def test_the_errors_report_stays_small_whatever_the_input(
    pipeline: Pipeline, transform: ModuleType
) -> None:
    # 100,000 empty records (300 KB) are 600,000 errors: 70 MB of report unbounded.
    key = "retina/poison/empty-records.jsonl"
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=b"{}\n" * 100_000)
    wide = {**scan(1), **{f"extra-{n}": n for n in range(20_000)}}
    wide_key = "retina/poison/wide-records.json"
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=wide_key, Body=json.dumps([wide] * 30).encode())
    batch = sqs_batch(body_of(pipeline, key), body_of(pipeline, wide_key))
    assert transform.handler(batch, FakeContext()) == {"batchItemFailures": []}

    receipt = receipt_of(pipeline, key)
    assert receipt["stats"]["records_invalid"] == 100_000
    assert len(receipt["errors"]) == 1000 and receipt["errors_truncated"]
    report = pipeline.s3.get_object(Bucket=pipeline.processed, Key=f"errors/{key}.jsonl")
    lines = report["Body"].read().splitlines()
    assert len(lines) == 10_001
    summary = json.loads(lines[-1])
    assert summary["code"] == "report_truncated"
    assert summary["errors_by_code"] == {"schema_violation": 600_000}

    wide_receipt = receipt_of(pipeline, wide_key)
    assert wide_receipt["stats"]["records_invalid"] == 30
    per_record = [e for e in wide_receipt["errors"] if e["record_index"] == 0]
    assert len(per_record) == 21 and per_record[-1]["code"] == "too_many_errors"


# --- budgets ---------------------------------------------------------------------------------


def test_a_data_file_over_its_size_budget_is_rejected_unread_on_the_first_attempt(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_DATA_BYTES", "1000")
    transform = load_handler("transform")
    small, large = "retina/budget/small.json", "retina/budget/large.json"
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=small, Body=valid_array(2))
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=large, Body=valid_array(20))
    batch = sqs_batch(body_of(pipeline, large), body_of(pipeline, small))
    assert transform.handler(batch, FakeContext()) == {"batchItemFailures": []}

    receipt = receipt_of(pipeline, large)
    assert receipt["status"] == "rejected"
    assert receipt["errors"][0]["code"] == "data_too_large"
    assert "larger than the limit of 1000 bytes" in receipt["errors"][0]["message"]
    assert receipt_of(pipeline, small)["status"] == "processed"
    assert not any(
        k.startswith(("data/retina/budget/large", "errors/")) for k in processed_keys(pipeline)
    )


def big_file(records: int = 40_000) -> bytes:
    """About 6 MB: a hundred chunks of 64 KiB, so about a hundred clock readings."""
    return json.dumps(
        [scan(n, diagnosis="x" if n % 3 == 0 else "normal") for n in range(records)]
    ).encode()


def test_a_file_that_cannot_finish_in_time_is_rejected_with_nothing_half_written(
    pipeline: Pipeline, transform: ModuleType
) -> None:
    key = "retina/budget/slow.json"
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=big_file())
    # 30 s for the whole invocation, one second per chunk: about 25 of ~95 chunks fit.
    context = SteppingContext(budget_ms=30_000, step_ms=1_000)
    response = transform.handler(sqs_batch(body_of(pipeline, key)), context)

    assert response == {"batchItemFailures": []}
    receipt = receipt_of(pipeline, key)
    assert receipt["status"] == "rejected"
    assert [e["code"] for e in receipt["errors"]] == ["time_budget_exceeded"]
    assert "cannot be processed within the function's time" in receipt["errors"][0]["message"]
    # The data output and the errors report were both under way: both were aborted.
    assert open_uploads(pipeline) == []
    assert processed_keys(pipeline) == {receipt_key(key)}


def test_a_short_function_keeps_only_a_share_of_its_time_and_still_reads(
    pipeline: Pipeline, transform: ModuleType
) -> None:
    # A 3 s function (the chaos environment's): a fixed 5 s margin would stop every file
    # before its first byte. It keeps a fifth of its time, reads, and finishes.
    key = "retina/budget/short.json"
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=valid_array(3))
    context = SteppingContext(budget_ms=3_000, step_ms=100)
    assert transform.handler(sqs_batch(body_of(pipeline, key)), context) == {
        "batchItemFailures": []
    }
    assert receipt_of(pipeline, key)["status"] == "processed"


def test_the_margin_is_five_seconds_or_a_fifth_of_a_short_invocation(
    transform: ModuleType,
) -> None:
    def deadline(budget_ms: int) -> int:
        margin: int = transform.Deadline(lambda: budget_ms, budget_ms).margin_ms
        return margin

    assert deadline(900_000) == 5_000
    assert deadline(25_000) == 5_000
    assert deadline(3_000) == 600


def test_a_file_left_short_of_time_by_its_batch_mates_is_retried_not_rejected(
    pipeline: Pipeline, transform: ModuleType
) -> None:
    slow, late = "retina/budget/slow.json", "retina/budget/late.json"
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=slow, Body=big_file())
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=late, Body=valid_array(3))
    batch = sqs_batch(body_of(pipeline, slow), body_of(pipeline, late))
    response = transform.handler(batch, SteppingContext(budget_ms=30_000, step_ms=1_000))

    # The slow file used the invocation up; the late one had no time and goes back.
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert receipt_of(pipeline, slow)["errors"][0]["code"] == "time_budget_exceeded"
    assert receipt_key(late) not in processed_keys(pipeline)
    assert open_uploads(pipeline) == []
    # Redelivered into a fresh invocation, it is processed.
    retry = transform.handler(sqs_batch(body_of(pipeline, late)), FakeContext())
    assert retry == {"batchItemFailures": []}
    assert receipt_of(pipeline, late)["status"] == "processed"
