"""``sluice redrive`` against moto: dead letters go back to the queue their bucket feeds.

moto does not implement SQS's message-move task, so these tests run the fallback (receive,
send, then delete) through the ``auto`` method; the task path is tested with a stubbed
client in tests/unit/test_cli_ops.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluice.cli import main
from sluice.ops.environment import Environment
from sluice.ops.queues import describe_message, queue_depth
from sluice.ops.redrive import BATCHES, DRY_RUN, TEST_EVENT_NOTE, _Targets, redrive
from tests.cli_output import keys_of, one_json_document
from tests.conftest import Pipeline
from tests.integration.ops_support import (
    ENVIRONMENT,
    make_environment,
    s3_notification,
    write_outputs_file,
)


@pytest.fixture
def environment(pipeline: Pipeline) -> Environment:
    return make_environment(pipeline, max_receive_count=1)


def dead_letter(sqs: Any, environment: Environment, function: str, body: str) -> None:
    """Fail a message the way the pipeline would: received past maxReceiveCount."""
    url = environment.queue_urls[function]
    sqs.send_message(QueueUrl=url, MessageBody=body)
    for _ in range(2):  # the second receive finds it over the limit and dead-letters it
        sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)
    assert queue_depth(sqs, function, url).total == 0


@pytest.fixture
def dead_letters(pipeline: Pipeline, environment: Environment) -> dict[str, str]:
    """One dead letter from each queue, keyed by the queue; plus one that names nothing."""
    bodies = {
        "transform": s3_notification(pipeline.raw, "in/a b+c ü.jpg"),
        "archive": s3_notification(pipeline.processed, "receipts/in/x.jpg.json"),
        "tag": s3_notification(pipeline.archive, "images/in/x.jpg"),
        "bundle": s3_notification(pipeline.work, "requests/r1.json"),
    }
    for function, body in bodies.items():
        dead_letter(pipeline.sqs, environment, function, body)
    pipeline.sqs.send_message(QueueUrl=environment.dead_letter_queue_url, MessageBody="garbage")
    assert queue_depth(pipeline.sqs, "dlq", environment.dead_letter_queue_url).visible == 5
    return bodies


def drain(sqs: Any, url: str) -> list[str]:
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_redrive_returns_each_dead_letter_to_its_source_queue(
    pipeline: Pipeline, environment: Environment, dead_letters: dict[str, str]
) -> None:
    report = redrive(pipeline.sqs, environment)

    assert report.method == BATCHES
    assert report.fallback_reason and "message-move task unavailable" in report.fallback_reason
    assert report.moved == 4
    assert sorted(m.target or "" for m in report.moves) == sorted(dead_letters)
    for function, body in dead_letters.items():
        assert drain(pipeline.sqs, environment.queue_urls[function]) == [body]
    # The message whose source cannot be told stays, visible again, and is reported.
    [left] = report.left
    assert left.target is None
    assert left.subject.startswith("SQS message body is not JSON")
    assert not report.ok
    assert drain(pipeline.sqs, environment.dead_letter_queue_url) == ["garbage"]


def test_redrive_cli_empties_the_dead_letter_queue(
    pipeline: Pipeline,
    environment: Environment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = s3_notification(pipeline.raw, "retry/me.json")
    dead_letter(pipeline.sqs, environment, "transform", body)
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(["redrive", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 0
    out = capsys.readouterr().out
    assert "moved -> transform" in out and "retry/me.json" in out
    dlq = queue_depth(pipeline.sqs, "dlq", environment.dead_letter_queue_url)
    assert dlq.total == 0
    assert drain(pipeline.sqs, environment.queue_urls["transform"]) == [body]


def test_dry_run_moves_nothing_and_leaves_messages_visible(
    pipeline: Pipeline,
    environment: Environment,
    dead_letters: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = redrive(pipeline.sqs, environment, dry_run=True)

    assert report.method == DRY_RUN
    assert report.dead_letters_before == 5
    assert sorted(m.target or "" for m in report.moves) == sorted(dead_letters)
    assert len(report.left) == 1
    for function in dead_letters:
        assert queue_depth(pipeline.sqs, function, environment.queue_urls[function]).total == 0
    dlq = queue_depth(pipeline.sqs, "dlq", environment.dead_letter_queue_url)
    assert (dlq.visible, dlq.in_flight) == (5, 0)

    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    code = main(["redrive", "--dry-run", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])
    assert code == 0
    assert "would move -> transform" in capsys.readouterr().out
    assert queue_depth(pipeline.sqs, "dlq", environment.dead_letter_queue_url).visible == 5


def test_max_limits_how_many_move(pipeline: Pipeline, environment: Environment) -> None:
    for index in range(3):
        dead_letter(
            pipeline.sqs, environment, "transform", s3_notification(pipeline.raw, f"k{index}")
        )

    report = redrive(pipeline.sqs, environment, limit=2)

    assert report.method == BATCHES and report.fallback_reason is None
    assert report.moved == 2
    assert queue_depth(pipeline.sqs, "t", environment.queue_urls["transform"]).visible == 2
    assert queue_depth(pipeline.sqs, "d", environment.dead_letter_queue_url).visible == 1


def test_source_arn_from_sqs_wins_over_the_bucket(
    pipeline: Pipeline, environment: Environment
) -> None:
    """Real SQS names the source queue (DeadLetterQueueSourceArn); moto does not."""
    tag_arn = pipeline.sqs.get_queue_attributes(
        QueueUrl=environment.queue_urls["tag"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "h",
        "Body": s3_notification(pipeline.raw, "x.jpg"),
        "Attributes": {"DeadLetterQueueSourceArn": tag_arn},
    }

    url, move = _Targets(pipeline.sqs, environment).plan(message)  # type: ignore[arg-type]

    assert url == environment.queue_urls["tag"]
    assert move.target == "tag"
    assert describe_message(message).source_queue_arn == tag_arn  # type: ignore[arg-type]


def test_redrive_cli_json_lists_moves_and_what_stays(
    environment: Environment,
    dead_letters: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    argv = ["redrive", "--output", "json", "-e", ENVIRONMENT, "--outputs-file", str(outputs)]

    dry = main([*argv, "--dry-run"])
    dry_shown = one_json_document(capsys.readouterr().out)
    code = main(argv)
    captured = capsys.readouterr()
    shown = one_json_document(captured.out)

    assert dry == 0
    assert set(dry_shown) == keys_of("redrive")
    assert dry_shown["method"] == DRY_RUN and dry_shown["moved"] == 0
    assert len(dry_shown["moves"]) == 4
    assert code == 1  # the message that names nothing stays
    assert set(shown) == keys_of("redrive")
    assert all(set(move) == keys_of("move") for move in shown["moves"] + shown["left"])
    assert shown["method"] == BATCHES and shown["ok"] is False
    assert shown["moved"] == 4 and shown["dead_letters_before"] == 5
    assert sorted(move["target"] for move in shown["moves"]) == sorted(dead_letters)
    assert [move["target"] for move in shown["left"]] == [None]
    assert "message-move task unavailable" in shown["fallback_reason"]
    assert "note:" not in captured.out  # the table's note is a key here


def _test_event(bucket: str) -> str:
    """What S3 sends to a queue when a bucket's notification configuration is written."""
    return json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2026-12-01T04:00:00.000Z",
            "Bucket": bucket,
            "RequestId": "R1",
            "HostId": "H1",
        }
    )


