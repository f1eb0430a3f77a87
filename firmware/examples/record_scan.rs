//! Record a `.smw` wire stream of a simulated low-field scan: the firmware's state machine
//! (`Bridge`) drives the behavioural ADS131A02 model of `tests/sim`, whose conversions are
//! the given k-space quantised to 16-bit codes with one scale per scan, and whatever the
//! firmware writes to its link is the file. So the stream is byte for byte what the real
//! firmware would emit for that k-space.
//!
//! ```sh
//! cargo run -p sparsemap-firmware --example record_scan -- \
//!     --kspace examples/colin27/kspace.npy --mask examples/colin27/mask.npy \
//!     --out tests/fixtures/wire/colin27_axial.smw
//! ```
//!
//! Options: `--scan-id ID` (default 27), `--field-mt F` (default 50), `--fov-mm F` (default
//! 256: the Colin27 slice is 1 mm voxels on a 256 grid).
//!
//! One readout per k-space row with any sampled entry, in ascending `ky`. The readout window
//! (`kx_first`, `kx_count` of `ScanStart`) is the union of the sampled columns of the mask,
//! and every line carries exactly those columns. A mask that cannot be acquired line by line
//! — a sampled row whose sampled columns differ from the window, e.g. 2-D Poisson-disc — is
//! refused. The per-scan scale maps the largest |re| or |im| of the sampled k-space to code
//! 32767; decoding gives `scale * code`, within `scale / 2` of the input per component.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::fs::File;
use std::io::Write as _;

use anyhow::{bail, ensure, Context, Result};
use ndarray::Array2;
use ndarray_npy::ReadNpyExt;
use num_complex::Complex32;
use sparsemap_firmware::{Bridge, Readout, ScanPlan, Timing};

const N: usize = 512;
const E: usize = sparsemap_wire::max_encoded_len(N);
const Q: usize = 16 * 1024;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kspace_path), Some(mask_path), Some(out_path)) = (
        arg(&args, "--kspace"),
        arg(&args, "--mask"),
        arg(&args, "--out"),
    ) else {
        bail!("usage: record_scan --kspace K.npy --mask M.npy --out SCAN.smw [--scan-id ID] [--field-mt F] [--fov-mm F]");
    };
    let scan_id: u32 = arg(&args, "--scan-id")
        .map_or(Ok(27), |s| s.parse())
        .context("--scan-id")?;
    let field_mt: f32 = arg(&args, "--field-mt")
        .map_or(Ok(50.0), |s| s.parse())
        .context("--field-mt")?;
    let fov: f32 = arg(&args, "--fov-mm")
        .map_or(Ok(256.0), |s| s.parse())
        .context("--fov-mm")?;

    let kspace = Array2::<Complex32>::read_npy(
        File::open(&kspace_path).with_context(|| format!("opening {kspace_path}"))?,
    )
    .with_context(|| format!("reading {kspace_path} as complex64 [N_y, N_x]"))?;
    let mask = Array2::<u8>::read_npy(
        File::open(&mask_path).with_context(|| format!("opening {mask_path}"))?,
    )
    .with_context(|| format!("reading {mask_path} as uint8 [N_y, N_x]"))?;
    ensure!(
        kspace.dim() == mask.dim(),
        "k-space {:?} and mask {:?} differ in shape",
        kspace.dim(),
        mask.dim()
    );
    let (n_y, n_x) = kspace.dim();
    ensure!(
        n_x <= sparsemap_wire::MAX_N_X && n_y <= usize::from(u16::MAX),
        "grid {n_y}x{n_x}: n_x above {} or n_y above {}",
        sparsemap_wire::MAX_N_X,
        u16::MAX
    );

    // The rows to acquire, the readout window, and the per-scan quantisation scale.
    let rows: Vec<usize> = (0..n_y)
        .filter(|&ky| mask.row(ky).iter().any(|&m| m != 0))
        .collect();
    let sampled_cols: Vec<usize> = (0..n_x)
        .filter(|&kx| mask.column(kx).iter().any(|&m| m != 0))
        .collect();
    let (Some(&kx_first), Some(&kx_last)) = (sampled_cols.first(), sampled_cols.last()) else {
        bail!("{mask_path}: the mask samples nothing");
    };
    let window = kx_first..kx_last + 1;
    ensure!(
        window.len() <= N,
        "{mask_path}: readout window of {} columns above {N}",
        window.len()
    );
    if let Some(&ky) = rows
        .iter()
        .find(|&&ky| (0..n_x).any(|kx| (mask[[ky, kx]] != 0) != window.contains(&kx)))
    {
        bail!(
            "{mask_path}: not acquirable line by line: row {ky} samples other columns than the readout window {kx_first}..{}",
            window.end
        );
    }
    let peak = rows
        .iter()
        .flat_map(|&ky| {
            let kspace = &kspace;
            window.clone().map(move |kx| kspace[[ky, kx]])
        })
        .fold(0.0f32, |m, v| m.max(v.re.abs()).max(v.im.abs()));
    ensure!(
        peak > 0.0 && peak.is_finite(),
        "nothing sampled (peak {peak})"
    );
    let scale = peak / 32767.0;
    let quantise = |v: f32| (v / scale).round().clamp(-32768.0, 32767.0) as i16;
    let codes: Vec<Vec<[i16; 2]>> = rows
        .iter()
        .map(|&ky| {
            window
                .clone()
                .map(|kx| {
                    let v = kspace[[ky, kx]];
                    [quantise(v.re), quantise(v.im)]
                })
                .collect()
        })
        .collect();

    // The scan: one trigger per row, the ADC model serving that row's codes.
    let readouts: Vec<Readout> = rows
        .iter()
        .map(|&ky| Readout {
            slice: 0,
            coil: 0,
            ky: ky as u16,
        })
        .collect();
    let plan = ScanPlan {
        scan_id,
        n_y: n_y as u16,
        n_x: n_x as u16,
        kx_first: kx_first as u16,
        kx_count: window.len() as u16,
        n_coils: 1,
        n_slices: 1,
        field_mt,
        fov_mm: [fov, fov],
        scale,
        readouts: &readouts,
    };
    let (model, spi, drdy, trigger) = sim::hardware(codes, vec![]);
    // USB full-speed CDC: 64-byte packets.
    let link = sim::SimLink::new(64, 1);
    let timing = Timing {
        trigger_polls: 1_000_000,
        drdy_polls: 1_000_000,
        pump_chunk: 64,
        flush_polls: 1_000_000,
    };
    let mut bridge: Box<Bridge<_, _, _, _, N, E, Q>> =
        Box::new(Bridge::new(spi, drdy, trigger, link, timing));
    let summary = bridge
        .run_scan(&plan)
        .map_err(|e| anyhow::anyhow!("link failed: {e:?}"))?;
    let violations = model.borrow().violations.clone();
    ensure!(
        violations.is_empty(),
        "ADC protocol violations: {violations:?}"
    );
    ensure!(
        summary.faults == 0 && !summary.aborted,
        "scan did not complete cleanly: {summary:?}"
    );

    let bytes = &bridge.link().out;
    File::create(&out_path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {out_path}"))?;
    println!(
        "{out_path}: scan {scan_id}, {n_y}x{n_x}, {} lines of {} samples (columns {kx_first}..{}), {} bytes ({:.0} per line), scale {scale:e} per code",
        summary.lines_sent,
        window.len(),
        window.end,
        bytes.len(),
        bytes.len() as f64 / f64::from(summary.lines_sent),
    );
    Ok(())
}
