//! Reading the `.npy` inputs of `sparsemap recon` (DESIGN §6, §7) with errors that name the
//! file and what is wrong with it.

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array3, ArrayD};
use ndarray_npy::ReadNpyExt;
use num_complex::{Complex32, Complex64};
use sparsemap_core::dictionary::Dictionary;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// The dtype and shape an `.npy` header declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub descr: String,
    pub shape: Vec<usize>,
}

/// Parses the header of an `.npy` stream (format versions 1–3) and rewinds it.
pub fn read_header<R: Read + Seek>(reader: &mut R) -> Result<NpyHeader> {
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .context("file is shorter than an .npy header")?;
    if &magic[..6] != b"\x93NUMPY" {
        bail!("not an .npy file (bad magic bytes)");
    }
    let header_len = match magic[6] {
        1 => {
            let mut len = [0u8; 2];
            reader
                .read_exact(&mut len)
                .context("truncated .npy header")?;
            u16::from_le_bytes(len) as usize
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            reader
                .read_exact(&mut len)
                .context("truncated .npy header")?;
            u32::from_le_bytes(len) as usize
        }
        v => bail!("unsupported .npy format version {v}"),
    };
    if header_len > 1 << 20 {
        bail!(".npy header claims {header_len} bytes");
    }
    let mut text = vec![0u8; header_len];
    reader
        .read_exact(&mut text)
        .context("truncated .npy header")?;
    reader.rewind()?;
    let text = String::from_utf8_lossy(&text);
    let descr = dict_value(&text, "descr")
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
        .context("the .npy header has no 'descr'")?;
    let shape_text = dict_value(&text, "shape").context("the .npy header has no 'shape'")?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad dimension {s:?} in .npy shape"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader { descr, shape })
}

/// The text of `key`'s value in a Python dict literal (values here hold no nested dicts).
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn open(path: &Path) -> Result<(BufReader<File>, NpyHeader)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let header = read_header(&mut reader).with_context(|| format!("{}", path.display()))?;
    Ok((reader, header))
}

fn read_as<T: ndarray_npy::ReadableElement>(
    reader: BufReader<File>,
    path: &Path,
) -> Result<ArrayD<T>> {
    ArrayD::<T>::read_npy(reader).with_context(|| {
        format!(
            "{}: cannot read array data (truncated or corrupt file?)",
            path.display()
        )
    })
}

/// Drops leading axes of length one (`[1, n_y, n_x]` → `[n_y, n_x]`).
fn squeeze_leading(array: ArrayD<Complex32>, keep: usize) -> ArrayD<Complex32> {
    let mut array = array;
    while array.ndim() > keep && array.shape()[0] == 1 {
        array = array.index_axis_move(ndarray::Axis(0), 0);
    }
    array
}

/// Complex k-space `[n_y, n_x]` (or `[1, n_y, n_x]`), complex64 or complex128, finite.
pub fn read_kspace(path: &Path) -> Result<Array2<Complex32>> {
    let (reader, header) = open(path)?;
    let array: ArrayD<Complex32> = match header.descr.as_str() {
        "<c8" => read_as::<Complex32>(reader, path)?,
        "<c16" => {
            read_as::<Complex64>(reader, path)?.mapv(|v| Complex32::new(v.re as f32, v.im as f32))
        }
        other => bail!(
            "{}: k-space must be complex64 or complex128, found dtype {other}",
            path.display()
        ),
    };
    let array = squeeze_leading(array, 2);
    if array.ndim() == 3 {
        bail!(
            "{}: k-space has {} coils ({:?}); this version reconstructs single-coil data only",
            path.display(),
            array.shape()[0],
            array.shape()
        );
    }
    if array.ndim() != 2 {
        bail!(
            "{}: k-space must be [n_y, n_x], found shape {:?}",
            path.display(),
            array.shape()
        );
    }
    if array
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        bail!(
            "{}: k-space contains NaN or infinite values",
            path.display()
        );
    }
    Ok(array.into_dimensionality::<ndarray::Ix2>()?)
}

