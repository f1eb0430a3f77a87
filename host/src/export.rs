//! Export of the evaluation data: clean complex 256×256 target slices from real MR volumes,
//! written as [`Split`]s (`dataset` module for the file format).
//!
//! # Sources
//! * **Colin27** T1 (`ch2.nii.gz` from the Debian package `mricron-data`, one subject, whole
//!   head, 181×217×181 at 1 mm): the `train`, `validation` and `test` splits.
//! * **MNI ICBM152 2009a** templates from the nilearn 0.14.1 wheel (`scripts/fetch-data.sh`,
//!   `data/external/nilearn/`): `ood_mni152_t1` and `ood_synthetic_t2`. Both are
//!   *out-of-distribution* for anything tuned on Colin27: the template is an average of many
//!   brains, skull-stripped, hence much smoother and nearly piecewise constant, with no scalp,
//!   fat or bone; the synthetic T2 also has the opposite contrast. Without the MNI files only
//!   the Colin27 splits are exported (and the [`ExportSummary`] says so).
//!
//! # Colin27 splits: disjoint slabs along the superior axis
//! With a single subject, slices from one split must not share voxels with another split's
//! slices, or the validation and test numbers would measure memorisation. The splits are
//! therefore slabs of axial planes (constant `k`, RAS order) separated by gaps of at least
//! [`MIN_SLAB_GAP`] unused planes:
//!
//! * `train`: [`COLIN27_TRAIN_SLABS`] = `[0, 58)` and `[112, 181)` (half-open): every axial
//!   plane, plus the bands below;
//! * `validation`: [`COLIN27_VALIDATION_SLAB`] = `[64, 78)`: every axial plane;
//! * `test`: [`COLIN27_TEST_SLAB`] = `[84, 106)`: every axial plane.
//!
//! k = 70 and k = 90 are the bundled examples `examples/colin27/validation` and
//! `examples/colin27` (`models/reference/make_example.py`), so those examples stay inside
//! their splits. The lower train slab covers the cerebellum, skull base and face, the upper
//! one the upper cerebrum up to the vertex; validation and test cover the ventricles and basal
//! ganglia.
//!
//! `train` also gets **coronal and sagittal bands**: a coronal (sagittal) plane of the whole
//! volume would cross every axial slab — including validation and test — so each train slab is
//! cut out first ([`Volume::restrict_k`]) and its coronal planes `j ≡ 0 (mod` [`BAND_STRIDE`]`)`
//! and sagittal planes `i ≡ 0 (mod` [`BAND_STRIDE`]`)` are used: images of height = slab
//! thickness. [`SliceMeta::k_range`] records each slice's k range, so disjointness can be
//! checked from the sidecars.
//!
//! Every candidate plane whose head mask covers less than [`MIN_HEAD_FRACTION`] of the plane
//! (`h · w` pixels before padding) is skipped (planes above the vertex, band edges). From
//! `ch2.nii.gz` this gives train 300 slices (118 axial, 97 coronal, 85 sagittal; about 170 MB
//! uncompressed), validation 14 and test 22.
//!
//! # OOD sets (MNI ICBM152 2009a, 197×233×189 at 1 mm)
//! * `ood_mni152_t1`: axial planes `k ≡ 0 (mod` [`OOD_STRIDE`]`)` whose head mask covers at
//!   least [`OOD_MIN_HEAD_FRACTION`] of the plane (20 slices, k = 24, 30, …, 138).
//! * `ood_synthetic_t2`: the same `k`, from a T2-weighted-like volume made by
//!   [`synthetic_t2`] from the grey- and white-matter probability maps: CSF bright, GM brighter
//!   than WM.
//!
//! # Per slice
//! 1. The plane in display orientation ([`crate::volume`]: axial anterior at the top, `i` to
//!    the right) is divided by its maximum (`peak`) and embedded centred in a [`GRID`]² grid at
//!    row `(GRID − h) / 2`, column `(GRID − w) / 2` (integer division), zero elsewhere.
//! 2. A smooth synthetic phase `φ = (π/2) · p(u, v)` is added: `u` along rows and `v` along
//!    columns, both `linspace(−1, 1, GRID)`, `p = (c0 + c1 u + c2 v + c3 u² + c4 u v + c5 v²) /
//!    Σ|c|`, so `|φ| ≤ π/2`. The six `c` are `rng.random_range(-1.0..1.0)` (f64, in order) from
//!    `ChaCha8Rng::seed_from_u64(phase_seed)`, [`phase_seed`] a hash of the export seed and the
//!    slice identity. This is the rule of `make_example.py` with a different generator, so
//!    magnitudes agree with the bundled examples and phases do not.
//! 3. `target = magnitude · exp(iφ)` as complex64 (computed in f64, rounded once).
//! 4. `head_mask = metrics::head_mask(|target|, 256×256, HEAD_MASK_THRESHOLD)` with the
//!    metrics' default threshold [`HEAD_MASK_THRESHOLD`] = 0.1 of the maximum, holes filled.

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use ndarray::{Array2, Array3, Axis};
use num_complex::Complex32;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::dataset::{self, SliceMeta, Split};
use crate::metrics::{self, Dims};
use crate::sources::{self, ExtraSources};
use crate::volume::{Orientation, Volume};

