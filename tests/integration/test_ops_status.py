"""``sluice status`` against moto: queue depths, dead letters, receipts by status."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.cli import main
from sluice.ops.environment import Environment
from sluice.ops.status import collect_status
from tests.cli_output import keys_of, one_json_document
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

    code = main(["-e", ENVIRONMENT, "--outputs-file", str(outputs), "status", "--output", "json"])

    assert code == 0
    shown = one_json_document(capsys.readouterr().out)
    assert set(shown) == keys_of("status")
    assert set(shown["dead_letters"]) == keys_of("queue")
    assert all(set(queue) == keys_of("queue") for queue in shown["queues"])
    assert shown["dead_letters"]["visible"] == 1
    assert shown["receipts"] == {"processed": 2, "rejected": 1, "unreadable": 1}
    assert shown["receipts_total"] == 4
    assert shown["outputs_source"] == str(outputs)
    assert [q["name"] for q in shown["queues"]] == ["transform", "archive", "tag", "bundle"]
    assert [q["in_flight"] for q in shown["queues"]] == [0, 1, 0, 0]

    code = main(["status", "--no-receipts", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 0
    table = capsys.readouterr().out
    assert "receipts: not counted" in table
    assert any(line.split()[:2] == ["transform", "2"] for line in table.splitlines())


def test_status_json_without_receipts_keeps_every_key(
    environment: Environment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(
        [
            "status",
            "--no-receipts",
            "--output",
            "json",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 0
    shown = one_json_document(capsys.readouterr().out)
    assert set(shown) == keys_of("status")
    assert shown["receipts"] is None and shown["receipts_total"] is None


# --- --profile -----------------------------------------------------------------------

PROFILE = "sluice-moto"


@pytest.fixture
def only_a_named_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials exist only in a named profile of temporary AWS config files.

    moto accepts any key, so the profile's keys work; with the environment's keys gone
    (moto's mock sets some), a request without the profile has no credentials at all.
    """
    config = tmp_path / "aws-config"
    config.write_text(f"[profile {PROFILE}]\nregion = us-east-1\n", encoding="utf-8")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[{PROFILE}]\naws_access_key_id = AKIAPROFILEONLY\naws_secret_access_key = moto\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def test_profile_flag_supplies_the_credentials(
    environment: Environment,
    only_a_named_profile: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    argv = ["-e", ENVIRONMENT, "--outputs-file", str(outputs), "status", "--output", "json"]

    without = main(argv)
    assert without == 4
    assert "no usable AWS credentials" in capsys.readouterr().err

    with_profile = main(["--profile", PROFILE, *argv])
    assert with_profile == 0
    assert one_json_document(capsys.readouterr().out)["environment"] == ENVIRONMENT


def test_aws_profile_is_still_honoured(
    environment: Environment,
    only_a_named_profile: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    monkeypatch.setenv("AWS_PROFILE", PROFILE)

    assert main(["status", "--no-receipts", "-e", ENVIRONMENT, "--outputs-file", str(outputs)]) == 0
