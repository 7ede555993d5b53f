//! Delivery receipts, as a channel's home shard keeps them: per message (by the `id` in its
//! data), per recipient, when its frame was written to them (`DELIVERED`) and when they said
//! they read it (`READ`). Bounded in messages, recipients and age; time is a parameter. No
//! message body is kept, only its id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::Value;

use crate::core::channel::ChannelName;
use crate::core::ids::{SocketId, UserId};

/// Longest message id taken; a longer one leaves the message untracked.
pub const MAX_MESSAGE_ID_CHARS: usize = 128;

/// A message's id as its publisher gave it in the data (`{"id": "m-1", ...}` or
/// `{"id": 42}`; a number is kept as its JSON text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(Arc<str>);

impl MessageId {
    /// The id in an event's data: a JSON object with a string or number `id`, or a JSON
    /// string holding such an object (what the HTTP API and the SDKs send). `None` for
    /// anything else, an empty id or one over [`MAX_MESSAGE_ID_CHARS`].
    pub fn of_data(data: &str) -> Option<Self> {
        let trimmed = data.trim_start();
        if !trimmed.starts_with(['{', '"']) {
            return None;
        }
        let value: Value = serde_json::from_str(trimmed).ok()?;
        let object = match value {
            Value::String(inner) => serde_json::from_str::<Value>(&inner).ok()?,
            other => other,
        };
        let id = match object.get("id")? {
            Value::String(id) => id.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Self::parse(&id)
    }

    /// An id a client or the API names; `None` if empty or too long.
    pub fn parse(raw: &str) -> Option<Self> {
        let chars = raw.chars().count();
        (1..=MAX_MESSAGE_ID_CHARS)
            .contains(&chars)
            .then(|| Self(raw.into()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event a client sends to say it read a message: `{channel, id}` (Pusher:
/// `pusher.send_event('ringcast:read', {channel, id})`; Socket.IO: `emit('ringcast:read', ...)`).
pub const READ_EVENT: &str = "ringcast:read";
/// The chat reference's Socket.IO name for the same, `{channel, messageId}` or `{channel, id}`.
pub const SEEN_EVENT: &str = "message:seen";

/// A read acknowledgement's `channel` and message id (`id` or `messageId`, a string or a
/// number); `None` when either is missing.
pub fn read_request(value: &Value) -> Option<(String, String)> {
    let channel = value.get("channel")?.as_str()?.to_owned();
    let id = match value.get("id").or_else(|| value.get("messageId"))? {
        Value::String(id) => id.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((channel, id))
}

/// Who a receipt is for: the subscriber's user id when it is identified (token,
/// backend-verified, signed in or presence member), else its socket id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// An identified subscriber.
    User(UserId),
    /// An anonymous subscriber, by its connection.
    Socket(SocketId),
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::User(user) => f.write_str(user.as_str()),
            Recipient::Socket(socket) => socket.fmt(f),
        }
    }
}

/// What a recipient's client reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// The frame was written to the recipient's socket.
    Delivered,
    /// The recipient's client acknowledged reading it.
    Read,
}

impl ReceiptStatus {
    /// Its name in the status API.
    pub fn name(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "DELIVERED",
            ReceiptStatus::Read => "READ",
        }
    }
}

/// One recipient's receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReceipt {
    /// Who.
    pub recipient: Recipient,
    /// When the frame was written to them; `None` for a reader whose delivery was not seen
    /// (it reached them before they were tracked, e.g. over another connection).
    pub delivered_at: Option<Instant>,
    /// When they acknowledged reading it.
    pub read_at: Option<Instant>,
}

impl RecipientReceipt {
    /// The furthest status reached.
    pub fn status(&self) -> ReceiptStatus {
        match self.read_at {
            Some(_) => ReceiptStatus::Read,
            None => ReceiptStatus::Delivered,
        }
    }
}

/// The receipts of one message.
#[derive(Clone, Debug)]
pub struct MessageReceipts {
    /// The channel it was published on.
    pub channel: ChannelName,
    /// When it was published (its age counts from here).
    pub published: Instant,
    /// Per recipient, in the order they were first recorded.
    pub recipients: Vec<RecipientReceipt>,
}

/// What recording a receipt did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The recipient reached this status for the first time (a webhook is due).
    New,
    /// The recipient had reached it already; nothing changed.
    Again,
    /// No tracked message has this id on this channel (unknown, expired, or evicted).
    UnknownMessage,
    /// The message has its most recipients; this one is not kept.
    RecipientsFull,
}

