//! Multi-coil acquisition simulation: receive sensitivities of circular surface loops by
//! Biot–Savart integration, a correlated receiver-noise covariance, multi-coil k-space and
//! the noise-adjustment scan — seeded like [`crate::simulate`], whose conventions carry over.
//!
//! ## Coil array ([`biot_savart_sensitivities`])
//!
//! Coordinates in mm, origin at the image centre: pixel `(y, x)` sits at
//! `(x - n_x/2) fov_x / n_x`, `(y - n_y/2) fov_y / n_y` in the slice plane `z = 0` (the
//! centred layout of DESIGN §3.1). `C` circular loops of radius
//! [`CoilGeometry::loop_radius_mm`] have their centres evenly spaced in angle on the ellipse
//! with semi-axes `object_semi_axes_mm + standoff_mm` (angles `2 pi c / C + rotation`), their
//! axes pointing at the origin, so that each loop stands in the plane spanned by the tangent
//! of the ellipse's radius and `z` and crosses the slice plane in two points. The static
//! field of a unit current in loop `c` is integrated with the midpoint rule over
//! [`CoilGeometry::segments`] straight segments,
//! `B(r) = sum_k dl_k x (r - r_k) / (|r - r_k|^2 + a^2)^{3/2}` (`mu0 I / 4 pi` dropped: it is
//! removed by the normalisation), `a` = [`CoilGeometry::wire_radius_mm`] a finite wire
//! radius that keeps the field finite where the wire crosses the slice.
//!
//! Convention: the receive sensitivity is the negatively rotating transverse component,
//! `s_c = B_x - i B_y` (reciprocity: a coil receives from spins precessing in the positive
//! sense about `+z` with the conjugate of the field it would make, `B1- ∝ (B_x - i B_y)^*`
//! up to a global conjugation that only mirrors the phase; Hoult 2000 writes
//! `B1- = (B_x - i B_y)^* / 2`, we keep the unconjugated form, so our maps are the complex
//! conjugates of that reference's — a global choice that changes no magnitude and no
//! reconstruction).
//!
//! Normalisation: `S_c(r) = s_c(r) / sqrt(sum_c' |s_c'(r)|^2)` at every pixel, so
//! `sum_c |S_c|^2 = 1` everywhere (DESIGN §3.4). With white noise of variance `sigma^2` per
//! coil, the SENSE-combined zero-filled image `sum_c conj(S_c) F^H y_c` then has the image
//! scale of the single-coil simulation and noise of variance `sigma^2` per pixel: the
//! single-coil noise level `s` means the same thing here.
//!
//! ## Noise covariance ([`noise_covariance`])
//!
//! `Psi = D^{1/2} R D^{1/2}`: variances `d_c` drawn uniformly from
//! `[1 - VARIANCE_SPREAD, 1 + VARIANCE_SPREAD]` and divided by their mean (unit mean
//! diagonal); correlations `R_jk = rho^{dist(j, k)} exp(i phi_jk)` with `dist` the distance
//! around the ring of coils (neighbours: `rho`, next: `rho^2`, ...), `phi_jk` uniform in
//! `[-pi, pi)` and `phi_kj = -phi_jk` (Hermitian). If `R` is not positive definite (a
//! Cholesky factorisation fails or has a pivot below [`MIN_PIVOT`]), its off-diagonal part is
//! shrunk by a factor 0.9 until it is; for `rho <= 0.3` it never is (diagonally dominant).
//!
//! ## Simulation ([`simulate_coil_slice`])
//!
//! For slice `i` with the stack's seed, `(mask_seed, noise_seed) = derive_seeds(seed, i)`
//! exactly as for one coil (same mask as the single-coil simulation of the slice):
//! 1. `sigma = s rms(F target)` over the whole grid, as for one coil;
//! 2. `kfull_c = F (S_c (.) target)` (`f64`);
//! 3. `w_c(k) = (a + j b) / sqrt 2` with, from `ChaCha8Rng::seed_from_u64(noise_seed)`, for
//!    coil 0 all `N` values of `a` then all `N` of `b`, then coil 1, ... (coil 0's stream is
//!    the single-coil noise stream); `n(k) = L w(k)` with `L` the lower Cholesky factor of
//!    `sigma^2 Psi` (so `E n n^H = sigma^2 Psi`);
//! 4. `y_c = M (.) (kfull_c + n_c)`, rounded to `Complex32`, exact zeros off the mask — the
//!    same mask for every coil;
//! 5. the noise scan: `M_noise` samples `n = L w` per coil, `w` drawn as in step 3 from
//!    `ChaCha8Rng::seed_from_u64(splitmix64(noise_seed ^ NOISE_SCAN_STREAM))` (coil 0's `a`,
//!    `b`, then coil 1, ...): what a scanner records with the transmitter off before the scan.

