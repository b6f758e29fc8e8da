"""The api handler against moto, route by route, as API Gateway would call it.

Uploads are sent with plain HTTP (``requests``) to the presigned URLs, then processed by
the real transform, archive and tag handlers in process, so the images, labels and
receipts the API reads are the pipeline's own.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import jsonschema
import pytest
import requests
import yaml
from PIL import Image

from sluice.handlers.api import Dependencies
from sluice.keys import receipt_key
from sluice.label_items import images_for_label
from tests.conftest import REGION, FakeContext, Pipeline, load_handler
from tests.integration.api_support import (
    ADMIN,
    ADMIN_SUB,
    MEMBER,
    MEMBER_SUB,
    ROUTE_KEYS,
    ApiClient,
    api_handler,
    encoded,
    process,
)
from tests.s3events import object_event_for
from tests.security_support import SAMPLES_DIR, CapturedLogs, install_capture, remove_capture
from tests.sigv4 import accepts

PHOTO = SAMPLES_DIR / "photos" / "sunset-beach.jpg"
DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text(encoding="utf-8")
)


def assert_documented(answer: Any, schema: str) -> None:
    """The answer matches docs/openapi.yaml's ``components/schemas/<schema>`` (3.1 is JSON
    Schema 2020-12), so the document describes the new fields as they are served."""
    document = {"$ref": f"#/components/schemas/{schema}", "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(document).validate(answer)


SCANS = SAMPLES_DIR / "retina" / "scans-partly-invalid.json"


@pytest.fixture
def handlers(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, ModuleType]]:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="sluice-test-upload",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]
    monkeypatch.setenv("UPLOAD_ROLE_ARN", role["Arn"])
    monkeypatch.setenv("MAX_UPLOAD_BYTES", str(64 * 1024 * 1024))
    monkeypatch.setenv("THUMBNAIL_SIZES", "64,128")
    yield {name: load_handler(name) for name in ("transform", "archive", "tag", "bundle")}


@pytest.fixture
def deps(handlers: dict[str, ModuleType]) -> Dependencies:
    """The api function's settings and moto clients, as its cold start would build them
    (after ``handlers``, which sets the environment)."""
    return Dependencies.from_env(os.environ)


@pytest.fixture
def api(deps: Dependencies) -> ApiClient:
    return ApiClient(api_handler(deps))


def upload_photo(
    api: ApiClient, claims: dict[str, Any] = MEMBER, name: str = "Sunset beach.JPG"
) -> str:
    data = PHOTO.read_bytes()
    answer = api.call(
        "POST",
        "/uploads",
        body={"filename": name, "content_type": "image/jpeg", "size": len(data)},
        claims=claims,
    )
    assert answer.status == 201, answer.body
    upload = answer.json()
    sent = requests.put(upload["url"], data=data, headers=upload["headers"], timeout=30)
    assert sent.status_code == 200
    return str(upload["key"])


# --- health and authentication ---------------------------------------------------------------


def test_health_answers_without_a_token_and_without_details(api: ApiClient) -> None:
    answer = api.call("GET", "/health", claims=None)

    assert (answer.status, answer.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("route", [key for key in ROUTE_KEYS if key != "GET /health"])
def test_every_guarded_route_refuses_a_request_without_verified_claims(
    api: ApiClient, route: str
) -> None:
    method, path = route.split(" ", 1)
    concrete = re.sub(r"\{[^}]+\}", "x", path)

    answer = api.call(method, concrete, claims=None, body={})

    assert answer.status == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_every_line_a_request_logs_carries_its_api_gateway_request_id(api: ApiClient) -> None:
    capture = CapturedLogs()
    attached = install_capture(capture)
    try:
        answers = [api.call("GET", "/images", query={"limit": "0"}) for _ in range(2)]
    finally:
        remove_capture(capture, attached)
    logged = [json.loads(text) for _, text in capture.entries if '"request refused"' in text]

    assert [line.get("correlation_id") for line in logged] == [a.request_id for a in answers]
    assert answers[0].request_id != answers[1].request_id


# --- uploads ------------------------------------------------------------------------------------


def signing_secret(deps: Dependencies) -> str:
    """The secret key the api's S3 client signs with (moto's mock may substitute its own)."""
    credentials = deps.s3._request_signer._credentials
    return str(credentials.get_frozen_credentials().secret_key)


def test_a_presigned_put_is_bound_to_its_key_type_size_and_lifetime(
    api: ApiClient, deps: Dependencies
) -> None:
    answer = api.call(
        "POST",
        "/uploads",
        body={"filename": "../../etc/Été 2024!.JPG", "content_type": "image/jpeg", "size": 1234},
    )

    assert answer.status == 201
    upload = answer.json()
    assert re.fullmatch(
        rf"uploads/{MEMBER_SUB}/\d{{4}}-\d\d-\d\d/[0-9a-f]{{32}}-Ete-2024.JPG", upload["key"]
    )
    assert upload["headers"] == {"Content-Type": "image/jpeg"}
    now = datetime.now(UTC)
    expires = datetime.fromisoformat(upload["expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=890) < expires - now <= timedelta(seconds=900)
    good = {"Content-Type": "image/jpeg", "Content-Length": "1234"}
    secret = signing_secret(deps)
    assert accepts(upload["url"], method="PUT", headers=good, secret_key=secret, now=now)
    for method, headers, at in (
        ("PUT", {**good, "Content-Type": "image/png"}, now),
        ("PUT", {**good, "Content-Length": "99"}, now),
        ("POST", good, now),
        ("PUT", good, now + timedelta(seconds=901)),
    ):
        assert not accepts(upload["url"], method=method, headers=headers, secret_key=secret, now=at)
    other_key = upload["url"].replace(upload["key"].rsplit("/", 1)[1], "x.jpg")
    assert not accepts(other_key, method="PUT", headers=good, secret_key=secret, now=now)


def upload_body(name: str, content_type: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"filename": name, "content_type": content_type, "size": size, **extra}


TOO_BIG = 64 * 1024 * 1024 + 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (upload_body("notes.txt", "text/plain", 10), 415, "unsupported_media_type"),
        (upload_body("photo.png", "image/jpeg", 10), 422, "extension_mismatch"),
        (upload_body("a.jpg", "image/jpeg", TOO_BIG), 413, "too_large"),
        (upload_body("scans.json", "application/json", 10), 422, "dataset_required"),
        (upload_body("s.json", "application/json", 9, dataset="x"), 422, "unknown_dataset"),
        (upload_body("a.jpg", "image/jpeg", 9, dataset="retina"), 422, "dataset_not_allowed"),
        (upload_body("a.jpg", "image/jpeg", 0), 422, "invalid_request"),
        ({"filename": "a.jpg", "content_type": "image/jpeg"}, 422, "invalid_request"),
    ],
)
def test_uploads_the_pipeline_cannot_take_are_refused_with_a_reason(
    api: ApiClient, body: dict[str, Any], status: int, code: str
) -> None:
    answer = api.call("POST", "/uploads", body=body)

    assert answer.status == status, answer.body
    assert answer.json()["error"]["code"] == code


def test_a_body_that_is_not_json_is_a_bad_request(api: ApiClient) -> None:
    answer = api.call("POST", "/uploads", raw_body="{not json")

    assert (answer.status, answer.json()["error"]["code"]) == (400, "invalid_json")


def test_schema_errors_name_paths_and_never_echo_values_or_field_names_in_the_message(
    api: ApiClient,
) -> None:
    body = {"filename": "a.jpg", "content_type": "image/jpeg", "size": "secret-1234"}

    answer = api.call("POST", "/uploads", body=body)

    assert answer.status == 422
    assert "secret-1234" not in answer.body.decode()
    assert answer.json()["error"]["details"] == [
        {"path": "$.size", "message": "must be of type integer, got string"}
    ]


def test_data_files_land_under_their_dataset_prefix_so_the_transform_accepts_them(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType]
) -> None:
    data = SCANS.read_bytes()
    body = upload_body("scans.json", "application/json", len(data), dataset="retina")
    answer = api.call("POST", "/uploads", body=body)
    upload = answer.json()
    assert upload["key"].startswith(f"retina/uploads/{MEMBER_SUB}/")
    requests.put(upload["url"], data=data, headers=upload["headers"], timeout=30).raise_for_status()
    process(pipeline, handlers, upload["key"])

    receipt = api.call("GET", f"/inputs/{encoded(upload['key'])}").json()

    assert receipt["status"] == "processed" and receipt["dataset"] == "retina"
    assert receipt["stats"]["records_invalid"] > 0
    assert receipt["errors"] and all("record_index" in e and "path" in e for e in receipt["errors"])
    links = {name: receipt.pop(name) for name in LINK_FIELDS}
    assert set(receipt) == {
        "key", "status", "kind", "dataset", "size", "processed_at", "stats", "errors",
        "errors_truncated",
    }  # fmt: skip
    assert pipeline.processed not in json.dumps(receipt), "buckets only inside the links"
    assert links["output_url"] and links["errors_report_url"]


LINK_FIELDS = ("output_url", "errors_report_url", "links_expire_at")


def assert_signed_get_for(url: str, secret: str, ttl: int = 900) -> None:
    """A presigned GET that S3 accepts now and refuses once the environment's link lifetime
    (``LINK_TTL_SECONDS``) has passed, and that signs no other method."""
    now = datetime.now(UTC)
    assert accepts(url, method="GET", headers={}, secret_key=secret, now=now)
    assert not accepts(url, method="PUT", headers={}, secret_key=secret, now=now)
    later = now + timedelta(seconds=ttl + 1)
    assert not accepts(url, method="GET", headers={}, secret_key=secret, now=later)


def test_a_data_files_receipt_links_its_clean_output_and_its_errors_report(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType], deps: Dependencies
) -> None:
    """Issue 14's Data files page: presigned GETs of the PROCESSED output and errors report,
    for the uploader (and admins), in the list and the single view alike."""
    data = SCANS.read_bytes()
    body = upload_body("scans.json", "application/json", len(data), dataset="retina")
    upload = api.call("POST", "/uploads", body=body).json()
    requests.put(upload["url"], data=data, headers=upload["headers"], timeout=30).raise_for_status()
    process(pipeline, handlers, upload["key"])

    single = api.call("GET", f"/inputs/{encoded(upload['key'])}").json()
    [listed] = api.call("GET", "/inputs").json()["inputs"]

    assert listed["key"] == upload["key"]
    secret = signing_secret(deps)
    for view in (single, listed):
        assert_documented(view, "Input")
        output = requests.get(view["output_url"], timeout=30)
        report = requests.get(view["errors_report_url"], timeout=30)
        stored = pipeline.s3.get_object(Bucket=pipeline.processed, Key=f"data/{upload['key']}")
        assert output.content == stored["Body"].read()
        assert json.loads(output.content) and isinstance(json.loads(output.content), list)
        lines = [json.loads(line) for line in report.text.splitlines()]
        assert [e["record_index"] for e in lines] == [e["record_index"] for e in view["errors"]]
        assert_signed_get_for(view["output_url"], secret)
        assert_signed_get_for(view["errors_report_url"], secret)
        expires = datetime.fromisoformat(view["links_expire_at"].replace("Z", "+00:00"))
        assert timedelta(seconds=890) < expires - datetime.now(UTC) <= timedelta(seconds=900)


def test_a_rejected_or_fully_valid_data_file_links_only_what_exists(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType]
) -> None:
    """A rejected file has no outputs (its reasons are in the receipt); a file without
    invalid records has no errors report; an image's receipt has no data links at all."""
    valid = SAMPLES_DIR / "retina" / "scans-2024-q1.json"
    malformed = SAMPLES_DIR / "retina" / "scans-malformed.json"
    keys = {}
    for path in (valid, malformed):
        data = path.read_bytes()
        body = upload_body(path.name, "application/json", len(data), dataset="retina")
        upload = api.call("POST", "/uploads", body=body).json()
        requests.put(
            upload["url"], data=data, headers=upload["headers"], timeout=30
        ).raise_for_status()
        process(pipeline, handlers, upload["key"])
        keys[path.name] = upload["key"]
    photo = upload_photo(api)
    process(pipeline, handlers, photo)

    good = api.call("GET", f"/inputs/{encoded(keys[valid.name])}").json()
    bad = api.call("GET", f"/inputs/{encoded(keys[malformed.name])}").json()
    image = api.call("GET", f"/inputs/{encoded(photo)}").json()

    assert good["status"] == "processed" and good["stats"]["records_invalid"] == 0
    assert requests.get(good["output_url"], timeout=30).status_code == 200
    assert good["errors_report_url"] is None
    assert bad["status"] == "rejected" and bad["errors"][0]["code"] == "malformed_json"
    assert (bad["output_url"], bad["errors_report_url"], bad["links_expire_at"]) == (
        None,
        None,
        None,
    )
    assert not set(LINK_FIELDS) & set(image)
    for view in (good, bad, image):
        assert_documented(view, "Input")


