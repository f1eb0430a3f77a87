//! Multi-coil slices (DESIGN §3.4) from the data a scanner gives: the coils' k-space, their
//! masks and, if there is one, a noise scan. In order: noise prewhitening ([`coils::noise_whitening`]),
//! SVD coil compression to `--virtual-coils` ([`coils::coil_compression`]), sensitivities
//! estimated from the fully sampled centre ([`coils::estimate_sensitivities`]) unless the
//! caller gives them, then the core's `A = M_c F S_c` reconstruction with the planned method
//! ([`PlannedMethod::reconstruct_data`]). The Lambda network sees the coil-combined data, so
//! the bundled single-coil model works unchanged.
//!
//! **Intensity.** Maps are unit-norm per pixel in the basis the solver sees, so the solve
//! returns `x' = g x` where `x` is the image on the scale of the received coils (unit maps
//! there): prewhitening `W` gives `g = |W S|` for the received unit map `S` (computed as
//! `1 / |W^{-1} S'|` from the whitened unit map `S'`), compression `A` multiplies it by
//! `|A S'|`. The image is divided by `g`, so neither changes its scale (without this a
//! correlated noise covariance would shade the image by up to tens of percent).

use crate::coils::{self, Sensitivities, SensitivityOptions};
use crate::method::{PlannedMethod, SliceResult};
use crate::runtime::SliceData;
use anyhow::{bail, ensure, Context, Result};
use num_complex::Complex32;
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;
use std::time::Instant;

/// `Acquisition::coil_combination` and the sidecar's value for this reconstruction.
pub const COIL_COMBINATION_SENSE: &str = "sense";

/// One multi-coil slice as received. Arrays are `[coils][n_y][n_x]`, k-space centred.
#[derive(Debug, Clone, Copy)]
pub struct CoilInput<'a> {
    pub coils: usize,
    pub kspace: &'a [Complex32],
    /// Sampled where non-zero, one mask per coil.
    pub masks: &'a [f32],
    /// Noise-only samples `[coils][M]` (a noise-adjustment scan) for prewhitening.
    pub noise: Option<&'a [Complex32]>,
    /// Sensitivities in the image domain; `None`: estimated from the k-space centre.
    pub sensitivities: Option<&'a [Complex32]>,
}

/// How multi-coil slices are handled.
#[derive(Debug, Clone, Default)]
pub struct CoilOptions {
    /// Compress to this many virtual coils first (`None`: keep every coil).
    pub virtual_coils: Option<usize>,
    pub sensitivity: SensitivityOptions,
}

/// What the coil processing did, for the sidecar and the JSON line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoilReport {
    /// Coils received.
    pub coils: usize,
    /// Coils reconstructed (after compression).
    pub virtual_coils: usize,
    /// Fraction of the data's energy the virtual coils keep (1 without compression).
    pub retained_energy: f64,
    /// Whether a noise scan prewhitened the data.
    pub whitened: bool,
    /// Where the sensitivities came from, e.g. `estimated (walsh, calibration 32x32)`.
    pub sensitivities: String,
    /// Seconds spent on whitening, compression and sensitivities (printed, not written to
    /// the sidecar: nothing there depends on timing, so two runs write identical files).
    #[serde(skip)]
    pub estimate_seconds: f64,
}

/// A multi-coil reconstruction's result.
#[derive(Debug, Clone)]
pub struct CoilResult {
    pub slice: SliceResult,
    pub coils: CoilReport,
}

/// The slice after whitening, compression and sensitivities: what the solver takes.
pub struct PreparedCoils {
    pub coils: usize,
    pub kspace: Vec<Complex32>,
    pub masks: Vec<f32>,
    /// `g` per pixel: the solve's image divided by it is on the scale of the received coils
    /// (module docs, "Intensity"); `None`: 1 everywhere.
    pub intensity: Option<Vec<f32>>,
    pub sensitivities: Sensitivities,
    pub report: CoilReport,
}

