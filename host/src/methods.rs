//! The reconstruction methods that `eval` and `bench` compare, behind one interface.
//!
//! Every method takes centred k-space and a mask (DESIGN §3.1–3.2) and returns an image on the
//! scale of `F^H y`; every regularisation weight is in the *scaled* units of DESIGN §3.6
//! (data divided by the 99th percentile of the zero-filled magnitude), so one weight means
//! the same on every slice and can be tuned once on the validation split.
//!
//! | method | solver | iterations |
//! |---|---|---|
//! | zero-filled | `F^H y` | — |
//! | CSC, scalar λ | the edge runtime (core FISTA, bundled dictionary, low-pass weight 1) | 64 |
//! | TV | Chambolle–Pock in Rust ([`crate::baselines::tv`]) | 200 |
//! | BART ℓ1-wavelet | `bart pics -R W` (FISTA) | 100 |
//! | BART TV | `bart pics -R T` (ADMM; `-i` counts CG steps) | 100 |
//! | U-Net (only when asked: `--methods ...,unet --unet-model FILE`) | one network pass on `F^H y` | — |
//!
//! The iteration counts are fixed (as in the edge runtime) and recorded in every output.

use crate::baselines::unet::UnetPlan;
use crate::baselines::{tv_reconstruct, Bart};
use anyhow::{Context, Result};
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};
use sparsemap_core::dictionary::Dictionary;
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::fista::Lambda;
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::recon::ReconConfig;
use sparsemap_core::Shape;
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::learned::LearnedReconstructor;
use sparsemap_edge::parallel::Threads;
use sparsemap_edge::runtime::{BackendKind, EdgeReconstructor};
use std::path::{Path, PathBuf};

/// A reconstruction method of the comparison.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `F^H y`.
    ZeroFilled,
    /// Convolutional sparse coding with one scalar λ (the core solver).
    Csc,
    /// Isotropic total variation, Chambolle–Pock in Rust.
    Tv,
    /// BART `pics` with ℓ1-wavelet regularisation.
    BartWavelet,
    /// BART `pics` with total variation.
    BartTv,
    /// The learned method: Lambda maps from the f32 ONNX model, then the core solve with the
    /// model's iteration count and low-pass weight ([`LearnedSettings`]).
    LearnedF32,
    /// The same with the int8 model (what the edge box runs by default).
    LearnedInt8,
    /// The black-box learned baseline: a U-Net post-processing the zero-filled image
    /// ([`crate::baselines::unet`], `--unet-model`); no weight, no data consistency.
    Unet,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::ZeroFilled,
        Method::Csc,
        Method::Tv,
        Method::BartWavelet,
        Method::BartTv,
        Method::LearnedF32,
        Method::LearnedInt8,
        Method::Unet,
    ];

    /// Command-line and file name (kebab case).
    pub fn name(self) -> &'static str {
        match self {
            Method::ZeroFilled => "zero-filled",
            Method::Csc => "csc",
            Method::Tv => "tv",
            Method::BartWavelet => "bart-wavelet",
            Method::BartTv => "bart-tv",
            Method::LearnedF32 => "learned-f32",
            Method::LearnedInt8 => "learned-int8",
            Method::Unet => "unet",
        }
    }

    /// Name for tables and figures.
    pub fn label(self) -> &'static str {
        match self {
            Method::ZeroFilled => "zero-filled",
            Method::Csc => "CSC, scalar λ",
            Method::Tv => "TV (Chambolle–Pock)",
            Method::BartWavelet => "BART ℓ1-wavelet",
            Method::BartTv => "BART TV",
            Method::LearnedF32 => "learned Λ maps, f32",
            Method::LearnedInt8 => "learned Λ maps, int8",
            Method::Unet => "U-Net on zero-filled, f32",
        }
    }

    /// Whether the method has a regularisation weight to tune (the learned methods predict
    /// theirs, the U-Net has none): the classical baselines.
    pub fn is_tuned(self) -> bool {
        !matches!(
            self,
            Method::ZeroFilled | Method::LearnedF32 | Method::LearnedInt8 | Method::Unet
        )
    }

    pub fn is_learned(self) -> bool {
        matches!(self, Method::LearnedF32 | Method::LearnedInt8)
    }

    pub fn needs_bart(self) -> bool {
        matches!(self, Method::BartWavelet | Method::BartTv)
    }

    /// The coarse search interval of the weight (scaled units), wide enough that the optimum
    /// on our data lies strictly inside for every acquisition in `eval`'s default set (the
    /// tuning report flags an optimum on the border).
    pub fn lambda_range(self) -> (f32, f32) {
        match self {
            Method::ZeroFilled | Method::LearnedF32 | Method::LearnedInt8 | Method::Unet => {
                (0.0, 0.0)
            }
            Method::Csc => (0.002, 0.08),
            Method::Tv => (0.002, 0.08),
            Method::BartWavelet => (0.0001, 0.03),
            Method::BartTv => (0.002, 0.08),
        }
    }

    /// The weight used when nothing was tuned (the values tuned on the validation slice of
    /// examples/colin27 at n = 128, s = 0.15).
    pub fn default_lambda(self) -> f32 {
        match self {
            Method::ZeroFilled | Method::LearnedF32 | Method::LearnedInt8 | Method::Unet => 0.0,
            Method::Csc => 0.012,
            Method::Tv => 0.02,
            Method::BartWavelet => 0.001,
            Method::BartTv => 0.02,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Fixed iteration counts and the CSC solver's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub csc_iterations: usize,
    pub csc_lowpass_weight: f32,
    pub tv_iterations: usize,
    pub bart_wavelet_iterations: usize,
    pub bart_tv_iterations: usize,
    #[serde(default)]
    pub learned: LearnedSettings,
    /// The ONNX file of [`Method::Unet`] (`None`: the method cannot run).
    #[serde(default)]
    pub unet_model: Option<PathBuf>,
}

/// The models and dictionary of the learned methods. A relative path is looked up in the
/// working directory, then in the repository (so the defaults work from anywhere in it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LearnedSettings {
    pub model_f32: PathBuf,
    pub model_int8: PathBuf,
    pub dictionary: PathBuf,
    /// Threshold of the background gate (DESIGN §3.7 item 7), `None`: off. Results written
    /// before the gate existed read as `None` (they were not gated).
    #[serde(default)]
    pub background_gate: Option<f32>,
}