use anyhow::{bail, ensure, Context, Result};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use num_complex::{Complex32, Complex64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use sparsemap_core::Shape;

use crate::simulate::{
    check_noise, check_shape, derive_seeds, make_mask, splitmix64, Acquisition, Fourier,
};

/// Most coils the simulation accepts (the wire protocol's slice assembler's limit, DESIGN §5).
pub const MAX_COILS: usize = 32;
/// Default number of noise-scan samples per coil and slice.
pub const DEFAULT_NOISE_SAMPLES: usize = 4096;
/// Half-width of the uniform spread of the per-coil noise variances before they are divided
/// by their mean (variances in about `[0.7, 1.3]`).
pub const VARIANCE_SPREAD: f64 = 0.3;
/// Smallest Cholesky pivot (relative to the largest diagonal entry) accepted as positive
/// definite by [`noise_covariance`] and [`cholesky`].
pub const MIN_PIVOT: f64 = 1e-9;
/// Stream tag of the noise-scan seeds (ASCII "scan").
const NOISE_SCAN_STREAM: u64 = 0x7363_616E;
/// Stream tag of the covariance's random draws (ASCII "psi").
const COVARIANCE_STREAM: u64 = 0x70_7369;

/// Where the receive loops are. Lengths in mm. [`Default`]: a head-sized ellipse of
/// 95 × 78 mm semi-axes (Colin27's axial planes: anterior–posterior along `y`, left–right
/// along `x`), loops of 50 mm radius 20 mm outside it, 64 segments, 1 mm wire radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoilGeometry {
    /// Radius of each circular loop.
    pub loop_radius_mm: f64,
    /// Semi-axes `[y, x]` of the ellipse that bounds the object.
    pub object_semi_axes_mm: [f64; 2],
    /// Distance of the loop centres outside that ellipse (added to both semi-axes).
    pub standoff_mm: f64,
    /// Angle of coil 0's centre from the `+x` axis towards `+y`, radians.
    pub rotation: f64,
    /// Straight segments per loop in the Biot–Savart sum.
    pub segments: usize,
    /// Wire radius `a` of the regularised kernel (module docs).
    pub wire_radius_mm: f64,
}

impl Default for CoilGeometry {
    fn default() -> Self {
        Self {
            loop_radius_mm: 50.0,
            object_semi_axes_mm: [95.0, 78.0],
            standoff_mm: 20.0,
            rotation: std::f64::consts::FRAC_PI_2,
            segments: 64,
            wire_radius_mm: 1.0,
        }
    }
}

impl CoilGeometry {
    /// Centre `[y, x]` (mm) of loop `c` of `coils` (module docs).
    pub fn loop_centre_mm(&self, c: usize, coils: usize) -> [f64; 2] {
        let angle = self.rotation + std::f64::consts::TAU * c as f64 / coils.max(1) as f64;
        let ry = self.object_semi_axes_mm[0] + self.standoff_mm;
        let rx = self.object_semi_axes_mm[1] + self.standoff_mm;
        [ry * angle.sin(), rx * angle.cos()]
    }

    fn check(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        ensure!(
            positive(self.loop_radius_mm)
                && positive(self.object_semi_axes_mm[0])
                && positive(self.object_semi_axes_mm[1])
                && positive(self.wire_radius_mm)
                && self.standoff_mm.is_finite()
                && self.standoff_mm >= 0.0
                && self.rotation.is_finite(),
            "coil geometry {self:?}: lengths must be finite and positive (standoff >= 0)"
        );
        ensure!(
            self.segments >= 8,
            "coil geometry: at least 8 segments per loop, got {}",
            self.segments
        );
        Ok(())
    }
}

fn check_coils(coils: usize) -> Result<()> {
    ensure!(
        (1..=MAX_COILS).contains(&coils),
        "{coils} coils: 1..={MAX_COILS} are supported"
    );
    Ok(())
}

