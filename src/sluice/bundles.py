"""Bundle formats: the request, the status and the notifications (docs/contracts.md).

The CLI (``sluice bundle``), the API (``POST``/``GET /bundles``) and the bundle handler all
read and write these documents; this module is the one place their shapes live, so a
request the CLI accepts is one the handler accepts, and a status the handler writes is one
the CLI and the API understand. Keys and the bundle-id pattern are in :mod:`sluice.keys`.

* **Request** (WORK ``requests/<id>.json``): ``labels``, ``match``, optional ``notify`` (an
  email address or an E.164 phone number) and ``name``, validated against
  ``schemas/bundle_request.schema.json`` by every writer and by the handler.
* **Status** (WORK ``bundles/<id>.json``): written by the handler while the bundle waits
  for archived images to be restored (``restoring``) and at every outcome (``ready``,
  ``empty``, ``error``: the final ones). It is also the bundle's *claim*: one invocation
  at a time works on a bundle (:func:`claim`), so a sweep and a redelivery of one request
  never both build it.
* **Notifications**: the operators' message on the environment's bundle topic (JSON, for
  machines), and the recipient's message on the request's own topic (plain text, for a
  person).

Personal data: ``notify`` and ``name`` stay in the request object. :class:`BundleRequest`
keeps them out of its ``repr`` (so no log line or traceback can show them) and out of
:meth:`BundleRequest.summary`, which is all a status or manifest ever holds; a schema error
about them names the rule, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal, cast

import fastjsonschema
from botocore.exceptions import ClientError

from sluice.events import normalize_etag
from sluice.keys import bundle_status_key
from sluice.s3io import get, get_json, is_conditional_conflict
from sluice.timestamps import parse_utc_iso, utc_iso

Match = Literal["any", "all"]
MATCH_MODES: tuple[Match, ...] = ("any", "all")

RESTORING = "restoring"
"""Waiting for archived images to be restored; the handler comes back to it."""
FINAL_STATUSES = frozenset({"ready", "empty", "error"})
STATUSES = frozenset({RESTORING, *FINAL_STATUSES})
PENDING = "pending"
"""A claim on a request that has no status yet: readers see no status (the API says
``pending`` for a request without one), only :func:`claim` reads it."""

MAX_REQUEST_BYTES = 64 * 1024
MAX_REPORTED_ERRORS = 20
MAX_ERROR_MESSAGE = 300
PERSONAL_FIELDS = ("name", "notify")

REQUEST_SCHEMA: dict[str, Any] = json.loads(
    resources.files("sluice").joinpath("schemas/bundle_request.schema.json").read_text("utf-8")
)
# Every request passes the fast yes/no check compiled here, at cold start. Only an invalid
# one pays for importing jsonschema (60-140 ms), which lists all of its problems.
_request_check = fastjsonschema.compile(REQUEST_SCHEMA, use_default=False)

_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")

Protocol = Literal["email", "sms"]


# Request ---------------------------------------------------------------------------------
class BundleRequestError(ValueError):
    """The request cannot be served as written; ``errors`` say why (codes, paths, rules)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(error["message"] for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class BundleRequest:
    """A valid request. ``notify`` and ``name`` are personal data: out of ``repr``, and out
    of :meth:`summary`, the only part a status, manifest or notification repeats."""

    labels: tuple[str, ...]
    match: Match = "any"
    notify: str | None = field(default=None, repr=False)
    name: str | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "match": self.match}

    @property
    def notify_protocol(self) -> Protocol | None:
        """How SNS reaches the recipient: ``sms`` for an E.164 number, else ``email``."""
        if self.notify is None:
            return None
        return "sms" if _PHONE.fullmatch(self.notify) else "email"


INVALID_KEY_ERROR = {
    "code": "invalid_request_key",
    "path": "$",
    "message": "request keys must look like requests/<id>.json, <id> being 1-128 of"
    " A-Z a-z 0-9 . _ - and starting with a letter or digit",
}


def refused_recipient_error(code: str) -> dict[str, str]:
    """The error of a request whose ``notify`` SNS refused: SNS's code, never the address."""
    message = f"SNS refused the notify address ({code}); check it and send the request again"
    return {"code": "notify_refused", "path": "$.notify", "message": message}


def _clip(message: str) -> str:
    return (
        message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 3] + "..."
    )


def _is_personal(json_path: str) -> bool:
    return json_path.split(".")[1:2] in ([name] for name in PERSONAL_FIELDS)


