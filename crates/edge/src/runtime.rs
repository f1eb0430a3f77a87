//! The std runtime around `sparsemap-core`: owns the buffers, plans once per dictionary and
//! grid, then reconstructs any number of slices without allocating.

use num_complex::Complex;
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, PlanInfo};
use sparsemap_core::fft::{Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::{reconstruct, ReconConfig, ReconReport, Workspace};
use sparsemap_core::{Real, Result, Shape};

/// A planned reconstructor for one grid and one dictionary.
pub struct Reconstructor<T: Real, B> {
    fft: Fft2<B>,
    info: PlanInfo,
    responses: Vec<Complex<T>>,
    power: Vec<T>,
    complex: Vec<Complex<T>>,
    real: Vec<T>,
}

impl<T: Real, B: FftBackend<T>> Reconstructor<T, B> {
    /// Plans the FFT and the dictionary responses and allocates the workspace (the only
    /// allocations; see [`Workspace`] for the memory formula).
    pub fn new(backend: B, filters: &[T], count: usize, side: usize) -> Result<Self> {
        let fft = Fft2::new(backend);
        let shape = fft.shape();
        let dictionary = Dictionary::new(filters, count, side)?;
        let mut responses =
            vec![Complex::default(); DictionaryPlan::<T, B>::responses_len(shape, count)];
        let mut power = vec![T::zero(); DictionaryPlan::<T, B>::power_len(shape)];
        let mut scratch = vec![Complex::default(); DictionaryPlan::<T, B>::scratch_len(&fft)];
        let info =
            DictionaryPlan::compute(&fft, dictionary, &mut responses, &mut power, &mut scratch)?;
        let complex =
            vec![Complex::default(); Workspace::<T>::complex_len(shape, count, fft.scratch_len())];
        let real = vec![T::zero(); Workspace::<T>::real_len(shape)];
        Ok(Self {
            fft,
            info,
            responses,
            power,
            complex,
            real,
        })
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
        (self.responses.len() + self.complex.len()) * c + (self.power.len() + self.real.len()) * r
    }

    /// Reconstructs one slice into `image` (DESIGN §3.7); see
    /// [`sparsemap_core::recon::reconstruct`] for the arguments and errors.
    pub fn reconstruct(
        &mut self,
        kspace: &[Complex<T>],
        mask: &[T],
        lambda: Lambda<'_, T>,
        config: &ReconConfig<T>,
        image: &mut [Complex<T>],
    ) -> Result<ReconReport<T>> {
        let plan = DictionaryPlan::view(&self.fft, self.info, &self.responses, &self.power)?;
        let mut workspace = Workspace::new(
            self.shape(),
            self.info.count(),
            self.fft.scratch_len(),
            &mut self.complex,
            &mut self.real,
        )?;
        reconstruct(&plan, kspace, mask, lambda, config, &mut workspace, image)
    }
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
    pub fn new(
        kind: BackendKind,
        shape: Shape,
        filters: &[f32],
        count: usize,
        side: usize,
    ) -> Result<Self> {
        Ok(match kind {
            BackendKind::RustFft => Self::RustFft(Reconstructor::new(
                RustFft::new(shape),
                filters,
                count,
                side,
            )?),
            BackendKind::MicroFft => Self::MicroFft(Reconstructor::new(
                MicroFft::new(shape),
                filters,
                count,
                side,
            )?),
        })
    }

    pub fn memory_bytes(&self) -> usize {
        match self {
            Self::RustFft(r) => r.memory_bytes(),
            Self::MicroFft(r) => r.memory_bytes(),
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
}
