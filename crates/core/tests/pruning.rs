//! Pruned 2-D FFTs and the pruned solver operator (DESIGN §3.5): the rows of the transposed
//! spectrum (readout frequencies `kx`) where the mask samples nothing are skipped, and the
//! results are bit-identical to those without pruning.

mod common;

use common::*;
use num_complex::Complex;
use sparsemap_core::dictionary::{Dictionary, DictionaryPlan, MaskedSynthesis};
use sparsemap_core::fft::{ActiveRows, Fft2, FftBackend, MicroFft, RustFft};
use sparsemap_core::fista::Lambda;
use sparsemap_core::ops::{adjoint_mismatch, LinearOperator};
use sparsemap_core::recon::Workspace;
use sparsemap_core::{Error, Real, Shape};

/// Shapes of every check: square and not, both orientations, the smallest side.
const SHAPES: [(usize, usize); 5] = [(4, 4), (8, 32), (32, 8), (16, 16), (64, 32)];

/// `a` and `b` are finite and equal: bit-identical on x86_64, within a few ulps of the
/// vector's largest value elsewhere. (DESIGN §3.5 promises equal values up to the sign of
/// exact zeros. On x86_64 rustfft transforms each row of a batch alike, and the results are
/// identical to the bit; under qemu's cortex-a76, rustfft's NEON kernels gave last-bit
/// differences when a run of rows has another length than the whole batch — the first CI run
/// of this test on aarch64 — so there the same arithmetic is checked to rounding.)
fn assert_same<T: Real>(a: &[Complex<T>], b: &[Complex<T>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let bits = |v: T| v.to_f64_lossless().to_bits();
    let scale = b
        .iter()
        .fold(0.0f64, |m, y| m.max(y.norm().to_f64_lossless()));
    let tolerance = 16.0 * T::epsilon().to_f64_lossless() * scale;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.re.is_finite() && x.im.is_finite(),
            "{what}: element {i}: {x:?} is not finite"
        );
        let same = if cfg!(target_arch = "x86_64") {
            bits(x.re) == bits(y.re) && bits(x.im) == bits(y.im)
        } else {
            (*x - *y).norm().to_f64_lossless() <= tolerance
        };
        assert!(same, "{what}: element {i}: {x:?} != {y:?}");
    }
}

fn differs<T: Real>(a: &[Complex<T>], b: &[Complex<T>]) -> bool {
    a.iter().zip(b).any(|(x, y)| x.re != y.re || x.im != y.im)
}

/// Cartesian sampling patterns, natural layout `[n_y][n_x]` (x = readout).
#[derive(Debug, Clone, Copy, PartialEq)]
enum MaskKind {
    /// The central `n_y/2 × n_x/2` block (the bundled example: 128 × 128 of 256²).
    CentralBlock,
    /// A readout window (wire `kx_first, kx_count`, off centre) with every other `ky` line
    /// plus the centre lines.
    ReadoutWindow,
    /// Whole `ky` lines (full readout): every `kx` sampled, nothing to prune.
    KyLines,
    /// Independent random samples (20 %).
    Random,
    /// Columns that are entirely sampled, entirely empty, or random.
    FullAndEmptyColumns,
    /// One sample.
    SinglePoint,
    /// Everything.
    Full,
}

const KINDS: [MaskKind; 7] = [
    MaskKind::CentralBlock,
    MaskKind::ReadoutWindow,
    MaskKind::KyLines,
    MaskKind::Random,
    MaskKind::FullAndEmptyColumns,
    MaskKind::SinglePoint,
    MaskKind::Full,
];

