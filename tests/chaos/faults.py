"""Fault injection for sluice's handlers, with no change to their code.

Two hooks, both installed from outside the handler:

* **AWS calls**: :class:`Injector` registers ``before-call.*.*`` and ``after-call.*.*``
  handlers on a boto3 session's event system. A handler creates its clients with
  ``sluice.runtime.client``, i.e. ``boto3.client(...)`` from ``boto3.DEFAULT_SESSION``, at
  import inside the local runtime (``AWS_LAMBDA_FUNCTION_NAME`` is set) and at its first
  call elsewhere; each client copies the session's event handlers when it is created, so
  :func:`install` must run before the handler's import (the local runner's
  ``SLUICE_RUNNER_PRELOAD`` hook, or a test that installs and then calls ``load_handler``).
  Every client call goes through ``BaseClient._make_api_call``, which emits both events,
  so every AWS call site of the handler is seen
  (``tests/integration/test_fault_injection.py`` checks this against a spy on
  ``_make_api_call``).
* **The invocation**: :func:`make_wrapper` wraps ``handler(event, context)`` (the runner's
  ``wrap_handler`` hook). Per invocation it draws, from a seeded generator, whether to
  inject a fault and where; it also re-sends copies of some messages to their queue with
  a random delay (duplicate, late delivery), and writes one JSON line per invocation to
  the fault log, from which the chaos test builds its ledger.

A third, optional hook deletes chosen RAW keys at a chosen step of their transform
(:class:`DeletePlan`): a user deleting an upload while it is processed, at a moment
that is known instead of raced for.

A fault point is "AWS call number *n* of this invocation, before or after it". *Before*:
the call is not made, as if the function crashed between step *n*-1 and step *n*.
*After*: the call is made and its response is lost, as if the function crashed right
after step *n* (e.g. after PutObject of the data, before the receipt). An invocation that
makes fewer than *n* calls fails at its end instead: all the work is done and the batch
still comes back, as when a function dies before Lambda deletes its messages.

The injected error is a ``ClientError`` with code ``ServiceUnavailable`` (HTTP 503): what
a handler sees when the SDK's own retries are exhausted. It is raised from the event hooks,
which sit outside the SDK's retry loop, so it always reaches the handler.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError

Handler = Callable[[dict[str, Any], Any], Any]
When = Literal["before", "after"]

# Settings, read from the environment (the runner passes SLUICE_RUNNER_* to its workers).
ENV_RATE = "SLUICE_RUNNER_FAULT_RATE"
ENV_SEED = "SLUICE_RUNNER_FAULT_SEED"
ENV_FUNCTIONS = "SLUICE_RUNNER_FAULT_FUNCTIONS"
ENV_DUPLICATE_RATE = "SLUICE_RUNNER_DUPLICATE_RATE"
ENV_DUPLICATE_MAX_DELAY = "SLUICE_RUNNER_DUPLICATE_MAX_DELAY"
ENV_LOG = "SLUICE_RUNNER_FAULT_LOG"
ENV_DELETE_PLAN = "SLUICE_RUNNER_DELETE_PLAN"
"""A JSON file ``{raw key: step}`` (steps: :data:`DeletePlan.STEPS`), read by transform."""
DELETE_LOG_FUNCTION = "raw-delete"
"""The fault log's ``function`` for a line that records one planned delete."""

COPY_ATTRIBUTE = "sluice-chaos-copy"
# Fault points are drawn from 1..this times the batch size; past the invocation's last
# call the fault fires at its end (in the chaos run: a few of archive's faults, about a
# third of transform's and tag's, whose rejected inputs and duplicates make few calls).
CALLS_PER_RECORD_DRAWN = 8


