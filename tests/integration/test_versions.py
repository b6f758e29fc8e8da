"""Issue 10 as specifications: one owner per output, and the newest version of a key wins.

Each scenario drives the real handlers' logic (transform, archive, tag) against moto, with
the events shaped as moto sends them (no versionId, no sequencer) unless a test says
otherwise, and ends with ``sluice audit``: a clean audit is part of every invariant.
Concurrency is made deterministic with hooks: a worker is paused at a chosen point
(``Gate``) while another one runs, instead of hoping for a lucky schedule.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from sluice.events import S3ObjectRef
from sluice.image_items import get_image
from sluice.keys import (
    ARCHIVE_SUPERSEDED_PREFIX,
    archive_key_for,
    image_id,
    receipt_key,
    superseded_archive_key,
    thumbnail_key,
    version_record_key,
)
from sluice.label_items import label_counts
from sluice.ops.audit import AuditReport, audit
from sluice.transform import data_files, image_files, sources
from tests.conftest import FakeContext, Pipeline, load_handler
from tests.integration.ops_support import make_environment
from tests.s3events import s3_event, s3_record, sqs_batch

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
WAIT = 60.0
"""Seconds a gate waits for the other side before the test fails (never reached when
the code is right; a deadline, not a sleep)."""


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "JPEG")
    return out.getvalue()


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


RECORD = {
    "patient_id": "P000001",
    "patient_name": "Ada Example",
    "scan_date": "2024-01-15",
    "retina_thickness_microns": 250.0,
    "optic_disc_cup_ratio": 0.3,
    "diagnosis": "normal",
}


def one_record() -> bytes:
    return json.dumps([RECORD]).encode()


@dataclass
class Stack:
    """The pipeline's handlers in process, fed the way their queues would feed them."""

    p: Pipeline
    transform: ModuleType
    archive: ModuleType
    tag: ModuleType
    context: FakeContext = field(default_factory=FakeContext)

    # --- inputs ---------------------------------------------------------------------------
    def put(self, key: str, body: bytes) -> dict[str, Any]:
        response: dict[str, Any] = self.p.s3.put_object(Bucket=self.p.raw, Key=key, Body=body)
        return response

    def event(self, key: str, *, with_version: bool = False) -> dict[str, Any]:
        """The notification of the current object: moto's shape (no versionId) by default."""
        head = self.p.s3.head_object(Bucket=self.p.raw, Key=key)
        return sqs_batch(
            s3_event(
                s3_record(
                    self.p.raw,
                    key,
                    etag=head["ETag"].strip('"'),
                    size=head["ContentLength"],
                    version_id=head["VersionId"] if with_version else None,
                )
            )
        )

    # --- handlers ---------------------------------------------------------------------------
    def transform_ok(self, event: dict[str, Any]) -> bool:
        """Run the transform on one message; True if it succeeded (not to be retried)."""
        response = self.transform.handler(event, self.context)
        return bool(response == {"batchItemFailures": []})

    def archive_all(self) -> None:
        """Deliver one archive message per receipt in PROCESSED, as the queue would."""
        for key in self.keys(self.p.processed, "receipts/"):
            self.archive.process(self.archive_deps, self.p.processed, key)

    @functools.cached_property
    def archive_deps(self) -> Any:
        """The archive function's settings and clients, as its cold start builds them."""
        return self.archive.Dependencies.from_env(os.environ)

    def tag_all(self) -> None:
        for key in self.keys(self.p.archive, "images/"):
            head = self.p.s3.head_object(Bucket=self.p.archive, Key=key)
            self.tag_ref(self.archived_ref(key, head["ETag"].strip('"')))

    def archived_ref(self, key: str, etag: str) -> S3ObjectRef:
        return S3ObjectRef(
            bucket=self.p.archive, key=key, event_name="ObjectCreated:Copy", etag=etag
        )

    def tag_ref(self, ref: S3ObjectRef) -> Any:
        lease = self.tag.Lease(owner="test-tag")
        deps = self.tag_deps
        return self.tag.tag_image(deps.s3, deps.dynamodb, deps.labeler, deps.settings, ref, lease)

    @functools.cached_property
    def tag_deps(self) -> Any:
        """The tag function's settings, clients and labeler, as its cold start builds them."""
        return self.tag.Dependencies.from_env(os.environ)

    # --- reading the end state --------------------------------------------------------------
    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.p.s3.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def receipt(self, key: str) -> dict[str, Any]:
        body = self.p.s3.get_object(Bucket=self.p.processed, Key=receipt_key(key))["Body"]
        result: dict[str, Any] = json.loads(body.read())
        return result

    def read(self, bucket: str, key: str) -> bytes:
        data: bytes = self.p.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def stamp(self, archive_key: str) -> str:
        head = self.p.s3.head_object(Bucket=self.p.archive, Key=archive_key)
        return str(head["Metadata"]["sluice-source-etag"])

    def record(self, key: str, version_id: str) -> dict[str, Any]:
        body = self.p.s3.get_object(
            Bucket=self.p.processed, Key=version_record_key(key, version_id)
        )["Body"]
        result: dict[str, Any] = json.loads(body.read())
        return result

    def audit(self) -> AuditReport:
        return audit(self.p.s3, self.p.sqs, make_environment(self.p))


