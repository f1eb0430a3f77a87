//! `eval --per-source` on small synthetic splits (64×64, a few slices) written with the dataset
//! module's writer: source discovery, `--sources`, `--tune-exclude`, the margin summary on a
//! hand-made result set, and one tiny run end to end (zero-filled and TV, few iterations).

use ndarray::Array3;
use num_complex::Complex32;
use sparsemap_host::dataset::{write_split, Orientation, SliceMeta, Split};
use sparsemap_host::eval::sources::{
    self, discover, int8_targets, load_tuning_slices, select, summarise_sources, tuning_sources,
    Selection, Source, COLIN27,
};
use sparsemap_host::eval::{AcquisitionSpec, Criterion, EvalConfig, SliceResult};
use sparsemap_host::methods::{LearnedSettings, Method, Settings};
use std::path::Path;
use std::process::Command;

const N: usize = 64;

/// `count` slices of a smooth disk phantom (different per `salt`), head mask = the disk.
fn phantom(name: &str, count: usize, salt: usize) -> Split {
    let radius = |s: usize| 18.0 + ((s + salt) % 4) as f32 * 2.0;
    let inside = |s: usize, y: usize, x: usize| {
        let (dy, dx) = (y as f32 - 32.0, x as f32 - 32.0);
        (dy * dy + dx * dx).sqrt() < radius(s)
    };
    Split {
        name: name.to_string(),
        targets: Array3::from_shape_fn((count, N, N), |(s, y, x)| {
            if inside(s, y, x) {
                let texture = 0.6 + 0.3 * ((y / 8 + x / 8 + s + salt) % 2) as f32;
                Complex32::from_polar(texture, 0.01 * (y + x) as f32)
            } else {
                Complex32::new(0.0, 0.0)
            }
        }),
        head_masks: Array3::from_shape_fn((count, N, N), |(s, y, x)| inside(s, y, x)),
        slices: (0..count)
            .map(|s| SliceMeta {
                volume: format!("phantom{salt}"),
                source: "synthetic".into(),
                orientation: Orientation::Axial,
                index: s,
                k_range: [s, s + 1],
                plane_shape: [N, N],
                phase_seed: s as u64,
                peak: 1.0,
            })
            .collect(),
        provenance: serde_json::json!({ "test": true }),
    }
}

/// colin27 (validation 4, test 3), foo (validation 3, test 2), bar (test 2 only), baz (train
/// only), a legacy ood set and an unrelated file.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, count, salt) in [
        ("validation", 4, 0),
        ("test", 3, 1),
        ("foo_validation", 3, 2),
        ("foo_test", 2, 3),
        ("bar_test", 2, 4),
        ("baz_train", 2, 5),
        ("ood_mni152_t1", 2, 6),
    ] {
        write_split(d, &phantom(name, count, salt)).unwrap();
    }
    std::fs::write(d.join("notes_test.txt"), "not a split").unwrap();
    dir
}

#[test]
fn discovers_colin27_then_the_test_splits_sorted() {
    let dir = data_dir();
    let d = dir.path();
    let found = discover(d).unwrap();
    assert_eq!(
        found,
        vec![
            Source {
                name: COLIN27.into(),
                test: d.join("test.npz"),
                validation: Some(d.join("validation.npz")),
            },
            Source {
                name: "bar".into(),
                test: d.join("bar_test.npz"),
                validation: None,
            },
            Source {
                name: "foo".into(),
                test: d.join("foo_test.npz"),
                validation: Some(d.join("foo_validation.npz")),
            },
        ]
    );
    // `colin27_test.npz` would be a second colin27.
    write_split(d, &phantom("colin27_test", 1, 0)).unwrap();
    let err = format!("{:#}", discover(d).unwrap_err());
    assert!(err.contains("reserved"), "{err}");
}

