"""End to end: every sample through the deployed pipeline, uploaded with the AWS CLI.

What each sample should become is derived from the sample itself (can Pillow open it, is
it UTF-8 JSON of the right shape, does the deployed transform's ``DATASETS`` give its key a
dataset), not listed here, so a new sample needs no change to this file.

The raw -> processed tutorial's own file is then sent as a user would, with ``aws s3 cp``
to the bucket root and under ``retina/``, and must come out exactly as the tutorial says.
Last, an archived photo removed with ``aws s3 rm`` takes its label counts with it.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from sluice import request_topics
from sluice.bundles import FINAL_STATUSES
from sluice.datasets import Registry, env_datasets
from sluice.keys import (
    ARCHIVE_IMAGES_PREFIX,
    DATA_PREFIX,
    THUMBNAILS_PREFIX,
    archive_key_for,
    derived_key,
    receipt_key,
)
from sluice.label_items import label_counts
from sluice.local.lambdas.schedules import discover_schedules
from sluice.ops.audit import pending_messages, wait_until_drained
from sluice.ops.objects import list_objects
from sluice.ops.queues import queue_depth
from tests.conftest import IKERIAN_EXPECTED, IKERIAN_SAMPLE
from tests.e2e.conftest import ROOT, Stack
from tests.s3events import s3_event, s3_record

pytestmark = pytest.mark.e2e

SAMPLES = ROOT / "samples"
DATA_EXTENSIONS = {".json", ".jsonl", ".ndjson"}
PIPELINE_TIMEOUT_SECONDS = 180
BUNDLE_TIMEOUT_SECONDS = 90


@dataclass(frozen=True)
class Expected:
    status: str
    kind: str


def _is_image(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:
        return False
    return True


def _data_is_readable(path: Path) -> bool:
    """Whether the file can be read as a whole (record-level errors do not reject a file)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    if path.suffix.lower() != ".json":
        return bool(text.strip())
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def expected_outcome(path: Path, key: str, datasets: Registry) -> Expected:
    if _is_image(path):
        return Expected("processed", "image")
    if path.suffix.lower() in DATA_EXTENSIONS:
        readable = datasets.for_key(key) is not None and _data_is_readable(path)
        return Expected("processed" if readable else "rejected", "data")
    return Expected("rejected", "unsupported")


