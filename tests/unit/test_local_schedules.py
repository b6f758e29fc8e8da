"""The runner's stand-in for EventBridge schedules: rates, the event's shape, the timing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.events import is_scheduled_event
from sluice.local.lambdas.runner import main
from sluice.local.lambdas.schedules import (
    QueueTarget,
    Scheduler,
    ScheduleRule,
    rate_seconds,
    scheduled_event,
)
from tests.s3events import golden

RULE_ARN = "arn:aws:events:us-east-1:123456789012:rule/sluice-local-bundle-sweep"
QUEUE = "http://127.0.0.1:4566/123456789012/sluice-local-bundle"


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        (" rate( 15 minutes ) ", 900),
        ("rate(0 minutes)", None),
        ("rate(5 seconds)", None),
        ("cron(0/5 * * * ? *)", None),
        ("", None),
    ],
)
def test_rate_expressions(expression: str, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds


def test_the_event_has_the_shape_of_aws_scheduled_event() -> None:
    at = datetime(2026, 12, 1, 15, 4, 5, 678000, tzinfo=UTC)
    event = scheduled_event(RULE_ARN, at)
    documented = golden("eventbridge_scheduled.json")
    assert set(event) == set(documented)
    assert {k: event[k] for k in ("version", "detail-type", "source", "detail")} == {
        k: documented[k] for k in ("version", "detail-type", "source", "detail")
    }
    assert event["account"] == "123456789012"
    assert event["region"] == "us-east-1"
    assert event["resources"] == [RULE_ARN]
    assert event["time"] == "2026-12-01T15:04:05Z"
    assert event["id"] != scheduled_event(RULE_ARN, at)["id"]
    assert is_scheduled_event(json.dumps(event))


class FakeSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.failing = False

    def send_message(self, **params: Any) -> dict[str, Any]:
        if self.failing:
            raise RuntimeError("emulator down")
        self.sent.append(params)
        return {"MessageId": str(len(self.sent))}


class Clock:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


def _rule(name: str, period: int, *targets: QueueTarget) -> ScheduleRule:
    return ScheduleRule(
        name=name,
        arn=f"arn:aws:events:us-east-1:123456789012:rule/{name}",
        expression=f"rate({period // 60} minutes)",
        period_seconds=period,
        targets=targets or (QueueTarget("sweep", "arn:aws:sqs:us-east-1:1:q", QUEUE),),
    )


def test_a_rule_fires_one_period_after_start_then_once_a_period() -> None:
    sqs, clock = FakeSqs(), Clock()
    scheduler = Scheduler([_rule("sweep", 300)], sqs, clock=clock)
    assert scheduler.fire_due() == []
    clock.at += 299.9
    assert scheduler.fire_due() == []
    clock.at += 0.1
    assert scheduler.fire_due() == ["sweep"]
    assert scheduler.fire_due() == []
    [sent] = sqs.sent
    assert sent["QueueUrl"] == QUEUE
    assert is_scheduled_event(sent["MessageBody"])

    # Late by three periods (a suspended laptop): one event, the next a period later.
    clock.at += 1000
    assert scheduler.fire_due() == ["sweep"]
    clock.at += 299
    assert scheduler.fire_due() == []
    clock.at += 1
    assert scheduler.fire_due() == ["sweep"]
    assert len(sqs.sent) == 3


def test_rules_keep_their_own_periods_unless_every_is_given() -> None:
    sqs, clock = FakeSqs(), Clock()
    rules = [_rule("fast", 60), _rule("slow", 300)]
    scheduler = Scheduler(rules, sqs, clock=clock)
    clock.at += 60
    assert scheduler.fire_due() == ["fast"]
    clock.at += 240
    assert scheduler.fire_due() == ["fast", "slow"]

    every = Scheduler(rules, sqs, clock=clock, every_seconds=0.5)
    clock.at += 0.5
    assert every.fire_due() == ["fast", "slow"]


def test_a_constant_input_replaces_the_event_on_its_target_only() -> None:
    sqs, clock = FakeSqs(), Clock()
    rule = _rule(
        "sweep",
        60,
        QueueTarget("plain", "arn:aws:sqs:us-east-1:1:a", "http://q/a"),
        QueueTarget("constant", "arn:aws:sqs:us-east-1:1:b", "http://q/b", input='{"go": 1}'),
    )
    scheduler = Scheduler([rule], sqs, clock=clock)
    clock.at += 60
    scheduler.fire_due()
    bodies = {sent["QueueUrl"]: sent["MessageBody"] for sent in sqs.sent}
    assert is_scheduled_event(bodies["http://q/a"])
    assert bodies["http://q/b"] == '{"go": 1}'


def test_a_failed_send_stays_due_and_is_tried_again() -> None:
    sqs, clock = FakeSqs(), Clock()
    scheduler = Scheduler([_rule("sweep", 60)], sqs, clock=clock)
    clock.at += 60
    sqs.failing = True
    with pytest.raises(RuntimeError):
        scheduler.fire_due()
    sqs.failing = False
    clock.at += 0.5
    assert scheduler.fire_due() == ["sweep"]
    assert len(sqs.sent) == 1


@pytest.mark.parametrize("every", ["0", "-1", "soon"])
def test_schedule_every_must_be_a_positive_number(
    every: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--endpoint-url", "http://x", "--log-dir", "/tmp", "--schedule-every", every])
    assert "--schedule-every" in capsys.readouterr().err
