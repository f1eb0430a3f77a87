//! DICOM C-STORE to a PACS, and the send queue that makes sure nothing is lost (DESIGN §7).
//!
//! The queue is the DICOM directory itself: every `*.dcm` file in it that `sent.jsonl` (in
//! the same directory) does not record as stored at a destination is still to be sent there.
//! A file is recorded only after the PACS answered its C-STORE with a success or warning
//! status, so a PACS that is down, refuses the association or rejects an instance leaves the
//! file queued, and `sparsemap send DIR --to AE@HOST:PORT` sends what is left.
//!
//! One association carries a batch: its presentation context for MR Image Storage is
//! negotiated with Explicit and Implicit VR Little Endian (the files are written in the
//! former and re-encoded if the PACS takes only the latter), every response status is read,
//! and the association is released explicitly (aborted after a protocol error).

use anyhow::{anyhow, bail, Context, Result};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// The log of stored instances, in the DICOM directory.
pub const SENT_LOG: &str = "sent.jsonl";
/// Our AE title unless `--calling-ae` says otherwise.
pub const DEFAULT_CALLING_AE: &str = "SPARSEMAP";
/// Connecting, and waiting for any answer of the PACS.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);
/// A sender waits this long for more files before it releases its association.
const BATCH_WAIT: Duration = Duration::from_millis(500);

/// A C-STORE SCP: `AE@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// Parses `AE@HOST:PORT` (the AE title: 1 to 16 printable ASCII characters, no `\`).
    pub fn parse(text: &str) -> Result<Self> {
        let usage = || format!("{text:?}: expected AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242");
        let (ae_title, address) = text.split_once('@').with_context(usage)?;
        let (host, port) = address.rsplit_once(':').with_context(usage)?;
        let ae = ae_title.trim();
        if ae.is_empty() || ae.len() > 16 || !ae.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
            bail!("{text:?}: the AE title must be 1 to 16 printable ASCII characters without '\\'");
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .with_context(|| format!("{text:?}: the port must be a number 1..65535"))?;
        if host.is_empty() {
            bail!("{}", usage());
        }
        Ok(Self {
            ae_title: ae.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.ae_title, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
        }
    }
}

/// One line of [`SENT_LOG`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentRecord {
    /// File name in the DICOM directory.
    pub file: String,
    pub sop_instance_uid: String,
    /// The destination, `AE@HOST:PORT`.
    pub to: String,
    /// The C-STORE response status, 4 hex digits (`0000` success; `B000`.. warnings).
    pub status: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
}

/// What became of one file.
#[derive(Debug, Clone)]
pub enum Outcome {
    Stored { status: u16 },
    Failed { reason: String },
}

/// Files of a batch and what became of each.
#[derive(Debug, Default, Clone)]
pub struct SendReport {
    pub stored: usize,
    pub warnings: usize,
    /// Files left in the queue, with why.
    pub failed: Vec<(PathBuf, String)>,
}

impl SendReport {
    fn merge(&mut self, other: SendReport) {
        self.stored += other.stored;
        self.warnings += other.warnings;
        self.failed.extend(other.failed);
    }
}

/// The words of a C-STORE status (PS3.4 Annex B.2.3, PS3.7 Annex C).
pub fn status_meaning(status: u16) -> &'static str {
    match status {
        0x0000 => "success",
        0x0001 | 0x0107 | 0x0116 => "warning: attribute list or value problem",
        0xB000 => "warning: coercion of data elements",
        0xB007 => "warning: data set does not match SOP class",
        0xB006 => "warning: elements discarded",
        0xA700..=0xA7FF => "refused: out of resources",
        0xA900..=0xA9FF => "error: data set does not match SOP class",
        0xC000..=0xCFFF => "error: cannot understand",
        0x0122 => "refused: SOP class not supported",
        0x0124 => "refused: not authorised",
        0x0211 => "refused: unrecognised operation",
        0x0212 => "refused: mistyped argument",
        0xFE00 => "cancelled",
        0x0110 => "processing failure",
        _ => "failure",
    }
}