pub use crate::metrics::HEAD_MASK_THRESHOLD;

/// Side of the square target images.
pub const GRID: usize = 256;
/// Colin27 train slabs (`k` ranges, half-open).
pub const COLIN27_TRAIN_SLABS: [Range<usize>; 2] = [0..58, 112..181];
/// Colin27 validation slab; contains k = 70 (`examples/colin27/validation`).
pub const COLIN27_VALIDATION_SLAB: Range<usize> = 64..78;
/// Colin27 test slab; contains k = 90 (`examples/colin27`).
pub const COLIN27_TEST_SLAB: Range<usize> = 84..106;
/// Least number of unused axial planes between slabs of different splits.
pub const MIN_SLAB_GAP: usize = 6;
/// Every `BAND_STRIDE`-th coronal / sagittal plane of a train slab is used.
pub const BAND_STRIDE: usize = 4;
/// Least head-mask area, as a fraction of the plane, for a Colin27 slice to be kept.
pub const MIN_HEAD_FRACTION: f64 = 0.05;
/// Axial stride of the OOD sets.
pub const OOD_STRIDE: usize = 6;
/// Least head-mask area (fraction of the plane) of an OOD slice; higher than
/// [`MIN_HEAD_FRACTION`] because the template has no scalp and its extreme planes are tiny
/// brain caps that say little about reconstruction quality.
pub const OOD_MIN_HEAD_FRACTION: f64 = 0.10;
/// Synthetic T2 intensity per unit CSF, GM and WM fraction.
pub const T2_WEIGHTS: [f32; 3] = [1.0, 0.6, 0.35];
/// Brain support of the MNI T1 template: voxels above this fraction of its maximum.
pub const BRAIN_THRESHOLD: f32 = 0.01;
/// The three files `scripts/fetch-data.sh` extracts, in the order T1, GM, WM.
pub const MNI_FILES: [&str; 3] = [
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
];
/// Where Debian's `mricron-data` installs Colin27.
pub const COLIN27_DEFAULT: &str = "/usr/share/mricron/templates/ch2.nii.gz";
/// Where `scripts/fetch-data.sh` puts the MNI files (repo-relative).
pub const MNI_DIR_DEFAULT: &str = "data/external/nilearn";

/// Names of the exported splits, in export order.
pub const SPLIT_NAMES: [&str; 5] = [
    "train",
    "validation",
    "test",
    "ood_mni152_t1",
    "ood_synthetic_t2",
];

/// What to export and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// Colin27 T1 NIfTI ([`COLIN27_DEFAULT`]).
    pub colin27: PathBuf,
    /// Directory with the [`MNI_FILES`]; `None` exports only the Colin27 splits.
    pub mni_dir: Option<PathBuf>,
    /// Output directory; `<name>.npz` and `<name>.json` per split.
    pub out_dir: PathBuf,
    /// Seed of the synthetic phases ([`phase_seed`]).
    pub seed: u64,
    /// The further real sources ([`crate::sources`]); `None` exports none of them.
    pub extra: Option<ExtraSources>,
}

