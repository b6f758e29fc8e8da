"""One function's worker process: a Lambda execution environment for one function.

The supervisor (:mod:`sluice.local.lambdas.supervisor`) starts one per function with
:func:`worker_command`, in the function's environment (:func:`function_process_env`).
The worker reads its wiring back from the emulator, runs the handler's cold start, then
receives its queues' batches and invokes the handler with them in this process, as
:mod:`sluice.local.lambdas.runner` describes. It exits with
:data:`EXIT_CONFIGURATION_CHANGED` when the function's configuration changed under it.

Test-harness hook: a worker imports the module named by ``SLUICE_RUNNER_PRELOAD`` (if
set) before the handler's cold start, and wraps the handler with that module's
``wrap_handler(handler)`` when it defines one. Fault injection (``tests/chaos``) uses it
to hook the SDK and the invocation boundary without touching handler code; variables
named ``SLUICE_RUNNER_*`` reach the workers for its configuration. The runner stands in
for the Lambda service, which has no such hook: nothing deployed sets these variables.

Usage (the supervisor's; by hand only to debug one function)::

    python -m sluice.local.lambdas.worker --function <name> --endpoint-url http://127.0.0.1:4566
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from sluice.local import awsenv
from sluice.local.lambdas.cloudwatch import CloudWatchLogStream, LineTee, lambda_log_stream_name
from sluice.local.lambdas.invocation import (
    LambdaContext,
    Settlement,
    round_trip_json,
    settle_batch,
    sqs_event,
)
from sluice.local.lambdas.sandbox import MemoryWatch, die_with_parent
from sluice.local.lambdas.wiring import (
    FunctionWiring,
    QueueSource,
    current_configuration,
    discover,
)
from sluice.timestamps import utc_iso

Handler = Callable[[dict[str, Any], Any], Any]
ShouldStop = Callable[[], bool]

MAX_MESSAGES_PER_RECEIVE = 10  # SQS ReceiveMessage limit
MAX_WAIT_SECONDS = 20  # SQS long-poll limit
# Variables a worker inherits from the runner; everything else comes from the function.
_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
# The test-harness hook (module docstring): the preload module and its settings.
PRELOAD_VARIABLE = "SLUICE_RUNNER_PRELOAD"
_HARNESS_PREFIX = "SLUICE_RUNNER_"


EXIT_CONFIGURATION_CHANGED = 75
"""A worker's exit status when the function's configuration changed under it."""


class InvocationTimeout(BaseException):
    """Raised into a handler at its deadline; a BaseException so handlers cannot swallow it."""


class HandlerInitError(Exception):
    """The handler module failed to import or does not expose the handler."""


def import_handler(handler: str) -> Handler:
    """``package.module.function`` -> the function, importing the module (the cold start)."""
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise HandlerInitError(f"handler {handler!r} is not of the form module.function")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise HandlerInitError(f"cannot import {module_name}: {error!r}") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HandlerInitError(f"module {module_name} has no callable {attribute!r}")
    result: Handler = function
    return result


HandlerWrapper = Callable[[Handler], Handler]


def load_preload(env: Mapping[str, str]) -> HandlerWrapper | None:
    """Import the test harness named by ``SLUICE_RUNNER_PRELOAD``; its ``wrap_handler``.

    Import errors propagate: a harness that was asked for and did not load must stop the
    worker rather than let it run without its faults.
    """
    name = env.get(PRELOAD_VARIABLE, "").strip()
    if not name:
        return None
    module = importlib.import_module(name)
    wrapper = getattr(module, "wrap_handler", None)
    if wrapper is not None and not callable(wrapper):
        raise TypeError(f"{name}.wrap_handler is not callable")
    result: HandlerWrapper | None = wrapper
    return result


def function_process_env(
    wiring: FunctionWiring, endpoint_url: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a worker: the function's variables plus what Lambda sets."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in _PASSTHROUGH if name in source}
    env.update({name: value for name, value in source.items() if name.startswith(_HARNESS_PREFIX)})
    env.update(wiring.environment)
    # Reserved variables: Lambda sets these itself and a function cannot override them.
    env.update(awsenv.FAKE_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": wiring.region,
            "AWS_DEFAULT_REGION": wiring.region,
            "AWS_LAMBDA_FUNCTION_NAME": wiring.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(wiring.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": wiring.log_group,
            "_HANDLER": wiring.handler,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`InvocationTimeout` in this (main) thread after ``seconds``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise InvocationTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class _Stats:
    invocations: int = 0
    messages_deleted: int = 0
    messages_retried: int = 0


@dataclass
class FunctionWorker:
    """Hosts one function: receives its queues' batches and invokes it in this process."""

    wiring: FunctionWiring
    sqs: Any
    logs: Any | None = None
    poll_wait_seconds: int = 2
    enforce_timeout: bool = True
    enforce_memory: bool = False
    """Kill this process when an invocation passes ``MemorySize``: only in a worker
    process of its own (:func:`_serve_worker`), never in a process hosting anything else."""
    platform_out: TextIO = field(default_factory=lambda: sys.__stderr__ or sys.stderr)
    wrap_handler: HandlerWrapper | None = None
    """The test harness's wrapper (:func:`load_preload`), applied at the cold start."""
    lambda_client: Any | None = None
    """Reads the function's configuration before each invocation (module docstring);
    None: the configuration is taken as fixed."""
    stats: _Stats = field(default_factory=_Stats)
    stale: bool = field(default=False, init=False)
    """The function's configuration changed: this worker serves no more batches."""
    _handler: Handler | None = field(default=None, init=False)
    _init_ms: float | None = field(default=None, init=False)
    _init_reported: bool = field(default=False, init=False)
    _stream: CloudWatchLogStream | None = field(default=None, init=False)
    _tees: list[LineTee] = field(default_factory=list, init=False)

    @property
    def sources(self) -> tuple[QueueSource, ...]:
        return tuple(s for s in self.wiring.sources if not s.emulator_polls)

    @property
    def log_stream_name(self) -> str | None:
        return self._stream.stream if self._stream else None

    def _platform(self, message: str) -> None:
        """Runner diagnostics: the worker's log file only, not the function's log group."""
        print(f"[runner {self.wiring.name}] {message}", file=self.platform_out, flush=True)

    def _log_line(self, line: str) -> None:
        if self._stream is not None:
            self._stream.append(line)

    @contextlib.contextmanager
    def open(self) -> Iterator[FunctionWorker]:
        """Create the log stream, capture stdout/stderr into it, and run the cold start."""
        if self.logs is not None:
            self._stream = CloudWatchLogStream(
                self.logs, self.wiring.log_group, lambda_log_stream_name(), on_error=self._platform
            )
            os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = self._stream.stream
        saved = sys.stdout, sys.stderr
        self._tees = [LineTee(sys.stdout, self._log_line), LineTee(sys.stderr, self._log_line)]
        sys.stdout, sys.stderr = self._tees[0], self._tees[1]
        try:
            with contextlib.suppress(HandlerInitError):
                self._try_init()
            self._flush_logs()
            yield self
        finally:
            self._flush_logs()
            sys.stdout, sys.stderr = saved

    def _flush_logs(self) -> None:
        for tee in self._tees:
            tee.drain()
        if self._stream is not None:
            self._stream.flush()

    def _try_init(self) -> Handler:
        """Import the handler once; after a failed init Lambda retries it on the next invoke."""
        if self._handler is not None:
            return self._handler
        started = time.perf_counter()
        try:
            handler = import_handler(self.wiring.handler)
            self._handler = self.wrap_handler(handler) if self.wrap_handler else handler
        except HandlerInitError:
            traceback.print_exc()
            raise
        finally:
            self._init_ms = (time.perf_counter() - started) * 1000
        return self._handler

    def receive_batch(self, source: QueueSource, should_stop: ShouldStop) -> list[dict[str, Any]]:
        """Long-poll ``source``; then fill the batch until full or its window has passed."""
        messages = self._receive(
            source, min(source.batch_size, MAX_MESSAGES_PER_RECEIVE), self.poll_wait_seconds
        )
        if not messages or source.batching_window_seconds <= 0:
            return messages
        window_ends = time.monotonic() + source.batching_window_seconds
        while len(messages) < source.batch_size and not should_stop():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            wanted = min(source.batch_size - len(messages), MAX_MESSAGES_PER_RECEIVE)
            wait = max(1, min(int(remaining), MAX_WAIT_SECONDS))
            messages.extend(self._receive(source, wanted, wait))
        return messages

    def _receive(self, source: QueueSource, count: int, wait: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=source.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def invoke(self, source: QueueSource, messages: Sequence[dict[str, Any]]) -> Settlement:
        """One invocation for one batch, settled and logged the way Lambda does it."""
        ids = [message["MessageId"] for message in messages]
        context = LambdaContext(
            function_name=self.wiring.name,
            invoked_function_arn=self.wiring.arn,
            memory_limit_in_mb=str(self.wiring.memory_mb),
            log_group_name=self.wiring.log_group,
            log_stream_name=self.log_stream_name or "",
            timeout_seconds=self.wiring.timeout_seconds,
        )
        request_id = context.aws_request_id
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        started = time.perf_counter()
        memory = MemoryWatch(
            self.wiring.memory_mb,
            lambda peak_mb: self._out_of_memory(request_id, started, peak_mb, len(ids)),
            enforce=self.enforce_memory,
        )
        settlement: Settlement
        try:
            handler = self._try_init()
            event = sqs_event(messages, source.queue_arn, self.wiring.region)
            with (
                _deadline(self.wiring.timeout_seconds) if self.enforce_timeout else _nothing(),
                memory,
            ):
                response = handler(event, context)
            settlement = settle_batch(
                ids,
                round_trip_json(response),
                report_batch_item_failures=source.report_batch_item_failures,
            )
        except InvocationTimeout:
            print(
                f"{utc_stamp()} {request_id} Task timed out after"
                f" {self.wiring.timeout_seconds:.2f} seconds",
                flush=True,
            )
            settlement = Settlement(delete=(), retry=tuple(ids), reason="timed out")
        except (Exception, SystemExit) as error:
            # Lambda logs the error with its traceback, and the whole batch is retried.
            print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
            traceback.print_exc()
            settlement = Settlement(
                delete=(), retry=tuple(ids), reason=f"function error {type(error).__name__}"
            )
        self.stats.invocations += 1
        report = self._report_line(request_id, started, memory.peak_mb)
        if self._init_ms is not None and not self._init_reported:
            # The first REPORT after a cold start carries its duration, as in Lambda.
            report += f"\tInit Duration: {self._init_ms:.2f} ms"
            self._init_reported = self._handler is not None
        print(f"END RequestId: {request_id}", flush=True)
        print(report, flush=True)
        self._settle(source, messages, settlement)
        self._flush_logs()
        return settlement

    def _report_line(self, request_id: str, started: float, max_memory_mb: int) -> str:
        duration_ms = (time.perf_counter() - started) * 1000
        return (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms"
            f"\tBilled Duration: {int(duration_ms) + 1} ms\tMemory Size: {self.wiring.memory_mb} MB"
            f"\tMax Memory Used: {max_memory_mb} MB"
        )

    def _out_of_memory(
        self, request_id: str, started: float, peak_mb: int, batch_size: int
    ) -> None:
        """What Lambda logs when the runtime is killed for memory; then the same end.

        Runs in the memory watchdog's thread while the handler still runs. The batch is
        not settled: its messages come back after the visibility timeout. The process
        dies by SIGKILL, as Lambda's runtime does, and the supervisor replaces it.
        """
        print(f"END RequestId: {request_id}", flush=True)
        print(self._report_line(request_id, started, peak_mb), flush=True)
        print(
            f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
            flush=True,
        )
        print("Runtime.ExitError", flush=True)
        self._flush_logs()
        self._platform(
            f"out of memory: {peak_mb} MB used of {self.wiring.memory_mb} MB;"
            f" {batch_size} messages left for retry, this worker is killed and replaced"
        )
        os.kill(os.getpid(), signal.SIGKILL)

    def _settle(
        self, source: QueueSource, messages: Sequence[dict[str, Any]], settlement: Settlement
    ) -> None:
        handles = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
        to_delete = [handles[message_id] for message_id in settlement.delete]
        for start in range(0, len(to_delete), MAX_MESSAGES_PER_RECEIVE):
            chunk = to_delete[start : start + MAX_MESSAGES_PER_RECEIVE]
            response = self.sqs.delete_message_batch(
                QueueUrl=source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                # The message reappears and is delivered again: at least once, as in Lambda.
                self._platform(f"could not delete a message: {failure.get('Message')}")
        self.stats.messages_deleted += len(settlement.delete)
        self.stats.messages_retried += len(settlement.retry)
        if settlement.retry:
            self._platform(
                f"{len(settlement.retry)} of {len(messages)} messages left for retry"
                f" ({settlement.reason})"
            )

    def configuration_changed(self) -> bool:
        if self.lambda_client is None:
            return False
        return current_configuration(self.lambda_client, self.wiring.name) != (
            self.wiring.configuration
        )

    def hand_back(self, source: QueueSource, messages: Sequence[dict[str, Any]]) -> None:
        """Make a received batch visible again at once, without invoking anything."""
        for start in range(0, len(messages), MAX_MESSAGES_PER_RECEIVE):
            chunk = messages[start : start + MAX_MESSAGES_PER_RECEIVE]
            self.sqs.change_message_visibility_batch(
                QueueUrl=source.queue_url,
                Entries=[
                    {
                        "Id": str(index),
                        "ReceiptHandle": message["ReceiptHandle"],
                        "VisibilityTimeout": 0,
                    }
                    for index, message in enumerate(chunk)
                ],
            )

    def poll_once(self, should_stop: ShouldStop = lambda: False) -> int:
        """Receive and invoke at most one batch per source; the number of messages handled."""
        handled = 0
        for source in self.sources:
            if should_stop() or self.stale:
                break
            messages = self.receive_batch(source, should_stop)
            if messages and self.configuration_changed():
                self.hand_back(source, messages)
                self.stale = True
                self._platform(
                    f"configuration changed: {len(messages)} messages handed back for a new"
                    " execution environment"
                )
                break
            if messages:
                self.invoke(source, messages)
                handled += len(messages)
        return handled

    def serve(self, should_stop: ShouldStop) -> None:
        while not should_stop() and not self.stale:
            try:
                self.poll_once(should_stop)
            except Exception as error:
                self._platform(f"polling failed, retrying: {error!r}")
                time.sleep(1)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def utc_stamp() -> str:
    return utc_iso(timespec="milliseconds")


class StopFlag:
    """Set by SIGTERM/SIGINT; the current batch finishes before the loop ends."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> StopFlag:
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)
        return self

    def _set(self, _signum: int, _frame: FrameType | None) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


WORKER_MODULE = "sluice.local.lambdas.worker"


def worker_command(
    endpoint_url: str,
    function_name: str,
    parent_pid: int,
    configuration: str = "",
    *,
    python: str = sys.executable,
    ready_fd: int | None = None,
) -> list[str]:
    """A worker's command line. ``parent_pid``: the process it dies with; ``configuration``:
    the fingerprint of the configuration its environment was made from; ``ready_fd``: an
    inherited pipe it writes to once ready (:func:`tell_ready`)."""
    command = [
        python,
        "-m",
        WORKER_MODULE,
        "--function",
        function_name,
        "--parent-pid",
        str(parent_pid),
        "--configuration",
        configuration,
        "--endpoint-url",
        endpoint_url,
    ]
    return command if ready_fd is None else [*command, "--ready-fd", str(ready_fd)]


def worker_marker(function_name: str) -> str:
    """What the command line of ``function_name``'s worker contains, and no other's."""
    return f"{WORKER_MODULE} --function {function_name} --parent-pid"


def tell_ready(fd: int) -> None:
    """Say "ready" on the supervisor's pipe, once: the cold start is over, polling starts.

    A supervisor that is gone (a broken pipe) is no reason to stop: the worker then
    stops by itself (:func:`sluice.local.lambdas.sandbox.die_with_parent`).
    """
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    with contextlib.suppress(OSError):
        os.close(fd)


def serve_worker(
    endpoint_url: str,
    function_name: str,
    parent_pid: int | None,
    configuration: str | None,
    ready_fd: int | None = None,
) -> int:
    stop = StopFlag().install()

    def orphaned() -> None:
        print(
            f"[runner {function_name}] stopping: the supervisor is gone"
            " (a batch in progress finishes first)",
            file=sys.__stderr__,
            flush=True,
        )
        stop.set()

    if parent_pid is not None:
        # First, before the slow discovery: a supervisor killed meanwhile is noticed.
        die_with_parent(parent_pid, orphaned)
    sqs = awsenv.client("sqs", endpoint_url)
    logs = awsenv.client("logs", endpoint_url)
    wirings = discover(awsenv.client("lambda", endpoint_url), sqs, function_name=function_name)
    if not wirings:
        print(f"no SQS event source mapping for {function_name}", file=sys.stderr)
        return 2
    if configuration and wirings[0].configuration != configuration:
        # Changed after the supervisor read it: this process's variables are the old ones.
        return EXIT_CONFIGURATION_CHANGED
    # Before the handler's import (the worker's cold start), so its clients see the hooks.
    wrap_handler = load_preload(os.environ)
    worker = FunctionWorker(
        wirings[0],
        sqs,
        logs,
        wrap_handler=wrap_handler,
        enforce_memory=True,
        lambda_client=awsenv.client("lambda", endpoint_url),
    )
    with worker.open():
        if ready_fd is not None:
            tell_ready(ready_fd)
        worker.serve(stop)
    return EXIT_CONFIGURATION_CHANGED if worker.stale else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {WORKER_MODULE}",
        description="Serve one function's SQS event source mappings (the supervisor's worker).",
        allow_abbrev=False,
    )
    parser.add_argument("--endpoint-url", required=True, help="emulator URL")
    parser.add_argument("--function", required=True, help="the function to serve")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    parser.add_argument(
        "--configuration", help="the configuration fingerprint its environment was made from"
    )
    parser.add_argument(
        "--ready-fd", type=int, help="an inherited pipe to write to once ready (the supervisor's)"
    )
    args = parser.parse_args(argv)
    return serve_worker(
        args.endpoint_url, args.function, args.parent_pid, args.configuration, args.ready_fd
    )


if __name__ == "__main__":
    sys.exit(main())
