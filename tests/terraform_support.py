"""Run the Terraform CLI from tests: offline provider installation, cached plugins, copies.

Terraform writes into the directory it runs in (``.terraform.lock.hcl`` of a module,
``.terraform/``), so the static tests work on a copy of the configuration and every run gets
its own ``TF_DATA_DIR``. Provider plugins come from the local filesystem mirror through the
CLI configuration that ``scripts/terraformrc.sh`` writes, and are cached in
``.sluice/plugin-cache`` (ignored by git) across runs. Every init runs with the committed
lock file, so that the cached provider is only ever linked, never installed again under a
plan that another worker is running (``_prepared_init``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sluice import workdir
from sluice.local import awsenv
from sluice.local.stack import localstack
from sluice.local.stack.emulator import EmulatorError
from sluice.local.stack.state import StateDir
from sluice.local.stack.terraform import PARALLELISM

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures" / "terraform"
MODULES = ("s3", "lambda", "layers", "dynamodb", "notifications", "auth", "api", "pipeline")
FUNCTIONS = ("transform", "archive", "tag", "bundle")
PLUGIN_CACHE_DIR = workdir.plugin_cache(REPO_ROOT)
LOCK_FILE = ".terraform.lock.hcl"
COMMAND_TIMEOUT_SECONDS = 600
PARALLEL = ("plan", "apply", "destroy")
"""The commands that take ``-parallelism`` (given through ``TF_CLI_ARGS_<command>``)."""
E2E_TARGET_VARIABLE = "SLUICE_E2E_TARGET"


def e2e_target() -> str:
    """The emulator the end-to-end tests run against: ``moto`` (default) or ``localstack``."""
    return os.environ.get(E2E_TARGET_VARIABLE, "moto")


NOT_ON_LOCALSTACK = "not_on_localstack"
"""Marker of the tests that need what LocalStack's community edition cannot create; on
``SLUICE_E2E_TARGET=localstack`` they are deselected and tests/e2e/conftest.py prints
each one with its reason in the run's summary (they run on moto)."""

NEEDS_API = pytest.mark.not_on_localstack(
    "needs the HTTP API, its sign-in or the web app: LocalStack's community edition has no "
    + ", ".join(localstack.MISSING_SERVICES.values())
    + ", so its variant of the environment deploys none of them (docs/localstack.md)"
)


def tfvars_environments(env: Mapping[str, str], args: Sequence[str]) -> dict[str, Any]:
    """``var.environments`` as the variable files in ``args`` set it (``terraform console``
    in the initialised root module): a file that sets it replaces the map whole."""
    result = subprocess.run(
        [terraform_binary(), "console", *args],
        input="jsonencode(var.environments)\n",
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    # The console prints the JSON text as an HCL string literal, whose escapes are JSON's.
    environments: dict[str, Any] = json.loads(json.loads(result.stdout.strip()))
    return environments


def target_var_files(work_dir: Path, env: Mapping[str, str], args: Sequence[str]) -> list[str]:
    """The ``-var-file`` to add after ``args`` for the end-to-end target: none on moto; on
    LocalStack its variant of the environments (``sluice up --emulator localstack``'s)."""
    if e2e_target() != "localstack":
        return []
    variant = localstack.write_variant(work_dir, tfvars_environments(env, args))
    return [f"-var-file={variant}"]


def target_environments(environments: Mapping[str, Any]) -> dict[str, Any]:
    """``var.environments`` as the end-to-end target applies it: on LocalStack its variant,
    with the API, sign-in and web app off (``sluice up --emulator localstack`` does the same)."""
    if e2e_target() == "localstack":
        return localstack.switched_off(environments)
    return dict(environments)


def terraform_binary() -> str:
    """Path of the terraform CLI; a missing binary fails the test (CI installs it)."""
    found = shutil.which("terraform")
    if found is None:
        pytest.fail(
            "terraform is not on PATH: install Terraform >= 1.10"
            " (https://developer.hashicorp.com/terraform/install)",
            pytrace=False,
        )
    return found


def venv_tool(name: str) -> str:
    """A console script installed beside the running Python (checkov, moto_server)."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed in {path.parent}: pip install it", pytrace=False)
    return str(path)


def write_cli_config(path: Path) -> Path:
    """Write a Terraform CLI configuration with scripts/terraformrc.sh and return its path."""
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "terraformrc.sh"), str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return path


def terraform_env(work_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a terraform run: offline install, shared plugin cache, own data dir."""
    PLUGIN_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cli_config = work_dir / "terraformrc"
    if not cli_config.is_file():
        write_cli_config(cli_config)
    env = dict(os.environ)
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_PLUGIN_CACHE_DIR": str(PLUGIN_CACHE_DIR),
            "TF_DATA_DIR": str(work_dir / ".terraform"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            # As `sluice up` (sluice.local.stack.terraform.PARALLELISM): the provider's fixed
            # waits on the emulator overlap instead of queueing for Terraform's 10 slots.
            **{f"TF_CLI_ARGS_{command}": f"-parallelism={PARALLELISM}" for command in PARALLEL},
        }
    )
    env.update(extra or {})
    return env


