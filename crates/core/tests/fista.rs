//! Soft-thresholding, the FISTA convergence bound on problems with known minimisers, and
//! the percentile used for scaling.

mod common;

use common::*;
use num_complex::{Complex, Complex64};
use proptest::prelude::*;
use sparsemap_core::fista::{
    fista, soft_threshold, CompactMaps, FistaBuffers, Lambda, WorkerBuffers,
};
use sparsemap_core::ops::{LinearOperator, Mask};
use sparsemap_core::recon::percentile;

proptest! {
    /// `p = soft(u, a)` satisfies the optimality condition of `min_p 1/2|p - u|² + a|p|`:
    /// `u - p = a p/|p|` when `p != 0`, and `|u| <= a` when `p = 0`.
    #[test]
    fn soft_threshold_is_the_l1_prox(re in -10.0f64..10.0, im in -10.0f64..10.0, a in 0.0f64..5.0) {
        let u = Complex64::new(re, im);
        let p = soft_threshold(u, a);
        if p == Complex64::default() {
            prop_assert!(u.norm() <= a + 1e-12);
        } else {
            let subgradient = p / p.norm() * a;
            prop_assert!((u - p - subgradient).norm() < 1e-9);
        }
        // And it is the minimiser: no nearby point does better.
        let objective = |q: Complex64| 0.5 * (q - u).norm_sqr() + a * q.norm();
        for d in [Complex64::new(1e-3, 0.0), Complex64::new(0.0, 1e-3), Complex64::new(-1e-3, 1e-3)] {
            prop_assert!(objective(p) <= objective(p + d) + 1e-12);
        }
    }

    #[test]
    fn percentile_matches_sorting_definition(values in prop::collection::vec(-1e3f64..1e3, 1..300), q in 0.0f64..1.0) {
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        let expected = sorted[lo] + (rank - lo as f64) * (sorted[hi] - sorted[lo]);
        let mut scratch = values.clone();
        let got = percentile(&mut scratch, q).unwrap();
        prop_assert!((got - expected).abs() <= 1e-9 * (1.0 + expected.abs()));
    }
}

#[test]
fn percentile_rejects_nan_and_empty() {
    assert!(percentile::<f32>(&mut [], 0.5).is_none());
    assert!(percentile(&mut [1.0f32, f32::NAN], 0.5).is_none());
    // NumPy: np.percentile([1, 2, 3, 4], 99) = 3.97
    assert!((percentile(&mut [4.0f64, 1.0, 3.0, 2.0], 0.99).unwrap() - 3.97).abs() < 1e-12);
}

/// FISTA memory for a single-block operator of length `n` that needs no scratch.
struct OwnedBuffers {
    z: Vec<Complex64>,
    previous: Vec<Complex64>,
    residual: Vec<Complex64>,
    next_residual: Vec<Complex64>,
    partial: Vec<Complex64>,
    block: Vec<Complex64>,
}

impl OwnedBuffers {
    fn new(n: usize) -> Self {
        let zeros = || vec![Complex64::default(); n];
        Self {
            z: zeros(),
            previous: zeros(),
            residual: zeros(),
            next_residual: zeros(),
            partial: zeros(),
            block: zeros(),
        }
    }

    /// Runs `fista` on these buffers (one worker: a single-block operator has one chunk).
    fn run(
        &mut self,
        op: &Mask<'_, f64>,
        y: &[Complex64],
        lambda: Lambda<'_, f64>,
        step: f64,
        iterations: usize,
    ) -> sparsemap_core::Result<()> {
        let mut workers = [WorkerBuffers {
            block: &mut self.block,
            scratch: &mut [],
        }];
        fista(
            op,
            y,
            lambda,
            step,
            iterations,
            FistaBuffers {
                z: &mut self.z,
                previous: &mut self.previous,
                residual: &mut self.residual,
                next_residual: &mut self.next_residual,
                partials: &mut self.partial,
                workers: &mut workers,
            },
        )
    }
}

fn objective(weights: &[f64], z: &[Complex64], y: &[Complex64], lambda: f64) -> f64 {
    weights
        .iter()
        .zip(z)
        .zip(y)
        .map(|((w, z), y)| 0.5 * (z * w - y).norm_sqr() + lambda * z.norm())
        .sum()
}

