#!/usr/bin/env bash
# Create (if missing) the Python venv at models/.venv and install the pinned requirements of
# the float64 NumPy reference (models/reference/requirements.txt) and of the Lambda-network
# training / export code (models/sparsemap_train/requirements.txt: jax, optax, equinox, onnx,
# onnxruntime; CPU only, ~600 MB) and of the MRD test-file writer (models/tools/requirements.txt:
# the ISMRMRD package and h5py). Idempotent and quick when everything is already installed;
# runs from any cwd. Prints the venv's python.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/models/.venv"
reqs=("$repo/models/reference/requirements.txt" "$repo/models/sparsemap_train/requirements.txt"
      "$repo/models/tools/requirements.txt")

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi

# Skip pip entirely when every pinned requirement is already installed at its exact version.
if ! "$venv/bin/python" - "${reqs[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, want = line.split("==")
        if version(name.strip()) != want.strip():
            sys.exit(1)
PY
then
    args=()
    for r in "${reqs[@]}"; do args+=(-r "$r"); done
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
fi

echo "$venv/bin/python"
