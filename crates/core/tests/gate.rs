//! The background gate of DESIGN §3.7 item 7: the noise estimate from the outer k-space, the
//! gate's effect on a noise-only background and on the object, the noise-free case and bad
//! thresholds. (Agreement with the float64 reference is in tests/tests/reference_agreement.rs.)

mod common;

use common::*;
use num_complex::Complex;
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan};
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::fista::Lambda;
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::recon::{reconstruct, ReconConfig, Workspace};
use sparsemap_core::{Error, Shape};

const SIDE: usize = 128;
const BLOCK: usize = 64;
const FILTERS: usize = 4;
const DISC_RADIUS: f64 = 30.0;
/// Width of the disc's logistic edge (pixels): a smooth edge keeps its spectrum out of the
/// outer k-space, where the noise is estimated.
const EDGE: f64 = 2.0;

/// A disc of ones (smooth edge) on a zero background, its centred k-space (naive DFT, the oracle of
/// `common`), sampled on the central `BLOCK²`, plus complex noise of `E|n|² = sigma²`.
fn disc_kspace(sigma: f64, seed: u64) -> (Vec<Complex<f64>>, Vec<f64>) {
    let image: Vec<Complex<f64>> = (0..SIDE * SIDE)
        .map(|i| Complex::new(1.0 / (1.0 + ((radius(i) - DISC_RADIUS) / EDGE).exp()), 0.0))
        .collect();
    // the centred transform (tested against its naive definition in tests/operators.rs)
    let fft = Fft2::new(RustFft::<f64>::new(Shape::new(SIDE, SIDE).unwrap()));
    let fourier = CentredFourier { fft: &fft };
    let mut clean = vec![Complex::default(); SIDE * SIDE];
    let mut scratch = vec![Complex::default(); LinearOperator::<f64>::scratch_len(&fourier)];
    fourier.apply_block_add(&image, 0, &mut clean, &mut scratch);
    // complex Gaussian noise (Box-Muller), the estimator's model: E|n|^2 = 1
    let uniform: Vec<f64> = random_real(&mut rng(seed), 2 * SIDE * SIDE, f64::EPSILON, 1.0);
    let noise: Vec<Complex<f64>> = uniform
        .chunks_exact(2)
        .map(|u| Complex::from_polar((-u[0].ln()).sqrt(), std::f64::consts::TAU * u[1]))
        .collect();
    let gain = sigma;
    let mask = block_mask();
    let kspace = clean
        .iter()
        .zip(&noise)
        .zip(&mask)
        .map(|((c, n), &m)| {
            if m > 0.0 {
                c + n * gain
            } else {
                Complex::default()
            }
        })
        .collect();
    (kspace, mask)
}

