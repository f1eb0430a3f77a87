//! Hostile input to the host's file readers (issue 14): whatever the bytes, `Volume::load`
//! returns (never panics, never aborts on allocation), its error is one line naming the file,
//! and nothing a header declares is allocated or decompressed before it is bounded.
//!
//! Fuzzing (`fuzz/fuzz_targets/nifti_reader.rs`) drives the same reader through
//! `Volume::from_bytes`; inputs it found are kept here as regression tests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::Array3;
use num_complex::Complex32;
use proptest::prelude::*;
use sparsemap_host::dataset::{
    read_simulated, read_split, sidecar_path, write_simulated, write_split, Orientation,
    SimulatedSet, SliceMeta, Split, MAX_NPY_HEADER_BYTES, MAX_SIDECAR_BYTES,
};
use sparsemap_host::volume::{Volume, MAX_DIM, MAX_VOXELS, MAX_VOX_OFFSET};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A single-file NIfTI-1 volume built by hand, field by field (offsets of the NIfTI-1
/// header), so that tests can set any field to any value.
#[derive(Debug, Clone)]
struct Nifti {
    dim: [i16; 8],
    datatype: i16,
    bitpix: i16,
    vox_offset: f32,
    scl: [f32; 2],
    srow: [[f32; 4]; 3],
    big_endian: bool,
}

impl Nifti {
    /// 1 mm, RAS-aligned sform, int16, no extensions.
    fn new(dims: [i16; 3]) -> Self {
        Self {
            dim: [3, dims[0], dims[1], dims[2], 1, 1, 1, 1],
            datatype: 4,
            bitpix: 16,
            vox_offset: 352.0,
            scl: [0.0, 0.0],
            srow: [
                [1.0, 0.0, 0.0, -1.0],
                [0.0, 1.0, 0.0, -2.0],
                [0.0, 0.0, 1.0, -3.0],
            ],
            big_endian: false,
        }
    }

    /// The 348-byte header, the 4-byte extender (0: no extensions), zero padding up to
    /// `vox_offset` (when it is a sane number) and `data`.
    fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let be = self.big_endian;
        let mut h = vec![0u8; 352];
        let mut put = |at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
        let i16b = |v: i16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let f32b = |v: f32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        put(
            0,
            &if be {
                348i32.to_be_bytes()
            } else {
                348i32.to_le_bytes()
            },
        );
        for (n, d) in self.dim.into_iter().enumerate() {
            put(40 + 2 * n, &i16b(d));
        }
        put(70, &i16b(self.datatype));
        put(72, &i16b(self.bitpix));
        for n in 0..4 {
            put(76 + 4 * n, &f32b(1.0)); // pixdim
        }
        put(108, &f32b(self.vox_offset));
        put(112, &f32b(self.scl[0]));
        put(116, &f32b(self.scl[1]));
        put(254, &i16b(1)); // sform_code
        for (row, r) in self.srow.iter().enumerate() {
            for (n, v) in r.iter().enumerate() {
                put(280 + 16 * row + 4 * n, &f32b(*v));
            }
        }
        put(344, b"n+1\0");
        if self.vox_offset.is_finite() && (352.0..=4096.0).contains(&self.vox_offset) {
            h.resize(self.vox_offset as usize, 0);
        }
        h.extend_from_slice(data);
        h
    }
}

/// The 3 × 4 × 5 int16 test volume: file voxel `(a, b, c)` holds `a + 10 b + 100 c`.
fn small() -> (Nifti, Vec<u8>) {
    let mut data = Vec::new();
    for c in 0..5i16 {
        for b in 0..4i16 {
            for a in 0..3i16 {
                data.extend((a + 10 * b + 100 * c).to_le_bytes());
            }
        }
    }
    (Nifti::new([3, 4, 5]), data)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The checks every outcome must pass: an error is one line containing `path`, and `load`
/// agrees with `from_bytes` on the same bytes. Returns the error text, if any.
fn check(path: &Path) -> Option<String> {
    let gz = path.to_string_lossy().ends_with(".gz");
    let loaded = Volume::load(path);
    let in_memory = Volume::from_bytes(&fs::read(path).unwrap(), path, gz);
    match (&loaded, &in_memory) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(a.data().len(), a.dims().iter().product::<usize>());
            assert!(a.data().iter().all(|v| v.is_finite()));
            assert!(a.origin_mm().iter().all(|v| v.is_finite()));
            None
        }
        (Err(a), Err(b)) => {
            let (a, b) = (format!("{a:#}"), format!("{b:#}"));
            assert_eq!(a, b, "load and from_bytes disagree");
            let shown = path.display().to_string();
            assert!(a.starts_with(&format!("{shown}: ")), "{a}");
            assert!(!a.contains('\n'), "not one line: {a}");
            Some(a)
        }
        _ => panic!("load: {loaded:?}\nfrom_bytes: {in_memory:?}"),
    }
}

