"""Static checks of the Terraform configuration: format, validity, checkov, plan-time guards.

No network: providers install from the local filesystem mirror (scripts/terraformrc.sh)
and the only plans run against a provider that makes no AWS call.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.terraform_support import (
    LOCK_FILE,
    MODULES,
    PLUGIN_CACHE_DIR,
    REPO_ROOT,
    copy_configuration,
    terraform,
    terraform_binary,
    terraform_env,
    venv_tool,
)

REQUIRED_MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")


@pytest.fixture(scope="module")
def config_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_configuration(tmp_path_factory.mktemp("terraform") / "sluice")


def test_configuration_is_formatted() -> None:
    result = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-recursive", "-diff", "-no-color"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_root_module_validates_with_the_committed_lock_file(config_copy: Path) -> None:
    env = terraform_env(config_copy)
    # readonly: init fails if the committed lock file does not cover the provider it installs.
    terraform(["init", "-backend=false", "-lockfile=readonly"], cwd=config_copy, env=env)
    result = terraform(["validate", "-json"], cwd=config_copy, env=env)
    report = json.loads(result.stdout)
    assert report["valid"], report
    assert report["warning_count"] == 0, report["diagnostics"]


def _cached_providers() -> dict[Path, tuple[int, int]]:
    """Each cached provider package, with its inode and modification time (not followed:
    the cache entry is a link to the filesystem mirror)."""
    cached = {}
    for entry in PLUGIN_CACHE_DIR.glob("registry.terraform.io/*/*/*/*"):
        status = entry.lstat()
        cached[entry] = (status.st_ino, status.st_mtime_ns)
    return cached


def test_an_init_without_a_lock_file_links_the_cached_provider_and_never_reinstalls_it(
    tmp_path: Path,
) -> None:
    """Workers plan and apply through the shared plugin cache while others init modules and
    fixtures that have no lock file of their own. Such an init must not remove and install
    the cached provider again under them: a destroy once failed that way in CI ("could not
    read package directory")."""
    ignore = shutil.ignore_patterns(".terraform", LOCK_FILE)
    first, second = tmp_path / "first", tmp_path / "second"
    for module in (first, second):
        shutil.copytree(REPO_ROOT / "modules" / "s3", module, ignore=ignore)
    terraform(["init", "-backend=false"], cwd=first, env=terraform_env(first))
    cached = _cached_providers()
    assert cached, f"the first init cached no provider in {PLUGIN_CACHE_DIR}"

    terraform(["init", "-backend=false"], cwd=second, env=terraform_env(second))

    assert _cached_providers() == cached


@pytest.mark.parametrize("module", MODULES)
def test_module_validates_on_its_own(config_copy: Path, module: str) -> None:
    module_dir = config_copy / "modules" / module
    missing = [name for name in REQUIRED_MODULE_FILES if not (module_dir / name).is_file()]
    assert not missing, f"modules/{module} lacks {missing}"
    env = terraform_env(module_dir)
    terraform(["init", "-backend=false"], cwd=module_dir, env=env)
    report = json.loads(terraform(["validate", "-json"], cwd=module_dir, env=env).stdout)
    assert report["valid"], report
    assert report["warning_count"] == 0, report["diagnostics"]


@pytest.mark.parametrize("module", MODULES)
def test_module_readme_lists_every_input_and_output(module: str) -> None:
    module_dir = REPO_ROOT / "modules" / module
    readme = (module_dir / "README.md").read_text(encoding="utf-8")
    declared = {
        kind: re.findall(rf'^{kind} "([^"]+)"', (module_dir / f"{file}.tf").read_text(), re.M)
        for kind, file in (("variable", "variables"), ("output", "outputs"))
    }
    for kind, names in declared.items():
        undocumented = [name for name in names if f"`{name}`" not in readme]
        assert not undocumented, f"modules/{module}/README.md does not list {kind}s {undocumented}"


def test_every_variable_is_typed_and_described() -> None:
    problems = []
    for path in [*REPO_ROOT.glob("*.tf"), *REPO_ROOT.glob("modules/*/variables.tf")]:
        for name, body in re.findall(
            r'^variable "([^"]+)" \{\n(.*?)^\}', path.read_text(), re.M | re.S
        ):
            if not re.search(r"^  type\s+=", body, re.M):
                problems.append(f"{path.relative_to(REPO_ROOT)}: {name} has no type")
            if not re.search(r'^  description\s+=\s+"[^"]+\."', body, re.M):
                problems.append(f"{path.relative_to(REPO_ROOT)}: {name} has no description")
    assert not problems, "\n".join(problems)


def _checkov_report() -> dict[str, Any]:
    result = subprocess.run(
        [
            venv_tool("checkov"),
            "--directory",
            str(REPO_ROOT),
            "--framework",
            "terraform",
            "--compact",
            "--skip-download",  # no network: no guideline links
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), f"checkov crashed:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    assert isinstance(report, dict), "expected one terraform report"
    return report


def test_checkov_finds_no_failed_check_and_every_skip_has_a_reason() -> None:
    report = _checkov_report()
    results = report["results"]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for check in results["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    unexplained = [
        f"{check['check_id']} {check['resource']}"
        for check in results["skipped_checks"]
        if len(check.get("check_result", {}).get("suppress_comment", "").strip()) < 20
    ]
    assert not unexplained, f"skips without a reason: {unexplained}"
    # The scan really covered the pipeline (not an empty directory by mistake).
    scanned = {check["resource"].split(".")[-2] for check in results["passed_checks"]}
    assert {"aws_s3_bucket", "aws_lambda_function", "aws_sqs_queue"} <= scanned | {
        check["resource"].split(".")[-2] for check in results["skipped_checks"]
    }


def _plan_notifications(config_copy: Path, queues: list[dict[str, Any]]) -> Any:
    fixture = config_copy / "tests" / "fixtures" / "terraform" / "notifications"
    env = terraform_env(fixture)
    if not (fixture / ".terraform").is_dir():
        terraform(["init", "-backend=false"], cwd=fixture, env=env)
    (fixture / "test.tfvars.json").write_text(
        json.dumps({"bucket_name": "fixture-raw", "queues": queues}), encoding="utf-8"
    )
    return terraform(
        ["plan", "-refresh=false", "-lock=false", "-var-file=test.tfvars.json"],
        cwd=fixture,
        env=env,
        expect_codes=(0, 1),
    )


def _queue(id_: str, events: list[str], prefix: str = "", suffix: str = "") -> dict[str, Any]:
    return {
        "id": id_,
        "queue_arn": f"arn:aws:sqs:us-east-1:123456789012:{id_}",
        "events": events,
        "filter_prefix": prefix,
        "filter_suffix": suffix,
    }


def test_overlapping_notification_filters_fail_at_plan_time(config_copy: Path) -> None:
    result = _plan_notifications(
        config_copy,
        [
            # A wildcard event covers Put; images/2024/ lies inside images/; "" ends any suffix.
            _queue("images-any", ["s3:ObjectCreated:*"], "images/"),
            _queue("images-2024-jpeg", ["s3:ObjectCreated:Put"], "images/2024/", ".jpg"),
            # No prefix matches every key, so it overlaps any filter of the same event.
            _queue("deleted-requests", ["s3:ObjectRemoved:Delete"], "requests/"),
            _queue("deleted-anything", ["s3:ObjectRemoved:Delete"]),
        ],
    )
    assert result.returncode == 1, result.stdout
    message = " ".join(result.stderr.split())  # terraform wraps long messages
    assert "Overlapping event notification filters on bucket fixture-raw" in message
    overlaps = message.split("fixture-raw: ", 1)[1].split(". S3 rejects", 1)[0].split("; ")
    assert overlaps == [
        'images-any (events s3:ObjectCreated:*, prefix "images/", suffix "") overlaps'
        ' images-2024-jpeg (events s3:ObjectCreated:Put, prefix "images/2024/", suffix ".jpg")',
        'deleted-requests (events s3:ObjectRemoved:Delete, prefix "requests/", suffix "")'
        ' overlaps deleted-anything (events s3:ObjectRemoved:Delete, prefix "", suffix "")',
    ]


def test_disjoint_notification_filters_plan(config_copy: Path) -> None:
    result = _plan_notifications(
        config_copy,
        [
            _queue("images", ["s3:ObjectCreated:*"], "images/"),
            _queue("images-dash", ["s3:ObjectCreated:*"], "images-raw/"),
            # Same prefix, suffixes that cannot both end one key.
            _queue("data-json", ["s3:ObjectCreated:*"], "data/", ".json"),
            _queue("data-csv", ["s3:ObjectCreated:*"], "data/", ".csv"),
            # Same keys, different event types; Delete is not a wildcard for its longer sibling.
            _queue("deleted", ["s3:ObjectRemoved:Delete"], "images/"),
            _queue("delete-markers", ["s3:ObjectRemoved:DeleteMarkerCreated"], "images/"),
        ],
    )
    assert result.returncode == 0, result.stderr
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in result.stdout


def _test_lambda_module(config_copy: Path, test_file: str) -> str:
    """``terraform test`` of one file of tests/fixtures/terraform/lambda; its output."""
    fixture = config_copy / "tests" / "fixtures" / "terraform" / "lambda"
    with zipfile.ZipFile(fixture / "code.zip", "w") as code:
        code.writestr("sluice/__init__.py", "")
    env = terraform_env(fixture)
    if not (fixture / ".terraform").is_dir():
        terraform(["init", "-backend=false"], cwd=fixture, env=env)
    return terraform(["test", f"-filter={test_file}"], cwd=fixture, env=env).stdout


def test_queue_invokes_the_live_alias_only_with_snap_start(config_copy: Path) -> None:
    # snap_start.tftest.hcl, against a mock provider.
    output = _test_lambda_module(config_copy, "snap_start.tftest.hcl")
    assert "2 passed, 0 failed" in output, output


def test_the_lambda_module_grants_its_role_its_own_queue_log_group_and_key(
    config_copy: Path,
) -> None:
    # role.tftest.hcl: the statements name the resources' own ARNs (overridden with ones no
    # name would give), the caller's policy_json is merged in, nothing of a queue without one.
    output = _test_lambda_module(config_copy, "role.tftest.hcl")
    assert "2 passed, 0 failed" in output, output


def test_archive_versions_retention_and_object_lock_plan_as_asked(config_copy: Path) -> None:
    # tests/fixtures/terraform/s3/object_lock.tftest.hcl, modules/s3 under a mock provider.
    fixture = config_copy / "tests" / "fixtures" / "terraform" / "s3"
    env = terraform_env(fixture)
    terraform(["init", "-backend=false"], cwd=fixture, env=env)
    result = terraform(["test"], cwd=fixture, env=env)
    assert "7 passed, 0 failed" in result.stdout, result.stdout


def _run_terraformrc(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "terraformrc.sh"), str(tmp_path / "rc")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def test_terraformrc_points_hashicorp_providers_at_the_named_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "registry.terraform.io" / "hashicorp").mkdir(parents=True)
    result = _run_terraformrc(tmp_path, SLUICE_TF_MIRROR=str(mirror))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"export TF_CLI_CONFIG_FILE={tmp_path / 'rc'}"
    config = (tmp_path / "rc").read_text()
    assert f'path    = "{mirror}"' in config
    assert config.count('"registry.terraform.io/hashicorp/*"') == 2  # include and exclude


def test_terraformrc_without_a_mirror_uses_the_registry(tmp_path: Path) -> None:
    result = _run_terraformrc(tmp_path, SLUICE_TF_MIRROR_CANDIDATES=str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "rc").read_text()
    assert "filesystem_mirror" not in config
    assert re.search(r"direct \{\}", config)


def test_terraformrc_rejects_a_named_mirror_that_does_not_exist(tmp_path: Path) -> None:
    result = _run_terraformrc(tmp_path, SLUICE_TF_MIRROR=str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "has no registry.terraform.io/hashicorp/" in result.stderr
    assert not (tmp_path / "rc").exists()


ENVIRONMENT_SETTINGS = ("bundle_expiration_days", "bundle_sweep_minutes")
"""Pipeline variables an environment's tfvars set through the root ``environments``."""


@pytest.mark.parametrize("name", ENVIRONMENT_SETTINGS)
def test_an_environment_can_set_the_bundle_lifetimes(name: str) -> None:
    """A pipeline variable the root does not thread through cannot be set from env/<env>.tfvars
    (Terraform rejects the attribute): the root declares it, passes it on, and every
    environment states its value."""
    import hcl2  # type: ignore[import-untyped]

    with (REPO_ROOT / "variables.tf").open(encoding="utf-8") as handle:
        root = hcl2.load(handle)
    [environments] = [
        block["environments"] for block in root["variable"] if "environments" in block
    ]
    assert f"{name}" in str(environments["type"])
    assert f"{name} = each.value.{name}" in re.sub(
        r"\s+", " ", (REPO_ROOT / "main.tf").read_text("utf-8")
    )
    for tfvars in sorted((REPO_ROOT / "env").glob("*.tfvars")):
        with tfvars.open(encoding="utf-8") as handle:
            document = hcl2.load(handle)
        defined = document["environments"]
        for environment, settings in (defined[0] if isinstance(defined, list) else defined).items():
            assert name in settings, f"{tfvars.name}: {environment} does not set {name}"
