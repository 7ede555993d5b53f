//! Arbitrary connection starts behind a proxy: a PROXY protocol header (v1 or v2), then a
//! request head whose forwarding headers name the client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::core::http::request::{HeadLimits, parse_head};
use ringcast::core::proxy::header::{Parsed, ProxyHeader, parse};
use ringcast::core::proxy::{TrustedProxies, client_address};

fuzz_target!(|data: &[u8]| {
    let Ok(Parsed::Complete { header, len }) = parse(data) else {
        return;
    };
    assert!(len <= data.len());
    let peer = match header {
        ProxyHeader::Client(client) => client.ip(),
        ProxyHeader::Local => [127, 0, 0, 1].into(),
    };
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
    };
    if let Ok(Some(head)) = parse_head(&data[len..], &limits) {
        let trusted = TrustedProxies::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "::/0".parse().unwrap(),
        ]);
        let _ = client_address(&trusted, peer, &head);
    }
});
