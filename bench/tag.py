#!/usr/bin/env python3
"""Tag: the tag function's own work per photo (CPU, peak memory, calls), without Rekognition's wait.

    .venv/bin/python bench/tag.py [--quick]

Against a moto server on a free loopback port: 40 archived photos (10 with ``--quick``),
the images and labels tables as modules/dynamodb creates them, and the tag function built
as its cold start builds it (``sluice.handlers.tag.Dependencies.from_env``, labeler
``rekognition``: moto answers ``DetectLabels`` with canned labels). Each photo goes through
``handler`` in an SQS batch of one, as the tag queue delivers it; then every photo is
delivered again (a duplicate delivery: the lease, one look at the item, no labeler call).

Measured per photo: CPU seconds of this process (the function's own work: SDK calls,
JSON, DynamoDB transactions for each label's membership and count), wall seconds on
loopback, the AWS calls made, and the process's peak RSS (VmHWM) after the run. In AWS the
wall time adds Rekognition's latency, which no emulator can show; bench/cost_model.py adds
it as a stated assumption.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from collections import Counter
from typing import Any

from benchlib import (
    emit,
    machine,
    moto_server,
    parse_args,
    peak_rss_bytes,
    print_table,
    use_endpoint,
)

ARCHIVE, RAW, PROCESSED = "bench-archive", "bench-raw", "bench-processed"
IMAGES_TABLE, LABELS_TABLE = "bench-images", "bench-labels"
SEED = 11


class Context:
    """The parts of the Lambda context the handler reads."""

    function_name = "bench-tag"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-tag"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/bench-tag"
    log_stream_name = "bench"

    def __init__(self, request: int) -> None:
        self.aws_request_id = f"00000000-0000-4000-8000-{request:012d}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def photo(rng: random.Random) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (640, 480), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def make_resources(s3: Any, dynamodb: Any) -> None:
    for bucket in (ARCHIVE, RAW, PROCESSED):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(
        TableName=IMAGES_TABLE,
        KeySchema=[{"AttributeName": "image_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "image_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName=LABELS_TABLE,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def sqs_event(key: str, etag: str, version_id: str | None) -> dict[str, Any]:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Copy",
        "s3": {
            "bucket": {"name": ARCHIVE},
            "object": {"key": key, "eTag": etag, "versionId": version_id, "size": 1},
        },
    }
    return {
        "Records": [
            {
                "messageId": f"m-{key}",
                "receiptHandle": "r",
                "body": json.dumps({"Records": [record]}),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-tag",
                "awsRegion": "us-east-1",
            }
        ]
    }


class Calls:
    """AWS operations made by every client created after this (the function's), by name.

    Registered on boto3's default session: a client copies its session's handlers when it
    is created, so this must come before the function builds its clients.
    """

    def __init__(self) -> None:
        import boto3

        self.counts: Counter[str] = Counter()
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("after-call.*.*", self._after_call)  # type: ignore[union-attr]

    def _after_call(self, model: Any, **_: Any) -> None:
        self.counts[f"{model.service_model.service_name}:{model.name}"] += 1


def run_round(handler: Any, events: list[dict[str, Any]], first_request: int) -> dict[str, float]:
    cpu = wall = 0.0
    for index, event in enumerate(events):
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        response = handler(event, Context(first_request + index))
        cpu += time.process_time() - started_cpu
        wall += time.perf_counter() - started_wall
        if response.get("batchItemFailures"):
            raise RuntimeError(f"tag failed: {response}")
    return {"cpu_seconds": cpu / len(events), "seconds": wall / len(events)}


def main() -> None:
    args = parse_args(__doc__ or "")
    count = 10 if args.quick else 40
    rng = random.Random(SEED)
    with moto_server() as endpoint:
        use_endpoint(endpoint)
        os.environ.update(
            {
                "ARCHIVE_BUCKET": ARCHIVE,
                "RAW_BUCKET": RAW,
                "PROCESSED_BUCKET": PROCESSED,
                "IMAGES_TABLE": IMAGES_TABLE,
                "LABELS_TABLE": LABELS_TABLE,
                "LABELER": "rekognition",
                "POWERTOOLS_METRICS_DISABLED": "true",  # stdout: tables and the JSON line
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
        )
        from sluice.handlers import tag
        from sluice.runtime import client

        make_resources(client("s3"), client("dynamodb"))
        calls = Calls()
        deps = tag.Dependencies.from_env(os.environ)
        handler = tag.make_handler(deps)
        events = []
        for index in range(count):
            key = f"images/bench/photo-{index:03d}.jpg"
            put = deps.s3.put_object(Bucket=ARCHIVE, Key=key, Body=photo(rng))
            events.append(sqs_event(key, put["ETag"].strip('"'), put.get("VersionId")))
        calls.counts.clear()  # the uploads above
        first = run_round(handler, events, 0)
        first_calls = {name: n / count for name, n in sorted(calls.counts.items())}
        calls.counts.clear()
        duplicate = run_round(handler, events, count)
        duplicate_calls = {name: n / count for name, n in sorted(calls.counts.items())}
    result = {
        "bench": "tag",
        "quick": args.quick,
        "machine": machine(),
        "photos": count,
        "labeler": "rekognition (moto's canned labels; its latency is not measured)",
        "cases": {
            "first": {**first, "calls_per_photo": first_calls},
            "duplicate": {**duplicate, "calls_per_photo": duplicate_calls},
        },
        "peak_rss": peak_rss_bytes(),
    }
    print_table(
        f"tag: per photo over {count} photos (moto on loopback)",
        ["delivery", "CPU ms", "wall ms", "AWS calls"],
        [
            [name, f"{case['cpu_seconds'] * 1e3:.1f}", f"{case['seconds'] * 1e3:.1f}",
             f"{sum(case['calls_per_photo'].values()):.1f}"]
            for name, case in result["cases"].items()
        ],
    )  # fmt: skip
    emit(result)


if __name__ == "__main__":
    main()
