"""The environment variables Terraform sets are the ones the functions read (no network).

``sluice.settings`` owns every variable's name, default and bound; Terraform sets them in
``modules/pipeline/main.tf``. Nothing else ties the two, so a variable renamed on one side
only would deploy a function that starts with its default (or not at all): these tests
read the Terraform source (python-hcl2, as checkov parses it) and fail first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import hcl2  # type: ignore[import-untyped]
import pytest

from sluice.settings import (
    LAMBDA_VARIABLES,
    RUNTIME_VARIABLES,
    SETTINGS_CLASSES,
    SHARED_VARIABLES,
    Settings,
)
from tests.conftest import Pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE_MAIN = REPO_ROOT / "modules" / "pipeline" / "main.tf"
QUEUE_FUNCTIONS = ("transform", "archive", "tag", "bundle")
_ENV_NAME = re.compile(r"'([A-Z][A-Z0-9_]*)'\s*:")


def _parse(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return dict(hcl2.load(handle))


def _locals(document: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in document.get("locals", []):
        merged.update(block)
    return merged


def _lambda_modules(document: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for block in document.get("module", []):
        for name, body in block.items():
            if body.get("source") in ("../lambda", ["../lambda"]):
                yield name, body


def _only(value: Any) -> Any:
    """python-hcl2 wraps some attribute values in a one-element list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@cache
def terraform_environments() -> dict[str, frozenset[str]]:
    """Function -> every variable name Terraform sets on it.

    Each lambda module's ``environment_variables`` must be ``merge()`` of
    ``local.function_environment[<function>]`` (the common variables plus
    ``local.function_variables[<function>]``) and literal names; anything else fails here,
    so a new way of setting variables cannot slip past this test.
    """
    document = _parse(PIPELINE_MAIN)
    local = _locals(document)
    common = set(_only(local["common_environment"]))
    per_function = {name: set(names) for name, names in _only(local["function_variables"]).items()}
    environments: dict[str, frozenset[str]] = {}
    for module_name, body in _lambda_modules(document):
        expression = str(_only(body["environment_variables"]))
        literal = set(_ENV_NAME.findall(expression))
        if "local.function_environment[each.key]" in expression:
            functions: tuple[str, ...] = QUEUE_FUNCTIONS
        else:
            match = re.search(r"""local\.function_environment\[["'](\w+)["']\]""", expression)
            assert match, f"module {module_name}: unrecognised environment_variables {expression}"
            functions = (match.group(1),)
        for function in functions:
            environments[function] = frozenset(common | per_function[function] | literal)
    return environments


def settings_of(function: str) -> type[Settings]:
    (cls,) = [cls for cls in SETTINGS_CLASSES if function == cls.FUNCTION]
    return cls


def test_every_function_has_one_settings_class_and_one_terraform_environment() -> None:
    functions = {cls.FUNCTION for cls in SETTINGS_CLASSES}
    assert functions == {*QUEUE_FUNCTIONS, "api"}
    assert set(terraform_environments()) == functions


@pytest.mark.parametrize("function", [*QUEUE_FUNCTIONS, "api"])
def test_terraform_sets_exactly_the_variables_the_function_reads(function: str) -> None:
    """Set by Terraform = read by the settings class (less what Lambda itself sets), plus
    the shared names every function carries and the runtime's own (Powertools)."""
    terraform = terraform_environments()[function]
    reads = settings_of(function).variables()
    assert terraform - SHARED_VARIABLES - RUNTIME_VARIABLES == reads - SHARED_VARIABLES - (
        LAMBDA_VARIABLES
    ), f"{function}: Terraform sets {sorted(terraform)}, sluice.settings reads {sorted(reads)}"
    assert reads - LAMBDA_VARIABLES <= terraform, f"{function}: read but never set"
    assert "POWERTOOLS_SERVICE_NAME" in terraform


def test_the_shared_variables_are_the_common_environment_and_each_is_read() -> None:
    local = _locals(_parse(PIPELINE_MAIN))
    assert set(_only(local["common_environment"])) == SHARED_VARIABLES
    read_by_some_function = set().union(*(cls.variables() for cls in SETTINGS_CLASSES))
    # SLUICE_ENV names the environment (sluice.local.lambdas.wiring), the log level is Powertools'.
    unread = SHARED_VARIABLES - read_by_some_function - {"SLUICE_ENV", "POWERTOOLS_LOG_LEVEL"}
    assert not unread


def test_every_environment_field_names_one_variable_once() -> None:
    for cls in SETTINGS_CLASSES:
        names = [f.metadata["sluice.variable"].name for f in fields(cls) if f.metadata]  # type: ignore[arg-type]
        assert len(names) == len(set(names)), cls.__name__


def test_the_tests_environment_uses_the_settings_names() -> None:
    test_env = Pipeline(*["x"] * 7, s3=None, dynamodb=None, sns=None, sqs=None).env()
    known = set().union(*(cls.variables() for cls in SETTINGS_CLASSES)) | SHARED_VARIABLES
    assert set(test_env) <= known


