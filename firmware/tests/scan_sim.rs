//! Whole scans through the bridge against the behavioural ADS131A02 model (`sim/`), decoded
//! by `sparsemap-wire`: clean scans, link back-pressure and overrun, every ADC fault, a dead
//! link, configuration failures.

#[path = "sim/mod.rs"]
mod sim;

use sim::{hardware, Inject, SimDrdy, SimLink, SimSpi, SimTrigger};
use sparsemap_firmware::ads131a02::{reg, CONFIG};
use sparsemap_firmware::{Bridge, LinkError, Readout, ScanPlan, ScanSummary, Timing};
use sparsemap_wire::{
    EndStatus, Error, Fault, FaultKind, Frame, FrameReader, ReadError, Samples, ScanStart, VERSION,
};

const N: usize = 64;
const E: usize = sparsemap_wire::max_encoded_len(N);

type TestBridge<const Q: usize> = Bridge<SimSpi, SimDrdy, SimTrigger, SimLink, N, E, Q>;

/// A deterministic "k-space" of ADC codes: row `ky`, column `kx`.
fn code(ky: u16, kx: usize) -> [i16; 2] {
    let x = (ky as i32 * 7919 + kx as i32 * 104_729) % 65_536 - 32_768;
    let y = (ky as i32 * 31 - kx as i32 * 577) % 32_768;
    [x as i16, y as i16]
}

struct Scan {
    plan_readouts: Vec<Readout>,
    n_x: u16,
    kx_first: u16,
    kx_count: u16,
}

impl Scan {
    /// Rows `ky` of slice 0, coil 0 in the given order, each measuring grid columns
    /// `kx_first .. kx_first + kx_count` of `n_x`.
    fn rows(kys: &[u16], n_x: u16, kx_first: u16, kx_count: u16) -> Self {
        Self {
            plan_readouts: kys
                .iter()
                .map(|&ky| Readout {
                    slice: 0,
                    coil: 0,
                    ky,
                })
                .collect(),
            n_x,
            kx_first,
            kx_count,
        }
    }
    /// The model's codes of one readout: the window's columns of row `ky`.
    fn window_codes(&self, ky: u16) -> Vec<[i16; 2]> {
        let first = usize::from(self.kx_first);
        (first..first + usize::from(self.kx_count))
            .map(|kx| code(ky, kx))
            .collect()
    }
    fn samples(&self) -> Vec<Vec<[i16; 2]>> {
        self.plan_readouts
            .iter()
            .map(|r| self.window_codes(r.ky))
            .collect()
    }
    fn plan(&self, scan_id: u32) -> ScanPlan<'_> {
        ScanPlan {
            scan_id,
            n_y: 32,
            n_x: self.n_x,
            kx_first: self.kx_first,
            kx_count: self.kx_count,
            n_coils: 1,
            n_slices: 1,
            field_mt: 47.0,
            fov_mm: [220.0, 220.0],
            scale: 2.5e-4,
            readouts: &self.plan_readouts,
        }
    }
}

fn timing() -> Timing {
    Timing {
        trigger_polls: 10_000,
        drdy_polls: 1_000,
        pump_chunk: 16,
        flush_polls: 100_000,
    }
}

/// Run one scan on fresh hardware.
/// What a scan run returns: the bridge's result, the bytes on the link, the ADC model.
type RunResult = (
    Result<ScanSummary, LinkError<sim::LinkDown>>,
    Vec<u8>,
    std::rc::Rc<std::cell::RefCell<sim::Model>>,
);

fn run<const Q: usize>(scan: &Scan, injects: Vec<Inject>, link: SimLink) -> RunResult {
    let (model, spi, drdy, trig) = hardware(scan.samples(), injects);
    let mut bridge: TestBridge<Q> = Bridge::new(spi, drdy, trig, link, timing());
    let r = bridge.run_scan(&scan.plan(42));
    let (_, _, _, link) = bridge.release();
    (r, link.out, model)
}

fn decode(bytes: &[u8]) -> (Vec<Frame<N>>, Vec<Error>) {
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    for item in FrameReader::<_, N, { sparsemap_wire::max_raw_len(N) }>::new(bytes) {
        match item {
            Ok(f) => frames.push(f),
            Err(ReadError::Wire(e)) => errors.push(e),
            Err(ReadError::Io(e)) => panic!("{e}"),
        }
    }
    (frames, errors)
}

