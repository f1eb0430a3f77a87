//! The std runtime around `sparsemap-core`: owns the buffers, plans once per dictionary and
//! grid, then reconstructs any number of slices without allocating.

use crate::features::PreparedSlice;
use crate::limits::try_filled;
use crate::parallel::{Threads, WorkerPool};
use num_complex::Complex;
use sparsemap_core::coils::{CoilPrepared, CoilWorkspace};
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis, PlanInfo};
use sparsemap_core::fft::{Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::{Executor, Lambda, WorkerBuffers};
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

    /// Prepares one multi-coil slice ([`CoilWorkspace::prepare`]: `kspace`, `masks` and
    /// `sensitivities` `[coils][n_y][n_x]`) and hands it, with the thread pool, to `f`. The
    /// coil workspace lives in the same buffers as the single-coil one, grown (fallibly) on
    /// the first slice with this many coils: memory is the larger of the two, not the sum.
    #[allow(clippy::too_many_arguments)]
    pub fn with_prepared_coils<R, E: From<sparsemap_core::Error> + From<anyhow::Error>>(
        &mut self,
        coils: usize,
        kspace: &[Complex<T>],
        masks: &[T],
        sensitivities: &[Complex<T>],
        lowpass_weight: T,
        f: impl FnOnce(
            &mut CoilPrepared<'_, '_, '_, T, B>,
            &mut WorkerPool<T>,
        ) -> core::result::Result<R, E>,
    ) -> core::result::Result<R, E> {
        let shape = self.fft.shape();
        let count = self.info.count();
        let scratch = self.fft.scratch_len();
        crate::limits::try_grow(
            &mut self.complex,
            CoilWorkspace::<T>::complex_len(shape, count, coils, scratch),
            Complex::default(),
        )?;
        crate::limits::try_grow(
            &mut self.real,
            CoilWorkspace::<T>::real_len(shape, coils),
            T::zero(),
        )?;
        let plan = DictionaryPlan::view(&self.fft, self.info, &self.responses, &self.power)?;
        let mut workspace = CoilWorkspace::new(
            shape,
            count,
            coils,
            scratch,
            &mut self.complex,
            &mut self.real,
        )?;
        let mut prepared =
            workspace.prepare(&plan, kspace, masks, sensitivities, lowpass_weight)?;
        f(&mut prepared, &mut self.pool)
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

/// What [`solve_on`] needs of a prepared slice: the serial solve, the solve on an executor,
/// and the background gate (single-coil [`Prepared`] and multi-coil [`CoilPrepared`]).
pub trait Solve<T: Real> {
    fn solve(
        &mut self,
        lambda: Lambda<'_, T>,
        iterations: usize,
        image: &mut [Complex<T>],
    ) -> Result<ReconReport<T>>;
    fn solve_with<E: Executor>(
        &mut self,
        lambda: Lambda<'_, T>,
        iterations: usize,
        image: &mut [Complex<T>],
        workers: &mut [WorkerBuffers<'_, T>],
        executor: &E,
    ) -> Result<ReconReport<T>>;
    fn gate_background(&mut self, kappa: T, image: &mut [Complex<T>]) -> Result<()>;
}

macro_rules! impl_solve {
    ($prepared:ident) => {
        impl<T: Real, B: FftBackend<T>> Solve<T> for $prepared<'_, '_, '_, T, B> {
            fn solve(
                &mut self,
                lambda: Lambda<'_, T>,
                iterations: usize,
                image: &mut [Complex<T>],
            ) -> Result<ReconReport<T>> {
                $prepared::solve(self, lambda, iterations, image)
            }
            fn solve_with<E: Executor>(
                &mut self,
                lambda: Lambda<'_, T>,
                iterations: usize,
                image: &mut [Complex<T>],
                workers: &mut [WorkerBuffers<'_, T>],
                executor: &E,
            ) -> Result<ReconReport<T>> {
                $prepared::solve_with(self, lambda, iterations, image, workers, executor)
            }
            fn gate_background(&mut self, kappa: T, image: &mut [Complex<T>]) -> Result<()> {
                $prepared::gate_background(self, kappa, image)
            }
        }
    };
}
impl_solve!(Prepared);
impl_solve!(CoilPrepared);

/// The solve of a prepared slice on the pool's threads (the serial core path for one
/// thread, [`Solve::solve_with`] otherwise: the same bits either way) with `config`'s
/// iteration count, then `config`'s background gate ([`Solve::gate_background`]) if set.
pub fn solve_on<T: Real, P: Solve<T>>(
    prepared: &mut P,
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
        self.with_slice(SliceData::Single { kspace, mask }, lowpass_weight, f)
    }

    /// [`Reconstructor::with_prepared`] or [`Reconstructor::with_prepared_coils`] behind the
    /// run-time backend choice.
    pub fn with_slice<R>(
        &mut self,
        data: SliceData<'_>,
        lowpass_weight: f32,
        f: impl FnOnce(&mut dyn PreparedSlice, &mut WorkerPool<f32>) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        macro_rules! dispatch {
            ($r:expr) => {
                match data {
                    SliceData::Single { kspace, mask } => {
                        $r.with_prepared(kspace, mask, lowpass_weight, |p, pool| {
                            f(p as &mut dyn PreparedSlice, pool)
                        })
                    }
                    SliceData::Coils {
                        coils,
                        kspace,
                        masks,
                        sensitivities,
                    } => $r.with_prepared_coils(
                        coils,
                        kspace,
                        masks,
                        sensitivities,
                        lowpass_weight,
                        |p, pool| f(p as &mut dyn PreparedSlice, pool),
                    ),
                }
            };
        }
        match self {
            Self::RustFft(r) => dispatch!(r),
            Self::MicroFft(r) => dispatch!(r),
        }
    }
}

/// One slice's input: one coil (`[n_y][n_x]` k-space and mask), or several with their
/// sensitivities (each `[coils][n_y][n_x]`; DESIGN §3.4).
#[derive(Debug, Clone, Copy)]
pub enum SliceData<'a> {
    Single {
        kspace: &'a [Complex<f32>],
        mask: &'a [f32],
    },
    Coils {
        coils: usize,
        kspace: &'a [Complex<f32>],
        masks: &'a [f32],
        sensitivities: &'a [Complex<f32>],
    },
}
