//! `SliceAssembler` against arbitrary event sequences: it never panics, and what it
//! delivers is consistent with its own counts whatever it was told.

mod support {
    pub mod strategies;
}

use proptest::prelude::*;
use sparsemap_wire::num_complex::Complex;
use sparsemap_wire::{
    AssemblerConfig, EndStatus, Error, Fault, Line, LineOutcome, ScanEnd, ScanStart,
    SliceAssembler, MAX_SLOTS, VERSION,
};
use support::strategies::{fault_kind, samples};

const N: usize = 8;
const SCAN: u32 = 3;

#[derive(Debug, Clone)]
enum Event {
    Line(Line<N>),
    LineThenPop(Line<N>),
    Fault(Fault),
    WireError(Error),
    End(ScanEnd),
    Interrupt,
    CompleteOldest,
    Pop,
    Peek(u16),
}

fn any_f32() -> impl Strategy<Value = f32> + Clone {
    prop_oneof![
        4 => -100.0f32..100.0,
        1 => any::<u32>().prop_map(f32::from_bits), // NaN, infinities, huge
    ]
}

fn line() -> impl Strategy<Value = Line<N>> {
    let samples = samples::<N>(any_f32(), 0..=N);
    (
        prop_oneof![8 => Just(SCAN), 1 => any::<u32>()],
        prop_oneof![8 => 0u32..40, 1 => any::<u32>()],
        0u16..5,
        0u8..3,
        0u16..5,
        samples,
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

fn error() -> impl Strategy<Value = Error> {
    prop_oneof![
        Just(Error::Oversize),
        Just(Error::Truncated),
        Just(Error::Malformed),
        Just(Error::InvalidFrame),
        Just(Error::BufferTooSmall),
        (any::<u32>(), any::<u32>())
            .prop_map(|(expected, computed)| Error::Crc { expected, computed }),
        any::<u16>().prop_map(|version| Error::UnknownVersion { version }),
        (0u32..40, 0u32..40).prop_map(|(expected, got)| Error::SequenceGap { expected, got }),
        (
            prop_oneof![Just(SCAN), any::<u32>()],
            prop::option::of(0u32..40)
        )
            .prop_map(|(scan_id, seq)| Error::Duplicate { scan_id, seq }),
        any::<u32>().prop_map(|seq| Error::Stale { seq }),
        any::<u32>().prop_map(|scan_id| Error::UnknownScan { scan_id }),
        prop_oneof![Just(SCAN), any::<u32>()]
            .prop_map(|scan_id| Error::ScanInterrupted { scan_id }),
        (any::<u32>(), any::<u32>()).prop_map(|(lines_sent, lines_received)| Error::Incomplete {
            scan_id: SCAN,
            lines_sent,
            lines_received
        }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let kind = fault_kind();
    prop_oneof![
        12 => line().prop_map(Event::Line),
        4 => line().prop_map(Event::LineThenPop),
        2 => (prop_oneof![Just(SCAN), Just(0)], kind, 0u16..5, 0u8..3, 0u16..5, any::<u32>())
            .prop_map(|(scan_id, kind, slice, coil, ky, detail)| Event::Fault(Fault {
                scan_id, kind, slice, coil, ky, detail
            })),
        3 => error().prop_map(Event::WireError),
        1 => (prop_oneof![Just(SCAN), any::<u32>()], 0u32..50, any::<bool>()).prop_map(
            |(scan_id, lines_sent, aborted)| Event::End(ScanEnd {
                scan_id,
                lines_sent,
                status: if aborted { EndStatus::Aborted } else { EndStatus::Complete },
            })
        ),
        1 => Just(Event::Interrupt),
        1 => Just(Event::CompleteOldest),
        4 => Just(Event::Pop),
        1 => (0u16..5).prop_map(Event::Peek),
    ]
}

fn start() -> impl Strategy<Value = ScanStart> {
    (1u16..5, 1u16..7, 1u8..3, 1u16..5, 0u16..7, 1u16..=N as u16).prop_map(
        |(n_y, n_x, n_coils, n_slices, a, b)| {
            let kx_count = 1 + b % n_x;
            let kx_first = a % (n_x - kx_count + 1);
            ScanStart {
                version: VERSION,
                scan_id: SCAN,
                n_y,
                n_x,
                n_coils,
                n_slices,
                field_mt: 1.0,
                fov_mm: [1.0; 2],
                kx_first,
                kx_count,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_and_deliveries_are_consistent(
        s in start(),
        slots in 1..=MAX_SLOTS,
        settle_lines in prop_oneof![0u32..6, Just(u32::MAX)],
        events in prop::collection::vec(event(), 0..80),
    ) {
        let config = AssemblerConfig { slots, settle_lines };
        let n = SliceAssembler::storage_len(&s, &config).unwrap();
        let mut k = vec![Complex::new(f32::NAN, 0.0); n];
        let mut m = vec![true; n];
        let mut a = SliceAssembler::new(s, config, &mut k, &mut m).unwrap();
        let per_slot = n / slots;
        let window = usize::from(s.kx_count);
        let mut delivered: Vec<u16> = Vec::new();
        let mut placed = 0u32;
        let check = |c: sparsemap_wire::Completed<'_>, delivered: &mut Vec<u16>| {
            let st = *c.stats();
            assert_eq!(c.kspace().len(), per_slot);
            assert_eq!(c.mask().len(), per_slot);
            // Every written line set exactly its window; nothing else is sampled or non-zero.
            assert_eq!(c.mask().iter().filter(|&&b| b).count(), st.lines_received as usize * window);
            for (v, &b) in c.kspace().iter().zip(c.mask()) {
                assert!(v.re.is_finite() && v.im.is_finite());
                if !b {
                    assert_eq!(*v, Complex::new(0.0, 0.0));
                }
            }
            for row in c.mask().chunks(usize::from(s.n_x)) {
                for (kx, &b) in row.iter().enumerate() {
                    if b {
                        assert!(kx >= usize::from(s.kx_first) && kx < usize::from(s.kx_first) + window);
                    }
                }
            }
            assert!(st.closed_by.is_some());
            delivered.push(st.slice);
        };
        for e in events {
            match e {
                Event::Line(l) => {
                    if a.line(&l) == LineOutcome::Placed { placed += 1; }
                }
                Event::LineThenPop(l) => {
                    if a.line_then_pop(&l, |c| check(c, &mut delivered)) == LineOutcome::Placed {
                        placed += 1;
                    }
                }
                Event::Fault(f) => a.fault(&f),
                Event::WireError(e) => a.wire_error(&e),
                Event::End(e) => a.end(&e),
                Event::Interrupt => a.interrupt(),
                Event::CompleteOldest => { a.complete_oldest(); }
                Event::Pop => {
                    if let Some(c) = a.pop_complete() { check(c, &mut delivered); }
                }
                Event::Peek(slice) => {
                    if let Some((k, m)) = a.slot_view(slice) {
                        assert_eq!((k.len(), m.len()), (per_slot, per_slot));
                    }
                    let open: Vec<u16> = a.open_slices().map(|s| s.slice).collect();
                    assert!(open.windows(2).all(|w| w[0] < w[1]), "{open:?}");
                    assert!(open.len() <= slots);
                }
            }
        }
        a.interrupt();
        while let Some(c) = a.pop_complete() { check(c, &mut delivered); }
        assert!(a.open_slices().next().is_none());
        // Every slice at most once, in slice order; everything placed was delivered.
        assert!(delivered.windows(2).all(|w| w[0] < w[1]), "{delivered:?}");
        assert_eq!(a.summary().lines_placed, placed);
        assert_eq!(a.summary().slices_completed as usize, delivered.len());
    }
}
