//! The Lambda network (DESIGN §4): load an ONNX sparsity-map model, check its contract, compute
//! its input features from the k-space and the dictionary, and run it with tract.
//!
//! * [`LambdaModel`] — the parsed file and its validated `metadata_props` ([`ModelInfo`]).
//!   Unknown `sparsemap.version` or `sparsemap.features` values are errors naming the file.
//! * [`LambdaPlan`] — the model with `K`, `N_y` and `N_x` bound to concrete values, then
//!   optimised (tract picks its direct convolutions only for concrete shapes) and made
//!   runnable. Plan once per dictionary and grid, run per slice.
//! * [`LambdaPredictor`] — features ([`crate::features`], from the core's prepared slice) and
//!   the network for one dictionary size and grid. The network's batch axis is the filter
//!   axis and it treats filters independently (DESIGN §4.1), so the predictor runs it on a
//!   few filters at a time: tract's intermediate tensors are then those of `batch` filters,
//!   not `K`, which bounds the memory of a slice (the maps are identical).

use crate::features::{PreparedSlice, SliceFeatures, FEATURE_CHANNELS};
use anyhow::{anyhow, ensure, Context, Result};
use sparsemap_core::Shape;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

/// The contract version this runtime understands (`sparsemap.version`).
pub const CONTRACT_VERSION: &str = "1";
/// The only feature list this runtime computes (`sparsemap.features`).
pub const FEATURES_V1: &str =
    "v1:corr_highpass_abs_over_sqrt_lipschitz,zero_filled_abs,corr_highpass_abs_filter_mean";
/// Name of the model's input tensor.
pub const INPUT_NAME: &str = "features";
/// Name of the model's output tensor.
pub const OUTPUT_NAME: &str = "lambda";

/// The validated `metadata_props` of a Lambda model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// FISTA iteration count the maps were trained for (`sparsemap.iterations`).
    pub iterations: usize,
    /// Low-pass weight `a` used for the features and the solve (`sparsemap.lowpass_weight`).
    pub lowpass_weight: f64,
    /// Upper bound of the predicted Lambda (`sparsemap.lambda_max`).
    pub lambda_max: f64,
    /// `N_y` and `N_x` must be multiples of this (`sparsemap.grid_multiple`).
    pub grid_multiple: usize,
    /// `f32` or `int8` (`sparsemap.precision`; informative).
    pub precision: String,
    /// Free text (`sparsemap.description`; informative).
    pub description: String,
}

/// A parsed Lambda model whose metadata this runtime understands.
pub struct LambdaModel {
    name: String,
    proto: ModelProto,
    info: ModelInfo,
}

fn prop<'a>(props: &'a HashMap<String, String>, name: &str, key: &str) -> Result<&'a str> {
    props.get(key).map(String::as_str).ok_or_else(|| {
        anyhow!("{name}: not a sparsemap Lambda model (metadata_props has no {key})")
    })
}

