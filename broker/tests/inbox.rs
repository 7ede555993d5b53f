//! The inbox store (`[apps.inbox]`) with the real binary: kept across a restart, nothing older
//! than the flush interval lost to `kill -9`, and message bodies only under `data/inbox`; and
//! in-process: what Laravel's Redis broadcaster publishes is kept, `/metrics` counts it, an app
//! without the tables answers 404.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{APP_ID, KEY, SECRET, api, http};

const JWT_SECRET: &str = "inbox-test-jwt-secret-of-32-bytes-at-least";

/// A config with one app keeping `user.{id}` inboxes, JWT callers and the legacy route.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    write_config_with(dir, "")
}

/// The inbox tests' config with `extra` appended to the app.
fn write_config_with(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("ringcast.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nport = 0\nshards = 2\ndata_dir = {:?}\naudit_flush_interval_ms = 100\n\n\
             [[apps]]\nid = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n\
             [apps.jwt]\nalgorithm = \"HS256\"\nsecret = \"{JWT_SECRET}\"\n\
             [apps.inbox]\nchannels = [\"user.{{id}}\"]\n\
             [apps.legacy_broadcast]\n{extra}",
            dir.join("data")
        ),
    )
    .unwrap();
    path
}

fn token(user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    ringcast::core::auth::jwt::sign_hs256(&json!({"sub": user, "exp": exp}), JWT_SECRET.as_bytes())
}

fn publish(addr: std::net::SocketAddr, user: &str, data: &str) -> (u16, Value) {
    let body =
        json!({"name": "notification", "channel": format!("private-user.{user}"), "data": data})
            .to_string();
    api(addr, "POST", &format!("/apps/{APP_ID}/events"), &body, &[])
}

fn notify(addr: std::net::SocketAddr, user: &str, data: &str) {
    assert_eq!(publish(addr, user, data).0, 200);
}

fn pending(addr: std::net::SocketAddr, user: &str) -> Value {
    let target = format!(
        "/pending-notifications?app_key={KEY}&limit=1000&token={}",
        token(user)
    );
    let (status, body) = http(addr, "GET", &target, "");
    assert_eq!(status, 200, "{body}");
    body
}

