"""Label storage against moto's DynamoDB: exact counts, idempotency, paging at scale."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sluice import label_items
from sluice.label_items import (
    InvalidPageTokenError,
    add_membership,
    images_for_label,
    iter_images_for_label,
    label_count,
    label_counts,
    remove_membership,
)
from tests.conftest import Pipeline


def add(p: Pipeline, label: str, image: str, confidence: float = 90.0) -> bool:
    return add_membership(
        p.dynamodb,
        p.labels_table,
        label,
        image,
        archive_key=f"images/{image}.jpg",
        confidence=confidence,
    )


def test_add_and_remove_count_once_each(pipeline: Pipeline) -> None:
    assert add(pipeline, "Dog", "img1") is True
    assert add(pipeline, "Dog", "img1") is False
    assert add(pipeline, "Dog", "img2") is True
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Dog") == 2

    assert remove_membership(pipeline.dynamodb, pipeline.labels_table, "Dog", "img1") is True
    assert remove_membership(pipeline.dynamodb, pipeline.labels_table, "Dog", "img1") is False
    assert remove_membership(pipeline.dynamodb, pipeline.labels_table, "Cat", "img1") is False
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Dog") == 1
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Cat") == 0


def test_repeated_add_refreshes_confidence_without_counting(pipeline: Pipeline) -> None:
    add(pipeline, "Dog", "img1", confidence=81.0)
    add(pipeline, "Dog", "img1", confidence=97.25)
    images, _ = images_for_label(pipeline.dynamodb, pipeline.labels_table, "Dog")
    assert [(i.image_id, i.archive_key, i.confidence) for i in images] == [
        ("img1", "images/img1.jpg", 97.25)
    ]
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Dog") == 1


def test_label_counts_most_first_then_by_name_without_empty_labels(pipeline: Pipeline) -> None:
    for image in ("a", "b", "c"):
        add(pipeline, "Tree", image)
    for image in ("a", "b"):
        add(pipeline, "Sky", image)
        add(pipeline, "Grass", image)
    add(pipeline, "Gone", "a")
    remove_membership(pipeline.dynamodb, pipeline.labels_table, "Gone", "a")

    assert label_counts(pipeline.dynamodb, pipeline.labels_table) == [
        ("Tree", 3),
        ("Grass", 2),
        ("Sky", 2),
    ]


def item_bytes(item: dict[str, Any]) -> int:
    """Roughly DynamoDB's item size: names plus values as stored."""
    return len(json.dumps(item))


def test_many_images_of_one_label_page_exactly_once_and_no_item_grows(
    pipeline: Pipeline,
) -> None:
    # Every membership is an item of its own, so a label's size grows its partition, never
    # an item: 100,000 images work like these 300. (moto copies the whole table for each
    # transaction, so thousands here would only measure moto.)
    expected = {f"{n:032x}" for n in range(300)}
    for image in sorted(expected):
        add(pipeline, "Person", image)
    for image in sorted(expected)[:25]:  # a burst of duplicate deliveries
        add(pipeline, "Person", image)

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page, token = images_for_label(
            pipeline.dynamodb, pipeline.labels_table, "Person", page_size=23, start_token=token
        )
        assert len(page) <= 23
        seen.extend(image.image_id for image in page)
        pages += 1
        if token is None:
            break

    assert len(seen) == len(expected)
    assert set(seen) == expected
    assert pages == -(-300 // 23)
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Person") == 300
    streamed = iter_images_for_label(
        pipeline.dynamodb, pipeline.labels_table, "Person", page_size=150
    )
    assert sorted(image.image_id for image in streamed) == sorted(expected)
    items = pipeline.dynamodb.scan(TableName=pipeline.labels_table)["Items"]
    assert len(items) == 301
    assert max(item_bytes(item) for item in items) < 300


def test_page_token_is_bound_to_its_label(pipeline: Pipeline) -> None:
    for image in ("a", "b", "c"):
        add(pipeline, "Dog", image)
    _, token = images_for_label(pipeline.dynamodb, pipeline.labels_table, "Dog", page_size=1)
    assert token is not None
    with pytest.raises(InvalidPageTokenError):
        images_for_label(pipeline.dynamodb, pipeline.labels_table, "Cat", start_token=token)
    with pytest.raises(ValueError, match="page_size"):
        images_for_label(pipeline.dynamodb, pipeline.labels_table, "Dog", page_size=0)


class ConflictingDynamoDB:
    """Cancels the first transactions with TransactionConflict, as DynamoDB does when
    another transaction holds the same count item."""

    def __init__(self, client: Any, conflicts: int) -> None:
        self._client = client
        self.conflicts = conflicts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        if self.conflicts:
            self.conflicts -= 1
            raise self._client.exceptions.TransactionCanceledException(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**kwargs)


def test_transaction_conflicts_are_retried_and_count_once(pipeline: Pipeline) -> None:
    dynamodb = ConflictingDynamoDB(pipeline.dynamodb, conflicts=3)
    assert add_membership(
        dynamodb, pipeline.labels_table, "Dog", "img1", archive_key="k", confidence=90.0
    )
    assert dynamodb.conflicts == 0
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Dog") == 1


def test_other_cancellations_propagate(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(label_items, "_BACKOFF_BASE_SECONDS", 0.0)
    dynamodb = ConflictingDynamoDB(pipeline.dynamodb, conflicts=100)
    with pytest.raises(ClientError):
        add_membership(
            dynamodb, pipeline.labels_table, "Dog", "img1", archive_key="k", confidence=1.0
        )
    assert label_count(pipeline.dynamodb, pipeline.labels_table, "Dog") == 0
