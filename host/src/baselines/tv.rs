//! Total-variation baseline: Chambolle–Pock on the core's operators.
//!
//! Problem (in the *scaled* units of DESIGN §3.6/§3.7, see below):
//!
//! ```text
//!     x* = argmin_x  1/2 || M F x - y ||_2^2  +  lambda TV(x),     x complex [n_y][n_x]
//!     TV(x) = sum_n sqrt(|(D_y x)_n|^2 + |(D_x x)_n|^2)            (isotropic)
//! ```
//!
//! with `F` the centred unitary DFT of DESIGN §3.2 ([`CentredFourier`]), `M` the 0/1 mask and
//! `D_y`, `D_x` **forward differences with circular (periodic) boundary** — the same
//! differences as the low-pass split of DESIGN §3.3/§3.7 and as BART's `T` regulariser, so
//! a constant image has zero TV and `∇^H ∇` is diagonal in Fourier space with
//! `||∇||^2 = max (4 - 2cos - 2cos) = 8` (reached at the Nyquist corner for even sides).
//!
//! Solver (Chambolle & Pock 2011, Algorithm 1, `theta = 1`), `K = ∇`, `G(x) = 1/2||MFx - y||^2`,
//! `H(q) = lambda sum_n |q_n|` (so `H*` is the indicator of `{|p_n| <= lambda}` per pixel):
//!
//! ```text
//!     x^0 = F^H y,  xbar^0 = x^0,  p^0 = 0
//!     p^{k+1}    = proj_lambda(p^k + sigma ∇ xbar^k)        proj: p_n <- p_n min(1, lambda/|p_n|)
//!     x^{k+1}    = prox_{tau G}(x^k - tau ∇^H p^{k+1})
//!     xbar^{k+1} = 2 x^{k+1} - x^k
//! ```
//!
//! The data prox is diagonal in k-space because `F` is unitary: with `u = F x`,
//! `argmin_x 1/2||x - v||^2 + tau/2||MFx - y||^2` separates per frequency into
//! `argmin_u 1/2|u - (Fv)_w|^2 + tau/2 M_w |u - y_w|^2`, so
//! `prox_{tau G}(v) = F^H((F v + tau M y) / (1 + tau M))` (`y` is already masked).
//! Step sizes: `tau = sigma = sqrt(STEP_SAFETY / GRADIENT_NORM_SQUARED_BOUND)`, so
//! `tau sigma ||∇||^2 <= STEP_SAFETY < 1` (the convergence condition).
//!
//! Scaling (DESIGN §3.6, §3.7 steps 1–2): `y <- M (.) y`, `c = 1 / p99(|F^H y|)`
//! ([`percentile`]), solve for `c y`, return `x / c`. So `lambda` is in the units of the
//! scaled problem and means the same on every slice; the objective values reported by
//! [`tv_reconstruct_traced`] are those of the scaled problem.

use super::{core_shape, masked_data, to_array};
use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::recon::percentile;
use sparsemap_core::Shape;

/// Upper bound of `||∇||^2` for 2-D forward differences (circular boundary): the symbol of
/// `∇^H ∇` is `4 - 2cos(2 pi u/N_y) - 2cos(2 pi v/N_x) <= 8`.
pub const GRADIENT_NORM_SQUARED_BOUND: f32 = 8.0;

/// `tau sigma ||∇||^2` as a fraction of the Chambolle–Pock limit 1.
pub const STEP_SAFETY: f32 = 0.99;

/// Percentile of `|F^H y|` used for scaling (DESIGN §3.6: the 99th).
pub const SCALE_PERCENTILE: f64 = 0.99;

/// The 2-D forward-difference gradient with circular boundary, `∇: C^N -> C^{2N}`:
/// `(∇x)[0..N] = D_y x` with `(D_y x)[i][j] = x[(i+1) mod n_y][j] - x[i][j]` and
/// `(∇x)[N..2N] = D_x x` with `(D_x x)[i][j] = x[i][(j+1) mod n_x] - x[i][j]`; row-major.
/// The adjoint is minus the (backward-difference) divergence:
/// `(∇^H p)[i][j] = p_y[i-1][j] - p_y[i][j] + p_x[i][j-1] - p_x[i][j]` (indices mod n).
#[derive(Debug, Clone, Copy)]
pub struct Gradient {
    pub n_y: usize,
    pub n_x: usize,
}

impl Gradient {
    fn len(&self) -> usize {
        self.n_y * self.n_x
    }
}

