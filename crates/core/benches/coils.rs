//! One multi-coil FISTA iteration (DESIGN §3.4) against the single-coil one and the 2K-FFT
//! floor: N = 256², K = 32, 9×9 filters, rustfft, one thread.
//!
//! Masks: the central 128×128 block (the low-field default) and a 1-D variable-density
//! pattern (every third phase-encode row plus 24 central rows, full readout), in the natural
//! layout the reconstruction takes.
//! - `coils/floor`: 2K FFTs of 256² alone.
//! - `coils/<mask>/single/T{1,5}`: the single-coil prepared solve with 1 and 5 iterations.
//! - `coils/<mask>/C{4,8}/T{1,5}`: the multi-coil prepared solve; one iteration is
//!   `(T5 - T1) / 4`, which cancels the set-up and the synthesis.
//! - `coils/<mask>/C8/prepare`: the multi-coil preparation (coil combination, low-pass split,
//!   the 16 power iterations of the step).
//!
//! `scripts/bench-coils.sh` runs this and prints the ratios.

mod common;

use common::{random_complex, random_filters, FILTERS, FILTER_SIDE, SIDE};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use num_complex::Complex32;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sparsemap_core::coils::CoilWorkspace;
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan};
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::fista::Lambda;
use sparsemap_core::recon::Workspace;
use sparsemap_core::Shape;
use std::hint::black_box;
use std::time::Duration;

fn block_mask() -> Vec<f32> {
    (0..SIDE * SIDE)
        .map(|i| {
            let (y, x) = (i / SIDE, i % SIDE);
            let inside = |k: usize| (SIDE / 4..3 * SIDE / 4).contains(&k);
            if inside(y) && inside(x) {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

fn variable_density_mask() -> Vec<f32> {
    (0..SIDE * SIDE)
        .map(|i| {
            let y = i / SIDE;
            if y.is_multiple_of(3) || (y as isize - (SIDE / 2) as isize).unsigned_abs() < 12 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Smooth normalised maps (as the tests' `smooth_maps`).
fn maps(coils: usize) -> Vec<Complex32> {
    let n = SIDE * SIDE;
    let mut maps = vec![Complex32::default(); coils * n];
    for c in 0..coils {
        let a = std::f32::consts::TAU * c as f32 / coils as f32;
        let (cy, cx) = (
            SIDE as f32 * (0.5 + 0.45 * a.sin()),
            SIDE as f32 * (0.5 + 0.45 * a.cos()),
        );
        for i in 0..n {
            let (y, x) = ((i / SIDE) as f32, (i % SIDE) as f32);
            let d2 = ((y - cy) / SIDE as f32).powi(2) + ((x - cx) / SIDE as f32).powi(2);
            maps[c * n + i] = Complex32::from_polar((-d2 / 0.08).exp(), a);
        }
    }
    for i in 0..n {
        let norm = (0..coils)
            .map(|c| maps[c * n + i].norm_sqr())
            .sum::<f32>()
            .sqrt();
        (0..coils).for_each(|c| maps[c * n + i] /= norm);
    }
    maps
}

fn benches(c: &mut Criterion) {
    let shape = Shape::new(SIDE, SIDE).unwrap();
    let n = shape.len();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let mut rng = StdRng::seed_from_u64(7);
    let filters = random_filters(&mut rng);
    let mut responses = vec![
        Complex32::default();
        DictionaryPlan::<f32, RustFft<f32>>::responses_len(shape, FILTERS)
    ];
    let mut power = vec![0f32; DictionaryPlan::<f32, RustFft<f32>>::power_len(shape)];
    let mut scratch =
        vec![Complex32::default(); DictionaryPlan::<f32, RustFft<f32>>::scratch_len(&fft)];
    let plan = DictionaryPlan::new(
        &fft,
        Dictionary::new(&filters, FILTERS, FILTER_SIDE).unwrap(),
        &mut responses,
        &mut power,
        &mut scratch,
    )
    .unwrap();
    let lambda = Lambda::Scalar(0.01f32);

    let mut group = c.benchmark_group("coils");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let mut a = random_complex(&mut rng, n);
    let mut b = vec![Complex32::default(); n];
    let mut fft_scratch = vec![Complex32::default(); fft.scratch_len()];
    group.bench_function("floor", |bench| {
        bench.iter(|| {
            for _ in 0..FILTERS {
                fft.forward_to_transposed(&a, &mut b, &mut fft_scratch);
                fft.inverse_from_transposed(&b, &mut a, &mut fft_scratch);
            }
            black_box(&a);
        })
    });

    let mut image = vec![Complex32::default(); n];
    for (mask_name, mask) in [("block128", block_mask()), ("vd3", variable_density_mask())] {
        let kspace: Vec<Complex32> = random_complex(&mut rng, n)
            .into_iter()
            .zip(&mask)
            .map(|(k, &m)| k * m)
            .collect();
        let mut complex = vec![
            Complex32::default();
            Workspace::<f32>::complex_len(shape, FILTERS, fft.scratch_len())
        ];
        let mut real = vec![0f32; Workspace::<f32>::real_len(shape)];
        let mut ws =
            Workspace::new(shape, FILTERS, fft.scratch_len(), &mut complex, &mut real).unwrap();
        let mut prepared = ws.prepare(&plan, &kspace, &mask, 1.0).unwrap();
        for t in [1, 5] {
            group.bench_function(
                BenchmarkId::new(format!("{mask_name}/single"), format!("T{t}")),
                |bench| bench.iter(|| prepared.solve(lambda, t, &mut image).unwrap()),
            );
        }
        for coils in [4usize, 8] {
            let maps = maps(coils);
            let kspace: Vec<Complex32> = (0..coils).flat_map(|_| kspace.iter().copied()).collect();
            let masks: Vec<f32> = (0..coils).flat_map(|_| mask.iter().copied()).collect();
            let mut complex =
                vec![
                    Complex32::default();
                    CoilWorkspace::<f32>::complex_len(shape, FILTERS, coils, fft.scratch_len())
                ];
            let mut real = vec![0f32; CoilWorkspace::<f32>::real_len(shape, coils)];
            let mut ws = CoilWorkspace::new(
                shape,
                FILTERS,
                coils,
                fft.scratch_len(),
                &mut complex,
                &mut real,
            )
            .unwrap();
            if coils == 8 {
                group.bench_function(
                    BenchmarkId::new(format!("{mask_name}/C{coils}"), "prepare"),
                    |bench| {
                        bench.iter(|| {
                            ws.prepare(&plan, &kspace, &masks, &maps, 1.0).unwrap();
                        })
                    },
                );
            }
            let mut prepared = ws.prepare(&plan, &kspace, &masks, &maps, 1.0).unwrap();
            for t in [1, 5] {
                group.bench_function(
                    BenchmarkId::new(format!("{mask_name}/C{coils}"), format!("T{t}")),
                    |bench| bench.iter(|| prepared.solve(lambda, t, &mut image).unwrap()),
                );
            }
        }
    }
    group.finish();
}

criterion_group!(coil_benches, benches);
criterion_main!(coil_benches);
