//! The whole reconstruction of DESIGN §3.7: scale, split off the low-pass part, solve the
//! convolutional sparse coding problem with FISTA, synthesise, unscale.

use crate::dictionary::{DictionaryPlan, MaskedSynthesis};
use crate::error::{Error, Result};
use crate::fft::{ActiveRows, FftBackend};
use crate::fista::{
    apply_with, chunk_count, fista_with, Executor, FistaBuffers, Lambda, Serial, WorkerBuffers,
};
use crate::ops::{checkerboard, LinearOperator};
use crate::real::Real;
use crate::shape::{check_capacity, check_len, Shape};
use num_complex::Complex;

/// Default number of FISTA iterations (the predecessor paper unrolls 64).
pub const ITERATIONS: usize = 64;
/// Default weight `a` of the low-pass split `x_low = (I + a grad^H grad)^{-1} x0`
/// (DESIGN §3.7). Chosen on the validation slice of the bundled example (README).
pub const LOWPASS_WEIGHT: f64 = 1.0;
/// Percentile of the zero-filled magnitude that is scaled to one (DESIGN §3.6).
pub const SCALE_PERCENTILE: f64 = 0.99;
/// Default threshold `kappa` of the background gate (DESIGN §3.7 item 7), in units of the
/// low-pass part's noise variance. On the validation splits (results/sources/
/// gate_kappa_validation.txt) PSNR rises slowly with `kappa` (16 is 0.05–0.3 dB above 8):
/// 8 is the milder choice, which keeps fainter structure.
pub const BACKGROUND_GATE: f64 = 8.0;
/// Width (standard deviation, pixels) of the Gaussian that smooths `|x_low|²` for the gate.
pub const GATE_SMOOTHING: f64 = 2.0;
/// The noise level is estimated from this outermost fraction of the sampled positions.
pub const NOISE_OUTER_FRACTION: f64 = 0.1;

/// Settings of one reconstruction; `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconConfig<T> {
    /// Fixed FISTA iteration count `T` (no data-dependent stopping: latency is deterministic).
    pub iterations: usize,
    /// Low-pass weight `a >= 0`.
    pub lowpass_weight: T,
    /// Threshold `kappa > 0` of the background gate (DESIGN §3.7 item 7); `None` (the
    /// default) leaves the image as items 1–6 made it.
    pub background_gate: Option<T>,
}

impl<T: Real> Default for ReconConfig<T> {
    fn default() -> Self {
        Self {
            iterations: ITERATIONS,
            lowpass_weight: T::lit(LOWPASS_WEIGHT),
            background_gate: None,
        }
    }
}

/// What a reconstruction measured along the way.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReconReport<T> {
    /// The scale `c = 1 / p99(|F^H y|)` the problem was solved at.
    pub scale: T,
    /// Lipschitz constant `L` over the sampled frequencies; the step was `1/L`.
    pub lipschitz: T,
    /// Number of sampled k-space positions.
    pub sampled: usize,
    /// Number of non-zero coefficients in the final `z`.
    pub nonzero_coefficients: usize,
}

/// Caller-owned memory of [`reconstruct`] for one grid and filter count. Allocate it once
/// and reuse it for every slice; nothing else is allocated.
///
/// Sizes (elements): complex `(2K + ⌈K/4⌉ + 7) N + b`, real `2N`, where `b` is the FFT
/// backend's scratch (0 for microfft, at most `max(n_y, n_x)` for rustfft) and `⌈K/4⌉ N`
/// holds one forward-pass sum per chunk of filters ([`crate::fista::BLOCKS_PER_CHUNK`]).
/// With the [`DictionaryPlan`] (`K N` complex + `N` real) and Lambda maps (`K N` real, if
/// used) the peak memory of a slice in `f32` is about `(26 K + 68) N` bytes without maps
/// and `(30 K + 68) N` with them: 59 MB and 67 MB at `K = 32`, `N = 256²`. A multi-threaded
/// solve ([`Prepared::solve_with`]) needs `2N + b` more per extra thread.
pub struct Workspace<'a, T> {
    shape: Shape,
    count: usize,
    z: &'a mut [Complex<T>],
    v: &'a mut [Complex<T>],
    measured: &'a mut [Complex<T>],
    data: &'a mut [Complex<T>],
    residual: &'a mut [Complex<T>],
    next_residual: &'a mut [Complex<T>],
    block: &'a mut [Complex<T>],
    scratch: &'a mut [Complex<T>],
    partials: &'a mut [Complex<T>],
    mask: &'a mut [T],
    magnitudes: &'a mut [T],
}

