//! Coil sensitivities, prewhitening and compression (`sparsemap_edge::coils`) against
//! synthetic ground truth: analytic coil maps on the Colin27 example image, noise with a
//! known covariance, low-rank multi-coil data.

use std::fs::File;
use std::path::Path;

use ndarray::Array2;
use ndarray_npy::ReadNpyExt;
use num_complex::{Complex32, Complex64};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;
use sparsemap_edge::coils::{
    calibration_region, coil_compression, estimate_sensitivities, noise_whitening,
    SensitivityOptions,
};

const COILS: usize = 8;

fn c64(v: Complex32) -> Complex64 {
    Complex64::new(v.re as f64, v.im as f64)
}

/// Complex standard normal, `E|z|^2 = 1`.
fn cnormal(rng: &mut ChaCha8Rng) -> Complex64 {
    let re: f64 = rng.sample(StandardNormal);
    let im: f64 = rng.sample(StandardNormal);
    Complex64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
}

/// The Colin27 example image (256x256, complex, smooth phase).
fn colin27() -> Array2<Complex32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/colin27/target.npy");
    Array2::<Complex32>::read_npy(File::open(path).unwrap()).unwrap()
}

/// 8 analytic coil maps on `n x n`: Gaussian magnitude (sigma = 0.35 n) centred on points
/// 0.55 n from the centre around a circle, a per-coil constant phase plus a slowly varying
/// linear phase; normalised so that `sum_c |S_c|^2 = 1` at every pixel. `[C][N]`.
fn true_maps(n: usize) -> Vec<Complex64> {
    let nf = n as f64;
    let centre = nf / 2.0;
    let mut maps = vec![Complex64::default(); COILS * n * n];
    for c in 0..COILS {
        let angle = 2.0 * std::f64::consts::PI * c as f64 / COILS as f64;
        let (py, px) = (
            centre + 0.55 * nf * angle.sin(),
            centre + 0.55 * nf * angle.cos(),
        );
        let sigma = 0.35 * nf;
        for y in 0..n {
            for x in 0..n {
                let (dy, dx) = (y as f64 - py, x as f64 - px);
                let magnitude = (-(dy * dy + dx * dx) / (2.0 * sigma * sigma)).exp();
                let phase = 0.7 * c as f64
                    + 1.5 * ((x as f64 - centre) / nf) * angle.cos()
                    + 1.0 * ((y as f64 - centre) / nf) * (angle + 0.5).sin();
                maps[c * n * n + y * n + x] = Complex64::from_polar(magnitude, phase);
            }
        }
    }
    for p in 0..n * n {
        let norm: f64 = (0..COILS)
            .map(|c| maps[c * n * n + p].norm_sqr())
            .sum::<f64>()
            .sqrt();
        for c in 0..COILS {
            maps[c * n * n + p] /= norm;
        }
    }
    maps
}

/// Full k-space `F(S_c x)` of every coil, plus complex noise of standard deviation
/// `noise * rms(F(S_c x))` per coil (the example's relative noise convention).
fn multicoil_kspace(
    image: &Array2<Complex32>,
    maps: &[Complex64],
    noise: f64,
    seed: u64,
) -> (Shape, Vec<Complex32>) {
    let (n_y, n_x) = image.dim();
    let shape = Shape::new(n_y, n_x).unwrap();
    let n = shape.len();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let op = CentredFourier { fft: &fft };
    let mut scratch = vec![Complex64::default(); LinearOperator::<f64>::scratch_len(&op)];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<Complex64> = image.iter().map(|&v| c64(v)).collect();
    let mut kspace = Vec::with_capacity(COILS * n);
    let mut coil_image = vec![Complex64::default(); n];
    let mut k = vec![Complex64::default(); n];
    for c in 0..COILS {
        for p in 0..n {
            coil_image[p] = maps[c * n + p] * x[p];
        }
        op.apply(&coil_image, &mut k, &mut scratch);
        let rms = (k.iter().map(|v| v.norm_sqr()).sum::<f64>() / n as f64).sqrt();
        for v in &k {
            let value = v + cnormal(&mut rng) * (noise * rms);
            kspace.push(Complex32::new(value.re as f32, value.im as f32));
        }
    }
    (shape, kspace)
}

