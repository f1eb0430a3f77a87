//! Two-dimensional FFTs over pluggable one-dimensional backends.
//!
//! Conventions (DESIGN §3.2): the centred unitary transform is
//! `F x = fftshift(fft2(ifftshift(x))) / sqrt(N)`. For sides that are multiples of four this
//! equals `C · fft2(C · x) / sqrt(N)` *at the same array positions*, where
//! `C(y, x) = (-1)^(y + x)` (a checkerboard). [`CentredFourier`](crate::ops::CentredFourier)
//! uses that identity; the solver goes one step further and works on `C`-modulated
//! variables so that its loop contains no modulation at all.
//!
//! [`Fft2`] computes *unnormalised* 2-D DFTs `Φ` (and `Φ^H`, the unnormalised inverse) with
//! the spectrum in the **transposed layout** `[n_x][n_y]`: a row pass, one cache-blocked
//! transpose, and a second row pass. Keeping k-space transposed inside the solver saves the
//! second transpose of every FFT; only the solver's entry and exit convert layouts.
//!
//! **Pruning** (DESIGN §3.5): a transposed row holds every `ky` of one readout frequency
//! `kx`. When a Cartesian mask samples no `ky` of a `kx`, the solver never needs that row:
//! its forward values are multiplied by a zero mask and its adjoint input is zero. The
//! `*_rows` methods take the [`ActiveRows`] to compute and skip the `Y` pass (and the
//! transpose traffic) of the others; on the rows they compute, and on the whole inverse,
//! they give the same values as the unpruned methods.

mod micro;
mod rows;
#[cfg(feature = "std")]
mod rust;

pub use micro::MicroFft;
pub use rows::{ActiveRows, Runs};
#[cfg(feature = "std")]
pub use rust::RustFft;

use crate::error::Result;
use crate::real::Real;
use crate::shape::{check_capacity, check_len, Shape};
use core::ops::Range;
use num_complex::Complex;

/// Which side of the grid a batch of 1-D transforms runs along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Transforms of length `n_x`.
    X,
    /// Transforms of length `n_y`.
    Y,
}

/// Direction of a 1-D transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `X[k] = sum_n x[n] exp(-2 pi i k n / len)`.
    Forward,
    /// `x[n] = sum_k X[k] exp(+2 pi i k n / len) / inverse_divisor(axis)`.
    Inverse,
}

/// Batched 1-D FFTs of the two lengths of one [`Shape`], planned once.
///
/// Implementations must not allocate in `rows_*`; they get `scratch_len()` elements of
/// scratch whose contents on entry are arbitrary. A plan is shared by the threads of a
/// multi-threaded solve ([`crate::fista::Executor`]), hence `Sync`.
pub trait FftBackend<T: Real>: Sync {
    fn shape(&self) -> Shape;
    /// Scratch (complex elements) that `rows_in_place` and `rows_out_of_place` need.
    fn scratch_len(&self) -> usize;
    /// Transforms every consecutive run of `len(axis)` elements of `data`, in place.
    fn rows_in_place(
        &self,
        axis: Axis,
        dir: Direction,
        data: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    );
    /// Transforms every run of `input` into `output` (same length); `input` is untouched.
    fn rows_out_of_place(
        &self,
        axis: Axis,
        dir: Direction,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    );
    /// What the backend's inverse already divides by along `axis`: 1 for an unnormalised
    /// inverse (rustfft), `len` for microfft's `ifft_N`.
    fn inverse_divisor(&self, axis: Axis) -> T;
}

/// Unnormalised 2-D DFTs with the spectrum in the transposed layout; see the module docs.
#[derive(Debug, Clone)]
pub struct Fft2<B> {
    backend: B,
    shape: Shape,
}

