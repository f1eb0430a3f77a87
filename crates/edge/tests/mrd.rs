//! `sparsemap recon --input scan.h5` on MRD/ISMRMRD HDF5 files written during the test by the
//! two real writers: the ISMRMRD Python package (models/tools/make_mrd.py, 372-byte packed
//! acquisition compound) and the C++ library's `ismrmrd_generate_cartesian_shepp_logan`
//! (Debian ismrmrd-tools, 376-byte padded compound). Each reconstruction is compared with
//! `recon --kspace` on the same k-space and with the known image; corrupt and inconsistent
//! files must give a one-line error naming the file, never a panic.
//!
//! The writers are installed by scripts/test.sh (apt ismrmrd-tools, models/.venv from
//! scripts/setup-python.sh), which also sets `SPARSEMAP_REQUIRE_MRD_TOOLS=1`: then a missing
//! writer fails the tests; without it they are skipped with a message.

use ndarray::{s, Array2, Array3, Array4};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use num_complex::Complex32;
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CPP_GENERATOR: &str = "ismrmrd_generate_cartesian_shepp_logan";
/// The fixed sparsity level of the colin27 example (crates/edge/tests/cli.rs).
const LAMBDA: &str = "0.012";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    repo().join("models/.venv/bin/python")
}

/// The directory of the generated files, or `None` (skip) when a writer is missing.
fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_python = Command::new(python())
            .args(["-c", "import ismrmrd, h5py"])
            .output()
            .is_ok_and(|o| o.status.success());
        let has_cpp = Command::new(CPP_GENERATOR).arg("--help").output().is_ok();
        if !(has_python && has_cpp) {
            let message = format!(
                "MRD writers missing (ISMRMRD Python package in models/.venv: {has_python}, \
                 {CPP_GENERATOR} from Debian ismrmrd-tools: {has_cpp}); run scripts/test.sh or \
                 scripts/setup-python.sh and scripts/apt-install.sh ismrmrd-tools"
            );
            if std::env::var_os("SPARSEMAP_REQUIRE_MRD_TOOLS").is_some() {
                panic!("{message}");
            }
            eprintln!("SKIPPED: {message}");
            return None;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mrd-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let made = Command::new(python())
            .arg(repo().join("models/tools/make_mrd.py"))
            .arg(dir.join("py"))
            .output()
            .unwrap();
        assert!(made.status.success(), "make_mrd.py: {}", stderr(&made));
        for (name, args) in [
            // 4 coils, readout oversampling 2 (its default), no noise.
            ("cpp.h5", &["-m", "64", "-c", "4", "-n", "0"][..]),
            // A noise-calibration scan first, acceleration 2 with 16 calibration lines (the
            // generator writes the two shifted patterns as repetitions 0 and 1).
            (
                "cpp_noise.h5",
                &["-m", "64", "-c", "2", "-C", "-a", "2", "-w", "16"][..],
            ),
        ] {
            let made = Command::new(CPP_GENERATOR)
                .args(args)
                .arg("-o")
                .arg(dir.join(name))
                .output()
                .unwrap();
            assert!(made.status.success(), "{CPP_GENERATOR}: {}", stderr(&made));
        }
        Some(dir)
    })
    .as_deref()
}

fn sparsemap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsemap"))
        .args(args)
        .output()
        .expect("runs the binary")
}

