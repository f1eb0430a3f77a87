//! DICOM output (DESIGN §6): one MR Image Storage instance per reconstructed slice.
//!
//! A scan becomes one series: its Study, Series and Frame of Reference UIDs are made when the
//! scan's first slice is written and reused for every later slice of it (new UIDs per
//! series, stable within it). UIDs are random under the `2.25` root (a UUID as a decimal
//! integer, ISO/IEC 9834-8), so no registered organisation root is needed; an MRD header's
//! Study Instance UID is kept.
//!
//! Pixels are the magnitude as 16-bit unsigned integers with a per-slice Rescale Slope
//! (`stored * slope` = magnitude, error at most `slope / 2`, `slope` = max / 65535), so the
//! physical scale of the reconstruction survives. Window centre and width cover 0 to the
//! 99.5th percentile. Geometry (Image Position/Orientation (Patient), Pixel Spacing, Slice
//! Thickness) comes from the input when it says (MRD); otherwise the slice is written axial
//! at the origin with the wire stream's voxel size (or 1 mm), and Image Comments say the
//! geometry is nominal. The reconstruction parameters (software, model, dictionary, T, a,
//! gate, acquisition counts) are in Image Comments and, as the full JSON sidecar, in the
//! private element (0029,xx10) of the block `SPARSEMAP 1`.

use crate::output::{Provenance, SliceGeometry};
use anyhow::{bail, Context, Result};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};
use ndarray::Array2;
use num_complex::Complex32;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// SOP Class of every instance written.
pub const MR_IMAGE_STORAGE: &str = uids::MR_IMAGE_STORAGE;
/// Transfer syntax of the files (uncompressed, so any PACS takes them).
pub const FILE_TRANSFER_SYNTAX: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;
/// Private creator of the block holding the provenance JSON.
pub const PRIVATE_CREATOR: &str = "SPARSEMAP 1";
/// Group and block of the private elements: (0029,0010) names the creator, (0029,1010)
/// holds the provenance JSON (UT).
pub const PRIVATE_GROUP: u16 = 0x0029;
pub const PRIVATE_PROVENANCE_ELEMENT: u16 = 0x1010;
/// Our Implementation Class UID (file meta information), under 2.25 like every UID we make.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.183373093613870745542950413125512356425";
/// Longest Image Comments (LT) value.
const MAX_LT_CHARS: usize = 10240;

/// A new UID: `2.25.` followed by 128 random bits as a decimal integer (at most 44 chars).
pub fn new_uid() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source for a UID: {e}"))?;
    // RFC 4122 version 4 / variant bits, as ISO/IEC 9834-8 derives UIDs from UUIDs.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(format!("2.25.{}", u128::from_be_bytes(bytes)))
}

/// The identifiers shared by the instances of one series.
#[derive(Debug, Clone)]
pub struct SeriesIds {
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference_uid: String,
    pub series_number: u32,
    /// `YYYYMMDD` and `HHMMSS.ffffff` of the series' first instance.
    pub date: String,
    pub time: String,
}

/// Writes the DICOM files of every scan into one directory.
pub struct DicomWriter {
    dir: PathBuf,
    series: BTreeMap<u32, SeriesIds>,
    next_series_number: u32,
}

impl DicomWriter {
    /// Creates `dir` if needed and checks it can be written.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the DICOM directory {}", dir.display()))?;
        crate::worker::check_writable_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            series: BTreeMap::new(),
            next_series_number: 1,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The series of scan `scan_id`, made on first use.
    pub fn series(&mut self, scan_id: u32, provenance: &Provenance) -> Result<SeriesIds> {
        if let Some(ids) = self.series.get(&scan_id) {
            return Ok(ids.clone());
        }
        let study_uid = match provenance
            .acquisition
            .as_ref()
            .and_then(|a| a.description.as_ref())
            .and_then(|d| d.study_instance_uid.clone())
        {
            Some(uid) if is_valid_uid(&uid) => uid,
            _ => new_uid()?,
        };
        let now = chrono::Local::now();
        let ids = SeriesIds {
            study_uid,
            series_uid: new_uid()?,
            frame_of_reference_uid: new_uid()?,
            series_number: self.next_series_number,
            date: now.format("%Y%m%d").to_string(),
            time: now.format("%H%M%S%.6f").to_string(),
        };
        self.next_series_number += 1;
        self.series.insert(scan_id, ids.clone());
        Ok(ids)
    }

