"""Event parsing against the golden events in tests/events/ (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.events import (
    S3ObjectRef,
    UnsupportedEventError,
    event_kind,
    normalize_etag,
    refs_from_event,
    refs_from_sqs_body,
)
from tests.s3events import golden, s3_event, s3_record


def sqs_bodies(event: dict[str, Any]) -> list[str]:
    return [record["body"] for record in event["Records"]]


def test_encoded_key_decodes_spaces_literal_plus_and_unicode() -> None:
    [ref] = refs_from_event(golden("s3_put_encoded_key.json"))

    # '+' is a space, '%2B' a literal plus, '%C3%A9' is 'é' in UTF-8.
    assert ref.key == "uploads/my photo +1 été.jpg"
    assert ref.bucket == "sluice-dev-raw"
    assert ref.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert ref.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert ref.size == 1048576
    assert ref.sequencer == "0055AED6DCD90281E5"
    assert ref.event_time == "2026-11-22T09:15:02.417Z"
    assert ref.is_created


def test_moto_style_event_with_encoded_slashes_and_quoted_etag() -> None:
    [ref] = refs_from_event(golden("moto_slash_encoded.json"))

    assert ref.key == "requests/team a/dogs++cats.json"
    assert ref.etag == "5d41402abc4b2a76b9719d911017c592"
    # moto omits versionId and sequencer; they must come out as None, not "".
    assert ref.version_id is None
    assert ref.sequencer is None


def test_every_record_of_a_multi_record_event_in_order() -> None:
    refs = refs_from_event(golden("s3_multi_record.json"))

    assert [r.key for r in refs] == [
        "requests/first.json",
        "requests/second.json",
        "requests/third.json",
    ]
    assert [r.event_name for r in refs] == [
        "ObjectCreated:Put",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectCreated:Copy",
    ]
    assert all(r.is_created for r in refs)
    assert refs[1].etag == "9b2cf535f27731c974343645a3985328-2"
    assert refs[2].version_id is None


def test_test_event_names_no_object() -> None:
    event = golden("s3_test_event.json")

    assert event_kind(event) == "s3"
    assert refs_from_event(event) == []


def test_object_removed_is_parsed_but_not_created() -> None:
    [ref] = refs_from_event(golden("s3_object_removed.json"))

    assert ref.key == "requests/gone.json"
    assert ref.event_name == "ObjectRemoved:Delete"
    assert not ref.is_created
    assert ref.etag is None
    assert ref.size is None


def test_eventbridge_object_created_decodes_its_key() -> None:
    event = golden("eventbridge_object_created.json")

    [ref] = refs_from_event(event)

    assert event_kind(event) == "eventbridge"
    assert ref == S3ObjectRef(
        bucket="sluice-dev-work",
        key="requests/summer 2026 + été.json",
        event_name="Object Created",
        etag="b1946ac92492d2347c6235b4d2611184",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        size=64,
        sequencer="617f08299329d189",
        event_time="2026-11-22T09:15:02Z",
    )
    assert ref.is_created


def test_eventbridge_object_deleted_is_not_created() -> None:
    [ref] = refs_from_event(golden("eventbridge_object_deleted.json"))

    assert ref.event_name == "Object Deleted"
    assert not ref.is_created


def test_eventbridge_etag_spelled_like_moto() -> None:
    # moto's S3 -> EventBridge events spell the field "eTag" like S3 notifications do.
    event = golden("eventbridge_object_created.json")
    obj = event["detail"]["object"]
    obj["eTag"] = obj.pop("etag")

    [ref] = refs_from_event(event)

    assert ref.etag == "b1946ac92492d2347c6235b4d2611184"


def test_sqs_wrapped_batch_bodies() -> None:
    event = golden("sqs_batch.json")
    put_body, test_body, removed_body = sqs_bodies(event)

    assert event_kind(event) == "sqs"
    [put] = refs_from_sqs_body(put_body)
    assert put.key == "requests/dogs + cats été.json"
    assert refs_from_sqs_body(test_body) == []
    [removed] = refs_from_sqs_body(removed_body)
    assert not removed.is_created


def test_sqs_wrapped_eventbridge_event() -> None:
    [body] = sqs_bodies(golden("sqs_eventbridge.json"))

    [ref] = refs_from_sqs_body(body)

    assert ref.key == "requests/summer 2026 + été.json"
    assert ref.is_created


def test_sqs_body_that_is_not_json_is_rejected_with_a_reason() -> None:
    bodies = sqs_bodies(golden("sqs_batch_malformed_body.json"))

    with pytest.raises(UnsupportedEventError, match="not JSON"):
        refs_from_sqs_body(bodies[1])


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "42"])
def test_sqs_body_that_is_json_but_not_an_object(body: str) -> None:
    with pytest.raises(UnsupportedEventError, match="not a JSON object"):
        refs_from_sqs_body(body)


def test_sqs_batch_is_not_accepted_as_a_direct_event() -> None:
    with pytest.raises(UnsupportedEventError, match="message by message"):
        refs_from_event(golden("sqs_batch.json"))


def test_sqs_body_holding_an_sqs_batch_is_rejected() -> None:
    nested = json.dumps(golden("sqs_batch.json"))

    with pytest.raises(UnsupportedEventError):
        refs_from_sqs_body(nested)


def test_record_without_object_names_what_is_missing() -> None:
    with pytest.raises(UnsupportedEventError, match=r"s3\.object"):
        refs_from_event(golden("malformed_s3_record.json"))


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Records": []},
        {"Records": ["not a record"]},
        {"source": "aws.ec2", "detail": {}},
        {"source": "aws.s3"},
        {"Records": [{"eventSource": "aws:sns"}]},
    ],
)
def test_unsupported_event_shapes(event: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedEventError):
        refs_from_event(event)


def test_non_string_key_is_rejected() -> None:
    record = s3_record("bucket", "key")
    record["s3"]["object"]["key"] = 12

    with pytest.raises(UnsupportedEventError, match="must be strings"):
        refs_from_event(s3_event(record))


def test_builder_round_trips_odd_keys() -> None:
    # The test builder encodes like S3; parsing must give the original key back.
    keys = ["a b+c.jpg", "dir/ü ñ/x%y.png", "100% + 50%", "trailing space ", "k" * 1024]
    for key in keys:
        [ref] = refs_from_event(s3_event(s3_record("bucket", key, etag='"abc"')))
        assert ref.key == key
        assert ref.etag == "abc"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('"abc"', "abc"), ("abc", "abc"), ('  "abc-2" ', "abc-2"), ('""', None), (None, None)],
)
def test_normalize_etag(raw: str | None, expected: str | None) -> None:
    assert normalize_etag(raw) == expected
