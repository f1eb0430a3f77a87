//! Fixed-iteration FISTA for `min_z 1/2 ||A z - y||² + sum_i lambda_i |z_i|` (DESIGN §3.5),
//! generic over the [`LinearOperator`] `A`.
//!
//! The work is done one operator block (one dictionary filter) at a time: the block of the
//! gradient `A^H (A v - y)`, its soft-threshold and momentum update, and — while the new
//! `v_b` is still in cache — its contribution `A_b v_b` to the next residual. So each
//! iteration streams `z`, `v` (and Lambda maps) through memory once, and besides the
//! iterates only one block and two residuals are stored. A solve of `T` iterations costs
//! `T` adjoint and `T - 1` forward passes (`v^1 = 0` needs none). Nothing allocates; all
//! buffers are the caller's ([`FistaBuffers`]).

use crate::error::{Error, Result};
use crate::ops::LinearOperator;
use crate::real::Real;
use crate::shape::{check_capacity, check_len};
use num_complex::Complex;

/// Sparsity levels `lambda >= 0` of the weighted l1 penalty, in the units of the problem
/// being solved (for reconstruction: the scaled problem of DESIGN §3.6).
#[derive(Debug, Clone, Copy)]
pub enum Lambda<'a, T> {
    /// One level for every coefficient.
    Scalar(T),
    /// One level per operator block (per dictionary filter): `[K]`.
    PerBlock(&'a [T]),
    /// One level per coefficient: `[K][n_y][n_x]` for the dictionary (same layout as `z`).
    Maps(&'a [T]),
}

/// The thresholds of one block.
#[derive(Debug, Clone, Copy)]
enum BlockLevels<'a, T> {
    Uniform(T),
    PerElement(&'a [T]),
}

impl<'a, T: Real> Lambda<'a, T> {
    /// Checks sizes against an operator with `domain_len` split into blocks of `block_len`,
    /// and that every level is finite and non-negative.
    pub fn validate(&self, domain_len: usize, block_len: usize) -> Result<()> {
        let values: &[T] = match self {
            Lambda::Scalar(value) => core::slice::from_ref(value),
            Lambda::PerBlock(levels) => {
                check_len("lambda (per filter)", levels.len(), domain_len / block_len)?;
                levels
            }
            Lambda::Maps(maps) => {
                check_len("lambda maps", maps.len(), domain_len)?;
                maps
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "lambda" });
        }
        if values.iter().any(|&v| v < T::zero()) {
            return Err(Error::NegativeLambda);
        }
        Ok(())
    }

    fn block(&self, index: usize, block_len: usize) -> BlockLevels<'a, T> {
        match *self {
            Lambda::Scalar(value) => BlockLevels::Uniform(value),
            Lambda::PerBlock(levels) => BlockLevels::Uniform(levels[index]),
            Lambda::Maps(maps) => {
                BlockLevels::PerElement(&maps[index * block_len..(index + 1) * block_len])
            }
        }
    }
}

/// Complex soft-thresholding, the prox of `threshold |.|`:
/// `soft(u, a) = u max(0, 1 - a/|u|)`, and 0 where `u = 0`.
///
/// Branch-free so that the update loop vectorises: for `u = 0` the shrink factor is
/// `max(0, 1 - a/0) = max(0, -inf) = 0` (or `max(0, NaN) = 0` when also `a = 0`; `max`
/// returns the non-NaN operand), so the result is exactly 0 there as required.
#[inline(always)]
pub fn soft_threshold<T: Real>(u: Complex<T>, threshold: T) -> Complex<T> {
    let shrink = (T::one() - threshold / u.norm_sqr().sqrt()).max(T::zero());
    u.scale(shrink)
}

/// Caller-owned memory of one FISTA run.
///
/// Sizes for an operator `A` (complex elements): `z` and `previous`: `domain_len`;
/// `residual` and `next_residual`: `range_len`; `block`: `block_len`;
/// `scratch`: `A.scratch_len()`.
pub struct FistaBuffers<'a, T> {
    /// On return: the final iterate `z^T`.
    pub z: &'a mut [Complex<T>],
    /// The second iterate (`z^{i-2}` during the run); garbage on return.
    pub previous: &'a mut [Complex<T>],
    pub residual: &'a mut [Complex<T>],
    pub next_residual: &'a mut [Complex<T>],
    pub block: &'a mut [Complex<T>],
    pub scratch: &'a mut [Complex<T>],
}

impl<T: Real> FistaBuffers<'_, T> {
    fn check<A: LinearOperator<T>>(&self, op: &A) -> Result<()> {
        check_capacity("fista z", self.z.len(), op.domain_len())?;
        check_capacity("fista previous", self.previous.len(), op.domain_len())?;
        check_capacity("fista residual", self.residual.len(), op.range_len())?;
        check_capacity(
            "fista next residual",
            self.next_residual.len(),
            op.range_len(),
        )?;
        check_capacity("fista block", self.block.len(), op.block_len())?;
        check_capacity("fista scratch", self.scratch.len(), op.scratch_len())
    }
}

