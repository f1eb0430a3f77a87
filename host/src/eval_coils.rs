//! `sparsemap-host eval-coils`: the multi-coil comparison (issue 16), on real slices with a
//! simulated coil array.
//!
//! Protocol (what `results/coils/coils.md` means):
//! 1. Data: the Colin27 validation split (tuning) and test split (the table) from
//!    `sparsemap-host export`, `validation_slices` and `test_slices` evenly spaced slices
//!    ([`crate::eval`]'s rule). Each acquisition (mask and noise level, `MASK@NOISE`) is
//!    simulated with [`crate::coils`]: `coils` Biot–Savart loops ([`CoilGeometry`] default,
//!    256 mm field of view), receiver noise covariance `Psi` with neighbour correlation
//!    `correlation`, `sigma = s rms(F target)`, seeded by the acquisition and split like
//!    `eval` ([`AcquisitionSpec::acquisition`]). A `vdR` mask here has `vd_centre_lines`
//!    fully sampled centre rows (24 by default, ESPIRiT's calibration region), not `eval`'s 16.
//! 2. Methods (the rows, [`CoilMethod`]):
//!    - zero-filled RSS `sqrt(sum_c |F^H y_c|^2)`;
//!    - zero-filled SENSE-combined with the *true* maps, `sum_c conj(S_c) F^H y_c` (no noise
//!      whitening);
//!    - BART `pics` ℓ1-wavelet and TV (`-R W:3:0:λ`, `-R T:3:0:λ`, `-w 1`,
//!      [`Bart::pics_sense`]) with ESPIRiT maps (`bart ecalib -m 1 -r 24`, [`Bart::ecalib`])
//!      estimated from each slice's own data; their time per slice includes `ecalib`;
//!    - the bundled int8 model through the edge runtime (`sparsemap_edge::multicoil`, one
//!      thread): each coil alone + RSS; one virtual coil (`combine_coils` with the estimated
//!      maps, then the single-coil solve); all coils together (`A = M F S_c`) with the maps
//!      the runtime estimates, and with the ESPIRiT maps; the multi-coil rows prewhitened with
//!      the slice's noise scan. Their seconds exclude planning (once per grid in the runtime).
//! 3. Tuning: each BART weight by [`crate::eval`]'s search (log grid over the single-coil
//!    range of `Method::lambda_range`, extended while on the border, refined twice) for the
//!    mean whole-image PSNR on the validation slices; used unchanged on the test slices.
//! 4. Metrics ([`crate::metrics`]): PSNR and SSIM of magnitudes, normalised by the target's
//!    maximum as in `eval`, on the whole image and inside the export's head mask; wall
//!    seconds per slice, BART with `OMP_NUM_THREADS=1`, slices run `threads` at a time.
//! 5. Map agreement: the mean over the head mask of the phase-invariant correlation
//!    `|<S_a(r), S_b(r)>| / (|S_a(r)| |S_b(r)|)` ([`crate::coils::map_correlation`]) per test
//!    slice: ESPIRiT vs truth, sparsemap's estimate vs truth, sparsemap's vs ESPIRiT.
//!
//! Outputs: `coils.md`, `coils.csv` (mean ± std per acquisition and method), `coils.json`
//! (settings, tuned weights, tuning points, every test slice).

use crate::baselines::bart::{Bart, Regulariser, ECALIB_CALIBRATION};
use crate::coils::{
    biot_savart_sensitivities, covariance_seed, map_correlation, noise_covariance, rss_zero_filled,
    sense_zero_filled, CoilGeometry, CoilSimulator,
};
use crate::dataset::Split;
use crate::eval::{evenly_spaced, load, mean, mean_std, search_weight, AcquisitionSpec};
use crate::methods::Method;
use crate::metrics::{self, Dims};
use crate::simulate::MaskKind;
use anyhow::{ensure, Context, Result};
use ndarray::{Array2, Array3, ArrayView2, Axis};
use num_complex::Complex32;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sparsemap_core::Shape;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Default acquisitions of `eval-coils`.
pub const DEFAULT_ACQUISITIONS: [&str; 2] = ["block128@0.15", "vd3@0.15"];
/// Default fully sampled centre rows of a `vdR` mask in `eval-coils`.
pub const VD_CENTRE_LINES: usize = 24;

