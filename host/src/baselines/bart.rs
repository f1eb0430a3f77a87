//! Runner for the BART command-line tool (Berkeley Advanced Reconstruction Toolbox).
//!
//! Verified against Debian's `bart` 0.8.00 (`apt-get install -y bart`); see the tests in
//! `host/tests/baselines.rs`. Facts this module relies on:
//!
//! - Layout: arrays are exchanged as `.cfl`/`.hdr` pairs ([`super::cfl`]) with our row-major
//!   `[n_y][n_x]` buffer declared as BART dims `[n_x, n_y]` (BART dim 0 = readout x, dim 1 =
//!   phase encode y). Transform flags `3` = BART dims 0 and 1 = both image axes.
//! - `bart fft -i -u 3` is exactly our unitary centred `F^H` (DESIGN §3.2), checked to
//!   1e-5 relative on a non-square 64×32 grid, which pins both the layout and the centring.
//! - `bart pics` with a sensitivity map of ones (`bart ones 2 n_x n_y`), the mask as the
//!   pattern (`-p`) and `-w 1` (no internal data rescaling; without it pics divides the data
//!   by its own scaling estimate and multiplies the result back, so lambda would mean
//!   something different per slice) solves `min_x 1/2||P F x - y||^2 + lambda R(x)` with
//!   the same unitary centred `F`: with a full mask and lambda = 1e-6 it returns `F^H y`
//!   (least-squares ratio 1.000000 for `W`, 0.999997 for `T`; relative error 2e-7 and 4e-6).
//!   **No correction factor is needed** (test `pics_tiny_lambda_full_mask_is_adjoint`).
//! - `-R W:3:0:lambda` is `lambda ||W x||_1`, W BART's default orthogonal wavelet
//!   (Daubechies-2) over dims 0 and 1 with random cycle spinning (`-n` disables it), solved
//!   by FISTA; `-i` = FISTA iterations.
//! - `-R T:3:0:lambda` is BART's TV over dims 0 and 1 (BART's `opt_reg` thresholds the
//!   gradient directions jointly, i.e. isotropic), solved by ADMM. Here **`-i` budgets the
//!   cumulative inner CG iterations**, not ADMM steps: `-i 30` stopped after 7 ADMM steps
//!   (`-d 4` log) and was 1.7e-2 away from the solution in the tiny-lambda test; `-i 100`
//!   converged to 4e-6. With the same lambda BART TV and [`super::tv`] give nearly the same
//!   image (colin27, lambda 0.02, converged with `-i 2000` / 3000 Chambolle–Pock steps:
//!   PSNR 33.15 vs 33.13 dB, images 1.64e-2 apart relative — a small discretisation
//!   difference, boundary or isotropy details, not investigated further).
//! - `OMP_NUM_THREADS=1` is set on every call (faster on the 2-core machines, DEPENDENCIES);
//!   [`Bart::with_omp_threads`] changes it (the end-to-end benchmark times 1 and 2).
//! - [`Bart::with_process_log`] records every BART process's wall time and, with GNU time,
//!   its peak RSS ([`crate::process`]).
//!
//! Scaling: as for the TV baseline (DESIGN §3.6), the masked data is multiplied by
//! `c = 1/p99(|F^H M y|)` before pics and the result divided by `c`, so `lambda` is in the
//! scaled units of sparsemap and of [`super::tv`], the same on every slice.
//!
//! Multi-coil ([`Bart::ecalib`], [`Bart::pics_sense`]): coil arrays are row-major
//! `[C][n_y][n_x]`, written unchanged as BART dims `[n_x, n_y, 1, C]` (BART's coil dimension is
//! 3, `COIL_DIM`); the maps come back in the same layout (`-m 1`: one set of maps, BART's
//! dimension 4 of size 1). `pics` gets the maps instead of ones, and the data are scaled as
//! above with `|F^H M y|` replaced by the SENSE-combined zero-filled image
//! `|sum_c conj(S_c) F^H M y_c|` (computed in Rust with the core's `F^H`, which equals
//! `bart fft -i -u 3`), i.e. the single-coil image scale when `sum_c |S_c|^2 = 1`: `lambda`
//! means the same as for one coil.
//!
//! Errors (never panics on a failing subprocess): `bart` missing (naming the Debian package),
//! a non-zero exit (with the command line and BART's stderr), or unreadable output files.

