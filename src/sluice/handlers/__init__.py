"""The functions' handler modules (one per Lambda function).

Importing one is a cold start's init phase: the garbage collector is paused here, before
the module imports anything, and resumed when its ``entry_point`` has built the handler
(:mod:`sluice.init_phase`).
"""

from sluice import init_phase

init_phase.pause()
