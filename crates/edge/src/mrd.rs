//! MRD/ISMRMRD HDF5 input (`recon --input scan.h5`, DESIGN §6, §7): the XML header
//! `/dataset/xml` and the acquisitions `/dataset/data` become the same [`ScanStart`] and
//! [`SliceJob`]s a wire stream gives, so the reconstruction and every output file are those
//! of `.smw` input.
//!
//! **Reading.** The pure-Rust `hdf5-reader` crate reads the file (no libhdf5, so the aarch64
//! cross build needs nothing more). `/dataset/data` is a 1-D compound of `head` (the
//! `ISMRMRD_AcquisitionHeader` compound), `traj` and `data` (variable-length float32; `data` is
//! `[active_channels][number_of_samples]` interleaved re/im). Writers lay the compound out
//! differently (the C++ library pads it to 376 bytes, the Python package packs it to 372), so
//! every member's offset and type is taken from the file's datatype, never assumed; a member
//! that is missing or of another type is an error naming it.
//!
//! **What is used.** Acquisitions flagged (ismrmrd.h 1-based flag numbers, bit `n - 1`)
//! `ACQ_IS_NOISE_MEASUREMENT` (19), `ACQ_IS_NAVIGATION_DATA` (23), `ACQ_IS_PHASECORR_DATA`
//! (24), and the feedback, dummy, surface-coil-correction and phase-stabilisation kinds
//! (26–31) are skipped and counted ([`Skipped`]); so are acquisitions of another encoding
//! space (`encoding_space_ref != 0`) and of another contrast, phase or set than 0 (one image
//! series per file). Parallel-imaging calibration lines (20, 21) are k-space samples of the
//! same image and are used (counted as `calibration_used`). `ACQ_IS_REVERSE` (22, EPI) is refused.
//! `idx.repetition` is the scan (`scan_id`), `idx.slice` the slice, `idx.kspace_encode_step_1`
//! the row (`row = ky - center + n_y / 2`, `center` from `encodingLimits`), readout sample `i`
//! lands in column `n_x_encoded / 2 - center_sample + i` and the first `discard_pre` and last
//! `discard_post` samples are dropped (as Gadgetron's `BucketToBuffer` places them). Repeated
//! averages (`idx.average`) of a row are averaged; a second readout of the same (row,
//! partition, average) is a duplicate, counted and ignored.
//!
//! **Grid.** Rows: `encodedSpace` y (phase oversampling is kept). Columns: when
//! `encodedSpace` x is larger than `reconSpace` x (readout oversampling), every readout row
//! goes through the unitary centred inverse FFT along x on the encoded grid, the central
//! `reconSpace` x image columns are kept and the unitary centred FFT brings them back to
//! k-space — Gadgetron's `RemoveROOversamplingGadget`, equivalently the central crop of the
//! ISMRMRD `recon_cartesian_2d` example — so the slice's k-space is on the `reconSpace` x grid
//! and a measured row is measured in every column. Without oversampling each row's mask is
//! the window its readout measured; `kx_first`, `kx_count` are the union of those windows.
//!
//! **3-D** (`encodedSpace` z > 1): the partitions `idx.kspace_encode_step_2` of a slab are
//! gathered, the unitary centred inverse FFT along kz (DESIGN §3.2 in one dimension) gives
//! one 2-D k-space per partition, and each is its own slice (`slice = slab * n_z + p`,
//! keeping the central `reconSpace` z partitions when that is smaller). A row counts as
//! measured if any partition measured it; kz positions not measured are zero.
//!
//! **Checks.** Every size from the file is checked before anything is sized from it; a
//! truncated file, another format, a missing dataset, a wrong datatype, a row or partition
//! outside the encoding limits, a sample count that does not match the data, or a non-finite
//! sample is an error naming the file and what is wrong; no input is meant to make it panic
//! (crates/edge/tests/mrd.rs cuts and bit-flips files of both writers).

use crate::ingest::{Event, SliceJob};
use crate::output::{ScanDescription, SliceGeometry};
use anyhow::{anyhow, bail, Context, Result};
use hdf5_reader::{ByteOrder, CompoundField, Datatype, Hdf5File, OpenOptions};
use num_complex::Complex32;
use serde::{Deserialize, Serialize};
use sparsemap_wire::{ClosedBy, EndStatus, FaultKinds, ScanStart, SliceStats};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// The 8 bytes an HDF5 superblock starts with.
pub const HDF5_SIGNATURE: [u8; 8] = *b"\x89HDF\r\n\x1a\n";

/// Proton gyromagnetic ratio / 2 pi, MHz/T (CODATA 2018: 42.577 478 518), for
/// `H1resonanceFrequency_Hz` -> field strength.
pub const GAMMA_MHZ_PER_T: f64 = 42.577_478;

/// Largest `/dataset/data` table (acquisition headers and vlen references) read at once.
pub const MAX_TABLE_BYTES: usize = 256 << 20;
/// Largest k-space buffer of one slice (2-D) or slab (3-D), all coils, encoded grid.
pub const MAX_SLAB_BYTES: usize = 256 << 20;
/// Largest XML header.
pub const MAX_XML_BYTES: usize = 1 << 20;
/// Most receive channels of one acquisition (the wire's `n_coils` is a `u8`).
pub const MAX_CHANNELS: usize = 128;
/// Largest encoded matrix side (x, y, z).
pub const MAX_MATRIX_SIDE: usize = 4096;

/// ismrmrd.h flag numbers (1-based; the bit is `1 << (n - 1)`).
pub mod flags {
    pub const NOISE_MEASUREMENT: u32 = 19;
    pub const PARALLEL_CALIBRATION: u32 = 20;
    pub const PARALLEL_CALIBRATION_AND_IMAGING: u32 = 21;
    pub const REVERSE: u32 = 22;
    pub const NAVIGATION_DATA: u32 = 23;
    pub const PHASECORR_DATA: u32 = 24;
    pub const HPFEEDBACK_DATA: u32 = 26;
    pub const DUMMYSCAN_DATA: u32 = 27;
    pub const RTFEEDBACK_DATA: u32 = 28;
    pub const SURFACECOILCORRECTIONSCAN_DATA: u32 = 29;
    pub const PHASE_STABILIZATION_REFERENCE: u32 = 30;
    pub const PHASE_STABILIZATION: u32 = 31;

    /// Whether flag number `n` (1-based) is set in `flags`.
    pub fn is_set(flags: u64, n: u32) -> bool {
        flags & (1u64 << (n - 1)) != 0
    }
}

/// Acquisitions of the file that were not reconstructed, by kind, and the calibration lines
/// that were (per file; the same counts go with every slice of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `ACQ_IS_NOISE_MEASUREMENT` (noise adjustment).
    pub noise: u32,
    /// `ACQ_IS_NAVIGATION_DATA`.
    pub navigator: u32,
    /// `ACQ_IS_PHASECORR_DATA`.
    pub phasecorr: u32,
    /// Feedback, dummy, surface-coil-correction and phase-stabilisation scans.
    pub other_kind: u32,
    /// Another encoding space (`encoding_space_ref != 0`), contrast, phase or set than 0.
    pub other_image: u32,
}

