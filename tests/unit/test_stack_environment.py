"""``sluice up --var-file FILE --environment NAME``: another environment on the local stack."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest

from sluice import cli
from sluice.local.stack import commands
from sluice.local.stack.state import StateDir
from sluice.local.stack.terraform import TFVARS, Terraform, TerraformError
from sluice.local.stack.updown import UpOptions, state_key_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[UpOptions]:
    seen: list[UpOptions] = []

    def fake_up(options: UpOptions, root: Path, **_: Any) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(commands, "up", fake_up)
    monkeypatch.chdir(ROOT)
    return seen


def _local_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sluice.local")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_by_default_up_applies_the_local_environment_alone(captured: list[UpOptions]) -> None:
    args = _local_parser().parse_args(["up", "--no-samples"])
    assert args.run(args) == 0
    assert (captured[0].environment, captured[0].var_files) == ("local", ())


def test_extra_variable_files_and_the_environment_reach_up(captured: list[UpOptions]) -> None:
    args = _local_parser().parse_args(
        ["up", "--var-file", "a.tfvars", "--var-file", "b.tfvars", "--environment", "chaos"]
    )
    assert args.run(args) == 0
    assert captured[0].environment == "chaos"
    assert captured[0].var_files == (Path("a.tfvars"), Path("b.tfvars"))


@pytest.mark.parametrize(
    "argv", [["-e", "chaos", "up"], ["up", "-e", "chaos"], ["up", "--environment", "chaos"]]
)
def test_the_sluice_commands_global_environment_option_selects_it(
    captured: list[UpOptions], argv: list[str]
) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.run(args) == 0
    assert captured[0].environment == "chaos"


def test_another_environment_keeps_its_state_under_its_own_key() -> None:
    assert state_key_for("local") is None  # the backend file's key, as before
    assert state_key_for("chaos") == "sluice/chaos/terraform.tfstate"


def test_terraform_gets_the_key_and_the_variable_files_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[list[str]] = []

    def fake_run(self: Terraform, args: list[str], **_: Any) -> str:
        runs.append(list(args))
        return ""

    monkeypatch.setattr(Terraform, "run", fake_run)
    terraform = Terraform(StateDir(ROOT, tmp_path), "http://127.0.0.1:4599", io.StringIO())
    terraform.init(state_key="sluice/chaos/terraform.tfstate")
    terraform.init()
    terraform.apply(extra_var_files=[Path("/x/chaos.tfvars")])
    assert "-backend-config=key=sluice/chaos/terraform.tfstate" in runs[0]
    assert not any(arg.startswith("-backend-config=key=") for arg in runs[1])
    files = [arg for arg in runs[2] if arg.startswith("-var-file=")]
    assert files == [f"-var-file={TFVARS}", "-var-file=/x/chaos.tfvars"]


def test_a_failed_apply_is_applied_again_once_and_a_second_failure_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator can make a resource whose answer the provider did not wait for (its
    retry then meets the first): one more apply creates what the state lacks. Never more
    than one, so a real failure still fails, with its message."""
    outcomes: list[str | None] = []
    runs: list[list[str]] = []

    def fake_run(self: Terraform, args: list[str], **_: Any) -> str:
        runs.append(list(args))
        failure = outcomes.pop(0)
        if failure:
            raise TerraformError(f"terraform apply failed: {failure}\n  full output: x")
        return ""

    monkeypatch.setattr(Terraform, "run", fake_run)
    out = io.StringIO()
    terraform = Terraform(StateDir(ROOT, tmp_path), "http://127.0.0.1:4599", out)

    outcomes[:] = ["Error: DistributionAlreadyExists", None]
    terraform.apply()
    assert len(runs) == 2 and runs[0] == runs[1]
    assert "DistributionAlreadyExists" in out.getvalue()
    assert "applying again, once" in out.getvalue()

    runs.clear()
    outcomes[:] = ["Error: invalid value", "Error: invalid value"]
    with pytest.raises(TerraformError, match="invalid value"):
        terraform.apply()
    assert len(runs) == 2
