"""``sluice login`` and ``sluice token``: tokens of the environment's user pool, kept for later.

Sign-in is Cognito's ``USER_PASSWORD_AUTH`` on the CLI client (``cli_client_id`` output,
modules/auth): the password goes to Cognito over TLS and never to the API. A user created
by an administrator (the seeded user of ``env/local.tfvars``) must first replace the
temporary password: Cognito answers ``NEW_PASSWORD_REQUIRED`` and ``sluice login`` asks for
a new one and answers the challenge.

The tokens are written to ``.sluice/<environment>/tokens.json`` in the project, created
with mode 0600 (only the user may read them) and replaced atomically; the file is
git-ignored like the rest of ``.sluice/``. ``sluice token`` prints the id or access token
for ``curl -H "Authorization: Bearer ..."`` and fails once it has expired. Nothing here
prints or logs a password or a token except ``sluice token`` itself, on stdout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sluice import workdir

EXPIRY_MARGIN_SECONDS = 30
TokenKind = Literal["id", "access"]


class LoginError(RuntimeError):
    """Sign-in failed; the message says why and what to do (never the password)."""


@dataclass(frozen=True)
class Tokens:
    id_token: str
    access_token: str
    refresh_token: str | None
    expires_at: float
    username: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id_token": self.id_token,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "username": self.username,
        }


def _tokens(result: Mapping[str, Any], username: str, now: float) -> Tokens:
    return Tokens(
        id_token=str(result["IdToken"]),
        access_token=str(result["AccessToken"]),
        refresh_token=result.get("RefreshToken"),
        expires_at=now + float(result.get("ExpiresIn") or 3600),
        username=username,
    )


def sign_in(
    cognito: Any,
    client_id: str,
    username: str,
    password: str,
    *,
    new_password: Callable[[], str],
    clock: Callable[[], float] = time.time,
) -> Tokens:
    """Tokens for ``username``; ``new_password`` is asked only when Cognito requires one."""
    try:
        response = cognito.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        if response.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
            response = cognito.respond_to_auth_challenge(
                ClientId=client_id,
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=response["Session"],
                ChallengeResponses={"USERNAME": username, "NEW_PASSWORD": new_password()},
            )
    except (cognito.exceptions.NotAuthorizedException, cognito.exceptions.UserNotFoundException):
        raise LoginError("wrong user name or password") from None
    except cognito.exceptions.InvalidPasswordException as error:
        message = error.response.get("Error", {}).get("Message", "")
        raise LoginError(f"the new password is not accepted: {message}") from None
    if "AuthenticationResult" not in response:
        challenge = response.get("ChallengeName", "unknown")
        raise LoginError(f"Cognito asks for {challenge}, which sluice login does not answer")
    return _tokens(response["AuthenticationResult"], username, clock())


def save_tokens(path: Path, tokens: Tokens) -> None:
    """Write ``tokens`` readable by the user only (0600), replacing the file atomically."""
    workdir.replace_text(path, json.dumps(tokens.as_json()), private=True)


def load_token(path: Path, kind: TokenKind, *, clock: Callable[[], float] = time.time) -> str:
    """The saved id or access token; an error when there is none or it has expired."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise LoginError(f"no saved sign-in at {path}: run sluice login") from None
    if float(saved.get("expires_at") or 0) - EXPIRY_MARGIN_SECONDS <= clock():
        raise LoginError("the saved sign-in has expired: run sluice login")
    token = saved.get(f"{kind}_token")
    if not isinstance(token, str) or not token:
        raise LoginError(f"the saved sign-in has no {kind} token: run sluice login")
    return token
