//! Output files (DESIGN §6): complex `.npy`, windowed 8-bit magnitude PNG, NIfTI-1 `.nii`
//! magnitude, a PNG montage of Lambda maps, and a JSON sidecar that records what made the
//! image.
//!
//! Every file carries its [`Provenance`]: the sidecar in full, PNGs as a one-line
//! [`Provenance::summary`] in `tEXt`, NIfTI as a short `descrip` plus the full JSON in a
//! header extension.

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Axis};
use ndarray_npy::WriteNpyExt;
use nifti::writer::WriterOptions;
use nifti::{Extender, Extension, ExtensionSequence, NiftiHeader, Unit};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Percentile of the magnitude mapped to white in PNG output; brighter pixels saturate.
/// Just below the maximum so that a few hot pixels do not darken the whole image.
pub const PNG_WHITE_PERCENTILE: f64 = 0.999;

/// What the axes of every image array (`.npy`, PNG rows/columns, NIfTI `i`/`j`) are; the
/// default of [`Provenance::orientation`].
pub const ARRAY_ORIENTATION: &str = "rows = phase-encode y, columns = readout x \
(row-major [n_y][n_x]; in NIfTI i = readout x, j = phase-encode y); image of the centred \
k-space convention of docs/design.md §3.1 (DC at [n_y/2][n_x/2]); no patient orientation known";

/// NIfTI extension code of the provenance JSON: `NIFTI_ECODE_COMMENT` (ASCII text). The JSON
/// is escaped to ASCII and padded with NULs to a multiple of 16 bytes.
pub const NIFTI_ECODE_COMMENT: i32 = 6;

/// Gray level of the 2-pixel lines between the tiles of a Lambda-map montage.
pub const MONTAGE_SEPARATOR_GRAY: u8 = 255;
/// Width of the lines between montage tiles, pixels.
pub const MONTAGE_SEPARATOR: usize = 2;

/// Per-slice facts of a streamed acquisition (DESIGN §5): what the scanner announced in
/// `ScanStart` and what the edge actually received for this slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acquisition {
    pub scan_id: u32,
    /// Slice index, 0-based.
    pub slice: u16,
    pub n_slices: u16,
    pub n_coils: u8,
    pub field_mt: f32,
    /// Field of view `[y, x]`, mm.
    pub fov_mm: [f32; 2],
    /// First k-space column (readout sample) received and their count.
    pub kx_first: u16,
    pub kx_count: u16,
    pub lines_received: u32,
    pub lines_missing: u32,
    pub duplicates: u32,
    pub corrupt: u32,
    pub reordered: u32,
    pub invalid_samples: u32,
    pub faults: u32,
    pub complete: bool,
    /// Why the slice was considered complete (or given up), in words.
    pub completion: String,
    /// Where the slice lies in the patient, when the input says (MRD; the wire stream does
    /// not carry it).
    #[serde(default)]
    pub geometry: Option<SliceGeometry>,
    /// Who and what was scanned, when the input says (MRD header).
    #[serde(default)]
    pub description: Option<ScanDescription>,
    /// How the coils' images were combined: `"rss"` (each coil reconstructed as its own
    /// single-coil problem, then root-sum-of-squares: a magnitude image with zero phase);
    /// `None` for one coil.
    #[serde(default)]
    pub coil_combination: Option<String>,
    /// What an MRD file skipped (noise, navigator, phase-correction scans, ...) and how the
    /// slice's grid was formed; `None` for the wire stream.
    #[serde(default)]
    pub mrd: Option<crate::mrd::MrdSliceInfo>,
}

/// A slice's place in the patient, in DICOM patient coordinates (LPS, mm), as ISMRMRD
/// acquisition headers give it (`position`, `read_dir`, `phase_dir`, `slice_dir`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SliceGeometry {
    /// Centre of the slice (of the field of view), mm.
    pub centre_mm: [f32; 3],
    /// Unit direction of increasing array column (x, readout).
    pub read_dir: [f32; 3],
    /// Unit direction of increasing array row (y, phase encode).
    pub phase_dir: [f32; 3],
    /// Unit slice normal.
    pub slice_dir: [f32; 3],
    /// Slice thickness, mm.
    pub thickness_mm: f32,
}

