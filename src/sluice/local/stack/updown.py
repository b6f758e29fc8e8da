"""``sluice up`` and ``sluice down``: the whole pipeline on this machine.

``up`` runs, in order and each with a deadline:

1. the emulator: a moto server on 127.0.0.1:<port> (reused when one already answers), or
   with ``--emulator localstack`` a LocalStack host process (:mod:`sluice.local.stack.localstack`);
2. the build: ``scripts/build_artifacts.py`` for the local architecture (its wheel cache
   makes a rebuild offline and quick);
3. Terraform: the state bucket in the emulator, ``init`` with ``env/local.backend.hcl``,
   ``apply`` with ``env/local.tfvars``; the ``environments`` output is cached in
   ``.sluice/local/outputs.json`` for the CLI;
4. the runner (:mod:`sluice.local.lambdas.runner`), restarted so it serves the code and wiring
   just applied, and the API server (:mod:`sluice.local.stack.apiserver`) on the emulator's
   port + 1 (``--api-port``), serving the HTTP API Terraform created, and the web server
   (:mod:`sluice.local.stack.webserver`) on port + 2 (``--web-port``), serving the web app's
   distribution (Terraform learns both URLs as ``runtime_urls``, so the app's
   ``config.json``, the API's CORS and the Content-Security-Policy name them); then
   ``up`` waits until the queues have settled (see below);
5. unless ``--no-samples``: ``samples/`` uploaded to RAW with ``aws s3 cp --recursive``,
   a receipt awaited for every input, the queues drained, a bundle requested for the most
   common label; then the summary.

Why the queues must settle before ``up`` returns: writing a bucket's notification
configuration makes S3 send an ``s3:TestEvent`` to each queue, so every queue holds one
when the runner starts. The handlers acknowledge it, but until then it is an ordinary
message: if the first real inputs arrive while the workers are still at their cold
start, it shares their batches and their fate. A batch that fails as a whole (a timeout
on a busy machine, a crash) returns it too, and after ``maxReceiveCount`` such rounds it
is dead-lettered with them; the chaos test saw exactly that under load. Waiting until the
runner has consumed what is already queued means the inputs of the caller, who proceeds
once ``up`` returns, never share a batch with those events. (A test event that still
reaches a dead-letter queue, as it also can in AWS, is deleted by ``sluice redrive``.)
The wait is bounded; a queue that stays busy (a backlog from an earlier run) is
reported and ``up`` goes on.

It is idempotent: run it again after changing code or Terraform. ``down`` stops the
runner, then the emulator (which holds all local state, Terraform's included).

``--var-file`` adds variable files after ``env/local.tfvars`` (later files win, and a
file that sets ``environments`` replaces the whole map), and ``--environment`` names the
environment of that map to serve and summarise. Another environment than ``local`` keeps
its Terraform state under its own key (``sluice/<environment>/terraform.tfstate``), so
applying it never plans to destroy the local environment. The chaos test
(``tests/e2e/test_chaos.py``) uses both for an environment with short timeouts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sluice import workdir
from sluice.keys import RECEIPTS_PREFIX, receipt_key
from sluice.label_items import label_counts
from sluice.local import awsenv, procs
from sluice.local.lambdas.supervisor import read_records, remove_record
from sluice.local.stack import localstack, summary
from sluice.local.stack.emulator import EmulatorError, ensure_moto, stop_moto, tail
from sluice.local.stack.state import LOCAL_ENVIRONMENT, StateDir
from sluice.local.stack.terraform import TFVARS, Terraform, TerraformError, hcl_string
from sluice.ops.audit import pending_messages, wait_until_drained
from sluice.ops.bundle import wait_for_status, write_request
from sluice.ops.environment import Environment, select_environment
from sluice.ops.objects import list_objects

DEFAULT_TIMEOUT_SECONDS = 300.0
BUILD_TIMEOUT_SECONDS = 900.0
RUNNER_START_SECONDS = 60.0
RUNNER_STOP_GRACE_SECONDS = 40.0
QUEUES_SETTLE_SECONDS = 180.0
"""Enough for a test event whose first batch failed to come back once (6 x timeout)."""
SAMPLES_DIR = "samples"
EMULATORS = ("moto", "localstack")


class UpError(RuntimeError):
    """A step of ``up`` failed; the message says what happened and what to look at."""


@dataclass(frozen=True)
class UpOptions:
    port: int = awsenv.DEFAULT_PORT
    samples: bool = True
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    serve: bool = False
    environment: str = LOCAL_ENVIRONMENT
    var_files: tuple[Path, ...] = ()
    emulator: str = EMULATORS[0]
    api_port: int | None = None
    web_port: int | None = None

    @property
    def api_url(self) -> str:
        return awsenv.endpoint_for(self.api_port or self.port + 1)

    @property
    def web_url(self) -> str:
        return awsenv.endpoint_for(self.web_port or self.port + 2)


def state_key_for(environment: str) -> str | None:
    """The backend key of ``environment``'s state; None keeps the backend file's (local)."""
    return None if environment == LOCAL_ENVIRONMENT else f"sluice/{environment}/terraform.tfstate"


def project_root(start: Path | None = None) -> Path:
    """The checkout holding the root Terraform module (``main.tf`` and ``env/``)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "main.tf").is_file() and (candidate / TFVARS).is_file():
            return candidate
    raise UpError(f"no sluice checkout (main.tf and {TFVARS}) at or above {here}")