/// One written split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    pub name: String,
    pub count: usize,
    pub npz: PathBuf,
    pub json: PathBuf,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub splits: Vec<SplitSummary>,
    /// Why the OOD sets were not exported, if they were not.
    pub ood_skipped: Option<String>,
    /// Extra sources skipped because their file is missing, one line each.
    pub sources_skipped: Vec<String>,
}

/// Exports the splits of the module docs into `config.out_dir`. `progress` gets its length
/// set to the number of candidate planes and advances per plane; its message is the split
/// being made (pass `ProgressBar::hidden()` for none).
///
/// Fails before writing anything if a source is unreadable or, when `mni_dir` is given, one of
/// the [`MNI_FILES`] is missing (the error names it and suggests `scripts/fetch-data.sh`).
pub fn export(config: &ExportConfig, progress: &ProgressBar) -> Result<ExportSummary> {
    check_slab_layout()?;
    let mni_paths = match &config.mni_dir {
        Some(dir) => {
            let paths = MNI_FILES.map(|f| dir.join(f));
            if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
                bail!(
                    "{}: MNI ICBM152 template file missing; run scripts/fetch-data.sh to fetch \
                     it (into {MNI_DIR_DEFAULT}), or export without the MNI directory for the \
                     Colin27 splits only",
                    missing.display()
                );
            }
            Some(paths)
        }
        None => None,
    };

    let colin = Volume::load(&config.colin27)?;
    // Each train slab cut out of the volume: its coronal and sagittal planes are the bands.
    let bands = COLIN27_TRAIN_SLABS
        .iter()
        .map(|slab| Ok((slab.clone(), colin.restrict_k(slab.clone())?)))
        .collect::<Result<Vec<_>>>()?;
    let plans = colin27_plans(&colin, &bands)?;
    let colin_provenance = provenance(
        config.seed,
        colin27_rule(),
        json!([source_record(
            "colin27_t1",
            &config.colin27,
            MRICRON_ORIGIN
        )?]),
    );

    // The OOD volumes are loaded up front, so that a bad file fails before anything is written.
    let mni = match &mni_paths {
        Some([t1_path, gm_path, wm_path]) => {
            let t1 = Volume::load(t1_path)?;
            let gm = Volume::load(gm_path)?;
            let wm = Volume::load(wm_path)?;
            let t2 = synthetic_t2(&t1, &gm, &wm)?;
            let sources = json!([
                source_record("mni152_t1", t1_path, NILEARN_ORIGIN)?,
                source_record("mni152_gm", gm_path, NILEARN_ORIGIN)?,
                source_record("mni152_wm", wm_path, NILEARN_ORIGIN)?,
            ]);
            let joined = [t1_path, gm_path, wm_path]
                .map(|p| p.display().to_string())
                .join(";");
            Some((t1, t2, sources, joined))
        }
        None => None,
    };

    let extra = match &config.extra {
        Some(paths) => Some(sources::load(paths, &colin)?),
        None => None,
    };
    let extra_jobs = match &extra {
        Some(loaded) => sources::jobs(
            loaded,
            &colin,
            mni.as_ref().map(|(t1, t2, s, _)| (t1, t2, s)),
            config.seed,
        )?,
        None => Vec::new(),
    };

    let total: usize = extra_jobs
        .iter()
        .map(|j| j.plan.candidates.len())
        .sum::<usize>()
        + plans.iter().map(|p| p.candidates.len()).sum::<usize>()
        + mni
            .as_ref()
            .map_or(0, |(t1, ..)| 2 * t1.dims()[2].div_ceil(OOD_STRIDE));
    progress.set_length(total as u64);
    progress.set_position(0);

    let mut summary = ExportSummary {
        splits: Vec::new(),
        ood_skipped: None,
        sources_skipped: extra
            .as_ref()
            .map(|l| l.skipped.clone())
            .unwrap_or_default(),
    };
    let mut write = |split: Split| -> Result<()> {
        let npz = dataset::write_split(&config.out_dir, &split)?;
        summary.splits.push(SplitSummary {
            name: split.name.clone(),
            count: split.len(),
            json: dataset::sidecar_path(&npz),
            npz,
        });
        Ok(())
    };

    for plan in &plans {
        let split = build_split(
            plan,
            config.seed,
            colin_provenance.clone(),
            MIN_HEAD_FRACTION,
            progress,
        )?;
        write(split)?;
    }

    match &mni {
        Some((t1, t2, sources, joined)) => {
            let rule = ood_rule();
            let t1_plan = Plan {
                name: "ood_mni152_t1".to_owned(),
                candidates: (0..t1.dims()[2])
                    .step_by(OOD_STRIDE)
                    .map(|k| {
                        Candidate::axial("mni152_t1", t1, &t1.source().display().to_string(), k)
                    })
                    .collect(),
            };
            let t1_split = build_split(
                &t1_plan,
                config.seed,
                provenance(config.seed, rule.clone(), sources.clone()),
                OOD_MIN_HEAD_FRACTION,
                progress,
            )?;
            // The synthetic T2 uses exactly the planes kept for the T1, whatever its own
            // head fraction (both have the same brain support).
            let kept: Vec<usize> = t1_split.slices.iter().map(|m| m.index).collect();
            progress.inc((t1_plan.candidates.len() - kept.len()) as u64);
            let t2_plan = Plan {
                name: "ood_synthetic_t2".to_owned(),
                candidates: kept
                    .iter()
                    .map(|&k| Candidate::axial("synthetic_t2", t2, joined, k))
                    .collect(),
            };
            write(t1_split)?;
            let t2_split = build_split(
                &t2_plan,
                config.seed,
                provenance(config.seed, rule, sources.clone()),
                0.0,
                progress,
            )?;
            if t2_split.len() != kept.len() {
                bail!(
                    "synthetic T2: {} of the {} MNI planes are empty",
                    kept.len() - t2_split.len(),
                    kept.len()
                );
            }
            write(t2_split)?;
        }
        None => {
            summary.ood_skipped = Some(
                "no MNI directory given: only the Colin27 splits (train, validation, test) were \
                 exported; run scripts/fetch-data.sh and pass data/external/nilearn for the \
                 out-of-distribution sets"
                    .to_owned(),
            );
        }
    }
    for job in &extra_jobs {
        let split = build_split(
            &job.plan,
            config.seed,
            job.provenance.clone(),
            job.min_head_fraction,
            progress,
        )?;
        write(split)?;
    }
    progress.finish();
    Ok(summary)
}