/// The binary under `prlimit --as=512MiB`.
fn limited(args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={}", 512u64 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sparsemap"))
        .args(args)
        .output()
        .expect("prlimit (util-linux) runs the binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read<A: ReadNpyExt>(path: &Path) -> A {
    A::read_npy(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn write<A: WriteNpyExt>(path: &Path, array: &A) {
    array.write_npy(File::create(path).unwrap()).unwrap();
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `recon --input FILE --out-dir DIR --lambda LAMBDA --save-kspace`: the JSON lines and
/// stderr. `extra` may start with `--lambda VALUE` (it then replaces LAMBDA).
fn recon_input(file: &Path, out: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let (lambda, extra) = match extra {
        ["--lambda", value, rest @ ..] => (*value, rest),
        _ => (LAMBDA, extra),
    };
    let mut args = vec![
        "recon",
        "--input",
        file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--save-kspace",
        "--lambda",
        lambda,
    ];
    args.extend_from_slice(extra);
    let output = sparsemap(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, stderr(&output))
}

/// `recon --kspace K --mask M --out OUT --lambda LAMBDA` (+ extra): the image.
fn recon_kspace(kspace: &Path, mask: &Path, out: &Path, extra: &[&str]) -> Array2<Complex32> {
    let mut args = vec![
        "recon",
        "--kspace",
        kspace.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lambda",
        LAMBDA,
    ];
    args.extend_from_slice(extra);
    let output = sparsemap(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    read(out)
}

/// RSS over coils of `recon --kspace` on each coil of `kspace` [coils][n_y][n_x] with `mask`.
fn rss_of_single_coil_recons(
    kspace: &Array3<Complex32>,
    mask: &Array2<u8>,
    dir: &Path,
    extra: &[&str],
) -> Array2<f32> {
    let mask_path = dir.join("mask.npy");
    write(&mask_path, mask);
    let mut sum = Array2::<f32>::zeros(mask.dim());
    for c in 0..kspace.dim().0 {
        let k_path = dir.join(format!("coil{c}.npy"));
        write(&k_path, &kspace.slice(s![c, .., ..]).to_owned());
        let image = recon_kspace(&k_path, &mask_path, &dir.join(format!("x{c}.npy")), extra);
        sum.zip_mut_with(&image, |acc, v| *acc += v.norm_sqr());
    }
    sum.mapv(f32::sqrt)
}

/// PSNR of `x` against `truth` (magnitudes), peak = max |truth|.
fn psnr(x: impl Iterator<Item = f32>, truth: impl Iterator<Item = f32>) -> f64 {
    let (mut peak, mut sse, mut n) = (0f64, 0f64, 0usize);
    for (a, b) in x.zip(truth) {
        peak = peak.max(f64::from(b));
        sse += (f64::from(a) - f64::from(b)).powi(2);
        n += 1;
    }
    10.0 * (peak * peak / (sse / n as f64)).log10()
}

fn max_abs_diff<'a>(
    a: impl Iterator<Item = &'a Complex32>,
    b: impl Iterator<Item = &'a Complex32>,
) -> f32 {
    a.zip(b).map(|(x, y)| (x - y).norm()).fold(0.0, f32::max)
}

/// Python writer, one coil, block mask with a readout window and discarded samples: the
/// same k-space, mask and image bit for bit as `recon --kspace` on examples/colin27, and the
/// header's facts in the sidecar.
#[test]
fn python_single_coil_equals_recon_kspace_bit_for_bit() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (lines, log) = recon_input(&fixtures.join("py/single2d.h5"), &out, &[]);
    println!("{log}");
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["status"], "ok");
    assert_eq!(line["lines_received"], 128);
    assert_eq!(line["lines_expected"], 256, "encoding limits 0..=255");
    assert_eq!(line["missing"], 128);
    assert!(line.get("coil_combination").is_none());

    let example = repo().join("examples/colin27");
    let reference = recon_kspace(
        &example.join("kspace.npy"),
        &example.join("mask.npy"),
        &dir.path().join("ref.npy"),
        &[],
    );
    let image: Array2<Complex32> = read(&out.join("scan00000_slice000.npy"));
    let kspace: Array2<Complex32> = read(&out.join("scan00000_slice000_kspace.npy"));
    let mask: Array2<u8> = read(&out.join("scan00000_slice000_mask.npy"));
    let example_kspace: Array2<Complex32> = read(&example.join("kspace.npy"));
    let example_mask: Array2<u8> = read(&example.join("mask.npy"));
    assert_eq!(kspace, example_kspace, "k-space placed bit for bit");
    assert_eq!(mask, example_mask);
    assert_eq!(image, reference, "image bit for bit");
    let target: Array2<Complex32> = read(&example.join("target.npy"));
    let db = psnr(
        image.iter().map(|v| v.norm()),
        target.iter().map(|v| v.norm()),
    );
    println!("single coil: PSNR {db:.2} dB vs the known image; identical to recon --kspace");
    assert!(db >= 33.0, "PSNR {db} dB (measured 33.59)");

    let sidecar = json(&out.join("scan00000_slice000.json"));
    let a = &sidecar["acquisition"];
    assert!((a["field_mt"].as_f64().unwrap() - 47.0).abs() < 0.01, "{a}");
    assert_eq!(a["n_coils"], 1);
    assert_eq!(
        (a["kx_first"].as_u64(), a["kx_count"].as_u64()),
        (Some(64), Some(128))
    );
    assert_eq!(a["fov_mm"], serde_json::json!([256.0, 256.0]));
    let g = &a["geometry"];
    assert_eq!(g["centre_mm"], serde_json::json!([10.5, -20.25, 30.0]));
    assert_eq!(g["read_dir"], serde_json::json!([1.0, 0.0, 0.0]));
    assert_eq!(g["slice_dir"], serde_json::json!([0.0, 0.0, 1.0]));
    assert_eq!(g["thickness_mm"], 5.0);
    let d = &a["description"];
    assert_eq!(d["patient_name"], "Phantom^Colin");
    assert_eq!(d["patient_id"], "SM-0027");
    assert_eq!(d["patient_position"], "HFS");
    assert_eq!(d["protocol_name"], "t1_se_lowfield");
    assert_eq!(d["series_description"], "T1 SE axial (Größe test)");
    assert_eq!(d["study_instance_uid"], "1.2.826.0.1.3680043.10.1234.1");
    assert_eq!(
        (d["tr_ms"].as_f64(), d["te_ms"].as_f64()),
        (Some(500.0), Some(15.0))
    );
    assert_eq!(d["flip_angle_deg"], 90.0);
    assert_eq!(a["coil_combination"], Value::Null);
    assert_eq!(sidecar["voxel_mm"], serde_json::json!([1.0, 1.0]));
}

/// Partial Fourier (encoding limits 40..=127 of 128 rows, centre 64) and an asymmetric echo
/// (96 of 128 columns) with a few full readouts: each row's mask is its own window, the
/// k-space is the writer's bit for bit, and the image is `recon --kspace`'s.
#[test]
fn partial_fourier_and_asymmetric_echo_windows() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (lines, _) = recon_input(&fixtures.join("py/partial2d.h5"), &out, &[]);
    assert_eq!(lines[0]["lines_received"], 88);
    assert_eq!(
        lines[0]["lines_expected"], 88,
        "rows 40..=127 of the limits"
    );
    assert_eq!(lines[0]["missing"], 0);
    let kspace: Array2<Complex32> = read(&out.join("scan00000_slice000_kspace.npy"));
    let mask: Array2<u8> = read(&out.join("scan00000_slice000_mask.npy"));
    let want_k: Array2<Complex32> = read(&fixtures.join("py/partial2d_kspace.npy"));
    let want_m: Array2<u8> = read(&fixtures.join("py/partial2d_mask.npy"));
    assert_eq!(kspace, want_k);
    assert_eq!(mask, want_m);
    assert_eq!(mask.row(50).iter().filter(|&&m| m == 1).count(), 96);
    assert_eq!(mask.row(62).iter().filter(|&&m| m == 1).count(), 128);
    let reference = recon_kspace(
        &fixtures.join("py/partial2d_kspace.npy"),
        &fixtures.join("py/partial2d_mask.npy"),
        &dir.path().join("ref.npy"),
        &[],
    );
    let image: Array2<Complex32> = read(&out.join("scan00000_slice000.npy"));
    assert_eq!(image, reference);
    let sidecar = json(&out.join("scan00000_slice000.json"));
    let a = &sidecar["acquisition"];
    assert_eq!(
        (a["kx_first"].as_u64(), a["kx_count"].as_u64()),
        (Some(0), Some(128))
    );
}

