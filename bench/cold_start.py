#!/usr/bin/env python3
"""Cold start: each handler's init under CPython 3.12, with and without shipped bytecode.

    .venv/bin/python bench/cold_start.py [--quick] [--before TREE]

The artifacts are built as they are deployed (``scripts/build_artifacts.py``: the code zip
and this machine's layer, both carrying bytecode compiled by CPython 3.12) and unpacked the
way Lambda lays them out: the code zip at the task root (``/var/task``), the layer under
``/opt``, so ``sys.path`` holds the task root, then ``<opt>/python``. Each sample is a fresh
CPython 3.12 (``-S``: the interpreter's own site-packages stay out; the interpreter
``build_artifacts.py`` would compile with) that times ``import sluice.handlers.<name>``:
the handler's init, module body included (configuration from the environment, boto3
clients, the Powertools logger, schema compilation). The environment holds valid values
for every variable the handler reads, dummy credentials and
``AWS_ENDPOINT_URL=http://127.0.0.1:9`` (nothing listens there: creating a client makes no
request), and ``PYTHONDONTWRITEBYTECODE=1``: Lambda's ``/opt`` and ``/var/task`` are
read-only, so nothing a cold start compiles is kept for the next.

Two layouts of the same zips:

* ``bytecode``: as built today, ``__pycache__/*.cpython-312.pyc`` beside every source;
* ``source``: the same files without any ``__pycache__``, which is what the zips held
  before they carried bytecode ("as shipped before"): every cold start compiles every module;
* ``before`` (with ``--before TREE``): the zips another checkout builds with its own
  ``scripts/build_artifacts.py`` and ``src/`` (e.g. ``git worktree add build/before main``,
  then ``--before build/before``), so a change is measured against it in the same run.

The layouts are interleaved (for each repetition and handler, one sample of each, the order
rotating between repetitions), so load from other work on the machine hits both alike:
the ratio is the figure to trust, the absolute times move with the load average (recorded).
Each sample also reports the child's CPU time for the import, which other work on the
machine stretches much less than the wall time (the import is CPU-bound: every file is in
the page cache after the warm-up), so it is the better guess of an idle machine's time.

Targets: with bytecode, every handler's init at most 250 ms on this machine (the build's
part of the cold start); the import budgets of the first cold-start work (archive, tag and
bundle 150 ms, transform 250 ms) stay reported too, as does the code zip's 200 KB.
``python -X importtime`` of each handler says where the time goes, summed by top-level
package (self time). ``--quick``: 3 repetitions, no breakdown, no deferred imports.

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

import argparse
import importlib.util
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchlib import (
    FAKE_AWS_ENV,
    REPO_ROOT,
    Summary,
    emit,
    machine,
    parse_args,
    print_table,
    ratio,
    verdict,
    work_dir,
)

HANDLERS = ("transform", "archive", "tag", "bundle", "api")
LAYOUTS = ("bytecode", "source")
TARGET_BYTECODE_SECONDS = 0.250
TARGET_SECONDS = {
    "transform": 0.250, "archive": 0.150, "tag": 0.150, "bundle": 0.150, "api": 0.250,
}  # fmt: skip
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
    "NOTIFY_TOPIC_PREFIX": "bench-notify-",
    "LABELER": "rekognition",
    "UPLOAD_ROLE_ARN": "arn:aws:iam::123456789012:role/bench-upload",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
}
# Wall time and the process's CPU time: importing from the page cache is CPU-bound, so CPU
# time shows what an idle machine would see when other work stretches the wall time.
TIMER = (
    "import time; started = time.perf_counter(), time.process_time();"
    " import sluice.handlers.{name};"
    " print(time.perf_counter() - started[0], time.process_time() - started[1])"
)
# (handler, what only some invocations need: timed after the handler's import)
DEFERRED = {
    "transform: jsonschema validators (first invalid record)": (
        "transform",
        "import os, sluice.settings as s;"
        " [d._validator for d in s.TransformSettings.from_env(os.environ).datasets.datasets]",
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


def load_build_script() -> ModuleType:
    """scripts/build_artifacts.py as a module: the bench runs the interpreter it compiles with."""
    spec = importlib.util.spec_from_file_location(
        "build_artifacts", REPO_ROOT / "scripts" / "build_artifacts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Layout:
    """Unpacked artifacts as Lambda sees them: the task root and the layer's ``/opt``."""

    task: Path
    opt: Path

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin"),
            "PYTHONPATH": f"{self.task}{os.pathsep}{self.opt / 'python'}",
            "PYTHONDONTWRITEBYTECODE": "1",
            **FAKE_AWS_ENV,
            **HANDLER_ENV,
        }