impl<'a, T: Real> Workspace<'a, T> {
    /// Complex elements needed for `count` filters on `shape` with an FFT needing
    /// `fft_scratch_len` ([`crate::fft::Fft2::scratch_len`]).
    pub fn complex_len(shape: Shape, count: usize, fft_scratch_len: usize) -> usize {
        let n = shape.len();
        2 * count * n + 5 * n + (n + fft_scratch_len) + chunk_count(count) * n
    }

    /// Real elements needed.
    pub fn real_len(shape: Shape) -> usize {
        2 * shape.len()
    }

    /// Splits the caller's buffers; fails if either is too small.
    pub fn new(
        shape: Shape,
        count: usize,
        fft_scratch_len: usize,
        complex: &'a mut [Complex<T>],
        real: &'a mut [T],
    ) -> Result<Self> {
        check_capacity(
            "workspace (complex)",
            complex.len(),
            Self::complex_len(shape, count, fft_scratch_len),
        )?;
        check_capacity("workspace (real)", real.len(), Self::real_len(shape))?;
        let n = shape.len();
        let (z, rest) = complex.split_at_mut(count * n);
        let (v, rest) = rest.split_at_mut(count * n);
        let (measured, rest) = rest.split_at_mut(n);
        let (data, rest) = rest.split_at_mut(n);
        let (residual, rest) = rest.split_at_mut(n);
        let (next_residual, rest) = rest.split_at_mut(n);
        let (block, rest) = rest.split_at_mut(n);
        let (scratch, rest) = rest.split_at_mut(n + fft_scratch_len);
        let partials = &mut rest[..chunk_count(count) * n];
        let (mask, rest) = real.split_at_mut(n);
        let magnitudes = &mut rest[..n];
        Ok(Self {
            shape,
            count,
            z,
            v,
            measured,
            data,
            residual,
            next_residual,
            block,
            scratch,
            partials,
            mask,
            magnitudes,
        })
    }

    /// The final sparse codes `z_k` of the last reconstruction, checkerboard-modulated
    /// (`(-1)^(y+x) z_k(y, x)`), `[K][n_y][n_x]`, in the units of the scaled problem.
    /// `|z_k|` is the code magnitude at each pixel.
    pub fn codes_modulated(&self) -> &[Complex<T>] {
        self.z
    }
}

/// Reconstructs one slice (DESIGN §3.7): [`Workspace::prepare`] then [`Prepared::solve`].
///
/// - `kspace`: centred k-space `[n_y][n_x]` in the unitary convention of §3.2; values off the
///   mask are ignored.
/// - `mask`: `[n_y][n_x]`, sampled where non-zero.
/// - `lambda`: sparsity levels of the scaled problem (scalar, `[K]`, or `[K][n_y][n_x]`).
/// - `image`: output `[n_y][n_x]`, on the scale of `F^H y`.
///
/// Fails before any iteration if a size does not match, an input is not finite, the
/// low-pass weight is negative, nothing was measured, or the dictionary does not respond at
/// any sampled frequency.
pub fn reconstruct<T: Real, B: FftBackend<T>>(
    plan: &DictionaryPlan<'_, T, B>,
    kspace: &[Complex<T>],
    mask: &[T],
    lambda: Lambda<'_, T>,
    config: &ReconConfig<T>,
    workspace: &mut Workspace<'_, T>,
    image: &mut [Complex<T>],
) -> Result<ReconReport<T>> {
    // Sizes and lambda first, so that a bad call costs no FFT.
    let n = plan.shape().len();
    check_len("image", image.len(), n)?;
    lambda.validate(plan.count() * n, n)?;
    if let Some(kappa) = config.background_gate {
        check_gate(kappa)?;
    }
    let mut prepared = workspace.prepare(plan, kspace, mask, config.lowpass_weight)?;
    let report = prepared.solve(lambda, config.iterations, image)?;
    if let Some(kappa) = config.background_gate {
        prepared.gate_background(kappa, image)?;
    }
    Ok(report)
}

