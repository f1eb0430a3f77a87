//! Limits on every size read from outside the process (docs/design.md §7.3). Each reader
//! checks what a file or a stream declares against these before it allocates anything for
//! it, so a crafted header costs an error message, not memory. The largest allocation they
//! admit is the `--lambda` maps file at [`MAX_FILTER_PIXELS`] (32 MiB of float32); the
//! largest plan is about 25 bytes per filter pixel (~210 MB at the budget).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest image side (`N_y`, `N_x`): the core's [`sparsemap_core::Shape::MAX_SIDE`] and the
/// wire's `MAX_N_X`.
pub const MAX_GRID_SIDE: usize = sparsemap_core::Shape::MAX_SIDE;
/// Most dictionary filters `K`.
pub const MAX_FILTERS: usize = 256;
/// Largest filter side `s` (the core's).
pub const MAX_FILTER_SIDE: usize = sparsemap_core::dictionary::MAX_FILTER_SIDE;
/// Budget of `K * N_y * N_x`: the coefficient, momentum and map buffers grow with it, about
/// 25 bytes per filter pixel (measured: K = 256 at 256², 2^24 filter pixels, peaks at 419 MB).
/// 2^23 is K = 128 at 256² or K = 32 at 512² (about 210 MB); the bundled model uses 2^21.
pub const MAX_FILTER_PIXELS: usize = 1 << 23;
/// Most FISTA iterations, from `--iterations` or a model's `sparsemap.iterations`.
pub const MAX_ITERATIONS: usize = 10_000;
/// Largest ONNX model file.
pub const MAX_MODEL_BYTES: u64 = 64 << 20;
/// Most elements in one ONNX initialiser or declared tensor shape (the bundled model's
/// largest weight has 4,608).
pub const MAX_MODEL_TENSOR_ELEMENTS: u64 = 1 << 24;
/// Largest `.npy` header (NumPy writes under 200 bytes; format 2/3 allows 4 GiB).
pub const MAX_NPY_HEADER_BYTES: usize = 64 << 10;

/// Checks `K` and the filter side of a dictionary (its budget on a grid:
/// [`check_filter_pixels`]).
pub fn check_filters(count: usize, side: usize) -> Result<()> {
    if !(1..=MAX_FILTERS).contains(&count) {
        bail!("K = {count} filters: must be 1..={MAX_FILTERS}");
    }
    if side == 0 || side > MAX_FILTER_SIDE || side.is_multiple_of(2) {
        bail!("{side}x{side} filters: the side must be odd and at most {MAX_FILTER_SIDE}");
    }
    Ok(())
}

/// `K * N_y * N_x <= MAX_FILTER_PIXELS`.
pub fn check_filter_pixels(count: usize, n_y: usize, n_x: usize) -> Result<()> {
    let pixels = count.checked_mul(n_y).and_then(|v| v.checked_mul(n_x));
    match pixels {
        Some(p) if p <= MAX_FILTER_PIXELS => Ok(()),
        _ => bail!(
            "K = {count} filters on {n_y}x{n_x} exceed the budget K * N_y * N_x <= {MAX_FILTER_PIXELS} (docs/design.md §7.3)"
        ),
    }
}

/// `1..=MAX_ITERATIONS`.
pub fn check_iterations(iterations: usize, what: &str) -> Result<()> {
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        bail!("{what} = {iterations}: must be 1..={MAX_ITERATIONS}");
    }
    Ok(())
}

/// Reads a regular file of at most `max_bytes` into memory. FIFOs, devices and directories
/// are refused (a reader must not block on them or read without end), the size is checked
/// before the buffer is reserved, and a failed reservation is an error.
pub fn read_regular_file(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot open {shown}"))?;
    if !metadata.is_file() {
        bail!("{shown}: not a regular file (a {what} must be a file, not a FIFO, device or directory)");
    }
    let len = metadata.len();
    if len > max_bytes {
        bail!("{shown}: {len} bytes is larger than any valid {what} (limit {max_bytes} bytes)");
    }
    let file = File::open(path).with_context(|| format!("cannot open {shown}"))?;
    let mut bytes = try_vec_with_capacity::<u8>(len as usize + 1)
        .with_context(|| format!("{shown}: reading {len} bytes"))?;
    // `take` bounds the read if the file grows after the size check.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {shown}"))?;
    if bytes.len() as u64 > max_bytes {
        bail!("{shown}: grew beyond {max_bytes} bytes while being read");
    }
    Ok(bytes)
}

/// An empty vector with room for `capacity` elements, or an error if the allocator refuses
/// (where `Vec::with_capacity` would abort the process).
pub fn try_vec_with_capacity<T>(capacity: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(capacity).map_err(|_| {
        anyhow::anyhow!(
            "cannot allocate {} MB",
            (capacity * std::mem::size_of::<T>()) as f64 / 1e6
        )
    })?;
    Ok(v)
}

/// `len` copies of `value`, or an error if the allocator refuses.
pub fn try_filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>> {
    let mut v = try_vec_with_capacity(len)?;
    v.resize(len, value);
    Ok(v)
}

/// Grows `v` to at least `len` elements filled with `value`, reserving fallibly (as
/// [`try_filled`]); never shrinks it.
pub fn try_grow<T: Clone>(v: &mut Vec<T>, len: usize, value: T) -> Result<()> {
    if v.len() < len {
        v.try_reserve_exact(len - v.len()).map_err(|_| {
            anyhow::anyhow!(
                "cannot allocate {} MB",
                (len * std::mem::size_of::<T>()) as f64 / 1e6
            )
        })?;
        v.resize(len, value);
    }
    Ok(())
}
