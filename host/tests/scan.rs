//! `simulate-scan` (`sparsemap_host::scan`): the stream decodes with `sparsemap_wire` into
//! exactly the sampled k-space, and with injected faults the decoder reports what the
//! `FaultLog` says and never loses a line that was sent intact.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::sync::OnceLock;

use ndarray::{Array2, Array3, Axis};
use ndarray_npy::ReadNpyExt;
use num_complex::Complex32;
use proptest::prelude::*;
use sparsemap_host::scan::{
    line_plan, simulate_scan, FaultLog, FaultSpec, SampleFormat, ScanSpec, REORDER_DISTANCE,
};
use sparsemap_host::simulate::{simulate_stack, Acquisition, MaskKind};
use sparsemap_wire::{
    Decoder, EndStatus, Error, Frame, FrameReader, Line, ReadError, Samples, ScanEnd, ScanStart,
    VERSION,
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn spec(samples: SampleFormat) -> ScanSpec {
    ScanSpec {
        scan_id: 41,
        field_mt: 47.0,
        fov_mm: [220.0, 200.0],
        samples,
    }
}

/// A simulated stack (`[S][n][n]`) with per-slice random VD masks.
fn stack(slices: usize, n: usize, seed: u64) -> (Array3<Complex32>, Array3<bool>) {
    let targets = Array3::from_shape_fn((slices, n, n), |(s, y, x)| {
        let u = (y as f32 - n as f32 / 2.0) / (n as f32 / 2.0);
        let v = (x as f32 - n as f32 / 2.0) / (n as f32 / 2.0);
        let m = if u * u + v * v < 0.6 {
            1.0 + s as f32
        } else {
            0.0
        };
        Complex32::from_polar(m, 0.3 * u)
    });
    let acq = Acquisition {
        mask: MaskKind::VariableDensity1d {
            acceleration: 2.0,
            centre_lines: 4,
        },
        noise: 0.1,
        seed,
    };
    let (kspace, masks, _, _) = simulate_stack(targets.view(), &acq, |_| {}).unwrap();
    (kspace, masks)
}

/// Everything a decoder reports, in order, feeding `bytes` in chunks of `chunk` bytes.
fn decode(bytes: &[u8], chunk: usize) -> Vec<Result<Frame, Error>> {
    let mut decoder: Box<Decoder> = Box::default();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.feed_all(piece, |r| out.push(r));
    }
    while let Some(r) = decoder.finish() {
        out.push(r);
    }
    out
}

/// What a decode delivered and reported.
#[derive(Debug, Default)]
struct Outcome {
    start: Vec<ScanStart>,
    end: Vec<ScanEnd>,
    /// Delivered lines by `seq` (a `Vec` to catch double delivery).
    lines: BTreeMap<u32, Vec<Line>>,
    crc: usize,
    duplicates: Vec<u32>,
    gaps: BTreeSet<u32>,
    incomplete: Vec<(u32, u32)>,
    other: Vec<Error>,
}

/// The lines delivered from the fault-free stream of `kspace`: what every faulted stream is
/// compared with.
fn fault_free_lines(
    kspace: &Array3<Complex32>,
    masks: &Array3<bool>,
    format: SampleFormat,
) -> BTreeMap<u32, Vec<Line>> {
    let (clean, _) = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(format),
        &FaultSpec::none(),
    )
    .unwrap();
    outcome(decode(&clean, 4096)).lines
}

fn outcome(events: Vec<Result<Frame, Error>>) -> Outcome {
    let mut o = Outcome::default();
    for event in events {
        match event {
            Ok(Frame::ScanStart(s)) => o.start.push(s),
            Ok(Frame::ScanEnd(e)) => o.end.push(e),
            Ok(Frame::Line(l)) => o.lines.entry(l.seq).or_default().push(l),
            Ok(Frame::Fault(f)) => panic!("unexpected fault frame {f:?}"),
            Err(Error::Crc { .. }) => o.crc += 1,
            Err(Error::Duplicate { seq: Some(s), .. }) => o.duplicates.push(s),
            Err(Error::SequenceGap { expected, got }) => o.gaps.extend(expected..got),
            Err(Error::Incomplete {
                lines_sent,
                lines_received,
                ..
            }) => o.incomplete.push((lines_sent, lines_received)),
            Err(e) => o.other.push(e),
        }
    }
    o
}

