"""How ``./scripts/test.sh`` spreads the suite over pytest-xdist workers (issue 16).

The run is ``pytest -n <workers> --dist loadgroup --no-loadscope-reorder`` and this module's
scheduler (``tests/conftest.py`` hands it to xdist): a unit of work is one test module,
except that tests marked ``xdist_group(name)`` form one unit across modules. Each unit runs
whole on one worker, in collection order, so

* a module's module- and session-scoped fixtures are built once, on one worker (the real
  layer build, a Terraform copy and its init, an emulator with the environment applied);
* the end-to-end modules that share the session's local stack (``tests/e2e/conftest.py``
  marks every test that uses the ``stack`` fixture) run on one worker, in their order,
  against one stack: no second stack, and no two of them interleaved on it;
* every other end-to-end module has its own emulator, Terraform data directory, state
  directory and ports, so it runs beside the others on a worker of its own. Those runs
  spend most of their time waiting (Terraform's provider waits, queues draining), which
  is why the suite runs more workers than the machine has cores.

Those waits are also why the end-to-end units are the run's critical path: the longest
(the chaos run, the shared stack's modules) take minutes even on an idle machine, while the
unit and integration tiers are many short tests that only need CPU. So a worker lowers its
priority (``FAST_TIER_NICENESS``) the first time it runs a test that is not end to end:
when both cores are busy the end-to-end processes (Terraform, the emulators, the local
runners, the browser) get the CPU first, and the fast tiers fill the rest. It is never
raised again, and needs none: the end-to-end units come first in the queue, so a worker
has run all of its end-to-end tests before its first other one.

xdist's own ``loadgroup`` would send every ungrouped test on its own, so a module-scoped
fixture could be built once per worker that gets one of its tests; its default reordering
(largest unit first) would start the ten-test chaos module after dozens of larger unit
modules. ``--no-loadscope-reorder`` keeps the collection order instead: the end-to-end
tier first (``tests/e2e/conftest.py`` puts it there), the long units first.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

FAST_TIER_NICENESS = 5
"""Added to a worker's nice value once it leaves the end-to-end tier: a CPU share of
about a third of the end-to-end processes' when both want the same core."""

XDIST_GROUP = "xdist_group"
"""The mark xdist's ``loadgroup`` reads (xdist registers it; ``tests/conftest.py`` too,
so the suite also collects with ``-p no:xdist``)."""


def make_scheduler(config: Any, log: Any) -> Any:
    """The scheduler for ``--dist loadgroup``: by xdist group, else by module."""
    from xdist.scheduler import LoadGroupScheduling

    class ModuleOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group: str = super()._split_scope(nodeid)
            return group if group != nodeid else module_of(nodeid)

    return ModuleOrGroupScheduling(config, log)


def module_of(nodeid: str) -> str:
    """``tests/unit/test_x.py::TestY::test_z[1]`` -> ``tests/unit/test_x.py``."""
    return nodeid.split("::", 1)[0]


def yield_to_the_end_to_end_tier(item: pytest.Item) -> None:
    """On an xdist worker, before its first test outside the end-to-end tier: lower the
    worker's priority, and so that of every process it starts from then on."""
    global _yielded
    if _yielded or item.get_closest_marker("e2e") or "PYTEST_XDIST_WORKER" not in os.environ:
        return
    os.nice(FAST_TIER_NICENESS)
    _yielded = True


_yielded = False
