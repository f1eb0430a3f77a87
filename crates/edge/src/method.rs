//! What reconstructs a slice: the learned method (a Lambda model and its dictionary) or fixed
//! sparsity levels, chosen once from the command line ([`MethodSpec`]) and planned once per
//! grid ([`PlannedMethod`]). `recon --kspace`, `recon --input` and `serve` share it, so a
//! slice that arrives over the wire is reconstructed by exactly the code that reconstructs
//! the same k-space from `.npy` files.

use crate::lambda_net::{LambdaModel, DEFAULT_NETWORK_BATCH};
use crate::learned::LearnedReconstructor;
use crate::npy;
use crate::parallel::Threads;
use crate::runtime::{BackendKind, EdgeReconstructor, SliceData};
use anyhow::{bail, Context, Result};
use ndarray::{Array3, ArrayD};
use num_complex::Complex32;
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::{ReconConfig, ReconReport, ITERATIONS, LOWPASS_WEIGHT};
use sparsemap_core::Shape;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Fixed sparsity levels (no model).
pub enum FixedLambda {
    Scalar(f32),
    /// `[K]` per filter or `[K, n_y, n_x]` maps, read from `path`.
    File(PathBuf, ArrayD<f32>),
}

impl FixedLambda {
    /// A number, or the path of an `.npy` file.
    pub fn parse(text: &str) -> Result<Self> {
        if let Ok(value) = text.parse::<f32>() {
            if !value.is_finite() || value < 0.0 {
                bail!("--lambda {text}: must be a finite number >= 0");
            }
            return Ok(Self::Scalar(value));
        }
        let path = PathBuf::from(text);
        if !path.exists() {
            bail!("--lambda {text}: neither a number nor an existing .npy file");
        }
        let array = npy::read_lambda(&path)?;
        Ok(Self::File(path, array))
    }

    fn describe(&self) -> String {
        match self {
            Self::Scalar(v) => format!("{v}"),
            Self::File(path, _) => path.display().to_string(),
        }
    }
}

/// Where the sparsity levels come from.
pub enum Sparsity {
    Fixed(FixedLambda),
    Model(LambdaModel),
}

impl Sparsity {
    /// The background gate when the user names none (DESIGN §3.7 item 7): on for a model,
    /// off for fixed levels.
    pub fn default_background_gate(&self) -> Option<f32> {
        match self {
            Self::Model(_) => Some(sparsemap_core::recon::BACKGROUND_GATE as f32),
            Self::Fixed(_) => None,
        }
    }
}

/// A `--background-gate` value: a finite threshold `kappa > 0`, or `off` (`None`).
pub fn parse_background_gate(text: &str) -> std::result::Result<Option<f32>, String> {
    if text == "off" {
        return Ok(None);
    }
    match text.parse::<f32>() {
        Ok(kappa) if kappa.is_finite() && kappa > 0.0 => Ok(Some(kappa)),
        _ => Err(format!(
            "--background-gate {text}: expected a finite number > 0 or `off`"
        )),
    }
}

/// The method, as the user chose it; plan it per grid with [`MethodSpec::plan`].
pub struct MethodSpec {
    pub sparsity: Sparsity,
    /// `[K, s, s]`.
    pub dictionary: Array3<f32>,
    pub dictionary_name: String,
    /// Overrides the model's `T` (or the default 64 with fixed levels).
    pub iterations: Option<usize>,
    /// With fixed levels only (a model fixes its own `a`).
    pub lowpass_weight: Option<f32>,
    /// Threshold of the background gate (DESIGN §3.7 item 7); `None`: off.
    pub background_gate: Option<f32>,
    pub backend: BackendKind,
    /// Filters per network run.
    pub network_batch: usize,
    /// Threads of one slice's reconstruction (`--threads`); the image does not depend on it.
    pub threads: Threads,
}

