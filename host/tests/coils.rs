//! Multi-coil simulation (`sparsemap_host::coils`), its files (`dataset`), the `simulate
//! --coils` command and the BART multi-coil baselines (`Bart::ecalib`, `Bart::pics_sense`).
//!
//! BART tests need `bart` on PATH (Debian package `bart`); without it they are skipped with a
//! notice, unless `SPARSEMAP_REQUIRE_BART=1`, which makes a missing `bart` a failure.

use std::fs::File;
use std::process::Command;

use ndarray::{Array2, Array3, Axis};
use ndarray_npy::ReadNpyExt;
use num_complex::{Complex32, Complex64};
use sparsemap_core::Shape;
use sparsemap_host::baselines::bart::{find_on_path, Bart, Regulariser};
use sparsemap_host::coils::{
    biot_savart_sensitivities, map_correlation, noise_covariance, sample_covariance,
    sense_zero_filled, simulate_coil_slice, CoilGeometry,
};
use sparsemap_host::metrics::{self, Dims};
use sparsemap_host::simulate::{simulate_slice, Acquisition, MaskKind};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const FOV: [f64; 2] = [256.0, 256.0];

fn colin27_target() -> Array2<Complex32> {
    Array2::<Complex32>::read_npy(
        File::open(format!("{ROOT}/examples/colin27/target.npy")).unwrap(),
    )
    .unwrap()
}

fn head(target: &Array2<Complex32>) -> Vec<bool> {
    let magnitude: Vec<f64> = target.iter().map(|v| f64::from(v.norm())).collect();
    let (n_y, n_x) = target.dim();
    metrics::head_mask(&magnitude, Dims { n_y, n_x }, metrics::HEAD_MASK_THRESHOLD).unwrap()
}

fn bart_or_skip(test: &str) -> Option<Bart> {
    match find_on_path() {
        Some(_) => Some(Bart::new().unwrap()),
        None if std::env::var("SPARSEMAP_REQUIRE_BART").as_deref() == Ok("1") => {
            panic!("{test}: SPARSEMAP_REQUIRE_BART=1 but `bart` is not on PATH")
        }
        None => {
            eprintln!("NOTICE: {test} skipped: `bart` is not on PATH (apt-get install -y bart)");
            None
        }
    }
}

fn full(n: usize) -> MaskKind {
    MaskKind::CentralBlock { size: n }
}

/// The Biot–Savart maps: normalised to 1 at every pixel, non-zero, smooth inside the object,
/// each coil's magnitude largest near its own loop.
#[test]
fn biot_savart_maps_are_normalised_smooth_and_local() {
    let shape = Shape::new(256, 256).unwrap();
    let geometry = CoilGeometry::default();
    for coils in [4usize, 8] {
        let maps = biot_savart_sensitivities(shape, FOV, coils, &geometry).unwrap();
        let n = shape.len();
        let mut worst_norm = 0.0f64;
        let mut smallest = f32::INFINITY;
        for p in 0..n {
            let e: f64 = (0..coils)
                .map(|c| f64::from(maps[c * n + p].norm_sqr()))
                .sum();
            worst_norm = worst_norm.max((e - 1.0).abs());
            for c in 0..coils {
                smallest = smallest.min(maps[c * n + p].norm());
            }
        }
        assert!(worst_norm < 1e-5, "sum |S|^2 off by {worst_norm}");
        assert!(smallest > 0.0, "a map vanishes somewhere");
        // Smoothness inside the object ellipse: neighbouring pixels (1 mm) differ by little.
        let [ay, ax] = geometry.object_semi_axes_mm;
        let inside = |y: usize, x: usize| {
            let (u, v) = (y as f64 - 128.0, x as f64 - 128.0);
            (u / ay).powi(2) + (v / ax).powi(2) < 1.0
        };
        let mut worst_step = 0.0f32;
        for c in 0..coils {
            let m = &maps[c * n..(c + 1) * n];
            for y in 0..255 {
                for x in 0..255 {
                    if inside(y, x) && inside(y + 1, x + 1) {
                        let v = m[y * 256 + x];
                        worst_step = worst_step
                            .max((m[y * 256 + x + 1] - v).norm())
                            .max((m[(y + 1) * 256 + x] - v).norm());
                    }
                }
            }
        }
        println!("{coils} coils: max |sum|S|^2 - 1| = {worst_norm:.2e}, min |S| = {smallest:.3e}, max step inside = {worst_step:.4}");
        assert!(worst_step < 0.05, "maps not smooth: step {worst_step}");
        // Each coil's largest magnitude is nearer its own loop centre than any other's.
        for c in 0..coils {
            let m = &maps[c * n..(c + 1) * n];
            let (p, _) = m
                .iter()
                .enumerate()
                .filter(|(p, _)| inside(p / 256, p % 256))
                .max_by(|a, b| a.1.norm().total_cmp(&b.1.norm()))
                .unwrap();
            let (py, px) = ((p / 256) as f64 - 128.0, (p % 256) as f64 - 128.0);
            let distance = |k: usize| {
                let [cy, cx] = geometry.loop_centre_mm(k, coils);
                (py - cy).hypot(px - cx)
            };
            let nearest = (0..coils)
                .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
                .unwrap();
            assert_eq!(
                nearest, c,
                "coil {c}'s maximum at ({py}, {px}) is nearest loop {nearest}"
            );
        }
    }
}

