"""The local runner's worker against moto: wiring discovery, settlement, redrive, logs.

A stand-in function (``standin_handler`` below) is created in moto with a disabled SQS
event source mapping, the way the local Terraform creates the real ones; its message
bodies say how it should behave.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from sluice.local.lambdas.wiring import FunctionWiring, discover
from sluice.local.lambdas.worker import FunctionWorker

REGION = "us-east-1"
HANDLER = f"{__name__}.standin_handler"


def standin_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Behaves as each message body asks: ``ok``, ``fail`` (reported), ``raise``, ``hang``,
    ``allocate`` (holds ``mb`` MiB of touched memory while the invocation lasts), ``greet``
    (prints its ``GREETING`` variable: which configuration it runs with)."""
    failures = []
    held = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        # A schedule rule's event (the runner's stand-in for EventBridge) is "ok" too.
        outcome = body.get("outcome") or body["detail-type"]
        print(f"standin {context.function_name} got {record['messageId']}: {outcome}")
        if outcome == "allocate":
            held.append(b"\x01" * (int(body["mb"]) << 20))  # every page written: resident
        if outcome == "greet":
            print(f"greeting {os.environ.get('GREETING')}")
        if outcome == "raise":
            raise RuntimeError("stand-in function failed")
        if outcome == "hang":
            while context.get_remaining_time_in_millis() >= 0:
                time.sleep(0.05)
        if outcome == "fail":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def _code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("standin.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


@dataclass
class Deployed:
    function_name: str
    queue_url: str
    dlq_url: str
    sqs: Any
    lambda_: Any
    logs: Any

    def send(self, *outcomes: str) -> list[str]:
        return [
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps({"outcome": o}))[
                "MessageId"
            ]
            for o in outcomes
        ]

    def counts(self, url: str) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def wiring(self) -> FunctionWiring:
        (wiring,) = discover(self.lambda_, self.sqs, function_name=self.function_name)
        return wiring

    def worker(self, **kwargs: Any) -> FunctionWorker:
        kwargs.setdefault("poll_wait_seconds", 1)
        return FunctionWorker(self.wiring(), self.sqs, self.logs, **kwargs)


Deploy = Callable[..., Deployed]


@pytest.fixture
def deploy(aws: None) -> Deploy:
    sqs = boto3.client("sqs", region_name=REGION)
    lambda_ = boto3.client("lambda", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
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

    def _deploy(
        name: str = "sluice-test-standin",
        *,
        handler: str = HANDLER,
        environment: str = "test",
        timeout: int = 30,
        visibility_timeout: int = 30,
        max_receive_count: int = 3,
        enabled: bool = False,
        batch_size: int = 10,
        report_batch_item_failures: bool = True,
    ) -> Deployed:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
                ),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        lambda_.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role_arn,
            Handler=handler,
            Code={"ZipFile": _code_zip()},
            Timeout=timeout,
            MemorySize=256,
            Environment={"Variables": {"SLUICE_ENV": environment, "GREETING": "hello"}},
        )
        lambda_.create_event_source_mapping(
            FunctionName=name,
            EventSourceArn=queue_arn,
            BatchSize=batch_size,
            Enabled=enabled,
            FunctionResponseTypes=["ReportBatchItemFailures"] if report_batch_item_failures else [],
        )
        return Deployed(name, queue_url, dlq_url, sqs, lambda_, logs)

    return _deploy


def test_discovery_reads_the_function_and_its_mapping(deploy: Deploy) -> None:
    deployed = deploy(batch_size=5)
    deploy("sluice-other-standin", environment="other")

    wirings = discover(deployed.lambda_, deployed.sqs, environment="test")

    assert [w.name for w in wirings] == ["sluice-test-standin"]
    (wiring,) = wirings
    assert wiring.handler == HANDLER
    assert wiring.environment == {"SLUICE_ENV": "test", "GREETING": "hello"}
    assert (wiring.timeout_seconds, wiring.memory_mb) == (30, 256)
    assert wiring.log_group == "/aws/lambda/sluice-test-standin"
    (source,) = wiring.sources
    assert source.queue_url == deployed.queue_url
    assert source.batch_size == 5
    assert source.report_batch_item_failures
    assert source.state == "Disabled"
    assert not source.emulator_polls


def test_enabled_mappings_are_left_to_the_emulator(deploy: Deploy) -> None:
    deployed = deploy(enabled=True)
    worker = deployed.worker()
    assert deployed.wiring().sources[0].emulator_polls
    assert worker.sources == ()


def test_a_reported_failure_is_the_only_message_left(deploy: Deploy) -> None:
    deployed = deploy()
    ok_1, failed, ok_2 = deployed.send("ok", "fail", "ok")

    with deployed.worker().open() as worker:
        settlement = worker.invoke(deployed.wiring().sources[0], _receive_all(deployed, 3))

    assert set(settlement.delete) == {ok_1, ok_2}
    assert settlement.retry == (failed,)
    assert deployed.counts(deployed.queue_url) == (0, 1)


def test_an_exception_leaves_the_whole_batch(deploy: Deploy) -> None:
    deployed = deploy()
    deployed.send("ok", "raise", "ok")

    with deployed.worker().open() as worker:
        settlement = worker.invoke(deployed.wiring().sources[0], _receive_all(deployed, 3))

    assert settlement.delete == ()
    assert deployed.counts(deployed.queue_url) == (0, 3)


