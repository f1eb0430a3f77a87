//! On-disk formats of the exported data sets: a [`Split`] (clean complex target images) and a
//! [`SimulatedSet`] (a split plus simulated low-field k-space). Other tools — the simulator,
//! the evaluation, and Python — read these files, so the layout is a contract.
//!
//! # A split: `<dir>/<name>.npz` + `<dir>/<name>.json`
//! The `.npz` is an uncompressed NumPy archive (`np.load(path)`) with
//! * `target`: complex64 `[S, H, W]` — the clean images (`H = W = 256` from the export), row-major
//!   `[N_y][N_x]` per slice (DESIGN §3.1);
//! * `head_mask`: uint8 `[S, H, W]`, 1 inside the head (see `metrics::head_mask`), else 0.
//!
//! The JSON sidecar (same stem, `.json`; `json.load`) holds
//! `{"format": "sparsemap-split/1", "name", "count": S, "shape": [S, H, W], "arrays": {name:
//! description}, "slices": [SliceMeta; S], "provenance": {...}}`, where `slices[s]` describes
//! `target[s]` ([`SliceMeta`]) and `provenance` says how the data were made (source files with
//! their sha256, tool version, seed, split rule; written by `export`, kept verbatim here).
//!
//! # A simulated set: `<path>.npz` + `<path>.json`
//! The `.npz` holds the split's `target` and `head_mask` plus, all `[S, H, W]`:
//! * `kspace`: complex64 — measured k-space, centred and unitary (DESIGN §3.2), zero where not
//!   sampled;
//! * `mask`: uint8 — 1 where sampled;
//! * `zero_filled`: complex64 — `F^H kspace`, the zero-filled reconstruction.
//!
//! The sidecar has `"format": "sparsemap-simulated/1"`, the split's fields (name, count, shape,
//! arrays, slices, provenance) and `"acquisition"`: how the k-space was simulated (written by the
//! simulator, kept verbatim here).
//!
//! # Guarantees
//! Writers check the data before writing and write each file under a temporary name that is
//! renamed when complete, so an interrupted run never leaves a file that looks finished.
//! Readers check that the archive and the sidecar are readable, that every array has the same
//! `[S, H, W]` shape, that `count` and `shape` in the sidecar agree with the arrays and the
//! number of `slices`, that masks hold only 0 and 1 (uint8; NumPy bool is accepted too) and that
//! all complex values are finite. Every error names the offending file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array3, Ix3, OwnedRepr};
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyError, ReadNpzError, ReadableElement};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};

pub use crate::volume::Orientation;

/// `format` of a split sidecar.
pub const SPLIT_FORMAT: &str = "sparsemap-split/1";
/// `format` of a simulated-set sidecar.
pub const SIMULATED_FORMAT: &str = "sparsemap-simulated/1";

/// Where one slice came from and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceMeta {
    /// `"colin27_t1"`, `"mni152_t1"` or `"synthetic_t2"`.
    pub volume: String,
    /// The source file (for `synthetic_t2` the three MNI files, joined by `;`).
    pub source: String,
    pub orientation: Orientation,
    /// Index along the orientation's fixed RAS axis: `k` (axial), `j` (coronal), `i` (sagittal).
    pub index: usize,
    /// Half-open range `[k0, k1)` of superior-axis indices the slice covers: `[k, k + 1)` for an
    /// axial slice, the slab for a coronal or sagittal band. This is what makes the splits
    /// checkably voxel-disjoint.
    pub k_range: [usize; 2],
    /// `[h, w]` of the plane before it was embedded centred in the grid at row `(H − h) / 2`,
    /// column `(W − w) / 2`.
    pub plane_shape: [usize; 2],
    /// Seed of the synthetic phase (see `export::phase_seed`).
    pub phase_seed: u64,
    /// Maximum of the plane in source units (the magnitude was divided by it).
    pub peak: f32,
}

/// A set of clean target slices with their head masks and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub name: String,
    /// `[S, H, W]` complex images.
    pub targets: Array3<Complex32>,
    /// `[S, H, W]`, true inside the head.
    pub head_masks: Array3<bool>,
    /// One per slice, in order.
    pub slices: Vec<SliceMeta>,
    /// Free-form JSON kept verbatim (see the module docs).
    pub provenance: serde_json::Value,
}

