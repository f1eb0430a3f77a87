//! Round trip of every frame type through encoder and decoder (proptest), size bounds, and
//! the byte-level layers against independent oracles.

// Only the bitwise CRC of the shared oracle is used here.
#[allow(dead_code)]
mod support {
    pub mod oracle;
    pub mod strategies;
}
use support::oracle;
use support::strategies::samples;

use proptest::prelude::*;
use sparsemap_wire::{
    crc32, encode, encode_fault, encode_line, encode_scan_end, encode_scan_start, heapless,
    max_encoded_len, max_raw_len, Decoder, EndStatus, Error, Fault, FaultKind, FeedResult, Frame,
    Line, Samples, ScanEnd, ScanStart, MAX_N_X, VERSION,
};

const N: usize = 64;
type Dec = Decoder<N, { max_raw_len(N) }>;

fn enc(frame: &Frame<N>) -> Vec<u8> {
    let mut buf = [0u8; max_encoded_len(N)];
    encode(frame, &mut buf).unwrap().to_vec()
}

/// Decode a whole byte stream, collecting every outcome.
fn decode_all<const M: usize, const B: usize>(
    dec: &mut Decoder<M, B>,
    bytes: &[u8],
) -> Vec<Result<Frame<M>, Error>> {
    let mut out = Vec::new();
    dec.feed_all(bytes, |r| out.push(r));
    out
}

/// The ScanStart that makes `line` valid.
fn start_for(line: &Line<N>) -> ScanStart {
    ScanStart {
        version: VERSION,
        scan_id: line.scan_id,
        n_y: line.ky.saturating_add(1).max(line.ky),
        // The window is the line, placed off-centre in a wider grid so that both window
        // fields are non-trivial on the wire.
        n_x: line.samples.len() as u16 + 3,
        n_coils: line.coil.saturating_add(1).max(line.coil),
        n_slices: line.slice.saturating_add(1).max(line.slice),
        field_mt: 1.0,
        fov_mm: [1.0, 1.0],
        kx_first: 2,
        kx_count: line.samples.len() as u16,
    }
}

fn any_f32() -> impl Strategy<Value = f32> + Clone {
    any::<u32>().prop_map(f32::from_bits) // every bit pattern, NaNs included
}

fn line() -> impl Strategy<Value = Line<N>> {
    (
        any::<u32>(),
        0..u32::MAX, // seq: u32::MAX is invalid by definition
        0..u16::MAX,
        0..u8::MAX,
        0..u16::MAX,
        samples::<N>(any_f32(), 1..=N),
    )
        .prop_map(|(scan_id, seq, slice, coil, ky, samples)| Line {
            scan_id,
            seq,
            slice,
            coil,
            ky,
            samples,
        })
}

fn fault() -> impl Strategy<Value = Fault> {
    let kind = prop_oneof![
        Just(FaultKind::AdcBus),
        Just(FaultKind::AdcProtocol),
        Just(FaultKind::AdcStatus),
        Just(FaultKind::AdcTimeout),
        Just(FaultKind::TriggerTimeout),
        Just(FaultKind::AdcConfig),
        Just(FaultKind::LinkOverrun),
        Just(FaultKind::InvalidPlan),
    ];
    (
        any::<u32>(),
        kind,
        any::<u16>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
    )
        .prop_map(|(scan_id, kind, slice, coil, ky, detail)| Fault {
            scan_id,
            kind,
            slice,
            coil,
            ky,
            detail,
        })
}

