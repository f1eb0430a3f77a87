//! The real-data pipeline: NIfTI loading (`volume`), the split / simulated-set file formats
//! (`dataset`) and the export of Colin27 and MNI slices (`export`).
//!
//! Needs Colin27 from the Debian package `mricron-data` (installed by the test script) and,
//! for the MNI test, `scripts/fetch-data.sh` run first (CI does both). Missing data fails the
//! tests with a message saying what to install or run; nothing is skipped silently.

use std::collections::HashSet;
use std::f64::consts::FRAC_PI_2;
use std::fs;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ndarray::{s, Array2, Array3};
use ndarray_npy::{read_npy, NpzWriter};
use num_complex::Complex32;
use sparsemap_host::dataset::{
    read_simulated, read_split, sidecar_path, write_simulated, write_split, SimulatedSet,
    SliceMeta, Split,
};
use sparsemap_host::export::{
    export, phase_map, phase_seed, ExportConfig, COLIN27_TEST_SLAB, COLIN27_TRAIN_SLABS,
    COLIN27_VALIDATION_SLAB, GRID, HEAD_MASK_THRESHOLD, MIN_SLAB_GAP, MNI_FILES,
};
use sparsemap_host::metrics::{head_mask, Dims};
use sparsemap_host::volume::{Orientation, Volume};

const COLIN27: &str = "/usr/share/mricron/templates/ch2.nii.gz";
const CH2BETTER: &str = "/usr/share/mricron/templates/ch2better.nii.gz";
const SEED: u64 = 1234;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn colin27() -> PathBuf {
    let p = PathBuf::from(COLIN27);
    assert!(
        p.is_file(),
        "{COLIN27} is missing: install the Debian package mricron-data (apt-get install \
         mricron-data)"
    );
    p
}

fn mni_dir() -> PathBuf {
    let dir = repo().join("data/external/nilearn");
    for f in MNI_FILES {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run scripts/fetch-data.sh first (CI runs it before the tests)",
            dir.join(f).display()
        );
    }
    dir
}

fn magnitude(a: ndarray::ArrayView2<'_, Complex32>) -> Array2<f32> {
    a.mapv(|z| z.norm())
}

/// `plane / max(plane)` embedded centred in the grid, as the export documents.
fn embed(plane: &Array2<f32>) -> Array2<f32> {
    let (h, w) = plane.dim();
    let peak = plane.iter().copied().fold(0.0, f32::max);
    let mut out = Array2::zeros((GRID, GRID));
    let (r0, c0) = ((GRID - h) / 2, (GRID - w) / 2);
    out.slice_mut(s![r0..r0 + h, c0..c0 + w])
        .assign(&plane.mapv(|v| (f64::from(v) / f64::from(peak)) as f32));
    out
}

fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn find(split: &Split, orientation: Orientation, index: usize) -> usize {
    split
        .slices
        .iter()
        .position(|m| m.orientation == orientation && m.index == index)
        .unwrap_or_else(|| panic!("{}: no {orientation} slice {index}", split.name))
}

/// Phase bounded by π/2, smooth (adjacent pixels differ by at most the polynomial's bound
/// (π/2)·2·(2/255)), reproducible from the recorded seed, and the stored head mask is the
/// documented one.
fn check_slices(split: &Split, seed: u64) {
    let dims = Dims::new(GRID, GRID);
    let max_step = FRAC_PI_2 * 2.0 * 2.0 / (GRID - 1) as f64 + 1e-4;
    for (s, meta) in split.slices.iter().enumerate() {
        let t = split.targets.slice(s![s, .., ..]);
        let what = format!(
            "{} slice {s} ({} {})",
            split.name, meta.orientation, meta.index
        );
        assert_eq!(
            meta.phase_seed,
            phase_seed(
                seed,
                &meta.volume,
                meta.orientation,
                meta.index,
                meta.k_range
            ),
            "{what}"
        );
        let mag = magnitude(t);
        let peak = mag.iter().copied().fold(0.0, f32::max);
        assert!((peak - 1.0).abs() < 1e-6, "{what}: max |target| = {peak}");
        let phase = phase_map(meta.phase_seed);
        for ((r, c), z) in t.indexed_iter() {
            if z.norm() == 0.0 {
                continue;
            }
            let phi = f64::from(z.arg());
            assert!(
                phi.abs() <= FRAC_PI_2 + 1e-6,
                "{what}: phase {phi} at {r},{c}"
            );
            if z.norm() > 0.05 {
                assert!(
                    (phi - phase[[r, c]]).abs() < 1e-5,
                    "{what}: phase at {r},{c}"
                );
                for (r2, c2) in [(r + 1, c), (r, c + 1)] {
                    if r2 < GRID && c2 < GRID && t[[r2, c2]].norm() > 0.05 {
                        let step = (f64::from(t[[r2, c2]].arg()) - phi).abs();
                        assert!(step <= max_step, "{what}: phase step {step} at {r},{c}");
                    }
                }
            }
        }
        let want = head_mask(mag.as_slice().unwrap(), dims, HEAD_MASK_THRESHOLD).unwrap();
        let got: Vec<bool> = split
            .head_masks
            .slice(s![s, .., ..])
            .iter()
            .copied()
            .collect();
        assert!(
            want == got,
            "{what}: head mask differs from metrics::head_mask"
        );
    }
}

