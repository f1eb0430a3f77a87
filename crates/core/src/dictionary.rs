//! Convolutional dictionaries (DESIGN §3.3): filters, their Fourier responses, and the
//! operators built on them.

use crate::error::{Error, Result};
use crate::fft::{ActiveRows, Fft2, FftBackend};
use crate::ops::{checkerboard, fourier_multiplier, LinearOperator};
use crate::real::Real;
use crate::shape::{check_capacity, check_len, Shape};
use num_complex::Complex;

/// Largest filter side (DESIGN §3.3: odd, `s <= 11`).
pub const MAX_FILTER_SIDE: usize = 11;

/// A validated view of `K` real filters of `s × s` taps, `[K][s][s]` row-major, origin at
/// the centre tap.
#[derive(Debug, Clone, Copy)]
pub struct Dictionary<'a, T> {
    filters: &'a [T],
    count: usize,
    side: usize,
}

impl<'a, T: Real> Dictionary<'a, T> {
    /// Fails unless `side` is odd in `1..=MAX_FILTER_SIDE`, `count >= 1`,
    /// `filters.len() == count * side²` and every tap is finite.
    pub fn new(filters: &'a [T], count: usize, side: usize) -> Result<Self> {
        if side.is_multiple_of(2) || side > MAX_FILTER_SIDE {
            return Err(Error::InvalidFilterSize { side });
        }
        if count == 0 {
            return Err(Error::EmptyDictionary);
        }
        check_len("dictionary", filters.len(), count * side * side)?;
        if filters.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "dictionary" });
        }
        Ok(Self {
            filters,
            count,
            side,
        })
    }

    /// Number of filters `K`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Filter side `s`.
    pub fn side(&self) -> usize {
        self.side
    }

    /// Taps of filter `k`, `[s][s]`.
    pub fn filter(&self, k: usize) -> &'a [T] {
        let taps = self.side * self.side;
        &self.filters[k * taps..(k + 1) * taps]
    }
}

/// What [`DictionaryPlan::compute`] filled: the grid, filter count and side. Only
/// `compute` makes one, so a [`DictionaryPlan::view`] always matches its buffers' layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInfo {
    shape: Shape,
    count: usize,
    side: usize,
}

impl PlanInfo {
    pub fn shape(&self) -> Shape {
        self.shape
    }
    pub fn count(&self) -> usize {
        self.count
    }
    pub fn side(&self) -> usize {
        self.side
    }
}

/// The dictionary's Fourier responses on one grid, computed once per dictionary and grid
/// ("plan once, run many").
///
/// `h_k = fftshift(fft2(pad(d_k)))` (DESIGN §3.3, §3.7 item 4) is stored divided by
/// `sqrt(N)` and in the transposed layout `[n_x][n_y]` of [`Fft2`], so that the solver's
/// forward operator is `M (.) sum_k h̃_k (.) Φ(z̃_k)` with no further scaling. `power` holds
/// `sum_k |h_k|²` (unscaled), from which the Lipschitz constant is a masked maximum.
pub struct DictionaryPlan<'a, T, B> {
    fft: &'a Fft2<B>,
    count: usize,
    side: usize,
    responses: &'a [Complex<T>],
    power: &'a [T],
}

