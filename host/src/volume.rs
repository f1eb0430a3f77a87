//! 3-D MR volumes from NIfTI-1 files (`.nii` or `.nii.gz`), reoriented to RAS, and the 2-D
//! slices cut from them in display orientation.
//!
//! # What [`Volume::load`] accepts
//! * A NIfTI-1 single file with a 3-D volume (trailing dimensions of size 1 are allowed) of
//!   datatype uint8, int8, uint16, int16, uint32, int32, float32 or float64, either byte order.
//!   The voxel values are decoded here (the `nifti` crate is used without its ndarray feature)
//!   and `scl_slope · v + scl_inter` is applied (`scl_slope == 0` means "no scaling", as the
//!   NIfTI-1 standard says). Every value must be finite after scaling.
//! * An orientation from the sform (when `sform_code > 0`) or else the qform
//!   (`qform_code > 0`). Every voxel axis must be aligned with one world axis up to sign
//!   (off-axis components below [`ALIGNMENT_TOLERANCE`] of the axis length); the volume is then
//!   permuted and flipped to **RAS order**: index `i` increases towards the subject's right,
//!   `j` towards anterior, `k` towards superior (NIfTI world space is RAS+). Oblique affines
//!   are refused with an error, as is a file with neither form set (orientation unknown).
//! * **1 mm isotropic voxels** within [`VOXEL_TOLERANCE_MM`]. Nothing is resampled, because
//!   both sources we use are 1 mm (Colin27 `ch2.nii.gz` from the Debian package `mricron-data`,
//!   and the MNI ICBM152 2009a templates from `scripts/fetch-data.sh`); so e.g. `ch2better.nii.gz`
//!   (0.5 mm) is refused rather than silently giving slices of a different scale.
//!
//! Every error names the file and what is wrong with it.
//!
//! # Storage and display orientation
//! [`Volume::data`] is `f32` with `i` fastest (`data[i + n_i·(j + n_j·k)]`), as in NIfTI.
//! The planes come out as row-major [`Array2`]s (DESIGN §3.1) in the neurological
//! display convention (subject's right on the image right):
//! * [`Volume::axial`]`(k)`: `n_j` rows × `n_i` columns; row 0 is the most **anterior** `j`
//!   (`j = n_j − 1`, head upright), columns `i` increasing. This is `vol[k, :, :][::-1, :]` of
//!   a `(k, j, i)` NumPy array, exactly as `models/reference/make_example.py`.
//! * [`Volume::coronal`]`(j)`: `n_k` rows × `n_i` columns; row 0 is the most **superior** `k`,
//!   columns `i` increasing.
//! * [`Volume::sagittal`]`(i)`: `n_k` rows × `n_j` columns; row 0 is the most **superior** `k`,
//!   columns `j` increasing (posterior on the left, the face on the right).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use ndarray::Array2;
use nifti::{Endianness, NiftiHeader, NiftiObject, NiftiType, ReaderOptions};
use serde::{Deserialize, Serialize};

/// Largest accepted deviation of a voxel side from 1 mm.
pub const VOXEL_TOLERANCE_MM: f64 = 1e-3;
/// Largest accepted off-axis part of a voxel axis (norm of the components orthogonal to its
/// dominant world axis, relative to its length) before the affine counts as oblique.
pub const ALIGNMENT_TOLERANCE: f64 = 1e-3;

/// The plane a 2-D slice is cut along (the axis held fixed: `k`, `j` or `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    /// Constant `k` (superior axis).
    Axial,
    /// Constant `j` (anterior axis).
    Coronal,
    /// Constant `i` (right axis).
    Sagittal,
}

impl Orientation {
    /// The lowercase name, as serialised.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Axial => "axial",
            Self::Coronal => "coronal",
            Self::Sagittal => "sagittal",
        }
    }

    /// The RAS axis held fixed: 2 (`k`) for axial, 1 (`j`) for coronal, 0 (`i`) for sagittal.
    pub const fn fixed_axis(self) -> usize {
        match self {
            Self::Axial => 2,
            Self::Coronal => 1,
            Self::Sagittal => 0,
        }
    }
}

impl fmt::Display for Orientation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 1 mm isotropic scalar volume in RAS order (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    dims: [usize; 3],
    voxel_mm: [f64; 3],
    origin_mm: [f64; 3],
    data: Vec<f32>,
    source: PathBuf,
}

