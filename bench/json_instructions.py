#!/usr/bin/env python3
"""JSON transform against the parse-only floor in instructions (callgrind), not in time.

    .venv/bin/python bench/json_instructions.py [--quick] [--before SRC]

Times on a shared machine move with the load; the number of instructions a run executes
hardly does. Each case runs once in a child under valgrind's callgrind (the 10 MB retina
file of ``json_transform.py``; 1 MB with ``--quick``), and so does a child that only
imports what the cases import, loads the dataset and builds its jsonschema validator
(done once a process, on the first invalid record): a case's count is its child's total
minus that baseline. The share of the floor is the floor's count over the case's.

* parse_only: ijson yajl2_c ``basic_parse`` over the file with a loop over the events
  (``json_transform.py``'s parse_only, the floor of issue 16);
* sluice: ``transform_records`` from the file into a writer that drops the bytes;
* sluice_before (with ``--before SRC``): the same from another source tree.

Needs valgrind (``apt-get install valgrind``); a run takes about 50 times the native time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import REPO_ROOT, emit, machine, parse_args, print_table
from json_transform import SIZES_FULL, SIZES_QUICK, make_file

CASES = ("parse_only", "sluice")
COLLECTED = re.compile(r"Collected : (\d+)")


class _Drop:
    def write(self, data: bytes) -> int:
        return len(data)


def child_main(case: str, path: Path) -> None:
    import ijson

    from sluice.datasets import load_registry
    from sluice.records import transform_records

    dataset = load_registry().for_key("retina/bench.json")
    assert dataset is not None
    # Built on the first invalid record (importing jsonschema): once a process, so in
    # every child, the baseline's included, not counted against a case.
    dataset.violations({})
    backend: Any = ijson.get_backend("yajl2_c")
    if case == "parse_only":
        depth = 0
        with path.open("rb") as source:
            for event, _ in backend.basic_parse(source, buf_size=64 * 1024):
                if event in ("start_map", "start_array"):
                    depth += 1
                elif event in ("end_map", "end_array"):
                    depth -= 1
    elif case == "sluice":
        with path.open("rb") as source:
            transform_records(source, "array", dataset, _Drop(), lambda error: None)


def instructions(case: str, path: Path, src: Path | None) -> int:
    """Instructions callgrind counts for one child running ``case``."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={scratch}/callgrind.out",
            sys.executable,
            __file__,
            "--child",
            case,
            str(path),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"callgrind gave no count for {case}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--before", type=Path, help="a source tree (its src/) to compare")

    args = parse_args(__doc__ or "", options)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        emit({"bench": "json_instructions", "quick": args.quick, "skipped": "no valgrind"})
        return
    size = SIZES_QUICK["1MB"] if args.quick else SIZES_FULL["10MB"]
    path = make_file(size)
    src = REPO_ROOT / "src"
    trees = {"parse_only": src, "sluice": src}
    if args.before:
        trees["sluice_before"] = args.before.resolve()
    baseline = {tree: instructions("imports", path, tree) for tree in set(trees.values())}
    counts = {
        name: instructions("sluice" if name == "sluice_before" else name, path, tree)
        - baseline[tree]
        for name, tree in trees.items()
    }
    floor = counts["parse_only"]
    shares = {name: round(floor / count, 3) for name, count in counts.items()}
    print(f"{path.name}: {path.stat().st_size:,} bytes; instructions beyond the imports")
    print_table(
        "Instructions (callgrind)",
        ["case", "instructions", "floor / this"],
        [[name, f"{count:,}", f"{shares[name]:.3f}"] for name, count in counts.items()],
    )
    emit(
        {
            "bench": "json_instructions",
            "quick": args.quick,
            "machine": machine(),
            "file_bytes": path.stat().st_size,
            "instructions": counts,
            "baseline_instructions": {str(tree): count for tree, count in baseline.items()},
            "floor_over": shares,
            "target_of_parse_only_met": shares["sluice"] >= 0.5,
        }
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