impl<'a, T, B> DictionaryPlan<'a, T, B>
where
    B: FftBackend<T>,
    T: Real,
{
    /// Elements of the `responses` buffer: `K N` complex.
    pub fn responses_len(shape: Shape, count: usize) -> usize {
        count * shape.len()
    }

    /// Elements of the `power` buffer: `N` real.
    pub fn power_len(shape: Shape) -> usize {
        shape.len()
    }

    /// Scratch for [`Self::new`]: one grid plus the FFT's scratch.
    pub fn scratch_len(fft: &Fft2<B>) -> usize {
        fft.shape().len() + fft.scratch_len()
    }

    /// Computes every `h_k` (K FFTs) and `sum_k |h_k|²` into the caller's buffers and
    /// returns the plan viewing them. Fails if a buffer is too small or a filter is larger
    /// than the grid.
    pub fn new(
        fft: &'a Fft2<B>,
        dictionary: Dictionary<'_, T>,
        responses: &'a mut [Complex<T>],
        power: &'a mut [T],
        scratch: &mut [Complex<T>],
    ) -> Result<Self> {
        let info = Self::compute(fft, dictionary, responses, power, scratch)?;
        Self::view(fft, info, responses, power)
    }

    /// The expensive half of [`Self::new`]: fills `responses` and `power` once per
    /// dictionary and grid. Keep the buffers and the returned [`PlanInfo`], then make a
    /// plan for each slice with [`Self::view`] at no cost.
    pub fn compute(
        fft: &Fft2<B>,
        dictionary: Dictionary<'_, T>,
        responses: &mut [Complex<T>],
        power: &mut [T],
        scratch: &mut [Complex<T>],
    ) -> Result<PlanInfo> {
        let shape = fft.shape();
        let n = shape.len();
        let count = dictionary.count();
        let side = dictionary.side();
        if side > shape.n_y().min(shape.n_x()) {
            return Err(Error::InvalidFilterSize { side });
        }
        check_capacity(
            "dictionary responses",
            responses.len(),
            Self::responses_len(shape, count),
        )?;
        check_capacity("dictionary power", power.len(), Self::power_len(shape))?;
        check_capacity(
            "dictionary plan scratch",
            scratch.len(),
            Self::scratch_len(fft),
        )?;
        let responses = &mut responses[..count * n];
        let power = &mut power[..n];
        let (padded, fft_scratch) = scratch.split_at_mut(n);

        let inv_sqrt_n = T::one() / T::lit(n as f64).sqrt();
        let half = side / 2;
        power.fill(T::zero());
        for (k, response) in responses.chunks_exact_mut(n).enumerate() {
            // fftshift(fft2(p)) = fft2((-1)^m p) for even sides: modulate instead of shifting.
            padded.fill(Complex::new(T::zero(), T::zero()));
            for (i, row) in dictionary.filter(k).chunks_exact(side).enumerate() {
                let y = (i + shape.n_y() - half) % shape.n_y();
                for (j, &tap) in row.iter().enumerate() {
                    let x = (j + shape.n_x() - half) % shape.n_x();
                    padded[shape.natural(y, x)] =
                        Complex::new(tap * checkerboard::<T>(y, x), T::zero());
                }
            }
            fft.forward_to_transposed(padded, response, fft_scratch);
            for (p, h) in power.iter_mut().zip(response.iter_mut()) {
                *p += h.norm_sqr();
                *h = h.scale(inv_sqrt_n);
            }
        }
        Ok(PlanInfo { shape, count, side })
    }

    /// A plan over buffers that [`Self::compute`] filled for `info`. Fails if `fft` is for
    /// another grid or a buffer is shorter than `info` requires.
    pub fn view(
        fft: &'a Fft2<B>,
        info: PlanInfo,
        responses: &'a [Complex<T>],
        power: &'a [T],
    ) -> Result<Self> {
        let shape = fft.shape();
        if shape != info.shape {
            return Err(Error::LengthMismatch {
                what: "dictionary plan grid",
                expected: info.shape.len(),
                actual: shape.len(),
            });
        }
        let n = shape.len();
        check_capacity("dictionary responses", responses.len(), info.count * n)?;
        check_capacity("dictionary power", power.len(), n)?;
        Ok(Self {
            fft,
            count: info.count,
            side: info.side,
            responses: &responses[..info.count * n],
            power: &power[..n],
        })
    }

    pub fn fft(&self) -> &'a Fft2<B> {
        self.fft
    }

    pub fn shape(&self) -> Shape {
        self.fft.shape()
    }

    /// Number of filters `K`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Filter side `s`.
    pub fn side(&self) -> usize {
        self.side
    }

    /// `h_k / sqrt(N)`, transposed layout.
    pub fn response(&self, k: usize) -> &[Complex<T>] {
        let n = self.shape().len();
        &self.responses[k * n..(k + 1) * n]
    }

    /// `sum_k |h_k|²`, transposed layout.
    pub fn power(&self) -> &[T] {
        self.power
    }

    /// Lipschitz constant of `z -> M F D z` (DESIGN §3.3): the largest `sum_k |h_k(w)|²`
    /// over frequencies with non-zero `mask_transposed` weight (transposed layout).
    pub fn lipschitz(&self, mask_transposed: &[T]) -> T {
        self.power
            .iter()
            .zip(mask_transposed)
            .filter(|(_, &m)| m != T::zero())
            .fold(T::zero(), |acc, (&p, _)| acc.max(p))
    }
}

