"""A bundle request's ``notify``: a topic of its own, delivered, then deleted (moto).

moto confirms every subscription at once; AWS keeps an email subscription
``PendingConfirmation`` until its owner clicks the link in the confirmation email, and
``ListSubscriptionsByTopic`` lists it with that word as its ARN (SNS API reference,
ListSubscriptionsByTopic / Subscribe). :class:`Confirmation` puts that back on the wire.
The sweep's trigger is the EventBridge "Scheduled Event" of AWS's documentation
(tests/events/eventbridge_scheduled.json), delivered through the bundle queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from sluice import request_topics
from sluice.handlers import bundle as bundle_handler
from tests.conftest import NOTIFY_TOPIC_PREFIX, FakeContext, Pipeline
from tests.integration.test_bundle import (
    BundleFunction,
    archive_image,
    bundle_function,
    notifications,
    open_zip,
    put_request,
    run_request,
    status_of,
    subscribe,
    turn,
)
from tests.s3events import golden, sqs_batch
from tests.security_support import CapturedLogs, install_capture, remove_capture

EMAIL = "jeanne.dupont-quirrell@example.org"
PHONE = "+33612345678"
SECRETS = ("jeanne", "dupont", "quirrell", "example.org", "33612345678", "612345678")


class Calls:
    """Every SNS call the handler's client makes: operation name and parameters."""

    def __init__(self, sns: Any) -> None:
        self.made: list[tuple[str, dict[str, Any]]] = []
        sns.meta.events.register("provide-client-params.sns.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.made.append((model.name, dict(params)))

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.made if name == operation]


class Confirmation:
    """AWS's view of an email subscription: pending until :meth:`confirm`."""

    def __init__(self, sns: Any) -> None:
        self.pending = True
        sns.meta.events.register("after-call.sns.ListSubscriptionsByTopic", self._rewrite)

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.pending:
            for subscription in parsed.get("Subscriptions", []):
                subscription["SubscriptionArn"] = "PendingConfirmation"

    def confirm(self) -> None:
        self.pending = False


@pytest.fixture
def bundle(pipeline: Pipeline) -> Iterator[BundleFunction]:
    level = bundle_handler.logger.log_level
    bundle_handler.logger.setLevel(logging.DEBUG)
    yield bundle_function()
    bundle_handler.logger.setLevel(level)


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    """Every line any logger emits (the handler's at DEBUG; the SDK's at its default)."""
    capture = CapturedLogs()
    attached = install_capture(capture)
    yield capture
    remove_capture(capture, attached)


@pytest.fixture
def dogs(pipeline: Pipeline) -> None:
    archive_image(pipeline, "images/dogs/rex.jpg", ["Dog"])
    archive_image(pipeline, "images/dogs/fido.jpg", ["Dog"])


def request_topics_left(pipeline: Pipeline) -> list[str]:
    return list(request_topics.topics_with_prefix(pipeline.sns, NOTIFY_TOPIC_PREFIX))


def everything_stored(pipeline: Pipeline) -> dict[str, str]:
    """Every version of every object in every bucket, and the zips' manifests, as text."""
    stored: dict[str, str] = {}
    for bucket in (pipeline.raw, pipeline.processed, pipeline.archive, pipeline.work):
        listed = pipeline.s3.list_object_versions(Bucket=bucket).get("Versions", [])
        for version in listed:
            body = pipeline.s3.get_object(
                Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"]
            )["Body"].read()
            where = f"s3://{bucket}/{version['Key']}?{version['VersionId']}"
            stored[where] = body.decode("utf-8", "replace")
            if version["Key"].endswith(".zip"):
                bundle_id = version["Key"].removeprefix("bundles/").removesuffix(".zip")
                with open_zip(pipeline, bundle_id) as archive:
                    stored[where + "#manifest"] = archive.read("manifest.json").decode()
    return stored


def leaks(texts: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, s) for where, text in texts.items() for s in SECRETS if s in text.lower()]


