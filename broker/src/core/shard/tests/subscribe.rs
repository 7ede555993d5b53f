//! Subscriptions: signatures, channel names, presence rosters, leaving.

use bytes::BytesMut;
use serde_json::json;

use super::harness::*;
use crate::core::auth::{hmac_key, sign_channel};
use crate::core::ids::{AppIdx, UserId};
use crate::core::shard::*;
use crate::core::ws::frame::{Opcode, encode_client_frame};

#[test]
fn unsubscribe_stops_delivery_and_gets_no_reply() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    );
    assert!(cluster.recv(a).is_empty());
    cluster.publish(0, "room", "x", None);
    assert!(cluster.recv(a).is_empty());
    assert_eq!(cluster.stats(0, "room"), ChannelStats::default());
}

#[test]
fn private_channel_needs_a_valid_signature() {
    let mut cluster = Cluster::new(2);
    let client = cluster.connect(0);
    let reply = cluster.subscribe(client, "private-a");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["channel"], "private-a");
    assert_eq!(reply[0]["data"]["status"], 401);
    assert_eq!(reply[0]["data"]["type"], "AuthError");
    // The connection stays usable.
    let reply = cluster.subscribe_private(client, "private-a");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn privateer_is_a_public_channel() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    let reply = cluster.subscribe(client, "privateer");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn invalid_channel_names_are_refused_on_that_channel_and_the_connection_stays_open() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    for bad in ["", "a b", "private-é", &"x".repeat(201)] {
        let reply = cluster.subscribe(client, bad);
        assert_eq!(reply.len(), 1, "{bad:?}: {reply:?}");
        assert_eq!(reply[0]["event"], "pusher:subscription_error", "{bad:?}");
        assert_eq!(reply[0]["channel"], bad, "named as the client sent it");
        assert_eq!(reply[0]["data"]["type"], "InvalidChannel", "{bad:?}");
        assert_eq!(reply[0]["data"]["status"], 400, "{bad:?}");
    }
    assert!(
        cluster.subscribe(client, &"x".repeat(200))[0]["event"]
            == "pusher_internal:subscription_succeeded"
    );
}

#[test]
fn presence_roster_and_member_events_are_per_user_not_per_socket() {
    let mut cluster = Cluster::new(2);
    let channel = "presence-room";
    let alice1 = cluster.connect(0);
    let reply = cluster.join_presence(alice1, channel, "alice");
    assert_eq!(
        inner(&reply[0]),
        json!({"presence": {"ids": ["alice"], "hash": {"alice": {"name": "alice"}}, "count": 1}})
    );
    let bob = cluster.connect(1);
    let reply = cluster.join_presence(bob, channel, "bob");
    assert_eq!(inner(&reply[0])["presence"]["count"], 2);
    let added = cluster.recv(alice1);
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["event"], "pusher_internal:member_added");
    assert_eq!(
        inner(&added[0]),
        json!({"user_id": "bob", "user_info": {"name": "bob"}})
    );

    // Alice's second socket: no member_added for anyone, count stays 2.
    let alice2 = cluster.connect(1);
    let reply = cluster.join_presence(alice2, channel, "alice");
    assert_eq!(inner(&reply[0])["presence"]["count"], 2);
    assert!(cluster.recv(bob).is_empty());
    assert!(cluster.recv(alice1).is_empty());

    // Alice's first socket leaves: still present through the second.
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(alice1.key, alice1.socket_id, now);
    cluster.route();
    assert!(cluster.recv(bob).is_empty());
    let answer = cluster.query(
        1,
        Query::Users {
            app: AppIdx(0),
            channel: name(channel),
        },
    );
    let Answer::Users(mut users) = answer else {
        panic!()
    };
    users.sort();
    assert_eq!(
        users.iter().map(UserId::as_str).collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    // Her last socket leaves: member_removed once.
    cluster.send(
        alice2,
        json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    );
    let removed = cluster.recv(bob);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["event"], "pusher_internal:member_removed");
    assert_eq!(inner(&removed[0]), json!({"user_id": "alice"}));
}

#[test]
fn presence_member_limit_refuses_the_next_user_with_subscription_error() {
    let mut cluster = Cluster::with(2, |c| c.apps[0].max_presence_members = 2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    let c = cluster.connect(0);
    cluster.join_presence(a, "presence-x", "a");
    cluster.join_presence(b, "presence-x", "b");
    let reply = cluster.join_presence(c, "presence-x", "c");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["channel"], "presence-x");
    assert_eq!(reply[0]["data"]["type"], "LimitReached");
    assert_eq!(reply[0]["data"]["status"], 403);
    // A refused socket may try again later once someone leaves.
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-x"}}),
    );
    let reply = cluster.join_presence(c, "presence-x", "c");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn disconnect_while_admission_is_in_flight_leaves_no_ghost() {
    let mut cluster = Cluster::new(2);
    let channel = channel_homed_on(1, "presence-g");
    let a = cluster.connect(0);
    let data = json!({"user_id": "ghost"}).to_string();
    let auth = sign_channel(KEY, &hmac_key(SECRET), a.socket_id, &channel, Some(&data));
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}});
    let frame = encode_client_frame(Opcode::Text, msg.to_string().as_bytes(), [1, 2, 3, 4], true);
    let mut buf = BytesMut::from(&frame[..]);
    let now = cluster.now;
    cluster.shards[0].handle_input(a.key, a.socket_id, &mut buf, now);
    // The subscribe request is on its way to shard 1; the socket goes away before the answer.
    cluster.shards[0].handle_disconnect(a.key, a.socket_id, now);
    cluster.route();
    assert_eq!(cluster.stats(0, &channel), ChannelStats::default());
}

#[test]
fn an_oversized_user_info_is_a_limit_refused_on_the_channel() {
    // join_presence sends {"name": user}, over a 4-byte limit.
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_user_info_bytes = 4);
    let client = cluster.connect(0);
    let reply = cluster.join_presence(client, "presence-big", "alice");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["channel"], "presence-big");
    assert_eq!(reply[0]["data"]["type"], "LimitReached");
    assert_eq!(reply[0]["data"]["status"], 413);
    assert!(
        reply[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("user_info is larger than 4 bytes")
    );
    let reply = cluster.subscribe(client, "still-open");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}
