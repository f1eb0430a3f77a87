//! The Lambda network (DESIGN §4): load an ONNX sparsity-map model, check its contract, compute
//! its input features from the k-space and the dictionary, and run it with tract.
//!
//! * [`LambdaModel`] — the parsed file and its validated `metadata_props` ([`ModelInfo`]).
//!   Unknown `sparsemap.version` or `sparsemap.features` values are errors naming the file.
//! * [`LambdaPlan`] — the model with `K`, `N_y` and `N_x` bound to concrete values, then
//!   optimised (tract picks its direct convolutions only for concrete shapes) and made
//!   runnable. Plan once per dictionary and grid, run per slice.
//! * [`FeaturePlan`] — the features of version 1 (`models/sparsemap_train/features.py`, the
//!   normative definition), computed with rustfft in `f32`:
//!
//!   With `y` the masked k-space scaled by `c = 1 / p99(|F^H y|)` (DESIGN §3.7 items 1–2),
//!   `y' = (1 - G) (.) y` (item 3, the model's low-pass weight), `h_k` the dictionary
//!   responses and `L` the Lipschitz constant over the sampled frequencies (item 4):
//!
//!   0. `r_k = |F^H(conj(h_k) (.) y')| / sqrt(L)`
//!   1. `|x0|`, `x0 = F^H y` (scaled; the same for every k)
//!   2. `mean_k r_k` (the same for every k)
//!
//!   laid out `[K][3][N_y][N_x]`. For `N_y`, `N_x` multiples of 4 the centred transform is
//!   `C fft2(C x) / sqrt(N)` with `C(n) = (-1)^(n_y + n_x)` (DESIGN §3.7), and only
//!   magnitudes of its output are used, so the outer `C` is dropped.

use anyhow::{anyhow, ensure, Context, Result};
use num_complex::Complex32;
use rustfft::{Fft, FftPlanner};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

/// The contract version this runtime understands (`sparsemap.version`).
pub const CONTRACT_VERSION: &str = "1";
/// The only feature list this runtime computes (`sparsemap.features`).
pub const FEATURES_V1: &str =
    "v1:corr_highpass_abs_over_sqrt_lipschitz,zero_filled_abs,corr_highpass_abs_filter_mean";
/// Channels of the version-1 features.
pub const FEATURE_CHANNELS: usize = 3;
/// Name of the model's input tensor.
pub const INPUT_NAME: &str = "features";
/// Name of the model's output tensor.
pub const OUTPUT_NAME: &str = "lambda";
/// Percentile of `|F^H y|` scaled to one (DESIGN §3.6), as in the core.
const SCALE_PERCENTILE: f64 = 0.99;

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

/// A 2-D complex FFT over a row-major `[n_y][n_x]` grid (rows, transpose, columns,
/// transpose back), unnormalised in both directions as rustfft is.
struct Fft2d {
    n_y: usize,
    n_x: usize,
    rows: Arc<dyn Fft<f32>>,
    cols: Arc<dyn Fft<f32>>,
}

impl Fft2d {
    fn new(planner: &mut FftPlanner<f32>, n_y: usize, n_x: usize, inverse: bool) -> Self {
        let (rows, cols) = if inverse {
            (planner.plan_fft_inverse(n_x), planner.plan_fft_inverse(n_y))
        } else {
            (planner.plan_fft_forward(n_x), planner.plan_fft_forward(n_y))
        };
        Self {
            n_y,
            n_x,
            rows,
            cols,
        }
    }

    fn process(&self, data: &mut [Complex32], tmp: &mut [Complex32]) {
        let (ny, nx) = (self.n_y, self.n_x);
        self.rows.process(data);
        for y in 0..ny {
            for x in 0..nx {
                tmp[x * ny + y] = data[y * nx + x];
            }
        }
        self.cols.process(tmp);
        for x in 0..nx {
            for y in 0..ny {
                data[y * nx + x] = tmp[x * ny + y];
            }
        }
    }
}

fn checkerboard(data: &mut [Complex32], n_x: usize) {
    for (i, v) in data.iter_mut().enumerate() {
        if ((i / n_x) + (i % n_x)) % 2 == 1 {
            *v = -*v;
        }
    }
}

/// What a feature computation measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureReport {
    /// `c = 1 / p99(|F^H y|)`.
    pub scale: f32,
    /// Lipschitz constant over the sampled frequencies.
    pub lipschitz: f32,
}

