#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

#[cfg(feature = "std")]
extern crate std;

mod assemble;
mod decode;
mod encode;
mod error;
mod frame;
#[cfg(feature = "std")]
mod io;

pub use assemble::{
    AssembleError, AssemblerConfig, Buffer, ClosedBy, Completed, DecoderErrors, FaultKinds, Field,
    LineOutcome, ScanSummary, SliceAssembler, SliceStats, MAX_COILS, MAX_SLOTS,
};
pub use decode::{Decoder, FeedResult, SEQ_WINDOW};
pub use encode::{
    crc32, encode, encode_fault, encode_line, encode_scan_end, encode_scan_start, max_encoded_len,
    max_raw_len, MAX_ENCODED_LEN, MAX_RAW_LEN,
};
pub use error::Error;
pub use frame::{
    EndStatus, Fault, FaultKind, Frame, Line, Samples, ScanEnd, ScanStart, MAX_N_X, VERSION,
};
#[cfg(feature = "std")]
pub use io::{FrameReader, ReadError, READ_CHUNK};

/// Re-exported so users name the same `heapless::Vec` as the frames.
pub use heapless;
/// Re-exported so users name the same `Complex` as [`SliceAssembler`].
pub use num_complex;
