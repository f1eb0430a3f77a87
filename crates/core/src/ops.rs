//! Linear operators (forward and adjoint) and small combinators named after the maths.
//!
//! As in BART's `linops/`, operators know nothing of the algorithms that use them; the
//! solver in [`crate::fista`] is generic over [`LinearOperator`]. Every operator in this
//! crate has its adjoint checked by [`adjoint_mismatch`] in the tests.

use crate::fft::{Fft2, FftBackend};
use crate::real::Real;
use num_complex::Complex;

/// A linear map `A: C^domain_len -> C^range_len` with its adjoint.
///
/// Buffers are the caller's: `scratch` must hold at least `scratch_len()` elements, whose
/// contents on entry are arbitrary. Implementations panic on wrong slice lengths — a
/// programming error, since the solver validates sizes once when its workspace is built.
pub trait LinearOperator<T: Real> {
    fn domain_len(&self) -> usize;
    fn range_len(&self) -> usize;
    /// Scratch (complex elements) that `apply`, `adjoint` and `adjoint_block` need.
    fn scratch_len(&self) -> usize {
        0
    }
    /// `y = A x`.
    fn apply(&self, x: &[Complex<T>], y: &mut [Complex<T>], scratch: &mut [Complex<T>]);
    /// `x = A^H y`.
    fn adjoint(&self, y: &[Complex<T>], x: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        let block = self.block_len();
        for (index, out) in x.chunks_exact_mut(block).enumerate() {
            self.adjoint_block(y, index, out, scratch);
        }
    }
    /// The domain is a concatenation of blocks of this length (for the dictionary: one
    /// feature map per filter). Algorithms may consume `A^H y` one block at a time so that
    /// the whole gradient never has to be stored.
    fn block_len(&self) -> usize {
        self.domain_len()
    }
    /// Block `index` of `A^H y`, written to `out` (`block_len()` elements).
    fn adjoint_block(&self, y: &[Complex<T>], index: usize, out: &mut [Complex<T>], scratch: &mut [Complex<T>]);
}

/// `A B`: apply `inner`, then `outer`.
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
    fn apply(&self, x: &[Complex<T>], y: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        let (middle, rest) = scratch.split_at_mut(self.inner.range_len());
        self.inner.apply(x, middle, rest);
        self.outer.apply(middle, y, rest);
    }
    fn block_len(&self) -> usize {
        self.inner.block_len()
    }
    fn adjoint_block(&self, y: &[Complex<T>], index: usize, out: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
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
        self.op.scratch_len()
    }
    fn apply(&self, x: &[Complex<T>], y: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        self.op.apply(x, y, scratch);
        y.iter_mut().for_each(|v| *v = v.scale(self.factor));
    }
    fn block_len(&self) -> usize {
        self.op.block_len()
    }
    fn adjoint_block(&self, y: &[Complex<T>], index: usize, out: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        self.op.adjoint_block(y, index, out, scratch);
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
    fn apply(&self, x: &[Complex<T>], y: &mut [Complex<T>], _scratch: &mut [Complex<T>]) {
        assert_eq!(x.len(), self.weights.len());
        assert_eq!(y.len(), self.weights.len());
        for ((out, &value), &weight) in y.iter_mut().zip(x).zip(self.weights) {
            *out = value.scale(weight);
        }
    }
    fn adjoint_block(&self, y: &[Complex<T>], _index: usize, out: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        self.apply(y, out, scratch);
    }
}

/// `(-1)^(y + x)`: the checkerboard that turns `fft2` into the centred transform.
#[inline(always)]
pub(crate) fn checkerboard<T: Real>(y: usize, x: usize) -> T {
    if (y + x) % 2 == 0 {
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
    fn apply(&self, x: &[Complex<T>], y: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        let shape = self.fft.shape();
        let n = shape.len();
        let (modulated, rest) = scratch.split_at_mut(n);
        let (spectrum, fft_scratch) = rest.split_at_mut(n);
        for row in 0..shape.n_y() {
            for col in 0..shape.n_x() {
                let i = shape.natural(row, col);
                modulated[i] = x[i].scale(checkerboard(row, col));
            }
        }
        self.fft.forward_to_transposed(modulated, spectrum, fft_scratch);
        let norm = T::one() / T::lit(n as f64).sqrt();
        for row in 0..shape.n_y() {
            for col in 0..shape.n_x() {
                y[shape.natural(row, col)] =
                    spectrum[shape.transposed(row, col)].scale(norm * checkerboard(row, col));
            }
        }
    }
    fn adjoint_block(&self, y: &[Complex<T>], _index: usize, out: &mut [Complex<T>], scratch: &mut [Complex<T>]) {
        let shape = self.fft.shape();
        let n = shape.len();
        let (spectrum, rest) = scratch.split_at_mut(n);
        let (_, fft_scratch) = rest.split_at_mut(n);
        for row in 0..shape.n_y() {
            for col in 0..shape.n_x() {
                spectrum[shape.transposed(row, col)] = y[shape.natural(row, col)].scale(checkerboard(row, col));
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
    let scale = num_traits::Float::sqrt(inner_product(ax, ax).re * inner_product(y, y).re).max(f64::MIN_POSITIVE);
    (lhs - rhs).norm() / scale
}
