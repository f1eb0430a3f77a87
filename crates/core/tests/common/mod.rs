//! Shared helpers of the core tests: seeded random data and naive oracles.
#![allow(dead_code)]

use num_complex::{Complex, Complex64};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan};
use sparsemap_core::fft::{Fft2, FftBackend};
use sparsemap_core::fista::Executor;
use sparsemap_core::Real;

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_complex<T: Real>(rng: &mut StdRng, len: usize) -> Vec<Complex<T>> {
    (0..len)
        .map(|_| {
            Complex::new(
                T::lit(rng.random_range(-1.0..1.0)),
                T::lit(rng.random_range(-1.0..1.0)),
            )
        })
        .collect()
}

pub fn random_real<T: Real>(rng: &mut StdRng, len: usize, low: f64, high: f64) -> Vec<T> {
    (0..len)
        .map(|_| T::lit(rng.random_range(low..high)))
        .collect()
}

pub fn to_c64<T: Real>(v: &[Complex<T>]) -> Vec<Complex64> {
    v.iter()
        .map(|c| Complex64::new(c.re.to_f64_lossless(), c.im.to_f64_lossless()))
        .collect()
}

/// Relative l2 error `||a - b|| / ||b||`.
pub fn relative_error(a: &[Complex64], b: &[Complex64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).norm_sqr()).sum();
    let den: f64 = b.iter().map(|y| y.norm_sqr()).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// `fftshift` / `ifftshift` of a row-major `[ny][nx]` array (even sides: both are the same
/// roll by half).
pub fn shift_half(a: &[Complex64], ny: usize, nx: usize) -> Vec<Complex64> {
    let mut out = vec![Complex64::default(); a.len()];
    for y in 0..ny {
        for x in 0..nx {
            out[((y + ny / 2) % ny) * nx + (x + nx / 2) % nx] = a[y * nx + x];
        }
    }
    out
}

/// Naive unnormalised 2-D DFT in f64 (the oracle), natural layout.
pub fn naive_dft2(a: &[Complex64], ny: usize, nx: usize, inverse: bool) -> Vec<Complex64> {
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut out = vec![Complex64::default(); a.len()];
    for ky in 0..ny {
        for kx in 0..nx {
            let mut acc = Complex64::default();
            for y in 0..ny {
                for x in 0..nx {
                    let phase = sign
                        * std::f64::consts::TAU
                        * ((ky * y) as f64 / ny as f64 + (kx * x) as f64 / nx as f64);
                    acc += a[y * nx + x] * Complex64::from_polar(1.0, phase);
                }
            }
            out[ky * nx + kx] = acc;
        }
    }
    out
}

/// The centred unitary transform of DESIGN §3.2 by its definition:
/// `fftshift(fft2(ifftshift(x))) / sqrt(N)`.
pub fn naive_centred_fft2(a: &[Complex64], ny: usize, nx: usize) -> Vec<Complex64> {
    let n = (ny * nx) as f64;
    shift_half(&naive_dft2(&shift_half(a, ny, nx), ny, nx, false), ny, nx)
        .into_iter()
        .map(|v| v / n.sqrt())
        .collect()
}

/// Circular convolution `(d * z)[y][x] = sum_{i,j} d[i][j] z[y - (i - s/2)][x - (j - s/2)]`
/// computed directly (the oracle for the dictionary operator).
pub fn circular_convolution(
    d: &[f64],
    side: usize,
    z: &[Complex64],
    ny: usize,
    nx: usize,
) -> Vec<Complex64> {
    let half = side as isize / 2;
    let mut out = vec![Complex64::default(); ny * nx];
    for y in 0..ny as isize {
        for x in 0..nx as isize {
            let mut acc = Complex64::default();
            for i in 0..side as isize {
                for j in 0..side as isize {
                    let sy = (y - (i - half)).rem_euclid(ny as isize) as usize;
                    let sx = (x - (j - half)).rem_euclid(nx as isize) as usize;
                    acc += z[sy * nx + sx] * d[(i * side as isize + j) as usize];
                }
            }
            out[(y * nx as isize + x) as usize] = acc;
        }
    }
    out
}

/// Owns what a dictionary plan borrows.
pub struct PlanStore<T> {
    pub responses: Vec<Complex<T>>,
    pub power: Vec<T>,
}

pub fn random_filters(seed: u64, count: usize, side: usize) -> Vec<f64> {
    random_real::<f64>(&mut rng(seed), count * side * side, -1.0, 1.0)
}

pub fn make_plan<'a, T: Real, B: FftBackend<T>>(
    fft: &'a Fft2<B>,
    filters: &[T],
    count: usize,
    side: usize,
    store: &'a mut PlanStore<T>,
) -> DictionaryPlan<'a, T, B> {
    let shape = fft.shape();
    store.responses = vec![Complex::default(); DictionaryPlan::<T, B>::responses_len(shape, count)];
    store.power = vec![T::zero(); DictionaryPlan::<T, B>::power_len(shape)];
    let mut scratch = vec![Complex::default(); DictionaryPlan::<T, B>::scratch_len(fft)];
    let dictionary = Dictionary::new(filters, count, side).unwrap();
    DictionaryPlan::new(
        fft,
        dictionary,
        &mut store.responses,
        &mut store.power,
        &mut scratch,
    )
    .unwrap()
}

/// Items in reverse order, workers taken round robin: a schedule no real executor uses.
pub struct Reversed;

impl Executor for Reversed {
    fn for_each<I: Send, W: Send>(
        &self,
        items: &mut [I],
        workers: &mut [W],
        work: &(dyn Fn(&mut I, &mut W) + Sync),
    ) {
        let count = workers.len();
        for (i, item) in items.iter_mut().enumerate().rev() {
            work(item, &mut workers[i % count]);
        }
    }
}
