#!/usr/bin/env bash
# What the web app's browser tests need (tests/e2e/test_web_e2e.py): Debian's Chromium and
# its driver (Playwright drives /usr/bin/chromium; its own browser download is not used),
# and axe-core from tests/e2e/browser/package-lock.json (npm ci). Idempotent: each part is
# skipped when already present. Run by scripts/test.sh before the suite.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ -x /usr/bin/chromium ]]; then
  echo "browser: chromium is installed ($(/usr/bin/chromium --version 2>/dev/null || echo unknown version))"
elif command -v apt-get >/dev/null 2>&1; then
  echo "browser: installing chromium and chromium-driver from Debian"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "browser: /usr/bin/chromium is missing and this is no Debian machine; install Chromium" >&2
  exit 1
fi

browser="$root/tests/e2e/browser"
lock="$browser/package-lock.json"
stamp="$browser/node_modules/.sluice-installed"
wanted=$(sha256sum "$lock" | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  echo "browser: axe-core is up to date"
else
  command -v npm >/dev/null 2>&1 || { echo "browser: npm is required (Node.js 18+)" >&2; exit 1; }
  echo "browser: installing axe-core (npm ci)"
  (cd "$browser" && npm ci --ignore-scripts --no-audit --no-fund --silent)
  echo "$wanted" >"$stamp"
fi
