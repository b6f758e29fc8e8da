"""The runner as a process: a moto server, its workers, a crash, a graceful stop, a killed
supervisor, ``sluice down`` after one, and a function that runs out of memory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from moto.server import ThreadedMotoServer

from sluice.local import awsenv, procs
from sluice.local.lambdas.supervisor import WorkerRecord, read_records
from sluice.local.stack.state import StateDir
from sluice.local.stack.updown import StoppedRunner, stop_runner
from tests.integration.test_runner_worker import HANDLER, _code_zip
from tests.polling import wait_for

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
    endpoint = awsenv.endpoint_for(port)
    # The server's backends are this process's moto state: a test starts from none.
    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    try:
        yield endpoint
    finally:
        server.stop()


def _deploy(endpoint: str, *, timeout: int = 3, memory_mb: int = 128) -> str:
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
        Timeout=timeout,
        MemorySize=memory_mb,
        Environment={"Variables": {"SLUICE_ENV": "test", "GREETING": "hello"}},
    )
    lambda_.create_event_source_mapping(
        FunctionName=FUNCTION,
        EventSourceArn=queue_arn,
        Enabled=False,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    return queue_url


def _remaining(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _worker_pids(log: Path) -> list[int]:
    """Every worker the runner started, in order, from its log: the history of restarts."""
    text = log.read_text() if log.exists() else ""
    return [int(pid) for pid in re.findall(rf"worker {FUNCTION} started \(pid (\d+)", text)]


def _ready(workers: Path) -> WorkerRecord | None:
    """The worker the supervisor reports as serving now, if any."""
    records = read_records(workers)
    assert [r.function for r in records] in ([], [FUNCTION])
    return records[0] if records else None


def _runner_argv(endpoint: str, tmp_path: Path, workers: Path | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sluice.local.lambdas.runner",
        "--endpoint-url",
        endpoint,
        "--environment",
        "test",
        "--log-dir",
        str(tmp_path / "logs"),
        "--worker-dir",
        str(workers or tmp_path / "workers"),
    ]


def _runner_env(endpoint: str) -> dict[str, str]:
    env = awsenv.local_env(endpoint)
    # The stand-in handler is importable from the checkout, as the tests package.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    return env


def _worker_log(tmp_path: Path) -> str:
    path = tmp_path / "logs" / f"{FUNCTION}.log"
    return path.read_text() if path.exists() else ""


def test_runner_serves_restarts_a_crashed_worker_and_stops_gracefully(
    endpoint: str, tmp_path: Path
) -> None:
    queue_url = _deploy(endpoint)
    sqs = awsenv.client("sqs", endpoint)
    out = tmp_path / "runner.log"
    with out.open("wb") as log:
        runner = subprocess.Popen(
            _runner_argv(endpoint, tmp_path),
            env=_runner_env(endpoint),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        first = wait_for(lambda: _ready(tmp_path / "workers"), "the worker to be ready")
        assert first.supervisor == runner.pid
        assert f"{FUNCTION}: {HANDLER}" in out.read_text()  # the wiring it discovered

        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "ok"}))
        wait_for(lambda: _remaining(sqs, queue_url) == 0, "the message to be processed")

        os.kill(first.pid, signal.SIGKILL)
        second = wait_for(
            lambda: (r := _ready(tmp_path / "workers")) and r.pid != first.pid and r, "a restart"
        )
        assert _worker_pids(out) == [first.pid, second.pid]

        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "ok"}))
        wait_for(lambda: _remaining(sqs, queue_url) == 0, "the restarted worker to process")

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        assert "runner: stopped" in out.read_text()
        assert _ready(tmp_path / "workers") is None
        with pytest.raises(ProcessLookupError):
            os.kill(second.pid, 0)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()

    worker_log = (tmp_path / "logs" / f"{FUNCTION}.log").read_text()
    assert worker_log.count("standin sluice-test-standin got ") == 2
    logs = awsenv.client("logs", endpoint)
    streams = logs.describe_log_streams(logGroupName=f"/aws/lambda/{FUNCTION}")["logStreams"]
    assert len(streams) == 2  # one per execution environment, as in Lambda


def test_a_configuration_change_reaches_the_next_invocation_through_a_new_worker(
    endpoint: str, tmp_path: Path
) -> None:
    """As Lambda after `terraform apply`: once the function's variables are updated, the next
    message runs with them, in a new execution environment (a cold start, a new stream)."""
    queue_url = _deploy(endpoint)
    sqs, lambda_ = awsenv.client("sqs", endpoint), awsenv.client("lambda", endpoint)
    out = tmp_path / "runner.log"
    with out.open("wb") as log:
        runner = subprocess.Popen(
            _runner_argv(endpoint, tmp_path),
            env=_runner_env(endpoint),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        first = wait_for(lambda: _ready(tmp_path / "workers"), "the worker to be ready")
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "greet"}))
        wait_for(lambda: "greeting hello" in _worker_log(tmp_path), "the first greeting")

        lambda_.update_function_configuration(
            FunctionName=FUNCTION,
            Environment={"Variables": {"SLUICE_ENV": "test", "GREETING": "bonjour"}},
        )
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "greet"}))
        wait_for(lambda: "greeting bonjour" in _worker_log(tmp_path), "the new greeting")
        wait_for(lambda: _remaining(sqs, queue_url) == 0, "the message to be deleted")
        wait_for(
            lambda: (r := _ready(tmp_path / "workers")) and r.pid != first.pid,
            "the new worker's record",
        )
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=60)

    assert _worker_log(tmp_path).count("greeting ") == 2  # nothing ran twice or with "hello"
    assert "configuration changed; starting a new one" in out.read_text()
    assert len(_worker_pids(out)) == 2


def test_the_runner_fires_a_schedule_rule_at_its_queue_unless_told_not_to(
    endpoint: str, tmp_path: Path
) -> None:
    queue_url = _deploy(endpoint)
    sqs = awsenv.client("sqs", endpoint)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events = awsenv.client("events", endpoint)
    events.put_rule(Name=f"{FUNCTION}-sweep", ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=f"{FUNCTION}-sweep", Targets=[{"Id": "queue", "Arn": queue_arn}])
    described = f"schedule {FUNCTION}-sweep: rate(1 minute) -> {queue_url}"

    for argv, fires in (
        (["--no-schedules"], False),  # LocalStack fires its rules itself
        (["--schedule-every", "0.5"], True),  # the rule's minute, made short
    ):
        out = tmp_path / f"runner-{fires}.log"
        with out.open("wb") as log:
            runner = subprocess.Popen(
                _runner_argv(endpoint, tmp_path) + argv,
                env=_runner_env(endpoint),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(lambda: _ready(tmp_path / "workers"), "the worker to be ready")
            # The rules are read before any worker starts.
            assert (described in out.read_text()) is fires
            if fires:
                wait_for(
                    lambda: _worker_log(tmp_path).count(": Scheduled Event") >= 2,
                    "two scheduled events to reach the function",
                )
                assert f"runner: schedule {FUNCTION}-sweep fired" in out.read_text()
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(timeout=60) == 0
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()


def test_workers_die_with_a_killed_supervisor(endpoint: str, tmp_path: Path) -> None:
    queue_url = _deploy(endpoint)
    sqs = awsenv.client("sqs", endpoint)
    out = tmp_path / "runner.log"
    with out.open("wb") as log:
        runner = subprocess.Popen(
            _runner_argv(endpoint, tmp_path),
            env=_runner_env(endpoint),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = 0
    try:
        worker = wait_for(lambda: _ready(tmp_path / "workers"), "the worker to be ready").pid
        # Serving: past its cold start, so the kill finds it polling, not starting.
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "ok"}))
        wait_for(lambda: _remaining(sqs, queue_url) == 0, "the message to be processed")

        runner.kill()
        runner.wait()
        wait_for(lambda: not procs.is_running(worker), "the worker to exit", seconds=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if worker and procs.is_running(worker):
            os.kill(worker, signal.SIGKILL)


def test_down_stops_a_worker_that_outlived_its_killed_supervisor(
    endpoint: str, tmp_path: Path
) -> None:
    # A long timeout: the orphaned worker finishes its batch before it stops, so it
    # is still running (hanging) when `down` comes; only its recorded pid reaches it.
    queue_url = _deploy(endpoint, timeout=600)
    sqs = awsenv.client("sqs", endpoint)
    state = StateDir(tmp_path, tmp_path / "state")
    process = procs.spawn_detached(
        _runner_argv(endpoint, tmp_path, state.workers),
        log_path=state.runner_log,
        env=_runner_env(endpoint),
        cwd=tmp_path,
    )
    state.runner_pid.write(process.pid)
    worker = 0
    try:
        record = wait_for(lambda: _ready(state.workers), "the worker to be ready")
        assert record.supervisor == process.pid
        worker = record.pid
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "hang"}))
        wait_for(lambda: ": hang" in _worker_log(tmp_path), "the worker to take the batch")

        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_for(lambda: "the supervisor is gone" in _worker_log(tmp_path), "the orphan's note")
        assert procs.is_running(worker), "still finishing its batch"

        stopped = stop_runner(state, grace_seconds=1)
        assert stopped == StoppedRunner(supervisor=None, workers=(worker,))
        assert not procs.is_running(worker)
        assert list(state.workers.iterdir()) == []
        assert stop_runner(state) == StoppedRunner(supervisor=None, workers=())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if worker and procs.is_running(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_function_over_its_memory_size_is_killed_and_its_batch_comes_back(
    endpoint: str, tmp_path: Path
) -> None:
    queue_url = _deploy(endpoint, timeout=30, memory_mb=128)
    sqs = awsenv.client("sqs", endpoint)
    out = tmp_path / "runner.log"
    with out.open("wb") as log:
        runner = subprocess.Popen(
            _runner_argv(endpoint, tmp_path),
            env=_runner_env(endpoint),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        first = wait_for(lambda: _ready(tmp_path / "workers"), "the worker to be ready").pid
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "ok"}))
        wait_for(lambda: _remaining(sqs, queue_url) == 0, "a batch within its memory")
        within = re.findall(r"Max Memory Used: (\d+) MB", _worker_log(tmp_path))
        assert within and 0 < int(within[-1]) <= 128

        message_id = sqs.send_message(
            QueueUrl=queue_url, MessageBody=json.dumps({"outcome": "allocate", "mb": 256})
        )["MessageId"]
        killed = "Error: Runtime exited with error: signal: killed"
        # Killed, replaced, and killed again by the same message: it was not deleted and
        # came back after the visibility timeout (3 s) to the replacement worker.
        wait_for(lambda: _worker_log(tmp_path).count(killed) >= 2, "two kills", seconds=90)
        pids = _worker_pids(out)
        assert len(pids) >= 2 and pids[0] == first and len(set(pids)) == len(pids)
        assert re.search(rf"worker {FUNCTION} exited with -9", out.read_text())
        log = _worker_log(tmp_path)
        assert log.count(f"got {message_id}: allocate") >= 2
        assert "Runtime.ExitError" in log
        used = [int(mb) for mb in re.findall(r"Max Memory Used: (\d+) MB", log)]
        assert max(used) > 128
        assert _remaining(sqs, queue_url) == 1, "the message is still in its queue"
        events = awsenv.client("logs", endpoint).filter_log_events(
            logGroupName=f"/aws/lambda/{FUNCTION}"
        )["events"]
        assert any(killed in event["message"] for event in events)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
