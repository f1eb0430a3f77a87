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
use crate::guard::catch_panic;
use crate::limits;
use crate::parallel::WorkerPool;
use anyhow::{anyhow, ensure, Context, Result};
use sparsemap_core::fista::Executor;
use sparsemap_core::Shape;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};
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

/// Parses ONNX bytes (at most [`limits::MAX_MODEL_BYTES`]) behind [`catch_panic`]: the model
/// and its `metadata_props` as a map. `name` (a path) is used in error messages. Shared by
/// the Lambda models and the host's U-Net baseline.
pub fn parse_onnx(bytes: &[u8], name: &str) -> Result<(ModelProto, HashMap<String, String>)> {
    ensure!(
        bytes.len() as u64 <= limits::MAX_MODEL_BYTES,
        "{name}: {} bytes is larger than any valid model (limit {} bytes)",
        bytes.len(),
        limits::MAX_MODEL_BYTES
    );
    let proto = catch_panic(name, "the ONNX parser", || {
        tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| anyhow!("{name}: not an ONNX model: {e}"))
    })?;
    let props = proto
        .metadata_props
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    Ok((proto, props))
}

fn prop<'a>(props: &'a HashMap<String, String>, name: &str, key: &str) -> Result<&'a str> {
    props.get(key).map(String::as_str).ok_or_else(|| {
        anyhow!("{name}: not a sparsemap Lambda model (metadata_props has no {key})")
    })
}

impl LambdaModel {
    /// Reads and validates an ONNX file (a regular file of at most
    /// [`limits::MAX_MODEL_BYTES`]).
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = limits::read_regular_file(path, limits::MAX_MODEL_BYTES, "model")?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and validates ONNX bytes; `name` (a path) is used in error messages. The graph
    /// is checked against the contract's limits ([`check_graph`]) before tract sees it, and
    /// tract runs behind [`catch_panic`].
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let (proto, props) = parse_onnx(bytes, name)?;
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
        limits::check_iterations(info.iterations, "sparsemap.iterations")
            .with_context(|| name.to_string())?;
        for (key, value) in [
            ("sparsemap.lowpass_weight", info.lowpass_weight),
            ("sparsemap.lambda_max", info.lambda_max),
        ] {
            ensure!(
                (value as f32).is_finite(),
                "{name}: {key} = {value} overflows float32"
            );
        }
        ensure!(
            info.lambda_max > 0.0,
            "{name}: sparsemap.lambda_max = 0: every map would be zero"
        );
        ensure!(
            (1..=limits::MAX_GRID_SIDE).contains(&info.grid_multiple),
            "{name}: sparsemap.grid_multiple = {} must be 1..={}",
            info.grid_multiple,
            limits::MAX_GRID_SIDE
        );
        ensure!(
            info.grid_multiple.is_multiple_of(4),
            "{name}: sparsemap.grid_multiple = {} (the features need N_y, N_x multiples of 4)",
            info.grid_multiple
        );
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| anyhow!("{name}: the ONNX file has no graph"))?;
        check_graph(graph).with_context(|| name.to_string())?;
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
        let (runnable, ops) = catch_panic(name, "tract's model planning", || {
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
            let ops: Vec<OpInfo> = optimized
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
            Ok((runnable, ops))
        })?;
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

/// Operators a Lambda network may use (docs/design.md §4.1): convolutions, their integer
/// forms, pointwise activations and arithmetic, pooling, resizing and concatenation. Anything
/// else (control flow, sequences, random ops, ...) is refused before tract plans it.
pub const ALLOWED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "DequantizeLinear",
    "Div",
    "GlobalAveragePool",
    "HardSigmoid",
    "Identity",
    "LeakyRelu",
    "MatMulInteger",
    "MaxPool",
    "Mul",
    "Pad",
    "QLinearConv",
    "QuantizeLinear",
    "Relu",
    "Resize",
    "Sigmoid",
    "Sub",
    "Tanh",
    "Upsample",
];
/// Most nodes in a Lambda network's graph.
pub const MAX_MODEL_NODES: usize = 4096;
/// Largest magnitude of an integer attribute (kernel sizes, strides, pads, axes).
pub const MAX_ATTRIBUTE_INT: i64 = 1 << 16;

