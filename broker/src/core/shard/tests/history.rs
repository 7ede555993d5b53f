//! History channels: ids and order, the bounds, and replay to a returning identified user.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;
use crate::core::history::{HistoryPage, PageEvent};
use crate::core::ids::AppIdx;
use crate::core::options::{Config, HistoryConfig};
use crate::core::shard::*;

fn with_history(tweak: impl FnOnce(&mut HistoryConfig)) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        let mut history = HistoryConfig {
            channels: vec!["private-chat.*".into(), "presence-room.*".into()],
            ..HistoryConfig::default()
        };
        tweak(&mut history);
        c.apps[0].history = Some(history);
    }
}

fn history(
    cluster: &mut Cluster,
    shard: ShardId,
    channel: &str,
    since: Option<u64>,
) -> HistoryPage {
    let query = Query::History {
        app: AppIdx(0),
        channel: name(channel),
        since,
        limit: 100,
    };
    match cluster.query(shard, query) {
        Answer::History(page) => page,
        other => panic!("{other:?}"),
    }
}

fn ids(page: &HistoryPage) -> Vec<u64> {
    page.events.iter().map(|e| e.id).collect()
}

/// A connection on `shard` signed in as `user`, subscribed to `channel`; what its
/// subscription brought (confirmation first).
fn signed_in_subscriber(
    cluster: &mut Cluster,
    shard: ShardId,
    user: &str,
    channel: &str,
) -> (Client, Vec<Value>) {
    let client = cluster.connect(shard);
    let reply = cluster.signin(client, &json!({"id": user}).to_string());
    assert_eq!(reply[0]["event"], "pusher:signin_success");
    let got = cluster.subscribe_private(client, channel);
    assert_eq!(got[0]["event"], "pusher_internal:subscription_succeeded");
    (client, got)
}

/// The client's TCP connection ends without a close (its shard sees the socket go).
fn lose_connection(cluster: &mut Cluster, client: Client) {
    let now = cluster.now;
    cluster.shards[client.shard].handle_disconnect(client.key, client.socket_id, now);
    cluster.route();
}

fn publish_n(cluster: &mut Cluster, channel: &str, from: usize, to: usize) {
    for i in from..=to {
        cluster.publish(0, channel, &format!("m{i}"), None);
    }
}

/// The data strings of the events in `frames` named `greeting`.
fn greetings(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["event"] == "greeting")
        .map(|f| f["data"].as_str().unwrap().to_owned())
        .collect()
}

fn names(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["event"].as_str().unwrap())
        .collect()
}

#[test]
fn events_on_a_history_channel_get_increasing_ids_in_publish_order() {
    let mut cluster = Cluster::with(2, with_history(|_| {}));
    publish_n(&mut cluster, "private-chat.1", 1, 3);
    let page = history(&mut cluster, 1, "private-chat.1", None);
    assert_eq!(
        page.events[0],
        PageEvent {
            id: 1,
            event: "greeting".into(),
            data: "\"m1\"".into(),
            published_at_ms: NOW_UNIX * 1000,
        }
    );
    assert_eq!(ids(&page), [1, 2, 3]);
    assert!(!page.truncated);
    assert_eq!(
        ids(&history(&mut cluster, 0, "private-chat.1", Some(1))),
        [2, 3]
    );
}

#[test]
fn a_channel_no_pattern_covers_keeps_nothing() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let (other, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-other.1");
    publish_n(&mut cluster, "private-other.1", 1, 2);
    let live = cluster.recv(other);
    assert_eq!(greetings(&live), ["m1", "m2"]);
    assert!(
        live[0].get("id").is_none(),
        "no id outside history: {}",
        live[0]
    );
    publish_n(&mut cluster, "private-chat.1.x", 1, 2);
    assert_eq!(
        history(&mut cluster, 0, "private-other.1", None),
        HistoryPage::default()
    );
    assert_eq!(
        history(&mut cluster, 0, "private-chat.1.x", None),
        HistoryPage::default()
    );
}