/// Success and warning statuses: the instance is stored.
pub fn is_stored(status: u16) -> bool {
    matches!(status, 0x0000 | 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF)
}

/// The files of `dir` not yet stored at `to`, in name order.
pub fn queued_files(dir: &Path, to: &Destination) -> Result<Vec<PathBuf>> {
    let sent = sent_names(dir, to)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let is_dicom = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm"));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if is_dicom && path.is_file() && !name.is_some_and(|n| sent.contains(&n)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Names of the files recorded as stored at `to`.
fn sent_names(dir: &Path, to: &Destination) -> Result<BTreeSet<String>> {
    let path = dir.join(SENT_LOG);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let to = to.to_string();
    // A line cut short by a crash is skipped: its file is sent again (a PACS takes a
    // repeated SOP Instance UID as the same instance).
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<SentRecord>(line).ok())
        .filter(|r| r.to == to)
        .map(|r| r.file)
        .collect())
}

fn append_sent(dir: &Path, record: &SentRecord) -> Result<()> {
    let path = dir.join(SENT_LOG);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let line = serde_json::to_string(record)? + "\n";
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sends `files` (all in `dir`) to `to` over one association; records every stored one in
/// `dir`'s [`SENT_LOG`]. An association that cannot be opened fails every file of the batch.
pub fn send_files(dir: &Path, files: &[PathBuf], to: &Destination, calling_ae: &str) -> SendReport {
    let mut report = SendReport::default();
    if files.is_empty() {
        return report;
    }
    let (mut association, context_id) = match open_association(to, calling_ae) {
        Ok(a) => a,
        Err(e) => {
            let reason = format!("{e:#}");
            report.failed = files.iter().map(|f| (f.clone(), reason.clone())).collect();
            return report;
        }
    };
    let mut message_id = 1u16;
    let mut broken = None;
    for file in files {
        if let Some(reason) = &broken {
            report.failed.push((file.clone(), format!("not sent after an earlier failure: {reason}")));
            continue;
        }
        match store_one(&mut association, context_id, file, message_id) {
            Ok((uid, status)) => {
                message_id = message_id.wrapping_add(1).max(1);
                if is_stored(status) {
                    report.stored += 1;
                    report.warnings += usize::from(status != 0);
                    let record = SentRecord {
                        file: file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                        sop_instance_uid: uid,
                        to: to.to_string(),
                        status: format!("{status:04X}"),
                        time: unix_time(),
                    };
                    if let Err(e) = append_sent(dir, &record) {
                        // Stored but not recorded: it will be sent again, which a PACS accepts.
                        eprintln!("sparsemap: warning: {e:#}");
                    }
                } else {
                    report.failed.push((
                        file.clone(),
                        format!("{to} answered status {status:04X}H ({})", status_meaning(status)),
                    ));
                }
            }
            Err(StoreError::File(e)) => report.failed.push((file.clone(), format!("{e:#}"))),
            Err(StoreError::Link(e)) => {
                let reason = format!("{to}: {e:#}");
                report.failed.push((file.clone(), reason.clone()));
                broken = Some(reason);
            }
        }
    }
    match broken {
        None => {
            if let Err(e) = association.release() {
                eprintln!("sparsemap: warning: releasing the association with {to}: {e}");
            }
        }
        Some(_) => {
            let _ = association.abort();
        }
    }
    report
}

/// An association with `to` and the id of its accepted MR Image Storage context.
fn open_association(to: &Destination, calling_ae: &str) -> Result<(ClientAssociation<TcpStream>, u8)> {
    let address = format!("{}:{}", to.host, to.port);
    let association = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae)
        .called_ae_title(to.ae_title.as_str())
        .with_presentation_context(
            uids::MR_IMAGE_STORAGE,
            vec![uids::EXPLICIT_VR_LITTLE_ENDIAN, uids::IMPLICIT_VR_LITTLE_ENDIAN],
        )
        .connection_timeout(NETWORK_TIMEOUT)
        .read_timeout(NETWORK_TIMEOUT)
        .write_timeout(NETWORK_TIMEOUT)
        .establish(address.as_str())
        .map_err(|e| anyhow!("cannot open an association with {to}: {e}"))?;
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && pc.abstract_syntax.trim_end_matches('\0') == uids::MR_IMAGE_STORAGE
        })
        .map(|pc| pc.id);
    match context {
        Some(id) => Ok((association, id)),
        None => {
            let _ = association.abort();
            bail!("{to} accepted the association but not MR Image Storage with an uncompressed transfer syntax")
        }
    }
}

