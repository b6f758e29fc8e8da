"""The S3 answers sluice relies on, from the end-to-end target's emulator itself.

Each is one that LocalStack 4.14 gives otherwise than AWS and the repository's LocalStack
plugin corrects (``tools/localstack-plugin``, docs/localstack.md); moto gives AWS's. So
a LocalStack without the plugin's hook, or a newer LocalStack that changes what the hook
patches, fails here by name rather than as a chaos run that does not converge:

* every listing pages through keys that URL encoding reorders (non-ASCII, a space, ``+``,
  ``%``...) once each, in key order: ``sluice audit``, the chaos run's checks and the
  archive handler page through such listings;
* ``CopyObject`` of an older version onto its own key makes it current: how the transform
  puts back the outputs of a key's receipt (``_restore_outputs``, issue 10);
* ``DeleteObject`` with ``If-Match``: how a transform releases its key's lease
  (``sluice.leases``).

The emulator is one of this module's own (``emulator_server``), with a scratch bucket:
nothing of a deployed stack is needed or touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sluice.local import awsenv
from tests.terraform_support import emulator_server

pytestmark = pytest.mark.e2e

ODD_NAMES = (
    "名前 0387.jpg",
    "名前 0388.png",
    "día ñ 0359.png",
    "scan +1 0275.jpg",
    "100% 0348.jpg",
)
"""Keys of the chaos corpus whose URL-encoded form sorts otherwise than the key itself."""
PLAIN_NAMES = tuple(f"file-{number:04d}.jpg" for number in range(12))
PAGE_SIZE = 5
"""Small enough that every odd key lies beyond a page boundary from some plain one."""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with emulator_server(tmp_path_factory.mktemp("emulator-s3")) as endpoint:
        yield awsenv.client("s3", endpoint)


def _versioned_bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture(scope="module")
def listed_bucket(s3: Any) -> tuple[str, list[str]]:
    """A versioned bucket holding every name under ``t/``, in two versions each."""
    bucket = _versioned_bucket(s3, "sluice-e2e-listings")
    keys = [f"t/{name}" for name in (*ODD_NAMES, *PLAIN_NAMES)]
    for body in (b"first", b"second"):
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket, sorted(keys, key=lambda key: key.encode("utf-8"))


def _paged(s3: Any, operation: str, bucket: str, field: str) -> list[dict[str, Any]]:
    paginator = s3.get_paginator(operation)
    pages = paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": PAGE_SIZE})
    return [entry for page in pages for entry in page.get(field, [])]


@pytest.mark.parametrize("operation", ["list_objects_v2", "list_objects"])
def test_paged_listings_return_every_key_once_in_key_order(
    s3: Any, listed_bucket: tuple[str, list[str]], operation: str
) -> None:
    bucket, keys = listed_bucket
    assert [entry["Key"] for entry in _paged(s3, operation, bucket, "Contents")] == keys


def test_paged_version_listings_return_every_version_once_in_key_order(
    s3: Any, listed_bucket: tuple[str, list[str]]
) -> None:
    bucket, keys = listed_bucket
    versions = _paged(s3, "list_object_versions", bucket, "Versions")
    assert [entry["Key"] for entry in versions] == [key for key in keys for _ in range(2)]
    assert len({(entry["Key"], entry["VersionId"]) for entry in versions}) == len(versions)


@pytest.mark.parametrize(
    ("name", "bucket"),
    [(ODD_NAMES[0], "sluice-e2e-restore-odd"), (PLAIN_NAMES[0], "sluice-e2e-restore-plain")],
    ids=["non-ascii", "ascii"],
)
def test_an_older_version_copied_onto_its_key_becomes_current(
    s3: Any, name: str, bucket: str
) -> None:
    _versioned_bucket(s3, bucket)
    key = f"thumbnails/64/photos/{name}.jpg"
    older = s3.put_object(Bucket=bucket, Key=key, Body=b"older")["VersionId"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"newer")
    copied = s3.copy_object(
        Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key, "VersionId": older}
    )
    assert copied["VersionId"] not in (None, "null", older)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"older"
    # Without a version named, a copy onto itself that changes nothing stays refused.
    with pytest.raises(ClientError) as refused:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key})
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
def test_delete_if_match_deletes_only_the_version_it_names(s3: Any, versioned: bool) -> None:
    bucket = f"sluice-e2e-delete-{'v' if versioned else 'u'}"
    if versioned:
        _versioned_bucket(s3, bucket)
    else:
        s3.create_bucket(Bucket=bucket)
    key = f"leases/{ODD_NAMES[0]}"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=b"held")["ETag"]

    def status(if_match: str) -> int:
        try:
            response = s3.delete_object(Bucket=bucket, Key=key, IfMatch=if_match)
        except ClientError as error:
            return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
        return int(response["ResponseMetadata"]["HTTPStatusCode"])

    assert status('"0123456789abcdef0123456789abcdef"') == 412
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == etag
    assert status(etag) == 204
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)
    assert status(etag) == 404
