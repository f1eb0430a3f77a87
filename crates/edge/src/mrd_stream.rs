//! The MRD v1 streaming protocol that Gadgetron clients speak (DESIGN §7): framing only.
//!
//! Every message is a little-endian `u16` id and its body:
//!
//! | id | message | body |
//! |---|---|---|
//! | 1 | config file | 1024 bytes, a NUL-padded name |
//! | 2 | config text | `u32` length, text |
//! | 3 | header | `u32` length, the ISMRMRD XML header |
//! | 4 | close | nothing |
//! | 5 | text | `u32` length, text |
//! | 1008 | acquisition | the packed 340-byte `ISMRMRD_AcquisitionHeader`, then `number_of_samples × trajectory_dimensions` float32 (trajectory), then `active_channels × number_of_samples` complex float32 |
//! | 1022 | image | the packed 198-byte `ISMRMRD_ImageHeader`, `u64` attribute length, attribute text, the pixels |
//! | 1026 | waveform | the 40-byte `ISMRMRD_WaveformHeader`, `channels × number_of_samples` `u32` |
//!
//! Sizes in a message are checked before anything is allocated for it ([`MAX_TEXT_BYTES`],
//! [`MAX_ACQUISITION_BYTES`]); an unknown id, a truncated message or an oversize one is an
//! error saying which, never a panic.

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use num_complex::Complex32;
use std::io::{ErrorKind, Read, Write};

pub const CONFIG_FILE: u16 = 1;
pub const CONFIG_TEXT: u16 = 2;
pub const HEADER: u16 = 3;
pub const CLOSE: u16 = 4;
pub const TEXT: u16 = 5;
pub const ACQUISITION: u16 = 1008;
pub const IMAGE: u16 = 1022;
pub const WAVEFORM: u16 = 1026;

/// Bytes of the packed acquisition header (ismrmrd.h, `#pragma pack(2)`).
pub const ACQUISITION_HEADER_BYTES: usize = 340;
/// Bytes of the packed image header.
pub const IMAGE_HEADER_BYTES: usize = 198;
/// Bytes of the waveform header (natural alignment).
pub const WAVEFORM_HEADER_BYTES: usize = 40;
/// Bytes of a config-file message body.
pub const CONFIG_FILE_BYTES: usize = 1024;
/// Largest text, config text or XML header.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// Largest acquisition body (trajectory and samples).
pub const MAX_ACQUISITION_BYTES: usize = 64 << 20;

/// Offsets in the packed acquisition header of the members the reconstruction reads.
pub mod acquisition_offsets {
    pub const FLAGS: usize = 2;
    pub const NUMBER_OF_SAMPLES: usize = 34;
    pub const ACTIVE_CHANNELS: usize = 38;
    pub const DISCARD_PRE: usize = 168;
    pub const DISCARD_POST: usize = 170;
    pub const CENTER_SAMPLE: usize = 172;
    pub const ENCODING_SPACE_REF: usize = 174;
    pub const TRAJECTORY_DIMENSIONS: usize = 176;
    pub const POSITION: usize = 182;
    pub const READ_DIR: usize = 194;
    pub const PHASE_DIR: usize = 206;
    pub const SLICE_DIR: usize = 218;
    pub const STEP_1: usize = 242;
    pub const STEP_2: usize = 244;
    pub const AVERAGE: usize = 246;
    pub const SLICE: usize = 248;
    pub const CONTRAST: usize = 250;
    pub const PHASE: usize = 252;
    pub const REPETITION: usize = 254;
    pub const SET: usize = 256;
}

/// One message of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    ConfigFile(String),
    ConfigText(String),
    Header(String),
    Close,
    Text(String),
    /// The packed header and the samples, `[channels][samples]` interleaved re/im (the
    /// trajectory is read and dropped: Cartesian only).
    Acquisition { header: Vec<u8>, data: Vec<f32> },
    /// Read and dropped (physiological waveforms).
    Waveform,
    /// An image sent to us (we are the server: read and dropped).
    Image,
}

fn read_exact_or(reader: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            anyhow::anyhow!("the stream ends inside {what}")
        } else {
            anyhow::anyhow!("reading {what}: {e}")
        }
    })
}

