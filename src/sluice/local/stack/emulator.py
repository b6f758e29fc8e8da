"""The moto server that stands in for AWS locally: find it, start it, stop it."""

from __future__ import annotations

import enum
import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from sluice.local import awsenv, procs
from sluice.local.stack.state import StateDir

START_TIMEOUT_SECONDS = 90.0
"""A deadline, polled: moto's import alone takes tens of seconds on a busy machine."""
STOP_GRACE_SECONDS = 10.0


class EmulatorError(RuntimeError):
    """The emulator cannot be used; the message says what to do."""


class Probe(enum.Enum):
    MOTO = "moto"
    OTHER = "something else"
    NOTHING = "nothing"


def probe(endpoint_url: str, timeout: float = 2.0) -> Probe:
    """What answers at ``endpoint_url``: a moto server, something else, or nothing."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=timeout) as response:  # noqa: S310 - our own http://127.0.0.1 URL
            body = response.read(4096)
    except urllib.error.HTTPError:
        return Probe.OTHER
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
        return Probe.NOTHING if _refused(endpoint_url, timeout) else Probe.OTHER
    return Probe.MOTO if b"<title>Moto" in body else Probe.OTHER


def _refused(endpoint_url: str, timeout: float) -> bool:
    """True when nothing listens on the endpoint's port at all."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint_url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return False
    except OSError:
        return True


def moto_command(port: int) -> list[str]:
    """moto's server from the same environment as this package."""
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def ensure_moto(port: int, state: StateDir, out: TextIO) -> tuple[int | None, bool]:
    """A moto server on ``port``: (pid if we manage it, whether it was already running)."""
    endpoint = awsenv.endpoint_for(port)
    found = probe(endpoint)
    if found is Probe.MOTO:
        pid = state.moto_pid.running_pid()
        owner = f"pid {pid}" if pid else "not started by sluice up"
        print(f"emulator: reusing the moto server at {endpoint} ({owner})", file=out, flush=True)
        return pid, True
    if found is Probe.OTHER:
        raise EmulatorError(
            f"port {port} is in use by something that is not a moto server: stop it, or pass"
            f" --port with a free port (e.g. --port {port + 1})"
        )
    state.moto_pid.clear()
    env = awsenv.local_env(endpoint)
    process = procs.spawn_detached(
        moto_command(port), log_path=state.moto_log, env=env, cwd=state.root
    )
    state.moto_pid.write(process.pid)
    print(
        f"emulator: starting moto server on {endpoint} (pid {process.pid}, log {state.moto_log})",
        file=out,
        flush=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while probe(endpoint, timeout=1.0) is not Probe.MOTO:
        if process.poll() is not None:
            state.moto_pid.clear()
            raise EmulatorError(
                f"moto server exited with code {process.returncode} while starting:"
                f" see {state.moto_log}\n{tail(state.moto_log)}"
            )
        if time.monotonic() > deadline:
            procs.stop(process.pid, grace_seconds=STOP_GRACE_SECONDS)
            state.moto_pid.clear()
            raise EmulatorError(
                f"moto server did not answer on {endpoint} within {START_TIMEOUT_SECONDS:.0f} s:"
                f" see {state.moto_log}"
            )
        time.sleep(0.2)
    return process.pid, False


def stop_moto(state: StateDir, out: TextIO) -> bool:
    """Stop the moto server that ``sluice up`` started; False when none was running."""
    pid = state.moto_pid.running_pid()
    if pid is None:
        return False
    gentle = procs.stop(pid, grace_seconds=STOP_GRACE_SECONDS)
    state.moto_pid.clear()
    print(f"emulator: moto server stopped (pid {pid}{'' if gentle else ', killed'})", file=out)
    return True


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("  | " + line for line in text.splitlines()[-lines:])
