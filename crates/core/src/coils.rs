//! Several receive coils (DESIGN §3.4): `A x = M_c (.) F (S_c x)` for each coil `c`, with
//! sensitivities `S_c` normalised so that `sum_c |S_c|² = 1` where the object is.
//!
//! The dictionary part of the problem is unchanged: FISTA runs on the same codes `z` and the
//! same per-filter chunks as the single-coil solve ([`crate::recon`]), but the data term is no
//! longer diagonal in k-space, so the residual is formed in the range of the synthesis
//! `u = sum_k h_k (.) F z_k` as `G u - b` with `G = F S^H F^H M F S F^H` and
//! `b = F S^H F^H y` ([`crate::fista::fista_normal_with`]). One iteration costs the `2K`
//! FFTs of the dictionary (unpruned: `S_c` mixes frequencies) plus `2 + 2C` for the coils
//! (the coils' forward and inverse FFTs are pruned to the sampled readout rows).
//!
//! The rest of DESIGN §3.7 carries over with the coil-combined zero-filled image
//! `x0 = S^H F^H y` in place of `F^H y`: the scale `c = 1 / p99(|x0|)`, the low-pass part
//! `x_low = (I + a grad^H grad)^{-1} x0` (whose coil data `M_c F S_c x_low` is subtracted from
//! `y_c`), the features of the Lambda network (`|x0|` and `|F^H(conj(h_k) (.) b)|`, the first
//! gradient, exactly as for one coil), the synthesis `x = x_low + D z` and the background
//! gate. With one coil and `S = 1` every quantity equals the single-coil one.
//!
//! The step is `1/L` with `L` the largest eigenvalue of `P^{1/2} G P^{1/2}`
//! (`P = sum_k |h_k|²`), the squared norm of `M F S D`, estimated by
//! [`LIPSCHITZ_POWER_ITERATIONS`] power iterations (as BART's `pics` estimates its step),
//! raised by [`LIPSCHITZ_MARGIN`] because power iteration approaches the eigenvalue from
//! below, and capped at `max_w P(w)`, an upper bound (`||S|| <= 1`).

use crate::dictionary::{DictionaryPlan, MaskedSynthesis};
use crate::error::{Error, Result};
use crate::fft::{ActiveRows, Fft2, FftBackend};
use crate::fista::{
    chunk_count, fista_normal_with, Executor, FistaBuffers, Lambda, NormalResidual,
    Serial, WorkerBuffers,
};
use crate::ops::{checkerboard, LinearOperator};
use crate::real::Real;
use crate::recon::{check_gate, gate, is_positive, noise_variance_of, percentile, ReconReport};
use crate::recon::{ReconConfig, SCALE_PERCENTILE};
use crate::shape::{check_capacity, check_len, Shape};
use num_complex::Complex;

/// Most coils a reconstruction takes (the wire protocol's limit, DESIGN §5).
pub const MAX_COILS: usize = 32;
/// Power iterations of the Lipschitz estimate.
pub const LIPSCHITZ_POWER_ITERATIONS: usize = 16;
/// Factor on the power-iteration estimate of `L` (the estimate approaches `L` from below;
/// a step above `1/L` may diverge, one a few percent below only slows FISTA slightly).
pub const LIPSCHITZ_MARGIN: f64 = 1.05;

/// The coil encoding `x -> (M_c (.) F (S_c x))_c`: from an image (natural layout,
/// checkerboard-modulated like every image inside the solver) to the coils' k-space
/// (transposed layout, `[C][n_x][n_y]`). The coils' FFTs are pruned to `rows`, which must
/// contain every readout row any coil samples.
pub struct CoilEncoding<'a, T, B> {
    pub fft: &'a Fft2<B>,
    pub coils: usize,
    /// `[C][n_y][n_x]`, natural layout.
    pub sensitivities: &'a [Complex<T>],
    /// `[C][n_x][n_y]`, transposed layout, the sampling weights of each coil.
    pub masks: &'a [T],
    pub rows: ActiveRows,
}

