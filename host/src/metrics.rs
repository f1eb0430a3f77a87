//! Image-quality metrics: PSNR, SSIM and NRMSE, on the whole image or inside a mask
//! (DESIGN §8), checked against scikit-image 0.26 on `tests/fixtures/metrics` to 1e-4
//! (`host/tests/metrics_vs_skimage.rs`, fixtures from `models/reference/make_metric_fixtures.py`).
//!
//! # Conventions
//! * Images are real **magnitude** images, row-major `[n_y][n_x]` (DESIGN §3.1), given as
//!   `&[f32]` or `&[f64]` with their [`Dims`]; everything is computed in `f64`. Complex
//!   images go through [`magnitude`] first.
//! * **Normalisation** ([`normalise`]): both images are divided by `max |reference|` over the
//!   *whole* reference (also for the masked metrics), so the data range is
//!   [`DATA_RANGE`]` = 1` and whole-image and in-mask numbers are on the same scale.
//! * `psnr = 10 log10(DATA_RANGE² / mean((r − x)²))` —
//!   `skimage.metrics.peak_signal_noise_ratio(r, x, data_range=1)`; `+∞` when `x == r`.
//! * `nrmse = sqrt(mean((r − x)²)) / sqrt(mean(r²))` —
//!   `skimage.metrics.normalized_root_mse(r, x, normalization='euclidean')`.
//! * `ssim` — `skimage.metrics.structural_similarity(r, x, data_range=1,
//!   gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` (Wang et al. 2004): local
//!   means, variances and covariance from a separable Gaussian filter (σ = [`SSIM_SIGMA`],
//!   truncated at [`SSIM_TRUNCATE`]σ → [`SSIM_WIN_SIZE`] = 11 taps) with scipy's `'reflect'`
//!   borders (half-sample symmetric, `d c b a | a b c d | d c b a`), population (co)variances,
//!   `C1 = (K1·L)²`, `C2 = (K2·L)²` with [`SSIM_K1`], [`SSIM_K2`], `L = 1`, and the mean taken
//!   over the map with a [`SSIM_PAD`]-pixel border cropped on every side.
//! * **Masked** variants (no scikit-image equivalent; the fixture script computes the same with
//!   numpy): the means in PSNR and NRMSE run over the mask pixels only; `ssim_masked` is the
//!   mean of the *full-image* SSIM map over the mask pixels that lie inside the crop (the
//!   filters still see the pixels outside the mask).
//! * [`head_mask`]: `|r| > threshold · max |r|`, then holes filled (see its docs).
//!
//! Whole-image SSIM of an MRI slice is dominated by the background (noise against zero), so
//! [`quality_report`] gives every metric both on the whole image and inside the head mask.
//!
//! Errors (mismatched sizes, non-finite values, an all-zero reference, an empty mask, an image
//! smaller than the SSIM window) are returned as [`MetricError`], never panics.
//!
//! ```
//! use sparsemap_host::metrics::{quality_report, Dims, HEAD_MASK_THRESHOLD};
//!
//! let dims = Dims::new(16, 16);
//! // A bright square on a dark background, and a copy with a small error inside it.
//! let inside = |i: usize| (4..12).contains(&(i / 16)) && (4..12).contains(&(i % 16));
//! let reference: Vec<f32> = (0..dims.len()).map(|i| if inside(i) { 2.0 } else { 0.0 }).collect();
//! let mut image = reference.clone();
//! image[8 * 16 + 8] = 1.5;
//! let q = quality_report(&reference, &image, dims, HEAD_MASK_THRESHOLD)?;
//! assert_eq!(q.head_pixels, 64);
//! // Normalised by max |reference| = 2: the error is 0.25, MSE = 0.0625 / 256 over the image.
//! assert!((q.whole.psnr - 10.0 * (256.0_f64 / 0.0625).log10()).abs() < 1e-9);
//! assert!((q.head.psnr - 10.0 * (64.0_f64 / 0.0625).log10()).abs() < 1e-9);
//! // A zero background adds nothing to either NRMSE sum, so the two agree here.
//! assert!((q.head.nrmse - q.whole.nrmse).abs() < 1e-12);
//! assert!(q.whole.ssim < 1.0);
//! # Ok::<(), sparsemap_host::metrics::MetricError>(())
//! ```

