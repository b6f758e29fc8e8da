"""The web app's hosted-UI sign-in (AWS's `sign_in = "hosted_ui"`) in a real browser.

In AWS the app signs in through the Cognito hosted UI: the OAuth 2.0 authorization-code
flow with PKCE (RFC 6749, RFC 7636 S256). No emulator serves a hosted UI (moto implements
the user pool's JSON API only, and LocalStack's community edition no Cognito at all), so
the local stack signs in with a password form and the journey in test_web_e2e.py never
takes this path. This module drives it against :class:`AuthorizationServer`, a strict
authorization server on its own origin that enforces what Cognito's ``/oauth2/authorize``,
``/oauth2/token`` and ``/logout`` endpoints require of a public client:

- ``response_type=code``, the app's ``client_id``, a ``redirect_uri`` equal to the app's
  origin, ``code_challenge_method=S256`` and a ``state``;
- at the token endpoint, a code used once, by the client it was issued to, with the same
  ``redirect_uri``, and ``BASE64URL(SHA256(code_verifier)) == code_challenge``;
- CORS for the app's origin only (the token endpoint is called by ``fetch``).

The app is served from web/ with the Content-Security-Policy shape of modules/web
(``connect-src`` names the authorization server's origin, as modules/pipeline does for the
hosted UI's domain), so a sign-in that the policy would block fails here too. The API
answers from the app's origin and checks the bearer token it was given.

Every wait is Playwright's ``expect`` (or a polled condition) with a deadline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import ROOT
from tests.e2e.test_web_e2e import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

WEB = ROOT / "web"
CLIENT_ID = "hosted-ui-client"
EMAIL = "hosted@sluice.local"
PAGE_MS = 30_000
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def id_token(email: str, groups: list[str], lifetime_seconds: int, serial: int) -> str:
    """A JWT the app can read (it decodes, never verifies: the API does that)."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = {
        "sub": f"user-{email}",
        "email": email,
        "cognito:groups": groups,
        "exp": int(time.time()) + lifetime_seconds,
        "serial": serial,
    }
    return f"{header}.{_b64url(json.dumps(claims).encode())}.sig"