fn natural_mask(kind: MaskKind, shape: Shape, seed: u64) -> Vec<f64> {
    let (ny, nx) = (shape.n_y(), shape.n_x());
    let mut r = rng(seed);
    let line_draw = random_real::<f64>(&mut r, ny, 0.0, 1.0);
    let column_draw = random_real::<f64>(&mut r, nx, 0.0, 1.0);
    let pixel_draw = random_real::<f64>(&mut r, ny * nx, 0.0, 1.0);
    let mut mask = vec![0.0; ny * nx];
    for y in 0..ny {
        for x in 0..nx {
            let sampled = match kind {
                MaskKind::CentralBlock => {
                    (ny / 4..3 * ny / 4).contains(&y) && (nx / 4..3 * nx / 4).contains(&x)
                }
                MaskKind::ReadoutWindow => {
                    let first = nx / 8 + 1;
                    (first..first + nx / 2).contains(&x)
                        && (y % 2 == 0 || y.abs_diff(ny / 2) < ny / 8)
                }
                MaskKind::KyLines => line_draw[y] < 0.4 || y == ny / 2,
                MaskKind::Random => pixel_draw[y * nx + x] < 0.2,
                MaskKind::FullAndEmptyColumns => match column_draw[x] {
                    c if c < 0.3 => true,
                    c if c < 0.7 => false,
                    _ => pixel_draw[y * nx + x] < 0.5,
                },
                MaskKind::SinglePoint => y == ny / 2 && x == nx / 2 + 1,
                MaskKind::Full => true,
            };
            if sampled {
                mask[y * nx + x] = 1.0;
            }
        }
    }
    mask
}

/// Natural `[n_y][n_x]` to the transposed layout `[n_x][n_y]` of the solver's operator.
fn to_transposed<T: Real>(natural: &[f64], shape: Shape) -> Vec<T> {
    let mut out = vec![T::zero(); shape.len()];
    for y in 0..shape.n_y() {
        for x in 0..shape.n_x() {
            out[shape.transposed(y, x)] = T::lit(natural[shape.natural(y, x)]);
        }
    }
    out
}

/// The readout columns with a sample, computed directly (the oracle of `ActiveRows`).
fn sampled_columns(natural: &[f64], shape: Shape) -> Vec<bool> {
    (0..shape.n_x())
        .map(|x| (0..shape.n_y()).any(|y| natural[shape.natural(y, x)] != 0.0))
        .collect()
}

#[test]
fn active_rows_are_the_sampled_readout_columns() {
    for (ny, nx) in SHAPES.into_iter().chain([(256, 256)]) {
        let shape = Shape::new(ny, nx).unwrap();
        for (seed, kind) in KINDS.into_iter().enumerate() {
            let natural = natural_mask(kind, shape, seed as u64);
            let rows =
                ActiveRows::of_transposed_mask(shape, &to_transposed::<f32>(&natural, shape))
                    .unwrap();
            let expected = sampled_columns(&natural, shape);
            assert_eq!(rows.len(), nx);
            for (x, &e) in expected.iter().enumerate() {
                assert_eq!(rows.contains(x), e, "{kind:?} {ny}x{nx} kx={x}");
            }
            assert_eq!(rows.count(), expected.iter().filter(|&&e| e).count());
            assert_eq!(rows.is_all(), expected.iter().all(|&e| e));
            match kind {
                MaskKind::CentralBlock | MaskKind::ReadoutWindow => {
                    assert_eq!(rows.count(), nx / 2, "{kind:?} {ny}x{nx}")
                }
                MaskKind::KyLines | MaskKind::Full => assert!(rows.is_all(), "{kind:?}"),
                MaskKind::SinglePoint => assert_eq!(rows.count(), 1),
                _ => {}
            }
            // Runs: ascending, disjoint, maximal, and exactly the rows of the set.
            let mut covered = vec![false; nx];
            let mut previous_end = None;
            for run in rows.runs() {
                assert!(run.start < run.end && run.end <= nx);
                if let Some(end) = previous_end {
                    assert!(run.start > end, "runs not separated by a gap");
                }
                previous_end = Some(run.end);
                run.for_each(|x| covered[x] = true);
            }
            assert_eq!(covered, expected, "{kind:?} {ny}x{nx} runs");
        }
    }
    // The bundled example: a central 128 x 128 block of 256^2 keeps half the rows.
    let shape = Shape::new(256, 256).unwrap();
    let block = natural_mask(MaskKind::CentralBlock, shape, 0);
    let rows = ActiveRows::of_transposed_mask(shape, &to_transposed::<f32>(&block, shape)).unwrap();
    assert_eq!(rows.runs().collect::<Vec<_>>(), vec![64..192]);
}

