//! The export's real sources beyond Colin27 and the legacy out-of-distribution sets: each one a
//! family of splits `SOURCE_{train,validation,test}.npz` (+ `.json`), so that a method can be
//! trained on several sources, evaluated per source and tested on a source it never saw
//! (leave-one-source-out). docs/design.md §8.1 lists them with their rules.
//!
//! | source | file | anatomy / contrast | splits |
//! |---|---|---|---|
//! | `colin27_bet` | `ch2bet.nii.gz` (mricron-data) | Colin27 T1, skull-stripped | train |
//! | `colin27_hires` | `ch2better.nii.gz` (mricron-data) | Colin27 T1 at 0.5 mm | train |
//! | `mni152_t1` | MNI ICBM152 2009a T1 (nilearn) | many-brain average, skull-stripped | all three |
//! | `synthetic_t2` | GM/WM maps of the same | T2-like contrast, same anatomy | all three |
//! | `inia19_t1` | `inia19-t1-brain.nii.gz` (mricron-data) | rhesus macaque T1, 0.5 mm | all three |
//! | `epi_example4d` | `example4d.nii.gz` (nibabel wheel) | human EPI, 2×2×2.2 mm, first volume | test |
//!
//! * The two Colin27 variants are the training subject's own anatomy, so they only add
//!   **train** slices, from the planes of Colin27's train slabs
//!   ([`COLIN27_TRAIN_SLABS`](crate::export::COLIN27_TRAIN_SLABS)): for `ch2bet` (same grid as
//!   `ch2`) the same `k`; for the 0.5 mm `ch2better` every other plane (1 mm apart) whose world
//!   `z` lies within a train slab's planes, each plane centre-cropped to 256×256 (a 128 mm field
//!   of view at 0.5 mm: finer detail than any other source).
//! * `mni152_t1`, `synthetic_t2` and `inia19_t1` are split by the [`generic_slabs`] rule:
//!   voxel-disjoint axial slabs, test in the middle of the head. `synthetic_t2` uses the slabs
//!   of `mni152_t1` (same anatomy), so the two together are one anatomy: a leave-one-source-out
//!   run must hold out both (they are the `mni152` group of [`SOURCE_GROUPS`]).
//! * `epi_example4d` is a 24-plane EPI volume, too small to split: **test** only. Its planes
//!   (128×96 at 2 mm) are embedded as they are, so it is the low-resolution source. Its sform
//!   is oblique (a 9° tilt): the planes are the acquired slices
//!   ([`LoadOptions::oblique_as_nearest_axis`]).
//!
//! The legacy `ood_mni152_t1` and `ood_synthetic_t2` sets (every 6th plane of the whole MNI
//! volume) are still written unchanged; they overlap the `mni152_t1` / `synthetic_t2` train
//! slabs, so they are out of distribution only for a model not trained on those.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde_json::json;

use crate::export::{
    provenance, source_record, Candidate, Origin, Plan, COLIN27_TRAIN_SLABS, MIN_HEAD_FRACTION,
    MRICRON_ORIGIN, OOD_MIN_HEAD_FRACTION,
};
use crate::volume::{LoadOptions, Volume};

/// Where the extra sources' files are; a missing file skips its source with a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraSources {
    pub colin27_bet: PathBuf,
    pub colin27_hires: PathBuf,
    pub inia19_t1: PathBuf,
    pub epi_example4d: PathBuf,
}

/// Where `scripts/fetch-data.sh` puts nibabel's example EPI (repo-relative).
pub const EPI_DEFAULT: &str = "data/external/nibabel/example4d.nii.gz";

impl Default for ExtraSources {
    fn default() -> Self {
        let mricron = Path::new("/usr/share/mricron/templates");
        Self {
            colin27_bet: mricron.join("ch2bet.nii.gz"),
            colin27_hires: mricron.join("ch2better.nii.gz"),
            inia19_t1: mricron.join("inia19-t1-brain.nii.gz"),
            epi_example4d: PathBuf::from(EPI_DEFAULT),
        }
    }
}

