//! The edge's slice assembly (`sparsemap_wire::SliceAssembler`) against the host's
//! fault-injecting stream generator (`simulate_scan`): decoded with `FrameReader` and fed to
//! the assembler, every intact line lands once in the right place, every slice is delivered
//! once and in order, and every count is what the `FaultLog` predicts — computed here from
//! the log independently of the assembler.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ndarray::Array3;
use num_complex::Complex32;
use proptest::prelude::*;
use sparsemap_host::scan::{
    line_plan, simulate_scan, FaultLog, FaultSpec, PlannedLine, SampleFormat, ScanSpec,
    REORDER_DISTANCE,
};
use sparsemap_host::simulate::{simulate_stack, Acquisition, MaskKind};
use sparsemap_wire::{
    AssemblerConfig, ClosedBy, EndStatus, Frame, FrameReader, LineOutcome, ReadError, ScanSummary,
    SliceAssembler, SliceStats, MAX_SLOTS,
};

const SLICES: usize = 6;
/// 128 x 128 with half the rows sampled: 64 lines per slice, so that with
/// `settle_lines = 2 REORDER_DISTANCE` a slice is moved past before four slots fill up.
const N: usize = 128;

/// `[S][N][N]` k-space and masks of one mask kind.
type Stack = (Array3<Complex32>, Array3<bool>);

fn stack(block: bool) -> &'static Stack {
    static BLOCK: OnceLock<Stack> = OnceLock::new();
    static VD: OnceLock<Stack> = OnceLock::new();
    let cell = if block { &BLOCK } else { &VD };
    cell.get_or_init(|| {
        let targets = Array3::from_shape_fn((SLICES, N, N), |(s, y, x)| {
            let u = (y as f32 - N as f32 / 2.0) / (N as f32 / 2.0);
            let v = (x as f32 - N as f32 / 2.0) / (N as f32 / 2.0);
            let m = if u * u + v * v < 0.6 {
                1.0 + s as f32
            } else {
                0.0
            };
            Complex32::from_polar(m, 0.3 * u - 0.2 * v)
        });
        let mask = if block {
            MaskKind::CentralBlock { size: N / 2 }
        } else {
            MaskKind::VariableDensity1d {
                acceleration: 2.0,
                centre_lines: 8,
            }
        };
        let acq = Acquisition {
            mask,
            noise: 0.05,
            seed: 17,
        };
        let (kspace, masks, _, _) = simulate_stack(targets.view(), &acq, |_| {}).unwrap();
        (kspace, masks)
    })
}

/// What a delivered slice looked like.
struct Delivered {
    stats: SliceStats,
    kspace: Vec<Complex32>,
    mask: Vec<bool>,
}

/// Decode `bytes` and run every outcome through an assembler; the delivered slices and the
/// scan summary.
fn assemble(bytes: &[u8]) -> (Vec<Delivered>, ScanSummary) {
    let mut reader = FrameReader::<_>::new(bytes);
    let start = match reader.next() {
        Some(Ok(Frame::ScanStart(s))) => s,
        other => panic!("first item {other:?}"),
    };
    let config = AssemblerConfig {
        slots: MAX_SLOTS,
        settle_lines: 2 * REORDER_DISTANCE,
    };
    let len = SliceAssembler::storage_len(&start, &config).unwrap();
    let mut kspace = vec![Complex32::new(0.0, 0.0); len];
    let mut mask = vec![false; len];
    let mut asm = SliceAssembler::new(start, config, &mut kspace, &mut mask).unwrap();
    let mut out = Vec::new();
    let mut keep = |c: sparsemap_wire::Completed<'_>| {
        out.push(Delivered {
            stats: *c.stats(),
            kspace: c.kspace().to_vec(),
            mask: c.mask().to_vec(),
        })
    };
    for item in reader {
        match item {
            Ok(Frame::Line(l)) => {
                let outcome = asm.line_then_pop(&l, &mut keep);
                assert_eq!(outcome, LineOutcome::Placed, "line {}", l.seq);
            }
            Ok(Frame::ScanEnd(e)) => asm.end(&e),
            Ok(Frame::Fault(f)) => asm.fault(&f),
            Ok(Frame::ScanStart(s)) => panic!("second ScanStart {s:?}"),
            Err(ReadError::Wire(e)) => asm.wire_error(&e),
            Err(ReadError::Io(e)) => panic!("{e}"),
        }
        while let Some(c) = asm.pop_complete() {
            keep(c);
        }
    }
    let summary = *asm.summary();
    (out, summary)
}

