//! Property tests: the decoder never panics and never loses an intact frame, whatever the
//! link does (random bytes, bit flips, dropped, duplicated, reordered, truncated frames),
//! in any chunking. The oracle is in `support/oracle.rs` (shared with the fuzz target).

mod support {
    pub mod oracle;
    pub mod strategies;
}

use proptest::prelude::*;
use sparsemap_wire::{
    heapless, EndStatus, Error, Fault, Frame, Line, Samples, ScanEnd, ScanStart, VERSION,
};
use support::oracle::{run, Op, CAP};
use support::strategies::{fault_kind, samples};

/// Cases per property; the normal test run does this many, `PROPTEST_CASES` overrides.
const CASES: u32 = 4000;

fn finite() -> impl Strategy<Value = f32> + Clone {
    -1e6f32..1e6f32
}

/// One valid scan: ScanStart, lines (with the occasional Fault between them), ScanEnd.
fn scan(scan_id: u32) -> impl Strategy<Value = Vec<Frame<CAP>>> {
    (
        1u16..=8,
        1u16..=CAP as u16,
        1u8..=2,
        1u16..=2,
        finite(),
        [finite(), finite()],
    )
        .prop_flat_map(move |(n_y, n_x, n_coils, n_slices, field_mt, fov_mm)| {
            let start = ScanStart {
                version: VERSION,
                scan_id,
                n_y,
                // Lines carry the window; the grid is wider on both sides.
                n_x: n_x + 5,
                n_coils,
                n_slices,
                field_mt,
                fov_mm,
                kx_first: 3,
                kx_count: n_x,
            };
            let line = (
                0..n_y,
                0..n_coils,
                0..n_slices,
                samples::<CAP>(finite(), n_x as usize),
                any::<bool>(),
                fault_kind(),
                any::<u32>(),
            );
            (
                Just(start),
                prop::collection::vec(line, 0..10),
                any::<bool>(),
            )
        })
        .prop_map(move |(start, lines, aborted)| {
            let mut frames = vec![Frame::ScanStart(start)];
            let mut seq = 0;
            for (ky, coil, slice, samples, fault, kind, detail) in lines {
                if fault {
                    frames.push(Frame::Fault(Fault {
                        scan_id,
                        kind,
                        slice,
                        coil,
                        ky,
                        detail,
                    }));
                }
                frames.push(Frame::Line(Line {
                    scan_id,
                    seq,
                    slice,
                    coil,
                    ky,
                    samples,
                }));
                seq += 1;
            }
            let status = if aborted {
                EndStatus::Aborted
            } else {
                EndStatus::Complete
            };
            frames.push(Frame::ScanEnd(ScanEnd {
                scan_id,
                lines_sent: seq,
                status,
            }));
            frames
        })
}

