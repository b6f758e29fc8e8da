"""Bundle handler: zip the archived images that carry the requested labels.

Trigger: WORK ``requests/<id>.json`` (ObjectCreated, through the bundle queue), and the
sweep rule's scheduled events on the same queue. Output: WORK ``bundles/<id>.zip`` and the
status object ``bundles/<id>.json`` (``ready``, ``empty`` or ``error``), one SNS
notification to the environment's bundle topic, and one to the request's own topic when it
names a recipient. WORK ``bundles/`` is not a trigger prefix: nothing here re-triggers it.

Steps for one request object:

1. The bundle id is the key's stem. An id that is not 1-128 of ``[A-Za-z0-9._-]``
   (starting with a letter or digit), or a key not ending in ``.json``, gets an error
   status under ``_invalid-<sha256 of the key>``, a name no valid id can take.
2. The request is read with ``IfMatch`` = the event's ETag. 412: it was overwritten since,
   the newer version has its own event, so this one is skipped (an older event arriving
   late never overwrites a newer bundle).
3. The bundle is claimed (:func:`sluice.bundles.claim`): an outcome for this request ETag
   means a duplicate delivery, and nothing is done (no second notification). Otherwise a
   conditional write of the status object holds the bundle until this invocation's
   deadline plus a margin, and every later status write is conditional on it. Another
   invocation's claim (the sweep and an S3 redelivery of one request, or two deliveries)
   fails this delivery with ``BundleBusyError``; its retry, a visibility timeout (six
   function timeouts) later, finds the outcome: a bundle is built once (decision 40). A
   failed run gives its claim up; a killed run's lapses.
4. The request is validated (:mod:`sluice.bundles`, which owns the request, status and
   notification formats). Not JSON, not valid, or over 64 KiB: error status, no retry.
5. A request with ``notify`` gets a topic of its own (:mod:`sluice.request_topics`) with
   the address subscribed now, so an email confirmation is under way while the zip is
   made. An address SNS refuses gets an error status, not a retry (decision 41).
6. The images are matched (:mod:`sluice.bundle_contents`). With cold storage
   (``ARCHIVE_COLD_STORAGE``) each is looked at first (:mod:`sluice.restores`): archived
   ones are restored, the status is ``restoring`` with counts, and the sweep serves the
   request again once a check is due (decision 35).
7. The zip is streamed to ``bundles/<id>.zip`` in bounded memory, with a presigned link
   valid ``BUNDLE_URL_TTL_SECONDS`` (:mod:`sluice.bundle_contents`). No image left: ``empty``.
8. The operators' notification is published, then the status written: a crash in between
   repeats the notification on retry (at least once) instead of losing it.
9. Then the recipient's message is published on the request's topic and the topic deleted,
   unless the subscription still waits for its confirmation (the sweep delivers then). A
   crash after the status leaves the topic to the sweep, never a second subscription.

The sweep: an EventBridge rule puts a scheduled event on the bundle queue every few
minutes; the handler serves the bundles whose restore check is due (a busy one waits for
the next sweep), delivers to recipients who have confirmed since and deletes every topic
past its request's expiry (docs/decisions.md, 34).

Personal data: ``notify`` (a recipient) and ``name`` (free text) stay in the request object
(which WORK's lifecycle rule expires) and, for ``notify``, in SNS's subscription of the
request's topic; they are copied into no status, manifest, topic name or tag, operators'
message or log line (an SNS error's text may quote the address: only its code is kept).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from sluice import bundles, request_topics, restores
from sluice.bundle_contents import (
    NothingToBundleError,
    find_images,
    presigned_zip_url,
    write_bundle_zip,
)
from sluice.bundles import BundleRequest, BundleRequestError, Claim, RequestObject
from sluice.events import S3ObjectRef, is_scheduled_event, split_scheduled
from sluice.keys import REQUESTS_PREFIX, bundle_id_for, invalid_bundle_id
from sluice.metrics import REJECTED, Outcome
from sluice.request_topics import RecipientRefusedError
from sluice.runtime import Handler, client, entry_point, make_logger, process_event
from sluice.settings import MAX_URL_TTL_SECONDS, BundleSettings
from sluice.timestamps import utc_iso

LEASE_MARGIN_SECONDS = 30.0
NOW = partial(datetime.now, UTC)

LOGGED = ("bundle_id", "status", "image_count", "bytes")
"""What a log line says of a bundle (never its request's labels, name or recipient)."""

Status = Literal["ready", "empty", "error"]

logger = make_logger("bundle")


@dataclass(frozen=True)
class Dependencies:
    """What the bundle function works with: built once per execution environment."""

    settings: BundleSettings
    s3: Any
    dynamodb: Any
    sns: Any
    clock: Callable[[], datetime] = NOW

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dependencies:
        settings = BundleSettings.from_env(env)
        return cls(settings, client("s3"), client("dynamodb"), client("sns"))


@dataclass(frozen=True)
class Turn:
    """An invocation's turn at a bundle: who, when, and until when its claim holds (step 3)."""

    owner: str
    now: datetime
    until: datetime

    @classmethod
    def of(cls, context: Any, now: datetime) -> Turn:
        # The claim outlives this invocation's deadline, after which a killed run is dead.
        seconds = context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
        owner = f"{context.aws_request_id}/{uuid.uuid4().hex}"
        return cls(owner, now, now + timedelta(seconds=seconds))


def process(deps: Dependencies, ref: S3ObjectRef, turn: Turn) -> Status | None:
    """Serve one request object; its outcome, or None when there is nothing to do now."""
    bucket = deps.settings.work_bucket
    # 1. The bundle id, or one no valid id can take.
    bundle_id = bundle_id_for(ref.key) or invalid_bundle_id(ref.key)
    # 2. The request as the event named it.
    fetched = bundles.read_request(deps.s3, ref.bucket, ref.key, ref.etag)
    if fetched is None:
        logger.info("request was overwritten or deleted since this event; nothing to do")
        return None
    # 3. Claim the bundle; a duplicate delivery stops here.
    status = bundles.new_status(
        bundle_id, request_key=ref.key, request_etag=fetched.etag, created_at=utc_iso(turn.now)
    )
    held = bundles.claim(deps.s3, bucket, status, owner=turn.owner, now=turn.now, until=turn.until)
    if held is None:
        logger.info("duplicate delivery: this request already has an outcome", bundle_id=bundle_id)
        return None
    try:
        # 4. A request that cannot be served as written gets its verdict, not a retry.
        try:
            if bundle_id_for(ref.key) is None:
                raise BundleRequestError([bundles.INVALID_KEY_ERROR])
            request = bundles.parse_request(fetched.body)
        except BundleRequestError as error:
            status["errors"] = error.errors
            logger.warning("request rejected", bundle_id=bundle_id, errors=len(error.errors))
            return finish(deps, status, held)
        status.update(request.summary(), notification=request.notify_protocol)
        return build(deps, turn, status, held, request, fetched)
    except BaseException:
        # Best effort, so a retry need not wait for the claim to lapse; never mask the error.
        with contextlib.suppress(Exception):
            bundles.release(deps.s3, bucket, held)
        raise


def build(
    deps: Dependencies,
    turn: Turn,
    status: dict[str, Any],
    held: Claim,
    request: BundleRequest,
    fetched: RequestObject,
) -> Status | None:
    """Steps 5-9 for a valid request."""
    settings, bundle_id = deps.settings, status["bundle_id"]
    # 5. The recipient's topic, subscribed before the zip is made.
    try:
        topic = open_recipient_topic(deps, bundle_id, request, fetched)
    except RecipientRefusedError as refused:
        status["errors"] = [bundles.refused_recipient_error(refused.code)]
        logger.warning("SNS refused the recipient's address", bundle_id=bundle_id)
        return finish(deps, status, held)
    # 6. The matching images; archived ones are restored first.
    images = find_images(deps.dynamodb, settings.labels_table, request)
    logger.info("request matched", bundle_id=bundle_id, matched=len(images))
    if images and settings.cold_storage != "none":
        keys = [image.archive_key for image in images if image.archive_key]
        tier, days = settings.restore_tier, settings.restore_days
        restore = restores.check(deps.s3, settings.archive_bucket, keys, tier=tier, days=days)
        status["restore"] = restore.as_status()
        if restore.waiting:
            due = restores.wait(deps.s3, settings.work_bucket, status, held, turn.now)
            # The counts are in the status; when to look again, here.
            logger.info("waiting for restores", bundle_id=bundle_id, next_check_at=utc_iso(due))
            return None
    # 7. The zip and its link; no image left in the archive: empty.
    try:
        if not images:
            raise NothingToBundleError
        contents = write_bundle_zip(
            deps.s3,
            deps.dynamodb,
            settings,
            bundle_id,
            request,
            images,
            request_etag=status["request_etag"],
            created_at=status["created_at"],
        )
    except NothingToBundleError:
        status.update(status="empty", missing=[image.archive_key for image in images])
        return finish(deps, status, held, topic)
    ttl = min(settings.url_ttl_seconds, MAX_URL_TTL_SECONDS)
    status.update(
        contents.as_status(),
        status="ready",
        url=presigned_zip_url(deps.s3, settings.work_bucket, bundle_id, ttl),
        expires_at=utc_iso(deps.clock() + timedelta(seconds=ttl)),
    )
    # 8-9. The operators, the status, the recipient.
    return finish(deps, status, held, topic)


def open_recipient_topic(
    deps: Dependencies, bundle_id: str, request: BundleRequest, fetched: RequestObject
) -> str | None:
    """The request's own topic with ``notify`` subscribed, when it asks for one."""
    if request.notify is None or request.notify_protocol is None:
        return None
    settings, etag = deps.settings, fetched.etag
    return request_topics.open_topic(
        deps.sns,
        request_topics.topic_name(settings.notify_topic_prefix, bundle_id, etag),
        protocol=request.notify_protocol,
        endpoint=request.notify,
        bundle_id=bundle_id,
        request_etag=etag,
        expires_at=fetched.written_at + timedelta(days=settings.request_expiration_days),
    )


def finish(
    deps: Dependencies, status: dict[str, Any], held: Claim, recipient_topic: str | None = None
) -> Status:
    """Notify the operators, record the outcome, then tell the recipient (steps 8-9)."""
    deps.sns.publish(TopicArn=deps.settings.topic_arn, **bundles.operator_notification(status))
    bundles.write_status(deps.s3, deps.settings.work_bucket, status, held)
    delivery = None
    if recipient_topic is not None:
        message = bundles.recipient_notification(status)
        delivery = request_topics.deliver(deps.sns, recipient_topic, message)
    said = {name: status[name] for name in LOGGED}
    logger.info("bundle finished", **said, missing=len(status["missing"]), recipient=delivery)
    outcome: Status = status["status"]
    return outcome


def sweep(deps: Dependencies, turn: Turn) -> request_topics.SweepReport:
    """The scheduled sweep: serve each bundle whose restore check is due, then deliver to
    recipients who confirmed since and delete expired topics (sluice.request_topics)."""
    s3, bucket = deps.s3, deps.settings.work_bucket
    served, busy = restores.serve_due(s3, bucket, turn.now, lambda ref: process(deps, ref, turn))
    outcome = partial(bundles.outcome_message, s3, bucket)
    report = request_topics.sweep(deps.sns, deps.settings.notify_topic_prefix, outcome, turn.now)
    logger.info("sweep done", restores_served=served, restores_busy=busy, **asdict(report))
    return report


def is_request(ref: S3ObjectRef) -> bool:
    return ref.is_created and ref.key.startswith(REQUESTS_PREFIX)


def make_handler(deps: Dependencies) -> Handler:
    """Request objects go through :func:`sluice.runtime.process_event`; the sweep rule's
    messages (the same queue) run the sweep, a failed one handed back like a failed object."""

    def serve(ref: S3ObjectRef, context: Any) -> Outcome | None:
        outcome = process(deps, ref, Turn.of(context, deps.clock()))
        return REJECTED if outcome == "error" else None  # an invalid request is rejected

    def swept(context: Any, tick: Mapping[str, Any]) -> bool:
        try:
            sweep(deps, Turn.of(context, deps.clock()))
        except Exception:
            logger.exception("sweep failed; handed back", message_id=tick.get("messageId"))
            return False
        return True

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if is_scheduled_event(event):
            sweep(deps, Turn.of(context, deps.clock()))
            return {"swept": 1}
        ticks, rest = split_scheduled(event)
        serving = partial(serve, context=context)
        if not ticks:
            return process_event(event, context, serving, logger, is_request)
        failures = [{"itemIdentifier": t["messageId"]} for t in ticks if not swept(context, t)]
        response = (
            process_event(rest, context, serving, logger, is_request) if rest["Records"] else {}
        )
        response["batchItemFailures"] = failures + list(response.get("batchItemFailures") or [])
        return response

    return handle


handler = entry_point(logger, lambda: make_handler(Dependencies.from_env(os.environ)))
