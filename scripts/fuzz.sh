#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ (fuzz/README.md) in turn, one libFuzzer process at a
# time, for RUNS executions, starting from its seeds (fuzz/seeds/<target>) and its corpus
# (fuzz/corpus/<target>, kept between runs, not committed). Prints per target the executions,
# the seconds, exec/s and whether it crashed (with the crash input, under fuzz/artifacts/);
# exits non-zero if any target crashed or failed to run. Installs cargo-fuzz if missing.
#
#   scripts/fuzz.sh                        # every target, 10 000 000 executions each
#   RUNS=100000 scripts/fuzz.sh            # a quick pass
#   TARGETS="nifti_reader slice_assembler" scripts/fuzz.sh
#
# Environment:
#   RUNS       executions per target (default 10000000).
#   TARGETS    space-separated "name" or "name:max_len" entries (default: the list below);
#              a target without max_len gets DEFAULT_MAX_LEN.
#   NICE       niceness of the fuzzing processes (default 10: builds of others go first).
#   SANITIZER  cargo-fuzz --sanitizer (default none: the crates forbid unsafe; overflow
#              checks and debug assertions stay on in cargo-fuzz's build).
#   TIMEOUT    seconds one input may take before libFuzzer reports it as a hang (default 10;
#              libFuzzer's own default of 1200 let an exponential header parse go unnoticed).
#   FUZZ_ARGS  extra libFuzzer arguments, e.g. "-max_total_time=600".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

RUNS="${RUNS:-10000000}"
NICE="${NICE:-10}"
SANITIZER="${SANITIZER:-none}"
TIMEOUT="${TIMEOUT:-10}"
DEFAULT_MAX_LEN=4096
# Append new targets here (name:max_len). max_len bounds the inputs libFuzzer makes: a few
# KiB cover several scans of frames, a small NIfTI volume or a few scans of assembler ops.
TARGETS="${TARGETS:-decode_stream:4096 stream_faults:1024 nifti_reader:4096 slice_assembler:4096 npy_reader:1024 onnx_model:16384 onnx_plan:16384 mrd_stream:4096 mrd_file:32768 dicom_series:4096}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

row='%-16s %12s %8s %8s  %s'
logs=target/fuzz-logs
mkdir -p "$logs"
summary=()
failed=0
for entry in $TARGETS; do
    target="${entry%%:*}"
    max_len="$DEFAULT_MAX_LEN"
    [ "$entry" != "$target" ] && max_len="${entry#*:}"
    corpus="corpus/$target"
    seeds="seeds/$target"
    mkdir -p "$corpus" "artifacts/$target"
    dirs=("$corpus")
    [ -d "$seeds" ] && dirs+=("$seeds")
    log="$logs/$target.log"

    echo "==> $target: $RUNS runs, max_len $max_len (log: fuzz/$log)" >&2
    nice -n "$NICE" cargo +nightly fuzz build --sanitizer "$SANITIZER" "$target" >&2
    start=$(date +%s.%N)
    status=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of arguments
    nice -n "$NICE" cargo +nightly fuzz run --sanitizer "$SANITIZER" "$target" "${dirs[@]}" -- \
        -runs="$RUNS" -max_len="$max_len" -timeout="$TIMEOUT" -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | head -n 1)
    if [ -n "$crash" ]; then
        result="CRASH: $crash"
        failed=1
    elif [ "$status" -ne 0 ]; then
        result="FAILED (exit $status, see fuzz/$log)"
        failed=1
    else
        result="no crash"
    fi
    line=$(printf "$row" "$target" "${execs:-?}" "$seconds" "${rate:-?}" "$result")
    echo "$line" >&2
    summary+=("$line")
done

echo
printf "$row\n" target executions seconds exec/s result
for line in "${summary[@]}"; do
    echo "$line"
done
exit "$failed"
