//! tract runs the Lambda network like JAX and onnxruntime did (tests/fixtures/lambda_net,
//! written by `models/sparsemap_train/make_lambda_fixtures.py`): the features computed here
//! equal the JAX features, the f32 model's maps equal the JAX maps, the int8 model's maps
//! equal onnxruntime's int8 maps, for two dictionaries and a permuted one (whose maps are the
//! permuted maps), and the int8 model runs integer convolutions.
//!
//! Tolerances (Lambda values are about 0.01–0.025 here, LAMBDA_MAX = 0.1); observed values
//! in brackets:
//! * features, Rust f32 vs JAX f32: max |diff| <= 2e-6 x max feature [2.8e-7];
//! * f32 maps, tract vs JAX: max |diff| <= 1e-7, from the JAX features and end to end [1.1e-8];
//! * int8 maps, tract vs onnxruntime int8: max |diff| <= 2e-4 (one step of the last layer's
//!   output quantisation, should an input feature land on the other side of a rounding
//!   boundary end to end), mean |diff| <= 1e-6 [both 0: bit-identical];
//! * permuted dictionary: f32 <= 1e-7 [1.2e-8, the filter mean is summed in another order],
//!   int8 <= 2e-4 [0].

use ndarray::{Array1, Array2, Array3, Array4};
use ndarray_npy::ReadNpyExt;
use num_complex::Complex32;
use sparsemap_core::dictionary::Dictionary;
use sparsemap_core::Shape;
use sparsemap_edge::features::{compute_features, FEATURE_CHANNELS};
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::learned::LearnedReconstructor;
use sparsemap_edge::parallel::Threads;
use sparsemap_edge::runtime::{BackendKind, EdgeReconstructor};
use std::fs::File;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lambda_net")
}