/// The seed of a slice's synthetic phase: the first 8 bytes (little-endian) of
/// `sha256("sparsemap-export-phase/v1 seed={seed} volume={volume} orientation={orientation}
/// index={index} k_range={k0}..{k1}")`. The k range separates the coronal / sagittal bands of
/// the two train slabs, which share `index`.
pub fn phase_seed(
    seed: u64,
    volume: &str,
    orientation: Orientation,
    index: usize,
    k_range: [usize; 2],
) -> u64 {
    let text = format!(
        "sparsemap-export-phase/v1 seed={seed} volume={volume} orientation={orientation} \
         index={index} k_range={}..{}",
        k_range[0], k_range[1]
    );
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The synthetic phase `φ` in radians on the [`GRID`]² grid (module docs, step 2).
pub fn phase_map(phase_seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(phase_seed);
    let c: [f64; 6] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
    let norm: f64 = c.iter().map(|v| v.abs()).sum();
    // linspace(-1, 1, GRID)
    let coord = |n: usize| -1.0 + 2.0 * n as f64 / (GRID - 1) as f64;
    Array2::from_shape_fn((GRID, GRID), |(r, col)| {
        if norm == 0.0 {
            return 0.0;
        }
        let (u, v) = (coord(r), coord(col));
        let p = c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v;
        0.5 * std::f64::consts::PI * p / norm
    })
}

/// The complex target of one plane (module docs, steps 1–3) and the plane's maximum, or
/// `None` for a plane with no positive value. Fails if the plane is larger than the grid.
pub fn slice_target(
    plane: &Array2<f32>,
    phase_seed: u64,
) -> Result<Option<(Array2<Complex32>, f32)>> {
    let (h, w) = plane.dim();
    if h > GRID || w > GRID {
        bail!("a {h}x{w} plane does not fit the {GRID}x{GRID} grid");
    }
    let peak = plane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if peak.is_nan() || peak <= 0.0 {
        return Ok(None);
    }
    let (r0, c0) = ((GRID - h) / 2, (GRID - w) / 2);
    let phase = phase_map(phase_seed);
    let mut target = Array2::<Complex32>::zeros((GRID, GRID));
    for ((r, c), &v) in plane.indexed_iter() {
        let m = f64::from(v) / f64::from(peak);
        let phi = phase[[r0 + r, c0 + c]];
        target[[r0 + r, c0 + c]] = Complex32::new((m * phi.cos()) as f32, (m * phi.sin()) as f32);
    }
    Ok(Some((target, peak)))
}

/// A T2-weighted-like volume from the MNI templates: with `brain = t1 > BRAIN_THRESHOLD ·
/// max t1` (the template is skull-stripped: zero outside the brain, positive inside including
/// the ventricles, so no hole filling is needed), `gm`, `wm` = the probability maps divided by
/// their maxima (255 ≙ 1 in the nilearn files), `csf = clamp(brain − gm − wm, 0, 1)`, the
/// intensity is `brain · (1.0 csf + 0.6 gm + 0.35 wm)` ([`T2_WEIGHTS`]): CSF bright and GM
/// brighter than WM, as in T2, zero outside the brain. All three must share one grid.
pub fn synthetic_t2(t1: &Volume, gm: &Volume, wm: &Volume) -> Result<Volume> {
    for other in [gm, wm] {
        if other.dims() != t1.dims() || other.origin_mm() != t1.origin_mm() {
            bail!(
                "{}: grid {:?} at origin {:?} mm differs from {} ({:?} at {:?} mm)",
                other.source().display(),
                other.dims(),
                other.origin_mm(),
                t1.source().display(),
                t1.dims(),
                t1.origin_mm()
            );
        }
    }
    let scale = |v: &Volume| -> Result<f32> {
        let m = v.max();
        if m > 0.0 {
            Ok(1.0 / m)
        } else {
            Err(anyhow!(
                "{}: probability map is all zero",
                v.source().display()
            ))
        }
    };
    let (t1_max, gm_scale, wm_scale) = (t1.max(), scale(gm)?, scale(wm)?);
    let [w_csf, w_gm, w_wm] = T2_WEIGHTS;
    let data = t1
        .data()
        .iter()
        .zip(gm.data())
        .zip(wm.data())
        .map(|((&t, &g), &w)| {
            if t <= BRAIN_THRESHOLD * t1_max {
                return 0.0;
            }
            let (g, w) = (g * gm_scale, w * wm_scale);
            let csf = (1.0 - g - w).clamp(0.0, 1.0);
            w_csf * csf + w_gm * g + w_wm * w
        })
        .collect();
    Volume::new(
        t1.dims(),
        t1.voxel_mm(),
        t1.origin_mm(),
        data,
        PathBuf::from("synthetic_t2"),
    )
}

/// Lowercase hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Exports the splits of users' own volumes ([`sources::UserSource`]: a NIfTI file or a DICOM
/// series directory each) into `out_dir`: `NAME_{train,validation,test}` by the generic slab
/// rule, or `NAME_test` when a volume is too short to split. Every volume is loaded (and
/// checked) before anything is written.
pub fn export_user(
    user: &[sources::UserSource],
    out_dir: &Path,
    seed: u64,
    progress: &ProgressBar,
) -> Result<Vec<SplitSummary>> {
    let loaded = user
        .iter()
        .map(|source| sources::load_user(source).map(|(volume, record)| (source, volume, record)))
        .collect::<Result<Vec<_>>>()?;
    let jobs: Vec<_> = loaded
        .iter()
        .flat_map(|(source, volume, record)| sources::user_jobs(&source.name, volume, record, seed))
        .collect();
    progress.set_length(jobs.iter().map(|j| j.plan.candidates.len()).sum::<usize>() as u64);
    progress.set_position(0);
    let mut written = Vec::new();
    for job in &jobs {
        let split = build_split(&job.plan, seed, job.provenance.clone(), job.min_head_fraction, progress)?;
        let npz = dataset::write_split(out_dir, &split)?;
        written.push(SplitSummary {
            name: split.name.clone(),
            count: split.len(),
            json: npz.with_extension("json"),
            npz,
        });
    }
    progress.finish();
    Ok(written)
}

/// Checks the Colin27 slab constants: slabs of different splits at least [`MIN_SLAB_GAP`]
/// planes apart, and the bundled examples (validation k = 70, test k = 90) inside their splits.
fn check_slab_layout() -> Result<()> {
    let slabs: Vec<(&str, Range<usize>)> = COLIN27_TRAIN_SLABS
        .iter()
        .map(|r| ("train", r.clone()))
        .chain([
            ("validation", COLIN27_VALIDATION_SLAB),
            ("test", COLIN27_TEST_SLAB),
        ])
        .collect();
    for (n, (a, ra)) in slabs.iter().enumerate() {
        for (b, rb) in &slabs[n + 1..] {
            // Zero when the ranges overlap or touch.
            let gap = rb
                .start
                .saturating_sub(ra.end)
                .max(ra.start.saturating_sub(rb.end));
            if a != b && gap < MIN_SLAB_GAP {
                bail!(
                    "slab layout: {a} {ra:?} and {b} {rb:?} are closer than {MIN_SLAB_GAP} planes"
                );
            }
        }
    }
    if !COLIN27_VALIDATION_SLAB.contains(&70) || !COLIN27_TEST_SLAB.contains(&90) {
        bail!("slab layout: the bundled examples (validation k = 70, test k = 90) must stay in their splits");
    }
    Ok(())
}

/// A plane to cut: from `volume`, along `orientation` at `index`, covering `k_range`.
pub(crate) struct Candidate<'a> {
    pub(crate) volume_name: String,
    pub(crate) volume: &'a Volume,
    pub(crate) source: String,
    pub(crate) orientation: Orientation,
    pub(crate) index: usize,
    pub(crate) k_range: [usize; 2],
}