fn start() -> impl Strategy<Value = ScanStart> {
    (
        any::<u32>(),
        1..=u16::MAX,
        1..=MAX_N_X as u16,
        1..=u8::MAX,
        1..=u16::MAX,
        any_f32(),
        [any_f32(), any_f32()],
        (any::<u16>(), any::<u16>()),
    )
        .prop_map(
            |(scan_id, n_y, n_x, n_coils, n_slices, field_mt, fov_mm, (a, b))| {
                // Any valid window: 1 <= kx_count <= min(n_x, N), inside the grid.
                let kx_count = 1 + a % n_x.min(N as u16);
                let kx_first = b % (n_x - kx_count + 1);
                ScanStart {
                    version: VERSION,
                    scan_id,
                    n_y,
                    n_x,
                    n_coils,
                    n_slices,
                    field_mt,
                    fov_mm,
                    kx_first,
                    kx_count,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// ScanStart → bytes → the same ScanStart (bit-exact, compared by re-encoding so NaN
    /// payloads count too), and the helper encoders agree with `encode`.
    #[test]
    fn scan_start_round_trips(s in start()) {
        let bytes = enc(&Frame::ScanStart(s));
        let mut buf = [0u8; 64];
        prop_assert_eq!(encode_scan_start(&s, &mut buf).unwrap(), &bytes[..]);
        prop_assert!(bytes.len() <= max_encoded_len(N));
        let out = decode_all(&mut Dec::new(), &bytes);
        prop_assert_eq!(out.len(), 1);
        let got = out.into_iter().next().unwrap().unwrap();
        prop_assert_eq!(enc(&got), bytes);
    }

    /// Line (both sample formats, any values) after its ScanStart.
    #[test]
    fn line_round_trips(l in line(), chunk in 1usize..200) {
        let start = Frame::ScanStart(start_for(&l));
        let bytes = enc(&Frame::Line(l.clone()));
        let mut buf = [0u8; max_encoded_len(N)];
        prop_assert_eq!(encode_line(&l, &mut buf).unwrap(), &bytes[..]);
        prop_assert!(bytes.len() <= max_encoded_len(N));
        let mut stream = enc(&start);
        stream.extend_from_slice(&bytes);
        let mut dec = Dec::new();
        let mut out = Vec::new();
        for c in stream.chunks(chunk) { dec.feed_all(c, |r| out.push(r)); }
        // A line whose seq is not 0 is announced by a gap first.
        let frames: Vec<_> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
        prop_assert_eq!(frames.len(), 2);
        prop_assert_eq!(enc(frames[1]), bytes);
        for r in &out {
            if let Err(e) = r { prop_assert_eq!(e, &Error::SequenceGap { expected: 0, got: l.seq }); }
        }
    }

    /// ScanEnd after its ScanStart.
    #[test]
    fn scan_end_round_trips(s in start(), lines_sent in any::<u32>(), aborted in any::<bool>()) {
        let e = ScanEnd { scan_id: s.scan_id, lines_sent, status: if aborted { EndStatus::Aborted } else { EndStatus::Complete } };
        let mut buf = [0u8; 64];
        let bytes = enc(&Frame::ScanEnd(e));
        prop_assert_eq!(encode_scan_end(&e, &mut buf).unwrap(), &bytes[..]);
        let mut stream = enc(&Frame::ScanStart(s));
        stream.extend_from_slice(&bytes);
        let out = decode_all(&mut Dec::new(), &stream);
        let last = out.last().unwrap().clone().unwrap();
        prop_assert_eq!(last, Frame::ScanEnd(e));
        if lines_sent != 0 {
            prop_assert_eq!(&out[1], &Err(Error::Incomplete { scan_id: s.scan_id, lines_sent, lines_received: 0 }));
        }
    }

    /// Fault, with or without a scan.
    #[test]
    fn fault_round_trips(f in fault()) {
        let mut buf = [0u8; 64];
        let bytes = enc(&Frame::Fault(f));
        prop_assert_eq!(encode_fault(&f, &mut buf).unwrap(), &bytes[..]);
        let out = decode_all(&mut Dec::new(), &bytes);
        prop_assert_eq!(out, vec![Ok(Frame::Fault(f))]);
    }

    /// Every buffer shorter than the encoding fails cleanly; the exact length succeeds.
    #[test]
    fn short_buffers_fail_cleanly(l in line()) {
        let full = enc(&Frame::Line(l.clone()));
        let mut buf = vec![0u8; full.len()];
        for n in 0..full.len() {
            prop_assert_eq!(encode_line(&l, &mut buf[..n]).map(|b| b.len()), Err(Error::BufferTooSmall));
        }
        prop_assert_eq!(encode_line(&l, &mut buf[..]).unwrap(), &full[..]);
    }

    /// COBS layer against a textbook decoder, and CRC against a bitwise CRC-32.
    #[test]
    fn layers_match_independent_oracles(l in line()) {
        let wire = enc(&Frame::Line(l.clone()));
        prop_assert_eq!(wire.iter().filter(|&&b| b == 0).count(), 1);
        prop_assert_eq!(*wire.last().unwrap(), 0);
        let raw = cobs_decode(&wire[..wire.len() - 1]);
        let (body, crc) = raw.split_at(raw.len() - 4);
        prop_assert_eq!(u32::from_le_bytes(crc.try_into().unwrap()), oracle::crc32(body));
        prop_assert_eq!(body, &postcard_bytes(&l)[..]);
    }
}

/// Textbook COBS decoder (no delimiter).
fn cobs_decode(enc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        let code = enc[i] as usize;
        assert!(code > 0);
        out.extend_from_slice(&enc[i + 1..i + code]);
        i += code;
        if code < 0xFF && i < enc.len() {
            out.push(0);
        }
    }
    out
}

/// postcard bytes of `Frame::Line(l)` written by hand from the layout in the README.
fn postcard_bytes(l: &Line<N>) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let zz = |v: i16| ((v << 1) ^ (v >> 15)) as u16 as u64;
    let mut o = vec![1u8];
    varint(l.scan_id.into(), &mut o);
    varint(l.seq.into(), &mut o);
    varint(l.slice.into(), &mut o);
    o.push(l.coil);
    varint(l.ky.into(), &mut o);
    match &l.samples {
        Samples::I16 { scale, iq } => {
            o.push(0);
            o.extend_from_slice(&scale.to_le_bytes());
            varint(iq.len() as u64, &mut o);
            for [i, q] in iq {
                varint(zz(*i), &mut o);
                varint(zz(*q), &mut o);
            }
        }
        Samples::F32 { iq } => {
            o.push(1);
            varint(iq.len() as u64, &mut o);
            for [re, im] in iq {
                o.extend_from_slice(&re.to_le_bytes());
                o.extend_from_slice(&im.to_le_bytes());
            }
        }
    }
    o
}

#[test]
fn crc_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

/// The bound is tight: the worst-case line (largest varints, f32 samples with no zero
/// byte) reaches it up to the CRC's bytes.
#[test]
fn max_encoded_len_is_tight() {
    let iq = heapless::Vec::<[f32; 2], MAX_N_X>::from_slice(
        &[[f32::from_bits(0x4142_4344); 2]; MAX_N_X],
    )
    .unwrap();
    let l = Line::<MAX_N_X> {
        scan_id: u32::MAX,
        seq: u32::MAX,
        slice: u16::MAX,
        coil: u8::MAX,
        ky: u16::MAX,
        samples: Samples::F32 { iq },
    };
    let mut buf = vec![0u8; max_encoded_len(MAX_N_X)];
    let n = encode_line(&l, &mut buf).unwrap().len();
    assert!(n <= max_encoded_len(MAX_N_X));
    assert!(
        n + 4 >= max_encoded_len(MAX_N_X),
        "{n} vs {}",
        max_encoded_len(MAX_N_X)
    );
    assert_eq!(max_encoded_len(MAX_N_X), 4139);
    assert_eq!(max_raw_len(MAX_N_X), 4121);
    assert_eq!(max_encoded_len(256), 2083);
}

/// COBS corner: a payload whose length makes a full 254-byte block end exactly at the end.
#[test]
fn cobs_full_blocks_round_trip() {
    for n in 1..=N {
        let iq: heapless::Vec<[f32; 2], N> =
            heapless::Vec::from_slice(&vec![[f32::from_bits(0x0101_0101); 2]; n]).unwrap();
        let l = Line::<N> {
            scan_id: 0x7F,
            seq: 0,
            slice: 0x7F,
            coil: 1,
            ky: 1,
            samples: Samples::F32 { iq },
        };
        let bytes = enc(&Frame::Line(l.clone()));
        assert_eq!(
            cobs_decode(&bytes[..bytes.len() - 1]).len() - 4,
            postcard_bytes(&l).len()
        );
        let mut s = enc(&Frame::ScanStart(start_for(&l)));
        s.extend_from_slice(&bytes);
        let out = decode_all(&mut Dec::new(), &s);
        assert_eq!(
            out,
            vec![Ok(Frame::ScanStart(start_for(&l))), Ok(Frame::Line(l))]
        );
    }
}

#[test]
fn one_outcome_per_feed_and_remaining_is_exact() {
    let s = ScanStart {
        version: VERSION,
        scan_id: 1,
        n_y: 2,
        n_x: 1,
        n_coils: 1,
        n_slices: 1,
        field_mt: 1.0,
        fov_mm: [1.0; 2],
        kx_first: 0,
        kx_count: 1,
    };
    let a = enc(&Frame::ScanStart(s));
    let f = Fault {
        scan_id: 1,
        kind: FaultKind::AdcBus,
        slice: 0,
        coil: 0,
        ky: 1,
        detail: 0,
    };
    let b = enc(&Frame::Fault(f));
    let mut both = a.clone();
    both.extend_from_slice(&b);
    let mut dec = Dec::new();
    match dec.feed(&both) {
        FeedResult::Frame { frame, remaining } => {
            assert_eq!(frame, Frame::ScanStart(s));
            assert_eq!(remaining, &b[..]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dec.feed(&b),
        FeedResult::Frame {
            frame: Frame::Fault(_),
            remaining: []
        }
    ));
    assert!(matches!(dec.feed(&[]), FeedResult::Consumed));
}
