//! Cross-crate end-to-end tests live in `tests/tests/`; this library holds what they share.

use ndarray_npy::ReadNpyExt;
use num_complex::Complex64;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Reads a fixture `.npy`, panicking with the file's name on any error.
pub fn read_npy<A: ReadNpyExt>(path: &Path) -> A {
    A::read_npy(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `||a - b|| / ||b||` (l2 over all samples).
pub fn relative_error(a: &[Complex64], b: &[Complex64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).norm_sqr()).sum();
    let den: f64 = b.iter().map(|y| y.norm_sqr()).sum();
    (num / den).sqrt()
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<profile>/sparsemap`, built by `cargo test --workspace` for the edge crate's own
/// tests.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("sparsemap");
    assert!(
        bin.exists(),
        "{} is missing: run these tests with `cargo test --workspace` (or build -p sparsemap-edge first)",
        bin.display()
    );
    bin
}