impl LambdaModel {
    /// Reads and validates an ONNX file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and validates ONNX bytes; `name` (a path) is used in error messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .with_context(|| format!("{name}: not an ONNX model"))?;
        let props: HashMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let version = prop(&props, name, "sparsemap.version")?;
        ensure!(
            version == CONTRACT_VERSION,
            "{name}: unsupported sparsemap.version {version:?} (this runtime understands {CONTRACT_VERSION:?})"
        );
        let features = prop(&props, name, "sparsemap.features")?;
        ensure!(
            features == FEATURES_V1,
            "{name}: unknown sparsemap.features {features:?} (this runtime computes {FEATURES_V1:?})"
        );
        let parse_f64 = |key: &str| -> Result<f64> {
            let text = prop(&props, name, key)?;
            let v: f64 = text
                .parse()
                .map_err(|_| anyhow!("{name}: {key} = {text:?} is not a number"))?;
            ensure!(
                v.is_finite() && v >= 0.0,
                "{name}: {key} = {v} must be finite and >= 0"
            );
            Ok(v)
        };
        let parse_usize = |key: &str| -> Result<usize> {
            let text = prop(&props, name, key)?;
            text.parse()
                .map_err(|_| anyhow!("{name}: {key} = {text:?} is not a non-negative integer"))
        };
        let info = ModelInfo {
            iterations: parse_usize("sparsemap.iterations")?,
            lowpass_weight: parse_f64("sparsemap.lowpass_weight")?,
            lambda_max: parse_f64("sparsemap.lambda_max")?,
            grid_multiple: parse_usize("sparsemap.grid_multiple")?,
            precision: props
                .get("sparsemap.precision")
                .cloned()
                .unwrap_or_default(),
            description: props
                .get("sparsemap.description")
                .cloned()
                .unwrap_or_default(),
        };
        ensure!(
            info.grid_multiple >= 1 && info.grid_multiple % 4 == 0,
            "{name}: sparsemap.grid_multiple = {} (the features need N_y, N_x multiples of 4)",
            info.grid_multiple
        );
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| anyhow!("{name}: the ONNX file has no graph"))?;
        let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        ensure!(
            inputs == [INPUT_NAME] && outputs == [OUTPUT_NAME],
            "{name}: expected one input {INPUT_NAME:?} and one output {OUTPUT_NAME:?}, got {inputs:?} -> {outputs:?}"
        );
        Ok(Self {
            name: name.to_string(),
            proto,
            info,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Binds `K`, `N_y`, `N_x` and optimises: the only expensive step, done once per
    /// dictionary and grid.
    pub fn plan(&self, count: usize, n_y: usize, n_x: usize) -> Result<LambdaPlan> {
        let name = &self.name;
        let m = self.info.grid_multiple;
        ensure!(count >= 1, "{name}: K must be >= 1");
        ensure!(
            n_y % m == 0 && n_x % m == 0,
            "{name}: the grid {n_y}x{n_x} is not a multiple of {m} (sparsemap.grid_multiple)"
        );
        let mut model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .model_for_proto_model(&self.proto)
            .with_context(|| format!("{name}: tract cannot load the model"))?;
        model
            .set_input_fact(0, f32::fact([count, FEATURE_CHANNELS, n_y, n_x]).into())
            .with_context(|| format!("{name}: binding K = {count}, N = {n_y}x{n_x}"))?;
        let optimized = model.into_optimized().with_context(|| {
            format!("{name}: tract cannot optimise the model for K = {count}, N = {n_y}x{n_x}")
        })?;
        let ops = optimized
            .nodes()
            .iter()
            .map(|n| OpInfo {
                node: n.name.clone(),
                op: n.op().name().to_string(),
                output: n
                    .outputs
                    .first()
                    .map(|o| format!("{:?}", o.fact.datum_type))
                    .unwrap_or_default(),
            })
            .collect();
        let runnable = optimized
            .into_runnable()
            .with_context(|| format!("{name}: tract cannot plan the model"))?;
        Ok(LambdaPlan {
            name: name.clone(),
            runnable,
            count,
            n_y,
            n_x,
            ops,
        })
    }
}

/// One node of the optimised tract graph (for showing which kernels run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpInfo {
    pub node: String,
    pub op: String,
    /// Datum type of the node's first output (e.g. `F32`, `U8`, `I32`).
    pub output: String,
}

/// A Lambda model optimised for one `K` and grid.
pub struct LambdaPlan {
    name: String,
    runnable: Arc<TypedRunnableModel>,
    count: usize,
    n_y: usize,
    n_x: usize,
    ops: Vec<OpInfo>,
}

impl LambdaPlan {
    /// The nodes of the optimised graph, in order.
    pub fn ops(&self) -> &[OpInfo] {
        &self.ops
    }

    /// Runs the network on features `[K][3][N_y][N_x]` and writes Lambda maps
    /// `[K][N_y][N_x]` (scaled-problem units) into `lambda`.
    pub fn run(&self, features: &[f32], lambda: &mut [f32]) -> Result<()> {
        let (k, ny, nx) = (self.count, self.n_y, self.n_x);
        ensure!(
            features.len() == k * FEATURE_CHANNELS * ny * nx,
            "features have {} values, expected K * 3 * N_y * N_x = {}",
            features.len(),
            k * FEATURE_CHANNELS * ny * nx
        );
        ensure!(
            lambda.len() == k * ny * nx,
            "lambda buffer has {} values, expected {}",
            lambda.len(),
            k * ny * nx
        );
        let input = Tensor::from_shape(&[k, FEATURE_CHANNELS, ny, nx], features)?;
        self.run_tensor(input, lambda)
    }

