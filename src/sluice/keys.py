"""Key layout shared by every handler (see docs/contracts.md).

**One owner per output.** Every object the pipeline writes is owned by exactly one input
(one RAW key, and through the receipt or the version ledger one version of it), and no two
inputs can ever be given the same name, by construction:

* a derived name is ``prefix + raw key + suffix`` and keeps the whole raw key, extension
  included (``thumbnails/128/a.JPG.jpg`` and ``thumbnails/128/a.jpg.jpg`` are two names);
  for one prefix and suffix that map is injective;
* when that name would pass S3's 1024-byte limit it becomes
  ``prefix + "_long/" + sha256(raw key) + suffix`` instead. A raw key that itself starts
  with ``_long/`` is **always** hashed, so a plain name never starts with
  ``prefix + "_long/"``: plain and hashed names live in disjoint namespaces, and two
  hashed names are equal only if sha256 collides. (Hashing such keys rather than
  rejecting them keeps every user key acceptable; escaping would make names unreadable
  for everyone to fix a case almost nobody has.)
* names that belong to one *version* of a key put the version token (S3 version id,
  which never contains ``/``) in the prefix: ``superseded/<version>/<raw key>``, so the
  split at the first ``/`` after the prefix is unambiguous.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from importlib import resources

MAX_KEY_BYTES = 1024

PREFIXES: dict[str, dict[str, str]] = json.loads(
    resources.files("sluice").joinpath("keys.json").read_text("utf-8")
)
"""Every key prefix, by bucket and name: ``keys.json``, which Terraform reads too (the root
module passes it to the pipeline as ``key_prefixes``, for the IAM grants and the bucket
notifications), so a prefix is written once (tests/unit/test_keys_contract.py)."""

RECEIPTS_PREFIX = PREFIXES["processed"]["receipts"]
VERSIONS_PREFIX = PREFIXES["processed"]["versions"]
"""PROCESSED: the version ledger, one record per superseded or deleted RAW version."""
LEASES_PREFIX = PREFIXES["processed"]["leases"]
"""PROCESSED: the transform's per-key leases (sluice.leases)."""
DATA_PREFIX = PREFIXES["processed"]["data"]
ERRORS_PREFIX = PREFIXES["processed"]["errors"]
THUMBNAILS_PREFIX = PREFIXES["processed"]["thumbnails"]
ARCHIVE_IMAGES_PREFIX = PREFIXES["archive"]["images"]
ARCHIVE_DATA_PREFIX = PREFIXES["archive"]["data"]
ARCHIVE_REJECTED_PREFIX = PREFIXES["archive"]["rejected"]
ARCHIVE_SUPERSEDED_PREFIX = PREFIXES["archive"]["superseded"]
"""ARCHIVE: every RAW version that a newer version of its key replaced, by version."""
REQUESTS_PREFIX = PREFIXES["work"]["requests"]
"""WORK: bundle requests, ``requests/<bundle id>.json`` (the bundle trigger)."""
BUNDLES_PREFIX = PREFIXES["work"]["bundles"]
"""WORK: each bundle's zip and status, ``bundles/<bundle id>.zip`` and ``.json``."""
RESTORING_PREFIX = PREFIXES["work"]["restoring"]
"""WORK: one marker per bundle waiting for restores (sluice.restores), ``<bundles
prefix>_restoring/<bundle id>.json``: inside the bundles prefix (its expiry rule covers the
markers too), in a segment starting with ``_``, which no bundle id does."""
UPLOADS_SEGMENT = PREFIXES["raw"]["uploads"]
"""RAW keys the API hands out: ``[<dataset prefix>]uploads/<user>/<date>/<uuid>-<name>``."""

SOURCE_ETAG_METADATA = "sluice-source-etag"
"""User metadata of every archived copy: the RAW ETag it is a copy of."""
SOURCE_VERSION_METADATA = "sluice-source-version-id"
"""User metadata of an archived copy, when known: the RAW version id it is a copy of."""

HASHED_SEGMENT = "_long/"
"""The namespace of hashed names; a raw key starting with it is always hashed."""


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derived_key(prefix: str, raw_key: str, suffix: str = "") -> str:
    """``prefix + raw_key + suffix``, or its hashed form (module docstring: why injective).

    Hashed when the plain name would exceed S3's 1024-byte limit, or when ``raw_key``
    starts with ``_long/`` (so no user key can take a hashed name). The receipt always
    records the original key.
    """
    key = f"{prefix}{raw_key}{suffix}"
    if len(key.encode("utf-8")) <= MAX_KEY_BYTES and not raw_key.startswith(HASHED_SEGMENT):
        return key
    return f"{prefix}{HASHED_SEGMENT}{_sha256_hex(raw_key)}{suffix}"


def receipt_key(raw_key: str) -> str:
    return derived_key(RECEIPTS_PREFIX, raw_key, ".json")


def raw_key_of_receipt_key(receipt_object_key: str) -> str | None:
    """The raw key a receipt's name carries; None for a hashed name (its receipt records
    the key) or one that is no receipt's."""
    name = receipt_object_key.removeprefix(RECEIPTS_PREFIX)
    if name.startswith(HASHED_SEGMENT) or not name.endswith(".json"):
        return None
    return name.removesuffix(".json")


def split_extension(key: str) -> tuple[str, str]:
    """Split ``a/b.c.JPG`` into (``a/b.c``, ``.jpg``); the extension is lower-cased."""
    stem, ext = posixpath.splitext(key)
    return stem, ext.lower()


