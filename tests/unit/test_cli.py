"""The ``sluice`` command line without AWS: parsing, help, outputs resolution, exit codes."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sluice import __version__, workdir
from sluice.cli import build_parser, main
from sluice.local import __main__ as local_main
from sluice.ops.environment import (
    LOCAL_ENDPOINT_URL,
    OutputsNotFoundError,
    connection_for,
    find_project_dir,
    resolve_environment,
    running_stack_endpoint,
    terraform_error,
)
from tests.cli_output import documented_keys

SUBCOMMANDS = ("up", "down", "status", "audit", "redrive", "bundle", "upload")
REPORTING = ("status", "audit", "redrive", "bundle", "upload")
"""The subcommands that print a report, and so take --output."""
REPOSITORY = Path(__file__).resolve().parents[2]


def env_outputs(raw: str = "raw-bucket") -> dict[str, Any]:
    return {
        "raw_bucket_name": raw,
        "processed_bucket_name": "processed-bucket",
        "archive_bucket_name": "archive-bucket",
        "work_bucket_name": "work-bucket",
        "queue_urls": {f: f"https://sqs.eu-west-1.amazonaws.com/1/{f}" for f in ("transform",)},
        "bucket_functions": {
            raw: "transform",
            "processed-bucket": "archive",
            "archive-bucket": "tag",
            "work-bucket": "bundle",
        },
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
    assert args.endpoint_url is None and args.outputs_file is None and args.receipts is True
    assert args.profile is None


# --- no abbreviations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--no-rec"],
        ["--env", "dev", "status"],
        ["status", "--prof", "dev"],
        ["status", "--outputs-f", "o.json"],
        ["status", "--out", "json"],
        ["redrive", "--dry"],
        ["bundle", "Dog", "--mat", "all"],
        ["audit", "--wa", "5"],
        ["up", "--no-samp"],
        ["down", "--state", "x"],
    ],
)
def test_abbreviated_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2  # not read as --no-receipts, --environment, --profile, ...
    assert "usage: sluice" in capsys.readouterr().err


def test_the_local_stack_entry_point_rejects_abbreviations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        local_main.main(["up", "--no-samp"])

    assert exited.value.code == 2
    assert "unrecognized arguments: --no-samp" in capsys.readouterr().err


def test_output_json_is_not_read_as_the_outputs_file() -> None:
    args = build_parser().parse_args(["status", "--output", "json"])

    assert args.output == "json"
    assert args.outputs_file is None


def _parser_calls(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("ArgumentParser", "add_parser")
        ):
            calls.append(node)
    return calls


def test_every_parser_in_the_repository_refuses_abbreviations() -> None:
    sources = [
        path
        for folder in ("src", "scripts", "bench")
        for path in sorted((REPOSITORY / folder).rglob("*.py"))
    ]
    checked, allowing = 0, []
    for path in sources:
        for call in _parser_calls(path):
            checked += 1
            flags = [k.value for k in call.keywords if k.arg == "allow_abbrev"]
            refuses = [f for f in flags if isinstance(f, ast.Constant) and f.value is False]
            if not refuses:
                allowing.append(f"{path.relative_to(REPOSITORY)}:{call.lineno}")

    assert checked >= 10  # cli (2), local (3), runner, scripts (3), bench (3)
    assert allowing == []


# --- --output --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--output", "json", "status"],
        ["status", "--output", "json"],
        ["status", "--json"],  # the older spelling
    ],
)
def test_output_goes_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)

    assert args.output == "json"


def test_outputs_file_keeps_its_old_spelling() -> None:
    args = build_parser().parse_args(["status", "--outputs", "o.json"])

    assert args.outputs_file == Path("o.json")


@pytest.mark.parametrize("command", REPORTING)
def test_every_reporting_command_documents_output_and_profile(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])

    out = capsys.readouterr().out
    assert "--output {table,json}" in out
    assert "--profile NAME" in out
    assert "--outputs-file FILE" in out
    assert "--json" not in out and "--outputs " not in out  # old spellings stay hidden


@pytest.mark.parametrize("argv", [["--output", "json", "up"], ["--output", "table", "down"]])
def test_output_on_a_command_without_a_report_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert "prints no report to format" in capsys.readouterr().err


def test_unknown_output_format_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "--output", "yaml"])

    assert exited.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


def test_the_json_contract_documents_every_reporting_command() -> None:
    keys = documented_keys()

    assert set(REPORTING) <= set(keys)
    assert {"queue", "ledger", "finding", "move", "upload failure"} <= set(keys)
    assert keys["status"] >= {"environment", "queues", "dead_letters", "receipts"}
    assert all(keys.values())


# --- --profile -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--profile", "ops", "audit"], ["audit", "--profile", "ops"]])
def test_profile_goes_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).profile == "ops"


def test_the_profile_is_part_of_the_connection() -> None:
    chosen = connection_for(
        "prod", region=None, endpoint_url=None, outputs_region=None, profile="ops", env={}
    )
    unset = connection_for("prod", region=None, endpoint_url=None, outputs_region=None, env={})

    assert chosen.profile == "ops"
    assert unset.profile is None  # boto3 then reads AWS_PROFILE itself


# --- outputs resolution --------------------------------------------------------------


def test_outputs_flag_wins_over_the_cached_file(tmp_path: Path, no_terraform: None) -> None:
    flag = write(tmp_path / "flag.json", {"dev": env_outputs("from-flag")})
    write(workdir.outputs_path(tmp_path, "dev"), {"dev": env_outputs("from-cache")})

    environment = resolve_environment("dev", outputs_file=flag, project_dir=tmp_path)

    assert environment.raw_bucket == "from-flag"
    assert environment.source == str(flag)


def test_cached_file_wins_over_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir.outputs_path(tmp_path, "local"), {"local": env_outputs("from-cache")})
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
    assert "./deploy.sh prod apply" in message and "--outputs-file" in message


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
    assert "run ./deploy.sh dev apply, or pass --outputs-file" in str(error.value)


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
    workdir.root(tmp_path).mkdir()
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
    write(workdir.stack_path(tmp_path, "local"), {"endpoint_url": "http://127.0.0.1:4599"})
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
    code = main(["status", "--outputs-file", str(tmp_path / "missing.json"), "--output", "json"])

    assert code == 3
    captured = capsys.readouterr()
    assert "cannot read outputs file" in captured.err
    assert captured.out == ""  # no half a document for a script to parse


def test_environment_not_in_outputs_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = write(tmp_path / "o.json", {"dev": env_outputs()})

    assert main(["audit", "-e", "staging", "--outputs-file", str(outputs)]) == 3
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
            "--outputs-file",
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

    code = main(["-e", "prod", "--outputs-file", str(outputs), "status", "--no-receipts"])

    assert code == 4
    assert "no usable AWS credentials" in capsys.readouterr().err


def test_up_and_down_are_registered() -> None:
    args = build_parser().parse_args(["up"])

    assert args.command == "up" and callable(args.run)


def test_unknown_profile_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    outputs = write(tmp_path / "o.json", {"prod": env_outputs()})

    code = main(
        [
            "-e",
            "prod",
            "--outputs-file",
            str(outputs),
            "--profile",
            "nope",
            "status",
            "--output",
            "json",
        ]
    )

    assert code == 4
    captured = capsys.readouterr()
    assert "(nope) could not be found" in captured.err and "--profile" in captured.err
    assert captured.out == ""


def test_login_where_sign_in_is_not_deployed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An environment with auth.enabled false (LocalStack) has null sign-in outputs."""
    outputs = tmp_path / "outputs.json"
    names = {
        "raw_bucket_name": "raw",
        "processed_bucket_name": "processed",
        "archive_bucket_name": "archive",
        "work_bucket_name": "work",
        "queue_urls": {"transform": "http://q"},
        "dead_letter_queue_url": "http://dlq",
        "user_pool_id": None,
        "cli_client_id": None,
        "api_url": None,
    }
    outputs.write_text(json.dumps({"local": names}))
    code = main(
        ["login", "--environment", "local", "--outputs-file", str(outputs), "--username", "a"]
    )
    assert code == 2
    assert "sign-in is not deployed in environment 'local'" in capsys.readouterr().err
