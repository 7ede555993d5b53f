//! `[apps.redis_broadcast]` against a real `redis-server`: what Laravel's Redis broadcaster
//! publishes reaches Pusher subscribers as an HTTP API publish would, `socket` leaves that
//! socket out, invalid payloads are counted without breaking the link, and the link comes
//! back after Redis restarts.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringcast::config::RedisTarget;
use ringcast::core::auth::{hmac_key, sign_channel};
use ringcast::core::options::RedisBroadcast;
use serde_json::{Value, json};
use support::{KEY, RedisServer, SECRET, TestServer, WsClient, http, redis_cmd};

const PREFIX: &str = "laravel_database_";
const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server`, and a broker of two shards subscribed to it, with a client
/// subscribed to `news`.
fn started() -> (RedisServer, TestServer, WsClient) {
    let redis = RedisServer::start();
    let server = TestServer::start_with(2, |config| {
        config.apps[0].redis_broadcast = Some(broadcast_from(&redis, ""));
    });
    wait_until_subscribed(&redis);
    let mut client = WsClient::connect(server.addr);
    client.subscribe("news");
    (redis, server, client)
}

/// `[apps.redis_broadcast]` for `redis`, with `credentials` (`user:password@`) in the URL.
fn broadcast_from(redis: &RedisServer, credentials: &str) -> RedisBroadcast {
    let url = redis
        .url()
        .replace("redis://", &format!("redis://{credentials}"));
    RedisBroadcast {
        url: RedisTarget::parse(&url).unwrap(),
        prefix: PREFIX.into(),
        channels: "*".into(),
    }
}

/// Waits until the broker's pattern subscription is in place on `redis`.
fn wait_until_subscribed(redis: &RedisServer) {
    let deadline = Instant::now() + WAIT;
    while redis_cmd(redis.port, &["PUBSUB", "NUMPAT"]) != ":1\r\n" {
        assert!(Instant::now() < deadline, "the broker never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `PUBLISH {PREFIX}{channel} {payload}`, as Laravel's `RedisBroadcaster` does; `true` when
/// a subscriber (the broker) received it.
fn publish(redis: &RedisServer, channel: &str, payload: &str) -> bool {
    let reply = redis_cmd(
        redis.port,
        &["PUBLISH", &format!("{PREFIX}{channel}"), payload],
    );
    reply == ":1\r\n"
}

fn laravel(event: &str, data: &Value, socket: Option<&str>) -> String {
    json!({"event": event, "data": data, "socket": socket}).to_string()
}

fn subscribe_private(client: &mut WsClient, channel: &str) {
    let auth = sign_channel(KEY, &hmac_key(SECRET), &client.socket_id, channel, None);
    client.send(&json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}));
    let reply = client.recv().expect("subscription reply");
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
}

/// The next message, which must arrive.
fn next(client: &mut WsClient) -> Value {
    client.recv().expect("a message within the read timeout")
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http(addr, "GET", "/metrics", "");
    let text = body.as_str().unwrap_or_default().to_owned();
    let line = format!("{name}{{app=\"{}\"}} ", support::APP_ID);
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {line} in /metrics:\n{text}"))
}

/// `ringcast_redis_broadcast_messages_total` and `..._invalid_total`.
fn delivered_and_invalid(addr: SocketAddr) -> (u64, u64) {
    (
        metric(addr, "ringcast_redis_broadcast_messages_total"),
        metric(addr, "ringcast_redis_broadcast_invalid_total"),
    )
}

#[test]
fn a_laravel_broadcast_reaches_public_and_private_subscribers_as_an_api_publish_would() {
    let (redis, server, mut news) = started();
    let mut orders = WsClient::connect(server.addr);
    subscribe_private(&mut orders, "private-orders.1");

    let payload = r#"{"event":"App\\Events\\Sent","data":{"id":7},"socket":null}"#;
    assert!(publish(&redis, "news", payload));
    assert_eq!(
        next(&mut news),
        json!({"event": "App\\Events\\Sent", "channel": "news", "data": "{\"id\":7}"})
    );
    assert!(publish(&redis, "private-orders.1", payload));
    assert_eq!(
        next(&mut orders),
        json!({"event": "App\\Events\\Sent", "channel": "private-orders.1", "data": "{\"id\":7}"})
    );
    // Data that is already a string is passed as it is.
    let text = laravel("Shipped", &json!("on its way"), None);
    assert!(publish(&redis, "news", &text));
    assert_eq!(next(&mut news)["data"], "on its way");
    // A cache channel keeps it for later subscribers, as it keeps an API publish.
    assert!(publish(&redis, "cache-news", payload));
    // Redis has it once PUBLISH answers; the broker, once it has counted it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while delivered_and_invalid(server.addr).0 < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut later = WsClient::connect(server.addr);
    later.subscribe("cache-news");
    assert_eq!(
        next(&mut later),
        json!({"event": "App\\Events\\Sent", "channel": "cache-news", "data": "{\"id\":7}"})
    );
    assert_eq!(delivered_and_invalid(server.addr), (4, 0));
}

#[test]
fn the_socket_laravel_names_is_left_out() {
    let (redis, server, mut sender) = started();
    let mut other = WsClient::connect(server.addr);
    other.subscribe("news");

    let to_others = laravel("Typed", &json!({"n": 1}), Some(&sender.socket_id));
    assert!(publish(&redis, "news", &to_others));
    assert_eq!(next(&mut other)["event"], "Typed");
    // The sender's next message is the event after, not the one that left it out.
    assert!(publish(&redis, "news", &laravel("Next", &json!({}), None)));
    assert_eq!(next(&mut sender)["event"], "Next");
    assert_eq!(next(&mut other)["event"], "Next");
}

#[test]
fn invalid_payloads_are_counted_and_the_next_valid_one_still_arrives() {
    let (redis, server, mut client) = started();

    let oversized = laravel("Big", &json!({"text": "x".repeat(10_240)}), None);
    for invalid in [
        "not json",
        r#"{"data":{"id":1}}"#,
        r#"{"event":"pusher:ping","data":{}}"#,
        r#"{"event":"e","data":{},"socket":"not-a-socket"}"#,
        oversized.as_str(),
    ] {
        assert!(publish(&redis, "news", invalid));
    }
    assert!(publish(
        &redis,
        "bad channel",
        &laravel("e", &json!({}), None)
    ));
    assert!(publish(
        &redis,
        "news",
        &laravel("Valid", &json!({"ok": true}), None)
    ));
    assert_eq!(
        next(&mut client),
        json!({"event": "Valid", "channel": "news", "data": "{\"ok\":true}"})
    );
    assert_eq!(delivered_and_invalid(server.addr), (1, 6));
}

#[test]
fn the_link_survives_a_redis_restart() {
    let (mut redis, server, mut client) = started();
    assert!(publish(
        &redis,
        "news",
        &laravel("Before", &json!({}), None)
    ));
    assert_eq!(next(&mut client)["event"], "Before");
    assert_eq!(
        metric(server.addr, "ringcast_redis_broadcast_reconnects_total"),
        0
    );

    redis.start_again();
    wait_until_subscribed(&redis);
    assert!(publish(&redis, "news", &laravel("After", &json!({}), None)));
    assert_eq!(next(&mut client)["event"], "After");
    assert!(metric(server.addr, "ringcast_redis_broadcast_reconnects_total") >= 1);
}

#[test]
fn a_broadcast_reaches_the_whole_cluster_once() {
    let redis = RedisServer::start();
    let cluster = |config: &mut ringcast::config::Config| {
        config.server.cluster = Some(ringcast::config::ClusterConfig {
            redis: RedisTarget::parse(&redis.url()).unwrap(),
            prefix: "ringcast".into(),
            node_timeout: Duration::from_secs(3),
        });
    };
    let subscribing = TestServer::start_with(2, |config| {
        cluster(config);
        config.apps[0].redis_broadcast = Some(broadcast_from(&redis, ""));
    });
    let other = TestServer::start_with(2, cluster);
    for node in [&subscribing, &other] {
        let deadline = Instant::now() + WAIT;
        while http(node.addr, "GET", "/up", "").1["health"] != "ok" {
            assert!(Instant::now() < deadline, "a node never synchronized");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    wait_until_subscribed(&redis);
    let mut here = WsClient::connect(subscribing.addr);
    here.subscribe("news");
    let mut there = WsClient::connect(other.addr);
    there.subscribe("news");

    for event in ["First", "Second"] {
        assert!(publish(&redis, "news", &laravel(event, &json!({}), None)));
    }
    for client in [&mut here, &mut there] {
        assert_eq!(next(client)["event"], "First");
        assert_eq!(next(client)["event"], "Second");
    }
}

#[test]
fn credentials_in_the_url_are_sent_and_a_wrong_password_is_retried() {
    let redis = RedisServer::start();
    let acl = [
        "ACL", "SETUSER", "laravel", "on", ">secret", "~*", "&*", "+@all",
    ];
    assert_eq!(redis_cmd(redis.port, &acl), "+OK\r\n");
    let right = TestServer::start_with(1, |config| {
        config.apps[0].redis_broadcast = Some(broadcast_from(&redis, "laravel:secret@"));
    });
    wait_until_subscribed(&redis);
    let mut client = WsClient::connect(right.addr);
    client.subscribe("news");
    assert!(publish(
        &redis,
        "news",
        &laravel("Authenticated", &json!({}), None)
    ));
    assert_eq!(next(&mut client)["event"], "Authenticated");
    right.shutdown();

    let wrong = TestServer::start_with(1, |config| {
        config.apps[0].redis_broadcast = Some(broadcast_from(&redis, "laravel:wrong@"));
    });
    let deadline = Instant::now() + WAIT;
    while metric(wrong.addr, "ringcast_redis_broadcast_reconnects_total") < 2 {
        assert!(
            Instant::now() < deadline,
            "a refused subscription was not retried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(redis_cmd(redis.port, &["PUBSUB", "NUMPAT"]), ":0\r\n");
}