/// Check the decoded stream: ScanStart, then lines carrying exactly the model's codes for
/// every readout not in `lost`, faults for those in `lost`, then ScanEnd.
fn check_stream(
    scan: &Scan,
    frames: &[Frame<N>],
    lost: &[usize],
    status: EndStatus,
    sent_upto: usize,
) {
    assert_eq!(
        frames[0],
        Frame::ScanStart(ScanStart {
            version: VERSION,
            scan_id: 42,
            n_y: 32,
            n_x: scan.n_x,
            n_coils: 1,
            n_slices: 1,
            field_mt: 47.0,
            fov_mm: [220.0, 220.0],
            kx_first: scan.kx_first,
            kx_count: scan.kx_count,
        })
    );
    let lines: Vec<_> = frames
        .iter()
        .filter_map(|f| {
            if let Frame::Line(l) = f {
                Some(l)
            } else {
                None
            }
        })
        .collect();
    let expected_rows: Vec<usize> = (0..sent_upto).filter(|r| !lost.contains(r)).collect();
    assert_eq!(lines.len(), expected_rows.len(), "lines received");
    for (seq, (line, &r)) in lines.iter().zip(&expected_rows).enumerate() {
        assert_eq!(line.seq, seq as u32, "seq increases by one per line");
        assert_eq!(line.ky, scan.plan_readouts[r].ky);
        let Samples::I16 { scale, iq } = &line.samples else {
            panic!("i16 samples")
        };
        assert_eq!(*scale, 2.5e-4);
        // Exactly the window's columns, in order.
        let want = scan.window_codes(line.ky);
        assert_eq!(iq.as_slice(), want.as_slice(), "samples of ky {}", line.ky);
    }
    match frames.last() {
        Some(Frame::ScanEnd(e)) => {
            assert_eq!(e.scan_id, 42);
            assert_eq!(e.lines_sent as usize, expected_rows.len());
            assert_eq!(e.status, status);
        }
        other => panic!("last frame {other:?}"),
    }
}

fn faults(frames: &[Frame<N>]) -> Vec<Fault> {
    frames
        .iter()
        .filter_map(|f| {
            if let Frame::Fault(x) = f {
                Some(*x)
            } else {
                None
            }
        })
        .collect()
}

fn scan16() -> Scan {
    // 16 of 32 rows, centre out (the order a low-field sequence might use), each readout
    // measuring the 48 columns 8..56 of a 64-column grid.
    Scan::rows(
        &[16, 15, 17, 14, 18, 13, 19, 12, 20, 11, 21, 10, 22, 9, 23, 8],
        64,
        8,
        48,
    )
}

#[test]
fn clean_scan_decodes_to_exactly_the_adc_codes() {
    let scan = scan16();
    let (r, bytes, model) = run::<8192>(&scan, vec![], SimLink::new(usize::MAX, 1));
    let summary = r.unwrap();
    assert_eq!(summary.lines_sent, 16);
    assert_eq!(summary.faults, 0);
    assert!(!summary.aborted);
    assert_eq!(summary.bytes as usize, bytes.len());
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    check_stream(&scan, &frames, &[], EndStatus::Complete, 16);
    assert_eq!(frames.len(), 18);
    let m = model.borrow();
    assert!(m.violations.is_empty(), "{:?}", m.violations);
    assert_eq!(m.samples_read, vec![48; 16]);
    assert!(
        m.idle_reads > 0,
        "idle conversions between readouts are drained"
    );
    // The registers hold the configuration.
    drop(m);
    let regs = sim::registers(&model);
    for (a, d) in CONFIG {
        assert_eq!(regs[a as usize], d, "register {a:#x}");
    }
    assert_eq!(regs[reg::ADC_ENA as usize], 0x0F);
}

#[test]
fn partial_writes_and_a_slow_link_lose_nothing() {
    let scan = scan16();
    // 5 bytes per write, ready one poll in three.
    let (r, bytes, _) = run::<8192>(&scan, vec![], SimLink::new(5, 3));
    assert_eq!(r.unwrap().lines_sent, 16);
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    check_stream(&scan, &frames, &[], EndStatus::Complete, 16);
}

