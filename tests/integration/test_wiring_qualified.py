"""Discovery when a mapping invokes a published version (SnapStart environments).

With ``snap_start`` the event source mapping invokes the ``live`` alias, so its
``FunctionArn`` is qualified: AWS reports the alias ARN, moto the version ARN it resolved
the alias to. The runner must still find the function, its configuration (that of the
version the mapping invokes) and its queue, whatever the qualifier.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from sluice.local.lambdas.wiring import discover

REGION = "us-east-1"
NAME = "sluice-test-transform"


def _code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("standin.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


@pytest.fixture
def lambda_and_sqs(aws: None) -> tuple[Any, Any, str]:
    iam = boto3.client("iam", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    lambda_ = boto3.client("lambda", region_name=REGION)
    role_arn = iam.create_role(
        RoleName="standin",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    queue_url = sqs.create_queue(QueueName=NAME)["QueueUrl"]
    lambda_.create_function(
        FunctionName=NAME,
        Runtime="python3.12",
        Role=role_arn,
        Handler="standin.handler",
        Code={"ZipFile": _code_zip()},
        Timeout=30,
        Environment={"Variables": {"SLUICE_ENV": "test"}},
        Publish=True,
    )
    lambda_.create_alias(FunctionName=NAME, Name="live", FunctionVersion="1")
    alias_arn = lambda_.get_alias(FunctionName=NAME, Name="live")["AliasArn"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    lambda_.create_event_source_mapping(
        FunctionName=alias_arn, EventSourceArn=queue_arn, BatchSize=5, Enabled=False
    )
    return lambda_, sqs, queue_url


class AliasReportingLambda:
    """moto's Lambda, but listing mappings with the alias ARN, as AWS reports them."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_paginator(self, operation: str) -> Any:
        client = self._client
        alias_arn = client.get_alias(FunctionName=NAME, Name="live")["AliasArn"]

        class Pages:
            def paginate(self) -> Iterator[dict[str, Any]]:
                for page in client.get_paginator(operation).paginate():
                    mappings = [
                        {**m, "FunctionArn": alias_arn} for m in page["EventSourceMappings"]
                    ]
                    yield {**page, "EventSourceMappings": mappings}

        return Pages()


@pytest.mark.parametrize("reported_as", ["version ARN (moto)", "alias ARN (AWS)"])
def test_a_mapping_on_an_alias_is_discovered_with_the_function_configuration(
    lambda_and_sqs: tuple[Any, Any, str], reported_as: str
) -> None:
    lambda_, sqs, queue_url = lambda_and_sqs
    if reported_as.startswith("alias"):
        lambda_ = AliasReportingLambda(lambda_)

    for wirings in (
        discover(lambda_, sqs, environment="test"),
        discover(lambda_, sqs, function_name=NAME),
    ):
        (wiring,) = wirings
        assert wiring.name == NAME  # unqualified: log group and context name
        assert wiring.arn.startswith(f"arn:aws:lambda:{REGION}:123456789012:function:{NAME}:")
        assert wiring.handler == "standin.handler"
        assert wiring.environment == {"SLUICE_ENV": "test"}
        assert wiring.log_group == f"/aws/lambda/{NAME}"
        assert wiring.region == REGION
        (source,) = wiring.sources
        assert source.queue_url == queue_url
        assert source.batch_size == 5