def test_multipart_upload_round_trip_and_ownership(api: ApiClient, pipeline: Pipeline) -> None:
    size = 17 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    started = api.call(
        "POST",
        "/uploads/multipart",
        body={"filename": "big.jpg", "content_type": "image/jpeg", "size": size},
    )
    assert started.status == 201
    upload = started.json()
    assert upload["part_size"] == 8 * 1024 * 1024 and len(upload["parts"]) == 3
    etags = []
    for part in upload["parts"]:
        start = (part["part_number"] - 1) * upload["part_size"]
        sent = requests.put(
            part["url"], data=payload[start : start + upload["part_size"]], timeout=30
        )
        sent.raise_for_status()
        etags.append({"part_number": part["part_number"], "etag": sent.headers["ETag"]})
    upload_id = upload["upload_id"]

    stranger = api.call(
        "POST", f"/uploads/multipart/{upload_id}/complete", body={"parts": etags}, claims=ADMIN
    )
    done = api.call("POST", f"/uploads/multipart/{upload_id}/complete", body={"parts": etags})

    assert stranger.status == 404  # another user's upload is not found, not forbidden
    assert done.status == 200 and done.json()["key"] == upload["key"]
    head = pipeline.s3.head_object(Bucket=pipeline.raw, Key=upload["key"])
    assert head["ContentLength"] == len(payload) and head["ContentType"] == "image/jpeg"


