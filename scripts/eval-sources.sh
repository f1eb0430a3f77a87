#!/usr/bin/env bash
# The per-source evaluation (issue 12, part 3), from a fresh checkout:
#   1. the MNI152 templates from the pinned nilearn wheel (scripts/fetch-data.sh);
#   2. `sparsemap-host export`: Colin27 splits and the other sources' SOURCE_{train,validation,
#      test} splits into data/;
#   3. `sparsemap-host eval --per-source`: every method tuned per acquisition on the pooled
#      validation slices of all sources, measured on every source's test split, with the
#      learned methods' margins over the best classical baseline and zero-filled per source
#      (results/sources/sources.md, sources.csv, sources_summary.csv, tuning.csv, sources.json).
# Needs the Debian packages mricron-data and bart (scripts/test.sh installs them). Pass extra
# eval options through EVAL_ARGS (options given here cannot be repeated there: OUT_DIR and
# VALIDATION_SLICES set those two), e.g. EVAL_ARGS="--sources colin27,mni152_t1 --test-slices 4"
# for a quick run, or OUT_DIR=results/sources_lo_mni152 EVAL_ARGS="--tune-exclude mni152_t1"
# for a leave-one-source-out run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-data.sh
cargo build --release --locked -p sparsemap-host
host=target/release/sparsemap-host
"$host" export --out-dir data
# shellcheck disable=SC2086
"$host" eval --per-source --data-dir data --out-dir "${OUT_DIR:-results/sources}" \
    --validation-slices "${VALIDATION_SLICES:-4}" ${EVAL_ARGS:-}