/// Sources that share an anatomy: a leave-one-source-out run holds out a whole group.
/// A source not listed is its own group.
pub const SOURCE_GROUPS: [(&str, &[&str]); 2] = [
    ("colin27", &["colin27", "colin27_bet", "colin27_hires"]),
    ("mni152", &["mni152_t1", "synthetic_t2"]),
];

/// The evaluated sources of [`SOURCE_GROUPS`]-group `group`, or `[group]`.
pub fn group_members(group: &str) -> Vec<&str> {
    SOURCE_GROUPS
        .iter()
        .find(|(name, _)| *name == group)
        .map_or_else(|| vec![group], |(_, members)| members.to_vec())
}

/// Least gap between slabs of different splits in the generic rule, in mm.
pub const GENERIC_GAP_MM: f64 = 6.0;
/// Fraction of the usable span that is the test slab (centred).
pub const GENERIC_TEST_FRACTION: f64 = 0.25;
/// Fraction of the usable span that is the validation slab (superior of test, after a gap).
pub const GENERIC_VALIDATION_FRACTION: f64 = 0.12;
/// A plane is in the usable span when this fraction of it is above
/// [`GENERIC_SUPPORT_THRESHOLD`] of the volume's maximum.
pub const GENERIC_MIN_SUPPORT: f64 = 0.10;
/// Support threshold, as a fraction of the volume's maximum (the head mask's threshold).
pub const GENERIC_SUPPORT_THRESHOLD: f32 = 0.1;
/// In-plane side that the 0.5 mm Colin27 planes are centre-cropped to.
pub const CROP: usize = crate::export::GRID;

/// The slabs (axial plane ranges `k`, half-open) of the generic split rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericSlabs {
    pub span: Range<usize>,
    pub train: Vec<Range<usize>>,
    pub validation: Range<usize>,
    pub test: Range<usize>,
    /// Planes between slabs of different splits.
    pub gap: usize,
    /// Every `stride`-th plane is used (about 1 mm apart).
    pub stride: usize,
}

/// The generic rule: the usable span `[a, b)` is the first to the last axial plane of which at
/// least [`GENERIC_MIN_SUPPORT`] is above [`GENERIC_SUPPORT_THRESHOLD`] · max; the **test** slab
/// is its central [`GENERIC_TEST_FRACTION`]; **validation** the next
/// [`GENERIC_VALIDATION_FRACTION`] of it superior of test after a gap of ⌈[`GENERIC_GAP_MM`] /
/// voxel⌉ planes; **train** the rest of the span, a gap away from both. Planes are used every
/// `round(1 mm / voxel)` (at least 1), so slices are about 1 mm apart whatever the voxel.
pub fn generic_slabs(volume: &Volume) -> Result<GenericSlabs> {
    let [ni, nj, nk] = volume.dims();
    let voxel_z = volume.voxel_mm()[2];
    let threshold = GENERIC_SUPPORT_THRESHOLD * volume.max();
    let plane = ni * nj;
    let supported: Vec<bool> = volume
        .data()
        .chunks_exact(plane)
        .map(|p| {
            p.iter().filter(|&&v| v > threshold).count() as f64 / plane as f64
                >= GENERIC_MIN_SUPPORT
        })
        .collect();
    let (Some(a), Some(last)) = (
        supported.iter().position(|&s| s),
        supported.iter().rposition(|&s| s),
    ) else {
        bail!(
            "{}: no axial plane has {GENERIC_MIN_SUPPORT} of its area above \
             {GENERIC_SUPPORT_THRESHOLD} of the maximum",
            volume.source().display()
        );
    };
    let span = a..last + 1;
    let n = span.len();
    let gap = (GENERIC_GAP_MM / voxel_z).ceil() as usize;
    let stride = ((1.0 / voxel_z).round() as usize).max(1);
    let test_len = ((n as f64 * GENERIC_TEST_FRACTION).round() as usize).max(1);
    let validation_len = ((n as f64 * GENERIC_VALIDATION_FRACTION).round() as usize).max(1);
    let test_start = a + (n - test_len) / 2;
    let test = test_start..test_start + test_len;
    let validation = test.end + gap..test.end + gap + validation_len;
    let mut train = Vec::new();
    if test.start >= a + gap {
        train.push(a..test.start - gap);
    }
    if validation.end + gap < span.end {
        train.push(validation.end + gap..span.end);
    }
    train.retain(|r| !r.is_empty());
    if validation.end > span.end || train.is_empty() || nk < span.end {
        bail!(
            "{}: the usable span of axial planes {span:?} ({n} planes at {voxel_z} mm) is too \
             short for test, validation and train slabs with {gap}-plane gaps",
            volume.source().display()
        );
    }
    Ok(GenericSlabs {
        span,
        train,
        validation,
        test,
        gap,
        stride,
    })
}

