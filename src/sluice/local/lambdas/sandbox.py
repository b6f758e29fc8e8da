"""What a Lambda execution environment enforces that a plain worker process does not.

The local runner (:mod:`sluice.local.lambdas.runner`) hosts each function in a worker process.
Two properties of a Lambda sandbox have to be added to such a process by hand:

**It does not outlive the service that started it.** A worker must die with its
supervisor, or a killed supervisor leaves workers polling queues that nothing restarts
and ``sluice down`` does not know about. Two mechanisms, because neither is enough alone:

- ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (Linux, through ctypes): the kernel signals the
  worker the moment its parent dies, whatever killed the parent (``kill -9`` included).
  It is Linux-only, and it cannot cover the window between the worker's start and the
  ``prctl`` call: a parent that died in that window is caught by comparing
  ``os.getppid()`` with the pid the supervisor passed.
- a parent-pid watch: a daemon thread notices that ``os.getppid()`` changed (the worker
  was re-parented to init or a subreaper). It is portable (macOS has no
  ``PR_SET_PDEATHSIG``) and costs one system call per interval; the delay is at most
  that interval.

Both ask the worker to stop the way the supervisor's SIGTERM does: the current batch
finishes and is settled, so an orphaned worker never abandons a half-handled batch.

**It has a memory limit.** Lambda kills the runtime when the function's memory exceeds
its ``MemorySize`` (the log says ``Runtime exited with error: signal: killed``); the
invocation fails, its batch is not deleted and comes back after the visibility timeout,
and the next invocation gets a fresh environment. Mechanisms considered:

- ``RLIMIT_AS``: limits address space, not memory. CPython, glibc's per-thread malloc
  arenas (64 MiB each) and thread stacks reserve far more than they touch, so a limit
  near ``MemorySize`` breaks imports, and one with headroom enforces nothing precise.
  Allocation failure also surfaces as a catchable ``MemoryError``, where Lambda kills.
- cgroups v2 ``memory.max``: the most faithful (the kernel's OOM killer, page cache
  counted), but it needs a delegated, writable cgroup, which containers and CI runners
  rarely give, and it does not exist on macOS.
- **an RSS watchdog (chosen)**: a thread reads the kernel's resident-set high-water mark
  (``VmHWM`` in ``/proc/self/status``) every :data:`WATCH_INTERVAL_SECONDS`; the mark is
  reset at the start of each invocation through ``/proc/self/clear_refs`` (Linux 4.0+).
  Because it reads the *peak*, not the current RSS, a spike between two samples is still
  caught. When the peak passes ``MemorySize`` the worker logs what Lambda logs and kills
  itself with SIGKILL; the supervisor starts a fresh one. It needs no privilege. Its
  limits: it acts up to one interval after the fact (a fast allocation can go beyond
  the limit before the kill, where Lambda stops it at the limit), and the
  worker's own footprint (the runner's SQS and Logs clients, a few MB) counts against
  the function, as Lambda's runtime client does. Where the peak cannot be reset (no
  ``/proc``, as on macOS) it comes from ``getrusage`` (process lifetime) and the limit
  is not enforced: a process-lifetime peak would blame later invocations for an earlier
  one's memory.

The peak of each invocation is the ``Max Memory Used`` of its REPORT line.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_WATCH_INTERVAL_SECONDS = 0.5
WATCH_INTERVAL_SECONDS = 0.02
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_PEAK_RSS = "5"  # clear_refs: reset the peak resident set size (VmHWM)


# --- dying with the parent ----------------------------------------------------------------


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``signum`` when our parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def orphaned(parent_pid: int) -> bool:
    """True when ``parent_pid`` is no longer our parent (it died; we were re-parented)."""
    return os.getppid() != parent_pid


def watch_parent(
    parent_pid: int,
    on_orphaned: Callable[[], None],
    *,
    interval: float = PARENT_WATCH_INTERVAL_SECONDS,
) -> threading.Thread:
    """Call ``on_orphaned`` once, from a daemon thread, when ``parent_pid`` stops being ours."""

    def watch() -> None:
        while not orphaned(parent_pid):
            time.sleep(interval)
        on_orphaned()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def die_with_parent(parent_pid: int, on_orphaned: Callable[[], None]) -> bool:
    """Both mechanisms of the module docstring; True when the kernel one is active.

    The death signal is set first and the parent checked after, so a parent that died
    before the ``prctl`` is not missed; the watch covers systems without it.
    """
    kernel = set_parent_death_signal(signal.SIGTERM)
    if orphaned(parent_pid):
        on_orphaned()
    else:
        watch_parent(parent_pid, on_orphaned)
    return kernel


# --- memory ---------------------------------------------------------------------------------


def _status_kb(field_name: str) -> int | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux); False where the peak cannot be reset."""
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK_RSS)
    except OSError:
        return False
    return True


def peak_rss_mb() -> int:
    """The resident-set high-water mark since the last reset (else since start), in MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS
    return int(kb) // 1024


OnExceeded = Callable[[int], None]


class MemoryWatch:
    """Measures the peak RSS of one invocation and calls ``on_exceeded`` past the limit.

    A context manager around the invocation: entering resets the peak and (when
    ``enforce`` and the peak can be reset) starts the watchdog thread; :attr:`peak_mb`
    holds the invocation's peak afterwards. ``on_exceeded(peak_mb)`` runs in the watchdog
    thread, at most once; in the worker it logs and kills the process.
    """

    def __init__(
        self,
        limit_mb: int,
        on_exceeded: OnExceeded,
        *,
        enforce: bool = True,
        interval: float = WATCH_INTERVAL_SECONDS,
    ) -> None:
        self.limit_mb = limit_mb
        self.peak_mb = 0
        self.exceeded = False
        self._on_exceeded = on_exceeded
        self._enforce = enforce
        self._interval = interval
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryWatch:
        resettable = reset_peak_rss()
        if self._enforce and resettable:
            self._done.clear()
            self._thread = threading.Thread(target=self._watch, name="memory-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        watched = self._thread is not None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        # The last check: a peak reached after the watchdog's last sample still counts.
        self._check(enforce=watched)

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            if self._check(enforce=True):
                return

    def _check(self, *, enforce: bool) -> bool:
        """Record the peak; past the limit, call ``on_exceeded`` (once). True if past."""
        peak = peak_rss_mb()
        self.peak_mb = max(self.peak_mb, peak)
        if not enforce or peak <= self.limit_mb or self.exceeded:
            return self.exceeded
        self.exceeded = True
        self._on_exceeded(peak)
        return True
