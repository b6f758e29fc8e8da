"""The development environment is the lock file: every pin, with hashes, installed as locked.

``scripts/bootstrap.sh`` installs ``requirements/dev.lock`` with ``--require-hashes``; these
tests catch a lock that drifts from ``pyproject.toml`` and an environment that drifts from
the lock (a hand-installed upgrade, an older checkout's venv).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "dev.lock"
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^ ;\\]+)(?: ; (?P<marker>[^\\]+))?")


def _entries() -> list[tuple[str, str, Marker | None, int]]:
    """(name, version, marker, number of hashes) for each pin of the lock."""
    entries: list[tuple[str, str, Marker | None, int]] = []
    for line in LOCK.read_text().splitlines():
        match = _ENTRY.match(line)
        if match:
            marker = match["marker"]
            entries.append(
                (
                    canonicalize_name(match["name"]),
                    match["version"],
                    Marker(marker.strip()) if marker else None,
                    0,
                )
            )
        elif line.strip().startswith("--hash=sha256:") and entries:
            name, version, marker, hashes = entries[-1]
            entries[-1] = (name, version, marker, hashes + 1)
    return entries


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(text)
        for text in [
            *project["dependencies"],
            *project["optional-dependencies"]["dev"],
            *project["optional-dependencies"]["local"],
        ]
    ]


def test_every_pin_carries_hashes() -> None:
    entries = _entries()
    assert len(entries) > 50
    assert [name for name, _, _, hashes in entries if hashes == 0] == []


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    locked: dict[str, list[str]] = {}
    for name, version, _, _ in _entries():
        locked.setdefault(name, []).append(version)
    for requirement in _declared():
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is declared in pyproject.toml but not locked"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{requirement.name}=={version} in the lock is outside {requirement}"
            )


def test_the_environment_holds_exactly_the_locked_versions() -> None:
    wrong = []
    for name, version, marker, _ in _entries():
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed, locked {version}")
            continue
        if Version(installed) != Version(version):
            wrong.append(f"{name}: installed {installed}, locked {version}")
    assert wrong == [], (
        "run scripts/bootstrap.sh (or scripts/lock.sh after a change):\n" + "\n".join(wrong)
    )
