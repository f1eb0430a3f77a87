//! The U-Net baseline's runner (baselines::unet, `Method::Unet`) against the JAX network
//! (tests/fixtures/unet, written by `python -m sparsemap_train.unet --fixture`), and its errors.

use ndarray::Array2;
use ndarray_npy::read_npy;
use num_complex::{Complex32, Complex64};
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;
use sparsemap_host::baselines::unet::UnetPlan;
use sparsemap_host::methods::{CscDictionary, Method, Runner, Settings};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/unet")
        .join(name)
}

fn relative_error(ours: &[Complex32], want: &Array2<Complex64>) -> f64 {
    let (mut err, mut norm) = (0.0, 0.0);
    for (o, w) in ours.iter().zip(want.iter()) {
        err += (Complex64::new(o.re as f64, o.im as f64) - w).norm_sqr();
        norm += w.norm_sqr();
    }
    (err / norm).sqrt()
}

fn load() -> (Shape, Vec<Complex32>, Array2<Complex64>) {
    let zero_filled: Array2<Complex32> = read_npy(fixture("zero_filled.npy")).unwrap();
    let expected: Array2<Complex64> = read_npy(fixture("expected.npy")).unwrap();
    let (n_y, n_x) = zero_filled.dim();
    (
        Shape::new(n_y, n_x).unwrap(),
        zero_filled.iter().copied().collect(),
        expected,
    )
}

#[test]
fn plan_agrees_with_jax_on_a_non_square_grid() {
    let (shape, zero_filled, expected) = load();
    let mut plan = UnetPlan::new(&fixture("tiny.unet.onnx"), shape).unwrap();
    let mut out = zero_filled.clone();
    plan.run(&mut out).unwrap();
    let moved = relative_error(&zero_filled, &expected);
    let err = relative_error(&out, &expected);
    // float32 tract vs float64 JAX; the network moves the image by `moved` (~1.3), so a
    // runner that skipped it or mis-scaled it fails by orders of magnitude
    assert!(
        moved > 0.05,
        "the fixture's network barely changes the image ({moved})"
    );
    eprintln!(
        "U-Net runner vs JAX: relative error {err:.1e}, network moves the image by {moved:.2}"
    );
    assert!(err < 1e-5, "relative error {err} (observed 4e-7)");
}

#[test]
fn runner_forms_the_zero_filled_image_and_runs_the_network() {
    let (shape, zero_filled, expected) = load();
    let fft = Fft2::new(RustFft::new(shape));
    let op = CentredFourier { fft: &fft };
    let mut scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&op)];
    let mut kspace = vec![Complex32::default(); shape.len()];
    op.apply(&zero_filled, &mut kspace, &mut scratch);
    let settings = Settings {
        unet_model: Some(fixture("tiny.unet.onnx")),
        ..Settings::default()
    };
    let mut runner =
        Runner::new(shape, &CscDictionary::bundled().unwrap(), settings, false).unwrap();
    let dims = (shape.n_y(), shape.n_x());
    let kspace = Array2::from_shape_vec(dims, kspace).unwrap();
    let mask = Array2::from_elem(dims, true);
    let image = runner
        .run(Method::Unet, 0.0, kspace.view(), mask.view())
        .unwrap();
    let err = relative_error(image.as_slice().unwrap(), &expected);
    assert!(err < 1e-5, "relative error {err}");
}

#[test]
fn wrong_files_and_grids_are_named_errors() {
    let (shape, ..) = load();
    let lambda_model =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/lambda/default.f32.onnx");
    let err = UnetPlan::new(&lambda_model, shape)
        .err()
        .expect("a Lambda model is not a U-Net");
    let text = format!("{err:#}");
    assert!(
        text.contains("default.f32.onnx") && text.contains("not a sparsemap U-Net model"),
        "{text}"
    );
    let err = UnetPlan::new(&fixture("tiny.unet.onnx"), Shape::new(64, 4).unwrap())
        .err()
        .expect("4 is not a multiple of 8");
    assert!(
        format!("{err:#}").contains("not a multiple of 8"),
        "{err:#}"
    );
    let err = UnetPlan::new(&fixture("missing.onnx"), shape)
        .err()
        .expect("no such file");
    assert!(format!("{err:#}").contains("missing.onnx"), "{err:#}");
    let mut runner = Runner::new(
        shape,
        &CscDictionary::bundled().unwrap(),
        Settings::default(),
        false,
    )
    .unwrap();
    let dims = (shape.n_y(), shape.n_x());
    let zeros = Array2::<Complex32>::zeros(dims);
    let err = runner
        .run(
            Method::Unet,
            0.0,
            zeros.view(),
            Array2::from_elem(dims, true).view(),
        )
        .expect_err("no model given");
    assert!(format!("{err:#}").contains("--unet-model"), "{err:#}");
}
