"""API handler: the HTTP API's one function, routed with Powertools' ``APIGatewayHttpResolver``.

The routes are those of ``docs/openapi.yaml`` (tests check both lists are equal). Each is a
few lines translating between HTTP and :class:`sluice.api.service.Api`, which holds the
logic over the storage modules; :mod:`sluice.api.protocol` reads callers and bodies and
writes the answers. For each request:

1. The caller. API Gateway (payload format 2.0) checks the bearer token with its JWT
   authorizer before this function runs; the verified claims
   (``requestContext.authorizer.jwt.claims``) name the caller, and a guarded route that
   arrives without them answers 401 (defence in depth: a route left without its authorizer
   serves nobody). ``DELETE /images/{id}`` needs the ``admin`` group (``cognito:groups``).
2. The request: path and query parameters, and the body, validated against its JSON Schema
   in ``sluice/schemas/`` (:data:`SCHEMAS`).
3. The service's answer as JSON. Every refusal is ``{"error": {"code", "message"}}`` with
   its status (400 malformed, 401, 403, 404, 409, 413, 415, 422); anything unexpected is a
   logged 500.

Nothing here logs a token, a presigned URL or a body: log lines carry the route, status and
ids.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import jmespath_utils

from sluice.api.protocol import (
    ApiError,
    Caller,
    caller_from_event,
    error_response,
    json_response,
    load_schema,
    no_content,
    parse_body,
    query_int,
    request_text,
)
from sluice.api.service import Api
from sluice.image_items import InvalidCursorError
from sluice.label_items import InvalidPageTokenError
from sluice.leases import LEASE_MARGIN_SECONDS
from sluice.receipts import STATUSES
from sluice.runtime import Handler, client, entry_point, make_logger
from sluice.settings import ApiSettings
from sluice.uploads import UploadError

DEFAULT_PAGE = 50
MAX_PAGE = 100
SCHEMAS = {
    name: load_schema(name) for name in ("upload_request", "multipart_complete", "bundle_request")
}
"""The request bodies' schemas, compiled at cold start (docs/openapi.yaml names the files)."""

logger = make_logger("api")
app = APIGatewayHttpResolver()


@dataclass(frozen=True)
class Dependencies:
    """What the api function works with: built once per execution environment."""

    settings: ApiSettings
    s3: Any
    dynamodb: Any
    sts: Any

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dependencies:
        settings = ApiSettings.from_env(env)
        region = settings.region
        return cls(
            settings,
            client("s3", region_name=region),
            client("dynamodb", region_name=region),
            client("sts", region_name=region),
        )


# 1-2. The caller and the request ---------------------------------------------------------------
def _service() -> Api:
    """The service :func:`process` put on the request being resolved."""
    return cast(Api, app.context["service"])


def _caller() -> Caller:
    return caller_from_event(app.current_event.raw_event)


def _body(schema: str) -> dict[str, Any]:
    return parse_body(request_text(app.current_event.raw_event), SCHEMAS[schema])


def _query(name: str) -> str | None:
    value = (app.current_event.query_string_parameters or {}).get(name)
    return value if isinstance(value, str) else None


# 3. The routes -------------------------------------------------------------------------------
@app.get("/health")
def health() -> Response[str]:
    return json_response(200, {"status": "ok"})


@app.post("/uploads")
def create_upload() -> Response[str]:
    caller = _caller()
    return json_response(201, _service().create_upload(caller, _body("upload_request")))


@app.post("/uploads/multipart")
def create_multipart_upload() -> Response[str]:
    caller = _caller()
    return json_response(201, _service().create_multipart(caller, _body("upload_request")))


@app.post("/uploads/multipart/<upload_id>/complete")
def complete_multipart_upload(upload_id: str) -> Response[str]:
    caller = _caller()
    body = _body("multipart_complete")
    return json_response(200, _service().complete_multipart(caller, unquote(upload_id), body))


@app.delete("/uploads/multipart/<upload_id>")
def abort_multipart_upload(upload_id: str) -> Response[str]:
    caller = _caller()
    _service().abort_multipart(caller, unquote(upload_id))
    return no_content()


@app.post("/uploads/credentials")
def create_upload_credentials() -> Response[str]:
    caller = _caller()
    return json_response(201, _service().create_credentials(caller, _body("upload_request")))


