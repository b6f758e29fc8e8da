#!/usr/bin/env python3
"""Run every bench script, one after the other, and collect their JSON result lines.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...]

Each script's full output goes to ``build/bench/results/<stamp>/<name>.log`` and its last
line (one JSON object) into ``build/bench/results/<stamp>/results.json``; a summary of
every target follows. Scripts run sequentially so they never compete for the 2 cores.
The exit status is 0 when every script ran, whatever the targets say: a missed target is a
result, not a failure of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import emit, machine, parse_args, print_table, work_dir

SCRIPTS = (
    "cold_start",
    "archive",
    "tag",
    "thumbnail",
    "json_transform",
    "json_candidates",
    "json_instructions",
    "bundle",
    "cost_model",
    "end_to_end",
)
BENCH = Path(__file__).resolve().parent


def targets(name: str, result: dict[str, Any]) -> list[tuple[str, bool | None]]:
    """(target, met) pairs from a script's result; None when it did not run."""
    if not result:
        return [("(no result)", None)]
    if name == "end_to_end":
        return [("ran on the local stack", bool(result.get("ran")))]
    if name == "thumbnail":
        return [
            (f"{fmt} {key}", bool(value))
            for fmt, entry in sorted(result.get("formats", {}).items())
            for key, value in sorted(entry.items())
            if key.startswith("target_")
        ]
    return sorted((key, bool(value)) for key, value in result.items() if key.startswith("target_"))


def main() -> None:
    def options(parser: Any) -> None:
        parser.add_argument("--only", nargs="+", choices=SCRIPTS, default=None)
        parser.add_argument("--skip", nargs="+", choices=SCRIPTS, default=())

    args = parse_args(__doc__ or "", options)
    selected = [s for s in (args.only or SCRIPTS) if s not in args.skip]
    folder = work_dir("results") / time.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True)
    collected: dict[str, Any] = {}
    rows = []
    for name in selected:
        command = [sys.executable, str(BENCH / f"{name}.py"), *(["--quick"] if args.quick else [])]
        print(f"== {' '.join(command)}", flush=True)
        started = time.monotonic()
        log = folder / f"{name}.log"
        with log.open("w") as output:
            completed = subprocess.run(
                command, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        seconds = time.monotonic() - started
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            result = {}
        if completed.returncode != 0:
            result = {}
        collected[name] = {"seconds": round(seconds, 1), "exit": completed.returncode, **result}
        for target, met in targets(name, result):
            verdict = "no result" if met is None else "met" if met else "NOT MET"
            rows.append([name, f"{seconds:.0f} s", target, verdict])
        print(f"   exit {completed.returncode} after {seconds:.0f} s; log {log}", flush=True)
    (folder / "results.json").write_text(json.dumps(collected, indent=2, sort_keys=True))
    print_table("Targets", ["script", "time", "target", "verdict"], rows)
    emit({"bench": "run_all", "quick": args.quick, "machine": machine(), "results": collected})
    sys.exit(0 if all(entry["exit"] == 0 for entry in collected.values()) else 1)


if __name__ == "__main__":
    main()