/// The sample of `l` at `kx` as a complex number.
fn sample(l: &Line, kx: usize) -> Complex32 {
    let [re, im] = l.samples.get(kx).unwrap();
    Complex32::new(re, im)
}

#[test]
fn colin27_scan_is_byte_identical_to_the_firmware_recording() {
    // tests/fixtures/wire/colin27_axial.smw was recorded through the firmware's state machine
    // (firmware/examples/record_scan.rs, scan 27, 50 mT, FOV 256 mm) from the same data.
    let kspace = Array2::<Complex32>::read_npy(
        File::open(format!("{ROOT}/examples/colin27/kspace.npy")).unwrap(),
    )
    .unwrap();
    let mask =
        Array2::<u8>::read_npy(File::open(format!("{ROOT}/examples/colin27/mask.npy")).unwrap())
            .unwrap();
    let spec = ScanSpec {
        scan_id: 27,
        field_mt: 50.0,
        fov_mm: [256.0, 256.0],
        samples: SampleFormat::I16,
    };
    let (bytes, log) = simulate_scan(
        kspace.view().insert_axis(Axis(0)),
        mask.mapv(|m| m != 0).view().insert_axis(Axis(0)),
        &spec,
        &FaultSpec::none(),
    )
    .unwrap();
    let recorded = std::fs::read(format!("{ROOT}/tests/fixtures/wire/colin27_axial.smw")).unwrap();
    assert_eq!(bytes.len(), recorded.len());
    assert!(
        bytes == recorded,
        "stream differs from the firmware recording"
    );
    assert_eq!((log.lines_sent, log.lines_intact), (128, 128));
}

#[test]
fn without_faults_every_sampled_row_arrives_once_within_half_a_code() {
    let (kspace, masks) = stack(3, 64, 5);
    let plan = line_plan(masks.view());
    let (bytes, log) = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::I16),
        &FaultSpec::none(),
    )
    .unwrap();
    assert_eq!(log.lines_sent as usize, plan.len());
    assert_eq!(log.counts, Default::default());

    // Through the std reader too: no wire errors at all.
    let frames: Vec<Frame> = FrameReader::<_>::new(&bytes[..])
        .map(|r| match r {
            Ok(f) => f,
            Err(ReadError::Wire(e)) => panic!("wire error {e}"),
            Err(ReadError::Io(e)) => panic!("{e}"),
        })
        .collect();
    assert_eq!(frames.len(), plan.len() + 2);
    let Frame::ScanStart(start) = frames[0] else {
        panic!("{:?}", frames[0])
    };
    assert_eq!(
        start,
        ScanStart {
            version: VERSION,
            scan_id: 41,
            n_y: 64,
            n_x: 64,
            n_coils: 1,
            n_slices: 3,
            field_mt: 47.0,
            fov_mm: [220.0, 200.0],
            // Row masks sample whole rows: the window is the grid.
            kx_first: 0,
            kx_count: 64,
        }
    );
    let Some(Frame::ScanEnd(end)) = frames.last() else {
        panic!("last frame")
    };
    assert_eq!(
        *end,
        ScanEnd {
            scan_id: 41,
            lines_sent: plan.len() as u32,
            status: EndStatus::Complete
        }
    );

    let peak = kspace
        .iter()
        .zip(masks.iter())
        .filter(|(_, &m)| m)
        .fold(0.0f32, |p, (v, _)| p.max(v.re.abs()).max(v.im.abs()));
    let mut seen = BTreeSet::new();
    let mut max_code = 0i32;
    let mut worst = 0.0f32;
    for (seq, frame) in frames[1..frames.len() - 1].iter().enumerate() {
        let Frame::Line(l) = frame else {
            panic!("{frame:?}")
        };
        assert_eq!((l.scan_id, l.seq, l.coil), (41, seq as u32, 0));
        assert_eq!((l.slice, l.ky), (plan[seq].slice, plan[seq].ky));
        assert!(seen.insert((l.slice, l.ky)), "row sent twice");
        let Samples::I16 { scale, iq } = &l.samples else {
            panic!("i16 samples")
        };
        assert_eq!(*scale, peak / 32767.0, "one scale per scan");
        assert_eq!(iq.len(), 64);
        let (s, ky) = (usize::from(l.slice), usize::from(l.ky));
        for kx in 0..64 {
            let got = sample(l, kx);
            if masks[[s, ky, kx]] {
                let want = kspace[[s, ky, kx]];
                let err = (got.re - want.re).abs().max((got.im - want.im).abs());
                worst = worst.max(err / scale);
                assert!(
                    err <= 0.5 * scale * (1.0 + 1e-3),
                    "({s}, {ky}, {kx}): {got} vs {want}"
                );
            } else {
                assert_eq!(got, Complex32::new(0.0, 0.0), "off-mask sample");
            }
            max_code = max_code.max(i32::from(iq[kx][0]).abs().max(i32::from(iq[kx][1]).abs()));
        }
    }
    assert_eq!(max_code, 32767, "the largest component maps to full scale");
    println!("{} lines, worst error {worst:.3} codes", plan.len());
    // Exactly the rows with a sampled entry, for every slice.
    for (s, mask) in masks.axis_iter(Axis(0)).enumerate() {
        for (ky, row) in mask.axis_iter(Axis(0)).enumerate() {
            assert_eq!(
                seen.contains(&(s as u16, ky as u16)),
                row.iter().any(|&m| m),
                "slice {s} row {ky}"
            );
        }
    }
}

