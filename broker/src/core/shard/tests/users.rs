//! Sign-in, server-to-user channels, terminate, watchlists.

use std::time::Duration;

use serde_json::json;

use super::harness::*;
use crate::core::ids::{AppIdx, UserId};

#[test]
fn signin_succeeds_and_echoes_the_signed_user_data() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let reply = cluster.signin(a, r#"{"id":"u1","user_info":{"n":1}}"#);
    assert_eq!(reply[0]["event"], "pusher:signin_success");
    assert_eq!(
        inner(&reply[0]),
        json!({"user_data": r#"{"id":"u1","user_info":{"n":1}}"#})
    );
}

#[test]
fn signin_with_a_bad_signature_closes_with_4009() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.send(a, json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:00"), "user_data": r#"{"id":"u"}"#}}));
    let reply = cluster.recv(a);
    assert_eq!(reply[0]["data"]["code"], 4009);
    assert_eq!(reply[1], json!({"close": 4009}));
}

#[test]
fn server_to_user_channel_is_only_for_the_signed_in_user() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let reply = cluster.subscribe(a, "#server-to-user-u1");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["status"], 403);
    cluster.signin(a, r#"{"id":"u1"}"#);
    assert!(cluster.subscribe(a, "#server-to-user-u2")[0]["event"] == "pusher:subscription_error");
    let reply = cluster.subscribe(a, "#server-to-user-u1");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    cluster.publish(1, "#server-to-user-u1", "for you", None);
    assert_eq!(cluster.recv(a)[0]["data"], "for you");
}

#[test]
fn terminate_closes_every_socket_of_the_user_on_every_shard() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    let other = cluster.connect(1);
    cluster.signin(a, r#"{"id":"kicked"}"#);
    cluster.signin(b, r#"{"id":"kicked"}"#);
    cluster.signin(other, r#"{"id":"stays"}"#);
    let now = cluster.now;
    cluster.shards[0].terminate_user(AppIdx(0), UserId::parse("kicked", 128).unwrap(), now);
    cluster.route();
    for client in [a, b] {
        let got = cluster.recv(client);
        assert_eq!(got[0]["data"]["code"], 4009);
        assert_eq!(got[1], json!({"close": 4009}));
    }
    assert!(cluster.recv(other).is_empty());
}

#[test]
fn signin_timeout_closes_anonymous_connections_only() {
    let mut cluster = Cluster::with(1, |c| {
        c.apps[0].signin_timeout = Some(Duration::from_secs(30))
    });
    let anonymous = cluster.connect(0);
    let signed = cluster.connect(0);
    cluster.signin(signed, r#"{"id":"u"}"#);
    cluster.tick(Duration::from_secs(29));
    assert!(cluster.recv(anonymous).is_empty());
    cluster.tick(Duration::from_secs(1));
    assert_eq!(cluster.recv(anonymous)[1], json!({"close": 4009}));
    assert!(cluster.recv(signed).is_empty());
}

#[test]
fn watchlist_over_the_limit_is_refused_with_4302_without_closing() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let data = json!({"id": "u", "watchlist": ids}).to_string();
    let reply = cluster.signin(a, &data);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["data"]["code"], 4302);
}

#[test]
fn watchers_hear_when_a_user_comes_online_and_goes_offline() {
    let mut cluster = Cluster::new(2);
    let watcher = cluster.connect(0);
    let reply = cluster.signin(watcher, r#"{"id":"w","watchlist":["bob","carol"]}"#);
    assert_eq!(reply.len(), 1, "nobody is online yet: {reply:?}");
    let bob1 = cluster.connect(1);
    cluster.signin(bob1, r#"{"id":"bob"}"#);
    assert_eq!(
        watchlist_event(&cluster.recv(watcher)),
        Some(json!({"events": [{"name": "online", "user_ids": ["bob"]}]}))
    );
    let bob2 = cluster.connect(0);
    cluster.signin(bob2, r#"{"id":"bob"}"#);
    assert!(
        cluster.recv(watcher).is_empty(),
        "a second socket is not news"
    );
    let now = cluster.now;
    cluster.shards[1].handle_disconnect(bob1.key, bob1.socket_id, now);
    cluster.route();
    assert!(
        cluster.recv(watcher).is_empty(),
        "bob is still online through his other socket"
    );
    cluster.shards[0].handle_disconnect(bob2.key, bob2.socket_id, now);
    cluster.route();
    assert_eq!(
        watchlist_event(&cluster.recv(watcher)),
        Some(json!({"events": [{"name": "offline", "user_ids": ["bob"]}]}))
    );
}

#[test]
fn a_new_watcher_hears_at_once_who_is_already_online() {
    let mut cluster = Cluster::new(2);
    for (shard, id) in [(0, "a"), (1, "b")] {
        let client = cluster.connect(shard);
        cluster.signin(client, &format!(r#"{{"id":"{id}"}}"#));
    }
    let watcher = cluster.connect(1);
    let reply = cluster.signin(watcher, r#"{"id":"w","watchlist":["a","b","nobody"]}"#);
    let mut online: Vec<String> = reply
        .iter()
        .filter(|f| f["event"] == "pusher_internal:watchlist_events")
        .flat_map(|f| {
            inner(f)["events"][0]["user_ids"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    online.sort();
    assert_eq!(online, ["a", "b"]);
}

#[test]
fn a_watcher_that_left_is_no_longer_told() {
    let mut cluster = Cluster::new(1);
    let watcher = cluster.connect(0);
    cluster.signin(watcher, r#"{"id":"w","watchlist":["bob"]}"#);
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(watcher.key, watcher.socket_id, now);
    // The key is reused by a newcomer, who must not receive the old watcher's events.
    let newcomer = cluster.connect(0);
    assert_eq!(newcomer.key, watcher.key);
    let bob = cluster.connect(0);
    cluster.signin(bob, r#"{"id":"bob"}"#);
    assert!(cluster.recv(newcomer).is_empty());
}
