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
# Pruned FFTs (DESIGN §3.5), groups pruning_<backend>: the central 128x128 block of 256^2
# leaves half the kx rows unsampled. Ratios only (one run, same machine, same minute).
python3 - <<'PY'
import json, os, pathlib
root = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
def median(*parts):
    path = root.joinpath(*parts, "new", "estimates.json")
    return json.loads(path.read_text())["median"]["point_estimate"] if path.exists() else None
def iteration(group, variant):
    t1, t5 = median(group, f"fista_{variant}", "T1"), median(group, f"fista_{variant}", "T5")
    return None if t1 is None or t5 is None else (t5 - t1) / 4
def ratio(new, old):
    return "not run" if new is None or old is None else f"{new / old:.3f}"
print()
print("Pruning (256x256, K = 32), ratios of medians of one run:")
print("  block = central 128x128 block (25 % of the 1-D transforms skipped);")
print("  ky lines = every third ky, full readout: solved as the transposed problem (pruned),")
print("  or with the FFT prototype that runs the Y pass first (FFT pairs only)")
print(f"{'backend':9} {'block: fft pair':>16} {'block: iteration':>17} {'ky lines transposed: iteration':>31} {'ky lines y-first: fft pair':>27}")
for backend in ("rustfft", "microfft"):
    group = f"pruning_{backend}"
    unpruned = iteration(group, "unpruned")
    print(f"{backend:9}"
          f" {ratio(median(group, 'fft_pair', 'pruned'), median(group, 'fft_pair', 'unpruned')):>16}"
          f" {ratio(iteration(group, 'pruned'), unpruned):>17}"
          f" {ratio(iteration(group, 'transposed_ky_lines'), unpruned):>31}"
          f" {ratio(median(group, 'ky_lines', 'y_first_pruned'), median(group, 'ky_lines', 'transposed')):>27}")
PY
