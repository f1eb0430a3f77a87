//! The acquisition simulation (`sparsemap_host::simulate`): masks reach what they promise,
//! the noise has the stated statistics, the data obey `kspace = M (F target + n)` and
//! `zero_filled = F^H kspace`, and bad input is an error, not a panic.

use std::cell::RefCell;
use std::fs::File;

use ndarray::{Array2, Array3, Axis};
use ndarray_npy::ReadNpyExt;
use num_complex::{Complex32, Complex64};
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;
use sparsemap_host::simulate::{
    derive_seeds, make_mask, sampled_fraction, simulate_slice, simulate_stack, Acquisition,
    MaskKind,
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn colin27_target() -> Array2<Complex32> {
    Array2::<Complex32>::read_npy(
        File::open(format!("{ROOT}/examples/colin27/target.npy")).unwrap(),
    )
    .unwrap()
}

/// A smooth complex phantom: an off-centre ellipse with a linear phase, plus a small disc.
fn phantom(n_y: usize, n_x: usize) -> Array2<Complex32> {
    Array2::from_shape_fn((n_y, n_x), |(y, x)| {
        let u = (y as f32 - n_y as f32 / 2.0) / (n_y as f32 / 2.0);
        let v = (x as f32 - n_x as f32 / 2.0) / (n_x as f32 / 2.0);
        let mut m = if (u / 0.8).powi(2) + (v / 0.6).powi(2) < 1.0 {
            0.7
        } else {
            0.0
        };
        if (u - 0.2).powi(2) + (v + 0.1).powi(2) < 0.04 {
            m += 0.3;
        }
        Complex32::from_polar(m, 0.4 * u - 0.3 * v)
    })
}

/// `F x` (`inverse = false`) or `F^H x` in f64 through the core operator.
fn fourier(input: &Array2<Complex32>, inverse: bool) -> Array2<Complex64> {
    let (n_y, n_x) = input.dim();
    let fft = Fft2::new(RustFft::<f64>::new(Shape::new(n_y, n_x).unwrap()));
    let op = CentredFourier { fft: &fft };
    let mut scratch = vec![Complex64::default(); LinearOperator::<f64>::scratch_len(&op)];
    let x: Vec<Complex64> = input
        .iter()
        .map(|v| Complex64::new(v.re.into(), v.im.into()))
        .collect();
    let mut out = vec![Complex64::default(); x.len()];
    if inverse {
        op.adjoint(&x, &mut out, &mut scratch);
    } else {
        op.apply(&x, &mut out, &mut scratch);
    }
    Array2::from_shape_vec((n_y, n_x), out).unwrap()
}

fn acquisition(mask: MaskKind, noise: f64, seed: u64) -> Acquisition {
    Acquisition { mask, noise, seed }
}

fn count(mask: &Array2<bool>) -> usize {
    mask.iter().filter(|&&m| m).count()
}

#[test]
fn central_block_128_is_the_colin27_mask() {
    let reference =
        Array2::<u8>::read_npy(File::open(format!("{ROOT}/examples/colin27/mask.npy")).unwrap())
            .unwrap();
    assert_eq!(reference.dim(), (256, 256));
    for seed in [0, 1, u64::MAX] {
        let mask = make_mask(&MaskKind::CentralBlock { size: 128 }, 256, 256, seed).unwrap();
        assert_eq!(mask, reference.mapv(|m| m != 0), "seed {seed}");
    }
    // Rectangular grid: the block is centred on each axis separately.
    let mask = make_mask(&MaskKind::CentralBlock { size: 8 }, 16, 32, 0).unwrap();
    assert_eq!(count(&mask), 64);
    assert!(mask[[4, 12]] && mask[[11, 19]] && !mask[[3, 12]] && !mask[[4, 20]]);
}

#[test]
fn variable_density_masks_have_the_exact_line_count_and_centre() {
    for (n_y, n_x, acceleration, centre_lines) in [
        (256, 256, 4.0, 16),
        (256, 128, 2.5, 24),
        (128, 128, 8.0, 8),
        (64, 32, 3.0, 0),
        (32, 32, 1.0, 4),
    ] {
        let kind = MaskKind::VariableDensity1d {
            acceleration,
            centre_lines,
        };
        let mask = make_mask(&kind, n_y, n_x, 42).unwrap();
        let rows: Vec<bool> = mask.axis_iter(Axis(0)).map(|r| r[0]).collect();
        for (ky, row) in mask.axis_iter(Axis(0)).enumerate() {
            assert!(
                row.iter().all(|&m| m == rows[ky]),
                "row {ky} of {kind} is partial"
            );
        }
        let lines = rows.iter().filter(|&&r| r).count();
        let want = (n_y as f64 / acceleration).round() as usize;
        assert_eq!(lines, want, "{kind} on {n_y}x{n_x}");
        let c0 = n_y / 2 - centre_lines / 2;
        assert!(
            rows[c0..c0 + centre_lines].iter().all(|&r| r),
            "{kind} centre"
        );
        println!(
            "{kind} {n_y}x{n_x}: {lines} lines, acceleration {:.3}",
            1.0 / sampled_fraction(mask.view())
        );

        assert_eq!(
            mask,
            make_mask(&kind, n_y, n_x, 42).unwrap(),
            "deterministic"
        );
        if acceleration > 1.0 {
            assert_ne!(
                mask,
                make_mask(&kind, n_y, n_x, 43).unwrap(),
                "seed matters"
            );
        }
    }
}

#[test]
fn variable_density_is_denser_near_the_centre() {
    let (n, centre_lines) = (256usize, 16usize);
    let kind = MaskKind::VariableDensity1d {
        acceleration: 4.0,
        centre_lines,
    };
    let (mut inner, mut inner_rows, mut outer, mut outer_rows) = (0, 0, 0, 0);
    for seed in 0..20 {
        let mask = make_mask(&kind, n, n, seed).unwrap();
        for ky in 0..n {
            let d = ky.abs_diff(n / 2);
            let sampled = usize::from(mask[[ky, 0]]);
            if (centre_lines / 2..n / 8).contains(&d) {
                (inner, inner_rows) = (inner + sampled, inner_rows + 1);
            } else if d >= 3 * n / 8 {
                (outer, outer_rows) = (outer + sampled, outer_rows + 1);
            }
        }
    }
    let (inner, outer) = (
        inner as f64 / inner_rows as f64,
        outer as f64 / outer_rows as f64,
    );
    println!("VD 4x: fraction sampled {inner:.3} for 8 <= |ky| < n/8 (centre excluded), {outer:.3} in the outer quarter");
    assert!(inner > 3.0 * outer, "inner {inner} vs outer {outer}");
    assert!(outer > 0.0, "the edge of k-space is still reachable");
}

#[test]
fn poisson_disc_masks_reach_the_acceleration_with_a_full_centre() {
    for (n_y, n_x, acceleration, centre) in [
        (256, 256, 4.0, 24),
        (256, 256, 8.0, 16),
        (128, 64, 6.0, 8),
        (64, 64, 3.0, 0),
        (32, 32, 2.0, 4),
    ] {
        let kind = MaskKind::PoissonDisc2d {
            acceleration,
            centre,
        };
        let started = std::time::Instant::now();
        let mask = make_mask(&kind, n_y, n_x, 7).unwrap();
        let elapsed = started.elapsed();
        let reached = 1.0 / sampled_fraction(mask.view());
        println!(
            "{kind} {n_y}x{n_x} centre {centre}: {} points, acceleration {reached:.3} ({elapsed:.2?})",
            count(&mask)
        );
        assert!(
            (reached / acceleration - 1.0).abs() < 0.03,
            "{kind}: acceleration {reached}"
        );
        let (y0, x0) = (n_y / 2 - centre / 2, n_x / 2 - centre / 2);
        for y in y0..y0 + centre {
            for x in x0..x0 + centre {
                assert!(mask[[y, x]], "{kind}: centre ({y}, {x}) not sampled");
            }
        }
        // The whole plane is covered: every corner quarter-by-quarter block has samples.
        for (ys, xs) in [
            (0..n_y / 4, 0..n_x / 4),
            (3 * n_y / 4..n_y, 3 * n_x / 4..n_x),
        ] {
            let any = ys.clone().any(|y| xs.clone().any(|x| mask[[y, x]]));
            assert!(any, "{kind}: corner {ys:?} x {xs:?} empty");
        }
        assert_eq!(
            mask,
            make_mask(&kind, n_y, n_x, 7).unwrap(),
            "deterministic"
        );
        assert_ne!(mask, make_mask(&kind, n_y, n_x, 8).unwrap(), "seed matters");
    }
}

#[test]
fn poisson_disc_density_decays_and_points_keep_their_distance() {
    let n = 256usize;
    let mask = make_mask(
        &MaskKind::PoissonDisc2d {
            acceleration: 5.0,
            centre: 16,
        },
        n,
        n,
        3,
    )
    .unwrap();
    let ring = |lo: f64, hi: f64| {
        let (mut hit, mut all) = (0usize, 0usize);
        for y in 0..n {
            for x in 0..n {
                let r = ((y as f64 - 128.0).powi(2) + (x as f64 - 128.0).powi(2)).sqrt() / 128.0;
                if (lo..hi).contains(&r) {
                    all += 1;
                    hit += usize::from(mask[[y, x]]);
                }
            }
        }
        hit as f64 / all as f64
    };
    let (inner, outer) = (ring(0.15, 0.3), ring(0.8, 1.0));
    println!("Poisson 5x: density {inner:.3} at radius 0.15..0.3, {outer:.3} at 0.8..1.0");
    assert!(inner > 2.0 * outer && outer > 0.0, "{inner} vs {outer}");
    // A Poisson-disc pattern has no clusters: outside the centre no two samples touch
    // (8-neighbourhood) in the outer half of k-space.
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let r = ((y as f64 - 128.0).powi(2) + (x as f64 - 128.0).powi(2)).sqrt() / 128.0;
            if r > 0.5 && mask[[y, x]] {
                assert!(
                    !(mask[[y, x + 1]]
                        || mask[[y + 1, x]]
                        || mask[[y + 1, x + 1]]
                        || mask[[y + 1, x - 1]]),
                    "neighbouring samples at ({y}, {x})"
                );
            }
        }
    }
}

