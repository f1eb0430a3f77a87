//! The chunked FISTA and synthesis give the same bits whatever runs the chunks: the serial
//! path, a reversed order, or real threads with any number of workers. This is what makes
//! `sparsemap --threads N` reproducible; a reduction that followed the thread split would
//! fail these tests (floating-point addition is not associative).

mod common;

use common::*;
use num_complex::Complex;
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis, PlanInfo};
use sparsemap_core::fft::{ActiveRows, Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::{
    apply_with, chunk_count, fista, fista_with, Executor, FistaBuffers, Lambda, Serial,
    WorkerBuffers, BLOCKS_PER_CHUNK,
};
use sparsemap_core::ops::LinearOperator;
use sparsemap_core::recon::{ReconConfig, Workspace};
use sparsemap_core::Shape;

/// Real threads: item `i` goes to worker `i % workers`, each worker on its own thread.
struct RoundRobinThreads;

impl Executor for RoundRobinThreads {
    fn for_each<I: Send, W: Send>(
        &self,
        items: &mut [I],
        workers: &mut [W],
        work: &(dyn Fn(&mut I, &mut W) + Sync),
    ) {
        let count = workers.len();
        let mut groups: Vec<Vec<&mut I>> = (0..count).map(|_| Vec::new()).collect();
        for (i, item) in items.iter_mut().enumerate() {
            groups[i % count].push(item);
        }
        std::thread::scope(|scope| {
            for (group, worker) in groups.into_iter().zip(workers.iter_mut()) {
                scope.spawn(move || group.into_iter().for_each(|item| work(item, worker)));
            }
        });
    }
}

const SHAPE: (usize, usize) = (32, 16);
/// Three chunks, the last one short.
const FILTERS: usize = 2 * BLOCKS_PER_CHUNK + 3;

struct Problem {
    filters: Vec<f32>,
    mask: Vec<f32>,
    y: Vec<Complex<f32>>,
    maps: Vec<f32>,
}

fn problem() -> Problem {
    let mut r = rng(91);
    let (ny, nx) = SHAPE;
    let n = ny * nx;
    let filters: Vec<f32> = random_real(&mut r, FILTERS * 25, -0.3, 0.3);
    let mask: Vec<f32> = random_real::<f32>(&mut r, n, 0.0, 1.0)
        .into_iter()
        .map(|v| if v < 0.45 { 1.0 } else { 0.0 })
        .collect();
    let y = random_complex(&mut r, n)
        .into_iter()
        .zip(&mask)
        .map(|(v, &m): (Complex<f32>, _)| v.scale(m))
        .collect();
    let maps = random_real(&mut r, FILTERS * n, 0.0, 0.05);
    Problem {
        filters,
        mask,
        y,
        maps,
    }
}

/// The mask in the solver's transposed layout.
fn transposed_mask(shape: Shape, mask: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; shape.len()];
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            out[shape.transposed(y, x)] = mask[shape.natural(y, x)];
        }
    }
    out
}

