"""The Lambda service stand-in: serves the emulator's functions as Lambda would.

moto keeps the functions and mappings Terraform created but cannot run them without
Docker. :mod:`sluice.local.lambdas.runner` says what is reproduced and why; it is the
command (``python -m sluice.local.lambdas.runner``) the developer stack starts. This
package imports nothing from :mod:`sluice.local.stack`: it takes an endpoint and
directories, so tests and the chaos harness run it on its own.
"""
