"""The fixed AWS settings of the local environment: emulator endpoint, region, fake keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import boto3

DEFAULT_PORT = 4566
REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_SESSION_TOKEN": "test",
}
# Variables that could route a local command to a real account if they leaked through.
_ACCOUNT_SELECTORS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def endpoint_for(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}"


def local_env(endpoint_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) pointed at the emulator with fake keys."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for name in _ACCOUNT_SELECTORS:
        env.pop(name, None)
    env.update(FAKE_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_PAGER": "",
        }
    )
    return env


def client(service: str, endpoint_url: str, config: Any = None) -> Any:
    """A boto3 client for ``service`` in the emulator, with the fake keys (and botocore
    ``config``, e.g. longer timeouts)."""
    return boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=REGION,
    ).client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]
