//! Image-quality numbers the runtime can print when a reference image is at hand. The host
//! crate holds the full, scikit-image-checked metric suite; this is the one-line summary.

use num_complex::Complex32;

/// PSNR in dB of `|image|` against `|reference|`, with the peak taken as `max |reference|`
/// (both magnitudes, no further normalisation; images on the same scale as `F^H y`):
/// `20 log10(max|ref| / sqrt(mean((|x| - |ref|)²)))`. `None` for empty or mismatched inputs
/// or an all-zero reference.
pub fn psnr_magnitude(image: &[Complex32], reference: &[Complex32]) -> Option<f64> {
    if image.is_empty() || image.len() != reference.len() {
        return None;
    }
    let peak = reference
        .iter()
        .map(|v| v.norm() as f64)
        .fold(0.0, f64::max);
    let mse = image
        .iter()
        .zip(reference)
        .map(|(a, b)| (a.norm() as f64 - b.norm() as f64).powi(2))
        .sum::<f64>()
        / image.len() as f64;
    if peak <= 0.0 {
        return None;
    }
    Some(20.0 * (peak / mse.sqrt()).log10())
}