/// Settings of one `eval-coils` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoilEvalConfig {
    /// Where `validation.npz` and `test.npz` are.
    pub data_dir: PathBuf,
    /// Where the outputs go.
    pub out_dir: PathBuf,
    /// `MASK@NOISE` acquisitions.
    pub acquisitions: Vec<AcquisitionSpec>,
    /// Fully sampled centre rows of `vdR` masks.
    pub vd_centre_lines: usize,
    /// Receive coils.
    pub coils: usize,
    /// Neighbour noise correlation.
    pub correlation: f64,
    /// Noise-scan samples per coil (simulated; no row uses them yet).
    pub noise_samples: usize,
    /// Field of view of the grid, mm.
    pub fov_mm: f64,
    /// Validation slices for tuning (evenly spaced).
    pub validation_slices: usize,
    /// Test slices (evenly spaced).
    pub test_slices: usize,
    /// Points of the coarse weight grid.
    pub grid_points: usize,
    /// Base seed.
    pub seed: u64,
    /// BART `pics` ℓ1-wavelet FISTA iterations.
    pub wavelet_iterations: usize,
    /// BART `pics` TV `-i` (cumulative CG steps of ADMM).
    pub tv_iterations: usize,
    /// ESPIRiT calibration region side.
    pub calibration: usize,
    /// Slices reconstructed at the same time.
    pub threads: usize,
}

impl Default for CoilEvalConfig {
    fn default() -> Self {
        Self {
            data_dir: "data".into(),
            out_dir: "results/coils".into(),
            acquisitions: DEFAULT_ACQUISITIONS
                .iter()
                .map(|a| a.parse().expect("valid default acquisition"))
                .collect(),
            vd_centre_lines: VD_CENTRE_LINES,
            coils: 8,
            correlation: 0.2,
            noise_samples: crate::coils::DEFAULT_NOISE_SAMPLES,
            fov_mm: 256.0,
            validation_slices: 4,
            test_slices: 8,
            grid_points: 5,
            seed: 1,
            wavelet_iterations: 100,
            tv_iterations: 100,
            calibration: ECALIB_CALIBRATION,
            threads: 1,
        }
    }
}

/// A row of the multi-coil table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoilMethod {
    /// Root sum of squares of the zero-filled coil images.
    ZeroFilledRss,
    /// `sum_c conj(S_c) F^H y_c` with the true maps.
    ZeroFilledSense,
    /// BART `pics` ℓ1-wavelet with ESPIRiT maps.
    BartWavelet,
    /// BART `pics` TV with ESPIRiT maps.
    BartTv,
    /// The bundled int8 model on each coil alone, then the root sum of squares (what the
    /// runtime did before multi-coil reconstruction; `--coil-combination rss`).
    LearnedRss,
    /// The bundled int8 model on one virtual coil: the coils combined with the estimated maps
    /// (`sparsemap_edge::multicoil::combine_coils`), then the single-coil solve.
    LearnedCombined,
    /// The bundled int8 model on all coils together, `A = M F S_c`, maps estimated from the
    /// k-space centre, prewhitened with the noise scan (the runtime's default).
    LearnedSense,
    /// As [`CoilMethod::LearnedSense`] with the ESPIRiT maps.
    LearnedSenseEspirit,
}

impl CoilMethod {
    /// Every row, in table order.
    pub const ALL: [CoilMethod; 8] = [
        CoilMethod::ZeroFilledRss,
        CoilMethod::ZeroFilledSense,
        CoilMethod::BartWavelet,
        CoilMethod::BartTv,
        CoilMethod::LearnedRss,
        CoilMethod::LearnedCombined,
        CoilMethod::LearnedSense,
        CoilMethod::LearnedSenseEspirit,
    ];

