//! DICOM series as export sources (`export --user NAME=DIR`), against the NIfTI reader as the
//! oracle: the real Colin27 volume (Debian mricron-data) is written here as a DICOM series in
//! the scanner's usual axial layout (rows posterior, columns left, LPS positions, 16-bit values
//! with a Rescale Slope of 0.5, files named in shuffled order, a stray non-DICOM file), and
//! reading the series back must give the NIfTI volume exactly: same RAS grid, voxel size,
//! origin and values. Broken series give one-line errors naming the file.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use sparsemap_host::volume::Volume;
use std::path::{Path, PathBuf};
use std::process::Command;

const COLIN27: &str = "/usr/share/mricron/templates/ch2.nii.gz";

fn colin27() -> Volume {
    assert!(
        Path::new(COLIN27).is_file(),
        "{COLIN27} is missing: install the Debian package mricron-data (scripts/test.sh does)"
    );
    Volume::load(COLIN27).unwrap()
}

fn put(o: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Writes `volume` (RAS) as axial DICOM images into `dir`: pixel (r, c) of image k is RAS
/// voxel (n_i - 1 - c, n_j - 1 - r, k) (rows run posterior, columns to the patient's left).
/// Returns the files in slice order.
fn write_series(volume: &Volume, dir: &Path, series_uid: &str) -> Vec<PathBuf> {
    let [ni, nj, nk] = volume.dims();
    let [vi, vj, vk] = volume.voxel_mm();
    let [oi, oj, ok] = volume.origin_mm();
    let mut files = Vec::new();
    for k in 0..nk {
        let mut pixels = Vec::with_capacity(ni * nj);
        for r in 0..nj {
            for c in 0..ni {
                let v = volume.get(ni - 1 - c, nj - 1 - r, k).unwrap();
                // Stored = 2 v with Rescale Slope 0.5; Colin27's values are whole numbers.
                pixels.push((2.0 * v).round() as u16);
            }
        }
        // RAS position of voxel (n_i - 1, n_j - 1, k), in LPS.
        let ras = [oi + (ni - 1) as f64 * vi, oj + (nj - 1) as f64 * vj, ok + k as f64 * vk];
        let lps = [-ras[0], -ras[1], ras[2]];
        let mut o = InMemDicomObject::new_empty();
        let instance = format!("2.25.{}", 1_000_000 + k);
        put(&mut o, tags::SOP_CLASS_UID, VR::UI, uids::MR_IMAGE_STORAGE);
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &instance);
        put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, series_uid);
        put(&mut o, tags::MODALITY, VR::CS, "MR");
        put(&mut o, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0");
        put(&mut o, tags::IMAGE_POSITION_PATIENT, VR::DS, &format!("{}\\{}\\{}", lps[0], lps[1], lps[2]));
        put(&mut o, tags::PIXEL_SPACING, VR::DS, &format!("{vj}\\{vi}"));
        put(&mut o, tags::RESCALE_SLOPE, VR::DS, "0.5");
        put(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "0");
        for (tag, value) in [
            (tags::SAMPLES_PER_PIXEL, 1u16),
            (tags::ROWS, nj as u16),
            (tags::COLUMNS, ni as u16),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, 16),
            (tags::HIGH_BIT, 15),
            (tags::PIXEL_REPRESENTATION, 0),
        ] {
            o.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        }
        put(&mut o, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        o.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())));
        let file = o
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .unwrap();
        // Names in an order unrelated to the slice order.
        let path = dir.join(format!("IM{:05}", (k * 7919) % 100_003));
        file.write_to_file(&path).unwrap();
        files.push(path);
    }
    files
}

#[test]
fn a_dicom_series_reads_as_the_nifti_volume_it_was_written_from() {
    let nifti = colin27();
    let dir = tempfile::tempdir().unwrap();
    let files = write_series(&nifti, dir.path(), "2.25.42");
    std::fs::write(dir.path().join("README.txt"), "not DICOM").unwrap();
    let (series, order) = sparsemap_host::dicom_series::load(dir.path()).unwrap();
    assert_eq!(order, files, "slices sorted by position, not by file name");
    assert_eq!(series.dims(), nifti.dims());
    assert_eq!(series.voxel_mm(), nifti.voxel_mm());
    for (a, b) in series.origin_mm().iter().zip(nifti.origin_mm()) {
        assert!((a - b).abs() < 1e-6, "origin {:?} vs {:?}", series.origin_mm(), nifti.origin_mm());
    }
    assert_eq!(series.data(), nifti.data(), "voxel values differ");
}

