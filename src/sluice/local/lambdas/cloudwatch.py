"""Send what a locally hosted function prints to its CloudWatch log group in the emulator.

In Lambda everything the function writes to stdout/stderr ends up in
``/aws/lambda/<function>``, one log stream per execution environment, between the
platform's START/END/REPORT lines. The runner reproduces that so
``aws --endpoint-url ... logs tail /aws/lambda/<function>`` works locally.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from sluice.units import MIB

# CloudWatch Logs PutLogEvents limits.
_MAX_BATCH_EVENTS = 10_000
_MAX_BATCH_BYTES = MIB
_EVENT_OVERHEAD_BYTES = 26
_MAX_EVENT_BYTES = 256 * 1024 - _EVENT_OVERHEAD_BYTES


def lambda_log_stream_name(version: str = "$LATEST", now: dt.datetime | None = None) -> str:
    """``YYYY/MM/DD/[$LATEST]<32 hex>``, the name Lambda gives an execution environment's stream."""
    day = (now or dt.datetime.now(dt.UTC)).strftime("%Y/%m/%d")
    return f"{day}/[{version}]{uuid.uuid4().hex}"


def _truncate(message: str) -> str:
    encoded = message.encode("utf-8")
    if len(encoded) <= _MAX_EVENT_BYTES:
        return message
    return encoded[:_MAX_EVENT_BYTES].decode("utf-8", errors="ignore")


class CloudWatchLogStream:
    """Buffered writer to one log stream; ``flush`` ships the buffer with PutLogEvents."""

    def __init__(
        self,
        logs_client: Any,
        group: str,
        stream: str,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._logs = logs_client
        self.group = group
        self.stream = stream
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._on_error = on_error or (lambda _message: None)
        self._create()

    def _create(self) -> None:
        # Lambda creates the group when Terraform did not; both calls are idempotent here.
        with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
            self._logs.create_log_group(logGroupName=self.group)
        with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
            self._logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)

    def append(self, message: str, timestamp_ms: int | None = None) -> None:
        event = {
            "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "message": _truncate(message) or " ",
        }
        with self._lock:
            self._events.append(event)

    def flush(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        events.sort(key=lambda event: event["timestamp"])
        batch: list[dict[str, Any]] = []
        size = 0
        for event in events:
            event_size = len(event["message"].encode("utf-8")) + _EVENT_OVERHEAD_BYTES
            if batch and (len(batch) >= _MAX_BATCH_EVENTS or size + event_size > _MAX_BATCH_BYTES):
                self._put(batch)
                batch, size = [], 0
            batch.append(event)
            size += event_size
        if batch:
            self._put(batch)

    def _put(self, events: list[dict[str, Any]]) -> None:
        try:
            self._logs.put_log_events(
                logGroupName=self.group, logStreamName=self.stream, logEvents=events
            )
        except Exception as error:
            self._on_error(f"could not ship {len(events)} log events to {self.group}: {error}")


class LineTee(io.TextIOBase):
    """A text stream that writes through to ``original`` and hands each line to ``sink``.

    Installed as ``sys.stdout``/``sys.stderr`` before the handler module is imported, so
    loggers that bind the stream at import (Powertools does) write through it too.
    """

    def __init__(self, original: TextIO, sink: Callable[[str], None]) -> None:
        super().__init__()
        self._original = original
        self._sink = sink
        self._partial = ""
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            self._original.write(text)
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._sink(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._original.flush()

    def drain(self) -> None:
        """Hand over a trailing line that has no newline yet (end of an invocation)."""
        with self._lock:
            if self._partial:
                self._sink(self._partial)
                self._partial = ""
            self._original.flush()