use std::collections::VecDeque;
use std::fmt;

use num_complex::Complex32;

/// Data range of normalised images: [`normalise`] divides by `max |reference|`.
pub const DATA_RANGE: f64 = 1.0;
/// Standard deviation (pixels) of the SSIM Gaussian window (Wang et al. 2004; skimage `sigma`).
pub const SSIM_SIGMA: f64 = 1.5;
/// Gaussian truncation in standard deviations; skimage sets `truncate = 3.5` when
/// `gaussian_weights=True` so that σ = 1.5 gives an 11-tap filter.
pub const SSIM_TRUNCATE: f64 = 3.5;
/// Filter radius, as scipy computes it: `int(truncate · σ + 0.5)` = 5.
pub const SSIM_RADIUS: usize = (SSIM_TRUNCATE * SSIM_SIGMA + 0.5) as usize;
/// Window side `2 · radius + 1` = 11; also the smallest image side SSIM accepts.
pub const SSIM_WIN_SIZE: usize = 2 * SSIM_RADIUS + 1;
/// Border excluded from the SSIM mean on each side: `(win_size − 1) / 2` = 5 (skimage `pad`).
pub const SSIM_PAD: usize = (SSIM_WIN_SIZE - 1) / 2;
/// SSIM luminance constant `K1` (skimage default, Wang et al. 2004).
pub const SSIM_K1: f64 = 0.01;
/// SSIM contrast constant `K2` (skimage default, Wang et al. 2004).
pub const SSIM_K2: f64 = 0.03;
/// Default [`head_mask`] threshold as a fraction of `max |reference|`.
pub const HEAD_MASK_THRESHOLD: f64 = 0.1;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetricError {
    /// `n_y` or `n_x` is zero.
    EmptyImage,
    /// A buffer (`what` = "reference", "image" or "mask") does not hold `n_y · n_x` values.
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A NaN or infinity in `what` at row-major index `index`.
    NonFinite { what: &'static str, index: usize },
    /// `max |reference| == 0`: nothing to normalise by.
    ZeroReference,
    /// The mask selects no pixel (for SSIM: none inside the cropped region).
    EmptyMask,
    /// The reference is zero on every mask pixel, so NRMSE has no denominator.
    ZeroReferenceInMask,
    /// SSIM needs both sides at least [`SSIM_WIN_SIZE`] (as skimage).
    TooSmallForSsim { n_y: usize, n_x: usize },
    /// A [`head_mask`] threshold outside `[0, 1)`.
    InvalidThreshold(f64),
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyImage => write!(f, "image has a zero side"),
            Self::LengthMismatch {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{what} has {found} values, expected n_y * n_x = {expected}"
                )
            }
            Self::NonFinite { what, index } => {
                write!(
                    f,
                    "{what} has a non-finite value at row-major index {index}"
                )
            }
            Self::ZeroReference => write!(f, "reference is all zero: cannot normalise by its max"),
            Self::EmptyMask => write!(f, "mask selects no pixel (SSIM: none inside the crop)"),
            Self::ZeroReferenceInMask => {
                write!(f, "reference is zero on every mask pixel: NRMSE undefined")
            }
            Self::TooSmallForSsim { n_y, n_x } => write!(
                f,
                "{n_y}x{n_x} image is smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} SSIM window"
            ),
            Self::InvalidThreshold(t) => write!(f, "head-mask threshold {t} is not in [0, 1)"),
        }
    }
}

impl std::error::Error for MetricError {}

pub type Result<T> = std::result::Result<T, MetricError>;

/// Image size: `n_y` rows (phase encode) × `n_x` columns (readout), row-major. Any size is
/// accepted (not only the powers of two of the reconstruction), so that metrics work on crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n_y: usize,
    pub n_x: usize,
}

impl Dims {
    pub const fn new(n_y: usize, n_x: usize) -> Self {
        Self { n_y, n_x }
    }