#[test]
fn noise_has_the_stated_standard_deviation() {
    let target = colin27_target();
    let kfull = fourier(&target, false);
    let rms = (kfull.iter().map(|v| v.norm_sqr()).sum::<f64>() / kfull.len() as f64).sqrt();
    for (kind, seed) in [
        (MaskKind::CentralBlock { size: 128 }, 11),
        (
            MaskKind::VariableDensity1d {
                acceleration: 2.0,
                centre_lines: 16,
            },
            12,
        ),
    ] {
        let sim = simulate_slice(target.view(), &acquisition(kind, 0.15, seed), 0).unwrap();
        assert!((sim.kspace_rms / rms - 1.0).abs() < 1e-12, "rms");
        assert!(
            (sim.noise_sigma / (0.15 * rms) - 1.0).abs() < 1e-12,
            "sigma"
        );
        let diffs: Vec<Complex64> = sim
            .mask
            .indexed_iter()
            .filter(|&(_, &m)| m)
            .map(|(i, _)| {
                let k = sim.kspace[i];
                Complex64::new(k.re.into(), k.im.into()) - kfull[i]
            })
            .collect();
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<Complex64>() / n;
        let var_re = diffs.iter().map(|d| d.re * d.re).sum::<f64>() / n;
        let var_im = diffs.iter().map(|d| d.im * d.im).sum::<f64>() / n;
        let std = (var_re + var_im).sqrt();
        println!(
            "{kind}: {} samples, empirical std {std:.5e} vs sigma {:.5e} (ratio {:.4}); mean {:.2e}; var re/im {:.4}",
            diffs.len(),
            sim.noise_sigma,
            std / sim.noise_sigma,
            mean.norm(),
            var_re / var_im
        );
        assert!((std / sim.noise_sigma - 1.0).abs() < 0.02, "std {std}");
        assert!(mean.norm() < 0.05 * sim.noise_sigma, "mean {mean}");
        assert!(
            (var_re / var_im - 1.0).abs() < 0.06,
            "re/im {var_re} {var_im}"
        );
    }
}

