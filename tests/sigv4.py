"""How S3 judges a presigned URL (SigV4 query authentication), for tests.

Neither moto's in-process mock nor its server checks presigned signatures or expiry, so a
test that only sent requests to moto would prove nothing about them. This recomputes the
signature exactly as S3 does ("Authenticating Requests: Using Query Parameters (AWS
Signature Version 4)") from the request a client actually makes: method, path, query,
and the headers the URL names in ``X-Amz-SignedHeaders``. S3 refuses the request when
the signatures differ or the URL has expired.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def accepts(
    url: str,
    *,
    method: str,
    headers: Mapping[str, str],
    secret_key: str,
    now: datetime,
) -> bool:
    """Whether S3 would accept ``method url`` with ``headers`` at ``now``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    signature = params.pop("X-Amz-Signature", "")
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if now > signed_at + timedelta(seconds=int(params["X-Amz-Expires"])):
        return False
    given = {name.lower(): str(value).strip() for name, value in headers.items()}
    given.setdefault("host", parts.netloc)
    signed_names = params["X-Amz-SignedHeaders"].split(";")
    if any(name not in given for name in signed_names):
        return False
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted((k, v) for k, v in query if k != "X-Amz-Signature")
    )
    canonical = "\n".join(
        [
            method.upper(),
            quote(parts.path, safe="/-_.~%"),
            canonical_query,
            "".join(f"{name}:{given[name]}\n" for name in signed_names),
            params["X-Amz-SignedHeaders"],
            "UNSIGNED-PAYLOAD",
        ]
    )
    _, date, region, service, terminator = params["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/{terminator}"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    for part in (region, service, terminator):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
