//! Connections identified by the app's backend (`[apps.token_verification]`), against a real
//! HTTP backend on loopback that answers like the reference deployment's `/api/verify-token`
//! and counts its calls.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringcast::core::auth::{hmac_key, sign_channel};
use ringcast::core::options::TokenVerification;
use ringcast::core::policy::RuleConfig;
use serde_json::{Value, json};
use support::{
    ADMIN_TOKEN, KEY, SECRET, TestServer, WsClient, http, metric, metrics_text, wait_for_page,
};

/// How long the stand-in backend takes to answer the `slow` token: over the broker's timeout.
const SLOW_ANSWER: Duration = Duration::from_millis(1500);
/// The broker's `timeout_ms` in these tests.
const TIMEOUT_MS: u64 = 400;

/// The headers of one call the backend received (names in lower case).
type Call = HashMap<String, String>;

/// A verify endpoint: `user-1` is user `u1`, `worker-7` is worker `7`, `slow` answers after
/// [`SLOW_ANSWER`], `broken` answers 500, anything else 401.
struct Backend {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Backend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = recorded.clone();
                std::thread::spawn(move || answer(stream, &recorded));
            }
        });
        Self { addr, calls }
    }

    fn url(&self) -> String {
        format!("http://{}/api/verify-token", self.addr)
    }

    /// The calls made with `access-token: token`.
    fn calls_with(&self, token: &str) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.get("access-token").map(String::as_str) == Some(token))
            .cloned()
            .collect()
    }
}

fn answer(mut stream: TcpStream, calls: &Mutex<Vec<Call>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let headers: Call = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let token = headers.get("access-token").cloned().unwrap_or_default();
    calls.lock().unwrap().push(headers);
    let (status, body) = match token.as_str() {
        "user-1" => {
            // Long enough for concurrent connections to find this call in flight.
            std::thread::sleep(Duration::from_millis(200));
            let body =
                json!({"user_id": "u1", "name": "Ann", "email": "ann@example.com", "type": "user"});
            ("200 OK", body)
        }
        "worker-7" => {
            let body =
                json!({"user_id": 7, "name": "Wes", "email": "wes@example.com", "type": "worker"});
            ("200 OK", body)
        }
        "slow" => {
            std::thread::sleep(SLOW_ANSWER);
            ("200 OK", json!({"user_id": "s", "type": "user"}))
        }
        "broken" => (
            "500 Internal Server Error",
            json!({"message": "Server Error"}),
        ),
        _ => ("401 Unauthorized", json!({"message": "Unauthenticated."})),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A broker whose app verifies every connection with `backend`, with the reference
/// deployment's channel rules.
fn broker(backend: &Backend) -> TestServer {
    let url = backend.url();
    TestServer::start_with(2, move |c| {
        c.server.admin_token = Some(ADMIN_TOKEN.into());
        c.server.audit_flush_interval = Duration::from_millis(20);
        let app = &mut c.apps[0];
        app.rate_limits = None;
        app.token_verification = Some(TokenVerification {
            url,
            required: true,
            timeout: Duration::from_millis(TIMEOUT_MS),
            ..TokenVerification::default()
        });
        let rule = RuleConfig::new;
        app.policies = vec![
            RuleConfig {
                user: Some("{id}".into()),
                actors: vec!["user".into()],
                ..rule("user-channel", "user.{id}")
            },
            RuleConfig {
                user: Some("{id}".into()),
                actors: vec!["worker".into()],
                ..rule("worker-channel", "worker.{id}")
            },
            RuleConfig {
                actors: vec!["user".into(), "worker".into()],
                ..rule("group-channel", "group.{room}")
            },
        ];
    })
}

const PATH: &str = "/app/it-key?protocol=7&client=js&version=8.4.0";

/// Connects with the reference deployment's headers and returns the client and its first
/// message (`connection_established` or the refusal).
fn connect(server: &TestServer, token: &str, actor: Option<&str>) -> (WsClient, Value) {
    let mut headers = vec![("access-token", token), ("session-id", "session-1")];
    if let Some(actor) = actor {
        headers.push(("x-actor-type", actor));
    }
    let mut client = WsClient::open_with_headers(server.addr, PATH, &headers);
    let first = client.recv().expect("a first message");
    if first["event"] == "pusher:connection_established" {
        let data: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
    }
    (client, first)
}

/// Asserts that `first` refuses the connection with 4009 and that the close frame follows;
/// returns the refusal's message.
fn assert_refused(client: &mut WsClient, first: &Value) -> String {
    assert_eq!(first["event"], "pusher:error", "{first}");
    assert_eq!(first["data"]["code"], 4009, "{first}");
    assert_eq!(client.recv(), Some(json!({"close": 4009})));
    first["data"]["message"].as_str().unwrap().to_owned()
}

/// Subscribes to private channel `channel` with a valid signature and returns the reply.
fn subscribe_private(client: &mut WsClient, channel: &str) -> Value {
    let auth = sign_channel(KEY, &hmac_key(SECRET), &client.socket_id, channel, None);
    client.send(&json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}));
    client.recv().expect("a subscription reply")
}