#[test]
fn colin27_export_is_voxel_disjoint_and_matches_the_examples() {
    let out = tempfile::tempdir().unwrap();
    let config = ExportConfig {
        colin27: colin27(),
        mni_dir: None,
        out_dir: out.path().to_path_buf(),
        seed: SEED,
        extra: None,
    };
    let start = std::time::Instant::now();
    let summary = export(&config, &ProgressBar::hidden()).unwrap();
    eprintln!("Colin27 export: {:.1} s", start.elapsed().as_secs_f64());
    let names: Vec<&str> = summary.splits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["train", "validation", "test"]);
    let note = summary.ood_skipped.as_deref().unwrap_or_default();
    assert!(note.contains("scripts/fetch-data.sh"), "{note:?}");

    let splits: Vec<Split> = summary
        .splits
        .iter()
        .map(|s| {
            assert!(s.json.is_file());
            let split = read_split(&s.npz).unwrap();
            assert_eq!(split.len(), s.count);
            split
        })
        .collect();
    let (train, validation, test) = (&splits[0], &splits[1], &splits[2]);
    for split in &splits {
        let by_orientation = |o| split.slices.iter().filter(|m| m.orientation == o).count();
        eprintln!(
            "{}: {} slices ({} axial, {} coronal, {} sagittal)",
            split.name,
            split.len(),
            by_orientation(Orientation::Axial),
            by_orientation(Orientation::Coronal),
            by_orientation(Orientation::Sagittal)
        );
    }

    // Every slice stays inside its split's slabs ...
    let inside = |m: &SliceMeta, slabs: &[std::ops::Range<usize>]| {
        slabs.iter().any(|r| {
            r.start <= m.k_range[0] && m.k_range[1] <= r.end && m.k_range[0] < m.k_range[1]
        })
    };
    for (split, slabs) in [
        (train, COLIN27_TRAIN_SLABS.to_vec()),
        (validation, vec![COLIN27_VALIDATION_SLAB]),
        (test, vec![COLIN27_TEST_SLAB]),
    ] {
        for m in &split.slices {
            assert!(inside(m, &slabs), "{}: {m:?} outside {slabs:?}", split.name);
            assert_eq!(m.volume, "colin27_t1");
            if m.orientation == Orientation::Axial {
                assert_eq!(m.k_range, [m.index, m.index + 1], "{m:?}");
            } else {
                assert_eq!(split.name, "train", "{m:?}");
                assert_eq!(m.plane_shape[0], m.k_range[1] - m.k_range[0], "{m:?}");
            }
        }
    }
    // ... so slices of different splits are at least MIN_SLAB_GAP planes apart.
    for (a, b) in [(train, validation), (train, test), (validation, test)] {
        for ma in &a.slices {
            for mb in &b.slices {
                // Zero when the ranges overlap or touch.
                let gap = (mb.k_range[0].saturating_sub(ma.k_range[1]))
                    .max(ma.k_range[0].saturating_sub(mb.k_range[1]));
                assert!(
                    gap >= MIN_SLAB_GAP,
                    "{} {ma:?} and {} {mb:?} are {gap} planes apart",
                    a.name,
                    b.name
                );
            }
        }
    }
    assert!(train
        .slices
        .iter()
        .any(|m| m.orientation == Orientation::Coronal));
    assert!(train
        .slices
        .iter()
        .any(|m| m.orientation == Orientation::Sagittal));

    // The pixels themselves: each band is the full-volume plane restricted to the band's k
    // rows (superior at the top), axial planes are the full planes.
    let vol = Volume::load(colin27()).unwrap();
    let nk = vol.dims()[2];
    for split in &splits {
        for (s, m) in split.slices.iter().enumerate() {
            let full = vol.plane(m.orientation, m.index).unwrap();
            let plane = match m.orientation {
                Orientation::Axial => full,
                _ => full
                    .slice(s![nk - m.k_range[1]..nk - m.k_range[0], ..])
                    .to_owned(),
            };
            assert_eq!([plane.nrows(), plane.ncols()], m.plane_shape, "{m:?}");
            assert_eq!(plane.iter().copied().fold(0.0, f32::max), m.peak, "{m:?}");
            let got = magnitude(split.targets.slice(s![s, .., ..]));
            let d = max_abs_diff(&got, &embed(&plane));
            assert!(d < 1e-6, "{} {m:?}: |target| differs by {d}", split.name);
        }
    }

    // The bundled examples (make_example.py) are slices of these splits, magnitude for
    // magnitude (their phases come from another generator).
    for (split, k, example) in [
        (test, 90, "examples/colin27/target.npy"),
        (validation, 70, "examples/colin27/validation/target.npy"),
    ] {
        let want: Array2<Complex32> = read_npy(repo().join(example)).unwrap();
        let got = magnitude(
            split
                .targets
                .slice(s![find(split, Orientation::Axial, k), .., ..]),
        );
        let d = max_abs_diff(&got, &want.mapv(|z| z.norm()));
        assert!(d <= 1e-6, "{example}: |target| differs by {d}");
    }

    let mut seeds = HashSet::new();
    for split in &splits {
        check_slices(split, SEED);
        seeds.extend(split.slices.iter().map(|m| m.phase_seed));
    }
    let total: usize = splits.iter().map(Split::len).sum();
    assert_eq!(seeds.len(), total, "phase seeds are not unique");
}

