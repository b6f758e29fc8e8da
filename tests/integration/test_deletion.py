"""Deletion (issue 12) as specifications: removing an archived input removes what it owns.

The pipeline's handlers run in process against moto. moto sends no notification for a
plain delete in a versioned bucket (AWS sends ``ObjectRemoved:DeleteMarkerCreated``), so
each test deletes the object as a user would and delivers the event AWS would send,
shaped as AWS documents it. Every scenario ends with ``sluice audit``: clean is part of
the invariant.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from sluice import image_items
from sluice.archive_copy import ArchiveRequest
from sluice.keys import image_id, receipt_key, version_record_key
from sluice.label_items import label_counts
from sluice.leases import LeaseTerms, key_lease
from sluice.ops.audit import AuditReport, audit
from sluice.receipts import parse_receipt
from sluice.settings import ArchiveSettings
from sluice.supersession import supersede_archived_copies
from sluice.timestamps import utc_iso
from sluice.transform.outputs import restore_outputs
from tests.conftest import IKERIAN_SAMPLE, FakeContext, Pipeline, load_handler
from tests.integration.api_support import ADMIN, ApiClient, api_handler
from tests.integration.ops_support import make_environment
from tests.s3events import object_event_for, s3_event, s3_record, sqs_batch

RETINA = json.dumps([*json.loads(IKERIAN_SAMPLE.read_bytes()), {"patient_id": "B67890"}]).encode()
"""The tutorial's two records and an invalid one: a data output and an errors report."""


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


