"""The bundle handler against moto: matching, the streamed zip, URL, status, SNS."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sluice import bundles
from sluice.bundle_contents import presigned_zip_url
from sluice.events import S3ObjectRef
from sluice.handlers import bundle as bundle_handler
from sluice.keys import bundle_status_key, image_id, invalid_bundle_id
from sluice.label_items import add_membership
from sluice.runtime import Handler
from sluice.units import MIB
from tests.conftest import FakeContext, Pipeline
from tests.s3events import object_event_for, s3_event, s3_record, sqs_batch

JPEG_MAGIC = b"\xff\xd8\xff\xe0"


# Helpers -------------------------------------------------------------------------------
def archive_image(
    pipeline: Pipeline, archive_key: str, labels: list[str], body: bytes | None = None
) -> bytes:
    """An archived image with its label memberships, as archive and tag leave them."""
    data = body if body is not None else JPEG_MAGIC + os.urandom(2000)
    pipeline.s3.put_object(Bucket=pipeline.archive, Key=archive_key, Body=data)
    for label in labels:
        add_membership(
            pipeline.dynamodb,
            pipeline.labels_table,
            label,
            image_id(archive_key),
            archive_key=archive_key,
            confidence=97.5,
        )
    return data


def put_request(pipeline: Pipeline, bundle_id: str, request: dict[str, Any] | bytes) -> str:
    key = f"requests/{bundle_id}.json"
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    pipeline.s3.put_object(Bucket=pipeline.work, Key=key, Body=body)
    return key


def subscribe(pipeline: Pipeline) -> str:
    """An SQS queue subscribed to the bundle topic, standing in for a subscriber."""
    queue_url: str = pipeline.sqs.create_queue(QueueName="bundle-subscriber")["QueueUrl"]
    queue_arn = pipeline.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    pipeline.sns.subscribe(TopicArn=pipeline.topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return queue_url


def notifications(pipeline: Pipeline, queue_url: str, *, expected: int) -> list[dict[str, Any]]:
    """Read notifications until ``expected`` arrived (or a deadline), then drain the rest.

    moto delivers SNS -> SQS within ``publish``, so anything beyond ``expected`` is already
    in the queue and drained too: asking for 1 still catches a duplicate.
    """
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while True:
        batch = pipeline.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        for message in batch:
            received.append(json.loads(message["Body"]))
            pipeline.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not batch and (len(received) >= expected or time.monotonic() > deadline):
            return received
        if not batch:
            time.sleep(0.05)


@dataclass(frozen=True)
class BundleFunction:
    """The bundle function as its cold start builds it, on the test's moto clients: its
    dependencies (to hook a client, or to replace one) and the handler made of them."""

    deps: bundle_handler.Dependencies
    handler: Handler


def bundle_function(**changes: Any) -> BundleFunction:
    """Built from the current environment; ``changes`` replace dependencies."""
    deps = replace(bundle_handler.Dependencies.from_env(os.environ), **changes)
    return BundleFunction(deps, bundle_handler.make_handler(deps))


def turn(now: datetime | None = None) -> bundle_handler.Turn:
    """An invocation's turn at ``now`` (default: the clock), as the handler makes one."""
    return bundle_handler.Turn.of(FakeContext(), now or datetime.now(UTC))


def run_request(bundle: BundleFunction, pipeline: Pipeline, key: str) -> dict[str, Any]:
    response: dict[str, Any] = bundle.handler(
        object_event_for(pipeline.s3, pipeline.work, key), FakeContext()
    )
    assert response == {"batchItemFailures": []}
    return response


def status_of(pipeline: Pipeline, bundle_id: str) -> dict[str, Any]:
    body = pipeline.s3.get_object(Bucket=pipeline.work, Key=f"bundles/{bundle_id}.json")["Body"]
    result: dict[str, Any] = json.loads(body.read())
    return result


def open_zip(pipeline: Pipeline, bundle_id: str) -> zipfile.ZipFile:
    body = pipeline.s3.get_object(Bucket=pipeline.work, Key=f"bundles/{bundle_id}.zip")["Body"]
    return zipfile.ZipFile(io.BytesIO(body.read()))


