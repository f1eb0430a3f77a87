//! `sparsemap`: the edge reconstruction command (DESIGN §7).
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ndarray::Array2;
use num_complex::Complex32;
use sparsemap_core::Shape;
use sparsemap_edge::ingest::{ingest, Event, IngestConfig, ReaderSource};
use sparsemap_edge::lambda_net::{LambdaModel, DEFAULT_NETWORK_BATCH};
use sparsemap_edge::method::{FixedLambda, MethodSpec, Sparsity};
use sparsemap_edge::multicoil::{CoilCombination, CoilInput, CoilOptions, CoilSettings};
use sparsemap_edge::parallel::Threads;
use sparsemap_edge::runtime::BackendKind;
use sparsemap_edge::serve::{serve_source, Job, Source};
use sparsemap_edge::worker::{
    check_output_paths, provenance, slice_stem, with_suffix, write_atomically, OutputOptions,
    Previewer, SliceRecord, Worker,
};
use sparsemap_edge::{metrics, model_choice, npy, BUNDLED_DICTIONARY, BUNDLED_DICTIONARY_NAME};
use sparsemap_wire::AssemblerConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "sparsemap",
    version,
    about = "Edge MRI reconstruction: convolutional sparse coding with spatially adaptive sparsity levels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconstruct one slice from centred k-space and a mask (--kspace/--mask/--out), or
    /// every slice of a recorded wire stream (--input SCAN.smw --out-dir DIR).
    ///
    /// By default the Lambda maps come from the bundled int8 model (or `--model`) and the
    /// solve uses the model's iteration count and low-pass weight; `--lambda` replaces the
    /// model by a fixed sparsity level. Every image is written as complex .npy, magnitude
    /// PNG and NIfTI, with a JSON sidecar saying what made it.
    Recon(ReconArgs),
    /// Receive a live wire stream (TCP on loopback, a serial device, or stdin) and write
    /// each slice's images as soon as the slice is complete; one JSON line per slice on
    /// stdout. SIGINT/SIGTERM finish the slices already received, then exit 0.
    Serve(ServeArgs),
    /// Store the DICOM files of DIR that are not yet stored at a PACS (C-STORE), e.g. those
    /// left queued by a PACS that was down; DIR/sent.jsonl records what was stored where.
    Send(SendArgs),
}

#[derive(Args)]
struct DicomArgs {
    /// Also write each image as a DICOM MR Image Storage file into DIR (16-bit magnitude
    /// with Rescale Slope; one series per scan, reconstruction parameters in Image Comments
    /// and a private element).
    #[arg(long, value_name = "DIR")]
    dicom: Option<PathBuf>,
    /// Store the DICOM files on a PACS over C-STORE as they are written. A file the PACS
    /// does not store stays queued in the --dicom directory for `sparsemap send`.
    #[arg(long, value_name = "AE@HOST:PORT", requires = "dicom")]
    send_to: Option<String>,
    /// Our AE title in the association.
    #[arg(long, value_name = "AE", default_value = sparsemap_edge::pacs::DEFAULT_CALLING_AE)]
    calling_ae: String,
}

#[derive(Args)]
struct SendArgs {
    /// The directory of DICOM files (a --dicom directory).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The PACS (C-STORE SCP).
    #[arg(long, value_name = "AE@HOST:PORT")]
    to: String,
    /// Our AE title in the association.
    #[arg(long, value_name = "AE", default_value = sparsemap_edge::pacs::DEFAULT_CALLING_AE)]
    calling_ae: String,
}

#[derive(Args)]
struct MethodArgs {
    /// Lambda-network ONNX model (docs/design.md §4). Default: the bundled int8 model.
    /// `auto`: the faster of the bundled int8/f32 pair on this CPU, timed once and cached in
    /// ~/.cache/sparsemap/model-choice.json; the outputs name the one picked.
    #[arg(long, value_name = "PATH.onnx|auto", conflicts_with = "lambda")]
    model: Option<PathBuf>,
    /// Dictionary filters, float32 [K, s, s] (s odd, <= 11). Default: the bundled model's
    /// cdl_k32_s9, or dct5 with --lambda.
    #[arg(long, value_name = "D.npy")]
    dictionary: Option<PathBuf>,
    /// A fixed sparsity level of the scaled problem instead of a model: a number, or a
    /// float32 .npy of shape [K] (per filter) or [K, n_y, n_x] (maps).
    #[arg(long, value_name = "VALUE|L.npy", allow_hyphen_values = true)]
    lambda: Option<String>,
    /// Fixed number of FISTA iterations. Default: the model's (its maps were trained for
    /// it), or 64 with --lambda.
    #[arg(long)]
    iterations: Option<usize>,
    /// Weight a of the low-pass split x_low = (I + a grad^H grad)^-1 F^H y, with --lambda
    /// only (default 1); a model fixes its own.
    #[arg(long, requires = "lambda")]
    lowpass_weight: Option<f32>,
    /// Background gate (DESIGN §3.7 item 7): zero the image where its low-pass part is no
    /// stronger than the noise estimated from the outer k-space, KAPPA being the threshold
    /// in units of that noise's variance; `off` keeps the image as solved. Default: 8 with a
    /// model, off with --lambda.
    #[arg(long, value_name = "KAPPA|off", allow_hyphen_values = true)]
    background_gate: Option<String>,
    /// FFT backend.
    #[arg(long, value_enum, default_value_t = Backend::Rustfft)]
    backend: Backend,
    /// Filters per Lambda-network run: the maps do not depend on it, the network's memory
    /// grows with it.
    #[arg(long, default_value_t = DEFAULT_NETWORK_BATCH as u16, value_parser = clap::value_parser!(u16).range(1..))]
    network_batch: u16,
    /// Threads for one slice (the filters are split between them); the image is the same
    /// bit for bit for any count. Default: the cores this process may use.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=sparsemap_edge::parallel::MAX_THREADS as i64))]
    threads: Option<u16>,
}