/// Whitening, compression and sensitivities of `input` on `shape` (module docs). Errors say
/// which array is wrong.
pub fn prepare_coils(
    input: &CoilInput<'_>,
    options: &CoilOptions,
    shape: Shape,
) -> Result<PreparedCoils> {
    let started = Instant::now();
    let n = shape.len();
    let coils = input.coils;
    ensure!(
        (1..=crate::mrd::MAX_CHANNELS).contains(&coils),
        "{coils} coils: multi-coil input has 1 to {} coils",
        crate::mrd::MAX_CHANNELS
    );
    let reconstructed = options.virtual_coils.unwrap_or(coils).min(coils);
    ensure!(
        reconstructed <= sparsemap_core::coils::MAX_COILS,
        "{coils} coils: a multi-coil reconstruction takes at most {} (compress them with --virtual-coils)",
        sparsemap_core::coils::MAX_COILS
    );
    ensure!(
        input.kspace.len() == coils * n,
        "the k-space has {} samples, not {coils} coils of {}x{}",
        input.kspace.len(),
        shape.n_y(),
        shape.n_x()
    );
    ensure!(
        input.masks.len() == coils * n,
        "the masks have {} values, not {coils} coils of {}x{}",
        input.masks.len(),
        shape.n_y(),
        shape.n_x()
    );
    if let Some(maps) = input.sensitivities {
        ensure!(
            maps.len() == coils * n,
            "the sensitivities have {} values, not {coils} coils of {}x{}",
            maps.len(),
            shape.n_y(),
            shape.n_x()
        );
        ensure!(
            maps.iter().all(|v| v.re.is_finite() && v.im.is_finite()),
            "the sensitivities contain NaN or infinite values"
        );
    }
    let mut kspace = input.kspace.to_vec();
    let mut given = input.sensitivities.map(<[Complex32]>::to_vec);
    let whitening = match input.noise {
        Some(noise) => {
            let whitening = coils::noise_whitening(noise, coils).context("noise prewhitening")?;
            whitening.apply(&mut kspace)?;
            if let Some(maps) = given.as_mut() {
                // The coils are now W y: their encoding is W S.
                whitening.apply(maps)?;
            }
            Some(whitening)
        }
        None => None,
    };
    // The maps of the (whitened) coils, unit norm on the support: estimated before any
    // compression, so that the compression's loss can be measured on them.
    let maps = match given {
        Some(maps) => given_sensitivities(maps, coils, shape),
        None => coils::estimate_sensitivities(&kspace, input.masks, coils, shape, &options.sensitivity)
            .context("estimating the coil sensitivities from the k-space centre (give them with --sensitivities if the centre is not fully sampled)")?,
    };
    // The solve finds x' = g x (module docs, "Intensity") and the image is x' / g.
    let mut gain: Option<Vec<f32>> = whitening
        .as_ref()
        .map(|w| unwhitened_norms(w, &maps.maps, &maps.support))
        .transpose()?;
    let (kspace, masks, virtual_coils, retained_energy, sensitivities) = match options.virtual_coils
    {
        Some(v) if v < coils => {
            let compression = coils::coil_compression(&kspace, input.masks, coils, shape, v)
                .context("coil compression")?;
            let compressed = compression.apply(&kspace)?;
            let projected = compression.apply(&maps.maps)?;
            // Compression keeps `|A S|` of each unit map; normalising divides the image by it.
            let kept = norms(&projected, v, n);
            let mut sensitivities = given_sensitivities(projected, v, shape);
            let gain = gain.get_or_insert_with(|| vec![1.0; n]);
            for ((g, k), inside) in gain.iter_mut().zip(&kept).zip(&sensitivities.support) {
                if *inside && *k > 0.0 {
                    *g *= k;
                }
            }
            sensitivities.method = maps.method;
            sensitivities.calibration = maps.calibration.clone();
            // Compression needs identical masks, so the first v are the masks of the virtual coils.
            (
                compressed,
                input.masks[..v * n].to_vec(),
                v,
                compression.retained_energy,
                sensitivities,
            )
        }
        Some(v) if v > coils => {
            bail!("--virtual-coils {v} is more than the {coils} coils received")
        }
        _ => (kspace, input.masks.to_vec(), coils, 1.0, maps),
    };
    let whitened = whitening.is_some();
    let described = match input.sensitivities {
        Some(_) => "given".to_string(),
        None => format!(
            "estimated ({}, calibration {}x{})",
            sensitivities.method,
            sensitivities.calibration.ky.len(),
            sensitivities.calibration.kx.len()
        ),
    };
    Ok(PreparedCoils {
        coils: virtual_coils,
        kspace,
        masks,
        intensity: gain,
        report: CoilReport {
            coils,
            virtual_coils,
            retained_energy,
            whitened,
            sensitivities: described,
            estimate_seconds: started.elapsed().as_secs_f64(),
        },
        sensitivities,
    })
}