def test_a_dead_lettered_test_event_is_deleted_with_a_note_and_the_redrive_is_ok(
    pipeline: Pipeline,
    environment: Environment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = s3_notification(pipeline.raw, "in/real.json")
    dead_letter(pipeline.sqs, environment, "transform", _test_event(pipeline.raw))
    dead_letter(pipeline.sqs, environment, "transform", body)
    dead_letter(pipeline.sqs, environment, "archive", _test_event(pipeline.processed))

    dry = redrive(pipeline.sqs, environment, dry_run=True)
    assert [m.subject for m in dry.discarded] == ["s3:TestEvent"] * 2
    assert len(dry.moves) == 1 and dry.left == []
    assert queue_depth(pipeline.sqs, "dlq", environment.dead_letter_queue_url).visible == 3

    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    code = main(["redrive", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 0, "a test event is not a failure to redrive"
    out = capsys.readouterr().out
    assert out.count("deleted: s3:TestEvent: an s3:TestEvent names no object") == 2
    assert "moved 1 message(s); 0 left in the dead-letter queue; 2 s3:TestEvent(s) deleted" in out
    assert queue_depth(pipeline.sqs, "dlq", environment.dead_letter_queue_url).total == 0
    assert drain(pipeline.sqs, environment.queue_urls["transform"]) == [body]
    assert drain(pipeline.sqs, environment.queue_urls["archive"]) == []


def test_the_redrive_report_counts_discarded_test_events_as_ok(
    pipeline: Pipeline, environment: Environment
) -> None:
    dead_letter(pipeline.sqs, environment, "tag", _test_event(pipeline.archive))

    report = redrive(pipeline.sqs, environment)

    assert report.ok and report.moved == 0 and report.left == []
    [discarded] = report.discarded
    assert discarded.problem == TEST_EVENT_NOTE
