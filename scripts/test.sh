#!/usr/bin/env bash
# The whole test suite: static checks, then unit, integration and end-to-end tiers.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh tests/unit      just one tier (any pytest arguments pass through)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh"
"$root/scripts/browser.sh"
if [[ -f "$root/.sluice/terraformrc" ]]; then
  export TF_CLI_CONFIG_FILE="$root/.sluice/terraformrc"
fi
export PATH="$root/.venv/bin:$PATH"

if (($# == 0)); then
  echo "== ruff"
  ruff check .
  ruff format --check .
  echo "== mypy"
  mypy
  echo "== pytest (unit, integration, e2e)"
  exec pytest tests --durations=20
fi
exec pytest "$@"
