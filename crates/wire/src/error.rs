//! The one error type of the crate.

/// Everything that can go wrong when encoding or decoding frames.
///
/// Encoding fails only with [`Error::BufferTooSmall`]. The decoder reports every other
/// variant; each one says what it dropped (or found missing) and is followed by
/// resynchronisation at the next `0x00` delimiter. Frames that produce an error never
/// change the decoder's scan state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The encoder's output buffer is smaller than the encoded frame. Size buffers with
    /// [`crate::max_encoded_len`].
    BufferTooSmall,
    /// More bytes than the decoder's capacity arrived without a delimiter. The decoder
    /// discards everything up to the next `0x00`.
    Oversize,
    /// A frame ended (delimiter or end of stream) before its COBS blocks did, or is shorter
    /// than a tag and a CRC: part of it was lost.
    Truncated,
    /// The CRC-32 at the end of the frame does not match its content: bytes were corrupted.
    Crc {
        /// CRC carried by the frame.
        expected: u32,
        /// CRC computed over the received bytes.
        computed: u32,
    },
    /// The CRC matched but the content is not a frame of this version (unknown variant,
    /// bad length, trailing bytes).
    Malformed,
    /// A `ScanStart` of a layout version this decoder cannot read. Its lines will be
    /// reported as [`Error::UnknownScan`].
    UnknownVersion {
        /// The version the frame announced.
        version: u16,
    },
    /// A frame is well-formed but inconsistent with its scan: a `ScanStart` with a zero
    /// dimension, `n_x` above `MAX_N_X`, a readout window that is empty, leaves the grid
    /// or exceeds the decoder's capacity, a `ScanStart` reusing the active `scan_id` with
    /// different geometry, or a `Line` whose `ky`, `coil`, `slice` or sample count
    /// (`!= kx_count`) does not fit the scan, or whose `seq` is `u32::MAX` (a scan has
    /// fewer lines).
    InvalidFrame,
    /// `Line.seq` jumped: the lines `expected..got` were lost on the link (so far — a late,
    /// reordered one is still delivered if it arrives). The line `got` itself is delivered
    /// by the next call to `feed`.
    SequenceGap {
        /// The `seq` that should have come next.
        expected: u32,
        /// The `seq` that came.
        got: u32,
    },
    /// A frame that was already delivered arrived again; dropped.
    Duplicate {
        /// Its scan.
        scan_id: u32,
        /// Its `seq` for a `Line`, `None` for `ScanStart`/`ScanEnd`.
        seq: Option<u32>,
    },
    /// A `Line` too far behind the newest one (more than [`crate::SEQ_WINDOW`]) to tell a
    /// duplicate from a late arrival; dropped.
    Stale {
        /// Its `seq`.
        seq: u32,
    },
    /// A `Line` or `ScanEnd` for a scan that is not active (its `ScanStart` was lost or had
    /// an unknown version, or the scan already ended); dropped.
    UnknownScan {
        /// The scan it names.
        scan_id: u32,
    },
    /// A `ScanStart` arrived while another scan was active (that scan's `ScanEnd` was
    /// lost), or the stream ended inside a scan. The old scan is closed; the new
    /// `ScanStart`, if any, is delivered by the next call to `feed`.
    ScanInterrupted {
        /// The scan that was cut short.
        scan_id: u32,
    },
    /// At `ScanEnd`, the number of distinct lines received differs from `lines_sent`. The
    /// `ScanEnd` itself is delivered by the next call to `feed`.
    Incomplete {
        /// The scan.
        scan_id: u32,
        /// Lines the sender emitted.
        lines_sent: u32,
        /// Distinct lines this decoder delivered.
        lines_received: u32,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::BufferTooSmall => write!(f, "output buffer too small for the encoded frame"),
            Error::Oversize => write!(f, "frame larger than the decoder's capacity"),
            Error::Truncated => write!(f, "truncated frame"),
            Error::Crc { expected, computed } => {
                write!(
                    f,
                    "CRC mismatch (frame {expected:#010x}, computed {computed:#010x})"
                )
            }
            Error::Malformed => write!(f, "CRC ok but not a valid frame"),
            Error::UnknownVersion { version } => write!(f, "unknown frame version {version}"),
            Error::InvalidFrame => write!(f, "frame inconsistent with its scan"),
            Error::SequenceGap { expected, got } => {
                write!(f, "sequence gap: expected line {expected}, got {got}")
            }
            Error::Duplicate {
                scan_id,
                seq: Some(seq),
            } => {
                write!(f, "duplicate line {seq} of scan {scan_id}")
            }
            Error::Duplicate { scan_id, seq: None } => {
                write!(f, "duplicate start/end of scan {scan_id}")
            }
            Error::Stale { seq } => write!(f, "line {seq} arrived too late to check"),
            Error::UnknownScan { scan_id } => write!(f, "frame for unknown scan {scan_id}"),
            Error::ScanInterrupted { scan_id } => write!(f, "scan {scan_id} ended without ScanEnd"),
            Error::Incomplete {
                scan_id,
                lines_sent,
                lines_received,
            } => write!(
                f,
                "scan {scan_id}: {lines_received} of {lines_sent} lines received"
            ),
        }
    }
}

impl core::error::Error for Error {}
