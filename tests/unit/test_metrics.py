"""Item metrics: what every invocation publishes, and that Terraform alarms on the same names.

A failed item in a partial batch response is invisible to Lambda's ``Errors`` metric, so
the runtime counts items itself and prints them in Embedded Metric Format (EMF); the
``failed_items`` alarms in ``modules/pipeline/main.tf`` read that metric. The names on both
sides must agree, which the last tests check by reading the Terraform source.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from sluice.events import S3ObjectRef
from sluice.metrics import (
    DATASET_DIMENSION,
    DEFAULT_NAMESPACE,
    FUNCTION_DIMENSION,
    ITEMS_FAILED,
    ITEMS_PROCESSED,
    ITEMS_REJECTED,
    NAMESPACE_ENV,
    REJECTED,
    Outcome,
)
from sluice.runtime import process_event
from tests.conftest import FakeContext
from tests.s3events import s3_event, s3_record, sqs_batch
from tests.terraform_support import REPO_ROOT

PIPELINE_TF = REPO_ROOT / "modules" / "pipeline" / "main.tf"


@pytest.fixture
def emf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics on (the suite turns them off), in a namespace of the test's own."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv(NAMESPACE_ENV, "sluice-test")


@pytest.fixture
def logger() -> Logger:
    return Logger(service="sluice-metrics-test")


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [line for line in lines if "_aws" in line]


def values(line: dict[str, Any]) -> dict[str, Any]:
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "sluice-test"
    assert all(metric["Unit"] == "Count" for metric in directive["Metrics"])
    dimensions = {name: line[name] for name in directive["Dimensions"][0]}
    # EMF allows a value or an array of values per metric; CloudWatch adds them up.
    counts = {m["Name"]: sum(_as_list(line[m["Name"]])) for m in directive["Metrics"]}
    return {"dimensions": dimensions, **counts}


def _as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


def by_key(outcomes: dict[str, Outcome | Exception | None]) -> Any:
    def process(ref: S3ObjectRef) -> Outcome | None:
        outcome = outcomes[ref.key]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return process


def put(key: str) -> dict[str, Any]:
    return s3_event(s3_record("work", key, etag="e1", size=10))


@pytest.mark.usefixtures("emf")
def test_a_partial_batch_publishes_processed_rejected_and_failed_items(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    process = by_key({"ok": None, "bad": REJECTED, "boom": RuntimeError("transient")})
    event = sqs_batch(put("ok"), put("bad"), put("boom"))

    response = process_event(event, FakeContext(), process, logger)

    assert len(response["batchItemFailures"]) == 1
    (line,) = emf_lines(capsys)
    assert values(line) == {
        "dimensions": {FUNCTION_DIMENSION: FakeContext.function_name},
        ITEMS_PROCESSED: 1.0,
        ITEMS_REJECTED: 1.0,
        ITEMS_FAILED: 1.0,
    }


@pytest.mark.usefixtures("emf")
def test_a_message_that_is_not_an_s3_event_counts_as_failed(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    process_event(sqs_batch("not json", put("ok")), FakeContext(), by_key({"ok": None}), logger)

    (line,) = emf_lines(capsys)
    assert values(line)[ITEMS_FAILED] == 1.0
    assert values(line)[ITEMS_PROCESSED] == 1.0


@pytest.mark.usefixtures("emf")
def test_a_direct_invocation_that_raises_still_publishes_its_failure(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError):
        process_event(put("boom"), FakeContext(), by_key({"boom": RuntimeError("x")}), logger)

    (line,) = emf_lines(capsys)
    assert values(line)[ITEMS_FAILED] == 1.0


@pytest.mark.usefixtures("emf")
def test_datasets_get_their_own_line_with_a_dataset_dimension(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    process = by_key(
        {
            "a": Outcome("processed", "retina"),
            "b": Outcome("rejected", "retina"),
            "c": Outcome("rejected", "retina"),
            "d": Outcome("rejected"),  # no dataset (e.g. an unsupported type)
        }
    )

    process_event(sqs_batch(put("a"), put("b"), put("c"), put("d")), FakeContext(), process, logger)

    function_line, dataset_line = (values(line) for line in emf_lines(capsys))
    assert function_line[ITEMS_PROCESSED] == 1.0 and function_line[ITEMS_REJECTED] == 3.0
    assert dataset_line == {
        "dimensions": {FUNCTION_DIMENSION: FakeContext.function_name, DATASET_DIMENSION: "retina"},
        ITEMS_PROCESSED: 1.0,
        ITEMS_REJECTED: 2.0,
    }


def test_nothing_is_printed_when_metrics_are_disabled(
    logger: Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    # The suite's default (tests/conftest.py): stdout holds log lines only.
    process_event(sqs_batch(put("ok")), FakeContext(), by_key({"ok": None}), logger)

    assert emf_lines(capsys) == []


# --- the same names in Terraform ------------------------------------------------------------


def _block(source: str, header: str) -> str:
    """The body of the first block whose first line is ``header`` (up to its closing brace
    at the same indentation)."""
    match = re.search(rf"^( *){re.escape(header)}\n(.*?)^\1\}}", source, re.M | re.S)
    assert match, f"no block {header!r} in {PIPELINE_TF}"
    return match.group(2)


def _attribute(body: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*=\s*(.+)$", body, re.M)
    assert match, f"no {name} in block"
    return match.group(1).strip()


def test_terraform_names_the_metric_namespace_and_dimension_the_handlers_use() -> None:
    source = PIPELINE_TF.read_text(encoding="utf-8")
    metrics = _block(source, "metrics = {")
    assert _attribute(metrics, "namespace") == f'"{DEFAULT_NAMESPACE}"'
    assert _attribute(metrics, "failed_items") == f'"{ITEMS_FAILED}"'
    assert _attribute(metrics, "function_dimension") == f'"{FUNCTION_DIMENSION}"'
    # The functions get the namespace from there, under the variable the handlers read.
    function = _block(source, 'module "function" {')
    assert _attribute(function, NAMESPACE_ENV) == "local.metrics.namespace"


def test_every_function_has_a_one_minute_alarm_on_failed_items_to_the_alerts_topic() -> None:
    alarm = _block(
        PIPELINE_TF.read_text(encoding="utf-8"),
        'resource "aws_cloudwatch_metric_alarm" "failed_items" {',
    )
    expected = {
        "for_each": "module.function",
        "namespace": "local.metrics.namespace",
        "metric_name": "local.metrics.failed_items",
        # The dimension value is the deployed function name, as the runtime publishes it.
        "dimensions": "{ (local.metrics.function_dimension) = each.value.function_name }",
        "statistic": '"Sum"',
        "period": "60",
        "evaluation_periods": "1",
        "threshold": "0",
        "comparison_operator": '"GreaterThanThreshold"',
        "alarm_actions": "[aws_sns_topic.alerts.arn]",
    }
    assert {name: _attribute(alarm, name) for name in expected} == expected
