//! Every operator's adjoint (proptest over random inputs) and the dictionary against a
//! direct circular convolution.

mod common;

use common::*;
use num_complex::{Complex, Complex64};
use proptest::prelude::*;
use sparsemap_core::dictionary::{ConvDictionary, Dictionary, DictionaryPlan, MaskedSynthesis};
use sparsemap_core::fft::{ActiveRows, Fft2, MicroFft, RustFft};
use sparsemap_core::lowpass::LowPass;
use sparsemap_core::ops::{adjoint_mismatch, CentredFourier, Chain, LinearOperator, Mask, Scaled};
use sparsemap_core::{Real, Shape};

/// Tolerance of the adjoint identity: far above rounding, far below any real mismatch.
const ADJOINT_TOL_F64: f64 = 1e-12;
const ADJOINT_TOL_F32: f64 = 1e-5;

fn check_adjoint<T: Real, A: LinearOperator<T>>(op: &A, seed: u64, tol: f64) {
    let mut r = rng(seed);
    let x = random_complex::<T>(&mut r, op.domain_len());
    let y = random_complex::<T>(&mut r, op.range_len());
    let mut ax = vec![Complex::default(); op.range_len()];
    let mut ahy = vec![Complex::default(); op.domain_len()];
    let mut scratch = vec![Complex::default(); op.scratch_len()];
    let mismatch = adjoint_mismatch(op, &x, &y, &mut ax, &mut ahy, &mut scratch);
    assert!(mismatch < tol, "adjoint mismatch {mismatch:e} >= {tol:e}");
}

fn side_strategy() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![4usize, 8, 16, 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mask_is_self_adjoint(ny in side_strategy(), nx in side_strategy(), seed in any::<u64>()) {
        let weights = random_real::<f64>(&mut rng(seed ^ 1), ny * nx, 0.0, 1.0);
        check_adjoint(&Mask { weights: &weights }, seed, ADJOINT_TOL_F64);
    }

    #[test]
    fn centred_fourier_adjoint(ny in side_strategy(), nx in side_strategy(), seed in any::<u64>()) {
        let shape = Shape::new(ny, nx).unwrap();
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        check_adjoint(&CentredFourier { fft: &fft }, seed, ADJOINT_TOL_F64);
        let fft32 = Fft2::new(MicroFft::new(shape));
        check_adjoint::<f32, _>(&CentredFourier { fft: &fft32 }, seed, ADJOINT_TOL_F32);
    }

    #[test]
    fn sampling_operator_chain_adjoint(ny in side_strategy(), nx in side_strategy(), seed in any::<u64>()) {
        // A = s M F, the single-coil acquisition of DESIGN §1.
        let shape = Shape::new(ny, nx).unwrap();
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        let weights: Vec<f64> = random_real::<f64>(&mut rng(seed ^ 2), shape.len(), 0.0, 1.0)
            .into_iter().map(|w| if w > 0.5 { 1.0 } else { 0.0 }).collect();
        let op = Scaled { factor: 0.7, op: Chain { outer: Mask { weights: &weights }, inner: CentredFourier { fft: &fft } } };
        check_adjoint(&op, seed, ADJOINT_TOL_F64);
    }

    #[test]
    fn dictionary_operators_adjoint(
        ny in side_strategy(), nx in side_strategy(), count in 1usize..5,
        side in prop::sample::select(vec![1usize, 3]), seed in any::<u64>(),
    ) {
        let shape = Shape::new(ny, nx).unwrap();
        let filters = random_filters(seed, count, side);
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        let mut store = PlanStore { responses: vec![], power: vec![] };
        let plan = make_plan(&fft, &filters, count, side, &mut store);
        check_adjoint(&ConvDictionary { plan: &plan }, seed, ADJOINT_TOL_F64);
        let weights: Vec<f64> = random_real::<f64>(&mut rng(seed ^ 3), shape.len(), 0.0, 1.0);
        check_adjoint(&MaskedSynthesis { plan: &plan, mask: Some(&weights), rows: ActiveRows::all(shape) }, seed, ADJOINT_TOL_F64);
        check_adjoint(&MaskedSynthesis { plan: &plan, mask: None, rows: ActiveRows::all(shape) }, seed, ADJOINT_TOL_F64);

        let filters32: Vec<f32> = filters.iter().map(|&v| v as f32).collect();
        let fft32 = Fft2::new(MicroFft::new(shape));
        let mut store32 = PlanStore { responses: vec![], power: vec![] };
        let plan32 = make_plan(&fft32, &filters32, count, side, &mut store32);
        let weights32: Vec<f32> = weights.iter().map(|&v| v as f32).collect();
        check_adjoint(&MaskedSynthesis { plan: &plan32, mask: Some(&weights32), rows: ActiveRows::all(shape) }, seed, ADJOINT_TOL_F32);
    }
}

#[test]
fn a_wrong_adjoint_is_detected() {
    // Guards the guard: an operator whose adjoint forgets a conjugation must fail.
    struct Broken;
    impl LinearOperator<f64> for Broken {
        fn domain_len(&self) -> usize {
            8
        }
        fn range_len(&self) -> usize {
            8
        }
        fn apply_block_add(
            &self,
            x: &[Complex64],
            _: usize,
            y: &mut [Complex64],
            _: &mut [Complex64],
        ) {
            for (o, v) in y.iter_mut().zip(x) {
                *o += v * Complex64::new(0.3, 0.9);
            }
        }
        fn adjoint_block(
            &self,
            y: &[Complex64],
            _: usize,
            x: &mut [Complex64],
            _: &mut [Complex64],
        ) {
            for (o, v) in x.iter_mut().zip(y) {
                *o = v * Complex64::new(0.3, 0.9);
            }
        }
    }
    let mut r = rng(9);
    let (x, y) = (
        random_complex::<f64>(&mut r, 8),
        random_complex::<f64>(&mut r, 8),
    );
    let (mut ax, mut ahy) = (vec![Complex64::default(); 8], vec![Complex64::default(); 8]);
    assert!(adjoint_mismatch(&Broken, &x, &y, &mut ax, &mut ahy, &mut []) > 0.01);
}

