"""The local API server accepts exactly the tokens API Gateway's JWT authorizer accepts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sluice.local.stack.jwtauth import Authorizer, TokenVerifier, UnauthorizedError

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool"
CLIENT = "cli-client"
NOW = 1_800_000_000.0

POOL_KEY = RSAKey.generate_key(2048, parameters={"kid": "pool-key"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "pool-key"})


def sign(claims: Mapping[str, Any], key: RSAKey = POOL_KEY, kid: str = "pool-key") -> str:
    return jwt.encode({"alg": "RS256", "kid": kid}, dict(claims), key)


def access_token(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "sub": "user-1",
        "client_id": CLIENT,
        "token_use": "access",
        "iat": NOW - 10,
        "exp": NOW + 3600,
        "cognito:groups": ["member"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def verifier() -> TokenVerifier:
    jwks = KeySet([POOL_KEY]).as_dict(private=False)
    authorizer = Authorizer("auth", ISSUER, (CLIENT, "web-client"))
    return TokenVerifier(authorizer, lambda _authorizer: jwks, clock=lambda: NOW)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_valid_access_token_passes_with_its_claims(verifier: TokenVerifier) -> None:
    claims = verifier.verify(bearer(sign(access_token())))

    assert claims["sub"] == "user-1" and claims["cognito:groups"] == ["member"]


def test_an_id_token_passes_by_its_audience_and_without_bearer_prefix(
    verifier: TokenVerifier,
) -> None:
    token = sign(access_token(token_use="id", client_id=None, aud="web-client"))

    assert verifier.verify({"authorization": token})["token_use"] == "id"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no header"),
        ({"authorization": "Bearer "}, "empty"),
        ({"authorization": "Bearer not.a.jwt"}, "garbage"),
        (bearer(sign(access_token(exp=NOW - 1))), "expired"),
        (bearer(sign(access_token(nbf=NOW + 60))), "not yet valid"),
        (bearer(sign(access_token(iss=ISSUER + "x"))), "another pool's issuer"),
        (bearer(sign(access_token(client_id="someone-else"))), "another client"),
        (bearer(sign(access_token(token_use=None))), "no token_use"),
        (bearer(sign(access_token(token_use="refresh"))), "not id or access"),
        (bearer(sign(access_token(), key=OTHER_KEY)), "signed by another key, same kid"),
        (bearer(sign(access_token(), kid="unknown")), "unknown key id"),
    ],
)
def test_tokens_the_authorizer_refuses_are_refused(
    verifier: TokenVerifier, headers: dict[str, str], why: str
) -> None:
    with pytest.raises(UnauthorizedError):
        verifier.verify(headers)


def test_a_tampered_payload_breaks_the_signature(verifier: TokenVerifier) -> None:
    import base64
    import json

    header, payload, signature = sign(access_token()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["cognito:groups"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    with pytest.raises(UnauthorizedError):
        verifier.verify(bearer(f"{header}.{forged}.{signature}"))


def test_an_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    import base64
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    token = f"{part({'alg': 'none', 'kid': 'pool-key'})}.{part(access_token())}."

    with pytest.raises(UnauthorizedError):
        verifier.verify(bearer(token))


def test_keys_are_fetched_once_and_again_only_for_an_unknown_kid() -> None:
    fetched: list[float] = []
    jwks = KeySet([POOL_KEY]).as_dict(private=False)

    def load(_authorizer: Authorizer) -> dict[str, Any]:
        fetched.append(time.monotonic())
        return jwks

    verifier = TokenVerifier(Authorizer("a", ISSUER, (CLIENT,)), load, clock=lambda: NOW)
    for _ in range(3):
        verifier.verify(bearer(sign(access_token())))
    with pytest.raises(UnauthorizedError):
        verifier.verify(bearer(sign(access_token(), kid="rotated")))

    assert len(fetched) == 1  # the unknown kid came within the refresh interval
