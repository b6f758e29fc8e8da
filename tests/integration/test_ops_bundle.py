"""``sluice bundle`` against moto: the request it writes, and waiting for the status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.cli import main
from sluice.ops.bundle import WrittenRequest, wait_for_status, write_request
from sluice.ops.environment import Environment
from tests.cli_output import keys_of, one_json_document
from tests.conftest import Pipeline
from tests.integration.ops_support import ENVIRONMENT, make_environment, write_outputs_file


@pytest.fixture
def environment(pipeline: Pipeline) -> Environment:
    return make_environment(pipeline)


@pytest.fixture
def outputs(environment: Environment, tmp_path: Path) -> Path:
    return write_outputs_file(environment, tmp_path / "outputs.json")


def stored_json(pipeline: Pipeline, key: str) -> dict[str, object]:
    obj = pipeline.s3.get_object(Bucket=pipeline.work, Key=key)
    assert obj["ContentType"] == "application/json"
    result: dict[str, object] = json.loads(obj["Body"].read())
    return result


def test_cli_writes_the_request_the_bundle_handler_reads(
    pipeline: Pipeline, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bundle", "Dog", "Golden Retriever", "Dog",
            "--match", "all", "--notify", "team@example.com", "--id", "walkies-1",
            "-e", ENVIRONMENT, "--outputs-file", str(outputs),
        ]
    )  # fmt: skip

    assert code == 0
    assert stored_json(pipeline, "requests/walkies-1.json") == {
        "labels": ["Dog", "Golden Retriever"],
        "match": "all",
        "notify": "team@example.com",
    }
    assert "bundles/walkies-1.json" in capsys.readouterr().out


def test_default_id_is_a_safe_fresh_key(pipeline: Pipeline, environment: Environment) -> None:
    first = write_request(pipeline.s3, pipeline.work, ["Cat"])
    second = write_request(pipeline.s3, pipeline.work, ["Cat"])

    assert first.bundle_id != second.bundle_id
    assert stored_json(pipeline, first.key) == {"labels": ["Cat"], "match": "any"}
    assert first.key == f"requests/{first.bundle_id}.json"


def test_wait_returns_the_status_written_for_this_request(pipeline: Pipeline) -> None:
    request = write_request(pipeline.s3, pipeline.work, ["Cat"], bundle_id="b1")
    # A status from an earlier request with the same id is not the answer.
    pipeline.s3.put_object(
        Bucket=pipeline.work,
        Key=request.status_key,
        Body=json.dumps({"status": "ready", "request_etag": "0" * 32}).encode(),
    )
    ready = {"bundle_id": "b1", "status": "ready", "url": "https://x", "request_etag": request.etag}
    polls: list[float] = []

    def handler_finishes(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            pipeline.s3.put_object(
                Bucket=pipeline.work, Key=request.status_key, Body=json.dumps(ready).encode()
            )

    status = wait_for_status(pipeline.s3, request, timeout=60, interval=1, sleep=handler_finishes)

    assert status == ready
    assert len(polls) == 2


def test_wait_gives_up_at_the_deadline(pipeline: Pipeline) -> None:
    request = WrittenRequest("never", pipeline.work, "requests/never.json", None, {})
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert wait_for_status(pipeline.s3, request, timeout=10, clock=clock, sleep=sleep) is None
    assert now[0] == 10


@pytest.mark.parametrize(
    ("state", "exit_code", "shown"),
    [
        ("ready", 0, "https://bundles.example/b.zip"),
        ("empty", 0, "no archived image matches"),
        ("error", 1, "error: zip failed"),
    ],
)
def test_cli_wait_prints_the_outcome_and_exits_by_it(
    pipeline: Pipeline,
    outputs: Path,
    capsys: pytest.CaptureFixture[str],
    state: str,
    exit_code: int,
    shown: str,
) -> None:
    # Already answered (no request_etag recorded), so --wait returns at the first poll.
    status = {
        "bundle_id": "done",
        "status": state,
        "image_count": 2,
        "bytes": 2048,
        "url": "https://bundles.example/b.zip",
        "expires_at": "2026-11-23T00:00:00Z",
        "errors": ["zip failed"] if state == "error" else [],
    }
    pipeline.s3.put_object(
        Bucket=pipeline.work, Key="bundles/done.json", Body=json.dumps(status).encode()
    )

    code = main(
        [
            "bundle",
            "Dog",
            "--id",
            "done",
            "--wait",
            "5",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == exit_code
    out = capsys.readouterr().out
    assert f"bundle done: {state}" in out
    assert shown in out


@pytest.mark.parametrize("bad_id", ["../escape", "has space", "", "-leading", "x" * 129])
def test_unsafe_bundle_id_is_a_usage_error(
    pipeline: Pipeline, outputs: Path, capsys: pytest.CaptureFixture[str], bad_id: str
) -> None:
    code = main(
        ["bundle", "Dog", f"--id={bad_id}", "-e", ENVIRONMENT, "--outputs-file", str(outputs)]
    )

    assert code == 2
    assert "bundle id" in capsys.readouterr().err
    assert "Contents" not in pipeline.s3.list_objects_v2(Bucket=pipeline.work)


def test_cli_json_without_wait_says_where_the_status_will_be(
    outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bundle",
            "Cat",
            "--id",
            "j1",
            "--output",
            "json",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 0
    shown = one_json_document(capsys.readouterr().out)
    assert set(shown) == keys_of("bundle")
    assert shown["bundle_id"] == "j1"
    assert shown["request"].endswith("/requests/j1.json")
    assert shown["status_object"].endswith("/bundles/j1.json")
    assert shown["body"] == {"labels": ["Cat"], "match": "any"}
    assert shown["status"] is None


def test_cli_json_with_wait_carries_the_status(
    pipeline: Pipeline, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = {"bundle_id": "j2", "status": "empty", "image_count": 0, "errors": []}
    pipeline.s3.put_object(
        Bucket=pipeline.work, Key="bundles/j2.json", Body=json.dumps(status).encode()
    )

    code = main(
        [
            "bundle", "Cat", "--id", "j2", "--wait", "5", "--output", "json",
            "-e", ENVIRONMENT, "--outputs-file", str(outputs),
        ]
    )  # fmt: skip

    assert code == 0
    shown = one_json_document(capsys.readouterr().out)
    assert set(shown) == keys_of("bundle")
    assert shown["status"] == status
