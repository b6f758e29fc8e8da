#!/usr/bin/env python3
"""End to end on the local stack: files per second and upload-to-receipt latency.

    .venv/bin/python bench/end_to_end.py [--quick] [--keep]

1. A copy of the checkout's working tree goes to ``build/bench/e2e/stack/`` (so the stack's
   ``.sluice/`` state and port never collide with another local stack in this checkout;
   ``build/cache`` is linked, so the layer build stays offline; ``scripts/terraformrc.sh``
   writes its Terraform CLI configuration), and
   ``python -m sluice.local up --port <free port> --no-samples`` brings the stack up there
   (moto server, build, Terraform apply, runner).
2. 1,000 mixed files (``--quick``: 60), generated from a seed: 50% JPEG photos (640x480),
   10% PNG, 30% retina JSON arrays and 8% JSON Lines (50 records each, some invalid), 2%
   unsupported ``.txt``.
3. ``aws s3 cp --recursive`` uploads them to RAW; each ``upload:`` line it prints is
   timestamped as that file's upload time.
4. The receipts under PROCESSED ``receipts/`` are polled until every file has one; a file's
   latency is its receipt's ``LastModified`` minus its upload time. Files per second =
   files / (last receipt - start of the upload).
5. Where the time goes: the runner's REPORT lines (``.sluice/local/logs/*.log``) give every
   invocation's duration, so each function's busy time, invocations and batch sizes are
   set against the wall time; latency is also split by kind.

``python -m sluice.local down`` stops the stack afterwards unless ``--keep``. If ``up``
fails, the result says so (``"ran": false``, with the reason) instead of inventing figures.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchlib import (
    REPO_ROOT,
    emit,
    free_port,
    machine,
    parse_args,
    print_table,
    work_dir,
)

from sluice import workdir

SEED = 1000
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", workdir.DIRECTORY, ".terraform", "__pycache__", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", "*.egg-info",
)  # fmt: skip
UP_TIMEOUT = 1500.0
MIX = (("jpg", 50), ("png", 10), ("json", 30), ("jsonl", 8), ("txt", 2))
REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms")


# Inputs ------------------------------------------------------------------------------------
def make_files(count: int) -> Path:
    import numpy as np
    from PIL import Image

    folder = work_dir("e2e") / f"files-{count}-{SEED}"
    if folder.exists():
        return folder
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    rng = random.Random(SEED)
    pixels = np.random.default_rng(SEED)
    kinds = [kind for kind, share in MIX for _ in range(count * share // 100)]
    kinds += ["jpg"] * (count - len(kinds))
    for number, kind in enumerate(kinds):
        if kind in ("jpg", "png"):
            size = (640, 480) if kind == "jpg" else (320, 240)
            base = pixels.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
            image = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)
            path = staging / "photos" / f"photo-{number:04d}.{kind}"
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG" if kind == "jpg" else "PNG")
            path.write_bytes(buffer.getvalue())
        elif kind in ("json", "jsonl"):
            records = [_record(rng, number * 100 + n) for n in range(50)]
            path = staging / "retina" / f"scans-{number:04d}.{kind}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "json":
                path.write_text(json.dumps(records, indent=1))
            else:
                path.write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            path = staging / "other" / f"note-{number:04d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not a pipeline input\n")
    staging.rename(folder)
    return folder


def _record(rng: random.Random, number: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "patient_id": f"P{number % 1_000_000:06d}",
        "patient_name": f"Bench Patient {number}",
        "scan_date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "retina_thickness_microns": round(rng.uniform(240, 320), 1),
        "optic_disc_cup_ratio": round(rng.uniform(0.2, 0.5), 2),
        "diagnosis": "normal",
    }
    if number % 25 == 0:
        record["diagnosis"] = "cataract"
    return record


def kind_of(key: str) -> str:
    return key.rsplit(".", 1)[-1]


# Stack -------------------------------------------------------------------------------------
def stack_copy() -> Path:
    target = work_dir("e2e") / "stack"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO_ROOT, target, ignore=COPY_IGNORE, symlinks=True)
    (target / "build").mkdir()
    (target / "build" / "cache").symlink_to(REPO_ROOT / "build" / "cache")
    # The Terraform CLI configuration (provider mirror), as scripts/bootstrap.sh writes it.
    subprocess.run(
        ["bash", str(target / "scripts" / "terraformrc.sh"),
         str(workdir.terraformrc(target))],
        cwd=target, check=True, capture_output=True,
    )  # fmt: skip
    return target


def local(root: Path, *command: str, log: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    with log.open("a") as output:
        return subprocess.run(
            [sys.executable, "-m", "sluice.local", *command],
            cwd=root, stdout=output, stderr=subprocess.STDOUT, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip


def environment_of(root: Path) -> dict[str, Any]:
    from sluice.local.stack.state import LOCAL_ENVIRONMENT, StateDir
    from sluice.ops.environment import select_environment

    path = StateDir(root).outputs
    environment = select_environment(json.loads(path.read_text()), LOCAL_ENVIRONMENT, str(path))
    return {"raw": environment.raw_bucket, "processed": environment.processed_bucket}


# Measurement -------------------------------------------------------------------------------
def upload(folder: Path, bucket: str, endpoint: str) -> tuple[float, dict[str, float], list[str]]:
    """Start time, per-key completion times and failure lines of ``aws s3 cp --recursive``."""
    from sluice.local import awsenv

    aws = Path(sys.executable).with_name("aws")
    env = awsenv.local_env(endpoint)  # the local stack's own fake keys and region
    started = time.time()
    # One pipe for both streams: reading only stdout while errors fill stderr would deadlock.
    process = subprocess.Popen(
        [str(aws), "--endpoint-url", endpoint, "s3", "cp", "--recursive", "--no-progress",
         f"{folder}/", f"s3://{bucket}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    uploaded: dict[str, float] = {}
    failures: list[str] = []
    prefix = f" to s3://{bucket}/"
    for line in process.stdout:
        if line.startswith("upload:") and prefix in line:
            uploaded[line.rstrip("\n").split(prefix, 1)[1]] = time.time()
        elif line.strip():
            failures.append(line.strip())
    process.wait()
    return started, uploaded, failures


def wait_for_receipts(s3: Any, bucket: str, keys: set[str], deadline: float) -> dict[str, float]:
    """Receipt LastModified (epoch seconds) for each key, polling until all are there."""
    found: dict[str, float] = {}
    while True:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="receipts/"):
            for item in page.get("Contents", []):
                key = item["Key"].removeprefix("receipts/").removesuffix(".json")
                if key in keys:
                    found[key] = item["LastModified"].timestamp()
        if len(found) == len(keys) or time.time() > deadline:
            return found
        time.sleep(1.0)


def busy_time(root: Path) -> dict[str, dict[str, float]]:
    """Per function: invocations and summed duration (the logs were emptied before the run)."""
    from sluice.local.stack.state import StateDir

    stats: dict[str, dict[str, float]] = {}
    for log in sorted(StateDir(root).worker_logs.glob("*.log")):
        durations = []
        for line in log.read_text(errors="replace").splitlines():
            match = REPORT.search(line)
            if match:
                durations.append(float(match.group(1)) / 1000)
        stats[log.stem.rsplit("-", 1)[-1]] = {
            "invocations_total": len(durations),
            "busy_seconds_total": round(sum(durations), 3),
        }
    return stats


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--keep", action="store_true", help="leave the stack running")

    args = parse_args(__doc__ or "", options)
    count = 60 if args.quick else 1000
    result: dict[str, Any] = {"bench": "end_to_end", "quick": args.quick, "machine": machine()}
    files = make_files(count)
    keys = {path.relative_to(files).as_posix() for path in files.rglob("*") if path.is_file()}
    root = stack_copy()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = work_dir("e2e") / "stack.log"
    log.write_text("")
    up_started = time.monotonic()
    try:
        up = local(root, "up", "--port", str(port), "--no-samples", log=log, timeout=UP_TIMEOUT)
    except subprocess.TimeoutExpired:
        up = None
    result["up_seconds"] = round(time.monotonic() - up_started, 1)
    if up is None or up.returncode != 0:
        tail = log.read_text()[-3000:]
        print(f"local stack did not come up (see {log}):\n{tail}")
        result.update(ran=False, reason=f"sluice.local up failed: {tail[-500:]}")
        local(root, "down", log=log, timeout=120)
        emit(result)
        return
    try:
        buckets = environment_of(root)
        from sluice.local.stack.state import StateDir

        for worker_log in StateDir(root).worker_logs.glob("*.log"):
            worker_log.write_text("")  # only this run's invocations count below
        from sluice.local import awsenv

        s3 = awsenv.client("s3", endpoint)
        started, uploaded, failures = upload(files, buckets["raw"], endpoint)
        cp_done = time.time()
        if failures and not uploaded:
            print("aws s3 cp uploaded nothing; first errors:\n" + "\n".join(failures[:5]))
            result.update(
                ran=False,
                reason=f"aws s3 cp to the local stack failed for every file: {failures[0]}",
                upload_failures=len(failures),
            )
            emit(result)
            return
        # Only what was uploaded can have a receipt; a failed upload is reported, not awaited.
        receipts = wait_for_receipts(
            s3, buckets["processed"], set(uploaded), deadline=cp_done + 1800
        )
        busy = busy_time(root)
    finally:
        if not args.keep:
            local(root, "down", log=log, timeout=300)

    missing = sorted(keys - receipts.keys())
    latencies = {key: receipts[key] - uploaded[key] for key in receipts if key in uploaded}
    wall = max(receipts.values()) - started if receipts else float("nan")
    by_kind: dict[str, list[float]] = defaultdict(list)
    for key, latency in latencies.items():
        by_kind[kind_of(key)].append(latency)
    values = list(latencies.values())
    result.update(
        ran=True,
        files=count,
        uploaded=len(uploaded),
        upload_failures=failures[:20],
        receipts=len(receipts),
        missing=missing[:20],
        upload_seconds=round(cp_done - started, 2),
        wall_seconds=round(wall, 2),
        files_per_second=round(len(receipts) / wall, 2),
        latency_p50=round(statistics.median(values), 3),
        latency_p95=round(percentile(values, 0.95), 3),
        latency_by_kind={
            kind: {
                "n": len(v),
                "p50": round(statistics.median(v), 3),
                "p95": round(percentile(v, 0.95), 3),
            }
            for kind, v in sorted(by_kind.items())
        },
        functions=busy,
        kinds=dict(Counter(kind_of(key) for key in keys)),
    )
    print(f"{count} files ({result['kinds']}); stack up in {result['up_seconds']} s")
    print_table(
        "Throughput and latency (upload line of aws s3 cp -> receipt LastModified)",
        ["files", "receipts", "upload", "wall", "files/s", "p50", "p95"],
        [[count, len(receipts), f"{result['upload_seconds']} s", f"{wall:.1f} s",
          result["files_per_second"], f"{result['latency_p50']:.2f} s",
          f"{result['latency_p95']:.2f} s"]],
    )  # fmt: skip
    print_table(
        "Latency by kind",
        ["kind", "files", "p50", "p95"],
        [[k, v["n"], f"{v['p50']:.2f} s", f"{v['p95']:.2f} s"]
         for k, v in result["latency_by_kind"].items()],
    )  # fmt: skip
    print_table(
        "Where the time goes: handler busy time (REPORT durations) vs wall time",
        ["function", "invocations", "busy", "busy / wall"],
        [[name, int(s["invocations_total"]), f"{s['busy_seconds_total']:.1f} s",
          f"{s['busy_seconds_total'] / wall:.0%}"] for name, s in busy.items()],
    )  # fmt: skip
    if missing:
        print(f"{len(missing)} files had no receipt by the deadline, e.g. {missing[:5]}")
    emit(result)


if __name__ == "__main__":
    main()
