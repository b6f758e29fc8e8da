"""``sluice login`` against moto's Cognito: first sign-in with a temporary password, the
tokens file, and ``sluice token``."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sluice.ops.login import LoginError, Tokens, load_token, save_tokens, sign_in
from sluice.workdir import tokens_path
from tests.conftest import REGION

TEMPORARY = "Temporary-Passw0rd!"
CHOSEN = "Chosen-Passw0rd!42"


@pytest.fixture
def pool(aws: None) -> Iterator[tuple[Any, str]]:
    cognito = boto3.client("cognito-idp", region_name=REGION)
    pool_id = cognito.create_user_pool(PoolName="users")["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="cli", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username="ada@example.com",
        TemporaryPassword=TEMPORARY,
        MessageAction="SUPPRESS",
    )
    yield cognito, client_id


def test_first_sign_in_replaces_the_temporary_password(pool: tuple[Any, str]) -> None:
    cognito, client_id = pool
    asked: list[str] = []

    def new_password() -> str:
        asked.append("new")
        return CHOSEN

    first = sign_in(cognito, client_id, "ada@example.com", TEMPORARY, new_password=new_password)
    second = sign_in(cognito, client_id, "ada@example.com", CHOSEN, new_password=new_password)

    assert asked == ["new"]  # only the first sign-in is challenged
    assert first.id_token.count(".") == 2 and second.access_token.count(".") == 2


def test_a_wrong_password_is_a_plain_error(pool: tuple[Any, str]) -> None:
    cognito, client_id = pool

    with pytest.raises(LoginError, match="wrong user name or password"):
        sign_in(cognito, client_id, "ada@example.com", "nope", new_password=lambda: CHOSEN)


def test_tokens_are_saved_for_the_user_only_and_expire(tmp_path: Path) -> None:
    path = tokens_path(tmp_path, "dev")
    save_tokens(path, Tokens("id.x.y", "access.x.y", "refresh", 1000.0, "ada@example.com"))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(path, "access", clock=lambda: 900.0) == "access.x.y"
    with pytest.raises(LoginError, match="expired"):
        load_token(path, "id", clock=lambda: 990.0)
    with pytest.raises(LoginError, match="run sluice login"):
        load_token(tmp_path / "missing.json", "id")
