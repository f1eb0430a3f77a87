//! A behavioural model of the acquisition hardware for host tests and the `record_scan`
//! example: an ADS131A02 that follows the command protocol of the data sheet (power-up
//! READY, UNLOCK, RREG/WREG with read-back responses one frame late, dynamic frame size,
//! WAKEUP, LOCK, status word `0x22xx`), the sequencer's trigger, and a link with
//! back-pressure. It checks the firmware's side of the protocol (frame lengths, reading only
//! after DRDY, commands accepted) and counts every violation.
//!
//! Included by path from tests and examples (`#[path = "../tests/sim/mod.rs"] mod sim;`).

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin};
use embedded_hal::spi::{ErrorKind, ErrorType as SpiErrorType, Operation, SpiDevice};
use sparsemap_firmware::ads131a02::{cmd, reg, ID_ADS131A02};

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// The SPI transfer of sample `k` of readout `r` fails.
    SpiError { readout: usize, k: usize },
    /// Sample `k` of readout `r` comes with `STAT_1 = stat`.
    Status { readout: usize, k: usize, stat: u8 },
    /// The status word of sample `k` of readout `r` is garbage (lost alignment).
    Misaligned { readout: usize, k: usize },
    /// From readout `r` on, DRDY never goes low again.
    DeadFrom { readout: usize },
    /// The sequencer sends no more triggers from readout `r` on.
    NoTriggerFrom { readout: usize },
    /// The device reports a wrong ID.
    WrongId,
    /// The device never leaves reset (never answers READY).
    NeverReady,
}

/// Device state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dev {
    PowerUp,
    Unlocked,
    Locked,
}

/// The shared model behind the SPI, DRDY and trigger handles.
#[derive(Debug)]
pub struct Model {
    dev: Dev,
    regs: [u8; 0x20],
    converting: bool,
    frame_words: usize,
    /// Response word for the next frame.
    response: u16,
    /// Readouts to serve, in trigger order.
    readouts: Vec<Vec<[i16; 2]>>,
    /// Index of the next readout the trigger will start.
    next_readout: usize,
    /// Readout being served and the conversions left in it.
    current: Option<usize>,
    queue: VecDeque<[i16; 2]>,
    /// Sample index within the current readout of the next conversion to be read.
    k: usize,
    /// DRDY polls: a new conversion is ready every `polls_per_sample`-th poll.
    polls_per_sample: u32,
    poll_count: u32,
    drdy_low: bool,
    /// Trigger: low polls before each rising edge.
    trigger_gap: u32,
    trigger_count: u32,
    /// Idle conversions produced between readouts (discarded by the firmware).
    idle_value: [i16; 2],
    pub injects: Vec<Inject>,
    /// Protocol violations seen (frame length, read without DRDY, refused command...).
    pub violations: Vec<String>,
    /// Conversions of readouts actually read, per readout.
    pub samples_read: Vec<usize>,
    pub idle_reads: usize,
    pub frames: usize,
    idle_toggle: bool,
}

impl Model {
    fn has(&self, f: impl Fn(&Inject) -> bool) -> bool {
        self.injects.iter().any(f)
    }

    fn dead(&self) -> bool {
        let cur = self.current.unwrap_or(usize::MAX);
        self.has(
            |i| matches!(i, Inject::DeadFrom { readout } if cur != usize::MAX && cur >= *readout),
        )
    }

