//! The acquisition state machine: configure → wait for trigger → one readout of `kx_count`
//! I/Q samples (one per `DRDY`) → `Line` frame → … → `ScanEnd`.

use embedded_hal::digital::InputPin;
use embedded_hal::spi::SpiDevice;
use embedded_io::{Write, WriteReady};
use heapless::Vec;
use sparsemap_wire::{
    encode_fault, encode_line, encode_scan_end, encode_scan_start, max_encoded_len, EndStatus,
    Fault, FaultKind, Line, Samples, ScanEnd, ScanStart, MAX_N_X, VERSION,
};

use crate::ads131a02::{AdcError, Ads131a02};
use crate::link::TxQueue;

/// Largest encoded `ScanEnd` or `Fault` frame (the control frames): kept free in the
/// queue so that a scan can always be closed and a fault always reported.
///
/// postcard ≤ 16 bytes + CRC 4 + COBS 2 = 22; 32 leaves margin.
pub const CONTROL_FRAME_MAX: usize = 32;

/// Queue space a `Line` must leave free: one `Fault` and the `ScanEnd`.
pub const LINE_RESERVE: usize = 2 * CONTROL_FRAME_MAX;

/// One readout of the plan: which k-space row of which slice and coil the next trigger
/// acquires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Readout {
    /// Slice index.
    pub slice: u16,
    /// Coil index.
    pub coil: u8,
    /// Phase-encode row of the centred `[N_y][N_x]` grid.
    pub ky: u16,
}

/// What the scanner's sequencer tells the bridge about a scan (over its control channel;
/// how it gets there is outside this crate). Caller-owned: the readout list is borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ScanPlan<'a> {
    /// Unique per scan.
    pub scan_id: u32,
    /// Grid rows (`N_y`).
    pub n_y: u16,
    /// Columns of the reconstruction grid (`N_x`), `1..=MAX_N_X`.
    pub n_x: u16,
    /// First grid column a readout measures.
    pub kx_first: u16,
    /// Samples per readout, `1..=N` of the bridge, with `kx_first + kx_count <= n_x`: a
    /// readout measures the grid columns `kx_first .. kx_first + kx_count`.
    pub kx_count: u16,
    /// Receive coils.
    pub n_coils: u8,
    /// Slices.
    pub n_slices: u16,
    /// Main field, millitesla.
    pub field_mt: f32,
    /// Field of view `[y, x]`, millimetres.
    pub fov_mm: [f32; 2],
    /// k-space units per ADC code (receive-chain gain calibration), `Line.samples.scale`.
    pub scale: f32,
    /// The readouts in acquisition order, one per trigger.
    pub readouts: &'a [Readout],
}

/// Poll budgets. The bridge is polled, not interrupt-driven: these bound every wait.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timing {
    /// Trigger polls before the scan is aborted with `FaultKind::TriggerTimeout` (the
    /// sequencer stopped). `u32::MAX` waits ~forever.
    pub trigger_polls: u32,
    /// `DRDY` polls before a readout is declared dead (`AdcTimeout`, scan aborted). At
    /// 128 kSPS a conversion is due every 7.8 µs; a poll costs well under 1 µs.
    pub drdy_polls: u32,
    /// Bytes offered to the link per poll while waiting (bounds the time one poll takes:
    /// 64 bytes ≈ 0.4 µs of copying into a UART/USB FIFO at 168 MHz).
    pub pump_chunk: usize,
    /// Polls allowed to drain the queue at the end of a scan before giving up
    /// ([`LinkError::Stalled`]).
    pub flush_polls: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            trigger_polls: u32::MAX,
            drdy_polls: 100_000,
            pump_chunk: 64,
            flush_polls: u32::MAX,
        }
    }
}

