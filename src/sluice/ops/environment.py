"""Which resources an environment has, and clients to reach them.

Resource names are never restated here: they come from the Terraform root output
``environments`` (docs/contracts.md), looked up in this order:

1. the file given with ``--outputs-file``;
2. ``.sluice/<environment>/outputs.json`` in the project directory (the local stack
   writes ``.sluice/local/outputs.json`` when it comes up);
3. ``terraform output -json environments`` in the project directory, which reads the
   state Terraform is currently initialised with.

Any of the three may hold the ``environments`` map itself, the whole
``terraform output -json`` document, or a single environment's object.

Every AWS client the CLI uses comes from :meth:`Clients.build`, from one boto3 session
built from a :class:`Connection`: the ``--profile`` flag reaches every client by being
a field of that connection, not an argument passed around.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from sluice import workdir

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

LOCAL_ENVIRONMENT = "local"
LOCAL_ENDPOINT_URL = "http://127.0.0.1:4566"
LOCAL_REGION = "us-east-1"
FUNCTIONS = ("transform", "archive", "tag", "bundle")
TERRAFORM_TIMEOUT_SECONDS = 120

# Fail fast when the endpoint is down instead of botocore's long default retries.
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"max_attempts": 3, "mode": "standard"},
)


class OutputsNotFoundError(RuntimeError):
    """No usable outputs for the environment; the message says what to run."""


def running_stack_endpoint(project_dir: Path, environment: str) -> str | None:
    """The endpoint the local stack recorded in ``.sluice/<env>/stack.json`` when it came up.

    ``sluice up`` may serve the emulator on another port than the default; reading the
    record spares the user an ``--endpoint-url`` that restates it.
    """
    try:
        stack = json.loads(workdir.stack_path(project_dir, environment).read_text())
    except (OSError, ValueError):
        return None
    endpoint = stack.get("endpoint_url") if isinstance(stack, dict) else None
    return endpoint if isinstance(endpoint, str) and endpoint else None


def find_project_dir(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``.sluice/`` or the root module."""
    for candidate in (start, *start.parents):
        if workdir.root(candidate).is_dir() or (candidate / "main.tf").is_file():
            return candidate
    return start


@dataclass(frozen=True)
class Environment:
    """One environment's resource names, as the Terraform outputs give them."""

    name: str
    raw_bucket: str
    processed_bucket: str
    archive_bucket: str
    work_bucket: str
    queue_urls: Mapping[str, str]
    dead_letter_queue_url: str
    bucket_functions: Mapping[str, str] = field(default_factory=dict)
    """Bucket name -> the function its notifications trigger (Terraform's wiring)."""
    dead_letter_queue_arn: str | None = None
    images_table: str | None = None
    labels_table: str | None = None
    bundle_topic_arn: str | None = None
    region: str | None = None
    function_names: Mapping[str, str] = field(default_factory=dict)
    api_url: str | None = None
    """The HTTP API's URL in AWS; locally the API server's (``.sluice/local/stack.json``)."""
    api_id: str | None = None
    user_pool_id: str | None = None
    cli_client_id: str | None = None
    web_url: str | None = None
    """The web app's CloudFront URL; locally the web server's (``.sluice/local/stack.json``)."""
    web_distribution_id: str | None = None
    web_response_headers: Mapping[str, str] = field(default_factory=dict)
    """The security headers the web app is served with (CSP, HSTS...)."""
    source: str = ""
    """Where the names came from, for messages."""

    @property
    def queue_for_bucket(self) -> dict[str, str]:
        """Bucket name -> URL of the queue its notifications feed (DLQ redrive target)."""
        return {
            bucket: self.queue_urls[function]
            for bucket, function in self.bucket_functions.items()
            if function in self.queue_urls
        }

    @classmethod
    def from_outputs(cls, name: str, values: Mapping[str, Any], source: str) -> Environment:
        def required(key: str) -> Any:
            value = values.get(key)
            if not value:
                raise OutputsNotFoundError(
                    f"outputs for environment {name!r} in {source} have no {key!r}:"
                    f" re-apply Terraform (./deploy.sh {name} apply) or fix the file"
                )
            return value

        queue_urls = required("queue_urls")
        if not isinstance(queue_urls, Mapping):
            raise OutputsNotFoundError(
                f"outputs for environment {name!r} in {source}: queue_urls must be a map"
            )
        functions = values.get("function_names") or {}
        return cls(
            name=name,
            raw_bucket=str(required("raw_bucket_name")),
            processed_bucket=str(required("processed_bucket_name")),
            archive_bucket=str(required("archive_bucket_name")),
            work_bucket=str(required("work_bucket_name")),
            queue_urls={str(k): str(v) for k, v in queue_urls.items()},
            dead_letter_queue_url=str(required("dead_letter_queue_url")),
            bucket_functions={
                str(k): str(v) for k, v in dict(values.get("bucket_functions") or {}).items()
            },
            dead_letter_queue_arn=values.get("dead_letter_queue_arn") or None,
            images_table=values.get("images_table_name") or None,
            labels_table=values.get("labels_table_name") or None,
            bundle_topic_arn=values.get("bundle_topic_arn") or None,
            region=values.get("region") or None,
            function_names={str(k): str(v) for k, v in dict(functions).items()},
            api_url=values.get("api_url") or None,
            api_id=values.get("api_id") or None,
            user_pool_id=values.get("user_pool_id") or None,
            cli_client_id=values.get("cli_client_id") or None,
            web_url=values.get("web_url") or None,
            web_distribution_id=values.get("web_distribution_id") or None,
            web_response_headers={
                str(k): str(v) for k, v in dict(values.get("web_response_headers") or {}).items()
            },
            source=source,
        )


