"""The HTTP API on the local stack, as a client uses it: plain HTTP, bearer tokens, presigned
URLs, and the real pipeline behind it (moto, the Terraform-created API and user pool, the
local runner and the local API server of ``sluice up``).

One journey (sign in, upload, browse, bundle, delete, receipts) and the security and
contract checks around it: every guarded route refuses a missing, foreign, expired or
tampered token; a member may not delete; the routes in the emulator are the documented
ones; schemathesis finds no server error and no response outside the document; and
nothing logged holds a token or a presigned signature.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from PIL import Image

from sluice import workdir
from sluice.local.stack.state import StateDir
from tests.e2e.conftest import ROOT, Stack
from tests.security_support import SAMPLES_DIR
from tests.terraform_support import NEEDS_API

pytestmark = [pytest.mark.e2e, NEEDS_API]

DEADLINE_SECONDS = 240
SEED_EMAIL = "admin@sluice.local"
NEW_PASSWORD = "E2e-New-Passw0rd!"
MEMBER_EMAIL = "member@sluice.local"
MEMBER_PASSWORD = "Member-Passw0rd!1"
PHOTOS = ("sunset-beach.jpg", "ocean-rotated-6.jpg", "forest-upside-down-3.jpg")
SCANS = SAMPLES_DIR / "retina" / "scans-partly-invalid.json"


def _render_api_docs() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "render_api_docs", ROOT / "scripts" / "render_api_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def poll(check: Callable[[], Any], *, what: str, deadline: float = DEADLINE_SECONDS) -> Any:
    """``check()``'s first truthy answer; fails after ``deadline`` seconds (never sleeps blind)."""
    end = time.monotonic() + deadline
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline} s waiting for {what}", pytrace=False)
        time.sleep(1.0)


@dataclass(frozen=True)
class Api:
    url: str
    token: str

    def call(
        self, method: str, path: str, *, credential: str | None = "mine", **kwargs: Any
    ) -> requests.Response:
        """``credential``: the bearer token to send; "mine" is this user's, None none."""
        headers = dict(kwargs.pop("headers", {}))
        bearer = self.token if credential == "mine" else credential
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def api_url(stack: Stack) -> str:
    record = StateDir(ROOT, stack.outputs_file.parent).read_stack()
    url = record.get("api_url")
    assert url, f"sluice up recorded no API URL in {stack.outputs_file.parent}/stack.json"
    return str(url)