#[test]
fn f32_samples_are_exact() {
    let (kspace, masks) = stack(2, 32, 9);
    let (bytes, _) = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::F32),
        &FaultSpec::none(),
    )
    .unwrap();
    let o = outcome(decode(&bytes, 7));
    assert!(o.other.is_empty() && o.crc == 0 && o.gaps.is_empty() && o.incomplete.is_empty());
    assert_eq!(o.lines.len(), line_plan(masks.view()).len());
    for copies in o.lines.values() {
        assert_eq!(copies.len(), 1);
        let l = &copies[0];
        assert!(matches!(l.samples, Samples::F32 { .. }));
        let (s, ky) = (usize::from(l.slice), usize::from(l.ky));
        for kx in 0..32 {
            let want = if masks[[s, ky, kx]] {
                kspace[[s, ky, kx]]
            } else {
                Complex32::new(0.0, 0.0)
            };
            assert_eq!(sample(l, kx), want);
        }
    }
}

/// The decoder's report against the log: lost lines never delivered, every other line
/// delivered once and equal to the fault-free stream's line, one CRC error per corrupted
/// line, one duplicate per duplicated line, gaps covering the lost lines, `Incomplete`
/// exactly when something was lost.
fn check_against_log(o: &Outcome, log: &FaultLog, reference: &BTreeMap<u32, Vec<Line>>) {
    assert!(o.other.is_empty(), "unexpected errors {:?}", o.other);
    assert_eq!(o.start.len(), 1);
    assert_eq!(o.end.len(), 1, "ScanEnd delivered");
    assert_eq!(o.end[0].lines_sent, log.lines_sent);
    assert_eq!(o.crc, log.corrupted.len(), "CRC errors");
    let mut duplicates = o.duplicates.clone();
    duplicates.sort_unstable();
    assert_eq!(duplicates, log.duplicated, "duplicates");

    let lost: BTreeSet<u32> = log.lost().into_iter().collect();
    assert_eq!(lost.len() as u32, log.lines_sent - log.lines_intact);
    for seq in 0..log.lines_sent {
        match (lost.contains(&seq), o.lines.get(&seq)) {
            (true, None) => {}
            (true, Some(_)) => panic!("lost line {seq} delivered"),
            (false, None) => panic!("intact line {seq} not delivered"),
            (false, Some(copies)) => {
                assert_eq!(
                    copies.len(),
                    1,
                    "line {seq} delivered {} times",
                    copies.len()
                );
                assert_eq!(copies[0], reference[&seq][0], "line {seq} content");
            }
        }
    }
    let last_delivered = o.lines.keys().next_back().copied();
    for &seq in &lost {
        if last_delivered.is_some_and(|last| seq < last) {
            assert!(
                o.gaps.contains(&seq),
                "lost line {seq} not reported as a gap"
            );
        }
    }
    if lost.is_empty() {
        assert!(o.incomplete.is_empty());
    } else {
        assert_eq!(o.incomplete, vec![(log.lines_sent, log.lines_intact)]);
    }
}