/// Without noise and with a full mask, `sum_c conj(S_c) F^H y_c` is the single-coil
/// zero-filled image of the same slice (within 1e-4 relative); with a block mask each coil's
/// data is exactly zero off the mask and the mask is the single-coil one.
#[test]
fn sense_combination_of_noiseless_coils_is_the_single_coil_image() {
    let target = colin27_target();
    let (n_y, n_x) = target.dim();
    let shape = Shape::new(n_y, n_x).unwrap();
    let maps = biot_savart_sensitivities(shape, FOV, 8, &CoilGeometry::default()).unwrap();
    let psi = noise_covariance(8, 0.2, 1).unwrap();
    let acquisition = Acquisition {
        mask: full(256),
        noise: 0.0,
        seed: 3,
    };
    let coil = simulate_coil_slice(target.view(), &maps, &psi, &acquisition, 2, 64).unwrap();
    let single = simulate_slice(target.view(), &acquisition, 2).unwrap();
    let maps3 = Array3::from_shape_vec((8, n_y, n_x), maps.clone()).unwrap();
    let combined = sense_zero_filled(coil.kspace.view(), maps3.view()).unwrap();
    let num: f64 = combined
        .iter()
        .zip(single.zero_filled.iter())
        .map(|(a, b)| f64::from((a - b).norm_sqr()))
        .sum();
    let den: f64 = single
        .zero_filled
        .iter()
        .map(|v| f64::from(v.norm_sqr()))
        .sum();
    let relative = (num / den).sqrt();
    println!("SENSE-combined noiseless coils vs single coil: relative error {relative:.2e}");
    assert!(relative < 1e-4, "{relative}");
    assert_eq!(coil.kspace_rms, single.kspace_rms);

    let block = Acquisition {
        mask: full(128),
        noise: 0.15,
        seed: 3,
    };
    let coil = simulate_coil_slice(target.view(), &maps, &psi, &block, 2, 64).unwrap();
    let single = simulate_slice(target.view(), &block, 2).unwrap();
    assert_eq!(coil.mask, single.mask);
    for k in coil.kspace.axis_iter(Axis(0)) {
        for (v, &m) in k.iter().zip(coil.mask.iter()) {
            assert!(m || *v == Complex32::default());
        }
    }
    // Deterministic from the seed.
    let again = simulate_coil_slice(target.view(), &maps, &psi, &block, 2, 64).unwrap();
    assert_eq!(again.kspace, coil.kspace);
    assert_eq!(again.noise_scan, coil.noise_scan);
}