impl<B> Fft2<B> {
    pub fn new<T: Real>(backend: B) -> Self
    where
        B: FftBackend<T>,
    {
        let shape = backend.shape();
        Self { backend, shape }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Scratch (complex elements) needed by [`Self::forward_to_transposed`] and
    /// [`Self::inverse_from_transposed`]: one grid plus the backend's scratch.
    pub fn scratch_len<T: Real>(&self) -> usize
    where
        B: FftBackend<T>,
    {
        self.shape.len() + self.backend.scratch_len()
    }

    /// `output = transpose(Φ input)`: `input` natural `[n_y][n_x]`, `output` transposed
    /// `[n_x][n_y]`, unnormalised. `input` is not modified.
    ///
    /// # Panics
    /// If a slice is shorter than stated (a programming error; public entry points validate).
    pub fn forward_to_transposed<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) where
        B: FftBackend<T>,
    {
        let n = self.shape.len();
        let (rows, fft_scratch) = scratch.split_at_mut(n);
        self.backend
            .rows_out_of_place(Axis::X, Direction::Forward, &input[..n], rows, fft_scratch);
        transpose(rows, &mut output[..n], self.shape.n_y(), self.shape.n_x());
        self.backend
            .rows_in_place(Axis::Y, Direction::Forward, &mut output[..n], fft_scratch);
    }

