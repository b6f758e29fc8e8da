"""``sluice upload`` against moto: odd file names land at the right keys, large files in parts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from sluice.cli import main
from sluice.ops import upload as upload_module
from sluice.ops.upload import Progress, files_to_upload, upload_folder
from sluice.units import MIB
from tests.cli_output import keys_of, one_json_document
from tests.conftest import Pipeline
from tests.integration.ops_support import ENVIRONMENT, make_environment, write_outputs_file

FILES = {
    "a b.jpg": b"\xff\xd8 jpeg",
    "x+y.json": b"[]",
    "ünïcødé/東京 1.png": b"\x89PNG",
    "nested/deeper/empty.csv": b"",
    "no-extension": b"?",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "drop"
    for relative, body in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return root


@pytest.fixture
def outputs(pipeline: Pipeline, tmp_path: Path) -> Path:
    return write_outputs_file(make_environment(pipeline), tmp_path / "outputs.json")


def raw_objects(pipeline: Pipeline) -> dict[str, bytes]:
    listing = pipeline.s3.list_objects_v2(Bucket=pipeline.raw).get("Contents", [])
    return {
        item["Key"]: pipeline.s3.get_object(Bucket=pipeline.raw, Key=item["Key"])["Body"].read()
        for item in listing
    }


def test_cli_uploads_every_file_under_the_prefix(
    pipeline: Pipeline, folder: Path, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "upload",
            str(folder),
            "--prefix",
            "batch 7",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 0
    assert raw_objects(pipeline) == {f"batch 7/{key}": body for key, body in FILES.items()}
    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key="batch 7/ünïcødé/東京 1.png")
    assert head["ContentType"] == "image/png"
    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key="batch 7/no-extension")
    assert head["ContentType"] == "application/octet-stream"
    captured = capsys.readouterr()
    assert "uploaded 5 file(s)" in captured.out
    # stderr is not a terminal here: one progress line per file, no carriage returns.
    progress_lines = captured.err.splitlines()
    assert len(progress_lines) == 5 and "\r" not in captured.err
    assert progress_lines[-1].startswith("[5/5 files")


def test_large_files_go_in_parts(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        upload_module,
        "TRANSFER_CONFIG",
        TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
    )
    (tmp_path / "big.bin").write_bytes(b"\0" * (6 * MIB))
    stream = io.StringIO()
    files = files_to_upload(tmp_path)
    progress = Progress(len(files), 6 * MIB, stream, interactive=True)

    report = upload_folder(pipeline.s3, pipeline.raw, files, progress)

    assert report.uploaded == ["big.bin"] and report.failed == []
    etag = pipeline.s3.head_object(Bucket=pipeline.raw, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-2")
    assert progress.bytes_done == 6 * MIB
    assert stream.getvalue().startswith("\r") and stream.getvalue().endswith("\n")
    assert "1/1 files, 6.0 MiB/6.0 MiB (100%)" in stream.getvalue()


def test_a_file_that_cannot_be_uploaded_fails_alone(
    pipeline: Pipeline, tmp_path: Path, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    (root / "ok.txt").write_bytes(b"ok")
    deep = root.joinpath(*(["d" * 250] * 5))
    deep.mkdir(parents=True)
    (deep / "too-long.txt").write_bytes(b"x")

    code = main(["upload", str(root), "-e", ENVIRONMENT, "--outputs-file", str(outputs)])

    assert code == 1
    assert raw_objects(pipeline) == {"ok.txt": b"ok"}
    out = capsys.readouterr().out
    assert "failed: " in out and "too-long.txt: key is longer than S3's 1024 bytes" in out


def test_missing_folder_is_a_usage_error(
    outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["upload", str(tmp_path / "nope"), "-e", ENVIRONMENT, "--outputs-file", str(outputs)]
    )

    assert code == 2
    assert "is not a folder" in capsys.readouterr().err


def test_cli_json_is_one_document_and_progress_stays_on_stderr(
    pipeline: Pipeline, folder: Path, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "upload",
            str(folder),
            "--output",
            "json",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 0
    captured = capsys.readouterr()
    shown = one_json_document(captured.out)
    assert set(shown) == keys_of("upload")
    assert shown["bucket"] == pipeline.raw and shown["ok"] is True
    assert sorted(shown["uploaded"]) == sorted(FILES)
    assert shown["failed"] == []
    assert shown["bytes_sent"] == sum(len(body) for body in FILES.values())
    assert len(captured.err.splitlines()) == 5  # one progress line per file


def test_cli_json_lists_failures_with_their_reason(
    tmp_path: Path, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path.joinpath("drop", *(["d" * 250] * 5))
    deep.mkdir(parents=True)
    (deep / "too-long.txt").write_bytes(b"x")

    code = main(
        [
            "upload",
            str(tmp_path / "drop"),
            "--output",
            "json",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 1
    shown = one_json_document(capsys.readouterr().out)
    assert shown["ok"] is False and shown["uploaded"] == []
    [failure] = shown["failed"]
    assert set(failure) == keys_of("upload failure")
    assert failure["key"].endswith("too-long.txt") and "1024 bytes" in failure["reason"]


def test_cli_json_of_an_empty_folder(
    tmp_path: Path, outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()

    code = main(
        [
            "upload",
            str(tmp_path / "empty"),
            "--output",
            "json",
            "-e",
            ENVIRONMENT,
            "--outputs-file",
            str(outputs),
        ]
    )

    assert code == 0
    captured = capsys.readouterr()
    shown = one_json_document(captured.out)
    assert set(shown) == keys_of("upload")
    assert shown["bucket"] is None and shown["uploaded"] == []
    assert "nothing to upload" in captured.err