/// Checks a model graph against the contract's limits before tract allocates or plans
/// anything for it: allowed operators only, no subgraphs, bounded integer attributes, and
/// every tensor (initialisers, constants) of bounded size with exactly the data its shape
/// declares, stored in the file (no external data).
pub fn check_graph(graph: &GraphProto) -> Result<()> {
    ensure!(
        graph.node.len() <= MAX_MODEL_NODES,
        "the graph has {} nodes (limit {MAX_MODEL_NODES})",
        graph.node.len()
    );
    for tensor in &graph.initializer {
        check_tensor(tensor).with_context(|| format!("initialiser {:?}", tensor.name))?;
    }
    ensure!(
        graph.sparse_initializer.is_empty(),
        "sparse initialisers are not supported"
    );
    for value in graph.input.iter().chain(&graph.output) {
        let dims = value
            .r#type
            .as_ref()
            .and_then(|t| t.value.as_ref())
            .and_then(|tract_onnx::pb::type_proto::Value::TensorType(t)| t.shape.as_ref())
            .map(|s| s.dim.as_slice())
            .unwrap_or_default();
        ensure!(
            dims.len() <= 8,
            "{:?} has {} dimensions",
            value.name,
            dims.len()
        );
        for dim in dims {
            if let Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v)) =
                dim.value
            {
                ensure!(
                    (0..=limits::MAX_MODEL_TENSOR_ELEMENTS as i64).contains(&v),
                    "{:?} declares a dimension of {v}",
                    value.name
                );
            }
        }
    }
    for node in &graph.node {
        let label = || format!("node {:?} ({})", node.name, node.op_type);
        ensure!(
            node.domain.is_empty() || node.domain == "ai.onnx",
            "{}: operator domain {:?} is not supported (standard ONNX operators only)",
            label(),
            node.domain
        );
        ensure!(
            ALLOWED_OPS.contains(&node.op_type.as_str()),
            "{}: operator {} is not one a Lambda network uses (docs/design.md §4.1)",
            label(),
            node.op_type
        );
        for attribute in &node.attribute {
            ensure!(
                attribute.g.is_none() && attribute.graphs.is_empty(),
                "{}: subgraphs are not supported",
                label()
            );
            ensure!(
                attribute.sparse_tensor.is_none() && attribute.sparse_tensors.is_empty(),
                "{}: sparse tensors are not supported",
                label()
            );
            ensure!(
                attribute.ints.len() <= 64
                    && std::iter::once(&attribute.i)
                        .chain(&attribute.ints)
                        .all(|v| v.unsigned_abs() <= MAX_ATTRIBUTE_INT as u64),
                "{}: attribute {:?} is out of range (|value| <= {MAX_ATTRIBUTE_INT}, at most 64 values)",
                label(),
                attribute.name
            );
            for tensor in attribute.t.iter().chain(&attribute.tensors) {
                check_tensor(tensor)
                    .with_context(|| format!("{}: attribute {:?}", label(), attribute.name))?;
            }
        }
    }
    Ok(())
}