/// The central `size x size` block on every coil, `[C][N]`.
fn block_masks(shape: Shape, size: usize) -> Vec<f32> {
    let (n_y, n_x) = (shape.n_y(), shape.n_x());
    let mut mask = vec![0.0f32; shape.len()];
    for y in n_y / 2 - size / 2..n_y / 2 + size / 2 {
        for x in n_x / 2 - size / 2..n_x / 2 + size / 2 {
            mask[y * n_x + x] = 1.0;
        }
    }
    mask.repeat(COILS)
}

/// Whole rows: `centre` rows around `n_y/2` and every 4th row elsewhere (a variable-density
/// phase-encode pattern with a deterministic outer part), `[C][N]`.
fn vd_masks(shape: Shape, centre: usize) -> Vec<f32> {
    let (n_y, n_x) = (shape.n_y(), shape.n_x());
    let lo = n_y / 2 - centre / 2;
    let mut mask = vec![0.0f32; shape.len()];
    for y in 0..n_y {
        let inner = (lo..lo + centre).contains(&y);
        // Outer rows are 4 apart and skip the two rows next to the centre block.
        let outer = y % 4 == 1 && (y + 2 < lo || y > lo + centre + 1);
        if inner || outer {
            mask[y * n_x..(y + 1) * n_x].fill(1.0);
        }
    }
    mask.repeat(COILS)
}

fn apply_masks(kspace: &mut [Complex32], masks: &[f32]) {
    for (k, &m) in kspace.iter_mut().zip(masks) {
        if m == 0.0 {
            *k = Complex32::default();
        }
    }
}

struct MapQuality {
    /// Mean over the object of `|<S_est, S_true>| / (|S_est| |S_true|)` (0 where S_est = 0).
    correlation: f64,
    /// 5th percentile of the same over the object.
    correlation_p5: f64,
    /// Largest `|sum_c |S_est|^2 - 1|` on the support.
    norm_error: f64,
    /// Fraction of the object inside the support.
    coverage: f64,
    /// Fraction of the grid in the support.
    support_fraction: f64,
}

fn assess(
    image: &Array2<Complex32>,
    truth: &[Complex64],
    kspace: &[Complex32],
    masks: &[f32],
) -> MapQuality {
    let (n_y, n_x) = image.dim();
    let shape = Shape::new(n_y, n_x).unwrap();
    let n = shape.len();
    let estimate =
        estimate_sensitivities(kspace, masks, COILS, shape, &SensitivityOptions::default())
            .unwrap();
    assert_eq!(estimate.maps.len(), COILS * n);
    assert_eq!(estimate.support.len(), n);
    let peak = image.iter().map(|v| v.norm()).fold(0.0f32, f32::max);
    // The object: |x| above 5 % of its maximum (the Colin27 background is exactly zero).
    let object: Vec<bool> = image.iter().map(|v| v.norm() > 0.05 * peak).collect();
    let mut correlations = Vec::new();
    let mut norm_error = 0.0f64;
    let mut covered = 0usize;
    for p in 0..n {
        let energy: f64 = (0..COILS)
            .map(|c| c64(estimate.maps[c * n + p]).norm_sqr())
            .sum();
        if estimate.support[p] {
            norm_error = norm_error.max((energy - 1.0).abs());
        } else {
            assert_eq!(energy, 0.0, "map not zero off the support at {p}");
        }
        if object[p] {
            covered += usize::from(estimate.support[p]);
            let inner: Complex64 = (0..COILS)
                .map(|c| c64(estimate.maps[c * n + p]) * truth[c * n + p].conj())
                .sum();
            let truth_norm: f64 = (0..COILS)
                .map(|c| truth[c * n + p].norm_sqr())
                .sum::<f64>()
                .sqrt();
            let corr = if energy > 0.0 {
                inner.norm() / (energy.sqrt() * truth_norm)
            } else {
                0.0
            };
            correlations.push(corr);
        }
    }
    let object_count = correlations.len();
    let correlation = correlations.iter().sum::<f64>() / object_count as f64;
    correlations.sort_by(f64::total_cmp);
    MapQuality {
        correlation,
        correlation_p5: correlations[object_count / 20],
        norm_error,
        coverage: covered as f64 / object_count as f64,
        support_fraction: estimate.support.iter().filter(|&&s| s).count() as f64 / n as f64,
    }
}