impl Default for LearnedSettings {
    fn default() -> Self {
        Self {
            model_f32: "models/lambda/default.f32.onnx".into(),
            model_int8: "models/lambda/default.int8.onnx".into(),
            dictionary: "models/dictionaries/cdl_k32_s9.npy".into(),
            background_gate: Some(sparsemap_core::recon::BACKGROUND_GATE as f32),
        }
    }
}

impl LearnedSettings {
    fn model(&self, method: Method) -> PathBuf {
        resolve(if method == Method::LearnedInt8 {
            &self.model_int8
        } else {
            &self.model_f32
        })
    }

    /// Plans `method`'s model with the dictionary on `shape` (errors name the file).
    fn plan(&self, method: Method, shape: Shape) -> Result<LearnedReconstructor> {
        let model = LambdaModel::from_path(&self.model(method))?;
        let dictionary = resolve(&self.dictionary);
        let filters = sparsemap_edge::npy::read_dictionary(&dictionary)?;
        LearnedReconstructor::new(
            &model,
            BackendKind::RustFft,
            shape,
            sparsemap_edge::npy::dictionary_view(&filters)?,
            // The host's comparisons run every method on one thread (bench: "ratios on one core").
            Threads::new(1),
        )
        .map(|learned| learned.with_background_gate(self.background_gate))
        .with_context(|| {
            format!(
                "planning {} with dictionary {}",
                self.model(method).display(),
                dictionary.display()
            )
        })
    }

    /// One sentence for the reports: the models, the dictionary and the background gate.
    pub fn describe(&self) -> String {
        let gate = match self.background_gate {
            Some(kappa) => format!("background gate κ = {kappa}"),
            None => "no background gate".to_string(),
        };
        format!(
            "Lambda models {} (f32) and {} (int8) with dictionary {}; the solve uses each \
             model's iteration count and low-pass weight; {gate} (docs/design.md §3.7 item 7)",
            self.model_f32.display(),
            self.model_int8.display(),
            self.dictionary.display()
        )
    }