    /// Name for tables.
    pub fn label(self) -> &'static str {
        match self {
            CoilMethod::ZeroFilledRss => "zero-filled RSS",
            CoilMethod::ZeroFilledSense => "zero-filled SENSE (true maps)",
            CoilMethod::BartWavelet => "BART ℓ1-wavelet, ESPIRiT maps",
            CoilMethod::BartTv => "BART TV, ESPIRiT maps",
            CoilMethod::LearnedRss => "sparsemap int8, each coil alone + RSS",
            CoilMethod::LearnedCombined => "sparsemap int8, coil-combined single coil",
            CoilMethod::LearnedSense => "**sparsemap int8, multi-coil (estimated maps, whitened)**",
            CoilMethod::LearnedSenseEspirit => {
                "sparsemap int8, multi-coil (ESPIRiT maps, whitened)"
            }
        }
    }

    /// Name for CSV and JSON.
    pub fn name(self) -> &'static str {
        match self {
            CoilMethod::ZeroFilledRss => "zero-filled-rss",
            CoilMethod::ZeroFilledSense => "zero-filled-sense",
            CoilMethod::BartWavelet => "bart-wavelet-espirit",
            CoilMethod::BartTv => "bart-tv-espirit",
            CoilMethod::LearnedRss => "learned-rss",
            CoilMethod::LearnedCombined => "learned-combined",
            CoilMethod::LearnedSense => "learned-sense",
            CoilMethod::LearnedSenseEspirit => "learned-sense-espirit",
        }
    }

    /// The single-coil method whose weight range is searched (`None`: nothing to tune).
    fn tuned_like(self) -> Option<Method> {
        match self {
            CoilMethod::BartWavelet => Some(Method::BartWavelet),
            CoilMethod::BartTv => Some(Method::BartTv),
            _ => None,
        }
    }
}

/// One simulated slice with everything the rows need.
struct Case {
    index: usize,
    target_magnitude: Vec<f64>,
    head_mask: Vec<bool>,
    kspace: Array3<Complex32>,
    mask: Array2<bool>,
    /// `[C][M]` noise-only samples (the scanner's noise adjustment).
    noise_scan: Array2<Complex32>,
    /// ESPIRiT maps (when a BART row runs) and the seconds `ecalib` took.
    espirit: Option<(Array3<Complex32>, f64)>,
}

/// One test slice of one row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoilSliceResult {
    /// Acquisition label.
    pub acquisition: String,
    /// The row.
    pub method: CoilMethod,
    /// The weight (0 when untuned).
    pub lambda: f32,
    /// Slice index in the test split.
    pub slice: usize,
    /// Whole-image PSNR, dB.
    pub psnr: f64,
    /// Whole-image SSIM.
    pub ssim: f64,
    /// PSNR inside the head mask, dB.
    pub psnr_head: f64,
    /// SSIM inside the head mask.
    pub ssim_head: f64,
    /// Wall seconds for this slice (ESPIRiT included for the BART rows).
    pub seconds: f64,
}

/// A tuned weight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoilTuned {
    /// Acquisition label.
    pub acquisition: String,
    /// The row.
    pub method: CoilMethod,
    /// The weight chosen.
    pub lambda: f32,
    /// Its mean validation PSNR (whole image), dB.
    pub validation_psnr: f64,
    /// Whether it lies on the border of the weights tried.
    pub on_border: bool,
    /// Every `(lambda, mean validation PSNR)` tried.
    pub tried: Vec<(f32, f64)>,
}

/// ESPIRiT map agreement of one test slice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapAgreement {
    /// Acquisition label.
    pub acquisition: String,
    /// Slice index in the test split.
    pub slice: usize,
    /// Mean phase-invariant correlation over the head mask, ESPIRiT vs truth.
    pub correlation: f64,
    /// The same for sparsemap's estimated maps (Walsh, `sparsemap_edge::coils`) vs truth.
    pub ours_truth: f64,
    /// sparsemap's estimated maps vs ESPIRiT.
    pub ours_espirit: f64,
    /// Seconds `bart ecalib` took.
    pub seconds: f64,
}

/// Everything one run produced (`coils.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoilEvalReport {
    /// The settings.
    pub config: CoilEvalConfig,
    /// `bart version`.
    pub bart_version: String,
    /// Validation and test slice indices.
    pub validation_indices: Vec<usize>,
    /// Test slice indices.
    pub test_indices: Vec<usize>,
    /// Tuned weights.
    pub tuned: Vec<CoilTuned>,
    /// Every test slice of every row.
    pub results: Vec<CoilSliceResult>,
    /// ESPIRiT vs truth per test slice.
    pub maps: Vec<MapAgreement>,
}

