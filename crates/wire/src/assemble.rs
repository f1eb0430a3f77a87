//! Slice assembly: the decoded frames of one scan → k-space and sampling mask per slice, in
//! caller-owned buffers (design §5).
//!
//! A [`SliceAssembler`] is made from the scan's [`ScanStart`] and then told, in stream
//! order, everything the [`crate::Decoder`] reported for that scan: each `Line`
//! ([`SliceAssembler::line`]), `Fault` ([`SliceAssembler::fault`]), decoder error
//! ([`SliceAssembler::wire_error`]) and the `ScanEnd` ([`SliceAssembler::end`]) or the loss
//! of the stream ([`SliceAssembler::interrupt`]). Completed slices come out of
//! [`SliceAssembler::pop_complete`] in slice order.
//!
//! # Storage
//!
//! The caller owns two buffers of [`SliceAssembler::storage_len`] elements (`slots * n_coils
//! * n_y * n_x`): k-space (`Complex<f32>`) and mask (`bool`). They are cut into `slots`
//! slots of one slice each, laid out `[n_coils][n_y][n_x]` over the centred grid of
//! [`ScanStart`]. Nothing is allocated; the assembler itself is a few hundred bytes.
//!
//! # Placing lines
//!
//! * A slot is cleared (all samples zero, mask all `false`) when a slice opens in it: the
//!   first line (or fault) of that slice that finds a free slot.
//! * A `Line` writes its `kx_count` samples to row `ky` of its coil at columns
//!   `kx_first .. kx_first + kx_count` (`Samples::I16`: `scale * code`; `Samples::F32` as
//!   is) and sets those mask entries. Columns outside the readout window stay unsampled.
//! * A line with any non-finite sample (after scaling) is not written; it counts in
//!   [`SliceStats::invalid_samples`].
//! * A second line for the same (slice, coil, `ky`) is ignored and counts in
//!   [`SliceStats::duplicates`]; so do the decoder's `Error::Duplicate` reports for lines
//!   (attributed to the open slice with the greatest `seq_first <= seq`, else to
//!   [`ScanSummary::duplicates_unattributed`]).
//! * A line that does not fit the geometry (slice, coil, `ky` out of range, sample count
//!   not `kx_count`) counts in [`ScanSummary::invalid`]; one of another scan in
//!   [`ScanSummary::unknown_scan`]. Neither touches any slot.
//!
//! # Completing slices
//!
//! Lines arrive in slice order, but the link may reorder a few. A slice is completed when
//!
//! * **(a) moved past**: the newest `seq` seen (the high-water mark, over every line of the
//!   scan taken so far) is at least `settle_lines` past the smallest `seq` seen of some later
//!   open slice. With `settle_lines = 0` slice `s` completes as soon as a line of a later
//!   slice arrives;
//! * **(b)** [`SliceAssembler::end`] (every open slice, [`ClosedBy::ScanEnd`]),
//!   [`SliceAssembler::interrupt`] (every open slice, [`ClosedBy::Interrupted`]; a decoder
//!   `Error::ScanInterrupted` for this scan does the same) or
//!   [`SliceAssembler::complete_oldest`] (the caller's slice timeout, [`ClosedBy::Timeout`]);
//! * **(c) slots full**: a line of a slice that is not open needs a slot and none is free:
//!   the oldest open slice is completed ([`ClosedBy::SlotsFull`]) — unless a completed
//!   slice is already waiting for its pop, which will free a slot. A completed slice keeps
//!   its slot until its [`Completed`] view is dropped, so that line is *not* placed: `line`
//!   returns [`LineOutcome::NoSlot`] and counts it in [`ScanSummary::no_slot`], nothing
//!   else (completions stand; the line is not counted as seen) — pop the completed slices
//!   and pass the line again ([`SliceAssembler::line_then_pop`] does exactly that).
//!
//! Rule (a) is evaluated with an arriving line's `seq` before the line gets a slot, so a
//! slice the stream has moved past completes (and frees its slot once popped) without rule
//! (c) forcing out a slice that is still receiving lines.
//!
//! Slices complete in slice order (completing one completes every open slice before it).
//! A slice that received nothing is never opened and never delivered. A line for a slice
//! that already completed — or any line after `end`/`interrupt` — is *late*: it is not
//! placed and counts in [`ScanSummary::late`].
//!
//! # Statistics
//!
//! Every [`Completed`] slice carries [`SliceStats`]; [`SliceAssembler::summary`] gives the
//! scan-level [`ScanSummary`] at any time. The rules that need one:
//!
//! * **missing** — a `seq` that never reached a slice is attributed to the slice of the next
//!   `seq` (in number, not arrival) that did; the leading gap before the first line goes to
//!   the first slice that received one, the trailing gap up to `ScanEnd.lines_sent` to the
//!   last slice completed by [`SliceAssembler::end`] (or to
//!   [`ScanSummary::missing_unattributed`] if `end` completed no slice with lines). Computed
//!   when a slice completes, as `seq_last + 1 −` (first `seq` not yet attributed) − lines
//!   that reached it; so a late line counts as missing in its own slice.
//! * **reordered** — a line that reaches its slice with a `seq` below the high-water mark.
//!   Swapping lines `i` and `i + d` makes exactly `d` lines reordered: `i + 1 ..= i + d − 1`
//!   arrive below `i + d`, and so does `i`.
//! * **corrupt** — decoder `Crc`, `Truncated`, `Malformed` and `Oversize` errors count on
//!   the newest open slice (the open slice of highest index) when they arrive, else in
//!   [`ScanSummary::corrupt_unattributed`].
//! * **faults** — a `Fault` of this scan counts on its slice if that slice is open, or opens
//!   it if it has not completed and a slot is free; otherwise it counts in
//!   [`ScanSummary::faults_unattributed`].
//!
//! The assembler never panics, whatever it is told and in whatever order.

use num_complex::Complex;

use crate::frame::{EndStatus, Fault, FaultKind, Line, Samples, ScanEnd, ScanStart, MAX_N_X};
use crate::Error;

/// Most receive coils the assembler accepts; bounds the buffers before anything is sized.
pub const MAX_COILS: u8 = 32;

/// Most slices held at once (open or completed but not yet popped).
pub const MAX_SLOTS: usize = 4;

/// How the assembler uses its buffers and when it gives up waiting for reordered lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AssemblerConfig {
    /// Slices held at once, `1..=MAX_SLOTS`; the buffers hold this many slices.
    pub slots: usize,
    /// How far (in `seq`) the stream must have moved past the start of a later slice before
    /// a slice is completed (rule (a)). Set it above the link's reordering distance: twice
    /// that distance never completes a slice before its reordered lines arrived.
    pub settle_lines: u32,
}

/// The `ScanStart` or configuration field that is out of the assembler's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Field {
    /// `n_y` not in `1..=MAX_N_X`.
    NY,
    /// `n_x` not in `1..=MAX_N_X`.
    NX,
    /// `n_coils` not in `1..=MAX_COILS`.
    NCoils,
    /// `n_slices` is 0.
    NSlices,
    /// The readout window is empty or leaves the grid (`kx_count = 0` or
    /// `kx_first + kx_count > n_x`); the value is `kx_first + kx_count`.
    Window,
    /// `AssemblerConfig::slots` not in `1..=MAX_SLOTS`.
    Slots,
}