#[test]
fn link_overrun_drops_whole_lines_and_says_so() {
    let scan = scan16();
    // A queue for ~2 lines and a link that takes 1 byte per 3 polls (≈ 30 bytes per
    // readout, a line is ≈ 200): lines cannot keep up, the small fault frames can.
    const Q: usize = E + 2 * 32 + 300;
    let (r, bytes, _) = run::<Q>(&scan, vec![], SimLink::new(1, 3));
    let summary = r.unwrap();
    assert!(summary.lines_sent < 16, "the slow link must overflow");
    let (frames, errors) = decode(&bytes);
    // seq counts lines *sent*, so the receiver sees no gap: losses are explicit faults.
    assert!(errors.is_empty(), "{errors:?}");
    let f = faults(&frames);
    assert!(f
        .iter()
        .all(|f| f.kind == FaultKind::LinkOverrun && f.scan_id == 42));
    let lines: Vec<u16> = frames
        .iter()
        .filter_map(|x| {
            if let Frame::Line(l) = x {
                Some(l.ky)
            } else {
                None
            }
        })
        .collect();
    let mut covered: Vec<u16> = lines
        .iter()
        .copied()
        .chain(f.iter().map(|f| f.ky))
        .collect();
    covered.sort_unstable();
    let mut all: Vec<u16> = scan.plan_readouts.iter().map(|r| r.ky).collect();
    all.sort_unstable();
    assert_eq!(
        covered, all,
        "every readout is either a line or a LinkOverrun fault"
    );
    assert_eq!(summary.faults as usize, f.len());
    assert_eq!(summary.faults_dropped, 0);
}

#[test]
fn adc_faults_become_fault_frames_and_the_scan_goes_on() {
    let scan = scan16();
    let injects = vec![
        Inject::SpiError { readout: 2, k: 5 },
        Inject::Status {
            readout: 5,
            k: 0,
            stat: 0x40,
        },
        Inject::Misaligned { readout: 9, k: 47 },
    ];
    let (r, bytes, model) = run::<8192>(&scan, injects, SimLink::new(64, 1));
    let summary = r.unwrap();
    assert_eq!(summary.lines_sent, 13);
    assert_eq!(summary.faults, 3);
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    check_stream(&scan, &frames, &[2, 5, 9], EndStatus::Complete, 16);
    let f = faults(&frames);
    let ky = |r: usize| scan.plan_readouts[r].ky;
    assert_eq!(
        f,
        vec![
            Fault {
                scan_id: 42,
                kind: FaultKind::AdcBus,
                slice: 0,
                coil: 0,
                ky: ky(2),
                detail: 0
            },
            Fault {
                scan_id: 42,
                kind: FaultKind::AdcStatus,
                slice: 0,
                coil: 0,
                ky: ky(5),
                detail: 0x40
            },
            Fault {
                scan_id: 42,
                kind: FaultKind::AdcProtocol,
                slice: 0,
                coil: 0,
                ky: ky(9),
                detail: 0x1234
            },
        ]
    );
    assert!(
        model.borrow().violations.is_empty(),
        "{:?}",
        model.borrow().violations
    );
}

#[test]
fn dead_adc_aborts_the_scan_with_a_timeout_fault() {
    let scan = scan16();
    let (r, bytes, _) = run::<8192>(
        &scan,
        vec![Inject::DeadFrom { readout: 6 }],
        SimLink::new(64, 1),
    );
    let summary = r.unwrap();
    assert!(summary.aborted);
    assert_eq!(summary.lines_sent, 6);
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    check_stream(&scan, &frames, &[], EndStatus::Aborted, 6);
    assert_eq!(
        faults(&frames),
        vec![Fault {
            scan_id: 42,
            kind: FaultKind::AdcTimeout,
            slice: 0,
            coil: 0,
            ky: scan.plan_readouts[6].ky,
            detail: 0
        }]
    );
}

#[test]
fn missing_trigger_aborts_the_scan() {
    let scan = scan16();
    let (r, bytes, _) = run::<8192>(
        &scan,
        vec![Inject::NoTriggerFrom { readout: 10 }],
        SimLink::new(64, 1),
    );
    assert!(r.unwrap().aborted);
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    check_stream(&scan, &frames, &[], EndStatus::Aborted, 10);
    assert_eq!(faults(&frames)[0].kind, FaultKind::TriggerTimeout);
}

#[test]
fn configuration_failures_are_reported_not_panicked() {
    let scan = scan16();
    for (inject, kind_detail) in [
        (Inject::WrongId, Some(0x2004u32)),
        (Inject::NeverReady, None),
    ] {
        let (r, bytes, _) = run::<8192>(&scan, vec![inject], SimLink::new(64, 1));
        let summary = r.unwrap();
        assert!(!summary.started);
        let (frames, errors) = decode(&bytes);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(frames.len(), 1, "{frames:?}");
        let Frame::Fault(f) = frames[0] else { panic!() };
        assert_eq!((f.scan_id, f.kind), (0, FaultKind::AdcConfig));
        if let Some(d) = kind_detail {
            assert_eq!(f.detail, d, "the unexpected response word");
        }
    }
}

