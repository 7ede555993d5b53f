//! A real server on 127.0.0.1 and small blocking clients for it.

#![allow(dead_code)]

pub mod hooks;
pub mod redis;
pub mod tls;

// Like the rest of this module, unused by the test crates that do not need Redis.
#[allow(unused_imports)]
pub use redis::{RedisServer, redis_cmd};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use ringcast::config::Config;
use ringcast::core::auth::api::signed_query;
use ringcast::core::auth::hmac_key;
use ringcast::core::ws::frame::{
    FrameLimits, Message, MessageDecoder, Opcode, Role, encode_client_frame,
};
use ringcast::shell::Server;
use serde_json::Value;

pub const APP_ID: &str = "100001";
pub const KEY: &str = "it-key";
pub const SECRET: &str = "it-secret";

/// A server on an ephemeral port, shut down on drop.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start(shards: usize) -> Self {
        Self::start_with(shards, |_| {})
    }

    pub fn start_with(shards: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::demo();
        config.server.port = 0;
        config.server.shards = shards;
        // Each server gets its own store: sled allows one process per directory.
        config.server.data_dir = temp_dir("server");
        config.apps[0].id = APP_ID.into();
        config.apps[0].key = KEY.into();
        config.apps[0].secret = SECRET.into();
        tweak(&mut config);
        let server = Server::start(config).expect("server starts");
        let addr = server.local_addr();
        Self {
            server: Some(server),
            addr,
        }
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// A client's byte stream: plain TCP, or TLS over it.
pub trait Duplex: Read + Write + Send {
    /// The TCP socket underneath (for timeouts).
    fn tcp(&self) -> &TcpStream;
}

impl Duplex for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// A blocking WebSocket client speaking the Pusher protocol.
pub struct WsClient {
    stream: Box<dyn Duplex>,
    buf: BytesMut,
    decoder: MessageDecoder,
    pub socket_id: String,
}

impl WsClient {
    /// Connects to `/app/{KEY}` and reads `connection_established`.
    pub fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::open(
            addr,
            &format!("/app/{KEY}?protocol=7&client=rust&version=1.0"),
        );
        let hello = client.recv().expect("connection_established");
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    /// Connects with a JWT in the `token` query parameter and reads `connection_established`.
    pub fn connect_with_token(addr: SocketAddr, token: &str) -> Self {
        let mut client = Self::open(addr, &format!("/app/{KEY}?protocol=7&token={token}"));
        let hello = client.recv().expect("connection_established");
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        client
    }

    /// Like [`WsClient::connect`], with a 4 KiB kernel receive buffer, so that a client that
    /// stops reading backs up into the server quickly.
    pub fn connect_with_small_receive_buffer(addr: SocketAddr) -> Self {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        let mut client = Self::upgrade(stream, addr, &format!("/app/{KEY}?protocol=7"));
        let hello = client.recv().expect("connection_established");
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    /// Performs the upgrade on `path` and returns the client without reading anything more.
    pub fn open(addr: SocketAddr, path: &str) -> Self {
        Self::upgrade(TcpStream::connect(addr).unwrap(), addr, path)
    }

    /// Connects over `stream` (e.g. TLS) and reads `connection_established`.
    pub fn connect_over(stream: impl Duplex + 'static, addr: SocketAddr) -> Self {
        let mut client = Self::upgrade(stream, addr, &format!("/app/{KEY}?protocol=7"));
        let hello = client.recv().expect("connection_established");
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    /// Performs the upgrade on `path` with `headers` added to the request and returns the
    /// client without reading anything more.
    pub fn open_with_headers(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        Self::upgrade_with(TcpStream::connect(addr).unwrap(), addr, path, headers)
    }

    fn upgrade(stream: impl Duplex + 'static, addr: SocketAddr, path: &str) -> Self {
        Self::upgrade_with(stream, addr, path, &[])
    }

    fn upgrade_with(
        stream: impl Duplex + 'static,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        let mut stream: Box<dyn Duplex> = Box::new(stream);
        stream
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        let limits = FrameLimits {
            max_frame_bytes: 1 << 24,
            max_message_bytes: 1 << 24,
        };
        Self {
            stream,
            buf: BytesMut::new(),
            decoder: MessageDecoder::new(Role::Client, limits),
            socket_id: String::new(),
        }
    }

    pub fn send(&mut self, message: &Value) {
        let frame = encode_client_frame(
            Opcode::Text,
            message.to_string().as_bytes(),
            [0x12, 0x34, 0x56, 0x78],
            true,
        );
        self.stream.write_all(&frame).unwrap();
    }

    /// How long [`WsClient::recv`] waits before giving up (5 s unless changed).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.tcp().set_read_timeout(Some(timeout)).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next text message as JSON, or `{"close": code}`; `None` on timeout or EOF.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Message::Text(text))) => {
                    return Some(serde_json::from_slice(&text).unwrap());
                }
                Ok(Some(Message::Close(frame))) => {
                    // Complete the closing handshake, as a browser would.
                    let code = frame.as_ref().map_or(1000, |f| f.code);
                    let reply =
                        encode_client_frame(Opcode::Close, &code.to_be_bytes(), [9, 8, 7, 6], true);
                    let _ = self.stream.write_all(&reply);
                    return Some(serde_json::json!({"close": frame.map(|f| f.code)}));
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(err) => panic!("server sent a bad frame: {err}"),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                // An interrupted read (EINTR) is a retry, not an end of stream.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Receives until `pred` matches, skipping other messages; panics after `timeout`.
    pub fn recv_until(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(v) = self.recv()
                && pred(&v)
            {
                return v;
            }
        }
        panic!("no matching message within {timeout:?}");
    }

    pub fn subscribe(&mut self, channel: &str) {
        self.send(&serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel}}));
        let reply = self.recv().expect("subscription reply");
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
    }

    /// The shard the server put this socket on (the low half of the socket id, modulo shards).
    pub fn shard(&self, shard_count: u64) -> u64 {
        let low: u64 = self.socket_id.split('.').nth(1).unwrap().parse().unwrap();
        low % shard_count
    }
}

