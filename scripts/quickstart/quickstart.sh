#!/usr/bin/env bash
# `npm run quickstart`: installs what is missing (npm run setup), then trains a small model end to end
# on the embedded defaults (scripts/quickstart/quickstart.ts).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -f node_modules/tsx/package.json ] || [ ! -x .tools/venv/bin/temporal ]; then
  bash scripts/dev/setup.sh
fi
exec node --import ./node_modules/tsx/dist/esm/index.mjs scripts/quickstart/quickstart.ts "$@"