#[test]
fn active_rows_edge_cases() {
    let shape = Shape::new(8, 16).unwrap();
    assert_eq!(ActiveRows::all(shape).count(), 16);
    assert!(ActiveRows::all(shape).is_all());
    assert_eq!(ActiveRows::none(shape).count(), 0);
    assert_eq!(ActiveRows::none(shape).runs().count(), 0);
    assert_eq!(
        ActiveRows::all(shape).runs().collect::<Vec<_>>(),
        vec![0..16]
    );
    let mut rows = ActiveRows::none(shape);
    for x in [0, 1, 5, 15] {
        rows.insert(x);
    }
    assert_eq!(rows.runs().collect::<Vec<_>>(), vec![0..2, 5..6, 15..16]);
    assert!(!rows.contains(16) && !rows.contains(1000));
    // The largest grid side uses every bit.
    let widest = Shape::new(4, 512).unwrap();
    let mut last = ActiveRows::none(widest);
    last.insert(511);
    assert_eq!(last.runs().collect::<Vec<_>>(), vec![511..512]);
    assert_eq!(ActiveRows::all(widest).count(), 512);
    // NaN weights count as sampled; a mask of the wrong size is an error, not a panic.
    let mut mask = vec![0.0f32; shape.len()];
    mask[shape.transposed(3, 7)] = f32::NAN;
    let rows = ActiveRows::of_transposed_mask(shape, &mask).unwrap();
    assert_eq!(rows.runs().collect::<Vec<_>>(), vec![7..8]);
    assert!(matches!(
        ActiveRows::of_transposed_mask(shape, &mask[1..]),
        Err(Error::LengthMismatch { .. })
    ));
}

#[test]
#[should_panic(expected = "outside")]
fn active_rows_insert_outside_panics() {
    ActiveRows::none(Shape::new(8, 16).unwrap()).insert(16);
}

/// Row sets to prune to on `shape`: from every mask kind plus hand-made edge cases.
fn row_sets(shape: Shape) -> Vec<ActiveRows> {
    let mut sets: Vec<ActiveRows> = KINDS
        .into_iter()
        .enumerate()
        .map(|(seed, kind)| {
            let natural = natural_mask(kind, shape, 100 + seed as u64);
            ActiveRows::of_transposed_mask(shape, &to_transposed::<f64>(&natural, shape)).unwrap()
        })
        .collect();
    let nx = shape.n_x();
    let mut first = ActiveRows::none(shape);
    first.insert(0);
    let mut last = ActiveRows::none(shape);
    last.insert(nx - 1);
    let mut alternate = ActiveRows::none(shape);
    (0..nx).step_by(2).for_each(|x| alternate.insert(x));
    sets.extend([ActiveRows::none(shape), first, last, alternate]);
    sets
}

