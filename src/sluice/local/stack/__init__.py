"""The developer stack: ``sluice up``/``down`` (:mod:`sluice.local.stack.updown`).

The emulator (moto or LocalStack), the build, Terraform, the state directory, the local
API and web servers and the summary. It starts the Lambda service stand-in
(:mod:`sluice.local.lambdas`) as a process and learns about its workers from the records
the supervisor writes in the state directory.
"""
