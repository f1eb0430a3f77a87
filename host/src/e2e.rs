//! `sparsemap-host bench-e2e`: whole processes as a user runs them, on the bundled example
//! (`examples/colin27`), in one run: `sparsemap recon` with the int8 and the f32 model for
//! each thread count, and BART `pics` TV and ℓ1-wavelet at their tuned weights with
//! `OMP_NUM_THREADS` at each thread count. Times are reported as ratios to sparsemap int8 on
//! one thread measured in the same run (shared machines drift; side-by-side ratios carry
//! over), with PSNR and peak RSS beside each time, and sparsemap's own per-stage split.
//!
//! Protocol:
//! - The example (k-space, mask) is written once as an exact wire stream (`f32` samples, one
//!   scan, one slice, no faults) and sparsemap runs as `sparsemap recon --input STREAM
//!   --out-dir DIR [--model F32] [--threads N]`: the edge box's path, which prints one JSON
//!   line per slice with the stage times (`prepare, features, network, solve, write`,
//!   DESIGN §7) and writes `.npy`, `.png`, `.nii` and `.json`. The image equals `recon
//!   --kspace`'s bit for bit (the stream carries the same `f32` values).
//! - `--threads N` is passed only when `sparsemap recon --help` lists it; without it only
//!   one thread is run and the other thread counts are reported as skipped.
//! - BART runs through [`crate::baselines::Bart`], exactly as `eval` runs it (scaling,
//!   `-w 1`, its `.cfl` I/O, three processes: `fft` for the scale, `ones`, `pics`); its time
//!   is that whole reconstruction, and the `pics` process alone is reported beside it.
//! - One warm-up round (page cache, BART's first start), then `repeats` rounds; each round
//!   runs every configuration once, in turn. Times are medians over rounds; the peak RSS is
//!   the largest over rounds (GNU time's `%M` of the process, for BART the largest of its
//!   processes; [`crate::process`]); PSNR (magnitude, [`sparsemap_edge::metrics`]) is
//!   computed on every run's image against the example's target and the median reported.
//! - Process wall time is from spawn to exit: start-up, reading the model and planning
//!   (tract, FFT, dictionary) included. The per-slice time of a running `serve` is the sum
//!   of the stages.

use crate::baselines::Bart;
use crate::methods::{Method, Settings};
use crate::scan::{simulate_scan, FaultSpec, SampleFormat, ScanSpec};
use anyhow::{bail, ensure, Context, Result};
use ndarray::{Array2, Array3};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `scan_id` of the stream written for the example.
const SCAN_ID: u32 = 1;

/// What to run.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    /// The `sparsemap` executable.
    pub sparsemap: PathBuf,
    /// The f32 model passed with `--model` (the int8 model is the binary's default).
    pub model_f32: PathBuf,
    /// Directory with `kspace.npy`, `mask.npy` and `target.npy`.
    pub example: PathBuf,
    /// How the example is named in the report (relative, no machine paths).
    pub example_name: String,
    /// Thread counts (`--threads` and `OMP_NUM_THREADS`).
    pub threads: Vec<usize>,
    pub repeats: usize,
    /// BART TV and ℓ1-wavelet weights (scaled units, tuned on validation).
    pub bart_tv_lambda: f32,
    pub bart_wavelet_lambda: f32,
    /// BART's `-i` for each (from [`Settings`]).
    pub settings: Settings,
    /// GNU time, for peak RSS ([`crate::process::gnu_time`]).
    pub time: Option<PathBuf>,
}

/// One configuration's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct E2eRow {
    /// `sparsemap-int8`, `sparsemap-f32`, `bart-tv`, `bart-wavelet`.
    pub method: String,
    pub threads: usize,
    /// The weight (BART) or `None` (the model predicts the maps).
    pub lambda: Option<f32>,
    /// Iterations (the model's T; BART's `-i`).
    pub iterations: Option<usize>,
    pub median_seconds: f64,
    pub min_seconds: f64,
    /// `median_seconds` / sparsemap int8 on one thread.
    pub ratio: f64,
    pub psnr: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    /// sparsemap only: median of each stage over rounds (the JSON line's `times`).
    pub stages: Option<Stages>,
    /// BART only: the median `pics` process time.
    pub pics_seconds: Option<f64>,
}

/// Medians of sparsemap's per-slice stage times (seconds), DESIGN §7.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stages {
    pub prepare: f64,
    pub features: f64,
    pub network: f64,
    pub solve: f64,
    pub write: f64,
    /// The sum of the five (median of the per-run sums).
    pub slice: f64,
}

