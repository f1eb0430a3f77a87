//! Property tests of the edge's readers (docs/design.md §7.3): no input makes them panic, every
//! error names the input, and valid files in every layout read back exactly. The fuzz targets
//! `npy_reader` and `onnx_model` (fuzz/, scripts/fuzz.sh) run the same functions far longer.

use ndarray::{Array2, Array3, ShapeBuilder};
use ndarray_npy::WriteNpyExt;
use num_complex::Complex32;
use proptest::prelude::*;
use sparsemap_edge::lambda_net::LambdaModel;
use sparsemap_edge::npy;

const NAME: &str = "input-Ω.npy";

fn npy_bytes<A: WriteNpyExt>(array: &A) -> Vec<u8> {
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).unwrap();
    bytes
}

/// Every reader on `bytes`: Ok or an error that names the input, never a panic.
fn read_all(bytes: &[u8]) {
    let errors = [
        npy::kspace_from_bytes(bytes, NAME).err(),
        npy::mask_from_bytes(bytes, NAME).err(),
        npy::dictionary_from_bytes_named(bytes, NAME).err(),
        npy::lambda_from_bytes(bytes, NAME).err(),
        npy::image_from_bytes(bytes, NAME).err(),
    ];
    for err in errors.into_iter().flatten() {
        let text = format!("{err:#}");
        assert!(text.contains(NAME), "error does not name the input: {text}");
    }
}

fn valid_kspace() -> Vec<u8> {
    let a = Array2::from_shape_fn((8, 8), |(y, x)| Complex32::new(y as f32, x as f32 - 3.0));
    npy_bytes(&a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_all(&bytes);
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        read_all(&with_magic);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_kspace();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        read_all(&bytes);
    }

    #[test]
    fn any_header_dictionary_is_parsed_or_refused(
        descr in prop::sample::select(vec!["<c8", ">c8", "<c16", "<f4", ">f8", "|b1", "|u1", "<i4", "O", ""]),
        fortran in any::<bool>(),
        shape in proptest::collection::vec(prop_oneof![0usize..40, Just(usize::MAX), Just(1usize << 40)], 0..5),
        data in 0usize..4096,
    ) {
        let shape_text: String = shape.iter().map(|d| format!("{d}, ")).collect();
        let dict = format!("{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({shape_text}), }}", if fortran { "True" } else { "False" });
        let mut header = dict.into_bytes();
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend(std::iter::repeat_n(0u8, data));
        read_all(&bytes);
    }

    #[test]
    fn c_and_fortran_order_read_back_exactly(n_y in 1usize..20, n_x in 1usize..20, k in 1usize..6, seed in any::<u32>()) {
        let value = |i: usize| ((i as u32).wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32;
        let c = Array2::from_shape_fn((n_y, n_x), |(y, x)| Complex32::new(value(y * n_x + x), -value(x)));
        let mut f = Array2::<Complex32>::zeros((n_y, n_x).f());
        f.assign(&c);
        prop_assert_eq!(npy::image_from_bytes(&npy_bytes(&c), NAME).unwrap(), c.clone());
        prop_assert_eq!(npy::image_from_bytes(&npy_bytes(&f), NAME).unwrap(), c.clone());
        let filters = Array3::from_shape_fn((k, 3, 3), |(a, b, d)| value(a * 9 + b * 3 + d));
        let mut filters_f = Array3::<f32>::zeros((k, 3, 3).f());
        filters_f.assign(&filters);
        prop_assert_eq!(npy::dictionary_from_bytes_named(&npy_bytes(&filters_f), NAME).unwrap(), filters);
    }
}

fn bundled_model() -> Vec<u8> {
    sparsemap_edge::learned::BUNDLED_MODEL.to_vec()
}

proptest! {
    // Loading is cheap, planning is not: a few dozen planned mutants per run; the fuzz target
    // runs millions.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mutated_models_load_and_plan_or_fail_cleanly(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = bundled_model();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        match LambdaModel::from_bytes(&bytes, "mutant-Ω.onnx") {
            Ok(model) => {
                if let Err(err) = model.plan(2, 16, 16) {
                    prop_assert!(format!("{err:#}").contains("mutant-Ω.onnx"), "{err:#}");
                }
            }
            Err(err) => prop_assert!(format!("{err:#}").contains("mutant-Ω.onnx"), "{err:#}"),
        }
    }
}
