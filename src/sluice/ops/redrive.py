"""``sluice redrive``: move dead letters back to the queues they came from.

Preferred: SQS's own message-move task (``StartMessageMoveTask`` with only the DLQ as
source returns every message to the queue it was dead-lettered from). Where the endpoint
does not offer it (emulators), or when ``--max`` limits the move, messages are moved one
batch at a time: receive from the DLQ, send to the source queue, and only then delete from
the DLQ, so a crash between the two repeats a delivery instead of losing one (handlers are
idempotent). The source queue is the one named by the message's
``DeadLetterQueueSourceArn`` when SQS supplies it, else the queue fed by the bucket of the
S3 notification in the body (RAW -> transform, PROCESSED -> archive, ARCHIVE -> tag,
WORK -> bundle). A message whose source cannot be told stays in the DLQ and is reported.

An ``s3:TestEvent`` dead letter is deleted with a note instead (:attr:`RedriveReport.
discarded`). S3 sends one to a queue whenever a bucket's notification configuration is
written; it names no object, so there is no work to redo and nothing to lose: every
handler acknowledges it without doing anything. It reaches the DLQ only by sharing a batch
that failed as a whole (a timeout, a crash) until ``maxReceiveCount``. Moving it back
would only be acknowledged again; leaving it would make every redrive report not ok. The
message-move task, which cannot tell messages apart, returns it to its queue instead,
where it is acknowledged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sluice.ops.environment import Environment
from sluice.ops.queues import (
    DeadLetter,
    describe_message,
    queue_arn,
    queue_depth,
    receive_batches,
    release,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

TASK = "message-move-task"
BATCHES = "receive-send-delete"
DRY_RUN = "dry-run"
METHODS = ("auto", TASK, BATCHES)

DRY_RUN_LIMIT = 100
MOVE_VISIBILITY_SECONDS = 120
"""Time to send a batch on before SQS would offer it again."""
TASK_FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class Move:
    message_id: str
    subject: str
    """The objects the message is about, or what is wrong with it."""
    target: str | None
    """The queue (function name) it goes back to; None if it cannot be told."""
    problem: str | None = None


@dataclass
class RedriveReport:
    method: str
    dead_letters_before: int
    moved: int = 0
    moves: list[Move] = field(default_factory=list)
    """Moved (or, in a dry run, would move)."""
    left: list[Move] = field(default_factory=list)
    """Left in the DLQ: source unknown, or the send failed."""
    discarded: list[Move] = field(default_factory=list)
    """Deleted (or, in a dry run, would be): ``s3:TestEvent`` messages, with no work in them."""
    task_status: str | None = None
    task_failure: str | None = None
    fallback_reason: str | None = None

    @property
    def ok(self) -> bool:
        return not self.left and self.task_status in (None, "COMPLETED")


@dataclass
class _Targets:
    """Resolves where a dead letter goes back to."""

    sqs: SQSClient
    environment: Environment
    _by_arn: dict[str, str] | None = None

    def function_of(self, url: str) -> str:
        for name, candidate in self.environment.queue_urls.items():
            if candidate == url:
                return name
        return url

    def by_arn(self) -> dict[str, str]:
        if self._by_arn is None:
            self._by_arn = {
                queue_arn(self.sqs, url): url for url in self.environment.queue_urls.values()
            }
        return self._by_arn

    def resolve(self, letter: DeadLetter) -> tuple[str | None, str | None]:
        """(target queue URL, problem)."""
        if letter.source_queue_arn:
            url = self.by_arn().get(letter.source_queue_arn)
            if url is not None:
                return url, None
        buckets = {bucket for bucket, _ in letter.objects}
        if not buckets:
            return None, f"cannot tell its source queue: {letter.describe()}"
        if len(buckets) > 1:
            return None, f"names objects of several buckets: {', '.join(sorted(buckets))}"
        (bucket,) = buckets
        url = self.environment.queue_for_bucket.get(bucket)
        if url is None:
            return None, f"bucket {bucket} feeds no queue of environment {self.environment.name}"
        return url, None

    def plan(self, message: MessageTypeDef) -> tuple[str | None, Move]:
        letter = describe_message(message)
        url, problem = self.resolve(letter)
        target = self.function_of(url) if url else None
        return url, Move(letter.message_id, letter.describe(), target, problem)


TEST_EVENT_NOTE = "an s3:TestEvent names no object: nothing to redo, deleted"


def is_test_event(body: str) -> bool:
    """True for the ``s3:TestEvent`` S3 sends when a notification configuration is written."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("Event") == "s3:TestEvent"


