"""The project's ``.sluice/`` directory has one owner: :mod:`sluice.workdir`.

The layout is a contract (docs/contracts.md, "Local environment"): the CLI finds the
outputs and the running stack there, ``sluice login`` keeps its tokens there. So it is
pinned here once, in full, and no other Python file may spell a ``.sluice`` path itself.
"""

from __future__ import annotations

import ast
import stat
from pathlib import Path

import pytest

from sluice import workdir
from sluice.local.stack.state import StateDir

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "src" / "sluice" / "workdir.py"
PROJECT = Path("/project")


def test_the_layout_is_the_documented_one() -> None:
    state = StateDir(PROJECT)
    # (path, where it is, how docs/contracts.md shows it)
    layout = [
        (workdir.terraformrc(PROJECT), ".sluice/terraformrc", ".sluice/terraformrc"),
        (workdir.plugin_cache(PROJECT), ".sluice/plugin-cache", ".sluice/plugin-cache/"),
        (workdir.localstack_home(PROJECT), ".sluice/localstack", ".sluice/localstack/"),
        (workdir.outputs_path(PROJECT, "dev"), ".sluice/dev/outputs.json", "outputs.json"),
        (workdir.stack_path(PROJECT, "dev"), ".sluice/dev/stack.json", "stack.json"),
        (workdir.tokens_path(PROJECT, "dev"), ".sluice/dev/tokens.json", "tokens.json"),
        (workdir.environment_dir(PROJECT, "dev"), ".sluice/dev", ".sluice/<environment>/"),
        # The local stack's state directory is the local environment's, so the CLI reads
        # what `sluice up` writes without being told where.
        (state.path, ".sluice/local", ".sluice/local/"),
        (state.outputs, ".sluice/local/outputs.json", "outputs.json"),
        (state.stack, ".sluice/local/stack.json", "stack.json"),
        (state.worker_logs, ".sluice/local/logs", "logs/<function>.log"),
        (state.workers, ".sluice/local/workers", "workers/<function>.json"),
    ]
    assert [path.relative_to(PROJECT).as_posix() for path, _, _ in layout] == [
        where for _, where, _ in layout
    ]
    contracts = (ROOT / "docs" / "contracts.md").read_text()
    assert "`src/sluice/workdir.py`" in contracts
    assert [shown for _, _, shown in layout if f"`{shown}`" not in contracts] == []


def _python_files() -> list[Path]:
    files = []
    for top in ("src", "tests", "bench", "scripts", "tools"):
        files += [p for p in (ROOT / top).rglob("*.py") if "node_modules" not in p.parts]
    return sorted(files)


def _spells_a_sluice_path(node: ast.AST) -> bool:
    """A string that is a ``.sluice`` path (``".sluice"``, ``".sluice/local/logs"``), not
    prose that mentions one (a docstring, a help text) nor a name like ``.sluice-installed``."""
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value == workdir.DIRECTORY or node.value.startswith(f"{workdir.DIRECTORY}/"))
    )


def test_no_other_python_file_spells_a_sluice_path() -> None:
    here = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _python_files()
        if path not in (OWNER, here)
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _spells_a_sluice_path(node)
    ]
    assert offenders == []


@pytest.mark.parametrize("private", [False, True])
def test_replace_text_swaps_the_whole_file_at_once(tmp_path: Path, private: bool) -> None:
    path = tmp_path / "deeper" / "stack.json"
    workdir.replace_text(path, "old", private=private)
    inode = path.stat().st_ino
    workdir.replace_text(path, "new", private=private)

    assert path.read_text() == "new"
    assert path.stat().st_ino != inode, "a new file renamed over the old one, not rewritten"
    assert stat.S_IMODE(path.stat().st_mode) == (0o600 if private else 0o644)
    assert [p.name for p in path.parent.iterdir()] == ["stack.json"], "no partial file left"