#[test]
fn mni_ood_sets_export_with_t2_contrast() {
    let dir = mni_dir();
    let out = tempfile::tempdir().unwrap();
    let config = ExportConfig {
        colin27: colin27(),
        mni_dir: Some(dir.clone()),
        out_dir: out.path().to_path_buf(),
        seed: SEED,
        extra: None,
    };
    let summary = export(&config, &ProgressBar::hidden()).unwrap();
    assert_eq!(summary.ood_skipped, None);
    let get = |name: &str| {
        let s = summary.splits.iter().find(|s| s.name == name).unwrap();
        read_split(&s.npz).unwrap()
    };
    let (t1_set, t2_set) = (get("ood_mni152_t1"), get("ood_synthetic_t2"));
    eprintln!(
        "ood_mni152_t1: {} slices, k = {:?}",
        t1_set.len(),
        t1_set.slices.iter().map(|m| m.index).collect::<Vec<_>>()
    );
    assert!((12..=30).contains(&t1_set.len()), "{}", t1_set.len());
    let ks = |s: &Split| s.slices.iter().map(|m| m.index).collect::<Vec<_>>();
    assert_eq!(ks(&t1_set), ks(&t2_set));
    assert!(t2_set.slices.iter().all(|m| m.volume == "synthetic_t2"));
    check_slices(&t1_set, SEED);
    check_slices(&t2_set, SEED);

    // Classify pixels by the dominant tissue of the probability maps (> 0.5) and compare mean
    // intensities: T2 has CSF > GM > WM, the T1 template WM > GM > CSF.
    let [t1, gm, wm] = MNI_FILES.map(|f| Volume::load(dir.join(f)).unwrap());
    let (t1_max, gm_max, wm_max) = (t1.max(), gm.max(), wm.max());
    let class_means = |set: &Split| {
        let mut sum = [0.0_f64; 3];
        let mut n = [0usize; 3];
        for (s, m) in set.slices.iter().enumerate() {
            let [b, g, w] = [&t1, &gm, &wm].map(|v| embed_raw(&v.axial(m.index).unwrap()));
            for ((r, c), z) in set.targets.slice(s![s, .., ..]).indexed_iter() {
                if b[[r, c]] <= 0.01 * t1_max {
                    continue;
                }
                let (g, w) = (g[[r, c]] / gm_max, w[[r, c]] / wm_max);
                let csf = (1.0 - g - w).clamp(0.0, 1.0);
                for (class, p) in [csf, g, w].into_iter().enumerate() {
                    if p > 0.5 {
                        sum[class] += f64::from(z.norm());
                        n[class] += 1;
                    }
                }
            }
        }
        assert!(
            n.iter().all(|&c| c > 1000),
            "too few classified pixels {n:?}"
        );
        [0, 1, 2].map(|c| sum[c] / n[c] as f64)
    };
    let [csf, gm_mean, wm_mean] = class_means(&t2_set);
    eprintln!("synthetic T2 means: CSF {csf:.3}, GM {gm_mean:.3}, WM {wm_mean:.3}");
    assert!(csf > gm_mean && gm_mean > wm_mean);
    let [csf, gm_mean, wm_mean] = class_means(&t1_set);
    eprintln!("MNI T1 means: CSF {csf:.3}, GM {gm_mean:.3}, WM {wm_mean:.3}");
    assert!(wm_mean > gm_mean && gm_mean > csf);
}