/// A volume's planes `[i0, i0 + CROP) × [j0, j0 + CROP)` (centred) when a side exceeds
/// [`CROP`]; the origin moves with the crop.
fn centre_crop(volume: &Volume) -> Result<Volume> {
    let [ni, nj, nk] = volume.dims();
    let (ci, cj) = (ni.min(CROP), nj.min(CROP));
    let (i0, j0) = ((ni - ci) / 2, (nj - cj) / 2);
    let mut data = Vec::with_capacity(ci * cj * nk);
    for k in 0..nk {
        for j in j0..j0 + cj {
            let row = (k * nj + j) * ni;
            data.extend_from_slice(&volume.data()[row + i0..row + i0 + ci]);
        }
    }
    let [vi, vj, vk] = volume.voxel_mm();
    let [oi, oj, ok] = volume.origin_mm();
    Volume::new(
        [ci, cj, nk],
        [vi, vj, vk],
        [oi + i0 as f64 * vi, oj + j0 as f64 * vj, ok],
        data,
        volume.source(),
    )
}

/// The sources that could be loaded, and a note for each one skipped.
pub struct Loaded {
    bet: Option<(Volume, PathBuf)>,
    hires: Option<(Volume, PathBuf)>,
    inia19: Option<(Volume, PathBuf)>,
    epi: Option<(Volume, PathBuf)>,
    pub skipped: Vec<String>,
}

/// Loads every extra source whose file exists (a file that exists but is bad is an error);
/// `colin` is the Colin27 volume, whose grid `ch2bet` must share.
pub fn load(paths: &ExtraSources, colin: &Volume) -> Result<Loaded> {
    let mut skipped = Vec::new();
    let mut open = |name: &str, path: &Path, options: LoadOptions, how: &str| {
        if path.is_file() {
            Volume::load_with(path, options).map(|v| Some((v, path.to_owned())))
        } else {
            skipped.push(format!(
                "{name}: {} not found ({how}); its splits were not exported",
                path.display()
            ));
            Ok(None)
        }
    };
    let strict = LoadOptions::default();
    let any_voxel = LoadOptions {
        any_voxel_size: true,
        ..strict
    };
    let apt = "apt-get install mricron-data";
    let bet = open("colin27_bet", &paths.colin27_bet, strict, apt)?;
    let hires = open("colin27_hires", &paths.colin27_hires, any_voxel, apt)?;
    let inia19 = open("inia19_t1", &paths.inia19_t1, any_voxel, apt)?;
    let epi = open(
        "epi_example4d",
        &paths.epi_example4d,
        LoadOptions {
            any_voxel_size: true,
            first_volume_of_4d: true,
            oblique_as_nearest_axis: true,
        },
        "run scripts/fetch-data.sh",
    )?;
    if let Some((v, path)) = &bet {
        if v.dims() != colin.dims() || v.origin_mm() != colin.origin_mm() {
            bail!(
                "{}: grid {:?} at {:?} mm differs from Colin27's {:?} at {:?} mm; ch2bet must \
                 share ch2's grid (its train slabs are taken by plane index)",
                path.display(),
                v.dims(),
                v.origin_mm(),
                colin.dims(),
                colin.origin_mm()
            );
        }
    }
    let hires = match hires {
        Some((v, path)) => Some((centre_crop(&v)?, path)),
        None => None,
    };
    Ok(Loaded {
        bet,
        hires,
        inia19,
        epi,
        skipped,
    })
}