impl Stages {
    const NAMES: [&'static str; 5] = ["prepare", "features", "network", "solve", "write"];
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct E2eReport {
    pub input: String,
    pub n_y: usize,
    pub n_x: usize,
    pub repeats: usize,
    /// Whether the binary took `--threads` (else only one thread was run).
    pub threads_flag: bool,
    /// Peak RSS measured by GNU time (else sparsemap's own figure, and none for BART).
    pub rss_measured: bool,
    pub rows: Vec<E2eRow>,
    /// Configurations not run, with why.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    SparsemapInt8,
    SparsemapF32,
    Bart(Method),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SparsemapInt8 => "sparsemap-int8",
            Kind::SparsemapF32 => "sparsemap-f32",
            Kind::Bart(method) => method.name(),
        }
    }
}

#[derive(Default)]
struct Samples {
    seconds: Vec<f64>,
    psnr: Vec<f64>,
    rss: Vec<u64>,
    stages: Vec<[f64; 5]>,
    pics: Vec<f64>,
    iterations: Option<usize>,
}

/// The median of `values` (NaN for none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// Whether `sparsemap recon --help` lists `--threads`.
pub fn has_threads_flag(sparsemap: &Path) -> Result<bool> {
    let output = Command::new(sparsemap)
        .args(["recon", "--help"])
        .output()
        .with_context(|| format!("could not run {} recon --help", sparsemap.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).contains("--threads"))
}