@pytest.fixture(scope="module")
def admin(stack: Stack, api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Api:
    """``sluice login`` as the seeded administrator, replacing its temporary password."""
    project = tmp_path_factory.mktemp("login")
    temporary = re.search(
        r'temporary_password\s*=\s*"([^"]+)"', (ROOT / "env" / "local.tfvars").read_text()
    )
    assert temporary
    login = subprocess.run(
        [
            sys.executable, "-m", "sluice.cli", "login", "--username", SEED_EMAIL,
            "--password-stdin", "--project-dir", str(project), "--environment", "local",
            "--endpoint-url", stack.endpoint_url, "--outputs-file", str(stack.outputs_file),
        ],
        input=f"{temporary.group(1)}\n{NEW_PASSWORD}\n",
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    saved = workdir.tokens_path(project, "local")
    assert saved.stat().st_mode & 0o777 == 0o600
    token = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "token", "--project-dir", str(project)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    return Api(api_url, token)


@pytest.fixture(scope="module")
def member(stack: Stack, api_url: str) -> Api:
    cognito = stack.client("cognito-idp")
    pool, client = stack.environment.user_pool_id, stack.environment.cli_client_id
    cognito.admin_create_user(
        UserPoolId=pool, Username=MEMBER_EMAIL, MessageAction="SUPPRESS",
        TemporaryPassword=MEMBER_PASSWORD,
    )  # fmt: skip
    cognito.admin_set_user_password(
        UserPoolId=pool, Username=MEMBER_EMAIL, Password=MEMBER_PASSWORD, Permanent=True
    )
    cognito.admin_add_user_to_group(UserPoolId=pool, Username=MEMBER_EMAIL, GroupName="member")
    result = cognito.initiate_auth(
        ClientId=client,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": MEMBER_EMAIL, "PASSWORD": MEMBER_PASSWORD},
    )["AuthenticationResult"]
    return Api(api_url, result["AccessToken"])


def upload(api: Api, path: Path, content_type: str, **extra: Any) -> str:
    data = path.read_bytes()
    body = {"filename": path.name, "content_type": content_type, "size": len(data), **extra}
    answer = api.call("POST", "/uploads", json=body)
    assert answer.status_code == 201, answer.text
    signed = answer.json()
    requests.put(signed["url"], data=data, headers=signed["headers"], timeout=60).raise_for_status()
    return str(signed["key"])


def large_png(path: Path) -> Path:
    """A > 20 MB PNG of noise (noise does not compress)."""
    image = Image.frombytes("RGB", (2900, 2500), os.urandom(2900 * 2500 * 3))
    image.save(path, format="PNG", compress_level=1)
    assert path.stat().st_size > 20 * 1024 * 1024
    return path


def upload_multipart(api: Api, path: Path) -> str:
    size = path.stat().st_size
    body = {"filename": path.name, "content_type": "image/png", "size": size}
    started = api.call("POST", "/uploads/multipart", json=body)
    assert started.status_code == 201, started.text
    plan = started.json()
    parts = []
    with path.open("rb") as source:
        for part in plan["parts"]:
            sent = requests.put(part["url"], data=source.read(plan["part_size"]), timeout=120)
            sent.raise_for_status()
            parts.append({"part_number": part["part_number"], "etag": sent.headers["ETag"]})
    done = api.call(
        "POST", f"/uploads/multipart/{plan['upload_id']}/complete", json={"parts": parts}
    )
    assert done.status_code == 200, done.text
    return str(plan["key"])


def receipt(api: Api, key: str) -> dict[str, Any] | None:
    answer = api.call("GET", f"/inputs/{quote(key, safe='')}")
    assert answer.status_code in (200, 404), answer.text
    found = answer.json() if answer.status_code == 200 else None
    return found if found and found["status"] != "pending" else None


def all_images(api: Api) -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = api.call("GET", "/images", params={"limit": "100"}).json()[
        "images"
    ]
    return images


def labelled_images(api: Api, count: int, known: set[str]) -> list[dict[str, Any]] | None:
    """Every image, once ``count`` of them are new (not in ``known``) and all are labelled:
    the shared stack may already hold other modules' images (the samples)."""
    images = all_images(api)
    new = [image for image in images if image["id"] not in known]
    return images if len(new) >= count and all(image["labels"] for image in images) else None


def test_the_emulator_serves_exactly_the_documented_routes(stack: Stack) -> None:
    docs = _render_api_docs()
    document = docs.load()
    documented = {
        f"{method} {path}": operation.get("security", document["security"]) != []
        for method, path, operation in docs.routes(document)
    }
    apigateway = stack.client("apigatewayv2")
    items = apigateway.get_routes(ApiId=stack.environment.api_id)["Items"]

    assert {item["RouteKey"]: item["AuthorizationType"] == "JWT" for item in items} == documented


def test_the_journey_upload_browse_bundle_delete_and_receipts(admin: Api, tmp_path: Path) -> None:
    assert admin.call("GET", "/health", credential=None).json() == {"status": "ok"}
    known = {image["id"] for image in all_images(admin)}
    keys = [upload(admin, SAMPLES_DIR / "photos" / name, "image/jpeg") for name in PHOTOS]
    keys.append(upload_multipart(admin, large_png(tmp_path / "big-noise.png")))
    for key in keys:

        def arrived(key: str = key) -> dict[str, Any] | None:
            return receipt(admin, key)

        found = poll(arrived, what=f"the receipt of {key}")
        assert found["status"] == "processed", found

    images = poll(lambda: labelled_images(admin, 4, known), what="four new labelled images")
    labels = {
        entry["label"]: entry["count"] for entry in admin.call("GET", "/labels").json()["labels"]
    }
    for label, count in labels.items():
        assert count == sum(label in image["labels"] for image in images), label
    names = sorted(image["name"] for image in images if image["id"] not in known)
    assert names == sorted([*PHOTOS, "big-noise.png"])

    label = max(labels, key=lambda name: labels[name])
    requested = admin.call("POST", "/bundles", json={"labels": [label], "match": "any"})
    assert requested.status_code == 202, requested.text
    bundle_id = requested.json()["bundle_id"]

    def ready() -> dict[str, Any] | None:
        status = admin.call("GET", f"/bundles/{bundle_id}").json()
        return status if status["status"] != "pending" else None

    bundle = poll(ready, what=f"bundle {bundle_id}")
    assert bundle["status"] == "ready" and bundle["image_count"] == labels[label]
    archive = zipfile.ZipFile(io.BytesIO(requests.get(bundle["url"], timeout=120).content))
    entries = archive.namelist()
    assert "manifest.json" in entries
    assert len([name for name in entries if name.startswith("images/")]) == labels[label]

    victim = next(image for image in images if label in image["labels"])
    detail = admin.call("GET", f"/images/{victim['id']}").json()
    assert [entry["label"] for entry in detail["label_details"]] != []
    assert {entry["label"] for entry in detail["label_details"]} == set(victim["labels"])
    assert all(0 < entry["confidence"] <= 100 for entry in detail["label_details"])
    for thumbnail in detail["thumbnails"].values():
        fetched = requests.get(thumbnail["url"], timeout=60)
        assert fetched.status_code == 200 and len(fetched.content) == thumbnail["bytes"]
        assert thumbnail["width"] and thumbnail["height"]
    assert detail["archived_at"] and detail["updated_at"]
    assert admin.call("DELETE", f"/images/{victim['id']}").status_code == 204
    assert admin.call("GET", f"/images/{victim['id']}").status_code == 404
    after = {
        entry["label"]: entry["count"] for entry in admin.call("GET", "/labels").json()["labels"]
    }
    for name in victim["labels"]:
        assert after.get(name, 0) == labels[name] - 1, name

    data_key = upload(admin, SCANS, "application/json", dataset="retina")
    scans = poll(lambda: receipt(admin, data_key), what="the retina file's receipt")
    assert scans["status"] == "processed" and scans["dataset"] == "retina"
    assert scans["stats"]["records_invalid"] > 0
    assert all({"record_index", "path", "code"} <= set(error) for error in scans["errors"])
    values = {
        str(record[field])
        for record in json.loads(SCANS.read_text())
        if isinstance(record, dict)
        for field in ("patient_id", "patient_name")
        if isinstance(record.get(field), str) and len(record[field]) >= 6
    }
    assert values
    body = json.dumps(scans)
    assert not [value for value in values if value in body]
    output = requests.get(scans["output_url"], timeout=60).json()
    assert len(output) == scans["stats"]["records_valid"]
    assert all(set(record) == {"patient_id", "patient_name"} for record in output)
    report = requests.get(scans["errors_report_url"], timeout=60).text.splitlines()
    assert not scans["errors_truncated"]
    reported = [json.loads(line) for line in report]
    assert [(e["record_index"], e["code"]) for e in reported] == [
        (e["record_index"], e["code"]) for e in scans["errors"]
    ]


def test_one_key_credentials_work_with_an_sdk(admin: Api, stack: Stack) -> None:
    import boto3

    body = {"filename": "sdk.jpg", "content_type": "image/jpeg", "size": 5}
    granted = admin.call("POST", "/uploads/credentials", json=body).json()
    credentials = granted["credentials"]
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.endpoint_url,
        region_name=granted["region"],
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
        aws_session_token=credentials["session_token"],
    )
    s3.put_object(Bucket=granted["bucket"], Key=granted["key"], Body=b"hello")

    assert granted["key"].startswith("uploads/")


GUARDED = [
    ("POST", "/uploads"),
    ("POST", "/uploads/multipart"),
    ("POST", "/uploads/multipart/x/complete"),
    ("DELETE", "/uploads/multipart/x"),
    ("POST", "/uploads/credentials"),
    ("GET", "/images"),
    ("GET", "/images/x"),
    ("DELETE", "/images/x"),
    ("GET", "/labels"),
    ("POST", "/bundles"),
    ("GET", "/bundles/x"),
    ("GET", "/inputs"),
    ("GET", "/inputs/x"),
]


def _expired_copy(token: str) -> str:
    """The token with its ``exp`` in the past: the signature no longer matches either, as
    with any edit; a token that really expired is refused by the same check (unit tests)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] = 1
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_every_guarded_route_refuses_bad_tokens(admin: Api, member: Api, stack: Stack) -> None:
    cognito = stack.client("cognito-idp")
    pool = cognito.create_user_pool(PoolName="another-pool")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="other", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=pool, Username="x@example.com", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(
        UserPoolId=pool, Username="x@example.com", Password="Other-Passw0rd!", Permanent=True
    )
    foreign = cognito.initiate_auth(
        ClientId=client,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "x@example.com", "PASSWORD": "Other-Passw0rd!"},
    )["AuthenticationResult"]["AccessToken"]
    header, payload, signature = admin.token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"

    for method, path in GUARDED:
        for token in (None, foreign, tampered, _expired_copy(admin.token), "not-a-jwt"):
            answer = admin.call(method, path, credential=token, json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json() == {"message": "Unauthorized"}

    forbidden = member.call("DELETE", "/images/anything")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"


def _schemathesis() -> str:
    beside = Path(sys.executable).with_name("schemathesis")
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'", pytrace=False)
    return found


def test_schemathesis_finds_no_server_error_and_nothing_undocumented(
    member: Api, tmp_path: Path
) -> None:
    bundled = tmp_path / "openapi.json"
    _render_api_docs().main(["--bundle", str(bundled)])
    result = subprocess.run(
        [
            _schemathesis(), "run", str(bundled), "--url", member.url,
            "--header", f"Authorization: Bearer {member.token}",
            "--checks", "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--phases", "examples,coverage,fuzzing", "--max-examples", "20",
            "--workers", "1", "--seed", "20261201", "--no-color",
        ],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_nothing_logged_holds_a_token_or_a_presigned_signature(
    admin: Api, member: Api, stack: Stack
) -> None:
    state = StateDir(ROOT, stack.outputs_file.parent)
    logs = [state.api_log, state.runner_log, *state.worker_logs.glob("*.log")]
    text = "\n".join(path.read_text(errors="replace") for path in logs if path.exists())

    assert "access " in text  # the API server's access log is there
    for token in (admin.token, member.token):
        assert token.split(".")[2] not in text
    assert "X-Amz-Signature" not in text
    assert "Bearer " not in text