fn read_u32(reader: &mut impl Read, what: &str) -> Result<u32> {
    let mut b = [0u8; 4];
    read_exact_or(reader, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

fn read_text(reader: &mut impl Read, what: &str) -> Result<String> {
    let length = read_u32(reader, what)? as usize;
    if length > MAX_TEXT_BYTES {
        bail!("{what}: {length} bytes, more than the {MAX_TEXT_BYTES} allowed");
    }
    let mut bytes = vec![0u8; length];
    read_exact_or(reader, &mut bytes, what)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.trim_end_matches('\0').to_string())
}

fn skip(reader: &mut impl Read, bytes: u64, what: &str) -> Result<()> {
    let skipped = std::io::copy(&mut reader.take(bytes), &mut std::io::sink())
        .with_context(|| format!("reading {what}"))?;
    if skipped < bytes {
        bail!("the stream ends inside {what}");
    }
    Ok(())
}

pub fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

pub fn f32x3_at(bytes: &[u8], at: usize) -> [f32; 3] {
    std::array::from_fn(|i| {
        let o = at + 4 * i;
        f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
    })
}

/// Reads the next message; `None` when the stream ends cleanly before a message id.
pub fn read_message(reader: &mut impl Read) -> Result<Option<Message>> {
    let mut id = [0u8; 2];
    match reader.read(&mut id[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => bail!("reading a message id: {e}"),
    }
    read_exact_or(reader, &mut id[1..], "a message id")?;
    let message = match u16::from_le_bytes(id) {
        CONFIG_FILE => {
            let mut name = vec![0u8; CONFIG_FILE_BYTES];
            read_exact_or(reader, &mut name, "a config-file message")?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Message::ConfigFile(String::from_utf8_lossy(&name[..end]).into_owned())
        }
        CONFIG_TEXT => Message::ConfigText(read_text(reader, "a config-text message")?),
        HEADER => Message::Header(read_text(reader, "the XML header message")?),
        CLOSE => Message::Close,
        TEXT => Message::Text(read_text(reader, "a text message")?),
        ACQUISITION => {
            let mut header = vec![0u8; ACQUISITION_HEADER_BYTES];
            read_exact_or(reader, &mut header, "an acquisition header")?;
            use acquisition_offsets as at;
            let samples = usize::from(u16_at(&header, at::NUMBER_OF_SAMPLES));
            let channels = usize::from(u16_at(&header, at::ACTIVE_CHANNELS));
            let trajectory = usize::from(u16_at(&header, at::TRAJECTORY_DIMENSIONS));
            let trajectory_bytes = samples * trajectory * 4;
            let data_bytes = samples * channels * 8;
            if trajectory_bytes + data_bytes > MAX_ACQUISITION_BYTES {
                bail!(
                    "an acquisition of {channels} channels x {samples} samples (trajectory {trajectory}) is more than the {MAX_ACQUISITION_BYTES} bytes allowed"
                );
            }
            skip(reader, trajectory_bytes as u64, "an acquisition's trajectory")?;
            let mut bytes = vec![0u8; data_bytes];
            read_exact_or(reader, &mut bytes, "an acquisition's samples")?;
            let data = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Message::Acquisition { header, data }
        }
        WAVEFORM => {
            let mut header = [0u8; WAVEFORM_HEADER_BYTES];
            read_exact_or(reader, &mut header, "a waveform header")?;
            let samples = u64::from(u16_at(&header, 28));
            let channels = u64::from(u16_at(&header, 30));
            skip(reader, samples * channels * 4, "a waveform's samples")?;
            Message::Waveform
        }
        IMAGE => {
            let mut header = [0u8; IMAGE_HEADER_BYTES];
            read_exact_or(reader, &mut header, "an image header")?;
            let mut length = [0u8; 8];
            read_exact_or(reader, &mut length, "an image's attribute length")?;
            let attributes = u64::from_le_bytes(length);
            let pixels = [16, 18, 20]
                .iter()
                .map(|&o| u64::from(u16_at(&header, o)))
                .product::<u64>()
                * u64::from(u16_at(&header, 34));
            let size = match u16_at(&header, 2) {
                1 | 2 => 2,
                3..=5 => 4,
                6 | 7 => 8,
                8 => 16,
                other => bail!("an image of unknown data type {other}"),
            };
            let bytes = attributes.saturating_add(pixels.saturating_mul(size));
            if bytes > MAX_ACQUISITION_BYTES as u64 {
                bail!("an image message of {bytes} bytes is more than the {MAX_ACQUISITION_BYTES} allowed");
            }
            skip(reader, bytes, "an image message")?;
            Message::Image
        }
        other => bail!("unknown MRD message id {other}"),
    };
    Ok(Some(message))
}

/// Where a returned image lies and which it is (the image header's fields).
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    pub measurement_uid: u32,
    pub field_of_view_mm: [f32; 3],
    pub position: [f32; 3],
    pub read_dir: [f32; 3],
    pub phase_dir: [f32; 3],
    pub slice_dir: [f32; 3],
    pub slice: u16,
    pub repetition: u16,
    pub image_index: u16,
    pub image_series_index: u16,
}

/// Writes one image message: complex float32 (`ISMRMRD_CXFLOAT`, image type complex),
/// `matrix_size = (n_x, n_y, 1)`, one channel, `x` fastest; `attributes` is the ISMRMRD
/// meta XML.
pub fn write_image(
    writer: &mut impl Write,
    image: &Array2<Complex32>,
    info: &ImageInfo,
    attributes: &str,
) -> Result<()> {
    let (n_y, n_x) = image.dim();
    let mut header = [0u8; IMAGE_HEADER_BYTES];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &1u16.to_le_bytes());
    put(2, &7u16.to_le_bytes());
    put(12, &info.measurement_uid.to_le_bytes());
    put(16, &u16::try_from(n_x)?.to_le_bytes());
    put(18, &u16::try_from(n_y)?.to_le_bytes());
    put(20, &1u16.to_le_bytes());
    for (i, v) in info.field_of_view_mm.iter().enumerate() {
        put(22 + 4 * i, &v.to_le_bytes());
    }
    put(34, &1u16.to_le_bytes());
    for (at, vector) in [(36, info.position), (48, info.read_dir), (60, info.phase_dir), (72, info.slice_dir)] {
        for (i, v) in vector.iter().enumerate() {
            put(at + 4 * i, &v.to_le_bytes());
        }
    }
    put(98, &info.slice.to_le_bytes());
    put(104, &info.repetition.to_le_bytes());
    put(124, &5u16.to_le_bytes());
    put(126, &info.image_index.to_le_bytes());
    put(128, &info.image_series_index.to_le_bytes());
    let attributes = attributes.as_bytes();
    put(194, &u32::try_from(attributes.len())?.to_le_bytes());
    let mut message = Vec::with_capacity(2 + IMAGE_HEADER_BYTES + 8 + attributes.len() + 8 * n_y * n_x);
    message.extend_from_slice(&IMAGE.to_le_bytes());
    message.extend_from_slice(&header);
    message.extend_from_slice(&(attributes.len() as u64).to_le_bytes());
    message.extend_from_slice(attributes);
    for z in image.iter() {
        message.extend_from_slice(&z.re.to_le_bytes());
        message.extend_from_slice(&z.im.to_le_bytes());
    }
    writer.write_all(&message).context("sending an image message")
}

