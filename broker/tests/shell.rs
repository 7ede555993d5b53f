//! The real server on real sockets: shards, the mesh, the HTTP API and shutdown.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{APP_ID, TestServer, WsClient, api, http};

/// Connects until there is a client on every shard.
fn clients_on_every_shard(server: &TestServer, shards: u64) -> Vec<WsClient> {
    let mut by_shard: Vec<Option<WsClient>> = (0..shards).map(|_| None).collect();
    for _ in 0..200 {
        let client = WsClient::connect(server.addr);
        let shard = client.shard(shards) as usize;
        if by_shard[shard].is_none() {
            by_shard[shard] = Some(client);
        }
        if by_shard.iter().all(Option::is_some) {
            return by_shard.into_iter().flatten().collect();
        }
    }
    panic!("SO_REUSEPORT never put a connection on every shard");
}

#[test]
fn subscribers_on_both_shards_receive_each_publish_once_in_order() {
    let server = TestServer::start(2);
    let mut clients = clients_on_every_shard(&server, 2);
    for client in &mut clients {
        client.subscribe("orders");
    }
    let path = format!("/apps/{APP_ID}/events");
    for i in 0..50 {
        let body =
            json!({"name": "placed", "channel": "orders", "data": i.to_string()}).to_string();
        let (status, reply) = api(server.addr, "POST", &path, &body, &[]);
        assert_eq!((status, reply), (200, json!({})));
    }
    for client in &mut clients {
        for i in 0..50 {
            let event = client.recv().expect("event");
            assert_eq!(
                event,
                json!({"event": "placed", "channel": "orders", "data": i.to_string()})
            );
        }
        client.send(&json!({"event": "pusher:ping"}));
        // Nothing else arrived before the pong: each publish came exactly once.
        assert_eq!(client.recv().unwrap()["event"], "pusher:pong");
    }
}

#[test]
fn socket_id_exclusion_works_across_shards() {
    let server = TestServer::start(2);
    let mut clients = clients_on_every_shard(&server, 2);
    for client in &mut clients {
        client.subscribe("room");
    }
    let excluded = clients[0].socket_id.clone();
    let body =
        json!({"name": "e", "channel": "room", "data": "x", "socket_id": excluded}).to_string();
    let (status, _) = api(
        server.addr,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &body,
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(clients[1].recv().unwrap()["event"], "e");
    clients[0].send(&json!({"event": "pusher:ping"}));
    assert_eq!(clients[0].recv().unwrap()["event"], "pusher:pong");
}

#[test]
fn channel_queries_report_counts_from_every_shard() {
    let server = TestServer::start(2);
    let mut clients = clients_on_every_shard(&server, 2);
    for client in &mut clients {
        client.subscribe("counted");
    }
    let path = format!("/apps/{APP_ID}/channels/counted");
    let (status, body) = api(
        server.addr,
        "GET",
        &path,
        "",
        &[("info", "subscription_count")],
    );
    assert_eq!(status, 200);
    assert_eq!(body, json!({"occupied": true, "subscription_count": 2}));
    let (status, body) = api(
        server.addr,
        "GET",
        &format!("/apps/{APP_ID}/channels"),
        "",
        &[],
    );
    assert_eq!((status, body), (200, json!({"channels": {"counted": {}}})));
}

#[test]
fn api_refuses_bad_signatures_with_401_json() {
    let server = TestServer::start(1);
    let target = format!(
        "/apps/{APP_ID}/channels?auth_key=it-key&auth_timestamp=1&auth_version=1.0&auth_signature=00"
    );
    let (status, body) = http(server.addr, "GET", &target, "");
    assert_eq!(status, 401);
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn api_refuses_oversized_event_data_with_413() {
    let server = TestServer::start(1);
    let body = json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024 + 1)}).to_string();
    let (status, _) = api(
        server.addr,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &body,
        &[],
    );
    assert_eq!(status, 413);
    let body = json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024)}).to_string();
    let (status, _) = api(
        server.addr,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &body,
        &[],
    );
    assert_eq!(status, 200);
}

