//! Arbitrary HTTP request heads and chunked bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::core::http::request::{ChunkedDecoder, HeadLimits, parse_head};
use ringcast::core::ws::handshake::validate_upgrade;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
    };
    if let Ok(Some(head)) = parse_head(data, &limits) {
        let _ = head.query_pairs();
        let _ = head.path_segments();
        let _ = validate_upgrade(&head);
        let rest = data.get(head.head_len..).unwrap_or_default();
        let mut body = Vec::new();
        let _ = ChunkedDecoder::new(4096).decode(rest, &mut body);
    }
});
