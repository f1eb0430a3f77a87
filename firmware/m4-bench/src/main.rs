//! Instruction counts of the per-readout work on a Cortex-M4 (Thumb-2), in QEMU.
//!
//! ```sh
//! cd firmware/m4-bench && cargo run --release     # needs qemu-system-arm
//! ```
//!
//! QEMU runs with `-icount shift=0` (one virtual nanosecond per instruction) and SysTick on
//! the 25 MHz MPS2 system clock, so `instructions = 40 x SysTick ticks`. QEMU does not model
//! pipeline stalls or flash wait states: turn instructions into cycles with a CPI (see
//! firmware/README.md).
#![no_std]
#![no_main]

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use sparsemap_wire::{encode_line, heapless, max_encoded_len, Line, Samples};

const N: usize = 256;
const REPS: u32 = 200;
/// Instructions per SysTick tick with `-icount shift=0` and a 25 MHz SysTick clock.
const INSN_PER_TICK: u32 = 40;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

/// xorshift32.
fn rng(s: &mut u32) -> u32 {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    *s
}

fn ticks(syst: &SYST, f: &mut impl FnMut()) -> u32 {
    let t0 = SYST::get_current();
    f();
    let t1 = SYST::get_current();
    let _ = syst;
    t0.wrapping_sub(t1) & 0x00FF_FFFF // down-counter
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(0x00FF_FFFF);
    cp.SYST.clear_current();
    cp.SYST.enable_counter();

    let mut seed = 0x1234_5678u32;
    // Typical: k-space-like codes (a few large near DC, most small), like the Colin27 stream.
    let typical: heapless::Vec<[i16; 2], N> = (0..N)
        .map(|k| {
            let d = (k as i32 - 128).unsigned_abs() + 1;
            let amp = (20_000 / (d * d)).max(40) as i32;
            let r = rng(&mut seed);
            [
                ((r & 0xFFFF) as i32 % amp - amp / 2) as i16,
                (((r >> 16) as i32) % amp - amp / 2) as i16,
            ]
        })
        .collect();
    let full: heapless::Vec<[i16; 2], N> = (0..N)
        .map(|_| {
            let r = rng(&mut seed);
            [r as i16, (r >> 16) as i16]
        })
        .collect();
    // Calibration: a loop of exactly 2 instructions per iteration (subs, bne).
    // SAFETY: the asm only decrements the register it is given (declared `inout` and
    // discarded) and branches within itself; it touches no memory, no stack and no other
    // register, and the loop ends when the counter reaches zero.
    let mut calib = || unsafe {
        core::arch::asm!("1:", "subs {0}, {0}, #1", "bne 1b", inout(reg) 1_000_000u32 => _);
    };
    let t = ticks(&cp.SYST, &mut calib);
    hprintln!(
        "calibration: 2000000 instructions = {} ticks ({} instructions/tick, assumed {})",
        t,
        2_000_000 / t.max(1),
        INSN_PER_TICK
    );

    let mut buf = [0u8; max_encoded_len(N)];
    for (name, iq) in [("typical", typical), ("full-range", full)] {
        let line = Line::<N> {
            scan_id: 27,
            seq: 1000,
            slice: 0,
            coil: 0,
            ky: 128,
            samples: Samples::I16 { scale: 1e-3, iq },
        };
        let mut len = 0;
        let mut run = || {
            for _ in 0..REPS {
                len = encode_line(core::hint::black_box(&line), &mut buf)
                    .unwrap()
                    .len();
            }
        };
        let t = ticks(&cp.SYST, &mut run);
        let insn = u64::from(t) * u64::from(INSN_PER_TICK) / u64::from(REPS);
        hprintln!(
            "encode_line {} ({} bytes): {} instructions/line ({:.1}/byte)",
            name,
            len,
            insn,
            insn as f32 / len as f32
        );
    }
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}
