"""What a handler imports at cold start: what every invocation needs, nothing only some do.

Each case imports a handler module in a fresh interpreter (as Lambda's init does) and looks
at ``sys.modules``. jsonschema (60-140 ms) is only needed to list an invalid record's or
request's problems, Pillow only by the offline labeler (docs/benchmarks.md, "Cold start").
Creating the module's boto3 clients makes no request, so no network is needed.
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


@pytest.mark.parametrize("handler", ["transform", "archive", "tag", "bundle"])
def test_handlers_do_not_import_jsonschema_at_cold_start(handler: str) -> None:
    modules = imported_at_cold_start(handler)
    assert "sluice" in modules and "boto3" in modules
    assert "jsonschema" not in modules
    if handler != "transform":  # the transform makes thumbnails with Pillow
        assert "PIL" not in modules
