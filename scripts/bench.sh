#!/usr/bin/env bash
# Every speed measurement of sparsemap in one run, written to results/bench.md (and printed):
#   1. crates/core/benches/fista_iteration.rs (criterion): one FISTA iteration at N = 256²,
#      K = 32 against its floors (docs/design.md §3.5): 2K cache-hot FFTs, the same FFTs over
#      K distinct grids, and the bytes one iteration moves over this machine's streaming
#      bandwidth, measured in the same process (STREAM copy and triad); and the pruned
#      FFTs for Cartesian masks (groups pruning_<backend>, ratios pruned / unpruned);
#   1b. crates/core/benches/levers.rs: the memory-traffic levers (in-place transforms,
#      compact Lambda maps, huge pages) against the default solver, interleaved in paired
#      rounds so that the drift of a shared machine cancels (levers.json);
#   2. `sparsemap-host bench-e2e` (host/src/e2e.rs): whole processes on the bundled example,
#      `sparsemap recon` with the int8 and the f32 model on 1 and 2 threads and BART pics TV
#      and l1-wavelet (tuned weights, results/eval.json) with OMP_NUM_THREADS=1 and 2, median
#      of 5 interleaved rounds, with PSNR, peak RSS and sparsemap's stage times;
#   3. the issue's targets against these numbers, a scaling model for 4 and 8 cores fitted to
#      the 1- and 2-thread stage times, and an estimate (not a measurement) for one
#      Cortex-A76 core from the operation counts.
# Ratios from one run are what to compare: shared machines drift. Needs bart (installed as
# scripts/test.sh does) and, for BART's peak RSS, GNU time (Debian package `time`, installed
# the same way when possible). About 10 minutes on 2 cores after the release build.
# Arguments are passed to criterion (e.g. a filter); RUNS=N changes the number of rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh bart
scripts/apt-install.sh time ||
    echo "bench.sh: no GNU time; BART's peak RSS will not be measured" >&2

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CRITERION_HOME="$target_dir/criterion"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --locked --bin sparsemap --bin sparsemap-host
cargo bench --locked -p sparsemap-core --bench fista_iteration -- "$@" >&2
cargo bench --locked -p sparsemap-core --bench levers -- "$@" >&2
"$target_dir/release/sparsemap-host" bench-e2e --threads 1,2 --repeats "${RUNS:-5}" \
    --weights-from results/eval.json --json "$work/e2e.json" > "$work/e2e.md"

python3 - "$CRITERION_HOME" "$work/e2e.json" "$work/e2e.md" > "$work/bench.md" <<'PY'
import json, math, os, pathlib, platform, subprocess, sys

criterion, e2e_json, e2e_md = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
e2e = json.loads(pathlib.Path(e2e_json).read_text())


def estimate(*parts):
    """Criterion's median (ns) of a benchmark of this run, or None if it was filtered out."""
    path = criterion.joinpath(*parts, "new", "estimates.json")
    return json.loads(path.read_text())["median"]["point_estimate"] if path.exists() else None


def cpu_model():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


traffic = json.loads(criterion.joinpath("iteration_traffic.json").read_text())
n, k = traffic["n"], traffic["k"]
llc = traffic["last_level_cache_bytes"]
out = []
p = out.append
p("# Benchmarks (`scripts/bench.sh`, one run)\n")
p(f"Machine: {cpu_model()}, {os.cpu_count()} cores visible, last-level cache "
  f"{llc / 2**20:.0f} MiB; commit {commit()}. Shared machines drift: compare ratios "
  "within this run, not absolute times across runs.\n" if llc else
  f"Machine: {cpu_model()}, {os.cpu_count()} cores visible; commit {commit()}.\n")

# --- 1. the iteration against its floors -------------------------------------------------
copy_ns, triad_ns = estimate("bandwidth", "copy"), estimate("bandwidth", "triad")
array = traffic["bandwidth_bytes_per_array"]
bandwidth = None
if copy_ns and triad_ns:
    copy_bw, triad_bw = 2 * array / copy_ns, 3 * array / triad_ns  # bytes/ns = GB/s
    bandwidth = max(copy_bw, triad_bw)
p("## One FISTA iteration (criterion, `crates/core/benches/fista_iteration.rs`)\n")
p(f"N = {int(math.isqrt(n))}², K = {k}, 9×9 filters, Lambda maps; one thread. Streaming "
  f"bandwidth in the same run (STREAM kernels on three {array / 2**20:.0f} MiB `f32` arrays, "
  "STREAM's byte count): " + (f"copy {copy_bw:.1f} GB/s, triad {triad_bw:.1f} GB/s; the "
  f"larger, {bandwidth:.1f} GB/s, turns bytes into time.\n" if bandwidth else "not run.\n"))