#[test]
fn faults_are_reported_as_logged() {
    let (kspace, masks) = stack(4, 64, 13);
    for format in [SampleFormat::I16, SampleFormat::F32] {
        let reference = fault_free_lines(&kspace, &masks, format);
        let faults = FaultSpec {
            drop: 0.05,
            duplicate: 0.05,
            reorder: 0.1,
            corrupt: 0.05,
            seed: 3,
        };
        let (bytes, log) =
            simulate_scan(kspace.view(), masks.view(), &spec(format), &faults).unwrap();
        let lines = f64::from(log.lines_sent);
        let round = |f: f64| (f * lines).round() as u32;
        assert_eq!(log.counts.dropped, round(0.05));
        assert_eq!(log.counts.duplicated, round(0.05));
        assert_eq!(log.counts.corrupted, round(0.05));
        assert!(log.counts.reordered > 0 && log.counts.reordered <= round(0.1));
        assert_eq!(log.counts.dropped as usize, log.dropped.len());
        assert_eq!(log.counts.reordered as usize, log.reordered.len());
        println!(
            "{format}: {} lines, {} bytes, faults {:?}",
            log.lines_sent,
            bytes.len(),
            log.counts
        );

        // Kinds never overlap; swaps are short and with plain lines.
        let mut all: Vec<u32> = log
            .dropped
            .iter()
            .chain(&log.duplicated)
            .chain(&log.corrupted)
            .copied()
            .chain(log.reordered.iter().flat_map(|s| [s.seq, s.with]))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a line hit by two faults");
        for s in &log.reordered {
            assert!(
                s.seq < s.with && s.with <= s.seq + REORDER_DISTANCE,
                "{s:?}"
            );
        }

        for chunk in [1, 64, 5000] {
            let o = outcome(decode(&bytes, chunk));
            check_against_log(&o, &log, &reference);
            // Both lines of every swap arrive, once.
            for s in &log.reordered {
                assert_eq!(o.lines[&s.seq].len(), 1);
                assert_eq!(o.lines[&s.with].len(), 1);
            }
        }
    }
}

#[test]
fn every_frame_corrupted_or_dropped_leaves_start_and_end() {
    let (kspace, masks) = stack(1, 32, 2);
    for (drop, corrupt) in [(0.0, 1.0), (1.0, 0.0)] {
        let faults = FaultSpec {
            drop,
            corrupt,
            ..FaultSpec::none()
        };
        let (bytes, log) = simulate_scan(
            kspace.view(),
            masks.view(),
            &spec(SampleFormat::I16),
            &faults,
        )
        .unwrap();
        assert_eq!(log.lines_intact, 0);
        let o = outcome(decode(&bytes, 100));
        assert!(o.other.is_empty(), "{:?}", o.other);
        assert!(o.lines.is_empty());
        assert_eq!(o.crc, log.corrupted.len());
        assert_eq!(o.start.len(), 1);
        assert_eq!(o.end.len(), 1, "decoder back in sync for ScanEnd");
        assert_eq!(o.incomplete, vec![(log.lines_sent, 0)]);
    }
}