@app.get("/images")
def list_images() -> Response[str]:
    _caller()
    label = _query("label")
    if label is not None and not 1 <= len(label) <= 200:
        raise ApiError(400, "invalid_query", "label must be 1-200 characters")
    limit = query_int(_query("limit"), "limit", DEFAULT_PAGE, MAX_PAGE)
    return json_response(200, _service().list_images(label, limit, _query("cursor") or None))


@app.get("/images/<image_id>")
def get_image(image_id: str) -> Response[str]:
    _caller()
    return json_response(200, _service().get_image(unquote(image_id)))


@app.delete("/images/<image_id>")
def delete_image(image_id: str) -> Response[str]:
    caller = _caller()
    # The leases taken outlive this invocation by the margin, no more, if it crashes.
    seconds = app.lambda_context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
    outcome = _service().delete_image(caller, unquote(image_id), seconds)
    logger.info("image deleted", image_id=unquote(image_id), outcome=outcome)
    return no_content()


@app.get("/labels")
def list_labels() -> Response[str]:
    _caller()
    return json_response(200, _service().list_labels())


@app.post("/bundles")
def create_bundle() -> Response[str]:
    _caller()
    created = _service().create_bundle(_body("bundle_request"))
    return json_response(202, created, headers={"Location": f"/bundles/{created['bundle_id']}"})


@app.get("/bundles/<bundle_id>")
def get_bundle(bundle_id: str) -> Response[str]:
    _caller()
    return json_response(200, _service().get_bundle(unquote(bundle_id)))


@app.get("/inputs")
def list_inputs() -> Response[str]:
    caller = _caller()
    status = _query("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_query", "status must be " + " or ".join(STATUSES))
    prefix = _query("prefix") or ""
    if len(prefix) > 1024:
        raise ApiError(400, "invalid_query", "prefix must be at most 1024 characters")
    limit = query_int(_query("limit"), "limit", DEFAULT_PAGE, MAX_PAGE)
    page = _service().list_inputs(
        caller, prefix=prefix, status=status, limit=limit, cursor=_query("cursor") or None
    )
    return json_response(200, page)


@app.get("/inputs/<key>")
def get_input(key: str) -> Response[str]:
    caller = _caller()
    return json_response(200, _service().get_input(caller, unquote(key)))


# Refusals ------------------------------------------------------------------------------------
@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
def _api_error(error: ApiError) -> Response[str]:
    logger.info("request refused", status=error.status, code=error.code)
    return error_response(error.status, error.code, error.message, error.details)


@app.exception_handler(UploadError)  # type: ignore[untyped-decorator]
def _upload_error(error: UploadError) -> Response[str]:
    logger.info("upload refused", status=error.status, code=error.code)
    return error_response(error.status, error.code, error.message)


@app.exception_handler(InvalidCursorError)  # type: ignore[untyped-decorator]
@app.exception_handler(InvalidPageTokenError)  # type: ignore[untyped-decorator]
def _bad_cursor(error: ValueError) -> Response[str]:
    return error_response(400, "invalid_cursor", "cursor is not one this API issued")


@app.not_found
def _not_found(_error: Exception) -> Response[str]:
    return error_response(404, "not_found", "no such route")


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def _unexpected(error: Exception) -> Response[str]:
    # The exception's type and traceback, never the request (it may hold a token).
    logger.exception("unexpected error", error_type=type(error).__name__)
    return error_response(500, "internal_error", "something went wrong; it has been logged")


# Entry point ---------------------------------------------------------------------------------
def process(deps: Dependencies, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one request with the service built on ``deps``."""
    # API Gateway's request id on every line this request logs.
    logger.set_correlation_id(
        jmespath_utils.query(data=event, envelope=correlation_paths.API_GATEWAY_HTTP)
    )
    service = Api(deps.settings, deps.s3, deps.dynamodb, deps.sts)
    app.append_context(service=service)  # type: ignore[no-untyped-call]  # cleared by resolve
    return app.resolve(event, context)


def make_handler(deps: Dependencies) -> Handler:
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process(deps, event, context)

    return handle


handler = entry_point(logger, lambda: make_handler(Dependencies.from_env(os.environ)))