/// `min_z 1/2 ||W z - y||² + lambda ||z||_1` with diagonal `W`: the minimiser is
/// `z_i = soft(y_i / w_i, lambda / w_i²)`. FISTA must obey its rate bound
/// `F(z^k) - F* <= 2 L ||z^0 - z*||² / (k + 1)²` (Beck & Teboulle 2009, Thm 4.4) at every k
/// and converge to the minimiser.
#[test]
fn fista_meets_its_convergence_bound_on_a_known_minimiser() {
    let n = 200;
    let mut r = rng(21);
    let weights = random_real::<f64>(&mut r, n, 0.2, 1.0);
    let y = random_complex::<f64>(&mut r, n);
    let lambda = 0.15;
    let minimiser: Vec<Complex64> = weights
        .iter()
        .zip(&y)
        .map(|(&w, &y)| soft_threshold(y / w, lambda / (w * w)))
        .collect();
    let best = objective(&weights, &minimiser, &y, lambda);
    let lipschitz = weights.iter().fold(0.0f64, |m, &w| m.max(w * w));
    let distance_sq: f64 = minimiser.iter().map(|z| z.norm_sqr()).sum();
    let op = Mask { weights: &weights };

    let mut owned = OwnedBuffers::new(n);
    for k in [1usize, 2, 5, 10, 20, 50, 100, 400] {
        owned
            .run(&op, &y, Lambda::Scalar(lambda), 1.0 / lipschitz, k)
            .unwrap();
        let gap = objective(&weights, &owned.z, &y, lambda) - best;
        let bound = 2.0 * lipschitz * distance_sq / ((k + 1) as f64).powi(2);
        assert!(
            gap >= -1e-12,
            "objective below the minimum at k={k}: {gap:e}"
        );
        assert!(
            gap <= bound,
            "k={k}: gap {gap:e} exceeds FISTA bound {bound:e}"
        );
    }
    let err = relative_error(&owned.z, &minimiser);
    assert!(
        err < 1e-6,
        "FISTA did not converge to the minimiser: relative error {err:e}"
    );
}

#[test]
fn per_pixel_lambda_maps_threshold_each_coefficient() {
    // W = I: one FISTA step with step 1 gives z = soft(y, lambda_i) exactly.
    let n = 64;
    let mut r = rng(22);
    let weights = vec![1.0f64; n];
    let y = random_complex::<f64>(&mut r, n);
    let maps = random_real::<f64>(&mut r, n, 0.0, 1.2);
    let mut owned = OwnedBuffers::new(n);
    owned
        .run(&Mask { weights: &weights }, &y, Lambda::Maps(&maps), 1.0, 1)
        .unwrap();
    let z = &owned.z;
    for i in 0..n {
        assert!((z[i] - soft_threshold(y[i], maps[i])).norm() < 1e-15);
    }
    assert!(z.iter().any(|c| c.norm() == 0.0) && z.iter().any(|c| c.norm() > 0.0));
}

#[test]
fn compact_maps_keep_every_level_within_half_a_step() {
    // Three blocks: random levels, one all zero (scale 0), one with a single non-zero.
    let block_len = 50;
    let mut maps = random_real::<f64>(&mut rng(31), 3 * block_len, 0.0, 2.5);
    maps[block_len..2 * block_len].fill(0.0);
    maps[2 * block_len..].fill(0.0);
    maps[2 * block_len + 7] = 1e-3;
    let mut levels = vec![0u16; maps.len()];
    let mut scales = vec![0.0f64; 3];
    let mut compact = CompactMaps {
        levels: &mut levels,
        scales: &mut scales,
    };
    compact.encode(&maps, block_len).unwrap();
    for (b, block) in maps.chunks_exact(block_len).enumerate() {
        let largest = block.iter().fold(0.0f64, |m, &v| m.max(v));
        let scale = compact.scales[b];
        assert_eq!(scale, largest / 65535.0, "block {b}");
        for (i, &value) in block.iter().enumerate() {
            let decoded = scale * f64::from(compact.levels[b * block_len + i]);
            assert!(
                (decoded - value).abs() <= scale / 2.0 * (1.0 + 1e-12),
                "block {b} element {i}: {decoded} for {value}"
            );
        }
    }
    assert_eq!(compact.levels[2 * block_len + 7], u16::MAX);
    assert!(compact.levels[block_len..2 * block_len]
        .iter()
        .all(|&l| l == 0));

    // Bad maps and buffers are errors, not wrong levels.
    let run = |maps: &[f64], block_len: usize, levels: usize, scales: usize| {
        let (mut l, mut s) = (vec![0u16; levels], vec![0.0f64; scales]);
        CompactMaps {
            levels: &mut l,
            scales: &mut s,
        }
        .encode(maps, block_len)
    };
    assert!(run(&[0.1, f64::NAN], 2, 2, 1).is_err());
    assert!(run(&[0.1, -0.1], 2, 2, 1).is_err());
    assert!(run(&[0.1, 0.2, 0.3], 2, 3, 2).is_err());
    assert!(run(&[0.1, 0.2], 0, 2, 1).is_err());
    assert!(run(&[0.1, 0.2], 2, 1, 1).is_err());
    assert!(run(&[0.1, 0.2], 2, 2, 2).is_err());
    assert!(run(&[0.1, 0.2], 2, 2, 1).is_ok());
}