    /// `output = Φ^H(transpose⁻¹ input) / inverse_divisor()`: `input` transposed
    /// `[n_x][n_y]`, `output` natural `[n_y][n_x]`. `input` is not modified.
    pub fn inverse_from_transposed<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) where
        B: FftBackend<T>,
    {
        let n = self.shape.len();
        let (rows, fft_scratch) = scratch.split_at_mut(n);
        self.backend
            .rows_out_of_place(Axis::Y, Direction::Inverse, &input[..n], rows, fft_scratch);
        transpose(rows, &mut output[..n], self.shape.n_x(), self.shape.n_y());
        self.backend
            .rows_in_place(Axis::X, Direction::Inverse, &mut output[..n], fft_scratch);
    }

    /// [`Self::forward_to_transposed`] on the transposed rows in `rows` only: for each `kx`
    /// in `rows`, `output[kx][..]` is row `kx` of `transpose(Φ input)`; the other rows of
    /// `output` are not written (they keep whatever they held). The `X` pass still runs over
    /// every row of `input` (each of its outputs feeds every `kx`); the transpose moves, and
    /// the `Y` pass transforms, only the rows in `rows`. Same scratch as the unpruned method.
    /// The values on the computed rows are those of [`Self::forward_to_transposed`]: the
    /// same operations run on the same numbers.
    ///
    /// # Panics
    /// If a slice is shorter than stated or `rows` is not for this grid (`rows.len() != n_x`).
    pub fn forward_to_transposed_rows<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        rows: &ActiveRows,
        scratch: &mut [Complex<T>],
    ) where
        B: FftBackend<T>,
    {
        let (n, n_y, n_x) = (self.shape.len(), self.shape.n_y(), self.shape.n_x());
        assert_eq!(rows.len(), n_x, "row set for another grid");
        let (natural_rows, fft_scratch) = scratch.split_at_mut(n);
        self.backend.rows_out_of_place(
            Axis::X,
            Direction::Forward,
            &input[..n],
            natural_rows,
            fft_scratch,
        );
        let output = &mut output[..n];
        for run in rows.runs() {
            transpose_columns(natural_rows, output, n_y, n_x, run.clone());
            self.backend.rows_in_place(
                Axis::Y,
                Direction::Forward,
                &mut output[run.start * n_y..run.end * n_y],
                fft_scratch,
            );
        }
    }

    /// [`Self::inverse_from_transposed`] of `input` with the transposed rows *not* in `rows`
    /// taken as zero (they are not read): `output = Φ^H(transpose⁻¹(R input)) /
    /// inverse_divisor()` with `R` the row selection. The `Y` pass runs on the rows in
    /// `rows` only; the transpose writes zeros for the others, whose `Y` pass would have
    /// produced exact zeros. `output` is the same as the unpruned method's on an input that
    /// is zero outside `rows` (up to the sign of exact zeros). Same scratch as the unpruned
    /// method.
    ///
    /// # Panics
    /// If a slice is shorter than stated or `rows` is not for this grid (`rows.len() != n_x`).
    pub fn inverse_from_transposed_rows<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        rows: &ActiveRows,
        scratch: &mut [Complex<T>],
    ) where
        B: FftBackend<T>,
    {
        let (n, n_y, n_x) = (self.shape.len(), self.shape.n_y(), self.shape.n_x());
        assert_eq!(rows.len(), n_x, "row set for another grid");
        let (spectral_rows, fft_scratch) = scratch.split_at_mut(n);
        for run in rows.runs() {
            let span = run.start * n_y..run.end * n_y;
            self.backend.rows_out_of_place(
                Axis::Y,
                Direction::Inverse,
                &input[span.clone()],
                &mut spectral_rows[span],
                fft_scratch,
            );
        }
        transpose_rows_or_zero(spectral_rows, &mut output[..n], n_x, n_y, rows);
        self.backend
            .rows_in_place(Axis::X, Direction::Inverse, &mut output[..n], fft_scratch);
    }

    /// `data <- transpose(Φ data)` with the `Y` pass on the transposed rows in `rows` only:
    /// [`Self::forward_to_transposed_rows`] on one buffer. The rows of the result not in
    /// `rows` hold the `X` pass's values, not the spectrum's. On a square grid the transpose
    /// swaps in place and `scratch` needs only the backend's part; otherwise it goes through
    /// the grid in `scratch` ([`Self::scratch_len`]).
    ///
    /// Why: the solver's forward block (`apply_block_add` after the update) no longer needs
    /// its input, and with one grid per transform instead of two, the buffers every filter
    /// reuses (DESIGN §3.5, "Memory traffic") stay within a 2 MiB L2 at 256².
    ///
    /// # Panics
    /// If a slice is shorter than stated or `rows` is not for this grid (`rows.len() != n_x`).
    pub fn forward_in_place_rows<T: Real>(
        &self,
        data: &mut [Complex<T>],
        rows: &ActiveRows,
        scratch: &mut [Complex<T>],
    ) where
        B: FftBackend<T>,
    {
        let (n, n_y, n_x) = (self.shape.len(), self.shape.n_y(), self.shape.n_x());
        assert_eq!(rows.len(), n_x, "row set for another grid");
        let data = &mut data[..n];
        let (grid, fft_scratch) = self.split_in_place_scratch(scratch);
        self.backend
            .rows_in_place(Axis::X, Direction::Forward, data, fft_scratch);
        transpose_through(data, grid, n_y, n_x);
        for run in rows.runs() {
            self.backend.rows_in_place(
                Axis::Y,
                Direction::Forward,
                &mut data[run.start * n_y..run.end * n_y],
                fft_scratch,
            );
        }
    }

    /// `data <- Φ^H(transpose⁻¹(R data)) / inverse_divisor()`: [`Self::inverse_from_transposed_rows`]
    /// on one buffer. The transposed rows not in `rows` are set to zero first (their `Y`
    /// pass would give exact zeros and is skipped). Scratch as [`Self::forward_in_place_rows`].
    ///
    /// # Panics
    /// If a slice is shorter than stated or `rows` is not for this grid (`rows.len() != n_x`).
    pub fn inverse_in_place_rows<T: Real>(
        &self,
        data: &mut [Complex<T>],
        rows: &ActiveRows,
        scratch: &mut [Complex<T>],
    ) where
        B: FftBackend<T>,
    {
        let (n, n_y, n_x) = (self.shape.len(), self.shape.n_y(), self.shape.n_x());
        assert_eq!(rows.len(), n_x, "row set for another grid");
        let data = &mut data[..n];
        let (grid, fft_scratch) = self.split_in_place_scratch(scratch);
        let mut computed = 0;
        for run in rows.runs() {
            data[computed * n_y..run.start * n_y].fill(Complex::new(T::zero(), T::zero()));
            self.backend.rows_in_place(
                Axis::Y,
                Direction::Inverse,
                &mut data[run.start * n_y..run.end * n_y],
                fft_scratch,
            );
            computed = run.end;
        }
        data[computed * n_y..].fill(Complex::new(T::zero(), T::zero()));
        transpose_through(data, grid, n_x, n_y);
        self.backend
            .rows_in_place(Axis::X, Direction::Inverse, data, fft_scratch);
    }

    /// Scratch of the in-place transforms: a grid for the transpose unless the grid is
    /// square, then the backend's scratch.
    #[allow(clippy::type_complexity)]
    fn split_in_place_scratch<'s, T: Real>(
        &self,
        scratch: &'s mut [Complex<T>],
    ) -> (Option<&'s mut [Complex<T>]>, &'s mut [Complex<T>])
    where
        B: FftBackend<T>,
    {
        if self.shape.n_y() == self.shape.n_x() {
            (None, scratch)
        } else {
            let (grid, rest) = scratch.split_at_mut(self.shape.len());
            (Some(grid), rest)
        }
    }

    /// Checked variant of [`Self::forward_to_transposed_rows`].
    pub fn try_forward_to_transposed_rows<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        rows: &ActiveRows,
        scratch: &mut [Complex<T>],
    ) -> Result<()>
    where
        B: FftBackend<T>,
    {
        self.check(input.len(), output.len(), scratch.len())?;
        check_len("fft row set", rows.len(), self.shape.n_x())?;
        self.forward_to_transposed_rows(input, output, rows, scratch);
        Ok(())
    }

    /// Checked variant of [`Self::inverse_from_transposed_rows`].
    pub fn try_inverse_from_transposed_rows<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        rows: &ActiveRows,
        scratch: &mut [Complex<T>],
    ) -> Result<()>
    where
        B: FftBackend<T>,
    {
        self.check(input.len(), output.len(), scratch.len())?;
        check_len("fft row set", rows.len(), self.shape.n_x())?;
        self.inverse_from_transposed_rows(input, output, rows, scratch);
        Ok(())
    }

    /// What [`Self::inverse_from_transposed`] divides `Φ^H` by (1 for rustfft, `N` for microfft).
    pub fn inverse_divisor<T: Real>(&self) -> T
    where
        B: FftBackend<T>,
    {
        self.backend.inverse_divisor(Axis::X) * self.backend.inverse_divisor(Axis::Y)
    }

    /// Checked variant of [`Self::forward_to_transposed`] for callers outside the solver.
    pub fn try_forward_to_transposed<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) -> Result<()>
    where
        B: FftBackend<T>,
    {
        self.check(input.len(), output.len(), scratch.len())?;
        self.forward_to_transposed(input, output, scratch);
        Ok(())
    }

    /// Checked variant of [`Self::inverse_from_transposed`].
    pub fn try_inverse_from_transposed<T: Real>(
        &self,
        input: &[Complex<T>],
        output: &mut [Complex<T>],
        scratch: &mut [Complex<T>],
    ) -> Result<()>
    where
        B: FftBackend<T>,
    {
        self.check(input.len(), output.len(), scratch.len())?;
        self.inverse_from_transposed(input, output, scratch);
        Ok(())
    }

    fn check<T: Real>(&self, input: usize, output: usize, scratch: usize) -> Result<()>
    where
        B: FftBackend<T>,
    {
        check_len("fft input", input, self.shape.len())?;
        check_len("fft output", output, self.shape.len())?;
        check_capacity("fft scratch", scratch, self.scratch_len())
    }
}

