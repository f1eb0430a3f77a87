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
//!   are refused with an error, as is a file with neither form set (orientation unknown) and
//!   one whose translation puts the first voxel at a non-finite position.
//! * **1 mm isotropic voxels** within [`VOXEL_TOLERANCE_MM`]. Nothing is resampled, so by
//!   default e.g. `ch2better.nii.gz` (0.5 mm) is refused rather than silently giving slices of
//!   a different scale. [`Volume::load_with`] and [`LoadOptions`] opt in, per source, to other
//!   voxel sizes (the export's 0.5 mm and 2 mm sources, whose planes are used at their own
//!   resolution on purpose) and to the first volume of a 4-D series (an EPI run).
//!
//! Every error is one line that starts with the file and says what is wrong with it.
//!
//! # Hostile input
//! A file is untrusted input: nothing it declares is allocated before it is bounded.
//! [`Volume::load`] refuses what is not a regular file (a FIFO or a device would block or
//! never end) and files over [`MAX_FILE_BYTES`]; it then reads only the 348-byte header and
//! checks it: `sizeof_hdr` 348, magic `n+1` (single file), each spatial side in
//! `1..=`[`MAX_DIM`], at most [`MAX_VOXELS`] voxels, a supported datatype and a whole
//! `vox_offset` in `352..=`[`MAX_VOX_OFFSET`]. Only then is the voxel buffer reserved
//! (fallibly: an allocation failure is an error, not an abort) for exactly the declared bytes,
//! and exactly those are read: an uncompressed file must be `vox_offset` + data bytes long
//! (checked on its size before reading), and a `.nii.gz` is decompressed through a bound of
//! the declared size, so a gzip bomb stops expanding one byte past it; a stream that holds
//! more or fewer bytes than declared is an error, as is a bad gzip CRC. Extensions are skipped.
//! [`Volume::from_bytes`] does the same from bytes in memory.
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
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use flate2::bufread::MultiGzDecoder;
use ndarray::Array2;
use nifti::{Endianness, NiftiHeader, NiftiType};
use serde::{Deserialize, Serialize};

/// What [`Volume::load_with`] accepts beyond the strict default of [`Volume::load`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept any (finite, positive) voxel size instead of 1 mm isotropic only.
    pub any_voxel_size: bool,
    /// Accept a 4-D series (`dim[4] > 1`, dimensions 5.. of size 1) and keep its first volume;
    /// the others are read (so a truncated or oversized file is still an error) and dropped.
    pub first_volume_of_4d: bool,
    /// Accept an oblique orientation (each voxel axis up to [`MAX_OBLIQUE_OFF_AXIS`] off its
    /// nearest world axis, e.g. an EPI run tilted along the AC-PC line) and treat each voxel
    /// axis as its nearest world axis: the planes are then the acquired slices, not world
    /// planes, and the origin and voxel sizes are approximate. Nothing is resampled.
    pub oblique_as_nearest_axis: bool,
}

/// Largest off-axis fraction (sine of the tilt, about 30°) that
/// [`LoadOptions::oblique_as_nearest_axis`] accepts; beyond it the nearest world axis is not
/// a meaningful name for the voxel axis.
pub const MAX_OBLIQUE_OFF_AXIS: f64 = 0.5;