def thumbnail_key(raw_key: str, size: int, extension: str) -> str:
    """``thumbnails/<size>/<raw key><extension>``: the source's own extension is kept, so
    ``a.png`` and ``a.jpg`` (or ``a.JPG`` and ``a.jpg``) never share a thumbnail."""
    return derived_key(f"{THUMBNAILS_PREFIX}{size}/", raw_key, extension)


def image_id(archive_key: str) -> str:
    """Stable image identifier derived from the archive key (transform and tag agree on it)."""
    return _sha256_hex(archive_key)[:32]


def archive_key_for(kind: str, status: str, raw_key: str) -> str:
    """Where the archive handler puts a raw object: by kind, rejected inputs apart."""
    if status == "rejected":
        return derived_key(ARCHIVE_REJECTED_PREFIX, raw_key)
    if kind == "image":
        return derived_key(ARCHIVE_IMAGES_PREFIX, raw_key)
    return derived_key(ARCHIVE_DATA_PREFIX, raw_key)


def images_archive_key(raw_key: str) -> str:
    """ARCHIVE name of ``raw_key`` as a processed image: the copy the library lists."""
    return archive_key_for("image", "processed", raw_key)


def archive_keys_of(raw_key: str) -> tuple[str, ...]:
    """Every name under which the current version of ``raw_key`` can be archived."""
    return tuple(
        derived_key(prefix, raw_key)
        for prefix in (ARCHIVE_IMAGES_PREFIX, ARCHIVE_DATA_PREFIX, ARCHIVE_REJECTED_PREFIX)
    )


def version_token(version_id: str | None, etag: str) -> str:
    """What names one version of a key: its S3 version id, or ``etag-<etag>`` when the
    object has none (an unversioned bucket, or a copy archived before ids were stamped)."""
    return version_id or f"etag-{etag}"


def superseded_archive_key(raw_key: str, token: str) -> str:
    """ARCHIVE name of a superseded version of ``raw_key`` (kept like every archived object)."""
    return derived_key(f"{ARCHIVE_SUPERSEDED_PREFIX}{token}/", raw_key)


def version_record_key(raw_key: str, token: str) -> str:
    """PROCESSED name of the ledger record of one superseded or deleted version."""
    return derived_key(f"{VERSIONS_PREFIX}{token}/", raw_key, ".json")


def ledger_key_of_archive_key(archive_key: str) -> str | None:
    """The ledger entry that owns an ARCHIVE name, without knowing the raw key.

    ``images/``, ``data/``, ``rejected/`` names are owned by the key's receipt,
    ``superseded/<version>/`` names by that version's record. A hashed archive name
    (``<prefix>_long/<sha>``) only comes from a raw key whose every derived name is hashed
    with the same sha (longer names, or a key starting with ``_long/``), so the owner's name
    follows from it; a plain one carries the raw key itself. None for any other name.
    """
    for prefix in (ARCHIVE_IMAGES_PREFIX, ARCHIVE_DATA_PREFIX, ARCHIVE_REJECTED_PREFIX):
        if archive_key.startswith(prefix):
            rest = archive_key[len(prefix) :]
            if rest.startswith(HASHED_SEGMENT):
                return f"{RECEIPTS_PREFIX}{rest}.json"
            return receipt_key(rest) if rest else None
    if archive_key.startswith(ARCHIVE_SUPERSEDED_PREFIX):
        token, slash, rest = archive_key[len(ARCHIVE_SUPERSEDED_PREFIX) :].partition("/")
        if not token or not slash or not rest:
            return None
        if rest.startswith(HASHED_SEGMENT):
            return f"{VERSIONS_PREFIX}{token}/{rest}.json"
        return version_record_key(rest, token)
    return None


def lease_key(raw_key: str) -> str:
    return derived_key(LEASES_PREFIX, raw_key, ".json")


BUNDLE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A bundle id: safe in a key, a file name and a URL without escaping."""


def bundle_request_key(bundle_id: str) -> str:
    """WORK key of the request for ``bundle_id`` (the bundle handler takes the id from it)."""
    return f"{REQUESTS_PREFIX}{bundle_id}.json"


def bundle_id_for(request_key: str) -> str | None:
    """The bundle id of ``requests/<id>.json``, or None when the key is not a valid request."""
    if not request_key.startswith(REQUESTS_PREFIX) or not request_key.endswith(".json"):
        return None
    candidate = request_key[len(REQUESTS_PREFIX) : -len(".json")]
    return candidate if BUNDLE_ID_PATTERN.fullmatch(candidate) else None


def bundle_status_key(bundle_id: str) -> str:
    return f"{BUNDLES_PREFIX}{bundle_id}.json"


def bundle_zip_key(bundle_id: str) -> str:
    return f"{BUNDLES_PREFIX}{bundle_id}.zip"


def restore_marker_key(bundle_id: str) -> str:
    return f"{RESTORING_PREFIX}{bundle_id}.json"


def bundle_id_of_restore_marker(marker_key: str) -> str:
    return marker_key.removeprefix(RESTORING_PREFIX).removesuffix(".json")


def invalid_bundle_id(request_key: str) -> str:
    """Where the error status of a request under an invalid key goes: ``_invalid-<sha256>``,
    a name no valid id can take (valid ids start with a letter or digit)."""
    return "_invalid-" + _sha256_hex(request_key)[:16]
