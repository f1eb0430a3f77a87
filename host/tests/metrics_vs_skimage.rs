//! The metrics of `sparsemap_host::metrics` against scikit-image (oracle test, STYLE §4).
//!
//! Fixtures: `tests/fixtures/metrics/<case>/` written by
//! `models/reference/make_metric_fixtures.py` (reference.npy, degraded.npy, mask.npy as u8,
//! ssim_map.npy = skimage `full=True` map, expected.json). Every number must agree to
//! [`TOL`] absolute; run with `--nocapture` to see the measured differences.
//!
//! The last tests show that the comparison has teeth: SSIM variants that are plausible but
//! not skimage's (uniform window, sample covariance, zero-padded borders) miss by more
//! than [`TOL`].

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::read_npy;
use serde_json::Value;
use sparsemap_host::metrics::{
    self, head_mask, nrmse, nrmse_masked, psnr, psnr_masked, quality_report, ssim, ssim_map,
    ssim_masked, Dims, SSIM_K1, SSIM_K2, SSIM_PAD, SSIM_RADIUS, SSIM_SIGMA,
};

/// Agreement required with scikit-image (issue: "compare them with scikit-image ... to 1e-4").
const TOL: f64 = 1e-4;

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/metrics")
}

struct Case {
    name: String,
    dims: Dims,
    reference: Vec<f64>,
    degraded: Vec<f64>,
    /// The f32 data as stored, for the cases stored as float32 (the f32 entry point is used).
    f32_pair: Option<(Vec<f32>, Vec<f32>)>,
    mask: Vec<bool>,
    ssim_map: Vec<f64>,
    expected: Value,
}

impl Case {
    fn num(&self, key: &str) -> f64 {
        self.expected[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no number {key}", self.name))
    }
}

fn load_cases() -> Vec<Case> {
    let root = fixture_root();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 4,
        "expected at least 4 metric fixtures, found {names:?}"
    );
    names
        .into_iter()
        .map(|name| {
            let dir = root.join(&name);
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                    .unwrap();
            let (reference, degraded, f32_pair, shape) = match expected["dtype"].as_str().unwrap() {
                "float32" => {
                    let r: Array2<f32> = read_npy(dir.join("reference.npy")).unwrap();
                    let d: Array2<f32> = read_npy(dir.join("degraded.npy")).unwrap();
                    let shape = r.dim();
                    let (r, d) = (
                        r.iter().copied().collect::<Vec<_>>(),
                        d.iter().copied().collect::<Vec<_>>(),
                    );
                    let up = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
                    (up(&r), up(&d), Some((r, d)), shape)
                }
                "float64" => {
                    let r: Array2<f64> = read_npy(dir.join("reference.npy")).unwrap();
                    let d: Array2<f64> = read_npy(dir.join("degraded.npy")).unwrap();
                    let shape = r.dim();
                    (
                        r.iter().copied().collect(),
                        d.iter().copied().collect(),
                        None,
                        shape,
                    )
                }
                other => panic!("{name}: unexpected dtype {other}"),
            };
            let mask: Array2<u8> = read_npy(dir.join("mask.npy")).unwrap();
            let map: Array2<f64> = read_npy(dir.join("ssim_map.npy")).unwrap();
            assert_eq!(mask.dim(), shape);
            assert_eq!(map.dim(), shape);
            Case {
                name,
                dims: Dims::new(shape.0, shape.1),
                reference,
                degraded,
                f32_pair,
                mask: mask.iter().map(|&m| m != 0).collect(),
                ssim_map: map.iter().copied().collect(),
                expected,
            }
        })
        .collect()
}

