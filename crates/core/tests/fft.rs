//! FFT backends against a naive DFT, against each other, and round trips.

mod common;

use common::*;
use num_complex::{Complex, Complex32};
use sparsemap_core::fft::{Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::{Real, Shape};

fn forward_natural<T: Real, B: FftBackend<T>>(
    fft: &Fft2<B>,
    input: &[Complex<T>],
) -> Vec<Complex<T>> {
    let shape = fft.shape();
    let mut transposed = vec![Complex::default(); shape.len()];
    let mut scratch = vec![Complex::default(); fft.scratch_len()];
    fft.try_forward_to_transposed(input, &mut transposed, &mut scratch)
        .unwrap();
    let mut natural = vec![Complex::default(); shape.len()];
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            natural[shape.natural(y, x)] = transposed[shape.transposed(y, x)];
        }
    }
    natural
}

#[test]
fn transposed_forward_matches_naive_dft_for_both_backends() {
    for (ny, nx) in [(4, 4), (8, 16), (32, 8)] {
        let shape = Shape::new(ny, nx).unwrap();
        let input = random_complex::<f32>(&mut rng(1), shape.len());
        let expected = naive_dft2(&to_c64(&input), ny, nx, false);
        let micro = forward_natural(&Fft2::new(MicroFft::new(shape)), &input);
        let rust = forward_natural(&Fft2::new(RustFft::<f32>::new(shape)), &input);
        assert!(
            relative_error(&to_c64(&micro), &expected) < 1e-6,
            "microfft {ny}x{nx}"
        );
        assert!(
            relative_error(&to_c64(&rust), &expected) < 1e-6,
            "rustfft {ny}x{nx}"
        );
    }
}

#[test]
fn backends_agree_at_deployment_sizes() {
    for (ny, nx) in [(256, 256), (128, 512), (512, 32)] {
        let shape = Shape::new(ny, nx).unwrap();
        let input = random_complex::<f32>(&mut rng(2), shape.len());
        let micro = forward_natural(&Fft2::new(MicroFft::new(shape)), &input);
        let rust = forward_natural(&Fft2::new(RustFft::<f32>::new(shape)), &input);
        let err = relative_error(&to_c64(&micro), &to_c64(&rust));
        assert!(
            err < 2e-6,
            "{ny}x{nx}: microfft vs rustfft relative error {err}"
        );
    }
}

fn round_trip<T: Real, B: FftBackend<T>>(fft: &Fft2<B>, input: &[Complex<T>]) -> Vec<Complex<T>> {
    let n = fft.shape().len();
    let mut spectrum = vec![Complex::default(); n];
    let mut back = vec![Complex::default(); n];
    let mut scratch = vec![Complex::default(); fft.scratch_len()];
    fft.forward_to_transposed(input, &mut spectrum, &mut scratch);
    fft.inverse_from_transposed(&spectrum, &mut back, &mut scratch);
    let gain = fft.inverse_divisor::<T>() / T::lit(n as f64);
    back.iter().map(|v| v.scale(gain)).collect()
}

#[test]
fn round_trip_recovers_input() {
    let shape = Shape::new(64, 128).unwrap();
    let input = random_complex::<f32>(&mut rng(3), shape.len());
    let micro = round_trip(&Fft2::new(MicroFft::new(shape)), &input);
    let rust = round_trip(&Fft2::new(RustFft::<f32>::new(shape)), &input);
    assert!(relative_error(&to_c64(&micro), &to_c64(&input)) < 1e-6);
    assert!(relative_error(&to_c64(&rust), &to_c64(&input)) < 1e-6);
    let input64 = random_complex::<f64>(&mut rng(4), shape.len());
    let rust64 = round_trip(&Fft2::new(RustFft::<f64>::new(shape)), &input64);
    assert!(relative_error(&to_c64(&rust64), &to_c64(&input64)) < 1e-14);
}