/// Noise-adjustment scans first, navigator and phase-correction readouts in between: skipped,
/// counted (stderr, JSON line, sidecar), and the image is the one without them, bit for bit.
#[test]
fn noise_navigator_and_phase_correction_scans_are_skipped_and_counted() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = recon_input(&fixtures.join("py/single2d.h5"), &dir.path().join("a"), &[]);
    let (lines, log) = recon_input(&fixtures.join("py/noise2d.h5"), &dir.path().join("b"), &[]);
    println!("{log}");
    assert!(
        log.contains("141 acquisitions")
            && log.contains("128 used")
            && log.contains("skipped 8 noise, 2 navigator, 3 phase correction"),
        "{log}"
    );
    let expected = serde_json::json!({
        "noise": 8, "navigator": 2, "phasecorr": 3, "other_kind": 0, "other_image": 0
    });
    assert_eq!(lines[0]["mrd"]["skipped"], expected);
    let sidecar = json(&dir.path().join("b/scan00000_slice000.json"));
    assert_eq!(sidecar["acquisition"]["mrd"]["skipped"], expected);
    let a: Array2<Complex32> = read(&dir.path().join("a/scan00000_slice000.npy"));
    let b: Array2<Complex32> = read(&dir.path().join("b/scan00000_slice000.npy"));
    assert_eq!(a, b);
}

