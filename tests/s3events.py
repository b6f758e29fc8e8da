"""Build S3 notification events and SQS batches for tests (golden files live in tests/events/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTS_DIR = Path(__file__).parent / "events"


def golden(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return result


def s3_record(
    bucket: str,
    key: str,
    *,
    etag: str | None = None,
    size: int = 0,
    event_name: str = "ObjectCreated:Put",
    version_id: str | None = None,
    sequencer: str | None = None,
) -> dict[str, Any]:
    """One record as S3 sends it: the key URL-encoded with '+' for spaces."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size}
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T00:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "sluice",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sqs_batch(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    """An SQS event source mapping batch; each body becomes one message."""
    return {
        "Records": [
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"handle-{index}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:sluice-test",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def object_event_for(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """An SQS batch announcing an object that exists, with its real ETag and size."""
    head = s3.head_object(Bucket=bucket, Key=key)
    return sqs_batch(
        s3_event(
            s3_record(
                bucket,
                key,
                etag=head["ETag"].strip('"'),
                size=head["ContentLength"],
                version_id=head.get("VersionId"),
            )
        )
    )