memory = traffic["memory_bytes"]
p(f"Bytes one iteration must move to and from memory: 40·K·N = {memory / 1e6:.1f} MB "
  f"(docs/design.md §3.5, \"Memory traffic\"); all its passes over buffers, most from cache: "
  f"{traffic['total_touched_bytes'] / 1e6:.0f} MB.\n")
p("| backend | FFT floor, cache-hot (ms) | streaming floor, 2K FFTs over K grids (ms) | "
  "bytes / bandwidth (ms) | iteration (ms) | iter / FFT floor | iter / streaming floor | "
  "iter / max(FFT floor, bytes / bandwidth) |")
p("|---|---|---|---|---|---|---|---|")
iteration_rows = {}
for backend in ("rustfft", "microfft"):
    floor, streaming = estimate(backend, "floor"), estimate(backend, "floor_streaming")
    t1, t5 = estimate(backend, "fista", "T1"), estimate(backend, "fista", "T5")
    if None in (floor, streaming, t1, t5):
        continue
    floor, streaming = floor / 1e6, streaming / 1e6
    iteration = (t5 - t1) / 4 / 1e6
    memory_ms = memory / bandwidth / 1e6 if bandwidth else float("nan")
    larger = max(floor, memory_ms) if bandwidth else floor
    iteration_rows[backend] = dict(floor=floor, streaming=streaming, iteration=iteration,
                                   memory_ms=memory_ms, larger=larger)
    p(f"| {backend} | {floor:.2f} | {streaming:.2f} | {memory_ms:.2f} | {iteration:.2f} | "
      f"{iteration / floor:.2f} | {iteration / streaming:.2f} | {iteration / larger:.2f} |")
p("\nOne iteration is `(T5 − T1) / 4` of two solves, which cancels the per-solve set-up.\n")

# Pruned FFTs (DESIGN §3.5), groups pruning_<backend>: the central 128x128 block of 256²
# leaves half the kx rows unsampled. Ratios only (one run, same machine, same minute).
def iteration_of(group, variant):
    t1, t5 = estimate(group, f"fista_{variant}", "T1"), estimate(group, f"fista_{variant}", "T5")
    return None if t1 is None or t5 is None else (t5 - t1) / 4


def ratio(new, old):
    return "not run" if new is None or old is None else f"{new / old:.3f}"


p("### Pruning (256², K = 32), ratios of medians of this run\n")
p("block = central 128×128 block (25 % of the 1-D transforms skipped); ky lines = every "
  "third ky, full readout: solved as the transposed problem (pruned), or with the FFT "
  "prototype that runs the Y pass first (FFT pairs only).\n")
p("| backend | block: FFT pair | block: iteration | ky lines transposed: iteration | "
  "ky lines y-first: FFT pair |\n|---|---|---|---|---|")
for backend in ("rustfft", "microfft"):
    group = f"pruning_{backend}"
    unpruned = iteration_of(group, "unpruned")
    p(f"| {backend} | {ratio(estimate(group, 'fft_pair', 'pruned'), estimate(group, 'fft_pair', 'unpruned'))} | "
      f"{ratio(iteration_of(group, 'pruned'), unpruned)} | "
      f"{ratio(iteration_of(group, 'transposed_ky_lines'), unpruned)} | "
      f"{ratio(estimate(group, 'ky_lines', 'y_first_pruned'), estimate(group, 'ky_lines', 'transposed'))} |")
p("")

# The levers (crates/core/benches/levers.rs): paired, interleaved rounds; ratios to the
# default solver in the same round.
levers_path = criterion.joinpath("levers.json")
if levers_path.exists():
    levers = json.loads(levers_path.read_text())
    label = {
        "baseline": "default solver (in-place transforms, f32 maps, heap buffers)",
        "two_grid_fft": "transforms out of place, on two grids (the solver before this lever)",
        "compact_maps": "Lambda maps in 16 bits (`Lambda::Compact`)",
        "huge_pages": "K-grid buffers on 2 MiB pages (`MADV_HUGEPAGE`)",
        "huge_pages_compact": "both of the last two",
    }
    variants = {row["variant"]: row for row in levers["variants"]}
    floor_row = variants.get("fft_floor")
    p(f"### Levers (256², K = 32, rustfft, one thread; median of {levers['rounds']} paired, "
      "interleaved rounds)\n")
    p("Each round times every variant once (order rotated); a ratio is the median over rounds "
      "of the variant's iteration over the default solver's in the same round, so the "
      "machine's drift cancels. Below 1 is faster.\n")
    p("| variant | iteration (ms) | ratio to the default solver |\n|---|---|---|")
    for row in levers["variants"]:
        if row["variant"] == "fft_floor":
            continue
        p(f"| {label.get(row['variant'], row['variant'])} | {row['iteration_ms']:.2f} | "
          f"{row['ratio_to_baseline']:.3f} |")
    p("")
    if floor_row:
        paired = 1 / floor_row["ratio_to_baseline"]
        p(f"The 2K cache-hot FFTs of one iteration, timed in the same rounds: "
          f"{floor_row['iteration_ms']:.2f} ms; **the default solver's iteration is "
          f"{paired:.2f}× this floor** (median of the paired per-round ratios; criterion's "
          "separate blocks above give the ratio in the table of the iteration).\n")
        iteration_rows.setdefault("paired", dict(ratio=paired, floor=floor_row["iteration_ms"],
                                                 iteration=variants["baseline"]["iteration_ms"]))

