//! The slice worker of `recon --input` and `serve`: a completed slice from the stream in,
//! its files on disk and one JSON record out. Also the file set of one image, shared with
//! `recon --kspace`, and the zero-filled previews of `serve --preview-every`.
//!
//! Files of slice `s` of scan `id` in the output directory, stem `scan{id:05}_slice{s:03}`:
//! `.npy` (complex64 `[n_y, n_x]`), `.png` (magnitude), `.nii` (NIfTI-1 magnitude), `.json`
//! (provenance), with `--save-maps` `_lambda.npy` and `_lambda.png`, with `--save-kspace`
//! `_kspace.npy` and `_mask.npy` (what was reconstructed: `recon --kspace` on them gives the
//! same image bit for bit). Every file is written under a temporary name and renamed, so a
//! watcher never sees half a file, and the final PNG replaces the preview atomically. A
//! slice that cannot be reconstructed (a grid the core does not take) still gets its
//! k-space and mask written: data that arrived intact is never dropped.
//!
//! Several coils: until multi-coil reconstruction lands, each coil is reconstructed as its
//! own single-coil problem and the images are combined by root-sum-of-squares
//! ([`reconstruct_rss`]; the sidecar and the JSON line say `coil_combination: "rss"`).

use crate::ingest::SliceJob;
use crate::method::{MethodSpec, PlannedMethod, ReconTimes};
use crate::output::{
    write_maps_montage, write_nifti, write_npy, write_png, write_sidecar, Acquisition, Provenance,
    ARRAY_ORIENTATION,
};
use anyhow::{bail, Context, Result};
use ndarray::{Array2, ArrayView2, ArrayView3};
use num_complex::Complex32;
use serde::Serialize;
use sparsemap_core::fft::{Fft2, RustFft};
use sparsemap_core::ops::{CentredFourier, LinearOperator};
use sparsemap_core::Shape;
use sparsemap_wire::{ClosedBy, EndStatus, ScanStart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Optional outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputOptions {
    /// Lambda maps as `.npy` and a PNG montage.
    pub save_maps: bool,
    /// The assembled k-space and mask as `.npy`.
    pub save_kspace: bool,
}

/// Writes `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    // `.NAME-part.EXT`: hidden, and with the one extension writers insist on (the NIfTI
    // writer also rewrites any inner `.` of the name).
    let stem = path
        .file_stem()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(stem);
    temporary_name.push("-part");
    if let Some(extension) = path.extension() {
        temporary_name.push(".");
        temporary_name.push(extension);
    }
    let temporary = path.with_file_name(temporary_name);
    let written = write(&temporary).and_then(|()| {
        std::fs::rename(&temporary, path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                temporary.display(),
                path.display()
            )
        })
    });
    if written.is_err() {
        // Nothing half-written stays behind; the error says what failed.
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// The directory a file path is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Where a path points, for comparing paths that may be spelt differently (`./x`, `d/../x`,
/// symbolic links): the canonical path if it exists, else the canonical parent plus its name.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = std::fs::canonicalize(path) {
        return Some(path);
    }
    Some(
        std::fs::canonicalize(parent_dir(path))
            .ok()?
            .join(path.file_name()?),
    )
}

/// Checks, before any work, that `outputs` (`(what, path)`) are distinct from each other and
/// from every input, are not directories, and that their directories exist and take a new
/// file, so that a reconstruction is never lost at the end nor an input overwritten.
pub fn check_output_paths(outputs: &[(&str, PathBuf)], inputs: &[(&str, &Path)]) -> Result<()> {
    let inputs: Vec<(&str, &Path, Option<PathBuf>)> = inputs
        .iter()
        .map(|&(what, path)| (what, path, resolved(path)))
        .collect();
    let mut writable: Vec<&Path> = Vec::new();
    let mut seen: Vec<(&str, &Path, PathBuf)> = Vec::new();
    for (what, path) in outputs {
        if path.file_name().is_none() {
            bail!("{what} {}: not a file path", path.display());
        }
        if path.is_dir() {
            bail!("{what} {}: is a directory", path.display());
        }
        let parent = parent_dir(path);
        if !writable.contains(&parent) {
            check_writable_dir(parent).with_context(|| format!("{what} {}", path.display()))?;
            writable.push(parent);
        }
        let here = resolved(path)
            .with_context(|| format!("{what} {}: cannot resolve the path", path.display()))?;
        if let Some((other, other_path, _)) = seen.iter().find(|(_, _, p)| *p == here) {
            bail!(
                "{what} {} and {other} {} are the same file: give them different names",
                path.display(),
                other_path.display()
            );
        }
        if let Some((input_what, input, _)) =
            inputs.iter().find(|(_, _, p)| p.as_ref() == Some(&here))
        {
            bail!(
                "{what} {} would overwrite the {input_what} {}",
                path.display(),
                input.display()
            );
        }
        seen.push((what, path, here));
    }
    Ok(())
}

