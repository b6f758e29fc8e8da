"""The ``sluice`` command line without AWS: parsing, help, outputs resolution, exit codes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sluice import __version__
from sluice.cli import build_parser, main
from sluice.ops.environment import (
    LOCAL_ENDPOINT_URL,
    OutputsNotFoundError,
    connection_for,
    find_project_dir,
    resolve_environment,
    running_stack_endpoint,
    terraform_error,
)

SUBCOMMANDS = ("up", "down", "status", "audit", "redrive", "bundle", "upload")


def env_outputs(raw: str = "raw-bucket") -> dict[str, Any]:
    return {
        "raw_bucket_name": raw,
        "processed_bucket_name": "processed-bucket",
        "archive_bucket_name": "archive-bucket",
        "work_bucket_name": "work-bucket",
        "queue_urls": {f: f"https://sqs.eu-west-1.amazonaws.com/1/{f}" for f in ("transform",)},
        "dead_letter_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/dlq",
        "dead_letter_queue_arn": "arn:aws:sqs:eu-west-1:1:dlq",
        "region": "eu-west-1",
    }


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def no_terraform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def fake_terraform(directory: Path, stdout: str, *, exit_code: int = 0, stderr: str = "") -> None:
    """A ``terraform`` on PATH that prints what it is told and records its arguments."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stdout").write_text(stdout, encoding="utf-8")
    (directory / "stderr").write_text(stderr, encoding="utf-8")
    script = directory / "terraform"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$PWD $@" > "{directory}/called"\n'
        f'cat "{directory}/stdout"\n'
        f'cat "{directory}/stderr" >&2\n'
        f"exit {exit_code}\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


# --- parsing and help ----------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])

    assert exited.value.code == 0
    assert f"usage: sluice {command}" in capsys.readouterr().out


def test_top_level_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out
    assert "exit codes:" in out and "4  AWS or the emulator unreachable" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sluice {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["redrive", "--max", "0"],
        ["redrive", "--max", "many"],
        ["redrive", "--method", "teleport"],
        ["bundle"],
        ["bundle", "Dog", "--match", "some"],
        ["audit", "--wait", "-1"],
        ["upload"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert "usage: sluice" in capsys.readouterr().err


def test_max_with_the_move_task_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redrive", "--method", "message-move-task", "--max", "3"]) == 2
    assert "--max needs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["-e", "dev", "--region", "eu-west-1", "status"],
        ["status", "-e", "dev", "--region", "eu-west-1"],
    ],
)
def test_global_options_go_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)

    assert (args.environment, args.region, args.command) == ("dev", "eu-west-1", "status")


def test_defaults() -> None:
    args = build_parser().parse_args(["status"])

    assert args.environment == "local"
    assert args.endpoint_url is None and args.outputs is None and args.receipts is True


# --- outputs resolution --------------------------------------------------------------


def test_outputs_flag_wins_over_the_cached_file(tmp_path: Path, no_terraform: None) -> None:
    flag = write(tmp_path / "flag.json", {"dev": env_outputs("from-flag")})
    write(tmp_path / ".sluice/dev/outputs.json", {"dev": env_outputs("from-cache")})

    environment = resolve_environment("dev", outputs_file=flag, project_dir=tmp_path)

    assert environment.raw_bucket == "from-flag"
    assert environment.source == str(flag)


def test_cached_file_wins_over_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / ".sluice/local/outputs.json", {"local": env_outputs("from-cache")})
    fake_terraform(tmp_path / "bin", json.dumps({"local": env_outputs("from-terraform")}))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    environment = resolve_environment("local", outputs_file=None, project_dir=tmp_path)

    assert environment.raw_bucket == "from-cache"
    assert not (tmp_path / "bin" / "called").exists()


def test_terraform_outputs_are_read_in_the_project_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_terraform(tmp_path / "bin", json.dumps({"dev": env_outputs("from-terraform")}))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    environment = resolve_environment("dev", outputs_file=None, project_dir=tmp_path)

    assert environment.raw_bucket == "from-terraform"
    assert environment.queue_for_bucket == {"from-terraform": environment.queue_urls["transform"]}
    called = (tmp_path / "bin" / "called").read_text(encoding="utf-8").split()
    assert called == [str(tmp_path), "output", "-no-color", "-json", "environments"]


def test_terraform_state_of_another_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_terraform(tmp_path / "bin", json.dumps({"dev": env_outputs()}))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(OutputsNotFoundError) as error:
        resolve_environment("prod", outputs_file=None, project_dir=tmp_path)

    message = str(error.value)
    assert "no outputs for environment 'prod'" in message and "(it has: dev)" in message
    assert "./deploy.sh prod apply" in message and "--outputs" in message


def test_terraform_failure_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = '╷\n│ Error: Backend initialization required\n│\n│ Run "terraform init".\n╵\n'
    fake_terraform(tmp_path / "bin", "", exit_code=1, stderr=stderr)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(OutputsNotFoundError) as error:
        resolve_environment("dev", outputs_file=None, project_dir=tmp_path)

    assert "Error: Backend initialization required" in str(error.value)
    assert "./deploy.sh dev apply" in str(error.value)


