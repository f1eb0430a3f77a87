//! Linear operators (forward and adjoint) and small combinators named after the maths.
//!
//! As in BART's `linops/`, operators know nothing of the algorithms that use them; the
//! solver in [`crate::fista`] is generic over [`LinearOperator`]. Every operator in this
//! crate has its adjoint checked by [`adjoint_mismatch`] in the tests.

use crate::fft::{Fft2, FftBackend};
use crate::real::Real;
use crate::shape::Shape;
use num_complex::Complex;

/// A linear map `A: C^domain_len -> C^range_len` with its adjoint, seen as a sum over
/// domain blocks: `A z = sum_b A_b z_b` (for the dictionary: one block per filter; most
/// operators have a single block).
///
/// Buffers are the caller's: `scratch` must hold at least `scratch_len()` elements, whose
/// contents on entry are arbitrary. Implementations panic on wrong slice lengths — a
/// programming error, since the solver validates sizes once when its workspace is built.
pub trait LinearOperator<T: Real> {
    fn domain_len(&self) -> usize;
    fn range_len(&self) -> usize;
    /// Scratch (complex elements) that every method needs.
    fn scratch_len(&self) -> usize {
        0
    }
    /// The domain is a concatenation of blocks of this length. Algorithms may work block by
    /// block so that neither `A z` nor `A^H y` needs all blocks at once.
    fn block_len(&self) -> usize {
        self.domain_len()
    }
    /// `y += A_b x_b` for block `index` (`x_block` has `block_len()` elements).
    fn apply_block_add(
        &self,
        x_block: &[Complex<T>],
        index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    );
    /// `y += A_b x_b` like [`Self::apply_block_add`], free to overwrite `x_block` (the
    /// solver's forward pass does not need it afterwards, and an operator may then transform
    /// in place; [`crate::dictionary::MaskedSynthesis`] does). The default keeps `x_block`.
    fn apply_block_add_consuming(
        &self,
        x_block: &mut [Complex<T>],
        index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        self.apply_block_add(x_block, index, y, scratch);
    }
    /// Block `index` of `A^H y`, written to `out` (`block_len()` elements).
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        index: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    );
    /// `y = A x`.
    fn apply(&self, x: &[Complex<T>], y: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        y[..self.range_len()].fill(Complex::new(T::zero(), T::zero()));
        for (index, block) in x[..self.domain_len()]
            .chunks_exact(self.block_len())
            .enumerate()
        {
            self.apply_block_add(block, index, y, scratch);
        }
    }
    /// `x = A^H y`.
    fn adjoint(&self, y: &[Complex<T>], x: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        let block = self.block_len();
        for (index, out) in x[..self.domain_len()].chunks_exact_mut(block).enumerate() {
            self.adjoint_block(y, index, out, scratch);
        }
    }
}

/// `y -= x`.
pub(crate) fn sub_from<T: Real>(y: &mut [Complex<T>], x: &[Complex<T>]) {
    for (acc, &value) in y.iter_mut().zip(x) {
        *acc = *acc - value;
    }
}

/// `y += x`.
pub(crate) fn add_into<T: Real>(y: &mut [Complex<T>], x: &[Complex<T>]) {
    for (acc, &value) in y.iter_mut().zip(x) {
        *acc = *acc + value;
    }
}

/// `A B`: apply `inner`, then `outer` (`outer` must have a single block).
#[derive(Debug, Clone, Copy)]
pub struct Chain<A, B> {
    pub outer: A,
    pub inner: B,
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> LinearOperator<T> for Chain<A, B> {
    fn domain_len(&self) -> usize {
        self.inner.domain_len()
    }
    fn range_len(&self) -> usize {
        self.outer.range_len()
    }
    fn scratch_len(&self) -> usize {
        self.inner.range_len() + self.outer.scratch_len().max(self.inner.scratch_len())
    }
    fn block_len(&self) -> usize {
        self.inner.block_len()
    }
    /// `y += A (B_b x_b)`; `A` is linear, so the blocks of `A B` are `A B_b`.
    fn apply_block_add(
        &self,
        x_block: &[Complex<T>],
        index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let (middle, rest) = scratch.split_at_mut(self.inner.range_len());
        middle.fill(Complex::new(T::zero(), T::zero()));
        self.inner.apply_block_add(x_block, index, middle, rest);
        self.outer.apply_block_add(middle, 0, y, rest);
    }
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        index: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let (middle, rest) = scratch.split_at_mut(self.inner.range_len());
        self.outer.adjoint(y, middle, rest);
        self.inner.adjoint_block(middle, index, out, rest);
    }
}

