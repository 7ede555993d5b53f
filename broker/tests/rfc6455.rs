//! RFC 6455 edge cases and HTTP hardening against the real server: each bad input gets the
//! RFC's (or HTTP's) answer, and a bystander connection keeps being served throughout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcast::core::ws::frame::{Opcode, encode_client_frame};
use serde_json::json;
use support::{TestServer, WsClient, raw_http};

const MASK: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

fn frame(opcode: Opcode, payload: &[u8], fin: bool) -> Vec<u8> {
    encode_client_frame(opcode, payload, MASK, fin)
}

/// Sends `bytes` on a fresh connection and returns the close code the server answers with.
fn close_code_for(server: &TestServer, bytes: &[u8]) -> Option<u16> {
    let mut client = WsClient::connect(server.addr);
    client.send_raw(bytes);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match client.recv() {
            Some(v) if v.get("close").is_some() => return v["close"].as_u64().map(|c| c as u16),
            Some(_) => continue,
            None => return None,
        }
    }
    None
}

fn assert_bystander_served(bystander: &mut WsClient) {
    bystander.send(&json!({"event": "pusher:ping"}));
    assert_eq!(bystander.recv().unwrap()["event"], "pusher:pong");
}

#[test]
fn protocol_violations_get_1002_and_others_keep_being_served() {
    let server = TestServer::start(2);
    let mut bystander = WsClient::connect(server.addr);
    let mut reserved_bits = frame(Opcode::Text, b"{}", true);
    reserved_bits[0] |= 0x40;
    let mut unknown_opcode = frame(Opcode::Text, b"{}", true);
    unknown_opcode[0] = 0x83;
    let mut huge_length = vec![0x82, 0xFF];
    huge_length.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge_length.extend_from_slice(&MASK);
    let interleaved = [
        frame(Opcode::Text, b"a", false),
        frame(Opcode::Text, b"b", true),
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved bits", reserved_bits),
        ("unknown opcode", unknown_opcode),
        ("fragmented control frame", frame(Opcode::Ping, b"x", false)),
        (
            "control frame over 125 bytes",
            frame(Opcode::Ping, &[0; 126], true),
        ),
        ("interleaved data messages", interleaved),
        (
            "continuation without a start",
            frame(Opcode::Continuation, b"x", true),
        ),
        ("unmasked client frame", vec![0x81, 0x02, b'{', b'}']),
        ("64-bit length with the high bit", huge_length),
        (
            "close with a 1-byte payload",
            frame(Opcode::Close, &[3], true),
        ),
        (
            "close with reserved code 1005",
            frame(Opcode::Close, &1005u16.to_be_bytes(), true),
        ),
        (
            "close with code 999",
            frame(Opcode::Close, &999u16.to_be_bytes(), true),
        ),
        (
            "close with code 2000",
            frame(Opcode::Close, &2000u16.to_be_bytes(), true),
        ),
    ];
    for (what, bytes) in cases {
        assert_eq!(close_code_for(&server, &bytes), Some(1002), "{what}");
        assert_bystander_served(&mut bystander);
    }
}

#[test]
fn invalid_utf8_gets_1007_even_across_fragment_boundaries() {
    let server = TestServer::start(1);
    let mut bystander = WsClient::connect(server.addr);
    let euro = "€".as_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid byte", frame(Opcode::Text, b"\xff", true)),
        (
            "invalid byte in the second fragment",
            [
                frame(Opcode::Text, b"ok", false),
                frame(Opcode::Continuation, b"\xc3\x28", true),
            ]
            .concat(),
        ),
        (
            "sequence cut off at the end",
            [
                frame(Opcode::Text, &euro[..1], false),
                frame(Opcode::Continuation, &euro[1..2], true),
            ]
            .concat(),
        ),
        (
            "close reason not UTF-8",
            frame(Opcode::Close, &[0x03, 0xe8, 0xff], true),
        ),
    ];
    for (what, bytes) in cases {
        assert_eq!(close_code_for(&server, &bytes), Some(1007), "{what}");
        assert_bystander_served(&mut bystander);
    }
}

