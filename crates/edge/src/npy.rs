//! Reading the `.npy` inputs of `sparsemap recon` (DESIGN §6, §7) with errors that name the
//! file and what is wrong with it.

use crate::limits;
use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, Array3, ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::Header;
use num_complex::{Complex32, Complex64};
use py_literal::Value as PyValue;
use sparsemap_core::dictionary::Dictionary;
use std::path::Path;

/// The dtype, layout and shape an `.npy` header declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Where the data starts (after the magic, the length and the header dictionary).
    pub data_offset: usize,
}

/// Deepest bracket nesting accepted in an `.npy` header (see [`parse_header`]).
pub const MAX_HEADER_NESTING: usize = 4;

/// Element types the readers take, with their sizes in bytes.
const KNOWN_DTYPES: [(&str, usize); 10] = [
    ("|b1", 1),
    ("|u1", 1),
    ("<f4", 4),
    (">f4", 4),
    ("<f8", 8),
    (">f8", 8),
    ("<c8", 8),
    (">c8", 8),
    ("<c16", 16),
    (">c16", 16),
];

/// Parses the header of in-memory `.npy` bytes with ndarray-npy's parser (every format
/// version, either quote style, C or Fortran order) after bounding the header length, and
/// checks that the data after it is exactly the declared shape and dtype: nothing is
/// allocated for the data before that. Errors say what is wrong (the caller adds the file).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not an .npy file (no \\x93NUMPY magic)");
    }
    let (prefix, header_len) = match bytes[6] {
        1 => (10, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
        2 | 3 if bytes.len() >= 12 => (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        2 | 3 => bail!("truncated .npy header"),
        v => bail!("unsupported .npy format version {v}"),
    };
    if header_len > limits::MAX_NPY_HEADER_BYTES {
        bail!(
            ".npy header declares {header_len} bytes (limit {})",
            limits::MAX_NPY_HEADER_BYTES
        );
    }
    let data_offset = prefix + header_len;
    if data_offset > bytes.len() {
        bail!(
            "truncated .npy header ({} bytes, the header declares {data_offset})",
            bytes.len()
        );
    }
    // The header is a Python literal parsed by a backtracking grammar whose time grows
    // exponentially with bracket nesting (16 unclosed `{` took over a minute); NumPy writes
    // a depth of 2 (the dict and the shape tuple), a structured dtype a little more.
    let depth = bytes[prefix..data_offset]
        .iter()
        .fold((0usize, 0usize), |(depth, deepest), b| match b {
            b'(' | b'[' | b'{' => (depth + 1, deepest.max(depth + 1)),
            b')' | b']' | b'}' => (depth.saturating_sub(1), deepest),
            _ => (depth, deepest),
        })
        .1;
    if depth > MAX_HEADER_NESTING {
        bail!(".npy header nests brackets {depth} deep (limit {MAX_HEADER_NESTING})");
    }
    let header = Header::from_reader(&mut &bytes[..data_offset])
        .map_err(|e| anyhow!("invalid .npy header: {e}"))?;
    let descr = match &header.type_descriptor {
        PyValue::String(s) => s.clone(),
        other => bail!("unsupported .npy dtype {other} (a structured dtype)"),
    };
    let element = KNOWN_DTYPES
        .iter()
        .find(|(name, _)| *name == descr)
        .map(|&(_, size)| size)
        .ok_or_else(|| anyhow!("unsupported .npy dtype {descr:?}"))?;
    let data = bytes.len() - data_offset;
    let declared = header
        .shape
        .iter()
        .try_fold(element, |acc, &d| acc.checked_mul(d));
    if declared != Some(data) {
        bail!(
            "the header declares shape {:?} of {descr} ({}), but {data} bytes of data follow it (truncated or corrupt file?)",
            header.shape,
            match declared {
                Some(b) => format!("{b} bytes"),
                None => "more bytes than memory can address".to_string(),
            }
        );
    }
    Ok(NpyHeader {
        descr,
        fortran_order: header.layout.is_fortran(),
        shape: header.shape,
        data_offset,
    })
}

/// An `.npy` file read into memory (at most `max_bytes`) with its checked header.
struct NpyBytes<'a> {
    name: &'a str,
    bytes: &'a [u8],
    header: NpyHeader,
}

impl<'a> NpyBytes<'a> {
    fn parse(bytes: &'a [u8], name: &'a str) -> Result<Self> {
        let header = parse_header(bytes).with_context(|| name.to_string())?;
        Ok(Self {
            name,
            bytes,
            header,
        })
    }