def _discard(
    sqs: SQSClient, dead_letter_url: str, messages: list[MessageTypeDef], report: RedriveReport
) -> list[MessageTypeDef]:
    """Delete test events from the DLQ; return those whose delete failed (to release)."""
    if not messages:
        return []
    response = sqs.delete_message_batch(
        QueueUrl=dead_letter_url,
        Entries=[
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
        ],
    )
    failures = {
        int(item["Id"]): item.get("Message", item["Code"]) for item in response.get("Failed", [])
    }
    to_release = []
    for index, message in enumerate(messages):
        message_id = message.get("MessageId", "")
        if index in failures:
            problem = f"an s3:TestEvent; its delete failed: {failures[index]}"
            report.left.append(Move(message_id, "s3:TestEvent", None, problem))
            to_release.append(message)
        else:
            report.discarded.append(Move(message_id, "s3:TestEvent", None, TEST_EVENT_NOTE))
    return to_release


def _send_attributes(message: MessageTypeDef) -> dict[str, Any]:
    """Message attributes as SendMessage accepts them (the received form has extra keys)."""
    attributes: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        kept = {
            key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value
        }
        attributes[name] = kept
    return attributes


def _move_batch(
    sqs: SQSClient,
    dead_letter_url: str,
    target_url: str,
    planned: list[tuple[MessageTypeDef, Move]],
    report: RedriveReport,
) -> list[MessageTypeDef]:
    """Send then delete one batch; return the messages that must be released."""
    entries: list[Any] = []
    for index, (message, _) in enumerate(planned):
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
        attributes = _send_attributes(message)
        if attributes:
            entry["MessageAttributes"] = attributes
        entries.append(entry)
    response = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
    sent = {int(item["Id"]) for item in response.get("Successful", [])}
    failures = {
        int(item["Id"]): item.get("Message", item["Code"]) for item in response.get("Failed", [])
    }
    to_release = []
    for index, (message, move) in enumerate(planned):
        if index in sent:
            continue
        reason = failures.get(index, "not acknowledged by SendMessageBatch")
        report.left.append(
            Move(move.message_id, move.subject, move.target, f"send failed: {reason}")
        )
        to_release.append(message)
    delivered = [(message, move) for index, (message, move) in enumerate(planned) if index in sent]
    if delivered:
        deleted = sqs.delete_message_batch(
            QueueUrl=dead_letter_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, (message, _) in enumerate(delivered)
            ],
        )
        not_deleted = {int(item["Id"]) for item in deleted.get("Failed", [])}
        for index, (_, move) in enumerate(delivered):
            report.moved += 1
            if index in not_deleted:
                # Already sent: it will be delivered once more, which idempotent handlers absorb.
                report.moves.append(
                    Move(move.message_id, move.subject, move.target, "sent, but still in the DLQ")
                )
            else:
                report.moves.append(move)
    return to_release


