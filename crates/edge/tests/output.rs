//! Output files (DESIGN §6): NIfTI magnitude, Lambda-map montage, sidecar JSON, PNG text.

use ndarray::Array2;
use nifti::{IntoNdArray, NiftiObject, NiftiType, ReaderOptions};
use num_complex::Complex32;
use sparsemap_edge::output::{
    montage_filters, sidecar_path, write_maps_montage, write_nifti, write_png, write_sidecar,
    Acquisition, Provenance, ARRAY_ORIENTATION, MONTAGE_SEPARATOR_GRAY, NIFTI_ECODE_COMMENT,
};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

fn acquisition() -> Acquisition {
    Acquisition {
        scan_id: 7,
        slice: 2,
        n_slices: 5,
        n_coils: 1,
        field_mt: 64.0,
        fov_mm: [220.0, 240.0],
        kx_first: 0,
        kx_count: 6,
        lines_received: 3,
        lines_missing: 1,
        duplicates: 2,
        corrupt: 1,
        reordered: 4,
        invalid_samples: 0,
        faults: 1,
        complete: false,
        completion: "ScanEnd Aborted".to_string(),
        geometry: None,
        description: None,
        coil_combination: None,
        mrd: None,
    }
}

/// A learned-model provenance with a stream acquisition; `dictionary` is free text.
fn provenance(dictionary: &str) -> Provenance {
    let acquisition = acquisition();
    Provenance {
        software: "sparsemap 0.1.0".to_string(),
        model: Some("default.int8 (bundled, models/lambda/default.int8.onnx) [int8]".to_string()),
        dictionary: dictionary.to_string(),
        filters: 32,
        filter_side: 9,
        lambda: "maps from default.int8 (mean 0.0123)".to_string(),
        iterations: 48,
        lowpass_weight: 0.5,
        background_gate: Some(8.0),
        fft_backend: "rustfft".to_string(),
        scale_c: 2.5,
        lipschitz: 1.25,
        sampled_fraction: 0.75,
        nonzero_coefficients: 1234,
        voxel_mm: Some(acquisition.voxel_mm(4, 6)),
        acquisition: Some(acquisition),
        orientation: ARRAY_ORIENTATION.to_string(),
        coils: None,
    }
}

/// Fixed-lambda provenance of `.npy` input (no model, no acquisition, no voxel size).
fn fixed_provenance() -> Provenance {
    Provenance {
        model: None,
        acquisition: None,
        voxel_mm: None,
        lambda: "0.01".to_string(),
        iterations: 64,
        lowpass_weight: 1.0,
        background_gate: None,
        ..provenance("dct5 (bundled, models/dictionaries/dct5.npy)")
    }
}

/// 4 x 6, no symmetry: |x[y][x]| differs at every position and under transposition.
fn test_image() -> Array2<Complex32> {
    Array2::from_shape_fn((4, 6), |(y, x)| {
        Complex32::new(10.0 * y as f32 + x as f32 + 1.0, 0.25 * x as f32)
    })
}

fn error_text(result: anyhow::Result<()>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

#[test]
fn nifti_reads_back_with_dims_pixdim_float32_and_axis_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.nii");
    let image = test_image();
    // Non-ASCII text must survive the ASCII extension and be replaced in `descrip`.
    let prov = provenance("Wörterbuch 辞書/cdl_k32_s9.npy (user)");
    write_nifti(&path, &image, &prov).unwrap();

    let object = ReaderOptions::new().read_file(&path).unwrap();
    let header = object.header().clone();
    assert_eq!(header.dim[..4], [3, 6, 4, 1], "dims [n_x, n_y, 1]");
    assert_eq!(header.datatype, NiftiType::Float32 as i16);
    assert_eq!(header.bitpix, 32);
    // voxel = fov / n: x = 240 / 6 = 40 mm, y = 220 / 4 = 55 mm.
    assert_eq!(header.pixdim[1], 40.0);
    assert_eq!(header.pixdim[2], 55.0);
    assert_eq!(header.xyzt_units & 0o7, nifti::Unit::Mm as u8);
    assert_eq!((header.qform_code, header.sform_code), (0, 0));
    assert_eq!(&header.magic, b"n+1\0");

    let descrip = String::from_utf8(header.descrip.clone()).unwrap();
    let descrip = descrip.trim_end_matches('\0');
    assert!(descrip.len() <= 80 && descrip.is_ascii(), "{descrip:?}");
    for needle in [
        "sparsemap 0.1.0",
        "T=48",
        "a=0.5",
        "default.int8",
        "no orientation",
    ] {
        assert!(descrip.contains(needle), "{needle:?} not in {descrip:?}");
    }

    // The full provenance in a comment extension, round-tripping exactly.
    let extension = object
        .extensions()
        .iter()
        .find(|e| e.code() == NIFTI_ECODE_COMMENT)
        .expect("a provenance extension");
    assert_eq!(extension.size() % 16, 0);
    let json = std::str::from_utf8(extension.data()).unwrap();
    assert!(json.is_ascii());
    let back: Provenance = serde_json::from_str(json.trim_end_matches('\0')).unwrap();
    assert_eq!(back, prov);

    // Voxel values: raw little-endian float32 with i = x fastest, and through the crate's
    // ndarray view indexed [i, j, k] = [x, y, 0].
    let raw = object.volume().raw_data().to_vec();
    assert_eq!(raw.len(), 4 * 6 * 4);
    let volume = object.into_volume().into_ndarray::<f32>().unwrap();
    assert_eq!(volume.shape(), &[6, 4, 1]);
    for (y, x) in [(0, 0), (0, 5), (3, 0), (1, 2), (2, 4), (3, 5)] {
        let expected = image[[y, x]].norm();
        let offset = 4 * (x + 6 * y);
        let stored = f32::from_le_bytes(raw[offset..offset + 4].try_into().unwrap());
        assert_eq!(stored, expected, "raw voxel (y={y}, x={x})");
        assert_eq!(volume[[x, y, 0]], expected, "ndarray voxel (y={y}, x={x})");
    }
}