#[test]
fn sources_selects_and_names_the_available_ones_on_error() {
    let dir = data_dir();
    let all = discover(dir.path()).unwrap();
    let picked = select(all.clone(), Some(&["foo".into(), COLIN27.into()])).unwrap();
    let names: Vec<&str> = picked.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [COLIN27, "foo"],
        "discovery order, not argument order"
    );
    assert_eq!(select(all.clone(), None).unwrap(), all);
    let err = format!("{:#}", select(all, Some(&["nope".into()])).unwrap_err());
    assert!(
        err.contains("\"nope\"") && err.contains("available: colin27, bar, foo"),
        "{err}"
    );
}

#[test]
fn tune_exclude_removes_that_sources_validation_slices() {
    let dir = data_dir();
    let all = discover(dir.path()).unwrap();
    let names = |sets: &[sources::SourceSlices]| -> Vec<(String, String, usize)> {
        sets.iter()
            .map(|s| (s.source.clone(), s.split.name.clone(), s.indices.len()))
            .collect()
    };
    // bar has no validation split, so it is never tuned on.
    let pooled = load_tuning_slices(&all, &[], None).unwrap();
    assert_eq!(
        names(&pooled),
        [
            (COLIN27.into(), "validation".into(), 4),
            ("foo".into(), "foo_validation".into(), 3)
        ]
    );
    // --validation-slices applies per source.
    let two = load_tuning_slices(&all, &[], Some(2)).unwrap();
    assert_eq!(
        two.iter().map(|s| s.indices.clone()).collect::<Vec<_>>(),
        [vec![0, 3], vec![0, 2]]
    );
    let without_foo = load_tuning_slices(&all, &["foo".into()], None).unwrap();
    assert_eq!(
        names(&without_foo),
        [(COLIN27.into(), "validation".into(), 4)]
    );
    let only_foo = tuning_sources(&all, &[COLIN27.into()]).unwrap();
    assert_eq!(only_foo.len(), 1);
    assert_eq!(only_foo[0].name, "foo");
    let err = format!("{:#}", tuning_sources(&all, &["baz".into()]).err().unwrap());
    assert!(
        err.contains("\"baz\"") && err.contains("colin27, bar, foo"),
        "{err}"
    );
}

