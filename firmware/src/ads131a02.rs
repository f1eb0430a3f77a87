//! Driver for the TI **ADS131A02**: 2-channel, simultaneous-sampling, 24-bit ΔΣ ADC with an
//! SPI interface and a data-ready (`DRDY`) output, up to 128 kSPS. Channel 1 digitises the
//! in-phase and channel 2 the quadrature output of the receive chain's analog I/Q
//! demodulator, so one conversion is one complex k-space sample.
//!
//! Hardware mode pins, as this driver assumes them (data sheet SBAS590, "Interface modes"):
//!
//! | pin | level | meaning |
//! |-----|-------|---------|
//! | `M0` | IOVDD | asynchronous interrupt mode: the ADC converts continuously and pulls `DRDY` low when a conversion is ready; the host reads it over SPI |
//! | `M1` | floating | 16-bit device words: each channel is the 16 MSBs of the conversion (two's complement, `0x7FFF` = +FS, `0x8000` = −FS) |
//! | `M2` | GND | Hamming code off |
//!
//! SPI mode 1 (CPOL 0, CPHA 1), MSB first, up to 25 MHz; `/CS` framed by the `SpiDevice`.
//!
//! Protocol: every SPI frame starts with one 16-bit command word on DIN; the first word on
//! DOUT is the *response to the command of the previous frame*. With dynamic frames and CRC
//! off, a frame is 1 word while no ADC channel is enabled and 3 words (response, channel 1,
//! channel 2) once they are. Commands used (SBAS590 table "Command definitions"):
//!
//! | command | word | response (next frame) |
//! |---------|------|------------------------|
//! | `NULL` | `0x0000` | status: `0x22xx`, `xx` = `STAT_1` |
//! | `UNLOCK` | `0x0655` | `0x0655` |
//! | `RREG a` | `0x2000 \| a << 8` | `0x2000 \| a << 8 \| value` |
//! | `WREG a, d` | `0x4000 \| a << 8 \| d` | `0x2000 \| a << 8 \| d` (register read back) |
//! | `WAKEUP` | `0x0033` | `0x0033` |
//! | `LOCK` | `0x0555` | `0x0555` |
//!
//! After power-up the device answers every frame with `READY = 0xFF02` (`02` = 2 channels)
//! until it is unlocked. The configuration sequence ([`Ads131a02::configure`]) is:
//!
//! 1. `NULL` until the response is `READY` (at most [`READY_POLLS`] frames);
//! 2. `UNLOCK`, then `RREG ID_MSB` and check `ID_MSB = 0x02` (ADS131A02);
//! 3. `WREG` the registers of [`CONFIG`]: internal 2.442 V reference, high-resolution mode,
//!    `f_ICLK = f_CLKIN / 2`, `f_MOD = f_ICLK / 2`, `OSR = 32` — with the 16.384 MHz CLKIN
//!    taken from the scanner's reference clock, `f_DATA = 16.384 MHz / 2 / 2 / 32 = 128 kSPS`
//!    — and finally `ADC_ENA = 0x0F` (all channels on);
//! 4. `WAKEUP` (conversions start), `LOCK` (no accidental register writes during a scan).
//!
//! Every response is checked against the table above.
//!
//! A sample is then read, on each `DRDY` low, as one 3-word frame carrying `NULL`:
//! `[status, I, Q]`. A status word other than `0x22xx` means the frame alignment was lost;
//! a non-zero `STAT_1` means the ADC flagged a fault (e.g. `F_SPI`, bit 6); both are
//! reported, never ignored.
//!
//! Modelled from the data sheet; the register *values* are design choices for a low-field
//! receive chain. Check the frame sizes with a logic analyser before the first scan on a
//! new board.

use embedded_hal::digital::InputPin;
use embedded_hal::spi::SpiDevice;