/// Python writer, 4 coils, readout oversampled 2x: removing the oversampling gives the
/// k-space of the 128x128 grid (the writer's own F of each coil image), and the image is the
/// RSS of `recon --kspace` on each coil.
#[test]
fn python_multicoil_oversampled_is_rss_of_single_coil_recons() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (lines, log) = recon_input(
        &fixtures.join("py/multicoil.h5"),
        &out,
        &["--coil-combination", "rss"],
    );
    println!("{log}");
    assert_eq!(lines[0]["coil_combination"], "rss");
    assert_eq!(
        lines[0]["mrd"]["readout_oversampling"],
        serde_json::json!([256, 128])
    );
    let expected: Array3<Complex32> = read(&fixtures.join("py/multicoil_kspace.npy"));
    let expected_mask: Array2<u8> = read(&fixtures.join("py/multicoil_mask.npy"));
    let kspace: Array3<Complex32> = read(&out.join("scan00000_slice000_kspace.npy"));
    let mask: Array3<u8> = read(&out.join("scan00000_slice000_mask.npy"));
    let peak = expected.iter().map(|v| v.norm()).fold(0.0, f32::max);
    let k_diff = max_abs_diff(kspace.iter(), expected.iter());
    println!("oversampling removal: max |k - k_python| = {k_diff:.3e} (peak {peak:.2})");
    assert!(k_diff <= 1e-5 * peak, "{k_diff} vs peak {peak}");
    for c in 0..4 {
        assert_eq!(mask.slice(s![c, .., ..]), expected_mask);
    }

    let image: Array2<Complex32> = read(&out.join("scan00000_slice000.npy"));
    assert!(
        image.iter().all(|v| v.im == 0.0 && v.re >= 0.0),
        "RSS: zero phase"
    );
    let rss = rss_of_single_coil_recons(&expected, &expected_mask, dir.path(), &[]);
    let peak = rss.iter().copied().fold(0.0, f32::max);
    let diff = image
        .iter()
        .zip(&rss)
        .map(|(a, b)| (a.re - b).abs())
        .fold(0.0, f32::max);
    let truth: Array2<Complex32> = read(&fixtures.join("py/multicoil_truth.npy"));
    let db = psnr(image.iter().map(|v| v.re), truth.iter().map(|v| v.norm()));
    println!(
        "4 coils: max |x - rss(recon --kspace per coil)| = {diff:.3e} (peak {peak:.3}); PSNR {db:.2} dB vs |x|"
    );
    assert!(diff <= 1e-4 * peak, "{diff} vs peak {peak}");
    assert!(db >= 28.0, "PSNR {db} dB (measured 29.42)");
    let sidecar = json(&out.join("scan00000_slice000.json"));
    assert_eq!(sidecar["acquisition"]["coil_combination"], "rss");
    assert_eq!(sidecar["acquisition"]["n_coils"], 4);
    assert_eq!(
        sidecar["acquisition"]["fov_mm"],
        serde_json::json!([220.0, 220.0])
    );

    // The default: the four coils reconstructed together with estimated sensitivities.
    let together = dir.path().join("sense");
    let (lines, _) = recon_input(&fixtures.join("py/multicoil.h5"), &together, &[]);
    assert_eq!(lines[0]["coil_combination"], "sense");
    let image: Array2<Complex32> = read(&together.join("scan00000_slice000.npy"));
    let sense_db = psnr(
        image.iter().map(|v| v.norm()),
        truth.iter().map(|v| v.norm()),
    );
    println!("4 coils together: PSNR {sense_db:.2} dB vs |x| (each alone: {db:.2} dB)");
    assert!(
        sense_db >= db - 0.5,
        "sense {sense_db:.2} dB vs rss {db:.2} dB"
    );
    let sidecar = json(&together.join("scan00000_slice000.json"));
    assert_eq!(sidecar["coils"]["coils"], 4);
    assert_eq!(sidecar["acquisition"]["coil_combination"], "sense");
}

/// Python writer, 3-D: 8 partitions x 2 coils. The inverse FFT along kz gives each
/// partition's 2-D k-space (the writer's), each partition is a slice, its image the RSS of
/// the per-coil `recon --kspace`, and its geometry moves along the slice direction.
#[test]
fn python_3d_is_one_2d_problem_per_partition() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (lines, log) = recon_input(
        &fixtures.join("py/vol3d.h5"),
        &out,
        &["--coil-combination", "rss"],
    );
    println!("{log}");
    assert_eq!(lines.len(), 8);
    let expected: Array4<Complex32> = read(&fixtures.join("py/vol3d_kspace.npy"));
    let mask: Array2<u8> = read(&fixtures.join("py/vol3d_mask.npy"));
    let truth: Array3<Complex32> = read(&fixtures.join("py/vol3d_truth.npy"));
    let (mut worst_k, mut worst_x, mut worst_db) = (0f32, 0f32, f64::INFINITY);
    for (p, line) in lines.iter().enumerate() {
        assert_eq!(line["slice"], p);
        assert_eq!(line["mrd"]["partition"], serde_json::json!([p, 8]));
        assert_eq!(line["lines_received"], 40 * 8, "40 rows x 8 partitions");
        assert_eq!(line["lines_expected"], 64 * 8);
        let stem = out.join(format!("scan00000_slice{p:03}"));
        let kspace: Array3<Complex32> =
            read(&out.join(format!("scan00000_slice{p:03}_kspace.npy")));
        let want = expected.slice(s![p, .., .., ..]).to_owned();
        let peak = want.iter().map(|v| v.norm()).fold(0.0, f32::max);
        worst_k = worst_k.max(max_abs_diff(kspace.iter(), want.iter()) / peak);

        let image: Array2<Complex32> = read(&out.join(format!("scan00000_slice{p:03}.npy")));
        let sub = dir.path().join(format!("p{p}"));
        std::fs::create_dir_all(&sub).unwrap();
        let rss = rss_of_single_coil_recons(&want, &mask, &sub, &[]);
        let peak = rss.iter().copied().fold(0.0, f32::max);
        let diff = image
            .iter()
            .zip(&rss)
            .map(|(a, b)| (a.re - b).abs())
            .fold(0.0, f32::max);
        worst_x = worst_x.max(diff / peak);
        let db = psnr(
            image.iter().map(|v| v.re),
            truth.slice(s![p, .., ..]).iter().map(|v| v.norm()),
        );
        worst_db = worst_db.min(db);
        let sidecar = json(&stem.with_extension("json"));
        let g = &sidecar["acquisition"]["geometry"];
        assert_eq!(g["thickness_mm"], 5.0, "FOV z 40 mm / 8 partitions");
        let z = g["centre_mm"][2].as_f64().unwrap();
        assert!(
            (z - (30.0 + (p as f64 - 4.0) * 5.0)).abs() < 1e-4,
            "partition {p}: z {z}"
        );
    }
    println!(
        "3-D: max relative k-space difference {worst_k:.2e}, image vs RSS of recon --kspace {worst_x:.2e}, worst PSNR {worst_db:.2} dB"
    );
    assert!(worst_k <= 1e-5);
    assert!(worst_x <= 1e-4);
    assert!(worst_db >= 25.0, "PSNR {worst_db} dB (measured 25.81)");
}