/// What an MRD file gave one slice, for its JSON record and sidecar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MrdSliceInfo {
    /// Acquisitions of the file skipped, by kind.
    pub skipped: Skipped,
    /// Parallel-imaging calibration readouts used as k-space data (whole file).
    pub calibration_used: u32,
    /// Readout oversampling removed: encoded x / reconstruction x columns.
    pub readout_oversampling: [u16; 2],
    /// 3-D: partition of the slab (after the inverse FFT along kz) and partitions kept.
    pub partition: Option<[u16; 2]>,
}

/// One `encodingLimits` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub minimum: u16,
    pub maximum: u16,
    pub center: u16,
}

/// What is used of the XML header.
#[derive(Debug, Clone, PartialEq)]
pub struct MrdHeader {
    /// `encodedSpace` and `reconSpace` matrix `[x, y, z]` and field of view, mm.
    pub encoded_matrix: [usize; 3],
    pub recon_matrix: [usize; 3],
    pub encoded_fov_mm: [f32; 3],
    pub recon_fov_mm: [f32; 3],
    pub step_1: Limit,
    pub step_2: Option<Limit>,
    pub slice: Option<Limit>,
    pub trajectory: String,
    /// From `systemFieldStrength_T` if present, else `H1resonanceFrequency_Hz`.
    pub field_mt: Option<f32>,
    pub description: ScanDescription,
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

fn path_text<'a>(node: roxmltree::Node<'a, '_>, path: &[&str]) -> Option<&'a str> {
    let mut node = node;
    for name in path {
        node = child(node, name)?;
    }
    node.text().map(str::trim).filter(|t| !t.is_empty())
}

fn number<T: std::str::FromStr>(node: roxmltree::Node<'_, '_>, path: &[&str]) -> Result<Option<T>> {
    match path_text(node, path) {
        None => Ok(None),
        Some(text) => text
            .parse::<T>()
            .map(Some)
            .map_err(|_| anyhow!("header: {} = {text:?} is not a number", path.join("/"))),
    }
}

fn required<T: std::str::FromStr>(node: roxmltree::Node<'_, '_>, path: &[&str]) -> Result<T> {
    number(node, path)?.ok_or_else(|| anyhow!("header: {} is missing", path.join("/")))
}

impl MrdHeader {
    /// Parses the ISMRMRD XML header (namespace-agnostic; the first `<encoding>` is used).
    pub fn parse(xml: &str) -> Result<Self> {
        let document = roxmltree::Document::parse(xml).context("header: not well-formed XML")?;
        let root = document.root_element();
        if root.tag_name().name() != "ismrmrdHeader" {
            bail!(
                "header: the root element is <{}>, not <ismrmrdHeader>",
                root.tag_name().name()
            );
        }
        let encoding = child(root, "encoding").context("header: no <encoding>")?;
        let space = |name: &str| -> Result<([usize; 3], [f32; 3])> {
            let mut matrix = [0usize; 3];
            let mut fov = [0f32; 3];
            for (i, axis) in ["x", "y", "z"].iter().enumerate() {
                matrix[i] = required(encoding, &[name, "matrixSize", axis])?;
                fov[i] = required(encoding, &[name, "fieldOfView_mm", axis])?;
                if matrix[i] == 0 || matrix[i] > MAX_MATRIX_SIDE {
                    bail!(
                        "header: {name} matrixSize {axis} = {} is not in 1..={MAX_MATRIX_SIDE}",
                        matrix[i]
                    );
                }
                if !(fov[i].is_finite() && fov[i] >= 0.0) {
                    bail!(
                        "header: {name} fieldOfView_mm {axis} = {} is not a finite size",
                        fov[i]
                    );
                }
            }
            Ok((matrix, fov))
        };
        let (encoded_matrix, encoded_fov_mm) = space("encodedSpace")?;
        let (recon_matrix, recon_fov_mm) = space("reconSpace")?;
        let limit = |name: &str| -> Result<Option<Limit>> {
            let Some(node) = child(encoding, "encodingLimits").and_then(|l| child(l, name)) else {
                return Ok(None);
            };
            let limit = Limit {
                minimum: required(node, &["minimum"])?,
                maximum: required(node, &["maximum"])?,
                center: required(node, &["center"])?,
            };
            if limit.minimum > limit.maximum {
                bail!(
                    "header: encodingLimits {name}: minimum {} > maximum {}",
                    limit.minimum,
                    limit.maximum
                );
            }
            Ok(Some(limit))
        };
        let step_1 = match limit("kspace_encoding_step_1")? {
            Some(limit) => limit,
            // Without limits: the whole encoded y range, centre in the middle.
            None => Limit {
                minimum: 0,
                maximum: u16::try_from(encoded_matrix[1] - 1).unwrap_or(u16::MAX),
                center: u16::try_from(encoded_matrix[1] / 2).unwrap_or(u16::MAX),
            },
        };
        let trajectory = path_text(encoding, &["trajectory"])
            .unwrap_or("cartesian")
            .to_string();
        let field_t: Option<f64> = number(
            root,
            &["acquisitionSystemInformation", "systemFieldStrength_T"],
        )?;
        let frequency_hz: Option<f64> =
            number(root, &["experimentalConditions", "H1resonanceFrequency_Hz"])?;
        let field_mt = field_t
            .map(|t| t * 1e3)
            .or(frequency_hz.map(|f| f / (GAMMA_MHZ_PER_T * 1e6) * 1e3))
            .filter(|mt| mt.is_finite() && *mt >= 0.0)
            .map(|mt| mt as f32);
        let text = |path: &[&str]| path_text(root, path).map(str::to_string);
        let description = ScanDescription {
            patient_name: text(&["subjectInformation", "patientName"]),
            patient_id: text(&["subjectInformation", "patientID"]),
            patient_birth_date: text(&["subjectInformation", "patientBirthdate"]),
            patient_sex: text(&["subjectInformation", "patientGender"]),
            study_instance_uid: text(&["studyInformation", "studyInstanceUID"]),
            study_description: text(&["studyInformation", "studyDescription"]),
            series_description: text(&["measurementInformation", "seriesDescription"]),
            protocol_name: text(&["measurementInformation", "protocolName"]),
            patient_position: text(&["measurementInformation", "patientPosition"]),
            institution_name: text(&["acquisitionSystemInformation", "institutionName"]),
            manufacturer: text(&["acquisitionSystemInformation", "systemVendor"]),
            tr_ms: number(root, &["sequenceParameters", "TR"])?,
            te_ms: number(root, &["sequenceParameters", "TE"])?,
            flip_angle_deg: number(root, &["sequenceParameters", "flipAngle_deg"])?,
        };
        Ok(Self {
            encoded_matrix,
            recon_matrix,
            encoded_fov_mm,
            recon_fov_mm,
            step_1,
            step_2: limit("kspace_encoding_step_2")?,
            slice: limit("slice")?,
            trajectory,
            field_mt,
            description,
        })
    }
}

/// Whether `path` starts with the HDF5 signature (at byte 0, or after a user block of 512,
/// 1024, ... bytes, as HDF5 allows).
pub fn is_hdf5(path: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read the size of {}", path.display()))?
        .len();
    let mut offset = 0u64;
    while offset + 8 <= len && offset <= 1 << 20 {
        let mut magic = [0u8; 8];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut magic)?;
        if magic == HDF5_SIGNATURE {
            return Ok(true);
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
    Ok(false)
}

/// A member of the acquisition compound: byte offset in the element and its type.
#[derive(Debug, Clone, Copy)]
struct Member {
    offset: usize,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U16,
    U64,
    F32x3,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::U16 => 2,
            Kind::U64 => 8,
            Kind::F32x3 => 12,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::U16 => "a little-endian uint16",
            Kind::U64 => "a little-endian uint64",
            Kind::F32x3 => "3 little-endian float32",
        }
    }

