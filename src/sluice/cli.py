"""The ``sluice`` command: run and inspect a sluice environment.

Subcommands: ``up``/``down`` (the local stack, from ``sluice.local.commands``),
``status``, ``audit``, ``redrive``, ``bundle`` and ``upload``. Every subcommand takes
``--help``. The global options (``--environment``, ``--region``, ``--endpoint-url``,
``--outputs``, ``--project-dir``) may come before or after the subcommand.

Resource names come from the Terraform outputs (see :mod:`sluice.ops.environment` for the
order they are looked up in); the endpoint is ``--endpoint-url``, else
``AWS_ENDPOINT_URL``, else for the ``local`` environment http://127.0.0.1:4566.

Exit codes:
  0  success: the audit balances, every message or file moved, the bundle is ready/empty
  1  discrepancies found, or the operation (partly) failed; the output lists what
  2  usage error (bad arguments)
  3  the environment's outputs were not found, or name resources that do not exist
  4  AWS (or the emulator) is unreachable, or credentials are missing or rejected

A subcommand registers a callable ``run(args) -> exit code`` with
``parser.set_defaults(run=...)``; :func:`main` calls it and maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from sluice import __version__
from sluice.local.commands import register as register_local_commands
from sluice.ops.audit import AuditReport, audit, pending_messages, wait_until_drained
from sluice.ops.bundle import MATCH_MODES, BundleRequestError, wait_for_status, write_request
from sluice.ops.environment import (
    LOCAL_ENVIRONMENT,
    Clients,
    Environment,
    OutputsNotFoundError,
    connection_for,
    find_project_dir,
    resolve_environment,
    running_stack_endpoint,
)
from sluice.ops.queues import QueueDepth
from sluice.ops.redrive import METHODS, TASK, RedriveReport, redrive
from sluice.ops.status import StatusReport, collect_status
from sluice.ops.upload import Progress, files_to_upload, human_bytes, upload_folder

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ENVIRONMENT = 3
EXIT_UNREACHABLE = 4

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  discrepancies found, or the operation (partly) failed
  2  usage error
  3  environment outputs not found, or they name resources that do not exist
  4  AWS or the emulator unreachable, or credentials missing or rejected
"""