    /// The model's iteration count (for the tables), checking on the way that the files load.
    pub fn iterations(&self, method: Method) -> Result<usize> {
        Ok(LambdaModel::from_path(&self.model(method))?
            .info()
            .iterations)
    }
}

fn resolve(path: &Path) -> PathBuf {
    let in_repo = Path::new(crate::REPO_ROOT).join(path);
    if path.is_relative() && !path.exists() && in_repo.exists() {
        in_repo
    } else {
        path.to_path_buf()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            csc_iterations: sparsemap_core::recon::ITERATIONS,
            csc_lowpass_weight: sparsemap_core::recon::LOWPASS_WEIGHT as f32,
            tv_iterations: 200,
            bart_wavelet_iterations: 100,
            bart_tv_iterations: 100,
            learned: LearnedSettings::default(),
            unet_model: None,
        }
    }
}

impl Settings {
    pub fn iterations(&self, method: Method) -> usize {
        match method {
            Method::ZeroFilled | Method::Unet => 0,
            Method::Csc => self.csc_iterations,
            Method::Tv => self.tv_iterations,
            Method::BartWavelet => self.bart_wavelet_iterations,
            Method::BartTv => self.bart_tv_iterations,
            // the model's own T (0 if its file cannot be read; running it says why)
            Method::LearnedF32 | Method::LearnedInt8 => {
                self.learned.iterations(method).unwrap_or(0)
            }
        }
    }
}

/// A dictionary for the CSC method: `filters` row-major `[count][side][side]`.
#[derive(Debug, Clone)]
pub struct CscDictionary {
    pub name: String,
    pub filters: Vec<f32>,
    pub count: usize,
    pub side: usize,
}

impl CscDictionary {
    /// The edge runtime's bundled dictionary (models/dictionaries/dct5.npy).
    pub fn bundled() -> Result<Self> {
        let array = sparsemap_edge::npy::dictionary_from_bytes(sparsemap_edge::BUNDLED_DICTIONARY)?;
        let (count, side, _) = array.dim();
        Ok(Self {
            name: sparsemap_edge::BUNDLED_DICTIONARY_NAME.to_string(),
            filters: array.iter().copied().collect(),
            count,
            side,
        })
    }
}

