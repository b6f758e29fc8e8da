"""Detached background processes with pid files, and stopping them safely.

A pid file can outlive its process and the pid can be reused by an unrelated one, so a
process is only signalled when its command line still says it is the one we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def command_line(pid: int) -> str | None:
    """The command line of ``pid``, or None when no such process is running."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    result = subprocess.run(
        ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is our exited child; True when it is gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def is_running(pid: int) -> bool:
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if state.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass(frozen=True)
class PidFile:
    """A pid file for a process whose command line contains ``marker``."""

    path: Path
    marker: str

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The recorded pid if that process is still ours and alive; clears a stale file."""
        pid = self.read()
        if pid is None:
            return None
        cmdline = command_line(pid)
        if cmdline is None or self.marker not in cmdline or not is_running(pid):
            self.path.unlink(missing_ok=True)
            return None
        return pid

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn_detached(
    argv: Sequence[str], *, log_path: Path, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (it outlives us), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(pid: int, *, grace_seconds: float, group: bool = False) -> bool:
    """SIGTERM, wait up to ``grace_seconds``, then SIGKILL. True when it stopped by itself.

    ``group`` signals the process group the pid leads (its workers with it).
    """

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def alive() -> bool:
        if not group:
            return is_running(pid)
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not alive():
            return True
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    return False


def stop_all(pids: Sequence[int], *, grace_seconds: float) -> None:
    """:func:`stop` for several processes at once: one grace period for all of them."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for pid in pids:
        stop(pid, grace_seconds=max(0.0, deadline - time.monotonic()))