/// `dir` exists, is a directory, and a file can be created in it (probed with a hidden file
/// that is removed at once).
pub fn check_writable_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("the output directory {} does not exist", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let probe = dir.join(format!(".sparsemap-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("cannot write to the output directory {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `stem` + `suffix` (e.g. `".png"`, `"_lambda.npy"`).
pub fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The Lambda maps of a slice, for `--save-maps`.
pub struct Maps<'a> {
    pub values: &'a [f32],
    pub count: usize,
    pub lambda_max: f32,
}

/// Writes the file set of one image next to `stem`: `.npy`, `.png`, `.nii`, `.json`, and
/// the maps if given. Returns the paths written.
pub fn write_image_files(
    stem: &Path,
    image: &Array2<Complex32>,
    provenance: &Provenance,
    maps: Option<Maps<'_>>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut out = |suffix: &str, write: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let path = with_suffix(stem, suffix);
        write_atomically(&path, write)?;
        written.push(path);
        Ok(())
    };
    out(".npy", &|p| write_npy(p, image))?;
    out(".json", &|p| write_sidecar(p, provenance))?;
    out(".nii", &|p| write_nifti(p, image, provenance))?;
    if let Some(maps) = maps {
        let (n_y, n_x) = image.dim();
        let view = ArrayView3::from_shape((maps.count, n_y, n_x), maps.values)
            .context("the Lambda maps are not [K, n_y, n_x]")?;
        out("_lambda.npy", &|p| write_npy(p, &view))?;
        out("_lambda.png", &|p| {
            write_maps_montage(
                p,
                maps.values,
                maps.count,
                n_y,
                n_x,
                maps.lambda_max,
                provenance,
            )
        })?;
    }
    // Last: it replaces the preview, so it appears when everything else is there.
    out(".png", &|p| write_png(p, image, provenance))?;
    Ok(written)
}

/// Stem of slice `slice` of scan `scan_id` in `dir`.
pub fn slice_stem(dir: &Path, scan_id: u32, slice: u16) -> PathBuf {
    dir.join(format!("scan{scan_id:05}_slice{slice:03}"))
}

/// Where the time of one slice went, seconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SliceTimes {
    /// First to last line of the slice.
    pub acquire: f64,
    /// Last line to the start of its reconstruction (settling, queue).
    pub assembly_wait: f64,
    pub prepare: f64,
    pub features: f64,
    pub network: f64,
    pub solve: f64,
    /// Writing the files.
    pub write: f64,
    /// All previews of the slice together (ingest thread, while it arrived).
    pub previews: f64,
}

/// The JSON line `serve` and `recon --input` print for every slice.
#[derive(Debug, Clone, Serialize)]
pub struct SliceRecord {
    pub scan: u32,
    pub slice: u16,
    /// The Lambda model (name and precision; with `--model auto`, the one it picked); absent
    /// with fixed sparsity levels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `ok`, or `error` with `error` saying why (the k-space is then saved).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub lines_received: u32,
    /// Received, missing and unusable (non-finite) lines.
    pub lines_expected: u32,
    /// Lines that never arrived intact (lost on the link or corrupted).
    pub missing: u32,
    pub duplicates: u32,
    pub corrupt: u32,
    pub reordered: u32,
    pub invalid_samples: u32,
    pub faults: u32,
    /// Bit `k` set: a fault of `FaultKind` variant `k` (wire crate order).
    pub fault_kinds: u16,
    /// Nothing more of the slice was due when it was reconstructed.
    pub complete: bool,
    pub completion: &'static str,
    pub times: SliceTimes,
    /// Threads the reconstruction ran on (`--threads`; the image does not depend on it).
    pub threads: usize,
    /// Previews written while the slice arrived.
    pub previews: u32,
    /// From the slice's last line to its files on disk, seconds.
    pub latency: f64,
    pub files: Vec<PathBuf>,
    /// The process's peak resident set size so far, MB.
    pub peak_rss_mb: f64,
    /// `"rss"` when several coils were reconstructed one by one and combined by
    /// root-sum-of-squares ([`reconstruct_rss`]); absent for one coil.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coil_combination: Option<String>,
    /// MRD input: the acquisitions of the file skipped by kind, and how the grid was formed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrd: Option<crate::mrd::MrdSliceInfo>,
}

/// Why a slice was completed, in words.
pub fn completion(closed_by: Option<ClosedBy>) -> &'static str {
    match closed_by {
        Some(ClosedBy::MovedPast) => "moved past",
        Some(ClosedBy::ScanEnd(EndStatus::Complete)) => "scan end",
        Some(ClosedBy::ScanEnd(EndStatus::Aborted)) => "scan aborted",
        Some(ClosedBy::Interrupted) => "interrupted",
        Some(ClosedBy::Timeout) => "timeout",
        Some(ClosedBy::SlotsFull) => "slots full",
        None => "open",
    }
}

