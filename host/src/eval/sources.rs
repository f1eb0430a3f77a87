//! `sparsemap-host eval --per-source`: every method on every data source, with one weight per
//! method and acquisition tuned on the pooled validation slices of the sources, and a summary
//! of the learned methods' margins per source.
//!
//! Protocol (what the tables mean; the parent module's steps 1, 2 and 4 apply unchanged):
//! 1. **Sources** ([`discover`]): `colin27` (`validation.npz` and `test.npz`) and every
//!    `SOURCE_test.npz` of the data directory, with `SOURCE_validation.npz` when it exists,
//!    `colin27` first and the others sorted by name. `SOURCE_train.npz` alone does not make a
//!    source, and the legacy `ood_*.npz` sets are not sources. `--sources` restricts the set
//!    ([`select`]).
//! 2. **Simulation**: as in plain `eval`, seeded by the acquisition and the split's *file stem*
//!    (`test`, `validation`, `mni152_t1_test`, …), so Colin27 sees the same k-space as in
//!    plain `eval` and no two splits share a noise realisation (`sources.json` lists the seeds).
//! 3. **Tuning**: each method's weight is tuned per acquisition by the parent module's search,
//!    on the *pooled* validation slices (`--validation-slices N` evenly spaced per source) of
//!    every evaluated source with a validation split, except those of `--tune-exclude`
//!    ([`tuning_sources`]). The criterion is the mean PSNR over the pooled slices. No test
//!    slice is ever used for tuning.
//! 4. **Test**: the tuned weight is used unchanged on the test split of every source
//!    (`--test-slices N` evenly spaced per source).
//! 5. **Summary** ([`summarise_sources`]), per acquisition: each method's mean over sources of
//!    its per-source mean PSNR (each source weighs the same); for the learned methods, per
//!    source, the margin in whole-image PSNR over the best classical method on that source
//!    (the best per-source mean of the tuned, non-learned methods: CSC, TV, BART) and over
//!    zero-filled, the mean of these margins over sources and the worst source; and int8 − f32.
//!
//! Outputs: `sources.md`, `sources.csv` (mean ± std per source, acquisition and method),
//! `sources_summary.csv` (the margins), `tuning.csv` and `sources.json` (settings, sources,
//! seeds, tuned weights, which sources were tuned on, every test slice).

use super::{carried_methods, grid_shape, AcquisitionSpec, Engine};
use super::{
    check_config, evenly_spaced, mean, progress_bar, run_cases, simulate_cases, summarise,
    table_csv_with, tuning_csv, Criterion, EvalConfig, Row, SliceResult, Tuned, TuningPoint,
};
use crate::dataset::{read_split, Split};
use crate::methods::{Method, Settings};
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The name of the Colin27 source (`validation.npz`, `test.npz`).
pub const COLIN27: &str = "colin27";

/// The acquisitions of `--per-source` when `--acquisitions` is not given: the three noise
/// levels at n = 128.
pub const DEFAULT_ACQUISITIONS: [&str; 3] = ["block128@0.075", "block128@0.15", "block128@0.3"];

/// The target for learned int8: mean margin over the best classical method over the
/// sources, in dB.
pub const TARGET_MEAN_MARGIN_DB: f64 = 1.0;
/// The target for learned int8: no source below the best classical method or
/// zero-filled by more than this, in dB.
pub const TARGET_WORST_MARGIN_DB: f64 = -0.2;

/// One evaluated source: its test split and, when it has one, its validation split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    pub test: PathBuf,
    pub validation: Option<PathBuf>,
}

/// Which sources a `--per-source` run evaluates and tunes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--sources`: only these (`None`: every discovered source).
    pub only: Option<Vec<String>>,
    /// `--tune-exclude`: sources whose validation slices are not used for tuning.
    pub tune_exclude: Vec<String>,
}

