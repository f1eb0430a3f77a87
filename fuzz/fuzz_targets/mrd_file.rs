//! Arbitrary bytes as an MRD/ISMRMRD HDF5 file (`recon --input scan.h5`,
//! crates/edge/src/mrd.rs, through the pure-Rust hdf5-reader): the bytes are written to a
//! file in a temporary directory of this process and read with `mrd::read_mrd`.
//!
//! Checks: no panic (in our reader or in hdf5-reader); an error names the file; every slice
//! delivered has k-space and mask of its declared size with finite samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsemap_edge::ingest::Event;
use std::path::PathBuf;
use std::sync::OnceLock;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sparsemap-fuzz-mrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("fuzz.h5")
    })
}

fuzz_target!(|input: &[u8]| {
    let path = path();
    std::fs::write(path, input).unwrap();
    let result = sparsemap_edge::mrd::read_mrd(path, &mut |event| {
        if let Event::Slice(job) = event {
            let s = job.start;
            let n = usize::from(s.n_coils) * usize::from(s.n_y) * usize::from(s.n_x);
            assert_eq!(job.kspace.len(), n);
            assert_eq!(job.mask.len(), n);
            assert!(job.kspace.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
        }
        Ok(())
    });
    if let Err(e) = result {
        let text = format!("{e:#}");
        assert!(text.contains("fuzz.h5"), "error does not name the file: {text}");
    }
});