fn check_pruned_fft<T: Real, B: FftBackend<T>>(fft: &Fft2<B>, seed: u64) {
    let shape = fft.shape();
    let (n, ny) = (shape.len(), shape.n_y());
    let nan = Complex::new(T::nan(), T::nan());
    let sentinel = Complex::new(T::lit(7.0), T::lit(-7.0));
    for (i, rows) in row_sets(shape).into_iter().enumerate() {
        let mut r = rng(seed + i as u64);
        let what = format!("{}x{} rows {rows:?} #{i}", shape.n_y(), shape.n_x());

        // Forward: the computed rows are the unpruned ones; the others are not written.
        let input = random_complex::<T>(&mut r, n);
        let mut full = vec![Complex::default(); n];
        let mut scratch = vec![nan; fft.scratch_len()];
        fft.try_forward_to_transposed(&input, &mut full, &mut scratch)
            .unwrap();
        let mut pruned = vec![sentinel; n];
        scratch.fill(nan);
        fft.try_forward_to_transposed_rows(&input, &mut pruned, &rows, &mut scratch)
            .unwrap();
        for kx in 0..shape.n_x() {
            let span = kx * ny..(kx + 1) * ny;
            if rows.contains(kx) {
                assert_same(&pruned[span.clone()], &full[span], &what);
            } else {
                assert!(
                    pruned[span].iter().all(|&v| v == sentinel),
                    "{what}: row {kx} was written"
                );
            }
        }

        // Inverse: rows outside the set count as zero and are not read (NaN there).
        let spectrum = random_complex::<T>(&mut r, n);
        let mut zeroed = spectrum.clone();
        let mut poisoned = spectrum.clone();
        for kx in (0..shape.n_x()).filter(|&kx| !rows.contains(kx)) {
            zeroed[kx * ny..(kx + 1) * ny].fill(Complex::default());
            poisoned[kx * ny..(kx + 1) * ny].fill(nan);
        }
        let mut expected = vec![Complex::default(); n];
        fft.try_inverse_from_transposed(&zeroed, &mut expected, &mut scratch)
            .unwrap();
        let mut got = vec![nan; n];
        scratch.fill(nan);
        fft.try_inverse_from_transposed_rows(&poisoned, &mut got, &rows, &mut scratch)
            .unwrap();
        assert_same(&got, &expected, &what);

        // In place, on one buffer (the solver's path): the computed rows of the forward
        // transform, and the whole inverse, as out of place; the inverse zeroes the rows
        // outside the set (NaN there) before its transpose.
        let mut in_place = input.clone();
        scratch.fill(nan);
        fft.forward_in_place_rows(&mut in_place, &rows, &mut scratch);
        for kx in (0..shape.n_x()).filter(|&kx| rows.contains(kx)) {
            let span = kx * ny..(kx + 1) * ny;
            assert_same(
                &in_place[span.clone()],
                &full[span],
                &format!("{what}: in place"),
            );
        }
        let mut in_place = poisoned.clone();
        scratch.fill(nan);
        fft.inverse_in_place_rows(&mut in_place, &rows, &mut scratch);
        assert_same(&in_place, &expected, &format!("{what}: inverse in place"));
    }
    // A row set for another grid is an error in the checked variants.
    let other = ActiveRows::all(Shape::new(shape.n_y(), shape.n_x() * 2).unwrap_or(shape));
    if other.len() != shape.n_x() {
        let mut out = vec![Complex::default(); n];
        let mut scratch = vec![Complex::default(); fft.scratch_len()];
        let input = vec![Complex::default(); n];
        assert!(matches!(
            fft.try_forward_to_transposed_rows(&input, &mut out, &other, &mut scratch),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            fft.try_inverse_from_transposed_rows(&input, &mut out, &other, &mut scratch),
            Err(Error::LengthMismatch { .. })
        ));
    }
}

#[test]
fn pruned_fft_matches_unpruned_on_the_computed_rows_for_both_backends() {
    for (ny, nx) in SHAPES.into_iter().chain([(256, 256), (32, 512)]) {
        let shape = Shape::new(ny, nx).unwrap();
        check_pruned_fft::<f32, _>(&Fft2::new(MicroFft::new(shape)), 1);
        check_pruned_fft::<f32, _>(&Fft2::new(RustFft::<f32>::new(shape)), 2);
        check_pruned_fft::<f64, _>(&Fft2::new(RustFft::<f64>::new(shape)), 3);
    }
}

/// Owns what a dictionary plan borrows.
struct PlanStore<T> {
    responses: Vec<Complex<T>>,
    power: Vec<T>,
}

const FILTERS: usize = 3;
const FILTER_SIDE: usize = 3;

