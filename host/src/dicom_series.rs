//! A DICOM series (a directory of single-frame image files, e.g. from a scanner's export) as a
//! [`Volume`], so `export --user NAME=DIR` builds splits from a user's own images.
//!
//! The files are grouped by Series Instance UID (a directory holding several series is an
//! error listing them: one directory per series), sorted along the slice normal (the cross
//! product of the Image Orientation (Patient) vectors) by Image Position (Patient), and their
//! stored values scaled by Rescale Slope/Intercept. The grid's voxel-to-world map comes from
//! the same attributes (DICOM's LPS turned into RAS), and [`Volume::from_world_grid`]
//! reorients it to RAS as the NIfTI reader does; a series tilted up to
//! [`MAX_OBLIQUE_OFF_AXIS`](crate::volume::MAX_OBLIQUE_OFF_AXIS) off the nearest axes is taken
//! as that axis, like the EPI source. Files that are not DICOM (no `DICM` at byte 128) and
//! `DICOMDIR` are skipped and counted.
//!
//! Checked, each an error naming the file and what is wrong: every element's declared length
//! within the file, before dicom-rs reads it (dicom-rs sizes buffers from declared lengths);
//! every image the same size,
//! orientation (within 1e-4) and pixel spacing; single frame, one sample per pixel, 8 or 16
//! bits; an uncompressed little-endian transfer syntax (a compressed series must be
//! decompressed first, e.g. `gdcmconv --raw`); no two images at one position; slice positions
//! evenly spaced (within 1 % of the median step) along the normal; at least two images; at
//! most [`MAX_FILES`] files of at most [`MAX_FILE_BYTES`] each; finite values.

use crate::volume::{Volume, MAX_OBLIQUE_OFF_AXIS, MAX_VOXELS};
use anyhow::{anyhow, bail, Context, Result};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Most files a series directory may hold.
pub const MAX_FILES: usize = 4096;
/// Largest file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Uncompressed little-endian transfer syntaxes: implicit and explicit VR.
const NATIVE_LITTLE_ENDIAN: [&str; 2] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"];

/// What was read of one image.
struct Image {
    path: PathBuf,
    series: String,
    rows: usize,
    columns: usize,
    orientation: [f64; 6],
    position: [f64; 3],
    spacing: [f64; 2],
    values: Vec<f32>,
}