#[test]
fn nifti_without_voxel_size_uses_1mm_and_a_short_description() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.nii");
    let prov = fixed_provenance();
    write_nifti(&path, &test_image(), &prov).unwrap();
    let header = nifti::NiftiHeader::from_file(&path).unwrap();
    assert_eq!(header.pixdim[1..3], [1.0, 1.0]);
    let descrip = String::from_utf8(header.descrip).unwrap();
    assert!(descrip.contains("lambda 0.01"), "{descrip:?}");
    assert!(descrip.contains("D=dct5"), "{descrip:?}");
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let prov = provenance("cdl_k32_s9");
    let image = test_image();

    let nii = missing.join("x.nii");
    let text = error_text(write_nifti(&nii, &image, &prov));
    assert!(text.contains(&nii.display().to_string()), "{text}");

    let wrong = dir.path().join("x.img");
    let text = error_text(write_nifti(&wrong, &image, &prov));
    assert!(text.contains(&wrong.display().to_string()), "{text}");
    assert!(!wrong.exists() && !dir.path().join("x.nii").exists());

    let png = missing.join("maps.png");
    let text = error_text(write_maps_montage(&png, &[0.0; 4], 1, 2, 2, 1.0, &prov));
    assert!(text.contains(&png.display().to_string()), "{text}");
    let png = dir.path().join("maps.png");
    let text = error_text(write_maps_montage(&png, &[0.0; 3], 1, 2, 2, 1.0, &prov));
    assert!(text.contains(&png.display().to_string()), "{text}");
}

struct Png {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    text: Vec<(String, String)>,
}

fn read_png(path: &Path) -> Png {
    let decoder = png::Decoder::new(BufReader::new(File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(frame.color_type, png::ColorType::Grayscale);
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    pixels.truncate(frame.buffer_size());
    let info = reader.info();
    let text = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .chain(
            info.utf8_text
                .iter()
                .map(|t| (t.keyword.clone(), t.get_text().unwrap())),
        )
        .collect();
    Png {
        width: frame.width,
        height: frame.height,
        pixels,
        text,
    }
}

fn text<'a>(png: &'a Png, keyword: &str) -> &'a str {
    &png.text
        .iter()
        .find(|(k, _)| k == keyword)
        .unwrap_or_else(|| panic!("no {keyword} text"))
        .1
}

