"""sluice.datasets as configuration: the default, validation at cold start, routing by key.

The datasets of an environment come from the transform's ``DATASETS`` (JSON, from the
``datasets`` Terraform variable in ``env/<env>.tfvars``); ``datasets.json`` in the package
is the default. A bad configuration must fail the function's init with a message that
names the variable and what to fix.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sluice.config import ConfigError
from sluice.datasets import (
    Dataset,
    DatasetConfigError,
    build_registry,
    load_registry,
    parse_registry,
    shipped_schemas,
)
from sluice.handlers.transform import Dependencies
from sluice.keys import DATA_PREFIX, RECEIPTS_PREFIX, derived_key, receipt_key
from sluice.records import transform_records
from tests.conftest import IKERIAN_EXPECTED, IKERIAN_SAMPLE, load_handler
from tests.terraform_support import (
    copy_configuration,
    terraform,
    terraform_binary,
    terraform_env,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RETINA = {"prefix": "retina/", "schema": "retina.schema.json", "projection": ["patient_id"]}


def scan(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "patient_id": "A12345",
        "patient_name": "Ikerian A",
        "scan_date": "2025-01-01",
        "retina_thickness_microns": 275,
        "optic_disc_cup_ratio": 0.4,
        "diagnosis": "normal",
    }
    record.update(changes)
    return {name: value for name, value in record.items() if value is not DROP}


DROP = object()


@pytest.fixture(scope="module")
def retina() -> Dataset:
    dataset = load_registry().for_key("retina/scans.json")
    assert dataset is not None
    return dataset


def project_file(data: bytes, dataset: Dataset) -> tuple[Any, list[dict[str, Any]]]:
    out = io.BytesIO()
    reported: list[dict[str, Any]] = []
    transform_records(io.BytesIO(data), "array", dataset, out, reported.append)
    return json.loads(out.getvalue()), reported


# --- the default --------------------------------------------------------------------------


def test_default_routes_retina_prefix_and_bucket_root_to_retina() -> None:
    registry = load_registry()
    assert registry.prefixes == ("retina/",)
    for key in ("retina/a.json", "retina/2025/a.jsonl", "ikerian_sample.json", "a b+c.json"):
        dataset = registry.for_key(key)
        assert dataset is not None and dataset.name == "retina", key
    # A folder states an intent: an unknown (or mistyped) one is not given the default.
    for key in ("misc/a.json", "retnia/a.json", "other/retina/a.json", "/a.json"):
        assert registry.for_key(key) is None, key
    assert registry.placement() == "under one of: retina/, or at the bucket root"


def test_users_sample_is_valid_and_projects_to_the_expected_records(retina: Dataset) -> None:
    records, reported = project_file(IKERIAN_SAMPLE.read_bytes(), retina)
    assert reported == []
    assert records == IKERIAN_EXPECTED


def test_root_file_keys_collide_with_nothing_under_a_prefix() -> None:
    # data/<raw key> and receipts/<raw key>.json keep the raw key whole: a root-level file
    # and the same name under retina/ get different outputs, receipts and archive keys.
    root, nested = "ikerian_sample.json", "retina/ikerian_sample.json"
    assert derived_key(DATA_PREFIX, root) == "data/ikerian_sample.json"
    assert receipt_key(root) == f"{RECEIPTS_PREFIX}ikerian_sample.json.json"
    assert derived_key(DATA_PREFIX, root) != derived_key(DATA_PREFIX, nested)
    assert receipt_key(root) != receipt_key(nested)


# --- the retina schema ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"patient_id": "P000001"},
        {"patient_id": "x"},
        {"patient_id": "clinic-7/0042"},
        {"diagnosis": "suspected glaucoma"},
        {"diagnosis": "glaucoma_suspect"},
        {"retina_thickness_microns": 742.5},  # macular oedema
        {"optic_disc_cup_ratio": 0},
        {"optic_disc_cup_ratio": 1},
        {"scan_date": "2024-02-29"},
    ],
)
def test_retina_accepts_real_identifiers_free_text_and_the_full_ranges(
    retina: Dataset, changes: dict[str, Any]
) -> None:
    record = scan(**changes)
    assert retina.is_valid(record)
    assert retina.violations(record) == []


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"patient_id": ""}, "$.patient_id", "must be at least 1 character long"),
        ({"patient_id": "  "}, "$.patient_id", "must match the pattern \\S"),
        ({"patient_id": 12345}, "$.patient_id", "must be of type string, got integer"),
        ({"patient_id": DROP}, "$.patient_id", "required property is missing"),
        ({"diagnosis": ""}, "$.diagnosis", "must be at least 1 character long"),
        ({"diagnosis": None}, "$.diagnosis", "must be of type string, got null"),
        ({"scan_date": "2025-02-30"}, "$.scan_date", "must be a valid date (YYYY-MM-DD)"),
        ({"scan_date": "2025-13-01"}, "$.scan_date", "must be a valid date (YYYY-MM-DD)"),
        ({"scan_date": "01/02/2025"}, "$.scan_date", "must be a valid date (YYYY-MM-DD)"),
        ({"scan_date": "2025-1-1"}, "$.scan_date", "must be a valid date (YYYY-MM-DD)"),
        ({"retina_thickness_microns": 0}, "$.retina_thickness_microns", "must be > 0"),
        ({"retina_thickness_microns": 1000.5}, "$.retina_thickness_microns", "must be <= 1000"),
        ({"optic_disc_cup_ratio": 1.01}, "$.optic_disc_cup_ratio", "must be <= 1"),
        ({"optic_disc_cup_ratio": -0.01}, "$.optic_disc_cup_ratio", "must be >= 0"),
        ({"referring_doctor": "Dr X"}, "$", "an unexpected property (#6) is not allowed"),
    ],
)
def test_retina_rejects_with_both_validators(
    retina: Dataset, changes: dict[str, Any], path: str, message: str
) -> None:
    # The fast gate decides; the thorough validator explains. Both must check formats, or a
    # date the gate lets through is never reported (or one it refuses has no reason).
    record = scan(**changes)
    assert not retina.is_valid(record)
    assert any(v.path == path and v.message.startswith(message) for v in retina.violations(record))
    assert [v.path for v in retina.first_violation(record)] == [path]


@pytest.mark.parametrize("name", shipped_schemas())
def test_every_shipped_schema_is_valid_draft_2020_12(name: str) -> None:
    # The metaschema check runs here, not at cold start: it needs jsonschema (slow to import).
    entry = {"prefix": "x/", "schema": name, "projection": ["patient_id"]}
    build_registry({"check": entry}).datasets[0].check_schema()


# --- configuration ------------------------------------------------------------------------


def test_a_new_dataset_is_configuration_only() -> None:
    registry = parse_registry(
        json.dumps(
            {
                "retina": {**RETINA, "projection": ["patient_id", "patient_name"]},
                "clinic_b": {**RETINA, "prefix": "clinic-b/scans/", "root": True},
            }
        )
    )
    assert registry.prefixes == ("clinic-b/scans/", "retina/")
    clinic_b = registry.for_key("clinic-b/scans/2025.json")
    assert clinic_b is not None and clinic_b.name == "clinic_b"
    assert registry.root is clinic_b and registry.for_key("top.json") is clinic_b
    assert registry.for_key("clinic-b/other.json") is None
    records, _ = project_file(IKERIAN_SAMPLE.read_bytes(), clinic_b)
    assert records == [{"patient_id": "A12345"}, {"patient_id": "B67890"}]


def test_without_a_root_dataset_a_root_file_has_no_dataset() -> None:
    registry = build_registry({"retina": RETINA})
    assert registry.root is None
    assert registry.for_key("ikerian_sample.json") is None
    assert registry.placement() == "under one of: retina/"
    assert build_registry({}).placement() == "no dataset is configured"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("[1, 2", "is not valid JSON"),
        ('["retina"]', "must be a JSON object of dataset name -> {prefix, schema, projection"),
        ({"retina": "retina/"}, "dataset retina: must be an object with prefix, schema"),
        ({"bad name!": RETINA}, "dataset name 'bad name!' must be 1-64 letters"),
        ({"retina": {**RETINA, "schema": "nope.schema.json"}}, "unknown schema file"),
        ({"retina": {**RETINA, "schema": "../datasets.json"}}, "unknown schema file"),
        (
            {"retina": {**RETINA, "projection": ["patient_id", "eye"]}},
            "dataset retina: projection names fields that are not in the schema's"
            " properties: ['eye']",
        ),
        ({"retina": {**RETINA, "projection": []}}, "projection must be a non-empty list"),
        ({"retina": {**RETINA, "projection": ["patient_id"] * 2}}, "distinct field names"),
        ({"retina": {**RETINA, "projecton": ["x"]}}, "unknown field(s) ['projecton']"),
        ({"retina": {"prefix": "retina/", "schema": "retina.schema.json"}}, "missing field"),
        ({"retina": {**RETINA, "prefix": "retina"}}, "prefix 'retina' must be a key prefix"),
        ({"retina": {**RETINA, "prefix": "/retina/"}}, "must be a key prefix"),
        ({"retina": {**RETINA, "prefix": "/"}}, "must be a key prefix"),
        ({"retina": {**RETINA, "prefix": "a//"}}, "must be a key prefix"),
        ({"retina": {**RETINA, "root": "yes"}}, "dataset retina: root must be true or false"),
        (
            {"retina": RETINA, "scans": {**RETINA, "prefix": "retina/2025/"}},
            "prefixes overlap: 'retina/' (dataset retina) contains 'retina/2025/' (dataset scans)",
        ),
        ({"a": RETINA, "b": RETINA}, "prefixes overlap: 'retina/'"),
        (
            {"a": {**RETINA, "root": True}, "b": {**RETINA, "prefix": "b/", "root": True}},
            "at most one dataset may take files at the bucket root (root: true), got ['a', 'b']",
        ),
    ],
)
def test_a_bad_configuration_says_what_to_fix(config: Any, problem: str) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    with pytest.raises(DatasetConfigError) as caught:
        parse_registry(text)
    assert problem in str(caught.value)


# --- the transform's cold start -------------------------------------------------------------


@pytest.fixture
def transform_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RAW_BUCKET", "PROCESSED_BUCKET", "IMAGES_TABLE"):
        monkeypatch.setenv(name, name.lower())
    monkeypatch.delenv("DATASETS", raising=False)
    return monkeypatch


def test_cold_start_without_datasets_uses_the_default(transform_env: pytest.MonkeyPatch) -> None:
    assert Dependencies.from_env(os.environ).settings.datasets is load_registry()


def test_cold_start_reads_datasets(transform_env: pytest.MonkeyPatch) -> None:
    transform_env.setenv("DATASETS", json.dumps({"scans": {**RETINA, "prefix": "scans/"}}))
    datasets = Dependencies.from_env(os.environ).settings.datasets
    assert datasets.prefixes == ("scans/",) and datasets.root is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            {"retina": {**RETINA, "schema": "eye.schema.json"}},
            "environment variable DATASETS: dataset retina: unknown schema file"
            " 'eye.schema.json'; the package ships: retina.schema.json",
        ),
        ({"retina": {**RETINA, "projection": ["eye"]}}, "environment variable DATASETS: "),
        ("{not json", "environment variable DATASETS: is not valid JSON"),
    ],
)
def test_cold_start_fails_on_a_bad_configuration_naming_the_variable(
    transform_env: pytest.MonkeyPatch, value: Any, problem: str
) -> None:
    transform_env.setenv("DATASETS", value if isinstance(value, str) else json.dumps(value))
    # Inside Lambda (its name is set) the handler reads its settings at import: the init.
    transform_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "sluice-test-transform")
    with pytest.raises(ConfigError) as caught:
        load_handler("transform")
    assert problem in str(caught.value)


# --- every environment's configuration, as Terraform passes it ------------------------------


@pytest.fixture(scope="module")
def terraform_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = copy_configuration(tmp_path_factory.mktemp("terraform") / "sluice")
    # `terraform console` needs an initialised backend: a local one, in this copy only.
    (root / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    env = terraform_env(root)
    terraform(["init"], cwd=root, env=env)
    return root, env


@pytest.mark.parametrize("tfvars", sorted(p.name for p in (REPO_ROOT / "env").glob("*.tfvars")))
def test_each_environments_datasets_pass_the_transforms_validation(
    terraform_root: tuple[Path, dict[str, str]], tfvars: str
) -> None:
    # What the transform will get in DATASETS (jsonencode of the typed variable) is checked
    # here, before any deploy, by the same code that checks it at cold start.
    root, env = terraform_root
    expression = "jsonencode({for name, e in var.environments : name => e.datasets})\n"
    result = subprocess.run(
        [terraform_binary(), "console", f"-var-file=env/{tfvars}"],
        cwd=root,
        env=env,
        input=expression,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The console prints the JSON text as an HCL string literal, whose escapes are JSON's.
    by_environment = json.loads(json.loads(result.stdout.strip()))
    assert by_environment, tfvars
    for name, datasets in by_environment.items():
        assert datasets is not None, f"{tfvars}: environment {name} sets no datasets"
        registry = parse_registry(json.dumps(datasets))
        assert registry.root is not None and registry.root.name == "retina", name
        assert registry.prefixes == ("retina/",), name
