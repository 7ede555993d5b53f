//! Delivery receipts (`[apps.receipts]`): DELIVERED once a tracked frame is written to a
//! recipient's socket, not for one that disconnected first, READ after its client's
//! `ringcast:read`, a non-subscriber's read ignored, and the bounds.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;
use crate::core::ids::AppIdx;
use crate::core::options::{Config, ReceiptsConfig, WebhookConfig};
use crate::core::policy::PrefixedPattern;
use crate::core::receipts::{MessageId, ReceiptStatus};
use crate::core::shard::*;
use crate::core::webhook::WebhookKind;

fn with_receipts(max_recipients: usize, max_messages: usize) -> impl FnOnce(&mut Config) {
    move |c| {
        c.apps[0].receipts = Some(ReceiptsConfig {
            channels: vec![PrefixedPattern::parse("presence-chat.{id}").unwrap()],
            max_recipients,
            max_messages,
            ttl: Duration::from_secs(60),
        });
        let mut hook = WebhookConfig::to("http://127.0.0.1:1/hook");
        hook.event_types = vec![WebhookKind::MessageDelivered, WebhookKind::MessageRead];
        c.apps[0].webhooks = vec![hook];
    }
}

fn chat(tweak: impl FnOnce(&mut Config)) -> (Cluster, Client, Client, String) {
    presence_chat(tweak)
}

impl Cluster {
    /// What the shell does: takes the client's frames and, the write done, reports it.
    fn write(&mut self, client: Client) -> Vec<Value> {
        let mut frames = Vec::new();
        let mut ready = Vec::new();
        let shard = &mut self.shards[client.shard];
        shard.take_ready(&mut ready);
        let taken = shard.take_output(
            client.key,
            client.socket_id,
            &mut frames,
            usize::MAX,
            usize::MAX,
        );
        if taken.receipts {
            let now = self.now;
            self.shards[client.shard].handle_written(client.key, client.socket_id, now);
            self.route();
        }
        let mut buf = bytes::BytesMut::new();
        for frame in frames {
            buf.extend_from_slice(&frame);
        }
        decode_all(&mut buf)
    }

    fn status(&mut self, id: &str) -> Option<MessageStatus> {
        let query = Query::MessageStatus {
            app: AppIdx(0),
            message: MessageId::parse(id).unwrap(),
        };
        match self.query(0, query) {
            Answer::MessageStatus(status) => status,
            other => panic!("{other:?}"),
        }
    }

    fn read(&mut self, client: Client, channel: &str, id: Value) {
        self.send(
            client,
            json!({"event": "ringcast:read", "data": {"channel": channel, "id": id}}),
        );
    }
}

fn statuses(status: &MessageStatus) -> Vec<(String, ReceiptStatus)> {
    status
        .recipients
        .iter()
        .map(|r| (r.recipient.clone(), r.status))
        .collect()
}

