//! `simulate-scan`: a k-space stack → the `.smw` wire stream a scanner would send
//! (DESIGN §5), with optional, logged link faults.
//!
//! The stream is a bare `0x00` delimiter (as the firmware sends before every scan), then
//! `ScanStart` (`n_slices = S`, one coil, readout window `kx_first`, `kx_count`), then for
//! each slice, for each k-space row `ky` with any sampled entry, in ascending `ky`, one
//! `Line` carrying the `kx_count` samples of the window, `seq` counting `Line` frames from 0
//! over the whole scan, then `ScanEnd { lines_sent, Complete }`.
//!
//! The readout window is the union of the sampled columns of all masks
//! (`kx_first = ` the first sampled column, `kx_count` up to the last). A readout measures
//! the whole window, so every sampled row must sample exactly the window's columns; a mask
//! that does not — 2-D Poisson-disc, which samples scattered `(ky, kx)` points — cannot be
//! acquired line by line and is refused. Row masks (1-D variable density: whole rows) and
//! the central block are fine. This is what
//! `firmware/examples/record_scan.rs` emits for one slice; with [`SampleFormat::I16`] the
//! samples are quantised the same way: one scale per scan mapping the largest `|re|` or
//! `|im|` of the sampled k-space to code 32767, so that the decoded `scale * code` is within
//! `scale / 2` of the input per component. Every frame is encoded by `sparsemap_wire`; for
//! the Colin27 example the stream is byte for byte `tests/fixtures/wire/colin27_axial.smw`.
//!
//! ## Faults ([`FaultSpec`])
//!
//! Faults hit `Line` frames only. With `L` planned lines, `round(f L)` distinct lines are
//! chosen for each kind (a random permutation of `0..L` from `ChaCha8Rng::seed_from_u64(seed)`
//! is cut into the dropped, duplicated, corrupted and reorder-candidate sets, in that
//! order), so the kinds never overlap:
//!
//! * **drop** — the frame is not written (a link loss; `ScanEnd.lines_sent` still counts it);
//! * **duplicate** — the frame is written twice, the copy right after the original;
//! * **corrupt** — one COBS data byte of the encoded frame (never a COBS code byte or the
//!   delimiter) is replaced by another non-zero value, so exactly one byte of
//!   `postcard ‖ CRC` changes: the decoder reports a CRC error, drops the frame and is in sync
//!   at its delimiter;
//! * **reorder** — for each candidate `i` (ascending), a partner `j` is drawn uniformly
//!   among the lines `i < j <= i + REORDER_DISTANCE` that are not faulted and not already
//!   swapped, and the two frames exchange places in the stream (so `j` arrives early and `i`
//!   late, both by at most `REORDER_DISTANCE < SEQ_WINDOW` lines). A candidate without an
//!   eligible partner is left in place and not logged.
//!
//! The [`FaultLog`] lists the affected `seq` numbers; [`line_plan`] maps `seq` back to
//! `(slice, ky)`.
//!
//! ## Several coils ([`simulate_scan_coils`])
//!
//! A multi-coil stack `[S][C][n_y][n_x]` (the same mask for every coil) is sent with
//! `ScanStart.n_coils = C` and, for each sampled row, one `Line` per coil in coil order
//! (`coil = 0..C`, consecutive `seq`), as a scanner's receiver delivers one readout per
//! channel; [`line_plan_coils`] is the plan. The I16 scale is the largest component over all
//! coils. With one coil the stream is byte for byte that of [`simulate_scan`].

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Result};
use ndarray::{ArrayView3, ArrayView4, Axis};
use num_complex::Complex32;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sparsemap_wire::{
    encode_line, encode_scan_end, encode_scan_start, heapless, EndStatus, Line, Samples, ScanEnd,
    ScanStart, MAX_ENCODED_LEN, MAX_N_X, SEQ_WINDOW, VERSION,
};

/// Largest distance (in `seq`) between two swapped lines.
pub const REORDER_DISTANCE: u32 = 64;
const _: () = assert!(REORDER_DISTANCE < SEQ_WINDOW);

/// How `Line` samples are represented on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    /// 16-bit codes with one scale per scan (what a 16-bit ADC gives).
    #[default]
    I16,
    /// `f32` pairs, exact.
    F32,
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SampleFormat::I16 => "i16",
            SampleFormat::F32 => "f32",
        })
    }
}

impl FromStr for SampleFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "i16" => Ok(SampleFormat::I16),
            "f32" => Ok(SampleFormat::F32),
            other => bail!("unknown sample format {other:?} (expected i16 or f32)"),
        }
    }
}