    /// Writes `DIR/<name>.dcm` for slice `slice` (0-based) of scan `scan_id`, atomically.
    pub fn write_slice(
        &mut self,
        name: &str,
        scan_id: u32,
        slice: u16,
        image: &Array2<Complex32>,
        provenance: &Provenance,
    ) -> Result<PathBuf> {
        let ids = self.series(scan_id, provenance)?;
        let file = mr_image(image, provenance, &ids, u32::from(slice) + 1)?;
        let path = self.dir.join(format!("{name}.dcm"));
        crate::worker::write_atomically(&path, |p| {
            file.write_to_file(p)
                .with_context(|| format!("cannot write {}", p.display()))
        })?;
        Ok(path)
    }
}

/// `true` for a syntactically valid UID (digits and dots, no leading zeros, <= 64 chars).
pub fn is_valid_uid(uid: &str) -> bool {
    uid.len() <= 64
        && !uid.is_empty()
        && uid.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'))
        })
}

/// The 16-bit stored values and the Rescale Slope of a magnitude image.
pub fn quantise_magnitude(magnitude: &[f32]) -> Result<(Vec<u16>, f64)> {
    let mut max = 0.0f32;
    for &m in magnitude {
        if !m.is_finite() {
            bail!("the image has non-finite values; no DICOM file written");
        }
        max = max.max(m);
    }
    let slope = if max > 0.0 {
        f64::from(max) / f64::from(u16::MAX)
    } else {
        1.0
    };
    let stored = magnitude
        .iter()
        .map(|&m| (f64::from(m) / slope).round().clamp(0.0, f64::from(u16::MAX)) as u16)
        .collect();
    Ok((stored, slope))
}

/// A Decimal String of at most 16 characters.
fn ds(value: f64) -> String {
    let plain = format!("{value}");
    if plain.len() <= 16 {
        return plain;
    }
    for digits in (1..=9).rev() {
        let text = format!("{value:.digits$E}");
        if text.len() <= 16 {
            return text;
        }
    }
    format!("{value:.0E}")
}

fn ds_list(values: &[f64]) -> String {
    values.iter().map(|&v| ds(v)).collect::<Vec<_>>().join("\\")
}