/// A plane embedded at the export's offsets, without normalisation.
fn embed_raw(plane: &Array2<f32>) -> Array2<f32> {
    let (h, w) = plane.dim();
    let mut out = Array2::zeros((GRID, GRID));
    let (r0, c0) = ((GRID - h) / 2, (GRID - w) / 2);
    out.slice_mut(s![r0..r0 + h, c0..c0 + w]).assign(plane);
    out
}

#[test]
fn missing_mni_files_are_named() {
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = ExportConfig {
        colin27: PathBuf::from(COLIN27),
        mni_dir: Some(empty.path().to_path_buf()),
        out_dir: out.path().to_path_buf(),
        seed: SEED,
        extra: None,
    };
    let e = export(&config, &ProgressBar::hidden())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&empty.path().join(MNI_FILES[0]).display().to_string()),
        "{e}"
    );
    assert!(e.contains("scripts/fetch-data.sh"), "{e}");
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "wrote before failing"
    );
}

// ---------------------------------------------------------------------------------------------
// dataset formats

fn small_split(name: &str) -> Split {
    let (n, h, w) = (3, 8, 6);
    let targets = Array3::from_shape_fn((n, h, w), |(s, y, x)| {
        Complex32::new(
            (s * 100 + y * 10 + x) as f32 * 0.01,
            -((y * x) as f32) / 7.0,
        )
    });
    let head_masks = Array3::from_shape_fn((n, h, w), |(s, y, x)| (s + y * x) % 3 == 0);
    let slices = (0..n)
        .map(|s| SliceMeta {
            volume: "colin27_t1".into(),
            source: "/nowhere/ch2.nii.gz".into(),
            orientation: [
                Orientation::Axial,
                Orientation::Coronal,
                Orientation::Sagittal,
            ][s],
            index: 10 + s,
            k_range: [10, 10 + s + 1],
            plane_shape: [h, w],
            phase_seed: u64::MAX - s as u64,
            peak: 254.0 / (s as f32 + 3.0),
        })
        .collect();
    Split {
        name: name.into(),
        targets,
        head_masks,
        slices,
        provenance: serde_json::json!({"seed": 7, "sources": [{"path": "x", "sha256": "00"}]}),
    }
}

fn small_simulated() -> SimulatedSet {
    let split = small_split("sim");
    let shape = split.targets.raw_dim();
    SimulatedSet {
        kspace: split.targets.mapv(|z| z * Complex32::new(0.5, 2.0)),
        masks: Array3::from_shape_fn(shape, |(_, y, _)| y % 2 == 0),
        zero_filled: split.targets.mapv(|z| z.conj()),
        acquisition: serde_json::json!({"noise": 0.15, "mask": "central block"}),
        split,
    }
}

#[test]
fn split_and_simulated_files_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let split = small_split("roundtrip");
    let npz = write_split(dir.path(), &split).unwrap();
    assert_eq!(npz, dir.path().join("roundtrip.npz"));
    assert!(sidecar_path(&npz).is_file());
    assert_eq!(read_split(&npz).unwrap(), split);
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sidecar_path(&npz)).unwrap()).unwrap();
    assert_eq!(json["count"], 3);
    assert_eq!(json["shape"], serde_json::json!([3, 8, 6]));
    assert_eq!(json["slices"][1]["orientation"], "coronal");

    let set = small_simulated();
    let path = dir.path().join("sub/sim_set.npz");
    write_simulated(&path, &set).unwrap();
    assert_eq!(read_simulated(&path).unwrap(), set);
    // A simulated set is not a split, and vice versa.
    assert!(read_split(&path).is_err());
    assert!(read_simulated(&npz).is_err());
    // No temporary files are left behind.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["roundtrip.json", "roundtrip.npz", "sub"]);
}

/// NumPy reads what we write, and what NumPy writes in the documented layout (here with a
/// NumPy bool mask) reads back identically.
#[test]
fn numpy_reads_and_writes_the_formats() {
    let python = repo().join("models/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup-python.sh",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let set = small_simulated();
    let ours = dir.path().join("ours.npz");
    write_simulated(&ours, &set).unwrap();
    let theirs = dir.path().join("theirs.npz");
    let script = r#"
import json, shutil, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
z = np.load(src)
meta = json.load(open(src[:-4] + ".json"))
assert sorted(z.files) == ["head_mask", "kspace", "mask", "target", "zero_filled"], z.files
for name in ("target", "kspace", "zero_filled"):
    assert z[name].dtype == np.complex64 and z[name].shape == tuple(meta["shape"]), name
for name in ("head_mask", "mask"):
    assert z[name].dtype == np.uint8 and set(np.unique(z[name])) <= {0, 1}, name
assert meta["count"] == len(meta["slices"]) == z["target"].shape[0]
assert meta["slices"][2]["orientation"] == "sagittal" and meta["acquisition"]["noise"] == 0.15
np.savez(dst, target=z["target"], head_mask=z["head_mask"].astype(bool), kspace=z["kspace"],
         mask=z["mask"].astype(bool), zero_filled=z["zero_filled"])
shutil.copy(src[:-4] + ".json", dst[:-4] + ".json")
"#;
    let status = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&ours)
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(status.success(), "the NumPy check failed");
    assert_eq!(read_simulated(&theirs).unwrap(), set);
}

