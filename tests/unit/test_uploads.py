"""Where API uploads go and what they may be: pure rules of sluice.uploads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sluice.datasets import load_registry
from sluice.units import MIB
from sluice.uploads import (
    MEDIA_TYPES,
    PlannedUpload,
    UploadError,
    UploadRequest,
    decode_upload_id,
    encode_upload_id,
    key_owner,
    part_size_for,
    plan_upload,
    sanitise_filename,
    session_policy,
)

NOW = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Été 2024!.JPG", "Ete-2024.JPG"),
        ("...hidden.png", "hidden.png"),
        ("a" * 300 + ".json", "a" * 100 + ".json"),
        ("???.jpg", "file.jpg"),
        ("no-extension", "no-extension"),
    ],
)
def test_file_names_stay_readable_but_cannot_leave_their_folder(given: str, kept: str) -> None:
    assert sanitise_filename(given) == kept


def test_keys_are_chosen_by_the_server_under_the_users_folder() -> None:
    request = UploadRequest("../x/scan.JSONL", "application/x-ndjson", 10, dataset="retina")

    planned = plan_upload(
        request, user="u-1", registry=load_registry(), max_bytes=100, now=NOW, unique="f" * 32
    )

    assert planned == PlannedUpload(
        key=f"retina/uploads/u-1/2026-11-30/{'f' * 32}-scan.JSONL",
        content_type="application/x-ndjson",
        size=10,
        kind="data",
    )
    assert load_registry().for_key(planned.key) is not None  # the transform accepts it
    assert key_owner(planned.key) == "u-1"


def test_media_types_follow_what_the_transform_processes() -> None:
    assert MEDIA_TYPES["image/jpeg"] == ("image", frozenset({".jpg", ".jpeg"}))
    assert MEDIA_TYPES["application/json"] == ("data", frozenset({".json"}))
    assert "text/plain" not in MEDIA_TYPES


def test_a_content_type_with_parameters_is_taken_by_its_media_type() -> None:
    request = UploadRequest("a.json", "Application/JSON; charset=utf-8", 5, dataset="retina")

    planned = plan_upload(request, user="u", registry=load_registry(), max_bytes=9, now=NOW)

    assert planned.content_type == "application/json"


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("uploads/u-1/2026-01-01/x-a.jpg", "u-1"),
        ("retina/uploads/u-2/2026-01-01/x-a.json", "u-2"),
        ("photos/a.jpg", None),
        ("uploads/a.jpg", None),
    ],
)
def test_the_owner_of_a_key_is_read_from_its_layout(key: str, owner: str | None) -> None:
    assert key_owner(key) == owner


@pytest.mark.parametrize(
    ("size", "part"),
    [(1, 8 * MIB), (100 * MIB, 8 * MIB), (80_000 * MIB, 8 * MIB), (80_001 * MIB, 9 * MIB)],
)
def test_parts_are_at_least_8_mib_and_never_more_than_10000(size: int, part: int) -> None:
    assert part_size_for(size) == part
    assert -(-size // part) <= 10_000


def test_multipart_ids_round_trip_only_for_their_owner() -> None:
    token = encode_upload_id("uploads/u-1/2026-01-01/x-a.jpg", "upload-1")

    assert decode_upload_id(token, "u-1") == ("uploads/u-1/2026-01-01/x-a.jpg", "upload-1")
    for user, candidate in (("u-2", token), ("u-1", "garbage"), ("u-1", token[:-4])):
        with pytest.raises(UploadError) as refused:
            decode_upload_id(candidate, user)
        assert refused.value.status == 404


def test_the_session_policy_allows_writing_one_key_and_nothing_else() -> None:
    policy = session_policy("arn:aws-cn:iam::1:role/up", "raw", "uploads/u/d/x-a.jpg")

    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteThisKeyOnly",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                ],
                "Resource": "arn:aws-cn:s3:::raw/uploads/u/d/x-a.jpg",
            }
        ],
    }
    with pytest.raises(ValueError, match="wildcards"):
        session_policy("arn:aws:iam::1:role/up", "raw", "uploads/*")


def test_data_files_over_the_transforms_limit_are_refused_but_images_are_not() -> None:
    data = UploadRequest("a.json", "application/json", 101, dataset="retina")
    image = UploadRequest("a.jpg", "image/jpeg", 101)

    def plan(request: UploadRequest) -> PlannedUpload:
        registry = load_registry()
        return plan_upload(
            request, user="u", registry=registry, max_bytes=1000, now=NOW, max_data_bytes=100
        )

    with pytest.raises(UploadError) as refused:
        plan(data)

    assert (refused.value.status, refused.value.code) == (413, "too_large")
    assert plan(image).size == 101