/// Writes `bytes` to `dir/name` and [`check`]s it.
fn check_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Option<String> {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    check(&p)
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

proptest! {
    #![proptest_config(config())]

    /// (a) Arbitrary bytes as `x.nii`, as `x.nii.gz` (not gzip at all) and gzip-compressed as
    /// `x.nii.gz` (arbitrary decompressed content): no panic, errors name the file. Half the
    /// inputs start with a valid header, so that they get past the magic.
    #[test]
    fn arbitrary_bytes_never_panic_and_errors_name_the_file(
        tail in proptest::collection::vec(any::<u8>(), 0..1200),
        with_header in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = if with_header {
            let mut b = small().0.bytes(&[]);
            b.extend_from_slice(&tail);
            b
        } else {
            tail
        };
        check_bytes(dir.path(), "x.nii", &bytes);
        check_bytes(dir.path(), "x.nii.gz", &bytes);
        check_bytes(dir.path(), "x.nii.gz", &gzip(&bytes));
    }

    /// (b) Single bytes and whole fields of a valid volume overwritten, the file cut or
    /// extended: no panic; a result that loads is a consistent volume.
    #[test]
    fn mutated_valid_nifti_never_panics(
        bytes in proptest::collection::vec((0usize..472, any::<u8>()), 0..4),
        field in proptest::option::of((
            prop::sample::select(vec![
                0usize, 40, 42, 44, 46, 48, 70, 72, 76, 80, 108, 112, 116, 252, 254, 280, 296,
                312, 344,
            ]),
            prop::sample::select(vec![
                0u32, 1, 3, 0xFFFF, 0x7FFF, 0x8000, 0x0400, 0x0401, 0x4000_0000,
                0xFFFF_FFFF, f32::NAN.to_bits(), f32::INFINITY.to_bits(),
                1e30f32.to_bits(), (-1.0f32).to_bits(), 352.5f32.to_bits(),
                (MAX_VOX_OFFSET as f32 + 16.0).to_bits(),
            ]),
            any::<bool>(), // 2 or 4 bytes
        )),
        cut in proptest::option::of(0usize..480),
        extra in proptest::collection::vec(any::<u8>(), 0..3),
        big_endian in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut n, data) = small();
        n.big_endian = big_endian;
        let data = if big_endian {
            data.chunks(2).flat_map(|c| [c[1], c[0]]).collect()
        } else {
            data
        };
        let mut b = n.bytes(&data);
        assert_eq!(b.len(), 472);
        for (at, v) in bytes {
            b[at] = v;
        }
        if let Some((at, v, wide)) = field {
            let v = if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
            if wide {
                b[at..at + 4].copy_from_slice(&v);
            } else if big_endian {
                b[at..at + 2].copy_from_slice(&v[2..]);
            } else {
                b[at..at + 2].copy_from_slice(&v[..2]);
            }
        }
        if let Some(cut) = cut {
            b.truncate(cut);
        }
        b.extend_from_slice(&extra);
        check_bytes(dir.path(), "m.nii", &b);
        check_bytes(dir.path(), "m.nii.gz", &gzip(&b));
    }
}

