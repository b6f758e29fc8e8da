"""Every AWS call site of transform, archive and tag, failed one at a time, then retried.

For each case a clean run first records how many AWS calls the handler makes and the end
state it leaves. Then, for every call number *i* and both sides of the call (before it:
the call is not made; after it: it is made and its response is lost), the state is reset,
the fault is injected at call *i* (:mod:`tests.chaos.faults`, botocore event hooks: no
change to the handler), and the message is delivered again without faults until it
succeeds. The end state must equal the clean run's: receipts, outputs, archive, DynamoDB
items and label counts.

The second half holds one message in two workers at once: worker A stops inside the
handler before its *i*-th AWS call, the message's visibility timeout runs out (set to 0,
which is what its expiry does), worker B receives and handles it, then A goes on. The
end state must again equal a single delivery's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from PIL import Image

from sluice.keys import archive_key_for, receipt_key
from sluice.local.lambdas.invocation import sqs_event
from tests.chaos.faults import (
    DeletePlan,
    FaultPoint,
    InjectedFaultError,
    Injector,
    When,
    install,
)
from tests.conftest import FakeContext, Pipeline, load_handler
from tests.s3events import object_event_for

# Timestamps and version ids differ from run to run by nature; everything else must not.
_VOLATILE = {
    "created_at",
    "updated_at",
    "labels_updated_at",
    "archived_at",
    "processed_at",
    "recorded_at",
}
_VERSION_IDS = {
    "version_id",
    "source_version_id",
    "archive_version_id",
    "sluice-source-version-id",
}
MAX_DELIVERIES = 4
WHEN: tuple[When, ...] = ("before", "after")


# --- inputs --------------------------------------------------------------------------------


def _jpeg() -> bytes:
    image = Image.new("RGB", (96, 64), (30, 90, 200))
    for x in range(40, 70):
        for y in range(10, 40):
            image.putpixel((x, y), (240, 200, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the thumbnail path applies the orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80, exif=exif.tobytes())
    return buffer.getvalue()


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "patient_id": f"P{100 + n:06d}",
            "patient_name": "Kalo Renta",
            "scan_date": "2024-03-0" + str(1 + n % 9),
            "retina_thickness_microns": 280.5,
            "optic_disc_cup_ratio": 0.3,
            "diagnosis": "normal",
        }
        for n in range(count)
    ]


def _partly_invalid() -> bytes:
    records = _records(4)
    records[1]["diagnosis"] = ""  # minLength: an errors report is written too
    return json.dumps(records).encode()


INPUTS: dict[str, bytes] = {
    "photos/holiday 1.jpg": _jpeg(),
    "retina/scans.json": _partly_invalid(),
    "retina/scans.jsonl": b"".join(json.dumps(r).encode() + b"\n" for r in _records(3)),
    "retina/broken.json": b'[{"patient_id": "P000001",',
    "other/notes.txt": b"not a supported type\n",
}
IMAGE_KEY = "photos/holiday 1.jpg"


# --- driving the pipeline in process -------------------------------------------------------


@dataclass
class Handlers:
    transform: ModuleType
    archive: ModuleType
    tag: ModuleType
    injector: Injector

    def stage(self, name: str) -> ModuleType:
        module: ModuleType = getattr(self, name)
        return module


@pytest.fixture
def handlers(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Handlers:
    """The three handlers, imported after the injector hooked boto3's default session."""
    # A default session of its own: the pipeline's clients (created before) stay unhooked.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    injector = install()
    monkeypatch.setenv("THUMBNAIL_SIZES", "32,64")
    monkeypatch.setenv("LABEL_MIN_CONFIDENCE", "10")
    monkeypatch.setenv("LABEL_MAX_LABELS", "4")
    return Handlers(
        load_handler("transform"), load_handler("archive"), load_handler("tag"), injector
    )


def _failed(response: Any, event: dict[str, Any]) -> bool:
    ids = {record["messageId"] for record in event["Records"]}
    failures = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
    return bool(failures & ids)


def deliver(handler: ModuleType, event: dict[str, Any]) -> bool:
    """One invocation; True when every message of the batch succeeded."""
    try:
        response = handler.handler(event, FakeContext())
    except Exception:
        return False
    return not _failed(response, event)


