"""The local API server: plays API Gateway's HTTP API in front of the ``api`` function.

moto stores the HTTP API Terraform created (routes, Lambda proxy integration, JWT
authorizer, ``$default`` stage, CORS) but serves none of it. This server reads all of it
back from the emulator, never from a copy in Python (decision 7), and serves it on
``http://127.0.0.1:<port>``:

- routes are matched as API Gateway matches them (:mod:`sluice.local.stack.httpapi`); no route
  is 404 ``{"message": "Not Found"}``;
- a route with the JWT authorizer checks the bearer token exactly as the authorizer
  would (:mod:`sluice.local.stack.jwtauth`: signature against the user pool's JWKS in the
  emulator, issuer, audience or client id, expiry, token use); a refusal is 401
  ``{"message": "Unauthorized"}`` and the function is not invoked;
- the stage's default throttling (burst and rate) is a token bucket: beyond it, 429
  ``{"message": "Too Many Requests"}``;
- the payload format 2.0 event, with ``requestContext.authorizer.jwt.claims``, is handed
  to the integration's function **in this process**, which runs with that function's
  environment (read with ``GetFunctionConfiguration``, plus what Lambda sets, as the
  local runner's workers do: :func:`sluice.local.lambdas.worker.function_process_env`), so the
  handler module's cold start happens here, once. Invocations are serialised, as one
  Lambda execution environment serves one request at a time. A handler exception is 500
  ``{"message": "Internal Server Error"}``;
- CORS as the API's ``CorsConfiguration`` says: preflight ``OPTIONS`` answered for allowed
  origins, ``Access-Control-Allow-Origin`` added to their responses;
- one access log line per request in the stage's own format, to the stage's log group in
  the emulator and to this server's log.

Usage::

    python -m sluice.local.stack.apiserver --endpoint-url http://127.0.0.1:4566 \\
        --api-id <id> --port 4567
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sluice.local import awsenv
from sluice.local.lambdas.cloudwatch import CloudWatchLogStream
from sluice.local.lambdas.invocation import LambdaContext
from sluice.local.lambdas.wiring import FunctionWiring, function_wiring
from sluice.local.stack.httpapi import (
    HttpRequest,
    HttpResponse,
    Route,
    access_log_line,
    build_event,
    error_body,
    find_route,
    request_time,
    to_http_response,
)
from sluice.local.stack.jwtauth import (
    Authorizer,
    TokenVerifier,
    UnauthorizedError,
    fetch_jwks_from,
    scopes_of,
)

DEFAULT_API_PORT_OFFSET = 1
"""Without ``--api-port`` the API listens on the emulator's port + 1 (4566 -> 4567)."""
STAGE = "$default"
READY_LINE = "apiserver: serving"
Handler = Callable[[dict[str, Any], Any], Any]


# --- what the emulator holds -------------------------------------------------------------------


@dataclass(frozen=True)
class ServedRoute:
    route: Route
    function_arn: str
    authorizer_id: str | None


@dataclass(frozen=True)
class Cors:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    expose: tuple[str, ...]
    max_age: int | None

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


@dataclass(frozen=True)
class ApiWiring:
    api_id: str
    account_id: str
    routes: tuple[ServedRoute, ...]
    authorizers: Mapping[str, Authorizer]
    burst_limit: int | None
    rate_limit: float | None
    access_log_group: str | None
    access_log_format: str | None
    cors: Cors | None

    @property
    def function_arns(self) -> set[str]:
        return {route.function_arn for route in self.routes}

    def describe(self) -> str:
        lines = [f"api {self.api_id}: {len(self.routes)} routes, stage {STAGE}"]
        for served in sorted(self.routes, key=lambda r: r.route.key):
            guard = "JWT" if served.authorizer_id else "open"
            lines.append(f"  {served.route.key:<42} {guard:<4} -> {served.function_arn}")
        for authorizer in self.authorizers.values():
            lines.append(f"  authorizer {authorizer.authorizer_id}: {authorizer.issuer}")
        lines.append(f"  throttling burst {self.burst_limit}, rate {self.rate_limit}/s")
        return "\n".join(lines)


