"""``sluice reprocess`` against moto: what it selects, how it copies, and the history it leaves.

The recovery story of the two-bucket pattern (issue 12): after a dataset is fixed, the
inputs it rejected are copied back from ARCHIVE into RAW and go through the real handlers
again (transform, archive, as in tests/integration/test_versions.py); each ends with one
receipt that names the receipt it replaced, a ledger record keeping that verdict, and a
clean ``sluice audit``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sluice.cli import main
from sluice.events import S3ObjectRef
from sluice.image_items import get_image
from sluice.keys import image_id, superseded_archive_key, thumbnail_key, version_record_key
from sluice.label_items import label_counts
from sluice.ops.environment import Environment
from sluice.ops.reprocess import Selection, SelectionError, reprocess
from sluice.receipts import REPROCESS_METADATA, history
from tests.cli_output import one_json_document
from tests.conftest import IKERIAN_EXPECTED, IKERIAN_SAMPLE, Pipeline, load_handler
from tests.integration.ops_support import ENVIRONMENT, ingest, make_environment, write_outputs_file
from tests.integration.test_versions import Stack, assert_clean, jpeg

CLINIC_KEY = "clinic/2026-11/visits.json"
"""A data file under a prefix no dataset owns yet: rejected ``unknown_dataset``."""
CLINIC_DATASETS = {
    "retina": {
        "prefix": "retina/",
        "schema": "retina.schema.json",
        "projection": ["patient_id", "patient_name"],
        "root": True,
    },
    "clinic": {
        "prefix": "clinic/",
        "schema": "retina.schema.json",
        "projection": ["patient_id", "patient_name"],
    },
}


@pytest.fixture
def stack(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("THUMBNAIL_SIZES", "64")
    return Stack(pipeline, load_handler("transform"), load_handler("archive"), load_handler("tag"))


@pytest.fixture
def environment(pipeline: Pipeline) -> Environment:
    return make_environment(pipeline)


def fix_datasets(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `terraform apply` of a tfvars with the clinic dataset does: the transform's
    DATASETS changes, and the next invocation starts cold with it."""
    monkeypatch.setenv("DATASETS", json.dumps(CLINIC_DATASETS))
    stack.transform = load_handler("transform")


def run_pipeline(stack: Stack, key: str) -> None:
    """Deliver the RAW object's notification to the transform, then archive."""
    assert stack.transform_ok(stack.event(key))
    stack.archive_all()