/// Longest side, in voxels, of a volume [`Volume::load`] accepts: 1 m at the 1 mm it requires.
/// Checked on the header, before anything is allocated.
pub const MAX_DIM: usize = 1024;
/// Most voxels in a volume [`Volume::load`] accepts: 2^26 = 67 108 864 (the volumes used
/// here have 7–9 million; a head field of view at 1 mm is ~256^3 = 2^24, and a 0.5 mm volume
/// such as `ch2better.nii.gz`, 35 million, still gets the error saying it is not 1 mm). Bounds
/// the voxel data to 512 MiB (float64) and the peak memory of a load to that plus 256 MiB for
/// the `f32` volume. Checked on the header, before anything is allocated.
pub const MAX_VOXELS: usize = 1 << 26;
/// Largest `vox_offset` (header plus extensions, which are skipped) [`Volume::load`] accepts:
/// 1 MiB.
pub const MAX_VOX_OFFSET: u64 = 1 << 20;
/// Largest file, compressed or not, [`Volume::load`] opens: the largest volume within the
/// limits above (`MAX_VOX_OFFSET + 8 · MAX_VOXELS`) plus 1 MiB for gzip framing. Checked on
/// the file's metadata before it is read.
pub const MAX_FILE_BYTES: u64 = MAX_VOX_OFFSET + 8 * MAX_VOXELS as u64 + (1 << 20);

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
    /// `i` fastest and must hold `n_i · n_j · n_k` finite values; `origin_mm` is the (finite)
    /// world position of voxel `(0, 0, 0)`, `voxel_mm` the (finite) voxel sides.
    pub fn new(
        dims: [usize; 3],
        voxel_mm: [f64; 3],
        origin_mm: [f64; 3],
        data: Vec<f32>,
        source: impl Into<PathBuf>,
    ) -> Result<Self> {
        let source = source.into();
        if !voxel_mm.iter().chain(&origin_mm).all(|v| v.is_finite()) {
            bail!(
                "{}: voxel size {voxel_mm:?} mm or origin {origin_mm:?} mm is not finite",
                source.display()
            );
        }
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
    /// docs for what is accepted and the bounds checked before anything is allocated). A name
    /// ending in `.gz` is decompressed. Every error is one line that starts with `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, LoadOptions::default())
    }

    /// [`load`](Self::load), accepting what `options` opts in to.
    pub fn load_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display();
        // `metadata` follows symbolic links; FIFOs, devices and directories are refused
        // before they are opened (opening a FIFO would block, a device may never end).
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("{shown}: no such file"),
            Err(e) => bail!("{shown}: cannot read: {e}"),
        };
        if !meta.file_type().is_file() {
            bail!("{shown}: not a regular file (a directory, FIFO or device is not a volume)");
        }
        let len = meta.len();
        if len > MAX_FILE_BYTES {
            bail!(
                "{shown}: file is {len} bytes, more than the {MAX_FILE_BYTES} a volume within \
                 the reader's limits can take (MAX_FILE_BYTES)"
            );
        }
        let file = File::open(path).map_err(|e| anyhow!("{shown}: cannot open: {e}"))?;
        let file = BufReader::new(file);
        if is_gz(path) {
            Self::read_from(MultiGzDecoder::new(file), path, None, options)
        } else {
            Self::read_from(file, path, Some(len), options)
        }
    }

    /// [`load`](Self::load) from the bytes of a file in memory: `gzipped` says whether they
    /// are a `.nii.gz` (else a `.nii`); `source` names them in errors and in
    /// [`source`](Self::source). Same checks and bounds as `load`.
    pub fn from_bytes(bytes: &[u8], source: impl AsRef<Path>, gzipped: bool) -> Result<Self> {
        let source = source.as_ref();
        if gzipped {
            Self::read_from(
                MultiGzDecoder::new(bytes),
                source,
                None,
                LoadOptions::default(),
            )
        } else {
            Self::read_from(
                bytes,
                source,
                Some(bytes.len() as u64),
                LoadOptions::default(),
            )
        }
    }

    /// Reads a (decompressed) NIfTI-1 single-file stream: the header first, then — after the
    /// header passed every bound — exactly the bytes it declares, with no more than one byte
    /// beyond them read. `plain_len` is the size of an uncompressed file, checked against the
    /// header before the voxel buffer is allocated.
    fn read_from(
        mut input: impl Read,
        path: &Path,
        plain_len: Option<u64>,
        options: LoadOptions,
    ) -> Result<Self> {
        let shown = path.display();
        let what = if plain_len.is_some() {
            "file"
        } else {
            "gzip stream"
        };
        let io_error =
            |e: io::Error| anyhow!("{shown}: cannot read the NIfTI-1 {what}: {}", one_line(&e));

        let mut raw_header = [0u8; HEADER_BYTES];
        let got = read_full(&mut input, &mut raw_header).map_err(io_error)?;
        if got < HEADER_BYTES {
            bail!(
                "{shown}: not a NIfTI-1 volume: the {what} ends after {got} bytes, inside the \
                 {HEADER_BYTES}-byte header"
            );
        }
        let header = NiftiHeader::from_reader(&raw_header[..])
            .map_err(|e| anyhow!("{shown}: not a NIfTI-1 volume: {e}"))?;
        let layout =
            Layout::of(&header, options.first_volume_of_4d).map_err(|e| anyhow!("{shown}: {e}"))?;
        // The orientation and voxel size come from the header too: refused before any read.
        let affine = Affine::from_header(&header).map_err(|e| anyhow!("{shown}: {e}"))?;
        let max_off_axis = if options.oblique_as_nearest_axis {
            MAX_OBLIQUE_OFF_AXIS
        } else {
            ALIGNMENT_TOLERANCE
        };
        let axes = affine
            .ras_axes(max_off_axis)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        let voxel_mm = [axes[0].length_mm, axes[1].length_mm, axes[2].length_mm];
        if !voxel_mm.iter().all(|s| s.is_finite() && *s > 0.0) {
            bail!("{shown}: voxel size {voxel_mm:?} mm is not finite and positive");
        }
        if !options.any_voxel_size
            && voxel_mm
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

        // Found by fuzzing (nifti_reader): a NaN or infinite translation (quatern_x..z or the
        // srow offsets) passed the axis checks and gave a volume with a non-finite origin.
        let origin = ras_origin(layout.dims, &affine, &axes);
        if !origin.iter().all(|v| v.is_finite()) {
            bail!(
                "{shown}: the {} puts the first voxel at {origin:?} mm, which is not finite",
                affine.form
            );
        }

        let total = layout.data_offset + layout.total_data_bytes();
        if let Some(len) = plain_len {
            if len != total {
                bail!(
                    "{shown}: NIfTI-1 file is {len} bytes, but its header declares {total} ({}){}",
                    layout.declared(),
                    if len < total { ": truncated" } else { "" }
                );
            }
        }

        // Extensions (between the header and vox_offset) are skipped, not kept.
        let skip = layout.data_offset - HEADER_BYTES as u64;
        let skipped = io::copy(&mut (&mut input).take(skip), &mut io::sink()).map_err(io_error)?;
        if skipped < skip {
            bail!(
                "{shown}: truncated NIfTI-1 {what}: it ends after {} bytes, before the voxel \
                 data at vox_offset {}",
                HEADER_BYTES as u64 + skipped,
                layout.data_offset
            );
        }
        let mut raw = Vec::new();
        raw.try_reserve_exact(layout.data_bytes).map_err(|e| {
            anyhow!(
                "{shown}: cannot allocate {} bytes for the voxel data: {e}",
                layout.data_bytes
            )
        })?;
        // The capacity is exact and `take` stops there: `read_to_end` never grows the buffer,
        // and a gzip bomb is not decompressed beyond the declared size.
        (&mut input)
            .take(layout.data_bytes as u64)
            .read_to_end(&mut raw)
            .map_err(io_error)?;
        if raw.len() < layout.data_bytes {
            bail!(
                "{shown}: truncated NIfTI-1 {what}: it ends after {} bytes, the header \
                 declares {total} ({})",
                layout.data_offset + raw.len() as u64,
                layout.declared()
            );
        }
        // The other volumes of a 4-D series are read, not kept.
        let rest = layout.other_volume_bytes();
        let dropped = io::copy(&mut (&mut input).take(rest), &mut io::sink()).map_err(io_error)?;
        if dropped < rest {
            bail!(
                "{shown}: truncated NIfTI-1 {what}: it ends after {} bytes, the header \
                 declares {total} ({})",
                layout.data_offset + layout.data_bytes as u64 + dropped,
                layout.declared()
            );
        }
        // One byte more must not exist (for gzip this also reaches the end of the stream, so
        // its CRC and length are checked).
        if read_full(&mut input, &mut [0u8; 1]).map_err(io_error)? != 0 {
            bail!(
                "{shown}: the NIfTI-1 {what} holds more than the {total} bytes its header \
                 declares ({})",
                layout.declared()
            );
        }

        let (ras_dims, origin_mm, data) = decode_ras(&raw, &header, &layout, &affine, &axes)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        drop(raw);
        Self::new(ras_dims, voxel_mm, origin_mm, data, path)
    }

    /// A volume from voxel values in their own grid order (`values[i + n_i (j + n_j k)]`) and
    /// the voxel-to-world map of that grid in RAS mm (`world = columns · (i, j, k) +
    /// translation`, `columns[a]` the world step of voxel axis `a`), reoriented to RAS order as
    /// [`load`](Self::load) does for NIfTI. Each voxel axis may be up to `max_off_axis` (sine
    /// of the tilt) off its nearest world axis; it is then taken as that axis (nothing is
    /// resampled). `what` names the geometry in errors (e.g. "DICOM geometry").
    pub fn from_world_grid(
        dims: [usize; 3],
        columns: [[f64; 3]; 3],
        translation: [f64; 3],
        values: &[f32],
        max_off_axis: f64,
        what: &'static str,
        source: impl Into<PathBuf>,
    ) -> Result<Self> {
        let source = source.into();
        let shown = source.display().to_string();
        if values.len() != dims.iter().product::<usize>() {
            bail!("{shown}: {} values for a {dims:?} grid", values.len());
        }
        let affine = Affine {
            m: std::array::from_fn(|r| std::array::from_fn(|c| columns[c][r])),
            t: translation,
            form: what,
        };
        let axes = affine
            .ras_axes(max_off_axis)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        let voxel_mm = axes.map(|a| a.length_mm);
        let (ras_dims, origin_mm, data) = reorient(dims, &affine, &axes, |src| Ok(values[src]))
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        Self::new(ras_dims, voxel_mm, origin_mm, data, source)
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

/// Size of the NIfTI-1 header (`sizeof_hdr`).
const HEADER_BYTES: usize = 348;
/// The header plus the 4-byte extender: the least `vox_offset` of a single file.
const MIN_VOX_OFFSET: u64 = 352;

/// Fills `buf` from `input` as far as it goes: the number of bytes read (less than
/// `buf.len()` only at the end of the input).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Whether `path` names a gzip-compressed file (the rule of the `nifti` crate: the file
/// name ends in `.gz`).
fn is_gz(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".gz"))
}