    /// One SPI frame: `buf` holds the command on entry and the device's output on return.
    fn frame(&mut self, buf: &mut [u8]) -> Result<(), SimSpiError> {
        self.frames += 1;
        if buf.len() < 2 {
            self.violations
                .push(format!("frame of {} bytes", buf.len()));
            return Ok(());
        }
        let command = u16::from_be_bytes([buf[0], buf[1]]);
        let expected_len = if self.dev == Dev::PowerUp {
            2
        } else {
            2 * self.frame_words
        };
        if buf.len() != expected_len {
            self.violations.push(format!(
                "frame of {} bytes, device expects {}",
                buf.len(),
                expected_len
            ));
        }
        // Output: the response to the previous command, then the conversion.
        let mut response = self.response;
        let mut iq = [0i16; 2];
        if self.frame_words == 3 && self.converting {
            if self.drdy_low {
                self.drdy_low = false;
                match self.current {
                    Some(r) => {
                        let k = self.k;
                        if self.has(|i| *i == Inject::SpiError { readout: r, k }) {
                            self.queue.pop_front();
                            self.k += 1;
                            return Err(SimSpiError);
                        }
                        if let Some(&Inject::Status { stat, .. }) =
                            self.injects.iter().find(|i| matches!(i, Inject::Status { readout, k: kk, .. } if *readout == r && *kk == k))
                        {
                            response = 0x2200 | u16::from(stat);
                        }
                        if self.has(|i| *i == Inject::Misaligned { readout: r, k }) {
                            response = 0x1234;
                        }
                        iq = self.queue.pop_front().expect("drdy only with data");
                        self.k += 1;
                        self.samples_read[r] += 1;
                        if self.queue.is_empty() {
                            self.current = None;
                        }
                    }
                    None => {
                        iq = self.idle_value;
                        self.idle_reads += 1;
                    }
                }
            } else if command == cmd::NULL && self.current.is_some() && self.dev == Dev::Locked {
                self.violations.push("data frame read without DRDY".into());
            }
        }
        buf[..2].copy_from_slice(&response.to_be_bytes());
        if buf.len() >= 6 {
            buf[2..4].copy_from_slice(&iq[0].to_be_bytes());
            buf[4..6].copy_from_slice(&iq[1].to_be_bytes());
        }
        // Decode the command; its response goes out in the next frame.
        self.response = self.execute(command);
        Ok(())
    }

    fn status(&self) -> u16 {
        0x2200 | u16::from(self.regs[reg::STAT_1 as usize])
    }

    fn execute(&mut self, c: u16) -> u16 {
        if self.dev == Dev::PowerUp {
            if self.has(|i| *i == Inject::NeverReady) {
                return 0x0000;
            }
            if c == cmd::UNLOCK {
                self.dev = Dev::Unlocked;
                return cmd::UNLOCK;
            }
            return cmd::READY;
        }
        match c {
            cmd::NULL => self.status(),
            cmd::UNLOCK => {
                self.dev = Dev::Unlocked;
                cmd::UNLOCK
            }
            cmd::LOCK => {
                self.dev = Dev::Locked;
                cmd::LOCK
            }
            cmd::WAKEUP if self.dev == Dev::Unlocked => {
                self.converting = true;
                cmd::WAKEUP
            }
            _ if c & 0xE000 == 0x2000 => {
                let a = ((c >> 8) & 0x1F) as u8;
                cmd::reg_response(a, self.regs[a as usize])
            }
            _ if c & 0xE000 == 0x4000 && self.dev == Dev::Unlocked => {
                let a = ((c >> 8) & 0x1F) as u8;
                let d = c as u8;
                if a <= reg::STAT_1 {
                    self.violations
                        .push(format!("write to read-only register {a:#x}"));
                } else {
                    self.regs[a as usize] = d;
                }
                if a == reg::ADC_ENA {
                    self.frame_words = if d & 0x0F != 0 { 3 } else { 1 };
                }
                cmd::reg_response(a, self.regs[a as usize])
            }
            _ => {
                self.violations
                    .push(format!("command {c:#06x} refused in state {:?}", self.dev));
                self.status()
            }
        }
    }

    /// DRDY poll: conversions appear every `polls_per_sample` polls while a readout is due.
    fn poll_drdy(&mut self) -> bool {
        if !self.converting || self.dead() {
            return false;
        }
        if !self.drdy_low {
            self.poll_count += 1;
            if self.poll_count >= self.polls_per_sample {
                self.poll_count = 0;
                // A readout conversion if one is due, otherwise an idle one (only every
                // other poll cycle, so the firmware sees both states between readouts).
                self.idle_toggle = !self.idle_toggle;
                if !self.queue.is_empty() || self.idle_toggle {
                    self.drdy_low = true;
                }
            }
        }
        self.drdy_low
    }

    /// Trigger poll: low for `trigger_gap` polls, then one high poll that starts the next
    /// readout (its samples become the next conversions).
    fn poll_trigger(&mut self) -> bool {
        if self.next_readout >= self.readouts.len()
            || self.has(
                |i| matches!(i, Inject::NoTriggerFrom { readout } if self.next_readout >= *readout),
            )
        {
            return false;
        }
        self.trigger_count += 1;
        if self.trigger_count > self.trigger_gap {
            self.trigger_count = 0;
            let r = self.next_readout;
            self.next_readout += 1;
            self.current = Some(r);
            self.k = 0;
            self.queue = self.readouts[r].iter().copied().collect();
            self.drdy_low = false; // the first conversion of the readout is yet to come
            self.poll_count = 0;
            true
        } else {
            false
        }
    }
}