def work_keys(pipeline: Pipeline) -> set[str]:
    listed = pipeline.s3.list_objects_v2(Bucket=pipeline.work)
    return {item["Key"] for item in listed.get("Contents", [])}


@pytest.fixture
def bundle(pipeline: Pipeline) -> BundleFunction:
    return bundle_function()


@pytest.fixture
def animals(pipeline: Pipeline) -> dict[str, bytes]:
    """Dog only, Cat only, both, and an unrelated Bird."""
    return {
        "images/dogs/rex.jpg": archive_image(pipeline, "images/dogs/rex.jpg", ["Dog"]),
        "images/cats/tom cat +1 été.jpg": archive_image(
            pipeline, "images/cats/tom cat +1 été.jpg", ["Cat"]
        ),
        "images/pets/both.jpeg": archive_image(pipeline, "images/pets/both.jpeg", ["Dog", "Cat"]),
        "images/birds/tweety.jpg": archive_image(pipeline, "images/birds/tweety.jpg", ["Bird"]),
    }


# Matching and contents -------------------------------------------------------------------
def test_any_bundles_exactly_the_images_with_either_label(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    queue = subscribe(pipeline)
    key = put_request(pipeline, "pets-any", {"labels": ["Dog", "Cat"], "match": "any"})

    run_request(bundle, pipeline, key)

    expected = {
        "images/cats/tom cat +1 été.jpg",
        "images/dogs/rex.jpg",
        "images/pets/both.jpeg",
    }
    with open_zip(pipeline, "pets-any") as archive:
        assert archive.testzip() is None
        image_entries = [info for info in archive.infolist() if info.filename != "manifest.json"]
        # Entries are the archive keys' paths, in archive-key order.
        assert [info.filename for info in image_entries] == sorted(expected)
        for info in image_entries:
            assert archive.read(info) == animals[info.filename]
            assert info.compress_type == zipfile.ZIP_STORED
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["bundle_id"] == "pets-any"
    assert manifest["request"]["labels"] == ["Dog", "Cat"]
    assert manifest["image_count"] == 3
    assert {image["archive_key"] for image in manifest["images"]} == expected
    both = next(i for i in manifest["images"] if i["archive_key"] == "images/pets/both.jpeg")
    assert both["matched_labels"] == ["Dog", "Cat"]
    assert both["size"] == len(animals["images/pets/both.jpeg"])
    assert both["image_id"] == image_id("images/pets/both.jpeg")

    status = status_of(pipeline, "pets-any")
    assert status["status"] == "ready"
    assert status["image_count"] == 3
    assert status["zip_key"] == "bundles/pets-any.zip"
    assert status["manifest"] == "manifest.json"
    assert status["labels"] == ["Dog", "Cat"]
    assert status["match"] == "any"
    head = pipeline.s3.head_object(Bucket=pipeline.work, Key="requests/pets-any.json")
    assert status["request_etag"] == head["ETag"].strip('"')
    zip_head = pipeline.s3.head_object(Bucket=pipeline.work, Key="bundles/pets-any.zip")
    assert status["bytes"] == zip_head["ContentLength"]
    assert zip_head["ContentType"] == "application/zip"

    [notice] = notifications(pipeline, queue, expected=1)
    message = json.loads(notice["Message"])
    assert message["bundle_id"] == "pets-any"
    assert message["status"] == "ready"
    assert message["image_count"] == 3
    assert message["bytes"] == status["bytes"]
    assert message["url"] == status["url"]
    assert message["expires_at"] == status["expires_at"]
    assert notice["MessageAttributes"]["status"]["Value"] == "ready"
    assert "notify" not in notice["MessageAttributes"]


def test_all_bundles_only_the_images_with_every_label(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    key = put_request(pipeline, "pets-all", {"labels": ["Cat", "Dog"], "match": "all"})

    run_request(bundle, pipeline, key)

    with open_zip(pipeline, "pets-all") as archive:
        assert archive.namelist() == ["images/pets/both.jpeg", "manifest.json"]
        assert archive.read("images/pets/both.jpeg") == animals["images/pets/both.jpeg"]
    assert status_of(pipeline, "pets-all")["image_count"] == 1


def test_match_defaults_to_any_and_images_are_not_duplicated(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    key = put_request(pipeline, "pets-default", {"labels": ["Dog", "Cat", "Bird"]})

    run_request(bundle, pipeline, key)

    with open_zip(pipeline, "pets-default") as archive:
        names = archive.namelist()
    assert len(names) == len(set(names)) == 5  # four images once each, plus the manifest
    assert status_of(pipeline, "pets-default")["match"] == "any"


def test_non_jpeg_text_entries_are_deflated_and_odd_paths_made_safe(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    text = b"plain text compresses well " * 200
    archive_image(pipeline, "images/notes/readme.txt", ["Doc"], body=text)
    archive_image(pipeline, "images/../escape.jpg", ["Doc"])
    key = put_request(pipeline, "docs", {"labels": ["Doc"]})

    run_request(bundle, pipeline, key)

    with open_zip(pipeline, "docs") as archive:
        names = archive.namelist()
        assert archive.getinfo("images/notes/readme.txt").compress_type == zipfile.ZIP_DEFLATED
        assert archive.read("images/notes/readme.txt") == text
    assert "images/escape.jpg" in names
    assert all(".." not in name.split("/") and not name.startswith("/") for name in names)


# URL -------------------------------------------------------------------------------------
def test_presigned_url_lifetime_comes_from_configuration(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, animals: dict[str, bytes]
) -> None:
    monkeypatch.setenv("BUNDLE_URL_TTL_SECONDS", "3600")
    bundle = bundle_function()
    key = put_request(pipeline, "ttl", {"labels": ["Bird"]})

    run_request(bundle, pipeline, key)

    status = status_of(pipeline, "ttl")
    url = urlsplit(status["url"])
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert url.path.endswith("/bundles/ttl.zip")
    created = time.strptime(status["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    expires = time.strptime(status["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    lifetime = time.mktime(expires) - time.mktime(created)
    assert 3600 <= lifetime <= 3660  # signed right after the zip was written


def test_presigned_url_lifetime_is_capped_at_seven_days(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    # The handler's own client: it signs with SigV4, whose X-Amz-Expires this checks.
    for ttl, expected in ((604_800, "604800"), (10**7, "604800"), (60, "60")):
        url = presigned_zip_url(bundle.deps.s3, pipeline.work, "capped", ttl)
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [expected]


# Other outcomes --------------------------------------------------------------------------
def test_no_match_gives_empty_status_and_notification_but_no_zip(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    queue = subscribe(pipeline)
    key = put_request(pipeline, "unicorns", {"labels": ["Unicorn"]})

    run_request(bundle, pipeline, key)

    status = status_of(pipeline, "unicorns")
    assert status["status"] == "empty"
    assert status["image_count"] == 0
    assert status["url"] is None
    assert "bundles/unicorns.zip" not in work_keys(pipeline)
    [notice] = notifications(pipeline, queue, expected=1)
    assert json.loads(notice["Message"])["status"] == "empty"
    assert notice["MessageAttributes"]["status"]["Value"] == "empty"
    assert "notify" not in notice["MessageAttributes"]


NAME = "Holiday of Jeanne Dupont-Quirrell"
RECIPIENT = "jeanne.dupont-quirrell@example.org"


@pytest.mark.parametrize(
    ("request_document", "outcome"),
    [
        ({"labels": ["Dog"], "name": NAME, "notify": RECIPIENT}, "ready"),
        ({"labels": ["Unicorn"], "name": NAME, "notify": RECIPIENT}, "empty"),
        # Too long for the schema: the error must say so without quoting the values.
        ({"labels": ["Dog"], "name": NAME * 10, "notify": RECIPIENT * 10}, "error"),
    ],
)
def test_a_requests_name_and_recipient_reach_neither_status_manifest_nor_notification(
    pipeline: Pipeline,
    bundle: BundleFunction,
    animals: dict[str, bytes],
    request_document: dict[str, Any],
    outcome: str,
) -> None:
    queue = subscribe(pipeline)
    key = put_request(pipeline, "private", request_document)

    run_request(bundle, pipeline, key)

    assert status_of(pipeline, "private")["status"] == outcome
    status = pipeline.s3.get_object(Bucket=pipeline.work, Key="bundles/private.json")
    [notice] = notifications(pipeline, queue, expected=1)
    # The whole SNS envelope: subject, message body and attributes.
    published = {"status": status["Body"].read().decode("utf-8"), "sns": json.dumps(notice)}
    if outcome == "ready":
        with open_zip(pipeline, "private") as archive:
            published["manifest"] = archive.read("manifest.json").decode("utf-8")
    for where, text in published.items():
        for value in ("Jeanne", "Dupont-Quirrell", "example.org"):
            assert value not in text, f"{value!r} is in the {where}"
    # An operator still gets what they need.
    message = json.loads(notice["Message"])
    assert message["bundle_id"] == "private"
    assert {"status", "image_count", "bytes", "url", "expires_at"} <= set(message)


def test_all_with_a_label_nobody_has_is_empty(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    key = put_request(pipeline, "dog-unicorn", {"labels": ["Dog", "Unicorn"], "match": "all"})

    run_request(bundle, pipeline, key)

    assert status_of(pipeline, "dog-unicorn")["status"] == "empty"
    assert "bundles/dog-unicorn.zip" not in work_keys(pipeline)


def test_images_gone_from_the_archive_are_left_out_and_listed(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    pipeline.s3.delete_object(Bucket=pipeline.archive, Key="images/dogs/rex.jpg")
    key = put_request(pipeline, "dogs", {"labels": ["Dog"]})

    run_request(bundle, pipeline, key)

    status = status_of(pipeline, "dogs")
    assert status["status"] == "ready"
    assert status["image_count"] == 1
    assert status["missing"] == ["images/dogs/rex.jpg"]
    with open_zip(pipeline, "dogs") as archive:
        assert archive.namelist() == ["images/pets/both.jpeg", "manifest.json"]


@pytest.mark.parametrize(
    ("body", "codes", "fragment"),
    [
        (b"{not json", ["invalid_json"], "not JSON"),
        (b"\xff\xfe\x00", ["invalid_json"], "not JSON"),
        (json.dumps({"labels": []}).encode(), ["schema"], "should be non-empty"),
        (
            json.dumps({"labels": ["Dog"], "match": "most", "colour": "red"}).encode(),
            ["schema", "schema"],
            "'most' is not one of",
        ),
        (json.dumps(["Dog"]).encode(), ["schema"], "is not of type 'object'"),
        (b" " * (64 * 1024 + 1), ["too_large"], "larger than"),
    ],
)
def test_invalid_request_gets_an_error_status_not_a_retry(
    pipeline: Pipeline, bundle: BundleFunction, body: bytes, codes: list[str], fragment: str
) -> None:
    queue = subscribe(pipeline)
    key = put_request(pipeline, "bad", body)

    run_request(bundle, pipeline, key)  # no batchItemFailures: it is not retried

    status = status_of(pipeline, "bad")
    assert status["status"] == "error"
    assert [error["code"] for error in status["errors"]] == codes
    assert any(fragment in error["message"] for error in status["errors"])
    assert "bundles/bad.zip" not in work_keys(pipeline)
    [notice] = notifications(pipeline, queue, expected=1)
    assert json.loads(notice["Message"])["errors"] == status["errors"]
    assert notice["MessageAttributes"]["status"]["Value"] == "error"


REQUEST_DOCUMENTS = [
    {"labels": ["Dog"]},
    {"labels": ["Dog", "Cat"], "match": "all", "notify": "+33612345678", "name": "pets"},
    {"labels": ["x" * 200] * 1 + [str(n) for n in range(19)]},
    {},
    {"labels": []},
    {"labels": ["Dog", "Dog"]},
    {"labels": [" "]},
    {"labels": [""]},
    {"labels": ["x" * 201]},
    {"labels": [str(n) for n in range(21)]},
    {"labels": ["Dog"], "match": "most"},
    {"labels": ["Dog"], "notify": ""},
    {"labels": ["Dog"], "notify": "ops"},
    {"labels": ["Dog"], "notify": "someone@localhost"},
    {"labels": ["Dog"], "notify": "0612345678"},
    {"labels": ["Dog"], "notify": "a@example.org"},
    {"labels": ["Dog"], "name": 7},
    {"labels": ["Dog"], "colour": "red"},
    {"labels": "Dog"},
    ["Dog"],
    None,
]


@pytest.mark.parametrize("document", REQUEST_DOCUMENTS)
def test_fast_request_check_agrees_with_the_full_schema_validator(document: Any) -> None:
    # The handler lets a request through on the fast check alone (compiled at cold start).
    from jsonschema import Draft202012Validator

    full = Draft202012Validator(bundles.REQUEST_SCHEMA)
    try:
        bundles.parse_request(json.dumps(document).encode())
    except bundles.BundleRequestError as error:
        expected = sorted(full.iter_errors(document), key=lambda e: e.json_path)
        assert [e["path"] for e in error.errors] == [e.json_path for e in expected]
        for reported, problem in zip(error.errors, expected, strict=True):
            if problem.json_path in ("$.name", "$.notify"):
                # Personal fields: the rule that failed, never the value.
                assert reported["message"] == (
                    f"{problem.json_path} breaks the schema's {problem.validator} rule"
                )
            else:
                assert reported["message"] == problem.message
    else:
        assert list(full.iter_errors(document)) == []


def test_a_problem_only_the_fast_check_sees_is_still_reported_with_path_and_reason() -> None:
    import fastjsonschema

    finding = fastjsonschema.JsonSchemaValueException(
        "data.labels[0] must match pattern \\S", name="data.labels[0]", rule="pattern"
    )
    assert bundles.schema_errors({"labels": ["Dog"]}, finding) == [
        {"code": "schema", "path": "$.labels[0]", "message": "$.labels[0] must match pattern \\S"}
    ]


def test_invalid_request_id_gets_an_error_status_inside_bundles(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    key = put_request(pipeline, "../../etc/passwd", {"labels": ["Dog"]})
    before = work_keys(pipeline)

    run_request(bundle, pipeline, key)

    [written] = work_keys(pipeline) - before
    assert written == bundle_status_key(invalid_bundle_id(key))
    assert written.startswith("bundles/_invalid-")
    status = status_of(pipeline, written.removeprefix("bundles/").removesuffix(".json"))
    assert status["status"] == "error"
    assert status["errors"][0]["code"] == "invalid_request_key"
    assert status["request_key"] == key


# Delivery semantics ----------------------------------------------------------------------
def test_duplicate_delivery_notifies_once(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    queue = subscribe(pipeline)
    key = put_request(pipeline, "twice", {"labels": ["Dog"]})
    event = object_event_for(pipeline.s3, pipeline.work, key)

    bundle.handler(event, FakeContext())
    first = status_of(pipeline, "twice")
    bundle.handler(event, FakeContext())

    assert status_of(pipeline, "twice") == first
    assert len(notifications(pipeline, queue, expected=1)) == 1


def test_older_event_after_an_overwrite_is_skipped(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    queue = subscribe(pipeline)
    key = put_request(pipeline, "changed", {"labels": ["Bird"]})
    old_event = object_event_for(pipeline.s3, pipeline.work, key)
    put_request(pipeline, "changed", {"labels": ["Dog"], "match": "all"})
    new_event = object_event_for(pipeline.s3, pipeline.work, key)

    bundle.handler(new_event, FakeContext())
    response = bundle.handler(old_event, FakeContext())

    assert response == {"batchItemFailures": []}
    status = status_of(pipeline, "changed")
    assert status["labels"] == ["Dog"]
    assert len(notifications(pipeline, queue, expected=1)) == 1


def test_new_request_under_the_same_id_rebuilds(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    key = put_request(pipeline, "reused", {"labels": ["Bird"]})
    run_request(bundle, pipeline, key)
    put_request(pipeline, "reused", {"labels": ["Cat"], "match": "all"})

    run_request(bundle, pipeline, key)

    assert status_of(pipeline, "reused")["image_count"] == 2


class MidBuild:
    """An S3 client that runs ``meanwhile`` once, synchronously, when it first reads an
    archived image: its invocation has claimed the bundle and is writing the zip. Two
    invocations interleave there deterministically, with no thread and no sleep."""

    def __init__(self, s3: Any, archive_bucket: str, meanwhile: Callable[[], None]) -> None:
        self._s3 = s3
        self._archive = archive_bucket
        self._meanwhile: Callable[[], None] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def get_object(self, **kwargs: Any) -> Any:
        if kwargs["Bucket"] == self._archive and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return self._s3.get_object(**kwargs)


def zip_versions(pipeline: Pipeline, bundle_id: str) -> int:
    key = f"bundles/{bundle_id}.zip"
    listed = pipeline.s3.list_object_versions(Bucket=pipeline.work, Prefix=key)
    return len([v for v in listed.get("Versions", []) if v["Key"] == key])


def test_a_delivery_that_meets_another_one_building_is_retried_and_the_bundle_built_once(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    """Two deliveries of one request (S3 and SQS deliver at least once) overlap: the one
    that finds the bundle claimed fails, and its retry finds the outcome."""
    queue = subscribe(pipeline)
    key = put_request(pipeline, "overlap", {"labels": ["Dog"]})
    event = object_event_for(pipeline.s3, pipeline.work, key)
    second: list[dict[str, Any]] = []

    def deliver_again() -> None:
        second.append(bundle.handler(event, FakeContext()))

    first = bundle_handler.make_handler(
        replace(bundle.deps, s3=MidBuild(bundle.deps.s3, pipeline.archive, deliver_again))
    )
    assert first(event, FakeContext()) == {"batchItemFailures": []}

    assert second == [{"batchItemFailures": [{"itemIdentifier": "msg-0"}]}]
    assert status_of(pipeline, "overlap")["status"] == "ready"
    assert zip_versions(pipeline, "overlap") == 1
    run_request(bundle, pipeline, key)  # the retry: a duplicate now
    assert zip_versions(pipeline, "overlap") == 1
    assert len(notifications(pipeline, queue, expected=1)) == 1


def test_a_claim_left_by_a_killed_run_lapses_at_its_deadline(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    key = put_request(pipeline, "killed", {"labels": ["Dog"]})
    etag = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)["ETag"].strip('"')
    fresh = bundles.new_status("killed", request_key=key, request_etag=etag, created_at="-")
    # A run killed 10 minutes ago with 5 minutes left: its claim lapsed 4.5 minutes ago.
    killed = turn(datetime.now(UTC) - timedelta(minutes=10))
    claimed = bundles.claim(
        pipeline.s3, pipeline.work, fresh, owner=killed.owner, now=killed.now, until=killed.until
    )
    assert claimed is not None

    run_request(bundle, pipeline, key)

    assert status_of(pipeline, "killed")["status"] == "ready"


def test_only_created_request_objects_are_acted_on(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    removed = s3_record(pipeline.work, "requests/x.json", event_name="ObjectRemoved:Delete")
    elsewhere = s3_record(pipeline.work, "bundles/x.json", etag="abc")

    response = bundle.handler(sqs_batch(s3_event(removed), s3_event(elsewhere)), FakeContext())

    assert response == {"batchItemFailures": []}
    assert work_keys(pipeline) == set()


def test_crash_halfway_leaves_nothing_and_a_retry_succeeds(
    pipeline: Pipeline, bundle: BundleFunction, animals: dict[str, bytes]
) -> None:
    # Enough data for a part to be uploaded before the failure.
    for index in range(10):
        archive_image(pipeline, f"images/big/{index:02}.jpg", ["Big"], JPEG_MAGIC + os.urandom(MIB))
    key = put_request(pipeline, "crash", {"labels": ["Big"]})
    event = object_event_for(pipeline.s3, pipeline.work, key)
    real_get = bundle.deps.s3.get_object
    calls = {"count": 0}

    def failing_get(**kwargs: Any) -> Any:
        if kwargs["Bucket"] == pipeline.archive:
            calls["count"] += 1
            if calls["count"] == 10:
                raise ConnectionError("archive read failed")
        return real_get(**kwargs)

    bundle.deps.s3.get_object = failing_get
    try:
        response = bundle.handler(event, FakeContext())
    finally:
        bundle.deps.s3.get_object = real_get

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["msg-0"]
    # No zip; the status object holds the released claim, which no reader takes for a
    # status (the API says "pending"), and which a retry takes at once.
    assert work_keys(pipeline) == {key, bundle_status_key("crash")}
    assert bundles.read_status(pipeline.s3, pipeline.work, "crash") is None
    assert status_of(pipeline, "crash")["lease"] is None
    assert pipeline.s3.list_multipart_uploads(Bucket=pipeline.work).get("Uploads", []) == []

    run_request(bundle, pipeline, key)

    assert status_of(pipeline, "crash")["image_count"] == 10


# Size and memory -------------------------------------------------------------------------
def test_large_bundle_goes_through_a_multipart_upload(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    images = {
        f"images/big/{index:02}.jpg": archive_image(
            pipeline, f"images/big/{index:02}.jpg", ["Big"], JPEG_MAGIC + os.urandom(MIB)
        )
        for index in range(10)
    }
    key = put_request(pipeline, "large", {"labels": ["Big"]})

    run_request(bundle, pipeline, key)

    head = pipeline.s3.head_object(Bucket=pipeline.work, Key="bundles/large.zip")
    assert head["ContentLength"] > 10 * MIB
    assert head["ETag"].strip('"').endswith("-2")  # 8 MiB part + the rest
    with open_zip(pipeline, "large") as archive:
        assert archive.testzip() is None
        for name, data in images.items():
            assert archive.read(name) == data


class DiskSink:
    """The S3 client, except that multipart uploads go to a local file.

    moto keeps every uploaded part and assembles the object in memory, which would count
    against the handler in tracemalloc; Lambda's memory never holds the uploaded object.
    """

    def __init__(self, s3: Any, path: Path) -> None:
        self._s3 = s3
        self.path = path
        self.parts: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.path.write_bytes(b"")
        return {"UploadId": "local"}

    def upload_part(self, *, PartNumber: int, Body: bytes, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        assert PartNumber == len(self.parts) + 1
        with self.path.open("ab") as file:
            file.write(Body)
        self.parts.append(len(Body))
        return {"ETag": f'"part-{PartNumber}"'}

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        return {"ETag": f'"local-{len(self.parts)}"'}

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("the upload must not be aborted")


def test_memory_stays_bounded_while_streaming_thirty_megabytes(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    count = 30
    for index in range(count):
        archive_image(pipeline, f"images/many/{index:02}.jpg", ["Many"], os.urandom(MIB))
    key = put_request(pipeline, "memory", {"labels": ["Many"]})
    head = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)
    ref = S3ObjectRef(
        bucket=pipeline.work,
        key=key,
        event_name="ObjectCreated:Put",
        etag=head["ETag"].strip('"'),
    )

    with tempfile.TemporaryDirectory() as directory:
        sink = DiskSink(pipeline.s3, Path(directory) / "bundle.zip")
        tracemalloc.start()
        try:
            outcome = bundle_handler.process(replace(bundle.deps, s3=sink), ref, turn())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert outcome == "ready"
        total = count * MIB
        assert sum(sink.parts) > total
        # One 8 MiB part buffer and a 1 MiB chunk, plus the SDK's own copies; not 30 MB.
        assert peak < 20 * MIB, f"peak traced memory {peak / MIB:.1f} MiB for {total / MIB} MiB"
        with zipfile.ZipFile(sink.path) as archive:
            assert len(archive.namelist()) == count + 1
            assert archive.testzip() is None