fn make_plan<'a, T: Real, B: FftBackend<T>>(
    fft: &'a Fft2<B>,
    seed: u64,
    store: &'a mut PlanStore<T>,
) -> DictionaryPlan<'a, T, B> {
    let shape = fft.shape();
    let filters = random_real::<T>(&mut rng(seed), FILTERS * FILTER_SIDE.pow(2), -1.0, 1.0);
    store.responses =
        vec![Complex::default(); DictionaryPlan::<T, B>::responses_len(shape, FILTERS)];
    store.power = vec![T::zero(); DictionaryPlan::<T, B>::power_len(shape)];
    let mut scratch = vec![Complex::default(); DictionaryPlan::<T, B>::scratch_len(fft)];
    let dictionary = Dictionary::new(&filters, FILTERS, FILTER_SIDE).unwrap();
    DictionaryPlan::new(
        fft,
        dictionary,
        &mut store.responses,
        &mut store.power,
        &mut scratch,
    )
    .unwrap()
}

/// `A x` and `A^H y` of `op` for the given inputs, with dirty (NaN) scratch.
fn apply_and_adjoint<T: Real, A: LinearOperator<T>>(
    op: &A,
    x: &[Complex<T>],
    y: &[Complex<T>],
) -> (Vec<Complex<T>>, Vec<Complex<T>>) {
    let nan = Complex::new(T::nan(), T::nan());
    let mut scratch = vec![nan; op.scratch_len()];
    let mut ax = vec![nan; op.range_len()];
    op.apply(x, &mut ax, &mut scratch);
    scratch.fill(nan);
    let mut ahy = vec![nan; op.domain_len()];
    op.adjoint(y, &mut ahy, &mut scratch);
    (ax, ahy)
}

fn check_pruned_operator<T: Real, B: FftBackend<T>>(fft: &Fft2<B>, seed: u64, tol: f64) {
    let shape = fft.shape();
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(fft, seed, &mut store);
    let mut r = rng(seed);
    for kind in KINDS {
        let what = format!("{kind:?} {}x{}", shape.n_y(), shape.n_x());
        let natural = natural_mask(kind, shape, seed);
        // Binary weights, and non-binary ones on the same support.
        let binary = to_transposed::<T>(&natural, shape);
        let weights: Vec<T> = binary
            .iter()
            .zip(random_real::<T>(&mut r, shape.len(), 0.1, 1.0))
            .map(|(&m, w)| m * w)
            .collect();
        for mask in [&binary, &weights] {
            let pruned = MaskedSynthesis::pruned(&plan, mask).unwrap();
            assert_eq!(
                pruned.rows,
                ActiveRows::of_transposed_mask(shape, &binary).unwrap()
            );
            let unpruned = MaskedSynthesis {
                plan: &plan,
                mask: Some(&mask[..]),
                rows: ActiveRows::all(shape),
            };
            // Random values everywhere, also where nothing is sampled.
            let x = random_complex::<T>(&mut r, pruned.domain_len());
            let y = random_complex::<T>(&mut r, pruned.range_len());
            let (ax, ahy) = apply_and_adjoint(&pruned, &x, &y);
            let (ax_full, ahy_full) = apply_and_adjoint(&unpruned, &x, &y);
            assert_same(&ax, &ax_full, &format!("{what}: apply"));
            assert_same(&ahy, &ahy_full, &format!("{what}: adjoint"));

            // The solver's forward blocks transform their input in place; same sums.
            for op in [&pruned, &unpruned] {
                let mut scratch = vec![Complex::new(T::nan(), T::nan()); op.scratch_len()];
                let mut consumed = vec![Complex::default(); op.range_len()];
                for (k, block) in x.chunks_exact(op.block_len()).enumerate() {
                    let mut block = block.to_vec();
                    op.apply_block_add_consuming(&mut block, k, &mut consumed, &mut scratch);
                }
                assert_same(&consumed, &ax_full, &format!("{what}: consuming apply"));
            }

            let mut scratch = vec![Complex::default(); pruned.scratch_len()];
            let (mut ax, mut ahy) = (ax, ahy);
            let mismatch = adjoint_mismatch(&pruned, &x, &y, &mut ax, &mut ahy, &mut scratch);
            assert!(mismatch < tol, "{what}: adjoint mismatch {mismatch:e}");
        }
    }
}