#[test]
fn kspace_is_masked_and_zero_filled_is_its_adjoint() {
    let target = phantom(128, 64);
    let kind = MaskKind::PoissonDisc2d {
        acceleration: 4.0,
        centre: 8,
    };
    let sim = simulate_slice(target.view(), &acquisition(kind, 0.2, 5), 3).unwrap();
    for ((i, k), &m) in sim.kspace.indexed_iter().zip(sim.mask.iter()) {
        if !m {
            assert_eq!(*k, Complex32::new(0.0, 0.0), "off-mask {i:?}");
        }
    }
    assert!(sim
        .kspace
        .iter()
        .zip(sim.mask.iter())
        .any(|(k, &m)| m && k.norm() > 0.0));
    let back = fourier(&sim.zero_filled, false);
    let err: f64 = back
        .iter()
        .zip(sim.kspace.iter())
        .map(|(a, b)| (a - Complex64::new(b.re.into(), b.im.into())).norm_sqr())
        .sum();
    let norm: f64 = sim.kspace.iter().map(|v| f64::from(v.norm_sqr())).sum();
    let rel = (err / norm).sqrt();
    println!("||F zero_filled - kspace|| / ||kspace|| = {rel:.2e}");
    assert!(rel < 1e-6, "{rel}");
}

#[test]
fn zero_noise_gives_the_masked_transform() {
    let target = phantom(64, 64);
    let kfull = fourier(&target, false);
    let kind = MaskKind::VariableDensity1d {
        acceleration: 3.0,
        centre_lines: 8,
    };
    let sim = simulate_slice(target.view(), &acquisition(kind, 0.0, 9), 0).unwrap();
    assert_eq!(sim.noise_sigma, 0.0);
    for ((i, k), &m) in sim.kspace.indexed_iter().zip(sim.mask.iter()) {
        let want = if m { kfull[i] } else { Complex64::default() };
        let got = Complex64::new(k.re.into(), k.im.into());
        assert!(
            (got - want).norm() <= 1e-6 * (1.0 + want.norm()),
            "{i:?}: {got} vs {want}"
        );
    }
}

