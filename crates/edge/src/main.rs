//! `sparsemap`: the edge reconstruction command (DESIGN §7).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ndarray::Array2;
use num_complex::Complex32;
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::{ReconConfig, ITERATIONS, LOWPASS_WEIGHT};
use sparsemap_core::Shape;
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::learned::{
    LearnedReconstructor, BUNDLED_MODEL, BUNDLED_MODEL_DICTIONARY, BUNDLED_MODEL_DICTIONARY_NAME,
    BUNDLED_MODEL_NAME,
};
use sparsemap_edge::output::{
    model_label, sidecar_path, write_npy, write_png, write_sidecar, Provenance, ARRAY_ORIENTATION,
};
use sparsemap_edge::runtime::{BackendKind, EdgeReconstructor};
use sparsemap_edge::{metrics, npy, BUNDLED_DICTIONARY, BUNDLED_DICTIONARY_NAME};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

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
    /// Reconstruct one slice from centred k-space and a sampling mask.
    ///
    /// By default the Lambda maps come from the bundled int8 model (or `--model`) and the
    /// solve uses the model's iteration count and low-pass weight; `--lambda` replaces the
    /// model by a fixed sparsity level. Writes the complex image (`--out`, complex64
    /// [n_y, n_x] on the scale of F^H y), a JSON sidecar next to it saying what made it, and
    /// optionally a magnitude PNG and the Lambda maps.
    Recon(ReconArgs),
}

