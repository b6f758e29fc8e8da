#!/usr/bin/env python3
"""Bundle: peak memory and throughput of zipping archived images through S3 (moto server).

    .venv/bin/python bench/bundle.py [--quick]

A moto server runs on a free loopback port. The ARCHIVE bucket gets 2,000 images of
about 1.1 MB each (2.2 GB in all; seeded random bytes between a JPEG start and end
marker, which is all a stored zip entry needs) and the images table an item for each.

Cases, each in its own child process that reports its wall time and peak RSS (VmHWM),
interleaved and repeated:

* bundle: ``sluice.bundle_contents.write_bundle_zip`` for the first 200 / all 2,000 images
  (the handler's plain function with injected boto3 clients: metadata from DynamoDB, each
  image streamed from S3 into a stored zip entry, the zip a multipart upload to WORK);
* copy: a plain GET + PUT of each of the same objects to WORK through the same endpoint,
  the baseline for throughput.

Targets: the bundle's peak RSS under 150 MB for both counts (and so flat), and its
throughput (image bytes per second) at least 70% of the copy's. ``--quick``: 20 and 60
images of about 200 KB. When the throughput target is missed (or with ``--profile``), both
cases are profiled (cProfile, in a child) at the smaller count.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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

SEED = 2000
ARCHIVE_BUCKET = "bench-archive"
WORK_BUCKET = "bench-work"
IMAGES_TABLE = "bench-images"
LABELS_TABLE = "bench-labels"
TARGET_PEAK_RSS = 150 * 1000 * 1000
TARGET_THROUGHPUT_SHARE = 0.70
CHILD_ENV = {
    "WORK_BUCKET": WORK_BUCKET,
    "ARCHIVE_BUCKET": ARCHIVE_BUCKET,
    "IMAGES_TABLE": IMAGES_TABLE,
    "LABELS_TABLE": LABELS_TABLE,
    "BUNDLE_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-bundles",
    "NOTIFY_TOPIC_PREFIX": "bench-notify-",
}

JPEG_START = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")
JPEG_END = bytes.fromhex("ffd9")


def image_key(number: int) -> str:
    return f"images/bench/photo-{number:05d}.jpg"


def image_bytes(number: int, mean_size: int) -> bytes:
    rng = random.Random(SEED * 1_000_003 + number)
    size = rng.randint(mean_size * 8 // 10, mean_size * 12 // 10)
    return JPEG_START + rng.randbytes(size - len(JPEG_START) - len(JPEG_END)) + JPEG_END


def setup(count: int, mean_size: int) -> int:
    """Buckets, table and ``count`` images; returns the total image bytes."""
    import boto3

    from sluice.keys import image_id

    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    for bucket in (ARCHIVE_BUCKET, WORK_BUCKET):
        s3.create_bucket(Bucket=bucket)
    dynamodb.create_table(
        TableName=IMAGES_TABLE,
        KeySchema=[{"AttributeName": "image_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "image_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def upload(number: int) -> int:
        body = image_bytes(number, mean_size)
        s3.put_object(Bucket=ARCHIVE_BUCKET, Key=image_key(number), Body=body)
        return len(body)

    with ThreadPoolExecutor(max_workers=4) as pool:
        total = sum(pool.map(upload, range(count)))
    for start in range(0, count, 25):
        items: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "image_id": {"S": image_id(image_key(n))},
                        "sha256": {"S": f"{n:064x}"},
                        "labels": {"SS": ["Bench"]},
                    }
                }
            }
            for n in range(start, min(start + 25, count))
        ]
        dynamodb.batch_write_item(RequestItems={IMAGES_TABLE: items})
    return total


def clear_work_bucket() -> None:
    import boto3

    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=WORK_BUCKET):
        keys: list[Any] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=WORK_BUCKET, Delete={"Objects": keys[start : start + 1000]})


# Children ----------------------------------------------------------------------------------
def child_bundle(count: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    import boto3

    from sluice import bundle_contents, bundles
    from sluice.keys import image_id
    from sluice.settings import BundleSettings

    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    images = [
        bundle_contents.MatchedImage(image_id(image_key(n)), image_key(n), ("Bench",))
        for n in range(count)
    ]
    request = bundles.BundleRequest(labels=("Bench",))
    before = peak_rss_bytes()
    if profiler is not None:
        profiler.enable()
    started, cpu_started = time.perf_counter(), time.process_time()
    contents = bundle_contents.write_bundle_zip(
        s3,
        dynamodb,
        BundleSettings.from_env(os.environ),
        f"bench-{count}",
        request,
        images,
        request_etag="bench",
        created_at="2024-01-01T00:00:00Z",
    )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
    assert contents.image_count == count and not contents.missing, contents
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "image_bytes": contents.image_bytes,
        "zip_bytes": contents.zip_bytes,
        "peak_rss_before": before,
    }


def child_copy(count: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3")
    before = peak_rss_bytes()
    if profiler is not None:
        profiler.enable()
    started, cpu_started = time.perf_counter(), time.process_time()
    total = 0
    for number in range(count):
        body = s3.get_object(Bucket=ARCHIVE_BUCKET, Key=image_key(number))["Body"].read()
        s3.put_object(Bucket=WORK_BUCKET, Key=f"copies/{count}/{number:05d}.jpg", Body=body)
        total += len(body)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "image_bytes": total,
        "peak_rss_before": before,
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("case", choices=("bundle", "copy"))
    parser.add_argument("count", type=int)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    use_endpoint(args.endpoint)
    profiler = cProfile.Profile() if args.profile else None
    result = (child_bundle if args.case == "bundle" else child_copy)(args.count, profiler)
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(14)
        lines = stream.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        result["profile"] = [line for line in lines[start:] if line.strip()]
    result["peak_rss"] = peak_rss_bytes()
    print(json.dumps(result))


# Parent ------------------------------------------------------------------------------------
def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--profile", action="store_true", help="also profile both cases at the smaller count"
        )
        parser.add_argument("--counts", type=int, nargs="+", help="image counts to run")

    args = parse_args(__doc__ or "", options)
    counts = tuple(args.counts or ((20, 60) if args.quick else (200, 2000)))
    mean_size = 200_000 if args.quick else 1_100_000
    repetitions = 1 if args.quick else 2
    work_dir("bundle")
    result: dict[str, Any] = {"bench": "bundle", "quick": args.quick, "machine": machine()}
    rows = []
    per_count: dict[str, Any] = {}
    with moto_server() as endpoint:
        use_endpoint(endpoint)
        started = time.perf_counter()
        total = setup(max(counts), mean_size)
        print(f"{max(counts)} images, {total:,} bytes uploaded to moto in"
              f" {time.perf_counter() - started:.1f} s")  # fmt: skip
        result["images_total_bytes"] = total
        for count in counts:
            runs: dict[str, list[dict[str, Any]]] = {"bundle": [], "copy": []}
            for _ in range(repetitions):
                for case in runs:
                    runs[case].append(
                        run_child(
                            [__file__, "--child", case, str(count), "--endpoint", endpoint],
                            env=CHILD_ENV,
                        )
                    )
                    clear_work_bucket()
            entry: dict[str, Any] = {}
            for case, samples in runs.items():
                seconds = Summary.of([s["seconds"] for s in samples])
                image_total = samples[0]["image_bytes"]
                entry[case] = {
                    "seconds": seconds.as_dict(),
                    "cpu_seconds": Summary.of([s["cpu_seconds"] for s in samples]).as_dict(),
                    "image_bytes": image_total,
                    "bytes_per_second": round(image_total / seconds.median),
                    "peak_rss": max(s["peak_rss"] for s in samples),
                    "peak_rss_before": max(s["peak_rss_before"] for s in samples),
                }
                rows.append(
                    [
                        count,
                        case,
                        f"{image_total / 1e9:.3f} GB",
                        f"{seconds.median:.1f} s [{seconds.low:.1f}-{seconds.high:.1f}]",
                        f"{image_total / seconds.median / MIB:.1f} MiB/s",
                        f"{entry[case]['peak_rss'] / 1e6:.1f} MB",
                        f"{entry[case]['peak_rss_before'] / 1e6:.1f} MB",
                    ]
                )
            entry["throughput_share"] = ratio(
                entry["bundle"]["bytes_per_second"], entry["copy"]["bytes_per_second"]
            )
            per_count[str(count)] = entry
        if args.profile or not all(
            entry["throughput_share"] >= TARGET_THROUGHPUT_SHARE for entry in per_count.values()
        ):
            for case in ("bundle", "copy"):
                profiled = run_child(
                    [__file__, "--child", case, str(counts[0]), "--endpoint", endpoint,
                     "--profile"],
                    env=CHILD_ENV,
                )  # fmt: skip
                clear_work_bucket()
                result[f"profile_{case}_{counts[0]}"] = profiled["profile"]
    result["counts"] = per_count
    peaks = {count: entry["bundle"]["peak_rss"] for count, entry in per_count.items()}
    worst_share = min(entry["throughput_share"] for entry in per_count.values())
    result["bundle_peak_rss_max"] = max(peaks.values())
    result["throughput_share_min"] = worst_share
    result["target_peak_rss_met"] = max(peaks.values()) < TARGET_PEAK_RSS
    result["target_throughput_met"] = worst_share >= TARGET_THROUGHPUT_SHARE

    print(f"each case a child process; {repetitions} interleaved repetitions; median [min-max]")
    print_table(
        "Bundle vs plain GET+PUT copy through the same moto endpoint",
        ["images", "case", "bytes", "time", "throughput", "peak RSS", "RSS before case"],
        rows,
    )
    print_table(
        "Targets",
        ["target", "measured", "verdict"],
        [
            ["bundle peak RSS < 150 MB (each count)",
             ", ".join(f"{c}: {p / 1e6:.1f} MB" for c, p in peaks.items()),
             verdict(result["target_peak_rss_met"])],
            [f"bundle throughput >= {TARGET_THROUGHPUT_SHARE:.0%} of copy",
             ", ".join(f"{c}: {e['throughput_share']:.0%}" for c, e in per_count.items()),
             verdict(result["target_throughput_met"])],
        ],
    )  # fmt: skip
    print(f"(peak RSS in MiB: {', '.join(fmt_mib(p) for p in peaks.values())})")
    for name, lines in result.items():
        if name.startswith("profile_"):
            print(f"\n{name} (cProfile, by own time):")
            print("\n".join(lines))
    emit(result)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