use super::{cfl, masked_data};
use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3};
use num_complex::Complex32;
use sparsemap_core::recon::percentile;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The Debian package that provides the `bart` executable.
pub const APT_PACKAGE: &str = "bart";

/// BART transform flags selecting dims 0 and 1 (x and y).
pub const SPATIAL_FLAGS: u32 = 3;

/// `OMP_NUM_THREADS` given to every BART process unless [`Bart::with_omp_threads`] says
/// otherwise.
pub const OMP_THREADS: &str = "1";

/// A BART regulariser for [`Bart::pics`]; `lambda` in the scaled units (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Regulariser {
    /// `-R W:3:0:lambda`: `lambda ||W x||_1`, W an orthogonal wavelet over x and y.
    L1Wavelet { lambda: f32 },
    /// `-R T:3:0:lambda`: `lambda TV(x)`, isotropic TV over x and y.
    TotalVariation { lambda: f32 },
}

impl Regulariser {
    fn lambda(self) -> f32 {
        match self {
            Self::L1Wavelet { lambda } | Self::TotalVariation { lambda } => lambda,
        }
    }

    /// The `-R` argument value.
    pub fn argument(self) -> String {
        match self {
            Self::L1Wavelet { lambda } => format!("W:{SPATIAL_FLAGS}:0:{lambda}"),
            Self::TotalVariation { lambda } => format!("T:{SPATIAL_FLAGS}:0:{lambda}"),
        }
    }
}

/// Handle on a `bart` executable. Each call works in its own temporary directory, which is
/// removed afterwards.
#[derive(Debug, Clone)]
pub struct Bart {
    program: PathBuf,
    omp_threads: String,
    log: Option<ProcessLog>,
}

/// One finished BART process (see [`Bart::with_process_log`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BartProcess {
    /// The BART subcommand (`pics`, `fft`, `ones`, ...).
    pub command: String,
    /// Wall time from spawn to exit, seconds.
    pub seconds: f64,
    /// Peak RSS in bytes, when GNU time measured it.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
struct ProcessLog {
    time: Option<PathBuf>,
    records: Arc<Mutex<Vec<BartProcess>>>,
}

/// The first `bart` executable on `PATH`, if any.
pub fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bart"))
        .find(|candidate| candidate.is_file())
}

impl Bart {
    /// Uses the `bart` found on `PATH`; an error naming the apt package if there is none.
    pub fn new() -> Result<Self> {
        match find_on_path() {
            Some(program) => Ok(Self::with_program(program)),
            None => bail!(
                "the `bart` executable is not on PATH; install it with \
                 `apt-get install -y {APT_PACKAGE}` (Debian package `{APT_PACKAGE}`, BART 0.8.00)"
            ),
        }
    }