fn check_maps(label: &str, noise: f64, masks_of: fn(Shape) -> Vec<f32>) {
    let image = colin27();
    let truth = true_maps(image.dim().0);
    let (shape, mut kspace) = multicoil_kspace(&image, &truth, noise, 7);
    let masks = masks_of(shape);
    apply_masks(&mut kspace, &masks);
    let q = assess(&image, &truth, &kspace, &masks);
    eprintln!(
        "{label} noise {noise}: mean correlation {:.5}, 5th percentile {:.5}, max |sum|S|^2 - 1| {:.2e}, \
         coverage {:.4}, support {:.3} of the grid",
        q.correlation, q.correlation_p5, q.norm_error, q.coverage, q.support_fraction
    );
    assert!(
        q.correlation > 0.98,
        "{label}: mean correlation {}",
        q.correlation
    );
    assert!(
        q.norm_error < 1e-5,
        "{label}: normalisation error {}",
        q.norm_error
    );
    assert!(
        q.coverage >= 0.98,
        "{label}: support covers {} of the object",
        q.coverage
    );
    // The support is the head, not the whole grid (the head is ~45 % of it).
    assert!(
        q.support_fraction < 0.75,
        "{label}: support is {} of the grid",
        q.support_fraction
    );
}

#[test]
fn sensitivities_central_block() {
    check_maps("block 128", 0.0, |s| block_masks(s, 128));
}

#[test]
fn sensitivities_central_block_noisy() {
    check_maps("block 128", 0.15, |s| block_masks(s, 128));
}

#[test]
fn sensitivities_variable_density_rows_noisy() {
    check_maps("vd rows, 24 centre", 0.15, |s| vd_masks(s, 24));
}

#[test]
fn calibration_region_of_block_and_vd_masks() {
    let shape = Shape::new(256, 256).unwrap();
    let block = block_masks(shape, 128);
    let region = calibration_region(&block, COILS, shape, 32).unwrap();
    assert_eq!((region.ky, region.kx), (112..144, 112..144));
    // Uncapped: exactly the block.
    let region = calibration_region(&block, COILS, shape, 512).unwrap();
    assert_eq!((region.ky, region.kx), (64..192, 64..192));
    // VD rows: 24 centre rows (116..140), full kx capped at 32.
    let vd = vd_masks(shape, 24);
    let region = calibration_region(&vd, COILS, shape, 32).unwrap();
    assert_eq!((region.ky, region.kx), (116..140, 112..144));
    let region = calibration_region(&vd, COILS, shape, 512).unwrap();
    assert_eq!((region.ky, region.kx), (116..140, 0..256));
    // One coil missing the DC row: the centre is not sampled in every coil.
    let mut holed = vd.clone();
    holed[3 * shape.len() + 128 * 256..3 * shape.len() + 129 * 256].fill(0.0);
    assert!(calibration_region(&holed, COILS, shape, 32).is_none());
    // Centre sampled but only 4 rows wide: smaller than the minimum side.
    let narrow = vd_masks(shape, 4);
    assert!(calibration_region(&narrow, COILS, shape, 32).is_none());
    // And estimate_sensitivities says so.
    let kspace = vec![Complex32::new(1.0, 0.0); COILS * shape.len()];
    let err = estimate_sensitivities(
        &kspace,
        &holed,
        COILS,
        shape,
        &SensitivityOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no calibration region"), "{err}");
}

/// Lower-triangular `L` with a known covariance `Psi = L L^H`, coupling neighbouring coils.
fn noise_factor(coils: usize) -> Vec<Complex64> {
    let mut l = vec![Complex64::default(); coils * coils];
    for r in 0..coils {
        l[r * coils + r] = Complex64::new(1.0 + 0.2 * r as f64, 0.0);
        for c in 0..r {
            let coupling = 0.6 / (1.0 + (r - c) as f64);
            l[r * coils + c] = Complex64::from_polar(coupling, 0.3 * (r + 2 * c) as f64);
        }
    }
    l
}

fn correlated_noise(l: &[Complex64], coils: usize, m: usize, seed: u64) -> Vec<Complex32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![Complex32::default(); coils * m];
    let mut z = vec![Complex64::default(); coils];
    for j in 0..m {
        for v in z.iter_mut() {
            *v = cnormal(&mut rng);
        }
        for r in 0..coils {
            let s: Complex64 = (0..coils).map(|c| l[r * coils + c] * z[c]).sum();
            out[r * m + j] = Complex32::new(s.re as f32, s.im as f32);
        }
    }
    out
}