impl<T: Real, B: FftBackend<T>> CoilEncoding<'_, T, B> {
    /// Scratch of [`Self::encode_coil`] and [`Self::adjoint_coil_in_place`]: the in-place
    /// FFTs' (a grid for non-square shapes, and the backend's).
    pub fn coil_scratch_len(fft: &Fft2<B>) -> usize {
        fft.scratch_len()
    }

    /// `out = M_c (.) F (S_c x)` on the rows of `self.rows`, zero on the others.
    pub fn encode_coil(
        &self,
        c: usize,
        image: &[Complex<T>],
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let shape = self.fft.shape();
        let n = shape.len();
        let sensitivity = &self.sensitivities[c * n..(c + 1) * n];
        let out = &mut out[..n];
        for ((o, &x), &s) in out.iter_mut().zip(&image[..n]).zip(sensitivity) {
            *o = s * x;
        }
        self.fft.forward_in_place_rows(out, &self.rows, scratch);
        let gain = T::one() / T::lit(n as f64).sqrt();
        let mask = &self.masks[c * n..(c + 1) * n];
        let n_y = shape.n_y();
        let mut computed = 0;
        for run in self.rows.runs() {
            out[computed * n_y..run.start * n_y].fill(Complex::new(T::zero(), T::zero()));
            let span = run.start * n_y..run.end * n_y;
            for (o, &m) in out[span.clone()].iter_mut().zip(&mask[span]) {
                *o = o.scale(gain * m);
            }
            computed = run.end;
        }
        out[computed * n_y..].fill(Complex::new(T::zero(), T::zero()));
    }

    /// `data <- conj(S_c) (.) F^H (M_c (.) data)` (`data`: one coil's k-space in, an image
    /// out). Rows outside `self.rows` are taken as zero.
    pub fn adjoint_coil_in_place(
        &self,
        c: usize,
        data: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let shape = self.fft.shape();
        let n = shape.len();
        let data = &mut data[..n];
        let mask = &self.masks[c * n..(c + 1) * n];
        for run in self.rows.runs() {
            let span = run.start * shape.n_y()..run.end * shape.n_y();
            for (d, &m) in data[span.clone()].iter_mut().zip(&mask[span]) {
                *d = d.scale(m);
            }
        }
        self.fft.inverse_in_place_rows(data, &self.rows, scratch);
        let gain = self.fft.inverse_divisor::<T>() / T::lit(n as f64).sqrt();
        let sensitivity = &self.sensitivities[c * n..(c + 1) * n];
        for (d, &s) in data.iter_mut().zip(sensitivity) {
            *d = (s.conj() * *d).scale(gain);
        }
    }
}

impl<T: Real, B: FftBackend<T>> LinearOperator<T> for CoilEncoding<'_, T, B> {
    fn domain_len(&self) -> usize {
        self.fft.shape().len()
    }
    fn range_len(&self) -> usize {
        self.coils * self.fft.shape().len()
    }
    fn scratch_len(&self) -> usize {
        self.fft.shape().len() + Self::coil_scratch_len(self.fft)
    }
    fn apply_block_add(
        &self,
        x: &[Complex<T>],
        _index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let n = self.fft.shape().len();
        let (coil, rest) = scratch.split_at_mut(n);
        for (c, y_c) in y[..self.range_len()].chunks_exact_mut(n).enumerate() {
            self.encode_coil(c, x, coil, rest);
            crate::ops::add_into(y_c, coil);
        }
    }
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        _index: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let n = self.fft.shape().len();
        let (coil, rest) = scratch.split_at_mut(n);
        let out = &mut out[..n];
        out.fill(Complex::new(T::zero(), T::zero()));
        for (c, y_c) in y[..self.range_len()].chunks_exact(n).enumerate() {
            coil.copy_from_slice(y_c);
            self.adjoint_coil_in_place(c, coil, rest);
            crate::ops::add_into(out, coil);
        }
    }
}

