//! The low-pass split of DESIGN §3.3 / §3.7: `x_low = (I + a grad^H grad)^{-1} x0` with
//! circular forward differences, which is diagonal in Fourier space.

use crate::fft::{Fft2, FftBackend};
use crate::ops::{add_into, fourier_multiplier, LinearOperator};
use crate::real::Real;
use crate::shape::Shape;
use num_complex::Complex;

/// Calls `f(t, G)` for every frequency, `t` its index in the transposed layout and
/// `G = 1 / (1 + a (4 - 2 cos(2 pi u / n_y) - 2 cos(2 pi v / n_x)))` the low-pass gain at
/// centred frequency `(u, v) = (ky - n_y/2, kx - n_x/2)` (DESIGN §3.7 item 3).
pub(crate) fn for_each_gain<T: Real>(shape: Shape, weight: T, mut f: impl FnMut(usize, T)) {
    let two = T::lit(2.0);
    let tau = T::lit(core::f64::consts::TAU);
    let laplacian = |k: usize, len: usize| {
        let u = T::lit(k as f64 - (len / 2) as f64);
        two - two * (tau * u / T::lit(len as f64)).cos()
    };
    for x in 0..shape.n_x() {
        let along_x = laplacian(x, shape.n_x());
        for y in 0..shape.n_y() {
            let gain = T::one() / (T::one() + weight * (along_x + laplacian(y, shape.n_y())));
            f(shape.transposed(y, x), gain);
        }
    }
}

/// `x -> (I + a grad^H grad)^{-1} x` in the image domain (natural layout), computed as
/// `F^H (G (.) F x)`. Self-adjoint and positive definite (`0 < G <= 1`, `G = 1` at DC).
/// The reconstruction applies the same `G` directly to k-space ([`crate::recon`]); this
/// operator is the image-domain statement of it, used to test that `G` is the inverse of
/// `I + a grad^H grad`.
#[derive(Debug, Clone, Copy)]
pub struct LowPass<'a, B, T> {
    pub fft: &'a Fft2<B>,
    /// The weight `a >= 0`.
    pub weight: T,
}

impl<T: Real, B: FftBackend<T>> LinearOperator<T> for LowPass<'_, B, T> {
    fn domain_len(&self) -> usize {
        self.fft.shape().len()
    }
    fn range_len(&self) -> usize {
        self.fft.shape().len()
    }
    fn scratch_len(&self) -> usize {
        3 * self.fft.shape().len() + self.fft.scratch_len()
    }
    fn apply_block_add(
        &self,
        x: &[Complex<T>],
        _index: usize,
        y: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let shape = self.fft.shape();
        let (part, rest) = scratch.split_at_mut(shape.len());
        // F^H G F x = C Φ^H(G Φ(C x)) / N.
        let gain = self.fft.inverse_divisor::<T>() / T::lit(shape.len() as f64);
        fourier_multiplier(self.fft, x, part, rest, gain, |spectrum| {
            for_each_gain(shape, self.weight, |t, g| {
                spectrum[t] = spectrum[t].scale(g)
            })
        });
        add_into(y, part);
    }
    fn adjoint_block(
        &self,
        y: &[Complex<T>],
        index: usize,
        out: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        out.fill(Complex::new(T::zero(), T::zero()));
        self.apply_block_add(y, index, out, scratch);
    }
}
