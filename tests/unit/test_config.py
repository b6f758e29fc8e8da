"""Configuration readers: defaults, validation, and errors that name the variable."""

from __future__ import annotations

import os

import pytest

from sluice.config import (
    ConfigError,
    env_choice,
    env_float,
    env_int,
    env_int_list,
    env_str,
)
from sluice.handlers.bundle import Dependencies
from sluice.settings import BundleSettings


def test_env_str_value_is_stripped() -> None:
    assert env_str({"BUCKET": "  raw-bucket \n"}, "BUCKET") == "raw-bucket"


@pytest.mark.parametrize("env", [{}, {"BUCKET": ""}, {"BUCKET": "   "}])
def test_env_str_required_and_missing_names_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="BUCKET is required"):
        env_str(env, "BUCKET")


def test_env_str_default_only_when_unset() -> None:
    assert env_str({}, "NAME", "fallback") == "fallback"
    assert env_str({"NAME": "set"}, "NAME", "fallback") == "set"


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 7 ", 7), ("", 10), ("-3", -3)])
def test_env_int_parses(raw: str, expected: int) -> None:
    assert env_int({"N": raw}, "N", 10) == expected


@pytest.mark.parametrize("raw", ["4.5", "ten", "1e3", "0x10", "1 000"])
def test_env_int_rejects_non_integers_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"N must be an integer") as info:
        env_int({"N": raw}, "N", 10)
    assert repr(raw) in str(info.value)


def test_env_int_bounds_are_inclusive_and_named() -> None:
    assert env_int({"N": "1"}, "N", 5, minimum=1, maximum=9) == 1
    assert env_int({"N": "9"}, "N", 5, minimum=1, maximum=9) == 9
    with pytest.raises(ConfigError, match="N must be >= 1, got 0"):
        env_int({"N": "0"}, "N", 5, minimum=1, maximum=9)
    with pytest.raises(ConfigError, match="N must be <= 9, got 10"):
        env_int({"N": "10"}, "N", 5, minimum=1, maximum=9)


def test_env_float_range_and_garbage() -> None:
    assert env_float({"C": "80.5"}, "C", 80, minimum=0, maximum=100) == 80.5
    assert env_float({}, "C", 80, minimum=0, maximum=100) == 80
    for raw in ("100.1", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="C must be between 0 and 100"):
            env_float({"C": raw}, "C", 80, minimum=0, maximum=100)
    with pytest.raises(ConfigError, match="C must be a number, got 'high'"):
        env_float({"C": "high"}, "C", 80, minimum=0, maximum=100)


def test_env_choice() -> None:
    choices = ("JPEG", "WEBP", "PNG")
    assert env_choice({}, "FMT", "JPEG", choices) == "JPEG"
    assert env_choice({"FMT": " PNG "}, "FMT", "JPEG", choices) == "PNG"
    with pytest.raises(ConfigError, match="FMT must be one of JPEG, WEBP, PNG, got 'GIF'"):
        env_choice({"FMT": "GIF"}, "FMT", "JPEG", choices)


def test_env_int_list_sorted_unique_and_tolerant_of_spaces() -> None:
    assert env_int_list({"S": "512, 128,512,"}, "S", "128", minimum=1, maximum=4096) == (128, 512)
    assert env_int_list({}, "S", "64,32", minimum=1, maximum=4096) == (32, 64)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("128;512", "comma-separated list of integers"),
        (",", "at least one value"),
        ("0,128", "between 1 and 4096, got 0"),
        ("128,5000", "between 1 and 4096, got 5000"),
    ],
)
def test_env_int_list_errors_name_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"S.*{message}"):
        env_int_list({"S": raw}, "S", "128", minimum=1, maximum=4096)


BUNDLE_ENV = {
    "WORK_BUCKET": "work",
    "ARCHIVE_BUCKET": "archive",
    "LABELS_TABLE": "labels",
    "IMAGES_TABLE": "images",
    "BUNDLE_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bundles",
    "NOTIFY_TOPIC_PREFIX": "sluice-test-notify-",
}


@pytest.fixture
def bundle_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in BUNDLE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BUNDLE_URL_TTL_SECONDS", raising=False)
    monkeypatch.delenv("BUNDLE_EXPIRATION_DAYS", raising=False)
    return monkeypatch


def bundle_cold_start() -> BundleSettings:
    """What the bundle function's cold start builds (settings and clients), its settings."""
    return Dependencies.from_env(os.environ).settings


def test_bundle_cold_start_reads_its_configuration(bundle_env: pytest.MonkeyPatch) -> None:
    bundle_env.setenv("BUNDLE_URL_TTL_SECONDS", "3600")
    bundle_env.setenv("BUNDLE_EXPIRATION_DAYS", "7")

    config = bundle_cold_start()

    assert config.work_bucket == "work"
    assert config.archive_bucket == "archive"
    assert config.labels_table == "labels"
    assert config.images_table == "images"
    assert config.topic_arn == BUNDLE_ENV["BUNDLE_TOPIC_ARN"]
    assert config.url_ttl_seconds == 3600
    assert config.notify_topic_prefix == "sluice-test-notify-"
    assert config.request_expiration_days == 7


def test_bundle_url_lifetime_defaults_to_one_day(bundle_env: pytest.MonkeyPatch) -> None:
    assert bundle_cold_start().url_ttl_seconds == 86400


@pytest.mark.parametrize("raw", ["0", "-5", "604801", "one day", "86400.5"])
def test_bundle_cold_start_rejects_bad_url_lifetime(
    bundle_env: pytest.MonkeyPatch, raw: str
) -> None:
    bundle_env.setenv("BUNDLE_URL_TTL_SECONDS", raw)

    with pytest.raises(ConfigError, match="BUNDLE_URL_TTL_SECONDS"):
        bundle_cold_start()


@pytest.mark.parametrize("name", sorted(BUNDLE_ENV))
def test_bundle_cold_start_names_a_missing_variable(
    bundle_env: pytest.MonkeyPatch, name: str
) -> None:
    bundle_env.delenv(name)

    with pytest.raises(ConfigError, match=f"{name} is required"):
        bundle_cold_start()