impl LinearOperator<f32> for Gradient {
    fn domain_len(&self) -> usize {
        self.len()
    }
    fn range_len(&self) -> usize {
        2 * self.len()
    }
    /// `y += ∇ x`.
    fn apply_block_add(
        &self,
        x: &[Complex32],
        _index: usize,
        y: &mut [Complex32],
        _scratch: &mut [Complex32],
    ) {
        let (n_y, n_x, n) = (self.n_y, self.n_x, self.len());
        assert_eq!(x.len(), n);
        assert_eq!(y.len(), 2 * n);
        let (dy, dx) = y.split_at_mut(n);
        for i in 0..n_y {
            let below = ((i + 1) % n_y) * n_x;
            for j in 0..n_x {
                let here = i * n_x + j;
                let v = x[here];
                dy[here] += x[below + j] - v;
                dx[here] += x[i * n_x + (j + 1) % n_x] - v;
            }
        }
    }
    /// `out = ∇^H y = -div y`.
    fn adjoint_block(
        &self,
        y: &[Complex32],
        _index: usize,
        out: &mut [Complex32],
        _scratch: &mut [Complex32],
    ) {
        let (n_y, n_x, n) = (self.n_y, self.n_x, self.len());
        assert_eq!(y.len(), 2 * n);
        assert_eq!(out.len(), n);
        let (dy, dx) = y.split_at(n);
        for i in 0..n_y {
            let above = ((i + n_y - 1) % n_y) * n_x;
            for j in 0..n_x {
                let here = i * n_x + j;
                let left = i * n_x + (j + n_x - 1) % n_x;
                out[here] = dy[above + j] - dy[here] + dx[left] - dx[here];
            }
        }
    }
}

/// Result of [`tv_reconstruct_traced`].
#[derive(Debug, Clone)]
pub struct TvOutput {
    /// The reconstruction `x / c`, on the scale of `F^H y`.
    pub image: Array2<Complex32>,
    /// The scale `c = 1 / p99(|F^H M y|)` that was applied to the data.
    pub scale: f32,
    /// Objective of the scaled problem, `1/2||MFx - cy||^2 + lambda TV(x)`, at `x^0 = c F^H y`
    /// (index 0) and after each iteration `k` (index `k`); empty unless traced.
    pub objective: Vec<f64>,
}

/// Isotropic-TV reconstruction (module docs): `iterations` Chambolle–Pock steps for
/// `min_x 1/2||MFx - c y||^2 + lambda TV(x)`, returning `x / c` (`[n_y][n_x]`, the scale of
/// `F^H y`). `lambda >= 0` is in the scaled units of DESIGN §3.6.
///
/// Errors: shapes that differ or are not powers of two in 4..=512, non-finite k-space,
/// negative or non-finite `lambda`, or no signal under the mask (`p99 = 0`).
pub fn tv_reconstruct(
    kspace: ArrayView2<'_, Complex32>,
    mask: ArrayView2<'_, bool>,
    lambda: f32,
    iterations: usize,
) -> Result<Array2<Complex32>> {
    Ok(solve(kspace, mask, lambda, iterations, false)?.image)
}

/// [`tv_reconstruct`] that also records the (scaled) objective after every iteration (one
/// extra FFT per iteration).
pub fn tv_reconstruct_traced(
    kspace: ArrayView2<'_, Complex32>,
    mask: ArrayView2<'_, bool>,
    lambda: f32,
    iterations: usize,
) -> Result<TvOutput> {
    solve(kspace, mask, lambda, iterations, true)
}

/// Isotropic TV of `image` (row-major `[n_y][n_x]`), circular forward differences, as in
/// the module docs; accumulated in `f64`.
pub fn total_variation(image: ArrayView2<'_, Complex32>) -> f64 {
    let (n_y, n_x) = image.dim();
    let grad = Gradient { n_y, n_x };
    let x: Vec<Complex32> = image.iter().copied().collect();
    let mut g = vec![Complex32::default(); 2 * x.len()];
    grad.apply(&x, &mut g, &mut []);
    tv_of_gradient(&g)
}

fn tv_of_gradient(g: &[Complex32]) -> f64 {
    let (dy, dx) = g.split_at(g.len() / 2);
    dy.iter()
        .zip(dx)
        .map(|(a, b)| (a.norm_sqr() as f64 + b.norm_sqr() as f64).sqrt())
        .sum()
}

/// The scale of DESIGN §3.6 for masked data `y`: `1 / p99(|F^H y|)`, and `F^H y` itself.
fn scale_of(
    op: &CentredFourier<'_, RustFft<f32>>,
    y: &[Complex32],
    scratch: &mut [Complex32],
) -> Result<(f32, Vec<Complex32>)> {
    let mut x0 = vec![Complex32::default(); y.len()];
    op.adjoint(y, &mut x0, scratch);
    let mut magnitudes: Vec<f32> = x0.iter().map(|v| v.norm()).collect();
    let p = percentile(&mut magnitudes, SCALE_PERCENTILE);
    match p {
        Some(p) if p > 0.0 && p.is_finite() => Ok((1.0 / p, x0)),
        _ => bail!(
            "cannot scale: the 99th percentile of |F^H y| is {p:?} (no signal under the mask?)"
        ),
    }
}