/// What the scan's header says about the patient, study and series (each part optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanDescription {
    #[serde(default)]
    pub patient_name: Option<String>,
    #[serde(default)]
    pub patient_id: Option<String>,
    #[serde(default)]
    pub patient_birth_date: Option<String>,
    #[serde(default)]
    pub patient_sex: Option<String>,
    #[serde(default)]
    pub study_instance_uid: Option<String>,
    #[serde(default)]
    pub study_description: Option<String>,
    #[serde(default)]
    pub series_description: Option<String>,
    #[serde(default)]
    pub protocol_name: Option<String>,
    /// DICOM Patient Position (e.g. `HFS`).
    #[serde(default)]
    pub patient_position: Option<String>,
    #[serde(default)]
    pub institution_name: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Repetition and echo time, ms.
    #[serde(default)]
    pub tr_ms: Option<f32>,
    #[serde(default)]
    pub te_ms: Option<f32>,
    /// Flip angle, degrees.
    #[serde(default)]
    pub flip_angle_deg: Option<f32>,
}

impl Acquisition {
    /// Voxel size `[y, x]` in mm for an `n_y x n_x` image of this field of view.
    pub fn voxel_mm(&self, n_y: usize, n_x: usize) -> [f32; 2] {
        [self.fov_mm[0] / n_y as f32, self.fov_mm[1] / n_x as f32]
    }
}

fn default_orientation() -> String {
    ARRAY_ORIENTATION.to_string()
}

/// Everything needed to say how an image was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub software: String,
    /// Lambda model (name or path, and precision); `None` for fixed sparsity levels.
    #[serde(default)]
    pub model: Option<String>,
    pub dictionary: String,
    pub filters: usize,
    pub filter_side: usize,
    pub lambda: String,
    /// T, the FISTA iteration count.
    pub iterations: usize,
    /// a, the low-pass weight.
    pub lowpass_weight: f32,
    /// kappa of the background gate (DESIGN §3.7 item 7); `None`: not gated.
    #[serde(default)]
    pub background_gate: Option<f32>,
    pub fft_backend: String,
    pub scale_c: f32,
    pub lipschitz: f32,
    pub sampled_fraction: f64,
    pub nonzero_coefficients: usize,
    /// The stream this slice came from; `None` for `.npy` input.
    #[serde(default)]
    pub acquisition: Option<Acquisition>,
    /// Voxel size `[y, x]` in mm (field of view / matrix size), when known.
    #[serde(default)]
    pub voxel_mm: Option<[f32; 2]>,
    /// What the array axes are, in words ([`ARRAY_ORIENTATION`]).
    #[serde(default = "default_orientation")]
    pub orientation: String,
    /// The multi-coil processing (prewhitening, compression, sensitivities) when several
    /// coils were reconstructed together (DESIGN §3.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coils: Option<crate::multicoil::CoilReport>,
}

impl Provenance {
    /// One line for PNG `tEXt` `Comment`: software, model, dictionary, lambda, T, a, and the
    /// acquisition counts when the slice came from a stream.
    pub fn summary(&self) -> String {
        let model = match &self.model {
            Some(model) => format!("model {model}"),
            None => "no model (fixed lambda)".to_string(),
        };
        let mut text = format!(
            "{}; {model}; dictionary {} (K={}, {}x{}); lambda {}; {} iterations (T); low-pass weight a={}",
            self.software,
            self.dictionary,
            self.filters,
            self.filter_side,
            self.filter_side,
            self.lambda,
            self.iterations,
            self.lowpass_weight
        );
        if let Some([y, x]) = self.voxel_mm {
            text += &format!("; voxel {y}x{x} mm (y x)");
        }
        if let Some(a) = &self.acquisition {
            text += &format!(
                "; scan {} slice {} of {} (0-based), {} coil(s), {} mT, FOV {}x{} mm, kx {}+{}: \
                 {} lines received, {} missing, {} duplicates, {} corrupt, {} reordered, \
                 {} invalid samples, {} faults; {} ({})",
                a.scan_id,
                a.slice,
                a.n_slices,
                a.n_coils,
                a.field_mt,
                a.fov_mm[0],
                a.fov_mm[1],
                a.kx_first,
                a.kx_count,
                a.lines_received,
                a.lines_missing,
                a.duplicates,
                a.corrupt,
                a.reordered,
                a.invalid_samples,
                a.faults,
                if a.complete { "complete" } else { "incomplete" },
                a.completion
            );
        }
        text
    }
}

