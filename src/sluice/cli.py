"""The ``sluice`` command: run and inspect a sluice environment.

Subcommands: ``up``/``down`` (the local stack, from ``sluice.local.stack.commands``),
``status``, ``audit``, ``redrive``, ``reprocess``, ``bundle`` and ``upload``. Every subcommand takes
``--help``. The global options (``--environment``, ``--profile``, ``--region``,
``--endpoint-url``, ``--outputs-file``, ``--project-dir``) may come before or after the
subcommand, as the aws CLI's do.

Options must be spelt out: every parser has ``allow_abbrev=False``, because argparse's
prefix matching read ``--output json`` as ``--outputs json`` before ``--output`` existed,
and would silently change meaning again whenever an option is added. ``--outputs-file``
was called ``--outputs``; that spelling still works (hidden from ``--help``), as does
``--json`` for ``--output json``.

Output, in the aws CLI's style: ``--output table`` (the default) is for people;
``--output json`` prints exactly one JSON document on stdout, with the keys
docs/contracts.md lists (built by the ``*_document`` functions below, never by dumping a
dataclass, so renaming a field cannot change the contract), and everything else
(progress, notes, errors) on stderr. On exit 2, 3 or 4 nothing is printed on stdout.

Resource names come from the Terraform outputs (see :mod:`sluice.ops.environment` for the
order they are looked up in); the endpoint is ``--endpoint-url``, else
``AWS_ENDPOINT_URL``, else for the ``local`` environment http://127.0.0.1:4566. The
credentials come from ``--profile``, else ``AWS_PROFILE``, else boto3's default chain.

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
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from sluice import __version__, workdir
from sluice.arguments import seconds, whole_number
from sluice.bundles import MATCH_MODES, BundleRequestError
from sluice.local.stack.commands import register as register_local_commands
from sluice.ops.audit import AuditReport, Finding, audit, pending_messages, wait_until_drained
from sluice.ops.bundle import WrittenRequest, wait_for_status, write_request
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
from sluice.ops.login import LoginError, load_token, save_tokens, sign_in
from sluice.ops.queues import QueueDepth
from sluice.ops.redrive import DRY_RUN, METHODS, TASK, Move, RedriveReport, redrive
from sluice.ops.reprocess import (
    Item,
    ReprocessReport,
    Selection,
    SelectionError,
    keys_from_lines,
    reprocess,
)
from sluice.ops.status import StatusReport, collect_status
from sluice.ops.upload import Progress, UploadReport, files_to_upload, human_bytes, upload_folder
from sluice.receipts import STATUSES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ENVIRONMENT = 3
EXIT_UNREACHABLE = 4

TABLE = "table"
JSON = "json"
OUTPUT_FORMATS = (TABLE, JSON)

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

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Arguments that parse but make no sense together; exit 2."""


# --- argument parsing ----------------------------------------------------------------


_positive_int = whole_number(1)
_seconds = seconds(maximum=86_400)


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
        "--profile",
        default=default(None),
        metavar="NAME",
        help="AWS named profile for every request, as in the aws CLI (default: AWS_PROFILE,"
        " else the default credential chain)",
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
        "--outputs-file",
        type=Path,
        default=default(None),
        metavar="FILE",
        help="JSON of `terraform output -json environments` (default:"
        " .sluice/<environment>/outputs.json, else `terraform output` in the project)",
    )
    # The option's old name, kept working; hidden so that --help does not show two
    # options one letter apart from --output.
    group.add_argument(
        "--outputs",
        dest="outputs_file",
        type=Path,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
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
    subparsers: Any, name: str, summary: str, description: str, run: Command
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=88),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_global_options(parser, on_subcommand=True)
    parser.set_defaults(run=run)
    return parser