/// Which caller buffer is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Buffer {
    /// The k-space buffer.
    KSpace,
    /// The mask buffer.
    Mask,
}

/// Why an assembler cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AssembleError {
    /// A geometry or configuration field is out of bounds (checked before any size is
    /// computed, so a hostile `ScanStart` cannot ask for gigabytes).
    OutOfBounds {
        /// The field.
        field: Field,
        /// Its value.
        value: u32,
    },
    /// A caller buffer holds fewer elements than [`SliceAssembler::storage_len`].
    BufferTooSmall {
        /// Which one.
        buffer: Buffer,
        /// Elements needed.
        needed: usize,
        /// Elements it has.
        len: usize,
    },
}

impl core::fmt::Display for AssembleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            AssembleError::OutOfBounds { field, value } => {
                write!(f, "{field:?} = {value} is out of the assembler's bounds")
            }
            AssembleError::BufferTooSmall {
                buffer,
                needed,
                len,
            } => write!(f, "{buffer:?} buffer has {len} elements, {needed} needed"),
        }
    }
}

impl core::error::Error for AssembleError {}

/// Why a slice was completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClosedBy {
    /// Rule (a): the stream moved `settle_lines` past the start of a later slice.
    MovedPast,
    /// The `ScanEnd` with this status.
    ScanEnd(EndStatus),
    /// [`SliceAssembler::interrupt`] (stream cut, or the decoder's `ScanInterrupted`).
    Interrupted,
    /// [`SliceAssembler::complete_oldest`] (the caller's slice timeout).
    Timeout,
    /// Rule (c): a new slice needed the slot.
    SlotsFull,
}

/// The set of [`FaultKind`]s seen, as a bit mask (bit `kind as u16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultKinds(pub u16);

impl FaultKinds {
    /// Whether `kind` was seen.
    pub fn contains(self, kind: FaultKind) -> bool {
        self.0 & fault_bit(kind) != 0
    }
    /// Add `kind`.
    pub fn insert(&mut self, kind: FaultKind) {
        self.0 |= fault_bit(kind);
    }
    /// Whether no fault was seen.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

fn fault_bit(kind: FaultKind) -> u16 {
    // A fieldless enum with fewer than 16 variants: the discriminant is a bit index.
    1u16 << ((kind as u16) & 15)
}

/// What happened to one slice (module docs give the counting rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SliceStats {
    /// The scan.
    pub scan_id: u32,
    /// The slice.
    pub slice: u16,
    /// Distinct lines written (all coils).
    pub lines_received: u32,
    /// `seq` numbers attributed to this slice that never reached it (set at completion).
    pub lines_missing: u32,
    /// Lines for a (coil, `ky`) already written, plus the decoder's duplicate reports.
    pub duplicates: u32,
    /// Lines not written because a sample was not finite.
    pub invalid_samples: u32,
    /// Decoder CRC / truncation / malformed / oversize errors while this was the newest
    /// open slice.
    pub corrupt: u32,
    /// Lines that reached this slice below the scan's `seq` high-water mark.
    pub reordered: u32,
    /// `Fault` frames recorded on this slice.
    pub faults: u32,
    /// The kinds of those faults.
    pub fault_kinds: FaultKinds,
    /// Smallest `seq` that reached this slice.
    pub seq_first: Option<u32>,
    /// Largest `seq` that reached this slice.
    pub seq_last: Option<u32>,
    /// `None` while open; why it was completed.
    pub closed_by: Option<ClosedBy>,
    /// `true` when nothing more of this slice was due: completed by rule (a) or by a
    /// `ScanEnd` with status `Complete`. `false` while open and when completed by an
    /// aborted scan, an interruption, a timeout or full slots (lines may still have been
    /// on their way or never acquired).
    pub complete: bool,
}

impl SliceStats {
    fn new(scan_id: u32, slice: u16) -> Self {
        Self {
            scan_id,
            slice,
            lines_received: 0,
            lines_missing: 0,
            duplicates: 0,
            invalid_samples: 0,
            corrupt: 0,
            reordered: 0,
            faults: 0,
            fault_kinds: FaultKinds(0),
            seq_first: None,
            seq_last: None,
            closed_by: None,
            complete: false,
        }
    }

    /// The scan's end status, if this slice was completed by its `ScanEnd`.
    pub fn end_status(&self) -> Option<EndStatus> {
        match self.closed_by {
            Some(ClosedBy::ScanEnd(status)) => Some(status),
            _ => None,
        }
    }
}

/// Decoder errors seen, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecoderErrors {
    /// `Error::Oversize`.
    pub oversize: u32,
    /// `Error::Truncated`.
    pub truncated: u32,
    /// `Error::Crc`.
    pub crc: u32,
    /// `Error::Malformed`.
    pub malformed: u32,
    /// `Error::UnknownVersion`.
    pub unknown_version: u32,
    /// `Error::InvalidFrame`.
    pub invalid_frame: u32,
    /// `Error::SequenceGap`.
    pub sequence_gap: u32,
    /// `Error::Duplicate` (lines and start/end).
    pub duplicate: u32,
    /// `Error::Stale`.
    pub stale: u32,
    /// `Error::UnknownScan`.
    pub unknown_scan: u32,
    /// `Error::ScanInterrupted`.
    pub scan_interrupted: u32,
    /// `Error::Incomplete`.
    pub incomplete: u32,
    /// Anything else (`Error::BufferTooSmall`, an encoder error, should never be passed).
    pub other: u32,
}

/// Scan-level counts, readable at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScanSummary {
    /// The scan.
    pub scan_id: u32,
    /// Lines placed into a slot (all slices).
    pub lines_placed: u32,
    /// Lines for a slice that had already completed, or after `end`/`interrupt`.
    pub late: u32,
    /// Lines refused with [`LineOutcome::NoSlot`] (lost unless passed again).
    pub no_slot: u32,
    /// Lines, faults and `ScanEnd`s naming another scan.
    pub unknown_scan: u32,
    /// Lines and faults that do not fit the geometry (index out of range, wrong sample
    /// count).
    pub invalid: u32,
    /// Decoder duplicate reports for a `seq` no open slice covers.
    pub duplicates_unattributed: u32,
    /// Corruption errors while no slice was open.
    pub corrupt_unattributed: u32,
    /// Missing `seq`s no slice took (the trailing gap when `end` completed no slice with
    /// lines).
    pub missing_unattributed: u32,
    /// Faults of this scan that found no open or openable slice.
    pub faults_unattributed: u32,
    /// Slices completed so far.
    pub slices_completed: u32,
    /// The highest `seq` taken so far.
    pub seq_high: Option<u32>,
    /// The `ScanEnd` status, once `end` was called.
    pub end: Option<EndStatus>,
    /// `interrupt` was called (or the decoder reported this scan interrupted).
    pub interrupted: bool,
    /// The decoder's errors by kind.
    pub decoder: DecoderErrors,
}

