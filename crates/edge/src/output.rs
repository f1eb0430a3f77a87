//! Output files (DESIGN §6): complex `.npy`, windowed 8-bit magnitude PNG, and a JSON
//! sidecar that records what made the image.

use anyhow::{Context, Result};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use num_complex::Complex32;
use serde::Serialize;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Percentile of the magnitude mapped to white in PNG output; brighter pixels saturate.
/// Just below the maximum so that a few hot pixels do not darken the whole image.
pub const PNG_WHITE_PERCENTILE: f64 = 0.999;

/// Everything needed to say how an image was made.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub software: String,
    pub dictionary: String,
    pub filters: usize,
    pub filter_side: usize,
    pub lambda: String,
    pub iterations: usize,
    pub lowpass_weight: f32,
    pub fft_backend: String,
    pub scale_c: f32,
    pub lipschitz: f32,
    pub sampled_fraction: f64,
    pub nonzero_coefficients: usize,
    pub seconds: f64,
}

impl Provenance {
    pub fn summary(&self) -> String {
        format!(
            "{}; dictionary {} (K={}, {}x{}); lambda {}; {} iterations; low-pass weight {}",
            self.software,
            self.dictionary,
            self.filters,
            self.filter_side,
            self.filter_side,
            self.lambda,
            self.iterations,
            self.lowpass_weight
        )
    }
}

/// `<path>.json` next to `path` (extension replaced).
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Any `.npy`-writable array (the complex image, the Lambda maps), errors naming the file.
pub fn write_npy<A: WriteNpyExt>(path: &Path, array: &A) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    array
        .write_npy(BufWriter::new(file))
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn write_sidecar(path: &Path, provenance: &Provenance) -> Result<()> {
    let json = serde_json::to_string_pretty(provenance)?;
    std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// 8-bit greyscale magnitude PNG, window `[0, p99.9(|x|)]`, with the provenance in `tEXt`.
pub fn write_png(path: &Path, image: &Array2<Complex32>, provenance: &Provenance) -> Result<()> {
    let (n_y, n_x) = image.dim();
    let mut magnitudes: Vec<f32> = image.iter().map(|v| v.norm()).collect();
    let white = sparsemap_core::recon::percentile(&mut magnitudes.clone(), PNG_WHITE_PERCENTILE)
        .unwrap_or(0.0);
    let gain = if white > 0.0 { 255.0 / white } else { 0.0 };
    magnitudes
        .iter_mut()
        .for_each(|m| *m = (*m * gain).round().clamp(0.0, 255.0));
    let pixels: Vec<u8> = magnitudes.iter().map(|&m| m as u8).collect();

    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), n_x as u32, n_y as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.add_text_chunk("Software".into(), provenance.software.clone())?;
    encoder.add_text_chunk("Comment".into(), provenance.summary())?;
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .write_image_data(&pixels)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