#[derive(Args)]
struct StreamArgs {
    /// A slice is complete once the stream is this many lines into a later slice (a link
    /// that reorders lines needs at least twice its reorder distance).
    #[arg(long, default_value_t = sparsemap_edge::ingest::DEFAULT_SETTLE_LINES)]
    settle_lines: u32,
    /// Also write the Lambda maps (DIR/..._lambda.npy, [K, n_y, n_x]) and a PNG montage of
    /// four filters' maps (..._lambda.png).
    #[arg(long)]
    save_maps: bool,
    /// Also write each slice's assembled k-space and mask (..._kspace.npy, ..._mask.npy):
    /// `recon --kspace` on them gives the same image bit for bit.
    #[arg(long)]
    save_kspace: bool,
}

#[derive(Args)]
struct ReconArgs {
    /// Centred k-space, complex64 [n_y, n_x] (unitary convention of docs/design.md §3.2).
    #[arg(long, value_name = "K.npy", required_unless_present = "input", requires_all = ["mask", "out"], conflicts_with = "input")]
    kspace: Option<PathBuf>,
    /// Sampling mask [n_y, n_x] (bool, uint8 or float), non-zero where sampled.
    #[arg(long, value_name = "M.npy")]
    mask: Option<PathBuf>,
    /// Output image, complex64 [n_y, n_x]; X.json next to it says what made it.
    #[arg(long, value_name = "X.npy")]
    out: Option<PathBuf>,
    /// Also write an 8-bit magnitude PNG.
    #[arg(long, value_name = "X.png", requires = "kspace")]
    png: Option<PathBuf>,
    /// Also write a NIfTI-1 magnitude image.
    #[arg(long, value_name = "X.nii", requires = "kspace")]
    nifti: Option<PathBuf>,
    /// Also write the Lambda maps, float32 [K, n_y, n_x] (scaled-problem units).
    #[arg(
        long,
        value_name = "L.npy",
        conflicts_with = "lambda",
        requires = "kspace"
    )]
    lambda_out: Option<PathBuf>,
    /// A recorded wire stream (.smw, docs/design.md §5) or an MRD/ISMRMRD HDF5 file (.h5,
    /// recognised by its signature): every slice is reconstructed into --out-dir, and one
    /// JSON line per slice is printed.
    #[arg(long, value_name = "SCAN.smw|SCAN.h5", requires = "out_dir")]
    input: Option<PathBuf>,
    /// Output directory of --input.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    method: MethodArgs,
    #[command(flatten)]
    dicom: DicomArgs,
    #[command(flatten)]
    coils: CoilArgs,
    /// A noise-only scan of the coils, complex64 [coils, M], to prewhiten multi-coil
    /// --kspace with.
    #[arg(long, value_name = "NOISE.npy", requires = "kspace")]
    noise: Option<PathBuf>,
    /// Coil sensitivities, complex64 [coils, n_y, n_x] (e.g. from BART ecalib), for
    /// multi-coil --kspace instead of estimating them.
    #[arg(long, value_name = "S.npy", requires = "kspace")]
    sensitivities: Option<PathBuf>,
    /// A reference image [n_y, n_x]: print the PSNR of the zero-filled (root sum of squares
    /// over coils) and the reconstructed magnitude against it (--kspace only).
    #[arg(long, value_name = "TARGET.npy", requires = "kspace")]
    compare_to: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Accept TCP connections here, one at a time (default 127.0.0.1:4710). Addresses
    /// beyond this machine need --allow-remote: the link has no authentication.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "serial")]
    listen: Option<String>,
    /// Listen on a non-loopback address.
    #[arg(long, requires = "listen")]
    allow_remote: bool,
    /// Speak the MRD v1 streaming protocol of Gadgetron clients instead of the wire format:
    /// ISMRMRD acquisitions in, one image message per slice back, then a close (TCP only;
    /// default address 127.0.0.1:9002).
    #[arg(long, conflicts_with_all = ["serial", "preview_every", "slice_timeout"])]
    mrd: bool,
    /// Read the stream from a serial device (configured beforehand, e.g. with stty) or a
    /// file; `-` reads stdin. The server exits when it ends.
    #[arg(long, value_name = "PATH|-")]
    serial: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Complete a slice whose last line is older than this, even if the scan has not moved
    /// on (seconds).
    #[arg(long, value_name = "SECONDS")]
    slice_timeout: Option<f64>,
    /// While a slice arrives, write a zero-filled preview PNG every N of its lines (the
    /// final image replaces it).
    #[arg(long, value_name = "N")]
    preview_every: Option<u32>,
    /// Completed slices that may wait for the reconstruction worker before reading stops
    /// (back-pressure on the sender).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    queue: u16,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    method: MethodArgs,
    #[command(flatten)]
    dicom: DicomArgs,
    #[command(flatten)]
    coils: CoilArgs,
}