#[test]
fn zero_filled_psnr_matches_the_bundled_example() {
    // Same statistics as make_example.py (different RNG): the zero-filled PSNR of the
    // bundled kspace.npy and of a fresh simulation agree closely.
    let target = colin27_target();
    let bundled = Array2::<Complex32>::read_npy(
        File::open(format!("{ROOT}/examples/colin27/kspace.npy")).unwrap(),
    )
    .unwrap();
    let to32 = |a: Array2<Complex64>| a.mapv(|v| Complex32::new(v.re as f32, v.im as f32));
    let flat = |a: &Array2<Complex32>| a.iter().copied().collect::<Vec<_>>();
    let reference = sparsemap_edge::metrics::psnr_magnitude(
        &flat(&to32(fourier(&bundled, true))),
        &flat(&target),
    )
    .unwrap();
    assert!(
        (reference - 31.77).abs() < 0.05,
        "bundled zero-filled PSNR {reference}"
    );
    for seed in [2026, 1] {
        let sim = simulate_slice(
            target.view(),
            &acquisition(MaskKind::CentralBlock { size: 128 }, 0.15, seed),
            0,
        )
        .unwrap();
        let psnr = sparsemap_edge::metrics::psnr_magnitude(&flat(&sim.zero_filled), &flat(&target))
            .unwrap();
        println!(
            "zero-filled PSNR: bundled {reference:.3} dB, simulated (seed {seed}) {psnr:.3} dB"
        );
        assert!((psnr - reference).abs() < 0.3, "{psnr} vs {reference}");
    }
}