impl Volume {
    /// A volume from its parts (e.g. one synthesised from others). `data` is in RAS order with
    /// `i` fastest and must hold `n_i · n_j · n_k` finite values; `origin_mm` is the world
    /// position of voxel `(0, 0, 0)`.
    pub fn new(
        dims: [usize; 3],
        voxel_mm: [f64; 3],
        origin_mm: [f64; 3],
        data: Vec<f32>,
        source: impl Into<PathBuf>,
    ) -> Result<Self> {
        let source = source.into();
        let n = dims.iter().product::<usize>();
        if n == 0 {
            bail!(
                "{}: volume has an empty dimension {dims:?}",
                source.display()
            );
        }
        if data.len() != n {
            bail!(
                "{}: {} voxel values for dimensions {dims:?} ({n} expected)",
                source.display(),
                data.len()
            );
        }
        if let Some(at) = data.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: non-finite voxel value at (i, j, k) = {:?}",
                source.display(),
                unravel(at, dims)
            );
        }
        Ok(Self {
            dims,
            voxel_mm,
            origin_mm,
            data,
            source,
        })
    }

    /// Reads a NIfTI-1 volume, applies the intensity scaling and reorients it to RAS (module
    /// docs for what is accepted). Every error names `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display();
        if !path.exists() {
            bail!("{shown}: no such file");
        }
        if !path.is_file() {
            bail!("{shown}: not a regular file");
        }
        let object = ReaderOptions::new()
            .read_file(path)
            .map_err(|e| anyhow!("{shown}: not a readable NIfTI-1 volume: {e}"))?;
        let header = object.header().clone();
        let raw = object.into_volume().into_raw_data();

        let dims = spatial_dims(&header).map_err(|e| anyhow!("{shown}: {e}"))?;
        let values = decode(&raw, &header, dims).map_err(|e| anyhow!("{shown}: {e}"))?;
        let affine = Affine::from_header(&header).map_err(|e| anyhow!("{shown}: {e}"))?;
        let axes = affine.ras_axes().map_err(|e| anyhow!("{shown}: {e}"))?;

        let voxel_mm = [axes[0].length_mm, axes[1].length_mm, axes[2].length_mm];
        if voxel_mm
            .iter()
            .any(|s| (s - 1.0).abs() > VOXEL_TOLERANCE_MM)
        {
            bail!(
                "{shown}: voxel size {:.4} x {:.4} x {:.4} mm is not 1 mm isotropic \
                 (tolerance {VOXEL_TOLERANCE_MM} mm); volumes are not resampled, so use a 1 mm \
                 source (e.g. ch2.nii.gz, not the 0.5 mm ch2better.nii.gz)",
                voxel_mm[0],
                voxel_mm[1],
                voxel_mm[2]
            );
        }

        let (ras_dims, origin_mm, data) = reorient(&values, dims, &affine, &axes);
        Self::new(ras_dims, voxel_mm, origin_mm, data, path)
    }

    /// `[n_i, n_j, n_k]` in RAS order.
    pub const fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Voxel sides in mm along `i`, `j`, `k` (1 within [`VOXEL_TOLERANCE_MM`] after `load`).
    pub const fn voxel_mm(&self) -> [f64; 3] {
        self.voxel_mm
    }

    /// World (RAS, mm) position of voxel `(0, 0, 0)`.
    pub const fn origin_mm(&self) -> [f64; 3] {
        self.origin_mm
    }

    /// Voxel values, `i` fastest: `data[i + n_i·(j + n_j·k)]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The file the volume came from (or the name given to [`Volume::new`]).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The value at `(i, j, k)`, or `None` outside the volume.
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<f32> {
        let [ni, nj, nk] = self.dims;
        (i < ni && j < nj && k < nk).then(|| self.data[i + ni * (j + nj * k)])
    }

    /// Largest voxel value.
    pub fn max(&self) -> f32 {
        self.data.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }

    /// The sub-volume with `k` in `range` (a slab along the superior axis); its origin moves
    /// accordingly and its source is kept.
    pub fn restrict_k(&self, range: Range<usize>) -> Result<Self> {
        let [ni, nj, nk] = self.dims;
        if range.start >= range.end || range.end > nk {
            bail!(
                "{}: k range {range:?} is empty or outside 0..{nk}",
                self.source.display()
            );
        }
        let plane = ni * nj;
        let data = self.data[range.start * plane..range.end * plane].to_vec();
        let mut origin_mm = self.origin_mm;
        origin_mm[2] += range.start as f64 * self.voxel_mm[2];
        Self::new(
            [ni, nj, range.len()],
            self.voxel_mm,
            origin_mm,
            data,
            self.source.clone(),
        )
    }

    /// The plane of constant `index` along `orientation`'s axis (module docs for the layout).
    pub fn plane(&self, orientation: Orientation, index: usize) -> Result<Array2<f32>> {
        let [ni, nj, nk] = self.dims;
        let n = self.dims[orientation.fixed_axis()];
        if index >= n {
            bail!(
                "{}: {orientation} index {index} is outside 0..{n}",
                self.source.display()
            );
        }
        let at = |i: usize, j: usize, k: usize| self.data[i + ni * (j + nj * k)];
        Ok(match orientation {
            Orientation::Axial => {
                Array2::from_shape_fn((nj, ni), |(r, c)| at(c, nj - 1 - r, index))
            }
            Orientation::Coronal => {
                Array2::from_shape_fn((nk, ni), |(r, c)| at(c, index, nk - 1 - r))
            }
            Orientation::Sagittal => {
                Array2::from_shape_fn((nk, nj), |(r, c)| at(index, c, nk - 1 - r))
            }
        })
    }

    /// Axial plane `k`: `n_j × n_i`, anterior at the top, `i` increasing to the right.
    pub fn axial(&self, k: usize) -> Result<Array2<f32>> {
        self.plane(Orientation::Axial, k)
    }

    /// Coronal plane `j`: `n_k × n_i`, superior at the top, `i` increasing to the right.
    pub fn coronal(&self, j: usize) -> Result<Array2<f32>> {
        self.plane(Orientation::Coronal, j)
    }

    /// Sagittal plane `i`: `n_k × n_j`, superior at the top, `j` (anterior) increasing to the
    /// right.
    pub fn sagittal(&self, i: usize) -> Result<Array2<f32>> {
        self.plane(Orientation::Sagittal, i)
    }
}

