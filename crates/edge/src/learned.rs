//! The full learned method (DESIGN §1): Lambda maps predicted by an ONNX model
//! ([`crate::lambda_net`]) from the slice's own k-space, then the core solve with the
//! model's iteration count `T` and low-pass weight `a` (`sparsemap.iterations`,
//! `sparsemap.lowpass_weight`). Planned once per model, dictionary and grid; every buffer,
//! including the Lambda maps, is owned here and reused for each slice.

use crate::lambda_net::{LambdaModel, LambdaPredictor, PredictTimes, DEFAULT_NETWORK_BATCH};
use crate::parallel::Threads;
use crate::runtime::{BackendKind, EdgeReconstructor, SliceData};
use anyhow::{Context, Result};
use num_complex::Complex32;
use sparsemap_core::dictionary::Dictionary;
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::{ReconConfig, ReconReport, BACKGROUND_GATE};
use sparsemap_core::Shape;
use std::time::Instant;

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
    /// Seconds spent on preparing the slice (masking, scale, low-pass split; one FFT).
    pub prepare_seconds: f64,
    /// Seconds spent on the features and the network.
    pub times: PredictTimes,
    /// Seconds spent in the FISTA solve and synthesis.
    pub solve_seconds: f64,
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
    /// Plans the dictionary on `shape` and binds and optimises the network for its `K`
    /// and grid, run on [`DEFAULT_NETWORK_BATCH`] filters at a time, for `threads` threads
    /// (errors name the model).
    pub fn new(
        model: &LambdaModel,
        backend: BackendKind,
        shape: Shape,
        dictionary: Dictionary<'_, f32>,
        threads: Threads,
    ) -> Result<Self> {
        Self::with_network_batch(
            model,
            backend,
            shape,
            dictionary,
            DEFAULT_NETWORK_BATCH,
            threads,
        )
    }

    /// [`Self::new`] with `batch` filters per network run (the maps do not depend on it;
    /// tract's memory grows with it and with the threads).
    pub fn with_network_batch(
        model: &LambdaModel,
        backend: BackendKind,
        shape: Shape,
        dictionary: Dictionary<'_, f32>,
        batch: usize,
        threads: Threads,
    ) -> Result<Self> {
        let count = dictionary.count();
        let solver = EdgeReconstructor::new(backend, shape, dictionary, threads)
            .with_context(|| format!("{}: planning the dictionary", model.name()))?;
        let predictor = LambdaPredictor::new(model, count, shape, batch)?;
        let info = model.info();
        Ok(Self {
            predictor,
            solver,
            maps: crate::limits::try_filled(count * shape.len(), 0.0)?,
            config: ReconConfig {
                iterations: info.iterations,
                lowpass_weight: info.lowpass_weight as f32,
                background_gate: Some(BACKGROUND_GATE as f32),
            },
        })
    }

    /// Sets the background gate's threshold (DESIGN §3.7 item 7); `None` turns it off.
    /// Learned reconstructions gate by default ([`BACKGROUND_GATE`]).
    pub fn with_background_gate(mut self, kappa: Option<f32>) -> Self {
        self.config.background_gate = kappa;
        self
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

    /// Bytes planned: the solver's dictionary plan and workspace, the Lambda maps, the
    /// shared feature channels and one network input. tract's intermediate tensors are not
    /// planned by us; the process's peak RSS ([`crate::memory`]) covers them.
    pub fn memory_bytes(&self) -> usize {
        self.solver.memory_bytes()
            + self.maps.len() * core::mem::size_of::<f32>()
            + self.predictor.planned_bytes()
    }

    /// Threads of the features, the network runs and the solve.
    pub fn threads(&self) -> Threads {
        self.solver.threads()
    }

    /// Filters per network run.
    pub fn network_batch(&self) -> usize {
        self.predictor.batch()
    }

    /// The Lambda maps `[K][N_y][N_x]` of the last reconstruction.
    pub fn lambda_maps(&self) -> &[f32] {
        &self.maps
    }

    /// Reconstructs one single-coil slice (`kspace`, `mask` `[N_y][N_x]`) into `image`
    /// ([`Self::reconstruct_data`]).
    pub fn reconstruct(
        &mut self,
        kspace: &[Complex32],
        mask: &[f32],
        image: &mut [Complex32],
    ) -> Result<LearnedReport> {
        self.reconstruct_data(SliceData::Single { kspace, mask }, image)
    }

    /// Reconstructs one slice into `image` (`[N_y][N_x]`): the core prepares the slice once
    /// (one coil, or several with their sensitivities: the features are those of the
    /// coil-combined data, DESIGN §3.4), the features and maps are computed from it, and the
    /// same prepared slice is solved.
    pub fn reconstruct_data(
        &mut self,
        data: SliceData<'_>,
        image: &mut [Complex32],
    ) -> Result<LearnedReport> {
        let Self {
            predictor,
            solver,
            maps,
            config,
        } = self;
        let started = Instant::now();
        let (times, prepare_seconds, solve, solve_seconds) =
            solver.with_slice(data, config.lowpass_weight, |prepared, pool| {
                let prepare_seconds = started.elapsed().as_secs_f64();
                let times = predictor
                    .predict(prepared, maps, pool)
                    .context("predicting the Lambda maps")?;
                let solve_started = Instant::now();
                let solve = prepared.solve_on(Lambda::Maps(maps), config, image, pool)?;
                Ok((
                    times,
                    prepare_seconds,
                    solve,
                    solve_started.elapsed().as_secs_f64(),
                ))
            })?;
        let lambda_mean = maps.iter().sum::<f32>() / maps.len() as f32;
        Ok(LearnedReport {
            solve,
            prepare_seconds,
            times,
            solve_seconds,
            lambda_mean,
        })
    }
}
