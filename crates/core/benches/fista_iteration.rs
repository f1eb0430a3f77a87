//! One FISTA iteration against its floor (DESIGN §3.5): N = 256×256, K = 32, 9×9 filters.
//!
//! - `floor/<backend>`: 2K FFTs of 256×256 alone (K forward + K inverse, with the same 2-D
//!   FFT the solver uses: row pass, blocked transpose, row pass).
//! - `floor_streaming/<backend>`: the same 2K FFTs reading K distinct input grids and
//!   writing K distinct outputs (the memory traffic any implementation has).
//! - `fista/<backend>/T1` and `/T5`: the solver with 1 and 5 iterations; one iteration is
//!   `(T5 - T1) / 4`, which cancels the per-solve set-up (zeroing `z` and `v`).
//!
//! `scripts/bench.sh` runs this and prints `iteration / floor` per backend.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use num_complex::Complex32;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis};
use sparsemap_core::fft::{Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::{chunk_count, fista, FistaBuffers, Lambda, WorkerBuffers};
use sparsemap_core::Shape;
use std::hint::black_box;
use std::time::Duration;

const SIDE: usize = 256;
const FILTERS: usize = 32;
const FILTER_SIDE: usize = 9;

fn random_complex(rng: &mut StdRng, len: usize) -> Vec<Complex32> {
    (0..len)
        .map(|_| Complex32::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)))
        .collect()
}

fn bench_backend<B: FftBackend<f32>>(c: &mut Criterion, name: &str, backend: B) {
    let shape = Shape::new(SIDE, SIDE).unwrap();
    let n = shape.len();
    let fft = Fft2::new(backend);
    let mut rng = StdRng::seed_from_u64(7);

    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));

    // The floor: 2K FFTs, nothing else.
    let input = random_complex(&mut rng, n);
    let mut output = vec![Complex32::default(); n];
    let mut back = vec![Complex32::default(); n];
    let mut scratch = vec![Complex32::default(); fft.scratch_len()];
    group.bench_function("floor", |b| {
        b.iter(|| {
            for _ in 0..FILTERS {
                fft.forward_to_transposed(black_box(&input), &mut output, &mut scratch);
                fft.inverse_from_transposed(black_box(&output), &mut back, &mut scratch);
            }
        })
    });

    // The streaming floor: the same 2K FFTs, but reading K distinct input grids and writing
    // K distinct output grids, as the solver must (its state is K grids of z and v).
    let inputs = random_complex(&mut rng, FILTERS * n);
    let mut outputs = vec![Complex32::default(); FILTERS * n];
    group.bench_function("floor_streaming", |b| {
        b.iter(|| {
            for (input, output) in inputs.chunks_exact(n).zip(outputs.chunks_exact_mut(n)) {
                fft.forward_to_transposed(black_box(input), &mut back, &mut scratch);
                fft.inverse_from_transposed(black_box(&back), output, &mut scratch);
            }
        })
    });

    // The solver.
    let filters: Vec<f32> = (0..FILTERS * FILTER_SIDE * FILTER_SIDE)
        .map(|_| rng.random_range(-0.2..0.2))
        .collect();
    let dictionary = Dictionary::new(&filters, FILTERS, FILTER_SIDE).unwrap();
    let mut responses =
        vec![Complex32::default(); DictionaryPlan::<f32, B>::responses_len(shape, FILTERS)];
    let mut power = vec![0.0f32; n];
    let mut plan_scratch = vec![Complex32::default(); DictionaryPlan::<f32, B>::scratch_len(&fft)];
    let plan = DictionaryPlan::new(
        &fft,
        dictionary,
        &mut responses,
        &mut power,
        &mut plan_scratch,
    )
    .unwrap();
    let mask: Vec<f32> = (0..n)
        .map(|i| {
            if (i / SIDE).is_multiple_of(3) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let op = MaskedSynthesis {
        plan: &plan,
        mask: Some(&mask),
    };
    let step = 1.0 / plan.lipschitz(&mask);
    let y = random_complex(&mut rng, n);
    let maps: Vec<f32> = (0..FILTERS * n)
        .map(|_| rng.random_range(0.0..0.05))
        .collect();
    let mut z = vec![Complex32::default(); FILTERS * n];
    let mut v = vec![Complex32::default(); FILTERS * n];
    let mut residual = vec![Complex32::default(); n];
    let mut next_residual = vec![Complex32::default(); n];
    let mut partials = vec![Complex32::default(); chunk_count(FILTERS) * n];
    let mut block = vec![Complex32::default(); n];
    let mut op_scratch =
        vec![Complex32::default(); MaskedSynthesis::<f32, B>::required_scratch(&plan)];
    for iterations in [1usize, 5] {
        group.bench_with_input(
            BenchmarkId::new("fista", format!("T{iterations}")),
            &iterations,
            |b, &t| {
                b.iter(|| {
                    fista(
                        &op,
                        &y,
                        Lambda::Maps(&maps),
                        step,
                        t,
                        FistaBuffers {
                            z: &mut z,
                            previous: &mut v,
                            residual: &mut residual,
                            next_residual: &mut next_residual,
                            partials: &mut partials,
                            workers: &mut [WorkerBuffers {
                                block: &mut block,
                                scratch: &mut op_scratch,
                            }],
                        },
                    )
                    .unwrap()
                })
            },
        );
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let shape = Shape::new(SIDE, SIDE).unwrap();
    bench_backend(c, "rustfft", RustFft::<f32>::new(shape));
    bench_backend(c, "microfft", MicroFft::new(shape));
}

criterion_group!(fista_iteration, benches);
criterion_main!(fista_iteration);