/// Largest |difference| seen per quantity, over all cases.
#[derive(Default)]
struct MaxDiff(Vec<(&'static str, f64)>);

impl MaxDiff {
    fn check(&mut self, case: &str, what: &'static str, got: f64, want: f64) {
        let d = (got - want).abs();
        assert!(
            d <= TOL,
            "{case}: {what} = {got}, scikit-image {want}, |diff| {d:e} > {TOL:e}"
        );
        match self.0.iter_mut().find(|(w, _)| *w == what) {
            Some((_, m)) => *m = m.max(d),
            None => self.0.push((what, d)),
        }
    }
}

#[test]
fn metrics_match_scikit_image_on_every_fixture() {
    let mut max = MaxDiff::default();
    for c in load_cases() {
        let (r, x, m, dims) = (&c.reference, &c.degraded, &c.mask, c.dims);
        let n = &c.name;
        max.check(n, "psnr", psnr(r, x, dims).unwrap(), c.num("psnr"));
        max.check(n, "nrmse", nrmse(r, x, dims).unwrap(), c.num("nrmse"));
        max.check(n, "ssim", ssim(r, x, dims).unwrap(), c.num("ssim"));
        max.check(
            n,
            "psnr_masked",
            psnr_masked(r, x, m, dims).unwrap(),
            c.num("psnr_masked"),
        );
        max.check(
            n,
            "nrmse_masked",
            nrmse_masked(r, x, m, dims).unwrap(),
            c.num("nrmse_masked"),
        );
        max.check(
            n,
            "ssim_masked",
            ssim_masked(r, x, m, dims).unwrap(),
            c.num("ssim_masked"),
        );
        let map = ssim_map(r, x, dims).unwrap();
        let map_diff = map
            .iter()
            .zip(&c.ssim_map)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        max.check(n, "ssim_map (every pixel, borders included)", map_diff, 0.0);

        // The f32 entry point on float32 fixtures (skimage was given the same values as f64).
        if let Some((r32, x32)) = &c.f32_pair {
            let all = metrics::metrics(r32, x32, dims, None).unwrap();
            let head = metrics::metrics(r32, x32, dims, Some(m)).unwrap();
            max.check(n, "psnr (f32 input)", all.psnr, c.num("psnr"));
            max.check(n, "ssim (f32 input)", all.ssim, c.num("ssim"));
            max.check(n, "nrmse (f32 input)", all.nrmse, c.num("nrmse"));
            max.check(
                n,
                "ssim_masked (f32 input)",
                head.ssim,
                c.num("ssim_masked"),
            );
        }

        // The mask in the fixture is scipy's binary_fill_holes of the threshold: ours is identical.
        let t = c.num("threshold");
        let ours = head_mask(r, dims, t).unwrap();
        let differ = ours.iter().zip(m).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "{n}: head_mask differs from scipy on {differ} pixels"
        );
        assert_eq!(
            ours.iter().filter(|&&v| v).count() as u64,
            c.expected["mask_pixels"].as_u64().unwrap()
        );

        // quality_report = the same numbers, whole and in the head mask.
        let q = quality_report(r, x, dims, t).unwrap();
        for (what, got, key) in [
            ("report.whole.psnr", q.whole.psnr, "psnr"),
            ("report.whole.ssim", q.whole.ssim, "ssim"),
            ("report.whole.nrmse", q.whole.nrmse, "nrmse"),
            ("report.head.psnr", q.head.psnr, "psnr_masked"),
            ("report.head.ssim", q.head.ssim, "ssim_masked"),
            ("report.head.nrmse", q.head.nrmse, "nrmse_masked"),
        ] {
            max.check(n, what, got, c.num(key));
        }
        println!(
            "{n:>20} {}x{}: psnr {:.4} dB (head {:.4}), ssim {:.5} (head {:.5}), nrmse {:.5} (head {:.5})",
            dims.n_y, dims.n_x, q.whole.psnr, q.head.psnr, q.whole.ssim, q.head.ssim, q.whole.nrmse,
            q.head.nrmse
        );
    }
    println!("max |Rust - scikit-image| over all fixtures (tolerance {TOL:e}):");
    for (what, d) in &max.0 {
        println!("  {what:<45} {d:.3e}");
    }
}

// --- The comparison has teeth ------------------------------------------------------------

/// How a deliberately different SSIM builds its window.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// skimage's: Gaussian σ = 1.5, radius 5, reflect borders, population covariance.
    Skimage,
    /// Uniform `size × size` window (skimage's default when `gaussian_weights=False`).
    Uniform(usize),
    /// Gaussian, but sample covariance `N / (N − 1)`, N = 121 (skimage's default flag).
    SampleCovariance,
    /// Gaussian, but zeros outside the image instead of reflection.
    ZeroBorders,
}