# --- 2. whole processes ------------------------------------------------------------------
p("## End to end: whole processes (`sparsemap-host bench-e2e`, host/src/e2e.rs)\n")
p(pathlib.Path(e2e_md).read_text().strip() + "\n")

# --- 3. targets --------------------------------------------------------------------------
rows = {(r["method"], r["threads"]): r for r in e2e["rows"]}
p("## Targets (the speed issue)\n")
p("| target | measured here | met |\n|---|---|---|")
rust = iteration_rows.get("rustfft")
if rust:
    ratio = rust["iteration"] / rust["larger"]
    paired = iteration_rows.get("paired")
    also = (f"; paired with the FFT floor in the same rounds (levers): {paired['ratio']:.2f} × "
            "the FFT floor" if paired else "")
    p(f"| iteration ≤ 1.3 × the larger floor (rustfft) | {ratio:.2f} × "
      f"max({rust['floor']:.1f} ms FFTs, {rust['memory_ms']:.1f} ms bytes / bandwidth){also} | "
      f"{'yes' if ratio <= 1.3 else 'no'} |")
int8, bart_tv = rows.get(("sparsemap-int8", 1)), rows.get(("bart-tv", 1))
for name in ("sparsemap-int8", "sparsemap-f32"):
    ours = rows.get((name, 1))
    if ours and bart_tv:
        speed = bart_tv["median_seconds"] / ours["median_seconds"]
        better = (ours["psnr"] or 0) > (bart_tv["psnr"] or 0)
        p(f"| {name} per slice ≥ 2× faster than BART pics TV at better PSNR, one thread | "
          f"BART TV time / {name} time = {speed:.2f} (whole processes); PSNR {ours['psnr']:.2f} vs "
          f"{bart_tv['psnr']:.2f} dB | {'yes' if speed >= 2 and better else 'no'} |")
if not any(rows.get((name, 2)) for name in ("sparsemap-int8", "sparsemap-f32")):
    p("| end to end ≤ 0.5 s per slice, 2 threads | not measured: this sparsemap has no "
      "`--threads` | — |")
for name in ("sparsemap-int8", "sparsemap-f32"):
    two = rows.get((name, 2))
    if not two:
        continue
    model = name.split("-")[1]
    p(f"| end to end ≤ 0.5 s per slice, 2 threads ({model}) | {two['median_seconds']:.2f} s process, "
      f"{two['stages']['slice']:.2f} s per slice in a running server (stage sum) | "
      f"{'yes' if two['median_seconds'] <= 0.5 else 'no'} |")

# --- 3b. scaling model -------------------------------------------------------------------
# Amdahl per stage, fitted to the two measured thread counts: t(p) = s + (t1 - s) / p with
# s = 2 t2 - t1 (clamped to [0, t1]); the process overhead outside the stages (start-up,
# model load, reading) is taken as serial. A model, not a measurement: it assumes the
# cores share nothing that saturates (on a Raspberry Pi 5 the four A76 cores share one
# LPDDR4X channel, so the memory-bound part of the solve scales less).
def fitted(t1, t2, cores):
    serial = min(max(2 * t2 - t1, 0.0), t1)
    return serial + (t1 - serial) / cores


scaling = []
for name in ("sparsemap-int8", "sparsemap-f32"):
    one, two = rows.get((name, 1)), rows.get((name, 2))
    if not (one and two):
        continue
    stages = ("prepare", "features", "network", "solve", "write")
    overhead1 = one["median_seconds"] - sum(one["stages"][x] for x in stages)
    overhead2 = two["median_seconds"] - sum(two["stages"][x] for x in stages)
    overhead = max(min(overhead1, overhead2), 0.0)
    line = [name]
    for cores in (1, 2, 4, 8):
        per_slice = sum(fitted(one["stages"][x], two["stages"][x], cores) for x in stages)
        line.append((per_slice, per_slice + overhead))
    speedup = one["stages"]["solve"] / two["stages"]["solve"]
    scaling.append((name, line, speedup, overhead))