/// The series in `dir` as a RAS volume, and the files it was made of (in slice order).
pub fn load(dir: &Path) -> Result<(Volume, Vec<PathBuf>)> {
    let shown = dir.display();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{shown}: cannot read the DICOM series directory"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{shown}: cannot read the DICOM series directory"))?;
    paths.retain(|p| p.is_file());
    paths.sort();
    if paths.len() > MAX_FILES {
        bail!("{shown}: {} files, more than the {MAX_FILES} a series may have", paths.len());
    }
    let mut images = Vec::new();
    let mut skipped = 0usize;
    let mut voxels = 0usize;
    for path in &paths {
        if path.file_name().is_some_and(|n| n == "DICOMDIR") || !has_dicom_magic(path)? {
            skipped += 1;
            continue;
        }
        let image = read_image(path).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
        voxels = voxels.saturating_add(image.values.len());
        if voxels > MAX_VOXELS {
            bail!("{shown}: more than {MAX_VOXELS} voxels in the series");
        }
        images.push(image);
    }
    if images.is_empty() {
        bail!("{shown}: no DICOM image file (of {} files)", paths.len());
    }
    let mut by_series: BTreeMap<&str, usize> = BTreeMap::new();
    for image in &images {
        *by_series.entry(image.series.as_str()).or_default() += 1;
    }
    if by_series.len() > 1 {
        let list: Vec<String> = by_series.iter().map(|(uid, n)| format!("{uid} ({n} files)")).collect();
        bail!(
            "{shown}: {} series in one directory ({}); give one directory per series",
            by_series.len(),
            list.join(", ")
        );
    }
    if images.len() < 2 {
        bail!("{shown}: one image is not a volume (a series needs at least two slices)");
    }
    let first = &images[0];
    for image in &images[1..] {
        let same_orientation = image
            .orientation
            .iter()
            .zip(&first.orientation)
            .all(|(a, b)| (a - b).abs() <= 1e-4);
        if (image.rows, image.columns) != (first.rows, first.columns)
            || !same_orientation
            || image.spacing != first.spacing
        {
            bail!(
                "{}: {}x{} pixels, orientation {:?}, spacing {:?} differ from {} ({}x{}, {:?}, {:?})",
                image.path.display(),
                image.rows,
                image.columns,
                image.orientation,
                image.spacing,
                first.path.display(),
                first.rows,
                first.columns,
                first.orientation,
                first.spacing
            );
        }
    }
    let (rows, columns, [row_spacing, column_spacing]) = (first.rows, first.columns, first.spacing);
    let row_dir = [first.orientation[0], first.orientation[1], first.orientation[2]];
    let column_dir = [first.orientation[3], first.orientation[4], first.orientation[5]];
    let normal = cross(row_dir, column_dir);
    let along = |p: [f64; 3]| dot(p, normal);
    images.sort_by(|a, b| along(a.position).total_cmp(&along(b.position)));
    let steps: Vec<f64> = images.windows(2).map(|w| along(w[1].position) - along(w[0].position)).collect();
    if let Some(at) = steps.iter().position(|&s| s.abs() < 1e-3) {
        bail!(
            "{} and {} are at the same position {:?}: two images of one slice",
            images[at].path.display(),
            images[at + 1].path.display(),
            images[at].position
        );
    }
    let mut sorted_steps = steps.clone();
    sorted_steps.sort_by(f64::total_cmp);
    let step = sorted_steps[sorted_steps.len() / 2];
    if let Some(at) = steps.iter().position(|&s| (s - step).abs() > 0.01 * step) {
        bail!(
            "{}: slice positions are not evenly spaced: {} mm to {} where the median step is {step} mm (a missing or extra slice?)",
            shown,
            steps[at],
            images[at + 1].path.display()
        );
    }
    let slices = images.len();
    // LPS -> RAS: negate x and y.
    let ras = |v: [f64; 3]| [-v[0], -v[1], v[2]];
    let slice_step = {
        let last = images[slices - 1].position;
        let first = images[0].position;
        std::array::from_fn(|a| (last[a] - first[a]) / (slices - 1) as f64)
    };
    let columns_ras = [
        ras(row_dir.map(|v| v * column_spacing)),
        ras(column_dir.map(|v| v * row_spacing)),
        ras(slice_step),
    ];
    let mut values = Vec::with_capacity(rows * columns * slices);
    for image in &images {
        values.extend_from_slice(&image.values);
    }
    let files: Vec<PathBuf> = images.iter().map(|i| i.path.clone()).collect();
    let volume = Volume::from_world_grid(
        [columns, rows, slices],
        columns_ras,
        ras(images[0].position),
        &values,
        MAX_OBLIQUE_OFF_AXIS,
        "DICOM geometry",
        dir,
    )?;
    if skipped > 0 {
        eprintln!("{shown}: {skipped} file(s) that are not DICOM images skipped");
    }
    Ok((volume, files))
}

fn has_dicom_magic(path: &Path) -> Result<bool> {
    let mut head = [0u8; 132];
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => return Ok(false),
            Ok(n) => read += n,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(&head[128..132] == b"DICM")
}

fn text(object: &DefaultDicomObject, tag: dicom_core::Tag, name: &str) -> Result<String> {
    Ok(object
        .element(tag)
        .map_err(|_| anyhow!("no {name}"))?
        .to_str()
        .map_err(|e| anyhow!("{name}: {e}"))?
        .trim_end_matches(['\0', ' '])
        .to_string())
}

fn floats<const N: usize>(object: &DefaultDicomObject, tag: dicom_core::Tag, name: &str) -> Result<[f64; N]> {
    let values: Vec<f64> = object
        .element(tag)
        .map_err(|_| anyhow!("no {name}"))?
        .to_multi_float64()
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let array: [f64; N] = values
        .try_into()
        .map_err(|v: Vec<f64>| anyhow!("{name} has {} values, {N} expected", v.len()))?;
    if !array.iter().all(|v| v.is_finite()) {
        bail!("{name} {array:?} is not finite");
    }
    Ok(array)
}

fn int(object: &DefaultDicomObject, tag: dicom_core::Tag, name: &str) -> Result<usize> {
    object
        .element(tag)
        .map_err(|_| anyhow!("no {name}"))?
        .to_int::<usize>()
        .map_err(|e| anyhow!("{name}: {e}"))
}

