"""The local runtime: moto server, the Lambda SQS poller stand-in, ``sluice up``/``down``.

See :mod:`sluice.local.runner` for why and how the runner serves the emulator's event
source mappings, and :mod:`sluice.local.stack` for the ``up``/``down`` flow.
"""
