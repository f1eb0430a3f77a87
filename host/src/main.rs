//! `sparsemap-host`: export real MR data, simulate low-field acquisitions and wire streams,
//! evaluate every method against the classical baselines, and benchmark them.
//!
//! ```sh
//! sparsemap-host export --out-dir data                     # Colin27 splits + MNI152 / T2 sets
//! sparsemap-host simulate --split data/test.npz --acquisition block128@0.15 --out data/sim/test.npz
//! sparsemap-host simulate-scan --input data/sim/test.npz --slices 0,1 --out scan.smw --drop 0.01
//! sparsemap-host eval --data-dir data --out-dir results
//! sparsemap-host bench
//! sparsemap-host bench-e2e --threads 1,2                   # whole processes, sparsemap vs BART
//! ```
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sparsemap_host::dataset::{read_simulated, read_split, write_simulated, SimulatedSet};
use sparsemap_host::eval::{self, AcquisitionSpec, Criterion, EvalConfig};
use sparsemap_host::export::{export, ExportConfig};
use sparsemap_host::methods::{LearnedSettings, Method, Settings};
use sparsemap_host::scan::{simulate_scan, FaultSpec, SampleFormat, ScanSpec};
use sparsemap_host::simulate::simulate_stack;
use sparsemap_host::sources::ExtraSources;
use sparsemap_host::{bench, e2e, REPO_ROOT};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sparsemap-host",
    version,
    about = "Host-side validation for sparsemap: real data, low-field simulation, baselines, metrics and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export train/validation/test splits of real MR slices (Colin27 T1), the
    /// out-of-distribution sets (MNI152 T1, synthetic T2) and the per-source splits
    /// SOURCE_{train,validation,test} of every further real source, as .npz + .json.
    Export(ExportArgs),
    /// Simulate a low-field acquisition (mask, k-space noise) of a split; writes target,
    /// k-space, mask, zero-filled image and the seeds to one .npz + .json.
    Simulate(SimulateArgs),
    /// Turn simulated slices into a wire stream (.smw, DESIGN §5), optionally with faults;
    /// a multi-coil set is sent with one line per coil per sampled row.
    SimulateScan(SimulateScanArgs),
    /// Tune every method on the validation split, measure it on the test and
    /// out-of-distribution sets; writes table.md, table.csv, tuning.csv, eval.json, figures.
    Eval(EvalArgs),
    /// Wall time per slice of every method on one 256x256 slice, as ratios to CSC.
    Bench(BenchArgs),
    /// Whole processes on the bundled example: `sparsemap recon` (int8, f32) and BART pics
    /// (TV, l1-wavelet) per thread count, with PSNR, peak RSS and sparsemap's stage times.
    BenchE2e(BenchE2eArgs),
    /// The multi-coil comparison: simulated coil arrays on the Colin27 validation (tuning)
    /// and test slices; zero-filled RSS and SENSE, BART pics with ESPIRiT maps; writes
    /// coils.md, coils.csv, coils.json.
    EvalCoils(EvalCoilsArgs),
}

