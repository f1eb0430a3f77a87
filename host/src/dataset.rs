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
//! # A multi-coil simulated set (`simulate --coils C`)
//! The same files, plus in the `.npz` (`C` coils, `M` noise-scan samples per coil):
//! * `coil_kspace`: complex64 `[S, C, H, W]` — each coil's measured k-space
//!   `M (.) (F(S_c target) + n_c)` (the mask is `mask`, the same for every coil);
//! * `sensitivities`: complex64 `[C, H, W]` — the true maps `S_c`, `sum_c |S_c|^2 = 1`;
//! * `noise_scan`: complex64 `[S, C, M]` — pure-noise samples of each slice's receive chain;
//! * `noise_covariance`: complex128 `[C, C]` — `Psi`; slice `s`'s noise has covariance
//!   `sigma_s^2 Psi` (`sigma_s` in the acquisition's slice records);
//!
//! and in the sidecar `"coils": {"count": C, "noise_samples": M, "spec": CoilSpec}`
//! ([`crate::coils`] documents the simulation). `kspace`, `mask` and `zero_filled` stay the
//! single-coil simulation of the same slices with the same seeds (the mask is identical), so
//! every single-coil reader works unchanged on a multi-coil set.
//!
//! # Guarantees
//! Writers check the data before writing and write each file under a temporary name that is
//! renamed when complete, so an interrupted run never leaves a file that looks finished.
//! Readers check that the archive and the sidecar are readable, that every array has the same
//! `[S, H, W]` shape, that `count` and `shape` in the sidecar agree with the arrays and the
//! number of `slices`, that masks hold only 0 and 1 (uint8; NumPy bool is accepted too) and that
//! all complex values are finite. Every error names the offending file.
//!
//! # Hostile input
//! Nothing a file declares is allocated before it is bounded. The readers refuse what is not a
//! regular file, a sidecar over [`MAX_SIDECAR_BYTES`] and a sidecar whose `count`, `shape[0]`
//! and number of `slices` disagree. Each array member of the archive is opened by hand before
//! it is read: it must be stored uncompressed (as NumPy's `np.savez` and [`NpzWriter`] write
//! it) and lie within the file; its `.npy` header must be at most [`MAX_NPY_HEADER_BYTES`],
//! declare exactly the sidecar's `[S, H, W]` and a dtype whose size, times `S·H·W`, plus the
//! header is the member's size. So no array buffer is larger than the bytes the file holds.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array2, Array3, Array4, ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{NpzWriter, ReadDataError, ReadableElement};
use num_complex::{Complex32, Complex64};

use crate::coils::{CoilSpec, CoilStack};
use serde::{Deserialize, Serialize};
use zip::read::ZipFile;
use zip::{CompressionMethod, ZipArchive};

pub use crate::volume::Orientation;

/// Largest JSON sidecar the readers accept, in bytes: 64 MiB (a slice record is ~300 bytes).
/// Checked on the file's size before it is read.
pub const MAX_SIDECAR_BYTES: u64 = 64 << 20;
/// Longest `.npy` header (magic, version, length and the dictionary describing the array) the
/// readers accept, in bytes: 64 KiB (NumPy writes 128; `np.load` refuses more than 10 000 by
/// default). Checked before the header is read.
pub const MAX_NPY_HEADER_BYTES: usize = 1 << 16;

/// Deepest nesting of brackets in an `.npy` header the readers parse (NumPy writes 2).
const MAX_NPY_HEADER_NESTING: usize = 8;

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
    /// Multi-coil sets only (module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coils: Option<CoilsSidecar>,
}