def terraform(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    expect_codes: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform args`` in ``cwd``; an unexpected exit code fails with its output.
    An ``init`` runs with the committed lock file and holds the plugin cache's lock."""
    with _prepared_init(cwd) if args and args[0] == "init" else contextlib.nullcontext():
        result = subprocess.run(
            [terraform_binary(), *args, "-no-color"],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    if result.returncode not in expect_codes:
        pytest.fail(
            f"terraform {' '.join(args)} in {cwd} exited {result.returncode},"
            f" expected {list(expect_codes)}"
            f"\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result


@contextlib.contextmanager
def _prepared_init(directory: Path) -> Iterator[None]:
    """An init of ``directory``: with a lock file, holding the plugin cache's lock.

    A configuration without a lock file gets the committed one. Terraform links a cached
    provider only when the lock file records its checksum; without one, init removes the
    cached provider and installs it again, and a plan, apply or destroy that another worker
    runs through that cache entry meanwhile fails ("could not read package directory").
    Every configuration here uses the root module's providers. The lock: Terraform does not
    make the cache safe for concurrent inits either, and the suite runs on several workers
    (tests/parallel.py)."""
    lock_file = directory / LOCK_FILE
    if not lock_file.exists():
        shutil.copy2(REPO_ROOT / LOCK_FILE, lock_file)
    PLUGIN_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(PLUGIN_CACHE_DIR, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def copy_configuration(destination: Path) -> Path:
    """Copy the root module, modules/, env/ and the test fixtures; return the copy's root."""
    destination.mkdir(parents=True, exist_ok=True)
    for item in REPO_ROOT.iterdir():
        if item.suffix == ".tf" or item.name == LOCK_FILE:
            shutil.copy2(item, destination / item.name)
    ignore = shutil.ignore_patterns(".terraform", LOCK_FILE, "*.tfstate*")
    shutil.copytree(REPO_ROOT / "modules", destination / "modules", ignore=ignore)
    shutil.copytree(REPO_ROOT / "env", destination / "env", ignore=ignore)
    # The root module reads the API's routes from its document.
    (destination / "docs").mkdir(exist_ok=True)
    shutil.copy2(REPO_ROOT / "docs" / "openapi.yaml", destination / "docs" / "openapi.yaml")
    # ... the web app's files, and the dataset names the app offers.
    shutil.copytree(REPO_ROOT / "web", destination / "web", ignore=ignore)
    datasets = destination / "src" / "sluice" / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "src" / "sluice" / "datasets" / "datasets.json", datasets)
    # ... and the key prefixes (the IAM grants and notifications are scoped by them).
    shutil.copy2(REPO_ROOT / "src" / "sluice" / "keys.json", datasets.parent)
    shutil.copytree(FIXTURES_DIR, destination / "tests" / "fixtures" / "terraform", ignore=ignore)
    return destination


def write_stand_in_artifacts(directory: Path) -> Path:
    """Small zips with the names scripts/build_artifacts.py writes (docs/contracts.md)."""
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / "sluice-code.zip", "w") as code:
        code.writestr("sluice/__init__.py", "# stand-in for the handlers' code\n")
    for arch in ("x86_64", "arm64"):
        with zipfile.ZipFile(directory / f"sluice-layer-{arch}.zip", "w") as layer:
            layer.writestr("python/sluice_layer_stand_in.py", f"ARCH = {arch!r}\n")
    return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server(log_path: Path, startup_deadline_seconds: float = 30.0) -> Iterator[str]:
    """Run ``moto_server`` on a free port; yield its URL once it answers, stop it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + startup_deadline_seconds
            while True:
                if process.poll() is not None:
                    pytest.fail(f"moto_server exited at startup, see {log_path}", pytrace=False)
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(
                            f"moto_server did not answer on {url} within"
                            f" {startup_deadline_seconds} s",
                            pytrace=False,
                        )
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def emulator_server(work_dir: Path) -> Iterator[str]:
    """The end-to-end target's emulator on a free port, all its own; stopped after.

    moto by default; with ``SLUICE_E2E_TARGET=localstack`` a LocalStack host process as
    ``sluice up --emulator localstack`` starts it (its state under ``work_dir``).
    """
    if e2e_target() != "localstack":
        with moto_server(work_dir / "moto.log") as url:
            yield url
        return
    state = StateDir(REPO_ROOT, work_dir / "localstack-stack")
    port = free_port()
    try:
        try:
            localstack.ensure(port, state, sys.stdout)
        except EmulatorError as error:
            pytest.fail(f"LocalStack did not start: {error}", pytrace=False)
        yield awsenv.endpoint_for(port)
    finally:
        localstack.stop(state, sys.stdout)
