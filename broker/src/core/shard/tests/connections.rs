//! Connecting, framing, pings, closing and shutdown.

use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;

use super::harness::*;
use crate::core::ids::AppIdx;
use crate::core::shard::*;
use crate::core::wire::Fault;
use crate::core::ws::frame::{Opcode, encode_client_frame};

#[test]
fn connection_established_carries_socket_id_and_activity_timeout() {
    let mut cluster = Cluster::new(1);
    let client = cluster.try_connect(0, "/app/test-key", Some("7")).unwrap();
    let hello = cluster.recv(client);
    assert_eq!(hello.len(), 1);
    let data = inner(&hello[0]);
    assert_eq!(data["activity_timeout"], 120);
    assert_eq!(data["socket_id"], client.socket_id.to_string());
}

#[test]
fn connection_errors_use_the_pusher_codes() {
    let mut cluster = Cluster::with(1, |c| {
        let mut disabled = c.apps[0].clone();
        disabled.id = "2".into();
        disabled.key = "disabled-key".into();
        disabled.enabled = false;
        c.apps.push(disabled);
    });
    for (path, protocol, code) in [
        ("/app/nope", Some("7"), 4001),
        ("/app/disabled-key", Some("7"), 4003),
        ("/elsewhere", Some("7"), 4005),
        ("/app/", Some("7"), 4005),
        ("/app/test-key", Some("seven"), 4006),
        ("/app/test-key", Some("8"), 4007),
        ("/app/test-key", Some("3"), 4007),
        ("/app/test-key", None, 4008),
    ] {
        let (frames, error) = cluster.try_connect(0, path, protocol).unwrap_err();
        assert_eq!(
            crate::core::wire::pusher::codes::code(error),
            code,
            "{path} {protocol:?}"
        );
        assert_eq!(frames[0]["event"], "pusher:error");
        assert_eq!(frames[0]["data"]["code"], code);
        assert_eq!(frames[1]["close"], code);
    }
}

#[test]
fn app_connection_quota_counts_the_other_nodes_connections() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_connections = Some(3));
    let state = cluster.shards[0].state.clone();
    let app = state.apps.get(AppIdx(0));
    app.set_elsewhere(2);
    cluster.connect(0);
    assert_eq!(app.cluster_connections(), 3);
    let (_, code) = cluster
        .try_connect(0, "/app/test-key", Some("7"))
        .unwrap_err();
    assert_eq!(code, Fault::AppOverConnectionQuota);
    // More elsewhere than the quota (a burst on other nodes) refuses, never underflows.
    app.set_elsewhere(10);
    assert!(cluster.try_connect(0, "/app/test-key", Some("7")).is_err());
    app.set_elsewhere(1);
    assert!(cluster.try_connect(0, "/app/test-key", Some("7")).is_ok());
}

#[test]
fn app_connection_quota_is_inclusive_and_freed_on_disconnect() {
    let mut cluster = Cluster::with(2, |c| c.apps[0].max_connections = Some(2));
    let a = cluster.connect(0);
    cluster.connect(1);
    let (_, code) = cluster
        .try_connect(0, "/app/test-key", Some("7"))
        .unwrap_err();
    assert_eq!(code, Fault::AppOverConnectionQuota);
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(a.key, a.socket_id, now);
    assert!(cluster.try_connect(0, "/app/test-key", Some("7")).is_ok());
}

#[test]
fn server_connection_quota_closes_with_4100() {
    let mut cluster = Cluster::with(1, |c| c.server.max_connections = 1);
    cluster.connect(0);
    let (_, code) = cluster
        .try_connect(0, "/app/test-key", Some("7"))
        .unwrap_err();
    assert_eq!(code, Fault::OverCapacity);
}

#[test]
fn ping_gets_pong() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    cluster.send(client, json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(cluster.events(client), ["pusher:pong"]);
}

#[test]
fn websocket_ping_frame_gets_pong_frame_with_same_payload() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    cluster.send_raw(
        client,
        &encode_client_frame(Opcode::Ping, b"abc", [9, 9, 9, 9], true),
    );
    let frames = cluster.recv(client);
    assert_eq!(frames.len(), 1);
    assert!(
        frames[0]["other"].as_str().unwrap().contains("Pong"),
        "{frames:?}"
    );
}

#[test]
fn malformed_messages_get_errors_and_the_connection_survives() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    for text in ["not json", "[1]", "{}", r#"{"event":"pusher:subscribe"}"#] {
        cluster.send_raw(
            a,
            &encode_client_frame(Opcode::Text, text.as_bytes(), [7, 7, 7, 7], true),
        );
        let got = cluster.recv(a);
        assert_eq!(got[0]["data"]["code"], 4303, "{text}");
    }
    cluster.send(a, json!({"event": "pusher:bogus"}));
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4304);
    cluster.send_raw(
        a,
        &encode_client_frame(Opcode::Binary, b"\x00\x01", [7, 7, 7, 7], true),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4303);
    cluster.send(a, json!({"event": "pusher:ping"}));
    assert_eq!(cluster.events(a), ["pusher:pong"]);
}

#[test]
fn protocol_violations_close_with_the_rfc_code() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    // An unmasked client frame.
    cluster.send_raw(a, &[0x81, 0x02, b'h', b'i']);
    assert_eq!(cluster.recv(a), [json!({"close": 1002})]);
    let b = cluster.connect(0);
    cluster.send_raw(
        b,
        &encode_client_frame(Opcode::Text, &[0xff, 0xfe], [1, 1, 1, 1], true),
    );
    assert_eq!(cluster.recv(b), [json!({"close": 1007})]);
}

