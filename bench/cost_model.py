#!/usr/bin/env python3
"""Cost and sizing model: measured work per input, the Lambda memory each function should
have, and the monthly bill for 1 million photos and 1 TB of JSON against the naive pipeline.

    .venv/bin/python bench/cost_model.py            # writes docs/cost.md (~5 min)
    .venv/bin/python bench/cost_model.py --quick    # smaller inputs, scaled (~1-2 min)
    .venv/bin/python bench/cost_model.py --full     # also measures the 1 GB JSON file

Measurements reuse the other bench scripts (their inputs, children and moto server):

* transform, image: ``sluice.thumbnails.make_thumbnails`` on thumbnail.py's seeded 12 MP JPEG,
  against its "common" Pillow thumbnailer, each in its own child (CPU time, VmHWM). This is
  the handler's CPU work; its S3/DynamoDB calls are counted as requests below, not timed.
* transform, JSON: json_transform.py's ``moto`` child (the whole ``process``
  through a moto server) at 100 KB and 10 MB; 1 GB is extrapolated from the per-MB rate of
  the largest measured file unless ``--full``. Naive: json_transform.py's ``common`` child.
* bundle: bundle.py (``write_bundle_zip`` against moto) at 200 images; archive: archive.py
  (the server-side copy of one object through moto).
* tag: bench/tag.py (the tag handler, labeler ``rekognition``, against moto: CPU, peak RSS
  and loopback wall time per photo). Rekognition's own latency, which no emulator shows, is
  added to the wait as a stated assumption (``REKOGNITION_SECONDS``).

Duration vs memory: Lambda gives CPU in proportion to memory, one full vCPU at 1,769 MB.
The model takes the measured CPU seconds as one vCPU's work (this machine's core stands for
Lambda's), stretches it by 1769/memory below 1,769 MB and not at all above it (every handler
is single-threaded), and adds the measured wait (wall minus CPU) unchanged at every size.
Each function's memory is the size, among those that hold 1.25x its measured peak RSS, that
minimises cost x duration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import json_transform
import thumbnail
from benchlib import (
    BENCH_DIR,
    MIB,
    REPO_ROOT,
    emit,
    machine,
    moto_server,
    peak_rss_bytes,
    print_table,
    run_child,
)

BENCH = Path(__file__).resolve().parent
FULL_VCPU_MB = 1769
LAMBDA_TIMEOUT_S = 900
HEADROOM = 1.25
MEMORY_GRID = tuple(sorted({*range(128, 3009, 64), FULL_VCPU_MB}))
PHOTOS_PER_MONTH = 1_000_000
JSON_BYTES_PER_MONTH = 10**12  # 1 TB (decimal), as 100,000 files of 10 MB
JSON_FILE_BYTES = 10**7
BUNDLE_IMAGES = 200
REKOGNITION_SECONDS = 0.5
"""Assumed: one DetectLabels round trip on an S3 object (not measurable on an emulator)."""

# List prices, us-east-1, from the public AWS pricing pages as the model's author knew them
# (training data up to 2025; not fetched live). Check them before relying on the totals.
PRICES_DATE = (
    "as of 2025, from the public price pages as known from training data, not fetched live"
)
PRICES: dict[str, tuple[float, str]] = {
    "lambda_x86_gb_s": (0.0000166667, "Lambda x86_64, per GB-second (first 6 B GB-s tier)"),
    "lambda_arm_gb_s": (0.0000133334, "Lambda arm64, per GB-second (first 7.5 B GB-s tier)"),
    "lambda_request": (0.20 / 1e6, "Lambda, per request"),
    "s3_put": (0.005 / 1000, "S3 Standard PUT, COPY, POST, LIST, per request"),
    "s3_get": (0.0004 / 1000, "S3 Standard GET, HEAD and other reads, per request"),
    "s3_gb_month": (0.023, "S3 Standard storage, per GB-month (first 50 TB)"),
    "sqs_request": (0.40 / 1e6, "SQS standard queue, per request (64 KB chunk)"),
    "ddb_write": (0.625 / 1e6, "DynamoDB on-demand, per write request unit"),
    "ddb_read": (0.125 / 1e6, "DynamoDB on-demand, per read request unit"),
    "rekognition_image": (0.001, "Rekognition DetectLabels, per image (first 1 M/month)"),
    "sns_publish": (0.50 / 1e6, "SNS standard topic, per publish"),
}

# Requests per input. Archive's are the ones archive.py counts (CopyObject, ListObjectVersions;
# 6 HEAD + 1 GET); the rest are read from the handlers (assumptions of the model).
PHOTO_REQUESTS = {
    "s3_put": 6,  # upload, 2 thumbnails, receipt; archive copy and version list
    "s3_get": 10,  # transform GET and receipt read, tag GET/HEAD; archive 6 HEAD + 1 GET
    "sqs_request": 9,  # 3 queues (transform, archive, tag) x send + receive + delete
    "ddb_write": 4,  # image item, lease, labels, archive location
    "ddb_read": 2,  # tag's item read, archive's item read
    "rekognition_image": 1,
}
JSON_FILE_REQUESTS = {
    "s3_put": 5,  # upload, output, receipt; archive copy and version list
    "s3_get": 9,  # transform GET and receipt read; archive 6 HEAD + 1 GET
    "sqs_request": 6,  # transform and archive queues
    "ddb_write": 1,  # lease
}


def price(name: str) -> float:
    return PRICES[name][0]


# Measurements ------------------------------------------------------------------------------
def child_image(case: str, path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    run = (
        (lambda: thumbnail.sluice_thumbnails(data, "JPEG"))
        if case == "sluice"
        else (lambda: thumbnail.common_thumbnails(data))
    )
    run()  # warm (a warm Lambda container has imported and initialised everything)
    samples = []
    for _ in range(3):
        started = time.process_time()
        run()
        samples.append(time.process_time() - started)
    samples.sort()
    return {"cpu_seconds": samples[1], "seconds": samples[1], "peak_rss": peak_rss_bytes()}


def measure_images(quick: bool) -> dict[str, Any]:
    width, height = (2000, 1500) if quick else (4000, 3000)
    thumbnail.inputs(width, height)
    path = BENCH_DIR / "thumbnail" / f"photo-{width}x{height}-{thumbnail.SEED}.jpg"
    scale = 12e6 / (width * height)
    out: dict[str, Any] = {"measured_pixels": width * height, "scaled_by": scale}
    for case in ("sluice", "common"):
        got = run_child([__file__, "--child", "image", case, str(path)])
        # CPU scales with pixels; peak memory is not scaled (quick only: says so in the doc).
        out[case] = {**got, "cpu_seconds": got["cpu_seconds"] * scale}
        out[case]["seconds"] = out[case]["cpu_seconds"]
    out["jpeg_bytes"] = path.stat().st_size * scale
    return out


def measure_json(sizes: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, size in sizes.items():
        path = json_transform.make_file(size)
        with moto_server() as endpoint:
            sluice = json_transform.run_case("moto", path, "--endpoint", endpoint)
        common = json_transform.run_case("common", path, "--budget", "3")
        out[label] = {
            "file_bytes": path.stat().st_size,
            "sluice": sluice,
            "common": {**common, "cpu_seconds": common["seconds"]},
        }
    return out


def measure_bundle(quick: bool) -> dict[str, Any]:
    count = 20 if quick else BUNDLE_IMAGES
    got = run_child([str(BENCH / "bundle.py"), "--counts", str(count)])
    entry = got["counts"][str(count)]["bundle"]
    scale = BUNDLE_IMAGES / count
    return {
        "measured_images": count,
        "scaled_by": scale,
        "seconds": entry["seconds"]["median"] * scale,
        "cpu_seconds": entry["cpu_seconds"]["median"] * scale,
        "peak_rss": entry["peak_rss"],
    }


def measure_tag(quick: bool) -> dict[str, Any]:
    got = run_child(
        [str(BENCH / "tag.py"), *(["--quick"] if quick else [])],
        env={"POWERTOOLS_METRICS_DISABLED": "true"},
    )
    first = got["cases"]["first"]
    return {
        "photos": got["photos"],
        "cpu_seconds": first["cpu_seconds"],
        "seconds": first["seconds"],
        "calls_per_photo": sum(first["calls_per_photo"].values()),
        "peak_rss": got["peak_rss"],
    }


def measure_archive() -> dict[str, Any]:
    got = run_child([str(BENCH / "archive.py"), "--quick"])
    single = got["cases"]["single"]
    return {
        "object_bytes": got["object_bytes"],
        "seconds": single["seconds"],
        "cpu_seconds": single["cpu_seconds"],
        "peak_rss": got["peak_rss"],
    }


# Model -------------------------------------------------------------------------------------
def duration(cpu: float, wait: float, memory_mb: int) -> float:
    return cpu * max(1.0, FULL_VCPU_MB / memory_mb) + wait


def invocation_cost(seconds: float, memory_mb: int, gb_s: str = "lambda_x86_gb_s") -> float:
    return memory_mb / 1024 * seconds * price(gb_s) + price("lambda_request")


def size_function(cpu: float, wall: float, peak_rss: int) -> dict[str, Any]:
    """The memory, of those that hold the peak with headroom, minimising cost x duration."""
    wait = max(wall - cpu, 0.0)
    floor_mb = peak_rss * HEADROOM / MIB
    best: tuple[float, int] | None = None
    for memory in MEMORY_GRID:
        if memory < floor_mb:
            continue
        seconds = duration(cpu, wait, memory)
        score = invocation_cost(seconds, memory) * seconds
        if best is None or score < best[0]:
            best = (score, memory)
    if best is None:
        memory = max(128, int(-(-floor_mb // 64) * 64))
        if memory > 10240:
            return {"memory_mb": None, "fits": False, "floor_mb": round(floor_mb)}
    else:
        memory = best[1]
    seconds = duration(cpu, wait, memory)
    return {
        "memory_mb": memory,
        "fits": True,
        "floor_mb": round(floor_mb),
        "seconds": seconds,
        "cost_x86": invocation_cost(seconds, memory),
        "cost_arm64": invocation_cost(seconds, memory, "lambda_arm_gb_s"),
    }


def requests_cost(requests: dict[str, int]) -> float:
    return sum(count * price(name) for name, count in requests.items())


def monthly(per_input: list[dict[str, Any]], inputs: int, requests: dict[str, int]) -> float:
    lambda_cost = sum(sized["cost_x86"] for sized in per_input)
    return inputs * (lambda_cost + requests_cost(requests))


# Report ------------------------------------------------------------------------------------
def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def sized_row(name: str, entry: dict[str, Any]) -> str:
    return row(
        name,
        f"{entry['floor_mb']} MB",
        entry["memory_mb"],
        f"{entry['seconds']:.3f}",
        usd(entry["cost_x86"]),
        usd(entry["cost_arm64"]),
    )


def usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, scaled")
    parser.add_argument("--full", action="store_true", help="also measure the 1 GB JSON file")
    parser.add_argument("--output", type=Path, help="where to write the report")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_image(args.child[1], Path(args.child[2]))))
        return
    output = args.output or (
        BENCH_DIR / "cost" / "cost.md" if args.quick else REPO_ROOT / "docs" / "cost.md"
    )
    json_sizes = {"100KB": 10**5, "1MB": 10**6} if args.quick else {"100KB": 10**5, "10MB": 10**7}
    if args.full:
        json_sizes["1GB"] = 10**9

    images = measure_images(args.quick)
    data = measure_json(json_sizes)
    bundle = measure_bundle(args.quick)
    archive = measure_archive()
    tag = measure_tag(args.quick)

    # JSON at other sizes: a straight line through the smallest and largest file measured
    # (the intercept is the per-invocation work, the slope the per-MB rate).
    smallest = min(data.values(), key=lambda entry: entry["file_bytes"])
    largest = max(data.values(), key=lambda entry: entry["file_bytes"])
    span_mb = (largest["file_bytes"] - smallest["file_bytes"]) / 1e6
    file_mb = JSON_FILE_BYTES / 1e6

    def json_at(case: str, megabytes: float) -> tuple[float, float, int]:
        def line(field: str) -> float:
            low, high = smallest[case][field], largest[case][field]
            slope = (high - low) / span_mb
            return float(low + slope * (megabytes - smallest["file_bytes"] / 1e6))

        # sluice's peak is flat in the file size (json_transform.py's target): not scaled.
        rss = largest[case]["peak_rss"] if case == "sluice" else line("peak_rss")
        return line("cpu_seconds"), line("seconds"), int(max(rss, smallest[case]["peak_rss"]))

    sized = {
        "transform (12 MP JPEG)": size_function(
            images["sluice"]["cpu_seconds"],
            images["sluice"]["seconds"],
            images["sluice"]["peak_rss"],
        ),
        "transform (10 MB JSON)": size_function(*json_at("sluice", file_mb)),
        "archive": size_function(archive["cpu_seconds"], archive["seconds"], archive["peak_rss"]),
        "tag": size_function(
            tag["cpu_seconds"], tag["seconds"] + REKOGNITION_SECONDS, tag["peak_rss"]
        ),
        "bundle (200 images)": size_function(
            bundle["cpu_seconds"], bundle["seconds"], bundle["peak_rss"]
        ),
    }
    naive = {
        "transform (12 MP JPEG)": size_function(
            images["common"]["cpu_seconds"],
            images["common"]["seconds"],
            images["common"]["peak_rss"],
        ),
        "transform (10 MB JSON)": size_function(*json_at("common", file_mb)),
    }
    gigabyte = {
        "sluice": size_function(*json_at("sluice", 1000)),
        "common": size_function(*json_at("common", 1000)),
    }

    photo_fns = ["transform (12 MP JPEG)", "archive", "tag"]
    photos = monthly([sized[f] for f in photo_fns], PHOTOS_PER_MONTH, PHOTO_REQUESTS)
    photos_naive = monthly(
        [naive["transform (12 MP JPEG)"], sized["archive"], sized["tag"]],
        PHOTOS_PER_MONTH,
        PHOTO_REQUESTS,
    )
    photo_storage = PHOTOS_PER_MONTH * images["jpeg_bytes"] / 1e9 * price("s3_gb_month")
    files = JSON_BYTES_PER_MONTH // JSON_FILE_BYTES
    tb = monthly([sized["transform (10 MB JSON)"], sized["archive"]], files, JSON_FILE_REQUESTS)
    tb_naive = monthly(
        [naive["transform (10 MB JSON)"], sized["archive"]], files, JSON_FILE_REQUESTS
    )
    tb_storage = 2 * JSON_BYTES_PER_MONTH / 1e9 * price("s3_gb_month")  # archive + processed

    result: dict[str, Any] = {
        "bench": "cost_model",
        "quick": args.quick,
        "machine": machine(),
        "output": str(output),
        "memory_mb": {name: entry["memory_mb"] for name, entry in sized.items()},
        "monthly_usd": {
            "photos_1m": round(photos, 2),
            "photos_1m_naive": round(photos_naive, 2),
            "json_1tb": round(tb, 2),
            "json_1tb_naive": round(tb_naive, 2),
        },
        "saving_usd": {
            "photos_1m": round(photos_naive - photos, 2),
            "json_1tb": round(tb_naive - tb, 2),
        },
    }

    command = (
        "bench/cost_model.py"
        + (" --quick" if args.quick else "")
        + (" --full" if args.full else "")
    )
    lines = [
        "# Cost and sizing model",
        "",
        f"Generated by `.venv/bin/python {command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f" (load average {result['machine']['load_average_1m']}); do not edit by hand.",
        "",
        "## What was measured (per input)",
        "",
        "| function | input | CPU s | wall s | peak RSS | how |",
        "|---|---|---|---|---|---|",
    ]
    scaled_img = (
        ""
        if images["scaled_by"] == 1
        else f", scaled x{images['scaled_by']:.0f} from 3 MP (CPU only)"
    )
    for case, label in (("sluice", "transform"), ("common", "naive thumbnailer")):
        entry = images[case]
        lines.append(
            f"| {label} | 12 MP JPEG | {entry['cpu_seconds']:.3f} | {entry['seconds']:.3f} |"
            f" {entry['peak_rss'] / MIB:.0f} MiB | thumbnail.py's input, 128+512 px{scaled_img} |"
        )
    for label, entry in data.items():
        for case, name in (("sluice", "transform"), ("common", "naive JSON")):
            got = entry[case]
            how = (
                "moto, the whole transform process()"
                if case == "sluice"
                else "json.load + jsonschema.validate per record"
            )
            if got.get("extrapolated"):
                how += " (validation extrapolated by json_transform.py)"
            lines.append(
                f"| {name} | {label} JSON | {got['cpu_seconds']:.3f} | {got['seconds']:.3f} |"
                f" {got['peak_rss'] / MIB:.0f} MiB | {how} |"
            )
    if "1GB" not in data:
        for case, name in (("sluice", "transform"), ("common", "naive JSON")):
            cpu, wall, rss = json_at(case, 1000)
            lines.append(
                f"| {name} | 1 GB JSON | {cpu:.1f} | {wall:.1f} | {rss / MIB:.0f} MiB |"
                f" **extrapolated** on the line through {smallest['file_bytes'] / 1e6:.1f} and"
                f" {largest['file_bytes'] / 1e6:.1f} MB"
                f"{' (peak flat)' if case == 'sluice' else ' (peak per MB)'} |"
            )
    bundle_how = "bundle.py against moto" + (
        "" if bundle["scaled_by"] == 1 else f", {bundle['measured_images']} images scaled per image"
    )
    saving_photos, saving_tb = photos_naive - photos, tb_naive - tb
    bundle_cost = usd(sized["bundle (200 images)"]["cost_x86"])
    lines += [
        row(
            "archive",
            f"one object, {archive['object_bytes'] / MIB:.0f} MiB",
            f"{archive['cpu_seconds']:.3f}",
            f"{archive['seconds']:.3f}",
            f"{archive['peak_rss'] / MIB:.0f} MiB",
            "archive.py, server-side copy through moto (the peak includes the script's own"
            " copy of the payload)",
        ),
        row(
            "bundle",
            f"{BUNDLE_IMAGES} images",
            f"{bundle['cpu_seconds']:.2f}",
            f"{bundle['seconds']:.2f}",
            f"{bundle['peak_rss'] / MIB:.0f} MiB",
            f"{bundle_how}; the wait is moto's on loopback, not S3's",
        ),
        row(
            "tag",
            "one photo",
            f"{tag['cpu_seconds']:.3f}",
            f"{tag['seconds']:.3f} + {REKOGNITION_SECONDS}",
            f"{tag['peak_rss'] / MIB:.0f} MiB",
            f"tag.py, the handler through moto over {tag['photos']} photos"
            f" ({tag['calls_per_photo']:.0f} AWS calls each); + an **assumed** Rekognition"
            " round trip, which no emulator shows",
        ),
        "",
        "## Memory per function",
        "",
        f"Model: duration(m) = CPU x max(1, {FULL_VCPU_MB}/m) + wait, where wait = wall - CPU"
        f" does not change with memory and CPU is taken as one vCPU's work at {FULL_VCPU_MB} MB"
        " (this machine's core stands for Lambda's; not verified on Lambda). Single-threaded"
        f" work gets no faster above {FULL_VCPU_MB} MB. Candidates: 128-3008 MB in 64 MB steps"
        f" and {FULL_VCPU_MB}, only those holding {HEADROOM}x the measured peak RSS. Chosen:"
        " the minimum of cost x duration at x86 prices.",
        "",
        row("function", "min memory", "chosen MB", "duration s", "$ per invocation x86", "arm64"),
        "|---|---|---|---|---|---|",
    ]
    for name, entry in {**sized, **{f"naive {k}": v for k, v in naive.items()}}.items():
        lines.append(sized_row(name, entry))
    for case, entry in gigabyte.items():
        name = "transform (1 GB JSON)" if case == "sluice" else "naive (1 GB JSON)"
        if entry["fits"] and entry["seconds"] > LAMBDA_TIMEOUT_S:
            lines.append(
                row(
                    name,
                    f"{entry['floor_mb']} MB",
                    entry["memory_mb"],
                    f"{entry['seconds']:.0f}: **beyond Lambda's {LAMBDA_TIMEOUT_S} s limit**",
                    "-",
                    "-",
                )
            )
        elif entry["fits"]:
            lines.append(sized_row(name, entry))
        else:
            lines.append(
                row(name, f"{entry['floor_mb']} MB", "does not fit in 10,240 MB", "-", "-", "-")
            )
    lines += [
        "",
        "arm64 assumes the same duration as x86 (not measured here): 20% cheaper per GB-s.",
        "",
        "What env/*.tfvars take from this: the transform's memory (CPU-bound, so the answer"
        " rests on measured CPU time). archive, tag and bundle mostly wait on AWS; their optimum"
        " depends on that wait, which moto on loopback cannot show, so their memory is left as"
        " it was (the table shows what the model would choose from moto's wait).",
        "",
        "## Monthly cost (x86)",
        "",
        row("workload", "sluice", "naive", "saving"),
        "|---|---|---|---|",
        row(
            "1 million 12 MP photos (Lambda, S3 requests, SQS, DynamoDB, Rekognition)",
            usd(photos),
            usd(photos_naive),
            usd(saving_photos),
        ),
        row(
            f"1 TB of JSON as {files:,} files of 10 MB (Lambda, S3 requests, SQS, DynamoDB)",
            usd(tb),
            usd(tb_naive),
            usd(saving_tb),
        ),
        "",
        "Storage is the same either way and not in the rows above: one month's photos add"
        f" {usd(photo_storage)} per month of S3 Standard (originals), one month's JSON"
        f" {usd(tb_storage)} (archive + processed). Bundles: {bundle_cost} of Lambda per"
        " 200-image bundle, plus one SNS publish.",
        "The naive pipeline is the same pipeline with the transform done the common way"
        " (thumbnail.py's and json_transform.py's baselines), each sized by the same rule.",
        "",
        "Requests per input (archive's counted by archive.py, the rest read from the handlers):",
        f"photo {PHOTO_REQUESTS}; JSON file {JSON_FILE_REQUESTS}.",
        "",
        f"## Prices (us-east-1; {PRICES_DATE})",
        "",
        "| item | price |",
        "|---|---|",
        *(f"| {text} | ${value:.10g} |" for value, text in PRICES.values()),
        "",
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines), encoding="utf-8")
    print_table(
        "Memory per function",
        ["function", "chosen MB", "duration s", "$/invocation"],
        [[n, e["memory_mb"], f"{e['seconds']:.3f}", usd(e["cost_x86"])] for n, e in sized.items()],
    )
    print(f"\nwrote {output}")
    emit(result)


if __name__ == "__main__":
    sys.exit(main())