/// The dictionary's responses on one grid, computed once ([`DictionaryPlan::compute`]).
struct Responses {
    info: PlanInfo,
    responses: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl Responses {
    fn new<B: FftBackend<f32>>(fft: &Fft2<B>, problem: &Problem) -> Self {
        let n = fft.shape().len();
        let dictionary = Dictionary::new(&problem.filters, FILTERS, 5).unwrap();
        let mut responses = vec![Complex::default(); FILTERS * n];
        let mut power = vec![0.0; n];
        let mut scratch = vec![Complex::default(); DictionaryPlan::<f32, B>::scratch_len(fft)];
        let info =
            DictionaryPlan::compute(fft, dictionary, &mut responses, &mut power, &mut scratch)
                .unwrap();
        Self {
            info,
            responses,
            power,
        }
    }

    fn plan<'a, B: FftBackend<f32>>(&'a self, fft: &'a Fft2<B>) -> DictionaryPlan<'a, f32, B> {
        DictionaryPlan::view(fft, self.info, &self.responses, &self.power).unwrap()
    }
}

/// Runs the solver on `problem` with `workers` worker buffers and `executor`; returns `z`.
fn solve<B: FftBackend<f32>, E: Executor>(
    backend: B,
    problem: &Problem,
    workers: usize,
    executor: &E,
    iterations: usize,
) -> Vec<Complex<f32>> {
    let fft = Fft2::new(backend);
    let shape = fft.shape();
    let n = shape.len();
    let responses = Responses::new(&fft, problem);
    let plan = responses.plan(&fft);
    let mask_t = transposed_mask(shape, &problem.mask);
    let op = MaskedSynthesis {
        plan: &plan,
        mask: Some(&mask_t),
        rows: ActiveRows::all(shape),
    };
    let step = 1.0 / plan.lipschitz(&mask_t);
    let mut z = vec![Complex::default(); FILTERS * n];
    let mut previous = z.clone();
    let mut residual = vec![Complex::default(); n];
    let mut next_residual = residual.clone();
    let mut partials = vec![Complex::default(); chunk_count(FILTERS) * n];
    let mut storage: Vec<(Vec<Complex<f32>>, Vec<Complex<f32>>)> = (0..workers)
        .map(|_| {
            (
                vec![Complex::default(); n],
                vec![Complex::default(); op.scratch_len()],
            )
        })
        .collect();
    let mut worker_buffers: Vec<WorkerBuffers<'_, f32>> = storage
        .iter_mut()
        .map(|(block, scratch)| WorkerBuffers { block, scratch })
        .collect();
    fista_with(
        &op,
        &problem.y,
        Lambda::Maps(&problem.maps),
        step,
        iterations,
        FistaBuffers {
            z: &mut z,
            previous: &mut previous,
            residual: &mut residual,
            next_residual: &mut next_residual,
            partials: &mut partials,
            workers: &mut worker_buffers,
        },
        executor,
    )
    .unwrap();
    z
}

fn bits(values: &[Complex<f32>]) -> Vec<(u32, u32)> {
    values
        .iter()
        .map(|c| (c.re.to_bits(), c.im.to_bits()))
        .collect()
}

#[test]
fn fista_gives_the_same_bits_for_every_schedule_and_worker_count() {
    let p = problem();
    let shape = Shape::new(SHAPE.0, SHAPE.1).unwrap();
    for iterations in [1, 2, 7] {
        let reference = bits(&solve(RustFft::new(shape), &p, 1, &Serial, iterations));
        assert!(
            reference.iter().any(|&(re, im)| re != 0 || im != 0),
            "the test problem must have non-zero codes"
        );
        for workers in [1, 2, 3, 5] {
            for (name, z) in [
                (
                    "reversed",
                    solve(RustFft::new(shape), &p, workers, &Reversed, iterations),
                ),
                (
                    "threads",
                    solve(
                        RustFft::new(shape),
                        &p,
                        workers,
                        &RoundRobinThreads,
                        iterations,
                    ),
                ),
            ] {
                assert!(
                    bits(&z) == reference,
                    "{name} with {workers} workers, T = {iterations}: z differs from the serial run"
                );
            }
        }
        let micro = bits(&solve(
            MicroFft::new(shape),
            &p,
            3,
            &RoundRobinThreads,
            iterations,
        ));
        let micro_serial = bits(&solve(MicroFft::new(shape), &p, 1, &Serial, iterations));
        assert!(micro == micro_serial, "microfft, T = {iterations}");
    }
}

#[test]
fn chunked_fista_still_solves_the_problem() {
    // The chunked sum is a reordering of the forward pass, not a different algorithm: the
    // serial entry point (`fista`) and a threaded run agree bit for bit, and both decrease
    // the objective from z = 0.
    let p = problem();
    let shape = Shape::new(SHAPE.0, SHAPE.1).unwrap();
    let threaded = solve(RustFft::new(shape), &p, 2, &RoundRobinThreads, 20);
    let fft = Fft2::new(RustFft::new(shape));
    let n = shape.len();
    let responses = Responses::new(&fft, &p);
    let plan = responses.plan(&fft);
    let mask_t = transposed_mask(shape, &p.mask);
    let op = MaskedSynthesis {
        plan: &plan,
        mask: Some(&mask_t),
        rows: ActiveRows::all(shape),
    };
    let mut z = vec![Complex::default(); FILTERS * n];
    let mut previous = z.clone();
    let mut residual = vec![Complex::default(); n];
    let mut next_residual = residual.clone();
    let mut partials = vec![Complex::default(); chunk_count(FILTERS) * n];
    let mut block = vec![Complex::default(); n];
    let mut op_scratch = vec![Complex::default(); op.scratch_len()];
    fista(
        &op,
        &p.y,
        Lambda::Maps(&p.maps),
        1.0 / plan.lipschitz(&mask_t),
        20,
        FistaBuffers {
            z: &mut z,
            previous: &mut previous,
            residual: &mut residual,
            next_residual: &mut next_residual,
            partials: &mut partials,
            workers: &mut [WorkerBuffers {
                block: &mut block,
                scratch: &mut op_scratch,
            }],
        },
    )
    .unwrap();
    assert!(bits(&z) == bits(&threaded));
    let objective = |z: &[Complex<f32>]| {
        let mut az = vec![Complex::default(); n];
        op.apply(z, &mut az, &mut op_scratch.clone());
        let data: f64 = az
            .iter()
            .zip(&p.y)
            .map(|(a, y)| f64::from((a - y).norm_sqr()))
            .sum();
        let penalty: f64 = z
            .iter()
            .zip(&p.maps)
            .map(|(z, l)| f64::from(z.norm() * l))
            .sum();
        0.5 * data + penalty
    };
    let start = objective(&vec![Complex::default(); FILTERS * n]);
    assert!(
        objective(&z) < 0.9 * start,
        "20 iterations must lower the objective: {} vs {start}",
        objective(&z)
    );
}

#[test]
fn chunked_synthesis_matches_the_operator_and_every_schedule() {
    let p = problem();
    let shape = Shape::new(SHAPE.0, SHAPE.1).unwrap();
    let fft = Fft2::new(RustFft::new(shape));
    let n = shape.len();
    let responses = Responses::new(&fft, &p);
    let plan = responses.plan(&fft);
    let op = MaskedSynthesis {
        plan: &plan,
        mask: None,
        rows: ActiveRows::all(shape),
    };
    let mut r = rng(92);
    let x: Vec<Complex<f32>> = random_complex(&mut r, FILTERS * n);
    let mut direct = vec![Complex::default(); n];
    op.apply(
        &x,
        &mut direct,
        &mut vec![Complex::default(); op.scratch_len()],
    );

    let run = |workers: usize,
               executor: &dyn Fn(
        &mut [Complex<f32>],
        &mut [Complex<f32>],
        &mut [WorkerBuffers<'_, f32>],
    )| {
        let mut storage: Vec<Vec<Complex<f32>>> = (0..workers)
            .map(|_| vec![Complex::default(); op.scratch_len()])
            .collect();
        let mut blocks: Vec<Vec<Complex<f32>>> = (0..workers).map(|_| Vec::new()).collect();
        let mut worker_buffers: Vec<WorkerBuffers<'_, f32>> = storage
            .iter_mut()
            .zip(blocks.iter_mut())
            .map(|(scratch, block)| WorkerBuffers { block, scratch })
            .collect();
        let mut y = vec![Complex::default(); n];
        let mut partials = vec![Complex::default(); chunk_count(FILTERS) * n];
        executor(&mut y, &mut partials, &mut worker_buffers);
        y
    };
    let serial = run(1, &|y, partials, workers| {
        apply_with(&op, &x, y, partials, workers, &Serial).unwrap()
    });
    let threaded = run(3, &|y, partials, workers| {
        apply_with(&op, &x, y, partials, workers, &RoundRobinThreads).unwrap()
    });
    let reversed = run(2, &|y, partials, workers| {
        apply_with(&op, &x, y, partials, workers, &Reversed).unwrap()
    });
    assert!(bits(&serial) == bits(&threaded) && bits(&serial) == bits(&reversed));
    let error = relative_error(&to_c64(&serial), &to_c64(&direct));
    assert!(error < 1e-6, "chunked synthesis vs A x: {error:e}");
}

#[test]
fn too_few_buffers_are_errors() {
    let p = problem();
    let shape = Shape::new(SHAPE.0, SHAPE.1).unwrap();
    let fft = Fft2::new(RustFft::new(shape));
    let n = shape.len();
    let responses = Responses::new(&fft, &p);
    let plan = responses.plan(&fft);
    let op = MaskedSynthesis {
        plan: &plan,
        mask: None,
        rows: ActiveRows::all(shape),
    };
    let mut z = vec![Complex::default(); FILTERS * n];
    let mut previous = z.clone();
    let mut residual = vec![Complex::default(); n];
    let mut next_residual = residual.clone();
    let mut block = vec![Complex::default(); n];
    let mut op_scratch = vec![Complex::default(); op.scratch_len()];
    // One partial sum short.
    let mut partials = vec![Complex::default(); (chunk_count(FILTERS) - 1) * n];
    let short = fista(
        &op,
        &p.y,
        Lambda::Scalar(0.01),
        1.0,
        2,
        FistaBuffers {
            z: &mut z,
            previous: &mut previous,
            residual: &mut residual,
            next_residual: &mut next_residual,
            partials: &mut partials,
            workers: &mut [WorkerBuffers {
                block: &mut block,
                scratch: &mut op_scratch,
            }],
        },
    );
    assert!(short.is_err());
    let mut partials = vec![Complex::default(); chunk_count(FILTERS) * n];
    let no_workers = fista(
        &op,
        &p.y,
        Lambda::Scalar(0.01),
        1.0,
        2,
        FistaBuffers {
            z: &mut z,
            previous: &mut previous,
            residual: &mut residual,
            next_residual: &mut next_residual,
            partials: &mut partials,
            workers: &mut [],
        },
    );
    assert!(no_workers.is_err());
}

#[test]
fn workspace_solve_with_threads_equals_the_serial_solve() {
    let p = problem();
    let shape = Shape::new(SHAPE.0, SHAPE.1).unwrap();
    let n = shape.len();
    let fft = Fft2::new(RustFft::new(shape));
    let responses = Responses::new(&fft, &p);
    let plan = responses.plan(&fft);
    let mut complex =
        vec![Complex::default(); Workspace::<f32>::complex_len(shape, FILTERS, fft.scratch_len())];
    let mut real = vec![0.0; Workspace::<f32>::real_len(shape)];
    let config = ReconConfig::<f32>::default();
    let kspace: Vec<Complex<f32>> = random_complex(&mut rng(93), n);
    let mut serial = vec![Complex::default(); n];
    {
        let mut ws =
            Workspace::new(shape, FILTERS, fft.scratch_len(), &mut complex, &mut real).unwrap();
        let mut prepared = ws
            .prepare(&plan, &kspace, &p.mask, config.lowpass_weight)
            .unwrap();
        prepared
            .solve(Lambda::Maps(&p.maps), 9, &mut serial)
            .unwrap();
    }
    for workers in [1usize, 2, 4] {
        let mut storage: Vec<(Vec<Complex<f32>>, Vec<Complex<f32>>)> = (0..workers)
            .map(|_| {
                (
                    vec![Complex::default(); n],
                    vec![
                        Complex::default();
                        MaskedSynthesis::<f32, RustFft<f32>>::required_scratch(&plan)
                    ],
                )
            })
            .collect();
        let mut worker_buffers: Vec<WorkerBuffers<'_, f32>> = storage
            .iter_mut()
            .map(|(block, scratch)| WorkerBuffers { block, scratch })
            .collect();
        let mut ws =
            Workspace::new(shape, FILTERS, fft.scratch_len(), &mut complex, &mut real).unwrap();
        let mut prepared = ws
            .prepare(&plan, &kspace, &p.mask, config.lowpass_weight)
            .unwrap();
        let mut image = vec![Complex::default(); n];
        prepared
            .solve_with(
                Lambda::Maps(&p.maps),
                9,
                &mut image,
                &mut worker_buffers,
                &RoundRobinThreads,
            )
            .unwrap();
        assert!(bits(&image) == bits(&serial), "{workers} workers");
        // The features' correlations too.
        let mut a = vec![0.0f32; n];
        let mut b = vec![0.0f32; n];
        prepared
            .gradient_abs_with(FILTERS - 1, &mut a, &mut worker_buffers[0])
            .unwrap();
        prepared.gradient_abs(FILTERS - 1, &mut b).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