fn assert_error_names(result: anyhow::Result<impl std::fmt::Debug>, file: &Path, what: &str) {
    let e = format!("{:#}", result.expect_err(what));
    assert!(
        e.contains(&file.display().to_string()),
        "{what}: error does not name {}: {e}",
        file.display()
    );
}

#[test]
fn broken_dataset_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let split = small_split("good");
    let npz = write_split(dir.path(), &split).unwrap();
    let bytes = fs::read(&npz).unwrap();
    let json = fs::read_to_string(sidecar_path(&npz)).unwrap();
    let variant = |name: &str, npz_bytes: &[u8], sidecar: Option<&str>| {
        let p = dir.path().join(format!("{name}.npz"));
        fs::write(&p, npz_bytes).unwrap();
        if let Some(text) = sidecar {
            fs::write(sidecar_path(&p), text).unwrap();
        }
        p
    };

    let p = variant("garbage", b"this is not a zip archive at all", Some(&json));
    assert_error_names(read_split(&p), &p, "garbage npz");
    let p = variant("truncated", &bytes[..bytes.len() / 2], Some(&json));
    assert_error_names(read_split(&p), &p, "truncated npz");
    let p = variant("nosidecar", &bytes, None);
    assert_error_names(read_split(&p), &sidecar_path(&p), "missing sidecar");
    let p = variant("badjson", &bytes, Some("{\"format\": "));
    assert_error_names(read_split(&p), &sidecar_path(&p), "bad sidecar");
    let p = dir.path().join("absent.npz");
    assert_error_names(read_split(&p), &p, "absent npz");

    let mut wrong_count: serde_json::Value = serde_json::from_str(&json).unwrap();
    wrong_count["count"] = 4.into();
    let p = variant("count", &bytes, Some(&wrong_count.to_string()));
    assert_error_names(read_split(&p), &sidecar_path(&p), "count mismatch");

    // Arrays of different shapes, a mask value of 2, a NaN: written behind the writer's back.
    let raw_npz = |name: &str, target: &Array3<Complex32>, mask: &Array3<u8>| {
        let p = dir.path().join(format!("{name}.npz"));
        let mut w = NpzWriter::new(fs::File::create(&p).unwrap());
        w.add_array("target", target).unwrap();
        w.add_array("head_mask", mask).unwrap();
        w.finish().unwrap();
        fs::write(sidecar_path(&p), &json).unwrap();
        p
    };
    let mask = split.head_masks.mapv(u8::from);
    let p = raw_npz(
        "shapes",
        &split.targets,
        &mask.slice(s![.., .., ..5]).to_owned(),
    );
    assert_error_names(read_split(&p), &p, "mismatched shapes");
    let mut two = mask.clone();
    two[[1, 2, 3]] = 2;
    let p = raw_npz("masktwo", &split.targets, &two);
    assert_error_names(read_split(&p), &p, "mask value 2");
    let mut nan = split.targets.clone();
    nan[[2, 0, 1]] = Complex32::new(f32::NAN, 0.0);
    let p = raw_npz("nan", &nan, &mask);
    assert_error_names(read_split(&p), &p, "NaN target");

    // The writers refuse inconsistent data instead of writing it.
    let mut bad = split.clone();
    bad.slices.pop();
    assert_error_names(write_split(dir.path(), &bad), &npz, "too few slice records");
    let mut set = small_simulated();
    set.masks = Array3::from_elem((3, 8, 5), true);
    let p = dir.path().join("badsim.npz");
    assert_error_names(write_simulated(&p, &set), &p, "mask shape");
    assert!(!p.exists());

    // Simulated sets: truncated archive, missing sidecar.
    let p = dir.path().join("sim.npz");
    write_simulated(&p, &small_simulated()).unwrap();
    let sim_bytes = fs::read(&p).unwrap();
    fs::write(&p, &sim_bytes[..sim_bytes.len() - 100]).unwrap();
    assert_error_names(read_simulated(&p), &p, "truncated simulated npz");
    fs::write(&p, &sim_bytes).unwrap();
    fs::remove_file(sidecar_path(&p)).unwrap();
    assert_error_names(
        read_simulated(&p),
        &sidecar_path(&p),
        "missing simulated sidecar",
    );
}

