//! The committed example stream `tests/fixtures/wire/colin27_axial.smw` (made by the
//! `record_scan` example from `examples/colin27/`) decodes without a single wire error into
//! the 128 sampled rows of `examples/colin27/kspace.npy`, within the 16-bit quantisation
//! error, each line carrying exactly the 128 sampled columns (the readout window).

use std::fs::File;

use ndarray::Array2;
use ndarray_npy::ReadNpyExt;
use num_complex::Complex32;
use sparsemap_wire::{EndStatus, Frame, FrameReader, Samples};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn colin27_stream_decodes_into_the_sampled_kspace() {
    let kspace = Array2::<Complex32>::read_npy(
        File::open(format!("{ROOT}/examples/colin27/kspace.npy")).unwrap(),
    )
    .unwrap();
    let mask =
        Array2::<u8>::read_npy(File::open(format!("{ROOT}/examples/colin27/mask.npy")).unwrap())
            .unwrap();
    let stream = File::open(format!("{ROOT}/tests/fixtures/wire/colin27_axial.smw")).unwrap();
    assert!(
        stream.metadata().unwrap().len() < 1 << 20,
        "keep the fixture under 1 MB"
    );

    let frames: Vec<Frame> = FrameReader::<_>::new(std::io::BufReader::new(stream))
        .map(|r| r.expect("no wire errors in the recorded stream"))
        .collect();

    let Frame::ScanStart(start) = &frames[0] else {
        panic!("first frame {:?}", frames[0])
    };
    assert_eq!(
        (start.n_y, start.n_x, start.n_coils, start.n_slices),
        (256, 256, 1, 1)
    );
    // The block mask samples columns 64..192 of every sampled row: that is the window.
    assert_eq!((start.kx_first, start.kx_count), (64, 128));
    let first = usize::from(start.kx_first);
    let window = first..first + usize::from(start.kx_count);
    assert_eq!(start.scan_id, 27);
    let Some(Frame::ScanEnd(end)) = frames.last() else {
        panic!("last frame")
    };
    assert_eq!((end.lines_sent, end.status), (128, EndStatus::Complete));

    let lines: Vec<_> = frames[1..frames.len() - 1]
        .iter()
        .map(|f| match f {
            Frame::Line(l) => l,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(lines.len(), 128);
    let sampled_rows: Vec<u16> = (0..256u16)
        .filter(|&ky| mask.row(ky as usize).iter().any(|&m| m != 0))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.ky).collect::<Vec<_>>(),
        sampled_rows,
        "one line per sampled row"
    );
    assert_eq!(sampled_rows, (64..192).collect::<Vec<u16>>());

    let mut worst = 0.0f32;
    let mut scale0 = None;
    for (seq, l) in lines.iter().enumerate() {
        assert_eq!(l.seq, seq as u32);
        let Samples::I16 { scale, iq } = &l.samples else {
            panic!("16-bit samples")
        };
        assert_eq!(iq.len(), 128);
        assert_eq!(*scale0.get_or_insert(*scale), *scale, "one scale per scan");
        for kx in 0..256 {
            // Outside the window nothing is measured, and the mask agrees.
            assert_eq!(
                mask[[l.ky as usize, kx]] != 0,
                window.contains(&kx),
                "ky {} kx {kx}: mask vs window",
                l.ky
            );
            if !window.contains(&kx) {
                continue;
            }
            let want = kspace[[l.ky as usize, kx]];
            let [re, im] = l.samples.get(kx - first).unwrap();
            let tol = 0.5 * scale * (1.0 + 1e-4) + 1e-6 * want.norm();
            let err = (re - want.re).abs().max((im - want.im).abs());
            assert!(
                err <= tol,
                "ky {} kx {kx}: {re}+{im}j vs {want} (err {err}, tol {tol})",
                l.ky
            );
            worst = worst.max(err / scale);
        }
    }
    // Quantisation is actually exercised (not a trivially exact stream).
    assert!(worst > 0.25, "worst error {worst} LSB");
}
