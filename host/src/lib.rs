//! # sparsemap-host
//!
//! Host-side validation of sparsemap (issue: host crate). Everything sparsemap claims about
//! image quality is measured with this crate: [`metrics`] (PSNR, SSIM, NRMSE, checked
//! against scikit-image) and the classical [`baselines`] (total variation, BART).

pub mod baselines;
pub mod dataset;
pub mod export;
pub mod metrics;
pub mod scan;
pub mod simulate;
pub mod volume;