def zip_sizes(path: Path) -> dict[str, int]:
    """Zipped and unzipped bytes of a zip, and the part of each that is bytecode."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    pycs = [info for info in infos if info.filename.endswith(".pyc")]
    return {
        "zip_bytes": path.stat().st_size,
        "unzipped_bytes": sum(info.file_size for info in infos),
        "pyc_compressed_bytes": sum(info.compress_size for info in pycs),
        "pyc_unzipped_bytes": sum(info.file_size for info in pycs),
        "pyc_files": len(pycs),
    }


def build_zips(tree: Path, out: Path, arch: str) -> dict[str, Path]:
    """The code zip and layer that ``tree``'s build script makes from ``tree``'s sources."""
    subprocess.run(
        [sys.executable, str(tree / "scripts" / "build_artifacts.py"), "--arch", arch,
         "--out", str(out), "--cache-dir", str(REPO_ROOT / "build" / "cache")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return {"code": out / "sluice-code.zip", "layer": out / f"sluice-layer-{arch}.zip"}


def unpack(zips: dict[str, Path], layout: Layout, *, bytecode: bool) -> None:
    for folder, artifact in ((layout.task, zips["code"]), (layout.opt, zips["layer"])):
        shutil.rmtree(folder, ignore_errors=True)
        with zipfile.ZipFile(artifact) as archive:
            archive.extractall(folder)
        if not bytecode:
            for cache in sorted(folder.rglob("__pycache__")):
                shutil.rmtree(cache)


def build_layouts(
    root: Path, before: Path | None = None
) -> tuple[dict[str, Layout], dict[str, dict[str, Path]]]:
    """Build the zips and unpack them twice (as built, and with every __pycache__ removed),
    and ``before``'s zips as they are built there."""
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    zips = {"bytecode": build_zips(REPO_ROOT, root / "artifacts", arch)}
    if before is not None:
        zips["before"] = build_zips(before, root / "artifacts-before", arch)
    layouts = {}
    for name in (*LAYOUTS, *(("before",) if before is not None else ())):
        layout = Layout(root / name / "task", root / name / "opt")
        unpack(zips.get(name, zips["bytecode"]), layout, bytecode=name != "source")
        layouts[name] = layout
    return layouts, zips


