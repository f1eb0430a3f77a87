//! A whole simulated scan of a known k-space with `embedded-hal-mock` (eh1): every SPI frame
//! and every pin read the firmware makes is an expectation written out below, byte for byte
//! (independently of the driver's constants), and the bytes on the link must decode,
//! through `sparsemap-wire`, into exactly that k-space.

use embedded_hal_mock::eh1::digital::{Mock as PinMock, State as Level, Transaction as Pin};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as Spi};
use num_complex::Complex32;
use sparsemap_firmware::{Bridge, Readout, ScanPlan, Timing};
use sparsemap_wire::{Decoder, EndStatus, Frame, Samples};

const N_Y: usize = 8;
const N_X: usize = 16;
const N: usize = 16;
const E: usize = sparsemap_wire::max_encoded_len(N);
const SCALE: f32 = 1.0 / 1024.0;
/// Rows acquired, centre out.
const ROWS: [u16; 5] = [4, 3, 5, 2, 6];

/// The known k-space as ADC codes: a centred blob plus a ramp, full 16-bit range near DC.
fn codes(ky: usize, kx: usize) -> [i16; 2] {
    let dy = ky as f32 - (N_Y / 2) as f32;
    let dx = kx as f32 - (N_X / 2) as f32;
    let mag = 32_000.0 * (-(dy * dy + dx * dx) / 6.0).exp();
    let phase = 0.3 * dx - 0.7 * dy;
    [
        (mag * phase.cos()).round() as i16,
        (mag * phase.sin()).round() as i16 - kx as i16,
    ]
}

/// The k-space the edge should reconstruct into: `scale * code` on sampled rows, 0 elsewhere.
fn expected_kspace() -> Vec<Complex32> {
    let mut k = vec![Complex32::new(0.0, 0.0); N_Y * N_X];
    for &ky in &ROWS {
        for kx in 0..N_X {
            let [i, q] = codes(ky as usize, kx);
            k[ky as usize * N_X + kx] = Complex32::new(SCALE * f32::from(i), SCALE * f32::from(q));
        }
    }
    k
}

/// One SPI frame: `tx` on DIN, `rx` on DOUT, inside one chip-select.
fn frame(tx: &[u8], rx: &[u8]) -> [Spi<u8>; 3] {
    [
        Spi::transaction_start(),
        Spi::transfer_in_place(tx.to_vec(), rx.to_vec()),
        Spi::transaction_end(),
    ]
}

/// The ADS131A02 power-up sequence, as it appears on the bus.
fn configuration() -> Vec<Spi<u8>> {
    let z = [0u8; 4];
    let three = |cmd: [u8; 2], resp: [u8; 2]| {
        frame(
            &[cmd[0], cmd[1], z[0], z[1], z[2], z[3]],
            &[resp[0], resp[1], 0, 0, 0, 0],
        )
    };
    let mut t = Vec::new();
    t.extend(frame(&[0x00, 0x00], &[0x00, 0x00])); // NULL: device still in reset
    t.extend(frame(&[0x00, 0x00], &[0xFF, 0x02])); // NULL: READY, 2 channels
    t.extend(frame(&[0x06, 0x55], &[0xFF, 0x02])); // UNLOCK
    t.extend(frame(&[0x20, 0x00], &[0x06, 0x55])); // RREG ID_MSB       <- UNLOCK ack
    t.extend(frame(&[0x4B, 0x68], &[0x20, 0x02])); // WREG A_SYS_CFG    <- ID_MSB = 0x02
    t.extend(frame(&[0x4C, 0x3C], &[0x2B, 0x68])); // WREG D_SYS_CFG    <- A_SYS_CFG read back
    t.extend(frame(&[0x4D, 0x02], &[0x2C, 0x3C])); // WREG CLK1         <- D_SYS_CFG
    t.extend(frame(&[0x4E, 0x2F], &[0x2D, 0x02])); // WREG CLK2         <- CLK1
    t.extend(frame(&[0x4F, 0x0F], &[0x2E, 0x2F])); // WREG ADC_ENA      <- CLK2
    t.extend(three([0x00, 0x33], [0x2F, 0x0F])); // WAKEUP (3-word frames now) <- ADC_ENA
    t.extend(three([0x05, 0x55], [0x00, 0x33])); // LOCK               <- WAKEUP ack
    t.extend(three([0x00, 0x00], [0x05, 0x55])); // NULL               <- LOCK ack
    t
}