/// The residual `G u - b` of the coil data term in the synthesis range (spectrum, transposed
/// layout): `image = F^H u`, per coil `p_c = conj(S_c) F^H (M_c F (S_c image) - y_c)` (the coils
/// on the executor's threads, each into its own `p_c`), then `u = F sum_c p_c` with the coils
/// added in coil order, so the result does not depend on the threads. Without `data` it is
/// `G u` (the Lipschitz estimate).
struct CoilResidual<'a, 'e, T, B> {
    encoding: &'e CoilEncoding<'a, T, B>,
    /// `[C][n_x][n_y]`: the high-pass coil data `y'_c`.
    data: Option<&'e [Complex<T>]>,
    image: &'e mut [Complex<T>],
    /// `[C][N]`.
    partials: &'e mut [Complex<T>],
}

impl<T: Real, B: FftBackend<T>> NormalResidual<T> for CoilResidual<'_, '_, T, B> {
    fn residual<E: Executor>(
        &mut self,
        u: &mut [Complex<T>],
        workers: &mut [WorkerBuffers<'_, T>],
        executor: &E,
    ) {
        let encoding = self.encoding;
        let fft = encoding.fft;
        let n = fft.shape().len();
        let sqrt_n = T::lit(n as f64).sqrt();
        fft.inverse_from_transposed(&u[..n], self.image, workers[0].scratch);
        let inverse_gain = fft.inverse_divisor::<T>() / sqrt_n;
        self.image
            .iter_mut()
            .for_each(|v| *v = v.scale(inverse_gain));

        struct Coil<'p, T> {
            index: usize,
            partial: &'p mut [Complex<T>],
        }
        let mut coils: [Option<Coil<'_, T>>; MAX_COILS] = core::array::from_fn(|_| None);
        for (index, (slot, partial)) in coils
            .iter_mut()
            .zip(self.partials.chunks_exact_mut(n))
            .take(encoding.coils)
            .enumerate()
        {
            *slot = Some(Coil { index, partial });
        }
        let image = &*self.image;
        let data = self.data;
        executor.for_each(&mut coils[..encoding.coils], workers, &|slot, worker| {
            if let Some(coil) = slot {
                let c = coil.index;
                // The coil's own partial is its working grid: no copy per coil and iteration.
                let partial = &mut *coil.partial;
                encoding.encode_coil(c, image, partial, worker.scratch);
                if let Some(data) = data {
                    crate::ops::sub_from(partial, &data[c * n..(c + 1) * n]);
                }
                encoding.adjoint_coil_in_place(c, partial, worker.scratch);
            }
        });
        let image = &mut *self.image;
        image.fill(Complex::new(T::zero(), T::zero()));
        for partial in self.partials.chunks_exact(n).take(encoding.coils) {
            crate::ops::add_into(image, partial);
        }
        fft.forward_to_transposed(image, &mut u[..n], workers[0].scratch);
        let forward_gain = T::one() / sqrt_n;
        u[..n].iter_mut().for_each(|v| *v = v.scale(forward_gain));
    }
}

/// Caller-owned memory of a multi-coil reconstruction for one grid, filter count and coil
/// count; allocate once, reuse for every slice.
///
/// Sizes (elements): complex `(2K + 3C + ⌈K/4⌉ + 7) N + b` (`b` the FFT backend's scratch),
/// real `(C + 2) N`. With the dictionary plan and `f32` Lambda maps, about
/// `(30 K + 24 C + 76) N` bytes: 83 MB at `K = 32`, `C = 8`, `N = 256²` (single coil: 67 MB).
pub struct CoilWorkspace<'a, T> {
    shape: Shape,
    count: usize,
    coils: usize,
    z: &'a mut [Complex<T>],
    v: &'a mut [Complex<T>],
    /// `[C][N]` transposed: `y_c` scaled, then `y'_c`.
    data: &'a mut [Complex<T>],
    /// `[C][N]` natural.
    sensitivities: &'a mut [Complex<T>],
    /// `[C][N]`: the coils' parts of the residual.
    coil_partials: &'a mut [Complex<T>],
    /// `F x0`, scaled, transposed.
    combined: &'a mut [Complex<T>],
    /// `b = F S^H F^H y'`, transposed.
    first_gradient: &'a mut [Complex<T>],
    residual: &'a mut [Complex<T>],
    next_residual: &'a mut [Complex<T>],
    image: &'a mut [Complex<T>],
    block: &'a mut [Complex<T>],
    scratch: &'a mut [Complex<T>],
    partials: &'a mut [Complex<T>],
    /// `[C][N]` transposed.
    masks: &'a mut [T],
    /// Sampled in any coil, transposed.
    union_mask: &'a mut [T],
    magnitudes: &'a mut [T],
}

