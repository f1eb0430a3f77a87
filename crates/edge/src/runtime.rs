//! The std runtime around `sparsemap-core`: owns the buffers, plans once per dictionary and
//! grid, then reconstructs any number of slices without allocating.

use crate::features::PreparedSlice;
use crate::limits::try_filled;
use crate::parallel::{Threads, WorkerPool};
use num_complex::Complex;
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis, PlanInfo};
use sparsemap_core::fft::{Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::{Prepared, ReconConfig, ReconReport, Workspace};
use sparsemap_core::{Real, Result, Shape};

/// A planned reconstructor for one grid and one dictionary.
pub struct Reconstructor<T: Real, B> {
    fft: Fft2<B>,
    info: PlanInfo,
    responses: Vec<Complex<T>>,
    power: Vec<T>,
    complex: Vec<Complex<T>>,
    real: Vec<T>,
    pool: WorkerPool<T>,
}

impl<T: Real, B: FftBackend<T>> Reconstructor<T, B> {
    /// Plans the FFT and the dictionary responses and allocates the workspace (the only
    /// allocations; see [`Workspace`] for the memory formula) and, for more than one
    /// thread, one block and scratch per thread. The buffers are reserved fallibly: a grid
    /// and dictionary within docs/design.md §7.3 that still do not fit in memory give an
    /// error, not an abort.
    pub fn new(
        backend: B,
        dictionary: Dictionary<'_, T>,
        threads: Threads,
    ) -> anyhow::Result<Self> {
        let fft = Fft2::new(backend);
        let shape = fft.shape();
        let count = dictionary.count();
        let mut responses = try_filled(
            DictionaryPlan::<T, B>::responses_len(shape, count),
            Complex::default(),
        )?;
        let mut power = try_filled(DictionaryPlan::<T, B>::power_len(shape), T::zero())?;
        let mut scratch = try_filled(
            DictionaryPlan::<T, B>::scratch_len(&fft),
            Complex::default(),
        )?;
        let info =
            DictionaryPlan::compute(&fft, dictionary, &mut responses, &mut power, &mut scratch)?;
        drop(scratch);
        let complex = try_filled(
            Workspace::<T>::complex_len(shape, count, fft.scratch_len()),
            Complex::default(),
        )?;
        let real = try_filled(Workspace::<T>::real_len(shape), T::zero())?;
        let plan = DictionaryPlan::view(&fft, info, &responses, &power)?;
        let pool = WorkerPool::new(
            threads,
            shape.len(),
            MaskedSynthesis::<T, B>::required_scratch(&plan),
        )?;
        Ok(Self {
            fft,
            info,
            responses,
            power,
            complex,
            real,
            pool,
        })
    }

    /// Threads the solve and the features run on.
    pub fn threads(&self) -> Threads {
        self.pool.threads()
    }

    pub fn shape(&self) -> Shape {
        self.fft.shape()
    }

    /// Number of dictionary filters `K`.
    pub fn filter_count(&self) -> usize {
        self.info.count()
    }

    /// Bytes held by the planned responses and the workspace.
    pub fn memory_bytes(&self) -> usize {
        let c = core::mem::size_of::<Complex<T>>();
        let r = core::mem::size_of::<T>();
        (self.responses.len() + self.complex.len()) * c
            + (self.power.len() + self.real.len()) * r
            + self.pool.memory_bytes()
    }

    /// Reconstructs one slice into `image` (DESIGN §3.7) on the planned threads; see
    /// [`sparsemap_core::recon::reconstruct`] for the arguments and errors.
    pub fn reconstruct(
        &mut self,
        kspace: &[Complex<T>],
        mask: &[T],
        lambda: Lambda<'_, T>,
        config: &ReconConfig<T>,
        image: &mut [Complex<T>],
    ) -> Result<ReconReport<T>> {
        let n = self.fft.shape().len();
        if image.len() != n {
            return Err(sparsemap_core::Error::LengthMismatch {
                what: "image",
                expected: n,
                actual: image.len(),
            });
        }
        lambda.validate(self.info.count() * n, n)?;
        self.with_prepared(kspace, mask, config.lowpass_weight, |prepared, pool| {
            solve_on(prepared, pool, lambda, config, image)
        })
    }

    /// Prepares one slice ([`Workspace::prepare`]) and hands it, with the thread pool, to
    /// `f`, which reads the per-slice quantities and solves.
    pub fn with_prepared<R, E: From<sparsemap_core::Error>>(
        &mut self,
        kspace: &[Complex<T>],
        mask: &[T],
        lowpass_weight: T,
        f: impl FnOnce(
            &mut Prepared<'_, '_, '_, T, B>,
            &mut WorkerPool<T>,
        ) -> core::result::Result<R, E>,
    ) -> core::result::Result<R, E> {
        let plan = DictionaryPlan::view(&self.fft, self.info, &self.responses, &self.power)?;
        let shape = self.fft.shape();
        let mut workspace = Workspace::new(
            shape,
            self.info.count(),
            self.fft.scratch_len(),
            &mut self.complex,
            &mut self.real,
        )?;
        let mut prepared = workspace.prepare(&plan, kspace, mask, lowpass_weight)?;
        f(&mut prepared, &mut self.pool)
    }
}

/// The solve of a prepared slice on the pool's threads (the serial core path for one
/// thread, [`Prepared::solve_with`] otherwise: the same bits either way) with `config`'s
/// iteration count, then `config`'s background gate ([`Prepared::gate_background`]) if set.
pub fn solve_on<T: Real, B: FftBackend<T>>(
    prepared: &mut Prepared<'_, '_, '_, T, B>,
    pool: &mut WorkerPool<T>,
    lambda: Lambda<'_, T>,
    config: &ReconConfig<T>,
    image: &mut [Complex<T>],
) -> Result<ReconReport<T>> {
    let threads = pool.threads();
    let report = if threads.count() == 1 {
        prepared.solve(lambda, config.iterations, image)?
    } else {
        prepared.solve_with(
            lambda,
            config.iterations,
            image,
            &mut pool.workers(),
            &threads,
        )?
    };
    if let Some(kappa) = config.background_gate {
        prepared.gate_background(kappa, image)?;
    }
    Ok(report)
}

/// Which FFT backend the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// rustfft (std, SIMD on x86 and aarch64): the default on the edge box.
    #[default]
    RustFft,
    /// microfft (no_std, what a microcontroller would run).
    MicroFft,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::RustFft => "rustfft",
            BackendKind::MicroFft => "microfft",
        }
    }
}

