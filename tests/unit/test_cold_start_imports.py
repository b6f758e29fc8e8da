"""What a handler imports at cold start: what every invocation needs, nothing only some do.

Each case imports a handler module in a fresh interpreter (as Lambda's init does) and looks
at ``sys.modules``. jsonschema (60-140 ms) is only needed to list an invalid record's or
request's problems, Pillow only by the offline labeler (docs/benchmarks.md, "Cold start").
Creating the module's boto3 clients makes no request, so no network is needed.

On Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) the import also builds the handler, with the
garbage collector paused and resumed frozen (:mod:`sluice.init_phase`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HANDLER_ENV = {
    "SLUICE_ENV": "test",
    "RAW_BUCKET": "t-raw",
    "PROCESSED_BUCKET": "t-processed",
    "ARCHIVE_BUCKET": "t-archive",
    "WORK_BUCKET": "t-work",
    "IMAGES_TABLE": "t-images",
    "LABELS_TABLE": "t-labels",
    "BUNDLE_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t-bundles",
    "NOTIFY_TOPIC_PREFIX": "t-notify-",
    "LABELER": "rekognition",
    "UPLOAD_ROLE_ARN": "arn:aws:iam::123456789012:role/t-upload",
    # Nothing listens there; a request would fail rather than reach AWS.
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}


def imported_at_cold_start(handler: str) -> set[str]:
    env = {**os.environ, **HANDLER_ENV}
    code = (
        f"import json, sys, sluice.handlers.{handler};"
        f" print(json.dumps(sorted(set(m.split('.')[0] for m in sys.modules))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return set(json.loads(completed.stdout.splitlines()[-1]))


@pytest.mark.parametrize("handler", ["transform", "archive", "tag", "bundle", "api"])
def test_handlers_do_not_import_jsonschema_at_cold_start(handler: str) -> None:
    modules = imported_at_cold_start(handler)
    assert "sluice" in modules and "boto3" in modules
    assert "jsonschema" not in modules
    if handler != "transform":  # the transform makes thumbnails with Pillow
        assert "PIL" not in modules  # the API needs the extensions only (file_formats)
    if handler == "api":  # nor does it read records
        assert not {"ijson", "orjson"} & modules


INIT_PHASE_PROBE = """
import gc, json, sys
import sluice.handlers  # pauses, before the handler module imports anything
before = [g["collections"] for g in gc.get_stats()]
import sluice.handlers.{handler} as module
print(json.dumps({{
    "collections_during_init": [g["collections"] - b for g, b in zip(gc.get_stats(), before)],
    "enabled_after": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "objects": len(gc.get_objects()),
}}))
"""


@pytest.mark.parametrize("handler", ["transform", "archive", "tag", "bundle", "api"])
def test_init_runs_without_collections_and_ends_frozen_with_the_collector_on(
    handler: str,
) -> None:
    """The init phase allocates what the environment keeps: no collection during it, and
    none of it left for the first invocation's collections to traverse."""
    env = {
        **os.environ,
        **HANDLER_ENV,
        "AWS_LAMBDA_FUNCTION_NAME": f"sluice-test-{handler}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    completed = subprocess.run(
        [sys.executable, "-c", INIT_PHASE_PROBE.format(handler=handler)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    probe = json.loads(completed.stdout.splitlines()[-1])
    assert probe["collections_during_init"] == [0, 0, 0]
    assert probe["enabled_after"] is True
    # What init built (modules, clients) is frozen, whatever the interpreter made before.
    assert probe["frozen"] > probe["objects"] // 2


def test_importing_a_handler_off_lambda_leaves_the_collector_alone() -> None:
    env = {
        k: v for k, v in {**os.environ, **HANDLER_ENV}.items() if k != "AWS_LAMBDA_FUNCTION_NAME"
    }
    code = "import gc, sluice.handlers; print(gc.isenabled(), gc.get_freeze_count())"
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["True", "0"]
