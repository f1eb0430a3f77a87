//! Test oracle shared by the property tests (`tests/faults.rs`) and the structure-aware fuzz
//! target (`fuzz/fuzz_targets/stream_faults.rs`, which includes this file by path).
//!
//! Given a valid stream of frames, a list of transport faults and a chunking, it builds the
//! damaged byte stream, decodes it, and compares what the decoder delivered with what an
//! independent model says must be delivered: every frame whose encoded bytes arrive intact
//! and preceded by a delimiter (or the start of the stream), whose scan is active at that
//! point, and that was not delivered before — in arrival order — and nothing else.

#![allow(dead_code)]

use std::collections::HashSet;
use std::vec::Vec;

use sparsemap_wire::{
    encode, max_encoded_len, max_raw_len, Decoder, Error, Frame, ScanEnd, ScanStart, SEQ_WINDOW,
};

/// Line capacity of the decoder under test: small, so that junk can overflow it.
pub const CAP: usize = 16;
/// Its buffer.
pub const BUF: usize = max_raw_len(CAP);
/// The decoder under test.
pub type Dec = Decoder<CAP, BUF>;

/// A transport fault.
#[derive(Debug, Clone)]
pub enum Op {
    /// Remove frame `i` (index into the current list of segments, modulo its length).
    Drop(usize),
    /// Insert a copy of segment `i` right after it.
    Duplicate(usize),
    /// Swap segments `i` and `i + 1`.
    Swap(usize),
    /// Keep only the first `keep` bytes of segment `i` (its delimiter is lost).
    Truncate(usize, usize),
    /// Insert arbitrary bytes before segment `i`.
    Junk(usize, Vec<u8>),
    /// Flip bit `bit % 8` of byte `pos` (modulo the final stream length).
    Flip(usize, u8),
}

/// One piece of the damaged stream.
#[derive(Debug, Clone)]
struct Seg {
    /// Index of the sent frame it came from, `None` for junk.
    orig: Option<usize>,
    bytes: Vec<u8>,
}

/// What the decoder produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames delivered, in order.
    pub delivered: Vec<Frame<CAP>>,
    /// Errors reported, in order.
    pub errors: Vec<Error>,
    /// Frames the model expected, in order.
    pub expected: Vec<Frame<CAP>>,
    /// Total bytes fed.
    pub stream_len: usize,
    /// The damage happened to form a valid frame that was never sent (junk that is a
    /// CRC-correct frame: random data hits it with probability 2^-32, but a coverage-guided
    /// fuzzer can solve the CRC comparison). The decoder rightly delivers such a frame, so
    /// the model's prediction does not apply and only "no panic" is checked.
    pub forged: bool,
}

/// Encode one frame into a fresh vector.
pub fn encode_vec(frame: &Frame<CAP>) -> Vec<u8> {
    let mut buf = [0u8; max_encoded_len(CAP)];
    let bytes = encode(frame, &mut buf).expect("max_encoded_len suffices");
    assert!(bytes.len() <= max_encoded_len(CAP));
    bytes.to_vec()
}

/// Per segment of the damaged stream: the sent frame it came from and its byte range.
type Layout = Vec<(Option<usize>, core::ops::Range<usize>)>;

/// Build the damaged stream. Returns it and, per segment, its sent-frame index and byte range.
fn damage(encoded: &[Vec<u8>], ops: &[Op]) -> (Vec<u8>, Layout) {
    let mut segs: Vec<Seg> = encoded
        .iter()
        .enumerate()
        .map(|(i, b)| Seg {
            orig: Some(i),
            bytes: b.clone(),
        })
        .collect();
    let mut flips = Vec::new();
    for op in ops {
        let n = segs.len();
        match op {
            Op::Drop(i) if n > 0 => {
                segs.remove(i % n);
            }
            Op::Duplicate(i) if n > 0 => {
                let s = segs[i % n].clone();
                segs.insert(i % n + 1, s);
            }
            Op::Swap(i) if n > 1 => segs.swap(i % (n - 1), i % (n - 1) + 1),
            Op::Truncate(i, keep) if n > 0 => {
                let s = &mut segs[i % n];
                let keep = keep % s.bytes.len().max(1);
                s.bytes.truncate(keep);
            }
            Op::Junk(i, bytes) => segs.insert(
                if n == 0 { 0 } else { i % (n + 1) },
                Seg {
                    orig: None,
                    bytes: bytes.clone(),
                },
            ),
            Op::Flip(pos, bit) => flips.push((*pos, *bit)),
            _ => {}
        }
    }
    let mut stream = Vec::new();
    let mut ranges = Vec::new();
    for s in &segs {
        let start = stream.len();
        stream.extend_from_slice(&s.bytes);
        ranges.push((s.orig, start..stream.len()));
    }
    if !stream.is_empty() {
        for (pos, bit) in flips {
            let p = pos % stream.len();
            stream[p] ^= 1 << (bit % 8);
        }
    }
    (stream, ranges)
}

