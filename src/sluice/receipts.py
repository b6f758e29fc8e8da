"""The ledger: a receipt for each RAW key's newest version, a record for every other one.

Every RAW key ends with exactly one receipt (``receipts/<raw key>.json``), which
describes its newest version. Every *other* version of the key is accounted for by one
record under ``versions/<version>/<raw key>.json`` (docs/contracts.md):

* ``superseded``: a newer version of the key replaced it; its bytes are kept in ARCHIVE
  at ``archive_key`` (``superseded/<version>/<raw key>``), for as long as the archive
  keeps anything (archived objects do not expire). Written by the archive handler when
  it archives the newer version.
* ``deleted``: the version is gone and owns nothing any more (``deleted_from`` says
  where): deleted from RAW before it could be processed (the transform), deleted from RAW
  after its receipt but before it was archived (the archive handler), or its archived copy
  removed from ARCHIVE (the tag handler, or the API's ``DELETE /images/{id}``); then the
  receipt is gone too, and ``outputs_removed`` lists what went with it
  (``sluice.deletion``); for a removal from ARCHIVE, ``archived_copy_kept`` says whether
  the removed copy stays as a noncurrent version (a delete marker) or every version of
  it was deleted.

History (``sluice reprocess``, or any newer upload of a key): a receipt that replaces the
receipt of another version of its key names it in ``replaces`` (:func:`replacement`): that
version's verdict in brief (status, dataset, error codes, counts, when, by which handler
version), why it was replaced (``cause``: ``reprocess`` when the new version is a
``sluice reprocess`` copy of it, else ``upload``), and ``record``, the key of its
``superseded`` record. The archive handler writes that record with the same summary as its
``receipt``, and each summary's ``replaces`` names the record before it, so
:func:`history` walks from the current receipt back to the first version, and no receipt
grows with the number of versions.

Reading (the archive handler): :func:`load_receipt` checks a stored receipt against the
same version number, statuses and kinds the writer uses (:data:`STATUSES`, :data:`KINDS`),
so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sluice import __version__
from sluice.events import S3ObjectRef, normalize_etag
from sluice.keys import receipt_key, version_record_key, version_token
from sluice.s3io import get, is_precondition_failed
from sluice.timestamps import utc_iso
from sluice.units import MIB

RECEIPT_VERSION = 1
MAX_RECEIPT_ERRORS = 1000
"""Errors kept in the receipt itself; the report in PROCESSED ``errors/`` lists more."""

Status = Literal["processed", "rejected"]
Kind = Literal["data", "image", "unsupported"]
STATUSES: tuple[Status, ...] = get_args(Status)
KINDS: tuple[Kind, ...] = get_args(Kind)
MAX_RECEIPT_BYTES = 16 * MIB
"""Far above any real receipt (errors are capped at 1,000); reading stops there."""
VersionStatus = Literal["superseded", "deleted"]
VERSION_STATUSES: tuple[VersionStatus, ...] = get_args(VersionStatus)
DeletedFrom = Literal["raw", "archive"]
VERSION_RECORD_VERSION = 1
REPROCESS_METADATA = "sluice-reprocess-of"
"""User metadata ``sluice reprocess`` puts on the RAW copy it makes: the version token of
the version it copies, which the transform reads to say ``cause: reprocess``."""
MAX_HISTORY = 1000
"""Versions :func:`history` follows at most (a guard against a cycle in a damaged ledger)."""


def utc_now() -> str:
    return utc_iso(timespec="milliseconds")


@dataclass
class Receipt:
    status: Status
    kind: Kind
    source: dict[str, Any]
    dataset: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_truncated: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    handler_version: str = __version__
    processed_at: str = field(default_factory=utc_now)
    replaces: dict[str, Any] | None = None
    """The receipt of the key's previous version, in brief (module docstring: history)."""

    def to_json(self) -> bytes:
        body = {"receipt_version": RECEIPT_VERSION, **self.__dict__}
        return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def source_of(
    ref: S3ObjectRef, *, etag: str | None, version_id: str | None, size: int | None
) -> dict[str, Any]:
    """The receipt's ``source`` block; what S3 told us wins over what the event said."""
    return {
        "bucket": ref.bucket,
        "key": ref.key,
        "etag": etag or ref.etag,
        "version_id": version_id or ref.version_id,
        "size": size if size is not None else ref.size,
        "sequencer": ref.sequencer,
    }


