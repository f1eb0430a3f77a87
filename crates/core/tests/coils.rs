//! Several coils (DESIGN §3.4, `crate::coils`): the coil encoding against its definition and
//! its adjoint, the Lipschitz estimate against a dense eigenvalue, one coil with `S = 1`
//! against the single-coil reconstruction, SENSE unfolding of undersampled data, threads,
//! and bad input.

mod common;

use common::*;
use num_complex::{Complex, Complex64};
use sparsemap_core::coils::{reconstruct_coils, CoilEncoding, CoilWorkspace, LIPSCHITZ_MARGIN};
use sparsemap_core::dictionary::{ConvDictionary, MaskedSynthesis};
use sparsemap_core::fft::{ActiveRows, Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::{Lambda, WorkerBuffers};
use sparsemap_core::ops::{adjoint_mismatch, LinearOperator};
use sparsemap_core::recon::{reconstruct, ReconConfig, Workspace};
use sparsemap_core::{Error, Real, Shape};

/// Smooth coil maps: coil `c` peaks near a point on a circle around the centre, with a slow
/// linear phase; normalised so that `sum_c |S_c|² = 1` at every pixel.
fn smooth_maps(coils: usize, ny: usize, nx: usize) -> Vec<Complex64> {
    let mut maps = vec![Complex64::default(); coils * ny * nx];
    for c in 0..coils {
        let angle = std::f64::consts::TAU * c as f64 / coils as f64;
        let (cy, cx) = (
            ny as f64 * (0.5 + 0.45 * angle.sin()),
            nx as f64 * (0.5 + 0.45 * angle.cos()),
        );
        for y in 0..ny {
            for x in 0..nx {
                let d2 =
                    ((y as f64 - cy) / ny as f64).powi(2) + ((x as f64 - cx) / nx as f64).powi(2);
                let phase = 0.8 * angle + 2.0 * (x as f64 / nx as f64 - 0.5) * angle.cos();
                maps[c * ny * nx + y * nx + x] = Complex64::from_polar((-d2 / 0.08).exp(), phase);
            }
        }
    }
    for i in 0..ny * nx {
        let norm: f64 = (0..coils)
            .map(|c| maps[c * ny * nx + i].norm_sqr())
            .sum::<f64>()
            .sqrt();
        for c in 0..coils {
            maps[c * ny * nx + i] /= norm;
        }
    }
    maps
}

/// The modulated, transposed layout the solver works in: `C x` for images, and for k-space
/// `out[transposed(y, x)] = C(y, x) k[y][x]`.
fn checker(y: usize, x: usize) -> f64 {
    if (y + x).is_multiple_of(2) {
        1.0
    } else {
        -1.0
    }
}

fn cast<T: Real>(v: &[Complex64]) -> Vec<Complex<T>> {
    v.iter()
        .map(|c| Complex::new(T::lit(c.re), T::lit(c.im)))
        .collect()
}

/// Rows `ky` kept: every `step`-th row plus `centre` rows around `n_y/2` (a 1-D
/// undersampling pattern), natural layout, identical for every coil.
fn row_mask(ny: usize, nx: usize, step: usize, centre: usize) -> Vec<f64> {
    let mut mask = vec![0.0; ny * nx];
    for y in 0..ny {
        let keep = y % step == 0 || (y as isize - (ny / 2) as isize).unsigned_abs() < centre / 2;
        if keep {
            mask[y * nx..(y + 1) * nx].fill(1.0);
        }
    }
    mask
}

fn transposed_masks<T: Real>(mask: &[f64], coils: usize, shape: Shape) -> Vec<T> {
    let mut out = vec![T::zero(); coils * shape.len()];
    for c in 0..coils {
        for y in 0..shape.n_y() {
            for x in 0..shape.n_x() {
                out[c * shape.len() + shape.transposed(y, x)] = T::lit(mask[shape.natural(y, x)]);
            }
        }
    }
    out
}

fn check_encoding_adjoint<T: Real, B: FftBackend<T>>(
    fft: &Fft2<B>,
    coils: usize,
    prune: bool,
    tol: f64,
) {
    let shape = fft.shape();
    let (ny, nx) = (shape.n_y(), shape.n_x());
    let maps = cast::<T>(&smooth_maps(coils, ny, nx));
    // Random per-coil weights on a set of columns (so the pruning has rows to skip).
    let mut r = rng(7 + coils as u64);
    let mut mask = random_real::<f64>(&mut r, ny * nx, 0.0, 1.0);
    for y in 0..ny {
        for x in 0..nx {
            if x % 3 == 1 {
                mask[y * nx + x] = 0.0;
            }
        }
    }
    let masks = transposed_masks::<T>(&mask, coils, shape);
    let rows = if prune {
        ActiveRows::of_transposed_mask(shape, &masks[..shape.len()]).unwrap()
    } else {
        ActiveRows::all(shape)
    };
    let op = CoilEncoding {
        fft,
        coils,
        sensitivities: &maps,
        masks: &masks,
        rows,
    };
    let x = random_complex::<T>(&mut r, op.domain_len());
    let y = random_complex::<T>(&mut r, op.range_len());
    let mut ax = vec![Complex::default(); op.range_len()];
    let mut ahy = vec![Complex::default(); op.domain_len()];
    let mut scratch = vec![Complex::default(); op.scratch_len()];
    let mismatch = adjoint_mismatch(&op, &x, &y, &mut ax, &mut ahy, &mut scratch);
    assert!(
        mismatch < tol,
        "coil encoding adjoint mismatch {mismatch:e} (coils {coils}, prune {prune})"
    );
}

#[test]
fn coil_encoding_is_adjoint_for_both_backends_and_layouts() {
    for (ny, nx) in [(16, 16), (32, 16), (8, 32)] {
        let shape = Shape::new(ny, nx).unwrap();
        for coils in [1, 3, 8] {
            for prune in [false, true] {
                check_encoding_adjoint::<f64, _>(
                    &Fft2::new(RustFft::<f64>::new(shape)),
                    coils,
                    prune,
                    1e-12,
                );
                check_encoding_adjoint::<f32, _>(
                    &Fft2::new(RustFft::<f32>::new(shape)),
                    coils,
                    prune,
                    1e-5,
                );
                check_encoding_adjoint::<f32, _>(
                    &Fft2::new(MicroFft::new(shape)),
                    coils,
                    prune,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn coil_encoding_is_mask_times_centred_fft_of_sensitivity_times_image() {
    let (ny, nx, coils) = (16, 8, 3);
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let maps = smooth_maps(coils, ny, nx);
    let mask = row_mask(ny, nx, 3, 4);
    let masks = transposed_masks::<f64>(&mask, coils, shape);
    let op = CoilEncoding {
        fft: &fft,
        coils,
        sensitivities: &maps,
        masks: &masks,
        rows: ActiveRows::all(shape),
    };
    let image = random_complex::<f64>(&mut rng(3), shape.len());
    let modulated: Vec<Complex64> = (0..shape.len())
        .map(|i| image[i] * checker(i / nx, i % nx))
        .collect();
    let mut out = vec![Complex64::default(); op.range_len()];
    let mut scratch = vec![Complex64::default(); op.scratch_len()];
    op.apply(&modulated, &mut out, &mut scratch);
    for c in 0..coils {
        let coil_image: Vec<Complex64> = (0..shape.len())
            .map(|i| maps[c * shape.len() + i] * image[i])
            .collect();
        let expected = naive_centred_fft2(&coil_image, ny, nx);
        let mut got = vec![Complex64::default(); shape.len()];
        for y in 0..ny {
            for x in 0..nx {
                let i = shape.natural(y, x);
                got[i] = out[c * shape.len() + shape.transposed(y, x)] * checker(y, x);
            }
        }
        let expected: Vec<Complex64> = expected.iter().zip(&mask).map(|(k, m)| k * m).collect();
        let error = relative_error(&got, &expected);
        assert!(error < 1e-12, "coil {c}: relative error {error:e}");
    }
}

/// The largest eigenvalue of `(M F S D)^H (M F S D)` by dense power iteration to convergence
/// on a small grid (the oracle of the solver's 16-step estimate).
#[test]
fn lipschitz_estimate_bounds_the_dense_eigenvalue_within_the_margin() {
    let (ny, nx, coils, count, side) = (16, 16, 4, 3, 3);
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let filters = random_real::<f64>(&mut rng(5), count * side * side, -1.0, 1.0);
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &filters, count, side, &mut store);
    let maps = smooth_maps(coils, ny, nx);
    for mask in [
        row_mask(ny, nx, 4, 4),
        row_mask(ny, nx, 1, 0),
        block_mask(ny, nx, 8),
    ] {
        let masks = transposed_masks::<f64>(&mask, coils, shape);
        let n = shape.len();
        // dense oracle: iterate x <- D^H E^H E D x to convergence
        let dictionary = ConvDictionary { plan: &plan };
        let encoding = CoilEncoding {
            fft: &fft,
            coils,
            sensitivities: &maps,
            masks: &masks,
            rows: ActiveRows::all(shape),
        };
        let mut z = random_complex::<f64>(&mut rng(9), count * n);
        let mut eigenvalue = 0.0;
        let mut image = vec![Complex64::default(); n];
        let mut kspace = vec![Complex64::default(); coils * n];
        let mut s1 =
            vec![Complex64::default(); dictionary.scratch_len().max(encoding.scratch_len())];
        for _ in 0..2000 {
            let norm: f64 = z.iter().map(|v| v.norm_sqr()).sum::<f64>().sqrt();
            z.iter_mut().for_each(|v| *v /= norm);
            // D works on natural images; the encoding on modulated ones.
            dictionary.apply(&z, &mut image, &mut s1);
            for (i, v) in image.iter_mut().enumerate() {
                *v *= checker(i / nx, i % nx);
            }
            encoding.apply(&image, &mut kspace, &mut s1);
            encoding.adjoint(&kspace, &mut image, &mut s1);
            for (i, v) in image.iter_mut().enumerate() {
                *v *= checker(i / nx, i % nx);
            }
            dictionary.adjoint(&image, &mut z, &mut s1);
            eigenvalue = z.iter().map(|v| v.norm_sqr()).sum::<f64>().sqrt();
        }
        let kspace_natural = random_complex::<f64>(&mut rng(10), coils * n);
        let masks_natural: Vec<f64> = (0..coils).flat_map(|_| mask.iter().copied()).collect();
        let mut complex =
            vec![
                Complex64::default();
                CoilWorkspace::<f64>::complex_len(shape, count, coils, fft.scratch_len())
            ];
        let mut real = vec![0.0; CoilWorkspace::<f64>::real_len(shape, coils)];
        let mut ws = CoilWorkspace::new(
            shape,
            count,
            coils,
            fft.scratch_len(),
            &mut complex,
            &mut real,
        )
        .unwrap();
        let prepared = ws
            .prepare(&plan, &kspace_natural, &masks_natural, &maps, 1.0)
            .unwrap();
        let estimate = prepared.lipschitz();
        assert!(
            estimate >= eigenvalue * (1.0 - 1e-9)
                && estimate <= eigenvalue * LIPSCHITZ_MARGIN * (1.0 + 1e-9),
            "L estimate {estimate} vs dense {eigenvalue}"
        );
    }
}

fn block_mask(ny: usize, nx: usize, block: usize) -> Vec<f64> {
    let mut mask = vec![0.0; ny * nx];
    for y in (ny - block) / 2..(ny + block) / 2 {
        for x in (nx - block) / 2..(nx + block) / 2 {
            mask[y * nx + x] = 1.0;
        }
    }
    mask
}

/// A smooth test object: a few Gaussian blobs with phase, so that its dictionary
/// coefficients are well-defined and it has energy at all scales.
fn object(ny: usize, nx: usize) -> Vec<Complex64> {
    (0..ny * nx)
        .map(|i| {
            let (y, x) = (
                (i / nx) as f64 / ny as f64 - 0.5,
                (i % nx) as f64 / nx as f64 - 0.5,
            );
            let blob =
                |cy: f64, cx: f64, w: f64| (-((y - cy).powi(2) + (x - cx).powi(2)) / w).exp();
            let magnitude = blob(0.0, 0.0, 0.05)
                + 0.7 * blob(0.15, -0.1, 0.004)
                + 0.5 * blob(-0.2, 0.15, 0.002);
            Complex64::from_polar(magnitude, 0.5 * x)
        })
        .collect()
}

/// `M_c F (S_c x)` for every coil, natural layout (the oracle's forward model).
fn coil_kspace(
    image: &[Complex64],
    maps: &[Complex64],
    mask: &[f64],
    coils: usize,
    ny: usize,
    nx: usize,
) -> Vec<Complex64> {
    let n = ny * nx;
    (0..coils)
        .flat_map(|c| {
            let coil: Vec<Complex64> = (0..n).map(|i| maps[c * n + i] * image[i]).collect();
            naive_centred_fft2(&coil, ny, nx)
                .into_iter()
                .zip(mask)
                .map(|(k, m)| k * m)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One coil with `S = 1` is the single-coil problem: with the single-coil step, the same
/// image (gate included) to rounding.
#[test]
fn one_coil_with_unit_sensitivity_matches_the_single_coil_reconstruction() {
    let (ny, nx, count, side) = (32, 32, 4, 5);
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let filters = random_real::<f64>(&mut rng(11), count * side * side, -0.5, 0.5);
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &filters, count, side, &mut store);
    let mask = block_mask(ny, nx, 16);
    let ones = vec![Complex64::new(1.0, 0.0); shape.len()];
    let mut kspace = coil_kspace(&object(ny, nx), &ones, &mask, 1, ny, nx);
    let noise = random_complex::<f64>(&mut rng(12), shape.len());
    for ((k, n), m) in kspace.iter_mut().zip(&noise).zip(&mask) {
        *k += n * 0.02 * m;
    }
    let maps = random_real::<f64>(&mut rng(13), count * shape.len(), 0.0, 0.05);
    let config = ReconConfig {
        iterations: 20,
        lowpass_weight: 1.0,
        background_gate: Some(8.0),
    };

    let mut complex =
        vec![Complex64::default(); Workspace::<f64>::complex_len(shape, count, fft.scratch_len())];
    let mut real = vec![0.0; Workspace::<f64>::real_len(shape)];
    let mut ws = Workspace::new(shape, count, fft.scratch_len(), &mut complex, &mut real).unwrap();
    let mut single = vec![Complex64::default(); shape.len()];
    let single_report = reconstruct(
        &plan,
        &kspace,
        &mask,
        Lambda::Maps(&maps),
        &config,
        &mut ws,
        &mut single,
    )
    .unwrap();

    let mut complex = vec![
        Complex64::default();
        CoilWorkspace::<f64>::complex_len(shape, count, 1, fft.scratch_len())
    ];
    let mut real = vec![0.0; CoilWorkspace::<f64>::real_len(shape, 1)];
    let mut ws =
        CoilWorkspace::new(shape, count, 1, fft.scratch_len(), &mut complex, &mut real).unwrap();
    let mut prepared = ws.prepare(&plan, &kspace, &mask, &ones, 1.0).unwrap();
    // The power estimate is within the margin of the exact single-coil value; use the exact one.
    let estimate = prepared.lipschitz();
    assert!(estimate >= single_report.lipschitz * (1.0 - 1e-9));
    assert!(estimate <= single_report.lipschitz * LIPSCHITZ_MARGIN * (1.0 + 1e-9));
    prepared.set_lipschitz(single_report.lipschitz);
    assert!((prepared.scale() - single_report.scale).abs() <= 1e-12 * single_report.scale);
    let mut multi = vec![Complex64::default(); shape.len()];
    prepared
        .solve(Lambda::Maps(&maps), config.iterations, &mut multi)
        .unwrap();
    prepared.gate_background(8.0, &mut multi).unwrap();
    let error = relative_error(&multi, &single);
    assert!(
        error < 1e-10,
        "one coil vs single-coil: relative error {error:e}"
    );
    // Features: |x0| and the first gradient blocks are the single coil's.
    let mut complex =
        vec![Complex64::default(); Workspace::<f64>::complex_len(shape, count, fft.scratch_len())];
    let mut real = vec![0.0; Workspace::<f64>::real_len(shape)];
    let mut ws = Workspace::new(shape, count, fft.scratch_len(), &mut complex, &mut real).unwrap();
    let mut single_prepared = ws.prepare(&plan, &kspace, &mask, 1.0).unwrap();
    let (mut a, mut b) = (vec![0.0; shape.len()], vec![0.0; shape.len()]);
    prepared.zero_filled_abs(&mut a).unwrap();
    single_prepared.zero_filled_abs(&mut b).unwrap();
    assert!(a
        .iter()
        .zip(&b)
        .all(|(a, b)| (a - b).abs() <= 1e-10 * b.abs().max(1.0)));
    for k in 0..count {
        prepared.gradient_abs(k, &mut a).unwrap();
        single_prepared.gradient_abs(k, &mut b).unwrap();
        assert!(
            a.iter()
                .zip(&b)
                .all(|(a, b)| (a - b).abs() <= 1e-10 * b.abs().max(1.0)),
            "filter {k}"
        );
    }
    assert!(
        (prepared.noise_variance() - single_prepared.noise_variance()).abs()
            <= 1e-12 * single_prepared.noise_variance()
    );
}

/// With 4 coils, rows undersampled by 3 (plus a centre), no noise and no sparsity, the solve
/// converges to the SENSE solution: the object itself, far closer than the aliased
/// coil-combined zero-filled image.
#[test]
fn four_coils_unfold_threefold_undersampling() {
    let (ny, nx, count, side, coils) = (32, 32, 3, 3, 4);
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    // A dictionary that can represent any image: a delta filter and two differences.
    let mut filters = vec![0.0; count * side * side];
    filters[4] = 1.0;
    filters[9 + 4] = 0.5;
    filters[9 + 5] = -0.5;
    filters[18 + 4] = 0.5;
    filters[18 + 7] = -0.5;
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &filters, count, side, &mut store);
    let maps = smooth_maps(coils, ny, nx);
    let truth = object(ny, nx);
    let mask = row_mask(ny, nx, 3, 2);
    let kspace = coil_kspace(&truth, &maps, &mask, coils, ny, nx);
    let masks: Vec<f64> = (0..coils).flat_map(|_| mask.iter().copied()).collect();
    let mut complex = vec![
        Complex64::default();
        CoilWorkspace::<f64>::complex_len(shape, count, coils, fft.scratch_len())
    ];
    let mut real = vec![0.0; CoilWorkspace::<f64>::real_len(shape, coils)];
    let mut ws = CoilWorkspace::new(
        shape,
        count,
        coils,
        fft.scratch_len(),
        &mut complex,
        &mut real,
    )
    .unwrap();
    let mut image = vec![Complex64::default(); shape.len()];
    let config = ReconConfig {
        iterations: 400,
        lowpass_weight: 1.0,
        background_gate: None,
    };
    reconstruct_coils(
        &plan,
        &kspace,
        &masks,
        &maps,
        Lambda::Scalar(0.0),
        &config,
        &mut ws,
        &mut image,
    )
    .unwrap();
    let error = relative_error(&image, &truth);
    // Zero-filled SENSE combination for comparison (aliased).
    let mut zero_filled = vec![Complex64::default(); shape.len()];
    for c in 0..coils {
        let coil: Vec<Complex64> = kspace[c * shape.len()..(c + 1) * shape.len()].to_vec();
        let back = shift_half(
            &naive_dft2(&shift_half(&coil, ny, nx), ny, nx, true),
            ny,
            nx,
        );
        for i in 0..shape.len() {
            zero_filled[i] +=
                maps[c * shape.len() + i].conj() * back[i] / (shape.len() as f64).sqrt();
        }
    }
    let aliased = relative_error(&zero_filled, &truth);
    eprintln!("SENSE unfolding: relative error {error:.5}, zero-filled {aliased:.4}");
    assert!(
        error < 0.01,
        "SENSE unfolding: relative error {error:.4} (zero-filled {aliased:.4})"
    );
    assert!(
        aliased > 0.2,
        "the mask should alias: zero-filled error {aliased:.4}"
    );
}

type WorkerStorage = (Vec<Complex<f32>>, Vec<Complex<f32>>);
type Solve<'a> = &'a dyn Fn(
    &mut sparsemap_core::coils::CoilPrepared<'_, '_, '_, f32, RustFft<f32>>,
    &mut [Complex<f32>],
);

/// Coils and filter chunks on any executor give the same bits.
#[test]
fn threads_do_not_change_the_image() {
    let (ny, nx, count, side, coils) = (32, 16, 9, 3, 5);
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let filters = random_real::<f32>(&mut rng(21), count * side * side, -0.5, 0.5);
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &filters, count, side, &mut store);
    let maps = cast::<f32>(&smooth_maps(coils, ny, nx));
    let mask = row_mask(ny, nx, 3, 6);
    let kspace: Vec<Complex<f32>> = cast(&coil_kspace(
        &object(ny, nx),
        &smooth_maps(coils, ny, nx),
        &mask,
        coils,
        ny,
        nx,
    ));
    let masks: Vec<f32> = (0..coils)
        .flat_map(|_| mask.iter().map(|&m| m as f32))
        .collect();
    let run = |executor: Solve<'_>| {
        let mut complex =
            vec![
                Complex::default();
                CoilWorkspace::<f32>::complex_len(shape, count, coils, fft.scratch_len())
            ];
        let mut real = vec![0.0f32; CoilWorkspace::<f32>::real_len(shape, coils)];
        let mut ws = CoilWorkspace::new(
            shape,
            count,
            coils,
            fft.scratch_len(),
            &mut complex,
            &mut real,
        )
        .unwrap();
        let mut prepared = ws.prepare(&plan, &kspace, &masks, &maps, 1.0).unwrap();
        let mut image = vec![Complex::default(); shape.len()];
        executor(&mut prepared, &mut image);
        image
    };
    let serial = run(&|p, image| {
        p.solve(Lambda::Scalar(0.01), 12, image).unwrap();
    });
    let reversed = run(&|p, image| {
        let scratch_len = MaskedSynthesis::required_scratch(&plan);
        let mut storage: Vec<WorkerStorage> = (0..3)
            .map(|_| {
                (
                    vec![Complex::default(); shape.len()],
                    vec![Complex::default(); scratch_len],
                )
            })
            .collect();
        let mut workers: Vec<WorkerBuffers<'_, f32>> = storage
            .iter_mut()
            .map(|(b, s)| WorkerBuffers {
                block: b,
                scratch: s,
            })
            .collect();
        p.solve_with(Lambda::Scalar(0.01), 12, image, &mut workers, &Reversed)
            .unwrap();
    });
    assert!(serial
        .iter()
        .zip(&reversed)
        .all(|(a, b)| a.re.to_bits() == b.re.to_bits() && a.im.to_bits() == b.im.to_bits()));
    assert!(serial.iter().any(|v| v.norm() > 0.0));
}

#[test]
fn bad_input_is_an_error_before_any_work() {
    let (ny, nx, count, side, coils) = (16, 16, 2, 3, 2);
    let shape = Shape::new(ny, nx).unwrap();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let filters = random_real::<f32>(&mut rng(1), count * side * side, -0.5, 0.5);
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &filters, count, side, &mut store);
    let n = shape.len();
    let good_k = random_complex::<f32>(&mut rng(2), coils * n);
    let good_m = vec![1.0f32; coils * n];
    let good_s = cast::<f32>(&smooth_maps(coils, ny, nx));
    let mut complex = vec![
        Complex::default();
        CoilWorkspace::<f32>::complex_len(shape, count, coils, fft.scratch_len())
    ];
    let mut real = vec![0.0f32; CoilWorkspace::<f32>::real_len(shape, coils)];
    for bad in [0, 33] {
        assert!(matches!(
            CoilWorkspace::<f32>::new(
                shape,
                count,
                bad,
                fft.scratch_len(),
                &mut complex,
                &mut real
            ),
            Err(Error::LengthMismatch { .. }) | Err(Error::BufferTooSmall { .. })
        ));
    }
    let mut ws = CoilWorkspace::new(
        shape,
        count,
        coils,
        fft.scratch_len(),
        &mut complex,
        &mut real,
    )
    .unwrap();
    assert!(matches!(
        ws.prepare(&plan, &good_k[..n], &good_m, &good_s, 1.0),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        ws.prepare(&plan, &good_k, &good_m[..n], &good_s, 1.0),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        ws.prepare(&plan, &good_k, &good_m, &good_s[..n], 1.0),
        Err(Error::LengthMismatch { .. })
    ));
    let mut nan_s = good_s.clone();
    nan_s[5].re = f32::NAN;
    assert!(matches!(
        ws.prepare(&plan, &good_k, &good_m, &nan_s, 1.0),
        Err(Error::NonFinite { .. })
    ));
    let mut inf_k = good_k.clone();
    inf_k[n + 1].im = f32::INFINITY;
    assert!(matches!(
        ws.prepare(&plan, &inf_k, &good_m, &good_s, 1.0),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        ws.prepare(&plan, &good_k, &good_m, &good_s, -1.0),
        Err(Error::NegativeLowpassWeight)
    ));
    let zero_k = vec![Complex::default(); coils * n];
    assert!(matches!(
        ws.prepare(&plan, &zero_k, &good_m, &good_s, 1.0),
        Err(Error::NothingMeasured)
    ));
    let zero_s = vec![Complex::default(); coils * n];
    assert!(matches!(
        ws.prepare(&plan, &good_k, &good_m, &zero_s, 1.0),
        Err(Error::NothingMeasured)
    ));
    let mut prepared = ws.prepare(&plan, &good_k, &good_m, &good_s, 1.0).unwrap();
    let mut image = vec![Complex::default(); n];
    assert!(matches!(
        prepared.solve(Lambda::Scalar(-1.0), 3, &mut image),
        Err(Error::NegativeLambda)
    ));
    assert!(matches!(
        prepared.solve(Lambda::Scalar(0.1), 3, &mut image[..n - 1]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        prepared.gate_background(0.0, &mut image),
        Err(Error::NonPositiveBackgroundGate)
    ));
}