enum StoreError {
    /// This file cannot be sent (unreadable); the association is still usable.
    File(anyhow::Error),
    /// The association broke.
    Link(anyhow::Error),
}

/// C-STORE of one file; returns its SOP Instance UID and the response status.
fn store_one(
    association: &mut ClientAssociation<TcpStream>,
    context_id: u8,
    file: &Path,
    message_id: u16,
) -> std::result::Result<(String, u16), StoreError> {
    let transfer_syntax = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == context_id)
        .map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_string())
        .unwrap_or_default();
    let ts = TransferSyntaxRegistry
        .get(&transfer_syntax)
        .ok_or_else(|| StoreError::Link(anyhow!("unknown transfer syntax {transfer_syntax}")))?;
    let object = dicom_object::open_file(file)
        .with_context(|| format!("cannot read the DICOM file {}", file.display()))
        .map_err(StoreError::File)?;
    let meta = object.meta();
    let sop_class = meta.media_storage_sop_class_uid().trim_end_matches('\0').to_string();
    let sop_instance = meta.media_storage_sop_instance_uid().trim_end_matches('\0').to_string();
    let mut data = Vec::with_capacity(256 << 10);
    object
        .write_dataset_with_ts(&mut data, ts)
        .with_context(|| format!("cannot encode {}", file.display()))
        .map_err(StoreError::File)?;
    let command = InMemDicomObject::command_from_element_iter([
        DataElement::new(tags::AFFECTED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class.as_str())),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0x0000u16)),
        DataElement::new(tags::COMMAND_DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
        DataElement::new(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop_instance.as_str())),
    ]);
    let implicit = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut command_bytes = Vec::with_capacity(128);
    command
        .write_dataset_with_ts(&mut command_bytes, &implicit)
        .map_err(|e| StoreError::Link(anyhow!("encoding the C-STORE command: {e}")))?;
    let link = |e: dicom_ul::association::Error| StoreError::Link(anyhow!("{e}"));
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command_bytes,
            }],
        })
        .map_err(link)?;
    {
        // Splits the data set into PDUs of the PACS's maximum length.
        let mut writer = association.send_pdata(context_id);
        writer
            .write_all(&data)
            .map_err(|e| StoreError::Link(anyhow!("sending {}: {e}", file.display())))?;
    }
    let status = match association.receive().map_err(link)? {
        Pdu::PData { data } => {
            let value = data
                .first()
                .ok_or_else(|| StoreError::Link(anyhow!("an empty C-STORE response")))?;
            let response = InMemDicomObject::read_dataset_with_ts(&value.data[..], &implicit)
                .map_err(|e| StoreError::Link(anyhow!("an unreadable C-STORE response: {e}")))?;
            response
                .element(tags::STATUS)
                .ok()
                .and_then(|e| e.to_int::<u16>().ok())
                .ok_or_else(|| StoreError::Link(anyhow!("a C-STORE response without a status")))?
        }
        Pdu::AbortRQ { source } => {
            return Err(StoreError::Link(anyhow!("the PACS aborted the association ({source:?})")))
        }
        other => {
            return Err(StoreError::Link(anyhow!(
                "an unexpected answer to C-STORE: {}",
                pdu_kind(&other)
            )))
        }
    };
    Ok((sop_instance, status))
}

fn pdu_kind(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        _ => "an unknown PDU",
    }
}

