"""The local runtime's two halves depend one way (decision 37).

``sluice.local.lambdas`` (the Lambda service stand-in) imports nothing from
``sluice.local.stack`` (``sluice up``/``down``): tests and the chaos harness run it alone,
and the stack learns about it only through the processes it starts and the worker records
in the state directory. What both use (``awsenv``, ``procs``) imports neither.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2] / "src" / "sluice" / "local"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("files", "forbidden"),
    [
        (sorted((LOCAL / "lambdas").glob("*.py")), ("sluice.local.stack",)),
        (
            [LOCAL / "awsenv.py", LOCAL / "procs.py"],
            ("sluice.local.stack", "sluice.local.lambdas"),
        ),
    ],
    ids=["lambdas", "shared"],
)
def test_imports_go_one_way(files: list[Path], forbidden: tuple[str, ...]) -> None:
    assert files
    wrong = [
        f"{path.name}: {name}"
        for path in files
        for name in sorted(_imports(path))
        if name.startswith(forbidden)
    ]
    assert wrong == []
