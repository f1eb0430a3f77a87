#!/usr/bin/env bash
# Runs the FISTA-iteration benchmark (crates/core/benches/fista_iteration.rs) and prints,
# per FFT backend, one iteration's time and its ratio to the 2K-FFT floor (DESIGN §3.5).
# Ratios from one run are what to compare: the machines are shared and absolute times drift.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p sparsemap-core --bench fista_iteration -- "$@" >&2
python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
def median(*parts):
    return json.loads(root.joinpath(*parts, "new", "estimates.json").read_text())["median"]["point_estimate"]
print("N = 256x256, K = 32, 9x9 filters, Lambda maps; medians of one run")
print(f"{'backend':9} {'floor ms':>9} {'streaming floor ms':>19} {'iteration ms':>13} {'iter/floor':>11} {'iter/streaming':>15}")
for backend in ("rustfft", "microfft"):
    floor = median(backend, "floor") / 1e6
    streaming = median(backend, "floor_streaming") / 1e6
    t1, t5 = median(backend, "fista", "T1") / 1e6, median(backend, "fista", "T5") / 1e6
    iteration = (t5 - t1) / 4
    print(f"{backend:9} {floor:9.2f} {streaming:19.2f} {iteration:13.2f} {iteration / floor:11.3f} {iteration / streaming:15.3f}")
PY