/// An error's text on one line.
fn one_line(e: &dyn fmt::Display) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}

/// Where the voxels of a single-file NIfTI-1 volume are and how big they are, from a header
/// that passed every bound (module docs).
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// `[n_1, n_2, n_3]` in file order.
    dims: [usize; 3],
    datatype: NiftiType,
    /// Bytes per voxel value.
    voxel_bytes: usize,
    /// `vox_offset`.
    data_offset: u64,
    /// `voxels · voxel_bytes` of the (first) volume, at most `MAX_VOXELS · 8`.
    data_bytes: usize,
    /// Volumes in the file (`dim[4]`; 1 unless a 4-D series was accepted); only the first is
    /// decoded.
    volumes: usize,
}

impl Layout {
    /// Checks the header's magic, size, dimensions, datatype and `vox_offset` against the
    /// bounds, computing no size before its factors are bounded.
    fn of(h: &NiftiHeader, accept_4d: bool) -> Result<Self> {
        if h.sizeof_hdr != HEADER_BYTES as i32 {
            bail!(
                "not a NIfTI-1 volume: sizeof_hdr is {}, not {HEADER_BYTES}",
                h.sizeof_hdr
            );
        }
        if &h.magic != b"n+1\0" {
            bail!(
                "not a single-file NIfTI-1 volume: magic {:?} is not \"n+1\" (header/image \
                 pairs, .hdr + .img, are not supported)",
                String::from_utf8_lossy(&h.magic).trim_end_matches('\0')
            );
        }
        let (dims, volumes) = spatial_dims(h, accept_4d)?;
        let voxels: usize = dims.iter().product();
        // Bounded factors: sides ≤ MAX_DIM (2^10) and volumes ≤ MAX_DIM, so no overflow.
        if voxels * volumes > MAX_VOXELS {
            bail!(
                "dim = {dims:?} x {volumes} volume(s) is {} voxels, more than the limit of \
                 {MAX_VOXELS} (MAX_VOXELS)",
                voxels * volumes
            );
        }
        let datatype = h
            .data_type()
            .map_err(|_| anyhow!("unknown datatype code {}", h.datatype))?;
        let voxel_bytes = match datatype {
            NiftiType::Uint8 | NiftiType::Int8 => 1,
            NiftiType::Uint16 | NiftiType::Int16 => 2,
            NiftiType::Uint32 | NiftiType::Int32 | NiftiType::Float32 => 4,
            NiftiType::Float64 => 8,
            other => bail!(
                "unsupported datatype {other:?} (code {}); expected a real scalar type \
                 (uint8, int8, uint16, int16, uint32, int32, float32, float64)",
                h.datatype
            ),
        };
        let offset = h.vox_offset;
        if !(offset.is_finite()
            && offset.fract() == 0.0
            && (MIN_VOX_OFFSET as f32..=MAX_VOX_OFFSET as f32).contains(&offset))
        {
            bail!(
                "vox_offset {offset} is not a whole number of bytes in \
                 {MIN_VOX_OFFSET}..={MAX_VOX_OFFSET} (MAX_VOX_OFFSET)"
            );
        }
        Ok(Self {
            dims,
            datatype,
            voxel_bytes,
            // Whole and within 352..=2^20: exact in f32 and u64.
            data_offset: offset as u64,
            // At most 2^26 · 8 = 2^29.
            data_bytes: voxels * voxel_bytes,
            volumes,
        })
    }

