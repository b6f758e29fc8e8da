"""Turn the events a handler receives into the S3 objects it must act on.

Handlers are fed by SQS messages whose bodies are S3 event notifications. For manual
invocation (``aws lambda invoke``) and tests they also accept a direct S3 notification and
an EventBridge "Object Created" event. Keys in both are URL-encoded with ``+`` for spaces
and ``%2B`` for a literal plus, so they are decoded with ``unquote_plus`` (as Powertools'
``S3EventBridgeNotificationObject.key`` does); moto also encodes ``/`` as ``%2F``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

CREATED_PREFIX = "ObjectCreated:"
REMOVED_PREFIX = "ObjectRemoved:"


class UnsupportedEventError(ValueError):
    """The event has a shape no sluice handler understands."""


@dataclass(frozen=True)
class S3ObjectRef:
    """One object named by an event, with what the event says about its version."""

    bucket: str
    key: str
    event_name: str
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None
    sequencer: str | None = None
    event_time: str | None = None

    @property
    def is_created(self) -> bool:
        return self.event_name.startswith(CREATED_PREFIX) or self.event_name == "Object Created"

    @property
    def is_removed(self) -> bool:
        """``ObjectRemoved:Delete`` or ``ObjectRemoved:DeleteMarkerCreated`` (EventBridge:
        ``Object Deleted``)."""
        return self.event_name.startswith(REMOVED_PREFIX) or self.event_name == "Object Deleted"


def normalize_etag(etag: str | None) -> str | None:
    """S3 returns ETags quoted in headers and unquoted in notifications; compare them bare."""
    if etag is None:
        return None
    return etag.strip().strip('"') or None


def _require(mapping: Mapping[str, Any], *path: str) -> Any:
    node: Any = mapping
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            raise UnsupportedEventError(f"event is missing {'.'.join(path)}")
        node = node[part]
    return node


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def refs_from_s3_notification(body: Mapping[str, Any]) -> list[S3ObjectRef]:
    """Objects in an S3 notification; an ``s3:TestEvent`` names none."""
    if body.get("Event") == "s3:TestEvent":
        return []
    records = body.get("Records")
    if not isinstance(records, list):
        raise UnsupportedEventError("S3 notification has no Records list")
    refs = []
    for record in records:
        if not isinstance(record, Mapping):
            raise UnsupportedEventError("S3 notification record is not an object")
        obj = _require(record, "s3", "object")
        key = _require(obj, "key")
        bucket = _require(record, "s3", "bucket", "name")
        if not isinstance(key, str) or not isinstance(bucket, str):
            raise UnsupportedEventError("S3 notification bucket name and key must be strings")
        refs.append(
            S3ObjectRef(
                bucket=bucket,
                key=unquote_plus(key),
                event_name=str(record.get("eventName", "")),
                etag=normalize_etag(_optional_str(obj.get("eTag"))),
                version_id=_optional_str(obj.get("versionId")),
                size=_optional_int(obj.get("size")),
                sequencer=_optional_str(obj.get("sequencer")),
                event_time=_optional_str(record.get("eventTime")),
            )
        )
    return refs


def refs_from_eventbridge(event: Mapping[str, Any]) -> list[S3ObjectRef]:
    detail = _require(event, "detail")
    obj = _require(detail, "object")
    key = _require(obj, "key")
    bucket = _require(detail, "bucket", "name")
    if not isinstance(key, str) or not isinstance(bucket, str):
        raise UnsupportedEventError("EventBridge bucket name and key must be strings")
    return [
        S3ObjectRef(
            bucket=bucket,
            key=unquote_plus(key),
            event_name=str(event.get("detail-type", "")),
            # S3 spells it "etag" in EventBridge events; moto sends "eTag" as in notifications.
            etag=normalize_etag(_optional_str(obj.get("etag") or obj.get("eTag"))),
            version_id=_optional_str(obj.get("version-id")),
            size=_optional_int(obj.get("size")),
            sequencer=_optional_str(obj.get("sequencer")),
            event_time=_optional_str(event.get("time")),
        )
    ]


def refs_from_sqs_body(body: str) -> list[S3ObjectRef]:
    """Objects in one SQS message body (an S3 notification, or an EventBridge event)."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise UnsupportedEventError(f"SQS message body is not JSON: {exc}") from None
    if not isinstance(payload, Mapping):
        raise UnsupportedEventError("SQS message body is not a JSON object")
    return refs_from_event(payload)


def event_kind(event: Mapping[str, Any]) -> str:
    """``sqs``, ``s3`` or ``eventbridge``; anything else is unsupported."""
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        source = records[0].get("eventSource")
        if source == "aws:sqs":
            return "sqs"
        if source == "aws:s3":
            return "s3"
    if event.get("Event") == "s3:TestEvent":
        return "s3"
    if event.get("source") == "aws.s3" and "detail" in event:
        return "eventbridge"
    raise UnsupportedEventError(
        "unsupported event: expected an SQS batch, an S3 notification or an EventBridge S3 event"
    )


def refs_from_event(event: Mapping[str, Any]) -> list[S3ObjectRef]:
    """Objects named by a direct (non-SQS) event."""
    kind = event_kind(event)
    if kind == "s3":
        return refs_from_s3_notification(event)
    if kind == "eventbridge":
        return refs_from_eventbridge(event)
    raise UnsupportedEventError("an SQS batch must be processed message by message")


def is_scheduled_event(payload: Any) -> bool:
    """An EventBridge ``Scheduled Event`` (a schedule rule's), itself or as an SQS message
    body (a JSON string): it names no object, it only says that it is time."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return False
    return (
        isinstance(payload, Mapping)
        and payload.get("source") == "aws.events"
        and payload.get("detail-type") == "Scheduled Event"
    )


def split_scheduled(event: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    """An SQS batch's scheduled events, and the same batch without them (a queue that gets
    both S3 notifications and a schedule rule's events)."""
    records = event.get("Records") or []
    ticks = [
        r
        for r in records
        if r.get("eventSource") == "aws:sqs" and is_scheduled_event(r.get("body"))
    ]
    return ticks, {**event, "Records": [record for record in records if record not in ticks]}
