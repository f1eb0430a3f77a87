#!/usr/bin/env bash
# The full host-side validation (issue: host crate), from a fresh checkout:
#   1. the MNI152 templates from the pinned nilearn wheel (scripts/fetch-data.sh);
#   2. `sparsemap-host export`: Colin27 splits + out-of-distribution sets into data/;
#   3. `sparsemap-host eval`: every method tuned on validation, measured on test and OOD
#      (results/table.md, table.csv, tuning.csv, eval.json, figure_*.png);
#   4. `sparsemap-host bench`: time per slice as ratios to CSC, with the tuned weights
#      (results/bench.md, bench.json).
# Needs the Debian packages mricron-data and bart (scripts/test.sh installs them). About
# 30-40 minutes on 2 cores, most of it the weight search; pass extra eval options through
# EVAL_ARGS, e.g. EVAL_ARGS="--acquisitions block128@0.15 --validation-slices 3" for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-data.sh
cargo build --release --locked -p sparsemap-host
host=target/release/sparsemap-host
"$host" export --out-dir data
# shellcheck disable=SC2086
"$host" eval --data-dir data --out-dir results --validation-slices 7 ${EVAL_ARGS:-}
"$host" bench --weights-from results/eval.json --json results/bench.json | tee results/bench.md
