//! Webhooks against a real HTTP receiver on 127.0.0.1: signatures, the 3 s leave delay and
//! its cancellation, and retries after failures.

mod support;

use std::time::{Duration, Instant};

use ringcast::config::WebhookConfig;
use ringcast::core::auth::{hmac_key, verify_hex};
use serde_json::{Value, json};
use support::hooks::Receiver;
use support::{KEY, SECRET, TestServer, WsClient};

fn server_with_hook(receiver: &Receiver) -> TestServer {
    let url = receiver.url();
    TestServer::start_with(2, move |c| {
        c.apps[0].webhooks = vec![WebhookConfig::to(url)];
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
fn each_endpoint_gets_only_its_channels_with_its_own_headers() {
    let lobby = Receiver::start(&[]);
    let orders = Receiver::start(&[]);
    let (lobby_url, orders_url) = (lobby.url(), orders.url());
    let server = TestServer::start_with(2, move |c| {
        let mut only_lobby = WebhookConfig::to(lobby_url);
        only_lobby.filter.channel_name_starts_with = Some("lobby-".into());
        only_lobby
            .headers
            .insert("Authorization".into(), "Bearer hook-token".into());
        let mut only_orders = WebhookConfig::to(orders_url);
        only_orders.filter.channel_name_ends_with = Some("-orders".into());
        c.apps[0].webhooks = vec![only_lobby, only_orders];
    });
    let mut client = WsClient::connect(server.addr);
    for channel in ["shop-orders", "lobby-x", "other"] {
        client.subscribe(channel);
    }
    // Sent last, so that once it has arrived the other two were sent or filtered.
    client.subscribe("lobby-orders");
    let timeout = Duration::from_secs(5);
    for (receiver, channel) in [
        (&lobby, "lobby-x"),
        (&lobby, "lobby-orders"),
        (&orders, "shop-orders"),
        (&orders, "lobby-orders"),
    ] {
        let got = receiver.wait_for("channel_occupied", channel, timeout);
        assert!(got.is_some(), "{channel} reaches its endpoint");
    }
    assert_eq!(lobby.count("channel_occupied", "shop-orders"), 0);
    assert_eq!(orders.count("channel_occupied", "lobby-x"), 0);
    for receiver in [&lobby, &orders] {
        assert_eq!(receiver.count("channel_occupied", "other"), 0);
    }
    let received = lobby.received.lock().unwrap();
    assert!(
        received
            .iter()
            .all(|r| r.header("Authorization") == Some("Bearer hook-token"))
    );
    assert!(
        received
            .iter()
            .all(|r| r.header("X-Pusher-Key") == Some(KEY))
    );
    let received = orders.received.lock().unwrap();
    assert!(received.iter().all(|r| r.header("Authorization").is_none()));
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
