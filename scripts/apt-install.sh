#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing (as root; else
# says which to install). Used by scripts/test.sh and scripts/setup-arm.sh.
set -euo pipefail
missing=()
for package in "$@"; do
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