fn block_mask() -> Vec<f64> {
    let lo = (SIDE - BLOCK) / 2;
    (0..SIDE * SIDE)
        .map(|i| {
            let (y, x) = (i / SIDE, i % SIDE);
            if (lo..lo + BLOCK).contains(&y) && (lo..lo + BLOCK).contains(&x) {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

fn filters() -> Vec<f64> {
    random_real(&mut rng(5), FILTERS * 9, -1.0, 1.0)
}

/// `reconstruct` with `config` (10 iterations, scalar lambda 0.01): the image, and the noise
/// variance of the prepared slice (`Prepared::noise_variance`) in the k-space's units.
fn run(
    kspace: &[Complex<f64>],
    mask: &[f64],
    config: ReconConfig<f64>,
) -> Result<(Vec<Complex<f64>>, f64), Error> {
    let shape = Shape::new(SIDE, SIDE).unwrap();
    let n = shape.len();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let filters = filters();
    let dictionary = Dictionary::new(&filters, FILTERS, 3).unwrap();
    let mut responses = vec![
        Complex::default();
        DictionaryPlan::<f64, RustFft<f64>>::responses_len(shape, FILTERS)
    ];
    let mut power = vec![0.0; n];
    let mut scratch =
        vec![Complex::default(); DictionaryPlan::<f64, RustFft<f64>>::scratch_len(&fft)];
    let plan =
        DictionaryPlan::new(&fft, dictionary, &mut responses, &mut power, &mut scratch).unwrap();
    let mut complex =
        vec![Complex::default(); Workspace::<f64>::complex_len(shape, FILTERS, fft.scratch_len())];
    let mut real = vec![0.0; Workspace::<f64>::real_len(shape)];
    let mut workspace =
        Workspace::new(shape, FILTERS, fft.scratch_len(), &mut complex, &mut real).unwrap();
    let mut image = vec![Complex::default(); n];
    let report = reconstruct(
        &plan,
        kspace,
        mask,
        Lambda::Scalar(0.01),
        &config,
        &mut workspace,
        &mut image,
    )?;
    let mut prepared = workspace.prepare(&plan, kspace, mask, config.lowpass_weight)?;
    // noise_variance is in the units of the scaled problem: back to the k-space's
    let variance = prepared.noise_variance() / (report.scale * report.scale);
    Ok((image, variance))
}

/// [`run`] with the background gate `gate`.
fn solve(kspace: &[Complex<f64>], mask: &[f64], gate: Option<f64>) -> (Vec<Complex<f64>>, f64) {
    let config = ReconConfig {
        iterations: 10,
        background_gate: gate,
        ..ReconConfig::default()
    };
    run(kspace, mask, config).unwrap()
}

fn radius(i: usize) -> f64 {
    let (y, x) = ((i / SIDE) as f64 - 64.0, (i % SIDE) as f64 - 64.0);
    (y * y + x * x).sqrt()
}

#[test]
fn noise_variance_estimates_sigma_from_the_outer_kspace() {
    for sigma in [0.05, 0.2] {
        let (kspace, mask) = disc_kspace(sigma, 11);
        let (_, variance) = solve(&kspace, &mask, None);
        // ~410 outer samples: the median's spread is ~5 %; the disc leaves some signal there
        let ratio = variance / (sigma * sigma);
        assert!(
            (0.85..1.3).contains(&ratio),
            "sigma {sigma}: estimated/true variance {ratio}"
        );
    }
}

#[test]
fn gate_clears_a_noise_only_background_and_keeps_the_object() {
    // zero-filled image noise std 0.1 (sigma sqrt(sampled / N)) on a disc of ones
    let (kspace, mask) = disc_kspace(0.2, 12);
    let (plain, _) = solve(&kspace, &mask, None);
    let (gated, _) = solve(&kspace, &mask, Some(8.0));
    let mean_abs = |img: &[Complex<f64>], keep: &dyn Fn(f64) -> bool| {
        let values: Vec<f64> = (0..img.len())
            .filter(|&i| keep(radius(i)))
            .map(|i| img[i].norm())
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let far = |r: f64| r > DISC_RADIUS + 15.0;
    let (before, after) = (mean_abs(&plain, &far), mean_abs(&gated, &far));
    assert!(
        after < 0.1 * before,
        "background |x| {before} -> {after}: the gate left the noise"
    );
    // well inside the disc the gate is 1: the image is untouched
    for i in (0..SIDE * SIDE).filter(|&i| radius(i) < DISC_RADIUS - 6.0) {
        assert_eq!(gated[i], plain[i], "pixel {i} inside the object changed");
    }
}

#[test]
fn without_noise_in_the_outer_kspace_the_gate_changes_nothing() {
    // Only the innermost frequencies carry signal: the outer sampled samples are exactly 0,
    // so the estimated noise is 0 and the gate is off.
    let (mut kspace, mask) = disc_kspace(0.0, 13);
    for (i, v) in kspace.iter_mut().enumerate() {
        if radius(i) > 20.0 {
            *v = Complex::default();
        }
    }
    let (plain, variance) = solve(&kspace, &mask, None);
    let (gated, _) = solve(&kspace, &mask, Some(8.0));
    assert_eq!(variance, 0.0);
    assert_eq!(plain, gated);
}

#[test]
fn bad_thresholds_are_errors() {
    let (kspace, mask) = disc_kspace(1.0, 14);
    for kappa in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let config = ReconConfig {
            background_gate: Some(kappa),
            ..ReconConfig::default()
        };
        match run(&kspace, &mask, config) {
            Err(Error::NonPositiveBackgroundGate) | Err(Error::NonFinite { .. }) => {}
            other => panic!(
                "kappa {kappa}: expected an error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}