/// Edge of the square tiles the transpose walks; 16 complex f32 = two cache lines per row.
const TRANSPOSE_TILE: usize = 16;

/// `output[c][r] = input[r][c]` for a `rows × cols` row-major `input`, tile by tile so that
/// both sides stay in cache.
pub fn transpose<E: Copy>(input: &[E], output: &mut [E], rows: usize, cols: usize) {
    assert_eq!(input.len(), rows * cols);
    assert_eq!(output.len(), rows * cols);
    for row_tile in (0..rows).step_by(TRANSPOSE_TILE) {
        let row_end = (row_tile + TRANSPOSE_TILE).min(rows);
        for col_tile in (0..cols).step_by(TRANSPOSE_TILE) {
            let col_end = (col_tile + TRANSPOSE_TILE).min(cols);
            for r in row_tile..row_end {
                let src = &input[r * cols + col_tile..r * cols + col_end];
                for (offset, &value) in src.iter().enumerate() {
                    output[(col_tile + offset) * rows + r] = value;
                }
            }
        }
    }
}

/// `data <- transpose(data)` for a `rows × cols` row-major `data`: swapped in place when
/// there is no `grid` (square grids), else through `grid` and copied back.
fn transpose_through<E: Copy>(data: &mut [E], grid: Option<&mut [E]>, rows: usize, cols: usize) {
    match grid {
        None => transpose_square_in_place(data, rows),
        Some(grid) => {
            transpose(data, grid, rows, cols);
            data.copy_from_slice(grid);
        }
    }
}

