#!/usr/bin/env bash
# The whole test suite: static checks, then unit, integration and end-to-end tiers.
#   ./scripts/test.sh                 everything, the tiers side by side on $SLUICE_TEST_WORKERS
#                                     pytest-xdist workers (default 6; tests/parallel.py)
#   ./scripts/test.sh tests/unit      just one tier (any pytest arguments pass through, serially)
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
  # Six workers on two cores: the four end-to-end units (the shared stack's modules, the
  # chaos run, the security plan, the Terraform round trip) mostly wait on their own
  # emulators, and two more keep the cores busy with the unit and integration tiers.
  workers=${SLUICE_TEST_WORKERS:-6}
  echo "== pytest (e2e, integration, unit: $workers workers side by side)"
  exec pytest tests --durations=20 -n "$workers" --dist loadgroup --no-loadscope-reorder
fi
exec pytest "$@"
