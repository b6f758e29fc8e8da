#!/usr/bin/env bash
# Re-resolve the development environment's lock file from pyproject.toml.
#
#   scripts/lock.sh            # after changing [project] dependencies or the dev extra
#   scripts/lock.sh --upgrade  # move every pin to the newest version the ranges allow
#
# requirements/dev.lock pins every distribution with the hashes of all its published files,
# for every platform and Python >= 3.11 (uv's universal resolution), so a Mac, a Linux
# laptop and CI install the same versions. scripts/bootstrap.sh installs from it with
# --require-hashes. uv is only needed here, by whoever changes the lock: it is installed
# into .sluice/tools/ on first use, at the version below.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
uv_version=0.13.9
tools="$root/.sluice/tools"
if [[ ! -x "$tools/bin/uv" ]] || [[ "$("$tools/bin/uv" --version)" != "uv $uv_version"* ]]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "uv==$uv_version"
fi
cd "$root"
exec "$tools/bin/uv" pip compile pyproject.toml --extra dev --generate-hashes --universal \
  --python-version 3.11 --no-header --quiet -o requirements/dev.lock "$@"
