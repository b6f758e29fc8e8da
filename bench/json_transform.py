#!/usr/bin/env python3
"""JSON transform: records per second and peak memory, sluice vs common vs parse-only.

    .venv/bin/python bench/json_transform.py [--quick] [--no-moto] [--before SRC] [--profile]

Inputs: retina-scan files (one JSON array of records, as ``retina/*.json``) of 10 MB,
100 MB and 1 GB, generated from a seed under ``build/bench/json/``; 1% of the records
break the schema in one of several ways. ``--quick`` uses 1 MB and 3 MB, one repetition.

Every case runs in its own child process, which reports its wall time, records and its
peak resident set size (``VmHWM``); the cases of one size are interleaved and repeated.

* sluice: ``sluice.records.transform_records`` reading the file in chunks and writing into
  ``sluice.s3io.MultipartWriter`` (whose S3 client is an in-process stub that drops the
  parts), i.e. what the transform handler runs, buffers included.
* common: ``json.load`` of the whole file, then ``jsonschema.validate(record, schema)`` for
  each record. ``validate`` checks the schema itself on every call, so it manages tens of
  records a second: the child validates records for ``--common-budget`` seconds after the
  load and the rate is extrapolated to the whole file (load time + records / rate). The
  load and so the peak memory are real.
* common_compiled (information): ``json.load``, then one ``Draft202012Validator`` reused for
  every record (what a careful hand-written handler would do); time-boxed to three times
  the common budget and extrapolated in the same way when the file is larger than that.
* parse_only: ijson's yajl2_c ``basic_parse`` over the same stream, events consumed and
  nothing built: the floor for a streaming parser.
* sluice_before (with ``--before SRC``): the sluice case run from another source tree
  (e.g. ``git worktree add build/before main`` then ``--before build/before/src``), so a
  change is measured before and after in one run, interleaved with the other cases.

Targets: sluice >= 20x the common implementation's records/s; sluice's peak memory flat
(1 GB minus 10 MB within 64 MB); sluice >= 50% of parse_only's records/s at 100 MB and 1 GB
(issue 16; with ``--quick``, at every size). Each child also reports its CPU time, and the
ratio to parse_only is given by CPU time too: on a shared machine wall time counts the
waits for a core, CPU time does not. Unless ``--no-moto``, one more run pushes the 100 MB file
(1 MB with ``--quick``) through the transform's ``process`` against a moto server (S3 GET,
multipart PUT of the output), in a child, for its time and peak memory. ``--profile``
adds a cProfile of sluice's path on the smallest file, after one warm-up run (so that
imports and the validator built on the first invalid record are not in it).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import pstats
import random
import sys
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    MIB,
    Summary,
    emit,
    fmt_mib,
    machine,
    moto_server,
    parse_args,
    peak_rss_bytes,
    print_table,
    ratio,
    run_child,
    use_endpoint,
    verdict,
    work_dir,
)

SEED = 6
INVALID_EVERY = 100
SIZES_FULL = {"10MB": 10**7, "100MB": 10**8, "1GB": 10**9}
SIZES_QUICK = {"1MB": 10**6, "3MB": 3 * 10**6}
TARGET_VS_COMMON = 20.0
TARGET_FLAT_BYTES = 64 * MIB
TARGET_OF_PARSE_ONLY = 0.5
TARGET_OF_PARSE_ONLY_SIZES = ("100MB", "1GB")
CASES = ("sluice", "common", "common_compiled", "parse_only")

DIAGNOSES = (
    "normal",
    "normal",
    "glaucoma_suspect",
    "glaucoma",
    "diabetic_retinopathy",
    "macular_degeneration",
    "retinal_detachment",
)
SYLLABLES = ("ka", "lo", "mi", "ren", "ta", "vos", "el", "da", "ri", "sun", "be", "no", "zar")
BREAKAGES = (
    ("patient_id", "12-3456"),
    ("scan_date", "2024-02-30"),
    ("retina_thickness_microns", 912.4),
    ("diagnosis", "cataract"),
    ("optic_disc_cup_ratio", "0.4"),
    ("referring_doctor", "Dr Talo"),
)


# Inputs ------------------------------------------------------------------------------------
def record(rng: random.Random, number: int) -> dict[str, Any]:
    def word(parts: int) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()

    item: dict[str, Any] = {
        "patient_id": f"P{number % 1_000_000:06d}",
        "patient_name": f"{word(rng.randint(2, 3))} {word(rng.randint(2, 4))}",
        "scan_date": (date(2024, 1, 2) + timedelta(days=rng.randint(0, 360))).isoformat(),
        "retina_thickness_microns": round(rng.uniform(240, 480), 1),
        "optic_disc_cup_ratio": round(rng.uniform(0.2, 0.9), 2),
        "diagnosis": rng.choice(DIAGNOSES),
    }
    if number % INVALID_EVERY == INVALID_EVERY - 1:
        field, value = BREAKAGES[(number // INVALID_EVERY) % len(BREAKAGES)]
        item[field] = value
    return item


def make_file(size: int) -> Path:
    """A JSON array of at least ``size`` bytes, one record a line, cached by size and seed."""
    path = work_dir("json") / f"retina-{size}-{SEED}.json"
    if path.exists():
        return path
    rng = random.Random(SEED)
    partial = path.with_suffix(".partial")
    written = 0
    number = 0
    with partial.open("wb") as out:
        out.write(b"[\n")
        while written < size:
            lines = []
            for _ in range(1000):
                separator = "" if number == 0 else ",\n"
                lines.append(separator + json.dumps(record(rng, number), ensure_ascii=False))
                number += 1
            chunk = "".join(lines).encode("utf-8")
            out.write(chunk)
            written += len(chunk)
        out.write(b"\n]\n")
    partial.rename(path)
    return path


# Children: one case each -------------------------------------------------------------------
class _DiscardingS3:
    """Just enough of an S3 client for MultipartWriter; the parts are dropped."""

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "bench"}

    def upload_part(self, *, PartNumber: int, Body: Any, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"done"'}

    def put_object(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"single"'}

    def abort_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {}


def child_sluice(path: Path) -> dict[str, Any]:
    from sluice.datasets import load_registry
    from sluice.records import transform_records
    from sluice.s3io import MultipartWriter

    dataset = load_registry().for_key("retina/bench.json")
    assert dataset is not None
    s3 = _DiscardingS3()
    errors = 0

    def on_error(_: dict[str, Any]) -> None:
        nonlocal errors
        errors += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    with path.open("rb") as source:
        out = MultipartWriter(s3, "bucket", "data/bench.json")
        result = transform_records(source, "array", dataset, out, on_error)
        out.complete()
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "records": result.records_total,
        "valid": result.records_valid,
        "invalid": result.records_invalid,
        "output_bytes": out.bytes_written,
        "error_lines": errors,
    }


def child_common(path: Path, budget: float) -> dict[str, Any]:
    import jsonschema

    from sluice.datasets import load_registry

    dataset = load_registry().for_key("retina/bench.json")
    assert dataset is not None
    schema = dict(dataset.schema)
    started = time.perf_counter()
    with path.open(encoding="utf-8") as source:
        records = json.load(source)
    loaded = time.perf_counter()
    validated = invalid = 0
    deadline = loaded + budget
    for item in records:
        try:
            jsonschema.validate(item, schema)
        except jsonschema.ValidationError:
            invalid += 1
        validated += 1
        if validated % 16 == 0 and time.perf_counter() > deadline:
            break
    validating = time.perf_counter() - loaded
    rate = validated / validating
    return {
        "seconds": (loaded - started) + len(records) / rate,
        "load_seconds": loaded - started,
        "records": len(records),
        "validated": validated,
        "invalid": invalid,
        "validate_records_per_second": rate,
        "extrapolated": validated < len(records),
    }


def child_common_compiled(path: Path, budget: float) -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    from sluice.datasets import load_registry

    dataset = load_registry().for_key("retina/bench.json")
    assert dataset is not None
    validator = Draft202012Validator(dataset.schema)
    started = time.perf_counter()
    with path.open(encoding="utf-8") as source:
        records = json.load(source)
    loaded = time.perf_counter()
    validated = invalid = 0
    deadline = loaded + budget
    for item in records:
        invalid += not validator.is_valid(item)
        validated += 1
        if validated % 256 == 0 and time.perf_counter() > deadline:
            break
    rate = validated / (time.perf_counter() - loaded)
    return {
        "seconds": (loaded - started) + len(records) / rate,
        "load_seconds": loaded - started,
        "records": len(records),
        "validated": validated,
        "invalid": invalid,
        "extrapolated": validated < len(records),
    }


def child_parse_only(path: Path) -> dict[str, Any]:
    import ijson

    backend: Any = ijson.get_backend("yajl2_c")
    started, cpu_started = time.perf_counter(), time.process_time()
    depth = records = 0
    with path.open("rb") as source:
        for event, _ in backend.basic_parse(source, buf_size=64 * 1024):
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
                records += depth == 1
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "records": records,
    }


def child_moto(path: Path, endpoint: str) -> dict[str, Any]:
    """The transform's whole process through a moto server: GET, validate, multipart PUT."""
    import os

    import boto3

    use_endpoint(endpoint)
    env = {
        "RAW_BUCKET": "bench-raw",
        "PROCESSED_BUCKET": "bench-processed",
        "IMAGES_TABLE": "bench-images",
    }
    os.environ.update(env)
    s3 = boto3.client("s3")
    for bucket in ("bench-raw", "bench-processed"):
        s3.create_bucket(Bucket=bucket)
    key = "retina/bench.json"
    s3.upload_file(str(path), "bench-raw", key)
    etag = s3.head_object(Bucket="bench-raw", Key=key)["ETag"]
    before = peak_rss_bytes()

    from sluice.events import S3ObjectRef, normalize_etag
    from sluice.handlers import transform

    ref = S3ObjectRef("bench-raw", key, "ObjectCreated:Put", etag=normalize_etag(etag))
    if hasattr(transform, "Dependencies"):  # the handler skeleton (issue 11)
        process = functools.partial(transform.process, transform.Dependencies.from_env(os.environ))
    else:  # a --before tree older than it
        process = functools.partial(
            transform.transform_object, transform.CLIENTS, transform.SETTINGS
        )
    started, cpu_started = time.perf_counter(), time.process_time()
    receipt = process(ref)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    assert receipt is not None and receipt.status == "processed", receipt
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "records": receipt.stats["records_total"],
        "peak_rss_before_transform": before,
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("case")
    parser.add_argument("path", type=Path)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--endpoint")
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start()
    if args.case == "sluice":
        result = child_sluice(args.path)
    elif args.case == "common":
        result = child_common(args.path, args.budget)
    elif args.case == "common_compiled":
        result = child_common_compiled(args.path, args.budget)
    elif args.case == "parse_only":
        result = child_parse_only(args.path)
    elif args.case == "moto":
        result = child_moto(args.path, args.endpoint)
    else:
        raise SystemExit(f"unknown case {args.case}")
    result["peak_rss"] = peak_rss_bytes()
    if args.tracemalloc:
        result["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
    print(json.dumps(result))


# Parent ------------------------------------------------------------------------------------
def run_case(
    case: str, path: Path, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    return run_child([__file__, "--child", case, str(path), *extra], env=env)


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--no-moto", action="store_true", help="skip the moto end-to-end run")
        parser.add_argument("--common-budget", type=float, default=None)
        parser.add_argument(
            "--profile", action="store_true", help="cProfile sluice on the smallest file"
        )
        parser.add_argument(
            "--sizes",
            help=f"comma-separated subset of {', '.join(SIZES_FULL)} (default: all)",
        )
        parser.add_argument(
            "--before",
            type=Path,
            help="a source tree (its src/) to run as the sluice_before case",
        )

    args = parse_args(__doc__ or "", options)
    sizes = SIZES_QUICK if args.quick else SIZES_FULL
    if args.sizes:
        sizes = {label: sizes[label] for label in args.sizes.split(",")}
    budget = args.common_budget or (0.5 if args.quick else 15.0)
    result: dict[str, Any] = {"bench": "json_transform", "quick": args.quick, "machine": machine()}
    per_size: dict[str, Any] = {}
    rows = []
    cases = CASES + (("sluice_before",) if args.before else ())
    before_env = {"PYTHONPATH": str(args.before.resolve())} if args.before else None
    for label, size in sizes.items():
        path = make_file(size)
        file_bytes = path.stat().st_size
        repetitions = 1 if args.quick or size >= 10**9 else 3 if size <= 10**7 else 2
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
        for _ in range(repetitions):
            for case in cases:
                extra: tuple[str, ...] = ()
                if case == "common":
                    extra = ("--budget", str(budget))
                elif case == "common_compiled":
                    extra = ("--budget", str(budget * 3))
                if case == "sluice_before":
                    runs[case].append(run_case("sluice", path, env=before_env))
                else:
                    runs[case].append(run_case(case, path, *extra))
        entry: dict[str, Any] = {"file_bytes": file_bytes, "repetitions": repetitions}
        for case, samples in runs.items():
            seconds = Summary.of([s["seconds"] for s in samples])
            records = samples[0]["records"]
            cpu = Summary.of([s.get("cpu_seconds", s["seconds"]) for s in samples])
            entry[case] = {
                "records": records,
                "seconds": seconds.as_dict(),
                "cpu_seconds": cpu.as_dict(),
                "records_per_second": round(records / seconds.median),
                "peak_rss": max(s["peak_rss"] for s in samples),
                "extrapolated": bool(samples[0].get("extrapolated", False)),
            }
            if case in ("common", "common_compiled"):
                entry[case]["validated_records"] = samples[0]["validated"]
                entry[case]["load_seconds"] = round(samples[0]["load_seconds"], 3)
            rows.append(
                [
                    label,
                    case + (" (extrapolated)" if entry[case]["extrapolated"] else ""),
                    f"{records:,}",
                    f"{seconds.median:.2f} s [{seconds.low:.2f}-{seconds.high:.2f}]",
                    f"{entry[case]['records_per_second']:,}",
                    fmt_mib(entry[case]["peak_rss"]),
                ]
            )
        sluice_rps = entry["sluice"]["records_per_second"]
        entry["sluice_vs_common"] = ratio(sluice_rps, entry["common"]["records_per_second"])
        entry["sluice_vs_common_compiled"] = ratio(
            sluice_rps, entry["common_compiled"]["records_per_second"]
        )
        entry["sluice_vs_parse_only"] = ratio(sluice_rps, entry["parse_only"]["records_per_second"])
        floor_cpu = entry["parse_only"]["cpu_seconds"]["median"]
        for case in ("sluice", "sluice_before"):
            if case in entry:
                entry[f"{case}_vs_parse_only_cpu"] = ratio(
                    floor_cpu, entry[case]["cpu_seconds"]["median"]
                )
        if "sluice_before" in entry:
            entry["sluice_before_vs_parse_only"] = ratio(
                entry["sluice_before"]["records_per_second"],
                entry["parse_only"]["records_per_second"],
            )
        if size <= 10**8 and (not args.quick or label == next(iter(sizes))):
            traced = run_case("sluice", path, "--tracemalloc")
            entry["sluice"]["tracemalloc_peak"] = traced["tracemalloc_peak"]
        per_size[label] = entry
    result["sizes"] = per_size
    if args.profile:
        result["profile_sluice"] = profile_sluice(make_file(next(iter(sizes.values()))))

    print(f"retina JSON arrays, 1 in {INVALID_EVERY} records invalid; each case a child process;"
          " median [min-max] of the repetitions")  # fmt: skip
    print_table(
        "Records per second and peak RSS",
        ["size", "case", "records", "time", "records/s", "peak RSS"],
        rows,
    )
    ratio_rows = [
        [
            label,
            f"{entry['sluice_vs_common']:,}x",
            f"{entry['sluice_vs_common_compiled']}x",
            f"{entry['sluice_vs_parse_only']} (CPU {entry['sluice_vs_parse_only_cpu']})",
            _before_of_floor(entry),
            fmt_mib(entry["sluice"]["tracemalloc_peak"])
            if "tracemalloc_peak" in entry["sluice"]
            else "-",
        ]
        for label, entry in per_size.items()
    ]  # fmt: skip
    print_table(
        "sluice ratios",
        [
            "size",
            "vs common",
            "vs common_compiled",
            "of parse-only",
            "before: of parse-only",
            "tracemalloc peak",
        ],
        ratio_rows,
    )

    labels = list(per_size)
    smallest, largest = per_size[labels[0]], per_size[labels[-1]]
    growth = largest["sluice"]["peak_rss"] - smallest["sluice"]["peak_rss"]
    worst_ratio = min(entry["sluice_vs_common"] for entry in per_size.values())
    result["sluice_peak_rss_growth"] = growth
    result["sluice_vs_common_min"] = worst_ratio
    result["target_vs_common_met"] = worst_ratio >= TARGET_VS_COMMON
    result["target_flat_memory_met"] = growth <= TARGET_FLAT_BYTES
    floor_sizes = [label for label in labels if args.quick or label in TARGET_OF_PARSE_ONLY_SIZES]
    floor_sizes = floor_sizes or labels  # --sizes without 100MB or 1GB: judge what ran
    worst_of_floor = min(per_size[label]["sluice_vs_parse_only"] for label in floor_sizes)
    worst_of_floor_cpu = min(per_size[label]["sluice_vs_parse_only_cpu"] for label in floor_sizes)
    result["sluice_vs_parse_only_min"] = worst_of_floor
    result["target_of_parse_only_met"] = worst_of_floor >= TARGET_OF_PARSE_ONLY
    result["sluice_vs_parse_only_cpu_min"] = worst_of_floor_cpu
    result["target_of_parse_only_cpu_met"] = worst_of_floor_cpu >= TARGET_OF_PARSE_ONLY

    if not args.no_moto:
        moto_label = labels[0] if args.quick else "100MB"
        moto_path = make_file(sizes[moto_label])
        with moto_server() as endpoint:
            moto = run_case("moto", moto_path, "--endpoint", endpoint)
        moto["records_per_second"] = round(moto["records"] / moto["seconds"])
        moto["size"] = moto_label
        result["moto_end_to_end"] = moto
        print_table(
            "Through moto's S3 (the transform's process: GET, validate, multipart PUT)",
            ["size", "records", "time", "records/s", "peak RSS (whole child)"],
            [[moto_label, f"{moto['records']:,}", f"{moto['seconds']:.2f} s",
              f"{moto['records_per_second']:,}", fmt_mib(moto["peak_rss"])]],
        )  # fmt: skip

    print_table(
        "Targets",
        ["target", "measured", "verdict"],
        [
            [f"sluice >= {TARGET_VS_COMMON:.0f}x common (records/s, every size)",
             f"{worst_ratio:,}x", verdict(result["target_vs_common_met"])],
            [f"peak RSS {labels[0]} -> {labels[-1]} within {fmt_mib(TARGET_FLAT_BYTES)}",
             f"+{fmt_mib(growth)}", verdict(result["target_flat_memory_met"])],
            [f"sluice >= {TARGET_OF_PARSE_ONLY:.0%} of parse-only ({', '.join(floor_sizes)})",
             f"{worst_of_floor}", verdict(result["target_of_parse_only_met"])],
            ["the same by CPU time (what a shared machine leaves comparable)",
             f"{worst_of_floor_cpu}", verdict(result["target_of_parse_only_cpu_met"])],
        ],
    )  # fmt: skip
    if "profile_sluice" in result:
        print("\nProfile of sluice on the smallest file (cProfile, by own time):")
        print("\n".join(result["profile_sluice"]))
    emit(result)


def _before_of_floor(entry: dict[str, Any]) -> str:
    if "sluice_before" not in entry:
        return "-"
    return (
        f"{entry['sluice_before_vs_parse_only']} (CPU {entry['sluice_before_vs_parse_only_cpu']})"
    )


def profile_sluice(path: Path) -> list[str]:
    child_sluice(path)  # once first: imports and the first invalid record's validator
    profiler = cProfile.Profile()
    profiler.enable()
    child_sluice(path)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(10)
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return [line for line in lines[start:] if line.strip()]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