/// One shard's tracked messages of one app, oldest first.
#[derive(Debug, Default)]
pub struct ReceiptStore {
    messages: IndexMap<MessageId, MessageReceipts>,
}

impl ReceiptStore {
    /// Starts tracking message `id` on `channel` (a republished id starts over); returns how
    /// many older messages were forgotten to stay within `max_messages`.
    pub fn track(
        &mut self,
        id: MessageId,
        channel: ChannelName,
        now: Instant,
        max_messages: usize,
    ) -> usize {
        self.messages.shift_remove(&id);
        let mut evicted = 0;
        while self.messages.len() >= max_messages.max(1) {
            self.messages.shift_remove_index(0);
            evicted += 1;
        }
        let receipts = MessageReceipts {
            channel,
            published: now,
            recipients: Vec::new(),
        };
        self.messages.insert(id, receipts);
        evicted
    }

    /// Records that `recipient` reached `status` for message `id` on `channel` at `now`;
    /// a message keeps at most `max_recipients`.
    pub fn record(
        &mut self,
        id: &MessageId,
        channel: &ChannelName,
        recipient: Recipient,
        status: ReceiptStatus,
        now: Instant,
        max_recipients: usize,
    ) -> Recorded {
        let Some(message) = self.messages.get_mut(id).filter(|m| m.channel == *channel) else {
            return Recorded::UnknownMessage;
        };
        let index = match message
            .recipients
            .iter()
            .position(|r| r.recipient == recipient)
        {
            Some(index) => index,
            None if message.recipients.len() >= max_recipients => {
                return Recorded::RecipientsFull;
            }
            None => {
                message.recipients.push(RecipientReceipt {
                    recipient,
                    delivered_at: None,
                    read_at: None,
                });
                message.recipients.len() - 1
            }
        };
        let Some(receipt) = message.recipients.get_mut(index) else {
            return Recorded::UnknownMessage;
        };
        let slot = match status {
            ReceiptStatus::Delivered => &mut receipt.delivered_at,
            ReceiptStatus::Read => &mut receipt.read_at,
        };
        match slot {
            Some(_) => Recorded::Again,
            None => {
                *slot = Some(now);
                Recorded::New
            }
        }
    }