/// The model: which frames must be delivered, in arrival order.
fn model(
    frames: &[Frame<CAP>],
    encoded: &[Vec<u8>],
    stream: &[u8],
    ranges: &[(Option<usize>, core::ops::Range<usize>)],
) -> Vec<Frame<CAP>> {
    let mut out = Vec::new();
    let mut active: Option<ScanStart> = None;
    let mut seen: HashSet<u32> = HashSet::new();
    let mut max_seq: Option<u32> = None;
    let mut last_end: Option<ScanEnd> = None;
    for (orig, r) in ranges {
        let Some(i) = *orig else { continue };
        let intact = &stream[r.clone()] == encoded[i].as_slice()
            && (r.start == 0 || stream[r.start - 1] == 0);
        if !intact {
            continue;
        }
        match &frames[i] {
            Frame::ScanStart(s) => {
                if active.map(|a| a.scan_id) == Some(s.scan_id) {
                    continue; // duplicate
                }
                active = Some(*s);
                seen.clear();
                max_seq = None;
                out.push(frames[i].clone());
            }
            Frame::Line(l) => {
                let Some(a) = active else { continue };
                if a.scan_id != l.scan_id || seen.contains(&l.seq) {
                    continue;
                }
                if let Some(m) = max_seq {
                    if l.seq < m && m + 1 - l.seq > SEQ_WINDOW {
                        continue; // stale: never produced by these tests
                    }
                }
                seen.insert(l.seq);
                max_seq = Some(max_seq.map_or(l.seq, |m| m.max(l.seq)));
                out.push(frames[i].clone());
            }
            Frame::ScanEnd(e) => {
                if active.map(|a| a.scan_id) == Some(e.scan_id) {
                    active = None;
                    last_end = Some(*e);
                    out.push(frames[i].clone());
                }
            }
            Frame::Fault(_) => out.push(frames[i].clone()),
        }
    }
    let _ = last_end;
    out
}

/// Textbook COBS decode of one run between delimiters; `None` if it is not valid COBS.
fn cobs_decode(enc: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        let code = enc[i] as usize;
        if code == 0 || i + code > enc.len() {
            return None;
        }
        out.extend_from_slice(&enc[i + 1..i + code]);
        i += code;
        if code < 0xFF && i < enc.len() {
            out.push(0);
        }
    }
    Some(out)
}

/// CRC-32/ISO-HDLC, bitwise (independent of the crate's table).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Whether the damaged stream holds a CRC-valid frame that is not an intact sent one.
fn has_forged_frame(stream: &[u8], encoded: &[Vec<u8>], layout: &Layout) -> bool {
    let intact_starts: HashSet<usize> = layout
        .iter()
        .filter_map(|(orig, r)| {
            let i = (*orig)?;
            let ok = &stream[r.clone()] == encoded[i].as_slice()
                && (r.start == 0 || stream[r.start - 1] == 0);
            ok.then_some(r.start)
        })
        .collect();
    let mut start = 0;
    for (i, &b) in stream.iter().enumerate() {
        if b != 0 {
            continue;
        }
        let run = &stream[start..i];
        if !run.is_empty() && !intact_starts.contains(&start) {
            if let Some(raw) = cobs_decode(run) {
                if raw.len() >= 5 {
                    let (body, crc) = raw.split_at(raw.len() - 4);
                    if u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) == crc32(body) {
                        return true;
                    }
                }
            }
        }
        start = i + 1;
    }
    false
}

/// Run the decoder over `frames` damaged by `ops`, fed in chunks of the sizes in `chunks`
/// (cycled; 0 means an empty feed), and check it against the model.
pub fn run(frames: &[Frame<CAP>], ops: &[Op], chunks: &[usize]) -> Result<Report, String> {
    let encoded: Vec<Vec<u8>> = frames.iter().map(encode_vec).collect();
    let (stream, ranges) = damage(&encoded, ops);
    let expected = model(frames, &encoded, &stream, &ranges);

    let mut dec = Dec::new();
    let mut report = Report {
        stream_len: stream.len(),
        ..Report::default()
    };
    let mut sink = |r: Result<Frame<CAP>, Error>| match r {
        Ok(f) => report.delivered.push(f),
        Err(e) => report.errors.push(e),
    };
    let mut pos = 0;
    let mut k = 0;
    while pos < stream.len() {
        let size = if chunks.is_empty() {
            stream.len()
        } else {
            chunks[k % chunks.len()]
        };
        k += 1;
        let end = (pos + size).min(stream.len());
        dec.feed_all(&stream[pos..end], &mut sink);
        pos = end;
        if k > 4 * stream.len() + 16 {
            // only zero-sized chunks: finish with one feed
            dec.feed_all(&stream[pos..], &mut sink);
            pos = stream.len();
        }
    }
    while let Some(r) = dec.finish() {
        sink(r);
    }
    report.expected = expected;
    report.forged = has_forged_frame(&stream, &encoded, &ranges);
    if report.forged {
        return Ok(report);
    }
    if report.delivered != report.expected {
        return Err(format!(
            "delivered {} frames, model expected {}\nerrors: {:?}\ndelivered: {:#?}\nexpected: {:#?}",
            report.delivered.len(),
            report.expected.len(),
            report.errors,
            report.delivered,
            report.expected
        ));
    }
    Ok(report)
}