def test_multipart_complete_with_wrong_etags_conflicts_and_abort_is_idempotent(
    api: ApiClient,
) -> None:
    upload = api.call(
        "POST",
        "/uploads/multipart",
        body={"filename": "b.png", "content_type": "image/png", "size": 100},
    ).json()
    (part,) = upload["parts"]
    requests.put(part["url"], data=b"x" * 100, timeout=30).raise_for_status()

    wrong = api.call(
        "POST",
        f"/uploads/multipart/{upload['upload_id']}/complete",
        body={"parts": [{"part_number": 1, "etag": "0" * 32}]},
    )
    aborted = api.call("DELETE", f"/uploads/multipart/{upload['upload_id']}")
    again = api.call("DELETE", f"/uploads/multipart/{upload['upload_id']}")
    garbage = api.call("DELETE", "/uploads/multipart/not-an-id")

    assert (wrong.status, wrong.json()["error"]["code"]) == (409, "parts_mismatch")
    assert (aborted.status, again.status, garbage.status) == (204, 204, 404)


def test_one_key_credentials_come_from_a_session_policy_naming_only_that_key(
    api: ApiClient, pipeline: Pipeline, deps: Dependencies
) -> None:
    sent: list[dict[str, Any]] = []
    sts = deps.sts
    sts.meta.events.register(
        "before-parameter-build.sts.AssumeRole", lambda params, **_: sent.append(dict(params))
    )

    answer = api.call(
        "POST",
        "/uploads/credentials",
        body={"filename": "cli.jpg", "content_type": "image/jpeg", "size": 5},
    )

    assert answer.status == 201
    granted = answer.json()
    assert granted["bucket"] == pipeline.raw and granted["region"] == REGION
    assert set(granted["credentials"]) == {
        "access_key_id",
        "secret_access_key",
        "session_token",
        "expiration",
    }
    (call,) = sent
    assert call["DurationSeconds"] == 900
    policy = json.loads(call["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == f"arn:aws:s3:::{pipeline.raw}/{granted['key']}"
    assert set(statement["Action"]) == {
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }
    assert "*" not in statement["Resource"] and "?" not in statement["Resource"]


# --- images, labels, deletion ---------------------------------------------------------------


def test_images_labels_and_deletion(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType]
) -> None:
    keys = [upload_photo(api, name=f"photo-{n}.jpg") for n in range(3)]
    for key in keys:
        process(pipeline, handlers, key)

    page = api.call("GET", "/images", query={"limit": "2"}).json()
    rest = api.call("GET", "/images", query={"limit": "2", "cursor": page["next_cursor"]}).json()
    labels = api.call("GET", "/labels").json()["labels"]

    images = page["images"] + rest["images"]
    assert sorted(image["name"] for image in images) == [
        "photo-0.jpg",
        "photo-1.jpg",
        "photo-2.jpg",
    ]
    assert all(image["labels"] for image in images)
    top = labels[0]
    assert top["count"] == 3  # the same photo three times: every label counts three
    by_label = api.call("GET", "/images", query={"label": top["label"]}).json()
    assert len(by_label["images"]) == 3 and by_label["next_cursor"] is None

    image_id = images[0]["id"]
    detail = api.call("GET", f"/images/{image_id}").json()
    assert set(detail["thumbnails"]) == {"64", "128"}
    original = requests.get(detail["original_url"], timeout=30)
    assert original.content == PHOTO.read_bytes()
    assert detail["bytes"] == len(PHOTO.read_bytes())

    forbidden = api.call("DELETE", f"/images/{image_id}", claims=MEMBER)
    deleted = api.call("DELETE", f"/images/{image_id}", claims=ADMIN)
    gone = api.call("GET", f"/images/{image_id}")
    again = api.call("DELETE", f"/images/{image_id}", claims=ADMIN)

    assert (forbidden.status, forbidden.json()["error"]["code"]) == (403, "forbidden")
    assert (deleted.status, gone.status, again.status) == (204, 404, 404)
    after = {
        entry["label"]: entry["count"] for entry in api.call("GET", "/labels").json()["labels"]
    }
    assert after[top["label"]] == 2
    archive = pipeline.s3.list_objects_v2(Bucket=pipeline.archive, Prefix="images/").get(
        "Contents", []
    )
    assert len(archive) == 2
    thumbnails = [
        item["Key"]
        for item in pipeline.s3.list_objects_v2(
            Bucket=pipeline.processed, Prefix="thumbnails/"
        ).get("Contents", [])
    ]
    assert len(thumbnails) == 4


def test_a_cursor_the_api_did_not_issue_is_a_bad_request(api: ApiClient) -> None:
    for query in (
        {"cursor": "bm90LWEtY3Vyc29y"},
        {"cursor": "%%%"},
        {"label": "x", "cursor": "e30="},
        {"limit": "0"},
    ):
        answer = api.call("GET", "/images", query=query)
        assert answer.status == 400, (query, answer.body)


# --- bundles -----------------------------------------------------------------------------------


def test_bundle_request_status_and_link(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType]
) -> None:
    process(pipeline, handlers, upload_photo(api))
    label = api.call("GET", "/labels").json()["labels"][0]["label"]

    created = api.call("POST", "/bundles", body={"labels": [label], "match": "any", "name": "mine"})
    bundle_id = created.json()["bundle_id"]
    pending = api.call("GET", f"/bundles/{bundle_id}").json()
    request_key = f"requests/{bundle_id}.json"
    assert handlers["bundle"].handler(
        object_event_for(pipeline.s3, pipeline.work, request_key), FakeContext()
    ) == {"batchItemFailures": []}
    ready = api.call("GET", f"/bundles/{bundle_id}").json()

    assert created.status == 202 and created.headers["Location"] == f"/bundles/{bundle_id}"
    assert pending == {"bundle_id": bundle_id, "status": "pending"}
    written = pipeline.s3.get_object(Bucket=pipeline.work, Key=request_key)["Body"].read()
    assert json.loads(written) == {"labels": [label], "match": "any", "name": "mine"}
    assert ready["status"] == "ready" and ready["image_count"] == 1 and ready["url"]
    assert not {"zip_key", "status_key", "request_key", "request_etag"} & set(ready)
    assert api.call("GET", "/bundles/nope").status == 404
    assert api.call("GET", "/bundles/..%2Fsecrets").status == 404
    invalid = api.call("POST", "/bundles", body={"labels": []})
    assert (invalid.status, invalid.json()["error"]["code"]) == (422, "invalid_request")