/// Several receive coils (DESIGN §3.4).
#[derive(Args)]
struct CoilArgs {
    /// How several coils become one image: `sense` reconstructs them together with their
    /// sensitivities (A = M F S_c; estimated from the fully sampled k-space centre, else
    /// --sensitivities), `rss` reconstructs each coil alone and takes the root sum of
    /// squares. A slice whose sensitivities cannot be estimated falls back to rss, and its
    /// sidecar says why.
    #[arg(long, value_enum, default_value_t = CoilCombination::Sense)]
    coil_combination: CoilCombination,
    /// Compress the coils by SVD to N virtual coils before a sense reconstruction (the
    /// energy kept is reported in the sidecar).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=32))]
    virtual_coils: Option<u16>,
}

impl CoilArgs {
    fn settings(&self) -> CoilSettings {
        CoilSettings {
            combination: self.coil_combination,
            options: CoilOptions {
                virtual_coils: self.virtual_coils.map(usize::from),
                ..CoilOptions::default()
            },
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Rustfft,
    Microfft,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Recon(args) => recon(&args),
        Command::Serve(args) => serve(&args),
        Command::Send(args) => send(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line whatever the cause says (parsers report on several).
            let text = format!("{err:#}");
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("sparsemap: error: {}", line.join(" "));
            ExitCode::FAILURE
        }
    }
}

/// The method the arguments choose, with the bundled model and dictionaries as defaults.
fn method_spec(args: &MethodArgs) -> Result<Arc<MethodSpec>> {
    let sparsity = match (&args.lambda, &args.model) {
        (Some(text), _) => Sparsity::Fixed(FixedLambda::parse(text)?),
        (None, Some(path)) if path.as_os_str() == model_choice::AUTO => {
            let cache = model_choice::default_cache_dir();
            let (model, choice) = model_choice::choose(cache.as_deref())?;
            eprintln!("sparsemap: {}", choice.describe());
            Sparsity::Model(model)
        }
        (None, Some(path)) => Sparsity::Model(LambdaModel::from_path(path)?),
        (None, None) => Sparsity::Model(LambdaModel::from_bytes(
            sparsemap_edge::learned::BUNDLED_MODEL,
            sparsemap_edge::learned::BUNDLED_MODEL_NAME,
        )?),
    };
    if let Some(iterations) = args.iterations {
        sparsemap_edge::limits::check_iterations(iterations, "--iterations")?;
    }
    if let Some(weight) = args.lowpass_weight {
        if !(weight.is_finite() && weight >= 0.0) {
            bail!("--lowpass-weight {weight}: must be a finite number >= 0");
        }
    }
    let background_gate = match args.background_gate.as_deref() {
        Some(text) => {
            sparsemap_edge::method::parse_background_gate(text).map_err(anyhow::Error::msg)?
        }
        None => sparsity.default_background_gate(),
    };
    let (mut dictionary, dictionary_name) = match (&args.dictionary, &sparsity) {
        (Some(path), _) => (npy::read_dictionary(path)?, path.display().to_string()),
        (None, Sparsity::Fixed(_)) => (
            npy::dictionary_from_bytes(BUNDLED_DICTIONARY)?,
            BUNDLED_DICTIONARY_NAME.to_string(),
        ),
        (None, Sparsity::Model(_)) => (
            npy::dictionary_from_bytes(sparsemap_edge::learned::BUNDLED_MODEL_DICTIONARY)?,
            sparsemap_edge::learned::BUNDLED_MODEL_DICTIONARY_NAME.to_string(),
        ),
    };
    npy::dictionary_view(&dictionary).with_context(|| format!("dictionary {dictionary_name}"))?;
    let (dictionary_name, warning) =
        sparsemap_edge::dictionary_norm::normalise(&mut dictionary, &dictionary_name)?;
    if let Some(warning) = warning {
        eprintln!("sparsemap: warning: {warning}");
    }
    Ok(Arc::new(MethodSpec {
        sparsity,
        dictionary,
        dictionary_name,
        iterations: args.iterations,
        lowpass_weight: args.lowpass_weight,
        background_gate,
        backend: match args.backend {
            Backend::Rustfft => BackendKind::RustFft,
            Backend::Microfft => BackendKind::MicroFft,
        },
        network_batch: usize::from(args.network_batch),
        threads: Threads::new(
            args.threads
                .map_or_else(sparsemap_edge::parallel::available_threads, usize::from),
        ),
    }))
}

fn ingest_config(stream: &StreamArgs) -> IngestConfig {
    IngestConfig {
        assembler: AssemblerConfig {
            slots: 2,
            settle_lines: stream.settle_lines,
        },
        ..IngestConfig::default()
    }
}

fn output_options(stream: &StreamArgs) -> OutputOptions {
    OutputOptions {
        save_maps: stream.save_maps,
        save_kspace: stream.save_kspace,
    }
}

fn recon(args: &ReconArgs) -> Result<()> {
    match (&args.input, &args.kspace) {
        (Some(input), _) => recon_stream(args, input),
        (None, Some(kspace)) => recon_npy(args, kspace),
        (None, None) => {
            bail!("give --kspace K.npy --mask M.npy --out X.npy, or --input SCAN.smw|SCAN.h5 --out-dir DIR")
        }
    }
}

/// Prints one JSON line (serve and recon --input).
fn print_record(record: &SliceRecord) -> Result<()> {
    let line = serde_json::to_string(record)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

fn recon_stream(args: &ReconArgs, input: &Path) -> Result<()> {
    let out_dir = args.out_dir.clone().context("--input needs --out-dir")?;
    let metadata =
        std::fs::metadata(input).with_context(|| format!("cannot open {}", input.display()))?;
    if !metadata.is_file() {
        bail!(
            "{}: not a regular file (read a live device or pipe with `sparsemap serve --serial PATH`)",
            input.display()
        );
    }
    let hdf5 = sparsemap_edge::mrd::is_hdf5(input)?;
    let extension = input
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if !hdf5 && matches!(extension.as_deref(), Some("h5" | "hdf5" | "mrd")) {
        bail!(
            "{}: not an HDF5 file (no HDF5 signature \\x89HDF\\r\\n\\x1a\\n at its start); MRD input must be ISMRMRD HDF5",
            input.display()
        );
    }
    let spec = method_spec(&args.method)?;
    let (worker, sender) = with_dicom(
        Worker::new(spec, out_dir, output_options(&args.stream))?.with_coils(args.coils.settings()),
        &args.dicom,
    )?;
    let mut worker = worker;
    if hdf5 {
        let result = recon_mrd(input, &mut worker);
        drop(worker);
        let sent = finish_sending(sender, &args.dicom);
        result?;
        return sent;
    }
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let mut source = ReaderSource(std::io::BufReader::new(file));
    let mut failed = 0usize;
    let summary = ingest(&mut source, &ingest_config(&args.stream), &mut |event| {
        on_input_event(&mut worker, input, event, &mut failed)
    })
    .with_context(|| format!("{}", input.display()));
    drop(worker);
    let sent = finish_sending(sender, &args.dicom);
    let summary = summary?;
    eprintln!(
        "sparsemap: {}: {} bytes, {} scans ({} rejected), {} slices ({} failed), {} frames outside a scan; peak RSS {:.1} MB",
        input.display(),
        summary.bytes,
        summary.scans,
        summary.rejected_scans,
        summary.slices,
        failed,
        summary.errors_outside_scans,
        sparsemap_edge::memory::peak_rss_bytes().unwrap_or(0) as f64 / 1e6
    );
    if summary.slices == 0 {
        bail!("{}: no slice in the stream", input.display());
    }
    if failed > 0 {
        bail!(
            "{}: {failed} of {} slices could not be reconstructed (see their JSON lines)",
            input.display(),
            summary.slices
        );
    }
    sent
}

/// What `recon --input` does with each event of its input (a wire stream or an MRD file):
/// plan for a scan, reconstruct, write and print a slice (counting the failed ones), report a
/// rejected scan.
fn on_input_event(
    worker: &mut Worker,
    input: &Path,
    event: Event<'_>,
    failed: &mut usize,
) -> Result<()> {
    match event {
        Event::Scan(start) => worker.on_scan(&start),
        Event::Slice(job) => {
            let record = worker.on_slice(job);
            *failed += usize::from(record.status != "ok");
            print_record(&record)?;
        }
        Event::Preview { .. } => {}
        Event::Rejected { start, reason } => {
            eprintln!(
                "sparsemap: {}: scan {} rejected: {reason}",
                input.display(),
                start.scan_id
            )
        }
    }
    Ok(())
}

/// The worker with DICOM output (and a PACS sender) if the arguments ask for it.
fn with_dicom(
    worker: Worker,
    args: &DicomArgs,
) -> Result<(Worker, Option<sparsemap_edge::pacs::BackgroundSender>)> {
    let Some(dir) = &args.dicom else {
        return Ok((worker, None));
    };
    let writer = sparsemap_edge::dicom::DicomWriter::new(dir)?;
    let sender = match &args.send_to {
        Some(to) => Some(sparsemap_edge::pacs::BackgroundSender::spawn(
            dir.clone(),
            sparsemap_edge::pacs::Destination::parse(to)?,
            args.calling_ae.clone(),
        )),
        None => None,
    };
    let queue = sender.as_ref().map(|s| s.queue());
    Ok((worker.with_dicom(writer, queue), sender))
}

/// Waits for the PACS sender; an error if a file stayed queued.
fn finish_sending(
    sender: Option<sparsemap_edge::pacs::BackgroundSender>,
    args: &DicomArgs,
) -> Result<()> {
    let (Some(sender), Some(to), Some(dir)) = (sender, &args.send_to, &args.dicom) else {
        return Ok(());
    };
    report_sent(sender.finish(), to, dir)
}

fn report_sent(report: sparsemap_edge::pacs::SendReport, to: &str, dir: &Path) -> Result<()> {
    eprintln!(
        "sparsemap: {} DICOM instance(s) stored at {to} ({} with a warning status), {} not stored",
        report.stored,
        report.warnings,
        report.failed.len()
    );
    if let Some((file, reason)) = report.failed.first() {
        bail!(
            "{} DICOM file(s) not stored at {to} (first: {}: {reason}); they stay queued in {}: retry with `sparsemap send {} --to {to}`",
            report.failed.len(),
            file.display(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

fn send(args: &SendArgs) -> Result<()> {
    let to = sparsemap_edge::pacs::Destination::parse(&args.to)?;
    if !args.dir.is_dir() {
        bail!("{}: not a directory", args.dir.display());
    }
    let (queued, report) = sparsemap_edge::pacs::send_queue(&args.dir, &to, &args.calling_ae)?;
    eprintln!(
        "sparsemap: {queued} DICOM file(s) in {} queued for {to}",
        args.dir.display()
    );
    report_sent(report, &args.to, &args.dir)
}

/// `recon --input scan.h5`: every slice of an MRD/ISMRMRD file (crates/edge/src/mrd.rs).
fn recon_mrd(input: &Path, worker: &mut Worker) -> Result<()> {
    let mut failed = 0usize;
    let summary = sparsemap_edge::mrd::read_mrd(input, &mut |event| {
        on_input_event(worker, input, event, &mut failed)
    })?;
    let skipped = summary.skipped;
    eprintln!(
        "sparsemap: {}: MRD, {} acquisitions ({}-byte elements, {}-byte headers): {} used ({} parallel calibration), skipped {} noise, {} navigator, {} phase correction, {} other kinds, {} other images; {} slices ({} failed); peak RSS {:.1} MB",
        input.display(),
        summary.acquisitions,
        summary.element_bytes,
        summary.header_bytes,
        summary.used,
        summary.calibration_used,
        skipped.noise,
        skipped.navigator,
        skipped.phasecorr,
        skipped.other_kind,
        skipped.other_image,
        summary.slices,
        failed,
        sparsemap_edge::memory::peak_rss_bytes().unwrap_or(0) as f64 / 1e6
    );
    if failed > 0 {
        bail!(
            "{}: {failed} of {} slices could not be reconstructed (see their JSON lines)",
            input.display(),
            summary.slices
        );
    }
    Ok(())
}

fn recon_npy(args: &ReconArgs, kspace_path: &Path) -> Result<()> {
    let started = Instant::now();
    let (Some(mask_path), Some(out)) = (&args.mask, &args.out) else {
        bail!("--kspace needs --mask and --out");
    };
    check_recon_outputs(args, kspace_path, mask_path, out)?;
    let destination = args
        .dicom
        .send_to
        .as_deref()
        .map(sparsemap_edge::pacs::Destination::parse)
        .transpose()?;
    let kspace = npy::read_coil_kspace(kspace_path)?;
    let mask = npy::read_mask(mask_path)?;
    let (coils, n_y, n_x) = kspace.dim();
    if mask.dim() != (n_y, n_x) {
        bail!(
            "mask {} is {}x{} but k-space {} is {n_y}x{n_x}",
            mask_path.display(),
            mask.dim().0,
            mask.dim().1,
            kspace_path.display()
        );
    }
    let noise = args.noise.as_deref().map(npy::read_noise).transpose()?;
    let sensitivities = args
        .sensitivities
        .as_deref()
        .map(npy::read_sensitivities)
        .transpose()?;
    if let (Some(noise), Some(path)) = (&noise, &args.noise) {
        if noise.dim().0 != coils {
            bail!(
                "noise scan {} has {} coils but k-space {} has {coils}",
                path.display(),
                noise.dim().0,
                kspace_path.display()
            );
        }
    }
    if let (Some(maps), Some(path)) = (&sensitivities, &args.sensitivities) {
        if maps.dim() != kspace.dim() {
            bail!(
                "sensitivities {} are {:?} but k-space {} is {:?}",
                path.display(),
                maps.dim(),
                kspace_path.display(),
                kspace.dim()
            );
        }
    }
    if let Some(v) = args.coils.virtual_coils {
        if usize::from(v) > coils {
            bail!(
                "--virtual-coils {v}: k-space {} has only {coils} coils",
                kspace_path.display()
            );
        }
    }
    let shape = Shape::new(n_y, n_x).with_context(|| format!("{}", kspace_path.display()))?;
    let spec = method_spec(&args.method)?;
    let mut planned = spec.plan(shape)?;
    let kspace_slice = kspace
        .as_slice()
        .context("k-space array is not contiguous")?;
    let mask_f32: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let mut image = Array2::<Complex32>::zeros((n_y, n_x));
    let solve_started = Instant::now();
    let (result, coil_report) = if coils == 1 && noise.is_none() && sensitivities.is_none() {
        let result = planned
            .reconstruct(
                kspace_slice,
                &mask_f32,
                image.as_slice_mut().expect("a new array is contiguous"),
            )
            .with_context(|| format!("reconstructing {}", kspace_path.display()))?;
        (result, None)
    } else {
        let masks: Vec<f32> = (0..coils).flat_map(|_| mask_f32.iter().copied()).collect();
        let input = CoilInput {
            coils,
            kspace: kspace_slice,
            masks: &masks,
            noise: noise
                .as_ref()
                .map(|a| a.as_slice().expect("a read array is contiguous")),
            sensitivities: sensitivities
                .as_ref()
                .map(|a| a.as_slice().expect("a read array is contiguous")),
        };
        let (result, combination, report) = sparsemap_edge::multicoil::reconstruct_slice(
            &mut planned,
            &input,
            &args.coils.settings(),
            &mut image,
        )
        .with_context(|| format!("reconstructing {}", kspace_path.display()))?;
        if combination != sparsemap_edge::multicoil::COIL_COMBINATION_SENSE {
            eprintln!("sparsemap: {coils} coils combined by {combination}");
        }
        (result, report)
    };
    let solve_seconds = solve_started.elapsed().as_secs_f64();
    let mut provenance = provenance(&planned, &result, None, None);
    provenance.coils = coil_report;
    let stem = out.with_extension("");
    write_atomically(out, |p| sparsemap_edge::output::write_npy(p, &image))?;
    write_atomically(&sparsemap_edge::output::sidecar_path(out), |p| {
        sparsemap_edge::output::write_sidecar(p, &provenance)
    })?;
    if let Some(png) = &args.png {
        write_atomically(png, |p| {
            sparsemap_edge::output::write_png(p, &image, &provenance)
        })?;
    }
    if let Some(nifti) = &args.nifti {
        write_atomically(nifti, |p| {
            sparsemap_edge::output::write_nifti(p, &image, &provenance)
        })?;
    }
    let dicom_file = match &args.dicom.dicom {
        Some(dir) => {
            let name = stem
                .file_name()
                .map_or_else(|| "image".to_string(), |n| n.to_string_lossy().into_owned());
            let mut writer = sparsemap_edge::dicom::DicomWriter::new(dir)?;
            Some(writer.write_slice(&name, 0, 0, &image, &provenance)?)
        }
        None => None,
    };
    if let Some(maps) = planned.lambda_maps() {
        let count = spec.dictionary_size().0;
        if let Some(path) = &args.lambda_out {
            let view = ndarray::ArrayView3::from_shape((count, n_y, n_x), maps)?;
            write_atomically(path, |p| sparsemap_edge::output::write_npy(p, &view))?;
        }
        if args.stream.save_maps {
            let montage = with_suffix(&stem, "_lambda.png");
            write_atomically(&montage, |p| {
                sparsemap_edge::output::write_maps_montage(
                    p,
                    maps,
                    count,
                    n_y,
                    n_x,
                    planned.lambda_max(),
                    &provenance,
                )
            })?;
            let view = ndarray::ArrayView3::from_shape((count, n_y, n_x), maps)?;
            write_atomically(&with_suffix(&stem, "_lambda.npy"), |p| {
                sparsemap_edge::output::write_npy(p, &view)
            })?;
        }
    }
    let config = planned.config();
    let (count, side) = spec.dictionary_size();
    eprintln!(
        "sparsemap: {n_y}x{n_x}{}, {:.1} % sampled, K={count} {side}x{side} filters, {} iterations ({}, {} threads), lambda {}: {:.3} s (prepare {:.3}, features {:.3}, network {:.3}, solve {:.3}), total {:.3} s, {:.1} MB planned, peak RSS {:.1} MB; wrote {}",
        match &provenance.coils {
            Some(c) => format!(
                " x {} coils (sense: {} virtual, {:.2} % of the energy kept, {}whitened, sensitivities {}, {:.3} s)",
                c.coils,
                c.virtual_coils,
                100.0 * c.retained_energy,
                if c.whitened { "" } else { "not " },
                c.sensitivities,
                c.estimate_seconds
            ),
            None if coils > 1 => format!(" x {coils} coils"),
            None => String::new(),
        },
        100.0 * provenance.sampled_fraction,
        config.iterations,
        spec.backend.name(),
        spec.threads.count(),
        provenance.lambda,
        solve_seconds,
        result.times.prepare,
        result.times.features,
        result.times.network,
        result.times.solve,
        started.elapsed().as_secs_f64(),
        planned.memory_bytes() as f64 / 1e6,
        sparsemap_edge::memory::peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
        out.display()
    );
    if let Some(target) = &args.compare_to {
        compare(target, &kspace, &mask, &image, shape)?;
    }
    if let (Some(file), Some(destination), Some(dir)) = (dicom_file, destination, &args.dicom.dicom)
    {
        let to = destination.to_string();
        let report =
            sparsemap_edge::pacs::send_files(dir, &[file], &destination, &args.dicom.calling_ae);
        report_sent(report, &to, dir)?;
    }
    Ok(())
}

/// Refuses, before any work, outputs that would overwrite each other or an input, or that
/// could not be written (see [`check_output_paths`]).
fn check_recon_outputs(args: &ReconArgs, kspace: &Path, mask: &Path, out: &Path) -> Result<()> {
    let stem = out.with_extension("");
    let mut outputs = vec![
        ("--out", out.to_path_buf()),
        (
            "the sidecar of --out",
            sparsemap_edge::output::sidecar_path(out),
        ),
    ];
    for (what, path) in [
        ("--png", &args.png),
        ("--nifti", &args.nifti),
        ("--lambda-out", &args.lambda_out),
    ] {
        if let Some(path) = path {
            outputs.push((what, path.clone()));
        }
    }
    if args.stream.save_maps {
        outputs.push(("--save-maps", with_suffix(&stem, "_lambda.png")));
        outputs.push(("--save-maps", with_suffix(&stem, "_lambda.npy")));
    }
    let mut inputs: Vec<(&str, &Path)> = vec![("--kspace", kspace), ("--mask", mask)];
    for (what, path) in [
        ("--compare-to", &args.compare_to),
        ("--model", &args.method.model),
        ("--dictionary", &args.method.dictionary),
    ] {
        if let Some(path) = path {
            inputs.push((what, path.as_path()));
        }
    }
    let lambda_file = args.method.lambda.as_deref().map(Path::new);
    if let Some(path) = lambda_file.filter(|p| p.exists()) {
        inputs.push(("--lambda", path));
    }
    check_output_paths(&outputs, &inputs)
}

fn serve(args: &ServeArgs) -> Result<()> {
    if args.mrd {
        return serve_mrd(args);
    }
    let source = match (&args.serial, &args.listen) {
        (Some(path), _) => Source::Serial(path.clone()),
        (None, Some(address)) => Source::listen(address, args.allow_remote)?,
        (None, None) => Source::listen("127.0.0.1:4710", false)?,
    };
    let slice_timeout = match args.slice_timeout {
        Some(seconds) if !(seconds.is_finite() && seconds > 0.0) => {
            bail!("--slice-timeout {seconds}: must be a positive number of seconds")
        }
        Some(seconds) => Some(Duration::from_secs_f64(seconds)),
        None => None,
    };
    let config = IngestConfig {
        slice_timeout,
        preview_every: args.preview_every.filter(|&n| n > 0),
        ..ingest_config(&args.stream)
    };
    let (mut worker, sender, stop) = serve_worker(args)?;
    let (jobs, queue) = mpsc::sync_channel::<Job>(usize::from(args.queue));
    let reconstruction = std::thread::Builder::new()
        .name("reconstruction".into())
        .spawn(move || -> Result<()> {
            for job in queue {
                match job {
                    Job::Scan(start) => worker.on_scan(&start),
                    Job::Slice(slice) => print_record(&worker.on_slice(slice))?,
                }
            }
            Ok(())
        })
        .context("cannot start the reconstruction thread")?;

    let out_dir = args.out_dir.clone();
    let mut previewer = Previewer::default();
    let mut preview = |start: &sparsemap_wire::ScanStart,
                       slice: u16,
                       lines: u32,
                       kspace: &[Complex32],
                       mask: &[bool]|
     -> Result<()> {
        let path = with_suffix(&slice_stem(&out_dir, start.scan_id, slice), ".png");
        previewer.write(&path, start, lines, kspace, mask)
    };
    let served = serve_source(&source, &config, &stop, &jobs, &mut preview);
    drop(jobs);
    let worked = reconstruction
        .join()
        .map_err(|_| anyhow::anyhow!("the reconstruction thread panicked"))?;
    let sent = finish_sending(sender, &args.dicom);
    served?;
    worked?;
    sent?;
    if stop.load(Ordering::Relaxed) {
        eprintln!("sparsemap: stopped by signal after finishing the slices received");
    }
    Ok(())
}

/// The worker of `serve` (with its DICOM sender) and the flag SIGINT/SIGTERM set.
#[allow(clippy::type_complexity)]
fn serve_worker(
    args: &ServeArgs,
) -> Result<(
    Worker,
    Option<sparsemap_edge::pacs::BackgroundSender>,
    Arc<AtomicBool>,
)> {
    let spec = method_spec(&args.method)?;
    let (worker, sender) = with_dicom(
        Worker::new(spec, args.out_dir.clone(), output_options(&args.stream))?
            .with_coils(args.coils.settings()),
        &args.dicom,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    Ok((worker, sender, stop))
}

/// `serve --mrd`: MRD clients over TCP, one connection at a time, until SIGINT/SIGTERM.
fn serve_mrd(args: &ServeArgs) -> Result<()> {
    let address = args.listen.as_deref().unwrap_or("127.0.0.1:9002");
    let Source::Listen(address) = Source::listen(address, args.allow_remote)? else {
        bail!("--mrd needs a TCP address");
    };
    let (mut worker, sender, stop) = serve_worker(args)?;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address}"))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    eprintln!(
        "sparsemap: listening on {} (MRD)",
        listener.local_addr().unwrap_or(address)
    );
    while !stop.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(connection) => connection,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                eprintln!("sparsemap: accept failed: {e}");
                continue;
            }
        };
        eprintln!("sparsemap: MRD connection from {peer}");
        let served = stream
            .set_nonblocking(false)
            .context("socket")
            .and_then(|()| stream.try_clone().context("socket"))
            .and_then(|writer| {
                sparsemap_edge::mrd_stream::serve_connection(
                    &stream,
                    writer,
                    &mut worker,
                    &mut |r| print_record(r),
                )
            });
        match served {
            Ok(s) => eprintln!(
                "sparsemap: {peer}: {} acquisitions, {} slices ({} failed), {} images sent",
                s.acquisitions, s.slices, s.failed, s.images_sent
            ),
            Err(e) => eprintln!("sparsemap: {peer}: {e:#}"),
        }
    }
    drop(worker);
    finish_sending(sender, &args.dicom)?;
    eprintln!("sparsemap: stopped by signal");
    Ok(())
}

/// Prints PSNR of the zero-filled and the reconstructed magnitude against `target`.
fn compare(
    target: &Path,
    kspace: &ndarray::Array3<Complex32>,
    mask: &Array2<bool>,
    image: &Array2<Complex32>,
    shape: Shape,
) -> Result<()> {
    let reference = npy::read_image(target)?;
    if reference.dim() != image.dim() {
        bail!(
            "{}: reference is {:?} but the image is {:?}",
            target.display(),
            reference.dim(),
            image.dim()
        );
    }
    // Root sum of squares of the coils' zero-filled images.
    let mut zero_filled = Array2::<Complex32>::zeros(image.dim());
    for coil in kspace.outer_iter() {
        let coil_image = self::zero_filled(&coil.to_owned(), mask, shape)?;
        for (acc, v) in zero_filled.iter_mut().zip(&coil_image) {
            acc.re += v.norm_sqr();
        }
    }
    zero_filled.mapv_inplace(|v| Complex32::new(v.re.sqrt(), 0.0));
    let reference = reference
        .as_slice()
        .context("reference array is not contiguous")?;
    let psnr = |x: &Array2<Complex32>| {
        metrics::psnr_magnitude(x.as_slice().expect("contiguous"), reference).unwrap_or(f64::NAN)
    };
    println!("psnr_zero_filled_db {:.3}", psnr(&zero_filled));
    println!("psnr_recon_db {:.3}", psnr(image));
    Ok(())
}

/// `F^H (M (.) y)` through the core's centred Fourier operator.
fn zero_filled(
    kspace: &Array2<Complex32>,
    mask: &Array2<bool>,
    shape: Shape,
) -> Result<Array2<Complex32>> {
    use sparsemap_core::fft::{Fft2, RustFft};
    use sparsemap_core::ops::{CentredFourier, LinearOperator};
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let op = CentredFourier { fft: &fft };
    let masked: Vec<Complex32> = kspace
        .iter()
        .zip(mask)
        .map(|(&v, &m)| if m { v } else { Complex32::default() })
        .collect();
    let mut out = Array2::<Complex32>::zeros(kspace.dim());
    let mut scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&op)];
    op.adjoint(
        &masked,
        out.as_slice_mut().expect("contiguous"),
        &mut scratch,
    );
    Ok(out)
}
