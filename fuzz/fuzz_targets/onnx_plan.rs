//! Arbitrary bytes (seeded with the bundled models) into the Lambda-model loader, then, for
//! what loads, tract's planning for K = 2 on an 8x8 grid and one run on constant features.
//! Planning costs milliseconds, so this runs a few hundred inputs a second; `onnx_model`
//! covers the loader alone at full speed.
//!
//! Checks: no panic escapes (the loader checks the graph against docs/design.md §7.3 first,
//! tract runs behind `catch_unwind`); every error names the model; accepted metadata honours
//! the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::limits;

const NAME: &str = "fuzz.onnx";

fn named(err: anyhow::Error) {
    let text = format!("{err:#}");
    assert!(text.contains(NAME), "error does not name the model: {text}");
}

fuzz_target!(|data: &[u8]| {
    let model = match LambdaModel::from_bytes(data, NAME) {
        Ok(model) => model,
        Err(e) => return named(e),
    };
    let info = model.info();
    assert!((1..=limits::MAX_ITERATIONS).contains(&info.iterations));
    assert!((info.lambda_max as f32).is_finite() && (info.lowpass_weight as f32).is_finite());
    if 8 % info.grid_multiple != 0 {
        return;
    }
    let plan = match model.plan(2, 8, 8) {
        Ok(plan) => plan,
        Err(e) => return named(e),
    };
    let features = vec![0.5f32; 2 * 3 * 8 * 8];
    let mut lambda = vec![0f32; 2 * 8 * 8];
    if let Err(e) = plan.run(&features, &mut lambda) {
        named(e);
    }
});
