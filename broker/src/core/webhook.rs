//! Webhook events: what happened, in Pusher's JSON shape, and how a batch is signed.
//!
//! Events are produced by the shards (the home shard for channel and member events, the
//! receiving shard for client events) and sent by the webhook sender thread, never by a shard.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::hmac_hex;

/// `channel_vacated` and `member_removed` wait this long, and are dropped if the channel is
/// occupied again (or the user comes back) meanwhile: page reloads would otherwise flap.
pub const LEAVE_DELAY: Duration = Duration::from_secs(3);

/// A kind of webhook event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    /// A channel got its first subscriber.
    ChannelOccupied,
    /// A channel lost its last subscriber (after [`LEAVE_DELAY`]).
    ChannelVacated,
    /// A user joined a presence channel.
    MemberAdded,
    /// A user left a presence channel (after [`LEAVE_DELAY`]).
    MemberRemoved,
    /// A client sent a `client-` event.
    ClientEvent,
    /// A cache channel had nothing to replay.
    CacheMiss,
    /// A channel's subscriber count changed.
    SubscriptionCount,
    /// A tracked message's frame was written to a recipient (`[apps.receipts]`).
    MessageDelivered,
    /// A recipient acknowledged reading a tracked message (`[apps.receipts]`).
    MessageRead,
}

impl WebhookKind {
    /// The `name` on the wire.
    pub fn name(self) -> &'static str {
        match self {
            WebhookKind::ChannelOccupied => "channel_occupied",
            WebhookKind::ChannelVacated => "channel_vacated",
            WebhookKind::MemberAdded => "member_added",
            WebhookKind::MemberRemoved => "member_removed",
            WebhookKind::ClientEvent => "client_event",
            WebhookKind::CacheMiss => "cache_miss",
            WebhookKind::SubscriptionCount => "subscription_count",
            WebhookKind::MessageDelivered => "message_delivered",
            WebhookKind::MessageRead => "message_read",
        }
    }

    /// Whether an endpoint gets it only when its `event_types` name it (Ringcast's own
    /// kinds, which Pusher's receivers do not expect), not when they are left empty.
    pub fn is_opt_in(self) -> bool {
        matches!(
            self,
            WebhookKind::MessageDelivered | WebhookKind::MessageRead
        )
    }
}

/// One webhook event. Client event data is carried as the client sent it; nothing else here
/// holds message content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// What happened.
    pub kind: WebhookKind,
    /// On which channel.
    pub channel: String,
    /// Member events and presence client events: the user.
    pub user_id: Option<String>,
    /// Client events: the event name, the data string and the sender.
    pub client: Option<ClientEventInfo>,
    /// `subscription_count` events: the new count.
    pub subscription_count: Option<usize>,
    /// `message_delivered` / `message_read`: which message, for whom, and when.
    pub receipt: Option<Box<ReceiptInfo>>,
}

/// The parts of a `message_delivered` or `message_read` webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptInfo {
    /// The message's `id`.
    pub message_id: String,
    /// The recipient (user id, else socket id).
    pub recipient: String,
    /// When it was delivered or read, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The parts of a `client_event` webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEventInfo {
    /// The event name.
    pub event: String,
    /// The data as a string (a JSON text if the client sent an object).
    pub data: String,
    /// The sender.
    pub socket_id: String,
}

impl WebhookEvent {
    /// A channel-only event (`channel_occupied`, `channel_vacated`, `cache_miss`).
    pub fn channel(kind: WebhookKind, channel: &str) -> Self {
        Self {
            kind,
            channel: channel.to_owned(),
            user_id: None,
            client: None,
            subscription_count: None,
            receipt: None,
        }
    }

    /// A member event.
    pub fn member(kind: WebhookKind, channel: &str, user_id: &str) -> Self {
        Self {
            user_id: Some(user_id.to_owned()),
            ..Self::channel(kind, channel)
        }
    }

    /// The event as Pusher's webhook JSON object.
    pub fn to_json(&self) -> Value {
        let mut value = json!({ "name": self.kind.name(), "channel": self.channel });
        if let Some(user_id) = &self.user_id {
            value["user_id"] = json!(user_id);
        }
        if let Some(client) = &self.client {
            value["event"] = json!(client.event);
            value["data"] = json!(client.data);
            value["socket_id"] = json!(client.socket_id);
        }
        if let Some(count) = self.subscription_count {
            value["subscription_count"] = json!(count);
        }
        if let Some(receipt) = &self.receipt {
            value["message_id"] = json!(receipt.message_id);
            value["recipient"] = json!(receipt.recipient);
            value["at_ms"] = json!(receipt.at_ms);
        }
        value
    }
}

/// The body of a webhook request: `{"time_ms":..., "events":[...]}`.
pub fn body(time_ms: u64, events: &[&WebhookEvent]) -> Vec<u8> {
    let events: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    json!({ "time_ms": time_ms, "events": events })
        .to_string()
        .into_bytes()
}

/// `X-Pusher-Signature`: hex HMAC-SHA256 of the raw body with the app secret.
pub fn signature(secret: &ring::hmac::Key, body: &[u8]) -> String {
    hmac_hex(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::{hmac_key, verify_hex};

    #[test]
    fn events_have_pusher_shapes() {
        let occupied = WebhookEvent::channel(WebhookKind::ChannelOccupied, "c");
        assert_eq!(
            occupied.to_json(),
            json!({"name": "channel_occupied", "channel": "c"})
        );
        let added = WebhookEvent::member(WebhookKind::MemberAdded, "presence-c", "7");
        assert_eq!(
            added.to_json(),
            json!({"name": "member_added", "channel": "presence-c", "user_id": "7"})
        );
        let client = WebhookEvent {
            client: Some(ClientEventInfo {
                event: "client-typing".into(),
                data: r#"{"on":true}"#.into(),
                socket_id: "1.2".into(),
            }),
            ..WebhookEvent::channel(WebhookKind::ClientEvent, "private-c")
        };
        assert_eq!(
            client.to_json(),
            json!({"name": "client_event", "channel": "private-c", "event": "client-typing", "data": "{\"on\":true}", "socket_id": "1.2"})
        );
        let count = WebhookEvent {
            subscription_count: Some(3),
            ..WebhookEvent::channel(WebhookKind::SubscriptionCount, "c")
        };
        assert_eq!(count.to_json()["subscription_count"], 3);
    }

    #[test]
    fn body_is_signed_with_the_app_secret() {
        let event = WebhookEvent::channel(WebhookKind::CacheMiss, "cache-x");
        let body = body(1_700_000_000_000, &[&event]);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["time_ms"], 1_700_000_000_000u64);
        assert_eq!(value["events"][0]["name"], "cache_miss");
        let secret = hmac_key("s");
        assert!(verify_hex(&secret, &body, &signature(&secret, &body)));
    }
}