def run_timer(python: str, code: str, env: dict[str, str]) -> list[float]:
    """The figures the last line of ``code``'s output holds (seconds)."""
    completed = subprocess.run(
        [python, "-S", "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return [float(value) for value in completed.stdout.strip().splitlines()[-1].split()]


def import_breakdown(python: str, name: str, env: dict[str, str]) -> dict[str, float]:
    """Self time (seconds) by top-level package from ``-X importtime``."""
    completed = subprocess.run(
        [python, "-S", "-X", "importtime", "-c", f"import sluice.handlers.{name}"],
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


def rotations(names: list[str], repetition: int) -> list[str]:
    """The layouts' order for one repetition: rotated, so none is always first."""
    shift = repetition % len(names)
    return names[shift:] + names[:shift]


def sample_interleaved(
    python: str, layouts: dict[str, Layout], runs: int
) -> dict[str, dict[str, list[list[float]]]]:
    """handler -> layout -> [wall, CPU] per init; repetitions rotate the layouts' order."""
    envs = {name: layout.env() for name, layout in layouts.items()}
    names = list(layouts)
    for name in names:  # page cache warm-up
        for handler in HANDLERS:
            run_timer(python, TIMER.format(name=handler), envs[name])
    samples: dict[str, dict[str, list[list[float]]]] = {
        handler: {name: [] for name in names} for handler in HANDLERS
    }
    for repetition in range(runs):
        for handler in HANDLERS:
            for name in rotations(names, repetition):
                samples[handler][name].append(
                    run_timer(python, TIMER.format(name=handler), envs[name])
                )
    return samples


def sample_deferred(
    python: str, layouts: dict[str, Layout], runs: int
) -> dict[str, dict[str, Summary]]:
    names = [name for name in layouts if name in LAYOUTS]
    samples: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name in names} for case in DEFERRED
    }
    envs = {name: layout.env() for name, layout in layouts.items()}
    for repetition in range(runs):
        for case, (handler, statement) in DEFERRED.items():
            code = DEFERRED_TIMER.format(name=handler, statement=statement)
            for name in rotations(names, repetition):
                samples[case][name].append(run_timer(python, code, envs[name])[0])
    return {
        case: {name: Summary.of(times) for name, times in by_layout.items()}
        for case, by_layout in samples.items()
    }


def python_version(python: str) -> str:
    completed = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return completed.stdout.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout (its scripts/ and src/) whose zips run as the 'before' layout",
    )


