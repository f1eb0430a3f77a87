//! Crafted inputs, one per class (docs/design.md §7.3): every one is refused with exit status 1
//! and a single line naming the file and the problem, under an address-space limit so that
//! an attempt to allocate what a header declares fails the test instead of succeeding
//! quietly. The valid-but-unusual classes (Fortran order, big-endian, a dictionary off its
//! normalisation, a non-Latin file name) must succeed and give the right image.
//!
//! `SPARSEMAP_HOSTILE_REPORT=FILE` also writes a Markdown table of the classes with each
//! run's peak RSS (measured with `/usr/bin/time`); `scripts/hostile-inputs.sh` does that.

use ndarray::{Array1, Array2, Array3};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use num_complex::Complex32;
use prost::Message;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Address-space limit of every run: a normal reconstruction of the bundled 256² example
/// with the bundled int8 model runs in 400 MiB; each crafted header declares far more.
const ADDRESS_SPACE_LIMIT: u64 = 512 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> PathBuf {
    repo().join("examples/colin27").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={ADDRESS_SPACE_LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sparsemap"))
        .args(args)
        .output()
        .expect("prlimit (util-linux) runs the binary")
}

/// Peak RSS (KiB) of one run, for the report only.
fn peak_rss_kib(args: &[&str]) -> Option<u64> {
    let output = Command::new("/usr/bin/time")
        .args(["-f", "PEAK_RSS_KIB %M", "prlimit"])
        .arg(format!("--as={ADDRESS_SPACE_LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sparsemap"))
        .args(args)
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB ")?.trim().parse().ok())
}

fn write_npy<A: WriteNpyExt>(path: &Path, array: &A) {
    array.write_npy(File::create(path).unwrap()).unwrap();
}

/// An `.npy` file with a hand-made header dictionary and `data` after it.
fn raw_npy(path: &Path, dict: &str, data: &[u8]) {
    let mut header = dict.as_bytes().to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn sparse_file(path: &Path, len: u64) {
    File::create(path).unwrap().set_len(len).unwrap();
}

fn bundled_model() -> tract_onnx::pb::ModelProto {
    let bytes = std::fs::read(repo().join("models/lambda/default.int8.onnx")).unwrap();
    tract_onnx::pb::ModelProto::decode(&bytes[..]).unwrap()
}

fn write_model(path: &Path, model: &tract_onnx::pb::ModelProto) {
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

fn set_metadata(model: &mut tract_onnx::pb::ModelProto, key: &str, value: &str) {
    let entry = model
        .metadata_props
        .iter_mut()
        .find(|e| e.key == key)
        .unwrap();
    entry.value = value.to_string();
}

/// One crafted input: the arguments after `recon`, and what the error must mention.
struct Case {
    class: &'static str,
    args: Vec<String>,
    needles: Vec<String>,
}

fn recon_args(dir: &Path, kspace: &Path, mask: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "recon".to_string(),
        "--kspace".into(),
        kspace.display().to_string(),
        "--mask".into(),
        mask.display().to_string(),
        "--out".into(),
        dir.join("x.npy").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn cases(dir: &Path) -> Vec<Case> {
    let p = |name: &str| dir.join(name);
    let s = |path: &Path| path.display().to_string();
    let kspace = example("kspace.npy");
    let mask = example("mask.npy");
    let mut cases = Vec::new();
    let mut kspace_case = |class: &'static str, file: PathBuf, needle: &str| {
        cases.push(Case {
            class,
            args: recon_args(dir, &file, &mask, &[]),
            needles: vec![s(&file), needle.to_string()],
        });
    };

    raw_npy(
        &p("tera.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (1000000, 1000000), }",
        &[0; 64],
    );
    kspace_case(
        "npy: header declares 10^12 elements",
        p("tera.npy"),
        "declares shape",
    );
    raw_npy(
        &p("two_gib.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (16384, 16384), }",
        &[0; 128],
    );
    kspace_case(
        "npy: 2 GiB declared on a 128-byte file",
        p("two_gib.npy"),
        "declares shape",
    );
    raw_npy(&p("overflow.npy"), "{'descr': '<c16', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", &[]);
    kspace_case(
        "npy: declared size overflows usize",
        p("overflow.npy"),
        "more bytes than memory can address",
    );
    let mut half = vec![0u8; 256 * 256 * 8 / 2];
    half[0] = 1;
    raw_npy(
        &p("truncated.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (256, 256), }",
        &half,
    );
    kspace_case(
        "npy: truncated data",
        p("truncated.npy"),
        "truncated or corrupt",
    );
    raw_npy(
        &p("trailing.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (4, 4), }",
        &[0; 200],
    );
    kspace_case(
        "npy: bytes after the data",
        p("trailing.npy"),
        "declares shape",
    );
    std::fs::write(p("magic.npy"), b"PK\x03\x04 this is a zip, not an npy").unwrap();
    kspace_case("npy: wrong magic", p("magic.npy"), "not an .npy file");
    let mut huge_header = b"\x93NUMPY\x02\x00".to_vec();
    huge_header.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_header.extend_from_slice(b"{'descr'");
    std::fs::write(p("header_len.npy"), huge_header).unwrap();
    kspace_case(
        "npy: 4 GiB header length",
        p("header_len.npy"),
        "header declares",
    );
    raw_npy(
        &p("dict.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (4, 4, ",
        &[0; 128],
    );
    kspace_case(
        "npy: malformed header dictionary",
        p("dict.npy"),
        "invalid .npy header",
    );
    raw_npy(
        &p("nested.npy"),
        &format!(
            "{{'descr': {}, 'fortran_order': False, 'shape': (4, 4), }}",
            "{".repeat(16)
        ),
        &[],
    );
    kspace_case(
        "npy: bracket nesting (the header parser was exponential: a hang)",
        p("nested.npy"),
        "nests brackets 18 deep",
    );
    raw_npy(
        &p("int.npy"),
        "{'descr': '<i4', 'fortran_order': False, 'shape': (4, 4), }",
        &[0; 64],
    );
    kspace_case(
        "npy: unsupported dtype",
        p("int.npy"),
        "unsupported .npy dtype",
    );
    raw_npy(
        &p("struct.npy"),
        "{'descr': [('re', '<f4'), ('im', '<f4')], 'fortran_order': False, 'shape': (4, 4), }",
        &[0; 128],
    );
    kspace_case("npy: structured dtype", p("struct.npy"), "structured dtype");
    raw_npy(
        &p("f4.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 32), }",
        &[0; 4096],
    );
    kspace_case(
        "npy: real k-space",
        p("f4.npy"),
        "must be complex64 or complex128",
    );
    sparse_file(&p("big.npy"), 1 << 40);
    kspace_case(
        "npy: 1 TiB (sparse) file",
        p("big.npy"),
        "larger than any valid",
    );
    std::fs::write(p("empty.npy"), b"").unwrap();
    kspace_case("npy: empty file", p("empty.npy"), "not an .npy file");
    raw_npy(
        &p("wide.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2048), }",
        &[0; 2 * 2048 * 8],
    );
    kspace_case(
        "npy: side beyond the grid limit",
        p("wide.npy"),
        "each side must be 1..=512",
    );
    let mut nan = Array2::<Complex32>::zeros((32, 32));
    nan[(3, 4)] = Complex32::new(f32::NAN, 0.0);
    write_npy(&p("nan.npy"), &nan);
    kspace_case("k-space: NaN", p("nan.npy"), "NaN or infinite");
    write_npy(&p("coils.npy"), &Array3::<Complex32>::zeros((33, 32, 32)));
    kspace_case("k-space: too many coils", p("coils.npy"), "33 coils");
    write_npy(&p("odd.npy"), &Array2::<Complex32>::zeros((100, 100)));
    write_npy(&p("odd_mask.npy"), &Array2::<u8>::ones((100, 100)));
    cases.push(Case {
        class: "k-space: grid not a power of two",
        args: recon_args(dir, &p("odd.npy"), &p("odd_mask.npy"), &[]),
        needles: vec![s(&p("odd.npy")), "power of two".into()],
    });
    let example_kspace = Array2::<Complex32>::read_npy(File::open(&kspace).unwrap()).unwrap();
    write_npy(&p("subnormal.npy"), &example_kspace.mapv(|v| v * 1e-44));
    cases.push(Case {
        class: "k-space: subnormal values (all-NaN image before)",
        args: recon_args(dir, &p("subnormal.npy"), &mask, &[]),
        needles: vec![s(&p("subnormal.npy")), "too small to scale".into()],
    });
    // Finite, but the inverse FFT's sums exceed float32 (a plain rescaling, e.g. by 1e36,
    // is fine: the solve is scale-invariant).
    let peak = example_kspace.iter().map(|v| v.norm()).fold(0f32, f32::max);
    write_npy(
        &p("overflowing.npy"),
        &example_kspace.mapv(|v| v * (f32::MAX / 2.0 / peak)),
    );
    cases.push(Case {
        class: "k-space: values that overflow float32 on the way",
        args: recon_args(dir, &p("overflowing.npy"), &mask, &[]),
        needles: vec![s(&p("overflowing.npy")), "overflow".into()],
    });
    write_npy(&p("mask32.npy"), &Array2::<u8>::ones((32, 32)));
    cases.push(Case {
        class: "mask: shape differs from the k-space",
        args: recon_args(dir, &kspace, &p("mask32.npy"), &[]),
        needles: vec![s(&p("mask32.npy")), "32x32".into()],
    });

    // Special files: never opened, so a FIFO cannot block the reader.
    let fifo = p("fifo.npy");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    cases.push(Case {
        class: "special file: FIFO as k-space",
        args: recon_args(dir, &fifo, &mask, &[]),
        needles: vec![s(&fifo), "not a regular file".into()],
    });
    cases.push(Case {
        class: "special file: /dev/zero as mask",
        args: recon_args(dir, &kspace, Path::new("/dev/zero"), &[]),
        needles: vec!["/dev/zero".into(), "not a regular file".into()],
    });
    cases.push(Case {
        class: "special file: directory as model",
        args: recon_args(dir, &kspace, &mask, &["--model", &s(dir)]),
        needles: vec![s(dir), "not a regular file".into()],
    });
    cases.push(Case {
        class: "special file: FIFO as stream",
        args: vec![
            "recon".into(),
            "--input".into(),
            s(&fifo),
            "--out-dir".into(),
            s(&p("stream")),
        ],
        needles: vec![s(&fifo), "not a regular file".into()],
    });

    // Models.
    std::fs::write(p("junk.onnx"), b"\x08\x07\x12\x04junk\xff\xff\xff\xff\x0f").unwrap();
    let mut model_case = |class: &'static str, file: PathBuf, needle: &str| {
        cases.push(Case {
            class,
            args: recon_args(
                dir,
                &kspace,
                &mask,
                &["--model", &file.display().to_string()],
            ),
            needles: vec![file.display().to_string(), needle.to_string()],
        });
    };
    model_case("model: not protobuf", p("junk.onnx"), "not an ONNX model");
    sparse_file(&p("huge.onnx"), 65 << 20);
    model_case(
        "model: larger than 64 MB",
        p("huge.onnx"),
        "larger than any valid model",
    );
    let mut m = bundled_model();
    set_metadata(&mut m, "sparsemap.iterations", "1000000000");
    write_model(&p("iterations.onnx"), &m);
    model_case(
        "model: 10^9 iterations in its metadata",
        p("iterations.onnx"),
        "sparsemap.iterations = 1000000000",
    );
    let mut m = bundled_model();
    set_metadata(&mut m, "sparsemap.lambda_max", "1e39");
    write_model(&p("lambda_max.onnx"), &m);
    model_case(
        "model: lambda_max overflows float32",
        p("lambda_max.onnx"),
        "overflows float32",
    );
    let mut m = bundled_model();
    set_metadata(&mut m, "sparsemap.lowpass_weight", "nan");
    write_model(&p("lowpass.onnx"), &m);
    model_case(
        "model: NaN low-pass weight",
        p("lowpass.onnx"),
        "sparsemap.lowpass_weight",
    );
    let mut m = bundled_model();
    m.metadata_props.clear();
    write_model(&p("plain.onnx"), &m);
    model_case(
        "model: no sparsemap metadata",
        p("plain.onnx"),
        "not a sparsemap Lambda model",
    );
    let mut m = bundled_model();
    let graph = m.graph.as_mut().unwrap();
    let init = graph
        .initializer
        .iter_mut()
        .find(|t| t.dims.len() == 4)
        .unwrap();
    init.dims = vec![1 << 20, 1 << 20, 3, 3];
    write_model(&p("init_dims.onnx"), &m);
    model_case(
        "model: initialiser declares 10^13 elements",
        p("init_dims.onnx"),
        "larger than",
    );
    let mut m = bundled_model();
    let graph = m.graph.as_mut().unwrap();
    let init = graph
        .initializer
        .iter_mut()
        .find(|t| t.dims.len() == 4)
        .unwrap();
    let len = init.raw_data.len();
    init.raw_data.truncate(len / 2);
    init.float_data.clear();
    write_model(&p("init_data.onnx"), &m);
    model_case(
        "model: initialiser with half its data",
        p("init_data.onnx"),
        "needs",
    );
    let mut m = bundled_model();
    let graph = m.graph.as_mut().unwrap();
    graph.node[0].op_type = "Loop".into();
    write_model(&p("op.onnx"), &m);
    model_case(
        "model: operator outside the contract",
        p("op.onnx"),
        "operator Loop",
    );
    let mut m = bundled_model();
    let graph = m.graph.as_mut().unwrap();
    let node = graph
        .node
        .iter_mut()
        .find(|n| !n.attribute.is_empty())
        .unwrap();
    node.attribute[0].ints = vec![1 << 40; 2];
    write_model(&p("attribute.onnx"), &m);
    model_case(
        "model: integer attribute 2^40",
        p("attribute.onnx"),
        "out of range",
    );
    let mut m = bundled_model();
    let graph = m.graph.as_mut().unwrap();
    let init = graph
        .initializer
        .iter_mut()
        .find(|t| t.dims.len() == 4)
        .unwrap();
    init.external_data
        .push(tract_onnx::pb::StringStringEntryProto {
            key: "location".into(),
            value: "/etc/passwd".into(),
        });
    init.data_location = Some(1);
    write_model(&p("external.onnx"), &m);
    model_case(
        "model: external data path",
        p("external.onnx"),
        "external data",
    );

    // Dictionaries and sparsity levels.
    raw_npy(
        &p("many.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 5, 5), }",
        &[0; 100],
    );
    let mut dictionary_case = |class: &'static str, file: PathBuf, needle: &str| {
        cases.push(Case {
            class,
            args: recon_args(
                dir,
                &kspace,
                &mask,
                &[
                    "--lambda",
                    "0.01",
                    "--dictionary",
                    &file.display().to_string(),
                ],
            ),
            needles: vec![file.display().to_string(), needle.to_string()],
        });
    };
    dictionary_case(
        "dictionary: K = 100000 declared",
        p("many.npy"),
        "declares shape [100000, 5, 5]",
    );
    raw_npy(
        &p("k300.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (300, 3, 3), }",
        &[0; 300 * 9 * 4],
    );
    dictionary_case(
        "dictionary: K = 300 > 256",
        p("k300.npy"),
        "K = 300 filters",
    );
    write_npy(&p("side13.npy"), &Array3::<f32>::ones((2, 13, 13)));
    dictionary_case("dictionary: 13x13 filters", p("side13.npy"), "13x13");
    write_npy(&p("zeros.npy"), &Array3::<f32>::zeros((4, 5, 5)));
    dictionary_case("dictionary: all zero", p("zeros.npy"), "no energy");
    let mut nan_dictionary = Array3::<f32>::ones((2, 3, 3));
    nan_dictionary[(1, 1, 1)] = f32::INFINITY;
    write_npy(&p("inf_dictionary.npy"), &nan_dictionary);
    dictionary_case(
        "dictionary: infinite tap",
        p("inf_dictionary.npy"),
        "NaN or infinite",
    );
    // Normalised (L = 256 * (9 a)^2 = 1), so the only problem is the budget.
    write_npy(
        &p("k256.npy"),
        &Array3::<f32>::from_elem((256, 3, 3), 1.0 / 144.0),
    );
    dictionary_case(
        "dictionary: K = 256 on 256² exceeds the filter-pixel budget",
        p("k256.npy"),
        "budget",
    );
    // Header and data consistent (the data a sparse hole): the file size is the problem.
    raw_npy(
        &p("maps.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (256, 512, 512), }",
        &[],
    );
    let header_len = std::fs::metadata(p("maps.npy")).unwrap().len();
    File::options()
        .write(true)
        .open(p("maps.npy"))
        .unwrap()
        .set_len(header_len + (256 << 20))
        .unwrap();
    cases.push(Case {
        class: "lambda: 256 MB of maps declared",
        args: recon_args(dir, &kspace, &mask, &["--lambda", &s(&p("maps.npy"))]),
        needles: vec![s(&p("maps.npy")), "larger than any valid".into()],
    });
    write_npy(&p("negative.npy"), &Array1::<f32>::from_elem(24, -1.0));
    cases.push(Case {
        class: "lambda: negative levels",
        args: recon_args(dir, &kspace, &mask, &["--lambda", &s(&p("negative.npy"))]),
        needles: vec![s(&p("negative.npy")), "negative".into()],
    });

    // Flags.
    cases.push(Case {
        class: "flag: --iterations 10^8",
        args: recon_args(dir, &kspace, &mask, &["--iterations", "100000000"]),
        needles: vec!["--iterations = 100000000".into(), "10000".into()],
    });
    cases.push(Case {
        class: "flag: --lowpass-weight inf",
        args: recon_args(
            dir,
            &kspace,
            &mask,
            &["--lambda", "0.01", "--lowpass-weight", "inf"],
        ),
        needles: vec!["--lowpass-weight".into(), "finite".into()],
    });

    // Outputs: refused before any work.
    let out_case = |class: &'static str, args: Vec<String>, needles: Vec<String>| Case {
        class,
        args,
        needles,
    };
    let base = |out: &Path| -> Vec<String> {
        vec![
            "recon".into(),
            "--kspace".into(),
            s(&kspace),
            "--mask".into(),
            s(&mask),
            "--out".into(),
            s(out),
        ]
    };
    cases.push(out_case(
        "output: --out X.json is its own sidecar",
        base(&p("x.json")),
        vec![s(&p("x.json")), "same file".into()],
    ));
    let mut args = base(&p("y.npy"));
    args.extend(["--png".into(), s(&p("y.npy"))]);
    cases.push(out_case(
        "output: --png equals --out",
        args,
        vec!["--png".into(), "same file".into()],
    ));
    let mut args = base(&p("z.npy"));
    args.extend(["--lambda-out".into(), s(&p("z.json"))]);
    cases.push(out_case(
        "output: --lambda-out equals the sidecar",
        args,
        vec!["--lambda-out".into(), "same file".into()],
    ));
    cases.push(out_case(
        "output: --out overwrites the k-space input",
        base(&kspace),
        vec![s(&kspace), "would overwrite".into()],
    ));
    cases.push(out_case(
        "output: directory does not exist",
        base(&p("missing/x.npy")),
        vec![s(&p("missing/x.npy")), "does not exist".into()],
    ));
    cases.push(out_case(
        "output: directory not writable",
        base(Path::new("/proc/x.npy")),
        vec!["/proc".into(), "cannot write".into()],
    ));
    cases
}

fn one_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_crafted_input_is_refused_with_one_line_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases = cases(dir);
    let mut report = Vec::new();
    for case in &cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let output = run(&args);
        let err = one_line(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: expected exit status 1, got {:?}; stderr: {err}",
            case.class,
            output.status
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{}: not one line: {err}",
            case.class
        );
        assert!(
            err.starts_with("sparsemap: error: "),
            "{}: {err}",
            case.class
        );
        for needle in &case.needles {
            assert!(
                err.contains(needle.as_str()),
                "{}: {err:?} does not mention {needle:?}",
                case.class
            );
        }
        assert!(!err.contains("panicked"), "{}: {err}", case.class);
        assert!(
            !dir.join("x.npy").exists(),
            "{}: an image was written",
            case.class
        );
        report.push((case.class, err.trim_end().to_string(), args));
    }
    assert!(cases.len() >= 45, "{} classes", cases.len());
    if let Ok(path) = std::env::var("SPARSEMAP_HOSTILE_REPORT") {
        let mut table = String::from(
            "# Crafted input classes\n\nMade by `scripts/hostile-inputs.sh` (the test \
             `every_crafted_input_is_refused_with_one_line_naming_it` of `crates/edge/tests/hostile.rs`): \
             every input is refused with exit status 1 and the one line shown, under a 512 MiB \
             address-space limit; peak RSS by `/usr/bin/time`. TMP is the test's temporary \
             directory, REPO the repository.\n\n| class | peak RSS (MiB) | message |\n|---|---:|---|\n",
        );
        for (class, err, args) in &report {
            let rss =
                peak_rss_kib(args).map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
            let shown = err
                .replace(&dir.display().to_string(), "TMP")
                .replace(&repo().display().to_string(), "REPO")
                .replace('|', "\\|");
            table += &format!("| {class} | {rss} | `{shown}` |\n");
        }
        let mut file = File::create(path).unwrap();
        file.write_all(table.as_bytes()).unwrap();
    }
}

/// The same k-space stored C-order little-endian, Fortran-order, and big-endian gives the
/// same image bit for bit.
#[test]
fn every_valid_layout_of_npy_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kspace = Array2::<Complex32>::read_npy(File::open(example("kspace.npy")).unwrap()).unwrap();
    let (n_y, n_x) = kspace.dim();
    // Fortran order: the same logical array, column-major bytes.
    let mut column_major = Vec::new();
    for x in 0..n_x {
        for y in 0..n_y {
            let v = kspace[(y, x)];
            column_major.extend_from_slice(&v.re.to_le_bytes());
            column_major.extend_from_slice(&v.im.to_le_bytes());
        }
    }
    raw_npy(
        &dir.join("fortran.npy"),
        &format!("{{'descr': '<c8', 'fortran_order': True, 'shape': ({n_y}, {n_x}), }}"),
        &column_major,
    );
    let mut big_endian = Vec::new();
    for v in kspace.iter() {
        big_endian.extend_from_slice(&v.re.to_be_bytes());
        big_endian.extend_from_slice(&v.im.to_be_bytes());
    }
    // Double quotes in the header dictionary are as legal as NumPy's single quotes.
    raw_npy(
        &dir.join("big.npy"),
        &format!("{{\"descr\": \">c8\", \"fortran_order\": False, \"shape\": ({n_y}, {n_x})}}"),
        &big_endian,
    );
    let mut images = Vec::new();
    for name in ["fortran.npy", "big.npy"] {
        let out = dir.join(format!("{name}.out.npy"));
        let output = run(&[
            "recon",
            "--kspace",
            &dir.join(name).display().to_string(),
            "--mask",
            &example("mask.npy").display().to_string(),
            "--out",
            &out.display().to_string(),
            "--lambda",
            "0.01",
        ]);
        assert!(output.status.success(), "{name}: {}", one_line(&output));
        images.push(std::fs::read(out).unwrap());
    }
    let out = dir.join("c.npy");
    let output = run(&[
        "recon",
        "--kspace",
        &example("kspace.npy").display().to_string(),
        "--mask",
        &example("mask.npy").display().to_string(),
        "--out",
        &out.display().to_string(),
        "--lambda",
        "0.01",
    ]);
    assert!(output.status.success(), "{}", one_line(&output));
    let reference = std::fs::read(out).unwrap();
    assert!(
        images.iter().all(|i| *i == reference),
        "layouts give different images"
    );
}

/// A dictionary scaled away from `L = 1` is normalised with a warning that the sidecar
/// records; the image equals the one from the normalised dictionary. A non-Latin path
/// reaches the PNG intact (UTF-8 `iTXt`), and two runs write identical files.
#[test]
fn an_unnormalised_dictionary_is_normalised_and_said_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dct5 = repo().join("models/dictionaries/dct5.npy");
    let filters = Array3::<f32>::read_npy(File::open(&dct5).unwrap()).unwrap();
    let scaled = dir.join("словарь.npy");
    write_npy(&scaled, &filters.mapv(|v| v * 0.01));
    let recon = |dictionary: &Path, out: &str| {
        let out = dir.join(out);
        let output = run(&[
            "recon",
            "--kspace",
            &example("kspace.npy").display().to_string(),
            "--mask",
            &example("mask.npy").display().to_string(),
            "--out",
            &out.display().to_string(),
            "--png",
            &out.with_extension("png").display().to_string(),
            "--nifti",
            &out.with_extension("nii").display().to_string(),
            "--lambda",
            "0.01",
            "--dictionary",
            &dictionary.display().to_string(),
        ]);
        assert!(output.status.success(), "{}", one_line(&output));
        (out, one_line(&output))
    };
    let (reference, quiet) = recon(&dct5, "reference.npy");
    assert!(!quiet.contains("warning"), "{quiet}");
    let (out, stderr) = recon(&scaled, "scaled.npy");
    assert!(
        stderr.contains("warning")
            && stderr.contains("словарь.npy")
            && stderr.contains("scaled by"),
        "{stderr}"
    );
    let sidecar = std::fs::read_to_string(out.with_extension("json")).unwrap();
    assert!(sidecar.contains("normalised to L = 1"), "{sidecar}");
    let a = Array2::<Complex32>::read_npy(File::open(&reference).unwrap()).unwrap();
    let b = Array2::<Complex32>::read_npy(File::open(&out).unwrap()).unwrap();
    let peak = a.iter().map(|v| v.norm()).fold(0f32, f32::max);
    let diff = (&a - &b).iter().map(|v| v.norm()).fold(0f32, f32::max);
    assert!(diff <= 1e-4 * peak, "max difference {diff} of peak {peak}");
    // The PNG carries the Cyrillic name in an iTXt chunk, as UTF-8.
    let png = std::fs::read(out.with_extension("png")).unwrap();
    let itxt = png
        .windows(4)
        .position(|w| w == b"iTXt")
        .expect("an iTXt chunk");
    let name = "словарь".as_bytes();
    assert!(
        png[itxt..].windows(name.len()).any(|w| w == name),
        "the name is not in the iTXt chunk"
    );
    // Byte-reproducible: the same run again writes the same files.
    let (again, _) = recon(&scaled, "again.npy");
    for ext in ["npy", "png", "nii", "json"] {
        assert_eq!(
            std::fs::read(out.with_extension(ext)).unwrap(),
            std::fs::read(again.with_extension(ext)).unwrap(),
            ".{ext} differs between two runs"
        );
    }
}
