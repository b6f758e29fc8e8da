"""The shared handler runtime: partial batch responses, skipping, and structured logs."""

from __future__ import annotations

import io
import json
import random
import sys
import types
import uuid
from collections.abc import Callable
from typing import IO, Any, cast

import pytest
from aws_lambda_powertools import Logger

from sluice.events import S3ObjectRef, UnsupportedEventError
from sluice.runtime import process_event, register_snapshot_hooks
from tests.conftest import FakeContext
from tests.s3events import golden, s3_event, s3_record, sqs_batch

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class Recorder:
    """A processor that records what it was given and fails on chosen keys."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.fail_on = fail_on or set()
        self.seen: list[S3ObjectRef] = []

    def __call__(self, ref: S3ObjectRef) -> None:
        self.seen.append(ref)
        if ref.key in self.fail_on:
            raise RuntimeError(f"cannot process {ref.key}")

    @property
    def keys(self) -> list[str]:
        return [ref.key for ref in self.seen]


class CurrentStdout(io.TextIOBase):
    """Writes to whatever ``sys.stdout`` is now: capsys swaps it between test phases."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def logger() -> Logger:
    # A service name of its own per test: Powertools configures a named logger only once.
    return Logger(
        service=f"sluice-test-{uuid.uuid4().hex[:8]}", stream=cast(IO[str], CurrentStdout())
    )


def make_handler(process: Recorder, logger: Logger) -> Handler:
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_event(event, context, process, logger)

    return handler


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def put(key: str, etag: str = "e1") -> dict[str, Any]:
    return s3_event(s3_record("work", key, etag=etag, size=10))


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_one_failing_message_of_three_is_the_only_one_reported(logger: Logger) -> None:
    process = Recorder(fail_on={"requests/b.json"})
    event = sqs_batch(put("requests/a.json"), put("requests/b.json"), put("requests/c.json"))

    response = make_handler(process, logger)(event, FakeContext())

    assert failed_ids(response) == ["msg-1"]
    # The messages after the failing one were still processed, each once.
    assert process.keys == ["requests/a.json", "requests/b.json", "requests/c.json"]


def test_all_messages_failing_are_all_reported_without_raising(logger: Logger) -> None:
    # raise_on_entire_batch_failure=False: Lambda gets a normal response listing every
    # message, instead of an invocation error that would hide which ones failed.
    process = Recorder(fail_on={"requests/a.json", "requests/b.json", "requests/c.json"})
    event = sqs_batch(put("requests/a.json"), put("requests/b.json"), put("requests/c.json"))

    response = make_handler(process, logger)(event, FakeContext())

    assert failed_ids(response) == ["msg-0", "msg-1", "msg-2"]


def test_successful_batch_reports_no_failures(logger: Logger) -> None:
    process = Recorder()

    response = make_handler(process, logger)(sqs_batch(put("requests/a.json")), FakeContext())

    assert response == {"batchItemFailures": []}
    assert process.keys == ["requests/a.json"]


def test_golden_batch_processes_the_put_and_skips_test_event_and_removal(logger: Logger) -> None:
    process = Recorder()

    response = make_handler(process, logger)(golden("sqs_batch.json"), FakeContext())

    assert response == {"batchItemFailures": []}
    assert process.keys == ["requests/dogs + cats été.json"]


