//! `sparsemap serve`: a live wire stream (TCP on loopback, a serial device, or stdin) in,
//! one image per slice out, with nobody watching.
//!
//! Threads: the *ingest* (this module's caller thread) decodes and assembles slices; a
//! *reader* per connection only moves bytes from the socket or device into a bounded chunk
//! queue; one *worker* reconstructs and writes, fed by a bounded slice queue. When the worker
//! falls behind, the slice queue fills, the ingest blocks on it, the chunk queue fills, the
//! reader stops reading, and the sender is held back by TCP flow control (or the serial
//! device's buffer): memory stays bounded whatever the sender does. Reconstruction never
//! runs on the ingest thread, so a preview or a slow slice never loses incoming bytes.
//!
//! SIGINT/SIGTERM: the ingest stops reading, completes what it has (open slices are marked
//! incomplete), the worker finishes every slice already received, and the process exits 0.

use crate::ingest::{ingest, ByteSource, Chunk, Event, IngestConfig, IngestSummary, SliceJob};
use anyhow::{bail, Context, Result};
use sparsemap_wire::ScanStart;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How often a waiting ingest looks at the stop flag and the slice timeout.
pub const TICK: Duration = Duration::from_millis(50);

/// Chunks a reader may queue ahead of the ingest (each up to [`crate::ingest::CHUNK_BYTES`]).
pub const CHUNK_QUEUE: usize = 8;

/// Where the stream comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// TCP connections, one at a time.
    Listen(SocketAddr),
    /// A device or file read as a byte stream (`-` is stdin). sparsemap does not configure
    /// a serial line: set it up with `stty` or a udev rule (docs/deploy.md).
    Serial(PathBuf),
}

impl Source {
    /// `--listen ADDR`: loopback unless `allow_remote`.
    pub fn listen(address: &str, allow_remote: bool) -> Result<Self> {
        let address: SocketAddr = address
            .parse()
            .with_context(|| format!("--listen {address}: not an IP address and port"))?;
        if !address.ip().is_loopback() && !allow_remote {
            bail!(
                "--listen {address}: not a loopback address; the scanner link is unauthenticated, so listening beyond this machine must be asked for with --allow-remote"
            );
        }
        Ok(Self::Listen(address))
    }
}

/// Work for the reconstruction worker.
pub enum Job {
    /// Plan for this scan's grid while its lines arrive.
    Scan(ScanStart),
    Slice(SliceJob),
}

/// Reads a channel of chunks filled by a reader thread; `Idle` every [`TICK`], `End` when
/// the reader is done or `stop` is set.
struct ChannelSource {
    chunks: Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
}

impl ByteSource for ChannelSource {
    fn next_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<Chunk> {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(Chunk::End);
        }
        match self.chunks.recv_timeout(TICK) {
            Ok(chunk) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                Ok(Chunk::Data(n))
            }
            Err(RecvTimeoutError::Timeout) => Ok(Chunk::Idle),
            Err(RecvTimeoutError::Disconnected) => Ok(Chunk::End),
        }
    }
}

/// Moves bytes from `reader` into a bounded queue until end of stream, an error, or the
/// ingest hangs up.
fn spawn_reader<R: Read + Send + 'static>(
    mut reader: R,
    name: String,
) -> Result<Receiver<Vec<u8>>> {
    let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(CHUNK_QUEUE);
    thread::Builder::new()
        .name(format!("reader {name}"))
        .spawn(move || {
            let mut buf = vec![0u8; crate::ingest::CHUNK_BYTES];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if sender.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("sparsemap: {name}: read error: {e}");
                        break;
                    }
                }
            }
        })
        .context("cannot start a reader thread")?;
    Ok(receiver)
}

