//! Publishes and client events: fan-out, exclusion, limits, slow consumers, cache channels.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;
use crate::core::options::ClientEvents;
use crate::core::shard::*;

#[test]
fn public_subscribe_succeeds_and_receives_publishes_from_any_shard() {
    let mut cluster = Cluster::new(2);
    let client = cluster.connect(1);
    let reply = cluster.subscribe(client, "news");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(reply[0]["channel"], "news");
    let confirmation = cluster.publish(0, "news", "hello", None);
    let got = cluster.recv(client);
    assert_eq!(
        got,
        [json!({"event": "greeting", "channel": "news", "data": "hello"})]
    );
    assert_eq!(confirmation, None, "a single node has nothing to confirm");
}

#[test]
fn subscribers_on_both_shards_receive_each_publish_once_in_order() {
    for home in 0..2 {
        let mut cluster = Cluster::new(2);
        let channel = channel_homed_on(home, "orders-");
        let a = cluster.connect(0);
        let b = cluster.connect(1);
        cluster.subscribe(a, &channel);
        cluster.subscribe(b, &channel);
        for i in 0..5 {
            cluster.publish(i % 2, &channel, &i.to_string(), None);
        }
        for client in [a, b] {
            let data: Vec<Value> = cluster
                .recv(client)
                .iter()
                .map(|v| v["data"].clone())
                .collect();
            assert_eq!(data, ["0", "1", "2", "3", "4"], "home {home}");
        }
    }
}

#[test]
fn publish_reuses_one_frame_buffer_for_every_subscriber() {
    let mut cluster = Cluster::new(1);
    let clients: Vec<Client> = (0..3).map(|_| cluster.connect(0)).collect();
    for &c in &clients {
        cluster.subscribe(c, "fan");
    }
    cluster.publish(0, "fan", "x", None);
    let mut pointers = Vec::new();
    for &c in &clients {
        let mut frames = Vec::new();
        cluster.shards[0].take_output(c.key, c.socket_id, &mut frames, usize::MAX, usize::MAX);
        assert_eq!(frames.len(), 1);
        pointers.push(frames[0].as_ptr());
    }
    assert!(pointers.windows(2).all(|w| w[0] == w[1]), "{pointers:?}");
}

#[test]
fn events_carry_their_acceptance_time_to_the_writer_across_shards() {
    let mut cluster = Cluster::new(2);
    let near = cluster.connect(0);
    let far = cluster.connect(1);
    for c in [near, far] {
        cluster.subscribe(c, "timed");
    }
    let accepted = cluster.now;
    cluster.publish(0, "timed", "x", None);
    cluster.tick(Duration::from_millis(5));
    cluster.publish(1, "timed", "y", None);
    for c in [near, far] {
        let mut ready = Vec::new();
        cluster.shards[c.shard].take_ready(&mut ready);
        let mut frames = Vec::new();
        let taken = cluster.shards[c.shard].take_output(
            c.key,
            c.socket_id,
            &mut frames,
            usize::MAX,
            usize::MAX,
        );
        // Both events, stamped with the oldest one's acceptance, on either shard.
        assert_eq!(frames.len(), 2);
        assert_eq!(taken.events, 2);
        assert_eq!(taken.oldest_event, Some(accepted));
        assert_eq!(taken.state, OutputState::Open);
    }
    // Replies are not events.
    let late = cluster.connect(0);
    let mut ready = Vec::new();
    cluster.shards[0].take_ready(&mut ready);
    let mut frames = Vec::new();
    let taken = cluster.shards[0].take_output(
        late.key,
        late.socket_id,
        &mut frames,
        usize::MAX,
        usize::MAX,
    );
    assert_eq!((taken.events, taken.oldest_event), (0, None));
}

#[test]
fn socket_id_exclusion_skips_only_that_socket() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.subscribe(b, "room");
    cluster.publish(0, "room", "x", Some(a.socket_id));
    assert!(cluster.recv(a).is_empty());
    assert_eq!(cluster.recv(b).len(), 1);
}

#[test]
fn client_events_reach_others_but_are_not_echoed() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe_private(a, "private-chat");
    cluster.subscribe_private(b, "private-chat");
    cluster.send(
        a,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"on": true}}),
    );
    assert!(cluster.recv(a).is_empty());
    assert_eq!(
        cluster.recv(b),
        [json!({"event": "client-typing", "channel": "private-chat", "data": {"on": true}})]
    );
}

#[test]
fn presence_client_events_carry_the_senders_user_id() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.join_presence(a, "presence-chat", "alice");
    cluster.join_presence(b, "presence-chat", "bob");
    cluster.recv(a);
    cluster.send(
        a,
        json!({"event": "client-hi", "channel": "presence-chat", "data": "yo"}),
    );
    let got = cluster.recv(b);
    assert_eq!(got[0]["user_id"], "alice");
    assert_eq!(got[0]["data"], "yo");
}

#[test]
fn client_events_are_refused_on_public_channels_and_when_not_subscribed() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.subscribe(a, "public");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "public", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-other", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
}

