#!/usr/bin/env python3
"""Render docs/openapi.yaml as docs/api.md, a table a person reads in a minute.

    python scripts/render_api_docs.py           # rewrite docs/api.md
    python scripts/render_api_docs.py --check   # exit 1 when docs/api.md is not current
    python scripts/render_api_docs.py --bundle FILE  # the document with every $ref inlined

The OpenAPI document is the source (Terraform creates the routes from it, tests check the
function serves them); this page is generated from it, and a unit test fails when it is
stale. ``--bundle`` writes one self-contained JSON document (request schemas from
``src/sluice/schemas/`` inlined) for tools that do not follow file references, e.g.
schemathesis in the end-to-end tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi.yaml"
PAGE = ROOT / "docs" / "api.md"
METHODS = ("get", "put", "post", "delete", "patch")


def load(path: Path = DOCUMENT) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def bundle(path: Path = DOCUMENT) -> dict[str, Any]:
    """The document with every reference to another file replaced by that file's schema."""

    def inline(value: Any, base: Path) -> Any:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                target = (base / ref).resolve()
                schema = json.loads(target.read_text(encoding="utf-8"))
                schema.pop("$schema", None)
                schema.pop("$id", None)
                return inline(schema, target.parent)
            return {key: inline(item, base) for key, item in value.items()}
        if isinstance(value, list):
            return [inline(item, base) for item in value]
        return value

    result: dict[str, Any] = inline(load(path), path.parent)
    return result


def routes(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every operation, in document order."""
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _auth(operation: dict[str, Any], document: dict[str, Any]) -> str:
    if operation.get("security", document.get("security")) == []:
        return "none"
    return "token"


def _schema_name(operation: dict[str, Any]) -> str:
    content = (operation.get("requestBody") or {}).get("content") or {}
    schema = (content.get("application/json") or {}).get("schema") or {}
    ref = str(schema.get("$ref", ""))
    return f"`{Path(ref).name}`" if ref else "—"


def render(document: dict[str, Any]) -> str:
    lines = [
        "# sluice HTTP API",
        "",
        "<!-- Generated from docs/openapi.yaml by scripts/render_api_docs.py; do not edit. -->",
        "",
        str(document["info"].get("description", "")).strip(),
        "",
        "| method | path | auth | what it does | request body | responses |",
        "|---|---|---|---|---|---|",
    ]
    for method, path, operation in routes(document):
        auth = _auth(operation, document)
        summary = str(operation.get("summary", "")).strip()
        statuses = ", ".join(str(code) for code in operation.get("responses", {}))
        lines.append(
            f"| {method} | `{path}` | {auth} | {summary} | {_schema_name(operation)} | {statuses} |"
        )
    lines += [
        "",
        "Request body schemas live in `src/sluice/schemas/`. Errors are",
        '`{"error": {"code", "message"}}` (422 adds `details`: JSON paths and rules, never',
        'values). 401 and 429 can also come from API Gateway itself as `{"message": ...}`.',
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--check", action="store_true", help="fail when docs/api.md is stale")
    parser.add_argument("--bundle", type=Path, metavar="FILE", help="write the bundled document")
    args = parser.parse_args(argv)
    if args.bundle:
        args.bundle.write_text(json.dumps(bundle(), indent=2) + "\n", encoding="utf-8")
        return 0
    page = render(load())
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE} is stale: run python scripts/render_api_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
