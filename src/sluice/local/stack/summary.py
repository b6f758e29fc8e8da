"""What ``sluice up`` reports once the samples have gone through the local pipeline."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.keys import RECEIPTS_PREFIX, THUMBNAILS_PREFIX
from sluice.label_items import label_counts
from sluice.ops.environment import Environment
from sluice.ops.objects import list_objects, read_receipts
from sluice.ops.queues import queue_depth
from sluice.ops.upload import human_bytes


@dataclass(frozen=True)
class Rejection:
    key: str
    reasons: tuple[str, ...]


@dataclass
class Summary:
    environment: Environment
    endpoint_url: str
    inputs: int = 0
    processed: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    thumbnails: int = 0
    labels: list[tuple[str, int]] = field(default_factory=list)
    bundle_label: str | None = None
    bundle: dict[str, Any] | None = None
    dead_letters: int = 0
    api_url: str | None = None
    web_url: str | None = None
    web_user: tuple[str, str] | None = None
    """The seeded user's email and temporary password (env/local.tfvars), if any."""


def collect(
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    environment: Environment,
    endpoint_url: str,
    *,
    inputs: Sequence[str],
) -> Summary:
    """Read the pipeline's end state from the emulator: receipts, outputs, labels, DLQ."""
    summary = Summary(environment, endpoint_url, inputs=len(inputs))
    for receipt in read_receipts(s3, environment.processed_bucket):
        body = receipt.body
        if body is None:
            summary.rejected.append(
                Rejection(receipt.key, (f"unreadable receipt: {receipt.problem}",))
            )
            continue
        key = str(body["source"]["key"])
        if body["status"] == "processed":
            summary.processed.append(key)
        else:
            reasons = tuple(
                f"{error.get('code', 'error')}: {error.get('message', '')}"
                for error in body.get("errors") or []
                if isinstance(error, dict)
            )
            summary.rejected.append(Rejection(key, reasons or ("no reason given",)))
    summary.processed.sort()
    summary.rejected.sort(key=lambda rejection: rejection.key)
    summary.thumbnails = sum(
        1 for _ in list_objects(s3, environment.processed_bucket, THUMBNAILS_PREFIX)
    )
    if environment.labels_table:
        summary.labels = label_counts(dynamodb, environment.labels_table)
    summary.dead_letters = queue_depth(sqs, "dead-letter", environment.dead_letter_queue_url).total
    return summary


def count_receipts(s3: Any, environment: Environment) -> int:
    return sum(1 for _ in list_objects(s3, environment.processed_bucket, RECEIPTS_PREFIX))


def _aws(endpoint_url: str, *args: str) -> str:
    return shlex.join(["aws", "--endpoint-url", endpoint_url, *args])


def try_it(environment: Environment, endpoint_url: str) -> list[str]:
    """Commands to use the running stack by hand, with its real names."""
    raw, work = environment.raw_bucket, environment.work_bucket
    transform = environment.function_names.get("transform", "<transform function>")
    return [
        "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1"
        "  # the emulator takes any key",
        _aws(endpoint_url, "s3", "cp", "photo.jpg", f"s3://{raw}/"),
        _aws(endpoint_url, "s3", "cp", "--recursive", "photos/", f"s3://{raw}/photos/"),
        """echo '{"labels": ["<label>"], "match": "any"}' > request.json""",
        _aws(endpoint_url, "s3", "cp", "request.json", f"s3://{work}/requests/my-bundle.json"),
        _aws(endpoint_url, "s3", "cp", f"s3://{work}/bundles/my-bundle.json", "-"),
        _aws(endpoint_url, "logs", "tail", f"/aws/lambda/{transform}", "--follow")
        + "   # AWS CLI v2",
        _aws(
            endpoint_url,
            "logs",
            "filter-log-events",
            "--log-group-name",
            f"/aws/lambda/{transform}",
        )
        + "   # AWS CLI v1 (.venv/bin/aws)",
        "sluice status --environment local",
        "sluice audit --environment local",
        "sluice down",
    ]


NOT_DEPLOYED = "not deployed in this environment"
"""What the summary says of a part the environment switches off (docs/localstack.md)."""


def sign_in(api_url: str) -> list[str]:
    """How to reach the local HTTP API: sign in, then call it with the token."""
    return [
        "sluice login --environment local   # admin@sluice.local; the first time it asks to"
        " replace the temporary password of env/local.tfvars",
        f"curl {api_url}/health",
        f'curl -H "Authorization: Bearer $(sluice token --environment local)" {api_url}/labels',
    ]


def render(summary: Summary) -> str:
    env = summary.environment
    lines = [
        "",
        f"sluice local stack at {summary.endpoint_url}",
        f"  raw {env.raw_bucket}   work {env.work_bucket}",
        "",
        f"inputs      {summary.inputs}",
        f"processed   {len(summary.processed)}",
        f"rejected    {len(summary.rejected)}",
    ]
    for rejection in summary.rejected:
        lines.append(f"  - {rejection.key}: {'; '.join(rejection.reasons)}")
    lines.append(f"thumbnails  {summary.thumbnails}")
    if summary.labels:
        lines.append(
            "labels      " + ", ".join(f"{name} ({count})" for name, count in summary.labels)
        )
    else:
        lines.append("labels      none")
    if summary.bundle is not None:
        bundle = summary.bundle
        lines.append(
            f"bundle      {summary.bundle_label!r}: {bundle.get('status')},"
            f" {bundle.get('image_count', 0)} images, {human_bytes(int(bundle.get('bytes') or 0))}"
        )
        if bundle.get("url"):
            lines.append(f"  {bundle['url']}")
    elif summary.bundle_label:
        lines.append(f"bundle      {summary.bundle_label!r}: no status yet")
    lines.append(f"dead letters {summary.dead_letters}")
    if summary.api_url:
        lines += ["", f"API         {summary.api_url}  (docs/api.md)"]
        lines += [f"  {command}" for command in sign_in(summary.api_url)]
    else:
        lines += ["", f"API         {NOT_DEPLOYED} (api.enabled is false)"]
    if not summary.web_url:
        lines.append(f"Web app     {NOT_DEPLOYED} (web.enabled is false)")
    else:
        lines += ["", f"Web app     {summary.web_url}  (web/README.md)"]
        if summary.web_user:
            email, password = summary.web_user
            lines.append(
                f"  sign in as {email} with {password}; the first sign-in asks for a new"
                " password (after `sluice login` changed it, use that one)"
            )
    lines += ["", "Try it:"] + [f"  {command}" for command in try_it(env, summary.endpoint_url)]
    return "\n".join(lines)