def main() -> None:
    args = parse_args(__doc__ or "", add_arguments)
    runs = 3 if args.quick else 21
    python = load_build_script().find_lambda_python()
    before = args.before.resolve() if args.before else None
    layouts, zips = build_layouts(work_dir("cold_start"), before)
    names = list(layouts)
    sizes = {
        f"{name}_{kind}" if name != "bytecode" else kind: zip_sizes(path)
        for name, by_kind in zips.items()
        for kind, path in by_kind.items()
    }
    load_before = os.getloadavg()[0]
    samples = sample_interleaved(python, layouts, runs)

    result: dict[str, Any] = {
        "bench": "cold_start",
        "quick": args.quick,
        "machine": machine(),
        "python": {"path": python, "version": python_version(python)},
        "repetitions": runs,
        "load_average_1m_before": round(load_before, 2),
        "before_tree": str(before) if before else None,
        "artifacts": sizes,
        "code_zip_bytes": sizes["code"]["zip_bytes"],
        "handlers": {},
    }
    rows = []
    for handler in HANDLERS:
        wall = {name: Summary.of([w for w, _ in samples[handler][name]]) for name in names}
        cpu = {name: Summary.of([c for _, c in samples[handler][name]]) for name in names}
        bytecode, source = wall["bytecode"], wall["source"]
        breakdown = (
            {} if args.quick else import_breakdown(python, handler, layouts["bytecode"].env())
        )
        met = bytecode.median <= TARGET_BYTECODE_SECONDS
        cpu_met = cpu["bytecode"].median <= TARGET_BYTECODE_SECONDS
        budget_met = bytecode.median <= TARGET_SECONDS[handler]
        entry: dict[str, Any] = {
            "source_seconds": source.as_dict(),
            "bytecode_seconds": bytecode.as_dict(),
            "bytecode_over_source": ratio(bytecode.median, source.median),
            "cpu_seconds": {name: summary.as_dict() for name, summary in cpu.items()},
            "cpu_bytecode_over_source": ratio(cpu["bytecode"].median, cpu["source"].median),
            "target_bytecode_seconds": TARGET_BYTECODE_SECONDS,
            "target_bytecode_met": met,
            "target_bytecode_cpu_met": cpu_met,
            "budget_seconds": TARGET_SECONDS[handler],
            "budget_met": budget_met,
            "breakdown_self_seconds": {k: round(v, 4) for k, v in list(breakdown.items())[:8]},
            "breakdown_total_seconds": round(sum(breakdown.values()), 4),
        }
        if before:
            entry["before_seconds"] = wall["before"].as_dict()
            entry["bytecode_over_before"] = ratio(bytecode.median, wall["before"].median)
            entry["cpu_bytecode_over_before"] = ratio(cpu["bytecode"].median, cpu["before"].median)
        result["handlers"][handler] = entry
        shares = (
            ", ".join(f"{key} {value * 1000:.0f}" for key, value in list(breakdown.items())[:4])
            or "(--quick: no breakdown)"
        )
        rows.append(
            [
                handler,
                source.ms(),
                *([wall["before"].ms()] if before else []),
                bytecode.ms(),
                f"{entry['bytecode_over_source']:.2f}",
                *([f"{entry['bytecode_over_before']:.2f}"] if before else []),
                " / ".join(f"{cpu[name].median * 1000:.0f}" for name in names) + " ms",
                *([f"{entry['cpu_bytecode_over_before']:.2f}"] if before else []),
                f"wall {verdict(met)}, CPU {verdict(cpu_met)}",
                f"<= {TARGET_SECONDS[handler] * 1000:.0f} ms: {verdict(budget_met)}",
                shares,
            ]
        )
    print(
        f"CPython {result['python']['version']} ({python}); median [min-max] of {runs} fresh "
        f"interpreters per handler and layout, interleaved; load {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after" + (f"; before = {before}" if before else "")
    )
    print_table(
        "Handler init (import) time",
        ["handler", "source only (as shipped before bytecode)",
         *(["before (bytecode)"] if before else []), "bytecode (now)", "now / source",
         *(["now / before"] if before else []), f"CPU {' / '.join(names)}",
         *(["CPU now / before"] if before else []), "<= 250 ms", "first budget",
         "top self times with bytecode (ms)"],
        rows,
    )  # fmt: skip

    if not args.quick:
        deferred = sample_deferred(python, layouts, max(1, runs // 3))
        result["deferred"] = {
            case: {name: summary.as_dict() for name, summary in by_layout.items()}
            for case, by_layout in deferred.items()
        }
        print_table(
            "Deferred imports (paid by the first invocation that needs them, not by init)",
            ["what", "source only", "bytecode"],
            [[case, s["source"].ms(), s["bytecode"].ms()] for case, s in deferred.items()],
        )

    zip_met = sizes["code"]["zip_bytes"] < TARGET_ZIP_BYTES
    print_table(
        "Artifacts",
        ["artifact", "zipped", "unzipped", "of which bytecode (zipped / unzipped)", "target"],
        [
            [
                f"{path.name}{' (before)' if name == 'before' else ''}",
                f"{sizes[key]['zip_bytes']:,} B",
                f"{sizes[key]['unzipped_bytes']:,} B",
                f"{sizes[key]['pyc_compressed_bytes']:,} / {sizes[key]['pyc_unzipped_bytes']:,}"
                f" B ({sizes[key]['pyc_files']} pycs)",
                f"< 200,000 B: {verdict(zip_met)}" if key == "code" else "",
            ]
            for name, by_kind in zips.items()
            for kind, path in by_kind.items()
            for key in [kind if name == "bytecode" else f"{name}_{kind}"]
        ],
    )
    handlers = result["handlers"]
    result["target_zip_met"] = zip_met
    result["target_bytecode_met"] = all(handlers[h]["target_bytecode_met"] for h in HANDLERS)
    result["target_bytecode_cpu_met"] = all(
        handlers[h]["target_bytecode_cpu_met"] for h in HANDLERS
    )
    result["target_import_met"] = all(handlers[h]["budget_met"] for h in HANDLERS)
    result["import_median_seconds"] = {
        layout: {h: handlers[h][f"{layout}_seconds"]["median"] for h in HANDLERS}
        for layout in names
    }
    result["cpu_median_seconds"] = {
        layout: {h: handlers[h]["cpu_seconds"][layout]["median"] for h in HANDLERS}
        for layout in names
    }
    result["bytecode_over_source"] = {h: handlers[h]["bytecode_over_source"] for h in HANDLERS}
    if before:
        result["bytecode_over_before"] = {h: handlers[h]["bytecode_over_before"] for h in HANDLERS}
    result["median_of_medians"] = statistics.median(
        handlers[h]["bytecode_seconds"]["median"] for h in HANDLERS
    )
    emit(result)


if __name__ == "__main__":
    main()
