#!/usr/bin/env bash
# Installs what cross-building and emulating the aarch64 edge binary needs, if missing:
#   - Debian gcc-aarch64-linux-gnu (the linker of .cargo/config.toml's
#     [target.aarch64-unknown-linux-gnu]) and libc6-dev-arm64-cross (its glibc, also the
#     sysroot qemu loads the binaries' shared libraries from: /usr/aarch64-linux-gnu),
#   - Debian qemu-user (qemu-aarch64, the runner; binfmt registration is not needed),
#   - the Rust target aarch64-unknown-linux-gnu.
# Used by scripts/test.sh and scripts/build-edge-arm.sh.
set -euo pipefail

"$(dirname "$0")/apt-install.sh" gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || rustup target add aarch64-unknown-linux-gnu