fn put_str(object: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    object.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// An empty (Type 2) element.
fn put_empty(object: &mut InMemDicomObject, tag: Tag, vr: VR) {
    object.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
}

fn put_opt(object: &mut InMemDicomObject, tag: Tag, vr: VR, value: Option<&str>) {
    match value {
        Some(v) if !v.trim().is_empty() => put_str(object, tag, vr, v.trim()),
        _ => put_empty(object, tag, vr),
    }
}

fn put_u16(object: &mut InMemDicomObject, tag: Tag, value: u16) {
    object.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
}

/// Text of a string attribute, limited to the VR's length and with `\` (the value
/// separator) replaced.
fn text(value: &str, max: usize) -> String {
    value.replace('\\', "/").chars().take(max).collect()
}

/// Where a slice lies: its geometry, or a nominal axial one, and whether it is nominal.
fn geometry_or_nominal(provenance: &Provenance) -> (SliceGeometry, bool) {
    match provenance.acquisition.as_ref().and_then(|a| a.geometry) {
        Some(g) => (g, false),
        None => {
            let spacing = provenance.voxel_mm.map_or(1.0, |[y, x]| y.min(x));
            let slice = provenance.acquisition.as_ref().map_or(0, |a| a.slice);
            (
                SliceGeometry {
                    centre_mm: [0.0, 0.0, f32::from(slice) * spacing],
                    read_dir: [1.0, 0.0, 0.0],
                    phase_dir: [0.0, 1.0, 0.0],
                    slice_dir: [0.0, 0.0, 1.0],
                    thickness_mm: spacing,
                },
                true,
            )
        }
    }
}

/// The MR Image Storage instance of one slice.
pub fn mr_image(
    image: &Array2<Complex32>,
    provenance: &Provenance,
    ids: &SeriesIds,
    instance_number: u32,
) -> Result<FileDicomObject<InMemDicomObject>> {
    let (rows, columns) = image.dim();
    let (Ok(rows16), Ok(columns16)) = (u16::try_from(rows), u16::try_from(columns)) else {
        bail!("a {rows}x{columns} image is too large for DICOM");
    };
    let magnitude: Vec<f32> = image.iter().map(|z| z.norm()).collect();
    let (stored, slope) = quantise_magnitude(&magnitude)?;
    let mut sorted = magnitude.clone();
    sorted.sort_by(f32::total_cmp);
    let high = f64::from(sorted[((sorted.len().max(1) - 1) as f64 * 0.995) as usize]).max(slope);

    let acquisition = provenance.acquisition.as_ref();
    let description = acquisition.and_then(|a| a.description.as_ref());
    let (geometry, nominal) = geometry_or_nominal(provenance);
    let [dy, dx] = provenance.voxel_mm.unwrap_or([1.0, 1.0]);
    let (dy, dx) = (f64::from(dy), f64::from(dx));
    // Pixel (n_y/2, n_x/2) is the centre of the field of view (the centred grid's DC
    // convention, DESIGN §3.1); Image Position is the centre of pixel (0, 0).
    let position: Vec<f64> = (0..3)
        .map(|i| {
            f64::from(geometry.centre_mm[i])
                - (columns / 2) as f64 * dx * f64::from(geometry.read_dir[i])
                - (rows / 2) as f64 * dy * f64::from(geometry.phase_dir[i])
        })
        .collect();
    let slice_location: f64 = (0..3)
        .map(|i| f64::from(geometry.centre_mm[i]) * f64::from(geometry.slice_dir[i]))
        .sum();
    let orientation: Vec<f64> = geometry
        .read_dir
        .iter()
        .chain(&geometry.phase_dir)
        .map(|&v| f64::from(v))
        .collect();
    let mut comments = provenance.summary();
    if nominal {
        comments += "; geometry not given by the input: position and orientation are nominal (axial, at the origin)";
    }
    let sop_instance_uid = new_uid()?;

    let mut o = InMemDicomObject::new_empty();
    // SOP Common
    put_str(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, MR_IMAGE_STORAGE);
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &sop_instance_uid);
    put_str(&mut o, tags::INSTANCE_CREATION_DATE, VR::DA, &ids.date);
    put_str(&mut o, tags::INSTANCE_CREATION_TIME, VR::TM, &ids.time);
    // Patient
    let name = description.and_then(|d| d.patient_name.as_deref()).map(|v| text(v, 64));
    put_opt(&mut o, tags::PATIENT_NAME, VR::PN, name.as_deref());
    let id = description.and_then(|d| d.patient_id.as_deref()).map(|v| text(v, 64));
    put_opt(&mut o, tags::PATIENT_ID, VR::LO, id.as_deref());
    let birth = description
        .and_then(|d| d.patient_birth_date.as_deref())
        .map(|d| d.replace('-', ""))
        .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
    put_opt(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, birth.as_deref());
    let sex = description
        .and_then(|d| d.patient_sex.as_deref())
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| matches!(s.as_str(), "M" | "F" | "O"));
    put_opt(&mut o, tags::PATIENT_SEX, VR::CS, sex.as_deref());
    // General Study
    put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &ids.study_uid);
    put_str(&mut o, tags::STUDY_DATE, VR::DA, &ids.date);
    put_str(&mut o, tags::STUDY_TIME, VR::TM, &ids.time);
    put_empty(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN);
    put_empty(&mut o, tags::STUDY_ID, VR::SH);
    put_empty(&mut o, tags::ACCESSION_NUMBER, VR::SH);
    if let Some(d) = description.and_then(|d| d.study_description.as_deref()) {
        put_str(&mut o, tags::STUDY_DESCRIPTION, VR::LO, &text(d, 64));
    }
    // General Series
    put_str(&mut o, tags::MODALITY, VR::CS, "MR");
    put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &ids.series_uid);
    put_str(&mut o, tags::SERIES_NUMBER, VR::IS, &ids.series_number.to_string());
    put_str(&mut o, tags::SERIES_DATE, VR::DA, &ids.date);
    put_str(&mut o, tags::SERIES_TIME, VR::TM, &ids.time);
    let series_description = description
        .and_then(|d| d.series_description.clone())
        .unwrap_or_else(|| "sparsemap reconstruction".to_string());
    put_str(&mut o, tags::SERIES_DESCRIPTION, VR::LO, &text(&series_description, 64));
    if let Some(p) = description.and_then(|d| d.protocol_name.as_deref()) {
        put_str(&mut o, tags::PROTOCOL_NAME, VR::LO, &text(p, 64));
    }
    let position_code = description
        .and_then(|d| d.patient_position.as_deref())
        .map(str::trim)
        .filter(|p| {
            matches!(
                *p,
                "HFP" | "HFS" | "HFDR" | "HFDL" | "FFDR" | "FFDL" | "FFP" | "FFS" | "LFP"
                    | "LFS" | "RFP" | "RFS" | "AFDR" | "AFDL" | "PFDR" | "PFDL"
            )
        });
    put_opt(&mut o, tags::PATIENT_POSITION, VR::CS, position_code);
    // Type 2C (paired body parts): unknown here, so present and empty.
    put_empty(&mut o, tags::LATERALITY, VR::CS);
    // Frame of Reference
    put_str(&mut o, tags::FRAME_OF_REFERENCE_UID, VR::UI, &ids.frame_of_reference_uid);
    put_empty(&mut o, tags::POSITION_REFERENCE_INDICATOR, VR::LO);
    // General Equipment
    let manufacturer = description.and_then(|d| d.manufacturer.as_deref()).map(|v| text(v, 64));
    put_opt(&mut o, tags::MANUFACTURER, VR::LO, manufacturer.as_deref());
    if let Some(i) = description.and_then(|d| d.institution_name.as_deref()) {
        put_str(&mut o, tags::INSTITUTION_NAME, VR::LO, &text(i, 64));
    }
    put_str(&mut o, tags::SOFTWARE_VERSIONS, VR::LO, &text(&provenance.software, 64));
    // General Image
    put_str(&mut o, tags::INSTANCE_NUMBER, VR::IS, &instance_number.to_string());
    put_str(&mut o, tags::CONTENT_DATE, VR::DA, &ids.date);
    put_str(&mut o, tags::CONTENT_TIME, VR::TM, &ids.time);
    put_str(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\OTHER");
    put_str(&mut o, tags::DERIVATION_DESCRIPTION, VR::ST, &text(&derivation(provenance), 1024));
    put_str(&mut o, tags::IMAGE_COMMENTS, VR::LT, &text(&comments, MAX_LT_CHARS));
    // Image Plane
    put_str(&mut o, tags::PIXEL_SPACING, VR::DS, &ds_list(&[dy, dx]));
    put_str(&mut o, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &ds_list(&orientation));
    put_str(&mut o, tags::IMAGE_POSITION_PATIENT, VR::DS, &ds_list(&position));
    put_str(&mut o, tags::SLICE_THICKNESS, VR::DS, &ds(f64::from(geometry.thickness_mm)));
    put_str(&mut o, tags::SLICE_LOCATION, VR::DS, &ds(slice_location));
    // Image Pixel
    put_u16(&mut o, tags::SAMPLES_PER_PIXEL, 1);
    put_str(&mut o, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    put_u16(&mut o, tags::ROWS, rows16);
    put_u16(&mut o, tags::COLUMNS, columns16);
    put_u16(&mut o, tags::BITS_ALLOCATED, 16);
    put_u16(&mut o, tags::BITS_STORED, 16);
    put_u16(&mut o, tags::HIGH_BIT, 15);
    put_u16(&mut o, tags::PIXEL_REPRESENTATION, 0);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(stored.into()),
    ));
    // Rescale to the reconstruction's magnitude; windowing in those units.
    put_str(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "0");
    put_str(&mut o, tags::RESCALE_SLOPE, VR::DS, &ds(slope));
    put_str(&mut o, tags::RESCALE_TYPE, VR::LO, "US");
    put_str(&mut o, tags::WINDOW_CENTER, VR::DS, &ds(high / 2.0));
    put_str(&mut o, tags::WINDOW_WIDTH, VR::DS, &ds(high));
    // The magnitude's scale is that of the k-space (often below 1): LINEAR_EXACT is the VOI
    // function defined for any positive width (LINEAR needs >= 1).
    put_str(&mut o, tags::VOILUT_FUNCTION, VR::CS, "LINEAR_EXACT");
    // MR Image
    put_str(&mut o, tags::SCANNING_SEQUENCE, VR::CS, "RM");
    put_str(&mut o, tags::SEQUENCE_VARIANT, VR::CS, "NONE");
    put_empty(&mut o, tags::SCAN_OPTIONS, VR::CS);
    put_str(&mut o, tags::MR_ACQUISITION_TYPE, VR::CS, "2D");
    let ms = |v: Option<f32>| v.filter(|v| v.is_finite() && *v >= 0.0).map(|v| ds(f64::from(v)));
    put_opt(&mut o, tags::REPETITION_TIME, VR::DS, ms(description.and_then(|d| d.tr_ms)).as_deref());
    put_opt(&mut o, tags::ECHO_TIME, VR::DS, ms(description.and_then(|d| d.te_ms)).as_deref());
    put_empty(&mut o, tags::ECHO_TRAIN_LENGTH, VR::IS);
    if let Some(flip) = ms(description.and_then(|d| d.flip_angle_deg)) {
        put_str(&mut o, tags::FLIP_ANGLE, VR::DS, &flip);
    }
    put_str(&mut o, tags::IMAGED_NUCLEUS, VR::SH, "1H");
    if let Some(a) = acquisition.filter(|a| a.field_mt.is_finite() && a.field_mt > 0.0) {
        put_str(&mut o, tags::MAGNETIC_FIELD_STRENGTH, VR::DS, &ds(f64::from(a.field_mt) / 1000.0));
        // 1H: 42.577478 MHz/T.
        put_str(&mut o, tags::IMAGING_FREQUENCY, VR::DS, &ds(f64::from(a.field_mt) * 0.042577478));
    }
    // Private block: the full provenance JSON.
    put_str(&mut o, Tag(PRIVATE_GROUP, 0x0010), VR::LO, PRIVATE_CREATOR);
    let json = serde_json::to_string(provenance).context("provenance to JSON")?;
    put_str(&mut o, Tag(PRIVATE_GROUP, PRIVATE_PROVENANCE_ELEMENT), VR::UT, &json);

    o.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(FILE_TRANSFER_SYNTAX)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(text(&format!("SPARSEMAP{}", env!("CARGO_PKG_VERSION")), 16)),
    )
    .context("building the DICOM file meta information")
}

