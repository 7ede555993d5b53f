//! Arbitrary signed-API requests: query text and body.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ringcast::core::auth::api::{ApiRequest, verify};
use ringcast::core::auth::hmac_key;
use ringcast::core::http::request::{HeadLimits, parse_head};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (line, body) = data.split_at(split);
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let head = format!("POST /apps/1/events?{line} HTTP/1.1\r\n\r\n");
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 8,
    };
    let Ok(Some(head)) = parse_head(head.as_bytes(), &limits) else {
        return;
    };
    let Ok(query) = head.query_pairs() else {
        return;
    };
    let request = ApiRequest {
        method: "POST",
        path: &head.path,
        query: &query,
        body,
    };
    let _ = verify(
        &request,
        "key",
        &hmac_key("secret"),
        1_800_000_000,
        Duration::from_secs(600),
    );
});
