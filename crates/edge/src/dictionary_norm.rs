//! The dictionary normalisation the Lambda units assume (docs/design.md §4.1): `L = 1` over
//! all frequencies of a 256² grid, `L = max_w sum_k |h_k(w)|²`, as `models/sparsemap_train/cdl.py`
//! scales every bundled dictionary. A dictionary off by more than [`TOLERANCE`] would make
//! every sparsity level mean something else (too small a scale thresholds everything and
//! leaves a low-pass-only image), so it is rescaled to `L = 1` with a warning, and its name
//! (which every output file records) says so.

use anyhow::Result;
use ndarray::Array3;
use num_complex::Complex32;
use rustfft::FftPlanner;

/// Grid on which `L` is evaluated (that of `cdl.py`'s `NORMALISE_GRID`).
pub const NORMALISE_GRID: usize = 256;
/// Relative deviation of `L` from 1 that is accepted as normalised (the DCT dictionaries are
/// scaled on a finer grid; their `L` here is within 1e-3 of 1).
pub const TOLERANCE: f64 = 0.01;

/// `max_w sum_k |h_k(w)|²` over the frequencies of a `NORMALISE_GRID`² grid.
pub fn lipschitz_all(filters: &Array3<f32>) -> f64 {
    let n = NORMALISE_GRID;
    let (count, side, _) = filters.dim();
    let mut planner = FftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(n);
    let mut power = vec![0f64; n * n];
    let mut grid = vec![Complex32::default(); n * n];
    let mut column = vec![Complex32::default(); n];
    for k in 0..count {
        grid.iter_mut().for_each(|v| *v = Complex32::default());
        // |DFT| does not depend on where the taps sit in the grid.
        for y in 0..side {
            for x in 0..side {
                grid[y * n + x] = Complex32::new(filters[[k, y, x]], 0.0);
            }
        }
        // Rows holding taps, then every column.
        for row in grid.chunks_exact_mut(n).take(side) {
            fft.process(row);
        }
        for x in 0..n {
            for y in 0..n {
                column[y] = grid[y * n + x];
            }
            fft.process(&mut column);
            for y in 0..n {
                power[y * n + x] += f64::from(column[y].norm_sqr());
            }
        }
    }
    power.into_iter().fold(0.0, f64::max)
}

/// Rescales `filters` to `L = 1` when `L` is off by more than [`TOLERANCE`]; returns the name
/// to record (with the factor applied) and the warning to print, if any.
pub fn normalise(filters: &mut Array3<f32>, name: &str) -> Result<(String, Option<String>)> {
    let lipschitz = lipschitz_all(filters);
    if !(lipschitz.is_finite() && lipschitz > 0.0) {
        anyhow::bail!(
            "dictionary {name}: its filters have no energy or overflow (L = {lipschitz:e} over all frequencies)"
        );
    }
    if (lipschitz - 1.0).abs() <= TOLERANCE {
        return Ok((name.to_string(), None));
    }
    let factor = 1.0 / lipschitz.sqrt();
    filters.mapv_inplace(|v| (f64::from(v) * factor) as f32);
    let warning = format!(
        "dictionary {name} is not normalised as documented (L = {lipschitz:.6} over all frequencies of a {NORMALISE_GRID}x{NORMALISE_GRID} grid, expected 1): its filters were scaled by {factor:.6}"
    );
    Ok((
        format!("{name} (normalised to L = 1: filters scaled by {factor:.6})"),
        Some(warning),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled(bytes: &[u8]) -> Array3<f32> {
        crate::npy::dictionary_from_bytes(bytes).unwrap()
    }

    #[test]
    fn bundled_dictionaries_are_normalised() {
        for bytes in [
            crate::BUNDLED_DICTIONARY,
            crate::learned::BUNDLED_MODEL_DICTIONARY,
        ] {
            let d = bundled(bytes);
            let l = lipschitz_all(&d);
            assert!((l - 1.0).abs() <= TOLERANCE, "L = {l}");
            let mut copy = d.clone();
            let (name, warning) = normalise(&mut copy, "x").unwrap();
            assert_eq!(name, "x");
            assert!(warning.is_none());
            assert_eq!(copy, d, "a normalised dictionary is left bit for bit");
        }
    }

    #[test]
    fn a_scaled_dictionary_is_brought_back_to_unit_lipschitz() {
        let original = bundled(crate::BUNDLED_DICTIONARY);
        for factor in [1e-3f32, 0.5, 7.0] {
            let mut d = original.mapv(|v| v * factor);
            let (name, warning) = normalise(&mut d, "scaled").unwrap();
            assert!(name.contains("normalised"), "{name}");
            assert!(warning.unwrap().contains("scaled"));
            let l = lipschitz_all(&d);
            assert!((l - 1.0).abs() < 1e-4, "after normalising L = {l}");
            let err = (&d - &original).mapv(f32::abs).fold(0f32, |a, &b| a.max(b));
            assert!(err < 1e-5, "max tap difference {err}");
        }
    }

    #[test]
    fn an_all_zero_dictionary_is_refused() {
        let mut d = Array3::<f32>::zeros((4, 3, 3));
        assert!(normalise(&mut d, "zeros")
            .unwrap_err()
            .to_string()
            .contains("zeros"));
    }
}
