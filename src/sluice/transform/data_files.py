"""A data file's outputs: its valid records, projected, and the report of the others.

A ``.json`` (one JSON array of records) or ``.jsonl``/``.ndjson`` (JSON Lines) file under a
dataset prefix, or at the bucket root when a dataset takes root-level files (the
environment's ``DATASETS``, :mod:`sluice.datasets`): every record is validated against the
dataset's schema (:mod:`sluice.records`); valid records, projected, go to PROCESSED
``data/<raw key>`` in the input's format; the invalid-record report (bounded) goes to
``errors/<raw key>.jsonl``, and exists only when there are errors. Both are streamed
(:class:`~sluice.s3io.MultipartWriter`), so memory does not grow with the file.

A file that could be read as a whole is **processed**, even if some or all of its records
are invalid (they are listed in the receipt and the report); one that could not (empty,
not UTF-8, malformed JSON, wrong top-level shape, too deep, no dataset for its prefix) is
**rejected**, and none of its outputs remain.

Budgets are verdicts on the file, so a rejection on the first attempt, never a retry into
the dead-letter queue: a file larger than ``MAX_DATA_BYTES`` is rejected unread
(``data_too_large``). Time comes from the Lambda context as a :class:`Deadline` argument:
the records are read until less than the margin is left (5 s, or a fifth of a shorter
invocation: :attr:`Deadline.margin_ms`), the margin being what aborting the uploads and
writing the receipt take. A file stopped there is rejected (``time_budget_exceeded``)
when, at the pace it went, it could not finish within a whole invocation's time;
otherwise it only had too little of this invocation's time (it came after batch-mates, or
had less than half an invocation to show its pace) and the message is retried
(:class:`OutOfTimeRetryError`). Either way the multipart uploads are aborted, so nothing
half-written remains.

Records are personal data: logs carry keys, counts and codes, never a record or a value;
receipts and reports name a record's fields only as the schema does (:mod:`sluice.datasets`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.datasets import Dataset
from sluice.file_formats import DATA_FORMATS, RecordFormat
from sluice.keys import DATA_PREFIX, ERRORS_PREFIX, derived_key, split_extension
from sluice.receipts import MAX_RECEIPT_ERRORS, Receipt
from sluice.records import (
    FileRejectedError,
    OutOfTimeError,
    transform_records,
)
from sluice.runtime import make_logger
from sluice.s3io import MultipartWriter
from sluice.settings import TransformSettings
from sluice.transform.outputs import delete_if_present, output_entry
from sluice.transform.sources import Source

logger = make_logger("transform")

DATA_CONTENT_TYPES = {"array": "application/json", "lines": "application/x-ndjson"}
ERRORS_CONTENT_TYPE = "application/x-ndjson"

TIME_MARGIN_MS = 5_000
"""Time kept for aborting the uploads, removing stale outputs and writing the receipt."""
TIME_MARGIN_SHARE = 0.2
"""A short invocation keeps this share of its time instead: a fixed 5 s would leave a 3 s
function nothing to read with (the chaos environment's functions are that short)."""


@dataclass(frozen=True)
class Deadline:
    """How much of the invocation's time is left (the Lambda context's clock), and how much
    the invocation had when it began: a plain argument, so tests pass a fake clock."""

    remaining_ms: Callable[[], int]
    budget_ms: int

    @classmethod
    def of(cls, context: Any) -> Deadline:
        return cls(context.get_remaining_time_in_millis, context.get_remaining_time_in_millis())

    @property
    def margin_ms(self) -> int:
        """Time kept for the clean-up and the receipt: ``TIME_MARGIN_MS``, or a fifth of an
        invocation shorter than 25 s."""
        return min(TIME_MARGIN_MS, int(self.budget_ms * TIME_MARGIN_SHARE))

    @classmethod
    def unbounded(cls) -> Deadline:
        """No limit: scripts and benchmarks that call the logic outside Lambda."""
        return cls(lambda: 2**62, 2**62)


class OutOfTimeRetryError(Exception):
    """A data file could finish in a fresh invocation but not in what was left of this one:
    the message is retried (nothing was written)."""


class _LazyWriter:
    """Starts its upload on the first write, so no errors report exists without errors."""

    def __init__(self, factory: Callable[[], MultipartWriter]) -> None:
        self._factory = factory
        self.writer: MultipartWriter | None = None

    def write(self, data: bytes) -> int:
        if self.writer is None:
            self.writer = self._factory()
        return self.writer.write(data)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def complete(self) -> None:
        if self.writer is not None:
            self.writer.complete()


def _output_entry(written: MultipartWriter, content_type: str) -> dict[str, Any]:
    return output_entry(
        written.bucket,
        written.key,
        content_type,
        written.bytes_written,
        version_id=written.version_id,
        etag=written.etag,
    )


def transform_data(
    s3: Any, settings: TransformSettings, source: Source, deadline: Deadline
) -> Receipt:
    """Validate and project ``source``'s records to PROCESSED; its receipt (module docstring)."""
    key = source.ref.key
    bucket = settings.processed_bucket
    data_key = derived_key(DATA_PREFIX, key)
    errors_key = derived_key(ERRORS_PREFIX, key, ".jsonl")
    dataset = settings.datasets.for_key(key)
    if dataset is None:
        return source.rejected(
            "data",
            {
                "code": "unknown_dataset",
                "message": "no dataset for this key; data files must be"
                f" {settings.datasets.placement()}",
            },
        )
    if source.size == 0 or source.size > settings.max_data_bytes:
        delete_if_present(s3, bucket, [data_key, errors_key])
        error = {"code": "empty_file", "message": "empty file"}
        if source.size:
            error = {
                "code": "data_too_large",
                "message": f"data file is {source.size} bytes, larger than the limit of"
                f" {settings.max_data_bytes} bytes",
            }
        return source.rejected("data", error, dataset.name)
    fmt = DATA_FORMATS[split_extension(key)[1]]
    return _stream_records(s3, bucket, dataset, source, fmt, (data_key, errors_key), deadline)


def _time_rejection(
    source: Source, deadline: Deadline, started_ms: int, bytes_read: int
) -> dict[str, Any]:
    """The ``time_budget_exceeded`` error, or :class:`OutOfTimeRetryError` when the file
    would finish within a whole invocation at the pace it went, or had less than half an
    invocation to show its pace (it came after slow batch-mates)."""
    spent_ms = max(started_ms - deadline.remaining_ms(), 1)
    done = bytes_read / source.size
    usable_ms = deadline.budget_ms - deadline.margin_ms
    had_ms = started_ms - deadline.margin_ms
    if had_ms < usable_ms / 2 or spent_ms < done * usable_ms:
        raise OutOfTimeRetryError(
            f"stopped after {bytes_read} of {source.size} bytes; retried with a whole invocation"
        )
    return {
        "code": "time_budget_exceeded",
        "message": f"the file cannot be processed within the function's time: {bytes_read}"
        f" of {source.size} bytes were read in {spent_ms} ms, of the {usable_ms} ms an"
        " invocation has",
    }


def _stream_records(
    s3: Any,
    bucket: str,
    dataset: Dataset,
    source: Source,
    fmt: RecordFormat,
    keys: tuple[str, str],
    deadline: Deadline,
) -> Receipt:
    data_key, errors_key = keys
    data_out = MultipartWriter(s3, bucket, data_key, content_type=DATA_CONTENT_TYPES[fmt])
    errors_out = _LazyWriter(
        lambda: MultipartWriter(s3, bucket, errors_key, content_type=ERRORS_CONTENT_TYPE)
    )

    def report(error: dict[str, Any]) -> None:
        errors_out.write(json.dumps(error, ensure_ascii=False).encode("utf-8") + b"\n")

    started_ms = deadline.remaining_ms()

    def out_of_time() -> bool:
        return deadline.remaining_ms() < deadline.margin_ms

    try:
        result = transform_records(
            source.body,
            fmt,
            dataset,
            data_out,
            report,
            max_errors=MAX_RECEIPT_ERRORS,
            out_of_time=out_of_time,
        )
    except (FileRejectedError, OutOfTimeError) as stop:
        data_out.abort()
        errors_out.abort()
        if isinstance(stop, OutOfTimeError):
            error = _time_rejection(source, deadline, started_ms, stop.bytes_read)
        else:
            error = stop.as_error()
        delete_if_present(s3, bucket, [data_key, errors_key])
        return source.rejected("data", error, dataset.name)
    except BaseException:
        data_out.abort()
        errors_out.abort()
        raise
    data_out.complete()
    errors_out.complete()
    outputs = [_output_entry(data_out, DATA_CONTENT_TYPES[fmt])]
    if errors_out.writer is not None:
        outputs.append(_output_entry(errors_out.writer, ERRORS_CONTENT_TYPE))
    else:
        delete_if_present(s3, bucket, [errors_key])
    if result.bom_skipped:
        logger.info("UTF-8 byte order mark skipped")
    return Receipt(
        status="processed",
        kind="data",
        source=source.receipt_source(),
        dataset=dataset.name,
        outputs=outputs,
        errors=result.errors,
        errors_truncated=result.errors_truncated,
        stats=result.stats(),
    )
