"""The project's ``.sluice/`` directory (git-ignored): every path sluice keeps there.

One module names them, so a file's writer and its readers (CLI, local stack, tests,
benchmarks) cannot disagree on where it is. Layout: docs/contracts.md, "Local environment";
the local stack's own files are named by :class:`sluice.local.stack.state.StateDir`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DIRECTORY = ".sluice"
OUTPUTS_FILE = "outputs.json"
STACK_FILE = "stack.json"
TOKENS_FILE = "tokens.json"


def root(project: Path) -> Path:
    return project / DIRECTORY


def environment_dir(project: Path, environment: str) -> Path:
    return root(project) / environment


def outputs_path(project: Path, environment: str) -> Path:
    """The ``environments`` output, cached for the CLI."""
    return environment_dir(project, environment) / OUTPUTS_FILE


def stack_path(project: Path, environment: str) -> Path:
    """The running local stack's endpoint and URLs."""
    return environment_dir(project, environment) / STACK_FILE


def tokens_path(project: Path, environment: str) -> Path:
    """``sluice login``'s tokens (0600)."""
    return environment_dir(project, environment) / TOKENS_FILE


def terraformrc(project: Path) -> Path:
    """The Terraform CLI configuration (scripts/terraformrc.sh writes it)."""
    return root(project) / "terraformrc"


def plugin_cache(project: Path) -> Path:
    """The tests' ``TF_PLUGIN_CACHE_DIR``."""
    return root(project) / "plugin-cache"


def localstack_home(project: Path) -> Path:
    """LocalStack's environment, shared by the checkout's stacks."""
    return root(project) / "localstack"


def replace_text(path: Path, text: str, *, private: bool = False) -> None:
    """Write ``path`` as a file beside it renamed over it: a reader sees the old file or
    the new one, never half. ``private``: 0600 from the start (else 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o600 if private else 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(partial).replace(path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