AUTH_ERROR_CODES = frozenset(
    {
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
MISSING_RESOURCE_CODES = frozenset(
    {"NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
)

Runner = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Arguments that parse but make no sense together; exit 2."""


# --- argument parsing ----------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, got {text}")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    # On a subcommand the defaults are suppressed, so an option given before the
    # subcommand is not overwritten by the subparser's default.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if on_subcommand else value

    group = parser.add_argument_group("environment options")
    group.add_argument(
        "-e",
        "--environment",
        default=default(LOCAL_ENVIRONMENT),
        metavar="NAME",
        help="environment to act on: local, dev, prod, ... (default: local)",
    )
    group.add_argument(
        "--region",
        default=default(None),
        help="AWS region (default: from the outputs, then AWS_REGION / the AWS config)",
    )
    group.add_argument(
        "--endpoint-url",
        default=default(None),
        metavar="URL",
        help="API endpoint, e.g. an emulator (default: AWS_ENDPOINT_URL; for the local"
        " environment http://127.0.0.1:4566)",
    )
    group.add_argument(
        "--outputs",
        type=Path,
        default=default(None),
        metavar="FILE",
        help="JSON of `terraform output -json environments` (default:"
        " .sluice/<environment>/outputs.json, else `terraform output` in the project)",
    )
    group.add_argument(
        "--project-dir",
        type=Path,
        default=default(None),
        metavar="DIR",
        help="project checkout holding .sluice/ and the Terraform root module"
        " (default: the nearest one at or above the current directory)",
    )


def _subcommand(
    subparsers: Any, name: str, summary: str, description: str, run: Runner
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=88),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, on_subcommand=True)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description=textwrap.fill(
            "Operate a sluice pipeline environment: local stack, status, audit,"
            " dead-letter redrive, bundle requests and uploads.",
            width=88,
        ),
        epilog=EXIT_CODES_HELP
        + "\nexamples:\n  sluice up\n  sluice upload ./photos --prefix 2026-11/\n"
        "  sluice -e dev status\n  sluice audit --wait 120\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sluice {__version__}")
    _add_global_options(parser, on_subcommand=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    register_local_commands(subparsers)

    status = _subcommand(
        subparsers,
        "status",
        "queue depths, dead letters and receipts by status",
        "Show each queue's visible, in-flight and delayed messages, the dead-letter queue's"
        " depth, and how many receipts are processed or rejected.",
        run_status,
    )
    status.add_argument(
        "--no-receipts",
        dest="receipts",
        action="store_false",
        help="skip counting receipts (reads every receipt: slow on large buckets)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    audit_parser = _subcommand(
        subparsers,
        "audit",
        "reconcile inputs, receipts, outputs, archive and dead letters",
        "Check that every input has exactly one receipt, every receipt's input is archived"
        " and gone from RAW, every listed output exists, nothing is archived or thumbnailed"
        " without a receipt, and the dead-letter queue is empty. Prints one line per"
        " finding and a summary; exits 1 on any discrepancy, or while work is in progress.",
        run_audit,
    )
    audit_parser.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the queues to drain",
    )
    audit_parser.add_argument("--json", action="store_true", help="print JSON")

    redrive_parser = _subcommand(
        subparsers,
        "redrive",
        "move dead letters back to their source queues",
        "Move the dead-letter queue's messages back to the queues they came from: with"
        " SQS's message-move task where the endpoint offers it, else by receiving, sending to"
        " the source queue and only then deleting. Messages whose source cannot be told stay"
        " in the dead-letter queue and are listed.",
        run_redrive,
    )
    redrive_parser.add_argument(
        "--dry-run", action="store_true", help="list what would move; move nothing"
    )
    redrive_parser.add_argument(
        "--max",
        type=_positive_int,
        metavar="N",
        help="move at most N messages (uses receive-send-delete)",
    )
    redrive_parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="auto (default): the message-move task, falling back to receive-send-delete",
    )
    redrive_parser.add_argument(
        "--timeout",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="how long to follow a message-move task (default: 300)",
    )
    redrive_parser.add_argument("--json", action="store_true", help="print JSON")

    bundle = _subcommand(
        subparsers,
        "bundle",
        "request a zip of the archived images with given labels",
        "Write a bundle request (requests/<id>.json) to the WORK bucket. The bundle handler"
        " zips the matching archived images and writes bundles/<id>.json with a download"
        " URL. With --wait, wait for that status and print it: exit 0 when the bundle is"
        " ready or empty, 1 on error or when no status came in time.",
        run_bundle,
    )
    bundle.add_argument("labels", nargs="+", metavar="LABEL", help="label, e.g. Dog")
    bundle.add_argument(
        "--match",
        choices=MATCH_MODES,
        default="any",
        help="images with any (default) or all of the labels",
    )
    bundle.add_argument("--notify", metavar="RECIPIENT", help="who the notification is for")
    bundle.add_argument(
        "--id",
        dest="bundle_id",
        metavar="ID",
        help="bundle id (default: UTC timestamp and a random suffix)",
    )
    bundle.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the bundle's status",
    )
    bundle.add_argument("--json", action="store_true", help="print JSON")

    upload = _subcommand(
        subparsers,
        "upload",
        "upload a folder's files to the RAW bucket",
        "Upload every file under FOLDER to the RAW bucket, keyed by its path relative to"
        " FOLDER (with '/'), content type guessed from the name, large files in parts."
        " Progress goes to stderr. Exits 1 if any file failed, listing them.",
        run_upload,
    )
    upload.add_argument("folder", type=Path, metavar="FOLDER")
    upload.add_argument(
        "--prefix", default="", help="key prefix; a trailing '/' is added (default: none)"
    )
    return parser


# --- resolution ----------------------------------------------------------------------


def _resolve(args: argparse.Namespace) -> tuple[Environment, Clients]:
    project_dir = args.project_dir or find_project_dir(Path.cwd())
    environment = resolve_environment(
        args.environment, outputs_file=args.outputs, project_dir=project_dir
    )
    connection = connection_for(
        args.environment,
        region=args.region,
        endpoint_url=args.endpoint_url,
        outputs_region=environment.region,
        stack_endpoint=running_stack_endpoint(project_dir, args.environment),
    )
    args.resolved_endpoint = connection.endpoint_url
    clients = Clients.build(connection, emulator=connection.endpoint_url is not None)
    return environment, clients


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _err(message: str) -> None:
    print(message, file=sys.stderr)


# --- status --------------------------------------------------------------------------


def _depth_rows(depths: Sequence[QueueDepth]) -> list[str]:
    rows = [f"{'queue':<14}{'visible':>9}{'in flight':>11}{'delayed':>9}"]
    rows += [f"{d.name:<14}{d.visible:>9}{d.in_flight:>11}{d.delayed:>9}" for d in depths]
    return rows


def render_status(report: StatusReport, source: str) -> str:
    lines = [f"environment {report.environment} (names from {source})", ""]
    lines += _depth_rows([*report.queues, report.dead_letters])
    lines.append("")
    if report.receipts is None:
        lines.append("receipts: not counted (--no-receipts)")
    else:
        by_status = ", ".join(f"{status} {count}" for status, count in report.receipts.items())
        lines.append(f"receipts: {by_status or 'none'} ({report.receipts_total} total)")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    environment, clients = _resolve(args)
    report = collect_status(clients.s3, clients.sqs, environment, include_receipts=args.receipts)
    if args.json:
        _print_json(asdict(report))
    else:
        print(render_status(report, environment.source))
    return EXIT_OK


# --- audit ---------------------------------------------------------------------------


def render_audit(report: AuditReport) -> str:
    lines = [
        f"{finding.category:<26}{finding.subject}  {finding.detail}"
        for finding in (*report.discrepancies, *report.in_progress)
    ]
    ledger = report.ledger
    lines += [
        "",
        f"ledger of environment {report.environment}:",
        f"  inputs seen         {ledger.inputs_seen}",
        f"  still in RAW        {ledger.in_raw}",
        f"  receipts processed  {ledger.receipts_processed}",
        f"  receipts rejected   {ledger.receipts_rejected}",
        f"  archived            {ledger.archived}",
        f"  dead-lettered       {ledger.dead_lettered}",
        "",
    ]
    if report.clean:
        lines.append("audit clean: inputs = receipts = archived, no dead letters")
    else:
        lines.append(
            f"audit found {len(report.discrepancies)} discrepanc"
            f"{'y' if len(report.discrepancies) == 1 else 'ies'},"
            f" {len(report.in_progress)} in progress"
            + ("; rerun with --wait SECONDS to let the queues drain" if report.in_progress else "")
        )
    return "\n".join(lines)


def run_audit(args: argparse.Namespace) -> int:
    environment, clients = _resolve(args)
    if args.wait:
        drained = wait_until_drained(
            lambda: pending_messages(clients.sqs, environment), timeout=args.wait
        )
        if not drained:
            _err(f"queues still busy after {args.wait:g} s; auditing anyway")
    report = audit(clients.s3, clients.sqs, environment)
    if args.json:
        _print_json({**asdict(report), "clean": report.clean})
    else:
        print(render_audit(report))
    return EXIT_OK if report.clean else EXIT_FAILED


# --- redrive -------------------------------------------------------------------------


def render_redrive(report: RedriveReport) -> str:
    dry = report.method == "dry-run"
    lines = []
    if report.fallback_reason:
        lines.append(f"note: {report.fallback_reason}; moving messages in batches")
    for move in report.moves:
        note = f"  ({move.problem})" if move.problem else ""
        lines.append(
            f"{'would move' if dry else 'moved'} -> {move.target:<10} {move.subject}{note}"
        )
    for move in report.left:
        lines.append(f"left in DLQ: {move.subject}: {move.problem}")
    if dry:
        lines.append(
            f"dry run: {report.dead_letters_before} message(s) in the dead-letter queue;"
            f" {len(report.moves)} of those looked at would move, {len(report.left)} would stay"
        )
    elif report.method == TASK:
        failure = f" ({report.task_failure})" if report.task_failure else ""
        lines.append(
            f"message-move task {report.task_status or 'started'}{failure}:"
            f" {report.moved} of about {report.dead_letters_before} message(s) moved"
        )
        if report.task_status not in ("COMPLETED", "FAILED", "CANCELLED"):
            lines.append("still running: check again with `sluice status`")
    else:
        lines.append(
            f"moved {report.moved} message(s); {len(report.left)} left in the dead-letter queue"
        )
    return "\n".join(lines)


def run_redrive(args: argparse.Namespace) -> int:
    if args.method == TASK and args.max is not None:
        raise UsageError("--max needs --method auto or receive-send-delete: a task moves all")
    environment, clients = _resolve(args)
    report = redrive(
        clients.sqs,
        environment,
        dry_run=args.dry_run,
        limit=args.max,
        method=args.method,
        task_timeout=args.timeout,
    )
    if args.json:
        _print_json({**asdict(report), "ok": report.ok})
    else:
        print(render_redrive(report))
    if args.dry_run:
        return EXIT_OK
    return EXIT_OK if report.ok else EXIT_FAILED


# --- bundle --------------------------------------------------------------------------


def run_bundle(args: argparse.Namespace) -> int:
    environment, clients = _resolve(args)
    request = write_request(
        clients.s3,
        environment.work_bucket,
        args.labels,
        match=args.match,
        notify=args.notify,
        bundle_id=args.bundle_id,
    )
    result: dict[str, Any] = {
        "bundle_id": request.bundle_id,
        "request": f"s3://{request.bucket}/{request.key}",
        "body": request.body,
    }
    if not args.wait:
        if args.json:
            _print_json(result)
        else:
            print(f"requested bundle {request.bundle_id}: s3://{request.bucket}/{request.key}")
            print(f"its status will be at s3://{request.bucket}/{request.status_key}")
        return EXIT_OK

    status = wait_for_status(clients.s3, request, timeout=args.wait)
    result["status"] = status
    if args.json:
        _print_json(result)
    if status is None:
        _err(
            f"no status for bundle {request.bundle_id} after {args.wait:g} s: check the bundle"
            " queue and the dead-letter queue with `sluice status`"
        )
        return EXIT_FAILED
    state = status.get("status")
    if not args.json:
        print(f"bundle {request.bundle_id}: {state}")
        if state == "ready":
            print(
                f"{status.get('image_count')} image(s), {human_bytes(status.get('bytes') or 0)},"
                f" link valid until {status.get('expires_at')}:"
            )
            print(status.get("url"))
        elif state == "empty":
            print("no archived image matches those labels; nothing to download")
        else:
            for error in status.get("errors") or []:
                print(f"error: {error}")
    return EXIT_FAILED if state == "error" else EXIT_OK


# --- upload --------------------------------------------------------------------------


def run_upload(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: upload takes a directory")
    files = files_to_upload(folder, args.prefix)
    if not files:
        _err(f"no files under {folder}: nothing to upload")
        return EXIT_OK
    environment, clients = _resolve(args)
    progress = Progress(len(files), sum(item.size for item in files))
    report = upload_folder(clients.s3, environment.raw_bucket, files, progress)
    print(
        f"uploaded {len(report.uploaded)} file(s), {human_bytes(report.bytes_sent)},"
        f" to s3://{report.bucket}/"
    )
    if report.failed:
        for key, reason in report.failed:
            print(f"failed: {key}: {reason}")
        return EXIT_FAILED
    return EXIT_OK


# --- entry point ---------------------------------------------------------------------


def _unreachable_hint(args: argparse.Namespace) -> str:
    endpoint = getattr(args, "resolved_endpoint", None)
    if endpoint and args.environment == LOCAL_ENVIRONMENT:
        return f"cannot reach {endpoint}: is the local stack up? run ./deploy.sh local"
    if endpoint:
        return f"cannot reach {endpoint}: check --endpoint-url / AWS_ENDPOINT_URL"
    return "cannot reach AWS: check the network and the region"


def _run(args: argparse.Namespace, run: Runner) -> int:
    try:
        return run(args)
    except UsageError as exc:
        _err(f"sluice {args.command}: {exc}")
        return EXIT_USAGE
    except BundleRequestError as exc:
        _err(f"sluice bundle: {exc}")
        return EXIT_USAGE
    except OutputsNotFoundError as exc:
        _err(f"sluice: {exc}")
        return EXIT_NO_ENVIRONMENT
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        _err(f"sluice: {_unreachable_hint(args)} ({exc})")
        return EXIT_UNREACHABLE
    except (NoCredentialsError, PartialCredentialsError) as exc:
        _err(
            f"sluice: no usable AWS credentials ({exc}): configure a profile (aws configure,"
            " AWS_PROFILE) or pass --endpoint-url for an emulator"
        )
        return EXIT_UNREACHABLE
    except NoRegionError:
        _err("sluice: no AWS region: pass --region or set AWS_REGION")
        return EXIT_UNREACHABLE
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"{exc.operation_name}: {code}: {error.get('Message', '')}"
        if code in AUTH_ERROR_CODES:
            _err(f"sluice: credentials rejected ({message}): refresh or reconfigure them")
            return EXIT_UNREACHABLE
        if code in MISSING_RESOURCE_CODES:
            _err(
                f"sluice: environment {args.environment!r} names a resource that does not"
                f" exist ({message}): is it deployed? run ./deploy.sh {args.environment} apply"
            )
            return EXIT_NO_ENVIRONMENT
        _err(f"sluice {args.command}: AWS request failed: {message}")
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Runner | None = getattr(args, "run", None) or getattr(args, "func", None)
    if run is None:  # pragma: no cover - every subcommand sets one
        parser.error(f"subcommand {args.command!r} has no action")
    try:
        return _run(args, run)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