/// A data frame carrying `NULL`, answered with status `0x2200` and the sample.
fn sample(iq: [i16; 2]) -> [Spi<u8>; 3] {
    let [i0, i1] = iq[0].to_be_bytes();
    let [q0, q1] = iq[1].to_be_bytes();
    frame(&[0; 6], &[0x22, 0x00, i0, i1, q0, q1])
}

/// A link that takes 7 bytes per write (partial writes every time) and is always ready.
#[derive(Default)]
struct Link(Vec<u8>);
impl embedded_io::ErrorType for Link {
    type Error = core::convert::Infallible;
}
impl embedded_io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(7);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
impl embedded_io::WriteReady for Link {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[test]
fn mocked_scan_decodes_into_exactly_the_known_kspace() {
    let mut spi_t = configuration();
    let mut drdy_t = Vec::new();
    let mut trig_t = vec![Pin::get(Level::Low)]; // level sampled at ScanStart
    for (r, &ky) in ROWS.iter().enumerate() {
        // Waiting for the trigger: one idle conversion arrives and is drained (readout 0),
        // then two polls with the trigger low, then the rising edge.
        if r == 0 {
            drdy_t.push(Pin::get(Level::Low));
            spi_t.extend(sample([7, -7]));
            trig_t.push(Pin::get(Level::Low));
        }
        for level in [Level::Low, Level::High] {
            drdy_t.push(Pin::get(Level::High));
            trig_t.push(Pin::get(level));
        }
        for kx in 0..N_X {
            if kx % 5 == 1 {
                drdy_t.push(Pin::get(Level::High)); // conversion not ready yet: poll again
            }
            drdy_t.push(Pin::get(Level::Low));
            spi_t.extend(sample(codes(ky as usize, kx)));
        }
    }
    let spi = SpiMock::new(&spi_t);
    let drdy = PinMock::new(&drdy_t);
    let trigger = PinMock::new(&trig_t);

    let readouts: Vec<Readout> = ROWS
        .iter()
        .map(|&ky| Readout {
            slice: 0,
            coil: 0,
            ky,
        })
        .collect();
    let plan = ScanPlan {
        scan_id: 0x5CA7,
        n_y: N_Y as u16,
        n_x: N_X as u16,
        // The whole row: the mock's SPI transactions are one per grid column.
        kx_first: 0,
        kx_count: N_X as u16,
        n_coils: 1,
        n_slices: 1,
        field_mt: 47.0,
        fov_mm: [220.0, 220.0],
        scale: SCALE,
        readouts: &readouts,
    };
    let mut bridge: Bridge<_, _, _, _, N, E, 4096> =
        Bridge::new(spi, drdy, trigger, Link::default(), Timing::default());
    let summary = bridge.run_scan(&plan).unwrap();
    assert_eq!(summary.lines_sent, ROWS.len() as u32);
    assert_eq!(summary.faults, 0);
    let (mut spi, mut drdy, mut trigger, link) = bridge.release();
    spi.done();
    drdy.done();
    trigger.done();

    // Decode what went over the link, in awkward chunks, into a k-space grid.
    let mut dec: Decoder<N, { sparsemap_wire::max_raw_len(N) }> = Decoder::new();
    let mut grid = vec![Complex32::new(0.0, 0.0); N_Y * N_X];
    let mut frames = Vec::new();
    for chunk in link.0.chunks(13) {
        dec.feed_all(chunk, |r| frames.push(r.expect("no wire errors")));
    }
    let Frame::ScanStart(start) = &frames[0] else {
        panic!("{:?}", frames[0])
    };
    assert_eq!(
        (
            start.scan_id,
            start.n_y,
            start.n_x,
            start.kx_first,
            start.kx_count,
            start.n_coils,
            start.n_slices
        ),
        (0x5CA7, 8, 16, 0, 16, 1, 1)
    );
    let mut seqs = Vec::new();
    for f in &frames[1..frames.len() - 1] {
        let Frame::Line(l) = f else { panic!("{f:?}") };
        assert!(matches!(l.samples, Samples::I16 { .. }));
        seqs.push(l.seq);
        for kx in 0..N_X {
            let [re, im] = l.samples.get(kx).unwrap();
            grid[l.ky as usize * N_X + kx] = Complex32::new(re, im);
        }
    }
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert!(
        matches!(frames.last(), Some(Frame::ScanEnd(e)) if e.lines_sent == 5 && e.status == EndStatus::Complete)
    );
    assert_eq!(
        grid,
        expected_kspace(),
        "decoded k-space differs from the scanned one"
    );
}
