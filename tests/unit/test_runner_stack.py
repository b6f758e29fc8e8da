"""Parts of ``sluice up``/``down`` that need no emulator: commands, pids, Terraform, summary."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.local.procs import PidFile, command_line, stop
from sluice.local.stack.commands import register
from sluice.local.stack.summary import Rejection, Summary, render
from sluice.local.stack.terraform import _first_error, _Progress, hcl_string
from sluice.local.stack.updown import _Console, settle_queues
from sluice.ops.environment import Environment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_register_adds_up_and_down_with_their_options() -> None:
    args = _parser().parse_args(["up", "--port", "4600", "--no-samples", "--timeout", "90"])
    assert (args.port, args.no_samples, args.timeout, args.serve) == (4600, True, 90.0, False)
    assert callable(args.run)
    assert callable(_parser().parse_args(["down"]).run)


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_up_rejects_a_port_that_is_not_one(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["up", "--port", port])
    assert exit_info.value.code == 2
    assert "port" in capsys.readouterr().err


def test_hcl_string_reads_a_top_level_assignment(tmp_path: Path) -> None:
    backend = tmp_path / "local.backend.hcl"
    backend.write_text(
        '# state\nbucket       = "sluice-local-tfstate"\nendpoints = {\n  s3 = "x"\n}\n'
    )
    assert hcl_string(backend, "bucket") == "sluice-local-tfstate"
    assert hcl_string(backend, "key") is None


def test_terraform_progress_counts_planned_and_finished_resources() -> None:
    out = io.StringIO()
    progress = _Progress("terraform apply", out)
    for line in [
        "Plan: 3 to add, 1 to change, 0 to destroy.",
        'module.pipeline["local"].aws_sqs_queue.dlq: Creation complete after 1s [id=x]',
        "aws_s3_bucket.this: Modifications complete after 0s",
    ]:
        progress.update(line)
    progress.finish()
    assert out.getvalue().splitlines()[-1] == (
        "terraform apply: 2/4 resources (last: aws_s3_bucket.this)"
    )


def test_first_error_quotes_terraforms_diagnostic() -> None:
    lines = [
        "aws_s3_bucket.this: Creating...\n",
        "╷\n",
        "│ Error: creating S3 Bucket (x): BucketAlreadyExists\n",
        "│ \n",
        "│   with module.pipeline.aws_s3_bucket.this,\n",
    ]
    assert _first_error(lines) == (
        "Error: creating S3 Bucket (x): BucketAlreadyExists"
        " / with module.pipeline.aws_s3_bucket.this,"
    )


def test_pid_file_forgets_a_pid_that_is_not_its_process(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "moto.pid", "moto.server")
    pid_file.write(os.getpid())  # alive, but this is pytest, not moto
    assert pid_file.running_pid() is None
    assert not pid_file.path.exists()


def test_stop_ends_a_process_that_the_pid_file_names(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)  # sluice-test-marker"]
    )
    deadline = time.monotonic() + 10
    # /proc shows the new command line only once the exec has completed.
    while "sluice-test-marker" not in (command_line(child.pid) or ""):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid_file = PidFile(tmp_path / "runner.pid", "sluice-test-marker")
    pid_file.write(child.pid)
    assert pid_file.running_pid() == child.pid
    assert stop(child.pid, grace_seconds=10) is True
    assert child.poll() is not None
    assert pid_file.running_pid() is None


def _environment() -> Environment:
    return Environment(
        name="local",
        raw_bucket="sluice-local-raw-1-us-east-1",
        processed_bucket="p",
        archive_bucket="a",
        work_bucket="sluice-local-work-1-us-east-1",
        queue_urls={"transform": "q"},
        dead_letter_queue_url="dlq",
        function_names={"transform": "sluice-local-transform"},
    )


def test_summary_lists_rejections_labels_bundle_and_commands() -> None:
    summary = Summary(
        _environment(),
        "http://127.0.0.1:4600",
        inputs=3,
        processed=["photos/a.jpg", "retina/x.json"],
        rejected=[Rejection("other/notes.txt", ("unsupported_type: unsupported type: .txt",))],
        thumbnails=2,
        labels=[("shape:landscape", 1)],
        bundle_label="shape:landscape",
        bundle={"status": "ready", "image_count": 1, "bytes": 2048, "url": "http://signed"},
    )
    text = render(summary)
    assert "inputs      3" in text
    assert "processed   2" in text
    assert "  - other/notes.txt: unsupported_type: unsupported type: .txt" in text
    assert "shape:landscape (1)" in text
    assert "'shape:landscape': ready, 1 images" in text
    assert "http://signed" in text
    assert (
        "aws --endpoint-url http://127.0.0.1:4600 s3 cp photo.jpg s3://sluice-local-raw-1-us-east-1/"
        in text
    )
    assert "logs tail /aws/lambda/sluice-local-transform" in text
    assert "sluice down" in text


def test_summary_says_the_api_and_web_app_are_not_deployed_where_they_are_off() -> None:
    summary = Summary(_environment(), "http://127.0.0.1:4600", inputs=0)
    text = render(summary)
    assert "API         not deployed in this environment (api.enabled is false)" in text
    assert "Web app     not deployed in this environment (web.enabled is false)" in text
    assert "sluice login" not in text


def test_summary_shows_how_to_reach_the_api_and_web_app_where_they_are_on() -> None:
    summary = Summary(_environment(), "http://127.0.0.1:4600", inputs=0)
    summary.api_url, summary.web_url = "http://127.0.0.1:4601", "http://127.0.0.1:4602"
    text = render(summary)
    assert "API         http://127.0.0.1:4601" in text
    assert "curl http://127.0.0.1:4601/health" in text
    assert "Web app     http://127.0.0.1:4602" in text
    assert "not deployed" not in text


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_up_waits_until_the_runner_has_consumed_what_was_queued_before_it() -> None:
    """The notifications' s3:TestEvents must not share a batch with the first inputs."""
    readings = iter([4, 4, 1, 0, 0])
    clock = _FakeClock()
    out = io.StringIO()
    settled = settle_queues(
        lambda: next(readings), _Console(out), timeout=60, clock=clock, sleep=clock.sleep
    )
    assert settled
    assert next(readings, None) is None, "every reading taken: empty twice in a row"
    assert "waiting for the queues to settle" in out.getvalue()


def test_a_queue_that_stays_busy_is_reported_and_up_goes_on() -> None:
    clock = _FakeClock()
    out = io.StringIO()
    settled = settle_queues(lambda: 3, _Console(out), timeout=30, clock=clock, sleep=clock.sleep)
    assert not settled
    assert clock.now == 30
    assert "still busy after 30 s" in out.getvalue()