#[derive(Args)]
struct EvalCoilsArgs {
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "results/coils")]
    out_dir: PathBuf,
    /// Acquisitions, MASK@NOISE, comma separated (vdR masks get --vd-centre-lines centre rows).
    #[arg(long, value_delimiter = ',', default_values = ["block128@0.15", "vd3@0.15"])]
    acquisitions: Vec<AcquisitionSpec>,
    #[arg(long, default_value_t = sparsemap_host::eval_coils::VD_CENTRE_LINES)]
    vd_centre_lines: usize,
    #[arg(long, default_value_t = 8)]
    coils: usize,
    /// Noise correlation between neighbouring coils, in [0, 1).
    #[arg(long, default_value_t = 0.2)]
    coil_correlation: f64,
    #[arg(long, default_value_t = 4)]
    validation_slices: usize,
    #[arg(long, default_value_t = 8)]
    test_slices: usize,
    /// Points of the coarse weight grid.
    #[arg(long, default_value_t = 5)]
    grid_points: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 100)]
    bart_wavelet_iterations: usize,
    /// BART's -i for ADMM (cumulative CG steps).
    #[arg(long, default_value_t = 100)]
    bart_tv_iterations: usize,
    /// Side of ESPIRiT's calibration region (bart ecalib -r).
    #[arg(long, default_value_t = sparsemap_host::baselines::bart::ECALIB_CALIBRATION)]
    calibration: usize,
    /// Slices reconstructed at the same time (each single-threaded).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct ExportArgs {
    /// Colin27 T1 volume (Debian package mricron-data).
    #[arg(long, default_value = "/usr/share/mricron/templates/ch2.nii.gz")]
    colin27: PathBuf,
    /// Directory with the MNI ICBM152 2009a T1, GM and WM files from the nilearn wheel
    /// (`scripts/fetch-data.sh` puts them there); `none` exports Colin27 only.
    #[arg(long, default_value = "data/external/nilearn")]
    mni_dir: String,
    #[arg(long, default_value = "data")]
    out_dir: PathBuf,
    /// Seed of the synthetic phase.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Export only Colin27 and the legacy out-of-distribution sets, not the further sources
    /// (Colin27 skull-stripped and 0.5 mm, MNI152 T1 and synthetic T2 slabs, INIA19 macaque,
    /// nibabel's EPI).
    #[arg(long)]
    no_extra_sources: bool,
    /// nibabel's example EPI run (`scripts/fetch-data.sh` extracts it from the nibabel wheel).
    #[arg(long, default_value = sparsemap_host::sources::EPI_DEFAULT)]
    epi: PathBuf,
    /// Your own images as a source: NAME=PATH, PATH a NIfTI-1 file or a directory holding one
    /// DICOM series; writes NAME_{train,validation,test} (voxel-disjoint axial slabs), or
    /// NAME_test alone for a volume too short to split. Repeatable.
    #[arg(long, value_name = "NAME=PATH")]
    user: Vec<String>,
    /// Export only the --user sources, not Colin27 and the bundled sources.
    #[arg(long, requires = "user")]
    user_only: bool,
}

#[derive(Args)]
struct SimulateArgs {
    /// A split written by `export` (e.g. data/test.npz).
    #[arg(long)]
    split: PathBuf,
    /// MASK@NOISE: blockN (central NxN k-space block), vdR (1-D variable density, R-fold),
    /// poissonR (2-D Poisson disc, R-fold); NOISE = k-space noise std / k-space RMS.
    #[arg(long, default_value = "block128@0.15")]
    acquisition: AcquisitionSpec,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output .npz (a .json sidecar is written next to it).
    #[arg(long)]
    out: PathBuf,
    /// Also simulate N receive coils (1..=32; Biot–Savart loops around the head, correlated
    /// noise): adds coil_kspace [S,C,H,W], sensitivities [C,H,W], noise_scan [S,C,M] and
    /// noise_covariance [C,C] to the output (host/src/coils.rs).
    #[arg(long, value_name = "N")]
    coils: Option<usize>,
    /// Noise correlation between neighbouring coils, in [0, 1) (decays with coil distance).
    #[arg(long, default_value_t = 0.2, requires = "coils")]
    coil_correlation: f64,
    /// Noise-scan samples per coil and slice (the scanner's noise-adjustment acquisition).
    #[arg(long, default_value_t = sparsemap_host::coils::DEFAULT_NOISE_SAMPLES, requires = "coils")]
    noise_samples: usize,
    /// Field of view in mm of the 256-pixel grid (the exported slices are 1 mm voxels).
    #[arg(long, default_value_t = 256.0, requires = "coils")]
    fov_mm: f64,
    /// Write one slice's multi-coil input for the edge binary to DIR: kspace.npy (complex64
    /// [C, n_y, n_x]), mask.npy (float32 [n_y, n_x]), noise.npy (complex64 [C, M]),
    /// target.npy (complex64 [n_y, n_x]) and sensitivities.npy (the true maps, [C, n_y, n_x]).
    #[arg(long, value_name = "DIR", requires = "coils")]
    npy_dir: Option<PathBuf>,
    /// The slice written to --npy-dir.
    #[arg(long, default_value_t = 0, requires = "npy_dir")]
    npy_slice: usize,
}