// ---------------------------------------------------------------------------------------------
// NIfTI loading

/// A little- or big-endian NIfTI-1 single file (`.nii`): 348-byte header, 4 zero extension
/// bytes, data.
struct Nifti {
    dims: [u16; 3],
    datatype: i16,
    bitpix: i16,
    pixdim: [f32; 4],
    scl: [f32; 2],
    qform_code: i16,
    sform_code: i16,
    quatern: [f32; 6],
    srow: [[f32; 4]; 3],
    big_endian: bool,
}

impl Nifti {
    fn identity(dims: [u16; 3], datatype: i16, bitpix: i16) -> Self {
        Self {
            dims,
            datatype,
            bitpix,
            pixdim: [1.0; 4],
            scl: [0.0, 0.0],
            qform_code: 0,
            sform_code: 1,
            quatern: [0.0; 6],
            srow: [
                [1.0, 0.0, 0.0, -10.0],
                [0.0, 1.0, 0.0, -20.0],
                [0.0, 0.0, 1.0, -30.0],
            ],
            big_endian: false,
        }
    }

    fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        let be = self.big_endian;
        let put = |h: &mut Vec<u8>, at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
        let i16b = |v: i16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let f32b = |v: f32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        put(
            &mut h,
            0,
            &(if be {
                348i32.to_be_bytes()
            } else {
                348i32.to_le_bytes()
            }),
        );
        let dim = [
            3,
            self.dims[0] as i16,
            self.dims[1] as i16,
            self.dims[2] as i16,
            1,
            1,
            1,
            1,
        ];
        for (n, d) in dim.into_iter().enumerate() {
            put(&mut h, 40 + 2 * n, &i16b(d));
        }
        put(&mut h, 70, &i16b(self.datatype));
        put(&mut h, 72, &i16b(self.bitpix));
        for (n, p) in self.pixdim.into_iter().enumerate() {
            put(&mut h, 76 + 4 * n, &f32b(p));
        }
        put(&mut h, 108, &f32b(352.0));
        put(&mut h, 112, &f32b(self.scl[0]));
        put(&mut h, 116, &f32b(self.scl[1]));
        put(&mut h, 252, &i16b(self.qform_code));
        put(&mut h, 254, &i16b(self.sform_code));
        for (n, q) in self.quatern.into_iter().enumerate() {
            put(&mut h, 256 + 4 * n, &f32b(q));
        }
        for (row, r) in self.srow.iter().enumerate() {
            for (n, v) in r.iter().enumerate() {
                put(&mut h, 280 + 16 * row + 4 * n, &f32b(*v));
            }
        }
        put(&mut h, 344, b"n+1\0");
        h.extend_from_slice(data);
        h
    }
}

/// File value of voxel `(a, b, c)` of a 3×4×5 test volume.
fn f(a: usize, b: usize, c: usize) -> i16 {
    (a + 10 * b + 100 * c) as i16
}

fn int16_data(big_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for c in 0..5 {
        for b in 0..4 {
            for a in 0..3 {
                let v = f(a, b, c);
                out.extend(if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                });
            }
        }
    }
    out
}

#[test]
fn nifti_axes_are_permuted_and_flipped_to_ras_with_scaling() {
    let dir = tempfile::tempdir().unwrap();
    // File axis 0 → posterior (−y), axis 1 → superior (+z), axis 2 → left (−x).
    let mut n = Nifti::identity([3, 4, 5], 4, 16);
    n.srow = [
        [0.0, 0.0, -1.0, 5.0],
        [-1.0, 0.0, 0.0, 7.0],
        [0.0, 1.0, 0.0, -3.0],
    ];
    n.scl = [2.0, 1.0];
    let p = dir.path().join("permuted.nii");
    fs::write(&p, n.bytes(&int16_data(false))).unwrap();
    let v = Volume::load(&p).unwrap();
    assert_eq!(v.dims(), [5, 3, 4]);
    assert_eq!(v.voxel_mm(), [1.0; 3]);
    // RAS voxel (0, 0, 0) is file voxel (2, 0, 4): world (5 − 4, 7 − 2, −3).
    assert_eq!(v.origin_mm(), [1.0, 5.0, -3.0]);
    for (x, y, z) in [(0, 0, 0), (4, 2, 3), (1, 2, 0), (3, 0, 2)] {
        let want = 2.0 * f32::from(f(2 - y, z, 4 - x)) + 1.0;
        assert_eq!(v.get(x, y, z), Some(want), "RAS ({x}, {y}, {z})");
    }

    // qform only, big-endian: a 180° turn about z flips i and j.
    let mut n = Nifti::identity([3, 4, 5], 4, 16);
    n.sform_code = 0;
    n.qform_code = 1;
    n.quatern = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    n.big_endian = true;
    let p = dir.path().join("qform_be.nii");
    fs::write(&p, n.bytes(&int16_data(true))).unwrap();
    let v = Volume::load(&p).unwrap();
    assert_eq!(v.dims(), [3, 4, 5]);
    assert_eq!(v.get(0, 0, 1), Some(f32::from(f(2, 3, 1))));
    assert_eq!(v.get(2, 1, 4), Some(f32::from(f(0, 2, 4))));
}

