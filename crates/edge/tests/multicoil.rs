//! `sparsemap recon --kspace` on multi-coil `.npy` (DESIGN §3.4): the bundled model on eight
//! simulated coils of the real Colin27 example slice, reconstructed together (`sense`) against
//! each coil alone (`rss`) and the zero-filled image; bit-identical images for any thread
//! count; noise scans, given sensitivities and coil compression recorded in the sidecar; the
//! fallback to `rss` without a calibration region; and bad multi-coil inputs.

use ndarray::{Array2, Array3};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use num_complex::{Complex32, Complex64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::Value;
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COILS: usize = 8;
/// Relative noise level `s` of the project's simulation (sigma = s rms(F target)).
const NOISE: f64 = 0.1;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sparsemap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsemap"))
        .args(args)
        .output()
        .expect("runs the binary")
}

fn read<A: ReadNpyExt>(path: &Path) -> A {
    A::read_npy(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn write<A: WriteNpyExt>(path: &Path, array: &A) {
    array.write_npy(File::create(path).unwrap()).unwrap();
}

/// Smooth coil maps (magnitude peaking near a point on a circle around the centre, slow
/// phase), normalised to `sum_c |S_c|^2 = 1`.
fn maps(coils: usize, ny: usize, nx: usize) -> Array3<Complex32> {
    let mut s = Array3::<Complex64>::zeros((coils, ny, nx));
    for c in 0..coils {
        let a = std::f64::consts::TAU * c as f64 / coils as f64;
        let (cy, cx) = (
            ny as f64 * (0.5 + 0.5 * a.sin()),
            nx as f64 * (0.5 + 0.5 * a.cos()),
        );
        for y in 0..ny {
            for x in 0..nx {
                let d2 =
                    ((y as f64 - cy) / ny as f64).powi(2) + ((x as f64 - cx) / nx as f64).powi(2);
                s[(c, y, x)] = Complex64::from_polar(
                    (-d2 / 0.12).exp(),
                    a + 1.5 * (x as f64 / nx as f64 - 0.5) * a.cos(),
                );
            }
        }
    }
    for y in 0..ny {
        for x in 0..nx {
            let norm = (0..coils)
                .map(|c| s[(c, y, x)].norm_sqr())
                .sum::<f64>()
                .sqrt();
            (0..coils).for_each(|c| s[(c, y, x)] /= norm);
        }
    }
    s.mapv(|v| Complex32::new(v.re as f32, v.im as f32))
}

/// A 1-D variable-density row mask: a third of the rows at random plus 24 central rows.
fn row_mask(ny: usize, nx: usize, centre: bool, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mask = Array2::<f32>::zeros((ny, nx));
    for y in 0..ny {
        let central = (y as isize - (ny / 2) as isize).unsigned_abs() < 12;
        if (centre && central) || (!central && rng.random::<f64>() < 1.0 / 3.0) {
            mask.row_mut(y).fill(1.0);
        }
    }
    mask
}

struct Scan {
    dir: tempfile::TempDir,
}

impl Scan {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// Eight coils of the Colin27 example's target: `M (F(S_c x) + n_c)` with white noise of
/// `sigma = NOISE rms(F x)`, its noise scan `[C, 4096]`, the mask, the target and the maps.
fn simulate(centre: bool) -> Scan {
    let target: Array2<Complex32> = read(&repo().join("examples/colin27/target.npy"));
    let (ny, nx) = target.dim();
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let fourier = CentredFourier { fft: &fft };
    let mut scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&fourier)];
    let s = maps(COILS, ny, nx);
    let mask = row_mask(ny, nx, centre, 5);
    let mut clean = vec![Complex32::default(); shape.len()];
    fourier.apply(target.as_slice().unwrap(), &mut clean, &mut scratch);
    let rms =
        (clean.iter().map(|v| f64::from(v.norm_sqr())).sum::<f64>() / shape.len() as f64).sqrt();
    let sigma = NOISE * rms;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut normal = |scale: f64| {
        let (a, b): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
        Complex32::new(
            (a * scale / 2f64.sqrt()) as f32,
            (b * scale / 2f64.sqrt()) as f32,
        )
    };
    let mut kspace = Array3::<Complex32>::zeros((COILS, ny, nx));
    let mut coil_image = vec![Complex32::default(); shape.len()];
    let mut coil_kspace = vec![Complex32::default(); shape.len()];
    for c in 0..COILS {
        for (i, v) in coil_image.iter_mut().enumerate() {
            *v = s[(c, i / nx, i % nx)] * target[(i / nx, i % nx)];
        }
        fourier.apply(&coil_image, &mut coil_kspace, &mut scratch);
        for (i, k) in coil_kspace.iter().enumerate() {
            let (y, x) = (i / nx, i % nx);
            kspace[(c, y, x)] = (k + normal(sigma)) * mask[(y, x)];
        }
    }
    let noise = Array2::from_shape_fn((COILS, 4096), |_| normal(sigma));
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("kspace.npy"), &kspace);
    write(&dir.path().join("mask.npy"), &mask);
    write(&dir.path().join("noise.npy"), &noise);
    write(&dir.path().join("maps.npy"), &s);
    write(&dir.path().join("target.npy"), &target);
    Scan { dir }
}