    fn matches(self, datatype: &Datatype) -> bool {
        let le = |order: &ByteOrder| matches!(order, ByteOrder::LittleEndian);
        match (self, datatype) {
            (
                Kind::U16,
                Datatype::FixedPoint {
                    size: 2,
                    signed: false,
                    byte_order,
                },
            ) => le(byte_order),
            (
                Kind::U64,
                Datatype::FixedPoint {
                    size: 8,
                    signed: false,
                    byte_order,
                },
            ) => le(byte_order),
            (Kind::F32x3, Datatype::Array { base, dims }) => {
                dims.as_slice() == [3]
                    && matches!(&**base, Datatype::FloatingPoint { size: 4, byte_order } if le(byte_order))
            }
            _ => false,
        }
    }
}

/// Where the used members of the acquisition compound are, from the file's datatype.
#[derive(Debug, Clone)]
struct Layout {
    element_size: usize,
    flags: Member,
    number_of_samples: Member,
    active_channels: Member,
    discard_pre: Member,
    discard_post: Member,
    center_sample: Member,
    encoding_space_ref: Member,
    position: Member,
    read_dir: Member,
    phase_dir: Member,
    slice_dir: Member,
    step_1: Member,
    step_2: Member,
    average: Member,
    slice: Member,
    contrast: Member,
    phase: Member,
    repetition: Member,
    set: Member,
    /// The `data` vlen reference and its size.
    data: usize,
    reference_size: usize,
    /// Size of the `head` member (the acquisition header), for the log.
    head_size: usize,
}

fn fields(datatype: &Datatype) -> Option<&[CompoundField]> {
    match datatype {
        Datatype::Compound { fields, .. } => Some(fields),
        _ => None,
    }
}

fn compound_size(datatype: &Datatype) -> Option<usize> {
    match datatype {
        Datatype::Compound { size, .. } => Some(*size as usize),
        _ => None,
    }
}

impl Layout {
    fn from_datatype(
        datatype: &Datatype,
        element_size: usize,
        reference_size: usize,
    ) -> Result<Self> {
        let top =
            fields(datatype).context("/dataset/data is not a compound (of head, traj, data)")?;
        let find = |list: &[CompoundField], name: &str| -> Option<CompoundField> {
            list.iter().find(|f| f.name == name).cloned()
        };
        let head = find(top, "head").context("/dataset/data has no member `head`")?;
        let head_fields =
            fields(&head.datatype).context("/dataset/data member `head` is not a compound")?;
        let head_size = compound_size(&head.datatype).unwrap_or(0);
        let idx = find(head_fields, "idx").context("acquisition header has no member `idx`")?;
        let idx_fields =
            fields(&idx.datatype).context("acquisition header member `idx` is not a compound")?;
        let member = |list: &[CompoundField],
                      base: usize,
                      name: &str,
                      kind: Kind|
         -> Result<Member> {
            let field = find(list, name)
                .with_context(|| format!("acquisition header has no member `{name}`"))?;
            if !kind.matches(&field.datatype) {
                bail!(
                    "acquisition header member `{name}` is {:?}, expected {}",
                    field.datatype,
                    kind.name()
                );
            }
            let offset = base + field.byte_offset as usize;
            if offset + kind.size() > element_size {
                bail!("acquisition header member `{name}` lies outside the {element_size}-byte element");
            }
            Ok(Member { offset, kind })
        };
        let h = head.byte_offset as usize;
        let i = h + idx.byte_offset as usize;
        let data = find(top, "data").context("/dataset/data has no member `data`")?;
        match &data.datatype {
            Datatype::VarLen { base, .. }
                if matches!(&**base, Datatype::FloatingPoint { size: 4, byte_order: ByteOrder::LittleEndian }) => {}
            other => bail!("/dataset/data member `data` is {other:?}, expected a vlen sequence of little-endian float32"),
        }
        if data.byte_offset as usize + reference_size > element_size {
            bail!("/dataset/data member `data` lies outside the {element_size}-byte element");
        }
        Ok(Self {
            element_size,
            flags: member(head_fields, h, "flags", Kind::U64)?,
            number_of_samples: member(head_fields, h, "number_of_samples", Kind::U16)?,
            active_channels: member(head_fields, h, "active_channels", Kind::U16)?,
            discard_pre: member(head_fields, h, "discard_pre", Kind::U16)?,
            discard_post: member(head_fields, h, "discard_post", Kind::U16)?,
            center_sample: member(head_fields, h, "center_sample", Kind::U16)?,
            encoding_space_ref: member(head_fields, h, "encoding_space_ref", Kind::U16)?,
            position: member(head_fields, h, "position", Kind::F32x3)?,
            read_dir: member(head_fields, h, "read_dir", Kind::F32x3)?,
            phase_dir: member(head_fields, h, "phase_dir", Kind::F32x3)?,
            slice_dir: member(head_fields, h, "slice_dir", Kind::F32x3)?,
            step_1: member(idx_fields, i, "kspace_encode_step_1", Kind::U16)?,
            step_2: member(idx_fields, i, "kspace_encode_step_2", Kind::U16)?,
            average: member(idx_fields, i, "average", Kind::U16)?,
            slice: member(idx_fields, i, "slice", Kind::U16)?,
            contrast: member(idx_fields, i, "contrast", Kind::U16)?,
            phase: member(idx_fields, i, "phase", Kind::U16)?,
            repetition: member(idx_fields, i, "repetition", Kind::U16)?,
            set: member(idx_fields, i, "set", Kind::U16)?,
            data: data.byte_offset as usize,
            reference_size,
            head_size,
        })
    }

    /// The packed `ISMRMRD_AcquisitionHeader` of the streaming protocol (ismrmrd.h,
    /// `#pragma pack(2)`, 340 bytes), whose offsets are fixed.
    fn packed_acquisition_header() -> Self {
        use crate::mrd_stream::{acquisition_offsets as at, ACQUISITION_HEADER_BYTES};
        let u16m = |offset| Member {
            offset,
            kind: Kind::U16,
        };
        let f3 = |offset| Member {
            offset,
            kind: Kind::F32x3,
        };
        Self {
            element_size: ACQUISITION_HEADER_BYTES,
            flags: Member {
                offset: at::FLAGS,
                kind: Kind::U64,
            },
            number_of_samples: u16m(at::NUMBER_OF_SAMPLES),
            active_channels: u16m(at::ACTIVE_CHANNELS),
            discard_pre: u16m(at::DISCARD_PRE),
            discard_post: u16m(at::DISCARD_POST),
            center_sample: u16m(at::CENTER_SAMPLE),
            encoding_space_ref: u16m(at::ENCODING_SPACE_REF),
            position: f3(at::POSITION),
            read_dir: f3(at::READ_DIR),
            phase_dir: f3(at::PHASE_DIR),
            slice_dir: f3(at::SLICE_DIR),
            step_1: u16m(at::STEP_1),
            step_2: u16m(at::STEP_2),
            average: u16m(at::AVERAGE),
            slice: u16m(at::SLICE),
            contrast: u16m(at::CONTRAST),
            phase: u16m(at::PHASE),
            repetition: u16m(at::REPETITION),
            set: u16m(at::SET),
            data: 0,
            reference_size: 0,
            head_size: ACQUISITION_HEADER_BYTES,
        }
    }

