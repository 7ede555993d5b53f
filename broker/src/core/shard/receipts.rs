//! Delivery receipts (`[apps.receipts]`). The publishing shard reads the message's `id`
//! and marks its frames; the channel's home shard decides whether the message is tracked
//! (not over `max_recipients` subscribers) and keeps its receipts; each subscriber's shard
//! notes which of its queued frames are tracked, and once the writer says they were
//! written to the socket (`handle_written`) tells the home shard `DELIVERED`. A client's
//! `ringcast:read` from a subscriber of the channel is `READ`.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{Value, json};

use super::Shard;
use super::conn::Conn;
use super::mesh::{AnswerPart, ConnKey, MeshMsg, ReplyTo};
use crate::core::channel::ChannelName;
use crate::core::counters::inc;
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::receipts::{MessageId, ReceiptStatus, Recipient, Recorded};
use crate::core::webhook::{ReceiptInfo, WebhookEvent, WebhookKind};
use crate::core::wire::{Fault, Frames};

/// One connection's tracked frames: those still queued, by their position in the
/// outbox's history, and those handed to the writer and not yet reported written.
#[derive(Debug, Default)]
pub(super) struct ConnReceipts {
    /// Frames handed to the writer since this was made.
    taken: u64,
    queued: VecDeque<(u64, ChannelName, MessageId)>,
    written: Vec<(ChannelName, MessageId)>,
}

impl ConnReceipts {
    /// `n` more frames were handed to the writer; whether tracked ones are among the
    /// frames it holds.
    pub(super) fn taken(&mut self, n: usize) -> bool {
        self.taken += n as u64;
        while self.queued.front().is_some_and(|(at, ..)| *at < self.taken) {
            if let Some((_, channel, id)) = self.queued.pop_front() {
                self.written.push((channel, id));
            }
        }
        !self.written.is_empty()
    }
}

/// Notes that the frame just queued on `conn` (the outbox's last) is message `id`'s.
pub(super) fn note_queued(conn: &mut Conn, channel: &ChannelName, id: &MessageId) {
    let receipts = conn.receipts.get_or_insert_with(Box::default);
    let at = receipts.taken + conn.outbox.len() as u64 - 1;
    receipts.queued.push_back((at, channel.clone(), id.clone()));
}

/// One recipient's receipt, as the status API answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The user id, else the socket id.
    pub recipient: String,
    /// The furthest status reached.
    pub status: ReceiptStatus,
    /// When the frame was written to them (Unix ms), if seen.
    pub delivered_at_ms: Option<u64>,
    /// When they acknowledged reading it (Unix ms).
    pub read_at_ms: Option<u64>,
}

/// A tracked message's receipts, as the status API answers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageStatus {
    /// The message's `id`.
    pub message_id: String,
    /// Its channel.
    pub channel: ChannelName,
    /// Per recipient, in the order they were first recorded.
    pub recipients: Vec<RecipientStatus>,
}

/// `{"message_id","channel","recipients":[{"recipient","status","delivered_at_ms","read_at_ms"}]}`.
pub fn status_json(status: &MessageStatus) -> Value {
    let recipients: Vec<Value> = status
        .recipients
        .iter()
        .map(|r| {
            json!({
                "recipient": r.recipient,
                "status": r.status.name(),
                "delivered_at_ms": r.delivered_at_ms,
                "read_at_ms": r.read_at_ms,
            })
        })
        .collect();
    json!({
        "message_id": status.message_id,
        "channel": status.channel.as_str(),
        "recipients": recipients,
    })
}

impl Shard {
    /// At the publishing shard: marks the frames of an event whose data carries an `id`, on
    /// a channel with receipts. Apps without `[apps.receipts]` pay one check per publish.
    pub(super) fn mark_receipt(
        &self,
        app: AppIdx,
        channel: &ChannelName,
        data: &str,
        frames: Frames,
    ) -> Frames {
        let receipts = self.state.apps.get(app).config.receipts.as_ref();
        if !receipts.is_some_and(|r| r.covers(channel)) {
            return frames;
        }
        match MessageId::of_data(data) {
            Some(id) => frames.with_receipt(id),
            None => frames,
        }
    }

    /// At the home shard, before the fan-out: starts tracking a marked message, or unmarks
    /// it when the channel has more than `max_recipients` subscribers.
    pub(super) fn track_at_home(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frames: &mut Frames,
        now: Instant,
    ) {
        let Some(id) = frames.receipt().cloned() else {
            return;
        };
        let Some(config) = self.state.apps.get(app).config.receipts.as_ref() else {
            frames.untrack();
            return;
        };
        let state = &mut self.per_app[app];
        let subscribers = state
            .homes
            .get(channel)
            .map_or(0, |h| h.stats().subscription_count);
        if subscribers > config.max_recipients {
            inc(&self.counters.receipts_untracked);
            frames.untrack();
            return;
        }
        let max = config.max_messages_per_shard(self.shard_count);
        let evicted = state.receipts.track(id, channel.clone(), now, max);
        inc(&self.counters.receipts_tracked);
        crate::core::counters::add(&self.counters.receipts_forgotten, evicted as u64);
    }

