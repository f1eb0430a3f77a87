#!/usr/bin/env bash
# Cross-builds the `sparsemap` edge binary for the ARM box (aarch64-unknown-linux-gnu: a
# Raspberry Pi 5 with 64-bit Raspberry Pi OS, a Jetson's CPU) with the stripped `dist`
# profile of Cargo.toml, and prints where it is and its size. Installs the cross linker,
# qemu-user and the Rust target first if missing (scripts/setup-arm.sh).
#
#   scripts/build-edge-arm.sh            # then: scp the printed path to the box (docs/deploy.md)
#
# The binary is self-contained apart from glibc: the bundled model and dictionaries are
# compiled in. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-arm.sh
cargo build --locked --profile dist --target aarch64-unknown-linux-gnu -p sparsemap-edge --bin sparsemap

target_dir="${CARGO_TARGET_DIR:-target}"
binary="$target_dir/aarch64-unknown-linux-gnu/dist/sparsemap"
bytes=$(stat -c %s "$binary")
echo "$binary"
awk -v b="$bytes" 'BEGIN { printf "size: %d bytes (%.1f MiB), stripped, aarch64\n", b, b / 1048576 }'
