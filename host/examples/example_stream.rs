//! Writes a multi-slice wire stream of the bundled example (`examples/colin27`) for
//! benchmarks of `sparsemap serve` (scripts/bench-serve.sh): the example slice repeated
//! `SLICES` times, one scan, 16-bit samples, no faults.
//!
//!     cargo run --release -p sparsemap-host --example example_stream -- SLICES OUT.smw

use anyhow::{Context, Result};
use ndarray::{Array2, Array3};
use ndarray_npy::ReadNpyExt;
use num_complex::Complex32;
use sparsemap_host::scan::{simulate_scan, FaultSpec, SampleFormat, ScanSpec};
use std::fs::File;
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(slices), Some(out)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: example_stream SLICES OUT.smw");
    };
    let slices: usize = slices.parse().context("SLICES")?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/colin27");
    let kspace = Array2::<Complex32>::read_npy(File::open(example.join("kspace.npy"))?)?;
    let mask = Array2::<u8>::read_npy(File::open(example.join("mask.npy"))?)?;
    let (n_y, n_x) = kspace.dim();
    let k = Array3::from_shape_fn((slices, n_y, n_x), |(_, y, x)| kspace[[y, x]]);
    let m = Array3::from_shape_fn((slices, n_y, n_x), |(_, y, x)| mask[[y, x]] != 0);
    let spec = ScanSpec {
        scan_id: 1,
        field_mt: 50.0,
        fov_mm: [256.0, 256.0],
        samples: SampleFormat::I16,
    };
    let (bytes, _) = simulate_scan(k.view(), m.view(), &spec, &FaultSpec::none())?;
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {out}"))?;
    eprintln!("wrote {out}: {slices} slices, {} bytes", bytes.len());
    Ok(())
}
