//! Arbitrary bytes into one of the edge's `.npy` readers (k-space, mask, dictionary, Lambda,
//! reference image, multi-coil k-space or sensitivities, noise scan), as `sparsemap recon` reads them after the file-size check. The first
//! byte picks the reader (one header parse per execution), the rest is the file.
//!
//! Checks: no panic; an error names the input; what is accepted honours the documented limits
//! (docs/design.md §7.3): sides within the grid limit, K and the filter side within theirs,
//! values finite, levels non-negative.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsemap_edge::{limits, npy};

const NAME: &str = "fuzz.npy";

fn named(err: anyhow::Error) {
    let text = format!("{err:#}");
    assert!(text.contains(NAME), "error does not name the input: {text}");
}

fuzz_target!(|input: &[u8]| {
    let Some((&reader, data)) = input.split_first() else {
        return;
    };
    let side_ok = |n: usize| (1..=limits::MAX_GRID_SIDE).contains(&n);
    match reader % 7 {
        0 => match npy::kspace_from_bytes(data, NAME) {
            Ok(k) => {
                assert!(side_ok(k.nrows()) && side_ok(k.ncols()));
                assert!(k.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
            }
            Err(e) => named(e),
        },
        1 => match npy::mask_from_bytes(data, NAME) {
            Ok(m) => assert!(side_ok(m.nrows()) && side_ok(m.ncols())),
            Err(e) => named(e),
        },
        2 => match npy::dictionary_from_bytes_named(data, NAME) {
            Ok(d) => {
                let (k, s, t) = d.dim();
                assert!((1..=limits::MAX_FILTERS).contains(&k));
                assert!(s == t && s % 2 == 1 && s <= limits::MAX_FILTER_SIDE);
                assert!(d.iter().all(|v| v.is_finite()));
            }
            Err(e) => named(e),
        },
        3 => match npy::lambda_from_bytes(data, NAME) {
            Ok(l) => {
                assert!(matches!(l.ndim(), 1 | 3));
                assert!(l.len() <= limits::MAX_FILTER_PIXELS);
                assert!(l.iter().all(|v| v.is_finite() && *v >= 0.0));
            }
            Err(e) => named(e),
        },
        5 => match npy::coil_array_from_bytes(data, NAME, "k-space") {
            Ok(k) => {
                let (coils, n_y, n_x) = k.dim();
                assert!((1..=32).contains(&coils) && side_ok(n_y) && side_ok(n_x));
                assert!(k.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
            }
            Err(e) => named(e),
        },
        6 => match npy::noise_from_bytes(data, NAME) {
            Ok(n) => {
                let (coils, samples) = n.dim();
                assert!((1..=32).contains(&coils) && (1..=npy::MAX_NOISE_SAMPLES).contains(&samples));
                assert!(n.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
            }
            Err(e) => named(e),
        },
        _ => match npy::image_from_bytes(data, NAME) {
            Ok(x) => {
                assert!(side_ok(x.nrows()) && side_ok(x.ncols()));
                assert!(x.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
            }
            Err(e) => named(e),
        },
    }
});
