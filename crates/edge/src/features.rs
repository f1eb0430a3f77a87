//! The version-1 features of the Lambda network (DESIGN §4.1), computed from a slice the core
//! has prepared ([`sparsemap_core::recon::Workspace::prepare`]): the scale, `L`, `|x0|` and
//! the filter correlations come from the one place that defines them, and the solve that
//! follows uses the same prepared data. `models/sparsemap_train/features.py` is the
//! normative definition:
//!
//! 0. `r_k = |F^H(conj(h_k) (.) y')| / sqrt(L)` ([`PreparedSlice::gradient_abs`] / `sqrt(L)`)
//! 1. `|x0|`, `x0 = F^H y` scaled ([`PreparedSlice::zero_filled_abs`]), the same for every k
//! 2. `mean_k r_k`, the same for every k
//!
//! laid out `[K][3][N_y][N_x]`. The network treats the filters (its batch axis) independently,
//! so [`SliceFeatures::write_filters`] builds the input of any run of filters on demand and
//! the whole `[K][3][N]` tensor never has to exist at once.

use crate::parallel::WorkerPool;
use anyhow::{ensure, Result};
use num_complex::Complex32;
use sparsemap_core::coils::CoilPrepared;
use sparsemap_core::fft::FftBackend;
use sparsemap_core::fista::{Executor, Lambda, WorkerBuffers};
use sparsemap_core::recon::{Prepared, ReconConfig, ReconReport};
use sparsemap_core::Shape;

/// Channels of the version-1 features.
pub const FEATURE_CHANNELS: usize = 3;

/// A prepared slice behind a run-time backend choice: the per-slice quantities of
/// [`Prepared`] and its solve, object-safe. `Sync` so that threads can compute the filter
/// correlations of one slice at once.
pub trait PreparedSlice: Sync {
    fn shape(&self) -> Shape;
    fn count(&self) -> usize;
    fn scale(&self) -> f32;
    fn lipschitz(&self) -> f32;
    fn zero_filled_abs(&mut self, out: &mut [f32]) -> sparsemap_core::Result<()>;
    fn gradient_abs(&mut self, k: usize, out: &mut [f32]) -> sparsemap_core::Result<()>;
    fn gradient_abs_with(
        &self,
        k: usize,
        out: &mut [f32],
        worker: &mut WorkerBuffers<'_, f32>,
    ) -> sparsemap_core::Result<()>;
    fn solve(
        &mut self,
        lambda: Lambda<'_, f32>,
        iterations: usize,
        image: &mut [Complex32],
    ) -> sparsemap_core::Result<ReconReport<f32>>;
    /// The solve on the pool's threads with `config`'s iteration count, then its
    /// background gate if it has one ([`crate::runtime::solve_on`]).
    fn solve_on(
        &mut self,
        lambda: Lambda<'_, f32>,
        config: &ReconConfig<f32>,
        image: &mut [Complex32],
        pool: &mut WorkerPool<f32>,
    ) -> sparsemap_core::Result<ReconReport<f32>>;
}

macro_rules! impl_prepared_slice {
    ($prepared:ident) => {
        impl<B: FftBackend<f32>> PreparedSlice for $prepared<'_, '_, '_, f32, B> {
            fn shape(&self) -> Shape {
                $prepared::shape(self)
            }
            fn count(&self) -> usize {
                $prepared::count(self)
            }
            fn scale(&self) -> f32 {
                $prepared::scale(self)
            }
            fn lipschitz(&self) -> f32 {
                $prepared::lipschitz(self)
            }
            fn zero_filled_abs(&mut self, out: &mut [f32]) -> sparsemap_core::Result<()> {
                $prepared::zero_filled_abs(self, out)
            }
            fn gradient_abs(&mut self, k: usize, out: &mut [f32]) -> sparsemap_core::Result<()> {
                $prepared::gradient_abs(self, k, out)
            }
            fn gradient_abs_with(
                &self,
                k: usize,
                out: &mut [f32],
                worker: &mut WorkerBuffers<'_, f32>,
            ) -> sparsemap_core::Result<()> {
                $prepared::gradient_abs_with(self, k, out, worker)
            }
            fn solve(
                &mut self,
                lambda: Lambda<'_, f32>,
                iterations: usize,
                image: &mut [Complex32],
            ) -> sparsemap_core::Result<ReconReport<f32>> {
                $prepared::solve(self, lambda, iterations, image)
            }
            fn solve_on(
                &mut self,
                lambda: Lambda<'_, f32>,
                config: &ReconConfig<f32>,
                image: &mut [Complex32],
                pool: &mut WorkerPool<f32>,
            ) -> sparsemap_core::Result<ReconReport<f32>> {
                crate::runtime::solve_on(self, pool, lambda, config, image)
            }
        }
    };
}
impl_prepared_slice!(Prepared);
impl_prepared_slice!(CoilPrepared);

