//! Arbitrary client text as Engine.IO and Socket.IO packets: a long-polling body split into
//! packets, each decoded; whatever decodes encodes back to a packet that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::core::wire::socketio::engine::{EnginePacket, split_payload};
use ringcast::core::wire::socketio::packet::{Body, Packet, encode_ack, encode_event};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for part in split_payload(text) {
        let Ok(EnginePacket::Message(message)) = EnginePacket::decode(part) else {
            continue;
        };
        let Ok(packet) = Packet::decode(message) else {
            continue;
        };
        let again = match (&packet.body, packet.ack) {
            (Body::Event { name, args: values }, None) => {
                let texts = texts(values);
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                encode_event(&packet.namespace, name, &refs)
            }
            (Body::Ack(values), Some(id)) => {
                let texts = texts(values);
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                encode_ack(&packet.namespace, id, &refs)
            }
            _ => continue,
        };
        assert_eq!(Packet::decode(&again).as_ref(), Ok(&packet), "{again}");
    }
});

/// Each value's JSON text.
fn texts<T: ToString>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}