/// The covariance estimated from a long noise scan is `sigma^2 Psi` within a few per cent,
/// and the k-space noise itself has the same covariance.
#[test]
fn noise_scan_covariance_matches_sigma2_psi() {
    let target = colin27_target();
    let (n_y, n_x) = target.dim();
    let shape = Shape::new(n_y, n_x).unwrap();
    let coils = 8;
    let maps = biot_savart_sensitivities(shape, FOV, coils, &CoilGeometry::default()).unwrap();
    let psi = noise_covariance(coils, 0.3, 5).unwrap();
    let acquisition = Acquisition {
        mask: full(256),
        noise: 0.15,
        seed: 9,
    };
    let samples = 200_000;
    let slice = simulate_coil_slice(target.view(), &maps, &psi, &acquisition, 0, samples).unwrap();
    let sigma2 = slice.noise_sigma * slice.noise_sigma;
    let estimate = sample_covariance(slice.noise_scan.view());
    let scale: f64 = (0..coils).map(|i| psi[i * coils + i].re).sum::<f64>() / coils as f64;
    let worst = estimate
        .iter()
        .zip(&psi)
        .map(|(e, p)| (e / sigma2 - p).norm() / scale)
        .fold(0.0, f64::max);
    let frobenius = {
        let d: f64 = estimate
            .iter()
            .zip(&psi)
            .map(|(e, p)| (e / sigma2 - p).norm_sqr())
            .sum();
        let p: f64 = psi.iter().map(|p| p.norm_sqr()).sum();
        (d / p).sqrt()
    };
    println!("noise scan ({samples} samples): max entry error {worst:.4}, relative Frobenius {frobenius:.4}");
    assert!(worst < 0.02 && frobenius < 0.02, "{worst} {frobenius}");

    // The k-space noise: y_c - F(S_c x) from a noiseless twin.
    let clean = simulate_coil_slice(
        target.view(),
        &maps,
        &psi,
        &Acquisition {
            noise: 0.0,
            ..acquisition
        },
        0,
        1,
    )
    .unwrap();
    let noise = Array2::from_shape_fn((coils, n_y * n_x), |(c, p)| {
        let (y, x) = (p / n_x, p % n_x);
        slice.kspace[[c, y, x]] - clean.kspace[[c, y, x]]
    });
    let estimate = sample_covariance(noise.view());
    let frobenius = {
        let d: f64 = estimate
            .iter()
            .zip(&psi)
            .map(|(e, p)| (e / sigma2 - p).norm_sqr())
            .sum();
        let p: f64 = psi.iter().map(|p| p.norm_sqr()).sum();
        (d / p).sqrt()
    };
    println!(
        "k-space noise ({} samples per coil): relative Frobenius {frobenius:.4}",
        n_y * n_x
    );
    assert!(frobenius < 0.03, "{frobenius}");
}

/// ESPIRiT maps of a noiseless 8-coil simulation agree with the truth (phase-invariant
/// correlation > 0.95 over the head), and `pics` with them on fully sampled noiseless data
/// reproduces the target.
#[test]
fn bart_ecalib_maps_match_truth_and_pics_sense_reproduces_target() {
    let Some(bart) = bart_or_skip("bart_ecalib_maps_match_truth_and_pics_sense_reproduces_target")
    else {
        return;
    };
    let target = colin27_target();
    let (n_y, n_x) = target.dim();
    let shape = Shape::new(n_y, n_x).unwrap();
    let maps = biot_savart_sensitivities(shape, FOV, 8, &CoilGeometry::default()).unwrap();
    let psi = noise_covariance(8, 0.2, 1).unwrap();
    let acquisition = Acquisition {
        mask: full(256),
        noise: 0.0,
        seed: 1,
    };
    let slice = simulate_coil_slice(target.view(), &maps, &psi, &acquisition, 0, 16).unwrap();
    let estimated = bart.ecalib(slice.kspace.view(), 24).unwrap();
    assert_eq!(estimated.dim(), (8, n_y, n_x));
    let support = head(&target);
    let correlation = map_correlation(estimated.as_slice().unwrap(), &maps, &support).unwrap();
    println!(
        "ESPIRiT vs true maps, mean phase-invariant correlation over the head: {correlation:.4}"
    );
    assert!(correlation > 0.95, "{correlation}");

    let image = bart
        .pics_sense(
            slice.kspace.view(),
            slice.mask.view(),
            estimated.view(),
            Regulariser::L1Wavelet { lambda: 1e-6 },
            30,
        )
        .unwrap();
    let reference: Vec<f64> = target.iter().map(|v| f64::from(v.norm())).collect();
    let magnitude: Vec<f64> = image.iter().map(|v| f64::from(v.norm())).collect();
    let dims = Dims { n_y, n_x };
    let psnr = metrics::psnr(&reference, &magnitude, dims).unwrap();
    let psnr_head = metrics::psnr_masked(&reference, &magnitude, &support, dims).unwrap();
    println!(
        "pics SENSE, ESPIRiT maps, full noiseless data: PSNR {psnr:.2} dB (head {psnr_head:.2} dB)"
    );
    assert!(psnr > 40.0 && psnr_head > 40.0, "{psnr} {psnr_head}");

    // Bad arguments are errors.
    let mask = slice.mask.clone();
    assert!(bart
        .pics_sense(
            slice.kspace.view(),
            mask.view(),
            estimated.view(),
            Regulariser::TotalVariation { lambda: -1.0 },
            5
        )
        .is_err());
    let wrong = Array3::<Complex32>::zeros((4, n_y, n_x));
    assert!(bart
        .pics_sense(
            slice.kspace.view(),
            mask.view(),
            wrong.view(),
            Regulariser::TotalVariation { lambda: 0.1 },
            5
        )
        .is_err());
    assert!(bart.ecalib(slice.kspace.view(), 0).is_err());
    assert!(bart.ecalib(slice.kspace.view(), 512).is_err());
}