/// What the simulated scanner announces in `ScanStart`, and its sample format.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScanSpec {
    /// `scan_id` of every frame.
    pub scan_id: u32,
    /// Main field in millitesla.
    pub field_mt: f32,
    /// Field of view in millimetres, `[y, x]`.
    pub fov_mm: [f32; 2],
    /// Sample representation of the lines.
    pub samples: SampleFormat,
}

/// Link faults to inject, as fractions of the `Line` frames (each in `[0, 1]`, and the
/// dropped, duplicated, corrupted and reordered counts together at most all lines).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Lines not written at all.
    pub drop: f64,
    /// Lines written twice.
    pub duplicate: f64,
    /// Lines swapped with a later one (within [`REORDER_DISTANCE`]).
    pub reorder: f64,
    /// Lines with one byte damaged (CRC error at the decoder).
    pub corrupt: f64,
    /// Seed of the fault choices.
    pub seed: u64,
}

impl FaultSpec {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }
}

/// One swap of two lines in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swap {
    /// The line that arrives late (at the partner's place).
    pub seq: u32,
    /// The partner, `seq < with <= seq + REORDER_DISTANCE`, which arrives early.
    pub with: u32,
}

/// How many lines each fault hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Lines not written.
    pub dropped: u32,
    /// Lines written twice.
    pub duplicated: u32,
    /// Swaps (each moves two lines).
    pub reordered: u32,
    /// Lines with a damaged byte.
    pub corrupted: u32,
}

/// What was done to the stream: enough to predict what a correct decoder reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultLog {
    /// The fault specification's seed.
    pub seed: u64,
    /// Lines the scanner sent (`ScanEnd.lines_sent`): all planned lines.
    pub lines_sent: u32,
    /// Distinct lines a correct decoder delivers: `lines_sent - dropped - corrupted`.
    pub lines_intact: u32,
    /// `seq` of the dropped lines, ascending.
    pub dropped: Vec<u32>,
    /// `seq` of the duplicated lines, ascending (each reported once as a duplicate).
    pub duplicated: Vec<u32>,
    /// The swaps, ascending by `seq`.
    pub reordered: Vec<Swap>,
    /// `seq` of the corrupted lines, ascending (each reported once as a CRC error).
    pub corrupted: Vec<u32>,
    /// Sizes of the lists above.
    pub counts: FaultCounts,
}

impl FaultLog {
    /// Lines that never arrive intact (dropped or corrupted), ascending.
    pub fn lost(&self) -> Vec<u32> {
        let mut lost: Vec<u32> = self
            .dropped
            .iter()
            .chain(&self.corrupted)
            .copied()
            .collect();
        lost.sort_unstable();
        lost
    }
}

/// Which k-space row a `Line` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedLine {
    /// Slice index.
    pub slice: u16,
    /// Receive coil (0 for a single-coil scan).
    pub coil: u8,
    /// Phase-encode row.
    pub ky: u16,
}

/// The lines of a scan in stream order: entry `seq` is the row sent with that `seq`
/// (every row of every slice with any sampled entry, slices in order, ascending `ky`).
pub fn line_plan(masks: ArrayView3<'_, bool>) -> Vec<PlannedLine> {
    line_plan_coils(masks, 1)
}

/// [`line_plan`] for `coils` coils: each sampled row once per coil, coils in order
/// (module docs, "Several coils").
pub fn line_plan_coils(masks: ArrayView3<'_, bool>, coils: u8) -> Vec<PlannedLine> {
    let mut plan = Vec::new();
    for (slice, mask) in masks.axis_iter(Axis(0)).enumerate() {
        for (ky, row) in mask.axis_iter(Axis(0)).enumerate() {
            if row.iter().any(|&m| m) {
                for coil in 0..coils {
                    plan.push(PlannedLine {
                        slice: slice as u16,
                        coil,
                        ky: ky as u16,
                    });
                }
            }
        }
    }
    plan
}

fn check_fraction(name: &str, f: f64) -> Result<()> {
    ensure!(
        f.is_finite() && (0.0..=1.0).contains(&f),
        "fault fraction {name} must be in [0, 1], got {f}"
    );
    Ok(())
}

/// Index (into the encoded frame) of the `k`-th COBS data byte, `k < data bytes`: the
/// block structure is followed so that code bytes and the delimiter are never chosen.
fn cobs_data_byte(frame: &[u8], mut k: usize) -> Option<usize> {
    let body = frame.strip_suffix(&[0])?;
    let mut i = 0;
    while i < body.len() {
        let code = usize::from(body[i]);
        let data = code.checked_sub(1)?;
        if k < data {
            return Some(i + 1 + k);
        }
        k -= data;
        i += code;
    }
    None
}

