//! Every decoder error, produced on purpose, and what the decoder does next.

use std::io::Read;

use sparsemap_wire::{
    crc32, encode, heapless, max_encoded_len, max_raw_len, Decoder, EndStatus, Error, FeedResult,
    Frame, FrameReader, Line, ReadError, Samples, ScanEnd, ScanStart, MAX_N_X, SEQ_WINDOW, VERSION,
};

const N: usize = 8;
type Dec = Decoder<N, { max_raw_len(N) }>;

fn start(scan_id: u32) -> ScanStart {
    ScanStart {
        version: VERSION,
        scan_id,
        n_y: 4,
        n_x: 2,
        n_coils: 1,
        n_slices: 1,
        field_mt: 47.0,
        fov_mm: [200.0; 2],
        kx_first: 0,
        kx_count: 2,
    }
}

fn line(scan_id: u32, seq: u32, ky: u16) -> Line<N> {
    let iq = heapless::Vec::from_slice(&[[seq as i16, 1], [-2, ky as i16]]).unwrap();
    Line {
        scan_id,
        seq,
        slice: 0,
        coil: 0,
        ky,
        samples: Samples::I16 { scale: 0.5, iq },
    }
}

fn end(scan_id: u32, lines_sent: u32) -> ScanEnd {
    ScanEnd {
        scan_id,
        lines_sent,
        status: EndStatus::Complete,
    }
}

fn enc(f: Frame<N>) -> Vec<u8> {
    let mut buf = [0u8; max_encoded_len(N)];
    encode(&f, &mut buf).unwrap().to_vec()
}