/// The `"coils"` entry of a multi-coil set's sidecar.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CoilsSidecar {
    count: usize,
    noise_samples: usize,
    spec: CoilSpec,
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
    let mut npz = Npz::open(npz_path, &sidecar, &json)?;
    let split = Split {
        name: sidecar.name.clone(),
        targets: npz.array("target")?,
        head_masks: npz.mask("head_mask")?,
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

/// Writes a multi-coil simulated set (module docs): `set` as [`write_simulated`] does, plus
/// `coils`' arrays and the `"coils"` sidecar entry. `coils` must have `set`'s slices and grid
/// and `spec.coils` coils.
pub fn write_simulated_coils(
    path_npz: &Path,
    set: &SimulatedSet,
    coils: &CoilStack,
    spec: &CoilSpec,
) -> Result<()> {
    set.validate(path_npz)?;
    let [s, h, w] = set.split.shape();
    let p = path_npz.display();
    let (ks, kc, kh, kw) = coils.kspace.dim();
    let c = spec.coils;
    let m = coils.noise_scan.dim().2;
    if (ks, kc, kh, kw) != (s, c, h, w)
        || coils.sensitivities.dim() != (c, h, w)
        || coils.noise_scan.dim() != (s, c, m)
        || coils.noise_covariance.dim() != (c, c)
        || m != spec.noise_samples
    {
        bail!(
            "{p}: coil arrays kspace {:?}, sensitivities {:?}, noise_scan {:?}, covariance {:?} \
             do not fit [S, H, W] = {:?} with {c} coils and {} noise samples",
            coils.kspace.dim(),
            coils.sensitivities.dim(),
            coils.noise_scan.dim(),
            coils.noise_covariance.dim(),
            [s, h, w],
            spec.noise_samples
        );
    }
    for (name, finite) in [
        ("coil_kspace", coils.kspace.iter().all(|v| v.is_finite())),
        (
            "sensitivities",
            coils.sensitivities.iter().all(|v| v.is_finite()),
        ),
        ("noise_scan", coils.noise_scan.iter().all(|v| v.is_finite())),
        (
            "noise_covariance",
            coils.noise_covariance.iter().all(|v| v.is_finite()),
        ),
    ] {
        if !finite {
            bail!("{p}: {name} has non-finite values");
        }
    }
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
            ("coil_kspace", Array::Complex4(&coils.kspace)),
            ("sensitivities", Array::Complex(&coils.sensitivities)),
            ("noise_scan", Array::Complex(&coils.noise_scan)),
            (
                "noise_covariance",
                Array::Complex128(&coils.noise_covariance),
            ),
        ],
    )?;
    let mut car = sidecar(&set.split, SIMULATED_FORMAT, Some(set.acquisition.clone()));
    car.arrays.extend(coil_array_descriptions());
    car.coils = Some(CoilsSidecar {
        count: c,
        noise_samples: m,
        spec: *spec,
    });
    write_sidecar(path_npz, car)
}

/// The coil arrays of a simulated set written by [`write_simulated_coils`]: `None` for a
/// single-coil set (no `"coils"` in the sidecar). Shapes are checked against the sidecar
/// before anything is read (module docs, "Hostile input"), values for finiteness.
pub fn read_coils(path_npz: &Path) -> Result<Option<(CoilStack, CoilSpec)>> {
    let (sidecar, json) = read_sidecar(path_npz, SIMULATED_FORMAT)?;
    let Some(coils) = sidecar.coils.clone() else {
        return Ok(None);
    };
    let j = json.display();
    let (c, m) = (coils.count, coils.noise_samples);
    if !(1..=crate::coils::MAX_COILS).contains(&c) || coils.spec.coils != c {
        bail!(
            "{j}: coils count {c} (spec {}) must be in 1..={}",
            coils.spec.coils,
            crate::coils::MAX_COILS
        );
    }
    if m == 0 || m > 1 << 24 {
        bail!("{j}: {m} noise samples per coil (1..=2^24 accepted)");
    }
    let [s, h, w] = sidecar.shape;
    let mut npz = Npz::open(path_npz, &sidecar, &json)?;
    let complex = |npz: &mut Npz<'_>, name: &str, shape: &[usize]| -> Result<ArrayD<Complex32>> {
        let a = npz
            .read_as_shape::<Complex32>(name, shape)?
            .map_err(|dtype| {
                anyhow!(
                    "{}: array {name:?} has dtype {dtype}, not complex64 ('<c8')",
                    path_npz.display()
                )
            })?;
        if a.iter().any(|v| !v.is_finite()) {
            bail!("{}: {name} has non-finite values", path_npz.display());
        }
        Ok(a)
    };
    let kspace = complex(&mut npz, "coil_kspace", &[s, c, h, w])?;
    let sensitivities = complex(&mut npz, "sensitivities", &[c, h, w])?;
    let noise_scan = complex(&mut npz, "noise_scan", &[s, c, m])?;
    let psi = npz
        .read_as_shape::<Complex64>("noise_covariance", &[c, c])?
        .map_err(|dtype| {
            anyhow!(
                "{}: array \"noise_covariance\" has dtype {dtype}, not complex128 ('<c16')",
                path_npz.display()
            )
        })?;
    if psi.iter().any(|v| !v.is_finite()) {
        bail!(
            "{}: noise_covariance has non-finite values",
            path_npz.display()
        );
    }
    let dims = |e: ndarray::ShapeError| anyhow!("{}: {e}", path_npz.display());
    Ok(Some((
        CoilStack {
            kspace: kspace.into_dimensionality::<ndarray::Ix4>().map_err(dims)?,
            sensitivities: sensitivities
                .into_dimensionality::<ndarray::Ix3>()
                .map_err(dims)?,
            noise_scan: noise_scan
                .into_dimensionality::<ndarray::Ix3>()
                .map_err(dims)?,
            noise_covariance: psi.into_dimensionality::<ndarray::Ix2>().map_err(dims)?,
        },
        coils.spec,
    )))
}