if scaling:
    p("\n## Scaling model for 4 and 8 cores (fitted to the 1- and 2-thread runs above)\n")
    p("Per stage `t(p) = s + (t1 − s)/p` with the serial part `s = 2 t2 − t1` from the two "
      "measured thread counts; the process's time outside the stages (start-up, model load) "
      "is serial. The filters split into 8 chunks at K = 32 (`BLOCKS_PER_CHUNK = 4`), so the "
      "solve cannot use more than 8 threads. A model, not a measurement: cores that share one "
      "memory channel (Raspberry Pi 5) scale the memory-bound part of the solve less.\n")
    p("| model | solve speed-up, 2 threads (measured) | per slice, 1 / 2 / 4 / 8 cores (s) | "
      "whole process, 1 / 2 / 4 / 8 cores (s) |\n|---|---|---|---|")
    for name, line, speedup, overhead in scaling:
        slices = " / ".join(f"{v[0]:.2f}" for v in line[1:])
        procs = " / ".join(f"{v[1]:.2f}" for v in line[1:])
        p(f"| {name} | {speedup:.2f} | {slices} | {procs} |")
    p("")

# --- 4. the Cortex-A76 estimate ----------------------------------------------------------
# Assumptions (an estimate, not a measurement; change them here):
A76_GHZ = 2.4            # Raspberry Pi 5 (BCM2712) clock
A76_PEAK = A76_GHZ * 2 * 4 * 2  # GFLOP/s: 2 NEON FMA pipes × 4 f32 lanes × 2 flops
A76_EFFICIENCY = 0.15    # sustained fraction of peak for 256-point f32 FFT rows and the loops
A76_BANDWIDTH = 6.0      # GB/s, one core streaming from LPDDR4X
ELEMENTWISE_FLOPS = 44   # per filter pixel and iteration: adjoint multiply 9, update 25, forward 10
if int8 and rust:
    log2n = math.log2(n)
    fft_flops = 2 * k * 5 * n * log2n           # 2K complex FFTs, 5 N log2 N each
    flops = fft_flops + ELEMENTWISE_FLOPS * k * n
    a76_rate = A76_PEAK * A76_EFFICIENCY        # GFLOP/s
    compute_ms = flops / a76_rate / 1e6
    memory_lo = memory / A76_BANDWIDTH / 1e6
    memory_hi = traffic["total_touched_bytes"] / A76_BANDWIDTH / 1e6
    iterations = int8["iterations"] or 0
    solve_lo = iterations * max(compute_ms, memory_lo) / 1e3
    solve_hi = iterations * max(compute_ms, memory_hi) / 1e3
    x86_rate = fft_flops / (rust["floor"] * 1e6)  # GFLOP/s of this machine's FFT floor
    slowdown = x86_rate / a76_rate
    s = int8["stages"]
    other = (s["prepare"] + s["features"] + s["network"] + s["write"]) * slowdown
    p("\n## Estimate: one Cortex-A76 core (from operation counts; not measured)\n")
    p(f"Assumptions: {A76_GHZ} GHz (Raspberry Pi 5), NEON peak {A76_PEAK:.1f} GFLOP/s, "
      f"{A76_EFFICIENCY:.0%} of it sustained = {a76_rate:.1f} GFLOP/s, {A76_BANDWIDTH} GB/s "
      "streaming on one core. Its caches (512 KiB L2, 2 MiB shared L3) do not hold the "
      "N-element buffers one filter's work passes over, so the memory time lies between the "
      "compulsory bytes and all the passes. Counts are for unpruned transforms (the example's "
      "central-block mask lets pruning skip 25 % of the 1-D transforms, so the solve is an upper "
      "estimate in that respect).\n")
    p(f"- One iteration: {fft_flops / 1e6:.0f} MFLOP of FFTs (2K · 5 N log2 N) + "
      f"{ELEMENTWISE_FLOPS * k * n / 1e6:.0f} MFLOP elementwise = {compute_ms:.0f} ms of "
      f"compute; memory {memory_lo:.0f}–{memory_hi:.0f} ms "
      f"({memory / 1e6:.0f}–{traffic['total_touched_bytes'] / 1e6:.0f} MB).")
    def span(lo, hi, digits):
        return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else f"{lo:.{digits}f}–{hi:.{digits}f}"
    p(f"- Solve, T = {iterations}: {span(solve_lo, solve_hi, 2)} s.")
    p(f"- Prepare, features, int8 network and write: {other:.2f} s, this machine's "
      f"one-thread times scaled by its FFT rate over the A76's ({x86_rate:.1f} / "
      f"{a76_rate:.1f} GFLOP/s = {slowdown:.1f}×).")
    p(f"- Per slice: **{span(solve_lo + other, solve_hi + other, 1)} s** against the goal of 1 s.")
print("\n".join(out))
PY
mkdir -p results
cp "$work/bench.md" results/bench.md
cat results/bench.md