def test_without_partial_responses_a_returned_failure_list_is_ignored(deploy: Deploy) -> None:
    deployed = deploy(report_batch_item_failures=False)
    deployed.send("ok", "fail")

    with deployed.worker().open() as worker:
        worker.invoke(deployed.wiring().sources[0], _receive_all(deployed, 2))

    assert deployed.counts(deployed.queue_url) == (0, 0)


def test_a_timed_out_invocation_leaves_its_messages(deploy: Deploy) -> None:
    deployed = deploy(timeout=1)
    deployed.send("hang")

    with deployed.worker().open() as worker:
        settlement = worker.invoke(deployed.wiring().sources[0], _receive_all(deployed, 1))

    assert settlement.reason == "timed out"
    assert deployed.counts(deployed.queue_url) == (0, 1)
    assert any("Task timed out after 1.00 seconds" in line for line in _log_lines(deployed))


def test_exhausted_messages_move_to_the_dead_letter_queue(deploy: Deploy) -> None:
    deployed = deploy(visibility_timeout=1, max_receive_count=2)
    (message_id,) = deployed.send("raise")

    with deployed.worker().open() as worker:
        deadline = time.monotonic() + 30
        while deployed.counts(deployed.dlq_url)[0] == 0 and time.monotonic() < deadline:
            worker.poll_once()

    dead = deployed.sqs.receive_message(QueueUrl=deployed.dlq_url, AttributeNames=["All"])
    assert [m["MessageId"] for m in dead["Messages"]] == [message_id]
    assert worker.stats.invocations == 2  # maxReceiveCount deliveries, then the DLQ
    assert deployed.counts(deployed.queue_url) == (0, 0)


def test_serving_processes_messages_and_logs_to_the_function_log_group(deploy: Deploy) -> None:
    deployed = deploy()
    deployed.send("ok", "ok")

    with deployed.worker().open() as worker:
        deadline = time.monotonic() + 30
        while worker.stats.messages_deleted < 2 and time.monotonic() < deadline:
            worker.poll_once()
        stream = worker.log_stream_name

    assert worker.stats.messages_deleted == 2
    assert deployed.counts(deployed.queue_url) == (0, 0)
    streams = deployed.logs.describe_log_streams(logGroupName="/aws/lambda/sluice-test-standin")
    assert [s["logStreamName"] for s in streams["logStreams"]] == [stream]
    lines = _log_lines(deployed)
    starts = [line for line in lines if line.startswith("START RequestId: ")]
    assert starts
    request_id = starts[0].split()[2]
    assert f"END RequestId: {request_id}" in lines
    report = next(line for line in lines if line.startswith(f"REPORT RequestId: {request_id}"))
    assert "Init Duration" in report
    assert any(line.startswith("standin sluice-test-standin got ") for line in lines)


def test_a_handler_that_cannot_be_imported_fails_its_invocations(deploy: Deploy) -> None:
    deployed = deploy(handler="sluice_no_such_module.handler")
    deployed.send("ok")

    with deployed.worker().open() as worker:
        settlement = worker.invoke(deployed.wiring().sources[0], _receive_all(deployed, 1))

    assert settlement.delete == ()
    assert deployed.counts(deployed.queue_url) == (0, 1)
    assert any("cannot import sluice_no_such_module" in line for line in _log_lines(deployed))


def _receive_all(deployed: Deployed, count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < count and time.monotonic() < deadline:
        response = deployed.sqs.receive_message(
            QueueUrl=deployed.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages.extend(response.get("Messages", []))
    assert len(messages) == count
    return messages


def _log_lines(deployed: Deployed) -> list[str]:
    events = deployed.logs.filter_log_events(logGroupName=f"/aws/lambda/{deployed.function_name}")
    return [event["message"] for event in events["events"]]


def test_after_a_configuration_change_no_batch_runs_with_the_old_one(deploy: Deploy) -> None:
    """As after `terraform apply` changes a variable: the worker that started with the old
    configuration hands its next batch back unprocessed and stops; a new worker (the
    supervisor's restart) starts with the new variables and processes it."""
    deployed = deploy()
    with deployed.worker(lambda_client=deployed.lambda_).open() as worker:
        deployed.send("ok")
        assert worker.poll_once() == 1  # unchanged configuration: served
        deployed.lambda_.update_function_configuration(
            FunctionName=deployed.function_name,
            Environment={"Variables": {"SLUICE_ENV": "test", "GREETING": "bonjour"}},
        )
        deployed.send("ok")

        assert worker.poll_once() == 0
        assert worker.stale
        assert worker.stats.invocations == 1
        assert deployed.counts(deployed.queue_url) == (1, 0)  # visible again at once
        worker.serve(lambda: False)  # returns at once: a stale worker serves nothing

    replacement = deployed.worker(lambda_client=deployed.lambda_)
    assert replacement.wiring.environment["GREETING"] == "bonjour"
    with replacement.open() as fresh:
        assert fresh.poll_once() == 1
        assert not fresh.stale
    assert deployed.counts(deployed.queue_url) == (0, 0)