/// Command words.
pub mod cmd {
    /// No operation; the response is the status word.
    pub const NULL: u16 = 0x0000;
    /// Leave the power-up / locked state.
    pub const UNLOCK: u16 = 0x0655;
    /// Ignore register writes until `UNLOCK`.
    pub const LOCK: u16 = 0x0555;
    /// Leave standby: conversions start.
    pub const WAKEUP: u16 = 0x0033;
    /// Response of a device in the power-up state: `0xFF00 | channel count`.
    pub const READY: u16 = 0xFF02;
    /// Read register `a`.
    pub const fn rreg(a: u8) -> u16 {
        0x2000 | ((a as u16 & 0x1F) << 8)
    }
    /// Write `d` to register `a`.
    pub const fn wreg(a: u8, d: u8) -> u16 {
        0x4000 | ((a as u16 & 0x1F) << 8) | d as u16
    }
    /// Response to `rreg(a)` / `wreg(a, d)`: the register's (new) value.
    pub const fn reg_response(a: u8, d: u8) -> u16 {
        0x2000 | ((a as u16 & 0x1F) << 8) | d as u16
    }
    /// High byte of the response to `NULL` (`REG(STAT_1)`, address 0x02).
    pub const STATUS_HI: u8 = 0x22;
}

/// Register addresses (SBAS590 register map).
pub mod reg {
    /// ID, most significant byte: number of channels (0x02 for the ADS131A02).
    pub const ID_MSB: u8 = 0x00;
    /// Fault flags; read back by every `NULL`.
    pub const STAT_1: u8 = 0x02;
    /// Analog system: `VNCPEN`, `HRM`, `VREF_4V`, `INT_REFEN`, `COMP_TH`.
    pub const A_SYS_CFG: u8 = 0x0B;
    /// Digital system: watchdog, CRC, frame mode.
    pub const D_SYS_CFG: u8 = 0x0C;
    /// Clock source and `CLK_DIV`.
    pub const CLK1: u8 = 0x0D;
    /// `ICLK_DIV` and `OSR`.
    pub const CLK2: u8 = 0x0E;
    /// Channel enable.
    pub const ADC_ENA: u8 = 0x0F;
}

/// Expected `ID_MSB` of an ADS131A02.
pub const ID_ADS131A02: u8 = 0x02;

/// `NULL` frames to wait for `READY` after power-up before giving up.
pub const READY_POLLS: u32 = 1000;

/// The register writes of [`Ads131a02::configure`], in order (`ADC_ENA` last: from the
/// next frame on, frames are 3 words).
pub const CONFIG: [(u8, u8); 5] = [
    // HRM = 1 (high resolution), bit 5 reserved = 1, INT_REFEN = 1 (2.442 V internal
    // reference), negative charge pump off (inputs stay within the supplies).
    (reg::A_SYS_CFG, 0x68),
    // Reset default: watchdog off, dynamic frames, CRC off, default DONE/Hi-Z delays.
    (reg::D_SYS_CFG, 0x3C),
    // CLKSRC = 0 (CLKIN pin), CLK_DIV = 2: f_ICLK = 16.384 MHz / 2 = 8.192 MHz.
    (reg::CLK1, 0x02),
    // ICLK_DIV = 2 (f_MOD = 4.096 MHz), OSR = 32: 128 kSPS.
    (reg::CLK2, 0x2F),
    // All channels powered up.
    (reg::ADC_ENA, 0x0F),
];

/// Output data rate with [`CONFIG`] and a 16.384 MHz CLKIN, samples per second.
pub const SAMPLE_RATE_HZ: u32 = 128_000;

/// Full scale of the 16-bit word with the internal reference at gain 1: ±2.442 V.
pub const FULL_SCALE_V: f32 = 2.442;

/// What went wrong talking to the ADC. Generic over the SPI bus error `S` and the pin
/// error `P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AdcError<S, P> {
    /// The SPI bus failed.
    Spi(S),
    /// Reading `DRDY` failed.
    Pin(P),
    /// A response word was not the expected one (configuration), or a data frame's
    /// status word was not `0x22xx` (alignment lost). Holds the word received.
    Response(u16),
    /// The status register flagged a fault. Holds `STAT_1`.
    Status(u8),
    /// The device never reported `READY`, or `DRDY` never went low in time.
    Timeout,
}

/// One conversion: the in-phase and quadrature codes.
pub type IqSample = [i16; 2];

/// The ADC on its SPI device, with its `DRDY` pin.
///
/// Memory: the two peripherals, one byte of state. No buffers.
pub struct Ads131a02<SPI, DRDY> {
    spi: SPI,
    drdy: DRDY,
    /// Words per frame: 1 until the channels are enabled, 3 after.
    frame_words: u8,
    configured: bool,
}