fn optional_float(object: &DefaultDicomObject, tag: dicom_core::Tag, name: &str, default: f64) -> Result<f64> {
    match object.element(tag) {
        Ok(e) => {
            let v = e.to_float64().map_err(|err| anyhow!("{name}: {err}"))?;
            if v.is_finite() {
                Ok(v)
            } else {
                bail!("{name} {v} is not finite")
            }
        }
        Err(_) => Ok(default),
    }
}

/// Deepest nesting of sequences [`check_lengths`] follows.
const MAX_NESTING: usize = 16;
const UNDEFINED_LENGTH: u32 = u32::MAX;

/// Walks the data elements of a DICOM file (preamble and `DICM` at 0..132, the meta group in
/// explicit VR little endian, then the data set in the transfer syntax the meta group names)
/// and checks that every declared length fits in the bytes that follow, before dicom-rs
/// reads it: dicom-rs sizes its buffer from the declared length, so a 4-byte length of
/// 0xEEEEEEEE in a 400-byte file made it allocate 4 GB (found by fuzz/ `dicom_series`).
/// Returns the transfer syntax UID.
fn check_lengths(bytes: &[u8]) -> Result<String> {
    let mut pos = 132;
    // The meta group: explicit VR LE, group 0002.
    let mut syntax = None;
    while pos + 8 <= bytes.len() && u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002 {
        let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let (header, length) = element_header(bytes, pos, true)?;
        let value = pos + header;
        let length = length as usize;
        if length == UNDEFINED_LENGTH as usize || value + length > bytes.len() {
            bail!("file meta element (0002,{element:04X}) declares {length} bytes, {} remain", bytes.len().saturating_sub(value));
        }
        if element == 0x0010 {
            let text = String::from_utf8_lossy(&bytes[value..value + length]);
            syntax = Some(text.trim_end_matches(['\0', ' ']).to_string());
        }
        pos = value + length;
    }
    let syntax = syntax.context("no Transfer Syntax UID (0002,0010) in the file meta information")?;
    if !NATIVE_LITTLE_ENDIAN.contains(&syntax.as_str()) {
        bail!(
            "transfer syntax {syntax} is not uncompressed little endian; decompress the series first (e.g. gdcmconv --raw)"
        );
    }
    let explicit = syntax == NATIVE_LITTLE_ENDIAN[1];
    walk(bytes, pos, bytes.len(), explicit, 0)?;
    Ok(syntax)
}

/// The header size and declared length of the element at `pos`.
fn element_header(bytes: &[u8], pos: usize, explicit: bool) -> Result<(usize, u32)> {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if pos + 8 > bytes.len() {
        bail!("the file ends inside an element header at byte {pos}");
    }
    let group = u16_at(pos);
    if group == 0xFFFE || !explicit {
        return Ok((8, u32_at(pos + 4)));
    }
    let vr = [bytes[pos + 4], bytes[pos + 5]];
    // The value representations of PS3.5 6.2: dicom-rs reads an unknown one with a 4-byte
    // length taken from wherever it falls (a fuzzed "DX" made it allocate 4 GB).
    const KNOWN: [&[u8; 2]; 34] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
        b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
        b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
    ];
    if !KNOWN.contains(&&vr) {
        bail!(
            "element ({group:04X},{:04X}) at byte {pos} has no valid value representation",
            u16_at(pos + 2)
        );
    }
    if matches!(
        &vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    ) {
        if pos + 12 > bytes.len() {
            bail!("the file ends inside an element header at byte {pos}");
        }
        Ok((12, u32_at(pos + 8)))
    } else {
        Ok((8, u32::from(u16_at(pos + 6))))
    }
}

/// Walks the elements in `bytes[pos..end]`; an undefined length (sequence, item or
/// encapsulated data) is followed to its delimiter. Returns where the walk stopped (`end`,
/// or after the delimiter that closed this level).
fn walk(bytes: &[u8], mut pos: usize, end: usize, explicit: bool, depth: usize) -> Result<usize> {
    if depth > MAX_NESTING {
        bail!("sequences nested more than {MAX_NESTING} deep");
    }
    while pos < end {
        let group = u16::from_le_bytes([bytes[pos], *bytes.get(pos + 1).unwrap_or(&0)]);
        let (header, length) = element_header(bytes, pos, explicit)?;
        let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        pos += header;
        if group == 0xFFFE && matches!(element, 0xE00D | 0xE0DD) {
            return Ok(pos);
        }
        if length == UNDEFINED_LENGTH {
            pos = walk(bytes, pos, end, explicit, depth + 1)?;
            continue;
        }
        let length = length as usize;
        if pos + length > end {
            bail!(
                "element ({group:04X},{element:04X}) declares {length} bytes, only {} remain",
                end - pos
            );
        }
        // A sequence or item of defined length holds elements too: their lengths must fit in
        // it (dicom-rs parses them). In implicit VR a sequence is known by its tag.
        let is_sequence = if explicit {
            group != 0xFFFE && &bytes[pos - header + 4..pos - header + 6] == b"SQ"
        } else {
            is_sequence_tag(group, element)
        };
        if (group == 0xFFFE && element == 0xE000) || is_sequence {
            walk(bytes, pos, pos + length, explicit, depth + 1)?;
        }
        pos += length;
    }
    Ok(pos)
}

