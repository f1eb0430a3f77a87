//! Encode/decode throughput of 256-sample `Line` frames on this machine.
//!
//! ```sh
//! cargo run --release -p sparsemap-wire --features std --example throughput
//! # optionally: -- path/to/stream.smw   (default: the committed Colin27 stream)
//! ```
//!
//! Three workloads, each a set of distinct lines cycled through:
//! * `colin27 i16`: the 128 lines of the recorded Colin27 scan (real k-space statistics:
//!   small codes away from DC, so mostly 1–2 byte varints). Since format version 2 these
//!   carry only the 128-column readout window, not 256 samples;
//! * `full-range i16`: uniformly random codes over the whole 16-bit range (worst case for
//!   the varints, 3 bytes for most values);
//! * `f32`: random floats (8 bytes per sample).
//!
//! For each, frames/s and MB/s (of encoded wire bytes) for `encode_line` into a reused
//! buffer and for `Decoder::feed` of the concatenated stream (CRC, COBS, postcard and all
//! scan checks). Timed over at least `MIN_SECONDS` per measurement; best of `REPEATS`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sparsemap_wire::{
    encode, encode_line, heapless, max_encoded_len, Decoder, EndStatus, FeedResult, Frame,
    FrameReader, Line, Samples, ScanEnd, ScanStart, VERSION,
};

const N: usize = 256;
const MIN_SECONDS: f64 = 1.0;
const REPEATS: usize = 3;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A scan whose readout window is `kx_count` samples wide, centred in the N-column grid.
fn start(scan_id: u32, kx_count: u16) -> ScanStart {
    ScanStart {
        version: VERSION,
        scan_id,
        n_y: 256,
        n_x: N as u16,
        n_coils: 1,
        n_slices: 1,
        field_mt: 50.0,
        fov_mm: [256.0; 2],
        kx_first: (N as u16 - kx_count) / 2,
        kx_count,
    }
}

/// Best-of-`REPEATS` seconds per call of `f` (which processes `per_call` frames).
fn time(mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let mut calls = 0u64;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs_f64(MIN_SECONDS) {
            f();
            calls += 1;
        }
        best = best.min(t0.elapsed().as_secs_f64() / calls as f64);
    }
    best
}

fn measure(name: &str, lines: &[Line<N>]) {
    // Encode: every line once per call.
    let mut buf = [0u8; max_encoded_len(N)];
    let mut wire_bytes = 0usize;
    for l in lines {
        wire_bytes += encode_line(l, &mut buf).unwrap().len();
    }
    let t_enc = time(|| {
        for l in lines {
            black_box(encode_line(black_box(l), &mut buf).unwrap().len());
        }
    });
    // Decode: the whole scan (ScanStart, lines with seq 0.., ScanEnd) per call.
    let mut stream = Vec::new();
    // Every workload has lines of one length: that is the scan's window.
    let kx_count = lines.first().map_or(N, |l| l.samples.len()) as u16;
    stream.extend_from_slice(encode(&Frame::<N>::ScanStart(start(1, kx_count)), &mut buf).unwrap());
    for (seq, l) in lines.iter().enumerate() {
        let mut l = l.clone();
        l.scan_id = 1;
        l.seq = seq as u32;
        stream.extend_from_slice(encode_line(&l, &mut buf).unwrap());
    }
    let end = ScanEnd {
        scan_id: 1,
        lines_sent: lines.len() as u32,
        status: EndStatus::Complete,
    };
    stream.extend_from_slice(encode(&Frame::<N>::ScanEnd(end), &mut buf).unwrap());
    let mut dec: Box<Decoder<N, { sparsemap_wire::max_raw_len(N) }>> = Box::new(Decoder::new());
    let t_dec = time(|| {
        let mut input = &stream[..];
        let mut frames = 0usize;
        loop {
            match dec.feed(input) {
                FeedResult::Consumed => break,
                FeedResult::Frame { frame, remaining } => {
                    black_box(&frame);
                    frames += 1;
                    input = remaining;
                }
                FeedResult::Error { error, .. } => panic!("{error}"),
            }
        }
        assert_eq!(frames, lines.len() + 2);
    });
    let n = lines.len() as f64;
    let per_line = wire_bytes as f64 / n;
    println!(
        "{name:<16} {per_line:>7.0} B/line | encode {:>9.0} lines/s {:>7.1} MB/s {:>6.2} us/line | decode {:>9.0} lines/s {:>7.1} MB/s {:>6.2} us/line",
        n / t_enc,
        wire_bytes as f64 / t_enc / 1e6,
        t_enc / n * 1e6,
        n / t_dec,
        stream.len() as f64 / t_dec / 1e6,
        t_dec / n * 1e6,
    );
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/wire/colin27_axial.smw"
        )
        .to_string()
    });
    let colin: Vec<Line<N>> = match std::fs::File::open(&path) {
        Ok(f) => {
            FrameReader::<_, N, { sparsemap_wire::max_raw_len(N) }>::new(std::io::BufReader::new(f))
                .filter_map(|r| match r {
                    Ok(Frame::Line(l)) => Some(l),
                    _ => None,
                })
                .collect()
        }
        Err(e) => {
            eprintln!("{path}: {e} (skipping the colin27 workload)");
            Vec::new()
        }
    };
    let mut rng = Rng(0x5eed);
    let full: Vec<Line<N>> = (0..128)
        .map(|ky| {
            let iq: heapless::Vec<[i16; 2], N> = (0..N)
                .map(|_| {
                    let r = rng.next();
                    [r as i16, (r >> 16) as i16]
                })
                .collect();
            Line {
                scan_id: 1,
                seq: 0,
                slice: 0,
                coil: 0,
                ky,
                samples: Samples::I16 { scale: 1e-3, iq },
            }
        })
        .collect();
    let floats: Vec<Line<N>> = (0..128)
        .map(|ky| {
            let iq: heapless::Vec<[f32; 2], N> = (0..N)
                .map(|_| {
                    let r = rng.next();
                    [
                        (r as u32 as f32) * 1e-9 - 2.0,
                        ((r >> 32) as u32 as f32) * 1e-9 - 2.0,
                    ]
                })
                .collect();
            Line {
                scan_id: 1,
                seq: 0,
                slice: 0,
                coil: 0,
                ky,
                samples: Samples::F32 { iq },
            }
        })
        .collect();
    println!("256-sample Line frames, best of {REPEATS} x >= {MIN_SECONDS} s, one core:");
    if !colin.is_empty() {
        measure("colin27 i16", &colin);
    }
    measure("full-range i16", &full);
    measure("f32", &floats);
}