/// Sends every queued file of `dir` to `to`.
pub fn send_queue(dir: &Path, to: &Destination, calling_ae: &str) -> Result<(usize, SendReport)> {
    let files = queued_files(dir, to)?;
    Ok((files.len(), send_files(dir, &files, to, calling_ae)))
}

/// A thread that sends each DICOM file it is told about, in batches (one association per
/// batch of files that arrive close together).
pub struct BackgroundSender {
    queue: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<SendReport>>,
}

impl BackgroundSender {
    pub fn spawn(dir: PathBuf, to: Destination, calling_ae: String) -> Self {
        let (queue, files) = std::sync::mpsc::channel::<PathBuf>();
        let thread = std::thread::spawn(move || run_sender(&dir, &to, &calling_ae, &files));
        Self {
            queue: Some(queue),
            thread: Some(thread),
        }
    }

    /// Where to tell the paths of new files.
    pub fn queue(&self) -> Sender<PathBuf> {
        self.queue.clone().expect("the queue lives until finish")
    }

    /// Waits until everything told has been sent or has failed.
    pub fn finish(mut self) -> SendReport {
        drop(self.queue.take());
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

fn run_sender(dir: &Path, to: &Destination, calling_ae: &str, files: &Receiver<PathBuf>) -> SendReport {
    let mut total = SendReport::default();
    while let Ok(first) = files.recv() {
        let mut batch = vec![first];
        while let Ok(next) = files.recv_timeout(BATCH_WAIT) {
            batch.push(next);
        }
        let report = send_files(dir, &batch, to, calling_ae);
        if !report.failed.is_empty() {
            eprintln!(
                "sparsemap: {} of {} DICOM file(s) not stored at {to}: {}; they stay queued in {} (retry: sparsemap send {} --to {to})",
                report.failed.len(),
                batch.len(),
                report.failed[0].1,
                dir.display(),
                dir.display()
            );
        }
        total.merge(report);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print_back() {
        let d = Destination::parse("ORTHANC@127.0.0.1:4242").unwrap();
        assert_eq!((d.ae_title.as_str(), d.host.as_str(), d.port), ("ORTHANC", "127.0.0.1", 4242));
        assert_eq!(d.to_string(), "ORTHANC@127.0.0.1:4242");
        assert_eq!(Destination::parse("PACS@[::1]:104").unwrap().to_string(), "PACS@[::1]:104");
        for bad in ["127.0.0.1:4242", "@h:1", "A@h", "A@h:0", "A@h:x", "A@:1", "SEVENTEEN_CHARS_X@h:1", "A\\B@h:1"] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_that_store_are_success_and_warnings_only() {
        for s in [0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB007] {
            assert!(is_stored(s), "{s:04X}");
        }
        for s in [0xA700, 0xA900, 0xC000, 0x0110, 0x0122, 0xFE00] {
            assert!(!is_stored(s), "{s:04X}");
        }
    }

    #[test]
    fn the_queue_is_every_dcm_file_not_recorded_for_that_destination() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.dcm", "b.dcm", "c.DCM", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let to = Destination::parse("P@127.0.0.1:1").unwrap();
        let other = Destination::parse("Q@127.0.0.1:1").unwrap();
        let record = |file: &str, to: &Destination| SentRecord {
            file: file.into(),
            sop_instance_uid: "2.25.1".into(),
            to: to.to_string(),
            status: "0000".into(),
            time: 0.0,
        };
        append_sent(dir.path(), &record("a.dcm", &to)).unwrap();
        append_sent(dir.path(), &record("b.dcm", &other)).unwrap();
        // A line cut short by a crash: its file stays queued.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(SENT_LOG))
            .unwrap()
            .write_all(b"{\"file\":\"c.DCM\",\"sop")
            .unwrap();
        let names = |d: &Destination| -> Vec<String> {
            queued_files(dir.path(), d)
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&to), ["b.dcm", "c.DCM"]);
        assert_eq!(names(&other), ["a.dcm", "c.DCM"]);
    }
}