/// Receive sensitivities `[C][n_y][n_x]` (row-major per coil) of `coils` circular loops
/// around the object, by Biot–Savart integration, normalised so that `sum_c |S_c|^2 = 1` at
/// every pixel (module docs: geometry, the `B_x - i B_y` convention, normalisation).
/// `fov_mm` is `[y, x]`, the extent of the grid.
///
/// # Errors
/// `coils` outside `1..=MAX_COILS`, a non-finite or non-positive field of view, an invalid
/// geometry.
pub fn biot_savart_sensitivities(
    shape: Shape,
    fov_mm: [f64; 2],
    coils: usize,
    geometry: &CoilGeometry,
) -> Result<Vec<Complex32>> {
    check_coils(coils)?;
    geometry.check()?;
    ensure!(
        fov_mm.iter().all(|v| v.is_finite() && *v > 0.0),
        "field of view {fov_mm:?} mm must be finite and positive"
    );
    let (n_y, n_x) = (shape.n_y(), shape.n_x());
    let n = n_y * n_x;
    let (dy, dx) = (fov_mm[0] / n_y as f64, fov_mm[1] / n_x as f64);
    let a2 = geometry.wire_radius_mm * geometry.wire_radius_mm;
    let mut raw = vec![Complex64::default(); coils * n];
    for c in 0..coils {
        let [cy, cx] = geometry.loop_centre_mm(c, coils);
        // Axis towards the origin; the loop spans the in-plane tangent t and z.
        let norm = (cx * cx + cy * cy).sqrt().max(f64::MIN_POSITIVE);
        let (ax, ay) = (-cx / norm, -cy / norm);
        let (tx, ty) = (-ay, ax);
        let r = geometry.loop_radius_mm;
        let segments: Vec<([f64; 3], [f64; 3])> = (0..geometry.segments)
            .map(|k| {
                let step = std::f64::consts::TAU / geometry.segments as f64;
                let point = |phi: f64| {
                    let (s, co) = phi.sin_cos();
                    [cx + r * co * tx, cy + r * co * ty, r * s]
                };
                let (p0, p1) = (point(k as f64 * step), point((k as f64 + 1.0) * step));
                let mid = [
                    (p0[0] + p1[0]) / 2.0,
                    (p0[1] + p1[1]) / 2.0,
                    (p0[2] + p1[2]) / 2.0,
                ];
                let dl = [p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]];
                (mid, dl)
            })
            .collect();
        let out = &mut raw[c * n..(c + 1) * n];
        for y in 0..n_y {
            let py = (y as f64 - (n_y / 2) as f64) * dy;
            for x in 0..n_x {
                let px = (x as f64 - (n_x / 2) as f64) * dx;
                let (mut bx, mut by) = (0.0, 0.0);
                for (mid, dl) in &segments {
                    let d = [px - mid[0], py - mid[1], -mid[2]];
                    let q = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + a2;
                    let inv = 1.0 / (q * q.sqrt());
                    // (dl x d)_x and (dl x d)_y.
                    bx += (dl[1] * d[2] - dl[2] * d[1]) * inv;
                    by += (dl[2] * d[0] - dl[0] * d[2]) * inv;
                }
                out[y * n_x + x] = Complex64::new(bx, -by);
            }
        }
    }
    let mut maps = vec![Complex32::default(); coils * n];
    for p in 0..n {
        let energy: f64 = (0..coils).map(|c| raw[c * n + p].norm_sqr()).sum();
        ensure!(
            energy > 0.0 && energy.is_finite(),
            "coil sensitivities vanish at pixel {p} (degenerate geometry {geometry:?})"
        );
        let scale = 1.0 / energy.sqrt();
        for c in 0..coils {
            let v = raw[c * n + p] * scale;
            maps[c * n + p] = Complex32::new(v.re as f32, v.im as f32);
        }
    }
    Ok(maps)
}

/// Lower Cholesky factor `L` (row-major `[C][C]`, `L L^H = a`) of a Hermitian matrix `a`;
/// `None` unless every pivot exceeds `MIN_PIVOT · max_i a_ii` (positive definite).
pub fn cholesky(a: &[Complex64], size: usize) -> Option<Vec<Complex64>> {
    if a.len() != size * size {
        return None;
    }
    let scale = (0..size).map(|i| a[i * size + i].re).fold(0.0, f64::max);
    let mut l = vec![Complex64::default(); size * size];
    for j in 0..size {
        let mut diag = a[j * size + j].re;
        for k in 0..j {
            diag -= l[j * size + k].norm_sqr();
        }
        if !(diag > MIN_PIVOT * scale) {
            return None;
        }
        let ljj = diag.sqrt();
        l[j * size + j] = Complex64::new(ljj, 0.0);
        for i in j + 1..size {
            let mut v = a[i * size + j];
            for k in 0..j {
                v -= l[i * size + k] * l[j * size + k].conj();
            }
            l[i * size + j] = v / ljj;
        }
    }
    Some(l)
}