def write_receipt(s3: Any, processed_bucket: str, receipt: Receipt) -> str:
    key = receipt_key(receipt.source["key"])
    s3.put_object(
        Bucket=processed_bucket,
        Key=key,
        Body=receipt.to_json(),
        ContentType="application/json",
    )
    return key


def read_receipt(s3: Any, processed_bucket: str, raw_key: str) -> dict[str, Any] | None:
    """The receipt of ``raw_key``, or None when there is none yet."""
    return read_version_record(s3, processed_bucket, receipt_key(raw_key))


class InvalidReceiptError(ValueError):
    """A ``receipts/`` object that is not a sluice receipt."""


@dataclass(frozen=True)
class ParsedReceipt:
    """What a stored receipt says, checked: which RAW version, and the verdict on it."""

    status: Status
    kind: Kind
    key: str
    etag: str
    """Normalised (no quotes)."""
    version_id: str | None
    replaces: Mapping[str, Any] | None = None
    """The previous version's receipt in brief (module docstring: history)."""


def parse_receipt(body: bytes, raw_bucket: str) -> ParsedReceipt:
    """The receipt in ``body``; raises :class:`InvalidReceiptError` for anything else,
    including a receipt whose source is not in ``raw_bucket``."""
    try:
        receipt = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidReceiptError(f"not JSON: {error}") from None
    if not isinstance(receipt, dict):
        raise InvalidReceiptError("not a JSON object")
    if receipt.get("receipt_version") != RECEIPT_VERSION:
        raise InvalidReceiptError(f"unsupported receipt_version {receipt.get('receipt_version')!r}")
    status, kind, source = receipt.get("status"), receipt.get("kind"), receipt.get("source")
    if status not in STATUSES:
        raise InvalidReceiptError(f"unknown status {status!r}")
    if kind not in KINDS:
        raise InvalidReceiptError(f"unknown kind {kind!r}")
    if not isinstance(source, dict):
        raise InvalidReceiptError("source is not an object")
    bucket, key, etag = source.get("bucket"), source.get("key"), source.get("etag")
    version_id = source.get("version_id")
    if bucket != raw_bucket:
        # Never let a receipt point a function at another bucket.
        raise InvalidReceiptError(f"source bucket {bucket!r} is not the RAW bucket")
    if not isinstance(key, str) or not key:
        raise InvalidReceiptError("source.key is missing")
    if not isinstance(etag, str) or not normalize_etag(etag):
        raise InvalidReceiptError("source.etag is missing")
    if version_id is not None and not isinstance(version_id, str):
        raise InvalidReceiptError("source.version_id is not a string")
    replaces = receipt.get("replaces")
    return ParsedReceipt(
        status=status,
        kind=kind,
        key=key,
        etag=str(normalize_etag(etag)),
        version_id=version_id or None,
        replaces=replaces if isinstance(replaces, dict) else None,
    )


def load_receipt(s3: Any, bucket: str, key: str, raw_bucket: str) -> ParsedReceipt | None:
    """The receipt stored at ``bucket``/``key`` (:func:`parse_receipt`), or None when it is
    gone; reads at most :data:`MAX_RECEIPT_BYTES` and raises InvalidReceiptError beyond."""
    response = get(s3, bucket, key)
    if response is None:
        return None
    body = response["Body"].read(MAX_RECEIPT_BYTES + 1)
    if len(body) > MAX_RECEIPT_BYTES:
        raise InvalidReceiptError(f"larger than {MAX_RECEIPT_BYTES} bytes")
    return parse_receipt(body, raw_bucket)


