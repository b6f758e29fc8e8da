"""The runner as a process: a moto server, its workers, a crash, and a graceful stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from sluice.local import awsenv
from tests.integration.test_runner_worker import HANDLER, _code_zip

FUNCTION = "sluice-test-standin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield awsenv.endpoint_for(port)
    finally:
        server.stop()


def _deploy(endpoint: str) -> str:
    """A stand-in function with a disabled mapping from its queue; the queue URL."""
    sqs = awsenv.client("sqs", endpoint)
    role = awsenv.client("iam", endpoint).create_role(
        RoleName="standin", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    # A worker killed mid-receive leaves its long poll running in the server, which may
    # take the next message; a short visibility timeout brings such a message back soon.
    queue_url: str = sqs.create_queue(QueueName=FUNCTION, Attributes={"VisibilityTimeout": "3"})[
        "QueueUrl"
    ]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    lambda_ = awsenv.client("lambda", endpoint)
    lambda_.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=role,
        Handler=HANDLER,
        Code={"ZipFile": _code_zip()},
        Environment={"Variables": {"SLUICE_ENV": "test"}},
    )
    lambda_.create_event_source_mapping(
        FunctionName=FUNCTION,
        EventSourceArn=queue_arn,
        Enabled=False,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    return queue_url


def _wait_for(check: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _remaining(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _worker_pids(log: Path) -> list[int]:
    text = log.read_text() if log.exists() else ""
    return [int(pid) for pid in re.findall(rf"worker {FUNCTION} started \(pid (\d+)", text)]


def test_runner_serves_restarts_a_crashed_worker_and_stops_gracefully(
    endpoint: str, tmp_path: Path
) -> None:
    queue_url = _deploy(endpoint)
    sqs = awsenv.client("sqs", endpoint)
    out = tmp_path / "runner.log"
    env = awsenv.local_env(endpoint)
    # The stand-in handler is importable from the checkout, as the tests package.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    with out.open("wb") as log:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sluice.local.runner",
                "--endpoint-url",
                endpoint,
                "--environment",
                "test",
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        (first_pid,) = _wait_for(lambda: _worker_pids(out), "the worker to start")
        assert f"{FUNCTION}: {HANDLER}" in out.read_text()  # the wiring it discovered

        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "ok"}))
        _wait_for(lambda: _remaining(sqs, queue_url) == 0, "the message to be processed")

        os.kill(first_pid, signal.SIGKILL)
        pids = _wait_for(lambda: (p := _worker_pids(out)) and len(p) == 2 and p, "a restart")
        assert pids[1] != first_pid

        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "ok"}))
        _wait_for(lambda: _remaining(sqs, queue_url) == 0, "the restarted worker to process")

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        assert "runner: stopped" in out.read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(pids[1], 0)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()

    worker_log = (tmp_path / "logs" / f"{FUNCTION}.log").read_text()
    assert worker_log.count("standin sluice-test-standin got ") == 2
    logs = awsenv.client("logs", endpoint)
    streams = logs.describe_log_streams(logGroupName=f"/aws/lambda/{FUNCTION}")["logStreams"]
    assert len(streams) == 2  # one per execution environment, as in Lambda
