//! Multi-channel receive coils (DESIGN §3.4): noise prewhitening, SVD coil compression and
//! coil sensitivities from the fully sampled k-space centre (ACS).
//!
//! The multi-coil forward model is `A x = M_c (.) F(S_c x)` for each coil `c`, with the
//! sensitivities normalised so that `sum_c |S_c|^2 = 1` where the object is. The usual
//! order of the steps is
//!
//! 1. [`noise_whitening`] from a noise-only pre-scan, then [`Whitening::apply`] to the
//!    k-space, so that the channels have independent unit-variance noise;
//! 2. optionally [`coil_compression`] and [`Compression::apply`] (fewer virtual coils,
//!    less work per iteration);
//! 3. [`estimate_sensitivities`] on the (whitened, compressed) k-space.
//!
//! Layouts (DESIGN §3.1): images and k-space are row-major `[n_y][n_x]`, multi-coil arrays
//! `[C][n_y][n_x]` flattened coil after coil, k-space centred (DC at `[n_y/2][n_x/2]`), the
//! Fourier transform the unitary centred one of DESIGN §3.2. Masks are `f32`, one per coil
//! (`[C][n_y][n_x]`), a sample counts as acquired where its mask value is non-zero.
//!
//! Every function checks its input lengths and values first and returns an error (never a
//! panic) on wrong lengths, NaN or infinite values, zero coils and the like.

use std::collections::VecDeque;
use std::ops::Range;

use anyhow::{anyhow, bail, ensure, Result};
use nalgebra::{Cholesky, DMatrix, SymmetricEigen};
use num_complex::{Complex32, Complex64};
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;

/// Smallest eigenvalue of the noise covariance relative to its largest that
/// [`noise_whitening`] accepts. Real receive arrays have condition numbers of 10–10^3; a
/// ratio below `1e-9` means two channels carry the same noise (a duplicated or shorted
/// channel) and `Psi^{-1/2}` would amplify rounding errors by more than `10^4.5`.
pub const MIN_NOISE_EIGEN_RATIO: f64 = 1e-9;

/// Smallest side (in k-space samples) of a usable calibration region: below 6 lines the
/// low-resolution coil images cannot resolve a coil profile (the Hann window leaves
/// about 4 effective samples). [`calibration_region`] returns `None` below this.
pub const MIN_CALIBRATION_SIDE: usize = 6;

/// Default cap of each side of the calibration region ([`SensitivityOptions`]): 32 lines,
/// as in BART's `ecalib` default calibration size (`-r 24..32`); coil profiles are smooth,
/// and more lines only sharpen the object's edges in the low-resolution images.
pub const DEFAULT_CALIBRATION_MAX: usize = 32;

/// Default side of the Walsh covariance window ([`SensitivityOptions::window`]), in pixels
/// (Walsh et al. 2000 use 5–9; odd so that it is centred on the pixel).
pub const DEFAULT_WINDOW: usize = 7;

/// Default support threshold ([`SensitivityOptions::support_threshold`]): a pixel is in the
/// object where its smoothed low-resolution root-sum-of-squares *energy* is at least 2 % of
/// the robust maximum, i.e. its amplitude at least about 14 % of the peak amplitude. Chosen
/// on the Colin27 example with synthetic coils (the support then covers the whole head,
/// dark CSF included, see the tests) and well above the noise of the low-resolution images,
/// which hold only the calibration samples' noise.
pub const DEFAULT_SUPPORT_THRESHOLD: f32 = 0.02;

/// The "robust maximum" of the support rule: this quantile of the smoothed energy over the
/// whole grid, so that a few bright pixels (fat, vessels, a spike) do not set the scale.
pub const ROBUST_MAX_QUANTILE: f64 = 0.99;

/// Dilation (pixels, square structuring element of side `2 d + 1`) of the thresholded
/// support, so that the object's edge, blurred in the low-resolution images, is inside.
pub const SUPPORT_DILATION: usize = 3;

/// Power iterations per pixel before [`estimate_sensitivities`] falls back to nalgebra's
/// Hermitian eigendecomposition for that pixel.
pub const POWER_ITERATIONS_MAX: usize = 60;

/// Power iteration stops when `||R v - (v^H R v) v|| <= POWER_TOLERANCE * (v^H R v)`: the
/// eigenvector error is then below `POWER_TOLERANCE lambda_1 / (lambda_1 - lambda_2)`.
pub const POWER_TOLERANCE: f64 = 1e-7;

/// Name of the sensitivity method, [`Sensitivities::method`].
pub const WALSH_METHOD: &str = "walsh-adaptive-combine";

fn to64(v: Complex32) -> Complex64 {
    Complex64::new(f64::from(v.re), f64::from(v.im))
}

fn to32(v: Complex64) -> Complex32 {
    Complex32::new(v.re as f32, v.im as f32)
}

fn check_coils(coils: usize) -> Result<()> {
    ensure!(coils >= 1, "the number of coils must be at least 1, got 0");
    Ok(())
}

/// `coils * n`, or an error naming `what` when it overflows.
fn multi_len(coils: usize, n: usize, what: &str) -> Result<usize> {
    coils
        .checked_mul(n)
        .ok_or_else(|| anyhow!("{what}: {coils} coils x {n} values overflows usize"))
}

fn check_len(len: usize, expected: usize, what: &str, layout: &str) -> Result<()> {
    ensure!(
        len == expected,
        "{what} has {len} values, expected {expected} ({layout})"
    );
    Ok(())
}

/// Error naming the coil and position of the first NaN or infinite value.
fn check_finite_complex(data: &[Complex32], per_coil: usize, what: &str) -> Result<()> {
    if let Some(i) = data
        .iter()
        .position(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        let per_coil = per_coil.max(1);
        bail!(
            "{what} contains a NaN or infinite value (coil {}, index {})",
            i / per_coil,
            i % per_coil
        );
    }
    Ok(())
}

fn check_finite_masks(masks: &[f32], n: usize) -> Result<()> {
    if let Some(i) = masks.iter().position(|v| !v.is_finite()) {
        bail!(
            "the masks contain a NaN or infinite value (coil {}, index {})",
            i / n.max(1),
            i % n.max(1)
        );
    }
    Ok(())
}