/// A block mask sends only its columns (the readout window); a 2-D Poisson-disc mask, whose
/// sampled rows sample scattered columns, cannot be acquired line by line and is refused.
#[test]
fn block_masks_send_their_window_and_2d_masks_are_refused() {
    let targets = Array3::from_shape_fn((2, 32, 32), |(s, y, x)| {
        Complex32::new((y * 32 + x) as f32 / 1024.0 + s as f32, 0.5)
    });
    let acquisition = |mask| Acquisition {
        mask,
        noise: 0.0,
        seed: 3,
    };
    let (kspace, masks, _, _) = simulate_stack(
        targets.view(),
        &acquisition(MaskKind::CentralBlock { size: 12 }),
        |_| {},
    )
    .unwrap();
    let (bytes, log) = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::F32),
        &FaultSpec::none(),
    )
    .unwrap();
    assert_eq!(log.lines_sent, 2 * 12);
    let o = outcome(decode(&bytes, 4096));
    assert!(o.other.is_empty(), "{:?}", o.other);
    assert_eq!((o.start[0].kx_first, o.start[0].kx_count), (10, 12));
    for copies in o.lines.values() {
        let l = &copies[0];
        assert_eq!(l.samples.len(), 12, "only the window's columns travel");
        let (s, ky) = (usize::from(l.slice), usize::from(l.ky));
        for k in 0..12 {
            assert!(masks[[s, ky, 10 + k]]);
            assert_eq!(sample(l, k), kspace[[s, ky, 10 + k]]);
        }
    }

    let (kspace, masks, _, _) = simulate_stack(
        targets.view(),
        &acquisition(MaskKind::PoissonDisc2d {
            acceleration: 3.0,
            centre: 8,
        }),
        |_| {},
    )
    .unwrap();
    let err = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::I16),
        &FaultSpec::none(),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("not acquirable line by line"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    // Two rows sampling different columns of the same window are refused too.
    let mut masks = Array3::from_elem((1, 4, 8), false);
    masks[[0, 0, 2]] = true;
    masks[[0, 0, 3]] = true;
    masks[[0, 1, 3]] = true;
    let kspace = Array3::<Complex32>::zeros((1, 4, 8));
    let none = FaultSpec::none();
    assert!(simulate_scan(kspace.view(), masks.view(), &spec(SampleFormat::F32), &none).is_err());
    masks[[0, 1, 2]] = true;
    assert!(simulate_scan(kspace.view(), masks.view(), &spec(SampleFormat::F32), &none).is_ok());
}

#[test]
fn fault_log_serialises() {
    let (kspace, masks) = stack(1, 32, 4);
    let faults = FaultSpec {
        drop: 0.1,
        duplicate: 0.1,
        reorder: 0.2,
        corrupt: 0.1,
        seed: 8,
    };
    let (_, log) = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::I16),
        &faults,
    )
    .unwrap();
    let json = serde_json::to_string(&log).unwrap();
    assert_eq!(serde_json::from_str::<FaultLog>(&json).unwrap(), log);
    let spec_json = serde_json::to_string(&faults).unwrap();
    assert_eq!(
        serde_json::from_str::<FaultSpec>(&spec_json).unwrap(),
        faults
    );
    // Same seed, same stream; another seed, other faults.
    let again = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::I16),
        &faults,
    )
    .unwrap()
    .1;
    assert_eq!(again, log);
    let other = FaultSpec { seed: 9, ..faults };
    let (_, log9) = simulate_scan(
        kspace.view(),
        masks.view(),
        &spec(SampleFormat::I16),
        &other,
    )
    .unwrap();
    assert_ne!(log9.lost(), log.lost());
    assert_eq!("f32".parse::<SampleFormat>().unwrap(), SampleFormat::F32);
    assert_eq!(SampleFormat::I16.to_string(), "i16");
    assert!("i8".parse::<SampleFormat>().is_err());
}