/// The acquisition with `eval-coils`' mask conventions (`vdR`: `vd_centre_lines` centre rows).
fn coil_spec(spec: &AcquisitionSpec, vd_centre_lines: usize) -> AcquisitionSpec {
    let mut spec = spec.clone();
    if let MaskKind::VariableDensity1d { acceleration, .. } = spec.mask {
        spec.mask = MaskKind::VariableDensity1d {
            acceleration,
            centre_lines: vd_centre_lines,
        };
    }
    spec
}

/// Simulates the chosen slices of `split` with the fixed coil array (`maps`, `psi`), and
/// runs ESPIRiT on each when `bart` is given.
#[allow(clippy::too_many_arguments)]
fn simulate_cases(
    split: &Split,
    indices: &[usize],
    spec: &AcquisitionSpec,
    config: &CoilEvalConfig,
    shape: Shape,
    maps: &[Complex32],
    psi: &[num_complex::Complex64],
    bart: Option<&Bart>,
) -> Result<Vec<Case>> {
    let acquisition = spec.acquisition(config.seed, &split.name);
    indices
        .par_iter()
        .map(|&index| {
            let mut simulator = CoilSimulator::new(shape, maps, psi, config.noise_samples)?;
            let target = split.targets.index_axis(Axis(0), index);
            let slice = simulator
                .simulate(target, &acquisition, index as u64)
                .with_context(|| {
                    format!("simulating {} slice {index} ({})", split.name, spec.label)
                })?;
            let espirit = match bart {
                Some(bart) => {
                    let started = Instant::now();
                    let maps = bart
                        .ecalib(slice.kspace.view(), config.calibration)
                        .with_context(|| format!("ecalib on {} slice {index}", split.name))?;
                    Some((maps, started.elapsed().as_secs_f64()))
                }
                None => None,
            };
            Ok(Case {
                index,
                target_magnitude: target.iter().map(|v| f64::from(v.norm())).collect(),
                head_mask: split
                    .head_masks
                    .index_axis(Axis(0), index)
                    .iter()
                    .copied()
                    .collect(),
                kspace: slice.kspace,
                mask: slice.mask,
                noise_scan: slice.noise_scan,
                espirit,
            })
        })
        .collect()
}

/// Reconstructs `case` with `method` at `lambda`; returns the image and its seconds
/// (ESPIRiT's included for the BART rows).
fn reconstruct(
    case: &Case,
    method: CoilMethod,
    lambda: f32,
    truth: &Array3<Complex32>,
    bart: Option<&Bart>,
    config: &CoilEvalConfig,
) -> Result<(Array2<Complex32>, f64)> {
    let started = Instant::now();
    let image = match method {
        CoilMethod::ZeroFilledRss => rss_zero_filled(case.kspace.view())?,
        CoilMethod::ZeroFilledSense => sense_zero_filled(case.kspace.view(), truth.view())?,
        CoilMethod::BartWavelet | CoilMethod::BartTv => {
            let bart = bart.context("BART rows need `bart` (internal error)")?;
            let (maps, ecalib_seconds) = case
                .espirit
                .as_ref()
                .context("no ESPIRiT maps (internal error)")?;
            let (regulariser, iterations) = if method == CoilMethod::BartWavelet {
                (Regulariser::L1Wavelet { lambda }, config.wavelet_iterations)
            } else {
                (Regulariser::TotalVariation { lambda }, config.tv_iterations)
            };
            let image = bart.pics_sense(
                case.kspace.view(),
                case.mask.view(),
                maps.view(),
                regulariser,
                iterations,
            )?;
            return Ok((image, started.elapsed().as_secs_f64() + ecalib_seconds));
        }
        CoilMethod::LearnedRss
        | CoilMethod::LearnedCombined
        | CoilMethod::LearnedSense
        | CoilMethod::LearnedSenseEspirit => {
            // Planned per slice (the network's optimisation is not timed), one thread.
            let mut planned = learned_plan(case)?;
            let started = Instant::now();
            let image = learned(case, method, &mut planned)?;
            let mut seconds = started.elapsed().as_secs_f64();
            if method == CoilMethod::LearnedSenseEspirit {
                seconds += case.espirit.as_ref().map_or(0.0, |(_, s)| *s);
            }
            return Ok((image, seconds));
        }
    };
    Ok((image, started.elapsed().as_secs_f64()))
}