/// `<path>.json` next to `path` (extension replaced).
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Any `.npy`-writable array (the complex image, the Lambda maps), errors naming the file.
pub fn write_npy<A: WriteNpyExt>(path: &Path, array: &A) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    array
        .write_npy(BufWriter::new(file))
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn write_sidecar(path: &Path, provenance: &Provenance) -> Result<()> {
    let json = serde_json::to_string_pretty(provenance)?;
    std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// The display white level of a magnitude image: its [`PNG_WHITE_PERCENTILE`] (0 if empty).
fn white_level(magnitudes: &[f32]) -> f32 {
    sparsemap_core::recon::percentile(&mut magnitudes.to_vec(), PNG_WHITE_PERCENTILE).unwrap_or(0.0)
}

/// Maps `[0, white]` linearly to `0..=255`, saturating; everything maps to 0 if `white <= 0`.
fn to_gray8(values: impl Iterator<Item = f32>, white: f32) -> Vec<u8> {
    let gain = if white > 0.0 { 255.0 / white } else { 0.0 };
    // NaN saturates to 0 in the cast.
    values
        .map(|v| (v * gain).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// The one PNG encoder of this module: 8-bit grayscale `width x height` `pixels` (row-major),
/// each `(keyword, text)` as `tEXt` if ASCII, else as UTF-8 `iTXt`. Errors name `path`.
fn write_gray8_png(
    path: &Path,
    width: usize,
    height: usize,
    pixels: &[u8],
    text: &[(&str, String)],
) -> Result<()> {
    debug_assert_eq!(pixels.len(), width * height);
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
        bail!(
            "{}: a {width}x{height} image is too large for PNG",
            path.display()
        );
    };
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    for (keyword, value) in text {
        // tEXt is Latin-1, which readers often take for ASCII or UTF-8: anything beyond
        // ASCII (a path in Cyrillic, say) goes in a UTF-8 iTXt chunk.
        if value.is_ascii() {
            encoder.add_text_chunk(keyword.to_string(), value.clone())?;
        } else {
            encoder.add_itxt_chunk(keyword.to_string(), value.clone())?;
        }
    }
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .write_image_data(pixels)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn provenance_text(provenance: &Provenance) -> Vec<(&'static str, String)> {
    vec![
        ("Software", provenance.software.clone()),
        ("Comment", provenance.summary()),
    ]
}

/// 8-bit greyscale magnitude PNG, window `[0, p99.9(|x|)]`, with the provenance in `tEXt`.
pub fn write_png(path: &Path, image: &Array2<Complex32>, provenance: &Provenance) -> Result<()> {
    let (n_y, n_x) = image.dim();
    let magnitudes: Vec<f32> = image.iter().map(|v| v.norm()).collect();
    let pixels = to_gray8(magnitudes.iter().copied(), white_level(&magnitudes));
    write_gray8_png(path, n_x, n_y, &pixels, &provenance_text(provenance))
}

/// The filters a montage of `count` Lambda maps shows: `0, K/4, K/2, 3K/4` when `K >= 4`,
/// else all of them.
pub fn montage_filters(count: usize) -> Vec<usize> {
    if count >= 4 {
        vec![0, count / 4, count / 2, 3 * count / 4]
    } else {
        (0..count).collect()
    }
}

/// 8-bit PNG montage of the Lambda maps of [`montage_filters`]`(count)`: a 2x2 grid for four
/// filters (left to right, then top to bottom), one row for fewer, tiles separated by
/// [`MONTAGE_SEPARATOR`]-pixel lines of [`MONTAGE_SEPARATOR_GRAY`]. Every tile is windowed to
/// `[0, lambda_max]` (black to white, saturating). `maps` is `[count][n_y][n_x]` row-major.
/// `tEXt`: `Software`, `Comment` (the provenance summary) and `Description` (which filters).
pub fn write_maps_montage(
    path: &Path,
    maps: &[f32],
    count: usize,
    n_y: usize,
    n_x: usize,
    lambda_max: f32,
    provenance: &Provenance,
) -> Result<()> {
    if count == 0 || n_y == 0 || n_x == 0 {
        bail!(
            "{}: no Lambda maps to show ({count} maps of {n_y}x{n_x})",
            path.display()
        );
    }
    if maps.len() != count * n_y * n_x {
        bail!(
            "{}: {} Lambda values, but {count} maps of {n_y}x{n_x} need {}",
            path.display(),
            maps.len(),
            count * n_y * n_x
        );
    }
    if !(lambda_max.is_finite() && lambda_max > 0.0) {
        bail!(
            "{}: the Lambda window maximum must be finite and > 0, not {lambda_max}",
            path.display()
        );
    }
    let shown = montage_filters(count);
    let (cols, rows) = if shown.len() == 4 {
        (2, 2)
    } else {
        (shown.len(), 1)
    };
    let width = cols * n_x + (cols - 1) * MONTAGE_SEPARATOR;
    let height = rows * n_y + (rows - 1) * MONTAGE_SEPARATOR;
    let mut pixels = vec![MONTAGE_SEPARATOR_GRAY; width * height];
    for (tile, &k) in shown.iter().enumerate() {
        let (row, col) = (tile / cols, tile % cols);
        let top = row * (n_y + MONTAGE_SEPARATOR);
        let left = col * (n_x + MONTAGE_SEPARATOR);
        let map = &maps[k * n_y * n_x..(k + 1) * n_y * n_x];
        for (y, line) in map.chunks_exact(n_x).enumerate() {
            let start = (top + y) * width + left;
            pixels[start..start + n_x].copy_from_slice(&to_gray8(line.iter().copied(), lambda_max));
        }
    }
    let list = shown
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let description = format!(
        "Lambda maps (scaled-problem units) of filters k = {list} of K = {count}, {cols}x{rows} \
         tiles of {n_x}x{n_y} (columns x rows), left to right then top to bottom, \
         {MONTAGE_SEPARATOR}-pixel separators of gray {MONTAGE_SEPARATOR_GRAY}; window \
         [0, {lambda_max}] black to white"
    );
    let mut text = provenance_text(provenance);
    text.push(("Description", description));
    write_gray8_png(path, width, height, &pixels, &text)
}

/// [`Provenance::model`] of a Lambda model: its name (or path) and precision, e.g.
/// `default.int8 (bundled, ...) [int8]`.
pub fn model_label(name: &str, precision: &str) -> String {
    if precision.is_empty() {
        format!("{name} [precision not stated]")
    } else {
        format!("{name} [{precision}]")
    }
}

/// The part of a model or dictionary description worth 80 characters: the file stem of the
/// text before any " (" or " [" (e.g. `default.int8` of `default.int8 (bundled, ...)`).
fn short_name(text: &str) -> String {
    let end = [" (", " ["]
        .iter()
        .filter_map(|sep| text.find(sep))
        .min()
        .unwrap_or(text.len());
    let head = text[..end].trim();
    let name = Path::new(head)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| head.to_string());
    name.strip_suffix(".onnx")
        .or_else(|| name.strip_suffix(".npy"))
        .unwrap_or(&name)
        .to_string()
}

/// `text` cut to at most `max` characters, the cut marked by a trailing `~`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('~');
        cut
    }
}

