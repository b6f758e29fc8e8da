"""Key prefixes are written once, in ``src/sluice/keys.json`` (no network).

``sluice.keys`` reads the file and Terraform reads it with ``jsondecode(file(...))`` (the
root module passes it to the pipeline as ``key_prefixes``, which scopes the IAM grants and
the bucket notifications by it). A prefix restated as a literal elsewhere would drift when
the file changes: these tests fail on any such literal, in Terraform or in the package.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import hcl2  # type: ignore[import-untyped]

from sluice import keys

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "src" / "sluice"
PREFIXES: dict[str, dict[str, str]] = json.loads((PACKAGE / "keys.json").read_text("utf-8"))
ALL_PREFIXES = sorted({prefix for names in PREFIXES.values() for prefix in names.values()})

NOT_KEYS = {
    ("bundle_contents.py", "images/"): "the folder inside a bundle's zip, not an S3 key",
}
"""Literals that look like a prefix but name something else, with the reason."""


def test_sluice_keys_exposes_the_prefixes_of_keys_json() -> None:
    assert keys.PREFIXES == PREFIXES
    assert (
        PREFIXES["processed"]["receipts"],
        PREFIXES["processed"]["thumbnails"],
        PREFIXES["processed"]["versions"],
    ) == (keys.RECEIPTS_PREFIX, keys.THUMBNAILS_PREFIX, keys.VERSIONS_PREFIX)
    assert (
        PREFIXES["processed"]["data"],
        PREFIXES["processed"]["errors"],
        PREFIXES["processed"]["leases"],
    ) == (keys.DATA_PREFIX, keys.ERRORS_PREFIX, keys.LEASES_PREFIX)
    assert tuple(
        PREFIXES["archive"][name] for name in ("images", "data", "rejected", "superseded")
    ) == (
        keys.ARCHIVE_IMAGES_PREFIX,
        keys.ARCHIVE_DATA_PREFIX,
        keys.ARCHIVE_REJECTED_PREFIX,
        keys.ARCHIVE_SUPERSEDED_PREFIX,
    )
    assert (
        PREFIXES["work"]["requests"],
        PREFIXES["work"]["bundles"],
        PREFIXES["raw"]["uploads"],
    ) == (keys.REQUESTS_PREFIX, keys.BUNDLES_PREFIX, keys.UPLOADS_SEGMENT)


def test_every_prefix_is_one_path_segment() -> None:
    for prefix in ALL_PREFIXES:
        assert re.fullmatch(r"[a-z][a-z0-9_-]*/", prefix), prefix


def _terraform_files() -> list[Path]:
    files = list(REPO_ROOT.glob("*.tf")) + list((REPO_ROOT / "modules").glob("*/*.tf"))
    return [path for path in files if ".terraform" not in path.parts]


def test_terraform_restates_no_key_prefix() -> None:
    """IAM resources, s3:prefix conditions and notification filters take the prefixes from
    ``var.key_prefixes``: a quoted or path-embedded prefix in any .tf file fails (bar the
    prose of descriptions, which name API routes such as ``GET /images/{id}``)."""
    literal = re.compile(r"[\"/](?:" + "|".join(re.escape(p) for p in ALL_PREFIXES) + r")")
    found = []
    for path in _terraform_files():
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if literal.search(code) and not code.strip().startswith("description"):
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not found, "key prefixes written as literals:\n" + "\n".join(found)


def test_the_root_module_reads_keys_json_and_the_notifications_filter_by_it() -> None:
    root = (REPO_ROOT / "main.tf").read_text("utf-8")
    assert 'jsondecode(file("${path.module}/src/sluice/keys.json"))' in root
    with (REPO_ROOT / "modules" / "pipeline" / "main.tf").open(encoding="utf-8") as handle:
        document = hcl2.load(handle)
    (notifications,) = [
        block["notifications"] for block in document["locals"] if "notifications" in block
    ]
    notifications = notifications[0] if isinstance(notifications, list) else notifications
    for bucket, entries in notifications.items():
        if isinstance(entries, str):
            # An expression (ARCHIVE's removals, one per archive prefix): it must draw its
            # filters from key_prefixes; the literal scan above rules out any other source.
            assert f"var.key_prefixes.{bucket}" in entries, f"{bucket}: {entries}"
            continue
        for entry in entries:
            prefix = entry["filter_prefix"]
            if prefix == "":
                assert bucket == "raw", "only RAW notifies for every key"
                continue
            match = re.fullmatch(r"\$\{var\.key_prefixes\.(\w+)\.(\w+)\}", prefix)
            assert match, f"{bucket}: filter {prefix!r} does not come from key_prefixes"
            assert match.group(1) == bucket, f"{bucket} filtered by a prefix of {match.group(1)}"
            assert match.group(2) in PREFIXES[bucket]


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Plain strings and the leading text of f-strings."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value + "{"))
    return found


def test_the_package_builds_keys_only_through_sluice_keys() -> None:
    """A string that is a prefix, or an f-string that starts with one, outside keys.py."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "keys.py":
            continue
        for number, text in _string_literals(path):
            for prefix in ALL_PREFIXES:
                is_prefix = text == prefix or (text.startswith(prefix) and text.endswith("{"))
                if is_prefix and (relative, text) not in NOT_KEYS:
                    found.append(f"{relative}:{number}: {text!r}")
    assert not found, "keys built outside sluice.keys:\n" + "\n".join(found)
