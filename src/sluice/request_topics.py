"""One SNS topic per bundle request that asks to notify someone (docs/decisions.md, 34).

A request's ``notify`` (an email address or an E.164 phone number) is subscribed to a topic
made for that request only, the link is published there, and the topic is deleted once the
message is delivered or once the request expires. So the address is held by SNS, in that
subscription, for as long as the request lives, and by nothing else: the topic's name is a
hash of the bundle id and request ETag, and its tags hold the bundle id, the request ETag
and the expiry, never the address.

Lifecycle of a topic (every step idempotent, so a retry or a sweep can repeat it):

1. :func:`open_topic`: ``CreateTopic`` with its tags (one call: there is never a topic
   without its expiry), then ``Subscribe``. SMS subscriptions are active at once; an email
   subscription waits until its owner clicks the link in AWS's "Subscription Confirmation"
   email, and SNS delivers nothing to it before that. An address SNS refuses
   (``InvalidParameter``: the only parameter of ours it can mean is the endpoint) will
   never be reached: the topic is deleted and :class:`RecipientRefusedError` says so, so
   the bundle gets a verdict instead of a retry that can only fail again.
2. :func:`deliver`, when the bundle has its outcome: if no subscription is waiting for
   confirmation, publish the recipient's message and delete the topic; otherwise leave
   it for the sweep.
3. :func:`sweep`, on a schedule (an EventBridge rule sends a message to the bundle queue):
   every topic under the environment's prefix is looked at. Past its expiry it is deleted,
   delivered or not. Otherwise, once its request has an outcome and the subscription is
   confirmed, the message is published and the topic deleted.

A function that dies anywhere in between leaves a topic that carries its own expiry, which
the next sweep finds by name prefix: nothing outlives the request. A crash between
``Publish`` and ``DeleteTopic`` publishes again at the next sweep (at least once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from sluice.s3io import error_code
from sluice.timestamps import parse_utc_iso, utc_iso

TAG_EXPIRES_AT = "sluice:expires-at"
TAG_BUNDLE_ID = "sluice:bundle-id"
TAG_REQUEST_ETAG = "sluice:request-etag"
PENDING = "PendingConfirmation"
"""What ``ListSubscriptionsByTopic`` shows as the ARN of an unconfirmed subscription."""

DELIVERED = "delivered"
AWAITING_CONFIRMATION = "awaiting_confirmation"
REFUSED_CODES = frozenset({"InvalidParameter"})
"""What SNS answers ``Subscribe`` with for an endpoint it does not take (SNS API
reference, Subscribe, Errors)."""


class RecipientRefusedError(ValueError):
    """SNS refused the recipient's address. Only SNS's error code is kept: its message may
    quote the address (moto's does: "Invalid SMS endpoint: <number>")."""

    def __init__(self, code: str) -> None:
        super().__init__(f"SNS refused the recipient's address ({code})")
        self.code = code


def topic_name(prefix: str, bundle_id: str, request_etag: str) -> str:
    """``<prefix><32 hex>``: one per request version, the same on every retry, and no
    personal data (SNS shows topic names to anyone who may list them)."""
    digest = hashlib.sha256(f"{bundle_id}\n{request_etag}".encode()).hexdigest()[:32]
    return f"{prefix}{digest}"


def open_topic(
    sns: Any,
    name: str,
    *,
    protocol: str,
    endpoint: str,
    bundle_id: str,
    request_etag: str,
    expires_at: datetime,
) -> str:
    """Create the request's topic (with its expiry) and subscribe ``endpoint``; its ARN.
    Raises :class:`RecipientRefusedError` (the topic deleted) when SNS refuses ``endpoint``.

    The same arguments give the same topic and subscription again (SNS returns the existing
    ones), so a retried invocation does not subscribe twice. ``expires_at`` must therefore
    be derived from the request, not from the clock.
    """
    tags = [
        {"Key": TAG_EXPIRES_AT, "Value": utc_iso(expires_at)},
        {"Key": TAG_BUNDLE_ID, "Value": bundle_id},
        {"Key": TAG_REQUEST_ETAG, "Value": request_etag},
    ]
    arn: str = sns.create_topic(Name=name, Tags=tags)["TopicArn"]
    try:
        sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint)
    except ClientError as error:
        code = error_code(error)
        if code not in REFUSED_CODES:
            raise
        delete_topic(sns, arn)
        # Not chained: the SNS error's text may hold the address.
        raise RecipientRefusedError(code) from None
    return arn


def _subscriptions(sns: Any, topic_arn: str) -> list[str]:
    arns: list[str] = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        arns.extend(str(item["SubscriptionArn"]) for item in page.get("Subscriptions", []))
    return arns


def deliver(sns: Any, topic_arn: str, message: Mapping[str, Any]) -> str:
    """Publish ``message`` and delete the topic, unless a subscription still waits for its
    confirmation: then nothing is published (SNS would drop it for that subscriber) and
    the topic stays for the sweep. Returns :data:`DELIVERED` or :data:`AWAITING_CONFIRMATION`.
    """
    subscriptions = _subscriptions(sns, topic_arn)
    if PENDING in subscriptions:
        return AWAITING_CONFIRMATION
    if subscriptions:
        sns.publish(TopicArn=topic_arn, **message)
    sns.delete_topic(TopicArn=topic_arn)
    return DELIVERED


def delete_topic(sns: Any, topic_arn: str) -> None:
    """Delete a request's topic; deleting one that is already gone is no error in SNS."""
    sns.delete_topic(TopicArn=topic_arn)


@dataclass
class SweepReport:
    """What a sweep did, by count (no topic names: they are only useful with the tags)."""

    seen: int = 0
    delivered: int = 0
    expired: int = 0
    waiting: int = 0


def topics_with_prefix(sns: Any, prefix: str) -> Iterator[str]:
    """ARNs of the topics whose name starts with ``prefix`` (``ListTopics`` has no filter)."""
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", []):
            arn = str(topic["TopicArn"])
            if arn.rsplit(":", 1)[-1].startswith(prefix):
                yield arn


def _tags(sns: Any, topic_arn: str) -> dict[str, str]:
    listed = sns.list_tags_for_resource(ResourceArn=topic_arn).get("Tags", [])
    return {str(tag["Key"]): str(tag["Value"]) for tag in listed}


Outcome = Callable[[str, str], Mapping[str, Any] | None]
"""``(bundle id, request ETag)`` -> the recipient's message once the request has an
outcome, else None."""


def sweep(sns: Any, prefix: str, outcome: Outcome, now: datetime) -> SweepReport:
    """Deliver what can be delivered and delete what has expired (module docstring, 3)."""
    report = SweepReport()
    for arn in topics_with_prefix(sns, prefix):
        report.seen += 1
        try:
            tags = _tags(sns, arn)
        except ClientError as error:  # deleted meanwhile by another invocation
            if error_code(error) in ("NotFound", "NotFoundException"):
                continue
            raise
        expires_at = parse_utc_iso(tags.get(TAG_EXPIRES_AT)) if tags.get(TAG_EXPIRES_AT) else None
        if expires_at is None or expires_at <= now:
            # No expiry: not a topic this code made whole; it is under our prefix, so ours.
            delete_topic(sns, arn)
            report.expired += 1
            continue
        message = outcome(tags.get(TAG_BUNDLE_ID, ""), tags.get(TAG_REQUEST_ETAG, ""))
        if message is None:
            report.waiting += 1
        elif deliver(sns, arn, message) == DELIVERED:
            report.delivered += 1
        else:
            report.waiting += 1
    return report
