"""Discover which functions read which queues, from the emulator itself.

The local runner must serve exactly what Terraform created, so it never restates names,
batch sizes or environments: it lists the event source mappings, reads each function's
configuration and resolves each mapping's queue, all through the AWS APIs of the
emulator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Lambda's defaults when a mapping leaves them unset.
DEFAULT_SQS_BATCH_SIZE = 10
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128

# States in which the Lambda service (or the emulator standing in for it) polls the queue.
_INACTIVE_STATES = frozenset({"Disabled", "Disabling", "Deleting"})


@dataclass(frozen=True)
class QueueSource:
    """One SQS event source mapping of a function."""

    mapping_uuid: str
    queue_arn: str
    queue_url: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    state: str
    has_filter_criteria: bool = False

    @property
    def emulator_polls(self) -> bool:
        """True when the emulator's own Lambda service consumes this queue."""
        return self.state not in _INACTIVE_STATES


@dataclass(frozen=True)
class FunctionWiring:
    """What the runner needs to host one function the way Lambda would."""

    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    log_group: str
    region: str
    sources: tuple[QueueSource, ...]
    configuration: str = ""
    """:func:`configuration_fingerprint` of the configuration this wiring was read from."""

    def describe(self) -> str:
        lines = [f"{self.name}: {self.handler} (timeout {self.timeout_seconds}s)"]
        for source in self.sources:
            responses = "partial batch" if source.report_batch_item_failures else "whole batch"
            lines.append(
                f"  <- {source.queue_url} batch {source.batch_size},"
                f" window {source.batching_window_seconds}s, {responses} responses,"
                f" mapping {source.state}"
            )
        lines.append(f"  logs -> {self.log_group}")
        return "\n".join(lines)


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(region, account, resource name) of an ``arn:aws:<service>:...`` ARN."""
    parts = arn.split(":")
    if len(parts) < 6:
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[3], parts[4], parts[5] if parts[2] == "sqs" else parts[6]


def _sqs_mappings(lambda_client: Any, function_name: str | None) -> list[dict[str, Any]]:
    # Filtered here rather than with the API's FunctionName: moto matches that parameter
    # only against the exact string the mapping was created with (Terraform passes an ARN).
    paginator = lambda_client.get_paginator("list_event_source_mappings")
    mappings: list[dict[str, Any]] = []
    for page in paginator.paginate():
        for mapping in page.get("EventSourceMappings", []):
            if not str(mapping.get("EventSourceArn", "")).startswith("arn:aws:sqs:"):
                continue
            function_arn = mapping["FunctionArn"]
            if function_name and function_name not in (function_arn, _arn_parts(function_arn)[2]):
                continue
            mappings.append(mapping)
    return mappings


def _queue_source(sqs_client: Any, mapping: dict[str, Any]) -> QueueSource:
    queue_arn = mapping["EventSourceArn"]
    _, account, queue_name = _arn_parts(queue_arn)
    queue_url = sqs_client.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)[
        "QueueUrl"
    ]
    return QueueSource(
        mapping_uuid=mapping["UUID"],
        queue_arn=queue_arn,
        queue_url=queue_url,
        batch_size=int(mapping.get("BatchSize") or DEFAULT_SQS_BATCH_SIZE),
        batching_window_seconds=int(mapping.get("MaximumBatchingWindowInSeconds") or 0),
        report_batch_item_failures="ReportBatchItemFailures"
        in (mapping.get("FunctionResponseTypes") or []),
        state=str(mapping.get("State", "Enabled")),
        has_filter_criteria=bool((mapping.get("FilterCriteria") or {}).get("Filters")),
    )


CONFIGURATION_FIELDS = (
    "Handler",
    "Environment",
    "Timeout",
    "MemorySize",
    "Runtime",
    "CodeSha256",
    "Layers",
    "RevisionId",
)
"""What a new execution environment is made from. moto changes neither ``RevisionId`` nor
``LastModified`` on UpdateFunctionConfiguration, so the fields themselves are compared."""


def configuration_fingerprint(config: Mapping[str, Any]) -> str:
    """A digest of a GetFunctionConfiguration answer's :data:`CONFIGURATION_FIELDS`: it
    changes when `terraform apply` (or any UpdateFunctionConfiguration/Code) changes them."""
    chosen = {name: config.get(name) for name in CONFIGURATION_FIELDS}
    text = json.dumps(chosen, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _function_wiring(
    lambda_client: Any, function_arn: str, sources: Iterable[QueueSource]
) -> FunctionWiring:
    config = lambda_client.get_function_configuration(FunctionName=function_arn)
    name = config["FunctionName"]
    region, _, _ = _arn_parts(config["FunctionArn"])
    log_group = (config.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
    return FunctionWiring(
        name=name,
        arn=config["FunctionArn"],
        handler=config["Handler"],
        environment=dict((config.get("Environment") or {}).get("Variables") or {}),
        timeout_seconds=int(config.get("Timeout") or DEFAULT_TIMEOUT_SECONDS),
        memory_mb=int(config.get("MemorySize") or DEFAULT_MEMORY_MB),
        log_group=log_group,
        region=region,
        sources=tuple(sorted(sources, key=lambda s: s.queue_arn)),
        configuration=configuration_fingerprint(config),
    )


def current_configuration(lambda_client: Any, function_name: str) -> str:
    """The fingerprint of the function's configuration as the emulator holds it now."""
    return configuration_fingerprint(
        lambda_client.get_function_configuration(FunctionName=function_name)
    )


def discover(
    lambda_client: Any,
    sqs_client: Any,
    *,
    environment: str | None = None,
    function_name: str | None = None,
) -> list[FunctionWiring]:
    """Every function with an SQS event source, optionally only one sluice environment.

    A function belongs to an environment when its ``SLUICE_ENV`` variable says so (the
    variable Terraform sets on every sluice function, docs/contracts.md).
    """
    by_function: dict[str, list[dict[str, Any]]] = {}
    for mapping in _sqs_mappings(lambda_client, function_name):
        by_function.setdefault(mapping["FunctionArn"], []).append(mapping)
    wirings = []
    for function_arn, mappings in by_function.items():
        sources = [_queue_source(sqs_client, mapping) for mapping in mappings]
        wiring = _function_wiring(lambda_client, function_arn, sources)
        if environment is not None and wiring.environment.get("SLUICE_ENV") != environment:
            continue
        wirings.append(wiring)
    return sorted(wirings, key=lambda w: w.name)


def function_wiring(lambda_client: Any, function_arn: str) -> FunctionWiring:
    """One function's configuration, without event sources (e.g. behind an HTTP API)."""
    return _function_wiring(lambda_client, function_arn, ())
