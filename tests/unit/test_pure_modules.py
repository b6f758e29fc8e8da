"""The pure modules stay pure: records, thumbnails and zipstream import no AWS SDK.

They are the parts anyone can read, test and reuse without an account or an emulator
(README, "Architecture"); a convenience import of a constant from an S3 module once
pulled botocore into all three. Each is imported in a fresh interpreter, so what the
test process already loaded does not hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = (
    "sluice.records",
    "sluice.thumbnails",
    "sluice.zipstream",
    "sluice.units",
    "sluice.image_defaults",
    "sluice.file_formats",
)
AWS = ("boto3", "botocore", "aws_lambda_powertools")


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_aws_sdk(module: str) -> None:
    probe = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", probe], text=True))
    pulled = sorted(name for name in loaded if name.split(".")[0] in AWS)
    assert pulled == [], f"{module} imports {pulled[:5]}"