fn sample_covariance(data: &[Complex32], coils: usize) -> Vec<Complex64> {
    let m = data.len() / coils;
    let mut psi = vec![Complex64::default(); coils * coils];
    for c in 0..coils {
        for d in 0..coils {
            psi[c * coils + d] = (0..m)
                .map(|j| c64(data[c * m + j]) * c64(data[d * m + j]).conj())
                .sum::<Complex64>()
                / m as f64;
        }
    }
    psi
}

fn relative_frobenius(a: &[Complex64], b: &[Complex64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).norm_sqr()).sum();
    let norm: f64 = b.iter().map(|y| y.norm_sqr()).sum();
    (diff / norm).sqrt()
}

#[test]
fn whitening_recovers_a_known_covariance() {
    let coils = 6;
    let l = noise_factor(coils);
    let mut truth = vec![Complex64::default(); coils * coils];
    for r in 0..coils {
        for c in 0..coils {
            truth[r * coils + c] = (0..coils)
                .map(|k| l[r * coils + k] * l[c * coils + k].conj())
                .sum();
        }
    }
    let noise = correlated_noise(&l, coils, 20_000, 1);
    let whitening = noise_whitening(&noise, coils).unwrap();
    let psi_error = relative_frobenius(&whitening.covariance, &truth);
    // Fresh noise with the same covariance, whitened with the estimated W.
    let mut fresh = correlated_noise(&l, coils, 20_000, 2);
    whitening.apply(&mut fresh).unwrap();
    let whitened = sample_covariance(&fresh, coils);
    let identity: Vec<Complex64> = (0..coils * coils)
        .map(|i| Complex64::new(if i % (coils + 1) == 0 { 1.0 } else { 0.0 }, 0.0))
        .collect();
    let max_dev = whitened
        .iter()
        .zip(&identity)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0, f64::max);
    eprintln!(
        "whitening: relative Frobenius error of Psi {psi_error:.4}, \
         whitened fresh noise max |cov - I| {max_dev:.4}"
    );
    assert!(psi_error < 0.03, "Psi error {psi_error}");
    assert!(
        max_dev < 0.04,
        "whitened covariance deviates from I by {max_dev}"
    );
    // The estimated W whitens the true covariance too: W Psi W^H ~ I.
    let w: Vec<Complex64> = whitening.matrix.iter().map(|&v| c64(v)).collect();
    let mut max_true = 0.0f64;
    for r in 0..coils {
        for c in 0..coils {
            let mut s = Complex64::default();
            for a in 0..coils {
                for b in 0..coils {
                    s += w[r * coils + a] * truth[a * coils + b] * w[c * coils + b].conj();
                }
            }
            max_true = max_true.max((s - identity[r * coils + c]).norm());
        }
    }
    assert!(
        max_true < 0.04,
        "W Psi_true W^H deviates from I by {max_true}"
    );
}

