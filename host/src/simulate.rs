//! Low-field acquisition simulation: sampling masks, complex Gaussian noise, zero filling —
//! seeded, and recorded so that every simulated slice can be regenerated.
//!
//! The convention is that of `models/reference/make_example.py` (which made
//! `examples/colin27/`), except for the random number generator:
//!
//! 1. `kfull = F target` with `F` the unitary centred transform of DESIGN §3.2 (the core's
//!    [`CentredFourier`] with [`RustFft`], in `f64`);
//! 2. `rms = sqrt(mean |kfull|^2)` over the whole grid, `sigma = s rms` with `s` the relative
//!    noise level ([`Acquisition::noise`]);
//! 3. `n = sigma / sqrt(2) (a + j b)`, `a` and `b` standard normal: all `N` values of `a`
//!    (row-major) are drawn first, then all `N` of `b`, from `ChaCha8Rng` seeded with the
//!    slice's noise seed ([`rand_distr::StandardNormal`]). The noise is drawn over the full
//!    grid whatever the mask, so two masks with the same seed see the same noise;
//! 4. `kspace = M (.) (kfull + n)`, rounded to `Complex32`, exact zeros off the mask;
//! 5. `zero_filled = F^H kspace`.
//!
//! ## Seeds
//!
//! One [`Acquisition::seed`] covers a whole stack. Slice `i` gets two independent streams,
//! one for its mask and one for its noise ([`derive_seeds`]):
//!
//! ```text
//! splitmix64(z) = z' ^ (z' >> 31) where, with wrapping arithmetic,
//!                 z1 = z + 0x9E3779B97F4A7C15,
//!                 z2 = (z1 ^ (z1 >> 30)) * 0xBF58476D1CE4E5B9,
//!                 z' = (z2 ^ (z2 >> 27)) * 0x94D049BB133111EB
//! mask_seed  = splitmix64(splitmix64(seed ^ 0x6D61736B)      + i)   // "mask"
//! noise_seed = splitmix64(splitmix64(seed ^ 0x6E6F697365)    + i)   // "noise"
//! ```
//!
//! Both are returned with every slice ([`SimulatedSlice`], [`SliceRecord`]) so that they can
//! be written next to the data. The [`MaskKind::CentralBlock`] mask ignores its seed (it is
//! the same for every slice); the random masks differ from slice to slice.

use std::fmt;

use anyhow::{bail, ensure, Context, Result};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use num_complex::{Complex32, Complex64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;

/// Exponent of the 1-D variable-density weight `(1 - d)^p` ([`MaskKind::VariableDensity1d`]).
pub const VD1D_POWER: i32 = 2;
/// Slope of the Poisson-disc radius `r = s (1 + slope rho)` ([`MaskKind::PoissonDisc2d`]).
pub const POISSON_VD_SLOPE: f64 = 2.0;
/// Candidates tried around an active point before it retires (Bridson's `k`).
pub const POISSON_CANDIDATES: usize = 30;
/// Relative tolerance on the number of sampled points of a Poisson-disc mask.
pub const POISSON_TOLERANCE: f64 = 0.02;

/// Bisection steps per attempt, and attempts (sub-seeds) per Poisson-disc mask.
const POISSON_STEPS: usize = 48;
const POISSON_ATTEMPTS: u64 = 6;

/// Which k-space samples a simulated scan acquires.
///
/// Serialised tagged, e.g. `{"kind": "central_block", "size": 128}`,
/// `{"kind": "variable_density1d", "acceleration": 4.0, "centre_lines": 16}`,
/// `{"kind": "poisson_disc2d", "acceleration": 4.0, "centre": 24}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MaskKind {
    /// Rows and columns `[n/2 - size/2, n/2 + size/2)`: the central `size x size` block of
    /// k-space, what a low-field scanner acquires in the available time (`size` even).
    /// `size = 128` on 256² is `examples/colin27/mask.npy`.
    CentralBlock {
        /// Side of the block (even, at most either side of the grid).
        size: usize,
    },
    /// Whole phase-encode rows `ky` (all `kx`), exactly `round(n_y / acceleration)` of them:
    /// `centre_lines` around `ky = n_y/2` always, the rest drawn without replacement with
    /// weight `(1 - d)^VD1D_POWER`, `d = |ky - n_y/2| / (n_y/2 + 1)` (Efraimidis–Spirakis
    /// weighted sampling).
    VariableDensity1d {
        /// `n_y / (sampled rows)`, at least 1.
        acceleration: f64,
        /// Fully sampled rows around the centre.
        centre_lines: usize,
    },
    /// Variable-density Poisson-disc sampling in `(ky, kx)` — the ky–kz plane of a 3-D
    /// Cartesian scan — plus a fully sampled `centre x centre` square. See [`make_mask`].
    PoissonDisc2d {
        /// `n_y n_x / (sampled points)`, at least 1; reached within [`POISSON_TOLERANCE`].
        acceleration: f64,
        /// Side of the fully sampled central square.
        centre: usize,
    },
}

