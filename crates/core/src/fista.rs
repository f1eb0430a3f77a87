//! Fixed-iteration FISTA for `min_z 1/2 ||A z - y||² + sum_i lambda_i |z_i|` (DESIGN §3.5),
//! generic over the [`LinearOperator`] `A`.
//!
//! The work is done one operator block (one dictionary filter) at a time: the block of the
//! gradient `A^H (A v - y)`, its soft-threshold and momentum update, and — while the new
//! `v_b` is still in cache — its contribution `A_b v_b` to the next residual. So each
//! iteration streams `z`, `v` (and Lambda maps) through memory once, and besides the
//! iterates only one block per worker, two residuals and one forward-pass sum per chunk of
//! [`BLOCKS_PER_CHUNK`] blocks are stored. A solve of `T` iterations costs `T` adjoint and
//! `T - 1` forward passes (`v^1 = 0` needs none). Nothing allocates; all buffers are the
//! caller's ([`FistaBuffers`]).
//!
//! The chunks are independent within an iteration, so an [`Executor`] may run them on
//! several threads ([`fista_with`]); [`fista`] runs them in order on the calling thread.
//! Both give the same bits: the chunk sums are always added in chunk order.

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
    /// [`Lambda::Maps`] stored in 16 bits: `lambda = scales[b] * levels[i]` for coefficient
    /// `i` of block `b` (`levels`: `[K][n_y][n_x]`, `scales`: `[K]`). Half the bytes of `f32`
    /// maps per iteration (DESIGN §3.5, "Memory traffic"); [`CompactMaps::encode`] makes it.
    Compact { levels: &'a [u16], scales: &'a [T] },
}

/// Lambda maps quantised to 16 bits per level with one scale per block (filter):
/// `scale_b = max_i lambda_{b,i} / 65535` and `level = round(lambda / scale_b)`, so every
/// level is within `scale_b / 2 = max_b / 131070` of the `f32` map (relative to the block's
/// largest level: 7.6e-6), far below the solver's `f32` rounding over `T` iterations.
#[derive(Debug)]
pub struct CompactMaps<'a, T> {
    pub levels: &'a mut [u16],
    pub scales: &'a mut [T],
}

impl<T: Real> CompactMaps<'_, T> {
    /// Encodes `maps` (`[blocks][block_len]`, finite and non-negative, as
    /// [`Lambda::validate`] requires) into the caller's buffers.
    pub fn encode(&mut self, maps: &[T], block_len: usize) -> Result<()> {
        if block_len == 0 || !maps.len().is_multiple_of(block_len) {
            return Err(Error::LengthMismatch {
                what: "lambda maps (whole blocks)",
                expected: maps.len().div_ceil(block_len.max(1)) * block_len.max(1),
                actual: maps.len(),
            });
        }
        Lambda::Maps(maps).validate(maps.len(), block_len)?;
        check_len("compact lambda levels", self.levels.len(), maps.len())?;
        check_len(
            "compact lambda scales",
            self.scales.len(),
            maps.len() / block_len,
        )?;
        let full = T::lit(f64::from(u16::MAX));
        for ((block, levels), scale) in maps
            .chunks_exact(block_len)
            .zip(self.levels.chunks_exact_mut(block_len))
            .zip(self.scales.iter_mut())
        {
            let largest = block.iter().fold(T::zero(), |m, &v| m.max(v));
            *scale = largest / full;
            let inverse = if largest > T::zero() {
                full / largest
            } else {
                T::zero()
            };
            for (level, &value) in levels.iter_mut().zip(block) {
                // In [0, 65535] by construction; `min` guards the rounding of `inverse`.
                *level = (value * inverse).round().min(full).to_u16().unwrap_or(0);
            }
        }
        Ok(())
    }

    /// The levels as a [`Lambda`].
    pub fn lambda(&self) -> Lambda<'_, T> {
        Lambda::Compact {
            levels: self.levels,
            scales: self.scales,
        }
    }
}

