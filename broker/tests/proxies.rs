//! Ringcast behind real proxies, started on loopback ports by the tests: nginx with
//! `docs/deploy/nginx-ringcast-locations.conf` and HAProxy with `docs/deploy/haproxy.cfg`, both
//! as written. Clients connect from 127.0.0.2 and 127.0.0.3 and must be told apart (each has
//! its own per-IP connection limit, and the audit log names them, not the proxy); forwarding
//! headers from a peer that is not a trusted proxy are ignored.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast::config::{Config, RateLimits};
use ringcast::core::options::TlsFiles;
use ringcast::core::proxy::TrustedProxies;
use rustls::ClientConfig;
use serde_json::{Value, json};
use support::tls::{self as test_tls, TestPki};
use support::{APP_ID, Duplex, KEY, TestServer, WsClient, api, temp_dir};

const ADMIN_TOKEN: &str = "proxies-admin-token";
const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// `[apps.rate_limits]`'s default per-IP figure, the one the reference deployments ask for.
fn attempts_per_minute() -> usize {
    RateLimits::default().connections_per_minute_per_ip as usize
}

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/deploy")
        .join(name)
}

/// A proxy process, stopped on drop.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    /// SIGTERM, so that nginx's master stops its workers (a killed master leaves them
    /// serving); SIGKILL if it has not gone within seconds.
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: `kill` has no memory effects; `pid` is this test's own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(child: &mut Child, addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx on a loopback port, with the deployment's locations file and `upstream ringcast`
/// pointing at `upstream`.
fn start_nginx(upstream: SocketAddr) -> Proxy {
    let dir = temp_dir("nginx");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let locations = deploy_file("nginx-ringcast-locations.conf");
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream ringcast {{ server {upstream}; keepalive 8; }}\n\
         server {{\n    listen {addr};\n    include {};\n  }}\n}}\n",
        locations.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(&dir)
        .args(["-e", "stderr", "-g", "daemon off;", "-c"])
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx runs (scripts/setup installs it)");
    wait_listening(&mut child, addr, "nginx");
    Proxy { child, addr }
}

/// HAProxy on a loopback port with `docs/deploy/haproxy.cfg`, both its nodes at `node`.
fn start_haproxy(node: SocketAddr) -> Proxy {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut child = Command::new("/usr/sbin/haproxy")
        .arg("-db")
        .arg("-f")
        .arg(deploy_file("haproxy.cfg"))
        .env("RINGCAST_FRONTEND", addr.to_string())
        .env("RINGCAST_NODE_1", node.to_string())
        .env("RINGCAST_NODE_2", node.to_string())
        // The test machine allows 20,000 descriptors per process.
        .env("RINGCAST_MAXCONN", "2000")
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy runs (scripts/setup installs it)");
    wait_listening(&mut child, addr, "haproxy");
    Proxy { child, addr }
}