#[test]
fn compact_maps_threshold_each_coefficient_at_their_decoded_level() {
    // W = I, one step of length 1: z = soft(y, scale * level) exactly, and within half a
    // quantisation step of the f32-map solution.
    let n = 64;
    let mut r = rng(23);
    let weights = vec![1.0f64; n];
    let y = random_complex::<f64>(&mut r, n);
    let maps = random_real::<f64>(&mut r, n, 0.0, 1.2);
    let (mut levels, mut scales) = (vec![0u16; n], vec![0.0f64; 1]);
    let mut compact = CompactMaps {
        levels: &mut levels,
        scales: &mut scales,
    };
    compact.encode(&maps, n).unwrap();
    let mut owned = OwnedBuffers::new(n);
    owned
        .run(&Mask { weights: &weights }, &y, compact.lambda(), 1.0, 1)
        .unwrap();
    let half_step = compact.scales[0] / 2.0;
    for i in 0..n {
        let decoded = compact.scales[0] * f64::from(compact.levels[i]);
        assert!((owned.z[i] - soft_threshold(y[i], decoded)).norm() < 1e-15);
        assert!((owned.z[i] - soft_threshold(y[i], maps[i])).norm() <= half_step * (1.0 + 1e-9));
    }
    // Levels and scales must fit the operator.
    let short = Lambda::Compact {
        levels: &compact.levels[..n - 1],
        scales: &compact.scales[..],
    };
    assert!(owned
        .run(&Mask { weights: &weights }, &y, short, 1.0, 1)
        .is_err());
    let no_scale = Lambda::Compact {
        levels: &compact.levels[..],
        scales: &[],
    };
    assert!(owned
        .run(&Mask { weights: &weights }, &y, no_scale, 1.0, 1)
        .is_err());
    let nan_scale = [f64::NAN];
    let bad = Lambda::Compact {
        levels: &compact.levels[..],
        scales: &nan_scale,
    };
    assert!(owned
        .run(&Mask { weights: &weights }, &y, bad, 1.0, 1)
        .is_err());
}

#[test]
fn fista_rejects_invalid_lambda_and_buffers() {
    let weights = vec![1.0f64; 4];
    let op = Mask { weights: &weights };
    let y = vec![Complex64::default(); 4];
    let mut b = [
        vec![Complex::default(); 4],
        vec![Complex::default(); 4],
        vec![Complex::default(); 4],
        vec![Complex::default(); 4],
    ];
    let mut next = vec![Complex64::default(); 4];
    let mut partial = vec![Complex64::default(); 4];
    let [z, v, residual, block] = &mut b;
    let mut run = |lambda: Lambda<'_, f64>,
                   z: &mut [Complex64],
                   v: &mut [Complex64],
                   r: &mut [Complex64],
                   bl: &mut [Complex64]| {
        fista(
            &op,
            &y,
            lambda,
            1.0,
            3,
            FistaBuffers {
                z,
                previous: v,
                residual: r,
                next_residual: &mut next,
                partials: &mut partial,
                workers: &mut [WorkerBuffers {
                    block: bl,
                    scratch: &mut [],
                }],
            },
        )
    };
    assert!(run(Lambda::Scalar(-1.0), z, v, residual, block).is_err());
    assert!(run(Lambda::Scalar(f64::NAN), z, v, residual, block).is_err());
    assert!(run(Lambda::Maps(&[0.1; 3]), z, v, residual, block).is_err());
    assert!(run(Lambda::PerBlock(&[0.1, 0.2]), z, v, residual, block).is_err());
    assert!(run(Lambda::Scalar(0.1), &mut z[..3], v, residual, block).is_err());
    assert!(run(Lambda::Scalar(0.1), z, v, residual, block).is_ok());
    let _ = LinearOperator::<f64>::domain_len(&op);
}
