"""The runner's supervisor: one worker process per function, restarted when it exits.

It reads the wiring of every function with an SQS event source from the emulator, starts
a worker (:mod:`sluice.local.lambdas.worker`) for each one it serves, restarts a worker
that exits (crash, out of memory) with a growing back-off, and starts a new one at once
when a worker exits because its function's configuration changed. Workers die with
their supervisor (:func:`sluice.local.lambdas.sandbox.die_with_parent`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sluice.local import awsenv
from sluice.local.lambdas.wiring import FunctionWiring, discover
from sluice.local.lambdas.worker import (
    EXIT_CONFIGURATION_CHANGED,
    StopFlag,
    function_process_env,
    utc_stamp,
    worker_command,
    worker_marker,
)
from sluice.local.procs import PidFile


@dataclass
class _Child:
    wiring: FunctionWiring
    process: subprocess.Popen[bytes] | None = None
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
        pid_dir: Path | None = None,
    ) -> None:
        self._children = [_Child(wiring) for wiring in wirings]
        self._endpoint_url = endpoint_url
        self._log_dir = log_dir
        self._python = python
        self._out = out
        self._pid_dir = pid_dir

    def _pid_file(self, child: _Child) -> PidFile | None:
        if self._pid_dir is None:
            return None
        return worker_pid_file(self._pid_dir, child.wiring.name)

    def _say(self, message: str) -> None:
        print(f"{utc_stamp()} runner: {message}", file=self._out, flush=True)

    def _start(self, child: _Child) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{child.wiring.name}.log"
        with log_path.open("ab") as log:
            child.process = subprocess.Popen(
                worker_command(
                    self._endpoint_url,
                    child.wiring.name,
                    os.getpid(),
                    child.wiring.configuration,
                    python=self._python,
                ),
                env=function_process_env(child.wiring, self._endpoint_url),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        child.started_at = time.monotonic()
        pid_file = self._pid_file(child)
        if pid_file is not None:
            pid_file.write(child.process.pid)
        self._say(f"worker {child.wiring.name} started (pid {child.process.pid}, log {log_path})")

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
                    if now - child.started_at > 60:
                        child.backoff = 1.0
                    continue
                child.process = None
                if code == EXIT_CONFIGURATION_CHANGED:
                    self._reconfigure(child)
                    continue
                child.restart_at = now + child.backoff
                self._say(
                    f"worker {child.wiring.name} exited with {code}; restarting in"
                    f" {child.backoff:.0f}s (see {self._log_dir / (child.wiring.name + '.log')})"
                )
                child.backoff = min(child.backoff * 2, 30.0)
        self.stop()

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
            pid_file = self._pid_file(child)
            if pid_file is not None:
                pid_file.clear()
        self._say("stopped")


def worker_pid_file(pid_dir: Path, function_name: str) -> PidFile:
    """Where the supervisor records the pid of ``function_name``'s worker."""
    return PidFile(pid_dir / f"{function_name}.pid", worker_marker(function_name))


def serve_all(
    endpoint_url: str, environment: str | None, log_dir: Path, pid_dir: Path | None
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
    Supervisor(served, endpoint_url, log_dir, pid_dir=pid_dir).run(stop)
    return 0