impl Split {
    /// Number of slices `S`.
    pub fn len(&self) -> usize {
        self.targets.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[S, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        shape3(&self.targets)
    }

    /// Checks the invariants the readers check; `file` is named in the error.
    fn validate(&self, file: &Path) -> Result<()> {
        let f = file.display();
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            bail!("{f}: split name {:?} is not a plain file stem", self.name);
        }
        let shape = self.shape();
        if shape3(&self.head_masks) != shape {
            bail!(
                "{f}: head_mask shape {:?} differs from target shape {shape:?}",
                self.head_masks.shape()
            );
        }
        if self.slices.len() != shape[0] {
            bail!(
                "{f}: {} slice records for {} target slices",
                self.slices.len(),
                shape[0]
            );
        }
        check_finite(&self.targets, "target", file)
    }
}

/// A split with simulated acquisitions (module docs for the file layout).
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedSet {
    pub split: Split,
    /// `[S, H, W]` centred unitary k-space, zero where not sampled.
    pub kspace: Array3<Complex32>,
    /// `[S, H, W]`, true where sampled.
    pub masks: Array3<bool>,
    /// `[S, H, W]` `F^H kspace`.
    pub zero_filled: Array3<Complex32>,
    /// Free-form JSON kept verbatim: how the k-space was simulated.
    pub acquisition: serde_json::Value,
}

impl SimulatedSet {
    fn validate(&self, file: &Path) -> Result<()> {
        self.split.validate(file)?;
        let shape = self.split.shape();
        for (name, got) in [
            ("kspace", shape3(&self.kspace)),
            ("mask", shape3(&self.masks)),
            ("zero_filled", shape3(&self.zero_filled)),
        ] {
            if got != shape {
                bail!(
                    "{}: {name} shape {got:?} differs from target shape {shape:?}",
                    file.display()
                );
            }
        }
        check_finite(&self.kspace, "kspace", file)?;
        check_finite(&self.zero_filled, "zero_filled", file)
    }
}

/// The JSON sidecar of an `.npz`.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: String,
    name: String,
    count: usize,
    shape: [usize; 3],
    /// Descriptions for Python users; ignored when reading.
    #[serde(default)]
    arrays: BTreeMap<String, String>,
    slices: Vec<SliceMeta>,
    provenance: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acquisition: Option<serde_json::Value>,
}

/// The sidecar belonging to an `.npz`: same path with the extension `.json`.
pub fn sidecar_path(npz: &Path) -> PathBuf {
    npz.with_extension("json")
}

/// Writes `<dir>/<name>.npz` and `<dir>/<name>.json` (module docs), creating `dir` if needed.
/// Returns the `.npz` path.
pub fn write_split(dir: &Path, split: &Split) -> Result<PathBuf> {
    let npz = dir.join(format!("{}.npz", split.name));
    split.validate(&npz)?;
    fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    write_npz(
        &npz,
        &[
            ("target", Array::Complex(&split.targets)),
            ("head_mask", Array::Mask(&split.head_masks)),
        ],
    )?;
    write_sidecar(&npz, sidecar(split, SPLIT_FORMAT, None))?;
    Ok(npz)
}

/// Reads a split written by [`write_split`] (or by Python in the same layout) from its `.npz`
/// path and the sidecar next to it, with the checks listed in the module docs.
pub fn read_split(npz_path: &Path) -> Result<Split> {
    let (sidecar, json) = read_sidecar(npz_path, SPLIT_FORMAT)?;
    let mut npz = open_npz(npz_path)?;
    let split = Split {
        name: sidecar.name.clone(),
        targets: read_array(&mut npz, npz_path, "target")?,
        head_masks: read_mask(&mut npz, npz_path, "head_mask")?,
        slices: sidecar.slices.clone(),
        provenance: sidecar.provenance.clone(),
    };
    check_against_sidecar(&sidecar, split.shape(), npz_path, &json)?;
    split.validate(npz_path)?;
    Ok(split)
}

