//! The frames of the acquisition stream (design §5).
//!
//! Every type here is serialised with postcard's standard encoding, in declaration order:
//! enum variants as a varint index, `u16`/`u32` as LEB128 varints, `i16` as zig-zag
//! varints, `f32` as 4 little-endian bytes, `u8` as one byte, sequences as a varint length
//! followed by their elements. **The order of variants and fields is the wire format**: it
//! may only change together with [`VERSION`], and two things never change at all, because a
//! decoder of any version relies on them to recognise a stream it cannot read:
//! `ScanStart` is variant 0 of [`Frame`] and `version` is its first field.

use heapless::Vec;
use serde::{Deserialize, Serialize};

/// The version of the frame layout this crate writes and accepts (`ScanStart::version`).
pub const VERSION: u16 = 2;

/// Largest reconstruction grid width the format allows (design §3.1: N_x is a power of
/// two in 32..=512), and so the largest readout. A [`Line`] holds at most this many complex
/// samples unless a smaller const-generic capacity is chosen.
pub const MAX_N_X: usize = 512;

/// One frame of the stream.
///
/// `N` is the capacity of a [`Line`]'s sample buffer (complex samples); it bounds the size of
/// the frame in memory and on the wire (see [`crate::max_encoded_len`]). In memory a
/// `Frame<N>` is about `8 N + 32` bytes (the `f32` sample variant): 4.1 KiB for `N = 512`,
/// 2.1 KiB for `N = 256`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame<const N: usize = MAX_N_X> {
    /// Variant 0 (frozen): a scan begins; everything the edge needs to allocate and
    /// reconstruct it.
    ScanStart(ScanStart),
    /// Variant 1: one readout.
    Line(Line<N>),
    /// Variant 2: the scan is over.
    ScanEnd(ScanEnd),
    /// Variant 3: the acquisition hardware reported a problem (a readout was lost, the ADC
    /// stopped, the link overflowed). Never a panic on the scanner side: a frame.
    Fault(Fault),
}

/// A scan begins. The geometry here is what the edge reconstructs into; the sampling mask is
/// implied by which lines arrive (design §5: a line that never arrives is a k-space line
/// that was not sampled) and by the readout window: only the columns
/// `kx_first .. kx_first + kx_count` of a row are ever measured, the others are not sampled.
///
/// A real readout acquires a number of samples that covers a window of the reconstruction
/// grid (ISMRMRD's encoded vs. reconstruction matrix). Sending only that window is what
/// lets a receiver tell a measured zero from an unmeasured column.
///
/// The decoder accepts a `ScanStart` only if `n_y`, `n_coils`, `n_slices` are `>= 1`,
/// `n_x <= MAX_N_X`, `kx_count >= 1`, `kx_first + kx_count <= n_x` and `kx_count <= N`
/// (its line capacity); otherwise it reports [`crate::Error::InvalidFrame`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScanStart {
    /// Frame layout version, [`VERSION`] for this crate. Always the first field.
    pub version: u16,
    /// Identifies the scan; every [`Line`], [`ScanEnd`] and [`Fault`] of it repeats it.
    /// Chosen by the scanner side, unique at least between consecutive scans.
    pub scan_id: u32,
    /// Phase-encode lines of the full grid (k-space rows, `N_y`).
    pub n_y: u16,
    /// Columns of the centred reconstruction grid (`N_x`), `1..=MAX_N_X`. A readout covers
    /// the window `kx_first .. kx_first + kx_count` of them.
    pub n_x: u16,
    /// Receive coils (`>= 1`).
    pub n_coils: u8,
    /// Slices (`>= 1`).
    pub n_slices: u16,
    /// Main field strength in millitesla (e.g. 47 for a 47 mT scanner).
    pub field_mt: f32,
    /// Field of view in millimetres, `[y (phase encode), x (readout)]`.
    pub fov_mm: [f32; 2],
    /// First grid column a readout measures (index into the centred `N_x` columns).
    pub kx_first: u16,
    /// Samples per readout: every `Line` has exactly this many, for columns
    /// `kx_first .. kx_first + kx_count`. `>= 1`, and at most the decoder's capacity `N`.
    pub kx_count: u16,
}