/// The thresholds of one block.
#[derive(Debug, Clone, Copy)]
enum BlockLevels<'a, T> {
    Uniform(T),
    PerElement(&'a [T]),
    Compact(&'a [u16], T),
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
            Lambda::Compact { levels, scales } => {
                check_len("compact lambda levels", levels.len(), domain_len)?;
                check_len(
                    "compact lambda scales",
                    scales.len(),
                    domain_len / block_len,
                )?;
                scales
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
            Lambda::Compact { levels, scales } => BlockLevels::Compact(
                &levels[index * block_len..(index + 1) * block_len],
                scales[index],
            ),
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

/// Operator blocks (dictionary filters) per chunk. The forward half of an iteration sums
/// `A_b v_b` over all blocks; that sum is formed per chunk of this many consecutive blocks,
/// then the chunk sums are added in chunk order. The order depends on nothing but the block
/// count, so the result is bit-identical however many threads process the chunks.
pub const BLOCKS_PER_CHUNK: usize = 4;

/// Most chunks a solve may have (`K <= 256` filters at [`BLOCKS_PER_CHUNK`]); the chunk
/// table lives on the stack, so the core allocates nothing.
pub const MAX_CHUNKS: usize = 64;

/// Chunks of an operator with `blocks` blocks.
pub fn chunk_count(blocks: usize) -> usize {
    blocks.div_ceil(BLOCKS_PER_CHUNK)
}

/// The chunks of `op`'s blocks, or an error naming `what` if they exceed [`MAX_CHUNKS`].
fn checked_chunk_count<T: Real, A: LinearOperator<T>>(op: &A, what: &'static str) -> Result<usize> {
    let chunks = chunk_count(op.domain_len() / op.block_len().max(1));
    if chunks > MAX_CHUNKS {
        return Err(Error::LengthMismatch {
            what,
            expected: MAX_CHUNKS,
            actual: chunks,
        });
    }
    Ok(chunks)
}

/// Runs independent pieces of work, possibly concurrently: the seam between the serial
/// no_std core and a multi-threaded caller (the edge runtime's scoped threads).
pub trait Executor {
    /// Calls `work(item, worker)` exactly once for every item, lending each call one of the
    /// `workers` (a worker is never used by two calls at once), and returns when all calls
    /// have finished. `workers` is not empty.
    fn for_each<I: Send, W: Send>(
        &self,
        items: &mut [I],
        workers: &mut [W],
        work: &(dyn Fn(&mut I, &mut W) + Sync),
    );
}

/// Every item in order on the calling thread, with the first worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serial;

impl Executor for Serial {
    fn for_each<I: Send, W: Send>(
        &self,
        items: &mut [I],
        workers: &mut [W],
        work: &(dyn Fn(&mut I, &mut W) + Sync),
    ) {
        if let Some(worker) = workers.first_mut() {
            items.iter_mut().for_each(|item| work(item, worker));
        }
    }
}

/// The memory one worker needs while it processes a block: `block` (`block_len`) and
/// `scratch` (`A.scratch_len()`).
pub struct WorkerBuffers<'a, T> {
    pub block: &'a mut [Complex<T>],
    pub scratch: &'a mut [Complex<T>],
}

/// Caller-owned memory of one FISTA run.
///
/// Sizes for an operator `A` (complex elements): `z` and `previous`: `domain_len`;
/// `residual` and `next_residual`: `range_len`; `partials`: `chunk_count(blocks) *
/// range_len` (one forward-pass sum per chunk); `workers`: at least one, each with
/// `block_len` and `A.scratch_len()`. More workers than chunks are never used.
pub struct FistaBuffers<'a, 'w, T> {
    /// On return: the final iterate `z^T`.
    pub z: &'a mut [Complex<T>],
    /// The second iterate (`z^{i-2}` during the run); garbage on return.
    pub previous: &'a mut [Complex<T>],
    pub residual: &'a mut [Complex<T>],
    pub next_residual: &'a mut [Complex<T>],
    pub partials: &'a mut [Complex<T>],
    pub workers: &'a mut [WorkerBuffers<'w, T>],
}

impl<T: Real> FistaBuffers<'_, '_, T> {
    fn check<A: LinearOperator<T>>(&self, op: &A) -> Result<()> {
        check_capacity("fista z", self.z.len(), op.domain_len())?;
        check_capacity("fista previous", self.previous.len(), op.domain_len())?;
        check_capacity("fista residual", self.residual.len(), op.range_len())?;
        check_capacity(
            "fista next residual",
            self.next_residual.len(),
            op.range_len(),
        )?;
        let chunks = checked_chunk_count(op, "fista chunks (blocks / BLOCKS_PER_CHUNK)")?;
        check_capacity(
            "fista partial sums",
            self.partials.len(),
            chunks * op.range_len(),
        )?;
        if self.workers.is_empty() {
            return Err(Error::LengthMismatch {
                what: "fista workers",
                expected: 1,
                actual: 0,
            });
        }
        for worker in self.workers.iter() {
            check_capacity("fista block", worker.block.len(), op.block_len())?;
            check_capacity("fista scratch", worker.scratch.len(), op.scratch_len())?;
        }
        Ok(())
    }
}

/// One chunk of consecutive blocks: its slices of the two iterates and its forward-pass sum.
struct Chunk<'a, T> {
    first_block: usize,
    current: &'a mut [Complex<T>],
    previous: &'a mut [Complex<T>],
    partial: &'a mut [Complex<T>],
}