/// Reconstructs completed slices and writes their files; plans once per grid.
pub struct Worker {
    spec: Arc<MethodSpec>,
    planned: Option<PlannedMethod>,
    out_dir: PathBuf,
    options: OutputOptions,
    dicom: Option<crate::dicom::DicomWriter>,
    /// Told the path of every DICOM file written (the PACS sender's queue).
    dicom_written: Option<std::sync::mpsc::Sender<PathBuf>>,
    coils: crate::multicoil::CoilSettings,
}

impl Worker {
    pub fn new(spec: Arc<MethodSpec>, out_dir: PathBuf, options: OutputOptions) -> Result<Self> {
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create the output directory {}", out_dir.display()))?;
        check_writable_dir(&out_dir)?;
        Ok(Self {
            spec,
            planned: None,
            out_dir,
            options,
            dicom: None,
            dicom_written: None,
            coils: crate::multicoil::CoilSettings::default(),
        })
    }

    /// How slices of several coils are reconstructed (default: together, with estimated
    /// sensitivities; DESIGN §3.4).
    pub fn with_coils(mut self, settings: crate::multicoil::CoilSettings) -> Self {
        self.coils = settings;
        self
    }

    /// Also write each slice as a DICOM MR image into `writer`'s directory (one series per
    /// scan), and tell `written` (if given) each file's path once it is complete.
    pub fn with_dicom(
        mut self,
        writer: crate::dicom::DicomWriter,
        written: Option<std::sync::mpsc::Sender<PathBuf>>,
    ) -> Self {
        self.dicom = Some(writer);
        self.dicom_written = written;
        self
    }

    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Plans for the scan's grid (the network's optimisation takes a moment), unless the
    /// current plan already fits. A grid that cannot be planned is reported per slice.
    pub fn on_scan(&mut self, start: &ScanStart) {
        let _ = self.plan(start);
    }

    fn plan(&mut self, start: &ScanStart) -> Result<&mut PlannedMethod> {
        if start.n_coils == 0 {
            bail!("scan {}: no receive coil", start.scan_id);
        }
        let shape = Shape::new(usize::from(start.n_y), usize::from(start.n_x))
            .with_context(|| format!("scan {}", start.scan_id))?;
        if self.planned.as_ref().map(|p| p.shape()) != Some(shape) {
            self.planned = None;
            self.planned = Some(self.spec.plan(shape)?);
        }
        Ok(self.planned.as_mut().expect("planned above"))
    }

    /// Reconstructs and writes one slice; never fails (an error is in the record).
    pub fn on_slice(&mut self, job: SliceJob) -> SliceRecord {
        self.on_slice_with_image(job).0
    }

    /// [`on_slice`](Self::on_slice), also returning the image written (none on error), for a
    /// server that sends it back (`serve --mrd`).
    pub fn on_slice_with_image(
        &mut self,
        job: SliceJob,
    ) -> (SliceRecord, Option<Array2<Complex32>>) {
        let started = Instant::now();
        let mut image = None;
        let stats = job.stats;
        let stem = slice_stem(&self.out_dir, job.start.scan_id, stats.slice);
        let mut record = SliceRecord {
            scan: stats.scan_id,
            slice: stats.slice,
            model: self.spec.model_name(),
            status: "ok",
            error: None,
            lines_received: stats.lines_received,
            lines_expected: stats.lines_received + stats.lines_missing + stats.invalid_samples,
            missing: stats.lines_missing,
            duplicates: stats.duplicates,
            corrupt: stats.corrupt,
            reordered: stats.reordered,
            invalid_samples: stats.invalid_samples,
            faults: stats.faults,
            fault_kinds: stats.fault_kinds.0,
            complete: stats.complete,
            completion: completion(stats.closed_by),
            times: SliceTimes {
                acquire: match (job.first_line, job.last_line) {
                    (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
                    _ => 0.0,
                },
                assembly_wait: job
                    .last_line
                    .map_or(0.0, |last| started.duration_since(last).as_secs_f64()),
                previews: job.preview_seconds,
                ..SliceTimes::default()
            },
            threads: self.spec.threads.count(),
            previews: job.previews,
            latency: 0.0,
            files: Vec::new(),
            peak_rss_mb: 0.0,
            coil_combination: None,
            mrd: job.mrd.as_deref().copied(),
        };
        match self.reconstruct_and_write(&job, &stem, &mut record) {
            Ok((files, written)) => {
                record.files = files;
                image = Some(written);
            }
            Err(error) => {
                record.status = "error";
                record.error = Some(format!("{error:#}"));
                match self.save_kspace(&job, &stem) {
                    Ok(files) => record.files = files,
                    Err(e) => {
                        record.error =
                            Some(format!("{error:#}; and saving its k-space failed: {e:#}"))
                    }
                }
            }
        }
        if let Some(last) = job.last_line {
            record.latency = last.elapsed().as_secs_f64();
        }
        record.peak_rss_mb = crate::memory::peak_rss_bytes().unwrap_or(0) as f64 / 1e6;
        (record, image)
    }

    fn reconstruct_and_write(
        &mut self,
        job: &SliceJob,
        stem: &Path,
        record: &mut SliceRecord,
    ) -> Result<(Vec<PathBuf>, Array2<Complex32>)> {
        let start = job.start;
        let save_maps = self.options.save_maps;
        let save_kspace = self.options.save_kspace;
        let coil_settings = self.coils.clone();
        let planned = self.plan(&start)?;
        let shape = planned.shape();
        let coils = usize::from(start.n_coils);
        let n = shape.len();
        if job.kspace.len() < coils * n || job.mask.len() < coils * n {
            bail!(
                "the slice holds {} samples, not {coils} coils of {}x{}",
                job.kspace.len(),
                shape.n_y(),
                shape.n_x()
            );
        }
        let mut image = Array2::<Complex32>::zeros((shape.n_y(), shape.n_x()));
        let (result, coil_combination, coil_report) = if coils == 1 {
            let result = planned.reconstruct(
                &job.kspace[..n],
                &mask_f32(&job.mask[..n]),
                image.as_slice_mut().expect("a new array is contiguous"),
            )?;
            (result, None, None)
        } else {
            let masks = mask_f32(&job.mask[..coils * n]);
            let input = crate::multicoil::CoilInput {
                coils,
                kspace: &job.kspace[..coils * n],
                masks: &masks,
                noise: job.noise.as_deref().map(Vec::as_slice),
                sensitivities: None,
            };
            let (result, combination, report) =
                crate::multicoil::reconstruct_slice(planned, &input, &coil_settings, &mut image)?;
            (result, Some(combination), report)
        };
        record.coil_combination = coil_combination.clone();
        let ReconTimes {
            prepare,
            features,
            network,
            solve,
        } = result.times;
        record.times.prepare = prepare;
        record.times.features = features;
        record.times.network = network;
        record.times.solve = solve;

        let write_started = Instant::now();
        let stats = job.stats;
        let acquisition = Acquisition {
            scan_id: start.scan_id,
            slice: stats.slice,
            n_slices: start.n_slices,
            n_coils: start.n_coils,
            field_mt: start.field_mt,
            fov_mm: start.fov_mm,
            kx_first: start.kx_first,
            kx_count: start.kx_count,
            lines_received: stats.lines_received,
            lines_missing: stats.lines_missing,
            duplicates: stats.duplicates,
            corrupt: stats.corrupt,
            reordered: stats.reordered,
            invalid_samples: stats.invalid_samples,
            faults: stats.faults,
            complete: stats.complete,
            completion: completion(stats.closed_by).to_string(),
            geometry: job.geometry,
            description: job.description.as_deref().cloned(),
            coil_combination,
            mrd: job.mrd.as_deref().copied(),
        };
        let voxel_mm = (start.fov_mm.iter().all(|v| v.is_finite() && *v > 0.0))
            .then(|| acquisition.voxel_mm(shape.n_y(), shape.n_x()));
        let mut provenance = provenance(planned, &result, Some(acquisition), voxel_mm);
        provenance.coils = coil_report;
        let maps = planned
            .lambda_maps()
            .filter(|_| save_maps)
            .map(|values| Maps {
                values,
                count: planned.spec().dictionary_size().0,
                lambda_max: planned.lambda_max(),
            });
        let mut files = write_image_files(stem, &image, &provenance, maps)?;
        if let Some(dicom) = &mut self.dicom {
            let name = stem
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let path = dicom.write_slice(&name, start.scan_id, stats.slice, &image, &provenance)?;
            if let Some(queue) = &self.dicom_written {
                // A sender that has stopped leaves the file in the queue for `sparsemap send`.
                let _ = queue.send(path.clone());
            }
            files.push(path);
        }
        if save_kspace {
            files.extend(self.save_kspace(job, stem)?);
        }
        record.times.write = write_started.elapsed().as_secs_f64();
        Ok((files, image))
    }

    /// The slice's k-space `[n_y, n_x]` (one coil) or `[coils, n_y, n_x]` and mask (uint8).
    fn save_kspace(&self, job: &SliceJob, stem: &Path) -> Result<Vec<PathBuf>> {
        let start = job.start;
        let (coils, n_y, n_x) = (
            usize::from(start.n_coils),
            usize::from(start.n_y),
            usize::from(start.n_x),
        );
        let n = coils * n_y * n_x;
        let mask: Vec<u8> = job.mask[..n].iter().map(|&m| u8::from(m)).collect();
        let kspace_path = with_suffix(stem, "_kspace.npy");
        let mask_path = with_suffix(stem, "_mask.npy");
        if coils == 1 {
            let k = ArrayView2::from_shape((n_y, n_x), &job.kspace[..n])?;
            let m = ArrayView2::from_shape((n_y, n_x), &mask[..])?;
            write_atomically(&kspace_path, |p| write_npy(p, &k))?;
            write_atomically(&mask_path, |p| write_npy(p, &m))?;
        } else {
            let k = ArrayView3::from_shape((coils, n_y, n_x), &job.kspace[..n])?;
            let m = ArrayView3::from_shape((coils, n_y, n_x), &mask[..])?;
            write_atomically(&kspace_path, |p| write_npy(p, &k))?;
            write_atomically(&mask_path, |p| write_npy(p, &m))?;
        }
        Ok(vec![kspace_path, mask_path])
    }
}

