//! std backend over `rustfft`: planned once, scratch supplied by the caller.

use super::{Axis, Direction, FftBackend};
use crate::real::Real;
use crate::shape::Shape;
use num_complex::Complex;
use rustfft::{Fft, FftNum, FftPlanner};
use std::sync::Arc;

/// rustfft plans for the two lengths of a [`Shape`], both directions. Its inverse is
/// unnormalised.
#[derive(Clone)]
pub struct RustFft<T: FftNum> {
    shape: Shape,
    forward_x: Arc<dyn Fft<T>>,
    inverse_x: Arc<dyn Fft<T>>,
    forward_y: Arc<dyn Fft<T>>,
    inverse_y: Arc<dyn Fft<T>>,
    scratch_len: usize,
}

impl<T: FftNum> core::fmt::Debug for RustFft<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RustFft")
            .field("shape", &self.shape)
            .finish()
    }
}

impl<T: FftNum + Real> RustFft<T> {
    /// Plans all four transforms (the expensive part: do it once per shape).
    pub fn new(shape: Shape) -> Self {
        let mut planner = FftPlanner::<T>::new();
        let forward_x = planner.plan_fft_forward(shape.n_x());
        let inverse_x = planner.plan_fft_inverse(shape.n_x());
        let forward_y = planner.plan_fft_forward(shape.n_y());
        let inverse_y = planner.plan_fft_inverse(shape.n_y());
        let scratch_len = [&forward_x, &inverse_x, &forward_y, &inverse_y]
            .iter()
            .map(|p| {
                p.get_inplace_scratch_len()
                    .max(p.get_immutable_scratch_len())
            })
            .max()
            .unwrap_or(0);
        Self {
            shape,
            forward_x,
            inverse_x,
            forward_y,
            inverse_y,
            scratch_len,
        }
    }

    fn plan(&self, axis: Axis, dir: Direction) -> &Arc<dyn Fft<T>> {
        match (axis, dir) {
            (Axis::X, Direction::Forward) => &self.forward_x,
            (Axis::X, Direction::Inverse) => &self.inverse_x,
            (Axis::Y, Direction::Forward) => &self.forward_y,
            (Axis::Y, Direction::Inverse) => &self.inverse_y,
        }
    }
}

impl<T: FftNum + Real> FftBackend<T> for RustFft<T> {
    fn shape(&self) -> Shape {
        self.shape
    }

    fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    fn rows_in_place(
        &self,
        axis: Axis,
        dir: Direction,
        data: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let plan = self.plan(axis, dir);
        plan.process_with_scratch(data, &mut scratch[..plan.get_inplace_scratch_len()]);
    }

    fn rows_out_of_place(
        &self,
        axis: Axis,
        dir: Direction,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) {
        let plan = self.plan(axis, dir);
        plan.process_immutable_with_scratch(
            input,
            output,
            &mut scratch[..plan.get_immutable_scratch_len()],
        );
    }

    fn inverse_divisor(&self, _axis: Axis) -> T {
        T::one()
    }
}
