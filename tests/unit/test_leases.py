"""Per-key leases (sluice.leases) against a fake S3 client that loses races on demand.

S3 answers a conditional write that lost with 412 ``PreconditionFailed`` (the object
changed) or 409 ``ConditionalRequestConflict`` (another conditional write on the key was
under way); both mean another invocation won, so both must count as a lost race
(sluice.s3io.is_conditional_conflict owns that contract). Any other error is raised.
"""

# The fake mirrors boto3's keyword names (Bucket, Key, ...).
# ruff: noqa: N803

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sluice.keys import lease_key
from sluice.leases import KeyBusyError, LeaseTerms, key_lease, release_own

BUCKET = "processed"
RAW_KEY = "a/b.csv"
LOST_RACES = {
    "412 PreconditionFailed": ("PreconditionFailed", 412),
    "409 ConditionalRequestConflict": ("ConditionalRequestConflict", 409),
}


def _error(code: str, status: int, operation: str) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


class FakeS3:
    """One bucket of JSON objects with S3's conditional put and delete; ``fail`` makes the
    next call of an operation raise the given error instead."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.fail: dict[str, ClientError] = {}
        self._etags = 0

    def _check(self, operation: str) -> None:
        if operation in self.fail:
            raise self.fail.pop(operation)

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **condition: str) -> Any:
        self._check("PutObject")
        current = self.objects.get(Key)
        if condition.get("IfNoneMatch") == "*" and current is not None:
            raise _error("PreconditionFailed", 412, "PutObject")
        if "IfMatch" in condition and (current is None or current[1] != condition["IfMatch"]):
            raise _error("PreconditionFailed", 412, "PutObject")
        self._etags += 1
        self.objects[Key] = (Body, f'"{self._etags}"')
        return {"ETag": self.objects[Key][1]}

    def get_object(self, *, Bucket: str, Key: str) -> Any:
        self._check("GetObject")
        if Key not in self.objects:
            raise _error("NoSuchKey", 404, "GetObject")
        body, etag = self.objects[Key]
        return {"Body": io.BytesIO(body), "ETag": etag}

    def delete_object(self, *, Bucket: str, Key: str, IfMatch: str) -> Any:
        self._check("DeleteObject")
        if Key not in self.objects:
            raise _error("NoSuchKey", 404, "DeleteObject")
        if self.objects[Key][1] != IfMatch:
            raise _error("PreconditionFailed", 412, "DeleteObject")
        del self.objects[Key]
        return {}


def _take_and_release(s3: FakeS3, owner: str = "me") -> None:
    with key_lease(s3, BUCKET, RAW_KEY, LeaseTerms(owner=owner)):
        pass


def _expired_lease(s3: FakeS3, owner: str = "crashed") -> None:
    s3.objects[lease_key(RAW_KEY)] = (json.dumps({"owner": owner, "until": 0}).encode(), '"0"')


def test_a_free_lease_is_taken_and_released() -> None:
    s3 = FakeS3()
    with key_lease(s3, BUCKET, RAW_KEY, LeaseTerms(owner="me")):
        assert json.loads(s3.objects[lease_key(RAW_KEY)][0])["owner"] == "me"
    assert s3.objects == {}


def test_a_live_lease_of_another_owner_makes_the_key_busy() -> None:
    s3 = FakeS3()
    with (
        key_lease(s3, BUCKET, RAW_KEY, LeaseTerms(owner="first")),
        pytest.raises(KeyBusyError, match="another invocation is transforming"),
    ):
        _take_and_release(s3, "second")


@pytest.mark.parametrize(("code", "status"), LOST_RACES.values(), ids=LOST_RACES.keys())
def test_a_lost_take_over_of_an_expired_lease_is_a_busy_key(code: str, status: int) -> None:
    s3 = FakeS3()
    _expired_lease(s3)
    # The free put loses to the expired lease (412), then the takeover loses to another taker.
    put = s3.put_object

    def losing_take_over(**request: Any) -> Any:
        if "IfMatch" in request:
            raise _error(code, status, "PutObject")
        return put(**request)

    s3.put_object = losing_take_over  # type: ignore[method-assign]
    with pytest.raises(KeyBusyError, match="took the expired lease first"):
        _take_and_release(s3, "me")


@pytest.mark.parametrize(("code", "status"), LOST_RACES.values(), ids=LOST_RACES.keys())
def test_a_lost_free_put_reads_the_lease_and_takes_it_over_when_expired(
    code: str, status: int
) -> None:
    s3 = FakeS3()
    _expired_lease(s3)
    put = s3.put_object

    def losing_free_put(**request: Any) -> Any:
        if request.get("IfNoneMatch") == "*":
            raise _error(code, status, "PutObject")
        return put(**request)

    s3.put_object = losing_free_put  # type: ignore[method-assign]
    with key_lease(s3, BUCKET, RAW_KEY, LeaseTerms(owner="me")):
        assert json.loads(s3.objects[lease_key(RAW_KEY)][0])["owner"] == "me"


@pytest.mark.parametrize(("code", "status"), LOST_RACES.values(), ids=LOST_RACES.keys())
def test_a_release_that_lost_the_lease_is_not_an_error(code: str, status: int) -> None:
    s3 = FakeS3()
    with key_lease(s3, BUCKET, RAW_KEY, LeaseTerms(owner="me")):
        s3.fail["DeleteObject"] = _error(code, status, "DeleteObject")
    release_own(s3, BUCKET, RAW_KEY, "me")  # what a retry does: now it is released
    assert s3.objects == {}


def test_any_other_error_of_a_conditional_write_is_raised() -> None:
    s3 = FakeS3()
    s3.fail["PutObject"] = _error("AccessDenied", 403, "PutObject")
    with pytest.raises(ClientError, match="AccessDenied"):
        _take_and_release(s3, "me")
    with key_lease(s3, BUCKET, RAW_KEY, LeaseTerms(owner="me")):
        s3.fail["DeleteObject"] = _error("AccessDenied", 403, "DeleteObject")
        with pytest.raises(ClientError, match="AccessDenied"):
            release_own(s3, BUCKET, RAW_KEY, "me")


def test_a_lease_released_while_being_read_is_a_busy_key() -> None:
    s3 = FakeS3()
    _expired_lease(s3)
    s3.fail["GetObject"] = _error("NoSuchKey", 404, "GetObject")
    with pytest.raises(KeyBusyError, match="released while being read"):
        _take_and_release(s3, "me")