/// A sampling mask `[n_y, n_x]` of bool, uint8, float32 or float64; `true` where non-zero.
pub fn read_mask(path: &Path) -> Result<Array2<bool>> {
    let (reader, header) = open(path)?;
    let array: ArrayD<bool> = match header.descr.as_str() {
        "|b1" => read_as::<bool>(reader, path)?,
        "|u1" => read_as::<u8>(reader, path)?.mapv(|v| v != 0),
        "<f4" => {
            let a = read_as::<f32>(reader, path)?;
            if a.iter().any(|v| !v.is_finite()) {
                bail!("{}: mask contains NaN or infinite values", path.display());
            }
            a.mapv(|v| v != 0.0)
        }
        "<f8" => {
            let a = read_as::<f64>(reader, path)?;
            if a.iter().any(|v| !v.is_finite()) {
                bail!("{}: mask contains NaN or infinite values", path.display());
            }
            a.mapv(|v| v != 0.0)
        }
        other => bail!(
            "{}: mask must be bool, uint8, float32 or float64, found dtype {other}",
            path.display()
        ),
    };
    if array.ndim() != 2 {
        bail!(
            "{}: mask must be [n_y, n_x], found shape {:?}",
            path.display(),
            array.shape()
        );
    }
    Ok(array.into_dimensionality::<ndarray::Ix2>()?)
}

/// Real float32/float64 array of any shape, finite, as f32.
fn read_real(path: &Path, what: &str) -> Result<ArrayD<f32>> {
    read_real_from(open(path)?, path, what)
}

fn read_real_from(
    (reader, header): (BufReader<File>, NpyHeader),
    path: &Path,
    what: &str,
) -> Result<ArrayD<f32>> {
    let array = match header.descr.as_str() {
        "<f4" => read_as::<f32>(reader, path)?,
        "<f8" => read_as::<f64>(reader, path)?.mapv(|v| v as f32),
        other => bail!(
            "{}: {what} must be float32 or float64, found dtype {other}",
            path.display()
        ),
    };
    if array.iter().any(|v| !v.is_finite()) {
        bail!(
            "{}: {what} contains NaN or infinite values (or overflows float32)",
            path.display()
        );
    }
    Ok(array)
}

/// Dictionary filters `[K, s, s]` (DESIGN §3.3).
pub fn read_dictionary(path: &Path) -> Result<Array3<f32>> {
    let array = read_real(path, "dictionary")?;
    dictionary_from(array).with_context(|| format!("{}", path.display()))
}

/// Dictionary filters from the bytes of an `.npy` file (the bundled dictionary).
pub fn dictionary_from_bytes(bytes: &[u8]) -> Result<Array3<f32>> {
    let array =
        ArrayD::<f32>::read_npy(bytes).context("bundled dictionary is not a float32 .npy")?;
    dictionary_from(array)
}

fn dictionary_from(array: ArrayD<f32>) -> Result<Array3<f32>> {
    let shape = array.shape().to_vec();
    if shape.len() != 3 || shape[1] != shape[2] {
        bail!("dictionary must be [K, s, s] (square filters), found shape {shape:?}");
    }
    Ok(array.into_dimensionality::<ndarray::Ix3>()?)
}

/// Sparsity levels from a file: `[K]` (per filter) or `[K, n_y, n_x]` (maps), non-negative.
pub fn read_lambda(path: &Path) -> Result<ArrayD<f32>> {
    let array = read_real(path, "lambda")?;
    if array.iter().any(|&v| v < 0.0) {
        bail!("{}: lambda contains negative values", path.display());
    }
    if !matches!(array.ndim(), 1 | 3) {
        bail!(
            "{}: lambda must be [K] or [K, n_y, n_x], found shape {:?}",
            path.display(),
            array.shape()
        );
    }
    Ok(array)
}

/// Complex image `[n_y, n_x]` of any complex or real float dtype (e.g. a reference image).
pub fn read_image(path: &Path) -> Result<Array2<Complex32>> {
    let (reader, header) = open(path)?;
    let array: ArrayD<Complex32> = match header.descr.as_str() {
        "<c8" => read_as::<Complex32>(reader, path)?,
        "<c16" => {
            read_as::<Complex64>(reader, path)?.mapv(|v| Complex32::new(v.re as f32, v.im as f32))
        }
        "<f4" | "<f8" => {
            read_real_from((reader, header), path, "image")?.mapv(|v| Complex32::new(v, 0.0))
        }
        other => bail!(
            "{}: image must be complex or real float, found dtype {other}",
            path.display()
        ),
    };
    let array = squeeze_leading(array, 2);
    if array.ndim() != 2 {
        bail!(
            "{}: image must be [n_y, n_x], found shape {:?}",
            path.display(),
            array.shape()
        );
    }
    Ok(array.into_dimensionality::<ndarray::Ix2>()?)
}

/// The core's validated view of a dictionary array `[K, s, s]` (odd `s <= 11`, finite taps).
pub fn dictionary_view(filters: &Array3<f32>) -> Result<Dictionary<'_, f32>> {
    let (count, side, _) = filters.dim();
    let taps = filters
        .as_slice()
        .context("dictionary array is not contiguous")?;
    Ok(Dictionary::new(taps, count, side)?)
}
