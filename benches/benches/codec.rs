//! The RFC 6455 frame codec: decoding masked client frames, encoding server frames.
//!
//! Decoding consumes its input buffer (the frame is split off and unmasked in place), so each
//! iteration gets a fresh copy of the wire bytes from `iter_batched`, outside the timing.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::core::ws::frame::{
    FrameLimits, Message, MessageDecoder, Opcode, Role, encode_client_frame, encode_frame,
    encode_frame_into,
};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The limits a default app gets (`max_message_bytes` 10 KB plus the envelope slack).
const LIMITS: FrameLimits = FrameLimits {
    max_frame_bytes: 11 * 1024,
    max_message_bytes: 11 * 1024,
};

/// A client event of exactly `len` bytes of JSON text, padded inside its `data`.
fn client_event_text(len: usize) -> Vec<u8> {
    let head = r#"{"event":"client-typing","channel":"private-chat.room-42","data":{"text":""#;
    let tail = r#""}}"#;
    let pad = len - head.len() - tail.len();
    let mut text = Vec::with_capacity(len);
    text.extend_from_slice(head.as_bytes());
    text.extend(std::iter::repeat_n(b'x', pad));
    text.extend_from_slice(tail.as_bytes());
    text
}

/// A text message split into `fragments` masked frames of (nearly) equal size.
fn fragmented(text: &[u8], fragments: usize) -> Vec<u8> {
    let size = text.len().div_ceil(fragments);
    let mut wire = Vec::new();
    let chunks: Vec<&[u8]> = text.chunks(size).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            Opcode::Text
        } else {
            Opcode::Continuation
        };
        wire.extend(encode_client_frame(
            opcode,
            chunk,
            MASK,
            i + 1 == chunks.len(),
        ));
    }
    wire
}

fn decode_one(decoder: &mut MessageDecoder, buf: &mut BytesMut) -> Message {
    match decoder.decode(buf) {
        Ok(Some(message)) => message,
        other => panic!("expected one whole message, got {other:?}"),
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_decode");
    let cases = [
        ("masked_text_100B", {
            encode_client_frame(Opcode::Text, &client_event_text(100), MASK, true)
        }),
        ("masked_text_4KB", {
            encode_client_frame(Opcode::Text, &client_event_text(4096), MASK, true)
        }),
        (
            "fragmented_text_4KB_in_4",
            fragmented(&client_event_text(4096), 4),
        ),
    ];
    for (name, wire) in cases {
        let mut decoder = MessageDecoder::new(Role::Server, LIMITS);
        // The benchmark must decode what it claims to: one text message, fully consumed.
        let mut check = BytesMut::from(&wire[..]);
        assert!(matches!(
            decode_one(&mut decoder, &mut check),
            Message::Text(_)
        ));
        assert!(check.is_empty());
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| decode_one(&mut decoder, black_box(&mut buf)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_encode");
    for (name, payload) in [
        ("server_text_100B", client_event_text(100)),
        ("server_text_4KB", client_event_text(4096)),
    ] {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| encode_frame(Opcode::Text, black_box(&payload)))
        });
    }
    let payload = client_event_text(100);
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("server_text_100B_into_reused_vec", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_frame_into(&mut out, Opcode::Text, black_box(&payload));
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
