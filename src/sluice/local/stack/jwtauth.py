"""A bearer token checked the way API Gateway's JWT authorizer checks it.

AWS documents the authorizer's steps ("Controlling access to HTTP APIs with JWT
authorizers"); this follows them, with joserfc (a maintained JOSE library, already a
dependency of moto) doing the cryptography:

1. the identity source (``$request.header.Authorization``) must be present; a ``Bearer``
   prefix is accepted and removed;
2. the token is a JWS compact JWT whose ``kid`` is in the issuer's JWKS
   (``<issuer>/.well-known/jwks.json``) and whose signature verifies with that key
   (RS256, what Cognito signs with);
3. ``iss`` equals the authorizer's issuer;
4. ``aud`` (id tokens) or, without ``aud``, ``client_id`` (access tokens) is one of the
   authorizer's audiences;
5. ``exp`` is in the future; ``nbf`` and ``iat``, when present, are not;
6. Cognito's ``token_use`` is ``id`` or ``access`` (a refresh token is never a JWT, and
   nothing else may pass).

Locally the JWKS comes from the emulator: moto serves the pool's keys at
``<endpoint>/<pool id>/.well-known/jwks.json`` while its tokens name the AWS issuer URL,
so the keys are fetched by pool id from the emulator and the issuer is compared as given.
Any failure is one answer, 401, with a reason for the server's log (never the token).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS256"]
TOKEN_USES = frozenset({"id", "access"})
JWKS_REFRESH_SECONDS = 60.0
"""An unknown ``kid`` refetches the keys at most this often (key rotation, not abuse)."""


class UnauthorizedError(Exception):
    """The request carries no acceptable token; the message says why (for logs only)."""


@dataclass(frozen=True)
class Authorizer:
    """A JWT authorizer as API Gateway stores it."""

    authorizer_id: str
    issuer: str
    audience: tuple[str, ...]
    identity_source: str = "$request.header.Authorization"

    @property
    def header(self) -> str:
        prefix = "$request.header."
        if not self.identity_source.startswith(prefix):
            raise ValueError(f"unsupported identity source {self.identity_source!r}")
        return self.identity_source[len(prefix) :].lower()

    @property
    def pool_id(self) -> str:
        return self.issuer.rstrip("/").rsplit("/", 1)[-1]


def fetch_jwks_from(endpoint_url: str) -> Callable[[Authorizer], Mapping[str, Any]]:
    """A JWKS loader that reads the pool's keys from the emulator at ``endpoint_url``."""

    def load(authorizer: Authorizer) -> Mapping[str, Any]:
        url = f"{endpoint_url.rstrip('/')}/{authorizer.pool_id}/.well-known/jwks.json"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the emulator
            document: Mapping[str, Any] = json.loads(response.read())
        return document

    return load


@dataclass
class TokenVerifier:
    authorizer: Authorizer
    load_jwks: Callable[[Authorizer], Mapping[str, Any]]
    clock: Callable[[], float] = time.time
    leeway_seconds: int = 0
    _keys: KeySet | None = field(default=None, init=False, repr=False)
    _fetched_at: float = field(default=float("-inf"), init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _key_set(self, kid: str | None) -> KeySet:
        with self._lock:
            known = self._keys is not None and (kid is None or _has_kid(self._keys, kid))
            stale = time.monotonic() - self._fetched_at > JWKS_REFRESH_SECONDS
            if self._keys is None or (not known and stale):
                self._keys = KeySet.import_key_set(dict(self.load_jwks(self.authorizer)))  # type: ignore[arg-type]
                self._fetched_at = time.monotonic()
            return self._keys

    def verify(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The token's claims when the authorizer would accept ``headers``; else raise."""
        value = headers.get(self.authorizer.header, "").strip()
        if not value:
            raise UnauthorizedError("no token in the identity source")
        token = value[7:].strip() if value[:7].lower() == "bearer " else value
        try:
            header = _unverified_header(token)
            decoded = jwt.decode(token, self._key_set(header.get("kid")), algorithms=ALGORITHMS)
        except (JoseError, ValueError) as error:
            raise UnauthorizedError(f"token rejected: {type(error).__name__}") from None
        claims = dict(decoded.claims)
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.authorizer.issuer:
            raise UnauthorizedError("token of another issuer")
        audience = claims.get("aud")
        if audience is not None:
            given = audience if isinstance(audience, list) else [audience]
        else:
            given = [claims.get("client_id")]
        if not set(map(str, given)) & set(self.authorizer.audience):
            raise UnauthorizedError("token for another audience")
        now = self.clock()
        exp = _number(claims.get("exp"))
        if exp is None or exp <= now - self.leeway_seconds:
            raise UnauthorizedError("token expired")
        for name in ("nbf", "iat"):
            moment = _number(claims.get(name))
            if moment is not None and moment > now + self.leeway_seconds:
                raise UnauthorizedError(f"token not valid yet ({name})")
        if claims.get("token_use") not in TOKEN_USES:
            raise UnauthorizedError("not an id or access token")


def _has_kid(keys: KeySet, kid: str) -> bool:
    try:
        keys.get_by_kid(kid)
    except (JoseError, ValueError, KeyError):
        return False
    return True


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _unverified_header(token: str) -> dict[str, Any]:
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact token")
    padded = parts[0] + "=" * (-len(parts[0]) % 4)
    header = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(header, dict):
        raise ValueError("token header is not an object")
    return header


def scopes_of(claims: Mapping[str, Any]) -> Sequence[str] | None:
    """Access tokens' ``scope`` as API Gateway passes it on (``jwt.scopes``)."""
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) and scope else None
