#!/usr/bin/env bash
# Print a Terraform plan, saved by deploy.sh, as Markdown for a GitHub job summary:
# the "Plan:" line, then the whole plan (capped at GitHub's summary size) folded away.
#
#   scripts/plan_summary.sh ENV >>"$GITHUB_STEP_SUMMARY"
set -euo pipefail

env=${1:?usage: scripts/plan_summary.sh ENV}
plan_text="build/$env.plan.txt"
echo "### Terraform plan: $env"
if [[ -f $plan_text ]]; then
  grep -E '^(Plan:|No changes\.)' "$plan_text" || true
  echo
  echo "<details><summary>Full plan</summary>"
  echo
  echo '```'
  head -c 60000 "$plan_text"
  echo '```'
  echo "</details>"
else
  echo "No plan was saved: see the Plan step's log."
fi
