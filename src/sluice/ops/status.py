"""``sluice status``: queue depths, dead letters and receipts by status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluice.ops.environment import FUNCTIONS, Environment
from sluice.ops.objects import read_receipts
from sluice.ops.queues import QueueDepth, queue_depth

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

UNREADABLE = "unreadable"


@dataclass
class StatusReport:
    environment: str
    queues: list[QueueDepth]
    dead_letters: QueueDepth
    receipts: dict[str, int] | None = field(default=None)
    """Receipts by status (``processed``, ``rejected``, ``unreadable``); None if not counted."""

    @property
    def receipts_total(self) -> int:
        return sum((self.receipts or {}).values())


def ordered_queues(environment: Environment) -> list[tuple[str, str]]:
    """(function, URL) in pipeline order, then any queue the outputs add."""
    known = [
        (name, environment.queue_urls[name]) for name in FUNCTIONS if name in environment.queue_urls
    ]
    extra = sorted(
        (name, url) for name, url in environment.queue_urls.items() if name not in FUNCTIONS
    )
    return known + extra


def count_receipts(s3: S3Client, bucket: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for receipt in read_receipts(s3, bucket):
        counts[str(receipt.body["status"]) if receipt.body else UNREADABLE] += 1
    return dict(sorted(counts.items()))


def collect_status(
    s3: S3Client, sqs: SQSClient, environment: Environment, *, include_receipts: bool = True
) -> StatusReport:
    return StatusReport(
        environment=environment.name,
        queues=[queue_depth(sqs, name, url) for name, url in ordered_queues(environment)],
        dead_letters=queue_depth(sqs, "dead-letter", environment.dead_letter_queue_url),
        receipts=count_receipts(s3, environment.processed_bucket) if include_receipts else None,
    )