/// One to three scans with distinct ids.
fn stream() -> impl Strategy<Value = Vec<Frame<CAP>>> {
    (1usize..=3, any::<u32>()).prop_flat_map(|(n, base)| {
        let scans: Vec<_> = (0..n as u32).map(|k| scan(base.wrapping_add(k))).collect();
        scans.prop_map(|v| v.concat())
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<usize>().prop_map(Op::Drop),
        any::<usize>().prop_map(Op::Duplicate),
        any::<usize>().prop_map(Op::Swap),
        (any::<usize>(), any::<usize>()).prop_map(|(i, k)| Op::Truncate(i, k)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(i, b)| Op::Junk(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Op::Flip(p, b)),
    ]
}

fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..80, 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A clean stream in any chunking: everything delivered, no error at all.
    #[test]
    fn clean_stream_decodes_exactly(frames in stream(), chunks in chunks()) {
        let r = run(&frames, &[], &chunks).map_err(TestCaseError::fail)?;
        prop_assert!(!r.forged);
        prop_assert_eq!(&r.delivered, &frames);
        prop_assert!(r.errors.is_empty(), "errors on a clean stream: {:?}", r.errors);
    }

    /// Any mix of transport faults: intact frames of active scans all delivered, once, in
    /// order; nothing else delivered; no panic.
    #[test]
    fn faults_never_lose_intact_frames(frames in stream(), ops in prop::collection::vec(op(), 0..8), chunks in chunks()) {
        // `run` compares the delivered frames with the model and fails on any difference.
        let r = run(&frames, &ops, &chunks).map_err(TestCaseError::fail)?;
        // Random junk forging a CRC-valid frame would make the case vacuous; it does not
        // happen at proptest's scale (2^-32 per junk run).
        prop_assert!(!r.forged);
    }

    /// Only whole lines dropped: exactly the other frames arrive, and the errors name the
    /// gaps and the shortfall — nothing else.
    #[test]
    fn dropped_lines_are_reported_as_gaps(frames in stream(), drops in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        let line_idx: Vec<usize> = frames.iter().enumerate()
            .filter(|(_, f)| matches!(f, Frame::Line(_))).map(|(i, _)| i).collect();
        prop_assume!(!line_idx.is_empty());
        let mut victims: Vec<usize> = drops.iter().map(|d| line_idx[d.index(line_idx.len())]).collect();
        victims.sort_unstable();
        victims.dedup();
        // Op::Drop indexes the current list: drop from the back so indices stay valid.
        let ops: Vec<Op> = victims.iter().rev().map(|&i| Op::Drop(i)).collect();
        let r = run(&frames, &ops, &[7]).map_err(TestCaseError::fail)?;
        prop_assert_eq!(r.delivered.len(), frames.len() - victims.len());
        prop_assert!(!r.errors.is_empty());
        for e in &r.errors {
            prop_assert!(matches!(e, Error::SequenceGap { .. } | Error::Incomplete { .. }), "{:?}", e);
        }
        let incomplete = r.errors.iter().filter(|e| matches!(e, Error::Incomplete { .. })).count();
        let scans_hit = {
            let mut ids: Vec<u32> = victims.iter().map(|&i| match &frames[i] { Frame::Line(l) => l.scan_id, _ => unreachable!() }).collect();
            ids.dedup();
            ids.len()
        };
        prop_assert_eq!(incomplete, scans_hit);
    }

    /// Random bytes alone: no panic, and nothing delivered unless it was a real frame
    /// (there is none here; a CRC-valid accident is 2^-32).
    #[test]
    fn random_bytes_deliver_nothing(bytes in prop::collection::vec(any::<u8>(), 0..3000), chunk in 1usize..600) {
        let mut dec = support::oracle::Dec::new();
        let mut frames = 0;
        for c in bytes.chunks(chunk) {
            dec.feed_all(c, |r| if let Ok(Frame::ScanStart(_) | Frame::Line(_) | Frame::ScanEnd(_)) = r { frames += 1 });
        }
        while dec.finish().is_some() {}
        prop_assert_eq!(frames, 0);
    }
}

/// Deterministic spot check of reordering: adjacent lines swapped are both delivered with no
/// error except the transient gap.
#[test]
fn swapped_lines_are_both_delivered() {
    let start = ScanStart {
        version: VERSION,
        scan_id: 9,
        n_y: 4,
        n_x: 1,
        n_coils: 1,
        n_slices: 1,
        field_mt: 50.0,
        fov_mm: [200.0; 2],
        kx_first: 0,
        kx_count: 1,
    };
    let line = |seq: u32| {
        Frame::Line(Line {
            scan_id: 9,
            seq,
            slice: 0,
            coil: 0,
            ky: seq as u16,
            samples: Samples::I16 {
                scale: 1.0,
                iq: heapless::Vec::from_slice(&[[seq as i16, 0]]).unwrap(),
            },
        })
    };
    let frames = vec![
        Frame::ScanStart(start),
        line(0),
        line(1),
        line(2),
        Frame::ScanEnd(ScanEnd {
            scan_id: 9,
            lines_sent: 3,
            status: EndStatus::Complete,
        }),
    ];
    let r = run(&frames, &[Op::Swap(2)], &[3]).unwrap();
    assert_eq!(r.delivered.len(), 5);
    assert_eq!(
        r.errors,
        vec![Error::SequenceGap {
            expected: 1,
            got: 2
        }]
    );
    assert_eq!(r.delivered[2], line(2));
    assert_eq!(r.delivered[3], line(1));
}

/// Regression for the one fuzzing finding (an oracle false positive): "junk" that happens
/// to be a valid frame — libFuzzer forged one by solving the CRC comparison — is delivered
/// by the decoder, as it should be, and the oracle recognises the case instead of calling it
/// a decoder bug.
#[test]
fn junk_that_is_a_valid_frame_is_delivered_and_flagged() {
    let start = |scan_id| ScanStart {
        version: VERSION,
        scan_id,
        n_y: 1,
        n_x: 1,
        n_coils: 1,
        n_slices: 1,
        field_mt: 0.0,
        fov_mm: [0.0; 2],
        kx_first: 0,
        kx_count: 1,
    };
    let frames = vec![
        Frame::ScanStart(start(1)),
        Frame::ScanEnd(ScanEnd {
            scan_id: 1,
            lines_sent: 0,
            status: EndStatus::Complete,
        }),
    ];
    let forged = support::oracle::encode_vec(&Frame::ScanStart(start(0xFFFF_FF00)));
    let r = run(&frames, &[Op::Junk(2, forged)], &[5]).unwrap();
    assert!(r.forged);
    assert_eq!(r.delivered.len(), 3);
    assert_eq!(r.delivered[2], Frame::ScanStart(start(0xFFFF_FF00)));
    assert_eq!(
        r.errors,
        vec![Error::ScanInterrupted {
            scan_id: 0xFFFF_FF00
        }]
    );
}