def documented_variables() -> set[str]:
    """The names in the variable column of docs/contracts.md's environment tables."""
    contracts = (REPO_ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    start, end = contracts.index("## Environment variables"), contracts.index("## Datasets")
    names: set[str] = set()
    for line in contracts[start:end].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) not in (2, 3):
            continue
        cell = cells[0 if len(cells) == 2 else 1].split("(")[0]  # not the values in brackets
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", cell))
    return names


def test_docs_name_every_variable_and_no_other() -> None:
    read = set().union(*(cls.variables() for cls in SETTINGS_CLASSES)) - LAMBDA_VARIABLES
    set_by_terraform = set().union(*terraform_environments().values())
    assert documented_variables() == read | set_by_terraform


def test_a_settings_class_reads_what_it_declares() -> None:
    """``from_env`` fills exactly the fields that name a variable (the rest keep their
    defaults): no field is read from a name ``variables()`` does not list."""
    seen: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            seen.add(key)
            return super().get(key, default)

    for cls in SETTINGS_CLASSES:
        seen.clear()
        cls.from_env(Recording({name: "arn-or-name" for name in cls.variables()} | _valid()))
        assert seen == set(cls.variables()), cls.__name__


def _valid() -> dict[str, str]:
    """Values every bounded variable accepts."""
    return {
        "THUMBNAIL_SIZES": "128",
        "THUMBNAIL_FORMAT": "JPEG",
        "THUMBNAIL_QUALITY": "85",
        "MAX_IMAGE_PIXELS": "1",
        "MAX_IMAGE_BYTES": "1",
        "MAX_DATA_BYTES": "1",
        "DATASETS": "",
        "ARCHIVE_STORAGE_CLASS": "STANDARD",
        "LABELER": "offline",
        "LABEL_MIN_CONFIDENCE": "80",
        "LABEL_MAX_LABELS": "10",
        "BUNDLE_URL_TTL_SECONDS": "60",
        "BUNDLE_EXPIRATION_DAYS": "1",
        "ARCHIVE_COLD_STORAGE": "glacier",
        "RESTORE_TIER": "Bulk",
        "RESTORE_DAYS": "2",
        "MAX_UPLOAD_BYTES": "1",
        "UPLOAD_URL_TTL_SECONDS": "900",
        "LINK_TTL_SECONDS": "900",
        "AWS_REGION": "us-east-1",
    }


def test_settings_module_is_the_only_reader_of_function_variables() -> None:
    """No handler reads the environment by name any more: it asks its settings class."""
    handlers = REPO_ROOT / "src" / "sluice" / "handlers"
    for path in handlers.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "env_str(" not in source and "env_int(" not in source, path.name


_ONE_VARIABLE = re.compile(r"^\$\{(?:tostring\()?var\.(\w+)\)?\}$")


def _terraform_defaults() -> dict[tuple[str, str], Any]:
    """(function, environment name) -> the default of the module variable it is set from,
    for every name set from exactly one variable (``var.x`` or ``tostring(var.x)``)."""
    variables: dict[str, Any] = {}
    for block in _parse(PIPELINE_MAIN.with_name("variables.tf")).get("variable", []):
        for name, body in block.items():
            if "default" in body:
                variables[name] = _only(body["default"])
    local = _locals(_parse(PIPELINE_MAIN))
    defaults: dict[tuple[str, str], Any] = {}
    for function, names in _only(local["function_variables"]).items():
        for name, expression in names.items():
            match = _ONE_VARIABLE.match(str(_only(expression)))
            if match and match.group(1) in variables:
                defaults[function, name] = variables[match.group(1)]
    return defaults


def _settings_default(function: str, name: str) -> Any:
    (field,) = [
        f
        for f in fields(settings_of(function))
        if f.metadata and f.metadata["sluice.variable"].name == name  # type: ignore[attr-defined]
    ]
    return field.default


def _same(terraform: Any, settings: Any) -> bool:
    if isinstance(settings, int | float) and isinstance(terraform, int | float):
        return float(terraform) == float(settings)
    if isinstance(settings, tuple):
        return list(terraform) == list(settings)
    return str(terraform) == str(settings)


def test_terraform_defaults_are_the_settings_defaults() -> None:
    """A module variable's default is what the function would use unset: one value, two
    spellings. THUMBNAIL_QUALITY's 85 once lived in six places; a default changed on one
    side only would make a deployed function behave unlike the tests' (which use the
    settings' defaults)."""
    checked = _terraform_defaults()
    assert ("transform", "THUMBNAIL_QUALITY") in checked and ("tag", "LABELER") in checked
    differ = {
        (function, name): (terraform, settings)
        for (function, name), terraform in checked.items()
        # None: the function has no limit of its own and is given another's (the api's
        # MAX_DATA_BYTES is the transform's, checked on the transform's row).
        if (settings := _settings_default(function, name)) is not None
        and not _same(terraform, settings)
    }
    assert not differ, f"(function, variable): (Terraform's default, settings' default) {differ}"