    /// Uses the given executable.
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            omp_threads: OMP_THREADS.to_owned(),
            log: None,
        }
    }

    /// Runs every BART process with `OMP_NUM_THREADS=threads` (default [`OMP_THREADS`]).
    pub fn with_omp_threads(mut self, threads: usize) -> Self {
        self.omp_threads = threads.to_string();
        self
    }

    /// Records every BART process this handle (and its clones) runs, for
    /// [`Self::take_process_log`]: wall time, and peak RSS when `time` is GNU time
    /// ([`crate::process::gnu_time`]).
    pub fn with_process_log(mut self, time: Option<PathBuf>) -> Self {
        self.log = Some(ProcessLog {
            time,
            records: Arc::default(),
        });
        self
    }

    /// The processes recorded since the last call, oldest first (empty without
    /// [`Self::with_process_log`]).
    pub fn take_process_log(&self) -> Vec<BartProcess> {
        self.log.as_ref().map_or_else(Vec::new, |log| {
            std::mem::take(&mut *log.records.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Path of the executable.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// `bart version` (e.g. `v0.8.00`).
    pub fn version(&self) -> Result<String> {
        let dir = temp_dir()?;
        Ok(self.run(dir.path(), &["version"])?.trim().to_owned())
    }

    /// Runs `bart ARGS...` in `dir` with `OMP_NUM_THREADS` (module docs); returns its stdout.
    /// A failure to start or a non-zero exit is an error naming the command and carrying
    /// BART's stderr.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, dir: &Path, args: &[S]) -> Result<String> {
        let line = std::iter::once(self.program.as_os_str().to_owned())
            .chain(args.iter().map(|a| a.as_ref().to_owned()))
            .collect::<Vec<OsString>>()
            .join(std::ffi::OsStr::new(" "))
            .to_string_lossy()
            .into_owned();
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .current_dir(dir)
            .env("OMP_NUM_THREADS", &self.omp_threads);
        let time = self.log.as_ref().and_then(|log| log.time.as_deref());
        let measured = crate::process::run(&command, time, &dir.join(".sparsemap-rss"))
            .with_context(|| {
                format!(
                    "could not run `{line}` (is BART installed? `apt-get install -y {APT_PACKAGE}`)"
                )
            })?;
        if let Some(log) = &self.log {
            log.records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(BartProcess {
                    command: args
                        .first()
                        .map_or_else(String::new, |a| a.as_ref().to_string_lossy().into_owned()),
                    seconds: measured.seconds,
                    peak_rss_bytes: measured.peak_rss_bytes,
                });
        }
        let output = measured.output;
        if !output.status.success() {
            bail!(
                "`{line}` failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `bart fft -i -u 3`: the unitary centred inverse DFT over both axes, which equals our
    /// `F^H` of DESIGN §3.2 (`ifftshift`/`fftshift` centring, `1/sqrt(N)`). Input and output are
    /// row-major `[n_y][n_x]` of any size.
    pub fn fft_inverse_unitary(
        &self,
        kspace: ArrayView2<'_, Complex32>,
    ) -> Result<Array2<Complex32>> {
        let dir = temp_dir()?;
        let (input, output) = (dir.path().join("kspace"), dir.path().join("image"));
        cfl::write_image(&input, kspace)?;
        self.run(
            dir.path(),
            &[
                "fft",
                "-i",
                "-u",
                &SPATIAL_FLAGS.to_string(),
                "kspace",
                "image",
            ],
        )?;
        cfl::read_image(&output).context("reading the output of `bart fft`")
    }

    /// `bart pics` with l1-wavelet regularisation: `min_x 1/2||M F x - c y||^2 +
    /// lambda ||W x||_1`, `iterations` FISTA steps, result divided by `c` (module docs).
    ///
    /// Measured: on a central-block mask (the Colin27 example, pure 2× super-resolution) this
    /// does *not* beat zero-filled for any lambda (it tends to zero-filled as lambda -> 0);
    /// on variable-density phase-encode undersampling it does (see `host/tests/baselines.rs`).
    pub fn pics_l1_wavelet(
        &self,
        kspace: ArrayView2<'_, Complex32>,
        mask: ArrayView2<'_, bool>,
        lambda: f32,
        iterations: usize,
    ) -> Result<Array2<Complex32>> {
        self.pics(kspace, mask, Regulariser::L1Wavelet { lambda }, iterations)
    }

    /// `bart pics` with isotropic TV: `min_x 1/2||M F x - c y||^2 + lambda TV(x)` by ADMM,
    /// result divided by `c` (module docs). `iterations` is BART's `-i`, which for ADMM
    /// budgets the cumulative inner CG iterations (100 is enough at 256×256, see tests).
    pub fn pics_tv(
        &self,
        kspace: ArrayView2<'_, Complex32>,
        mask: ArrayView2<'_, bool>,
        lambda: f32,
        iterations: usize,
    ) -> Result<Array2<Complex32>> {
        self.pics(
            kspace,
            mask,
            Regulariser::TotalVariation { lambda },
            iterations,
        )
    }

    /// `bart pics -w 1 -i ITERATIONS -R REG -p MASK KSPACE ONES OUT` on the scaled, masked
    /// data (module docs), single coil (sensitivities = ones). Returns `x / c`, `[n_y][n_x]`.
    ///
    /// Errors: mismatched shapes, non-finite data, negative or non-finite lambda, zero
    /// iterations, no signal under the mask, or any BART failure.
    pub fn pics(
        &self,
        kspace: ArrayView2<'_, Complex32>,
        mask: ArrayView2<'_, bool>,
        regulariser: Regulariser,
        iterations: usize,
    ) -> Result<Array2<Complex32>> {
        self.pics_with(kspace, mask, regulariser, iterations, &[])
    }

    /// [`Self::pics`] with extra `bart pics` options inserted before the file names (for
    /// example `["-n"]` to disable random wavelet cycle spinning or `["--wavelet", "haar"]`).
    pub fn pics_with(
        &self,
        kspace: ArrayView2<'_, Complex32>,
        mask: ArrayView2<'_, bool>,
        regulariser: Regulariser,
        iterations: usize,
        extra: &[&str],
    ) -> Result<Array2<Complex32>> {
        let lambda = regulariser.lambda();
        if !(lambda >= 0.0 && lambda.is_finite()) {
            bail!("pics lambda must be finite and >= 0, got {lambda}");
        }
        if iterations == 0 {
            bail!("pics needs at least one iteration");
        }
        let (n_y, n_x) = kspace.dim();
        let (mut y, weights) = masked_data(kspace, mask)?;
        let dir = temp_dir()?;
        let path = |name: &str| dir.path().join(name);

        // Scale (DESIGN §3.6) with BART's own F^H, which equals ours (module docs).
        let y_array = Array2::from_shape_vec((n_y, n_x), y.clone()).expect("n_y * n_x values");
        let zero_filled = self.fft_inverse_unitary(y_array.view())?;
        let mut magnitudes: Vec<f32> = zero_filled.iter().map(|v| v.norm()).collect();
        let c = match percentile(&mut magnitudes, 0.99) {
            Some(p) if p > 0.0 && p.is_finite() => 1.0 / p,
            p => bail!(
                "cannot scale: the 99th percentile of |F^H y| is {p:?} (no signal under the mask?)"
            ),
        };
        y.iter_mut().for_each(|v| *v *= c);

        cfl::write(&path("kspace"), &[n_x, n_y], &y)?;
        let pattern: Vec<Complex32> = weights.iter().map(|&w| Complex32::new(w, 0.0)).collect();
        cfl::write(&path("pattern"), &[n_x, n_y], &pattern)?;
        self.run(
            dir.path(),
            &["ones", "2", &n_x.to_string(), &n_y.to_string(), "sens"],
        )?;
        let iterations = iterations.to_string();
        let reg = regulariser.argument();
        let mut args: Vec<&str> = vec!["pics", "-w", "1", "-i", &iterations, "-R", &reg];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-p", "pattern", "kspace", "sens", "image"]);
        self.run(dir.path(), &args)?;
        let mut image =
            cfl::read_image(&path("image")).context("reading the output of `bart pics`")?;
        if image.dim() != (n_y, n_x) {
            bail!(
                "`bart pics` returned shape {:?}, expected {:?}",
                image.dim(),
                (n_y, n_x)
            );
        }
        let inverse = 1.0 / c;
        image.iter_mut().for_each(|v| *v *= inverse);
        Ok(image)
    }
}

/// Default side of ESPIRiT's calibration region (BART's `-r` default, 24).
pub const ECALIB_CALIBRATION: usize = 24;

impl Bart {
    /// `bart ecalib -m 1 -r CALIBRATION KSPACE SENS`: ESPIRiT sensitivities (one set of maps)
    /// from the fully sampled `calibration x calibration` centre of the multi-coil k-space
    /// `[C][n_y][n_x]` (centred; entries off the mask must be zero). Returns `[C][n_y][n_x]`;
    /// BART normalises them to `sum_c |S_c|^2 = 1` where its eigenvalue exceeds the crop
    /// threshold (`-c`, default 0.8) and sets them to zero elsewhere; the phase is relative to
    /// the first principal component (BART's default), so compare maps phase-invariantly
    /// ([`crate::coils::map_correlation`]). The data are scaled by `1/p99(RSS of F^H y)` first
    /// (ESPIRiT's thresholds are relative, but the scale keeps the numbers near 1).
    ///
    /// Errors: fewer than 1 or more than 32 coils, non-finite data, a calibration region
    /// larger than the grid, no signal, or any BART failure.
    pub fn ecalib(
        &self,
        kspace: ArrayView3<'_, Complex32>,
        calibration: usize,
    ) -> Result<Array3<Complex32>> {
        self.ecalib_with(kspace, calibration, &[])
    }

    /// [`Self::ecalib`] with extra `bart ecalib` options before the file names.
    pub fn ecalib_with(
        &self,
        kspace: ArrayView3<'_, Complex32>,
        calibration: usize,
        extra: &[&str],
    ) -> Result<Array3<Complex32>> {
        let (coils, n_y, n_x) = kspace.dim();
        if !(1..=crate::coils::MAX_COILS).contains(&coils) {
            bail!(
                "ecalib: {coils} coils, 1..={} supported",
                crate::coils::MAX_COILS
            );
        }
        if calibration == 0 || calibration > n_y || calibration > n_x {
            bail!("ecalib: calibration region {calibration} does not fit the {n_y}x{n_x} grid");
        }
        if kspace.iter().any(|v| !v.is_finite()) {
            bail!("ecalib: k-space contains NaN or infinite values");
        }
        let rss = crate::coils::rss_zero_filled(kspace)?;
        let c = scale_of(rss.view())?;
        let data: Vec<Complex32> = kspace.iter().map(|v| v * c).collect();
        let dir = temp_dir()?;
        cfl::write(&dir.path().join("kspace"), &[n_x, n_y, 1, coils], &data)?;
        let calibration = calibration.to_string();
        let mut args: Vec<&str> = vec!["ecalib", "-m", "1", "-r", &calibration];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["kspace", "sens"]);
        self.run(dir.path(), &args)?;
        let (dims, maps) =
            cfl::read(&dir.path().join("sens")).context("reading the output of `bart ecalib`")?;
        let expected: Vec<usize> = if coils == 1 {
            vec![n_x, n_y]
        } else {
            vec![n_x, n_y, 1, coils]
        };
        if dims != expected {
            bail!("`bart ecalib` returned dims {dims:?}, expected {expected:?}");
        }
        Ok(Array3::from_shape_vec((coils, n_y, n_x), maps).expect("length checked by read"))
    }

    /// `bart pics -w 1 -i ITERATIONS -R REG -p MASK KSPACE MAPS OUT`: SENSE with a
    /// regulariser, `min_x 1/2 sum_c ||M F (S_c x) - c y_c||^2 + lambda R(x)`, result divided
    /// by `c` (module docs, multi-coil). `kspace` and `maps` are `[C][n_y][n_x]`, `mask`
    /// `[n_y][n_x]` (the same for every coil). Returns `[n_y][n_x]`.
    ///
    /// Errors: mismatched shapes, non-finite data or maps, negative or non-finite lambda, zero
    /// iterations, no signal, or any BART failure.
    pub fn pics_sense(
        &self,
        kspace: ArrayView3<'_, Complex32>,
        mask: ArrayView2<'_, bool>,
        maps: ArrayView3<'_, Complex32>,
        regulariser: Regulariser,
        iterations: usize,
    ) -> Result<Array2<Complex32>> {
        let lambda = regulariser.lambda();
        if !(lambda >= 0.0 && lambda.is_finite()) {
            bail!("pics lambda must be finite and >= 0, got {lambda}");
        }
        if iterations == 0 {
            bail!("pics needs at least one iteration");
        }
        let (coils, n_y, n_x) = kspace.dim();
        if maps.dim() != kspace.dim() || mask.dim() != (n_y, n_x) {
            bail!(
                "pics: k-space {:?}, maps {:?} and mask {:?} do not match",
                kspace.dim(),
                maps.dim(),
                mask.dim()
            );
        }
        if kspace.iter().chain(maps.iter()).any(|v| !v.is_finite()) {
            bail!("pics: k-space or maps contain NaN or infinite values");
        }
        let masked: Vec<Complex32> = kspace
            .outer_iter()
            .flat_map(|coil| {
                coil.iter()
                    .zip(mask.iter())
                    .map(|(&v, &m)| if m { v } else { Complex32::default() })
                    .collect::<Vec<_>>()
            })
            .collect();
        let masked = Array3::from_shape_vec((coils, n_y, n_x), masked).expect("C N values");
        let combined = crate::coils::sense_zero_filled(masked.view(), maps)?;
        let c = scale_of(combined.view())?;
        let y: Vec<Complex32> = masked.iter().map(|v| v * c).collect();
        let dir = temp_dir()?;
        let path = |name: &str| dir.path().join(name);
        cfl::write(&path("kspace"), &[n_x, n_y, 1, coils], &y)?;
        let maps_data: Vec<Complex32> = maps.iter().copied().collect();
        cfl::write(&path("sens"), &[n_x, n_y, 1, coils], &maps_data)?;
        let pattern: Vec<Complex32> = mask
            .iter()
            .map(|&m| Complex32::new(if m { 1.0 } else { 0.0 }, 0.0))
            .collect();
        cfl::write(&path("pattern"), &[n_x, n_y], &pattern)?;
        let iterations = iterations.to_string();
        let reg = regulariser.argument();
        let args = [
            "pics",
            "-w",
            "1",
            "-i",
            &iterations,
            "-R",
            &reg,
            "-p",
            "pattern",
            "kspace",
            "sens",
            "image",
        ];
        self.run(dir.path(), &args)?;
        let mut image =
            cfl::read_image(&path("image")).context("reading the output of `bart pics`")?;
        if image.dim() != (n_y, n_x) {
            bail!(
                "`bart pics` returned shape {:?}, expected {:?}",
                image.dim(),
                (n_y, n_x)
            );
        }
        let inverse = 1.0 / c;
        image.iter_mut().for_each(|v| *v *= inverse);
        Ok(image)
    }
}

/// `1/p99(|image|)` (DESIGN §3.6), or an error when that is not positive and finite.
fn scale_of(image: ArrayView2<'_, Complex32>) -> Result<f32> {
    let mut magnitudes: Vec<f32> = image.iter().map(|v| v.norm()).collect();
    match percentile(&mut magnitudes, 0.99) {
        Some(p) if p > 0.0 && p.is_finite() => Ok(1.0 / p),
        p => bail!(
            "cannot scale: the 99th percentile of the zero-filled magnitude is {p:?} (no signal \
             under the mask?)"
        ),
    }
}

fn temp_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("sparsemap-bart-")
        .tempdir()
        .context("creating a temporary directory for BART files")
}
