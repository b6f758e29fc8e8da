"""Apply the root Terraform module to the emulator, with the local environment's files.

The same root module and the same S3 backend type as dev and prod (decision 6, docs/decisions.md):
only ``env/local.tfvars``, ``env/local.backend.hcl`` and the endpoint differ. Terraform's
own output goes to ``.sluice/local/terraform.log``; the console gets one progress line.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sluice.local import awsenv
from sluice.local.stack.state import LOCAL_ENVIRONMENT, StateDir

TFVARS = Path("env") / f"{LOCAL_ENVIRONMENT}.tfvars"
BACKEND_CONFIG = Path("env") / f"{LOCAL_ENVIRONMENT}.backend.hcl"
APPLY_TIMEOUT_SECONDS = 900.0
PARALLELISM = 64
"""Terraform's concurrent operations against the emulator (its default is 10). The
provider waits on some creates whatever the endpoint (an SQS queue 25 s, a bucket's
lifecycle rules 55 s): with 10 slots those waits queue behind each other, and an apply
of the local environment took about 30 s longer. An emulator on this machine has no
API rate limits to respect."""
INIT_TIMEOUT_SECONDS = 300.0

_PLAN = re.compile(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy")
_DONE = re.compile(
    r"^(?P<address>\S+): (Creation|Modifications|Destruction) complete after", re.MULTILINE
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TerraformError(RuntimeError):
    """A Terraform step failed; the message names the log to read."""


def hcl_string(path: Path, name: str) -> str | None:
    """The value of a top-level ``name = "value"`` line of an HCL file (tfvars, backend)."""
    match = re.search(rf'^\s*{re.escape(name)}\s*=\s*"([^"]*)"', path.read_text(), re.MULTILINE)
    return match.group(1) if match else None


@dataclass
class _Progress:
    """One console line for a long Terraform step: a bar on a terminal, sparse lines if not."""

    label: str
    out: TextIO
    total: int | None = None
    done: int = 0
    last: str = ""
    _printed_at: float = field(default=0.0)
    _printed: str = ""

    def update(self, line: str) -> None:
        plan = _PLAN.search(line)
        if plan:
            self.total = int(plan.group(1)) + int(plan.group(2)) + int(plan.group(3))
        finished = _DONE.search(line)
        if finished:
            self.done += 1
            self.last = finished.group("address")
        self._show()

    def _text(self) -> str:
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        return f"{self.label}: {count} resources" + (f" (last: {self.last})" if self.last else "")

    def _show(self, final: bool = False) -> None:
        now = time.monotonic()
        if self.out.isatty():
            self.out.write("\r\x1b[K" + self._text()[:150] + ("\n" if final else ""))
            self.out.flush()
        elif final or (now - self._printed_at >= 10 and self._text() != self._printed):
            print(self._text(), file=self.out, flush=True)
            self._printed_at, self._printed = now, self._text()

    def finish(self) -> None:
        self._show(final=True)


@dataclass
class Terraform:
    state: StateDir
    endpoint_url: str
    out: TextIO
    binary: str = "terraform"

    def env(self) -> dict[str, str]:
        env = awsenv.local_env(self.endpoint_url)
        env.update({"TF_DATA_DIR": str(self.state.terraform_data_dir), "TF_IN_AUTOMATION": "1"})
        if self.state.terraform_cli_config.is_file():
            env["TF_CLI_CONFIG_FILE"] = str(self.state.terraform_cli_config)
        return env

    def _executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise TerraformError(
                "terraform is not on PATH: install Terraform >= 1.10, then run ./deploy.sh local"
            )
        return found

    def run(self, args: Sequence[str], *, label: str, timeout: float, progress: bool = True) -> str:
        """Run ``terraform args``, streaming its output to the log; its output on success."""
        command = [self._executable(), *args, "-no-color"]
        self.state.terraform_log.parent.mkdir(parents=True, exist_ok=True)
        shown = _Progress(label, self.out) if progress else None
        captured: list[str] = []
        with self.state.terraform_log.open("a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(
                command,
                cwd=self.state.root,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            timer = threading.Timer(timeout, process.kill)
            timer.start()
            try:
                assert process.stdout is not None
                for raw in process.stdout:
                    line = _ANSI.sub("", raw)
                    log.write(line)
                    log.flush()
                    captured.append(line)
                    if shown is not None:
                        shown.update(line)
                code = process.wait()
            finally:
                timer.cancel()
        if shown is not None:
            shown.finish()
        if code != 0:
            reason = _first_error(captured)
            timed_out = " (timed out)" if code < 0 else ""
            raise TerraformError(
                f"terraform {args[0]} failed{timed_out}: {reason}\n"
                f"  full output: {self.state.terraform_log}"
            )
        return "".join(captured)

    def ensure_state_bucket(self, s3: Any) -> str:
        """The backend's bucket lives in the emulator; a fresh emulator needs it created."""
        bucket = hcl_string(self.state.root / BACKEND_CONFIG, "bucket")
        if not bucket:
            raise TerraformError(f'{BACKEND_CONFIG} has no bucket = "..." line')
        with contextlib.suppress(
            s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists
        ):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return bucket

    def init(self, state_key: str | None = None) -> None:
        """``init`` with the local backend; ``state_key`` replaces the backend file's key."""
        self.run(
            [
                "init",
                "-reconfigure",
                "-input=false",
                f"-backend-config={BACKEND_CONFIG}",
                # The backend file names the default port; the stack may run on another.
                f'-backend-config=endpoints={{s3="{self.endpoint_url}"}}',
                *([f"-backend-config=key={state_key}"] if state_key else []),
            ],
            label="terraform init",
            timeout=INIT_TIMEOUT_SECONDS,
            progress=False,
        )

    def apply(
        self, extra_var_files: Sequence[Path] = (), variables: Mapping[str, str] | None = None
    ) -> None:
        """Apply ``env/local.tfvars`` (then ``extra_var_files``, which win) to the endpoint.

        ``variables``: more ``-var`` values, each already in HCL syntax.

        A failed apply is applied again, once. On a loaded machine the emulator can answer a
        create slower than the provider waits; the provider then retries a create the
        emulator already made (CloudFront answers ``DistributionAlreadyExists`` for the
        caller reference it retried with). The state never recorded the first, so a second
        apply creates what is missing. A failure that is not transient fails again, with
        its own message; against AWS, ``deploy.sh`` applies once, as reviewed.
        """
        args = [
            "apply",
            "-auto-approve",
            "-input=false",
            f"-parallelism={PARALLELISM}",
            f"-var-file={TFVARS}",
            *(f"-var-file={path}" for path in extra_var_files),
            f"-var=aws_endpoint_url={self.endpoint_url}",
            *(f"-var={name}={value}" for name, value in (variables or {}).items()),
        ]
        try:
            self.run(args, label="terraform apply", timeout=APPLY_TIMEOUT_SECONDS)
        except TerraformError as error:
            first_line = str(error).splitlines()[0]
            print(f"{first_line}\nterraform apply: applying again, once", file=self.out)
            self.run(args, label="terraform apply (again)", timeout=APPLY_TIMEOUT_SECONDS)

    def _capture(self, args: list[str], stdin: str | None = None) -> str:
        """Run a quick terraform subcommand and return its output; fail with its stderr."""
        result = subprocess.run(
            [self._executable(), *args],
            input=stdin,
            cwd=self.state.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=INIT_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise TerraformError(f"terraform {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def local_variable(self, name: str, extra_var_files: Sequence[Path] = ()) -> Any:
        """The value ``env/local.tfvars`` (then ``extra_var_files``) gives variable ``name``
        (``terraform console``)."""
        stdout = self._capture(
            ["console", f"-var-file={TFVARS}", *(f"-var-file={path}" for path in extra_var_files)],
            stdin=f"jsonencode(var.{name})\n",
        )
        # The console prints the JSON text as an HCL string literal, whose escapes are JSON's.
        return json.loads(json.loads(stdout.strip()))

    def environments_output(self, environment: str = LOCAL_ENVIRONMENT) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._capture(["output", "-json", "environments"]))
        if environment not in value:
            raise TerraformError(
                f"terraform output 'environments' has no {environment!r} entry:"
                f" check {TFVARS} and the extra variable files"
            )
        return value


def _first_error(lines: Sequence[str]) -> str:
    for index, line in enumerate(lines):
        if line.strip().startswith("Error:") or "│ Error:" in line:
            detail = line.strip(" │\n")
            following = [
                ln.strip(" │\n") for ln in lines[index + 1 : index + 4] if ln.strip(" │\n")
            ]
            return " / ".join([detail, *following])[:400]
    return (lines[-1].strip() if lines else "no output")[:400]