#[test]
fn a_written_frame_makes_its_recipient_delivered_and_a_read_makes_it_read() {
    let (mut c, alice, bob, channel) = chat(with_receipts(100, 100));
    c.tick(Duration::from_millis(250));
    c.publish(0, &channel, r#"{"id":"m-1","body":"hi"}"#, None);
    let got = c.write(bob);
    assert_eq!(got[0]["event"], "greeting");
    let status = c.status("m-1").expect("tracked");
    assert_eq!(status.channel.as_str(), channel);
    assert_eq!(
        statuses(&status),
        [("bob".into(), ReceiptStatus::Delivered)]
    );
    assert_eq!(
        status.recipients[0].delivered_at_ms,
        Some(NOW_UNIX * 1000 + 250)
    );
    assert_eq!(status.recipients[0].read_at_ms, None);
    c.tick(Duration::from_secs(1));
    c.read(bob, &channel, json!("m-1"));
    let status = c.status("m-1").unwrap();
    assert_eq!(statuses(&status), [("bob".into(), ReceiptStatus::Read)]);
    assert_eq!(
        status.recipients[0].read_at_ms,
        Some(NOW_UNIX * 1000 + 1250)
    );
    let hooks = c.webhooks();
    let names: Vec<&str> = hooks.iter().filter_map(|h| h["name"].as_str()).collect();
    assert_eq!(names, ["message_delivered", "message_read"]);
    assert_eq!(hooks[0]["message_id"], "m-1");
    assert_eq!(hooks[0]["recipient"], "bob");
    assert_eq!(
        c.recv(alice)[0]["event"],
        "greeting",
        "queued for alice, never written"
    );
    assert_eq!(statuses(&c.status("m-1").unwrap()).len(), 1);
}

#[test]
fn a_recipient_that_disconnected_before_the_write_is_not_delivered() {
    let (mut c, alice, bob, channel) = chat(with_receipts(100, 100));
    c.publish(0, &channel, r#""{\"id\":7}""#, None);
    let now = c.now;
    c.shards[1].handle_disconnect(bob.key, bob.socket_id, now);
    c.route();
    let got = c.write(alice);
    assert_eq!(got[0]["event"], "greeting");
    let status = c.status("7").expect("a numeric id is tracked as its text");
    assert_eq!(
        statuses(&status),
        [("alice".into(), ReceiptStatus::Delivered)]
    );
}

#[test]
fn a_frame_queued_but_not_yet_written_is_not_delivered() {
    let (mut c, _alice, bob, channel) = chat(with_receipts(100, 100));
    c.publish(0, &channel, r#"{"id":"m"}"#, None);
    assert!(statuses(&c.status("m").unwrap()).is_empty());
    c.write(bob);
    assert_eq!(statuses(&c.status("m").unwrap()).len(), 1);
}

#[test]
fn a_read_from_a_socket_not_subscribed_is_refused_and_not_recorded() {
    let (mut c, _alice, bob, channel) = chat(with_receipts(100, 100));
    c.publish(0, &channel, r#"{"id":"m"}"#, None);
    c.write(bob);
    let eve = c.connect(1);
    c.read(eve, &channel, json!("m"));
    let got = c.recv(eve);
    assert_eq!(got[0]["event"], "pusher:error");
    assert!(
        got[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not subscribed")
    );
    assert_eq!(
        statuses(&c.status("m").unwrap()),
        [("bob".into(), ReceiptStatus::Delivered)]
    );
    c.read(bob, &channel, json!("unknown"));
    assert!(c.status("unknown").is_none());
}

#[test]
fn events_without_an_id_or_on_other_channels_are_not_tracked() {
    let (mut c, alice, bob, channel) = chat(with_receipts(100, 100));
    c.join_presence(alice, "presence-room", "alice");
    c.join_presence(bob, "presence-room", "bob");
    c.publish(0, "presence-room", r#"{"id":"elsewhere"}"#, None);
    c.publish(0, &channel, r#"{"body":"no id"}"#, None);
    let got = c.write(bob);
    assert!(got.iter().filter(|e| e["event"] == "greeting").count() == 2);
    assert!(c.status("elsewhere").is_none());
}

#[test]
fn a_channel_over_max_recipients_is_not_tracked_and_is_counted() {
    let (mut c, _alice, bob, channel) = chat(with_receipts(2, 100));
    c.publish(0, &channel, r#"{"id":"two"}"#, None);
    assert!(
        c.status("two").is_some(),
        "at max_recipients the message is tracked"
    );
    let carol = c.connect(0);
    c.join_presence(carol, &channel, "carol");
    c.publish(0, &channel, r#"{"id":"three"}"#, None);
    assert!(c.write(bob).iter().any(|e| e["event"] == "greeting"));
    assert!(c.status("three").is_none());
    assert_eq!(total(&c, |s| &s.receipts_untracked), 1);
}

#[test]
fn the_oldest_message_is_forgotten_beyond_max_messages_and_all_past_the_ttl() {
    // Two shards: one message per shard.
    let (mut c, _alice, _bob, channel) = chat(with_receipts(100, 2));
    c.publish(0, &channel, r#"{"id":"first"}"#, None);
    c.publish(0, &channel, r#"{"id":"second"}"#, None);
    assert!(c.status("first").is_none());
    assert!(c.status("second").is_some());
    c.tick(Duration::from_secs(60));
    assert!(c.status("second").is_none());
    assert_eq!(total(&c, |s| &s.receipts_forgotten), 2);
}

#[test]
fn a_client_event_with_an_id_is_tracked_for_its_recipients() {
    let (mut c, alice, bob, channel) = chat(with_receipts(100, 100));
    c.send(
        alice,
        json!({"event": "client-message", "channel": channel, "data": {"id": "c-1"}}),
    );
    assert_eq!(c.write(bob)[0]["event"], "client-message");
    let status = c.status("c-1").unwrap();
    assert_eq!(
        statuses(&status),
        [("bob".into(), ReceiptStatus::Delivered)]
    );
}
