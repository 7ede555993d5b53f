//! Rate limits per IP, per user and per connection.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::json;

use ringcast_shared::{AuditDecision, AuditKind};

use super::harness::*;
use crate::core::wire::Wire;

#[test]
fn connection_attempts_per_ip_are_limited_per_minute() {
    let mut cluster = Cluster::with(2, with_rate_limits);
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let path = format!("/app/{KEY}");
    for shard in [0, 1, 0] {
        assert!(
            cluster.shards[shard]
                .connection_attempt(Wire::Pusher, &path, ip, cluster.now)
                .is_ok()
        );
    }
    // The limit is per server, not per shard.
    let wait = cluster.shards[1]
        .connection_attempt(Wire::Pusher, &path, ip, cluster.now)
        .unwrap_err();
    assert_eq!(wait, Duration::from_secs(20));
    assert!(
        cluster.shards[1]
            .connection_attempt(Wire::Pusher, &path, other, cluster.now)
            .is_ok()
    );
    assert!(
        cluster.shards[0]
            .connection_attempt(
                Wire::Pusher,
                &path,
                ip,
                cluster.now + Duration::from_secs(20)
            )
            .is_ok()
    );
    // Apps without rate limits, and unknown keys, are not limited here.
    assert!(
        cluster.shards[0]
            .connection_attempt(Wire::Pusher, "/app/unknown", ip, cluster.now)
            .is_ok()
    );
}

#[test]
fn client_events_per_user_are_limited_across_the_users_sockets() {
    let mut cluster = Cluster::with(2, with_rate_limits);
    let tab1 = cluster.connect(0);
    let tab2 = cluster.connect(1);
    let listener = cluster.connect(0);
    for (client, user) in [(tab1, "same"), (tab2, "same"), (listener, "listener")] {
        cluster.join_presence(client, "presence-chat", user);
    }
    cluster.recv(listener);
    for tab in [tab1, tab2, tab1] {
        cluster.send(
            tab,
            json!({"event": "client-x", "channel": "presence-chat", "data": {}}),
        );
    }
    assert_eq!(cluster.recv(listener).len(), 3);
    cluster.send(
        tab2,
        json!({"event": "client-x", "channel": "presence-chat", "data": {}}),
    );
    assert_eq!(
        cluster
            .recv(tab2)
            .iter()
            .filter(|f| f["data"]["code"] == 4301)
            .count(),
        1
    );
    assert!(cluster.recv(listener).is_empty());
}

#[test]
fn rate_limits_cap_subscriptions_per_connection() {
    let mut cluster = Cluster::with(1, with_rate_limits);
    let a = cluster.connect(0);
    cluster.subscribe(a, "one");
    cluster.subscribe(a, "two");
    let reply = cluster.subscribe(a, "three");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["status"], 429);
    // A security event, counted as a rate-limit hit like every other limit.
    let records = cluster.audit();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.decision == AuditDecision::Deny)
        .collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0].kind, AuditKind::Security);
    assert_eq!(refused[0].action, "rate_limit");
    assert_eq!(refused[0].channel.as_deref(), Some("three"));
    assert_eq!(
        refused[0].rule.as_deref(),
        Some("subscriptions_per_connection")
    );
    let counted = cluster.shards[0]
        .counters()
        .rate_limited
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted, 1);
}
