"""``sluice audit`` against moto: a consistent ledger is clean; each way it breaks is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.cli import main
from sluice.ops import audit as audit_module
from sluice.ops.audit import AuditReport, audit
from sluice.ops.environment import Environment
from tests.cli_output import keys_of, one_json_document
from tests.conftest import Pipeline
from tests.integration.ops_support import (
    ENVIRONMENT,
    SOURCE_ETAG_METADATA,
    ingest,
    make_environment,
    s3_notification,
    write_outputs_file,
)

ODD_KEYS = ("photos/a b+c.jpg", "photos/ünïcødé 東京.jpg", "long/" + "x" * 1010 + ".jpg")


@pytest.fixture
def environment(pipeline: Pipeline) -> Environment:
    return make_environment(pipeline)


@pytest.fixture
def ledger(pipeline: Pipeline) -> None:
    """A pipeline at rest: images, a data file and a rejected input, all accounted for."""
    for index, key in enumerate(ODD_KEYS):
        ingest(pipeline, key, f"image {index}".encode())
    ingest(pipeline, "records/batch.json", b"[]", kind="data")
    ingest(pipeline, "junk/virus.exe", b"MZ", kind="unsupported", status="rejected")


def categories(report: AuditReport) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in report.discrepancies:
        found.setdefault(finding.category, []).append(finding.subject)
    return found


def test_consistent_ledger_is_clean(
    pipeline: Pipeline, environment: Environment, ledger: None
) -> None:
    report = audit(pipeline.s3, pipeline.sqs, environment)

    assert report.discrepancies == []
    assert report.in_progress == []
    assert report.clean
    assert report.ledger.inputs_seen == 5
    assert report.ledger.receipts_processed == 4
    assert report.ledger.receipts_rejected == 1
    assert report.ledger.archived == 5
    assert report.ledger.in_raw == 0
    assert report.ledger.dead_lettered == 0


def test_cli_exits_0_on_a_clean_ledger(
    pipeline: Pipeline,
    environment: Environment,
    ledger: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(["audit", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 0
    assert "audit clean" in capsys.readouterr().out


def test_every_discrepancy_category_is_found(
    pipeline: Pipeline, environment: Environment, ledger: None
) -> None:
    s3, p = pipeline.s3, pipeline
    # An input nobody processed.
    s3.put_object(Bucket=p.raw, Key="lost/never seen.jpg", Body=b"x")
    # Something in the archive that no receipt explains.
    s3.put_object(Bucket=p.archive, Key="images/stray.jpg", Body=b"x")
    # A receipt whose input never reached the archive (RAW already cleared).
    not_archived = ingest(p, "gone/nowhere.jpg", b"n", archive=False)
    # Archived, but a different version than the receipt describes.
    mismatched = ingest(p, "mixed/up.jpg", b"m")
    s3.copy_object(
        Bucket=p.archive,
        Key=mismatched.archive_key,
        CopySource={"Bucket": p.archive, "Key": mismatched.archive_key},
        Metadata={SOURCE_ETAG_METADATA: "f" * 32},
        MetadataDirective="REPLACE",
    )
    # Archived but the archive handler never deleted the RAW object.
    lingering = ingest(p, "stuck/still here.jpg", b"s", clear_raw=False)
    # A newer upload over an input that was already processed, with no message pending.
    newer = ingest(p, "again/re-upload.jpg", b"old")
    s3.put_object(Bucket=p.raw, Key=newer.raw_key, Body=b"new")
    # A listed output that is missing, and a thumbnail nobody lists.
    missing = ingest(p, "thumbs/lost.jpg", b"t")
    s3.delete_object(Bucket=p.processed, Key=missing.outputs[0]["key"])
    s3.put_object(Bucket=p.processed, Key="thumbnails/128/orphan.jpg", Body=b"o")
    # A receipt that is not a receipt.
    s3.put_object(Bucket=p.processed, Key="receipts/garbage.json", Body=b"not json")
    # A dead letter for an input that never got a receipt.
    s3.put_object(Bucket=p.raw, Key="dead/letter.jpg", Body=b"d")
    p.sqs.send_message(
        QueueUrl=environment.dead_letter_queue_url,
        MessageBody=s3_notification(p.raw, "dead/letter.jpg"),
    )

    report = audit(pipeline.s3, pipeline.sqs, environment)
    found = categories(report)

    raw, archive, processed = (f"s3://{b}/" for b in (p.raw, p.archive, p.processed))
    assert report.in_progress == []
    assert sorted(found[audit_module.INPUT_WITHOUT_RECEIPT]) == [
        raw + "again/re-upload.jpg",
        raw + "dead/letter.jpg",
        raw + "lost/never seen.jpg",
    ]
    assert found[audit_module.ARCHIVED_WITHOUT_RECEIPT] == [archive + "images/stray.jpg"]
    assert found[audit_module.NOT_ARCHIVED] == [archive + not_archived.archive_key]
    assert found[audit_module.ARCHIVE_MISMATCH] == [archive + mismatched.archive_key]
    assert found[audit_module.RAW_NOT_CLEARED] == [raw + lingering.raw_key]
    assert found[audit_module.MISSING_OUTPUT] == [processed + missing.outputs[0]["key"]]
    assert found[audit_module.ORPHAN_OUTPUT] == [processed + "thumbnails/128/orphan.jpg"]
    assert found[audit_module.BAD_RECEIPT] == [processed + "receipts/garbage.json"]
    assert found[audit_module.DEAD_LETTERS] == ["dead-letter queue"]
    dead = next(f for f in report.discrepancies if f.category == audit_module.DEAD_LETTERS)
    assert "1 message(s)" in dead.detail and "dead/letter.jpg" in dead.detail
    assert report.ledger.dead_lettered == 1
    # The audit's peek left the dead letter where it was, visible.
    assert p.sqs.receive_message(QueueUrl=environment.dead_letter_queue_url).get("Messages")


def test_cli_lists_discrepancies_and_exits_1(
    pipeline: Pipeline,
    environment: Environment,
    ledger: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline.s3.put_object(Bucket=pipeline.raw, Key="lost.jpg", Body=b"x")
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(["audit", "--output", "json", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 1
    shown = one_json_document(capsys.readouterr().out)
    assert set(shown) == keys_of("audit")
    assert set(shown["ledger"]) == keys_of("ledger")
    assert all(set(finding) == keys_of("finding") for finding in shown["discrepancies"])
    assert all(set(queue) == keys_of("queue") for queue in shown["queues"])
    assert shown["clean"] is False
    assert shown["ledger"]["in_raw"] == 1 and shown["in_progress"] == []
    assert [(d["category"], d["subject"]) for d in shown["discrepancies"]] == [
        ("input without receipt", f"s3://{pipeline.raw}/lost.jpg")
    ]


def test_work_in_the_queues_is_in_progress_not_a_discrepancy(
    pipeline: Pipeline,
    environment: Environment,
    ledger: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline.s3.put_object(Bucket=pipeline.raw, Key="new.jpg", Body=b"x")
    pipeline.sqs.send_message(
        QueueUrl=environment.queue_urls["transform"],
        MessageBody=s3_notification(pipeline.raw, "new.jpg"),
    )

    report = audit(pipeline.s3, pipeline.sqs, environment)

    assert report.discrepancies == []
    assert {f.category for f in report.in_progress} == {
        audit_module.IN_PROGRESS,
        audit_module.INPUT_WITHOUT_RECEIPT,
    }
    assert not report.clean

    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    code = main(["audit", "-e", ENVIRONMENT, "--outputs-file", str(outputs), "--wait", "0"])
    assert code == 1
    assert "rerun with --wait" in capsys.readouterr().out


def test_cli_json_on_a_clean_ledger_with_a_wait(
    environment: Environment,
    ledger: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(
        [
            "--output",
            "json",
            "audit",
            "--wait",
            "1",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 0
    shown = one_json_document(capsys.readouterr().out)
    assert set(shown) == keys_of("audit")
    assert shown["clean"] is True and shown["discrepancies"] == []
    assert shown["ledger"]["archived"] == 5