/// Per-slice counts predicted from the log alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    received: u32,
    missing: u32,
    duplicates: u32,
    corrupt: u32,
    reordered: u32,
}

/// The stream's line order as the generator wrote it: swaps applied, then each entry either
/// dropped (absent), corrupted (a CRC error), duplicated (line then a duplicate report) or
/// plain.
fn predict(plan: &[PlannedLine], log: &FaultLog) -> (BTreeMap<u16, Expected>, u32) {
    let mut order: Vec<u32> = (0..log.lines_sent).collect();
    for s in &log.reordered {
        order.swap(s.seq as usize, s.with as usize);
    }
    let lost: Vec<u32> = log.lost();
    let slice_of = |seq: u32| plan[seq as usize].slice;
    let mut expected: BTreeMap<u16, Expected> = BTreeMap::new();
    let mut corrupt_before_any_line = 0;
    let mut newest: Option<u16> = None; // highest slice with an arrived line
    let mut high: Option<u32> = None;
    for &seq in &order {
        if log.dropped.contains(&seq) {
            continue;
        }
        if log.corrupted.contains(&seq) {
            match newest {
                Some(s) => expected.entry(s).or_default().corrupt += 1,
                None => corrupt_before_any_line += 1,
            }
            continue;
        }
        let e = expected.entry(slice_of(seq)).or_default();
        e.received += 1;
        if high.is_some_and(|h| seq < h) {
            e.reordered += 1;
        }
        if log.duplicated.contains(&seq) {
            e.duplicates += 1;
        }
        high = Some(high.map_or(seq, |h| h.max(seq)));
        newest = Some(newest.map_or(slice_of(seq), |n| n.max(slice_of(seq))));
    }
    // A lost seq belongs to the slice of the next intact seq, or to the last slice that
    // received anything (trailing gap).
    let last = *expected.keys().next_back().expect("something arrived");
    for &m in &lost {
        let next = (m + 1..log.lines_sent).find(|s| !lost.contains(s));
        let slice = next.map_or(last, slice_of);
        expected
            .get_mut(&slice)
            .expect("slice of an intact line")
            .missing += 1;
    }
    (expected, corrupt_before_any_line)
}