#[test]
fn the_small_volume_loads_plain_gzipped_and_big_endian() {
    let dir = tempfile::tempdir().unwrap();
    let (n, data) = small();
    let b = n.bytes(&data);
    assert_eq!(check_bytes(dir.path(), "s.nii", &b), None);
    assert_eq!(check_bytes(dir.path(), "s.nii.gz", &gzip(&b)), None);
    let v = Volume::load(dir.path().join("s.nii.gz")).unwrap();
    assert_eq!(v.dims(), [3, 4, 5]);
    assert_eq!(v.get(2, 3, 4), Some(432.0));
    assert_eq!(v.origin_mm(), [-1.0, -2.0, -3.0]);
    // The same bytes as two gzip members (as bgzip writes them) are one stream.
    let (a, z) = b.split_at(200);
    let two = [gzip(a), gzip(z)].concat();
    assert_eq!(
        Volume::from_bytes(&two, "two.nii.gz", true).unwrap().data(),
        v.data()
    );
    let mut be = n.clone();
    be.big_endian = true;
    let swapped: Vec<u8> = data.chunks(2).flat_map(|c| [c[1], c[0]]).collect();
    let w = Volume::from_bytes(&be.bytes(&swapped), "be.nii", false).unwrap();
    assert_eq!(w.data(), v.data());
}

/// The seeds of the fuzz target `nifti_reader` whose names start with `prefix`, with their bytes.
fn nifti_seeds(prefix: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/nifti_reader");
    let mut seeds: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    seeds.sort();
    seeds
}

/// The `valid-*` seeds of the fuzz target `nifti_reader` (fuzz/seeds/nifti_reader; the first
/// byte picks the mode: 0 `.nii`, 1 `.nii.gz`, 2 `.nii` gzipped by the target) are volumes
/// that pass every check, so that fuzzing starts from inputs that reach the decoder.
#[test]
fn nifti_fuzz_seeds_are_valid_volumes() {
    let seeds = nifti_seeds("valid-");
    for (p, bytes) in &seeds {
        let (mode, rest) = bytes.split_first().unwrap();
        let v = Volume::from_bytes(rest, p, mode % 3 == 1);
        assert!(v.is_ok(), "{:#}", v.unwrap_err());
        assert!(bytes.len() < 10_000, "{}: keep seeds small", p.display());
    }
    assert!(seeds.len() >= 4, "{} valid seeds", seeds.len());
}

/// The `regression-*` seeds of `nifti_reader` are inputs the fuzzer found: read in their
/// mode (the first byte), each is now refused with an error naming it, and the plain and the
/// gzipped reading of the same bytes agree.
#[test]
fn nifti_fuzz_regressions_are_refused() {
    let seeds = nifti_seeds("regression-");
    for (p, bytes) in &seeds {
        let (mode, rest) = bytes.split_first().unwrap();
        let (plain, gz) = match mode % 3 {
            0 => (rest.to_vec(), None),
            1 => (Vec::new(), Some(rest.to_vec())),
            _ => (rest.to_vec(), Some(gzip(rest))),
        };
        let dir = tempfile::tempdir().unwrap();
        let plain_error = (mode % 3 != 1).then(|| check_bytes(dir.path(), "r.nii", &plain));
        let gz_error = gz.map(|g| check_bytes(dir.path(), "r.nii.gz", &g));
        for e in [&plain_error, &gz_error].into_iter().flatten() {
            assert!(e.is_some(), "{}: accepted", p.display());
        }
    }
    assert!(!seeds.is_empty());
}

/// Found by fuzzing (`regression-nan-origin`): a qform whose translation (`quatern_x`) is NaN
/// passed every axis check and gave a volume with origin `[NaN, …]`. A non-finite translation
/// in the qform or the sform is now refused before the data are read.
#[test]
fn non_finite_translation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (n, data) = small();
    // quatern_x and quatern_y of a qform-only header; srow_x[3] and srow_z[3] of the sform.
    for (at, v) in [
        (268, f32::NAN),
        (272, f32::INFINITY),
        (292, f32::NAN),
        (324, f32::NEG_INFINITY),
    ] {
        let mut b = n.bytes(&data);
        if at < 280 {
            b[252..254].copy_from_slice(&1i16.to_le_bytes()); // qform_code
            b[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code
            b[256..268].copy_from_slice(&[0; 12]); // identity quaternion
        }
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let e = check_bytes(dir.path(), "t.nii", &b).expect("refused");
        assert!(e.contains("not finite"), "{e}");
    }
}