impl MaskKind {
    /// Short name for file names and tables: `block128`, `vd4`, `poisson4` (`vd2.5` for a
    /// fractional acceleration).
    pub fn label(&self) -> String {
        match self {
            MaskKind::CentralBlock { size } => format!("block{size}"),
            MaskKind::VariableDensity1d { acceleration, .. } => format!("vd{acceleration}"),
            MaskKind::PoissonDisc2d { acceleration, .. } => format!("poisson{acceleration}"),
        }
    }

    /// `true` when the mask depends on its seed (the same for every slice otherwise).
    pub fn is_random(&self) -> bool {
        !matches!(self, MaskKind::CentralBlock { .. })
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// How a slice is acquired: mask, relative noise level and the stack's seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acquisition {
    /// The sampling pattern.
    pub mask: MaskKind,
    /// Relative noise level `s` in `[0, 1]`: `sigma = s rms(F target)`. The project's range
    /// of interest is `[0.075, 0.30]`; `0` is noiseless.
    pub noise: f64,
    /// Seed of the whole stack; per-slice streams come from [`derive_seeds`].
    pub seed: u64,
}

/// One simulated slice.
#[derive(Debug, Clone)]
pub struct SimulatedSlice {
    /// `M (.) (F target + n)`, centred, exact zeros off the mask.
    pub kspace: Array2<Complex32>,
    /// The sampling mask `M`.
    pub mask: Array2<bool>,
    /// `F^H kspace`.
    pub zero_filled: Array2<Complex32>,
    /// `sqrt(mean |F target|^2)` over the whole grid.
    pub kspace_rms: f64,
    /// `s kspace_rms`: `E |n|^2 = sigma^2` per sample.
    pub noise_sigma: f64,
    /// Seed of the mask stream (unused by [`MaskKind::CentralBlock`]).
    pub mask_seed: u64,
    /// Seed of the noise stream.
    pub noise_seed: u64,
}

impl SimulatedSlice {
    /// Fraction of the grid that is sampled.
    pub fn sampled_fraction(&self) -> f64 {
        sampled_fraction(self.mask.view())
    }
}

/// What was done to one slice of a stack, to be recorded next to the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SliceRecord {
    /// Slice index in the stack (the `slice_index` of [`simulate_slice`]).
    pub index: u64,
    /// Seed of the mask stream.
    pub mask_seed: u64,
    /// Seed of the noise stream.
    pub noise_seed: u64,
    /// `sqrt(mean |F target|^2)`.
    pub kspace_rms: f64,
    /// Noise standard deviation (complex: `E |n|^2 = sigma^2`).
    pub noise_sigma: f64,
    /// Fraction of the grid that is sampled.
    pub sampled_fraction: f64,
}

/// The SplitMix64 output function (Steele, Lea & Flood 2014), used as a seed mixer.
pub fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream tag of the mask seeds (ASCII "mask").
const MASK_STREAM: u64 = 0x6D61_736B;
/// Stream tag of the noise seeds (ASCII "noise").
const NOISE_STREAM: u64 = 0x6E_6F69_7365;

/// `(mask_seed, noise_seed)` of slice `slice_index` of a stack with seed `seed` (module docs).
pub fn derive_seeds(seed: u64, slice_index: u64) -> (u64, u64) {
    let stream = |tag: u64| splitmix64(splitmix64(seed ^ tag).wrapping_add(slice_index));
    (stream(MASK_STREAM), stream(NOISE_STREAM))
}

