#!/usr/bin/env bash
# Runs every test of sparsemap on a fresh machine, installing what it needs first:
#   - Debian packages mricron-data (the real Colin27 volume the bundled example is cut
#     from) and bart (the BART baselines of the host crate),
#   - the Cortex-M target of rust-toolchain.toml (the no_std crates must build for it),
#   - a Python venv with the pinned float64 reference's packages and the Lambda-network
#     training / export packages (models/.venv),
#   - the MNI152 templates from the pinned nilearn wheel (scripts/fetch-data.sh), which the
#     host crate's export tests read.
# Then: the reference's own tests (pytest), the whole Rust workspace (cargo test), and the
# no_std crates built for thumbv7em-none-eabihf.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
# mricron-data: the Colin27 volume the example is cut from; bart: the BART baselines.
missing=()
for package in mricron-data bart; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "not root, cannot install ${missing[*]}: install them with apt-get first" >&2
        exit 1
    fi
fi

step "Rust targets"
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || rustup target add thumbv7em-none-eabihf

step "Python reference and Lambda-network code (models/.venv)"
python="$(scripts/setup-python.sh)"
"$python" -m pytest models/reference -q
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
    "$python" -m pytest models/sparsemap_train -q -c models/sparsemap_train/pytest.ini

step "MNI152 templates from the nilearn wheel (data/external/nilearn)"
scripts/fetch-data.sh

step "cargo test (workspace)"
cargo test --workspace --locked

step "no_std crates for thumbv7em-none-eabihf (plain and with defmt logging)"
cargo build --locked --target thumbv7em-none-eabihf -p sparsemap-core -p sparsemap-wire -p sparsemap-firmware
cargo build --locked --target thumbv7em-none-eabihf -p sparsemap-core -p sparsemap-wire -p sparsemap-firmware \
    --features sparsemap-core/defmt,sparsemap-wire/defmt,sparsemap-firmware/defmt

step "all tests passed"
