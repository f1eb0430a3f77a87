#!/usr/bin/env bash
# Reconstructs the bundled real example (examples/colin27: Colin27 T1 axial slice, central
# 128x128 of 256x256 k-space, noise 0.15 x RMS) with the bundled dct5 dictionary and the
# scalar lambda tuned on the validation slice, writes out/colin27_recon.{npy,json,png} and
# prints PSNR against the ground truth next to zero-filled.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
cargo build --release --locked -p sparsemap-edge --bin sparsemap
./target/release/sparsemap recon \
    --kspace examples/colin27/kspace.npy \
    --mask examples/colin27/mask.npy \
    --lambda 0.012 \
    --out out/colin27_recon.npy \
    --png out/colin27_recon.png \
    --compare-to examples/colin27/target.npy
echo "wrote out/colin27_recon.npy, out/colin27_recon.json, out/colin27_recon.png"
