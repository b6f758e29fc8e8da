"""The local web server: plays the web app's CloudFront distribution on 127.0.0.1.

moto stores the distribution Terraform created (its S3 origin and default root object) but
serves none of it. This server reads both back from the emulator (decision 7: never
restated) and serves the origin bucket's objects, the very files and ``config.json`` that
Terraform uploaded, as CloudFront would:

- ``GET``/``HEAD`` only; ``/`` is the default root object; an object's ``Content-Type`` and
  ``Cache-Control`` are the ones stored with it; ``If-None-Match`` gets a 304;
- every response carries the security headers of the environment's Terraform output
  ``web_response_headers`` (the values of the response headers policy in AWS: CSP, HSTS,
  ``nosniff``...), so the browser tests run under the real Content-Security-Policy;
- a key that does not exist is 404 (CloudFront with origin access control answers S3's
  403 there; a 404 says more to a developer and no test depends on it); any other failure
  to read the origin is 502, as CloudFront answers an origin error, so an emulator that is
  down or a denied read never passes for a missing file.

Usage::

    python -m sluice.local.stack.webserver --endpoint-url http://127.0.0.1:4566 \\
        --distribution-id <id> --headers-file headers.json --port 4568
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

from sluice.local import awsenv
from sluice.s3io import error_code, get

DEFAULT_WEB_PORT_OFFSET = 2
"""Without ``--web-port`` the app is served on the emulator's port + 2 (4566 -> 4568)."""
READY_LINE = "webserver: serving"
_S3_ORIGIN_MARKER = ".s3."


@dataclass(frozen=True)
class Distribution:
    """What serving the app needs of the distribution: its bucket and default root object."""

    distribution_id: str
    bucket: str
    default_root_object: str


def bucket_of_origin(domain_name: str) -> str:
    """``<bucket>.s3.<region>.amazonaws.com`` (or ``<bucket>.s3.amazonaws.com``) -> bucket."""
    if _S3_ORIGIN_MARKER not in domain_name:
        raise ValueError(f"origin {domain_name!r} is not an S3 bucket")
    return domain_name.split(_S3_ORIGIN_MARKER, 1)[0]


def discover_distribution(cloudfront: Any, distribution_id: str) -> Distribution:
    config = cloudfront.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    default_origin = config["DefaultCacheBehavior"]["TargetOriginId"]
    origin = next(o for o in config["Origins"]["Items"] if o["Id"] == default_origin)
    return Distribution(
        distribution_id=distribution_id,
        bucket=bucket_of_origin(str(origin["DomainName"])),
        default_root_object=str(config.get("DefaultRootObject") or "index.html"),
    )


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def object_key(path: str, default_root_object: str) -> str:
    """The bucket key a request path names (``/`` is the default root object)."""
    key = unquote(path.split("?", 1)[0].split("#", 1)[0]).lstrip("/")
    return key or default_root_object


def answer(
    s3: Any,
    distribution: Distribution,
    security_headers: Mapping[str, str],
    method: str,
    path: str,
    if_none_match: str | None,
) -> Reply:
    """One request's reply: the object, a 304, or an error, always with the security headers."""
    headers = list(security_headers.items())
    if method not in ("GET", "HEAD"):
        return Reply(405, [*headers, ("Allow", "GET, HEAD")], b"")
    key = object_key(path, distribution.default_root_object)
    text = ("Content-Type", "text/plain; charset=utf-8")
    try:
        found = get(s3, distribution.bucket, key)
    except ClientError as error:
        return Reply(502, [*headers, text], f"Bad Gateway: {error_code(error)}".encode())
    except BotoCoreError as error:  # the emulator cannot be reached
        return Reply(502, [*headers, text], f"Bad Gateway: {type(error).__name__}".encode())
    if found is None:
        return Reply(404, [*headers, text], b"Not Found")
    etag = str(found.get("ETag", ""))
    headers += [("ETag", etag), ("Content-Type", str(found.get("ContentType", "")))]
    if found.get("CacheControl"):
        headers.append(("Cache-Control", str(found["CacheControl"])))
    if if_none_match and etag and if_none_match == etag:
        found["Body"].close()
        return Reply(304, headers, b"")
    return Reply(200, headers, found["Body"].read())


def make_request_handler(
    s3: Any, distribution: Distribution, security_headers: Mapping[str, str]
) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sluice-local-web"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > 0:
                self.rfile.read(length)
            reply = answer(
                s3,
                distribution,
                security_headers,
                self.command,
                self.path,
                self.headers.get("If-None-Match"),
            )
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"access {self.command} {self.path.split('?', 1)[0]} {args[1:2]}", flush=True)

    return RequestHandler


def serve(endpoint_url: str, distribution_id: str, headers_file: Path, host: str, port: int) -> int:
    cloudfront = awsenv.client("cloudfront", endpoint_url)
    s3 = awsenv.client("s3", endpoint_url)
    distribution = discover_distribution(cloudfront, distribution_id)
    security_headers = json.loads(headers_file.read_text())
    if not isinstance(security_headers, dict):
        raise ValueError(f"{headers_file}: expected an object of header names to values")
    print(
        f"distribution {distribution.distribution_id}: s3://{distribution.bucket},"
        f" root object {distribution.default_root_object},"
        f" {len(security_headers)} security headers",
        flush=True,
    )
    server = ThreadingHTTPServer(
        (host, port), make_request_handler(s3, distribution, security_headers)
    )
    server.daemon_threads = True

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"{READY_LINE} http://{host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    print("webserver: stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sluice.local.stack.webserver",
        allow_abbrev=False,
        description="Serve the web app's distribution, as Terraform created it in the emulator.",
    )
    parser.add_argument("--endpoint-url", required=True, help="the emulator")
    parser.add_argument(
        "--distribution-id", required=True, help="the app's distribution (web_distribution_id)"
    )
    parser.add_argument(
        "--headers-file",
        type=Path,
        required=True,
        help="JSON object of the security headers (the web_response_headers output)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    args = parser.parse_args(argv)
    try:
        return serve(
            args.endpoint_url, args.distribution_id, args.headers_file, args.host, args.port
        )
    except Exception as error:
        print(f"webserver: cannot serve the app: {error!r}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