#[test]
fn pruned_operator_matches_unpruned_for_every_mask_kind_and_backend() {
    for (ny, nx) in SHAPES {
        let shape = Shape::new(ny, nx).unwrap();
        check_pruned_operator::<f64, _>(&Fft2::new(RustFft::<f64>::new(shape)), 11, 1e-12);
        check_pruned_operator::<f32, _>(&Fft2::new(RustFft::<f32>::new(shape)), 12, 1e-5);
        check_pruned_operator::<f32, _>(&Fft2::new(MicroFft::new(shape)), 13, 1e-5);
    }
}

#[test]
fn pruned_operator_matches_unpruned_at_the_example_size() {
    // The bundled example's geometry: a central 128 x 128 block of 256^2.
    let shape = Shape::new(256, 256).unwrap();
    check_pruned_operator::<f32, _>(&Fft2::new(RustFft::<f32>::new(shape)), 14, 1e-5);
    check_pruned_operator::<f32, _>(&Fft2::new(MicroFft::new(shape)), 15, 1e-5);
}

/// With a row set that leaves out sampled rows the operator is the one of the mask
/// restricted to the rows (still linear, with its adjoint) — and differs from the full
/// mask's, which shows the comparisons above can fail.
fn check_row_restricted_mask<T: Real, B: FftBackend<T>>(fft: &Fft2<B>, seed: u64, tol: f64) {
    let shape = fft.shape();
    let ny = shape.n_y();
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(fft, seed, &mut store);
    let mut r = rng(seed);
    let mask = to_transposed::<T>(&natural_mask(MaskKind::Full, shape, seed), shape);
    let mut rows = ActiveRows::none(shape);
    (1..shape.n_x()).step_by(3).for_each(|x| rows.insert(x));
    let mut restricted = mask.clone();
    for kx in (0..shape.n_x()).filter(|&kx| !rows.contains(kx)) {
        restricted[kx * ny..(kx + 1) * ny].fill(T::zero());
    }
    let what = format!("{}x{}", shape.n_y(), shape.n_x());
    let x = random_complex::<T>(&mut r, FILTERS * shape.len());
    let y = random_complex::<T>(&mut r, shape.len());
    for (mask, restricted) in [(Some(&mask[..]), &restricted), (None, &restricted)] {
        let pruned = MaskedSynthesis {
            plan: &plan,
            mask,
            rows,
        };
        let reference = MaskedSynthesis {
            plan: &plan,
            mask: Some(&restricted[..]),
            rows: ActiveRows::all(shape),
        };
        let whole = MaskedSynthesis {
            plan: &plan,
            mask,
            rows: ActiveRows::all(shape),
        };
        let (ax, ahy) = apply_and_adjoint(&pruned, &x, &y);
        let (ax_ref, ahy_ref) = apply_and_adjoint(&reference, &x, &y);
        let (ax_whole, ahy_whole) = apply_and_adjoint(&whole, &x, &y);
        assert_same(&ax, &ax_ref, &format!("{what}: apply"));
        assert_same(&ahy, &ahy_ref, &format!("{what}: adjoint"));
        assert!(differs(&ax, &ax_whole) && differs(&ahy, &ahy_whole));
        let mut scratch = vec![Complex::default(); pruned.scratch_len()];
        let (mut ax, mut ahy) = (ax, ahy);
        let mismatch = adjoint_mismatch(&pruned, &x, &y, &mut ax, &mut ahy, &mut scratch);
        assert!(mismatch < tol, "{what}: adjoint mismatch {mismatch:e}");
    }
}

#[test]
fn rows_left_out_act_as_a_zero_mask() {
    for (ny, nx) in SHAPES {
        let shape = Shape::new(ny, nx).unwrap();
        check_row_restricted_mask::<f64, _>(&Fft2::new(RustFft::<f64>::new(shape)), 21, 1e-12);
        check_row_restricted_mask::<f32, _>(&Fft2::new(MicroFft::new(shape)), 22, 1e-5);
    }
}

