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
#   scripts/loso.sh                 # all three; ~1 h of training per group on one core, plus
#                                   # ~25 min of evaluation per group on 2 cores
#   LOSO_GROUPS="mni152" PRESET=multisource scripts/loso.sh
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
        "$python" -m sparsemap_train.export --params "$prefix.params.npz" --out "$prefix"
    fi
    echo "loso: evaluating $prefix (classical weights tuned without $group)" >&2
    "$host" eval --per-source --data-dir data --out-dir "results/loso/${preset}_no_${group}" \
        --validation-slices "$validation_slices" --test-slices "$test_slices" \
        --tune-exclude "$(group_sources "$group")" \
        --model-f32 "$prefix.f32.onnx" --model-int8 "$prefix.int8.onnx"
done
echo "loso: tables in results/loso/*/sources.md; each held-out group's rows are its unseen-source numbers" >&2
