#!/usr/bin/env bash
# The multi-coil comparison (issue 16, part 5, first part), from a fresh checkout:
#   1. `sparsemap-host export --mni-dir none --no-extra-sources`: the Colin27 validation and
#      test splits into data/ (needs the Debian package mricron-data);
#   2. `sparsemap-host eval-coils`: 8 simulated coils (Biot–Savart loops, correlated noise,
#      host/src/coils.rs) on 4 validation slices (tuning) and 8 test slices, acquisitions
#      block128@0.15 and vd3@0.15 (24 centre rows); rows zero-filled RSS, zero-filled SENSE
#      with the true maps, BART pics l1-wavelet and TV with ESPIRiT maps (needs the Debian
#      package bart), the bundled int8 model through the edge runtime (each coil alone + RSS,
#      one coil-combined virtual coil, all coils together with estimated and with ESPIRiT
#      maps), and the map agreement. Writes results/coils/coils.md,
#      coils.csv and coils.json.
# Options: VALIDATION_SLICES, TEST_SLICES, ACQUISITIONS (comma separated MASK@NOISE), PROFILE
# (cargo profile of the build, default release), THREADS
# (slices at a time, each single-threaded; default 1 so that the seconds are single-thread
# times), EVAL_ARGS (anything else `eval-coils --help` lists).
set -euo pipefail
cd "$(dirname "$0")/.."

# PROFILE=dev uses the tests' build (optimised, no LTO) instead of a release build.
profile="${PROFILE:-release}"
cargo build --profile "$profile" --locked -p sparsemap-host
case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
host="${CARGO_TARGET_DIR:-target}/$dir/sparsemap-host"
if [[ ! -f data/validation.npz || ! -f data/test.npz ]]; then
    "$host" export --out-dir data --mni-dir none --no-extra-sources
fi
acquisitions="${ACQUISITIONS:-block128@0.15,vd3@0.15}"
# The exact command, with the overrides given, goes into coils.md.
command="scripts/eval-coils.sh"
for var in EVAL_ARGS THREADS TEST_SLICES VALIDATION_SLICES ACQUISITIONS PROFILE; do
    [[ -n "${!var:-}" ]] && command="$var=${!var} $command"
done
export SPARSEMAP_EVAL_COILS_COMMAND="$command"
# shellcheck disable=SC2086
"$host" eval-coils --data-dir data --out-dir results/coils \
    --acquisitions "$acquisitions" \
    --validation-slices "${VALIDATION_SLICES:-4}" --test-slices "${TEST_SLICES:-8}" \
    --threads "${THREADS:-1}" ${EVAL_ARGS:-}