/// Reads `/dataset/coil_images` ([1][coils][y][x] of {real, imag} float32) of the C++
/// generator's file.
fn cpp_coil_images(path: &Path) -> Array3<Complex32> {
    let file = hdf5_reader::Hdf5File::open(path).unwrap();
    let dataset = file.dataset("/dataset/coil_images").unwrap();
    let shape: Vec<usize> = dataset.shape().iter().map(|&d| d as usize).collect();
    let bytes = dataset.read_raw_bytes().unwrap();
    let values: Vec<Complex32> = bytes
        .chunks_exact(8)
        .map(|b| {
            Complex32::new(
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                f32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            )
        })
        .collect();
    Array3::from_shape_vec((shape[1], shape[2], shape[3]), values).unwrap()
}

/// The C++ writer's file (376-byte compound; the Python one is 372): 4 coils, readout
/// oversampled 2x, fully sampled, no noise. The zero-filled RSS of our k-space equals the
/// RSS of the generator's own coil images (central half of x), and the reconstruction is
/// close to it.
#[test]
fn cpp_writer_file_reads_and_matches_its_coil_images() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (lines, log) = recon_input(
        &fixtures.join("cpp.h5"),
        &out,
        &[
            "--lambda",
            "0.0001",
            "--iterations",
            "8",
            "--coil-combination",
            "rss",
        ],
    );
    println!("{log}");
    let (_, python_log) = recon_input(
        &fixtures.join("py/single2d.h5"),
        &dir.path().join("py"),
        &[],
    );
    let sizes = |log: &str| -> (usize, usize) {
        let at = log.find("-byte elements, ").unwrap();
        let element: usize = log[..at].rsplit('(').next().unwrap().parse().unwrap();
        let rest = &log[at + "-byte elements, ".len()..];
        let header: usize = rest[..rest.find("-byte headers").unwrap()].parse().unwrap();
        (element, header)
    };
    let (cpp, python) = (sizes(&log), sizes(&python_log));
    println!(
        "acquisition compound: C++ writer {} bytes, Python writer {} bytes (AcquisitionHeader {} and {} bytes)",
        cpp.0, python.0, cpp.1, python.1
    );
    assert_eq!(
        (cpp.0, python.0),
        (376, 372),
        "the writers lay the compound out differently"
    );
    assert_eq!(lines[0]["coil_combination"], "rss");
    assert_eq!(
        lines[0]["mrd"]["readout_oversampling"],
        serde_json::json!([128, 64])
    );

    let coil_images = cpp_coil_images(&fixtures.join("cpp.h5"));
    assert_eq!(coil_images.dim(), (4, 64, 128));
    let truth: Array2<f32> = coil_images
        .slice(s![.., .., 32..96])
        .map(|v| v.norm_sqr())
        .sum_axis(ndarray::Axis(0))
        .mapv(f32::sqrt);
    // Zero-filled RSS of the k-space we assembled, through the core's F^H.
    let kspace: Array3<Complex32> = read(&out.join("scan00000_slice000_kspace.npy"));
    let shape = sparsemap_core::Shape::new(64, 64).unwrap();
    let fft = sparsemap_core::fft::Fft2::new(sparsemap_core::fft::RustFft::<f32>::new(shape));
    let op = sparsemap_core::ops::CentredFourier { fft: &fft };
    use sparsemap_core::ops::LinearOperator;
    let mut scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&op)];
    let mut zero_filled = Array2::<f32>::zeros((64, 64));
    let mut coil = vec![Complex32::default(); 64 * 64];
    for c in 0..4 {
        let k: Vec<Complex32> = kspace.slice(s![c, .., ..]).iter().copied().collect();
        op.adjoint(&k, &mut coil, &mut scratch);
        zero_filled
            .iter_mut()
            .zip(&coil)
            .for_each(|(acc, v)| *acc += v.norm_sqr());
    }
    zero_filled.mapv_inplace(f32::sqrt);
    let zf_db = psnr(zero_filled.iter().copied(), truth.iter().copied());
    let image: Array2<Complex32> = read(&out.join("scan00000_slice000.npy"));
    let db = psnr(image.iter().map(|v| v.re), truth.iter().copied());
    println!("C++ file: zero-filled RSS {zf_db:.1} dB, reconstruction {db:.1} dB vs RSS of its coil_images");
    assert!(
        zf_db >= 100.0,
        "same transform and scale as the C++ generator: {zf_db} dB"
    );
    assert!(db >= 50.0, "{db} dB (measured 62.3)");
}