#[test]
fn a_dead_link_is_the_only_error() {
    let scan = scan16();
    let mut link = SimLink::new(64, 1);
    link.fail_after = Some(500);
    let (r, _, _) = run::<8192>(&scan, vec![], link);
    assert_eq!(r.unwrap_err(), LinkError::Write(sim::LinkDown));
}

#[test]
fn two_scans_share_one_configuration() {
    let a = scan16();
    let b = Scan::rows(&[0, 31, 1, 30], 48, 0, 48);
    let mut readouts = a.samples();
    readouts.extend(b.samples());
    let (model, spi, drdy, trig) = hardware(readouts, vec![]);
    let mut bridge: TestBridge<8192> =
        Bridge::new(spi, drdy, trig, SimLink::new(usize::MAX, 1), timing());
    let s1 = bridge.run_scan(&a.plan(42)).unwrap();
    let frames_after_config = model.borrow().frames;
    let s2 = bridge.run_scan(&b.plan(42)).unwrap();
    assert_eq!((s1.lines_sent, s2.lines_sent), (16, 4));
    assert!(model.borrow().violations.is_empty());
    let bytes = bridge.link().out.clone();
    let (frames, errors) = decode(&bytes);
    assert_eq!(
        errors,
        vec![],
        "same scan id twice in a row is fine after ScanEnd"
    );
    assert_eq!(frames.len(), 18 + 6);
    check_stream(&b, &frames[18..], &[], EndStatus::Complete, 4);
    // The second scan did not reconfigure: only data and discard frames were clocked.
    let data_frames = model.borrow().frames - frames_after_config;
    assert!(data_frames >= 4 * 48);
}

#[test]
fn an_invalid_plan_is_refused_with_a_fault() {
    let mut scan = scan16();
    scan.plan_readouts[3].ky = 32; // outside the 32-row grid
    let (r, bytes, _) = run::<8192>(&scan, vec![], SimLink::new(64, 1));
    assert!(!r.unwrap().started);
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        frames,
        vec![Frame::Fault(Fault {
            scan_id: 42,
            kind: FaultKind::InvalidPlan,
            slice: 0,
            coil: 0,
            ky: 0,
            detail: 3
        })]
    );
}

/// The readout window is checked like the decoder checks it: a plan whose `ScanStart` the
/// edge would refuse never starts. `detail` is `kx_count` for a bad window, `n_x` for a
/// bad grid.
#[test]
fn an_invalid_readout_window_is_refused_with_a_fault() {
    for (n_x, kx_first, kx_count, detail) in [
        (64, 0, 0, 0),                        // empty window
        (64, 17, 48, 48),                     // leaves the grid
        (128, 0, N as u16 + 1, N as u32 + 1), // above the bridge's capacity
        (513, 0, 48, 513),                    // grid above MAX_N_X
    ] {
        let mut scan = scan16();
        (scan.n_x, scan.kx_first, scan.kx_count) = (n_x, kx_first, kx_count);
        let (r, bytes, model) = run::<8192>(&scan, vec![], SimLink::new(64, 1));
        assert!(!r.unwrap().started);
        let (frames, errors) = decode(&bytes);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            matches!(frames[..], [Frame::Fault(Fault { kind: FaultKind::InvalidPlan, detail: d, .. })] if d == detail),
            "{n_x} {kx_first} {kx_count}: {frames:?}"
        );
        assert!(
            model.borrow().samples_read.iter().all(|&n| n == 0),
            "no readout"
        );
    }
    // The widest valid window still runs.
    let full = Scan::rows(&[0, 1], 64, 0, 64);
    let (r, bytes, _) = run::<8192>(&full, vec![], SimLink::new(64, 1));
    assert_eq!(r.unwrap().lines_sent, 2);
    let (frames, errors) = decode(&bytes);
    assert!(errors.is_empty(), "{errors:?}");
    check_stream(&full, &frames, &[], EndStatus::Complete, 2);
}

/// The RAM cost stated in the docs: line buffer + encoder scratch + queue + a little state.
#[test]
fn bridge_ram_cost_is_as_documented() {
    const E256: usize = sparsemap_wire::max_encoded_len(256);
    assert_eq!(E256, 2083);
    let size = std::mem::size_of::<Bridge<SimSpi, SimDrdy, SimTrigger, SimLink, 256, E256, 8192>>();
    let line = std::mem::size_of::<sparsemap_wire::Line<256>>();
    assert!(line <= 8 * 256 + 32, "Line<256> is {line} bytes");
    let buffers = line + E256 + 8192;
    let peripherals = 3 * std::mem::size_of::<usize>() + std::mem::size_of::<SimLink>();
    assert!(
        size >= buffers && size <= buffers + peripherals + 160,
        "{size} bytes"
    );
}
