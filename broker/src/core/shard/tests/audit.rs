//! What the audit log records.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::harness::*;
use crate::core::shard::*;
use crate::core::wire::Wire;
use ringcast_shared::{AuditDecision, AuditKind};

#[test]
fn authorization_decisions_are_audited_with_rule_and_subject() {
    let mut cluster = Cluster::with(1, with_policies);
    let a = cluster.connect(0);
    cluster.audit();
    cluster.subscribe(a, "public-news");
    assert!(
        cluster.audit().is_empty(),
        "public channels involve no decision"
    );
    cluster.subscribe(a, "private-x");
    cluster.subscribe_private(a, "private-x");
    cluster.signin(a, r#"{"id":"alice"}"#);
    cluster.subscribe_private(a, "private-user.bob");
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [
            (
                "subscribe".into(),
                AuditDecision::Deny,
                Some("signature".into())
            ),
            (
                "subscribe".into(),
                AuditDecision::Allow,
                Some("signature".into())
            ),
            (
                "signin".into(),
                AuditDecision::Allow,
                Some("signature".into())
            ),
            (
                "subscribe".into(),
                AuditDecision::Deny,
                Some("personal".into())
            ),
        ]
    );
    let denied = &records[3];
    assert_eq!(denied.user.as_deref(), Some("alice"));
    assert_eq!(denied.channel.as_deref(), Some("private-user.bob"));
    assert_eq!(denied.remote_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        denied.socket.as_deref(),
        Some(a.socket_id.to_string().as_str())
    );
    assert!(records.iter().all(|r| r.app == "100001"));
}

#[test]
fn security_events_are_audited() {
    let mut cluster = Cluster::with(1, |c| {
        c.apps[0].allowed_origins = vec!["https://app.example.com".parse().unwrap()];
        c.apps[0].client_events_per_second = 1;
    });
    let request = ConnectRequest {
        wire: Wire::Pusher,
        path: "/app/test-key",
        protocol: Some("7"),
        origin: Some("https://evil.example.net"),
        remote: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        credentials: Credentials::Token(None),
        now_unix: NOW_UNIX,
        recovery_pid: None,
    };
    let now = cluster.now;
    assert!(matches!(
        cluster.shards[0].accept_websocket(&request, now),
        Accept::Refused(..)
    ));
    let a = cluster.connect(0);
    cluster.subscribe_private(a, "private-c");
    cluster.audit();
    for _ in 0..2 {
        cluster.send(
            a,
            json!({"event": "client-x", "channel": "private-c", "data": {}}),
        );
    }
    cluster.send_raw(a, &[0x81, 0x01, b'x']);
    let records = cluster.audit();
    // The first client event went out (its publish is a decision), the second was refused.
    assert_eq!(
        summary(&records[..1]),
        [(
            "publish".into(),
            AuditDecision::Allow,
            Some("client_event".into())
        )]
    );
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| r.kind == AuditKind::Security)
        .collect();
    assert_eq!(
        summary(&records),
        [
            (
                "rate_limit".into(),
                AuditDecision::Deny,
                Some("client_events".into())
            ),
            (
                "protocol".into(),
                AuditDecision::Deny,
                Some("rfc6455".into())
            ),
        ]
    );
    assert!(records.iter().all(|r| r.kind == AuditKind::Security));

    let mut cluster = Cluster::with(1, |c| {
        c.apps[0].allowed_origins = vec!["https://app.example.com".parse().unwrap()]
    });
    let now = cluster.now;
    cluster.shards[0].accept_websocket(&request, now);
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [(
            "origin".into(),
            AuditDecision::Deny,
            Some("allowed_origins".into())
        )]
    );
    assert_eq!(records[0].remote_ip.as_deref(), Some("10.1.2.3"));
}

#[test]
fn token_decisions_are_audited() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let path = format!("/app/{KEY}");
    let _ = cluster.try_connect_with_token(0, &path, Some("7"), None);
    let good = hs256(&json!({"sub": "u1", "tenant_id": "t1", "exp": NOW_UNIX + 60}));
    cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&good))
        .unwrap();
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [
            ("token".into(), AuditDecision::Deny, Some("jwt".into())),
            ("token".into(), AuditDecision::Allow, Some("jwt".into())),
        ]
    );
    assert_eq!(records[1].tenant.as_deref(), Some("t1"));
}

#[test]
fn publishes_are_audited_as_metadata_only_unless_the_app_turns_it_off() {
    let body = "secret body 4242";
    let mut cluster = Cluster::with(2, |_| {});
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe_private(a, "private-c");
    cluster.subscribe_private(b, "private-c");
    cluster.audit();
    cluster.send(
        a,
        json!({"event": "client-typing", "channel": "private-c", "data": {"text": body}}),
    );
    cluster.publish(1, "private-c", &json!(body).to_string(), None);
    assert!(!cluster.recv(b).is_empty(), "both events were delivered");
    let records = cluster.audit();
    let publishes: Vec<_> = records.iter().filter(|r| r.action == "publish").collect();
    assert_eq!(publishes.len(), 2, "{records:?}");
    let client = publishes
        .iter()
        .find(|r| r.rule.as_deref() == Some("client_event"))
        .unwrap();
    assert_eq!(client.channel.as_deref(), Some("private-c"));
    assert_eq!(
        client.socket.as_deref(),
        Some(a.socket_id.to_string().as_str())
    );
    assert!(
        client
            .reason
            .as_deref()
            .unwrap()
            .starts_with("event \"client-typing\", ")
    );
    let api = publishes
        .iter()
        .find(|r| r.rule.as_deref() == Some("http_api"))
        .unwrap();
    let size = json!(body).to_string().len();
    assert_eq!(
        api.reason.as_deref(),
        Some(format!("event \"greeting\", {size} bytes").as_str())
    );
    let stored = serde_json::to_string(&records).unwrap();
    assert!(!stored.contains(body), "{stored}");

    let mut quiet = Cluster::with(1, |c| c.apps[0].audit_publishes = false);
    let a = quiet.connect(0);
    quiet.subscribe_private(a, "private-c");
    quiet.audit();
    quiet.publish(0, "private-c", "{}", None);
    assert!(!quiet.recv(a).is_empty(), "the event was delivered");
    assert!(quiet.audit().iter().all(|r| r.action != "publish"));
}