fn result(source: &str, acquisition: &str, method: Method, slice: usize, psnr: f64) -> SliceResult {
    SliceResult {
        dataset: source.into(),
        acquisition: acquisition.into(),
        method,
        lambda: 0.01,
        slice,
        psnr,
        ssim: 0.9,
        nrmse: 0.1,
        psnr_head: psnr - 3.0,
        ssim_head: 0.8,
        nrmse_head: 0.2,
        seconds: 0.1,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn summary_margins_and_worst_source_on_hand_made_results() {
    use Method::*;
    let (a, b) = ("block128@0.15", "block128@0.3");
    let mut results = Vec::new();
    // Two slices per (source, method): colin27 and mni on `a`.
    for (source, table) in [
        (
            COLIN27,
            [
                (ZeroFilled, [30.0, 32.0]),  // 31
                (Tv, [33.0, 35.0]),          // 34
                (Csc, [34.5, 34.5]),         // 34.5: best classical
                (LearnedF32, [36.0, 36.0]),  // 36
                (LearnedInt8, [35.8, 36.0]), // 35.9
            ],
        ),
        (
            "mni",
            [
                (ZeroFilled, [28.0, 28.0]),
                (Tv, [30.0, 30.0]), // best classical
                (Csc, [29.0, 29.0]),
                (LearnedF32, [29.9, 29.9]),
                (LearnedInt8, [29.7, 29.7]),
            ],
        ),
    ] {
        for (method, psnrs) in table {
            for (slice, psnr) in psnrs.into_iter().enumerate() {
                results.push(result(source, a, method, slice, psnr));
            }
        }
    }
    // On `b` learned int8 clears both targets: +2 over the best classical on each source.
    for (source, base) in [(COLIN27, 30.0), ("mni", 26.0)] {
        results.push(result(source, b, ZeroFilled, 0, base - 1.0));
        results.push(result(source, b, Tv, 0, base));
        results.push(result(source, b, LearnedInt8, 0, base + 2.0));
    }
    let summary = summarise_sources(&results);
    assert_eq!(summary.len(), 2);
    let s = &summary[0];
    assert_eq!(s.acquisition, a);
    assert_eq!(s.sources, [COLIN27, "mni"]);
    let mean = |m: Method| s.means.iter().find(|x| x.method == m).unwrap();
    assert!(close(mean(ZeroFilled).psnr, 29.5));
    assert!(close(mean(Tv).psnr, 32.0));
    assert!(close(mean(Csc).psnr, 31.75));
    assert!(close(mean(Csc).psnr_head, 28.75));
    assert_eq!(mean(Tv).sources, 2);

    let int8 = s.learned(LearnedInt8).unwrap();
    assert_eq!(int8.per_source[0].best_classical.unwrap().0, Csc);
    assert_eq!(int8.per_source[1].best_classical.unwrap().0, Tv);
    assert!(close(int8.per_source[0].over_classical.unwrap(), 1.4));
    assert!(close(int8.per_source[0].over_zero_filled.unwrap(), 4.9));
    assert!(close(int8.per_source[1].over_classical.unwrap(), -0.3));
    assert!(close(int8.per_source[1].over_zero_filled.unwrap(), 1.7));
    assert!(close(int8.mean_over_classical.unwrap(), 0.55));
    assert!(close(int8.mean_over_zero_filled.unwrap(), 3.3));
    let (worst_source, worst) = int8.worst_over_classical.clone().unwrap();
    assert_eq!(worst_source, "mni");
    assert!(close(worst, -0.3));
    assert_eq!(int8.worst_over_zero_filled.as_ref().unwrap().0, "mni");

    let f32 = s.learned(LearnedF32).unwrap();
    assert!(close(f32.mean_over_classical.unwrap(), (1.5 - 0.1) / 2.0));
    assert_eq!(s.int8_minus_f32.len(), 2);
    assert!(close(s.int8_minus_f32[0].1, -0.1));
    assert!(close(s.int8_minus_f32[1].1, -0.2));
    assert!(close(s.int8_minus_f32_mean.unwrap(), -0.15));
    // Mean margin 0.55 < 1.0 and mni is 0.3 dB below TV: neither target is met.
    assert_eq!(int8_targets(s), Some((false, false)));

    let s = &summary[1];
    assert_eq!(s.acquisition, b);
    assert!(s.learned(LearnedF32).is_none());
    assert!(s.int8_minus_f32.is_empty() && s.int8_minus_f32_mean.is_none());
    let int8 = s.learned(LearnedInt8).unwrap();
    assert!(close(int8.mean_over_classical.unwrap(), 2.0));
    assert!(close(int8.mean_over_zero_filled.unwrap(), 3.0));
    assert_eq!(int8_targets(s), Some((true, true)));
}

fn config(data: &Path, out: &Path) -> EvalConfig {
    EvalConfig {
        data_dir: data.to_path_buf(),
        out_dir: out.to_path_buf(),
        acquisitions: vec!["block32@0.15".parse::<AcquisitionSpec>().unwrap()],
        ood_acquisition: None,
        methods: vec![Method::ZeroFilled, Method::Tv],
        settings: Settings {
            csc_iterations: 4,
            csc_lowpass_weight: 1.0,
            tv_iterations: 10,
            bart_wavelet_iterations: 4,
            bart_tv_iterations: 4,
            learned: LearnedSettings::default(),
            unet_model: None,
        },
        validation_slices: Some(2),
        test_slices: None,
        grid_points: 2,
        seed: 7,
        threads: 2,
        figures: false,
        criterion: Criterion::Whole,
        reuse: None,
    }
}

#[test]
fn tiny_run_tunes_on_the_pooled_validation_slices_and_tests_every_source() {
    let data = data_dir();
    let out = tempfile::tempdir().unwrap();
    let config = config(data.path(), out.path());
    let report = sources::run(&config, &Selection::default()).unwrap();
    assert_eq!(report.tuned_on, [COLIN27, "foo"]);
    let tv = report
        .tuned
        .iter()
        .find(|t| t.method == Method::Tv)
        .unwrap();
    // Every weight tried was measured on 2 + 2 pooled validation slices, and the test slices
    // of every source were run with the one tuned weight.
    assert!(report.tuning.len() >= 2);
    let tested = |source: &str| -> Vec<usize> {
        report
            .results
            .iter()
            .filter(|r| r.dataset == source && r.method == Method::Tv)
            .inspect(|r| assert_eq!(r.lambda, tv.lambda))
            .map(|r| r.slice)
            .collect()
    };
    assert_eq!(tested(COLIN27), [0, 1, 2]);
    assert_eq!(tested("foo"), [0, 1]);
    assert_eq!(tested("bar"), [0, 1]);
    assert_eq!(report.results.len(), 2 * (3 + 2 + 2));
    // Colin27's test split is simulated with plain eval's seed (the split's file stem).
    let spec = &config.acquisitions[0];
    let seed = |split: &str| {
        report
            .seeds
            .iter()
            .find(|s| s.split == split)
            .unwrap_or_else(|| panic!("no seed for {split}"))
            .seed
    };
    assert_eq!(seed("test"), spec.acquisition(7, "test").seed);
    assert_eq!(
        seed("foo_validation"),
        spec.acquisition(7, "foo_validation").seed
    );
    assert_ne!(seed("foo_test"), seed("bar_test"));
    for name in [
        "sources.md",
        "sources.csv",
        "sources_summary.csv",
        "tuning.csv",
        "sources.json",
    ] {
        assert!(out.path().join(name).exists(), "{name}");
    }
    let md = std::fs::read_to_string(out.path().join("sources.md")).unwrap();
    assert!(md.contains("### bar (bar_test.npz, 2 test slices)"), "{md}");
    assert!(
        md.contains("not tuned on: bar (no validation split)"),
        "{md}"
    );
    let csv = std::fs::read_to_string(out.path().join("sources.csv")).unwrap();
    assert!(csv.starts_with("source,acquisition,method,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 3 * 2, "{csv}");
    let json = sources::read_report(&out.path().join("sources.json")).unwrap();
    assert_eq!(json.results.len(), report.results.len());

    // Leaving foo out of tuning: only Colin27's validation slices remain.
    let out2 = tempfile::tempdir().unwrap();
    let selection = Selection {
        only: None,
        tune_exclude: vec!["foo".into()],
    };
    let report = sources::run(&config_with_out(&config, out2.path()), &selection).unwrap();
    assert_eq!(report.tuned_on, [COLIN27]);
    let foo = report.sources.iter().find(|s| s.name == "foo").unwrap();
    assert!(!foo.tuned_on && foo.validation_slices.is_empty());
    let md = std::fs::read_to_string(out2.path().join("sources.md")).unwrap();
    assert!(md.contains("foo (--tune-exclude)"), "{md}");
}

fn config_with_out(config: &EvalConfig, out: &Path) -> EvalConfig {
    EvalConfig {
        out_dir: out.to_path_buf(),
        ..config.clone()
    }
}

#[test]
fn cli_names_the_available_sources_for_an_unknown_one() {
    let data = data_dir();
    let out = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_sparsemap-host"))
            .args([
                "eval",
                "--per-source",
                "--data-dir",
                data.path().to_str().unwrap(),
                "--out-dir",
                out.path().to_str().unwrap(),
                "--methods",
                "zero-filled",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let err = run(&["--sources", "colin27,nope"]);
    assert!(
        err.contains("unknown source \"nope\"") && err.contains("available: colin27, bar, foo"),
        "{err}"
    );
    let err = run(&["--tune-exclude", "baz"]);
    assert!(
        err.contains("--tune-exclude") && err.contains("\"baz\""),
        "{err}"
    );
    // --sources needs --per-source.
    let output = Command::new(env!("CARGO_BIN_EXE_sparsemap-host"))
        .args(["eval", "--sources", "colin27"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// `--reuse` with `--per-source`: the methods not run are carried over unchanged from the
/// earlier sources.json, and a run with other slices or iterations is refused.
#[test]
fn reuse_carries_the_other_methods_over_and_refuses_a_mismatch() {
    let data = data_dir();
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config(data.path(), first.path());
    let earlier = sources::run(&config, &Selection::default()).unwrap();
    let reused = EvalConfig {
        methods: vec![Method::ZeroFilled],
        reuse: Some(first.path().join("sources.json")),
        ..config_with_out(&config, second.path())
    };
    let report = sources::run(&reused, &Selection::default()).unwrap();
    let tv = |r: &sources::SourcesReport| -> Vec<(String, usize, f64)> {
        r.results
            .iter()
            .filter(|x| x.method == Method::Tv)
            .map(|x| (x.dataset.clone(), x.slice, x.psnr))
            .collect()
    };
    // Carried over from the file (serde_json's float parsing may differ from the in-memory
    // value in the last bit, so the comparison is with what the file holds).
    let on_disk = sources::read_report(&first.path().join("sources.json")).unwrap();
    assert_eq!(tv(&report), tv(&on_disk));
    assert_eq!(report.results.len(), earlier.results.len());
    assert!(report.tuned.iter().any(|t| t.method == Method::Tv));

    let other_iterations = EvalConfig {
        settings: Settings {
            tv_iterations: 11,
            ..reused.settings.clone()
        },
        ..reused.clone()
    };
    let err = format!(
        "{:#}",
        sources::run(&other_iterations, &Selection::default()).unwrap_err()
    );
    assert!(err.contains("ran with 10 iterations"), "{err}");
    let other_slices = EvalConfig {
        validation_slices: Some(1),
        ..reused
    };
    let err = format!(
        "{:#}",
        sources::run(&other_slices, &Selection::default()).unwrap_err()
    );
    assert!(err.contains("other test/validation slices"), "{err}");
}

#[test]
fn unet_gets_margins_but_is_never_the_best_classical_and_is_carried_only_with_its_model() {
    let data = data_dir();
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let unet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/unet/tiny.unet.onnx");
    let base = config(data.path(), first.path());
    let with_unet = EvalConfig {
        methods: vec![Method::ZeroFilled, Method::Tv, Method::Unet],
        settings: Settings {
            unet_model: Some(unet.clone()),
            ..base.settings.clone()
        },
        ..base
    };
    let report = sources::run(&with_unet, &Selection::default()).unwrap();
    assert!(report.results.iter().any(|r| r.method == Method::Unet));
    let summary = sources::summarise_sources(&report.results);
    let margins = summary[0].learned(Method::Unet).expect("U-Net margins");
    assert!(!margins.per_source.is_empty());
    for s in &margins.per_source {
        assert_eq!(
            s.best_classical.map(|b| b.0),
            Some(Method::Tv),
            "{}",
            s.source
        );
    }
    let table = std::fs::read_to_string(first.path().join("sources.md")).unwrap();
    assert!(
        table.contains("U-Net baseline") && table.contains("unet − best classical"),
        "{table}"
    );

    // Carrying the U-Net's rows over needs the same model.
    let carried = EvalConfig {
        methods: vec![Method::ZeroFilled],
        settings: Settings {
            unet_model: None,
            ..with_unet.settings.clone()
        },
        reuse: Some(first.path().join("sources.json")),
        ..config_with_out(&with_unet, second.path())
    };
    let err = format!(
        "{:#}",
        sources::run(&carried, &Selection::default()).unwrap_err()
    );
    assert!(err.contains("the U-Net ran with"), "{err}");
    let same = EvalConfig {
        settings: with_unet.settings.clone(),
        ..carried
    };
    let again = sources::run(&same, &Selection::default()).unwrap();
    assert_eq!(
        again
            .results
            .iter()
            .filter(|r| r.method == Method::Unet)
            .count(),
        report
            .results
            .iter()
            .filter(|r| r.method == Method::Unet)
            .count()
    );
}