/// Number of COBS data bytes in an encoded frame.
fn cobs_data_len(frame: &[u8]) -> usize {
    let body = frame.strip_suffix(&[0]).unwrap_or(frame);
    let mut i = 0;
    let mut n = 0;
    while i < body.len() {
        let code = usize::from(body[i]);
        n += code.saturating_sub(1);
        i += code.max(1);
    }
    n
}

/// Replace one data byte of `frame` by another non-zero value.
fn corrupt_frame(frame: &mut [u8], rng: &mut ChaCha8Rng) -> Result<()> {
    let data = cobs_data_len(frame);
    ensure!(data > 0, "encoded frame has no data bytes to corrupt");
    let k = rng.random_range(0..data);
    let Some(at) = cobs_data_byte(frame, k) else {
        bail!("encoded frame is not valid COBS");
    };
    let old = frame[at];
    // Any non-zero value other than `old`: 254 choices.
    let mut new = rng.random_range(1..=254u8);
    if new >= old {
        new += 1;
    }
    frame[at] = new;
    Ok(())
}

/// Encode `kspace` (`[S][n_y][n_x]`, centred) sampled with `masks` (same shape) as a wire
/// stream with the faults of `faults` (module docs). Returns the bytes and what was done.
///
/// # Errors
/// Mismatched or empty shapes, `n_x` above `sparsemap_wire::MAX_N_X`, `S` or `n_y` above
/// `u16::MAX`, non-finite sampled k-space or geometry, nothing sampled, a mask that is not
/// acquirable line by line (a sampled row whose sampled columns differ from the readout
/// window, module docs), fault fractions outside `[0, 1]` or adding up to more lines than
/// there are.
pub fn simulate_scan(
    kspace: ArrayView3<'_, Complex32>,
    masks: ArrayView3<'_, bool>,
    spec: &ScanSpec,
    faults: &FaultSpec,
) -> Result<(Vec<u8>, FaultLog)> {
    ensure!(
        kspace.dim() == masks.dim(),
        "k-space {:?} and masks {:?} differ in shape",
        kspace.dim(),
        masks.dim()
    );
    simulate_scan_coils(kspace.insert_axis(Axis(1)), masks, spec, faults)
}