/// One split to build: its plan, sidecar provenance and least head fraction.
pub(crate) struct Job<'a> {
    pub(crate) plan: Plan<'a>,
    pub(crate) provenance: serde_json::Value,
    pub(crate) min_head_fraction: f64,
}

/// nibabel's wheel, for the EPI.
pub const NIBABEL_ORIGIN: Origin = Origin {
    package:
        "PyPI nibabel 5.3.2 wheel, nibabel/tests/data/example4d.nii.gz (scripts/fetch-data.sh)",
    licence: "MIT (nibabel's licence, which covers its bundled test data)",
};

fn axial_plan<'a>(
    name: String,
    volume_name: &str,
    volume: &'a Volume,
    slabs: &[Range<usize>],
    stride: usize,
) -> Plan<'a> {
    let source = volume.source().display().to_string();
    Plan {
        name,
        candidates: slabs
            .iter()
            .flat_map(|slab| slab.clone().step_by(stride))
            .map(|k| Candidate::axial(volume_name, volume, &source, k))
            .collect(),
    }
}

fn generic_rule(slabs: &GenericSlabs, note: &str) -> serde_json::Value {
    let range = |r: &Range<usize>| json!([r.start, r.end]);
    json!({
        "rule": "generic slabs (host/src/sources.rs generic_slabs): usable span = first to last \
                 axial plane with min_support of its area above support_threshold * max; test = \
                 its central test_fraction, validation = the next validation_fraction superior \
                 of test after gap planes (>= 6 mm), train = the rest of the span a gap away; \
                 every stride-th plane (about 1 mm apart); planes whose head mask covers less \
                 than min_head_fraction of the plane are skipped",
        "note": note,
        "span": range(&slabs.span),
        "slabs": {
            "train": slabs.train.iter().map(range).collect::<Vec<_>>(),
            "validation": [range(&slabs.validation)],
            "test": [range(&slabs.test)],
        },
        "slab_ranges": "half-open [k0, k1)",
        "gap": slabs.gap,
        "stride": slabs.stride,
        "min_support": GENERIC_MIN_SUPPORT,
        "support_threshold": GENERIC_SUPPORT_THRESHOLD,
        "test_fraction": GENERIC_TEST_FRACTION,
        "validation_fraction": GENERIC_VALIDATION_FRACTION,
        "min_head_fraction": {"train": MIN_HEAD_FRACTION, "validation_test": OOD_MIN_HEAD_FRACTION},
    })
}

/// The three generic splits of one volume.
fn generic_jobs<'a>(
    source: &str,
    volume: &'a Volume,
    slabs: &GenericSlabs,
    provenance_of: impl Fn(serde_json::Value) -> serde_json::Value,
    note: &str,
) -> Vec<Job<'a>> {
    let rule = generic_rule(slabs, note);
    [
        ("train", slabs.train.clone(), MIN_HEAD_FRACTION),
        (
            "validation",
            vec![slabs.validation.clone()],
            OOD_MIN_HEAD_FRACTION,
        ),
        ("test", vec![slabs.test.clone()], OOD_MIN_HEAD_FRACTION),
    ]
    .into_iter()
    .map(|(split, ranges, min_head_fraction)| Job {
        plan: axial_plan(
            format!("{source}_{split}"),
            source,
            volume,
            &ranges,
            slabs.stride,
        ),
        provenance: provenance_of(rule.clone()),
        min_head_fraction,
    })
    .collect()
}