/// A gate threshold must be finite and positive.
pub(crate) fn check_gate<T: Real>(kappa: T) -> Result<()> {
    if !kappa.is_finite() {
        return Err(Error::NonFinite {
            what: "background gate",
        });
    }
    if !is_positive(kappa) {
        return Err(Error::NonPositiveBackgroundGate);
    }
    Ok(())
}

impl<'a, T: Real> Workspace<'a, T> {
    /// Items 1–4 of DESIGN §3.7 for one slice: masks and scales the k-space
    /// (`c = 1 / p99(|F^H y|)`), splits off the low-pass part (`y' = (1 - G) (.) y`) and
    /// finds the step from the Lipschitz constant over the sampled frequencies. The returned
    /// [`Prepared`] exposes these per-slice quantities (what a Lambda network's features are
    /// made of) and solves; nothing is computed twice.
    ///
    /// Fails if a size does not match, an input is not finite, the low-pass weight is
    /// negative, nothing was measured (`p99 = 0`), or no filter responds at any sampled
    /// frequency (`L = 0`).
    pub fn prepare<'w, 'p, B: FftBackend<T>>(
        &'w mut self,
        plan: &'w DictionaryPlan<'p, T, B>,
        kspace: &[Complex<T>],
        mask: &[T],
        lowpass_weight: T,
    ) -> Result<Prepared<'w, 'a, 'p, T, B>> {
        let shape = plan.shape();
        let n = shape.len();
        if self.shape != shape || self.count != plan.count() {
            return Err(Error::LengthMismatch {
                what: "workspace (filters x pixels)",
                expected: plan.count() * n,
                actual: self.count * self.shape.len(),
            });
        }
        check_len("k-space", kspace.len(), n)?;
        check_len("mask", mask.len(), n)?;
        if kspace
            .iter()
            .any(|v| !(v.re.is_finite() && v.im.is_finite()))
        {
            return Err(Error::NonFinite { what: "k-space" });
        }
        if mask.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "mask" });
        }
        if !lowpass_weight.is_finite() {
            return Err(Error::NonFinite {
                what: "low-pass weight",
            });
        }
        if lowpass_weight < T::zero() {
            return Err(Error::NegativeLowpassWeight);
        }

        let fft = plan.fft();
        let ws = self;
        let zero = Complex::new(T::zero(), T::zero());

        // 1. Measured data, masked and modulated, in the transposed spectral layout.
        let mut sampled = 0;
        for y in 0..shape.n_y() {
            for x in 0..shape.n_x() {
                let t = shape.transposed(y, x);
                if mask[shape.natural(y, x)] != T::zero() {
                    sampled += 1;
                    ws.mask[t] = T::one();
                    ws.measured[t] = kspace[shape.natural(y, x)].scale(checkerboard(y, x));
                } else {
                    ws.mask[t] = T::zero();
                    ws.measured[t] = zero;
                }
            }
        }

        // 2. Scale (DESIGN §3.6): c = 1 / p99(|F^H y|); |C x| = |x|, so no demodulation.
        let inverse_gain = fft.inverse_divisor::<T>() / T::lit(n as f64).sqrt();
        fft.inverse_from_transposed(ws.measured, ws.residual, ws.scratch);
        for (m, v) in ws.magnitudes.iter_mut().zip(ws.residual.iter()) {
            *m = v.norm() * inverse_gain;
        }
        let p99 = percentile(ws.magnitudes, SCALE_PERCENTILE).ok_or(Error::NonFinite {
            what: "zero-filled image",
        })?;
        if !p99.is_finite() {
            return Err(Error::NonFinite {
                what: "zero-filled image (the k-space values overflow)",
            });
        }
        // `partial_cmp` rather than `<=` so that NaN also fails.
        if !is_positive(p99) {
            return Err(Error::NothingMeasured);
        }
        let scale = T::one() / p99;
        if !scale.is_finite() {
            // p99 is positive but so small (subnormal) that 1/p99 overflows: every later
            // quantity would be infinite or NaN.
            return Err(Error::ScaleOutOfRange);
        }
        for v in ws.measured.iter_mut() {
            *v = v.scale(scale);
        }

        // 3. Low-pass split: y' = (1 - G) y.
        crate::lowpass::for_each_gain(shape, lowpass_weight, |t, gain| {
            ws.data[t] = ws.measured[t].scale(T::one() - gain)
        });

        // The readout frequencies (transposed rows) with a sample: the solver's FFTs skip
        // the others (DESIGN §3.5, pruning).
        let rows = ActiveRows::of_transposed_mask(shape, ws.mask)?;

        // 4. Step from the Lipschitz constant over the sampled frequencies.
        let lipschitz = plan.lipschitz(ws.mask);
        if !lipschitz.is_finite() {
            return Err(Error::NonFinite {
                what: "Lipschitz constant (the dictionary's responses overflow)",
            });
        }
        if !is_positive(lipschitz) {
            return Err(Error::NoSampledResponse);
        }
        Ok(Prepared {
            plan,
            workspace: ws,
            scale,
            lipschitz,
            sampled,
            lowpass_weight,
            rows,
            solver_rows: rows,
        })
    }
}

