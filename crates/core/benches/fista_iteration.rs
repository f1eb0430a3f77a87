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
//!
//! Bandwidth, group `bandwidth` (DESIGN §3.5, "Memory traffic"; §8.2):
//! - `bandwidth/copy` and `bandwidth/triad`: this machine's streaming bandwidth in the same
//!   run, STREAM's kernels (`a = b`, `a = b + s c`) on `f32` arrays together at least 256 MiB
//!   and 4× the last-level cache, bytes counted as STREAM does (each array element read or
//!   written once, no write-allocate traffic).
//! - `iteration_traffic.json` (next to criterion's output): the bytes one iteration must move
//!   to and from memory, [`IterationTraffic`]. `scripts/bench.sh` prints
//!   `iteration / max(FFT floor, bytes / bandwidth)`.

mod common;

use common::{
    criterion_dir, every_third_row_mask, random_complex, random_filters, FILTERS, FILTER_SIDE, SIDE,
};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
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
    let filters = random_filters(&mut rng);
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
    let mask = every_third_row_mask();
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

    let filters = random_filters(&mut rng);
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

/// Bytes one FISTA iteration with Lambda maps must move between the cores and memory
/// (complex `f32` = 8 bytes, `f32` = 4), from the accesses of `fista::update_block` and
/// `MaskedSynthesis::{adjoint_block, apply_block_add}`. Only the `K`-grid arrays count: they
/// are too large to stay in cache from one filter to the next, whereas the `N`-element
/// buffers every filter reuses (residual, mask, the block, the chunk's partial sum) do. Per
/// filter `k`, each of its `N` elements:
///
/// - `z^{i-1}_k` read (8) and `z^{i-2}_k` read and overwritten by `z^i_k` (8 + 8) in
///   `update_block`;
/// - the Lambda map `Lambda_k` read (4);
/// - the response `h_k` read (8) by the adjoint block; its second read, by the forward block
///   after one inverse and one forward FFT, is counted as a cache hit (about 3 MB of buffers
///   pass in between);
/// - the forward-pass sum of its chunk of `BLOCKS_PER_CHUNK` = 4 filters, written back once
///   and read once by the reduction (`(8 + 8) / 4` = 4): the K/4 partial sums are 4 MiB at
///   256², more than stays cached while the other chunks run.
///
/// Total `40 K N` bytes (83.9 MB at N = 256², K = 32). The FFTs' own passes (row pass,
/// transpose, row pass: 48 N bytes each way per FFT), the elementwise passes over the
/// `N`-element buffers and the reduction touch `212 K N + 32 N` bytes in all
/// (`total_touched`), most of them in cache. Unpruned transforms (as `fista/<backend>`).
#[derive(Debug, Clone, Copy)]
struct IterationTraffic {
    memory: usize,
    total_touched: usize,
}

impl IterationTraffic {
    fn new(n: usize, k: usize) -> Self {
        // complex f32, f32
        const C: usize = 8;
        const R: usize = 4;
        let chunk = sparsemap_core::fista::BLOCKS_PER_CHUNK;
        // Streamed from memory, per filter pixel: z read, previous read + write, Lambda
        // read, h read, the chunk's partial sum written back and read by the reduction.
        let memory = C + 2 * C + R + C + 2 * C / chunk;
        // Every pass, per filter pixel. Adjoint block: r, h, mask read, block written;
        // inverse FFT: row pass (read + write), transpose (read + write), row pass in place
        // (read + write); update: z, previous, block read, Lambda read, previous and block
        // written; forward FFT as the inverse; accumulate: next residual, block, h, mask
        // read, partial sum written; the chunk's partial sum zeroed once; the reduction adds
        // each partial (read) into the next residual (read + write). Per iteration, not per
        // filter: the next residual zeroed (8), then `r - y` (r, y read, r written: 24).
        let adjoint = C + C + R + C;
        let fft = 6 * C;
        let update = C + 2 * C + 2 * C + R;
        let accumulate = C + C + C + R + C;
        let partials = C / chunk + (C + 2 * C) / chunk;
        let touched = adjoint + fft + update + fft + accumulate + partials;
        Self {
            memory: memory * k * n,
            total_touched: touched * k * n + (C + 3 * C) * n,
        }
    }
}

/// The last-level cache of CPU 0 in bytes (Linux sysfs), if known.
fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut largest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(size) = std::fs::read_to_string(entry.path().join("size")) else {
            continue;
        };
        let size = size.trim();
        let bytes = match size.strip_suffix('K') {
            Some(kib) => kib.parse::<usize>().ok().map(|v| v << 10),
            None => match size.strip_suffix('M') {
                Some(mib) => mib.parse::<usize>().ok().map(|v| v << 20),
                None => size.parse().ok(),
            },
        };
        largest = largest.max(bytes);
    }
    largest
}

/// Streaming bandwidth in the same run as the iteration (STREAM copy and triad, one thread),
/// and the bytes of one iteration (`iteration_traffic.json`).
fn bandwidth(c: &mut Criterion) {
    /// At least this many bytes over the three arrays (STREAM's rule: ≫ the caches) ...
    const MIN_TOTAL: usize = 256 << 20;
    /// ... and this many times the last-level cache.
    const CACHE_MULTIPLE: usize = 4;
    let total = MIN_TOTAL.max(CACHE_MULTIPLE * last_level_cache_bytes().unwrap_or(0));
    let len = total / 3 / std::mem::size_of::<f32>();
    let bytes = |arrays: usize| (arrays * len * std::mem::size_of::<f32>()) as u64;
    // Allocated on first use, so that a filtered run that skips this group does not pay for it.
    let mut arrays: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
    let make = || (vec![0.0f32; len], vec![1.0f32; len], vec![2.0f32; len]);
    let scalar = 3.0f32;

    let traffic = IterationTraffic::new(SIDE * SIDE, FILTERS);
    let dir = criterion_dir();
    let json = format!(
        "{{\"n\": {}, \"k\": {FILTERS}, \"memory_bytes\": {}, \"total_touched_bytes\": {}, \"bandwidth_bytes_per_array\": {}, \"last_level_cache_bytes\": {}}}\n",
        SIDE * SIDE,
        traffic.memory,
        traffic.total_touched,
        len * std::mem::size_of::<f32>(),
        last_level_cache_bytes().map_or("null".to_string(), |b| b.to_string()),
    );
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("iteration_traffic.json"), json);
    }

    let mut group = c.benchmark_group("bandwidth");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(bytes(2)));
    group.bench_function("copy", |bench| {
        let (a, b, _) = arrays.get_or_insert_with(make);
        bench.iter(|| {
            for (x, &y) in a.iter_mut().zip(black_box(&*b)) {
                *x = y;
            }
            black_box(&mut *a);
        })
    });
    group.throughput(Throughput::Bytes(bytes(3)));
    group.bench_function("triad", |bench| {
        let (a, b, c) = arrays.get_or_insert_with(make);
        bench.iter(|| {
            for ((x, &y), &z) in a.iter_mut().zip(black_box(&*b)).zip(black_box(&*c)) {
                *x = y + scalar * z;
            }
            black_box(&mut *a);
        })
    });
    group.finish();
}

criterion_group!(fista_iteration, benches);
criterion_group!(fista_pruning, pruning_benches);
criterion_group!(fista_bandwidth, bandwidth);
criterion_main!(fista_iteration, fista_pruning, fista_bandwidth);
