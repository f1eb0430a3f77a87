//! `--model auto` (DESIGN §7): the faster of the bundled int8/f32 pair on this CPU.
//!
//! The two bundled files are the same trained network (int8 within 0.1 dB of f32, the model
//! card in `models/README.md`), so the choice is about speed only, and that depends on the
//! CPU: tract's int8 path (QLinearConv: im2col, i8 matrix products with i32 accumulation,
//! requantisation) was ~3× *slower* than its f32 path on the x86 development VM, while on
//! aarch64 tract has int8 dot-product kernels (SDOT). Which kernels tract picks depends on CPU
//! features it detects at run time, and how fast they are depends on the micro-architecture,
//! so the choice is **measured**, not guessed from a feature list: both models run on a small
//! input ([`PROBE_BATCH`] filters of [`PROBE_SIDE`]², one thread, the shortest of
//! [`PROBE_RUNS`] alternating runs each after a warm-up), the faster wins.
//!
//! The result is cached in `$XDG_CACHE_HOME/sparsemap/model-choice.json` (or
//! `~/.cache/sparsemap/…`) under a key of the CPU (architecture, `/proc/cpuinfo` model name,
//! the CPU features tract's kernels depend on), the sparsemap and tract versions, the build
//! (a debug build's timings are not a release build's) and a fingerprint of the two model
//! files: the measurement runs once per machine and build, and every later start (and
//! so every output file) makes the same choice. Without a usable cache directory it is
//! measured at every start. The model name in the outputs (JSON sidecar, PNG/NIfTI text,
//! the `model` field of the stdout JSON line) says what was picked, e.g.
//! `default.f32 (bundled, models/lambda/default.f32.onnx; --model auto: f32 faster than int8
//! on this CPU)`; the times are on stderr and in the cache file.

use crate::lambda_net::LambdaModel;
use crate::learned::{BUNDLED_MODEL, BUNDLED_MODEL_NAME};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The f32 model of the bundled pair: `models/lambda/default.f32.onnx` (13 kB).
pub const BUNDLED_F32_MODEL: &[u8] = include_bytes!("../../../models/lambda/default.f32.onnx");
pub const BUNDLED_F32_MODEL_NAME: &str = "default.f32 (bundled, models/lambda/default.f32.onnx)";

/// The value of `--model` that asks for this choice.
pub const AUTO: &str = "auto";
/// Filters per probe run (the runtime's network batch).
pub const PROBE_BATCH: usize = 8;
/// Side of the probe grid (a multiple of every model's `grid_multiple`).
pub const PROBE_SIDE: usize = 128;
/// Timed runs per model (after one warm-up each).
pub const PROBE_RUNS: usize = 5;
/// Cache file name inside the cache directory.
pub const CACHE_FILE: &str = "model-choice.json";

/// What `--model auto` measured (or found in the cache).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// `int8` or `f32`.
    pub precision: String,
    /// Shortest probe run of each model, seconds.
    pub int8_seconds: f64,
    pub f32_seconds: f64,
}

/// The choice and where it came from.
#[derive(Debug, Clone)]
pub struct Choice {
    pub measurement: Measurement,
    /// The cache key (CPU, tract, models).
    pub key: String,
    /// The cache file read or written, if any.
    pub cache: Option<PathBuf>,
    /// Taken from the cache (not measured in this process).
    pub cached: bool,
}

impl Choice {
    /// One line for stderr.
    pub fn describe(&self) -> String {
        let m = &self.measurement;
        format!(
            "--model auto: {} (probe: int8 {:.1} ms, f32 {:.1} ms; {})",
            m.precision,
            1e3 * m.int8_seconds,
            1e3 * m.f32_seconds,
            match (&self.cache, self.cached) {
                (Some(path), true) => format!("cached in {}", path.display()),
                (Some(path), false) => format!("measured now, cached in {}", path.display()),
                (None, _) => "measured now, no cache directory".to_string(),
            }
        )
    }
}

/// The cache directory: `$XDG_CACHE_HOME/sparsemap`, else `$HOME/.cache/sparsemap`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let nonempty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    nonempty("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| nonempty("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("sparsemap"))
}

/// CPU features that decide tract's matrix kernels (f32 FMA widths, int8 dot products).
fn cpu_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$(if std::arch::is_x86_feature_detected!($f) { out.push($f); })*};
        }
        check!(
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512vnni",
            "avx512vl",
            "avx512bw"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$(if std::arch::is_aarch64_feature_detected!($f) { out.push($f); })*};
        }
        check!("neon", "dotprod", "i8mm", "fp16");
    }
    out
}

