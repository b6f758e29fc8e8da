"""The local web server's replies (sluice.local.stack.webserver.answer), against a stubbed S3.

It stands in for CloudFront: what it answers for a missing key and for an origin that
fails are different things to a developer (a typo in a path, or an emulator that is down).
"""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from sluice.local.stack.webserver import Distribution, answer

DISTRIBUTION = Distribution("E1", "web-bucket", "index.html")
HEADERS = {"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff"}


def s3_client() -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def reply_to(s3: Any, path: str = "/", method: str = "GET", etag: str | None = None) -> Any:
    return answer(s3, DISTRIBUTION, HEADERS, method, path, etag)


def stubbed_get(key: str, **response: Any) -> tuple[Any, Stubber]:
    s3 = s3_client()
    stubber = Stubber(s3)
    body = b"<html></html>"
    stubber.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ETag": '"abc"', **response},
        {"Bucket": "web-bucket", "Key": key},
    )
    return s3, stubber


def test_the_root_is_the_default_object_with_its_type_and_the_security_headers() -> None:
    s3, stubber = stubbed_get("index.html", ContentType="text/html", CacheControl="no-cache")
    with stubber:
        reply = reply_to(s3, "/")
    assert reply.status == 200 and reply.body == b"<html></html>"
    headers = dict(reply.headers)
    assert headers["Content-Type"] == "text/html" and headers["Cache-Control"] == "no-cache"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["ETag"] == '"abc"'


def test_a_matching_etag_is_not_modified() -> None:
    s3, stubber = stubbed_get("app.js", ContentType="text/javascript")
    with stubber:
        reply = reply_to(s3, "/app.js", etag='"abc"')
    assert reply.status == 304 and reply.body == b""


def test_only_get_and_head_are_served() -> None:
    reply = reply_to(s3_client(), "/", method="POST")
    assert reply.status == 405 and ("Allow", "GET, HEAD") in reply.headers


def test_a_missing_key_is_404_with_the_security_headers() -> None:
    s3 = s3_client()
    stubber = Stubber(s3)
    stubber.add_client_error("get_object", "NoSuchKey", http_status_code=404)
    with stubber:
        reply = reply_to(s3, "/missing.js")
    assert reply.status == 404
    assert dict(reply.headers)["Content-Security-Policy"] == "default-src 'self'"


@pytest.mark.parametrize(
    ("code", "status"), [("AccessDenied", 403), ("InternalError", 500), ("SlowDown", 503)]
)
def test_an_origin_that_fails_otherwise_is_502_not_a_missing_file(code: str, status: int) -> None:
    s3 = s3_client()
    stubber = Stubber(s3)
    stubber.add_client_error("get_object", code, http_status_code=status)
    with stubber:
        reply = reply_to(s3, "/app.js")
    assert reply.status == 502 and code.encode() in reply.body


def test_an_emulator_that_cannot_be_reached_is_502() -> None:
    class Unreachable:
        def get_object(self, **_: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    reply = reply_to(Unreachable(), "/app.js")
    assert reply.status == 502