# --- inputs --------------------------------------------------------------------------------------


def test_inputs_members_see_their_own_and_admins_everyone(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType]
) -> None:
    mine = upload_photo(api, MEMBER)
    theirs = upload_photo(api, ADMIN)
    pending = api.call("GET", f"/inputs/{encoded(mine)}").json()
    for key in (mine, theirs):
        process(pipeline, handlers, key)
    pipeline.s3.put_object(Bucket=pipeline.raw, Key="other/notes.txt", Body=b"hello")
    process(pipeline, handlers, "other/notes.txt")

    member = api.call("GET", "/inputs").json()["inputs"]
    admin = api.call("GET", "/inputs", claims=ADMIN).json()["inputs"]
    rejected = api.call("GET", "/inputs", claims=ADMIN, query={"status": "rejected"}).json()[
        "inputs"
    ]
    hidden = api.call("GET", f"/inputs/{encoded(theirs)}", claims=MEMBER)

    assert pending == {"key": mine, "status": "pending"}
    assert [entry["key"] for entry in member] == [mine]
    assert {entry["key"] for entry in admin} == {mine, theirs, "other/notes.txt"}
    assert [(e["key"], e["errors"][0]["code"]) for e in rejected] == [
        ("other/notes.txt", "unsupported_type")
    ]
    assert hidden.status == 404
    assert (
        api.call("GET", f"/inputs/{encoded('uploads/' + MEMBER_SUB + '/x/y-z.jpg')}").status == 404
    )
    assert ADMIN_SUB in theirs