/// The whole reconstruction (prepare, the features' gradient, solve) with pruning on and
/// off: the same image, report and gradient magnitudes.
fn check_reconstruction<T: Real, B: FftBackend<T>>(fft: &Fft2<B>, seed: u64) {
    let shape = fft.shape();
    let n = shape.len();
    let mut store = PlanStore {
        responses: vec![],
        power: vec![],
    };
    let plan = make_plan(fft, seed, &mut store);
    let mut complex =
        vec![Complex::default(); Workspace::<T>::complex_len(shape, FILTERS, fft.scratch_len())];
    let mut real = vec![T::zero(); Workspace::<T>::real_len(shape)];
    let mut workspace =
        Workspace::new(shape, FILTERS, fft.scratch_len(), &mut complex, &mut real).unwrap();
    let mut r = rng(seed);
    for kind in KINDS {
        let what = format!("{kind:?} {}x{}", shape.n_y(), shape.n_x());
        let natural = natural_mask(kind, shape, seed);
        let mask: Vec<T> = natural.iter().map(|&m| T::lit(m)).collect();
        let kspace = random_complex::<T>(&mut r, n);
        let maps = random_real::<T>(&mut r, FILTERS * n, 0.0, 0.05);
        let expected_rows = sampled_columns(&natural, shape);
        let mut results = Vec::new();
        for prune in [true, false] {
            let mut prepared = workspace
                .prepare(&plan, &kspace, &mask, T::lit(1.0))
                .unwrap();
            let rows = prepared.rows();
            assert_eq!(
                (0..shape.n_x())
                    .map(|x| rows.contains(x))
                    .collect::<Vec<_>>(),
                expected_rows,
                "{what}"
            );
            prepared.set_pruning(prune);
            let mut gradient = vec![T::zero(); n];
            prepared.gradient_abs(1, &mut gradient).unwrap();
            let mut image = vec![Complex::default(); n];
            let report = prepared.solve(Lambda::Maps(&maps), 7, &mut image).unwrap();
            results.push((gradient, image, report));
        }
        let (pruned, unpruned) = (&results[0], &results[1]);
        let bits = |v: &[T]| {
            v.iter()
                .map(|x| x.to_f64_lossless().to_bits())
                .collect::<Vec<_>>()
        };
        if cfg!(target_arch = "x86_64") {
            assert!(
                bits(&pruned.0) == bits(&unpruned.0),
                "{what}: gradient magnitudes differ"
            );
            assert_same(&pruned.1, &unpruned.1, &format!("{what}: image"));
            assert_eq!(pruned.2, unpruned.2, "{what}: report");
        } else {
            // Last-bit FFT differences (see `assert_same`) pass through 7 iterations and
            // may move a coefficient across its threshold: the same solve to f32 rounding.
            let close = |a: &[Complex<T>], b: &[Complex<T>]| {
                let num: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (*x - *y).norm_sqr().to_f64_lossless())
                    .sum();
                let den: f64 = b.iter().map(|y| y.norm_sqr().to_f64_lossless()).sum();
                (num / den.max(f64::MIN_POSITIVE)).sqrt()
            };
            let error = close(&pruned.1, &unpruned.1);
            assert!(error < 1e-4, "{what}: image differs by {error:e}");
            assert_eq!(
                (pruned.2.scale, pruned.2.lipschitz),
                (unpruned.2.scale, unpruned.2.lipschitz),
                "{what}: report"
            );
        }
        assert!(pruned.2.nonzero_coefficients > 0, "{what}: trivial solve");
    }
}

#[test]
fn reconstruction_is_the_same_with_and_without_pruning() {
    for (ny, nx) in SHAPES.into_iter().chain([(128, 64)]) {
        let shape = Shape::new(ny, nx).unwrap();
        check_reconstruction::<f64, _>(&Fft2::new(RustFft::<f64>::new(shape)), 31);
        check_reconstruction::<f32, _>(&Fft2::new(RustFft::<f32>::new(shape)), 32);
        check_reconstruction::<f32, _>(&Fft2::new(MicroFft::new(shape)), 33);
    }
}
