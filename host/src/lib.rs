//! # sparsemap-host
//!
//! Host-side validation of sparsemap. Everything sparsemap claims about image quality is
//! measured with this crate:
//! - [`volume`], [`export`] and [`dataset`]: real MR slices (Colin27, MNI152, a synthetic T2)
//!   read from NIfTI, split without shared anatomy, written as `.npz` + `.json`;
//! - [`simulate`] and [`scan`]: low-field acquisitions (masks, k-space noise) and wire
//!   streams with faults; [`coils`]: multi-coil acquisitions (Biot–Savart sensitivities,
//!   correlated receiver noise, noise scans);
//! - [`metrics`] (PSNR, SSIM, NRMSE, checked against scikit-image), the classical
//!   [`baselines`] (total variation, BART) and the common [`methods`] interface;
//! - [`eval`] (tuning on validation, tables, [`figure`]s), [`bench`] (time ratios in one
//!   process) and [`e2e`] (whole `sparsemap` and BART processes, per-stage times, peak RSS;
//!   [`process`] measures them); [`eval_coils`]: the multi-coil comparison.
#![forbid(unsafe_code)]

pub mod baselines;
pub mod bench;
pub mod coils;
pub mod dataset;
pub mod dicom_series;
pub mod e2e;
pub mod eval;
pub mod eval_coils;
pub mod export;
pub mod figure;
pub mod methods;
pub mod metrics;
pub mod process;
pub mod scan;
pub mod simulate;
pub mod sources;
pub mod volume;

/// The repository root at build time (for the bundled example used by `bench`).
pub const REPO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
