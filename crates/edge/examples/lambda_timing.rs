//! Times the Lambda network in tract (f32 and int8) against the solver it feeds, at the design
//! point K = 32, N = 256 (DESIGN §4: inference should take at most about half the solver's time).
//!
//!     cargo run --release -p sparsemap-edge --example lambda_timing -- [MODEL_PREFIX] [RUNS]
//!
//! MODEL_PREFIX defaults to tests/fixtures/lambda_net/model (an untrained test model with the
//! default architecture; weights do not change the time). The input is the Colin27 example
//! slice; the dictionary is K = 32 pseudo-random zero-mean 7x7 filters (values do not change
//! the time either). Single-threaded throughout; medians of RUNS (default 5) runs.

use anyhow::{Context, Result};
use ndarray::Array2;
use ndarray_npy::ReadNpyExt;
use num_complex::Complex32;
use sparsemap_core::dictionary::Dictionary;
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::ReconConfig;
use sparsemap_core::Shape;
use sparsemap_edge::features::{compute_features, FEATURE_CHANNELS};
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::runtime::{BackendKind, EdgeReconstructor};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

const K: usize = 32;
const SIDE: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<F: FnMut() -> Result<()>>(runs: usize, mut f: F) -> Result<f64> {
    f()?; // warm-up
    let mut t = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(median(t))
}

/// K zero-mean filters from a fixed xorshift sequence, scaled to unit norm / sqrt(K).
fn dictionary() -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut d = Vec::with_capacity(K * SIDE * SIDE);
    for _ in 0..K {
        let f: Vec<f64> = (0..SIDE * SIDE).map(|_| next()).collect();
        let mean = f.iter().sum::<f64>() / f.len() as f64;
        let norm = f.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt() * (K as f64).sqrt();
        d.extend(f.iter().map(|v| ((v - mean) / norm) as f32));
    }
    d
}

fn main() -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let args: Vec<String> = std::env::args().collect();
    let prefix = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("tests/fixtures/lambda_net/model"));
    let runs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let ex = repo.join("examples/colin27");
    let kspace: Array2<Complex32> = Array2::read_npy(File::open(ex.join("kspace.npy"))?)?;
    let mask: Array2<u8> = Array2::read_npy(File::open(ex.join("mask.npy"))?)?;
    let (ny, nx) = kspace.dim();
    let kspace: Vec<Complex32> = kspace.iter().copied().collect();
    let mask: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
    let filters = dictionary();

    let f32_model =
        LambdaModel::from_path(&PathBuf::from(format!("{}.f32.onnx", prefix.display())))?;
    let int8_model =
        LambdaModel::from_path(&PathBuf::from(format!("{}.int8.onnx", prefix.display())))?;
    let info = f32_model.info().clone();
    let shape = Shape::new(ny, nx).context("grid")?;
    let dictionary = Dictionary::new(&filters, K, SIDE)?;
    let mut x = vec![0.0f32; K * FEATURE_CHANNELS * ny * nx];
    let mut lambda = vec![0.0f32; K * ny * nx];

    let t_plan = Instant::now();
    let f32_plan = f32_model.plan(K, ny, nx)?;
    let t_plan_f32 = t_plan.elapsed().as_secs_f64();
    let t_plan = Instant::now();
    let int8_plan = int8_model.plan(K, ny, nx)?;
    let t_plan_int8 = t_plan.elapsed().as_secs_f64();

    let mut recon = EdgeReconstructor::new(
        BackendKind::RustFft,
        shape,
        dictionary,
        sparsemap_edge::parallel::Threads::new(1),
    )?;
    let a = info.lowpass_weight as f32;
    let t_features = time(runs, || {
        x = recon.with_prepared(&kspace, &mask, a, compute_features)?;
        Ok(())
    })?;
    let t_f32 = time(runs, || f32_plan.run(&x, &mut lambda))?;
    let t_int8 = time(runs, || int8_plan.run(&x, &mut lambda))?;

    let config = ReconConfig {
        iterations: info.iterations,
        lowpass_weight: a,
        background_gate: Some(sparsemap_core::recon::BACKGROUND_GATE as f32),
    };
    let mut image = vec![Complex32::default(); ny * nx];
    f32_plan.run(&x, &mut lambda)?;
    let t_solve = time(runs.min(3), || {
        recon.reconstruct(&kspace, &mask, Lambda::Maps(&lambda), &config, &mut image)?;
        Ok(())
    })?;
    // The design point of the cost budget: the default 64 iterations (a model may use fewer).
    let design = ReconConfig {
        iterations: sparsemap_core::recon::ITERATIONS,
        ..config
    };
    let t_solve_design = time(runs.min(3), || {
        recon.reconstruct(&kspace, &mask, Lambda::Maps(&lambda), &design, &mut image)?;
        Ok(())
    })?;

    let macs = {
        let (h, q) = ((ny / 2 * nx / 2) as f64, (ny / 4 * nx / 4) as f64);
        let w = 8.0;
        K as f64
            * (h * 9.0 * 3.0 * w
                + 2.0 * h * 9.0 * w * w
                + 2.0 * q * 9.0 * w * w
                + q * 16.0 * w
                + h * w
                + h * 16.0)
    };
    println!("Lambda network timing, K = {K}, N = {ny}x{nx}, {runs} runs (medians), one thread");
    println!(
        "  model {}  ({:.2} GFLOP)",
        prefix.display(),
        2.0 * macs / 1e9
    );
    println!("  plan (bind K, N; optimise): f32 {t_plan_f32:.2} s, int8 {t_plan_int8:.2} s");
    println!(
        "  features (K + 1 inverse FFTs):   {:8.1} ms",
        1e3 * t_features
    );
    println!("  tract f32 inference:             {:8.1} ms", 1e3 * t_f32);
    println!("  tract int8 inference:            {:8.1} ms", 1e3 * t_int8);
    println!(
        "  solver ({} iterations, maps):    {:8.1} ms",
        info.iterations,
        1e3 * t_solve
    );
    println!(
        "  solver ({} iterations, maps):    {:8.1} ms",
        design.iterations,
        1e3 * t_solve_design
    );
    println!("  ratios: int8/f32 = {:.2}; (features + f32)/solver = {:.2}; (features + int8)/solver = {:.2}",
        t_int8 / t_f32, (t_features + t_f32) / t_solve, (t_features + t_int8) / t_solve);
    println!(
        "  against the {}-iteration solve: (features + f32) = {:.2}, (features + int8) = {:.2}",
        design.iterations,
        (t_features + t_f32) / t_solve_design,
        (t_features + t_int8) / t_solve_design
    );
    Ok(())
}