#[test]
fn whitening_errors() {
    let coils = 4;
    let l = noise_factor(coils);
    let noise = correlated_noise(&l, coils, 100, 3);
    // Too few samples: M = 7 < 2 C.
    let short: Vec<Complex32> = (0..coils)
        .flat_map(|c| noise[c * 100..c * 100 + 7].to_vec())
        .collect();
    let err = noise_whitening(&short, coils).unwrap_err();
    assert!(err.to_string().contains("too few noise samples"), "{err}");
    assert!(noise_whitening(&noise[..8 * coils], coils).is_ok());
    // Not a multiple of the coils, zero coils.
    assert!(noise_whitening(&noise[..401 - 2], coils).is_err());
    assert!(noise_whitening(&noise, 0).is_err());
    // NaN, infinity.
    let mut bad = noise.clone();
    bad[123] = Complex32::new(f32::NAN, 0.0);
    assert!(noise_whitening(&bad, coils)
        .unwrap_err()
        .to_string()
        .contains("NaN"));
    bad[123] = Complex32::new(0.0, f32::INFINITY);
    assert!(noise_whitening(&bad, coils).is_err());
    // A duplicated coil: singular.
    let mut dup = noise.clone();
    let (first, rest) = dup.split_at_mut(100);
    rest[..100].copy_from_slice(first);
    let err = noise_whitening(&dup, coils).unwrap_err();
    assert!(err.to_string().contains("singular"), "{err}");
    // All zero.
    assert!(noise_whitening(&vec![Complex32::default(); 400], coils).is_err());
    // Apply with a length that is not a multiple of the coils.
    let w = noise_whitening(&noise, coils).unwrap();
    assert!(w.apply(&mut vec![Complex32::default(); 7]).is_err());
}

/// `[C][N]` k-space of rank `rank` across coils (random mixing of `rank` random sources),
/// on the central 64x64 block of a 128x128 grid; returns (shape, kspace, masks).
fn low_rank_kspace(coils: usize, rank: usize, seed: u64) -> (Shape, Vec<Complex32>, Vec<f32>) {
    let shape = Shape::new(128, 128).unwrap();
    let n = shape.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sources: Vec<Complex64> = (0..rank * n).map(|_| cnormal(&mut rng)).collect();
    let mixing: Vec<Complex64> = (0..coils * rank).map(|_| cnormal(&mut rng)).collect();
    let mut mask = vec![0.0f32; n];
    for y in 32..96 {
        mask[y * 128 + 32..y * 128 + 96].fill(1.0);
    }
    let masks = mask.repeat(coils);
    let mut kspace = vec![Complex32::default(); coils * n];
    for c in 0..coils {
        for p in 0..n {
            if mask[p] != 0.0 {
                let v: Complex64 = (0..rank)
                    .map(|j| mixing[c * rank + j] * sources[j * n + p])
                    .sum();
                kspace[c * n + p] = Complex32::new(v.re as f32, v.im as f32);
            }
        }
    }
    (shape, kspace, masks)
}