/// [`simulate_scan`] for a multi-coil stack `kspace` `[S][C][n_y][n_x]` with one mask per
/// slice `[S][n_y][n_x]` shared by the coils (module docs, "Several coils").
///
/// # Errors
/// As [`simulate_scan`], and for no coils or more than `u8::MAX`.
pub fn simulate_scan_coils(
    kspace: ArrayView4<'_, Complex32>,
    masks: ArrayView3<'_, bool>,
    spec: &ScanSpec,
    faults: &FaultSpec,
) -> Result<(Vec<u8>, FaultLog)> {
    let (slices, coils, n_y, n_x) = kspace.dim();
    ensure!(
        (slices, n_y, n_x) == masks.dim(),
        "k-space {:?} and masks {:?} differ in shape",
        kspace.dim(),
        masks.dim()
    );
    let Ok(n_coils) = u8::try_from(coils) else {
        bail!("{coils} coils do not fit a scan (the wire format's coil field is a u8)");
    };
    ensure!(n_coils >= 1, "the k-space stack has no coils");
    ensure!(
        slices >= 1 && n_y >= 1 && n_x >= 1,
        "empty k-space stack {:?}",
        kspace.dim()
    );
    ensure!(
        n_x <= MAX_N_X,
        "n_x {n_x} above the wire format's maximum of {MAX_N_X} grid columns"
    );
    let (Ok(n_slices), Ok(n_y16), Ok(n_x16)) = (
        u16::try_from(slices),
        u16::try_from(n_y),
        u16::try_from(n_x),
    ) else {
        bail!(
            "stack {slices}x{n_y}x{n_x}: slices and rows must be at most {}",
            u16::MAX
        );
    };
    ensure!(
        spec.field_mt.is_finite() && spec.fov_mm.iter().all(|v| v.is_finite()),
        "field {} mT and FOV {:?} mm must be finite",
        spec.field_mt,
        spec.fov_mm
    );
    for (name, f) in [
        ("drop", faults.drop),
        ("duplicate", faults.duplicate),
        ("reorder", faults.reorder),
        ("corrupt", faults.corrupt),
    ] {
        check_fraction(name, f)?;
    }
    let mut peak = 0.0f32;
    for coil in kspace.axis_iter(Axis(1)) {
        for (v, &m) in coil.iter().zip(masks.iter()) {
            if m {
                ensure!(
                    v.re.is_finite() && v.im.is_finite(),
                    "sampled k-space contains NaN or infinite values"
                );
                peak = peak.max(v.re.abs()).max(v.im.abs());
            }
        }
    }

    let plan = line_plan_coils(masks, n_coils);
    ensure!(
        !plan.is_empty(),
        "the masks sample nothing: no line to send"
    );
    let Ok(lines) = u32::try_from(plan.len()) else {
        bail!("{} lines do not fit a scan", plan.len());
    };
    ensure!(lines < u32::MAX, "{lines} lines do not fit a scan");
    let window = readout_window(masks)?;

    // One scale per scan (record_scan.rs); an all-zero k-space keeps scale 1.
    let scale = if peak > 0.0 { peak / 32767.0 } else { 1.0 };
    let quantise = |v: f32| (v / scale).round().clamp(-32768.0, 32767.0) as i16;

    let mut buf = vec![0u8; MAX_ENCODED_LEN];
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(plan.len());
    for (seq, line) in plan.iter().enumerate() {
        let (slice, coil, ky) = (
            usize::from(line.slice),
            usize::from(line.coil),
            usize::from(line.ky),
        );
        // readout_window checked that the row samples exactly the window.
        let sample = |kx: usize| kspace[[slice, coil, ky, kx]];
        let samples = match spec.samples {
            SampleFormat::I16 => {
                let mut iq = heapless::Vec::<[i16; 2], MAX_N_X>::new();
                for kx in window.clone() {
                    let v = sample(kx);
                    iq.push([quantise(v.re), quantise(v.im)])
                        .map_err(|_| anyhow::anyhow!("line longer than {MAX_N_X}"))?;
                }
                Samples::I16 { scale, iq }
            }
            SampleFormat::F32 => {
                let mut iq = heapless::Vec::<[f32; 2], MAX_N_X>::new();
                for kx in window.clone() {
                    let v = sample(kx);
                    iq.push([v.re, v.im])
                        .map_err(|_| anyhow::anyhow!("line longer than {MAX_N_X}"))?;
                }
                Samples::F32 { iq }
            }
        };
        let frame = Line::<MAX_N_X> {
            scan_id: spec.scan_id,
            seq: seq as u32,
            slice: line.slice,
            coil: line.coil,
            ky: line.ky,
            samples,
        };
        let bytes = encode_line(&frame, &mut buf)
            .map_err(|e| anyhow::anyhow!("encoding line {seq}: {e}"))?;
        encoded.push(bytes.to_vec());
    }

    let log = plan_faults(faults, lines)?;
    let mut rng = ChaCha8Rng::seed_from_u64(crate::simulate::splitmix64(faults.seed));
    for &seq in &log.corrupted {
        corrupt_frame(&mut encoded[seq as usize], &mut rng)?;
    }
    let mut order: Vec<u32> = (0..lines).collect();
    for swap in &log.reordered {
        order.swap(swap.seq as usize, swap.with as usize);
    }
    let dropped: std::collections::HashSet<u32> = log.dropped.iter().copied().collect();
    let duplicated: std::collections::HashSet<u32> = log.duplicated.iter().copied().collect();

    // A bare delimiter first, as the firmware's bridge sends it: whatever a receiver had
    // half-decoded is flushed, so the ScanStart is never glued to old bytes.
    let mut out = vec![0u8];
    let start = ScanStart {
        version: VERSION,
        scan_id: spec.scan_id,
        n_y: n_y16,
        n_x: n_x16,
        n_coils,
        n_slices,
        field_mt: spec.field_mt,
        fov_mm: spec.fov_mm,
        // n_x <= MAX_N_X was checked, so the window bounds fit u16.
        kx_first: window.start as u16,
        kx_count: window.len() as u16,
    };
    out.extend_from_slice(
        encode_scan_start(&start, &mut buf).map_err(|e| anyhow::anyhow!("ScanStart: {e}"))?,
    );
    for seq in order {
        if dropped.contains(&seq) {
            continue;
        }
        let frame = &encoded[seq as usize];
        out.extend_from_slice(frame);
        if duplicated.contains(&seq) {
            out.extend_from_slice(frame);
        }
    }
    let end = ScanEnd {
        scan_id: spec.scan_id,
        lines_sent: lines,
        status: EndStatus::Complete,
    };
    out.extend_from_slice(
        encode_scan_end(&end, &mut buf).map_err(|e| anyhow::anyhow!("ScanEnd: {e}"))?,
    );
    Ok((out, log))
}