/// The maps the runtime estimates for `case` (after prewhitening with its noise scan).
fn estimated_maps(case: &Case) -> Result<Vec<Complex32>> {
    let (coils, n_y, n_x) = case.kspace.dim();
    let mask: Vec<f32> = case.mask.iter().map(|&m| f32::from(u8::from(m))).collect();
    let masks: Vec<f32> = (0..coils).flat_map(|_| mask.iter().copied()).collect();
    let input = sparsemap_edge::multicoil::CoilInput {
        coils,
        kspace: case
            .kspace
            .as_slice()
            .context("k-space is not contiguous")?,
        masks: &masks,
        noise: Some(
            case.noise_scan
                .as_slice()
                .context("noise scan is not contiguous")?,
        ),
        sensitivities: None,
    };
    Ok(sparsemap_edge::multicoil::sensitivities(
        &input,
        &sparsemap_edge::multicoil::CoilOptions::default(),
        Shape::new(n_y, n_x)?,
    )?
    .maps)
}

/// The bundled int8 model planned on `case`'s grid for one thread.
fn learned_plan(case: &Case) -> Result<sparsemap_edge::method::PlannedMethod> {
    let (_, n_y, n_x) = case.kspace.dim();
    let mut spec = sparsemap_edge::method::MethodSpec::bundled()?;
    spec.threads = sparsemap_edge::parallel::Threads::new(1);
    std::sync::Arc::new(spec).plan(Shape::new(n_y, n_x)?)
}

/// The learned rows through the edge runtime's own functions.
fn learned(
    case: &Case,
    method: CoilMethod,
    planned: &mut sparsemap_edge::method::PlannedMethod,
) -> Result<Array2<Complex32>> {
    use sparsemap_edge::multicoil::{self, CoilCombination, CoilInput, CoilOptions, CoilSettings};
    let (coils, n_y, n_x) = case.kspace.dim();
    let kspace = case
        .kspace
        .as_slice()
        .context("k-space is not contiguous")?;
    let mask: Vec<f32> = case.mask.iter().map(|&m| f32::from(u8::from(m))).collect();
    let masks: Vec<f32> = (0..coils).flat_map(|_| mask.iter().copied()).collect();
    let espirit = match method {
        CoilMethod::LearnedSenseEspirit => Some(
            case.espirit
                .as_ref()
                .context("no ESPIRiT maps (internal error)")?
                .0
                .as_slice()
                .context("maps are not contiguous")?,
        ),
        _ => None,
    };
    let input = CoilInput {
        coils,
        kspace,
        masks: &masks,
        noise: Some(
            case.noise_scan
                .as_slice()
                .context("noise scan is not contiguous")?,
        ),
        sensitivities: espirit,
    };
    let options = CoilOptions::default();
    let mut image = Array2::<Complex32>::zeros((n_y, n_x));
    match method {
        CoilMethod::LearnedCombined => {
            let (combined, combined_mask) =
                multicoil::combine_coils(&input, &options, planned.shape())?;
            planned.reconstruct(
                &combined,
                &combined_mask,
                image.as_slice_mut().expect("a new array is contiguous"),
            )?;
        }
        _ => {
            let combination = if method == CoilMethod::LearnedRss {
                CoilCombination::Rss
            } else {
                CoilCombination::Sense
            };
            let settings = CoilSettings {
                combination,
                options,
            };
            let (_, used, _) =
                multicoil::reconstruct_slice(planned, &input, &settings, &mut image)?;
            ensure!(
                (used == multicoil::COIL_COMBINATION_SENSE)
                    == (combination == CoilCombination::Sense),
                "{}: combined by {used}",
                method.name()
            );
        }
    }
    Ok(image)
}

fn measure(
    case: &Case,
    image: ArrayView2<'_, Complex32>,
) -> Result<(metrics::Metrics, metrics::Metrics)> {
    let (n_y, n_x) = image.dim();
    let dims = Dims { n_y, n_x };
    let magnitude: Vec<f64> = image.iter().map(|v| f64::from(v.norm())).collect();
    let whole = metrics::metrics(&case.target_magnitude, &magnitude, dims, None)?;
    let head = metrics::metrics(
        &case.target_magnitude,
        &magnitude,
        dims,
        Some(&case.head_mask),
    )?;
    Ok((whole, head))
}

