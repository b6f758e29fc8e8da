"""A function's init phase runs with the cyclic garbage collector paused.

Lambda imports the handler module once per execution environment (the init phase; under
SnapStart, once per published version). That import creates ~115,000 objects that live as
long as the environment (modules, botocore's service models, the clients) and almost no
garbage: ~400 unreachable objects when it ends. The collector still runs every few hundred
allocations and, as the heap grows, traverses all of it again: about 20 ms of the ~280 ms
of CPU a handler's init took (docs/benchmarks.md, "Cold start").

So :mod:`sluice.handlers` calls :func:`pause` before a handler module imports anything, and
:func:`sluice.runtime.entry_point` (the last line of every handler module) calls
:func:`resume` after building the handler. ``resume`` freezes first (``gc.freeze``): what
init created moves to the permanent generation, so the first invocation's collections do not
traverse it either (resuming without freezing would hand them the whole heap; a full
collection at the end of init instead costs ~35 ms to free those ~400 objects). Off Lambda
(tests, tools) nothing is paused.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

_paused: list[bool] = []


def on_lambda(env: Mapping[str, str] = os.environ) -> bool:
    """Running as a function (on AWS or in the local runtime), not imported by a tool."""
    return bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))


def pause() -> None:
    """Stop automatic collection until :func:`resume`, on Lambda only."""
    if on_lambda() and gc.isenabled() and not _paused:
        gc.disable()
        _paused.append(True)


def resume() -> None:
    """Freeze what init created and collect again; a no-op unless :func:`pause` paused."""
    if _paused:
        _paused.clear()
        gc.freeze()
        gc.enable()