/// Fraction of `true` entries (0 for an empty mask).
pub fn sampled_fraction(mask: ArrayView2<'_, bool>) -> f64 {
    if mask.is_empty() {
        return 0.0;
    }
    mask.iter().filter(|&&m| m).count() as f64 / mask.len() as f64
}

/// The mask `kind` on an `n_y x n_x` grid (sides `1..=Shape::MAX_SIDE`), drawn with `seed`
/// (ignored by [`MaskKind::CentralBlock`]). Deterministic for given arguments.
///
/// Poisson-disc ([`MaskKind::PoissonDisc2d`]): Bridson's dart throwing on the integer grid.
/// The central square is sampled first; its boundary points (the DC point when `centre = 0`)
/// start the active list. A random active point `p` proposes up to [`POISSON_CANDIDATES`]
/// points at distance `[r', 2 r')`, `r' = max(r(p), 1)` (uniform radius and angle, rounded
/// to the grid); a candidate `q` is accepted when no sampled point lies closer than `r(q)`,
/// with `r(q) = s (1 + POISSON_VD_SLOPE rho(q))`,
/// `rho = sqrt(((ky - n_y/2)/(n_y/2))^2 + ((kx - n_x/2)/(n_x/2))^2)`. The scale `s` is
/// searched (same random stream at every step; a safeguarded Newton iteration on `log s`,
/// since the number of Poisson points scales like `s^-2`, inside a bisection bracket) until
/// the number of sampled points is within `max(POISSON_TOLERANCE target, 2)` of
/// `target = round(n_y n_x / acceleration)`; if that fails the search is repeated with
/// sub-seeds `splitmix64(seed + attempt)`, and the closest result is kept if it meets the
/// tolerance.
///
/// # Errors
/// Sizes out of range; an odd, zero or too large block; a non-finite acceleration or one
/// below 1; a fully sampled centre larger than the sampling budget; a Poisson-disc
/// acceleration the search cannot reach within the tolerance.
pub fn make_mask(kind: &MaskKind, n_y: usize, n_x: usize, seed: u64) -> Result<Array2<bool>> {
    let side_ok = |n: usize| (1..=Shape::MAX_SIDE).contains(&n);
    ensure!(
        side_ok(n_y) && side_ok(n_x),
        "mask grid {n_y}x{n_x}: sides must be in 1..={}",
        Shape::MAX_SIDE
    );
    match *kind {
        MaskKind::CentralBlock { size } => central_block(size, n_y, n_x),
        MaskKind::VariableDensity1d {
            acceleration,
            centre_lines,
        } => variable_density_1d(acceleration, centre_lines, n_y, n_x, seed),
        MaskKind::PoissonDisc2d {
            acceleration,
            centre,
        } => poisson_disc_2d(acceleration, centre, n_y, n_x, seed),
    }
}

fn central_block(size: usize, n_y: usize, n_x: usize) -> Result<Array2<bool>> {
    ensure!(
        size > 0 && size.is_multiple_of(2),
        "central block size {size} must be even and positive"
    );
    ensure!(
        size <= n_y && size <= n_x,
        "central block size {size} exceeds the {n_y}x{n_x} grid"
    );
    let (y0, x0) = (n_y / 2 - size / 2, n_x / 2 - size / 2);
    Ok(Array2::from_shape_fn((n_y, n_x), |(y, x)| {
        (y0..y0 + size).contains(&y) && (x0..x0 + size).contains(&x)
    }))
}

/// `round(total / acceleration)` after checking `acceleration`.
fn budget(acceleration: f64, total: usize, what: &str) -> Result<usize> {
    ensure!(
        acceleration.is_finite() && acceleration >= 1.0,
        "{what}: acceleration must be finite and >= 1, got {acceleration}"
    );
    let count = (total as f64 / acceleration).round() as usize;
    ensure!(
        count >= 1,
        "{what}: acceleration {acceleration} leaves nothing to sample of {total}"
    );
    Ok(count)
}

