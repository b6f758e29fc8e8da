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

from sluice import keys, restores

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
        PREFIXES["work"]["restoring"],
        PREFIXES["raw"]["uploads"],
    ) == (keys.REQUESTS_PREFIX, keys.BUNDLES_PREFIX, keys.RESTORING_PREFIX, keys.UPLOADS_SEGMENT)


SUB_PREFIXES = {("work", "restoring"): "bundles"}
"""Prefixes inside another prefix of their bucket (name -> the enclosing prefix's name)."""


def test_every_prefix_is_one_path_segment_or_one_inside_another() -> None:
    for bucket, names in PREFIXES.items():
        for name, prefix in names.items():
            outer = SUB_PREFIXES.get((bucket, name))
            segment = prefix.removeprefix(names[outer]) if outer else prefix
            assert outer is None or prefix.startswith(names[outer]), (bucket, name)
            assert re.fullmatch(r"[a-z_][a-z0-9_-]*/", segment), (bucket, name, prefix)


def test_restore_markers_are_keyed_apart_from_every_bundle() -> None:
    """Markers live under the bundles prefix (its expiry rule covers them), in a segment
    no bundle id can start, and restores and the IAM grant read them from keys.json."""
    segment = keys.RESTORING_PREFIX.removeprefix(keys.BUNDLES_PREFIX)
    assert keys.RESTORING_PREFIX.startswith(keys.BUNDLES_PREFIX)
    assert segment.startswith("_") and not keys.BUNDLE_ID_PATTERN.match(segment)
    assert restores.RESTORING_PREFIX is keys.RESTORING_PREFIX
    marker = keys.restore_marker_key("b-1")
    assert marker == f"{PREFIXES['work']['restoring']}b-1.json"
    assert keys.bundle_id_of_restore_marker(marker) == "b-1"
    policies = (REPO_ROOT / "modules" / "pipeline" / "policies.tf").read_text("utf-8")
    assert "resources = [local.objects.work.restoring]" in policies


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


PREFIX_REFERENCE = re.compile(r"(?:var\.key_prefixes|local\.objects)\.(\w+)\.(\w+)")


def test_terraform_names_only_prefixes_of_keys_json_and_extends_none_by_hand() -> None:
    """A prefix renamed on one side only, or a sub-prefix written as the literal rest of
    one (``"${var.key_prefixes.work.bundles}_restoring/*"``), fails: sub-prefixes are
    entries of keys.json too. An interpolated prefix may only be followed by ``*``."""
    extended = re.compile(r"\$\{(?:var\.key_prefixes|local\.objects)\.\w+\.\w+\}(?!\*?\")")
    unknown, by_hand = [], []
    for path in _terraform_files():
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            where = f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
            for bucket, name in PREFIX_REFERENCE.findall(code):
                if name not in PREFIXES.get(bucket, {}):
                    unknown.append(where)
            if extended.search(code):
                by_hand.append(where)
    assert not unknown, "prefixes keys.json does not have:\n" + "\n".join(unknown)
    assert not by_hand, "prefixes extended by hand:\n" + "\n".join(by_hand)


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


def _prefix_name(node: ast.expr) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return str(name).endswith(("_PREFIX", "_SEGMENT"))


def _extended_prefixes(path: Path) -> list[int]:
    """Lines where a prefix constant is followed by literal path text: ``f"{X_PREFIX}a/"``
    or ``X_PREFIX + "a/"`` (a sub-prefix belongs in keys.json)."""
    found: list[int] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.JoinedStr):
            pairs = zip(node.values, node.values[1:], strict=False)
            for first, second in pairs:
                if (
                    isinstance(first, ast.FormattedValue)
                    and _prefix_name(first.value)
                    and isinstance(second, ast.Constant)
                    and "/" in str(second.value)
                ):
                    found.append(node.lineno)
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add)
            and _prefix_name(node.left)
            and isinstance(node.right, ast.Constant)
            and "/" in str(node.right.value)
        ):
            found.append(node.lineno)
    return found


def test_the_package_extends_no_prefix_by_hand() -> None:
    found = [
        f"{path.relative_to(PACKAGE).as_posix()}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "keys.py"
        for number in _extended_prefixes(path)
    ]
    assert not found, "sub-prefixes built outside keys.json:\n" + "\n".join(found)


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
