//! Typing state (`[apps.typing]`): set, renewed, stopped, expired with its announcement,
//! cleared by leaving, and listed by the typing query and Socket.IO's `typing:get`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;
use crate::core::ids::AppIdx;
use crate::core::options::TypingConfig;
use crate::core::policy::PrefixedPattern;
use crate::core::shard::*;

fn with_typing(c: &mut crate::core::options::Config) {
    c.apps[0].typing = Some(TypingConfig {
        channels: vec![PrefixedPattern::parse("presence-chat.{id}").unwrap()],
        expire: Duration::from_secs(5),
    });
}

fn chat() -> (Cluster, Client, Client, String) {
    presence_chat(with_typing)
}

fn typing(c: &mut Cluster, client: Client, channel: &str, event: &str) {
    c.send(
        client,
        json!({"event": event, "channel": channel, "data": {"user_id": "alice"}}),
    );
}

/// Who the typing query says is typing, with when they started (Unix ms).
fn typists(c: &mut Cluster, channel: &str) -> Vec<(String, u64)> {
    let query = Query::Typing {
        app: AppIdx(0),
        channel: name(channel),
    };
    match c.query(0, query) {
        Answer::Typing(members) => members
            .into_iter()
            .map(|m| (m.user.as_str().to_owned(), m.since_unix_ms))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn typing_gauge(c: &Cluster) -> i64 {
    c.shards
        .iter()
        .map(|s| s.counters().typing_members.load(Ordering::Relaxed))
        .sum()
}

#[test]
fn client_typing_reaches_the_other_member_and_the_query_lists_the_typist() {
    let (mut c, alice, bob, channel) = chat();
    c.tick(Duration::from_millis(1500));
    typing(&mut c, alice, &channel, "client-typing");
    let got = c.recv(bob);
    assert_eq!(got[0]["event"], "client-typing");
    assert_eq!(got[0]["user_id"], "alice");
    assert_eq!(
        typists(&mut c, &channel),
        [("alice".to_owned(), NOW_UNIX * 1000 + 1500)]
    );
    assert_eq!(typing_gauge(&c), 1);
    assert!(c.recv(alice).is_empty(), "client events are not echoed");
}

#[test]
fn a_flag_not_renewed_expires_after_five_seconds_with_a_typing_stop_from_the_member() {
    let (mut c, alice, bob, channel) = chat();
    typing(&mut c, alice, &channel, "client-typing");
    c.recv(bob);
    c.tick(Duration::from_millis(4_999));
    assert_eq!(typists(&mut c, &channel).len(), 1);
    assert!(c.recv(bob).is_empty());
    c.tick(Duration::from_millis(1));
    let got = c.recv(bob);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "client-typing-stop");
    assert_eq!(got[0]["user_id"], "alice");
    assert_eq!(got[0]["data"], json!({"user_id": "alice", "expired": true}));
    let own = c.recv(alice);
    assert_eq!(
        own[0]["event"], "client-typing-stop",
        "the typist's tabs hear it too"
    );
    assert!(typists(&mut c, &channel).is_empty());
    let expired = total(&c, |s| &s.typing_expired);
    assert_eq!((expired, typing_gauge(&c)), (1, 0));
    c.tick(Duration::from_secs(10));
    assert!(c.recv(bob).is_empty(), "an expiry is announced once");
}

#[test]
fn a_renewal_keeps_the_flag_and_its_start_time() {
    let (mut c, alice, bob, channel) = chat();
    typing(&mut c, alice, &channel, "client-typing");
    c.tick(Duration::from_secs(4));
    typing(&mut c, alice, &channel, "client-typing");
    c.tick(Duration::from_secs(4));
    let got: Vec<String> = c.events(bob);
    assert_eq!(got, ["client-typing", "client-typing"]);
    assert_eq!(
        typists(&mut c, &channel),
        [("alice".to_owned(), NOW_UNIX * 1000)]
    );
    c.tick(Duration::from_secs(1));
    assert_eq!(c.events(bob), ["client-typing-stop"]);
    assert_eq!(typing_gauge(&c), 0);
}

#[test]
fn client_typing_stop_clears_the_flag_and_nothing_expires_later() {
    let (mut c, alice, bob, channel) = chat();
    typing(&mut c, alice, &channel, "client-typing");
    typing(&mut c, alice, &channel, "client-typing-stop");
    assert_eq!(c.events(bob), ["client-typing", "client-typing-stop"]);
    assert!(typists(&mut c, &channel).is_empty());
    assert_eq!(typing_gauge(&c), 0);
    c.tick(Duration::from_secs(6));
    assert!(c.recv(bob).is_empty());
}

#[test]
fn a_member_who_leaves_stops_typing_with_member_removed_alone() {
    let (mut c, alice, bob, channel) = chat();
    typing(&mut c, alice, &channel, "client-typing");
    c.recv(bob);
    c.send(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    );
    let got = c.recv(bob);
    assert_eq!(got[0]["event"], "pusher_internal:member_removed");
    assert!(typists(&mut c, &channel).is_empty());
    assert_eq!(typing_gauge(&c), 0);
    c.tick(Duration::from_secs(6));
    assert!(
        c.recv(bob).is_empty(),
        "no client-typing-stop after member_removed"
    );
}

#[test]
fn typing_on_a_channel_without_typing_state_is_only_relayed() {
    let (mut c, alice, bob, _) = chat();
    let room = "presence-room";
    c.join_presence(alice, room, "alice");
    c.join_presence(bob, room, "bob");
    c.recv(alice);
    typing(&mut c, alice, room, "client-typing");
    assert_eq!(c.events(bob), ["client-typing"]);
    assert!(typists(&mut c, room).is_empty());
    c.tick(Duration::from_secs(6));
    assert!(c.recv(bob).is_empty());
}

impl Cluster {
    /// Joins a Socket.IO client to a presence channel as `user`, signed like a Pusher one.
    fn join_presence_socketio(&mut self, client: Client, channel: &str, user: &str) {
        let data = json!({"user_id": user}).to_string();
        let auth = sign_presence(client, channel, &data);
        let subscribe =
            json!(["subscribe", {"channel": channel, "auth": auth, "channel_data": data}]);
        self.send_packet(client, &format!("42{subscribe}"));
        self.packets(client);
    }
}

#[test]
fn typing_get_answers_the_typists_to_the_socketio_acknowledgement() {
    let (mut c, alice, _bob, channel) = chat();
    typing(&mut c, alice, &channel, "client-typing");
    let carol = c.connect_socketio(0);
    c.join_presence_socketio(carol, &channel, "carol");
    c.send_packet(
        carol,
        &format!(r#"427["typing:get",{{"channel":"{channel}"}}]"#),
    );
    let packets = c.packets(carol);
    let answer = packets
        .iter()
        .find_map(|p| p.strip_prefix("437"))
        .unwrap_or_else(|| panic!("no ack in {packets:?}"));
    let answer: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(
        answer,
        json!([{"users": [{"id": "alice", "since_ms": NOW_UNIX * 1000}]}])
    );
    c.send_packet(
        carol,
        r#"428["typing:get",{"channel":"presence-chat.other"}]"#,
    );
    let packets = c.packets(carol);
    assert!(
        packets[0].starts_with(r#"438[{"error":"not subscribed"#),
        "{packets:?}"
    );
}

#[test]
fn the_references_typing_events_and_echos_whisper_drive_the_same_state() {
    let (mut c, _alice, bob, channel) = chat();
    let carol = c.connect_socketio(0);
    c.join_presence_socketio(carol, &channel, "carol");
    c.recv(bob);
    c.send_packet(carol, &format!(r#"42["typing",{{"channel":"{channel}"}}]"#));
    let got = c.recv(bob);
    assert_eq!(got[0]["event"], "client-typing");
    assert_eq!(got[0]["user_id"], "carol");
    assert_eq!(typists(&mut c, &channel)[0].0, "carol");
    c.send_packet(
        carol,
        &format!(r#"42["typing:stop",{{"channel":"{channel}"}}]"#),
    );
    assert_eq!(c.events(bob), ["client-typing-stop"]);
    assert!(typists(&mut c, &channel).is_empty());
    let whisper =
        json!(["client event", {"channel": channel, "event": "client-typing", "data": {}}]);
    c.send_packet(carol, &format!("42{whisper}"));
    assert_eq!(c.events(bob), ["client-typing"]);
    assert_eq!(typists(&mut c, &channel)[0].0, "carol");
}