/// The evaluated sources of `data_dir` (module docs, step 1).
pub fn discover(data_dir: &Path) -> Result<Vec<Source>> {
    let entries = std::fs::read_dir(data_dir).with_context(|| {
        format!(
            "{}: cannot list the data directory (run `sparsemap-host export --out-dir {}` first)",
            data_dir.display(),
            data_dir.display()
        )
    })?;
    let mut others: Vec<Source> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", data_dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(name) = file_name.strip_suffix("_test.npz") else {
            continue;
        };
        if name.is_empty() || !entry.path().is_file() {
            continue;
        }
        ensure!(
            name != COLIN27,
            "{}: the source name {COLIN27:?} is reserved for test.npz and validation.npz",
            entry.path().display()
        );
        let validation = data_dir.join(format!("{name}_validation.npz"));
        others.push(Source {
            name: name.to_string(),
            test: entry.path(),
            validation: validation.is_file().then_some(validation),
        });
    }
    others.sort_by(|a, b| a.name.cmp(&b.name));
    let mut sources = Vec::with_capacity(others.len() + 1);
    let test = data_dir.join("test.npz");
    if test.is_file() {
        let validation = data_dir.join("validation.npz");
        sources.push(Source {
            name: COLIN27.to_string(),
            test,
            validation: validation.is_file().then_some(validation),
        });
    } else {
        eprintln!(
            "note: {} not found; evaluating without the {COLIN27} source",
            test.display()
        );
    }
    sources.extend(others);
    ensure!(
        !sources.is_empty(),
        "{}: no test.npz and no SOURCE_test.npz; run `sparsemap-host export --out-dir {}` first",
        data_dir.display(),
        data_dir.display()
    );
    Ok(sources)
}

fn names(sources: &[Source]) -> String {
    sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sources of `available` named in `only` (all when `None`), in discovery order; an
/// unknown name is an error that lists the available ones.
pub fn select(available: Vec<Source>, only: Option<&[String]>) -> Result<Vec<Source>> {
    let Some(only) = only else {
        return Ok(available);
    };
    ensure!(!only.is_empty(), "--sources: no source named");
    for name in only {
        ensure!(
            available.iter().any(|s| &s.name == name),
            "--sources: unknown source {name:?}; available: {}",
            names(&available)
        );
    }
    Ok(available
        .into_iter()
        .filter(|s| only.contains(&s.name))
        .collect())
}

/// The sources whose validation slices are pooled for tuning: those with a validation split
/// that `exclude` does not name (module docs, step 3). A name in `exclude` that is not an
/// evaluated source is an error.
pub fn tuning_sources<'a>(sources: &'a [Source], exclude: &[String]) -> Result<Vec<&'a Source>> {
    for name in exclude {
        ensure!(
            sources.iter().any(|s| &s.name == name),
            "--tune-exclude: {name:?} is not an evaluated source; evaluated: {}",
            names(sources)
        );
    }
    Ok(sources
        .iter()
        .filter(|s| s.validation.is_some() && !exclude.contains(&s.name))
        .collect())
}

/// Evenly spaced slices of one split of one source.
pub struct SourceSlices {
    pub source: String,
    /// The split, named after its file stem (the simulation's seed; module docs, step 2).
    pub split: Split,
    pub indices: Vec<usize>,
}

fn load_slices(source: &str, path: &Path, wanted: Option<usize>) -> Result<SourceSlices> {
    let mut split = read_split(path).with_context(|| format!("reading source {source:?}"))?;
    split.name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{}: not a UTF-8 file name", path.display()))?
        .to_string();
    ensure!(!split.is_empty(), "{}: has no slices", path.display());
    let indices = evenly_spaced(split.len(), wanted);
    Ok(SourceSlices {
        source: source.to_string(),
        split,
        indices,
    })
}

/// The validation slices the weights are tuned on (`slices` evenly spaced per source, `None`:
/// all), one entry per source of [`tuning_sources`].
pub fn load_tuning_slices(
    sources: &[Source],
    exclude: &[String],
    slices: Option<usize>,
) -> Result<Vec<SourceSlices>> {
    tuning_sources(sources, exclude)?
        .into_iter()
        .map(|s| {
            let path = s
                .validation
                .as_ref()
                .expect("tuning sources have validation");
            load_slices(&s.name, path, slices)
        })
        .collect()
}

/// One source in `sources.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    pub name: String,
    pub test: PathBuf,
    pub validation: Option<PathBuf>,
    pub test_slices: Vec<usize>,
    /// The validation slices pooled for tuning (empty when the source was not tuned on).
    pub validation_slices: Vec<usize>,
    pub tuned_on: bool,
}

/// The simulation seed of one split under one acquisition (per-slice seeds derive from it and
/// the slice index, see [`crate::simulate`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRecord {
    pub source: String,
    /// File stem of the split (`test`, `mni152_t1_validation`, …).
    pub split: String,
    pub acquisition: String,
    pub seed: u64,
}

