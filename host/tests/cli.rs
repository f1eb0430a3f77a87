//! The `sparsemap-host` commands end to end on the real data (Colin27 from mricron-data, the
//! MNI152 files that `scripts/fetch-data.sh` extracts), with small settings so that the
//! whole file runs in about a minute: export → simulate → simulate-scan, eval, bench, and
//! one clear error per kind of bad input.

use sparsemap_host::dataset::{read_simulated, read_split};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_sparsemap-host");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("the binary starts")
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "sparsemap-host {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one-line error of a failing command.
fn fails(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        !output.status.success(),
        "sparsemap-host {args:?} should fail"
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// One export shared by every test of this file.
fn exported() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let nilearn = Path::new(ROOT).join("data/external/nilearn");
        assert!(
            nilearn.exists(),
            "{} is missing: run scripts/fetch-data.sh (scripts/test.sh does)",
            nilearn.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let stdout = ok(&[
            "export",
            "--out-dir",
            out,
            "--mni-dir",
            nilearn.to_str().unwrap(),
        ]);
        for split in [
            "train",
            "validation",
            "test",
            "ood_mni152_t1",
            "ood_synthetic_t2",
        ] {
            assert!(stdout.contains(split), "{stdout}");
            assert!(dir.path().join(format!("{split}.npz")).exists());
            assert!(dir.path().join(format!("{split}.json")).exists());
        }
        dir
    })
    .path()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn simulate_then_simulate_scan() {
    let data = exported();
    let out = tempfile::tempdir().unwrap();
    let sim = out.path().join("sim/test_block96.npz");
    let test_split = data.join("test.npz");
    let simulate = |out: &Path| {
        ok(&[
            "simulate",
            "--split",
            path_str(&test_split),
            "--acquisition",
            "block96@0.3",
            "--seed",
            "7",
            "--out",
            path_str(out),
        ])
    };
    let stdout = simulate(&sim);
    assert!(stdout.contains("block96@0.3"), "{stdout}");
    let set = read_simulated(&sim).unwrap();
    let split = read_split(&data.join("test.npz")).unwrap();
    assert_eq!(
        set.split.targets, split.targets,
        "the targets are carried over unchanged"
    );
    let (count, n_y, n_x) = set.kspace.dim();
    assert_eq!(count, split.len());
    // Central 96x96 block: exactly 96^2 samples per slice, nothing outside.
    for s in 0..count {
        let sampled = set
            .masks
            .index_axis(ndarray::Axis(0), s)
            .iter()
            .filter(|&&m| m)
            .count();
        assert_eq!(sampled, 96 * 96);
    }
    let off_mask_nonzero = set
        .kspace
        .iter()
        .zip(set.masks.iter())
        .filter(|(v, &m)| !m && v.norm() != 0.0)
        .count();
    assert_eq!(off_mask_nonzero, 0);
    assert_eq!((n_y, n_x), (256, 256));
    let record = &set.acquisition["acquisition"];
    assert_eq!(record["noise"], 0.3, "{record}");

    // Same command, same seed: identical k-space (everything is seeded).
    let again = out.path().join("again.npz");
    simulate(&again);
    assert_eq!(read_simulated(&again).unwrap().kspace, set.kspace);

    let scan = out.path().join("scan.smw");
    let stdout = ok(&[
        "simulate-scan",
        "--input",
        path_str(&sim),
        "--slices",
        "0,3",
        "--out",
        path_str(&scan),
        "--drop",
        "0.05",
        "--corrupt",
        "0.05",
    ]);
    assert!(stdout.contains("2 slices"), "{stdout}");
    let bytes = std::fs::read(&scan).unwrap();
    // At least one byte per I and Q (postcard varints) for 2 x 96 lines of 96 samples (the
    // readout window of the block), and less than the worst case of 3 bytes each.
    assert!(
        bytes.len() > 2 * 96 * 96 * 2 && bytes.len() < 2 * 96 * (96 * 6 + 40),
        "{} bytes for 192 lines",
        bytes.len()
    );
    let faults: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("scan.faults.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(faults["slices"], serde_json::json!([0, 3]));

    // Errors name what is wrong.
    let err = fails(&[
        "simulate-scan",
        "--input",
        path_str(&sim),
        "--slices",
        "99",
        "--out",
        path_str(&scan),
    ]);
    assert!(
        err.contains("slice 99") && err.contains("test_block96.npz"),
        "{err}"
    );
    // A 2-D Poisson-disc mask cannot be acquired line by line: refused in one line that
    // names the input.
    let poisson = out.path().join("sim/test_poisson4.npz");
    ok(&[
        "simulate",
        "--split",
        path_str(&test_split),
        "--acquisition",
        "poisson4@0.1",
        "--out",
        path_str(&poisson),
    ]);
    let err = fails(&[
        "simulate-scan",
        "--input",
        path_str(&poisson),
        "--out",
        path_str(&scan),
    ]);
    assert!(
        err.contains("test_poisson4.npz") && err.contains("not acquirable line by line"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for (split, acquisition, expected) in [
        (
            Path::new("/nonexistent/test.npz"),
            "block128@0.15",
            "/nonexistent/test.npz",
        ),
        (test_split.as_path(), "block97@0.15", "97"),
        (test_split.as_path(), "spiral4@0.15", "spiral4"),
    ] {
        let err = fails(&[
            "simulate",
            "--split",
            path_str(split),
            "--acquisition",
            acquisition,
            "--out",
            path_str(&again),
        ]);
        assert!(err.contains(expected), "{acquisition}: {err}");
    }
}

/// A small evaluation (2 validation and 2 test slices, 2-point grids, few iterations) that
/// exercises tuning, every method, the out-of-distribution sets and all outputs.
#[test]
fn eval_writes_tables_and_figures() {
    let data = exported();
    let out = tempfile::tempdir().unwrap();
    // block128@0.15 on 2 validation and 2 test slices with few iterations, then `extra`
    let small_eval = |out_dir: &Path, extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "eval",
            "--data-dir",
            path_str(data),
            "--out-dir",
            path_str(out_dir),
            "--acquisitions",
            "block128@0.15",
            "--validation-slices",
            "2",
            "--test-slices",
            "2",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    };
    let few_iterations = [
        "--csc-iterations",
        "16",
        "--tv-iterations",
        "40",
        "--bart-wavelet-iterations",
        "10",
        "--bart-tv-iterations",
        "20",
    ];
    let first = [&few_iterations[..], &["--grid-points", "2"]].concat();
    let stdout = ok(&strs(&small_eval(out.path(), &first)));
    for name in [
        "table.md",
        "table.csv",
        "tuning.csv",
        "eval.json",
        "figure_block128_s0.15.png",
    ] {
        assert!(
            out.path().join(name).exists(),
            "{name} missing; stdout:\n{stdout}"
        );
    }
    let csv = std::fs::read_to_string(out.path().join("table.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // 3 datasets x 7 methods.
    assert_eq!(rows.len(), 21, "{csv}");
    let psnr = |dataset: &str, method: &str| -> f64 {
        rows.iter()
            .find(|r| r[0] == dataset && r[2] == method)
            .unwrap_or_else(|| panic!("{dataset}/{method} missing:\n{csv}"))[5]
            .parse()
            .unwrap()
    };
    // Real properties of this data: CSC and both TVs beat zero-filled on the test split by a
    // clear margin, and no tuned method is worse than zero-filled by more than 0.2 dB.
    let zero_filled = psnr("test", "zero-filled");
    assert!(
        zero_filled > 28.0 && zero_filled < 36.0,
        "zero-filled {zero_filled}"
    );
    for method in ["csc", "tv", "bart-tv"] {
        assert!(
            psnr("test", method) > zero_filled + 1.0,
            "{method} vs zero-filled:\n{csv}"
        );
    }
    assert!(psnr("test", "bart-wavelet") > zero_filled - 0.2, "{csv}");
    // The bundled models: well above zero-filled, and int8 within 0.1 dB of f32.
    let (learned, int8) = (psnr("test", "learned-f32"), psnr("test", "learned-int8"));
    assert!(
        learned > zero_filled + 1.5,
        "learned vs zero-filled:\n{csv}"
    );
    assert!((learned - int8).abs() < 0.1, "int8 vs f32:\n{csv}");
    let png = std::fs::File::open(out.path().join("figure_block128_s0.15.png")).unwrap();
    let info = png::Decoder::new(std::io::BufReader::new(png))
        .read_info()
        .unwrap();
    assert_eq!(
        (info.info().width, info.info().height),
        (8 * 256 + 7 * 4, 2 * 256 + 4),
        "target + 7 methods, image and error rows"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(report["tuned"].as_array().unwrap().len(), 4);
    assert_eq!(report["results"].as_array().unwrap().len(), 42);

    // The tables can be re-rendered from eval.json alone, identically.
    let rerendered = tempfile::tempdir().unwrap();
    ok(&[
        "eval",
        "--from-json",
        path_str(&out.path().join("eval.json")),
        "--out-dir",
        path_str(rerendered.path()),
    ]);
    assert_eq!(
        std::fs::read_to_string(rerendered.path().join("table.csv")).unwrap(),
        csv
    );

    // Re-running one method on top of the earlier run carries the others over unchanged.
    let again = tempfile::tempdir().unwrap();
    let earlier = out.path().join("eval.json");
    let reuse = [
        "--methods",
        "learned-int8",
        "--reuse",
        path_str(&earlier),
        "--no-figures",
    ];
    ok(&strs(&small_eval(
        again.path(),
        &[&reuse[..], &few_iterations].concat(),
    )));
    let reused = std::fs::read_to_string(again.path().join("table.csv")).unwrap();
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect();
        lines.sort();
        lines
    };
    // identical up to the timing column
    assert_eq!(sorted(&reused), sorted(&csv));
    // ... but only onto a run made the same way.
    let other_seed = [&reuse[..], &few_iterations, &["--seed", "2"]].concat();
    let default_iterations = reuse.to_vec();
    for (with, needle) in [(other_seed, "seed"), (default_iterations, "iterations")] {
        let err = fails(&strs(&small_eval(again.path(), &with)));
        assert!(err.contains("eval.json") && err.contains(needle), "{err}");
    }

    let empty = tempfile::tempdir().unwrap();
    let err = fails(&[
        "eval",
        "--data-dir",
        path_str(empty.path()),
        "--out-dir",
        path_str(out.path()),
    ]);
    assert!(
        err.contains("validation.npz") && err.contains("export"),
        "{err}"
    );
    let err = fails(&[
        "eval",
        "--acquisitions",
        "block128@0.15",
        "--ood-acquisition",
        "block96@0.15",
    ]);
    assert!(err.contains("--ood-acquisition"), "{err}");
}

#[test]
fn bench_reports_ratios_to_csc() {
    let stdout = ok(&[
        "bench",
        "--repeats",
        "1",
        "--csc-iterations",
        "4",
        "--tv-iterations",
        "10",
        "--bart-wavelet-iterations",
        "5",
        "--bart-tv-iterations",
        "5",
    ]);
    for method in [
        "zero-filled",
        "csc",
        "tv",
        "bart-wavelet",
        "bart-tv",
        "bart-startup",
    ] {
        assert!(
            stdout.contains(&format!("| {method}")),
            "{method} missing:\n{stdout}"
        );
    }
    let csc_row = stdout.lines().find(|l| l.starts_with("| csc |")).unwrap();
    assert!(csc_row.contains("| 1.000 |"), "{csc_row}");
    let err = fails(&[
        "bench",
        "--kspace",
        "/nonexistent/k.npy",
        "--mask",
        "/nonexistent/m.npy",
    ]);
    assert!(err.contains("/nonexistent/k.npy"), "{err}");
}

#[test]
fn every_command_has_help() {
    for command in ["export", "simulate", "simulate-scan", "eval", "bench"] {
        let stdout = ok(&[command, "--help"]);
        assert!(
            stdout.contains("Usage: sparsemap-host"),
            "{command}: {stdout}"
        );
    }
}
