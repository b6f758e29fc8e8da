"""Uploads through the API: where a file goes, what may be sent, and the signed ways to send it.

The API never moves file bytes (decision 10). A client asks for an upload and gets one of:

* a presigned ``PUT`` URL bound to the key, the content type and the size (SigV4 signs the
  ``Content-Type`` and ``Content-Length`` headers, so another type or size is refused);
* a multipart upload with a presigned URL per part (large files, browsers);
* temporary credentials of the upload role, assumed with a session policy that allows
  writing exactly that one key (SDKs and ``aws s3 cp``): the effective permissions are
  the intersection of the role's policy and the session policy.

The server chooses the key, so no client-chosen path can traverse anywhere:
``[<dataset prefix>]uploads/<user sub>/<YYYY-MM-DD>/<uuid4>-<sanitised filename>``. Data
files go under their dataset's prefix, from the environment's dataset registry
(:func:`sluice.datasets.env_datasets`), so the transform accepts them;
images need no prefix. The api function gets the same ``DATASETS`` variable as the
transform (modules/pipeline), so both read one configuration. The user's ``sub`` (an
opaque id, not a name or address) makes the key the caller's: multipart completion and
receipts are only served to the key's owner.

What may be sent follows what the transform processes: the image extensions of
:data:`sluice.file_formats.INPUT_FORMATS` and the data extensions of
:data:`sluice.file_formats.DATA_FORMATS`, each with the media types that name it; the file
name's extension must agree with the content type, since the transform goes by extension.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sluice.datasets import Registry
from sluice.file_formats import DATA_FORMATS, INPUT_FORMATS
from sluice.keys import UPLOADS_SEGMENT, split_extension
from sluice.s3io import MAX_PARTS, error_code
from sluice.timestamps import utc_iso
from sluice.units import GIB, MIB

MAX_SINGLE_PUT_BYTES = 5 * GIB
"""S3's limit for one PUT; larger files need a multipart upload."""
MIN_MULTIPART_PART_BYTES = 8 * MIB
MAX_NAME_CHARS = 100
UPLOAD_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")
"""What one-key credentials may do: write the key, in one PUT or in parts, or give up."""

_IMAGE_MEDIA_TYPES = {
    "JPEG": ("image/jpeg",),
    "PNG": ("image/png",),
    "WEBP": ("image/webp",),
    "GIF": ("image/gif",),
    "TIFF": ("image/tiff",),
}
_DATA_MEDIA_TYPES = {
    "array": ("application/json",),
    "lines": ("application/x-ndjson", "application/jsonl"),
}
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

Kind = Literal["image", "data"]


def _media_types() -> dict[str, tuple[Kind, frozenset[str]]]:
    """Media type -> (kind, the extensions it may carry)."""
    table: dict[str, tuple[Kind, set[str]]] = {}
    for extension, image_format in INPUT_FORMATS.items():
        for media_type in _IMAGE_MEDIA_TYPES[image_format]:
            table.setdefault(media_type, ("image", set()))[1].add(extension)
    for extension, record_format in DATA_FORMATS.items():
        for media_type in _DATA_MEDIA_TYPES[record_format]:
            table.setdefault(media_type, ("data", set()))[1].add(extension)
    return {media: (kind, frozenset(exts)) for media, (kind, exts) in table.items()}


MEDIA_TYPES = _media_types()


