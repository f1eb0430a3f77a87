//! Streaming decoder: bytes in arbitrary chunks → frames or typed errors, one outcome per
//! call, resynchronising at every `0x00`.

use crate::encode::{max_raw_len, CRC32, MAX_RAW_LEN};
use crate::frame::{Frame, Line, ScanEnd, ScanStart, MAX_N_X, VERSION};
use crate::Error;

/// How many `seq` numbers behind the newest line the decoder remembers, to tell a duplicate
/// (already delivered: dropped) from a late, reordered line (not yet delivered: delivered).
/// Costs `SEQ_WINDOW / 8` = 128 bytes of the decoder. Lines older than that are reported as
/// [`Error::Stale`].
pub const SEQ_WINDOW: u32 = 1024;

const WINDOW_WORDS: usize = (SEQ_WINDOW / 32) as usize;

/// The outcome of one [`Decoder::feed`] call.
#[derive(Debug)]
pub enum FeedResult<'a, const N: usize> {
    /// Every input byte was consumed and nothing is ready: feed more bytes.
    Consumed,
    /// A frame, and the input bytes that were not consumed yet (feed them next).
    Frame {
        /// The frame.
        frame: Frame<N>,
        /// Unconsumed input.
        remaining: &'a [u8],
    },
    /// Something was dropped or found missing, and the unconsumed input.
    Error {
        /// What.
        error: Error,
        /// Unconsumed input.
        remaining: &'a [u8],
    },
}

/// What the decoder knows about the active scan.
#[derive(Debug, Clone)]
struct ScanState {
    start: ScanStart,
    /// The `seq` expected next (one past the highest seen).
    next_seq: u32,
    /// Distinct lines delivered.
    received: u32,
    /// Bit `s % SEQ_WINDOW` is set when line `s` (for `next_seq - SEQ_WINDOW <= s < next_seq`)
    /// was delivered.
    seen: [u32; WINDOW_WORDS],
}

impl ScanState {
    fn bit(&self, seq: u32) -> bool {
        let i = (seq % SEQ_WINDOW) as usize;
        self.seen[i / 32] & (1 << (i % 32)) != 0
    }
    fn set(&mut self, seq: u32) {
        let i = (seq % SEQ_WINDOW) as usize;
        self.seen[i / 32] |= 1 << (i % 32);
    }
    fn clear(&mut self, seq: u32) {
        let i = (seq % SEQ_WINDOW) as usize;
        self.seen[i / 32] &= !(1 << (i % 32));
    }
    /// Move `next_seq` to `to` (`> next_seq`), forgetting the slots that are reused.
    fn advance(&mut self, to: u32) {
        if to - self.next_seq >= SEQ_WINDOW {
            self.seen = [0; WINDOW_WORDS];
        } else {
            for s in self.next_seq..to {
                self.clear(s);
            }
        }
        self.next_seq = to;
    }
}

/// Where the byte-level state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Accumulating a frame.
    InFrame,
    /// After an overflow: discarding until the next `0x00`.
    Skipping,
}

