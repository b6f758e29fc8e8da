"""Shared by the corpus, log and security tests: the corpus manifest, its bytes, the
personal values that must never reach a log, and a log capture that sees every logger."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from sluice.keys import receipt_key
from tests.conftest import FakeContext, Pipeline
from tests.s3events import object_event_for

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO_ROOT / "tests" / "corpus"
CORPUS_FILES_DIR = CORPUS_DIR / "files"
MANIFEST_PATH = CORPUS_DIR / "manifest.json"
SAMPLES_DIR = REPO_ROOT / "samples"
MAKE_CORPUS = REPO_ROOT / "scripts" / "make_corpus.py"
MAX_KEY_BYTES = 1024
MIN_PERSONAL_VALUE_CHARS = 6


@cache
def make_corpus() -> ModuleType:
    """scripts/make_corpus.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_corpus", MAKE_CORPUS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def manifest() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    return result


def file_cases() -> list[dict[str, Any]]:
    return list(manifest()["files"])


def event_cases() -> list[dict[str, Any]]:
    return list(manifest()["events"])


@cache
def corpus_bytes(name: str) -> bytes:
    """A corpus file: committed under files/, or (``generated`` in the manifest) built now."""
    path = CORPUS_FILES_DIR / name
    if path.is_file():
        return path.read_bytes()
    data: bytes = make_corpus().build(name)
    return data


def case_key(case: dict[str, Any]) -> str:
    """The RAW key of a case; ``{"prefix", "fill", "suffix", "bytes"}`` pads to that length."""
    spec = case["key"]
    if isinstance(spec, str):
        return spec
    room = spec["bytes"] - len((spec["prefix"] + spec["suffix"]).encode("utf-8"))
    fill = spec["fill"]
    count, remainder = divmod(room, len(fill.encode("utf-8")))
    if remainder:
        raise ValueError(f"{case['id']}: {fill!r} cannot fill exactly {room} bytes")
    return f"{spec['prefix']}{fill * count}{spec['suffix']}"


# --- personal data ---------------------------------------------------------------------------

_FIELD_VALUE = r'"{field}"\s*:\s*"((?:[^"\\]|\\.)*)"'


def personal_values(
    data: bytes, fields: tuple[str, ...] = ("patient_name", "patient_id")
) -> set[str]:
    """Every string value of ``fields`` in ``data``, read with a regex so that it also finds
    them in malformed, truncated and non-UTF-8 files (which a JSON parser would refuse)."""
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        text = data.decode("latin-1")
    found: set[str] = set()
    for name in fields:
        for match in re.finditer(_FIELD_VALUE.format(field=re.escape(name)), text):
            try:
                value = json.loads(f'"{match.group(1)}"')
            except ValueError:
                value = match.group(1)
            # Shorter strings ("X12", a deliberately invalid id) turn up by chance in
            # request ids and checksums, and identify nobody.
            if len(value.strip()) >= MIN_PERSONAL_VALUE_CHARS:
                found.add(value.strip())
    return found


def sample_files() -> list[Path]:
    return sorted(path for path in SAMPLES_DIR.rglob("*") if path.is_file())


def data_file_names(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.suffix.lower() in (".json", ".jsonl", ".ndjson")
    )


# --- the whole pipeline, in process -----------------------------------------------------------

Invoke = Callable[[str, dict[str, Any]], None]
"""Runs handler ``name`` on an event and checks it succeeded."""


def pipeline_inputs() -> list[tuple[str, bytes]]:
    """(RAW key, bytes) of every sample and every JSON case of the corpus."""
    inputs = [(str(p.relative_to(SAMPLES_DIR)), p.read_bytes()) for p in sample_files()]
    for case in file_cases():
        if case["expect"]["kind"] == "data":
            inputs.append((case_key(case), corpus_bytes(case["file"])))
    return inputs


def handler_invoker(handlers: dict[str, ModuleType]) -> Invoke:
    def invoke(name: str, event: dict[str, Any]) -> None:
        response = handlers[name].handler(event, FakeContext())
        assert response == {"batchItemFailures": []}, (name, response)

    return invoke


def _list(s3: Any, bucket: str, prefix: str) -> list[str]:
    paginator = s3.get_paginator("list_objects_v2")
    return [
        item["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]


def drive_pipeline(p: Pipeline, invoke: Invoke, inputs: list[tuple[str, bytes]]) -> None:
    """Every input through transform and archive, every archived image through tag, then a
    bundle of every label: each handler's whole path, as the queues would drive it."""
    for key, data in inputs:
        p.s3.put_object(Bucket=p.raw, Key=key, Body=data)
        invoke("transform", object_event_for(p.s3, p.raw, key))
        invoke("archive", object_event_for(p.s3, p.processed, receipt_key(key)))
    images = _list(p.s3, p.archive, "images/")
    assert len(images) >= 9
    for key in images:
        invoke("tag", object_event_for(p.s3, p.archive, key))
    labels = [
        item["sk"]["S"]
        for item in p.dynamodb.query(
            TableName=p.labels_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "LABELS"}},
        )["Items"]
    ]
    assert labels
    request = {"labels": labels, "match": "any", "notify": "privacy-check@example.org"}
    p.s3.put_object(
        Bucket=p.work, Key="requests/everything.json", Body=json.dumps(request).encode()
    )
    invoke("bundle", object_event_for(p.s3, p.work, "requests/everything.json"))
    status = json.loads(
        p.s3.get_object(Bucket=p.work, Key="bundles/everything.json")["Body"].read()
    )
    assert status["status"] == "ready" and status["image_count"] == len(images)
    # Every input has been through transform and archive: RAW is empty.
    assert _list(p.s3, p.raw, "") == []


# --- log capture -----------------------------------------------------------------------------


class CapturedLogs(logging.Handler):
    """Every record any logger emits while installed, formatted the way its own handlers
    would format it (Powertools' JSON for the handlers' loggers), with its exception text."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.entries: list[tuple[logging.LogRecord, str]] = []
        self._plain = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        formatter = self._formatter_for(record.name)
        try:
            text = formatter.format(record)
        except Exception as error:  # a record that cannot be formatted is itself a finding
            text = f"<unformattable {record.name} record: {error!r}>"
        if record.exc_info:
            text += "\n" + self._plain.formatException(record.exc_info)
        self.entries.append((record, text))

    def lines(self, *, excluding: tuple[str, ...] = ()) -> list[str]:
        """Formatted lines, leaving out loggers named (or under) ``excluding``."""
        return [
            text
            for record, text in self.entries
            if not any(record.name == n or record.name.startswith(n + ".") for n in excluding)
        ]

    def _formatter_for(self, name: str) -> logging.Formatter:
        for handler in logging.getLogger(name).handlers:
            if handler is not self and handler.formatter is not None:
                return handler.formatter
        return self._plain


def all_loggers() -> Iterator[logging.Logger]:
    yield logging.getLogger()
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield logger


def install_capture(capture: CapturedLogs) -> list[logging.Logger]:
    """Attach ``capture`` to every logger that does not propagate to the root (Powertools'
    loggers do not), and to the root for the rest; returns where it was attached."""
    attached = []
    for logger in all_loggers():
        is_root = logger is logging.getLogger()
        if (is_root or not logger.propagate) and capture not in logger.handlers:
            logger.addHandler(capture)
            attached.append(logger)
    return attached


def remove_capture(capture: CapturedLogs, attached: list[logging.Logger]) -> None:
    for logger in attached:
        logger.removeHandler(capture)