/// What every chunk of one iteration shares (read only).
struct IterationInputs<'a, T, A> {
    op: &'a A,
    residual: &'a [Complex<T>],
    lambda: Lambda<'a, T>,
    step: T,
    momenta: Momenta<T>,
    needs_next: bool,
}

impl<T: Real, A: LinearOperator<T>> IterationInputs<'_, T, A> {
    /// For each block of the chunk: the gradient block, the thresholded update, and (if
    /// another iteration follows) `A_b v_b` added to the chunk's partial sum.
    fn run(&self, chunk: &mut Chunk<'_, T>, worker: &mut WorkerBuffers<'_, T>) {
        let block_len = self.op.block_len();
        let block = &mut worker.block[..block_len];
        let scratch = &mut worker.scratch[..self.op.scratch_len()];
        if self.needs_next {
            chunk.partial.fill(Complex::new(T::zero(), T::zero()));
        }
        for (offset, (current_block, previous_block)) in chunk
            .current
            .chunks_exact_mut(block_len)
            .zip(chunk.previous.chunks_exact_mut(block_len))
            .enumerate()
        {
            let index = chunk.first_block + offset;
            self.op.adjoint_block(self.residual, index, block, scratch);
            let (step, momenta) = (self.step, self.momenta);
            match self.lambda.block(index, block_len) {
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
                BlockLevels::Compact(levels, scale) => {
                    let unit = step * scale;
                    update_block(current_block, previous_block, block, step, momenta, |i| {
                        unit * T::from_u16(levels[i])
                    });
                }
            }
            // `block` now holds v^{i+1}_b.
            if self.needs_next {
                self.op
                    .apply_block_add_consuming(block, index, chunk.partial, scratch);
            }
        }
    }
}