/// A fixed-capacity streaming decoder for the wire format, in the manner of postcard's
/// `CobsAccumulator`.
///
/// * `N`: largest readout it accepts (complex samples per line); `ScanStart.kx_count > N` is
///   [`Error::InvalidFrame`].
/// * `B`: bytes of the accumulation buffer, at least [`max_raw_len`]`(N)` (checked at compile
///   time). With the defaults (`N = 512`, `B = 4121`) a `Decoder` takes about 8.4 KiB: the
///   buffer, one pending frame of `8 N + 32` bytes, and 128 bytes of sequence window.
///
/// Feed it bytes exactly as they arrive, in chunks of any size. Each call to
/// [`Decoder::feed`] returns one outcome and the unconsumed rest of the chunk; call it again
/// with the rest **until it returns [`FeedResult::Consumed`]** (an empty rest is fine: an
/// error such as [`Error::SequenceGap`] is followed by the frame it concerns on the next
/// call). [`Decoder::feed_all`] does that loop for you.
///
/// Guarantees, checked by property tests and a fuzz target:
/// * it never panics, whatever the bytes;
/// * every frame whose bytes arrive intact between two delimiters (or after the start of the
///   stream) is delivered, once, provided its scan's `ScanStart` was delivered and its scan
///   has not ended;
/// * nothing else is delivered: a corrupted frame is reported, not passed on (up to the
///   2⁻³² chance that random damage matches the CRC-32);
/// * after any damage it is back in sync at the next `0x00`.
///
/// ```
/// use sparsemap_wire::{encode, Decoder, FeedResult, Frame, ScanEnd, EndStatus};
/// let mut buf = [0u8; 64];
/// let end = Frame::<512>::ScanEnd(ScanEnd { scan_id: 1, lines_sent: 0, status: EndStatus::Complete });
/// let bytes = encode(&end, &mut buf).unwrap();
/// let mut dec: Decoder = Decoder::new();
/// // Without its ScanStart the ScanEnd names an unknown scan:
/// match dec.feed(bytes) {
///     FeedResult::Error { error, remaining } => {
///         assert_eq!(error, sparsemap_wire::Error::UnknownScan { scan_id: 1 });
///         assert!(remaining.is_empty());
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Decoder<const N: usize = MAX_N_X, const B: usize = MAX_RAW_LEN> {
    buf: [u8; B],
    len: usize,
    /// Bytes since the last delimiter (COBS-encoded, saturating): distinguishes an empty
    /// frame (two delimiters in a row: ignored) from a frame.
    raw_len: usize,
    sync: Sync,
    /// Data bytes left in the current COBS block; 0 means the next byte is a code.
    block_left: u8,
    /// The current block had code < 0xFF, so a zero is due before the next block.
    zero_due: bool,
    scan: Option<ScanState>,
    /// The last scan that ended normally, to recognise its duplicated `ScanEnd`.
    last_ended: Option<ScanEnd>,
    pending: Option<Frame<N>>,
}

impl<const N: usize, const B: usize> Default for Decoder<N, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const B: usize> Decoder<N, B> {
    /// A decoder at the start of a stream (in sync: the first byte begins a frame).
    pub const fn new() -> Self {
        const {
            assert!(
                B >= max_raw_len(N),
                "Decoder buffer B smaller than max_raw_len(N)"
            )
        };
        Self {
            buf: [0; B],
            len: 0,
            raw_len: 0,
            sync: Sync::InFrame,
            block_left: 0,
            zero_due: false,
            scan: None,
            last_ended: None,
            pending: None,
        }
    }

    /// The `ScanStart` of the active scan, if a scan is active.
    pub fn active_scan(&self) -> Option<&ScanStart> {
        self.scan.as_ref().map(|s| &s.start)
    }

