//! The production edge with real sockets and the real binary: the dashboard built into a
//! copied binary, shards pinned to CPUs, and the port answering 503 while a shutdown drains.

mod support;

use std::io::Write;
use std::time::Duration;

use ringcast::core::options::PinCores;
use ringcast::http::EMBEDDED_ADMIN_UI;
use serde_json::json;
use support::{TestServer, WsClient, http, raw_http, raw_upgrade, temp_dir};

/// Set by `scripts/test`, which builds the dashboard before compiling the tests: there the
/// embedding test must run, never skip.
const REQUIRE_EMBEDDED_UI: &str = "RINGCAST_REQUIRE_EMBEDDED_UI";

/// A response split into its status, lower-cased head and body bytes.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

fn get(addr: std::net::SocketAddr, path: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n");
    let raw = raw_http(addr, request.as_bytes());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Response {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

fn embedded(name: &str) -> Option<&'static [u8]> {
    EMBEDDED_ADMIN_UI
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, bytes)| *bytes)
}

#[test]
fn a_copied_binary_serves_its_built_in_dashboard_from_any_directory() {
    let Some(index) = embedded("index.html") else {
        let why = "this build has no dashboard built in: target/admin-ui/dist did not exist \
                   when it was compiled (run scripts/build-admin-ui, then test again)";
        assert!(std::env::var_os(REQUIRE_EMBEDDED_UI).is_none(), "{why}");
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_copied_binary_serves_its_built_in_dashboard_from_any_directory: {why}"
        );
        return;
    };
    let wasm = embedded("admin_ui_bg.wasm").expect("the dashboard's wasm module is built in");

    // A directory with nothing but the binary and its config: no target/admin-ui/dist here.
    let dir = temp_dir("copied-binary");
    let binary = dir.join("ringcast");
    std::fs::copy(env!("CARGO_BIN_EXE_ringcast"), &binary).unwrap();
    let config = dir.join("ringcast.toml");
    std::fs::write(
        &config,
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nshards = 1\ndata_dir = \"data\"\n\n\
         [[apps]]\nid = \"1\"\nkey = \"edge-key\"\nsecret = \"edge-secret\"\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("broker.log")).unwrap();
    let mut command = std::process::Command::new(&binary);
    command
        .current_dir(&dir)
        .args(["serve", "--config", "ringcast.toml"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(log);
    let (mut child, addr) = support::spawn_listening(command);

    let page = get(addr, "/admin/");
    let wasm_reply = get(addr, "/admin/admin_ui_bg.wasm");
    // SAFETY: kill(2) on the pid of a child this test started and has not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();

    assert_eq!(page.status, 200, "{}", page.head);
    assert!(page.head.contains("content-type: text/html; charset=utf-8"));
    assert_eq!(page.body, index, "the built dashboard's index.html");
    assert!(String::from_utf8_lossy(&page.body).contains("admin_ui.js"));
    assert_eq!(wasm_reply.status, 200, "{}", wasm_reply.head);
    assert!(wasm_reply.head.contains("content-type: application/wasm"));
    assert!(wasm_reply.head.contains("cache-control: no-store"));
    assert!(wasm_reply.body.starts_with(b"\0asm"));
    assert_eq!(wasm_reply.body.len(), wasm.len());
    assert!(status.success(), "{status}");
    assert!(
        dir.join("data/audit").is_dir(),
        "data_dir is under the directory"
    );
    let log = std::fs::read_to_string(dir.join("broker.log")).unwrap();
    assert!(
        log.contains("admin dashboard served at /admin/") && log.contains("built into the binary"),
        "{log}"
    );
}

#[test]
fn with_one_shard_per_allowed_cpu_each_shard_is_pinned_to_its_own_and_metrics_say_which() {
    let allowed = ringcast::shell::cpus::allowed_cpus();
    let server = TestServer::start(allowed.len());
    let (status, metrics) = http(server.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    for (shard, cpu) in allowed.iter().enumerate() {
        let line = format!("ringcast_shard_cpu{{shard=\"{shard}\"}} {cpu}\n");
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
}

#[test]
fn pin_cores_true_pins_even_a_single_shard_and_false_pins_none() {
    let allowed = ringcast::shell::cpus::allowed_cpus();
    let pinned = TestServer::start_with(1, |c| c.server.pin_cores = PinCores::On);
    let (_, metrics) = http(pinned.addr, "GET", "/metrics", "");
    let line = format!("ringcast_shard_cpu{{shard=\"0\"}} {}\n", allowed[0]);
    assert!(metrics.as_str().unwrap().contains(&line), "{metrics}");

    let unpinned = TestServer::start_with(allowed.len(), |c| c.server.pin_cores = PinCores::Off);
    let (_, metrics) = http(unpinned.addr, "GET", "/metrics", "");
    let text = metrics.as_str().unwrap();
    assert!(text.contains("# TYPE ringcast_shard_cpu gauge"), "{text}");
    assert!(!text.contains("ringcast_shard_cpu{"), "{text}");
}

#[test]
fn while_a_shutdown_drains_new_connections_get_503_from_up_and_from_upgrades() {
    let server = TestServer::start(2);
    let addr = server.addr;
    let mut client = WsClient::connect(addr);
    for path in ["/up", "/"] {
        let (status, up) = http(addr, "GET", path, "");
        assert_eq!((status, up), (200, json!({"health": "ok"})), "{path}");
    }

    let stopper = std::thread::spawn(move || server.shutdown());
    // The client hears 4200 and does not answer the close frame yet: the server waits for it
    // (up to its 2 s close grace), so it is still draining while the new connections ask.
    let error = client.recv_until(Duration::from_secs(5), |v| v["event"] == "pusher:error");
    assert_eq!(error["data"]["code"], 4200);

    for path in ["/up", "/"] {
        let (status, up) = http(addr, "GET", path, "");
        assert_eq!(
            (status, up),
            (503, json!({"health": "draining", "error": "shutting down"})),
            "{path}"
        );
    }
    let upgrade = raw_upgrade(addr, 13);
    assert!(upgrade.starts_with("HTTP/1.1 503"), "{upgrade}");
    let body = upgrade.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        json!({"error": "shutting down: connect to another node"})
    );

    // The last client answers and goes: the drain ends and the port closes.
    assert_eq!(client.recv().unwrap(), json!({"close": 4200}));
    stopper.join().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after the drain"
    );
}

#[test]
fn serve_takes_host_and_port_and_keeps_the_demo_credentials_off_public_addresses() {
    let port = std::net::TcpListener::bind("127.0.0.5:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("serve-flags");
    let serve = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"));
        command
            .current_dir(&dir)
            .arg("serve")
            .args(args)
            .env("RINGCAST_PORT", "1") // the flag wins
            .env("RUST_LOG", "warn");
        command
    };
    let (mut child, addr) =
        support::spawn_listening(serve(&["--host", "127.0.0.5", "--port", &port.to_string()]));
    assert_eq!(addr, std::net::SocketAddr::from(([127, 0, 0, 5], port)));
    assert_eq!(http(addr, "GET", "/up", "").0, 200);
    child.kill().unwrap();
    child.wait().unwrap();

    let refused = serve(&["--host", "0.0.0.0", "--port", "0"])
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("server.host: 0.0.0.0 is reachable from other machines")
            && stderr.contains("--allow-demo-credentials"),
        "{stderr}"
    );
}