/// COBS-frame arbitrary raw bytes (body ‖ CRC), for frames the encoder would never make.
fn frame_raw(body: &[u8]) -> Vec<u8> {
    let mut raw = body.to_vec();
    raw.extend_from_slice(&crc32(body).to_le_bytes());
    let mut out = vec![0u8];
    let (mut ci, mut code) = (0, 1u8);
    for &b in &raw {
        if b == 0 {
            out[ci] = code;
            ci = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[ci] = code;
                ci = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[ci] = code;
    out.push(0);
    out
}

fn outcomes(dec: &mut Dec, bytes: &[u8]) -> Vec<Result<Frame<N>, Error>> {
    let mut v = Vec::new();
    dec.feed_all(bytes, |r| v.push(r));
    v
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn crc_mismatch_is_reported_and_the_next_frame_survives() {
    let mut a = enc(Frame::ScanStart(start(1)));
    a[3] ^= 0x10; // payload byte, stays non-zero
    assert_ne!(a[3], 0);
    let b = enc(Frame::ScanStart(start(2)));
    let out = outcomes(&mut Dec::new(), &concat(&[a, b]));
    assert!(matches!(out[0], Err(Error::Crc { .. })), "{out:?}");
    assert_eq!(out[1], Ok(Frame::ScanStart(start(2))));
    assert_eq!(out.len(), 2);
}

#[test]
fn truncated_frames() {
    let full = enc(Frame::ScanStart(start(1)));
    // Cut inside a COBS block: the block claims more bytes than arrive before the 0x00.
    let mut cut = full[..3].to_vec();
    cut.push(0);
    assert_eq!(full[..2], [0x01, 0x07]); // tag 0 → empty first block, then a block of 6
    let mut dec = Dec::new();
    let o = outcomes(&mut dec, &[&[0x05, 0x11, 0x22][..], &[0][..]].concat());
    assert_eq!(o, vec![Err(Error::Truncated)]);
    // Too short to hold a tag and a CRC.
    assert_eq!(
        outcomes(&mut dec, &[0x03, 0x01, 0x02, 0x00]),
        vec![Err(Error::Truncated)]
    );
    // The 6-byte block gets 1 byte before the delimiter.
    assert_eq!(outcomes(&mut dec, &cut), vec![Err(Error::Truncated)]);
    // A prefix that ends exactly on a block boundary is complete COBS: a CRC error.
    let mut at_boundary = full[..8].to_vec();
    at_boundary.push(0);
    assert!(matches!(
        outcomes(&mut dec, &at_boundary)[..],
        [Err(Error::Crc { .. })]
    ));
    // End of stream inside a frame.
    let mut dec = Dec::new();
    assert_eq!(outcomes(&mut dec, &full[..full.len() - 1]), vec![]);
    assert_eq!(dec.finish(), Some(Err(Error::Truncated)));
    assert_eq!(dec.finish(), None);
}

#[test]
fn oversize_is_reported_once_then_resync() {
    let mut bytes = vec![0x55u8; 3 * max_raw_len(N)];
    bytes.push(0);
    bytes.extend(enc(Frame::ScanStart(start(1))));
    for chunk in [1usize, 7, 1000] {
        let mut dec = Dec::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            dec.feed_all(c, |r| out.push(r));
        }
        assert_eq!(
            out,
            vec![Err(Error::Oversize), Ok(Frame::ScanStart(start(1)))],
            "chunk {chunk}"
        );
    }
}

#[test]
fn malformed_content_with_a_valid_crc() {
    let mut dec = Dec::new();
    assert_eq!(
        outcomes(&mut dec, &frame_raw(&[9])),
        vec![Err(Error::Malformed)],
        "unknown variant"
    );
    let mut body = vec![2, 1, 0, 0]; // ScanEnd ...
    body.push(0x77); // ... with a trailing byte
    assert_eq!(
        outcomes(&mut dec, &frame_raw(&body)),
        vec![Err(Error::Malformed)],
        "trailing bytes"
    );
    assert_eq!(
        outcomes(&mut dec, &frame_raw(&[1, 1])),
        vec![Err(Error::Malformed)],
        "short line"
    );
}

#[test]
fn unknown_version_whether_or_not_the_rest_parses() {
    let mut dec = Dec::new();
    let v3 = ScanStart {
        version: 3,
        ..start(5)
    };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanStart(v3))),
        vec![Err(Error::UnknownVersion { version: 3 })]
    );
    // A future layout that postcard cannot read as v1 at all.
    assert_eq!(
        outcomes(&mut dec, &frame_raw(&[0, 3, 0xFF])),
        vec![Err(Error::UnknownVersion { version: 3 })]
    );
    // Its lines then belong to no known scan.
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(line(5, 0, 0)))),
        vec![Err(Error::UnknownScan { scan_id: 5 })]
    );
}

/// A version-1 `ScanStart`, written by hand as the v1 firmware sent it (no readout window:
/// the frame ends after `fov_mm`), is a version this decoder cannot read, not a malformed
/// frame; and its lines then belong to no known scan.
#[test]
fn version_1_scan_start_is_an_unknown_version() {
    let mut dec = Dec::new();
    // postcard: variant 0, version 1, scan_id 5, n_y 4, n_x 2, n_coils 1, n_slices 1,
    // field_mt 47.0, fov_mm [200.0, 200.0].
    let v1: [u8; 19] = [
        0x00, 0x01, 0x05, 0x04, 0x02, 0x01, 0x01, 0x00, 0x00, 0x3C, 0x42, 0x00, 0x00, 0x48, 0x43,
        0x00, 0x00, 0x48, 0x43,
    ];
    assert_eq!(
        outcomes(&mut dec, &frame_raw(&v1)),
        vec![Err(Error::UnknownVersion { version: 1 })]
    );
    // The same bytes with the two v2 window fields appended are this crate's v2 frame,
    // once the version is 2: the hand-made layout is the real one.
    let mut v2 = v1.to_vec();
    v2[1] = 0x02;
    v2.extend_from_slice(&[0x00, 0x02]); // kx_first 0, kx_count 2
    assert_eq!(
        outcomes(&mut dec, &frame_raw(&v2)),
        vec![Ok(Frame::ScanStart(start(5)))]
    );
    // A v1 line (2 samples, as start(5) allows) now passes, but one of the unknown scan
    // after the rejected v1 start does not.
    let mut dec = Dec::new();
    outcomes(&mut dec, &frame_raw(&v1));
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(line(5, 0, 0)))),
        vec![Err(Error::UnknownScan { scan_id: 5 })]
    );
}