/// SPI error of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSpiError;

impl embedded_hal::spi::Error for SimSpiError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// The SPI device handle.
pub struct SimSpi(pub Rc<RefCell<Model>>);
/// The DRDY pin handle.
pub struct SimDrdy(pub Rc<RefCell<Model>>);
/// The trigger pin handle.
pub struct SimTrigger(pub Rc<RefCell<Model>>);

impl SpiErrorType for SimSpi {
    type Error = SimSpiError;
}

impl SpiDevice for SimSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        let mut m = self.0.borrow_mut();
        for op in operations {
            match op {
                Operation::TransferInPlace(buf) => m.frame(buf)?,
                other => m
                    .violations
                    .push(format!("unsupported SPI operation {other:?}")),
            }
        }
        Ok(())
    }
}

impl PinErrorType for SimDrdy {
    type Error = core::convert::Infallible;
}
impl InputPin for SimDrdy {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.borrow_mut().poll_drdy())
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.borrow_mut().poll_drdy())
    }
}

impl PinErrorType for SimTrigger {
    type Error = core::convert::Infallible;
}
impl InputPin for SimTrigger {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.borrow_mut().poll_trigger())
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.borrow_mut().poll_trigger())
    }
}

/// Build the hardware for a scan whose readouts, in trigger order, are `readouts`.
pub fn hardware(
    readouts: Vec<Vec<[i16; 2]>>,
    injects: Vec<Inject>,
) -> (Rc<RefCell<Model>>, SimSpi, SimDrdy, SimTrigger) {
    let mut regs = [0u8; 0x20];
    regs[reg::ID_MSB as usize] = if injects.contains(&Inject::WrongId) {
        0x04
    } else {
        ID_ADS131A02
    };
    regs[0x01] = 0x01;
    regs[reg::A_SYS_CFG as usize] = 0x60;
    regs[reg::D_SYS_CFG as usize] = 0x3C;
    regs[reg::CLK1 as usize] = 0x08;
    regs[reg::CLK2 as usize] = 0x86;
    let n = readouts.len();
    let m = Rc::new(RefCell::new(Model {
        dev: Dev::PowerUp,
        regs,
        converting: false,
        frame_words: 1,
        response: cmd::READY,
        readouts,
        next_readout: 0,
        current: None,
        queue: VecDeque::new(),
        k: 0,
        polls_per_sample: 2,
        poll_count: 0,
        drdy_low: false,
        trigger_gap: 3,
        trigger_count: 0,
        idle_value: [123, -456],
        injects,
        violations: Vec::new(),
        samples_read: vec![0; n],
        idle_reads: 0,
        frames: 0,
        idle_toggle: false,
    }));
    (
        m.clone(),
        SimSpi(m.clone()),
        SimDrdy(m.clone()),
        SimTrigger(m),
    )
}

/// Registers as the model holds them (to check the configuration).
pub fn registers(m: &Rc<RefCell<Model>>) -> [u8; 0x20] {
    m.borrow().regs
}

/// A link to the edge with back-pressure: takes at most `per_write` bytes per call, is
/// ready on one poll in `ready_every`, and fails after `fail_after` bytes if set.
#[derive(Debug, Default)]
pub struct SimLink {
    pub out: Vec<u8>,
    pub per_write: usize,
    pub ready_every: u32,
    pub polls: u32,
    pub fail_after: Option<usize>,
    pub writes: usize,
}

impl SimLink {
    pub fn new(per_write: usize, ready_every: u32) -> Self {
        Self {
            per_write,
            ready_every,
            ..Self::default()
        }
    }
}

/// The link's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown;

impl std::fmt::Display for LinkDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link down")
    }
}

impl std::error::Error for LinkDown {}

impl embedded_io::Error for LinkDown {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}

impl embedded_io::ErrorType for SimLink {
    type Error = LinkDown;
}

impl embedded_io::Write for SimLink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if let Some(limit) = self.fail_after {
            if self.out.len() >= limit {
                return Err(LinkDown);
            }
        }
        assert!(!buf.is_empty(), "write of nothing");
        self.writes += 1;
        let n = buf.len().min(self.per_write.max(1));
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_io::WriteReady for SimLink {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        self.polls += 1;
        Ok(self.ready_every <= 1 || self.polls.is_multiple_of(self.ready_every))
    }
}
