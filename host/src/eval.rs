//! `sparsemap-host eval`: every method on the same simulated low-field data, each tuned on the
//! validation split only, then measured on the test split and the out-of-distribution sets.
//!
//! Protocol (what the tables mean):
//! 1. For each acquisition (mask and noise level), the validation and test targets are
//!    simulated with [`crate::simulate::simulate_slice`], seeded by the acquisition, the split
//!    and the slice (recorded in `eval.json`), so every method sees identical k-space.
//! 2. Tuning: for each method with a weight, a coarse log-spaced grid over
//!    [`Method::lambda_range`] (extended by one step, up to three times, while the best value
//!    sits on the border), then two refinements at half and quarter steps around the best.
//!    The criterion is the mean whole-image PSNR over the validation slices.
//! 3. The tuned weight is used unchanged on the test split, and the weight tuned for the
//!    out-of-distribution acquisition on the Colin27 validation split is used on the
//!    out-of-distribution sets (MNI152 T1, synthetic T2): nothing is tuned on them.
//! 4. Metrics ([`crate::metrics`]) on magnitudes normalised by the target's maximum, on the
//!    whole 256×256 image and inside the export's head mask.
//!
//! Outputs in the output directory: `table.md` and `table.csv` (mean ± std per dataset,
//! acquisition and method), `tuning.csv` (every weight tried), `eval.json` (settings, seeds
//! and per-slice results) and `figure_<acquisition>.png` (truth, each method, error maps).
//!
//! `eval --per-source` ([`sources`]) runs the same search and measurements per data source,
//! with the weights tuned on the pooled validation slices of the sources.

use crate::dataset::{read_split, Orientation, Split};
use crate::figure::{write_grid, Tile};
use crate::methods::{CscDictionary, Method, Runner, Settings};
use crate::metrics::{self, Dims};
use crate::simulate::{simulate_slice, Acquisition, MaskKind};
use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sparsemap_core::Shape;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

pub mod sources;

/// A mask and a noise level, written `MASK@NOISE`: `block128@0.15` (central 128×128 block),
/// `vd4@0.15` (1-D variable density, 4× acceleration, 16 central lines), `poisson4@0.15`
/// (2-D Poisson disc, 4×, 16×16 centre).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionSpec {
    pub label: String,
    pub mask: MaskKind,
    pub noise: f64,
}

/// Fully sampled central lines of the random masks.
pub const RANDOM_MASK_CENTRE: usize = 16;

impl std::str::FromStr for AcquisitionSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let (mask_text, noise_text) = text.split_once('@').with_context(|| {
            format!("acquisition {text:?}: expected MASK@NOISE, e.g. block128@0.15")
        })?;
        let noise: f64 = noise_text.parse().with_context(|| {
            format!("acquisition {text:?}: noise {noise_text:?} is not a number")
        })?;
        ensure!(
            (0.0..=1.0).contains(&noise),
            "acquisition {text:?}: noise must be in [0, 1] (relative to the k-space RMS)"
        );
        let number = |prefix: &str| -> Result<f64> {
            mask_text[prefix.len()..].parse().with_context(|| {
                format!("acquisition {text:?}: {mask_text:?} needs a number after {prefix:?}")
            })
        };
        let mask = if mask_text.starts_with("block") {
            let size = number("block")?;
            ensure!(
                size.fract() == 0.0 && size > 0.0,
                "acquisition {text:?}: block size must be a positive integer"
            );
            MaskKind::CentralBlock {
                size: size as usize,
            }
        } else if mask_text.starts_with("vd") {
            MaskKind::VariableDensity1d {
                acceleration: number("vd")?,
                centre_lines: RANDOM_MASK_CENTRE,
            }
        } else if mask_text.starts_with("poisson") {
            MaskKind::PoissonDisc2d {
                acceleration: number("poisson")?,
                centre: RANDOM_MASK_CENTRE,
            }
        } else {
            bail!("acquisition {text:?}: mask must be blockN, vdR or poissonR");
        };
        Ok(Self {
            label: format!("{mask_text}@{noise}"),
            mask,
            noise,
        })
    }
}

