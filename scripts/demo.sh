#!/usr/bin/env bash
# Reconstructs the bundled real example (examples/colin27: Colin27 T1 axial slice, central
# 128x128 of 256x256 k-space, noise 0.15 x RMS) with the bundled int8 Lambda model and its
# dictionary (models/lambda/default.int8.onnx, models/dictionaries/cdl_k32_s9.npy), writes
# out/colin27_recon.{npy,json,png} and the predicted maps out/colin27_lambda.npy, and prints
# PSNR against the ground truth next to zero-filled.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
cargo build --release --locked -p sparsemap-edge --bin sparsemap
./target/release/sparsemap recon \
    --kspace examples/colin27/kspace.npy \
    --mask examples/colin27/mask.npy \
    --out out/colin27_recon.npy \
    --png out/colin27_recon.png \
    --lambda-out out/colin27_lambda.npy \
    --compare-to examples/colin27/target.npy
echo "wrote out/colin27_recon.npy, out/colin27_recon.json, out/colin27_recon.png, out/colin27_lambda.npy"
# The same slice as the edge box receives it: the firmware's recorded wire stream (16-bit
# ADC codes), one JSON line per slice, files in out/stream/.
./target/release/sparsemap recon \
    --input tests/fixtures/wire/colin27_axial.smw \
    --out-dir out/stream --save-maps
echo "wrote out/stream/scan00027_slice000.{npy,png,nii,json} and _lambda.{npy,png}"