def stage_event(p: Pipeline, stage: str, raw_key: str) -> dict[str, Any]:
    if stage == "transform":
        return object_event_for(p.s3, p.raw, raw_key)
    if stage == "archive":
        return object_event_for(p.s3, p.processed, receipt_key(raw_key))
    return object_event_for(p.s3, p.archive, archive_key_for("image", "processed", raw_key))


STAGES = ("transform", "archive", "tag")


def run_up_to(p: Pipeline, h: Handlers, raw_key: str, stage: str) -> dict[str, Any]:
    """Upload ``raw_key`` and run the stages before ``stage`` cleanly; ``stage``'s event."""
    p.s3.put_object(Bucket=p.raw, Key=raw_key, Body=INPUTS[raw_key])
    for previous in STAGES[: STAGES.index(stage)]:
        assert deliver(h.stage(previous), stage_event(p, previous, raw_key)), previous
    return stage_event(p, stage, raw_key)


def expire_leases(p: Pipeline) -> None:
    """What time does to a crashed tag run's lease: its deadline passes."""
    for item in p.dynamodb.scan(TableName=p.images_table, ConsistentRead=True)["Items"]:
        if "tag_lease_until" in item:
            p.dynamodb.update_item(
                TableName=p.images_table,
                Key={"image_id": item["image_id"]},
                UpdateExpression="SET tag_lease_until = :past",
                ExpressionAttributeValues={":past": {"N": "0"}},
            )


def deliver_until_done(p: Pipeline, handler: ModuleType, event: dict[str, Any]) -> int:
    """Redeliver as SQS would until the message succeeds; the deliveries it took."""
    for attempt in range(1, MAX_DELIVERIES + 1):
        if deliver(handler, event):
            return attempt
        expire_leases(p)
    raise AssertionError(f"still failing after {MAX_DELIVERIES} fault-free deliveries")


# --- end state -----------------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<version>" if k in _VERSION_IDS and v else _normalise(v))
            for k, v in value.items()
            if k not in _VOLATILE
        }
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _item(item: dict[str, Any]) -> dict[str, Any]:
    plain = {name: next(iter(typed.values())) for name, typed in item.items()}
    for name in ("labels_touched",):
        if name in plain:
            plain[name] = sorted(plain[name])
    result: dict[str, Any] = _normalise(plain)
    return result


def snapshot(p: Pipeline) -> dict[str, Any]:
    """Everything a run leaves behind, without what differs between runs by nature."""
    state: dict[str, Any] = {}
    for bucket in (p.raw, p.processed, p.archive):
        objects = {}
        for page in p.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                got = p.s3.get_object(Bucket=bucket, Key=entry["Key"])
                body = got["Body"].read()
                if entry["Key"].startswith(("receipts/", "versions/")):
                    objects[entry["Key"]] = _normalise(json.loads(body))
                else:
                    objects[entry["Key"]] = (
                        hashlib.sha256(body).hexdigest(),
                        _normalise(got.get("Metadata", {})),
                    )
        state[bucket] = objects
    for table in (p.images_table, p.labels_table):
        items = p.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
        state[table] = sorted((_item(item) for item in items), key=json.dumps)
    return state


def reset(p: Pipeline) -> None:
    """Empty every bucket (all versions, markers, open uploads) and both tables."""
    for bucket in (p.raw, p.processed, p.archive, p.work):
        for upload in p.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            p.s3.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        listing = p.s3.list_object_versions(Bucket=bucket)
        for entry in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
            p.s3.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
    for table, keys in ((p.images_table, ("image_id",)), (p.labels_table, ("pk", "sk"))):
        for item in p.dynamodb.scan(TableName=table)["Items"]:
            p.dynamodb.delete_item(TableName=table, Key={k: item[k] for k in keys})


def clean_run(p: Pipeline, h: Handlers, raw_key: str, stage: str) -> tuple[list[str], Any]:
    """The calls ``stage`` makes for ``raw_key`` without faults, and the end state."""
    reset(p)
    event = run_up_to(p, h, raw_key, stage)
    h.injector.arm(None)
    assert deliver(h.stage(stage), event)
    calls = list(h.injector.calls)
    h.injector.disarm()
    return calls, snapshot(p)


