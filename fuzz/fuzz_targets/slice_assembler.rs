//! Structure-aware: an arbitrary sequence of operations on `sparsemap_wire::SliceAssembler`
//! (the no_std assembler of the edge): scan starts with arbitrary geometry and
//! configuration, lines with arbitrary indices and samples (non-finite ones included),
//! faults, decoder errors, ends, interruptions, timeouts, pops and peeks.
//!
//! Checks, besides no panic:
//! * the geometry bounds: `storage_len` refuses exactly what its documentation says, `new`
//!   refuses short buffers;
//! * each `LineOutcome` is the documented one for the line's scan and geometry
//!   (`UnknownScan`, `Invalid`, `Late` after the end), and `Placed` lines are counted;
//! * every completed slice: its buffers are one slot; it is delivered once, in slice order,
//!   with `closed_by` set and `complete` as documented; its mask holds exactly the rows of the
//!   lines placed in it, each over the readout window, with exactly their samples; everything
//!   else is zero and unsampled;
//! * the open slices are sorted, fewer than the slots, inside the scan.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sparsemap_wire::num_complex::Complex;
use sparsemap_wire::{
    heapless, AssembleError, AssemblerConfig, ClosedBy, Completed, EndStatus, Error, Fault,
    FaultKind, Field, Line, LineOutcome, Samples, ScanEnd, ScanStart, SliceAssembler, SliceStats,
    MAX_COILS, MAX_N_X, MAX_SLOTS, VERSION,
};

/// Samples per line the fuzzer builds (the decoder's capacity in the edge is larger; the
/// assembler only compares the count with `kx_count`).
const N: usize = 32;
/// Largest buffer (elements) the target allocates; bigger geometries only exercise the
/// bounds and the short-buffer refusal.
const MAX_STORAGE: usize = 1 << 16;