impl AcquisitionSpec {
    /// The simulation of one split: the seed mixes the base seed with the split's name so
    /// that validation and test never share a noise realisation.
    pub fn acquisition(&self, seed: u64, split: &str) -> Acquisition {
        let mut hash = seed ^ 0x9e37_79b9_7f4a_7c15;
        for byte in split.bytes().chain(self.label.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Acquisition {
            mask: self.mask,
            noise: self.noise,
            seed: hash,
        }
    }

    /// File-name friendly label (`block128_s0.15`).
    pub fn file_label(&self) -> String {
        self.label.replace('@', "_s")
    }
}

#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub acquisitions: Vec<AcquisitionSpec>,
    /// The acquisition of the out-of-distribution sets (must be one of `acquisitions`).
    pub ood_acquisition: Option<AcquisitionSpec>,
    pub methods: Vec<Method>,
    pub settings: Settings,
    /// Evenly spaced subset of the validation split used for tuning (`None`: all).
    pub validation_slices: Option<usize>,
    /// Evenly spaced subset of each evaluated set (`None`: all).
    pub test_slices: Option<usize>,
    /// Points of the coarse weight grid (≥ 2).
    pub grid_points: usize,
    pub seed: u64,
    pub threads: usize,
    pub figures: bool,
    /// What the weights are tuned for.
    pub criterion: Criterion,
    /// An earlier `eval.json` whose results for methods *not* in `methods` are carried over
    /// (same seed, validation and test slices; checked), so that adding a method does not
    /// re-tune and re-run the others. Their figure columns are reconstructed again.
    pub reuse: Option<PathBuf>,
}

/// The tuning criterion: mean PSNR over the validation slices on the whole image (the
/// default, the number the tables lead with) or inside the head mask only (background noise
/// then costs nothing, which favours weaker regularisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    Whole,
    Head,
}

/// One reconstruction's measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SliceResult {
    pub dataset: String,
    pub acquisition: String,
    pub method: Method,
    pub lambda: f32,
    pub slice: usize,
    pub psnr: f64,
    pub ssim: f64,
    pub nrmse: f64,
    pub psnr_head: f64,
    pub ssim_head: f64,
    pub nrmse_head: f64,
    pub seconds: f64,
}

/// One point of a weight search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuningPoint {
    pub acquisition: String,
    pub method: Method,
    pub lambda: f32,
    pub mean_psnr: f64,
    pub mean_psnr_head: f64,
}

/// The tuned weight of one method for one acquisition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tuned {
    pub acquisition: String,
    pub method: Method,
    pub lambda: f32,
    /// Mean validation PSNR (dB) under the tuning criterion at `lambda`.
    pub validation_psnr: f64,
    /// The best weight was at the edge of everything tried (the search range is too narrow).
    pub on_border: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub tool: String,
    pub settings: Settings,
    pub dictionary: String,
    pub seed: u64,
    pub criterion: Criterion,
    pub acquisitions: Vec<AcquisitionSpec>,
    pub validation_slices: Vec<usize>,
    pub tuned: Vec<Tuned>,
    pub tuning: Vec<TuningPoint>,
    pub results: Vec<SliceResult>,
    pub outputs: Vec<PathBuf>,
}

/// A simulated slice ready for every method.
struct Case {
    index: usize,
    target_magnitude: Vec<f64>,
    head_mask: Vec<bool>,
    kspace: Array2<Complex32>,
    mask: Array2<bool>,
}

/// Runners for the worker threads, created once (planning the CSC solver allocates
/// tens of MB) and lent to one job at a time.
struct RunnerPool {
    shape: Shape,
    dictionary: CscDictionary,
    settings: Settings,
    with_bart: bool,
    idle: Mutex<Vec<Runner>>,
}

impl RunnerPool {
    fn with<R>(&self, job: impl FnOnce(&mut Runner) -> Result<R>) -> Result<R> {
        let taken = self.idle.lock().expect("runner pool poisoned").pop();
        let mut runner = match taken {
            Some(runner) => runner,
            None => Runner::new(
                self.shape,
                &self.dictionary,
                self.settings.clone(),
                self.with_bart,
            )?,
        };
        let result = job(&mut runner);
        self.idle.lock().expect("runner pool poisoned").push(runner);
        result
    }
}

pub(crate) fn evenly_spaced(count: usize, wanted: Option<usize>) -> Vec<usize> {
    match wanted {
        Some(w) if w < count && w > 0 => (0..w)
            .map(|i| (i * (count - 1) + (w - 1) / 2) / (w - 1).max(1))
            .map(|i| i.min(count - 1))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        _ => (0..count).collect(),
    }
}