    /// Bytes of the volumes after the first.
    fn other_volume_bytes(&self) -> u64 {
        (self.volumes as u64 - 1) * self.data_bytes as u64
    }

    /// Bytes of all volumes.
    fn total_data_bytes(&self) -> u64 {
        self.volumes as u64 * self.data_bytes as u64
    }

    fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// How the declared size is made up, for errors.
    fn declared(&self) -> String {
        format!(
            "vox_offset {} + dim {:?} x {} volume(s) = {} voxels of {} bytes",
            self.data_offset,
            self.dims,
            self.volumes,
            self.voxels() * self.volumes,
            self.voxel_bytes
        )
    }
}

/// `[n_1, n_2, n_3]` of a 3-D volume, each in `1..=MAX_DIM`, and the number of volumes:
/// dimensions 4.. must be 1 if present, except `dim[4]` (in `1..=MAX_DIM`) when `accept_4d`.
fn spatial_dims(header: &NiftiHeader, accept_4d: bool) -> Result<([usize; 3], usize)> {
    // NIfTI-1 dims are signed 16-bit; the nifti crate reads them as u16.
    let dim = header.dim.map(|d| d as i16);
    let rank = dim[0];
    if !(1..=7).contains(&rank) {
        bail!("invalid dim[0] = {rank} in the header");
    }
    let extent = &dim[1..=rank as usize];
    let series = if accept_4d && rank >= 4 { 1 } else { 0 };
    if rank < 3 || extent[3 + series..].iter().any(|&d| d != 1) {
        if accept_4d {
            bail!("not a 3-D volume or a 4-D series: dim = {extent:?}");
        }
        bail!("not a 3-D volume: dim = {extent:?}");
    }
    let volumes = if series == 1 { extent[3] } else { 1 };
    if !(1..=MAX_DIM as i16).contains(&volumes) {
        bail!("dim = {extent:?}: {volumes} volumes is not in 1..={MAX_DIM}");
    }
    if extent[..3].iter().any(|&d| d < 1) {
        bail!("empty dimension: dim = {extent:?}");
    }
    if extent[..3].iter().any(|&d| d as usize > MAX_DIM) {
        bail!("dim = {extent:?} has a side over the limit of {MAX_DIM} voxels (MAX_DIM)");
    }
    Ok((
        [extent[0], extent[1], extent[2]].map(|d| d as usize),
        volumes as usize,
    ))
}