#[derive(Debug, Arbitrary)]
enum Geometry {
    /// Every field as drawn: mostly out of bounds.
    Raw {
        n_y: u16,
        n_x: u16,
        n_coils: u8,
        n_slices: u16,
        kx_first: u16,
        kx_count: u16,
        slots: u8,
    },
    /// Small grids, windows that may still be empty or leave the grid.
    Small {
        n_y: u8,
        n_x: u8,
        n_coils: u8,
        n_slices: u8,
        kx_first: u8,
        kx_count: u8,
        slots: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Scan {
    scan_id: u32,
    geometry: Geometry,
    settle_lines: u32,
    /// Buffers one element short (0), exact (1) or longer (2).
    spare: u8,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Sample {
    I16 { scale: u32, iq: Vec<[i16; 2]> },
    F32 { iq: Vec<[u32; 2]> },
}

#[derive(Debug, Arbitrary)]
struct LineSpec {
    /// Another scan's id when set.
    other_scan: Option<u32>,
    seq: u32,
    slice: u8,
    coil: u8,
    ky: u8,
    samples: Sample,
}

#[derive(Debug, Arbitrary)]
enum WireError {
    Oversize,
    Truncated,
    Crc,
    Malformed,
    UnknownVersion(u16),
    InvalidFrame,
    SequenceGap(u32, u32),
    Duplicate(bool, Option<u32>),
    Stale(u32),
    UnknownScan(u32),
    ScanInterrupted(bool),
    Incomplete(u32, u32),
    BufferTooSmall,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Line(LineSpec),
    LineThenPop(LineSpec),
    Fault {
        other_scan: Option<u32>,
        kind: u8,
        slice: u8,
        coil: u8,
        ky: u8,
        detail: u32,
    },
    WireError(WireError),
    End {
        other_scan: Option<u32>,
        lines_sent: u32,
        aborted: bool,
    },
    Interrupt,
    CompleteOldest,
    Pop,
    Peek(u8),
}

const KINDS: [FaultKind; 8] = [
    FaultKind::AdcBus,
    FaultKind::AdcProtocol,
    FaultKind::AdcStatus,
    FaultKind::AdcTimeout,
    FaultKind::TriggerTimeout,
    FaultKind::AdcConfig,
    FaultKind::LinkOverrun,
    FaultKind::InvalidPlan,
];

fn start_of(scan: &Scan) -> (ScanStart, AssemblerConfig) {
    let (n_y, n_x, n_coils, n_slices, kx_first, kx_count, slots) = match scan.geometry {
        Geometry::Raw {
            n_y,
            n_x,
            n_coils,
            n_slices,
            kx_first,
            kx_count,
            slots,
        } => (n_y, n_x, n_coils, n_slices, kx_first, kx_count, slots),
        Geometry::Small {
            n_y,
            n_x,
            n_coils,
            n_slices,
            kx_first,
            kx_count,
            slots,
        } => (
            u16::from(n_y % 17),
            u16::from(n_x % 17),
            n_coils % 5,
            u16::from(n_slices % 9),
            u16::from(kx_first % 18),
            u16::from(kx_count % 18),
            slots % 6,
        ),
    };
    let start = ScanStart {
        version: VERSION,
        scan_id: scan.scan_id,
        n_y,
        n_x,
        n_coils,
        n_slices,
        field_mt: 1.0,
        fov_mm: [1.0; 2],
        kx_first,
        kx_count,
    };
    let config = AssemblerConfig {
        slots: usize::from(slots),
        settle_lines: scan.settle_lines,
    };
    (start, config)
}

/// `storage_len`'s verdict, computed from its documentation.
fn expected_bounds(s: &ScanStart, c: &AssemblerConfig) -> Result<usize, (Field, u32)> {
    let max = MAX_N_X as u32;
    if !(1..=max).contains(&u32::from(s.n_y)) {
        return Err((Field::NY, s.n_y.into()));
    }
    if !(1..=max).contains(&u32::from(s.n_x)) {
        return Err((Field::NX, s.n_x.into()));
    }
    if !(1..=MAX_COILS).contains(&s.n_coils) {
        return Err((Field::NCoils, s.n_coils.into()));
    }
    if s.n_slices == 0 {
        return Err((Field::NSlices, 0));
    }
    let end = u32::from(s.kx_first) + u32::from(s.kx_count);
    if s.kx_count == 0 || end > u32::from(s.n_x) {
        return Err((Field::Window, end));
    }
    if !(1..=MAX_SLOTS).contains(&c.slots) {
        return Err((Field::Slots, c.slots as u32));
    }
    Ok(c.slots * usize::from(s.n_coils) * usize::from(s.n_y) * usize::from(s.n_x))
}

fn line_of(spec: &LineSpec, scan_id: u32) -> Line<N> {
    let samples = match &spec.samples {
        Sample::I16 { scale, iq } => Samples::I16 {
            scale: f32::from_bits(*scale),
            iq: heapless::Vec::from_slice(&iq[..iq.len().min(N)]).expect("at most N"),
        },
        Sample::F32 { iq } => Samples::F32 {
            iq: iq
                .iter()
                .take(N)
                .map(|&[re, im]| [f32::from_bits(re), f32::from_bits(im)])
                .collect(),
        },
    };
    Line {
        scan_id: spec.other_scan.unwrap_or(scan_id),
        seq: spec.seq,
        slice: spec.slice.into(),
        coil: spec.coil,
        ky: spec.ky.into(),
        samples,
    }
}

/// What must be in each open slice: row `(coil, ky)` → its `kx_count` samples.
type Model = BTreeMap<u16, BTreeMap<(u8, u16), Vec<Complex<f32>>>>;

struct Checker {
    start: ScanStart,
    per_slot: usize,
    model: Model,
    delivered: Vec<u16>,
    placed: u32,
}

impl Checker {
    fn completed(&mut self, c: Completed<'_>) {
        self.check(*c.stats(), c.kspace(), c.mask());
    }

    fn check(&mut self, st: SliceStats, kspace: &[Complex<f32>], mask: &[bool]) {
        let s = &self.start;
        assert_eq!(st.scan_id, s.scan_id);
        assert!(st.slice < s.n_slices);
        assert_eq!((kspace.len(), mask.len()), (self.per_slot, self.per_slot));
        let why = st.closed_by.expect("a completed slice says why");
        assert_eq!(
            st.complete,
            matches!(
                why,
                ClosedBy::MovedPast | ClosedBy::ScanEnd(EndStatus::Complete)
            )
        );
        // Delivered once, in slice order.
        assert!(self.delivered.last().is_none_or(|&last| last < st.slice));
        self.delivered.push(st.slice);

        let rows = self.model.remove(&st.slice).unwrap_or_default();
        assert_eq!(rows.len(), st.lines_received as usize, "{st:?}");
        assert!(st.lines_received <= u32::from(s.n_coils) * u32::from(s.n_y));
        let (nx, first, count) = (
            usize::from(s.n_x),
            usize::from(s.kx_first),
            usize::from(s.kx_count),
        );
        for coil in 0..s.n_coils {
            for ky in 0..s.n_y {
                let at = (usize::from(coil) * usize::from(s.n_y) + usize::from(ky)) * nx;
                let (k, m) = (&kspace[at..at + nx], &mask[at..at + nx]);
                match rows.get(&(coil, ky)) {
                    Some(values) => {
                        for kx in 0..nx {
                            let inside = (first..first + count).contains(&kx);
                            assert_eq!(m[kx], inside, "coil {coil} ky {ky} kx {kx}");
                            if inside {
                                assert_eq!(k[kx], values[kx - first]);
                            } else {
                                assert_eq!(k[kx], Complex::new(0.0, 0.0));
                            }
                        }
                    }
                    None => {
                        assert!(m.iter().all(|&b| !b), "unsampled row {coil}/{ky} marked");
                        assert!(k.iter().all(|v| *v == Complex::new(0.0, 0.0)));
                    }
                }
            }
        }
    }

    /// Records the line if it was placed; checks the outcome against the geometry.
    fn outcome(&mut self, l: &Line<N>, o: LineOutcome, finished: bool) {
        let s = &self.start;
        let fits = l.slice < s.n_slices
            && l.coil < s.n_coils
            && l.ky < s.n_y
            && l.samples.len() == usize::from(s.kx_count);
        let expected_kind = if l.scan_id != s.scan_id {
            Some(LineOutcome::UnknownScan)
        } else if !fits {
            Some(LineOutcome::Invalid)
        } else if finished {
            Some(LineOutcome::Late)
        } else {
            None
        };
        match expected_kind {
            Some(k) => assert_eq!(o, k, "{l:?}"),
            None => assert!(
                !matches!(o, LineOutcome::UnknownScan | LineOutcome::Invalid),
                "{o:?} for {l:?}"
            ),
        }
        let all_finite = (0..l.samples.len()).all(|k| {
            l.samples
                .get(k)
                .is_some_and(|[re, im]| re.is_finite() && im.is_finite())
        });
        if o == LineOutcome::InvalidSamples {
            assert!(!all_finite);
        }
        if o == LineOutcome::Placed {
            assert!(all_finite);
            self.placed += 1;
            let values = (0..l.samples.len())
                .map(|k| {
                    let [re, im] = l.samples.get(k).expect("k < len");
                    Complex::new(re, im)
                })
                .collect();
            let old = self
                .model
                .entry(l.slice)
                .or_default()
                .insert((l.coil, l.ky), values);
            assert!(old.is_none(), "a second line placed on one row: {l:?}");
        }
    }
}

fn run_scan(scan: &Scan) {
    let (start, config) = start_of(scan);
    let bounds = SliceAssembler::storage_len(&start, &config);
    match (bounds, expected_bounds(&start, &config)) {
        (Ok(n), Ok(m)) => assert_eq!(n, m),
        (Err(AssembleError::OutOfBounds { field, value }), Err((f, v))) => {
            assert_eq!((field, value), (f, v));
            return;
        }
        (got, want) => panic!("storage_len {got:?}, documented {want:?}"),
    }
    let n = bounds.expect("Ok above");
    if n > MAX_STORAGE {
        // Too big to allocate per execution: check that short buffers are refused.
        let (mut k, mut m) = (vec![Complex::new(0.0, 0.0); 1], vec![false; 1]);
        assert!(matches!(
            SliceAssembler::new(start, config, &mut k, &mut m),
            Err(AssembleError::BufferTooSmall { needed, len: 1, .. }) if needed == n
        ));
        return;
    }
    let len = match scan.spare % 3 {
        0 => n - 1,
        1 => n,
        _ => n + 7,
    };
    // Garbage in the buffers: a slot must be cleared when a slice opens in it.
    let mut k = vec![Complex::new(f32::NAN, 1.0); len];
    let mut m = vec![true; len];
    let mut a = match SliceAssembler::new(start, config, &mut k, &mut m) {
        Ok(a) => a,
        Err(e) => {
            assert!(len < n, "{e:?} for buffers of {len} >= {n}");
            return;
        }
    };
    assert!(len >= n);
    let mut ch = Checker {
        start,
        per_slot: n / config.slots,
        model: Model::new(),
        delivered: Vec::new(),
        placed: 0,
    };
    let mut finished = false;
    for op in &scan.ops {
        match op {
            Op::Line(spec) => {
                let l = line_of(spec, start.scan_id);
                let o = a.line(&l);
                ch.outcome(&l, o, finished);
            }
            Op::LineThenPop(spec) => {
                let l = line_of(spec, start.scan_id);
                // The slices are handed over (and their slots freed) inside the call, maybe
                // after this line was placed in one of them: copy them, and check them once
                // the outcome is recorded.
                let mut done = Vec::new();
                let o = a.line_then_pop(&l, |c| {
                    done.push((*c.stats(), c.kspace().to_vec(), c.mask().to_vec()))
                });
                ch.outcome(&l, o, finished);
                for (st, k, m) in done {
                    ch.check(st, &k, &m);
                }
            }
            &Op::Fault {
                other_scan,
                kind,
                slice,
                coil,
                ky,
                detail,
            } => a.fault(&Fault {
                scan_id: other_scan.unwrap_or(start.scan_id),
                kind: KINDS[usize::from(kind) % KINDS.len()],
                slice: slice.into(),
                coil,
                ky: ky.into(),
                detail,
            }),
            Op::WireError(e) => {
                let this = start.scan_id;
                let e = match *e {
                    WireError::Oversize => Error::Oversize,
                    WireError::Truncated => Error::Truncated,
                    WireError::Crc => Error::Crc {
                        expected: 1,
                        computed: 2,
                    },
                    WireError::Malformed => Error::Malformed,
                    WireError::UnknownVersion(version) => Error::UnknownVersion { version },
                    WireError::InvalidFrame => Error::InvalidFrame,
                    WireError::SequenceGap(expected, got) => Error::SequenceGap { expected, got },
                    WireError::Duplicate(ours, seq) => Error::Duplicate {
                        scan_id: if ours { this } else { this.wrapping_add(1) },
                        seq,
                    },
                    WireError::Stale(seq) => Error::Stale { seq },
                    WireError::UnknownScan(scan_id) => Error::UnknownScan { scan_id },
                    WireError::ScanInterrupted(ours) => {
                        let scan_id = if ours { this } else { this.wrapping_add(1) };
                        finished |= ours;
                        Error::ScanInterrupted { scan_id }
                    }
                    WireError::Incomplete(lines_sent, lines_received) => Error::Incomplete {
                        scan_id: this,
                        lines_sent,
                        lines_received,
                    },
                    WireError::BufferTooSmall => Error::BufferTooSmall,
                };
                a.wire_error(&e);
            }
            &Op::End {
                other_scan,
                lines_sent,
                aborted,
            } => {
                let scan_id = other_scan.unwrap_or(start.scan_id);
                finished |= scan_id == start.scan_id;
                a.end(&ScanEnd {
                    scan_id,
                    lines_sent,
                    status: if aborted {
                        EndStatus::Aborted
                    } else {
                        EndStatus::Complete
                    },
                });
            }
            Op::Interrupt => {
                a.interrupt();
                finished = true;
            }
            Op::CompleteOldest => {
                let open = a.open_slices().next().is_some();
                assert_eq!(a.complete_oldest(), open);
            }
            Op::Pop => {
                if let Some(c) = a.pop_complete() {
                    ch.completed(c);
                }
            }
            &Op::Peek(slice) => {
                if let Some((k, m)) = a.slot_view(slice.into()) {
                    assert_eq!((k.len(), m.len()), (ch.per_slot, ch.per_slot));
                }
                let open: Vec<u16> = a.open_slices().map(|s| s.slice).collect();
                assert!(open.windows(2).all(|w| w[0] < w[1]), "{open:?}");
                assert!(open.len() <= config.slots);
                assert!(open.iter().all(|&s| s < start.n_slices));
                if finished {
                    assert!(open.is_empty());
                }
            }
        }
    }
    a.interrupt();
    while let Some(c) = a.pop_complete() {
        ch.completed(c);
    }
    assert!(a.open_slices().next().is_none());
    // Every placed line was delivered in its slice.
    assert!(ch.model.is_empty(), "undelivered: {:?}", ch.model.keys());
    assert_eq!(a.summary().lines_placed, ch.placed);
    assert_eq!(a.summary().slices_completed as usize, ch.delivered.len());
}

fuzz_target!(|scans: Vec<Scan>| {
    for scan in scans.iter().take(4) {
        run_scan(scan);
    }
});
