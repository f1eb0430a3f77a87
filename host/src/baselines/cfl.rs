//! BART's `.cfl` / `.hdr` file pair.
//!
//! Format (BART `misc/mmio.c`): `NAME.hdr` is text, a line `# Dimensions` followed by a line
//! of whitespace-separated sizes (BART writes 16; missing trailing sizes mean 1; other
//! `# ...` sections may follow and are ignored here). `NAME.cfl` is the raw data: complex64
//! values as interleaved little-endian `f32` pairs (re, im), **column-major (Fortran)
//! order**: BART's dimension 0 varies fastest.
//!
//! Layout convention of this project: our arrays are row-major `[n_y][n_x]` (x fastest),
//! so the row-major buffer is written unchanged with BART dimensions `[n_x, n_y, 1, ...]`.
//! BART then sees dim 0 = readout `x` and dim 1 = phase encode `y`, which is also BART's own
//! convention (dim 0 = read, dim 1 = phase 1), and no transpose is ever needed.
//! [`write_image`] / [`read_image`] do exactly that; [`write()`] / [`read()`] handle any dims.

use anyhow::{bail, Context, Result};
use ndarray::{Array2, ArrayView2};
use num_complex::Complex32;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Number of dimensions BART uses (`DIMS` in BART 0.8.00); headers are written with this many.
pub const BART_DIMS: usize = 16;

/// `base.hdr` and `base.cfl` for a BART file name `base` (BART names files without suffix).
pub fn paths(base: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut name = base.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    (with(".hdr"), with(".cfl"))
}

/// Writes `data` with BART dimensions `dims` (dim 0 fastest) to `base.hdr` / `base.cfl`.
/// `data.len()` must equal the product of `dims`; at most [`BART_DIMS`] dims.
pub fn write(base: &Path, dims: &[usize], data: &[Complex32]) -> Result<()> {
    if dims.len() > BART_DIMS {
        bail!("{} dims given, BART supports {BART_DIMS}", dims.len());
    }
    let count: usize = dims.iter().product();
    if count != data.len() {
        bail!(
            "{}: dims {dims:?} hold {count} values, data has {}",
            base.display(),
            data.len()
        );
    }
    let (hdr, cfl) = paths(base);
    let mut header = String::from("# Dimensions\n");
    for i in 0..BART_DIMS {
        header.push_str(&format!("{} ", dims.get(i).copied().unwrap_or(1)));
    }
    header.push('\n');
    fs::write(&hdr, header).with_context(|| format!("writing {}", hdr.display()))?;
    let file = fs::File::create(&cfl).with_context(|| format!("creating {}", cfl.display()))?;
    let mut out = BufWriter::new(file);
    for v in data {
        out.write_all(&v.re.to_le_bytes())
            .and_then(|_| out.write_all(&v.im.to_le_bytes()))
            .with_context(|| format!("writing {}", cfl.display()))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", cfl.display()))?;
    Ok(())
}

/// Reads `base.hdr` / `base.cfl`: the dimensions (trailing ones trimmed, at least one kept)
/// and the data in BART's order (dim 0 fastest).
pub fn read(base: &Path) -> Result<(Vec<usize>, Vec<Complex32>)> {
    let (hdr, cfl) = paths(base);
    let text = fs::read_to_string(&hdr).with_context(|| format!("reading {}", hdr.display()))?;
    let mut lines = text.lines();
    let mut dims: Option<Vec<usize>> = None;
    while let Some(line) = lines.next() {
        if line.trim() == "# Dimensions" {
            let sizes = lines
                .next()
                .with_context(|| format!("{}: no line after '# Dimensions'", hdr.display()))?;
            let parsed = sizes
                .split_whitespace()
                .map(|s| s.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: bad dimensions line {sizes:?}", hdr.display()))?;
            dims = Some(parsed);
            break;
        }
    }
    let mut dims = dims.with_context(|| format!("{}: no '# Dimensions' section", hdr.display()))?;
    if dims.is_empty() || dims.len() > BART_DIMS {
        bail!("{}: {} dimensions", hdr.display(), dims.len());
    }
    while dims.len() > 1 && dims.last() == Some(&1) {
        dims.pop();
    }
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("{}: dimensions {dims:?} overflow", hdr.display()))?;
    let bytes = fs::read(&cfl).with_context(|| format!("reading {}", cfl.display()))?;
    if bytes.len() != count * 8 {
        bail!(
            "{}: {} bytes, dims {dims:?} need {} (complex64)",
            cfl.display(),
            bytes.len(),
            count * 8
        );
    }
    let data = bytes
        .chunks_exact(8)
        .map(|c| {
            Complex32::new(
                f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                f32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    Ok((dims, data))
}

/// Writes a row-major `[n_y][n_x]` array as BART dims `[n_x, n_y]` (see the module docs).
pub fn write_image(base: &Path, image: ArrayView2<'_, Complex32>) -> Result<()> {
    let (n_y, n_x) = image.dim();
    let data: Vec<Complex32> = image.iter().copied().collect(); // logical row-major order
    write(base, &[n_x, n_y], &data)
}

/// Reads a BART array with dims `[n_x, n_y, 1, ...]` as a row-major `[n_y][n_x]` array.
/// Any other non-singleton dimension is an error.
pub fn read_image(base: &Path) -> Result<Array2<Complex32>> {
    let (dims, data) = read(base)?;
    let (n_x, n_y) = match dims.as_slice() {
        [n_x] => (*n_x, 1),
        [n_x, n_y] => (*n_x, *n_y),
        other => bail!(
            "{}: expected BART dims [n_x, n_y], found {other:?}",
            base.display()
        ),
    };
    Ok(Array2::from_shape_vec((n_y, n_x), data).expect("length checked by read"))
}
