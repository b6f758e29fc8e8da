"""No personal value reaches a log line, even at DEBUG (GitHub issue 7); no value and no
unexpected property name reaches a receipt, an errors report or a log line (issue 10).

Every sample and every JSON case of the bad-input corpus goes through transform, archive,
tag and bundle in moto with ``POWERTOOLS_LOG_LEVEL=DEBUG``, and every line any logger
emits is captured (a handler on every logger, plus stdout/stderr). The personal values are
read from the input files themselves (every ``patient_name`` and ``patient_id`` string,
also in malformed and non-UTF-8 files), so the check cannot go stale when samples change.

``patient_id`` is checked too: the ids are pseudonymous, but pseudonymised data is still
personal data, and nothing in the pipeline has a reason to log one.

botocore's and urllib3's DEBUG logs are on too and checked as well. They print request
parameters and response bodies; today no record reaches them because every body the
handlers send or read is a stream (botocore signs uploads as an unsigned streaming
payload with a checksum trailer and logs ``<StreamingBody>``, not bytes). That is the
SDK's behaviour, not a promise, so the handlers must never turn its DEBUG log on: the
second test pins down that importing a handler changes no SDK logger and adds no root
handler, whatever ``POWERTOOLS_LOG_LEVEL`` says (Powertools' level applies to its own
logger only, and the Lambda runtime leaves the rest at WARNING).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from sluice.keys import receipt_key
from tests.conftest import Pipeline, load_handler
from tests.s3events import object_event_for
from tests.security_support import (
    CapturedLogs,
    drive_pipeline,
    handler_invoker,
    install_capture,
    personal_values,
    pipeline_inputs,
    remove_capture,
)

HANDLERS = ("transform", "archive", "tag", "bundle")
SDK_WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
"""Loggers of the SDK and its HTTP stack: request bodies are theirs to print at DEBUG."""


def _personal_values(inputs: list[tuple[str, bytes]]) -> set[str]:
    values = set().union(*(personal_values(data) for _, data in inputs))
    # Guard against a regex that silently stops matching: the samples hold dozens of each.
    assert sum(value.startswith("P") and value[1:].isdigit() for value in values) > 50
    assert sum(" " in value for value in values) > 50
    return values


@pytest.fixture
def debug_handlers(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, ModuleType]]:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("THUMBNAIL_SIZES", "64,128")
    handlers = {name: load_handler(name) for name in HANDLERS}
    # A fresh process would take the level from POWERTOOLS_LOG_LEVEL at cold start; here an
    # earlier test may have made the same named logger, which Powertools reuses as it was.
    levels = {name: handlers[name].logger.log_level for name in HANDLERS}
    for name in HANDLERS:
        handlers[name].logger.setLevel(logging.DEBUG)
    yield handlers
    for name, level in levels.items():
        handlers[name].logger.setLevel(level)


@pytest.fixture
def captured() -> Iterator[CapturedLogs]:
    capture = CapturedLogs()
    sdk_levels = {name: logging.getLogger(name).level for name in SDK_WIRE_LOGGERS}
    for name in SDK_WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    attached = install_capture(capture)
    try:
        yield capture
    finally:
        remove_capture(capture, attached)
        for name, level in sdk_levels.items():
            logging.getLogger(name).setLevel(level)


def _leaks(lines: list[str], values: set[str]) -> list[tuple[str, str]]:
    return [(value, line[:300]) for line in lines for value in values if value in line]


def test_no_personal_value_in_any_handler_log_line_at_debug(
    pipeline: Pipeline,
    debug_handlers: dict[str, ModuleType],
    captured: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = pipeline_inputs()
    drive_pipeline(pipeline, handler_invoker(debug_handlers), inputs)
    values = _personal_values(inputs)

    printed = capsys.readouterr()
    handler_lines = captured.lines(excluding=SDK_WIRE_LOGGERS)
    sdk_lines = sorted(set(captured.lines()) - set(handler_lines))
    # The handlers did log, at DEBUG, about every input.
    services = {
        json.loads(text)["service"] for r, text in captured.entries if r.name.startswith("sluice")
    }
    assert {f"sluice-{name}" for name in HANDLERS} <= services
    assert len(handler_lines) >= len(inputs) * 2
    assert len(sdk_lines) > len(handler_lines)  # the SDK's DEBUG log was on, and captured

    assert _leaks(handler_lines, values) == []
    assert _leaks(sdk_lines, values) == []
    assert _leaks(printed.out.splitlines() + printed.err.splitlines(), values) == []


def test_handlers_leave_the_sdk_wire_logs_alone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's DEBUG log prints request parameters and bodies, so no handler may turn it
    on, whatever POWERTOOLS_LOG_LEVEL says."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    before = {name: logging.getLogger(name).level for name in SDK_WIRE_LOGGERS}
    root_handlers = list(logging.getLogger().handlers)
    for name in HANDLERS:
        load_handler(name)
    assert {name: logging.getLogger(name).level for name in SDK_WIRE_LOGGERS} == before
    assert logging.getLogger().handlers == root_handlers


# Values and unexpected property names that are personal data, each distinctive enough that
# finding it anywhere is a leak. The names are made up.
SECRET_NAMES = (
    "Margaret Hamilton-Smythe (DOB 1961-04-02)",
    "Quillon Esterbrook-Vane",
    "NHS 943 476 5919",
)
SECRET_VALUES = ("Ysolde Parrington-Tarrow", "Bexley Crumwhistle", "1961-04-02T08:15:00Z")


def _secret_records() -> list[dict[str, Any]]:
    base = {
        "patient_id": "P000001",
        "patient_name": "Talo Venri",
        "scan_date": "2024-03-01",
        "retina_thickness_microns": 262.5,
        "optic_disc_cup_ratio": 0.31,
        "diagnosis": "normal",
    }
    return [
        base,
        {**base, SECRET_NAMES[0]: SECRET_VALUES[0]},
        {**base, "patient_name": SECRET_VALUES[1], "retina_thickness_microns": SECRET_VALUES[2]},
        {
            **base,
            SECRET_NAMES[1]: {SECRET_NAMES[2]: SECRET_VALUES[1]},
            "scan_date": SECRET_VALUES[2],
        },
        {SECRET_NAMES[2]: SECRET_VALUES[0]},
    ]


def test_no_value_or_unexpected_name_in_receipts_reports_or_logs(
    pipeline: Pipeline,
    debug_handlers: dict[str, ModuleType],
    captured: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = _secret_records()
    inputs = {
        "retina/secrets/scans.json": json.dumps(records).encode(),
        "retina/secrets/scans.jsonl": b"\n".join(json.dumps(r).encode() for r in records),
    }
    invoke = handler_invoker(debug_handlers)
    for key, data in inputs.items():
        pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=data)
        invoke("transform", object_event_for(pipeline.s3, pipeline.raw, key))
        invoke("archive", object_event_for(pipeline.s3, pipeline.processed, receipt_key(key)))

    written = []
    for key in inputs:
        receipt = pipeline.s3.get_object(Bucket=pipeline.processed, Key=receipt_key(key))
        text = receipt["Body"].read().decode()
        assert json.loads(text)["stats"]["records_invalid"] == 4  # the checks did run
        written.append(text)
        report = pipeline.s3.get_object(Bucket=pipeline.processed, Key=f"errors/{key}.jsonl")
        written.append(report["Body"].read().decode())
    printed = capsys.readouterr()
    lines = captured.lines() + printed.out.splitlines() + printed.err.splitlines()
    assert len(lines) > 10

    secrets = set(SECRET_NAMES) | set(SECRET_VALUES)
    assert _leaks(written, secrets) == []
    assert _leaks(lines, secrets) == []
    # What the report says instead: the position of the unexpected property.
    assert "an unexpected property (#6)" in written[0]