def raw_version_ids(stack: Stack, key: str) -> list[str]:
    listing = stack.p.s3.list_object_versions(Bucket=stack.p.raw, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def rejected_clinic_file(stack: Stack) -> dict[str, Any]:
    stack.put(CLINIC_KEY, IKERIAN_SAMPLE.read_bytes())
    run_pipeline(stack, CLINIC_KEY)
    receipt = stack.receipt(CLINIC_KEY)
    assert receipt["status"] == "rejected"
    assert [e["code"] for e in receipt["errors"]] == ["unknown_dataset"]
    assert receipt["replaces"] is None
    return receipt


# --- the recovery story -------------------------------------------------------------------------


def test_a_rejected_file_reprocessed_after_its_dataset_is_fixed_is_processed_with_its_history(
    stack: Stack, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = rejected_clinic_file(stack)
    first_version = first["source"]["version_id"]
    fix_datasets(stack, monkeypatch)

    report = reprocess(stack.p.s3, environment, Selection(prefix="clinic/", status="rejected"))

    assert [(item.key, item.outcome) for item in report.items] == [(CLINIC_KEY, "copied")]
    assert report.ok
    run_pipeline(stack, CLINIC_KEY)

    receipt = stack.receipt(CLINIC_KEY)
    assert receipt["status"] == "processed"
    assert receipt["dataset"] == "clinic"
    assert receipt["source"]["version_id"] != first_version
    assert json.loads(stack.read(stack.p.processed, f"data/{CLINIC_KEY}")) == IKERIAN_EXPECTED
    replaced = receipt["replaces"]
    record_key = version_record_key(CLINIC_KEY, first_version)
    assert replaced == {
        "etag": first["source"]["etag"],
        "version_id": first_version,
        "status": "rejected",
        "kind": "data",
        "dataset": None,
        "error_codes": ["unknown_dataset"],
        "stats": {},
        "handler_version": first["handler_version"],
        "processed_at": first["processed_at"],
        "cause": "reprocess",
        "record": record_key,
        "replaces": None,
    }
    # The ledger keeps the replaced version: its bytes under superseded/, its record with
    # the verdict it had; the rejected/ name is no longer current; RAW is empty again.
    record = stack.record(CLINIC_KEY, first_version)
    assert record["status"] == "superseded"
    assert record["receipt"] == replaced
    superseded = superseded_archive_key(CLINIC_KEY, first_version)
    assert record["archive_key"] == superseded
    assert stack.read(stack.p.archive, superseded) == IKERIAN_SAMPLE.read_bytes()
    assert stack.keys(stack.p.archive) == [f"data/{CLINIC_KEY}", superseded]
    assert raw_version_ids(stack, CLINIC_KEY) == []
    assert [entry["status"] for entry in history(stack.p.s3, stack.p.processed, CLINIC_KEY)] == [
        "processed",
        "rejected",
    ]
    report_after = stack.audit()
    assert_clean(report_after)
    assert report_after.ledger.receipts_processed == 1
    assert report_after.ledger.receipts_rejected == 0
    assert report_after.ledger.versions_superseded == 1


def test_history_of_a_key_reprocessed_twice_and_uploaded_again_goes_back_to_its_first_version(
    stack: Stack, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected_clinic_file(stack)
    fix_datasets(stack, monkeypatch)
    for _ in range(2):
        assert reprocess(stack.p.s3, environment, Selection(keys=(CLINIC_KEY,))).ok
        run_pipeline(stack, CLINIC_KEY)
    stack.put(CLINIC_KEY, b"[]")  # the clinic sends a corrected file itself
    run_pipeline(stack, CLINIC_KEY)

    entries = history(stack.p.s3, stack.p.processed, CLINIC_KEY)

    assert [(e["status"], e.get("cause")) for e in entries] == [
        ("processed", None),
        ("processed", "upload"),
        ("processed", "reprocess"),
        ("rejected", "reprocess"),
    ]
    assert entries[0]["stats"] == {"records_total": 0, "records_valid": 0, "records_invalid": 0}
    assert entries[1]["stats"]["records_valid"] == 2
    # Every replaced version is recorded exactly once and named by exactly one summary.
    records = stack.keys(stack.p.processed, "versions/")
    assert sorted(e["record"] for e in entries[1:]) == sorted(records)
    assert len(stack.keys(stack.p.archive, "superseded/")) == 3
    assert_clean(stack.audit())


def test_a_duplicate_of_the_reprocessed_event_keeps_the_history(
    stack: Stack, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected_clinic_file(stack)
    fix_datasets(stack, monkeypatch)
    reprocess(stack.p.s3, environment, Selection(keys=(CLINIC_KEY,)))
    event = stack.event(CLINIC_KEY)
    assert stack.transform_ok(event)
    # The lease and the receipt check make a duplicate a no-op; force the rewrite a crash
    # after the receipt would cause by running the work again on the same version.
    before = stack.receipt(CLINIC_KEY)["replaces"]
    ref = S3ObjectRef(
        bucket=stack.p.raw, key=CLINIC_KEY, event_name="ObjectCreated:Copy", etag=None
    )
    stack.p.s3.delete_object(Bucket=stack.p.processed, Key=f"leases/{CLINIC_KEY}.json")
    stack.transform.process(stack.transform.Dependencies.from_env(os.environ), ref)
    stack.archive_all()

    assert stack.receipt(CLINIC_KEY)["replaces"] == before
    assert before is not None and before["status"] == "rejected"
    assert_clean(stack.audit())


def test_a_processed_image_reprocessed_with_new_thumbnail_sizes_keeps_exact_label_counts(
    stack: Stack, environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "photos/red.jpg"
    stack.put(key, jpeg((220, 30, 30)))
    run_pipeline(stack, key)
    stack.tag_all()
    counts = label_counts(stack.p.dynamodb, stack.p.labels_table)
    assert counts != []
    monkeypatch.setenv("THUMBNAIL_SIZES", "32")
    stack.transform = load_handler("transform")

    assert reprocess(stack.p.s3, environment, Selection(prefix="photos/", status="processed")).ok
    run_pipeline(stack, key)
    stack.tag_all()
    stack.tag_all()  # and a duplicate of the new copy's event

    receipt = stack.receipt(key)
    assert [o["key"] for o in receipt["outputs"]] == [thumbnail_key(key, 32, ".jpg")]
    assert (receipt["replaces"]["status"], receipt["replaces"]["cause"]) == (
        "processed",
        "reprocess",
    )
    item = get_image(stack.p.dynamodb, stack.p.images_table, image_id(f"images/{key}"))
    assert item is not None and item["source_version_id"] == receipt["source"]["version_id"]
    assert label_counts(stack.p.dynamodb, stack.p.labels_table) == counts
    assert stack.keys(stack.p.processed, "thumbnails/") == [thumbnail_key(key, 32, ".jpg")]
    assert_clean(stack.audit())


# --- selection ----------------------------------------------------------------------------------


@pytest.fixture
def ledger(pipeline: Pipeline) -> None:
    """A pipeline at rest: two datasets' files, processed and rejected, and an image."""
    ingest(pipeline, "retina/a.json", b"[]", kind="data", status="processed")
    ingest(pipeline, "retina/b.json", b"[", kind="data", status="rejected")
    ingest(pipeline, "clinic/c.json", b"[{", kind="data", status="rejected")
    ingest(pipeline, "photos/d.jpg", b"jpeg", kind="image")
    for key, dataset, codes in (
        ("retina/a.json", "retina", ["schema_violation"]),
        ("retina/b.json", "retina", ["malformed_json"]),
        ("clinic/c.json", None, ["unknown_dataset"]),
        ("photos/d.jpg", None, []),
    ):
        receipt = json.loads(
            pipeline.s3.get_object(Bucket=pipeline.processed, Key=f"receipts/{key}.json")[
                "Body"
            ].read()
        )
        receipt["dataset"] = dataset
        receipt["errors"] = [{"code": code, "message": "m"} for code in codes]
        pipeline.s3.put_object(
            Bucket=pipeline.processed, Key=f"receipts/{key}.json", Body=json.dumps(receipt)
        )


def selected(pipeline: Pipeline, environment: Environment, **filters: Any) -> list[str]:
    report = reprocess(pipeline.s3, environment, Selection(**filters), dry_run=True)
    return [item.key for item in report.items]


def test_selection_by_prefix_dataset_status_error_code_and_keys(
    pipeline: Pipeline, environment: Environment, ledger: None
) -> None:
    assert selected(pipeline, environment, prefix="retina/") == ["retina/a.json", "retina/b.json"]
    assert selected(pipeline, environment, dataset="retina", status="rejected") == ["retina/b.json"]
    assert selected(pipeline, environment, status="rejected") == [
        "clinic/c.json",
        "retina/b.json",
    ]
    assert selected(pipeline, environment, error_code="schema_violation") == ["retina/a.json"]
    assert selected(pipeline, environment, keys=("photos/d.jpg", "clinic/c.json")) == [
        "clinic/c.json",
        "photos/d.jpg",
    ]
    assert selected(pipeline, environment, prefix="retina/", error_code="unknown_dataset") == []


def test_a_selection_needs_a_filter() -> None:
    with pytest.raises(SelectionError, match="say what to reprocess"):
        Selection()
    with pytest.raises(SelectionError, match="--status"):
        Selection(status="pending")


def test_a_dry_run_copies_nothing(
    pipeline: Pipeline, environment: Environment, ledger: None
) -> None:
    report = reprocess(pipeline.s3, environment, Selection(status="rejected"), dry_run=True)

    assert [item.outcome for item in report.items] == ["would_copy", "would_copy"]
    assert report.ok
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.raw).get("Contents", []) == []


def test_inputs_not_at_rest_or_unknown_are_skipped_and_say_why(
    pipeline: Pipeline, environment: Environment, ledger: None
) -> None:
    ingest(pipeline, "retina/busy.json", b"[]", kind="data", clear_raw=False)
    ingest(pipeline, "retina/lost.json", b"[]", kind="data", archive=False)

    report = reprocess(
        pipeline.s3,
        environment,
        Selection(keys=("retina/busy.json", "retina/lost.json", "retina/typo.json")),
    )

    problems = {item.key: (item.outcome, item.problem) for item in report.items}
    assert problems == {
        "retina/busy.json": (
            "skipped",
            "in RAW: not archived yet, or a newer upload is in flight",
        ),
        "retina/lost.json": ("skipped", "not archived: data/retina/lost.json does not exist"),
        "retina/typo.json": ("skipped", "no receipt: never processed, or a mistyped key"),
    }
    assert not report.ok
    raw = [o["Key"] for o in pipeline.s3.list_objects_v2(Bucket=pipeline.raw)["Contents"]]
    assert raw == ["retina/busy.json"]


def test_the_copy_keeps_the_inputs_headers_and_metadata_and_marks_the_version_it_copies(
    pipeline: Pipeline, environment: Environment
) -> None:
    key = "photos/e.jpg"
    put = pipeline.s3.put_object(
        Bucket=pipeline.raw,
        Key=key,
        Body=b"jpeg bytes",
        ContentType="image/jpeg",
        CacheControl="max-age=60",
        Metadata={"camera": "x100"},
    )
    pipeline.s3.copy_object(
        Bucket=pipeline.archive,
        Key=f"images/{key}",
        CopySource={"Bucket": pipeline.raw, "Key": key},
        MetadataDirective="REPLACE",
        ContentType="image/jpeg",
        CacheControl="max-age=60",
        Metadata={
            "camera": "x100",
            "sluice-source-etag": put["ETag"].strip('"'),
            "sluice-source-version-id": put["VersionId"],
        },
    )
    pipeline.s3.delete_object(Bucket=pipeline.raw, Key=key, VersionId=put["VersionId"])
    receipt = {
        "receipt_version": 1,
        "status": "processed",
        "kind": "image",
        "source": {
            "bucket": pipeline.raw,
            "key": key,
            "etag": put["ETag"].strip('"'),
            "version_id": put["VersionId"],
        },
    }
    pipeline.s3.put_object(
        Bucket=pipeline.processed, Key=f"receipts/{key}.json", Body=json.dumps(receipt)
    )

    report = reprocess(pipeline.s3, environment, Selection(keys=(key,)))

    assert report.bytes_copied == len(b"jpeg bytes")
    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key=key)
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"camera": "x100", REPROCESS_METADATA: put["VersionId"]}
    assert head["ETag"] == put["ETag"]
    assert head["VersionId"] != put["VersionId"]


# --- the command --------------------------------------------------------------------------------


def test_cli_json_lists_each_item_and_exits_0_when_all_were_copied(
    pipeline: Pipeline,
    environment: Environment,
    ledger: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")
    keys = tmp_path / "keys.txt"
    keys.write_text("retina/b.json\n\nclinic/c.json\n", encoding="utf-8")

    code = main(
        [
            "reprocess",
            "--keys-from",
            str(keys),
            "--status",
            "rejected",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
            "--output",
            "json",
        ]
    )

    captured = capsys.readouterr()
    assert code == 0
    document = one_json_document(captured.out)
    assert document["ok"] is True
    assert (document["selected"], document["copied"], document["skipped"]) == (2, 2, 0)
    assert document["selection"]["keys"] == ["retina/b.json", "clinic/c.json"]
    assert [(i["key"], i["outcome"], i["problem"]) for i in document["items"]] == [
        ("clinic/c.json", "copied", None),
        ("retina/b.json", "copied", None),
    ]
    assert "2/2 files" in captured.err  # the progress, on stderr only


def test_cli_without_a_filter_is_a_usage_error(
    environment: Environment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = write_outputs_file(environment, tmp_path / "outputs.json")

    code = main(["reprocess", "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 2
    assert capsys.readouterr().out == ""