    /// Leading axes of length one dropped, down to `keep` axes.
    fn squeezed_shape(&self, keep: usize) -> &[usize] {
        let mut shape = &self.header.shape[..];
        while shape.len() > keep && shape[0] == 1 {
            shape = &shape[1..];
        }
        shape
    }

    /// The data as `T`, in C order (a Fortran-order file is transposed into C order).
    fn read<T: ndarray_npy::ReadableElement + Clone>(&self) -> Result<ArrayD<T>> {
        // The header was parsed and its size checked in `parse`; ndarray-npy's element reader
        // takes the data from there (its `read_npy` would parse the header a second time).
        let header = &self.header;
        let len = header.shape.iter().product();
        let descriptor = PyValue::String(header.descr.clone());
        let data = T::read_to_end_exact_vec(&self.bytes[header.data_offset..], &descriptor, len)
            .map_err(|e| anyhow!("{}: cannot read the array data: {e}", self.name))?;
        let shape = IxDyn(&header.shape).set_f(header.fortran_order);
        let array = ArrayD::from_shape_vec(shape, data)
            .map_err(|e| anyhow!("{}: cannot shape the array data: {e}", self.name))?;
        Ok(if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        })
    }

    fn read_complex(&self, what: &str) -> Result<ArrayD<Complex32>> {
        Ok(match self.header.descr.as_str() {
            "<c8" | ">c8" => self.read::<Complex32>()?,
            "<c16" | ">c16" => self
                .read::<Complex64>()?
                .mapv(|v| Complex32::new(v.re as f32, v.im as f32)),
            other => bail!(
                "{}: {what} must be complex64 or complex128, found dtype {other}",
                self.name
            ),
        })
    }

    /// Real float32/float64, finite, as f32.
    fn read_real(&self, what: &str) -> Result<ArrayD<f32>> {
        let array = match self.header.descr.as_str() {
            "<f4" | ">f4" => self.read::<f32>()?,
            "<f8" | ">f8" => self.read::<f64>()?.mapv(|v| v as f32),
            other => bail!(
                "{}: {what} must be float32 or float64, found dtype {other}",
                self.name
            ),
        };
        if array.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: {what} contains NaN or infinite values (or overflows float32)",
                self.name
            );
        }
        Ok(array)
    }

    fn check_grid(&self, shape: &[usize], what: &str) -> Result<()> {
        if shape.iter().any(|&n| n == 0 || n > limits::MAX_GRID_SIDE) {
            bail!(
                "{}: {what} shape {:?}: each side must be 1..={} (docs/design.md §7.3)",
                self.name,
                self.header.shape,
                limits::MAX_GRID_SIDE
            );
        }
        Ok(())
    }
}

/// Largest `.npy` file a reader takes: the header limit plus `elements` of 16 bytes.
fn max_file_bytes(elements: usize) -> u64 {
    (limits::MAX_NPY_HEADER_BYTES + 12 + 16 * elements) as u64
}

const GRID_ELEMENTS: usize = limits::MAX_GRID_SIDE * limits::MAX_GRID_SIDE;

fn read_file(path: &Path, elements: usize, what: &str) -> Result<Vec<u8>> {
    limits::read_regular_file(path, max_file_bytes(elements), what)
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Complex k-space `[n_y, n_x]` (or `[1, n_y, n_x]`), complex64 or complex128, finite.
pub fn read_kspace(path: &Path) -> Result<Array2<Complex32>> {
    kspace_from_bytes(
        &read_file(path, GRID_ELEMENTS, "k-space .npy")?,
        &shown(path),
    )
}

/// [`read_kspace`] on the bytes of a file; `name` is used in errors.
pub fn kspace_from_bytes(bytes: &[u8], name: &str) -> Result<Array2<Complex32>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.squeezed_shape(2).to_vec();
    if shape.len() == 3 {
        bail!(
            "{name}: k-space has {} coils ({:?}); read it with read_coil_kspace",
            shape[0],
            file.header.shape
        );
    }
    if shape.len() != 2 {
        bail!(
            "{name}: k-space must be [n_y, n_x], found shape {:?}",
            file.header.shape
        );
    }
    file.check_grid(&shape, "k-space")?;
    let array = file.read_complex("k-space")?;
    if array
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        bail!("{name}: k-space contains NaN or infinite values");
    }
    Ok(array.into_shape_with_order((shape[0], shape[1]))?)
}