/// One slice after [`Workspace::prepare`]: the scaled, masked data `y`, its high-pass part
/// `y'`, the scale `c` and the Lipschitz constant `L`, held in the workspace. Read the
/// per-slice quantities, then [`Prepared::solve`].
pub struct Prepared<'w, 'a, 'p, T, B> {
    plan: &'w DictionaryPlan<'p, T, B>,
    workspace: &'w mut Workspace<'a, T>,
    scale: T,
    lipschitz: T,
    sampled: usize,
    lowpass_weight: T,
    /// Transposed rows with a sampled frequency: what the solver's FFTs compute.
    rows: ActiveRows,
    /// The rows the solver's operators compute: `rows`, or all of them after
    /// [`Prepared::set_pruning`]`(false)`.
    solver_rows: ActiveRows,
}

impl<T: Real, B: FftBackend<T>> Prepared<'_, '_, '_, T, B> {
    /// `c = 1 / p99(|F^H y|)` (DESIGN §3.6).
    pub fn scale(&self) -> T {
        self.scale
    }

    /// `L = max over sampled w of sum_k |h_k(w)|²` (DESIGN §3.3); the step is `1/L`.
    pub fn lipschitz(&self) -> T {
        self.lipschitz
    }

    /// Number of sampled k-space positions.
    pub fn sampled(&self) -> usize {
        self.sampled
    }

    /// The readout frequencies `kx` (rows of the transposed spectrum) with at least one
    /// sampled position: the solver's FFTs compute only these rows (DESIGN §3.5, pruning).
    pub fn rows(&self) -> ActiveRows {
        self.rows
    }

    /// Turns the pruning of the solver's FFTs off (`false`: every row is computed) or back
    /// on (`true`, the default). The result is the same either way (up to the sign of exact
    /// zeros, DESIGN §3.5); this exists for tests and benchmarks that compare the two.
    pub fn set_pruning(&mut self, prune: bool) {
        self.solver_rows = if prune {
            self.rows
        } else {
            ActiveRows::all(self.plan.shape())
        };
    }

    /// Number of filters `K`.
    pub fn count(&self) -> usize {
        self.plan.count()
    }

    pub fn shape(&self) -> Shape {
        self.plan.shape()
    }

    /// `|x0|` of the scaled problem, `x0 = F^H y` (its 99th percentile is 1), natural layout
    /// `[n_y][n_x]`. One inverse FFT.
    pub fn zero_filled_abs(&mut self, out: &mut [T]) -> Result<()> {
        let shape = self.plan.shape();
        check_len("zero-filled magnitude", out.len(), shape.len())?;
        let fft = self.plan.fft();
        let ws = &mut *self.workspace;
        fft.inverse_from_transposed(ws.measured, ws.residual, ws.scratch);
        let gain = fft.inverse_divisor::<T>() / T::lit(shape.len() as f64).sqrt();
        for (o, v) in out.iter_mut().zip(ws.residual.iter()) {
            *o = v.norm() * gain;
        }
        Ok(())
    }

    /// `|F^H(conj(h_k) (.) y')|` = `|d_k^T (*) x0'|`, natural layout `[n_y][n_x]`: the
    /// magnitude of filter `k`'s block of the first FISTA gradient (from `z = 0`), i.e. the
    /// correlation of filter `k` with the high-pass zero-filled image. One inverse FFT.
    pub fn gradient_abs(&mut self, k: usize, out: &mut [T]) -> Result<()> {
        let ws = &mut *self.workspace;
        let mut worker = WorkerBuffers {
            block: &mut *ws.residual,
            scratch: &mut *ws.scratch,
        };
        gradient_abs_into(self.plan, self.solver_rows, ws.data, k, out, &mut worker)
    }

    /// [`Self::gradient_abs`] with the caller's buffers (`block`: `N`, `scratch`:
    /// [`MaskedSynthesis::required_scratch`]), so that several filters can be computed at
    /// once from a shared `&self`.
    pub fn gradient_abs_with(
        &self,
        k: usize,
        out: &mut [T],
        worker: &mut WorkerBuffers<'_, T>,
    ) -> Result<()> {
        gradient_abs_into(
            self.plan,
            self.solver_rows,
            self.workspace.data,
            k,
            out,
            worker,
        )
    }

    /// Items 5–6 of DESIGN §3.7 on the calling thread: [`Self::solve_with`] with the
    /// workspace's own block and scratch as the one worker and the [`Serial`] executor.
    pub fn solve(
        &mut self,
        lambda: Lambda<'_, T>,
        iterations: usize,
        image: &mut [Complex<T>],
    ) -> Result<ReconReport<T>> {
        // Lend the workspace's block and scratch to the solve as its worker, then put them
        // back (the solve itself uses the workspace's other buffers).
        let ws = &mut *self.workspace;
        let mut workers = [WorkerBuffers {
            block: core::mem::take(&mut ws.block),
            scratch: core::mem::take(&mut ws.scratch),
        }];
        let result = self.solve_with(lambda, iterations, image, &mut workers, &Serial);
        let [worker] = workers;
        self.workspace.block = worker.block;
        self.workspace.scratch = worker.scratch;
        result
    }

    /// Items 5–6 of DESIGN §3.7: `iterations` steps of FISTA with thresholds
    /// `Lambda / L`, then `x = F^H (G (.) y + sum_k h_k (.) F z_k) / c` into `image`
    /// (`[n_y][n_x]`, on the scale of `F^H y`). May be called again with other levels.
    ///
    /// The filters are processed in chunks ([`crate::fista::BLOCKS_PER_CHUNK`]) by
    /// `executor`, one of `workers` per concurrent chunk (each `N` +
    /// [`MaskedSynthesis::required_scratch`] complex; at least one). The image is
    /// bit-identical for any executor and number of workers.
    pub fn solve_with<E: Executor>(
        &mut self,
        lambda: Lambda<'_, T>,
        iterations: usize,
        image: &mut [Complex<T>],
        workers: &mut [WorkerBuffers<'_, T>],
        executor: &E,
    ) -> Result<ReconReport<T>> {
        let plan = self.plan;
        let shape = plan.shape();
        let n = shape.len();
        check_len("image", image.len(), n)?;
        lambda.validate(plan.count() * n, n)?;
        let ws = &mut *self.workspace;
        let step = T::one() / self.lipschitz;

        // 5. FISTA on the modulated codes.
        let op = MaskedSynthesis {
            plan,
            mask: Some(&*ws.mask),
            rows: self.solver_rows,
        };
        fista_with(
            &op,
            ws.data,
            lambda,
            step,
            iterations,
            FistaBuffers {
                z: ws.z,
                previous: ws.v,
                residual: ws.residual,
                next_residual: ws.next_residual,
                partials: ws.partials,
                workers: &mut *workers,
            },
            executor,
        )?;

        // 6. x = F^H (G y + sum_k h_k F z_k), unscaled.
        let nonzero_coefficients = synthesise(
            plan,
            ws.z,
            ws.measured,
            self.lowpass_weight,
            self.scale,
            ws.residual,
            ws.partials,
            workers,
            executor,
            image,
        )?;
        Ok(ReconReport {
            scale: self.scale,
            lipschitz: self.lipschitz,
            sampled: self.sampled,
            nonzero_coefficients,
        })
    }
}