#[test]
fn compression_of_low_rank_data() {
    let (coils, rank) = (8, 3);
    let (shape, kspace, masks) = low_rank_kspace(coils, rank, 11);
    let mut previous = 0.0;
    for v in 1..=coils {
        let cc = coil_compression(&kspace, &masks, coils, shape, v).unwrap();
        assert_eq!(cc.singular_values.len(), coils);
        assert!(cc.singular_values.windows(2).all(|w| w[0] >= w[1]));
        assert!(
            cc.retained_energy >= previous - 1e-12,
            "not monotone at V = {v}"
        );
        assert!((0.0..=1.0).contains(&cc.retained_energy));
        previous = cc.retained_energy;
        if v < rank {
            assert!(
                cc.retained_energy < 0.99,
                "V = {v} < rank keeps {}",
                cc.retained_energy
            );
        }
        if v == rank {
            eprintln!(
                "compression: retained energy at V = rank = {rank}: {:.9}",
                cc.retained_energy
            );
            assert!(cc.retained_energy > 1.0 - 1e-6, "{}", cc.retained_energy);
        }
        // Rows orthonormal.
        for a in 0..v {
            for b in 0..v {
                let dot: Complex64 = (0..coils)
                    .map(|c| c64(cc.matrix[a * coils + c]) * c64(cc.matrix[b * coils + c]).conj())
                    .sum();
                let expected = if a == b { 1.0 } else { 0.0 };
                assert!((dot - expected).norm() < 1e-5, "rows {a},{b}: {dot}");
            }
        }
        let out = cc.apply(&kspace).unwrap();
        assert_eq!(out.len(), v * shape.len());
        let energy = |d: &[Complex32]| d.iter().map(|z| c64(*z).norm_sqr()).sum::<f64>();
        let ratio = energy(&out) / energy(&kspace);
        // The compressed data keep exactly the retained energy.
        assert!(
            (ratio - cc.retained_energy).abs() < 1e-5,
            "V = {v}: {ratio} vs {}",
            cc.retained_energy
        );
        if v == coils {
            assert!((ratio - 1.0).abs() < 1e-5, "V = C is not unitary: {ratio}");
        }
    }
}

#[test]
fn compression_errors() {
    let coils = 4;
    let (shape, kspace, masks) = low_rank_kspace(coils, 2, 12);
    for v in [0, coils + 1] {
        let err = coil_compression(&kspace, &masks, coils, shape, v).unwrap_err();
        assert!(
            err.to_string().contains("virtual coils out of range"),
            "{err}"
        );
    }
    let mut differing = masks.clone();
    differing[2 * shape.len() + 40 * 128 + 40] = 0.0;
    let err = coil_compression(&kspace, &differing, coils, shape, 2).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
    // Different non-zero weights are the same sampling.
    let mut weighted = masks.clone();
    weighted[2 * shape.len() + 40 * 128 + 40] = 0.5;
    assert!(coil_compression(&kspace, &weighted, coils, shape, 2).is_ok());
    assert!(coil_compression(&kspace[1..], &masks, coils, shape, 2).is_err());
    assert!(coil_compression(&kspace, &masks[1..], coils, shape, 2).is_err());
    assert!(coil_compression(&kspace, &masks, 0, shape, 1).is_err());
    let mut nan = kspace.clone();
    nan[5] = Complex32::new(f32::NAN, 1.0);
    assert!(coil_compression(&nan, &masks, coils, shape, 2).is_err());
    assert!(coil_compression(&kspace, &vec![0.0; masks.len()], coils, shape, 2).is_err());
    let cc = coil_compression(&kspace, &masks, coils, shape, 2).unwrap();
    assert!(cc.apply(&kspace[1..]).is_err());
}

