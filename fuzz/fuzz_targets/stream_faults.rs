//! Structure-aware: the fuzz input describes a valid stream (scans, lines, faults) and a
//! list of transport faults; the oracle shared with the property tests checks that every
//! intact frame of an active scan is delivered exactly once and nothing else is.
#![no_main]

#[path = "../../crates/wire/tests/support/oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;
use oracle::{run, Op, CAP};
use sparsemap_wire::{
    heapless, EndStatus, Fault, FaultKind, Frame, Line, Samples, ScanEnd, ScanStart, VERSION,
};

/// Reads the fuzz input as a little tape of numbers (zeros when exhausted).
struct Tape<'a>(&'a [u8]);

impl Tape<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            u32::from(self.u16()) % n
        }
    }
    fn f32(&mut self) -> f32 {
        // finite values only: the oracle compares frames with ==
        let v = f32::from_bits(self.u32());
        if v.is_finite() {
            v
        } else {
            1.0
        }
    }
}

fn build(t: &mut Tape) -> (Vec<Frame<CAP>>, Vec<Op>, Vec<usize>) {
    let mut frames = Vec::new();
    let base = t.u32();
    for k in 0..1 + t.below(3) {
        let scan_id = base.wrapping_add(k);
        let n_y = 1 + t.below(8) as u16;
        let kx_count = 1 + t.below(CAP as u32) as u16;
        // The window inside a grid up to 3 columns wider, derived from the scan id rather
        // than drawn from the tape, so that existing inputs keep their meaning.
        let pad = (scan_id % 4) as u16;
        let s = ScanStart {
            version: VERSION,
            scan_id,
            n_y,
            n_x: kx_count + pad,
            n_coils: 1 + t.below(2) as u8,
            n_slices: 1 + t.below(2) as u16,
            field_mt: t.f32(),
            fov_mm: [t.f32(), t.f32()],
            kx_first: pad / 2,
            kx_count,
        };
        frames.push(Frame::ScanStart(s));
        let mut seq = 0;
        for _ in 0..t.below(12) {
            let (ky, coil, slice) = (
                t.below(s.n_y.into()) as u16,
                t.below(s.n_coils.into()) as u8,
                t.below(s.n_slices.into()) as u16,
            );
            if t.below(5) == 0 {
                frames.push(Frame::Fault(Fault {
                    scan_id,
                    kind: FaultKind::AdcBus,
                    slice,
                    coil,
                    ky,
                    detail: t.u32(),
                }));
            }
            let samples = if t.below(2) == 0 {
                let iq: Vec<[i16; 2]> = (0..s.kx_count)
                    .map(|_| [t.u16() as i16, t.u16() as i16])
                    .collect();
                Samples::I16 {
                    scale: t.f32(),
                    iq: heapless::Vec::from_slice(&iq).unwrap(),
                }
            } else {
                let iq: Vec<[f32; 2]> = (0..s.kx_count).map(|_| [t.f32(), t.f32()]).collect();
                Samples::F32 {
                    iq: heapless::Vec::from_slice(&iq).unwrap(),
                }
            };
            frames.push(Frame::Line(Line {
                scan_id,
                seq,
                slice,
                coil,
                ky,
                samples,
            }));
            seq += 1;
        }
        let status = if t.below(2) == 0 {
            EndStatus::Complete
        } else {
            EndStatus::Aborted
        };
        frames.push(Frame::ScanEnd(ScanEnd {
            scan_id,
            lines_sent: seq,
            status,
        }));
    }
    let mut ops = Vec::new();
    for _ in 0..t.below(8) {
        let i = t.u16() as usize;
        ops.push(match t.below(6) {
            0 => Op::Drop(i),
            1 => Op::Duplicate(i),
            2 => Op::Swap(i),
            3 => Op::Truncate(i, t.u16() as usize),
            4 => {
                let n = t.below(300) as usize;
                Op::Junk(i, (0..n).map(|_| t.u8()).collect())
            }
            _ => Op::Flip(t.u32() as usize, t.u8()),
        });
    }
    let chunks = (0..1 + t.below(6)).map(|_| t.below(80) as usize).collect();
    (frames, ops, chunks)
}

fuzz_target!(|data: &[u8]| {
    let mut tape = Tape(data);
    let (frames, ops, chunks) = build(&mut tape);
    if let Err(msg) = run(&frames, &ops, &chunks) {
        panic!("{msg}");
    }
});