fn run_cases(
    cases: &[Case],
    method: CoilMethod,
    lambda: f32,
    acquisition: &str,
    truth: &Array3<Complex32>,
    bart: Option<&Bart>,
    config: &CoilEvalConfig,
) -> Result<Vec<CoilSliceResult>> {
    cases
        .par_iter()
        .map(|case| {
            let (image, seconds) = reconstruct(case, method, lambda, truth, bart, config)
                .with_context(|| {
                    format!(
                        "{} (lambda {lambda}) on slice {}",
                        method.name(),
                        case.index
                    )
                })?;
            let (whole, head) = measure(case, image.view())?;
            Ok(CoilSliceResult {
                acquisition: acquisition.to_string(),
                method,
                lambda,
                slice: case.index,
                psnr: whole.psnr,
                ssim: whole.ssim,
                psnr_head: head.psnr,
                ssim_head: head.ssim,
                seconds,
            })
        })
        .collect()
}

/// Runs the comparison (module docs); `progress` gets one line per step.
///
/// # Errors
/// Missing splits (with the `export` command to run), no `bart` on PATH, bad settings, any
/// failing reconstruction.
pub fn run(config: &CoilEvalConfig, progress: impl Fn(&str) + Sync) -> Result<CoilEvalReport> {
    ensure!(!config.acquisitions.is_empty(), "no acquisitions");
    ensure!(
        config.validation_slices >= 1 && config.test_slices >= 1,
        "at least one validation and one test slice"
    );
    ensure!(config.threads >= 1, "--threads must be at least 1");
    let bart = Bart::new()?;
    let bart_version = bart.version()?;
    let validation = load(&config.data_dir, "validation")?;
    let test = load(&config.data_dir, "test")?;
    let [_, n_y, n_x] = test.shape();
    ensure!(
        validation.shape()[1..] == [n_y, n_x],
        "validation and test splits differ in grid"
    );
    let shape = crate::simulate::check_shape(n_y, n_x)?;
    let maps = biot_savart_sensitivities(
        shape,
        [config.fov_mm, config.fov_mm],
        config.coils,
        &CoilGeometry::default(),
    )?;
    let truth = Array3::from_shape_vec((config.coils, n_y, n_x), maps.clone()).expect("C N");
    let validation_indices = evenly_spaced(validation.len(), Some(config.validation_slices));
    let test_indices = evenly_spaced(test.len(), Some(config.test_slices));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .context("building the thread pool")?;
    let mut report = CoilEvalReport {
        config: config.clone(),
        bart_version,
        validation_indices: validation_indices.clone(),
        test_indices: test_indices.clone(),
        tuned: Vec::new(),
        results: Vec::new(),
        maps: Vec::new(),
    };
    pool.install(|| -> Result<()> {
        for given in &config.acquisitions {
            let spec = coil_spec(given, config.vd_centre_lines);
            let psi = noise_covariance(
                config.coils,
                config.correlation,
                covariance_seed(spec.acquisition(config.seed, "coils").seed),
            )?;
            progress(&format!("{}: simulating and ESPIRiT", spec.label));
            let val_cases = simulate_cases(
                &validation,
                &validation_indices,
                &spec,
                config,
                shape,
                &maps,
                &psi,
                Some(&bart),
            )?;
            let test_cases = simulate_cases(
                &test,
                &test_indices,
                &spec,
                config,
                shape,
                &maps,
                &psi,
                Some(&bart),
            )?;
            for case in &test_cases {
                let (espirit, seconds) = case.espirit.as_ref().expect("computed above");
                let ours = estimated_maps(case)?;
                let espirit = espirit.as_slice().expect("contiguous");
                report.maps.push(MapAgreement {
                    acquisition: spec.label.clone(),
                    slice: case.index,
                    correlation: map_correlation(espirit, &maps, &case.head_mask)?,
                    ours_truth: map_correlation(&ours, &maps, &case.head_mask)?,
                    ours_espirit: map_correlation(&ours, espirit, &case.head_mask)?,
                    seconds: *seconds,
                });
            }
            for method in CoilMethod::ALL {
                let lambda = match method.tuned_like() {
                    Some(like) => {
                        let mut tried = Vec::new();
                        let (lambda, value, on_border) =
                            search_weight(like.lambda_range(), config.grid_points, |lambda| {
                                progress(&format!(
                                    "{}: tuning {} (lambda {lambda:.5})",
                                    spec.label,
                                    method.name()
                                ));
                                let results = run_cases(
                                    &val_cases,
                                    method,
                                    lambda,
                                    &spec.label,
                                    &truth,
                                    Some(&bart),
                                    config,
                                )?;
                                let score = mean(results.iter().map(|r| r.psnr));
                                tried.push((lambda, score));
                                Ok(score)
                            })?;
                        report.tuned.push(CoilTuned {
                            acquisition: spec.label.clone(),
                            method,
                            lambda,
                            validation_psnr: value,
                            on_border,
                            tried,
                        });
                        lambda
                    }
                    None => 0.0,
                };
                progress(&format!("{}: testing {}", spec.label, method.name()));
                report.results.extend(run_cases(
                    &test_cases,
                    method,
                    lambda,
                    &spec.label,
                    &truth,
                    Some(&bart),
                    config,
                )?);
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// One line of the summary: mean ± std over the test slices.
#[derive(Debug, Clone)]
pub struct CoilRow {
    /// Acquisition label.
    pub acquisition: String,
    /// The row.
    pub method: CoilMethod,
    /// Its weight.
    pub lambda: f32,
    /// `(mean, std)` of PSNR, SSIM, head PSNR, head SSIM, seconds.
    pub psnr: (f64, f64),
    /// SSIM.
    pub ssim: (f64, f64),
    /// Head PSNR.
    pub psnr_head: (f64, f64),
    /// Head SSIM.
    pub ssim_head: (f64, f64),
    /// Seconds per slice.
    pub seconds: (f64, f64),
    /// Slices.
    pub count: usize,
}

/// Mean ± std per acquisition and row, in the report's order.
pub fn summarise(report: &CoilEvalReport) -> Vec<CoilRow> {
    let mut rows: Vec<CoilRow> = Vec::new();
    for r in &report.results {
        if rows
            .iter()
            .any(|row| row.acquisition == r.acquisition && row.method == r.method)
        {
            continue;
        }
        let group: Vec<&CoilSliceResult> = report
            .results
            .iter()
            .filter(|s| s.acquisition == r.acquisition && s.method == r.method)
            .collect();
        let stat = |f: fn(&CoilSliceResult) -> f64| {
            mean_std(&group.iter().map(|s| f(s)).collect::<Vec<_>>())
        };
        rows.push(CoilRow {
            acquisition: r.acquisition.clone(),
            method: r.method,
            lambda: r.lambda,
            psnr: stat(|s| s.psnr),
            ssim: stat(|s| s.ssim),
            psnr_head: stat(|s| s.psnr_head),
            ssim_head: stat(|s| s.ssim_head),
            seconds: stat(|s| s.seconds),
            count: group.len(),
        });
    }
    rows
}

/// `coils.md`.
pub fn markdown(report: &CoilEvalReport, command: &str) -> String {
    let c = &report.config;
    let mut out = String::new();
    let _ = writeln!(out, "# Multi-coil comparison (issue 16)\n");
    let _ = writeln!(out, "Regenerate: `{command}`\n");
    let _ = writeln!(
        out,
        "Colin27 test split, {} slices (indices {:?}); weights tuned on {} validation slices \
         ({:?}) for the mean whole-image PSNR. {} coils (Biot–Savart loops, `host/src/coils.rs`), \
         noise correlation {} between neighbours, seed {}. `vdR` masks have {} centre rows. \
         BART {} (`pics -w 1`, ℓ1-wavelet {} FISTA iterations, TV `-i {}`; ESPIRiT \
         `ecalib -m 1 -r {}`), `OMP_NUM_THREADS=1`, {} slice(s) at a time. Magnitude PSNR/SSIM \
         as in `results/table.md`; seconds per slice include ESPIRiT for the BART rows.\n",
        report.test_indices.len(),
        report.test_indices,
        report.validation_indices.len(),
        report.validation_indices,
        c.coils,
        c.correlation,
        c.seed,
        c.vd_centre_lines,
        report.bart_version,
        c.wavelet_iterations,
        c.tv_iterations,
        c.calibration,
        c.threads,
    );
    let rows = summarise(report);
    let mut acquisitions: Vec<&str> = Vec::new();
    for r in &rows {
        if !acquisitions.contains(&r.acquisition.as_str()) {
            acquisitions.push(&r.acquisition);
        }
    }
    for acquisition in acquisitions {
        let _ = writeln!(out, "## {acquisition}\n");
        let _ = writeln!(
            out,
            "| method | λ | PSNR (dB) | SSIM | PSNR head (dB) | SSIM head | s / slice |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for r in rows.iter().filter(|r| r.acquisition == acquisition) {
            let tuned = report
                .tuned
                .iter()
                .find(|t| t.acquisition == acquisition && t.method == r.method);
            let lambda = match tuned {
                Some(t) if t.on_border => format!("{:.4} (border)", t.lambda),
                Some(t) => format!("{:.4}", t.lambda),
                None => "–".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {lambda} | {:.2} ± {:.2} | {:.3} ± {:.3} | {:.2} ± {:.2} | {:.3} ± {:.3} | {:.2} |",
                r.method.label(),
                r.psnr.0,
                r.psnr.1,
                r.ssim.0,
                r.ssim.1,
                r.psnr_head.0,
                r.psnr_head.1,
                r.ssim_head.0,
                r.ssim_head.1,
                r.seconds.0,
            );
        }
        let maps: Vec<&MapAgreement> = report
            .maps
            .iter()
            .filter(|m| m.acquisition == acquisition)
            .collect();
        if !maps.is_empty() {
            let summary = |f: fn(&MapAgreement) -> f64| {
                let values: Vec<f64> = maps.iter().map(|m| f(m)).collect();
                let (m, s) = mean_std(&values);
                let worst = values.iter().copied().fold(f64::INFINITY, f64::min);
                format!("{m:.4} ± {s:.4} (worst slice {worst:.4})")
            };
            let _ = writeln!(
                out,
                "\nMap agreement (mean phase-invariant correlation over the head): ESPIRiT vs true \
                 maps {}; sparsemap's estimate vs true maps {}; sparsemap's vs ESPIRiT {}. \
                 `ecalib` {:.2} s per slice.\n",
                summary(|m| m.correlation),
                summary(|m| m.ours_truth),
                summary(|m| m.ours_espirit),
                mean(maps.iter().map(|m| m.seconds))
            );
        }
    }
    out
}

/// `coils.csv`: one line per acquisition and row.
pub fn csv(report: &CoilEvalReport) -> String {
    let mut out = String::from(
        "acquisition,method,lambda,slices,psnr,psnr_std,ssim,ssim_std,psnr_head,psnr_head_std,ssim_head,ssim_head_std,seconds\n",
    );
    for r in summarise(report) {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.4},{:.4},{:.5},{:.5},{:.4},{:.4},{:.5},{:.5},{:.4}",
            r.acquisition,
            r.method.name(),
            r.lambda,
            r.count,
            r.psnr.0,
            r.psnr.1,
            r.ssim.0,
            r.ssim.1,
            r.psnr_head.0,
            r.psnr_head.1,
            r.ssim_head.0,
            r.ssim_head.1,
            r.seconds.0
        );
    }
    for acquisition in report
        .config
        .acquisitions
        .iter()
        .map(|a| coil_spec(a, report.config.vd_centre_lines).label)
    {
        let values: Vec<f64> = report
            .maps
            .iter()
            .filter(|m| m.acquisition == acquisition)
            .map(|m| m.correlation)
            .collect();
        if !values.is_empty() {
            let (m, s) = mean_std(&values);
            let _ = writeln!(
                out,
                "{acquisition},map-correlation-espirit-vs-truth,0,{},{m:.5},{s:.5},,,,,,,",
                values.len()
            );
        }
    }
    out
}

/// Writes `coils.md`, `coils.csv` and `coils.json` to the report's output directory.
///
/// # Errors
/// The directory or a file cannot be written.
pub fn write_outputs(report: &CoilEvalReport, command: &str) -> Result<Vec<PathBuf>> {
    let dir: &Path = &report.config.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("coils.md", markdown(report, command)),
        ("coils.csv", csv(report)),
        ("coils.json", serde_json::to_string_pretty(report)? + "\n"),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