/// The per-slice channels shared by every filter (`|x0|` and the filter mean), planned once
/// per grid. The filter correlations live in a caller's `[K][N]` buffer.
pub struct SliceFeatures {
    shape: Shape,
    count: usize,
    zero_filled: Vec<f32>,
    mean: Vec<f32>,
}

impl SliceFeatures {
    pub fn new(shape: Shape, count: usize) -> Self {
        Self {
            shape,
            count,
            zero_filled: vec![0.0; shape.len()],
            mean: vec![0.0; shape.len()],
        }
    }

    /// Bytes this holds.
    pub fn memory_bytes(&self) -> usize {
        (self.zero_filled.len() + self.mean.len()) * std::mem::size_of::<f32>()
    }

    /// Computes channel 0 of every filter into `correlations` (`[K][N]`) and the shared
    /// channels into `self`. `K` inverse FFTs plus one; the `K` run on the pool's threads.
    pub fn compute(
        &mut self,
        prepared: &mut dyn PreparedSlice,
        correlations: &mut [f32],
        pool: &mut WorkerPool<f32>,
    ) -> Result<()> {
        let n = self.shape.len();
        ensure!(
            prepared.shape() == self.shape && prepared.count() == self.count,
            "features planned for K = {} on {}x{}, slice prepared for K = {} on {}x{}",
            self.count,
            self.shape.n_y(),
            self.shape.n_x(),
            prepared.count(),
            prepared.shape().n_y(),
            prepared.shape().n_x()
        );
        ensure!(
            correlations.len() == self.count * n,
            "correlation buffer has {} values, expected K * N = {}",
            correlations.len(),
            self.count * n
        );
        let norm = 1.0 / prepared.lipschitz().sqrt();
        let threads = pool.threads();
        if threads.count() == 1 {
            for (k, r) in correlations.chunks_exact_mut(n).enumerate() {
                prepared.gradient_abs(k, r)?;
            }
        } else {
            struct Filter<'a> {
                index: usize,
                out: &'a mut [f32],
                failed: Option<sparsemap_core::Error>,
            }
            let mut filters: Vec<Filter<'_>> = correlations
                .chunks_exact_mut(n)
                .enumerate()
                .map(|(index, out)| Filter {
                    index,
                    out,
                    failed: None,
                })
                .collect();
            let shared: &dyn PreparedSlice = prepared;
            threads.for_each(&mut filters, &mut pool.workers(), &|filter, worker| {
                filter.failed = shared
                    .gradient_abs_with(filter.index, filter.out, worker)
                    .err();
            });
            if let Some(error) = filters.into_iter().find_map(|f| f.failed) {
                return Err(error.into());
            }
        }
        // In filter order whatever the threads: the mean is the same for any count.
        self.mean.fill(0.0);
        for r in correlations.chunks_exact_mut(n) {
            for (m, v) in self.mean.iter_mut().zip(r.iter_mut()) {
                *v *= norm;
                *m += *v;
            }
        }
        let inverse_count = 1.0 / self.count as f32;
        self.mean.iter_mut().for_each(|m| *m *= inverse_count);
        prepared.zero_filled_abs(&mut self.zero_filled)?;
        Ok(())
    }

    /// Writes the features `[k][3][N]` of a run of `k` filters into `out`, channel 0 from
    /// `correlations`, that run's part of what [`Self::compute`] filled (`[k][N]`).
    pub fn write_filters(&self, correlations: &[f32], out: &mut [f32]) {
        let n = self.shape.len();
        for (r_in, dst) in correlations
            .chunks_exact(n)
            .zip(out.chunks_exact_mut(FEATURE_CHANNELS * n))
        {
            let (r, rest) = dst.split_at_mut(n);
            let (x0, mean) = rest.split_at_mut(n);
            r.copy_from_slice(r_in);
            x0.copy_from_slice(&self.zero_filled);
            mean.copy_from_slice(&self.mean);
        }
    }
}

/// All features `[K][3][N_y][N_x]` of a prepared slice at once (for tests and tools; the
/// runtime builds them a few filters at a time).
pub fn compute_features(
    prepared: &mut dyn PreparedSlice,
    pool: &mut WorkerPool<f32>,
) -> Result<Vec<f32>> {
    let (shape, count) = (prepared.shape(), prepared.count());
    let mut features = SliceFeatures::new(shape, count);
    let mut correlations = vec![0.0; count * shape.len()];
    features.compute(prepared, &mut correlations, pool)?;
    let mut out = vec![0.0; count * FEATURE_CHANNELS * shape.len()];
    features.write_filters(&correlations, &mut out);
    Ok(out)
}