/// A TCP connection to `to` from the loopback address `source`.
fn tcp_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends a WebSocket upgrade for the app with `extra` headers and returns the response's
/// status and body (the body only when it is not a 101).
fn upgrade(stream: &mut dyn Duplex, extra: &str) -> (u16, String) {
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: ringcast\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => response.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&response).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // By its length: a proxy may keep the client's connection open after a refusal.
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; if status == 101 { 0 } else { length }];
    let _ = stream.read_exact(&mut body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A server that trusts 127.0.0.1 (where the proxies run) and limits connection attempts.
fn behind_proxies(config: &mut Config) {
    config.server.trusted_proxies = TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
    config.server.admin_token = Some(ADMIN_TOKEN.into());
    config.server.audit_flush_interval = Duration::from_millis(20);
    config.apps[0].rate_limits = Some(RateLimits::default());
}

/// The rate-limit refusals in the audit log (they reach the store asynchronously), once
/// there are at least `expected`.
fn rate_limit_records(fetch: impl Fn(&str) -> String, expected: usize) -> Vec<Value> {
    let request = format!(
        "GET /admin/api/security-events HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fetch(&request);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let page: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let records: Vec<Value> = page["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["action"] == "rate_limit")
            .cloned()
            .collect();
        if records.len() >= expected || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn remote_ips(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["remote_ip"].as_str().unwrap_or("none"))
        .collect()
}

#[test]
fn behind_nginx_each_client_has_its_own_limit_and_spoofed_headers_are_ignored() {
    let server = TestServer::start_with(2, behind_proxies);
    let nginx = start_nginx(server.addr);

    let mut first: Vec<WsClient> = (0..attempts_per_minute())
        .map(|_| WsClient::connect_over(tcp_from(FIRST, nginx.addr), nginx.addr))
        .collect();
    let (status, body) = upgrade(&mut tcp_from(FIRST, nginx.addr), "");
    assert_eq!(status, 429, "the 11th attempt from 127.0.0.2: {body}");
    assert!(body.contains("too many connection attempts"), "{body}");
    let mut second = WsClient::connect_over(tcp_from(SECOND, nginx.addr), nginx.addr);

    // Through nginx, a client's own X-Forwarded-For is only a prefix: nginx appends the
    // address it saw, and that is the one counted.
    for n in 1..attempts_per_minute() {
        let spoofed = format!("X-Forwarded-For: 198.51.100.{n}\r\n");
        let (status, _) = upgrade(&mut tcp_from(SECOND, nginx.addr), &spoofed);
        assert_eq!(status, 101, "attempt {n} from 127.0.0.3");
    }
    let (status, _) = upgrade(
        &mut tcp_from(SECOND, nginx.addr),
        "X-Forwarded-For: 198.51.100.99\r\n",
    );
    assert_eq!(status, 429, "127.0.0.3's 11th attempt, whatever it claims");

    // Straight to Ringcast, 127.0.0.4 is no proxy: its claim to be the limited 127.0.0.2 is
    // ignored, and so is 127.0.0.2's claim to be someone fresh.
    let direct = Ipv4Addr::new(127, 0, 0, 4);
    let (status, _) = upgrade(
        &mut tcp_from(direct, server.addr),
        "X-Forwarded-For: 127.0.0.2\r\nX-Real-IP: 127.0.0.2\r\n",
    );
    assert_eq!(status, 101, "127.0.0.4 is counted as itself");
    let (status, _) = upgrade(
        &mut tcp_from(FIRST, server.addr),
        "X-Forwarded-For: 203.0.113.5\r\nX-Real-IP: 203.0.113.5\r\n",
    );
    assert_eq!(status, 429, "127.0.0.2 is counted as itself");

    // The audit log names the clients, never nginx.
    let direct = |request: &str| {
        String::from_utf8_lossy(&support::raw_http(server.addr, request.as_bytes())).into_owned()
    };
    let records = rate_limit_records(direct, 3);
    let ips = remote_ips(&records);
    assert_eq!(ips.len(), 3, "{records:?}");
    assert_eq!(
        ips.iter().filter(|ip| **ip == "127.0.0.2").count(),
        2,
        "{ips:?}"
    );
    assert_eq!(
        ips.iter().filter(|ip| **ip == "127.0.0.3").count(),
        1,
        "{ips:?}"
    );

    // The HTTP API location works through nginx, and the clients behind it stay live.
    second.subscribe("through-nginx");
    first[0].subscribe("through-nginx");
    let body = json!({"name": "hello", "channel": "through-nginx", "data": "{}"}).to_string();
    let (status, reply) = api(
        nginx.addr,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &body,
        &[],
    );
    assert_eq!(status, 200, "{reply}");
    for client in [&mut second, &mut first[0]] {
        let event = client.recv_until(Duration::from_secs(5), |m| m["event"] == "hello");
        assert_eq!(event["channel"], "through-nginx");
    }
    let up = support::raw_http(
        nginx.addr,
        b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        up.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&up)
    );
    drop(first);
    server.shutdown();
}

/// A server that takes PROXY protocol headers from 127.0.0.1 only, over TLS.
fn behind_haproxy(pki: &TestPki, dir: &Path) -> impl FnOnce(&mut Config) {
    let (cert_file, key_file) = pki.write_to(dir);
    move |config: &mut Config| {
        behind_proxies(config);
        config.server.proxy_protocol = true;
        config.server.tls = Some(TlsFiles {
            cert_file,
            key_file,
        });
    }
}

