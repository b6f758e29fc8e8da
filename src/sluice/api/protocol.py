"""The API's HTTP side, with no AWS in it: who is calling, what they sent, what they get.

API Gateway (payload format 2.0) checks the bearer token with its JWT authorizer and
passes the verified claims on in ``requestContext.authorizer.jwt.claims``;
:func:`caller_from_event` still answers 401 without them (a route left without its
authorizer serves nobody). Bodies are JSON checked against the schemas in
``sluice/schemas/``. Every refusal is an :class:`ApiError`, answered as
``{"error": {"code", "message"[, "details"]}}`` with its status (400 malformed, 401, 403,
404, 409, 413, 415, 422); messages never echo a value the caller sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aws_lambda_powertools.event_handler import Response

from sluice.datasets import Dataset
from sluice.units import MIB

MAX_BODY_BYTES = MIB
"""A complete request lists up to 10,000 parts (about 600 KB); API Gateway takes 10 MB."""
ADMIN_GROUP = "admin"


# Answers -----------------------------------------------------------------------------------
class ApiError(Exception):
    """An answer other than success: its status, a stable code and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int, code: str, message: str, details: list[dict[str, str]] | None = None
) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response(status, {"error": error})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, ensure_ascii=False),
        headers=headers,
    )


def no_content() -> Response[str]:
    return Response(status_code=204, content_type="application/json", body="")


# Request bodies ------------------------------------------------------------------------------
def load_schema(name: str) -> Dataset:
    """A request schema, compiled like a dataset's: a fast yes/no check at cold start and,
    for an invalid body, every violation by JSON path with messages that never echo a value."""
    text = resources.files("sluice").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    return Dataset.compile(name, "", json.loads(text), ())


def request_text(event: Mapping[str, Any]) -> str | None:
    """The body as text; a body that is not UTF-8 (base64 from API Gateway) is not JSON."""
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return body if isinstance(body, str) else None
    try:
        return base64.b64decode(body).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not UTF-8 JSON") from None


def parse_body(raw: str | None, schema: Dataset) -> dict[str, Any]:
    """The JSON body, valid against ``schema``; 400 when not JSON, 422 when invalid."""
    if raw is None or not raw.strip():
        raise ApiError(400, "missing_body", "a JSON body is required")
    if len(raw.encode("utf-8")) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    if not schema.is_valid(document):
        details = [
            {"path": violation.path, "message": violation.message}
            for violation in schema.violations(document)
        ]
        raise ApiError(422, "invalid_request", "the body does not match its schema", details)
    result: dict[str, Any] = document
    return result


def query_int(value: str | None, name: str, default: int, maximum: int) -> int:
    """A query parameter from 1 to ``maximum`` (``default`` when absent), or 400."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an integer") from None
    if not 1 <= number <= maximum:
        raise ApiError(400, "invalid_query", f"{name} must be between 1 and {maximum}")
    return number


# Who is calling ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    sub: str
    groups: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


def parse_groups(value: Any) -> frozenset[str]:
    """``cognito:groups`` as API Gateway passes it: a list, or a string ``[a b]``/``[a, b]``."""
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return frozenset(str(item) for item in parsed)
            text = text.strip("[]")
        return frozenset(part for part in re.split(r"[\s,]+", text) if part)
    return frozenset()


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    """The verified caller, or 401 when the authorizer left no claims."""
    context = event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    return Caller(sub=sub, groups=parse_groups(claims.get("cognito:groups")))