/// Reads a simulated set written by [`write_simulated`] (or Python), with the module's checks.
pub fn read_simulated(path_npz: &Path) -> Result<SimulatedSet> {
    let (sidecar, json) = read_sidecar(path_npz, SIMULATED_FORMAT)?;
    let acquisition = sidecar
        .acquisition
        .clone()
        .ok_or_else(|| anyhow!("{}: sidecar has no \"acquisition\"", json.display()))?;
    let mut npz = Npz::open(path_npz, &sidecar, &json)?;
    let set = SimulatedSet {
        split: Split {
            name: sidecar.name.clone(),
            targets: npz.array("target")?,
            head_masks: npz.mask("head_mask")?,
            slices: sidecar.slices.clone(),
            provenance: sidecar.provenance.clone(),
        },
        kspace: npz.array("kspace")?,
        masks: npz.mask("mask")?,
        zero_filled: npz.array("zero_filled")?,
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

fn coil_array_descriptions() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "coil_kspace".to_owned(),
            "complex64 [S, C, H, W]: each coil's centred unitary k-space, 0 where not sampled"
                .to_owned(),
        ),
        (
            "sensitivities".to_owned(),
            "complex64 [C, H, W]: true receive maps, sum_c |S_c|^2 = 1".to_owned(),
        ),
        (
            "noise_scan".to_owned(),
            "complex64 [S, C, M]: pure-noise samples, covariance sigma_s^2 Psi".to_owned(),
        ),
        (
            "noise_covariance".to_owned(),
            "complex128 [C, C]: Psi (unit mean diagonal)".to_owned(),
        ),
    ])
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
        coils: None,
    }
}

