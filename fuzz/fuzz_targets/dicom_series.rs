//! Arbitrary bytes as the images of a DICOM series (`sparsemap-host export --user
//! NAME=DIR`, host/src/dicom_series.rs, through dicom-rs): the input is split at its first
//! byte into two files of a temporary directory of this process, read as one series.
//!
//! Checks: no panic (in our reader or in dicom-rs); an error names the directory or a file;
//! a volume read back has finite values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sparsemap-fuzz-dicom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, rest)) = input.split_first() else {
        return;
    };
    let at = (usize::from(cut) * rest.len()) / 255;
    let (a, b) = rest.split_at(at.min(rest.len()));
    let dir = dir();
    // Each file gets the preamble and magic, so the fuzzer spends its bytes on the data set.
    for (name, body) in [("a.dcm", a), ("b.dcm", b)] {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(body);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    match sparsemap_host::dicom_series::load(dir) {
        Ok((volume, _)) => assert!(volume.data().iter().all(|v| v.is_finite())),
        Err(e) => {
            let text = format!("{e:#}");
            assert!(text.contains("sparsemap-fuzz-dicom"), "error names no path: {text}");
        }
    }
});