/// One readout: `kx_count` complex samples of k-space row `ky` of one slice and coil, for
/// the grid columns `kx_first .. kx_first + kx_count` of the scan's [`ScanStart`] (the grid
/// is centred: its DC column is `n_x / 2`, design §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Line<const N: usize = MAX_N_X> {
    /// The scan this line belongs to.
    pub scan_id: u32,
    /// Position of this line in the scan's stream of lines: 0 for the first `Line` after
    /// `ScanStart`, then increasing by exactly one per `Line` sent. A receiver that sees a
    /// jump knows lines were lost on the link (as opposed to never acquired). Always
    /// `< u32::MAX`.
    pub seq: u32,
    /// Slice index, `< n_slices`.
    pub slice: u16,
    /// Coil index, `< n_coils`.
    pub coil: u8,
    /// Phase-encode row, `< n_y` (row index into the centred `[N_y][N_x]` grid).
    pub ky: u16,
    /// The samples, `kx_count` of them; sample `k` is grid column `kx_first + k`.
    pub samples: Samples<N>,
}

/// The complex samples of one readout, in one of two representations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Samples<const N: usize = MAX_N_X> {
    /// What a 16-bit ADC gives: sample `k` is `scale * (iq[k][0] + j iq[k][1])` in the
    /// k-space units of design §3.2. On the wire each `i16` is a zig-zag varint of 1–3
    /// bytes (small values are cheap: k-space energy is concentrated near DC).
    I16 {
        /// Value of one ADC code (one LSB), the same for I and Q.
        scale: f32,
        /// `[I, Q]` pairs.
        iq: Vec<[i16; 2], N>,
    },
    /// Floating-point samples `re + j im` (simulation, or a receiver that already scaled).
    /// 8 bytes per sample on the wire.
    F32 {
        /// `[re, im]` pairs.
        iq: Vec<[f32; 2], N>,
    },
}

impl<const N: usize> Samples<N> {
    /// Number of complex samples.
    pub fn len(&self) -> usize {
        match self {
            Samples::I16 { iq, .. } => iq.len(),
            Samples::F32 { iq } => iq.len(),
        }
    }

    /// `true` when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `k` as `[re, im]` in k-space units (`scale * code` for [`Samples::I16`]).
    /// `None` past the end.
    pub fn get(&self, k: usize) -> Option<[f32; 2]> {
        match self {
            Samples::I16 { scale, iq } => iq
                .get(k)
                .map(|&[i, q]| [*scale * f32::from(i), *scale * f32::from(q)]),
            Samples::F32 { iq } => iq.get(k).copied(),
        }
    }
}

/// The scan is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScanEnd {
    /// The scan that ends.
    pub scan_id: u32,
    /// How many `Line` frames the sender emitted for this scan (so the last `seq` was
    /// `lines_sent - 1`). A receiver compares it with what it got.
    pub lines_sent: u32,
    /// Whether the scan ran to the end of its plan.
    pub status: EndStatus,
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EndStatus {
    /// Every planned readout was acquired (some may still have been lost as [`Fault`]s).
    Complete,
    /// The acquisition stopped early (a fatal [`Fault`] precedes this frame).
    Aborted,
}

/// The acquisition side reports a problem. Faults are informational: a receiver delivers
/// them whatever its scan state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fault {
    /// The scan it happened in, or 0 outside a scan (e.g. while configuring the ADC).
    pub scan_id: u32,
    /// What went wrong.
    pub kind: FaultKind,
    /// Slice of the readout concerned (0 if none).
    pub slice: u16,
    /// Coil of the readout concerned (0 if none).
    pub coil: u8,
    /// Phase-encode row of the readout concerned (0 if none). That readout was *not* sent.
    pub ky: u16,
    /// Kind-specific detail, e.g. the ADC status word or the number of bytes dropped.
    pub detail: u32,
}

/// What went wrong on the acquisition side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FaultKind {
    /// The SPI bus to the ADC returned an error during a readout; the readout is lost.
    AdcBus,
    /// The ADC answered with an unexpected status/response word (lost frame alignment);
    /// `detail` is the word. The readout is lost.
    AdcProtocol,
    /// The ADC flagged a fault in its status register; `detail` is the register. The
    /// readout is lost.
    AdcStatus,
    /// No data-ready within the timeout: the ADC (or its clock) stopped. Fatal for the scan;
    /// `detail` is the number of samples of the readout that had been read.
    AdcTimeout,
    /// No readout trigger from the sequencer within the timeout. Fatal for the scan.
    TriggerTimeout,
    /// The ADC did not accept its configuration (wrong ID, command not acknowledged);
    /// `detail` is the unexpected response.
    AdcConfig,
    /// The link to the edge could not take the frame in time; the readout is lost.
    /// `detail` is the size in bytes of the encoded frame that was dropped.
    LinkOverrun,
    /// The scan plan handed to the acquisition side is inconsistent (a readout outside the
    /// grid, a zero dimension or `n_x` above `MAX_N_X`, a readout window that is empty,
    /// leaves the grid or exceeds the firmware's capacity); no scan starts. `detail` is the
    /// index of the offending readout, `n_x`, or `kx_count` (window).
    InvalidPlan,
}