fn simulate_cases(
    split: &Split,
    indices: &[usize],
    spec: &AcquisitionSpec,
    seed: u64,
) -> Result<Vec<Case>> {
    let acquisition = spec.acquisition(seed, &split.name);
    indices
        .par_iter()
        .map(|&index| {
            let target = split.targets.index_axis(ndarray::Axis(0), index);
            let simulated =
                simulate_slice(target, &acquisition, index as u64).with_context(|| {
                    format!("simulating {} slice {index} ({})", split.name, spec.label)
                })?;
            Ok(Case {
                index,
                target_magnitude: target.iter().map(|v| f64::from(v.norm())).collect(),
                head_mask: split
                    .head_masks
                    .index_axis(ndarray::Axis(0), index)
                    .iter()
                    .copied()
                    .collect(),
                kspace: simulated.kspace,
                mask: simulated.mask,
            })
        })
        .collect()
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

/// Runs `method` at `lambda` on every case, in parallel; also returns the image of slice
/// `keep` (for the figures) so that it need not be reconstructed twice.
fn run_cases(
    pool: &RunnerPool,
    cases: &[Case],
    (method, lambda): (Method, f32),
    dataset: &str,
    acquisition: &str,
    keep: Option<usize>,
    progress: &ProgressBar,
) -> Result<(Vec<SliceResult>, Option<Array2<Complex32>>)> {
    let measured: Vec<(SliceResult, Option<Array2<Complex32>>)> = cases
        .par_iter()
        .map(|case| {
            let started = Instant::now();
            let image = pool
                .with(|runner| runner.run(method, lambda, case.kspace.view(), case.mask.view()))
                .with_context(|| {
                    format!(
                        "{method} (lambda {lambda}) on {dataset} slice {}",
                        case.index
                    )
                })?;
            let seconds = started.elapsed().as_secs_f64();
            let (whole, head) = measure(case, image.view())?;
            progress.inc(1);
            let result = SliceResult {
                dataset: dataset.to_string(),
                acquisition: acquisition.to_string(),
                method,
                lambda,
                slice: case.index,
                psnr: whole.psnr,
                ssim: whole.ssim,
                nrmse: whole.nrmse,
                psnr_head: head.psnr,
                ssim_head: head.ssim,
                nrmse_head: head.nrmse,
                seconds,
            };
            Ok((result, (keep == Some(case.index)).then_some(image)))
        })
        .collect::<Result<_>>()?;
    let mut kept = None;
    let results = measured
        .into_iter()
        .map(|(result, image)| {
            kept = kept.take().or(image);
            result
        })
        .collect();
    Ok((results, kept))
}

pub(crate) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

pub(crate) fn mean_std(values: &[f64]) -> (f64, f64) {
    let m = mean(values.iter().copied());
    let var = mean(values.iter().map(|v| (v - m) * (v - m)));
    (m, var.sqrt())
}

/// How weights are searched (module docs, step 2).
#[derive(Debug, Clone, Copy)]
struct Search {
    grid_points: usize,
    criterion: Criterion,
}

/// Grid search of one method's weight on the validation cases (module docs, step 2).
fn tune(
    pool: &RunnerPool,
    cases: &[Case],
    method: Method,
    spec: &AcquisitionSpec,
    search: Search,
    progress: &ProgressBar,
    points: &mut Vec<TuningPoint>,
) -> Result<Tuned> {
    let Search {
        grid_points,
        criterion,
    } = search;
    let (lambda, validation_psnr, on_border) =
        search_weight(method.lambda_range(), grid_points, |lambda| {
            progress.set_message(format!(
                "tuning {method} on {} (lambda {lambda:.4})",
                spec.label
            ));
            let results = run_cases(
                pool,
                cases,
                (method, lambda),
                "validation",
                &spec.label,
                None,
                progress,
            )?
            .0;
            let mean_psnr = mean(results.iter().map(|r| r.psnr));
            let mean_psnr_head = mean(results.iter().map(|r| r.psnr_head));
            points.push(TuningPoint {
                acquisition: spec.label.clone(),
                method,
                lambda,
                mean_psnr,
                mean_psnr_head,
            });
            Ok(match criterion {
                Criterion::Whole => mean_psnr,
                Criterion::Head => mean_psnr_head,
            })
        })?;
    Ok(Tuned {
        acquisition: spec.label.clone(),
        method,
        lambda,
        validation_psnr,
        on_border,
    })
}

/// The weight search of the module docs (step 2), for any criterion: a log grid of
/// `grid_points` (at least 2) over `range`, extended by one step up to three times while the
/// best value sits on the border, then two refinements at half and quarter steps around the
/// best. `score(lambda)` is called once per distinct weight (higher is better). Returns the
/// best weight, its score and whether it lies on the border of the weights tried.
pub(crate) fn search_weight(
    (lo, hi): (f32, f32),
    grid_points: usize,
    mut score: impl FnMut(f32) -> Result<f64>,
) -> Result<(f32, f64, bool)> {
    let grid_points = grid_points.max(2);
    let step = (hi / lo).powf(1.0 / (grid_points - 1) as f32);
    let mut tried: Vec<(f32, f64)> = Vec::new();
    let mut evaluate = |lambdas: &[f32], tried: &mut Vec<(f32, f64)>| -> Result<()> {
        for &lambda in lambdas {
            if tried.iter().any(|&(l, _)| (l / lambda - 1.0).abs() < 1e-4) {
                continue;
            }
            tried.push((lambda, score(lambda)?));
        }
        Ok(())
    };
    let grid: Vec<f32> = (0..grid_points).map(|i| lo * step.powi(i as i32)).collect();
    evaluate(&grid, &mut tried)?;
    let best = |tried: &[(f32, f64)]| {
        tried
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least two weights were tried")
    };
    // Extend past the border while the optimum sits on it.
    for _ in 0..3 {
        let (best_lambda, _) = best(&tried);
        let smallest = tried.iter().map(|t| t.0).fold(f32::INFINITY, f32::min);
        let largest = tried.iter().map(|t| t.0).fold(0.0, f32::max);
        if best_lambda <= smallest * 1.0001 {
            evaluate(&[smallest / step], &mut tried)?;
        } else if best_lambda >= largest * 0.9999 {
            evaluate(&[largest * step], &mut tried)?;
        } else {
            break;
        }
    }
    for fraction in [0.5f32, 0.25] {
        let (best_lambda, _) = best(&tried);
        let factor = step.powf(fraction);
        evaluate(&[best_lambda / factor, best_lambda * factor], &mut tried)?;
    }
    let (lambda, value) = best(&tried);
    let smallest = tried.iter().map(|t| t.0).fold(f32::INFINITY, f32::min);
    let largest = tried.iter().map(|t| t.0).fold(0.0, f32::max);
    Ok((
        lambda,
        value,
        lambda <= smallest * 1.0001 || lambda >= largest * 0.9999,
    ))
}

pub(crate) fn load(data_dir: &Path, name: &str) -> Result<Split> {
    let path = data_dir.join(format!("{name}.npz"));
    if !path.exists() {
        bail!(
            "{}: not found; run `sparsemap-host export --out-dir {}` first",
            path.display(),
            data_dir.display()
        );
    }
    read_split(&path)
}

/// The slice shown in the figures: the bundled example slice (Colin27 axial 90) when the
/// test split has it, else the middle slice.
fn figure_slice(split: &Split, indices: &[usize]) -> usize {
    indices
        .iter()
        .copied()
        .find(|&i| {
            let meta = &split.slices[i];
            meta.volume == "colin27_t1"
                && meta.index == 90
                && meta.orientation == Orientation::Axial
        })
        .unwrap_or(indices[indices.len() / 2])
}

/// Checks what every mode of `eval` needs before anything is loaded.
fn check_config(config: &EvalConfig) -> Result<()> {
    ensure!(!config.methods.is_empty(), "no methods to evaluate");
    ensure!(
        !config.acquisitions.is_empty(),
        "no acquisitions to evaluate"
    );
    for &method in config.methods.iter().filter(|m| m.is_learned()) {
        config.settings.learned.iterations(method)?;
    }
    if config.methods.contains(&Method::Unet) {
        ensure!(
            config.settings.unet_model.is_some(),
            "--methods unet needs --unet-model FILE (make one with `python -m sparsemap_train.unet`)"
        );
    }
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))
}