def test_inputs_page_with_a_cursor(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType]
) -> None:
    for n in range(3):
        key = f"photos/p{n}.jpg"
        pipeline.s3.put_object(Bucket=pipeline.raw, Key=key, Body=PHOTO.read_bytes())
        handlers["transform"].handler(
            object_event_for(pipeline.s3, pipeline.raw, key), FakeContext()
        )
    assert pipeline.s3.head_object(Bucket=pipeline.processed, Key=receipt_key("photos/p2.jpg"))

    first = api.call(
        "GET", "/inputs", claims=ADMIN, query={"limit": "2", "prefix": "photos/"}
    ).json()
    second = api.call(
        "GET", "/inputs", claims=ADMIN, query={"limit": "2", "cursor": first["next_cursor"]}
    ).json()

    assert [e["key"] for e in first["inputs"] + second["inputs"]] == [
        "photos/p0.jpg",
        "photos/p1.jpg",
        "photos/p2.jpg",
    ]
    assert second["next_cursor"] is None


def test_an_images_detail_has_its_thumbnails_sizes_links_and_labels_with_confidence(
    api: ApiClient, pipeline: Pipeline, handlers: dict[str, ModuleType], deps: Dependencies
) -> None:
    """Issue 12's metadata through ``GET /images/{id}``: each thumbnail's presigned link
    (the environment's lifetime) with its pixel and byte size, labels with the confidence
    the labels table holds, created/updated/archived times, and no bucket, key or
    ``s3://`` URI outside the links."""
    key = upload_photo(api)
    process(pipeline, handlers, key)
    [summary] = api.call("GET", "/images").json()["images"]

    detail = api.call("GET", f"/images/{summary['id']}").json()

    assert_documented(detail, "Image")
    secret = signing_secret(deps)
    for side, thumbnail in detail["thumbnails"].items():
        fetched = requests.get(thumbnail["url"], timeout=30)
        assert fetched.status_code == 200
        assert thumbnail["bytes"] == len(fetched.content)
        picture = Image.open(io.BytesIO(fetched.content))
        assert picture.size == (thumbnail["width"], thumbnail["height"])
        assert max(picture.size) == int(side)
        assert thumbnail["content_type"] == fetched.headers["Content-Type"] == "image/jpeg"
        assert_signed_get_for(thumbnail["url"], secret)
    memberships = {
        label: {m.image_id: m.confidence for m in images_for_label(
            pipeline.dynamodb, pipeline.labels_table, label
        )[0]}[summary["id"]]
        for label in summary["labels"]
    }  # fmt: skip
    assert {e["label"]: e["confidence"] for e in detail["label_details"]} == memberships
    confidences = [e["confidence"] for e in detail["label_details"]]
    assert confidences == sorted(confidences, reverse=True)
    assert detail["width"] and detail["height"] and detail["format"] == "JPEG"
    assert detail["created_at"] <= detail["updated_at"]
    assert detail["archived_at"] and detail["created_at"] <= detail["archived_at"]
    without_links = json.dumps(
        {
            name: value
            for name, value in detail.items()
            if name not in ("thumbnails", "original_url")
        }
    )
    for bucket in (pipeline.raw, pipeline.processed, pipeline.archive):
        assert bucket not in without_links
    assert "s3://" not in json.dumps(detail)


