//! Arbitrary bytes as an MRD v1 stream (`serve --mrd`, crates/edge/src/mrd_stream.rs): the
//! message reader is called until the bytes end or it reports an error.
//!
//! Checks: no panic; no allocation beyond the documented limits (libFuzzer's RSS limit
//! catches one); a message read is one of the protocol's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsemap_edge::mrd_stream::{read_message, Message, ACQUISITION_HEADER_BYTES};

fuzz_target!(|input: &[u8]| {
    let mut reader = input;
    loop {
        match read_message(&mut reader) {
            Ok(Some(Message::Acquisition { header, data })) => {
                assert_eq!(header.len(), ACQUISITION_HEADER_BYTES);
                assert_eq!(data.len() % 2, 0, "complex samples");
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
