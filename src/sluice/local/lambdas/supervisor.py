"""The runner's supervisor: one worker process per function, restarted when it exits.

It reads the wiring of every function with an SQS event source from the emulator, starts
a worker (:mod:`sluice.local.lambdas.worker`) for each one it serves, restarts a worker
that exits (crash, out of memory) with a growing back-off, and starts a new one at once
when a worker exits because its function's configuration changed. Workers die with
their supervisor (:func:`sluice.local.lambdas.sandbox.die_with_parent`).

With ``--worker-dir`` it reports its workers there, one :class:`WorkerRecord` a function,
so that whoever started it (``sluice up``) knows when every function is served, and
``sluice down`` can stop a worker that is still finishing its batch after its supervisor
was killed. The records are files rather than lines of the runner's log: a log is for
people, and its wording may change; a record has a format, and is written atomically.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError

from sluice.local import awsenv, procs
from sluice.local.lambdas.schedules import Scheduler, discover_schedules
from sluice.local.lambdas.wiring import FunctionWiring, discover
from sluice.local.lambdas.worker import (
    EXIT_CONFIGURATION_CHANGED,
    StopFlag,
    function_process_env,
    utc_stamp,
    worker_command,
    worker_marker,
)
from sluice.workdir import replace_text

RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class WorkerRecord:
    """The supervisor's word that a worker serves its function: ``<dir>/<function>.json``.

    Written once the worker has finished its cold start and is about to poll (it says so
    through a pipe, :func:`sluice.local.lambdas.worker.tell_ready`); replaced when a new
    worker takes over; removed when the worker exits and when the supervisor stops.
    """

    function: str
    pid: int
    supervisor: int
    """The pid of the supervisor that started it."""
    log: str
    ready_at: str
    """UTC, ISO 8601, milliseconds."""

    def running(self) -> bool:
        """Its worker is alive and its command line still names it (a pid can be reused)."""
        command = procs.command_line(self.pid)
        return (
            command is not None
            and worker_marker(self.function) in command
            and procs.is_running(self.pid)
        )


def record_path(directory: Path, function: str) -> Path:
    return directory / f"{function}{RECORD_SUFFIX}"


def write_record(directory: Path, record: WorkerRecord) -> None:
    """Replace ``record``'s file in one step: a reader sees the old file or the new one."""
    replace_text(record_path(directory, record.function), json.dumps(asdict(record), indent=2))