#[derive(Args)]
struct SimulateScanArgs {
    /// A simulated set written by `simulate`.
    #[arg(long)]
    input: PathBuf,
    /// Slices to send, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    slices: Vec<usize>,
    /// Output stream (.smw); the injected faults go to a .json next to it.
    #[arg(long)]
    out: PathBuf,
    /// Sample format on the wire.
    #[arg(long, value_enum, default_value = "i16")]
    format: SampleFormatArg,
    #[arg(long, default_value_t = 1)]
    scan_id: u32,
    #[arg(long, default_value_t = 50.0)]
    field_mt: f32,
    /// Field of view in mm (y and x; the exported slices are 1 mm voxels on a 256 grid).
    #[arg(long, default_value_t = 256.0)]
    fov_mm: f32,
    /// Fraction of line frames lost on the link.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Fraction of line frames sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Fraction of line frames swapped with a later one (within 64 frames).
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Fraction of line frames with a flipped byte (CRC failure).
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// For a multi-coil set (`simulate --coils`): send the single-coil `kspace` instead of
    /// one line per coil per sampled row.
    #[arg(long)]
    single_coil: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SampleFormatArg {
    I16,
    F32,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "results")]
    out_dir: PathBuf,
    /// Acquisitions (MASK@NOISE, comma separated). Default: the acquisition sizes at
    /// s = 0.15 and the noise levels at n = 128
    /// (block128@0.15,block96@0.15,block160@0.15,block128@0.075,block128@0.3); with
    /// --per-source the noise levels only (block128@0.075,block128@0.15,block128@0.3).
    #[arg(long, value_delimiter = ',')]
    acquisitions: Option<Vec<AcquisitionSpec>>,
    /// Acquisition of the out-of-distribution sets (MNI152 T1, synthetic T2); `none` skips them.
    #[arg(long, default_value = "block128@0.15")]
    ood_acquisition: String,
    #[command(flatten)]
    methods: MethodArgs,
    /// Validation slices used for tuning (evenly spaced); default all.
    #[arg(long)]
    validation_slices: Option<usize>,
    /// Slices of each evaluated set (evenly spaced); default all.
    #[arg(long)]
    test_slices: Option<usize>,
    /// Points of the coarse weight grid.
    #[arg(long, default_value_t = 6)]
    grid_points: usize,
    #[command(flatten)]
    iterations: IterationArgs,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Tune the weights for the mean PSNR of the whole image or inside the head mask.
    #[arg(long, value_enum, default_value = "whole")]
    tune_on: Criterion,
    /// Only rewrite the tables of --out-dir from this earlier eval.json (no reconstruction).
    #[arg(long)]
    from_json: Option<PathBuf>,
    /// Skip the PNG figure grids.
    #[arg(long)]
    no_figures: bool,
    /// Carry over the results of methods not in --methods from this earlier eval.json (same
    /// seed and slices), e.g. `--methods learned-f32,learned-int8 --reuse results/eval.json`;
    /// with --per-source, from an earlier sources.json (same seed, acquisitions, tuning
    /// sources and slices), e.g. to compare another model with the same baselines.
    #[arg(long, value_name = "eval.json")]
    reuse: Option<PathBuf>,
    /// Evaluate per data source: colin27 (validation.npz, test.npz) and every SOURCE_test.npz
    /// of --data-dir; weights tuned on the pooled validation slices of the sources; writes
    /// sources.md, sources.csv, sources_summary.csv, tuning.csv and sources.json (no figures,
    /// no out-of-distribution sets).
    #[arg(long, conflicts_with = "ood_acquisition")]
    per_source: bool,
    /// With --per-source: evaluate only these sources (comma separated).
    #[arg(long, value_delimiter = ',', requires = "per_source")]
    sources: Option<Vec<String>>,
    /// With --per-source: do not tune on these sources' validation slices (comma separated),
    /// e.g. for leave-one-source-out runs.
    #[arg(long, value_delimiter = ',', requires = "per_source")]
    tune_exclude: Vec<String>,
}

/// `eval`'s acquisitions without --per-source.
const DEFAULT_ACQUISITIONS: [&str; 5] = [
    "block128@0.15",
    "block96@0.15",
    "block160@0.15",
    "block128@0.075",
    "block128@0.3",
];

/// The default of --methods (`eval` and `bench`).
const DEFAULT_METHODS: &str = "zero-filled,csc,tv,bart-wavelet,bart-tv,learned-f32,learned-int8";

#[derive(Args)]
struct MethodArgs {
    /// Methods to run, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = DEFAULT_METHODS
    )]
    methods: Vec<Method>,
}