    /// [`Self::run`] on a ready input tensor `[K, 3, N_y, N_x]`.
    pub fn run_tensor(&self, input: Tensor, lambda: &mut [f32]) -> Result<()> {
        let (k, ny, nx) = (self.count, self.n_y, self.n_x);
        ensure!(
            input.shape() == [k, FEATURE_CHANNELS, ny, nx] && lambda.len() == k * ny * nx,
            "{}: network input {:?} / output {} values do not fit K = {k}, {ny}x{nx}",
            self.name,
            input.shape(),
            lambda.len()
        );
        let out = self
            .runnable
            .run(tvec!(input.into()))
            .with_context(|| format!("{}: tract failed to run the model", self.name))?;
        let out = out[0].cast_to::<f32>()?;
        ensure!(
            out.shape() == [k, 1, ny, nx],
            "{}: output has shape {:?}, expected [{k}, 1, {ny}, {nx}]",
            self.name,
            out.shape()
        );
        let plain = out.try_as_plain_ram()?;
        lambda.copy_from_slice(plain.as_slice::<f32>()?);
        Ok(())
    }
}

/// Filters per network run by default: small enough that tract's intermediate tensors stay a
/// few MB at 256², large enough that per-run overhead is negligible.
pub const DEFAULT_NETWORK_BATCH: usize = 8;

/// Where the time of one prediction went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PredictTimes {
    /// Filter correlations, `|x0|` and the filter mean (seconds).
    pub features: f64,
    /// The network runs, including building their inputs (seconds).
    pub network: f64,
}

/// Features and network for one filter count and grid: a prepared slice in, Lambda maps out.
pub struct LambdaPredictor {
    shape: Shape,
    count: usize,
    batch: usize,
    features: SliceFeatures,
    plan: LambdaPlan,
    /// For `K % batch` filters left over, when `batch` does not divide `K`.
    tail: Option<LambdaPlan>,
}

impl LambdaPredictor {
    /// Plans the network for runs of `batch` filters (clamped to `1..=K`) on `shape`.
    pub fn new(model: &LambdaModel, count: usize, shape: Shape, batch: usize) -> Result<Self> {
        let batch = batch.clamp(1, count.max(1));
        let plan = model.plan(batch, shape.n_y(), shape.n_x())?;
        let tail = match count % batch {
            0 => None,
            rest => Some(model.plan(rest, shape.n_y(), shape.n_x())?),
        };
        Ok(Self {
            shape,
            count,
            batch,
            features: SliceFeatures::new(shape, count),
            plan,
            tail,
        })
    }

    pub fn plan(&self) -> &LambdaPlan {
        &self.plan
    }

    /// Filters per network run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Bytes planned per slice besides the maps: the shared feature channels and the input
    /// tensor of one run (tract's own intermediate tensors are measured, not planned).
    pub fn planned_bytes(&self) -> usize {
        self.features.memory_bytes()
            + self.batch * FEATURE_CHANNELS * self.shape.len() * std::mem::size_of::<f32>()
    }

    /// Predicts Lambda maps `[K][N_y][N_x]` into `maps` for a prepared slice. `maps` first
    /// holds the filter correlations (channel 0), each run of filters is then overwritten
    /// by its maps: the correlations of later runs are still intact when they are read.
    pub fn predict(
        &mut self,
        prepared: &mut dyn PreparedSlice,
        maps: &mut [f32],
    ) -> Result<PredictTimes> {
        let started = Instant::now();
        self.features.compute(prepared, maps)?;
        let features = started.elapsed().as_secs_f64();
        let n = self.shape.len();
        let mut first = 0;
        while first < self.count {
            let len = self.batch.min(self.count - first);
            let plan = if len == self.batch {
                &self.plan
            } else {
                self.tail.as_ref().expect("a tail plan exists when batch does not divide K")
            };
            let mut input = Tensor::zero::<f32>(&[len, FEATURE_CHANNELS, self.shape.n_y(), self.shape.n_x()])?;
            self.features.write_filters(
                maps,
                first..first + len,
                input.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
            );
            plan.run_tensor(input, &mut maps[first * n..(first + len) * n])?;
            first += len;
        }
        Ok(PredictTimes {
            features,
            network: started.elapsed().as_secs_f64() - features,
        })
    }
}
