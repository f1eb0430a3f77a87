#!/usr/bin/env bash
# Leave-one-source-out (issue 12, part 3): for each real anatomy held out, train the Lambda
# network of a preset without that anatomy's training AND validation files, export it (f32,
# int8), and evaluate per source with the classical weights tuned without the held-out
# validation slices either; the held-out source's rows are then what a scan from an unseen
# source gets. Anatomies, not files, are held out (host/src/sources.rs SOURCE_GROUPS):
#   colin27  = train/validation (Colin27) + colin27_bet_train + colin27_hires_train
#   mni152   = mni152_t1_* + synthetic_t2_*  (one anatomy, two contrasts)
#   inia19   = inia19_t1_*                   (macaque)
# epi_example4d has no training split, so it is held out in every run, including the
# bundled model's.
#
#   scripts/loso.sh                 # all three; ~30-60 min of training per group on one core,
#                                   # ~3 min of evaluation per group
#   LOSO_GROUPS="mni152" PRESET=multisource scripts/loso.sh
#   LOSO_CLASSICAL=retune scripts/loso.sh   # ~7-25 min of evaluation per group on 2 cores,
#                                           # into results/loso/<preset>_no_<group>_retune/
#
# Classical weights (LOSO_CLASSICAL): `reuse` (default) carries the classical rows of
# results/sources/sources.json over (same slices, noise and masks; scripts/eval-sources.sh
# makes it), whose weights were tuned on the pooled validation slices of every source, the
# held-out one included (2 of the 8 pooled slices). `retune` tunes them again without the
# held-out group's validation slices (--tune-exclude), the strict protocol; on the mni152
# group the two differ by at most 0.23 dB in any held-out margin (results/loso/).
#
# Outputs: models/lambda/loso/<preset>_no_<group>.{params.npz,history.json,f32.onnx,int8.onnx}
# (git-ignored) and results/loso/<preset>_no_<group>/sources.{md,csv,json} (committed).
# Needs what scripts/eval-sources.sh needs; run it (or `sparsemap-host export`) first.
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(scripts/setup-python.sh)"
export PYTHONPATH="$PWD/models"
preset="${PRESET:-multisource}"
groups="${LOSO_GROUPS:-colin27 mni152 inia19}"
test_slices="${TEST_SLICES:-6}"
validation_slices="${VALIDATION_SLICES:-2}"

scripts/fetch-data.sh >/dev/null
cargo build --release --locked -p sparsemap-host
host=target/release/sparsemap-host
[ -f data/mni152_t1_train.npz ] || "$host" export --out-dir data

all_train="data/train.npz data/colin27_bet_train.npz data/colin27_hires_train.npz data/mni152_t1_train.npz data/synthetic_t2_train.npz data/inia19_t1_train.npz"
all_validation="data/validation.npz data/mni152_t1_validation.npz data/synthetic_t2_validation.npz data/inia19_t1_validation.npz"

# Files of a group (training and validation) and its evaluated sources.
group_files() {
    case "$1" in
        colin27) echo "data/train.npz data/colin27_bet_train.npz data/colin27_hires_train.npz data/validation.npz" ;;
        mni152) echo "data/mni152_t1_train.npz data/synthetic_t2_train.npz data/mni152_t1_validation.npz data/synthetic_t2_validation.npz" ;;
        inia19) echo "data/inia19_t1_train.npz data/inia19_t1_validation.npz" ;;
        *) echo "loso: unknown group $1 (colin27, mni152, inia19)" >&2; exit 2 ;;
    esac
}
group_sources() {
    case "$1" in
        colin27) echo "colin27" ;;
        mni152) echo "mni152_t1,synthetic_t2" ;;
        inia19) echo "inia19_t1" ;;
    esac
}
without() { # LIST EXCLUDED -> comma-separated LIST minus EXCLUDED
    local out=() f
    for f in $1; do
        case " $2 " in *" $f "*) ;; *) out+=("$f") ;; esac
    done
    local IFS=,
    echo "${out[*]}"
}

mkdir -p models/lambda/loso results/loso
for group in $groups; do
    excluded="$(group_files "$group")"
    prefix="models/lambda/loso/${preset}_no_${group}"
    if [ ! -f "$prefix.int8.onnx" ]; then
        echo "loso: training $preset without $group" >&2
        "$python" -m sparsemap_train.train --preset "$preset" --out "$prefix" \
            --data "$(without "$all_train" "$excluded")" \
            --validation "$(without "$all_validation" "$excluded")"
        # int8 calibration on the run's own training data (never the held-out anatomy)
        train_files="$(without "$all_train" "$excluded")"
        "$python" -m sparsemap_train.export --params "$prefix.params.npz" --out "$prefix" \
            --calibration-data "${train_files%%,*}"
    fi
    out="results/loso/${preset}_no_${group}"
    case "${LOSO_CLASSICAL:-reuse}" in
        reuse)
            [ -f results/sources/sources.json ] || { echo "loso: results/sources/sources.json missing; run scripts/eval-sources.sh (or LOSO_CLASSICAL=retune)" >&2; exit 2; }
            echo "loso: evaluating $prefix (classical rows of results/sources, tuned on every source)" >&2
            "$host" eval --per-source --data-dir data --out-dir "$out" \
                --validation-slices "$validation_slices" --test-slices "$test_slices" \
                --methods learned-f32,learned-int8 --reuse results/sources/sources.json \
                --unet-model models/baselines/unet_colin27.unet.onnx \
                --model-f32 "$prefix.f32.onnx" --model-int8 "$prefix.int8.onnx" ;;
        retune)
            echo "loso: evaluating $prefix (classical weights tuned without $group)" >&2
            "$host" eval --per-source --data-dir data --out-dir "${out}_retune" \
                --validation-slices "$validation_slices" --test-slices "$test_slices" \
                --tune-exclude "$(group_sources "$group")" \
                --model-f32 "$prefix.f32.onnx" --model-int8 "$prefix.int8.onnx" ;;
        *) echo "loso: LOSO_CLASSICAL must be reuse or retune" >&2; exit 2 ;;
    esac
done
echo "loso: tables in results/loso/*/sources.md; each held-out group's rows are its unseen-source numbers" >&2
