"""Per-function item counts as CloudWatch metrics, in Embedded Metric Format (Powertools).

Why: a handler reports a failed object in its partial batch response instead of raising,
so Lambda's own ``Errors`` metric never sees it; only the dead-letter queue alarm did,
after ``max_receive_count`` visibility timeouts (about 36 minutes in dev). Every
invocation of :func:`sluice.runtime.process_event` therefore ends with one EMF line on stdout:

* ``ItemsProcessed``: objects a handler finished (duplicates and stale events included);
* ``ItemsRejected``: objects a handler judged bad input (the transform's rejected
  receipts, the bundle's error statuses): finished too, not retried;
* ``ItemsFailed``: SQS messages handed back for a retry (each holds an object that
  raised, or is not an S3 event), or 1 for a direct invocation that raised.

Dimension ``service`` is the deployed function name (``<prefix>-<env>-<function>``),
unique per function and environment, so the set stays small (four per environment). The
transform adds one more line per dataset it saw, dimensioned by ``service`` and
``dataset``: dataset names come from the registry (``sluice.datasets``), never from a key,
so that set is bounded too. Each CloudWatch alarm on ``ItemsFailed``
(``modules/pipeline/main.tf``) names exactly the ``service`` dimension.

The namespace is set once, by Terraform, in ``POWERTOOLS_METRICS_NAMESPACE``;
``DEFAULT_NAMESPACE`` is only the fallback outside Lambda, and
``tests/unit/test_metrics.py`` checks that it, the metric and dimension names below and
the Terraform alarm agree. ``POWERTOOLS_METRICS_DISABLED=true`` turns the output off
(the test suite does, so stdout holds log lines only).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
DEFAULT_NAMESPACE = "sluice"
FUNCTION_DIMENSION = "service"
DATASET_DIMENSION = "dataset"
ITEMS_PROCESSED = "ItemsProcessed"
ITEMS_REJECTED = "ItemsRejected"
ITEMS_FAILED = "ItemsFailed"

Status = Literal["processed", "rejected"]


@dataclass(frozen=True)
class Outcome:
    """What a handler's process function may return about one object (None: processed).

    ``dataset`` must be one of a fixed set of names (it becomes a metric dimension).
    """

    status: Status = "processed"
    dataset: str | None = None


REJECTED = Outcome("rejected")


@dataclass
class ItemCounts:
    """The counts of one invocation."""

    processed: int = 0
    rejected: int = 0
    failed: int = 0
    by_dataset: Counter[tuple[str, Status]] = field(default_factory=Counter)

    def add(self, outcome: Outcome | None) -> None:
        outcome = outcome or Outcome()
        if outcome.status == "rejected":
            self.rejected += 1
        else:
            self.processed += 1
        if outcome.dataset is not None:
            self.by_dataset[(outcome.dataset, outcome.status)] += 1


def namespace(env: Mapping[str, str] = os.environ) -> str:
    return env.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE


def publish(counts: ItemCounts, function_name: str) -> None:
    """Print the invocation's EMF lines: one for the function, one per dataset seen."""
    metrics = EphemeralMetrics(namespace=namespace(), service=function_name)
    metrics.add_metric(name=ITEMS_PROCESSED, unit=MetricUnit.Count, value=counts.processed)
    metrics.add_metric(name=ITEMS_REJECTED, unit=MetricUnit.Count, value=counts.rejected)
    metrics.add_metric(name=ITEMS_FAILED, unit=MetricUnit.Count, value=counts.failed)
    metrics.flush_metrics()
    for dataset in sorted({dataset for dataset, _ in counts.by_dataset}):
        per_dataset = EphemeralMetrics(namespace=namespace(), service=function_name)
        per_dataset.add_dimension(name=DATASET_DIMENSION, value=dataset)
        statuses: tuple[tuple[str, Status], ...] = (
            (ITEMS_PROCESSED, "processed"),
            (ITEMS_REJECTED, "rejected"),
        )
        for name, status in statuses:
            value = counts.by_dataset[(dataset, status)]
            per_dataset.add_metric(name=name, unit=MetricUnit.Count, value=value)
        per_dataset.flush_metrics()