/// The runners and worker threads of one run (shared by [`run`] and [`sources::run`]).
struct Engine {
    pool: RunnerPool,
    threads: rayon::ThreadPool,
    dictionary: CscDictionary,
    search: Search,
}

impl Engine {
    /// `extra`: methods run besides `config.methods` (carried over for the figures).
    fn new(config: &EvalConfig, shape: Shape, extra: &[Method]) -> Result<Self> {
        let dictionary = CscDictionary::bundled()?;
        let pool = RunnerPool {
            shape,
            dictionary: dictionary.clone(),
            settings: config.settings.clone(),
            with_bart: config.methods.iter().chain(extra).any(|m| m.needs_bart()),
            idle: Mutex::new(Vec::new()),
        };
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .build()
            .context("starting the worker threads")?;
        Ok(Self {
            pool,
            threads,
            dictionary,
            search: Search {
                grid_points: config.grid_points,
                criterion: config.criterion,
            },
        })
    }

    /// Reconstructions of one weight search over `slices` validation slices (at most the
    /// grid, three extensions and two refinements of two weights).
    fn per_tuning(&self, slices: usize) -> usize {
        (self.search.grid_points.max(2) + 7) * slices
    }

    /// Tunes every method of `methods` that has a weight on `cases` (module docs, step 2);
    /// returns the weight of each method in order (0 for the untuned ones) and records the
    /// search in `tuning` and `tuned`.
    fn tune_methods(
        &self,
        cases: &[Case],
        methods: &[Method],
        spec: &AcquisitionSpec,
        progress: &ProgressBar,
        (tuning, tuned_out): (&mut Vec<TuningPoint>, &mut Vec<Tuned>),
    ) -> Result<Vec<(Method, f32)>> {
        let mut lambdas = Vec::with_capacity(methods.len());
        for &method in methods {
            if !method.is_tuned() {
                lambdas.push((method, 0.0));
                continue;
            }
            let tuned = tune(
                &self.pool,
                cases,
                method,
                spec,
                self.search,
                progress,
                tuning,
            )?;
            progress.suspend(|| {
                eprintln!(
                    "tuned {method} on {}: lambda {} (validation PSNR {:.2} dB)",
                    spec.label, tuned.lambda, tuned.validation_psnr
                );
                if tuned.on_border {
                    eprintln!(
                        "warning: {method} on {}: the best weight {} is on the border of the search",
                        spec.label, tuned.lambda
                    );
                }
            });
            lambdas.push((method, tuned.lambda));
            tuned_out.push(tuned);
        }
        Ok(lambdas)
    }
}