/// Writes `path_npz` and its sidecar (module docs), creating the parent directory if needed.
pub fn write_simulated(path_npz: &Path, set: &SimulatedSet) -> Result<()> {
    set.validate(path_npz)?;
    if let Some(dir) = path_npz.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    write_npz(
        path_npz,
        &[
            ("target", Array::Complex(&set.split.targets)),
            ("head_mask", Array::Mask(&set.split.head_masks)),
            ("kspace", Array::Complex(&set.kspace)),
            ("mask", Array::Mask(&set.masks)),
            ("zero_filled", Array::Complex(&set.zero_filled)),
        ],
    )?;
    write_sidecar(
        path_npz,
        sidecar(&set.split, SIMULATED_FORMAT, Some(set.acquisition.clone())),
    )
}

/// Reads a simulated set written by [`write_simulated`] (or Python), with the module's checks.
pub fn read_simulated(path_npz: &Path) -> Result<SimulatedSet> {
    let (sidecar, json) = read_sidecar(path_npz, SIMULATED_FORMAT)?;
    let acquisition = sidecar
        .acquisition
        .clone()
        .ok_or_else(|| anyhow!("{}: sidecar has no \"acquisition\"", json.display()))?;
    let mut npz = open_npz(path_npz)?;
    let set = SimulatedSet {
        split: Split {
            name: sidecar.name.clone(),
            targets: read_array(&mut npz, path_npz, "target")?,
            head_masks: read_mask(&mut npz, path_npz, "head_mask")?,
            slices: sidecar.slices.clone(),
            provenance: sidecar.provenance.clone(),
        },
        kspace: read_array(&mut npz, path_npz, "kspace")?,
        masks: read_mask(&mut npz, path_npz, "mask")?,
        zero_filled: read_array(&mut npz, path_npz, "zero_filled")?,
        acquisition,
    };
    check_against_sidecar(&sidecar, set.split.shape(), path_npz, &json)?;
    set.validate(path_npz)?;
    Ok(set)
}

fn shape3<T>(a: &Array3<T>) -> [usize; 3] {
    let (s, h, w) = a.dim();
    [s, h, w]
}

fn check_finite(a: &Array3<Complex32>, name: &str, file: &Path) -> Result<()> {
    match a.indexed_iter().find(|(_, z)| !z.is_finite()) {
        Some(((s, y, x), _)) => bail!(
            "{}: {name} has a non-finite value at [{s}, {y}, {x}]",
            file.display()
        ),
        None => Ok(()),
    }
}

fn array_descriptions(simulated: bool) -> BTreeMap<String, String> {
    let mut d = BTreeMap::from([
        (
            "target".to_owned(),
            "complex64 [S, H, W]: clean image, row-major [N_y][N_x]".to_owned(),
        ),
        (
            "head_mask".to_owned(),
            "uint8 [S, H, W]: 1 inside the head".to_owned(),
        ),
    ]);
    if simulated {
        d.extend([
            (
                "kspace".to_owned(),
                "complex64 [S, H, W]: centred unitary k-space (DESIGN §3.2), 0 where not sampled"
                    .to_owned(),
            ),
            (
                "mask".to_owned(),
                "uint8 [S, H, W]: 1 where sampled".to_owned(),
            ),
            (
                "zero_filled".to_owned(),
                "complex64 [S, H, W]: F^H kspace".to_owned(),
            ),
        ]);
    }
    d
}

fn sidecar(split: &Split, format: &str, acquisition: Option<serde_json::Value>) -> Sidecar {
    Sidecar {
        format: format.to_owned(),
        name: split.name.clone(),
        count: split.len(),
        shape: split.shape(),
        arrays: array_descriptions(acquisition.is_some()),
        slices: split.slices.clone(),
        provenance: split.provenance.clone(),
        acquisition,
    }
}