/// `sources.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourcesReport {
    pub tool: String,
    pub settings: Settings,
    pub dictionary: String,
    pub seed: u64,
    pub criterion: Criterion,
    pub acquisitions: Vec<AcquisitionSpec>,
    pub sources: Vec<SourceRecord>,
    /// The sources whose validation slices were pooled for tuning.
    pub tuned_on: Vec<String>,
    /// `--tune-exclude`.
    pub tune_exclude: Vec<String>,
    pub seeds: Vec<SeedRecord>,
    /// One weight per method and acquisition, shared by every source.
    pub tuned: Vec<Tuned>,
    pub tuning: Vec<TuningPoint>,
    /// Test slices; `dataset` is the source's name.
    pub results: Vec<SliceResult>,
    pub outputs: Vec<PathBuf>,
}

/// Runs the per-source protocol (module docs).
pub fn run(config: &EvalConfig, selection: &Selection) -> Result<SourcesReport> {
    check_config(config)?;
    let sources = select(discover(&config.data_dir)?, selection.only.as_deref())?;
    let tuning = load_tuning_slices(&sources, &selection.tune_exclude, config.validation_slices)?;
    let tuned_methods = config.methods.iter().filter(|m| m.is_tuned()).count();
    ensure!(
        tuned_methods == 0 || !tuning.is_empty(),
        "no validation slices to tune on: none of the sources {} has a validation split that \
         --tune-exclude leaves in",
        names(&sources)
    );
    let tests: Vec<SourceSlices> = sources
        .iter()
        .map(|s| load_slices(&s.name, &s.test, config.test_slices))
        .collect::<Result<_>>()?;
    let shape = grid_shape(&tests[0].split)?;
    for set in tuning.iter().chain(&tests) {
        ensure!(
            grid_shape(&set.split)? == shape,
            "source {:?} ({}): grid {:?} differs from {:?} ({})",
            set.source,
            set.split.name,
            &set.split.shape()[1..],
            &tests[0].split.shape()[1..],
            tests[0].split.name
        );
    }
    let engine = Engine::new(config, shape, &[])?;
    let pooled: usize = tuning.iter().map(|t| t.indices.len()).sum();
    let tested: usize = tests.iter().map(|t| t.indices.len()).sum();
    let progress = progress_bar(
        config.acquisitions.len()
            * (tuned_methods * engine.per_tuning(pooled) + config.methods.len() * tested),
    );

    let mut report = SourcesReport {
        tool: format!("sparsemap-host {}", env!("CARGO_PKG_VERSION")),
        settings: config.settings.clone(),
        dictionary: engine.dictionary.name.clone(),
        seed: config.seed,
        criterion: config.criterion,
        acquisitions: config.acquisitions.clone(),
        sources: sources
            .iter()
            .zip(&tests)
            .map(|(s, t)| {
                let tuned = tuning.iter().find(|v| v.source == s.name);
                SourceRecord {
                    name: s.name.clone(),
                    test: s.test.clone(),
                    validation: s.validation.clone(),
                    test_slices: t.indices.clone(),
                    validation_slices: tuned.map(|v| v.indices.clone()).unwrap_or_default(),
                    tuned_on: tuned.is_some(),
                }
            })
            .collect(),
        tuned_on: tuning.iter().map(|t| t.source.clone()).collect(),
        tune_exclude: selection.tune_exclude.clone(),
        seeds: Vec::new(),
        tuned: Vec::new(),
        tuning: Vec::new(),
        results: Vec::new(),
        outputs: Vec::new(),
    };
    if let Some(path) = &config.reuse {
        carry_over(path, config, &mut report)?;
    }
    for spec in &config.acquisitions {
        for set in tuning.iter().chain(&tests) {
            report.seeds.push(SeedRecord {
                source: set.source.clone(),
                split: set.split.name.clone(),
                acquisition: spec.label.clone(),
                seed: spec.acquisition(config.seed, &set.split.name).seed,
            });
        }
    }

    engine.threads.install(|| -> Result<()> {
        for spec in &config.acquisitions {
            progress.set_message(format!("pooled validation slices, {}", spec.label));
            let mut pooled_cases = Vec::with_capacity(pooled);
            for set in &tuning {
                pooled_cases.extend(simulate_cases(&set.split, &set.indices, spec, config.seed)?);
            }
            let lambdas = engine.tune_methods(
                &pooled_cases,
                &config.methods,
                spec,
                &progress,
                (&mut report.tuning, &mut report.tuned),
            )?;
            drop(pooled_cases);
            for set in &tests {
                progress.set_message(format!("{}, {}", set.source, spec.label));
                let cases = simulate_cases(&set.split, &set.indices, spec, config.seed)?;
                for &(method, lambda) in &lambdas {
                    let results = run_cases(
                        &engine.pool,
                        &cases,
                        (method, lambda),
                        &set.source,
                        &spec.label,
                        None,
                        &progress,
                    )?
                    .0;
                    report.results.extend(results);
                }
            }
            write_outputs(&config.out_dir, &mut report)?;
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    write_outputs(&config.out_dir, &mut report)?;
    Ok(report)
}

/// `--reuse` in this mode: copies into `report` the tuned weights, tuning points and test
/// results of the methods that this run does not run from an earlier `sources.json`, which
/// must have used the same seed, criterion, acquisitions, tuning sources and, for every source
/// of this run, the same test slices (so the carried-over rows are on identical k-space).
fn carry_over(path: &Path, config: &EvalConfig, report: &mut SourcesReport) -> Result<()> {
    let earlier = read_report(path)?;
    let name = path.display();
    super::ensure_same_run(
        path,
        (earlier.seed, earlier.criterion),
        (report.seed, report.criterion),
    )?;
    let labels = |a: &[AcquisitionSpec]| a.iter().map(|s| s.label.clone()).collect::<Vec<_>>();
    ensure!(
        labels(&earlier.acquisitions) == labels(&report.acquisitions),
        "{name}: acquisitions {:?}, this run {:?}",
        labels(&earlier.acquisitions),
        labels(&report.acquisitions)
    );
    ensure!(
        earlier.tuned_on == report.tuned_on,
        "{name}: tuned on {:?}, this run on {:?}",
        earlier.tuned_on,
        report.tuned_on
    );
    for source in &report.sources {
        let then = earlier.sources.iter().find(|s| s.name == source.name);
        ensure!(
            then.is_some_and(|t| t.test_slices == source.test_slices
                && t.validation_slices == source.validation_slices),
            "{name}: source {} is missing or has other test/validation slices",
            source.name
        );
    }
    let methods = carried_methods(path, &earlier.results, &earlier.settings, config)?;
    if let Some(method) = methods.iter().find(|m| m.is_learned()) {
        ensure!(
            earlier.settings.learned == config.settings.learned,
            "{name}: {method:?} ran with {:?}, this run's models are {:?}; pass it in \
             --methods to run it with this run's models",
            earlier.settings.learned,
            config.settings.learned
        );
    }
    let carried = |m: Method| methods.contains(&m);
    report
        .tuned
        .extend(earlier.tuned.iter().filter(|t| carried(t.method)).cloned());
    report
        .tuning
        .extend(earlier.tuning.iter().filter(|t| carried(t.method)).cloned());
    report.results.extend(
        earlier
            .results
            .into_iter()
            .filter(|r| carried(r.method) && report.sources.iter().any(|s| s.name == r.dataset)),
    );
    Ok(())
}

/// Reads a `sources.json` written by [`run`].
pub fn read_report(json: &Path) -> Result<SourcesReport> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a sources.json written by `sparsemap-host eval --per-source`",
            json.display()
        )
    })
}

