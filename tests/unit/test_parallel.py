"""How the suite is spread over xdist workers (tests/parallel.py), on small generated suites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import parallel

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

SHARED_FIXTURE = """
import pytest

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # One line per build, in a file all workers see.
    with open({log!r}, "a") as log:
        log.write("built\\n")
    return 1

def test_one(built): pass
def test_two(built): pass
def test_three(built): pass
def test_four(built): pass
"""

PLAIN = "\n".join(f"def test_{n}(): pass" for n in range(8))

E2E = """
import pytest

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def emulator(): return 1

def test_applies(emulator): pass
def test_plans_clean(emulator): pass
"""


def _groups(items: list[pytest.Item]) -> list[tuple[str, str | None]]:
    names = []
    for item in items:
        mark = item.get_closest_marker(parallel.XDIST_GROUP)
        names.append((item.name, mark.args[0] if mark else None))
    return names


def test_a_module_sharing_a_fixture_is_one_unit_and_queued_first(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    e2e: end to end\n")
    pytester.makepyfile(
        test_a_plain=PLAIN,
        test_b_shared=SHARED_FIXTURE.format(log=str(pytester.path / "log")),
        test_c_e2e=E2E,
    )
    items, _ = pytester.inline_genitems()
    parallel.arrange(items)
    assert _groups(items) == [
        ("test_applies", "test_c_e2e"),
        ("test_plans_clean", "test_c_e2e"),
        ("test_one", "test_b_shared"),
        ("test_two", "test_b_shared"),
        ("test_three", "test_b_shared"),
        ("test_four", "test_b_shared"),
        *((f"test_{n}", None) for n in range(8)),
    ]


def test_a_group_already_given_is_kept(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_given="""
import pytest

@pytest.fixture(scope="module")
def stack(): return 1

@pytest.mark.xdist_group("shared-stack")
def test_first(stack): pass
"""
    )
    items, _ = pytester.inline_genitems()
    parallel.arrange(items)
    assert _groups(items) == [("test_first", "shared-stack")]


def test_under_xdist_a_shared_fixture_is_built_once_and_the_rest_spread(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = pytester.path / "log"
    pytester.makeconftest(
        "import pytest\nfrom tests import parallel\n\n"
        "@pytest.hookimpl(tryfirst=True)\n"
        "def pytest_collection_modifyitems(items):\n"
        "    parallel.arrange(items)\n"
    )
    pytester.makepyfile(test_a_plain=PLAIN, test_b_shared=SHARED_FIXTURE.format(log=str(log)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess(
        "-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder", "-v", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=12)
    assert log.read_text().splitlines() == ["built"]
    workers = {
        line.split("]")[0].lstrip("[")
        for line in result.outlines
        if "PASSED" in line and "test_a_plain.py" in line
    }
    assert len(workers) > 1, result.outlines


def test_a_worker_yields_the_cpu_once_it_leaves_the_end_to_end_tier(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    e2e: end to end\n")
    pytester.makepyfile(test_a_plain=PLAIN, test_c_e2e=E2E)
    items, _ = pytester.inline_genitems()
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    plain = [item for item in items if not item.get_closest_marker("e2e")]
    increments: list[int] = []
    monkeypatch.setattr(os, "nice", increments.append)
    monkeypatch.setattr(parallel, "_yielded", False)

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    parallel.yield_to_the_end_to_end_tier(plain[0])
    assert increments == []  # not under xdist: nothing to yield to

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    for item in e2e:
        parallel.yield_to_the_end_to_end_tier(item)
    assert increments == []
    for item in plain:
        parallel.yield_to_the_end_to_end_tier(item)
    assert increments == [parallel.FAST_TIER_NICENESS]