/// Planned computation of the version-1 features for one dictionary and grid.
pub struct FeaturePlan {
    n_y: usize,
    n_x: usize,
    count: usize,
    /// `h_k` in the centred layout, `[K][N_y][N_x]`.
    responses: Vec<Complex32>,
    /// `1 - G` on the centred grid.
    highpass: Vec<f32>,
    inverse: Fft2d,
    /// Per-slice buffers, N values each, allocated with the plan and reused.
    tmp: Vec<Complex32>,
    masked: Vec<Complex32>,
    work: Vec<Complex32>,
    magnitude: Vec<f32>,
    sorted: Vec<f32>,
    mean: Vec<f32>,
}

impl FeaturePlan {
    /// `filters`: `[count][side][side]` row-major, `side` odd; grid multiples of 4.
    pub fn new(
        filters: &[f32],
        count: usize,
        side: usize,
        n_y: usize,
        n_x: usize,
        lowpass_weight: f64,
    ) -> Result<Self> {
        ensure!(
            count >= 1 && side % 2 == 1,
            "dictionary must be [K >= 1, s, s] with s odd"
        );
        ensure!(
            filters.len() == count * side * side,
            "dictionary has {} values, expected {}",
            filters.len(),
            count * side * side
        );
        ensure!(
            n_y % 4 == 0 && n_x % 4 == 0 && n_y >= side && n_x >= side,
            "grid {n_y}x{n_x} must be multiples of 4 and hold the filters"
        );
        ensure!(
            lowpass_weight.is_finite() && lowpass_weight >= 0.0,
            "lowpass weight {lowpass_weight} must be finite and >= 0"
        );
        let mut planner = FftPlanner::new();
        let forward = Fft2d::new(&mut planner, n_y, n_x, false);
        let inverse = Fft2d::new(&mut planner, n_y, n_x, true);
        let n = n_y * n_x;
        let mut tmp = vec![Complex32::default(); n];
        let mut responses = vec![Complex32::default(); count * n];
        let c = side / 2;
        for (k, h) in responses.chunks_exact_mut(n).enumerate() {
            let d = &filters[k * side * side..(k + 1) * side * side];
            for i in 0..side {
                for j in 0..side {
                    let y = (i + n_y - c) % n_y;
                    let x = (j + n_x - c) % n_x;
                    h[y * n_x + x] += Complex32::new(d[i * side + j], 0.0);
                }
            }
            // fftshift(fft2(p)) = fft2(C p) for even sides
            checkerboard(h, n_x);
            forward.process(h, &mut tmp);
        }
        let mut highpass = vec![0.0f32; n];
        for ky in 0..n_y {
            for kx in 0..n_x {
                let uy = 2.0 * std::f64::consts::PI * (ky as f64 - (n_y / 2) as f64) / n_y as f64;
                let ux = 2.0 * std::f64::consts::PI * (kx as f64 - (n_x / 2) as f64) / n_x as f64;
                let lap = 4.0 - 2.0 * uy.cos() - 2.0 * ux.cos();
                let g = (1.0 / (1.0 + lowpass_weight * lap)) as f32;
                highpass[ky * n_x + kx] = 1.0 - g;
            }
        }
        Ok(Self {
            n_y,
            n_x,
            count,
            responses,
            highpass,
            inverse,
            tmp,
            masked: vec![Complex32::default(); n],
            work: vec![Complex32::default(); n],
            magnitude: vec![0.0; n],
            sorted: vec![0.0; n],
            mean: vec![0.0; n],
        })
    }

    /// Number of values of the features, `K * 3 * N_y * N_x`.
    pub fn features_len(&self) -> usize {
        self.count * FEATURE_CHANNELS * self.n_y * self.n_x
    }