fn read<A: ReadNpyExt>(path: PathBuf) -> A {
    A::read_npy(File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Input {
    kspace: Vec<Complex32>,
    mask: Vec<f32>,
    n: usize,
}

fn input() -> Input {
    let k: Array2<Complex32> = read(dir().join("kspace.npy"));
    let m: Array2<u8> = read(dir().join("mask.npy"));
    let n = k.shape()[0];
    Input {
        kspace: k.iter().copied().collect(),
        mask: m.iter().map(|&v| v as f32).collect(),
        n,
    }
}

struct Dict {
    filters: Vec<f32>,
    count: usize,
    side: usize,
}

fn dictionary(case: &str) -> Dict {
    let d: Array3<f32> = read(dir().join(case).join("dictionary.npy"));
    Dict {
        count: d.shape()[0],
        side: d.shape()[1],
        filters: d.iter().copied().collect(),
    }
}

fn maps(case: &str, file: &str) -> Vec<f32> {
    let a: Array4<f32> = read(dir().join(case).join(file));
    a.iter().copied().collect()
}

fn model(precision: &str) -> LambdaModel {
    LambdaModel::from_path(&dir().join(format!("model.{precision}.onnx"))).unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn mean_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

impl Dict {
    fn view(&self) -> Dictionary<'_, f32> {
        Dictionary::new(&self.filters, self.count, self.side).unwrap()
    }
}

/// The maps the learned reconstruction predicts, with `batch` filters per network run.
fn predict_batched(precision: &str, case: &str, batch: usize, threads: usize) -> Vec<f32> {
    let inp = input();
    let d = dictionary(case);
    let shape = Shape::new(inp.n, inp.n).unwrap();
    let mut learned = LearnedReconstructor::with_network_batch(
        &model(precision),
        BackendKind::RustFft,
        shape,
        d.view(),
        batch,
        Threads::new(threads),
    )
    .unwrap();
    let mut image = vec![Complex32::default(); shape.len()];
    learned
        .reconstruct(&inp.kspace, &inp.mask, &mut image)
        .unwrap();
    learned.lambda_maps().to_vec()
}

fn predict(precision: &str, case: &str) -> Vec<f32> {
    predict_batched(precision, case, 8, 1)
}

#[test]
fn maps_do_not_depend_on_the_network_batch() {
    // rand7 has K = 12: batches of 5 leave a tail of 2 (a second plan)
    for precision in ["f32", "int8"] {
        let whole = predict_batched(precision, "rand7", 12, 1);
        for batch in [1, 5] {
            let err = max_abs(&predict_batched(precision, "rand7", batch, 1), &whole);
            assert!(err <= 1e-7, "{precision}, batch {batch}: {err}");
        }
    }
}

#[test]
fn maps_are_the_same_bits_for_every_thread_count() {
    // The features' K inverse FFTs and the network runs (batches of 5 and a tail of 2 for
    // K = 12) go to the threads; the maps, which the solve then uses, must not change.
    for precision in ["f32", "int8"] {
        let serial = predict_batched(precision, "rand7", 5, 1);
        for threads in [2, 3] {
            let threaded = predict_batched(precision, "rand7", 5, threads);
            assert!(
                serial
                    .iter()
                    .zip(&threaded)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{precision}, {threads} threads: the maps differ from one thread's"
            );
        }
    }
}

/// Maps `[K][N][N]` of filter order `perm` from maps of the original order.
fn permute(maps: &[f32], perm: &[usize], plane: usize) -> Vec<f32> {
    perm.iter()
        .flat_map(|&p| maps[p * plane..(p + 1) * plane].iter().copied())
        .collect()
}

#[test]
fn features_equal_jax() {
    let inp = input();
    let d = dictionary("dct3");
    let shape = Shape::new(inp.n, inp.n).unwrap();
    let mut solver =
        EdgeReconstructor::new(BackendKind::RustFft, shape, d.view(), Threads::new(1)).unwrap();
    let f = solver
        .with_prepared(&inp.kspace, &inp.mask, 1.0, compute_features)
        .unwrap();
    let expected = maps("dct3", "features.npy");
    assert_eq!(f.len(), d.count * FEATURE_CHANNELS * inp.n * inp.n);
    let scale = expected.iter().fold(0.0f32, |a, &b| a.max(b));
    let err = max_abs(&f, &expected);
    println!("features: max |rust - jax| = {err:e} (max feature {scale})");
    assert!(err <= 2e-6 * scale, "{err}");
}

#[test]
fn f32_maps_equal_jax_from_jax_features() {
    let expected = maps("dct3", "lambda_f32.npy");
    let features = maps("dct3", "features.npy");
    let plan = model("f32").plan(8, 64, 64).unwrap();
    let mut out = vec![0.0; expected.len()];
    plan.run(&features, &mut out).unwrap();
    let err = max_abs(&out, &expected);
    println!("f32 tract vs JAX (same features): max |diff| = {err:e}");
    assert!(err <= 1e-7, "{err}");
}

#[test]
fn f32_maps_equal_jax_end_to_end_two_dictionaries() {
    for case in ["dct3", "rand7"] {
        let out = predict("f32", case);
        let expected = maps(case, "lambda_f32.npy");
        let err = max_abs(&out, &expected);
        println!("{case}: f32 tract vs JAX end to end: max |diff| = {err:e}");
        assert!(err <= 1e-7, "{case}: {err}");
    }
}

#[test]
fn int8_maps_equal_onnxruntime_two_dictionaries() {
    for case in ["dct3", "rand7"] {
        let out = predict("int8", case);
        let expected = maps(case, "lambda_int8_ort.npy");
        let (max, mean) = (max_abs(&out, &expected), mean_abs(&out, &expected));
        let f32_err = max_abs(&out, &maps(case, "lambda_f32.npy"));
        println!("{case}: int8 tract vs onnxruntime int8: max {max:e} mean {mean:e}; vs JAX f32: max {f32_err:e}");
        assert!(max <= 2e-4 && mean <= 1e-6, "{case}: max {max} mean {mean}");
    }
}

#[test]
fn permuted_dictionary_permutes_the_maps() {
    let perm: Array1<i64> = read(dir().join("rand7_perm").join("perm.npy"));
    let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
    let plane = 64 * 64;
    for precision in ["f32", "int8"] {
        let base = predict(precision, "rand7");
        let permuted = predict(precision, "rand7_perm");
        let err = max_abs(&permuted, &permute(&base, &perm, plane));
        println!(
            "{precision}: maps of the permuted dictionary vs permuted maps: max |diff| = {err:e}"
        );
        // the features' filter mean is summed in another order: float rounding only
        let tol = if precision == "f32" { 1e-7 } else { 2e-4 };
        assert!(err <= tol, "{precision}: {err}");
    }
    let expected = permute(&maps("rand7", "lambda_f32.npy"), &perm, plane);
    assert!(max_abs(&predict("f32", "rand7_perm"), &expected) <= 1e-7);
}

#[test]
fn int8_model_runs_integer_convolutions() {
    let plan = model("int8").plan(8, 64, 64).unwrap();
    println!("optimised tract graph of the int8 model (K = 8, N = 64):");
    for op in plan.ops() {
        println!("  {:<40} {:<28} {}", op.node, op.op, op.output);
    }
    let f32_plan = model("f32").plan(8, 64, 64).unwrap();
    println!("optimised tract graph of the f32 model:");
    for op in f32_plan.ops() {
        println!("  {:<40} {:<28} {}", op.node, op.op, op.output);
    }
    // the six convolutions are integer matrix products (i8 x i8 -> i32 accumulators, or the
    // 1x1 one fused down to its u8 output) fed by i8 im2col
    let integer_matmuls = plan
        .ops()
        .iter()
        .filter(|o| o.op == "OptMatMul" && (o.output == "I32" || o.output == "U8"))
        .count();
    assert_eq!(
        integer_matmuls, 6,
        "integer convolutions in the optimised int8 graph"
    );
    assert_eq!(
        plan.ops()
            .iter()
            .filter(|o| o.op == "Im2col" && o.output == "I8")
            .count(),
        5
    );
    assert!(f32_plan.ops().iter().all(|o| o.output.starts_with("F32")));
}

#[test]
fn unknown_metadata_is_refused_with_the_file_name() {
    let bytes = std::fs::read(dir().join("model.f32.onnx")).unwrap();
    let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in the file");
        let mut b = bytes.clone();
        b[at..at + to.len()].copy_from_slice(to);
        b
    };
    let features = replace(b"v1:corr_highpass", b"v9:corr_highpass");
    let err = LambdaModel::from_bytes(&features, "some/model.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("some/model.onnx") && err.contains("sparsemap.features"),
        "{err}"
    );
    let version = replace(b"sparsemap.version\x12\x011", b"sparsemap.version\x12\x012");
    let err = LambdaModel::from_bytes(&version, "other.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("other.onnx") && err.contains("sparsemap.version"),
        "{err}"
    );
    let err = LambdaModel::from_bytes(b"not a model", "x.onnx")
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("x.onnx"));
    // the grid must suit the network
    let err = model("f32").plan(8, 66, 64).err().unwrap().to_string();
    assert!(err.contains("multiple of 4"), "{err}");
}
