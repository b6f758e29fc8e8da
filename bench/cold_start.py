#!/usr/bin/env python3
"""Cold start: import time of each handler module, what dominates it, and the code zip size.

    .venv/bin/python bench/cold_start.py [--quick]

Each sample is a fresh interpreter that times ``import sluice.handlers.<name>`` (module
body included: configuration from the environment, boto3 clients, the Powertools logger,
schema compilation). The environment holds valid values for every variable the handler
reads, dummy credentials and ``AWS_ENDPOINT_URL=http://127.0.0.1:9`` (nothing listens there:
creating a client makes no request). Handlers are interleaved; median of N runs.

Two layouts are measured:

* ``lambda``: what Lambda gets. The code zip is built with ``scripts/build_artifacts.py
  --code-only`` and extracted; the runtime dependencies of ``layers/requirements.txt`` are
  copied from the venv without any ``.pyc`` (the layer build drops them, and Lambda's
  ``/opt`` and ``/var/task`` are read-only, so nothing is cached between cold starts);
  ``python -S`` with ``PYTHONDONTWRITEBYTECODE=1`` and only those two directories on the
  path. The venv's 3.11 packages stand in for the layer's 3.12 wheels (no python3.12 here).
* ``cached``: the same directories after ``compileall`` (what a layer that ships ``.pyc``
  for the runtime's Python gets).

Targets (``lambda`` layout): archive, tag and bundle at most 150 ms, transform at most
250 ms; code zip under 200 KB. ``python -X importtime`` of each handler says where the time
goes, summed by top-level package (self time). ``--quick``: one run each, no breakdown.

*Deferred* imports are what a handler leaves out of init because only some invocations need
it (jsonschema for an invalid record's or request's full list of problems, Pillow for the
offline labeler): each is timed in a fresh interpreter right after the handler's import,
which is what the first invocation that needs it pays.

With Lambda SnapStart (``snap_start`` in ``env/``), this init runs once, when a version is
published, and each cold start restores its snapshot instead; the restore can only be
measured on Lambda (``Restore Duration`` in the REPORT line). Deferred imports are then
paid after the restore, on first use.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import os
import re
import shutil
import statistics
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchlib import (
    FAKE_AWS_ENV,
    REPO_ROOT,
    Summary,
    emit,
    machine,
    parse_args,
    print_table,
    verdict,
    work_dir,
)

HANDLERS = ("transform", "archive", "tag", "bundle")
TARGET_SECONDS = {"transform": 0.250, "archive": 0.150, "tag": 0.150, "bundle": 0.150}
TARGET_ZIP_BYTES = 200 * 1000
HANDLER_ENV = {
    "SLUICE_ENV": "bench",
    "RAW_BUCKET": "bench-raw",
    "PROCESSED_BUCKET": "bench-processed",
    "ARCHIVE_BUCKET": "bench-archive",
    "WORK_BUCKET": "bench-work",
    "IMAGES_TABLE": "bench-images",
    "LABELS_TABLE": "bench-labels",
    "BUNDLE_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-bundles",
    "LABELER": "rekognition",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
}
TIMER = (
    "import time; started = time.perf_counter(); import sluice.handlers.{name};"
    " print(time.perf_counter() - started)"
)
# (handler, what only some invocations need: timed after the handler's import)
DEFERRED = {
    "transform: jsonschema validators (first invalid record)": (
        "transform",
        "import sluice.handlers.transform as h;"
        " [d._validator for d in h.SETTINGS.datasets.datasets]",
    ),
    "bundle: jsonschema (first invalid request)": (
        "bundle",
        "from jsonschema import Draft202012Validator",
    ),
    "tag: Pillow (offline labeler, first image)": (
        "tag",
        "from PIL import Image, UnidentifiedImageError",
    ),
}
DEFERRED_TIMER = (
    "import time, sluice.handlers.{name}; started = time.perf_counter(); {statement};"
    " print(time.perf_counter() - started)"
)


def pinned_distributions() -> list[str]:
    names = []
    for line in (REPO_ROOT / "layers" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[=<>~!\[; ]", line, maxsplit=1)[0])
    return names


def build_layouts() -> tuple[Path, Path, int]:
    """(code dir, dependencies dir, code zip bytes); rebuilt on every run."""
    root = work_dir("cold_start")
    artifacts = root / "artifacts"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_artifacts.py"), "--code-only",
         "--out", str(artifacts)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    code_zip = artifacts / "sluice-code.zip"
    code = root / "code"
    shutil.rmtree(code, ignore_errors=True)
    with zipfile.ZipFile(code_zip) as archive:
        archive.extractall(code)
    deps = root / "deps"
    if not deps.exists():
        staging = root / "deps.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for name in pinned_distributions():
            distribution = importlib.metadata.distribution(name)
            for entry in distribution.files or []:
                if entry.parts[0] in ("..", "bin") or "__pycache__" in entry.parts:
                    continue
                if entry.suffix == ".pyc":
                    continue
                source = Path(str(entry.locate()))
                target = staging / entry
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        staging.rename(deps)
    return code, deps, code_zip.stat().st_size


def strip_pyc(*folders: Path) -> None:
    for folder in folders:
        for cache in folder.rglob("__pycache__"):
            shutil.rmtree(cache)


def child_env(code: Path, deps: Path, cached: bool) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "PYTHONPATH": f"{code}{os.pathsep}{deps}",
        **FAKE_AWS_ENV,
        **HANDLER_ENV,
    }
    if not cached:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def python() -> str:
    """The base interpreter (not the venv's), so only the two directories are importable."""
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


def time_import(name: str, env: dict[str, str]) -> float:
    completed = subprocess.run(
        [python(), "-S", "-c", TIMER.format(name=name)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return float(completed.stdout.strip().splitlines()[-1])


def time_deferred(name: str, statement: str, env: dict[str, str]) -> float:
    completed = subprocess.run(
        [python(), "-S", "-c", DEFERRED_TIMER.format(name=name, statement=statement)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return float(completed.stdout.strip().splitlines()[-1])


def import_breakdown(name: str, env: dict[str, str]) -> dict[str, float]:
    """Self time (seconds) by top-level package from ``-X importtime``."""
    completed = subprocess.run(
        [python(), "-S", "-X", "importtime", "-c", f"import sluice.handlers.{name}"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    totals: dict[str, float] = defaultdict(float)
    for line in completed.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if not match:
            continue
        module = match.group(3)
        if module == f"sluice.handlers.{name}":
            key = "handler module body (config, clients, logger)"
        elif module.startswith("sluice"):
            key = "sluice (other modules)"
        else:
            key = module.split(".")[0]
        totals[key] += int(match.group(1)) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    args = parse_args(__doc__ or "")
    runs = 1 if args.quick else 11
    code, deps, zip_bytes = build_layouts()
    result: dict[str, Any] = {
        "bench": "cold_start",
        "quick": args.quick,
        "machine": machine(),
        "code_zip_bytes": zip_bytes,
        "layouts": {},
    }
    rows = []
    deferred_rows: list[list[str]] = []
    for layout in ("lambda", "cached"):
        cached = layout == "cached"
        if cached:
            compileall.compile_dir(code, quiet=1)
            compileall.compile_dir(deps, quiet=1)
        else:
            strip_pyc(code, deps)
        env = child_env(code, deps, cached)
        samples: dict[str, list[float]] = {name: [] for name in HANDLERS}
        time_import(HANDLERS[0], env)  # page cache warm-up
        for _ in range(runs):
            for name in HANDLERS:
                samples[name].append(time_import(name, env))
        entry: dict[str, Any] = {}
        for name in HANDLERS:
            summary = Summary.of(samples[name])
            breakdown = {} if args.quick else import_breakdown(name, env)
            top = dict(list(breakdown.items())[:6])
            met = summary.median <= TARGET_SECONDS[name]
            entry[name] = {
                "seconds": summary.as_dict(),
                "target_seconds": TARGET_SECONDS[name],
                "target_met": met,
                "breakdown_self_seconds": {k: round(v, 4) for k, v in top.items()},
                "breakdown_total_seconds": round(sum(breakdown.values()), 4),
            }
            shares = (
                ", ".join(f"{key} {value * 1000:.0f}" for key, value in list(breakdown.items())[:4])
                or "(--quick: no breakdown)"
            )
            rows.append(
                [
                    layout,
                    name,
                    summary.ms(),
                    f"<= {TARGET_SECONDS[name] * 1000:.0f} ms",
                    verdict(met) if layout == "lambda" else "(info)",
                    shares,
                ]
            )
        deferred: dict[str, list[float]] = {case: [] for case in DEFERRED}
        for _ in range(max(1, runs // 2)):
            for case, (name, statement) in DEFERRED.items():
                deferred[case].append(time_deferred(name, statement, env))
        entry["deferred"] = {case: Summary.of(times).as_dict() for case, times in deferred.items()}
        deferred_rows.extend(
            [layout, case, Summary.of(times).ms()] for case, times in deferred.items()
        )
        result["layouts"][layout] = entry

    print(f"median [min-max] of {runs} fresh interpreters per handler, interleaved")
    print_table(
        "Handler import time",
        ["layout", "handler", "import time", "target", "verdict", "top self times (ms)"],
        rows,
    )
    print_table(
        "Deferred imports (paid by the first invocation that needs them, not by init)",
        ["layout", "what", "time after the handler's import"],
        deferred_rows,
    )
    zip_met = zip_bytes < TARGET_ZIP_BYTES
    print_table(
        "Code zip",
        ["artifact", "size", "target", "verdict"],
        [["sluice-code.zip", f"{zip_bytes:,} B", "< 200,000 B", verdict(zip_met)]],
    )
    lambda_layout = result["layouts"]["lambda"]
    result["target_zip_met"] = zip_met
    result["target_import_met"] = all(lambda_layout[name]["target_met"] for name in HANDLERS)
    result["import_median_seconds"] = {
        layout: {name: entry[name]["seconds"]["median"] for name in HANDLERS}
        for layout, entry in result["layouts"].items()
    }
    result["median_of_medians"] = statistics.median(
        lambda_layout[name]["seconds"]["median"] for name in HANDLERS
    )
    emit(result)


if __name__ == "__main__":
    main()