/// Receiver noise covariance `Psi` (`[C][C]`, row-major, Hermitian positive definite) of
/// `coils` coils on a ring: unit mean diagonal, neighbour correlation magnitude
/// `correlation`, decaying as `correlation^distance`, random phases — module docs. Seeded.
///
/// # Errors
/// `coils` outside `1..=MAX_COILS`; `correlation` outside `[0, 1)`.
pub fn noise_covariance(coils: usize, correlation: f64, seed: u64) -> Result<Vec<Complex64>> {
    check_coils(coils)?;
    ensure!(
        correlation.is_finite() && (0.0..1.0).contains(&correlation),
        "coil noise correlation must be in [0, 1), got {correlation}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(seed ^ COVARIANCE_STREAM));
    let mut variances: Vec<f64> = (0..coils)
        .map(|_| 1.0 + VARIANCE_SPREAD * (2.0 * rng.random::<f64>() - 1.0))
        .collect();
    let mean = variances.iter().sum::<f64>() / coils as f64;
    variances.iter_mut().for_each(|v| *v /= mean);
    let mut r = vec![Complex64::default(); coils * coils];
    for j in 0..coils {
        r[j * coils + j] = Complex64::new(1.0, 0.0);
        for k in j + 1..coils {
            let d = (k - j).min(coils - (k - j));
            let phase = std::f64::consts::PI * (2.0 * rng.random::<f64>() - 1.0);
            let v = Complex64::from_polar(correlation.powi(d as i32), phase);
            r[j * coils + k] = v;
            r[k * coils + j] = v.conj();
        }
    }
    let mut shrink = 1.0;
    for _ in 0..200 {
        let psi: Vec<Complex64> = (0..coils * coils)
            .map(|i| {
                let (j, k) = (i / coils, i % coils);
                let off = if j == k { 1.0 } else { shrink };
                r[i] * off * (variances[j] * variances[k]).sqrt()
            })
            .collect();
        if cholesky(&psi, coils).is_some() {
            return Ok(psi);
        }
        shrink *= 0.9;
    }
    bail!("no positive definite noise covariance for {coils} coils (internal error)")
}

/// `sigma^2 Psi`'s Cholesky factor after checking `psi` (`[C][C]`).
fn noise_factor(psi: &[Complex64], coils: usize, sigma: f64) -> Result<Vec<Complex64>> {
    ensure!(
        psi.len() == coils * coils,
        "noise covariance has {} entries, {coils} coils need {}",
        psi.len(),
        coils * coils
    );
    for j in 0..coils {
        for k in 0..coils {
            let (a, b) = (psi[j * coils + k], psi[k * coils + j]);
            ensure!(
                a.re.is_finite()
                    && a.im.is_finite()
                    && (a - b.conj()).norm() <= 1e-9 * (1.0 + a.norm()),
                "noise covariance is not Hermitian and finite at [{j}][{k}]"
            );
        }
    }
    let l = cholesky(psi, coils).context("noise covariance is not positive definite")?;
    Ok(l.into_iter().map(|v| v * sigma).collect())
}

/// `count` correlated noise vectors: `[C][count]`, `n(k) = L w(k)`, `w` drawn from `rng` as
/// coil 0's `a` (count values), `b`, coil 1's `a`, ... (module docs).
fn correlated_noise(
    l: &[Complex64],
    coils: usize,
    count: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Complex64> {
    let mut w = vec![Complex64::default(); coils * count];
    let inv = std::f64::consts::FRAC_1_SQRT_2;
    for c in 0..coils {
        let row = &mut w[c * count..(c + 1) * count];
        for v in row.iter_mut() {
            v.re = inv * rng.sample::<f64, _>(StandardNormal);
        }
        for v in row.iter_mut() {
            v.im = inv * rng.sample::<f64, _>(StandardNormal);
        }
    }
    let mut n = vec![Complex64::default(); coils * count];
    for c in 0..coils {
        for j in 0..=c {
            let f = l[c * coils + j];
            if f == Complex64::default() {
                continue;
            }
            let (src, dst) = (j * count, c * count);
            for k in 0..count {
                n[dst + k] += f * w[src + k];
            }
        }
    }
    n
}

/// One simulated multi-coil slice (module docs).
#[derive(Debug, Clone)]
pub struct CoilSlice {
    /// `[C][n_y][n_x]`: `M (.) (F(S_c target) + n_c)`, centred, exact zeros off the mask.
    pub kspace: Array3<Complex32>,
    /// The sampling mask, the same for every coil (and as for one coil).
    pub mask: Array2<bool>,
    /// `[C][M]` pure-noise samples with covariance `sigma^2 Psi`.
    pub noise_scan: Array2<Complex32>,
    /// `sqrt(mean |F target|^2)` over the whole grid (of the single-coil target).
    pub kspace_rms: f64,
    /// `s kspace_rms`: coil `c`'s noise variance is `sigma^2 Psi_cc`.
    pub noise_sigma: f64,
    /// Seed of the mask stream.
    pub mask_seed: u64,
    /// Seed of the noise stream.
    pub noise_seed: u64,
}

/// A multi-coil simulation planned for one grid: sensitivities, noise covariance and the
/// transform, reused for every slice.
pub struct CoilSimulator {
    shape: Shape,
    coils: usize,
    maps: Vec<Complex64>,
    psi: Vec<Complex64>,
    noise_samples: usize,
    fourier: Fourier,
}

impl CoilSimulator {
    /// `sensitivities` `[C][n_y][n_x]`, `covariance` `Psi` `[C][C]` (Hermitian positive
    /// definite), `noise_samples` per coil in the noise scan.
    ///
    /// # Errors
    /// Wrong sizes, non-finite maps, a covariance that is not Hermitian positive definite.
    pub fn new(
        shape: Shape,
        sensitivities: &[Complex32],
        covariance: &[Complex64],
        noise_samples: usize,
    ) -> Result<Self> {
        let n = shape.len();
        ensure!(
            !sensitivities.is_empty() && sensitivities.len().is_multiple_of(n),
            "sensitivities hold {} values, not a multiple of the {}x{} grid",
            sensitivities.len(),
            shape.n_y(),
            shape.n_x()
        );
        let coils = sensitivities.len() / n;
        check_coils(coils)?;
        ensure!(
            sensitivities.iter().all(|v| v.is_finite()),
            "sensitivities contain NaN or infinite values"
        );
        noise_factor(covariance, coils, 1.0)?;
        Ok(Self {
            shape,
            coils,
            maps: sensitivities
                .iter()
                .map(|v| Complex64::new(f64::from(v.re), f64::from(v.im)))
                .collect(),
            psi: covariance.to_vec(),
            noise_samples,
            fourier: Fourier::new(shape),
        })
    }

    /// Number of coils `C`.
    pub fn coils(&self) -> usize {
        self.coils
    }

    /// Simulates slice `slice_index` of a stack acquired with `acquisition` (module docs).
    ///
    /// # Errors
    /// A target of another shape or with non-finite values, a noise level outside `[0, 1]`,
    /// impossible mask parameters.
    pub fn simulate(
        &mut self,
        target: ArrayView2<'_, Complex32>,
        acquisition: &Acquisition,
        slice_index: u64,
    ) -> Result<CoilSlice> {
        check_noise(acquisition.noise)?;
        let (n_y, n_x) = (self.shape.n_y(), self.shape.n_x());
        ensure!(
            target.dim() == (n_y, n_x),
            "slice {slice_index}: target {:?} differs from the coil grid {:?}",
            target.dim(),
            (n_y, n_x)
        );
        ensure!(
            target.iter().all(|v| v.is_finite()),
            "slice {slice_index}: the target image contains NaN or infinite values"
        );
        let (mask_seed, noise_seed) = derive_seeds(acquisition.seed, slice_index);
        let mask = make_mask(&acquisition.mask, n_y, n_x, mask_seed)
            .with_context(|| format!("slice {slice_index}: mask {}", acquisition.mask))?;
        let n = n_y * n_x;
        let image: Vec<Complex64> = target
            .iter()
            .map(|v| Complex64::new(f64::from(v.re), f64::from(v.im)))
            .collect();
        let kfull = self.fourier.apply(&image, false);
        let kspace_rms = (kfull.iter().map(|v| v.norm_sqr()).sum::<f64>() / n as f64).sqrt();
        let sigma = acquisition.noise * kspace_rms;
        let l = noise_factor(&self.psi, self.coils, sigma)?;
        let mut rng = ChaCha8Rng::seed_from_u64(noise_seed);
        let noise = correlated_noise(&l, self.coils, n, &mut rng);
        let mut kspace = Array3::<Complex32>::zeros((self.coils, n_y, n_x));
        for c in 0..self.coils {
            let coil_image: Vec<Complex64> = image
                .iter()
                .zip(&self.maps[c * n..(c + 1) * n])
                .map(|(x, s)| x * s)
                .collect();
            let kc = self.fourier.apply(&coil_image, false);
            let out = kspace.index_axis_mut(Axis(0), c);
            for (((o, &m), k), e) in out
                .into_iter()
                .zip(mask.iter())
                .zip(&kc)
                .zip(&noise[c * n..(c + 1) * n])
            {
                if m {
                    let v = k + e;
                    *o = Complex32::new(v.re as f32, v.im as f32);
                }
            }
        }
        let mut scan_rng = ChaCha8Rng::seed_from_u64(splitmix64(noise_seed ^ NOISE_SCAN_STREAM));
        let scan = correlated_noise(&l, self.coils, self.noise_samples, &mut scan_rng);
        let noise_scan = Array2::from_shape_vec(
            (self.coils, self.noise_samples),
            scan.iter()
                .map(|v| Complex32::new(v.re as f32, v.im as f32))
                .collect(),
        )
        .expect("C M values");
        Ok(CoilSlice {
            kspace,
            mask,
            noise_scan,
            kspace_rms,
            noise_sigma: sigma,
            mask_seed,
            noise_seed,
        })
    }
}

/// Simulates one multi-coil slice (module docs); see [`CoilSimulator`] to simulate many.
///
/// # Errors
/// As [`CoilSimulator::new`] and [`CoilSimulator::simulate`], and for a grid that is not a
/// power of two per side.
pub fn simulate_coil_slice(
    target: ArrayView2<'_, Complex32>,
    sensitivities: &[Complex32],
    covariance: &[Complex64],
    acquisition: &Acquisition,
    slice_index: u64,
    noise_samples: usize,
) -> Result<CoilSlice> {
    let (n_y, n_x) = target.dim();
    let shape = check_shape(n_y, n_x)?;
    CoilSimulator::new(shape, sensitivities, covariance, noise_samples)?.simulate(
        target,
        acquisition,
        slice_index,
    )
}

/// Multi-coil arrays of a simulated stack (`S` slices, `C` coils, `M` noise samples).
#[derive(Debug, Clone, PartialEq)]
pub struct CoilStack {
    /// `[S][C][n_y][n_x]` measured k-space.
    pub kspace: ndarray::Array4<Complex32>,
    /// `[C][n_y][n_x]` the true sensitivities.
    pub sensitivities: Array3<Complex32>,
    /// `[S][C][M]` noise-scan samples.
    pub noise_scan: Array3<Complex32>,
    /// `[C][C]` `Psi` (the noise of slice `s` has covariance `sigma_s^2 Psi`).
    pub noise_covariance: Array2<Complex64>,
}

/// How a multi-coil stack was made (recorded in the sidecar).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoilSpec {
    /// Number of coils `C`.
    pub coils: usize,
    /// Neighbour correlation of [`noise_covariance`].
    pub correlation: f64,
    /// Noise-scan samples `M` per coil and slice.
    pub noise_samples: usize,
    /// Field of view `[y, x]` in mm of the grid.
    pub fov_mm: [f64; 2],
    /// The loops.
    pub geometry: CoilGeometry,
}

/// The seed of [`noise_covariance`] for a stack with seed `seed`: one receive chain per
/// stack, the same for every slice.
pub fn covariance_seed(seed: u64) -> u64 {
    splitmix64(seed ^ COVARIANCE_STREAM)
}

/// Simulates every slice of `targets` (`[S][n_y][n_x]`) with `spec`'s coils;
/// `progress(done)` after each slice. The mask and the seeds of slice `i` are those of the
/// single-coil [`crate::simulate::simulate_stack`] with the same acquisition.
///
/// # Errors
/// As [`biot_savart_sensitivities`], [`noise_covariance`] and [`CoilSimulator::simulate`].
pub fn simulate_coil_stack(
    targets: ArrayView3<'_, Complex32>,
    acquisition: &Acquisition,
    spec: &CoilSpec,
    progress: impl Fn(usize),
) -> Result<CoilStack> {
    let (slices, n_y, n_x) = targets.dim();
    ensure!(slices >= 1, "the stack has no slices");
    ensure!(
        spec.noise_samples >= 1,
        "the noise scan needs at least one sample per coil"
    );
    let shape = check_shape(n_y, n_x)?;
    let maps = biot_savart_sensitivities(shape, spec.fov_mm, spec.coils, &spec.geometry)?;
    let psi = noise_covariance(
        spec.coils,
        spec.correlation,
        covariance_seed(acquisition.seed),
    )?;
    let mut sim = CoilSimulator::new(shape, &maps, &psi, spec.noise_samples)?;
    let c = spec.coils;
    let mut kspace = ndarray::Array4::<Complex32>::zeros((slices, c, n_y, n_x));
    let mut noise_scan = Array3::<Complex32>::zeros((slices, c, spec.noise_samples));
    for (i, target) in targets.axis_iter(Axis(0)).enumerate() {
        let slice = sim.simulate(target, acquisition, i as u64)?;
        kspace.index_axis_mut(Axis(0), i).assign(&slice.kspace);
        noise_scan
            .index_axis_mut(Axis(0), i)
            .assign(&slice.noise_scan);
        progress(i + 1);
    }
    Ok(CoilStack {
        kspace,
        sensitivities: Array3::from_shape_vec((c, n_y, n_x), maps).expect("C N values"),
        noise_scan,
        noise_covariance: Array2::from_shape_vec((c, c), psi).expect("C C values"),
    })
}

/// Per-coil zero-filled images `F^H y_c`, `[C][n_y][n_x]`, in `f64`.
fn coil_images(kspace: ArrayView3<'_, Complex32>) -> Result<(Vec<Complex64>, Shape)> {
    let (coils, n_y, n_x) = kspace.dim();
    ensure!(coils >= 1, "no coils");
    let shape = check_shape(n_y, n_x)?;
    let mut fourier = Fourier::new(shape);
    let mut out = Vec::with_capacity(coils * n_y * n_x);
    for coil in kspace.axis_iter(Axis(0)) {
        let k: Vec<Complex64> = coil
            .iter()
            .map(|v| Complex64::new(f64::from(v.re), f64::from(v.im)))
            .collect();
        out.extend(fourier.apply(&k, true));
    }
    Ok((out, shape))
}

/// Root sum of squares of the zero-filled coil images, `sqrt(sum_c |F^H y_c|^2)`, as a real
/// (zero-phase) complex image `[n_y][n_x]`.
///
/// # Errors
/// A grid that is not a power of two per side; no coils.
pub fn rss_zero_filled(kspace: ArrayView3<'_, Complex32>) -> Result<Array2<Complex32>> {
    let (coils, n_y, n_x) = kspace.dim();
    let (images, _) = coil_images(kspace)?;
    let n = n_y * n_x;
    let rss = (0..n)
        .map(|p| {
            let e: f64 = (0..coils).map(|c| images[c * n + p].norm_sqr()).sum();
            Complex32::new(e.sqrt() as f32, 0.0)
        })
        .collect();
    Ok(Array2::from_shape_vec((n_y, n_x), rss).expect("N values"))
}

/// SENSE-combined zero-filled image `sum_c conj(S_c) F^H y_c`, `[n_y][n_x]`.
///
/// # Errors
/// Maps of another shape than the k-space; a grid that is not a power of two per side.
pub fn sense_zero_filled(
    kspace: ArrayView3<'_, Complex32>,
    maps: ArrayView3<'_, Complex32>,
) -> Result<Array2<Complex32>> {
    ensure!(
        kspace.dim() == maps.dim(),
        "k-space {:?} and sensitivities {:?} differ in shape",
        kspace.dim(),
        maps.dim()
    );
    let (coils, n_y, n_x) = kspace.dim();
    let (images, _) = coil_images(kspace)?;
    let maps: Vec<Complex32> = maps.iter().copied().collect();
    let n = n_y * n_x;
    let combined = (0..n)
        .map(|p| {
            let v: Complex64 = (0..coils)
                .map(|c| {
                    let s = maps[c * n + p];
                    Complex64::new(f64::from(s.re), -f64::from(s.im)) * images[c * n + p]
                })
                .sum();
            Complex32::new(v.re as f32, v.im as f32)
        })
        .collect();
    Ok(Array2::from_shape_vec((n_y, n_x), combined).expect("N values"))
}

/// Mean over the pixels where `support` is true of the phase-invariant correlation
/// `|<a(r), b(r)>| / (|a(r)| |b(r)|)` of two sets of maps `[C][N]` (`<a, b> = sum_c conj(a_c)
/// b_c`); a pixel where either map vanishes counts as 0 (e.g. where ESPIRiT cropped).
///
/// # Errors
/// Mismatched lengths, an empty support.
pub fn map_correlation(a: &[Complex32], b: &[Complex32], support: &[bool]) -> Result<f64> {
    let n = support.len();
    ensure!(
        n > 0 && a.len() == b.len() && a.len().is_multiple_of(n) && !a.is_empty(),
        "maps of {} and {} values do not fit a support of {n} pixels",
        a.len(),
        b.len()
    );
    let coils = a.len() / n;
    let (mut sum, mut count) = (0.0, 0usize);
    for p in (0..n).filter(|&p| support[p]) {
        let (mut inner, mut na, mut nb) = (Complex64::default(), 0.0, 0.0);
        for c in 0..coils {
            let (x, y) = (a[c * n + p], b[c * n + p]);
            let (x, y) = (
                Complex64::new(f64::from(x.re), f64::from(x.im)),
                Complex64::new(f64::from(y.re), f64::from(y.im)),
            );
            inner += x.conj() * y;
            na += x.norm_sqr();
            nb += y.norm_sqr();
        }
        let denominator = (na * nb).sqrt();
        sum += if denominator > 0.0 {
            inner.norm() / denominator
        } else {
            0.0
        };
        count += 1;
    }
    ensure!(count > 0, "the support is empty");
    Ok(sum / count as f64)
}

/// Sample covariance `(1/M) sum_k n(k) n(k)^H` (`[C][C]`, row-major) of a noise scan
/// `[C][M]`.
pub fn sample_covariance(scan: ArrayView2<'_, Complex32>) -> Vec<Complex64> {
    let (coils, m) = scan.dim();
    let mut out = vec![Complex64::default(); coils * coils];
    let rows: Vec<Vec<Complex64>> = scan
        .axis_iter(Axis(0))
        .map(|r| {
            r.iter()
                .map(|v| Complex64::new(f64::from(v.re), f64::from(v.im)))
                .collect()
        })
        .collect();
    for j in 0..coils {
        for k in 0..coils {
            let s: Complex64 = rows[j]
                .iter()
                .zip(&rows[k])
                .map(|(a, b)| a * b.conj())
                .sum();
            out[j * coils + k] = s / m.max(1) as f64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_is_hermitian_positive_definite_with_unit_mean_diagonal() {
        for coils in [1, 2, 4, 8, 16, 32] {
            for rho in [0.0, 0.2, 0.5, 0.9] {
                let psi = noise_covariance(coils, rho, 7).unwrap();
                assert!(cholesky(&psi, coils).is_some());
                let mean: f64 =
                    (0..coils).map(|i| psi[i * coils + i].re).sum::<f64>() / coils as f64;
                assert!((mean - 1.0).abs() < 1e-12);
                for i in 0..coils {
                    let d = psi[i * coils + i].re;
                    assert!(d > 0.5 && d < 1.6, "{d}");
                    for j in 0..coils {
                        assert!((psi[i * coils + j] - psi[j * coils + i].conj()).norm() < 1e-15);
                    }
                }
                if coils >= 4 && rho <= 0.3 {
                    // Neighbour correlation is rho (no shrinking needed).
                    let r01 = psi[1].norm() / (psi[0].re * psi[coils + 1].re).sqrt();
                    assert!((r01 - rho).abs() < 1e-12, "{r01} vs {rho}");
                }
            }
        }
        assert!(noise_covariance(0, 0.2, 1).is_err());
        assert!(noise_covariance(33, 0.2, 1).is_err());
        assert!(noise_covariance(4, 1.0, 1).is_err());
        assert!(noise_covariance(4, f64::NAN, 1).is_err());
    }

    #[test]
    fn cholesky_reconstructs() {
        let psi = noise_covariance(6, 0.4, 3).unwrap();
        let l = cholesky(&psi, 6).unwrap();
        for i in 0..6 {
            for j in 0..6 {
                let v: Complex64 = (0..6).map(|k| l[i * 6 + k] * l[j * 6 + k].conj()).sum();
                assert!((v - psi[i * 6 + j]).norm() < 1e-12);
            }
        }
    }

    #[test]
    fn sensitivities_are_normalised_and_rejects_bad_input() {
        let shape = Shape::new(32, 32).unwrap();
        let maps =
            biot_savart_sensitivities(shape, [256.0, 256.0], 4, &CoilGeometry::default()).unwrap();
        for p in 0..shape.len() {
            let e: f32 = (0..4).map(|c| maps[c * shape.len() + p].norm_sqr()).sum();
            assert!((e - 1.0).abs() < 1e-5);
        }
        let g = CoilGeometry::default();
        assert!(biot_savart_sensitivities(shape, [256.0, 256.0], 0, &g).is_err());
        assert!(biot_savart_sensitivities(shape, [256.0, 256.0], 33, &g).is_err());
        assert!(biot_savart_sensitivities(shape, [0.0, 256.0], 4, &g).is_err());
        let bad = CoilGeometry {
            loop_radius_mm: -1.0,
            ..g
        };
        assert!(biot_savart_sensitivities(shape, [256.0, 256.0], 4, &bad).is_err());
    }
}
