#!/usr/bin/env bash
# Runs every test of sparsemap on a fresh machine, installing what it needs first:
#   - Debian packages mricron-data (the real Colin27 volume the bundled example is cut
#     from), bart (the BART baselines of the host crate) and ismrmrd-tools (the C++ ISMRMRD
#     writer ismrmrd_generate_cartesian_shepp_logan of the MRD input tests),
#   - the Cortex-M target of rust-toolchain.toml (the no_std crates must build for it),
#   - a Python venv with the pinned float64 reference's packages, the Lambda-network
#     training / export packages and the ISMRMRD Python package (models/.venv),
#   - the MNI152 templates and nibabel's EPI run from their pinned wheels
#     (scripts/fetch-data.sh), which the host crate's export tests read.
#   - for the aarch64 edge target: the cross gcc and glibc, qemu-user and the Rust target
#     aarch64-unknown-linux-gnu (scripts/setup-arm.sh).
# Then: the reference's own tests (pytest), the whole Rust workspace (cargo test), the
# no_std crates built for thumbv7em-none-eabihf, and the core, wire and Lambda-network tests
# cross-built for aarch64 and run under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
# A test run builds each workspace crate once: incremental caches would only add gigabytes
# to the target directory (the CI machine's disk is shared and not large).
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
# mricron-data: the Colin27 volume the example is cut from; bart: the BART baselines;
# dicom3tools (dciodvfy) and orthanc (a real PACS): the DICOM and C-STORE tests;
# ismrmrd-tools: the C++ MRD writer of crates/edge/tests/mrd.rs.
scripts/apt-install.sh mricron-data bart dicom3tools orthanc ismrmrd-tools

step "Rust targets"
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf

step "Python reference and Lambda-network code (models/.venv)"
python="$(scripts/setup-python.sh)"
"$python" -m pytest models/reference -q
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    "$python" -m pytest models/sparsemap_train -q -c models/sparsemap_train/pytest.ini

step "MNI152 templates and the EPI run from their pinned wheels (data/external)"
scripts/fetch-data.sh

step "cargo test (workspace)"
# crates/edge/tests/mrd.rs writes its MRD files with both writers installed above (into
# target/tmp/mrd-fixtures); here a missing writer fails the test instead of skipping it.
export SPARSEMAP_REQUIRE_MRD_TOOLS=1
cargo test --workspace --locked

step "no_std crates for thumbv7em-none-eabihf (plain and with defmt logging)"
cargo build --locked --target thumbv7em-none-eabihf -p sparsemap-core -p sparsemap-wire -p sparsemap-firmware
cargo build --locked --target thumbv7em-none-eabihf -p sparsemap-core -p sparsemap-wire -p sparsemap-firmware \
    --features sparsemap-core/defmt,sparsemap-wire/defmt,sparsemap-firmware/defmt

step "aarch64 (the ARM box) under qemu-user: core, wire, and the Lambda network in tract"
# Cross-built with aarch64-linux-gnu-gcc and run through qemu-aarch64 -cpu cortex-a76 (the
# runner of .cargo/config.toml), so the NEON paths of rustfft and tract's NEON/SDOT kernels
# run (and the int8 and f32 Lambda models must match JAX/onnxruntime there too). Emulation is
# ~100x slower: this checks correctness only, it times nothing. The dev profile (opt-level
# 2/3, no LTO, as for x86) builds much faster than --release (thin LTO, one codegen unit)
# and runs these tests fast enough that none is skipped: under qemu the slowest binaries are
# wire's faults proptests (~20 s) and lambda_net (~18 s); core's 256x256 FFTs take ~1 s.
# The build (a second tract, for aarch64) is most of this step's time.
scripts/setup-arm.sh
cargo test --locked --target aarch64-unknown-linux-gnu -p sparsemap-core -p sparsemap-wire
cargo test --locked --target aarch64-unknown-linux-gnu -p sparsemap-edge --test lambda_net

step "all tests passed"
