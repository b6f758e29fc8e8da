"""How ``./scripts/test.sh`` spreads the suite over pytest-xdist workers (issue 16).

The run is ``pytest -n <workers> --dist loadgroup --no-loadscope-reorder``: xdist sends
each test to whichever worker is free, except that the tests of one ``xdist_group`` form
one unit that runs whole, in order, on one worker. ``arrange`` (called at collection, on
every worker alike) makes these groups:

* the end-to-end modules that share the session's local stack (``tests/e2e/conftest.py``
  marks every test that uses ``stack``): one worker, one stack, their order kept, no two
  of them interleaved on it;
* every module with a fixture of its own broader than one test (an emulator with the
  environment applied, the chaos run, the security plan's Terraform views, the real layer
  built twice, a Terraform copy and its init): built once, on one worker. Other tests share
  nothing but function-scoped fixtures, so they are spread one by one and no worker is left
  with a long module at the end.

Each end-to-end unit has its own emulator, Terraform data directory, state directory and
ports, so they run side by side, each on a worker of its own: they spend most of their
time waiting (the provider's fixed waits in Terraform, queues draining, the browser),
which is why the suite runs more workers than the machine has cores. Groups are queued
first, the end-to-end ones before the rest (``--no-loadscope-reorder`` keeps this order;
xdist's own puts the units with most tests first): a unit that cannot be split should
not start last.

The end-to-end units are the run's critical path: the longest (the chaos run, the shared
stack's modules) take minutes even on an idle machine, while the unit and integration
tiers are many short tests that only need CPU. So a worker lowers its priority
(``FAST_TIER_NICENESS``) before its first test that is not end to end: when both cores are
busy, the end-to-end processes (Terraform, the emulators, the local runners, the browser)
get the CPU first and the fast tiers fill the rest. It is never raised again, and needs
not be: the end-to-end tests come first in the queue, so a worker has run all of its
end-to-end tests before its first other one.
"""

from __future__ import annotations

import os

import pytest

XDIST_GROUP = "xdist_group"
"""The mark xdist's ``loadgroup`` reads (xdist registers it; ``tests/conftest.py`` too,
so the suite also collects with ``-p no:xdist``)."""

FAST_TIER_NICENESS = 5
"""Added to a worker's nice value once it leaves the end-to-end tier: a CPU share of
about a third of the end-to-end processes' when both want the same core."""

WHOLE_UNIT_SCOPES = frozenset({"class", "module", "package", "session"})


def arrange(items: list[pytest.Item]) -> None:
    """Group each module that defines a fixture broader than a test (unless already in a
    group), then queue the groups first: end-to-end, then the others (a stable sort)."""
    for item in items:
        if item.get_closest_marker(XDIST_GROUP) is None and _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(_module(item)))
    items.sort(
        key=lambda item: (
            item.get_closest_marker("e2e") is None,
            item.get_closest_marker(XDIST_GROUP) is None,
        )
    )


def _module(item: pytest.Item) -> str:
    """``tests/unit/test_x.py::test_y`` -> ``unit/test_x``: a short group name."""
    path = item.nodeid.split("::", 1)[0]
    return path.removeprefix("tests/").removesuffix(".py")


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture of its own module (or class) that outlives one test."""
    module = item.nodeid.split("::", 1)[0]
    info = getattr(item, "_fixtureinfo", None)
    for definitions in info.name2fixturedefs.values() if info else ():
        used = definitions[-1]  # the definition that wins for this test
        node = getattr(used, "node", None)  # pytest >= 9; baseid before
        where = node.nodeid if node is not None else used.baseid
        if used.scope in WHOLE_UNIT_SCOPES and (where == module or where.startswith(f"{module}::")):
            return True
    return False


def yield_to_the_end_to_end_tier(item: pytest.Item) -> None:
    """On an xdist worker, before its first test outside the end-to-end tier: lower the
    worker's priority, and so that of every process it starts from then on."""
    global _yielded
    if _yielded or item.get_closest_marker("e2e") or "PYTEST_XDIST_WORKER" not in os.environ:
        return
    os.nice(FAST_TIER_NICENESS)
    _yielded = True


_yielded = False