def schema_errors(
    document: Any, first: fastjsonschema.JsonSchemaValueException
) -> list[dict[str, str]]:
    """Every way an invalid request breaks the schema, by path (``first``: the fast check's)."""
    from jsonschema import Draft202012Validator

    problems = sorted(
        Draft202012Validator(REQUEST_SCHEMA).iter_errors(document), key=lambda e: e.json_path
    )
    if not problems:  # the validators disagree: the fast check's finding still says why
        path = "$" + str(first.name).removeprefix("data")
        message = path + str(first.message).removeprefix(str(first.name))
        if _is_personal(path):
            message = f"{path} does not meet the request schema"
        return [{"code": "schema", "path": path, "message": _clip(message)}]
    return [
        {
            "code": "schema",
            "path": problem.json_path,
            # jsonschema's messages quote the value ("'...' is too long"): not for these.
            "message": _clip(
                f"{problem.json_path} breaks the schema's {problem.validator} rule"
                if _is_personal(problem.json_path)
                else problem.message
            ),
        }
        for problem in problems[:MAX_REPORTED_ERRORS]
    ]


def validate_request(document: Any) -> BundleRequest:
    """A decoded request document as a :class:`BundleRequest`; raises
    :class:`BundleRequestError` when it breaks the schema."""
    try:
        _request_check(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise BundleRequestError(schema_errors(document, exc)) from None
    return BundleRequest(
        labels=tuple(document["labels"]),
        match=cast(Match, document.get("match", "any")),
        notify=document.get("notify"),
        name=document.get("name"),
    )


def parse_request(body: bytes) -> BundleRequest:
    """Decode and validate a request object's bytes; raises :class:`BundleRequestError`."""
    if len(body) > MAX_REQUEST_BYTES:
        message = f"request is larger than {MAX_REQUEST_BYTES} bytes"
        raise BundleRequestError([{"code": "too_large", "path": "$", "message": message}])
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        error = {"code": "invalid_json", "path": "$", "message": _clip(f"not JSON: {exc}")}
        raise BundleRequestError([error]) from None
    return validate_request(document)


@dataclass(frozen=True)
class RequestObject:
    body: bytes
    """At most one byte more than the limit: enough to tell it is too large."""
    etag: str
    written_at: datetime


def read_request(s3: Any, bucket: str, key: str, etag: str | None) -> RequestObject | None:
    """The request object of ETag ``etag`` (any, when None); None when superseded or gone."""
    response = get(s3, bucket, key, if_match=etag)
    if response is None:
        return None
    written_at = response.get("LastModified") or datetime.now(UTC)
    with closing(response["Body"]) as body:
        data = body.read(MAX_REQUEST_BYTES + 1)
    return RequestObject(data, normalize_etag(response.get("ETag")) or etag or "", written_at)


def request_document(
    labels: Sequence[str], match: str = "any", notify: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """The request a client writes: labels stripped and deduplicated, empty optional fields
    left out, then checked against the schema the handler checks it with."""
    cleaned = list(dict.fromkeys(label.strip() for label in labels))
    document: dict[str, Any] = {"labels": cleaned, "match": match}
    if notify and notify.strip():
        document["notify"] = notify.strip()
    if name:
        document["name"] = name
    validate_request(document)
    return document


# Status ----------------------------------------------------------------------------------
def new_status(
    bundle_id: str, *, request_key: str, request_etag: str, created_at: str
) -> dict[str, Any]:
    """A status with every field present (an unknown value is null, never missing)."""
    return {
        "bundle_id": bundle_id,
        "status": "error",
        "labels": [],
        "match": None,
        "image_count": 0,
        "bytes": 0,
        "zip_key": None,
        "manifest": None,
        "url": None,
        "expires_at": None,
        "missing": [],
        "errors": [],
        "restore": None,
        "notification": None,
        "lease": None,
        "status_key": bundle_status_key(bundle_id),
        "request_key": request_key,
        "request_etag": request_etag,
        "created_at": created_at,
    }


def read_status(s3: Any, bucket: str, bundle_id: str) -> dict[str, Any] | None:
    """``bundles/<id>.json`` as written, or None when there is none (or it is unreadable:
    being replaced, a reader waits and the handler rebuilds; or a claim, :data:`PENDING`)."""
    status, _ = get_json(s3, bucket, bundle_status_key(bundle_id))
    return status if status is not None and status.get("status") in STATUSES else None


def answers(status: Mapping[str, Any], request_etag: str | None) -> bool:
    """Whether ``status`` is the outcome of the request with ``request_etag``: a status left
    by an earlier request under the same id is not (None: any request's will do)."""
    answered = str(status.get("request_etag") or "").strip('"')
    return not (answered and request_etag and answered != request_etag.strip('"'))


def _put_status(s3: Any, status: Mapping[str, Any], bucket: str, **condition: str) -> str:
    response = s3.put_object(
        Bucket=bucket,
        Key=status["status_key"],
        Body=json.dumps(status, ensure_ascii=False, indent=2).encode("utf-8"),
        ContentType="application/json",
        **condition,
    )
    return str(response["ETag"])


# Claim -----------------------------------------------------------------------------------
class BundleBusyError(RuntimeError):
    """Another invocation works on this bundle; the message is retried later (by then it
    has its outcome, or the other invocation's claim has lapsed)."""


class ClaimLostError(RuntimeError):
    """The status object changed under a claim (which had lapsed): nothing is written."""


@dataclass(frozen=True)
class Claim:
    """An invocation's hold on ``bundles/<id>.json``: every later write is conditional on
    ``etag``, so a write after the claim was taken over fails instead of overwriting."""

    etag: str
    document: Mapping[str, Any]


def claim(
    s3: Any, bucket: str, fresh: Mapping[str, Any], *, owner: str, now: datetime, until: datetime
) -> Claim | None:
    """Hold the bundle that ``fresh`` (a :func:`new_status`) describes until ``until``.

    None when its request already has an outcome (a duplicate delivery: nothing to do).
    Raises :class:`BundleBusyError` while another owner's claim runs, or when another
    invocation claimed it between the read and the write: the claim is a conditional
    write (``IfNoneMatch``/``IfMatch`` the version read), so of two exactly one wins. A
    ``restoring`` status keeps its contents while claimed; otherwise the claim is a
    :data:`PENDING` status. A claim lapses at ``until`` (the invocation's deadline plus a
    margin), so one left by a killed invocation stops nobody for long.
    """
    stored, etag = get_json(s3, bucket, fresh["status_key"])
    held = stored or {}
    same_request = held.get("request_etag") == fresh["request_etag"]
    if same_request and held.get("status") in FINAL_STATUSES:
        return None
    lease = held.get("lease") or {}
    if lease.get("owner") != owner and (parse_utc_iso(lease.get("until")) or now) > now:
        raise BundleBusyError("another invocation is working on this bundle")
    keep = same_request and held.get("status") == RESTORING
    base = held if keep else {**fresh, "status": PENDING}
    document = {**base, "lease": {"owner": owner, "until": utc_iso(until)}}
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        etag = _put_status(s3, document, bucket, **condition)
    except ClientError as error:
        if is_conditional_conflict(error):
            raise BundleBusyError("another invocation claimed this bundle first") from None
        raise
    return Claim(etag, document)


def write_status(s3: Any, bucket: str, status: Mapping[str, Any], held: Claim) -> None:
    """Write ``status`` in place of the claim ``held``, only if nobody took the bundle over
    meanwhile (else :class:`ClaimLostError`); the status written holds no claim."""
    try:
        _put_status(s3, {**status, "lease": None}, bucket, IfMatch=held.etag)
    except ClientError as error:
        if is_conditional_conflict(error):
            raise ClaimLostError("the bundle was taken over; its status is not ours") from None
        raise


def release(s3: Any, bucket: str, held: Claim) -> None:
    """Give the claim up without an outcome (a failed run), so a retry need not wait."""
    write_status(s3, bucket, held.document, held)


# Notifications ---------------------------------------------------------------------------
NOTIFICATION_FIELDS = (
    "bundle_id",
    "status",
    "image_count",
    "bytes",
    "url",
    "expires_at",
    "zip_key",
    "status_key",
    "errors",
)


def operator_notification(status: Mapping[str, Any]) -> dict[str, Any]:
    """``sns.publish`` arguments (less ``TopicArn``) for the environment's bundle topic:
    JSON for machines, one ``status`` attribute to filter subscriptions on."""
    message = {name: status.get(name) for name in NOTIFICATION_FIELDS}
    return {
        "Subject": f"sluice bundle {status['status']}: {status['bundle_id']}"[:100],
        "Message": json.dumps(message, ensure_ascii=False),
        "MessageAttributes": {
            "status": {"DataType": "String", "StringValue": str(status["status"])}
        },
    }


def recipient_notification(status: Mapping[str, Any]) -> dict[str, Any]:
    """``sns.publish`` arguments for the request's own topic: plain text a person reads in
    an email or a text message (SMS ignores the subject)."""
    state = status["status"]
    bundle_id = status["bundle_id"]
    if state == "ready":
        text = (
            f"Your sluice bundle {bundle_id} is ready: {status.get('image_count')} image(s)."
            f"\n\nDownload it (the link works until {status.get('expires_at')}):"
            f"\n{status.get('url')}"
        )
    elif state == "empty":
        text = f"Your sluice bundle {bundle_id} is empty: no archived image has those labels."
    else:
        reasons = _lines(error.get("message", "") for error in status.get("errors") or [])
        text = f"Your sluice bundle {bundle_id} could not be made.{reasons}"
    return {"Subject": f"Your sluice bundle is {state}"[:100], "Message": text}


def outcome_message(
    s3: Any, bucket: str, bundle_id: str, request_etag: str
) -> dict[str, Any] | None:
    """The recipient's message once the request with ``request_etag`` has its outcome (what
    :func:`sluice.request_topics.sweep` delivers), else None."""
    status = read_status(s3, bucket, bundle_id) if bundle_id else None
    if status is None or status["status"] not in FINAL_STATUSES:
        return None
    return recipient_notification(status) if answers(status, request_etag) else None


def _lines(messages: Iterable[str]) -> str:
    listed = [message for message in messages if message]
    return "".join(f"\n- {message}" for message in listed)
