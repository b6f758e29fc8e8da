"""The one timestamp format sluice writes: ISO 8601 in UTC with a ``Z``.

Receipts, bundle statuses, upload and link expiries and the local runner's log lines all
carry it, so a reader parses every one the same way (``2026-12-01T07:45:00Z``).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime | None = None, *, timespec: str = "seconds") -> str:
    """``moment`` (default: now) in UTC, e.g. ``2026-12-01T07:45:00Z``; ``timespec`` as
    :meth:`datetime.isoformat` takes it (``"milliseconds"`` for log and receipt times)."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc_iso(text: object) -> datetime | None:
    """:func:`utc_iso`'s inverse (a time without a zone is taken as UTC); None for anything
    else. Bundle topics' tags and restore markers are read back with it."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