fn variable_density_1d(
    acceleration: f64,
    centre_lines: usize,
    n_y: usize,
    n_x: usize,
    seed: u64,
) -> Result<Array2<bool>> {
    let lines = budget(acceleration, n_y, "variable-density mask")?;
    ensure!(
        centre_lines <= lines,
        "variable-density mask: {centre_lines} centre lines exceed the budget of {lines} lines \
         (n_y {n_y} / acceleration {acceleration})"
    );
    let c0 = n_y / 2 - centre_lines / 2;
    let centre = c0..c0 + centre_lines;
    let half = (n_y / 2) as f64 + 1.0;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Efraimidis–Spirakis: key ln(u)/w, the largest keys win.
    let mut keyed: Vec<(f64, usize)> = (0..n_y)
        .filter(|ky| !centre.contains(ky))
        .map(|ky| {
            let d = (ky as f64 - (n_y / 2) as f64).abs() / half;
            let weight = (1.0 - d).powi(VD1D_POWER);
            let u = 1.0 - rng.random::<f64>(); // (0, 1]
            (u.ln() / weight, ky)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut rows = vec![false; n_y];
    centre.for_each(|ky| rows[ky] = true);
    for &(_, ky) in keyed.iter().take(lines - centre_lines) {
        rows[ky] = true;
    }
    Ok(Array2::from_shape_fn((n_y, n_x), |(y, _)| rows[y]))
}

fn poisson_disc_2d(
    acceleration: f64,
    centre: usize,
    n_y: usize,
    n_x: usize,
    seed: u64,
) -> Result<Array2<bool>> {
    let total = n_y * n_x;
    let target = budget(acceleration, total, "Poisson-disc mask")?;
    ensure!(
        centre <= n_y && centre <= n_x,
        "Poisson-disc mask: centre {centre} exceeds the {n_y}x{n_x} grid"
    );
    ensure!(
        centre * centre <= target,
        "Poisson-disc mask: the {centre}x{centre} centre exceeds the budget of {target} points \
         ({n_y}x{n_x} / acceleration {acceleration})"
    );
    if target == total {
        return Ok(Array2::from_elem((n_y, n_x), true));
    }
    let tolerance = (POISSON_TOLERANCE * target as f64).max(2.0);
    let early = (0.25 * POISSON_TOLERANCE * target as f64).max(1.0);
    let mut best: Option<(f64, Vec<bool>)> = None;
    let mut closest = usize::MAX;
    for attempt in 0..POISSON_ATTEMPTS {
        let sub_seed = if attempt == 0 {
            seed
        } else {
            splitmix64(seed.wrapping_add(attempt))
        };
        let sampler = PoissonSampler::new(n_y, n_x, centre);
        let (mut lo, mut hi) = (0.05_f64, 2.0 * n_y.max(n_x) as f64);
        // The Poisson points (outside the square) scale like s^-2: a safeguarded Newton
        // step on log s, from a random-sequential-packing estimate (0.7 / r^2 points per
        // unit area, mean radius about 2.5 s).
        let wanted = (target - centre * centre).max(1) as f64;
        let mut s = ((0.7 * total as f64 / wanted).sqrt() / 2.5).clamp(lo, hi);
        for _ in 0..POISSON_STEPS {
            let (count, occupied) = sampler.run(s, sub_seed);
            let err = (count as f64 - target as f64).abs();
            if best.as_ref().is_none_or(|(e, _)| err < *e) {
                best = Some((err, occupied));
                closest = count;
            }
            if err <= early {
                break;
            }
            if count > target {
                lo = s;
            } else {
                hi = s;
            }
            if hi / lo < 1.0 + 1e-9 {
                break;
            }
            let got = (count.saturating_sub(centre * centre)).max(1) as f64;
            let newton = s * (got / wanted).sqrt();
            s = if newton > lo && newton < hi {
                newton
            } else {
                (lo * hi).sqrt()
            };
        }
        if best.as_ref().is_some_and(|(e, _)| *e <= tolerance) {
            break;
        }
    }
    match best {
        Some((err, occupied)) if err <= tolerance => {
            Ok(Array2::from_shape_vec((n_y, n_x), occupied).expect("n_y n_x elements"))
        }
        _ => bail!(
            "Poisson-disc mask: acceleration {acceleration} on {n_y}x{n_x} with centre {centre} \
             is not reachable by dart throwing (closest: {closest} points for a target of {target}, \
             acceleration {:.3})",
            total as f64 / closest.max(1) as f64
        ),
    }
}

/// Variable-density Poisson-disc dart throwing on an integer grid (see [`make_mask`]).
struct PoissonSampler {
    n_y: usize,
    n_x: usize,
    /// The fully sampled square, `[y0, y0 + c) x [x0, x0 + c)`.
    y0: usize,
    x0: usize,
    centre: usize,
}

impl PoissonSampler {
    fn new(n_y: usize, n_x: usize, centre: usize) -> Self {
        Self {
            n_y,
            n_x,
            y0: n_y / 2 - centre / 2,
            x0: n_x / 2 - centre / 2,
            centre,
        }
    }

    fn radius(&self, s: f64, y: usize, x: usize) -> f64 {
        let hy = (self.n_y as f64 / 2.0).max(0.5);
        let hx = (self.n_x as f64 / 2.0).max(0.5);
        let u = (y as f64 - (self.n_y / 2) as f64) / hy;
        let v = (x as f64 - (self.n_x / 2) as f64) / hx;
        s * (1.0 + POISSON_VD_SLOPE * (u * u + v * v).sqrt())
    }

    /// Squared distance from `(y, x)` to the central square (0 inside; infinite if empty).
    fn square_dist2(&self, y: usize, x: usize) -> f64 {
        if self.centre == 0 {
            return f64::INFINITY;
        }
        let gap = |p: usize, lo: usize| {
            let hi = lo + self.centre - 1;
            if p < lo {
                (lo - p) as f64
            } else if p > hi {
                (p - hi) as f64
            } else {
                0.0
            }
        };
        let (dy, dx) = (gap(y, self.y0), gap(x, self.x0));
        dy * dy + dx * dx
    }

    /// One dart-throwing pass at scale `s`: the number of sampled points and the
    /// occupancy (row-major).
    fn run(&self, s: f64, seed: u64) -> (usize, Vec<bool>) {
        let (n_y, n_x) = (self.n_y, self.n_x);
        let mut occupied = vec![false; n_y * n_x];
        let mut active: Vec<(usize, usize)> = Vec::new();
        let mut count = 0;
        for y in self.y0..self.y0 + self.centre {
            for x in self.x0..self.x0 + self.centre {
                occupied[y * n_x + x] = true;
                count += 1;
                let last = self.centre - 1;
                if y == self.y0 || x == self.x0 || y == self.y0 + last || x == self.x0 + last {
                    active.push((y, x));
                }
            }
        }
        // Poisson points (outside the square) in a bucket grid of cell side `cell`.
        let cell = s.max(1.0);
        let (cells_y, cells_x) = (
            (n_y as f64 / cell).ceil() as usize,
            (n_x as f64 / cell).ceil() as usize,
        );
        let mut buckets: Vec<Vec<(u16, u16)>> = vec![Vec::new(); cells_y * cells_x];
        let bucket_of = |y: usize, x: usize| {
            let cy = ((y as f64 / cell) as usize).min(cells_y - 1);
            let cx = ((x as f64 / cell) as usize).min(cells_x - 1);
            (cy, cx)
        };
        let insert = |buckets: &mut Vec<Vec<(u16, u16)>>, y: usize, x: usize| {
            let (cy, cx) = bucket_of(y, x);
            buckets[cy * cells_x + cx].push((y as u16, x as u16));
        };
        if self.centre == 0 {
            let (y, x) = (n_y / 2, n_x / 2);
            occupied[y * n_x + x] = true;
            count += 1;
            insert(&mut buckets, y, x);
            active.push((y, x));
        }

        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        while !active.is_empty() {
            let index = rng.random_range(0..active.len());
            let (py, px) = active[index];
            // Proposals at least one grid step away, so that the process spreads even where
            // the radius is below one step (there every free point is acceptable).
            let rp = self.radius(s, py, px).max(1.0);
            let mut accepted = false;
            for _ in 0..POISSON_CANDIDATES {
                let dist = rp * (1.0 + rng.random::<f64>());
                let angle = std::f64::consts::TAU * rng.random::<f64>();
                let qy = (py as f64 + dist * angle.sin()).round();
                let qx = (px as f64 + dist * angle.cos()).round();
                if qy < 0.0 || qx < 0.0 || qy >= n_y as f64 || qx >= n_x as f64 {
                    continue;
                }
                let (qy, qx) = (qy as usize, qx as usize);
                if occupied[qy * n_x + qx] {
                    continue;
                }
                let rq = self.radius(s, qy, qx);
                let r2 = rq * rq;
                if self.square_dist2(qy, qx) < r2 {
                    continue;
                }
                let reach = (rq / cell).ceil() as usize;
                let (cy, cx) = bucket_of(qy, qx);
                let conflict =
                    (cy.saturating_sub(reach)..=(cy + reach).min(cells_y - 1)).any(|by| {
                        (cx.saturating_sub(reach)..=(cx + reach).min(cells_x - 1)).any(|bx| {
                            buckets[by * cells_x + bx].iter().any(|&(y, x)| {
                                let dy = f64::from(y) - qy as f64;
                                let dx = f64::from(x) - qx as f64;
                                dy * dy + dx * dx < r2
                            })
                        })
                    });
                if !conflict {
                    occupied[qy * n_x + qx] = true;
                    count += 1;
                    insert(&mut buckets, qy, qx);
                    active.push((qy, qx));
                    accepted = true;
                    break;
                }
            }
            if !accepted {
                active.swap_remove(index);
            }
        }
        (count, occupied)
    }
}

/// The core's unitary centred transform in `f64`, planned once for a shape (also used by
/// [`crate::coils`]).
pub(crate) struct Fourier {
    fft: Fft2<RustFft<f64>>,
    scratch: Vec<Complex64>,
}

impl Fourier {
    pub(crate) fn new(shape: Shape) -> Self {
        let fft = Fft2::new(RustFft::<f64>::new(shape));
        let len = LinearOperator::<f64>::scratch_len(&CentredFourier { fft: &fft });
        Self {
            fft,
            scratch: vec![Complex64::default(); len],
        }
    }

    /// `F x` (`inverse = false`) or `F^H x`, row-major.
    pub(crate) fn apply(&mut self, x: &[Complex64], inverse: bool) -> Vec<Complex64> {
        let op = CentredFourier { fft: &self.fft };
        let mut out = vec![Complex64::default(); x.len()];
        if inverse {
            op.adjoint(x, &mut out, &mut self.scratch);
        } else {
            op.apply(x, &mut out, &mut self.scratch);
        }
        out
    }
}

pub(crate) fn check_noise(noise: f64) -> Result<()> {
    ensure!(
        noise.is_finite() && (0.0..=1.0).contains(&noise),
        "relative noise level must be in [0, 1], got {noise}"
    );
    Ok(())
}

pub(crate) fn check_shape(n_y: usize, n_x: usize) -> Result<Shape> {
    Shape::new(n_y, n_x).map_err(|e| {
        anyhow::anyhow!(
            "unsupported grid {n_y}x{n_x}: sides must be powers of two in {}..={} ({e})",
            Shape::MIN_SIDE,
            Shape::MAX_SIDE
        )
    })
}

/// Simulate one slice with a prepared transform (shape already checked).
fn simulate_with(
    fourier: &mut Fourier,
    target: ArrayView2<'_, Complex32>,
    acquisition: &Acquisition,
    slice_index: u64,
) -> Result<SimulatedSlice> {
    let (n_y, n_x) = target.dim();
    ensure!(
        target.iter().all(|v| v.re.is_finite() && v.im.is_finite()),
        "slice {slice_index}: the target image contains NaN or infinite values"
    );
    let (mask_seed, noise_seed) = derive_seeds(acquisition.seed, slice_index);
    let mask = make_mask(&acquisition.mask, n_y, n_x, mask_seed)
        .with_context(|| format!("slice {slice_index}: mask {}", acquisition.mask))?;

    let image: Vec<Complex64> = target
        .iter()
        .map(|v| Complex64::new(f64::from(v.re), f64::from(v.im)))
        .collect();
    let kfull = fourier.apply(&image, false);
    let n = kfull.len();
    let kspace_rms = (kfull.iter().map(|v| v.norm_sqr()).sum::<f64>() / n as f64).sqrt();
    let noise_sigma = acquisition.noise * kspace_rms;

    // [a, b]: all a (row-major), then all b — as make_example.py's `standard_normal((2, N))`.
    let mut rng = ChaCha8Rng::seed_from_u64(noise_seed);
    let a: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    let b: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    let amp = noise_sigma / std::f64::consts::SQRT_2;

    let kspace: Vec<Complex32> = mask
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            if m {
                let v = kfull[i] + Complex64::new(amp * a[i], amp * b[i]);
                Complex32::new(v.re as f32, v.im as f32)
            } else {
                Complex32::new(0.0, 0.0)
            }
        })
        .collect();
    let wide: Vec<Complex64> = kspace
        .iter()
        .map(|v| Complex64::new(f64::from(v.re), f64::from(v.im)))
        .collect();
    let zero_filled: Vec<Complex32> = fourier
        .apply(&wide, true)
        .iter()
        .map(|v| Complex32::new(v.re as f32, v.im as f32))
        .collect();
    Ok(SimulatedSlice {
        kspace: Array2::from_shape_vec((n_y, n_x), kspace).expect("n_y n_x elements"),
        mask,
        zero_filled: Array2::from_shape_vec((n_y, n_x), zero_filled).expect("n_y n_x elements"),
        kspace_rms,
        noise_sigma,
        mask_seed,
        noise_seed,
    })
}

