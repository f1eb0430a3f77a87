//! # sparsemap-core
//!
//! The numerical heart of sparsemap, `#![no_std]`, without allocation and without `unsafe`:
//! centred unitary 2-D FFTs over two backends ([`fft::MicroFft`] everywhere,
//! [`fft::RustFft`] with the `std` feature), linear operators with tested adjoints
//! ([`ops`], [`dictionary`]), fixed-iteration FISTA with per-filter, per-pixel sparsity
//! levels ([`fista`]), the complete reconstruction of DESIGN §3.7 ([`recon`]) and its
//! multi-coil form `A = M_c F S_c` (DESIGN §3.4, [`coils`]).
//!
//! Everything follows `docs/design.md`: row-major `[n_y][n_x]` arrays, centred k-space,
//! `F x = fftshift(fft2(ifftshift(x))) / sqrt(N)`. The caller owns every buffer; each
//! type says how many elements it needs (`*_len()` functions).
//!
//! ```
//! use num_complex::Complex32;
//! use sparsemap_core::{fft::{Fft2, MicroFft}, dictionary::{Dictionary, DictionaryPlan},
//!     fista::Lambda, recon::{reconstruct, ReconConfig, Workspace}, Shape};
//!
//! let shape = Shape::new(32, 32)?;
//! let fft = Fft2::new(MicroFft::new(shape));
//! // One 3x3 horizontal-difference filter.
//! let taps = [0.0f32, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0];
//! let dictionary = Dictionary::new(&taps, 1, 3)?;
//! let (mut responses, mut power) = (vec![Complex32::default(); shape.len()], vec![0.0f32; shape.len()]);
//! let mut scratch = vec![Complex32::default(); DictionaryPlan::scratch_len(&fft)];
//! let plan = DictionaryPlan::new(&fft, dictionary, &mut responses, &mut power, &mut scratch)?;
//!
//! let mut complex = vec![Complex32::default(); Workspace::<f32>::complex_len(shape, 1, fft.scratch_len())];
//! let mut real = vec![0.0f32; Workspace::<f32>::real_len(shape)];
//! let mut workspace = Workspace::new(shape, 1, fft.scratch_len(), &mut complex, &mut real)?;
//!
//! let mut kspace = vec![Complex32::default(); shape.len()];
//! let mut mask = vec![0.0f32; shape.len()];
//! for y in 8..24 { for x in 8..24 { kspace[y * 32 + x] = Complex32::new(1.0, 0.0); mask[y * 32 + x] = 1.0; } }
//! let mut image = vec![Complex32::default(); shape.len()];
//! let config = ReconConfig { iterations: 10, ..ReconConfig::default() };
//! let report = reconstruct(&plan, &kspace, &mask, Lambda::Scalar(0.01), &config, &mut workspace, &mut image)?;
//! assert_eq!(report.sampled, 256);
//! # Ok::<(), sparsemap_core::Error>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

#[cfg(feature = "std")]
extern crate std;

pub mod coils;
pub mod dictionary;
mod error;
pub mod fft;
pub mod fista;
pub mod lowpass;
pub mod ops;
mod real;
pub mod recon;
mod shape;

pub use error::{Error, Result};
pub use real::Real;
pub use shape::Shape;
