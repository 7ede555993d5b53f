//! The audit log end to end: the admin query API, no message bodies in the store, and
//! durability after `kill -9`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringcast_shared::{AuditDecision, AuditRecord};
use serde_json::json;
use support::{ADMIN_TOKEN, APP_ID, TestServer, WsClient, admin_get, api, http, wait_for_page};

fn with_admin(c: &mut ringcast::config::Config) {
    c.server.admin_token = Some(ADMIN_TOKEN.into());
    c.server.audit_flush_interval = Duration::from_millis(20);
}

#[test]
fn the_admin_api_needs_a_session_or_the_token_and_refuses_a_wrong_one() {
    let server = TestServer::start(1);
    assert_eq!(http(server.addr, "GET", "/admin/api/audit", "").0, 401);
    let server = TestServer::start_with(1, with_admin);
    assert_eq!(
        admin_get(&server, "/admin/api/audit", "wrong-token-wrong-token").0,
        401
    );
    assert_eq!(
        admin_get(&server, "/admin/api/audit?decision=maybe", ADMIN_TOKEN).0,
        400
    );
}

#[test]
fn denied_subscriptions_are_searchable_as_security_events() {
    let server = TestServer::start_with(2, with_admin);
    let mut client = WsClient::connect(server.addr);
    client.send(&json!({"event": "pusher:subscribe", "data": {"channel": "private-vault", "auth": "it-key:00"}}));
    assert_eq!(client.recv().unwrap()["event"], "pusher:subscription_error");
    let page = wait_for_page(
        &server,
        "/admin/api/security-events?channel=private-vault",
        |p| p["records"].as_array().is_some_and(|r| !r.is_empty()),
    );
    let record: AuditRecord = serde_json::from_value(page["records"][0].clone()).unwrap();
    assert_eq!(record.action, "subscribe");
    assert_eq!(record.decision, AuditDecision::Deny);
    assert_eq!(record.app, APP_ID);
    assert_eq!(record.socket.as_deref(), Some(client.socket_id.as_str()));
    assert_eq!(record.remote_ip.as_deref(), Some("127.0.0.1"));
    assert!(record.time_ms > 1_600_000_000_000);
    let (_, allowed) = admin_get(
        &server,
        "/admin/api/audit?decision=allow&channel=private-vault",
        ADMIN_TOKEN,
    );
    assert_eq!(allowed["records"], json!([]));
}