#[test]
fn a_hundred_connections_with_the_same_credentials_make_one_backend_call() {
    let backend = Backend::start();
    let server = broker(&backend);
    let clients: Vec<WsClient> = std::thread::scope(|scope| {
        let connecting: Vec<_> = (0..100)
            .map(|_| scope.spawn(|| connect(&server, "user-1", Some("user"))))
            .collect();
        connecting
            .into_iter()
            .map(|handle| {
                let (client, first) = handle.join().unwrap();
                assert_eq!(first["event"], "pusher:connection_established", "{first}");
                client
            })
            .collect()
    });
    assert_eq!(clients.len(), 100);
    let calls = backend.calls_with("user-1");
    assert_eq!(calls.len(), 1, "{calls:?}");
    // The configured headers were forwarded as the client sent them.
    assert_eq!(calls[0]["session-id"], "session-1");
    assert_eq!(calls[0]["x-actor-type"], "user");
    // A later connection is answered from the cache.
    let (_late, first) = connect(&server, "user-1", Some("user"));
    assert_eq!(first["event"], "pusher:connection_established", "{first}");
    assert_eq!(backend.calls_with("user-1").len(), 1);
    let (status, _) = http(server.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let metrics = metrics_text(server.addr);
    assert!(
        metrics.contains(
            "ringcast_token_verification_calls_total{app=\"100001\",result=\"verified\"} 1"
        ),
        "{metrics}"
    );
    let hits = metric(
        &metrics,
        "ringcast_token_verification_cache_hits_total{app=\"100001\"}",
    );
    let shared = metric(
        &metrics,
        "ringcast_token_verification_shared_total{app=\"100001\"}",
    );
    assert_eq!(hits + shared, 100, "{metrics}");
}

#[test]
fn credentials_may_come_as_query_parameters_for_browsers() {
    let backend = Backend::start();
    let server = broker(&backend);
    let path = format!("{PATH}&access-token=worker-7&session-id=s2&x-actor-type=worker");
    let mut client = WsClient::open(server.addr, &path);
    let first = client.recv().unwrap();
    assert_eq!(first["event"], "pusher:connection_established", "{first}");
    let calls = backend.calls_with("worker-7");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["session-id"], "s2");
}

#[test]
fn a_wrong_actor_an_unknown_token_a_timeout_and_a_500_are_refused_with_4009_and_audited() {
    let backend = Backend::start();
    let server = broker(&backend);
    let cases = [
        (
            "user-1",
            Some("worker"),
            "actor type worker asked for, backend verified user",
        ),
        (
            "worker-7",
            None,
            "actor type user asked for, backend verified worker",
        ),
        ("nobody", Some("user"), "the backend answered 401"),
        ("slow", Some("user"), "did not answer within 400 ms"),
        ("broken", Some("user"), "the backend answered 500"),
    ];
    for (token, actor, expected) in cases {
        let (mut client, first) = connect(&server, token, actor);
        let message = assert_refused(&mut client, &first);
        assert!(message.contains(expected), "{token}: {message}");
    }
    // No credentials at all, when they are required.
    let mut bare = WsClient::open(server.addr, PATH);
    let first = bare.recv().unwrap();
    let message = assert_refused(&mut bare, &first);
    assert!(
        message.contains("access-token, session-id, authorization"),
        "{message}"
    );
    // A transient failure is not cached: the backend is asked again.
    let (mut again, first) = connect(&server, "broken", Some("user"));
    assert_refused(&mut again, &first);
    assert_eq!(backend.calls_with("broken").len(), 2);

    let page = wait_for_page(&server, "/admin/api/audit?decision=deny&limit=50", |page| {
        denials(page).len() >= 7
    });
    let reasons = denials(&page);
    assert_eq!(reasons.len(), 7, "{page}");
    for (_, expected) in cases.iter().map(|(t, _, e)| (t, e)) {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no audit record says {expected:?}: {reasons:?}"
        );
    }
    let metrics = metrics_text(server.addr);
    let failed = metric(
        &metrics,
        "ringcast_token_verification_calls_total{app=\"100001\",result=\"failed\"}",
    );
    assert_eq!(failed, 3, "the timeout and two 500s: {metrics}");
}

#[test]
fn a_verified_worker_is_refused_on_user_channels_and_admitted_on_its_own_and_group_channels() {
    let backend = Backend::start();
    let server = broker(&backend);
    let (mut worker, first) = connect(&server, "worker-7", Some("worker"));
    assert_eq!(first["event"], "pusher:connection_established", "{first}");
    let reply = subscribe_private(&mut worker, "private-group.room-1");
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let reply = subscribe_private(&mut worker, "private-worker.7");
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let reply = subscribe_private(&mut worker, "private-user.7");
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    assert_eq!(reply["data"]["status"], 403, "{reply}");

    let (mut user, first) = connect(&server, "user-1", None);
    assert_eq!(first["event"], "pusher:connection_established", "{first}");
    let reply = subscribe_private(&mut user, "private-user.u1");
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    let reply = subscribe_private(&mut user, "private-worker.7");
    assert_eq!(reply["data"]["status"], 403, "{reply}");
}

/// The reasons of the page's backend-verification denials.
fn denials(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["rule"] == "token_verification")
        .filter_map(|r| r["reason"].as_str().map(str::to_owned))
        .collect()
}