/// What [`SliceAssembler::line`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LineOutcome {
    /// Written into its slice.
    Placed,
    /// Its (slice, coil, `ky`) was already written; ignored.
    Duplicate,
    /// A sample was not finite; not written.
    InvalidSamples,
    /// Its slice had completed (or the scan ended); not placed.
    Late,
    /// Its slice needed a slot and none was free; not placed and not counted as seen
    /// (slices it completed by rules (a) and (c) stay completed). Pop the completed slices
    /// and pass it again.
    NoSlot,
    /// It does not fit the scan's geometry; ignored.
    Invalid,
    /// It belongs to another scan; ignored.
    UnknownScan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Open,
    /// Completed, waiting for `pop_complete`.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    stats: SliceStats,
    /// Lines that reached the slice (written, row duplicates, non-finite): the `seq`s that
    /// are not missing.
    arrived: u32,
}

/// Assembles the slices of one scan into caller-owned buffers; see the module docs.
#[derive(Debug)]
pub struct SliceAssembler<'a> {
    start: ScanStart,
    config: AssemblerConfig,
    kspace: &'a mut [Complex<f32>],
    mask: &'a mut [bool],
    /// Elements per slot: `n_coils * n_y * n_x`.
    per_slot: usize,
    slots: [Slot; MAX_SLOTS],
    /// Every slice below this has completed (or was skipped): a line for one is late.
    closed_below: u32,
    /// Every `seq` below this has been attributed to a completed slice (u64: `seq + 1`
    /// of `u32::MAX` must not overflow).
    attributed_upto: u64,
    /// `end` or `interrupt` was called.
    finished: bool,
    summary: ScanSummary,
}

/// A completed slice, borrowed from the assembler; its slot is freed when this is dropped.
#[derive(Debug)]
pub struct Completed<'b> {
    stats: SliceStats,
    kspace: &'b [Complex<f32>],
    mask: &'b [bool],
    state: &'b mut SlotState,
}

impl Completed<'_> {
    /// What happened to the slice.
    pub fn stats(&self) -> &SliceStats {
        &self.stats
    }
    /// Its k-space, `[n_coils][n_y][n_x]`, centred; zero where not sampled.
    pub fn kspace(&self) -> &[Complex<f32>] {
        self.kspace
    }
    /// Its sampling mask, same layout: `true` where a sample was written.
    pub fn mask(&self) -> &[bool] {
        self.mask
    }
}

impl Drop for Completed<'_> {
    fn drop(&mut self) {
        *self.state = SlotState::Free;
    }
}

/// Check the geometry bounds; `Ok(elements per slot)`.
fn per_slot(start: &ScanStart, config: &AssemblerConfig) -> Result<usize, AssembleError> {
    let bad = |field, value: u32| Err(AssembleError::OutOfBounds { field, value });
    let max = MAX_N_X as u32;
    if !(1..=max).contains(&u32::from(start.n_y)) {
        return bad(Field::NY, u32::from(start.n_y));
    }
    if !(1..=max).contains(&u32::from(start.n_x)) {
        return bad(Field::NX, u32::from(start.n_x));
    }
    if !(1..=MAX_COILS).contains(&start.n_coils) {
        return bad(Field::NCoils, u32::from(start.n_coils));
    }
    if start.n_slices == 0 {
        return bad(Field::NSlices, 0);
    }
    let window_end = u32::from(start.kx_first) + u32::from(start.kx_count);
    if start.kx_count == 0 || window_end > u32::from(start.n_x) {
        return bad(Field::Window, window_end);
    }
    if !(1..=MAX_SLOTS).contains(&config.slots) {
        return bad(
            Field::Slots,
            u32::try_from(config.slots).unwrap_or(u32::MAX),
        );
    }
    // At most 32 * 512 * 512 = 2^23 per slot, 2^25 in all: fits any usize of 32 bits.
    Ok(usize::from(start.n_coils) * usize::from(start.n_y) * usize::from(start.n_x))
}

impl<'a> SliceAssembler<'a> {
    /// Elements each of the k-space and mask buffers needs for this geometry:
    /// `slots * n_coils * n_y * n_x`.
    ///
    /// # Errors
    /// [`AssembleError::OutOfBounds`] naming the field if `n_y` or `n_x` is not in
    /// `1..=MAX_N_X`, `n_coils` not in `1..=MAX_COILS`, `n_slices` is 0, the readout window
    /// is empty or leaves the grid, or `slots` is not in `1..=MAX_SLOTS`.
    pub fn storage_len(
        start: &ScanStart,
        config: &AssemblerConfig,
    ) -> Result<usize, AssembleError> {
        Ok(per_slot(start, config)? * config.slots)
    }

    /// An assembler for the scan `start`, using the first
    /// [`storage_len`](Self::storage_len) elements of `kspace` and `mask`.
    ///
    /// # Errors
    /// Those of [`storage_len`](Self::storage_len), and
    /// [`AssembleError::BufferTooSmall`] for a buffer shorter than that.
    pub fn new(
        start: ScanStart,
        config: AssemblerConfig,
        kspace: &'a mut [Complex<f32>],
        mask: &'a mut [bool],
    ) -> Result<Self, AssembleError> {
        let per_slot = per_slot(&start, &config)?;
        let needed = per_slot * config.slots;
        if kspace.len() < needed {
            return Err(AssembleError::BufferTooSmall {
                buffer: Buffer::KSpace,
                needed,
                len: kspace.len(),
            });
        }
        if mask.len() < needed {
            return Err(AssembleError::BufferTooSmall {
                buffer: Buffer::Mask,
                needed,
                len: mask.len(),
            });
        }
        let free = Slot {
            state: SlotState::Free,
            stats: SliceStats::new(start.scan_id, 0),
            arrived: 0,
        };
        Ok(Self {
            start,
            config,
            kspace,
            mask,
            per_slot,
            slots: [free; MAX_SLOTS],
            closed_below: 0,
            attributed_upto: 0,
            finished: false,
            summary: ScanSummary {
                scan_id: start.scan_id,
                ..ScanSummary::default()
            },
        })
    }

    /// The scan's `ScanStart`.
    pub fn scan_start(&self) -> &ScanStart {
        &self.start
    }

    /// The configuration.
    pub fn config(&self) -> &AssemblerConfig {
        &self.config
    }

