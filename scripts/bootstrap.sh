#!/usr/bin/env bash
# Prepare a fresh machine for sluice: the project's own virtual environment with the
# package and its development tools, and a Terraform CLI configuration that uses the
# machine's provider mirror when there is one. Idempotent and quick when nothing changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
stamp="$venv/.sluice-installed"

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "bootstrap: '$1' is required but not found. $2" >&2
    exit 1
  }
}
need "$python" "Install Python 3.11 or newer."
need terraform "Install Terraform >= 1.10 (https://developer.hashicorp.com/terraform/install)."

"$python" - <<'PY' || { echo "bootstrap: Python 3.11 or newer is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

lock="$root/requirements/dev.lock"
wanted=$(cat "$root/pyproject.toml" "$lock" | sha256sum | cut -d' ' -f1)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  echo "bootstrap: .venv is up to date"
else
  echo "bootstrap: installing sluice and its tools into .venv (first run takes a few minutes)"
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # Exactly the locked versions, each checked against its hash; nothing unlisted (--no-deps:
  # the lock already holds every transitive dependency). scripts/lock.sh updates the lock.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes --no-deps -r "$lock"
  # sluice itself, editable; its dependencies are the ones just installed.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
  "$venv/bin/python" -m pip check
  echo "$wanted" >"$stamp"
fi

if [[ -x "$root/scripts/terraformrc.sh" ]]; then
  "$root/scripts/terraformrc.sh" "$root/.sluice/terraformrc" >/dev/null
fi