/// Rewrites the tables of `out_dir` from an earlier `sources.json` (no reconstruction).
pub fn rerender(json: &Path, out_dir: &Path) -> Result<SourcesReport> {
    let mut report = read_report(json)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    write_outputs(out_dir, &mut report)?;
    Ok(report)
}

fn write_outputs(out_dir: &Path, report: &mut SourcesReport) -> Result<()> {
    let write = |name: &str, text: String| -> Result<PathBuf> {
        let path = out_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let rows = summarise(&report.results);
    let summary = summarise_sources(&report.results);
    let written = [
        write("sources.md", markdown(&rows, &summary, report))?,
        write("sources.csv", table_csv_with(&rows, "source"))?,
        write("sources_summary.csv", summary_csv(&summary))?,
        write("tuning.csv", tuning_csv(&report.tuning))?,
        out_dir.join("sources.json"),
    ];
    for path in written {
        if !report.outputs.contains(&path) {
            report.outputs.push(path);
        }
    }
    write("sources.json", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

/// One method's mean over the sources of its per-source means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodMean {
    pub method: Method,
    /// Sources the method has results on.
    pub sources: usize,
    pub psnr: f64,
    pub psnr_head: f64,
    pub ssim: f64,
    pub ssim_head: f64,
}

/// A learned method against the baselines on one source (whole-image PSNR, dB).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceMargin {
    pub source: String,
    /// The learned method's mean PSNR on the source.
    pub psnr: f64,
    /// The best classical method on this source and its mean PSNR.
    pub best_classical: Option<(Method, f64)>,
    pub zero_filled: Option<f64>,
    pub over_classical: Option<f64>,
    pub over_zero_filled: Option<f64>,
}

/// The margins of one learned method over the sources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedMargins {
    pub method: Method,
    pub per_source: Vec<SourceMargin>,
    /// Mean over the sources of the per-source margins.
    pub mean_over_classical: Option<f64>,
    pub mean_over_zero_filled: Option<f64>,
    /// The source with the smallest margin, and the margin.
    pub worst_over_classical: Option<(String, f64)>,
    pub worst_over_zero_filled: Option<(String, f64)>,
}