#[test]
fn stack_matches_slice_by_slice_simulation() {
    let (s, n) = (3, 32);
    let mut targets = Array3::<Complex32>::zeros((s, n, n));
    for i in 0..s {
        let scale = 1.0 + i as f32;
        targets
            .index_axis_mut(Axis(0), i)
            .assign(&phantom(n, n).mapv(|v| v * scale));
    }
    let acq = acquisition(
        MaskKind::VariableDensity1d {
            acceleration: 2.0,
            centre_lines: 4,
        },
        0.1,
        77,
    );
    let calls = RefCell::new(Vec::new());
    let (kspace, masks, zero_filled, records) =
        simulate_stack(targets.view(), &acq, |done| calls.borrow_mut().push(done)).unwrap();
    assert_eq!(*calls.borrow(), vec![1, 2, 3]);
    assert_eq!(records.len(), s);
    for (i, r) in records.iter().enumerate() {
        let one = simulate_slice(targets.index_axis(Axis(0), i), &acq, i as u64).unwrap();
        assert_eq!(kspace.index_axis(Axis(0), i), one.kspace);
        assert_eq!(masks.index_axis(Axis(0), i), one.mask);
        assert_eq!(zero_filled.index_axis(Axis(0), i), one.zero_filled);
        assert_eq!(r.index, i as u64);
        assert_eq!((r.mask_seed, r.noise_seed), derive_seeds(77, i as u64));
        assert_eq!((r.mask_seed, r.noise_seed), (one.mask_seed, one.noise_seed));
        assert_eq!(r.kspace_rms, one.kspace_rms);
        assert_eq!(r.noise_sigma, one.noise_sigma);
        assert_eq!(r.sampled_fraction, 0.5);
    }
    // Random masks differ from slice to slice; the noise streams too.
    assert_ne!(masks.index_axis(Axis(0), 0), masks.index_axis(Axis(0), 1));
    assert_ne!(records[0].noise_seed, records[1].noise_seed);
    assert_ne!(records[0].mask_seed, records[0].noise_seed);

    // The central block is the same on every slice.
    let block = acquisition(MaskKind::CentralBlock { size: 16 }, 0.1, 77);
    let (_, masks, _, _) = simulate_stack(targets.view(), &block, |_| {}).unwrap();
    assert_eq!(masks.index_axis(Axis(0), 0), masks.index_axis(Axis(0), 2));

    // The record is JSON-serialisable with exact seeds.
    let json = serde_json::to_string(&records).unwrap();
    let back: Vec<sparsemap_host::simulate::SliceRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, records);
}

#[test]
fn same_seed_same_data_different_slice_different_noise() {
    let target = phantom(32, 32);
    let acq = acquisition(MaskKind::CentralBlock { size: 16 }, 0.2, 5);
    let a = simulate_slice(target.view(), &acq, 4).unwrap();
    let b = simulate_slice(target.view(), &acq, 4).unwrap();
    let c = simulate_slice(target.view(), &acq, 5).unwrap();
    assert_eq!(a.kspace, b.kspace);
    assert_eq!(a.mask, c.mask);
    assert_ne!(a.kspace, c.kspace);
    assert_eq!((a.mask_seed, a.noise_seed), derive_seeds(5, 4));
}

