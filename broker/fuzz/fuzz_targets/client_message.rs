//! Arbitrary text as a Pusher client message, and its channel name when it has one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::core::channel::ChannelName;
use ringcast::core::wire::{Command, Wire};

fuzz_target!(|data: &[u8]| {
    if let Ok(Command::Subscribe(request)) = Wire::Pusher.parse(data) {
        let _ = ChannelName::parse(&request.channel, 200);
    }
});
