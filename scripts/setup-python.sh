#!/usr/bin/env bash
# Create (if missing) the Python venv for the float64 NumPy reference at models/.venv
# and install models/reference/requirements.txt. Idempotent; runs from any cwd.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/models/.venv"
req="$repo/models/reference/requirements.txt"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi

# Skip pip entirely when every pinned requirement is already installed at its exact version.
if ! "$venv/bin/python" - "$req" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    if version(name.strip()) != want.strip():
        sys.exit(1)
PY
then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
fi

echo "$venv/bin/python"