/// Every split of the extra sources, in export order. `mni` is the MNI T1 and the synthetic T2
/// with the sidecar records of their files, when the MNI files were given.
pub(crate) fn jobs<'a>(
    loaded: &'a Loaded,
    colin: &Volume,
    mni: Option<(&'a Volume, &'a Volume, &serde_json::Value)>,
    seed: u64,
) -> Result<Vec<Job<'a>>> {
    let mut jobs = Vec::new();
    let colin_slabs: Vec<Range<usize>> = COLIN27_TRAIN_SLABS.to_vec();
    let colin_rule = |what: &str| {
        json!({
            "rule": what,
            "colin27_train_slabs": colin_slabs.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
            "min_head_fraction": MIN_HEAD_FRACTION,
        })
    };
    if let Some((bet, path)) = &loaded.bet {
        jobs.push(Job {
            plan: axial_plan(
                "colin27_bet_train".to_owned(),
                "colin27_bet",
                bet,
                &colin_slabs,
                1,
            ),
            provenance: provenance(
                seed,
                colin_rule(
                    "Colin27 skull-stripped (ch2bet, ch2's grid): the axial planes of Colin27's \
                     train slabs, train only (the training subject's anatomy)",
                ),
                json!([source_record("colin27_bet", path, MRICRON_ORIGIN)?]),
            ),
            min_head_fraction: MIN_HEAD_FRACTION,
        });
    }
    if let Some((hires, path)) = &loaded.hires {
        // World z of Colin27 plane k is origin_z + k (1 mm); a 0.5 mm plane is kept when its z
        // lies within the planes of a train slab.
        let z_colin = |k: usize| colin.origin_mm()[2] + k as f64 * colin.voxel_mm()[2];
        let vz = hires.voxel_mm()[2];
        let z_hires = |k: usize| hires.origin_mm()[2] + k as f64 * vz;
        let stride = ((1.0 / vz).round() as usize).max(1);
        let planes: Vec<Range<usize>> = (0..hires.dims()[2])
            .step_by(stride)
            .filter(|&k| {
                COLIN27_TRAIN_SLABS.iter().any(|slab| {
                    let z = z_hires(k);
                    z >= z_colin(slab.start) - 1e-6 && z <= z_colin(slab.end - 1) + 1e-6
                })
            })
            .map(|k| k..k + 1)
            .collect();
        let source = hires.source().display().to_string();
        jobs.push(Job {
            plan: Plan {
                name: "colin27_hires_train".to_owned(),
                candidates: planes
                    .iter()
                    .map(|r| Candidate::axial("colin27_hires", hires, &source, r.start))
                    .collect(),
            },
            provenance: provenance(
                seed,
                colin_rule(
                    "Colin27 at 0.5 mm (ch2better): every other axial plane (1 mm apart) whose \
                     world z lies within the planes of a Colin27 train slab (z = -71 + k mm), \
                     centre-cropped to 256 x 256 (128 mm at 0.5 mm); k_range is in ch2better's \
                     own planes; train only (the training subject's anatomy)",
                ),
                json!([source_record("colin27_hires", path, MRICRON_ORIGIN)?]),
            ),
            min_head_fraction: MIN_HEAD_FRACTION,
        });
    }
    if let Some((t1, t2, sources)) = mni {
        let slabs = generic_slabs(t1)?;
        let provenance_of = |rule| provenance(seed, rule, sources.clone());
        jobs.extend(generic_jobs(
            "mni152_t1",
            t1,
            &slabs,
            &provenance_of,
            "MNI ICBM152 2009a T1",
        ));
        jobs.extend(generic_jobs(
            "synthetic_t2",
            t2,
            &slabs,
            &provenance_of,
            "the T2-like volume of ood_synthetic_t2, on mni152_t1's slabs (same anatomy)",
        ));
    }
    if let Some((inia, path)) = &loaded.inia19 {
        let slabs = generic_slabs(inia)?;
        let record = json!([source_record("inia19_t1", path, MRICRON_ORIGIN_INIA19)?]);
        jobs.extend(generic_jobs(
            "inia19_t1",
            inia,
            &slabs,
            |rule| provenance(seed, rule, record.clone()),
            "INIA19 rhesus macaque T1 template, brain only, 0.5 mm: another species' anatomy",
        ));
    }
    if let Some((epi, path)) = &loaded.epi {
        jobs.push(Job {
            plan: axial_plan(
                "epi_example4d_test".to_owned(),
                "epi_example4d",
                epi,
                std::slice::from_ref(&(0..epi.dims()[2])),
                1,
            ),
            provenance: provenance(
                seed,
                json!({
                    "rule": "nibabel's example EPI run: the first volume of the 4-D series, every \
                             axial plane (2 x 2 x 2.2 mm, embedded at its own resolution); too \
                             small to split, so test only",
                    "min_head_fraction": OOD_MIN_HEAD_FRACTION,
                }),
                json!([source_record("epi_example4d", path, NIBABEL_ORIGIN)?]),
            ),
            min_head_fraction: OOD_MIN_HEAD_FRACTION,
        });
    }
    Ok(jobs)
}

