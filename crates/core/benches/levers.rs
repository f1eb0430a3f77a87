//! The memory-traffic levers of DESIGN §3.5 ("Memory traffic"), each against the solver as it
//! runs by default, at N = 256², K = 32, 9×9 filters, Lambda maps, one thread (rustfft):
//!
//! - `baseline`: the solver as `sparsemap` runs it: in-place transforms, `f32` Lambda maps,
//!   ordinary heap buffers;
//! - `two_grid_fft`: the operator's transforms as they were before the in-place ones
//!   ([`TwoGridFft`]): what the in-place transforms save;
//! - `compact_maps`: the maps as `Lambda::Compact` (16-bit levels and a scale per filter);
//! - `huge_pages`: the `K`-grid buffers (`z`, `v`, maps, responses, partial sums) in anonymous
//!   maps advised `MADV_HUGEPAGE`;
//! - `huge_pages_compact`: both;
//! - `fft_floor`: not a solver but the floor of DESIGN §3.5, the 2K cache-hot FFTs of one
//!   iteration alone (as `fista_iteration`'s `floor`), timed in the same rounds so that
//!   `iteration / floor` is a paired ratio too (its "iteration" is one run of the 2K FFTs).
//!
//! Levers of a few per cent drown in the drift of a shared machine when each runs in its own
//! block of time (criterion runs benchmarks one after another), so this harness interleaves
//! them: every round times each variant once, in an order rotated per round, and a variant's
//! effect is the median over rounds of its time over the baseline's in the same round. One
//! iteration is `(T5 − T1) / 4` of two solves, which cancels the per-solve set-up. Writes
//! `levers.json` next to criterion's output (`$CRITERION_HOME`, else
//! `$CARGO_TARGET_DIR/criterion`), which `scripts/bench.sh` turns into a table. `ROUNDS=N`
//! changes the number of rounds (default 31).

mod common;

use common::{
    criterion_dir, every_third_row_mask, random_complex, random_filters, FILTERS, FILTER_SIDE, SIDE,
};
use num_complex::Complex32;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis};
use sparsemap_core::fft::{ActiveRows, Fft2, RustFft};
use sparsemap_core::fista::{chunk_count, fista, CompactMaps, FistaBuffers, Lambda, WorkerBuffers};
use sparsemap_core::ops::LinearOperator;
use sparsemap_core::Shape;
use std::time::Instant;

const VARIANTS: [&str; 6] = [
    "baseline",
    "fft_floor",
    "two_grid_fft",
    "compact_maps",
    "huge_pages",
    "huge_pages_compact",
];

/// The solver's operator as it was before the in-place transforms: the adjoint forms the
/// weighted spectrum in a scratch grid and transforms it out of place into the block, and the
/// forward pass keeps its input (`apply_block_add`), so each filter passes over two more
/// grids. Same values as [`MaskedSynthesis`].
struct TwoGridFft<'o, 'p, 'a>(&'o MaskedSynthesis<'p, 'a, f32, RustFft<f32>>);

impl LinearOperator<f32> for TwoGridFft<'_, '_, '_> {
    fn domain_len(&self) -> usize {
        self.0.domain_len()
    }
    fn range_len(&self) -> usize {
        self.0.range_len()
    }
    fn scratch_len(&self) -> usize {
        self.0.scratch_len()
    }
    fn block_len(&self) -> usize {
        self.0.block_len()
    }
    fn apply_block_add(
        &self,
        x_block: &[Complex32],
        index: usize,
        y: &mut [Complex32],
        scratch: &mut [Complex32],
    ) {
        self.0.apply_block_add(x_block, index, y, scratch);
    }
    fn adjoint_block(
        &self,
        y: &[Complex32],
        index: usize,
        out: &mut [Complex32],
        scratch: &mut [Complex32],
    ) {
        let plan = self.0.plan;
        let n = plan.shape().len();
        let (spectrum, fft_scratch) = scratch.split_at_mut(n);
        let gain = plan.fft().inverse_divisor::<f32>();
        let mask = self.0.mask.expect("the benchmark's operator is masked");
        for (((s, &r), &h), &m) in spectrum
            .iter_mut()
            .zip(y)
            .zip(plan.response(index))
            .zip(mask)
        {
            *s = (h.conj() * r).scale(gain * m);
        }
        plan.fft()
            .inverse_from_transposed(spectrum, out, fft_scratch);
    }
}