class _Console:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._started = time.monotonic()
        self._last_progress = ""

    def step(self, message: str) -> None:
        print(f"[{time.monotonic() - self._started:5.0f}s] {message}", file=self.out, flush=True)

    def progress(self, message: str, *, final: bool = False) -> None:
        """A line that updates in place on a terminal; elsewhere printed when it changes."""
        if self.out.isatty():
            self.out.write("\r\x1b[K" + message + ("\n" if final else ""))
            self.out.flush()
        elif message != self._last_progress:
            print(message, file=self.out, flush=True)
        self._last_progress = message


def _poll(check: Callable[[], bool], *, deadline: float, interval: float = 1.0) -> bool:
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# --- steps ------------------------------------------------------------------------------


def build_artifacts(state: StateDir, console: _Console) -> None:
    script = state.root / "scripts" / "build_artifacts.py"
    if not script.is_file():
        raise UpError(f"{script} is missing: the build step cannot run")
    arch = hcl_string(state.root / TFVARS, "architecture") or "x86_64"
    log = state.build_log
    log.parent.mkdir(parents=True, exist_ok=True)
    console.step(f"build: code and {arch} layer zips into build/ (log {log})")
    with log.open("ab") as output:
        try:
            result = subprocess.run(
                [sys.executable, str(script), "--arch", arch],
                cwd=state.root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UpError(
                f"build took longer than {BUILD_TIMEOUT_SECONDS:.0f} s: see {log}"
            ) from None
    if result.returncode != 0:
        raise UpError(f"build failed (exit {result.returncode}): see {log}\n{tail(log)}")


def apply_terraform(
    state: StateDir,
    endpoint_url: str,
    console: _Console,
    *,
    environment: str = LOCAL_ENVIRONMENT,
    var_files: tuple[Path, ...] = (),
    runtime_urls: Mapping[str, str] | None = None,
    emulator: str = EMULATORS[0],
) -> Environment:
    terraform = Terraform(state, endpoint_url, console.out)
    bucket = terraform.ensure_state_bucket(awsenv.client("s3", endpoint_url))
    console.step(f"terraform: init (state in s3://{bucket}, log {state.terraform_log})")
    terraform.init(state_key=state_key_for(environment))
    if emulator == "localstack":
        # What LocalStack's community edition lacks (Cognito, API Gateway v2, CloudFront)
        # is switched off: the variable files' environments, restated with those off.
        environments = terraform.local_variable(
            "environments", [path.resolve() for path in var_files]
        )
        variant = localstack.write_variant(state.path, environments)
        console.step(
            "terraform: the API, sign-in and web app are off on LocalStack (no "
            + ", ".join(localstack.MISSING_SERVICES.values())
            + f" in its community edition): {variant}"
        )
        var_files = (*var_files, variant)
    files = " ".join(f"-var-file={path}" for path in (TFVARS, *var_files))
    console.step(f"terraform: apply {files} (a minute or more)")
    variables = {"runtime_urls": hcl_object(runtime_urls)} if runtime_urls else None
    terraform.apply(extra_var_files=[path.resolve() for path in var_files], variables=variables)
    document = terraform.environments_output(environment)
    workdir.replace_text(state.outputs, _json(document))
    return select_environment(document, environment, str(state.outputs))


def hcl_object(values: Mapping[str, str]) -> str:
    """``{a="x",b="y"}``: a map of strings as a ``-var`` value (JSON strings are HCL strings)."""
    import json

    return "{" + ",".join(f"{name}={json.dumps(value)}" for name, value in values.items()) + "}"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class StoppedRunner:
    supervisor: int | None
    """The supervisor's pid, or None if none was running."""
    workers: tuple[int, ...] = ()
    """Workers that outlived their supervisor and were stopped one by one."""

    @property
    def anything(self) -> bool:
        return self.supervisor is not None or bool(self.workers)


def stop_runner(
    state: StateDir, *, grace_seconds: float = RUNNER_STOP_GRACE_SECONDS
) -> StoppedRunner:
    """Stop the runner's supervisor and its process group, then any worker left behind.

    Workers die with their supervisor, but one that is finishing its batch (up to its
    function's timeout) outlives a killed supervisor for that long, and a supervisor
    that is gone no longer leads anything to signal. The records it wrote of its workers
    are then the only handle: each is signalled only if its command line still names it.
    """
    pid = state.runner_pid.running_pid()
    if pid is not None:
        procs.stop(pid, grace_seconds=grace_seconds, group=True)
    state.runner_pid.clear()
    records = read_records(state.workers)
    left = [record.pid for record in records if record.running()]
    procs.stop_all(left, grace_seconds=grace_seconds)
    for record in records:
        remove_record(state.workers, record.function)
    return StoppedRunner(pid, tuple(left))


def _describe(stopped: StoppedRunner) -> str:
    parts = [f"pid {stopped.supervisor}"] if stopped.supervisor is not None else []
    if stopped.workers:
        pids = ", ".join(str(pid) for pid in stopped.workers)
        parts.append(f"workers left behind by their supervisor: pids {pids}")
    return "; ".join(parts)


def start_runner(
    state: StateDir,
    endpoint_url: str,
    environment: Environment,
    console: _Console,
    *,
    environment_name: str = LOCAL_ENVIRONMENT,
    emulator: str = EMULATORS[0],
) -> int:
    previous = stop_runner(state)
    # LocalStack's EventBridge fires schedule rules itself; moto's does not, so the runner
    # stands in (sluice.local.lambdas.schedules): the bundle sweep runs once a period.
    schedules = ["--no-schedules"] if emulator == "localstack" else []
    if previous.anything:
        console.step(f"runner: stopped the previous runner ({_describe(previous)})")
    process = procs.spawn_detached(
        [
            sys.executable,
            "-m",
            "sluice.local.lambdas.runner",
            "--endpoint-url",
            endpoint_url,
            "--environment",
            environment_name,
            "--log-dir",
            str(state.worker_logs),
            "--worker-dir",
            str(state.workers),
            *schedules,
        ],
        log_path=state.runner_log,
        env=awsenv.local_env(endpoint_url),
        cwd=state.root,
    )
    state.runner_pid.write(process.pid)
    expected = len(environment.function_names) or 1
    ready: set[str] = set()

    def workers_ready() -> bool:
        if process.poll() is not None:
            raise UpError(
                f"the runner exited with code {process.returncode}: see {state.runner_log}\n"
                + tail(state.runner_log)
            )
        records = read_records(state.workers)
        ready.update(r.function for r in records if r.supervisor == process.pid)
        return len(ready) >= expected

    if not _poll(workers_ready, deadline=time.monotonic() + RUNNER_START_SECONDS, interval=0.3):
        waiting = sorted(set(environment.function_names.values()) - ready)
        raise UpError(
            f"the runner did not start its workers in time (not ready: {', '.join(waiting)}):"
            f" see {state.runner_log} and {state.worker_logs}/"
        )
    console.step(
        f"runner: serving {expected} functions (pid {process.pid}, log {state.runner_log},"
        f" function logs in {state.worker_logs}/)"
    )
    return process.pid


def settle_queues(
    pending: Callable[[], int],
    console: _Console,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until the runner has consumed what was queued before it started (module doc)."""
    console.step("runner: waiting for the queues to settle (the notifications' s3:TestEvents)")
    settled = wait_until_drained(pending, timeout=timeout, interval=0.5, clock=clock, sleep=sleep)
    if not settled:
        console.step(
            f"runner: the queues are still busy after {timeout:.0f} s (a backlog?);"
            " carrying on: see `sluice status`"
        )
    return settled


@dataclass(frozen=True)
class _Server:
    """A local server ``up`` starts beside the runner: the HTTP API or the web app."""

    name: str
    """``api`` or ``web``: its console prefix and its state files (``<name>_pid``, ``_log``)."""
    title: str
    module: str
    serves: str
    """What the environment lacks when there is nothing to serve."""

    def pid_file(self, state: StateDir) -> procs.PidFile:
        pid_file: procs.PidFile = getattr(state, f"{self.name}_pid")
        return pid_file

    def log(self, state: StateDir) -> Path:
        log: Path = getattr(state, f"{self.name}_log")
        return log


API_SERVER = _Server("api", "API server", "sluice.local.stack.apiserver", "HTTP API")
WEB_SERVER = _Server("web", "web server", "sluice.local.stack.webserver", "web app")


def _stop_server(state: StateDir, server: _Server) -> int | None:
    """Stop ``server``; the pid it had, or None if none was running."""
    pid_file = server.pid_file(state)
    pid = pid_file.running_pid()
    if pid is not None:
        procs.stop(pid, grace_seconds=10.0)
    pid_file.clear()
    return pid


def _start_server(
    state: StateDir,
    server: _Server,
    console: _Console,
    endpoint_url: str,
    *,
    arguments: list[str] | None,
    url: str,
) -> str | None:
    """Stop the previous ``server``, then serve at ``url`` with ``arguments`` (None: the
    environment has nothing for it to serve); the URL, once its log says it is serving."""
    previous = _stop_server(state, server)
    if previous is not None:
        console.step(f"{server.name}: stopped the previous {server.title} (pid {previous})")
    if arguments is None:
        console.step(f"{server.name}: not deployed in this environment (no {server.serves})")
        return None
    log_path = server.log(state)
    offset = log_path.stat().st_size if log_path.exists() else 0
    process = procs.spawn_detached(
        [sys.executable, "-m", server.module, "--endpoint-url", endpoint_url, *arguments],
        log_path=log_path,
        env=awsenv.local_env(endpoint_url),
        cwd=state.root,
    )
    server.pid_file(state).write(process.pid)
    ready = f"{server.module.rsplit('.', 1)[1]}: serving".encode()

    def serving() -> bool:
        if process.poll() is not None:
            raise UpError(
                f"the {server.title} exited with code {process.returncode}: see {log_path}\n"
                + tail(log_path)
            )
        with log_path.open("rb") as log:
            log.seek(offset)
            return ready in log.read()

    if not _poll(serving, deadline=time.monotonic() + RUNNER_START_SECONDS, interval=0.3):
        raise UpError(f"the {server.title} did not start in time: see {log_path}")
    console.step(f"{server.name}: serving {url} (pid {process.pid}, log {log_path})")
    return url


def start_api(
    state: StateDir, endpoint_url: str, environment: Environment, port: int, console: _Console
) -> str | None:
    """Serve the environment's HTTP API on 127.0.0.1:``port``; its URL (None without API)."""
    arguments = None
    if environment.api_id:
        arguments = ["--api-id", environment.api_id, "--port", str(port)]
    url = awsenv.endpoint_for(port)
    return _start_server(state, API_SERVER, console, endpoint_url, arguments=arguments, url=url)


def seeded_user(
    state: StateDir, endpoint_url: str, environment: str, console: _Console
) -> tuple[str, str] | None:
    """The seeded user's email and temporary password, as env/local.tfvars sets them."""
    try:
        environments = Terraform(state, endpoint_url, console.out).local_variable("environments")
    except TerraformError as error:
        console.step(f"web: cannot read the seeded user from {TFVARS}: {error}")
        return None
    seed = (environments.get(environment) or {}).get("seed_user")
    if not isinstance(seed, dict):
        return None
    return str(seed["email"]), str(seed["temporary_password"])


def start_web(
    state: StateDir, endpoint_url: str, environment: Environment, url: str, console: _Console
) -> str | None:
    """Serve the environment's web app at ``url`` (127.0.0.1:<port>); None without one."""
    arguments = None
    if environment.web_distribution_id:
        state.web_headers.write_text(_json(dict(environment.web_response_headers)))
        arguments = [
            "--distribution-id",
            environment.web_distribution_id,
            "--headers-file",
            str(state.web_headers),
            "--port",
            url.rsplit(":", 1)[1],
        ]
    return _start_server(state, WEB_SERVER, console, endpoint_url, arguments=arguments, url=url)


def upload_samples(samples: Path, environment: Environment, endpoint_url: str) -> list[str]:
    """``aws s3 cp --recursive samples/ s3://<raw>/``, as a user would; the keys sent."""
    keys = sorted(
        path.relative_to(samples).as_posix() for path in samples.rglob("*") if path.is_file()
    )
    if not keys:
        return keys
    aws = Path(sys.executable).with_name("aws")
    command = str(aws) if aws.exists() else shutil.which("aws")
    if command is None:
        raise UpError("the aws CLI is not installed: run ./deploy.sh local (it installs it)")
    result = subprocess.run(
        [
            command,
            "--endpoint-url",
            endpoint_url,
            "s3",
            "cp",
            "--recursive",
            "--only-show-errors",
            f"{samples}/",
            f"s3://{environment.raw_bucket}/",
        ],
        env=awsenv.local_env(endpoint_url),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise UpError(f"aws s3 cp failed: {result.stderr.strip() or result.stdout.strip()}")
    return keys


def wait_for_receipts(
    s3: Any,
    environment: Environment,
    keys: list[str],
    deadline: float,
    console: _Console,
    logs: Path,
) -> None:
    """Until every input has its receipt; ``logs``: the function logs, for the error."""
    wanted = {receipt_key(key): key for key in keys}
    seen: set[str] = set()

    def all_there() -> bool:
        present = {
            item.key for item in list_objects(s3, environment.processed_bucket, RECEIPTS_PREFIX)
        }
        seen.update(present & wanted.keys())
        console.progress(f"  receipts {len(seen)}/{len(wanted)}", final=len(seen) == len(wanted))
        return len(seen) == len(wanted)

    if not _poll(all_there, deadline=deadline, interval=1.0):
        missing = sorted(wanted[key] for key in wanted.keys() - seen)
        raise UpError(
            f"timed out: {len(missing)} of {len(wanted)} inputs have no receipt: "
            + ", ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + f"\n  see the function logs in {logs}/ and `sluice status --environment"
            f" {environment.name}`; raise --timeout if the machine is slow"
        )


def request_top_bundle(
    s3: Any,
    dynamodb: Any,
    environment: Environment,
    deadline: float,
    console: _Console,
    logs: Path,
) -> tuple[str | None, dict[str, Any] | None]:
    labels = label_counts(dynamodb, environment.labels_table) if environment.labels_table else []
    if not labels:
        console.step("bundle: no labels yet, nothing to bundle")
        return None, None
    label = labels[0][0]
    request = write_request(s3, environment.work_bucket, [label], match="any")
    console.step(f"bundle: requested {label!r} (s3://{request.bucket}/{request.key})")
    status = wait_for_status(s3, request, timeout=max(1.0, deadline - time.monotonic()))
    if status is None:
        raise UpError(
            f"timed out waiting for s3://{request.bucket}/{request.status_key}:"
            f" see {logs}/{environment.function_names.get('bundle', '')}.log"
        )
    return label, status


# --- commands ---------------------------------------------------------------------------


def up(
    options: UpOptions, root: Path, out: TextIO = sys.stdout, *, state_dir: Path | None = None
) -> int:
    console = _Console(out)
    state = StateDir(root, state_dir.resolve() if state_dir else None)
    endpoint_url = awsenv.endpoint_for(options.port)
    try:
        console.step(f"emulator: {options.emulator} on {endpoint_url}")
        if options.emulator == "localstack":
            localstack.ensure(options.port, state, out)
        else:
            ensure_moto(options.port, state, out)
        build_artifacts(state, console)
        environment = apply_terraform(
            state,
            endpoint_url,
            console,
            environment=options.environment,
            var_files=options.var_files,
            runtime_urls={"api": options.api_url, "web": options.web_url},
            emulator=options.emulator,
        )
        start_runner(
            state,
            endpoint_url,
            environment,
            console,
            environment_name=options.environment,
            emulator=options.emulator,
        )
        api_port = options.api_port or options.port + 1
        api_url = start_api(state, endpoint_url, environment, api_port, console)
        web_url = start_web(state, endpoint_url, environment, options.web_url, console)
        state.write_stack(
            {
                "endpoint_url": endpoint_url,
                "port": options.port,
                "environment": options.environment,
                "api_url": api_url,
                "web_url": web_url,
                "emulator": options.emulator,
            }
        )
        s3 = awsenv.client("s3", endpoint_url)
        sqs = awsenv.client("sqs", endpoint_url)
        settle_queues(
            lambda: pending_messages(sqs, environment), console, timeout=QUEUES_SETTLE_SECONDS
        )
        dynamodb = awsenv.client("dynamodb", endpoint_url)
        keys: list[str] = []
        label: str | None = None
        bundle: dict[str, Any] | None = None
        if options.samples:
            deadline = time.monotonic() + options.timeout
            samples = root / SAMPLES_DIR
            keys = upload_samples(samples, environment, endpoint_url)
            console.step(f"samples: uploaded {len(keys)} files with aws s3 cp --recursive")
            wait_for_receipts(s3, environment, keys, deadline, console, state.worker_logs)
            console.step("pipeline: waiting for archive and tag to finish")
            if not wait_until_drained(
                lambda: pending_messages(sqs, environment),
                timeout=max(1.0, deadline - time.monotonic()),
                interval=1.0,
            ):
                raise UpError(
                    f"timed out waiting for the queues to drain: see {state.worker_logs}/"
                )
            label, bundle = request_top_bundle(
                s3, dynamodb, environment, deadline, console, state.worker_logs
            )
        result = summary.collect(s3, sqs, dynamodb, environment, endpoint_url, inputs=keys)
        result.bundle_label, result.bundle = label, bundle
        result.api_url = api_url
        result.web_url = web_url
        if web_url:
            result.web_user = seeded_user(state, endpoint_url, options.environment, console)
        print(summary.render(result), file=out, flush=True)
    except (EmulatorError, TerraformError, UpError) as error:
        print(f"sluice up: {error}", file=sys.stderr, flush=True)
        if (
            state.moto_pid.running_pid()
            or localstack.pid_file(state).running_pid()
            or state.runner_pid.running_pid()
            or state.api_pid.running_pid()
            or state.web_pid.running_pid()
        ):
            print(
                "sluice up: what is running was left running for inspection;"
                " `sluice down` stops it",
                file=sys.stderr,
            )
        return 1
    if options.serve:
        return serve(state, out)
    return 0


def serve(state: StateDir, out: TextIO) -> int:
    """Show the functions' logs until Ctrl-C, then stop the stack."""
    print("\nserving: function logs follow; Ctrl-C stops the stack", file=out, flush=True)
    offsets = {log: log.stat().st_size for log in state.worker_logs.glob("*.log")}
    code = 0
    try:
        while True:
            if state.runner_pid.running_pid() is None:
                print(f"the runner stopped: see {state.runner_log}", file=sys.stderr)
                code = 1
                break
            for log in sorted(state.worker_logs.glob("*.log")):
                with log.open("rb") as handle:
                    handle.seek(offsets.get(log, 0))
                    chunk = handle.read()
                    offsets[log] = handle.tell()
                for line in chunk.decode(errors="replace").splitlines():
                    print(f"{log.stem}| {line}", file=out)
            out.flush()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("", file=out)
    down(state.root, out, state_dir=state.directory)
    return code


def down(root: Path, out: TextIO = sys.stdout, *, state_dir: Path | None = None) -> int:
    state = StateDir(root, state_dir.resolve() if state_dir else None)
    web = _stop_server(state, WEB_SERVER)
    if web is not None:
        print(f"web: stopped (pid {web})", file=out, flush=True)
    api = _stop_server(state, API_SERVER)
    if api is not None:
        print(f"api: stopped (pid {api})", file=out, flush=True)
    runner = stop_runner(state)
    if runner.anything:
        print(f"runner: stopped ({_describe(runner)})", file=out, flush=True)
    stopped_moto = stop_moto(state, out)
    stopped_localstack = localstack.stop(state, out)
    for path in (state.stack, state.outputs):
        path.unlink(missing_ok=True)
    if not (runner.anything or api or web or stopped_moto or stopped_localstack):
        print("nothing to stop: no runner or emulator started by sluice up is running", file=out)
    return 0