/// Most coils a multi-coil `.npy` may hold (DESIGN §3.4).
const MAX_COILS: usize = sparsemap_core::coils::MAX_COILS;
/// Most samples per coil of a noise scan (`--noise`).
pub const MAX_NOISE_SAMPLES: usize = 1 << 20;

/// Complex k-space of one or several coils: `[n_y, n_x]` (one coil) or `[coils, n_y, n_x]`,
/// complex64 or complex128, finite; returned as `[coils, n_y, n_x]`.
pub fn read_coil_kspace(path: &Path) -> Result<Array3<Complex32>> {
    coil_array_from_bytes(
        &read_file(path, MAX_COILS * GRID_ELEMENTS, "k-space .npy")?,
        &shown(path),
        "k-space",
    )
}

/// Coil sensitivities `[coils, n_y, n_x]` (image domain), complex64 or complex128, finite.
pub fn read_sensitivities(path: &Path) -> Result<Array3<Complex32>> {
    coil_array_from_bytes(
        &read_file(path, MAX_COILS * GRID_ELEMENTS, "sensitivities .npy")?,
        &shown(path),
        "sensitivities",
    )
}

/// [`read_coil_kspace`] on the bytes of a file; `name` is used in errors.
pub fn coil_array_from_bytes(bytes: &[u8], name: &str, what: &str) -> Result<Array3<Complex32>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.squeezed_shape(2).to_vec();
    let shape = match shape[..] {
        [n_y, n_x] => [1, n_y, n_x],
        [coils, n_y, n_x] => [coils, n_y, n_x],
        _ => bail!(
            "{name}: {what} must be [n_y, n_x] or [coils, n_y, n_x], found shape {:?}",
            file.header.shape
        ),
    };
    if shape[0] == 0 || shape[0] > MAX_COILS {
        bail!(
            "{name}: {what} has {} coils, expected 1..={MAX_COILS}",
            shape[0]
        );
    }
    file.check_grid(&shape[1..], what)?;
    let array = file.read_complex(what)?;
    if array
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        bail!("{name}: {what} contains NaN or infinite values");
    }
    Ok(array.into_shape_with_order((shape[0], shape[1], shape[2]))?)
}

/// A noise scan `[coils, M]`: noise-only samples of each coil (complex64 or complex128,
/// finite, `M <= MAX_NOISE_SAMPLES`).
pub fn read_noise(path: &Path) -> Result<Array2<Complex32>> {
    noise_from_bytes(
        &read_file(path, MAX_COILS * MAX_NOISE_SAMPLES, "noise .npy")?,
        &shown(path),
    )
}

/// [`read_noise`] on the bytes of a file; `name` is used in errors.
pub fn noise_from_bytes(bytes: &[u8], name: &str) -> Result<Array2<Complex32>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.header.shape.clone();
    let [coils, samples] = shape[..] else {
        bail!("{name}: a noise scan must be [coils, samples], found shape {shape:?}");
    };
    if coils == 0 || coils > MAX_COILS || samples == 0 || samples > MAX_NOISE_SAMPLES {
        bail!("{name}: noise scan shape {shape:?}: 1..={MAX_COILS} coils of 1..={MAX_NOISE_SAMPLES} samples");
    }
    let array = file.read_complex("noise scan")?;
    if array
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        bail!("{name}: the noise scan contains NaN or infinite values");
    }
    Ok(array.into_shape_with_order((coils, samples))?)
}

/// A sampling mask `[n_y, n_x]` of bool, uint8, float32 or float64; `true` where non-zero.
pub fn read_mask(path: &Path) -> Result<Array2<bool>> {
    mask_from_bytes(&read_file(path, GRID_ELEMENTS, "mask .npy")?, &shown(path))
}

/// [`read_mask`] on the bytes of a file; `name` is used in errors.
pub fn mask_from_bytes(bytes: &[u8], name: &str) -> Result<Array2<bool>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.squeezed_shape(2).to_vec();
    if shape.len() != 2 {
        bail!(
            "{name}: mask must be [n_y, n_x], found shape {:?}",
            file.header.shape
        );
    }
    file.check_grid(&shape, "mask")?;
    let array: ArrayD<bool> = match file.header.descr.as_str() {
        "|b1" => file.read::<bool>()?,
        "|u1" => file.read::<u8>()?.mapv(|v| v != 0),
        "<f4" | ">f4" | "<f8" | ">f8" => file.read_real("mask")?.mapv(|v| v != 0.0),
        other => bail!("{name}: mask must be bool, uint8, float32 or float64, found dtype {other}"),
    };
    Ok(array.into_shape_with_order((shape[0], shape[1]))?)
}