    /// Number of pixels `n_y · n_x`.
    pub const fn len(self) -> usize {
        self.n_y * self.n_x
    }

    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    fn check(self, what: &'static str, found: usize) -> Result<()> {
        if self.is_empty() {
            return Err(MetricError::EmptyImage);
        }
        if found != self.len() {
            return Err(MetricError::LengthMismatch {
                what,
                expected: self.len(),
                found,
            });
        }
        Ok(())
    }
}

/// `|z|` of every pixel, for metrics on complex reconstructions.
pub fn magnitude(image: &[Complex32]) -> Vec<f32> {
    image.iter().map(|z| z.norm()).collect()
}

/// A reference / image pair divided by `scale = max |reference|` (data range 1), in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub dims: Dims,
    pub reference: Vec<f64>,
    pub image: Vec<f64>,
    /// `max |reference|` of the input, the divisor.
    pub scale: f64,
}

/// Divides both images by `max |reference|` (after promotion to `f64`). Every metric in this
/// module calls this first; it is public so that callers can show the same images.
///
/// Fails on wrong lengths, non-finite values or an all-zero reference.
pub fn normalise<T: Copy + Into<f64>>(
    reference: &[T],
    image: &[T],
    dims: Dims,
) -> Result<Normalised> {
    let reference = to_f64_checked("reference", reference, dims)?;
    let image = to_f64_checked("image", image, dims)?;
    let scale = reference.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if scale == 0.0 {
        return Err(MetricError::ZeroReference);
    }
    Ok(Normalised {
        dims,
        reference: reference.into_iter().map(|v| v / scale).collect(),
        image: image.into_iter().map(|v| v / scale).collect(),
        scale,
    })
}

fn to_f64_checked<T: Copy + Into<f64>>(
    what: &'static str,
    v: &[T],
    dims: Dims,
) -> Result<Vec<f64>> {
    dims.check(what, v.len())?;
    let out: Vec<f64> = v.iter().map(|&a| a.into()).collect();
    match out.iter().position(|a| !a.is_finite()) {
        Some(index) => Err(MetricError::NonFinite { what, index }),
        None => Ok(out),
    }
}

fn check_mask(mask: &[bool], dims: Dims) -> Result<()> {
    dims.check("mask", mask.len())?;
    if mask.iter().any(|&m| m) {
        Ok(())
    } else {
        Err(MetricError::EmptyMask)
    }
}

/// PSNR, SSIM and NRMSE of one image (whole or inside one mask).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// dB; `+∞` for identical images.
    pub psnr: f64,
    pub ssim: f64,
    pub nrmse: f64,
}

/// The metrics on the whole image and inside the head mask (see the module docs for why both).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    pub whole: Metrics,
    pub head: Metrics,
    /// Pixels in the head mask.
    pub head_pixels: usize,
    pub head_threshold: f64,
}

impl Normalised {
    /// `mean((r − x)²)` over `mask` (all pixels for `None`) and the number of pixels.
    fn mse(&self, mask: Option<&[bool]>) -> (f64, usize) {
        let mut sum = 0.0;
        let mut n = 0usize;
        for (i, (r, x)) in self.reference.iter().zip(&self.image).enumerate() {
            if mask.is_none_or(|m| m[i]) {
                sum += (r - x) * (r - x);
                n += 1;
            }
        }
        (sum / n as f64, n)
    }

    fn psnr(&self, mask: Option<&[bool]>) -> f64 {
        let (mse, _) = self.mse(mask);
        10.0 * (DATA_RANGE * DATA_RANGE / mse).log10()
    }

    fn nrmse(&self, mask: Option<&[bool]>) -> Result<f64> {
        let (mse, n) = self.mse(mask);
        let energy = self
            .reference
            .iter()
            .enumerate()
            .filter(|(i, _)| mask.is_none_or(|m| m[*i]))
            .map(|(_, r)| r * r)
            .sum::<f64>()
            / n as f64;
        if energy == 0.0 {
            return Err(MetricError::ZeroReferenceInMask);
        }
        Ok(mse.sqrt() / energy.sqrt())
    }

