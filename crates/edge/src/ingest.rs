//! Wire stream → completed slices (DESIGN §5, §7): bytes from any source go through the
//! wire decoder into the no_std [`SliceAssembler`]; each slice it completes is copied out as
//! an owned [`SliceJob`] and handed to a sink (the reconstruction worker of `serve`, or the
//! sequential loop of `recon --input`).
//!
//! Memory is bounded before it is used: the decoder has a fixed buffer (an oversize frame is
//! dropped before anything is allocated for it), a scan's assembler storage is checked
//! against [`MAX_SCAN_STORAGE_BYTES`] before it is allocated from `ScanStart`'s geometry,
//! and a sink that blocks (a full queue) stops the reading, which pushes back on the sender.

use anyhow::{Context, Result};
use num_complex::Complex32;
use sparsemap_wire::{
    AssemblerConfig, Completed, Decoder, Error as WireError, FeedResult, Frame, ScanStart,
    SliceAssembler, SliceStats,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

/// Largest assembler storage a scan may ask for (k-space and mask of every slot and coil).
/// 2 slots of one coil at 512² take 4.7 MB; 8 coils at 256² take 9.4 MB.
pub const MAX_SCAN_STORAGE_BYTES: usize = 64 << 20;

/// Bytes read at once.
pub const CHUNK_BYTES: usize = 64 << 10;

/// How slices are cut out of the stream.
#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    pub assembler: AssemblerConfig,
    /// Complete a slice whose last line is this old, even if the scan has not moved on.
    pub slice_timeout: Option<Duration>,
    /// Ask the sink for a preview every this many lines of an open slice.
    pub preview_every: Option<u32>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            assembler: AssemblerConfig {
                slots: 2,
                settle_lines: DEFAULT_SETTLE_LINES,
            },
            slice_timeout: None,
            preview_every: None,
        }
    }
}

/// Default `settle_lines`: TCP and serial links do not reorder, so a slice is complete a
/// few lines into the next one; a link that reorders needs `--settle-lines` at least twice
/// its reorder distance.
pub const DEFAULT_SETTLE_LINES: u32 = 4;

/// One completed slice, owned, ready to reconstruct.
#[derive(Debug, Clone)]
pub struct SliceJob {
    pub start: ScanStart,
    pub stats: SliceStats,
    /// `[n_coils][n_y][n_x]`, centred, zero where not measured.
    pub kspace: Vec<Complex32>,
    /// Same layout, true where measured.
    pub mask: Vec<bool>,
    /// When the slice's first and last lines arrived (`None` if none did).
    pub first_line: Option<Instant>,
    pub last_line: Option<Instant>,
    /// Previews of this slice written while it arrived, and the time they took (on the
    /// ingest thread, in the sink).
    pub previews: u32,
    pub preview_seconds: f64,
    /// Where the slice lies and what was scanned, when the input says (MRD files).
    pub geometry: Option<crate::output::SliceGeometry>,
    pub description: Option<std::sync::Arc<crate::output::ScanDescription>>,
    /// What an MRD file skipped and how its grid was formed (MRD input only; boxed to keep
    /// the job small).
    pub mrd: Option<Box<crate::mrd::MrdSliceInfo>>,
    /// Noise-only samples `[n_coils][M]` of the scan (an MRD noise-adjustment acquisition),
    /// for prewhitening the coils.
    pub noise: Option<std::sync::Arc<Vec<Complex32>>>,
}

/// What the ingest tells its sink.
pub enum Event<'a> {
    /// A scan begins (plan for its grid now, while its lines arrive).
    Scan(ScanStart),
    /// A completed slice.
    Slice(SliceJob),
    /// An open slice has received `lines` lines: its k-space and mask so far.
    Preview {
        start: &'a ScanStart,
        slice: u16,
        lines: u32,
        kspace: &'a [Complex32],
        mask: &'a [bool],
    },
    /// A scan the runtime cannot take (its lines are counted and dropped).
    Rejected { start: ScanStart, reason: String },
}

/// What one stream delivered, for the log.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct IngestSummary {
    pub bytes: u64,
    pub scans: u32,
    pub slices: u32,
    pub rejected_scans: u32,
    /// Decoder errors outside any scan (e.g. lines of a scan whose `ScanStart` was lost).
    pub errors_outside_scans: u32,
}

/// A source of bytes that may also report that nothing arrived for a while.
pub trait ByteSource {
    /// Fills `buf` with what arrived; `Idle` when nothing arrived within the source's tick,
    /// `End` at end of stream.
    fn next_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<Chunk>;
}