/// Regression (found when the reader was rewritten, issue 14): the voxels start at
/// `vox_offset`. The `nifti` crate read them from byte 352 whenever the extender byte was 0,
/// so mricron's natbrainlab.nii.gz, jhu189.nii.gz and HarvardOxford-…-1mm.nii.gz
/// (vox_offset 1296, 2640, 1952: a label table between header and voxels) were shifted.
#[test]
fn voxels_start_at_vox_offset() {
    let (mut n, data) = small();
    let plain = Volume::from_bytes(&n.bytes(&data), "a.nii", false).unwrap();
    n.vox_offset = 1296.0;
    let mut b = n.bytes(&data);
    b[352..1296].fill(b'x'); // text that is not voxels
    let offset = Volume::from_bytes(&b, "b.nii", false).unwrap();
    assert_eq!(offset.data(), plain.data());
    for (v, needle) in [(351.0, "vox_offset 351"), (352.5, "vox_offset 352.5")] {
        n.vox_offset = v;
        let e = format!(
            "{:#}",
            Volume::from_bytes(&n.bytes(&data), "c.nii", false).unwrap_err()
        );
        assert!(e.contains(needle), "{e}");
    }
    n.vox_offset = MAX_VOX_OFFSET as f32 + 16.0;
    let e = format!(
        "{:#}",
        Volume::from_bytes(&n.bytes(&data), "d.nii", false).unwrap_err()
    );
    assert!(e.contains("MAX_VOX_OFFSET"), "{e}");
}

/// (c) A tiny file whose header declares a huge volume is refused at once, by a message that
/// names the dims, before anything of that size is allocated or read.
#[test]
fn huge_dims_on_a_tiny_file_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let side = MAX_DIM as i16;
    let cases: [([i16; 3], i16, &str); 5] = [
        // Each side within MAX_DIM, 2^30 voxels: over MAX_VOXELS.
        ([side, side, side], 4, "MAX_VOXELS"),
        ([side + 1, 1, 1], 4, "MAX_DIM"),
        ([30000, 30000, 30000], 64, "MAX_DIM"),
        // Negative (a u16 of 65535 to the nifti crate).
        ([-1, 4, 5], 4, "empty dimension"),
        // Exactly MAX_VOXELS of float64 (512 MiB): within the limits, so the size decides.
        (
            [side, side, (MAX_VOXELS / (MAX_DIM * MAX_DIM)) as i16],
            64,
            "truncated",
        ),
    ];
    for (dims, datatype, needle) in cases {
        let mut n = Nifti::new(dims);
        n.datatype = datatype;
        let b = n.bytes(&[0u8; 64]);
        for (name, bytes) in [("huge.nii", b.clone()), ("huge.nii.gz", gzip(&b))] {
            let t = Instant::now();
            let e = check_bytes(dir.path(), name, &bytes).expect("refused");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{name} {dims:?}: {:?}",
                t.elapsed()
            );
            assert!(e.contains(needle), "{e}");
            let shown = format!("{}, {}, {}", dims[0], dims[1], dims[2]);
            assert!(e.contains(&shown), "dims not named: {e}");
        }
    }
}

/// Writes `header_and_data` followed by `zeros` zero bytes, gzip-compressed, to `path`.
fn write_bomb(path: &Path, header_and_data: &[u8], zeros: usize) {
    let file = fs::File::create(path).unwrap();
    let mut e = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    e.write_all(header_and_data).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..zeros / chunk.len() {
        e.write_all(&chunk).unwrap();
    }
    e.finish().unwrap().flush().unwrap();
}