def test_no_outputs_anywhere(tmp_path: Path, no_terraform: None) -> None:
    with pytest.raises(OutputsNotFoundError) as error:
        resolve_environment("dev", outputs_file=None, project_dir=tmp_path)

    assert "terraform is not on PATH" in str(error.value)
    assert "run ./deploy.sh dev apply, or pass --outputs" in str(error.value)


@pytest.mark.parametrize(
    "document",
    [
        {"dev": env_outputs()},
        {"environments": {"sensitive": False, "type": [], "value": {"dev": env_outputs()}}},
        env_outputs(),
    ],
    ids=["environments-map", "whole-terraform-output", "single-environment"],
)
def test_accepted_outputs_shapes(tmp_path: Path, document: dict[str, Any]) -> None:
    path = write(tmp_path / "o.json", document)

    environment = resolve_environment("dev", outputs_file=path, project_dir=tmp_path)

    assert environment.name == "dev"
    assert environment.raw_bucket == "raw-bucket"
    assert environment.region == "eu-west-1"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "is not a JSON object"),
        (json.dumps({"dev": {**env_outputs(), "raw_bucket_name": ""}}), "no 'raw_bucket_name'"),
    ],
)
def test_bad_outputs_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "o.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(OutputsNotFoundError, match=expected):
        resolve_environment("dev", outputs_file=path, project_dir=tmp_path)


def test_project_dir_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / ".sluice").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)

    assert find_project_dir(tmp_path / "a" / "b") == tmp_path


def test_terraform_error_prefers_the_error_line() -> None:
    stderr = "Warning: Unable to open CLI configuration file\n│ Error: No state\n"
    assert terraform_error(stderr) == "Error: No state"
    assert terraform_error("") == "no error output"


# --- connection ----------------------------------------------------------------------


def test_local_defaults_to_the_emulator() -> None:
    connection = connection_for(
        "local", region=None, endpoint_url=None, outputs_region=None, env={}
    )

    assert connection.endpoint_url == LOCAL_ENDPOINT_URL
    assert connection.region == "us-east-1"


def test_local_endpoint_comes_from_the_running_stack(tmp_path: Path) -> None:
    write(tmp_path / ".sluice/local/stack.json", {"endpoint_url": "http://127.0.0.1:4599"})
    recorded = running_stack_endpoint(tmp_path, "local")

    connection = connection_for(
        "local",
        region=None,
        endpoint_url=None,
        outputs_region=None,
        stack_endpoint=recorded,
        env={},
    )

    assert connection.endpoint_url == "http://127.0.0.1:4599"
    assert running_stack_endpoint(tmp_path, "dev") is None


def test_endpoint_flag_then_environment_variable() -> None:
    env = {"AWS_ENDPOINT_URL": "http://emulator:5000", "AWS_REGION": "us-west-2"}

    from_env = connection_for("local", region=None, endpoint_url=None, outputs_region=None, env=env)
    from_flag = connection_for(
        "local", region=None, endpoint_url="http://flag:1", outputs_region=None, env=env
    )

    assert from_env.endpoint_url == "http://emulator:5000"
    assert from_flag.endpoint_url == "http://flag:1"


def test_a_real_environment_has_no_endpoint_and_takes_the_outputs_region() -> None:
    connection = connection_for(
        "prod",
        region=None,
        endpoint_url=None,
        outputs_region="eu-west-1",
        env={"AWS_REGION": "us-west-2"},
    )

    assert connection.endpoint_url is None
    assert connection.region == "eu-west-1"
    flagged = connection_for(
        "prod", region="ap-south-1", endpoint_url=None, outputs_region="eu-west-1", env={}
    )
    assert flagged.region == "ap-south-1"


# --- exit codes ----------------------------------------------------------------------


def test_missing_outputs_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "--outputs", str(tmp_path / "missing.json")])

    assert code == 3
    assert "cannot read outputs file" in capsys.readouterr().err


def test_environment_not_in_outputs_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = write(tmp_path / "o.json", {"dev": env_outputs()})

    assert main(["audit", "-e", "staging", "--outputs", str(outputs)]) == 3
    assert "run ./deploy.sh staging apply" in capsys.readouterr().err


def test_unreachable_local_stack_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = write(tmp_path / "o.json", {"local": env_outputs()})

    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    code = main(
        [
            "status",
            "--no-receipts",
            "--outputs",
            str(outputs),
            "--endpoint-url",
            "http://127.0.0.1:9",
        ]
    )

    assert code == 4
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9: is the local stack up? run ./deploy.sh local" in err


def test_missing_credentials_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    outputs = write(tmp_path / "o.json", {"prod": env_outputs()})

    code = main(["-e", "prod", "--outputs", str(outputs), "status", "--no-receipts"])

    assert code == 4
    assert "no usable AWS credentials" in capsys.readouterr().err


def test_up_and_down_are_registered() -> None:
    args = build_parser().parse_args(["up"])

    assert args.command == "up" and callable(args.run)
