//! `sparsemap-host bench`: wall time per slice of every method on one 256×256 slice, in one
//! run, reported as ratios to the CSC solver (shared machines are noisy; ratios measured
//! side by side are what carries over).
//!
//! Protocol: one warm-up reconstruction per method (plans, page faults, BART's first start),
//! then `repeats` rounds; each round runs every method once, in turn, so slow drifts of the
//! machine's load hit all methods alike. The statistic is the median over rounds. Everything
//! runs on one thread; BART runs as a subprocess with `OMP_NUM_THREADS=1`, and its time
//! includes starting the process and writing/reading its `.cfl` files, which is what using
//! BART as a tool costs (about 10 ms of it here, see the `bart-startup` row).

use crate::baselines::Bart;
use crate::methods::{CscDictionary, Method, Runner, Settings};
use anyhow::{Context, Result};
use ndarray::Array2;
use num_complex::Complex32;
use serde::{Deserialize, Serialize};
use sparsemap_core::Shape;
use std::time::Instant;

/// One slice to time.
pub struct BenchInput {
    pub name: String,
    pub kspace: Array2<Complex32>,
    pub mask: Array2<bool>,
    pub target: Option<Array2<Complex32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    pub method: String,
    pub lambda: f32,
    pub iterations: usize,
    pub median_seconds: f64,
    pub min_seconds: f64,
    pub ratio_to_csc: f64,
    /// PSNR against the target when one was given (sanity check that the timed run did the
    /// real work).
    pub psnr: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub input: String,
    pub n_y: usize,
    pub n_x: usize,
    pub repeats: usize,
    pub rows: Vec<BenchRow>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// Times `methods` (each with its weight) on `input`. CSC is always included, as the
/// denominator.
pub fn run(
    input: &BenchInput,
    methods: &[(Method, f32)],
    settings: &Settings,
    repeats: usize,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport> {
    let (n_y, n_x) = input.kspace.dim();
    let shape = Shape::new(n_y, n_x).map_err(|e| anyhow::anyhow!("grid {n_y}x{n_x}: {e:?}"))?;
    let mut methods: Vec<(Method, f32)> = methods.to_vec();
    if !methods.iter().any(|(m, _)| *m == Method::Csc) {
        methods.insert(0, (Method::Csc, Method::Csc.default_lambda()));
    }
    let with_bart = methods.iter().any(|(m, _)| m.needs_bart());
    let mut runner = Runner::new(
        shape,
        &CscDictionary::bundled()?,
        settings.clone(),
        with_bart,
    )?;
    let bart = if with_bart { Some(Bart::new()?) } else { None };
    let repeats = repeats.max(1);
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(repeats); methods.len()];
    let mut startup: Vec<f64> = Vec::new();
    let mut psnr: Vec<Option<f64>> = vec![None; methods.len()];
    for round in 0..=repeats {
        for (i, &(method, lambda)) in methods.iter().enumerate() {
            progress(&format!(
                "{} {method}",
                if round == 0 {
                    "warm-up".to_string()
                } else {
                    format!("round {round}/{repeats}")
                }
            ));
            let started = Instant::now();
            let image = runner
                .run(method, lambda, input.kspace.view(), input.mask.view())
                .with_context(|| format!("{method} on {}", input.name))?;
            let seconds = started.elapsed().as_secs_f64();
            if round == 0 {
                if let Some(target) = &input.target {
                    let image: Vec<Complex32> = image.iter().copied().collect();
                    let target: Vec<Complex32> = target.iter().copied().collect();
                    psnr[i] = sparsemap_edge::metrics::psnr_magnitude(&image, &target);
                }
            } else {
                times[i].push(seconds);
            }
        }
        if let Some(bart) = &bart {
            let started = Instant::now();
            bart.version()?;
            if round > 0 {
                startup.push(started.elapsed().as_secs_f64());
            }
        }
    }
    let csc_index = methods
        .iter()
        .position(|(m, _)| *m == Method::Csc)
        .expect("inserted above");
    let csc_median = median(&mut times[csc_index].clone());
    let mut rows: Vec<BenchRow> = methods
        .iter()
        .zip(times.iter_mut())
        .zip(&psnr)
        .map(|((&(method, lambda), t), &psnr)| {
            let median_seconds = median(t);
            BenchRow {
                method: method.name().to_string(),
                lambda,
                iterations: settings.iterations(method),
                median_seconds,
                min_seconds: t.iter().copied().fold(f64::INFINITY, f64::min),
                ratio_to_csc: median_seconds / csc_median,
                psnr,
            }
        })
        .collect();
    if !startup.is_empty() {
        let median_seconds = median(&mut startup.clone());
        rows.push(BenchRow {
            method: "bart-startup (`bart version`)".to_string(),
            lambda: 0.0,
            iterations: 0,
            median_seconds,
            min_seconds: startup.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_to_csc: median_seconds / csc_median,
            psnr: None,
        });
    }
    Ok(BenchReport {
        input: input.name.clone(),
        n_y,
        n_x,
        repeats,
        rows,
    })
}

/// The report as a Markdown table.
pub fn markdown(report: &BenchReport) -> String {
    let mut out = format!(
        "Wall time per slice, {}x{} ({}), median of {} rounds, one thread:\n\n\
         | method | λ | iterations | median (ms) | min (ms) | ratio to CSC | PSNR (dB) |\n|---|---|---|---|---|---|---|\n",
        report.n_y, report.n_x, report.input, report.repeats
    );
    for r in &report.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.3} | {} |\n",
            r.method,
            r.lambda,
            r.iterations,
            1e3 * r.median_seconds,
            1e3 * r.min_seconds,
            r.ratio_to_csc,
            r.psnr.map_or("—".to_string(), |p| format!("{p:.2}")),
        ));
    }
    out
}