def test_items_written_in_the_old_shape_are_still_served(
    api: ApiClient, pipeline: Pipeline
) -> None:
    """Items written before the metadata item's shape 2 (thumbnail keys only, ``bytes`` the
    source's size, label names without confidence) stay readable: unknown sizes are null."""
    item_id = "0123456789abcdef0123456789abcdef"
    thumbnail = "thumbnails/128/old/photo.jpg.jpg"
    pipeline.s3.put_object(Bucket=pipeline.processed, Key=thumbnail, Body=b"old thumbnail")
    pipeline.dynamodb.put_item(
        TableName=pipeline.images_table,
        Item={
            "image_id": {"S": item_id},
            "source_bucket": {"S": pipeline.raw},
            "source_key": {"S": "old/photo.jpg"},
            "archive_key": {"S": "images/old/photo.jpg"},
            "thumbnail_keys": {"M": {"128": {"S": thumbnail}}},
            "width": {"N": "640"},
            "height": {"N": "480"},
            "format": {"S": "JPEG"},
            "bytes": {"N": "4242"},
            "labels": {"L": [{"S": "Tree"}]},
            "created_at": {"S": "2025-01-01T00:00:00.000Z"},
        },
    )

    [listed] = api.call("GET", "/images").json()["images"]
    answer = api.call("GET", f"/images/{item_id}")

    assert answer.status == 200
    detail = answer.json()
    assert_documented(detail, "Image")
    assert_documented(listed, "ImageSummary")
    assert listed["bytes"] == detail["bytes"] == 4242
    assert detail["label_details"] == [{"label": "Tree", "confidence": None}]
    assert detail["updated_at"] is None and detail["archived_at"] is None
    [(side, entry)] = detail["thumbnails"].items()
    assert side == "128"
    assert {name: entry[name] for name in ("width", "height", "bytes", "content_type")} == {
        "width": None,
        "height": None,
        "bytes": None,
        "content_type": None,
    }
    assert requests.get(entry["url"], timeout=30).content == b"old thumbnail"