impl<T: Real, B: FftBackend<T>> Prepared<'_, '_, '_, T, B> {
    /// The noise variance `sigma^2` of one k-space sample of the scaled problem, estimated
    /// from the outermost sampled positions (DESIGN §3.7 item 7): `median |y|^2 / ln 2`
    /// over the positions whose squared radius `(ky - n_y/2)^2 + (kx - n_x/2)^2` is at least
    /// the order statistic `floor(0.9 (m - 1))` of the `m` sampled radii. Signal left there
    /// only makes the estimate larger. Uses the workspace's real scratch.
    pub fn noise_variance(&mut self) -> T {
        let ws = &mut *self.workspace;
        noise_variance_of(self.plan.shape(), ws.mask, ws.measured, ws.magnitudes)
    }

    /// Item 7 of DESIGN §3.7, after [`Self::solve`] on the same slice: multiplies `image` by
    /// the background gate `g = clamp((E / s2 - kappa) / kappa, 0, 1)`, where
    /// `E = Gauss_w (*) |x_low|^2` is the low-pass part's local energy (circular Gaussian of
    /// width [`GATE_SMOOTHING`], applied in Fourier space) and `s2 = sigma^2 sum_sampled G^2 / N`
    /// the variance its noise has at one pixel ([`Self::noise_variance`]). Where `x_low` is
    /// no stronger than its noise the image is set to zero; where it is twice the
    /// threshold it is untouched. With no noise (`sigma = 0`) nothing changes.
    pub fn gate_background(&mut self, kappa: T, image: &mut [Complex<T>]) -> Result<()> {
        check_gate(kappa)?;
        let sigma2 = self.noise_variance();
        let ws = &mut *self.workspace;
        gate(
            self.plan.fft(),
            self.lowpass_weight,
            ws.measured,
            ws.mask,
            sigma2,
            kappa,
            image,
            ws.residual,
            ws.next_residual,
            ws.scratch,
        )
    }
}

