//! Cross-crate end-to-end tests live in `tests/tests/`; this library holds what they share.

use ndarray_npy::ReadNpyExt;
use num_complex::Complex64;
use std::fs::File;
use std::path::Path;

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