fn progress_bar(total: usize) -> ProgressBar {
    ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} recons (~{eta} left) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    )
}

fn grid_shape(split: &Split) -> Result<Shape> {
    let (_, n_y, n_x) = split.targets.dim();
    Shape::new(n_y, n_x).map_err(|e| anyhow::anyhow!("grid {n_y}x{n_x}: {e:?}"))
}

pub fn run(config: &EvalConfig) -> Result<EvalReport> {
    check_config(config)?;
    let validation = load(&config.data_dir, "validation")?;
    let test = load(&config.data_dir, "test")?;
    let mut ood: Vec<Split> = Vec::new();
    if config.ood_acquisition.is_some() {
        for name in ["ood_mni152_t1", "ood_synthetic_t2"] {
            let path = config.data_dir.join(format!("{name}.npz"));
            if path.exists() {
                ood.push(read_split(&path)?);
            } else {
                eprintln!(
                    "note: {} not found (export without the MNI152 files?); skipping it",
                    path.display()
                );
            }
        }
    }
    let validation_indices = evenly_spaced(validation.targets.dim().0, config.validation_slices);
    let test_indices = evenly_spaced(test.targets.dim().0, config.test_slices);
    let reused = match &config.reuse {
        Some(path) => Some(Reused::read(
            path,
            config,
            &validation_indices,
            &test_indices,
        )?),
        None => None,
    };
    let carried: Vec<Method> = reused
        .as_ref()
        .map(|r| r.methods.clone())
        .unwrap_or_default();
    let engine = Engine::new(config, grid_shape(&test)?, &carried)?;
    let pool = &engine.pool;

    let tuned_methods = config.methods.iter().filter(|m| m.is_tuned()).count();
    // Progress in reconstructions.
    let per_tuning = engine.per_tuning(validation_indices.len());
    let ood_total: usize = ood
        .iter()
        .map(|s| evenly_spaced(s.targets.dim().0, config.test_slices).len())
        .sum();
    let total = config.acquisitions.len()
        * (tuned_methods * per_tuning + config.methods.len() * test_indices.len())
        + config.methods.len() * ood_total;
    let progress = progress_bar(total);

    let mut report = EvalReport {
        tool: format!("sparsemap-host {}", env!("CARGO_PKG_VERSION")),
        settings: config.settings.clone(),
        dictionary: engine.dictionary.name.clone(),
        seed: config.seed,
        criterion: config.criterion,
        acquisitions: config.acquisitions.clone(),
        validation_slices: validation_indices.clone(),
        tuned: Vec::new(),
        tuning: Vec::new(),
        results: Vec::new(),
        outputs: Vec::new(),
    };

    engine.threads.install(|| -> Result<()> {
        for spec in &config.acquisitions {
            let validation_cases =
                simulate_cases(&validation, &validation_indices, spec, config.seed)?;
            let mut carried_lambdas: Vec<(Method, f32)> = vec![];
            if let Some(reused) = &reused {
                carried_lambdas = reused.carry(&spec.label, &mut report);
            }
            let lambdas = engine.tune_methods(
                &validation_cases,
                &config.methods,
                spec,
                &progress,
                (&mut report.tuning, &mut report.tuned),
            )?;
            drop(validation_cases);
            progress.set_message(format!("test split, {}", spec.label));
            let test_cases = simulate_cases(&test, &test_indices, spec, config.seed)?;
            let mut figure_images: Vec<(Method, Array2<Complex32>)> = Vec::new();
            let shown = figure_slice(&test, &test_indices);
            if config.figures {
                let case = test_cases
                    .iter()
                    .find(|c| c.index == shown)
                    .expect("the shown slice is simulated");
                for &(method, lambda) in &carried_lambdas {
                    let image =
                        pool.with(|r| r.run(method, lambda, case.kspace.view(), case.mask.view()))?;
                    figure_images.push((method, image));
                }
            }
            for &(method, lambda) in &lambdas {
                let keep = config.figures.then_some(shown);
                let (results, image) = run_cases(
                    pool,
                    &test_cases,
                    (method, lambda),
                    "test",
                    &spec.label,
                    keep,
                    &progress,
                )?;
                report.results.extend(results);
                if let Some(image) = image {
                    figure_images.push((method, image));
                }
            }
            if config.figures {
                let path = config
                    .out_dir
                    .join(format!("figure_{}.png", spec.file_label()));
                write_figure(&path, &test, shown, &figure_images, &spec.label)?;
                report.outputs.push(path);
            }
            if config.ood_acquisition.as_ref() == Some(spec) {
                for split in &ood {
                    progress.set_message(format!("{}, {}", split.name, spec.label));
                    let indices = evenly_spaced(split.targets.dim().0, config.test_slices);
                    let cases = simulate_cases(split, &indices, spec, config.seed)?;
                    for &(method, lambda) in &lambdas {
                        report.results.extend(
                            run_cases(
                                pool,
                                &cases,
                                (method, lambda),
                                &split.name,
                                &spec.label,
                                None,
                                &progress,
                            )?
                            .0,
                        );
                    }
                }
            }
            write_outputs(&config.out_dir, &mut report)?;
        }
        Ok(())
    })?;
    progress.finish_and_clear();

    write_outputs(&config.out_dir, &mut report)?;
    Ok(report)
}

