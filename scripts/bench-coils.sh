#!/usr/bin/env bash
# The cost of a multi-coil iteration (docs/design.md §3.4), written to results/coils/bench.md
# and printed: crates/core/benches/coils.rs (criterion) at N = 256², K = 32, one thread,
# rustfft; one iteration is (T5 - T1) / 4 for the single-coil solve and for 4 and 8 coils on
# the central 128×128 block and on a 1-D variable-density mask, as ratios to the 2K-FFT floor
# and to the single-coil iteration measured in the same run. A few minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CRITERION_HOME="$target_dir/criterion"
cargo bench --locked -p sparsemap-core --bench coils -- coils/ "$@"
out=results/coils
mkdir -p "$out"
python3 - "$CRITERION_HOME/coils" "$out/bench.md" <<'EOF'
import json, pathlib, sys
root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def ns(*parts):
    path = root.joinpath(*parts, "new", "estimates.json")
    return json.loads(path.read_text())["mean"]["point_estimate"]
floor = ns("floor")
rows = []
for mask, label in [("block128", "central 128×128 block"), ("vd3", "every 3rd row + 24 central rows")]:
    single = (ns(f"{mask}_single", "T5") - ns(f"{mask}_single", "T1")) / 4
    rows.append((label, "single coil", single, floor, single))
    for coils in (4, 8):
        it = (ns(f"{mask}_C{coils}", "T5") - ns(f"{mask}_C{coils}", "T1")) / 4
        rows.append((label, f"{coils} coils", it, floor, single))
    prepare = ns(f"{mask}_C8", "prepare")
    rows.append((label, "8 coils: prepare (incl. 16 power iterations)", prepare, floor, single))
lines = [
    "# Multi-coil iteration cost (crates/core/benches/coils.rs, scripts/bench-coils.sh)",
    "",
    "N = 256², K = 32, 9×9 filters, rustfft, one thread; one iteration = (T5 − T1) / 4; the floor",
    "is 2K = 64 FFTs of 256²; ratios from the same run.",
    "",
    "| mask | solve | ms | / 2K-FFT floor | / single-coil iteration |",
    "|---|---|---|---|---|",
]
for label, what, value, floor, single in rows:
    lines.append(f"| {label} | {what} | {value / 1e6:.1f} | {value / floor:.2f} | {value / single:.2f} |")
text = "\n".join(lines) + "\n"
out.write_text(text)
print(text)
EOF