#[test]
fn broken_series_are_one_line_errors_naming_the_file() {
    let nifti = colin27();
    let error = |dir: &Path| -> String {
        format!("{:#}", sparsemap_host::dicom_series::load(dir).expect_err("an error"))
    };
    // A slice missing in the middle.
    let gap = tempfile::tempdir().unwrap();
    let files = write_series(&nifti, gap.path(), "2.25.7");
    std::fs::remove_file(&files[90]).unwrap();
    let text = error(gap.path());
    assert!(text.contains("not evenly spaced") && !text.contains('\n'), "{text}");
    // Two series in one directory.
    let mixed = tempfile::tempdir().unwrap();
    write_series(&nifti, mixed.path(), "2.25.7");
    let other_dir = tempfile::tempdir().unwrap();
    let other = write_series(&nifti, other_dir.path(), "2.25.8");
    std::fs::copy(&other[3], mixed.path().join("other.dcm")).unwrap();
    let text = error(mixed.path());
    assert!(text.contains("2 series in one directory") && text.contains("2.25.8"), "{text}");
    // A truncated image.
    let cut = tempfile::tempdir().unwrap();
    let files = write_series(&nifti, cut.path(), "2.25.9");
    let bytes = std::fs::read(&files[10]).unwrap();
    std::fs::write(&files[10], &bytes[..bytes.len() / 2]).unwrap();
    let text = error(cut.path());
    assert!(text.contains(&files[10].display().to_string()), "{text}");
    // No DICOM at all.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("notes.txt"), "x").unwrap();
    assert!(error(empty.path()).contains("no DICOM image file"));
}

#[test]
fn export_user_writes_splits_from_a_dicom_series_with_its_digest() {
    let nifti = colin27();
    let series = tempfile::tempdir().unwrap();
    write_series(&nifti, series.path(), "2.25.11");
    let out = tempfile::tempdir().unwrap();
    let host = env!("CARGO_BIN_EXE_sparsemap-host");
    let run = Command::new(host)
        .args(["export", "--user-only", "--user"])
        .arg(format!("scanner_t1={}", series.path().display()))
        .arg("--user")
        .arg(format!("scanner_nifti={COLIN27}"))
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let count = |name: &str| -> usize {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_else(|| panic!("{name} missing:\n{stdout}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    for split in ["train", "validation", "test"] {
        let from_dicom = count(&format!("scanner_t1_{split}"));
        assert!(from_dicom > 0);
        assert_eq!(from_dicom, count(&format!("scanner_nifti_{split}")), "{split}: the series and its NIfTI give other slices");
    }
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("scanner_t1_test.json")).unwrap(),
    )
    .unwrap();
    let text = sidecar.to_string();
    assert!(text.contains("DICOM series") && text.contains("\"files\":181"), "{text}");
    let bad = Command::new(host)
        .args(["export", "--user-only", "--user", "Bad Name=x", "--out-dir"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAME must be"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Arbitrary bytes after a DICOM preamble (and a valid file with bytes flipped) are an
    /// error naming the file, never a panic.
    #[test]
    fn arbitrary_dicom_bytes_are_an_error_not_a_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&body);
        std::fs::write(dir.path().join("a.dcm"), &bytes).unwrap();
        let result = sparsemap_host::dicom_series::load(dir.path());
        proptest::prop_assert!(result.is_err());
        // A real image with bytes changed: an error or a volume, never a panic.
        let small = Volume::new([4, 4, 3], [1.0; 3], [0.0; 3], (0..48).map(|v| v as f32).collect(), "t").unwrap();
        let series = tempfile::tempdir().unwrap();
        let files = write_series(&small, series.path(), "2.25.5");
        let mut good = std::fs::read(&files[1]).unwrap();
        for (at, value) in flips {
            let n = good.len();
            good[at % n] = value;
        }
        std::fs::write(&files[1], &good).unwrap();
        let _ = sparsemap_host::dicom_series::load(series.path());
    }
}

/// fuzz/ `dicom_series` found two ~400-byte images that made dicom-rs size a buffer from a
/// bogus length (3.9 and 4.2 GB): an invalid VR followed by 0xEEEEEEEE, and the unknown VR
/// "DX". Lengths and VRs are now checked first; each file is a one-line error naming it,
/// within 512 MiB of address space.
#[test]
fn a_length_beyond_the_file_is_an_error_not_an_allocation() {
    for seed in ["regression-oom-length", "regression-oom-unknown-vr"] {
        replay_dicom_series_seed(seed);
    }
}

fn replay_dicom_series_seed(seed: &str) {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/dicom_series").join(seed),
    )
    .unwrap();
    // Split as the fuzz target does.
    let (cut, rest) = input.split_first().unwrap();
    let at = (usize::from(*cut) * rest.len()) / 255;
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [("a.dcm", &rest[..at]), ("b.dcm", &rest[at..])] {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(body);
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("prlimit")
        .arg(format!("--as={}", 512u64 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sparsemap-host"))
        .args(["export", "--user-only", "--user"])
        .arg(format!("fuzzed={}", dir.path().display()))
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("a.dcm") && text.contains("no valid value representation"), "{seed}: {text}");
}
