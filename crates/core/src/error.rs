//! The one error type of `sparsemap-core`.

use core::fmt;

/// Everything that can go wrong in the core. Every variant is caused by input that does not
/// fit (a shape, a buffer, a value); none is raised from inside the iteration loop, which is
/// only entered once all of these checks have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// `n_y` or `n_x` is not a power of two in [`crate::Shape::MIN_SIDE`]`..=`[`crate::Shape::MAX_SIDE`].
    UnsupportedShape { n_y: usize, n_x: usize },
    /// A slice handed in has the wrong number of elements.
    LengthMismatch {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A caller-owned buffer is smaller than the `*_len()` function says it must be.
    BufferTooSmall {
        what: &'static str,
        required: usize,
        provided: usize,
    },
    /// Dictionary filters must be odd-sized squares with side `1..=`[`crate::dictionary::MAX_FILTER_SIDE`].
    InvalidFilterSize { side: usize },
    /// A dictionary must have at least one filter.
    EmptyDictionary,
    /// An input contains NaN or an infinity.
    NonFinite { what: &'static str },
    /// A sparsity level (Lambda) is negative.
    NegativeLambda,
    /// The low-pass weight is negative.
    NegativeLowpassWeight,
    /// The zero-filled image is zero at (at least) 99 % of its pixels, so the scale of
    /// DESIGN §3.6 is undefined: nothing (or almost nothing) was measured.
    NothingMeasured,
    /// No filter responds at any sampled frequency (`L = 0`): the dictionary cannot explain
    /// any of the measured data.
    NoSampledResponse,
    /// The 99th percentile of the zero-filled magnitude is positive but so small (subnormal)
    /// that the scale `1 / p99` overflows.
    ScaleOutOfRange,
    /// The background gate's threshold `kappa` must be positive.
    NonPositiveBackgroundGate,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::UnsupportedShape { n_y, n_x } => write!(
                f,
                "unsupported image size {n_y}x{n_x}: each side must be a power of two from {} to {}",
                crate::Shape::MIN_SIDE,
                crate::Shape::MAX_SIDE
            ),
            Error::LengthMismatch { what, expected, actual } => {
                write!(f, "{what} has {actual} elements, expected {expected}")
            }
            Error::BufferTooSmall { what, required, provided } => {
                write!(f, "buffer {what} holds {provided} elements, needs {required}")
            }
            Error::InvalidFilterSize { side } => write!(
                f,
                "dictionary filters are {side}x{side}; they must be odd-sized squares of side 1..={}",
                crate::dictionary::MAX_FILTER_SIDE
            ),
            Error::EmptyDictionary => write!(f, "the dictionary has no filters"),
            Error::NonFinite { what } => write!(f, "{what} contains NaN or infinite values"),
            Error::NegativeLambda => write!(f, "sparsity levels (lambda) must be >= 0"),
            Error::NegativeLowpassWeight => write!(f, "the low-pass weight must be >= 0"),
            Error::NothingMeasured => write!(
                f,
                "the zero-filled image is zero almost everywhere (99th percentile of its magnitude is 0): no data was measured"
            ),
            Error::NoSampledResponse => write!(
                f,
                "no dictionary filter responds at any sampled frequency (Lipschitz constant is 0)"
            ),
            Error::ScaleOutOfRange => write!(
                f,
                "the k-space values are too small to scale (99th percentile of the zero-filled magnitude is subnormal, 1/p99 overflows): rescale the data"
            ),
            Error::NonPositiveBackgroundGate => {
                write!(f, "the background gate's threshold must be > 0")
            }
        }
    }
}

impl core::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;