def _function_arn(integration_uri: str) -> str:
    """``arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations``."""
    marker = "/functions/"
    if marker in integration_uri:
        return integration_uri.split(marker, 1)[1].removesuffix("/invocations")
    return integration_uri


def discover_api(apigateway: Any, api_id: str) -> ApiWiring:
    """Everything about ``api_id`` that serving it needs, from the emulator's API."""
    api = apigateway.get_api(ApiId=api_id)
    routes = apigateway.get_routes(ApiId=api_id)["Items"]
    integrations = {
        item["IntegrationId"]: item for item in apigateway.get_integrations(ApiId=api_id)["Items"]
    }
    served: list[ServedRoute] = []
    authorizers: dict[str, Authorizer] = {}
    for item in routes:
        target = str(item.get("Target", ""))
        integration = integrations.get(target.removeprefix("integrations/"))
        if integration is None or integration.get("IntegrationType") != "AWS_PROXY":
            continue
        if integration.get("PayloadFormatVersion") != "2.0":
            raise ValueError(f"route {item['RouteKey']}: only payload format 2.0 is served")
        authorizer_id = item.get("AuthorizerId") if item.get("AuthorizationType") == "JWT" else None
        if authorizer_id and authorizer_id not in authorizers:
            # One GetAuthorizer per authorizer: moto implements no GetAuthorizers.
            found = apigateway.get_authorizer(ApiId=api_id, AuthorizerId=authorizer_id)
            jwt = found.get("JwtConfiguration") or {}
            authorizers[authorizer_id] = Authorizer(
                authorizer_id=authorizer_id,
                issuer=str(jwt["Issuer"]),
                audience=tuple(jwt.get("Audience") or ()),
                identity_source=(found.get("IdentitySource") or ["$request.header.Authorization"])[
                    0
                ],
            )
        served.append(
            ServedRoute(
                route=Route.parse(item["RouteKey"], authorized=bool(authorizer_id)),
                function_arn=_function_arn(str(integration["IntegrationUri"])),
                authorizer_id=authorizer_id,
            )
        )
    stage = apigateway.get_stage(ApiId=api_id, StageName=STAGE)
    settings = stage.get("DefaultRouteSettings") or {}
    logs = stage.get("AccessLogSettings") or {}
    destination = str(logs.get("DestinationArn") or "")
    cors_config = api.get("CorsConfiguration")
    return ApiWiring(
        api_id=api_id,
        account_id=destination.split(":")[4] if destination.count(":") >= 5 else "000000000000",
        routes=tuple(served),
        authorizers=authorizers,
        burst_limit=_int_or_none(settings.get("ThrottlingBurstLimit")),
        rate_limit=_float_or_none(settings.get("ThrottlingRateLimit")),
        access_log_group=destination.split(":log-group:", 1)[1]
        if ":log-group:" in destination
        else None,
        access_log_format=logs.get("Format"),
        cors=Cors(
            origins=tuple(cors_config.get("AllowOrigins") or ()),
            methods=tuple(m.upper() for m in cors_config.get("AllowMethods") or ()),
            headers=tuple(h.lower() for h in cors_config.get("AllowHeaders") or ()),
            expose=tuple(cors_config.get("ExposeHeaders") or ()),
            max_age=_int_or_none(cors_config.get("MaxAge")),
        )
        if cors_config
        else None,
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None


# --- throttling --------------------------------------------------------------------------------


@dataclass
class TokenBucket:
    """API Gateway's throttling: ``burst`` requests at once, refilled at ``rate`` per second."""

    burst: int
    rate: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(default=-1.0, init=False)
    _last: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            if self._tokens < 0:
                self._tokens, self._last = float(self.burst), now
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


# --- serving -----------------------------------------------------------------------------------


@dataclass
class Gateway:
    """Route, authorise, throttle, invoke and answer: one request at a time per function."""

    wiring: ApiWiring
    handlers: Mapping[str, Handler]
    functions: Mapping[str, FunctionWiring]
    verifiers: Mapping[str, TokenVerifier]
    bucket: TokenBucket | None = None
    access_log: Callable[[str], None] = lambda _line: None
    _invoke_lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        values: dict[str, Any] = {"routeKey": "-", "requestTime": request_time()}
        response = self._answer(request, values)
        values.update(
            status=response.status,
            responseLength=len(response.body),
            responseLatency=int((time.monotonic() - started) * 1000),
        )
        values.setdefault("requestId", "-")
        if self.wiring.access_log_format:
            self.access_log(access_log_line(self.wiring.access_log_format, _context_values(values)))
        return response

    def _answer(self, request: HttpRequest, values: dict[str, Any]) -> HttpResponse:
        headers = {name.lower(): value for name, value in request.headers}
        origin = headers.get("origin")
        if request.method.upper() == "OPTIONS" and origin and self.wiring.cors is not None:
            return self._preflight(origin, headers)
        response = self._route(request, headers, values)
        cors = self.wiring.cors
        if origin and cors is not None and cors.allows(origin):
            response.headers.append(
                ("Access-Control-Allow-Origin", origin if "*" not in cors.origins else "*")
            )
            if cors.expose:
                response.headers.append(("Access-Control-Expose-Headers", ",".join(cors.expose)))
        return response

    def _preflight(self, origin: str, headers: Mapping[str, str]) -> HttpResponse:
        cors = self.wiring.cors
        assert cors is not None
        method = headers.get("access-control-request-method", "").upper()
        if not cors.allows(origin) or (method and method not in cors.methods):
            return HttpResponse(204, [])
        out = [
            ("Access-Control-Allow-Origin", origin if "*" not in cors.origins else "*"),
            ("Access-Control-Allow-Methods", ",".join(cors.methods)),
            ("Access-Control-Allow-Headers", ",".join(cors.headers)),
        ]
        if cors.max_age is not None:
            out.append(("Access-Control-Max-Age", str(cors.max_age)))
        return HttpResponse(204, out)

    def _route(
        self, request: HttpRequest, headers: Mapping[str, str], values: dict[str, Any]
    ) -> HttpResponse:
        found = find_route(
            [served.route for served in self.wiring.routes], request.method, request.raw_path
        )
        if found is None:
            return _gateway_error(404, "Not Found")
        route, params = found
        served = next(s for s in self.wiring.routes if s.route.key == route.key)
        values["routeKey"] = route.key
        if self.bucket is not None and not self.bucket.take():
            return _gateway_error(429, "Too Many Requests")
        claims: dict[str, Any] | None = None
        if served.authorizer_id is not None:
            try:
                claims = self.verifiers[served.authorizer_id].verify(headers)
            except UnauthorizedError as refusal:
                values["authorizerError"] = str(refusal)
                return _gateway_error(401, "Unauthorized")
        event = build_event(
            request,
            route,
            params,
            api_id=self.wiring.api_id,
            account_id=self.wiring.account_id,
            stage=STAGE,
            claims=claims,
            scopes=scopes_of(claims) if claims else None,
        )
        values["requestId"] = event["requestContext"]["requestId"]
        return self._invoke(served.function_arn, event, values)

    def _invoke(
        self, function_arn: str, event: dict[str, Any], values: dict[str, Any]
    ) -> HttpResponse:
        function = self.functions[function_arn]
        context = LambdaContext(
            function_name=function.name,
            invoked_function_arn=function.arn,
            memory_limit_in_mb=str(function.memory_mb),
            log_group_name=function.log_group,
            log_stream_name="local/apiserver",
            timeout_seconds=function.timeout_seconds,
        )
        started = time.monotonic()
        with self._invoke_lock:
            try:
                result = self.handlers[function_arn](event, context)
            except Exception as error:
                # The function failed: API Gateway answers 500 and shows nothing of it.
                traceback.print_exc()
                values["integrationError"] = type(error).__name__
                return _gateway_error(500, "Internal Server Error")
            finally:
                values["integrationLatency"] = int((time.monotonic() - started) * 1000)
        values["integrationStatus"] = 200
        try:
            return to_http_response(result)
        except (TypeError, ValueError, KeyError):
            values["integrationError"] = "malformed response"
            return _gateway_error(500, "Internal Server Error")


def _gateway_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], error_body(message))