#[test]
fn no_message_body_reaches_the_audit_store_or_the_logs() {
    let marker = format!("BODY-{}", fastrand::u64(..));
    let dir = support::temp_dir("bodies");
    let mut broker = Broker::spawn(&dir, "rate_limits = true", "debug");
    let addr = broker.addr;
    let mut a = WsClient::connect(addr);
    let mut b = WsClient::connect(addr);
    for client in [&mut a, &mut b] {
        client.subscribe("marker-public");
    }
    // Through the HTTP API, and through a refused API call carrying the body.
    let body = json!({"name": "e", "channel": "marker-public", "data": marker}).to_string();
    assert_eq!(
        api(addr, "POST", &format!("/apps/{APP_ID}/events"), &body, &[]).0,
        200
    );
    assert_eq!(b.recv().unwrap()["data"], marker);
    let forged = format!(
        "/apps/{APP_ID}/events?auth_key=it-key&auth_timestamp=1&auth_version=1.0&auth_signature=00"
    );
    assert_eq!(http(addr, "POST", &forged, &body).0, 401);
    // Through client events (one relayed, one over the rate limit) and a denied subscription
    // whose auth carries the marker.
    client_event_attempts(addr, &marker);
    a.send(&json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": format!("it-key:{marker}")}}));
    a.recv_until(Duration::from_secs(5), |v| {
        v["event"] == "pusher:subscription_error"
    });
    // Invalid messages whose text is the marker, then a protocol violation carrying it.
    a.send_raw(&ringcast::core::ws::frame::encode_client_frame(
        ringcast::core::ws::frame::Opcode::Text,
        marker.as_bytes(),
        [1, 2, 3, 4],
        true,
    ));
    a.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    a.send_raw(&[&[0x81u8, marker.len() as u8][..], marker.as_bytes()].concat());
    std::thread::sleep(Duration::from_millis(300));
    let logs = broker.stop();
    assert!(logs.contains("listening"), "the logs were captured: {logs}");
    assert!(!logs.contains(&marker), "message body in the logs:\n{logs}");
    let found = support::files_containing(&dir, marker.as_bytes());
    assert!(found.is_empty(), "message body found in {found:?}");
    // And the store did record the decisions and security events of those paths.
    let db = sled::open(dir.join("data").join("audit")).unwrap();
    let records = db.open_tree("audit").unwrap().len();
    assert!(records >= 4, "{records} audit records");
}

/// The real `ringcast` binary, with its logs captured.
struct Broker {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Broker {
    fn spawn(dir: &std::path::Path, limits: &str, log_level: &str) -> Self {
        let config = dir.join("ringcast.toml");
        let rate_limits = if limits.contains("true") {
            "\n[apps.rate_limits]\nclient_events_per_minute_per_user = 1\n"
        } else {
            ""
        };
        std::fs::write(
            &config,
            format!(
                "[server]\nport = 0\nshards = 2\ndata_dir = {:?}\naudit_flush_interval_ms = 100\n\n\
                 [[apps]]\nid = \"{APP_ID}\"\nkey = \"it-key\"\nsecret = \"it-secret\"\n{rate_limits}",
                dir.join("data")
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", log_level)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = logs.clone();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let addr = read_listen_address(&mut child);
        Broker { child, addr, logs }
    }

    /// SIGTERM, wait, and return everything it logged.
    fn stop(&mut self) -> String {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.logs.lock().unwrap().clone()
    }
}

fn client_event_attempts(addr: std::net::SocketAddr, marker: &str) {
    use ringcast::core::auth::{hmac_hex, hmac_key};
    let mut sender = WsClient::connect(addr);
    let mut receiver = WsClient::connect(addr);
    for client in [&mut sender, &mut receiver] {
        let sig = hmac_hex(
            &hmac_key(support::SECRET),
            format!("{}:private-chat", client.socket_id).as_bytes(),
        );
        client.send(&json!({"event": "pusher:subscribe", "data": {"channel": "private-chat", "auth": format!("it-key:{sig}")}}));
        assert_eq!(
            client.recv().unwrap()["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    for _ in 0..2 {
        sender.send(
            &json!({"event": "client-msg", "channel": "private-chat", "data": {"text": marker}}),
        );
    }
    assert_eq!(receiver.recv().unwrap()["data"]["text"], marker);
}

#[test]
fn records_older_than_the_flush_interval_survive_kill_9() {
    let dir = support::temp_dir("kill9");
    let mut broker = Broker::spawn(&dir, "", "error");
    let addr = broker.addr;
    // Load: many refused subscriptions, each an audit record, from several connections.
    let attempts = 300;
    let mut clients: Vec<WsClient> = (0..3).map(|_| WsClient::connect(addr)).collect();
    for i in 0..attempts {
        let client = &mut clients[i % 3];
        client.send(&json!({"event": "pusher:subscribe", "data": {"channel": format!("private-k{i}"), "auth": "it-key:00"}}));
    }
    for client in &mut clients {
        for _ in 0..attempts / 3 {
            assert_eq!(client.recv().unwrap()["event"], "pusher:subscription_error");
        }
    }
    // Every record is now older than two flush intervals.
    std::thread::sleep(Duration::from_millis(250));
    broker.child.kill().unwrap(); // SIGKILL
    broker.child.wait().unwrap();

    let db =
        sled::open(dir.join("data").join("audit")).expect("the store opens cleanly after kill -9");
    let tree = db.open_tree("audit").unwrap();
    let denied = tree
        .iter()
        .values()
        .filter_map(Result::ok)
        .filter_map(|v| rkyv::from_bytes::<AuditRecord, rkyv::rancor::Error>(&v).ok())
        .filter(|r| r.action == "subscribe" && r.decision == AuditDecision::Deny)
        .count();
    assert_eq!(denied, attempts);
}

fn read_listen_address(child: &mut std::process::Child) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(addr) = line.strip_prefix("ringcast: listening on ") {
            return addr.trim().parse().unwrap();
        }
    }
    let _ = std::io::stderr().flush();
    panic!("the broker did not report its address");
}

fn escrow_policy(c: &mut ringcast::config::Config) {
    use ringcast::core::policy::{Alternative, RuleConfig};
    c.apps[0].policies = vec![RuleConfig {
        resource: Some("escrow:{id}".into()),
        allow: vec![Alternative {
            participant: true,
            role: None,
            attributes: Default::default(),
        }],
        ..RuleConfig::new("escrow-chat", "escrow.{id}.chat")
    }];
}

/// Subscribes to a presence channel as `user` and returns the reply's event name.
fn join_as(addr: std::net::SocketAddr, channel: &str, user: &str) -> String {
    use ringcast::core::auth::{hmac_key, sign_channel};
    let mut client = WsClient::connect(addr);
    let data = json!({"user_id": user}).to_string();
    let secret = hmac_key(support::SECRET);
    let auth = sign_channel("it-key", &secret, &client.socket_id, channel, Some(&data));
    client.send(&json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}));
    client.recv().unwrap()["event"].as_str().unwrap().to_owned()
}

#[test]
fn resources_set_by_the_backend_survive_a_restart() {
    let dir = support::temp_dir("resources");
    let data_dir = dir.clone();
    let server = TestServer::start_with(2, move |c| {
        escrow_policy(c);
        c.server.data_dir = data_dir;
    });
    let path = format!("/apps/{APP_ID}/resources/escrow/7");
    let body = json!({"participants": ["buyer"], "attributes": {"status": "OPEN"}}).to_string();
    assert_eq!(api(server.addr, "PUT", &path, &body, &[]).0, 200);
    assert_eq!(
        join_as(server.addr, "presence-escrow.7.chat", "buyer"),
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        join_as(server.addr, "presence-escrow.7.chat", "eve"),
        "pusher:subscription_error"
    );
    // Bad input gets a clear 400.
    let bad = json!({"participants": "buyer"}).to_string();
    assert_eq!(api(server.addr, "PUT", &path, &bad, &[]).0, 400);
    server.shutdown();

    let data_dir = dir.clone();
    let server = TestServer::start_with(1, move |c| {
        escrow_policy(c);
        c.server.data_dir = data_dir;
    });
    assert_eq!(
        join_as(server.addr, "presence-escrow.7.chat", "buyer"),
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(api(server.addr, "DELETE", &path, "", &[]).0, 200);
    assert_eq!(
        join_as(server.addr, "presence-escrow.7.chat", "buyer"),
        "pusher:subscription_error"
    );
}
