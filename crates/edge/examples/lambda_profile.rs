//! Per-node profile of tract's optimised plan of one or more Lambda models, on the network
//! input the runtime uses (`[batch, 3, N, N]`, batch = DEFAULT_NETWORK_BATCH filters).
//!
//!     cargo run --release -p sparsemap-edge --example lambda_profile -- \
//!         [--batch B] [--side N] [--runs R] [--nodes] [--no-check] MODEL.onnx [MODEL.onnx ...]
//!
//! The models' runs are interleaved (model 1, model 2, ..., model 1, ...) so that a shared,
//! busy machine slows them alike: compare ratios within one run, not across runs. For each
//! model it prints the total (median of R runs, each run timed whole) and, summed over the
//! R runs, the time per tract op type (count, ms per run, share); `--nodes` adds every node.
//! Single-threaded. Feature values are a fixed pseudo-random positive field (they do not
//! change the time).

use anyhow::{bail, Context, Result};
use sparsemap_edge::lambda_net::{LambdaModel, DEFAULT_NETWORK_BATCH};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

struct Profiled {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    /// Per node: seconds summed over the runs.
    node_time: Vec<f64>,
    totals: Vec<f64>,
}

fn main() -> Result<()> {
    let mut batch = DEFAULT_NETWORK_BATCH;
    let mut side = 256usize;
    let mut runs = 10usize;
    let mut nodes = false;
    let mut check = true;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch" => batch = args.next().context("--batch B")?.parse()?,
            "--side" => side = args.next().context("--side N")?.parse()?,
            "--runs" => runs = args.next().context("--runs R")?.parse()?,
            "--nodes" => nodes = true,
            "--no-check" => check = false,
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        bail!("usage: lambda_profile [--batch B] [--side N] [--runs R] [--nodes] [--no-check] MODEL.onnx ...");
    }
    let mut models = Vec::new();
    for path in paths {
        // The contract checks of the runtime (metadata, allowed ops) first, unless
        // --no-check (for trying graphs with operators the runtime does not allow yet).
        if check {
            LambdaModel::from_path(&path)?;
        }
        let mut model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .model_for_path(&path)
            .with_context(|| format!("loading {}", path.display()))?;
        model.set_input_fact(0, f32::fact([batch, 3, side, side]).into())?;
        let optimized = model.into_optimized()?;
        let n = optimized.nodes().len();
        models.push(Profiled {
            path,
            plan: optimized.into_runnable()?,
            node_time: vec![0.0; n],
            totals: Vec::new(),
        });
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let input: Vec<f32> = (0..batch * 3 * side * side)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 0.5
        })
        .collect();
    let input = Tensor::from_shape(&[batch, 3, side, side], &input)?;

    for round in 0..=runs {
        for m in models.iter_mut() {
            let mut st = SimpleState::new(&m.plan)?;
            let mut times = vec![0.0f64; m.node_time.len()];
            let started = Instant::now();
            st.run_plan_with_eval(
                tvec!(input.clone().into()),
                |ctx, op_state, node, inputs| {
                    let t = Instant::now();
                    let r = eval(ctx, op_state, node, inputs);
                    times[node.id] += t.elapsed().as_secs_f64();
                    r
                },
            )?;
            let total = started.elapsed().as_secs_f64();
            if round > 0 {
                // round 0 is a warm-up
                m.totals.push(total);
                for (acc, t) in m.node_time.iter_mut().zip(&times) {
                    *acc += t;
                }
            }
        }
    }

    println!("Lambda network per-node profile: input [{batch}, 3, {side}, {side}], {runs} interleaved runs, one thread");
    let first_median = median(models[0].totals.clone());
    for m in &models {
        let med = median(m.totals.clone());
        let sum: f64 = m.node_time.iter().sum();
        println!(
            "\n== {}: median {:.1} ms per run ({:.2}x the first model); per-op sums below",
            m.path.display(),
            1e3 * med,
            med / first_median
        );
        let model = m.plan.model();
        let mut by_op: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for node in model.nodes() {
            let dt = model
                .outlet_fact(OutletId::new(node.id, 0))
                .map(|f| format!("{:?}", f.datum_type))
                .unwrap_or_default();
            let e = by_op
                .entry(format!("{} ({dt})", node.op().name()))
                .or_default();
            e.0 += 1;
            e.1 += m.node_time[node.id];
        }
        let mut rows: Vec<_> = by_op.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        println!(
            "  {:<34} {:>5} {:>10} {:>7}",
            "op (output type)", "count", "ms/run", "share"
        );
        for (op, (count, t)) in rows {
            println!(
                "  {:<34} {:>5} {:>10.2} {:>6.1}%",
                op,
                count,
                1e3 * t / runs as f64,
                100.0 * t / sum
            );
        }
        if nodes {
            println!("  -- nodes in plan order --");
            for &id in m.plan.order_without_consts() {
                let node = model.node(id);
                let fact = model.outlet_fact(OutletId::new(id, 0))?;
                println!(
                    "  {:>8.2} ms {:>5.1}%  {:<28} {:<22} {:?}",
                    1e3 * m.node_time[id] / runs as f64,
                    100.0 * m.node_time[id] / sum,
                    node.op().name(),
                    node.name,
                    fact.shape
                        .as_concrete()
                        .map(|s| format!("{:?} {:?}", fact.datum_type, s))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
