"""The deployed local stack, once per session, for the end-to-end tests.

Default target: ``python -m sluice.local up --no-samples --port <free port>`` (moto server,
the real Terraform, the local runner), and ``down`` at teardown.

``SLUICE_E2E_TARGET=localstack``: no moto and no runner. The root Terraform is applied with
``env/local.tfvars`` to the LocalStack at ``AWS_ENDPOINT_URL`` with every event source
mapping enabled, so LocalStack's own Lambda service runs the functions (it needs Docker;
GitHub Actions has it, this machine does not).
"""

from __future__ import annotations

import json
import os
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
from sluice.local.state import LOCAL_ENVIRONMENT, StateDir
from sluice.local.terraform import Terraform
from sluice.ops.environment import Environment, select_environment

ROOT = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("SLUICE_E2E_TARGET", "moto")
UP_TIMEOUT_SECONDS = 900


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_local(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.local", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _moto_stack(state_dir: Path) -> Iterator[Stack]:
    port = _free_port()
    started = time.monotonic()
    # Its own state directory: a developer's `sluice up` in this checkout keeps running.
    local = ["--state-dir", str(state_dir)]
    try:
        up = _run_local(["up", "--no-samples", "--port", str(port), *local], UP_TIMEOUT_SECONDS)
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


def _localstack_stack(tmp: Path) -> Iterator[Stack]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        pytest.fail("SLUICE_E2E_TARGET=localstack needs AWS_ENDPOINT_URL", pytrace=False)
    # Its own Terraform data directory and logs, apart from the moto stack's.
    terraform = Terraform(StateDir(ROOT, tmp), endpoint, sys.stdout)
    terraform.ensure_state_bucket(awsenv.client("s3", endpoint))
    terraform.init()
    environments = terraform.local_variable("environments")
    for settings in environments.values():
        # LocalStack runs functions in Docker: let its Lambda service poll the queues.
        settings["event_source_mappings_enabled"] = True
        # LocalStack's community edition serves no CloudFront: no web app there.
        settings["web_app"] = False
    override = tmp / "localstack.tfvars.json"
    override.write_text(json.dumps({"environments": environments}))
    terraform.apply(extra_var_files=[override])
    outputs = terraform.environments_output()
    outputs_file = tmp / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    yield Stack(
        endpoint_url=endpoint,
        environment=select_environment(outputs, LOCAL_ENVIRONMENT, str(outputs_file)),
        outputs_file=outputs_file,
        root=ROOT,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if TARGET == "moto":
        yield from _moto_stack(tmp_path_factory.mktemp("stack"))
    elif TARGET == "localstack":
        yield from _localstack_stack(tmp_path_factory.mktemp("localstack"))
    else:
        pytest.fail(f"SLUICE_E2E_TARGET must be moto or localstack, got {TARGET!r}")