/// A user's own volume (`export --user NAME=PATH`): a NIfTI-1 file or a directory holding
/// one DICOM series ([`crate::dicom_series`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSource {
    pub name: String,
    pub path: PathBuf,
}

impl UserSource {
    /// Parses `NAME=PATH`; NAME is 1 to 40 of `a-z`, `0-9`, `_` (it names the split files).
    pub fn parse(text: &str) -> Result<Self> {
        let Some((name, path)) = text.split_once('=') else {
            bail!("--user {text:?}: expected NAME=PATH (a NIfTI file or a DICOM series directory)");
        };
        if name.is_empty()
            || name.len() > 40
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("--user {text:?}: NAME must be 1 to 40 characters of a-z, 0-9 and _");
        }
        Ok(Self {
            name: name.to_owned(),
            path: PathBuf::from(path),
        })
    }
}

/// What a user's volume is, for the split sidecars.
pub const USER_ORIGIN: Origin = Origin {
    package: "supplied by the user (sparsemap-host export --user)",
    licence: "as supplied by the user (not checked)",
};

/// Loads a user's volume: a directory is a DICOM series, a file NIfTI-1 (any voxel size, the
/// first volume of a 4-D series, oblique taken as the nearest axes). Returns the volume and its
/// sidecar record (for a series: the sha256 of the sorted `name sha256` lines of its files).
pub fn load_user(source: &UserSource) -> Result<(Volume, serde_json::Value)> {
    if source.path.is_dir() {
        let (volume, files) = crate::dicom_series::load(&source.path)?;
        let mut listing = String::new();
        for file in &files {
            let name = file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            listing += &format!("{name} {}\n", crate::export::sha256_file(file)?);
        }
        let digest = crate::export::sha256_hex(listing.as_bytes());
        let record = json!({
            "volume": source.name,
            "path": source.path.display().to_string(),
            "format": "DICOM series",
            "files": files.len(),
            "sha256": digest,
            "sha256_of": "the lines '<file name> <sha256 of the file>' of its files in slice order",
            "package": USER_ORIGIN.package,
            "licence": USER_ORIGIN.licence,
        });
        Ok((volume, record))
    } else {
        let volume = Volume::load_with(
            &source.path,
            LoadOptions {
                any_voxel_size: true,
                first_volume_of_4d: true,
                oblique_as_nearest_axis: true,
            },
        )?;
        let record = source_record(&source.name, &source.path, USER_ORIGIN)?;
        Ok((volume, record))
    }
}

/// The splits of a user's volume: `NAME_{train,validation,test}` by the generic rule, or
/// `NAME_test` alone (every axial plane) when the volume is too short to split.
pub(crate) fn user_jobs<'a>(
    name: &str,
    volume: &'a Volume,
    record: &serde_json::Value,
    seed: u64,
) -> Vec<Job<'a>> {
    match generic_slabs(volume) {
        Ok(slabs) => generic_jobs(
            name,
            volume,
            &slabs,
            |rule| provenance(seed, rule, json!([record])),
            "a user's own volume (export --user)",
        ),
        Err(why) => vec![Job {
            plan: axial_plan(
                format!("{name}_test"),
                name,
                volume,
                std::slice::from_ref(&(0..volume.dims()[2])),
                1,
            ),
            provenance: provenance(
                seed,
                json!({
                    "rule": "a user's own volume too short for the generic slabs: every axial \
                             plane, test only",
                    "why": format!("{why:#}"),
                    "min_head_fraction": OOD_MIN_HEAD_FRACTION,
                }),
                json!([record]),
            ),
            min_head_fraction: OOD_MIN_HEAD_FRACTION,
        }],
    }
}