impl<SPI: SpiDevice, DRDY: InputPin> Ads131a02<SPI, DRDY> {
    /// Wrap the peripherals; the device is assumed freshly powered (or reset).
    pub fn new(spi: SPI, drdy: DRDY) -> Self {
        Self {
            spi,
            drdy,
            frame_words: 1,
            configured: false,
        }
    }

    /// Give the peripherals back.
    pub fn release(self) -> (SPI, DRDY) {
        (self.spi, self.drdy)
    }

    /// Whether [`Self::configure`] succeeded.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// One SPI frame carrying `command`; returns the response word (to the previous frame's
    /// command) and, in 3-word frames, the two channel words.
    fn frame(
        &mut self,
        command: u16,
    ) -> Result<(u16, IqSample), AdcError<SPI::Error, DRDY::Error>> {
        let mut buf = [0u8; 6];
        buf[..2].copy_from_slice(&command.to_be_bytes());
        let n = 2 * self.frame_words as usize;
        self.spi
            .transfer_in_place(&mut buf[..n])
            .map_err(AdcError::Spi)?;
        let word = |i: usize| u16::from_be_bytes([buf[2 * i], buf[2 * i + 1]]);
        let iq = if self.frame_words == 3 {
            [word(1) as i16, word(2) as i16]
        } else {
            [0, 0]
        };
        Ok((word(0), iq))
    }

    /// Send `command` and require that the response to the *previous* command is `expect`.
    fn command(
        &mut self,
        command: u16,
        expect: u16,
    ) -> Result<(), AdcError<SPI::Error, DRDY::Error>> {
        let (resp, _) = self.frame(command)?;
        if resp == expect {
            Ok(())
        } else {
            Err(AdcError::Response(resp))
        }
    }

    /// Run the power-up configuration sequence (see the module docs). On success the ADC
    /// converts continuously at [`SAMPLE_RATE_HZ`] and `DRDY` pulses once per conversion.
    pub fn configure(&mut self) -> Result<(), AdcError<SPI::Error, DRDY::Error>> {
        self.configured = false;
        self.frame_words = 1;
        // 1. Wait for READY (the response to our NULLs, or to nothing on the first frame).
        let mut ready = false;
        for _ in 0..READY_POLLS {
            if self.frame(cmd::NULL)?.0 == cmd::READY {
                ready = true;
                break;
            }
        }
        if !ready {
            return Err(AdcError::Timeout);
        }
        // 2. UNLOCK (response: READY, to our last NULL), then RREG ID_MSB (response: the
        //    UNLOCK acknowledgement).
        self.command(cmd::UNLOCK, cmd::READY)?;
        self.command(cmd::rreg(reg::ID_MSB), cmd::UNLOCK)?;
        // 3. The register writes; each response acknowledges the previous command.
        let mut expect = cmd::reg_response(reg::ID_MSB, ID_ADS131A02);
        for (a, d) in CONFIG {
            self.command(cmd::wreg(a, d), expect)?;
            expect = cmd::reg_response(a, d);
        }
        // ADC_ENA is written: frames are 3 words from now on.
        self.frame_words = 3;
        // 4. WAKEUP, LOCK, and a NULL to collect LOCK's acknowledgement.
        self.command(cmd::WAKEUP, expect)?;
        self.command(cmd::LOCK, cmd::WAKEUP)?;
        self.command(cmd::NULL, cmd::LOCK)?;
        self.configured = true;
        Ok(())
    }

    /// `true` when a conversion is ready (`DRDY` low).
    pub fn data_ready(&mut self) -> Result<bool, AdcError<SPI::Error, DRDY::Error>> {
        self.drdy.is_low().map_err(AdcError::Pin)
    }

    /// Read the ready conversion (call after [`Self::data_ready`] returned `true`).
    pub fn read_sample(&mut self) -> Result<IqSample, AdcError<SPI::Error, DRDY::Error>> {
        let (status, iq) = self.frame(cmd::NULL)?;
        let [hi, stat_1] = status.to_be_bytes();
        if hi != cmd::STATUS_HI {
            return Err(AdcError::Response(status));
        }
        if stat_1 != 0 {
            return Err(AdcError::Status(stat_1));
        }
        Ok(iq)
    }
}