def test_body_that_is_not_json_fails_that_message_only(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    process = Recorder()
    event = golden("sqs_batch_malformed_body.json")
    bad_id = event["Records"][1]["messageId"]

    response = make_handler(process, logger)(event, FakeContext())

    assert failed_ids(response) == [bad_id]
    assert process.keys == ["requests/dogs + cats été.json"]
    errors = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["message_id"] == bad_id
    assert "not JSON" in errors[0]["exception"]


def test_every_record_of_a_multi_record_message_is_processed(logger: Logger) -> None:
    process = Recorder()

    response = make_handler(process, logger)(
        sqs_batch(golden("s3_multi_record.json")), FakeContext()
    )

    assert response == {"batchItemFailures": []}
    assert process.keys == ["requests/first.json", "requests/second.json", "requests/third.json"]


def test_sqs_wrapped_eventbridge_event_is_processed(logger: Logger) -> None:
    process = Recorder()

    make_handler(process, logger)(golden("sqs_eventbridge.json"), FakeContext())

    assert process.keys == ["requests/summer 2026 + été.json"]


def test_direct_s3_event_is_processed_and_removal_skipped(logger: Logger) -> None:
    process = Recorder()
    handler = make_handler(process, logger)

    assert handler(golden("s3_multi_record.json"), FakeContext()) == {"processed": 3}
    assert handler(golden("s3_object_removed.json"), FakeContext()) == {"processed": 0}
    assert handler(golden("s3_test_event.json"), FakeContext()) == {"processed": 0}
    assert len(process.seen) == 3


def test_direct_eventbridge_event_is_processed(logger: Logger) -> None:
    process = Recorder()
    handler = make_handler(process, logger)

    assert handler(golden("eventbridge_object_created.json"), FakeContext()) == {"processed": 1}
    assert handler(golden("eventbridge_object_deleted.json"), FakeContext()) == {"processed": 0}
    assert process.keys == ["requests/summer 2026 + été.json"]


def test_direct_event_failure_raises_for_the_caller(logger: Logger) -> None:
    process = Recorder(fail_on={"requests/a.json"})

    with pytest.raises(RuntimeError, match="cannot process"):
        make_handler(process, logger)(put("requests/a.json"), FakeContext())


def test_unsupported_direct_event_raises(logger: Logger) -> None:
    with pytest.raises(UnsupportedEventError):
        make_handler(Recorder(), logger)({"hello": "world"}, FakeContext())


def test_custom_filter_skips_with_a_log_line(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    process = Recorder()

    def requests_only(ref: S3ObjectRef) -> bool:
        return ref.is_created and ref.key.startswith("requests/")

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_event(event, context, process, logger, accepts=requests_only)

    response = handler(sqs_batch(put("bundles/x.json"), put("requests/y.json")), FakeContext())

    assert response == {"batchItemFailures": []}
    assert process.keys == ["requests/y.json"]
    [skip] = [line for line in log_lines(capsys) if line["message"].startswith("skipping")]
    assert skip["key"] == "bundles/x.json"


def test_log_lines_are_json_with_object_and_request_identity(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    def process(ref: S3ObjectRef) -> None:
        logger.info("working on it")

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_event(event, context, process, logger)

    event = sqs_batch(put("requests/a b.json", etag="etag-a"), put("requests/c.json", "etag-c"))
    handler(event, FakeContext())

    lines = [line for line in log_lines(capsys) if line["message"] == "working on it"]
    assert [(line["bucket"], line["key"], line["etag"]) for line in lines] == [
        ("work", "requests/a b.json", "etag-a"),
        ("work", "requests/c.json", "etag-c"),
    ]
    for line in lines:
        assert line["function_request_id"] == FakeContext.aws_request_id
        assert line["message_id"] in {"msg-0", "msg-1"}
        assert line["level"] == "INFO"


def test_failure_log_line_names_the_object(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    process = Recorder(fail_on={"requests/b.json"})
    event = sqs_batch(put("requests/a.json"), put("requests/b.json", etag="etag-b"))

    make_handler(process, logger)(event, FakeContext())

    errors = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["key"] == "requests/b.json"
    assert errors[0]["etag"] == "etag-b"
    assert errors[0]["message_id"] == "msg-1"
    assert errors[0]["function_request_id"] == FakeContext.aws_request_id
    assert "cannot process requests/b.json" in errors[0]["exception"]


def test_object_keys_do_not_leak_into_later_lines(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    make_handler(Recorder(), logger)(sqs_batch(put("requests/a.json")), FakeContext())
    capsys.readouterr()

    logger.info("after the batch")

    [line] = log_lines(capsys)
    for key in ("bucket", "key", "etag", "version_id", "message_id"):
        assert key not in line


def test_message_content_is_never_logged(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    body = '{"patient_name": "Jane Roe", "Records": [ broken'

    response = make_handler(Recorder(), logger)(sqs_batch(body), FakeContext())

    assert failed_ids(response) == ["msg-0"]
    output = json.dumps(log_lines(capsys))
    assert "Jane Roe" not in output
    assert "patient_name" not in output


def test_random_is_reseeded_in_each_environment_restored_from_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: list[Callable[[], None]] = []
    fake = types.ModuleType("snapshot_restore_py")
    fake.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)

    assert register_snapshot_hooks()
    [after_restore] = registered
    state = random.getstate()
    try:
        random.seed(7)
        snapshot_draw = random.random()
        random.seed(7)  # a second environment restored from the same snapshot
        after_restore()
        assert random.random() != snapshot_draw
    finally:
        random.setstate(state)


def test_no_snapshot_hook_outside_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails
    assert not register_snapshot_hooks()


def _counting_build(calls: list[int]) -> Callable[[], Handler]:
    def build() -> Handler:
        calls.append(1)
        return lambda event, context: {"seen": event["n"]}

    return build


def test_entry_point_outside_lambda_builds_nothing_until_the_first_call() -> None:
    """A test or a tool may import a handler module with no environment at all."""
    from sluice.runtime import entry_point

    calls: list[int] = []
    handler = entry_point(Logger(service="t"), _counting_build(calls), eager=False)
    assert calls == []
    assert handler({"n": 1}, FakeContext()) == {"seen": 1}
    assert handler({"n": 2}, FakeContext()) == {"seen": 2}
    assert calls == [1]  # built once per execution environment


def test_entry_point_on_lambda_builds_in_the_init_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients and settings cost the cold start's init (and SnapStart snapshots them)."""
    from sluice.runtime import entry_point, on_lambda

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "sluice-dev-tag")
    assert on_lambda()
    calls: list[int] = []
    handler = entry_point(Logger(service="t"), _counting_build(calls))
    assert calls == [1]
    handler({"n": 1}, FakeContext())
    assert calls == [1]


def test_every_client_retries_the_same_way_and_s3_signs_v4() -> None:
    from sluice.runtime import RETRIES, client

    s3 = client("s3", region_name="us-east-1")
    dynamodb = client("dynamodb", region_name="us-east-1")
    for made in (s3, dynamodb):
        assert made.meta.config.retries == RETRIES.retries
    assert s3.meta.config.signature_version == "s3v4"
    assert dynamodb.meta.config.signature_version != "s3v4"