/// The C++ writer with a noise-calibration scan and parallel-imaging calibration lines
/// (acceleration 2, 16 lines), two repetitions: the noise scan is skipped, the calibration
/// lines are used, each repetition is a scan.
#[test]
fn cpp_writer_noise_and_calibration_scans() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (lines, log) = recon_input(&fixtures.join("cpp_noise.h5"), dir.path(), &[]);
    println!("{log}");
    assert!(log.contains("(376-byte elements"), "{log}");
    assert_eq!(lines.len(), 2, "two repetitions");
    assert_eq!(
        (lines[0]["scan"].as_u64(), lines[1]["scan"].as_u64()),
        (Some(0), Some(1))
    );
    for line in &lines {
        assert_eq!(line["status"], "ok");
        assert_eq!(line["mrd"]["skipped"]["noise"], 1);
        assert_eq!(line["mrd"]["calibration_used"], 32);
    }
    // Acceleration 2 outside the 16 calibration lines: 16 + 24 of 64 rows per repetition.
    assert_eq!(lines[0]["lines_received"], 40);
    assert_eq!(lines[0]["missing"], 24);
    // The two coils are reconstructed together, prewhitened with the noise scan.
    for line in &lines {
        assert_eq!(line["coil_combination"], "sense");
    }
    let sidecar = json(&dir.path().join("scan00000_slice000.json"));
    assert_eq!(sidecar["coils"]["whitened"], true, "{}", sidecar["coils"]);
    assert_eq!(sidecar["coils"]["coils"], 2);
    // Against each coil alone (root sum of squares), both compared with the root sum of
    // squares of the generator's coil images.
    // The coil images are oversampled 2x along x: their central half is the grid.
    let coil_images = cpp_coil_images(&fixtures.join("cpp_noise.h5"));
    let (n_y, n_x) = (coil_images.dim().1, coil_images.dim().2 / 2);
    let truth = coil_images.slice(s![.., .., n_x / 2..n_x / 2 + n_x]).to_owned();
    let rss_truth: Vec<f32> = (0..n_y * n_x)
        .map(|i| {
            (0..truth.dim().0)
                .map(|c| truth[(c, i / n_x, i % n_x)].norm_sqr())
                .sum::<f32>()
                .sqrt()
        })
        .collect();
    let sense: Array2<Complex32> = read(&dir.path().join("scan00000_slice000.npy"));
    let alone = dir.path().join("rss");
    recon_input(
        &fixtures.join("cpp_noise.h5"),
        &alone,
        &["--coil-combination", "rss"],
    );
    let rss: Array2<Complex32> = read(&alone.join("scan00000_slice000.npy"));
    assert_eq!(sense.dim(), (n_y, n_x));
    let sense_db = psnr(sense.iter().map(|v| v.norm()), rss_truth.iter().copied());
    let rss_db = psnr(rss.iter().map(|v| v.norm()), rss_truth.iter().copied());
    println!("2 coils, acceleration 2: together {sense_db:.2} dB, each alone {rss_db:.2} dB");
    assert!(
        sense_db > rss_db + 1.0,
        "together {sense_db:.2} dB vs alone {rss_db:.2} dB"
    );
}

/// Inconsistent and oversized files: one line naming the file and what is wrong, under a
/// 512 MiB address-space limit (as crates/edge/tests/hostile.rs), so a file that makes the
/// reader allocate what it declares fails the test.
#[test]
fn bad_files_give_one_line_errors() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.h5");
    std::fs::write(&text, "not an HDF5 file\n").unwrap();
    let truncated = dir.path().join("truncated.h5");
    let bytes = std::fs::read(fixtures.join("py/single2d.h5")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let py = |name: &str| fixtures.join("py").join(name);
    let cases: Vec<(PathBuf, &str)> = vec![
        (text, "not an HDF5 file"),
        (
            truncated,
            "truncated: the HDF5 superblock says the file ends at byte",
        ),
        (py("bad_nodata.h5"), "no acquisitions /dataset/data"),
        (py("bad_dtype.h5"), "/dataset/data is not a compound"),
        (
            py("bad_ky.h5"),
            "acquisition 5: kspace_encode_step_1 = 300 is outside the encoding limits 0..=255",
        ),
        (
            py("bad_samples.h5"),
            "acquisition 5: 260 float32 data values, but 1 channels x 100 samples need 200",
        ),
        (
            py("bad_nan.h5"),
            "acquisition 7: sample 20 of channel 0 is not finite",
        ),
        (
            py("bad_huge.h5"),
            "encoded 4096x4096x64 grid need 8589934592 bytes per slab, more than the 268435456 allowed",
        ),
        (
            py("bad_table.h5"),
            "read of 1000000000 elements (372000000000 bytes) exceeds the 268435456 byte read limit",
        ),
    ];
    for (path, needle) in cases {
        let output = limited(&[
            "recon",
            "--input",
            path.to_str().unwrap(),
            "--out-dir",
            dir.path().join("out").to_str().unwrap(),
            "--lambda",
            LAMBDA,
        ]);
        let err = stderr(&output);
        println!("{err}");
        assert_eq!(output.status.code(), Some(1), "{}: {err}", path.display());
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with("sparsemap: error: "), "{err}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "{err} does not name {name}");
        assert!(err.contains(needle), "{err} does not say {needle:?}");
    }
}