#[test]
fn oversized_frames_close_with_1009_before_the_payload_arrives() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_message_bytes = 100);
    let a = cluster.connect(0);
    // Only the header of a 1 MiB frame.
    let header = &encode_client_frame(Opcode::Text, &vec![b'a'; 1 << 20], [1, 2, 3, 4], true)[..14];
    cluster.send_raw(a, header);
    assert_eq!(cluster.recv(a), [json!({"close": 1009})]);
}

#[test]
fn close_frame_is_echoed_and_subscriptions_end() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.send_raw(
        a,
        &encode_client_frame(Opcode::Close, &1000u16.to_be_bytes(), [1, 2, 3, 4], true),
    );
    assert_eq!(cluster.recv(a), [json!({"close": 1000})]);
    assert_eq!(cluster.stats(0, "room"), ChannelStats::default());
}

#[test]
fn frames_split_across_reads_are_reassembled() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let frame = encode_client_frame(
        Opcode::Text,
        br#"{"event":"pusher:ping"}"#,
        [3, 1, 4, 1],
        true,
    );
    let mut buf = BytesMut::new();
    let now = cluster.now;
    for &byte in &frame {
        buf.extend_from_slice(&[byte]);
        cluster.shards[0].handle_input(a.key, a.socket_id, &mut buf, now);
    }
    assert_eq!(cluster.events(a), ["pusher:pong"]);
}

#[test]
fn quiet_connection_is_pinged_then_closed_with_4201() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.tick(Duration::from_secs(119));
    assert!(cluster.recv(a).is_empty());
    cluster.tick(Duration::from_secs(1));
    assert_eq!(cluster.events(a), ["pusher:ping"]);
    cluster.tick(Duration::from_secs(29));
    assert!(cluster.recv(a).is_empty());
    cluster.tick(Duration::from_secs(1));
    let got = cluster.recv(a);
    assert_eq!(got[0]["data"]["code"], 4201);
    assert_eq!(got[1], json!({"close": 4201}));
}

#[test]
fn answering_the_ping_keeps_the_connection_open() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.tick(Duration::from_secs(120));
    assert_eq!(cluster.events(a), ["pusher:ping"]);
    cluster.send(a, json!({"event": "pusher:pong", "data": {}}));
    cluster.tick(Duration::from_secs(30));
    assert!(cluster.recv(a).is_empty());
}

#[test]
fn shutdown_closes_every_connection_with_4200() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let now = cluster.now;
    cluster.shards[0].shutdown(now);
    let got = cluster.recv(a);
    assert_eq!(got[0]["data"]["code"], 4200);
    assert_eq!(got[1], json!({"close": 4200}));
}

#[test]
fn server_initiated_close_completes_when_the_peer_answers() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let now = cluster.now;
    cluster.shards[0].shutdown(now);
    cluster.recv(a);
    assert!(!cluster.shards[0].peer_closed(a.key, a.socket_id));
    // Data still in flight from the client is ignored; its close frame completes the handshake.
    cluster.send(a, json!({"event": "pusher:ping"}));
    assert!(!cluster.shards[0].peer_closed(a.key, a.socket_id));
    cluster.send_raw(
        a,
        &encode_client_frame(Opcode::Close, &4200u16.to_be_bytes(), [1, 2, 3, 4], true),
    );
    assert!(cluster.shards[0].peer_closed(a.key, a.socket_id));
    assert!(cluster.recv(a).is_empty());
}

#[test]
fn an_ended_connection_says_who_closed_it_with_which_code_and_how_long_it_lasted() {
    let mut cluster = Cluster::new(1);
    let by_client = cluster.connect(0);
    let by_server = cluster.connect(0);
    let dropped = cluster.connect(0);
    cluster.tick(Duration::from_secs(3));
    cluster.send_raw(
        by_client,
        &encode_client_frame(Opcode::Close, &4321u16.to_be_bytes(), [1, 2, 3, 4], true),
    );
    assert_eq!(cluster.recv(by_client), [json!({"close": 4321})]);
    // A binary frame is a fault that keeps the connection; an unknown opcode closes it.
    cluster.send_raw(by_server, &[0x83, 0x80, 1, 2, 3, 4]);
    let frames = cluster.recv(by_server);
    let code = frames
        .last()
        .and_then(|f| f["close"].as_u64())
        .expect("a close frame");

    let now = cluster.now;
    let ended = |cluster: &mut Cluster, client: Client| {
        cluster.shards[0]
            .handle_disconnect(client.key, client.socket_id, now)
            .expect("an open connection")
    };
    let client_closed = ended(&mut cluster, by_client);
    assert_eq!(
        client_closed.close,
        Some(Close {
            by: Closer::Client,
            code: 4321
        })
    );
    assert_eq!(client_closed.socket_id, by_client.socket_id);
    assert_eq!(client_closed.app, AppIdx(0));
    assert_eq!(client_closed.lasted, Duration::from_secs(3));
    assert_eq!(
        ended(&mut cluster, by_server).close,
        Some(Close {
            by: Closer::Server,
            code: code as u16
        })
    );
    assert_eq!(ended(&mut cluster, dropped).close, None);
    // Only once.
    assert_eq!(
        cluster.shards[0].handle_disconnect(dropped.key, dropped.socket_id, now),
        None
    );
}