impl<'a> Candidate<'a> {
    pub(crate) fn axial(
        volume_name: &str,
        volume: &'a Volume,
        source: &str,
        k: usize,
    ) -> Self {
        Self {
            volume_name: volume_name.to_owned(),
            volume,
            source: source.to_owned(),
            orientation: Orientation::Axial,
            index: k,
            k_range: [k, k + 1],
        }
    }
}

/// The candidate planes of one split.
pub(crate) struct Plan<'a> {
    pub(crate) name: String,
    pub(crate) candidates: Vec<Candidate<'a>>,
}

/// The Colin27 plans: axial planes of every slab, and for train also the coronal and
/// sagittal planes of each restricted slab volume in `bands` (`(slab, colin.restrict_k(slab))`).
fn colin27_plans<'a>(
    colin: &'a Volume,
    bands: &'a [(Range<usize>, Volume)],
) -> Result<Vec<Plan<'a>>> {
    let [_, _, nk] = colin.dims();
    let source = colin.source().display().to_string();
    let all_slabs = COLIN27_TRAIN_SLABS
        .iter()
        .chain([&COLIN27_VALIDATION_SLAB, &COLIN27_TEST_SLAB]);
    for slab in all_slabs {
        if slab.end > nk {
            bail!(
                "{}: slab k {slab:?} exceeds the {nk} axial planes of Colin27",
                colin.source().display()
            );
        }
    }
    let axial = |slab: &Range<usize>| {
        slab.clone()
            .map(|k| Candidate::axial("colin27_t1", colin, &source, k))
            .collect::<Vec<_>>()
    };
    let mut train: Vec<Candidate<'_>> = COLIN27_TRAIN_SLABS.iter().flat_map(axial).collect();
    for (slab, band) in bands {
        for orientation in [Orientation::Coronal, Orientation::Sagittal] {
            let n = band.dims()[orientation.fixed_axis()];
            train.extend((0..n).step_by(BAND_STRIDE).map(|index| Candidate {
                volume_name: "colin27_t1".to_owned(),
                volume: band,
                source: source.clone(),
                orientation,
                index,
                k_range: [slab.start, slab.end],
            }));
        }
    }
    Ok(vec![
        Plan {
            name: "train".to_owned(),
            candidates: train,
        },
        Plan {
            name: "validation".to_owned(),
            candidates: axial(&COLIN27_VALIDATION_SLAB),
        },
        Plan {
            name: "test".to_owned(),
            candidates: axial(&COLIN27_TEST_SLAB),
        },
    ])
}

