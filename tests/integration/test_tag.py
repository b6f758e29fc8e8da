"""Tag handler against moto: labels stored, counts exact under every redelivery pattern."""

from __future__ import annotations

import io
import os
from collections import Counter
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from sluice.events import S3ObjectRef
from sluice.handlers.tag import Dependencies
from sluice.image_items import label_confidences, plain
from sluice.keys import image_id
from sluice.label_items import images_for_label, label_counts
from sluice.labelers import ImageObject, Label
from tests.conftest import FakeContext, Pipeline, load_handler
from tests.s3events import object_event_for

RED = (220, 20, 20)
BLUE = (30, 60, 220)


@pytest.fixture
def tag(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("LABEL_MIN_CONFIDENCE", "50")
    monkeypatch.setenv("LABEL_MAX_LABELS", "5")
    return load_handler("tag")


@pytest.fixture
def deps(tag: ModuleType) -> Dependencies:
    """The tag function's settings and moto clients, as its cold start would build them."""
    dependencies: Dependencies = tag.Dependencies.from_env(os.environ)
    return dependencies


def png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def put_image(p: Pipeline, key: str, data: bytes) -> dict[str, Any]:
    """Archive an image (as the archive handler would) and return its event."""
    p.s3.put_object(Bucket=p.archive, Key=key, Body=data, ContentType="image/png")
    return object_event_for(p.s3, p.archive, key)


def ref_for(p: Pipeline, key: str) -> S3ObjectRef:
    head = p.s3.head_object(Bucket=p.archive, Key=key)
    return S3ObjectRef(
        bucket=p.archive,
        key=key,
        event_name="ObjectCreated:Put",
        etag=head["ETag"].strip('"'),
        version_id=head.get("VersionId"),
    )


def image_item(p: Pipeline, key: str) -> dict[str, Any]:
    item: dict[str, Any] = p.dynamodb.get_item(
        TableName=p.images_table, Key={"image_id": {"S": image_id(key)}}, ConsistentRead=True
    ).get("Item", {})
    return item


def item_labels(p: Pipeline, key: str) -> list[str]:
    return [value["S"] for value in image_item(p, key).get("labels", {}).get("L", [])]


def counts(p: Pipeline) -> dict[str, int]:
    return dict(label_counts(p.dynamodb, p.labels_table))


def assert_consistent(p: Pipeline) -> None:
    """Every count equals its memberships, and every image's memberships equal its labels."""
    items = p.dynamodb.scan(TableName=p.labels_table)["Items"]
    memberships = [
        (item["pk"]["S"].removeprefix("LABEL#"), item["sk"]["S"].removeprefix("IMAGE#"))
        for item in items
        if item["pk"]["S"].startswith("LABEL#")
    ]
    per_label = Counter(label for label, _ in memberships)
    stored = {
        item["sk"]["S"]: int(item["image_count"]["N"])
        for item in items
        if item["pk"]["S"] == "LABELS"
    }
    assert {label: n for label, n in stored.items() if n} == dict(per_label)
    assert all(n >= 0 for n in stored.values())
    images = p.dynamodb.scan(TableName=p.images_table)["Items"]
    for image in images:
        labels = {value["S"] for value in image.get("labels", {}).get("L", [])}
        held = {label for label, image_of in memberships if image_of == image["image_id"]["S"]}
        assert held == labels, image["image_id"]["S"]


class CountingLabeler:
    """Wraps a labeler and counts calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def detect(self, image: ImageObject) -> list[Label]:
        self.calls += 1
        result: list[Label] = self.inner.detect(image)
        return result


class CrashingDynamoDB:
    """Lets ``allowed`` label transactions through, then fails like a killed function.

    With ``hard=True`` the lease release fails too, as if the process died outright.
    """

    def __init__(self, client: Any, allowed: int, *, hard: bool = False) -> None:
        self._client = client
        self.allowed = allowed
        self.hard = hard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        if self.allowed == 0:
            raise TimeoutError("function timed out")
        self.allowed -= 1
        return self._client.transact_write_items(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        if self.hard and kwargs["UpdateExpression"].startswith("REMOVE tag_lease_owner"):
            raise TimeoutError("function timed out")
        return self._client.update_item(**kwargs)


def lease(tag: ModuleType, owner: str, now: float = 1_000.0) -> Any:
    return tag.Lease(owner=owner, seconds=60.0, clock=lambda: now)


def test_labels_are_stored_on_memberships_counts_and_the_image_item(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    key = "images/cams/red car ü.png"
    # What the transform wrote earlier must survive.
    pipeline.dynamodb.put_item(
        TableName=pipeline.images_table,
        Item={"image_id": {"S": image_id(key)}, "width": {"N": "80"}, "archive_key": {"S": key}},
    )
    event = put_image(pipeline, key, png(RED, (80, 40)))

    assert tag.handler(event, lambda_context) == {"batchItemFailures": []}

    assert counts(pipeline) == {"colour:red": 1, "shape:landscape": 1}
    item = image_item(pipeline, key)
    assert item_labels(pipeline, key) == ["colour:red", "shape:landscape"]
    assert item["labeler"] == {"S": "offline"}
    assert item["width"] == {"N": "80"}
    assert item["archive_etag"]["S"] == event_etag(event)
    assert "labels_updated_at" in item
    assert "tag_lease_owner" not in item and "tag_lease_until" not in item
    images, token = images_for_label(pipeline.dynamodb, pipeline.labels_table, "colour:red")
    assert [(i.image_id, i.archive_key, i.confidence) for i in images] == [
        (image_id(key), key, 100.0)
    ]
    assert token is None
    assert_consistent(pipeline)


def event_etag(event: dict[str, Any]) -> str:
    import json

    return str(json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]["eTag"])


def test_duplicate_delivery_changes_nothing_and_skips_the_labeler(
    pipeline: Pipeline, tag: ModuleType, deps: Dependencies
) -> None:
    key = "images/dup.png"
    put_image(pipeline, key, png(BLUE, (30, 60)))
    labeler = CountingLabeler(deps.labeler)
    for _ in range(3):
        tag.tag_image(
            pipeline.s3,
            pipeline.dynamodb,
            labeler,
            deps.settings,
            ref_for(pipeline, key),
            lease(tag, "x"),
        )

    assert labeler.calls == 1
    assert counts(pipeline) == {"colour:blue": 1, "shape:portrait": 1}
    assert_consistent(pipeline)


def test_crash_after_some_labels_then_retry_converges(
    pipeline: Pipeline, tag: ModuleType, deps: Dependencies
) -> None:
    key = "images/crash.png"
    put_image(pipeline, key, png(RED, (60, 30)))
    crashing = CrashingDynamoDB(pipeline.dynamodb, allowed=1)
    with pytest.raises(TimeoutError):
        tag.tag_image(
            pipeline.s3,
            crashing,
            deps.labeler,
            deps.settings,
            ref_for(pipeline, key),
            lease(tag, "a"),
        )
    assert sum(counts(pipeline).values()) == 1  # one label applied before the crash

    outcome = tag.tag_image(
        pipeline.s3,
        pipeline.dynamodb,
        deps.labeler,
        deps.settings,
        ref_for(pipeline, key),
        lease(tag, "b"),
    )

    assert outcome == "tagged"
    assert counts(pipeline) == {"colour:red": 1, "shape:landscape": 1}
    assert_consistent(pipeline)


def test_hard_crash_holds_the_image_until_its_lease_expires(
    pipeline: Pipeline, tag: ModuleType, deps: Dependencies
) -> None:
    key = "images/hard.png"
    put_image(pipeline, key, png(RED, (60, 30)))
    crashing = CrashingDynamoDB(pipeline.dynamodb, allowed=1, hard=True)
    with pytest.raises(TimeoutError):
        tag.tag_image(
            pipeline.s3,
            crashing,
            deps.labeler,
            deps.settings,
            ref_for(pipeline, key),
            lease(tag, "a", now=1_000),
        )

    with pytest.raises(tag.ImageBusyError):
        tag.tag_image(
            pipeline.s3,
            pipeline.dynamodb,
            deps.labeler,
            deps.settings,
            ref_for(pipeline, key),
            lease(tag, "b", now=1_030),
        )
    tag.tag_image(
        pipeline.s3,
        pipeline.dynamodb,
        deps.labeler,
        deps.settings,
        ref_for(pipeline, key),
        lease(tag, "c", now=1_061),
    )

    assert counts(pipeline) == {"colour:red": 1, "shape:landscape": 1}
    assert_consistent(pipeline)


def test_busy_image_fails_only_its_message(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    busy, free = "images/busy.png", "images/free.png"
    busy_event = put_image(pipeline, busy, png(RED, (10, 10)))
    free_event = put_image(pipeline, free, png(BLUE, (10, 10)))
    pipeline.dynamodb.put_item(
        TableName=pipeline.images_table,
        Item={
            "image_id": {"S": image_id(busy)},
            "tag_lease_owner": {"S": "someone else"},
            "tag_lease_until": {"N": "99999999999"},
        },
    )
    batch = {
        "Records": busy_event["Records"] + [{**free_event["Records"][0], "messageId": "msg-1"}]
    }

    assert tag.handler(batch, lambda_context) == {
        "batchItemFailures": [{"itemIdentifier": "msg-0"}]
    }
    assert counts(pipeline) == {"colour:blue": 1, "shape:square": 1}


def test_retag_with_new_content_moves_the_counts(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    key = "images/changes.png"
    other = "images/stays.png"
    tag.handler(put_image(pipeline, other, png(RED, (20, 40))), lambda_context)
    tag.handler(put_image(pipeline, key, png(RED, (80, 40))), lambda_context)
    assert counts(pipeline) == {"colour:red": 2, "shape:landscape": 1, "shape:portrait": 1}

    assert tag.handler(put_image(pipeline, key, png(BLUE, (20, 40))), lambda_context) == {
        "batchItemFailures": []
    }

    assert counts(pipeline) == {"colour:blue": 1, "colour:red": 1, "shape:portrait": 2}
    assert item_labels(pipeline, key) == ["colour:blue", "shape:portrait"]
    assert_consistent(pipeline)


def test_crash_then_new_content_removes_what_the_crashed_run_added(
    pipeline: Pipeline, tag: ModuleType, deps: Dependencies
) -> None:
    key = "images/crash-then-change.png"
    half_red = Image.new("RGB", (60, 30), (250, 250, 250))
    half_red.paste(RED, (0, 0, 30, 30))
    buffer = io.BytesIO()
    half_red.save(buffer, format="PNG")
    # Four labels: shape:landscape, then colour:red, colour:white, tone:bright at 50 %.
    put_image(pipeline, key, buffer.getvalue())
    old_ref = ref_for(pipeline, key)
    with pytest.raises(TimeoutError):
        tag.tag_image(
            pipeline.s3,
            CrashingDynamoDB(pipeline.dynamodb, allowed=2),
            deps.labeler,
            deps.settings,
            old_ref,
            lease(tag, "a"),
        )
    assert counts(pipeline) == {"colour:red": 1, "shape:landscape": 1}
    put_image(pipeline, key, png(BLUE, (30, 60)))

    # The old event's retry is stale now; the new event relabels and cleans up.
    assert (
        tag.tag_image(
            pipeline.s3, pipeline.dynamodb, deps.labeler, deps.settings, old_ref, lease(tag, "b")
        )
        == "skipped"
    )
    tag.tag_image(
        pipeline.s3,
        pipeline.dynamodb,
        deps.labeler,
        deps.settings,
        ref_for(pipeline, key),
        lease(tag, "c"),
    )

    assert counts(pipeline) == {"colour:blue": 1, "shape:portrait": 1}
    assert_consistent(pipeline)


def test_concurrent_tags_of_different_images_of_one_label_count_each(
    pipeline: Pipeline, tag: ModuleType, deps: Dependencies
) -> None:
    keys = [f"images/red-{n}.png" for n in range(4)]
    for key in keys:
        put_image(pipeline, key, png(RED, (10, 10)))

    class Interleaving:
        """Runs another image's whole tagging in the middle of this one's transactions."""

        def __init__(self, client: Any, pending: list[str]) -> None:
            self._client = client
            self.pending = pending

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def transact_write_items(self, **kwargs: Any) -> Any:
            if self.pending:
                nested = self.pending.pop()
                tag.tag_image(
                    pipeline.s3,
                    self,
                    deps.labeler,
                    deps.settings,
                    ref_for(pipeline, nested),
                    lease(tag, nested),
                )
            return self._client.transact_write_items(**kwargs)

    interleaving = Interleaving(pipeline.dynamodb, keys[1:])
    tag.tag_image(
        pipeline.s3,
        interleaving,
        deps.labeler,
        deps.settings,
        ref_for(pipeline, keys[0]),
        lease(tag, keys[0]),
    )
    for key in keys:  # and every one delivered again
        tag.tag_image(
            pipeline.s3,
            pipeline.dynamodb,
            deps.labeler,
            deps.settings,
            ref_for(pipeline, key),
            lease(tag, "again"),
        )

    assert counts(pipeline) == {"colour:red": 4, "shape:square": 4}
    assert_consistent(pipeline)


def test_out_of_order_event_is_skipped(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    key = "images/late.png"
    old_event = put_image(pipeline, key, png(RED, (10, 10)))
    pipeline.s3.delete_object(Bucket=pipeline.archive, Key=key)

    assert tag.handler(old_event, lambda_context) == {"batchItemFailures": []}
    assert counts(pipeline) == {}
    assert image_item(pipeline, key) == {}


def test_unlabelable_image_is_recorded_not_retried(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    key = "images/broken.jpg"
    event = put_image(pipeline, key, b"\xff\xd8\xff\xe0 truncated jpeg")

    assert tag.handler(event, lambda_context) == {"batchItemFailures": []}

    item = image_item(pipeline, key)
    assert item["labels"] == {"L": []}
    assert "not a decodable image" in item["label_error"]["S"]
    assert counts(pipeline) == {}


def test_only_archived_images_are_tagged(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    event = put_image(pipeline, "data/readings.png", png(RED, (10, 10)))
    assert tag.handler(event, lambda_context) == {"batchItemFailures": []}
    assert pipeline.dynamodb.scan(TableName=pipeline.images_table)["Items"] == []


def test_many_tagged_images_page_through_a_label(
    pipeline: Pipeline, tag: ModuleType, lambda_context: FakeContext
) -> None:
    keys = {f"images/batch/{n:03d}.png" for n in range(13)}
    for key in keys:
        tag.handler(put_image(pipeline, key, png(RED, (12, 12))), lambda_context)

    found: list[str] = []
    token = None
    while True:
        page, token = images_for_label(
            pipeline.dynamodb, pipeline.labels_table, "colour:red", page_size=4, start_token=token
        )
        found.extend(image.archive_key for image in page)
        if token is None:
            break
    assert sorted(found) == sorted(keys)
    assert counts(pipeline)["colour:red"] == 13


def test_rekognition_labeler_through_moto(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeContext
) -> None:
    monkeypatch.setenv("LABELER", "rekognition")
    monkeypatch.setenv("LABEL_MIN_CONFIDENCE", "10")
    rekognition_tag = load_handler("tag")
    key = "images/dog.png"

    event = put_image(pipeline, key, png(RED, (10, 10)))
    assert rekognition_tag.handler(event, lambda_context) == {"batchItemFailures": []}

    assert image_item(pipeline, key)["labeler"] == {"S": "rekognition"}
    labels = item_labels(pipeline, key)
    assert labels and not any(":" in label for label in labels)  # moto's canned label
    assert counts(pipeline) == dict.fromkeys(labels, 1)
    assert_consistent(pipeline)


class FixedLabeler:
    """Answers what a Rekognition-like service would, per content: fractional confidences."""

    name = "fixed"

    def __init__(self, answers: dict[str, list[Label]]) -> None:
        self.answers = answers

    def detect(self, image: ImageObject) -> list[Label]:
        return self.answers[image.etag]


def test_the_item_keeps_each_label_with_its_confidence_and_when_it_changed(
    pipeline: Pipeline, tag: ModuleType, deps: Dependencies
) -> None:
    """Issue 12: labels with confidence on the image's item (equal to the memberships'),
    replaced when new content is labelled; created_at stays, updated_at moves."""
    key = "images/pets/rex.png"
    created = "2025-01-01T00:00:00.000Z"
    pipeline.dynamodb.put_item(
        TableName=pipeline.images_table,
        Item={
            "image_id": {"S": image_id(key)},
            "archive_key": {"S": key},
            "created_at": {"S": created},
            "updated_at": {"S": created},
        },
    )
    first = put_image(pipeline, key, png(RED, (80, 40)))
    first_etag = event_etag(first)
    labeler = FixedLabeler({first_etag: [Label("Dog", 97.12345), Label("Pet", 81.5)]})

    tag.tag_image(
        pipeline.s3,
        pipeline.dynamodb,
        labeler,
        deps.settings,
        ref_for(pipeline, key),
        lease(tag, "a"),
    )

    item = plain(image_item(pipeline, key))
    assert item["label_confidence"] == {"Dog": 97.123, "Pet": 81.5}
    assert label_confidences(item) == [("Dog", 97.123), ("Pet", 81.5)]
    assert item["created_at"] == created and item["updated_at"] > created
    first_update = item["updated_at"]
    for label, confidence in item["label_confidence"].items():
        [member], _ = images_for_label(pipeline.dynamodb, pipeline.labels_table, label)
        assert member.confidence == confidence

    second = put_image(pipeline, key, png(BLUE, (40, 80)))
    labeler.answers[event_etag(second)] = [Label("Cat", 88.25)]
    tag.tag_image(
        pipeline.s3,
        pipeline.dynamodb,
        labeler,
        deps.settings,
        ref_for(pipeline, key),
        lease(tag, "b"),
    )

    item = plain(image_item(pipeline, key))
    assert item["labels"] == ["Cat"] and item["label_confidence"] == {"Cat": 88.25}
    assert item["created_at"] == created and item["updated_at"] >= first_update
    assert counts(pipeline) == {"Cat": 1}
    assert_consistent(pipeline)


def test_an_item_labelled_before_confidences_were_kept_reads_without_them() -> None:
    """Items tagged before ``label_confidence`` existed hold names only: readers give None."""
    item = {"image_id": "x", "labels": ["Tree", "Sky"]}
    assert label_confidences(item) == [("Sky", None), ("Tree", None)]
    assert label_confidences({"image_id": "y"}) == []