/// `data[c][r] <-> data[r][c]` for a `side × side` row-major `data`: the tiles above the
/// diagonal swapped with their mirror tiles, so both stay in cache.
pub fn transpose_square_in_place<E: Copy>(data: &mut [E], side: usize) {
    assert_eq!(data.len(), side * side);
    for row_tile in (0..side).step_by(TRANSPOSE_TILE) {
        let row_end = (row_tile + TRANSPOSE_TILE).min(side);
        for col_tile in (row_tile..side).step_by(TRANSPOSE_TILE) {
            let col_end = (col_tile + TRANSPOSE_TILE).min(side);
            for r in row_tile..row_end {
                // On the diagonal tile only the elements right of the diagonal swap.
                let first = if col_tile == row_tile {
                    r + 1
                } else {
                    col_tile
                };
                for c in first..col_end {
                    data.swap(r * side + c, c * side + r);
                }
            }
        }
    }
}

/// `output[c][r] = input[r][c]` for the columns `c` in `columns` only (the rows of `output`
/// outside `columns` are not written); `input` is `rows × cols` row-major. Tiled like
/// [`transpose`].
fn transpose_columns<E: Copy>(
    input: &[E],
    output: &mut [E],
    rows: usize,
    cols: usize,
    columns: Range<usize>,
) {
    assert_eq!(input.len(), rows * cols);
    assert_eq!(output.len(), rows * cols);
    assert!(columns.end <= cols);
    for row_tile in (0..rows).step_by(TRANSPOSE_TILE) {
        let row_end = (row_tile + TRANSPOSE_TILE).min(rows);
        for col_tile in columns.clone().step_by(TRANSPOSE_TILE) {
            let col_end = (col_tile + TRANSPOSE_TILE).min(columns.end);
            for r in row_tile..row_end {
                let src = &input[r * cols + col_tile..r * cols + col_end];
                for (offset, &value) in src.iter().enumerate() {
                    output[(col_tile + offset) * rows + r] = value;
                }
            }
        }
    }
}

/// `output[c][r] = input[r][c]` for the rows `r` in `active`, and `zero` for the others
/// (whose `input` is not read); `input` is `rows × cols` row-major. Tiled like [`transpose`].
fn transpose_rows_or_zero<T: Real>(
    input: &[Complex<T>],
    output: &mut [Complex<T>],
    rows: usize,
    cols: usize,
    active: &ActiveRows,
) {
    assert_eq!(input.len(), rows * cols);
    assert_eq!(output.len(), rows * cols);
    assert_eq!(active.len(), rows);
    let zero = Complex::new(T::zero(), T::zero());
    for row_tile in (0..rows).step_by(TRANSPOSE_TILE) {
        let row_end = (row_tile + TRANSPOSE_TILE).min(rows);
        for col_tile in (0..cols).step_by(TRANSPOSE_TILE) {
            let col_end = (col_tile + TRANSPOSE_TILE).min(cols);
            for r in row_tile..row_end {
                if active.contains(r) {
                    let src = &input[r * cols + col_tile..r * cols + col_end];
                    for (offset, &value) in src.iter().enumerate() {
                        output[(col_tile + offset) * rows + r] = value;
                    }
                } else {
                    for c in col_tile..col_end {
                        output[c * rows + r] = zero;
                    }
                }
            }
        }
    }
}