/// A tensor stored in the file: bounded element count, known type, data matching its shape.
fn check_tensor(tensor: &TensorProto) -> Result<()> {
    use tract_onnx::pb::tensor_proto::DataType;
    ensure!(
        tensor.external_data.is_empty() && tensor.data_location.unwrap_or(0) == 0,
        "external data is not supported: a model is one self-contained file"
    );
    ensure!(
        tensor.segment.is_none(),
        "segmented tensors are not supported"
    );
    ensure!(tensor.dims.len() <= 8, "{} dimensions", tensor.dims.len());
    let elements = tensor.dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    });
    let elements = match elements {
        Some(n) if n <= limits::MAX_MODEL_TENSOR_ELEMENTS => n as usize,
        _ => anyhow::bail!(
            "shape {:?} is negative or larger than {} elements",
            tensor.dims,
            limits::MAX_MODEL_TENSOR_ELEMENTS
        ),
    };
    let element_bytes = match DataType::try_from(tensor.data_type) {
        Ok(DataType::Float | DataType::Int32 | DataType::Uint32) => 4,
        Ok(DataType::Uint8 | DataType::Int8 | DataType::Bool) => 1,
        Ok(DataType::Int16 | DataType::Uint16 | DataType::Float16 | DataType::Bfloat16) => 2,
        Ok(DataType::Int64 | DataType::Double | DataType::Uint64) => 8,
        _ => anyhow::bail!("element type {} is not supported", tensor.data_type),
    };
    let typed = tensor.float_data.len()
        + tensor.int32_data.len()
        + tensor.int64_data.len()
        + tensor.double_data.len()
        + tensor.uint64_data.len();
    ensure!(
        tensor.string_data.is_empty(),
        "string tensors are not supported"
    );
    if tensor.raw_data.is_empty() {
        ensure!(
            typed == elements,
            "shape {:?} needs {elements} values, the file holds {typed}",
            tensor.dims
        );
    } else {
        ensure!(
            typed == 0 && tensor.raw_data.len() == elements * element_bytes,
            "shape {:?} needs {} bytes of data, the file holds {}",
            tensor.dims,
            elements * element_bytes,
            tensor.raw_data.len() + typed
        );
    }
    Ok(())
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
        let out = catch_panic(&self.name, "tract's model run", || {
            self.runnable
                .run(tvec!(input.into()))
                .with_context(|| format!("{}: tract failed to run the model", self.name))
        })?;
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
            batch,
            features: SliceFeatures::new(shape, count),
            plan,
            tail,
        })
    }

    pub fn plan(&self) -> &LambdaPlan {
        &self.plan
    }

    /// One network run on the filters whose correlations `maps` holds (`[k][N]`, `k` the
    /// batch or the tail), replaced by their maps.
    fn run_filters(&self, maps: &mut [f32]) -> Result<()> {
        let len = maps.len() / self.shape.len();
        let plan = if len == self.batch {
            &self.plan
        } else {
            self.tail
                .as_ref()
                .context("a tail plan exists when the batch does not divide K")?
        };
        let mut input =
            Tensor::zero::<f32>(&[len, FEATURE_CHANNELS, self.shape.n_y(), self.shape.n_x()])?;
        self.features
            .write_filters(maps, input.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        plan.run_tensor(input, maps)
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
    /// holds the filter correlations (channel 0); each run of filters then reads its own
    /// correlations and overwrites them with its maps, so the runs are independent and
    /// go to the pool's threads (the network sees each filter alone: same maps for any
    /// thread count).
    pub fn predict(
        &mut self,
        prepared: &mut dyn PreparedSlice,
        maps: &mut [f32],
        pool: &mut WorkerPool<f32>,
    ) -> Result<PredictTimes> {
        let started = Instant::now();
        self.features.compute(prepared, maps, pool)?;
        let features = started.elapsed().as_secs_f64();
        let n = self.shape.len();
        struct Run<'a> {
            maps: &'a mut [f32],
            failed: Option<anyhow::Error>,
        }
        let mut runs: Vec<Run<'_>> = maps
            .chunks_mut(self.batch * n)
            .map(|maps| Run { maps, failed: None })
            .collect();
        let threads = pool.threads();
        let this = &*self;
        threads.for_each(&mut runs, &mut vec![(); threads.count()], &|run, _| {
            run.failed = this.run_filters(run.maps).err();
        });
        if let Some(error) = runs.into_iter().find_map(|run| run.failed) {
            return Err(error);
        }
        // The contract bounds the output to [0, lambda_max]; a model that breaks it would
        // otherwise surface as a k-space error in the solve.
        if let Some(bad) = maps.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            anyhow::bail!(
                "{}: the network produced a Lambda of {bad} (maps must be finite and >= 0)",
                self.plan.name
            );
        }
        Ok(PredictTimes {
            features,
            network: started.elapsed().as_secs_f64() - features,
        })
    }
}
