//! Encoder: `postcard(frame) ‖ CRC-32(LE)`, COBS-encoded, then `0x00`, in one pass into the
//! caller's buffer.

use serde::Serialize;

use crate::frame::{Fault, Frame, Line, ScanEnd, ScanStart};
use crate::Error;

/// The CRC: CRC-32/ISO-HDLC (the zlib/Ethernet CRC-32: polynomial 0x04C11DB7 reflected,
/// init and final XOR 0xFFFFFFFF; check value `crc32("123456789") = 0xCBF43926`), computed
/// over the postcard bytes of the frame and appended little-endian. One 256-entry table
/// (1 KiB of flash).
pub(crate) static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 of `bytes` as the wire format uses it.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

/// Bytes a `u32`-range varint of `v` takes in postcard (LEB128).
const fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Largest `postcard(frame) ‖ CRC` (before COBS) of any frame whose line holds at most
/// `n_x` samples: the size of the decoder's accumulation buffer.
///
/// The largest frame is a `Line` with `f32` samples:
/// variant 1 + `scan_id` 5 + `seq` 5 + `slice` 3 + `coil` 1 + `ky` 3 + samples variant 1 +
/// length varint + `8 n_x` + CRC 4 = `23 + varint_len(n_x) + 8 n_x` (4121 bytes for 512).
/// An `i16` line is at most `27 + varint_len(n_x) + 6 n_x` (1565 bytes for 256), a
/// `ScanStart` 41 (variant 1 + `version` 3 + `scan_id` 5 + `n_y`, `n_x` 3 each + `n_coils`
/// 1 + `n_slices` 3 + `field_mt` 4 + `fov_mm` 8 + `kx_first`, `kx_count` 3 each + CRC 4).
/// `n_x = 0` still leaves room for every non-line frame.
pub const fn max_raw_len(n_x: usize) -> usize {
    let line = 23 + varint_len(n_x) + 8 * n_x;
    let other = 41;
    if line > other {
        line
    } else {
        other
    }
}

/// Largest encoded frame on the wire, delimiter included, for lines of at most `n_x`
/// samples: `raw + raw / 254 + 1` (COBS adds one code byte per started block of 254) `+ 1`
/// (the `0x00`), with `raw = max_raw_len(n_x)`. 4139 bytes for `n_x = 512`, 2083 for 256.
pub const fn max_encoded_len(n_x: usize) -> usize {
    let raw = max_raw_len(n_x);
    raw + raw / 254 + 2
}

/// Largest encoded frame for [`crate::MAX_N_X`] samples.
pub const MAX_ENCODED_LEN: usize = max_encoded_len(crate::MAX_N_X);

/// Largest raw frame for [`crate::MAX_N_X`] samples (default decoder capacity).
pub const MAX_RAW_LEN: usize = max_raw_len(crate::MAX_N_X);

/// A postcard flavor that COBS-encodes every byte straight into a slice; the CRC is taken
/// afterwards, block by block, from the COBS output itself.
///
/// COBS (Cheshire & Baker 1999): the output is a sequence of blocks, each a code byte
/// `c` in `1..=0xFF` followed by `c - 1` non-zero bytes; a block with `c < 0xFF` stands for
/// its bytes followed by a zero, except the last block of the frame. Zero never appears
/// inside, so `0x00` delimits frames.
///
/// Per byte the hot path is one compare, one store and two increments; the CRC then runs
/// over whole blocks (up to 254 bytes per table-driven `update`), which is what makes
/// encoding cheap on a Cortex-M4 (see firmware/README.md for instruction counts).
struct CrcCobs<'b> {
    out: &'b mut [u8],
    /// Next free index in `out`.
    pos: usize,
    /// Index of the current block's code byte (written when the block closes).
    code_idx: usize,
    /// Code of the current block: 1 + number of data bytes in it so far.
    code: u8,
}

impl<'b> CrcCobs<'b> {
    fn new(out: &'b mut [u8]) -> Result<Self, Error> {
        if out.is_empty() {
            return Err(Error::BufferTooSmall);
        }
        Ok(Self {
            out,
            pos: 1,
            code_idx: 0,
            code: 1,
        })
    }

    /// COBS-encode one byte.
    #[inline(always)]
    fn push(&mut self, b: u8) -> Result<(), Error> {
        if b == 0 {
            self.close_block()?;
        } else {
            *self.out.get_mut(self.pos).ok_or(Error::BufferTooSmall)? = b;
            self.pos += 1;
            self.code += 1;
            if self.code == 0xFF {
                self.close_block()?;
            }
        }
        Ok(())
    }