/// (d) A gzip bomb — 200 MB of zeros after a small valid volume, a few hundred KB on disk —
/// is refused after decompressing one byte past the declared size. Proof that it is not
/// expanded to the end: with its CRC broken the error is still "more than declared", not the
/// CRC error the end of the stream would give.
#[test]
fn gzip_bomb_is_refused_without_expanding_it() {
    let dir = tempfile::tempdir().unwrap();
    let (n, data) = small();
    let valid = n.bytes(&data);
    let bomb = dir.path().join("bomb.nii.gz");
    write_bomb(&bomb, &valid, 200 << 20);
    let on_disk = fs::metadata(&bomb).unwrap().len();
    assert!(on_disk < 2 << 20, "{on_disk} bytes on disk");

    let t = Instant::now();
    let e = format!("{:#}", Volume::load(&bomb).unwrap_err());
    let took = t.elapsed();
    assert!(e.starts_with(&format!("{}: ", bomb.display())), "{e}");
    assert!(e.contains("more than the 472 bytes"), "{e}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The same bomb with a broken CRC-32 (the first 4 of the 8 trailer bytes).
    let mut b = fs::read(&bomb).unwrap();
    let at = b.len() - 8;
    b[at] ^= 0xFF;
    let broken = dir.path().join("broken.nii.gz");
    fs::write(&broken, &b).unwrap();
    let e = format!("{:#}", Volume::load(&broken).unwrap_err());
    assert!(e.contains("more than the 472 bytes"), "{e}");

    // Whereas a stream of the declared size with a broken CRC is read to its end: refused.
    let mut g = gzip(&valid);
    let at = g.len() - 8;
    g[at] ^= 0xFF;
    let e = check_bytes(dir.path(), "crc.nii.gz", &g).expect("bad CRC refused");
    assert!(e.contains("cannot read the NIfTI-1 gzip stream"), "{e}");
}

/// A stream shorter or longer than declared, in either form, is an error naming the sizes.
#[test]
fn size_must_match_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let (n, data) = small();
    let b = n.bytes(&data);
    let short = &b[..b.len() - 1];
    let long = [b.as_slice(), &[0]].concat();
    for (name, bytes, needle) in [
        (
            "short.nii",
            short.to_vec(),
            "is 471 bytes, but its header declares 472",
        ),
        ("short.nii.gz", gzip(short), "ends after 471 bytes"),
        (
            "long.nii",
            long.clone(),
            "is 473 bytes, but its header declares 472",
        ),
        ("long.nii.gz", gzip(&long), "more than the 472 bytes"),
        (
            "header.nii",
            b[..300].to_vec(),
            "inside the 348-byte header",
        ),
        (
            "header.nii.gz",
            gzip(&b[..300]),
            "inside the 348-byte header",
        ),
        ("empty.nii.gz", Vec::new(), "gzip"),
    ] {
        let e = check_bytes(dir.path(), name, &bytes).expect(name);
        assert!(e.contains(needle), "{name}: {e}");
    }
}

/// FIFOs, devices and directories are refused before they are opened (a FIFO would block
/// the open, /dev/zero would never end), also behind a symbolic link.
#[test]
fn special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let expect = |p: PathBuf| {
        let e = format!("{:#}", Volume::load(&p).unwrap_err());
        assert!(e.starts_with(&format!("{}: ", p.display())), "{e}");
        assert!(e.contains("not a regular file"), "{e}");
    };
    let fifo = dir.path().join("fifo.nii");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    expect(fifo);
    let zero = dir.path().join("zero.nii.gz");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    expect(zero);
    let sub = dir.path().join("dir.nii");
    fs::create_dir(&sub).unwrap();
    expect(sub);
}

// ---------------------------------------------------------------------------------------------
// .npz data sets (dataset::read_split, read_simulated)

/// A 3 × 8 × 6 split.
fn split(name: &str) -> Split {
    let (n, h, w) = (3, 8, 6);
    Split {
        name: name.into(),
        targets: Array3::from_shape_fn((n, h, w), |(s, y, x)| {
            Complex32::new((s * 100 + y * 10 + x) as f32, -(y as f32))
        }),
        head_masks: Array3::from_shape_fn((n, h, w), |(s, y, x)| (s + y * x) % 3 == 0),
        slices: (0..n)
            .map(|s| SliceMeta {
                volume: "colin27_t1".into(),
                source: "ch2.nii.gz".into(),
                orientation: Orientation::Axial,
                index: s,
                k_range: [s, s + 1],
                plane_shape: [h, w],
                phase_seed: s as u64,
                peak: 1.0,
            })
            .collect(),
        provenance: serde_json::json!({}),
    }
}

