//! Webhooks against a real HTTP receiver on 127.0.0.1: signatures, the 3 s leave delay and
//! its cancellation, and retries after failures.

mod support;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringcast::config::WebhookConfig;
use ringcast::core::auth::{hmac_key, verify_hex};
use serde_json::{Value, json};
use support::{KEY, SECRET, TestServer, WsClient};

/// One request the receiver got.
struct Received {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn events(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.body).unwrap();
        body["events"].as_array().unwrap().clone()
    }
}

/// A tiny HTTP server answering each request with the next scripted status (200 when the
/// script is empty).
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break 0,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                if head_end == 0 {
                    continue;
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = buf[head_end..].to_vec();
                sink.lock().unwrap().push(Received {
                    at: Instant::now(),
                    headers,
                    body,
                });
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Self { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}/pusher/webhooks", self.addr)
    }

    /// Waits (bounded) for a request containing an event named `name` on `channel`.
    fn wait_for(&self, name: &str, channel: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(at) = self.find(name, channel) {
                return Some(at);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn find(&self, name: &str, channel: &str) -> Option<Instant> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .find(|r| {
                r.events()
                    .iter()
                    .any(|e| e["name"] == name && e["channel"] == channel)
            })
            .map(|r| r.at)
    }

    fn count(&self, name: &str, channel: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.events())
            .filter(|e| e["name"] == name && e["channel"] == channel)
            .count()
    }
}

fn server_with_hook(receiver: &Receiver) -> TestServer {
    let url = receiver.url();
    TestServer::start_with(2, move |c| {
        c.apps[0].webhooks = vec![WebhookConfig {
            url,
            event_types: Vec::new(),
        }];
    })
}

#[test]
fn webhooks_are_signed_with_the_app_key_and_secret() {
    let receiver = Receiver::start(&[]);
    let server = server_with_hook(&receiver);
    let mut client = WsClient::connect(server.addr);
    client.subscribe("signed-channel");
    assert!(
        receiver
            .wait_for("channel_occupied", "signed-channel", Duration::from_secs(5))
            .is_some()
    );
    let received = receiver.received.lock().unwrap();
    let request = &received[0];
    assert_eq!(request.header("X-Pusher-Key"), Some(KEY));
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    let signature = request.header("X-Pusher-Signature").unwrap();
    assert!(verify_hex(&hmac_key(SECRET), &request.body, signature));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert!(body["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        request.events()[0],
        json!({"name": "channel_occupied", "channel": "signed-channel"})
    );
}

#[test]
fn channel_vacated_waits_three_seconds() {
    let receiver = Receiver::start(&[]);
    let server = server_with_hook(&receiver);
    let mut client = WsClient::connect(server.addr);
    client.subscribe("leaving");
    receiver
        .wait_for("channel_occupied", "leaving", Duration::from_secs(5))
        .unwrap();
    let left = Instant::now();
    client.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": "leaving"}}));
    let vacated = receiver
        .wait_for("channel_vacated", "leaving", Duration::from_secs(8))
        .expect("channel_vacated");
    assert!(
        vacated.duration_since(left) >= Duration::from_secs(3),
        "{:?}",
        vacated.duration_since(left)
    );
}

#[test]
fn coming_back_within_three_seconds_cancels_vacated() {
    let receiver = Receiver::start(&[]);
    let server = server_with_hook(&receiver);
    let mut client = WsClient::connect(server.addr);
    client.subscribe("flapping");
    receiver
        .wait_for("channel_occupied", "flapping", Duration::from_secs(5))
        .unwrap();
    client.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": "flapping"}}));
    std::thread::sleep(Duration::from_secs(1));
    client.subscribe("flapping");
    // Well past the delay: neither a vacated nor a second occupied went out.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(receiver.count("channel_vacated", "flapping"), 0);
    assert_eq!(receiver.count("channel_occupied", "flapping"), 1);
}

#[test]
fn failed_deliveries_are_retried_until_accepted() {
    let receiver = Receiver::start(&[500, 500]);
    let server = server_with_hook(&receiver);
    let mut client = WsClient::connect(server.addr);
    client.subscribe("retried");
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.count("channel_occupied", "retried") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two failures, then the third attempt is accepted; the same event each time.
    assert_eq!(receiver.count("channel_occupied", "retried"), 3);
    let (_, metrics) = support::http(server.addr, "GET", "/metrics", "");
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("ringcast_webhook_attempts_failed_total 2"),
        "{text}"
    );
    assert!(
        text.contains("ringcast_webhook_requests_delivered_total 1"),
        "{text}"
    );
}
