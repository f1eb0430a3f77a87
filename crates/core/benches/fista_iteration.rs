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
//!
//! Pruning (DESIGN §3.5), groups `pruning_<backend>`: the central 128×128 block of 256² (the
//! bundled example's mask), so half the transposed rows (`kx`) are unsampled.
//! - `fft_pair/{unpruned,pruned}`: K forward + K inverse FFTs, all rows or the sampled rows.
//! - `fista_{unpruned,pruned}/T1` and `/T5`: the solver with `MaskedSynthesis` over all rows
//!   or over the sampled rows (`MaskedSynthesis::pruned`); one iteration is `(T5 - T1) / 4`.
//! - `fista_transposed_ky_lines/T1`, `/T5`: a ky-line mask (every third ky, full readout)
//!   solved as the transposed problem, where its lines are kx rows and are pruned; compare
//!   with `fista_unpruned` (what the ky-line mask costs as it is: no row to prune).
//! - `ky_lines/{transposed,y_first_pruned}`: K FFT pairs for a ky-line mask (every third
//!   natural row sampled, full readout), with the solver's transform (nothing to prune) and
//!   with a prototype that runs the `Y` pass first and the `X` pass on the sampled `ky` rows
//!   only (at the cost of a second transpose per FFT); see DESIGN §3.5.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use num_complex::Complex32;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis};
use sparsemap_core::fft::{
    transpose, ActiveRows, Axis, Direction, Fft2, FftBackend, MicroFft, RustFft,
};
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
        rows: ActiveRows::all(shape),
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

/// Pruned vs unpruned, central block mask (see the module docs).
fn bench_pruning<B: FftBackend<f32>>(c: &mut Criterion, name: &str, backend: B) {
    let shape = Shape::new(SIDE, SIDE).unwrap();
    let n = shape.len();
    let fft = Fft2::new(backend);
    let mut rng = StdRng::seed_from_u64(11);

    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));

    // The bundled example's mask: the central 128 x 128 block, transposed layout.
    let block = SIDE / 4..3 * SIDE / 4;
    let mut mask = vec![0.0f32; n];
    for y in block.clone() {
        for x in block.clone() {
            mask[shape.transposed(y, x)] = 1.0;
        }
    }
    let rows = ActiveRows::of_transposed_mask(shape, &mask).unwrap();
    assert_eq!(rows.count(), SIDE / 2);

    let input = random_complex(&mut rng, n);
    let mut spectrum = vec![Complex32::default(); n];
    let mut back = vec![Complex32::default(); n];
    let mut scratch = vec![Complex32::default(); fft.scratch_len()];
    group.bench_function(BenchmarkId::new("fft_pair", "unpruned"), |b| {
        b.iter(|| {
            for _ in 0..FILTERS {
                fft.forward_to_transposed(black_box(&input), &mut spectrum, &mut scratch);
                fft.inverse_from_transposed(black_box(&spectrum), &mut back, &mut scratch);
            }
        })
    });
    group.bench_function(BenchmarkId::new("fft_pair", "pruned"), |b| {
        b.iter(|| {
            for _ in 0..FILTERS {
                fft.forward_to_transposed_rows(
                    black_box(&input),
                    &mut spectrum,
                    &rows,
                    &mut scratch,
                );
                fft.inverse_from_transposed_rows(
                    black_box(&spectrum),
                    &mut back,
                    &rows,
                    &mut scratch,
                );
            }
        })
    });

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
    let step = 1.0 / plan.lipschitz(&mask);
    let y_full = random_complex(&mut rng, n);
    let y: Vec<Complex32> = y_full.iter().zip(&mask).map(|(v, &m)| v * m).collect();
    let maps: Vec<f32> = (0..FILTERS * n)
        .map(|_| rng.random_range(0.0..0.05))
        .collect();
    let mut z = vec![Complex32::default(); FILTERS * n];
    let mut v = vec![Complex32::default(); FILTERS * n];
    let mut residual = vec![Complex32::default(); n];
    let mut next_residual = vec![Complex32::default(); n];
    let mut partials = vec![Complex32::default(); chunk_count(FILTERS) * n];
    let mut block_buffer = vec![Complex32::default(); n];
    let mut op_scratch =
        vec![Complex32::default(); MaskedSynthesis::<f32, B>::required_scratch(&plan)];
    let unpruned = MaskedSynthesis {
        plan: &plan,
        mask: Some(&mask),
        rows: ActiveRows::all(shape),
    };
    let pruned = MaskedSynthesis::pruned(&plan, &mask).unwrap();
    // A ky-line mask (every third ky, full readout) solved as the transposed problem
    // (k-space, mask, filters and maps transposed; the same cost as the original problem
    // without pruning on this square grid): every third kx row sampled, pruned.
    let mut lines = vec![0.0f32; n];
    for kx in (0..SIDE).step_by(3) {
        lines[kx * SIDE..(kx + 1) * SIDE].fill(1.0);
    }
    let lines_step = 1.0 / plan.lipschitz(&lines);
    let lines_y: Vec<Complex32> = y_full.iter().zip(&lines).map(|(v, &m)| v * m).collect();
    let transposed_ky_lines = MaskedSynthesis::pruned(&plan, &lines).unwrap();
    assert_eq!(transposed_ky_lines.rows.count(), SIDE.div_ceil(3));
    for (variant, op, y, step) in [
        ("unpruned", &unpruned, &y, step),
        ("pruned", &pruned, &y, step),
        (
            "transposed_ky_lines",
            &transposed_ky_lines,
            &lines_y,
            lines_step,
        ),
    ] {
        for iterations in [1usize, 5] {
            group.bench_with_input(
                BenchmarkId::new(format!("fista_{variant}"), format!("T{iterations}")),
                &iterations,
                |b, &t| {
                    b.iter(|| {
                        fista(
                            op,
                            y,
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
                                    block: &mut block_buffer,
                                    scratch: &mut op_scratch,
                                }],
                            },
                        )
                        .unwrap()
                    })
                },
            );
        }
    }

    // ky lines: every third natural row (ky) sampled with its full readout. In the solver's
    // transposed layout every kx row has samples, so nothing is pruned. The prototype keeps
    // the spectrum in the natural layout [ky][kx] instead: forward = transpose, Y pass on
    // all n_x columns, transpose back only the sampled ky rows, X pass on those rows;
    // inverse = its mirror image (unsampled ky rows enter the transpose as zeros).
    let sampled_ky: Vec<bool> = (0..SIDE).map(|y| y % 3 == 0).collect();
    let mut columns = vec![Complex32::default(); n];
    let backend = fft.backend();
    let fft_scratch_len = backend.scratch_len();
    let mut fft_scratch = vec![Complex32::default(); fft_scratch_len];
    group.bench_function(BenchmarkId::new("ky_lines", "transposed"), |b| {
        b.iter(|| {
            for _ in 0..FILTERS {
                fft.forward_to_transposed(black_box(&input), &mut spectrum, &mut scratch);
                fft.inverse_from_transposed(black_box(&spectrum), &mut back, &mut scratch);
            }
        })
    });
    group.bench_function(BenchmarkId::new("ky_lines", "y_first_pruned"), |b| {
        b.iter(|| {
            for _ in 0..FILTERS {
                // Forward: natural image -> natural spectrum on the sampled ky rows.
                transpose(black_box(&input), &mut columns, SIDE, SIDE);
                backend.rows_in_place(Axis::Y, Direction::Forward, &mut columns, &mut fft_scratch);
                transpose_rows_selected(&columns, &mut spectrum, SIDE, &sampled_ky);
                for (ky, row) in spectrum.chunks_exact_mut(SIDE).enumerate() {
                    if sampled_ky[ky] {
                        backend.rows_in_place(Axis::X, Direction::Forward, row, &mut fft_scratch);
                    }
                }
                // Inverse: natural spectrum (zero off the sampled ky rows) -> natural image.
                for (ky, (row, out)) in black_box(&spectrum)
                    .chunks_exact(SIDE)
                    .zip(back.chunks_exact_mut(SIDE))
                    .enumerate()
                {
                    if sampled_ky[ky] {
                        backend.rows_out_of_place(
                            Axis::X,
                            Direction::Inverse,
                            row,
                            out,
                            &mut fft_scratch,
                        );
                    }
                }
                transpose_selected_or_zero(&back, &mut columns, SIDE, &sampled_ky);
                backend.rows_in_place(Axis::Y, Direction::Inverse, &mut columns, &mut fft_scratch);
                transpose(&columns, &mut back, SIDE, SIDE);
            }
        })
    });
    group.finish();
}