/// Runs exactly `iterations` steps of FISTA from `z^0 = 0` with step `step` (`1/L`) on the
/// calling thread: [`fista_with`] and the [`Serial`] executor.
pub fn fista<T: Real, A: LinearOperator<T> + Sync>(
    op: &A,
    y: &[Complex<T>],
    lambda: Lambda<'_, T>,
    step: T,
    iterations: usize,
    buffers: FistaBuffers<'_, '_, T>,
) -> Result<()> {
    fista_with(op, y, lambda, step, iterations, buffers, &Serial)
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
/// Blocks are processed in chunks of [`BLOCKS_PER_CHUNK`] by `executor`, one worker's
/// buffers per concurrent chunk; `A v^{i+1}` is summed per chunk and the chunk sums in chunk
/// order, so the result does not depend on the executor or the number of workers.
///
/// The result is left in `buffers.z`. Fails (before iterating) if a buffer is too small,
/// `y` has the wrong length, or `lambda` does not fit the operator.
pub fn fista_with<T: Real, A: LinearOperator<T> + Sync, E: Executor>(
    op: &A,
    y: &[Complex<T>],
    lambda: Lambda<'_, T>,
    step: T,
    iterations: usize,
    buffers: FistaBuffers<'_, '_, T>,
    executor: &E,
) -> Result<()> {
    check_len("fista data", y.len(), op.range_len())?;
    run(
        op,
        y,
        Some(y),
        |_, _| {},
        lambda,
        step,
        iterations,
        buffers,
        executor,
    )
}

/// The data term of [`fista_normal_with`] in the range of the synthesis operator `H`: for
/// `1/2 ||B H z - y||²` the gradient is `H^H (B^H B u - B^H y)` with `u = H v`, so FISTA needs
/// the residual `G u - b` (`G = B^H B`, `b = B^H y`) where the single-coil solve needs
/// `M u - y` ([`fista_with`], which folds `M` into `H`). The coil encoding of DESIGN §3.4
/// ([`crate::coils`]) is such a `B`.
pub trait NormalResidual<T: Real> {
    /// `u <- G u - b`. `u` holds `H v` on entry. May use the solve's `workers` (each
    /// `block` and `scratch` as [`FistaBuffers`]) on `executor`; the result must not depend on
    /// the executor or the number of workers.
    fn residual<E: Executor>(
        &mut self,
        u: &mut [Complex<T>],
        workers: &mut [WorkerBuffers<'_, T>],
        executor: &E,
    );
}

/// FISTA for `min_z 1/2 ||B H z - y||² + sum_i lambda_i |z_i|` with `H = op` and the data
/// term given by its normal residual ([`NormalResidual`]); `b = B^H y` (`op.range_len()`).
/// Otherwise as [`fista_with`]: fixed iterations from `z^0 = 0`, the same chunks and workers,
/// the result in `buffers.z`, bit-identical for any executor if `normal` is.
#[allow(clippy::too_many_arguments)]
pub fn fista_normal_with<T, A, N, E>(
    op: &A,
    normal: &mut N,
    b: &[Complex<T>],
    lambda: Lambda<'_, T>,
    step: T,
    iterations: usize,
    buffers: FistaBuffers<'_, '_, T>,
    executor: &E,
) -> Result<()>
where
    T: Real,
    A: LinearOperator<T> + Sync,
    N: NormalResidual<T>,
    E: Executor,
{
    check_len("fista normal data", b.len(), op.range_len())?;
    run(
        op,
        b,
        None,
        |u, workers| normal.residual(u, workers, executor),
        lambda,
        step,
        iterations,
        buffers,
        executor,
    )
}

/// The loop of [`fista_with`] and [`fista_normal_with`]: the residual starts at `-initial`;
/// after each forward pass the chunk sums are reduced (minus `subtract` if given) and handed
/// to `finish`.
#[allow(clippy::too_many_arguments)]
fn run<T, A, E, F>(
    op: &A,
    initial: &[Complex<T>],
    subtract: Option<&[Complex<T>]>,
    mut finish: F,
    lambda: Lambda<'_, T>,
    step: T,
    iterations: usize,
    buffers: FistaBuffers<'_, '_, T>,
    executor: &E,
) -> Result<()>
where
    T: Real,
    A: LinearOperator<T> + Sync,
    E: Executor,
    F: FnMut(&mut [Complex<T>], &mut [WorkerBuffers<'_, T>]),
{
    buffers.check(op)?;
    let block_len = op.block_len();
    lambda.validate(op.domain_len(), block_len)?;

    let domain = op.domain_len();
    let range = op.range_len();
    let zero = Complex::new(T::zero(), T::zero());
    let chunk_len = BLOCKS_PER_CHUNK * block_len;
    let chunk_total = chunk_count(domain / block_len);

    // `current` holds z^{i-1} and `previous` z^{i-2}; z^i overwrites z^{i-2}, then the two
    // swap (per chunk). v^i = z^{i-1} + beta_{i-1} (z^{i-1} - z^{i-2}) is formed on the fly,
    // so each iteration reads two arrays and writes one instead of reading and writing z
    // and v.
    buffers.z[..domain].fill(zero);
    buffers.previous[..domain].fill(zero);
    let mut chunks: [Option<Chunk<'_, T>>; MAX_CHUNKS] = core::array::from_fn(|_| None);
    for (index, ((slot, (current, previous)), partial)) in chunks
        .iter_mut()
        .zip(
            buffers.z[..domain]
                .chunks_mut(chunk_len)
                .zip(buffers.previous[..domain].chunks_mut(chunk_len)),
        )
        .zip(buffers.partials.chunks_exact_mut(range))
        .enumerate()
    {
        *slot = Some(Chunk {
            first_block: index * BLOCKS_PER_CHUNK,
            current,
            previous,
            partial,
        });
    }
    let chunks = &mut chunks[..chunk_total];
    let workers = &mut *buffers.workers;

    let mut residual = &mut buffers.residual[..range];
    let mut next_residual = &mut buffers.next_residual[..range];
    // A v^1 - y = -y.
    for (r, &measured) in residual.iter_mut().zip(initial) {
        *r = -measured;
    }

    let mut t = T::one();
    let mut momentum = T::zero(); // beta_{i-1}; v^1 = z^0
    for iteration in 0..iterations {
        let needs_next = iteration + 1 < iterations;
        let t_next = (T::one() + (T::one() + T::lit(4.0) * t * t).sqrt()) / T::lit(2.0);
        let momentum_next = (t - T::one()) / t_next;
        let inputs = IterationInputs {
            op,
            residual: &*residual,
            lambda,
            step,
            momenta: Momenta {
                current: momentum,
                next: momentum_next,
            },
            needs_next,
        };
        executor.for_each(chunks, workers, &|slot, worker| {
            if let Some(chunk) = slot {
                inputs.run(chunk, worker);
            }
        });
        if needs_next {
            reduce_partials(chunks, subtract, next_residual, workers, executor);
            finish(next_residual, workers);
            core::mem::swap(&mut residual, &mut next_residual);
        }
        for chunk in chunks.iter_mut().flatten() {
            core::mem::swap(&mut chunk.current, &mut chunk.previous);
        }
        momentum = momentum_next;
        t = t_next;
    }
    // After an odd number of swaps each chunk's z^T (its `current` slice) lies in the
    // `previous` buffer, and its `previous` slice is its part of `z`.
    if iterations % 2 == 1 {
        for chunk in chunks.iter_mut().flatten() {
            chunk.previous.copy_from_slice(chunk.current);
        }
    }
    Ok(())
}

/// `next = sum_c partial_c - y` (`y` if given), the chunks' partial sums added in chunk order
/// at every element. Elements are independent, so `executor` gets one range of elements per chunk
/// (any split gives the same bits).
fn reduce_partials<T: Real, W: Send, E: Executor>(
    chunks: &[Option<Chunk<'_, T>>],
    y: Option<&[Complex<T>]>,
    next: &mut [Complex<T>],
    workers: &mut [W],
    executor: &E,
) {
    struct Range<'a, T> {
        start: usize,
        next: &'a mut [Complex<T>],
    }
    let piece = next.len().div_ceil(chunks.len().max(1)).max(1);
    let pieces = next.len().div_ceil(piece);
    let mut ranges: [Option<Range<'_, T>>; MAX_CHUNKS] = core::array::from_fn(|_| None);
    for (index, (slot, next)) in ranges.iter_mut().zip(next.chunks_mut(piece)).enumerate() {
        *slot = Some(Range {
            start: index * piece,
            next,
        });
    }
    executor.for_each(&mut ranges[..pieces], workers, &|slot, _| {
        if let Some(range) = slot {
            let end = range.start + range.next.len();
            range.next.fill(Complex::new(T::zero(), T::zero()));
            for chunk in chunks.iter().flatten() {
                crate::ops::add_into(range.next, &chunk.partial[range.start..end]);
            }
            if let Some(y) = y {
                for (r, &measured) in range.next.iter_mut().zip(&y[range.start..end]) {
                    *r = *r - measured;
                }
            }
        }
    });
}

/// `y = A x` with the blocks summed as in the forward half of [`fista_with`]: per chunk of
/// [`BLOCKS_PER_CHUNK`] blocks into `partials` (`chunk_count(blocks) * range_len`), then the
/// chunk sums in chunk order, the chunks run by `executor` (the result does not depend on
/// it). `workers` as for [`fista_with`].
pub fn apply_with<T: Real, A: LinearOperator<T> + Sync, E: Executor>(
    op: &A,
    x: &[Complex<T>],
    y: &mut [Complex<T>],
    partials: &mut [Complex<T>],
    workers: &mut [WorkerBuffers<'_, T>],
    executor: &E,
) -> Result<()> {
    let (domain, range, block_len) = (op.domain_len(), op.range_len(), op.block_len());
    check_len("synthesis input", x.len(), domain)?;
    check_capacity("synthesis output", y.len(), range)?;
    let chunk_total = checked_chunk_count(op, "synthesis chunks (blocks / BLOCKS_PER_CHUNK)")?;
    check_capacity(
        "synthesis partial sums",
        partials.len(),
        chunk_total * range,
    )?;
    if workers.is_empty() {
        return Err(Error::LengthMismatch {
            what: "synthesis workers",
            expected: 1,
            actual: 0,
        });
    }
    for worker in workers.iter() {
        check_capacity("synthesis scratch", worker.scratch.len(), op.scratch_len())?;
    }

    struct SynthesisChunk<'a, T> {
        first_block: usize,
        x: &'a [Complex<T>],
        partial: &'a mut [Complex<T>],
    }
    let mut chunks: [Option<SynthesisChunk<'_, T>>; MAX_CHUNKS] = core::array::from_fn(|_| None);
    for (index, ((slot, x), partial)) in chunks
        .iter_mut()
        .zip(x.chunks(BLOCKS_PER_CHUNK * block_len))
        .zip(partials.chunks_exact_mut(range))
        .enumerate()
    {
        *slot = Some(SynthesisChunk {
            first_block: index * BLOCKS_PER_CHUNK,
            x,
            partial,
        });
    }
    let chunks = &mut chunks[..chunk_total];
    executor.for_each(chunks, workers, &|slot, worker| {
        if let Some(chunk) = slot {
            chunk.partial.fill(Complex::new(T::zero(), T::zero()));
            let scratch = &mut worker.scratch[..op.scratch_len()];
            for (offset, block) in chunk.x.chunks_exact(block_len).enumerate() {
                op.apply_block_add(block, chunk.first_block + offset, chunk.partial, scratch);
            }
        }
    });
    let y = &mut y[..range];
    y.fill(Complex::new(T::zero(), T::zero()));
    for chunk in chunks.iter().flatten() {
        crate::ops::add_into(y, chunk.partial);
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

impl<T> core::fmt::Debug for WorkerBuffers<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkerBuffers")
            .field("block", &self.block.len())
            .field("scratch", &self.scratch.len())
            .finish()
    }
}

impl<T> core::fmt::Debug for FistaBuffers<'_, '_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FistaBuffers")
            .field("z", &self.z.len())
            .field("previous", &self.previous.len())
            .field("residual", &self.residual.len())
            .field("partials", &self.partials.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}