/// The readout window of `masks` (`[S][n_y][n_x]`, something sampled): the columns from
/// the first to the last sampled one, over all slices. Fails if a sampled row does not
/// sample exactly those columns (module docs).
pub fn readout_window(masks: ArrayView3<'_, bool>) -> Result<std::ops::Range<usize>> {
    let n_x = masks.dim().2;
    let sampled = |kx: usize| masks.index_axis(Axis(2), kx).iter().any(|&m| m);
    let (Some(first), Some(last)) = (
        (0..n_x).find(|&kx| sampled(kx)),
        (0..n_x).rfind(|&kx| sampled(kx)),
    ) else {
        bail!("the masks sample nothing: no readout window");
    };
    let window = first..last + 1;
    for (s, mask) in masks.axis_iter(Axis(0)).enumerate() {
        for (ky, row) in mask.axis_iter(Axis(0)).enumerate() {
            if row.iter().any(|&m| m)
                && row
                    .iter()
                    .enumerate()
                    .any(|(kx, &m)| m != window.contains(&kx))
            {
                bail!(
                    "mask not acquirable line by line: slice {s} row {ky} samples other columns                      than the readout window {first}..{} (a 2-D mask such as Poisson-disc; use a                      row or block mask)",
                    window.end
                );
            }
        }
    }
    Ok(window)
}

/// Choose the faulted lines (module docs).
fn plan_faults(faults: &FaultSpec, lines: u32) -> Result<FaultLog> {
    let count = |f: f64| (f * f64::from(lines)).round() as u32;
    let (n_drop, n_dup, n_corrupt, n_reorder) = (
        count(faults.drop),
        count(faults.duplicate),
        count(faults.corrupt),
        count(faults.reorder),
    );
    let total = u64::from(n_drop) + u64::from(n_dup) + u64::from(n_corrupt) + u64::from(n_reorder);
    ensure!(
        total <= u64::from(lines),
        "fault fractions ask for {total} faulted lines but the scan has {lines}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(faults.seed);
    let mut perm: Vec<u32> = (0..lines).collect();
    perm.shuffle(&mut rng);
    let take = |n: u32, from: &mut &[u32]| {
        let (head, tail) = from.split_at(n as usize);
        *from = tail;
        let mut v = head.to_vec();
        v.sort_unstable();
        v
    };
    let mut rest: &[u32] = &perm;
    let dropped = take(n_drop, &mut rest);
    let duplicated = take(n_dup, &mut rest);
    let corrupted = take(n_corrupt, &mut rest);
    let candidates = take(n_reorder, &mut rest);

    // Partners: lines with no fault of their own.
    let mut free = vec![true; lines as usize];
    for &s in dropped
        .iter()
        .chain(&duplicated)
        .chain(&corrupted)
        .chain(&candidates)
    {
        free[s as usize] = false;
    }
    let mut reordered = Vec::new();
    for &seq in &candidates {
        let hi = seq.saturating_add(REORDER_DISTANCE).min(lines - 1);
        let eligible: Vec<u32> = (seq + 1..=hi).filter(|&j| free[j as usize]).collect();
        if let Some(&with) = eligible.get(rng.random_range(0..eligible.len().max(1))) {
            free[with as usize] = false;
            reordered.push(Swap { seq, with });
        }
    }
    let counts = FaultCounts {
        dropped: n_drop,
        duplicated: n_dup,
        reordered: reordered.len() as u32,
        corrupted: n_corrupt,
    };
    Ok(FaultLog {
        seed: faults.seed,
        lines_sent: lines,
        lines_intact: lines - n_drop - n_corrupt,
        dropped,
        duplicated,
        reordered,
        corrupted,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cobs_data_bytes_skip_codes_and_delimiter() {
        // Blocks: [03 a b] [02 c] [01] then delimiter: data bytes a, b, c.
        let frame = [0x03, 0xAA, 0xBB, 0x02, 0xCC, 0x01, 0x00];
        assert_eq!(cobs_data_len(&frame), 3);
        assert_eq!(cobs_data_byte(&frame, 0), Some(1));
        assert_eq!(cobs_data_byte(&frame, 1), Some(2));
        assert_eq!(cobs_data_byte(&frame, 2), Some(4));
        assert_eq!(cobs_data_byte(&frame, 3), None);
    }
}
