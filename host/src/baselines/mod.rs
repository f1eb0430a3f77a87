//! Classical baselines on the same data as sparsemap (DESIGN §8).
//!
//! All inputs follow DESIGN §3.1–3.2: k-space is a row-major `[n_y][n_x]` `Complex32` array,
//! **centred** (DC at `[n_y/2][n_x/2]`), in the **unitary** convention
//! `F x = fftshift(fft2(ifftshift(x))) / sqrt(N)`; the mask is `true` where a sample was
//! measured. Values of the k-space outside the mask are ignored (`y <- M (.) y`), as in
//! DESIGN §3.7 step 1. Every reconstruction returns a `[n_y][n_x]` image on the same scale
//! as the zero-filled image `F^H y`.
//!
//! - [`tv`]: isotropic total variation solved in Rust with Chambolle–Pock, on the core's
//!   [`CentredFourier`](sparsemap_core::ops::CentredFourier) operator, with the scaling of
//!   DESIGN §3.6/§3.7 so that `lambda` means the same on every slice.
//! - [`cfl`]: BART's `.cfl`/`.hdr` file pair (layout conventions documented there).
//! - [`bart`]: a runner for the BART command-line tool (Debian package `bart`, 0.8.00):
//!   `bart fft -i -u 3` and `bart pics` with l1-wavelet or TV regularisation.
//! - [`unet`]: the black-box learned baseline, a U-Net on the zero-filled image (tract).

pub mod bart;
pub mod cfl;
pub mod tv;
pub mod unet;

pub use bart::Bart;
pub use tv::{tv_reconstruct, tv_reconstruct_traced, Gradient, TvOutput};

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use sparsemap_core::Shape;

/// `M (.) y` as a row-major vector plus the 0/1 mask as `f32` weights, after checking that
/// both arrays are `[n_y][n_x]` with the same shape and that the k-space is finite.
pub(crate) fn masked_data(
    kspace: ArrayView2<'_, Complex32>,
    mask: ArrayView2<'_, bool>,
) -> Result<(Vec<Complex32>, Vec<f32>)> {
    if kspace.shape() != mask.shape() {
        bail!(
            "k-space shape {:?} and mask shape {:?} differ",
            kspace.shape(),
            mask.shape()
        );
    }
    if kspace
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        bail!("k-space contains NaN or infinite values");
    }
    let weights: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let data = kspace.iter().zip(&weights).map(|(v, &w)| v * w).collect();
    Ok((data, weights))
}

/// The core's [`Shape`] of a `[n_y][n_x]` array (powers of two in 4..=512), with a readable
/// error otherwise.
pub(crate) fn core_shape(dims: &[usize]) -> Result<Shape> {
    match dims {
        &[n_y, n_x] => Shape::new(n_y, n_x)
            .map_err(|e| anyhow::anyhow!("unsupported grid {n_y}x{n_x} for the core FFT: {e:?}")),
        other => bail!("expected a 2-D [n_y, n_x] array, found shape {other:?}"),
    }
}

/// A row-major vector back into a `[n_y][n_x]` array.
pub(crate) fn to_array(shape: Shape, data: Vec<Complex32>) -> Array2<Complex32> {
    Array2::from_shape_vec((shape.n_y(), shape.n_x()), data)
        .expect("length n_y * n_x by construction")
}