/// Every readout-window rule of `ScanStart`, at its boundary: one past is refused, the
/// boundary itself accepted.
#[test]
fn readout_window_must_fit_grid_and_capacity() {
    let ok = |s: ScanStart| {
        let mut dec = Dec::new();
        outcomes(&mut dec, &enc(Frame::ScanStart(s))) == vec![Ok(Frame::ScanStart(s))]
    };
    let base = start(1); // n_x 2, window 0..2
    assert!(ok(base));
    assert!(
        !ok(ScanStart {
            kx_count: 0,
            ..base
        }),
        "empty window"
    );
    assert!(
        !ok(ScanStart {
            kx_first: 1,
            ..base
        }),
        "window past the grid"
    );
    assert!(ok(ScanStart {
        kx_first: 1,
        kx_count: 1,
        ..base
    }));
    assert!(
        !ok(ScanStart {
            kx_first: u16::MAX,
            kx_count: 2,
            ..base
        }),
        "no u16 overflow"
    );
    // kx_count above the decoder's capacity N = 8, even in a grid wide enough.
    let wide = ScanStart {
        n_x: 64,
        kx_first: 10,
        kx_count: N as u16,
        ..base
    };
    assert!(ok(wide), "n_x may exceed N: only the window travels");
    assert!(
        !ok(ScanStart {
            kx_count: N as u16 + 1,
            ..wide
        }),
        "window above capacity"
    );
    // n_x above MAX_N_X even with a small window.
    assert!(ok(ScanStart {
        n_x: MAX_N_X as u16,
        ..wide
    }));
    assert!(
        !ok(ScanStart {
            n_x: MAX_N_X as u16 + 1,
            ..wide
        }),
        "grid above MAX_N_X"
    );
    // Lines must carry exactly kx_count samples, not n_x.
    let mut dec = Dec::new();
    let s = ScanStart {
        n_x: 6,
        kx_first: 2,
        kx_count: 2,
        ..base
    };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanStart(s))),
        vec![Ok(Frame::ScanStart(s))]
    );
    let mut six = line(1, 0, 1);
    six.samples = Samples::F32 {
        iq: heapless::Vec::from_slice(&[[1.0, 2.0]; 6]).unwrap(),
    };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(six))),
        vec![Err(Error::InvalidFrame)]
    );
    let two = line(1, 0, 1);
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(two.clone()))),
        vec![Ok(Frame::Line(two))]
    );
}

#[test]
fn invalid_frames() {
    let mut dec = Dec::new();
    let too_wide = ScanStart {
        n_x: N as u16 + 1,
        kx_count: N as u16 + 1,
        ..start(1)
    };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanStart(too_wide))),
        vec![Err(Error::InvalidFrame)]
    );
    let empty = ScanStart { n_y: 0, ..start(1) };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanStart(empty))),
        vec![Err(Error::InvalidFrame)]
    );
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanStart(start(1)))),
        vec![Ok(Frame::ScanStart(start(1)))]
    );
    // Same id, different geometry.
    let other = ScanStart { n_y: 8, ..start(1) };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanStart(other))),
        vec![Err(Error::InvalidFrame)]
    );
    // ky out of range, wrong sample count, coil out of range.
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(line(1, 0, 4)))),
        vec![Err(Error::InvalidFrame)]
    );
    let mut short = line(1, 0, 1);
    short.samples = Samples::F32 {
        iq: heapless::Vec::from_slice(&[[1.0, 2.0]]).unwrap(),
    };
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(short))),
        vec![Err(Error::InvalidFrame)]
    );
    let mut coil = line(1, 0, 1);
    coil.coil = 1;
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(coil))),
        vec![Err(Error::InvalidFrame)]
    );
    // seq = u32::MAX would leave no next seq to expect.
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(line(1, u32::MAX, 1)))),
        vec![Err(Error::InvalidFrame)]
    );
    // None of that disturbed the scan: line 0 is still expected.
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(line(1, 0, 1)))),
        vec![Ok(Frame::Line(line(1, 0, 1)))]
    );
}