/// A zeroed buffer of `len` elements in an anonymous map advised `MADV_HUGEPAGE` (2 MiB pages
/// where transparent huge pages are `madvise` or `always`; 4 KiB pages otherwise).
fn huge_page_map<T: bytemuck::Pod>(len: usize) -> memmap2::MmapMut {
    let map = memmap2::MmapOptions::new()
        .len(len * std::mem::size_of::<T>())
        .map_anon()
        .expect("anonymous map");
    #[cfg(target_os = "linux")]
    map.advise(memmap2::Advice::HugePage)
        .expect("madvise(MADV_HUGEPAGE)");
    map
}

/// The solver's state for one placement (heap or huge pages).
struct State<Z> {
    z: Z,
    v: Z,
    partials: Z,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name this target skips it.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "levers".contains(f.as_str())) {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(31);

    let shape = Shape::new(SIDE, SIDE).unwrap();
    let n = shape.len();
    let fft = Fft2::new(RustFft::<f32>::new(shape));
    let mut rng = StdRng::seed_from_u64(11);
    let filters = random_filters(&mut rng);
    let dictionary = Dictionary::new(&filters, FILTERS, FILTER_SIDE).unwrap();
    let responses_len = DictionaryPlan::<f32, RustFft<f32>>::responses_len(shape, FILTERS);
    let mut heap_responses = vec![Complex32::default(); responses_len];
    let mut huge_responses = huge_page_map::<Complex32>(responses_len);
    let mut heap_power = vec![0.0f32; n];
    let mut huge_power = vec![0.0f32; n];
    let mut plan_scratch =
        vec![Complex32::default(); DictionaryPlan::<f32, RustFft<f32>>::scratch_len(&fft)];
    let heap_plan = DictionaryPlan::new(
        &fft,
        dictionary,
        &mut heap_responses,
        &mut heap_power,
        &mut plan_scratch,
    )
    .unwrap();
    let huge_plan = DictionaryPlan::new(
        &fft,
        dictionary,
        bytemuck::cast_slice_mut(&mut huge_responses),
        &mut huge_power,
        &mut plan_scratch,
    )
    .unwrap();
    // Every third transposed row sampled, as `fista_iteration`'s `fista` benchmark.
    let mask = every_third_row_mask();
    let heap_op = MaskedSynthesis {
        plan: &heap_plan,
        mask: Some(&mask),
        rows: ActiveRows::all(shape),
    };
    let huge_op = MaskedSynthesis {
        plan: &huge_plan,
        mask: Some(&mask),
        rows: ActiveRows::all(shape),
    };
    let two_grid = TwoGridFft(&heap_op);
    let step = 1.0 / heap_plan.lipschitz(&mask);
    let y = random_complex(&mut rng, n);

    let maps: Vec<f32> = (0..FILTERS * n)
        .map(|_| rng.random_range(0.0..0.05))
        .collect();
    let mut levels = vec![0u16; FILTERS * n];
    let mut scales = vec![0.0f32; FILTERS];
    CompactMaps {
        levels: &mut levels,
        scales: &mut scales,
    }
    .encode(&maps, n)
    .unwrap();
    let mut huge_maps = huge_page_map::<f32>(FILTERS * n);
    bytemuck::cast_slice_mut::<u8, f32>(&mut huge_maps).copy_from_slice(&maps);
    let mut huge_levels = huge_page_map::<u16>(FILTERS * n);
    bytemuck::cast_slice_mut::<u8, u16>(&mut huge_levels).copy_from_slice(&levels);

    let lens = (FILTERS * n, chunk_count(FILTERS) * n);
    let mut heap = State {
        z: vec![Complex32::default(); lens.0],
        v: vec![Complex32::default(); lens.0],
        partials: vec![Complex32::default(); lens.1],
    };
    let mut huge = State {
        z: huge_page_map::<Complex32>(lens.0),
        v: huge_page_map::<Complex32>(lens.0),
        partials: huge_page_map::<Complex32>(lens.1),
    };
    let mut residual = vec![Complex32::default(); n];
    let mut next_residual = vec![Complex32::default(); n];
    let mut block = vec![Complex32::default(); n];
    let mut op_scratch = vec![
        Complex32::default();
        MaskedSynthesis::<f32, RustFft<f32>>::required_scratch(&heap_plan)
    ];

    // Seconds for one solve of `iterations` with variant `variant`.
    let mut solve = |variant: &str, iterations: usize| -> f64 {
        let (state_z, state_v, state_partials): (
            &mut [Complex32],
            &mut [Complex32],
            &mut [Complex32],
        ) = if variant.starts_with("huge") {
            (
                bytemuck::cast_slice_mut(&mut huge.z),
                bytemuck::cast_slice_mut(&mut huge.v),
                bytemuck::cast_slice_mut(&mut huge.partials),
            )
        } else {
            (&mut heap.z, &mut heap.v, &mut heap.partials)
        };
        let lambda = match variant {
            "compact_maps" => Lambda::Compact {
                levels: &levels,
                scales: &scales,
            },
            "huge_pages" => Lambda::Maps(bytemuck::cast_slice(&huge_maps)),
            "huge_pages_compact" => Lambda::Compact {
                levels: bytemuck::cast_slice(&huge_levels),
                scales: &scales,
            },
            _ => Lambda::Maps(&maps),
        };
        let buffers = FistaBuffers {
            z: state_z,
            previous: state_v,
            residual: &mut residual,
            next_residual: &mut next_residual,
            partials: state_partials,
            workers: &mut [WorkerBuffers {
                block: &mut block,
                scratch: &mut op_scratch,
            }],
        };
        let start = Instant::now();
        match variant {
            "two_grid_fft" => fista(&two_grid, &y, lambda, step, iterations, buffers),
            v if v.starts_with("huge") => fista(&huge_op, &y, lambda, step, iterations, buffers),
            _ => fista(&heap_op, &y, lambda, step, iterations, buffers),
        }
        .unwrap();
        start.elapsed().as_secs_f64()
    };

    // The floor: K forward and K inverse FFTs of one cache-hot grid.
    let floor_input = random_complex(&mut rng, n);
    let mut floor_spectrum = vec![Complex32::default(); n];
    let mut floor_back = vec![Complex32::default(); n];
    let mut floor_scratch = vec![Complex32::default(); fft.scratch_len()];
    let mut floor = || -> f64 {
        let start = Instant::now();
        for _ in 0..FILTERS {
            fft.forward_to_transposed(
                std::hint::black_box(&floor_input),
                &mut floor_spectrum,
                &mut floor_scratch,
            );
            fft.inverse_from_transposed(&floor_spectrum, &mut floor_back, &mut floor_scratch);
        }
        std::hint::black_box(&floor_back);
        start.elapsed().as_secs_f64()
    };
    // One iteration of `variant` (seconds): `(T5 - T1) / 4`, or the floor's 2K FFTs.
    let mut iteration_of = |variant: &str| -> f64 {
        if variant == "fft_floor" {
            floor()
        } else {
            let t1 = solve(variant, 1);
            let t5 = solve(variant, 5);
            (t5 - t1) / 4.0
        }
    };

    // Warm-up: every variant once (page faults, planner caches).
    for variant in VARIANTS {
        iteration_of(variant);
    }
    let mut iteration: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); VARIANTS.len()];
    for round in 0..rounds {
        for offset in 0..VARIANTS.len() {
            let index = (round + offset) % VARIANTS.len();
            iteration[index].push(iteration_of(VARIANTS[index]));
        }
        eprint!("\rlevers: round {}/{rounds}", round + 1);
    }
    eprintln!();

    let mut rows = Vec::new();
    for (index, variant) in VARIANTS.iter().enumerate() {
        let mut ratios: Vec<f64> = iteration[index]
            .iter()
            .zip(&iteration[0])
            .map(|(t, base)| t / base)
            .collect();
        let ratio = median(&mut ratios);
        let ms = median(&mut iteration[index].clone()) * 1e3;
        println!("levers/{variant}: iteration {ms:.2} ms, {ratio:.3} × baseline (median of {rounds} paired rounds)");
        rows.push(format!(
            "{{\"variant\": \"{variant}\", \"iteration_ms\": {ms:.4}, \"ratio_to_baseline\": {ratio:.4}}}"
        ));
    }
    let dir = criterion_dir();
    std::fs::create_dir_all(&dir).expect("criterion directory");
    let json = format!(
        "{{\"n\": {n}, \"k\": {FILTERS}, \"rounds\": {rounds}, \"variants\": [{}]}}\n",
        rows.join(", ")
    );
    std::fs::write(dir.join("levers.json"), json).expect("levers.json");
}