    fn u16(&self, element: &[u8], m: Member) -> u16 {
        debug_assert_eq!(m.kind, Kind::U16);
        u16::from_le_bytes([element[m.offset], element[m.offset + 1]])
    }

    fn u64(&self, element: &[u8], m: Member) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&element[m.offset..m.offset + 8]);
        u64::from_le_bytes(bytes)
    }

    fn f32x3(&self, element: &[u8], m: Member) -> [f32; 3] {
        let at = |k: usize| {
            let o = m.offset + 4 * k;
            f32::from_le_bytes([element[o], element[o + 1], element[o + 2], element[o + 3]])
        };
        [at(0), at(1), at(2)]
    }
}

/// One imaging acquisition, as its header says.
#[derive(Debug, Clone, Copy)]
struct Readout {
    /// Row of `/dataset/data`.
    index: usize,
    samples: u16,
    channels: u16,
    discard_pre: u16,
    discard_post: u16,
    center_sample: u16,
    step_1: u16,
    step_2: u16,
    average: u16,
    geometry: [[f32; 3]; 4],
}

/// What reading an MRD file delivered, for the log.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MrdSummary {
    pub acquisitions: usize,
    pub used: usize,
    pub skipped: Skipped,
    pub calibration_used: u32,
    pub slices: u32,
    /// Byte size of one `/dataset/data` element and of its `head` member (376 and 340 from the
    /// C++ library, 372 and 340 from the Python package).
    pub element_bytes: usize,
    pub header_bytes: usize,
}