/// The dictionary synthesis `D z = sum_k d_k (*) z_k` in the image domain (circular
/// convolution, natural layout): `C^{K N} -> C^N`. Computed as `F^H sum_k h_k F z_k`.
/// Blocks are the `K` feature maps.
pub struct ConvDictionary<'p, 'a, T, B> {
    pub plan: &'p DictionaryPlan<'a, T, B>,
}

impl<T: Real, B: FftBackend<T>> ConvDictionary<'_, '_, T, B> {
    /// `F^H (h_k (.) F x) = C Φ^H(h̃_k (.) Φ(C x)) / sqrt(N)` since `h̃_k = h_k / sqrt(N)`.
    fn gain(&self) -> T {
        self.plan.fft().inverse_divisor::<T>() / T::lit(self.plan.shape().len() as f64).sqrt()
    }
}

impl<B, T> LinearOperator<T> for ConvDictionary<'_, '_, T, B>
where
    B: FftBackend<T>,
    T: Real,
{
    fn domain_len(&self) -> usize {
        self.plan.count() * self.plan.shape().len()
    }
    fn range_len(&self) -> usize {
        self.plan.shape().len()
    }
    fn scratch_len(&self) -> usize {
        3 * self.plan.shape().len() + self.plan.fft().scratch_len()
    }
    fn block_len(&self) -> usize {
        self.plan.shape().len()
    }
    /// `x += d_k (*) z_k`.
    fn apply_block_add(
        &self,
        feature: &[Complex<T>],
        k: usize,
        x: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let n = self.plan.shape().len();
        let (part, rest) = scratch.split_at_mut(n);
        let response = self.plan.response(k);
        fourier_multiplier(
            self.plan.fft(),
            feature,
            part,
            rest,
            self.gain(),
            |spectrum| {
                spectrum
                    .iter_mut()
                    .zip(response)
                    .for_each(|(s, &h)| *s = h * *s)
            },
        );
        crate::ops::add_into(x, part);
    }
    /// `out = d_k^T (*) x` (correlation with `d_k`).
    fn adjoint_block(
        &self,
        x: &[Complex<T>],
        k: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let response = self.plan.response(k);
        fourier_multiplier(self.plan.fft(), x, out, scratch, self.gain(), |spectrum| {
            spectrum
                .iter_mut()
                .zip(response)
                .for_each(|(s, &h)| *s = h.conj() * *s)
        });
    }
}

