//! Bytes from Redis: the RESP decoder fed in arbitrary chunks, and cluster envelopes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringcast::core::cluster::Envelope;
use ringcast::core::cluster::resp::Decoder;

fuzz_target!(|data: &[u8]| {
    let _ = Envelope::decode(&Bytes::copy_from_slice(data));
    // The first byte picks a chunk size, so values arrive split at every kind of boundary.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => assert!(buf.len() < before, "a value consumed nothing"),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "waiting consumed bytes");
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