#[test]
fn bad_input_is_an_error() {
    let (kspace, masks) = stack(2, 32, 1);
    let none = FaultSpec::none();
    let i16 = spec(SampleFormat::I16);
    // Shape mismatch.
    let fewer = masks.slice(ndarray::s![..1, .., ..]);
    assert!(simulate_scan(kspace.view(), fewer, &i16, &none).is_err());
    // n_x above the wire maximum.
    let wide = Array3::<Complex32>::zeros((1, 4, 1024));
    let wide_mask = Array3::from_elem((1, 4, 1024), true);
    let err = simulate_scan(wide.view(), wide_mask.view(), &i16, &none).unwrap_err();
    println!("{err:#}");
    // Non-finite sampled k-space is an error; off the mask it is ignored.
    let (y, x) = masks
        .index_axis(Axis(0), 0)
        .indexed_iter()
        .find(|&(_, &m)| m)
        .map(|(i, _)| i)
        .unwrap();
    let mut bad = kspace.clone();
    bad[[0, y, x]] = Complex32::new(f32::NAN, 0.0);
    assert!(simulate_scan(bad.view(), masks.view(), &i16, &none).is_err());
    let (y, x) = masks
        .index_axis(Axis(0), 0)
        .indexed_iter()
        .find(|&(_, &m)| !m)
        .map(|(i, _)| i)
        .unwrap();
    let mut off = kspace.clone();
    off[[0, y, x]] = Complex32::new(f32::INFINITY, 0.0);
    assert!(simulate_scan(off.view(), masks.view(), &i16, &none).is_ok());
    // Fractions.
    for f in [-0.1, 1.1, f64::NAN] {
        for faults in [
            FaultSpec { drop: f, ..none },
            FaultSpec {
                duplicate: f,
                ..none
            },
            FaultSpec { reorder: f, ..none },
            FaultSpec { corrupt: f, ..none },
        ] {
            assert!(simulate_scan(kspace.view(), masks.view(), &i16, &faults).is_err());
        }
    }
    let too_many = FaultSpec {
        drop: 0.6,
        corrupt: 0.6,
        ..none
    };
    assert!(simulate_scan(kspace.view(), masks.view(), &i16, &too_many).is_err());
    // Nothing sampled, empty stack, non-finite geometry.
    let nothing = Array3::from_elem(masks.dim(), false);
    assert!(simulate_scan(kspace.view(), nothing.view(), &i16, &none).is_err());
    let empty = Array3::<Complex32>::zeros((0, 32, 32));
    let empty_mask = Array3::from_elem((0, 32, 32), false);
    assert!(simulate_scan(empty.view(), empty_mask.view(), &i16, &none).is_err());
    let nan_field = ScanSpec {
        field_mt: f32::NAN,
        ..i16
    };
    assert!(simulate_scan(kspace.view(), masks.view(), &nan_field, &none).is_err());
}

/// k-space, masks and the fault-free stream's lines by `seq`.
type Fixture = (Array3<Complex32>, Array3<bool>, BTreeMap<u32, Vec<Line>>);

/// Three slices of 32×32 with random VD masks and the fault-free reference lines, per format.
fn fixture(format: SampleFormat) -> &'static Fixture {
    static I16: OnceLock<Fixture> = OnceLock::new();
    static F32: OnceLock<Fixture> = OnceLock::new();
    let cell = match format {
        SampleFormat::I16 => &I16,
        SampleFormat::F32 => &F32,
    };
    cell.get_or_init(|| {
        let (kspace, masks) = stack(3, 32, 21);
        let reference = fault_free_lines(&kspace, &masks, format);
        (kspace, masks, reference)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the faults, every line that was sent intact is delivered exactly once with
    /// its content, and the decoder's report matches the log.
    #[test]
    fn intact_lines_are_never_lost(
        drop in 0.0..0.25f64,
        duplicate in 0.0..0.25f64,
        reorder in 0.0..0.25f64,
        corrupt in 0.0..0.25f64,
        seed in any::<u64>(),
        f32_samples in any::<bool>(),
        chunk in 1usize..3000,
    ) {
        let format = if f32_samples { SampleFormat::F32 } else { SampleFormat::I16 };
        let (kspace, masks, reference) = fixture(format);
        let faults = FaultSpec { drop, duplicate, reorder, corrupt, seed };
        let (bytes, log) = simulate_scan(kspace.view(), masks.view(), &spec(format), &faults).unwrap();
        check_against_log(&outcome(decode(&bytes, chunk)), &log, reference);
    }
}