#[test]
fn client_events_mode_members_only_and_disabled() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].client_events = ClientEvents::MembersOnly);
    let a = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
    cluster.join_presence(a, "presence-x", "u");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "presence-x", "data": {}}),
    );
    assert!(cluster.recv(a).is_empty());

    let mut cluster = Cluster::with(1, |c| c.apps[0].client_events = ClientEvents::Disabled);
    let a = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
}

#[test]
fn client_event_rate_limit_allows_the_limit_then_4301_without_closing() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.subscribe_private(b, "private-x");
    for _ in 0..10 {
        cluster.send(
            a,
            json!({"event": "client-x", "channel": "private-x", "data": {}}),
        );
    }
    assert!(cluster.recv(a).is_empty());
    assert_eq!(cluster.recv(b).len(), 10);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    let got = cluster.recv(a);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"]["code"], 4301);
    assert!(cluster.recv(b).is_empty());
    // A second later the bucket has refilled.
    cluster.now += Duration::from_secs(1);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    assert_eq!(cluster.recv(b).len(), 1);
}

#[test]
fn client_event_data_size_limit_is_inclusive() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_message_bytes = 100);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.subscribe_private(b, "private-x");
    // `"` + 98 + `"` = 100 bytes of JSON data.
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": "y".repeat(98)}),
    );
    assert_eq!(cluster.recv(b).len(), 1);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": "y".repeat(99)}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4306);
    assert!(cluster.recv(b).is_empty());
}

#[test]
fn a_client_event_over_max_message_bytes_gets_4306_and_the_connection_stays_open() {
    // The default limits: 10 KiB of event data, 64 KiB per WebSocket message.
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.subscribe_private(b, "private-x");
    let event = |data: String| json!({"event": "client-x", "channel": "private-x", "data": data});
    cluster.send(a, event("y".repeat(20 * 1024)));
    let refused = cluster.recv(a);
    assert_eq!(refused[0]["event"], "pusher:error");
    assert_eq!(refused[0]["data"]["code"], 4306);
    assert_eq!(refused.len(), 1, "an error, no close: {refused:?}");
    assert!(cluster.recv(b).is_empty());
    cluster.send(a, event("small".into()));
    assert_eq!(cluster.recv(b)[0]["data"], "small");
    // Over the WebSocket message limit the connection is closed, as RFC 6455 says.
    cluster.send(a, event("y".repeat(64 * 1024)));
    assert_eq!(cluster.recv(a), [json!({"close": 1009})]);
}

#[test]
fn slow_consumer_is_closed_with_4100_and_others_keep_receiving() {
    let mut cluster = Cluster::with(1, |c| c.server.send_buffer_bytes = 4096);
    let slow = cluster.connect(0);
    let fast = cluster.connect(0);
    cluster.subscribe(slow, "feed");
    cluster.subscribe(fast, "feed");
    let payload = "z".repeat(1000);
    let mut fast_got = 0;
    for _ in 0..10 {
        cluster.publish(0, "feed", &payload, None);
        fast_got += cluster.recv(fast).len();
    }
    assert_eq!(fast_got, 10);
    let got = cluster.recv(slow);
    let last_two = &got[got.len() - 2..];
    assert_eq!(last_two[0]["data"]["code"], 4100);
    assert_eq!(last_two[1], json!({"close": 4100}));
    assert_eq!(
        cluster.shards[0]
            .counters()
            .slow_consumers_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn cache_channel_replays_the_last_event_or_reports_a_miss() {
    let mut cluster = Cluster::new(2);
    let early = cluster.connect(0);
    let reply = cluster.subscribe(early, "cache-prices");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        reply[1],
        json!({"event": "pusher:cache_miss", "channel": "cache-prices"})
    );
    cluster.publish(1, "cache-prices", "first", None);
    cluster.publish(1, "cache-prices", "second", None);
    assert_eq!(cluster.recv(early).len(), 2);
    let late = cluster.connect(1);
    let reply = cluster.subscribe(late, "cache-prices");
    assert_eq!(reply[1]["data"], "second");
}

#[test]
fn cache_is_kept_without_subscribers_until_its_ttl() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].cache_ttl = Duration::from_secs(60));
    cluster.publish(0, "private-cache-x", "kept", None);
    cluster.tick(Duration::from_secs(59));
    let a = cluster.connect(0);
    let reply = cluster.subscribe_private(a, "private-cache-x");
    assert_eq!(reply[1]["data"], "kept");
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-cache-x"}}),
    );
    cluster.tick(Duration::from_secs(1));
    let reply = cluster.subscribe_private(a, "private-cache-x");
    assert_eq!(reply[1]["event"], "pusher:cache_miss");
}

#[test]
fn presence_member_events_do_not_replace_the_cached_event() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.join_presence(a, "presence-cache-room", "a");
    cluster.publish(0, "presence-cache-room", "news", None);
    let b = cluster.connect(0);
    cluster.join_presence(b, "presence-cache-room", "b");
    let c = cluster.connect(0);
    let reply = cluster.join_presence(c, "presence-cache-room", "c");
    assert_eq!(reply[1]["data"], "news");
}
