"""The keys ``sluice ... --output json`` promises, read from docs/contracts.md.

The contract is written once, in the docs; the tests read it from there, so a key the code
prints but the docs do not list (or the other way round) fails a test.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

CONTRACTS = Path(__file__).resolve().parent.parent / "docs" / "contracts.md"
SECTION_TITLE = "## `sluice ... --output json`"


@cache
def documented_keys() -> dict[str, frozenset[str]]:
    """Bullet label (``status``, ``queue``, ``ledger``, ...) -> the keys it lists."""
    text = CONTRACTS.read_text(encoding="utf-8")
    start = text.index(SECTION_TITLE)
    end = text.index("\n## ", start + 1)
    # A bullet runs from "- " to the next bullet or blank line (continuations are indented).
    bullets = re.findall(r"^- (.+?)(?=\n- |\n\n|\Z)", text[start:end], re.M | re.S)
    keys: dict[str, frozenset[str]] = {}
    for bullet in bullets:
        label, listed = bullet.split(":", 1)
        name = re.sub(r"\s*\(.*\)", "", label).strip("` ")
        keys[name] = frozenset(re.findall(r"`([^`]+)`", listed))
    return keys


def keys_of(name: str) -> frozenset[str]:
    return documented_keys()[name]


def one_json_document(stdout: str) -> dict[str, Any]:
    """The single JSON object on stdout; fails if anything else was printed there."""
    document = json.loads(stdout)  # raises on a second document or any stray line
    assert isinstance(document, dict)
    return document