/// Writes a text message (e.g. an error for the client's log).
pub fn write_text(writer: &mut impl Write, text: &str) -> Result<()> {
    let mut message = Vec::with_capacity(6 + text.len());
    message.extend_from_slice(&TEXT.to_le_bytes());
    message.extend_from_slice(&u32::try_from(text.len())?.to_le_bytes());
    message.extend_from_slice(text.as_bytes());
    writer.write_all(&message).context("sending a text message")
}

/// Writes the close message.
pub fn write_close(writer: &mut impl Write) -> Result<()> {
    writer.write_all(&CLOSE.to_le_bytes()).context("sending the close message")?;
    writer.flush().context("sending the close message")
}

/// The ISMRMRD meta XML of a returned image: `name`/`value` pairs.
pub fn meta_xml(pairs: &[(&str, String)]) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut xml = String::from("<?xml version=\"1.0\"?><ismrmrdMeta>");
    for (name, value) in pairs {
        xml += &format!(
            "<meta><name>{}</name><value>{}</value></meta>",
            escape(name),
            escape(value)
        );
    }
    xml + "</ismrmrdMeta>"
}

/// Most acquisition sample bytes buffered before a slice is complete (`ACQ_LAST_IN_SLICE` or
/// close).
pub const MAX_BUFFERED_BYTES: usize = 512 << 20;
/// `ACQ_LAST_IN_SLICE` (ismrmrd.h flag 8).
const LAST_IN_SLICE: u32 = 8;

/// What one connection gave.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionSummary {
    pub acquisitions: usize,
    pub slices: usize,
    pub images_sent: usize,
    pub failed: usize,
}