def _context_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``$context`` variable names of the access log format."""
    return {
        "requestId": values.get("requestId"),
        "requestTime": values.get("requestTime"),
        "routeKey": values.get("routeKey"),
        "status": values.get("status"),
        "responseLength": values.get("responseLength"),
        "responseLatency": values.get("responseLatency"),
        "integrationStatus": values.get("integrationStatus"),
        "integrationLatency": values.get("integrationLatency"),
        "authorizer.error": values.get("authorizerError"),
        "integrationErrorMessage": values.get("integrationError"),
    }


def make_request_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sluice-local-api"

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            request = HttpRequest(
                method=self.command,
                raw_path=path,
                raw_query=query,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            response = gateway.handle(request)
            self.send_response(response.status)
            names = {name.lower() for name, _ in response.headers}
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if "content-type" not in names and response.body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def __getattr__(self, name: str) -> Any:
            # Every method (TRACE, QUERY, ...) reaches the gateway, which answers one without
            # a route with its 404, as API Gateway does, rather than http.server's 501.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            # The access log says what happened; the default line would print paths.
            return

    return RequestHandler


# --- startup -------------------------------------------------------------------------------------


def load_functions(
    lambda_client: Any, wiring: ApiWiring, endpoint_url: str
) -> tuple[dict[str, FunctionWiring], dict[str, Handler]]:
    """Take on the integration's function environment, then import its handler (cold start).

    One process hosts one function's environment: the handler reads ``os.environ`` at
    import, as in Lambda.
    """
    from sluice.local.lambdas.worker import function_process_env, import_handler

    functions = {arn: function_wiring(lambda_client, arn) for arn in sorted(wiring.function_arns)}
    if len({f.name for f in functions.values()}) > 1:
        raise ValueError("one API server process hosts one function; this API has several")
    handlers: dict[str, Handler] = {}
    for arn, function in functions.items():
        environment = function_process_env(function, endpoint_url)
        os.environ.clear()
        os.environ.update(environment)
        handlers[arn] = import_handler(function.handler)
    return functions, handlers


def build_gateway(endpoint_url: str, api_id: str, *, say: Callable[[str], None]) -> Gateway:
    apigateway = awsenv.client("apigatewayv2", endpoint_url)
    lambda_client = awsenv.client("lambda", endpoint_url)
    logs = awsenv.client("logs", endpoint_url)
    wiring = discover_api(apigateway, api_id)
    say(wiring.describe())
    functions, handlers = load_functions(lambda_client, wiring, endpoint_url)
    jwks = fetch_jwks_from(endpoint_url)
    verifiers = {
        key: TokenVerifier(authorizer, jwks) for key, authorizer in wiring.authorizers.items()
    }
    bucket = (
        TokenBucket(wiring.burst_limit, wiring.rate_limit)
        if wiring.burst_limit is not None and wiring.rate_limit is not None
        else None
    )
    stream: CloudWatchLogStream | None = None
    if wiring.access_log_group:
        stream = CloudWatchLogStream(
            logs, wiring.access_log_group, f"local-{int(time.time())}", on_error=say
        )

    def access_log(line: str) -> None:
        print(f"access {line}", flush=True)
        if stream is not None:
            stream.append(line)
            stream.flush()

    return Gateway(
        wiring=wiring,
        handlers=handlers,
        functions=functions,
        verifiers=verifiers,
        bucket=bucket,
        access_log=access_log,
    )


def serve(endpoint_url: str, api_id: str, host: str, port: int) -> int:
    def say(message: str) -> None:
        print(message, flush=True)

    gateway = build_gateway(endpoint_url, api_id, say=say)
    server = ThreadingHTTPServer((host, port), make_request_handler(gateway))
    server.daemon_threads = True
    import signal

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    say(f"{READY_LINE} http://{host}:{server.server_address[1]}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    say("apiserver: stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sluice.local.stack.apiserver",
        allow_abbrev=False,
        description="Serve the HTTP API Terraform created in the emulator on 127.0.0.1.",
    )
    parser.add_argument(
        "--endpoint-url", required=True, help="the emulator, e.g. http://127.0.0.1:4566"
    )
    parser.add_argument("--api-id", required=True, help="the HTTP API to serve (output api_id)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    args = parser.parse_args(argv)
    try:
        return serve(args.endpoint_url, args.api_id, args.host, args.port)
    except Exception as error:
        print(f"apiserver: cannot serve the API: {error!r}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