/// `recon --kspace` with the bundled model (and `extra`): the PSNR lines of --compare-to,
/// the image and the sidecar.
fn recon(scan: &Scan, out: &str, extra: &[&str]) -> (f64, f64, Array2<Complex32>, Value) {
    let out = scan.path(out);
    let (k, m, t) = (
        scan.path("kspace.npy"),
        scan.path("mask.npy"),
        scan.path("target.npy"),
    );
    let mut args = vec![
        "recon",
        "--kspace",
        &k,
        "--mask",
        &m,
        "--out",
        &out,
        "--compare-to",
        &t,
    ];
    args.extend_from_slice(extra);
    let output = sparsemap(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .trim()
            .parse()
            .unwrap()
    };
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(out.replace(".npy", ".json")).unwrap())
            .unwrap();
    println!("{extra:?}: {stderr}");
    (
        value("psnr_zero_filled_db"),
        value("psnr_recon_db"),
        read(Path::new(&out)),
        sidecar,
    )
}

/// The measured gain (this machine, 2026-12-08): sense 31.3 dB, rss 28.3 dB, zero-filled
/// (root sum of squares) 23.5 dB. The floors leave room for the int8 network's rounding on
/// other CPUs, not for a real regression.
#[test]
fn eight_coils_together_beat_each_coil_alone_with_the_bundled_model() {
    let scan = simulate(true);
    let (zero_filled, sense, _, sidecar) = recon(&scan, "sense.npy", &["--threads", "2"]);
    let (_, rss, _, rss_sidecar) = recon(
        &scan,
        "rss.npy",
        &["--threads", "2", "--coil-combination", "rss"],
    );
    println!("zero-filled {zero_filled:.2} dB, rss {rss:.2} dB, sense {sense:.2} dB");
    assert!(sense > rss + 2.0, "sense {sense:.2} dB vs rss {rss:.2} dB");
    assert!(
        sense > zero_filled + 6.0,
        "sense {sense:.2} dB vs zero-filled {zero_filled:.2} dB"
    );
    assert!(sense > 30.0, "sense {sense:.2} dB");
    let coils = &sidecar["coils"];
    assert_eq!(coils["coils"], 8);
    assert_eq!(coils["virtual_coils"], 8);
    assert_eq!(coils["whitened"], false);
    assert!(
        coils["sensitivities"]
            .as_str()
            .unwrap()
            .starts_with("estimated (walsh"),
        "{coils}"
    );
    assert!(rss_sidecar.get("coils").is_none());
}