#[test]
fn bad_nifti_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = int16_data(false);
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let expect = |p: &Path, needle: &str| {
        let e = format!("{:#}", Volume::load(p).expect_err(needle));
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains(needle), "expected {needle:?} in {e}");
    };

    expect(&dir.path().join("absent.nii.gz"), "no such file");
    expect(&write("text.nii", &[b'x'; 400]), "NIfTI");
    let colin = fs::read(colin27()).unwrap();
    expect(
        &write("truncated.nii.gz", &colin[..colin.len() / 2]),
        "NIfTI",
    );
    expect(Path::new(CH2BETTER), "not 1 mm isotropic");

    let mut n = Nifti::identity([3, 4, 5], 4, 16);
    let c = std::f32::consts::FRAC_1_SQRT_2;
    n.srow = [[c, -c, 0.0, 0.0], [c, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
    expect(&write("oblique.nii", &n.bytes(&data)), "oblique");
    let mut n = Nifti::identity([3, 4, 5], 4, 16);
    n.sform_code = 0;
    expect(&write("noform.nii", &n.bytes(&data)), "orientation");
    let mut n = Nifti::identity([3, 4, 5], 4, 16);
    n.srow[2][2] = 2.0;
    expect(&write("thick.nii", &n.bytes(&data)), "not 1 mm isotropic");
    let n = Nifti::identity([3, 4, 5], 32, 64);
    expect(
        &write("complex.nii", &n.bytes(&[0u8; 60 * 8])),
        "unsupported datatype",
    );
    let n = Nifti::identity([3, 4, 5], 16, 32);
    let mut floats: Vec<u8> = (0..60).flat_map(|v| (v as f32).to_le_bytes()).collect();
    floats[4 * 17..4 * 18].copy_from_slice(&f32::INFINITY.to_le_bytes());
    expect(&write("inf.nii", &n.bytes(&floats)), "non-finite");
    let mut four_d =
        Nifti::identity([3, 4, 5], 4, 16).bytes(&[data.clone(), data.clone()].concat());
    four_d[40..42].copy_from_slice(&4i16.to_le_bytes());
    four_d[48..50].copy_from_slice(&2i16.to_le_bytes());
    expect(&write("four_d.nii", &four_d), "not a 3-D volume");
}

#[test]
fn colin27_loads_in_ras_with_the_documented_planes() {
    let v = Volume::load(colin27()).unwrap();
    assert_eq!(v.dims(), [181, 217, 181]);
    assert_eq!(v.origin_mm(), [-90.0, -125.0, -71.0]);
    assert_eq!(v.max(), 254.0);
    let ax = v.axial(90).unwrap();
    assert_eq!(ax.dim(), (217, 181));
    assert_eq!(ax[[0, 5]], v.get(5, 216, 90).unwrap());
    assert_eq!(v.coronal(100).unwrap().dim(), (181, 181));
    assert_eq!(v.sagittal(90).unwrap().dim(), (181, 217));
}

/// Issue 12: the further real sources. Every split is written with slices, each sidecar names
/// its files' package, licence and sha256, the generic slabs are voxel-disjoint with gaps of at
/// least 6 mm, the Colin27 variants only add train slices from Colin27's train slabs, and the
/// Colin27 and legacy OOD files are byte-identical to an export without the extra sources.
#[test]
fn extra_sources_export_disjoint_licensed_and_leave_the_rest_unchanged() {
    use sparsemap_host::sources::ExtraSources;
    let mni = mni_dir();
    let epi = repo().join(sparsemap_host::sources::EPI_DEFAULT);
    assert!(
        epi.is_file(),
        "{} is missing: run scripts/fetch-data.sh first",
        epi.display()
    );
    let (plain, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |out: &Path, extra: Option<ExtraSources>| {
        let config = ExportConfig {
            colin27: colin27(),
            mni_dir: Some(mni.clone()),
            out_dir: out.to_path_buf(),
            seed: SEED,
            extra,
        };
        export(&config, &ProgressBar::hidden()).unwrap()
    };
    run(plain.path(), None);
    let start = std::time::Instant::now();
    let summary = run(
        full.path(),
        Some(ExtraSources {
            epi_example4d: epi,
            ..ExtraSources::default()
        }),
    );
    eprintln!(
        "export with the extra sources: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        summary.sources_skipped.is_empty(),
        "{:?}",
        summary.sources_skipped
    );
    for name in [
        "train",
        "validation",
        "test",
        "ood_mni152_t1",
        "ood_synthetic_t2",
    ] {
        for ext in ["npz", "json"] {
            let file = format!("{name}.{ext}");
            let (a, b) = (plain.path().join(&file), full.path().join(&file));
            assert_eq!(
                fs::read(&a).unwrap(),
                fs::read(&b).unwrap(),
                "{file} changed"
            );
        }
    }
    let expected = [
        ("colin27_bet_train", 60..=140),
        ("colin27_hires_train", 80..=140),
        ("mni152_t1_train", 50..=120),
        ("mni152_t1_validation", 8..=30),
        ("mni152_t1_test", 20..=50),
        ("synthetic_t2_train", 50..=120),
        ("synthetic_t2_validation", 8..=30),
        ("synthetic_t2_test", 20..=50),
        ("inia19_t1_train", 5..=60),
        ("inia19_t1_validation", 3..=15),
        ("inia19_t1_test", 6..=30),
        ("epi_example4d_test", 10..=24),
    ];
    let mut by_name = std::collections::HashMap::new();
    for (name, counts) in expected {
        let s = summary
            .splits
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} not exported"));
        eprintln!("{name}: {} slices", s.count);
        assert!(counts.contains(&s.count), "{name}: {} slices", s.count);
        let split = read_split(&s.npz).unwrap();
        check_slices(&split, SEED);
        for source in split.provenance["sources"].as_array().unwrap() {
            let path = source["path"].as_str().unwrap();
            for key in ["package", "licence"] {
                assert!(!source[key].as_str().unwrap().is_empty(), "{name}: {key}");
            }
            assert_eq!(
                source["sha256"].as_str().unwrap(),
                sparsemap_host::export::sha256_file(Path::new(path)).unwrap(),
                "{name}: {path}"
            );
        }
        by_name.insert(name, split);
    }
    // Generic slabs: at least 6 mm between any two planes of different splits.
    for (source, voxel_mm) in [
        ("mni152_t1", 1.0),
        ("synthetic_t2", 1.0),
        ("inia19_t1", 0.5),
    ] {
        let planes = |split: &str| -> Vec<usize> {
            by_name[format!("{source}_{split}").as_str()]
                .slices
                .iter()
                .map(|m| {
                    assert_eq!(m.orientation, Orientation::Axial);
                    m.index
                })
                .collect()
        };
        let (train, validation, test) = (planes("train"), planes("validation"), planes("test"));
        for (a, b) in [(&train, &validation), (&train, &test), (&validation, &test)] {
            for &p in a {
                for &q in b {
                    let gap_mm = (p.abs_diff(q) as f64 - 1.0) * voxel_mm;
                    assert!(gap_mm >= 6.0 - 1e-9, "{source}: planes {p} and {q}");
                }
            }
        }
    }
    // Colin27 variants: train only, inside Colin27's train slabs (world z = -71 + k mm).
    let in_train_slab = |z: f64| {
        COLIN27_TRAIN_SLABS
            .iter()
            .any(|r| z >= -71.0 + r.start as f64 - 1e-6 && z <= -71.0 + (r.end - 1) as f64 + 1e-6)
    };
    for m in &by_name["colin27_bet_train"].slices {
        assert!(
            in_train_slab(-71.0 + m.index as f64),
            "ch2bet plane {}",
            m.index
        );
    }
    for m in &by_name["colin27_hires_train"].slices {
        assert!(
            in_train_slab(-69.5 + 0.5 * m.index as f64),
            "ch2better plane {}",
            m.index
        );
        assert_eq!(
            m.plane_shape,
            [GRID, GRID],
            "ch2better planes are cropped to the grid"
        );
    }
    for name in [
        "colin27_bet_validation",
        "colin27_hires_test",
        "epi_example4d_train",
    ] {
        assert!(
            !full.path().join(format!("{name}.npz")).exists(),
            "{name} written"
        );
    }
    assert!(by_name["epi_example4d_test"]
        .slices
        .iter()
        .all(|m| m.plane_shape == [96, 128]));
}
