"""API Gateway's part around an HTTP API invocation: routes, events, answers, throttling."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sluice.local.lambdas.wiring import FunctionWiring
from sluice.local.stack.apiserver import ApiWiring, Cors, Gateway, ServedRoute, TokenBucket
from sluice.local.stack.httpapi import (
    HttpRequest,
    Route,
    access_log_line,
    build_event,
    find_route,
    to_http_response,
)
from sluice.local.stack.jwtauth import Authorizer, UnauthorizedError

ROUTES = [
    Route.parse("GET /images"),
    Route.parse("GET /images/{id}"),
    Route.parse("POST /uploads/multipart"),
    Route.parse("POST /uploads/multipart/{id}/complete"),
    Route.parse("GET /files/{path+}"),
    Route.parse("ANY /anything"),
]


@pytest.mark.parametrize(
    ("method", "path", "route", "params"),
    [
        ("GET", "/images", "GET /images", {}),
        ("GET", "/images/", "GET /images", {}),
        ("GET", "/images/abc", "GET /images/{id}", {"id": "abc"}),
        ("GET", "/images/a%2Fb", "GET /images/{id}", {"id": "a/b"}),
        ("POST", "/uploads/multipart", "POST /uploads/multipart", {}),
        ("POST", "/uploads/multipart/x/complete", "POST /uploads/multipart/{id}/complete",
         {"id": "x"}),
        ("GET", "/files/a/b/c", "GET /files/{path+}", {"path": "a/b/c"}),
        ("DELETE", "/anything", "ANY /anything", {}),
    ],
)  # fmt: skip
def test_routes_match_as_api_gateway_matches_them(
    method: str, path: str, route: str, params: dict[str, str]
) -> None:
    found = find_route(ROUTES, method, path)

    assert found is not None
    assert (found[0].key, found[1]) == (route, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/images"), ("GET", "/images/a/b"), ("GET", "/files"), ("GET", "/nope")],
)
def test_requests_without_a_route_find_none(method: str, path: str) -> None:
    assert find_route(ROUTES, method, path) is None


def test_the_event_has_the_payload_2_0_shape_with_the_authorizers_claims() -> None:
    request = HttpRequest(
        method="POST",
        raw_path="/images/a%2Fb",
        raw_query="limit=2&tag=x&tag=y",
        headers=[("Content-Type", "application/json"), ("Cookie", "a=1; b=2"), ("X-A", "1")],
        body=b'{"k": 1}',
    )
    route = Route.parse("POST /images/{id}", authorized=True)

    event = build_event(
        request, route, {"id": "a/b"}, api_id="api1", account_id="1234", claims={"sub": "u"}
    )

    assert event["version"] == "2.0" and event["routeKey"] == "POST /images/{id}"
    assert event["rawPath"] == "/images/a%2Fb" and event["pathParameters"] == {"id": "a/b"}
    assert event["queryStringParameters"] == {"limit": "2", "tag": "x,y"}
    assert event["headers"] == {"content-type": "application/json", "x-a": "1"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["authorizer"]["jwt"]["claims"] == {"sub": "u"}
    assert event["requestContext"]["http"]["method"] == "POST"


def test_a_binary_body_is_base64_encoded() -> None:
    request = HttpRequest("PUT", "/x", headers=[("Content-Type", "image/png")], body=b"\x89PNG")

    event = build_event(request, Route.parse("PUT /x"), {}, api_id="a", account_id="1")

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x89PNG"


def test_responses_are_taken_as_given_or_inferred() -> None:
    given = to_http_response({"statusCode": 204, "headers": {"X": "1"}, "cookies": ["c=1"]})
    inferred = to_http_response({"hello": "world"})

    assert (given.status, given.headers, given.body) == (
        204,
        [("X", "1"), ("Set-Cookie", "c=1")],
        b"",
    )
    assert (inferred.status, inferred.body) == (200, b'{"hello": "world"}')


def test_access_log_lines_fill_the_stage_format() -> None:
    line = access_log_line(
        '{"r":"$context.routeKey","s":"$context.status","e":"$context.authorizer.error"}',
        {"routeKey": "GET /x", "status": 401, "authorizer.error": None},
    )

    assert line == '{"r":"GET /x","s":"401","e":"-"}'


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(burst=2, rate=1.0, clock=lambda: now[0])

    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert [bucket.take(), bucket.take()] == [True, False]


class _Refuses:
    def verify(self, headers: dict[str, str]) -> dict[str, Any]:
        raise UnauthorizedError("no")


class _Accepts:
    def verify(self, headers: dict[str, str]) -> dict[str, Any]:
        return {"sub": "u"}


def _gateway(verifier: Any, *, burst: int = 10) -> tuple[Gateway, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        calls.append(event)
        return {"statusCode": 200, "body": "{}"}

    arn = "arn:aws:lambda:us-east-1:1:function:f"
    wiring = ApiWiring(
        api_id="a",
        account_id="1",
        routes=(
            ServedRoute(Route.parse("GET /open"), arn, None),
            ServedRoute(Route.parse("GET /guarded", authorized=True), arn, "auth"),
        ),
        authorizers={"auth": Authorizer("auth", "https://issuer", ("c",))},
        burst_limit=burst,
        rate_limit=0.0,
        access_log_group=None,
        access_log_format=None,
        cors=Cors(("http://app",), ("GET",), ("authorization",), (), 60),
    )
    function = FunctionWiring("f", arn, "m.h", {}, 3, 128, "/aws/lambda/f", "us-east-1", ())
    gateway = Gateway(
        wiring=wiring,
        handlers={arn: handler},
        functions={arn: function},
        verifiers={"auth": verifier},
        bucket=TokenBucket(burst, 0.0),
    )
    return gateway, calls


def test_a_refused_token_is_401_and_the_function_never_runs() -> None:
    gateway, calls = _gateway(_Refuses())

    response = gateway.handle(HttpRequest("GET", "/guarded"))

    assert (response.status, response.body) == (401, b'{"message": "Unauthorized"}')
    assert calls == []


def test_accepted_claims_reach_the_function_and_open_routes_need_none() -> None:
    gateway, calls = _gateway(_Accepts())

    assert gateway.handle(HttpRequest("GET", "/guarded")).status == 200
    assert gateway.handle(HttpRequest("GET", "/open")).status == 200
    assert calls[0]["requestContext"]["authorizer"]["jwt"]["claims"] == {"sub": "u"}
    assert "authorizer" not in calls[1]["requestContext"]


def test_beyond_the_burst_requests_are_throttled_with_429() -> None:
    gateway, _ = _gateway(_Accepts(), burst=2)

    statuses = [gateway.handle(HttpRequest("GET", "/open")).status for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_unknown_routes_are_404_and_cors_answers_allowed_origins_only() -> None:
    gateway, _ = _gateway(_Accepts())
    preflight = [("Origin", "http://app"), ("Access-Control-Request-Method", "GET")]

    missing = gateway.handle(HttpRequest("GET", "/nope"))
    allowed = gateway.handle(HttpRequest("OPTIONS", "/open", headers=preflight))
    other = gateway.handle(HttpRequest("OPTIONS", "/open", headers=[("Origin", "http://evil")]))
    simple = gateway.handle(HttpRequest("GET", "/open", headers=[("Origin", "http://app")]))

    assert (missing.status, missing.body) == (404, b'{"message": "Not Found"}')
    assert ("Access-Control-Allow-Origin", "http://app") in allowed.headers
    assert not any(name.startswith("Access-Control") for name, _ in other.headers)
    assert ("Access-Control-Allow-Origin", "http://app") in simple.headers