/// Runs exactly `iterations` steps of FISTA from `z^0 = 0` with step `step` (`1/L`):
///
/// ```text
/// v^1 = z^0 = 0, t_1 = 1
/// for i = 1..T:
///     g       = A^H (A v^i - y)
///     z^i     = soft(v^i - step g, step lambda)
///     t_{i+1} = (1 + sqrt(1 + 4 t_i²)) / 2
///     v^{i+1} = z^i + ((t_i - 1) / t_{i+1}) (z^i - z^{i-1})
/// ```
///
/// The result is left in `buffers.z`. Fails (before iterating) if a buffer is too small,
/// `y` has the wrong length, or `lambda` does not fit the operator.
pub fn fista<T: Real, A: LinearOperator<T>>(
    op: &A,
    y: &[Complex<T>],
    lambda: Lambda<'_, T>,
    step: T,
    iterations: usize,
    buffers: FistaBuffers<'_, T>,
) -> Result<()> {
    buffers.check(op)?;
    check_len("fista data", y.len(), op.range_len())?;
    let block_len = op.block_len();
    lambda.validate(op.domain_len(), block_len)?;

    let domain = op.domain_len();
    let range = op.range_len();
    // `current` holds z^{i-1} and `previous` z^{i-2}; z^i overwrites z^{i-2}, then the two
    // swap. v^i = z^{i-1} + beta_{i-1} (z^{i-1} - z^{i-2}) is formed on the fly, so each
    // iteration reads two arrays and writes one instead of reading and writing z and v.
    let mut current = &mut buffers.z[..domain];
    let mut previous = &mut buffers.previous[..domain];
    let mut residual = &mut buffers.residual[..range];
    let mut next_residual = &mut buffers.next_residual[..range];
    let block = &mut buffers.block[..block_len];
    let scratch = &mut buffers.scratch[..op.scratch_len()];
    let zero = Complex::new(T::zero(), T::zero());
    current.fill(zero);
    previous.fill(zero);
    // A v^1 - y = -y.
    for (r, &measured) in residual.iter_mut().zip(y) {
        *r = -measured;
    }

    let mut t = T::one();
    let mut momentum = T::zero(); // beta_{i-1}; v^1 = z^0
    for iteration in 0..iterations {
        let needs_next = iteration + 1 < iterations;
        let t_next = (T::one() + (T::one() + T::lit(4.0) * t * t).sqrt()) / T::lit(2.0);
        let momentum_next = (t - T::one()) / t_next;
        let momenta = Momenta {
            current: momentum,
            next: momentum_next,
        };
        if needs_next {
            next_residual.fill(zero);
        }
        for (index, (current_block, previous_block)) in current
            .chunks_exact_mut(block_len)
            .zip(previous.chunks_exact_mut(block_len))
            .enumerate()
        {
            op.adjoint_block(residual, index, block, scratch);
            match lambda.block(index, block_len) {
                BlockLevels::Uniform(level) => {
                    let threshold = step * level;
                    update_block(current_block, previous_block, block, step, momenta, |_| {
                        threshold
                    });
                }
                BlockLevels::PerElement(levels) => {
                    update_block(current_block, previous_block, block, step, momenta, |i| {
                        step * levels[i]
                    });
                }
            }
            // `block` now holds v^{i+1}_b.
            if needs_next {
                op.apply_block_add(block, index, next_residual, scratch);
            }
        }
        if needs_next {
            for (r, &measured) in next_residual.iter_mut().zip(y) {
                *r = *r - measured;
            }
            core::mem::swap(&mut residual, &mut next_residual);
        }
        core::mem::swap(&mut current, &mut previous);
        momentum = momentum_next;
        t = t_next;
    }
    // After an odd number of swaps z^T sits in the `previous` buffer.
    if iterations % 2 == 1 {
        buffers.z[..domain].copy_from_slice(&buffers.previous[..domain]);
    }
    Ok(())
}

/// `beta_{i-1}` (forms `v^i` from the stored iterates) and `beta_i` (forms `v^{i+1}`).
#[derive(Clone, Copy)]
struct Momenta<T> {
    current: T,
    next: T,
}

/// For each element, with `c = z^{i-1}`, `p = z^{i-2}` and `g` the gradient at `v^i`:
/// `v = c + beta_{i-1} (c - p)`, `z = soft(v - step g, threshold)`, then `p <- z` and
/// `g <- z + beta_i (z - c)` (that is `v^{i+1}`, consumed next by the forward operator).
#[inline(always)]
fn update_block<T: Real>(
    current: &[Complex<T>],
    previous: &mut [Complex<T>],
    gradient_then_next_v: &mut [Complex<T>],
    step: T,
    momenta: Momenta<T>,
    threshold: impl Fn(usize) -> T,
) {
    for (i, ((&c, p), g)) in current
        .iter()
        .zip(previous.iter_mut())
        .zip(gradient_then_next_v.iter_mut())
        .enumerate()
    {
        let v = c + (c - *p).scale(momenta.current);
        let z = soft_threshold(v - g.scale(step), threshold(i));
        *p = z;
        *g = z + (z - c).scale(momenta.next);
    }
}

impl<T> core::fmt::Debug for FistaBuffers<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FistaBuffers")
            .field("z", &self.z.len())
            .field("previous", &self.previous.len())
            .field("residual", &self.residual.len())
            .field("block", &self.block.len())
            .field("scratch", &self.scratch.len())
            .finish()
    }
}