    /// Forget everything (partial frame, scan state, pending frame).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Consume bytes up to and including the first complete outcome; see the type's docs.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> FeedResult<'a, N> {
        if let Some(frame) = self.pending.take() {
            return FeedResult::Frame {
                frame,
                remaining: input,
            };
        }
        for (i, &b) in input.iter().enumerate() {
            if let Some(outcome) = self.push(b) {
                let remaining = &input[i + 1..];
                return match outcome {
                    Ok(frame) => FeedResult::Frame { frame, remaining },
                    Err(error) => FeedResult::Error { error, remaining },
                };
            }
        }
        FeedResult::Consumed
    }

    /// Feed all of `input`, calling `f` with every outcome in order.
    pub fn feed_all(&mut self, mut input: &[u8], mut f: impl FnMut(Result<Frame<N>, Error>)) {
        loop {
            match self.feed(input) {
                FeedResult::Consumed => return,
                FeedResult::Frame { frame, remaining } => {
                    f(Ok(frame));
                    input = remaining;
                }
                FeedResult::Error { error, remaining } => {
                    f(Err(error));
                    input = remaining;
                }
            }
        }
    }

    /// The stream has ended: report what is left, one error per call, `None` when nothing
    /// is. A partial frame is [`Error::Truncated`]; a scan without `ScanEnd` is
    /// [`Error::ScanInterrupted`]. A pending frame is returned before either. Afterwards the
    /// decoder is as new.
    pub fn finish(&mut self) -> Option<Result<Frame<N>, Error>> {
        if let Some(frame) = self.pending.take() {
            return Some(Ok(frame));
        }
        if self.raw_len > 0 && self.sync == Sync::InFrame {
            self.reset_frame();
            return Some(Err(Error::Truncated));
        }
        self.reset_frame();
        if let Some(scan) = self.scan.take() {
            return Some(Err(Error::ScanInterrupted {
                scan_id: scan.start.scan_id,
            }));
        }
        None
    }

    fn reset_frame(&mut self) {
        self.len = 0;
        self.raw_len = 0;
        self.block_left = 0;
        self.zero_due = false;
        self.sync = Sync::InFrame;
    }

    /// One byte through the COBS layer; `Some` when a frame ended.
    #[inline]
    fn push(&mut self, b: u8) -> Option<Result<Frame<N>, Error>> {
        if b == 0 {
            let was = (self.sync, self.raw_len, self.block_left);
            let len = self.len;
            self.reset_frame();
            return match was {
                (Sync::Skipping, _, _) => None,
                (Sync::InFrame, 0, _) => None, // empty frame: a bare delimiter, ignored
                (Sync::InFrame, _, left) if left > 0 => Some(Err(Error::Truncated)),
                (Sync::InFrame, _, _) => Some(self.frame_done(len)),
            };
        }
        if self.sync == Sync::Skipping {
            return None;
        }
        self.raw_len = self.raw_len.saturating_add(1);
        if self.block_left == 0 {
            // A code byte.
            if self.zero_due && !self.store(0) {
                return Some(Err(Error::Oversize));
            }
            self.block_left = b - 1;
            self.zero_due = b != 0xFF;
            None
        } else {
            self.block_left -= 1;
            if self.store(b) {
                None
            } else {
                Some(Err(Error::Oversize))
            }
        }
    }

    /// Append a decoded byte; on overflow switch to skipping and return `false`.
    #[inline(always)]
    fn store(&mut self, b: u8) -> bool {
        if self.len < B {
            self.buf[self.len] = b;
            self.len += 1;
            true
        } else {
            self.sync = Sync::Skipping;
            self.len = 0;
            false
        }
    }

    /// A complete de-COBSed frame of `len` bytes sits in `buf`.
    fn frame_done(&mut self, len: usize) -> Result<Frame<N>, Error> {
        if len < 5 {
            return Err(Error::Truncated);
        }
        let (body, crc) = self.buf[..len].split_at(len - 4);
        let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = CRC32.checksum(body);
        if expected != computed {
            return Err(Error::Crc { expected, computed });
        }
        let frame = match postcard::take_from_bytes::<Frame<N>>(body) {
            Ok((frame, [])) => frame,
            Ok(_) | Err(_) => {
                return Err(match announced_version(body) {
                    Some(version) if version != VERSION => Error::UnknownVersion { version },
                    _ => Error::Malformed,
                })
            }
        };
        self.check(frame)
    }

    /// The scan-level checks; may leave a frame pending behind an error.
    fn check(&mut self, frame: Frame<N>) -> Result<Frame<N>, Error> {
        match frame {
            Frame::ScanStart(s) => self.on_start(s),
            Frame::Line(l) => self.on_line(l),
            Frame::ScanEnd(e) => self.on_end(e),
            Frame::Fault(f) => Ok(Frame::Fault(f)),
        }
    }

    fn on_start(&mut self, s: ScanStart) -> Result<Frame<N>, Error> {
        if s.version != VERSION {
            return Err(Error::UnknownVersion { version: s.version });
        }
        if !window_fits::<N>(&s) || s.n_y == 0 || s.n_coils == 0 || s.n_slices == 0 {
            return Err(Error::InvalidFrame);
        }
        let new = ScanState {
            start: s,
            next_seq: 0,
            received: 0,
            seen: [0; WINDOW_WORDS],
        };
        match self.scan.replace(new) {
            None => Ok(Frame::ScanStart(s)),
            Some(old) if old.start.scan_id == s.scan_id => {
                let same = old.start == s;
                self.scan = Some(old);
                Err(if same {
                    Error::Duplicate {
                        scan_id: s.scan_id,
                        seq: None,
                    }
                } else {
                    Error::InvalidFrame
                })
            }
            Some(old) => {
                self.pending = Some(Frame::ScanStart(s));
                Err(Error::ScanInterrupted {
                    scan_id: old.start.scan_id,
                })
            }
        }
    }

    fn on_line(&mut self, l: Line<N>) -> Result<Frame<N>, Error> {
        let Some(scan) = self.scan.as_mut().filter(|s| s.start.scan_id == l.scan_id) else {
            return Err(Error::UnknownScan { scan_id: l.scan_id });
        };
        let st = &scan.start;
        if l.ky >= st.n_y
            || l.coil >= st.n_coils
            || l.slice >= st.n_slices
            || l.samples.len() != usize::from(st.kx_count)
            || l.seq == u32::MAX
        {
            return Err(Error::InvalidFrame);
        }
        let seq = l.seq;
        if seq >= scan.next_seq {
            let expected = scan.next_seq;
            scan.advance(seq + 1); // seq < u32::MAX: checked above
            scan.set(seq);
            scan.received += 1;
            if seq == expected {
                Ok(Frame::Line(l))
            } else {
                self.pending = Some(Frame::Line(l));
                Err(Error::SequenceGap { expected, got: seq })
            }
        } else if scan.next_seq - seq > SEQ_WINDOW {
            Err(Error::Stale { seq })
        } else if scan.bit(seq) {
            Err(Error::Duplicate {
                scan_id: l.scan_id,
                seq: Some(seq),
            })
        } else {
            scan.set(seq);
            scan.received += 1;
            Ok(Frame::Line(l))
        }
    }

    fn on_end(&mut self, e: ScanEnd) -> Result<Frame<N>, Error> {
        match self.scan.as_ref() {
            Some(scan) if scan.start.scan_id == e.scan_id => {
                let received = scan.received;
                self.scan = None;
                self.last_ended = Some(e);
                if received != e.lines_sent {
                    self.pending = Some(Frame::ScanEnd(e));
                    Err(Error::Incomplete {
                        scan_id: e.scan_id,
                        lines_sent: e.lines_sent,
                        lines_received: received,
                    })
                } else {
                    Ok(Frame::ScanEnd(e))
                }
            }
            _ if self.last_ended == Some(e) => Err(Error::Duplicate {
                scan_id: e.scan_id,
                seq: None,
            }),
            _ => Err(Error::UnknownScan { scan_id: e.scan_id }),
        }
    }
}