/// `GET /up` over TLS through `addr`, or `None` when the connection or handshake fails
/// (HAProxy closes connections it has no node up for).
fn try_up(addr: SocketAddr, tls: &Arc<ClientConfig>) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let mut conn = rustls::ClientConnection::new(tls.clone(), name).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream
        .write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// Waits until HAProxy's health check has found the node up (`GET /up` answers through it).
fn wait_until_routed(haproxy: SocketAddr, tls: &Arc<ClientConfig>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !try_up(haproxy, tls).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(
            Instant::now() < deadline,
            "HAProxy never routed to the node"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn behind_haproxy_the_proxy_protocol_names_each_client_over_tls() {
    let pki = TestPki::new("haproxy");
    let tls = test_tls::client_config(&[&pki]);
    let server = TestServer::start_with(2, behind_haproxy(&pki, &temp_dir("haproxy-tls")));
    let haproxy = start_haproxy(server.addr);
    wait_until_routed(haproxy.addr, &tls);

    let through = |source| test_tls::connect_over(tcp_from(source, haproxy.addr), &tls);
    let first: Vec<WsClient> = (0..attempts_per_minute())
        .map(|_| WsClient::connect_over(through(FIRST), haproxy.addr))
        .collect();
    let (status, body) = upgrade(&mut through(FIRST), "");
    assert_eq!(status, 429, "the 11th attempt from 127.0.0.2: {body}");
    let _second = WsClient::connect_over(through(SECOND), haproxy.addr);

    let records = rate_limit_records(|request| through(SECOND).request(request), 1);
    assert_eq!(remote_ips(&records), ["127.0.0.2"], "{records:?}");

    // Straight to the node: without a header from the trusted address, with none from
    // anyone else. Both get a JSON refusal in plain HTTP (the header comes before TLS).
    let refusal = |mut stream: TcpStream| {
        let _ = stream.write_all(b"\x16\x03\x01\x00\x05hello");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    };
    let missing = refusal(tcp_from(Ipv4Addr::LOCALHOST, server.addr));
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    assert!(
        missing.contains("must start with a PROXY protocol header"),
        "{missing}"
    );
    let untrusted = refusal(tcp_from(FIRST, server.addr));
    assert!(untrusted.starts_with("HTTP/1.1 403"), "{untrusted}");
    assert!(untrusted.contains("trusted proxy"), "{untrusted}");
    drop(first);
    server.shutdown();
}

#[test]
fn a_version_1_header_names_the_client_and_a_local_one_leaves_the_proxy() {
    let server = TestServer::start_with(1, |config| {
        behind_proxies(config);
        config.server.proxy_protocol = true;
    });
    let from_header = |header: &str| {
        let mut stream = tcp_from(Ipv4Addr::LOCALHOST, server.addr);
        stream.write_all(header.as_bytes()).unwrap();
        upgrade(&mut stream, "").0
    };
    let v1 = "PROXY TCP4 198.51.100.7 127.0.0.1 40000 443\r\n";
    for n in 0..attempts_per_minute() {
        assert_eq!(from_header(v1), 101, "attempt {n}");
    }
    assert_eq!(from_header(v1), 429);
    assert_eq!(
        from_header("PROXY TCP4 198.51.100.8 127.0.0.1 40000 443\r\n"),
        101
    );
    // UNKNOWN: the proxy's own connection, counted as the proxy.
    assert_eq!(from_header("PROXY UNKNOWN\r\n"), 101);
    let as_proxy = |request: &str| {
        let request = format!("PROXY UNKNOWN\r\n{request}");
        String::from_utf8_lossy(&support::raw_http(server.addr, request.as_bytes())).into_owned()
    };
    let records = rate_limit_records(as_proxy, 1);
    assert_eq!(remote_ips(&records), ["198.51.100.7"], "{records:?}");
    let mut garbled = tcp_from(Ipv4Addr::LOCALHOST, server.addr);
    garbled.write_all(b"PROXY TCP4 198.51.100.7\r\n").unwrap();
    let mut response = String::new();
    let _ = garbled.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("malformed PROXY protocol header"),
        "{response}"
    );
    server.shutdown();
}
