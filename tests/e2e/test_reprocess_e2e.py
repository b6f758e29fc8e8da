"""End to end: a file rejected for want of a dataset, the dataset added, the file reprocessed.

The user's steps (README, "Reprocessing after a fix"), on the shared local stack: a clinic
sends its export under ``clinic/``, which no dataset owns, so it is rejected
``unknown_dataset`` and archived under ``rejected/``. The operator adds the dataset to the
environment's ``datasets`` and applies, which changes the transform's ``DATASETS`` (here
with the same UpdateFunctionConfiguration call the aws provider makes, then the
``function-updated`` waiter, as `terraform apply` does; a whole apply on the shared stack
would take minutes and move its state), then runs ``sluice reprocess``. The file is
processed, with one current receipt naming the rejected one it replaced, the replaced
version kept in the ledger, and a clean ``sluice audit``. The function's variables are put
back afterwards, so the modules after this one see the stack as Terraform left it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.keys import DATA_PREFIX, derived_key, receipt_key, superseded_archive_key
from sluice.ops.objects import list_objects
from sluice.receipts import history
from tests.conftest import IKERIAN_EXPECTED, IKERIAN_SAMPLE
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

KEY = "clinic/2026-11/visits.json"
PIPELINE_TIMEOUT_SECONDS = 180
CLINIC_DATASET = {
    "prefix": "clinic/",
    "schema": "retina.schema.json",
    "projection": ["patient_id", "patient_name"],
}


def _read_json(stack: Stack, bucket: str, key: str) -> Any:
    return json.loads(stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _receipt_when(stack: Stack, done: Any, what: str) -> dict[str, Any]:
    """Poll the key's receipt until ``done(receipt)``, within the deadline."""
    deadline = time.monotonic() + PIPELINE_TIMEOUT_SECONDS
    bucket = stack.environment.processed_bucket
    while time.monotonic() < deadline:
        keys = {o.key for o in list_objects(stack.client("s3"), bucket, receipt_key(KEY))}
        if receipt_key(KEY) in keys:
            receipt: dict[str, Any] = _read_json(stack, bucket, receipt_key(KEY))
            if done(receipt):
                return receipt
        time.sleep(1)
    pytest.fail(f"no {what} receipt for {KEY} within {PIPELINE_TIMEOUT_SECONDS} s", pytrace=False)


def _apply_variables(stack: Stack, function_name: str, variables: dict[str, str]) -> None:
    """What `terraform apply` does for a changed environment variable of a function."""
    stack.aws(
        "lambda",
        "update-function-configuration",
        "--function-name",
        function_name,
        "--environment",
        json.dumps({"Variables": variables}),
    )
    stack.aws("lambda", "wait", "function-updated", "--function-name", function_name)


@pytest.fixture
def transform_variables(stack: Stack) -> Iterator[dict[str, str]]:
    """The transform's variables as deployed; put back after the test."""
    name = stack.environment.function_names["transform"]
    config = stack.client("lambda").get_function_configuration(FunctionName=name)
    deployed: dict[str, str] = dict(config["Environment"]["Variables"])
    yield deployed
    _apply_variables(stack, name, deployed)


def test_a_file_rejected_for_want_of_a_dataset_is_processed_after_the_fix_and_reprocess(
    stack: Stack, transform_variables: dict[str, str]
) -> None:
    env = stack.environment
    stack.aws("s3", "cp", "--only-show-errors", str(IKERIAN_SAMPLE), f"s3://{env.raw_bucket}/{KEY}")
    rejected = _receipt_when(stack, lambda r: True, "first")
    assert rejected["status"] == "rejected"
    assert [error["code"] for error in rejected["errors"]] == ["unknown_dataset"]
    audit = stack.sluice("audit", "--wait", "120")
    assert audit.returncode == 0, audit.stdout + audit.stderr  # at rest: archived, RAW empty

    # The fix: the clinic's dataset in the environment's datasets, applied.
    datasets = json.loads(transform_variables["DATASETS"])
    assert "clinic" not in datasets
    fixed = {**transform_variables, "DATASETS": json.dumps({**datasets, "clinic": CLINIC_DATASET})}
    _apply_variables(stack, env.function_names["transform"], fixed)

    dry = stack.sluice("reprocess", "--prefix", "clinic/", "--status", "rejected", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"would copy rejected  {KEY}" in dry.stdout
    assert list(list_objects(stack.client("s3"), env.raw_bucket, "clinic/")) == []

    run = stack.sluice(
        "reprocess", "--prefix", "clinic/", "--status", "rejected", "--output", "json"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    document = json.loads(run.stdout)
    assert [(item["key"], item["outcome"]) for item in document["items"]] == [(KEY, "copied")]

    old_version = rejected["source"]["version_id"]
    processed = _receipt_when(
        stack, lambda r: r["source"]["version_id"] != old_version, "reprocessed"
    )
    assert processed["status"] == "processed", processed
    assert (processed["dataset"], processed["errors"]) == ("clinic", [])
    data_key = derived_key(DATA_PREFIX, KEY)
    assert _read_json(stack, env.processed_bucket, data_key) == IKERIAN_EXPECTED
    replaced = processed["replaces"]
    assert replaced["status"] == "rejected"
    assert replaced["cause"] == "reprocess"
    assert replaced["error_codes"] == ["unknown_dataset"]
    assert replaced["version_id"] == old_version

    audit = stack.sluice("audit", "--wait", "120")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # One current receipt, and its history: the rejected version, recorded and kept.
    s3 = stack.client("s3")
    assert [o.key for o in list_objects(s3, env.processed_bucket, "receipts/clinic/")] == [
        receipt_key(KEY)
    ]
    assert [entry["status"] for entry in history(s3, env.processed_bucket, KEY)] == [
        "processed",
        "rejected",
    ]
    record = _read_json(stack, env.processed_bucket, replaced["record"])
    assert (record["status"], record["receipt"]) == ("superseded", replaced)
    archived = s3.get_object(
        Bucket=env.archive_bucket, Key=superseded_archive_key(KEY, old_version)
    )["Body"].read()
    assert archived == IKERIAN_SAMPLE.read_bytes()