/// A signed Pusher HTTP API request; returns the status and the JSON body.
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    http(
        addr,
        method,
        &signed_target(method, path, body, extra),
        body,
    )
}

/// `path` with the signed query of a Pusher HTTP API request, signed now.
pub fn signed_target(method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = signed_query(
        method,
        path,
        KEY,
        &hmac_key(SECRET),
        now,
        body.as_bytes(),
        extra,
    );
    format!("{path}?{query}")
}

/// A plain HTTP/1.1 request with `Connection: close`.
pub fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, Value) {
    let raw = raw_http(
        addr,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

/// The server's `/metrics` text.
pub fn metrics_text(addr: SocketAddr) -> String {
    let raw = raw_http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    String::from_utf8_lossy(&raw).into_owned()
}

/// The value of the sample named `series` (with its labels) in `metrics`.
pub fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

/// Sends raw bytes and returns everything the server answers until it closes.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Files under `dir` containing `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                stack.push(entry.path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringcast-test-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A raw upgrade request for `/app/{KEY}` with the given `Sec-WebSocket-Version`; returns the
/// server's whole answer.
pub fn raw_upgrade(addr: SocketAddr, version: u8) -> String {
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    );
    String::from_utf8_lossy(&raw_http(addr, request.as_bytes())).into_owned()
}

/// Starts the real `ringcast` binary with `config` and waits for its `listening on` line;
/// the rest of its output is drained in the background.
pub fn spawn_broker(config: &std::path::Path, log: &str) -> (std::process::Child, SocketAddr) {
    let mut command = broker_command(config, log);
    command.stderr(std::process::Stdio::null());
    spawn_listening(command)
}

/// Like [`spawn_broker`], keeping what the broker logs (uncoloured) in the returned buffer.
pub fn spawn_broker_logging(
    config: &std::path::Path,
    log: &str,
) -> (
    std::process::Child,
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let mut command = broker_command(config, log);
    command.stderr(std::process::Stdio::piped());
    spawn_listening_with(command)
}

/// `ringcast serve --config {config}` logging at `log`, uncoloured.
fn broker_command(config: &std::path::Path, log: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", log)
        .env("NO_COLOR", "1");
    command
}

/// Spawns `command` (a `ringcast serve`) with its standard output piped, and waits for its
/// `listening on` line; the rest of that output is drained in the background.
pub fn spawn_listening(command: std::process::Command) -> (std::process::Child, SocketAddr) {
    let (child, addr, _) = spawn_listening_with(command);
    (child, addr)
}

/// Like [`spawn_listening`]; when the command's standard error is piped, what it logs is kept
/// in the returned buffer.
fn spawn_listening_with(
    mut command: std::process::Command,
) -> (
    std::process::Child,
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let logged = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let logged = logged.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logged = logged.lock().unwrap();
                logged.push_str(&line);
                logged.push('\n');
            }
        });
    }
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("broker output").unwrap();
        if let Some(addr) = line.strip_prefix("ringcast: listening on ") {
            break addr.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr, logged)
}

/// The admin API token of servers started with it.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// An admin API GET with `token`; returns the status and the JSON body.
pub fn admin_get(server: &TestServer, target: &str, token: &str) -> (u16, Value) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_http(server.addr, request.as_bytes());
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls the admin API (with [`ADMIN_TOKEN`]) until `pred` holds for the page (records reach the store asynchronously).
pub fn wait_for_page(server: &TestServer, target: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, page) = admin_get(server, target, ADMIN_TOKEN);
        assert_eq!(status, 200, "{page}");
        if pred(&page) || Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