/// Eigendecomposition of a Hermitian `[c][c]` row-major matrix (nalgebra, `f64`):
/// `(eigenvalues descending, unit eigenvectors in the same order)`, each eigenvector's
/// largest-magnitude component made real and positive (a deterministic phase).
fn hermitian_eigen_sorted(matrix: &[Complex64], c: usize) -> (Vec<f64>, Vec<Vec<Complex64>>) {
    let eig = SymmetricEigen::new(DMatrix::from_row_slice(c, c, matrix));
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let values = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let vectors = order
        .iter()
        .map(|&i| {
            let mut v: Vec<Complex64> = eig.eigenvectors.column(i).iter().copied().collect();
            fix_phase_largest(&mut v);
            v
        })
        .collect();
    (values, vectors)
}

/// Rotate `v` so that its largest-magnitude component is real and positive.
fn fix_phase_largest(v: &mut [Complex64]) {
    let pivot = v
        .iter()
        .copied()
        .max_by(|a, b| a.norm_sqr().total_cmp(&b.norm_sqr()))
        .unwrap_or_default();
    let magnitude = pivot.norm();
    if magnitude > 0.0 {
        let rotation = pivot.conj() / magnitude;
        for value in v.iter_mut() {
            *value *= rotation;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Noise prewhitening
// ---------------------------------------------------------------------------------------

/// Noise prewhitening of a receive array: the noise covariance `Psi` measured on noise-only
/// samples and `W = L^{-1}` with `L L^H = Psi` (Cholesky), so that whitened data `W y` have
/// identity noise covariance (`W Psi W^H = I`).
#[derive(Debug, Clone, PartialEq)]
pub struct Whitening {
    /// Number of channels `C`.
    pub coils: usize,
    /// `Psi`, `[C][C]` row-major: `Psi_cd = (1/M) sum_m n_c[m] conj(n_d[m])` (Hermitian,
    /// in the units of the noise samples squared; not mean-subtracted, noise has zero mean).
    pub covariance: Vec<Complex64>,
    /// `W = L^{-1}`, `[C][C]` row-major, lower triangular, `L L^H = Psi`.
    pub matrix: Vec<Complex32>,
}

/// Estimate the noise covariance of `coils` channels from noise-only samples and its
/// whitening matrix ([`Whitening`]).
///
/// `noise` is `[C][M]` (coil after coil, `M` samples each, any `M >= 2 C`): with fewer
/// samples the estimate of `Psi` is too poor to invert. Errors: zero coils, a length that
/// is not a multiple of `coils`, `M < 2 C`, NaN or infinite samples, and a singular (or
/// nearly so, [`MIN_NOISE_EIGEN_RATIO`]) covariance, e.g. a duplicated or dead channel.
pub fn noise_whitening(noise: &[Complex32], coils: usize) -> Result<Whitening> {
    check_coils(coils)?;
    ensure!(
        noise.len().is_multiple_of(coils),
        "noise has {} samples, not a multiple of {coils} coils (layout [C][M])",
        noise.len()
    );
    let m = noise.len() / coils;
    ensure!(
        m >= 2 * coils,
        "too few noise samples: {m} per coil, need at least 2 x {coils} coils = {}",
        2 * coils
    );
    check_finite_complex(noise, m, "noise")?;

    let mut psi = vec![Complex64::default(); coils * coils];
    for c in 0..coils {
        let nc = &noise[c * m..(c + 1) * m];
        for d in c..coils {
            let nd = &noise[d * m..(d + 1) * m];
            let sum: Complex64 = nc
                .iter()
                .zip(nd)
                .map(|(&a, &b)| to64(a) * to64(b).conj())
                .sum();
            let value = sum / m as f64;
            if c == d {
                psi[c * coils + c] = Complex64::new(value.re, 0.0);
            } else {
                psi[c * coils + d] = value;
                psi[d * coils + c] = value.conj();
            }
        }
    }

    let (values, _) = hermitian_eigen_sorted(&psi, coils);
    let largest = values.first().copied().unwrap_or(0.0);
    let smallest = values.last().copied().unwrap_or(0.0);
    ensure!(
        largest > 0.0,
        "the noise covariance is zero: the noise samples are all zero"
    );
    ensure!(
        smallest > MIN_NOISE_EIGEN_RATIO * largest,
        "the noise covariance is singular: smallest/largest eigenvalue {:.3e} < {MIN_NOISE_EIGEN_RATIO:e} \
         (a duplicated, dead or shorted channel?)",
        smallest / largest
    );
    let matrix = DMatrix::from_row_slice(coils, coils, &psi);
    let cholesky = Cholesky::new(matrix).ok_or_else(|| {
        anyhow!("the noise covariance is not positive definite (Cholesky failed)")
    })?;
    let inverse = cholesky
        .l()
        .solve_lower_triangular(&DMatrix::identity(coils, coils))
        .ok_or_else(|| anyhow!("the noise covariance's Cholesky factor is singular"))?;
    let mut w = Vec::with_capacity(coils * coils);
    for r in 0..coils {
        for c in 0..coils {
            w.push(to32(inverse[(r, c)]));
        }
    }
    Ok(Whitening {
        coils,
        covariance: psi,
        matrix: w,
    })
}

impl Whitening {
    /// Whiten `data` in place: `y_c <- sum_d W_cd y_d` at every sample. `data` is `[C][n]`
    /// (coil after coil) for any `n`, k-space or image (the transform is linear and acts
    /// across coils only). Errors: a length that is not a multiple of `coils`, or a
    /// `Whitening` whose fields do not agree (`matrix` not `C x C`).
    pub fn apply(&self, data: &mut [Complex32]) -> Result<()> {
        let c = self.coils;
        check_coils(c)?;
        check_len(
            self.matrix.len(),
            multi_len(c, c, "whitening matrix")?,
            "the whitening matrix",
            "[C][C]",
        )?;
        ensure!(
            data.len().is_multiple_of(c),
            "data has {} values, not a multiple of {c} coils (layout [C][n])",
            data.len()
        );
        let n = data.len() / c;
        let mut column = vec![Complex32::default(); c];
        for j in 0..n {
            for (d, value) in column.iter_mut().enumerate() {
                *value = data[d * n + j];
            }
            for (r, row) in self.matrix.chunks_exact(c).enumerate() {
                let sum: Complex64 = row
                    .iter()
                    .zip(&column)
                    .map(|(&w, &y)| to64(w) * to64(y))
                    .sum();
                data[r * n + j] = to32(sum);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Coil compression
// ---------------------------------------------------------------------------------------

/// SVD coil compression to `V` virtual coils: `y_virtual = A y`, `A` the `V` leading left
/// singular vectors (conjugate-transposed) of the `[C x samples]` k-space matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// Physical coils `C`.
    pub coils: usize,
    /// Virtual coils `V`, `1 <= V <= C`.
    pub virtual_coils: usize,
    /// `A`, `[V][C]` row-major with orthonormal rows (`A A^H = I_V`); row `v` is
    /// `u_v^H`, `u_v` the left singular vector of the `v`-th largest singular value, its
    /// phase fixed so that its largest-magnitude component is real and positive.
    pub matrix: Vec<Complex32>,
    /// All `C` singular values of the data matrix, descending (units of the k-space).
    pub singular_values: Vec<f64>,
    /// `sum_{v<V} s_v^2 / sum_c s_c^2` in `[0, 1]`: the fraction of the sampled k-space
    /// energy that the virtual coils keep.
    pub retained_energy: f64,
}

/// The positions sampled in coil 0 after checking that every coil has the same sampled
/// set (mask non-zero); `masks` is `[C][N]` and already checked for length and finiteness.
fn identical_sampling(masks: &[f32], coils: usize, n: usize) -> Result<Vec<usize>> {
    let first = &masks[..n];
    for c in 1..coils {
        let other = &masks[c * n..(c + 1) * n];
        if let Some(i) = first
            .iter()
            .zip(other)
            .position(|(&a, &b)| (a != 0.0) != (b != 0.0))
        {
            bail!(
                "the masks of coil 0 and coil {c} differ at index {i}; coil compression \
                 needs every coil sampled at the same positions"
            );
        }
    }
    Ok((0..n).filter(|&i| first[i] != 0.0).collect())
}

/// SVD coil compression (Huang et al., MRI 2008; BART `cc -S`).
///
/// The data matrix `K` is `[C x P]`, the k-space of every coil at the `P` positions sampled
/// in all of them (every coil must have the same sampled set, else an error). Its SVD
/// `K = U S V^H` is computed through the Hermitian eigendecomposition of the `C x C` Gram
/// matrix `K K^H = U S^2 U^H` (nalgebra, in `f64`), which costs `O(C^2 P)` instead of an SVD
/// of the wide matrix and gives the same `U` and `S`. `kspace` and `masks` are `[C][N]`.
///
/// Errors: zero coils, wrong lengths, NaN or infinite values, `virtual_coils` outside
/// `1..=coils`, masks that differ between coils, no sampled position, all-zero data.
pub fn coil_compression(
    kspace: &[Complex32],
    masks: &[f32],
    coils: usize,
    shape: Shape,
    virtual_coils: usize,
) -> Result<Compression> {
    check_coils(coils)?;
    let n = shape.len();
    let total = multi_len(coils, n, "k-space")?;
    check_len(kspace.len(), total, "k-space", "[C][n_y][n_x]")?;
    check_len(masks.len(), total, "the masks", "[C][n_y][n_x]")?;
    ensure!(
        (1..=coils).contains(&virtual_coils),
        "virtual coils out of range: {virtual_coils}, must be in 1..={coils}"
    );
    check_finite_complex(kspace, n, "k-space")?;
    check_finite_masks(masks, n)?;
    let positions = identical_sampling(masks, coils, n)?;
    ensure!(
        !positions.is_empty(),
        "the masks sample no k-space position: nothing to compress"
    );

    let mut gram = vec![Complex64::default(); coils * coils];
    for c in 0..coils {
        let kc = &kspace[c * n..(c + 1) * n];
        for d in c..coils {
            let kd = &kspace[d * n..(d + 1) * n];
            let sum: Complex64 = positions
                .iter()
                .map(|&p| to64(kc[p]) * to64(kd[p]).conj())
                .sum();
            if c == d {
                gram[c * coils + c] = Complex64::new(sum.re, 0.0);
            } else {
                gram[c * coils + d] = sum;
                gram[d * coils + c] = sum.conj();
            }
        }
    }
    let (values, vectors) = hermitian_eigen_sorted(&gram, coils);
    let energies: Vec<f64> = values.iter().map(|&v| v.max(0.0)).collect();
    let energy: f64 = energies.iter().sum();
    ensure!(
        energy > 0.0,
        "the k-space is zero at every sampled position: nothing to compress"
    );
    let kept: f64 = energies[..virtual_coils].iter().sum();
    let mut matrix = Vec::with_capacity(virtual_coils * coils);
    for u in &vectors[..virtual_coils] {
        matrix.extend(u.iter().map(|&value| to32(value.conj())));
    }
    Ok(Compression {
        coils,
        virtual_coils,
        matrix,
        singular_values: energies.iter().map(|e| e.sqrt()).collect(),
        retained_energy: (kept / energy).clamp(0.0, 1.0),
    })
}

impl Compression {
    /// Compress `data`, `[C][n]` (k-space or image, any `n`), to `[V][n]`:
    /// `out_v = sum_c A_vc y_c`. Errors: a length that is not a multiple of `coils`, or a
    /// `Compression` whose fields do not agree (`matrix` not `V x C`).
    pub fn apply(&self, data: &[Complex32]) -> Result<Vec<Complex32>> {
        let (c, v) = (self.coils, self.virtual_coils);
        check_coils(c)?;
        ensure!(
            (1..=c).contains(&v),
            "virtual coils out of range: {v}, must be in 1..={c}"
        );
        check_len(
            self.matrix.len(),
            multi_len(v, c, "compression matrix")?,
            "the compression matrix",
            "[V][C]",
        )?;
        ensure!(
            data.len().is_multiple_of(c),
            "data has {} values, not a multiple of {c} coils (layout [C][n])",
            data.len()
        );
        let n = data.len() / c;
        let mut out = vec![Complex32::default(); v * n];
        for (row, target) in self
            .matrix
            .chunks_exact(c)
            .zip(out.chunks_exact_mut(n.max(1)))
        {
            for (&a, source) in row.iter().zip(data.chunks_exact(n.max(1))) {
                for (o, &y) in target.iter_mut().zip(source) {
                    *o += a * y;
                }
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Calibration region
// ---------------------------------------------------------------------------------------

/// The fully sampled k-space centre (ACS) used for the sensitivities: rows `ky` and
/// columns `kx` of the centred k-space grid, sampled in every coil.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalibrationRegion {
    /// Rows (phase encodes), `n_y/2 - s/2 .. n_y/2 - s/2 + s` for side `s`.
    pub ky: Range<usize>,
    /// Columns (readout), `n_x/2 - s/2 .. n_x/2 - s/2 + s` for side `s`.
    pub kx: Range<usize>,
}

/// The centred range of side `side` on an axis of length `n` (DC at `n/2`), the convention
/// of the central-block masks: `n/2 - side/2 .. n/2 - side/2 + side`.
fn centred_range(n: usize, side: usize) -> Range<usize> {
    let start = n / 2 - side / 2;
    start..start + side
}

/// The largest rectangle centred on `(n_y/2, n_x/2)` that is sampled (mask non-zero and
/// finite) in every coil: both sides start at 1 and grow alternately by one line, each
/// side growing symmetrically about the centre (`n/2 - s/2 .. n/2 - s/2 + s`, as the
/// central-block masks), until neither can grow without an unsampled position or beyond
/// `max_side` (or the grid). `masks` is `[C][n_y][n_x]`.
///
/// `None` when the centre is not sampled in every coil, when the region is smaller than
/// [`MIN_CALIBRATION_SIDE`] on a side, and for invalid input (zero coils, a wrong mask
/// length), which has no region.
pub fn calibration_region(
    masks: &[f32],
    coils: usize,
    shape: Shape,
    max_side: usize,
) -> Option<CalibrationRegion> {
    let n = shape.len();
    if coils == 0 || coils.checked_mul(n) != Some(masks.len()) {
        return None;
    }
    let (n_y, n_x) = (shape.n_y(), shape.n_x());
    let sampled = |y: usize, x: usize| {
        (0..coils).all(|c| {
            let m = masks[c * n + y * n_x + x];
            m != 0.0 && m.is_finite()
        })
    };
    let (cy, cx) = (n_y / 2, n_x / 2);
    if max_side == 0 || !sampled(cy, cx) {
        return None;
    }
    let (mut sy, mut sx) = (1usize, 1usize);
    loop {
        let mut grew = false;
        if sy < max_side.min(n_y) {
            let (old, new) = (centred_range(n_y, sy), centred_range(n_y, sy + 1));
            let row = if new.start < old.start {
                new.start
            } else {
                new.end - 1
            };
            if centred_range(n_x, sx).all(|x| sampled(row, x)) {
                sy += 1;
                grew = true;
            }
        }
        if sx < max_side.min(n_x) {
            let (old, new) = (centred_range(n_x, sx), centred_range(n_x, sx + 1));
            let col = if new.start < old.start {
                new.start
            } else {
                new.end - 1
            };
            if centred_range(n_y, sy).all(|y| sampled(y, col)) {
                sx += 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    if sy < MIN_CALIBRATION_SIDE || sx < MIN_CALIBRATION_SIDE {
        return None;
    }
    Some(CalibrationRegion {
        ky: centred_range(n_y, sy),
        kx: centred_range(n_x, sx),
    })
}

// ---------------------------------------------------------------------------------------
// Sensitivities
// ---------------------------------------------------------------------------------------

/// Parameters of [`estimate_sensitivities`]; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensitivityOptions {
    /// Cap on each side of the calibration region, in k-space lines
    /// ([`DEFAULT_CALIBRATION_MAX`]); at least [`MIN_CALIBRATION_SIDE`].
    pub calibration_max: usize,
    /// Side of the square neighbourhood (pixels, odd) over which the coil covariance is
    /// summed ([`DEFAULT_WINDOW`]).
    pub window: usize,
    /// Fraction of the robust maximum of the smoothed low-resolution RSS energy above which
    /// a pixel is object ([`DEFAULT_SUPPORT_THRESHOLD`]), in `[0, 1)`.
    pub support_threshold: f32,
}

impl Default for SensitivityOptions {
    fn default() -> Self {
        Self {
            calibration_max: DEFAULT_CALIBRATION_MAX,
            window: DEFAULT_WINDOW,
            support_threshold: DEFAULT_SUPPORT_THRESHOLD,
        }
    }
}

/// Coil sensitivity maps `S_c` for the multi-coil model `A = M F S_c`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensitivities {
    /// Coils `C`.
    pub coils: usize,
    /// Image grid.
    pub shape: Shape,
    /// `S_c`, `[C][n_y][n_x]` natural (row-major, image-domain) layout, dimensionless:
    /// `sum_c |S_c(r)|^2 = 1` on the support and `S_c(r) = 0` off it.
    pub maps: Vec<Complex32>,
    /// The object, `[n_y][n_x]` (see [`estimate_sensitivities`] for the rule).
    pub support: Vec<bool>,
    /// The calibration region the maps were estimated from.
    pub calibration: CalibrationRegion,
    /// The method, [`WALSH_METHOD`].
    pub method: &'static str,
}

/// `sin^2(pi (i + 1/2) / side)`, `i < side`: a Hann window that is non-zero at both ends.
fn hann(side: usize) -> Vec<f64> {
    (0..side)
        .map(|i| {
            let s = (std::f64::consts::PI * (i as f64 + 0.5) / side as f64).sin();
            s * s
        })
        .collect()
}

/// Box mean over a `(2h+1)^2` window clipped to the grid (running sums along each axis).
fn box_mean(values: &[f64], n_y: usize, n_x: usize, h: usize) -> Vec<f64> {
    let mut rows = vec![0.0; values.len()];
    let mut prefix = vec![0.0; n_x.max(n_y) + 1];
    for y in 0..n_y {
        let row = &values[y * n_x..(y + 1) * n_x];
        for x in 0..n_x {
            prefix[x + 1] = prefix[x] + row[x];
        }
        for x in 0..n_x {
            let (lo, hi) = (x.saturating_sub(h), (x + h + 1).min(n_x));
            rows[y * n_x + x] = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
        }
    }
    let mut out = vec![0.0; values.len()];
    for x in 0..n_x {
        for y in 0..n_y {
            prefix[y + 1] = prefix[y] + rows[y * n_x + x];
        }
        for y in 0..n_y {
            let (lo, hi) = (y.saturating_sub(h), (y + h + 1).min(n_y));
            out[y * n_x + x] = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
        }
    }
    out
}

/// Square dilation by `d` pixels (separable: a pixel is set where any pixel within
/// Chebyshev distance `d` is set).
fn dilate(mask: &[bool], n_y: usize, n_x: usize, d: usize) -> Vec<bool> {
    let mut rows = vec![false; mask.len()];
    let mut prefix = vec![0usize; n_x.max(n_y) + 1];
    for y in 0..n_y {
        for x in 0..n_x {
            prefix[x + 1] = prefix[x] + usize::from(mask[y * n_x + x]);
        }
        for x in 0..n_x {
            let (lo, hi) = (x.saturating_sub(d), (x + d + 1).min(n_x));
            rows[y * n_x + x] = prefix[hi] > prefix[lo];
        }
    }
    let mut out = vec![false; mask.len()];
    for x in 0..n_x {
        for y in 0..n_y {
            prefix[y + 1] = prefix[y] + usize::from(rows[y * n_x + x]);
        }
        for y in 0..n_y {
            let (lo, hi) = (y.saturating_sub(d), (y + d + 1).min(n_y));
            out[y * n_x + x] = prefix[hi] > prefix[lo];
        }
    }
    out
}

/// Fill the holes of `mask`: background not 4-connected to the grid's border becomes set.
fn fill_holes(mask: &[bool], n_y: usize, n_x: usize) -> Vec<bool> {
    let mut outside = vec![false; mask.len()];
    let mut queue = VecDeque::new();
    let visit = |y: usize, x: usize, outside: &mut Vec<bool>, queue: &mut VecDeque<_>| {
        let i = y * n_x + x;
        if !mask[i] && !outside[i] {
            outside[i] = true;
            queue.push_back((y, x));
        }
    };
    for x in 0..n_x {
        visit(0, x, &mut outside, &mut queue);
        visit(n_y - 1, x, &mut outside, &mut queue);
    }
    for y in 0..n_y {
        visit(y, 0, &mut outside, &mut queue);
        visit(y, n_x - 1, &mut outside, &mut queue);
    }
    while let Some((y, x)) = queue.pop_front() {
        if y > 0 {
            visit(y - 1, x, &mut outside, &mut queue);
        }
        if y + 1 < n_y {
            visit(y + 1, x, &mut outside, &mut queue);
        }
        if x > 0 {
            visit(y, x - 1, &mut outside, &mut queue);
        }
        if x + 1 < n_x {
            visit(y, x + 1, &mut outside, &mut queue);
        }
    }
    outside.iter().map(|&o| !o).collect()
}

/// The support rule of [`estimate_sensitivities`] on the pixel-major low-resolution coil
/// images `[N][C]`.
fn object_support(
    images: &[Complex64],
    coils: usize,
    shape: Shape,
    window: usize,
    threshold: f64,
) -> Vec<bool> {
    let (n_y, n_x) = (shape.n_y(), shape.n_x());
    let energy: Vec<f64> = images
        .chunks_exact(coils)
        .map(|pixel| pixel.iter().map(|v| v.norm_sqr()).sum())
        .collect();
    let smoothed = box_mean(&energy, n_y, n_x, window / 2);
    let mut sorted = smoothed.clone();
    let rank = ((sorted.len() - 1) as f64 * ROBUST_MAX_QUANTILE).round() as usize;
    let (_, &mut robust_max, _) = sorted.select_nth_unstable_by(rank, f64::total_cmp);
    let level = threshold * robust_max;
    let object: Vec<bool> = smoothed.iter().map(|&e| e > level && e > 0.0).collect();
    fill_holes(&dilate(&object, n_y, n_x, SUPPORT_DILATION), n_y, n_x)
}

/// Dominant eigenvector of the Hermitian `[c][c]` matrix `r` into `v` (unit norm): power
/// iteration from `seed`, nalgebra's eigendecomposition if it has not converged after
/// [`POWER_ITERATIONS_MAX`] steps or converged to a non-dominant eigenvector (a seed
/// orthogonal to the dominant one). `v` is all zero when `r` is.
fn dominant_eigenvector(
    r: &[Complex64],
    c: usize,
    seed: &[Complex64],
    v: &mut [Complex64],
    product: &mut [Complex64],
) {
    v.copy_from_slice(seed);
    let max_diagonal = (0..c).map(|i| r[i * c + i].re).fold(0.0, f64::max);
    for _ in 0..POWER_ITERATIONS_MAX {
        for (out, row) in product.iter_mut().zip(r.chunks_exact(c)) {
            *out = row.iter().zip(v.iter()).map(|(&a, &b)| a * b).sum();
        }
        let lambda: f64 = v
            .iter()
            .zip(product.iter())
            .map(|(a, b)| (a.conj() * b).re)
            .sum();
        let residual: f64 = v
            .iter()
            .zip(product.iter())
            .map(|(&a, &b)| (b - a * lambda).norm_sqr())
            .sum::<f64>()
            .sqrt();
        let norm: f64 = product.iter().map(|b| b.norm_sqr()).sum::<f64>().sqrt();
        if norm.is_nan() || norm <= 0.0 {
            v.fill(Complex64::default());
            return;
        }
        for (a, &b) in v.iter_mut().zip(product.iter()) {
            *a = b / norm;
        }
        // Converged to an eigenpair; it is the dominant one only if lambda is at least every
        // diagonal entry (the Rayleigh quotients of the unit vectors), else fall back.
        if residual <= POWER_TOLERANCE * lambda.abs() {
            if lambda >= max_diagonal * (1.0 - 1e-9) {
                return;
            }
            break;
        }
    }
    let (_, vectors) = hermitian_eigen_sorted(r, c);
    if let Some(first) = vectors.first() {
        v.copy_from_slice(first);
    }
}

/// The low-resolution coil images, pixel-major `[N][C]`, and the pairs `(c, d)`, `c <= d`,
/// of the covariance entries that the Walsh window sums.
struct CoilImages<'a> {
    images: &'a [Complex64],
    coils: usize,
    pairs: &'a [(usize, usize)],
    n_x: usize,
    /// Half the window side.
    h: usize,
}

impl CoilImages<'_> {
    /// Horizontal box sums (window clipped at the border) of `I_c conj(I_d)` over row `y`,
    /// into `out`, `[n_x][pairs]`; `prefix` holds `(n_x + 1) pairs` running sums.
    fn row_pair_sums(&self, y: usize, prefix: &mut [Complex64], out: &mut [Complex64]) {
        let (p, n_x, coils) = (self.pairs.len(), self.n_x, self.coils);
        let row = &self.images[y * n_x * coils..(y + 1) * n_x * coils];
        prefix[..p].fill(Complex64::default());
        for x in 0..n_x {
            let pixel = &row[x * coils..(x + 1) * coils];
            for (k, &(c, d)) in self.pairs.iter().enumerate() {
                prefix[(x + 1) * p + k] = prefix[x * p + k] + pixel[c] * pixel[d].conj();
            }
        }
        for x in 0..n_x {
            let (lo, hi) = (x.saturating_sub(self.h), (x + self.h + 1).min(n_x));
            for k in 0..p {
                out[x * p + k] = prefix[hi * p + k] - prefix[lo * p + k];
            }
        }
    }
}

/// Coil sensitivities from the fully sampled k-space centre: Walsh et al., "Adaptive
/// reconstruction of phased array MR imagery", MRM 2000, on low-resolution coil images.
///
/// 1. The calibration region is [`calibration_region`] with `options.calibration_max`
///    (an error when there is none).
/// 2. Low-resolution coil images `I_c = F^H (w (.) y_c)`, `w` the separable Hann window
///    `sin^2(pi (i + 1/2) / s)` over the region and zero elsewhere (only samples inside the
///    region are used, the rest of the k-space is ignored).
/// 3. Support: `e(r) = sum_c |I_c(r)|^2` averaged over the `window x window` neighbourhood
///    (clipped at the border), object where `e > support_threshold * q`, `q` the
///    [`ROBUST_MAX_QUANTILE`] quantile of `e` over the grid; then dilated by
///    [`SUPPORT_DILATION`] pixels (square) and holes (background not connected to the
///    border) filled.
/// 4. On the support, `R(r) = sum_{r' in window} I(r') I(r')^H` (`C x C`, box sums with
///    running sums, the window clipped at the border) and `S(r)` its dominant eigenvector
///    (unit norm, so `sum_c |S_c|^2 = 1`): power iteration seeded with the global reference
///    `u`, the dominant eigenvector of the whole calibration data's covariance
///    `sum_k (w y_k)(w y_k)^H` (nalgebra), falling back to nalgebra's Hermitian
///    eigendecomposition when it does not converge ([`POWER_ITERATIONS_MAX`],
///    [`POWER_TOLERANCE`]). Each `S(r)` is rotated so that `u^H S(r)` is real and
///    positive: the common phase of the coils follows `u`, and the maps are smooth.
/// 5. `S = 0` off the support.
///
/// `kspace` and `masks` are `[C][n_y][n_x]`, centred k-space. The maps carry the relative
/// phase of the coils; the object's own phase stays in the image `x` of `A x`. Errors: zero
/// coils, wrong lengths, NaN or infinite k-space or masks, an even or zero `window`, a
/// `calibration_max` below [`MIN_CALIBRATION_SIDE`], a `support_threshold` outside
/// `[0, 1)`, no calibration region, and calibration data that are all zero.
pub fn estimate_sensitivities(
    kspace: &[Complex32],
    masks: &[f32],
    coils: usize,
    shape: Shape,
    options: &SensitivityOptions,
) -> Result<Sensitivities> {
    check_coils(coils)?;
    ensure!(
        options.window % 2 == 1,
        "the covariance window must be an odd number of pixels, got {}",
        options.window
    );
    ensure!(
        options.calibration_max >= MIN_CALIBRATION_SIDE,
        "calibration_max {} is below the smallest calibration side {MIN_CALIBRATION_SIDE}",
        options.calibration_max
    );
    ensure!(
        options.support_threshold.is_finite() && (0.0..1.0).contains(&options.support_threshold),
        "support_threshold must be in [0, 1), got {}",
        options.support_threshold
    );
    let n = shape.len();
    let (n_y, n_x) = (shape.n_y(), shape.n_x());
    let total = multi_len(coils, n, "k-space")?;
    check_len(kspace.len(), total, "k-space", "[C][n_y][n_x]")?;
    check_len(masks.len(), total, "the masks", "[C][n_y][n_x]")?;
    check_finite_complex(kspace, n, "k-space")?;
    check_finite_masks(masks, n)?;
    let region =
        calibration_region(masks, coils, shape, options.calibration_max).ok_or_else(|| {
            anyhow!(
                "no calibration region: the k-space centre is not sampled in every coil over at \
             least {MIN_CALIBRATION_SIDE}x{MIN_CALIBRATION_SIDE} lines"
            )
        })?;

    // Windowed calibration samples, and the global reference from their covariance.
    let (wy, wx) = (hann(region.ky.len()), hann(region.kx.len()));
    let weight = |ky: usize, kx: usize| wy[ky - region.ky.start] * wx[kx - region.kx.start];
    let mut global = vec![Complex64::default(); coils * coils];
    let mut sample = vec![Complex64::default(); coils];
    for ky in region.ky.clone() {
        for kx in region.kx.clone() {
            let w = weight(ky, kx);
            for (c, s) in sample.iter_mut().enumerate() {
                *s = to64(kspace[c * n + ky * n_x + kx]) * w;
            }
            for c in 0..coils {
                for d in 0..coils {
                    global[c * coils + d] += sample[c] * sample[d].conj();
                }
            }
        }
    }
    let (values, vectors) = hermitian_eigen_sorted(&global, coils);
    ensure!(
        values.first().is_some_and(|&v| v > 0.0),
        "the calibration data are zero in every coil"
    );
    let reference = vectors
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no eigenvector of the calibration covariance"))?;

    // Low-resolution coil images, pixel-major [N][C].
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let fourier = CentredFourier { fft: &fft };
    let mut scratch = vec![Complex64::default(); LinearOperator::<f64>::scratch_len(&fourier)];
    let mut padded = vec![Complex64::default(); n];
    let mut image = vec![Complex64::default(); n];
    let mut images = vec![Complex64::default(); total];
    for c in 0..coils {
        padded.fill(Complex64::default());
        for ky in region.ky.clone() {
            for kx in region.kx.clone() {
                let i = ky * n_x + kx;
                padded[i] = to64(kspace[c * n + i]) * weight(ky, kx);
            }
        }
        fourier.adjoint(&padded, &mut image, &mut scratch);
        for (p, &value) in image.iter().enumerate() {
            images[p * coils + c] = value;
        }
    }

    let h = options.window / 2;
    let support = object_support(
        &images,
        coils,
        shape,
        options.window,
        f64::from(options.support_threshold),
    );

    // Walsh: box-summed covariance, rows streamed through a ring of 2h+1 row sums.
    let pairs: Vec<(usize, usize)> = (0..coils)
        .flat_map(|c| (c..coils).map(move |d| (c, d)))
        .collect();
    let p = pairs.len();
    let window_rows = (2 * h + 1).min(n_y);
    let mut ring = vec![Complex64::default(); window_rows * n_x * p];
    let mut prefix = vec![Complex64::default(); (n_x + 1) * p];
    let mut vertical = vec![Complex64::default(); n_x * p];
    let mut maps = vec![Complex32::default(); total];
    let mut covariance = vec![Complex64::default(); coils * coils];
    let mut vector = vec![Complex64::default(); coils];
    let mut product = vec![Complex64::default(); coils];
    let slot_len = n_x * p;
    let rows = CoilImages {
        images: &images,
        coils,
        pairs: &pairs,
        n_x,
        h,
    };
    let mut add_row = |row: usize, ring: &mut [Complex64], vertical: &mut [Complex64]| {
        let slot = &mut ring[(row % window_rows) * slot_len..][..slot_len];
        rows.row_pair_sums(row, &mut prefix, slot);
        for (acc, &value) in vertical.iter_mut().zip(slot.iter()) {
            *acc += value;
        }
    };
    for row in 0..=h.min(n_y - 1) {
        add_row(row, &mut ring, &mut vertical);
    }
    for y in 0..n_y {
        if y > 0 {
            // Window moves from [y-1-h, y-1+h] to [y-h, y+h].
            if let Some(leaving) = (y - 1).checked_sub(h) {
                let slot = &ring[(leaving % window_rows) * slot_len..][..slot_len];
                for (acc, &value) in vertical.iter_mut().zip(slot) {
                    *acc -= value;
                }
            }
            if y + h < n_y {
                add_row(y + h, &mut ring, &mut vertical);
            }
        }
        for x in 0..n_x {
            let pixel = y * n_x + x;
            if !support[pixel] {
                continue;
            }
            let sums = &vertical[x * p..(x + 1) * p];
            for (k, &(c, d)) in pairs.iter().enumerate() {
                covariance[c * coils + d] = sums[k];
                covariance[d * coils + c] = sums[k].conj();
            }
            dominant_eigenvector(&covariance, coils, &reference, &mut vector, &mut product);
            let mut norm: f64 = vector.iter().map(|v| v.norm_sqr()).sum::<f64>().sqrt();
            if norm.is_nan() || norm <= 0.0 {
                // A pixel whose neighbourhood carries no signal: the global profile.
                vector.copy_from_slice(&reference);
                norm = 1.0;
            }
            let overlap: Complex64 = reference
                .iter()
                .zip(&vector)
                .map(|(u, v)| u.conj() * v)
                .sum();
            let rotation = if overlap.norm() > 0.0 {
                overlap.conj() / overlap.norm()
            } else {
                Complex64::new(1.0, 0.0)
            };
            for (c, &v) in vector.iter().enumerate() {
                maps[c * n + pixel] = to32(v * rotation / norm);
            }
        }
    }

    Ok(Sensitivities {
        coils,
        shape,
        maps,
        support,
        calibration: region,
        method: WALSH_METHOD,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_y: usize, n_x: usize) -> Shape {
        Shape::new(n_y, n_x).unwrap()
    }

    #[test]
    fn centred_ranges_follow_the_mask_convention() {
        assert_eq!(centred_range(256, 128), 64..192);
        assert_eq!(centred_range(256, 1), 128..129);
        assert_eq!(centred_range(256, 3), 127..130);
        assert_eq!(centred_range(256, 256), 0..256);
        assert_eq!(centred_range(32, 7), 13..20);
    }

    #[test]
    fn calibration_region_grows_to_the_sampled_rectangle() {
        let s = shape(64, 64);
        let n = s.len();
        // Rows 26..38 (12) x columns 24..40 (16) sampled in both coils, plus stray samples.
        let mut mask = vec![0.0f32; n];
        for y in 26..38 {
            mask[y * 64 + 24..y * 64 + 40].fill(1.0);
        }
        mask[10 * 64 + 10] = 1.0;
        let mut masks = mask.repeat(2);
        let region = calibration_region(&masks, 2, s, 64).unwrap();
        assert_eq!((region.ky.clone(), region.kx.clone()), (26..38, 24..40));
        // Capped.
        let region = calibration_region(&masks, 2, s, 10).unwrap();
        assert_eq!((region.ky, region.kx), (27..37, 27..37));
        // Coil 1 lacks column 39: growing symmetrically, the kx side stops at 14 (25..39).
        for y in 0..64 {
            masks[n + y * 64 + 39] = 0.0;
        }
        let region = calibration_region(&masks, 2, s, 64).unwrap();
        assert_eq!((region.ky, region.kx), (26..38, 25..39));
        // Invalid input has no region.
        assert!(calibration_region(&masks, 0, s, 64).is_none());
        assert!(calibration_region(&masks[1..], 2, s, 64).is_none());
        assert!(calibration_region(&masks, 2, s, 0).is_none());
        assert!(calibration_region(&masks, 2, s, MIN_CALIBRATION_SIDE - 1).is_none());
        // A NaN at the centre counts as not sampled.
        masks[32 * 64 + 32] = f32::NAN;
        assert!(calibration_region(&masks, 2, s, 64).is_none());
    }

    #[test]
    fn morphology_oracles() {
        // 6x6 ring with a hole; fill then dilate by 1.
        let (n_y, n_x) = (8, 8);
        let mut ring = vec![false; 64];
        for y in 2..6 {
            for x in 2..6 {
                ring[y * 8 + x] = !(y == 3 || y == 4) || !(x == 3 || x == 4);
            }
        }
        let filled = fill_holes(&ring, n_y, n_x);
        for y in 0..8 {
            for x in 0..8 {
                assert_eq!(
                    filled[y * 8 + x],
                    (2..6).contains(&y) && (2..6).contains(&x)
                );
            }
        }
        // A gap to the border is not a hole.
        let mut open = ring.clone();
        open[3 * 8 + 2] = false;
        open[3 * 8 + 3] = false;
        assert_eq!(fill_holes(&open, n_y, n_x), open);
        let dilated = dilate(&filled, n_y, n_x, 1);
        for y in 0..8 {
            for x in 0..8 {
                assert_eq!(
                    dilated[y * 8 + x],
                    (1..7).contains(&y) && (1..7).contains(&x)
                );
            }
        }
        // Box mean against a naive clipped window.
        let values: Vec<f64> = (0..64).map(|i| ((i * 37) % 11) as f64).collect();
        let fast = box_mean(&values, 8, 8, 2);
        for y in 0..8usize {
            for x in 0..8usize {
                let mut sum = 0.0;
                let mut count = 0.0;
                for yy in y.saturating_sub(2)..(y + 3).min(8) {
                    for xx in x.saturating_sub(2)..(x + 3).min(8) {
                        sum += values[yy * 8 + xx];
                        count += 1.0;
                    }
                }
                assert!((fast[y * 8 + x] - sum / count).abs() < 1e-12);
            }
        }
    }

    /// Hermitian `Q diag(lambda) Q^H` with `Q` from the eigenvectors of a fixed matrix.
    fn hermitian_with(lambda: &[f64]) -> (Vec<Complex64>, Vec<Vec<Complex64>>) {
        let c = lambda.len();
        let seed: Vec<Complex64> = (0..c * c)
            .map(|i| {
                Complex64::new(
                    ((i * 7 + 1) % 13) as f64 - 6.0,
                    ((i * 5 + 2) % 11) as f64 - 5.0,
                )
            })
            .collect();
        let mut h = vec![Complex64::default(); c * c];
        for r in 0..c {
            for k in 0..c {
                h[r * c + k] = seed[r * c + k] + seed[k * c + r].conj();
            }
        }
        let (_, q) = hermitian_eigen_sorted(&h, c);
        let mut m = vec![Complex64::default(); c * c];
        for r in 0..c {
            for k in 0..c {
                m[r * c + k] = (0..c).map(|i| q[i][r] * lambda[i] * q[i][k].conj()).sum();
            }
        }
        (m, q)
    }

    #[test]
    fn dominant_eigenvector_matches_the_eigendecomposition() {
        let c = 5;
        let (m, q) = hermitian_with(&[10.0, 6.0, 3.0, 1.0, 0.5]);
        let mut v = vec![Complex64::default(); c];
        let mut product = vec![Complex64::default(); c];
        let seed = vec![Complex64::new(1.0 / (c as f64).sqrt(), 0.0); c];
        dominant_eigenvector(&m, c, &seed, &mut v, &mut product);
        let overlap: Complex64 = q[0].iter().zip(&v).map(|(a, b)| a.conj() * b).sum();
        assert!((overlap.norm() - 1.0).abs() < 1e-6, "{overlap}");
        // A seed that is exactly a non-dominant eigenvector converges to it at once; the
        // dominance check must catch that and fall back.
        dominant_eigenvector(&m, c, &q[2], &mut v, &mut product);
        let overlap: Complex64 = q[0].iter().zip(&v).map(|(a, b)| a.conj() * b).sum();
        assert!((overlap.norm() - 1.0).abs() < 1e-6, "{overlap}");
        // Zero matrix: zero vector.
        dominant_eigenvector(
            &vec![Complex64::default(); c * c],
            c,
            &seed,
            &mut v,
            &mut product,
        );
        assert!(v.iter().all(|z| *z == Complex64::default()));
    }

    #[test]
    fn whitening_fields_must_agree() {
        let w = Whitening {
            coils: 2,
            covariance: vec![Complex64::new(1.0, 0.0); 4],
            matrix: vec![Complex32::new(1.0, 0.0); 3],
        };
        assert!(w.apply(&mut [Complex32::default(); 4]).is_err());
        let w = Whitening {
            coils: 0,
            covariance: vec![],
            matrix: vec![],
        };
        assert!(w.apply(&mut []).is_err());
        let cc = Compression {
            coils: 2,
            virtual_coils: 3,
            matrix: vec![Complex32::default(); 6],
            singular_values: vec![1.0, 0.0],
            retained_energy: 1.0,
        };
        assert!(cc.apply(&[Complex32::default(); 4]).is_err());
    }

    /// Two coils with maps `a(x)` and `b(x)` varying along x on a uniform square object:
    /// the estimate is (up to one global phase per pixel) the normalised `(a, b)`.
    #[test]
    fn two_coil_square_phantom() {
        let s = shape(64, 64);
        let n = s.len();
        let fft = Fft2::new(RustFft::<f64>::new(s));
        let op = CentredFourier { fft: &fft };
        let mut scratch = vec![Complex64::default(); LinearOperator::<f64>::scratch_len(&op)];
        let truth = |c: usize, x: usize| {
            let t = x as f64 / 63.0;
            let (a, b) = (
                Complex64::new(1.0 + t, 0.0),
                Complex64::from_polar(2.0 - t, 0.5),
            );
            let norm = (a.norm_sqr() + b.norm_sqr()).sqrt();
            if c == 0 {
                a / norm
            } else {
                b / norm
            }
        };
        let mut kspace = Vec::new();
        let mut image = vec![Complex64::default(); n];
        let mut k = vec![Complex64::default(); n];
        for c in 0..2 {
            for y in 0..64 {
                for x in 0..64 {
                    let inside = (16..48).contains(&y) && (16..48).contains(&x);
                    image[y * 64 + x] = if inside {
                        truth(c, x)
                    } else {
                        Complex64::default()
                    };
                }
            }
            op.apply(&image, &mut k, &mut scratch);
            kspace.extend(k.iter().map(|&v| to32(v)));
        }
        let masks = vec![1.0f32; 2 * n];
        let est =
            estimate_sensitivities(&kspace, &masks, 2, s, &SensitivityOptions::default()).unwrap();
        assert_eq!(est.method, WALSH_METHOD);
        assert_eq!(est.calibration.ky, 16..48);
        let mut worst = 1.0f64;
        for y in 18..46 {
            for x in 18..46 {
                let p = y * 64 + x;
                assert!(est.support[p]);
                let e = [to64(est.maps[p]), to64(est.maps[n + p])];
                let inner = e[0] * truth(0, x).conj() + e[1] * truth(1, x).conj();
                worst = worst.min(inner.norm());
                assert!(((e[0].norm_sqr() + e[1].norm_sqr()) - 1.0).abs() < 1e-5);
            }
        }
        assert!(worst > 0.995, "worst correlation {worst}");
        // The corners of the grid are background.
        assert!(!est.support[0] && !est.support[n - 1]);
    }
}
