"""``sluice audit``: check the ledger (docs/decisions.md, decisions 2 and 12).

Every object that reaches RAW ends with exactly one receipt, and the archive handler then
moves it from RAW to ARCHIVE, so at rest: inputs = receipts = archived objects, and the
dead-letter queue holds the rest. The audit lists all four buckets' relevant prefixes and
the queues, and reports every way the two sides disagree.

Ownership (one owner per output, sluice.keys): every PROCESSED object other than the
ledger itself (``receipts/``, ``versions/``, ``leases/``) must be listed as an output by
exactly one receipt; every ARCHIVE object must be named by exactly one receipt (its
key's current version) or one ``superseded`` record of the version ledger, and carry
that owner's source ETag. Versions recorded as ``deleted`` own nothing and need nothing.

History (sluice.receipts): a receipt that replaces another version's names that version's
record in ``replaces.record``; the record must exist (``missing history`` otherwise).

While any queue has work, the pipeline is not at rest: what would be a discrepancy is then
reported as "in progress" instead, and the audit is not clean either way. ``--wait`` lets
the queues drain first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.events import normalize_etag
from sluice.keys import (
    LEASES_PREFIX,
    RECEIPTS_PREFIX,
    SOURCE_ETAG_METADATA,
    VERSIONS_PREFIX,
    archive_key_for,
    receipt_key,
    version_token,
)
from sluice.ops.environment import Environment
from sluice.ops.objects import (
    READ_WORKERS,
    ReceiptRead,
    list_objects,
    read_receipts,
    read_version_records,
)
from sluice.ops.queues import QueueDepth, peek, queue_depth
from sluice.ops.status import ordered_queues
from sluice.receipts import version_record_key_of
from sluice.s3io import head

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


DEAD_LETTERS = "dead letters"
INPUT_WITHOUT_RECEIPT = "input without receipt"
ARCHIVED_WITHOUT_RECEIPT = "archived without receipt"
NOT_ARCHIVED = "not archived"
ARCHIVE_MISMATCH = "archive mismatch"
RAW_NOT_CLEARED = "raw not cleared"
MISSING_OUTPUT = "missing output"
ORPHAN_OUTPUT = "orphan output"
OWNED_TWICE = "owned twice"
BAD_RECEIPT = "bad receipt"
MISSING_HISTORY = "missing history"
IN_PROGRESS = "in progress"

LEDGER_PREFIXES = (RECEIPTS_PREFIX, VERSIONS_PREFIX, LEASES_PREFIX)
"""PROCESSED prefixes of the ledger itself; every other PROCESSED object is an output."""
DEAD_LETTER_SAMPLE = 10


@dataclass(frozen=True)
class Finding:
    category: str
    subject: str
    """What the finding is about: ``s3://bucket/key`` or a queue."""
    detail: str


@dataclass(frozen=True)
class Ledger:
    inputs_seen: int
    """Distinct RAW keys seen in RAW or in a receipt."""
    in_raw: int
    receipts_processed: int
    receipts_rejected: int
    archived: int
    dead_lettered: int
    versions_superseded: int = 0
    """Older versions archived under ``superseded/`` and recorded in the version ledger."""
    versions_deleted: int = 0
    """Versions deleted from RAW before they were processed (nothing to archive)."""


@dataclass
class AuditReport:
    environment: str
    ledger: Ledger
    discrepancies: list[Finding] = field(default_factory=list)
    in_progress: list[Finding] = field(default_factory=list)
    queues: list[QueueDepth] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """The ledger balances and nothing is still moving."""
        return not self.discrepancies and not self.in_progress