/// INIA19 from `mricron-data`.
pub const MRICRON_ORIGIN_INIA19: Origin = Origin {
    package: MRICRON_ORIGIN.package,
    licence: "as mricron-data: BSD-3-Clause (debian/copyright, Files: *); upstream INIA19 \
              primate template, Rohlfing et al., Front Neuroinform 2012",
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume whose axial planes `support` are filled (value 1) and the rest zero.
    fn slab_volume(nk: usize, support: Range<usize>, voxel: f64) -> Volume {
        let (ni, nj) = (10, 10);
        let data = (0..ni * nj * nk)
            .map(|at| f32::from(support.contains(&(at / (ni * nj)))))
            .collect();
        Volume::new([ni, nj, nk], [voxel; 3], [0.0; 3], data, "test").unwrap()
    }

    fn disjoint_with_gap(a: &Range<usize>, b: &Range<usize>, gap: usize) -> bool {
        a.end + gap <= b.start || b.end + gap <= a.start
    }

    #[test]
    fn generic_slabs_are_disjoint_with_gaps_inside_the_span() {
        for (nk, support, voxel) in [(181, 20..160, 1.0), (128, 10..118, 0.5), (60, 5..55, 1.0)] {
            let s = generic_slabs(&slab_volume(nk, support.clone(), voxel)).unwrap();
            assert_eq!(s.span, support);
            assert_eq!(s.gap, (6.0 / voxel).ceil() as usize);
            let mut all = s.train.clone();
            all.push(s.validation.clone());
            all.push(s.test.clone());
            for r in &all {
                assert!(
                    !r.is_empty() && r.start >= s.span.start && r.end <= s.span.end,
                    "{r:?}"
                );
            }
            for t in &s.train {
                assert!(
                    disjoint_with_gap(t, &s.test, s.gap),
                    "{t:?} vs test {:?}",
                    s.test
                );
                assert!(disjoint_with_gap(t, &s.validation, s.gap));
            }
            assert!(disjoint_with_gap(&s.validation, &s.test, s.gap));
            assert!(
                s.validation.start > s.test.end,
                "validation is superior of test"
            );
            let centre = (s.span.start + s.span.end) as f64 / 2.0;
            let test_centre = (s.test.start + s.test.end) as f64 / 2.0;
            assert!((centre - test_centre).abs() <= 1.0);
        }
    }

    #[test]
    fn generic_slabs_refuse_a_short_or_empty_volume() {
        assert!(generic_slabs(&slab_volume(20, 5..15, 1.0)).is_err());
        let err = generic_slabs(&slab_volume(20, 0..0, 1.0)).unwrap_err();
        assert!(err.to_string().contains("no axial plane"), "{err}");
    }

    #[test]
    fn centre_crop_keeps_the_middle_and_moves_the_origin() {
        let (ni, nj, nk) = (300, 260, 2);
        let data = (0..ni * nj * nk).map(|at| (at % ni) as f32).collect();
        let v = Volume::new([ni, nj, nk], [0.5; 3], [0.0; 3], data, "t").unwrap();
        let c = centre_crop(&v).unwrap();
        assert_eq!(c.dims(), [CROP, CROP, nk]);
        assert_eq!(c.get(0, 0, 0), Some(((ni - CROP) / 2) as f32));
        assert_eq!(c.origin_mm(), [22.0 * 0.5, 2.0 * 0.5, 0.0]);
    }

    #[test]
    fn groups_hold_out_shared_anatomy_together() {
        assert_eq!(group_members("mni152"), ["mni152_t1", "synthetic_t2"]);
        assert_eq!(group_members("inia19_t1"), ["inia19_t1"]);
    }
}