#[derive(Args)]
struct IterationArgs {
    #[arg(long, default_value_t = sparsemap_core::recon::ITERATIONS)]
    csc_iterations: usize,
    #[arg(long, default_value_t = 200)]
    tv_iterations: usize,
    #[arg(long, default_value_t = 100)]
    bart_wavelet_iterations: usize,
    /// BART's -i for ADMM (cumulative CG steps).
    #[arg(long, default_value_t = 100)]
    bart_tv_iterations: usize,
    /// The f32 Lambda model of `learned-f32` (its T and low-pass weight come with it).
    #[arg(long, default_value = "models/lambda/default.f32.onnx")]
    model_f32: PathBuf,
    /// The int8 Lambda model of `learned-int8`.
    #[arg(long, default_value = "models/lambda/default.int8.onnx")]
    model_int8: PathBuf,
    /// The dictionary the learned methods run with (any K and odd filter size).
    #[arg(long, default_value = "models/dictionaries/cdl_k32_s9.npy")]
    model_dictionary: PathBuf,
    /// The learned methods' background gate (DESIGN §3.7 item 7): its threshold kappa, or
    /// `off` (the ablation).
    #[arg(long, value_name = "KAPPA|off", default_value = "8", value_parser = parse_gate)]
    background_gate: GateArg,
    /// The ONNX file of the U-Net baseline (`unet` in --methods; made by
    /// `python -m sparsemap_train.unet`).
    #[arg(long)]
    unet_model: Option<PathBuf>,
}

/// `--background-gate`: a positive threshold or `off`.
#[derive(Debug, Clone, Copy)]
struct GateArg(Option<f32>);

fn parse_gate(text: &str) -> std::result::Result<GateArg, String> {
    sparsemap_edge::method::parse_background_gate(text).map(GateArg)
}

impl IterationArgs {
    fn settings(&self) -> Settings {
        Settings {
            csc_iterations: self.csc_iterations,
            csc_lowpass_weight: sparsemap_core::recon::LOWPASS_WEIGHT as f32,
            tv_iterations: self.tv_iterations,
            bart_wavelet_iterations: self.bart_wavelet_iterations,
            bart_tv_iterations: self.bart_tv_iterations,
            learned: LearnedSettings {
                model_f32: self.model_f32.clone(),
                model_int8: self.model_int8.clone(),
                dictionary: self.model_dictionary.clone(),
                background_gate: self.background_gate.0,
            },
            unet_model: self.unet_model.clone(),
        }
    }
}