impl<'a, T: Real> CoilWorkspace<'a, T> {
    /// Complex elements for `count` filters and `coils` coils on `shape`.
    pub fn complex_len(shape: Shape, count: usize, coils: usize, fft_scratch_len: usize) -> usize {
        let n = shape.len();
        (2 * count + 3 * coils + 6) * n + (n + fft_scratch_len) + chunk_count(count) * n
    }

    /// Real elements.
    pub fn real_len(shape: Shape, coils: usize) -> usize {
        (coils + 2) * shape.len()
    }

    /// Splits the caller's buffers; fails if either is too small or `coils` is not in
    /// `1..=`[`MAX_COILS`].
    pub fn new(
        shape: Shape,
        count: usize,
        coils: usize,
        fft_scratch_len: usize,
        complex: &'a mut [Complex<T>],
        real: &'a mut [T],
    ) -> Result<Self> {
        if coils == 0 || coils > MAX_COILS {
            return Err(Error::LengthMismatch {
                what: "coils (1..=32)",
                expected: MAX_COILS,
                actual: coils,
            });
        }
        check_capacity(
            "coil workspace (complex)",
            complex.len(),
            Self::complex_len(shape, count, coils, fft_scratch_len),
        )?;
        check_capacity(
            "coil workspace (real)",
            real.len(),
            Self::real_len(shape, coils),
        )?;
        let n = shape.len();
        let (z, rest) = complex.split_at_mut(count * n);
        let (v, rest) = rest.split_at_mut(count * n);
        let (data, rest) = rest.split_at_mut(coils * n);
        let (sensitivities, rest) = rest.split_at_mut(coils * n);
        let (coil_partials, rest) = rest.split_at_mut(coils * n);
        let (combined, rest) = rest.split_at_mut(n);
        let (first_gradient, rest) = rest.split_at_mut(n);
        let (residual, rest) = rest.split_at_mut(n);
        let (next_residual, rest) = rest.split_at_mut(n);
        let (image, rest) = rest.split_at_mut(n);
        let (block, rest) = rest.split_at_mut(n);
        let (scratch, rest) = rest.split_at_mut(n + fft_scratch_len);
        let partials = &mut rest[..chunk_count(count) * n];
        let (masks, rest) = real.split_at_mut(coils * n);
        let (union_mask, rest) = rest.split_at_mut(n);
        let magnitudes = &mut rest[..n];
        Ok(Self {
            shape,
            count,
            coils,
            z,
            v,
            data,
            sensitivities,
            coil_partials,
            combined,
            first_gradient,
            residual,
            next_residual,
            image,
            block,
            scratch,
            partials,
            masks,
            union_mask,
            magnitudes,
        })
    }

    /// Number of coils this workspace was made for.
    pub fn coils(&self) -> usize {
        self.coils
    }