/// Reads an `eval.json` written by [`run`].
pub fn read_report(json: &Path) -> Result<EvalReport> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not an eval.json written by `sparsemap-host eval`",
            json.display()
        )
    })
}

/// The results of an earlier run that are carried over ([`EvalConfig::reuse`]).
struct Reused {
    report: EvalReport,
    /// Methods of the earlier run that this run does not run, in the earlier order.
    methods: Vec<Method>,
}

/// The methods of an earlier run's `results` that this run does not run (`--reuse`), in the
/// earlier order, each checked to have run with this run's iteration count.
fn carried_methods(
    path: &Path,
    results: &[SliceResult],
    then: &Settings,
    config: &EvalConfig,
) -> Result<Vec<Method>> {
    let mut methods: Vec<Method> = Vec::new();
    for r in results {
        if !config.methods.contains(&r.method) && !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    if methods.contains(&Method::Unet) {
        ensure!(
            then.unet_model == config.settings.unet_model,
            "{}: the U-Net ran with {:?}, this run's is {:?}; pass unet in --methods to run it \
             with this run's model",
            path.display(),
            then.unet_model,
            config.settings.unet_model
        );
    }
    for &method in &methods {
        let (then, now) = (then.iterations(method), config.settings.iterations(method));
        ensure!(
            then == now,
            "{}: {method} ran with {then} iterations, this run's settings say {now}",
            path.display()
        );
    }
    Ok(methods)
}

/// `--reuse` of an earlier report (plain or per-source): it must have been made with this
/// run's seed and tuning criterion, or its rows are not comparable.
pub(crate) fn ensure_same_run(
    path: &Path,
    (earlier_seed, earlier_criterion): (u64, Criterion),
    (seed, criterion): (u64, Criterion),
) -> Result<()> {
    ensure!(
        earlier_seed == seed && earlier_criterion == criterion,
        "{}: made with seed {earlier_seed} and tuning criterion {earlier_criterion:?}, this run uses {seed} and {criterion:?}",
        path.display()
    );
    Ok(())
}

impl Reused {
    fn read(
        path: &Path,
        config: &EvalConfig,
        validation_indices: &[usize],
        test_indices: &[usize],
    ) -> Result<Self> {
        let report = read_report(path)?;
        let name = path.display();
        ensure_same_run(
            path,
            (report.seed, report.criterion),
            (config.seed, config.criterion),
        )?;
        ensure!(
            report.validation_slices == validation_indices,
            "{name}: tuned on validation slices {:?}, this run uses {:?}",
            report.validation_slices,
            validation_indices
        );
        let methods = carried_methods(path, &report.results, &report.settings, config)?;
        for spec in &config.acquisitions {
            for &method in &methods {
                let mut slices: Vec<usize> = report
                    .results
                    .iter()
                    .filter(|r| {
                        r.dataset == "test" && r.acquisition == spec.label && r.method == method
                    })
                    .map(|r| r.slice)
                    .collect();
                slices.sort_unstable();
                ensure!(
                    slices == test_indices,
                    "{name}: {method} on {} has test slices {slices:?}, this run uses {test_indices:?}",
                    spec.label
                );
            }
        }
        Ok(Self { report, methods })
    }

    /// Moves the carried methods' tuning and results for `acquisition` into `report`;
    /// returns their weights.
    fn carry(&self, acquisition: &str, report: &mut EvalReport) -> Vec<(Method, f32)> {
        let carried = |m: Method| self.methods.contains(&m);
        report.tuned.extend(
            self.report
                .tuned
                .iter()
                .filter(|t| t.acquisition == acquisition && carried(t.method))
                .cloned(),
        );
        report.tuning.extend(
            self.report
                .tuning
                .iter()
                .filter(|t| t.acquisition == acquisition && carried(t.method))
                .cloned(),
        );
        report.results.extend(
            self.report
                .results
                .iter()
                .filter(|r| r.acquisition == acquisition && carried(r.method))
                .cloned(),
        );
        self.methods
            .iter()
            .map(|&m| {
                let lambda = self
                    .report
                    .results
                    .iter()
                    .find(|r| r.acquisition == acquisition && r.method == m)
                    .map_or(0.0, |r| r.lambda);
                (m, lambda)
            })
            .collect()
    }
}

/// Rewrites `table.md`, `table.csv` and `tuning.csv` in `out_dir` from an earlier `eval.json`
/// (no reconstruction is run), e.g. after a change to the table layout.
pub fn rerender(json: &Path, out_dir: &Path) -> Result<EvalReport> {
    let mut report = read_report(json)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    write_outputs(out_dir, &mut report)?;
    Ok(report)
}

/// Writes the tables, the tuning log and `eval.json` for the results so far (also after
/// every acquisition, so that a long run that is interrupted keeps what it measured).
fn write_outputs(out_dir: &Path, report: &mut EvalReport) -> Result<()> {
    let write = |name: &str, text: String| -> Result<PathBuf> {
        let path = out_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let table = summarise(&report.results);
    let written = [
        write("table.md", markdown(&table, report))?,
        write("table.csv", table_csv(&table))?,
        write("tuning.csv", tuning_csv(&report.tuning))?,
        out_dir.join("eval.json"),
    ];
    for path in written {
        if !report.outputs.contains(&path) {
            report.outputs.push(path);
        }
    }
    write("eval.json", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

/// Mean ± std of one (dataset, acquisition, method) group.
#[derive(Debug, Clone)]
pub struct Row {
    pub dataset: String,
    pub acquisition: String,
    pub method: Method,
    pub lambda: f32,
    pub slices: usize,
    pub psnr: (f64, f64),
    pub ssim: (f64, f64),
    pub nrmse: (f64, f64),
    pub psnr_head: (f64, f64),
    pub ssim_head: (f64, f64),
    pub seconds: f64,
}

pub fn summarise(results: &[SliceResult]) -> Vec<Row> {
    let mut keys: Vec<(String, String, Method)> = Vec::new();
    for r in results {
        let key = (r.dataset.clone(), r.acquisition.clone(), r.method);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(dataset, acquisition, method)| {
            let group: Vec<&SliceResult> = results
                .iter()
                .filter(|r| {
                    r.dataset == dataset && r.acquisition == acquisition && r.method == method
                })
                .collect();
            let stat = |f: fn(&SliceResult) -> f64| {
                mean_std(&group.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            Row {
                lambda: group[0].lambda,
                slices: group.len(),
                psnr: stat(|r| r.psnr),
                ssim: stat(|r| r.ssim),
                nrmse: stat(|r| r.nrmse),
                psnr_head: stat(|r| r.psnr_head),
                ssim_head: stat(|r| r.ssim_head),
                seconds: mean(group.iter().map(|r| r.seconds)),
                dataset,
                acquisition,
                method,
            }
        })
        .collect()
}

fn markdown(rows: &[Row], report: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# sparsemap-host eval\n");
    let _ = writeln!(
        out,
        "{}; CSC dictionary: {}; iterations: CSC {}, TV {}, BART wavelet {}, BART TV {} (CG steps); seed {}.",
        report.tool,
        report.dictionary,
        report.settings.csc_iterations,
        report.settings.tv_iterations,
        report.settings.bart_wavelet_iterations,
        report.settings.bart_tv_iterations,
        report.seed
    );
    if report.results.iter().any(|r| r.method.is_learned()) {
        let _ = writeln!(
            out,
            "Learned methods: {}.",
            report.settings.learned.describe()
        );
    }
    let _ = writeln!(
        out,
        "Weights (λ, scaled units) tuned on {} validation slices by mean {} PSNR; \
         mean ± std over slices; PSNR/SSIM on magnitudes normalised by max|target|, whole \
         256×256 image and inside the head mask. Time: mean wall seconds per slice in this run \
         (parallel workers, so only for orientation; see `sparsemap-host bench`).\n",
        report.validation_slices.len(),
        match report.criterion {
            Criterion::Whole => "whole-image",
            Criterion::Head => "head-mask",
        }
    );
    let mut datasets: Vec<&str> = Vec::new();
    for r in rows {
        if !datasets.contains(&r.dataset.as_str()) {
            datasets.push(&r.dataset);
        }
    }
    for dataset in datasets {
        let _ = writeln!(out, "## {dataset}\n");
        let _ = writeln!(
            out,
            "| acquisition | method | λ | slices | PSNR (dB) | SSIM | PSNR head (dB) | SSIM head | NRMSE | s/slice |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for r in rows.iter().filter(|r| r.dataset == dataset) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} ± {:.2} | {:.4} ± {:.4} | {:.2} ± {:.2} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.2} |",
                r.acquisition,
                r.method.label(),
                if !r.method.is_tuned() {
                    "—".into()
                } else if r.lambda >= 1e-3 {
                    format!("{:.4}", r.lambda)
                } else {
                    format!("{:.1e}", r.lambda)
                },
                r.slices,
                r.psnr.0, r.psnr.1,
                r.ssim.0, r.ssim.1,
                r.psnr_head.0, r.psnr_head.1,
                r.ssim_head.0, r.ssim_head.1,
                r.nrmse.0, r.nrmse.1,
                r.seconds,
            );
        }
        let _ = writeln!(out);
    }
    let figures: Vec<_> = report
        .outputs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    if !figures.is_empty() {
        let _ = writeln!(
            out,
            "Figures (columns: target, then {}; top row magnitude on the target's window, bottom \
             row |error| × 5 on the same window):\n",
            report
                .results
                .iter()
                .map(|r| r.method)
                .fold(Vec::new(), |mut v, m| {
                    if !v.contains(&m) {
                        v.push(m);
                    }
                    v
                })
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for path in figures {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = writeln!(out, "![{name}]({name})");
        }
    }
    out
}

fn table_csv(rows: &[Row]) -> String {
    table_csv_with(rows, "dataset")
}

/// [`table_csv`] with another name for the first column (`source` in `sources.csv`).
fn table_csv_with(rows: &[Row], first_column: &str) -> String {
    let mut out = format!(
        "{first_column},acquisition,method,lambda,slices,psnr_mean,psnr_std,ssim_mean,ssim_std,psnr_head_mean,psnr_head_std,ssim_head_mean,ssim_head_std,nrmse_mean,nrmse_std,seconds_per_slice\n"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.4},{:.4},{:.5},{:.5},{:.4},{:.4},{:.5},{:.5},{:.5},{:.5},{:.3}",
            r.dataset,
            r.acquisition,
            r.method,
            r.lambda,
            r.slices,
            r.psnr.0,
            r.psnr.1,
            r.ssim.0,
            r.ssim.1,
            r.psnr_head.0,
            r.psnr_head.1,
            r.ssim_head.0,
            r.ssim_head.1,
            r.nrmse.0,
            r.nrmse.1,
            r.seconds
        );
    }
    out
}

fn tuning_csv(points: &[TuningPoint]) -> String {
    let mut out =
        String::from("acquisition,method,lambda,validation_psnr_mean,validation_psnr_head_mean\n");
    for p in points {
        let _ = writeln!(
            out,
            "{},{},{},{:.4},{:.4}",
            p.acquisition, p.method, p.lambda, p.mean_psnr, p.mean_psnr_head
        );
    }
    out
}

fn write_figure(
    path: &Path,
    split: &Split,
    index: usize,
    images: &[(Method, Array2<Complex32>)],
    title: &str,
) -> Result<()> {
    let target = split.targets.index_axis(ndarray::Axis(0), index);
    let (n_y, n_x) = target.dim();
    let truth: Vec<f32> = target.iter().map(|v| v.norm()).collect();
    let mut top = vec![Tile {
        values: truth.clone(),
    }];
    let mut bottom = vec![Tile {
        values: vec![0.0; truth.len()],
    }];
    for (_, image) in images {
        let magnitude: Vec<f32> = image.iter().map(|v| v.norm()).collect();
        bottom.push(Tile {
            values: magnitude
                .iter()
                .zip(&truth)
                .map(|(a, b)| 5.0 * (a - b).abs())
                .collect(),
        });
        top.push(Tile { values: magnitude });
    }
    let white = truth.iter().copied().fold(0.0f32, f32::max);
    let caption = format!(
        "{title}; {} slice {}; columns: target, {}; rows: magnitude, |error| x 5",
        split.name,
        index,
        images
            .iter()
            .map(|(m, _)| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    write_grid(path, n_y, n_x, &[top, bottom], white, &caption)
}