/// Serves one MRD client: reads its messages, reconstructs each slice once its last readout
/// (`ACQ_LAST_IN_SLICE`) or the close message arrives, writes its files through `worker`
/// (exactly as `recon --input scan.h5` would), calls `on_record` with its JSON record and
/// sends the image back; answers the client's close with a close. An error is sent to the
/// client as a text message before the close, and returned.
pub fn serve_connection(
    reader: impl Read,
    writer: impl Write,
    worker: &mut crate::worker::Worker,
    on_record: &mut dyn FnMut(&crate::worker::SliceRecord) -> Result<()>,
) -> Result<ConnectionSummary> {
    let mut reader = std::io::BufReader::new(reader);
    let mut writer = std::io::BufWriter::new(writer);
    let mut summary = ConnectionSummary::default();
    let result = serve_messages(&mut reader, &mut writer, worker, on_record, &mut summary);
    if let Err(e) = &result {
        let _ = write_text(&mut writer, &format!("sparsemap: error: {e:#}"));
    }
    let closed = write_close(&mut writer);
    result?;
    closed?;
    Ok(summary)
}

fn serve_messages(
    reader: &mut impl Read,
    writer: &mut impl Write,
    worker: &mut crate::worker::Worker,
    on_record: &mut dyn FnMut(&crate::worker::SliceRecord) -> Result<()>,
    summary: &mut ConnectionSummary,
) -> Result<()> {
    let mut xml: Option<String> = None;
    let mut headers = Vec::new();
    let mut samples: Vec<Vec<f32>> = Vec::new();
    let mut buffered = 0usize;
    loop {
        let message = read_message(reader)?;
        let last = match message {
            None => {
                eprintln!("sparsemap: the MRD client closed the connection without a close message");
                true
            }
            Some(Message::Close) => true,
            Some(Message::Header(text)) => {
                xml = Some(text);
                false
            }
            Some(Message::Acquisition { header, data }) => {
                summary.acquisitions += 1;
                buffered += data.len() * 4;
                if buffered > MAX_BUFFERED_BYTES {
                    bail!("more than {MAX_BUFFERED_BYTES} bytes of samples without a slice's last readout (ACQ_LAST_IN_SLICE)");
                }
                let flags = u64_at(&header, acquisition_offsets::FLAGS);
                headers.extend_from_slice(&header);
                samples.push(data);
                if crate::mrd::flags::is_set(flags, LAST_IN_SLICE) {
                    flush(xml.as_deref(), &mut headers, &mut samples, worker, writer, on_record, summary)?;
                    buffered = 0;
                }
                false
            }
            Some(_) => false,
        };
        if last {
            flush(xml.as_deref(), &mut headers, &mut samples, worker, writer, on_record, summary)?;
            return Ok(());
        }
    }
}