#[test]
fn valid_edge_cases_are_accepted() {
    let server = TestServer::start(1);
    let mut client = WsClient::connect(server.addr);
    // A ping in the middle of a fragmented message is answered; the message then completes.
    let ping = br#"{"event":"pusher:ping"}"#;
    let fragmented = [
        frame(Opcode::Text, &ping[..5], false),
        frame(Opcode::Ping, b"mid", true),
        frame(Opcode::Continuation, &ping[5..12], false),
        frame(Opcode::Continuation, &ping[12..], true),
    ]
    .concat();
    client.send_raw(&fragmented);
    assert_eq!(client.recv().unwrap()["event"], "pusher:pong");
    // UTF-8 split across fragments is fine.
    let message = r#"{"event":"pusher:ping","data":{"x":"€"}}"#.as_bytes();
    let at = message.iter().position(|&b| b == 0xe2).unwrap() + 1;
    client.send_raw(
        &[
            frame(Opcode::Text, &message[..at], false),
            frame(Opcode::Continuation, &message[at..], true),
        ]
        .concat(),
    );
    assert_eq!(client.recv().unwrap()["event"], "pusher:pong");
    // Close codes 1000, 3000 and 4999 with a reason are echoed.
    for code in [1000u16, 3000, 4999] {
        let mut other = WsClient::connect(server.addr);
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("bye é".as_bytes());
        other.send_raw(&frame(Opcode::Close, &payload, true));
        assert_eq!(other.recv().unwrap(), json!({"close": code}));
    }
}

#[test]
fn oversized_messages_get_1009_from_the_header_alone() {
    let server = TestServer::start(1);
    let mut bystander = WsClient::connect(server.addr);
    // One byte over `server.max_ws_message_bytes` (64 KiB by default).
    let limit = 64 * 1024;
    let big = frame(Opcode::Text, &vec![b'a'; limit + 1], true);
    assert_eq!(close_code_for(&server, &big[..14]), Some(1009));
    // Fragments that add up past the limit.
    let parts = [
        frame(Opcode::Text, &vec![b'a'; limit / 2], false),
        frame(Opcode::Continuation, &vec![b'a'; limit / 2 + 1], true),
    ]
    .concat();
    assert_eq!(close_code_for(&server, &parts), Some(1009));
    assert_bystander_served(&mut bystander);
}

fn status_of(reply: &[u8]) -> u16 {
    String::from_utf8_lossy(reply)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn http_limits_and_malformed_requests_get_the_right_status() {
    let server = TestServer::start(1);
    let mut bystander = WsClient::connect(server.addr);
    let big_header = format!("GET /up HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let many_headers = format!("GET /up HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(65));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("header over 8 KiB", big_header.into_bytes(), 431),
        ("65 headers", many_headers.into_bytes(), 431),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00hello\r\n\r\n".to_vec(),
            400,
        ),
        (
            "both Content-Length and chunked",
            b"POST /up HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
                .to_vec(),
            400,
        ),
        (
            "non-numeric Content-Length",
            b"POST /up HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc".to_vec(),
            400,
        ),
        (
            "unknown transfer coding",
            b"POST /up HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            501,
        ),
        (
            "body over the limit",
            b"POST /apps/1/events HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
            413,
        ),
        (
            "unknown path",
            b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            404,
        ),
        (
            "malformed chunk",
            b"POST /apps/1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
    ];
    for (what, request, status) in cases {
        assert_eq!(
            status_of(&raw_http(server.addr, &request)),
            status,
            "{what}"
        );
        assert_bystander_served(&mut bystander);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(1);
    let request = b"GET /up HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /up HTTP/1.1\r\nConnection: close\r\n\r\n";
    let reply = String::from_utf8_lossy(&raw_http(server.addr, request)).into_owned();
    let statuses: Vec<&str> = reply
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &reply[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{reply}");
}

#[test]
fn a_chunked_api_body_is_accepted() {
    let server = TestServer::start(1);
    let body = json!({"name": "e", "channel": "c", "data": "x"}).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = format!("/apps/{}/events", support::APP_ID);
    let query = ringcast::core::auth::api::signed_query(
        "POST",
        &path,
        support::KEY,
        &ringcast::core::auth::hmac_key(support::SECRET),
        now,
        body.as_bytes(),
        &[],
    );
    let (first, second) = body.split_at(10);
    let request = format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    let reply = raw_http(server.addr, request.as_bytes());
    assert_eq!(
        status_of(&reply),
        200,
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn a_slow_loris_is_cut_off_after_the_handshake_timeout() {
    let server = TestServer::start_with(1, |c| c.server.handshake_timeout = Duration::from_secs(1));
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    // One byte every 300 ms: never a complete head.
    for byte in b"GET /up HTTP/1.1\r\nX-Slow: yes".iter().take(6) {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert_eq!(
        status_of(&reply),
        408,
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // The server keeps serving.
    let (status, body) = support::http(server.addr, "GET", "/up", "");
    assert_eq!((status, body), (200, json!({"health": "ok"})));
}
