//! Arbitrary bytes from a client, fed to the frame decoder in arbitrary chunks.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::core::ws::frame::{FrameLimits, MessageDecoder, Role};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits {
        max_frame_bytes: 16 * 1024,
        max_message_bytes: 32 * 1024,
    };
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    let mut buf = BytesMut::new();
    // The first byte picks a chunk size, so reassembly across reads is exercised too.
    let chunk = usize::from(data.first().copied().unwrap_or(1).max(1));
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(err) => {
                    let _ = err.close_code();
                    return;
                }
            }
        }
    }
});