/// Reads an MRD file and calls `sink` with one `Event::Scan` per repetition and one
/// `Event::Slice` per slice (2-D) or partition (3-D), in (repetition, slice) order.
/// Errors name `path`; a sink error stops the reading and is returned.
pub fn read_mrd(path: &Path, sink: &mut dyn FnMut(Event<'_>) -> Result<()>) -> Result<MrdSummary> {
    let name = path.display().to_string();
    read_mrd_inner(path, sink).with_context(|| format!("{name} (MRD/ISMRMRD HDF5)"))
}

fn h5<T>(result: hdf5_reader::error::Result<T>, what: &str) -> Result<T> {
    result.map_err(|e| anyhow!("{what}: {e}"))
}

fn read_mrd_inner(
    path: &Path,
    sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<MrdSummary> {
    let options = OpenOptions::default()
        .with_max_read_bytes(MAX_TABLE_BYTES)
        .with_chunk_cache_bytes(8 << 20);
    let file = h5(
        Hdf5File::open_with_options(path, options),
        "not a readable HDF5 file",
    )?;
    // As libhdf5 does: a file shorter than the end-of-file address its superblock records is
    // truncated (a cut may otherwise only drop bytes that nothing read points to).
    let superblock = file.superblock();
    let len = std::fs::metadata(path)?.len();
    let end = superblock
        .base_address
        .saturating_add(superblock.eof_address);
    if len < end {
        bail!(
            "truncated: the HDF5 superblock says the file ends at byte {end}, it has {len} bytes"
        );
    }
    let xml_dataset = h5(
        file.dataset("/dataset/xml"),
        "no ISMRMRD header /dataset/xml",
    )?;
    let xml = read_xml(&xml_dataset)?;
    let header = MrdHeader::parse(&xml)?;
    if !header.trajectory.eq_ignore_ascii_case("cartesian") {
        bail!(
            "header: trajectory {:?} is not supported (Cartesian only)",
            header.trajectory
        );
    }
    let data = h5(
        file.dataset("/dataset/data"),
        "no acquisitions /dataset/data",
    )?;
    if data.ndim() != 1 {
        bail!("/dataset/data has {} dimensions, expected 1", data.ndim());
    }
    let element_size = h5(data.raw_element_size(), "/dataset/data")?;
    let layout = Layout::from_datatype(data.dtype(), element_size, data.vlen_reference_size())?;
    if compound_size(data.dtype()) != Some(element_size) {
        bail!("/dataset/data: the compound's size does not match its elements");
    }
    let table = h5(data.read_raw_bytes(), "/dataset/data")?;
    if table.len() % element_size != 0 {
        bail!(
            "/dataset/data: {} bytes are not whole acquisitions",
            table.len()
        );
    }
    let summary = MrdSummary {
        element_bytes: element_size,
        header_bytes: layout.head_size,
        ..MrdSummary::default()
    };
    assemble(&header, &layout, &table, &data, summary, sink)
}

/// The acquisitions of an MRD stream (`serve --mrd`): the XML header, the packed 340-byte
/// acquisition headers one after another and each acquisition's samples, assembled into
/// slices exactly as a file's are.
pub fn assemble_stream(
    xml: &str,
    headers: &[u8],
    samples: &[Vec<f32>],
    sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<MrdSummary> {
    let header = MrdHeader::parse(xml)?;
    if !header.trajectory.eq_ignore_ascii_case("cartesian") {
        bail!(
            "header: trajectory {:?} is not supported (Cartesian only)",
            header.trajectory
        );
    }
    let layout = Layout::packed_acquisition_header();
    if headers.len() != samples.len() * layout.element_size {
        bail!(
            "{} header bytes for {} acquisitions",
            headers.len(),
            samples.len()
        );
    }
    let summary = MrdSummary {
        element_bytes: layout.element_size,
        header_bytes: layout.head_size,
        ..MrdSummary::default()
    };
    assemble(&header, &layout, headers, &samples, summary, sink)
}

/// Pass 1 (classify, group by repetition and slice) and pass 2 (one slice or slab at a time)
/// over the acquisition table.
fn assemble(
    header: &MrdHeader,
    layout: &Layout,
    table: &[u8],
    data: &dyn SampleSource,
    mut summary: MrdSummary,
    sink: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<MrdSummary> {
    let element_size = layout.element_size;
    let count = table.len() / element_size;
    summary.acquisitions = count;

    // Pass 1: classify every acquisition; group the imaging ones by (repetition, slice).
    let mut groups: BTreeMap<(u16, u16), Vec<Readout>> = BTreeMap::new();
    let mut channels: Option<u16> = None;
    // Noise-adjustment acquisitions: (index, channels), read after pass 1 for prewhitening.
    let mut noise_readouts: Vec<(usize, u16)> = Vec::new();
    for (index, element) in table.chunks_exact(element_size).enumerate() {
        let flag_bits = layout.u64(element, layout.flags);
        let is = |n| flags::is_set(flag_bits, n);
        if is(flags::NOISE_MEASUREMENT) {
            summary.skipped.noise += 1;
            noise_readouts.push((index, layout.u16(element, layout.active_channels)));
            continue;
        }
        if is(flags::NAVIGATION_DATA) {
            summary.skipped.navigator += 1;
            continue;
        }
        if is(flags::PHASECORR_DATA) {
            summary.skipped.phasecorr += 1;
            continue;
        }
        if [
            flags::HPFEEDBACK_DATA,
            flags::DUMMYSCAN_DATA,
            flags::RTFEEDBACK_DATA,
            flags::SURFACECOILCORRECTIONSCAN_DATA,
            flags::PHASE_STABILIZATION_REFERENCE,
            flags::PHASE_STABILIZATION,
        ]
        .into_iter()
        .any(is)
        {
            summary.skipped.other_kind += 1;
            continue;
        }
        let u16_of = |m| layout.u16(element, m);
        if u16_of(layout.encoding_space_ref) != 0
            || u16_of(layout.contrast) != 0
            || u16_of(layout.phase) != 0
            || u16_of(layout.set) != 0
        {
            summary.skipped.other_image += 1;
            continue;
        }
        if is(flags::REVERSE) {
            bail!("acquisition {index} is a reversed readout (ACQ_IS_REVERSE, EPI): not supported");
        }
        if is(flags::PARALLEL_CALIBRATION) || is(flags::PARALLEL_CALIBRATION_AND_IMAGING) {
            summary.calibration_used += 1;
        }
        let readout = Readout {
            index,
            samples: u16_of(layout.number_of_samples),
            channels: u16_of(layout.active_channels),
            discard_pre: u16_of(layout.discard_pre),
            discard_post: u16_of(layout.discard_post),
            center_sample: u16_of(layout.center_sample),
            step_1: u16_of(layout.step_1),
            step_2: u16_of(layout.step_2),
            average: u16_of(layout.average),
            geometry: [
                layout.f32x3(element, layout.position),
                layout.f32x3(element, layout.read_dir),
                layout.f32x3(element, layout.phase_dir),
                layout.f32x3(element, layout.slice_dir),
            ],
        };
        if readout.channels == 0 || usize::from(readout.channels) > MAX_CHANNELS {
            bail!(
                "acquisition {index}: active_channels = {} is not in 1..={MAX_CHANNELS}",
                readout.channels
            );
        }
        match channels {
            None => channels = Some(readout.channels),
            Some(c) if c != readout.channels => bail!(
                "acquisition {index} has {} channels, earlier ones {c}: the coil count must not change",
                readout.channels
            ),
            Some(_) => {}
        }
        summary.used += 1;
        groups
            .entry((u16_of(layout.repetition), u16_of(layout.slice)))
            .or_default()
            .push(readout);
    }
    let Some(channels) = channels else {
        bail!(
            "no imaging acquisition among its {count} (skipped: {} noise, {} navigator, {} phase correction, {} other kinds, {} other images)",
            summary.skipped.noise,
            summary.skipped.navigator,
            summary.skipped.phasecorr,
            summary.skipped.other_kind,
            summary.skipped.other_image
        );
    };

    let noise = read_noise(data, table, layout, &noise_readouts, channels)?;

    // Pass 2: one slice or slab at a time.
    let plan = Plan::new(header, usize::from(channels))?;
    let description = Arc::new(header.description.clone());
    let mut current_scan = None;
    for ((repetition, slice), readouts) in &groups {
        if current_scan != Some(*repetition) {
            current_scan = Some(*repetition);
            sink(Event::Scan(plan.start(u32::from(*repetition))))?;
        }
        let slab = plan.fill(data, table, layout, *slice, readouts)?;
        for job in plan.jobs(
            u32::from(*repetition),
            *slice,
            slab,
            &summary,
            &description,
            &noise,
        )? {
            summary.slices += 1;
            sink(Event::Slice(job))?;
        }
    }
    Ok(summary)
}

/// The noise-adjustment acquisitions' samples as `[channels][M]` (all of them, in file
/// order, at most `npy::MAX_NOISE_SAMPLES` per channel), for prewhitening the coils;
/// `None` if there are none, or if they do not have the imaging data's channel count (then
/// they do not describe these coils).
fn read_noise(
    data: &dyn SampleSource,
    table: &[u8],
    layout: &Layout,
    readouts: &[(usize, u16)],
    channels: u16,
) -> Result<Option<Arc<Vec<Complex32>>>> {
    if readouts.is_empty() || readouts.iter().any(|&(_, c)| c != channels) {
        return Ok(None);
    }
    let channels = usize::from(channels);
    let mut per_channel: Vec<Vec<Complex32>> = vec![Vec::new(); channels];
    let mut samples = Vec::new();
    for &(index, _) in readouts {
        let element = &table[index * layout.element_size..(index + 1) * layout.element_size];
        data.read(layout, element, index, &mut samples)?;
        if samples.len() % (2 * channels) != 0 {
            bail!(
                "noise acquisition {index}: {} values are not {channels} channels of complex samples",
                samples.len()
            );
        }
        let per = samples.len() / (2 * channels);
        for (c, values) in per_channel.iter_mut().enumerate() {
            let room = crate::npy::MAX_NOISE_SAMPLES.saturating_sub(values.len());
            values.extend(
                samples[2 * c * per..2 * (c + 1) * per]
                    .chunks_exact(2)
                    .take(room)
                    .map(|v| Complex32::new(v[0], v[1])),
            );
        }
    }
    Ok(Some(Arc::new(per_channel.concat())))
}

fn read_xml(dataset: &hdf5_reader::Dataset) -> Result<String> {
    let strings = h5(dataset.read_strings(), "/dataset/xml is not a string")?;
    let xml = strings
        .into_iter()
        .next()
        .context("/dataset/xml holds no string")?;
    if xml.len() > MAX_XML_BYTES {
        bail!(
            "/dataset/xml: {} bytes, more than the {MAX_XML_BYTES} allowed",
            xml.len()
        );
    }
    Ok(xml)
}

/// The grid of the file and how readouts map onto it.
struct Plan {
    coils: usize,
    /// Rows (encoded y), encoded columns, reconstruction columns.
    n_y: usize,
    n_x_encoded: usize,
    n_x: usize,
    /// Encoded partitions, and those kept (central).
    n_z: usize,
    n_z_kept: usize,
    step_1: Limit,
    step_2: Limit,
    slices: usize,
    field_mt: f32,
    fov_mm: [f32; 2],
    /// Partition thickness (3-D) or slice thickness (2-D), mm.
    thickness_mm: f32,
}

/// The k-space of one slice (2-D) or slab (3-D) on the encoded grid.
struct Slab {
    /// `[n_z][coils][n_y][n_x_encoded]`.
    kspace: Vec<Complex32>,
    /// Rows measured by any partition: `[n_y]`; the columns each row measured (any
    /// partition): `[n_y][n_x_encoded]`.
    rows: Vec<bool>,
    columns: Vec<bool>,
    lines_received: u32,
    duplicates: u32,
    geometry: [[f32; 3]; 4],
}

impl Plan {
    fn new(header: &MrdHeader, coils: usize) -> Result<Self> {
        let [ex, ey, ez] = header.encoded_matrix;
        let [rx, _, rz] = header.recon_matrix;
        let n_x = if rx < ex { rx } else { ex };
        let step_2 = header.step_2.unwrap_or(Limit {
            minimum: 0,
            maximum: u16::try_from(ez - 1).unwrap_or(u16::MAX),
            center: u16::try_from(ez / 2).unwrap_or(u16::MAX),
        });
        let n_z_kept = if ez > 1 && rz < ez { rz } else { ez };
        let slices = header.slice.map_or(1, |s| usize::from(s.maximum) + 1);
        let fov_x = if rx < ex {
            header.recon_fov_mm[0]
        } else {
            header.encoded_fov_mm[0]
        };
        let bytes = ez
            .checked_mul(coils)
            .and_then(|v| v.checked_mul(ey))
            .and_then(|v| v.checked_mul(ex))
            .and_then(|v| v.checked_mul(std::mem::size_of::<Complex32>()))
            .unwrap_or(usize::MAX);
        if bytes > MAX_SLAB_BYTES {
            bail!(
                "{coils} coils of an encoded {ex}x{ey}x{ez} grid need {bytes} bytes per slab, more than the {MAX_SLAB_BYTES} allowed"
            );
        }
        if u16::try_from(ey).is_err() || u16::try_from(n_x).is_err() || coils > usize::from(u8::MAX)
        {
            bail!("a {ey}x{n_x} grid of {coils} coils does not fit the slice format");
        }
        Ok(Self {
            coils,
            n_y: ey,
            n_x_encoded: ex,
            n_x,
            n_z: ez,
            n_z_kept,
            step_1: header.step_1,
            step_2,
            slices,
            field_mt: header.field_mt.unwrap_or(0.0),
            fov_mm: [header.encoded_fov_mm[1], fov_x],
            thickness_mm: header.encoded_fov_mm[2] / ez as f32,
        })
    }

    fn is_3d(&self) -> bool {
        self.n_z > 1
    }

    /// The `ScanStart` of repetition `scan_id` (the readout window is set per slice).
    fn start(&self, scan_id: u32) -> ScanStart {
        let n_slices = self.slices * if self.is_3d() { self.n_z_kept } else { 1 };
        ScanStart {
            version: sparsemap_wire::VERSION,
            scan_id,
            n_y: self.n_y as u16,
            n_x: self.n_x as u16,
            n_coils: self.coils as u8,
            n_slices: u16::try_from(n_slices).unwrap_or(u16::MAX),
            field_mt: self.field_mt,
            fov_mm: self.fov_mm,
            kx_first: 0,
            kx_count: self.n_x as u16,
        }
    }

    /// Reads the readouts of one slice or slab onto the encoded grid.
    fn fill(
        &self,
        data: &dyn SampleSource,
        table: &[u8],
        layout: &Layout,
        slice: u16,
        readouts: &[Readout],
    ) -> Result<Slab> {
        let (n_y, n_x, n_z, coils) = (self.n_y, self.n_x_encoded, self.n_z, self.coils);
        let len = n_z * coils * n_y * n_x;
        let mut kspace: Vec<Complex32> = Vec::new();
        kspace
            .try_reserve_exact(len)
            .map_err(|_| anyhow!("cannot allocate {len} k-space samples for slice {slice}"))?;
        kspace.resize(len, Complex32::default());
        // Averages per (partition, row).
        let mut averages = vec![0u32; n_z * n_y];
        let mut seen: HashSet<(u16, u16, u16)> = HashSet::new();
        let mut columns = vec![false; n_y * n_x];
        let mut duplicates = 0u32;
        let mut samples = Vec::new();
        for r in readouts {
            let row = placed(r.step_1, self.step_1, n_y).with_context(|| {
                format!(
                    "acquisition {}: kspace_encode_step_1 = {} is outside the encoding limits {}..={} (centre {}) of {n_y} rows",
                    r.index, r.step_1, self.step_1.minimum, self.step_1.maximum, self.step_1.center
                )
            })?;
            let partition = if self.is_3d() {
                placed(r.step_2, self.step_2, n_z).with_context(|| {
                    format!(
                        "acquisition {}: kspace_encode_step_2 = {} is outside the encoding limits {}..={} (centre {}) of {n_z} partitions",
                        r.index, r.step_2, self.step_2.minimum, self.step_2.maximum, self.step_2.center
                    )
                })?
            } else {
                0
            };
            if !seen.insert((r.step_1, r.step_2, r.average)) {
                duplicates += 1;
                continue;
            }
            let (n, pre, post) = (
                usize::from(r.samples),
                usize::from(r.discard_pre),
                usize::from(r.discard_post),
            );
            if pre + post >= n {
                bail!(
                    "acquisition {}: discard_pre {pre} + discard_post {post} leave none of its {n} samples",
                    r.index
                );
            }
            // Column of sample i: n_x / 2 - center_sample + i.
            let first = (n_x / 2) as isize - r.center_sample as isize;
            let lo = first + pre as isize;
            let hi = first + (n - post) as isize;
            if lo < 0 || hi > n_x as isize {
                bail!(
                    "acquisition {}: {n} samples with center_sample {} (discard {pre}/{post}) do not fit the {n_x} encoded columns",
                    r.index, r.center_sample
                );
            }
            // The samples: [channels][n] complex, as 2 n channels float32.
            let expected = coils * n * 2;
            let element =
                &table[r.index * layout.element_size..(r.index + 1) * layout.element_size];
            data.read(layout, element, r.index, &mut samples)?;
            if samples.len() != expected {
                bail!(
                    "acquisition {}: {} float32 data values, but {} channels x {n} samples need {expected}",
                    r.index,
                    samples.len(),
                    coils
                );
            }
            averages[partition * n_y + row] += 1;
            for c in 0..coils {
                let line = &samples[c * 2 * n..(c + 1) * 2 * n];
                let base = ((partition * coils + c) * n_y + row) * n_x;
                for i in pre..n - post {
                    let (re, im) = (line[2 * i], line[2 * i + 1]);
                    if !(re.is_finite() && im.is_finite()) {
                        bail!(
                            "acquisition {}: sample {i} of channel {c} is not finite ({re}, {im})",
                            r.index
                        );
                    }
                    let column = (first + i as isize) as usize;
                    kspace[base + column] += Complex32::new(re, im);
                }
            }
            for flag in &mut columns[row * n_x + lo as usize..row * n_x + hi as usize] {
                *flag = true;
            }
        }
        // Mean over averages.
        for (p_row, &count) in averages.iter().enumerate() {
            if count > 1 {
                let (p, row) = (p_row / n_y, p_row % n_y);
                let scale = 1.0 / count as f32;
                for c in 0..coils {
                    let base = ((p * coils + c) * n_y + row) * n_x;
                    for v in &mut kspace[base..base + n_x] {
                        *v *= scale;
                    }
                }
            }
        }
        let mut rows = vec![false; n_y];
        for (p_row, &count) in averages.iter().enumerate() {
            if count > 0 {
                rows[p_row % n_y] = true;
            }
        }
        let lines_received = averages.iter().filter(|&&c| c > 0).count() as u32;
        let geometry = readouts.first().map_or([[0.0; 3]; 4], |r| r.geometry);
        Ok(Slab {
            kspace,
            rows,
            columns,
            lines_received,
            duplicates,
            geometry,
        })
    }

    /// The slice jobs of one slice (2-D) or slab (3-D).
    fn jobs(
        &self,
        scan_id: u32,
        slice: u16,
        mut slab: Slab,
        summary: &MrdSummary,
        description: &Arc<ScanDescription>,
        noise: &Option<Arc<Vec<Complex32>>>,
    ) -> Result<Vec<SliceJob>> {
        let (n_y, n_xe, n_x, n_z, coils) =
            (self.n_y, self.n_x_encoded, self.n_x, self.n_z, self.coils);
        if self.is_3d() {
            inverse_fft_z(&mut slab.kspace, n_z, coils * n_y * n_xe);
        }
        // Readout window on the reconstruction grid: all columns once the oversampling is
        // removed, else the union of the rows' windows (each row's mask is its own).
        let oversampling = OversamplingRemoval::new(n_xe, n_x);
        let (kx_first, kx_count) = if oversampling.is_some() {
            (0, n_x)
        } else {
            let measured = |x: usize| (0..n_y).any(|row| slab.columns[row * n_xe + x]);
            let first = (0..n_xe).find(|&x| measured(x)).unwrap_or(0);
            let last = (0..n_xe).rev().find(|&x| measured(x)).unwrap_or(first);
            (first, last + 1 - first)
        };
        let expected_rows = usize::from(self.step_1.maximum - self.step_1.minimum) + 1;
        let expected_partitions = if self.is_3d() {
            usize::from(self.step_2.maximum - self.step_2.minimum) + 1
        } else {
            1
        };
        let expected = u32::try_from(expected_rows * expected_partitions).unwrap_or(u32::MAX);
        let kept_first = (n_z - self.n_z_kept) / 2;
        let mut jobs = Vec::new();
        let mut row_buffer = vec![Complex32::default(); n_xe];
        for p in kept_first..kept_first + self.n_z_kept.min(n_z) {
            let plane = &slab.kspace[p * coils * n_y * n_xe..(p + 1) * coils * n_y * n_xe];
            let mut kspace = vec![Complex32::default(); coils * n_y * n_x];
            let mut mask = vec![false; coils * n_y * n_x];
            for c in 0..coils {
                for row in 0..n_y {
                    if !slab.rows[row] {
                        continue;
                    }
                    let src = &plane[(c * n_y + row) * n_xe..(c * n_y + row + 1) * n_xe];
                    let dst = (c * n_y + row) * n_x;
                    match &oversampling {
                        Some(removal) => {
                            row_buffer.copy_from_slice(src);
                            removal.apply(&mut row_buffer, &mut kspace[dst..dst + n_x]);
                        }
                        None => kspace[dst..dst + n_x].copy_from_slice(src),
                    }
                    let row_mask = &mut mask[dst..dst + n_x];
                    if oversampling.is_some() {
                        row_mask.fill(true);
                    } else {
                        row_mask.copy_from_slice(&slab.columns[row * n_xe..(row + 1) * n_xe]);
                    }
                }
            }
            let index = if self.is_3d() {
                usize::from(slice) * self.n_z_kept + (p - kept_first)
            } else {
                usize::from(slice)
            };
            let index = u16::try_from(index).context("more than 65535 slices")?;
            let [position, read_dir, phase_dir, slice_dir] = slab.geometry;
            let offset = if self.is_3d() {
                (p as f32 - (n_z / 2) as f32) * self.thickness_mm
            } else {
                0.0
            };
            let centre_mm = [0, 1, 2].map(|k| position[k] + offset * slice_dir[k]);
            let mut start = self.start(scan_id);
            start.kx_first = kx_first as u16;
            start.kx_count = kx_count as u16;
            jobs.push(SliceJob {
                start,
                stats: SliceStats {
                    scan_id,
                    slice: index,
                    lines_received: slab.lines_received,
                    lines_missing: expected.saturating_sub(slab.lines_received),
                    duplicates: slab.duplicates,
                    invalid_samples: 0,
                    corrupt: 0,
                    reordered: 0,
                    faults: 0,
                    fault_kinds: FaultKinds(0),
                    seq_first: None,
                    seq_last: None,
                    closed_by: Some(ClosedBy::ScanEnd(EndStatus::Complete)),
                    complete: true,
                },
                kspace,
                mask,
                first_line: None,
                last_line: None,
                previews: 0,
                preview_seconds: 0.0,
                geometry: Some(SliceGeometry {
                    centre_mm,
                    read_dir,
                    phase_dir,
                    slice_dir,
                    thickness_mm: self.thickness_mm,
                }),
                description: Some(Arc::clone(description)),
                mrd: Some(Box::new(MrdSliceInfo {
                    skipped: summary.skipped,
                    calibration_used: summary.calibration_used,
                    readout_oversampling: [n_xe as u16, n_x as u16],
                    partition: self
                        .is_3d()
                        .then(|| [(p - kept_first) as u16, self.n_z_kept as u16]),
                })),
                noise: noise.clone(),
            });
        }
        Ok(jobs)
    }
}

/// Grid index of encoding step `step` with limits `limit` on `n` points:
/// `step - center + n / 2`, or `None` outside the limits or the grid.
fn placed(step: u16, limit: Limit, n: usize) -> Option<usize> {
    if step < limit.minimum || step > limit.maximum {
        return None;
    }
    let index = step as isize - limit.center as isize + (n / 2) as isize;
    (0..n as isize).contains(&index).then_some(index as usize)
}

/// Where the samples of acquisition `index` (table element `element`) come from: the file's
/// vlen `data` member, or the messages of an MRD stream.
trait SampleSource {
    fn read(&self, layout: &Layout, element: &[u8], index: usize, out: &mut Vec<f32>)
        -> Result<()>;
}

impl SampleSource for hdf5_reader::Dataset {
    fn read(
        &self,
        layout: &Layout,
        element: &[u8],
        index: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        read_data(self, layout, element, index, out)
    }
}

impl SampleSource for &[Vec<f32>] {
    fn read(&self, _: &Layout, _: &[u8], index: usize, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend_from_slice(self.get(index).context("no samples")?);
        Ok(())
    }
}

/// Reads the `data` vlen sequence of table element `element` as float32 values into `out`.
fn read_data(
    data: &hdf5_reader::Dataset,
    layout: &Layout,
    element: &[u8],
    index: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let reference = &element[layout.data..layout.data + layout.reference_size];
    let bytes = data
        .resolve_vlen_reference_bytes(reference, 4)
        .map_err(|e| anyhow!("acquisition {index}: cannot read its data: {e}"))?;
    out.clear();
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

/// Unitary centred inverse FFT along the first axis of `[n][stride]` data (DESIGN §3.2 in
/// one dimension: `x = fftshift(ifft(ifftshift(k))) * sqrt(n)` ... see [`centred_inverse`]).
fn inverse_fft_z(data: &mut [Complex32], n: usize, stride: usize) {
    let mut planner = rustfft::FftPlanner::<f32>::new();
    let fft = planner.plan_fft_inverse(n);
    let mut column = vec![Complex32::default(); n];
    let mut scratch = vec![Complex32::default(); fft.get_inplace_scratch_len()];
    for j in 0..stride {
        for (z, v) in column.iter_mut().enumerate() {
            *v = data[z * stride + j];
        }
        centred(&*fft, &mut column, &mut scratch);
        for (z, v) in column.iter().enumerate() {
            data[z * stride + j] = *v;
        }
    }
}

/// `x <- fftshift(T(ifftshift(x))) / sqrt(n)` for the unnormalised transform `T` (forward or
/// inverse): the unitary centred transform of DESIGN §3.2 in one dimension.
fn centred(fft: &dyn rustfft::Fft<f32>, x: &mut [Complex32], scratch: &mut [Complex32]) {
    let n = x.len();
    x.rotate_left(n / 2); // ifftshift
    fft.process_with_scratch(x, scratch);
    x.rotate_right(n / 2); // fftshift
    let scale = 1.0 / (n as f32).sqrt();
    for v in x.iter_mut() {
        *v *= scale;
    }
}

/// Removal of readout oversampling (`n_encoded` -> `n` columns): unitary centred inverse FFT
/// along x, the central `n` image columns, unitary centred FFT back.
struct OversamplingRemoval {
    inverse: Arc<dyn rustfft::Fft<f32>>,
    forward: Arc<dyn rustfft::Fft<f32>>,
    scratch: std::cell::RefCell<Vec<Complex32>>,
    n: usize,
}

impl OversamplingRemoval {
    fn new(n_encoded: usize, n: usize) -> Option<Self> {
        if n >= n_encoded {
            return None;
        }
        let mut planner = rustfft::FftPlanner::<f32>::new();
        let inverse = planner.plan_fft_inverse(n_encoded);
        let forward = planner.plan_fft_forward(n);
        let len = inverse
            .get_inplace_scratch_len()
            .max(forward.get_inplace_scratch_len());
        Some(Self {
            inverse,
            forward,
            scratch: std::cell::RefCell::new(vec![Complex32::default(); len]),
            n,
        })
    }

    /// `row` (encoded k-space, destroyed) -> `out` (`n` k-space columns).
    fn apply(&self, row: &mut [Complex32], out: &mut [Complex32]) {
        let mut scratch = self.scratch.borrow_mut();
        centred(&*self.inverse, row, &mut scratch);
        let first = row.len() / 2 - self.n / 2;
        out.copy_from_slice(&row[first..first + self.n]);
        centred(&*self.forward, out, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ismrmrd.h: ACQ_IS_NOISE_MEASUREMENT is flag 19, i.e. bit 18 (262144, what the C++
    /// generator writes for its noise scan).
    #[test]
    fn flag_numbers_are_one_based() {
        assert!(flags::is_set(262_144, flags::NOISE_MEASUREMENT));
        assert!(!flags::is_set(262_144, flags::PARALLEL_CALIBRATION));
        assert!(flags::is_set(1 << 22, flags::NAVIGATION_DATA));
        assert!(flags::is_set(1 << 23, flags::PHASECORR_DATA));
    }

    const XML: &str = r#"<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <experimentalConditions><H1resonanceFrequency_Hz>63870000</H1resonanceFrequency_Hz></experimentalConditions>
 <encoding>
  <encodedSpace><matrixSize><x>256</x><y>128</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>600</x><y>300</y><z>6</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>128</x><y>128</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>300</x><y>300</y><z>6</z></fieldOfView_mm></reconSpace>
  <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>127</maximum><center>64</center></kspace_encoding_step_1></encodingLimits>
  <trajectory>cartesian</trajectory>
 </encoding>
 <sequenceParameters><TR>4.5</TR><TE>2.1</TE><flipAngle_deg>12</flipAngle_deg></sequenceParameters>
</ismrmrdHeader>"#;

    #[test]
    fn header_field_from_the_larmor_frequency_or_the_system_field() {
        let header = MrdHeader::parse(XML).unwrap();
        assert_eq!(header.encoded_matrix, [256, 128, 1]);
        assert_eq!(header.recon_matrix, [128, 128, 1]);
        assert_eq!(header.recon_fov_mm, [300.0, 300.0, 6.0]);
        assert_eq!(
            header.step_1,
            Limit {
                minimum: 0,
                maximum: 127,
                center: 64
            }
        );
        // 63.87 MHz / 42.577478 MHz/T = 1.50009 T.
        assert!((header.field_mt.unwrap() - 1500.09).abs() < 0.01);
        assert_eq!(header.description.tr_ms, Some(4.5));
        assert_eq!(header.description.flip_angle_deg, Some(12.0));
        let with_system = XML.replace(
            "<experimentalConditions>",
            "<acquisitionSystemInformation><systemFieldStrength_T>0.047</systemFieldStrength_T></acquisitionSystemInformation><experimentalConditions>",
        );
        let header = MrdHeader::parse(&with_system).unwrap();
        assert!((header.field_mt.unwrap() - 47.0).abs() < 1e-3);
    }

    #[test]
    fn header_errors_name_the_element() {
        let bad = XML.replace("<x>256</x>", "<x>many</x>");
        let error = format!("{:#}", MrdHeader::parse(&bad).unwrap_err());
        assert!(error.contains("encodedSpace/matrixSize/x"), "{error}");
        let error = format!("{:#}", MrdHeader::parse("<a/>").unwrap_err());
        assert!(error.contains("not <ismrmrdHeader>"), "{error}");
        assert!(MrdHeader::parse("<ismrmrdHeader>").is_err());
    }

    #[test]
    fn rows_are_placed_from_the_limits_centre() {
        let limit = Limit {
            minimum: 0,
            maximum: 63,
            center: 32,
        };
        assert_eq!(placed(32, limit, 64), Some(32));
        assert_eq!(placed(0, limit, 64), Some(0));
        assert_eq!(placed(64, limit, 64), None);
        // Partial Fourier: rows 20..=63 of a centre-32 encoding in a 64-row grid.
        let partial = Limit {
            minimum: 20,
            ..limit
        };
        assert_eq!(placed(19, partial, 64), None);
        assert_eq!(placed(20, partial, 64), Some(20));
    }

    /// Unitary centred DFT of a short vector, by definition (the oracle).
    fn dft(x: &[Complex32], inverse: bool) -> Vec<Complex32> {
        let n = x.len();
        let sign = if inverse { 1.0 } else { -1.0 };
        (0..n)
            .map(|k| {
                let mut acc = num_complex::Complex64::default();
                for (j, v) in x.iter().enumerate() {
                    let (kc, jc) = (k as f64 - (n / 2) as f64, j as f64 - (n / 2) as f64);
                    let phase = sign * 2.0 * std::f64::consts::PI * kc * jc / n as f64;
                    acc += num_complex::Complex64::new(f64::from(v.re), f64::from(v.im))
                        * num_complex::Complex64::from_polar(1.0, phase);
                }
                acc /= (n as f64).sqrt();
                Complex32::new(acc.re as f32, acc.im as f32)
            })
            .collect()
    }

    #[test]
    fn oversampling_removal_is_the_central_crop_of_the_image() {
        let image: Vec<Complex32> = (0..8)
            .map(|i| Complex32::new(i as f32 + 1.0, (i * i) as f32 * 0.1))
            .collect();
        let mut padded = vec![Complex32::default(); 16];
        padded[4..12].copy_from_slice(&image);
        let mut row = dft(&padded, false);
        let mut out = vec![Complex32::default(); 8];
        OversamplingRemoval::new(16, 8)
            .unwrap()
            .apply(&mut row, &mut out);
        let want = dft(&image, false);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).norm() < 1e-5, "{a} vs {b}");
        }
        assert!(OversamplingRemoval::new(8, 8).is_none());
    }

    #[test]
    fn inverse_fft_along_z_is_the_unitary_centred_inverse() {
        // Two interleaved columns (stride 2) of 5 (odd) and then 4 points.
        for n in [5usize, 4] {
            let column: Vec<Complex32> = (0..n)
                .map(|i| Complex32::new(i as f32 - 1.0, 0.5 * i as f32))
                .collect();
            let mut data = vec![Complex32::default(); 2 * n];
            for (z, v) in column.iter().enumerate() {
                data[2 * z] = *v;
                data[2 * z + 1] = *v * 2.0;
            }
            inverse_fft_z(&mut data, n, 2);
            let want = dft(&column, true);
            for z in 0..n {
                assert!((data[2 * z] - want[z]).norm() < 1e-5, "n {n} z {z}");
                assert!((data[2 * z + 1] - want[z] * 2.0).norm() < 1e-5);
            }
        }
    }
}