/// Truncations and flipped bytes of files from both writers: the reader returns an error
/// or slices, and never panics.
#[test]
fn corrupt_files_never_panic() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        // xorshift64*: a fixed sequence of positions.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let (mut errors, mut read_ok) = (0, 0);
    for source in [fixtures.join("py/single2d.h5"), fixtures.join("cpp.h5")] {
        let bytes = std::fs::read(&source).unwrap();
        let len = bytes.len();
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        for cut in [
            0,
            7,
            8,
            64,
            512,
            2048,
            len / 8,
            len / 4,
            len / 2,
            3 * len / 4,
            len - 1,
        ] {
            variants.push((format!("cut{cut}"), bytes[..cut].to_vec()));
        }
        for i in 0..48 {
            let mut flipped = bytes.clone();
            // Half the flips in the first 4 KiB (superblock, object headers), half anywhere.
            let at = if i % 2 == 0 {
                (next() % 4096.min(len as u64)) as usize
            } else {
                (next() % len as u64) as usize
            };
            flipped[at] ^= 1 << (next() % 8);
            variants.push((format!("flip{i}_at{at}"), flipped));
        }
        for (name, data) in variants {
            let path = dir.path().join(format!("{name}.h5"));
            std::fs::write(&path, &data).unwrap();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut slices = 0;
                sparsemap_edge::mrd::read_mrd(&path, &mut |event| {
                    if let sparsemap_edge::ingest::Event::Slice(job) = event {
                        assert!(job.kspace.iter().all(|v| v.is_finite()));
                        slices += 1;
                    }
                    Ok(())
                })
                .map(|_| slices)
            }));
            match result {
                Err(_) => panic!("{}: {name} panicked", source.display()),
                Ok(Err(error)) => {
                    let text = format!("{error:#}");
                    assert!(text.contains(&format!("{name}.h5")), "{text}");
                    errors += 1;
                }
                Ok(Ok(slices)) => {
                    assert!(
                        !name.starts_with("cut"),
                        "{name} of {} read ({slices} slices)",
                        source.display()
                    );
                    read_ok += 1;
                }
            }
        }
    }
    println!("corrupt variants: {errors} errors, {read_ok} read (flips in sample data)");
}

/// `sparsemap serve --mrd` with the ISMRMRD package's ProtocolSerializer/Deserializer as the
/// real client (models/tools/mrd_client.py): for files of both writers, the images sent back
/// are the images `recon --input` writes for the same file, bit for bit, and the server's own
/// files are the same too; a client that sends garbage gets an error message and a close, and
/// the server goes on to serve the next client. The server is stopped by its PID.
#[test]
fn serve_mrd_returns_the_images_of_recon_input_to_a_real_mrd_client() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let mut server = Command::new(env!("CARGO_BIN_EXE_sparsemap"))
        .args([
            "serve",
            "--mrd",
            "--listen",
            "127.0.0.1:0",
            "--lambda",
            LAMBDA,
            "--out-dir",
        ])
        .arg(&served)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut server_stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(
            server_stderr.read_line(&mut line).unwrap() > 0,
            "serve --mrd exited"
        );
        if let Some(rest) = line.strip_prefix("sparsemap: listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut server_stderr, &mut std::io::sink()));

    // Garbage first: an error text and a close, and the server lives on.
    {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        socket.write_all(&[0x39, 0x05, 1, 2, 3]).unwrap();
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("unknown MRD message id 1337"), "{text}");
        assert_eq!(
            &answer[answer.len() - 2..],
            &4u16.to_le_bytes(),
            "ends with a close"
        );
    }

    for (name, file, images) in [
        ("py", fixtures.join("py/single2d.h5"), 1),
        ("py4", fixtures.join("py/multicoil.h5"), 1),
        ("cpp", fixtures.join("cpp.h5"), 1),
    ] {
        let received = dir.path().join(format!("received_{name}"));
        let client = Command::new(python())
            .arg(repo().join("models/tools/mrd_client.py"))
            .arg(&address)
            .arg(&file)
            .arg(&received)
            .output()
            .unwrap();
        assert!(
            client.status.success(),
            "mrd_client.py {name}: {}",
            stderr(&client)
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&client.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), images, "{name}: images returned");
        let reference = dir.path().join(format!("reference_{name}"));
        recon_input(&file, &reference, &[]);
        for line in &lines {
            assert_eq!(line["image_type"], 5, "complex");
            assert_eq!(line["data_type"], 7, "complex float");
            let slice = line["slice"].as_u64().unwrap();
            let returned: Array2<Complex32> = read(&received.join(line["file"].as_str().unwrap()));
            let expected: Array2<Complex32> =
                read(&reference.join(format!("scan00000_slice{slice:03}.npy")));
            assert_eq!(
                returned, expected,
                "{name}: the returned image is recon --input's"
            );
            let written: Array2<Complex32> =
                read(&served.join(format!("scan00000_slice{slice:03}.npy")));
            assert_eq!(
                written, expected,
                "{name}: the server's file is recon --input's"
            );
            println!(
                "{name}: slice {slice}: {:?} returned, identical to recon --input",
                line["matrix_size"]
            );
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "serve --mrd exits 0 on SIGTERM");
}

