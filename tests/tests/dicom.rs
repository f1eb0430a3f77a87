//! DICOM out and C-STORE, end to end through the real `sparsemap` binary and real tools:
//! - the files pass `dciodvfy` (Debian dicom3tools) with zero errors for the MR Image IOD,
//!   and read back with dicom-rs and with pydicom to the `.npy` magnitude within half a
//!   rescale step;
//! - a series of several slices goes to a real PACS, Orthanc (Debian `orthanc`), started
//!   here with a configuration written here, inside a private network namespace
//!   (`unshare -n`) where that works, and stopped by its PID; Orthanc's REST API shows every
//!   instance with the right tags and the same pixel data;
//! - a PACS that is down, that refuses the association, or that rejects the instances gives
//!   an error naming the host and the status, the files stay queued, and `sparsemap send`
//!   stores them later.
//!
//! scripts/test.sh installs dicom3tools and orthanc; without them these tests fail with a
//! message saying so.

use dicom_dictionary_std::tags;
use dicom_object::{open_file, OpenFileOptions};
use ndarray::{s, Array2, Array3};
use num_complex::Complex32;
use serde_json::Value;
use sparsemap_e2e::{binary, read_npy, repo};
use sparsemap_host::scan::{simulate_scan, FaultSpec, SampleFormat, ScanSpec};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{program} is missing: install Debian's {package} (scripts/test.sh does)");
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the command runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A 4-slice scan of 64² (the central 64² of the example's k-space, its central 32 rows and
/// columns sampled), as a wire stream file in `dir`.
fn four_slice_stream(dir: &Path) -> PathBuf {
    let kspace: Array2<Complex32> = read_npy(&repo().join("examples/colin27/kspace.npy"));
    let centre = kspace.slice(s![96..160, 96..160]).to_owned();
    let slices = 4;
    let k = Array3::from_shape_fn((slices, 64, 64), |(z, y, x)| centre[[y, x]] * (1.0 + z as f32 * 0.1));
    let m = Array3::from_shape_fn((slices, 64, 64), |(_, y, x)| {
        (16..48).contains(&y) && (16..48).contains(&x)
    });
    let spec = ScanSpec {
        scan_id: 9,
        field_mt: 64.0,
        fov_mm: [220.0, 220.0],
        samples: SampleFormat::F32,
    };
    let (bytes, _) = simulate_scan(k.view(), m.view(), &spec, &FaultSpec::default()).unwrap();
    let path = dir.join("scan.smw");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    files
}

fn string(object: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
    object
        .element(tag)
        .unwrap_or_else(|_| panic!("{tag} missing"))
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// Max |stored * slope - |x|| over the image, and the slope, read with dicom-rs. The bound
/// the tests use is slope / 2 (rounding to 16 bits) + 1e-7 (|x| is rounded to f32, whose
/// step is 1.2e-7 at the example's peak magnitude of about 1).
fn readback_error(file: &Path, npy: &Path) -> (f64, f64) {
    let object = open_file(file).unwrap();
    let slope: f64 = string(&object, tags::RESCALE_SLOPE).parse().unwrap();
    let rows = object.element(tags::ROWS).unwrap().to_int::<usize>().unwrap();
    let columns = object.element(tags::COLUMNS).unwrap().to_int::<usize>().unwrap();
    let stored: Vec<u16> = object.element(tags::PIXEL_DATA).unwrap().to_multi_int().unwrap();
    let image: Array2<Complex32> = read_npy(npy);
    assert_eq!(image.dim(), (rows, columns));
    assert_eq!(stored.len(), rows * columns);
    let error = stored
        .iter()
        .zip(image.iter())
        .map(|(&s, z)| (f64::from(s) * slope - f64::from(z.norm())).abs())
        .fold(0.0, f64::max);
    (error, slope)
}

#[test]
fn dicom_files_pass_dciodvfy_and_read_back_with_dicom_rs_and_pydicom() {
    require("dciodvfy", "dicom3tools");
    let python = repo().join("models/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/setup-python.sh", python.display());
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/colin27");
    let out = dir.path().join("x.npy");
    let dicom_dir = dir.path().join("dicom");
    let recon = run(Command::new(binary()).args([
        "recon",
        "--kspace",
        example.join("kspace.npy").to_str().unwrap(),
        "--mask",
        example.join("mask.npy").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dicom",
        dicom_dir.to_str().unwrap(),
    ]));
    assert!(recon.status.success(), "{}", stderr(&recon));
    let file = dicom_dir.join("x.dcm");

    // dciodvfy: exit 0 and no "Error" line for the MR Image IOD (warnings are listed).
    let verify = run(Command::new("dciodvfy").arg(&file));
    let report = format!("{}{}", String::from_utf8_lossy(&verify.stdout), stderr(&verify));
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
    assert!(report.contains("MRImage"), "dciodvfy did not check the MR Image IOD:\n{report}");
    assert!(errors.is_empty() && verify.status.success(), "dciodvfy:\n{report}");
    eprintln!(
        "dciodvfy: 0 errors, {} warnings",
        report.lines().filter(|l| l.starts_with("Warning")).count()
    );

    // dicom-rs: the magnitude within half a rescale step, and the provenance in the private
    // element is the sidecar's.
    let (error, slope) = readback_error(&file, &out);
    eprintln!("dicom-rs read-back: max |difference| {error:.3e}, rescale slope {slope:.3e}");
    assert!(error <= 0.5 * slope * (1.0 + 1e-6) + 1e-7, "{error} > slope/2 = {}", slope / 2.0);
    let object = open_file(&file).unwrap();
    assert_eq!(string(&object, tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.4");
    assert_eq!(string(&object, tags::MODALITY), "MR");
    let private: Value = serde_json::from_str(&string(&object, dicom_core::Tag(0x0029, 0x1010))).unwrap();
    let sidecar: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("x.json")).unwrap()).unwrap();
    assert_eq!(private, sidecar, "the private provenance is not the sidecar");
    assert!(string(&object, tags::IMAGE_COMMENTS).contains("geometry not given by the input"));

    // pydicom: the same within the same bound.
    let check = run(Command::new(&python).args([
        "-c",
        "import sys, numpy as np, pydicom\n\
         ds = pydicom.dcmread(sys.argv[1])\n\
         x = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)\n\
         m = np.abs(np.load(sys.argv[2])).astype(np.float64)\n\
         assert x.shape == m.shape, (x.shape, m.shape)\n\
         print(float(np.max(np.abs(x - m))), float(ds.RescaleSlope))",
        file.to_str().unwrap(),
        out.to_str().unwrap(),
    ]));
    assert!(check.status.success(), "pydicom: {}", stderr(&check));
    let text = String::from_utf8_lossy(&check.stdout);
    let values: Vec<f64> = text.split_whitespace().map(|v| v.parse().unwrap()).collect();
    eprintln!("pydicom read-back: max |difference| {:.3e}, rescale slope {:.3e}", values[0], values[1]);
    assert!(values[0] <= 0.5 * values[1] * (1.0 + 1e-6) + 1e-7, "pydicom: {text}");
}

/// A real Orthanc, in a private network namespace when `unshare -n` works here.
struct Orthanc {
    child: Child,
    namespaced: bool,
    dicom_port: u16,
    http_port: u16,
    dir: tempfile::TempDir,
}

/// C-STORE from this calling AE title is rejected by the Lua filter below.
const REJECTED_AE: &str = "REJECTME";

impl Orthanc {
    fn start() -> Self {
        require("Orthanc", "orthanc");
        let dir = tempfile::tempdir().unwrap();
        let namespaced = run(Command::new("unshare").args(["-n", "true"])).status.success();
        let (dicom_port, http_port) = if namespaced {
            (4242, 8042)
        } else {
            let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            (free(), free())
        };
        let lua = dir.path().join("filter.lua");
        std::fs::write(
            &lua,
            format!(
                // A filter that returns false is acknowledged with success by Orthanc 1.10;
                // one that raises an error makes it answer a failure status (A700H).
                "function ReceivedInstanceFilter(dicom, origin, info)\n  \
                 if string.find(origin['RemoteAet'], '{REJECTED_AE}') then \
                 error('refused by the sparsemap test filter') end\n  return true\nend\n"
            ),
        )
        .unwrap();
        let config = serde_json::json!({
            "Name": "sparsemap-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": true,
            "LuaScripts": [lua],
            "Plugins": [],
        });
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let mut command = if namespaced {
            let mut c = Command::new("unshare");
            // unshare and sh exec: the child's PID is Orthanc's.
            c.args([
                "-n",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec Orthanc \"$0\"",
                config_path.to_str().unwrap(),
            ]);
            c
        } else {
            let mut c = Command::new("Orthanc");
            c.arg(&config_path);
            c
        };
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("Orthanc starts");
        let orthanc = Self {
            child,
            namespaced,
            dicom_port,
            http_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while orthanc.try_get("/system").is_none() {
            assert!(Instant::now() < deadline, "Orthanc did not answer:\n{}", orthanc.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "Orthanc {} up (PID {}, {})",
            orthanc.get("/system")["Version"],
            orthanc.child.id(),
            if namespaced { "private network namespace" } else { "loopback" }
        );
        orthanc
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// `program` in Orthanc's network namespace.
    fn client(&self, program: &Path) -> Command {
        if self.namespaced {
            let mut c = Command::new("nsenter");
            c.args(["-t", &self.child.id().to_string(), "-n", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn try_get_bytes(&self, path: &str) -> Option<Vec<u8>> {
        let url = format!("http://127.0.0.1:{}{path}", self.http_port);
        let out = self.client(Path::new("curl")).args(["-sf", "--max-time", "20", &url]).output().ok()?;
        out.status.success().then_some(out.stdout)
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        serde_json::from_slice(&self.try_get_bytes(path)?).ok()
    }

    fn get(&self, path: &str) -> Value {
        self.try_get(path).unwrap_or_else(|| panic!("GET {path} failed:\n{}", self.log()))
    }

    fn address(&self, ae: &str) -> String {
        format!("{ae}@127.0.0.1:{}", self.dicom_port)
    }

    /// `sparsemap args...` in Orthanc's network namespace.
    fn sparsemap(&self, args: &[&str]) -> Output {
        run(self.client(&binary()).args(args))
    }

    /// SIGTERM by PID; Orthanc exits.
    fn stop(mut self) {
        let killed = run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        assert!(killed.status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "Orthanc did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sent_log(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("sent.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_series_reaches_orthanc_and_what_a_pacs_did_not_store_stays_queued_until_sent() {
    let orthanc = Orthanc::start();
    let work = tempfile::tempdir().unwrap();
    let stream = four_slice_stream(work.path());
    let out = work.path().join("out");
    let dicom_dir = work.path().join("dicom");

    // 1. The PACS is down (nothing listens on the port): the slices are reconstructed and
    //    written, the command fails naming the host, and every file stays queued.
    let down = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port + 1);
    let first = orthanc.sparsemap(&[
        "recon", "--input", stream.to_str().unwrap(), "--out-dir", out.to_str().unwrap(),
        "--dicom", dicom_dir.to_str().unwrap(), "--send-to", &down,
    ]);
    let message = stderr(&first);
    assert!(!first.status.success(), "a PACS that is down must fail the command");
    assert!(message.contains(&down) && message.contains("queued"), "{message}");
    let files = dicom_files(&dicom_dir);
    assert_eq!(files.len(), 4, "one DICOM file per slice");
    assert!(sent_log(&dicom_dir).is_empty());

    // 2. The PACS refuses the association (wrong called AE title).
    let wrong = orthanc.address("NOTORTHANC");
    let refused = orthanc.sparsemap(&["send", dicom_dir.to_str().unwrap(), "--to", &wrong]);
    let message = stderr(&refused);
    assert!(!refused.status.success());
    assert!(message.contains(&wrong) && message.contains("rejected"), "{message}");

    // 3. The PACS rejects every instance (its filter refuses our calling AE): the status is
    //    named, nothing is recorded as stored, nothing arrived.
    let to = orthanc.address("ORTHANC");
    let rejected = orthanc.sparsemap(&[
        "send", dicom_dir.to_str().unwrap(), "--to", &to, "--calling-ae", REJECTED_AE,
    ]);
    let message = stderr(&rejected);
    assert!(!rejected.status.success(), "{message}");
    assert!(message.contains(&to) && message.contains("status A700H"), "{message}");
    assert!(sent_log(&dicom_dir).is_empty());
    assert_eq!(orthanc.get("/instances").as_array().unwrap().len(), 0);

    // 4. `sparsemap send` stores the queue; a second send finds nothing left.
    let sent = orthanc.sparsemap(&["send", dicom_dir.to_str().unwrap(), "--to", &to]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(stderr(&sent).contains("4 DICOM instance(s) stored"), "{}", stderr(&sent));
    assert_eq!(sent_log(&dicom_dir).len(), 4);
    let again = orthanc.sparsemap(&["send", dicom_dir.to_str().unwrap(), "--to", &to]);
    assert!(again.status.success() && stderr(&again).contains("0 DICOM file(s)"), "{}", stderr(&again));

    // 5. What Orthanc holds: every instance, one series, the right tags, the same pixels.
    let verified = verify_in_orthanc(&orthanc, &files);
    eprintln!("Orthanc holds {verified} of 4 instances sent after the failures, pixel data identical");

    // 6. Live: `recon --input ... --send-to` stores a new series as it is written.
    let live_dir = work.path().join("dicom_live");
    let live = orthanc.sparsemap(&[
        "recon", "--input", stream.to_str().unwrap(), "--out-dir", work.path().join("out2").to_str().unwrap(),
        "--dicom", live_dir.to_str().unwrap(), "--send-to", &to,
    ]);
    assert!(live.status.success(), "{}", stderr(&live));
    let live_files = dicom_files(&live_dir);
    assert_eq!(sent_log(&live_dir).len(), 4);
    verify_in_orthanc(&orthanc, &live_files);
    assert_eq!(orthanc.get("/series").as_array().unwrap().len(), 2, "a new series per run");
    assert_eq!(orthanc.get("/instances").as_array().unwrap().len(), 8);
    orthanc.stop();
}

/// Checks every file is in Orthanc with its tags and pixel data; returns how many.
fn verify_in_orthanc(orthanc: &Orthanc, files: &[PathBuf]) -> usize {
    let mut series = BTreeSet::new();
    for (slice, file) in files.iter().enumerate() {
        let local = open_file(file).unwrap();
        let uid = string(&local, tags::SOP_INSTANCE_UID);
        let found = orthanc.client(Path::new("curl")).args([
            "-sf", "-X", "POST", "--data-binary",
            &serde_json::json!({"Level": "Instance", "Query": {"SOPInstanceUID": uid}}).to_string(),
            &format!("http://127.0.0.1:{}/tools/find", orthanc.http_port),
        ]).output().unwrap();
        let ids: Vec<String> = serde_json::from_slice(&found.stdout).unwrap_or_default();
        assert_eq!(ids.len(), 1, "instance {uid} ({}) not in Orthanc", file.display());
        let id = &ids[0];
        let stored = orthanc.get(&format!("/instances/{id}/simplified-tags"));
        assert_eq!(stored["Modality"], "MR");
        assert_eq!(stored["SOPClassUID"], "1.2.840.10008.5.1.4.1.1.4");
        assert_eq!(stored["SeriesInstanceUID"], string(&local, tags::SERIES_INSTANCE_UID).as_str());
        assert_eq!(stored["StudyInstanceUID"], string(&local, tags::STUDY_INSTANCE_UID).as_str());
        assert_eq!(stored["InstanceNumber"], (slice + 1).to_string());
        assert_eq!(stored["Rows"], "64");
        assert_eq!(stored["Columns"], "64");
        assert_eq!(stored["PixelSpacing"], string(&local, tags::PIXEL_SPACING).as_str());
        series.insert(stored["SeriesInstanceUID"].as_str().unwrap().to_string());
        let bytes = orthanc.try_get_bytes(&format!("/instances/{id}/file")).expect("the stored file");
        let remote = OpenFileOptions::new().from_reader(&bytes[128..]).unwrap();
        assert_eq!(
            remote.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
            local.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
            "pixel data of {} differ in Orthanc",
            file.display()
        );
    }
    assert_eq!(series.len(), 1, "the slices of one scan are one series");
    files.len()
}