impl MethodSpec {
    /// The bundled int8 model and its dictionary.
    pub fn bundled() -> Result<Self> {
        let sparsity = Sparsity::Model(LambdaModel::from_bytes(
            crate::learned::BUNDLED_MODEL,
            crate::learned::BUNDLED_MODEL_NAME,
        )?);
        Ok(Self {
            background_gate: sparsity.default_background_gate(),
            sparsity,
            dictionary: npy::dictionary_from_bytes(crate::learned::BUNDLED_MODEL_DICTIONARY)?,
            dictionary_name: crate::learned::BUNDLED_MODEL_DICTIONARY_NAME.to_string(),
            iterations: None,
            lowpass_weight: None,
            backend: BackendKind::RustFft,
            network_batch: DEFAULT_NETWORK_BATCH,
            threads: Threads::new(crate::parallel::available_threads()),
        })
    }

    /// Filters `K` and side `s` of the dictionary.
    pub fn dictionary_size(&self) -> (usize, usize) {
        let (count, side, _) = self.dictionary.dim();
        (count, side)
    }

    /// The model's name and precision, `None` with fixed levels.
    pub fn model_name(&self) -> Option<String> {
        match &self.sparsity {
            Sparsity::Model(model) => {
                Some(format!("{} ({})", model.name(), model.info().precision))
            }
            Sparsity::Fixed(_) => None,
        }
    }

    /// The iteration count and low-pass weight the solve uses.
    pub fn config(&self) -> ReconConfig<f32> {
        match &self.sparsity {
            Sparsity::Model(model) => ReconConfig {
                iterations: self.iterations.unwrap_or(model.info().iterations),
                lowpass_weight: model.info().lowpass_weight as f32,
                background_gate: self.background_gate,
            },
            Sparsity::Fixed(_) => ReconConfig {
                iterations: self.iterations.unwrap_or(ITERATIONS),
                lowpass_weight: self.lowpass_weight.unwrap_or(LOWPASS_WEIGHT as f32),
                background_gate: self.background_gate,
            },
        }
    }

    /// Plans the dictionary (and the network) on `shape`. Errors name the model and the
    /// dictionary, e.g. a filter larger than the grid or a grid the model cannot take.
    pub fn plan(self: &Arc<Self>, shape: Shape) -> Result<PlannedMethod> {
        let dictionary = npy::dictionary_view(&self.dictionary)
            .with_context(|| format!("dictionary {}", self.dictionary_name))?;
        let (count, side) = self.dictionary_size();
        crate::limits::check_filters(count, side)
            .and_then(|()| crate::limits::check_filter_pixels(count, shape.n_y(), shape.n_x()))
            .with_context(|| format!("dictionary {}", self.dictionary_name))?;
        let config = self.config();
        crate::limits::check_iterations(config.iterations, "iterations T")?;
        let planned = match &self.sparsity {
            Sparsity::Model(model) => {
                let learned = LearnedReconstructor::with_network_batch(
                    model,
                    self.backend,
                    shape,
                    dictionary,
                    self.network_batch,
                    self.threads,
                )
                .with_context(|| {
                    format!(
                        "model {} with dictionary {} on a {}x{} grid",
                        model.name(),
                        self.dictionary_name,
                        shape.n_y(),
                        shape.n_x()
                    )
                })?;
                Planned::Learned(
                    learned
                        .with_iterations(config.iterations)
                        .with_background_gate(config.background_gate),
                )
            }
            Sparsity::Fixed(lambda) => {
                if let FixedLambda::File(path, array) = lambda {
                    let (count, _) = self.dictionary_size();
                    let fits = array.shape() == [count]
                        || array.shape() == [count, shape.n_y(), shape.n_x()];
                    if !fits {
                        bail!(
                            "{}: lambda has shape {:?}, but the dictionary has K={count} filters and the image is {}x{}: expected [{count}] or [{count}, {}, {}]",
                            path.display(),
                            array.shape(),
                            shape.n_y(),
                            shape.n_x(),
                            shape.n_y(),
                            shape.n_x()
                        );
                    }
                }
                Planned::Fixed(
                    EdgeReconstructor::new(self.backend, shape, dictionary, self.threads)
                        .with_context(|| format!("dictionary {}", self.dictionary_name))?,
                )
            }
        };
        Ok(PlannedMethod {
            spec: Arc::clone(self),
            shape,
            config,
            planned,
        })
    }
}

enum Planned {
    Learned(LearnedReconstructor),
    Fixed(EdgeReconstructor),
}