/// An array to put in an `.npz`; masks are stored as uint8.
enum Array<'a> {
    Complex(&'a Array3<Complex32>),
    Mask(&'a Array3<bool>),
}

/// `path` + `.part`: where a file is written before it is renamed into place.
fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

fn write_npz(path: &Path, arrays: &[(&str, Array<'_>)]) -> Result<()> {
    let part = partial_path(path);
    let result = (|| -> Result<()> {
        let file = File::create(&part).context("cannot create")?;
        let mut npz = NpzWriter::new(BufWriter::new(file));
        for (name, array) in arrays {
            match array {
                Array::Complex(a) => npz.add_array(*name, *a),
                Array::Mask(m) => npz.add_array(*name, &m.mapv(u8::from)),
            }
            .with_context(|| format!("cannot write array {name}"))?;
        }
        let mut writer = npz.finish().context("cannot finish the archive")?;
        writer.flush().context("cannot flush")?;
        Ok(())
    })();
    finish_partial(result, &part, path)
}

fn write_sidecar(npz: &Path, sidecar: Sidecar) -> Result<()> {
    let path = sidecar_path(npz);
    let part = partial_path(&path);
    let result = (|| -> Result<()> {
        let mut text = serde_json::to_string_pretty(&sidecar).context("cannot serialise")?;
        text.push('\n');
        fs::write(&part, text).context("cannot write")
    })();
    finish_partial(result, &part, &path)
}

/// Renames a completed `part` file to `path`, or removes it after a failure; errors name `path`.
fn finish_partial(result: Result<()>, part: &Path, path: &Path) -> Result<()> {
    match result.and_then(|()| fs::rename(part, path).context("cannot rename into place")) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Best effort: the error that matters is the one being returned.
            let _ = fs::remove_file(part);
            Err(e.context(format!("{}: write failed", path.display())))
        }
    }
}

fn read_sidecar(npz: &Path, format: &str) -> Result<(Sidecar, PathBuf)> {
    if !npz.is_file() {
        bail!("{}: no such file", npz.display());
    }
    let json = sidecar_path(npz);
    let j = json.display();
    let text = fs::read_to_string(&json).map_err(|e| {
        anyhow!(
            "{j}: cannot read the JSON sidecar of {}: {e}",
            npz.display()
        )
    })?;
    let sidecar: Sidecar =
        serde_json::from_str(&text).map_err(|e| anyhow!("{j}: invalid sidecar: {e}"))?;
    if sidecar.format != format {
        bail!("{j}: format is {:?}, expected {format:?}", sidecar.format);
    }
    Ok((sidecar, json))
}

fn check_against_sidecar(
    sidecar: &Sidecar,
    shape: [usize; 3],
    npz: &Path,
    json: &Path,
) -> Result<()> {
    if sidecar.shape != shape || sidecar.count != shape[0] || sidecar.slices.len() != shape[0] {
        bail!(
            "{}: sidecar says count {} and shape {:?} with {} slice records, but the arrays in {} \
             are {shape:?}",
            json.display(),
            sidecar.count,
            sidecar.shape,
            sidecar.slices.len(),
            npz.display()
        );
    }
    Ok(())
}

fn open_npz(path: &Path) -> Result<NpzReader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
    NpzReader::new(BufReader::new(file))
        .map_err(|e| anyhow!("{}: not a readable .npz archive: {e}", path.display()))
}

fn read_array<T: ReadableElement>(
    npz: &mut NpzReader<BufReader<File>>,
    path: &Path,
    name: &str,
) -> Result<Array3<T>> {
    npz.by_name::<OwnedRepr<T>, Ix3>(name)
        .map_err(|e| anyhow!("{}: array {name:?}: {e}", path.display()))
}

/// A mask stored as uint8 (0 or 1) or as NumPy bool.
fn read_mask(
    npz: &mut NpzReader<BufReader<File>>,
    path: &Path,
    name: &str,
) -> Result<Array3<bool>> {
    match npz.by_name::<OwnedRepr<u8>, Ix3>(name) {
        Ok(m) => {
            if let Some(((s, y, x), v)) = m.indexed_iter().find(|(_, &v)| v > 1) {
                bail!(
                    "{}: array {name:?} holds {v} at [{s}, {y}, {x}]; a mask holds only 0 and 1",
                    path.display()
                );
            }
            Ok(m.mapv(|v| v == 1))
        }
        Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => read_array(npz, path, name),
        Err(e) => Err(anyhow!("{}: array {name:?}: {e}", path.display())),
    }
}