/// The only errors that stop the bridge: the link to the edge itself failed, so nothing
/// can be reported in a frame any more. Everything on the ADC side becomes a `Fault` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkError<E> {
    /// The link's `write`/`write_ready` returned an error.
    Write(E),
    /// The link took no bytes for `Timing::flush_polls` polls while the scan was closing.
    Stalled,
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Configure the ADC (skipped when it already is).
    Configure,
    /// Queue `ScanStart`.
    Start,
    /// Waiting for a rising edge on the trigger input for readout `index`.
    WaitTrigger {
        /// Readout index in the plan.
        index: usize,
    },
    /// Reading sample `k` of readout `index`.
    Read {
        /// Readout index in the plan.
        index: usize,
        /// Samples read so far.
        k: u16,
    },
    /// Queue `ScanEnd`.
    End(EndStatus),
    /// Draining the queue.
    Flush,
    /// Finished; see [`ScanSummary`].
    Done,
}

/// What a scan produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScanSummary {
    /// Whether `ScanStart` was sent (false when the ADC could not be configured).
    pub started: bool,
    /// `Line` frames queued (`ScanEnd.lines_sent`).
    pub lines_sent: u32,
    /// `Fault` frames queued.
    pub faults: u32,
    /// Faults that found no room in the queue (only counted).
    pub faults_dropped: u32,
    /// Total bytes queued for the link.
    pub bytes: u64,
    /// `Complete` unless the scan was aborted.
    pub aborted: bool,
}

/// The acquisition bridge.
///
/// Const generics and their RAM cost (embassy-style, all inside this struct):
/// * `N` — largest readout (complex samples): the line buffer, a `Line<N>` of `8 N + 32`
///   bytes (the `Samples` enum is sized for its `f32` variant; the bridge fills `i16`);
/// * `E` — encoder scratch, at least [`max_encoded_len`]`(N)` (compile-time check): 2083
///   bytes for `N = 256`, 4139 for `N = 512`;
/// * `Q` — link queue, at least `E + 2 × CONTROL_FRAME_MAX`; a few frames' worth rides out
///   link hiccups (8 KiB ≈ 6 worst-case 256-sample lines).
///
/// With `N = 256, E = 2083, Q = 8192` the bridge is ≈ 12.2 KiB plus the peripherals.
pub struct Bridge<SPI, DRDY, TRIG, W, const N: usize, const E: usize, const Q: usize> {
    adc: Ads131a02<SPI, DRDY>,
    trigger: TRIG,
    link: W,
    queue: TxQueue<Q>,
    scratch: [u8; E],
    line: Line<N>,
    timing: Timing,
    state: State,
    trigger_was_high: bool,
    polls: u32,
    summary: ScanSummary,
}

impl<SPI, DRDY, TRIG, W, const N: usize, const E: usize, const Q: usize>
    Bridge<SPI, DRDY, TRIG, W, N, E, Q>
