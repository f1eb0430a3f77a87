//! # sparsemap-edge
//!
//! The std runtime of sparsemap: reads inputs ([`npy`], MRD/ISMRMRD HDF5 [`mrd`], the wire
//! stream [`ingest`]), predicts Lambda maps with an ONNX
//! model ([`lambda_net`], tract), reconstructs with `sparsemap-core` ([`runtime`]; coil
//! sensitivities, prewhitening and compression in [`coils`], a multi-coil slice in
//! [`multicoil`]), writes
//! images ([`output`]). The `sparsemap` binary
//! (`src/main.rs`) is a thin command line over these modules (DESIGN §7).
#![forbid(unsafe_code)]

pub mod coils;
pub mod dicom;
pub mod dictionary_norm;
pub mod features;
pub mod guard;
pub mod ingest;
pub mod lambda_net;
pub mod learned;
pub mod limits;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod model_choice;
pub mod mrd;
pub mod mrd_stream;
pub mod multicoil;
pub mod npy;
pub mod output;
pub mod pacs;
pub mod parallel;
pub mod runtime;
pub mod serve;
pub mod worker;

/// The dictionary used when `--dictionary` is not given: `models/dictionaries/dct5.npy`
/// (24 non-constant 5x5 DCT-II atoms scaled to `L = 1`; see its `dct5.json`).
pub const BUNDLED_DICTIONARY: &[u8] = include_bytes!("../../../models/dictionaries/dct5.npy");
pub const BUNDLED_DICTIONARY_NAME: &str = "dct5 (bundled, models/dictionaries/dct5.npy)";