fn flush(
    xml: Option<&str>,
    headers: &mut Vec<u8>,
    samples: &mut Vec<Vec<f32>>,
    worker: &mut crate::worker::Worker,
    writer: &mut impl Write,
    on_record: &mut dyn FnMut(&crate::worker::SliceRecord) -> Result<()>,
    summary: &mut ConnectionSummary,
) -> Result<()> {
    if samples.is_empty() {
        return Ok(());
    }
    let xml = xml.context("acquisitions arrived before the XML header message")?;
    crate::mrd::assemble_stream(xml, headers, samples, &mut |event| {
        match event {
            crate::ingest::Event::Scan(start) => worker.on_scan(&start),
            crate::ingest::Event::Slice(job) => {
                let info = image_info(&job);
                let (record, image) = worker.on_slice_with_image(job);
                summary.slices += 1;
                summary.failed += usize::from(record.status != "ok");
                on_record(&record)?;
                if let Some(image) = image {
                    let meta = meta_xml(&[
                        ("Software", format!("sparsemap {}", env!("CARGO_PKG_VERSION"))),
                        ("Model", record.model.clone().unwrap_or_else(|| "fixed lambda".into())),
                        ("CoilCombination", record.coil_combination.clone().unwrap_or_else(|| "single coil".into())),
                        ("Files", record.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(";")),
                    ]);
                    write_image(writer, &image, &info, &meta)?;
                    writer.flush().context("sending an image message")?;
                    summary.images_sent += 1;
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    headers.clear();
    samples.clear();
    Ok(())
}

fn image_info(job: &crate::ingest::SliceJob) -> ImageInfo {
    let slice = job.stats.slice;
    let (geometry, thickness) = job.geometry.map_or(([[0.0; 3]; 4], 0.0), |g| {
        ([g.centre_mm, g.read_dir, g.phase_dir, g.slice_dir], g.thickness_mm)
    });
    ImageInfo {
        measurement_uid: 0,
        field_of_view_mm: [job.start.fov_mm[1], job.start.fov_mm[0], thickness],
        position: geometry[0],
        read_dir: geometry[1],
        phase_dir: geometry[2],
        slice_dir: geometry[3],
        slice,
        repetition: u16::try_from(job.start.scan_id).unwrap_or(u16::MAX),
        image_index: slice.saturating_add(1),
        image_series_index: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquisition_message(samples: u16, channels: u16, trajectory: u16) -> Vec<u8> {
        let mut header = vec![0u8; ACQUISITION_HEADER_BYTES];
        header[acquisition_offsets::NUMBER_OF_SAMPLES..][..2].copy_from_slice(&samples.to_le_bytes());
        header[acquisition_offsets::ACTIVE_CHANNELS..][..2].copy_from_slice(&channels.to_le_bytes());
        header[acquisition_offsets::TRAJECTORY_DIMENSIONS..][..2].copy_from_slice(&trajectory.to_le_bytes());
        let mut bytes = ACQUISITION.to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend(std::iter::repeat_n(0xAB, usize::from(samples) * usize::from(trajectory) * 4));
        for i in 0..(usize::from(samples) * usize::from(channels) * 2).min(1 << 16) {
            bytes.extend_from_slice(&(i as f32).to_le_bytes());
        }
        bytes
    }

    #[test]
    fn messages_are_read_in_order_and_the_trajectory_dropped() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&CONFIG_FILE.to_le_bytes());
        let mut name = b"default.xml".to_vec();
        name.resize(CONFIG_FILE_BYTES, 0);
        stream.extend_from_slice(&name);
        stream.extend_from_slice(&HEADER.to_le_bytes());
        stream.extend_from_slice(&5u32.to_le_bytes());
        stream.extend_from_slice(b"<a/>\0");
        stream.extend(acquisition_message(3, 2, 2));
        stream.extend_from_slice(&CLOSE.to_le_bytes());
        let mut reader = &stream[..];
        assert_eq!(read_message(&mut reader).unwrap(), Some(Message::ConfigFile("default.xml".into())));
        assert_eq!(read_message(&mut reader).unwrap(), Some(Message::Header("<a/>".into())));
        match read_message(&mut reader).unwrap() {
            Some(Message::Acquisition { header, data }) => {
                assert_eq!(header.len(), ACQUISITION_HEADER_BYTES);
                assert_eq!(data, (0..12).map(|i| i as f32).collect::<Vec<_>>());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read_message(&mut reader).unwrap(), Some(Message::Close));
        assert_eq!(read_message(&mut reader).unwrap(), None);
    }

    #[test]
    fn an_image_message_has_the_layout_of_ismrmrd_h() {
        let image = Array2::from_shape_fn((2, 3), |(y, x)| Complex32::new(x as f32, y as f32));
        let info = ImageInfo { slice: 4, repetition: 1, image_index: 5, ..ImageInfo::default() };
        let mut bytes = Vec::new();
        write_image(&mut bytes, &image, &info, "<m/>").unwrap();
        assert_eq!(u16_at(&bytes, 0), IMAGE);
        let h = &bytes[2..2 + IMAGE_HEADER_BYTES];
        assert_eq!((u16_at(h, 2), u16_at(h, 16), u16_at(h, 18), u16_at(h, 20), u16_at(h, 34)), (7, 3, 2, 1, 1));
        assert_eq!((u16_at(h, 98), u16_at(h, 104), u16_at(h, 124), u16_at(h, 126)), (4, 1, 5, 5));
        let rest = &bytes[2 + IMAGE_HEADER_BYTES..];
        assert_eq!(u64_at(rest, 0), 4);
        assert_eq!(&rest[8..12], b"<m/>");
        assert_eq!(rest.len(), 12 + 6 * 8);
        // And it reads back as an image message.
        assert_eq!(read_message(&mut &bytes[..]).unwrap(), Some(Message::Image));
    }

    #[test]
    fn bad_streams_are_errors_saying_what() {
        let cut = acquisition_message(4, 1, 0);
        let text = format!("{:#}", read_message(&mut &cut[..cut.len() - 1]).unwrap_err());
        assert!(text.contains("ends inside an acquisition's samples"), "{text}");
        let text = format!("{:#}", read_message(&mut &[0xFFu8, 0x7F][..]).unwrap_err());
        assert!(text.contains("unknown MRD message id 32767"), "{text}");
        let mut huge = HEADER.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(format!("{:#}", read_message(&mut &huge[..]).unwrap_err()).contains("more than"));
        let wide = acquisition_message(u16::MAX, u16::MAX, 0);
        assert!(format!("{:#}", read_message(&mut &wide[..2 + ACQUISITION_HEADER_BYTES]).unwrap_err()).contains("more than"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let mut reader = &bytes[..];
            for _ in 0..64 {
                match read_message(&mut reader) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