CASES = [
    ("transform", IMAGE_KEY),
    ("transform", "retina/scans.json"),
    ("transform", "retina/scans.jsonl"),
    ("transform", "retina/broken.json"),
    ("transform", "other/notes.txt"),
    ("archive", IMAGE_KEY),
    ("archive", "retina/scans.json"),
    ("archive", "retina/broken.json"),
    ("tag", IMAGE_KEY),
]


# --- the hook sees every call --------------------------------------------------------------


def test_the_hook_sees_every_aws_call_a_handler_makes(
    pipeline: Pipeline, handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real = BaseClient._make_api_call  # type: ignore[attr-defined]

    def spy(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        made.append(operation_name)
        return real(self, operation_name, api_params)

    for stage in STAGES:
        reset(pipeline)
        event = run_up_to(pipeline, handlers, IMAGE_KEY, stage)
        monkeypatch.setattr(BaseClient, "_make_api_call", spy)
        made.clear()
        handlers.injector.arm(None)
        assert deliver(handlers.stage(stage), event)
        monkeypatch.setattr(BaseClient, "_make_api_call", real)
        seen = [name.split(".", 1)[1] for name in handlers.injector.calls]
        assert made, stage
        assert sorted(seen) == sorted(made), stage


@pytest.mark.parametrize(
    ("step", "receipted"), [("before-read", False), ("after-read", False), ("after-receipt", True)]
)
def test_the_delete_plan_deletes_a_raw_key_at_its_step_of_the_transform(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, step: str, receipted: bool
) -> None:
    """The chaos run's deletes during processing happen where planned, not by luck: before
    the transform reads the key or after (no receipt, no outputs), or after its receipt."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    deleted: list[tuple[str, str]] = []
    receipts_then: list[list[str]] = []

    def delete(bucket: str, key: str) -> None:
        receipts_then.append(keys(pipeline, pipeline.processed, "receipts/"))
        deleted.append((bucket, key))
        pipeline.s3.delete_object(Bucket=bucket, Key=key)

    DeletePlan({IMAGE_KEY: step}, pipeline.raw, delete).register(boto3.DEFAULT_SESSION)
    install()  # the fault hooks come after the plan's, as in the preload
    monkeypatch.setenv("THUMBNAIL_SIZES", "32")
    transform = load_handler("transform")
    pipeline.s3.put_object(Bucket=pipeline.raw, Key=IMAGE_KEY, Body=INPUTS[IMAGE_KEY])

    assert deliver(transform, stage_event(pipeline, "transform", IMAGE_KEY))

    assert deleted and set(deleted) == {(pipeline.raw, IMAGE_KEY)}
    assert receipts_then[0] == ([receipt_key(IMAGE_KEY)] if step == "after-receipt" else [])
    assert keys(pipeline, pipeline.processed, "receipts/") == (
        [receipt_key(IMAGE_KEY)] if receipted else []
    )
    assert bool(keys(pipeline, pipeline.processed, "thumbnails/")) == receipted


def keys(p: Pipeline, bucket: str, prefix: str) -> list[str]:
    response = p.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


def test_an_injected_fault_is_a_transient_client_error() -> None:
    fault = InjectedFaultError("PutObject", "before s3.PutObject (#2)")
    assert fault.response["Error"]["Code"] == "ServiceUnavailable"
    assert fault.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "PutObject" in str(fault)


# --- every call site, both sides -----------------------------------------------------------


@pytest.mark.parametrize(("stage", "raw_key"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_a_fault_at_any_aws_call_then_a_retry_ends_as_a_clean_run(
    pipeline: Pipeline, handlers: Handlers, stage: str, raw_key: str
) -> None:
    calls, expected = clean_run(pipeline, handlers, raw_key, stage)
    assert calls, "the clean run made no AWS call"
    outcomes = []
    for number in range(1, len(calls) + 1):
        for when in WHEN:
            point = FaultPoint(number, when)
            reset(pipeline)
            event = run_up_to(pipeline, handlers, raw_key, stage)
            handlers.injector.arm(point)
            succeeded = deliver(handlers.stage(stage), event)
            fired = handlers.injector.fired
            handlers.injector.disarm()
            assert fired, f"{point}: the fault did not fire (calls: {handlers.injector.calls})"
            if succeeded:
                # Only a failure the handler may legitimately absorb: nothing may differ.
                assert snapshot(pipeline) == expected, f"{fired}: reported success, state differs"
            deliveries = deliver_until_done(pipeline, handlers.stage(stage), event)
            assert snapshot(pipeline) == expected, f"{fired}, then {deliveries} deliveries"
            outcomes.append((fired, succeeded))
    # A fault at a call whose result matters must fail the message, or it would be lost.
    assert sum(not succeeded for _, succeeded in outcomes) >= len(calls), outcomes


# --- two workers hold the same message -----------------------------------------------------


@dataclass
class Queue:
    sqs: Any
    url: str
    arn: str

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=1, AttributeNames=["All"]
            ).get("Messages", [])
            if messages:
                message: dict[str, Any] = messages[0]
                return message
            time.sleep(0.05)
        raise AssertionError("no message became visible")

    def depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def expire(self, message: dict[str, Any]) -> None:
        """The message's visibility timeout runs out: it is visible to the next receive."""
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    def handle(self, handler: ModuleType, message: dict[str, Any]) -> bool:
        """Invoke and settle as the runner does: delete on success, leave it otherwise."""
        event = sqs_event([message], self.arn, "us-east-1")
        ok = deliver(handler, event)
        if ok:
            # A stale receipt handle may fail to delete: then the message comes back.
            with contextlib.suppress(ClientError):
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return ok


@pytest.fixture
def queue(pipeline: Pipeline) -> Queue:
    url = pipeline.sqs.create_queue(
        QueueName="sluice-test-two-workers", Attributes={"VisibilityTimeout": "30"}
    )["QueueUrl"]
    arn = pipeline.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return Queue(pipeline.sqs, url, arn)


TWO_WORKER_CASES = [
    ("transform", IMAGE_KEY),
    ("transform", "retina/scans.json"),
    ("archive", IMAGE_KEY),
    ("archive", "retina/broken.json"),
    ("tag", IMAGE_KEY),
]


@pytest.mark.parametrize(
    ("stage", "raw_key"), TWO_WORKER_CASES, ids=[f"{s}-{k}" for s, k in TWO_WORKER_CASES]
)
def test_two_workers_holding_one_message_end_as_one_delivery(
    pipeline: Pipeline, handlers: Handlers, queue: Queue, stage: str, raw_key: str
) -> None:
    calls, expected = clean_run(pipeline, handlers, raw_key, stage)
    handler = handlers.stage(stage)
    for block_at in range(1, len(calls) + 1):
        reset(pipeline)
        event = run_up_to(pipeline, handlers, raw_key, stage)
        queue.sqs.send_message(QueueUrl=queue.url, MessageBody=event["Records"][0]["body"])
        latest = hold_in_a_while_b_runs(handlers, queue, handler, block_at)
        # A worker that lost (e.g. found the image's lease held) gets its message again.
        for _ in range(MAX_DELIVERIES):
            if queue.depth() == 0:
                break
            queue.expire(latest)
            latest = queue.receive()
            if not queue.handle(handler, latest):
                expire_leases(pipeline)
        assert queue.depth() == 0, f"held at call {block_at}: the message never succeeded"
        assert snapshot(pipeline) == expected, f"held at call {block_at} ({calls[block_at - 1]})"


def hold_in_a_while_b_runs(
    handlers: Handlers, queue: Queue, handler: ModuleType, block_at: int
) -> dict[str, Any]:
    """A receives and stops before its ``block_at``-th AWS call; the visibility timeout
    runs out; B receives, handles and settles; then A goes on. B's message is returned."""
    first = queue.receive()
    held, release = threading.Event(), threading.Event()
    worker_a = threading.Thread(target=queue.handle, args=(handler, first))
    calls_of_a = 0

    def hold_a(_number: int, _name: str) -> None:
        nonlocal calls_of_a
        if threading.current_thread() is worker_a:
            calls_of_a += 1
            if calls_of_a == block_at:
                held.set()
                release.wait(30)

    handlers.injector.on_call = hold_a
    handlers.injector.arm(None)
    try:
        worker_a.start()
        assert held.wait(30), f"worker A never reached call {block_at}"
        queue.expire(first)
        second = queue.receive()
        queue.handle(handler, second)
    finally:
        release.set()
        worker_a.join(30)
        handlers.injector.on_call = None
    assert not worker_a.is_alive()
    return second
