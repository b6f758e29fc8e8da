"""Pure parts of ``sluice.ops``: polling with deadlines, the move task, progress, requests."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from sluice.bundles import BundleRequestError, request_document
from sluice.keys import BUNDLE_ID_PATTERN
from sluice.ops.audit import wait_until_drained
from sluice.ops.bundle import new_bundle_id
from sluice.ops.environment import Environment
from sluice.ops.redrive import TASK, RedriveReport, redrive, redrive_with_task
from sluice.ops.upload import Progress, files_to_upload, human_bytes, normalize_prefix

DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:sluice-test-dlq"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/sluice-test-dlq"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def readings(*values: int) -> Iterator[int]:
    yield from values
    while True:
        yield values[-1]


# --- waiting for the queues ----------------------------------------------------------


def test_drained_needs_consecutive_empty_readings() -> None:
    clock = FakeClock()
    pending = readings(3, 0, 2, 0, 0)

    assert wait_until_drained(
        lambda: next(pending), timeout=60, interval=2, clock=clock, sleep=clock.sleep
    )
    assert clock.sleeps == [2, 2, 2, 2]


def test_never_drained_gives_up_at_the_deadline() -> None:
    clock = FakeClock()

    drained = wait_until_drained(lambda: 1, timeout=5, interval=2, clock=clock, sleep=clock.sleep)

    assert not drained
    assert clock.now == 5  # the last sleep is cut to the deadline
    assert clock.sleeps == [2, 2, 1]


# --- the message-move task -----------------------------------------------------------


@pytest.fixture
def stubbed_sqs() -> Iterator[tuple[object, Stubber]]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    with Stubber(sqs) as stubber:
        yield sqs, stubber


def test_move_task_is_followed_until_it_completes(stubbed_sqs: tuple[object, Stubber]) -> None:
    sqs, stubber = stubbed_sqs
    stubber.add_response("start_message_move_task", {"TaskHandle": "t1"}, {"SourceArn": DLQ_ARN})
    for status, moved in (("RUNNING", 3), ("COMPLETED", 7)):
        stubber.add_response(
            "list_message_move_tasks",
            {
                "Results": [
                    {
                        "Status": status,
                        "SourceArn": DLQ_ARN,
                        "ApproximateNumberOfMessagesMoved": moved,
                    }
                ]
            },
            {"SourceArn": DLQ_ARN, "MaxResults": 1},
        )
    report = RedriveReport(method="", dead_letters_before=7)
    clock = FakeClock()

    redrive_with_task(sqs, DLQ_ARN, report, timeout=60, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]

    assert (report.method, report.task_status, report.moved) == (TASK, "COMPLETED", 7)
    assert report.ok
    stubber.assert_no_pending_responses()


def test_failed_move_task_is_not_ok(stubbed_sqs: tuple[object, Stubber]) -> None:
    sqs, stubber = stubbed_sqs
    stubber.add_response("start_message_move_task", {"TaskHandle": "t1"})
    stubber.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "FAILED", "FailureReason": "AccessDenied", "SourceArn": DLQ_ARN}]},
    )
    report = RedriveReport(method="", dead_letters_before=2)

    redrive_with_task(sqs, DLQ_ARN, report, timeout=60)  # type: ignore[arg-type]

    assert report.task_failure == "AccessDenied"
    assert not report.ok


def test_auto_uses_the_task_where_the_endpoint_has_it(stubbed_sqs: tuple[object, Stubber]) -> None:
    sqs, stubber = stubbed_sqs
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"ApproximateNumberOfMessages": "4"}},
    )
    stubber.add_response("start_message_move_task", {"TaskHandle": "t1"})
    stubber.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 4}]},
    )
    environment = Environment(
        name="dev",
        raw_bucket="r",
        processed_bucket="p",
        archive_bucket="a",
        work_bucket="w",
        queue_urls={},
        dead_letter_queue_url=DLQ_URL,
        dead_letter_queue_arn=DLQ_ARN,
    )

    report = redrive(sqs, environment)  # type: ignore[arg-type]

    assert (report.method, report.moved, report.fallback_reason) == (TASK, 4, None)
    stubber.assert_no_pending_responses()


# --- progress ------------------------------------------------------------------------


def test_progress_in_a_log_is_one_line_per_file() -> None:
    stream = io.StringIO()
    progress = Progress(2, 3000, stream, interactive=False)

    progress.add_bytes(1000)
    progress.file_done("a.jpg")
    progress.add_bytes(2000)
    progress.file_done("b c.jpg", "AccessDenied")
    progress.finish()

    assert stream.getvalue().splitlines() == [
        "[1/2 files, 1000 B/2.9 KiB (33%)] a.jpg: ok",
        "[2/2 files, 2.9 KiB/2.9 KiB (100%)] b c.jpg: failed: AccessDenied",
    ]


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    progress = Progress(1, 10, stream, interactive=True, clock=clock)

    progress.add_bytes(5)
    progress.add_bytes(1)  # within the redraw interval: not drawn
    clock.now += 1
    progress.add_bytes(4)
    progress.file_done("k")
    progress.finish()

    frames = stream.getvalue().rstrip("\n").split("\r\x1b[K")[1:]
    assert frames[0] == "0/1 files, 5 B/10 B (50%)"
    assert frames[-1] == "1/1 files, 10 B/10 B (100%)"
    assert len(frames) == 4
    assert stream.getvalue().endswith("\n")


@pytest.mark.parametrize(
    ("count", "shown"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB")]
)
def test_human_bytes(count: int, shown: str) -> None:
    assert human_bytes(count) == shown


# --- upload plan ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "normalized"), [("", ""), ("a", "a/"), ("a/", "a/"), ("/a/b/", "a/b/")]
)
def test_prefix_gets_one_trailing_slash(prefix: str, normalized: str) -> None:
    assert normalize_prefix(prefix) == normalized


def test_files_are_keyed_by_relative_posix_path_and_links_are_not_followed(
    tmp_path: Path,
) -> None:
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "a+b.txt").write_bytes(b"12")
    (tmp_path / "z.txt").write_bytes(b"")
    (tmp_path / "sub dir" / "loop").symlink_to(tmp_path, target_is_directory=True)

    files = files_to_upload(tmp_path, "in")

    assert [(f.key, f.size) for f in files] == [("in/sub dir/a+b.txt", 2), ("in/z.txt", 0)]


# --- bundle requests -----------------------------------------------------------------


def test_bundle_id_is_sortable_and_safe() -> None:
    bundle_id = new_bundle_id(datetime(2026, 11, 22, 9, 30, 5, tzinfo=UTC))

    assert re.fullmatch(r"20261122T093005Z-[0-9a-f]{6}", bundle_id)
    assert BUNDLE_ID_PATTERN.fullmatch(bundle_id)


def test_request_body_dedupes_labels_and_omits_an_empty_notify() -> None:
    assert request_document([" Dog", "Dog ", "Cat"], "any", None) == {
        "labels": ["Dog", "Cat"],
        "match": "any",
    }


@pytest.mark.parametrize(("labels", "match"), [([], "any"), (["  "], "any"), (["Dog"], "most")])
def test_bad_request_is_refused(labels: list[str], match: str) -> None:
    with pytest.raises(BundleRequestError):
        request_document(labels, match, None)
