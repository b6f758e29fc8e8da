"""The local runner: plays the Lambda service's SQS poller against the emulator.

moto holds the queues, functions and event source mappings Terraform created, but it
cannot execute a function without Docker. The runner reads that wiring back from the
emulator (never from a copy in Python) and, for every function with an SQS event source,
does what the Lambda service does:

- one worker process per function, started with the function's environment variables
  plus the platform's (``AWS_LAMBDA_FUNCTION_NAME``, region, ``AWS_ENDPOINT_URL`` and fake
  keys), so the handler module imports at its own cold start, like in a sandbox;
- long-polls the mapping's queue, filling a batch up to ``BatchSize`` or until
  ``MaximumBatchingWindowInSeconds`` has passed;
- invokes ``handler(event, context)`` with the exact SQS event record shape and a context
  whose remaining time follows the function's ``Timeout`` (enforced: a timed-out
  invocation fails);
- settles the batch as Lambda does (:func:`sluice.local.lambdas.invocation.settle_batch`): deletes
  what succeeded and leaves the rest to reappear after the queue's visibility timeout;
  the queue's redrive policy then moves exhausted messages to the dead-letter queue
  (moto applies ``maxReceiveCount`` on receive, as SQS does);
- enforces the function's ``MemorySize``: an invocation whose peak RSS passes it ends
  the way Lambda's out-of-memory does (logged ``Runtime exited with error: signal:
  killed``, batch not deleted, worker killed and replaced); the peak of every invocation
  is its REPORT line's ``Max Memory Used`` (:mod:`sluice.local.lambdas.sandbox` says how and why);
- writes START/END/REPORT and everything the function prints to its CloudWatch log group
  in the emulator, one stream per worker, and to the worker's log file;
- fires the environment's EventBridge schedule rules as EventBridge does (the bundle
  sweep): each enabled ``rate(...)`` rule sends its target queue a ``Scheduled Event``
  once a period (:mod:`sluice.local.lambdas.schedules`; ``--no-schedules`` where the
  emulator fires them itself, ``--schedule-every`` to fire them more often);
- follows configuration changes as Lambda does after `terraform apply` (new environment
  variables, such as a fixed ``DATASETS``; code, timeout, memory): once the update is made,
  no invocation runs with the old configuration. Before each invocation the worker
  compares the function's configuration with the one it started with; when it changed,
  the batch is handed back at once (visibility 0; its receive is counted, as a throttled
  batch's would be) and the worker exits with
  :data:`~sluice.local.lambdas.worker.EXIT_CONFIGURATION_CHANGED`, and the supervisor
  reads the configuration again and starts a new worker (a cold start).

Workers die with their supervisor (:func:`sluice.local.lambdas.sandbox.die_with_parent`): a
killed supervisor does not leave workers polling that nothing restarts. The supervisor
restarts a worker that exits (crash, out of memory) with a growing back-off, and with
``--worker-dir`` writes a record of each worker there once it is ready
(:class:`~sluice.local.lambdas.supervisor.WorkerRecord`): ``sluice up`` waits for them,
and ``sluice down`` stops by them a worker that is still finishing its batch after its
supervisor was killed.

Which mappings it serves: moto's own SQS event source mappings are not inert. When a
message is sent to a queue with an *enabled* mapping, ``moto.sqs.models.Queue.add_message``
receives it at once (raising its receive count and starting its visibility timeout),
tries to run the function in Docker and, failing that, makes it visible again. A second
poller on that queue would race moto for every message and inflate receive counts towards
the dead-letter queue. ``add_message`` skips mappings whose ``enabled`` flag is false, so
the local environment creates its mappings disabled (``event_source_mappings_enabled =
false`` in ``env/local.tfvars``) and the runner serves exactly those. Enabled mappings are
reported and left alone: the emulator owns them.

Its parts: :mod:`~sluice.local.lambdas.supervisor` (this command's process: the workers'
lifecycle), :mod:`~sluice.local.lambdas.worker` (one function's execution environment,
with the test-harness hook ``SLUICE_RUNNER_PRELOAD``), :mod:`~sluice.local.lambdas.wiring`
(what Terraform created, read back), :mod:`~sluice.local.lambdas.schedules` (the schedule
rules), :mod:`~sluice.local.lambdas.invocation` (event and
settlement), :mod:`~sluice.local.lambdas.cloudwatch` and :mod:`~sluice.local.lambdas.sandbox`.

Usage::

    python -m sluice.local.lambdas.runner --endpoint-url http://127.0.0.1:4566 \\
        --environment local --log-dir .sluice/local/logs --worker-dir .sluice/local/workers
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sluice.local.lambdas.supervisor import serve_all


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sluice.local.lambdas.runner",
        description="Serve the emulator's SQS event source mappings with the local handlers.",
        allow_abbrev=False,
    )
    parser.add_argument("--endpoint-url", required=True, help="emulator URL")
    parser.add_argument(
        "--environment", help="only functions whose SLUICE_ENV is this (default: all)"
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        required=True,
        help="where each worker's log file goes (sluice up: the state directory's logs/)",
    )
    parser.add_argument(
        "--worker-dir",
        type=Path,
        help="report each worker, once ready, in <dir>/<function>.json (for `sluice up`/`down`)",
    )
    parser.add_argument(
        "--no-schedules",
        dest="schedules",
        action="store_false",
        help="leave schedule rules to the emulator (LocalStack fires them; moto does not)",
    )
    parser.add_argument(
        "--schedule-every",
        type=_positive_seconds,
        metavar="SECONDS",
        help="fire every schedule rule this often instead of at its rate (e.g. a sweep now)",
    )
    args = parser.parse_args(argv)
    return serve_all(
        args.endpoint_url,
        args.environment,
        args.log_dir,
        args.worker_dir,
        schedules=args.schedules,
        schedule_every=args.schedule_every,
    )


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text}")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