    /// Items 1–4 of DESIGN §3.7 for several coils (module docs): `kspace` `[C][n_y][n_x]`
    /// centred, `masks` `[C][n_y][n_x]` (sampled where non-zero), `sensitivities`
    /// `[C][n_y][n_x]` in the image domain (`sum_c |S_c|² = 1` on the object, 0 off it).
    ///
    /// Fails if a size does not match, an input is not finite, the low-pass weight is
    /// negative, nothing was measured, or the dictionary does not respond (`L = 0`).
    pub fn prepare<'w, 'p, B: FftBackend<T>>(
        &'w mut self,
        plan: &'w DictionaryPlan<'p, T, B>,
        kspace: &[Complex<T>],
        masks: &[T],
        sensitivities: &[Complex<T>],
        lowpass_weight: T,
    ) -> Result<CoilPrepared<'w, 'a, 'p, T, B>> {
        let shape = plan.shape();
        let n = shape.len();
        let coils = self.coils;
        if self.shape != shape || self.count != plan.count() {
            return Err(Error::LengthMismatch {
                what: "coil workspace (filters x pixels)",
                expected: plan.count() * n,
                actual: self.count * self.shape.len(),
            });
        }
        check_len("coil k-space", kspace.len(), coils * n)?;
        check_len("coil masks", masks.len(), coils * n)?;
        check_len("coil sensitivities", sensitivities.len(), coils * n)?;
        if kspace
            .iter()
            .any(|v| !(v.re.is_finite() && v.im.is_finite()))
        {
            return Err(Error::NonFinite {
                what: "coil k-space",
            });
        }
        if masks.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "coil masks" });
        }
        if sensitivities
            .iter()
            .any(|v| !(v.re.is_finite() && v.im.is_finite()))
        {
            return Err(Error::NonFinite {
                what: "coil sensitivities",
            });
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

        // 1. Measured data, masked and modulated, transposed; the union of the masks.
        ws.union_mask.fill(T::zero());
        for c in 0..coils {
            for y in 0..shape.n_y() {
                for x in 0..shape.n_x() {
                    let (t, i) = (shape.transposed(y, x), shape.natural(y, x));
                    let sampled = masks[c * n + i] != T::zero();
                    ws.masks[c * n + t] = if sampled { T::one() } else { T::zero() };
                    ws.data[c * n + t] = if sampled {
                        kspace[c * n + i].scale(checkerboard(y, x))
                    } else {
                        zero
                    };
                    if sampled {
                        ws.union_mask[t] = T::one();
                    }
                }
            }
        }
        ws.sensitivities[..coils * n].copy_from_slice(sensitivities);
        let sampled = ws.union_mask.iter().filter(|m| **m != T::zero()).count();
        let rows = ActiveRows::of_transposed_mask(shape, ws.union_mask)?;
        let encoding = CoilEncoding {
            fft,
            coils,
            sensitivities: &*ws.sensitivities,
            masks: &*ws.masks,
            rows,
        };

        // 2. x0 = S^H F^H y and the scale c = 1 / p99(|x0|).
        combine_into(&encoding, ws.data, ws.image, ws.block, ws.scratch);
        for (m, v) in ws.magnitudes.iter_mut().zip(ws.image.iter()) {
            *m = v.norm();
        }
        let p99 = percentile(ws.magnitudes, SCALE_PERCENTILE).ok_or(Error::NonFinite {
            what: "coil-combined zero-filled image",
        })?;
        if !p99.is_finite() {
            return Err(Error::NonFinite {
                what: "coil-combined zero-filled image (the k-space values overflow)",
            });
        }
        if !is_positive(p99) {
            return Err(Error::NothingMeasured);
        }
        let scale = T::one() / p99;
        if !scale.is_finite() {
            return Err(Error::ScaleOutOfRange);
        }
        ws.data[..coils * n]
            .iter_mut()
            .for_each(|v| *v = v.scale(scale));
        ws.image.iter_mut().for_each(|v| *v = v.scale(scale));

        // The noise of one sample, from the coils' outermost samples (before the low-pass
        // split changes them), averaged over the coils.
        let mut noise = T::zero();
        for c in 0..coils {
            noise += noise_variance_of(
                shape,
                &ws.masks[c * n..(c + 1) * n],
                &ws.data[c * n..(c + 1) * n],
                ws.magnitudes,
            );
        }
        let noise_variance = noise / T::lit(coils as f64);

        // 3. F x0, x_low = F^H (G (.) F x0) and y'_c = y_c - M_c F (S_c x_low).
        let unitary = T::one() / T::lit(n as f64).sqrt();
        fft.forward_to_transposed(ws.image, ws.combined, ws.scratch);
        ws.combined.iter_mut().for_each(|v| *v = v.scale(unitary));
        crate::lowpass::for_each_gain(shape, lowpass_weight, |t, gain| {
            ws.residual[t] = ws.combined[t].scale(gain)
        });
        fft.inverse_from_transposed(ws.residual, ws.image, ws.scratch);
        let inverse_gain = fft.inverse_divisor::<T>() * unitary;
        ws.image.iter_mut().for_each(|v| *v = v.scale(inverse_gain));
        for c in 0..coils {
            encoding.encode_coil(c, ws.image, ws.block, ws.scratch);
            crate::ops::sub_from(&mut ws.data[c * n..(c + 1) * n], ws.block);
        }

        // b = F S^H F^H y', the residual at z = 0 (negated) and the features' input.
        combine_into(&encoding, ws.data, ws.image, ws.block, ws.scratch);
        fft.forward_to_transposed(ws.image, ws.first_gradient, ws.scratch);
        ws.first_gradient
            .iter_mut()
            .for_each(|v| *v = v.scale(unitary));

        // 4. The step.
        let lipschitz = estimate_lipschitz(
            plan,
            &encoding,
            LipschitzBuffers {
                vector: ws.residual,
                image: ws.image,
                coil_partials: ws.coil_partials,
                block: ws.block,
                scratch: ws.scratch,
            },
        )?;
        Ok(CoilPrepared {
            plan,
            workspace: ws,
            rows,
            scale,
            lipschitz,
            sampled,
            lowpass_weight,
            noise_variance,
        })
    }
}