/// [`Prepared::noise_variance`] of the data `measured` sampled where `mask` (both transposed)
/// is non-zero; `magnitudes` (`N` reals) is scratch.
pub(crate) fn noise_variance_of<T: Real>(
    shape: Shape,
    mask: &[T],
    measured: &[Complex<T>],
    magnitudes: &mut [T],
) -> T {
    let centre = |k: usize, len: usize| k as f64 - (len / 2) as f64;
    let radius2 = |y: usize, x: usize| {
        let (u, v) = (centre(y, shape.n_y()), centre(x, shape.n_x()));
        T::lit(u * u + v * v)
    };
    let mut count = 0;
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            if mask[shape.transposed(y, x)] != T::zero() {
                magnitudes[count] = radius2(y, x);
                count += 1;
            }
        }
    }
    if count == 0 {
        return T::zero();
    }
    let rank = num_traits::Float::floor((1.0 - NOISE_OUTER_FRACTION) * (count - 1) as f64);
    let (_, &mut threshold, _) = magnitudes[..count]
        .select_nth_unstable_by(rank as usize, |a, b| {
            a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal)
        });
    let mut outer = 0;
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            let t = shape.transposed(y, x);
            if mask[t] != T::zero() && radius2(y, x) >= threshold {
                magnitudes[outer] = measured[t].norm_sqr();
                outer += 1;
            }
        }
    }
    percentile(&mut magnitudes[..outer], 0.5)
        .map_or(T::zero(), |median| median / T::lit(core::f64::consts::LN_2))
}