/// Runs every configuration (module docs); `progress` gets a line per run.
pub fn run(config: &E2eConfig, mut progress: impl FnMut(&str)) -> Result<E2eReport> {
    let read = |name: &str| config.example.join(name);
    let kspace = sparsemap_edge::npy::read_kspace(&read("kspace.npy"))?;
    let mask = sparsemap_edge::npy::read_mask(&read("mask.npy"))?;
    let target = sparsemap_edge::npy::read_image(&read("target.npy"))?;
    let (n_y, n_x) = kspace.dim();
    ensure!(
        mask.dim() == (n_y, n_x) && target.dim() == (n_y, n_x),
        "{}: k-space, mask and target differ in shape",
        config.example_name
    );
    let target: Vec<Complex32> = target.iter().copied().collect();
    let psnr = |image: &[Complex32]| sparsemap_edge::metrics::psnr_magnitude(image, &target);

    let work = tempfile::Builder::new()
        .prefix("sparsemap-bench-e2e-")
        .tempdir()
        .context("creating a temporary directory")?;
    let stream = work.path().join("example.smw");
    let spec = ScanSpec {
        scan_id: SCAN_ID,
        field_mt: 50.0,
        fov_mm: [n_y as f32, n_x as f32],
        samples: SampleFormat::F32,
    };
    let k3 = Array3::from_shape_fn((1, n_y, n_x), |(_, y, x)| kspace[[y, x]]);
    let m3 = Array3::from_shape_fn((1, n_y, n_x), |(_, y, x)| mask[[y, x]]);
    let (bytes, _) = simulate_scan(k3.view(), m3.view(), &spec, &FaultSpec::none())?;
    std::fs::write(&stream, bytes).with_context(|| format!("writing {}", stream.display()))?;

    let threads_flag = has_threads_flag(&config.sparsemap)?;
    let mut configs: Vec<(Kind, usize)> = Vec::new();
    let mut skipped = Vec::new();
    for &threads in &config.threads {
        for kind in [Kind::SparsemapInt8, Kind::SparsemapF32] {
            if threads == 1 || threads_flag {
                configs.push((kind, threads));
            } else {
                skipped.push(format!(
                    "{} on {threads} threads: this sparsemap has no --threads",
                    kind.name()
                ));
            }
        }
    }
    for &threads in &config.threads {
        configs.push((Kind::Bart(Method::BartTv), threads));
        configs.push((Kind::Bart(Method::BartWavelet), threads));
    }
    ensure!(
        configs
            .iter()
            .any(|&(k, t)| k == Kind::SparsemapInt8 && t == 1),
        "the thread counts must include 1 (sparsemap int8 on one thread is the denominator)"
    );
    let bart = Bart::new()?.with_process_log(config.time.clone());

    let repeats = config.repeats.max(1);
    let mut samples: Vec<Samples> = configs.iter().map(|_| Samples::default()).collect();
    for round in 0..=repeats {
        for (index, &(kind, threads)) in configs.iter().enumerate() {
            progress(&format!(
                "{} {} on {threads} thread(s)",
                if round == 0 {
                    "warm-up".to_string()
                } else {
                    format!("round {round}/{repeats}")
                },
                kind.name()
            ));
            let sample = &mut samples[index];
            match kind {
                Kind::SparsemapInt8 | Kind::SparsemapF32 => {
                    let out = work.path().join(format!("out-{index}-{round}"));
                    std::fs::create_dir(&out)
                        .with_context(|| format!("creating {}", out.display()))?;
                    let mut command = Command::new(&config.sparsemap);
                    command.arg("recon").arg("--input").arg(&stream);
                    command.arg("--out-dir").arg(&out);
                    if kind == Kind::SparsemapF32 {
                        command.arg("--model").arg(&config.model_f32);
                    }
                    if threads_flag {
                        command.arg("--threads").arg(threads.to_string());
                    }
                    let measured = crate::process::run(
                        &command,
                        config.time.as_deref(),
                        &work.path().join("rss"),
                    )?;
                    if !measured.output.status.success() {
                        bail!(
                            "{} failed ({}): {}",
                            kind.name(),
                            measured.output.status,
                            String::from_utf8_lossy(&measured.output.stderr).trim()
                        );
                    }
                    let line = String::from_utf8_lossy(&measured.output.stdout);
                    let record = parse_record(&line)?;
                    let image = sparsemap_edge::npy::read_image(&record.image)?;
                    if round > 0 {
                        sample.seconds.push(measured.seconds);
                        sample.stages.push(record.stages);
                        // GNU time's figure; else the process's own (VmHWM, its JSON line).
                        sample
                            .rss
                            .extend(measured.peak_rss_bytes.or(record.peak_rss_bytes));
                        sample
                            .psnr
                            .extend(psnr(image.as_slice().context("image not contiguous")?));
                    }
                    sample.iterations = record.iterations;
                    std::fs::remove_dir_all(&out)
                        .with_context(|| format!("removing {}", out.display()))?;
                }
                Kind::Bart(method) => {
                    let lambda = bart_lambda(config, method);
                    let bart = bart.clone().with_omp_threads(threads);
                    let iterations = config.settings.iterations(method);
                    let _ = bart.take_process_log();
                    let started = std::time::Instant::now();
                    let image: Array2<Complex32> = match method {
                        Method::BartTv => {
                            bart.pics_tv(kspace.view(), mask.view(), lambda, iterations)?
                        }
                        _ => {
                            bart.pics_l1_wavelet(kspace.view(), mask.view(), lambda, iterations)?
                        }
                    };
                    let seconds = started.elapsed().as_secs_f64();
                    let processes = bart.take_process_log();
                    if round > 0 {
                        sample.seconds.push(seconds);
                        sample.pics.extend(
                            processes
                                .iter()
                                .filter(|p| p.command == "pics")
                                .map(|p| p.seconds),
                        );
                        sample
                            .rss
                            .extend(processes.iter().filter_map(|p| p.peak_rss_bytes).max());
                        let image: Vec<Complex32> = image.iter().copied().collect();
                        sample.psnr.extend(psnr(&image));
                    }
                    sample.iterations = Some(iterations);
                }
            }
        }
    }

    let reference = configs
        .iter()
        .position(|&(k, t)| k == Kind::SparsemapInt8 && t == 1)
        .expect("checked above");
    let reference_seconds = median(&samples[reference].seconds);
    let rows = configs
        .iter()
        .zip(&samples)
        .map(|(&(kind, threads), s)| {
            let median_seconds = median(&s.seconds);
            let stages = (!s.stages.is_empty()).then(|| {
                let stage = |i: usize| median(&s.stages.iter().map(|t| t[i]).collect::<Vec<_>>());
                Stages {
                    prepare: stage(0),
                    features: stage(1),
                    network: stage(2),
                    solve: stage(3),
                    write: stage(4),
                    slice: median(&s.stages.iter().map(|t| t.iter().sum()).collect::<Vec<_>>()),
                }
            });
            E2eRow {
                method: kind.name().to_string(),
                threads,
                lambda: match kind {
                    Kind::Bart(method) => Some(bart_lambda(config, method)),
                    _ => None,
                },
                iterations: s.iterations,
                median_seconds,
                min_seconds: s.seconds.iter().copied().fold(f64::INFINITY, f64::min),
                ratio: median_seconds / reference_seconds,
                psnr: (!s.psnr.is_empty()).then(|| median(&s.psnr)),
                peak_rss_mb: s.rss.iter().max().map(|&b| b as f64 / 1e6),
                stages,
                pics_seconds: (!s.pics.is_empty()).then(|| median(&s.pics)),
            }
        })
        .collect();
    Ok(E2eReport {
        input: config.example_name.clone(),
        n_y,
        n_x,
        repeats,
        threads_flag,
        rss_measured: config.time.is_some(),
        rows,
        skipped,
    })
}

fn bart_lambda(config: &E2eConfig, method: Method) -> f32 {
    if method == Method::BartTv {
        config.bart_tv_lambda
    } else {
        config.bart_wavelet_lambda
    }
}

/// What `bench-e2e` takes from a slice's JSON line and sidecar.
struct Record {
    stages: [f64; 5],
    peak_rss_bytes: Option<u64>,
    image: PathBuf,
    iterations: Option<usize>,
}