class UploadError(ValueError):
    """An upload request the API refuses; ``status`` and ``code`` go into the response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UploadRequest:
    filename: str
    content_type: str
    size: int
    dataset: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UploadRequest:
        """From a body already valid against ``schemas/upload_request.schema.json``."""
        return cls(
            filename=str(body["filename"]),
            content_type=str(body["content_type"]),
            size=int(body["size"]),
            dataset=body.get("dataset"),
        )


@dataclass(frozen=True)
class PlannedUpload:
    key: str
    content_type: str
    size: int
    kind: Kind


def sanitise_filename(filename: str) -> str:
    """A readable, key-safe name: the last path component, ASCII letters, digits, ``._-``.

    ``../../etc/passwd`` becomes ``passwd``, ``Été 2024.JPG`` becomes ``Ete-2024.JPG``;
    the stem is cut to 100 characters and the extension kept.
    """
    name = re.split(r"[/\\]", filename)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE_NAME_CHARS.sub("-", name)
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    extension = extension.strip("-")
    stem = re.sub(r"-{2,}", "-", stem).strip(".-")[:MAX_NAME_CHARS].strip(".-") or "file"
    return f"{stem}.{extension}" if extension else stem


def upload_key(prefix: str, user: str, filename: str, *, now: datetime, unique: str) -> str:
    """``<prefix>uploads/<user>/<date>/<unique>-<name>`` (``prefix`` empty or ending in /)."""
    return (
        f"{prefix}{UPLOADS_SEGMENT}{user}/{now.astimezone(UTC):%Y-%m-%d}/"
        f"{unique}-{sanitise_filename(filename)}"
    )


def key_owner(key: str) -> str | None:
    """The user an API upload key belongs to, or None for a key the API did not make."""
    parts = key.split("/")
    for index, part in enumerate(parts[:-3]):
        if part + "/" == UPLOADS_SEGMENT:
            owner = parts[index + 1]
            return owner or None
    return None


def plan_upload(
    request: UploadRequest,
    *,
    user: str,
    registry: Registry,
    max_bytes: int,
    now: datetime,
    unique: str | None = None,
    max_data_bytes: int | None = None,
) -> PlannedUpload:
    """Check the request against what the pipeline processes; the key it will have.

    ``max_data_bytes`` is the transform's own limit for data files (``MAX_DATA_BYTES``):
    a larger one would only be rejected unread, so it is refused here already.
    """
    media_type = request.content_type.split(";")[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        known = ", ".join(sorted(MEDIA_TYPES))
        raise UploadError(415, "unsupported_media_type", f"content_type must be one of: {known}")
    kind, extensions = MEDIA_TYPES[media_type]
    _, extension = split_extension(sanitise_filename(request.filename))
    if extension not in extensions:
        raise UploadError(
            422,
            "extension_mismatch",
            f"a {media_type} file's name must end in {' or '.join(sorted(extensions))}",
        )
    limit = max_bytes
    if kind == "data" and max_data_bytes is not None:
        limit = min(limit, max_data_bytes)
    if request.size > limit:
        raise UploadError(
            413, "too_large", f"{kind} files larger than {limit} bytes are not accepted here"
        )
    prefix = _prefix_for(kind, request.dataset, registry)
    key = upload_key(prefix, user, request.filename, now=now, unique=unique or uuid.uuid4().hex)
    return PlannedUpload(key=key, content_type=media_type, size=request.size, kind=kind)


def _prefix_for(kind: Kind, dataset: str | None, registry: Registry) -> str:
    if kind == "image":
        if dataset is not None:
            raise UploadError(422, "dataset_not_allowed", "images belong to no dataset")
        return ""
    names = {d.name: d.prefix for d in registry.datasets}
    if dataset is None:
        known = ", ".join(sorted(names))
        raise UploadError(422, "dataset_required", f"data files need a dataset, one of: {known}")
    if dataset not in names:
        raise UploadError(
            422, "unknown_dataset", f"dataset must be one of: {', '.join(sorted(names))}"
        )
    return names[dataset]


def _expires_at(now: datetime, ttl_seconds: int) -> str:
    return utc_iso(now + timedelta(seconds=ttl_seconds))


# --- presigned PUT -------------------------------------------------------------------------


def presigned_put(
    s3: Any, bucket: str, upload: PlannedUpload, *, ttl_seconds: int, now: datetime
) -> dict[str, Any]:
    """A PUT URL for exactly this key, content type and size, valid ``ttl_seconds``."""
    if upload.size > MAX_SINGLE_PUT_BYTES:
        raise UploadError(
            413,
            "too_large",
            f"one PUT takes at most {MAX_SINGLE_PUT_BYTES} bytes: use a"
            " multipart upload (POST /uploads/multipart)",
        )
    url = s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": bucket,
            "Key": upload.key,
            "ContentType": upload.content_type,
            "ContentLength": upload.size,
        },
        ExpiresIn=ttl_seconds,
        HttpMethod="PUT",
    )
    return {
        "key": upload.key,
        "url": url,
        "method": "PUT",
        "headers": {"Content-Type": upload.content_type},
        "expires_at": _expires_at(now, ttl_seconds),
    }


# --- multipart ------------------------------------------------------------------------------


def part_size_for(size: int) -> int:
    """Whole MiB, at least 8 MiB, and large enough for at most 10,000 parts."""
    smallest = math.ceil(size / MAX_PARTS)
    return max(MIN_MULTIPART_PART_BYTES, math.ceil(smallest / MIB) * MIB)


def encode_upload_id(key: str, upload_id: str) -> str:
    raw = json.dumps({"k": key, "u": upload_id}, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_upload_id(token: str, user: str) -> tuple[str, str]:
    """(key, S3 upload id) of a token :func:`encode_upload_id` made for ``user``'s key.

    Anything else (malformed, or another user's key) is "not found": no token tells
    whether an upload of someone else exists.
    """
    not_found = UploadError(404, "not_found", "no such multipart upload")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeError, ValueError):
        raise not_found from None
    if not isinstance(decoded, dict):
        raise not_found
    key, upload_id = decoded.get("k"), decoded.get("u")
    if not isinstance(key, str) or not isinstance(upload_id, str) or not upload_id:
        raise not_found
    if key_owner(key) != user:
        raise not_found
    return key, upload_id


def start_multipart(
    s3: Any, bucket: str, upload: PlannedUpload, *, ttl_seconds: int, now: datetime
) -> dict[str, Any]:
    """Create the multipart upload and presign a URL for every part."""
    part_size = part_size_for(upload.size)
    count = max(1, math.ceil(upload.size / part_size))
    created = s3.create_multipart_upload(
        Bucket=bucket, Key=upload.key, ContentType=upload.content_type
    )
    upload_id = created["UploadId"]
    parts = [
        {
            "part_number": number,
            "url": s3.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": bucket,
                    "Key": upload.key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=ttl_seconds,
                HttpMethod="PUT",
            ),
        }
        for number in range(1, count + 1)
    ]
    return {
        "upload_id": encode_upload_id(upload.key, upload_id),
        "key": upload.key,
        "part_size": part_size,
        "parts": parts,
        "expires_at": _expires_at(now, ttl_seconds),
    }


def complete_multipart(
    s3: Any, bucket: str, key: str, upload_id: str, parts: list[Mapping[str, Any]]
) -> dict[str, Any]:
    """Complete with the client's part list; S3 checks each ETag against what it holds."""
    ordered = sorted(parts, key=lambda part: int(part["part_number"]))
    numbers = [int(part["part_number"]) for part in ordered]
    if len(set(numbers)) != len(numbers):
        raise UploadError(422, "duplicate_parts", "each part_number may appear once")
    try:
        response = s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": int(part["part_number"]), "ETag": _quoted(str(part["etag"]))}
                    for part in ordered
                ]
            },
        )
    except s3.exceptions.NoSuchUpload:
        raise UploadError(
            404, "not_found", "no such multipart upload (completed or aborted?)"
        ) from None
    except s3.exceptions.ClientError as error:
        code = error_code(error)
        if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
            raise UploadError(
                409, "parts_mismatch", f"the parts do not match what was uploaded ({code})"
            ) from None
        raise
    return {"key": key, "etag": str(response.get("ETag", "")).strip('"')}


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def abort_multipart(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort; an upload already completed or aborted is no error (idempotent)."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except s3.exceptions.NoSuchUpload:
        return


# --- one-key credentials ----------------------------------------------------------------------


def object_arn(role_arn: str, bucket: str, key: str) -> str:
    """The S3 object ARN, in the role's partition (aws, aws-cn, aws-us-gov)."""
    partition = role_arn.split(":")[1] if role_arn.startswith("arn:") else "aws"
    return f"arn:{partition}:s3:::{bucket}/{key}"


def session_policy(role_arn: str, bucket: str, key: str) -> dict[str, Any]:
    """Allows writing exactly ``key`` (keys the API makes hold no ``*`` or ``?``)."""
    if "*" in key or "?" in key:
        raise ValueError("a key with IAM wildcards cannot be granted alone")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteThisKeyOnly",
                "Effect": "Allow",
                "Action": list(UPLOAD_ACTIONS),
                "Resource": object_arn(role_arn, bucket, key),
            }
        ],
    }


def one_key_credentials(
    sts: Any,
    role_arn: str,
    bucket: str,
    upload: PlannedUpload,
    *,
    ttl_seconds: int,
    region: str,
) -> dict[str, Any]:
    policy = session_policy(role_arn, bucket, upload.key)
    response = sts.assume_role(
        RoleArn=role_arn,
        RoleSessionName=f"sluice-upload-{uuid.uuid4().hex[:16]}",
        Policy=json.dumps(policy, separators=(",", ":")),
        DurationSeconds=ttl_seconds,
    )
    credentials = response["Credentials"]
    expiration = credentials["Expiration"]
    if isinstance(expiration, datetime):
        expiration = utc_iso(expiration)
    return {
        "bucket": bucket,
        "key": upload.key,
        "region": region,
        "credentials": {
            "access_key_id": credentials["AccessKeyId"],
            "secret_access_key": credentials["SecretAccessKey"],
            "session_token": credentials["SessionToken"],
            "expiration": str(expiration),
        },
    }