def read_records(directory: Path) -> list[WorkerRecord]:
    """The records in ``directory``, by function; a file that is not one is skipped."""
    records = []
    for path in sorted(directory.glob(f"*{RECORD_SUFFIX}")):
        try:
            records.append(WorkerRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return records


def remove_record(directory: Path, function: str) -> None:
    record_path(directory, function).unlink(missing_ok=True)


@dataclass
class _Child:
    wiring: FunctionWiring
    process: subprocess.Popen[bytes] | None = None
    ready_pipe: int | None = None
    """The read end of the pipe the worker says it is ready on, until it has."""
    started_at: float = 0.0
    restart_at: float = 0.0
    backoff: float = 1.0


class Supervisor:
    """Starts one worker process per function and restarts the ones that crash."""

    def __init__(
        self,
        wirings: Sequence[FunctionWiring],
        endpoint_url: str,
        log_dir: Path,
        *,
        python: str = sys.executable,
        out: TextIO = sys.stdout,
        worker_dir: Path | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._children = [_Child(wiring) for wiring in wirings]
        self._scheduler = scheduler
        self._endpoint_url = endpoint_url
        self._log_dir = log_dir
        self._python = python
        self._out = out
        self._worker_dir = worker_dir

    def _log_path(self, child: _Child) -> Path:
        return self._log_dir / f"{child.wiring.name}.log"

    def _say(self, message: str) -> None:
        print(f"{utc_stamp()} runner: {message}", file=self._out, flush=True)

    def _start(self, child: _Child) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_path(child)
        read_end, write_end = os.pipe()
        try:
            with log_path.open("ab") as log:
                child.process = subprocess.Popen(
                    worker_command(
                        self._endpoint_url,
                        child.wiring.name,
                        os.getpid(),
                        child.wiring.configuration,
                        python=self._python,
                        ready_fd=write_end,
                    ),
                    env=function_process_env(child.wiring, self._endpoint_url),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_end,),
                )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            # Only the worker holds the write end: its exit ends the pipe.
            os.close(write_end)
        os.set_blocking(read_end, False)
        child.ready_pipe = read_end
        child.started_at = time.monotonic()
        self._say(f"worker {child.wiring.name} started (pid {child.process.pid}, log {log_path})")

    def _check_ready(self, child: _Child) -> None:
        """Record the worker once it has said it is ready (see :class:`WorkerRecord`)."""
        if child.ready_pipe is None or child.process is None:
            return
        try:
            said = os.read(child.ready_pipe, 64)
        except BlockingIOError:
            return  # not yet
        self._close_pipe(child)
        if said and self._worker_dir is not None:  # b"": it exited before its cold start
            record = WorkerRecord(
                function=child.wiring.name,
                pid=child.process.pid,
                supervisor=os.getpid(),
                log=str(self._log_path(child)),
                ready_at=utc_stamp(),
            )
            write_record(self._worker_dir, record)

    def _close_pipe(self, child: _Child) -> None:
        if child.ready_pipe is not None:
            os.close(child.ready_pipe)
            child.ready_pipe = None

    def _forget(self, child: _Child) -> None:
        """The worker has exited: it is no longer reported."""
        child.process = None
        self._close_pipe(child)
        if self._worker_dir is not None:
            remove_record(self._worker_dir, child.wiring.name)

    def run(self, should_stop: StopFlag) -> None:
        for child in self._children:
            self._start(child)
        while not should_stop.wait(0.5):
            now = time.monotonic()
            for child in self._children:
                if child.process is None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                code = child.process.poll()
                if code is None:
                    self._check_ready(child)
                    if now - child.started_at > 60:
                        child.backoff = 1.0
                    continue
                self._forget(child)
                if code == EXIT_CONFIGURATION_CHANGED:
                    self._reconfigure(child)
                    continue
                child.restart_at = now + child.backoff
                self._say(
                    f"worker {child.wiring.name} exited with {code}; restarting in"
                    f" {child.backoff:.0f}s (see {self._log_dir / (child.wiring.name + '.log')})"
                )
                child.backoff = min(child.backoff * 2, 30.0)
            self._fire_schedules()
        self.stop()

    def _fire_schedules(self) -> None:
        """EventBridge's part (:mod:`sluice.local.lambdas.schedules`): a send that fails
        (the emulator restarting) is said and tried again on the next round."""
        if self._scheduler is None:
            return
        try:
            fired = self._scheduler.fire_due()
        except (BotoCoreError, ClientError) as exc:
            self._say(f"schedule: sending an event failed, trying again: {exc}")
            return
        for name in fired:
            self._say(f"schedule {name} fired")

    def _reconfigure(self, child: _Child) -> None:
        """Read the function's configuration again; its new worker starts at once."""
        found = discover(
            awsenv.client("lambda", self._endpoint_url),
            awsenv.client("sqs", self._endpoint_url),
            function_name=child.wiring.name,
        )
        if found:
            child.wiring = found[0]
        child.restart_at = 0.0
        self._say(f"worker {child.wiring.name}: configuration changed; starting a new one")

    def stop(self, grace_seconds: float = 30.0) -> None:
        running = [c.process for c in self._children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in self._children:
            self._forget(child)
        self._say("stopped")


def serve_all(
    endpoint_url: str,
    environment: str | None,
    log_dir: Path,
    worker_dir: Path | None,
    *,
    schedules: bool = True,
    schedule_every: float | None = None,
) -> int:
    stop = StopFlag().install()
    wirings = discover(
        awsenv.client("lambda", endpoint_url),
        awsenv.client("sqs", endpoint_url),
        environment=environment,
    )
    served = []
    for wiring in wirings:
        print(wiring.describe(), flush=True)
        for source in wiring.sources:
            if source.emulator_polls:
                print(
                    f"  ! mapping {source.mapping_uuid} is {source.state}: the emulator polls it"
                    " itself, so the runner leaves it alone (create local mappings disabled)",
                    flush=True,
                )
            if source.has_filter_criteria:
                print(f"  ! mapping {source.mapping_uuid} has FilterCriteria: not applied locally")
        if any(not s.emulator_polls for s in wiring.sources):
            served.append(wiring)
    if not served:
        scope = f" of environment {environment!r}" if environment else ""
        print(
            f"no disabled SQS event source mapping{scope} found at {endpoint_url}:"
            " apply the Terraform with the local variables first",
            file=sys.stderr,
        )
        return 2
    scheduler = None
    if schedules:
        sqs = awsenv.client("sqs", endpoint_url)
        queue_arns = {
            source.queue_arn
            for wiring in served
            for source in wiring.sources
            if not source.emulator_polls
        }
        rules = discover_schedules(
            awsenv.client("events", endpoint_url), sqs, queue_arns, warn=_print
        )
        for rule in rules:
            print(rule.describe(), flush=True)
        scheduler = Scheduler(rules, sqs, every_seconds=schedule_every)
    Supervisor(served, endpoint_url, log_dir, worker_dir=worker_dir, scheduler=scheduler).run(stop)
    return 0


def _print(line: str) -> None:
    print(line, flush=True)