@dataclass
class AuthorizationServer:
    """What the test's authorization server saw and how it answers."""

    app_origin: str
    token_lifetime_seconds: int = 3600
    refuse_refresh: bool = False
    challenges: dict[str, dict[str, str]] = field(default_factory=dict)
    """Issued, unused codes: code -> the authorize request's parameters."""
    token_requests: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Why each refused request was refused (a well-behaved app causes none)."""
    issued: list[str] = field(default_factory=list)
    logouts: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        problems = [
            name
            for name, ok in (
                ("response_type", query.get("response_type") == "code"),
                ("client_id", query.get("client_id") == CLIENT_ID),
                ("redirect_uri", query.get("redirect_uri") == f"{self.app_origin}/"),
                ("code_challenge_method", query.get("code_challenge_method") == "S256"),
                ("code_challenge", len(query.get("code_challenge", "")) == 43),
                ("state", bool(query.get("state"))),
            )
            if not ok
        ]
        if problems:
            self.refused.append(f"authorize: {problems}")
            return 400, {}
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.challenges[code] = query
        # The user signs in on the hosted page; it sends the browser back with the code.
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return 302, {"Location": target}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.token_requests.append(form)
            grant = form.get("grant_type")
            if grant == "authorization_code":
                request = self.challenges.pop(form.get("code", ""), None)  # used once
                verifier = form.get("code_verifier", "")
                challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
                if (
                    request is None
                    or form.get("client_id") != request["client_id"]
                    or form.get("redirect_uri") != request["redirect_uri"]
                    or challenge != request["code_challenge"]
                ):
                    self.refused.append("token: invalid_grant")
                    return 400, {"error": "invalid_grant"}
                return 200, self._tokens(refresh=True)
            if grant == "refresh_token" and form.get("client_id") == CLIENT_ID:
                if self.refuse_refresh or form.get("refresh_token") != "refresh-1":
                    return 400, {"error": "invalid_grant"}
                return 200, self._tokens(refresh=False)  # Cognito keeps the refresh token
            self.refused.append(f"token: {grant}")
            return 400, {"error": "unsupported_grant_type"}

    def _tokens(self, *, refresh: bool) -> dict[str, Any]:
        token = id_token(EMAIL, ["admin"], self.token_lifetime_seconds, len(self.issued) + 1)
        self.issued.append(token)
        tokens: dict[str, Any] = {
            "id_token": token,
            "access_token": f"access-{len(self.issued)}",
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_seconds,
        }
        if refresh:
            tokens["refresh_token"] = "refresh-1"
        return tokens

    def refresh_count(self) -> int:
        with self.lock:
            return sum(1 for form in self.token_requests if form["grant_type"] == "refresh_token")


@dataclass
class Servers:
    app_url: str
    auth: AuthorizationServer
    api_calls: list[str]
    """The bearer token of each API call."""


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def servers() -> Iterator[Servers]:
    holder: dict[str, Any] = {}
    api_calls: list[str] = []

    class AuthHandler(_Quiet):
        def cors(self) -> dict[str, str]:
            origin = self.headers.get("Origin")
            return {"Access-Control-Allow-Origin": origin} if origin == auth.app_origin else {}

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/oauth2/authorize":
                status, headers = auth.authorize(query)
                self.reply(status, b"", headers)
            elif parts.path == "/logout" and query.get("client_id") == CLIENT_ID:
                auth.logouts.append(query)
                self.reply(302, b"", {"Location": query.get("logout_uri", "/")})
            else:
                self.reply(404, b"", {})

        def do_OPTIONS(self) -> None:
            headers = self.cors()
            if headers:
                headers |= {
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": "Content-Type",
                }
            self.reply(204, b"", headers)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != "/oauth2/token":
                self.reply(404, b"", {})
                return
            status, body = auth.token(form)
            headers = {"Content-Type": "application/json", **self.cors()}
            self.reply(status, json.dumps(body).encode(), headers)

    auth_server, auth_origin = _serve(AuthHandler)

    class AppHandler(_Quiet):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/api/"):
                self.api(path.removeprefix("/api"))
                return
            if path == "/config.json":
                body = json.dumps(holder["config"]).encode()
                self.reply(200, body, {"Content-Type": "application/json", **self.security()})
                return
            file = WEB / ("index.html" if path == "/" else path.lstrip("/"))
            if ".." in path or not file.is_file():
                self.reply(404, b"", {})
                return
            content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
            self.reply(200, file.read_bytes(), {"Content-Type": content_type, **self.security()})

        def security(self) -> dict[str, str]:
            """modules/web's policy, with the hosted UI's origin in connect-src."""
            csp = "; ".join(
                [
                    "default-src 'none'",
                    "script-src 'self'",
                    "style-src 'self'",
                    "img-src 'self' data:",
                    f"connect-src 'self' {auth_origin}",
                    "base-uri 'none'",
                    "form-action 'self'",
                    "frame-ancestors 'none'",
                    "object-src 'none'",
                ]
            )
            return {"Content-Security-Policy": csp, "Cache-Control": "no-cache"}

        def api(self, route: str) -> None:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            api_calls.append(token)
            if token not in auth.issued:
                self.reply(
                    401, b'{"message": "Unauthorized"}', {"Content-Type": "application/json"}
                )
                return
            bodies = {"/labels": {"labels": []}, "/images": {"images": [], "next_cursor": None}}
            body = json.dumps(bodies.get(route, {})).encode()
            self.reply(200, body, {"Content-Type": "application/json"})

    app_server, app_origin = _serve(AppHandler)
    auth = AuthorizationServer(app_origin=app_origin)
    holder["config"] = {
        "api_url": f"{app_origin}/api",
        "region": "us-east-1",
        "user_pool_id": "us-east-1_hostedui",
        "client_id": CLIENT_ID,
        "sign_in": "hosted_ui",
        "auth_domain": auth_origin,
    }
    yield Servers(app_url=f"{app_origin}/", auth=auth, api_calls=api_calls)
    for server in (app_server, auth_server):
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium page; console errors fail the test at the end."""
    assert Path(CHROMIUM).exists(), "no /usr/bin/chromium: run scripts/browser.sh"
    errors: list[str] = []
    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        opened = context.pages[0] if context.pages else context.new_page()
        opened.set_default_timeout(PAGE_MS)
        opened.on("pageerror", lambda error: errors.append(str(error)))
        yield opened
        context.close()
    assert errors == [], f"errors in the page: {errors}"