/// Where one slice's reconstruction time went (seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ReconTimes {
    /// Masking, scale, low-pass split (one FFT).
    pub prepare: f64,
    /// Lambda-network features (0 with fixed levels).
    pub features: f64,
    /// Lambda network (0 with fixed levels).
    pub network: f64,
    /// FISTA and synthesis.
    pub solve: f64,
}

/// One slice's result besides the image.
#[derive(Debug, Clone)]
pub struct SliceResult {
    pub report: ReconReport<f32>,
    pub times: ReconTimes,
    /// What the levels were, for the provenance.
    pub lambda: String,
}

/// A method planned for one grid: reconstructs any number of slices of that grid.
pub struct PlannedMethod {
    spec: Arc<MethodSpec>,
    shape: Shape,
    config: ReconConfig<f32>,
    planned: Planned,
}

impl PlannedMethod {
    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn config(&self) -> ReconConfig<f32> {
        self.config
    }

    pub fn spec(&self) -> &MethodSpec {
        &self.spec
    }

    /// Upper bound of the predicted maps (`sparsemap.lambda_max`; 0 with fixed levels).
    pub fn lambda_max(&self) -> f32 {
        match &self.spec.sparsity {
            Sparsity::Model(model) => model.info().lambda_max as f32,
            Sparsity::Fixed(_) => 0.0,
        }
    }

    /// Bytes planned (see [`LearnedReconstructor::memory_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        match &self.planned {
            Planned::Learned(l) => l.memory_bytes(),
            Planned::Fixed(f) => f.memory_bytes(),
        }
    }

    /// The Lambda maps `[K][n_y][n_x]` of the last slice, for the learned method.
    pub fn lambda_maps(&self) -> Option<&[f32]> {
        match &self.planned {
            Planned::Learned(l) => Some(l.lambda_maps()),
            Planned::Fixed(_) => None,
        }
    }

    /// Reconstructs one slice (`[n_y][n_x]` k-space, mask non-zero where sampled) into
    /// `image`.
    pub fn reconstruct(
        &mut self,
        kspace: &[Complex32],
        mask: &[f32],
        image: &mut [Complex32],
    ) -> Result<SliceResult> {
        self.reconstruct_data(SliceData::Single { kspace, mask }, image)
    }

    /// Reconstructs one slice of one coil or of several ([`SliceData`]) into `image`
    /// (`[n_y][n_x]`).
    pub fn reconstruct_data(
        &mut self,
        data: SliceData<'_>,
        image: &mut [Complex32],
    ) -> Result<SliceResult> {
        match (&mut self.planned, &self.spec.sparsity) {
            (Planned::Learned(learned), Sparsity::Model(model)) => {
                let r = learned.reconstruct_data(data, image)?;
                Ok(SliceResult {
                    report: r.solve,
                    times: ReconTimes {
                        prepare: r.prepare_seconds,
                        features: r.times.features,
                        network: r.times.network,
                        solve: r.solve_seconds,
                    },
                    lambda: format!("maps from {} (mean {:.6})", model.name(), r.lambda_mean),
                })
            }
            (Planned::Fixed(solver), Sparsity::Fixed(fixed)) => {
                let lambda = match fixed {
                    FixedLambda::Scalar(v) => Lambda::Scalar(*v),
                    FixedLambda::File(path, array) => {
                        let values = array.as_slice().with_context(|| {
                            format!("{}: lambda array is not contiguous", path.display())
                        })?;
                        if array.ndim() == 1 {
                            Lambda::PerBlock(values)
                        } else {
                            Lambda::Maps(values)
                        }
                    }
                };
                let config = self.config;
                let started = Instant::now();
                let (prepare, report) =
                    solver.with_slice(data, config.lowpass_weight, |prepared, pool| {
                        let prepare = started.elapsed().as_secs_f64();
                        Ok((prepare, prepared.solve_on(lambda, &config, image, pool)?))
                    })?;
                Ok(SliceResult {
                    report,
                    times: ReconTimes {
                        prepare,
                        solve: started.elapsed().as_secs_f64() - prepare,
                        ..ReconTimes::default()
                    },
                    lambda: fixed.describe(),
                })
            }
            _ => bail!("the planned method does not match its specification"),
        }
    }
}
