//! The acquisition bridge of sparsemap: firmware for a Cortex-M4F next to the scanner's
//! receive chain. It configures a TI ADS131A02 dual-channel I/Q ADC, waits for the
//! sequencer's readout trigger, reads one readout of `kx_count` complex samples (one per ADC
//! data-ready), and streams it to the edge box as `sparsemap-wire` frames over any
//! `embedded_io` link (UART, USB-CDC), with increasing `seq`, then a `ScanEnd`.
//!
//! * `#![no_std]`, no allocation, no `unsafe`; every buffer is sized by const generics
//!   (costs in [`Bridge`]'s docs).
//! * Hardware only through embedded-hal 1.0 ([`embedded_hal::spi::SpiDevice`],
//!   [`embedded_hal::digital::InputPin`]) and embedded-io ([`embedded_io::Write`] +
//!   [`embedded_io::WriteReady`]), so the whole state machine runs in host tests against
//!   `embedded-hal-mock` and a behavioural model of the ADC.
//! * ADC problems are reported in `Fault` frames, never panics; link back-pressure is
//!   absorbed by a queue and a non-blocking pump; only a dead link is an error.
//! * `defmt` logging behind the `defmt` feature (`src/fmt.rs`).
//!
//! See `firmware/README.md` for the board, flashing, and the link budget.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod fmt;

pub mod ads131a02;
pub mod bridge;
pub mod link;

pub use ads131a02::{AdcError, Ads131a02};
pub use bridge::{Bridge, LinkError, Readout, ScanPlan, ScanSummary, State, Timing};
pub use link::TxQueue;
