#!/usr/bin/env bash
# The full host-side validation (issue: host crate), from a fresh checkout:
#   1. the MNI152 templates from the pinned nilearn wheel (scripts/fetch-data.sh);
#   2. `sparsemap-host export`: Colin27 splits + out-of-distribution sets into data/;
#   3. `sparsemap-host eval`: every method tuned on validation, measured on test and OOD
#      (results/table.md, table.csv, tuning.csv, eval.json, figure_*.png), including the
#      learned method with the bundled models (f32 and int8);
#   4. the learned method with two dictionaries it was not trained with (results/unseen_*) and
#      with the CSC baseline's dct5 (results/dictionary_dct5);
#   5. `sparsemap-host bench`: time per slice as ratios to CSC, with the tuned weights
#      (results/bench_methods.md, bench_methods.json).
# Needs the Debian packages mricron-data and bart (scripts/test.sh installs them). About
# 30-40 minutes on 2 cores, most of it the weight search; pass extra eval options through
# EVAL_ARGS (not --validation-slices, which is set here; clap refuses an option given twice),
# e.g. EVAL_ARGS="--acquisitions block128@0.15 --test-slices 4" for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-data.sh
cargo build --release --locked -p sparsemap-host
host=target/release/sparsemap-host
"$host" export --out-dir data
# shellcheck disable=SC2086
"$host" eval --data-dir data --out-dir results --validation-slices 7 ${EVAL_ARGS:-}
# The learned method with dictionaries it never saw in training (filter size 11 with K = 32 and
# 64), and with dct5 (a training dictionary, and the one of the scalar-lambda CSC baseline: the
# same dictionary with learned maps vs one tuned lambda), next to the baselines of the run above
# (carried over, not re-run).
for dictionary in unseen_cdl_k32_s11 unseen_cdl_k64_s11 dictionary_dct5; do
    "$host" eval --data-dir data --out-dir "results/$dictionary" --validation-slices 7 \
        --acquisitions block128@0.15 --ood-acquisition none --methods learned-f32,learned-int8 \
        --model-dictionary "models/dictionaries/${dictionary#*_}.npy" --reuse results/eval.json --no-figures
done
"$host" bench --weights-from results/eval.json --json results/bench_methods.json | tee results/bench_methods.md