#[test]
fn unknown_paths_and_methods_get_json_errors() {
    let server = TestServer::start(1);
    assert_eq!(http(server.addr, "GET", "/nope", "").0, 404);
    assert_eq!(http(server.addr, "DELETE", "/up", "").0, 405);
    let (status, body) = http(server.addr, "GET", "/up", "");
    assert_eq!((status, body), (200, json!({"health": "ok"})));
}

#[test]
fn metrics_are_prometheus_text() {
    let server = TestServer::start(2);
    let _client = WsClient::connect(server.addr);
    let (status, body) = http(server.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let text = body.as_str().unwrap();
    assert!(text.contains("ringcast_connections 1"), "{text}");
    assert!(text.contains("ringcast_info{driver="), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    assert!(text.contains("process_open_fds "), "{text}");
}

#[test]
fn delivery_latency_is_measured_from_acceptance_to_the_socket_write() {
    let server = TestServer::start(2);
    let mut clients: Vec<WsClient> = (0..4).map(|_| WsClient::connect(server.addr)).collect();
    for client in &mut clients {
        client.subscribe("timed");
    }
    let path = format!("/apps/{APP_ID}/events");
    for i in 0..5 {
        let body = json!({"name": "tick", "channel": "timed", "data": i.to_string()}).to_string();
        assert_eq!(api(server.addr, "POST", &path, &body, &[]).0, 200);
    }
    for client in &mut clients {
        for _ in 0..5 {
            client.recv_until(Duration::from_secs(5), |v| v["event"] == "tick");
        }
    }
    // Writers record after their write completes, just after the client could read it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = http(server.addr, "GET", "/metrics", "");
        let text = metrics.as_str().unwrap().to_owned();
        if text.contains("ringcast_delivery_latency_seconds_count 20") {
            assert!(
                text.contains("ringcast_delivery_latency_seconds_bucket{le=\"+Inf\"} 20"),
                "{text}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn upgrade_with_wrong_version_gets_426() {
    let server = TestServer::start(1);
    let text = support::raw_upgrade(server.addr, 8);
    assert!(text.starts_with("HTTP/1.1 426"), "{text}");
    assert!(text.contains("Sec-WebSocket-Version: 13"), "{text}");
}

#[test]
fn unknown_app_key_is_closed_with_4001() {
    let server = TestServer::start(1);
    let mut client = WsClient::open(server.addr, "/app/wrong?protocol=7");
    let error = client.recv().unwrap();
    assert_eq!(error["data"]["code"], 4001);
    assert_eq!(client.recv().unwrap(), json!({"close": 4001}));
}

#[test]
fn oversized_frame_closes_with_1009_and_others_are_unaffected() {
    let server = TestServer::start(1);
    let mut bystander = WsClient::connect(server.addr);
    let mut client = WsClient::connect(server.addr);
    let header = ringcast::core::ws::frame::encode_client_frame(
        ringcast::core::ws::frame::Opcode::Text,
        &vec![b'a'; 1 << 20],
        [1, 2, 3, 4],
        true,
    );
    client.send_raw(&header[..14]);
    assert_eq!(client.recv().unwrap(), json!({"close": 1009}));
    bystander.send(&json!({"event": "pusher:ping"}));
    assert_eq!(bystander.recv().unwrap()["event"], "pusher:pong");
}

#[test]
fn graceful_shutdown_closes_clients_with_4200() {
    let server = TestServer::start(2);
    let mut client = WsClient::connect(server.addr);
    let addr = server.addr;
    let stopper = std::thread::spawn(move || server.shutdown());
    let error = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    assert_eq!(error["data"]["code"], 4200);
    assert_eq!(client.recv().unwrap(), json!({"close": 4200}));
    stopper.join().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn up_says_draining_with_503_once_a_shutdown_has_begun() {
    use std::io::{Read, Write};
    let server = TestServer::start(1);
    let mut client = WsClient::connect(server.addr);
    // A keep-alive connection opened before the shutdown: new ones are refused after it.
    let mut health = std::net::TcpStream::connect(server.addr).unwrap();
    health
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = b"GET /up HTTP/1.1\r\nHost: ringcast\r\n\r\n";
    let read_reply = |stream: &mut std::net::TcpStream| {
        let mut buf = vec![0; 4096];
        let n = stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    health.write_all(request).unwrap();
    let before = read_reply(&mut health);
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(before.ends_with(r#"{"health":"ok"}"#), "{before}");

    let stopper = std::thread::spawn(move || server.shutdown());
    // The client hears 4200 once the shutdown has begun; it does not answer the close, so
    // the server is still draining while the health check asks.
    let error = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    assert_eq!(error["data"]["code"], 4200);
    health.write_all(request).unwrap();
    let during = read_reply(&mut health);
    assert!(during.starts_with("HTTP/1.1 503"), "{during}");
    let body = during.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        json!({"health": "draining", "error": "shutting down"})
    );
    stopper.join().unwrap();
}

#[test]
fn a_second_server_on_the_same_port_is_refused() {
    let first = TestServer::start(2);
    let mut config = ringcast::config::Config::demo();
    config.server.data_dir = support::temp_dir("second");
    config.server.port = first.addr.port();
    config.server.shards = 1;
    let err = ringcast::shell::Server::start(config)
        .err()
        .expect("second server refused");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[test]
fn a_consumer_that_stops_reading_is_closed_with_4100_and_others_keep_receiving() {
    let server = TestServer::start_with(1, |c| c.server.send_buffer_bytes = 64 * 1024);
    let mut fast = WsClient::connect(server.addr);
    let mut slow = WsClient::connect_with_small_receive_buffer(server.addr);
    fast.subscribe("firehose");
    slow.subscribe("firehose");
    let data = "x".repeat(9 * 1024);
    let path = format!("/apps/{APP_ID}/events");
    let events = 400;
    for i in 0..events {
        let body = json!({"name": "chunk", "channel": "firehose", "data": format!("{i}:{data}")})
            .to_string();
        assert_eq!(api(server.addr, "POST", &path, &body, &[]).0, 200);
        // The fast client keeps up; the slow one never reads until the end.
        assert_eq!(fast.recv().expect("fast client event")["event"], "chunk");
    }
    let (_, metrics) = http(server.addr, "GET", "/metrics", "");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("ringcast_slow_consumers_closed_total 1"),
        "{metrics}"
    );
    // What the slow client finally reads ends with the 4100 error and close.
    let error = slow.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    assert_eq!(error["data"]["code"], 4100);
    assert_eq!(slow.recv().unwrap(), json!({"close": 4100}));
}

#[test]
fn a_client_that_does_not_answer_the_ping_is_closed_with_4201() {
    let server = TestServer::start_with(1, |c| {
        c.server.activity_timeout = Duration::from_secs(1);
        c.server.pong_timeout = Duration::from_secs(1);
    });
    let mut client = WsClient::connect(server.addr);
    let ping = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:ping");
    assert_eq!(ping["event"], "pusher:ping");
    let error = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    assert_eq!(error["data"]["code"], 4201);
    assert_eq!(client.recv().unwrap(), json!({"close": 4201}));
}

fn rate_limited(c: &mut ringcast::config::Config) {
    c.apps[0].rate_limits = Some(ringcast::config::RateLimits {
        connections_per_minute_per_ip: 2,
        client_events_per_minute_per_user: 30,
        subscriptions_per_connection: 20,
        api_requests_per_second: 3,
    });
}

#[test]
fn too_many_connection_attempts_get_429_with_retry_after() {
    let server = TestServer::start_with(1, rate_limited);
    let _a = WsClient::connect(server.addr);
    let _b = WsClient::connect(server.addr);
    let text = support::raw_upgrade(server.addr, 13);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("Retry-After: 30\r\n"), "{text}");
}

#[test]
fn too_many_api_requests_get_429_with_retry_after() {
    let server = TestServer::start_with(1, rate_limited);
    let path = format!("/apps/{APP_ID}/channels");
    let statuses: Vec<u16> = (0..4)
        .map(|_| api(server.addr, "GET", &path, "", &[]).0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
}

const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!";

fn jwt_required(c: &mut ringcast::config::Config) {
    c.apps[0].jwt = Some(ringcast::config::JwtConfig {
        required: true,
        leeway_secs: 0,
        ..ringcast::config::JwtConfig::hs256(JWT_SECRET)
    });
}

fn hs256(claims: &serde_json::Value) -> String {
    ringcast::core::auth::jwt::sign_hs256(claims, JWT_SECRET.as_bytes())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn jwt_in_the_query_admits_and_a_missing_one_is_closed_with_4009() {
    let server = TestServer::start_with(1, jwt_required);
    let token = hs256(&json!({"sub": "u1", "jti": "q-1", "exp": unix_now() + 60}));
    let mut client = WsClient::connect_with_token(server.addr, &token);
    let mut anonymous = WsClient::open(server.addr, "/app/it-key?protocol=7");
    let error = anonymous.recv().unwrap();
    assert_eq!(error["data"]["code"], 4009);
    assert_eq!(anonymous.recv().unwrap(), json!({"close": 4009}));

    // Revoking the token over the signed API closes the live socket.
    let body = json!({"jti": "q-1"}).to_string();
    let (status, _) = api(
        server.addr,
        "POST",
        &format!("/apps/{APP_ID}/tokens/revoke"),
        &body,
        &[],
    );
    assert_eq!(status, 200);
    let error = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    assert_eq!(error["data"]["message"], "token revoked");
}

#[test]
fn revoking_a_users_tokens_closes_their_sockets_and_survives_a_restart() {
    let dir = support::temp_dir("revocations");
    let start = |dir: &std::path::Path| {
        let dir = dir.to_owned();
        TestServer::start_with(2, move |c| {
            jwt_required(c);
            c.server.data_dir = dir;
        })
    };
    let server = start(&dir);
    let token =
        |sub: &str, jti: &str| hs256(&json!({"sub": sub, "jti": jti, "exp": unix_now() + 600}));
    let mut first = WsClient::connect_with_token(server.addr, &token("u1", "a"));
    let mut second = WsClient::connect_with_token(server.addr, &token("u1", "b"));
    let mut other = WsClient::connect_with_token(server.addr, &token("u2", "c"));
    let revoke = |addr, body: serde_json::Value| {
        let target = format!("/apps/{APP_ID}/tokens/revoke");
        api(addr, "POST", &target, &body.to_string(), &[])
    };
    // Exactly one of jti and sub, and a time still to come.
    let (status, reply) = revoke(server.addr, json!({"jti": "a", "sub": "u1"}));
    assert_eq!(status, 400, "{reply}");
    let (status, reply) = revoke(server.addr, json!({"sub": "u1", "until": 1}));
    assert_eq!(status, 400, "{reply}");
    let (status, reply) = revoke(server.addr, json!({"sub": "u1", "until": unix_now() + 300}));
    assert_eq!(status, 200, "{reply}");
    for client in [&mut first, &mut second] {
        let error = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
        assert_eq!(error["data"]["message"], "token revoked");
        assert_eq!(client.recv(), Some(json!({"close": 4009})));
    }
    other.send(&json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(other.recv().unwrap()["event"], "pusher:pong");
    server.shutdown();

    let server = start(&dir);
    let mut refused = WsClient::open(
        server.addr,
        &format!("/app/it-key?protocol=7&token={}", token("u1", "d")),
    );
    let error = refused.recv().unwrap();
    assert_eq!(error["data"]["code"], 4009, "{error}");
    assert!(
        error["data"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{error}"
    );
    WsClient::connect_with_token(server.addr, &token("u2", "e"));
}

#[test]
fn jwt_as_a_websocket_subprotocol_is_accepted_and_echoed() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(1, jwt_required);
    let token = hs256(&json!({"sub": "u1", "exp": unix_now() + 60}));
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "GET /app/it-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: pusher, {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("connection_established") {
        // io_uring task work queued to this thread can interrupt a blocking read: a retry.
        let n = match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.unwrap(),
        };
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.contains(&format!("Sec-WebSocket-Protocol: {token}\r\n")),
        "{text}"
    );
    assert!(text.contains("pusher:connection_established"), "{text}");
}

#[test]
fn failed_authorizations_are_counted_per_app_and_tenant() {
    let server = TestServer::start_with(1, jwt_required);
    let token = hs256(&json!({"sub": "u1", "tenant_id": "acme", "exp": unix_now() + 60}));
    let mut client = WsClient::connect_with_token(server.addr, &token);
    client.send(&json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": "it-key:00"}}));
    assert_eq!(client.recv().unwrap()["event"], "pusher:subscription_error");
    let mut refused = WsClient::open(server.addr, "/app/it-key?protocol=7");
    assert_eq!(refused.recv().unwrap()["data"]["code"], 4009);
    let (_, metrics) = http(server.addr, "GET", "/metrics", "");
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(&format!(
            "ringcast_app_auth_failures_total{{app=\"{APP_ID}\"}} 2"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ringcast_tenant_auth_failures_total{{app=\"{APP_ID}\",tenant=\"acme\"}} 1"
        )),
        "{text}"
    );
}

#[test]
fn each_connection_logs_one_line_when_opened_and_one_when_closed_without_bodies_or_secrets() {
    let dir = support::temp_dir("logs");
    let config = dir.join("ringcast.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nport = 0\nshards = 1\ndata_dir = {:?}\n\n[[apps]]\nid = \"{}\"\nkey = \"{}\"\nsecret = \"{}\"\n",
            dir.join("data"),
            support::APP_ID,
            support::KEY,
            support::SECRET,
        ),
    )
    .unwrap();
    let (mut child, addr, log) = support::spawn_broker_logging(&config, "info");
    let mut client = WsClient::connect(addr);
    client.subscribe("news");
    let body = r#"{"name":"headline","channel":"news","data":"a very private body"}"#;
    let (status, _) = support::api(
        addr,
        "POST",
        &format!("/apps/{}/events", support::APP_ID),
        body,
        &[],
    );
    assert_eq!(status, 200);
    client.recv_until(Duration::from_secs(5), |v| v["event"] == "headline");
    client.send_raw(&ringcast::core::ws::frame::encode_client_frame(
        ringcast::core::ws::frame::Opcode::Close,
        &1000u16.to_be_bytes(),
        [1, 2, 3, 4],
        true,
    ));
    assert_eq!(client.recv(), Some(json!({"close": 1000})));
    let closed = |log: &str| {
        log.lines()
            .find(|l| l.contains("connection closed"))
            .map(str::to_owned)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        if let Some(line) = closed(&log.lock().unwrap()) {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no close line in {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let logged = log.lock().unwrap().clone();
    let opened = logged
        .lines()
        .find(|l| l.contains("connection opened"))
        .expect("an open line");
    for part in [
        format!("socket_id={}", client.socket_id),
        format!("app={}", support::KEY),
        "client=127.0.0.1".to_owned(),
    ] {
        assert!(opened.contains(&part), "{part} in {opened}");
        assert!(line.contains(&part), "{part} in {line}");
    }
    for part in ["duration_ms=", "closed_by=\"client\"", "close_code=1000"] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(
        !logged.contains("a very private body"),
        "a body was logged: {logged}"
    );
    assert!(
        !logged.contains(support::SECRET),
        "the secret was logged: {logged}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_write_delay_gathers_events_into_fewer_writes_and_keeps_their_order() {
    let server = TestServer::start_with(1, |c| {
        c.apps[0].write_delay = Duration::from_millis(50);
    });
    let mut client = WsClient::connect(server.addr);
    client.subscribe("ticks");
    let writes = || {
        support::metric(
            &support::metrics_text(server.addr),
            "ringcast_write_calls_total",
        )
    };
    let before = writes();
    let path = format!("/apps/{APP_ID}/events");
    for i in 0..30 {
        let body = json!({"name": "tick", "channel": "ticks", "data": i.to_string()}).to_string();
        assert_eq!(api(server.addr, "POST", &path, &body, &[]).0, 200);
    }
    for i in 0..30 {
        let event = client.recv().expect("event");
        assert_eq!(
            event,
            json!({"event": "tick", "channel": "ticks", "data": i.to_string()})
        );
    }
    client.send(&json!({"event": "pusher:ping"}));
    assert_eq!(client.recv().unwrap()["event"], "pusher:pong");
    // 30 events and the pong, in fewer writes than frames: publishes that came within 50 ms
    // of a first one shared its write.
    let written = writes() - before;
    assert!(written < 31, "{written} writes for 31 frames");
}