/// An `.npy` member: version 1 (or 2 with `wide`) header `dict` padded as NumPy pads it,
/// then `data`.
fn npy(dict: &str, data: &[u8], wide: bool) -> Vec<u8> {
    let prefix = if wide { 12 } else { 10 };
    let mut text = dict.as_bytes().to_vec();
    while !(prefix + text.len() + 1).is_multiple_of(64) {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    if wide {
        out.extend([2, 0]);
        out.extend((text.len() as u32).to_le_bytes());
    } else {
        out.extend([1, 0]);
        out.extend((text.len() as u16).to_le_bytes());
    }
    out.extend(text);
    out.extend(data);
    out
}

fn dict(descr: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
}

/// Writes the members (name, bytes) stored uncompressed to `path`.
fn write_zip(path: &Path, members: &[(&str, Vec<u8>)]) {
    let mut z = ZipWriter::new(fs::File::create(path).unwrap());
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(false);
    for (name, bytes) in members {
        z.start_file(*name, options).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// `read_split(path)` fails; its error names the archive or its sidecar and contains
/// `needle`, and it came quickly.
fn expect_split_error(path: &Path, needle: &str) {
    let t = Instant::now();
    let e = format!("{:#}", read_split(path).expect_err(needle));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let (npz, json) = (
        path.display().to_string(),
        sidecar_path(path).display().to_string(),
    );
    assert!(e.contains(&npz) || e.contains(&json), "no file named: {e}");
    assert!(e.contains(needle), "expected {needle:?} in {e}");
}

/// Members whose `.npy` headers declare far more than the file holds (or than the sidecar
/// says) are refused before their arrays are allocated.
#[test]
fn npz_members_declaring_huge_arrays_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_split(dir.path(), &split("good")).unwrap();
    let json = fs::read_to_string(sidecar_path(&good)).unwrap();
    let mask = npy(&dict("|u1", "(3, 8, 6)"), &[0; 144], false);
    let case = |name: &str, target: Vec<u8>, sidecar: &str| {
        let p = dir.path().join(format!("{name}.npz"));
        write_zip(
            &p,
            &[("target.npy", target), ("head_mask.npy", mask.clone())],
        );
        fs::write(sidecar_path(&p), sidecar).unwrap();
        p
    };
    let data = vec![0u8; 3 * 8 * 6 * 8];

    // A target of 10^15 complex values (8 PB) in a few hundred bytes.
    let huge = npy(&dict("<c8", "(100000, 100000, 100000)"), &data, false);
    expect_split_error(
        &case("huge", huge, &json),
        "differs from the shape [3, 8, 6]",
    );
    // The sidecar agrees with the header ([3, 100000, 100000]: 240 GB): the member's size
    // still does not.
    let mut big: serde_json::Value = serde_json::from_str(&json).unwrap();
    big["shape"] = serde_json::json!([3, 100_000, 100_000]);
    let big = big.to_string();
    let huge = npy(&dict("<c8", "(3, 100000, 100000)"), &data, false);
    expect_split_error(&case("agreed", huge, &big), "but its .npy header declares");
    // A shape whose byte count overflows u64.
    let mut over: serde_json::Value = serde_json::from_str(&json).unwrap();
    over["shape"] = serde_json::json!([3, usize::MAX / 2, 3]);
    let huge = npy(
        &dict("<c8", &format!("(3, {}, 3)", usize::MAX / 2)),
        &data,
        false,
    );
    expect_split_error(&case("overflow", huge, &over.to_string()), "more than 2^64");
    // A version 2 header claiming 4 GiB of dictionary.
    let mut wide = npy(&dict("<c8", "(3, 8, 6)"), &data, true);
    wide[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_split_error(&case("wide", wide, &json), "MAX_NPY_HEADER_BYTES");
    // A dictionary of nested brackets (the header parser recurses).
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep = npy(&deep, &data, true);
    assert!(deep.len() < MAX_NPY_HEADER_BYTES + data.len());
    expect_split_error(&case("deep", deep, &json), "nests deeper");
    // A structured dtype (no single item size).
    let rec = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3, 8, 6), }";
    let rec = npy(rec, &data, false);
    expect_split_error(&case("record", rec, &json), "dtype");
    // A zero-sized dtype would make any shape fit in no bytes.
    let mut zero: serde_json::Value = serde_json::from_str(&json).unwrap();
    zero["shape"] = serde_json::json!([3, 1u64 << 40, 1u64 << 40]);
    let z = npy(
        &dict("|u0", "(3, 1099511627776, 1099511627776)"),
        &[],
        false,
    );
    expect_split_error(&case("zero", z, &zero.to_string()), "unsupported dtype");
    // The right shape in the wrong dtype.
    let f8 = npy(&dict("<c16", "(3, 8, 6)"), &[0; 3 * 8 * 6 * 16], false);
    expect_split_error(&case("c16", f8, &json), "has dtype '<c16', not complex64");

    // The valid members as written by hand read back.
    let fine = npy(&dict("<c8", "(3, 8, 6)"), &data, false);
    let p = case("fine", fine, &json);
    assert_eq!(read_split(&p).unwrap().targets, Array3::zeros((3, 8, 6)));
}

/// The zip directory claiming a member larger than the file, a sidecar larger than the
/// limit or inconsistent in itself, and special files are refused before reading.
#[test]
fn npz_and_sidecar_sizes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_split(dir.path(), &split("good")).unwrap();
    let bytes = fs::read(&good).unwrap();
    let json = fs::read_to_string(sidecar_path(&good)).unwrap();

    // Patch the sizes in the central directory entry of the first member ("target.npy").
    let cd = bytes
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    let mut patched = bytes.clone();
    for at in [cd + 20, cd + 24] {
        patched[at..at + 4].copy_from_slice(&0x7FFF_0000u32.to_le_bytes());
    }
    let p = dir.path().join("patched.npz");
    fs::write(&p, &patched).unwrap();
    fs::write(sidecar_path(&p), &json).unwrap();
    expect_split_error(&p, "target");

    // A sidecar over the limit (sparse: no disk used) is not read.
    let p = dir.path().join("bigjson.npz");
    fs::write(&p, &bytes).unwrap();
    let f = fs::File::create(sidecar_path(&p)).unwrap();
    f.set_len(MAX_SIDECAR_BYTES + 1).unwrap();
    expect_split_error(&p, "MAX_SIDECAR_BYTES");

    // count, shape[0] and the slice records disagree.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["shape"][0] = 1_000_000_000.into();
    v["count"] = 1_000_000_000.into();
    let p = dir.path().join("count.npz");
    fs::write(&p, &bytes).unwrap();
    fs::write(sidecar_path(&p), v.to_string()).unwrap();
    expect_split_error(&p, "slice records");

    // A FIFO as the sidecar or the archive is refused, not opened (which would block).
    let p = dir.path().join("fifo.npz");
    fs::write(&p, &bytes).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(sidecar_path(&p))
        .status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    expect_split_error(&p, "not a regular file");
    let p = dir.path().join("fifo2.npz");
    let made = std::process::Command::new("mkfifo").arg(&p).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    fs::write(sidecar_path(&p), &json).unwrap();
    expect_split_error(&p, "not a regular file");
}