#[test]
fn montage_shows_four_spread_filters_at_their_gray_levels() {
    let (count, n_y, n_x) = (8, 3, 5);
    // Filter k is constant at 10 k; window [0, 70].
    let maps: Vec<f32> = (0..count)
        .flat_map(|k| std::iter::repeat_n(10.0 * k as f32, n_y * n_x))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.png");
    let prov = provenance("cdl_k32_s9");
    write_maps_montage(&path, &maps, count, n_y, n_x, 70.0, &prov).unwrap();

    assert_eq!(montage_filters(count), [0, 2, 4, 6]);
    let png = read_png(&path);
    assert_eq!((png.width, png.height), (2 * 5 + 2, 2 * 3 + 2));
    let width = png.width as usize;
    let at = |y: usize, x: usize| png.pixels[y * width + x];
    // Tiles left to right, then top to bottom: k = 0, 2, 4, 6.
    let gray = |k: usize| (10.0 * k as f32 / 70.0 * 255.0).round() as u8;
    for (tile, k) in [0, 2, 4, 6].into_iter().enumerate() {
        let (top, left) = ((tile / 2) * (n_y + 2), (tile % 2) * (n_x + 2));
        for y in 0..n_y {
            for x in 0..n_x {
                assert_eq!(
                    at(top + y, left + x),
                    gray(k),
                    "tile {tile} (k={k}) at ({y}, {x})"
                );
            }
        }
    }
    assert_eq!([gray(0), gray(2), gray(4), gray(6)], [0, 73, 146, 219]);
    // Separators: the two middle rows and columns.
    for x in 0..width {
        assert_eq!([at(3, x), at(4, x)], [MONTAGE_SEPARATOR_GRAY; 2]);
    }
    for y in 0..png.height as usize {
        assert_eq!([at(y, 5), at(y, 6)], [MONTAGE_SEPARATOR_GRAY; 2]);
    }

    assert!(text(&png, "Description").contains("k = 0, 2, 4, 6 of K = 8"));
    assert_eq!(text(&png, "Comment"), prov.summary());
    assert_eq!(text(&png, "Software"), "sparsemap 0.1.0");
}

#[test]
fn montage_of_fewer_than_four_filters_is_one_row_and_saturates() {
    let (count, n_y, n_x) = (3, 2, 4);
    // Filter k is constant at k; window [0, 1]: 0, white, white (saturated).
    let maps: Vec<f32> = (0..count)
        .flat_map(|k| std::iter::repeat_n(k as f32, n_y * n_x))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.png");
    write_maps_montage(&path, &maps, count, n_y, n_x, 1.0, &fixed_provenance()).unwrap();
    let png = read_png(&path);
    assert_eq!((png.width, png.height), (3 * 4 + 2 * 2, 2));
    let row: Vec<u8> = png.pixels[..png.width as usize].to_vec();
    assert_eq!(
        row,
        [0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]
    );
    assert!(text(&png, "Description").contains("k = 0, 1, 2 of K = 3"));
}

#[test]
fn sidecar_round_trips_the_new_fields_and_reads_old_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.npy");
    let prov = provenance("cdl_k32_s9 (bundled)");
    let path = sidecar_path(&out);
    write_sidecar(&path, &prov).unwrap();
    let json = std::fs::read_to_string(&path).unwrap();
    let back: Provenance = serde_json::from_str(&json).unwrap();
    assert_eq!(back, prov);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["acquisition"]["lines_missing"], 1);
    assert_eq!(value["acquisition"]["completion"], "ScanEnd Aborted");
    assert_eq!(value["voxel_mm"][0], 55.0);
    assert!(value["model"].as_str().unwrap().contains("int8"));

    // A sidecar written before these fields existed still reads, with the defaults.
    let mut old = value.clone();
    for key in ["model", "acquisition", "voxel_mm", "orientation"] {
        old.as_object_mut().unwrap().remove(key);
    }
    let old: Provenance = serde_json::from_value(old).unwrap();
    assert_eq!(old.model, None);
    assert_eq!(old.acquisition, None);
    assert_eq!(old.orientation, ARRAY_ORIENTATION);
}

#[test]
fn summary_mentions_model_iterations_and_acquisition() {
    let summary = provenance("cdl_k32_s9").summary();
    for needle in [
        "model default.int8",
        "48 iterations",
        "a=0.5",
        "cdl_k32_s9",
        "scan 7 slice 2 of 5",
        "3 lines received, 1 missing, 2 duplicates, 1 corrupt, 4 reordered",
        "incomplete (ScanEnd Aborted)",
    ] {
        assert!(summary.contains(needle), "{needle:?} not in {summary:?}");
    }
    let summary = fixed_provenance().summary();
    assert!(summary.contains("no model (fixed lambda)") && summary.contains("64 iterations"));
    assert!(!summary.contains("scan "));
}

#[test]
fn png_keeps_provenance_text_even_when_not_latin1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    let prov = provenance("辞書.npy");
    write_png(&path, &test_image(), &prov).unwrap();
    let png = read_png(&path);
    assert_eq!((png.width, png.height), (6, 4));
    assert_eq!(text(&png, "Comment"), prov.summary());
    // Brightest pixel (y=3, x=5) is white; the window is p99.9 of |x|.
    assert_eq!(png.pixels[3 * 6 + 5], 255);
}