def scheduled_tick() -> dict[str, Any]:
    """The sweep rule's event as the bundle queue delivers it."""
    return sqs_batch(golden("eventbridge_scheduled.json"))


# --- delivery ---------------------------------------------------------------------------
def test_an_email_recipient_gets_a_topic_of_its_own_deleted_once_the_link_is_published(
    pipeline: Pipeline,
    bundle: BundleFunction,
    dogs: None,
    logs: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    operators = subscribe(pipeline)
    calls = Calls(bundle.deps.sns)
    key = put_request(pipeline, "for-a-person", {"labels": ["Dog"], "notify": EMAIL})

    run_request(bundle, pipeline, key)

    # Created with its expiry, the address subscribed, the link published, then deleted.
    [created] = calls.named("CreateTopic")
    assert created["Name"].startswith(NOTIFY_TOPIC_PREFIX)
    tags = {tag["Key"]: tag["Value"] for tag in created["Tags"]}
    assert tags["sluice:bundle-id"] == "for-a-person"
    written = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)["LastModified"]
    assert tags["sluice:expires-at"] == (written + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    [subscribed] = calls.named("Subscribe")
    assert (subscribed["Protocol"], subscribed["Endpoint"]) == ("email", EMAIL)
    topic = subscribed["TopicArn"]
    to_recipient = [p for p in calls.named("Publish") if p["TopicArn"] == topic]
    assert len(to_recipient) == 1
    status = status_of(pipeline, "for-a-person")
    assert status["status"] == "ready"
    assert status["notification"] == "email"
    assert status["url"] in to_recipient[0]["Message"]
    assert status["expires_at"] in to_recipient[0]["Message"]
    assert calls.named("DeleteTopic") == [{"TopicArn": topic}]
    assert request_topics_left(pipeline) == []
    subscriptions = pipeline.sns.list_subscriptions()["Subscriptions"]
    assert [s for s in subscriptions if s["TopicArn"] == topic] == []

    # The address is in the request the requester wrote, and nowhere else.
    stored = everything_stored(pipeline)
    assert {where for where, _ in leaks(stored)} == {
        f"s3://{pipeline.work}/{key}?{v['VersionId']}"
        for v in pipeline.s3.list_object_versions(Bucket=pipeline.work, Prefix=key)["Versions"]
    }
    [operator_notice] = notifications(pipeline, operators, expected=1)
    printed = capsys.readouterr()
    assert logs.lines(), "the handler logged nothing: the capture is not working"
    assert (
        leaks(
            {
                "operators' notification": json.dumps(operator_notice),
                "topic name and tags": json.dumps(created),
                **{f"log line {n}": line for n, line in enumerate(logs.lines())},
                "stdout": printed.out,
                "stderr": printed.err,
            }
        )
        == []
    )


def test_a_phone_number_is_texted_the_same_way(
    pipeline: Pipeline, bundle: BundleFunction, dogs: None
) -> None:
    calls = Calls(bundle.deps.sns)
    key = put_request(pipeline, "for-a-phone", {"labels": ["Dog"], "notify": PHONE})

    run_request(bundle, pipeline, key)

    [subscribed] = calls.named("Subscribe")
    assert (subscribed["Protocol"], subscribed["Endpoint"]) == ("sms", PHONE)
    assert [p["TopicArn"] for p in calls.named("Publish")].count(subscribed["TopicArn"]) == 1
    assert request_topics_left(pipeline) == []
    assert status_of(pipeline, "for-a-phone")["notification"] == "sms"
    assert leaks(everything_stored(pipeline)) == [
        (f"s3://{pipeline.work}/{key}?{v['VersionId']}", s)
        for v in pipeline.s3.list_object_versions(Bucket=pipeline.work, Prefix=key)["Versions"]
        for s in SECRETS
        if s in PHONE
    ]


def test_an_empty_bundle_is_announced_to_the_recipient_too(
    pipeline: Pipeline, bundle: BundleFunction, dogs: None
) -> None:
    calls = Calls(bundle.deps.sns)
    key = put_request(pipeline, "no-unicorns", {"labels": ["Unicorn"], "notify": EMAIL})

    run_request(bundle, pipeline, key)

    [subscribed] = calls.named("Subscribe")
    [message] = [p for p in calls.named("Publish") if p["TopicArn"] == subscribed["TopicArn"]]
    assert "empty" in message["Message"]
    assert request_topics_left(pipeline) == []


def test_a_request_without_notify_creates_no_topic(
    pipeline: Pipeline, bundle: BundleFunction, dogs: None
) -> None:
    calls = Calls(bundle.deps.sns)

    run_request(bundle, pipeline, put_request(pipeline, "quiet", {"labels": ["Dog"]}))

    assert [name for name, _ in calls.made] == ["Publish"]  # the operators' topic only
    assert status_of(pipeline, "quiet")["notification"] is None


class Refusal:
    """SNS refusing the endpoint at ``Subscribe``: HTTP 400 ``InvalidParameter`` (SNS API
    reference, Subscribe, Errors), its message quoting the endpoint as moto's does for a
    number it does not take ("Invalid SMS endpoint: <number>")."""

    def __init__(self, sns: Any) -> None:
        sns.meta.events.register("before-call.sns.Subscribe", self._refuse)

    def _refuse(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        endpoint = params["body"]["Endpoint"]
        error = {"Code": "InvalidParameter", "Message": f"Invalid parameter: {endpoint}"}
        answer = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://sns.us-east-1.amazonaws.com/", 400, {}, None), answer


@pytest.mark.parametrize("address", [EMAIL, PHONE])
def test_an_address_sns_refuses_gets_an_error_verdict_not_a_retry(
    pipeline: Pipeline,
    bundle: BundleFunction,
    dogs: None,
    logs: CapturedLogs,
    capsys: pytest.CaptureFixture[str],
    address: str,
) -> None:
    operators = subscribe(pipeline)
    Refusal(bundle.deps.sns)
    calls = Calls(bundle.deps.sns)
    key = put_request(pipeline, "refused", {"labels": ["Dog"], "notify": address})

    run_request(bundle, pipeline, key)  # no batchItemFailures: nothing to retry

    status = status_of(pipeline, "refused")
    assert status["status"] == "error"
    assert [(e["code"], e["path"]) for e in status["errors"]] == [("notify_refused", "$.notify")]
    assert "InvalidParameter" in status["errors"][0]["message"]
    assert status["zip_key"] is None
    assert request_topics_left(pipeline) == []  # created, refused, deleted
    [notice] = notifications(pipeline, operators, expected=1)
    assert json.loads(notice["Message"])["errors"] == status["errors"]
    run_request(bundle, pipeline, key)  # a redelivery finds the verdict
    assert len(calls.named("Subscribe")) == 1
    # The address is in the request the requester wrote, and nowhere else.
    request_versions = {
        f"s3://{pipeline.work}/{key}?{v['VersionId']}"
        for v in pipeline.s3.list_object_versions(Bucket=pipeline.work, Prefix=key)["Versions"]
    }
    assert {where for where, _ in leaks(everything_stored(pipeline))} == request_versions
    printed = capsys.readouterr()
    assert logs.lines(), "the handler logged nothing: the capture is not working"
    said = {f"log line {n}": line for n, line in enumerate(logs.lines())}
    said.update(operators=json.dumps(notice), stdout=printed.out, stderr=printed.err)
    assert leaks(said) == []


# --- confirmation, the sweep, expiry ------------------------------------------------------
def test_an_unconfirmed_email_is_sent_the_link_by_the_sweep_once_confirmed(
    pipeline: Pipeline, bundle: BundleFunction, dogs: None
) -> None:
    confirmation = Confirmation(bundle.deps.sns)
    calls = Calls(bundle.deps.sns)
    key = put_request(pipeline, "later", {"labels": ["Dog"], "notify": EMAIL})

    run_request(bundle, pipeline, key)

    # SNS would drop a message for a pending subscription: none is sent, the topic stays.
    [subscribed] = calls.named("Subscribe")
    topic = subscribed["TopicArn"]
    assert status_of(pipeline, "later")["status"] == "ready"
    assert request_topics_left(pipeline) == [topic]
    assert [p for p in calls.named("Publish") if p["TopicArn"] == topic] == []

    assert bundle.handler(scheduled_tick(), FakeContext()) == {"batchItemFailures": []}
    assert request_topics_left(pipeline) == [topic]  # still waiting for the click
    assert [p for p in calls.named("Publish") if p["TopicArn"] == topic] == []

    confirmation.confirm()
    assert bundle.handler(scheduled_tick(), FakeContext()) == {"batchItemFailures": []}

    [sent] = [p for p in calls.named("Publish") if p["TopicArn"] == topic]
    assert status_of(pipeline, "later")["url"] in sent["Message"]
    assert request_topics_left(pipeline) == []
    assert bundle.handler(scheduled_tick(), FakeContext()) == {"batchItemFailures": []}
    assert len([p for p in calls.named("Publish") if p["TopicArn"] == topic]) == 1


def test_a_never_confirmed_topic_is_deleted_once_its_request_expires(
    pipeline: Pipeline, bundle: BundleFunction, dogs: None
) -> None:
    Confirmation(bundle.deps.sns)
    key = put_request(pipeline, "ignored", {"labels": ["Dog"], "notify": EMAIL})
    run_request(bundle, pipeline, key)
    [topic] = request_topics_left(pipeline)
    written = pipeline.s3.head_object(Bucket=pipeline.work, Key=key)["LastModified"]

    before = bundle_handler.sweep(bundle.deps, turn(written + timedelta(hours=23)))
    assert (before.expired, before.waiting, request_topics_left(pipeline)) == (0, 1, [topic])

    after = bundle_handler.sweep(bundle.deps, turn(written + timedelta(days=1)))
    assert (after.expired, request_topics_left(pipeline)) == (1, [])


class Unreachable:
    """A client every call of which fails, as when the network to a service is down."""

    def __getattr__(self, operation: str) -> Any:
        def fails(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError(f"unreachable ({operation})")

        return fails


def test_a_function_that_dies_after_subscribing_leaves_nothing_past_the_expiry(
    pipeline: Pipeline, dogs: None
) -> None:
    bundle = bundle_function(dynamodb=Unreachable())  # the images cannot be matched
    key = put_request(pipeline, "crashed", {"labels": ["Dog"], "notify": EMAIL})
    response = bundle.handler(
        sqs_batch(json.loads(json.dumps(_event(pipeline, key)))), FakeContext()
    )
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["msg-0"]
    assert len(request_topics_left(pipeline)) == 1  # created and subscribed, then the crash

    far = datetime.now(UTC) + timedelta(days=1, minutes=1)
    report = bundle_handler.sweep(bundle.deps, turn(far))

    assert report.expired == 1
    assert request_topics_left(pipeline) == []


def test_a_failing_sweep_is_handed_back_and_requests_in_the_batch_still_served(
    pipeline: Pipeline, bundle: BundleFunction, dogs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("SNS unreachable")

    monkeypatch.setattr(bundle_handler, "sweep", fails)
    key = put_request(pipeline, "beside", {"labels": ["Dog"]})
    batch = sqs_batch(golden("eventbridge_scheduled.json"), _event(pipeline, key))

    response = bundle.handler(batch, FakeContext())

    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert status_of(pipeline, "beside")["status"] == "ready"


def _event(pipeline: Pipeline, key: str) -> dict[str, Any]:
    from tests.s3events import object_event_for

    body: dict[str, Any] = json.loads(
        object_event_for(pipeline.s3, pipeline.work, key)["Records"][0]["body"]
    )
    return body