/// The background gate of [`Prepared::gate_background`] with `x_low = F^H (G (.) source)`
/// (`source`: the scaled spectrum `x_low` is the low-pass part of, transposed), the gains'
/// energy summed where `mask` (transposed) is non-zero, and the sample noise `sigma2`.
/// `spectrum` and `grid` (`N` each) and `scratch` (the FFT's) are scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gate<T: Real, B: FftBackend<T>>(
    fft: &crate::fft::Fft2<B>,
    lowpass_weight: T,
    source: &[Complex<T>],
    mask: &[T],
    sigma2: T,
    kappa: T,
    image: &mut [Complex<T>],
    spectrum: &mut [Complex<T>],
    grid: &mut [Complex<T>],
    scratch: &mut [Complex<T>],
) -> Result<()> {
    let shape = fft.shape();
    let n = shape.len();
    check_len("image", image.len(), n)?;
    let mut gain_energy = T::zero();
    crate::lowpass::for_each_gain(shape, lowpass_weight, |t, gain| {
        spectrum[t] = source[t].scale(gain);
        if mask[t] != T::zero() {
            gain_energy += gain * gain;
        }
    });
    let noise = sigma2 * gain_energy / T::lit(n as f64);
    if !is_positive(noise) || !noise.is_finite() {
        return Ok(());
    }
    // |x_low|^2, modulated, as the input of the smoothing's forward transform.
    fft.inverse_from_transposed(spectrum, grid, scratch);
    let inverse_gain = fft.inverse_divisor::<T>() / T::lit(n as f64).sqrt();
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            let i = shape.natural(y, x);
            let energy = grid[i].norm_sqr() * inverse_gain * inverse_gain;
            grid[i] = Complex::new(energy * checkerboard(y, x), T::zero());
        }
    }
    fft.forward_to_transposed(grid, spectrum, scratch);
    let spread = T::lit(
        2.0 * core::f64::consts::PI * core::f64::consts::PI * GATE_SMOOTHING * GATE_SMOOTHING,
    );
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            let u = T::lit(y as f64 - (shape.n_y() / 2) as f64) / T::lit(shape.n_y() as f64);
            let v = T::lit(x as f64 - (shape.n_x() / 2) as f64) / T::lit(shape.n_x() as f64);
            let t = shape.transposed(y, x);
            spectrum[t] = spectrum[t].scale((-spread * (u * u + v * v)).exp());
        }
    }
    fft.inverse_from_transposed(spectrum, grid, scratch);
    let smoothing_gain = fft.inverse_divisor::<T>() / T::lit(n as f64);
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            let i = shape.natural(y, x);
            let energy = grid[i].re * checkerboard(y, x) * smoothing_gain;
            let gate = ((energy / noise - kappa) / kappa)
                .max(T::zero())
                .min(T::one());
            image[i] = image[i].scale(gate);
        }
    }
    Ok(())
}