/// The solver's forward operator `z̃ -> M (.) sum_k h̃_k (.) Φ(z̃_k)`: `A D` of DESIGN §3.5
/// expressed on checkerboard-modulated feature maps `z̃_k = C z_k` (natural layout) with the
/// result in the transposed spectral layout (see [`crate::fft`]). It is `A D` up to the
/// unitary maps `C` and transposition, so FISTA on it follows FISTA on `A D` exactly.
///
/// One `apply_block_add` is one forward FFT and one `adjoint_block` one inverse FFT, so a
/// FISTA iteration costs the DESIGN floor of `2K` FFTs plus elementwise work.
///
/// **Pruning.** Only the transposed rows (readout frequencies `kx`) in `rows` are computed:
/// the operator is exactly the one with the effective mask `M (.) R`, where `R` is 1 on
/// the rows in `rows` and 0 elsewhere (with `mask: None`, `M = 1`). When `rows` holds
/// every row with a non-zero weight ([`ActiveRows::of_transposed_mask`], what
/// [`Self::pruned`] and [`crate::recon::Workspace::prepare`] use), `M (.) R = M` and the
/// pruned operator gives the same values as the unpruned one (`rows =
/// ActiveRows::all(shape)`): the skipped `Y` passes only produced values multiplied by a
/// zero weight (forward) or exact zeros (adjoint). For finite inputs the results compare
/// equal element by element (only the sign of an exact zero may differ; they differ more
/// only where the unpruned product `h̃ Φ(z̃) · 0` overflows to NaN).
pub struct MaskedSynthesis<'p, 'a, T, B> {
    pub plan: &'p DictionaryPlan<'a, T, B>,
    /// Sampling weights in the transposed layout; `None` means fully sampled.
    pub mask: Option<&'p [T]>,
    /// The transposed rows computed; [`ActiveRows::all`] for no pruning. Must be for the
    /// plan's grid (`rows.len() == n_x`; the methods panic otherwise).
    pub rows: ActiveRows,
}

impl<'p, 'a, B, T> MaskedSynthesis<'p, 'a, T, B>
where
    B: FftBackend<T>,
    T: Real,
{
    /// Scratch of `apply` and `adjoint_block`.
    pub fn required_scratch(plan: &DictionaryPlan<'_, T, B>) -> usize {
        plan.shape().len() + plan.fft().scratch_len()
    }

    /// The operator with transposed sampling weights `mask` (`[n_x][n_y]`), pruned to the
    /// rows where `mask` is non-zero. Fails if `mask` does not have `n_y n_x` elements.
    pub fn pruned(plan: &'p DictionaryPlan<'a, T, B>, mask: &'p [T]) -> Result<Self> {
        let rows = ActiveRows::of_transposed_mask(plan.shape(), mask)?;
        Ok(Self {
            plan,
            mask: Some(mask),
            rows,
        })
    }
}

/// `acc += m (.) (h (.) s)`, or `acc += h (.) s` without weights.
#[inline(always)]
fn accumulate_masked<T: Real>(
    acc: &mut [Complex<T>],
    spectrum: &[Complex<T>],
    response: &[Complex<T>],
    mask: Option<&[T]>,
) {
    match mask {
        Some(mask) => {
            for (((acc, &s), &h), &m) in acc.iter_mut().zip(spectrum).zip(response).zip(mask) {
                *acc = *acc + (h * s).scale(m);
            }
        }
        None => {
            for ((acc, &s), &h) in acc.iter_mut().zip(spectrum).zip(response) {
                *acc = *acc + h * s;
            }
        }
    }
}

/// `spectrum = gain m (.) conj(h) (.) r`, or without `m`.
#[inline(always)]
fn weight_adjoint<T: Real>(
    spectrum: &mut [Complex<T>],
    residual: &[Complex<T>],
    response: &[Complex<T>],
    mask: Option<&[T]>,
    gain: T,
) {
    match mask {
        Some(mask) => {
            for (((s, &r), &h), &m) in spectrum.iter_mut().zip(residual).zip(response).zip(mask) {
                *s = (h.conj() * r).scale(gain * m);
            }
        }
        None => {
            for ((s, &r), &h) in spectrum.iter_mut().zip(residual).zip(response) {
                *s = (h.conj() * r).scale(gain);
            }
        }
    }
}

