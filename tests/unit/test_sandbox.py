"""The worker's sandbox: dying with its parent, and the memory limit (Linux: prctl, /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sluice.local import procs
from sluice.local.lambdas.sandbox import MemoryWatch, orphaned, peak_rss_mb, reset_peak_rss

NO_LIMIT = 1 << 20  # MiB


def _touch(mb: int) -> bytes:
    return b"\x01" * (mb << 20)  # every page written: resident, unlike a calloc'd bytearray


def test_an_invocation_peak_counts_what_it_allocated() -> None:
    # The process's peak so far may be far above its size now (earlier tests in the same
    # pytest process): start from a reset peak, which is the current size.
    assert reset_peak_rss()
    before = peak_rss_mb()
    with MemoryWatch(NO_LIMIT, on_exceeded=lambda _: None) as watch:
        held = _touch(64)
        del held
    assert watch.peak_mb >= before + 60
    assert not watch.exceeded


def test_the_peak_is_measured_per_invocation_not_per_process() -> None:
    with MemoryWatch(NO_LIMIT, on_exceeded=lambda _: None) as big:
        held = _touch(96)
        del held
    with MemoryWatch(NO_LIMIT, on_exceeded=lambda _: None) as small:
        pass
    assert reset_peak_rss()
    assert small.peak_mb <= big.peak_mb - 80


def test_passing_the_limit_calls_on_exceeded_once_with_the_peak() -> None:
    calls: list[int] = []
    assert reset_peak_rss()
    limit = peak_rss_mb() + 32
    with MemoryWatch(limit, on_exceeded=calls.append) as watch:
        held = _touch(96)
        deadline = time.monotonic() + 30
        while not calls and time.monotonic() < deadline:  # the watchdog thread's sample
            time.sleep(0.01)
        del held
    assert len(calls) == 1 and calls[0] > limit
    assert watch.exceeded and watch.peak_mb >= calls[0]


def test_a_peak_after_the_last_sample_is_still_caught_when_the_invocation_ends() -> None:
    calls: list[int] = []
    assert reset_peak_rss()
    baseline = peak_rss_mb()
    # A sampling interval longer than the invocation: only the final check can see it.
    with MemoryWatch(baseline + 32, on_exceeded=calls.append, interval=3600):
        held = _touch(96)
        del held
    assert len(calls) == 1


def test_without_enforcement_the_peak_is_measured_and_nothing_is_called() -> None:
    calls: list[int] = []
    with MemoryWatch(1, on_exceeded=calls.append, enforce=False) as watch:
        pass
    assert calls == []
    assert watch.peak_mb > 1


def test_orphaned_compares_the_parent_pid() -> None:
    assert not orphaned(os.getppid())
    assert orphaned(os.getppid() + 1)


def test_the_parent_watch_stops_a_process_whose_parent_was_killed(tmp_path: Path) -> None:
    """The portable fallback alone (no prctl): the grandchild notices its parent's death."""
    flag = tmp_path / "orphaned"
    grandchild = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from sluice.local.lambdas.sandbox import watch_parent
        parent = int(sys.argv[1])

        def stop():
            Path({str(flag)!r}).write_text(str(os.getppid()))
            os._exit(0)

        watch_parent(parent, stop, interval=0.05)
        print(os.getpid(), flush=True)
        time.sleep(600)
        """
    )
    child = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {grandchild!r}, str(os.getpid())])
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        grandchild_pid = int(parent.stdout.readline())
        assert procs.is_running(grandchild_pid) and not flag.exists()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), "the grandchild did not notice"
        deadline = time.monotonic() + 30
        while procs.is_running(grandchild_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs.is_running(grandchild_pid)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_the_kernel_signals_a_child_when_its_parent_dies(tmp_path: Path) -> None:
    flag = tmp_path / "signalled"
    grandchild = textwrap.dedent(
        f"""
        import os, signal, time
        from pathlib import Path
        from sluice.local.lambdas.sandbox import set_parent_death_signal

        def stop(signum, frame):
            Path({str(flag)!r}).write_text(str(signum))
            os._exit(0)

        signal.signal(signal.SIGTERM, stop)
        assert set_parent_death_signal(signal.SIGTERM)
        print(os.getpid(), flush=True)
        time.sleep(600)
        """
    )
    child = textwrap.dedent(
        f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # The handler creates the file, then writes: poll for its content, not its name.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (flag.exists() and flag.read_text()):
            time.sleep(0.05)
        assert flag.read_text() == str(int(signal.SIGTERM))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