#[derive(Args)]
struct BenchArgs {
    /// Centred k-space .npy (complex64 [256, 256]); default: the bundled example
    /// (examples/colin27: Colin27 axial slice, central 128x128 block, s = 0.15).
    #[arg(long, requires = "mask")]
    kspace: Option<PathBuf>,
    #[arg(long, requires = "kspace")]
    mask: Option<PathBuf>,
    /// Target image .npy for a PSNR sanity column.
    #[arg(long)]
    target: Option<PathBuf>,
    #[command(flatten)]
    methods: MethodArgs,
    /// Take the weights from an `eval.json` (tuned for block128@0.15); default: each
    /// method's built-in weight.
    #[arg(long)]
    weights_from: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    #[command(flatten)]
    iterations: IterationArgs,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchE2eArgs {
    /// The `sparsemap` executable; default: the one next to this executable (both are built
    /// into the same target directory).
    #[arg(long)]
    sparsemap: Option<PathBuf>,
    /// Thread counts: `sparsemap recon --threads N` and BART's OMP_NUM_THREADS. Must include 1.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    threads: Vec<usize>,
    /// Take BART's TV and l1-wavelet weights from an `eval.json` (tuned on validation for
    /// block128@0.15, the example's acquisition).
    #[arg(long, default_value = "results/eval.json")]
    weights_from: PathBuf,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    #[command(flatten)]
    iterations: IterationArgs,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Export(args) => run_export(args),
        Command::Simulate(args) => run_simulate(args),
        Command::SimulateScan(args) => run_simulate_scan(args),
        Command::Eval(args) => run_eval(args),
        Command::BenchE2e(args) => run_bench_e2e(args),
        Command::Bench(args) => run_bench(args),
        Command::EvalCoils(args) => run_eval_coils(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sparsemap-host: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn counter(len: usize, what: &str) -> ProgressBar {
    ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what} {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    )
}

fn run_export(args: ExportArgs) -> Result<()> {
    let user = args
        .user
        .iter()
        .map(|text| sparsemap_host::sources::UserSource::parse(text))
        .collect::<Result<Vec<_>>>()?;
    if args.user_only {
        return run_export_user(&user, &args.out_dir, args.seed);
    }
    let mni_dir = match args.mni_dir.as_str() {
        "none" => None,
        dir => {
            let dir = PathBuf::from(dir);
            if !dir.exists() {
                bail!(
                    "{}: not found; run scripts/fetch-data.sh to extract the MNI152 files from the \
                     nilearn wheel, or pass --mni-dir none to export Colin27 only",
                    dir.display()
                );
            }
            Some(dir)
        }
    };
    let config = ExportConfig {
        colin27: args.colin27,
        mni_dir,
        out_dir: args.out_dir.clone(),
        seed: args.seed,
        extra: (!args.no_extra_sources).then(|| ExtraSources {
            epi_example4d: args.epi,
            ..ExtraSources::default()
        }),
    };
    let bar = counter(0, "planes");
    let summary = export(&config, &bar)?;
    bar.finish_and_clear();
    for split in &summary.splits {
        println!(
            "{}: {} slices ({})",
            split.name,
            split.count,
            split.npz.display()
        );
    }
    if let Some(reason) = &summary.ood_skipped {
        println!("out-of-distribution sets not exported: {reason}");
    }
    for skipped in &summary.sources_skipped {
        println!("source skipped: {skipped}");
    }
    if !user.is_empty() {
        run_export_user(&user, &args.out_dir, args.seed)?;
    }
    Ok(())
}

fn run_export_user(
    user: &[sparsemap_host::sources::UserSource],
    out_dir: &std::path::Path,
    seed: u64,
) -> Result<()> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let bar = counter(0, "planes");
    let splits = sparsemap_host::export::export_user(user, out_dir, seed, &bar)?;
    bar.finish_and_clear();
    for split in &splits {
        println!(
            "{}: {} slices ({})",
            split.name,
            split.count,
            split.npz.display()
        );
    }
    Ok(())
}

fn run_simulate(args: SimulateArgs) -> Result<()> {
    let split = read_split(&args.split)?;
    let acquisition = args.acquisition.acquisition(args.seed, &split.name);
    let count = split.targets.dim().0;
    let bar = counter(count, "slices");
    let (kspace, masks, zero_filled, records) =
        simulate_stack(split.targets.view(), &acquisition, |_| bar.inc(1))
            .with_context(|| format!("simulating {}", args.split.display()))?;
    bar.finish_and_clear();
    let acquisition_json = serde_json::json!({
        "label": args.acquisition.label,
        "acquisition": acquisition,
        "base_seed": args.seed,
        "source": args.split,
        "slices": records,
    });
    let set = SimulatedSet {
        split,
        kspace,
        masks,
        zero_filled,
        acquisition: acquisition_json,
    };
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let Some(coils) = args.coils else {
        write_simulated(&args.out, &set)?;
        println!(
            "{}: {count} slices, {} (seed {})",
            args.out.display(),
            args.acquisition.label,
            args.seed
        );
        return Ok(());
    };
    if !(1..=sparsemap_host::coils::MAX_COILS).contains(&coils) {
        bail!(
            "--coils {coils}: 1..={} coils are supported",
            sparsemap_host::coils::MAX_COILS
        );
    }
    if !(args.coil_correlation.is_finite() && (0.0..1.0).contains(&args.coil_correlation)) {
        bail!(
            "--coil-correlation {}: must be in [0, 1)",
            args.coil_correlation
        );
    }
    if !(1..=1 << 24).contains(&args.noise_samples) {
        bail!(
            "--noise-samples {}: must be in 1..=16777216",
            args.noise_samples
        );
    }
    if !(args.fov_mm.is_finite() && args.fov_mm > 0.0) {
        bail!("--fov-mm {}: must be positive", args.fov_mm);
    }
    if let Some(dir) = &args.npy_dir {
        if args.npy_slice >= count {
            bail!(
                "--npy-slice {}: {} has {count} slices",
                args.npy_slice,
                args.split.display()
            );
        }
        if dir.exists() && !dir.is_dir() {
            bail!("--npy-dir {}: exists and is not a directory", dir.display());
        }
    }
    let spec = sparsemap_host::coils::CoilSpec {
        coils,
        correlation: args.coil_correlation,
        noise_samples: args.noise_samples,
        fov_mm: [args.fov_mm, args.fov_mm],
        geometry: sparsemap_host::coils::CoilGeometry::default(),
    };
    let bar = counter(count, "slices (coils)");
    let stack = sparsemap_host::coils::simulate_coil_stack(
        set.split.targets.view(),
        &acquisition,
        &spec,
        |_| bar.inc(1),
    )
    .with_context(|| format!("simulating {coils} coils of {}", args.split.display()))?;
    bar.finish_and_clear();
    sparsemap_host::dataset::write_simulated_coils(&args.out, &set, &stack, &spec)?;
    println!(
        "{}: {count} slices, {} coils, {} (seed {})",
        args.out.display(),
        coils,
        args.acquisition.label,
        args.seed
    );
    if let Some(dir) = &args.npy_dir {
        write_npy_dir(dir, &set, &stack, args.npy_slice)?;
        println!(
            "{}: slice {} as kspace.npy, mask.npy, noise.npy, target.npy, sensitivities.npy",
            dir.display(),
            args.npy_slice
        );
    }
    Ok(())
}

/// `simulate --npy-dir`: one slice's multi-coil input as the edge binary reads it.
fn write_npy_dir(
    dir: &Path,
    set: &SimulatedSet,
    stack: &sparsemap_host::coils::CoilStack,
    slice: usize,
) -> Result<()> {
    use ndarray::Axis;
    use ndarray_npy::write_npy;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = |name: &str| dir.join(name);
    let kspace = stack.kspace.index_axis(Axis(0), slice).to_owned();
    write_npy(path("kspace.npy"), &kspace)
        .with_context(|| format!("writing {}", path("kspace.npy").display()))?;
    let mask = set
        .masks
        .index_axis(Axis(0), slice)
        .mapv(|m| if m { 1.0f32 } else { 0.0 });
    write_npy(path("mask.npy"), &mask)
        .with_context(|| format!("writing {}", path("mask.npy").display()))?;
    let noise = stack.noise_scan.index_axis(Axis(0), slice).to_owned();
    write_npy(path("noise.npy"), &noise)
        .with_context(|| format!("writing {}", path("noise.npy").display()))?;
    let target = set.split.targets.index_axis(Axis(0), slice).to_owned();
    write_npy(path("target.npy"), &target)
        .with_context(|| format!("writing {}", path("target.npy").display()))?;
    write_npy(path("sensitivities.npy"), &stack.sensitivities)
        .with_context(|| format!("writing {}", path("sensitivities.npy").display()))?;
    Ok(())
}

fn run_simulate_scan(args: SimulateScanArgs) -> Result<()> {
    let set = read_simulated(&args.input)?;
    let count = set.kspace.dim().0;
    let slices: Vec<usize> = if args.slices.is_empty() {
        (0..count).collect()
    } else {
        args.slices.clone()
    };
    if let Some(&bad) = slices.iter().find(|&&s| s >= count) {
        bail!(
            "{}: has {count} slices, slice {bad} does not exist",
            args.input.display()
        );
    }
    let coils = sparsemap_host::dataset::read_coils(&args.input)?;
    let kspace = set.kspace.select(ndarray::Axis(0), &slices);
    let masks = set.masks.select(ndarray::Axis(0), &slices);
    let spec = ScanSpec {
        scan_id: args.scan_id,
        field_mt: args.field_mt,
        fov_mm: [args.fov_mm, args.fov_mm],
        samples: match args.format {
            SampleFormatArg::I16 => SampleFormat::I16,
            SampleFormatArg::F32 => SampleFormat::F32,
        },
    };
    let faults = FaultSpec {
        drop: args.drop,
        duplicate: args.duplicate,
        reorder: args.reorder,
        corrupt: args.corrupt,
        seed: args.fault_seed,
    };
    let (bytes, log) = match &coils {
        Some((stack, _)) if !args.single_coil => {
            let coil_kspace = stack.kspace.select(ndarray::Axis(0), &slices);
            sparsemap_host::scan::simulate_scan_coils(
                coil_kspace.view(),
                masks.view(),
                &spec,
                &faults,
            )
        }
        _ => simulate_scan(kspace.view(), masks.view(), &spec, &faults),
    }
    .with_context(|| format!("making a wire stream of {}", args.input.display()))?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    let log_path = args.out.with_extension("faults.json");
    let log_json = serde_json::json!({
        "input": args.input,
        "slices": slices,
        "faults": log,
    });
    std::fs::write(&log_path, serde_json::to_string_pretty(&log_json)?)
        .with_context(|| format!("writing {}", log_path.display()))?;
    println!(
        "{}: {} bytes, {} slices; injected faults in {}",
        args.out.display(),
        bytes.len(),
        slices.len(),
        log_path.display()
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    if let Some(json) = &args.from_json {
        let outputs = if args.per_source {
            eval::sources::rerender(json, &args.out_dir)?.outputs
        } else {
            eval::rerender(json, &args.out_dir)?.outputs
        };
        for path in outputs
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e != "png"))
        {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let acquisitions = match args.acquisitions {
        Some(list) => list,
        None if args.per_source => parse_all(&eval::sources::DEFAULT_ACQUISITIONS)?,
        None => parse_all(&DEFAULT_ACQUISITIONS)?,
    };
    let ood_acquisition = match args.ood_acquisition.as_str() {
        _ if args.per_source => None,
        "none" => None,
        text => {
            let spec: AcquisitionSpec = text.parse()?;
            if !acquisitions.contains(&spec) {
                bail!("--ood-acquisition {text} must be one of --acquisitions (its weights are tuned there)");
            }
            Some(spec)
        }
    };
    let mut methods = args.methods.methods;
    let default_methods: Vec<Method> = DEFAULT_METHODS
        .split(',')
        .map(|name| <Method as clap::ValueEnum>::from_str(name, false).expect("a method name"))
        .collect();
    if args.per_source
        && methods == default_methods
        && sparsemap_host::baselines::bart::find_on_path().is_none()
    {
        eprintln!(
            "note: no `bart` on PATH (Debian package bart): evaluating without the BART baselines"
        );
        methods.retain(|m| !m.needs_bart());
    }
    let config = EvalConfig {
        data_dir: args.data_dir,
        out_dir: args.out_dir,
        acquisitions,
        ood_acquisition,
        methods,
        settings: args.iterations.settings(),
        validation_slices: args.validation_slices,
        test_slices: args.test_slices,
        grid_points: args.grid_points,
        seed: args.seed,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        figures: !args.no_figures,
        criterion: args.tune_on,
        reuse: args.reuse,
    };
    let (outputs, table) = if args.per_source {
        let selection = eval::sources::Selection {
            only: args.sources,
            tune_exclude: args.tune_exclude,
        };
        let report = eval::sources::run(&config, &selection)?;
        (report.outputs, config.out_dir.join("sources.md"))
    } else {
        (eval::run(&config)?.outputs, config.out_dir.join("table.md"))
    };
    let text =
        std::fs::read_to_string(&table).with_context(|| format!("reading {}", table.display()))?;
    println!("{text}");
    for path in &outputs {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn parse_all(specs: &[&str]) -> Result<Vec<AcquisitionSpec>> {
    specs.iter().map(|s| s.parse()).collect()
}

fn run_bench(args: BenchArgs) -> Result<()> {
    let example = Path::new(REPO_ROOT).join("examples/colin27");
    let (kspace_path, mask_path, target_path) = match (&args.kspace, &args.mask) {
        (Some(k), Some(m)) => (k.clone(), m.clone(), args.target.clone()),
        _ => (
            example.join("kspace.npy"),
            example.join("mask.npy"),
            Some(
                args.target
                    .clone()
                    .unwrap_or_else(|| example.join("target.npy")),
            ),
        ),
    };
    let input = bench::BenchInput {
        // Relative to the repository when it is inside it: results are committed.
        name: kspace_path
            .strip_prefix(REPO_ROOT)
            .unwrap_or(&kspace_path)
            .display()
            .to_string(),
        kspace: sparsemap_edge::npy::read_kspace(&kspace_path)?,
        mask: sparsemap_edge::npy::read_mask(&mask_path)?,
        target: target_path
            .map(|p| sparsemap_edge::npy::read_image(&p))
            .transpose()?,
    };
    let tuned: Vec<(Method, f32)> = match &args.weights_from {
        Some(path) => eval::read_report(path)?
            .tuned
            .iter()
            .filter(|t| t.acquisition == "block128@0.15")
            .map(|t| (t.method, t.lambda))
            .collect(),
        None => Vec::new(),
    };
    let methods: Vec<(Method, f32)> = args
        .methods
        .methods
        .iter()
        .map(|&m| {
            let lambda = tuned
                .iter()
                .find(|(t, _)| *t == m)
                .map_or(m.default_lambda(), |t| t.1);
            (m, lambda)
        })
        .collect();
    let bar = spinner("benchmarking");
    let report = bench::run(
        &input,
        &methods,
        &args.iterations.settings(),
        args.repeats,
        |m| bar.set_message(m.to_string()),
    )?;
    bar.finish_and_clear();
    println!("{}", bench::markdown(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `path` if it exists, else the same relative path inside the repository.
fn in_repo(path: &Path) -> PathBuf {
    let inside = Path::new(REPO_ROOT).join(path);
    if path.is_relative() && !path.exists() && inside.exists() {
        inside
    } else {
        path.to_path_buf()
    }
}

fn run_bench_e2e(args: BenchE2eArgs) -> Result<()> {
    let sparsemap = match &args.sparsemap {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("sparsemap"),
    };
    if !sparsemap.is_file() {
        bail!(
            "{}: no sparsemap executable (build it: cargo build --release -p sparsemap-edge --bin sparsemap)",
            sparsemap.display()
        );
    }
    let weights = in_repo(&args.weights_from);
    let tuned = eval::read_report(&weights)?.tuned;
    let lambda = |method: Method| {
        tuned
            .iter()
            .find(|t| t.acquisition == "block128@0.15" && t.method == method)
            .map(|t| t.lambda)
            .with_context(|| {
                format!(
                    "{}: no tuned {method} weight for block128@0.15",
                    weights.display()
                )
            })
    };
    let settings = args.iterations.settings();
    let config = e2e::E2eConfig {
        sparsemap,
        model_f32: in_repo(&settings.learned.model_f32),
        example: Path::new(REPO_ROOT).join("examples/colin27"),
        example_name: "examples/colin27".to_string(),
        threads: args.threads.clone(),
        repeats: args.repeats,
        bart_tv_lambda: lambda(Method::BartTv)?,
        bart_wavelet_lambda: lambda(Method::BartWavelet)?,
        settings,
        time: sparsemap_host::process::gnu_time(),
    };
    if config.time.is_none() {
        eprintln!(
            "sparsemap-host: no GNU time at {} (Debian package `time`): BART's peak RSS is not measured",
            sparsemap_host::process::GNU_TIME
        );
    }
    let bar = spinner("benchmarking");
    let report = e2e::run(&config, |m| bar.set_message(m.to_string()))?;
    bar.finish_and_clear();
    println!("{}", e2e::markdown(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_eval_coils(args: EvalCoilsArgs) -> Result<()> {
    use sparsemap_host::eval_coils::{self, CoilEvalConfig};
    if !(1..=sparsemap_host::coils::MAX_COILS).contains(&args.coils) {
        bail!(
            "--coils {}: 1..={} coils are supported",
            args.coils,
            sparsemap_host::coils::MAX_COILS
        );
    }
    if !(args.coil_correlation.is_finite() && (0.0..1.0).contains(&args.coil_correlation)) {
        bail!(
            "--coil-correlation {}: must be in [0, 1)",
            args.coil_correlation
        );
    }
    if args.bart_wavelet_iterations == 0 || args.bart_tv_iterations == 0 {
        bail!("--bart-wavelet-iterations and --bart-tv-iterations must be at least 1");
    }
    let config = CoilEvalConfig {
        data_dir: args.data_dir,
        out_dir: args.out_dir,
        acquisitions: args.acquisitions,
        vd_centre_lines: args.vd_centre_lines,
        coils: args.coils,
        correlation: args.coil_correlation,
        validation_slices: args.validation_slices,
        test_slices: args.test_slices,
        grid_points: args.grid_points,
        seed: args.seed,
        wavelet_iterations: args.bart_wavelet_iterations,
        tv_iterations: args.bart_tv_iterations,
        calibration: args.calibration,
        threads: args.threads,
        ..CoilEvalConfig::default()
    };
    let command = std::env::var("SPARSEMAP_EVAL_COILS_COMMAND")
        .unwrap_or_else(|_| "scripts/eval-coils.sh".to_string());
    let bar = spinner("eval-coils");
    let report = eval_coils::run(&config, |m| bar.set_message(m.to_string()))?;
    bar.finish_and_clear();
    let written = eval_coils::write_outputs(&report, &command)?;
    println!("{}", eval_coils::markdown(&report, &command));
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