@dataclass
class Flow:
    p: Pipeline
    handlers: dict[str, ModuleType]
    context: FakeContext = field(default_factory=FakeContext)

    def invoke(self, name: str, event: dict[str, Any]) -> None:
        response = self.handlers[name].handler(event, self.context)
        assert response == {"batchItemFailures": []}, (name, response)

    def upload(self, key: str, body: bytes) -> dict[str, dict[str, Any]]:
        """Upload, transform and archive; return the events each step produced."""
        self.p.s3.put_object(Bucket=self.p.raw, Key=key, Body=body)
        events = {"raw": object_event_for(self.p.s3, self.p.raw, key)}
        self.invoke("transform", events["raw"])
        events["receipt"] = object_event_for(self.p.s3, self.p.processed, receipt_key(key))
        self.invoke("archive", events["receipt"])
        return events

    def created(self, archive_key: str) -> dict[str, Any]:
        return object_event_for(self.p.s3, self.p.archive, archive_key)

    def rm(self, archive_key: str) -> dict[str, Any]:
        """``aws s3 rm`` of an archived object, and the event AWS sends for it."""
        marker = self.p.s3.delete_object(Bucket=self.p.archive, Key=archive_key)
        return removal_event(self.p.archive, archive_key, marker.get("VersionId"))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.p.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def counts(self) -> dict[str, int]:
        return dict(label_counts(self.p.dynamodb, self.p.labels_table))

    def item(self, archive_key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.p.dynamodb.get_item(
            TableName=self.p.images_table, Key={"image_id": {"S": image_id(archive_key)}}
        ).get("Item")
        return found

    def memberships(self) -> Counter[str]:
        items = self.p.dynamodb.scan(TableName=self.p.labels_table)["Items"]
        return Counter(
            item["pk"]["S"].removeprefix("LABEL#")
            for item in items
            if item["pk"]["S"].startswith("LABEL#")
        )

    def record(self, raw_key: str) -> dict[str, Any]:
        """The one version record of ``raw_key`` (each test's keys have exactly one)."""
        keys = [
            k for k in self.keys(self.p.processed, "versions/") if k.endswith(raw_key + ".json")
        ]
        assert len(keys) == 1, keys
        body = self.p.s3.get_object(Bucket=self.p.processed, Key=keys[0])["Body"].read()
        result: dict[str, Any] = json.loads(body)
        return result

    def audit(self) -> AuditReport:
        return audit(self.p.s3, self.p.sqs, make_environment(self.p))


def removal_event(bucket: str, key: str, marker_version: str | None) -> dict[str, Any]:
    """``ObjectRemoved:DeleteMarkerCreated`` as AWS sends it: the marker's version id, no
    ETag, no size (Amazon S3 user guide, "Event message structure")."""
    record = s3_record(
        bucket,
        key,
        event_name="ObjectRemoved:DeleteMarkerCreated",
        version_id=marker_version,
        sequencer="0066A1B2C3D4E5F601",
    )
    del record["s3"]["object"]["size"]
    return sqs_batch(s3_event(record))


def version_removal_event(bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """``ObjectRemoved:Delete`` as AWS sends it for a ``DeleteObject`` with a version id:
    the version deleted, no ETag, no size (Amazon S3 user guide, "Event message
    structure")."""
    record = s3_record(
        bucket,
        key,
        event_name="ObjectRemoved:Delete",
        version_id=version_id,
        sequencer="0066A1B2C3D4E5F602",
    )
    del record["s3"]["object"]["size"]
    return sqs_batch(s3_event(record))


def delete_every_version(flow: Flow, archive_key: str) -> list[dict[str, Any]]:
    """``aws s3api delete-object --version-id`` of every version of the name, newest first
    as ``list-object-versions`` lists them, and the event AWS sends for each."""
    listing = flow.p.s3.list_object_versions(Bucket=flow.p.archive, Prefix=archive_key)
    events = []
    for version in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
        if version["Key"] != archive_key:
            continue
        flow.p.s3.delete_object(
            Bucket=flow.p.archive, Key=archive_key, VersionId=version["VersionId"]
        )
        events.append(version_removal_event(flow.p.archive, archive_key, version["VersionId"]))
    assert (
        flow.p.s3.list_object_versions(Bucket=flow.p.archive, Prefix=archive_key).get(
            "Versions", []
        )
        == []
    )
    return events


def assert_clean(report: AuditReport) -> None:
    assert report.discrepancies == [], report.discrepancies
    assert report.clean


def assert_counts_match_memberships(flow: Flow) -> None:
    assert flow.counts() == {label: n for label, n in flow.memberships().items()} | {
        label: 0 for label in flow.counts() if label not in flow.memberships()
    }


@pytest.fixture
def flow(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Flow:
    monkeypatch.setenv("THUMBNAIL_SIZES", "32,64")
    monkeypatch.setenv("LABEL_MIN_CONFIDENCE", "0")
    monkeypatch.setenv("UPLOAD_ROLE_ARN", "arn:aws:iam::123456789012:role/sluice-test-upload")
    handlers = {name: load_handler(name) for name in ("transform", "archive", "tag")}
    return Flow(pipeline, handlers)


def tagged_twins(flow: Flow) -> tuple[str, str, dict[str, int]]:
    """Two archived, labelled photos with the same labels; returns their archive keys and
    the counts (2 each)."""
    for key in ("photos/red.jpg", "photos/red-too.jpg"):
        flow.upload(key, picture((200, 10, 10)))
        flow.invoke("tag", flow.created("images/" + key))
    counts = flow.counts()
    assert counts and set(counts.values()) == {2}
    return "images/photos/red.jpg", "images/photos/red-too.jpg", counts


# --- what a removal removes ---------------------------------------------------------------------


def test_removing_an_archived_image_removes_thumbnails_item_memberships_and_counts_once(
    flow: Flow,
) -> None:
    gone, kept, before = tagged_twins(flow)
    thumbnails = [k for k in flow.keys(flow.p.processed, "thumbnails/") if "/photos/red.jpg" in k]
    assert len(thumbnails) == 2

    flow.invoke("tag", flow.rm(gone))

    assert [k for k in flow.keys(flow.p.processed, "thumbnails/") if "/photos/red.jpg" in k] == []
    assert flow.item(gone) is None and flow.item(kept) is not None
    assert flow.counts() == {label: count - 1 for label, count in before.items()}
    assert flow.memberships() == Counter({label: 1 for label in before})
    assert receipt_key("photos/red.jpg") not in flow.keys(flow.p.processed, "receipts/")
    record = flow.record("photos/red.jpg")
    assert record["status"] == "deleted" and record["deleted_from"] == "archive"
    assert record["archive_key"] == gone
    assert record["archived_copy_kept"] is True  # noncurrent, under the delete marker
    assert sorted(record["outputs_removed"]) == sorted(thumbnails)
    report = flow.audit()
    assert_clean(report)
    assert report.ledger.versions_deleted == 1


def test_removing_an_archived_data_file_removes_its_outputs(flow: Flow) -> None:
    flow.upload("retina/scans.json", RETINA)
    outputs = flow.keys(flow.p.processed, "data/") + flow.keys(flow.p.processed, "errors/")
    assert outputs == ["data/retina/scans.json", "errors/retina/scans.json.jsonl"]

    flow.invoke("tag", flow.rm("data/retina/scans.json"))

    assert flow.keys(flow.p.processed, "data/") + flow.keys(flow.p.processed, "errors/") == []
    assert flow.keys(flow.p.processed, "receipts/") == []
    assert sorted(flow.record("retina/scans.json")["outputs_removed"]) == outputs
    assert_clean(flow.audit())


def test_removing_a_rejected_input_and_a_superseded_copy_keeps_the_ledger_exact(
    flow: Flow,
) -> None:
    flow.upload("notes/readme.txt", b"first")
    flow.upload("notes/readme.txt", b"second")  # the first is kept under superseded/
    superseded = flow.keys(flow.p.archive, "superseded/")
    assert len(superseded) == 1

    flow.invoke("tag", flow.rm(superseded[0]))
    flow.invoke("tag", flow.rm("rejected/notes/readme.txt"))

    records = [
        json.loads(flow.p.s3.get_object(Bucket=flow.p.processed, Key=key)["Body"].read())
        for key in flow.keys(flow.p.processed, "versions/")
    ]
    assert sorted(r["status"] for r in records) == ["deleted", "deleted"]
    assert flow.keys(flow.p.processed, "receipts/") == []
    assert_clean(flow.audit())


def test_deleting_every_version_of_an_archived_image_is_the_same_removal(flow: Flow) -> None:
    gone, kept, before = tagged_twins(flow)
    thumbnails = [k for k in flow.keys(flow.p.processed, "thumbnails/") if "/photos/red.jpg" in k]
    [event] = delete_every_version(flow, gone)

    flow.invoke("tag", event)
    flow.invoke("tag", event)  # a duplicate moves nothing

    assert [k for k in flow.keys(flow.p.processed, "thumbnails/") if "/photos/red.jpg" in k] == []
    assert flow.item(gone) is None and flow.item(kept) is not None
    assert flow.counts() == {label: count - 1 for label, count in before.items()}
    assert_counts_match_memberships(flow)
    assert receipt_key("photos/red.jpg") not in flow.keys(flow.p.processed, "receipts/")
    record = flow.record("photos/red.jpg")
    assert (record["status"], record["deleted_from"]) == ("deleted", "archive")
    assert record["archive_key"] == gone
    assert record["archived_copy_kept"] is False
    assert sorted(record["outputs_removed"]) == sorted(thumbnails)
    report = flow.audit()
    assert_clean(report)
    assert report.ledger.versions_deleted == 1


def test_deleting_every_version_of_a_name_with_older_copies_removes_the_newest_once(
    flow: Flow,
) -> None:
    """The name also holds an older upload's copy (noncurrent under a delete marker, kept
    under superseded/ and recorded so): deleting the current copy by id leaves that older
    copy newest, which is not the receipt's version, so only the deletion of the last
    copy removes the input; then a replay of every event changes nothing."""
    flow.upload("data/a.txt", b"first")
    flow.upload("data/a.txt", b"second")
    name = "rejected/data/a.txt"
    listing = flow.p.s3.list_object_versions(Bucket=flow.p.archive, Prefix=name)
    copies = listing["Versions"]
    assert len(copies) == 2  # and the delete marker that made the older one noncurrent
    events = []
    # Newest first, the copies then the marker, each event delivered as it comes: the
    # input is removed when its last copy goes, whatever markers are left.
    for index, version in enumerate([*copies, *listing.get("DeleteMarkers", [])]):
        flow.p.s3.delete_object(Bucket=flow.p.archive, Key=name, VersionId=version["VersionId"])
        events.append(version_removal_event(flow.p.archive, name, version["VersionId"]))
        flow.invoke("tag", events[-1])
        removed = receipt_key("data/a.txt") not in flow.keys(flow.p.processed, "receipts/")
        assert removed is (index >= len(copies) - 1)
    for event in events:
        flow.invoke("tag", event)

    assert flow.keys(flow.p.processed, "receipts/") == []
    records = [
        json.loads(flow.p.s3.get_object(Bucket=flow.p.processed, Key=key)["Body"].read())
        for key in flow.keys(flow.p.processed, "versions/")
    ]
    assert sorted(r["status"] for r in records) == ["deleted", "superseded"]
    [removed] = [r for r in records if r["status"] == "deleted"]
    assert removed["archived_copy_kept"] is False
    assert_clean(flow.audit())


def test_a_receipts_version_still_in_raw_is_not_taken_for_a_removal(flow: Flow) -> None:
    """Not archived yet: the name's only version (an earlier upload's copy) deleted by id
    while the newest version waits in RAW for the archive handler."""
    flow.upload("photos/late.jpg", picture((1, 2, 3)))
    flow.p.s3.put_object(Bucket=flow.p.raw, Key="photos/late.jpg", Body=picture((3, 2, 1)))
    flow.invoke("transform", object_event_for(flow.p.s3, flow.p.raw, "photos/late.jpg"))
    events = delete_every_version(flow, "images/photos/late.jpg")

    for event in events:
        flow.invoke("tag", event)

    assert receipt_key("photos/late.jpg") in flow.keys(flow.p.processed, "receipts/")
    flow.invoke(
        "archive", object_event_for(flow.p.s3, flow.p.processed, receipt_key("photos/late.jpg"))
    )
    assert "images/photos/late.jpg" in flow.keys(flow.p.archive, "images/")


# --- duplicates and order ---------------------------------------------------------------------


def test_a_duplicate_removal_moves_no_count(flow: Flow) -> None:
    gone, _, before = tagged_twins(flow)
    event = flow.rm(gone)

    flow.invoke("tag", event)
    after_first = flow.counts()
    flow.invoke("tag", event)
    flow.invoke("tag", event)

    assert flow.counts() == after_first == {label: n - 1 for label, n in before.items()}
    assert_counts_match_memberships(flow)
    assert_clean(flow.audit())


def test_a_removal_delivered_before_the_creation_leaves_nothing_labelled(flow: Flow) -> None:
    flow.upload("photos/quick.jpg", picture((10, 200, 10)))
    created = flow.created("images/photos/quick.jpg")  # the tag message, not yet served

    flow.invoke("tag", flow.rm("images/photos/quick.jpg"))  # served first
    flow.invoke("tag", created)

    assert flow.counts() == {} or set(flow.counts().values()) == {0}
    assert flow.memberships() == Counter()
    assert flow.item("images/photos/quick.jpg") is None
    assert flow.keys(flow.p.processed) == [
        k for k in flow.keys(flow.p.processed) if k.startswith("versions/")
    ]
    assert_clean(flow.audit())


def test_creation_tag_and_receipt_replayed_after_the_removal_change_nothing(flow: Flow) -> None:
    gone, _, before = tagged_twins(flow)
    created = flow.created(gone)
    events = flow.upload("photos/late.jpg", picture((200, 10, 10)))  # a third red photo
    flow.invoke("tag", flow.created("images/photos/late.jpg"))
    removal = flow.rm("images/photos/late.jpg")
    flow.invoke("tag", removal)
    flow.invoke("tag", flow.rm(gone))
    settled = flow.counts()

    for name, event in (
        ("tag", created),
        ("tag", removal),
        ("archive", events["receipt"]),
        ("transform", events["raw"]),
    ):
        flow.invoke(name, event)

    assert flow.counts() == settled == {label: n - 1 for label, n in before.items()}
    assert flow.item(gone) is None and flow.item("images/photos/late.jpg") is None
    assert_counts_match_memberships(flow)
    assert_clean(flow.audit())


def test_the_archive_handlers_own_supersession_is_not_a_removal(flow: Flow) -> None:
    """Archiving a new version first makes the old copy noncurrent (AWS sends a removal
    event for it); served in that moment, before the new copy exists, it removes nothing:
    the removed copy is not the version the receipt names."""
    flow.upload("photos/again.jpg", picture((200, 10, 10)))
    flow.invoke("tag", flow.created("images/photos/again.jpg"))
    flow.p.s3.put_object(Bucket=flow.p.raw, Key="photos/again.jpg", Body=picture((9, 9, 200)))
    flow.invoke("transform", object_event_for(flow.p.s3, flow.p.raw, "photos/again.jpg"))
    body = flow.p.s3.get_object(Bucket=flow.p.processed, Key=receipt_key("photos/again.jpg"))
    request = ArchiveRequest.of(parse_receipt(body["Body"].read(), flow.p.raw), flow.p.raw)
    # The archive handler's first move for the new version (its step 3).
    supersede_archived_copies(flow.p.s3, ArchiveSettings.from_env(os.environ), request)
    markers = flow.p.s3.list_object_versions(
        Bucket=flow.p.archive, Prefix="images/photos/again.jpg"
    )["DeleteMarkers"]

    flow.invoke(
        "tag", removal_event(flow.p.archive, "images/photos/again.jpg", markers[0]["VersionId"])
    )
    flow.invoke(
        "archive", object_event_for(flow.p.s3, flow.p.processed, receipt_key("photos/again.jpg"))
    )
    flow.invoke("tag", flow.created("images/photos/again.jpg"))

    assert flow.item("images/photos/again.jpg") is not None
    assert receipt_key("photos/again.jpg") in flow.keys(flow.p.processed, "receipts/")
    assert flow.record("photos/again.jpg")["status"] == "superseded"
    assert_counts_match_memberships(flow)
    assert_clean(flow.audit())


def test_a_removal_waits_for_a_transform_of_the_same_key(flow: Flow) -> None:
    """The removed version's outputs have the names a new upload's transform writes: the
    removal takes the key's transform lease, so it is retried while one holds it."""
    flow.upload("photos/busy.jpg", picture((200, 10, 10)))
    event = flow.rm("images/photos/busy.jpg")
    tag = flow.handlers["tag"]
    with key_lease(flow.p.s3, flow.p.processed, "photos/busy.jpg", LeaseTerms(owner="other")):
        response = tag.handler(event, flow.context)
        assert len(response["batchItemFailures"]) == 1
        assert receipt_key("photos/busy.jpg") in flow.keys(flow.p.processed, "receipts/")
    flow.invoke("tag", event)
    assert flow.keys(flow.p.processed, "receipts/") == []
    assert_clean(flow.audit())


# --- a RAW input whose receipt exists ---------------------------------------------------


def test_deleted_from_raw_after_its_receipt_and_before_archiving(flow: Flow) -> None:
    flow.p.s3.put_object(Bucket=flow.p.raw, Key="photos/early.jpg", Body=picture((1, 2, 3)))
    flow.invoke("transform", object_event_for(flow.p.s3, flow.p.raw, "photos/early.jpg"))
    receipt = object_event_for(flow.p.s3, flow.p.processed, receipt_key("photos/early.jpg"))
    assert flow.item("images/photos/early.jpg") is not None
    flow.p.s3.delete_object(Bucket=flow.p.raw, Key="photos/early.jpg")

    flow.invoke("archive", receipt)
    flow.invoke("archive", receipt)

    assert flow.item("images/photos/early.jpg") is None
    assert flow.keys(flow.p.processed, "thumbnails/") == []
    assert flow.keys(flow.p.archive) == []
    record = flow.record("photos/early.jpg")
    assert (record["status"], record["deleted_from"]) == ("deleted", "raw")
    assert_clean(flow.audit())


def late_upload_event(flow: Flow, key: str, *, with_version_id: bool) -> dict[str, Any]:
    """The upload's event delivered again, late: as AWS sends it on a versioned bucket
    (with ``versionId``), or as moto does (without)."""
    head = flow.p.s3.head_object(Bucket=flow.p.raw, Key=key)
    return sqs_batch(
        s3_event(
            s3_record(
                flow.p.raw,
                key,
                etag=head["ETag"].strip('"'),
                size=head["ContentLength"],
                version_id=head["VersionId"] if with_version_id else None,
            )
        )
    )


@pytest.mark.parametrize("with_version_id", [True, False], ids=["aws-event", "moto-event"])
def test_one_ledger_record_per_version_when_its_event_comes_after_the_removal(
    flow: Flow, with_version_id: bool
) -> None:
    """A version deleted from RAW after its receipt is removed with what it owns and
    recorded once (decision 30); its upload event delivered again afterwards finds no
    receipt and the key gone, and must neither add a second record (named by ETag when the
    event has no version id) nor overwrite the first (which lists the outputs removed)."""
    key = "photos/late.jpg"
    flow.p.s3.put_object(Bucket=flow.p.raw, Key=key, Body=picture((4, 5, 6)))
    late = late_upload_event(flow, key, with_version_id=with_version_id)
    version_id = flow.p.s3.head_object(Bucket=flow.p.raw, Key=key)["VersionId"]
    flow.invoke("transform", late)
    receipt = object_event_for(flow.p.s3, flow.p.processed, receipt_key(key))
    flow.p.s3.delete_object(Bucket=flow.p.raw, Key=key)
    flow.invoke("archive", receipt)
    removed = flow.record(key)

    flow.invoke("transform", late)

    assert flow.keys(flow.p.processed, "versions/") == [version_record_key(key, version_id)]
    assert flow.record(key) == removed
    assert removed["outputs_removed"]
    assert_clean(flow.audit())


def test_one_ledger_record_per_version_deleted_before_processing_whatever_its_events_carry(
    flow: Flow,
) -> None:
    """Deleted before it was transformed: moto's event (no version id) and AWS's (with it)
    name the same version, so both record it once, under its version id."""
    key = "retina/gone.json"
    flow.p.s3.put_object(Bucket=flow.p.raw, Key=key, Body=RETINA)
    version_id = flow.p.s3.head_object(Bucket=flow.p.raw, Key=key)["VersionId"]
    events = [late_upload_event(flow, key, with_version_id=w) for w in (False, True)]
    flow.p.s3.delete_object(Bucket=flow.p.raw, Key=key)

    for event in events:
        flow.invoke("transform", event)

    assert flow.keys(flow.p.processed, "versions/") == [version_record_key(key, version_id)]
    record = flow.record(key)
    assert (record["status"], record["deleted_from"]) == ("deleted", "raw")
    assert record["source"]["version_id"] == version_id
    assert_clean(flow.audit())


# --- the API ----------------------------------------------------------------------------------


def test_api_delete_goes_the_same_way_and_the_audit_stays_clean(flow: Flow) -> None:
    gone, kept, before = tagged_twins(flow)
    api = ApiClient(api_handler())

    answer = api.call("DELETE", f"/images/{image_id(gone)}", claims=ADMIN)
    # AWS then delivers the removal of the original to the tag handler: a duplicate.
    marker = flow.p.s3.list_object_versions(Bucket=flow.p.archive, Prefix=gone)["DeleteMarkers"]
    flow.invoke("tag", removal_event(flow.p.archive, gone, marker[0]["VersionId"]))

    assert answer.status == 204
    assert api.call("DELETE", f"/images/{image_id(gone)}", claims=ADMIN).status == 404
    assert flow.counts() == {label: n - 1 for label, n in before.items()}
    assert flow.item(gone) is None and flow.item(kept) is not None
    assert flow.record("photos/red.jpg")["deleted_from"] == "archive"
    assert_clean(flow.audit())


def test_api_delete_waits_for_a_labelling_run(flow: Flow) -> None:
    gone, _, before = tagged_twins(flow)
    image_items.acquire_lease(
        flow.p.dynamodb, flow.p.images_table, image_id(gone), owner="tagging", now=0, until=9e9
    )
    api = ApiClient(api_handler())

    busy = api.call("DELETE", f"/images/{image_id(gone)}", claims=ADMIN)
    assert (busy.status, busy.json()["error"]["code"]) == (409, "busy")
    assert flow.counts() == before
    image_items.release_lease(flow.p.dynamodb, flow.p.images_table, image_id(gone), "tagging")

    assert api.call("DELETE", f"/images/{image_id(gone)}", claims=ADMIN).status == 204
    assert flow.counts() == {label: n - 1 for label, n in before.items()}
    assert_clean(flow.audit())


def test_version_record_key_names_the_removed_version(flow: Flow) -> None:
    flow.upload("photos/named.jpg", picture((9, 9, 9)))
    source = json.loads(
        flow.p.s3.get_object(Bucket=flow.p.processed, Key=receipt_key("photos/named.jpg"))[
            "Body"
        ].read()
    )["source"]
    flow.invoke("tag", flow.rm("images/photos/named.jpg"))
    assert version_record_key("photos/named.jpg", source["version_id"]) in flow.keys(
        flow.p.processed, "versions/"
    )


# --- issue 10's leftover: a later version deleted after an earlier one was archived ----------


def test_a_newer_version_deleted_before_archiving_leaves_the_archived_older_one_superseded(
    flow: Flow,
) -> None:
    """The key's newest version is gone, so the key is: the earlier, archived and labelled
    version is kept under superseded/ and recorded so, and leaves the library."""
    flow.upload("photos/two.jpg", picture((200, 10, 10)))
    flow.invoke("tag", flow.created("images/photos/two.jpg"))
    assert flow.counts()
    flow.p.s3.put_object(Bucket=flow.p.raw, Key="photos/two.jpg", Body=picture((9, 9, 200)))
    flow.invoke("transform", object_event_for(flow.p.s3, flow.p.raw, "photos/two.jpg"))
    receipt = object_event_for(flow.p.s3, flow.p.processed, receipt_key("photos/two.jpg"))
    flow.p.s3.delete_object(Bucket=flow.p.raw, Key="photos/two.jpg")

    flow.invoke("archive", receipt)
    flow.invoke("archive", receipt)

    assert flow.keys(flow.p.archive, "images/") == []
    assert len(flow.keys(flow.p.archive, "superseded/")) == 1
    statuses = sorted(
        json.loads(flow.p.s3.get_object(Bucket=flow.p.processed, Key=k)["Body"].read())["status"]
        for k in flow.keys(flow.p.processed, "versions/")
    )
    assert statuses == ["deleted", "superseded"]
    assert flow.item("images/photos/two.jpg") is None
    assert flow.memberships() == Counter() and not any(flow.counts().values())
    assert flow.keys(flow.p.processed, "thumbnails/") == []
    assert_clean(flow.audit())


def test_a_newer_version_deleted_while_transformed_leaves_the_archived_ones_outputs(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newer version's transform wrote over the outputs of the archived one (same
    names), then found itself deleted: the archived version's receipt still lists them, so
    they are put back as that receipt wrote them, not deleted."""
    flow.upload("retina/two.json", RETINA)
    before = {
        key: flow.p.s3.get_object(Bucket=flow.p.processed, Key=key)["Body"].read()
        for key in ("data/retina/two.json", "errors/retina/two.json.jsonl")
    }
    transform = flow.handlers["transform"]
    real = transform.transform_data

    def delete_meanwhile(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        flow.p.s3.delete_object(Bucket=flow.p.raw, Key="retina/two.json")
        return result

    monkeypatch.setattr(transform, "transform_data", delete_meanwhile)
    valid_only = json.dumps([json.loads(RETINA)[0]] * 3).encode()
    flow.p.s3.put_object(Bucket=flow.p.raw, Key="retina/two.json", Body=valid_only)
    flow.invoke("transform", object_event_for(flow.p.s3, flow.p.raw, "retina/two.json"))

    after = {
        key: flow.p.s3.get_object(Bucket=flow.p.processed, Key=key)["Body"].read() for key in before
    }
    assert after == before
    assert_clean(flow.audit())


def test_outputs_put_back_are_the_versions_the_receipt_wrote_not_same_sized_ones(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newer version's outputs have the same size as the archived one's (the same
    records in another order) and are written within the second of its receipt: only the
    version id the receipt lists tells them apart."""
    records = json.loads(IKERIAN_SAMPLE.read_bytes())
    flow.upload("retina/same.json", json.dumps(records).encode())
    receipt = json.loads(
        flow.p.s3.get_object(Bucket=flow.p.processed, Key=receipt_key("retina/same.json"))[
            "Body"
        ].read()
    )
    [output] = receipt["outputs"]
    assert output["key"] == "data/retina/same.json" and output["version_id"]
    before = flow.p.s3.get_object(Bucket=flow.p.processed, Key=output["key"])["Body"].read()
    transform = flow.handlers["transform"]
    real = transform.transform_data

    def delete_meanwhile(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        flow.p.s3.delete_object(Bucket=flow.p.raw, Key="retina/same.json")
        return result

    monkeypatch.setattr(transform, "transform_data", delete_meanwhile)
    swapped = json.dumps(records[::-1]).encode()
    flow.p.s3.put_object(Bucket=flow.p.raw, Key="retina/same.json", Body=swapped)
    flow.invoke("transform", object_event_for(flow.p.s3, flow.p.raw, "retina/same.json"))

    versions = flow.p.s3.list_object_versions(Bucket=flow.p.processed, Prefix=output["key"])
    sizes = {v["Size"] for v in versions["Versions"] if v["Key"] == output["key"]}
    assert sizes == {output["size"]} and len(versions["Versions"]) >= 2
    after = flow.p.s3.get_object(Bucket=flow.p.processed, Key=output["key"])["Body"].read()
    assert after == before
    assert_clean(flow.audit())


def test_restoring_an_output_by_etag_or_as_an_older_receipt_lists_it(flow: Flow) -> None:
    """Without a version id (a bucket without versioning answers none) the ETag decides;
    a receipt from before outputs named their version is matched by size and time."""
    s3, bucket, key = flow.p.s3, flow.p.processed, "data/retina/old.json"
    first = s3.put_object(Bucket=bucket, Key=key, Body=b"[1, 2]")
    s3.put_object(Bucket=bucket, Key=key, Body=b"[2, 1]")  # same size, not the receipt's
    by_etag = {"bucket": bucket, "key": key, "size": 6, "version_id": None, "etag": first["ETag"]}
    assert restore_outputs(s3, bucket, {"outputs": [by_etag]}) == []
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"[1, 2]"

    s3.put_object(Bucket=bucket, Key=key, Body=b"[3, 4, 5]")
    legacy = {"bucket": bucket, "key": key, "size": 6}
    later = utc_iso(datetime.now(UTC) + timedelta(hours=1))
    assert restore_outputs(s3, bucket, {"processed_at": later, "outputs": [legacy]}) == []
    assert len(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == 6
    gone = {**by_etag, "etag": '"0123456789abcdef0123456789abcdef"'}
    assert restore_outputs(s3, bucket, {"outputs": [gone]}) == [key]
