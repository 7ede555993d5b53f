//! Bytes from Redis, fed to the RESP decoder in arbitrary chunks: no panic, nothing consumed
//! while waiting or on an error, and the same values, the same consumed bytes and the same
//! final outcome as when everything arrives at once.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::core::cluster::resp::{Decoder, RespError};

/// What a run produced: values (as `Debug`, so NaN equals NaN), bytes consumed, and how it
/// ended: `None` waiting for more, `Some(err)` refused.
type Run = (Vec<String>, usize, Option<RespError>);

fn run(mut decoder: Decoder, input: &[u8], mut next_chunk: impl FnMut() -> usize) -> Run {
    let mut buf = BytesMut::new();
    let mut values = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    while fed < input.len() {
        let end = (fed + next_chunk().max(1)).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(value)) => {
                    assert!(buf.len() < before, "a value consumed nothing");
                    consumed += before - buf.len();
                    values.push(format!("{value:?}"));
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "waiting consumed bytes");
                    break;
                }
                Err(err) => {
                    assert_eq!(buf.len(), before, "an error consumed bytes");
                    return (values, consumed, Some(err));
                }
            }
        }
    }
    assert_eq!(consumed + buf.len(), input.len());
    (values, consumed, None)
}

fuzz_target!(|data: &[u8]| {
    // Byte 0 seeds the chunk sizes; byte 1 picks small limits (to reach every limit) or the
    // defaults; the rest is what Redis sent.
    let [seed, limits, input @ ..] = data else {
        return;
    };
    let decoder = if limits & 1 == 1 {
        Decoder {
            max_bulk_bytes: 16,
            max_elements: 4,
            max_depth: 3,
        }
    } else {
        Decoder::default()
    };
    let mut state = u32::from(*seed) | 0x100;
    let chunked = run(decoder, input, || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (state >> 16) as usize % 32
    });
    let at_once = run(decoder, input, || input.len());
    assert_eq!(chunked, at_once, "chunking changed the outcome");
});
