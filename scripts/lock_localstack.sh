#!/usr/bin/env bash
# Re-resolve LocalStack's lock file (requirements/localstack.lock) from localstack.in.
#
#   scripts/lock_localstack.sh
#
# LocalStack pins few of its dependencies, and their newer releases break it (cbor2,
# pyOpenSSL, psutil did), so the lock is resolved as of the pinned release's date
# (--exclude-newer): what LocalStack was released and tested with. For Python 3.13 on
# x86_64 Linux, the interpreter and machine `sluice up --emulator localstack` builds the
# environment for (src/sluice/local/stack/localstack.py); every pin carries the hashes of all its
# files. After a version bump in localstack.in, move the date below to that release's.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
uv_version=0.13.9
released=2026-02-27 # the day after localstack-core 4.14.0 was published (2026-02-26)
tools="$root/.sluice/tools"
if [[ ! -x "$tools/bin/uv" ]] || [[ "$("$tools/bin/uv" --version)" != "uv $uv_version"* ]]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "uv==$uv_version"
fi
cd "$root"
exec "$tools/bin/uv" pip compile requirements/localstack.in --exclude-newer "$released" \
  --python-version 3.13 --python-platform x86_64-unknown-linux-gnu --generate-hashes \
  --no-header --quiet -o requirements/localstack.lock "$@"
