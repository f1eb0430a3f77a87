#!/usr/bin/env bash
# Reproduces the bundled model from nothing (docs: models/README.md): the Python venv, the
# training data (sparsemap-host export of Colin27 / MNI152), the four learned dictionaries,
# the Lambda network (fixed seeds) and its f32/int8 ONNX export. About 70 min on one core of
# the 2-core reference machine; everything runs single-threaded.
#
#   scripts/train-model.sh            # writes models/dictionaries/cdl_*.{npy,json,png},
#                                     # models/lambda/default.{params.npz,history.json,f32.onnx,int8.onnx}
#   SKIP_DICTIONARIES=1 scripts/train-model.sh   # keep the committed dictionaries
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(scripts/setup-python.sh)"
scripts/fetch-data.sh
if [ ! -f data/train.npz ]; then
    cargo build --release --locked -p sparsemap-host
    ./target/release/sparsemap-host export --out-dir data
fi
export PYTHONPATH="$PWD/models"
if [ -z "${SKIP_DICTIONARIES:-}" ]; then
    # K and filter size differ; seeds fixed. ~3 min each (K = 64: ~6 min).
    for spec in "16 7 1" "32 9 2" "32 11 3" "64 11 4"; do
        set -- $spec
        "$python" -m sparsemap_train.cdl --k "$1" --s "$2" --steps 1500 --seed "$3" \
            --data data/train.npz --out "models/dictionaries/cdl_k$1_s$2"
    done
fi
mkdir -p models/lambda
"$python" -m sparsemap_train.train --preset default --out models/lambda/default
"$python" -m sparsemap_train.export --params models/lambda/default.params.npz --out models/lambda/default
echo "wrote models/lambda/default.{f32,int8}.onnx; evaluate with scripts/validate.sh"