/// The summary of one acquisition (module docs, step 5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcquisitionSummary {
    pub acquisition: String,
    pub sources: Vec<String>,
    pub means: Vec<MethodMean>,
    /// One entry per learned method with results (f32 before int8).
    pub learned: Vec<LearnedMargins>,
    /// learned int8 − learned f32 per source (sources with both).
    pub int8_minus_f32: Vec<(String, f64)>,
    pub int8_minus_f32_mean: Option<f64>,
}

impl AcquisitionSummary {
    pub fn learned(&self, method: Method) -> Option<&LearnedMargins> {
        self.learned.iter().find(|l| l.method == method)
    }
}

/// Whether a method counts as a classical baseline (tuned; not learned, not the U-Net, not
/// zero-filled).
pub fn is_classical(method: Method) -> bool {
    method.is_tuned()
}

fn first_seen<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

fn mean_of(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| mean(values.iter().copied()))
}

fn worst(values: &[(String, f64)]) -> Option<(String, f64)> {
    values.iter().min_by(|a, b| a.1.total_cmp(&b.1)).cloned()
}

/// The per-acquisition summary of per-slice results whose `dataset` is the source (module
/// docs, step 5); acquisitions, sources and methods in the order they first appear.
pub fn summarise_sources(results: &[SliceResult]) -> Vec<AcquisitionSummary> {
    let rows = summarise(results);
    let acquisitions = first_seen(rows.iter().map(|r| r.acquisition.clone()));
    acquisitions
        .into_iter()
        .map(|acquisition| {
            let rows: Vec<&Row> = rows
                .iter()
                .filter(|r| r.acquisition == acquisition)
                .collect();
            let sources = first_seen(rows.iter().map(|r| r.dataset.clone()));
            let methods = first_seen(rows.iter().map(|r| r.method));
            let psnr = |source: &str, method: Method| {
                rows.iter()
                    .find(|r| r.dataset == source && r.method == method)
                    .map(|r| r.psnr.0)
            };
            let means = methods
                .iter()
                .map(|&method| {
                    let of: Vec<&&Row> = rows.iter().filter(|r| r.method == method).collect();
                    let m = |f: fn(&Row) -> f64| mean(of.iter().map(|r| f(r)));
                    MethodMean {
                        method,
                        sources: of.len(),
                        psnr: m(|r| r.psnr.0),
                        psnr_head: m(|r| r.psnr_head.0),
                        ssim: m(|r| r.ssim.0),
                        ssim_head: m(|r| r.ssim_head.0),
                    }
                })
                .collect();
            // the U-Net too: its margins are the robustness comparison of issue 12
            let learned = [Method::LearnedF32, Method::LearnedInt8, Method::Unet]
                .into_iter()
                .filter(|m| methods.contains(m))
                .map(|method| {
                    let per_source: Vec<SourceMargin> = sources
                        .iter()
                        .filter_map(|source| {
                            let own = psnr(source, method)?;
                            let best_classical = methods
                                .iter()
                                .filter(|&&m| is_classical(m))
                                .filter_map(|&m| Some((m, psnr(source, m)?)))
                                .max_by(|a, b| a.1.total_cmp(&b.1));
                            let zero_filled = psnr(source, Method::ZeroFilled);
                            Some(SourceMargin {
                                source: source.clone(),
                                psnr: own,
                                best_classical,
                                zero_filled,
                                over_classical: best_classical.map(|(_, b)| own - b),
                                over_zero_filled: zero_filled.map(|z| own - z),
                            })
                        })
                        .collect();
                    let margins = |f: fn(&SourceMargin) -> Option<f64>| -> Vec<(String, f64)> {
                        per_source
                            .iter()
                            .filter_map(|s| Some((s.source.clone(), f(s)?)))
                            .collect()
                    };
                    let classical = margins(|s| s.over_classical);
                    let zero = margins(|s| s.over_zero_filled);
                    let values = |v: &[(String, f64)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
                    LearnedMargins {
                        method,
                        mean_over_classical: mean_of(&values(&classical)),
                        mean_over_zero_filled: mean_of(&values(&zero)),
                        worst_over_classical: worst(&classical),
                        worst_over_zero_filled: worst(&zero),
                        per_source,
                    }
                })
                .collect();
            let int8_minus_f32: Vec<(String, f64)> = sources
                .iter()
                .filter_map(|s| {
                    Some((
                        s.clone(),
                        psnr(s, Method::LearnedInt8)? - psnr(s, Method::LearnedF32)?,
                    ))
                })
                .collect();
            AcquisitionSummary {
                int8_minus_f32_mean: mean_of(
                    &int8_minus_f32.iter().map(|p| p.1).collect::<Vec<_>>(),
                ),
                int8_minus_f32,
                acquisition,
                sources,
                means,
                learned,
            }
        })
        .collect()
}

/// Whether learned int8 meets the targets on one acquisition: `(mean margin over the
/// best classical ≥ 1.0 dB, no source below best classical or zero-filled by more than
/// 0.2 dB)`; `None` when a margin cannot be computed.
pub fn int8_targets(summary: &AcquisitionSummary) -> Option<(bool, bool)> {
    let int8 = summary.learned(Method::LearnedInt8)?;
    let mean = int8.mean_over_classical?;
    let worst_classical = int8.worst_over_classical.as_ref()?.1;
    let worst_zero = int8.worst_over_zero_filled.as_ref()?.1;
    Some((
        mean >= TARGET_MEAN_MARGIN_DB,
        worst_classical.min(worst_zero) >= TARGET_WORST_MARGIN_DB,
    ))
}

fn signed(value: Option<f64>) -> String {
    value.map_or("—".into(), |v| format!("{v:+.2}"))
}

fn lambda_text(method: Method, lambda: f32) -> String {
    if !method.is_tuned() {
        "—".into()
    } else if lambda >= 1e-3 {
        format!("{lambda:.4}")
    } else {
        format!("{lambda:.1e}")
    }
}

fn markdown(rows: &[Row], summary: &[AcquisitionSummary], report: &SourcesReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# sparsemap-host eval --per-source\n");
    let _ = writeln!(
        out,
        "{}; CSC dictionary: {}; iterations: CSC {}, TV {}, BART wavelet {}, BART TV {} (CG steps); seed {}.",
        report.tool,
        report.dictionary,
        report.settings.csc_iterations,
        report.settings.tv_iterations,
        report.settings.bart_wavelet_iterations,
        report.settings.bart_tv_iterations,
        report.seed
    );
    if report.results.iter().any(|r| r.method.is_learned()) {
        let _ = writeln!(
            out,
            "Learned methods: {}.",
            report.settings.learned.describe()
        );
    }
    if let Some(model) = report
        .settings
        .unet_model
        .as_ref()
        .filter(|_| report.results.iter().any(|r| r.method == Method::Unet))
    {
        let _ = writeln!(
            out,
            "U-Net baseline (one network pass on the zero-filled image, no data consistency): {}.",
            model.display()
        );
    }
    let tuned_on: Vec<String> = report
        .sources
        .iter()
        .filter(|s| s.tuned_on)
        .map(|s| format!("{} ({})", s.name, s.validation_slices.len()))
        .collect();
    let not_tuned_on: Vec<String> = report
        .sources
        .iter()
        .filter(|s| !s.tuned_on)
        .map(|s| {
            if report.tune_exclude.contains(&s.name) {
                format!("{} (--tune-exclude)", s.name)
            } else {
                format!("{} (no validation split)", s.name)
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "One weight per method and acquisition (λ, scaled units), tuned by mean {} PSNR on the \
         pooled validation slices of {}{}. Test: mean ± std over each source's test slices; \
         PSNR/SSIM on magnitudes normalised by max|target|, whole 256×256 image and inside the \
         head mask.\n",
        match report.criterion {
            Criterion::Whole => "whole-image",
            Criterion::Head => "head-mask",
        },
        if tuned_on.is_empty() {
            "no source".to_string()
        } else {
            tuned_on.join(", ")
        },
        if not_tuned_on.is_empty() {
            String::new()
        } else {
            format!("; not tuned on: {}", not_tuned_on.join(", "))
        }
    );

    let _ = writeln!(out, "## Per source\n");
    for source in &report.sources {
        let _ = writeln!(
            out,
            "### {} ({}, {} test slices)\n",
            source.name,
            source
                .test
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source.test_slices.len()
        );
        let _ = writeln!(
            out,
            "| acquisition | method | λ | slices | PSNR (dB) | SSIM | PSNR head (dB) | SSIM head |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for r in rows.iter().filter(|r| r.dataset == source.name) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} ± {:.2} | {:.4} ± {:.4} | {:.2} ± {:.2} | {:.4} ± {:.4} |",
                r.acquisition,
                r.method.label(),
                lambda_text(r.method, r.lambda),
                r.slices,
                r.psnr.0,
                r.psnr.1,
                r.ssim.0,
                r.ssim.1,
                r.psnr_head.0,
                r.psnr_head.1,
                r.ssim_head.0,
                r.ssim_head.1,
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## Summary per acquisition\n");
    let _ = writeln!(
        out,
        "Means over sources weigh every source the same. Margins are in whole-image PSNR (dB), \
         per source: each learned method (ours, and the U-Net where it ran) minus the best \
         classical method on that source (the best mean of CSC, TV and BART) and minus \
         zero-filled; *worst* is the source with the \
         smallest margin. Targets for learned int8: mean margin over the best classical \
         ≥ {TARGET_MEAN_MARGIN_DB:.1} dB, and no source below the best classical or zero-filled \
         by more than {:.1} dB.\n",
        -TARGET_WORST_MARGIN_DB
    );
    for acq in summary {
        let _ = writeln!(out, "### {}\n", acq.acquisition);
        let _ = writeln!(
            out,
            "| method | sources | PSNR (dB) | SSIM | PSNR head (dB) | SSIM head |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for m in &acq.means {
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {:.4} | {:.2} | {:.4} |",
                m.method.label(),
                m.sources,
                m.psnr,
                m.ssim,
                m.psnr_head,
                m.ssim_head
            );
        }
        let _ = writeln!(out);
        if acq.learned.is_empty() {
            continue;
        }
        let mut header = String::from("| source | best classical (dB) | zero-filled (dB) |");
        let mut rule = String::from("|---|---|---|");
        for l in &acq.learned {
            let short = l.method.name();
            let _ = write!(
                header,
                " {short} (dB) | {short} − best classical | {short} − zero-filled |"
            );
            rule.push_str("---|---|---|");
        }
        let both = !acq.int8_minus_f32.is_empty();
        if both {
            header.push_str(" int8 − f32 |");
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for source in &acq.sources {
            let reference = acq
                .learned
                .iter()
                .find_map(|l| l.per_source.iter().find(|s| &s.source == source));
            let Some(reference) = reference else {
                continue;
            };
            let _ = write!(
                out,
                "| {} | {} | {} |",
                source,
                reference
                    .best_classical
                    .map_or("—".into(), |(m, p)| format!("{p:.2} ({m})")),
                reference
                    .zero_filled
                    .map_or("—".into(), |z| format!("{z:.2}"))
            );
            for l in &acq.learned {
                match l.per_source.iter().find(|s| &s.source == source) {
                    Some(s) => {
                        let _ = write!(
                            out,
                            " {:.2} | {} | {} |",
                            s.psnr,
                            signed(s.over_classical),
                            signed(s.over_zero_filled)
                        );
                    }
                    None => out.push_str(" — | — | — |"),
                }
            }
            if both {
                let d = acq
                    .int8_minus_f32
                    .iter()
                    .find(|p| &p.0 == source)
                    .map(|p| p.1);
                let _ = write!(out, " {} |", signed(d));
            }
            out.push('\n');
        }
        let _ = write!(out, "| **mean** | | |");
        for l in &acq.learned {
            let _ = write!(
                out,
                " | **{}** | **{}** |",
                signed(l.mean_over_classical),
                signed(l.mean_over_zero_filled)
            );
        }
        if both {
            let _ = write!(out, " {} |", signed(acq.int8_minus_f32_mean));
        }
        out.push('\n');
        let worst_text = |w: &Option<(String, f64)>| {
            w.as_ref()
                .map_or("—".into(), |(s, v)| format!("{v:+.2} ({s})"))
        };
        let _ = write!(out, "| **worst** | | |");
        for l in &acq.learned {
            let _ = write!(
                out,
                " | {} | {} |",
                worst_text(&l.worst_over_classical),
                worst_text(&l.worst_over_zero_filled)
            );
        }
        if both {
            let _ = write!(out, " {} |", worst_text(&worst(&acq.int8_minus_f32)));
        }
        out.push_str("\n\n");
        if let Some((mean_met, worst_met)) = int8_targets(acq) {
            let int8 = acq.learned(Method::LearnedInt8).expect("targets need int8");
            let yes = |met: bool| if met { "met" } else { "**not met**" };
            let _ = writeln!(
                out,
                "Targets (learned int8): mean margin over the best classical {} dB (≥ {:+.1}: {}); \
                 worst source {} dB vs best classical, {} dB vs zero-filled (≥ {:+.1}: {}).\n",
                signed(int8.mean_over_classical),
                TARGET_MEAN_MARGIN_DB,
                yes(mean_met),
                signed(int8.worst_over_classical.as_ref().map(|w| w.1)),
                signed(int8.worst_over_zero_filled.as_ref().map(|w| w.1)),
                TARGET_WORST_MARGIN_DB,
                yes(worst_met)
            );
        }
    }
    out
}

/// `sources_summary.csv`: one row per acquisition, learned method and source, then a `mean`
/// and a `worst` row (the worst row names the sources of the two smallest margins in its last
/// two columns).
fn summary_csv(summary: &[AcquisitionSummary]) -> String {
    let mut out = String::from(
        "acquisition,method,source,psnr,best_classical,best_classical_psnr,zero_filled_psnr,margin_best_classical,margin_zero_filled,int8_minus_f32,worst_best_classical_source,worst_zero_filled_source\n",
    );
    let number = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    for acq in summary {
        for l in &acq.learned {
            for s in &l.per_source {
                let d = acq
                    .int8_minus_f32
                    .iter()
                    .find(|p| p.0 == s.source)
                    .map(|p| p.1);
                let _ = writeln!(
                    out,
                    "{},{},{},{:.4},{},{},{},{},{},{},,",
                    acq.acquisition,
                    l.method,
                    s.source,
                    s.psnr,
                    s.best_classical.map_or(String::new(), |b| b.0.to_string()),
                    number(s.best_classical.map(|b| b.1)),
                    number(s.zero_filled),
                    number(s.over_classical),
                    number(s.over_zero_filled),
                    number(d)
                );
            }
            let _ = writeln!(
                out,
                "{},{},mean,,,,,{},{},{},,",
                acq.acquisition,
                l.method,
                number(l.mean_over_classical),
                number(l.mean_over_zero_filled),
                number(acq.int8_minus_f32_mean)
            );
            let _ = writeln!(
                out,
                "{},{},worst,,,,,{},{},{},{},{}",
                acq.acquisition,
                l.method,
                number(l.worst_over_classical.as_ref().map(|w| w.1)),
                number(l.worst_over_zero_filled.as_ref().map(|w| w.1)),
                number(worst(&acq.int8_minus_f32).map(|w| w.1)),
                l.worst_over_classical
                    .as_ref()
                    .map_or(String::new(), |w| w.0.clone()),
                l.worst_over_zero_filled
                    .as_ref()
                    .map_or(String::new(), |w| w.0.clone()),
            );
        }
    }
    out
}