/// An MRD slice written as DICOM (`--dicom`): `dciodvfy` (Debian dicom3tools) finds no error,
/// and the patient, series, field strength and geometry come from the MRD header: Image
/// Orientation (Patient) is the readouts' read and phase directions, Image Position
/// (Patient) puts pixel (n_y/2, n_x/2) at the slice centre, Slice Thickness is the header's.
#[test]
fn mrd_slices_become_valid_dicom_with_the_header_geometry() {
    let Some(fixtures) = fixtures() else { return };
    let has_dciodvfy = Command::new("dciodvfy").output().is_ok();
    if !has_dciodvfy {
        assert!(
            std::env::var_os("SPARSEMAP_REQUIRE_MRD_TOOLS").is_none(),
            "dciodvfy is missing: install Debian's dicom3tools (scripts/test.sh does)"
        );
        eprintln!("SKIPPED: dciodvfy missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let dicom = dir.path().join("dicom");
    let (lines, _) = recon_input(
        &fixtures.join("py/single2d.h5"),
        &out,
        &["--dicom", dicom.to_str().unwrap()],
    );
    assert_eq!(lines[0]["status"], "ok");
    let file = dicom.join("scan00000_slice000.dcm");
    let verify = Command::new("dciodvfy").arg(&file).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        stderr(&verify)
    );
    assert!(report.contains("MRImage"), "{report}");
    assert!(
        verify.status.success() && !report.lines().any(|l| l.starts_with("Error")),
        "dciodvfy:\n{report}"
    );

    let sidecar = json(&out.join("scan00000_slice000.json"));
    let acquisition = &sidecar["acquisition"];
    let geometry = &acquisition["geometry"];
    let vector = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let object = dicom_object::open_file(&file).unwrap();
    let text = |tag| -> String {
        object
            .element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string()
    };
    let numbers = |tag| -> Vec<f64> { object.element(tag).unwrap().to_multi_float64().unwrap() };
    use dicom_dictionary_std::tags;
    let description = &acquisition["description"];
    assert_eq!(
        text(tags::PATIENT_NAME),
        description["patient_name"].as_str().unwrap()
    );
    assert_eq!(
        text(tags::PATIENT_ID),
        description["patient_id"].as_str().unwrap()
    );
    assert_eq!(
        text(tags::SERIES_DESCRIPTION),
        description["series_description"].as_str().unwrap()
    );
    assert_eq!(
        text(tags::PATIENT_POSITION),
        description["patient_position"].as_str().unwrap()
    );
    let field_t = numbers(tags::MAGNETIC_FIELD_STRENGTH)[0];
    assert!((field_t - acquisition["field_mt"].as_f64().unwrap() / 1000.0).abs() < 1e-6);
    let read = vector(&geometry["read_dir"]);
    let phase = vector(&geometry["phase_dir"]);
    let centre = vector(&geometry["centre_mm"]);
    let orientation = numbers(tags::IMAGE_ORIENTATION_PATIENT);
    for (a, b) in orientation.iter().zip(read.iter().chain(&phase)) {
        assert!(
            (a - b).abs() < 1e-5,
            "orientation {orientation:?} vs {read:?} {phase:?}"
        );
    }
    let spacing = numbers(tags::PIXEL_SPACING);
    let voxel = vector(&sidecar["voxel_mm"]);
    assert!((spacing[0] - voxel[0]).abs() < 1e-5 && (spacing[1] - voxel[1]).abs() < 1e-5);
    let (rows, columns) = (256.0, 256.0);
    let position = numbers(tags::IMAGE_POSITION_PATIENT);
    for i in 0..3 {
        let expected =
            centre[i] - columns / 2.0 * voxel[1] * read[i] - rows / 2.0 * voxel[0] * phase[i];
        assert!(
            (position[i] - expected).abs() < 1e-3,
            "position {position:?}, axis {i}: {expected}"
        );
    }
    let thickness = numbers(tags::SLICE_THICKNESS)[0];
    assert!((thickness - geometry["thickness_mm"].as_f64().unwrap()).abs() < 1e-5);
    assert!(!text(tags::IMAGE_COMMENTS).contains("nominal"));
    println!(
        "dciodvfy: 0 errors; DICOM geometry from the MRD header: orientation {orientation:?}, position {position:?}, thickness {thickness} mm"
    );
}