#[test]
fn sequence_gap_duplicate_late_and_stale() {
    let mut dec = Dec::new();
    let mut s = enc(Frame::ScanStart(start(1)));
    s.extend(enc(Frame::Line(line(1, 0, 0))));
    s.extend(enc(Frame::Line(line(1, 3, 3)))); // 1 and 2 missing
    s.extend(enc(Frame::Line(line(1, 3, 3)))); // duplicate
    s.extend(enc(Frame::Line(line(1, 1, 1)))); // late: delivered
    s.extend(enc(Frame::Line(line(1, 1, 1)))); // now a duplicate
    s.extend(enc(Frame::ScanEnd(end(1, 4)))); // line 2 never came
    s.extend(enc(Frame::ScanEnd(end(1, 4)))); // duplicate end
    let out = outcomes(&mut dec, &s);
    assert_eq!(
        out,
        vec![
            Ok(Frame::ScanStart(start(1))),
            Ok(Frame::Line(line(1, 0, 0))),
            Err(Error::SequenceGap {
                expected: 1,
                got: 3
            }),
            Ok(Frame::Line(line(1, 3, 3))),
            Err(Error::Duplicate {
                scan_id: 1,
                seq: Some(3)
            }),
            Ok(Frame::Line(line(1, 1, 1))),
            Err(Error::Duplicate {
                scan_id: 1,
                seq: Some(1)
            }),
            Err(Error::Incomplete {
                scan_id: 1,
                lines_sent: 4,
                lines_received: 3
            }),
            Ok(Frame::ScanEnd(end(1, 4))),
            Err(Error::Duplicate {
                scan_id: 1,
                seq: None
            }),
        ]
    );
    // Stale: more than SEQ_WINDOW behind the newest line.
    let mut dec = Dec::new();
    let mut s = enc(Frame::ScanStart(start(2)));
    s.extend(enc(Frame::Line(line(2, SEQ_WINDOW + 5, 0))));
    s.extend(enc(Frame::Line(line(2, 4, 0))));
    s.extend(enc(Frame::Line(line(2, 5, 0))));
    s.extend(enc(Frame::Line(line(2, 6, 0))));
    let out = outcomes(&mut dec, &s);
    // The window is the SEQ_WINDOW seqs below the next expected one (SEQ_WINDOW + 6).
    assert_eq!(out[3], Err(Error::Stale { seq: 4 }));
    assert_eq!(out[4], Err(Error::Stale { seq: 5 }));
    assert_eq!(
        out[5],
        Ok(Frame::Line(line(2, 6, 0))),
        "the oldest seq in the window is still checked"
    );
}

#[test]
fn unknown_scan_and_interrupted_scan() {
    let mut dec = Dec::new();
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::Line(line(7, 0, 0)))),
        vec![Err(Error::UnknownScan { scan_id: 7 })]
    );
    assert_eq!(
        outcomes(&mut dec, &enc(Frame::ScanEnd(end(7, 0)))),
        vec![Err(Error::UnknownScan { scan_id: 7 })]
    );
    let mut s = enc(Frame::ScanStart(start(1)));
    s.extend(enc(Frame::ScanStart(start(2)))); // scan 1's end was lost
    s.extend(enc(Frame::Line(line(1, 0, 0)))); // a straggler of scan 1
    assert_eq!(
        outcomes(&mut dec, &s),
        vec![
            Ok(Frame::ScanStart(start(1))),
            Err(Error::ScanInterrupted { scan_id: 1 }),
            Ok(Frame::ScanStart(start(2))),
            Err(Error::UnknownScan { scan_id: 1 }),
        ]
    );
    // End of stream inside scan 2.
    assert_eq!(
        dec.finish(),
        Some(Err(Error::ScanInterrupted { scan_id: 2 }))
    );
    assert_eq!(dec.finish(), None);
    assert!(dec.active_scan().is_none());
}