/// Direct (non-separable) SSIM map, independent of the library's filter: a second oracle for
/// the skimage variant and the generator of the wrong ones. Input already normalised.
fn naive_ssim_map(r: &[f64], x: &[f64], dims: Dims, v: Variant) -> Vec<f64> {
    let (ny, nx) = (dims.n_y as i64, dims.n_x as i64);
    let (radius, w1d): (i64, Vec<f64>) = match v {
        Variant::Uniform(size) => (size as i64 / 2, vec![1.0 / size as f64; size]),
        _ => {
            let rad = SSIM_RADIUS as i64;
            let g: Vec<f64> = (-rad..=rad)
                .map(|k| (-(k * k) as f64 / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp())
                .collect();
            let s: f64 = g.iter().sum();
            (rad, g.into_iter().map(|a| a / s).collect())
        }
    };
    let reflect = |i: i64, n: i64| {
        let m = i.rem_euclid(2 * n);
        if m < n {
            m
        } else {
            2 * n - 1 - m
        }
    };
    let cov_norm = match v {
        Variant::SampleCovariance => 121.0 / 120.0,
        _ => 1.0,
    };
    let (c1, c2) = (SSIM_K1 * SSIM_K1, SSIM_K2 * SSIM_K2);
    let mut out = vec![0.0; r.len()];
    for y in 0..ny {
        for xx in 0..nx {
            let (mut ux, mut uy, mut uxx, mut uyy, mut uxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in -radius..=radius {
                for dx in -radius..=radius {
                    let w = w1d[(dy + radius) as usize] * w1d[(dx + radius) as usize];
                    let (sy, sx) = (y + dy, xx + dx);
                    let (a, b) = match v {
                        Variant::ZeroBorders if sy < 0 || sy >= ny || sx < 0 || sx >= nx => {
                            (0.0, 0.0)
                        }
                        _ => {
                            let i = (reflect(sy, ny) * nx + reflect(sx, nx)) as usize;
                            (r[i], x[i])
                        }
                    };
                    ux += w * a;
                    uy += w * b;
                    uxx += w * a * a;
                    uyy += w * b * b;
                    uxy += w * a * b;
                }
            }
            let (vx, vy, vxy) = (
                cov_norm * (uxx - ux * ux),
                cov_norm * (uyy - uy * uy),
                cov_norm * (uxy - ux * uy),
            );
            out[(y * nx + xx) as usize] = ((2.0 * ux * uy + c1) * (2.0 * vxy + c2))
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        }
    }
    out
}

/// (mean SSIM over the crop, max |map − skimage map| over every pixel) for one variant.
fn variant_errors(c: &Case, v: Variant) -> (f64, f64) {
    let n = metrics::normalise(&c.reference, &c.degraded, c.dims).unwrap();
    let map = naive_ssim_map(&n.reference, &n.image, c.dims, v);
    let (ny, nx) = (c.dims.n_y, c.dims.n_x);
    let mut sum = 0.0;
    let mut count = 0;
    for y in SSIM_PAD..ny - SSIM_PAD {
        for x in SSIM_PAD..nx - SSIM_PAD {
            sum += map[y * nx + x];
            count += 1;
        }
    }
    let mean_err = (sum / count as f64 - c.num("ssim")).abs();
    let map_err = map
        .iter()
        .zip(&c.ssim_map)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    (mean_err, map_err)
}

#[test]
fn independent_direct_ssim_agrees_with_scikit_image() {
    for c in load_cases() {
        let (mean_err, map_err) = variant_errors(&c, Variant::Skimage);
        println!("{:>20} direct Gaussian/reflect: |mean diff| {mean_err:.2e}, max |map diff| {map_err:.2e}", c.name);
        assert!(
            mean_err <= TOL && map_err <= TOL,
            "{}: {mean_err:e} {map_err:e}",
            c.name
        );
    }
}

#[test]
fn comparison_catches_wrong_ssim_variants() {
    let cases = load_cases();
    for v in [Variant::Uniform(7), Variant::Uniform(11)] {
        for c in &cases {
            let (mean_err, _) = variant_errors(c, v);
            println!(
                "{:>20} {v:?}: |mean SSIM - skimage| = {mean_err:.2e}",
                c.name
            );
            assert!(
                mean_err > TOL,
                "{}: variant {v:?} is not caught ({mean_err:e})",
                c.name
            );
        }
    }
    // Sample covariance (x 121/120) is a small change: on the real-looking slice it moves the
    // mean by more than TOL, but on the random 64x48 pair (high SSIM everywhere) even the map
    // moves by only ~1.5e-5 < TOL. So a 1e-4 check catches it only on images like colin27.
    for c in &cases {
        let (mean_err, map_err) = variant_errors(c, Variant::SampleCovariance);
        println!(
            "{:>20} SampleCovariance: |mean diff| {mean_err:.2e}, max |map diff| {map_err:.2e}",
            c.name
        );
        if c.name == "colin27" {
            assert!(
                mean_err > TOL,
                "colin27: sample covariance not caught ({mean_err:e})"
            );
        }
    }
    // The crop (5 px = the filter radius) means the mean never sees a border pixel, so the
    // border mode only shows in the map — which the fixtures compare pixel by pixel.
    for c in &cases {
        let (mean_err, map_err) = variant_errors(c, Variant::ZeroBorders);
        println!(
            "{:>20} ZeroBorders: |mean diff| {mean_err:.2e}, max |map diff| {map_err:.2e}",
            c.name
        );
        assert!(
            mean_err <= 1e-12,
            "{}: crop should hide the border mode",
            c.name
        );
        assert!(
            map_err > TOL,
            "{}: zero borders not caught in the map ({map_err:e})",
            c.name
        );
    }
}
