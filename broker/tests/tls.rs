//! Native TLS over real sockets: `wss://` and `https://` on one port with a certificate chain,
//! plain HTTP on that port told what to do, bad handshakes that disturb nobody, the admin
//! cookie marked `Secure`, and a certificate reload (in-process and by `SIGHUP` to the real
//! binary) that new connections see while live ones stay.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ringcast::core::admin::{AdminAccount, hash_password};
use ringcast::core::options::TlsFiles;
use serde_json::{Value, json};
use support::tls::{TestPki, client_config, connect};
use support::{APP_ID, TestServer, WsClient, raw_http, signed_target, temp_dir};

fn tls_server(
    pki: &TestPki,
    dir: &Path,
    tweak: impl FnOnce(&mut ringcast::config::Config),
) -> TestServer {
    let (cert_file, key_file) = pki.write_to(dir);
    TestServer::start_with(2, |c| {
        c.server.tls = Some(TlsFiles {
            cert_file,
            key_file,
        });
        tweak(c);
    })
}

/// A request over TLS with `Connection: close`: status and body.
fn https(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    target: &str,
    body: &str,
) -> (u16, String, String) {
    let raw = connect(addr, config).request(&format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (status, head.to_owned(), body.to_owned())
}

fn publish(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    channel: &str,
    name: &str,
    data: &str,
) {
    let body = json!({"name": name, "channel": channel, "data": data}).to_string();
    let path = format!("/apps/{APP_ID}/events");
    let target = signed_target("POST", &path, &body, &[]);
    let (status, _, answer) = https(addr, config, "POST", &target, &body);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn wss_and_https_share_the_port_and_deliver_large_batches_in_order() {
    let pki = TestPki::new("a");
    let server = tls_server(&pki, &temp_dir("tls"), |_| {});
    let config = client_config(&[&pki]);
    let mut ws = WsClient::connect_over(connect(server.addr, &config), server.addr);
    ws.subscribe("tls-news");
    let (status, _, body) = https(server.addr, &config, "GET", "/up", "");
    assert_eq!((status, body.as_str()), (200, r#"{"health":"ok"}"#));

    // Ten events of 8 KB in one batch: the writer coalesces them into writes larger than a
    // TLS record, which must come out as records in order.
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"name": "chunk", "channel": "tls-news", "data": format!("{i:02}{}", "x".repeat(8000))}))
        .collect();
    let body = json!({"batch": events}).to_string();
    let path = format!("/apps/{APP_ID}/batch_events");
    let (status, _, answer) = https(
        server.addr,
        &config,
        "POST",
        &signed_target("POST", &path, &body, &[]),
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    for i in 0..10 {
        let event = ws.recv_until(Duration::from_secs(5), |v| v["event"] == "chunk");
        let data = event["data"].as_str().unwrap();
        assert_eq!(&data[..2], format!("{i:02}"));
        assert_eq!(data.len(), 8002);
    }
}

#[test]
fn plain_http_on_the_tls_port_is_told_to_use_tls() {
    let pki = TestPki::new("a");
    let server = tls_server(&pki, &temp_dir("tls"), |_| {});
    let raw = raw_http(server.addr, b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("this port speaks TLS: connect with https:// or wss://"),
        "{text}"
    );
}

#[test]
fn bad_handshakes_end_only_their_own_connection() {
    use std::io::{Read, Write};
    let pki = TestPki::new("a");
    let server = tls_server(&pki, &temp_dir("tls"), |_| {});
    let config = client_config(&[&pki]);
    let mut ws = WsClient::connect_over(connect(server.addr, &config), server.addr);
    ws.subscribe("calm");

    // A ClientHello whose body is garbage: the server answers with an alert and closes.
    let mut garbage = std::net::TcpStream::connect(server.addr).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage
        .write_all(&[
            0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff,
        ])
        .unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "a TLS alert record: {answer:?}"
    );

    // A client that does not trust the certificate gives up; the server is unaffected.
    let stranger = client_config(&[&TestPki::new("other")]);
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(stranger, name).unwrap();
    let mut sock = tcp;
    let refused = loop {
        match conn.complete_io(&mut sock) {
            Err(e) => break e,
            Ok(_) if !conn.is_handshaking() => panic!("an untrusted certificate was accepted"),
            Ok(_) => {}
        }
    };
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");

    publish(server.addr, &config, "calm", "still-here", "{}");
    let event = ws.recv_until(Duration::from_secs(5), |v| v["event"] == "still-here");
    assert_eq!(event["channel"], "calm");
}

#[test]
fn the_admin_session_cookie_is_secure_under_tls() {
    let pki = TestPki::new("a");
    let password = "correct horse battery";
    let server = tls_server(&pki, &temp_dir("tls"), |c| {
        c.admins = vec![AdminAccount {
            name: "ops".into(),
            password_hash: hash_password(password),
        }];
    });
    let config = client_config(&[&pki]);
    let body = json!({"name": "ops", "password": password}).to_string();
    let (status, head, answer) = https(server.addr, &config, "POST", "/admin/api/login", &body);
    assert_eq!(status, 200, "{answer}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_live_ones() {
    let first = TestPki::new("first");
    let second = TestPki::new("second");
    let dir = temp_dir("tls");
    let server = tls_server(&first, &dir, |_| {});
    let both = client_config(&[&first, &second]);
    let mut ws = WsClient::connect_over(connect(server.addr, &both), server.addr);
    ws.subscribe("live");
    assert_eq!(connect(server.addr, &both).server_certificate(), first.leaf);

    second.write_to(&dir);
    assert!(server.server().reload_tls().expect("reloads"));
    assert_eq!(
        connect(server.addr, &both).server_certificate(),
        second.leaf
    );

    // A broken file is refused and the certificate in use stays.
    std::fs::write(dir.join("server.crt"), "not a certificate").unwrap();
    let err = server
        .server()
        .reload_tls()
        .expect_err("a bad file is refused");
    assert!(err.to_string().contains("server.crt"), "{err}");
    assert_eq!(
        connect(server.addr, &both).server_certificate(),
        second.leaf
    );

    // The connection made before both reloads still works.
    publish(server.addr, &both, "live", "after-reload", "{}");
    let event = ws.recv_until(Duration::from_secs(5), |v| v["event"] == "after-reload");
    assert_eq!(event["channel"], "live");
}

#[test]
fn sighup_reloads_the_certificate_of_the_running_binary() {
    let first = TestPki::new("first");
    let second = TestPki::new("second");
    let dir = temp_dir("tls-binary");
    let (cert, key) = first.write_to(&dir);
    let config_file = dir.join("ringcast.toml");
    std::fs::write(
        &config_file,
        format!(
            "[server]\nport = 0\nshards = 1\ndata_dir = {:?}\n\n[server.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n\n\
             [[apps]]\nid = \"{APP_ID}\"\nkey = \"{}\"\nsecret = \"{}\"\n",
            dir.join("data"),
            support::KEY,
            support::SECRET,
        ),
    )
    .unwrap();
    let (mut child, addr) = support::spawn_broker(&config_file, "info");
    let both = client_config(&[&first, &second]);
    let mut ws = WsClient::connect_over(connect(addr, &both), addr);
    ws.subscribe("live");
    assert_eq!(connect(addr, &both).server_certificate(), first.leaf);

    second.write_to(&dir);
    // SAFETY: kill(2) with the child's pid has no memory effects.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while connect(addr, &both).server_certificate() != second.leaf {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not end the process"
    );
    publish(addr, &both, "live", "after-sighup", "{}");
    let event = ws.recv_until(Duration::from_secs(5), |v| v["event"] == "after-sighup");
    assert_eq!(event["channel"], "live");
    let _ = child.kill();
    let _ = child.wait();
}
