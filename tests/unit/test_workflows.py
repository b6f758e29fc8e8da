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


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_reports_nothing(persona: str) -> None:
    # Offline: the audits that ask GitHub (impostor commits, stale refs) need the network.
    result = _run(
        _tool("zizmor"), "--offline", f"--persona={persona}", "--format", "json", ".github"
    )
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


SELF_REFERENCE = re.compile(r"^\$/\.github/workflows/[\w.-]+\.ya?ml$")
"""``$/...``: this repository at the running commit (GitHub's self-repository syntax)."""


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_every_action_is_pinned_by_commit_sha_with_its_version(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for ref, comment in uses:
        if SELF_REFERENCE.match(ref):
            continue
        assert PINNED.match(ref), f"{name}: {ref} is not pinned to a full commit SHA"
        assert re.match(r"\s+# v\d+\.\d+\.\d+$", comment), f"{name}: {ref} has no # vX.Y.Z"


def _assumes_a_role(job: dict[str, Any]) -> bool:
    """True when the job, or the workflow it calls, assumes an AWS role by OIDC."""
    called = job.get("uses", "")
    if called:
        jobs = _load(Path(called).name)["jobs"].values()
        return any(_assumes_a_role(inner) for inner in jobs)
    return any(
        step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
        for step in _steps(job)
    )


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_tokens_have_least_privilege(name: str) -> None:
    workflow = _load(name)
    assert workflow["permissions"] == {}
    for job_name, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{job_name} sets no permissions of its own"
        # A token for OIDC only where the job assumes a role; nothing else is writable.
        expected = (
            {"contents": "read", "id-token": "write"}
            if _assumes_a_role(job)
            else {"contents": "read"}
        )
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


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in _steps(job) if "run" in step]


def _downloads(job: dict[str, Any]) -> list[str]:
    return [
        step["with"]["name"]
        for step in _steps(job)
        if step.get("uses", "").startswith("actions/download-artifact@")
    ]


def _uploads(job: dict[str, Any]) -> list[str]:
    return [
        step["with"]["name"]
        for step in _steps(job)
        if step.get("uses", "").startswith("actions/upload-artifact@")
    ]


def test_pull_requests_get_a_plan_of_every_environment_in_the_summary() -> None:
    deploy = _load("deploy.yml")
    assert set(deploy[True]) == {"pull_request", "workflow_call"}  # YAML 1.1: `on` is True
    plan = deploy["jobs"]["plan"]
    assert "pull_request" in plan["if"]
    assert plan["strategy"]["matrix"]["environment"] == ["dev", "prod"]
    runs = _runs(plan)
    assert any("deploy.sh" in run and " plan" in run for run in runs)
    assert any("GITHUB_STEP_SUMMARY" in run for run in runs)


def test_deploys_only_what_passed_every_check_on_main() -> None:
    ci = _load("ci.yml")
    deploy = ci["jobs"]["deploy"]
    assert deploy["uses"] == "$/.github/workflows/deploy.yml"
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]
    others = set(ci["jobs"]) - {"deploy"}
    assert set(deploy["needs"]) == others  # every check, on this very commit


def test_the_artifacts_are_built_once_and_promoted_from_dev_to_prod() -> None:
    jobs = _load("deploy.yml")["jobs"]
    builders = [
        name for name, job in jobs.items() if any("build_artifacts.py" in r for r in _runs(job))
    ]
    assert builders == ["build"]
    assert _uploads(jobs["build"]) == ["artifacts"]
    assert any("SHA256SUMS" in run for run in _runs(jobs["build"]))
    # dev and prod plan and apply the same artifact, and deploy.sh checks it by SHA-256.
    for name in ("plan-dev", "apply-dev", "plan-prod", "apply-prod"):
        assert "artifacts" in _downloads(jobs[name]), name
    assert jobs["plan-dev"]["needs"] == "build"
    assert jobs["plan-prod"]["needs"] == "apply-dev"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_apply_consumes_the_saved_plan_and_never_plans_itself(env: str) -> None:
    jobs = _load("deploy.yml")["jobs"]
    plan, apply = jobs[f"plan-{env}"], jobs[f"apply-{env}"]
    assert f"./deploy.sh {env} plan --prebuilt -- -lock=false" in _runs(plan)
    assert _uploads(plan) == [f"plan-{env}"]
    assert any("GITHUB_STEP_SUMMARY" in run for run in _runs(plan))  # what the reviewer sees

    assert apply["needs"] == f"plan-{env}"
    assert apply["environment"] == env  # prod's required reviewers hold this job
    assert _downloads(apply) == ["artifacts", f"plan-{env}"]
    assert _runs(apply) == [f"./deploy.sh {env} apply-plan --auto-approve"]
    for run in _runs(apply):
        assert " plan" not in run.replace("apply-plan", "")
        assert "build_artifacts" not in run
    for job in (plan, apply):
        assert job["concurrency"] == {"group": f"deploy-{env}", "cancel-in-progress": False}


def test_ci_runs_every_check_and_the_e2e_suite() -> None:
    ci = _load("ci.yml")
    assert set(ci[True]) == {"pull_request", "push"}
    runs = "\n".join(run for job in ci["jobs"].values() for run in _runs(job))
    for command in (
        "./scripts/bootstrap.sh",
        "ruff check",
        "ruff format --check",
        "mypy",
        "./scripts/test.sh tests/unit",  # with terraform fmt/validate, checkov, the linters
        "./scripts/test.sh tests/integration",
        "./scripts/test.sh -m e2e tests/e2e",
    ):
        assert command in runs, command
    e2e = ci["jobs"]["e2e"]
    # The same suite on both emulators, as .ci/run runs it (docs/localstack.md).
    assert e2e["strategy"]["matrix"]["emulator"] == ["moto", "localstack"]
    assert e2e["env"]["SLUICE_E2E_TARGET"] == "${{ matrix.emulator }}"
    assert "services" not in e2e  # LocalStack runs as a host process, as on a laptop
    # What LocalStack's own environment and DynamoDB Local need on the runner.
    setup = {step.get("uses", "").split("@")[0]: step for step in _steps(e2e)}
    assert "3.13" in str(setup["actions/setup-python"]["with"]["python-version"]).split()
    for tool in ("actions/setup-java", "actions/setup-node"):
        assert setup[tool]["if"] == "matrix.emulator == 'localstack'", tool


def test_ci_run_runs_the_e2e_suite_on_both_emulators_the_localstack_one_within_a_budget() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(commands)
    assert "./scripts/test.sh\n" in text  # the README's command: moto, chaos included
    assert "SLUICE_E2E_TARGET=localstack timeout --signal=INT" in text
    assert "./scripts/test.sh -m e2e tests/e2e" in text
    readme = (REPO_ROOT / "README.md").read_text()
    budget = re.search(r"^LOCALSTACK_BUDGET=(\d+)m", script, re.M)
    assert budget, "the LocalStack step states its budget"
    assert f"{budget.group(1)} minutes" in readme, "README states the LocalStack step's budget"


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_no_expression_is_expanded_inside_a_run_script(name: str) -> None:
    # Expressions reach scripts through env: only, so no value can become shell code.
    for job in _load(name)["jobs"].values():
        for step in _steps(job):
            assert "${{" not in step.get("run", ""), step.get("name")