/// Whether the standard dictionary says `(group,element)` is a sequence.
fn is_sequence_tag(group: u16, element: u16) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, element))
        .is_some_and(|entry| matches!(entry.vr(), dicom_core::dictionary::VirtualVr::Exact(dicom_core::VR::SQ)))
}

fn read_image(path: &Path) -> Result<Image> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_FILE_BYTES {
        bail!("{size} bytes, more than the {MAX_FILE_BYTES} an image file may have");
    }
    let bytes = std::fs::read(path)?;
    check_lengths(&bytes)?;
    let object = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| anyhow!("not a readable DICOM file: {e}"))?;
    let syntax = object.meta().transfer_syntax().trim_end_matches('\0').to_string();
    if !NATIVE_LITTLE_ENDIAN.contains(&syntax.as_str()) {
        bail!(
            "transfer syntax {syntax} is not uncompressed little endian; decompress the series first (e.g. gdcmconv --raw)"
        );
    }
    let frames = object
        .element(tags::NUMBER_OF_FRAMES)
        .ok()
        .and_then(|e| e.to_int::<usize>().ok())
        .unwrap_or(1);
    if frames != 1 {
        bail!("{frames} frames: multi-frame (enhanced) images are not supported");
    }
    let rows = int(&object, tags::ROWS, "Rows")?;
    let columns = int(&object, tags::COLUMNS, "Columns")?;
    if rows == 0 || columns == 0 || rows > 4096 || columns > 4096 {
        bail!("{rows}x{columns} pixels: each side must be 1..=4096");
    }
    if int(&object, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")? != 1 {
        bail!("not a grey-scale image (Samples per Pixel != 1)");
    }
    let bits = int(&object, tags::BITS_ALLOCATED, "Bits Allocated")?;
    let signed = int(&object, tags::PIXEL_REPRESENTATION, "Pixel Representation")? == 1;
    let slope = optional_float(&object, tags::RESCALE_SLOPE, "Rescale Slope", 1.0)?;
    let intercept = optional_float(&object, tags::RESCALE_INTERCEPT, "Rescale Intercept", 0.0)?;
    let bytes = object
        .element(tags::PIXEL_DATA)
        .map_err(|_| anyhow!("no Pixel Data"))?
        .to_bytes()
        .map_err(|e| anyhow!("Pixel Data: {e}"))?;
    let n = rows * columns;
    let need = n * bits / 8;
    if !matches!(bits, 8 | 16) {
        bail!("{bits} bits allocated: only 8 and 16 are supported");
    }
    if bytes.len() < need {
        bail!("Pixel Data has {} bytes, {rows}x{columns} at {bits} bits need {need}", bytes.len());
    }
    let raw: Box<dyn Fn(usize) -> f64> = match (bits, signed) {
        (8, false) => Box::new(|i| f64::from(bytes[i])),
        (8, true) => Box::new(|i| f64::from(bytes[i] as i8)),
        (16, false) => Box::new(|i| f64::from(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]))),
        _ => Box::new(|i| f64::from(i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]))),
    };
    let values = (0..n).map(|i| (raw(i) * slope + intercept) as f32).collect();
    Ok(Image {
        path: path.to_path_buf(),
        series: text(&object, tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
        rows,
        columns,
        orientation: floats(&object, tags::IMAGE_ORIENTATION_PATIENT, "Image Orientation (Patient)")?,
        position: floats(&object, tags::IMAGE_POSITION_PATIENT, "Image Position (Patient)")?,
        spacing: floats(&object, tags::PIXEL_SPACING, "Pixel Spacing")?,
        values,
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}