/// `1.0` where measured.
fn mask_f32(mask: &[bool]) -> Vec<f32> {
    mask.iter().map(|&m| f32::from(u8::from(m))).collect()
}

/// [`Acquisition::coil_combination`] of [`reconstruct_rss`].
pub const COIL_COMBINATION_RSS: &str = "rss";

/// Several coils until multi-coil reconstruction (DESIGN §3.4) lands: each coil's k-space
/// `[coils][n_y][n_x]` (with its own mask) is reconstructed as its own single-coil problem,
/// and `image` is their root-sum-of-squares `sqrt(sum_c |x_c|^2)` (real, zero phase).
///
/// Coils run from the last to coil 0, so the plan's Lambda maps (`--save-maps`) and the
/// returned result (levels, scale, Lipschitz constant, sampled fraction) are coil 0's; the
/// times are the sums over coils.
pub fn reconstruct_rss(
    planned: &mut PlannedMethod,
    kspace: &[Complex32],
    mask: &[bool],
    coils: usize,
    image: &mut Array2<Complex32>,
) -> Result<crate::method::SliceResult> {
    let n = planned.shape().len();
    let mut sum_of_squares = vec![0f32; n];
    let mut coil_image = vec![Complex32::default(); n];
    let mut times = ReconTimes::default();
    let mut first = None;
    for c in (0..coils).rev() {
        let result = planned
            .reconstruct(
                &kspace[c * n..(c + 1) * n],
                &mask_f32(&mask[c * n..(c + 1) * n]),
                &mut coil_image,
            )
            .with_context(|| format!("coil {c}"))?;
        for (acc, v) in sum_of_squares.iter_mut().zip(&coil_image) {
            *acc += v.norm_sqr();
        }
        times.prepare += result.times.prepare;
        times.features += result.times.features;
        times.network += result.times.network;
        times.solve += result.times.solve;
        first = Some(result);
    }
    for (out, &s) in image.iter_mut().zip(&sum_of_squares) {
        *out = Complex32::new(s.sqrt(), 0.0);
    }
    let mut result = first.context("no coil")?;
    result.times = times;
    Ok(result)
}