#[test]
fn mask_kinds_serialise_tagged_and_have_short_labels() {
    let kinds = [
        (
            MaskKind::CentralBlock { size: 128 },
            "block128",
            r#"{"kind":"central_block","size":128}"#,
        ),
        (
            MaskKind::VariableDensity1d {
                acceleration: 4.0,
                centre_lines: 16,
            },
            "vd4",
            r#"{"kind":"variable_density1d","acceleration":4.0,"centre_lines":16}"#,
        ),
        (
            MaskKind::PoissonDisc2d {
                acceleration: 2.5,
                centre: 24,
            },
            "poisson2.5",
            r#"{"kind":"poisson_disc2d","acceleration":2.5,"centre":24}"#,
        ),
    ];
    for (kind, label, json) in kinds {
        assert_eq!(kind.label(), label);
        assert_eq!(kind.to_string(), label);
        assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        assert_eq!(serde_json::from_str::<MaskKind>(json).unwrap(), kind);
    }
    let acq = acquisition(MaskKind::CentralBlock { size: 96 }, 0.075, u64::MAX);
    let back: Acquisition = serde_json::from_str(&serde_json::to_string(&acq).unwrap()).unwrap();
    assert_eq!(back, acq);
}

#[test]
fn bad_parameters_are_errors() {
    let vd = |acceleration, centre_lines| MaskKind::VariableDensity1d {
        acceleration,
        centre_lines,
    };
    let pd = |acceleration, centre| MaskKind::PoissonDisc2d {
        acceleration,
        centre,
    };
    for (kind, n_y, n_x) in [
        (MaskKind::CentralBlock { size: 127 }, 256, 256),
        (MaskKind::CentralBlock { size: 0 }, 256, 256),
        (MaskKind::CentralBlock { size: 512 }, 256, 256),
        (MaskKind::CentralBlock { size: 64 }, 256, 32),
        (vd(0.5, 8), 256, 256),
        (vd(f64::NAN, 8), 256, 256),
        (vd(f64::INFINITY, 8), 256, 256),
        (vd(8.0, 64), 256, 256),
        (pd(0.9, 8), 256, 256),
        (pd(f64::NAN, 8), 256, 256),
        (pd(4.0, 300), 256, 256),
        (pd(16.0, 100), 256, 256),
        (MaskKind::CentralBlock { size: 8 }, 0, 16),
        (MaskKind::CentralBlock { size: 8 }, 16, 4096),
    ] {
        let result = make_mask(&kind, n_y, n_x, 1);
        assert!(result.is_err(), "{kind:?} on {n_y}x{n_x} should fail");
        println!("{kind} on {n_y}x{n_x}: {:#}", result.unwrap_err());
    }

    let target = phantom(32, 32);
    let block = MaskKind::CentralBlock { size: 16 };
    for noise in [-0.01, 1.5, f64::NAN, f64::INFINITY] {
        assert!(simulate_slice(target.view(), &acquisition(block, noise, 0), 0).is_err());
    }
    let mut bad = target.clone();
    bad[[3, 4]] = Complex32::new(f32::NAN, 0.0);
    assert!(simulate_slice(bad.view(), &acquisition(block, 0.1, 0), 0).is_err());
    bad[[3, 4]] = Complex32::new(0.0, f32::INFINITY);
    assert!(simulate_slice(bad.view(), &acquisition(block, 0.1, 0), 0).is_err());
    let odd = Array2::<Complex32>::zeros((48, 48));
    assert!(simulate_slice(odd.view(), &acquisition(block, 0.1, 0), 0).is_err());
    // Noise level 1 is allowed; so is 0.
    for noise in [0.0, 1.0] {
        assert!(simulate_slice(target.view(), &acquisition(block, noise, 0), 0).is_ok());
    }
    let empty = Array3::<Complex32>::zeros((0, 32, 32));
    assert!(simulate_stack(empty.view(), &acquisition(block, 0.1, 0), |_| {}).is_err());
    let mut stack = Array3::<Complex32>::zeros((2, 32, 32));
    stack[[1, 0, 0]] = Complex32::new(f32::NAN, 0.0);
    assert!(simulate_stack(stack.view(), &acquisition(block, 0.1, 0), |_| {}).is_err());
}
