//! A tiny HTTP server that records webhook requests.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request the receiver got.
pub struct Received {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn events(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.body).unwrap();
        body["events"].as_array().unwrap().clone()
    }
}

/// A tiny HTTP server answering each request with the next scripted status (200 when the
/// script is empty).
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(script: &[u16]) -> Self {
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

    pub fn url(&self) -> String {
        format!("http://{}/pusher/webhooks", self.addr)
    }

    /// Waits (bounded) for a request containing an event named `name` on `channel`.
    pub fn wait_for(&self, name: &str, channel: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(at) = self.find(name, channel) {
                return Some(at);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn find(&self, name: &str, channel: &str) -> Option<Instant> {
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

    /// Waits until `count` events named `name` for `channel` arrived (or `timeout`).
    pub fn wait_for_count(&self, name: &str, channel: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(name, channel) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn count(&self, name: &str, channel: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.events())
            .filter(|e| e["name"] == name && e["channel"] == channel)
            .count()
    }
}