/// The provenance of an image reconstructed by `planned`.
/// Nothing in it depends on timing, so two runs on the same input write identical files.
pub fn provenance(
    planned: &PlannedMethod,
    result: &crate::method::SliceResult,
    acquisition: Option<Acquisition>,
    voxel_mm: Option<[f32; 2]>,
) -> Provenance {
    let spec = planned.spec();
    let (count, side) = spec.dictionary_size();
    let config = planned.config();
    Provenance {
        software: format!("sparsemap {}", env!("CARGO_PKG_VERSION")),
        model: spec.model_name(),
        dictionary: spec.dictionary_name.clone(),
        filters: count,
        filter_side: side,
        lambda: result.lambda.clone(),
        iterations: config.iterations,
        lowpass_weight: config.lowpass_weight,
        background_gate: config.background_gate,
        fft_backend: spec.backend.name().to_string(),
        scale_c: result.report.scale,
        lipschitz: result.report.lipschitz,
        sampled_fraction: result.report.sampled as f64 / planned.shape().len() as f64,
        nonzero_coefficients: result.report.nonzero_coefficients,
        acquisition,
        voxel_mm,
        orientation: ARRAY_ORIENTATION.to_string(),
        coils: None,
    }
}

/// Zero-filled magnitude previews of open slices (root sum of squares over coils), planned
/// once per grid.
#[derive(Default)]
pub struct Previewer {
    fft: Option<Fft2<RustFft<f32>>>,
    spectrum: Vec<Complex32>,
    image: Vec<Complex32>,
    scratch: Vec<Complex32>,
    sum_of_squares: Vec<f32>,
}

