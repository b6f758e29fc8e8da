"""What the Lambda service does around one SQS-triggered invocation, as pure functions.

The local runner receives messages itself, so it must build the event Lambda would build
and settle the batch the way Lambda would afterwards. Both follow the AWS documentation:

- the event: "Using Lambda with Amazon SQS" (example SQS message event), one record per
  message with camelCase keys, system attributes as strings, message attributes in the
  ``stringValue``/``binaryValue``/``dataType`` shape;
- the settlement: "Handling errors for an SQS event source in Lambda". Without
  ``ReportBatchItemFailures`` a successful invocation deletes the whole batch. With it, a
  null or empty response, or a null or empty ``batchItemFailures`` list, is a complete
  success; a response that is not a JSON object, an ``itemIdentifier`` that is missing,
  empty, not a string or not a message of this batch is a complete failure. A function
  error (exception, timeout, unserialisable response) deletes nothing either way.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [
            base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])
        ],
        "dataType": value.get("DataType", "String"),
    }


def sqs_event_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event record for one message as returned by ``sqs.receive_message``.

    The message must have been received with ``AttributeNames=["All"]`` and
    ``MessageAttributeNames=["All"]`` so the record carries what Lambda's does.
    """
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {"Records": [sqs_event_record(message, queue_arn, region) for message in messages]}


@dataclass(frozen=True)
class Settlement:
    """Which messages of a batch the poller deletes, and why the others stay."""

    delete: tuple[str, ...]
    retry: tuple[str, ...]
    reason: str | None = None


def _complete_failure(message_ids: Sequence[str], reason: str) -> Settlement:
    return Settlement(delete=(), retry=tuple(message_ids), reason=reason)


def settle_batch(
    message_ids: Sequence[str], response: Any, *, report_batch_item_failures: bool
) -> Settlement:
    """Settle a batch whose invocation returned ``response`` (not raised)."""
    everything = Settlement(delete=tuple(message_ids), retry=())
    if not report_batch_item_failures or response is None:
        return everything
    if not isinstance(response, Mapping):
        return _complete_failure(
            message_ids, f"response is a {type(response).__name__}, not a JSON object"
        )
    failures = response.get("batchItemFailures")
    if not failures:
        return everything
    if not isinstance(failures, list):
        return _complete_failure(message_ids, "batchItemFailures is not a list")
    in_batch = set(message_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or not identifier:
            return _complete_failure(
                message_ids, f"batchItemFailures entry without an itemIdentifier: {item!r}"
            )
        if identifier not in in_batch:
            return _complete_failure(
                message_ids, f"batchItemFailures names {identifier!r}, not a message of this batch"
            )
        failed.add(identifier)
    return Settlement(
        delete=tuple(m for m in message_ids if m not in failed),
        retry=tuple(m for m in message_ids if m in failed),
        reason=f"{len(failed)} of {len(message_ids)} reported in batchItemFailures",
    )


def round_trip_json(response: Any) -> Any:
    """The response as the Lambda service sees it after serialisation.

    Raises ``TypeError``/``ValueError`` when it cannot be serialised, which Lambda reports
    as a function error (``Runtime.MarshalError``).
    """
    return json.loads(json.dumps(response))


@dataclass
class LambdaContext:
    """The context object the Python runtime passes to a handler (awslambdaric's shape)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: str
    log_group_name: str
    log_stream_name: str
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
