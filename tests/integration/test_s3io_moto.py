"""MultipartWriter against moto's S3."""

from __future__ import annotations

import hashlib
import os

import pytest

from sluice.s3io import MultipartWriter
from sluice.units import MIB
from tests.conftest import Pipeline


def test_twenty_megabyte_stream_arrives_intact_in_three_parts(pipeline: Pipeline) -> None:
    data = os.urandom(20 * MIB)

    with MultipartWriter(pipeline.s3, pipeline.work, "bundles/big.bin") as writer:
        for offset in range(0, len(data), 1_000_003):
            writer.write(data[offset : offset + 1_000_003])

    stored = pipeline.s3.get_object(Bucket=pipeline.work, Key="bundles/big.bin")
    assert hashlib.sha256(stored["Body"].read()).digest() == hashlib.sha256(data).digest()
    # A multipart ETag ends in -<number of parts>: 8 MiB + 8 MiB + 4 MiB.
    assert stored["ETag"].strip('"').endswith("-3")
    assert writer.etag == stored["ETag"].strip('"')
    assert pipeline.s3.list_multipart_uploads(Bucket=pipeline.work).get("Uploads", []) == []


def test_small_stream_is_a_single_put(pipeline: Pipeline) -> None:
    with MultipartWriter(
        pipeline.s3, pipeline.work, "bundles/small.json", content_type="application/json"
    ) as writer:
        writer.write(b'{"ok": true}')

    stored = pipeline.s3.get_object(Bucket=pipeline.work, Key="bundles/small.json")
    assert stored["Body"].read() == b'{"ok": true}'
    assert stored["ContentType"] == "application/json"
    assert "-" not in stored["ETag"]


def test_failure_midway_aborts_and_leaves_no_object(pipeline: Pipeline) -> None:
    with (
        pytest.raises(RuntimeError, match="midway"),
        MultipartWriter(pipeline.s3, pipeline.work, "bundles/broken.zip") as writer,
    ):
        writer.write(os.urandom(9 * MIB))  # one part already uploaded
        raise RuntimeError("midway")

    listed = pipeline.s3.list_objects_v2(Bucket=pipeline.work, Prefix="bundles/")
    assert listed.get("KeyCount", 0) == 0
    assert pipeline.s3.list_multipart_uploads(Bucket=pipeline.work).get("Uploads", []) == []