    /// Scan-level counts so far.
    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }

    /// Place one decoded line (module docs) and complete the slices it moves past.
    pub fn line<const N: usize>(&mut self, line: &Line<N>) -> LineOutcome {
        let st = self.start;
        if line.scan_id != st.scan_id {
            bump(&mut self.summary.unknown_scan);
            return LineOutcome::UnknownScan;
        }
        if line.slice >= st.n_slices
            || line.coil >= st.n_coils
            || line.ky >= st.n_y
            || line.samples.len() != usize::from(st.kx_count)
        {
            bump(&mut self.summary.invalid);
            return LineOutcome::Invalid;
        }
        // Rule (a) with this line's seq counted, before the line needs a slot: a slice the
        // stream has moved past then frees (once popped) the slot a new slice needs,
        // instead of rule (c) forcing one out.
        let high = self.summary.seq_high.map_or(line.seq, |h| h.max(line.seq));
        if !self.finished {
            self.complete_moved_past(high);
        }
        if self.finished || u32::from(line.slice) < self.closed_below {
            bump(&mut self.summary.late);
            self.raise_high_water(line.seq);
            return LineOutcome::Late;
        }
        // A refused line does not raise the high-water mark: passed again, it is counted
        // (e.g. as reordered) exactly as if it had been placed the first time.
        let Some(i) = self.slot_for(line.slice) else {
            bump(&mut self.summary.no_slot);
            return LineOutcome::NoSlot;
        };

        let below_high = self.summary.seq_high.is_some_and(|h| line.seq < h);
        self.raise_high_water(line.seq);
        let slot = &mut self.slots[i];
        slot.arrived = slot.arrived.saturating_add(1);
        let stats = &mut slot.stats;
        stats.seq_first = Some(stats.seq_first.map_or(line.seq, |s| s.min(line.seq)));
        stats.seq_last = Some(stats.seq_last.map_or(line.seq, |s| s.max(line.seq)));
        if below_high {
            bump(&mut stats.reordered);
        }

        let row = i * self.per_slot
            + (usize::from(line.coil) * usize::from(st.n_y) + usize::from(line.ky))
                * usize::from(st.n_x)
            + usize::from(st.kx_first);
        let count = usize::from(st.kx_count);
        let outcome = if self.mask[row] {
            // kx_count >= 1 and a written line sets its whole window: the first column
            // tells whether the row was written.
            bump(&mut stats.duplicates);
            LineOutcome::Duplicate
        } else if !(0..count).all(|k| sample(&line.samples, k).is_some_and(finite)) {
            bump(&mut stats.invalid_samples);
            LineOutcome::InvalidSamples
        } else {
            let cells = self.kspace[row..row + count].iter_mut();
            for (k, (v, m)) in cells.zip(&mut self.mask[row..row + count]).enumerate() {
                // All k < count are Some: checked above.
                let [re, im] = sample(&line.samples, k).unwrap_or([0.0; 2]);
                *v = Complex::new(re, im);
                *m = true;
            }
            bump(&mut stats.lines_received);
            bump(&mut self.summary.lines_placed);
            LineOutcome::Placed
        };
        // Again: a new slice's first seq may move earlier ones past.
        self.complete_moved_past(high);
        outcome
    }

    /// [`line`](Self::line), and when it returns [`LineOutcome::NoSlot`] hand every
    /// completed slice to `sink` (in slice order; each slot is freed after `sink` returns)
    /// and pass the line once more. Then hand over whatever else completed. So no line is
    /// lost for want of a slot — except one of a slice older than every open slice, for
    /// which rule (c) completes nothing: it stays [`LineOutcome::NoSlot`] and counted.
    pub fn line_then_pop<const N: usize>(
        &mut self,
        line: &Line<N>,
        mut sink: impl FnMut(Completed<'_>),
    ) -> LineOutcome {
        let mut outcome = self.line(line);
        if outcome == LineOutcome::NoSlot {
            while let Some(c) = self.pop_complete() {
                sink(c);
            }
            outcome = self.line(line);
            if outcome != LineOutcome::NoSlot {
                // The first attempt was not a lost line after all.
                self.summary.no_slot = self.summary.no_slot.saturating_sub(1);
            }
        }
        while let Some(c) = self.pop_complete() {
            sink(c);
        }
        outcome
    }

    /// Record a `Fault` frame on its slice (module docs).
    pub fn fault(&mut self, fault: &Fault) {
        if fault.scan_id != self.start.scan_id {
            bump(&mut self.summary.unknown_scan);
            return;
        }
        if fault.slice >= self.start.n_slices
            || fault.coil >= self.start.n_coils
            || fault.ky >= self.start.n_y
        {
            bump(&mut self.summary.invalid);
            return;
        }
        let open = self.open_slot(fault.slice);
        let slot = match open {
            Some(i) => Some(i),
            None if !self.finished && u32::from(fault.slice) >= self.closed_below => {
                let free = self.free_slot();
                if let Some(i) = free {
                    self.open_in(i, fault.slice);
                }
                free
            }
            None => None,
        };
        match slot {
            Some(i) => {
                let stats = &mut self.slots[i].stats;
                bump(&mut stats.faults);
                stats.fault_kinds.insert(fault.kind);
            }
            None => bump(&mut self.summary.faults_unattributed),
        }
    }

    /// Count a decoder error (module docs); `ScanInterrupted` for this scan also
    /// [`interrupt`](Self::interrupt)s.
    pub fn wire_error(&mut self, error: &Error) {
        let d = &mut self.summary.decoder;
        let corrupt = match *error {
            Error::Oversize => {
                bump(&mut d.oversize);
                true
            }
            Error::Truncated => {
                bump(&mut d.truncated);
                true
            }
            Error::Crc { .. } => {
                bump(&mut d.crc);
                true
            }
            Error::Malformed => {
                bump(&mut d.malformed);
                true
            }
            Error::UnknownVersion { .. } => {
                bump(&mut d.unknown_version);
                false
            }
            Error::InvalidFrame => {
                bump(&mut d.invalid_frame);
                false
            }
            Error::SequenceGap { .. } => {
                bump(&mut d.sequence_gap);
                false
            }
            Error::Duplicate { scan_id, seq } => {
                bump(&mut d.duplicate);
                if let (true, Some(seq)) = (scan_id == self.start.scan_id, seq) {
                    self.duplicate_report(seq);
                }
                false
            }
            Error::Stale { .. } => {
                bump(&mut d.stale);
                false
            }
            Error::UnknownScan { .. } => {
                bump(&mut d.unknown_scan);
                false
            }
            Error::ScanInterrupted { scan_id } => {
                bump(&mut d.scan_interrupted);
                if scan_id == self.start.scan_id {
                    self.interrupt();
                }
                false
            }
            Error::Incomplete { .. } => {
                bump(&mut d.incomplete);
                false
            }
            Error::BufferTooSmall => {
                bump(&mut d.other);
                false
            }
        };
        if corrupt {
            match self.newest_open() {
                Some(i) => bump(&mut self.slots[i].stats.corrupt),
                None => bump(&mut self.summary.corrupt_unattributed),
            }
        }
    }

    /// The scan ended: complete every open slice ([`ClosedBy::ScanEnd`]) and attribute
    /// the trailing gap up to `lines_sent`. A `ScanEnd` of another scan only counts in
    /// [`ScanSummary::unknown_scan`]; a second one changes nothing.
    pub fn end(&mut self, end: &ScanEnd) {
        if end.scan_id != self.start.scan_id {
            bump(&mut self.summary.unknown_scan);
            return;
        }
        if self.finished {
            return;
        }
        let last = self.close_all(ClosedBy::ScanEnd(end.status));
        let gap = u64::from(end.lines_sent).saturating_sub(self.attributed_upto);
        let gap = u32::try_from(gap).unwrap_or(u32::MAX);
        match last {
            Some(i) => {
                let stats = &mut self.slots[i].stats;
                stats.lines_missing = stats.lines_missing.saturating_add(gap);
            }
            None => {
                self.summary.missing_unattributed =
                    self.summary.missing_unattributed.saturating_add(gap)
            }
        }
        self.attributed_upto = self.attributed_upto.max(u64::from(end.lines_sent));
        self.finished = true;
        self.summary.end = Some(end.status);
    }

    /// The stream was cut (or the decoder reported the scan interrupted): complete every
    /// open slice as [`ClosedBy::Interrupted`] (not `complete`). Later lines are late.
    pub fn interrupt(&mut self) {
        if !self.finished {
            self.close_all(ClosedBy::Interrupted);
            self.finished = true;
            self.summary.interrupted = true;
        }
    }

    /// Slice timeout: complete the oldest open slice ([`ClosedBy::Timeout`]). `false` if
    /// no slice was open.
    pub fn complete_oldest(&mut self) -> bool {
        match self.oldest_open() {
            Some(i) => {
                self.close(i, ClosedBy::Timeout);
                true
            }
            None => false,
        }
    }

    /// The open slices in slice order, with their statistics so far (e.g. lines received,
    /// for a preview).
    pub fn open_slices(&self) -> impl Iterator<Item = &SliceStats> + '_ {
        let mut open: [Option<&SliceStats>; MAX_SLOTS] = [None; MAX_SLOTS];
        for (n, slot) in self
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Open)
            .enumerate()
        {
            // Insertion sort by slice: at most MAX_SLOTS entries.
            let mut j = n;
            while j > 0 && open[j - 1].is_some_and(|p| p.slice > slot.stats.slice) {
                open[j] = open[j - 1];
                j -= 1;
            }
            open[j] = Some(&slot.stats);
        }
        open.into_iter().flatten()
    }

    /// The current k-space and mask (`[n_coils][n_y][n_x]`) of `slice` while it is open or
    /// completed but not yet popped; `None` otherwise.
    pub fn slot_view(&self, slice: u16) -> Option<(&[Complex<f32>], &[bool])> {
        let i = self
            .slots
            .iter()
            .position(|s| s.state != SlotState::Free && s.stats.slice == slice)?;
        let range = self.range(i);
        Some((&self.kspace[range.clone()], &self.mask[range]))
    }

    /// The completed slice of lowest index, if any. Its slot is freed when the returned
    /// view is dropped.
    pub fn pop_complete(&mut self) -> Option<Completed<'_>> {
        let i = (0..MAX_SLOTS)
            .filter(|&i| self.slots[i].state == SlotState::Done)
            .min_by_key(|&i| self.slots[i].stats.slice)?;
        let range = self.range(i);
        let slot = &mut self.slots[i];
        Some(Completed {
            stats: slot.stats,
            kspace: &self.kspace[range.clone()],
            mask: &self.mask[range],
            state: &mut slot.state,
        })
    }

    // ---- internals ----

    fn range(&self, i: usize) -> core::ops::Range<usize> {
        i * self.per_slot..(i + 1) * self.per_slot
    }

    fn raise_high_water(&mut self, seq: u32) {
        self.summary.seq_high = Some(self.summary.seq_high.map_or(seq, |h| h.max(seq)));
    }

    fn active(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.config.slots).filter(|&i| self.slots[i].state == SlotState::Open)
    }

    fn open_slot(&self, slice: u16) -> Option<usize> {
        self.active().find(|&i| self.slots[i].stats.slice == slice)
    }

    fn free_slot(&self) -> Option<usize> {
        (0..self.config.slots).find(|&i| self.slots[i].state == SlotState::Free)
    }

    fn oldest_open(&self) -> Option<usize> {
        self.active().min_by_key(|&i| self.slots[i].stats.slice)
    }

    fn newest_open(&self) -> Option<usize> {
        self.active().max_by_key(|&i| self.slots[i].stats.slice)
    }

    /// Clear slot `i` and open `slice` in it.
    fn open_in(&mut self, i: usize, slice: u16) {
        let range = self.range(i);
        self.kspace[range.clone()].fill(Complex::new(0.0, 0.0));
        self.mask[range].fill(false);
        self.slots[i] = Slot {
            state: SlotState::Open,
            stats: SliceStats::new(self.start.scan_id, slice),
            arrived: 0,
        };
    }

    /// The slot of open `slice`, or a newly opened one; `None` (after rule (c)) if no slot
    /// is free.
    fn slot_for(&mut self, slice: u16) -> Option<usize> {
        if let Some(i) = self.open_slot(slice) {
            return Some(i);
        }
        if let Some(i) = self.free_slot() {
            self.open_in(i, slice);
            return Some(i);
        }
        // A completed slice waiting for its pop will free a slot: nothing to complete.
        if self.slots[..self.config.slots]
            .iter()
            .any(|s| s.state == SlotState::Done)
        {
            return None;
        }
        // Rule (c): make room for the next call by completing the oldest open slice, if
        // it is older than this one (completing a newer one would make this line late).
        if let Some(i) = self.oldest_open() {
            if self.slots[i].stats.slice < slice {
                self.close(i, ClosedBy::SlotsFull);
            }
        }
        None
    }

    /// Rule (a): complete every open slice before the highest open slice whose first `seq`
    /// the high-water mark has passed by `settle_lines`.
    fn complete_moved_past(&mut self, high: u32) {
        let settle = u64::from(self.config.settle_lines);
        let passed = self
            .active()
            .filter(|&i| {
                self.slots[i]
                    .stats
                    .seq_first
                    .is_some_and(|f| u64::from(high) >= u64::from(f) + settle)
            })
            .map(|i| self.slots[i].stats.slice)
            .max();
        if let Some(limit) = passed {
            while let Some(i) = self
                .oldest_open()
                .filter(|&i| self.slots[i].stats.slice < limit)
            {
                self.close(i, ClosedBy::MovedPast);
            }
        }
    }

    /// Complete every open slice in slice order; the last one that had lines.
    fn close_all(&mut self, why: ClosedBy) -> Option<usize> {
        let mut last = None;
        while let Some(i) = self.oldest_open() {
            self.close(i, why);
            if self.slots[i].stats.seq_last.is_some() {
                last = Some(i);
            }
        }
        last
    }

    /// Complete slot `i`, completing every older open slice first (slices complete in
    /// order, which the missing-line attribution relies on).
    fn close(&mut self, i: usize, why: ClosedBy) {
        let slice = self.slots[i].stats.slice;
        while let Some(j) = self
            .oldest_open()
            .filter(|&j| self.slots[j].stats.slice < slice)
        {
            self.close_one(j, why);
        }
        self.close_one(i, why);
    }

    fn close_one(&mut self, i: usize, why: ClosedBy) {
        let slot = &mut self.slots[i];
        if let Some(last) = slot.stats.seq_last {
            let end = u64::from(last) + 1;
            let span = end.saturating_sub(self.attributed_upto);
            let missing = span.saturating_sub(u64::from(slot.arrived));
            slot.stats.lines_missing = u32::try_from(missing).unwrap_or(u32::MAX);
            self.attributed_upto = self.attributed_upto.max(end);
        }
        slot.stats.closed_by = Some(why);
        slot.stats.complete = matches!(
            why,
            ClosedBy::MovedPast | ClosedBy::ScanEnd(EndStatus::Complete)
        );
        slot.state = SlotState::Done;
        self.closed_below = self.closed_below.max(u32::from(slot.stats.slice) + 1);
        bump(&mut self.summary.slices_completed);
    }

    /// A decoder duplicate report for `seq`: on the open slice with the greatest
    /// `seq_first <= seq`.
    fn duplicate_report(&mut self, seq: u32) {
        let target = self
            .active()
            .filter(|&i| self.slots[i].stats.seq_first.is_some_and(|f| f <= seq))
            .max_by_key(|&i| self.slots[i].stats.seq_first);
        match target {
            Some(i) => bump(&mut self.slots[i].stats.duplicates),
            None => bump(&mut self.summary.duplicates_unattributed),
        }
    }
}

