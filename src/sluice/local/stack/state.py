"""Where the local stack keeps its pids, logs, worker records and cached outputs.

By default the project's ``.sluice/local/`` (:mod:`sluice.workdir`), or a directory of its
own (``--state-dir``: a second stack of the same checkout, e.g. the end-to-end tests').
Every file in it is named here, except LocalStack's (:mod:`sluice.local.stack.localstack`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice import workdir
from sluice.local.procs import PidFile
from sluice.ops.environment import LOCAL_ENVIRONMENT

__all__ = ["LOCAL_ENVIRONMENT", "StateDir"]


@dataclass(frozen=True)
class StateDir:
    """The files of one project's local stack; the directory is git-ignored."""

    root: Path
    """The project directory (holds the root Terraform module)."""
    directory: Path | None = None
    """Where the files go instead of ``<root>/.sluice/local`` (e.g. a test's own)."""

    @property
    def path(self) -> Path:
        return self.directory or workdir.environment_dir(self.root, LOCAL_ENVIRONMENT)

    @property
    def moto_pid(self) -> PidFile:
        return PidFile(self.path / "moto.pid", "moto.server")

    @property
    def moto_log(self) -> Path:
        return self.path / "moto.log"

    @property
    def runner_pid(self) -> PidFile:
        return PidFile(self.path / "runner.pid", "sluice.local.lambdas.runner")

    @property
    def workers(self) -> Path:
        """The runner's ``--worker-dir``: a record of each worker that serves its function
        (:class:`sluice.local.lambdas.supervisor.WorkerRecord`)."""
        return self.path / "workers"

    @property
    def runner_log(self) -> Path:
        return self.path / "runner.log"

    @property
    def api_pid(self) -> PidFile:
        return PidFile(self.path / "api.pid", "sluice.local.stack.apiserver")

    @property
    def api_log(self) -> Path:
        return self.path / "api.log"

    @property
    def web_pid(self) -> PidFile:
        return PidFile(self.path / "web.pid", "sluice.local.stack.webserver")

    @property
    def web_log(self) -> Path:
        return self.path / "web.log"

    @property
    def web_headers(self) -> Path:
        """The web app's security headers, from the Terraform outputs, for the web server."""
        return self.path / "web-headers.json"

    @property
    def worker_logs(self) -> Path:
        return self.path / "logs"

    @property
    def build_log(self) -> Path:
        return self.path / "build.log"

    @property
    def terraform_log(self) -> Path:
        return self.path / "terraform.log"

    @property
    def terraform_data_dir(self) -> Path:
        """``TF_DATA_DIR``: local init must not clobber a dev/prod ``.terraform/``."""
        return self.path / "terraform"

    @property
    def terraform_cli_config(self) -> Path:
        """Written by ``scripts/terraformrc.sh`` (via ``scripts/bootstrap.sh``)."""
        return workdir.terraformrc(self.root)

    @property
    def outputs(self) -> Path:
        """The ``environments`` Terraform output (read by the CLI, docs/contracts.md)."""
        return self.path / workdir.OUTPUTS_FILE

    @property
    def stack(self) -> Path:
        """Endpoint and port of the running stack, for ``down`` and other tools."""
        return self.path / workdir.STACK_FILE

    def write_stack(self, values: dict[str, Any]) -> None:
        workdir.replace_text(self.stack, json.dumps(values, indent=2) + "\n")

    def read_stack(self) -> dict[str, Any]:
        try:
            value = json.loads(self.stack.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}