    /// The SSIM map (skimage `full=True`), same layout as the images.
    pub fn ssim_map(&self) -> Result<Vec<f64>> {
        let Dims { n_y, n_x } = self.dims;
        if n_y < SSIM_WIN_SIZE || n_x < SSIM_WIN_SIZE {
            return Err(MetricError::TooSmallForSsim { n_y, n_x });
        }
        let g = GaussianFilter::new(SSIM_SIGMA, SSIM_RADIUS);
        let (r, x) = (&self.reference, &self.image);
        let prod = |f: &dyn Fn(usize) -> f64| (0..r.len()).map(f).collect::<Vec<f64>>();
        let ux = g.apply(r, self.dims);
        let uy = g.apply(x, self.dims);
        let uxx = g.apply(&prod(&|i| r[i] * r[i]), self.dims);
        let uyy = g.apply(&prod(&|i| x[i] * x[i]), self.dims);
        let uxy = g.apply(&prod(&|i| r[i] * x[i]), self.dims);
        let c1 = (SSIM_K1 * DATA_RANGE).powi(2);
        let c2 = (SSIM_K2 * DATA_RANGE).powi(2);
        Ok((0..r.len())
            .map(|i| {
                // Population (co)variances: skimage cov_norm = 1 with use_sample_covariance=False.
                let vx = uxx[i] - ux[i] * ux[i];
                let vy = uyy[i] - uy[i] * uy[i];
                let vxy = uxy[i] - ux[i] * uy[i];
                let a1 = 2.0 * ux[i] * uy[i] + c1;
                let a2 = 2.0 * vxy + c2;
                let b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1;
                let b2 = vx + vy + c2;
                (a1 * a2) / (b1 * b2)
            })
            .collect())
    }

    /// Mean of `map` over the pixels inside the [`SSIM_PAD`] crop (and inside `mask`, if any).
    fn cropped_mean(&self, map: &[f64], mask: Option<&[bool]>) -> Result<f64> {
        let Dims { n_y, n_x } = self.dims;
        let mut sum = 0.0;
        let mut n = 0usize;
        for y in SSIM_PAD..n_y - SSIM_PAD {
            for x in SSIM_PAD..n_x - SSIM_PAD {
                let i = y * n_x + x;
                if mask.is_none_or(|m| m[i]) {
                    sum += map[i];
                    n += 1;
                }
            }
        }
        if n == 0 {
            return Err(MetricError::EmptyMask);
        }
        Ok(sum / n as f64)
    }

    fn metrics(&self, mask: Option<&[bool]>) -> Result<Metrics> {
        let map = self.ssim_map()?;
        Ok(Metrics {
            psnr: self.psnr(mask),
            ssim: self.cropped_mean(&map, mask)?,
            nrmse: self.nrmse(mask)?,
        })
    }
}

/// Whole-image PSNR in dB (module docs); `+∞` for identical images.
pub fn psnr<T: Copy + Into<f64>>(reference: &[T], image: &[T], dims: Dims) -> Result<f64> {
    Ok(normalise(reference, image, dims)?.psnr(None))
}

/// PSNR in dB with the mean squared error taken over the `mask` pixels only.
pub fn psnr_masked<T: Copy + Into<f64>>(
    reference: &[T],
    image: &[T],
    mask: &[bool],
    dims: Dims,
) -> Result<f64> {
    let n = normalise(reference, image, dims)?;
    check_mask(mask, dims)?;
    Ok(n.psnr(Some(mask)))
}

/// Whole-image NRMSE, Euclidean normalisation (module docs).
pub fn nrmse<T: Copy + Into<f64>>(reference: &[T], image: &[T], dims: Dims) -> Result<f64> {
    normalise(reference, image, dims)?.nrmse(None)
}

/// NRMSE with both means taken over the `mask` pixels only.
pub fn nrmse_masked<T: Copy + Into<f64>>(
    reference: &[T],
    image: &[T],
    mask: &[bool],
    dims: Dims,
) -> Result<f64> {
    let n = normalise(reference, image, dims)?;
    check_mask(mask, dims)?;
    n.nrmse(Some(mask))
}

/// The SSIM map of the normalised images (skimage `structural_similarity(..., full=True)[1]`).
pub fn ssim_map<T: Copy + Into<f64>>(reference: &[T], image: &[T], dims: Dims) -> Result<Vec<f64>> {
    normalise(reference, image, dims)?.ssim_map()
}

