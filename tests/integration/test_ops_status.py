"""``sluice status`` against moto: queue depths, dead letters, receipts by status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.cli import main
from sluice.ops.environment import Environment
from sluice.ops.status import collect_status
from tests.conftest import Pipeline
from tests.integration.ops_support import (
    ENVIRONMENT,
    ingest,
    make_environment,
    s3_notification,
    write_outputs_file,
)


@pytest.fixture
def environment(pipeline: Pipeline) -> Environment:
    return make_environment(pipeline, max_receive_count=5)


@pytest.fixture
def busy(pipeline: Pipeline, environment: Environment) -> None:
    """Two messages waiting for transform, one taken by archive, one dead letter; 3 receipts."""
    sqs = pipeline.sqs
    transform, archive = environment.queue_urls["transform"], environment.queue_urls["archive"]
    sqs.send_message(QueueUrl=transform, MessageBody=s3_notification(pipeline.raw, "a.jpg"))
    sqs.send_message(QueueUrl=transform, MessageBody=s3_notification(pipeline.raw, "b.jpg"))
    sqs.send_message(QueueUrl=archive, MessageBody=s3_notification(pipeline.processed, "r"))
    sqs.receive_message(QueueUrl=archive, VisibilityTimeout=300)
    sqs.send_message(
        QueueUrl=environment.dead_letter_queue_url,
        MessageBody=s3_notification(pipeline.raw, "c.jpg"),
    )
    ingest(pipeline, "one.jpg", b"1")
    ingest(pipeline, "two.jpg", b"2")
    ingest(pipeline, "notes.exe", b"3", kind="unsupported", status="rejected")
    pipeline.s3.put_object(Bucket=pipeline.processed, Key="receipts/broken.json", Body=b"{")


def test_status_counts_queues_dead_letters_and_receipts(
    pipeline: Pipeline, environment: Environment, busy: None
) -> None:
    report = collect_status(pipeline.s3, pipeline.sqs, environment)

    depths = {q.name: (q.visible, q.in_flight, q.delayed) for q in report.queues}
    assert depths == {
        "transform": (2, 0, 0),
        "archive": (0, 1, 0),
        "tag": (0, 0, 0),
        "bundle": (0, 0, 0),
    }
    assert report.dead_letters.visible == 1
    assert report.receipts == {"processed": 2, "rejected": 1, "unreadable": 1}


def test_status_cli_json_and_no_receipts(
    pipeline: Pipeline,
    environment: Environment,
    busy: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(["-e", ENVIRONMENT, "--outputs", str(outputs), "status", "--json"])

    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dead_letters"]["visible"] == 1
    assert shown["receipts"]["processed"] == 2
    assert [q["name"] for q in shown["queues"]] == ["transform", "archive", "tag", "bundle"]

    code = main(["status", "--no-receipts", "-e", ENVIRONMENT, "--outputs", str(outputs)])

    assert code == 0
    table = capsys.readouterr().out
    assert "receipts: not counted" in table
    assert any(line.split()[:2] == ["transform", "2"] for line in table.splitlines())