/// Runs any [`Method`] on one grid size; plans the CSC solver once and reuses its memory.
/// One runner per thread.
pub struct Runner {
    shape: Shape,
    settings: Settings,
    csc: EdgeReconstructor,
    fft: Fft2<RustFft<f32>>,
    bart: Option<Bart>,
    /// Planned on first use: tract's optimisation takes a moment, and most runs use one model.
    learned: Vec<(Method, LearnedReconstructor)>,
    /// Planned on first use, like the learned methods.
    unet: Option<UnetPlan>,
    mask_weights: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl Runner {
    /// `with_bart`: locate the `bart` executable now (an error if it is missing) so that a
    /// long evaluation does not fail half-way.
    pub fn new(
        shape: Shape,
        dictionary: &CscDictionary,
        settings: Settings,
        with_bart: bool,
    ) -> Result<Self> {
        let csc = EdgeReconstructor::new(
            BackendKind::RustFft,
            shape,
            Dictionary::new(&dictionary.filters, dictionary.count, dictionary.side)?,
            Threads::new(1),
        )
        .with_context(|| {
            format!(
                "planning the CSC solver with dictionary {}",
                dictionary.name
            )
        })?;
        let fft = Fft2::new(RustFft::new(shape));
        let scratch_len = LinearOperator::<f32>::scratch_len(&CentredFourier { fft: &fft });
        let scratch = vec![Complex32::default(); scratch_len];
        let bart = if with_bart { Some(Bart::new()?) } else { None };
        Ok(Self {
            shape,
            settings,
            csc,
            fft,
            bart,
            learned: Vec::new(),
            unet: None,
            mask_weights: vec![0.0; shape.len()],
            scratch,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reconstructs one slice with `method` at weight `lambda` (ignored by zero-filled).
    pub fn run(
        &mut self,
        method: Method,
        lambda: f32,
        kspace: ArrayView2<'_, Complex32>,
        mask: ArrayView2<'_, bool>,
    ) -> Result<Array2<Complex32>> {
        let dims = (self.shape.n_y(), self.shape.n_x());
        anyhow::ensure!(
            kspace.dim() == dims && mask.dim() == dims,
            "k-space {:?} and mask {:?} must both be {dims:?}",
            kspace.dim(),
            mask.dim()
        );
        // Every solver applies `y <- M (.) y` itself (DESIGN §3.7 step 1); only the zero-filled
        // image is formed here.
        match method {
            Method::ZeroFilled | Method::Unet => {
                let masked: Vec<Complex32> = kspace
                    .iter()
                    .zip(mask.iter())
                    .map(|(&v, &m)| if m { v } else { Complex32::default() })
                    .collect();
                let mut image = vec![Complex32::default(); self.shape.len()];
                CentredFourier { fft: &self.fft }.adjoint(&masked, &mut image, &mut self.scratch);
                if method == Method::Unet {
                    self.unet_plan()?.run(&mut image)?;
                }
                Ok(Array2::from_shape_vec(dims, image).expect("n_y * n_x values"))
            }
            Method::Csc | Method::LearnedF32 | Method::LearnedInt8 => {
                let learned = if method.is_learned() {
                    Some(self.learned_position(method)?)
                } else {
                    None
                };
                for (w, &m) in self.mask_weights.iter_mut().zip(mask.iter()) {
                    *w = if m { 1.0 } else { 0.0 };
                }
                let copy: Vec<Complex32>;
                let data = match kspace.as_slice() {
                    Some(data) => data,
                    None => {
                        copy = kspace.iter().copied().collect();
                        &copy
                    }
                };
                let mut image = Array2::<Complex32>::zeros(dims);
                let out = image.as_slice_mut().expect("fresh arrays are contiguous");
                match learned {
                    Some(position) => {
                        self.learned[position]
                            .1
                            .reconstruct(data, &self.mask_weights, out)?;
                    }
                    None => {
                        let config = ReconConfig {
                            iterations: self.settings.csc_iterations,
                            lowpass_weight: self.settings.csc_lowpass_weight,
                            background_gate: None,
                        };
                        self.csc.reconstruct(
                            data,
                            &self.mask_weights,
                            Lambda::Scalar(lambda),
                            &config,
                            out,
                        )?;
                    }
                }
                Ok(image)
            }
            Method::Tv => tv_reconstruct(kspace, mask, lambda, self.settings.tv_iterations),
            Method::BartWavelet => self.bart()?.pics_l1_wavelet(
                kspace,
                mask,
                lambda,
                self.settings.bart_wavelet_iterations,
            ),
            Method::BartTv => {
                self.bart()?
                    .pics_tv(kspace, mask, lambda, self.settings.bart_tv_iterations)
            }
        }
    }

    /// Index in `self.learned` of `method`'s reconstructor, planned on first use.
    fn learned_position(&mut self, method: Method) -> Result<usize> {
        if let Some(position) = self.learned.iter().position(|(m, _)| *m == method) {
            return Ok(position);
        }
        let planned = self.settings.learned.plan(method, self.shape)?;
        self.learned.push((method, planned));
        Ok(self.learned.len() - 1)
    }

    fn unet_plan(&mut self) -> Result<&mut UnetPlan> {
        if self.unet.is_none() {
            let path = self.settings.unet_model.as_ref().context(
                "the U-Net method needs a model: pass --unet-model FILE (make one with \
                 `python -m sparsemap_train.unet`)",
            )?;
            self.unet = Some(UnetPlan::new(&resolve(path), self.shape)?);
        }
        Ok(self.unet.as_mut().expect("planned above"))
    }

    fn bart(&self) -> Result<&Bart> {
        self.bart
            .as_ref()
            .context("this runner was created without BART (internal error)")
    }
}
