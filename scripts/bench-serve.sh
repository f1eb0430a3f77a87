#!/usr/bin/env bash
# Measures the streaming product on this machine (quiet machine, one reconstruction thread):
#   1. per-slice time split and latency of `sparsemap serve` over TCP on loopback, N = 256,
#      K = 32 (the bundled dictionary), with the int8 and the f32 model, 20 slices each,
#      lines sent 20 ms apart;
#   2. peak RSS over a 200-slice stream sent as fast as the socket takes it (int8);
#   3. what a preview costs (--preview-every 32 on 20 slices).
# Prints a summary of the JSON lines (medians); the raw lines go to results/serve/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sparsemap-edge --bin sparsemap
cargo build --release --locked -p sparsemap-host --example example_stream
out=results/serve
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
target/release/examples/example_stream 20 "$work/s20.smw"
target/release/examples/example_stream 200 "$work/s200.smw"

# Sends a .smw file to HOST:PORT frame by frame, INTERVAL seconds apart (0: all at once).
send() {
    python3 - "$@" <<'PY'
import socket, sys, time
path, address, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
host, port = address.rsplit(":", 1)
data = open(path, "rb").read()
with socket.create_connection((host, int(port))) as s:
    if interval == 0:
        s.sendall(data)
    else:
        start = 0
        while start < len(data):
            end = data.index(b"\0", start) + 1
            s.sendall(data[start:end])
            start = end
            time.sleep(interval)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
PY
}

# serve NAME STREAM INTERVAL ARGS...: one TCP connection on loopback (frames INTERVAL
# seconds apart), then SIGTERM by PID.
serve() {
    local name=$1 stream=$2 interval=$3
    shift 3
    target/release/sparsemap serve --listen 127.0.0.1:0 --out-dir "$work/$name" "$@" \
        > "$out/$name.jsonl" 2> "$work/$name.err" &
    local pid=$!
    local address=""
    for _ in $(seq 100); do
        address=$(sed -n 's/^sparsemap: listening on //p' "$work/$name.err")
        [ -n "$address" ] && break
        sleep 0.1
    done
    [ -n "$address" ] || { cat "$work/$name.err"; kill "$pid"; exit 1; }
    local slices
    slices=$(( $(stat -c %s "$stream") > 1000000 ? 200 : 20 ))
    send "$stream" "$address" "$interval"
    while [ "$(wc -l < "$out/$name.jsonl")" -lt "$slices" ]; do sleep 0.2; done
    kill -TERM "$pid"
    wait "$pid"
    rm -rf "${work:?}/$name"
}

# Lines 20 ms apart (a 128-line slice in 2.6 s, slower than its reconstruction, so the
# latency is settling + reconstruction + writing, not queueing).
serve int8 "$work/s20.smw" 0.02
serve f32 "$work/s20.smw" 0.02 --model models/lambda/default.f32.onnx
serve preview "$work/s20.smw" 0.02 --preview-every 32
# As fast as the socket takes it: the bounded queues hold the sender back.
serve int8_200 "$work/s200.smw" 0

python3 - "$out" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
def load(name):
    path = out / f"{name}.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    for r in rows:  # temporary paths of this machine: not worth keeping
        r.pop("files", None)
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
    return rows
def med(rows, key, sub=None):
    return statistics.median(r[key][sub] if sub else r[key] for r in rows)
print("per-slice medians over 20 slices, N = 256, K = 32, T = 32, one reconstruction thread (seconds)")
keys = ["assembly_wait", "prepare", "features", "network", "solve", "write"]
print("model  " + " ".join(f"{k:>13}" for k in keys) + "   latency  peak RSS MB")
for name in ["int8", "f32"]:
    rows = load(name)[1:]  # the first slice waits for the plan
    print(f"{name:6} " + " ".join(f"{med(rows, 'times', k):13.4f}" for k in keys)
          + f"  {med(rows, 'latency'):8.3f}  {max(r['peak_rss_mb'] for r in rows):8.1f}")
rows = load("preview")[1:]
per = [r["times"]["previews"] / r["previews"] for r in rows if r["previews"]]
base = med(load("int8")[1:], "latency")
print(f"preview: {statistics.median(r['previews'] for r in rows)} per slice, "
      f"{1e3 * statistics.median(per):.2f} ms each (ingest thread); "
      f"latency with previews {med(rows, 'latency'):.3f} s vs {base:.3f} s without")
rows = load("int8_200")
rss = [r["peak_rss_mb"] for r in rows]
print(f"200 slices sent as fast as possible: peak RSS after slice 1 {rss[0]:.1f} MB, "
      f"20 {rss[19]:.1f} MB, 100 {rss[99]:.1f} MB, 200 {rss[199]:.1f} MB")
PY
