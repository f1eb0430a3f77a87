//! no_std backend over `microfft` (f32 only, one function per power-of-two length).

use super::{Axis, Direction, FftBackend};
use crate::shape::Shape;
use num_complex::Complex32;

/// microfft rows for one [`Shape`]. Needs no scratch and no tables in RAM (microfft keeps
/// its twiddles in flash). Its inverse divides by the length.
#[derive(Debug, Clone, Copy)]
pub struct MicroFft {
    shape: Shape,
}

impl MicroFft {
    /// Every [`Shape`] (powers of two 4..=512) is supported: the crate is built with
    /// microfft's `size-512` feature, which includes all smaller sizes.
    pub fn new(shape: Shape) -> Self {
        Self { shape }
    }

    fn len(&self, axis: Axis) -> usize {
        match axis {
            Axis::X => self.shape.n_x(),
            Axis::Y => self.shape.n_y(),
        }
    }
}

macro_rules! dispatch {
    ($data:expr, $len:expr, $dir:expr, $( $n:literal => ($fwd:ident, $inv:ident) ),* $(,)?) => {
        match $len {
            $(
                $n => {
                    for chunk in $data.chunks_exact_mut($n) {
                        let row: &mut [Complex32; $n] = chunk.try_into().expect("chunk has the array length");
                        match $dir {
                            Direction::Forward => { let _ = microfft::complex::$fwd(row); }
                            Direction::Inverse => { let _ = microfft::inverse::$inv(row); }
                        }
                    }
                }
            )*
            other => unreachable!("Shape guarantees a power of two in 4..=512, got {other}"),
        }
    };
}

impl FftBackend<f32> for MicroFft {
    fn shape(&self) -> Shape {
        self.shape
    }

    fn scratch_len(&self) -> usize {
        0
    }

    fn rows_in_place(
        &self,
        axis: Axis,
        dir: Direction,
        data: &mut [Complex32],
        _scratch: &mut [Complex32],
    ) {
        let len = self.len(axis);
        dispatch!(data, len, dir,
            4 => (cfft_4, ifft_4),
            8 => (cfft_8, ifft_8),
            16 => (cfft_16, ifft_16),
            32 => (cfft_32, ifft_32),
            64 => (cfft_64, ifft_64),
            128 => (cfft_128, ifft_128),
            256 => (cfft_256, ifft_256),
            512 => (cfft_512, ifft_512),
        );
    }

    fn rows_out_of_place(
        &self,
        axis: Axis,
        dir: Direction,
        input: &[Complex32],
        output: &mut [Complex32],
        scratch: &mut [Complex32],
    ) {
        output.copy_from_slice(input);
        self.rows_in_place(axis, dir, output, scratch);
    }

    fn inverse_divisor(&self, axis: Axis) -> f32 {
        self.len(axis) as f32
    }
}