/// `|W^{-1} S(r)|` for unit maps `S` of whitened coils (`W` lower triangular, solved by
/// forward substitution): what a unit map of the received coils becomes, inverted
/// (module docs, "Intensity"); off the support, its mean over the support.
fn unwhitened_norms(
    whitening: &coils::Whitening,
    maps: &[Complex32],
    support: &[bool],
) -> Result<Vec<f32>> {
    let c = whitening.coils;
    let n = support.len();
    ensure!(
        maps.len() == c * n,
        "maps and whitening disagree on the coils"
    );
    let w = &whitening.matrix;
    let mut column = vec![Complex32::default(); c];
    let mut solved = vec![Complex32::default(); c];
    let mut gain: Vec<f32> = (0..n)
        .map(|i| {
            if !support[i] {
                return f32::NAN;
            }
            (0..c).for_each(|k| column[k] = maps[k * n + i]);
            for r in 0..c {
                let mut sum = column[r];
                for k in 0..r {
                    sum -= w[r * c + k] * solved[k];
                }
                solved[r] = sum / w[r * c + r];
            }
            // |W^{-1} S| = 1 / |W S_received| for S = W S_received / |W S_received|.
            1.0 / solved.iter().map(|v| v.norm_sqr()).sum::<f32>().sqrt()
        })
        .collect();
    // Off the support (no map) the mean over the support: the background keeps the scale of
    // the object around it.
    let inside: Vec<f32> = gain.iter().copied().filter(|g| g.is_finite()).collect();
    let mean = if inside.is_empty() {
        1.0
    } else {
        inside.iter().sum::<f32>() / inside.len() as f32
    };
    gain.iter_mut()
        .filter(|g| !g.is_finite())
        .for_each(|g| *g = mean);
    Ok(gain)
}

/// `sqrt(sum_c |m_c(r)|^2)` of `[coils][n]` maps.
fn norms(maps: &[Complex32], coils: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (0..coils)
                .map(|c| maps[c * n + i].norm_sqr())
                .sum::<f32>()
                .sqrt()
        })
        .collect()
}

/// Divides `image` by the intensity `g` of [`PreparedCoils::intensity`].
fn correct_intensity(image: &mut [Complex32], intensity: Option<&[f32]>) {
    if let Some(gain) = intensity {
        for (v, g) in image.iter_mut().zip(gain) {
            if *g > 0.0 {
                *v /= *g;
            }
        }
    }
}

/// Given maps (after whitening or compression, which change their norm) normalised to
/// `sum_c |S_c|² = 1` wherever they are not zero; the support is where they are not.
fn given_sensitivities(mut maps: Vec<Complex32>, coils: usize, shape: Shape) -> Sensitivities {
    let n = shape.len();
    let norm = norms(&maps, coils, n);
    let support: Vec<bool> = norm.iter().map(|&v| v > 0.0).collect();
    for (i, &v) in norm.iter().enumerate().filter(|(_, &v)| v > 0.0) {
        (0..coils).for_each(|c| maps[c * n + i] /= v);
    }
    Sensitivities {
        coils,
        shape,
        maps,
        support,
        calibration: coils::CalibrationRegion { ky: 0..0, kx: 0..0 },
        method: "given",
    }
}

/// Reconstructs one multi-coil slice with `planned` into `image` (`[n_y][n_x]`, the
/// coil-combined image on the scale of `S^H F^H y`).
pub fn reconstruct_coils(
    planned: &mut PlannedMethod,
    input: &CoilInput<'_>,
    options: &CoilOptions,
    image: &mut [Complex32],
) -> Result<CoilResult> {
    let prepared = prepare_coils(input, options, planned.shape())?;
    let slice = solve_prepared(planned, &prepared, image)?;
    Ok(CoilResult {
        slice,
        coils: prepared.report,
    })
}

/// The solve of a prepared multi-coil slice, then the intensity correction.
fn solve_prepared(
    planned: &mut PlannedMethod,
    prepared: &PreparedCoils,
    image: &mut [Complex32],
) -> Result<SliceResult> {
    let slice = planned.reconstruct_data(
        SliceData::Coils {
            coils: prepared.coils,
            kspace: &prepared.kspace,
            masks: &prepared.masks,
            sensitivities: &prepared.sensitivities.maps,
        },
        image,
    )?;
    correct_intensity(image, prepared.intensity.as_deref());
    Ok(slice)
}

