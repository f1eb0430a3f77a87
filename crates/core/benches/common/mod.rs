//! What the benchmarks of `sparsemap-core` share: the problem size of DESIGN §3.5's floor
//! (N = 256², K = 32, 9×9 filters), its random data, the ky-line mask the iteration is timed
//! with, and where results go for `scripts/bench.sh`.

use num_complex::Complex32;
use rand::rngs::StdRng;
use rand::Rng;
use std::path::PathBuf;

pub const SIDE: usize = 256;
pub const FILTERS: usize = 32;
pub const FILTER_SIDE: usize = 9;

pub fn random_complex(rng: &mut StdRng, len: usize) -> Vec<Complex32> {
    (0..len)
        .map(|_| Complex32::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)))
        .collect()
}

/// `FILTERS` random `FILTER_SIDE²` filters, `[K][s][s]`.
pub fn random_filters(rng: &mut StdRng) -> Vec<f32> {
    (0..FILTERS * FILTER_SIDE * FILTER_SIDE)
        .map(|_| rng.random_range(-0.2..0.2))
        .collect()
}

/// Every third transposed row sampled (`SIDE × SIDE`, transposed layout): the mask the
/// iteration is timed with.
pub fn every_third_row_mask() -> Vec<f32> {
    (0..SIDE * SIDE)
        .map(|i| {
            if (i / SIDE).is_multiple_of(3) {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Criterion's output directory (where `scripts/bench.sh` reads the estimates):
/// `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the workspace's target.
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/criterion"
            ))
        })
}
