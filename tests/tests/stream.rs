//! The streaming product end to end, through the real `sparsemap` binary: `recon --input`
//! on the recorded firmware stream, `serve` over TCP on loopback and on stdin, streams with
//! link faults made by the host's fault-injecting generator, a sender that stops mid-scan, a
//! sender faster than reconstruction, and hostile input.
//!
//! The binary is the one `cargo test --workspace` builds next to this test
//! (`target/<profile>/sparsemap`); servers are started as child processes and stopped by
//! their PID with SIGTERM, which must make them exit 0.

use ndarray::{s, Array2, Array3};
use num_complex::Complex32;
use serde_json::Value;
use sparsemap_e2e::{binary, read_npy, repo};
use sparsemap_host::scan::{simulate_scan, FaultLog, FaultSpec, SampleFormat, ScanSpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

fn sparsemap(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("sparsemap runs")
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn fixture_path() -> PathBuf {
    repo().join("tests/fixtures/wire/colin27_axial.smw")
}

fn fixture_stream() -> Vec<u8> {
    std::fs::read(fixture_path()).unwrap()
}

/// `sparsemap recon --input` on the recorded stream into `out`.
fn recon_fixture(out: &Path, extra: &[&str]) -> Output {
    let input = fixture_path();
    let mut args = vec![
        "recon",
        "--input",
        input.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    sparsemap(&args)
}

fn psnr(image: &Array2<Complex32>, target: &Array2<Complex32>) -> f64 {
    let peak = target.iter().map(|v| v.norm()).fold(0.0f32, f32::max) as f64;
    let mse: f64 = image
        .iter()
        .zip(target)
        .map(|(a, b)| (a.norm() as f64 - b.norm() as f64).powi(2))
        .sum::<f64>()
        / image.len() as f64;
    10.0 * (peak * peak / mse).log10()
}

/// The Colin27 example's k-space and mask, `slices` times, as a stack.
fn example_stack(slices: usize) -> (Array3<Complex32>, Array3<bool>) {
    let example = repo().join("examples/colin27");
    let kspace: Array2<Complex32> = read_npy(&example.join("kspace.npy"));
    let mask: Array2<u8> = read_npy(&example.join("mask.npy"));
    let (n_y, n_x) = kspace.dim();
    let k = Array3::from_shape_fn((slices, n_y, n_x), |(_, y, x)| kspace[[y, x]]);
    let m = Array3::from_shape_fn((slices, n_y, n_x), |(_, y, x)| mask[[y, x]] != 0);
    (k, m)
}

/// `slices` slices of 64²: the central 64² of the example's k-space (a real low-resolution
/// image), its central 32 rows and columns sampled.
fn small_stack(slices: usize) -> (Array3<Complex32>, Array3<bool>) {
    let example = repo().join("examples/colin27");
    let kspace: Array2<Complex32> = read_npy(&example.join("kspace.npy"));
    let centre = kspace.slice(s![96..160, 96..160]).to_owned();
    let k = Array3::from_shape_fn((slices, 64, 64), |(_, y, x)| centre[[y, x]]);
    let m = Array3::from_shape_fn((slices, 64, 64), |(_, y, x)| {
        (16..48).contains(&y) && (16..48).contains(&x)
    });
    (k, m)
}

fn stream_of(
    stack: &(Array3<Complex32>, Array3<bool>),
    scan_id: u32,
    samples: SampleFormat,
    faults: &FaultSpec,
) -> (Vec<u8>, FaultLog) {
    let spec = ScanSpec {
        scan_id,
        field_mt: 50.0,
        fov_mm: [256.0, 256.0],
        samples,
    };
    simulate_scan(stack.0.view(), stack.1.view(), &spec, faults).unwrap()
}

/// A `sparsemap serve` child with its stdout lines and stderr lines in channels.
struct Server {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Server {
    fn start(args: &[&str], stdin: Stdio) -> Self {
        let mut child = Command::new(binary())
            .arg("serve")
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sparsemap serve starts");
        let lines = |reader: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The address from "listening on ADDR".
    fn address(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
                if let Some(address) = line.strip_prefix("sparsemap: listening on ") {
                    return address.trim().to_string();
                }
            }
        }
        panic!("serve did not say where it listens");
    }

    /// The next `count` JSON lines.
    fn records(&self, count: usize) -> Vec<Value> {
        (0..count)
            .map(|i| {
                let line = self
                    .stdout
                    .recv_timeout(Duration::from_secs(300))
                    .unwrap_or_else(|_| panic!("no JSON line {i} of {count} from serve"));
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
            })
            .collect()
    }

    /// SIGTERM by PID; the exit status and the stderr lines left.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let status = self.child.wait().unwrap();
        (status, self.stderr.try_iter().collect())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(address: &str, bytes: &[u8]) {
    let mut stream = TcpStream::connect(address).expect("connects to serve");
    stream.write_all(bytes).expect("serve takes the stream");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait for the server to close its side: then everything was read.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

#[test]
fn recon_input_reconstructs_the_recorded_stream_exactly_like_the_npy_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stream");
    let run = recon_fixture(&out, &["--save-kspace", "--save-maps"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let records = json_lines(&run.stdout);
    assert_eq!(records.len(), 1, "one slice");
    let r = &records[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(u(r, "scan"), 27);
    assert_eq!(u(r, "lines_received"), 128);
    assert_eq!(u(r, "lines_expected"), 128);
    for key in [
        "missing",
        "duplicates",
        "corrupt",
        "reordered",
        "invalid_samples",
        "faults",
    ] {
        assert_eq!(u(r, key), 0, "{key}");
    }
    assert_eq!(r["complete"], true);
    assert_eq!(r["completion"], "scan end");
    let stem = out.join("scan00027_slice000");
    for suffix in [
        ".npy",
        ".png",
        ".nii",
        ".json",
        "_lambda.npy",
        "_lambda.png",
        "_kspace.npy",
        "_mask.npy",
    ] {
        let path = PathBuf::from(format!("{}{suffix}", stem.display()));
        assert!(path.exists(), "{} missing", path.display());
    }

    // The assembled k-space is the example's sampled k-space within half an ADC code, and
    // its mask is the example's mask (the readout window 64..192 of the stream).
    let example = repo().join("examples/colin27");
    let kspace: Array2<Complex32> = read_npy(&example.join("kspace.npy"));
    let mask: Array2<u8> = read_npy(&example.join("mask.npy"));
    let got_k: Array2<Complex32> =
        read_npy(&PathBuf::from(format!("{}_kspace.npy", stem.display())));
    let got_m: Array2<u8> = read_npy(&PathBuf::from(format!("{}_mask.npy", stem.display())));
    assert_eq!(got_m, mask);
    let scale = 1.537e-3f32; // one code (tests/fixtures/wire/README.md)
    for ((g, k), m) in got_k.iter().zip(&kspace).zip(&mask) {
        let want = if *m != 0 { *k } else { Complex32::default() };
        assert!((g.re - want.re).abs() <= 0.51 * scale && (g.im - want.im).abs() <= 0.51 * scale);
    }

    // recon --kspace on what the stream assembled gives the same image, bit for bit.
    let single = dir.path().join("single.npy");
    let run = sparsemap(&[
        "recon",
        "--kspace",
        &format!("{}_kspace.npy", stem.display()),
        "--mask",
        &format!("{}_mask.npy", stem.display()),
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(&single).unwrap(),
        std::fs::read(format!("{}.npy", stem.display())).unwrap(),
        "recon --input and recon --kspace images differ"
    );

    // And it is the learned reconstruction of the example: well above zero-filled (31.8 dB).
    let image: Array2<Complex32> = read_npy(&single);
    let target: Array2<Complex32> = read_npy(&example.join("target.npy"));
    let db = psnr(&image, &target);
    assert!(db > 34.5, "PSNR {db:.2} dB");

    // The NIfTI voxel size comes from the scan's FOV (256 mm / 256).
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", stem.display())).unwrap())
            .unwrap();
    assert_eq!(sidecar["voxel_mm"], serde_json::json!([1.0, 1.0]));
    assert_eq!(sidecar["acquisition"]["kx_first"], 64);
    assert_eq!(sidecar["acquisition"]["kx_count"], 128);
    assert_eq!(sidecar["iterations"], 32);
}

#[test]
fn two_runs_write_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for run in ["a", "b"] {
        let out = dir.path().join(run);
        let result = recon_fixture(&out, &["--save-maps"]);
        assert!(result.status.success());
        outputs.push(out);
    }
    let mut names: Vec<_> = std::fs::read_dir(&outputs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let a = std::fs::read(outputs[0].join(&name)).unwrap();
        let b = std::fs::read(outputs[1].join(&name)).unwrap();
        assert!(a == b, "{name:?} differs between two runs");
    }
}

#[test]
fn serve_over_tcp_matches_recon_input_and_survives_a_sender_that_stops_mid_scan() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let run = recon_fixture(&reference, &[]);
    assert!(run.status.success());

    let out = dir.path().join("served");
    let server = Server::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--out-dir",
            out.to_str().unwrap(),
            "--preview-every",
            "32",
        ],
        Stdio::null(),
    );
    let address = server.address();
    let stream = fixture_stream();

    // 1. The whole recording: the same image as recon --input.
    send(&address, &stream);
    let r = &server.records(1)[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(u(r, "lines_received"), 128);
    assert_eq!(r["complete"], true);
    for key in [
        "acquire",
        "assembly_wait",
        "prepare",
        "features",
        "network",
        "solve",
        "write",
    ] {
        assert!(r["times"][key].as_f64().is_some(), "{key}");
    }
    assert!(r["latency"].as_f64().unwrap() > 0.0);
    let name = "scan00027_slice000.npy";
    assert_eq!(
        std::fs::read(out.join(name)).unwrap(),
        std::fs::read(reference.join(name)).unwrap(),
        "serve and recon --input images differ"
    );

    // 2. A sender that stops after 60 % of the bytes: what arrived is reconstructed and
    //    marked incomplete; the server goes on serving.
    // (another scan id, so that its files do not overwrite the first ones)
    let (other, _) = stream_of(&example_stack(1), 28, SampleFormat::I16, &FaultSpec::none());
    send(&address, &other[..other.len() * 3 / 5]);
    let r = &server.records(1)[0];
    assert_eq!(u(r, "scan"), 28);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["complete"], false);
    assert_eq!(r["completion"], "interrupted");
    let received = u(r, "lines_received");
    assert!(received > 50 && received < 128, "{received} lines");
    assert!(out.join("scan00028_slice000.nii").exists());

    // 3. And the next connection is served normally.
    send(&address, &stream);
    let r = &server.records(1)[0];
    assert_eq!((u(r, "scan"), u(r, "lines_received")), (27, 128));

    let (status, stderr) = server.stop();
    assert!(status.success(), "serve exited with {status:?}: {stderr:?}");
}

#[test]
fn a_sender_that_goes_silent_gets_its_slice_after_the_slice_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let server = Server::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--out-dir",
            out.to_str().unwrap(),
            "--slice-timeout",
            "1",
        ],
        Stdio::null(),
    );
    let address = server.address();
    let (bytes, _) = stream_of(&example_stack(1), 29, SampleFormat::I16, &FaultSpec::none());
    let mut connection = TcpStream::connect(&address).unwrap();
    connection.write_all(&bytes[..bytes.len() / 2]).unwrap();
    // The connection stays open: only the timeout can complete the slice.
    let r = &server.records(1)[0];
    assert_eq!(
        (r["completion"].as_str(), r["complete"].as_bool()),
        (Some("timeout"), Some(false))
    );
    assert_eq!(r["status"], "ok");
    assert!(u(r, "lines_received") > 50 && u(r, "lines_received") < 128);
    drop(connection);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn a_faulty_link_on_stdin_still_yields_every_slice_with_exact_counts() {
    let stack = example_stack(3);
    let faults = FaultSpec {
        drop: 0.05,
        duplicate: 0.02,
        reorder: 0.02,
        corrupt: 0.01,
        seed: 11,
    };
    let (bytes, log) = stream_of(&stack, 5, SampleFormat::F32, &faults);
    assert!(log.counts.dropped > 0 && log.counts.corrupted > 0 && log.counts.reordered > 0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut server = Server::start(
        &[
            "--serial",
            "-",
            "--out-dir",
            out.to_str().unwrap(),
            // twice the generator's reorder distance: no line arrives after its slice
            "--settle-lines",
            "128",
        ],
        Stdio::piped(),
    );
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(&bytes).unwrap();
    drop(stdin);
    let records = server.records(3);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "serve on stdin exits 0 at end of stream");

    let total = |key: &str| records.iter().map(|r| u(r, key)).sum::<u64>();
    assert_eq!(
        records.iter().map(|r| u(r, "slice")).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(records.iter().all(|r| r["status"] == "ok"));
    assert_eq!(
        total("missing"),
        u64::from(log.counts.dropped + log.counts.corrupted)
    );
    assert_eq!(total("corrupt"), u64::from(log.counts.corrupted));
    assert_eq!(total("duplicates"), u64::from(log.counts.duplicated));
    assert!(total("reordered") >= u64::from(log.counts.reordered));
    // Per slice: the planned lines minus those lost on the way.
    let lost = log.lost();
    for (slice, r) in records.iter().enumerate() {
        let planned = 128u64;
        let lost_here = lost
            .iter()
            .filter(|&&seq| seq as usize / 128 == slice)
            .count() as u64;
        assert_eq!(u(r, "lines_received"), planned - lost_here, "slice {slice}");
    }
}

#[test]
fn a_sender_faster_than_reconstruction_keeps_memory_flat() {
    // 200 slices of 64²: the sender writes as fast as the socket takes bytes; the server's
    // queues are bounded, so it holds the sender back instead of buffering.
    let (bytes, _) = stream_of(&small_stack(200), 9, SampleFormat::I16, &FaultSpec::none());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let server = Server::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--out-dir",
            out.to_str().unwrap(),
        ],
        Stdio::null(),
    );
    let address = server.address();
    let sender = std::thread::spawn(move || send(&address, &bytes));
    let records = server.records(200);
    sender.join().unwrap();
    assert!(records
        .iter()
        .all(|r| r["status"] == "ok" && u(r, "lines_received") == 32));
    let rss = |i: usize| records[i]["peak_rss_mb"].as_f64().unwrap();
    // Loose: the peak after 200 slices is within 16 MB of the peak after 20.
    assert!(
        rss(199) <= rss(19) + 16.0,
        "peak RSS grew from {:.1} MB (slice 20) to {:.1} MB (slice 200)",
        rss(19),
        rss(199)
    );
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn hostile_input_gives_one_line_errors_or_counted_drops_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let recon_input = |path: &Path, extra: &[&str]| {
        let out = dir.path().join(format!(
            "out_{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        let mut args = vec![
            "recon",
            "--input",
            path.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (sparsemap(&args), out)
    };
    let one_line_error = |output: &Output, needle: &str| {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let errors: Vec<_> = stderr
            .lines()
            .filter(|l| l.starts_with("sparsemap: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(needle), "{stderr}");
    };

    // Garbage bytes (with delimiters): no slice, one line naming the file.
    let mut state = 0x2545F4914F6CDD1Du64;
    let garbage: Vec<u8> = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let path = write("garbage.smw", &garbage);
    one_line_error(
        &recon_input(&path, &[]).0,
        "garbage.smw: no slice in the stream",
    );

    // A frame claiming a huge size (no delimiter for 1 MB) before the real stream: the
    // decoder drops it without allocating and the scan that follows is intact.
    let mut huge = vec![0x01u8; 1 << 20];
    huge.push(0);
    huge.extend_from_slice(&fixture_stream());
    let path = write("huge.smw", &huge);
    let (run, _) = recon_input(&path, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(u(&json_lines(&run.stdout)[0], "lines_received"), 128);

    // A truncated stream (cut inside a line): the slice is reconstructed, marked incomplete.
    let stream = fixture_stream();
    let path = write("truncated.smw", &stream[..stream.len() / 2 + 7]);
    let (run, _) = recon_input(&path, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r = &json_lines(&run.stdout)[0];
    assert_eq!(
        (r["complete"].clone(), r["completion"].clone()),
        (Value::Bool(false), Value::from("interrupted"))
    );

    // NaN samples: those lines are counted and not used; the slice is reconstructed.
    let path = write("nan.smw", &stream_with_non_finite_lines(&[100, 150]));
    let (run, _) = recon_input(&path, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r = &json_lines(&run.stdout)[0];
    assert_eq!((u(r, "invalid_samples"), u(r, "lines_received")), (2, 126));

    // A grid the dictionary does not fit (8x8 against 9x9 filters): the slice fails with a
    // reason, and its k-space and mask are saved (nothing received is dropped).
    let tiny = (
        Array3::from_shape_fn((1, 8, 8), |(_, y, x)| Complex32::new((y + x) as f32, 1.0)),
        Array3::from_elem((1, 8, 8), true),
    );
    let (bytes, _) = stream_of(&tiny, 4, SampleFormat::F32, &FaultSpec::none());
    let path = write("tiny.smw", &bytes);
    let (run, out) = recon_input(&path, &[]);
    one_line_error(&run, "1 slices could not be reconstructed");
    let r = &json_lines(&run.stdout)[0];
    assert_eq!(r["status"], "error");
    assert!(
        r["error"].as_str().unwrap().contains("filters are 9x9"),
        "{r}"
    );
    assert!(out.join("scan00004_slice000_kspace.npy").exists());

    // An even filter size: refused before anything runs, naming the file.
    let even = dir.path().join("even.npy");
    ndarray_npy::write_npy(&even, &ndarray::Array3::<f32>::ones((4, 4, 4))).unwrap();
    let (run, _) = recon_input(&fixture_path(), &["--dictionary", even.to_str().unwrap()]);
    one_line_error(&run, "even.npy");
}

/// The example's sampled rows as F32 lines (window 64..192), with a NaN or an infinity in
/// the rows `bad` (the host generator refuses to make such a stream, a scanner might not).
fn stream_with_non_finite_lines(bad: &[usize]) -> Vec<u8> {
    use sparsemap_wire::{
        encode, heapless, EndStatus, Frame, Line, Samples, ScanEnd, ScanStart, VERSION,
    };
    let example = repo().join("examples/colin27");
    let kspace: Array2<Complex32> = read_npy(&example.join("kspace.npy"));
    let mut bytes = vec![0u8];
    let mut buf = vec![0u8; sparsemap_wire::MAX_ENCODED_LEN];
    let mut push = |frame: &Frame| bytes.extend_from_slice(encode(frame, &mut buf).unwrap());
    push(&Frame::ScanStart(ScanStart {
        version: VERSION,
        scan_id: 3,
        n_y: 256,
        n_x: 256,
        n_coils: 1,
        n_slices: 1,
        field_mt: 50.0,
        fov_mm: [256.0, 256.0],
        kx_first: 64,
        kx_count: 128,
    }));
    for (seq, ky) in (64..192).enumerate() {
        let mut iq = heapless::Vec::new();
        for kx in 64..192 {
            let v = kspace[[ky, kx]];
            iq.push([v.re, v.im]).unwrap();
        }
        if bad.contains(&ky) {
            iq[seq % 128] = if ky % 2 == 0 {
                [f32::NAN, 0.0]
            } else {
                [0.0, f32::INFINITY]
            };
        }
        push(&Frame::Line(Line {
            scan_id: 3,
            seq: seq as u32,
            slice: 0,
            coil: 0,
            ky: ky as u16,
            samples: Samples::F32 { iq },
        }));
    }
    push(&Frame::ScanEnd(ScanEnd {
        scan_id: 3,
        lines_sent: 128,
        status: EndStatus::Complete,
    }));
    bytes
}