#[test]
fn centred_fourier_is_the_design_transform() {
    for (ny, nx) in [(8, 8), (16, 32), (32, 4)] {
        let shape = Shape::new(ny, nx).unwrap();
        let input = random_complex::<f64>(&mut rng(5), shape.len());
        let expected = naive_centred_fft2(&to_c64(&input), ny, nx);
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        let op = CentredFourier { fft: &fft };
        let mut out = vec![Complex::default(); shape.len()];
        let mut scratch = vec![Complex::default(); LinearOperator::<f64>::scratch_len(&op)];
        op.apply(&input, &mut out, &mut scratch);
        assert!(
            relative_error(&to_c64(&out), &expected) < 1e-13,
            "{ny}x{nx}"
        );
        // Unitary: the adjoint is the inverse.
        let mut back = vec![Complex::default(); shape.len()];
        op.adjoint(&out, &mut back, &mut scratch);
        assert!(relative_error(&to_c64(&back), &to_c64(&input)) < 1e-13);
        // And with microfft in f32.
        let input32: Vec<Complex32> = input
            .iter()
            .map(|c| Complex32::new(c.re as f32, c.im as f32))
            .collect();
        let fft32 = Fft2::new(MicroFft::new(shape));
        let op32 = CentredFourier { fft: &fft32 };
        let mut out32 = vec![Complex32::default(); shape.len()];
        let mut scratch32 = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&op32)];
        op32.apply(&input32, &mut out32, &mut scratch32);
        assert!(relative_error(&to_c64(&out32), &expected) < 1e-6);
    }
}

#[test]
fn dirty_scratch_does_not_change_results() {
    let shape = Shape::new(32, 64).unwrap();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let input = random_complex::<f32>(&mut rng(6), shape.len());
    let mut clean = vec![Complex32::default(); shape.len()];
    let mut dirty = vec![Complex32::default(); shape.len()];
    let mut scratch = vec![Complex32::default(); fft.scratch_len()];
    fft.forward_to_transposed(&input, &mut clean, &mut scratch);
    scratch
        .iter_mut()
        .for_each(|v| *v = Complex32::new(f32::NAN, 1e30));
    dirty
        .iter_mut()
        .for_each(|v| *v = Complex32::new(f32::INFINITY, -1.0));
    fft.forward_to_transposed(&input, &mut dirty, &mut scratch);
    assert_eq!(clean, dirty);
}

#[test]
fn checked_entry_points_reject_wrong_sizes() {
    let shape = Shape::new(32, 32).unwrap();
    let fft = Fft2::new(MicroFft::new(shape));
    let input = vec![Complex32::default(); shape.len() - 1];
    let mut out = vec![Complex32::default(); shape.len()];
    let mut scratch = vec![Complex32::default(); fft.scratch_len()];
    assert!(fft
        .try_forward_to_transposed(&input, &mut out, &mut scratch)
        .is_err());
    let input = vec![Complex32::default(); shape.len()];
    let mut small_scratch = vec![Complex32::default(); fft.scratch_len() - 1];
    assert!(fft
        .try_inverse_from_transposed(&input, &mut out, &mut small_scratch)
        .is_err());
}

#[test]
fn shape_rejects_unsupported_sizes() {
    for (ny, nx) in [(0, 32), (2, 32), (48, 32), (1024, 32), (32, 100)] {
        assert!(Shape::new(ny, nx).is_err(), "{ny}x{nx}");
    }
    assert!(Shape::new(512, 4).is_ok());
}

#[test]
fn square_transpose_in_place_matches_the_out_of_place_transpose() {
    // Sides below, at and across the 16-element tile, and the example's 256.
    for side in [1usize, 2, 5, 15, 16, 17, 33, 40, 256] {
        let input: Vec<u32> = (0..(side * side) as u32).collect();
        let mut expected = vec![0; side * side];
        sparsemap_core::fft::transpose(&input, &mut expected, side, side);
        let mut in_place = input.clone();
        sparsemap_core::fft::transpose_square_in_place(&mut in_place, side);
        assert_eq!(in_place, expected, "side {side}");
        sparsemap_core::fft::transpose_square_in_place(&mut in_place, side);
        assert_eq!(in_place, input, "side {side}: twice is the identity");
    }
}
