"""Command-line value types shared by ``sluice`` and its local commands (``up``/``down``).

argparse calls a type with the argument's text and turns an ``ArgumentTypeError`` into a
usage error naming the option, so each type only says what it expected.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(
    minimum: int, maximum: int | None = None, *, what: str = "a whole number"
) -> Callable[[str], int]:
    """An integer in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {value}")
        return value

    return parse


def seconds(*, maximum: float | None = None, zero: bool = True) -> Callable[[str], float]:
    """A duration in seconds: at least 0 (more than 0 when ``zero`` is False), at most
    ``maximum`` when given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        too_small = value < 0 or (value == 0 and not zero)
        if too_small or (maximum is not None and value > maximum):
            lowest = "0" if zero else "more than 0"
            bounds = lowest if maximum is None else f"{lowest} to {maximum:g}"
            raise argparse.ArgumentTypeError(f"seconds must be {bounds}, got {text}")
        return value

    return parse
