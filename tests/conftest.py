"""Fixtures shared by every tier.

Unit tests need no network. Integration tests run against moto's in-process mock through
the ``aws`` fixture, with the same bucket and table shapes Terraform creates
(docs/contracts.md).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests import parallel

REGION = "us-east-1"
NOTIFY_TOPIC_PREFIX = "sluice-test-notify-"
"""Name prefix of the bundle handler's per-request topics in the tests' environment."""
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"

# The raw -> processed tutorial's own file (samples/ikerian_sample.json) and what PROCESSED
# data/<its key> must hold, compared as JSON: the contract the tests of every tier check.
IKERIAN_SAMPLE = SAMPLES_DIR / "ikerian_sample.json"
IKERIAN_EXPECTED = [
    {"patient_id": "A12345", "patient_name": "Ikerian A"},
    {"patient_id": "B67890", "patient_name": "Ikerian B"},
]


def pytest_configure(config: pytest.Config) -> None:
    # Registered here, not in pyproject.toml: scripts/bootstrap.sh reinstalls the
    # environment whenever pyproject.toml changes. Used by tests/e2e (tests/e2e/conftest.py
    # deselects these tests on LocalStack); registered for every tier, since any module
    # importing tests/terraform_support.py creates the mark.
    config.addinivalue_line(
        "markers",
        "not_on_localstack(reason): needs a service LocalStack's community edition lacks;"
        " deselected on SLUICE_E2E_TARGET=localstack, each listed with its reason in the"
        " run's summary",
    )
    config.addinivalue_line(
        "markers",
        f"{parallel.XDIST_GROUP}(name): tests that must run on one xdist worker, in order"
        " (tests/parallel.py)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The xdist groups and their order (tests/parallel.py); tryfirst: a worker's xdist
    plugin reads the groups in a hook of its own."""
    parallel.arrange(items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under xdist, the fast tiers yield the CPU to the end-to-end one (tests/parallel.py)."""
    parallel.yield_to_the_end_to_end_tier(item)


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a fixed region so nothing can reach a real account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture(autouse=True)
def _no_metrics_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handlers print an EMF metrics line per invocation; tests read stdout as log lines.
    Tests of the metrics themselves turn it back on (tests/unit/test_metrics.py)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")


@dataclass
class Pipeline:
    """Names of one environment's resources inside moto, and clients to reach them."""

    raw: str
    processed: str
    archive: str
    work: str
    images_table: str
    labels_table: str
    topic_arn: str
    s3: Any
    dynamodb: Any
    sns: Any
    sqs: Any

    def env(self) -> dict[str, str]:
        return {
            "SLUICE_ENV": "test",
            "RAW_BUCKET": self.raw,
            "PROCESSED_BUCKET": self.processed,
            "ARCHIVE_BUCKET": self.archive,
            "WORK_BUCKET": self.work,
            "IMAGES_TABLE": self.images_table,
            "LABELS_TABLE": self.labels_table,
            "BUNDLE_TOPIC_ARN": self.topic_arn,
            "NOTIFY_TOPIC_PREFIX": NOTIFY_TOPIC_PREFIX,
            "LABELER": "offline",
        }


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def pipeline(aws: None, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    names = {n: f"sluice-test-{n}" for n in ("raw", "processed", "archive", "work")}
    for bucket in names.values():
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(
        TableName="sluice-test-images",
        KeySchema=[{"AttributeName": "image_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "image_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName="sluice-test-labels",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    topic_arn = sns.create_topic(Name="sluice-test-bundles")["TopicArn"]
    result = Pipeline(
        raw=names["raw"],
        processed=names["processed"],
        archive=names["archive"],
        work=names["work"],
        images_table="sluice-test-images",
        labels_table="sluice-test-labels",
        topic_arn=topic_arn,
        s3=s3,
        dynamodb=dynamodb,
        sns=sns,
        sqs=sqs,
    )
    for name, value in result.env().items():
        monkeypatch.setenv(name, value)
    return result


def load_handler(name: str) -> ModuleType:
    """Import ``sluice.handlers.<name>`` afresh, as a cold start would, with the current env."""
    module_name = f"sluice.handlers.{name}"
    sys.modules.pop(module_name, None)
    return importlib.import_module(module_name)


class FakeContext:
    """The parts of the Lambda context object that Powertools reads."""

    function_name = "sluice-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sluice-test"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/sluice-test"
    log_stream_name = "2026/11/22/[$LATEST]test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()
