"""What the local runner does around an invocation: event shape, settlement, context, env."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sluice.local.lambdas.cloudwatch import LineTee, lambda_log_stream_name
from sluice.local.lambdas.invocation import LambdaContext, round_trip_json, settle_batch, sqs_event
from sluice.local.lambdas.wiring import FunctionWiring, QueueSource
from sluice.local.lambdas.worker import FunctionWorker, function_process_env

EVENTS = Path(__file__).resolve().parents[1] / "events" / "runner"
IDS = ["m-1", "m-2", "m-3"]


def _load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def test_event_record_has_the_lambda_sqs_shape() -> None:
    message = _load("sqs_receive_message.json")
    event = sqs_event([message], "arn:aws:sqs:us-east-2:123456789012:my-queue", "us-east-2")
    assert event == {"Records": [_load("lambda_sqs_record.json")]}


def test_binary_message_attributes_are_base64_like_lambda() -> None:
    message = {
        "MessageId": "m",
        "ReceiptHandle": "r",
        "Body": "b",
        "MD5OfBody": "x",
        "MessageAttributes": {"blob": {"BinaryValue": b"\x00\xff", "DataType": "Binary"}},
    }
    record = sqs_event([message], "arn:aws:sqs:us-east-1:1:q", "us-east-1")["Records"][0]
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AP8="
    assert record["messageAttributes"]["blob"]["dataType"] == "Binary"
    assert "md5OfMessageAttributes" not in record


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}],
    ids=["null", "empty object", "empty list", "null list"],
)
def test_empty_responses_are_complete_successes(response: Any) -> None:
    settlement = settle_batch(IDS, response, report_batch_item_failures=True)
    assert settlement.delete == tuple(IDS)
    assert settlement.retry == ()


def test_reported_failures_stay_and_the_rest_is_deleted() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    settlement = settle_batch(IDS, response, report_batch_item_failures=True)
    assert settlement.delete == ("m-1", "m-3")
    assert settlement.retry == ("m-2",)


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"messageId": "m-1"}]},
        {"batchItemFailures": ["m-1"]},
        {"batchItemFailures": "m-1"},
        "ok",
        ["m-1"],
    ],
    ids=[
        "unknown id",
        "empty id",
        "null id",
        "wrong key",
        "bare string item",
        "not a list",
        "string response",
        "list response",
    ],
)
def test_invalid_partial_responses_fail_the_whole_batch(response: Any) -> None:
    settlement = settle_batch(IDS, response, report_batch_item_failures=True)
    assert settlement.delete == ()
    assert settlement.retry == tuple(IDS)
    assert settlement.reason


def test_without_report_batch_item_failures_a_response_is_ignored() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    settlement = settle_batch(IDS, response, report_batch_item_failures=False)
    assert settlement.delete == tuple(IDS)


def test_an_unserialisable_response_is_a_function_error() -> None:
    with pytest.raises(TypeError):
        round_trip_json({"when": object()})


def test_context_counts_down_from_the_function_timeout() -> None:
    context = LambdaContext(
        function_name="f",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        memory_limit_in_mb="256",
        log_group_name="/aws/lambda/f",
        log_stream_name="s",
        timeout_seconds=30,
    )
    assert 0 < context.get_remaining_time_in_millis() <= 30_000
    assert len(context.aws_request_id) == 36
    assert context.function_version == "$LATEST"


def test_log_stream_name_follows_lambda_layout() -> None:
    name = lambda_log_stream_name()
    day, _, rest = name.rpartition("/")
    assert len(day.split("/")) == 3
    assert rest.startswith("[$LATEST]")
    assert len(rest) == len("[$LATEST]") + 32


def test_tee_hands_over_complete_lines_and_drains_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[str] = []
    tee = LineTee(sys.stdout, lines.append)
    tee.write("one\ntw")
    tee.write("o\nthree")
    assert lines == ["one", "two"]
    tee.drain()
    assert lines == ["one", "two", "three"]
    assert capsys.readouterr().out == "one\ntwo\nthree"


def _wiring(**overrides: Any) -> FunctionWiring:
    values: dict[str, Any] = {
        "name": "sluice-local-transform",
        "arn": "arn:aws:lambda:us-east-1:123456789012:function:sluice-local-transform",
        "handler": "sluice.handlers.transform.handler",
        "environment": {"SLUICE_ENV": "local", "AWS_REGION": "eu-west-1"},
        "timeout_seconds": 60,
        "memory_mb": 512,
        "log_group": "/aws/lambda/sluice-local-transform",
        "region": "us-east-1",
        "sources": (),
    }
    values.update(overrides)
    return FunctionWiring(**values)


def test_worker_env_is_the_function_env_plus_reserved_variables() -> None:
    base = {"PATH": "/bin", "AWS_PROFILE": "prod", "AWS_SECRET_ACCESS_KEY": "real", "X": "1"}
    env = function_process_env(_wiring(), "http://127.0.0.1:4566", base)
    assert env["SLUICE_ENV"] == "local"
    assert env["PATH"] == "/bin"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_SECRET_ACCESS_KEY"] == "test"
    assert env["AWS_REGION"] == "us-east-1"  # reserved: the function cannot override it
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "sluice-local-transform"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert "AWS_PROFILE" not in env
    assert "X" not in env


class _OneAtATimeSQS:
    """Returns one message per receive, like a queue that fills while the window is open."""

    def __init__(self, available: int) -> None:
        self.available = available
        self.receives: list[dict[str, Any]] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives.append(kwargs)
        if not self.available:
            return {}
        self.available -= 1
        n = len(self.receives)
        return {"Messages": [{"MessageId": f"m-{n}", "ReceiptHandle": f"r-{n}", "Body": "{}"}]}


def _source(batch_size: int, window: int) -> QueueSource:
    return QueueSource(
        mapping_uuid="u",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:q",
        queue_url="http://127.0.0.1:4566/123456789012/q",
        batch_size=batch_size,
        batching_window_seconds=window,
        report_batch_item_failures=True,
        state="Disabled",
    )


def test_batching_window_fills_the_batch_up_to_its_size() -> None:
    sqs = _OneAtATimeSQS(available=10)
    worker = FunctionWorker(_wiring(), sqs)
    batch = worker.receive_batch(_source(batch_size=4, window=20), lambda: False)
    assert [m["MessageId"] for m in batch] == ["m-1", "m-2", "m-3", "m-4"]
    assert [r["MaxNumberOfMessages"] for r in sqs.receives] == [4, 3, 2, 1]
    assert all(r["AttributeNames"] == ["All"] for r in sqs.receives)


def test_without_a_window_the_first_receive_is_the_batch() -> None:
    sqs = _OneAtATimeSQS(available=10)
    worker = FunctionWorker(_wiring(), sqs)
    batch = worker.receive_batch(_source(batch_size=4, window=0), lambda: False)
    assert len(batch) == 1
    assert len(sqs.receives) == 1


def test_receive_asks_for_at_most_ten_messages() -> None:
    sqs = _OneAtATimeSQS(available=0)
    worker = FunctionWorker(_wiring(), sqs)
    assert worker.receive_batch(_source(batch_size=100, window=5), lambda: False) == []
    assert sqs.receives[0]["MaxNumberOfMessages"] == 10