    /// Computes the features `[K][3][N_y][N_x]` of centred k-space `kspace` `[N_y][N_x]`
    /// sampled where `mask` is non-zero. Errors when nothing is measured, a sample is not
    /// finite, or no sampled frequency sees the dictionary.
    pub fn compute(
        &mut self,
        kspace: &[Complex32],
        mask: &[f32],
        out: &mut [f32],
    ) -> Result<FeatureReport> {
        let (ny, nx, k) = (self.n_y, self.n_x, self.count);
        let n = ny * nx;
        ensure!(
            kspace.len() == n && mask.len() == n,
            "k-space and mask must be {ny}x{nx}"
        );
        ensure!(
            out.len() == self.features_len(),
            "feature buffer has {} values, expected {}",
            out.len(),
            self.features_len()
        );
        let sqrt_n = (n as f32).sqrt();
        let Self {
            tmp,
            masked: y,
            work,
            magnitude,
            sorted,
            mean,
            ..
        } = self;
        // 1-2: masked k-space, zero-filled magnitude, scale
        for ((o, &v), &m) in y.iter_mut().zip(kspace).zip(mask) {
            *o = if m != 0.0 { v } else { Complex32::default() };
        }
        work.copy_from_slice(y);
        checkerboard(work, nx);
        self.inverse.process(work, tmp);
        for (o, v) in magnitude.iter_mut().zip(work.iter()) {
            *o = v.norm() / sqrt_n;
        }
        sorted.copy_from_slice(magnitude);
        sorted.sort_unstable_by(|a, b| a.total_cmp(b));
        let r = SCALE_PERCENTILE * (n - 1) as f64;
        let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
        let p = sorted[lo] + (r - lo as f64) as f32 * (sorted[hi] - sorted[lo]);
        ensure!(
            p.is_finite(),
            "99th percentile of |F^H y| is not finite (non-finite k-space samples)"
        );
        ensure!(
            p > 0.0,
            "99th percentile of |F^H y| is 0 (nothing measured)"
        );
        let c = 1.0 / p;
        // 4: Lipschitz constant over the sampled frequencies
        let mut big_l = 0.0f32;
        for i in 0..n {
            if mask[i] != 0.0 {
                let e: f32 = (0..k).map(|kk| self.responses[kk * n + i].norm_sqr()).sum();
                big_l = big_l.max(e);
            }
        }
        ensure!(
            big_l > 0.0,
            "Lipschitz constant is 0: the dictionary has no response at any sampled frequency"
        );
        let norm = 1.0 / (sqrt_n * big_l.sqrt());
        // 3: y' = (1 - G) c y, with the checkerboard of the inverse transform applied once
        let yp = y;
        for (v, &g) in yp.iter_mut().zip(&self.highpass) {
            *v *= c * g;
        }
        checkerboard(yp, nx);
        let plane = n;
        let stride = FEATURE_CHANNELS * plane;
        for kk in 0..k {
            let h = &self.responses[kk * n..(kk + 1) * n];
            for i in 0..n {
                work[i] = h[i].conj() * yp[i];
            }
            self.inverse.process(work, tmp);
            let dst = &mut out[kk * stride..kk * stride + plane];
            for (o, v) in dst.iter_mut().zip(work.iter()) {
                *o = v.norm() * norm;
            }
        }
        // channels 1 and 2
        mean.fill(0.0);
        for kk in 0..k {
            for (m, v) in mean.iter_mut().zip(&out[kk * stride..kk * stride + plane]) {
                *m += *v;
            }
        }
        for m in mean.iter_mut() {
            *m /= k as f32;
        }
        for kk in 0..k {
            let base = kk * stride;
            for i in 0..n {
                out[base + plane + i] = magnitude[i] * c;
                out[base + 2 * plane + i] = mean[i];
            }
        }
        Ok(FeatureReport {
            scale: c,
            lipschitz: big_l,
        })
    }
}

/// Features and network together for one dictionary and grid: k-space in, Lambda maps out.
pub struct LambdaPredictor {
    features: FeaturePlan,
    plan: LambdaPlan,
    buffer: Vec<f32>,
}

impl LambdaPredictor {
    /// Plans the features (with the model's low-pass weight) and the network.
    pub fn new(
        model: &LambdaModel,
        filters: &[f32],
        count: usize,
        side: usize,
        n_y: usize,
        n_x: usize,
    ) -> Result<Self> {
        let features =
            FeaturePlan::new(filters, count, side, n_y, n_x, model.info().lowpass_weight)
                .with_context(|| format!("{}: features", model.name()))?;
        let plan = model.plan(count, n_y, n_x)?;
        let buffer = vec![0.0; features.features_len()];
        Ok(Self {
            features,
            plan,
            buffer,
        })
    }

    pub fn plan(&self) -> &LambdaPlan {
        &self.plan
    }

    /// Predicts Lambda maps `[K][N_y][N_x]` for one slice.
    pub fn predict(
        &mut self,
        kspace: &[Complex32],
        mask: &[f32],
        lambda: &mut [f32],
    ) -> Result<FeatureReport> {
        let report = self.features.compute(kspace, mask, &mut self.buffer)?;
        self.plan.run(&self.buffer, lambda)?;
        Ok(report)
    }
}
