"""A receipt is read back with the literals it was written with (no network).

The transform writes receipts (``Receipt.to_json``) and the archive handler reads them
(``load_receipt``); both take the version, statuses and kinds from ``sluice.receipts``,
so a verdict the writer may give is never refused by the reader.
"""

# The fake mirrors boto3's keyword names (Bucket, Key).
# ruff: noqa: N803

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sluice.receipts import (
    KINDS,
    MAX_RECEIPT_BYTES,
    RECEIPT_VERSION,
    STATUSES,
    InvalidReceiptError,
    ParsedReceipt,
    Receipt,
    load_receipt,
    parse_receipt,
)

RAW = "raw-bucket"
SOURCE = {"bucket": RAW, "key": "photos/a.jpg", "etag": '"abc"', "version_id": "v1"}


@pytest.mark.parametrize(("status", "kind"), list(itertools.product(STATUSES, KINDS)))
def test_every_receipt_the_writer_can_write_is_read_back(status: Any, kind: Any) -> None:
    replaces = {"etag": "old", "record": "versions/v0/photos/a.jpg.json"}
    body = Receipt(status=status, kind=kind, source=dict(SOURCE), replaces=replaces).to_json()

    assert parse_receipt(body, RAW) == ParsedReceipt(
        status=status,
        kind=kind,
        key="photos/a.jpg",
        etag="abc",
        version_id="v1",
        replaces=replaces,
    )


def _written(**changes: Any) -> bytes:
    document = json.loads(Receipt(status="processed", kind="image", source=dict(SOURCE)).to_json())
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "body",
    [
        _written(receipt_version=RECEIPT_VERSION + 1),
        _written(status="superseded"),
        _written(kind="video"),
        _written(source={**SOURCE, "bucket": "another-bucket"}),
        _written(source={**SOURCE, "version_id": 7}),
    ],
    ids=["newer-version", "status", "kind", "foreign-bucket", "version-id-type"],
)
def test_what_the_writer_never_writes_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidReceiptError):
        parse_receipt(body, RAW)


class FakeS3:
    """GetObject over a dict; a missing key answers NoSuchKey as S3 does."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            error = {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}
            raise ClientError(error, "GetObject")  # type: ignore[arg-type]
        return {"Body": io.BytesIO(self.objects[Key])}


def test_load_receipt_reads_a_stored_receipt_and_none_when_it_is_gone() -> None:
    s3 = FakeS3({"receipts/photos/a.jpg.json": _written()})

    loaded = load_receipt(s3, "processed", "receipts/photos/a.jpg.json", RAW)

    assert loaded is not None and (loaded.status, loaded.key) == ("processed", "photos/a.jpg")
    assert load_receipt(s3, "processed", "receipts/photos/gone.jpg.json", RAW) is None


def test_load_receipt_stops_reading_past_the_limit() -> None:
    s3 = FakeS3({"receipts/big.json": b" " * (MAX_RECEIPT_BYTES + 1)})

    with pytest.raises(InvalidReceiptError, match="larger than"):
        load_receipt(s3, "processed", "receipts/big.json", RAW)