fn data_of(pending: &Value) -> Vec<String> {
    pending["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["data"].as_str().unwrap().to_owned())
        .collect()
}

fn terminate(child: &mut std::process::Child) {
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
}

#[test]
fn a_restart_keeps_the_inbox_and_its_ids_keep_rising() {
    let dir = support::temp_dir("inbox-restart");
    let config = write_config(&dir);
    let (mut broker, addr) = support::spawn_broker(&config, "error");
    notify(addr, "42", "first");
    notify(addr, "42", "second");
    let before = pending(addr, "42");
    assert_eq!(data_of(&before), ["first", "second"]);
    let first_id = before["notifications"][0]["id"].as_u64().unwrap();
    let (status, acked) = http(
        addr,
        "POST",
        &format!(
            "/pending-notifications/ack?app_key={KEY}&token={}",
            token("42")
        ),
        &json!({"ids": [first_id]}).to_string(),
    );
    assert_eq!((status, acked), (200, json!({"acked": 1})));
    terminate(&mut broker);

    let (mut broker, addr) = support::spawn_broker(&config, "error");
    let after = pending(addr, "42");
    assert_eq!(data_of(&after), ["second"], "the ack survived too");
    notify(addr, "42", "third");
    let again = pending(addr, "42");
    assert_eq!(data_of(&again), ["second", "third"]);
    let ids: Vec<u64> = again["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert!(ids[1] > ids[0] && ids[0] > first_id, "{ids:?}");
    terminate(&mut broker);
}

#[test]
fn notifications_older_than_the_flush_interval_survive_kill_9() {
    let dir = support::temp_dir("inbox-kill9");
    let config = write_config(&dir);
    // Logged, so that a failed publish shows what the broker saw.
    let (mut broker, addr, logs) = support::spawn_broker_logging(&config, "debug");
    let sent = 40;
    for i in 0..sent {
        let (status, answer) = publish(addr, &format!("u{}", i % 4), &format!("n{i}"));
        assert_eq!(
            status,
            200,
            "{answer}; the broker logged:\n{}",
            logs.lock().unwrap()
        );
    }
    // The last write is now older than two flush intervals.
    std::thread::sleep(Duration::from_millis(250));
    broker.kill().unwrap(); // SIGKILL
    broker.wait().unwrap();

    let db = sled::open(dir.join("data").join("inbox"))
        .expect("the inbox store opens cleanly after kill -9");
    assert_eq!(db.open_tree("entries").unwrap().len(), sent);
    drop(db);
    let (mut broker, addr) = support::spawn_broker(&config, "error");
    let kept = pending(addr, "u1");
    assert_eq!(kept["unread"], 10);
    assert_eq!(data_of(&kept)[..2], ["n1".to_owned(), "n5".to_owned()]);
    terminate(&mut broker);
}

#[test]
fn with_the_inbox_and_history_on_a_message_body_is_only_in_their_stores() {
    let marker = format!("INBOX-BODY-{}", fastrand::u64(..));
    let dir = support::temp_dir("inbox-bodies");
    let config = write_config_with(&dir, "[apps.history]\nchannels = [\"private-user.*\"]\n");
    let (mut broker, addr, logs) = support::spawn_broker_logging(&config, "debug");
    notify(addr, "7", &marker);
    // The legacy route, and a refused call to it, each carrying the marker.
    let legacy = json!({"event": "notification", "data": marker, "userIds": ["8"]}).to_string();
    let post = |secret: &str| {
        let request = format!(
            "POST /broadcast-message HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             X-Reverb-App-ID: {APP_ID}\r\nX-Reverb-App-Secret: {secret}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{legacy}",
            legacy.len()
        );
        String::from_utf8_lossy(&support::raw_http(addr, request.as_bytes())).into_owned()
    };
    assert!(post(SECRET).starts_with("HTTP/1.1 200"));
    assert!(post("wrong").starts_with("HTTP/1.1 401"));
    // Read back through the endpoint, so its path has run too.
    assert_eq!(data_of(&pending(addr, "7")), std::slice::from_ref(&marker));
    assert_eq!(data_of(&pending(addr, "8")), std::slice::from_ref(&marker));
    terminate(&mut broker);
    std::thread::sleep(Duration::from_millis(100));

    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("listening"), "the logs were captured: {logs}");
    assert!(!logs.contains(&marker), "message body in the logs:\n{logs}");
    let inbox = dir.join("data").join("inbox");
    let history = dir.join("data").join("history");
    let found = support::files_containing(&dir, marker.as_bytes());
    for store in [&inbox, &history] {
        assert!(
            found.iter().any(|p| p.starts_with(store)),
            "{store:?} keeps the body (by design): found only in {found:?}"
        );
    }
    let elsewhere: Vec<_> = found
        .iter()
        .filter(|p| !p.starts_with(&inbox) && !p.starts_with(&history))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "message body found outside data/inbox and data/history: {elsewhere:?}"
    );
    // The audit store did record those publishes (metadata only) and the refusal.
    let db = sled::open(dir.join("data").join("audit")).unwrap();
    let records: Vec<ringcast_shared::AuditRecord> = db
        .open_tree("audit")
        .unwrap()
        .iter()
        .values()
        .filter_map(Result::ok)
        .filter_map(|v| rkyv::from_bytes::<_, rkyv::rancor::Error>(&v).ok())
        .collect();
    let summary: Vec<(&str, Option<&str>, Option<&str>)> = records
        .iter()
        .map(|r| (r.action.as_str(), r.rule.as_deref(), r.channel.as_deref()))
        .collect();
    for expected in [
        ("publish", Some("http_api"), Some("private-user.7")),
        ("publish", Some("http_api"), Some("private-user.8")),
        ("api_signature", Some("legacy_broadcast_secret"), None),
    ] {
        assert!(
            summary.contains(&expected),
            "{expected:?} not in {summary:?}"
        );
    }
    let denial = records
        .iter()
        .find(|r| r.rule.as_deref() == Some("legacy_broadcast_secret"))
        .unwrap();
    assert_eq!(denial.decision, ringcast_shared::AuditDecision::Deny);
}

