#!/usr/bin/env bash
# The per-source evaluation (issue 12, part 3), from a fresh checkout:
#   1. the MNI152 templates from the pinned nilearn wheel (scripts/fetch-data.sh);
#   2. `sparsemap-host export`: Colin27 splits and the other sources' SOURCE_{train,validation,
#      test} splits into data/;
#   3. `sparsemap-host eval --per-source`: every method tuned per acquisition on the pooled
#      validation slices of all sources, measured on every source's test split, with the
#      learned methods' margins over the best classical baseline and zero-filled per source
#      (results/sources/sources.md, sources.csv, sources_summary.csv, tuning.csv, sources.json);
#      the black-box baseline too, a U-Net on the zero-filled image trained on Colin27 like the
#      bundled model (models/baselines/README.md), so its loss from the one training source to
#      the others stands next to ours;
#   4. the ablation of the background gate (docs/design.md §3.7 item 7): the bundled model with
#      the gate off (results/sources_nogate/);
#   4b. acquisitions neither the bundled model nor the U-Net was trained on (1-D variable
#      density and Poisson disc at R = 4, block 128 at s = 0.5; TV as the classical method):
#      results/sources_unseen_acquisitions/ (~2 min);
#   5. each candidate model in models/lambda/candidates/ with the same baselines
#      (results/sources_<candidate>/). About 20 min on 2 cores with the defaults
#      (2 validation and 6 test slices per source, 3 acquisitions).
# Needs the Debian packages mricron-data and bart (scripts/test.sh installs them). Pass extra
# eval options through EVAL_ARGS (options given here cannot be repeated there: OUT_DIR,
# VALIDATION_SLICES and TEST_SLICES set those three), e.g. EVAL_ARGS="--sources colin27,mni152_t1"
# or TEST_SLICES=2 for a quick run; scripts/loso.sh is the leave-one-source-out run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-data.sh
cargo build --release --locked -p sparsemap-host
host=target/release/sparsemap-host
"$host" export --out-dir data
# shellcheck disable=SC2086
out="${OUT_DIR:-results/sources}"
# every run names the U-Net, so that the later runs can carry its rows over (--reuse)
unet=(--unet-model models/baselines/unet_colin27.unet.onnx)
"$host" eval --per-source --data-dir data --out-dir "$out" \
    --validation-slices "${VALIDATION_SLICES:-2}" --test-slices "${TEST_SLICES:-6}" ${EVAL_ARGS:-} \
    --methods zero-filled,csc,tv,bart-wavelet,bart-tv,learned-f32,learned-int8,unet "${unet[@]}"
# The learned methods without the background gate, next to the same baselines.
# shellcheck disable=SC2086
"$host" eval --per-source --data-dir data --out-dir "${out}_nogate" \
    --validation-slices "${VALIDATION_SLICES:-2}" --test-slices "${TEST_SLICES:-6}" ${EVAL_ARGS:-} \
    --methods learned-f32,learned-int8 --background-gate off --reuse "$out/sources.json" "${unet[@]}"
# Acquisitions outside both learned methods' training (robustness without data consistency).
# shellcheck disable=SC2086
"$host" eval --per-source --data-dir data --out-dir "${out}_unseen_acquisitions" \
    --validation-slices "${VALIDATION_SLICES:-2}" --test-slices "${TEST_SLICES:-6}" ${EVAL_ARGS:-} \
    --acquisitions vd4@0.15,poisson4@0.15,block128@0.5 \
    --methods zero-filled,tv,learned-f32,learned-int8,unet "${unet[@]}"
# Each candidate model of models/lambda/candidates/ next to the same baselines (--reuse: the
# classical rows are carried over, only the learned methods run): results/sources_<name>/.
for f32 in models/lambda/candidates/*.f32.onnx; do
    [ -e "$f32" ] || continue
    name="$(basename "$f32" .f32.onnx)"
    # shellcheck disable=SC2086
    "$host" eval --per-source --data-dir data --out-dir "${out}_$name" \
        --validation-slices "${VALIDATION_SLICES:-2}" --test-slices "${TEST_SLICES:-6}" ${EVAL_ARGS:-} \
        --methods learned-f32,learned-int8 --model-f32 "$f32" \
        --model-int8 "models/lambda/candidates/$name.int8.onnx" --reuse "$out/sources.json" "${unet[@]}"
done
