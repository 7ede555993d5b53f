//! Arbitrary text as a Pusher client message, and its channel name when it has one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::core::channel::ChannelName;
use ringcast::core::pusher::message::ClientMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(ClientMessage::Subscribe(request)) = ClientMessage::parse(data) {
        let _ = ChannelName::parse(&request.channel, 200);
    }
});
