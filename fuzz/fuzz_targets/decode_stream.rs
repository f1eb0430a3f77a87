//! Arbitrary bytes into the decoder.
//!
//! Checks: no panic; the outcomes do not depend on how the bytes are chunked (the first
//! input byte seeds the chunk sizes, empty feeds included); every delivered `Line` fits the
//! scan the decoder has active; every delivered frame re-encodes into bytes that a fresh
//! decoder turns back into the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsemap_wire::{
    encode, max_encoded_len, max_raw_len, Decoder, Error, FeedResult, Frame, ScanStart, VERSION,
};

const N: usize = 32;
type Dec = Decoder<N, { max_raw_len(N) }>;

fn bytes_of(frame: &Frame<N>) -> Vec<u8> {
    let mut buf = [0u8; max_encoded_len(N)];
    encode(frame, &mut buf)
        .expect("max_encoded_len is a bound")
        .to_vec()
}

/// Feed `input` until consumed, checking each delivered frame against the decoder's scan.
fn drain(dec: &mut Dec, mut input: &[u8], out: &mut Vec<Result<Vec<u8>, Error>>) {
    loop {
        let (r, rest) = match dec.feed(input) {
            FeedResult::Consumed => return,
            FeedResult::Frame { frame, remaining } => (Ok(frame), remaining),
            FeedResult::Error { error, remaining } => (Err(error), remaining),
        };
        if let Ok(Frame::Line(l)) = &r {
            let s = dec
                .active_scan()
                .expect("a line is only delivered inside a scan");
            assert_eq!(s.scan_id, l.scan_id);
            assert!(l.ky < s.n_y && l.coil < s.n_coils && l.slice < s.n_slices);
            assert_eq!(l.samples.len(), usize::from(s.kx_count));
            assert!(u32::from(s.kx_first) + u32::from(s.kx_count) <= u32::from(s.n_x));
        }
        out.push(r.map(|f| bytes_of(&f)));
        input = rest;
    }
}

fn run(data: &[u8], seed: Option<u8>) -> Vec<Result<Vec<u8>, Error>> {
    let mut dec = Dec::new();
    let mut out = Vec::new();
    match seed {
        None => drain(&mut dec, data, &mut out),
        Some(seed) => {
            let (mut pos, mut k) = (0usize, seed as u32);
            while pos < data.len() {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let end = (pos + (k >> 16) as usize % 97).min(data.len());
                drain(&mut dec, &data[pos..end], &mut out);
                pos = end;
            }
        }
    }
    while let Some(r) = dec.finish() {
        out.push(r.map(|f| bytes_of(&f)));
    }
    out
}

/// A fresh decoder, given the context a frame needs, returns the same frame.
fn redecode(bytes: &[u8]) {
    // Recover the frame from the first decoder's output encoding via a context stream.
    let mut probe = Dec::new();
    let mut frame = None;
    probe.feed_all(bytes, |r| {
        if let Ok(f) = r {
            frame = Some(f)
        }
    });
    let frame = match frame {
        Some(f) => f, // ScanStart and Fault decode stand-alone
        None => {
            // Line or ScanEnd: supply a ScanStart that admits it, then decode again.
            let mut p2 = Dec::new();
            let ctx = context_for(bytes);
            let mut stream = bytes_of(&Frame::ScanStart(ctx));
            stream.extend_from_slice(bytes);
            let mut last = None;
            p2.feed_all(&stream, |r| {
                if let Ok(f) = r {
                    last = Some(f)
                }
            });
            last.expect("re-encoded frame decodes in context")
        }
    };
    assert_eq!(bytes_of(&frame), bytes);
}

/// The widest ScanStart for the scan a Line/ScanEnd names (read back via a Fault-free path:
/// the scan_id is the first field after the tag, a varint).
fn context_for(bytes: &[u8]) -> ScanStart {
    // Undo COBS (textbook) to read the postcard header.
    let enc = &bytes[..bytes.len() - 1];
    let mut raw = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        let code = enc[i] as usize;
        raw.extend_from_slice(&enc[i + 1..(i + code).min(enc.len())]);
        i += code;
        if code < 0xFF && i < enc.len() {
            raw.push(0);
        }
    }
    fn varint(raw: &[u8], p: &mut usize) -> u64 {
        let (mut v, mut s) = (0u64, 0);
        loop {
            let b = raw[*p];
            *p += 1;
            v |= u64::from(b & 0x7F) << s;
            s += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    }
    let mut p = 1;
    let scan_id = varint(&raw, &mut p) as u32;
    let kx_count = if raw[0] == 1 {
        let _seq = varint(&raw, &mut p);
        let _slice = varint(&raw, &mut p);
        p += 1; // coil
        let _ky = varint(&raw, &mut p);
        let kind = raw[p];
        p += 1;
        if kind == 0 {
            p += 4; // scale
        }
        varint(&raw, &mut p) as u16
    } else {
        1
    };
    ScanStart {
        version: VERSION,
        scan_id,
        n_y: u16::MAX,
        // The widest grid; the window is exactly the line.
        n_x: sparsemap_wire::MAX_N_X as u16,
        n_coils: u8::MAX,
        n_slices: u16::MAX,
        field_mt: 0.0,
        fov_mm: [0.0; 2],
        kx_first: 0,
        kx_count,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let whole = run(rest, None);
    let chunked = run(rest, Some(seed));
    assert_eq!(whole, chunked, "outcomes depend on chunking");
    for bytes in whole.iter().flatten() {
        redecode(bytes);
    }
});
