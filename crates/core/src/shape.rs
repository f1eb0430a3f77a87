//! Image and k-space grid size.

use crate::error::{Error, Result};

/// An `n_y × n_x` grid (row-major, `y` = phase encode, `x` = readout; DESIGN §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    n_y: usize,
    n_x: usize,
}

impl Shape {
    /// Smallest side the core accepts. DESIGN §3.1 uses 32..=512 for images; sides down to
    /// 4 are accepted so that tests can compare against dense-matrix oracles. 4 is the
    /// smallest side for which the centred transform is `C fft C` (a multiple of 4).
    pub const MIN_SIDE: usize = 4;
    /// Largest side; the microfft backend is compiled with sizes up to 512.
    pub const MAX_SIDE: usize = 512;

    /// Checks that both sides are powers of two in `MIN_SIDE..=MAX_SIDE`.
    pub fn new(n_y: usize, n_x: usize) -> Result<Self> {
        let ok = |n: usize| n.is_power_of_two() && (Self::MIN_SIDE..=Self::MAX_SIDE).contains(&n);
        if ok(n_y) && ok(n_x) {
            Ok(Self { n_y, n_x })
        } else {
            Err(Error::UnsupportedShape { n_y, n_x })
        }
    }

    pub const fn n_y(self) -> usize {
        self.n_y
    }

    pub const fn n_x(self) -> usize {
        self.n_x
    }

    /// Number of pixels `N = n_y n_x`.
    pub const fn len(self) -> usize {
        self.n_y * self.n_x
    }

    /// Never true: a valid shape has at least `MIN_SIDE²` pixels.
    pub const fn is_empty(self) -> bool {
        false
    }

    /// Index of natural (row-major) position `(y, x)`.
    #[inline(always)]
    pub const fn natural(self, y: usize, x: usize) -> usize {
        y * self.n_x + x
    }

    /// Index of `(y, x)` in the transposed layout `[n_x][n_y]` that the solver keeps
    /// k-space in (see [`crate::fft::Fft2`]).
    #[inline(always)]
    pub const fn transposed(self, y: usize, x: usize) -> usize {
        x * self.n_y + y
    }
}

/// Checks a slice length, naming the slice in the error.
pub(crate) fn check_len(what: &'static str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}

/// Checks a caller buffer is at least `required` long.
pub(crate) fn check_capacity(what: &'static str, provided: usize, required: usize) -> Result<()> {
    if provided >= required {
        Ok(())
    } else {
        Err(Error::BufferTooSmall {
            what,
            required,
            provided,
        })
    }
}