/// Prototype helper: `output[c][r] = input[r][c]` (square `side`) for the output rows `c`
/// with `keep[c]` only, tiled by 16.
fn transpose_rows_selected(
    input: &[Complex32],
    output: &mut [Complex32],
    side: usize,
    keep: &[bool],
) {
    for row_tile in (0..side).step_by(16) {
        for col_tile in (0..side).step_by(16) {
            for c in (col_tile..col_tile + 16).filter(|&c| keep[c]) {
                for r in row_tile..row_tile + 16 {
                    output[c * side + r] = input[r * side + c];
                }
            }
        }
    }
}

/// Prototype helper: `output[c][r] = input[r][c]` for the input rows `r` with `keep[r]`,
/// zero for the others (not read), tiled by 16.
fn transpose_selected_or_zero(
    input: &[Complex32],
    output: &mut [Complex32],
    side: usize,
    keep: &[bool],
) {
    for row_tile in (0..side).step_by(16) {
        for col_tile in (0..side).step_by(16) {
            for r in row_tile..row_tile + 16 {
                let value = |c: usize| {
                    if keep[r] {
                        input[r * side + c]
                    } else {
                        Complex32::default()
                    }
                };
                for c in col_tile..col_tile + 16 {
                    output[c * side + r] = value(c);
                }
            }
        }
    }
}

fn pruning_benches(c: &mut Criterion) {
    let shape = Shape::new(SIDE, SIDE).unwrap();
    bench_pruning(c, "pruning_rustfft", RustFft::<f32>::new(shape));
    bench_pruning(c, "pruning_microfft", MicroFft::new(shape));
}

criterion_group!(fista_iteration, benches);
criterion_group!(fista_pruning, pruning_benches);
criterion_main!(fista_iteration, fista_pruning);