fn host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparsemap-host"))
}

/// `simulate --coils` writes the multi-coil arrays (readable back, the single-coil arrays
/// unchanged) and `--npy-dir` one slice for the edge binary; bad flags are clear errors.
#[test]
fn simulate_command_writes_multi_coil_set_and_npy_dir() {
    use sparsemap_host::dataset::{read_coils, read_simulated, read_split, write_split, Split};
    let dir = tempfile::tempdir().unwrap();
    // A two-slice split from the bundled example.
    let target = colin27_target();
    let mut targets = Array3::<Complex32>::zeros((2, 256, 256));
    targets.index_axis_mut(Axis(0), 0).assign(&target);
    targets
        .index_axis_mut(Axis(0), 1)
        .assign(&target.mapv(|v| v * 0.5));
    let mask = head(&target);
    let head_masks = Array3::from_shape_fn((2, 256, 256), |(_, y, x)| mask[y * 256 + x]);
    let meta: sparsemap_host::dataset::SliceMeta = serde_json::from_value(serde_json::json!({
        "volume": "colin27_t1", "source": "example", "orientation": "axial", "index": 90,
        "k_range": [90, 91], "plane_shape": [217, 181], "phase_seed": 1, "peak": 1.0
    }))
    .unwrap();
    let split = Split {
        name: "tiny".into(),
        targets,
        head_masks,
        slices: vec![meta.clone(), meta],
        provenance: serde_json::json!({}),
    };
    let split_path = write_split(dir.path(), &split).unwrap();
    let out = dir.path().join("sim/tiny.npz");
    let single = dir.path().join("sim/single.npz");
    let npy = dir.path().join("npy");
    let run = |args: &[&str]| host().args(args).output().unwrap();
    let ok = run(&[
        "simulate",
        "--split",
        split_path.to_str().unwrap(),
        "--acquisition",
        "vd3@0.15",
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = run(&[
        "simulate",
        "--split",
        split_path.to_str().unwrap(),
        "--acquisition",
        "vd3@0.15",
        "--out",
        out.to_str().unwrap(),
        "--coils",
        "4",
        "--noise-samples",
        "256",
        "--npy-dir",
        npy.to_str().unwrap(),
        "--npy-slice",
        "1",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let set = read_simulated(&out).unwrap();
    let single_set = read_simulated(&single).unwrap();
    assert_eq!(
        set.kspace, single_set.kspace,
        "single-coil arrays unchanged"
    );
    assert!(read_coils(&single).unwrap().is_none());
    let (coils, spec) = read_coils(&out).unwrap().unwrap();
    assert_eq!(spec.coils, 4);
    assert_eq!(coils.kspace.dim(), (2, 4, 256, 256));
    assert_eq!(coils.sensitivities.dim(), (4, 256, 256));
    assert_eq!(coils.noise_scan.dim(), (2, 4, 256));
    assert_eq!(coils.noise_covariance.dim(), (4, 4));
    let kspace =
        Array3::<Complex32>::read_npy(File::open(npy.join("kspace.npy")).unwrap()).unwrap();
    assert_eq!(kspace, coils.kspace.index_axis(Axis(0), 1));
    let mask = Array2::<f32>::read_npy(File::open(npy.join("mask.npy")).unwrap()).unwrap();
    assert_eq!(
        mask,
        set.masks
            .index_axis(Axis(0), 1)
            .mapv(|m| if m { 1.0 } else { 0.0 })
    );
    let noise = Array2::<Complex32>::read_npy(File::open(npy.join("noise.npy")).unwrap()).unwrap();
    assert_eq!(noise.dim(), (4, 256));
    let t = Array2::<Complex32>::read_npy(File::open(npy.join("target.npy")).unwrap()).unwrap();
    assert_eq!(
        t,
        read_split(&split_path)
            .unwrap()
            .targets
            .index_axis(Axis(0), 1)
    );

    // Bad flags: clear one-line errors, no panics.
    for (args, needle) in [
        (vec!["--coils", "0"], "--coils 0"),
        (vec!["--coils", "33"], "--coils 33"),
        (
            vec!["--coils", "4", "--coil-correlation", "1.5"],
            "--coil-correlation",
        ),
        (
            vec!["--coils", "4", "--noise-samples", "0"],
            "--noise-samples",
        ),
        (
            vec![
                "--coils",
                "4",
                "--npy-dir",
                npy.to_str().unwrap(),
                "--npy-slice",
                "7",
            ],
            "--npy-slice 7",
        ),
    ] {
        let mut all = vec!["simulate", "--split", split_path.to_str().unwrap(), "--out"];
        let bad_out = dir.path().join("bad.npz");
        all.push(bad_out.to_str().unwrap());
        all.extend(args.iter().copied());
        let output = run(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = run(&[
        "simulate",
        "--split",
        split_path.to_str().unwrap(),
        "--out",
        "x.npz",
        "--npy-dir",
        "d",
    ]);
    assert!(!output.status.success());
    let _ = Complex64::default();
}

/// A multi-coil stack as a wire stream: `n_coils = C` in `ScanStart`, one `Line` per coil per
/// sampled row (coils in order), samples exact in `f32`; one coil gives `simulate_scan`'s bytes.
#[test]
fn multi_coil_scan_sends_one_line_per_coil_per_row() {
    use sparsemap_host::scan::{
        line_plan_coils, simulate_scan, simulate_scan_coils, FaultSpec, SampleFormat, ScanSpec,
    };
    use sparsemap_wire::{Decoder, Frame, Samples};
    let n = 32;
    let shape = Shape::new(n, n).unwrap();
    let coils = 4;
    let maps = biot_savart_sensitivities(shape, FOV, coils, &CoilGeometry::default()).unwrap();
    let psi = noise_covariance(coils, 0.2, 1).unwrap();
    let target = Array2::from_shape_fn((n, n), |(y, x)| {
        let (u, v) = (y as f32 / n as f32 - 0.5, x as f32 / n as f32 - 0.5);
        Complex32::new(if u * u + v * v < 0.15 { 1.0 } else { 0.0 }, 0.0)
    });
    let acquisition = Acquisition {
        mask: MaskKind::VariableDensity1d {
            acceleration: 2.0,
            centre_lines: 4,
        },
        noise: 0.1,
        seed: 4,
    };
    let slice = simulate_coil_slice(target.view(), &maps, &psi, &acquisition, 0, 8).unwrap();
    let kspace = slice.kspace.clone().insert_axis(Axis(0));
    let masks = slice.mask.clone().insert_axis(Axis(0));
    let spec = ScanSpec {
        scan_id: 3,
        field_mt: 50.0,
        fov_mm: [256.0, 256.0],
        samples: SampleFormat::F32,
    };
    let (bytes, log) =
        simulate_scan_coils(kspace.view(), masks.view(), &spec, &FaultSpec::none()).unwrap();
    let plan = line_plan_coils(masks.view(), coils as u8);
    let rows = slice
        .mask
        .axis_iter(Axis(0))
        .filter(|r| r.iter().any(|&m| m))
        .count();
    assert_eq!(plan.len(), rows * coils);
    assert_eq!(log.lines_sent as usize, rows * coils);
    let mut decoder: Box<Decoder> = Box::default();
    let mut lines = 0;
    decoder.feed_all(&bytes, |frame| match frame.unwrap() {
        Frame::ScanStart(start) => assert_eq!(usize::from(start.n_coils), coils),
        Frame::Line(line) => {
            let planned = plan[line.seq as usize];
            assert_eq!((line.coil, line.ky), (planned.coil, planned.ky));
            let Samples::F32 { iq } = &line.samples else {
                panic!("f32 samples expected")
            };
            for (kx, v) in iq.iter().enumerate() {
                let want = slice.kspace[[usize::from(line.coil), usize::from(line.ky), kx]];
                assert_eq!(*v, [want.re, want.im]);
            }
            lines += 1;
        }
        _ => {}
    });
    assert_eq!(lines, rows * coils);

    // One coil: the single-coil stream, byte for byte.
    let one = kspace.slice(ndarray::s![.., 0..1, .., ..]).to_owned();
    let (a, _) = simulate_scan_coils(one.view(), masks.view(), &spec, &FaultSpec::none()).unwrap();
    let single = one.index_axis(Axis(1), 0).to_owned();
    let (b, _) = simulate_scan(single.view(), masks.view(), &spec, &FaultSpec::none()).unwrap();
    assert_eq!(a, b);
}
