"""The part every handler shares: event in, objects processed, partial batch response out.

Every handler module has the same shape (docs/contracts.md, "Handler skeleton"):

* ``logger = make_logger(<function>)`` at module level;
* a frozen dependencies class holding its settings (:mod:`sluice.settings`) and clients,
  with a ``from_env`` that builds the clients through :func:`client` (one retry policy);
* a plain ``process(...)`` taking those dependencies as arguments: the numbered steps of
  the module's docstring, testable with moto clients and no module reloading;
* ``make_handler(dependencies)``, a few lines that call :func:`run`;
* ``handler = entry_point(logger, build)``: what Lambda calls. Inside Lambda (and the local
  runtime) the dependencies are built at import, so a cold start pays for them in the init
  phase and SnapStart snapshots them; imported anywhere else (a test, a tool) the module
  needs no environment and builds nothing until the first call. SQS batches go through
Powertools' ``BatchProcessor`` so one failing message is reported in
``batchItemFailures`` and never fails or repeats the rest of its batch.

Every invocation ends with its item counts as CloudWatch metrics (:mod:`sluice.metrics`):
processed, rejected and failed. The process function reports a rejection (and, for the
transform, the dataset) by returning an :class:`~sluice.metrics.Outcome`; returning None
means processed. Failures are counted here, from the batch response, because a failed
item in a partial batch response is invisible to Lambda's own ``Errors`` metric.

Under Lambda SnapStart the module-level work (imports, clients, configuration, compiled
schemas) runs once per published version and each cold start restores that snapshot, so
nothing created at import may need to be unique per environment: see
:func:`register_snapshot_hooks`.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config

from sluice.events import (
    S3ObjectRef,
    UnsupportedEventError,
    event_kind,
    refs_from_event,
    refs_from_sqs_body,
)
from sluice.init_phase import on_lambda, resume
from sluice.metrics import ItemCounts, Outcome, publish

ObjectProcessor = Callable[[S3ObjectRef], Outcome | None]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
ObjectFilter = Callable[[S3ObjectRef], bool]

_OBJECT_LOG_KEYS = ("bucket", "key", "etag", "version_id")


def make_logger(function: str) -> Logger:
    """Structured JSON logger; service name and level come from the Powertools variables."""
    return Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", f"sluice-{function}"))


RETRIES = Config(retries={"mode": "standard", "max_attempts": 5})
"""One retry policy for every handler's clients: standard mode (throttling and transient
errors, with jittered back-off) and five attempts, so a burst of S3 503 SlowDown or DynamoDB
throttling is absorbed inside the invocation instead of costing a whole redelivery."""

_S3_SIGNING = Config(signature_version="s3v4")
"""Presigned URLs must be SigV4 (required for KMS-encrypted objects and by every region)."""


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client with :data:`RETRIES` (and SigV4 for S3); ``kwargs`` go to boto3."""
    config = RETRIES.merge(_S3_SIGNING) if service == "s3" else RETRIES
    return boto3.client(service, config=config, **kwargs)  # type: ignore[call-overload]


def entry_point(
    logger: Logger, build: Callable[[], Handler], *, eager: bool | None = None
) -> Handler:
    """The module's ``handler``: builds the real one once per execution environment.

    ``build`` reads the settings and creates the clients. It runs at import when
    :func:`on_lambda` (``eager`` overrides), so that work lands in the init phase, and
    otherwise on the first call. Powertools' Lambda context (request id, cold start) is
    injected around every call. It ends the init phase: the garbage collector, paused by
    :mod:`sluice.handlers`, runs again (:func:`sluice.init_phase.resume`).
    """
    built: list[Handler] = []

    def real() -> Handler:
        if not built:
            built.append(build())
        return built[0]

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return real()(event, context)

    try:
        if on_lambda() if eager is None else eager:
            real()
    finally:
        resume()  # the end of the init phase: the collector runs again (sluice.init_phase)
    return handler


def register_snapshot_hooks() -> bool:
    """Reseed ``random`` in every execution environment restored from a SnapStart snapshot.

    Restored environments start from the same memory, so they would otherwise draw the same
    retry jitter (``random.uniform``) in lockstep. ``snapshot_restore_py`` ships with
    Lambda's Python runtimes; elsewhere nothing is snapshotted and nothing is registered.
    Returns whether the hook was registered. boto3 needs none: init makes no request, so no
    connection can go stale, and under SnapStart the SDK takes refreshable credentials from
    Lambda's container credentials endpoint.
    """
    try:
        hooks = importlib.import_module("snapshot_restore_py")
    except ImportError:
        return False
    hooks.register_after_restore(random.seed)
    return True


def created_only(ref: S3ObjectRef) -> bool:
    return ref.is_created


def _process_refs(
    refs: list[S3ObjectRef],
    process: ObjectProcessor,
    accepts: ObjectFilter,
    logger: Logger,
    counts: ItemCounts,
) -> int:
    done = 0
    for ref in refs:
        logger.append_keys(bucket=ref.bucket, key=ref.key, etag=ref.etag, version_id=ref.version_id)
        try:
            if not accepts(ref):
                logger.info(
                    "skipping event this handler does not act on", event_name=ref.event_name
                )
                continue
            counts.add(process(ref))
            done += 1
        except Exception:
            # Logged here, while the object's keys are still on the logger.
            logger.exception("processing failed")
            raise
        finally:
            logger.remove_keys(list(_OBJECT_LOG_KEYS))
    return done


def process_event(
    event: Mapping[str, Any],
    context: Any,
    process: ObjectProcessor,
    logger: Logger,
    accepts: ObjectFilter = created_only,
) -> dict[str, Any]:
    """Process every object named by ``event``.

    SQS batches return a partial batch response. Direct S3 and EventBridge events (manual
    invocation) raise on the first failure, so the caller sees it. Either way the item
    counts are published last (:mod:`sluice.metrics`).
    """
    counts = ItemCounts()
    try:
        if event_kind(event) == "sqs":
            response = _process_batch(event, context, process, logger, accepts, counts)
            counts.failed += len(response.get("batchItemFailures") or [])
            return response
        refs = refs_from_event(event)
        return {"processed": _process_refs(refs, process, accepts, logger, counts)}
    except Exception:
        counts.failed += 1
        raise
    finally:
        publish(counts, _function_name(context, logger))


def _function_name(context: Any, logger: Logger) -> str:
    """The deployed function's name (the metrics' ``service`` dimension)."""
    name = getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    return str(name or logger.service)


def _process_batch(
    event: Mapping[str, Any],
    context: Any,
    process: ObjectProcessor,
    logger: Logger,
    accepts: ObjectFilter,
    counts: ItemCounts,
) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> None:
        logger.append_keys(message_id=record.message_id)
        try:
            try:
                refs = refs_from_sqs_body(record.body)
            except UnsupportedEventError:
                logger.exception("message is not an S3 event; it stays on the queue for a retry")
                raise
            if not refs:
                logger.info("skipping message without objects (e.g. s3:TestEvent)")
            # Failures are logged inside, with the object's bucket, key and ETag.
            _process_refs(refs, process, accepts, logger, counts)
        finally:
            logger.remove_keys(["message_id"])

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=dict(event), record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)


register_snapshot_hooks()