#[test]
fn dictionary_is_circular_convolution_with_centre_origin() {
    for (ny, nx, count, side) in [
        (8, 8, 2, 3),
        (16, 32, 3, 5),
        (32, 16, 1, 9),
        (16, 16, 2, 11),
    ] {
        let shape = Shape::new(ny, nx).unwrap();
        let filters = random_filters(11 + side as u64, count, side);
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        let mut store = PlanStore {
            responses: vec![],
            power: vec![],
        };
        let plan = make_plan(&fft, &filters, count, side, &mut store);
        let z = random_complex::<f64>(&mut rng(12), count * shape.len());
        let mut expected = vec![Complex64::default(); shape.len()];
        for k in 0..count {
            let taps = &filters[k * side * side..(k + 1) * side * side];
            let part = circular_convolution(
                taps,
                side,
                &z[k * shape.len()..(k + 1) * shape.len()],
                ny,
                nx,
            );
            expected.iter_mut().zip(part).for_each(|(e, p)| *e += p);
        }
        let op = ConvDictionary { plan: &plan };
        let mut out = vec![Complex64::default(); shape.len()];
        let mut scratch = vec![Complex64::default(); op.scratch_len()];
        op.apply(&z, &mut out, &mut scratch);
        let err = relative_error(&out, &expected);
        assert!(err < 1e-12, "{ny}x{nx} K={count} s={side}: {err:e}");
    }
}

#[test]
fn lipschitz_is_the_largest_sampled_response_power() {
    // One 1x1 filter of value 2: |h|^2 = 4 everywhere.
    let shape = Shape::new(8, 8).unwrap();
    let fft = Fft2::new(RustFft::<f64>::new(shape));
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &[2.0], 1, 1, &mut store);
    assert!((plan.lipschitz(&vec![1.0; 64]) - 4.0).abs() < 1e-12);
    assert_eq!(plan.lipschitz(&vec![0.0; 64]), 0.0);
    // A difference filter [1, -1] along x has |h|^2 = 2 - 2 cos(w): 4 at Nyquist, 0 at DC.
    let taps = [0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0];
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(&fft, &taps, 1, 3, &mut store);
    assert!((plan.lipschitz(&vec![1.0; 64]) - 4.0).abs() < 1e-12);
    let mut dc_only = vec![0.0; 64];
    dc_only[shape.transposed(4, 4)] = 1.0; // centred DC
    assert!(plan.lipschitz(&dc_only).abs() < 1e-12);
}

#[test]
fn dictionary_rejects_bad_filters() {
    assert!(Dictionary::new(&[0.0f32; 4], 1, 2).is_err()); // even side
    assert!(Dictionary::new(&[0.0f32; 169], 1, 13).is_err()); // too large
    assert!(Dictionary::<f32>::new(&[], 0, 3).is_err()); // empty
    assert!(Dictionary::new(&[0.0f32; 8], 1, 3).is_err()); // wrong length
    assert!(Dictionary::new(&[f32::NAN; 9], 1, 3).is_err()); // NaN
    let shape = Shape::new(4, 4).unwrap();
    let fft = Fft2::new(MicroFft::new(shape));
    let filters = [0.0f32; 25];
    let mut responses = vec![Complex::default(); 16];
    let mut power = vec![0.0f32; 16];
    let mut scratch = vec![Complex::default(); 32];
    let dictionary = Dictionary::new(&filters, 1, 5).unwrap();
    assert!(
        DictionaryPlan::new(&fft, dictionary, &mut responses, &mut power, &mut scratch).is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn lowpass_is_self_adjoint(ny in side_strategy(), nx in side_strategy(), weight in 0.0f64..20.0, seed in any::<u64>()) {
        let shape = Shape::new(ny, nx).unwrap();
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        check_adjoint(&LowPass { fft: &fft, weight }, seed, ADJOINT_TOL_F64);
    }
}

/// `(I + a grad^H grad) x_low = x` with circular forward differences computed directly:
/// `grad^H grad x = 4x - x(y-1) - x(y+1) - x(x-1) - x(x+1)` (periodic).
#[test]
fn lowpass_inverts_identity_plus_weighted_laplacian() {
    for (ny, nx, weight) in [(8, 8, 1.0), (16, 32, 4.0), (32, 8, 0.25), (8, 16, 0.0)] {
        let shape = Shape::new(ny, nx).unwrap();
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        let op = LowPass { fft: &fft, weight };
        let x = random_complex::<f64>(&mut rng(31), shape.len());
        let mut low = vec![Complex64::default(); shape.len()];
        let mut scratch = vec![Complex64::default(); op.scratch_len()];
        op.apply(&x, &mut low, &mut scratch);
        let at = |y: isize, xx: isize| {
            low[(y.rem_euclid(ny as isize) as usize) * nx + xx.rem_euclid(nx as isize) as usize]
        };
        let mut back = vec![Complex64::default(); shape.len()];
        for y in 0..ny as isize {
            for xx in 0..nx as isize {
                let laplacian =
                    at(y, xx) * 4.0 - at(y - 1, xx) - at(y + 1, xx) - at(y, xx - 1) - at(y, xx + 1);
                back[(y as usize) * nx + xx as usize] = at(y, xx) + laplacian * weight;
            }
        }
        let err = relative_error(&back, &x);
        assert!(err < 1e-12, "{ny}x{nx} a={weight}: {err:e}");
    }
}