where
    SPI: SpiDevice,
    DRDY: InputPin,
    TRIG: InputPin,
    W: Write + WriteReady,
{
    /// A bridge around an ADC on `spi` with data-ready `drdy`, the sequencer's readout
    /// trigger `trigger` (active high, rising edge starts a readout), and `link` to the
    /// edge box.
    pub fn new(spi: SPI, drdy: DRDY, trigger: TRIG, link: W, timing: Timing) -> Self {
        const {
            assert!(
                E >= max_encoded_len(N),
                "E must be at least max_encoded_len(N)"
            );
            assert!(
                Q >= E + LINE_RESERVE,
                "Q must hold one frame and the reserve"
            );
            assert!(N <= u16::MAX as usize);
        };
        Self {
            adc: Ads131a02::new(spi, drdy),
            trigger,
            link,
            queue: TxQueue::new(),
            scratch: [0; E],
            line: Line {
                scan_id: 0,
                seq: 0,
                slice: 0,
                coil: 0,
                ky: 0,
                samples: Samples::I16 {
                    scale: 0.0,
                    iq: Vec::new(),
                },
            },
            timing,
            state: State::Done,
            trigger_was_high: false,
            polls: 0,
            summary: ScanSummary::default(),
        }
    }

    /// The link (e.g. to read back what a mock received).
    pub fn link(&self) -> &W {
        &self.link
    }

    /// The link, mutably.
    pub fn link_mut(&mut self) -> &mut W {
        &mut self.link
    }

    /// Give the peripherals back: `(spi, drdy, trigger, link)`.
    pub fn release(self) -> (SPI, DRDY, TRIG, W) {
        let (spi, drdy) = self.adc.release();
        (spi, drdy, self.trigger, self.link)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Run one scan to the end (`step` until `Done`) and return its summary.
    ///
    /// ADC problems never end this with an error: they become `Fault` frames (and, when
    /// fatal, `ScanEnd { status: Aborted }`). Only a failing link does.
    pub fn run_scan(&mut self, plan: &ScanPlan<'_>) -> Result<ScanSummary, LinkError<W::Error>> {
        self.begin();
        while self.state != State::Done {
            self.step(plan)?;
        }
        Ok(self.summary)
    }

    /// Arm the state machine for `plan` (then call [`Self::step`] until [`State::Done`]).
    pub fn begin(&mut self) {
        self.summary = ScanSummary::default();
        self.polls = 0;
        self.state = if self.adc.is_configured() {
            State::Start
        } else {
            State::Configure
        };
    }

    /// Do one unit of work: one pin poll, one sample, or one frame. Returns the new state.
    pub fn step(&mut self, plan: &ScanPlan<'_>) -> Result<State, LinkError<W::Error>> {
        let next = match self.state {
            State::Configure => match self.adc.configure() {
                Ok(()) => {
                    info!("ADS131A02 configured");
                    State::Start
                }
                Err(e) => {
                    error!("ADC configuration failed");
                    let detail = adc_detail(&e);
                    self.fault(0, FaultKind::AdcConfig, None, detail);
                    State::Flush
                }
            },
            State::Start => {
                if let Some(detail) = plan_error::<N>(plan) {
                    // A plan this bridge cannot carry out: refuse before ScanStart.
                    error!("invalid scan plan");
                    self.fault(plan.scan_id, FaultKind::InvalidPlan, None, detail);
                    State::Flush
                } else {
                    let start = ScanStart {
                        version: VERSION,
                        scan_id: plan.scan_id,
                        n_y: plan.n_y,
                        n_x: plan.n_x,
                        n_coils: plan.n_coils,
                        n_slices: plan.n_slices,
                        field_mt: plan.field_mt,
                        fov_mm: plan.fov_mm,
                        kx_first: plan.kx_first,
                        kx_count: plan.kx_count,
                    };
                    // A bare delimiter first: whatever the receiver had half-decoded is
                    // flushed, so the ScanStart is never glued to old bytes.
                    let _ = self.queue.push(&[0]);
                    let bytes =
                        encode_scan_start(&start, &mut self.scratch).expect("E >= max_encoded_len");
                    let queued = self.queue.push(bytes);
                    debug_assert!(queued, "queue is empty at scan start");
                    self.summary.bytes += bytes.len() as u64 + 1;
                    self.summary.started = true;
                    info!(
                        "scan {} start: {} readouts",
                        plan.scan_id,
                        plan.readouts.len()
                    );
                    self.trigger_was_high = self.trigger.is_high().unwrap_or(true);
                    self.next_readout(plan, 0)
                }
            }
            State::WaitTrigger { index } => {
                // The ADC converts continuously: read and discard conversions between
                // readouts so that its status flags describe the readout, not the idle time.
                if let Ok(true) = self.adc.data_ready() {
                    let _ = self.adc.read_sample();
                }
                self.wait_trigger(plan, index)?
            }
            State::Read { index, k } => self.read(plan, index, k)?,
            State::End(status) => {
                let end = ScanEnd {
                    scan_id: plan.scan_id,
                    lines_sent: self.summary.lines_sent,
                    status,
                };
                let bytes = encode_scan_end(&end, &mut self.scratch).expect("E >= max_encoded_len");
                let queued = self.queue.push(bytes);
                debug_assert!(queued, "LINE_RESERVE keeps room for ScanEnd");
                self.summary.bytes += bytes.len() as u64;
                self.summary.aborted = status == EndStatus::Aborted;
                info!(
                    "scan {} end: {} lines",
                    plan.scan_id, self.summary.lines_sent
                );
                self.polls = 0;
                State::Flush
            }
            State::Flush => {
                if self.queue.is_empty() {
                    State::Done
                } else {
                    let took = self
                        .queue
                        .pump(&mut self.link, usize::MAX)
                        .map_err(LinkError::Write)?;
                    if took > 0 {
                        self.polls = 0;
                    } else {
                        self.polls += 1;
                        if self.polls >= self.timing.flush_polls {
                            return Err(LinkError::Stalled);
                        }
                    }
                    State::Flush
                }
            }
            State::Done => State::Done,
        };
        self.state = next;
        Ok(next)
    }

    fn wait_trigger(
        &mut self,
        plan: &ScanPlan<'_>,
        index: usize,
    ) -> Result<State, LinkError<W::Error>> {
        let next = match self.trigger.is_high() {
            Ok(high) => {
                let rising = high && !self.trigger_was_high;
                self.trigger_was_high = high;
                if rising {
                    self.open_line(plan, index);
                    State::Read { index, k: 0 }
                } else {
                    self.pump()?;
                    self.polls += 1;
                    if self.polls >= self.timing.trigger_polls {
                        warn!("trigger timeout");
                        self.fault(
                            plan.scan_id,
                            FaultKind::TriggerTimeout,
                            Some(plan.readouts[index]),
                            0,
                        );
                        State::End(EndStatus::Aborted)
                    } else {
                        State::WaitTrigger { index }
                    }
                }
            }
            Err(_) => {
                self.fault(
                    plan.scan_id,
                    FaultKind::AdcBus,
                    Some(plan.readouts[index]),
                    0,
                );
                State::End(EndStatus::Aborted)
            }
        };
        Ok(next)
    }

    /// Go to readout `index`, or end the scan after the last one.
    fn next_readout(&mut self, plan: &ScanPlan<'_>, index: usize) -> State {
        self.polls = 0;
        if index < plan.readouts.len() {
            State::WaitTrigger { index }
        } else {
            State::End(EndStatus::Complete)
        }
    }

    fn open_line(&mut self, plan: &ScanPlan<'_>, index: usize) {
        let r = plan.readouts[index];
        self.line.scan_id = plan.scan_id;
        self.line.seq = self.summary.lines_sent;
        self.line.slice = r.slice;
        self.line.coil = r.coil;
        self.line.ky = r.ky;
        self.line.samples = Samples::I16 {
            scale: plan.scale,
            iq: Vec::new(),
        };
        self.polls = 0;
    }

    fn read(
        &mut self,
        plan: &ScanPlan<'_>,
        index: usize,
        k: u16,
    ) -> Result<State, LinkError<W::Error>> {
        let readout = plan.readouts[index];
        match self.adc.data_ready() {
            Ok(false) => {
                self.pump()?;
                self.polls += 1;
                if self.polls >= self.timing.drdy_polls {
                    warn!("DRDY timeout in readout {}", index);
                    self.fault(
                        plan.scan_id,
                        FaultKind::AdcTimeout,
                        Some(readout),
                        u32::from(k),
                    );
                    return Ok(State::End(EndStatus::Aborted));
                }
                return Ok(State::Read { index, k });
            }
            Ok(true) => {}
            Err(e) => {
                self.fault(
                    plan.scan_id,
                    FaultKind::AdcBus,
                    Some(readout),
                    adc_detail(&e),
                );
                return Ok(self.next_readout(plan, index + 1));
            }
        }
        self.polls = 0;
        match self.adc.read_sample() {
            Ok(iq) => {
                if let Samples::I16 { iq: v, .. } = &mut self.line.samples {
                    // Capacity N >= kx_count was checked at Start.
                    let _ = v.push(iq);
                }
                let k = k + 1;
                if k < plan.kx_count {
                    return Ok(State::Read { index, k });
                }
                self.send_line(plan, readout);
                Ok(self.next_readout(plan, index + 1))
            }
            Err(e) => {
                let kind = match e {
                    AdcError::Spi(_) | AdcError::Pin(_) => FaultKind::AdcBus,
                    AdcError::Response(_) => FaultKind::AdcProtocol,
                    AdcError::Status(_) => FaultKind::AdcStatus,
                    AdcError::Timeout => FaultKind::AdcTimeout,
                };
                warn!("ADC error in readout {}", index);
                self.fault(plan.scan_id, kind, Some(readout), adc_detail(&e));
                // The rest of this readout is abandoned; the next trigger starts the next.
                Ok(self.next_readout(plan, index + 1))
            }
        }
    }

    /// Encode the completed line and queue it, or report a link overrun.
    fn send_line(&mut self, plan: &ScanPlan<'_>, readout: Readout) {
        let bytes = encode_line(&self.line, &mut self.scratch).expect("E >= max_encoded_len");
        let len = bytes.len();
        if self.queue.free() >= len + LINE_RESERVE {
            self.queue.push(bytes);
            self.summary.lines_sent += 1;
            self.summary.bytes += len as u64;
        } else {
            warn!("link overrun: line of {} bytes dropped", len);
            self.fault(
                plan.scan_id,
                FaultKind::LinkOverrun,
                Some(readout),
                len as u32,
            );
        }
    }

    /// Queue a `Fault` frame (or count it if even that does not fit).
    fn fault(&mut self, scan_id: u32, kind: FaultKind, at: Option<Readout>, detail: u32) {
        let r = at.unwrap_or(Readout {
            slice: 0,
            coil: 0,
            ky: 0,
        });
        let f = Fault {
            scan_id,
            kind,
            slice: r.slice,
            coil: r.coil,
            ky: r.ky,
            detail,
        };
        let bytes = encode_fault(&f, &mut self.scratch).expect("E >= max_encoded_len");
        // Keep room for the ScanEnd.
        if self.queue.free() >= bytes.len() + CONTROL_FRAME_MAX {
            self.summary.bytes += bytes.len() as u64;
            self.queue.push(bytes);
            self.summary.faults += 1;
        } else {
            self.summary.faults_dropped += 1;
        }
    }

    /// Offer the link one chunk while waiting.
    fn pump(&mut self) -> Result<(), LinkError<W::Error>> {
        self.queue
            .pump(&mut self.link, self.timing.pump_chunk)
            .map_err(LinkError::Write)?;
        Ok(())
    }
}

/// Why `plan` cannot run on a bridge of capacity `N` (the `Fault.detail` of
/// `InvalidPlan`): `Some(n_x)` for `n_x` above `MAX_N_X` or a zero dimension,
/// `Some(kx_count)` for a readout window that is empty, leaves the grid or exceeds `N`,
/// `Some(index)` of the first readout outside the grid; `None` if it is fine. These are
/// the decoder's `ScanStart` checks: a plan that passes gives a stream the edge accepts.
fn plan_error<const N: usize>(plan: &ScanPlan<'_>) -> Option<u32> {
    if plan.n_x == 0
        || usize::from(plan.n_x) > MAX_N_X
        || plan.n_y == 0
        || plan.n_coils == 0
        || plan.n_slices == 0
    {
        return Some(u32::from(plan.n_x));
    }
    if plan.kx_count == 0
        || usize::from(plan.kx_count) > N
        || u32::from(plan.kx_first) + u32::from(plan.kx_count) > u32::from(plan.n_x)
    {
        return Some(u32::from(plan.kx_count));
    }
    plan.readouts
        .iter()
        .position(|r| r.ky >= plan.n_y || r.coil >= plan.n_coils || r.slice >= plan.n_slices)
        .map(|i| i as u32)
}

/// The number a `Fault.detail` carries for an ADC error.
fn adc_detail<S, P>(e: &AdcError<S, P>) -> u32 {
    match *e {
        AdcError::Response(w) => u32::from(w),
        AdcError::Status(s) => u32::from(s),
        _ => 0,
    }
}