impl Previewer {
    /// Writes the preview PNG of the partial slice to `path`.
    pub fn write(
        &mut self,
        path: &Path,
        start: &ScanStart,
        lines: u32,
        kspace: &[Complex32],
        mask: &[bool],
    ) -> Result<()> {
        let shape = Shape::new(usize::from(start.n_y), usize::from(start.n_x))?;
        if self.fft.as_ref().map(|f| f.shape()) != Some(shape) {
            let fft = Fft2::new(RustFft::<f32>::new(shape));
            let op = CentredFourier { fft: &fft };
            self.scratch = vec![Complex32::default(); LinearOperator::<f32>::scratch_len(&op)];
            self.spectrum = vec![Complex32::default(); shape.len()];
            self.image = vec![Complex32::default(); shape.len()];
            self.sum_of_squares = vec![0.0; shape.len()];
            self.fft = Some(fft);
        }
        let fft = self.fft.as_ref().expect("planned above");
        let op = CentredFourier { fft };
        let n = shape.len();
        self.sum_of_squares.fill(0.0);
        for (coil, coil_mask) in kspace.chunks_exact(n).zip(mask.chunks_exact(n)) {
            for ((s, &k), &m) in self.spectrum.iter_mut().zip(coil).zip(coil_mask) {
                *s = if m { k } else { Complex32::default() };
            }
            op.adjoint(&self.spectrum, &mut self.image, &mut self.scratch);
            for (acc, v) in self.sum_of_squares.iter_mut().zip(&self.image) {
                *acc += v.norm_sqr();
            }
        }
        let magnitude = Array2::from_shape_fn((shape.n_y(), shape.n_x()), |(y, x)| {
            Complex32::new(self.sum_of_squares[y * shape.n_x() + x].sqrt(), 0.0)
        });
        let provenance = Provenance {
            software: format!("sparsemap {}", env!("CARGO_PKG_VERSION")),
            model: None,
            dictionary: String::new(),
            filters: 0,
            filter_side: 0,
            lambda: format!(
                "preview: zero-filled after {lines} lines of scan {} (the reconstruction replaces it)",
                start.scan_id
            ),
            iterations: 0,
            lowpass_weight: 0.0,
            background_gate: None,
            fft_backend: "rustfft".to_string(),
            scale_c: 1.0,
            lipschitz: 0.0,
            sampled_fraction: mask[..n].iter().filter(|&&m| m).count() as f64 / n as f64,
            nonzero_coefficients: 0,
            acquisition: None,
            voxel_mm: None,
            orientation: ARRAY_ORIENTATION.to_string(),
            coils: None,
        };
        write_atomically(path, |p| write_png(p, &magnitude, &provenance))
    }
}
