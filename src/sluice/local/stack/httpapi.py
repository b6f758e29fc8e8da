"""What API Gateway's HTTP API does around one Lambda proxy invocation, as pure functions.

The local API server (:mod:`sluice.local.stack.apiserver`) receives HTTP requests itself, so it
must match a route the way API Gateway does, build the event it would build and turn the
function's answer into an HTTP response the way it would. All three follow the AWS
documentation ("Working with AWS Lambda proxy integrations for HTTP APIs", payload format
version 2.0; "Working with routes for HTTP APIs"):

- routes: ``METHOD /path`` with ``{name}`` segments matching one path segment (on the raw,
  still-encoded path, so ``%2F`` stays inside its segment), ``{name+}`` greedy, ``ANY`` any
  method; the most specific route wins (literal segments before variables, greedy last);
  ``$default`` catches the rest;
- the event: ``version`` 2.0, ``routeKey``, ``rawPath``, ``rawQueryString``, ``cookies``,
  lower-cased ``headers`` (repeated headers joined by commas), ``queryStringParameters``
  (repeated ones joined by commas), ``pathParameters`` (decoded), ``requestContext`` with
  ``authorizer.jwt.claims``/``scopes`` and ``http`` (method, path, protocol, source IP,
  user agent), ``body`` (base64 when not text) and ``isBase64Encoded``;
- the response: a dict with ``statusCode`` is used as given (``headers``, ``cookies``,
  ``body``, ``isBase64Encoded``); anything else is "inferred": status 200, JSON content
  type, the value serialised as the body.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

DEFAULT_ROUTE = "$default"
_TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded))|\+json")


@dataclass(frozen=True)
class Route:
    key: str
    method: str
    segments: tuple[str, ...]
    authorized: bool = False

    @classmethod
    def parse(cls, key: str, *, authorized: bool = False) -> Route:
        if key == DEFAULT_ROUTE:
            return cls(key, "ANY", (), authorized)
        method, _, path = key.partition(" ")
        segments = tuple(part for part in path.split("/") if part)
        return cls(key, method.upper(), segments, authorized)

    def specificity(self) -> tuple[int, ...]:
        """Larger sorts first: literal segments, then variables, greedy ones last."""
        if self.key == DEFAULT_ROUTE:
            return (-1,)
        ranks = [
            2 if not s.startswith("{") else 0 if s.endswith("+}") else 1 for s in self.segments
        ]
        return (0 if any(r == 0 for r in ranks) else 1, len(ranks), *ranks)

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        """Path parameters (decoded) when this route serves the request, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        if self.key == DEFAULT_ROUTE:
            return {}
        parts = [part for part in raw_path.split("/") if part]
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = parts[index:]
                if not rest:
                    return None
                params[segment[1:-2]] = unquote("/".join(rest))
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = unquote(parts[index])
            elif segment != unquote(parts[index]):
                return None
        return params if len(parts) == len(self.segments) else None


def find_route(
    routes: Sequence[Route], method: str, raw_path: str
) -> tuple[Route, dict[str, str]] | None:
    for route in sorted(routes, key=Route.specificity, reverse=True):
        params = route.match(method, raw_path)
        if params is not None:
            return route, params
    return None


@dataclass(frozen=True)
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


def _joined(pairs: Sequence[tuple[str, str]], *, lower: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower() if lower else name
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def request_time(moment: datetime | None = None) -> str:
    """API Gateway's ``$context.requestTime`` (common log format, UTC): the event's
    ``requestContext.time`` and the access log's ``requestTime`` (default: now)."""
    return (moment or datetime.now(UTC)).strftime("%d/%b/%Y:%H:%M:%S +0000")


def build_event(
    request: HttpRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    api_id: str,
    account_id: str,
    stage: str = "$default",
    claims: Mapping[str, Any] | None = None,
    scopes: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends for ``request`` on ``route``."""
    moment = now or datetime.now(UTC)
    headers = _joined([(k, v) for k, v in request.headers if k.lower() != "cookie"], lower=True)
    cookies = [
        part.strip()
        for name, value in request.headers
        if name.lower() == "cookie"
        for part in value.split(";")
        if part.strip()
    ]
    content_type = headers.get("content-type", "")
    text = not request.body or bool(_TEXT_TYPES.search(content_type))
    if text:
        try:
            body: str | None = request.body.decode("utf-8")
        except UnicodeDecodeError:
            text = False
    if not text:
        body = base64.b64encode(request.body).decode("ascii")
    query = parse_qsl(request.raw_query, keep_blank_values=True)
    request_id = base64.urlsafe_b64encode(uuid.uuid4().bytes)[:16].decode("ascii")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": headers.get("host", "127.0.0.1").split(".")[0],
            "http": {
                "method": request.method.upper(),
                "path": unquote(request.raw_path),
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": stage,
            "time": request_time(moment),
            "timeEpoch": int(moment.timestamp() * 1000),
        },
        "isBase64Encoded": not text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = _joined(query, lower=False)
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if claims is not None:
        event["requestContext"]["authorizer"] = {
            "jwt": {"claims": dict(claims), "scopes": list(scopes) if scopes else None}
        }
    if request.body:
        event["body"] = body
    return event


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def to_http_response(result: Any) -> HttpResponse:
    """What API Gateway answers for the function's return value (format 2.0)."""
    if not (isinstance(result, Mapping) and "statusCode" in result):
        body = json.dumps(result).encode("utf-8")
        return HttpResponse(200, [("Content-Type", "application/json")], body)
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body")
    if raw is None:
        data = b""
    elif result.get("isBase64Encoded"):
        data = base64.b64decode(str(raw))
    else:
        data = str(raw).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), headers, data)


def error_body(message: str) -> bytes:
    """API Gateway's own error bodies (401, 404, 429, 500): ``{"message": ...}``."""
    return json.dumps({"message": message}).encode("utf-8")


def access_log_line(fmt: str, values: Mapping[str, Any]) -> str:
    """The stage's access log format with ``$context.x`` variables filled (``-`` if unknown)."""

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return "-" if value is None or value == "" else str(value)

    return re.sub(r"\$context\.([A-Za-z.]+[A-Za-z])", replace, fmt)


def monotonic() -> float:
    return time.monotonic()