/// One finished slice.
struct Made {
    target: Array2<Complex32>,
    head_mask: Vec<bool>,
    meta: SliceMeta,
}

fn make_slice(
    candidate: &Candidate<'_>,
    seed: u64,
    min_head_fraction: f64,
) -> Result<Option<Made>> {
    let volume = candidate.volume;
    let [k0, k1] = candidate.k_range;
    // For a band, `volume` is already the slab alone, so the plane holds no voxel outside
    // `k_range`.
    let plane = volume.plane(candidate.orientation, candidate.index)?;
    let seed = phase_seed(
        seed,
        &candidate.volume_name,
        candidate.orientation,
        candidate.index,
        candidate.k_range,
    );
    let what = || {
        format!(
            "{}: {} plane {} (k {k0}..{k1})",
            volume.source().display(),
            candidate.orientation,
            candidate.index
        )
    };
    let Some((target, peak)) = slice_target(&plane, seed).with_context(what)? else {
        return Ok(None);
    };
    let magnitude: Vec<f32> = target.iter().map(|z| z.norm()).collect();
    let head_mask = metrics::head_mask(&magnitude, Dims::new(GRID, GRID), HEAD_MASK_THRESHOLD)
        .map_err(|e| anyhow!("{}: head mask: {e}", what()))?;
    let (h, w) = plane.dim();
    let fraction = head_mask.iter().filter(|&&m| m).count() as f64 / (h * w) as f64;
    if fraction < min_head_fraction {
        return Ok(None);
    }
    Ok(Some(Made {
        target,
        head_mask,
        meta: SliceMeta {
            volume: candidate.volume_name.to_owned(),
            source: candidate.source.clone(),
            orientation: candidate.orientation,
            index: candidate.index,
            k_range: candidate.k_range,
            plane_shape: [h, w],
            phase_seed: seed,
            peak,
        },
    }))
}