/// `image = sum_c conj(S_c) F^H (M_c data_c)` (serial).
fn combine_into<T: Real, B: FftBackend<T>>(
    encoding: &CoilEncoding<'_, T, B>,
    data: &[Complex<T>],
    image: &mut [Complex<T>],
    block: &mut [Complex<T>],
    scratch: &mut [Complex<T>],
) {
    let n = encoding.fft.shape().len();
    image.fill(Complex::new(T::zero(), T::zero()));
    for c in 0..encoding.coils {
        block.copy_from_slice(&data[c * n..(c + 1) * n]);
        encoding.adjoint_coil_in_place(c, block, scratch);
        crate::ops::add_into(image, block);
    }
}

/// Scratch of [`estimate_lipschitz`] (`N` each, `coil_partials` `C N`, `scratch` the FFT's).
struct LipschitzBuffers<'b, T> {
    vector: &'b mut [Complex<T>],
    image: &'b mut [Complex<T>],
    coil_partials: &'b mut [Complex<T>],
    block: &'b mut [Complex<T>],
    scratch: &'b mut [Complex<T>],
}

/// `L` (module docs): power iteration on `P^{1/2} G P^{1/2}` from a fixed start, times
/// [`LIPSCHITZ_MARGIN`], at most `max P`.
fn estimate_lipschitz<T: Real, B: FftBackend<T>>(
    plan: &DictionaryPlan<'_, T, B>,
    encoding: &CoilEncoding<'_, T, B>,
    ws: LipschitzBuffers<'_, T>,
) -> Result<T> {
    let power = plan.power();
    let bound = power.iter().fold(T::zero(), |m, &p| m.max(p));
    if !bound.is_finite() {
        return Err(Error::NonFinite {
            what: "Lipschitz constant (the dictionary's responses overflow)",
        });
    }
    // A deterministic start with energy at every frequency (a fixed LCG's phases).
    let mut state: u32 = 0x2545_F491;
    for v in ws.vector.iter_mut() {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let angle = T::lit(f64::from(state >> 8) / f64::from(1u32 << 24) * core::f64::consts::TAU);
        *v = Complex::new(angle.cos(), angle.sin());
    }
    let mut normal = CoilResidual {
        encoding,
        data: None,
        image: ws.image,
        partials: &mut *ws.coil_partials,
    };
    let mut workers = [WorkerBuffers {
        block: &mut *ws.block,
        scratch: &mut *ws.scratch,
    }];
    let mut eigenvalue = T::zero();
    for _ in 0..LIPSCHITZ_POWER_ITERATIONS {
        let norm = ws
            .vector
            .iter()
            .map(|v| v.norm_sqr())
            .fold(T::zero(), |a, b| a + b)
            .sqrt();
        if !is_positive(norm) || !norm.is_finite() {
            break;
        }
        for (v, &p) in ws.vector.iter_mut().zip(power) {
            *v = v.scale(p.sqrt() / norm);
        }
        normal.residual(ws.vector, &mut workers, &Serial);
        for (v, &p) in ws.vector.iter_mut().zip(power) {
            *v = v.scale(p.sqrt());
        }
        eigenvalue = ws
            .vector
            .iter()
            .map(|v| v.norm_sqr())
            .fold(T::zero(), |a, b| a + b)
            .sqrt();
    }
    if !eigenvalue.is_finite() {
        return Err(Error::NonFinite {
            what: "Lipschitz constant (the coil data term overflows)",
        });
    }
    let lipschitz = (eigenvalue * T::lit(LIPSCHITZ_MARGIN)).min(bound);
    if !is_positive(lipschitz) {
        return Err(Error::NoSampledResponse);
    }
    Ok(lipschitz)
}