/// A simulated set, so that the arbitrary-mutation property covers every member kind.
fn simulated() -> SimulatedSet {
    let split = split("sim");
    SimulatedSet {
        kspace: split.targets.mapv(|z| z * 0.5),
        masks: Array3::from_shape_fn((3, 8, 6), |(_, y, _)| y % 2 == 0),
        zero_filled: split.targets.mapv(|z| z.conj()),
        acquisition: serde_json::json!({}),
        split,
    }
}

proptest! {
    #![proptest_config(config())]

    /// Bytes of a valid archive overwritten, or the archive cut: `read_split` and
    /// `read_simulated` return (no panic, no abort), and an error names a file.
    #[test]
    fn mutated_npz_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sim.npz");
        write_simulated(&p, &simulated()).unwrap();
        let mut b = fs::read(&p).unwrap();
        for (at, v) in flips {
            let at = at.index(b.len());
            b[at] = v;
        }
        if let Some(cut) = cut {
            b.truncate(cut.index(b.len()));
        }
        fs::write(&p, &b).unwrap();
        let names = |e: &anyhow::Error| {
            let e = format!("{e:#}");
            let (npz, json) = (p.display().to_string(), sidecar_path(&p).display().to_string());
            assert!(e.contains(&npz) || e.contains(&json), "{e}");
        };
        if let Err(e) = read_simulated(&p) {
            names(&e);
        }
        if let Err(e) = read_split(&p) {
            names(&e);
        }
    }
}

