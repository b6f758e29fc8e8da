"""docs/openapi.yaml is the one list of routes: valid, served by the function exactly,
rendered in docs/api.md, and its request schemas are the ones the handler validates with.

Terraform creates its routes from the same document (root main.tf); the end-to-end test
``tests/e2e/test_api_e2e.py`` checks the routes the emulator holds against it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from openapi_spec_validator import validate

from tests.conftest import load_handler
from tests.integration.api_support import ROUTE_KEYS

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_api_docs", ROOT / "scripts" / "render_api_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_api_docs = _script()


@pytest.fixture
def api_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name in (
        "RAW_BUCKET", "PROCESSED_BUCKET", "ARCHIVE_BUCKET", "WORK_BUCKET",
        "IMAGES_TABLE", "LABELS_TABLE",
    ):  # fmt: skip
        monkeypatch.setenv(name, f"test-{name.lower()}")
    monkeypatch.setenv("UPLOAD_ROLE_ARN", "arn:aws:iam::123456789012:role/upload")
    return load_handler("api")


def documented() -> set[str]:
    return {
        f"{method} {path}" for method, path, _ in render_api_docs.routes(render_api_docs.load())
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    document = render_api_docs.bundle()

    validate(document)
    assert document["openapi"].startswith("3.1")


def test_the_function_serves_exactly_the_documented_routes(api_module: ModuleType) -> None:
    app = api_module.app
    served = {
        f"{route.method.upper()} {route.openapi_path}"
        for route in [*app._static_routes, *app._dynamic_routes]
    }
    # Path parameter names may differ (the resolver's upload_id is the document's {id}).
    normalise = lambda keys: {re.sub(r"\{[^}]+\}", "{}", key) for key in keys}  # noqa: E731

    assert normalise(served) == normalise(documented())


def test_only_health_is_public_and_the_test_clients_route_table_matches() -> None:
    document = render_api_docs.load()
    public = {
        f"{method} {path}"
        for method, path, operation in render_api_docs.routes(document)
        if operation.get("security", document.get("security")) == []
    }

    assert public == {"GET /health"}
    assert set(ROUTE_KEYS) == documented()


def test_every_request_body_is_a_schema_the_handler_validates_with(api_module: ModuleType) -> None:
    referenced = {
        Path(op["requestBody"]["content"]["application/json"]["schema"]["$ref"]).name
        for _, _, op in render_api_docs.routes(render_api_docs.load())
        if "requestBody" in op
    }

    assert referenced == {f"{name}.schema.json" for name in api_module.SCHEMAS}
    for name in referenced:
        assert (ROOT / "src" / "sluice" / "schemas" / name).is_file()


def test_docs_api_md_is_current() -> None:
    assert render_api_docs.main(["--check"]) == 0, "run python scripts/render_api_docs.py"