pub(crate) fn build_split(
    plan: &Plan<'_>,
    seed: u64,
    provenance: serde_json::Value,
    min_head_fraction: f64,
    progress: &ProgressBar,
) -> Result<Split> {
    progress.set_message(plan.name.clone());
    let made: Vec<Made> = plan
        .candidates
        .par_iter()
        .map(|c| {
            let made = make_slice(c, seed, min_head_fraction);
            progress.inc(1);
            made
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    if made.is_empty() {
        bail!("split {}: no plane has enough head", plan.name);
    }
    let mut targets = Array3::<Complex32>::zeros((made.len(), GRID, GRID));
    let mut head_masks = Array3::<bool>::from_elem((made.len(), GRID, GRID), false);
    let mut slices = Vec::with_capacity(made.len());
    for (s, m) in made.into_iter().enumerate() {
        targets.index_axis_mut(Axis(0), s).assign(&m.target);
        for (dst, src) in head_masks
            .index_axis_mut(Axis(0), s)
            .iter_mut()
            .zip(m.head_mask)
        {
            *dst = src;
        }
        slices.push(m.meta);
    }
    Ok(Split {
        name: plan.name.clone(),
        targets,
        head_masks,
        slices,
        provenance,
    })
}

/// Where a source file comes from and under which licence, for the sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The package (and version) that installs or ships the file.
    pub package: &'static str,
    /// Its licence, as the package states it.
    pub licence: &'static str,
}

/// Colin27 files of Debian `mricron-data` (ch2, ch2bet, ch2better).
pub const MRICRON_ORIGIN: Origin = Origin {
    package: "Debian mricron-data (apt-get install mricron-data), /usr/share/mricron/templates",
    licence: "BSD-3-Clause (debian/copyright of mricron-data, Files: *, Chris Rorden); the \
              templates carry no separate notice. Colin27: Holmes et al., J Comput Assist \
              Tomogr 1998",
};

/// The MNI ICBM152 2009a files of the nilearn wheel.
pub const NILEARN_ORIGIN: Origin = Origin {
    package: "PyPI nilearn 0.14.1 wheel, nilearn/datasets/data (scripts/fetch-data.sh)",
    licence: "nilearn: BSD-3-Clause; ICBM 2009a templates: copyright (C) 1993-2009 Louis \
              Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill \
              University; use, copy, modification and distribution permitted with the notice \
              (Fonov et al., NeuroImage 2011)",
};

pub(crate) fn source_record(
    volume: &str,
    path: &Path,
    origin: Origin,
) -> Result<serde_json::Value> {
    Ok(json!({
        "volume": volume,
        "path": path.display().to_string(),
        "sha256": sha256_file(path)?,
        "package": origin.package,
        "licence": origin.licence,
    }))
}

fn colin27_rule() -> serde_json::Value {
    let range = |r: &Range<usize>| json!([r.start, r.end]);
    json!({
        "rule": "Colin27 is one subject, so the splits are voxel-disjoint slabs of axial planes \
                 (constant k, RAS order, k superior) with at least min_gap unused planes between \
                 slabs of different splits. train adds coronal (constant j) and sagittal \
                 (constant i) planes every band_stride-th index, cut from each train slab alone \
                 (a full coronal or sagittal plane would cross the validation and test slabs); \
                 slices[].k_range records the planes each slice covers. Planes whose head mask \
                 covers less than min_head_fraction of the plane are skipped.",
        "slabs": {
            "train": COLIN27_TRAIN_SLABS.iter().map(range).collect::<Vec<_>>(),
            "validation": [range(&COLIN27_VALIDATION_SLAB)],
            "test": [range(&COLIN27_TEST_SLAB)],
        },
        "slab_ranges": "half-open [k0, k1)",
        "min_gap": MIN_SLAB_GAP,
        "band_stride": BAND_STRIDE,
        "min_head_fraction": MIN_HEAD_FRACTION,
        "examples": "k = 70 is examples/colin27/validation, k = 90 is examples/colin27",
    })
}

fn ood_rule() -> serde_json::Value {
    json!({
        "rule": "MNI ICBM152 2009a (an average of many brains, skull-stripped: smoother and \
                 nearly piecewise constant, out of distribution for Colin27). ood_mni152_t1: \
                 axial planes k = 0 mod stride whose head mask covers at least \
                 min_head_fraction of the plane. ood_synthetic_t2: the same planes of a \
                 T2-like volume brain * (1.0 csf + 0.6 gm + 0.35 wm), brain = T1 > 0.01 max, \
                 gm and wm = probability maps / their maxima, csf = clamp(brain - gm - wm, 0, 1).",
        "stride": OOD_STRIDE,
        "min_head_fraction": OOD_MIN_HEAD_FRACTION,
        "t2_weights": {"csf": T2_WEIGHTS[0], "gm": T2_WEIGHTS[1], "wm": T2_WEIGHTS[2]},
        "brain_threshold": BRAIN_THRESHOLD,
    })
}

pub(crate) fn provenance(
    seed: u64,
    split_rule: serde_json::Value,
    sources: serde_json::Value,
) -> serde_json::Value {
    json!({
        "tool": format!("{} {} (export)", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
        "seed": seed,
        "sources": sources,
        "split_rule": split_rule,
        "grid": [GRID, GRID],
        "orientation": "RAS voxel order (i right, j anterior, k superior). axial: rows j \
                        decreasing (anterior at the top), columns i increasing; coronal: rows k \
                        decreasing (superior at the top), columns i increasing; sagittal: rows k \
                        decreasing, columns j increasing",
        "normalisation": "plane / max(plane) (slices[].peak), embedded centred at row \
                          (256 - h) // 2, column (256 - w) // 2, zero elsewhere",
        "phase": "phi = 0.5 pi p(u, v), u along rows and v along columns = linspace(-1, 1, 256), \
                  p = (c0 + c1 u + c2 v + c3 u^2 + c4 u v + c5 v^2) / sum|c|, c = six \
                  random_range(-1.0..1.0) f64 draws of rand 0.9 ChaCha8Rng::seed_from_u64(phase_seed); \
                  target = magnitude exp(i phi) as complex64",
        "phase_seed": "first 8 bytes (little-endian u64) of sha256(\"sparsemap-export-phase/v1 \
                       seed={seed} volume={volume} orientation={orientation} index={index} \
                       k_range={k0}..{k1}\")",
        "head_mask": {
            "threshold": HEAD_MASK_THRESHOLD,
            "rule": "|target| > threshold * max|target|, holes filled (4-connected), \
                     sparsemap_host::metrics::head_mask",
        },
    })
}
