"""Operations behind the ``sluice`` CLI: status, audit, redrive, bundle request, upload.

Each operation is a plain function that takes boto3 clients and an :class:`Environment`
(resource names from the Terraform outputs) and returns a result object; it prints
nothing and never exits. ``sluice.cli`` parses arguments, resolves the environment,
renders results and maps them to exit codes.
"""
