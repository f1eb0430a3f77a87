//! The floating-point types the solver runs in: `f32` on the edge, `f64` for host-side
//! reference runs.

use core::fmt::Debug;
use core::ops::{AddAssign, MulAssign, SubAssign};
use num_traits::{Float, FloatConst};

/// A real scalar: `f32` or `f64`.
pub trait Real:
    Float + FloatConst + Debug + Default + AddAssign + SubAssign + MulAssign + Send + Sync + 'static
{
    /// Converts an `f64` constant; exact for `f64`, rounded for `f32`.
    fn lit(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64_lossless(self) -> f64;
    /// Converts a 16-bit level (exact); one instruction, so loops over `u16` data vectorise.
    fn from_u16(x: u16) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn lit(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_u16(x: u16) -> Self {
        f32::from(x)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn lit(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_u16(x: u16) -> Self {
        f64::from(x)
    }
}
