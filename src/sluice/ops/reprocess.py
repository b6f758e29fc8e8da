"""``sluice reprocess``: copy archived inputs back into RAW, so the pipeline runs them again.

The two-bucket pattern's recovery story ("move the files back into the upload bucket to
trigger reprocessing"), done so that nothing is lost and the ledger keeps the history:

* **Selection** reads the receipts, the ledger's one description of each input's newest
  version: by key prefix, dataset, status, error code, or a list of keys (all given
  filters must match). At least one is required: reprocessing a whole environment by
  mistake is expensive.
* **Copy** is server-side, from the archived copy the receipt names (``rejected/``,
  ``data/`` or ``images/``), pinned to that copy's version and ETag, to the input's own
  RAW key (:mod:`sluice.s3copy`: multipart above 5 GiB). The copy keeps the input's
  headers and its own user metadata; the archive's ``sluice-*`` stamps are dropped, and
  ``sluice-reprocess-of`` names the version it copies, so the new receipt says
  ``cause: reprocess``.
* The copy is a **new version** of the RAW key, so the pipeline treats it as any newer
  upload (docs/contracts.md, "Ownership and versions"): the transform writes a receipt
  whose ``replaces`` summarises the one it overwrites, and the archive handler moves the
  old archived copy to ``superseded/<version>/`` with a ``superseded`` record that keeps
  that summary. ``sluice audit`` stays exact: one receipt per key, every other version
  recorded once.
* An input that is **not at rest** is skipped with a reason, never copied: one still in
  RAW (not archived yet, or an upload in flight: it has or will get its own receipt), or
  whose archived copy is missing or of another version than its receipt says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from sluice.events import normalize_etag
from sluice.keys import (
    HASHED_SEGMENT,
    RECEIPTS_PREFIX,
    SOURCE_ETAG_METADATA,
    archive_key_for,
    receipt_key,
    version_token,
)
from sluice.ops.environment import Environment
from sluice.ops.objects import READ_WORKERS, list_objects, read_receipts
from sluice.receipts import REPROCESS_METADATA, STATUSES
from sluice.s3copy import carried_headers, copy_version
from sluice.s3io import head

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from sluice.ops.upload import Progress

STAMP_PREFIX = "sluice-"
"""User metadata the pipeline writes; not the input's own, so not carried back to RAW."""
COPY_WORKERS = 8
"""Copies are server-side and latency-bound: a few at a time."""

Outcome = Literal["copied", "would_copy", "skipped", "failed"]


class SelectionError(ValueError):
    """A selection that selects nothing by construction (no filter at all)."""


@dataclass(frozen=True)
class Selection:
    """Which receipts to reprocess: every given filter must match."""

    prefix: str | None = None
    dataset: str | None = None
    status: str | None = None
    error_code: str | None = None
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.prefix or self.dataset or self.status or self.error_code or self.keys):
            raise SelectionError(
                "say what to reprocess: KEY..., --keys-from, --prefix, --dataset, --status"
                " or --error"
            )
        if self.status is not None and self.status not in STATUSES:
            raise SelectionError(f"--status must be one of {', '.join(STATUSES)}")

    def matches(self, receipt: dict[str, Any]) -> bool:
        key = str(receipt["source"]["key"])
        codes = {str(error.get("code")) for error in receipt.get("errors") or []}
        return (
            (not self.prefix or key.startswith(self.prefix))
            and (not self.dataset or receipt.get("dataset") == self.dataset)
            and (not self.status or receipt.get("status") == self.status)
            and (not self.error_code or self.error_code in codes)
            and (not self.keys or key in self.keys)
        )

    def document(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "dataset": self.dataset,
            "status": self.status,
            "error_code": self.error_code,
            "keys": list(self.keys),
        }


@dataclass
class Item:
    """One selected input and what became of it."""

    key: str
    status: str | None = None
    kind: str | None = None
    dataset: str | None = None
    error_codes: list[str] = field(default_factory=list)
    etag: str | None = None
    version_id: str | None = None
    archive_key: str | None = None
    size: int = 0
    outcome: Outcome = "skipped"
    problem: str | None = None


@dataclass
class ReprocessReport:
    dry_run: bool
    selection: Selection
    items: list[Item] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)

    @property
    def bytes_copied(self) -> int:
        return sum(item.size for item in self.items if item.outcome == "copied")

    @property
    def ok(self) -> bool:
        """Every selected input was copied (or, in a dry run, would be)."""
        return all(item.outcome in ("copied", "would_copy") for item in self.items)