impl<B, T> LinearOperator<T> for MaskedSynthesis<'_, '_, T, B>
where
    B: FftBackend<T>,
    T: Real,
{
    fn domain_len(&self) -> usize {
        self.plan.count() * self.plan.shape().len()
    }
    fn range_len(&self) -> usize {
        self.plan.shape().len()
    }
    fn scratch_len(&self) -> usize {
        Self::required_scratch(self.plan)
    }
    fn block_len(&self) -> usize {
        self.plan.shape().len()
    }
    /// `y += M (.) R (.) h̃_k (.) Φ(z̃_k)`: one forward FFT, whose `Y` pass runs on the rows
    /// in `R = rows` only; `y` is not touched outside them.
    fn apply_block_add(
        &self,
        feature: &[Complex<T>],
        k: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let n = self.plan.shape().len();
        let (spectrum, fft_scratch) = scratch.split_at_mut(n);
        let response = self.plan.response(k);
        let fft = self.plan.fft();
        if self.rows.is_all() {
            fft.forward_to_transposed(feature, spectrum, fft_scratch);
            accumulate_masked(&mut y[..n], spectrum, response, self.mask);
            return;
        }
        fft.forward_to_transposed_rows(feature, spectrum, &self.rows, fft_scratch);
        let n_y = self.plan.shape().n_y();
        for run in self.rows.runs() {
            let span = run.start * n_y..run.end * n_y;
            accumulate_masked(
                &mut y[span.clone()],
                &spectrum[span.clone()],
                &response[span.clone()],
                self.mask.map(|m| &m[span]),
            );
        }
    }
    /// `y += M (.) R (.) h̃_k (.) Φ(z̃_k)` as [`Self::apply_block_add`], transforming
    /// `feature` in place ([`Fft2::forward_in_place_rows`]): one grid of scratch fewer in
    /// cache per filter (DESIGN §3.5).
    fn apply_block_add_consuming(
        &self,
        feature: &mut [Complex<T>],
        k: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let (n, n_y) = (self.plan.shape().len(), self.plan.shape().n_y());
        let response = self.plan.response(k);
        self.plan
            .fft()
            .forward_in_place_rows(&mut feature[..n], &self.rows, scratch);
        for run in self.rows.runs() {
            let span = run.start * n_y..run.end * n_y;
            accumulate_masked(
                &mut y[span.clone()],
                &feature[span.clone()],
                &response[span.clone()],
                self.mask.map(|m| &m[span]),
            );
        }
    }
    /// `out = Φ^H(R (.) M (.) conj(h̃_k) (.) y) · inverse_divisor`: one inverse FFT whose `Y`
    /// pass runs on the rows in `R = rows` only; `y` is not read outside them. The weighted
    /// spectrum is formed in `out` and transformed there ([`Fft2::inverse_in_place_rows`]).
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        k: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let (n, n_y) = (self.plan.shape().len(), self.plan.shape().n_y());
        let gain = self.plan.fft().inverse_divisor::<T>();
        let response = self.plan.response(k);
        let out = &mut out[..n];
        for run in self.rows.runs() {
            let span = run.start * n_y..run.end * n_y;
            weight_adjoint(
                &mut out[span.clone()],
                &y[span.clone()],
                &response[span.clone()],
                self.mask.map(|m| &m[span]),
                gain,
            );
        }
        self.plan
            .fft()
            .inverse_in_place_rows(out, &self.rows, scratch);
    }
}

impl<T, B> core::fmt::Debug for DictionaryPlan<'_, T, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DictionaryPlan")
            .field("count", &self.count)
            .field("side", &self.side)
            .field("elements", &self.responses.len())
            .finish_non_exhaustive()
    }
}

impl<T, B> core::fmt::Debug for ConvDictionary<'_, '_, T, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConvDictionary")
            .field("plan", self.plan)
            .finish()
    }
}

impl<T, B> core::fmt::Debug for MaskedSynthesis<'_, '_, T, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MaskedSynthesis")
            .field("plan", self.plan)
            .field("masked", &self.mask.is_some())
            .field("rows", &self.rows)
            .finish()
    }
}