#[derive(clap::Args)]
struct ReconArgs {
    /// Centred k-space, complex64 [n_y, n_x] (unitary convention of docs/design.md §3.2).
    #[arg(long, value_name = "K.npy")]
    kspace: PathBuf,
    /// Sampling mask [n_y, n_x] (bool, uint8 or float), non-zero where sampled.
    #[arg(long, value_name = "M.npy")]
    mask: PathBuf,
    /// Output image, complex64 [n_y, n_x].
    #[arg(long, value_name = "X.npy")]
    out: PathBuf,
    /// Also write an 8-bit magnitude PNG.
    #[arg(long, value_name = "X.png")]
    png: Option<PathBuf>,
    /// Lambda-network ONNX model (docs/design.md §4). Default: the bundled int8 model.
    #[arg(long, value_name = "PATH.onnx", conflicts_with = "lambda")]
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
    /// Also write the Lambda maps, float32 [K, n_y, n_x] (scaled-problem units).
    #[arg(long, value_name = "L.npy", conflicts_with = "lambda")]
    lambda_out: Option<PathBuf>,
    /// FFT backend.
    #[arg(long, value_enum, default_value_t = Backend::Rustfft)]
    backend: Backend,
    /// A reference image [n_y, n_x]: print the PSNR of the zero-filled and the
    /// reconstructed magnitude against it.
    #[arg(long, value_name = "TARGET.npy")]
    compare_to: Option<PathBuf>,
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sparsemap: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

enum LambdaInput {
    Scalar(f32),
    File(PathBuf, ndarray::ArrayD<f32>),
}

fn parse_lambda(text: &str) -> Result<LambdaInput> {
    if let Ok(value) = text.parse::<f32>() {
        if !value.is_finite() || value < 0.0 {
            bail!("--lambda {text}: must be a finite number >= 0");
        }
        return Ok(LambdaInput::Scalar(value));
    }
    let path = PathBuf::from(text);
    if !path.exists() {
        bail!("--lambda {text}: neither a number nor an existing .npy file");
    }
    let array = npy::read_lambda(&path)?;
    Ok(LambdaInput::File(path, array))
}

/// Where the sparsity levels come from.
enum Sparsity {
    Fixed(LambdaInput),
    Model(LambdaModel),
}

fn recon(args: &ReconArgs) -> Result<()> {
    let started = Instant::now();
    let kspace = npy::read_kspace(&args.kspace)?;
    let mask = npy::read_mask(&args.mask)?;
    let (n_y, n_x) = kspace.dim();
    if mask.dim() != (n_y, n_x) {
        bail!(
            "mask {} is {}x{} but k-space {} is {n_y}x{n_x}",
            args.mask.display(),
            mask.dim().0,
            mask.dim().1,
            args.kspace.display()
        );
    }
    let shape = Shape::new(n_y, n_x).with_context(|| format!("{}", args.kspace.display()))?;
    let sparsity = match (&args.lambda, &args.model) {
        (Some(text), _) => Sparsity::Fixed(parse_lambda(text)?),
        (None, Some(path)) => Sparsity::Model(LambdaModel::from_path(path)?),
        (None, None) => {
            Sparsity::Model(LambdaModel::from_bytes(BUNDLED_MODEL, BUNDLED_MODEL_NAME)?)
        }
    };
    let (filters, dictionary_name) = match (&args.dictionary, &sparsity) {
        (Some(path), _) => (npy::read_dictionary(path)?, path.display().to_string()),
        (None, Sparsity::Fixed(_)) => (
            npy::dictionary_from_bytes(BUNDLED_DICTIONARY)?,
            BUNDLED_DICTIONARY_NAME.to_string(),
        ),
        (None, Sparsity::Model(_)) => (
            npy::dictionary_from_bytes(BUNDLED_MODEL_DICTIONARY)?,
            BUNDLED_MODEL_DICTIONARY_NAME.to_string(),
        ),
    };
    let (count, side, _) = filters.dim();
    let kind = match args.backend {
        Backend::Rustfft => BackendKind::RustFft,
        Backend::Microfft => BackendKind::MicroFft,
    };
    let dictionary = npy::dictionary_view(&filters)
        .with_context(|| format!("dictionary {dictionary_name}"))?;
    let kspace_slice = kspace
        .as_slice()
        .context("k-space array is not contiguous")?;
    let mask_f32: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let mut image = Array2::<Complex32>::zeros((n_y, n_x));
    let image_slice = image
        .as_slice_mut()
        .expect("freshly allocated arrays are contiguous");
    let reconstructing = || format!("reconstructing {}", args.kspace.display());

    let solve_started = Instant::now();
    let (report, lambda_name, config, memory_bytes) = match &sparsity {
        Sparsity::Fixed(input) => {
            let (lambda, lambda_name) = match input {
                LambdaInput::Scalar(v) => (Lambda::Scalar(*v), format!("{v}")),
                LambdaInput::File(path, array) => {
                    let expected_maps = [count, n_y, n_x];
                    let lambda = match array.shape() {
                        [k] if *k == count => Lambda::PerBlock(array.as_slice().context("lambda array is not contiguous")?),
                        s if s == expected_maps => Lambda::Maps(array.as_slice().context("lambda array is not contiguous")?),
                        s => bail!(
                            "{}: lambda has shape {s:?}, but the dictionary has K={count} filters and the image is {n_y}x{n_x}: expected [{count}] or [{count}, {n_y}, {n_x}]",
                            path.display()
                        ),
                    };
                    (lambda, path.display().to_string())
                }
            };
            let config = ReconConfig {
                iterations: args.iterations.unwrap_or(ITERATIONS),
                lowpass_weight: args.lowpass_weight.unwrap_or(LOWPASS_WEIGHT as f32),
            };
            let mut reconstructor = EdgeReconstructor::new(kind, shape, dictionary)
                .with_context(|| format!("dictionary {dictionary_name}"))?;
            let report = reconstructor
                .reconstruct(kspace_slice, &mask_f32, lambda, &config, image_slice)
                .with_context(reconstructing)?;
            (report, lambda_name, config, reconstructor.memory_bytes())
        }
        Sparsity::Model(model) => {
            let mut learned =
                LearnedReconstructor::new(model, kind, shape, dictionary)
                    .with_context(|| {
                        format!("model {} with dictionary {dictionary_name}", model.name())
                    })?;
            if let Some(iterations) = args.iterations {
                learned = learned.with_iterations(iterations);
            }
            let report = learned
                .reconstruct(kspace_slice, &mask_f32, image_slice)
                .with_context(reconstructing)?;
            if let Some(path) = &args.lambda_out {
                let maps =
                    ndarray::ArrayView3::from_shape((count, n_y, n_x), learned.lambda_maps())
                        .expect("the maps are [K, n_y, n_x]");
                write_npy(path, &maps)?;
            }
            let lambda_name = format!(
                "maps from {} (mean {:.4}, features + network {:.3} s)",
                model.name(),
                report.lambda_mean,
                report.times.features + report.times.network
            );
            (
                report.solve,
                lambda_name,
                *learned.config(),
                learned.memory_bytes(),
            )
        }
    };
    let solve_seconds = solve_started.elapsed().as_secs_f64();

    let provenance = Provenance {
        software: format!("sparsemap {}", env!("CARGO_PKG_VERSION")),
        model: match &sparsity {
            Sparsity::Model(model) => Some(model_label(model.name(), &model.info().precision)),
            Sparsity::Fixed(_) => None,
        },
        dictionary: dictionary_name,
        filters: count,
        filter_side: side,
        lambda: lambda_name,
        iterations: config.iterations,
        lowpass_weight: config.lowpass_weight,
        fft_backend: kind.name().to_string(),
        scale_c: report.scale,
        lipschitz: report.lipschitz,
        sampled_fraction: report.sampled as f64 / shape.len() as f64,
        nonzero_coefficients: report.nonzero_coefficients,
        seconds: solve_seconds,
        acquisition: None,
        voxel_mm: None,
        orientation: ARRAY_ORIENTATION.to_string(),
    };
    write_npy(&args.out, &image)?;
    write_sidecar(&sidecar_path(&args.out), &provenance)?;
    if let Some(png) = &args.png {
        write_png(png, &image, &provenance)?;
    }
    eprintln!(
        "sparsemap: {n_y}x{n_x}, {:.1} % sampled, K={count} {side}x{side} filters, {} iterations ({}), lambda {}: {:.3} s, total {:.3} s, {:.1} MB planned, peak RSS {:.1} MB; wrote {}",
        100.0 * provenance.sampled_fraction,
        config.iterations,
        kind.name(),
        provenance.lambda,
        solve_seconds,
        started.elapsed().as_secs_f64(),
        memory_bytes as f64 / 1e6,
        sparsemap_edge::memory::peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
        args.out.display()
    );
    if let Some(target) = &args.compare_to {
        compare(target, &kspace, &mask, &image, shape)?;
    }
    Ok(())
}

/// Prints PSNR of the zero-filled and the reconstructed magnitude against `target`.
fn compare(
    target: &Path,
    kspace: &Array2<Complex32>,
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
    let zero_filled = zero_filled(kspace, mask, shape)?;
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
