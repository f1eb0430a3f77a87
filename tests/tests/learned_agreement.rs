//! The edge runtime's learned reconstruction (tract Lambda maps, f32 features, the core's f32
//! solve) against the desktop float64 reference (`models/sparsemap_train/desktop.py`:
//! onnxruntime maps from float64 features, the NumPy float64 solve) on the bundled example
//! slice, for the committed default f32 and int8 models with their dictionary. The fixtures
//! `tests/fixtures/learned/x_{f32,int8}.npy` are made by
//! `models/sparsemap_train/make_desktop_fixture.py`; pytest checks they are current.
//!
//! Tolerances on the relative l2 error of the complex image (measured values are printed
//! with `--nocapture` and listed in models/README.md):
//! - f32 model: `F32_TOL` = 1e-5 — f32 features and solve against float64 [measured 1.6e-7];
//! - int8 model: `INT8_TOL` = 1e-4 — additionally, an activation within rounding of a
//!   quantisation step may round the other way from f32 features than from float64 ones
//!   [measured 1.5e-7: no such flip on this slice].

use ndarray::Array2;
use num_complex::{Complex32, Complex64};
use sparsemap_core::Shape;
use sparsemap_e2e::{read_npy, relative_error};
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::learned::LearnedReconstructor;
use sparsemap_edge::runtime::BackendKind;
use std::path::{Path, PathBuf};

const F32_TOL: f64 = 1e-5;
const INT8_TOL: f64 = 1e-4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn edge_image(precision: &str) -> Array2<Complex32> {
    let example = repo().join("examples/colin27");
    let kspace: Array2<Complex32> = read_npy(&example.join("kspace.npy"));
    let mask: Array2<u8> = read_npy(&example.join("mask.npy"));
    let dictionary =
        sparsemap_edge::npy::read_dictionary(&repo().join("models/dictionaries/cdl_k32_s9.npy"))
            .unwrap();
    let model =
        LambdaModel::from_path(&repo().join(format!("models/lambda/default.{precision}.onnx")))
            .unwrap();
    let (n_y, n_x) = kspace.dim();
    let mut learned = LearnedReconstructor::new(
        &model,
        BackendKind::RustFft,
        Shape::new(n_y, n_x).unwrap(),
        sparsemap_edge::npy::dictionary_view(&dictionary).unwrap(),
        sparsemap_edge::parallel::Threads::new(1),
    )
    .unwrap();
    let mask: Vec<f32> = mask.iter().map(|&m| f32::from(m)).collect();
    let mut image = Array2::<Complex32>::zeros((n_y, n_x));
    learned
        .reconstruct(
            kspace.as_slice().unwrap(),
            &mask,
            image.as_slice_mut().unwrap(),
        )
        .unwrap();
    image
}

fn check(precision: &str, tolerance: f64) {
    let edge = edge_image(precision);
    let desktop: Array2<Complex32> =
        read_npy(&repo().join(format!("tests/fixtures/learned/x_{precision}.npy")));
    let wide = |x: &Array2<Complex32>| -> Vec<Complex64> {
        x.iter()
            .map(|v| Complex64::new(v.re.into(), v.im.into()))
            .collect()
    };
    let error = relative_error(&wide(&edge), &wide(&desktop));
    println!("{precision}: edge vs desktop float64, relative l2 error {error:.2e}");
    assert!(
        error <= tolerance,
        "{precision}: relative error {error:.2e} > {tolerance:.0e}"
    );
}

#[test]
fn f32_model_matches_the_desktop_reference() {
    check("f32", F32_TOL);
}

#[test]
fn int8_model_matches_the_desktop_reference() {
    check("int8", INT8_TOL);
}