def select_environment(document: Any, environment: str, source: str) -> Environment:
    """Pick ``environment`` out of any of the accepted outputs document shapes."""
    if not isinstance(document, Mapping):
        raise OutputsNotFoundError(f"{source} is not a JSON object of Terraform outputs")
    # The whole `terraform output -json` document wraps each output in {"value": ...}.
    wrapped = document.get("environments")
    if isinstance(wrapped, Mapping) and "value" in wrapped:
        document = wrapped["value"]
        if not isinstance(document, Mapping):
            raise OutputsNotFoundError(f"{source}: output 'environments' is not a map")
    if "raw_bucket_name" in document:  # a single environment's object
        return Environment.from_outputs(environment, document, source)
    values = document.get(environment)
    if not isinstance(values, Mapping):
        known = ", ".join(sorted(str(k) for k in document)) or "none"
        raise OutputsNotFoundError(
            f"{source} has no outputs for environment {environment!r} (it has: {known}):"
            f" run ./deploy.sh {environment} apply, or pass --outputs-file"
        )
    return Environment.from_outputs(environment, values, source)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OutputsNotFoundError(f"cannot read outputs file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise OutputsNotFoundError(f"outputs file {path} is not valid JSON: {exc}") from None


def terraform_error(stderr: str) -> str:
    """The first ``Error:`` line of Terraform's framed diagnostics, else the first line."""
    lines = [line.strip("│╷╵ \t") for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or ["no error output"])[0]


def _terraform_outputs(project_dir: Path, environment: str) -> Any:
    hint = f"run ./deploy.sh {environment} apply, or pass --outputs-file"
    terraform = shutil.which("terraform")
    if terraform is None:
        raise OutputsNotFoundError(
            f"no outputs for environment {environment!r}: no --outputs-file, no"
            f" {workdir.outputs_path(project_dir, environment)}, and terraform is not on PATH:"
            f" {hint}"
        )
    try:
        completed = subprocess.run(
            [terraform, "output", "-no-color", "-json", "environments"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=TERRAFORM_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OutputsNotFoundError(
            f"terraform output took longer than {TERRAFORM_TIMEOUT_SECONDS} s in {project_dir}:"
            f" {hint}"
        ) from None
    if completed.returncode != 0:
        reason = terraform_error(completed.stderr)
        raise OutputsNotFoundError(
            f"no outputs for environment {environment!r}: `terraform output` in {project_dir}"
            f" failed ({reason}): {hint}"
        )
    try:
        return json.loads(completed.stdout)
    except ValueError:
        raise OutputsNotFoundError(
            f"`terraform output -json environments` in {project_dir} did not print JSON: {hint}"
        ) from None


def resolve_environment(
    environment: str, *, outputs_file: Path | None, project_dir: Path
) -> Environment:
    """The environment's resource names, from the first source that exists (see module doc)."""
    if outputs_file is not None:
        return select_environment(_read_json(outputs_file), environment, str(outputs_file))
    cached = workdir.outputs_path(project_dir, environment)
    if cached.is_file():
        return select_environment(_read_json(cached), environment, str(cached))
    document = _terraform_outputs(project_dir, environment)
    source = f"the Terraform state of {project_dir}"
    try:
        return select_environment(document, environment, source)
    except OutputsNotFoundError as exc:
        # One state per environment: the selected backend may belong to another one.
        raise OutputsNotFoundError(
            f"{exc} (Terraform reads the state of the backend it was last initialised with;"
            f" ./deploy.sh {environment} selects that environment's backend)"
        ) from None


@dataclass(frozen=True)
class Connection:
    """Where to send API calls, and as whom.

    ``profile`` is the AWS named profile (``--profile``); None leaves the choice to boto3,
    which reads ``AWS_PROFILE`` and falls back to the default profile, as the aws CLI does.
    """

    region: str | None
    endpoint_url: str | None
    profile: str | None = None


def connection_for(
    environment: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    outputs_region: str | None,
    stack_endpoint: str | None = None,
    profile: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> Connection:
    """Flags win, then the environment variables boto3 honours, then the outputs.

    The local environment's endpoint falls back to the running stack's record, then to
    the default emulator address.
    """
    endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL") or None
    if endpoint is None and environment == LOCAL_ENVIRONMENT:
        endpoint = stack_endpoint or LOCAL_ENDPOINT_URL
    chosen_region = (
        region or outputs_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    )
    if chosen_region is None and environment == LOCAL_ENVIRONMENT:
        chosen_region = LOCAL_REGION
    return Connection(region=chosen_region, endpoint_url=endpoint, profile=profile or None)


@dataclass
class Clients:
    """The clients one command uses, built once from one session."""

    s3: S3Client
    sqs: SQSClient
    connection: Connection

    @classmethod
    def build(cls, connection: Connection, *, emulator: bool) -> Clients:
        """Raises botocore's ``ProfileNotFound`` when the named profile is not configured."""
        session = boto3.session.Session(
            region_name=connection.region, profile_name=connection.profile
        )
        if emulator and session.get_credentials() is None:
            # Emulators accept any key; this spares a local user from configuring one.
            session = boto3.session.Session(
                region_name=connection.region,
                profile_name=connection.profile,
                aws_access_key_id="test",
                aws_secret_access_key="test",  # noqa: S106 - emulator placeholder
            )
        return cls(
            s3=session.client("s3", endpoint_url=connection.endpoint_url, config=CLIENT_CONFIG),
            sqs=session.client("sqs", endpoint_url=connection.endpoint_url, config=CLIENT_CONFIG),
            connection=connection,
        )
