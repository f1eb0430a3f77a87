//! One FISTA iteration against its floor (DESIGN §3.5): N = 256×256, K = 32, 9×9 filters.
//!
//! - `floor/<backend>`: 2K FFTs of 256×256 alone (K forward + K inverse, with the same 2-D
//!   FFT the solver uses: row pass, blocked transpose, row pass).
//! - `floor_streaming/<backend>`: the same 2K FFTs reading K distinct input grids and
//!   writing K distinct outputs (the memory traffic any implementation has).
//! - `fista/<backend>/T1` and `/T5`: the solver with 1 and 5 iterations; one iteration is
//!   `(T5 - T1) / 4`, which cancels the per-solve set-up (zeroing `z` and `v`).
//!
//! - `bandwidth/copy` and `bandwidth/triad`: this machine's streaming bandwidth in the same
//!   run, STREAM's kernels (`a = b`, `a = b + s c`) on `f32` arrays together at least 256 MiB
//!   and 4× the last-level cache, bytes counted as STREAM does (each array element read or
//!   written once, no write-allocate traffic).
//! - `iteration_traffic.json` (next to criterion's output): the bytes one iteration must move
//!   to and from memory, [`IterationTraffic`] (DESIGN §3.5, "Memory traffic").
//!
//! `scripts/bench.sh` runs this and prints, per backend, `iteration / floor` and
//! `iteration / max(FFT floor, bytes / bandwidth)`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use num_complex::Complex32;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis};
use sparsemap_core::fft::{Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::{fista, FistaBuffers, Lambda};
use sparsemap_core::Shape;
use std::hint::black_box;
use std::path::PathBuf;
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
                            block: &mut block,
                            scratch: &mut op_scratch,
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

/// Bytes one FISTA iteration with Lambda maps must move between the cores and memory
/// (complex `f32` = 8 bytes, `f32` = 4), from the accesses of `fista::update_block` and
/// `MaskedSynthesis::{adjoint_block, apply_block_add}`. Only the `K`-grid arrays count: they
/// are too large to stay in cache from one filter to the next, whereas the `N`-element
/// buffers every filter reuses (residuals, mask, spectrum, FFT scratch, the block) do. Per
/// filter `k`, each of its `N` elements:
///
/// - `z^{i-1}_k` read (8) and `z^{i-2}_k` read and overwritten by `z^i_k` (8 + 8) in
///   `update_block`;
/// - the Lambda map `Lambda_k` read (4);
/// - the response `h_k` read (8) by the adjoint block; its second read, by the forward block
///   after one inverse and one forward FFT, is counted as a cache hit (about 3 MB of buffers
///   pass in between).
///
/// Total `36 K N` bytes (75.5 MB at N = 256², K = 32). The FFTs' own passes (row pass,
/// transpose, row pass: 48 N bytes each way per FFT) and the elementwise passes over the
/// `N`-element buffers touch `204 K N` bytes in all (`total_touched`), from cache.
#[derive(Debug, Clone, Copy)]
struct IterationTraffic {
    memory: usize,
    total_touched: usize,
}

impl IterationTraffic {
    fn new(n: usize, k: usize) -> Self {
        const C: usize = 8; // complex f32
        const R: usize = 4; // f32
                            // Streamed from memory, per filter pixel: z read, previous read + write, Lambda
                            // read, h read.
        let memory = C + 2 * C + R + C;
        // Every pass, per filter pixel. Adjoint block: r, h, mask read, spectrum written;
        // inverse FFT: row pass (read + write), transpose (read + write), row pass in place
        // (read + write); update: z, previous, block read, Lambda read, previous and block
        // written; forward FFT as the inverse; accumulate: next residual, spectrum, h, mask
        // read, next residual written.
        let adjoint = C + C + R + C;
        let fft = 6 * C;
        let update = C + 2 * C + 2 * C + R;
        let accumulate = C + C + C + R + C;
        let touched = adjoint + fft + update + fft + accumulate;
        Self {
            memory: memory * k * n,
            total_touched: touched * k * n,
        }
    }
}

/// Criterion's output directory (where `scripts/bench.sh` reads the estimates).
fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/criterion"
            ))
        })
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

criterion_group!(fista_iteration, benches, bandwidth);
criterion_main!(fista_iteration);