/// Orientation statement of the NIfTI `descrip`.
const NIFTI_ORIENTATION: &str = "i=x j=y, no orientation";

/// The NIfTI `descrip` (at most 80 ASCII bytes): software, T, a, model (or the fixed lambda),
/// dictionary and [`NIFTI_ORIENTATION`]; model and dictionary names are shortened to fit.
pub fn nifti_description(provenance: &Provenance) -> String {
    const MAX: usize = 80;
    let model = match &provenance.model {
        Some(model) => short_name(model),
        None => format!("lambda {}", short_name(&provenance.lambda)),
    };
    let dictionary = short_name(&provenance.dictionary);
    let ascii = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    };
    let fixed = format!(
        "{} T={} a={} ",
        ascii(&provenance.software),
        provenance.iterations,
        provenance.lowpass_weight
    );
    let (model, dictionary) = (ascii(&model), ascii(&dictionary));
    let compose = |m: &str, d: &str| format!("{fixed}{m} D={d}; {NIFTI_ORIENTATION}");
    let mut text = compose(&model, &dictionary);
    if text.len() > MAX {
        // Share what is left between the two names.
        let budget = MAX.saturating_sub(compose("", "").len());
        let model_budget = (budget / 2).max(budget.saturating_sub(dictionary.len()));
        let model = truncate(&model, model_budget);
        let dictionary = truncate(&dictionary, budget.saturating_sub(model.len()));
        text = compose(&model, &dictionary);
    }
    truncate(&text, MAX)
}