fn solve(
    kspace: ArrayView2<'_, Complex32>,
    mask: ArrayView2<'_, bool>,
    lambda: f32,
    iterations: usize,
    trace: bool,
) -> Result<TvOutput> {
    if !(lambda >= 0.0 && lambda.is_finite()) {
        bail!("TV lambda must be finite and >= 0, got {lambda}");
    }
    let shape: Shape = core_shape(kspace.shape())?;
    let (mut y, weights) = masked_data(kspace, mask)?;
    let n = shape.len();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let fourier = CentredFourier { fft: &fft };
    let grad = Gradient {
        n_y: shape.n_y(),
        n_x: shape.n_x(),
    };
    let mut scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&fourier)];

    // Scale (DESIGN §3.6): y <- c y, x0 = c F^H y.
    let (c, mut x) = scale_of(&fourier, &y, &mut scratch)?;
    y.iter_mut().for_each(|v| *v *= c);
    x.iter_mut().for_each(|v| *v *= c);

    let step = (STEP_SAFETY / GRADIENT_NORM_SQUARED_BOUND).sqrt();
    let (tau, sigma) = (step, step);
    let mut x_bar = x.clone();
    let mut x_new = vec![Complex32::default(); n];
    let mut p = vec![Complex32::default(); 2 * n];
    let mut grad_buf = vec![Complex32::default(); 2 * n];
    let mut div = vec![Complex32::default(); n];
    let mut spectrum = vec![Complex32::default(); n];

    let mut objective = Vec::new();
    let mut record = |x: &[Complex32], grad_buf: &mut [Complex32], scratch: &mut [Complex32]| {
        if trace {
            objective.push(objective_of(
                &fourier, &grad, &weights, &y, lambda, x, grad_buf, scratch,
            ));
        }
    };
    record(&x, &mut grad_buf, &mut scratch);

    for _ in 0..iterations {
        // Dual step: p <- proj_lambda(p + sigma ∇ xbar).
        grad.apply(&x_bar, &mut grad_buf, &mut []);
        let (py, px) = p.split_at_mut(n);
        let (gy, gx) = grad_buf.split_at(n);
        for (((a, b), &ga), &gb) in py.iter_mut().zip(px.iter_mut()).zip(gy).zip(gx) {
            let (u, v) = (*a + ga * sigma, *b + gb * sigma);
            let norm = (u.norm_sqr() + v.norm_sqr()).sqrt();
            let shrink = if norm > lambda { lambda / norm } else { 1.0 };
            *a = u * shrink;
            *b = v * shrink;
        }
        // Primal step: x_new = prox_{tau G}(x - tau ∇^H p).
        grad.adjoint(&p, &mut div, &mut []);
        for (d, &xi) in div.iter_mut().zip(&x) {
            *d = xi - *d * tau;
        }
        fourier.apply(&div, &mut spectrum, &mut scratch);
        for ((s, &yi), &m) in spectrum.iter_mut().zip(&y).zip(&weights) {
            *s = (*s + yi * tau) / (1.0 + tau * m);
        }
        fourier.adjoint(&spectrum, &mut x_new, &mut scratch);
        // Extrapolation: xbar = 2 x_new - x; x = x_new.
        for ((xb, xi), &xn) in x_bar.iter_mut().zip(x.iter_mut()).zip(&x_new) {
            *xb = xn * 2.0 - *xi;
            *xi = xn;
        }
        record(&x, &mut grad_buf, &mut scratch);
    }

    let inverse = 1.0 / c;
    x.iter_mut().for_each(|v| *v *= inverse);
    Ok(TvOutput {
        image: to_array(shape, x),
        scale: c,
        objective,
    })
}

/// `1/2||M F x - y||^2 + lambda TV(x)` in `f64` (scaled units; `y` already masked).
#[allow(clippy::too_many_arguments)]
fn objective_of(
    fourier: &CentredFourier<'_, RustFft<f32>>,
    grad: &Gradient,
    weights: &[f32],
    y: &[Complex32],
    lambda: f32,
    x: &[Complex32],
    grad_buf: &mut [Complex32],
    scratch: &mut [Complex32],
) -> f64 {
    let mut fx = vec![Complex32::default(); x.len()];
    fourier.apply(x, &mut fx, scratch);
    let data: f64 = fx
        .iter()
        .zip(y)
        .zip(weights)
        .map(|((f, yi), &m)| (f * m - yi).norm_sqr() as f64)
        .sum();
    grad.apply(x, grad_buf, &mut []);
    0.5 * data + lambda as f64 * tv_of_gradient(grad_buf)
}