def etag_of(put: dict[str, Any]) -> str:
    return str(put["ETag"]).strip('"')


def assert_clean(report: AuditReport) -> None:
    assert report.discrepancies == [], report.discrepancies
    assert report.clean


@pytest.fixture
def stack(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("THUMBNAIL_SIZES", "64")
    return Stack(pipeline, load_handler("transform"), load_handler("archive"), load_handler("tag"))


class Gate:
    """Pause one worker at a hook until the test lets it go (both sides have deadlines)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def pause(self) -> None:
        self.reached.set()
        assert self.release.wait(WAIT), "the test never released the gate"

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT), "the worker never reached the gate"


@pytest.fixture
def background() -> Iterator[Callable[[Callable[[], Any]], threading.Thread]]:
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(work: Callable[[], Any]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # surfaced in the test's thread below
                errors.append(error)

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()
        return thread

    yield start
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert errors == []


# --- one owner per output ---------------------------------------------------------------------


def test_one_owner_per_output_a_long_key_and_its_hashed_lookalike_keep_their_own_names(
    stack: Stack,
) -> None:
    long_key = "inbox/" + "x" * 1013  # 1,019 bytes: every derived name of it is hashed
    lookalike = "_long/" + hashlib.sha256(long_key.encode()).hexdigest()
    for key, body in ((long_key, b"long"), (lookalike, b"short")):
        stack.put(key, body)
        assert stack.transform_ok(stack.event(key))
        stack.archive_all()

    assert receipt_key(long_key) != receipt_key(lookalike)
    assert stack.receipt(long_key)["source"]["key"] == long_key
    assert stack.receipt(lookalike)["source"]["key"] == lookalike
    for key, body in ((long_key, b"long"), (lookalike, b"short")):
        archived = archive_key_for("unsupported", "rejected", key)
        assert stack.read(stack.p.archive, archived) == body
    assert len(stack.keys(stack.p.archive)) == 2
    assert_clean(stack.audit())


def test_one_owner_per_output_thumbnails_keep_the_source_extension(stack: Stack) -> None:
    red, blue = jpeg((200, 0, 0)), jpeg((0, 0, 200))
    for key, body in (("p/a.JPG", red), ("p/a.jpg", blue)):
        stack.put(key, body)
        assert stack.transform_ok(stack.event(key))

    upper, lower = thumbnail_key("p/a.JPG", 64, ".jpg"), thumbnail_key("p/a.jpg", 64, ".jpg")
    assert (upper, lower) == ("thumbnails/64/p/a.JPG.jpg", "thumbnails/64/p/a.jpg.jpg")
    assert [o["key"] for o in stack.receipt("p/a.JPG")["outputs"]] == [upper]
    assert [o["key"] for o in stack.receipt("p/a.jpg")["outputs"]] == [lower]
    assert Image.open(io.BytesIO(stack.read(stack.p.processed, upper))).getpixel((5, 5))[0] > 150
    assert Image.open(io.BytesIO(stack.read(stack.p.processed, lower))).getpixel((5, 5))[2] > 150
    stack.archive_all()
    assert_clean(stack.audit())


def test_one_owner_per_output_rejecting_one_image_leaves_its_namesakes_thumbnails(
    stack: Stack,
) -> None:
    stack.put("p/x.png", png((0, 150, 0)))
    stack.put("p/x.jpg", jpeg((150, 0, 0)))
    stack.put("p/x.gif", b"GIF89a this is not an image")
    for key in ("p/x.png", "p/x.jpg", "p/x.gif"):
        assert stack.transform_ok(stack.event(key))

    assert stack.receipt("p/x.gif")["status"] == "rejected"
    thumbnails = set(stack.keys(stack.p.processed, "thumbnails/"))
    assert thumbnails == {
        thumbnail_key("p/x.png", 64, ".jpg"),
        thumbnail_key("p/x.jpg", 64, ".jpg"),
    }
    stack.archive_all()
    assert_clean(stack.audit())


def test_audit_finds_an_output_or_archived_copy_owned_twice(stack: Stack) -> None:
    stack.put("p/one.jpg", jpeg((10, 10, 10)))
    assert stack.transform_ok(stack.event("p/one.jpg"))
    stack.archive_all()
    # A forged receipt that claims the first image's thumbnail and archive name.
    forged = stack.receipt("p/one.jpg")
    forged["source"]["key"] = "p/two.jpg"
    stack.p.s3.put_object(
        Bucket=stack.p.processed, Key=receipt_key("p/two.jpg"), Body=json.dumps(forged)
    )
    stack.p.s3.copy_object(
        Bucket=stack.p.archive,
        Key="images/p/two.jpg",
        CopySource={"Bucket": stack.p.archive, "Key": "images/p/one.jpg"},
    )

    report = stack.audit()

    owned_twice = [f.subject for f in report.discrepancies if f.category == "owned twice"]
    thumbnail = thumbnail_key("p/one.jpg", 64, ".jpg")
    assert owned_twice == [f"s3://{stack.p.processed}/{thumbnail}"]


# --- newest version wins ------------------------------------------------------------------------


def test_newest_version_wins_when_an_older_large_upload_finishes_last(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    background: Callable[[Callable[[], Any]], threading.Thread],
) -> None:
    """Issue 10, case 1: v1 (large) and v2 (one record) of one key, two transform workers;
    v1's worker is held after reading its records, before its outputs are complete."""
    key = "retina/scans.json"
    v1 = stack.put(key, (SAMPLES / "retina/scans-2024-q1.json").read_bytes())
    v1_event = stack.event(key)
    gate = Gate()
    real = data_files.transform_records

    def slow_first_call(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not gate.reached.is_set():
            gate.pause()
        return result

    monkeypatch.setattr(data_files, "transform_records", slow_first_call)
    queue: deque[dict[str, Any]] = deque()

    def worker_one() -> None:
        if not stack.transform_ok(v1_event):
            queue.append(v1_event)

    first = background(worker_one)
    gate.wait_reached()
    v2 = stack.put(key, one_record())
    v2_event = stack.event(key)
    # Worker two: the same key is being transformed, so v2's message waits for a retry.
    if not stack.transform_ok(v2_event):
        queue.append(v2_event)
    gate.release.set()
    first.join(WAIT)
    while queue:  # redeliveries after the visibility timeout
        event = queue.popleft()
        if not stack.transform_ok(event):
            queue.append(event)
    stack.archive_all()
    stack.transform_ok(v1_event)  # a late duplicate of the old event changes nothing
    stack.archive_all()

    receipt = stack.receipt(key)
    assert receipt["source"]["etag"] == etag_of(v2)
    assert json.loads(stack.read(stack.p.processed, f"data/{key}")) == [
        {"patient_id": RECORD["patient_id"], "patient_name": RECORD["patient_name"]}
    ]
    assert stack.stamp(f"data/{key}") == etag_of(v2)
    # v1 is accounted for: archived under its version, and recorded as superseded by v2.
    kept = superseded_archive_key(key, v1["VersionId"])
    assert stack.stamp(kept) == etag_of(v1)
    record = stack.record(key, v1["VersionId"])
    assert record["status"] == "superseded" and record["archive_key"] == kept
    assert record["superseded_by"]["etag"] == etag_of(v2)
    assert stack.keys(stack.p.raw) == []
    assert_clean(stack.audit())


def flip_bodies(count: int) -> list[bytes]:
    """Versions of one data file that alternate between valid and unreadable."""
    return [
        json.dumps([{**RECORD, "patient_id": f"P{n:06d}"}]).encode() if n % 3 else b"[{"
        for n in range(count)
    ]


def test_newest_version_wins_after_twenty_quick_versions_delivered_out_of_order(
    stack: Stack,
) -> None:
    """Issue 10, case 6: every event arrives late, shuffled and twice, and archive messages
    are interleaved with them; the newest version is what remains, the rest accounted for."""
    key = "retina/busy.json"
    chance = random.Random(10)
    puts, pending = [], []
    for body in flip_bodies(20):
        puts.append(stack.put(key, body))
        event = stack.event(key)
        pending += [event, event]
        chance.shuffle(pending)
        for _ in range(chance.randint(0, len(pending))):
            assert stack.transform_ok(pending.pop())
        if chance.random() < 0.5:
            stack.archive_all()
    for event in pending:
        assert stack.transform_ok(event)
    stack.archive_all()

    newest = puts[-1]
    receipt = stack.receipt(key)
    assert receipt["source"]["etag"] == etag_of(newest)
    assert receipt["status"] == "processed"
    archived = set(stack.keys(stack.p.archive))
    assert archived - set(stack.keys(stack.p.archive, ARCHIVE_SUPERSEDED_PREFIX)) == {f"data/{key}"}
    for put in puts[:-1]:
        record = stack.record(key, put["VersionId"])
        assert record["status"] == "superseded"
        assert stack.stamp(record["archive_key"]) == etag_of(put)
    assert stack.keys(stack.p.raw) == []
    report = stack.audit()
    assert_clean(report)
    assert report.ledger.versions_superseded == 19


def test_newest_version_wins_with_two_concurrent_workers_and_duplicates(
    stack: Stack, background: Callable[[Callable[[], Any]], threading.Thread]
) -> None:
    """Two workers drain one queue of transform and archive messages for quick versions of
    one key (each event twice); failed messages go back on the queue, as SQS would."""
    key = "retina/two-workers.json"
    puts = []
    messages: deque[tuple[str, dict[str, Any]]] = deque()
    for body in flip_bodies(8):
        puts.append(stack.put(key, body))
        event = stack.event(key)
        messages.extend([("transform", event), ("transform", event)])
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not messages:
                    return
                kind, event = messages.popleft()
            if kind == "transform":
                done = stack.transform_ok(event)
                if done:
                    with lock:
                        messages.append(("archive", {}))
            else:
                try:
                    stack.archive_all()
                    done = True
                except Exception:  # as the Lambda service would: the message is retried
                    done = False
            if not done:
                with lock:
                    messages.append((kind, event))

    first, second = background(worker), background(worker)
    first.join(WAIT)
    second.join(WAIT)
    stack.archive_all()

    assert stack.receipt(key)["source"]["etag"] == etag_of(puts[-1])
    for put in puts[:-1]:
        assert stack.record(key, put["VersionId"])["status"] == "superseded"
    assert_clean(stack.audit())


# --- a rejected newest version withdraws the older image --------------------------------------


def test_newest_version_wins_a_rejected_image_withdraws_the_older_one(stack: Stack) -> None:
    """Issue 10, case 4: a valid flip.jpg, then corrupt bytes at the same key."""
    key = "p/flip.jpg"
    good = stack.put(key, jpeg((220, 30, 30)))
    assert stack.transform_ok(stack.event(key))
    stack.archive_all()
    stack.tag_all()
    item_id = image_id(f"images/{key}")
    assert get_image(stack.p.dynamodb, stack.p.images_table, item_id) is not None
    assert label_counts(stack.p.dynamodb, stack.p.labels_table) != []
    old_ref = stack.archived_ref(f"images/{key}", etag_of(good))

    bad = stack.put(key, b"\xff\xd8\xff corrupt")
    assert stack.transform_ok(stack.event(key))
    stack.archive_all()
    stack.archive_all()  # duplicate delivery
    assert stack.tag_ref(old_ref) == "skipped"  # a late event of the old copy

    assert stack.receipt(key)["status"] == "rejected"
    assert get_image(stack.p.dynamodb, stack.p.images_table, item_id) is None
    assert label_counts(stack.p.dynamodb, stack.p.labels_table) == []
    memberships = stack.p.dynamodb.scan(TableName=stack.p.labels_table)["Items"]
    assert [m for m in memberships if m["pk"]["S"].startswith("LABEL#")] == []
    assert stack.keys(stack.p.archive, "images/") == []  # no bundle can ship it
    assert stack.stamp(f"rejected/{key}") == etag_of(bad)
    assert stack.stamp(superseded_archive_key(key, good["VersionId"])) == etag_of(good)
    assert_clean(stack.audit())


def test_withdrawal_waits_for_a_labelling_run_that_holds_the_image(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    background: Callable[[Callable[[], Any]], threading.Thread],
) -> None:
    key = "p/racing.jpg"
    stack.put(key, jpeg((30, 30, 220)))
    assert stack.transform_ok(stack.event(key))
    stack.archive_all()
    head = stack.p.s3.head_object(Bucket=stack.p.archive, Key=f"images/{key}")
    gate = Gate()
    real_detect = stack.tag_deps.labeler.detect

    def held_detect(image: Any) -> Any:
        gate.pause()
        return real_detect(image)

    monkeypatch.setattr(stack.tag_deps.labeler, "detect", held_detect)
    etag = head["ETag"].strip('"')
    labelling = background(lambda: stack.tag_ref(stack.archived_ref(f"images/{key}", etag)))
    gate.wait_reached()  # the labelling run holds the image's lease
    stack.put(key, b"\xff\xd8\xff corrupt")
    assert stack.transform_ok(stack.event(key))
    with pytest.raises(stack.tag.ImageBusyError):
        stack.archive_all()  # the archive message fails and is retried later
    gate.release.set()
    labelling.join(WAIT)
    stack.archive_all()

    assert get_image(stack.p.dynamodb, stack.p.images_table, image_id(f"images/{key}")) is None
    assert label_counts(stack.p.dynamodb, stack.p.labels_table) == []
    assert_clean(stack.audit())


# --- deleted before it was processed ----------------------------------------------------------


def test_deleted_while_processing_leaves_no_outputs_and_a_ledger_entry(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, case 5: the object is deleted from RAW while its transform runs."""
    key = "p/gone.jpg"
    put = stack.put(key, jpeg((1, 2, 3)))
    event = stack.event(key)
    real = image_files.make_thumbnails

    def delete_meanwhile(*args: Any, **kwargs: Any) -> Any:
        stack.p.s3.delete_object(Bucket=stack.p.raw, Key=key)
        return real(*args, **kwargs)

    monkeypatch.setattr(image_files, "make_thumbnails", delete_meanwhile)
    assert stack.transform_ok(event)
    assert stack.transform_ok(event)  # duplicate delivery
    stack.archive_all()

    assert stack.keys(stack.p.processed, "receipts/") == []
    assert stack.keys(stack.p.processed, "thumbnails/") == []
    assert stack.keys(stack.p.archive) == []
    assert get_image(stack.p.dynamodb, stack.p.images_table, image_id(f"images/{key}")) is None
    # Keyed by the version id, though moto's events carry none: a late duplicate of the
    # event finds the version by its ETag, and this record with it.
    record = stack.record(key, put["VersionId"])
    assert record["status"] == "deleted" and record["archive_key"] is None
    report = stack.audit()
    assert_clean(report)
    assert report.ledger.versions_deleted == 1


def test_deleted_before_processing_is_recorded_once_its_event_arrives(stack: Stack) -> None:
    key = "retina/never.json"
    put = stack.put(key, one_record())
    event = stack.event(key)
    stack.p.s3.delete_object(Bucket=stack.p.raw, Key=key)

    assert stack.transform_ok(event)

    assert stack.keys(stack.p.processed, "receipts/") == []
    assert stack.keys(stack.p.processed, "data/") == []
    record = json.loads(stack.read(stack.p.processed, version_record_key(key, put["VersionId"])))
    assert record["status"] == "deleted"
    assert_clean(stack.audit())


def test_a_stale_event_of_a_version_archived_meanwhile_is_not_recorded_as_deleted(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1's event comes late: v2 is current, and between the transform's look at the
    ledger (no receipt yet) and its look at RAW, v2 is transformed and archived, which
    empties RAW. v1 was superseded, not deleted: one record says so, and only one."""
    key = "retina/raced.json"
    v1 = stack.put(key, one_record())
    v1_event = stack.event(key)
    stack.put(key, json.dumps([RECORD, {**RECORD, "patient_id": "P000002"}]).encode())
    v2_event = stack.event(key)
    real = sources.read_receipt
    raced: list[bool] = []

    def archive_v2_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if not raced:
            raced.append(True)
            assert stack.transform_ok(v2_event)
            stack.archive_all()
        return found

    monkeypatch.setattr(sources, "read_receipt", archive_v2_meanwhile)
    assert stack.transform_ok(v1_event)

    assert raced
    records = stack.keys(stack.p.processed, "versions/")
    assert records == [version_record_key(key, v1["VersionId"])]
    assert stack.record(key, v1["VersionId"])["status"] == "superseded"
    assert_clean(stack.audit())


def test_deleted_while_a_crashed_transform_held_it_leaves_no_outputs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run: the object is deleted while its transform runs, and that
    invocation dies (timeout) after writing thumbnails, before it looks at RAW again. The
    retry finds the key gone with no receipt: the outputs the dead run left go too."""
    key = "p/gone-mid-crash.jpg"
    put = stack.put(key, jpeg((9, 8, 7)))
    event = stack.event(key)
    real = stack.transform.current_verdict

    def delete_then_die(*args: Any, **kwargs: Any) -> Any:
        stack.p.s3.delete_object(Bucket=stack.p.raw, Key=key)
        raise TimeoutError("Task timed out")  # what the runtime does to the invocation

    monkeypatch.setattr(stack.transform, "current_verdict", delete_then_die)
    assert not stack.transform_ok(event)
    assert stack.keys(stack.p.processed, "thumbnails/")  # the dead run's outputs
    monkeypatch.setattr(stack.transform, "current_verdict", real)
    assert stack.transform_ok(event)  # the retry
    stack.archive_all()

    assert stack.keys(stack.p.processed, "thumbnails/") == []
    assert stack.keys(stack.p.processed, "receipts/") == []
    record = stack.record(key, put["VersionId"])
    assert record["status"] == "deleted"
    assert_clean(stack.audit())


def test_deleted_after_a_crash_between_its_item_and_its_receipt_leaves_no_image(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transform dies after writing the image's item and before its receipt; the
    object is then deleted from RAW. The retry finds the key gone with no receipt: the
    item goes with the thumbnails, or the library would list an image that is not there."""
    key = "p/item-then-crash.jpg"
    put = stack.put(key, jpeg((7, 9, 8)))
    event = stack.event(key)
    item_id = image_id(f"images/{key}")

    def die(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("Task timed out")  # what the runtime does to the invocation

    monkeypatch.setattr(stack.transform, "write_receipt", die)
    assert not stack.transform_ok(event)
    assert get_image(stack.p.dynamodb, stack.p.images_table, item_id) is not None
    monkeypatch.undo()
    stack.p.s3.delete_object(Bucket=stack.p.raw, Key=key)
    assert stack.transform_ok(event)  # the retry
    assert stack.transform_ok(event)  # and a duplicate of it
    stack.archive_all()

    assert get_image(stack.p.dynamodb, stack.p.images_table, item_id) is None
    assert stack.keys(stack.p.processed, "thumbnails/") == []
    assert stack.record(key, put["VersionId"])["status"] == "deleted"
    assert_clean(stack.audit())


def test_a_deleted_version_never_takes_the_item_of_the_keys_processed_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the item the deleted version itself wrote goes: v1 is processed (its item
    written), then v2 is uploaded and deleted before its transform; v1's item stays."""
    key = "p/kept.jpg"
    stack.put(key, jpeg((1, 1, 1)))
    assert stack.transform_ok(stack.event(key))
    item_id = image_id(f"images/{key}")
    before = get_image(stack.p.dynamodb, stack.p.images_table, item_id)
    assert before is not None
    stack.put(key, jpeg((2, 2, 2)))
    v2_event = stack.event(key)
    stack.p.s3.delete_object(Bucket=stack.p.raw, Key=key)

    assert stack.transform_ok(v2_event)  # v2 was deleted before it was processed

    assert get_image(stack.p.dynamodb, stack.p.images_table, item_id) == before


def test_a_duplicate_delivery_that_finds_its_version_archived_meanwhile_keeps_the_outputs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run: a second delivery of a processed version is transforming it
    when the archive handler moves it out of RAW (the first delivery's receipt asked it
    to). The key is gone because it was archived, not deleted: the outputs the receipt
    lists stay, and no 'deleted' record contradicts the receipt."""
    key = "p/archived-meanwhile.jpg"
    stack.put(key, jpeg((40, 50, 60)))
    event = stack.event(key)
    assert stack.transform_ok(event)
    real = image_files.make_thumbnails

    def archive_meanwhile(*args: Any, **kwargs: Any) -> Any:
        stack.archive_all()
        return real(*args, **kwargs)

    monkeypatch.setattr(image_files, "make_thumbnails", archive_meanwhile)
    assert stack.transform_ok(event)  # the duplicate

    assert stack.keys(stack.p.processed, "thumbnails/") == [thumbnail_key(key, 64, ".jpg")]
    assert stack.keys(stack.p.processed, "versions/") == []
    assert_clean(stack.audit())
