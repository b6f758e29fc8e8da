"""A bundle over archived images (Glacier, Intelligent-Tiering archive tiers): restoring -> ready.

moto keeps a GLACIER object unreadable (``InvalidObjectState``) until ``RestoreObject``,
and then finishes the restore at once. AWS takes minutes to hours, during which
``HeadObject`` answers ``x-amz-restore: ongoing-request="true"`` (S3 API reference,
HeadObject, "Restore"); :class:`SlowRestores` puts that back on the wire until the test
lets the restores finish. The sweep's trigger is the EventBridge "Scheduled Event" of AWS's
documentation (tests/events/eventbridge_scheduled.json).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from sluice import restores
from sluice.handlers.bundle import make_handler, sweep
from sluice.keys import image_id
from sluice.label_items import add_membership
from sluice.local.lambdas.schedules import Scheduler, discover_schedules
from tests.conftest import FakeContext, Pipeline
from tests.integration.test_bundle import (
    JPEG_MAGIC,
    BundleFunction,
    MidBuild,
    bundle_function,
    notifications,
    open_zip,
    put_request,
    run_request,
    status_of,
    subscribe,
    turn,
    work_keys,
    zip_versions,
)
from tests.s3events import golden, object_event_for, sqs_batch


class SlowRestores:
    """What AWS answers while a restore is under way, until :meth:`finish`."""

    def __init__(self, s3: Any) -> None:
        self.under_way = True
        s3.meta.events.register("after-call.s3.HeadObject", self._rewrite)

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.under_way and "Restore" in parsed:
            parsed["Restore"] = 'ongoing-request="true"'

    def finish(self) -> None:
        self.under_way = False


def store(pipeline: Pipeline, key: str, label: str, storage_class: str = "STANDARD") -> bytes:
    body = JPEG_MAGIC + key.encode() * 50
    pipeline.s3.put_object(Bucket=pipeline.archive, Key=key, Body=body, StorageClass=storage_class)
    add_membership(
        pipeline.dynamodb,
        pipeline.labels_table,
        label,
        image_id(key),
        archive_key=key,
        confidence=99.0,
    )
    return body


def calls_of(client: Any, operation: str) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == operation:
            made.append(dict(params))

    client.meta.events.register("provide-client-params.*.*", record)
    return made


@pytest.fixture
def bundle(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> BundleFunction:
    monkeypatch.setenv("ARCHIVE_COLD_STORAGE", "glacier")
    monkeypatch.setenv("RESTORE_TIER", "Bulk")
    monkeypatch.setenv("RESTORE_DAYS", "2")
    return bundle_function()


def test_a_bundle_over_glacier_images_restores_them_then_is_made(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    operators = subscribe(pipeline)
    bodies = {
        "images/cold/a.jpg": store(pipeline, "images/cold/a.jpg", "Dog", "GLACIER"),
        "images/cold/b.jpg": store(pipeline, "images/cold/b.jpg", "Dog", "GLACIER"),
        "images/warm/c.jpg": store(pipeline, "images/warm/c.jpg", "Dog"),
    }
    slow = SlowRestores(bundle.deps.s3)
    restore_calls = calls_of(bundle.deps.s3, "RestoreObject")
    key = put_request(pipeline, "cold-dogs", {"labels": ["Dog"], "notify": "a@example.org"})
    written = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)["LastModified"]

    run_request(bundle, pipeline, key)

    # Restores asked for, with the configured tier and days; status restoring with counts.
    assert sorted(c["Key"] for c in restore_calls) == ["images/cold/a.jpg", "images/cold/b.jpg"]
    assert {json.dumps(c["RestoreRequest"], sort_keys=True) for c in restore_calls} == {
        json.dumps({"Days": 2, "GlacierJobParameters": {"Tier": "Bulk"}}, sort_keys=True)
    }
    status = status_of(pipeline, "cold-dogs")
    assert status["status"] == "restoring"
    assert status["restore"] == {"tier": "Bulk", "images": 3, "restored": 1, "restoring": 2}
    assert "bundles/cold-dogs.zip" not in work_keys(pipeline)
    assert notifications(pipeline, operators, expected=0) == []
    marker = restores.read_marker(pipeline.s3, pipeline.work, "cold-dogs")
    assert marker is not None and marker["checks"] == 1

    # The scheduled sweep before the first check is due: nothing to do yet.
    tick = sqs_batch(golden("eventbridge_scheduled.json"))
    assert bundle.handler(tick, FakeContext()) == {"batchItemFailures": []}
    assert status_of(pipeline, "cold-dogs")["status"] == "restoring"

    # Due, still under way: no second RestoreObject, and the next check is further away.
    first = written + timedelta(minutes=6)
    sweep(bundle.deps, turn(first))
    assert status_of(pipeline, "cold-dogs")["status"] == "restoring"
    assert len(restore_calls) == 2
    marker = restores.read_marker(pipeline.s3, pipeline.work, "cold-dogs")
    assert marker is not None and marker["checks"] == 2
    assert marker["next_check_at"] == (first + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")

    slow.finish()
    done = first + timedelta(minutes=11)
    sweep(bundle.deps, turn(done))

    status = status_of(pipeline, "cold-dogs")
    assert status["status"] == "ready"
    assert status["image_count"] == 3
    assert status["restore"] == {"tier": "Bulk", "images": 3, "restored": 3, "restoring": 0}
    with open_zip(pipeline, "cold-dogs") as archive:
        for name, body in bodies.items():
            assert archive.read(name) == body
    assert restores.read_marker(pipeline.s3, pipeline.work, "cold-dogs") is None
    [notice] = notifications(pipeline, operators, expected=1)
    assert json.loads(notice["Message"])["status"] == "ready"
    # The recipient's topic was delivered and deleted in the same sweep.
    assert pipeline.sns.list_topics()["Topics"] == [{"TopicArn": pipeline.topic_arn}]

    # Nothing left for a later sweep to do.
    later = done + timedelta(hours=3)
    sweep(bundle.deps, turn(later))
    assert notifications(pipeline, operators, expected=0) == []


def test_a_restore_already_under_way_is_not_asked_for_again(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    store(pipeline, "images/cold/a.jpg", "Dog", "GLACIER")
    pipeline.s3.restore_object(
        Bucket=pipeline.archive, Key="images/cold/a.jpg", RestoreRequest={"Days": 1}
    )
    SlowRestores(bundle.deps.s3)
    restore_calls = calls_of(bundle.deps.s3, "RestoreObject")

    run_request(bundle, pipeline, put_request(pipeline, "asked", {"labels": ["Dog"]}))

    assert restore_calls == []
    assert status_of(pipeline, "asked")["restore"]["restoring"] == 1


def test_an_environment_without_cold_storage_never_looks_first(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARCHIVE_COLD_STORAGE", raising=False)
    bundle = bundle_function()
    store(pipeline, "images/warm/c.jpg", "Dog")
    heads = calls_of(bundle.deps.s3, "HeadObject")

    run_request(bundle, pipeline, put_request(pipeline, "warm", {"labels": ["Dog"]}))

    assert heads == []
    assert status_of(pipeline, "warm")["restore"] is None


# The sweep and an S3 redelivery of one restoring request -----------------------------------
@pytest.fixture
def restoring(pipeline: Pipeline, bundle: BundleFunction) -> tuple[str, datetime]:
    """A request with a recipient, waiting for two Glacier images since ``written``; then
    the restores finish (AWS: hours later). Returns the request key and ``written``."""
    store(pipeline, "images/cold/a.jpg", "Dog", "GLACIER")
    store(pipeline, "images/cold/b.jpg", "Dog", "GLACIER")
    slow = SlowRestores(bundle.deps.s3)
    key = put_request(pipeline, "raced", {"labels": ["Dog"], "notify": "a@example.org"})
    written = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)["LastModified"]
    first = make_handler(replace(bundle.deps, clock=lambda: written))
    assert first(object_event_for(pipeline.s3, pipeline.work, key), FakeContext()) == {
        "batchItemFailures": []
    }
    assert status_of(pipeline, "raced")["status"] == "restoring"
    slow.finish()
    return key, written


def test_a_redelivery_during_the_sweeps_build_is_retried_and_the_bundle_built_once(
    pipeline: Pipeline, bundle: BundleFunction, restoring: tuple[str, datetime]
) -> None:
    key, written = restoring
    operators = subscribe(pipeline)
    recipient = calls_of(bundle.deps.sns, "Publish")
    redelivered: list[dict[str, Any]] = []
    redelivery = make_handler(replace(bundle.deps, clock=lambda: written + timedelta(minutes=6)))

    def redeliver() -> None:
        event = object_event_for(pipeline.s3, pipeline.work, key)
        redelivered.append(redelivery(event, FakeContext()))

    # The sweep serves the due request and, while it writes the zip, S3 redelivers it.
    mid_build = MidBuild(bundle.deps.s3, pipeline.archive, redeliver)
    sweep(replace(bundle.deps, s3=mid_build), turn(written + timedelta(minutes=6)))

    assert redelivered == [{"batchItemFailures": [{"itemIdentifier": "msg-0"}]}]
    assert status_of(pipeline, "raced")["status"] == "ready"
    # The redelivery's retry finds the outcome.
    run_request(bundle, pipeline, key)
    assert zip_versions(pipeline, "raced") == 1
    assert len(notifications(pipeline, operators, expected=1)) == 1
    assert len([c for c in recipient if c["TopicArn"] != pipeline.topic_arn]) == 1
    assert restores.read_marker(pipeline.s3, pipeline.work, "raced") is None


def test_a_sweep_during_a_redeliverys_build_leaves_the_bundle_to_it(
    pipeline: Pipeline, bundle: BundleFunction, restoring: tuple[str, datetime]
) -> None:
    key, written = restoring
    operators = subscribe(pipeline)
    recipient = calls_of(bundle.deps.sns, "Publish")
    reports: list[Any] = []

    def sweep_now() -> None:
        reports.append(sweep(bundle.deps, turn(written + timedelta(minutes=7))))

    # S3 redelivers the request after the first check was due; while it writes the zip,
    # the scheduled sweep comes.
    mid_build = MidBuild(bundle.deps.s3, pipeline.archive, sweep_now)
    at_six = replace(bundle.deps, s3=mid_build, clock=lambda: written + timedelta(minutes=6))
    event = object_event_for(pipeline.s3, pipeline.work, key)
    assert make_handler(at_six)(event, FakeContext()) == {"batchItemFailures": []}

    assert len(reports) == 1
    assert status_of(pipeline, "raced")["status"] == "ready"
    assert zip_versions(pipeline, "raced") == 1
    # The sweep left its marker (the build was not its own); the next one removes it.
    assert restores.read_marker(pipeline.s3, pipeline.work, "raced") is not None
    sweep(bundle.deps, turn(written + timedelta(minutes=8)))
    assert restores.read_marker(pipeline.s3, pipeline.work, "raced") is None
    assert zip_versions(pipeline, "raced") == 1
    assert len(notifications(pipeline, operators, expected=1)) == 1
    assert len([c for c in recipient if c["TopicArn"] != pipeline.topic_arn]) == 1


# What HeadObject answers (S3 API reference), and what is asked for each archive -----------
@pytest.mark.parametrize(
    ("head", "state"),
    [
        ({"StorageClass": "GLACIER"}, "archived"),
        ({"StorageClass": "DEEP_ARCHIVE"}, "archived"),
        ({"StorageClass": "INTELLIGENT_TIERING", "ArchiveStatus": "ARCHIVE_ACCESS"}, "archived"),
        ({"StorageClass": "INTELLIGENT_TIERING"}, "readable"),
        ({"StorageClass": "GLACIER_IR"}, "readable"),
        ({}, "readable"),  # STANDARD is not named in the answer
        ({"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"'}, "restoring"),
        (
            {
                "StorageClass": "GLACIER",
                "Restore": 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
            },
            "readable",
        ),
    ],
)
def test_restore_state_follows_head_object(head: dict[str, str], state: str) -> None:
    assert restores._restore_state(head) == state


@pytest.mark.parametrize(
    ("head", "tier", "expected"),
    [
        ({"StorageClass": "GLACIER"}, "Expedited", {"Days": 3, "Tier": "Expedited"}),
        ({"StorageClass": "DEEP_ARCHIVE"}, "Expedited", {"Days": 3, "Tier": "Standard"}),
        (
            {"StorageClass": "INTELLIGENT_TIERING", "ArchiveStatus": "ARCHIVE_ACCESS"},
            "Expedited",
            {"Tier": "Expedited"},
        ),
        (
            {"StorageClass": "INTELLIGENT_TIERING", "ArchiveStatus": "DEEP_ARCHIVE_ACCESS"},
            "Expedited",
            {"Tier": "Standard"},
        ),
    ],
)
def test_restore_request_fits_the_archive(
    head: dict[str, str], tier: str, expected: dict[str, Any]
) -> None:
    """Intelligent-Tiering objects go back to Frequent Access (no Days); Deep Archive and
    Deep Archive Access have no Expedited retrieval."""
    asked = restores._restore_request(head, tier, 3)
    flat = {**{k: v for k, v in asked.items() if k == "Days"}, **asked["GlacierJobParameters"]}
    assert flat == expected


def test_the_local_runners_schedule_rule_brings_a_restoring_bundle_to_ready(
    pipeline: Pipeline, bundle: BundleFunction
) -> None:
    """Locally nothing but the runner fires the sweep rule (moto fires no schedules): the
    rule and its target are read back from the emulator, and the event sent to the bundle
    queue is one the bundle handler sweeps on."""
    events = boto3.client("events", region_name=pipeline.sqs.meta.region_name)
    queues = {}
    for name in ("sluice-test-bundle", "sluice-other-bundle"):
        url = pipeline.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = pipeline.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        queues[name] = (url, arn["Attributes"]["QueueArn"])
    bundle_url, bundle_arn = queues["sluice-test-bundle"]
    rules = {
        # Terraform's sweep rule (modules/pipeline), at bundle_sweep_minutes = 1.
        "sluice-test-bundle-sweep": ({"ScheduleExpression": "rate(1 minute)"}, bundle_arn),
        "sluice-test-disabled": (
            {"ScheduleExpression": "rate(1 minute)", "State": "DISABLED"},
            bundle_arn,
        ),
        "sluice-other-bundle-sweep": (
            {"ScheduleExpression": "rate(1 minute)"},
            queues["sluice-other-bundle"][1],
        ),
        "sluice-test-pattern": ({"EventPattern": json.dumps({"source": ["aws.s3"]})}, bundle_arn),
        "sluice-test-cron": ({"ScheduleExpression": "cron(0/5 * * * ? *)"}, bundle_arn),
    }
    for name, (settings, target) in rules.items():
        events.put_rule(Name=name, **settings)
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": target}])

    warnings: list[str] = []
    [rule] = discover_schedules(events, pipeline.sqs, {bundle_arn}, warn=warnings.append)
    assert (rule.name, rule.period_seconds) == ("sluice-test-bundle-sweep", 60)
    assert [t.queue_url for t in rule.targets] == [bundle_url]
    assert warnings == [
        "  ! schedule sluice-test-cron: cron(0/5 * * * ? *) is not a rate; not fired locally"
    ]

    store(pipeline, "images/cold/a.jpg", "Dog", "GLACIER")
    slow = SlowRestores(bundle.deps.s3)
    key = put_request(pipeline, "swept", {"labels": ["Dog"]})
    written = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)["LastModified"]
    run_request(bundle, pipeline, key)
    assert status_of(pipeline, "swept")["status"] == "restoring"
    slow.finish()

    clock = [0.0]
    scheduler = Scheduler([rule], pipeline.sqs, clock=lambda: clock[0])
    assert scheduler.fire_due() == []
    clock[0] += 60
    assert scheduler.fire_due() == [rule.name]
    [message] = pipeline.sqs.receive_message(QueueUrl=bundle_url, MaxNumberOfMessages=10)[
        "Messages"
    ]
    tick = sqs_batch(message["Body"])
    # The bundle function's own clock: the first restore check is due.
    at_six = make_handler(replace(bundle.deps, clock=lambda: written + timedelta(minutes=6)))
    assert at_six(tick, FakeContext()) == {"batchItemFailures": []}
    assert status_of(pipeline, "swept")["status"] == "ready"
    assert restores.read_marker(pipeline.s3, pipeline.work, "swept") is None
