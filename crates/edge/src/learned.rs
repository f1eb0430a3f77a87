//! The full learned method (DESIGN §1): Lambda maps predicted by an ONNX model
//! ([`crate::lambda_net`]) from the slice's own k-space, then the core solve with the
//! model's iteration count `T` and low-pass weight `a` (`sparsemap.iterations`,
//! `sparsemap.lowpass_weight`). Planned once per model, dictionary and grid; every buffer,
//! including the Lambda maps, is owned here and reused for each slice.

use crate::lambda_net::{LambdaModel, LambdaPredictor};
use crate::runtime::{BackendKind, EdgeReconstructor};
use anyhow::{Context, Result};
use num_complex::Complex32;
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::{ReconConfig, ReconReport};
use sparsemap_core::Shape;

/// The model bundled with the binary (DESIGN §7: used when no `--model` is given):
/// `models/lambda/default.int8.onnx`, see its model card `models/README.md`.
pub const BUNDLED_MODEL: &[u8] = include_bytes!("../../../models/lambda/default.int8.onnx");
pub const BUNDLED_MODEL_NAME: &str = "default.int8 (bundled, models/lambda/default.int8.onnx)";
/// The dictionary the bundled model was selected with (`models/dictionaries/cdl_k32_s9.npy`).
pub const BUNDLED_MODEL_DICTIONARY: &[u8] =
    include_bytes!("../../../models/dictionaries/cdl_k32_s9.npy");
pub const BUNDLED_MODEL_DICTIONARY_NAME: &str =
    "cdl_k32_s9 (bundled, models/dictionaries/cdl_k32_s9.npy)";

/// What one learned reconstruction measured, besides the solver's report.
#[derive(Debug, Clone, Copy)]
pub struct LearnedReport {
    pub solve: ReconReport<f32>,
    /// Seconds spent on the features and the network.
    pub lambda_seconds: f64,
    /// Mean of the predicted Lambda over all filters and pixels (scaled-problem units).
    pub lambda_mean: f32,
}

/// Lambda network plus core solver for one dictionary and grid.
pub struct LearnedReconstructor {
    predictor: LambdaPredictor,
    solver: EdgeReconstructor,
    maps: Vec<f32>,
    config: ReconConfig<f32>,
}

impl LearnedReconstructor {
    /// `filters`: `[count][side][side]` row-major. Binds and optimises the network for this
    /// `K` and grid (errors name the model).
    pub fn new(
        model: &LambdaModel,
        backend: BackendKind,
        shape: Shape,
        filters: &[f32],
        count: usize,
        side: usize,
    ) -> Result<Self> {
        let (n_y, n_x) = (shape.n_y(), shape.n_x());
        let predictor = LambdaPredictor::new(model, filters, count, side, n_y, n_x)?;
        let solver = EdgeReconstructor::new(backend, shape, filters, count, side)?;
        let info = model.info();
        Ok(Self {
            predictor,
            solver,
            maps: vec![0.0; count * n_y * n_x],
            config: ReconConfig {
                iterations: info.iterations,
                lowpass_weight: info.lowpass_weight as f32,
            },
        })
    }

    /// Overrides the model's iteration count (the maps were trained for the model's `T`).
    pub fn with_iterations(mut self, iterations: usize) -> Self {
        self.config.iterations = iterations;
        self
    }

    /// The iteration count and low-pass weight the solve uses.
    pub fn config(&self) -> &ReconConfig<f32> {
        &self.config
    }

    /// Bytes of the solver's plan and workspace plus the Lambda maps (tract's own buffers
    /// are not counted).
    pub fn memory_bytes(&self) -> usize {
        self.solver.memory_bytes() + self.maps.len() * core::mem::size_of::<f32>()
    }

    /// The Lambda maps `[K][N_y][N_x]` of the last reconstruction.
    pub fn lambda_maps(&self) -> &[f32] {
        &self.maps
    }

    /// Reconstructs one slice into `image` (`kspace`, `mask` and `image` are `[N_y][N_x]`).
    pub fn reconstruct(
        &mut self,
        kspace: &[Complex32],
        mask: &[f32],
        image: &mut [Complex32],
    ) -> Result<LearnedReport> {
        let started = std::time::Instant::now();
        self.predictor
            .predict(kspace, mask, &mut self.maps)
            .context("predicting the Lambda maps")?;
        let lambda_seconds = started.elapsed().as_secs_f64();
        let solve =
            self.solver
                .reconstruct(kspace, mask, Lambda::Maps(&self.maps), &self.config, image)?;
        let lambda_mean = self.maps.iter().sum::<f32>() / self.maps.len() as f32;
        Ok(LearnedReport {
            solve,
            lambda_seconds,
            lambda_mean,
        })
    }
}