    /// Tells the home shards that the tracked frames the writer of `key` held have been
    /// written to its socket: their recipient is `DELIVERED` as of `now`. A connection that
    /// closed before its write completed is not.
    pub fn handle_written(&mut self, key: ConnKey, socket_id: SocketId, now: Instant) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
            return;
        };
        let Some(receipts) = conn.receipts.as_mut() else {
            return;
        };
        let written = std::mem::take(&mut receipts.written);
        let app = conn.app;
        let max = self.state.apps.get(app).config.max_user_id_chars;
        let notes: Vec<(ChannelName, MessageId, Recipient)> = written
            .into_iter()
            .map(|(channel, message)| {
                let recipient = recipient(conn, &channel, max);
                (channel, message, recipient)
            })
            .collect();
        for (channel, message, recipient) in notes {
            let msg = MeshMsg::Receipt {
                app,
                channel: channel.clone(),
                message,
                recipient,
                status: ReceiptStatus::Delivered,
                at: now,
            };
            self.send_home(app, &channel, msg);
        }
        self.drain_to_self(now);
    }

    /// A client's `ringcast:read`: recorded as `READ` when the client is subscribed to the
    /// channel and the channel has receipts; otherwise it is told why, and stays connected.
    pub(super) fn read_receipt(&mut self, key: ConnKey, raw_channel: &str, id: &str, now: Instant) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let app = conn.app;
        let channel = conn.active_channel(raw_channel);
        let max_user_id_chars = self.state.apps.get(app).config.max_user_id_chars;
        let refuse = |why: &str| format!("ringcast:read on {raw_channel:?} ignored: {why}");
        let Some(channel) = channel else {
            let text = refuse("not subscribed to the channel");
            self.send_error_message(key, Fault::InvalidMessage, &text);
            return;
        };
        let covered = self.state.apps.get(app).config.receipts.as_ref();
        if !covered.is_some_and(|r| r.covers(&channel)) {
            let text = refuse("the channel keeps no receipts ([apps.receipts] channels)");
            self.send_error_message(key, Fault::InvalidMessage, &text);
            return;
        }
        let Some(message) = MessageId::parse(id) else {
            let text = refuse("the id is empty or too long");
            self.send_error_message(key, Fault::InvalidMessage, &text);
            return;
        };
        let msg = MeshMsg::Receipt {
            app,
            recipient: recipient(conn, &channel, max_user_id_chars),
            channel: channel.clone(),
            message,
            status: ReceiptStatus::Read,
            at: now,
        };
        self.send_home(app, &channel, msg);
        self.drain_to_self(now);
    }

    /// At the home shard: records a recipient's status, with its webhook the first time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn home_receipt(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        message: &MessageId,
        recipient: Recipient,
        status: ReceiptStatus,
        at: Instant,
    ) {
        let Some(config) = self.state.apps.get(app).config.receipts.as_ref() else {
            return;
        };
        let name = recipient.to_string();
        let store = &mut self.per_app[app].receipts;
        match store.record(
            message,
            channel,
            recipient,
            status,
            at,
            config.max_recipients,
        ) {
            Recorded::New => {}
            Recorded::RecipientsFull => {
                inc(&self.counters.receipts_recipients_dropped);
                return;
            }
            Recorded::Again | Recorded::UnknownMessage => return,
        }
        let kind = match status {
            ReceiptStatus::Delivered => WebhookKind::MessageDelivered,
            ReceiptStatus::Read => WebhookKind::MessageRead,
        };
        if self.wants_webhook(app, kind, channel.as_str()) {
            let event = WebhookEvent {
                receipt: Some(Box::new(ReceiptInfo {
                    message_id: message.as_str().to_owned(),
                    recipient: name,
                    at_ms: self.wall.unix_ms(at),
                })),
                ..WebhookEvent::channel(kind, channel.as_str())
            };
            self.webhooks.push((app, event));
        }
    }

    /// Forgets receipts older than `ttl_secs`.
    pub(super) fn receipt_timers(&mut self, now: Instant) {
        for (app, state) in self.per_app.iter_mut() {
            if let Some(config) = self.state.apps.get(app).config.receipts.as_ref() {
                let expired = state.receipts.expire(now, config.ttl);
                crate::core::counters::add(&self.counters.receipts_forgotten, expired as u64);
            }
        }
    }

    /// On every shard: message `id`'s receipts, if tracked here.
    pub(super) fn answer_message_status(&mut self, reply_to: ReplyTo, app: AppIdx, id: &MessageId) {
        let wall = self.wall;
        let status = self.per_app[app].receipts.get(id).map(|m| MessageStatus {
            message_id: id.as_str().to_owned(),
            channel: m.channel.clone(),
            recipients: m
                .recipients
                .iter()
                .map(|r| RecipientStatus {
                    recipient: r.recipient.to_string(),
                    status: r.status(),
                    delivered_at_ms: r.delivered_at.map(|at| wall.unix_ms(at)),
                    read_at_ms: r.read_at.map(|at| wall.unix_ms(at)),
                })
                .collect(),
        });
        self.answer(reply_to, AnswerPart::MessageStatus(status));
    }
}

/// Who `conn` is as a recipient on `channel`: its token's user, its sign-in, its presence
/// member, else its socket.
fn recipient(conn: &Conn, channel: &ChannelName, max_user_id_chars: usize) -> Recipient {
    let from_token = conn
        .identity
        .as_ref()
        .and_then(|i| i.user_id.as_deref())
        .and_then(|id| UserId::parse(id, max_user_id_chars).ok());
    let member = || {
        conn.subscriptions
            .iter()
            .find(|s| s.channel == *channel)
            .and_then(|s| s.user.clone())
    };
    match from_token.or_else(|| conn.user.clone()).or_else(member) {
        Some(user) => Recipient::User(user),
        None => Recipient::Socket(conn.socket_id),
    }
}