#[test]
fn a_channel_keeps_max_events_and_says_when_older_ones_were_evicted() {
    let mut cluster = Cluster::with(1, with_history(|h| h.max_events = 3));
    publish_n(&mut cluster, "private-chat.1", 1, 3);
    let page = history(&mut cluster, 0, "private-chat.1", None);
    assert_eq!(ids(&page), [1, 2, 3]);
    assert!(!page.truncated, "at the limit nothing is evicted");
    publish_n(&mut cluster, "private-chat.1", 4, 5);
    let page = history(&mut cluster, 0, "private-chat.1", None);
    assert_eq!(ids(&page), [3, 4, 5]);
    assert!(page.truncated);
    let page = history(&mut cluster, 0, "private-chat.1", Some(2));
    assert_eq!(ids(&page), [3, 4, 5]);
    assert!(!page.truncated, "since 2 misses nothing");
    let counters = &cluster.shards[0].counters().app(AppIdx(0)).history;
    assert_eq!(
        counters
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(
        counters.events.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

fn history_bytes(cluster: &Cluster) -> i64 {
    let counters = &cluster.shards[0].counters().app(AppIdx(0)).history;
    counters.bytes.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn over_the_byte_bound_the_apps_oldest_event_goes_first() {
    // What one event of this size costs, measured on a server without a tight bound.
    let mut measure = Cluster::with(1, with_history(|_| {}));
    measure.publish(0, "private-chat.a", "m1", None);
    let one = usize::try_from(history_bytes(&measure)).unwrap();
    let mut cluster = Cluster::with(1, with_history(|h| h.max_bytes = 2 * one + one / 2));
    cluster.publish(0, "private-chat.a", "m1", None);
    cluster.tick(Duration::from_millis(10));
    cluster.publish(0, "private-chat.b", "m2", None);
    cluster.tick(Duration::from_millis(10));
    assert_eq!(history_bytes(&cluster), 2 * one as i64, "two fit");
    cluster.publish(0, "private-chat.a", "m3", None);
    let a = history(&mut cluster, 0, "private-chat.a", None);
    assert_eq!(ids(&a), [2], "a's first event was the app's oldest");
    assert!(a.truncated);
    assert_eq!(ids(&history(&mut cluster, 0, "private-chat.b", None)), [1]);
    assert_eq!(history_bytes(&cluster), 2 * one as i64);
}

#[test]
fn events_older_than_the_ttl_are_dropped() {
    let mut cluster = Cluster::with(1, with_history(|h| h.ttl = Duration::from_secs(60)));
    publish_n(&mut cluster, "private-chat.1", 1, 1);
    cluster.tick(Duration::from_secs(30));
    publish_n(&mut cluster, "private-chat.1", 2, 2);
    cluster.tick(Duration::from_secs(31));
    let page = history(&mut cluster, 0, "private-chat.1", None);
    assert_eq!(ids(&page), [2]);
    assert!(page.truncated);
    cluster.tick(Duration::from_secs(30));
    assert_eq!(
        history(&mut cluster, 0, "private-chat.1", None),
        HistoryPage::default()
    );
    publish_n(&mut cluster, "private-chat.1", 3, 3);
    let page = history(&mut cluster, 0, "private-chat.1", None);
    assert_eq!(
        ids(&page),
        [1],
        "a channel silent for a ttl is forgotten and starts again"
    );
}

#[test]
fn a_returning_user_is_replayed_exactly_the_missed_events_once() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let (first, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    publish_n(&mut cluster, "private-chat.1", 1, 2);
    let live = cluster.recv(first);
    assert_eq!(greetings(&live), ["m1", "m2"]);
    assert_eq!(
        (live[0]["id"].clone(), live[1]["id"].clone()),
        (json!(1), json!(2))
    );
    lose_connection(&mut cluster, first);
    publish_n(&mut cluster, "private-chat.1", 3, 5);
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(
        names(&got),
        [
            "pusher_internal:subscription_succeeded",
            "ringcast:replay_start",
            "greeting",
            "greeting",
            "greeting",
            "ringcast:replay_end"
        ]
    );
    assert_eq!(inner(&got[1]), json!({"count": 3, "since": 2}));
    assert_eq!(greetings(&got), ["m3", "m4", "m5"]);
    assert_eq!(inner(&got[5]), json!({"count": 3}));
    let (_, again) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(names(&again), ["pusher_internal:subscription_succeeded"]);
}

#[test]
fn a_late_subscriber_beside_an_earlier_one_departs_naming_the_last_event_it_got() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let (bob, _) = signed_in_subscriber(&mut cluster, 0, "bob", "private-chat.1");
    publish_n(&mut cluster, "private-chat.1", 1, 3);
    let (alice, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    publish_n(&mut cluster, "private-chat.1", 4, 4);
    assert_eq!(greetings(&cluster.recv(alice)), ["m4"]);
    lose_connection(&mut cluster, alice);
    publish_n(&mut cluster, "private-chat.1", 5, 6);
    assert_eq!(
        greetings(&cluster.recv(bob)),
        ["m1", "m2", "m3", "m4", "m5", "m6"]
    );
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(inner(&got[1]), json!({"count": 2, "since": 4}));
    assert_eq!(greetings(&got), ["m5", "m6"]);
}

#[test]
fn a_departure_names_the_last_event_the_connection_was_given_after_a_replay() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let (first, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    lose_connection(&mut cluster, first);
    publish_n(&mut cluster, "private-chat.1", 1, 1);
    let (second, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(greetings(&got), ["m1"]);
    lose_connection(&mut cluster, second);
    publish_n(&mut cluster, "private-chat.1", 2, 2);
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(inner(&got[1]), json!({"count": 1, "since": 1}));
    assert_eq!(greetings(&got), ["m2"]);
}

#[test]
fn nothing_is_replayed_after_the_recovery_window() {
    let mut cluster = Cluster::with(1, with_history(|h| h.recovery = Duration::from_secs(120)));
    let (first, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    lose_connection(&mut cluster, first);
    publish_n(&mut cluster, "private-chat.1", 1, 2);
    cluster.tick(Duration::from_secs(121));
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(names(&got), ["pusher_internal:subscription_succeeded"]);
    assert_eq!(
        ids(&history(&mut cluster, 0, "private-chat.1", None)),
        [1, 2]
    );
}

#[test]
fn another_user_never_gets_someone_elses_departure() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let (alice, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    lose_connection(&mut cluster, alice);
    publish_n(&mut cluster, "private-chat.1", 1, 2);
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "bob", "private-chat.1");
    assert_eq!(names(&got), ["pusher_internal:subscription_succeeded"]);
    let anonymous = cluster.connect(0);
    let got = cluster.subscribe_private(anonymous, "private-chat.1");
    assert_eq!(names(&got), ["pusher_internal:subscription_succeeded"]);
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(
        greetings(&got),
        ["m1", "m2"],
        "alice's departure is still hers"
    );
}

#[test]
fn an_unsubscribe_leaves_no_departure() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let (alice, _) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    cluster.send(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-chat.1"}}),
    );
    lose_connection(&mut cluster, alice);
    publish_n(&mut cluster, "private-chat.1", 1, 1);
    let (_, got) = signed_in_subscriber(&mut cluster, 0, "alice", "private-chat.1");
    assert_eq!(names(&got), ["pusher_internal:subscription_succeeded"]);
}

#[test]
fn a_presence_member_is_identified_by_its_user_id() {
    let mut cluster = Cluster::with(1, with_history(|_| {}));
    let member = cluster.connect(0);
    let got = cluster.join_presence(member, "presence-room.1", "carol");
    assert_eq!(got[0]["event"], "pusher_internal:subscription_succeeded");
    lose_connection(&mut cluster, member);
    publish_n(&mut cluster, "presence-room.1", 1, 1);
    let back = cluster.connect(0);
    let got = cluster.join_presence(back, "presence-room.1", "carol");
    assert_eq!(inner(&got[1]), json!({"count": 1, "since": 0}));
    assert_eq!(greetings(&got), ["m1"]);
}

#[test]
fn a_replay_reaches_a_subscriber_whose_home_is_another_shard_and_counts() {
    let mut cluster = Cluster::with(2, with_history(|_| {}));
    let channel = channel_homed_on(1, "private-chat.");
    let (first, _) = signed_in_subscriber(&mut cluster, 0, "alice", &channel);
    publish_n(&mut cluster, &channel, 1, 1);
    assert_eq!(greetings(&cluster.recv(first)), ["m1"]);
    lose_connection(&mut cluster, first);
    publish_n(&mut cluster, &channel, 2, 4);
    // The reconnect lands on the other shard, the channel's home.
    let (back, got) = signed_in_subscriber(&mut cluster, 1, "alice", &channel);
    assert_eq!(inner(&got[1]), json!({"count": 3, "since": 1}));
    assert_eq!(greetings(&got), ["m2", "m3", "m4"]);
    publish_n(&mut cluster, &channel, 5, 5);
    assert_eq!(
        greetings(&cluster.recv(back)),
        ["m5"],
        "live events follow, once"
    );
    let counters = &cluster.shards[1].counters().app(AppIdx(0)).history;
    assert_eq!(
        counters.replays.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        counters
            .replayed_events
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[test]
fn the_store_is_told_of_every_kept_and_evicted_event() {
    use crate::core::history::HistoryWrite;
    let mut cluster = Cluster::with(1, with_history(|h| h.max_events = 1));
    publish_n(&mut cluster, "private-chat.1", 1, 2);
    let mut out = Vec::new();
    cluster.shards[0].take_history(&mut out);
    let kinds: Vec<(bool, u64)> = out
        .iter()
        .map(|w| match w {
            HistoryWrite::Append { event, .. } => (true, event.id),
            HistoryWrite::Evict { through, .. } => (false, *through),
        })
        .collect();
    assert_eq!(kinds, [(true, 1), (true, 2), (false, 1)]);
}

#[test]
fn stored_events_are_kept_again_by_their_home_shard_at_start() {
    use crate::core::history::{HistoryWrite, StoredEvent};
    let mut cluster = Cluster::with(2, with_history(|_| {}));
    let channel = channel_homed_on(1, "private-chat.");
    publish_n(&mut cluster, &channel, 1, 2);
    let mut out = Vec::new();
    cluster.shards[1].take_history(&mut out);
    let stored: Vec<StoredEvent> = out
        .into_iter()
        .filter_map(|w| match w {
            HistoryWrite::Append { event, .. } => Some(event),
            HistoryWrite::Evict { .. } => None,
        })
        .collect();
    let state = state_with(2, with_history(|_| {}));
    let mut shared = Arc::into_inner(state).unwrap();
    shared.initial_history[AppIdx(0)].push((name(&channel), stored));
    let mut restarted = Cluster::from_state(2, Arc::new(shared));
    publish_n(&mut restarted, &channel, 3, 3);
    assert_eq!(ids(&history(&mut restarted, 0, &channel, None)), [1, 2, 3]);
}

#[test]
fn a_jwt_identity_is_recovered_without_a_sign_in() {
    let mut cluster = Cluster::with(1, |c| {
        with_jwt(true)(c);
        with_history(|_| {})(c);
    });
    let token = hs256(&json!({"sub": "dora", "exp": NOW_UNIX + 3600}));
    let path = format!("/app/{KEY}");
    let connect = |cluster: &mut Cluster| {
        let client = cluster
            .try_connect_with_token(0, &path, Some("7"), Some(&token))
            .unwrap();
        cluster.recv(client);
        let got = cluster.subscribe_private(client, "private-chat.9");
        (client, got)
    };
    let (first, got) = connect(&mut cluster);
    assert_eq!(names(&got), ["pusher_internal:subscription_succeeded"]);
    lose_connection(&mut cluster, first);
    publish_n(&mut cluster, "private-chat.9", 1, 1);
    let (_, got) = connect(&mut cluster);
    assert_eq!(inner(&got[1]), json!({"count": 1, "since": 0}));
    assert_eq!(greetings(&got), ["m1"]);
}
