//! Arbitrary bytes (seeded with the bundled models) into the Lambda-model loader alone: the
//! size limit, protobuf decoding, the graph checks (operators, attributes, initialisers; docs/
//! design.md §7.3) and the metadata. `onnx_plan` also plans and runs what loads.
//!
//! Checks: no panic; every error names the model; what is accepted honours the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsemap_edge::lambda_net::{LambdaModel, ALLOWED_OPS};
use sparsemap_edge::limits;

const NAME: &str = "fuzz.onnx";

fuzz_target!(|data: &[u8]| match LambdaModel::from_bytes(data, NAME) {
    Ok(model) => {
        let info = model.info();
        assert!((1..=limits::MAX_ITERATIONS).contains(&info.iterations));
        assert!((info.lambda_max as f32).is_finite() && info.lambda_max > 0.0);
        assert!((info.lowpass_weight as f32).is_finite() && info.lowpass_weight >= 0.0);
        assert!(info.grid_multiple % 4 == 0 && info.grid_multiple <= limits::MAX_GRID_SIDE);
        assert!(!ALLOWED_OPS.is_empty());
    }
    Err(e) => {
        let text = format!("{e:#}");
        assert!(text.contains(NAME), "error does not name the model: {text}");
    }
});