/// The maps [`reconstruct_coils`] would use for `input` (estimated or given, after
/// whitening and compression).
pub fn sensitivities(
    input: &CoilInput<'_>,
    options: &CoilOptions,
    shape: Shape,
) -> Result<Sensitivities> {
    Ok(prepare_coils(input, options, shape)?.sensitivities)
}

/// One virtual coil: `x0 = sum_c conj(S_c) F^H y_c` (after whitening and compression) back in
/// k-space on the positions any coil sampled, `M F x0`, with that mask; what a single-coil
/// method reconstructs from a coil-combined acquisition.
pub fn combine_coils(
    input: &CoilInput<'_>,
    options: &CoilOptions,
    shape: Shape,
) -> Result<(Vec<Complex32>, Vec<f32>)> {
    let prepared = prepare_coils(input, options, shape)?;
    let n = shape.len();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let fourier = CentredFourier { fft: &fft };
    let mut scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&fourier)];
    let mut combined = vec![Complex32::default(); n];
    let mut coil_image = vec![Complex32::default(); n];
    let mut mask = vec![0f32; n];
    for c in 0..prepared.coils {
        let range = c * n..(c + 1) * n;
        fourier.adjoint(
            &prepared.kspace[range.clone()],
            &mut coil_image,
            &mut scratch,
        );
        for ((acc, v), s) in combined
            .iter_mut()
            .zip(&coil_image)
            .zip(&prepared.sensitivities.maps[range.clone()])
        {
            *acc += s.conj() * v;
        }
        for (m, &sampled) in mask.iter_mut().zip(&prepared.masks[range]) {
            if sampled != 0.0 {
                *m = 1.0;
            }
        }
    }
    correct_intensity(&mut combined, prepared.intensity.as_deref());
    let mut kspace = vec![Complex32::default(); n];
    fourier.apply(&combined, &mut kspace, &mut scratch);
    for (k, &m) in kspace.iter_mut().zip(&mask) {
        *k *= m;
    }
    Ok((kspace, mask))
}

/// How several coils become one image (`--coil-combination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CoilCombination {
    /// One reconstruction of all coils with their sensitivities, `A = M_c F S_c` (DESIGN §3.4).
    #[default]
    Sense,
    /// Each coil as its own single-coil problem, then the root sum of squares of the images.
    Rss,
}

/// What a runtime does with multi-coil slices.
#[derive(Debug, Clone, Default)]
pub struct CoilSettings {
    pub combination: CoilCombination,
    pub options: CoilOptions,
}

/// One multi-coil slice as the runtime handles it: `kspace` and `mask` `[coils][n_y][n_x]`
/// (true where measured). With [`CoilCombination::Sense`] the sensitivities are estimated
/// (or given); if that fails (e.g. no fully sampled centre) the slice falls back to RSS and
/// the returned combination says why, so a slice received intact still gives an image.
/// Returns the result, the combination used (for the sidecar) and the coil report.
pub fn reconstruct_slice(
    planned: &mut PlannedMethod,
    input: &CoilInput<'_>,
    settings: &CoilSettings,
    image: &mut ndarray::Array2<Complex32>,
) -> Result<(SliceResult, String, Option<CoilReport>)> {
    let n = planned.shape().len();
    let rss = |planned: &mut PlannedMethod, image: &mut ndarray::Array2<Complex32>| {
        let masks: Vec<bool> = input.masks.iter().map(|&m| m != 0.0).collect();
        crate::worker::reconstruct_rss(
            planned,
            &input.kspace[..input.coils * n],
            &masks,
            input.coils,
            image,
        )
        .with_context(|| format!("{} coils, each alone (rss)", input.coils))
    };
    match settings.combination {
        CoilCombination::Rss => Ok((
            rss(planned, image)?,
            crate::worker::COIL_COMBINATION_RSS.to_string(),
            None,
        )),
        CoilCombination::Sense => match prepare_coils(input, &settings.options, planned.shape()) {
            Ok(prepared) => {
                let slice = solve_prepared(
                    planned,
                    &prepared,
                    image
                        .as_slice_mut()
                        .context("the image is not contiguous")?,
                )?;
                Ok((
                    slice,
                    COIL_COMBINATION_SENSE.to_string(),
                    Some(prepared.report),
                ))
            }
            Err(error) => Ok((
                rss(planned, image).with_context(|| format!("after sense failed: {error:#}"))?,
                format!(
                    "{} (sense failed: {error:#})",
                    crate::worker::COIL_COMBINATION_RSS
                ),
                None,
            )),
        },
    }
}