/// The readout window of `s` is inside a grid the format allows and a line of it fits a
/// decoder of capacity `N`: `1 <= kx_count <= N`, `kx_first + kx_count <= n_x <= MAX_N_X`.
/// (`n_x` itself may exceed `N`: only the window travels.)
fn window_fits<const N: usize>(s: &ScanStart) -> bool {
    let end = u32::from(s.kx_first) + u32::from(s.kx_count);
    s.kx_count >= 1
        && usize::from(s.kx_count) <= N
        && end <= u32::from(s.n_x)
        && usize::from(s.n_x) <= MAX_N_X
}

/// If `body` starts like a `ScanStart` (variant 0), the version varint that follows.
fn announced_version(body: &[u8]) -> Option<u16> {
    let (&tag, rest) = body.split_first()?;
    if tag != 0 {
        return None;
    }
    postcard::take_from_bytes::<u16>(rest).ok().map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_advance_clears_reused_slots() {
        let mut s = ScanState {
            start: ScanStart {
                version: VERSION,
                scan_id: 1,
                n_y: 1,
                n_x: 1,
                n_coils: 1,
                n_slices: 1,
                field_mt: 0.0,
                fov_mm: [0.0; 2],
                kx_first: 0,
                kx_count: 1,
            },
            next_seq: 0,
            received: 0,
            seen: [0; WINDOW_WORDS],
        };
        s.advance(6); // as on_line does: advance past seq, then mark it
        s.set(5);
        assert!(s.bit(5));
        // Window is next_seq - SEQ_WINDOW .. next_seq: seq 5 is still in it.
        s.advance(5 + SEQ_WINDOW);
        assert!(s.bit(5));
        // One more and slot 5 belongs to 5 + SEQ_WINDOW, which was not seen.
        s.advance(6 + SEQ_WINDOW);
        assert!(!s.bit(5 + SEQ_WINDOW));
        s.set(6 + SEQ_WINDOW - 1);
        s.advance(8 + 3 * SEQ_WINDOW);
        assert!(s.seen.iter().all(|&w| w == 0));
    }
}