/// Parses the one JSON line `sparsemap recon --input` prints for the example's slice.
fn parse_record(stdout: &str) -> Result<Record> {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let [line] = lines.as_slice() else {
        bail!("expected one JSON line from sparsemap, got {}", lines.len());
    };
    let value: serde_json::Value = serde_json::from_str(line).context("sparsemap's JSON line")?;
    ensure!(
        value["status"] == "ok",
        "sparsemap reported {}",
        value["error"]
    );
    let mut stages = [0.0; 5];
    for (stage, name) in stages.iter_mut().zip(Stages::NAMES) {
        *stage = value["times"][name]
            .as_f64()
            .with_context(|| format!("no times.{name} in sparsemap's JSON line"))?;
    }
    let files: Vec<PathBuf> = value["files"]
        .as_array()
        .context("no files in sparsemap's JSON line")?
        .iter()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .collect();
    let with_extension = |ext: &str| {
        files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == ext))
    };
    let image = with_extension("npy")
        .context("no .npy among sparsemap's files")?
        .clone();
    let iterations = with_extension("json")
        .and_then(|sidecar| std::fs::read_to_string(sidecar).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["iterations"].as_u64())
        .map(|t| t as usize);
    Ok(Record {
        stages,
        peak_rss_bytes: value["peak_rss_mb"].as_f64().map(|mb| (mb * 1e6) as u64),
        image,
        iterations,
    })
}

/// The report as Markdown: the comparison table, then sparsemap's stages.
pub fn markdown(report: &E2eReport) -> String {
    let ms = |s: f64| format!("{:.0}", 1e3 * s);
    let mut out = format!(
        "Whole process per slice, {}x{} ({}), median of {} interleaved rounds; ratio to \
         sparsemap int8 on one thread in the same run; peak RSS of the process{}:\n\n\
         | method | threads | λ | iterations | median (ms) | min (ms) | ratio | PSNR (dB) | peak RSS (MB) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        report.n_y,
        report.n_x,
        report.input,
        report.repeats,
        if report.rss_measured {
            " (GNU time; for BART the largest of its processes)"
        } else {
            " (no GNU time: sparsemap's own figure, none for BART)"
        },
    );
    for r in &report.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |\n",
            r.method,
            r.threads,
            r.lambda.map_or("—".to_string(), |l| l.to_string()),
            r.iterations.map_or("—".to_string(), |t| t.to_string()),
            ms(r.median_seconds),
            ms(r.min_seconds),
            r.ratio,
            r.psnr.map_or("—".to_string(), |p| format!("{p:.2}")),
            r.peak_rss_mb.map_or("—".to_string(), |m| format!("{m:.0}")),
        ));
    }
    out.push_str(
        "\nsparsemap's stages per slice (medians, ms; its JSON line), and BART's `pics` process alone:\n\n\
         | method | threads | prepare | features | network | solve | write | slice (sum) | process | pics alone |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &report.rows {
        let dash = || "—".to_string();
        let (stages, slice) = match &r.stages {
            Some(s) => (
                [s.prepare, s.features, s.network, s.solve, s.write].map(ms),
                ms(s.slice),
            ),
            None => ([dash(), dash(), dash(), dash(), dash()], dash()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.method,
            r.threads,
            stages[0],
            stages[1],
            stages[2],
            stages[3],
            stages[4],
            slice,
            ms(r.median_seconds),
            r.pics_seconds.map_or_else(dash, ms),
        ));
    }
    if !report.skipped.is_empty() {
        out.push_str(&format!("\nSkipped: {}.\n", report.skipped.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn parses_a_slice_line() {
        let dir = tempfile::tempdir().unwrap();
        let sidecar = dir.path().join("scan00001_slice000.json");
        std::fs::write(&sidecar, r#"{"iterations": 32}"#).unwrap();
        let line = format!(
            r#"{{"scan":1,"slice":0,"status":"ok","times":{{"acquire":0,"assembly_wait":0,"prepare":0.01,"features":0.02,"network":0.3,"solve":0.5,"write":0.04,"previews":0}},"files":["{0}/scan00001_slice000.npy","{1}"],"peak_rss_mb":90.0}}"#,
            dir.path().display(),
            sidecar.display()
        );
        let record = parse_record(&format!("{line}\n")).unwrap();
        assert_eq!(record.stages, [0.01, 0.02, 0.3, 0.5, 0.04]);
        assert_eq!(record.image, dir.path().join("scan00001_slice000.npy"));
        assert_eq!(record.iterations, Some(32));
    }

    #[test]
    fn a_failed_slice_is_an_error() {
        let line = r#"{"status":"error","error":"no"}"#;
        assert!(parse_record(line).is_err());
        assert!(parse_record("").is_err());
    }
}