/// Mean SSIM over the cropped map (module docs). Needs both sides ≥ [`SSIM_WIN_SIZE`].
pub fn ssim<T: Copy + Into<f64>>(reference: &[T], image: &[T], dims: Dims) -> Result<f64> {
    let n = normalise(reference, image, dims)?;
    let map = n.ssim_map()?;
    n.cropped_mean(&map, None)
}

/// Mean of the full-image SSIM map over the `mask` pixels inside the [`SSIM_PAD`] crop.
/// [`MetricError::EmptyMask`] if no mask pixel is inside the crop.
pub fn ssim_masked<T: Copy + Into<f64>>(
    reference: &[T],
    image: &[T],
    mask: &[bool],
    dims: Dims,
) -> Result<f64> {
    let n = normalise(reference, image, dims)?;
    check_mask(mask, dims)?;
    let map = n.ssim_map()?;
    n.cropped_mean(&map, Some(mask))
}

/// PSNR, SSIM and NRMSE together (one normalisation), on the whole image (`mask = None`) or
/// inside `mask`.
pub fn metrics<T: Copy + Into<f64>>(
    reference: &[T],
    image: &[T],
    dims: Dims,
    mask: Option<&[bool]>,
) -> Result<Metrics> {
    let n = normalise(reference, image, dims)?;
    if let Some(m) = mask {
        check_mask(m, dims)?;
    }
    n.metrics(mask)
}

/// Metrics on the whole image and inside `head_mask(reference, dims, head_threshold)`
/// ([`HEAD_MASK_THRESHOLD`] is the usual threshold).
pub fn quality_report<T: Copy + Into<f64>>(
    reference: &[T],
    image: &[T],
    dims: Dims,
    head_threshold: f64,
) -> Result<QualityReport> {
    let n = normalise(reference, image, dims)?;
    let mask = head_mask(reference, dims, head_threshold)?;
    check_mask(&mask, dims)?;
    Ok(QualityReport {
        whole: n.metrics(None)?,
        head: n.metrics(Some(&mask))?,
        head_pixels: mask.iter().filter(|&&m| m).count(),
        head_threshold,
    })
}

/// Foreground (head) mask of a magnitude reference. Rule, exactly:
/// 1. `fg = |r| > threshold · max |r|` (`threshold` in `[0, 1)`);
/// 2. holes are filled: every non-`fg` pixel that is *not* 4-connected (through non-`fg`
///    pixels) to the image border becomes foreground.
///
/// This is `scipy.ndimage.binary_fill_holes(|r| > threshold * max|r|)` with its default
/// (4-connected) structure, which the fixture script uses. It fills dark ventricles and CSF
/// enclosed by brighter tissue; gaps open to the border are not closed.
pub fn head_mask<T: Copy + Into<f64>>(
    reference: &[T],
    dims: Dims,
    threshold: f64,
) -> Result<Vec<bool>> {
    if !(0.0..1.0).contains(&threshold) {
        return Err(MetricError::InvalidThreshold(threshold));
    }
    let r = to_f64_checked("reference", reference, dims)?;
    let peak = r.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if peak == 0.0 {
        return Err(MetricError::ZeroReference);
    }
    let fg: Vec<bool> = r.iter().map(|v| v.abs() > threshold * peak).collect();
    Ok(fill_holes(&fg, dims))
}

/// Binary hole filling: background reached from the border by a 4-connected flood stays
/// background, everything else is foreground.
fn fill_holes(fg: &[bool], dims: Dims) -> Vec<bool> {
    let Dims { n_y, n_x } = dims;
    let mut outside = vec![false; fg.len()];
    let mut queue = VecDeque::new();
    let seed = |y: usize, x: usize, outside: &mut Vec<bool>, queue: &mut VecDeque<usize>| {
        let i = y * n_x + x;
        if !fg[i] && !outside[i] {
            outside[i] = true;
            queue.push_back(i);
        }
    };
    for x in 0..n_x {
        seed(0, x, &mut outside, &mut queue);
        seed(n_y - 1, x, &mut outside, &mut queue);
    }
    for y in 0..n_y {
        seed(y, 0, &mut outside, &mut queue);
        seed(y, n_x - 1, &mut outside, &mut queue);
    }
    while let Some(i) = queue.pop_front() {
        let (y, x) = (i / n_x, i % n_x);
        if y > 0 {
            seed(y - 1, x, &mut outside, &mut queue);
        }
        if y + 1 < n_y {
            seed(y + 1, x, &mut outside, &mut queue);
        }
        if x > 0 {
            seed(y, x - 1, &mut outside, &mut queue);
        }
        if x + 1 < n_x {
            seed(y, x + 1, &mut outside, &mut queue);
        }
    }
    outside.into_iter().map(|o| !o).collect()
}

