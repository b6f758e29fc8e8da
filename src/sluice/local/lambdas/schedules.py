"""EventBridge's schedule rules, fired as EventBridge would, for an emulator that does not.

In AWS the bundle sweep (docs/decisions.md, 34 and 35) is an EventBridge rule with a
``rate(...)`` expression whose target is the bundle queue: every period EventBridge sends
the queue a ``Scheduled Event``. moto keeps rules and targets but fires nothing, so
locally a ``restoring`` bundle never completed and an expired request topic stayed. The
runner stands in for that part of EventBridge too, in the same way it stands in for
Lambda's poller (:mod:`sluice.local.lambdas.wiring`): it reads back each enabled rule with
a rate expression and its SQS targets from the emulator, never a copy in Python, and sends
each target the JSON EventBridge sends (:func:`scheduled_event`, the shape of AWS's
documented example, ``tests/events/eventbridge_scheduled.json``) once a period.

Only rules with a target queue that a served function reads are fired (the runner's
environment; another environment's rules are not its business); ``cron(...)`` rules are
reported and skipped (sluice has none). A target's constant ``Input`` replaces the event,
as in EventBridge; ``InputPath`` and ``InputTransformer`` are reported and not applied.
The first event goes out one period after the runner starts (a rate schedule starts when
the rule does), then one a period; the rules are read once, at start, and ``sluice up``
restarts the runner after every apply. LocalStack fires its rules itself, so the stack
starts the runner with ``--no-schedules`` there (one event a period, not two).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_RATE = re.compile(r"^\s*rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)\s*$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int | None:
    """The period of a ``rate(<n> <unit>)`` expression in seconds; None for anything else
    (``cron(...)``, or not a rate EventBridge accepts: the value is at least 1)."""
    match = _RATE.match(expression)
    if match is None:
        return None
    value = int(match.group(1))
    if value < 1:
        return None
    return value * _UNIT_SECONDS[match.group(2).rstrip("s")]


@dataclass(frozen=True)
class QueueTarget:
    """One SQS target of a schedule rule."""

    target_id: str
    queue_arn: str
    queue_url: str
    input: str | None = None
    """The target's constant ``Input``: sent instead of the event, as EventBridge does."""


@dataclass(frozen=True)
class ScheduleRule:
    """An enabled rule with a rate expression, and its SQS targets."""

    name: str
    arn: str
    expression: str
    period_seconds: int
    targets: tuple[QueueTarget, ...]

    def describe(self) -> str:
        queues = ", ".join(target.queue_url for target in self.targets)
        return f"schedule {self.name}: {self.expression} -> {queues}"


def _rules(events_client: Any) -> Iterator[dict[str, Any]]:
    paginator = events_client.get_paginator("list_rules")
    for page in paginator.paginate():
        yield from page.get("Rules", [])


def _targets(events_client: Any, rule_name: str) -> Iterator[dict[str, Any]]:
    paginator = events_client.get_paginator("list_targets_by_rule")
    for page in paginator.paginate(Rule=rule_name):
        yield from page.get("Targets", [])


def _queue_url(sqs_client: Any, queue_arn: str) -> str:
    _, _, _, _, account, name = queue_arn.split(":", 5)
    url: str = sqs_client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return url


def discover_schedules(
    events_client: Any,
    sqs_client: Any,
    queue_arns: Collection[str],
    *,
    warn: Callable[[str], None] = print,
) -> list[ScheduleRule]:
    """Every enabled rate rule with a target among ``queue_arns`` (the queues the served
    functions read), with those targets; what cannot be fired as AWS would is ``warn``-ed."""
    found = []
    for rule in _rules(events_client):
        expression = str(rule.get("ScheduleExpression") or "")
        if not expression or rule.get("State") != "ENABLED":
            continue
        targets = []
        for target in _targets(events_client, rule["Name"]):
            if target["Arn"] not in queue_arns:
                continue
            if target.get("InputPath") or target.get("InputTransformer"):
                warn(f"  ! schedule {rule['Name']} target {target['Id']}: input not applied")
            targets.append(
                QueueTarget(
                    target_id=target["Id"],
                    queue_arn=target["Arn"],
                    queue_url=_queue_url(sqs_client, target["Arn"]),
                    input=target.get("Input"),
                )
            )
        if not targets:
            continue
        period = rate_seconds(expression)
        if period is None:
            warn(f"  ! schedule {rule['Name']}: {expression} is not a rate; not fired locally")
            continue
        found.append(
            ScheduleRule(
                name=rule["Name"],
                arn=rule["Arn"],
                expression=expression,
                period_seconds=period,
                targets=tuple(sorted(targets, key=lambda t: t.target_id)),
            )
        )
    return sorted(found, key=lambda r: r.name)


def scheduled_event(rule_arn: str, scheduled_at: datetime) -> dict[str, Any]:
    """The event EventBridge sends a target when a schedule rule fires (AWS's documented
    example: ``tests/events/eventbridge_scheduled.json``); ``time`` is the scheduled time,
    whole seconds, UTC."""
    _, _, _, region, account, _ = rule_arn.split(":", 5)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": scheduled_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Scheduler:
    """Sends each rule's targets an event once a period, on :meth:`fire_due`.

    ``clock`` (monotonic seconds) and ``now`` (the wall clock of the event's ``time``) are
    injectable, and ``every_seconds`` replaces every rule's period (``--schedule-every``):
    tests fire a ``rate(1 minute)`` rule without waiting a minute.
    """

    def __init__(
        self,
        rules: Collection[ScheduleRule],
        sqs_client: Any,
        *,
        every_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._rules = tuple(rules)
        self._sqs = sqs_client
        self._clock = clock
        self._now = now
        self._periods = {
            rule.name: every_seconds if every_seconds is not None else rule.period_seconds
            for rule in self._rules
        }
        start = clock()
        self._due = {rule.name: start + self._periods[rule.name] for rule in self._rules}

    @property
    def rules(self) -> tuple[ScheduleRule, ...]:
        return self._rules

    def fire_due(self) -> list[str]:
        """Send every rule that is due its event; the names of the rules fired.

        A rule late by several periods fires once (EventBridge does not catch up either),
        and its next event is a period from now. A failed send raises, and the rule stays
        due: the next call tries again.
        """
        fired = []
        for rule in self._rules:
            at = self._clock()
            if at < self._due[rule.name]:
                continue
            event = json.dumps(scheduled_event(rule.arn, self._now()))
            for target in rule.targets:
                self._sqs.send_message(
                    QueueUrl=target.queue_url,
                    MessageBody=target.input if target.input is not None else event,
                )
            self._due[rule.name] = at + self._periods[rule.name]
            fired.append(rule.name)
        return fired