/// An `f32` reconstructor with the backend chosen at run time.
pub enum EdgeReconstructor {
    RustFft(Reconstructor<f32, RustFft<f32>>),
    MicroFft(Reconstructor<f32, MicroFft>),
}

impl EdgeReconstructor {
    /// Plans `dictionary` on `shape` with the chosen FFT backend, for `threads` threads.
    pub fn new(
        kind: BackendKind,
        shape: Shape,
        dictionary: Dictionary<'_, f32>,
        threads: Threads,
    ) -> anyhow::Result<Self> {
        Ok(match kind {
            BackendKind::RustFft => Self::RustFft(Reconstructor::new(
                RustFft::new(shape),
                dictionary,
                threads,
            )?),
            BackendKind::MicroFft => Self::MicroFft(Reconstructor::new(
                MicroFft::new(shape),
                dictionary,
                threads,
            )?),
        })
    }

    pub fn threads(&self) -> Threads {
        match self {
            Self::RustFft(r) => r.threads(),
            Self::MicroFft(r) => r.threads(),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        match self {
            Self::RustFft(r) => r.memory_bytes(),
            Self::MicroFft(r) => r.memory_bytes(),
        }
    }

    pub fn shape(&self) -> Shape {
        match self {
            Self::RustFft(r) => r.shape(),
            Self::MicroFft(r) => r.shape(),
        }
    }

    pub fn reconstruct(
        &mut self,
        kspace: &[Complex<f32>],
        mask: &[f32],
        lambda: Lambda<'_, f32>,
        config: &ReconConfig<f32>,
        image: &mut [Complex<f32>],
    ) -> Result<ReconReport<f32>> {
        match self {
            Self::RustFft(r) => r.reconstruct(kspace, mask, lambda, config, image),
            Self::MicroFft(r) => r.reconstruct(kspace, mask, lambda, config, image),
        }
    }

    /// [`Reconstructor::with_prepared`] behind the run-time backend choice.
    pub fn with_prepared<R>(
        &mut self,
        kspace: &[Complex<f32>],
        mask: &[f32],
        lowpass_weight: f32,
        f: impl FnOnce(&mut dyn PreparedSlice, &mut WorkerPool<f32>) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        match self {
            Self::RustFft(r) => r.with_prepared(kspace, mask, lowpass_weight, |p, pool| {
                f(p as &mut dyn PreparedSlice, pool)
            }),
            Self::MicroFft(r) => r.with_prepared(kspace, mask, lowpass_weight, |p, pool| {
                f(p as &mut dyn PreparedSlice, pool)
            }),
        }
    }
}