/// Separable Gaussian filter as `scipy.ndimage.gaussian_filter(mode='reflect')`: taps
/// `exp(−k² / 2σ²)` for `k = −radius..=radius`, normalised to sum 1, correlated along y then x
/// with half-sample-symmetric borders.
struct GaussianFilter {
    taps: Vec<f64>,
    radius: usize,
}

impl GaussianFilter {
    fn new(sigma: f64, radius: usize) -> Self {
        let r = radius as i64;
        let raw: Vec<f64> = (-r..=r)
            .map(|k| (-0.5 / (sigma * sigma) * (k * k) as f64).exp())
            .collect();
        let sum: f64 = raw.iter().sum();
        Self {
            taps: raw.into_iter().map(|w| w / sum).collect(),
            radius,
        }
    }

    fn apply(&self, input: &[f64], dims: Dims) -> Vec<f64> {
        let Dims { n_y, n_x } = dims;
        let r = self.radius as i64;
        // Along y (axis 0) first, as scipy does.
        let mut tmp = vec![0.0; input.len()];
        for y in 0..n_y {
            for (k, w) in self.taps.iter().enumerate() {
                let src = reflect(y as i64 + k as i64 - r, n_y);
                let (row_in, row_out) = (&input[src * n_x..][..n_x], &mut tmp[y * n_x..][..n_x]);
                for (o, v) in row_out.iter_mut().zip(row_in) {
                    *o += w * v;
                }
            }
        }
        let mut out = vec![0.0; input.len()];
        for y in 0..n_y {
            let (row_in, row_out) = (&tmp[y * n_x..][..n_x], &mut out[y * n_x..][..n_x]);
            for (x, o) in row_out.iter_mut().enumerate() {
                *o = self
                    .taps
                    .iter()
                    .enumerate()
                    .map(|(k, w)| w * row_in[reflect(x as i64 + k as i64 - r, n_x)])
                    .sum();
            }
        }
        out
    }
}

