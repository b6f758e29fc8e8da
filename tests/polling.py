"""Waiting in tests: poll a check until a deadline, never assert on elapsed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, seconds: float = 60, interval: float = 0.2) -> T:
    """The first truthy result of ``check``; the test fails if none comes in ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")
