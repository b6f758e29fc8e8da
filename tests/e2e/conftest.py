"""The deployed local stack, once per session, for the end-to-end tests.

``python -m sluice.local up --no-samples --port <free port> --emulator <target>`` (the
emulator, the real Terraform, the local runner), and ``down`` at teardown. The target is
``SLUICE_E2E_TARGET``: ``moto`` (the default) or ``localstack`` (LocalStack as a host
process, installed by ``up`` on first use; docs/localstack.md). Either way the local
runner serves the functions from the event source mappings that Terraform created
disabled: LocalStack's community edition runs functions only in Docker.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sluice.local import awsenv
from sluice.local.stack.state import LOCAL_ENVIRONMENT, StateDir
from sluice.local.stack.updown import EMULATORS
from sluice.ops.environment import Environment, select_environment
from tests.terraform_support import NOT_ON_LOCALSTACK, e2e_target

ROOT = Path(__file__).resolve().parents[2]
TARGET = e2e_target()
# The first `up --emulator localstack` on a machine also installs LocalStack (minutes).
UP_TIMEOUT_SECONDS = 1800


def emulator_args() -> list[str]:
    """``up``'s ``--emulator`` for the target; an unknown target fails the run."""
    if TARGET not in EMULATORS:
        pytest.fail(f"SLUICE_E2E_TARGET must be one of {EMULATORS}, got {TARGET!r}", pytrace=False)
    return ["--emulator", TARGET]


@dataclass(frozen=True)
class Stack:
    """A running local pipeline: where it answers and its Terraform outputs."""

    endpoint_url: str
    environment: Environment
    outputs_file: Path
    root: Path

    def client(self, service: str) -> Any:
        return awsenv.client(service, self.endpoint_url)

    def env(self) -> dict[str, str]:
        return awsenv.local_env(self.endpoint_url)

    def aws(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The AWS CLI against the stack, as a user would run it."""
        aws = Path(sys.executable).with_name("aws")
        return subprocess.run(
            [str(aws), "--endpoint-url", self.endpoint_url, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )

    def sluice(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``sluice`` CLI against the stack."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "sluice.cli",
                *args,
                "--environment",
                LOCAL_ENVIRONMENT,
                "--endpoint-url",
                self.endpoint_url,
                "--outputs-file",
                str(self.outputs_file),
            ],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free now, held open together while they are chosen (the
    emulator's, the API's and the web app's: ``port + 1`` and ``port + 2``, the defaults,
    may belong to some other process's connection on a busy machine)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def stack_ports() -> list[str]:
    """``sluice up`` arguments placing the emulator, the API and the web app on free ports."""
    port, api_port, web_port = _free_ports(3)
    return ["--port", str(port), "--api-port", str(api_port), "--web-port", str(web_port)]


def _run_local(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.local", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _local_stack(state_dir: Path) -> Iterator[Stack]:
    ports = stack_ports()
    port = int(ports[1])
    started = time.monotonic()
    # Its own state directory: a developer's `sluice up` in this checkout keeps running.
    local = ["--state-dir", str(state_dir)]
    try:
        up = _run_local(
            ["up", "--no-samples", *ports, *emulator_args(), *local],
            UP_TIMEOUT_SECONDS,
        )
        if up.returncode != 0:
            pytest.fail(
                f"sluice up failed ({up.returncode}) after {time.monotonic() - started:.0f} s:\n"
                f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}",
                pytrace=False,
            )
        state = StateDir(ROOT, state_dir)
        outputs = json.loads(state.outputs.read_text())
        yield Stack(
            endpoint_url=awsenv.endpoint_for(port),
            environment=select_environment(outputs, LOCAL_ENVIRONMENT, str(state.outputs)),
            outputs_file=state.outputs,
            root=ROOT,
        )
    finally:
        down = _run_local(["down", *local], 120)
        print(down.stdout, down.stderr, sep="\n")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _local_stack(tmp_path_factory.mktemp("stack"))


FIRST_ON_THE_SHARED_STACK = ("test_local_pipeline.py",)
"""Modules that check the shared stack as ``up`` left it (the samples' exact receipts,
archive, label counts and a clean audit); the others upload, bundle and delete through the
API and the web app, so they run after these."""

SHARED_STACK_GROUP = "shared-stack"
"""The xdist group of every test that uses ``stack``: one worker, one stack, in order
(tests/parallel.py)."""


NOT_RUN_ON_THIS_TARGET: dict[str, list[str]] = {}
"""Reason -> the tests deselected for it on this target (printed in the run's summary)."""


def pytest_itemcollected(item: pytest.Item) -> None:
    """The tests that use the shared stack form one xdist group (tests/parallel.py)."""
    if "stack" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group(SHARED_STACK_GROUP))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the modules that read the untouched sample run first (a stable sort: the order
    within and among the other modules stays as collected).

    On LocalStack, deselect the tests marked ``not_on_localstack``: they need what its
    community edition cannot create. Deselected, not skipped: nothing of them runs, and
    the summary lists every one with its reason, so a green LocalStack run never reads as
    having covered them (the moto run does)."""
    items.sort(key=lambda item: item.path.name not in FIRST_ON_THE_SHARED_STACK)
    if TARGET != "localstack":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker(NOT_ON_LOCALSTACK)
        if marker is None:
            kept.append(item)
            continue
        if not marker.args or not str(marker.args[0]).strip():
            raise pytest.UsageError(f"{item.nodeid}: {NOT_ON_LOCALSTACK} needs a reason")
        dropped.append(item)
        NOT_RUN_ON_THIS_TARGET.setdefault(str(marker.args[0]), []).append(item.nodeid)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say what this LocalStack run did not run, and why."""
    for reason, nodeids in NOT_RUN_ON_THIS_TARGET.items():
        terminalreporter.write_sep(
            "=", f"not run on LocalStack: {len(nodeids)} tests (run them on moto)"
        )
        terminalreporter.write_line(f"reason: {reason}")
        for nodeid in nodeids:
            terminalreporter.write_line(f"  {nodeid}")