/// An array to put in an `.npz`; masks are stored as uint8.
enum Array<'a> {
    Complex(&'a Array3<Complex32>),
    Complex4(&'a Array4<Complex32>),
    Complex128(&'a Array2<Complex64>),
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
                Array::Complex4(a) => npz.add_array(*name, *a),
                Array::Complex128(a) => npz.add_array(*name, *a),
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

/// An error's text on one line (the `.npy` header parser's errors draw the input).
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The size of the regular file `path` (following symbolic links); an error naming it if it
/// is missing or not a regular file (a FIFO would block the read, a device never end).
fn regular_file_len(path: &Path, what: &str) -> Result<u64> {
    match fs::metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(m.len()),
        Ok(_) => bail!("{}: {what} is not a regular file", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{}: no such file", path.display())
        }
        Err(e) => bail!("{}: cannot read {what}: {e}", path.display()),
    }
}

fn read_sidecar(npz: &Path, format: &str) -> Result<(Sidecar, PathBuf)> {
    regular_file_len(npz, "the archive")?;
    let json = sidecar_path(npz);
    let j = json.display();
    let len = regular_file_len(&json, &format!("the JSON sidecar of {}", npz.display()))?;
    if len > MAX_SIDECAR_BYTES {
        bail!(
            "{j}: sidecar is {len} bytes, more than the limit of {MAX_SIDECAR_BYTES} \
             (MAX_SIDECAR_BYTES)"
        );
    }
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
    if sidecar.count != sidecar.shape[0] || sidecar.slices.len() != sidecar.count {
        bail!(
            "{j}: sidecar says count {} and shape {:?} with {} slice records",
            sidecar.count,
            sidecar.shape,
            sidecar.slices.len()
        );
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

/// An `.npz` archive whose arrays must all be `[S, H, W]` as its sidecar says (module docs,
/// "Hostile input").
struct Npz<'a> {
    zip: ZipArchive<BufReader<File>>,
    path: &'a Path,
    /// The archive's size in bytes.
    len: u64,
    shape: [usize; 3],
    json: &'a Path,
}

impl<'a> Npz<'a> {
    fn open(path: &'a Path, sidecar: &Sidecar, json: &'a Path) -> Result<Self> {
        let p = path.display();
        let len = regular_file_len(path, "the archive")?;
        let file = File::open(path).map_err(|e| anyhow!("{p}: cannot open: {e}"))?;
        let zip = ZipArchive::new(BufReader::new(file))
            .map_err(|e| anyhow!("{p}: not a readable .npz archive: {e}"))?;
        Ok(Self {
            zip,
            path,
            len,
            shape: sidecar.shape,
            json,
        })
    }

    /// The member holding array `name` (`name` or `name.npy`, as NumPy looks it up), with its
    /// `.npy` header read and checked against the bounds; the reader is at the data.
    fn member(
        &mut self,
        name: &str,
        expected: &[usize],
    ) -> Result<(ZipFile<'_, BufReader<File>>, Header)> {
        let p = self.path.display();
        let index = self
            .zip
            .index_for_name(name)
            .or_else(|| self.zip.index_for_name(&format!("{name}.npy")))
            .ok_or_else(|| anyhow!("{p}: array {name:?} is missing"))?;
        let mut file = self
            .zip
            .by_index(index)
            .map_err(|e| anyhow!("{p}: array {name:?}: {e}"))?;
        let bad = |what: String| anyhow!("{p}: array {name:?}: {what}");
        if file.compression() != CompressionMethod::Stored {
            return Err(bad(format!(
                "stored with {:?} compression; the format is an uncompressed .npz (np.savez, \
                 not np.savez_compressed)",
                file.compression()
            )));
        }
        let size = file.size();
        let end = file.data_start().checked_add(file.compressed_size());
        if file.compressed_size() != size || end.is_none_or(|end| end > self.len) {
            return Err(bad(format!(
                "the archive says it holds {size} bytes at offset {}, but the file is {} bytes",
                file.data_start(),
                self.len
            )));
        }

        // Magic (6 bytes), version (2), header length (2 bytes in version 1, else 4): read
        // here so that the length is bounded before the header is.
        let mut prefix = [0u8; 12];
        file.read_exact(&mut prefix[..10])
            .map_err(|e| bad(format!("cannot read the .npy header: {e}")))?;
        if &prefix[..6] != b"\x93NUMPY" {
            return Err(bad("not an .npy member (bad magic)".into()));
        }
        let (prefix_len, header_len) = if prefix[6] == 1 {
            (10, usize::from(u16::from_le_bytes([prefix[8], prefix[9]])))
        } else {
            file.read_exact(&mut prefix[10..])
                .map_err(|e| bad(format!("cannot read the .npy header: {e}")))?;
            let l = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
            (12, usize::try_from(l).unwrap_or(usize::MAX))
        };
        let header_total = prefix_len + header_len;
        if header_total > MAX_NPY_HEADER_BYTES {
            return Err(bad(format!(
                ".npy header of {header_total} bytes, more than the limit of \
                 {MAX_NPY_HEADER_BYTES} (MAX_NPY_HEADER_BYTES)"
            )));
        }
        let mut text = vec![0u8; header_len];
        file.read_exact(&mut text)
            .map_err(|e| bad(format!("cannot read the .npy header: {e}")))?;
        // The dictionary is parsed by a recursive descent: bound its nesting (NumPy's is 2,
        // a dict holding a shape tuple) so that a header of brackets cannot exhaust the stack.
        let mut depth = 0usize;
        for &c in &text {
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_NPY_HEADER_NESTING {
                return Err(bad(format!(
                    ".npy header nests deeper than {MAX_NPY_HEADER_NESTING} brackets"
                )));
            }
        }
        let header = Header::from_reader(&mut (&prefix[..prefix_len]).chain(&text[..]))
            .map_err(|e| bad(format!("invalid .npy header: {}", one_line(&e))))?;
        if header.shape != expected {
            return Err(bad(format!(
                "shape {:?} differs from the shape {expected:?} in {}",
                header.shape,
                self.json.display()
            )));
        }
        // The dtype's item size is the number in its descriptor ('<c8', '|u1', '|b1').
        let descr = header.type_descriptor.to_string();
        let item = descr
            .trim_matches(['\'', '"'])
            .get(2..)
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(format!("unsupported dtype {descr}")))?;
        let declared = expected
            .iter()
            .try_fold(item, |n, &d| n.checked_mul(d as u64))
            .and_then(|n| n.checked_add(header_total as u64));
        if declared != Some(size) {
            return Err(bad(format!(
                "the member is {size} bytes, but its .npy header declares {} ({header_total} \
                 of header + {expected:?} values of {item} bytes)",
                declared.map_or("more than 2^64".into(), |d| d.to_string()),
            )));
        }
        Ok((file, header))
    }

    /// Reads array `name` as `T`: `Ok(Err(dtype))` if its dtype is not one `T` reads.
    fn read_as<T: ReadableElement>(&mut self, name: &str) -> Result<Result<Array3<T>, String>> {
        let [s, h, w] = self.shape;
        let p = self.path.display();
        let shape = self.shape;
        let (mut file, header) = self.member(name, &shape)?;
        // `member` checked that the data are exactly S·H·W items (of at least one byte) of the
        // declared dtype, which `T` accepts only if it has that size: the buffer is no larger
        // than the member, and the product does not overflow.
        let data = match T::read_to_end_exact_vec(&mut file, &header.type_descriptor, s * h * w) {
            Ok(data) => data,
            Err(ReadDataError::WrongDescriptor(d)) => return Ok(Err(d.to_string())),
            Err(e) => bail!("{p}: array {name:?}: {}", one_line(&e)),
        };
        let shape = (s, h, w).set_f(header.layout.is_fortran());
        Array3::from_shape_vec(shape, data)
            .map(Ok)
            .map_err(|e| anyhow!("{p}: array {name:?}: {e}"))
    }

    /// Reads array `name` of shape `expected` as `T` (any rank): `Ok(Err(dtype))` if its
    /// dtype is not one `T` reads. Bounded like [`Self::member`].
    fn read_as_shape<T: ReadableElement>(
        &mut self,
        name: &str,
        expected: &[usize],
    ) -> Result<Result<ArrayD<T>, String>> {
        let p = self.path.display().to_string();
        let count: usize = expected.iter().product();
        let (mut file, header) = self.member(name, expected)?;
        let data = match T::read_to_end_exact_vec(&mut file, &header.type_descriptor, count) {
            Ok(data) => data,
            Err(ReadDataError::WrongDescriptor(d)) => return Ok(Err(d.to_string())),
            Err(e) => bail!("{p}: array {name:?}: {}", one_line(&e)),
        };
        let shape = IxDyn(expected).set_f(header.layout.is_fortran());
        ArrayD::from_shape_vec(shape, data)
            .map(Ok)
            .map_err(|e| anyhow!("{p}: array {name:?}: {e}"))
    }

    /// A complex64 array.
    fn array(&mut self, name: &str) -> Result<Array3<Complex32>> {
        self.read_as(name)?.map_err(|dtype| {
            anyhow!(
                "{}: array {name:?} has dtype {dtype}, not complex64 ('<c8')",
                self.path.display()
            )
        })
    }

    /// A mask stored as uint8 (0 or 1) or as NumPy bool.
    fn mask(&mut self, name: &str) -> Result<Array3<bool>> {
        if let Ok(m) = self.read_as::<u8>(name)? {
            if let Some(((s, y, x), v)) = m.indexed_iter().find(|(_, &v)| v > 1) {
                bail!(
                    "{}: array {name:?} holds {v} at [{s}, {y}, {x}]; a mask holds only 0 and 1",
                    self.path.display()
                );
            }
            return Ok(m.mapv(|v| v == 1));
        }
        self.read_as::<bool>(name)?.map_err(|dtype| {
            anyhow!(
                "{}: array {name:?} has dtype {dtype}, not a mask's uint8 ('|u1') or bool ('|b1')",
                self.path.display()
            )
        })
    }
}