/// `s A` for a real scalar `s`.
#[derive(Debug, Clone, Copy)]
pub struct Scaled<A, T> {
    pub factor: T,
    pub op: A,
}

impl<T: Real, A: LinearOperator<T>> LinearOperator<T> for Scaled<A, T> {
    fn domain_len(&self) -> usize {
        self.op.domain_len()
    }
    fn range_len(&self) -> usize {
        self.op.range_len()
    }
    fn scratch_len(&self) -> usize {
        self.op.range_len() + self.op.scratch_len()
    }
    fn block_len(&self) -> usize {
        self.op.block_len()
    }
    fn apply_block_add(
        &self,
        x_block: &[Complex<T>],
        index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let (part, rest) = scratch.split_at_mut(self.op.range_len());
        part.fill(Complex::new(T::zero(), T::zero()));
        self.op.apply_block_add(x_block, index, part, rest);
        for (acc, &value) in y.iter_mut().zip(part.iter()) {
            *acc = *acc + value.scale(self.factor);
        }
    }
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        index: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        self.op
            .adjoint_block(y, index, out, &mut scratch[self.op.range_len()..]);
        out.iter_mut().for_each(|v| *v = v.scale(self.factor));
    }
}

/// Sampling mask `M`: `y = m (.) x` with real weights (0/1 for a sampling pattern).
/// Self-adjoint.
#[derive(Debug, Clone, Copy)]
pub struct Mask<'a, T> {
    pub weights: &'a [T],
}

impl<T: Real> LinearOperator<T> for Mask<'_, T> {
    fn domain_len(&self) -> usize {
        self.weights.len()
    }
    fn range_len(&self) -> usize {
        self.weights.len()
    }
    fn apply_block_add(
        &self,
        x: &[Complex<T>],
        _index: usize,
        y: &mut [Complex<T>],
        _scratch: &mut [Complex<T>],
    ) {
        assert_eq!(x.len(), self.weights.len());
        assert_eq!(y.len(), self.weights.len());
        for ((out, &value), &weight) in y.iter_mut().zip(x).zip(self.weights) {
            *out = *out + value.scale(weight);
        }
    }
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        _index: usize,
        out: &mut [Complex<T>],
        _scratch: &mut [Complex<T>],
    ) {
        assert_eq!(y.len(), self.weights.len());
        assert_eq!(out.len(), self.weights.len());
        for ((o, &value), &weight) in out.iter_mut().zip(y).zip(self.weights) {
            *o = value.scale(weight);
        }
    }
}

/// `(-1)^(y + x)`: the checkerboard that turns `fft2` into the centred transform.
#[inline(always)]
pub(crate) fn checkerboard<T: Real>(y: usize, x: usize) -> T {
    if (y + x).is_multiple_of(2) {
        T::one()
    } else {
        -T::one()
    }
}

/// The centred unitary 2-D Fourier transform of DESIGN §3.2,
/// `F x = fftshift(fft2(ifftshift(x))) / sqrt(N)`, natural layout on both sides.
/// Unitary, so `adjoint = inverse`.
#[derive(Debug, Clone, Copy)]
pub struct CentredFourier<'a, B> {
    pub fft: &'a Fft2<B>,
}

impl<T: Real, B: FftBackend<T>> LinearOperator<T> for CentredFourier<'_, B> {
    fn domain_len(&self) -> usize {
        self.fft.shape().len()
    }
    fn range_len(&self) -> usize {
        self.fft.shape().len()
    }
    fn scratch_len(&self) -> usize {
        2 * self.fft.shape().len() + self.fft.scratch_len()
    }
    fn apply_block_add(
        &self,
        x: &[Complex<T>],
        _index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let shape = self.fft.shape();
        let n = shape.len();
        let (modulated, rest) = scratch.split_at_mut(n);
        let (spectrum, fft_scratch) = rest.split_at_mut(n);
        modulate(shape, &x[..n], modulated);
        self.fft
            .forward_to_transposed(modulated, spectrum, fft_scratch);
        let norm = T::one() / T::lit(n as f64).sqrt();
        for row in 0..shape.n_y() {
            for col in 0..shape.n_x() {
                let out = &mut y[shape.natural(row, col)];
                *out = *out
                    + spectrum[shape.transposed(row, col)].scale(norm * checkerboard(row, col));
            }
        }
    }
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        _index: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let shape = self.fft.shape();
        let n = shape.len();
        let (spectrum, rest) = scratch.split_at_mut(n);
        let (_, fft_scratch) = rest.split_at_mut(n);
        for row in 0..shape.n_y() {
            for col in 0..shape.n_x() {
                spectrum[shape.transposed(row, col)] =
                    y[shape.natural(row, col)].scale(checkerboard(row, col));
            }
        }
        self.fft.inverse_from_transposed(spectrum, out, fft_scratch);
        let norm = self.fft.inverse_divisor::<T>() / T::lit(n as f64).sqrt();
        for row in 0..shape.n_y() {
            for col in 0..shape.n_x() {
                let i = shape.natural(row, col);
                out[i] = out[i].scale(norm * checkerboard(row, col));
            }
        }
    }
}

