//! Channel history on a real server: the signed history API, and history kept across a
//! restart (the `data/history` store).

mod support;

use ringcast::config::Config;
use ringcast::core::options::HistoryConfig;
use serde_json::{Value, json};
use support::{APP_ID, TestServer, api, http};

fn with_history(c: &mut Config, data_dir: std::path::PathBuf) {
    c.server.data_dir = data_dir;
    c.server.audit_flush_interval = std::time::Duration::from_millis(20);
    c.apps[0].history = Some(HistoryConfig {
        channels: vec!["private-chat.*".into()],
        ..HistoryConfig::default()
    });
}

fn publish(server: &TestServer, channel: &str, data: &str) {
    let body = json!({"name": "said", "channel": channel, "data": data}).to_string();
    let (status, answer) = api(
        server.addr,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &body,
        &[],
    );
    assert_eq!(status, 200, "{answer}");
}

fn history(server: &TestServer, channel: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let path = format!("/apps/{APP_ID}/channels/{channel}/history");
    api(server.addr, "GET", &path, "", query)
}

fn ids(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn the_history_api_answers_pages_and_refuses_what_it_cannot_answer() {
    let dir = support::temp_dir("history-api");
    let server = TestServer::start_with(2, |c| with_history(c, dir));
    for i in 1..=3 {
        publish(&server, "private-chat.7", &format!("m{i}"));
    }
    let (status, page) = history(&server, "private-chat.7", &[]);
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [1, 2, 3]);
    assert_eq!(page["events"][0]["event"], "said");
    assert_eq!(page["events"][0]["data"], "m1");
    assert!(page["events"][0]["published_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(page["truncated"], false);
    let (_, page) = history(&server, "private-chat.7", &[("since", "1"), ("limit", "1")]);
    assert_eq!(ids(&page), [2]);
    for (name, value) in [
        ("since", "-1"),
        ("since", "x"),
        ("limit", "0"),
        ("limit", "1001"),
    ] {
        let (status, answer) = history(&server, "private-chat.7", &[(name, value)]);
        assert_eq!(status, 400, "{name}={value}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(name), "{answer}");
    }
    let (status, answer) = history(&server, "private-other.7", &[]);
    assert_eq!(status, 404);
    assert!(
        answer["error"].as_str().unwrap().contains("no history"),
        "{answer}"
    );
    let unsigned = format!("/apps/{APP_ID}/channels/private-chat.7/history");
    let (status, answer) = http(server.addr, "GET", &unsigned, "");
    assert_eq!(status, 400, "an unsigned request is refused: {answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("auth_"),
        "{answer}"
    );
}

#[test]
fn history_survives_a_restart_and_ids_go_on() {
    let dir = support::temp_dir("history-restart");
    let first = dir.clone();
    let server = TestServer::start_with(2, |c| with_history(c, first));
    for i in 1..=3 {
        publish(&server, "private-chat.7", &format!("m{i}"));
    }
    assert_eq!(ids(&history(&server, "private-chat.7", &[]).1), [1, 2, 3]);
    server.shutdown();

    let server = TestServer::start_with(1, |c| with_history(c, dir));
    let (status, page) = history(&server, "private-chat.7", &[]);
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [1, 2, 3]);
    assert_eq!(page["events"][2]["data"], "m3");
    publish(&server, "private-chat.7", "m4");
    assert_eq!(
        ids(&history(&server, "private-chat.7", &[("since", "3")]).1),
        [4]
    );
    let (_, metrics) = http(server.addr, "GET", "/metrics", "");
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("ringcast_history_events{{app=\"{APP_ID}\"}} 4")),
        "{text}"
    );
}