/// One multi-coil slice after [`CoilWorkspace::prepare`]; the counterpart of
/// [`crate::recon::Prepared`] with the same per-slice quantities and solve.
pub struct CoilPrepared<'w, 'a, 'p, T, B> {
    plan: &'w DictionaryPlan<'p, T, B>,
    workspace: &'w mut CoilWorkspace<'a, T>,
    rows: ActiveRows,
    scale: T,
    lipschitz: T,
    sampled: usize,
    lowpass_weight: T,
    noise_variance: T,
}

impl<T: Real, B: FftBackend<T>> CoilPrepared<'_, '_, '_, T, B> {
    /// `c = 1 / p99(|x0|)`, `x0 = S^H F^H y`.
    pub fn scale(&self) -> T {
        self.scale
    }

    /// `L`, the estimated squared norm of `M F S D` (module docs); the step is `1/L`.
    pub fn lipschitz(&self) -> T {
        self.lipschitz
    }

    /// Replaces `L` (tests and studies of the estimate; the features read it too).
    pub fn set_lipschitz(&mut self, lipschitz: T) {
        self.lipschitz = lipschitz;
    }

    /// Positions sampled in at least one coil.
    pub fn sampled(&self) -> usize {
        self.sampled
    }

    pub fn count(&self) -> usize {
        self.plan.count()
    }

    pub fn coils(&self) -> usize {
        self.workspace.coils
    }

    pub fn shape(&self) -> Shape {
        self.plan.shape()
    }

    /// The noise variance of one k-space sample of the scaled problem, the mean over the
    /// coils of [`crate::recon::Prepared::noise_variance`]'s estimate.
    pub fn noise_variance(&self) -> T {
        self.noise_variance
    }

    /// `|x0|` of the scaled problem (its 99th percentile is 1), natural layout.
    pub fn zero_filled_abs(&mut self, out: &mut [T]) -> Result<()> {
        let shape = self.plan.shape();
        check_len("zero-filled magnitude", out.len(), shape.len())?;
        let fft = self.plan.fft();
        let ws = &mut *self.workspace;
        fft.inverse_from_transposed(ws.combined, ws.image, ws.scratch);
        let gain = fft.inverse_divisor::<T>() / T::lit(shape.len() as f64).sqrt();
        for (o, v) in out.iter_mut().zip(ws.image.iter()) {
            *o = v.norm() * gain;
        }
        Ok(())
    }

    /// `|F^H(conj(h_k) (.) b)|`: filter `k`'s block of the first FISTA gradient (from
    /// `z = 0`), natural layout. One inverse FFT.
    pub fn gradient_abs(&mut self, k: usize, out: &mut [T]) -> Result<()> {
        let ws = &mut *self.workspace;
        let mut worker = WorkerBuffers {
            block: &mut *ws.residual,
            scratch: &mut *ws.scratch,
        };
        crate::recon::gradient_abs_into(
            self.plan,
            ActiveRows::all(self.plan.shape()),
            ws.first_gradient,
            k,
            out,
            &mut worker,
        )
    }

    /// [`Self::gradient_abs`] with the caller's buffers (as
    /// [`crate::recon::Prepared::gradient_abs_with`]).
    pub fn gradient_abs_with(
        &self,
        k: usize,
        out: &mut [T],
        worker: &mut WorkerBuffers<'_, T>,
    ) -> Result<()> {
        crate::recon::gradient_abs_into(
            self.plan,
            ActiveRows::all(self.plan.shape()),
            self.workspace.first_gradient,
            k,
            out,
            worker,
        )
    }

    /// Items 5–6 of DESIGN §3.7 on the calling thread.
    pub fn solve(
        &mut self,
        lambda: Lambda<'_, T>,
        iterations: usize,
        image: &mut [Complex<T>],
    ) -> Result<ReconReport<T>> {
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

    /// `iterations` steps of FISTA on the coil data term, then
    /// `x = F^H (G (.) F x0 + sum_k h_k (.) F z_k) / c` into `image` (`[n_y][n_x]`, on the
    /// scale of `x0`). The filters' chunks and the coils run on `executor`, one of `workers`
    /// each (`N` and [`MaskedSynthesis::required_scratch`] complex); the image is
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
        let fft = plan.fft();
        let ws = &mut *self.workspace;
        let synthesis = MaskedSynthesis {
            plan,
            mask: None,
            rows: ActiveRows::all(shape),
        };
        let encoding = CoilEncoding {
            fft,
            coils: ws.coils,
            sensitivities: &*ws.sensitivities,
            masks: &*ws.masks,
            rows: self.rows,
        };
        let mut normal = CoilResidual {
            encoding: &encoding,
            data: Some(&*ws.data),
            image: &mut *ws.image,
            partials: &mut *ws.coil_partials,
        };
        fista_normal_with(
            &synthesis,
            &mut normal,
            ws.first_gradient,
            lambda,
            T::one() / self.lipschitz,
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
        let nonzero_coefficients = crate::recon::synthesise(
            plan,
            ws.z,
            ws.combined,
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

    /// Item 7 of DESIGN §3.7 after [`Self::solve`]: the background gate of
    /// [`crate::recon::Prepared::gate_background`] with `x_low = F^H (G (.) F x0)` and the
    /// coils' noise variance (with `sum_c |S_c|² = 1` the noise of `x0` at a pixel is that of
    /// one coil).
    pub fn gate_background(&mut self, kappa: T, image: &mut [Complex<T>]) -> Result<()> {
        check_gate(kappa)?;
        let ws = &mut *self.workspace;
        gate(
            self.plan.fft(),
            self.lowpass_weight,
            ws.combined,
            ws.union_mask,
            self.noise_variance,
            kappa,
            image,
            ws.residual,
            ws.next_residual,
            ws.scratch,
        )
    }
}

/// Reconstructs one multi-coil slice: [`CoilWorkspace::prepare`], the solve, the gate.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_coils<T: Real, B: FftBackend<T>>(
    plan: &DictionaryPlan<'_, T, B>,
    kspace: &[Complex<T>],
    masks: &[T],
    sensitivities: &[Complex<T>],
    lambda: Lambda<'_, T>,
    config: &ReconConfig<T>,
    workspace: &mut CoilWorkspace<'_, T>,
    image: &mut [Complex<T>],
) -> Result<ReconReport<T>> {
    let n = plan.shape().len();
    check_len("image", image.len(), n)?;
    lambda.validate(plan.count() * n, n)?;
    if let Some(kappa) = config.background_gate {
        check_gate(kappa)?;
    }
    let mut prepared =
        workspace.prepare(plan, kspace, masks, sensitivities, config.lowpass_weight)?;
    let report = prepared.solve(lambda, config.iterations, image)?;
    if let Some(kappa) = config.background_gate {
        prepared.gate_background(kappa, image)?;
    }
    Ok(report)
}

impl<T, B> core::fmt::Debug for CoilPrepared<'_, '_, '_, T, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoilPrepared").finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for CoilWorkspace<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoilWorkspace")
            .field("shape", &self.shape)
            .field("count", &self.count)
            .field("coils", &self.coils)
            .finish_non_exhaustive()
    }
}

impl<T, B> core::fmt::Debug for CoilEncoding<'_, T, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoilEncoding")
            .field("coils", &self.coils)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}
