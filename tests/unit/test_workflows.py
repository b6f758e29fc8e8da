"""Lint the delivery code: GitHub workflows (actionlint, zizmor) and shell scripts (shellcheck).

The linters come from the dev extras. On top of them, the repository's own rules for the
workflows are checked here: actions pinned by commit SHA, least-privilege tokens, OIDC
only where AWS is reached, one deployment per environment at a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
VENV_BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]' provides it")
    return path


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert [f.name for f in files] == ["ci.yml", "deploy.yml"]
    return files


def _load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps", [])
    assert isinstance(steps, list)
    return steps


# --- the linters -------------------------------------------------------------------------


def test_actionlint_reports_nothing() -> None:
    # With shellcheck given, actionlint also checks the scripts of every `run:` step.
    files = [str(f) for f in _workflow_files()]
    result = _run(_tool("actionlint"), f"-shellcheck={_tool('shellcheck')}", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_zizmor_reports_nothing() -> None:
    # Offline: the audits that ask GitHub (impostor commits, stale refs) need the network.
    # The default persona; the pedantic one adds one finding, documented in docs/deploy.md
    # (the LocalStack service image is pinned by tag, not digest).
    result = _run(_tool("zizmor"), "--offline", "--format", "json", ".github")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def _shell_scripts() -> list[str]:
    """Every shell script in the repository, committed or new (ignored files excluded)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.sh"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    scripts = sorted(set(listed.stdout.split()))
    assert "deploy.sh" in scripts
    return scripts


@pytest.mark.parametrize("script", _shell_scripts())
def test_shellcheck_reports_nothing(script: str) -> None:
    result = _run(_tool("shellcheck"), "--external-sources", script)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the repository's own rules ----------------------------------------------------------


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_every_action_is_pinned_by_commit_sha_with_its_version(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for ref, comment in uses:
        assert PINNED.match(ref), f"{name}: {ref} is not pinned to a full commit SHA"
        assert re.match(r"\s+# v\d+\.\d+\.\d+$", comment), f"{name}: {ref} has no # vX.Y.Z"


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_tokens_have_least_privilege(name: str) -> None:
    workflow = _load(name)
    assert workflow["permissions"] == {}
    for job_name, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{job_name} sets no permissions of its own"
        assert permissions.get("contents") == "read", job_name
        uses_aws = any(
            step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
            for step in _steps(job)
        )
        # A token for OIDC only where the job assumes a role; nothing else is writable.
        expected = {"contents": "read", "id-token": "write"} if uses_aws else {"contents": "read"}
        assert permissions == expected, job_name
        for step in _steps(job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, job_name


def test_aws_access_is_oidc_only() -> None:
    for path in _workflow_files():
        text = path.read_text()
        assert "aws-access-key-id" not in text, path.name
        assert "AWS_SECRET_ACCESS_KEY: ${{" not in text, path.name
    deploy = _load("deploy.yml")
    for job in deploy["jobs"].values():
        for step in _steps(job):
            if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
                assert step["with"]["role-to-assume"].startswith("${{ vars.")


def test_deploy_plans_pull_requests_and_applies_dev_then_prod() -> None:
    deploy = _load("deploy.yml")
    triggers = deploy[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"pull_request", "push"}
    jobs = deploy["jobs"]

    plan = jobs["plan"]
    assert "pull_request" in plan["if"]
    assert plan["strategy"]["matrix"]["environment"] == ["dev", "prod"]
    plan_steps = _steps(plan)
    assert any("deploy.sh" in s.get("run", "") and " plan" in s["run"] for s in plan_steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in plan_steps)
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") for s in plan_steps)

    dev, prod = jobs["apply-dev"], jobs["apply-prod"]
    assert "refs/heads/main" in dev["if"]
    assert dev["environment"] == "dev"
    assert prod["environment"] == "prod"  # required reviewers live on this environment
    assert prod["needs"] == "apply-dev"
    for job, env in ((dev, "dev"), (prod, "prod")):
        assert job["concurrency"] == {"group": f"deploy-{env}", "cancel-in-progress": False}
        assert f"./deploy.sh {env} apply --auto-approve" in [s.get("run") for s in _steps(job)]


def test_ci_runs_every_check_and_the_localstack_suite() -> None:
    ci = _load("ci.yml")
    assert set(ci[True]) == {"pull_request", "push"}
    runs = "\n".join(step.get("run", "") for job in ci["jobs"].values() for step in _steps(job))
    for command in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "pytest tests/unit",
        "pytest tests/integration",
        "terraform fmt -check",
        "terraform validate",
        "checkov",
        "pytest -m e2e tests/e2e",
    ):
        assert command in runs, command

    e2e = ci["jobs"]["e2e-localstack"]
    localstack = e2e["services"]["localstack"]
    assert localstack["image"].startswith("localstack/localstack:")
    assert "4566:4566" in localstack["ports"]
    # LocalStack runs the functions in containers of their own: it needs the Docker engine.
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"]
    assert e2e["env"]["SLUICE_E2E_TARGET"] == "localstack"
    assert e2e["env"]["AWS_ENDPOINT_URL"] == "http://localhost:4566"


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_no_expression_is_expanded_inside_a_run_script(name: str) -> None:
    # Expressions reach scripts through env: only, so no value can become shell code.
    for job in _load(name)["jobs"].values():
        for step in _steps(job):
            assert "${{" not in step.get("run", ""), step.get("name")
