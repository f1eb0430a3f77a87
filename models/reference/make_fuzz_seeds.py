"""Write a few valid wire streams as seeds for the decode_stream fuzz target.

Independent of the Rust encoder: postcard bytes written by hand (layout in
crates/wire/README.md), zlib.crc32, textbook COBS. Run: python3 models/reference/make_fuzz_seeds.py
"""
import os, random, struct, zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fuzz", "seeds", "decode_stream")

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80); v >>= 7
    out.append(v); return bytes(out)

def zz(v): return ((v << 1) ^ (v >> 15)) & 0xFFFF

def cobs(data):
    out = bytearray([0]); ci = 0; code = 1
    for b in data:
        if b == 0:
            out[ci] = code; ci = len(out); out.append(0); code = 1
        else:
            out.append(b); code += 1
            if code == 0xFF:
                out[ci] = code; ci = len(out); out.append(0); code = 1
    out[ci] = code
    return bytes(out) + b"\x00"

def frame(body): return cobs(body + struct.pack("<I", zlib.crc32(body)))

def start(sid, ny, nx, nc=1, ns=1):
    # Version 2: the readout window (kx_first, kx_count) follows fov_mm; the lines carry nx
    # samples, centred in a grid 4 columns wider.
    return frame(bytes([0]) + varint(2) + varint(sid) + varint(ny) + varint(nx + 4) + bytes([nc]) + varint(ns)
                 + struct.pack("<fff", 47.0, 220.0, 220.0) + varint(2) + varint(nx))

def line(sid, seq, ky, iq, coil=0, sl=0, f32=False):
    b = bytes([1]) + varint(sid) + varint(seq) + varint(sl) + bytes([coil]) + varint(ky)
    if f32:
        b += bytes([1]) + varint(len(iq)) + b"".join(struct.pack("<ff", i, q) for i, q in iq)
    else:
        b += bytes([0]) + struct.pack("<f", 1e-3) + varint(len(iq)) + b"".join(varint(zz(i)) + varint(zz(q)) for i, q in iq)
    return frame(b)

def end(sid, n, aborted=0): return frame(bytes([2]) + varint(sid) + varint(n) + bytes([aborted]))

def fault(sid, kind, ky, detail): return frame(bytes([3]) + varint(sid) + bytes([kind]) + varint(0) + bytes([0]) + varint(ky) + varint(detail))

rng = random.Random(1)
os.makedirs(OUT, exist_ok=True)
for k in range(6):
    sid = rng.randrange(1, 1 << 20); ny = rng.choice([4, 8, 16]); nx = rng.choice([1, 8, 32])
    s = bytes([rng.randrange(256)]) + start(sid, ny, nx, nc=2, ns=2)
    n = rng.randrange(1, 8)
    for seq in range(n):
        iq = [(rng.randrange(-32768, 32768), rng.randrange(-32768, 32768)) for _ in range(nx)]
        if k % 2:
            iq = [(float(i) / 7, float(q) / 3) for i, q in iq]
        s += line(sid, seq, rng.randrange(ny), iq, coil=rng.randrange(2), sl=rng.randrange(2), f32=bool(k % 2))
        if rng.random() < 0.3:
            s += fault(sid, rng.randrange(6), rng.randrange(ny), rng.randrange(1 << 16))
    s += end(sid, n, k % 3 == 0)
    with open(os.path.join(OUT, f"stream{k}"), "wb") as fh:
        fh.write(s)
print("wrote", len(os.listdir(OUT)), "seeds to", OUT)
