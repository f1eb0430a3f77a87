//! Which rows of the transposed spectrum a pruned 2-D FFT computes.

use crate::error::Result;
use crate::real::Real;
use crate::shape::{check_len, Shape};
use core::ops::Range;

/// Bits per word of [`ActiveRows`].
const WORD_BITS: usize = u64::BITS as usize;
/// Words of [`ActiveRows`]: one bit per possible row, `Shape::MAX_SIDE = 512` rows.
const WORDS: usize = Shape::MAX_SIDE.div_ceil(WORD_BITS);

/// A set of rows of the transposed spectral layout `[n_x][n_y]` of [`super::Fft2`], that is
/// of readout frequencies `kx` (one row holds every `ky` of one `kx`).
///
/// A Cartesian mask often leaves whole rows unsampled: a central block, or a readout window
/// (`kx_first, kx_count` of the wire protocol, DESIGN §5), samples only some `kx`. The pruned
/// transforms ([`super::Fft2::forward_to_transposed_rows`],
/// [`super::Fft2::inverse_from_transposed_rows`]) skip the second (`Y`) pass on the other
/// rows and the data movement that goes with them.
///
/// A fixed bitset of `Shape::MAX_SIDE` bits plus the row count (72 bytes, `Copy`): it lives
/// by value in a [`crate::recon::Prepared`] or an operator, so no caller buffer and no
/// allocation is needed, and it is computed once per slice from the mask.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ActiveRows {
    bits: [u64; WORDS],
    len: usize,
}

impl ActiveRows {
    /// Every row of `shape`'s transposed layout (`n_x` rows): the pruned transforms then do
    /// exactly what the unpruned ones do.
    pub fn all(shape: Shape) -> Self {
        let mut rows = Self::none(shape);
        for row in 0..rows.len {
            rows.insert(row);
        }
        rows
    }

    /// No row of `shape`'s transposed layout.
    pub fn none(shape: Shape) -> Self {
        Self {
            bits: [0; WORDS],
            len: shape.n_x(),
        }
    }

    /// The rows `kx` where the sampling weights `mask_transposed` (`[n_x][n_y]`, the layout
    /// of [`crate::dictionary::MaskedSynthesis::mask`]) are non-zero for at least one `ky`
    /// (NaN counts as non-zero). Fails if the mask does not have `n_y n_x` elements.
    pub fn of_transposed_mask<T: Real>(shape: Shape, mask_transposed: &[T]) -> Result<Self> {
        check_len("mask (transposed)", mask_transposed.len(), shape.len())?;
        let mut rows = Self::none(shape);
        for (row, weights) in mask_transposed.chunks_exact(shape.n_y()).enumerate() {
            if weights.iter().any(|&w| w != T::zero()) {
                rows.insert(row);
            }
        }
        Ok(rows)
    }

    /// Adds row `row`.
    ///
    /// # Panics
    /// If `row >= self.len()`.
    pub fn insert(&mut self, row: usize) {
        assert!(
            row < self.len,
            "row {row} outside the {} rows of the set",
            self.len
        );
        self.bits[row / WORD_BITS] |= 1 << (row % WORD_BITS);
    }

    /// Whether row `row` is in the set (false for `row >= self.len()`).
    pub fn contains(&self, row: usize) -> bool {
        row < self.len && self.bits[row / WORD_BITS] & (1 << (row % WORD_BITS)) != 0
    }

    /// Number of rows of the layout the set is for (`n_x`), active or not.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a layout has at least `Shape::MIN_SIDE` rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of rows in the set.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether every row is in the set (nothing to prune).
    pub fn is_all(&self) -> bool {
        self.count() == self.len
    }

    /// The maximal runs of consecutive rows in the set, ascending. A pruned transform does
    /// one batched backend call per run.
    pub fn runs(&self) -> Runs<'_> {
        Runs {
            rows: self,
            next: 0,
        }
    }
}

/// Iterator of [`ActiveRows::runs`].
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    rows: &'a ActiveRows,
    next: usize,
}

impl Iterator for Runs<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let len = self.rows.len;
        let mut start = self.next;
        while start < len && !self.rows.contains(start) {
            start += 1;
        }
        if start == len {
            self.next = len;
            return None;
        }
        let mut end = start + 1;
        while end < len && self.rows.contains(end) {
            end += 1;
        }
        self.next = end;
        Some(start..end)
    }
}

impl core::fmt::Debug for ActiveRows {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ActiveRows")
            .field("len", &self.len)
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}