/// The result of [`ByteSource::next_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Data(usize),
    Idle,
    End,
}

/// Any blocking reader (a file, a socket): never idle.
pub struct ReaderSource<R>(pub R);

impl<R: Read> ByteSource for ReaderSource<R> {
    fn next_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<Chunk> {
        loop {
            match self.0.read(buf) {
                Ok(0) => return Ok(Chunk::End),
                Ok(n) => return Ok(Chunk::Data(n)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

enum Outcome {
    Frame(Frame),
    Wire(WireError),
    Idle,
    End,
}

/// Decoder outcomes from a byte source.
struct FrameStream<'s> {
    source: &'s mut dyn ByteSource,
    decoder: Box<Decoder>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The decoder may hold a frame behind the outcome it just returned: feed it again
    /// (with no bytes) before reading more.
    drained: bool,
    ended: bool,
    bytes: u64,
}

impl<'s> FrameStream<'s> {
    fn new(source: &'s mut dyn ByteSource) -> Self {
        Self {
            source,
            decoder: Box::new(Decoder::new()),
            buf: vec![0; CHUNK_BYTES],
            start: 0,
            end: 0,
            drained: true,
            ended: false,
            bytes: 0,
        }
    }

    fn next(&mut self) -> Result<Outcome> {
        loop {
            if self.ended {
                return Ok(match self.decoder.finish() {
                    Some(Ok(frame)) => Outcome::Frame(frame),
                    Some(Err(error)) => Outcome::Wire(error),
                    None => Outcome::End,
                });
            }
            if self.start < self.end || !self.drained {
                let input = &self.buf[self.start..self.end];
                let (outcome, left) = match self.decoder.feed(input) {
                    FeedResult::Consumed => (None, 0),
                    FeedResult::Frame { frame, remaining } => {
                        (Some(Outcome::Frame(frame)), remaining.len())
                    }
                    FeedResult::Error { error, remaining } => {
                        (Some(Outcome::Wire(error)), remaining.len())
                    }
                };
                self.start = self.end - left;
                self.drained = outcome.is_none();
                if let Some(outcome) = outcome {
                    return Ok(outcome);
                }
                continue;
            }
            match self
                .source
                .next_chunk(&mut self.buf)
                .context("reading the stream")?
            {
                Chunk::Data(n) => {
                    self.start = 0;
                    self.end = n;
                    self.bytes += n as u64;
                }
                Chunk::Idle => return Ok(Outcome::Idle),
                Chunk::End => self.ended = true,
            }
        }
    }
}

/// Arrival times of one open slice.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    first: Instant,
    last: Instant,
    lines: u32,
    previews: u32,
    preview_seconds: f64,
}

/// Reads `source` to its end, calling `sink` with every scan, completed slice and preview.
/// A sink error stops the ingest and is returned; stream damage never is (it is counted in
/// the slices' statistics).
pub fn ingest(
    source: &mut dyn ByteSource,
    config: &IngestConfig,
    sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<IngestSummary> {
    let mut stream = FrameStream::new(source);
    let mut summary = IngestSummary::default();
    let mut pending: Option<ScanStart> = None;
    loop {
        let start = match pending.take() {
            Some(start) => start,
            None => loop {
                match stream.next()? {
                    Outcome::Frame(Frame::ScanStart(start)) => break start,
                    Outcome::Frame(_) | Outcome::Wire(_) => summary.errors_outside_scans += 1,
                    Outcome::Idle => {}
                    Outcome::End => {
                        summary.bytes = stream.bytes;
                        return Ok(summary);
                    }
                }
            },
        };
        summary.scans += 1;
        let storage = SliceAssembler::storage_len(&start, &config.assembler)
            .map_err(|e| format!("{e}"))
            .and_then(|len| {
                let bytes = len * (std::mem::size_of::<Complex32>() + 1);
                if bytes > MAX_SCAN_STORAGE_BYTES {
                    Err(format!(
                        "its geometry ({} coils of {}x{}) needs {bytes} bytes of slice buffers, more than the {MAX_SCAN_STORAGE_BYTES} allowed",
                        start.n_coils, start.n_y, start.n_x
                    ))
                } else {
                    Ok(len)
                }
            });
        let len = match storage {
            Ok(len) => len,
            Err(reason) => {
                summary.rejected_scans += 1;
                sink(Event::Rejected { start, reason })?;
                // Skip the scan's frames up to the next ScanStart.
                loop {
                    match stream.next()? {
                        Outcome::Frame(Frame::ScanStart(next)) => {
                            pending = Some(next);
                            break;
                        }
                        Outcome::End => {
                            summary.bytes = stream.bytes;
                            return Ok(summary);
                        }
                        _ => {}
                    }
                }
                continue;
            }
        };
        let mut kspace = vec![Complex32::default(); len];
        let mut mask = vec![false; len];
        let mut assembler = SliceAssembler::new(start, config.assembler, &mut kspace, &mut mask)
            .map_err(|e| anyhow::anyhow!("scan {}: {e}", start.scan_id))?;
        sink(Event::Scan(start))?;
        let mut arrivals: BTreeMap<u16, Arrival> = BTreeMap::new();
        let mut completed: Vec<SliceJob> = Vec::new();
        let exit = loop {
            let outcome = stream.next()?;
            let mut exit = None;
            match outcome {
                Outcome::Frame(Frame::Line(line)) => {
                    // Completed slices are popped after every frame, so a line never finds
                    // the slots full of unpopped slices; line_then_pop covers it anyway.
                    assembler.line_then_pop(&line, |done| completed.push(copy_out(&start, done)));
                    let now = Instant::now();
                    let arrival = arrivals.entry(line.slice).or_insert(Arrival {
                        first: now,
                        last: now,
                        lines: 0,
                        previews: 0,
                        preview_seconds: 0.0,
                    });
                    arrival.last = now;
                    arrival.lines += 1;
                    if let Some(every) = config.preview_every {
                        if every > 0 && arrival.lines % every == 0 {
                            if let Some((k, m)) = assembler.slot_view(line.slice) {
                                let started = Instant::now();
                                sink(Event::Preview {
                                    start: &start,
                                    slice: line.slice,
                                    lines: arrival.lines,
                                    kspace: k,
                                    mask: m,
                                })?;
                                arrival.previews += 1;
                                arrival.preview_seconds += started.elapsed().as_secs_f64();
                            }
                        }
                    }
                }
                Outcome::Frame(Frame::Fault(fault)) => assembler.fault(&fault),
                Outcome::Frame(Frame::ScanEnd(end)) => {
                    assembler.end(&end);
                    exit = Some(ScanExit::Ended);
                }
                Outcome::Frame(Frame::ScanStart(next)) => {
                    // The decoder reported the interruption first; the new scan follows.
                    assembler.interrupt();
                    exit = Some(ScanExit::Next(next));
                }
                Outcome::Wire(WireError::ScanInterrupted { .. }) => assembler.interrupt(),
                Outcome::Wire(error) => assembler.wire_error(&error),
                Outcome::Idle => {}
                Outcome::End => {
                    assembler.interrupt();
                    exit = Some(ScanExit::StreamEnd);
                }
            }
            if let Some(timeout) = config.slice_timeout {
                let now = Instant::now();
                let stale = assembler
                    .open_slices()
                    .next()
                    .and_then(|oldest| arrivals.get(&oldest.slice))
                    .is_some_and(|a| now.duration_since(a.last) >= timeout);
                if stale {
                    assembler.complete_oldest();
                }
            }
            while let Some(done) = assembler.pop_complete() {
                completed.push(copy_out(&start, done));
            }
            for mut job in completed.drain(..) {
                if let Some(arrival) = arrivals.remove(&job.stats.slice) {
                    job.first_line = Some(arrival.first);
                    job.last_line = Some(arrival.last);
                    job.previews = arrival.previews;
                    job.preview_seconds = arrival.preview_seconds;
                }
                summary.slices += 1;
                sink(Event::Slice(job))?;
            }
            if let Some(exit) = exit {
                break exit;
            }
        };
        match exit {
            ScanExit::Ended => {}
            ScanExit::Next(next) => pending = Some(next),
            ScanExit::StreamEnd => {
                summary.bytes = stream.bytes;
                return Ok(summary);
            }
        }
    }
}

/// An owned copy of a completed slice (its slot is freed when `done` drops).
fn copy_out(start: &ScanStart, done: Completed<'_>) -> SliceJob {
    SliceJob {
        start: *start,
        stats: *done.stats(),
        kspace: done.kspace().to_vec(),
        mask: done.mask().to_vec(),
        first_line: None,
        last_line: None,
        previews: 0,
        preview_seconds: 0.0,
        geometry: None,
        description: None,
        mrd: None,
        noise: None,
    }
}

enum ScanExit {
    /// `ScanEnd` arrived.
    Ended,
    /// Another scan began without the `ScanEnd` of this one.
    Next(ScanStart),
    /// The stream ended inside the scan.
    StreamEnd,
}
