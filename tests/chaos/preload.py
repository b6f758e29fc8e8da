"""The local runner's preload module for chaos runs: ``SLUICE_RUNNER_PRELOAD=tests.chaos.preload``.

Imported by each worker before its handler (so the handler's clients carry the hooks);
the runner then wraps the handler with :data:`wrap_handler`. Settings come from the
``SLUICE_RUNNER_FAULT_*`` variables (:class:`tests.chaos.faults.ChaosSettings`).
"""

from __future__ import annotations

import os

import boto3

from tests.chaos.faults import ChaosSettings, install, make_wrapper, short_function_name

SETTINGS = ChaosSettings.from_env(os.environ)
INJECTOR = install()
# Copies are sent through a session of their own: not hooked, never faulted or counted.
_COPIES = boto3.session.Session().client("sqs")

wrap_handler = make_wrapper(
    INJECTOR,
    SETTINGS,
    short_function_name(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "unknown")),
    sqs=_COPIES,
)