def redrive_in_batches(
    sqs: SQSClient, environment: Environment, *, limit: int | None, report: RedriveReport
) -> None:
    targets = _Targets(sqs, environment)
    dead_letter_url = environment.dead_letter_queue_url
    held: list[MessageTypeDef] = []
    try:
        for batch in receive_batches(
            sqs,
            dead_letter_url,
            limit=limit,
            visibility_seconds=MOVE_VISIBILITY_SECONDS,
            wait_seconds=1,
        ):
            by_target: dict[str, list[tuple[MessageTypeDef, Move]]] = {}
            test_events = [m for m in batch if is_test_event(m.get("Body", ""))]
            held.extend(_discard(sqs, dead_letter_url, test_events, report))
            for message in batch:
                if message in test_events:
                    continue
                url, move = targets.plan(message)
                if url is None:
                    report.left.append(move)
                    held.append(message)  # released at the end, so this pass skips it
                else:
                    by_target.setdefault(url, []).append((message, move))
            for url, planned in by_target.items():
                held.extend(_move_batch(sqs, dead_letter_url, url, planned, report))
    finally:
        release(sqs, dead_letter_url, held)


def redrive_with_task(
    sqs: SQSClient,
    dead_letter_arn: str,
    report: RedriveReport,
    *,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Start SQS's message-move task and follow it until it finishes or ``timeout``."""
    sqs.start_message_move_task(SourceArn=dead_letter_arn)
    report.method = TASK
    deadline = clock() + timeout
    while True:
        results = sqs.list_message_move_tasks(SourceArn=dead_letter_arn, MaxResults=1).get(
            "Results", []
        )
        if results:
            task = results[0]  # the most recent task first
            report.task_status = task.get("Status")
            report.moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            report.task_failure = task.get("FailureReason")
            if report.task_status in TASK_FINISHED:
                return
        if clock() >= deadline:
            return
        sleep(min(interval, max(0.0, deadline - clock())))


def _peek(sqs: SQSClient, url: str, *, limit: int) -> list[MessageTypeDef]:
    """Up to ``limit`` messages, made visible again (:func:`sluice.ops.queues.peek`'s way,
    keeping the bodies)."""
    seen: list[MessageTypeDef] = []
    try:
        for batch in receive_batches(
            sqs, url, limit=limit, visibility_seconds=MOVE_VISIBILITY_SECONDS, wait_seconds=1
        ):
            seen.extend(batch)
    finally:
        release(sqs, url, seen)
    return seen


def _short_reason(exc: Exception) -> str:
    # An emulator's 500 carries an HTML page as its message: the code says enough.
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        message = str(error.get("Message", ""))
        return code if message.lstrip().startswith("<") or not message else f"{code}: {message}"
    return str(exc) or type(exc).__name__


def redrive(
    sqs: SQSClient,
    environment: Environment,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    method: str = "auto",
    task_timeout: float = 300.0,
) -> RedriveReport:
    dead_letter_url = environment.dead_letter_queue_url
    before = queue_depth(sqs, "dead-letter", dead_letter_url).total
    if dry_run:
        report = RedriveReport(method=DRY_RUN, dead_letters_before=before)
        targets = _Targets(sqs, environment)
        for message in _peek(sqs, dead_letter_url, limit=limit or DRY_RUN_LIMIT):
            letter = describe_message(message)
            if is_test_event(message.get("Body", "")):
                report.discarded.append(
                    Move(letter.message_id, "s3:TestEvent", None, TEST_EVENT_NOTE)
                )
                continue
            url, problem = targets.resolve(letter)
            move = Move(
                letter.message_id,
                letter.describe(),
                targets.function_of(url) if url else None,
                problem,
            )
            (report.moves if url else report.left).append(move)
        return report

    report = RedriveReport(method=BATCHES, dead_letters_before=before)
    if before == 0:
        return report
    if method in ("auto", TASK) and limit is None:
        arn = environment.dead_letter_queue_arn or queue_arn(sqs, dead_letter_url)
        try:
            redrive_with_task(sqs, arn, report, timeout=task_timeout)
            return report
        except (ClientError, NotImplementedError) as exc:
            # Emulators may not offer the task; moto raises NotImplementedError in-process.
            if method == TASK:
                raise
            report.fallback_reason = f"message-move task unavailable ({_short_reason(exc)})"
    redrive_in_batches(sqs, environment, limit=limit, report=report)
    return report