/// A 4-D series loads only when opted in (issue 12: nibabel's EPI), as its first volume; the
/// other volumes must still be there in full, and nothing more.
#[test]
fn four_d_series_load_as_their_first_volume_only_when_opted_in() {
    use sparsemap_host::volume::LoadOptions;
    let dir = tempfile::tempdir().unwrap();
    let (three_d, data) = small();
    let first = Volume::from_bytes(&three_d.bytes(&data), "3d.nii", false).unwrap();
    let mut series = three_d.clone();
    series.dim[0] = 4;
    series.dim[4] = 2;
    let second: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
    let both = series.bytes(&[data.as_slice(), &second].concat());
    let opted = LoadOptions {
        first_volume_of_4d: true,
        ..LoadOptions::default()
    };
    for (name, bytes) in [("s.nii", both.clone()), ("s.nii.gz", gzip(&both))] {
        let p = dir.path().join(name);
        fs::write(&p, &bytes).unwrap();
        let e = format!("{:#}", Volume::load(&p).unwrap_err());
        assert!(e.contains("not a 3-D volume"), "{e}");
        let v = Volume::load_with(&p, opted).unwrap();
        assert_eq!(v.dims(), first.dims());
        assert_eq!(v.data(), first.data());
    }
    let short = &both[..both.len() - 1];
    let long = [both.as_slice(), &[0]].concat();
    for (name, bytes, needle) in [
        ("short.nii", short.to_vec(), "truncated"),
        ("short.nii.gz", gzip(short), "ends after"),
        ("long.nii", long.clone(), "header declares"),
        ("long.nii.gz", gzip(&long), "more than the"),
    ] {
        let p = dir.path().join(name);
        fs::write(&p, &bytes).unwrap();
        let e = format!("{:#}", Volume::load_with(&p, opted).unwrap_err());
        assert!(
            e.contains(needle) && e.contains("x 2 volume(s)"),
            "{name}: {e}"
        );
    }
    // A fifth dimension is still refused.
    let mut five = series.clone();
    five.dim[0] = 5;
    five.dim[5] = 2;
    let p = dir.path().join("five.nii");
    fs::write(&p, five.bytes(&[])).unwrap();
    let e = format!("{:#}", Volume::load_with(&p, opted).unwrap_err());
    assert!(e.contains("not a 3-D volume or a 4-D series"), "{e}");
}

/// A 0.5 mm volume is refused by default and loads, at its size, when opted in.
#[test]
fn other_voxel_sizes_load_only_when_opted_in() {
    use sparsemap_host::volume::LoadOptions;
    let dir = tempfile::tempdir().unwrap();
    let (mut n, data) = small();
    for (axis, row) in n.srow.iter_mut().enumerate() {
        row[axis] = 0.5;
    }
    let p = dir.path().join("half.nii");
    fs::write(&p, n.bytes(&data)).unwrap();
    let e = format!("{:#}", Volume::load(&p).unwrap_err());
    assert!(e.contains("not 1 mm isotropic"), "{e}");
    let v = Volume::load_with(
        &p,
        LoadOptions {
            any_voxel_size: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(v.voxel_mm(), [0.5; 3]);
}

/// An oblique volume (a tilted EPI) is refused by default and, when opted in, loads with each
/// voxel axis taken as its nearest world axis; a tilt beyond 30° is still refused.
#[test]
fn oblique_volumes_load_as_acquired_only_when_opted_in() {
    use sparsemap_host::volume::LoadOptions;
    let dir = tempfile::tempdir().unwrap();
    let (straight, data) = small();
    let want = Volume::from_bytes(&straight.bytes(&data), "s.nii", false).unwrap();
    // A tilted axis is longer than 1 mm along its column, so the size check is opted out too.
    let opted = LoadOptions {
        oblique_as_nearest_axis: true,
        any_voxel_size: true,
        ..LoadOptions::default()
    };
    let mut tilted = straight.clone();
    // Voxel axis 1 tilted by atan(0.16) ≈ 9° towards z, as in nibabel's example4d.
    tilted.srow[2][1] = 0.16;
    let p = dir.path().join("tilted.nii");
    fs::write(&p, tilted.bytes(&data)).unwrap();
    let e = format!("{:#}", Volume::load(&p).unwrap_err());
    assert!(e.contains("oblique"), "{e}");
    let v = Volume::load_with(&p, opted).unwrap();
    assert_eq!((v.dims(), v.data()), (want.dims(), want.data()));
    let mut steep = straight;
    steep.srow[2][1] = 1.0; // 45°
    fs::write(&p, steep.bytes(&data)).unwrap();
    let e = format!("{:#}", Volume::load_with(&p, opted).unwrap_err());
    assert!(e.contains("oblique"), "{e}");
}