def session_storage(page: Any) -> dict[str, Any]:
    stored: dict[str, Any] = page.evaluate("() => ({...sessionStorage})")
    return stored


def poll(condition: Callable[[], bool], what: str, deadline_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def sign_in(page: Any, servers: Servers) -> None:
    page.goto(servers.app_url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who-name")).to_have_text(f"{EMAIL} (admin)")


def test_sign_in_is_the_authorization_code_flow_with_pkce(page: Any, servers: Servers) -> None:
    sign_in(page, servers)

    [exchange] = servers.auth.token_requests
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == servers.app_url
    assert 43 <= len(exchange["code_verifier"]) <= 128  # RFC 7636, section 4.1
    assert servers.auth.refused == []
    # The code and state leave the address bar; the verifier leaves the tab's storage.
    assert "code=" not in page.url and page.url.endswith("#/upload")
    stored = session_storage(page)
    assert "sluice.pkce" not in stored
    assert json.loads(stored["sluice.tokens"])["id_token"] == servers.auth.issued[0]

    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Library").click()
    expect(page.get_by_role("heading", level=1, name="Library")).to_be_visible()
    poll(lambda: len(servers.api_calls) >= 2, "the library's API calls")
    assert set(servers.api_calls) == {servers.auth.issued[0]}  # the id token, as bearer


def test_an_answer_that_does_not_match_the_tabs_request_is_refused(
    page: Any, servers: Servers
) -> None:
    """A code injected into the redirect (login CSRF) is never exchanged."""
    page.goto(f"{servers.app_url}?code=stolen&state=forged")
    expect(page.get_by_role("note")).to_contain_text("does not match this tab's request")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert servers.auth.token_requests == []
    assert "sluice.tokens" not in session_storage(page)


def test_tokens_are_refreshed_before_they_expire(page: Any, servers: Servers) -> None:
    servers.auth.token_lifetime_seconds = 61  # refreshed a minute early: in about a second
    sign_in(page, servers)
    servers.auth.token_lifetime_seconds = 3600

    poll(lambda: servers.auth.refresh_count() >= 1, "a refresh")
    poll(
        lambda: (
            json.loads(session_storage(page)["sluice.tokens"])["id_token"]
            == servers.auth.issued[-1]
        ),
        "the refreshed token in the tab",
    )
    assert json.loads(session_storage(page)["sluice.tokens"])["refresh_token"] == "refresh-1"
    expect(page.locator("#who-name")).to_have_text(f"{EMAIL} (admin)")


def test_a_refused_refresh_signs_the_user_out(page: Any, servers: Servers) -> None:
    servers.auth.token_lifetime_seconds = 61
    servers.auth.refuse_refresh = True
    sign_in(page, servers)

    expect(page.get_by_role("note")).to_contain_text("Your session expired")
    expect(page.locator("#who")).to_be_hidden()
    assert "sluice.tokens" not in session_storage(page)


def test_sign_out_ends_the_hosted_ui_session_too(page: Any, servers: Servers) -> None:
    sign_in(page, servers)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    [logout] = servers.auth.logouts
    assert logout == {"client_id": CLIENT_ID, "logout_uri": servers.app_url}
    expect(page.locator("#who")).to_be_hidden()
    assert "sluice.tokens" not in session_storage(page)
