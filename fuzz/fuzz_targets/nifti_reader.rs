//! Arbitrary bytes into the host's NIfTI-1 reader, `Volume::from_bytes` (the function
//! `Volume::load` reads files with; no file I/O here).
//!
//! The first byte picks the mode, the rest is the input:
//! * 0 — the bytes as a `.nii`;
//! * 1 — the bytes as a `.nii.gz` (so the gzip decoder gets arbitrary input);
//! * 2 — the bytes gzip-compressed here, as a `.nii.gz`: the NIfTI parser behind the gzip
//!   layer, and a differential check — the compressed and the plain reading of the same bytes
//!   must both succeed with the same volume, or both fail.
//!
//! Checks: no panic (nor abort: every allocation is bounded before it happens); an error is
//! one line starting with the name; a volume has `n_i·n_j·n_k` finite values, sides within
//! `MAX_DIM`, 1 mm voxels, a finite origin and the name as its source.
#![no_main]

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use sparsemap_host::volume::{Volume, MAX_DIM, MAX_VOXELS, VOXEL_TOLERANCE_MM};

const PLAIN: &str = "fuzz.nii";
const GZ: &str = "fuzz.nii.gz";

fn read(bytes: &[u8], gz: bool) -> Result<Volume, String> {
    let name = if gz { GZ } else { PLAIN };
    match Volume::from_bytes(bytes, name, gz) {
        Ok(v) => {
            let dims = v.dims();
            assert!(dims.iter().all(|&d| (1..=MAX_DIM).contains(&d)), "{dims:?}");
            assert!(dims.iter().product::<usize>() <= MAX_VOXELS);
            assert_eq!(v.data().len(), dims.iter().product::<usize>());
            assert!(v.data().iter().all(|x| x.is_finite()));
            assert!(
                v.origin_mm().iter().all(|x| x.is_finite()),
                "{:?}",
                v.origin_mm()
            );
            assert!(v
                .voxel_mm()
                .iter()
                .all(|s| (s - 1.0).abs() <= VOXEL_TOLERANCE_MM));
            assert_eq!(v.source(), std::path::Path::new(name));
            Ok(v)
        }
        Err(e) => {
            let text = format!("{e:#}");
            assert!(text.starts_with(&format!("{name}: ")), "{text}");
            assert!(!text.contains('\n'), "{text}");
            Err(text)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = read(bytes, false);
        }
        1 => {
            let _ = read(bytes, true);
        }
        _ => {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(bytes).expect("writing to a Vec");
            let gz = e.finish().expect("writing to a Vec");
            match (read(bytes, false), read(&gz, true)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.dims(), b.dims());
                    assert_eq!(a.origin_mm(), b.origin_mm());
                    assert_eq!(a.data(), b.data());
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("plain and gzip readings disagree: {a:?} / {b:?}"),
            }
        }
    }
});