#[test]
fn sensitivity_errors() {
    let shape = Shape::new(32, 32).unwrap();
    let n = shape.len();
    let masks = vec![1.0f32; 2 * n];
    let kspace = vec![Complex32::new(1.0, -1.0); 2 * n];
    let ok = SensitivityOptions::default();
    assert!(estimate_sensitivities(&kspace, &masks, 2, shape, &ok).is_ok());
    assert!(estimate_sensitivities(&kspace[1..], &masks, 2, shape, &ok).is_err());
    assert!(estimate_sensitivities(&kspace, &masks[..n], 2, shape, &ok).is_err());
    assert!(estimate_sensitivities(&kspace, &masks, 0, shape, &ok).is_err());
    assert!(estimate_sensitivities(&kspace, &masks, 3, shape, &ok).is_err());
    let mut nan = kspace.clone();
    nan[n + 3] = Complex32::new(0.0, f32::NAN);
    let err = estimate_sensitivities(&nan, &masks, 2, shape, &ok).unwrap_err();
    assert!(err.to_string().contains("coil 1"), "{err}");
    let mut bad_mask = masks.clone();
    bad_mask[7] = f32::INFINITY;
    assert!(estimate_sensitivities(&kspace, &bad_mask, 2, shape, &ok).is_err());
    for options in [
        SensitivityOptions { window: 6, ..ok },
        SensitivityOptions { window: 0, ..ok },
        SensitivityOptions {
            calibration_max: 2,
            ..ok
        },
        SensitivityOptions {
            support_threshold: f32::NAN,
            ..ok
        },
        SensitivityOptions {
            support_threshold: 1.5,
            ..ok
        },
    ] {
        assert!(
            estimate_sensitivities(&kspace, &masks, 2, shape, &options).is_err(),
            "{options:?}"
        );
    }
    let zero = vec![Complex32::default(); 2 * n];
    let err = estimate_sensitivities(&zero, &masks, 2, shape, &ok).unwrap_err();
    assert!(err.to_string().contains("zero"), "{err}");
}

fn value_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -2.0f32..2.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        2 => Just(0.0f32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random lengths, coil counts and values (NaN, inf, zeros included): every entry point
    /// returns (Ok or Err) without panicking, and Err whenever a length is wrong.
    #[test]
    fn never_panics(
        coils in 0usize..4,
        k_len in 0usize..4 * 1024 + 3,
        m_len in 0usize..4 * 1024 + 3,
        virtual_coils in 0usize..5,
        values in proptest::collection::vec(value_strategy(), 64),
        max_side in 0usize..40,
        window in 0usize..12,
    ) {
        let shape = Shape::new(32, 32).unwrap();
        let n = shape.len();
        let kspace: Vec<Complex32> = (0..k_len)
            .map(|i| Complex32::new(values[i % 64], values[(i * 7 + 3) % 64]))
            .collect();
        let masks: Vec<f32> = (0..m_len).map(|i| values[(i * 5 + 1) % 64]).collect();
        let lengths_ok = coils > 0 && k_len == coils * n && m_len == coils * n;
        let options = SensitivityOptions { window, calibration_max: max_side, ..Default::default() };
        let s = estimate_sensitivities(&kspace, &masks, coils, shape, &options);
        let c = coil_compression(&kspace, &masks, coils, shape, virtual_coils);
        let _ = calibration_region(&masks, coils, shape, max_side);
        let w = noise_whitening(&kspace, coils);
        if !lengths_ok {
            prop_assert!(s.is_err());
            prop_assert!(c.is_err());
        }
        if let Ok(s) = s {
            prop_assert_eq!(s.maps.len(), coils * n);
            prop_assert!(s.maps.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
        }
        if let Ok(c) = c {
            let _ = c.apply(&kspace);
        }
        if let Ok(w) = w {
            let mut data = kspace.clone();
            let _ = w.apply(&mut data);
        }
    }
}

/// Time of `estimate_sensitivities` at 256x256 with 8 coils (block 128 mask); run with
/// `cargo test --release -p sparsemap-edge --test coils -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing_estimate_sensitivities_256_8_coils() {
    let image = colin27();
    let truth = true_maps(256);
    let (shape, mut kspace) = multicoil_kspace(&image, &truth, 0.15, 7);
    let masks = block_masks(shape, 128);
    apply_masks(&mut kspace, &masks);
    let options = SensitivityOptions::default();
    let _ = estimate_sensitivities(&kspace, &masks, COILS, shape, &options).unwrap();
    let runs = 10;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        let s = estimate_sensitivities(&kspace, &masks, COILS, shape, &options).unwrap();
        std::hint::black_box(&s);
    }
    let per_run = start.elapsed().as_secs_f64() / runs as f64;
    eprintln!(
        "estimate_sensitivities 256x256, 8 coils: {:.1} ms per call",
        per_run * 1e3
    );
}
