"""deploy.sh: arguments, refusals, prerequisite checks and the command flow.

Terraform, the AWS CLI and the artifact build are replaced by small fakes on PATH that log
their arguments, so the flow is checked without AWS, network or a real build. Each test
runs a copy of deploy.sh with the repository's env/ files in a temporary directory, so the
plan files it writes never land in the working tree.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy.sh"
SYSTEM_PATH = "/usr/bin:/bin"  # coreutils and sed, but neither terraform nor aws


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Tools:
    root: Path  # the copy of the repository that deploy.sh runs in
    bin: Path
    log: Path
    env: dict[str, str]

    @property
    def deploy(self) -> Path:
        return self.root / "deploy.sh"

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def fake(self, name: str, body: str) -> None:
        script = self.bin / name
        script.write_text("#!/bin/bash\n" + textwrap.dedent(body))
        script.chmod(0o755)

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()


def _fake_terraform(version: str = "1.11.4", plan_exit: int = 2) -> str:
    return f"""\
        echo "terraform $*" >> "$FAKE_LOG"
        case "$1" in
          version) echo '{{"terraform_version": "{version}", "platform": "linux_amd64"}}' ;;
          plan)
            for arg in "$@"; do
              case "$arg" in
                -out=*) mkdir -p "$(dirname "${{arg#-out=}}")"; : > "${{arg#-out=}}" ;;
              esac
            done
            exit {plan_exit} ;;
          show) echo "Plan: 1 to add, 0 to change, 0 to destroy." ;;
        esac
        """


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(DEPLOY, root / "deploy.sh")
    shutil.copytree(REPO_ROOT / "env", root / "env")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    env = {
        "PATH": f"{fake_bin}:{SYSTEM_PATH}",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "SLUICE_PYTHON": str(fake_bin / "python3"),
        "TF_CLI_CONFIG_FILE": str(tmp_path / "terraformrc"),
    }
    t = Tools(root, fake_bin, tmp_path / "calls.log", env)
    t.fake("terraform", _fake_terraform())
    t.fake(
        "aws",
        """\
        echo "aws $*" >> "$FAKE_LOG"
        printf '123456789012\\tarn:aws:sts::123456789012:assumed-role/deployer/ci\\n'
        """,
    )
    # Stands in for the artifact build (and for boto3, which it does not have): writes one
    # small zip per artifact, so the checksums deploy.sh keeps are real.
    t.fake(
        "python3",
        """\
        echo "python3 $*" >> "$FAKE_LOG"
        [[ "$1" != -c ]] || exit 1
        if [[ "$1" == scripts/build_artifacts.py ]]; then
          mkdir -p build
          echo code > build/sluice-code.zip
          while [[ $# -gt 0 ]]; do
            [[ "$1" == --arch ]] && echo "layer $2" > "build/sluice-layer-$2.zip"
            shift
          done
        fi
        """,
    )
    return t


Run = Callable[..., Result]


@pytest.fixture
def deploy(tools: Tools) -> Run:
    def run(*args: str, stdin: int | None = subprocess.DEVNULL, **env: str) -> Result:
        proc = subprocess.run(
            [str(tools.deploy), *args],
            env={**tools.env, **env},
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def test_help_shows_usage(deploy: Run) -> None:
    result = deploy("--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    assert "./deploy.sh dev|prod [plan|apply|destroy]" in result.stdout
    assert "--allow-prod-destroy" in result.stdout


def test_no_arguments_is_a_usage_error(deploy: Run) -> None:
    result = deploy()
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_unknown_environment_is_refused(deploy: Run, tools: Tools) -> None:
    result = deploy("staging", "apply")
    assert result.returncode == 2
    assert "unknown environment 'staging'" in result.stderr
    assert tools.calls() == []


@pytest.mark.parametrize("args", [["dev", "upgrade"], ["dev", "plan", "--force"]])
def test_unknown_argument_is_refused(deploy: Run, args: list[str]) -> None:
    result = deploy(*args)
    assert result.returncode == 2
    assert "unknown argument" in result.stderr


def test_prod_destroy_without_flag_is_refused_before_anything_runs(
    deploy: Run, tools: Tools
) -> None:
    result = deploy("prod", "destroy", "--auto-approve")
    assert result.returncode == 4
    assert "refusing to destroy prod without --allow-prod-destroy" in result.stderr
    assert tools.calls() == []


def test_apply_without_terminal_or_auto_approve_is_refused(deploy: Run, tools: Tools) -> None:
    result = deploy("dev", "apply")
    assert result.returncode == 4
    assert "stdin is not a terminal" in result.stderr
    assert "--auto-approve" in result.stderr
    assert tools.calls() == []


def _commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_dry_run_apply_dev_prints_the_flow(deploy: Run, tools: Tools) -> None:
    result = deploy("dev", "apply", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert commands == [
        f"{tools.env['SLUICE_PYTHON']} scripts/build_artifacts.py --out build --arch arm64",
        "sha256sum build/*.zip > build/SHA256SUMS",
        "terraform init -reconfigure -input=false -backend-config=env/dev.backend.hcl",
        "terraform plan -input=false -detailed-exitcode -var-file=env/dev.tfvars "
        "-out=build/dev.tfplan",
        "terraform show -no-color build/dev.tfplan > build/dev.plan.txt",
        "terraform apply -input=false build/dev.tfplan",
    ]
    # Only the prerequisite checks ran for real.
    assert tools.calls() == [
        "terraform version -json",
        "aws sts get-caller-identity --region eu-west-1 --output text --query [Account,Arn]",
    ]
    assert "arn:aws:sts::123456789012:assumed-role/deployer/ci" in result.stderr
    assert "region eu-west-1 (env/dev.tfvars)" in result.stderr


def test_environment_variable_enables_dry_run(deploy: Run, tools: Tools) -> None:
    result = deploy("dev", "plan", SLUICE_DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    assert _commands(result.stdout)[-1].startswith("terraform show")
    assert not any(call.startswith(("terraform init", "terraform plan")) for call in tools.calls())


def test_prod_destroy_with_flag_plans_a_destroy(deploy: Run) -> None:
    result = deploy("prod", "destroy", "--allow-prod-destroy", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert "terraform init -reconfigure -input=false -backend-config=env/prod.backend.hcl" in (
        commands
    )
    assert (
        "terraform plan -destroy -input=false -detailed-exitcode -var-file=env/prod.tfvars "
        "-out=build/prod.tfplan" in commands
    )
    assert commands[-1] == "terraform apply -input=false build/prod.tfplan"
    assert "Type 'prod' to continue" in result.stderr


def test_missing_terraform_is_reported(deploy: Run, tools: Tools) -> None:
    tools.remove("terraform")
    result = deploy("dev", "plan", "--dry-run")
    assert result.returncode == 3
    assert "terraform not found on PATH: install Terraform >= 1.10.0" in result.stderr


def test_old_terraform_is_reported(deploy: Run, tools: Tools) -> None:
    tools.fake("terraform", _fake_terraform(version="1.9.8"))
    result = deploy("dev", "plan", "--dry-run")
    assert result.returncode == 3
    assert "Terraform 1.9.8 is too old: sluice needs >= 1.10.0" in result.stderr


def test_missing_credentials_are_reported(deploy: Run, tools: Tools) -> None:
    tools.fake(
        "aws",
        """\
        echo "Unable to locate credentials. You can configure credentials by running" \\
          '"aws configure".' >&2
        exit 253
        """,
    )
    result = deploy("dev", "plan", "--dry-run")
    assert result.returncode == 3
    assert "no valid AWS credentials for dev" in result.stderr
    assert "Unable to locate credentials" in result.stderr
    assert "+ " not in result.stdout  # nothing was about to run


def test_without_aws_cli_or_boto3_the_check_says_what_to_install(deploy: Run, tools: Tools) -> None:
    tools.remove("aws")
    result = deploy("dev", "plan", "--dry-run")
    assert result.returncode == 3
    assert "neither the AWS CLI nor Python's boto3 is available" in result.stderr


def test_region_comes_from_the_environment_when_tfvars_has_none(deploy: Run, tools: Tools) -> None:
    (tools.root / "env" / "dev.tfvars").write_text("environments = { dev = {} }\n")

    missing = deploy("dev", "plan", "--dry-run")
    assert missing.returncode == 3
    assert "no AWS region: set region in env/dev.tfvars or export AWS_REGION" in missing.stderr

    found = deploy("dev", "plan", "--dry-run", AWS_REGION="eu-central-1")
    assert found.returncode == 0, found.stderr
    assert "region eu-central-1 (AWS_REGION/AWS_DEFAULT_REGION)" in found.stderr
    # No architecture in the tfvars: build the layer for both, whichever the module picks.
    assert "--arch arm64 --arch x86_64" in found.stdout


def test_plan_without_changes_stops_before_apply(deploy: Run, tools: Tools) -> None:
    tools.fake("terraform", _fake_terraform(plan_exit=0))
    result = deploy("dev", "apply", "--auto-approve")
    assert result.returncode == 0, result.stderr
    assert "no changes in dev" in result.stderr
    assert "terraform show -no-color build/dev.tfplan" in tools.calls()  # for the summary
    assert not any(call.startswith("terraform apply") for call in tools.calls())


def test_failed_plan_fails_the_deploy(deploy: Run, tools: Tools) -> None:
    tools.fake("terraform", _fake_terraform(plan_exit=1))
    result = deploy("dev", "apply", "--auto-approve")
    assert result.returncode == 1
    assert "terraform plan failed for dev (exit 1)" in result.stderr
    assert not any(call.startswith("terraform apply") for call in tools.calls())


def test_auto_approved_apply_runs_the_saved_plan(deploy: Run, tools: Tools) -> None:
    result = deploy("dev", "apply", "--auto-approve")
    assert result.returncode == 0, result.stderr
    calls = tools.calls()
    assert calls[2:] == [
        "python3 scripts/build_artifacts.py --out build --arch arm64",
        "terraform init -reconfigure -input=false -backend-config=env/dev.backend.hcl",
        "terraform plan -input=false -detailed-exitcode -var-file=env/dev.tfvars "
        "-out=build/dev.tfplan",
        "terraform show -no-color build/dev.tfplan",
        "terraform apply -input=false build/dev.tfplan",
    ]
    assert (tools.root / "build" / "dev.plan.txt").read_text().startswith("Plan: 1 to add")


def _deploy_on_terminal(tools: Tools, answer: str, *args: str) -> int:
    """Run deploy.sh with a pseudo-terminal as stdin, answering its prompt with ``answer``."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        proc = subprocess.run(
            [str(tools.deploy), *args],
            env=tools.env,
            stdin=terminal,
            capture_output=True,
            timeout=60,
            check=False,
        )
        return proc.returncode
    finally:
        os.close(controller)
        os.close(terminal)


def test_interactive_apply_applies_only_when_confirmed(tools: Tools) -> None:
    assert _deploy_on_terminal(tools, "no", "dev", "apply") == 4
    assert not any(call.startswith("terraform apply") for call in tools.calls())

    assert _deploy_on_terminal(tools, "yes", "dev", "apply") == 0
    assert tools.calls()[-1] == "terraform apply -input=false build/dev.tfplan"


def test_interactive_prod_apply_wants_the_environment_name(tools: Tools) -> None:
    assert _deploy_on_terminal(tools, "yes", "prod", "apply") == 4
    assert _deploy_on_terminal(tools, "prod", "prod", "apply") == 0


def test_local_bootstraps_then_runs_sluice_up(deploy: Run, tools: Tools) -> None:
    result = deploy("local", "--dry-run", "--port", "4567")
    assert result.returncode == 0, result.stderr
    assert _commands(result.stdout) == [
        f"{tools.root}/scripts/bootstrap.sh",
        f"{tools.root}/.venv/bin/sluice up --port 4567",
    ]


# --- promotion: saved plans and prebuilt artifacts -----------------------------------------


def _terraform_calls(tools: Tools) -> list[str]:
    return [call for call in tools.calls() if call.startswith(("terraform", "python3"))][1:]


def test_a_build_writes_the_checksums_of_its_artifacts(deploy: Run, tools: Tools) -> None:
    assert deploy("dev", "plan").returncode == 0
    sums = (tools.root / "build" / "SHA256SUMS").read_text().splitlines()
    assert [line.split()[1] for line in sums] == ["sluice-code.zip", "sluice-layer-arm64.zip"]


def test_apply_plan_applies_the_saved_plan_without_building_or_planning(
    deploy: Run, tools: Tools
) -> None:
    assert deploy("dev", "plan").returncode == 0  # another job: build, plan, save
    before = len(tools.calls())
    result = deploy("dev", "apply-plan", "--auto-approve")
    assert result.returncode == 0, result.stderr
    assert "artifacts match build/SHA256SUMS" in result.stderr
    assert tools.calls()[before + 2 :] == [
        "terraform init -reconfigure -input=false -backend-config=env/dev.backend.hcl",
        "terraform show -no-color build/dev.tfplan",
        "terraform apply -input=false build/dev.tfplan",
    ]


def test_apply_plan_refuses_artifacts_that_changed_since_the_plan(
    deploy: Run, tools: Tools
) -> None:
    assert deploy("prod", "plan").returncode == 0
    (tools.root / "build" / "sluice-code.zip").write_text("something else")
    result = deploy("prod", "apply-plan", "--auto-approve")
    assert result.returncode == 1
    assert "differ from build/SHA256SUMS" in result.stderr
    assert not any(call.startswith("terraform apply") for call in tools.calls())


def test_apply_plan_without_a_saved_plan_is_a_missing_prerequisite(
    deploy: Run, tools: Tools
) -> None:
    assert deploy("dev", "plan").returncode == 0
    (tools.root / "build" / "dev.tfplan").unlink()
    result = deploy("dev", "apply-plan", "--auto-approve")
    assert result.returncode == 3
    assert "build/dev.tfplan not found" in result.stderr


def test_apply_plan_takes_no_plan_arguments(deploy: Run) -> None:
    result = deploy("dev", "apply-plan", "--auto-approve", "--", "-target=x")
    assert result.returncode == 2
    assert "takes no Terraform plan arguments" in result.stderr


def test_prebuilt_plans_with_the_promoted_artifacts_instead_of_building(
    deploy: Run, tools: Tools
) -> None:
    assert deploy("dev", "plan").returncode == 0  # dev built these
    before = len(tools.calls())
    result = deploy("prod", "plan", "--prebuilt")
    assert result.returncode == 0, result.stderr
    later = tools.calls()[before:]
    assert not any("build_artifacts.py" in call for call in later)
    assert (
        "terraform plan -input=false -detailed-exitcode -var-file=env/prod.tfvars "
        "-out=build/prod.tfplan" in later
    )


def test_prebuilt_without_checksums_is_a_missing_prerequisite(deploy: Run) -> None:
    result = deploy("dev", "plan", "--prebuilt")
    assert result.returncode == 3
    assert "build/SHA256SUMS not found" in result.stderr