SAMPLE_KEYS = {
    path.relative_to(SAMPLES).as_posix(): path for path in SAMPLES.rglob("*") if path.is_file()
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _get(stack: Stack, bucket: str, key: str) -> bytes:
    body: bytes = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _get_or_none(stack: Stack, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist (yet)."""
    try:
        return _get(stack, bucket, key)
    except ClientError as error:
        # Each stack.client() has its own exception classes (a session each), so an
        # `except s3.exceptions.NoSuchKey` of another client never matches: use the code.
        if error.response.get("Error", {}).get("Code") != "NoSuchKey":
            raise
        return None


def _transform_environment(stack: Stack) -> dict[str, str]:
    return _function_environment(stack, "transform")


def _function_environment(stack: Stack, function: str) -> dict[str, str]:
    config = stack.client("lambda").get_function_configuration(
        FunctionName=stack.environment.function_names[function]
    )
    variables: dict[str, str] = config["Environment"]["Variables"]
    return variables


@pytest.fixture(scope="session")
def datasets(stack: Stack) -> Registry:
    """The datasets the deployed transform has (its DATASETS, read as its cold start does)."""
    return env_datasets(_transform_environment(stack), "DATASETS")


@pytest.fixture(scope="session")
def receipts(stack: Stack) -> dict[str, dict[str, Any]]:
    """Upload ``samples/`` with ``aws s3 cp --recursive``; every input's receipt at rest."""
    assert SAMPLE_KEYS, f"no samples in {SAMPLES}"
    env = stack.environment
    stack.aws(
        "s3", "cp", "--recursive", "--only-show-errors", f"{SAMPLES}/", f"s3://{env.raw_bucket}/"
    )
    s3, sqs = stack.client("s3"), stack.client("sqs")
    wanted = {receipt_key(key): key for key in SAMPLE_KEYS}
    deadline = time.monotonic() + PIPELINE_TIMEOUT_SECONDS
    present: set[str] = set()
    while time.monotonic() < deadline:
        present = {o.key for o in list_objects(s3, env.processed_bucket, "receipts/")} & set(wanted)
        if len(present) == len(wanted):
            break
        time.sleep(1)
    missing = sorted(wanted[key] for key in set(wanted) - present)
    assert not missing, f"no receipt within {PIPELINE_TIMEOUT_SECONDS} s for {missing}"
    drained = wait_until_drained(
        lambda: pending_messages(sqs, env),
        timeout=max(1.0, deadline - time.monotonic()),
        interval=1.0,
    )
    assert drained, "the queues did not drain (archive/tag still busy)"
    return {
        key: json.loads(_get(stack, env.processed_bucket, receipt_key(key))) for key in SAMPLE_KEYS
    }


def test_every_input_has_a_receipt_with_the_expected_outcome(
    receipts: dict[str, dict[str, Any]], datasets: Registry
) -> None:
    outcomes = {
        key: Expected(receipt["status"], receipt["kind"]) for key, receipt in receipts.items()
    }
    expected = {key: expected_outcome(path, key, datasets) for key, path in SAMPLE_KEYS.items()}
    assert outcomes == expected
    for key, receipt in receipts.items():
        assert receipt["source"]["key"] == key
        assert receipt["source"]["etag"] == _md5(SAMPLE_KEYS[key].read_bytes())
        if receipt["status"] == "rejected":
            assert receipt["errors"], f"{key} was rejected without a reason"
            assert all(error["message"] for error in receipt["errors"])


def test_processed_outputs_exist_as_the_receipts_describe(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    s3 = stack.client("s3")
    for key, receipt in receipts.items():
        if receipt["status"] != "processed":
            assert receipt["outputs"] == [], f"rejected {key} lists outputs"
            continue
        assert receipt["outputs"], f"processed {key} has no outputs"
        for output in receipt["outputs"]:
            head = s3.head_object(Bucket=output["bucket"], Key=output["key"])
            assert head["ContentLength"] == output["size"], output


def test_every_photo_has_one_thumbnail_per_configured_size(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    env = stack.environment
    sizes = {
        int(size)
        for size in _transform_environment(stack).get("THUMBNAIL_SIZES", "128,512").split(",")
    }
    photos = {key: r for key, r in receipts.items() if r["kind"] == "image"}
    assert photos
    listed: list[str] = []
    for key, receipt in photos.items():
        with Image.open(SAMPLE_KEYS[key]) as image:
            assert max(image.size) > max(sizes), f"{key} is too small to have every size"
        thumbnails = [
            o["key"] for o in receipt["outputs"] if o["key"].startswith(THUMBNAILS_PREFIX)
        ]
        assert sorted(int(t.split("/")[1]) for t in thumbnails) == sorted(sizes), key
        listed += thumbnails
    stored = [
        o.key for o in list_objects(stack.client("s3"), env.processed_bucket, THUMBNAILS_PREFIX)
    ]
    assert sorted(stored) == sorted(listed)


def test_raw_is_emptied_and_the_archive_holds_each_input_once(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    env = stack.environment
    s3 = stack.client("s3")
    assert [o.key for o in list_objects(s3, env.raw_bucket)] == []
    expected = {archive_key_for(r["kind"], r["status"], key): key for key, r in receipts.items()}
    archived = [o.key for o in list_objects(s3, env.archive_bucket)]
    assert sorted(archived) == sorted(expected)
    for archive_key, key in expected.items():
        assert _md5(_get(stack, env.archive_bucket, archive_key)) == _md5(
            SAMPLE_KEYS[key].read_bytes()
        ), archive_key


def _labels_table(stack: Stack) -> str:
    table = stack.environment.labels_table
    assert table, "the Terraform outputs name no labels table"
    return table


def _memberships(stack: Stack, label: str) -> list[dict[str, Any]]:
    paginator = stack.client("dynamodb").get_paginator("query")
    items: list[dict[str, Any]] = []
    for page in paginator.paginate(
        TableName=_labels_table(stack),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"LABEL#{label}"}},
        ConsistentRead=True,
    ):
        items += page["Items"]
    return items


def _image_labels(stack: Stack) -> dict[str, list[str]]:
    paginator = stack.client("dynamodb").get_paginator("scan")
    labels: dict[str, list[str]] = {}
    for page in paginator.paginate(TableName=stack.environment.images_table):
        for item in page["Items"]:
            values = item.get("labels", {}).get("L", [])
            labels[item["archive_key"]["S"]] = [value["S"] for value in values]
    return labels


def test_label_counts_equal_memberships_and_image_labels(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    counts = dict(label_counts(stack.client("dynamodb"), _labels_table(stack)))
    assert counts, "no image was labelled"
    image_labels = _image_labels(stack)
    photos = {ARCHIVE_IMAGES_PREFIX + key for key, r in receipts.items() if r["kind"] == "image"}
    assert set(image_labels) == photos
    from_images = Counter(label for labels in image_labels.values() for label in set(labels))
    from_memberships = {label: len(_memberships(stack, label)) for label in counts}
    assert counts == from_memberships == dict(from_images)


def test_a_bundle_for_the_top_label_holds_exactly_its_images(
    stack: Stack, receipts: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    env = stack.environment
    (top_label, count), *_ = label_counts(stack.client("dynamodb"), _labels_table(stack))
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"labels": [top_label], "match": "any"}))
    bundle_id = f"e2e-{int(time.time())}"
    stack.aws("s3", "cp", str(request), f"s3://{env.work_bucket}/requests/{bundle_id}.json")

    status = _wait_for_outcome(stack, bundle_id)
    assert status["status"] == "ready", status
    assert status["image_count"] == count
    assert status["url"]

    archive = zipfile.ZipFile(io.BytesIO(_get(stack, env.work_bucket, status["zip_key"])))
    in_zip = sorted(
        _md5(archive.read(name)) for name in archive.namelist() if name != "manifest.json"
    )
    members = [item["archive_key"]["S"] for item in _memberships(stack, top_label)]
    expected = sorted(_md5(_get(stack, env.archive_bucket, key)) for key in members)
    assert in_zip == expected


def _wait_for_outcome(stack: Stack, bundle_id: str) -> dict[str, Any]:
    """The bundle's status once it is final (``ready``, ``empty``, ``error``)."""
    deadline = time.monotonic() + BUNDLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        body = _get_or_none(stack, stack.environment.work_bucket, f"bundles/{bundle_id}.json")
        status: dict[str, Any] | None = None if body is None else json.loads(body)
        if status is not None and status["status"] in FINAL_STATUSES:
            return status
        time.sleep(1)
    pytest.fail(f"no bundle outcome within {BUNDLE_TIMEOUT_SECONDS} s", pytrace=False)


def _received(sqs: Any, queue_url: str, *, at_least: int) -> list[dict[str, Any]]:
    """The queue's messages: received until ``at_least`` came (or a deadline), then until
    a receive finds none, so a duplicate is among them."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + BUNDLE_TIMEOUT_SECONDS
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        batch = answer.get("Messages", [])
        received += batch
        if not batch and (len(received) >= at_least or time.monotonic() > deadline):
            return received


@pytest.fixture
def mailbox(stack: Stack) -> Iterator[tuple[str, str]]:
    """An SQS queue (URL, ARN) standing in for a recipient's inbox; deleted afterwards."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"e2e-mailbox-{int(time.time())}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    yield url, arn["QueueArn"]
    sqs.delete_queue(QueueUrl=url)


@pytest.mark.not_on_localstack(
    "relies on moto: the request's topic is made first by the test (moto's CreateTopic"
    " returns an existing topic whatever the tags, SNS refuses other tags) and moto"
    " confirms an email subscription at once"
)
def test_a_bundle_that_notifies_is_ready_and_its_topic_sent_the_link_once(
    stack: Stack, receipts: dict[str, dict[str, Any]], mailbox: tuple[str, str]
) -> None:
    """Issue 12: a request naming a recipient reaches ``ready``, and its own topic gets one
    message, with the link and without the address; then the topic is gone.

    What a topic sent is not readable afterwards: moto delivers nothing to an email
    address, and its ``/moto-api/data.json`` (every model object, deleted topics' messages
    included) answers 500 on this stack (serialising a Lambda function asks Docker for a
    client). So the topic is made first, under the name the handler derives from the
    bundle id and the request's ETag (a single PUT's is the body's MD5), with an SQS queue
    subscribed: CreateTopic and Subscribe return what exists, and SNS delivers every
    Publish to every subscription. moto confirms the email subscription at once."""
    env = stack.environment
    sns, sqs = stack.client("sns"), stack.client("sqs")
    (top_label, _), *_ = label_counts(stack.client("dynamodb"), _labels_table(stack))
    recipient = "e2e.recipient@example.org"
    body = json.dumps({"labels": [top_label], "notify": recipient}).encode()
    bundle_id = f"e2e-notify-{int(time.time())}"
    prefix = _function_environment(stack, "bundle")["NOTIFY_TOPIC_PREFIX"]
    name = request_topics.topic_name(prefix, bundle_id, _md5(body))
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue_url, queue_arn = mailbox
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    key = f"requests/{bundle_id}.json"
    written = stack.client("s3").put_object(Bucket=env.work_bucket, Key=key, Body=body)
    assert written["ETag"].strip('"') == _md5(body), "the request's ETag is not its MD5"
    status = _wait_for_outcome(stack, bundle_id)

    assert (status["status"], status["notification"]) == ("ready", "email"), status
    # The recipient is told after the status is written (the handler's steps 8-9).
    [message] = _received(sqs, queue_url, at_least=1)
    envelope = json.loads(message["Body"])
    assert status["url"] in envelope["Message"]
    assert status["expires_at"] in envelope["Message"]
    assert "e2e.recipient" not in message["Body"] and "example.org" not in message["Body"]
    deadline = time.monotonic() + BUNDLE_TIMEOUT_SECONDS
    while topic in [t["TopicArn"] for t in sns.list_topics()["Topics"]]:
        assert time.monotonic() < deadline, f"{name} not deleted after the delivery"
        time.sleep(1)


def test_the_sweep_rule_terraform_made_is_one_the_runner_fires(stack: Stack) -> None:
    """moto fires no schedule, so the runner does (decision 42): the rule and target that
    Terraform created read back as the runner reads them, at `bundle_sweep_minutes` of
    env/local.tfvars. The firing itself: tests/integration/test_runner_process.py."""
    sqs = stack.client("sqs")
    bundle_queue = stack.environment.queue_urls["bundle"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=bundle_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    warnings: list[str] = []
    [rule] = discover_schedules(stack.client("events"), sqs, {queue_arn}, warn=warnings.append)
    assert rule.name.endswith("-bundle-sweep") and rule.period_seconds == 5 * 60
    assert [target.queue_url for target in rule.targets] == [bundle_queue]
    assert warnings == []


def test_nothing_is_dead_lettered(stack: Stack, receipts: dict[str, dict[str, Any]]) -> None:
    env = stack.environment
    assert queue_depth(stack.client("sqs"), "dlq", env.dead_letter_queue_url).total == 0


def test_sluice_audit_is_clean(stack: Stack, receipts: dict[str, dict[str, Any]]) -> None:
    audit = stack.sluice("audit", "--wait", "60")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_function_logs_reach_their_log_groups(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    logs = stack.client("logs")
    for function in ("transform", "archive", "tag"):
        group = f"/aws/lambda/{stack.environment.function_names[function]}"
        messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
        assert any(m.startswith("START RequestId: ") for m in messages), group
        assert any(m.startswith("REPORT RequestId: ") for m in messages), group


# --- the tutorial's file, sent by hand ----------------------------------------------------


def _receipt_or_none(stack: Stack, key: str) -> dict[str, Any] | None:
    body = _get_or_none(stack, stack.environment.processed_bucket, receipt_key(key))
    receipt: dict[str, Any] | None = None if body is None else json.loads(body)
    return receipt


def _wait_for_new_receipt(
    stack: Stack, key: str, before: dict[str, Any] | None, deadline: float
) -> dict[str, Any]:
    """The receipt of the version just uploaded: a receipt that is not ``before``."""
    while time.monotonic() < deadline:
        receipt = _receipt_or_none(stack, key)
        if receipt is not None and (
            before is None or receipt["source"]["version_id"] != before["source"]["version_id"]
        ):
            return receipt
        time.sleep(1)
    pytest.fail(f"no new receipt for {key} within {PIPELINE_TIMEOUT_SECONDS} s", pytrace=False)


def test_users_sample_sent_to_the_root_and_under_retina_comes_out_as_the_tutorial_says(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    # After the samples (which put this file at the root once already): sending it again is
    # a new version of the same key, and its own receipt is the one waited for.
    env = stack.environment
    destinations = {
        "ikerian_sample.json": f"s3://{env.raw_bucket}/",
        "retina/ikerian_sample.json": f"s3://{env.raw_bucket}/retina/",
    }
    before = {key: _receipt_or_none(stack, key) for key in destinations}
    for destination in destinations.values():
        stack.aws("s3", "cp", "--only-show-errors", str(IKERIAN_SAMPLE), destination)

    deadline = time.monotonic() + PIPELINE_TIMEOUT_SECONDS
    for key in destinations:
        receipt = _wait_for_new_receipt(stack, key, before[key], deadline)
        assert receipt["status"] == "processed", receipt
        assert (receipt["kind"], receipt["dataset"], receipt["errors"]) == ("data", "retina", [])
        assert receipt["stats"] == {"records_total": 2, "records_valid": 2, "records_invalid": 0}
        assert receipt["source"]["key"] == key
        assert receipt["source"]["etag"] == _md5(IKERIAN_SAMPLE.read_bytes())
        data_key = derived_key(DATA_PREFIX, key)
        assert [output["key"] for output in receipt["outputs"]] == [data_key]
        assert json.loads(_get(stack, env.processed_bucket, data_key)) == IKERIAN_EXPECTED

    drained = wait_until_drained(
        lambda: pending_messages(stack.client("sqs"), env),
        timeout=max(1.0, deadline - time.monotonic()),
        interval=1.0,
    )
    assert drained, "the queues did not drain after the tutorial's uploads"
    audit = stack.sluice("audit", "--wait", "60")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_aws_s3_rm_of_an_archived_photo_drops_its_label_counts_and_audit_stays_clean(
    stack: Stack, receipts: dict[str, dict[str, Any]]
) -> None:
    """A copy of a sample photo (same labels, so no label is new) is uploaded, labelled,
    then removed from ARCHIVE with ``aws s3 rm``: the stack ends as it was, plus ledger.

    ARCHIVE is versioned, so ``rm`` leaves a delete marker; AWS then sends
    ``ObjectRemoved:DeleteMarkerCreated``, moto sends nothing. The test checks that the
    bucket's notification configuration sends removals to the tag queue, and delivers
    that event there as AWS shapes it; the local runner serves it like any other."""
    env = stack.environment
    s3, sqs, dynamodb = stack.client("s3"), stack.client("sqs"), stack.client("dynamodb")
    configuration = s3.get_bucket_notification_configuration(Bucket=env.archive_bucket)
    removals = {
        (queue["QueueArn"], rule["Value"])
        for queue in configuration.get("QueueConfigurations", [])
        if any(event.startswith("s3:ObjectRemoved:") for event in queue["Events"])
        for rule in queue["Filter"]["Key"]["FilterRules"]
    }
    tag_queue = sqs.get_queue_attributes(
        QueueUrl=env.queue_urls["tag"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    prefixes = {"images/", "data/", "rejected/", "superseded/"}
    assert removals == {(tag_queue, prefix) for prefix in prefixes}

    before = dict(label_counts(dynamodb, _labels_table(stack)))
    key = "e2e-deletion/sunset-beach-copy.jpg"
    archive_key = ARCHIVE_IMAGES_PREFIX + key
    photo = SAMPLES / "photos" / "sunset-beach.jpg"
    stack.aws("s3", "cp", "--only-show-errors", str(photo), f"s3://{env.raw_bucket}/{key}")
    deadline = time.monotonic() + PIPELINE_TIMEOUT_SECONDS
    labelled: list[str] = []
    while not labelled and time.monotonic() < deadline:
        labelled = _image_labels(stack).get(archive_key, [])
        time.sleep(0 if labelled else 1)
    assert labelled, f"{key} was not labelled within {PIPELINE_TIMEOUT_SECONDS} s"
    with_copy = dict(label_counts(dynamodb, _labels_table(stack)))
    assert with_copy == {label: n + (label in labelled) for label, n in before.items()}

    stack.aws("s3", "rm", "--only-show-errors", f"s3://{env.archive_bucket}/{archive_key}")
    versions = s3.list_object_versions(Bucket=env.archive_bucket, Prefix=archive_key)
    (marker,) = [m for m in versions.get("DeleteMarkers", []) if m["IsLatest"]]
    record = s3_record(
        env.archive_bucket,
        archive_key,
        event_name="ObjectRemoved:DeleteMarkerCreated",
        version_id=marker["VersionId"],
    )
    sqs.send_message(QueueUrl=env.queue_urls["tag"], MessageBody=json.dumps(s3_event(record)))
    while time.monotonic() < deadline:
        if dict(label_counts(dynamodb, _labels_table(stack))) == before:
            break
        time.sleep(1)
    assert dict(label_counts(dynamodb, _labels_table(stack))) == before
    assert archive_key not in _image_labels(stack)
    audit = stack.sluice("audit", "--wait", "60")
    assert audit.returncode == 0, audit.stdout + audit.stderr