/// Dictionary filters `[K, s, s]` (DESIGN §3.3), `K <= MAX_FILTERS`, odd `s <= 11`.
pub fn read_dictionary(path: &Path) -> Result<Array3<f32>> {
    let elements = limits::MAX_FILTERS * limits::MAX_FILTER_SIDE * limits::MAX_FILTER_SIDE;
    dictionary_from_bytes_named(&read_file(path, elements, "dictionary .npy")?, &shown(path))
}

/// Dictionary filters from the bytes of an `.npy` file (the bundled dictionary).
pub fn dictionary_from_bytes(bytes: &[u8]) -> Result<Array3<f32>> {
    dictionary_from_bytes_named(bytes, "bundled dictionary")
}

/// [`read_dictionary`] on the bytes of a file; `name` is used in errors.
pub fn dictionary_from_bytes_named(bytes: &[u8], name: &str) -> Result<Array3<f32>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.header.shape.clone();
    if shape.len() != 3 || shape[1] != shape[2] {
        bail!("{name}: dictionary must be [K, s, s] (square filters), found shape {shape:?}");
    }
    limits::check_filters(shape[0], shape[1]).with_context(|| format!("{name}: dictionary"))?;
    let array = file.read_real("dictionary")?;
    Ok(array.into_shape_with_order((shape[0], shape[1], shape[2]))?)
}

/// Sparsity levels from a file: `[K]` (per filter) or `[K, n_y, n_x]` (maps), non-negative.
pub fn read_lambda(path: &Path) -> Result<ArrayD<f32>> {
    lambda_from_bytes(
        &read_file(path, limits::MAX_FILTER_PIXELS / 2, "lambda .npy")?,
        &shown(path),
    )
}

/// [`read_lambda`] on the bytes of a file; `name` is used in errors.
pub fn lambda_from_bytes(bytes: &[u8], name: &str) -> Result<ArrayD<f32>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.header.shape.clone();
    match shape[..] {
        [count] if (1..=limits::MAX_FILTERS).contains(&count) => {}
        [count, n_y, n_x] if (1..=limits::MAX_FILTERS).contains(&count) => {
            file.check_grid(&shape[1..], "lambda")?;
            limits::check_filter_pixels(count, n_y, n_x).with_context(|| name.to_string())?;
        }
        _ => bail!(
            "{name}: lambda must be [K] or [K, n_y, n_x] with K in 1..={}, found shape {shape:?}",
            limits::MAX_FILTERS
        ),
    }
    let array = file.read_real("lambda")?;
    if array.iter().any(|&v| v < 0.0) {
        bail!("{name}: lambda contains negative values");
    }
    Ok(array)
}

/// Complex image `[n_y, n_x]` of any complex or real float dtype (e.g. a reference image).
pub fn read_image(path: &Path) -> Result<Array2<Complex32>> {
    image_from_bytes(&read_file(path, GRID_ELEMENTS, "image .npy")?, &shown(path))
}

/// [`read_image`] on the bytes of a file; `name` is used in errors.
pub fn image_from_bytes(bytes: &[u8], name: &str) -> Result<Array2<Complex32>> {
    let file = NpyBytes::parse(bytes, name)?;
    let shape = file.squeezed_shape(2).to_vec();
    if shape.len() != 2 {
        bail!(
            "{name}: image must be [n_y, n_x], found shape {:?}",
            file.header.shape
        );
    }
    file.check_grid(&shape, "image")?;
    let array = match file.header.descr.as_str() {
        "<f4" | ">f4" | "<f8" | ">f8" => file.read_real("image")?.mapv(|v| Complex32::new(v, 0.0)),
        _ => file.read_complex("image")?,
    };
    if array
        .iter()
        .any(|v| !(v.re.is_finite() && v.im.is_finite()))
    {
        bail!("{name}: image contains NaN or infinite values");
    }
    Ok(array.into_shape_with_order((shape[0], shape[1]))?)
}

/// The core's validated view of a dictionary array `[K, s, s]` (odd `s <= 11`, finite taps).
pub fn dictionary_view(filters: &Array3<f32>) -> Result<Dictionary<'_, f32>> {
    let (count, side, _) = filters.dim();
    let taps = filters
        .as_slice()
        .context("dictionary array is not contiguous")?;
    Ok(Dictionary::new(taps, count, side)?)
}