def _receipt_keys(s3: S3Client, bucket: str, selection: Selection) -> Iterator[str]:
    """The receipts worth reading: the named keys' own, or those under the prefix (and the
    hashed names, whose keys can only be told by reading them)."""
    if selection.keys:
        yield from (receipt_key(key) for key in selection.keys)
        return
    if not selection.prefix:
        yield from (item.key for item in list_objects(s3, bucket, RECEIPTS_PREFIX))
        return
    yield from (item.key for item in list_objects(s3, bucket, RECEIPTS_PREFIX + selection.prefix))
    if not selection.prefix.startswith(HASHED_SEGMENT):
        yield from (item.key for item in list_objects(s3, bucket, RECEIPTS_PREFIX + HASHED_SEGMENT))


def select(s3: S3Client, environment: Environment, selection: Selection) -> list[Item]:
    """The inputs ``selection`` names, in key order; a named key without a receipt is an
    item with its problem, so a typo is reported rather than silently skipped."""
    items: dict[str, Item] = {}
    reads = read_receipts(
        s3, environment.processed_bucket, _receipt_keys(s3, environment.processed_bucket, selection)
    )
    for read in reads:
        receipt = read.body
        if receipt is None or not selection.matches(receipt):
            continue
        source = receipt["source"]
        key = str(source["key"])
        items[key] = Item(
            key=key,
            status=str(receipt.get("status")),
            kind=str(receipt.get("kind")),
            dataset=receipt.get("dataset"),
            error_codes=sorted({str(e.get("code")) for e in receipt.get("errors") or []}),
            etag=normalize_etag(source.get("etag")),
            version_id=source.get("version_id"),
            archive_key=archive_key_for(str(receipt.get("kind")), str(receipt.get("status")), key),
        )
    for key in selection.keys:
        if key not in items:
            items[key] = Item(key=key, problem="no receipt: never processed, or a mistyped key")
    return [items[key] for key in sorted(items)]


def _at_rest(s3: S3Client, environment: Environment, item: Item) -> dict[str, Any] | None:
    """The archived copy to reprocess from, or None with ``item.problem`` saying why not."""
    if item.problem:
        return None
    if head(s3, environment.raw_bucket, item.key) is not None:
        item.problem = "in RAW: not archived yet, or a newer upload is in flight"
        return None
    assert item.archive_key is not None
    archived = head(s3, environment.archive_bucket, item.archive_key)
    if archived is None:
        item.problem = f"not archived: {item.archive_key} does not exist"
        return None
    stamp = normalize_etag((archived.get("Metadata") or {}).get(SOURCE_ETAG_METADATA))
    if stamp != item.etag:
        item.problem = f"{item.archive_key} is a copy of ETag {stamp}, not of the receipt's"
        return None
    item.size = int(archived.get("ContentLength", 0))
    return archived


def copy_back(s3: S3Client, environment: Environment, item: Item, archived: dict[str, Any]) -> None:
    """Copy the archived input to its RAW key (module docstring: copy)."""
    assert item.archive_key is not None and item.etag is not None
    source = {"Bucket": environment.archive_bucket, "Key": item.archive_key}
    if archived.get("VersionId"):
        source["VersionId"] = str(archived["VersionId"])
    metadata = {
        name: value
        for name, value in (archived.get("Metadata") or {}).items()
        if not name.startswith(STAMP_PREFIX)
    }
    metadata[REPROCESS_METADATA] = version_token(item.version_id, item.etag)
    copy_version(
        s3,
        source,
        archived,
        environment.raw_bucket,
        item.key,
        {**carried_headers(archived), "Metadata": metadata},
    )


def reprocess(
    s3: S3Client,
    environment: Environment,
    selection: Selection,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], Progress] | None = None,
    workers: int = COPY_WORKERS,
) -> ReprocessReport:
    """Select, check that each input is at rest, then copy those back (or, dry, say they
    would be). ``progress(files, bytes)`` makes the progress bar once the sizes are known."""
    report = ReprocessReport(dry_run, selection, select(s3, environment, selection))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, READ_WORKERS))) as pool:
        sources = list(pool.map(lambda item: _at_rest(s3, environment, item), report.items))
        ready = [(i, a) for i, a in zip(report.items, sources, strict=True) if a is not None]
        if dry_run:
            for item, _ in ready:
                item.outcome = "would_copy"
            return report
        bar = progress(len(ready), sum(item.size for item, _ in ready)) if progress else None

        def one(pair: tuple[Item, dict[str, Any]]) -> None:
            item, archived = pair
            try:
                copy_back(s3, environment, item, archived)
                item.outcome = "copied"
            except ClientError as error:
                item.outcome, item.problem = "failed", str(error)
            if bar is not None:
                bar.add_bytes(item.size if item.outcome == "copied" else 0)
                bar.file_done(item.key, item.problem if item.outcome == "failed" else None)

        list(pool.map(one, ready))
    if bar is not None:
        bar.finish()
    return report


def keys_from_lines(lines: Iterable[str]) -> tuple[str, ...]:
    """Keys one a line (``--keys-from``); blank lines are ignored, nothing else is trimmed
    beyond the line ending (a key may begin or end with a space)."""
    return tuple(line.rstrip("\r\n") for line in lines if line.strip())