/// JSON with every non-ASCII character written as a `\uXXXX` escape (valid JSON, since
/// serde_json emits non-ASCII characters only inside strings).
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out += &format!("\\u{unit:04x}");
            }
        }
    }
    out
}

/// NIfTI-1 single file (`.nii`, or gzip-compressed `.nii.gz`) of `|image|` as float32.
///
/// * dims `[n_x, n_y, 1]`: `i` = readout x (fastest, as in the row-major `[n_y][n_x]` array),
///   `j` = phase-encode y, one slice;
/// * `pixdim` = `provenance.voxel_mm` (`[y, x]`, so `pixdim[1]` = x, `pixdim[2]` = y) or
///   1.0, slice thickness unknown (1.0), `xyzt_units` = mm;
/// * `qform_code = sform_code = 0`: no patient orientation is known (the wire format carries
///   none), so no affine is claimed; readers fall back to `pixdim` scaling of (i, j, k);
/// * `cal_min`/`cal_max` = the PNG window `[0, p99.9]`;
/// * `descrip` = [`nifti_description`], and the full provenance JSON in a
///   [`NIFTI_ECODE_COMMENT`] extension.
///
/// Errors name the file.
pub fn write_nifti(path: &Path, image: &Array2<Complex32>, provenance: &Provenance) -> Result<()> {
    let name = path.to_string_lossy();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        bail!(
            "{}: a NIfTI output must end in .nii (or .nii.gz)",
            path.display()
        );
    }
    let (n_y, n_x) = image.dim();
    let max_dim = i16::MAX as usize;
    if n_y == 0 || n_x == 0 || n_y > max_dim || n_x > max_dim {
        bail!(
            "{}: cannot store a {n_y}x{n_x} image in NIfTI-1",
            path.display()
        );
    }
    let [voxel_y, voxel_x] = provenance.voxel_mm.unwrap_or([1.0, 1.0]);
    if !(voxel_y.is_finite() && voxel_y > 0.0 && voxel_x.is_finite() && voxel_x > 0.0) {
        bail!(
            "{}: voxel size {voxel_y}x{voxel_x} mm must be finite and > 0",
            path.display()
        );
    }
    // [x][y][1]: the writer stores its argument with the first axis fastest.
    let magnitude = image.t().mapv(|v| v.norm()).insert_axis(Axis(2));
    let white = white_level(&image.iter().map(|v| v.norm()).collect::<Vec<_>>());

    let mut header = NiftiHeader {
        pixdim: [1.0, voxel_x, voxel_y, 1.0, 1.0, 1.0, 1.0, 1.0],
        xyzt_units: Unit::Mm as u8,
        cal_min: 0.0,
        cal_max: white,
        qform_code: 0,
        sform_code: 0,
        srow_x: [0.0; 4],
        srow_y: [0.0; 4],
        srow_z: [0.0; 4],
        ..NiftiHeader::default()
    };
    let mut intent_name = [0u8; 16];
    intent_name[..9].copy_from_slice(b"magnitude");
    header.intent_name = intent_name;
    header
        .set_description_str(nifti_description(provenance))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let json = ascii_json(&serde_json::to_string_pretty(provenance)?);
    let extensions = ExtensionSequence::new(
        Extender::from([1, 0, 0, 0]),
        vec![Extension::from_str(NIFTI_ECODE_COMMENT, &json)],
    );
    WriterOptions::new(path)
        .reference_header(&header)
        .with_extensions(extensions)
        .write_nifti(&magnitude)
        .with_context(|| format!("cannot write {}", path.display()))
}