/// Simulate the acquisition of one slice (module docs): slice `slice_index` of a stack
/// acquired with `acquisition`.
///
/// # Errors
/// A grid that is not a power of two in `Shape::MIN_SIDE..=Shape::MAX_SIDE` per side, a
/// non-finite target, a noise level outside `[0, 1]`, impossible mask parameters.
pub fn simulate_slice(
    target: ArrayView2<'_, Complex32>,
    acquisition: &Acquisition,
    slice_index: u64,
) -> Result<SimulatedSlice> {
    check_noise(acquisition.noise)?;
    let (n_y, n_x) = target.dim();
    let mut fourier = Fourier::new(check_shape(n_y, n_x)?);
    simulate_with(&mut fourier, target, acquisition, slice_index)
}

/// Simulated stack: `(kspace, masks, zero_filled, records)`, each array `[S][n_y][n_x]`.
pub type SimulatedStack = (
    Array3<Complex32>,
    Array3<bool>,
    Array3<Complex32>,
    Vec<SliceRecord>,
);

/// [`simulate_slice`] for every slice `i` of `targets` (`[S][n_y][n_x]`, `S >= 1`), with
/// `slice_index = i`; `progress(done)` is called after each slice with the number of slices
/// done so far (1..=S).
///
/// # Errors
/// As [`simulate_slice`], and for an empty stack.
pub fn simulate_stack(
    targets: ArrayView3<'_, Complex32>,
    acquisition: &Acquisition,
    progress: impl Fn(usize),
) -> Result<SimulatedStack> {
    check_noise(acquisition.noise)?;
    let (slices, n_y, n_x) = targets.dim();
    ensure!(slices >= 1, "the stack has no slices");
    let mut fourier = Fourier::new(check_shape(n_y, n_x)?);
    let mut kspace = Array3::<Complex32>::zeros((slices, n_y, n_x));
    let mut masks = Array3::<bool>::from_elem((slices, n_y, n_x), false);
    let mut zero_filled = Array3::<Complex32>::zeros((slices, n_y, n_x));
    let mut records = Vec::with_capacity(slices);
    for (i, target) in targets.axis_iter(Axis(0)).enumerate() {
        let index = i as u64;
        let slice = simulate_with(&mut fourier, target, acquisition, index)?;
        kspace.index_axis_mut(Axis(0), i).assign(&slice.kspace);
        masks.index_axis_mut(Axis(0), i).assign(&slice.mask);
        zero_filled
            .index_axis_mut(Axis(0), i)
            .assign(&slice.zero_filled);
        records.push(SliceRecord {
            index,
            mask_seed: slice.mask_seed,
            noise_seed: slice.noise_seed,
            kspace_rms: slice.kspace_rms,
            noise_sigma: slice.noise_sigma,
            sampled_fraction: slice.sampled_fraction(),
        });
        progress(i + 1);
    }
    Ok((kspace, masks, zero_filled, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of the reference SplitMix64 generator seeded with 0 (state advanced
        // by the golden gamma before mixing), as in Vigna's splitmix64.c.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }
}
