#!/usr/bin/env bash
# The table of crafted input classes (docs/design.md §7.3): runs the hostile-input test of
# crates/edge/tests/hostile.rs, which refuses every class under a 512 MiB address-space limit,
# and records each class's one-line message and peak RSS (/usr/bin/time) in
# results/hostile/classes.md. Not part of the test command (the test itself is).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh time util-linux
mkdir -p results/hostile
SPARSEMAP_HOSTILE_REPORT="$PWD/results/hostile/classes.md" \
    cargo test --locked -p sparsemap-edge --test hostile every_crafted_input_is_refused_with_one_line_naming_it
rows=$(grep -c '^| [a-z]' results/hostile/classes.md | awk '{ print $1 - 1 }')
worst=$(awk -F'|' '/^[|] [a-z]/ && !/^[|] class/ { gsub(/ /, "", $3); if ($3 + 0 > max) { max = $3 + 0; row = $2 } } END { print max " MiB (" row ")" }' results/hostile/classes.md)
echo "$rows classes refused; largest peak RSS of a refused input: $worst"
echo "table: results/hostile/classes.md"
