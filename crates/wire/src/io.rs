//! `std` adapter: frames from any [`std::io::Read`].

extern crate std;

use std::io::{ErrorKind, Read};

use crate::decode::{Decoder, FeedResult};
use crate::encode::MAX_RAW_LEN;
use crate::frame::{Frame, MAX_N_X};
use crate::Error;

/// Why [`FrameReader`] yielded an error.
#[derive(Debug)]
pub enum ReadError {
    /// The reader failed (other than `Interrupted`, which is retried). The iterator ends.
    Io(std::io::Error),
    /// The stream had a problem the decoder reports; the iterator goes on.
    Wire(Error),
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Wire(e) => write!(f, "wire error: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Size of the read chunk of [`FrameReader`].
pub const READ_CHUNK: usize = 4096;

/// Iterator over the frames (and decoder errors) of a byte stream, e.g. a `.smw` file,
/// a serial port or a TCP socket.
///
/// Yields `Ok(frame)` and `Err(ReadError::Wire(_))` in stream order. At end of stream it
/// yields what [`Decoder::finish`] reports (a truncated last frame, a scan without
/// `ScanEnd`) and then `None`. An I/O error is yielded once and ends the iteration.
///
/// ```
/// use sparsemap_wire::{encode, Frame, FrameReader, ScanEnd, EndStatus, ReadError, Error};
/// let mut buf = [0u8; 64];
/// let end = Frame::<512>::ScanEnd(ScanEnd { scan_id: 3, lines_sent: 0, status: EndStatus::Complete });
/// let bytes = encode(&end, &mut buf).unwrap().to_vec();
/// let items: Vec<_> = FrameReader::<_>::new(&bytes[..]).collect();
/// assert!(matches!(items[..], [Err(ReadError::Wire(Error::UnknownScan { scan_id: 3 }))]));
/// ```
pub struct FrameReader<R, const N: usize = MAX_N_X, const B: usize = MAX_RAW_LEN> {
    reader: R,
    decoder: std::boxed::Box<Decoder<N, B>>,
    chunk: std::boxed::Box<[u8; READ_CHUNK]>,
    start: usize,
    end: usize,
    eof: bool,
    failed: bool,
}

impl<R: Read, const N: usize, const B: usize> FrameReader<R, N, B> {
    /// Read frames from `reader` (wrap slow readers in nothing: reads are already chunked).
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            decoder: std::boxed::Box::new(Decoder::new()),
            chunk: std::boxed::Box::new([0; READ_CHUNK]),
            start: 0,
            end: 0,
            eof: false,
            failed: false,
        }
    }

    /// The decoder (e.g. to look at the active scan).
    pub fn decoder(&self) -> &Decoder<N, B> {
        &self.decoder
    }
}

impl<R: Read, const N: usize, const B: usize> Iterator for FrameReader<R, N, B> {
    type Item = Result<Frame<N>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if self.eof {
                return self.decoder.finish().map(|r| r.map_err(ReadError::Wire));
            }
            let input = &self.chunk[self.start..self.end];
            let before = input.len();
            let (outcome, left) = match self.decoder.feed(input) {
                FeedResult::Consumed => (None, 0),
                FeedResult::Frame { frame, remaining } => (Some(Ok(frame)), remaining.len()),
                FeedResult::Error { error, remaining } => {
                    (Some(Err(ReadError::Wire(error))), remaining.len())
                }
            };
            self.start += before - left;
            if let Some(item) = outcome {
                return Some(item);
            }
            match self.reader.read(&mut self.chunk[..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(ReadError::Io(e)));
                }
            }
        }
    }
}
