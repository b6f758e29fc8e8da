"""Queues and a ledger for the ``sluice`` operations tests, on top of the ``pipeline`` fixture.

The ``pipeline`` fixture has the buckets and tables; the queues and the dead-letter queue
are made here with the redrive policy Terraform gives them, and a consistent ledger is
written the way the handlers would (docs/contracts.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.events import S3ObjectRef
from sluice.keys import archive_key_for, thumbnail_key
from sluice.ops.environment import FUNCTIONS, Environment
from sluice.receipts import Receipt, source_of, write_receipt
from tests.conftest import REGION, Pipeline

ENVIRONMENT = "test"
SOURCE_ETAG_METADATA = "sluice-source-etag"


def make_environment(pipeline: Pipeline, *, max_receive_count: int = 1) -> Environment:
    """Create the four queues and the DLQ; return the environment as the outputs name it."""
    sqs = pipeline.sqs
    dlq_url = sqs.create_queue(QueueName="sluice-test-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    queue_urls = {
        name: sqs.create_queue(
            QueueName=f"sluice-test-{name}", Attributes={"RedrivePolicy": policy}
        )["QueueUrl"]
        for name in FUNCTIONS
    }
    return Environment.from_outputs(
        ENVIRONMENT, outputs_of(pipeline, queue_urls, dlq_url, dlq_arn), "test"
    )


def outputs_of(
    pipeline: Pipeline, queue_urls: dict[str, str], dlq_url: str, dlq_arn: str
) -> dict[str, Any]:
    return {
        "raw_bucket_name": pipeline.raw,
        "processed_bucket_name": pipeline.processed,
        "archive_bucket_name": pipeline.archive,
        "work_bucket_name": pipeline.work,
        "queue_urls": queue_urls,
        "bucket_functions": {
            pipeline.raw: "transform",
            pipeline.processed: "archive",
            pipeline.archive: "tag",
            pipeline.work: "bundle",
        },
        "dead_letter_queue_url": dlq_url,
        "dead_letter_queue_arn": dlq_arn,
        "images_table_name": pipeline.images_table,
        "labels_table_name": pipeline.labels_table,
        "bundle_topic_arn": pipeline.topic_arn,
        "alerts_topic_arn": pipeline.topic_arn,
        "function_names": {name: f"sluice-test-{name}" for name in FUNCTIONS},
        "region": REGION,
    }


def write_outputs_file(environment: Environment, path: Path) -> Path:
    """An ``environments`` outputs file naming ``environment``, for driving the CLI."""
    values = {
        "raw_bucket_name": environment.raw_bucket,
        "processed_bucket_name": environment.processed_bucket,
        "archive_bucket_name": environment.archive_bucket,
        "work_bucket_name": environment.work_bucket,
        "queue_urls": dict(environment.queue_urls),
        "bucket_functions": dict(environment.bucket_functions),
        "dead_letter_queue_url": environment.dead_letter_queue_url,
        "dead_letter_queue_arn": environment.dead_letter_queue_arn,
        "region": REGION,
    }
    path.write_text(json.dumps({environment.name: values}), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Ingested:
    raw_key: str
    etag: str
    archive_key: str
    receipt_key: str
    outputs: list[dict[str, Any]]


def ingest(
    pipeline: Pipeline,
    raw_key: str,
    body: bytes,
    *,
    kind: str = "image",
    status: str = "processed",
    thumbnail: bool = True,
    archive: bool = True,
    clear_raw: bool = True,
) -> Ingested:
    """Take one input through the pipeline's end state: outputs, receipt, archive, RAW cleared."""
    s3 = pipeline.s3
    put = s3.put_object(Bucket=pipeline.raw, Key=raw_key, Body=body)
    etag = put["ETag"].strip('"')
    outputs: list[dict[str, Any]] = []
    if thumbnail and status == "processed" and kind == "image":
        key = thumbnail_key(raw_key, 128, ".jpg")
        s3.put_object(Bucket=pipeline.processed, Key=key, Body=b"thumb", ContentType="image/jpeg")
        outputs.append(
            {"bucket": pipeline.processed, "key": key, "content_type": "image/jpeg", "size": 5}
        )
    ref = S3ObjectRef(bucket=pipeline.raw, key=raw_key, event_name="ObjectCreated:Put")
    receipt = Receipt(
        status=status,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        source=source_of(ref, etag=etag, version_id=put.get("VersionId"), size=len(body)),
        outputs=outputs,
        errors=[] if status == "processed" else [{"code": "unsupported", "message": "no"}],
    )
    receipt_key = write_receipt(s3, pipeline.processed, receipt)
    archive_key = archive_key_for(kind, status, raw_key)
    if archive:
        s3.copy_object(
            Bucket=pipeline.archive,
            Key=archive_key,
            CopySource={"Bucket": pipeline.raw, "Key": raw_key},
            Metadata={SOURCE_ETAG_METADATA: etag},
            MetadataDirective="REPLACE",
        )
    if clear_raw:
        s3.delete_object(Bucket=pipeline.raw, Key=raw_key)
    return Ingested(raw_key, etag, archive_key, receipt_key, outputs)


def s3_notification(bucket: str, key: str) -> str:
    """The body S3 sends to a queue for one new object."""
    from tests.s3events import s3_event, s3_record

    return json.dumps(s3_event(s3_record(bucket, key, etag="0" * 32, size=1)))
