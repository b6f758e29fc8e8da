"""Queue depths and non-destructive peeks, shared by status, audit and redrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluice.events import UnsupportedEventError, refs_from_sqs_body

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
SQS_MAX_BATCH = 10
PEEK_VISIBILITY_SECONDS = 30
"""Long enough to page through a sample without seeing a message twice; reset after."""


@dataclass(frozen=True)
class QueueDepth:
    name: str
    url: str
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_depth(sqs: SQSClient, name: str, url: str) -> QueueDepth:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=list(DEPTH_ATTRIBUTES),  # type: ignore[arg-type]
    ).get("Attributes", {})
    return QueueDepth(
        name=name,
        url=url,
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def queue_arn(sqs: SQSClient, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


@dataclass(frozen=True)
class DeadLetter:
    """What a dead-lettered message is about: the objects its S3 notification names."""

    message_id: str
    objects: list[tuple[str, str]] = field(default_factory=list)
    """(bucket, key) pairs; empty when the body is not an S3 notification."""
    problem: str | None = None
    source_queue_arn: str | None = None
    """``DeadLetterQueueSourceArn`` when SQS provides it."""

    def describe(self) -> str:
        if self.objects:
            return ", ".join(f"s3://{bucket}/{key}" for bucket, key in self.objects)
        return self.problem or "no S3 object named"


def describe_message(message: MessageTypeDef) -> DeadLetter:
    message_id = message.get("MessageId", "")
    source_arn = message.get("Attributes", {}).get("DeadLetterQueueSourceArn")
    body = message.get("Body", "")
    try:
        refs = refs_from_sqs_body(body)
    except UnsupportedEventError as exc:
        return DeadLetter(message_id, problem=str(exc), source_queue_arn=source_arn)
    if not refs:
        problem = "no S3 object named"
        try:
            if json.loads(body).get("Event") == "s3:TestEvent":
                problem = "an s3:TestEvent (sent when a notification configuration is written)"
        except (ValueError, AttributeError):
            pass
        return DeadLetter(message_id, problem=problem, source_queue_arn=source_arn)
    return DeadLetter(
        message_id,
        objects=[(ref.bucket, ref.key) for ref in refs],
        source_queue_arn=source_arn,
    )


def receive_batches(
    sqs: SQSClient, url: str, *, limit: int | None, visibility_seconds: int, wait_seconds: int
) -> Iterator[list[MessageTypeDef]]:
    """Receive batches until the queue has nothing visible or ``limit`` messages came.

    Received messages stay invisible for ``visibility_seconds``, so one pass never sees a
    message twice; callers delete them or make them visible again.
    """
    received = 0
    while limit is None or received < limit:
        wanted = SQS_MAX_BATCH if limit is None else min(SQS_MAX_BATCH, limit - received)
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=wanted,
            VisibilityTimeout=visibility_seconds,
            # Long polling asks every SQS server, so an empty answer means empty.
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return
        received += len(messages)
        yield messages


def release(sqs: SQSClient, url: str, messages: list[MessageTypeDef]) -> None:
    """Make received messages visible again at once."""
    for start in range(0, len(messages), SQS_MAX_BATCH):
        batch = messages[start : start + SQS_MAX_BATCH]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": str(index),
                    "ReceiptHandle": message["ReceiptHandle"],
                    "VisibilityTimeout": 0,
                }
                for index, message in enumerate(batch)
            ],
        )


def peek(sqs: SQSClient, url: str, *, limit: int, wait_seconds: int = 1) -> list[DeadLetter]:
    """Describe up to ``limit`` messages without consuming them.

    Receiving raises each message's receive count; that is harmless on a dead-letter
    queue, which has no redrive policy of its own.
    """
    seen: list[MessageTypeDef] = []
    try:
        for batch in receive_batches(
            sqs,
            url,
            limit=limit,
            visibility_seconds=PEEK_VISIBILITY_SECONDS,
            wait_seconds=wait_seconds,
        ):
            seen.extend(batch)
    finally:
        release(sqs, url, seen)
    return [describe_message(message) for message in seen]
