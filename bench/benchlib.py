"""What every bench script shares: timing, statistics, tables, child processes, moto.

Rules the scripts follow (docs/benchmarks.md): baseline and candidate are interleaved in
one run and repeated, figures are medians with their spread, inputs are generated from a
seed under ``build/bench/`` (git-ignored; ``SLUICE_BENCH_DIR`` puts them elsewhere, e.g. a
1 GB file under ``/tmp``), and peak memory is the peak resident set size
(``VmHWM``, what Lambda limits) of a child process that runs one case and nothing else.
Every script ends with one line of JSON holding its figures and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("SLUICE_BENCH_DIR") or REPO_ROOT / "build" / "bench")
VENV_BIN = Path(sys.executable).parent
MIB = 1024 * 1024

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument(
        "--quick", action="store_true", help="small inputs and few repetitions (a smoke run)"
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def work_dir(name: str) -> Path:
    path = BENCH_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# Statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """Median of repeated samples, with min/max as the spread."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repetitions were."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {
            "median": round(self.median, digits),
            "min": round(self.low, digits),
            "max": round(self.high, digits),
            "n": self.n,
        }

    def ms(self) -> str:
        return f"{self.median * 1000:.1f} ms [{self.low * 1000:.1f}-{self.high * 1000:.1f}]"


def interleaved(
    cases: Mapping[str, Callable[[], object]], repetitions: int, warmup: int = 1
) -> dict[str, Summary]:
    """Wall time of each case, run round-robin so drift hits every case alike."""
    for _ in range(warmup):
        for run in cases.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repetitions):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return {name: Summary.of(values) for name, values in samples.items()}


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("inf")


# Output -------------------------------------------------------------------------------------
def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def emit(result: Mapping[str, Any]) -> None:
    """The script's last line: one JSON object (run_all.py collects it)."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        # Other work on the machine skews absolute figures (ratios less so): say how much.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


# Memory -------------------------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM) so far."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def run_child(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run a child that prints one JSON object as its last stdout line; return that object.

    The child measures its own figures (time, VmHWM), so a case's peak memory is its own and
    not the maximum over every child this process ever waited for.
    """
    completed = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"child {argv} failed ({completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def fmt_mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


# moto server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server(deadline_seconds: float = 30.0) -> Iterator[str]:
    """A moto server on a free loopback port; yields its endpoint URL, stops it after."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    executable = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
    log = (work_dir("logs") / f"moto-{port}.log").open("wb")
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **FAKE_AWS_ENV},
    )
    try:
        deadline = time.monotonic() + deadline_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                # An http URL this function built from a loopback port: no other scheme.
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def aws_env(endpoint: str) -> dict[str, str]:
    return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": endpoint}


def use_endpoint(endpoint: str) -> None:
    """Point this process's SDK at ``endpoint`` with dummy credentials."""
    os.environ.update(aws_env(endpoint))