class InjectedFaultError(ClientError):
    """A transient-looking AWS error that the harness raised, not the service."""

    def __init__(self, operation: str, detail: str) -> None:
        response: dict[str, Any] = {
            "Error": {"Code": "ServiceUnavailable", "Message": f"injected fault: {detail}"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        }
        super().__init__(response, operation)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FaultPoint:
    call: int
    """1-based number of the AWS call, counted over the whole invocation."""
    when: When = "before"


@dataclass
class Injector:
    """Counts the AWS calls of the current invocation and fails the planned one."""

    point: FaultPoint | None = None
    calls: list[str] = field(default_factory=list)
    """``service.Operation`` of every call since :meth:`arm`, in order."""
    fired: str | None = None
    """Where the fault fired (e.g. ``before s3.PutObject (#3)``), once it has."""
    on_call: Callable[[int, str], None] | None = None
    """Called before each call with its number and name (the two-worker test blocks here)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _current: threading.local = field(default_factory=threading.local, repr=False)

    def arm(self, point: FaultPoint | None) -> None:
        """Start counting a new invocation, failing it at ``point`` (None: only count)."""
        with self._lock:
            self.point, self.calls, self.fired = point, [], None

    def disarm(self) -> None:
        with self._lock:
            self.point = None

    def _fire(self, name: str, number: int, when: When) -> None:
        self.fired = f"{when} {name} (#{number})"
        raise InjectedFaultError(name.split(".", 1)[1], self.fired)

    def before_call(self, model: Any, event_name: str = "", **_: Any) -> None:
        name = _call_name(event_name, model)
        with self._lock:
            self.calls.append(name)
            number = len(self.calls)
            point = self.point
        self._current.number = number
        if self.on_call is not None:
            self.on_call(number, name)
        if point is not None and point.when == "before" and point.call == number:
            self._fire(name, number, "before")

    def after_call(self, model: Any, event_name: str = "", **_: Any) -> None:
        number = getattr(self._current, "number", None)
        point = self.point
        if point is not None and point.when == "after" and point.call == number:
            self._fire(_call_name(event_name, model), number, "after")


def _call_name(event_name: str, model: Any) -> str:
    # event_name is "before-call.<service-id>.<Operation>"
    parts = event_name.split(".")
    service = parts[1] if len(parts) > 2 else "aws"
    return f"{service}.{getattr(model, 'name', parts[-1])}"


def install(session: boto3.session.Session | None = None) -> Injector:
    """Hook an :class:`Injector` into ``session`` (default: boto3's default session).

    Only clients created afterwards from that session are hooked.
    """
    if session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
    assert session is not None
    injector = Injector()
    session.events.register("before-call.*.*", injector.before_call)
    session.events.register("after-call.*.*", injector.after_call)
    return injector


# --- the invocation wrapper (runner hook) --------------------------------------------------


@dataclass(frozen=True)
class ChaosSettings:
    rate: float = 0.0
    """Probability that an invocation gets a fault."""
    seed: int = 0
    functions: frozenset[str] = frozenset()
    """Function short names (``transform``...) that get faults and copies; empty: all."""
    duplicate_rate: float = 0.0
    """Probability that a message (not itself a copy) is sent again."""
    duplicate_max_delay: int = 20
    log_path: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChaosSettings:
        functions = {name.strip() for name in env.get(ENV_FUNCTIONS, "").split(",")}
        return cls(
            rate=float(env.get(ENV_RATE, "0")),
            seed=int(env.get(ENV_SEED, "0")),
            functions=frozenset(name for name in functions if name),
            duplicate_rate=float(env.get(ENV_DUPLICATE_RATE, "0")),
            duplicate_max_delay=int(env.get(ENV_DUPLICATE_MAX_DELAY, "20")),
            log_path=env.get(ENV_LOG) or None,
        )

    def applies_to(self, function: str) -> bool:
        return not self.functions or function in self.functions


@dataclass
class InvocationRecord:
    """One line of the fault log."""

    function: str
    request_id: str
    pid: int
    started: float
    message_ids: list[str]
    receive_counts: list[int]
    copies_of: list[str]
    """Ids of the messages of this batch that are themselves harness copies."""
    copies_sent: int = 0
    fault: dict[str, Any] | None = None
    fired: str | None = None
    calls: int = 0
    failed: list[str] = field(default_factory=list)
    error: str | None = None


def short_function_name(full_name: str) -> str:
    """``sluice-chaos-transform`` -> ``transform`` (docs/contracts.md naming)."""
    return full_name.rsplit("-", 1)[-1]


def _failed_ids(response: Any, message_ids: list[str]) -> list[str]:
    if not isinstance(response, Mapping):
        return []
    failures = response.get("batchItemFailures") or []
    return [str(item.get("itemIdentifier")) for item in failures if isinstance(item, Mapping)]


class EventLog:
    def __init__(self, path: str | None) -> None:
        self._path = path

    def write(self, record: InvocationRecord | Mapping[str, Any]) -> None:
        if not self._path:
            return
        fields = asdict(record) if isinstance(record, InvocationRecord) else dict(record)
        line = (json.dumps(fields, sort_keys=True) + "\n").encode()
        # One write() on an O_APPEND file: lines of concurrent workers never interleave.
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)


def make_wrapper(
    injector: Injector,
    settings: ChaosSettings,
    function: str,
    *,
    sqs: Any | None = None,
) -> Callable[[Handler], Handler]:
    """A ``wrap_handler`` for the runner: faults, copies and the log around each invocation.

    ``sqs`` sends the copies; it must not come from the hooked session (a copy is the
    harness's doing, not the handler's, and must not fail or be counted).
    """
    rng = random.Random(f"{settings.seed}/{function}")
    log = EventLog(settings.log_path)
    active = settings.applies_to(function)
    queue_urls: dict[str, str] = {}

    def queue_url(arn: str) -> str:
        if arn not in queue_urls:
            _, _, _, _, account, name = arn.split(":", 5)
            assert sqs is not None
            queue_urls[arn] = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
        return queue_urls[arn]

    def send_copies(records: list[dict[str, Any]]) -> int:
        sent = 0
        for record in records:
            if COPY_ATTRIBUTE in (record.get("messageAttributes") or {}):
                continue
            if sqs is None or rng.random() >= settings.duplicate_rate:
                continue
            sqs.send_message(
                QueueUrl=queue_url(record["eventSourceARN"]),
                MessageBody=record["body"],
                DelaySeconds=rng.randint(0, settings.duplicate_max_delay),
                MessageAttributes={
                    COPY_ATTRIBUTE: {"DataType": "String", "StringValue": record["messageId"]}
                },
            )
            sent += 1
        return sent

    def wrap(handler: Handler) -> Handler:
        def invoke(event: dict[str, Any], context: Any) -> Any:
            records = list(event.get("Records") or [])
            ids = [str(record.get("messageId")) for record in records]
            entry = InvocationRecord(
                function=function,
                request_id=str(getattr(context, "aws_request_id", "")),
                pid=os.getpid(),
                started=time.time(),
                message_ids=ids,
                receive_counts=[
                    int((r.get("attributes") or {}).get("ApproximateReceiveCount", 0))
                    for r in records
                ],
                copies_of=[
                    str(r.get("messageId"))
                    for r in records
                    if COPY_ATTRIBUTE in (r.get("messageAttributes") or {})
                ],
            )
            point = None
            if active and records and rng.random() < settings.rate:
                point = FaultPoint(
                    call=rng.randint(1, CALLS_PER_RECORD_DRAWN * len(records)),
                    when=rng.choice(("before", "after")),
                )
                entry.fault = asdict(point)
            if active:
                entry.copies_sent = send_copies(records)
            injector.arm(point)
            try:
                response = handler(event, context)
                if point is not None and injector.fired is None:
                    injector.fired = f"at the end, after {len(injector.calls)} calls"
                    raise InjectedFaultError("Invoke", injector.fired)
                entry.failed = _failed_ids(response, ids)
                return response
            except BaseException as error:
                entry.failed, entry.error = ids, type(error).__name__
                raise
            finally:
                entry.fired, entry.calls = injector.fired, len(injector.calls)
                injector.disarm()
                log.write(entry)

        return invoke

    return wrap


# --- deletes during processing (transform only) ----------------------------------------------


@dataclass
class DeletePlan:
    """Deletes planned RAW keys from RAW at one step of their transform.

    Steps (the transform's calls on the key, sluice.handlers.transform): ``before-read``,
    before its first HeadObject of the key (the event was queued, nothing started);
    ``after-read``, after its GetObject of the key succeeded (it has the bytes and is making
    outputs); ``after-receipt``, after its PutObject of the key's receipt succeeded (the
    archive handler is yet to move it). Registered on the handler's session like the
    :class:`Injector` but *before* it, so a fault fired at the same call still finds the
    delete done. Every delivery that reaches the step deletes again: a delete of a deleted
    key only adds a delete marker, so the end state does not depend on retries.
    """

    STEPS = ("before-read", "after-read", "after-receipt")

    steps: Mapping[str, str]
    raw_bucket: str
    delete: Callable[[str, str], None]
    """``(bucket, key)``: a delete the handler does not see (not from the hooked session)."""
    log: EventLog = field(default_factory=lambda: EventLog(None))
    _receipts: dict[str, str] = field(default_factory=dict, repr=False)
    _call: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        from sluice.keys import receipt_key  # the harness names receipts as sluice does

        unknown = set(self.steps.values()) - set(self.STEPS)
        if unknown:
            raise ValueError(f"unknown delete steps {sorted(unknown)}")
        self._receipts = {
            receipt_key(key): key for key, step in self.steps.items() if step == "after-receipt"
        }

    @classmethod
    def load(
        cls, path: str, raw_bucket: str, delete: Callable[[str, str], None], log: EventLog
    ) -> DeletePlan:
        steps = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(steps=steps, raw_bucket=raw_bucket, delete=delete, log=log)

    def register(self, session: boto3.session.Session) -> None:
        session.events.register("before-parameter-build.s3.*", self.before_parameter_build)
        session.events.register("after-call.s3.*", self.after_call)

    def _delete(self, key: str, step: str) -> None:
        self.delete(self.raw_bucket, key)
        self.log.write(
            {"function": DELETE_LOG_FUNCTION, "started": time.time(), "key": key, "step": step}
        )

    def before_parameter_build(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        operation, bucket, key = getattr(model, "name", ""), params.get("Bucket"), params.get("Key")
        self._call.current = (operation, bucket, key)
        planned = self.steps.get(str(key)) if bucket == self.raw_bucket else None
        if operation == "HeadObject" and planned == "before-read":
            self._delete(str(key), planned)

    def after_call(self, http_response: Any = None, **_: Any) -> None:
        operation, bucket, key = getattr(self._call, "current", ("", None, None))
        if http_response is None or getattr(http_response, "status_code", 500) >= 300:
            return
        planned = self.steps.get(str(key)) if bucket == self.raw_bucket else None
        if operation == "GetObject" and planned == "after-read":
            self._delete(str(key), planned)
        elif operation == "PutObject" and str(key) in self._receipts:
            self._delete(self._receipts[str(key)], "after-receipt")


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every invocation the harness logged, oldest first."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            lines = [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []
    return sorted(lines, key=lambda line: float(line["started"]))
