"""The supervisor reports its workers in a directory: a record once a worker is ready.

``sluice up`` waits for these records and ``sluice down`` stops leftover workers by them,
instead of reading the runner's log. The workers here are stand-ins (the supervisor's
``python`` is a script), so no emulator is needed: each waits for a gate file before it
says it is ready, as a real worker says so only after its cold start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.local.lambdas.supervisor import (
    Supervisor,
    WorkerRecord,
    read_records,
    record_path,
    remove_record,
    write_record,
)
from sluice.local.lambdas.wiring import FunctionWiring
from sluice.local.lambdas.worker import StopFlag, worker_command
from sluice.local.procs import is_running
from tests.polling import wait_for

FUNCTION = "sluice-test-standin"

# A worker stand-in: waits for its gate, says it is ready on --ready-fd, then serves
# (sleeps) until SIGTERM. It runs as the supervisor's `python`, with a worker's arguments.
STAND_IN = """\
import os, pathlib, signal, sys, time
arguments = sys.argv[1:]
ready_fd = int(arguments[arguments.index("--ready-fd") + 1])
gate = pathlib.Path(os.environ["STAND_IN_GATE"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while not gate.exists():
    time.sleep(0.05)
if gate.read_text() == "crash":
    sys.exit(3)
os.write(ready_fd, b"ready\\n")
os.close(ready_fd)
while True:
    time.sleep(0.1)
"""


def _wiring(gate: Path) -> FunctionWiring:
    return FunctionWiring(
        name=FUNCTION,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}",
        handler="stand.in",
        environment={"STAND_IN_GATE": str(gate)},
        timeout_seconds=3,
        memory_mb=128,
        log_group=f"/aws/lambda/{FUNCTION}",
        region="us-east-1",
        sources=(),
    )


class Running:
    def __init__(self, tmp_path: Path) -> None:
        self.gate = tmp_path / "gate"
        self.workers = tmp_path / "workers"
        script = tmp_path / "stand_in.py"
        script.write_text(f"#!{sys.executable}\n{STAND_IN}")
        script.chmod(0o755)
        self.out = tmp_path / "supervisor.log"
        self._out = self.out.open("w")
        self.supervisor = Supervisor(
            [_wiring(self.gate)],
            "http://127.0.0.1:1",
            tmp_path / "logs",
            python=str(script),
            out=self._out,
            worker_dir=self.workers,
        )
        self.stop = StopFlag()
        self._thread = threading.Thread(target=self.supervisor.run, args=(self.stop,))

    def __enter__(self) -> Running:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=60)
        self._out.close()

    def started(self) -> list[int]:
        """The pids the supervisor started, from its own log (its log is for people; the
        test reads it only to know a worker exists before it is ready)."""
        text = self.out.read_text()
        return [int(part.split(",")[0]) for part in text.split("started (pid ")[1:]]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    with Running(tmp_path) as running:
        yield running


def test_a_worker_is_reported_once_ready_and_no_longer_once_gone(running: Running) -> None:
    (pid,) = wait_for(running.started, "the worker to start")
    # The gate is closed, so no wait can make this fail; it gives a supervisor that wrongly
    # reports started workers a few rounds (0.5 s each) to show it.
    time.sleep(1.5)
    assert is_running(pid)
    assert read_records(running.workers) == [], "reported before it said it was ready"

    running.gate.write_text("go")
    (record,) = wait_for(lambda: read_records(running.workers), "the record")
    assert (record.function, record.pid, record.supervisor) == (FUNCTION, pid, os.getpid())
    assert record.log.endswith(f"logs/{FUNCTION}.log")
    assert record.running()

    os.kill(pid, signal.SIGKILL)
    # Gone, then replaced: the new worker passes the open gate and is reported in its turn.
    replaced = wait_for(
        lambda: [r for r in read_records(running.workers) if r.pid != pid], "the replacement"
    )
    assert replaced[0].running()
    assert not record.running()


def test_a_worker_that_exits_before_it_is_ready_is_never_reported(running: Running) -> None:
    running.gate.write_text("crash")
    wait_for(lambda: "exited with 3" in running.out.read_text(), "the crash")
    assert read_records(running.workers) == []


def test_the_supervisor_removes_its_records_when_it_stops(tmp_path: Path) -> None:
    with Running(tmp_path) as running:
        running.gate.write_text("go")
        (record,) = wait_for(lambda: read_records(running.workers), "the record")
    assert "runner: stopped" in running.out.read_text()
    assert not is_running(record.pid)
    assert list(running.workers.iterdir()) == []


def _record(pid: int, function: str = FUNCTION) -> WorkerRecord:
    return WorkerRecord(function=function, pid=pid, supervisor=1, log="x.log", ready_at="t")


def test_records_round_trip_and_what_is_not_a_record_is_skipped(tmp_path: Path) -> None:
    write_record(tmp_path, _record(41, "a"))
    write_record(tmp_path, _record(42, "b"))
    write_record(tmp_path, _record(43, "b"))  # a new worker of b replaces the record
    (tmp_path / "c.json").write_text('{"function": "c"')  # not JSON
    (tmp_path / "d.json").write_text('{"function": "d"}')  # not a record
    (tmp_path / ".e.123.tmp").write_text("{}")  # a write in progress
    assert read_records(tmp_path) == [_record(41, "a"), _record(43, "b")]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == [".e.123.tmp"]
    remove_record(tmp_path, "a")
    remove_record(tmp_path, "a")  # gone already: no error
    assert not record_path(tmp_path, "a").exists()
    assert read_records(tmp_path / "missing") == []


def test_a_record_runs_only_while_its_pid_is_that_workers_process(tmp_path: Path) -> None:
    # A process whose command line is a worker's (the arguments after -c are its argv).
    argv = worker_command("http://127.0.0.1:1", FUNCTION, os.getpid())
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *argv[1:]],
    )
    try:
        # Until its exec, the child's command line is still this process's.
        wait_for(_record(stand_in.pid).running, "the stand-in's command line")
        assert not _record(stand_in.pid, f"{FUNCTION}-other").running()
        assert not _record(os.getpid()).running(), "a reused pid is another process"
    finally:
        stand_in.kill()
        stand_in.wait()
    assert not _record(stand_in.pid).running()