/// Runs one stream through the ingest, sending jobs to the worker (blocking when its queue
/// is full) and handling previews on this thread.
fn run_stream(
    source: &mut dyn ByteSource,
    config: &IngestConfig,
    jobs: &SyncSender<Job>,
    preview: &mut dyn FnMut(&ScanStart, u16, u32, &[num_complex::Complex32], &[bool]) -> Result<()>,
) -> Result<IngestSummary> {
    ingest(source, config, &mut |event| {
        match event {
            Event::Scan(start) => jobs
                .send(Job::Scan(start))
                .map_err(|_| anyhow::anyhow!("the reconstruction worker stopped"))?,
            Event::Slice(job) => jobs
                .send(Job::Slice(job))
                .map_err(|_| anyhow::anyhow!("the reconstruction worker stopped"))?,
            Event::Preview {
                start,
                slice,
                lines,
                kspace,
                mask,
            } => {
                if let Err(e) = preview(start, slice, lines, kspace, mask) {
                    eprintln!(
                        "sparsemap: scan {} slice {slice}: preview failed: {e:#}",
                        start.scan_id
                    );
                }
            }
            Event::Rejected { start, reason } => eprintln!(
                "sparsemap: scan {} rejected: {reason}; its lines are dropped",
                start.scan_id
            ),
        }
        Ok(())
    })
}

/// Serves `source` until it ends (serial, stdin) or `stop` is set (any source), sending
/// jobs to `jobs`. Returns after the last stream's jobs were sent; the caller then closes
/// the queue and waits for the worker.
pub fn serve_source(
    source: &Source,
    config: &IngestConfig,
    stop: &Arc<AtomicBool>,
    jobs: &SyncSender<Job>,
    preview: &mut dyn FnMut(&ScanStart, u16, u32, &[num_complex::Complex32], &[bool]) -> Result<()>,
) -> Result<()> {
    match source {
        Source::Serial(path) => {
            let name = path.display().to_string();
            let chunks = if name == "-" {
                spawn_reader(std::io::stdin(), "stdin".into())?
            } else {
                let device = std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                spawn_reader(device, name.clone())?
            };
            let mut source = ChannelSource {
                chunks,
                stop: Arc::clone(stop),
            };
            let summary = run_stream(&mut source, config, jobs, preview)?;
            log_summary(&name, &summary);
            Ok(())
        }
        Source::Listen(address) => {
            let listener = TcpListener::bind(address)
                .with_context(|| format!("cannot listen on {address}"))?;
            listener
                .set_nonblocking(true)
                .context("cannot make the listener non-blocking")?;
            eprintln!(
                "sparsemap: listening on {}",
                listener.local_addr().unwrap_or(*address)
            );
            while !stop.load(Ordering::Relaxed) {
                let (stream, peer) = match listener.accept() {
                    Ok(connection) => connection,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(TICK);
                        continue;
                    }
                    Err(e) => {
                        eprintln!("sparsemap: accept failed: {e}");
                        thread::sleep(TICK);
                        continue;
                    }
                };
                eprintln!("sparsemap: connection from {peer}");
                if let Err(e) = serve_connection(stream, peer, config, stop, jobs, preview) {
                    // The worker is gone: nothing more can be served.
                    return Err(e);
                }
            }
            Ok(())
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: &IngestConfig,
    stop: &Arc<AtomicBool>,
    jobs: &SyncSender<Job>,
    preview: &mut dyn FnMut(&ScanStart, u16, u32, &[num_complex::Complex32], &[bool]) -> Result<()>,
) -> Result<()> {
    stream
        .set_nonblocking(false)
        .context("cannot make the connection blocking")?;
    let closer = stream.try_clone().context("cannot clone the connection")?;
    let chunks = spawn_reader(stream, peer.to_string())?;
    let mut source = ChannelSource {
        chunks,
        stop: Arc::clone(stop),
    };
    let result = run_stream(&mut source, config, jobs, preview);
    // Unblocks the reader if we stopped before the peer did.
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let summary = result?;
    log_summary(&peer.to_string(), &summary);
    Ok(())
}

fn log_summary(name: &str, summary: &IngestSummary) {
    eprintln!(
        "sparsemap: {name}: stream closed after {} bytes, {} scans ({} rejected), {} slices, {} frames outside a scan",
        summary.bytes,
        summary.scans,
        summary.rejected_scans,
        summary.slices,
        summary.errors_outside_scans
    );
}