    /// Forgets messages published `ttl` or longer ago; returns how many.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let before = self.messages.len();
        self.messages
            .retain(|_, m| now.saturating_duration_since(m.published) < ttl);
        before - self.messages.len()
    }

    /// The receipts of message `id`.
    pub fn get(&self, id: &MessageId) -> Option<&MessageReceipts> {
        self.messages.get(id)
    }

    /// How many messages are tracked.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> MessageId {
        MessageId::parse(raw).unwrap()
    }

    fn channel(raw: &str) -> ChannelName {
        ChannelName::parse(raw, 200).unwrap()
    }

    fn user(raw: &str) -> Recipient {
        Recipient::User(UserId::parse(raw, 128).unwrap())
    }

    #[test]
    fn the_id_is_read_from_an_object_or_a_string_holding_one() {
        assert_eq!(
            MessageId::of_data(r#"{"id":"m-1","body":"hi"}"#),
            Some(id("m-1"))
        );
        assert_eq!(MessageId::of_data(r#"{"id":42}"#), Some(id("42")));
        assert_eq!(MessageId::of_data(r#""{\"id\":\"m-2\"}""#), Some(id("m-2")));
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_MESSAGE_ID_CHARS + 1));
        for none in [
            "hello",
            "[1]",
            r#"{"id":null}"#,
            r#"{"id":""}"#,
            r#"{"no":1}"#,
            r#""plain""#,
            &long,
        ] {
            assert_eq!(MessageId::of_data(none), None, "{none}");
        }
    }

    #[test]
    fn delivered_then_read_are_recorded_once_each() {
        let (t0, mut store) = (Instant::now(), ReceiptStore::default());
        store.track(id("m"), channel("private-a"), t0, 10);
        let later = t0 + Duration::from_secs(1);
        let record = |store: &mut ReceiptStore, status| {
            store.record(
                &id("m"),
                &channel("private-a"),
                user("bob"),
                status,
                later,
                10,
            )
        };
        assert_eq!(record(&mut store, ReceiptStatus::Delivered), Recorded::New);
        assert_eq!(
            record(&mut store, ReceiptStatus::Delivered),
            Recorded::Again
        );
        assert_eq!(record(&mut store, ReceiptStatus::Read), Recorded::New);
        let receipt = &store.get(&id("m")).unwrap().recipients[0];
        assert_eq!(receipt.status(), ReceiptStatus::Read);
        assert_eq!(
            (receipt.delivered_at, receipt.read_at),
            (Some(later), Some(later))
        );
        let elsewhere = store.record(
            &id("m"),
            &channel("private-b"),
            user("bob"),
            ReceiptStatus::Read,
            later,
            10,
        );
        assert_eq!(elsewhere, Recorded::UnknownMessage);
    }

    #[test]
    fn messages_recipients_and_age_are_bounded() {
        let (t0, mut store) = (Instant::now(), ReceiptStore::default());
        assert_eq!(store.track(id("a"), channel("private-a"), t0, 2), 0);
        assert_eq!(store.track(id("b"), channel("private-a"), t0, 2), 0);
        assert_eq!(store.track(id("c"), channel("private-a"), t0, 2), 1);
        assert!(store.get(&id("a")).is_none() && store.len() == 2);
        let c = channel("private-a");
        let delivered = ReceiptStatus::Delivered;
        assert_eq!(
            store.record(&id("b"), &c, user("1"), delivered, t0, 2),
            Recorded::New
        );
        assert_eq!(
            store.record(&id("b"), &c, user("2"), delivered, t0, 2),
            Recorded::New
        );
        assert_eq!(
            store.record(&id("b"), &c, user("3"), delivered, t0, 2),
            Recorded::RecipientsFull
        );
        let ttl = Duration::from_secs(60);
        assert_eq!(store.expire(t0 + Duration::from_secs(59), ttl), 0);
        assert_eq!(store.expire(t0 + ttl, ttl), 2);
        assert!(store.is_empty());
    }
}

#[cfg(test)]
mod read_tests {
    use crate::core::wire::{Command, Wire};

    fn read(wire: Wire, text: &str) -> (String, String) {
        match wire.parse(text.as_bytes()) {
            Ok(Command::Read { channel, id }) => (channel, id),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn both_wires_read_a_read_acknowledgement_with_its_channel_and_id() {
        let expected = ("private-a".to_owned(), "m-1".to_owned());
        let pusher = r#"{"event":"ringcast:read","data":{"channel":"private-a","id":"m-1"}}"#;
        assert_eq!(read(Wire::Pusher, pusher), expected);
        let encoded =
            r#"{"event":"ringcast:read","data":"{\"channel\":\"private-a\",\"id\":\"m-1\"}"}"#;
        assert_eq!(read(Wire::Pusher, encoded), expected);
        let seen = r#"42["message:seen",{"channel":"private-a","messageId":"m-1"}]"#;
        assert_eq!(read(Wire::SocketIo, seen), expected);
        let numeric = r#"42["ringcast:read",{"channel":"private-a","id":7}]"#;
        assert_eq!(read(Wire::SocketIo, numeric).1, "7");
        for bad in [
            r#"{"event":"ringcast:read","data":{"channel":"private-a"}}"#,
            r#"{"event":"ringcast:read","data":{"id":"m"}}"#,
        ] {
            assert!(Wire::Pusher.parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