/// The CPU's model name (`/proc/cpuinfo`), or `unknown`.
fn cpu_model() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    field("model name")
        .or_else(|| {
            // aarch64: implementer and part number identify the core.
            Some(format!(
                "{}:{}",
                field("CPU implementer")?,
                field("CPU part")?
            ))
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// 64-bit FNV-1a of both model files: a new model pair is measured again.
fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &b in part.iter() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The cache key of this CPU, tract and model pair.
pub fn cache_key(int8: &[u8], f32: &[u8]) -> String {
    format!(
        "{} | {} | {} | sparsemap {} tract-onnx 0.23{} | models {:016x}",
        std::env::consts::ARCH,
        cpu_model(),
        cpu_features().join(","),
        env!("CARGO_PKG_VERSION"),
        // A debug build's timings say nothing about a release build's.
        if cfg!(debug_assertions) { " debug" } else { "" },
        fingerprint(&[int8, f32])
    )
}

/// Runs both models on the probe input and returns the shorter run of each (seconds):
/// `(int8, f32)`. Runs alternate so that a busy machine slows both alike.
pub fn measure(int8: &LambdaModel, f32: &LambdaModel) -> Result<(f64, f64)> {
    let plans = [
        int8.plan(PROBE_BATCH, PROBE_SIDE, PROBE_SIDE)?,
        f32.plan(PROBE_BATCH, PROBE_SIDE, PROBE_SIDE)?,
    ];
    let n = PROBE_BATCH * PROBE_SIDE * PROBE_SIDE;
    // A smooth positive field in every channel: the values do not change the time.
    let features: Vec<f32> = (0..3 * n)
        .map(|i| 0.25 + 0.25 * ((i % 97) as f32 / 97.0))
        .collect();
    let mut lambda = vec![0.0f32; n];
    let mut best = [f64::INFINITY; 2];
    for round in 0..=PROBE_RUNS {
        for (plan, best) in plans.iter().zip(best.iter_mut()) {
            let started = Instant::now();
            plan.run(&features, &mut lambda)?;
            if round > 0 {
                *best = best.min(started.elapsed().as_secs_f64());
            }
        }
    }
    Ok((best[0], best[1]))
}

fn read_cache(path: &Path) -> BTreeMap<String, Measurement> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write_cache(path: &Path, entries: &BTreeMap<String, Measurement>) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{CACHE_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(entries)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Picks the faster bundled model for this CPU (cached in `cache_dir`, if given) and returns
/// it, named so that the outputs say what `--model auto` chose.
pub fn choose(cache_dir: Option<&Path>) -> Result<(LambdaModel, Choice)> {
    let key = cache_key(BUNDLED_MODEL, BUNDLED_F32_MODEL);
    let cache = cache_dir.map(|d| d.join(CACHE_FILE));
    let mut entries = cache.as_deref().map(read_cache).unwrap_or_default();
    let (measurement, cached) = match entries.get(&key) {
        Some(m) if m.precision == "int8" || m.precision == "f32" => (m.clone(), true),
        _ => {
            let int8 = LambdaModel::from_bytes(BUNDLED_MODEL, BUNDLED_MODEL_NAME)?;
            let f32 = LambdaModel::from_bytes(BUNDLED_F32_MODEL, BUNDLED_F32_MODEL_NAME)?;
            let (int8_seconds, f32_seconds) =
                measure(&int8, &f32).context("--model auto: timing the bundled models")?;
            let precision = if int8_seconds <= f32_seconds {
                "int8"
            } else {
                "f32"
            };
            (
                Measurement {
                    precision: precision.to_string(),
                    int8_seconds,
                    f32_seconds,
                },
                false,
            )
        }
    };
    let mut cache_used = cache;
    if !cached {
        if let Some(path) = &cache_used {
            entries.insert(key.clone(), measurement.clone());
            if write_cache(path, &entries).is_err() {
                cache_used = None; // read-only home: measured again next time
            }
        }
    }
    let (bytes, file, other) = if measurement.precision == "int8" {
        (BUNDLED_MODEL, "default.int8", "f32")
    } else {
        (BUNDLED_F32_MODEL, "default.f32", "int8")
    };
    let label = format!(
        "{file} (bundled, models/lambda/{file}.onnx; --model auto: {} faster than {other} on this CPU)",
        measurement.precision
    );
    let model = LambdaModel::from_bytes(bytes, &label)?;
    Ok((
        model,
        Choice {
            measurement,
            key,
            cache: cache_used,
            cached,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_is_measured_once_cached_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let (model, first) = choose(Some(dir.path())).unwrap();
        assert!(!first.cached);
        let m = &first.measurement;
        assert!(m.int8_seconds > 0.0 && m.f32_seconds > 0.0);
        assert_eq!(m.precision == "int8", m.int8_seconds <= m.f32_seconds);
        assert_eq!(model.info().precision, m.precision);
        assert!(model.name().contains("--model auto"), "{}", model.name());
        assert!(model.name().contains(&format!("default.{}", m.precision)));
        assert!(dir.path().join(CACHE_FILE).is_file());
        // The second start reads the cache: same choice, same name, no timing.
        let (again, second) = choose(Some(dir.path())).unwrap();
        assert!(second.cached);
        assert_eq!(second.measurement, first.measurement);
        assert_eq!(again.name(), model.name());
        assert!(second.describe().contains("cached"));
    }

    #[test]
    fn a_foreign_or_broken_cache_entry_is_measured_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CACHE_FILE), b"not json").unwrap();
        let (_, choice) = choose(Some(dir.path())).unwrap();
        assert!(!choice.cached);
        // An entry with another precision name is not trusted.
        let mut entries = read_cache(&dir.path().join(CACHE_FILE));
        entries.get_mut(&choice.key).unwrap().precision = "fp4".into();
        write_cache(&dir.path().join(CACHE_FILE), &entries).unwrap();
        assert!(!choose(Some(dir.path())).unwrap().1.cached);
    }

    #[test]
    fn without_a_cache_directory_it_still_chooses() {
        let (_, choice) = choose(None).unwrap();
        assert!(choice.cache.is_none() && !choice.cached);
        assert!(choice.describe().contains("no cache directory"));
    }

    #[test]
    fn the_key_names_the_cpu_and_the_models() {
        let key = cache_key(BUNDLED_MODEL, BUNDLED_F32_MODEL);
        assert!(key.starts_with(std::env::consts::ARCH));
        assert_ne!(key, cache_key(BUNDLED_F32_MODEL, BUNDLED_MODEL));
    }
}