#[test]
fn pending_frame_is_not_lost_when_the_caller_stops_at_an_empty_rest() {
    let mut s = enc(Frame::ScanStart(start(1)));
    s.extend(enc(Frame::Line(line(1, 2, 0))));
    let mut dec = Dec::new();
    let mut rest = &s[..];
    let mut got = Vec::new();
    // A caller that (wrongly) stops when the rest is empty...
    while !rest.is_empty() {
        rest = match dec.feed(rest) {
            FeedResult::Consumed => break,
            FeedResult::Frame { frame, remaining } => {
                got.push(Ok(frame));
                remaining
            }
            FeedResult::Error { error, remaining } => {
                got.push(Err(error));
                remaining
            }
        };
    }
    assert_eq!(
        got.last(),
        Some(&Err(Error::SequenceGap {
            expected: 0,
            got: 2
        }))
    );
    // ...gets the gapped line with the next chunk, or from finish().
    assert_eq!(dec.finish(), Some(Ok(Frame::Line(line(1, 2, 0)))));
}

/// A reader that hands out 3 bytes at a time and is interrupted every other call.
struct Stingy<'a> {
    data: &'a [u8],
    calls: u32,
}

impl Read for Stingy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(2) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = self.data.len().min(buf.len()).min(3);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn frame_reader_over_a_stingy_reader() {
    let mut s = enc(Frame::ScanStart(start(1)));
    s.extend(enc(Frame::Line(line(1, 0, 1))));
    s.extend(enc(Frame::Line(line(1, 2, 3))));
    s.extend(enc(Frame::ScanEnd(end(1, 3))));
    s.extend(&enc(Frame::ScanStart(start(9)))[..5]); // cut off
    let items: Vec<_> = FrameReader::<_, N, { max_raw_len(N) }>::new(Stingy { data: &s, calls: 0 })
        .map(|r| match r {
            Ok(f) => Ok(f),
            Err(ReadError::Wire(e)) => Err(e),
            Err(ReadError::Io(e)) => panic!("{e}"),
        })
        .collect();
    assert_eq!(
        items,
        vec![
            Ok(Frame::ScanStart(start(1))),
            Ok(Frame::Line(line(1, 0, 1))),
            Err(Error::SequenceGap {
                expected: 1,
                got: 2
            }),
            Ok(Frame::Line(line(1, 2, 3))),
            Err(Error::Incomplete {
                scan_id: 1,
                lines_sent: 3,
                lines_received: 2
            }),
            Ok(Frame::ScanEnd(end(1, 3))),
            Err(Error::Truncated),
        ]
    );
}

#[test]
fn frame_reader_stops_after_an_io_error() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::ConnectionReset.into())
        }
    }
    let mut it = FrameReader::<_>::new(Broken);
    assert!(matches!(it.next(), Some(Err(ReadError::Io(_)))));
    assert!(it.next().is_none());
}

/// The memory cost stated in `Decoder`'s docs.
#[test]
fn decoder_size_is_as_documented() {
    let size = std::mem::size_of::<Decoder>();
    assert_eq!(sparsemap_wire::MAX_RAW_LEN, 4121);
    assert!(
        (8_300..=8_700).contains(&size),
        "Decoder is {size} bytes, documented ≈ 8.4 KiB"
    );
}