fn check(format: SampleFormat, block: bool, faults: FaultSpec) {
    let (kspace, masks) = stack(block);
    let spec = ScanSpec {
        scan_id: 77,
        field_mt: 50.0,
        fov_mm: [256.0; 2],
        samples: format,
    };
    let (bytes, log) = simulate_scan(kspace.view(), masks.view(), &spec, &faults).unwrap();
    let plan = line_plan(masks.view());
    let (delivered, summary) = assemble(&bytes);
    let (expected, corrupt_unattributed) = predict(&plan, &log);

    // Every slice with an intact line is delivered once, in order.
    let slices: Vec<u16> = delivered.iter().map(|d| d.stats.slice).collect();
    assert_eq!(slices, expected.keys().copied().collect::<Vec<_>>());

    let lost: Vec<u32> = log.lost();
    let lost_rows: Vec<(u16, u16)> = lost
        .iter()
        .map(|&s| (plan[s as usize].slice, plan[s as usize].ky))
        .collect();
    let peak = kspace
        .iter()
        .zip(masks.iter())
        .filter(|(_, &m)| m)
        .fold(0.0f32, |p, (v, _)| p.max(v.re.abs()).max(v.im.abs()));
    let half_code = 0.5 * peak / 32767.0 * (1.0 + 1e-3);
    let last = *slices.last().unwrap();
    for d in &delivered {
        let st = d.stats;
        let s = usize::from(st.slice);
        let want = &expected[&st.slice];
        let got = Expected {
            received: st.lines_received,
            missing: st.lines_missing,
            duplicates: st.duplicates,
            corrupt: st.corrupt,
            reordered: st.reordered,
        };
        assert_eq!(&got, want, "slice {s} counts ({faults:?})");
        assert_eq!((st.invalid_samples, st.faults), (0, 0));
        // Never forced out by full slots: moved past, or still settling at the end (the
        // last slices: nothing later moves `settle_lines` past them).
        let end = Some(ClosedBy::ScanEnd(EndStatus::Complete));
        if st.slice == last {
            assert_eq!(st.closed_by, end);
        } else {
            assert!(
                st.closed_by == Some(ClosedBy::MovedPast) || st.closed_by == end,
                "{st:?}"
            );
        }
        assert!(st.complete);
        // Mask: the generator's mask minus the rows that never arrived intact. k-space: the
        // sample where the mask says so (F32 exact, I16 within half a code), zero elsewhere.
        for ky in 0..N {
            let row_lost = lost_rows.contains(&(st.slice, ky as u16));
            for kx in 0..N {
                let i = ky * N + kx;
                let sampled = masks[[s, ky, kx]] && !row_lost;
                assert_eq!(d.mask[i], sampled, "slice {s} ({ky}, {kx})");
                let (got, want) = (d.kspace[i], kspace[[s, ky, kx]]);
                if !sampled {
                    assert_eq!(got, Complex32::new(0.0, 0.0));
                } else if format == SampleFormat::F32 {
                    assert_eq!(got, want, "slice {s} ({ky}, {kx})");
                } else {
                    let err = (got.re - want.re).abs().max((got.im - want.im).abs());
                    assert!(err <= half_code, "slice {s} ({ky}, {kx}): {got} vs {want}");
                }
            }
        }
    }
    // Totals and the scan summary.
    let total = |f: fn(&SliceStats) -> u32| delivered.iter().map(|d| f(&d.stats)).sum::<u32>();
    assert_eq!(total(|s| s.lines_received), log.lines_intact);
    assert_eq!(total(|s| s.lines_missing), lost.len() as u32);
    assert_eq!(total(|s| s.duplicates), log.counts.duplicated);
    assert_eq!(
        total(|s| s.corrupt) + summary.corrupt_unattributed,
        log.counts.corrupted
    );
    assert_eq!(summary.corrupt_unattributed, corrupt_unattributed);
    assert_eq!(summary.lines_placed, log.lines_intact);
    assert_eq!(
        (
            summary.late,
            summary.no_slot,
            summary.unknown_scan,
            summary.invalid
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        (
            summary.duplicates_unattributed,
            summary.missing_unattributed,
            summary.faults_unattributed
        ),
        (0, 0, 0)
    );
    assert_eq!(summary.decoder.crc, log.counts.corrupted);
    assert_eq!(summary.decoder.duplicate, log.counts.duplicated);
    assert_eq!(summary.decoder.incomplete, u32::from(!lost.is_empty()));
    assert_eq!(summary.end, Some(EndStatus::Complete));
    assert_eq!(summary.slices_completed as usize, delivered.len());
    // The first slice is moved past long before the end (slots are reused).
    assert_eq!(delivered[0].stats.closed_by, Some(ClosedBy::MovedPast));
}

/// A fixed case with every fault kind, checked in both sample formats and mask kinds, and
/// a check that the prediction is not vacuous.
#[test]
fn faulted_streams_assemble_as_the_log_predicts() {
    let faults = FaultSpec {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        corrupt: 0.05,
        seed: 5,
    };
    for block in [true, false] {
        let (kspace, masks) = stack(block);
        let spec = ScanSpec {
            scan_id: 77,
            field_mt: 50.0,
            fov_mm: [256.0; 2],
            samples: SampleFormat::I16,
        };
        let (_, log) = simulate_scan(kspace.view(), masks.view(), &spec, &faults).unwrap();
        let (expected, _) = predict(&line_plan(masks.view()), &log);
        assert_eq!(expected.len(), SLICES);
        for key in ["missing", "duplicates", "corrupt", "reordered"] {
            let sum: u32 = expected
                .values()
                .map(|e| match key {
                    "missing" => e.missing,
                    "duplicates" => e.duplicates,
                    "corrupt" => e.corrupt,
                    _ => e.reordered,
                })
                .sum();
            assert!(sum > 0, "{key}: the fixed case exercises every count");
        }
        for format in [SampleFormat::I16, SampleFormat::F32] {
            check(format, block, faults);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_faults_assemble_as_the_log_predicts(
        drop in 0.0..0.2f64,
        duplicate in 0.0..0.2f64,
        reorder in 0.0..0.3f64,
        corrupt in 0.0..0.2f64,
        seed in any::<u64>(),
        f32_samples in any::<bool>(),
        block in any::<bool>(),
    ) {
        let format = if f32_samples { SampleFormat::F32 } else { SampleFormat::I16 };
        check(format, block, FaultSpec { drop, duplicate, reorder, corrupt, seed });
    }
}