/// scipy `'reflect'` index (half-sample symmetric, period `2n`): `… 1 0 | 0 1 … n−1 | n−1 …`.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let m = i.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_skimage() {
        assert_eq!(SSIM_RADIUS, 5);
        assert_eq!(SSIM_WIN_SIZE, 11);
        assert_eq!(SSIM_PAD, 5);
    }

    #[test]
    fn reflect_is_half_sample_symmetric() {
        let idx: Vec<usize> = (-4..8).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]);
        assert_eq!(reflect(-9, 4), 0); // wraps with period 2n for very short axes
        assert_eq!(reflect(5, 1), 0);
    }

    #[test]
    fn gaussian_taps_sum_to_one_and_preserve_constants() {
        let g = GaussianFilter::new(SSIM_SIGMA, SSIM_RADIUS);
        assert_eq!(g.taps.len(), 11);
        assert!((g.taps.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let dims = Dims::new(12, 13);
        let out = g.apply(&vec![0.7; dims.len()], dims);
        assert!(out.iter().all(|v| (v - 0.7).abs() < 1e-14));
    }

    fn disk(dims: Dims, radius: f64, hole: f64) -> Vec<f64> {
        let (cy, cx) = ((dims.n_y as f64 - 1.0) / 2.0, (dims.n_x as f64 - 1.0) / 2.0);
        (0..dims.len())
            .map(|i| {
                let d = ((i / dims.n_x) as f64 - cy).hypot((i % dims.n_x) as f64 - cx);
                if d < hole {
                    0.0
                } else if d < radius {
                    1.0
                } else {
                    0.02
                }
            })
            .collect()
    }

    #[test]
    fn head_mask_of_a_disk_with_a_dark_core_is_the_filled_disk() {
        let dims = Dims::new(32, 40);
        let img = disk(dims, 10.0, 4.0);
        let mask = head_mask(&img, dims, HEAD_MASK_THRESHOLD).unwrap();
        let want = disk(dims, 10.0, 0.0);
        for (i, (&m, &w)) in mask.iter().zip(&want).enumerate() {
            assert_eq!(m, w == 1.0, "pixel {i}");
        }
        // A dark core that touches the border through a channel is not a hole.
        let mut open = img.clone();
        let cy = dims.n_y / 2;
        for x in 0..dims.n_x / 2 {
            open[cy * dims.n_x + x] = 0.0;
        }
        let mask = head_mask(&open, dims, HEAD_MASK_THRESHOLD).unwrap();
        assert!(!mask[cy * dims.n_x + dims.n_x / 2 - 1]);
    }

    #[test]
    fn identical_images() {
        let dims = Dims::new(16, 16);
        let img = disk(dims, 5.0, 2.0);
        let m = metrics(&img, &img, dims, None).unwrap();
        assert_eq!(m.psnr, f64::INFINITY);
        assert_eq!(m.nrmse, 0.0);
        assert!((m.ssim - 1.0).abs() < 1e-12);
    }

    #[test]
    fn f32_and_f64_inputs_agree() {
        let dims = Dims::new(12, 14);
        let a: Vec<f32> = (0..dims.len())
            .map(|i| ((i * 37 % 11) as f32) / 10.0 + 0.1)
            .collect();
        let b: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i % 3) as f32 - 1.0) * 0.05)
            .collect();
        let a64: Vec<f64> = a.iter().map(|&v| v.into()).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v.into()).collect();
        assert_eq!(
            metrics(&a, &b, dims, None).unwrap(),
            metrics(&a64, &b64, dims, None).unwrap()
        );
    }

    #[test]
    fn errors_not_panics() {
        let dims = Dims::new(12, 12);
        let a = vec![1.0_f64; dims.len()];
        let short = vec![1.0_f64; dims.len() - 1];
        assert!(matches!(
            psnr(&a, &short, dims),
            Err(MetricError::LengthMismatch { what: "image", .. })
        ));
        let mut nan = a.clone();
        nan[7] = f64::NAN;
        assert_eq!(
            ssim(&a, &nan, dims),
            Err(MetricError::NonFinite {
                what: "image",
                index: 7
            })
        );
        assert_eq!(
            nrmse(&vec![0.0; dims.len()], &a, dims),
            Err(MetricError::ZeroReference)
        );
        let none = vec![false; dims.len()];
        assert_eq!(
            psnr_masked(&a, &a, &none, dims),
            Err(MetricError::EmptyMask)
        );
        let mut corner = none.clone();
        corner[0] = true; // only in the cropped border: no SSIM pixel left
        assert_eq!(
            ssim_masked(&a, &a, &corner, dims),
            Err(MetricError::EmptyMask)
        );
        assert!(matches!(
            nrmse_masked(&a, &a, &[true; 3], dims),
            Err(MetricError::LengthMismatch { what: "mask", .. })
        ));
        let small = Dims::new(10, 30);
        let s = vec![1.0_f64; small.len()];
        assert_eq!(
            ssim(&s, &s, small),
            Err(MetricError::TooSmallForSsim { n_y: 10, n_x: 30 })
        );
        assert_eq!(
            head_mask(&a, dims, 1.5),
            Err(MetricError::InvalidThreshold(1.5))
        );
        assert_eq!(
            psnr(&[] as &[f64], &[], Dims::new(0, 4)),
            Err(MetricError::EmptyImage)
        );
        let mut zero_in_mask = a.clone();
        zero_in_mask[0] = 0.0;
        let mut m0 = none.clone();
        m0[0] = true;
        assert_eq!(
            nrmse_masked(&zero_in_mask, &a, &m0, dims),
            Err(MetricError::ZeroReferenceInMask)
        );
        // Usable with anyhow and a readable message.
        let e: anyhow::Error = psnr(&a, &short, dims).unwrap_err().into();
        assert!(e.to_string().contains("expected n_y * n_x = 144"));
    }
}
