"""The local runtime: the whole pipeline on this machine, against moto or LocalStack.

Two subsystems, one depending on the other:

- :mod:`sluice.local.lambdas`: the Lambda service stand-in. It reads the functions and
  event source mappings Terraform created back from the emulator and serves them as Lambda
  would: a supervisor, one worker process per function, the SQS event, batch settlement,
  timeouts, memory limits and CloudWatch logs. It knows nothing of ``sluice up``.
- :mod:`sluice.local.stack`: the developer stack, ``sluice up``/``down``. It starts the
  emulator, builds, applies Terraform, starts the runner and the API and web servers,
  keeps its state in the state directory and prints the summary.

Beside them, what both use: :mod:`sluice.local.awsenv` (how to reach the emulator) and
:mod:`sluice.local.procs` (processes that outlive their starter, and their pid files).
"""