def _add_output_option(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    """``--output``; on a subcommand it also marks the command as one that prints a report."""
    parser.add_argument(
        "--output",
        choices=OUTPUT_FORMATS,
        # None on the top level tells "not given" from "given"; see main().
        default=argparse.SUPPRESS if on_subcommand else None,
        help="table (default): for people; json: one JSON document on stdout (keys in"
        " docs/contracts.md), progress and notes on stderr",
    )
    if on_subcommand:
        parser.add_argument(
            "--json",
            dest="output",
            action="store_const",
            const=JSON,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,  # the older spelling of --output json
        )
        parser.set_defaults(prints_report=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description=textwrap.fill(
            "Operate a sluice pipeline environment: local stack, status, audit,"
            " dead-letter redrive, reprocessing, bundle requests and uploads.",
            width=88,
        ),
        epilog=EXIT_CODES_HELP
        + "\nexamples:\n  sluice up\n  sluice upload ./photos --prefix 2026-11/\n"
        "  sluice -e dev --profile sluice-dev status\n"
        "  sluice -e dev status --output json\n  sluice audit --wait 120\n"
        "  sluice reprocess --dataset retina --status rejected --dry-run\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"sluice {__version__}")
    _add_global_options(parser, on_subcommand=False)
    _add_output_option(parser, on_subcommand=False)
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
    _add_output_option(status, on_subcommand=True)

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
    _add_output_option(audit_parser, on_subcommand=True)

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
    _add_output_option(redrive_parser, on_subcommand=True)

    reprocess_parser = _subcommand(
        subparsers,
        "reprocess",
        "copy archived inputs back into RAW to run them through the pipeline again",
        "Select archived inputs by their receipts (every given filter must match) and copy"
        " each back to its RAW key, server side, so the pipeline processes it again (after a"
        " dataset or schema was fixed, for instance). The new receipt names the one it"
        " replaces, and the replaced version stays archived under superseded/. Inputs not at"
        " rest (still in RAW, or not archived as their receipt says) are skipped and listed."
        " Exits 1 when any selected input was skipped or failed.",
        run_reprocess,
    )
    reprocess_parser.add_argument(
        "keys", nargs="*", metavar="KEY", help="RAW keys to reprocess (as in their receipts)"
    )
    reprocess_parser.add_argument(
        "--keys-from",
        type=Path,
        metavar="FILE",
        help="read RAW keys from FILE, one a line ('-': standard input)",
    )
    reprocess_parser.add_argument("--prefix", help="RAW keys that start with PREFIX")
    reprocess_parser.add_argument("--dataset", metavar="NAME", help="receipts of this dataset")
    reprocess_parser.add_argument(
        "--status", choices=STATUSES, help="receipts with this status (e.g. rejected)"
    )
    reprocess_parser.add_argument(
        "--error",
        dest="error_code",
        metavar="CODE",
        help="receipts listing this error code (e.g. unknown_dataset, schema_violation)",
    )
    reprocess_parser.add_argument(
        "--dry-run", action="store_true", help="list what would be copied; copy nothing"
    )
    _add_output_option(reprocess_parser, on_subcommand=True)

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
    bundle.add_argument(
        "--notify",
        metavar="RECIPIENT",
        help="email address (confirm the subscription email SNS sends first) or E.164 phone"
        " number (+33612345678) to send the link to",
    )
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
    _add_output_option(bundle, on_subcommand=True)

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
    _add_output_option(upload, on_subcommand=True)

    login = _subcommand(
        subparsers,
        "login",
        "sign in to the environment's user pool and keep the tokens",
        "Sign in with a user name and password (Cognito USER_PASSWORD_AUTH on the CLI"
        " client); a user whose password is temporary is asked for a new one. The tokens"
        " go to .sluice/<environment>/tokens.json (mode 0600) for `sluice token`.",
        run_login,
    )
    login.add_argument("--username", metavar="EMAIL", help="user name (default: asked)")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin, and a new password, when one"
        " is required, from the second (default: asked without echo)",
    )

    token = _subcommand(
        subparsers,
        "token",
        "print the saved token, for curl -H 'Authorization: Bearer ...'",
        "Print the id (default) or access token `sluice login` saved; exit 1 when there is"
        " none or it has expired.",
        run_token,
    )
    token.add_argument(
        "--kind", choices=("id", "access"), default="id", help="which token (default: id)"
    )
    return parser


# --- resolution and printing ---------------------------------------------------------


def _resolve(args: argparse.Namespace) -> tuple[Environment, Clients]:
    project_dir = args.project_dir or find_project_dir(Path.cwd())
    environment = resolve_environment(
        args.environment, outputs_file=args.outputs_file, project_dir=project_dir
    )
    connection = connection_for(
        args.environment,
        region=args.region,
        endpoint_url=args.endpoint_url,
        outputs_region=environment.region,
        stack_endpoint=running_stack_endpoint(project_dir, args.environment),
        profile=args.profile,
    )
    args.resolved_endpoint = connection.endpoint_url
    clients = Clients.build(connection, emulator=connection.endpoint_url is not None)
    return environment, clients


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _show(args: argparse.Namespace, document: dict[str, Any], table: Callable[[], str]) -> None:
    """Print the command's one JSON document, or its table, on stdout."""
    if args.output == JSON:
        _print_json(document)
    else:
        print(table())


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _depth_document(depth: QueueDepth) -> dict[str, Any]:
    return {
        "name": depth.name,
        "url": depth.url,
        "visible": depth.visible,
        "in_flight": depth.in_flight,
        "delayed": depth.delayed,
    }


def _finding_document(finding: Finding) -> dict[str, Any]:
    return {"category": finding.category, "subject": finding.subject, "detail": finding.detail}


def _move_document(move: Move) -> dict[str, Any]:
    return {
        "message_id": move.message_id,
        "subject": move.subject,
        "target": move.target,
        "problem": move.problem,
    }


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


def status_document(report: StatusReport, source: str) -> dict[str, Any]:
    """``sluice status --output json`` (docs/contracts.md)."""
    receipts = report.receipts
    return {
        "environment": report.environment,
        "outputs_source": source,
        "queues": [_depth_document(depth) for depth in report.queues],
        "dead_letters": _depth_document(report.dead_letters),
        "receipts": dict(receipts) if receipts is not None else None,
        "receipts_total": report.receipts_total if receipts is not None else None,
    }


def run_status(args: argparse.Namespace) -> int:
    environment, clients = _resolve(args)
    report = collect_status(clients.s3, clients.sqs, environment, include_receipts=args.receipts)
    _show(
        args,
        status_document(report, environment.source),
        lambda: render_status(report, environment.source),
    )
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
        f"  versions superseded {ledger.versions_superseded}",
        f"  versions deleted    {ledger.versions_deleted}",
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


def audit_document(report: AuditReport) -> dict[str, Any]:
    """``sluice audit --output json`` (docs/contracts.md)."""
    ledger = report.ledger
    return {
        "environment": report.environment,
        "clean": report.clean,
        "ledger": {
            "inputs_seen": ledger.inputs_seen,
            "in_raw": ledger.in_raw,
            "receipts_processed": ledger.receipts_processed,
            "receipts_rejected": ledger.receipts_rejected,
            "archived": ledger.archived,
            "versions_superseded": ledger.versions_superseded,
            "versions_deleted": ledger.versions_deleted,
            "dead_lettered": ledger.dead_lettered,
        },
        "discrepancies": [_finding_document(finding) for finding in report.discrepancies],
        "in_progress": [_finding_document(finding) for finding in report.in_progress],
        "queues": [_depth_document(depth) for depth in report.queues],
    }


def run_audit(args: argparse.Namespace) -> int:
    environment, clients = _resolve(args)
    if args.wait:
        drained = wait_until_drained(
            lambda: pending_messages(clients.sqs, environment), timeout=args.wait
        )
        if not drained:
            _err(f"queues still busy after {args.wait:g} s; auditing anyway")
    report = audit(clients.s3, clients.sqs, environment)
    _show(args, audit_document(report), lambda: render_audit(report))
    return EXIT_OK if report.clean else EXIT_FAILED


# --- redrive -------------------------------------------------------------------------


def render_redrive(report: RedriveReport) -> str:
    dry = report.method == DRY_RUN
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
    for move in report.discarded:
        lines.append(f"{'would delete' if dry else 'deleted'}: {move.subject}: {move.problem}")
    if dry:
        lines.append(
            f"dry run: {report.dead_letters_before} message(s) in the dead-letter queue;"
            f" {len(report.moves)} of those looked at would move, {len(report.left)} would stay,"
            f" {len(report.discarded)} would be deleted"
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
            + (f"; {len(report.discarded)} s3:TestEvent(s) deleted" if report.discarded else "")
        )
    return "\n".join(lines)


def redrive_document(report: RedriveReport) -> dict[str, Any]:
    """``sluice redrive --output json`` (docs/contracts.md)."""
    return {
        "method": report.method,
        "ok": report.ok,
        "dead_letters_before": report.dead_letters_before,
        "moved": report.moved,
        "moves": [_move_document(move) for move in report.moves],
        "left": [_move_document(move) for move in report.left],
        "discarded": [_move_document(move) for move in report.discarded],
        "task_status": report.task_status,
        "task_failure": report.task_failure,
        "fallback_reason": report.fallback_reason,
    }


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
    _show(args, redrive_document(report), lambda: render_redrive(report))
    if args.dry_run:
        return EXIT_OK
    return EXIT_OK if report.ok else EXIT_FAILED


# --- reprocess -----------------------------------------------------------------------


def _item_document(item: Item) -> dict[str, Any]:
    return {
        "key": item.key,
        "status": item.status,
        "kind": item.kind,
        "dataset": item.dataset,
        "error_codes": list(item.error_codes),
        "archive_key": item.archive_key,
        "size": item.size,
        "outcome": item.outcome,
        "problem": item.problem,
    }


def reprocess_document(report: ReprocessReport) -> dict[str, Any]:
    """``sluice reprocess --output json`` (docs/contracts.md)."""
    return {
        "dry_run": report.dry_run,
        "selection": report.selection.document(),
        "selected": len(report.items),
        "copied": report.count("copied"),
        "skipped": report.count("skipped"),
        "failed": report.count("failed"),
        "bytes_copied": report.bytes_copied,
        "items": [_item_document(item) for item in report.items],
        "ok": report.ok,
    }


def render_reprocess(report: ReprocessReport) -> str:
    verbs = {"would_copy": "would copy"}
    lines = [
        f"{verbs.get(item.outcome, item.outcome):<11}{item.status or '-':<10}{item.key}"
        + (f"  ({item.problem})" if item.problem else "")
        for item in report.items
    ]
    if report.dry_run:
        lines.append(
            f"dry run: {len(report.items)} selected, {report.count('would_copy')} would be"
            f" copied back to RAW, {report.count('skipped')} skipped"
        )
    else:
        lines.append(
            f"{len(report.items)} selected: {report.count('copied')} copied back to RAW"
            f" ({human_bytes(report.bytes_copied)}), {report.count('skipped')} skipped,"
            f" {report.count('failed')} failed"
        )
        if report.count("copied"):
            lines.append("follow them with `sluice audit --wait 300`")
    if not report.items:
        lines.insert(0, "no receipt matches the selection")
    return "\n".join(lines)


def run_reprocess(args: argparse.Namespace) -> int:
    keys = tuple(args.keys)
    if args.keys_from is not None:
        if str(args.keys_from) == "-":
            keys += keys_from_lines(sys.stdin)
        else:
            with args.keys_from.open(encoding="utf-8") as lines:
                keys += keys_from_lines(lines)
    try:
        selection = Selection(
            prefix=args.prefix,
            dataset=args.dataset,
            status=args.status,
            error_code=args.error_code,
            keys=keys,
        )
    except SelectionError as error:
        raise UsageError(str(error)) from None
    environment, clients = _resolve(args)
    report = reprocess(
        clients.s3,
        environment,
        selection,
        dry_run=args.dry_run,
        progress=lambda files, size: Progress(files, size),  # on stderr
    )
    _show(args, reprocess_document(report), lambda: render_reprocess(report))
    return EXIT_OK if report.ok else EXIT_FAILED


# --- bundle --------------------------------------------------------------------------


def bundle_document(request: WrittenRequest, status: dict[str, Any] | None) -> dict[str, Any]:
    """``sluice bundle --output json`` (docs/contracts.md); ``status`` is null without --wait."""
    return {
        "bundle_id": request.bundle_id,
        "request": f"s3://{request.bucket}/{request.key}",
        "status_object": f"s3://{request.bucket}/{request.status_key}",
        "body": request.body,
        "status": status,
    }


def render_bundle_request(request: WrittenRequest) -> str:
    return (
        f"requested bundle {request.bundle_id}: s3://{request.bucket}/{request.key}\n"
        f"its status will be at s3://{request.bucket}/{request.status_key}"
    )


def render_bundle_status(request: WrittenRequest, status: dict[str, Any]) -> str:
    state = status.get("status")
    lines = [f"bundle {request.bundle_id}: {state}"]
    if state == "ready":
        lines.append(
            f"{status.get('image_count')} image(s), {human_bytes(status.get('bytes') or 0)},"
            f" link valid until {status.get('expires_at')}:"
        )
        lines.append(str(status.get("url")))
    elif state == "empty":
        lines.append("no archived image matches those labels; nothing to download")
    else:
        lines += [f"error: {error}" for error in status.get("errors") or []]
    return "\n".join(lines)


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
    if not args.wait:
        _show(args, bundle_document(request, None), lambda: render_bundle_request(request))
        return EXIT_OK

    status = wait_for_status(clients.s3, request, timeout=args.wait)
    if status is None:
        if args.output == JSON:
            _print_json(bundle_document(request, None))
        _err(
            f"no status for bundle {request.bundle_id} after {args.wait:g} s: check the bundle"
            " queue and the dead-letter queue with `sluice status`"
        )
        return EXIT_FAILED
    _show(args, bundle_document(request, status), lambda: render_bundle_status(request, status))
    return EXIT_FAILED if status.get("status") == "error" else EXIT_OK


# --- upload --------------------------------------------------------------------------


def render_upload(report: UploadReport) -> str:
    lines = [
        f"uploaded {len(report.uploaded)} file(s), {human_bytes(report.bytes_sent)},"
        f" to s3://{report.bucket}/"
    ]
    lines += [f"failed: {key}: {reason}" for key, reason in report.failed]
    return "\n".join(lines)


def upload_document(report: UploadReport | None) -> dict[str, Any]:
    """``sluice upload --output json`` (docs/contracts.md); None: the folder was empty."""
    if report is None:
        return {"bucket": None, "uploaded": [], "failed": [], "bytes_sent": 0, "ok": True}
    return {
        "bucket": report.bucket,
        "uploaded": list(report.uploaded),
        "failed": [{"key": key, "reason": reason} for key, reason in report.failed],
        "bytes_sent": report.bytes_sent,
        "ok": not report.failed,
    }


def run_upload(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: upload takes a directory")
    files = files_to_upload(folder, args.prefix)
    if not files:
        _err(f"no files under {folder}: nothing to upload")
        if args.output == JSON:
            _print_json(upload_document(None))
        return EXIT_OK
    environment, clients = _resolve(args)
    progress = Progress(len(files), sum(item.size for item in files))  # on stderr
    report = upload_folder(clients.s3, environment.raw_bucket, files, progress)
    _show(args, upload_document(report), lambda: render_upload(report))
    return EXIT_FAILED if report.failed else EXIT_OK


def _project_dir(args: argparse.Namespace) -> Path:
    return Path(args.project_dir or find_project_dir(Path.cwd()))


def _secret(prompt: str, lines: list[str] | None) -> str:
    import getpass

    if lines is not None:
        if not lines:
            raise UsageError(f"stdin has no line for the {prompt.strip(': ').lower()}")
        return lines.pop(0)
    return getpass.getpass(prompt)


def run_login(args: argparse.Namespace) -> int:
    environment, _ = _resolve(args)
    if not environment.cli_client_id:
        raise UsageError(
            f"sign-in is not deployed in environment {args.environment!r} (its outputs name"
            " no user pool client: auth.enabled is false, e.g. on LocalStack, or Terraform"
            " was not re-applied since sign-in was added)"
        )
    from botocore import UNSIGNED
    from botocore.config import Config

    lines = sys.stdin.read().splitlines() if args.password_stdin else None
    username = args.username or input("User name: ").strip()
    connection = connection_for(
        args.environment,
        region=args.region,
        endpoint_url=args.endpoint_url,
        outputs_region=environment.region,
        stack_endpoint=running_stack_endpoint(_project_dir(args), args.environment),
    )
    # InitiateAuth needs no AWS credentials: the request is not signed.
    cognito = boto3.client(
        "cognito-idp",
        region_name=connection.region,
        endpoint_url=connection.endpoint_url,
        config=Config(signature_version=UNSIGNED),
    )
    try:
        tokens = sign_in(
            cognito,
            environment.cli_client_id,
            username,
            _secret("Password: ", lines),
            new_password=lambda: _secret("New password: ", lines),
        )
    except LoginError as error:
        _err(f"sluice login: {error}")
        return EXIT_FAILED
    path = workdir.tokens_path(_project_dir(args), args.environment)
    save_tokens(path, tokens)
    _err(f"signed in as {username}; tokens in {path} (sluice token prints one)")
    return EXIT_OK


def run_token(args: argparse.Namespace) -> int:
    try:
        print(load_token(workdir.tokens_path(_project_dir(args), args.environment), args.kind))
    except LoginError as error:
        _err(f"sluice token: {error}")
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


def _run(args: argparse.Namespace, run: Command) -> int:
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
            f"sluice: no usable AWS credentials ({exc}): configure a profile (aws configure)"
            " and select it with --profile or AWS_PROFILE, or pass --endpoint-url for an"
            " emulator"
        )
        return EXIT_UNREACHABLE
    except ProfileNotFound as exc:
        _err(f"sluice: {exc}: check --profile / AWS_PROFILE against `aws configure list-profiles`")
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
    run: Command | None = getattr(args, "run", None) or getattr(args, "func", None)
    if run is None:  # pragma: no cover - every subcommand sets one
        parser.error(f"subcommand {args.command!r} has no action")
    if args.output is not None and not getattr(args, "prints_report", False):
        parser.error(f"--output: sluice {args.command} prints no report to format")
    args.output = args.output or TABLE
    try:
        return _run(args, run)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
