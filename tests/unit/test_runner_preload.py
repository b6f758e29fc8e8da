"""The local runner's test-harness hook: a preload module and its handler wrapper."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from sluice.local.lambdas.wiring import FunctionWiring
from sluice.local.lambdas.worker import (
    PRELOAD_VARIABLE,
    FunctionWorker,
    function_process_env,
    load_preload,
)

WIRING = FunctionWiring(
    name="sluice-chaos-transform",
    arn="arn:aws:lambda:us-east-1:123456789012:function:sluice-chaos-transform",
    handler="json.dumps",
    environment={"SLUICE_ENV": "chaos"},
    timeout_seconds=5,
    memory_mb=128,
    log_group="/aws/lambda/sluice-chaos-transform",
    region="us-east-1",
    sources=(),
)

PRELOAD = """
def wrap_handler(handler):
    def wrapped(event, context):
        return {"wrapped": handler(event)}
    return wrapped
"""


@pytest.fixture
def preload_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "chaos_preload_for_test.py").write_text(PRELOAD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "chaos_preload_for_test", raising=False)
    return "chaos_preload_for_test"


def test_no_preload_variable_means_no_wrapper() -> None:
    assert load_preload({}) is None
    assert load_preload({PRELOAD_VARIABLE: "  "}) is None


def test_the_preload_module_is_imported_and_its_wrapper_returned(preload_module: str) -> None:
    wrap = load_preload({PRELOAD_VARIABLE: preload_module})
    assert preload_module in sys.modules
    assert wrap is not None

    def echo(event: Any) -> Any:
        return event

    assert wrap(echo)({"a": 1}, None) == {"wrapped": {"a": 1}}  # type: ignore[arg-type]


def test_a_preload_module_that_cannot_be_imported_stops_the_worker() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_preload({PRELOAD_VARIABLE: "no_such_module_for_sluice_tests"})


def test_the_worker_wraps_the_handler_at_its_cold_start() -> None:
    seen: list[Any] = []

    def wrap(handler: Any) -> Any:
        seen.append(handler)
        return lambda event, context: ("wrapped", handler(event))

    worker = FunctionWorker(WIRING, sqs=None, wrap_handler=wrap)
    handler = worker._try_init()
    assert handler({"x": 1}, None) == ("wrapped", '{"x": 1}')
    assert worker._try_init() is handler, "wrapped once, at the cold start only"
    assert len(seen) == 1


def test_harness_variables_reach_the_worker_and_nothing_else_does() -> None:
    base = {
        "PATH": "/bin",
        PRELOAD_VARIABLE: "tests.chaos.preload",
        "SLUICE_RUNNER_FAULT_RATE": "0.25",
        "SECRET_OF_THE_SHELL": "x",
    }
    env = function_process_env(WIRING, "http://127.0.0.1:4566", base)
    assert env[PRELOAD_VARIABLE] == "tests.chaos.preload"
    assert env["SLUICE_RUNNER_FAULT_RATE"] == "0.25"
    assert "SECRET_OF_THE_SHELL" not in env
    assert env["SLUICE_ENV"] == "chaos"