fn unravel(at: usize, [ni, nj, _]: [usize; 3]) -> [usize; 3] {
    [at % ni, (at / ni) % nj, at / (ni * nj)]
}

/// `[n_1, n_2, n_3]` of a 3-D volume; dimensions 4.. must be 1 if present.
fn spatial_dims(header: &NiftiHeader) -> Result<[usize; 3]> {
    let dim = header.dim;
    let rank = usize::from(dim[0]);
    if !(1..=7).contains(&rank) {
        bail!("invalid dim[0] = {rank} in the header");
    }
    let extent = &dim[1..=rank];
    if rank < 3 || extent[3..].iter().any(|&d| d != 1) {
        bail!("not a 3-D volume: dim = {extent:?}");
    }
    if extent[..3].contains(&0) {
        bail!("empty dimension: dim = {extent:?}");
    }
    Ok([
        usize::from(dim[1]),
        usize::from(dim[2]),
        usize::from(dim[3]),
    ])
}

/// Decodes the raw voxel bytes (file order, first index fastest) to scaled `f64`s.
fn decode(raw: &[u8], header: &NiftiHeader, dims: [usize; 3]) -> Result<Vec<f64>> {
    let datatype = header
        .data_type()
        .map_err(|_| anyhow!("unknown datatype code {}", header.datatype))?;
    let big = header.endianness == Endianness::Big;
    // Each arm reads fixed-size chunks in the file's byte order; `chunks_exact` guarantees the
    // chunk length, so the array conversion cannot fail.
    macro_rules! values {
        ($t:ty) => {{
            const SIZE: usize = std::mem::size_of::<$t>();
            raw.chunks_exact(SIZE)
                .map(|c| {
                    let mut b = [0u8; SIZE];
                    b.copy_from_slice(c);
                    let v = if big {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    };
                    v as f64
                })
                .collect::<Vec<f64>>()
        }};
    }
    let values = match datatype {
        NiftiType::Uint8 => values!(u8),
        NiftiType::Int8 => values!(i8),
        NiftiType::Uint16 => values!(u16),
        NiftiType::Int16 => values!(i16),
        NiftiType::Uint32 => values!(u32),
        NiftiType::Int32 => values!(i32),
        NiftiType::Float32 => values!(f32),
        NiftiType::Float64 => values!(f64),
        other => bail!(
            "unsupported datatype {other:?} (code {}); expected a real scalar type \
             (uint8, int8, uint16, int16, uint32, int32, float32, float64)",
            header.datatype
        ),
    };
    let n: usize = dims.iter().product();
    if values.len() != n {
        bail!(
            "{} voxel values for dim {dims:?} ({n} expected): file truncated?",
            values.len()
        );
    }
    // NIfTI-1: scl_slope == 0 means the values are not scaled.
    let (slope, inter) = if header.scl_slope == 0.0 {
        (1.0, 0.0)
    } else {
        (f64::from(header.scl_slope), f64::from(header.scl_inter))
    };
    if !slope.is_finite() || !inter.is_finite() {
        bail!("non-finite scl_slope / scl_inter ({slope}, {inter})");
    }
    let scaled: Vec<f64> = values.into_iter().map(|v| slope * v + inter).collect();
    if let Some(at) = scaled
        .iter()
        .position(|v| !v.is_finite() || !(*v as f32).is_finite())
    {
        bail!(
            "non-finite voxel value at file index (i, j, k) = {:?}",
            unravel(at, dims)
        );
    }
    Ok(scaled)
}