def _same_version(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Do two receipts' ``source`` blocks name one version (ETag, and ids when both known)?"""
    if normalize_etag(one.get("etag")) != normalize_etag(other.get("etag")):
        return False
    ids = one.get("version_id"), other.get("version_id")
    return None in ids or ids[0] == ids[1]


def replacement(
    previous: dict[str, Any] | None, source: dict[str, Any], reprocess_of: str | None
) -> dict[str, Any] | None:
    """The ``replaces`` of a new receipt for ``source``, given the receipt it overwrites.

    None when there was none; the previous receipt's own ``replaces`` when it was of this
    same version (a retry or a duplicate rewrites the receipt, and must not lose the
    history); otherwise that receipt in brief, without values (error codes, not messages).
    """
    if not isinstance(previous, dict) or not isinstance(previous.get("source"), dict):
        return None
    old_source: dict[str, Any] = previous["source"]
    if _same_version(old_source, source):
        kept = previous.get("replaces")
        return kept if isinstance(kept, dict) else None
    etag = str(normalize_etag(old_source.get("etag")))
    token = version_token(old_source.get("version_id"), etag)
    earlier = previous.get("replaces")
    errors = previous.get("errors") or []
    return {
        "etag": etag,
        "version_id": old_source.get("version_id"),
        "status": previous.get("status"),
        "kind": previous.get("kind"),
        "dataset": previous.get("dataset"),
        "error_codes": sorted({str(e.get("code")) for e in errors if isinstance(e, dict)}),
        "stats": previous.get("stats") or {},
        "handler_version": previous.get("handler_version"),
        "processed_at": previous.get("processed_at"),
        "cause": "reprocess" if reprocess_of == token else "upload",
        "record": version_record_key(str(old_source.get("key")), token),
        "replaces": earlier.get("record") if isinstance(earlier, dict) else None,
    }


def history(s3: Any, processed_bucket: str, raw_key: str) -> list[dict[str, Any]]:
    """The key's receipt, then each version it replaced, newest first (module docstring).

    Stops where the ledger has no record (yet: the archive handler writes it after the
    receipt) or no further ``replaces``."""
    receipt = read_receipt(s3, processed_bucket, raw_key)
    if receipt is None:
        return []
    found = [receipt]
    summary = receipt.get("replaces")
    while isinstance(summary, dict) and len(found) <= MAX_HISTORY:
        found.append(summary)
        pointer = summary.get("replaces")
        if not isinstance(pointer, str):
            break
        record = read_version_record(s3, processed_bucket, pointer)
        summary = record.get("receipt") if isinstance(record, dict) else None
    return found


def version_record(
    source: dict[str, Any],
    status: VersionStatus,
    *,
    archive_key: str | None = None,
    superseded_by: dict[str, Any] | None = None,
    deleted_from: DeletedFrom | None = None,
    outputs_removed: list[str] | None = None,
    receipt: dict[str, Any] | None = None,
    archived_copy_kept: bool | None = None,
) -> dict[str, Any]:
    """The ledger record of one version that is not its key's newest (module docstring);
    ``receipt`` is that version's receipt in brief, when it had one (:func:`replacement`)."""
    return {
        "record_version": VERSION_RECORD_VERSION,
        "status": status,
        "source": source,
        "archive_key": archive_key,
        "superseded_by": superseded_by,
        "deleted_from": deleted_from,
        "outputs_removed": outputs_removed,
        "archived_copy_kept": archived_copy_kept,
        "receipt": receipt,
        "recorded_at": utc_now(),
    }


def read_version_record(s3: Any, processed_bucket: str, key: str) -> dict[str, Any] | None:
    """The version record (or receipt) stored at ``key``, or None when there is none."""
    response = get(s3, processed_bucket, key)
    if response is None:
        return None
    result: dict[str, Any] = json.loads(response["Body"].read())
    return result


def version_record_key_of(source: dict[str, Any]) -> str:
    return version_record_key(
        source["key"], version_token(source.get("version_id"), str(source.get("etag")))
    )


def write_version_record(
    s3: Any, processed_bucket: str, record: dict[str, Any], *, only_if_absent: bool = False
) -> str | None:
    """Write ``record`` at its version's name; returns the name, or None when
    ``only_if_absent`` and the version already has a record (kept as it is: one version,
    one record, and the first writer may know more, e.g. the outputs it removed)."""
    key = version_record_key_of(record["source"])
    condition = {"IfNoneMatch": "*"} if only_if_absent else {}
    try:
        s3.put_object(
            Bucket=processed_bucket,
            Key=key,
            Body=json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"),
            ContentType="application/json",
            **condition,
        )
    except s3.exceptions.ClientError as error:
        if only_if_absent and is_precondition_failed(error):
            return None
        raise
    return key
