"""The local runner's preload module for chaos runs: ``SLUICE_RUNNER_PRELOAD=tests.chaos.preload``.

Imported by each worker before its handler (so the handler's clients carry the hooks);
the runner then wraps the handler with :data:`wrap_handler`. Settings come from the
``SLUICE_RUNNER_FAULT_*`` variables (:class:`tests.chaos.faults.ChaosSettings`); the
transform's worker also deletes the keys of ``SLUICE_RUNNER_DELETE_PLAN`` at their step
(:class:`tests.chaos.faults.DeletePlan`), registered before the fault hooks.
"""

from __future__ import annotations

import os

import boto3

from tests.chaos.faults import (
    ENV_DELETE_PLAN,
    ChaosSettings,
    DeletePlan,
    EventLog,
    install,
    make_wrapper,
    short_function_name,
)

SETTINGS = ChaosSettings.from_env(os.environ)
FUNCTION = short_function_name(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "unknown"))
# Copies and deletes go through a session of their own: not hooked, never faulted or counted.
_HARNESS = boto3.session.Session()
_COPIES = _HARNESS.client("sqs")
if FUNCTION == "transform" and os.environ.get(ENV_DELETE_PLAN):
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    _raw = _HARNESS.client("s3")
    DeletePlan.load(
        os.environ[ENV_DELETE_PLAN],
        os.environ["RAW_BUCKET"],
        lambda bucket, key: _raw.delete_object(Bucket=bucket, Key=key),
        EventLog(SETTINGS.log_path),
    ).register(boto3.DEFAULT_SESSION)
INJECTOR = install()

wrap_handler = make_wrapper(INJECTOR, SETTINGS, FUNCTION, sqs=_COPIES)
