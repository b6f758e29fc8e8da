"""The ``up`` and ``down`` subcommands, for ``sluice`` (src/sluice/cli.py) to register."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sluice.arguments import seconds, whole_number
from sluice.local import awsenv
from sluice.local.stack.state import LOCAL_ENVIRONMENT
from sluice.local.stack.terraform import TFVARS as LOCAL_TFVARS
from sluice.local.stack.updown import (
    DEFAULT_TIMEOUT_SECONDS,
    EMULATORS,
    UpError,
    UpOptions,
    down,
    project_root,
    up,
)

_port = whole_number(1, 65535, what="a port number")
_seconds = seconds(zero=False)


def _root(args: argparse.Namespace) -> Path:
    """``--project-dir`` when the caller's parser has it (sluice's global option), else cwd."""
    given = getattr(args, "project_dir", None)
    return project_root(Path(given) if given else None)


def _run_up(args: argparse.Namespace) -> int:
    try:
        root = _root(args)
    except UpError as error:
        print(f"sluice up: {error}", file=sys.stderr)
        return 1
    options = UpOptions(
        port=args.port,
        samples=not args.no_samples,
        timeout=args.timeout,
        serve=args.serve,
        environment=getattr(args, "environment", LOCAL_ENVIRONMENT),
        var_files=tuple(args.var_file),
        api_port=args.api_port,
        web_port=args.web_port,
        emulator=args.emulator,
    )
    return up(options, root, state_dir=args.state_dir)


def _run_down(args: argparse.Namespace) -> int:
    try:
        root = _root(args)
    except UpError as error:
        print(f"sluice down: {error}", file=sys.stderr)
        return 1
    return down(root, state_dir=args.state_dir)


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the stack keeps pids, logs and outputs (default: .sluice/local); a second"
        " stack of the same checkout, e.g. the end-to-end tests', needs its own",
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``up`` and ``down``; each sets ``run`` to a handler returning an exit code."""
    # allow_abbrev=False: an option must be spelt out (see sluice.cli's docstring).
    up_parser = subparsers.add_parser(
        "up",
        allow_abbrev=False,
        help="run the whole pipeline locally (moto or LocalStack, Terraform, local runner)",
        description=(
            "Start a moto server (or LocalStack), build the artifacts, apply the root Terraform"
            " with env/local.tfvars against it, start the local runner, send samples/ through"
            " and print a summary. Idempotent: run it again after changing code."
        ),
    )
    up_parser.add_argument(
        "--port",
        type=_port,
        default=awsenv.DEFAULT_PORT,
        help="emulator port on 127.0.0.1 (default: %(default)s)",
    )
    up_parser.add_argument(
        "--api-port",
        type=_port,
        default=None,
        help="port of the local HTTP API on 127.0.0.1 (default: the emulator's port + 1)",
    )
    up_parser.add_argument(
        "--web-port",
        type=_port,
        default=None,
        help="port of the local web app on 127.0.0.1 (default: the emulator's port + 2)",
    )
    up_parser.add_argument(
        "--emulator",
        choices=EMULATORS,
        default=EMULATORS[0],
        help="what stands in for AWS: a moto server, or LocalStack as a host process (installed"
        " into .sluice/localstack on first use; docs/localstack.md) (default: %(default)s)",
    )
    up_parser.add_argument(
        "--no-samples",
        action="store_true",
        help="bring the stack up without sending samples/ through it",
    )
    up_parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for the samples to go through (default: %(default).0f)",
    )
    up_parser.add_argument(
        "--serve",
        action="store_true",
        help="after the summary, show the function logs and keep serving until Ctrl-C",
    )
    up_parser.add_argument(
        "--var-file",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help=f"extra Terraform variables applied after {LOCAL_TFVARS} (repeatable; later wins)",
    )
    up_parser.add_argument(
        "-e",
        "--environment",
        # SUPPRESS: `sluice -e NAME up` (the global option) is not overwritten by a default.
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="the environment of the variables' environments map to serve; another than"
        f" {LOCAL_ENVIRONMENT} keeps its Terraform state under its own key"
        f" (default: {LOCAL_ENVIRONMENT})",
    )
    _add_state_dir(up_parser)
    up_parser.set_defaults(run=_run_up)

    down_parser = subparsers.add_parser(
        "down",
        allow_abbrev=False,
        help="stop the local runner and the emulator that `sluice up` started",
        description="Stop the local runner, then the emulator (all local state goes with it).",
    )
    _add_state_dir(down_parser)
    down_parser.set_defaults(run=_run_down)