    /// Write the current code byte and open a new block.
    #[inline(always)]
    fn close_block(&mut self) -> Result<(), Error> {
        self.out[self.code_idx] = self.code;
        self.code_idx = self.pos;
        if self.pos >= self.out.len() {
            return Err(Error::BufferTooSmall);
        }
        self.pos += 1;
        self.code = 1;
        Ok(())
    }

    /// CRC-32 of the bytes encoded so far, recovered from the COBS blocks.
    fn crc(&self) -> u32 {
        let mut digest = CRC32.digest();
        let mut i = 0;
        while i != self.code_idx {
            let c = usize::from(self.out[i]);
            digest.update(&self.out[i + 1..i + c]);
            if c < 0xFF {
                digest.update(&[0]);
            }
            i += c;
        }
        digest.update(&self.out[self.code_idx + 1..self.pos]);
        digest.finalize()
    }

    fn finish(mut self) -> Result<&'b mut [u8], Error> {
        let crc = self.crc();
        for b in crc.to_le_bytes() {
            self.push(b)?;
        }
        self.out[self.code_idx] = self.code;
        *self.out.get_mut(self.pos).ok_or(Error::BufferTooSmall)? = 0;
        let len = self.pos + 1;
        Ok(&mut self.out[..len])
    }
}

/// Adapter so that postcard's serializer drives [`CrcCobs`]. postcard only sees
/// "buffer full" errors; the real cause is always [`Error::BufferTooSmall`].
struct Flavor<'b>(CrcCobs<'b>);

impl<'b> postcard::ser_flavors::Flavor for Flavor<'b> {
    type Output = CrcCobs<'b>;

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0
            .push(data)
            .map_err(|_| postcard::Error::SerializeBufferFull)
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        for &b in data {
            self.0
                .push(b)
                .map_err(|_| postcard::Error::SerializeBufferFull)?;
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Self::Output> {
        Ok(self.0)
    }
}

fn encode_value<'b, T: Serialize + ?Sized>(
    value: &T,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], Error> {
    let flavor = Flavor(CrcCobs::new(buf)?);
    let sink = postcard::serialize_with_flavor(value, flavor).map_err(|_| Error::BufferTooSmall)?;
    sink.finish()
}

/// A borrowed view with the same serde layout as [`Frame`] (same variant order), so a
/// `Line` can be encoded without moving it into a `Frame`.
#[derive(Serialize)]
enum FrameRef<'a, const N: usize> {
    ScanStart(&'a ScanStart),
    Line(&'a Line<N>),
    ScanEnd(&'a ScanEnd),
    Fault(&'a Fault),
}

/// Encode `frame` into `buf` and return the written prefix: the COBS encoding of
/// `postcard(frame) ‖ crc32(postcard(frame)).to_le_bytes()`, followed by one `0x00`.
///
/// The caller owns the memory; nothing is allocated. `buf.len() >= max_encoded_len(N)`
/// always suffices. Fails only with [`Error::BufferTooSmall`] (the buffer's content is then
/// unspecified). The encoder does not check the frame against a scan; the decoder does.
///
/// ```
/// use sparsemap_wire::{encode, Frame, ScanEnd, EndStatus};
/// let mut buf = [0u8; 32];
/// let end = Frame::<8>::ScanEnd(ScanEnd { scan_id: 7, lines_sent: 3, status: EndStatus::Complete });
/// let bytes = encode(&end, &mut buf).unwrap();
/// // postcard 02 07 03 00 (variant 2, scan_id 7, lines_sent 3, Complete), CRC-32 0xA52F52D1
/// // appended LE; COBS turns the one zero into the block boundary after 3 bytes.
/// assert_eq!(bytes, &[0x04, 0x02, 0x07, 0x03, 0x05, 0xD1, 0x52, 0x2F, 0xA5, 0x00]);
/// ```
pub fn encode<'b, const N: usize>(
    frame: &Frame<N>,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], Error> {
    encode_value(frame, buf)
}

/// Encode a `Line` exactly as `encode(&Frame::Line(line.clone()), buf)` would, without the
/// copy (what the firmware does for every readout).
pub fn encode_line<'b, const N: usize>(
    line: &Line<N>,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], Error> {
    encode_value(&FrameRef::<N>::Line(line), buf)
}

/// Encode a `ScanStart` (see [`encode`]).
pub fn encode_scan_start<'b>(s: &ScanStart, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
    encode_value(&FrameRef::<0>::ScanStart(s), buf)
}

/// Encode a `ScanEnd` (see [`encode`]).
pub fn encode_scan_end<'b>(e: &ScanEnd, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
    encode_value(&FrameRef::<0>::ScanEnd(e), buf)
}

/// Encode a `Fault` (see [`encode`]).
pub fn encode_fault<'b>(f: &Fault, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
    encode_value(&FrameRef::<0>::Fault(f), buf)
}