/// One line for Derivation Description: how the image was made.
fn derivation(provenance: &Provenance) -> String {
    let model = provenance.model.as_deref().unwrap_or("fixed lambda");
    format!(
        "{}: convolutional sparse coding, model {model}, dictionary {} (K={}), T={}, a={}, gate {}",
        provenance.software,
        provenance.dictionary,
        provenance.filters,
        provenance.iterations,
        provenance.lowpass_weight,
        provenance
            .background_gate
            .map_or_else(|| "off".to_string(), |k| format!("kappa={k}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_distinct_and_short_enough() {
        let a = new_uid().unwrap();
        let b = new_uid().unwrap();
        assert_ne!(a, b);
        for uid in [&a, &b] {
            assert!(is_valid_uid(uid) && uid.starts_with("2.25.") && uid.len() <= 44, "{uid}");
        }
        assert!(is_valid_uid(IMPLEMENTATION_CLASS_UID));
        assert!(!is_valid_uid("1.02.3") && !is_valid_uid("1..2") && !is_valid_uid("1.a"));
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters_and_keep_their_value() {
        for v in [0.0, 1.0, -123.456789012345, 1.533623008e-5, 6.02e23, -1e-300, 256.0 / 3.0] {
            let text = ds(v);
            assert!(text.len() <= 16, "{text}");
            let back: f64 = text.parse().unwrap();
            assert!((back - v).abs() <= 1e-7 * v.abs().max(1e-300), "{v} -> {text}");
        }
    }

    #[test]
    fn quantisation_is_within_half_a_step_and_refuses_non_finite_values() {
        let magnitude = [0.0f32, 0.25, 1.0, 3.0e-3, 0.999_999];
        let (stored, slope) = quantise_magnitude(&magnitude).unwrap();
        assert_eq!(stored[2], u16::MAX);
        for (&s, &m) in stored.iter().zip(&magnitude) {
            assert!((f64::from(s) * slope - f64::from(m)).abs() <= slope / 2.0 + 1e-12);
        }
        assert_eq!(quantise_magnitude(&[0.0; 4]).unwrap(), (vec![0; 4], 1.0));
        assert!(quantise_magnitude(&[1.0, f32::NAN]).is_err());
        assert!(quantise_magnitude(&[f32::INFINITY]).is_err());
    }
}