#[test]
fn threads_give_the_same_multicoil_image_bit_for_bit() {
    let scan = simulate(true);
    let (_, _, one, _) = recon(
        &scan,
        "one.npy",
        &["--threads", "1", "--virtual-coils", "6"],
    );
    let (_, _, three, _) = recon(
        &scan,
        "three.npy",
        &["--threads", "3", "--virtual-coils", "6"],
    );
    assert!(one
        .iter()
        .zip(&three)
        .all(|(a, b)| a.re.to_bits() == b.re.to_bits() && a.im.to_bits() == b.im.to_bits()));
}

#[test]
fn noise_scan_given_maps_and_compression_are_used_and_recorded() {
    let scan = simulate(true);
    let (_, estimated, _, _) = recon(&scan, "estimated.npy", &["--threads", "2"]);
    let (_, whitened, _, sidecar) = recon(
        &scan,
        "whitened.npy",
        &["--threads", "2", "--noise", &scan.path("noise.npy")],
    );
    assert_eq!(sidecar["coils"]["whitened"], true);
    // White noise of equal level: whitening is (almost) the identity and keeps the units.
    assert!(
        (whitened - estimated).abs() < 0.3,
        "whitened {whitened:.2} dB vs {estimated:.2} dB"
    );
    let (_, given, _, sidecar) = recon(
        &scan,
        "given.npy",
        &["--threads", "2", "--sensitivities", &scan.path("maps.npy")],
    );
    assert_eq!(sidecar["coils"]["sensitivities"], "given");
    assert!(given > 29.0, "with the true maps: {given:.2} dB");
    // Measured: 4 virtual coils keep 94 % of the energy and lose 1.4 dB on these broad
    // synthetic maps (3 keep less and lose 2.4 dB).
    let (_, compressed, _, sidecar) = recon(
        &scan,
        "compressed.npy",
        &["--threads", "2", "--virtual-coils", "4"],
    );
    let kept = sidecar["coils"]["retained_energy"].as_f64().unwrap();
    assert_eq!(sidecar["coils"]["virtual_coils"], 4);
    assert!(kept > 0.8 && kept < 1.0, "retained energy {kept}");
    assert!(
        compressed > estimated - 2.0,
        "4 virtual coils: {compressed:.2} dB vs 8: {estimated:.2} dB"
    );
}

/// No fully sampled centre: the sensitivities cannot be estimated, the slice falls back to
/// root sum of squares and says so.
#[test]
fn without_a_calibration_region_the_coils_fall_back_to_rss() {
    let scan = simulate(false);
    let (_, _, image, sidecar) = recon(
        &scan,
        "fallback.npy",
        &["--threads", "2", "--iterations", "4"],
    );
    let combination = sidecar["coils"].clone();
    assert!(combination.is_null(), "{combination}");
    assert!(
        image.iter().all(|v| v.im == 0.0 && v.re >= 0.0),
        "rss is a magnitude"
    );
}

