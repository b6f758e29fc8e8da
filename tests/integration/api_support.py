"""The api handler in process against moto: events as API Gateway builds them, a caller's
claims as its JWT authorizer passes them on, and the pipeline's handlers to process uploads."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

from sluice.handlers import api
from sluice.keys import receipt_key
from sluice.local.stack.httpapi import HttpRequest, Route, build_event, find_route, to_http_response
from sluice.runtime import Handler
from tests.conftest import FakeContext, Pipeline
from tests.s3events import object_event_for

ADMIN_SUB = "a0000000-0000-4000-8000-00000000000a"
MEMBER_SUB = "b0000000-0000-4000-8000-00000000000b"
ADMIN = {"sub": ADMIN_SUB, "cognito:groups": ["admin", "member"], "token_use": "access"}
MEMBER = {"sub": MEMBER_SUB, "cognito:groups": ["member"], "token_use": "access"}
ROUTE_KEYS = (
    "GET /health",
    "POST /uploads",
    "POST /uploads/multipart",
    "POST /uploads/multipart/{id}/complete",
    "DELETE /uploads/multipart/{id}",
    "POST /uploads/credentials",
    "GET /images",
    "GET /images/{id}",
    "DELETE /images/{id}",
    "GET /labels",
    "POST /bundles",
    "GET /bundles/{id}",
    "GET /inputs",
    "GET /inputs/{key}",
)
ROUTES = [Route.parse(key, authorized=key != "GET /health") for key in ROUTE_KEYS]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    request_id: str
    """The id API Gateway gave the request (``requestContext.requestId``)."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ApiClient:
    """Calls the handler as API Gateway would once its authorizer has accepted ``claims``."""

    handler: Handler

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        claims: Mapping[str, Any] | None = MEMBER,
        query: Mapping[str, str] | None = None,
        raw_body: str | None = None,
    ) -> Answer:
        data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else "")
        request = HttpRequest(
            method=method,
            raw_path=path,
            raw_query=urlencode(query or {}),
            headers=[("content-type", "application/json"), ("host", "api.test")],
            body=data.encode("utf-8"),
        )
        found = find_route(ROUTES, method, path)
        assert found is not None, f"no route for {method} {path}"
        route, params = found
        event = build_event(
            request,
            route,
            params,
            api_id="api",
            account_id="123456789012",
            claims=claims if claims is not None and route.authorized else None,
        )
        response = to_http_response(self.handler(event, FakeContext()))
        request_id = event["requestContext"]["requestId"]
        return Answer(response.status, dict(response.headers), response.body, request_id)


def api_handler(deps: api.Dependencies | None = None) -> Handler:
    """The api function with ``deps``, by default its settings and (moto) clients from the
    current environment, as its cold start would build them."""
    return api.make_handler(deps or api.Dependencies.from_env(os.environ))


def encoded(key: str) -> str:
    """A RAW key as one path segment, as clients send it to ``GET /inputs/{key}``."""
    return quote(key, safe="")


def process(pipeline: Pipeline, handlers: dict[str, ModuleType], key: str) -> None:
    """What the queues would do with one upload: transform, archive and, for images, tag."""

    def invoke(name: str, event: dict[str, Any]) -> None:
        assert handlers[name].handler(event, FakeContext()) == {"batchItemFailures": []}

    invoke("transform", object_event_for(pipeline.s3, pipeline.raw, key))
    invoke("archive", object_event_for(pipeline.s3, pipeline.processed, receipt_key(key)))
    archived = pipeline.s3.list_objects_v2(Bucket=pipeline.archive, Prefix="images/" + key)
    for item in archived.get("Contents", []):
        invoke("tag", object_event_for(pipeline.s3, pipeline.archive, item["Key"]))