/// `sum_i conj(a_i) b_i`, accumulated in `f64`.
pub fn inner_product<T: Real>(a: &[Complex<T>], b: &[Complex<T>]) -> Complex<f64> {
    a.iter().zip(b).fold(Complex::new(0.0, 0.0), |acc, (u, v)| {
        let u = Complex::new(u.re.to_f64_lossless(), u.im.to_f64_lossless());
        let v = Complex::new(v.re.to_f64_lossless(), v.im.to_f64_lossless());
        acc + u.conj() * v
    })
}

/// Relative mismatch of the adjoint identity `<A x, y> = <x, A^H y>` (BART `lintest`):
/// `|<Ax, y> - <x, A^H y>| / (|A x| |y|)`. Buffers are the caller's: `ax` of `range_len`,
/// `ahy` of `domain_len`, `scratch` of `scratch_len`. Near machine epsilon for a correct
/// adjoint; order one for a wrong one.
pub fn adjoint_mismatch<T: Real, A: LinearOperator<T>>(
    op: &A,
    x: &[Complex<T>],
    y: &[Complex<T>],
    ax: &mut [Complex<T>],
    ahy: &mut [Complex<T>],
    scratch: &mut [Complex<T>],
) -> f64 {
    op.apply(x, ax, scratch);
    op.adjoint(y, ahy, scratch);
    let lhs = inner_product(y, ax);
    let rhs = inner_product(ahy, x);
    let scale = num_traits::Float::sqrt(inner_product(ax, ax).re * inner_product(y, y).re)
        .max(f64::MIN_POSITIVE);
    (lhs - rhs).norm() / scale
}

/// `out = C (.) input` (checkerboard modulation), natural layout.
pub(crate) fn modulate<T: Real>(shape: Shape, input: &[Complex<T>], out: &mut [Complex<T>]) {
    for (y, (src, dst)) in input
        .chunks_exact(shape.n_x())
        .zip(out.chunks_exact_mut(shape.n_x()))
        .enumerate()
    {
        for (x, (s, d)) in src.iter().zip(dst.iter_mut()).enumerate() {
            *d = s.scale(checkerboard(y, x));
        }
    }
}

/// `data = gain C (.) data`, natural layout.
pub(crate) fn modulate_in_place<T: Real>(shape: Shape, data: &mut [Complex<T>], gain: T) {
    for (y, row) in data.chunks_exact_mut(shape.n_x()).enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            *v = v.scale(gain * checkerboard(y, x));
        }
    }
}

/// `out = gain · C Φ^H(m (.) Φ(C x))`: an image-domain Fourier multiplier (natural layout on
/// both sides), where `multiply` applies `m` in place to the spectrum in the transposed
/// layout. `scratch` needs `2N + fft.scratch_len()` elements.
pub(crate) fn fourier_multiplier<T: Real, B: FftBackend<T>>(
    fft: &Fft2<B>,
    x: &[Complex<T>],
    out: &mut [Complex<T>],
    scratch: &mut [Complex<T>],
    gain: T,
    multiply: impl FnOnce(&mut [Complex<T>]),
) {
    let shape = fft.shape();
    let n = shape.len();
    let (modulated, rest) = scratch.split_at_mut(n);
    let (spectrum, fft_scratch) = rest.split_at_mut(n);
    modulate(shape, &x[..n], modulated);
    fft.forward_to_transposed(modulated, spectrum, fft_scratch);
    multiply(spectrum);
    fft.inverse_from_transposed(spectrum, out, fft_scratch);
    modulate_in_place(shape, out, gain);
}
