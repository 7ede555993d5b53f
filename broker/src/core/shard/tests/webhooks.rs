//! Webhook events and their delays.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;

#[test]
fn apps_without_webhooks_produce_none() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    cluster.subscribe(a, "quiet");
    assert!(cluster.webhooks().is_empty());
}

#[test]
fn channel_occupied_once_and_vacated_after_the_delay() {
    let mut cluster = Cluster::with(2, with_webhooks);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.subscribe(b, "room");
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_occupied", "channel": "room"})]
    );
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    );
    cluster.send(
        b,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    );
    cluster.tick(Duration::from_secs(2));
    assert!(cluster.webhooks().is_empty());
    cluster.tick(Duration::from_secs(1));
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_vacated", "channel": "room"})]
    );
    cluster.subscribe(a, "room");
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_occupied", "channel": "room"})]
    );
}

#[test]
fn reoccupied_within_the_delay_sends_neither_vacated_nor_occupied() {
    let mut cluster = Cluster::with(1, with_webhooks);
    let a = cluster.connect(0);
    cluster.subscribe(a, "flap");
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_occupied", "channel": "flap"})]
    );
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "flap"}}),
    );
    cluster.tick(Duration::from_secs(1));
    cluster.subscribe(a, "flap");
    cluster.tick(Duration::from_secs(5));
    assert!(cluster.webhooks().is_empty());
}

#[test]
fn member_webhooks_are_per_user_and_removal_waits_for_the_delay() {
    let mut cluster = Cluster::with(2, with_webhooks);
    let a1 = cluster.connect(0);
    let a2 = cluster.connect(1);
    cluster.join_presence(a1, "presence-m", "alice");
    cluster.join_presence(a2, "presence-m", "alice");
    let hooks = cluster.webhooks();
    assert!(
        hooks.contains(
            &json!({"name": "member_added", "channel": "presence-m", "user_id": "alice"})
        )
    );
    assert_eq!(
        hooks.iter().filter(|h| h["name"] == "member_added").count(),
        1
    );
    cluster.send(
        a1,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-m"}}),
    );
    cluster.send(
        a2,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-m"}}),
    );
    cluster.tick(Duration::from_secs(2));
    assert!(cluster.webhooks().is_empty());
    cluster.tick(Duration::from_secs(1));
    let hooks = cluster.webhooks();
    assert!(
        hooks.contains(
            &json!({"name": "member_removed", "channel": "presence-m", "user_id": "alice"})
        )
    );
    assert!(hooks.contains(&json!({"name": "channel_vacated", "channel": "presence-m"})));
}

#[test]
fn a_user_back_within_the_delay_sends_neither_removed_nor_added() {
    let mut cluster = Cluster::with(1, with_webhooks);
    let stay = cluster.connect(0);
    let a = cluster.connect(0);
    cluster.join_presence(stay, "presence-r", "bob");
    cluster.join_presence(a, "presence-r", "alice");
    assert_eq!(
        cluster.webhooks(),
        [
            json!({"name": "channel_occupied", "channel": "presence-r"}),
            json!({"name": "member_added", "channel": "presence-r", "user_id": "bob"}),
            json!({"name": "member_added", "channel": "presence-r", "user_id": "alice"}),
        ]
    );
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-r"}}),
    );
    cluster.tick(Duration::from_secs(1));
    cluster.join_presence(a, "presence-r", "alice");
    cluster.tick(Duration::from_secs(5));
    assert!(cluster.webhooks().is_empty());
}

#[test]
fn client_event_and_cache_miss_webhooks() {
    let mut cluster = Cluster::with(1, with_webhooks);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.join_presence(a, "presence-c", "alice");
    cluster.join_presence(b, "presence-c", "bob");
    cluster.webhooks();
    cluster.send(
        a,
        json!({"event": "client-typing", "channel": "presence-c", "data": {"on": true}}),
    );
    assert_eq!(
        cluster.webhooks(),
        [
            json!({"name": "client_event", "channel": "presence-c", "event": "client-typing",
                "data": "{\"on\":true}", "socket_id": a.socket_id.to_string(), "user_id": "alice"})
        ]
    );
    cluster.subscribe(a, "cache-empty");
    let hooks = cluster.webhooks();
    assert!(
        hooks.contains(&json!({"name": "cache_miss", "channel": "cache-empty"})),
        "{hooks:?}"
    );
}

#[test]
fn subscription_count_webhooks_follow_the_count() {
    let mut cluster = Cluster::with(2, with_webhooks);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe(a, "counted");
    cluster.subscribe(b, "counted");
    let mut out = Vec::new();
    for shard in &mut cluster.shards {
        shard.take_webhooks(&mut out);
    }
    let counts: Vec<Value> = out
        .iter()
        .map(|(_, e)| e.to_json())
        .filter(|e| e["name"] == "subscription_count")
        .map(|e| e["subscription_count"].clone())
        .collect();
    assert_eq!(counts, [json!(1), json!(2)]);
}

#[test]
fn subscription_count_events_are_opt_in_and_reach_every_subscriber() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    cluster.subscribe(a, "plain");
    let b = cluster.connect(1);
    cluster.subscribe(b, "plain");
    assert!(cluster.recv(a).is_empty());

    let mut cluster = Cluster::with(2, |c| c.apps[0].subscription_count_events = true);
    let a = cluster.connect(0);
    let reply = cluster.subscribe(a, "counted");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(reply[1]["event"], "pusher_internal:subscription_count");
    assert_eq!(inner(&reply[1]), json!({"subscription_count": 1}));
    let b = cluster.connect(1);
    let reply = cluster.subscribe(b, "counted");
    assert_eq!(inner(&reply[1]), json!({"subscription_count": 2}));
    assert_eq!(inner(&cluster.recv(a)[0]), json!({"subscription_count": 2}));
    cluster.send(
        b,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "counted"}}),
    );
    assert_eq!(inner(&cluster.recv(a)[0]), json!({"subscription_count": 1}));
    // Presence channels report members instead.
    cluster.join_presence(a, "presence-p", "u");
    assert!(cluster.recv(a).is_empty());
}