/// Count one more (saturating: a counter never panics or wraps, however long the scan).
fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

/// Sample `k` in k-space units.
fn sample<const N: usize>(samples: &Samples<N>, k: usize) -> Option<[f32; 2]> {
    samples.get(k)
}

fn finite([re, im]: [f32; 2]) -> bool {
    re.is_finite() && im.is_finite()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::heapless;

    const SCAN: u32 = 9;

    /// 2 coils, 4 rows, a 6-column grid of which columns 2..5 are measured, 3 slices.
    fn start() -> ScanStart {
        ScanStart {
            version: crate::VERSION,
            scan_id: SCAN,
            n_y: 4,
            n_x: 6,
            n_coils: 2,
            n_slices: 3,
            field_mt: 47.0,
            fov_mm: [200.0; 2],
            kx_first: 2,
            kx_count: 3,
        }
    }

    fn config(slots: usize, settle_lines: u32) -> AssemblerConfig {
        AssemblerConfig {
            slots,
            settle_lines,
        }
    }

    fn buffers(s: &ScanStart, c: &AssemblerConfig) -> (Vec<Complex<f32>>, Vec<bool>) {
        let n = SliceAssembler::storage_len(s, c).unwrap();
        // Garbage in the buffers: opening a slot must clear it.
        (vec![Complex::new(7.0, -7.0); n], vec![true; n])
    }

    fn f32_line(seq: u32, slice: u16, coil: u8, ky: u16, iq: [[f32; 2]; 3]) -> Line<8> {
        Line {
            scan_id: SCAN,
            seq,
            slice,
            coil,
            ky,
            samples: Samples::F32 {
                iq: heapless::Vec::from_slice(&iq).unwrap(),
            },
        }
    }

    /// A line whose samples encode its seq, so that where it landed is checkable.
    fn line(seq: u32, slice: u16, ky: u16) -> Line<8> {
        let v = seq as f32 + 1.0;
        f32_line(seq, slice, 0, ky, [[v, 0.0], [0.0, v], [v, v]])
    }

    fn end(lines_sent: u32, status: EndStatus) -> ScanEnd {
        ScanEnd {
            scan_id: SCAN,
            lines_sent,
            status,
        }
    }

    /// Pop everything completed: (stats, kspace, mask) copies.
    fn drain(a: &mut SliceAssembler<'_>) -> Vec<(SliceStats, Vec<Complex<f32>>, Vec<bool>)> {
        let mut out = Vec::new();
        while let Some(c) = a.pop_complete() {
            out.push((*c.stats(), c.kspace().to_vec(), c.mask().to_vec()));
        }
        out
    }

    /// Index of (coil, ky, kx) within one slot of `start()`.
    fn at(coil: usize, ky: usize, kx: usize) -> usize {
        (coil * 4 + ky) * 6 + kx
    }

    #[test]
    fn i16_and_f32_lines_land_in_the_window_only() {
        let (s, c) = (start(), config(2, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        let i16_line = Line::<8> {
            scan_id: SCAN,
            seq: 0,
            slice: 1,
            coil: 1,
            ky: 3,
            samples: Samples::I16 {
                scale: 0.5,
                iq: heapless::Vec::from_slice(&[[1, -1], [300, 0], [-32768, 32767]]).unwrap(),
            },
        };
        assert_eq!(a.line(&i16_line), LineOutcome::Placed);
        let f = f32_line(1, 1, 0, 0, [[0.25, -0.5], [0.0, 0.0], [1e-30, 3.0]]);
        assert_eq!(a.line(&f), LineOutcome::Placed);
        a.end(&end(2, EndStatus::Complete));
        let done = drain(&mut a);
        assert_eq!(done.len(), 1);
        let (stats, ks, mask) = &done[0];
        assert_eq!((stats.slice, stats.lines_received), (1, 2));
        assert_eq!(ks.len(), 2 * 4 * 6);
        let mut want_k = vec![Complex::new(0.0, 0.0); 48];
        let mut want_m = vec![false; 48];
        for (kx, v) in [
            (2, (0.5, -0.5)),
            (3, (150.0, 0.0)),
            (4, (-16384.0, 16383.5)),
        ] {
            want_k[at(1, 3, kx)] = Complex::new(v.0, v.1);
            want_m[at(1, 3, kx)] = true;
        }
        for (kx, v) in [(2, (0.25, -0.5)), (3, (0.0, 0.0)), (4, (1e-30, 3.0))] {
            want_k[at(0, 0, kx)] = Complex::new(v.0, v.1);
            want_m[at(0, 0, kx)] = true; // a measured zero is sampled
        }
        assert_eq!(ks, &want_k);
        assert_eq!(mask, &want_m);
    }

    #[test]
    fn duplicate_row_is_ignored_and_counted() {
        let (s, c) = (start(), config(1, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        assert_eq!(a.line(&line(0, 0, 2)), LineOutcome::Placed);
        // Same (slice, coil, ky), another seq and other values: ignored.
        assert_eq!(a.line(&line(1, 0, 2)), LineOutcome::Duplicate);
        // The decoder's duplicate report for seq 0 counts on the same slice.
        a.wire_error(&Error::Duplicate {
            scan_id: SCAN,
            seq: Some(0),
        });
        // One for another scan only counts as a decoder error.
        a.wire_error(&Error::Duplicate {
            scan_id: SCAN + 1,
            seq: Some(0),
        });
        a.end(&end(2, EndStatus::Complete));
        let (stats, ks, _) = drain(&mut a).remove(0);
        assert_eq!(stats.duplicates, 2);
        assert_eq!(stats.lines_received, 1);
        assert_eq!(stats.lines_missing, 0, "seq 1 arrived, as a duplicate");
        assert_eq!(ks[at(0, 2, 2)], Complex::new(1.0, 0.0), "first line kept");
        assert_eq!(a.summary().decoder.duplicate, 2);
        assert_eq!(a.summary().duplicates_unattributed, 0);
    }

    #[test]
    fn non_finite_line_is_not_written() {
        let (s, c) = (start(), config(1, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        let nan = f32_line(0, 0, 0, 1, [[1.0, 0.0], [f32::NAN, 0.0], [0.0, 0.0]]);
        assert_eq!(a.line(&nan), LineOutcome::InvalidSamples);
        // An i16 line whose scale overflows to infinity is just as unusable.
        let huge = Line::<8> {
            scan_id: SCAN,
            seq: 1,
            slice: 0,
            coil: 1,
            ky: 1,
            samples: Samples::I16 {
                scale: f32::MAX,
                iq: heapless::Vec::from_slice(&[[0, 0], [2, 0], [0, 0]]).unwrap(),
            },
        };
        assert_eq!(a.line(&huge), LineOutcome::InvalidSamples);
        // The row is still free for a good copy.
        assert_eq!(a.line(&line(2, 0, 1)), LineOutcome::Placed);
        a.end(&end(3, EndStatus::Complete));
        let (stats, ks, mask) = drain(&mut a).remove(0);
        assert_eq!((stats.invalid_samples, stats.lines_received), (2, 1));
        assert_eq!(stats.lines_missing, 0);
        assert!(ks.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
        assert_eq!(mask.iter().filter(|&&b| b).count(), 3);
        assert!(!mask[at(1, 1, 2)], "coil 1 row 1 not written");
    }

    #[test]
    fn settle_completes_a_slice_once_the_stream_moved_past() {
        let (s, c) = (start(), config(3, 2));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        // Sent: seqs 0..3 slice 0, 3..6 slice 1. Arrival: 0 1 3 2 4 5 (2 and 3 swapped).
        a.line(&line(0, 0, 0));
        a.line(&line(1, 0, 1));
        a.line(&line(3, 1, 0));
        assert_eq!(a.open_slices().map(|s| s.slice).collect::<Vec<_>>(), [0, 1]);
        // The reordered line of slice 0 still lands while it is settling.
        assert_eq!(a.line(&line(2, 0, 2)), LineOutcome::Placed);
        a.line(&line(4, 1, 1));
        assert!(a.pop_complete().is_none(), "4 is not yet 3 + 2");
        a.line(&line(5, 1, 2));
        let done = drain(&mut a);
        assert_eq!(done.len(), 1);
        let st = done[0].0;
        assert_eq!((st.slice, st.lines_received, st.complete), (0, 3, true));
        assert_eq!(st.closed_by, Some(ClosedBy::MovedPast));
        assert_eq!((st.seq_first, st.seq_last), (Some(0), Some(2)));
        assert_eq!(st.lines_missing, 0);
        assert_eq!(st.reordered, 1, "2 arrived below 3");
        assert_eq!(
            a.open_slices()
                .map(|s| (s.slice, s.lines_received))
                .collect::<Vec<_>>(),
            [(1, 3)]
        );
        a.end(&end(6, EndStatus::Complete));
        let st1 = drain(&mut a)[0].0;
        assert_eq!((st1.slice, st1.reordered, st1.lines_received), (1, 0, 3));
        assert_eq!(st1.closed_by, Some(ClosedBy::ScanEnd(EndStatus::Complete)));
        assert!(st1.complete);
    }

    #[test]
    fn settle_zero_completes_on_the_first_line_of_a_later_slice() {
        let (s, c) = (start(), config(2, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.line(&line(0, 0, 0));
        assert!(a.pop_complete().is_none());
        a.line(&line(1, 2, 0));
        let done = drain(&mut a);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0.slice, 0);
    }

    #[test]
    fn full_slots_complete_the_oldest_and_the_line_is_passed_again() {
        let (s, c) = (start(), config(2, 1000));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.line(&line(0, 0, 0));
        a.line(&line(1, 1, 0));
        // Slice 2 needs a slot: slice 0 completes, the line waits for the pop.
        assert_eq!(a.line(&line(2, 2, 0)), LineOutcome::NoSlot);
        assert_eq!(a.summary().no_slot, 1);
        assert_eq!(
            a.summary().seq_high,
            Some(1),
            "a refused line changes nothing"
        );
        let mut popped = Vec::new();
        let outcome = a.line_then_pop(&line(2, 2, 0), |c| popped.push(*c.stats()));
        assert_eq!(outcome, LineOutcome::Placed);
        assert_eq!(popped.len(), 1);
        assert_eq!(popped[0].closed_by, Some(ClosedBy::SlotsFull));
        assert!(!popped[0].complete);
        assert_eq!(a.summary().no_slot, 1, "the first, abandoned attempt");
        // Through line_then_pop alone nothing is counted lost.
        let outcome = a.line_then_pop(&line(3, 2, 1), |_| {});
        assert_eq!(outcome, LineOutcome::Placed);
        assert_eq!(a.summary().no_slot, 1);
        assert_eq!(a.slot_view(2).map(|(_, m)| m[at(0, 1, 2)]), Some(true));
    }

    #[test]
    fn a_slice_moved_past_is_completed_before_slots_count_as_full() {
        let (s, c) = (start(), config(2, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.line(&line(0, 0, 0));
        a.line(&line(1, 1, 0));
        // Seq 2 moves the stream past slice 0 (rule a) before slice 2 asks for a slot, so
        // it waits for slice 0's pop instead of forcing slice 1 out.
        let mut popped = Vec::new();
        let outcome = a.line_then_pop(&line(2, 2, 0), |c| popped.push(*c.stats()));
        assert_eq!(outcome, LineOutcome::Placed);
        // Slice 1 was then completed by the placed line (settle 0) and handed over too:
        // nothing was forced out by full slots.
        let closed: Vec<_> = popped.iter().map(|s| (s.slice, s.closed_by)).collect();
        let moved = Some(ClosedBy::MovedPast);
        assert_eq!(closed, [(0, moved), (1, moved)]);
        assert_eq!(a.summary().no_slot, 0);
        assert_eq!(a.open_slices().map(|s| s.slice).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn late_line_is_counted_not_placed() {
        let (s, c) = (start(), config(2, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.line(&line(0, 0, 0));
        a.line(&line(2, 1, 0)); // completes slice 0 (settle 0)
        let first = drain(&mut a);
        assert_eq!(
            first[0].0.lines_missing, 0,
            "seq 1 is attributed to slice 1"
        );
        assert_eq!(a.line(&line(1, 0, 1)), LineOutcome::Late);
        assert_eq!(a.summary().late, 1);
        a.end(&end(3, EndStatus::Complete));
        let st = drain(&mut a)[0].0;
        // Seq 1 reached no slice: missing, attributed by number to slice 1.
        assert_eq!((st.slice, st.lines_missing), (1, 1));
        // After the end every line is late.
        assert_eq!(a.line(&line(3, 2, 0)), LineOutcome::Late);
        assert_eq!(a.summary().late, 2);
    }

    #[test]
    fn interrupt_completes_all_as_incomplete() {
        let (s, c) = (start(), config(3, 100));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.line(&line(0, 0, 0));
        a.line(&line(1, 1, 0));
        a.wire_error(&Error::ScanInterrupted { scan_id: SCAN });
        let done = drain(&mut a);
        assert_eq!(done.iter().map(|d| d.0.slice).collect::<Vec<_>>(), [0, 1]);
        for (st, _, _) in &done {
            assert_eq!(st.closed_by, Some(ClosedBy::Interrupted));
            assert!(!st.complete);
            assert_eq!(st.end_status(), None);
        }
        assert!(a.summary().interrupted);
        assert_eq!(a.summary().decoder.scan_interrupted, 1);
        a.interrupt(); // idempotent
        assert!(a.pop_complete().is_none());
    }

    #[test]
    fn aborted_end_and_timeout_are_not_complete() {
        let (s, c) = (start(), config(3, 100));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.line(&line(0, 0, 0));
        a.line(&line(1, 1, 0));
        assert!(a.complete_oldest());
        let st = drain(&mut a)[0].0;
        assert_eq!((st.slice, st.closed_by), (0, Some(ClosedBy::Timeout)));
        a.end(&end(5, EndStatus::Aborted));
        let st = drain(&mut a)[0].0;
        assert_eq!(st.end_status(), Some(EndStatus::Aborted));
        assert!(!st.complete);
        assert_eq!(st.lines_missing, 3, "trailing gap 2..5 to the last slice");
        assert!(!a.complete_oldest());
    }

    #[test]
    fn missing_lines_follow_the_attribution_rule() {
        let (s, c) = (start(), config(3, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        // Sent: 0..3 slice 0, 3..6 slice 1, 6..9 slice 2. Lost: 0 (leading), 2, 3, 4, 8.
        for (seq, slice, ky) in [(1, 0, 1), (5, 1, 2), (6, 2, 0), (7, 2, 1)] {
            a.line(&line(seq, slice, ky));
        }
        a.end(&end(9, EndStatus::Complete));
        let missing: Vec<_> = drain(&mut a)
            .iter()
            .map(|d| (d.0.slice, d.0.lines_missing))
            .collect();
        // 0 → slice 0 (next received: 1); 2, 3, 4 → slice 1 (next: 5); 8 → trailing, slice 2.
        assert_eq!(missing, [(0, 1), (1, 3), (2, 1)]);
    }

    #[test]
    fn corrupt_errors_and_faults_go_to_the_newest_open_slice() {
        let (s, c) = (start(), config(3, 100));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        a.wire_error(&Error::Truncated); // no slice open yet
        a.line(&line(0, 0, 0));
        a.wire_error(&Error::Crc {
            expected: 1,
            computed: 2,
        });
        a.line(&line(1, 1, 0));
        a.wire_error(&Error::Malformed);
        a.wire_error(&Error::Oversize);
        a.wire_error(&Error::SequenceGap {
            expected: 2,
            got: 3,
        });
        let fault = |slice, kind| Fault {
            scan_id: SCAN,
            kind,
            slice,
            coil: 0,
            ky: 0,
            detail: 0,
        };
        a.fault(&fault(0, FaultKind::AdcBus));
        a.fault(&fault(0, FaultKind::LinkOverrun));
        a.fault(&fault(2, FaultKind::AdcStatus)); // opens slice 2
        a.fault(&fault(7, FaultKind::AdcStatus)); // no such slice
        a.end(&end(2, EndStatus::Complete));
        let done = drain(&mut a);
        let st: Vec<_> = done.iter().map(|d| d.0).collect();
        assert_eq!(st.iter().map(|s| s.corrupt).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(st[0].faults, 2);
        assert!(st[0].fault_kinds.contains(FaultKind::AdcBus));
        assert!(st[0].fault_kinds.contains(FaultKind::LinkOverrun));
        assert!(!st[0].fault_kinds.contains(FaultKind::AdcStatus));
        assert_eq!((st[2].slice, st[2].faults, st[2].lines_received), (2, 1, 0));
        let sum = a.summary();
        assert_eq!(sum.corrupt_unattributed, 1);
        assert_eq!(sum.invalid, 1);
        assert_eq!(
            (
                sum.decoder.crc,
                sum.decoder.truncated,
                sum.decoder.sequence_gap
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn geometry_bounds_are_refused_before_sizing() {
        let c = config(2, 0);
        let err = |s: ScanStart| SliceAssembler::storage_len(&s, &c).unwrap_err();
        let field = |s: ScanStart| match err(s) {
            AssembleError::OutOfBounds { field, value } => (field, value),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(ScanStart {
                n_coils: 255,
                ..start()
            }),
            (Field::NCoils, 255)
        );
        assert_eq!(
            field(ScanStart {
                n_y: 65535,
                ..start()
            }),
            (Field::NY, 65535)
        );
        assert_eq!(field(ScanStart { n_y: 0, ..start() }), (Field::NY, 0));
        assert_eq!(
            field(ScanStart {
                n_x: 513,
                ..start()
            }),
            (Field::NX, 513)
        );
        assert_eq!(
            field(ScanStart {
                n_slices: 0,
                ..start()
            }),
            (Field::NSlices, 0)
        );
        assert_eq!(
            field(ScanStart {
                kx_first: 4,
                ..start()
            }),
            (Field::Window, 7)
        );
        assert_eq!(
            field(ScanStart {
                kx_count: 0,
                ..start()
            }),
            (Field::Window, 2)
        );
        assert_eq!(
            SliceAssembler::storage_len(&start(), &config(0, 0)),
            Err(AssembleError::OutOfBounds {
                field: Field::Slots,
                value: 0
            })
        );
        assert!(SliceAssembler::storage_len(&start(), &config(MAX_SLOTS + 1, 0)).is_err());
        // The largest geometry is fine and its size is exact.
        let big = ScanStart {
            n_y: 512,
            n_x: 512,
            n_coils: MAX_COILS,
            kx_first: 0,
            kx_count: 512,
            ..start()
        };
        assert_eq!(
            SliceAssembler::storage_len(&big, &config(MAX_SLOTS, 0)),
            Ok(4 * 32 * 512 * 512)
        );
        // Buffers one element short.
        let n = SliceAssembler::storage_len(&start(), &c).unwrap();
        let (mut k, mut m) = (vec![Complex::new(0.0, 0.0); n - 1], vec![false; n]);
        assert_eq!(
            SliceAssembler::new(start(), c, &mut k, &mut m).unwrap_err(),
            AssembleError::BufferTooSmall {
                buffer: Buffer::KSpace,
                needed: n,
                len: n - 1
            }
        );
        let (mut k, mut m) = (vec![Complex::new(0.0, 0.0); n], vec![false; n - 1]);
        assert!(matches!(
            SliceAssembler::new(start(), c, &mut k, &mut m),
            Err(AssembleError::BufferTooSmall {
                buffer: Buffer::Mask,
                ..
            })
        ));
    }

    #[test]
    fn frames_that_do_not_fit_touch_nothing() {
        let (s, c) = (start(), config(2, 0));
        let (mut k, mut m) = buffers(&s, &c);
        let mut a = SliceAssembler::new(s, c, &mut k, &mut m).unwrap();
        let mut other = line(0, 0, 0);
        other.scan_id = SCAN + 1;
        assert_eq!(a.line(&other), LineOutcome::UnknownScan);
        for bad in [line(0, 3, 0), line(0, 0, 4), {
            let mut l = line(0, 0, 0);
            l.coil = 2;
            l
        }] {
            assert_eq!(a.line(&bad), LineOutcome::Invalid);
        }
        let wide = Line::<8> {
            samples: Samples::F32 {
                iq: heapless::Vec::from_slice(&[[0.0; 2]; 6]).unwrap(),
            },
            ..line(0, 0, 0)
        };
        assert_eq!(
            a.line(&wide),
            LineOutcome::Invalid,
            "n_x samples, not kx_count"
        );
        assert_eq!(a.summary().invalid, 4);
        assert_eq!(a.summary().unknown_scan, 1);
        assert_eq!(a.summary().seq_high, None);
        assert!(a.open_slices().next().is_none());
        a.end(&ScanEnd {
            scan_id: SCAN + 1,
            ..end(0, EndStatus::Complete)
        });
        assert_eq!(a.summary().unknown_scan, 2);
        assert_eq!(a.summary().end, None);
    }
}