#[test]
fn bad_multicoil_inputs_are_clear_errors_naming_the_file() {
    let scan = simulate(true);
    let (k, m, out) = (
        scan.path("kspace.npy"),
        scan.path("mask.npy"),
        scan.path("out.npy"),
    );
    let bad = |name: &str, array: &dyn Fn(&Path)| {
        let path = scan.path(name);
        array(Path::new(&path));
        path
    };
    let three_coil_noise = bad("noise3.npy", &|p| {
        write(p, &Array2::<Complex32>::zeros((3, 100)))
    });
    let nan_noise = bad("noise_nan.npy", &|p| {
        write(
            p,
            &Array2::from_elem((COILS, 100), Complex32::new(f32::NAN, 0.0)),
        )
    });
    let small_maps = bad("maps_small.npy", &|p| {
        write(p, &Array3::<Complex32>::zeros((COILS, 32, 32)))
    });
    let flat_noise = bad("noise_flat.npy", &|p| {
        write(p, &ndarray::Array1::<Complex32>::zeros(100))
    });
    for (flag, path, expected) in [
        ("--noise", &three_coil_noise, "has 3 coils but k-space"),
        ("--noise", &nan_noise, "NaN or infinite"),
        ("--noise", &flat_noise, "must be [coils, samples]"),
        (
            "--sensitivities",
            &small_maps,
            "are (8, 32, 32) but k-space",
        ),
    ] {
        let output = sparsemap(&[
            "recon", "--kspace", &k, "--mask", &m, "--out", &out, flag, path,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains(expected) && stderr.contains(path.as_str()),
            "{flag} {path}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = sparsemap(&[
        "recon",
        "--kspace",
        &k,
        "--mask",
        &m,
        "--out",
        &out,
        "--virtual-coils",
        "9",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("--virtual-coils 9")
            && stderr.contains(k.as_str()),
        "{stderr}"
    );
}

/// The scan as a wire stream (DESIGN §5): every sampled row of every coil as an `F32` line
/// over the whole readout, then `ScanEnd`.
fn stream(kspace: &Array3<Complex32>, mask: &Array2<f32>) -> Vec<u8> {
    use sparsemap_wire::{
        encode, heapless, EndStatus, Frame, Line, Samples, ScanEnd, ScanStart, VERSION,
    };
    let (coils, ny, nx) = kspace.dim();
    let mut bytes = vec![0u8];
    let mut buf = vec![0u8; sparsemap_wire::MAX_ENCODED_LEN];
    let mut push = |frame: &Frame| bytes.extend_from_slice(encode(frame, &mut buf).unwrap());
    push(&Frame::ScanStart(ScanStart {
        version: VERSION,
        scan_id: 1,
        n_y: ny as u16,
        n_x: nx as u16,
        n_coils: coils as u8,
        n_slices: 1,
        field_mt: 50.0,
        fov_mm: [220.0, 220.0],
        kx_first: 0,
        kx_count: nx as u16,
    }));
    let mut seq = 0;
    for ky in (0..ny).filter(|&y| mask[(y, 0)] != 0.0) {
        for coil in 0..coils {
            let mut iq = heapless::Vec::new();
            for kx in 0..nx {
                let v = kspace[(coil, ky, kx)];
                iq.push([v.re, v.im]).unwrap();
            }
            push(&Frame::Line(Line {
                scan_id: 1,
                seq,
                slice: 0,
                coil: coil as u8,
                ky: ky as u16,
                samples: Samples::F32 { iq },
            }));
            seq += 1;
        }
    }
    push(&Frame::ScanEnd(ScanEnd {
        scan_id: 1,
        lines_sent: seq,
        status: EndStatus::Complete,
    }));
    bytes
}

/// A multi-coil wire stream goes through the same coil path as `.npy` input: the same image
/// bit for bit, recorded as `sense` in the JSON line and the sidecar.
#[test]
fn multicoil_wire_stream_gives_the_npy_image() {
    let scan = simulate(true);
    let kspace: Array3<Complex32> = read(Path::new(&scan.path("kspace.npy")));
    let mask: Array2<f32> = read(Path::new(&scan.path("mask.npy")));
    let smw = scan.path("scan.smw");
    std::fs::write(&smw, stream(&kspace, &mask)).unwrap();
    let out_dir = scan.path("stream");
    let output = sparsemap(&[
        "recon",
        "--input",
        &smw,
        "--out-dir",
        &out_dir,
        "--threads",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let line: Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["coil_combination"], "sense", "{line}");
    let from_stream: Array2<Complex32> = read(&Path::new(&out_dir).join("scan00001_slice000.npy"));
    let (_, _, from_npy, _) = recon(&scan, "npy.npy", &["--threads", "2"]);
    assert!(from_stream
        .iter()
        .zip(&from_npy)
        .all(|(a, b)| a.re.to_bits() == b.re.to_bits() && a.im.to_bits() == b.im.to_bits()));
    let sidecar: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&out_dir).join("scan00001_slice000.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["coils"]["coils"], 8);
    assert_eq!(sidecar["acquisition"]["coil_combination"], "sense");
}
