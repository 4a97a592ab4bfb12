#!/usr/bin/env bash
# Makes .cache/transformers-venv (torch, transformers, peft as pinned in scripts/dev/python-transformers.txt)
# the way scripts/models/transformers-venv.ts does, from a shell: .ci/run starts it in the background before
# the tests so the 5 GB download overlaps the set-up; the test waits while <venv>.installing names a live PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.cache/transformers-venv
requirements=scripts/dev/python-transformers.txt
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/dro-requirements.sha256" 2>/dev/null)" = "$wanted" ]; then exit 0; fi
mkdir -p .cache
echo $$ > "$venv.installing"
trap 'rm -f "$venv.installing"' EXIT
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
printf '%s' "$wanted" > "$venv/dro-requirements.sha256"