impl<T, B> core::fmt::Debug for Prepared<'_, '_, '_, T, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// Item 6 of DESIGN §3.7: `image = F^H (G (.) lowpass_source + sum_k h_k (.) F z_k) / scale`
/// (natural layout, demodulated), with `spectrum` (`N`), `partials` and `workers` as scratch;
/// the synthesis's chunks on `executor`. Returns the number of non-zero codes. Fails if the
/// image is not finite (a finite input can still overflow on the way, e.g. a huge
/// Lambda-free solve). Shared by the single-coil and the multi-coil solve.
#[allow(clippy::too_many_arguments)]
pub(crate) fn synthesise<T: Real, B: FftBackend<T>, E: Executor>(
    plan: &DictionaryPlan<'_, T, B>,
    z: &[Complex<T>],
    lowpass_source: &[Complex<T>],
    lowpass_weight: T,
    scale: T,
    spectrum: &mut [Complex<T>],
    partials: &mut [Complex<T>],
    workers: &mut [WorkerBuffers<'_, T>],
    executor: &E,
    image: &mut [Complex<T>],
) -> Result<usize> {
    let shape = plan.shape();
    let n = shape.len();
    let fft = plan.fft();
    let synthesis = MaskedSynthesis {
        plan,
        mask: None,
        rows: ActiveRows::all(shape),
    };
    apply_with(&synthesis, z, spectrum, partials, workers, executor)?;
    crate::lowpass::for_each_gain(shape, lowpass_weight, |t, gain| {
        spectrum[t] = spectrum[t] + lowpass_source[t].scale(gain)
    });
    fft.inverse_from_transposed(spectrum, image, workers[0].scratch);
    let inverse_gain = fft.inverse_divisor::<T>() / T::lit(n as f64).sqrt();
    let output_gain = inverse_gain / scale;
    for (y, row) in image.chunks_exact_mut(shape.n_x()).enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            *v = v.scale(output_gain * checkerboard(y, x));
        }
    }
    if image
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        return Err(Error::NonFinite {
            what: "reconstructed image",
        });
    }
    let zero = Complex::new(T::zero(), T::zero());
    Ok(z.iter().filter(|v| **v != zero).count())
}

/// `out = |F^H(conj(h_k) (.) data)|` (unmasked: `data` is zero off the mask already).
pub(crate) fn gradient_abs_into<T: Real, B: FftBackend<T>>(
    plan: &DictionaryPlan<'_, T, B>,
    rows: ActiveRows,
    data: &[Complex<T>],
    k: usize,
    out: &mut [T],
    worker: &mut WorkerBuffers<'_, T>,
) -> Result<()> {
    let n = plan.shape().len();
    check_len("gradient magnitude", out.len(), n)?;
    check_capacity("gradient block", worker.block.len(), n)?;
    check_capacity(
        "gradient scratch",
        worker.scratch.len(),
        MaskedSynthesis::required_scratch(plan),
    )?;
    if k >= plan.count() {
        return Err(Error::LengthMismatch {
            what: "filter index (K)",
            expected: plan.count(),
            actual: k + 1,
        });
    }
    // Unmasked: y' is zero off the mask already, so also off the sampled rows.
    let op = MaskedSynthesis {
        plan,
        mask: None,
        rows,
    };
    op.adjoint_block(data, k, &mut worker.block[..n], worker.scratch);
    for (o, v) in out.iter_mut().zip(worker.block.iter()) {
        *o = v.norm();
    }
    Ok(())
}

/// `value > 0`, false for NaN.
pub(crate) fn is_positive<T: Real>(value: T) -> bool {
    value.partial_cmp(&T::zero()) == Some(core::cmp::Ordering::Greater)
}

/// The `q`-quantile of `values` with linear interpolation between order statistics
/// (NumPy's default `method="linear"`): with the values sorted ascending as `v_0..v_{n-1}`,
/// `r = q (n - 1)`, result `v_⌊r⌋ + (r - ⌊r⌋)(v_⌈r⌉ - v_⌊r⌋)`. Reorders `values` (a
/// selection, `O(n)`), allocates nothing. `None` if `values` is empty or contains NaN.
pub fn percentile<T: Real>(values: &mut [T], q: f64) -> Option<T> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lower_index = num_traits::Float::floor(rank) as usize;
    let fraction = T::lit(rank - lower_index as f64);
    let (_, &mut lower, above) = values.select_nth_unstable_by(lower_index, |a, b| {
        a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal)
    });
    let upper = above
        .iter()
        .copied()
        .fold(None, |m: Option<T>, v| Some(m.map_or(v, |m| m.min(v))));
    Some(match upper {
        Some(upper) if fraction > T::zero() => lower + (upper - lower) * fraction,
        _ => lower,
    })
}

impl<T> core::fmt::Debug for Workspace<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Workspace")
            .field("shape", &self.shape)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}