def wait_until_drained(
    pending: Callable[[], int],
    *,
    timeout: float,
    interval: float = 2.0,
    stable_polls: int = 2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll ``pending()`` until it reads 0 on ``stable_polls`` polls in a row, or time out.

    One empty reading is not enough: S3 notifications reach the next queue a moment
    after the previous handler has deleted its message.
    """
    deadline = clock() + timeout
    empty_in_a_row = 0
    while True:
        empty_in_a_row = empty_in_a_row + 1 if pending() == 0 else 0
        if empty_in_a_row >= stable_polls:
            return True
        if clock() >= deadline:
            return False
        sleep(min(interval, max(0.0, deadline - clock())))


def pending_messages(sqs: SQSClient, environment: Environment) -> int:
    return sum(queue_depth(sqs, name, url).total for name, url in ordered_queues(environment))


def _s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


@dataclass
class _Auditor:
    s3: S3Client
    environment: Environment
    busy: bool
    report: AuditReport

    def found(self, category: str, subject: str, detail: str, *, settles: bool = True) -> None:
        """Record a finding; one the running pipeline may still settle counts as in progress."""
        if settles and self.busy:
            self.report.in_progress.append(Finding(category, subject, f"{detail} (queues busy)"))
        else:
            self.report.discrepancies.append(Finding(category, subject, detail))

    def archived_source_etag(self, key: str) -> tuple[bool, str | None]:
        """(exists, the source ETag the archive handler stamped on it, if any)."""
        found = head(self.s3, self.environment.archive_bucket, key)
        if found is None:
            return False, None
        return True, normalize_etag(found.get("Metadata", {}).get(SOURCE_ETAG_METADATA))

    def output_exists(self, bucket: str, key: str) -> bool:
        return head(self.s3, bucket, key) is not None


def audit(
    s3: S3Client,
    sqs: SQSClient,
    environment: Environment,
    *,
    dead_letter_sample: int = DEAD_LETTER_SAMPLE,
) -> AuditReport:
    env = environment
    depths_before = [queue_depth(sqs, name, url) for name, url in ordered_queues(env)]
    dead_letters = queue_depth(sqs, "dead-letter", env.dead_letter_queue_url)

    processed = {item.key: item for item in list_objects(s3, env.processed_bucket)}
    raw = {item.key: item for item in list_objects(s3, env.raw_bucket)}
    archive = {item.key: item for item in list_objects(s3, env.archive_bucket)}
    receipt_keys = [key for key in processed if key.startswith(RECEIPTS_PREFIX)]
    receipts = list(read_receipts(s3, env.processed_bucket, receipt_keys))
    record_keys = [key for key in processed if key.startswith(VERSIONS_PREFIX)]
    records = list(read_version_records(s3, env.processed_bucket, record_keys))

    # A snapshot taken while messages moved is not at rest: look before and after.
    depths_after = [queue_depth(sqs, name, url) for name, url in ordered_queues(env)]
    busy = any(depth.total for depth in (*depths_before, *depths_after))

    counts = {"processed": 0, "rejected": 0}
    for receipt in receipts:
        if receipt.body is not None:
            counts[str(receipt.body["status"])] += 1
    receipted_keys = {r.body["source"]["key"] for r in receipts if r.body is not None}
    report = AuditReport(
        environment=env.name,
        ledger=Ledger(
            inputs_seen=len(set(raw) | receipted_keys),
            in_raw=len(raw),
            receipts_processed=counts["processed"],
            receipts_rejected=counts["rejected"],
            archived=len(archive),
            dead_lettered=dead_letters.total,
            versions_superseded=sum(
                1 for r in records if r.body is not None and r.body["status"] == "superseded"
            ),
            versions_deleted=sum(
                1 for r in records if r.body is not None and r.body["status"] == "deleted"
            ),
        ),
        queues=depths_after,
    )
    auditor = _Auditor(s3, env, busy, report)

    for depth in depths_after:
        if depth.total:
            report.in_progress.append(
                Finding(
                    IN_PROGRESS,
                    f"{depth.name} queue",
                    f"{depth.visible} visible, {depth.in_flight} in flight,"
                    f" {depth.delayed} delayed",
                )
            )

    dead_lettered_objects: set[tuple[str, str]] = set()
    if dead_letters.total:
        sample = peek(sqs, env.dead_letter_queue_url, limit=dead_letter_sample)
        for letter in sample:
            dead_lettered_objects.update(letter.objects)
        described = "; ".join(letter.describe() for letter in sample) or "none received"
        auditor.found(
            DEAD_LETTERS,
            "dead-letter queue",
            f"{dead_letters.total} message(s); sample: {described}",
            settles=False,
        )

    output_owners: dict[tuple[str, str], list[str]] = {}
    """(bucket, key) of an output -> the raw keys whose receipts list it"""
    expected_archive: dict[str, tuple[str, str | None]] = {}
    """archive key -> (raw key, source ETag of the receipt or ledger record)"""

    def expect_archived(archive_key: str, raw_key: str, etag: str | None, owner: str) -> None:
        if archive_key in expected_archive:
            auditor.found(
                OWNED_TWICE,
                _s3_uri(env.archive_bucket, archive_key),
                f"named by {owner} and by the receipt or record of"
                f" {expected_archive[archive_key][0]!r}",
                settles=False,
            )
        expected_archive[archive_key] = (raw_key, etag)

    current_versions: set[tuple[str, str]] = set()
    """(raw key, version token) of every receipt"""

    for receipt in receipts:
        receipt_uri = _s3_uri(env.processed_bucket, receipt.key)
        if receipt.body is None:
            auditor.found(BAD_RECEIPT, receipt_uri, str(receipt.problem), settles=False)
            continue
        body: dict[str, Any] = receipt.body
        source: dict[str, Any] = body["source"]
        raw_key: str = source["key"]
        status = str(body["status"])
        source_etag = normalize_etag(source.get("etag"))
        if receipt.key != receipt_key(raw_key):
            auditor.found(
                BAD_RECEIPT,
                receipt_uri,
                f"names source key {raw_key!r}, whose receipt belongs at {receipt_key(raw_key)}",
                settles=False,
            )
        for output in body.get("outputs") or []:
            bucket, key = output.get("bucket"), output.get("key")
            if not isinstance(bucket, str) or not isinstance(key, str):
                auditor.found(BAD_RECEIPT, receipt_uri, f"output without bucket/key: {output}")
                continue
            output_owners.setdefault((bucket, key), []).append(raw_key)
            exists = (
                key in processed
                if bucket == env.processed_bucket
                else auditor.output_exists(bucket, key)
            )
            if not exists:
                auditor.found(
                    MISSING_OUTPUT, _s3_uri(bucket, key), f"listed by receipt of {raw_key!r}"
                )

        replaced = body.get("replaces")
        if isinstance(replaced, dict) and replaced.get("record") not in processed:
            auditor.found(
                MISSING_HISTORY,
                receipt_uri,
                f"replaces a version of {raw_key!r} whose record"
                f" {replaced.get('record')!r} does not exist",
            )
        current_versions.add((raw_key, version_token(source.get("version_id"), str(source_etag))))
        archive_key = archive_key_for(str(body.get("kind", "")), status, raw_key)
        expect_archived(archive_key, raw_key, source_etag, f"the receipt of {raw_key!r}")
        archived = archive_key in archive
        if not archived:
            auditor.found(
                NOT_ARCHIVED,
                _s3_uri(env.archive_bucket, archive_key),
                f"{status} receipt for {raw_key!r} but nothing archived",
            )

        in_raw = raw.get(raw_key)
        if in_raw is None:
            continue
        if source_etag and in_raw.etag and in_raw.etag != source_etag:
            auditor.found(
                INPUT_WITHOUT_RECEIPT,
                _s3_uri(env.raw_bucket, raw_key),
                f"RAW holds ETag {in_raw.etag}, newer than the receipt's {source_etag},"
                " and no queue has work for it",
            )
        elif archived:
            auditor.found(
                RAW_NOT_CLEARED,
                _s3_uri(env.raw_bucket, raw_key),
                f"archived as {archive_key} but still in RAW",
            )

    for record in records:
        _check_version_record(auditor, record, archive, current_versions, expect_archived)

    to_head = [key for key in expected_archive if key in archive]
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        heads = list(pool.map(auditor.archived_source_etag, to_head))
    for archive_key, (exists, stamped_etag) in zip(to_head, heads, strict=True):
        raw_key, source_etag = expected_archive[archive_key]
        if not exists:
            auditor.found(
                NOT_ARCHIVED,
                _s3_uri(env.archive_bucket, archive_key),
                f"archived copy of {raw_key!r} disappeared during the audit",
            )
        elif stamped_etag != source_etag:
            auditor.found(
                ARCHIVE_MISMATCH,
                _s3_uri(env.archive_bucket, archive_key),
                f"archived copy is of ETag {stamped_etag}; the receipt or record of"
                f" {raw_key!r} is for {source_etag}",
            )

    for key in sorted(set(raw) - receipted_keys):
        dead = (env.raw_bucket, key) in dead_lettered_objects
        auditor.found(
            INPUT_WITHOUT_RECEIPT,
            _s3_uri(env.raw_bucket, key),
            "dead-lettered (see dead letters)" if dead else "no receipt",
        )

    for key in sorted(set(archive) - set(expected_archive)):
        auditor.found(
            ARCHIVED_WITHOUT_RECEIPT,
            _s3_uri(env.archive_bucket, key),
            "no receipt or version record names it",
        )

    for (bucket, key), owners in sorted(output_owners.items()):
        if len(owners) > 1:
            auditor.found(
                OWNED_TWICE,
                _s3_uri(bucket, key),
                "listed by the receipts of " + ", ".join(repr(owner) for owner in owners),
                settles=False,
            )
    for key in sorted(processed):
        if not key.startswith(LEDGER_PREFIXES) and (env.processed_bucket, key) not in output_owners:
            auditor.found(ORPHAN_OUTPUT, _s3_uri(env.processed_bucket, key), "no receipt lists it")
    return report


def _check_version_record(
    auditor: _Auditor,
    record: ReceiptRead,
    archive: dict[str, Any],
    current_versions: set[tuple[str, str]],
    expect_archived: Callable[[str, str, str | None, str], None],
) -> None:
    """A superseded version must be archived under its own name; a deleted one owns nothing;
    neither may also be its key's current version."""
    env = auditor.environment
    record_uri = _s3_uri(env.processed_bucket, record.key)
    if record.body is None:
        auditor.found(BAD_RECEIPT, record_uri, str(record.problem), settles=False)
        return
    source: dict[str, Any] = record.body["source"]
    raw_key: str = source["key"]
    etag = normalize_etag(source.get("etag"))
    if record.key != version_record_key_of(source):
        auditor.found(
            BAD_RECEIPT,
            record_uri,
            f"names a version of {raw_key!r} whose record belongs at"
            f" {version_record_key_of(source)}",
            settles=False,
        )
    if (raw_key, version_token(source.get("version_id"), str(etag))) in current_versions:
        auditor.found(
            BAD_RECEIPT,
            record_uri,
            f"records as {record.body['status']} the version the receipt of {raw_key!r} names",
        )
    if record.body["status"] != "superseded":
        return
    archive_key = record.body.get("archive_key")
    if not isinstance(archive_key, str):
        auditor.found(BAD_RECEIPT, record_uri, "superseded version without archive_key")
        return
    expect_archived(archive_key, raw_key, etag, f"the superseded record of {raw_key!r}")
    if archive_key not in archive:
        auditor.found(
            NOT_ARCHIVED,
            _s3_uri(env.archive_bucket, archive_key),
            f"superseded version of {raw_key!r} recorded but not archived",
        )