/// `[apps.inbox]` keeping `user.{id}`, with JWT callers, for an in-process server.
fn with_inbox(config: &mut ringcast::config::Config) {
    use ringcast::core::options::{ChannelPattern, InboxConfig};
    config.apps[0].inbox = Some(InboxConfig {
        channels: vec![ChannelPattern::parse("user.{id}").unwrap()],
        max_per_user: 50,
        ttl: Duration::from_secs(3600),
        max_users: 1000,
    });
    config.apps[0].jwt = Some(ringcast::config::JwtConfig::hs256(JWT_SECRET));
}

#[test]
fn an_event_from_laravels_redis_broadcaster_is_kept_and_counted_in_metrics() {
    use ringcast::config::RedisTarget;
    use ringcast::core::options::RedisBroadcast;
    let redis = support::RedisServer::start();
    let server = support::TestServer::start_with(2, |config| {
        with_inbox(config);
        config.apps[0].redis_broadcast = Some(RedisBroadcast {
            url: RedisTarget::parse(&redis.url()).unwrap(),
            prefix: String::new(),
            channels: "*".into(),
        });
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while support::redis_cmd(redis.port, &["PUBSUB", "NUMPAT"]) != ":1\r\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never subscribed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let payload = json!({"event": "OrderShipped", "data": {"order": 1}}).to_string();
    assert_eq!(
        support::redis_cmd(redis.port, &["PUBLISH", "private-user.5", &payload]),
        ":1\r\n"
    );
    // The broker takes the message from Redis on its own time: ask until it is kept.
    let kept = loop {
        let read = pending(server.addr, "5");
        if read["unread"] == 1 {
            break read;
        }
        assert!(std::time::Instant::now() < deadline, "never kept: {read}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(kept["notifications"][0]["event"], "OrderShipped");
    assert_eq!(kept["notifications"][0]["data"], "{\"order\":1}");
    let (_, metrics) = http(server.addr, "GET", "/metrics", "");
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(&format!(
            "ringcast_inbox_written_total{{app=\"{APP_ID}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "ringcast_inbox_pending_reads_total{{app=\"{APP_ID}\"}}"
    )));
    assert!(metrics.contains(&format!(
        "ringcast_inbox_evicted_total{{app=\"{APP_ID}\"}} 0"
    )));
}

#[test]
fn an_app_without_the_tables_answers_404_on_both_routes() {
    let server = support::TestServer::start(1);
    let (status, body) = http(
        server.addr,
        "GET",
        &format!("/pending-notifications?app_key={KEY}&token={}", token("1")),
        "",
    );
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("[apps.inbox]"),
        "{body}"
    );
    let request = format!(
        "POST /broadcast-message HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         X-Reverb-App-ID: {APP_ID}\r\nX-Reverb-App-Secret: {SECRET}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let answer =
        String::from_utf8_lossy(&support::raw_http(server.addr, request.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("[apps.legacy_broadcast]"), "{answer}");
    let (_, metrics) = http(server.addr, "GET", "/metrics", "");
    assert!(!metrics.as_str().unwrap().contains("ringcast_inbox_"));
}

#[test]
fn a_disabled_app_refuses_its_inbox_with_403() {
    let server = support::TestServer::start_with(1, |config| {
        with_inbox(config);
        config.apps[0].enabled = false;
    });
    let (status, body) = http(
        server.addr,
        "GET",
        &format!("/pending-notifications?app_key={KEY}&token={}", token("1")),
        "",
    );
    assert_eq!((status, body), (403, json!({"error": "app is disabled"})));
}