/// Voxel-to-world map `world = m · (i, j, k) + t` (mm).
struct Affine {
    m: [[f64; 3]; 3],
    t: [f64; 3],
    form: &'static str,
}

/// Where one RAS world axis comes from: the file's voxel axis, the direction and the voxel
/// side along it.
#[derive(Debug, Clone, Copy)]
struct AxisMap {
    voxel_axis: usize,
    positive: bool,
    length_mm: f64,
}

impl Affine {
    fn from_header(h: &NiftiHeader) -> Result<Self> {
        if h.sform_code > 0 {
            let rows = [h.srow_x, h.srow_y, h.srow_z];
            Ok(Self {
                m: rows.map(|r| [r[0], r[1], r[2]].map(f64::from)),
                t: rows.map(|r| f64::from(r[3])),
                form: "sform",
            })
        } else if h.qform_code > 0 {
            // NIfTI-1 quaternion (b, c, d), a = sqrt(1 − b² − c² − d²); the third column is
            // multiplied by qfac = pixdim[0] (0 is read as 1).
            let (b, c, d) = (
                f64::from(h.quatern_b),
                f64::from(h.quatern_c),
                f64::from(h.quatern_d),
            );
            let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
            let r = [
                [
                    a * a + b * b - c * c - d * d,
                    2.0 * (b * c - a * d),
                    2.0 * (b * d + a * c),
                ],
                [
                    2.0 * (b * c + a * d),
                    a * a + c * c - b * b - d * d,
                    2.0 * (c * d - a * b),
                ],
                [
                    2.0 * (b * d - a * c),
                    2.0 * (c * d + a * b),
                    a * a + d * d - c * c - b * b,
                ],
            ];
            let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
            let scale = [
                f64::from(h.pixdim[1]),
                f64::from(h.pixdim[2]),
                qfac * f64::from(h.pixdim[3]),
            ];
            Ok(Self {
                m: r.map(|row| [row[0] * scale[0], row[1] * scale[1], row[2] * scale[2]]),
                t: [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
                form: "qform",
            })
        } else {
            bail!(
                "neither sform_code nor qform_code is set, so the orientation of the voxel \
                 axes is unknown"
            )
        }
    }

    fn column(&self, axis: usize) -> [f64; 3] {
        [self.m[0][axis], self.m[1][axis], self.m[2][axis]]
    }

    /// For each RAS world axis, the voxel axis along it. Fails on oblique or degenerate affines.
    fn ras_axes(&self) -> Result<[AxisMap; 3]> {
        let mut maps: [Option<AxisMap>; 3] = [None; 3];
        for voxel_axis in 0..3 {
            let col = self.column(voxel_axis);
            let length = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if !length.is_finite() || length == 0.0 {
                bail!(
                    "{} column {voxel_axis} is {col:?}: not a valid voxel axis",
                    self.form
                );
            }
            let world = (0..3)
                .max_by(|&a, &b| col[a].abs().total_cmp(&col[b].abs()))
                .unwrap_or(0);
            let off_axis = (length * length - col[world] * col[world]).max(0.0).sqrt() / length;
            if off_axis > ALIGNMENT_TOLERANCE {
                bail!(
                    "oblique {} (voxel axis {voxel_axis} points along {col:?} in RAS mm, \
                     {off_axis:.2e} off the nearest world axis); oblique volumes would need \
                     resampling, which is not supported",
                    self.form
                );
            }
            if maps[world].is_some() {
                bail!(
                    "degenerate {}: two voxel axes point along world axis {world} ({:?})",
                    self.form,
                    self.m
                );
            }
            maps[world] = Some(AxisMap {
                voxel_axis,
                positive: col[world] > 0.0,
                length_mm: length,
            });
        }
        match maps {
            [Some(x), Some(y), Some(z)] => Ok([x, y, z]),
            _ => bail!("degenerate {}: {:?}", self.form, self.m),
        }
    }
}

/// Permutes and flips `values` (file order, `dims`) to RAS order. Returns the RAS dimensions,
/// the world position of the new voxel (0, 0, 0) and the `f32` data.
fn reorient(
    values: &[f64],
    dims: [usize; 3],
    affine: &Affine,
    axes: &[AxisMap; 3],
) -> ([usize; 3], [f64; 3], Vec<f32>) {
    let ras_dims = axes.map(|a| dims[a.voxel_axis]);
    // File index of the new voxel (0, 0, 0): 0 along a positive axis, n − 1 along a flipped one.
    let mut corner = [0.0_f64; 3];
    for a in axes {
        if !a.positive {
            corner[a.voxel_axis] = (dims[a.voxel_axis] - 1) as f64;
        }
    }
    let origin_mm: [f64; 3] = std::array::from_fn(|r| {
        affine.t[r] + (0..3).map(|c| affine.m[r][c] * corner[c]).sum::<f64>()
    });

    let stride = [1, dims[0], dims[0] * dims[1]];
    let mut data = Vec::with_capacity(values.len());
    for z in 0..ras_dims[2] {
        for y in 0..ras_dims[1] {
            for x in 0..ras_dims[0] {
                let mut src = 0;
                for (w, n) in [x, y, z].into_iter().enumerate() {
                    let a = axes[w];
                    let idx = if a.positive {
                        n
                    } else {
                        dims[a.voxel_axis] - 1 - n
                    };
                    src += idx * stride[a.voxel_axis];
                }
                data.push(values[src] as f32);
            }
        }
    }
    (ras_dims, origin_mm, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(dims: [usize; 3]) -> Volume {
        let n = dims.iter().product();
        Volume::new(
            dims,
            [1.0; 3],
            [0.0; 3],
            (0..n).map(|v| v as f32).collect(),
            "ramp",
        )
        .unwrap()
    }

    #[test]
    fn planes_follow_the_display_convention() {
        let v = ramp([2, 3, 4]); // value = i + 2 (j + 3 k)
        let ax = v.axial(1).unwrap();
        assert_eq!(ax.dim(), (3, 2));
        assert_eq!(ax[[0, 0]], v.get(0, 2, 1).unwrap()); // anterior row at the top
        assert_eq!(ax[[2, 1]], v.get(1, 0, 1).unwrap());
        let co = v.coronal(2).unwrap();
        assert_eq!(co.dim(), (4, 2));
        assert_eq!(co[[0, 1]], v.get(1, 2, 3).unwrap()); // superior at the top
        let sa = v.sagittal(1).unwrap();
        assert_eq!(sa.dim(), (4, 3));
        assert_eq!(sa[[3, 2]], v.get(1, 2, 0).unwrap()); // columns j increasing
        assert!(v.axial(4).is_err());
    }

    #[test]
    fn restrict_k_is_a_slab() {
        let v = ramp([2, 3, 4]);
        let s = v.restrict_k(1..3).unwrap();
        assert_eq!(s.dims(), [2, 3, 2]);
        assert_eq!(s.get(1, 2, 0), v.get(1, 2, 1));
        assert_eq!(s.origin_mm()[2], 1.0);
        assert!(v.restrict_k(3..5).is_err());
        assert!(v.restrict_k(2..2).is_err());
    }

    #[test]
    fn new_rejects_bad_data() {
        assert!(Volume::new([2, 2, 2], [1.0; 3], [0.0; 3], vec![0.0; 7], "x").is_err());
        let mut d = vec![0.0; 8];
        d[5] = f32::NAN;
        let e = Volume::new([2, 2, 2], [1.0; 3], [0.0; 3], d, "x").unwrap_err();
        assert!(e.to_string().contains("[1, 0, 1]"), "{e}");
    }
}