/// Decodes the raw voxel bytes (file order, first index fastest; exactly
/// `layout.data_bytes`) to scaled `f32`s in RAS order ([`reorient`]), each finite.
fn decode_ras(
    raw: &[u8],
    header: &NiftiHeader,
    layout: &Layout,
    affine: &Affine,
    axes: &[AxisMap; 3],
) -> Result<([usize; 3], [f64; 3], Vec<f32>)> {
    let big = header.endianness == Endianness::Big;
    // NIfTI-1: scl_slope == 0 means the values are not scaled.
    let (slope, inter) = if header.scl_slope == 0.0 {
        (1.0, 0.0)
    } else {
        (f64::from(header.scl_slope), f64::from(header.scl_inter))
    };
    if !slope.is_finite() || !inter.is_finite() {
        bail!("non-finite scl_slope / scl_inter ({slope}, {inter})");
    }
    if raw.len() != layout.data_bytes {
        bail!(
            "{} bytes of voxel data, {} expected",
            raw.len(),
            layout.data_bytes
        );
    }
    let dims = layout.dims;
    // Each arm reads the value of file voxel `src` in the file's byte order; `raw` holds
    // every voxel (checked above), so the chunk exists and has the type's size.
    macro_rules! run {
        ($t:ty) => {{
            const SIZE: usize = std::mem::size_of::<$t>();
            reorient(dims, affine, axes, |src| {
                let mut b = [0u8; SIZE];
                b.copy_from_slice(&raw[src * SIZE..(src + 1) * SIZE]);
                let v = if big {
                    <$t>::from_be_bytes(b)
                } else {
                    <$t>::from_le_bytes(b)
                };
                let scaled = slope * (v as f64) + inter;
                let single = scaled as f32;
                if !scaled.is_finite() || !single.is_finite() {
                    bail!(
                        "non-finite voxel value at file index (i, j, k) = {:?}",
                        unravel(src, dims)
                    );
                }
                Ok(single)
            })
        }};
    }
    match layout.datatype {
        NiftiType::Uint8 => run!(u8),
        NiftiType::Int8 => run!(i8),
        NiftiType::Uint16 => run!(u16),
        NiftiType::Int16 => run!(i16),
        NiftiType::Uint32 => run!(u32),
        NiftiType::Int32 => run!(i32),
        NiftiType::Float32 => run!(f32),
        NiftiType::Float64 => run!(f64),
        // `Layout::of` admits only the types above.
        other => bail!("unsupported datatype {other:?}"),
    }
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
    /// `max_off_axis`: the largest accepted off-axis fraction of a voxel axis
    /// ([`ALIGNMENT_TOLERANCE`], or up to [`MAX_OBLIQUE_OFF_AXIS`] when opted in).
    fn ras_axes(&self, max_off_axis: f64) -> Result<[AxisMap; 3]> {
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
            if off_axis > max_off_axis {
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

/// World position (RAS, mm) of the RAS voxel (0, 0, 0) of a volume of file dimensions `dims`:
/// the file voxel at index 0 along a positive axis, `n − 1` along a flipped one.
fn ras_origin(dims: [usize; 3], affine: &Affine, axes: &[AxisMap; 3]) -> [f64; 3] {
    let mut corner = [0.0_f64; 3];
    for a in axes {
        if !a.positive {
            corner[a.voxel_axis] = (dims[a.voxel_axis] - 1) as f64;
        }
    }
    std::array::from_fn(|r| affine.t[r] + (0..3).map(|c| affine.m[r][c] * corner[c]).sum::<f64>())
}

/// Permutes and flips a volume of file dimensions `dims` to RAS order, taking the value of
/// file voxel `src` (`i` fastest) from `value`. Returns the RAS dimensions, the world position
/// of the new voxel (0, 0, 0) and the data, or the first error of `value`.
fn reorient(
    dims: [usize; 3],
    affine: &Affine,
    axes: &[AxisMap; 3],
    mut value: impl FnMut(usize) -> Result<f32>,
) -> Result<([usize; 3], [f64; 3], Vec<f32>)> {
    let ras_dims = axes.map(|a| dims[a.voxel_axis]);
    let origin_mm = ras_origin(dims, affine, axes);
    let n: usize = dims.iter().product();
    let stride = [1, dims[0], dims[0] * dims[1]];
    let mut data = Vec::new();
    data.try_reserve_exact(n)
        .map_err(|e| anyhow!("cannot allocate {n} voxel values: {e}"))?;
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
                data.push(value(src)?);
            }
        }
    }
    Ok((ras_dims, origin_mm, data))
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
        let e = Volume::new([1; 3], [1.0; 3], [f64::NAN, 0.0, 0.0], vec![0.0], "x").unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");
    }
}
