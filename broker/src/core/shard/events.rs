//! Events: client events and API publishes, and delivery to this shard's subscribers.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::AuditAction;
use super::audit::{PUBLISHED_BY_CLIENT, publish_reason};
use super::conn::SubState;
use super::mesh::{ConnKey, QueryId, ReplyTo};
use super::outbox::{Enqueued, enqueue};
use super::queries::PendingQuery;
use super::receipts::note_queued;
use super::{Answer, Publish, Shard};
use crate::core::channel::ChannelName;
use crate::core::counters::{add, inc};
use crate::core::ids::{AppIdx, SocketId};
use crate::core::options::ClientEvents;
use crate::core::rate_limit::Rate;
use crate::core::webhook::{ClientEventInfo, WebhookEvent, WebhookKind};
use crate::core::wire::Fault;
use crate::core::wire::{Event, Frames};
use ringcast_shared::{AuditDecision, AuditKind};

pub(super) fn client_event_rate(per_second: u32) -> Rate {
    Rate {
        capacity: per_second,
        period: Duration::from_secs(1),
    }
}

impl Shard {
    pub(super) fn client_event(
        &mut self,
        key: ConnKey,
        event: &str,
        raw_channel: &str,
        data: &RawValue,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let app = self.state.apps.get(conn.app);
        let refuse =
            |why: &str| format!("client event {event:?} on {raw_channel:?} refused: {why}");
        let Some(sub) = conn
            .subscriptions
            .iter()
            .find(|s| s.channel.as_str() == raw_channel && s.state == SubState::Active)
        else {
            let text = refuse("not subscribed to the channel");
            self.send_error_message(key, Fault::ClientEventRejected, &text);
            return;
        };
        let kind = sub.channel.kind();
        let allowed = match app.config.client_events {
            ClientEvents::Disabled => Err("client events are disabled for this app"),
            _ if !kind.allows_client_events() => {
                Err("client events are only allowed on private and presence channels")
            }
            ClientEvents::MembersOnly if !kind.is_presence() => {
                Err("this app allows client events on presence channels only")
            }
            _ => Ok(()),
        };
        if let Err(why) = allowed {
            let text = refuse(why);
            self.send_error_message(key, Fault::ClientEventRejected, &text);
            return;
        }
        if event.len() > app.config.max_event_name_chars {
            let text = refuse("event name too long");
            self.send_error_message(key, Fault::ClientEventRejected, &text);
            return;
        }
        if data.get().len() > app.config.max_message_bytes {
            let text = format!(
                "client event data is over {} bytes",
                app.config.max_message_bytes
            );
            self.send_error_message(key, Fault::MessageTooLarge, &text);
            return;
        }
        let rate = client_event_rate(app.config.client_events_per_second);
        let sender = sub
            .user
            .as_ref()
            .or(conn.user.as_ref())
            .map_or_else(|| conn.socket_id.to_string(), |u| u.as_str().to_owned());
        if conn.client_events.try_acquire(rate, now).is_err()
            || app.admit_client_event(&sender, now).is_err()
        {
            let channel = sub.channel.as_str().to_owned();
            self.audit_conn(
                key,
                AuditKind::Security,
                AuditAction::RateLimit,
                AuditDecision::Deny,
                Some(&channel),
                Some("client_events"),
                None,
            );
            self.send_error(key, Fault::ClientEventRateLimited);
            return;
        }
        let channel = sub.channel.clone();
        let user = sub.user.clone();
        let (app_idx, socket_id) = (conn.app, conn.socket_id);
        if app.config.audit_publishes {
            self.audit_conn(
                key,
                AuditKind::Decision,
                AuditAction::Publish,
                AuditDecision::Allow,
                Some(channel.as_str()),
                Some(PUBLISHED_BY_CLIENT),
                Some(publish_reason(event, data.get().len())),
            );
        }
        if self.wants_webhook(app_idx, WebhookKind::ClientEvent, channel.as_str()) {
            // Pusher's webhook carries data as a string: a string's content, else the JSON text.
            let data_text = serde_json::from_str::<String>(data.get())
                .unwrap_or_else(|_| data.get().to_owned());
            let hook = WebhookEvent {
                user_id: user.as_ref().map(|u| u.as_str().to_owned()),
                client: Some(ClientEventInfo {
                    event: event.to_owned(),
                    data: data_text,
                    socket_id: socket_id.to_string(),
                }),
                ..WebhookEvent::channel(WebhookKind::ClientEvent, channel.as_str())
            };
            self.webhooks.push((app_idx, hook));
        }
        let frames = Frames::encode(
            &Event::Client {
                event,
                channel: &channel,
                data,
                user: user.as_ref(),
            },
            self.wires(app_idx),
        );
        let frames = self.mark_receipt(app_idx, &channel, data.get(), frames);
        inc(&self.counters.app(app_idx).publishes);
        self.publish_frames(app_idx, &channel, frames, Some(socket_id), None, now);
        self.note_typing(app_idx, &channel, event, user.as_ref(), now);
    }

    /// Publishes an event from the HTTP API to one channel: it is encoded once per wire here
    /// and the same bytes reach every subscriber on every shard.
    ///
    /// In cluster mode the answer is a query that completes with [`Answer::Applied`] once
    /// Redis has accepted the event (`Unavailable` if it did not): answering the API call
    /// only then keeps one backend's events in the order it sent them, whichever nodes it
    /// sends them through. A single node has nothing to wait for (`None`).
    pub fn publish(
        &mut self,
        publish: &Publish<'_>,
        channel: &ChannelName,
        now: Instant,
    ) -> Option<QueryId> {
        let frames = Frames::encode(
            &Event::Channel {
                event: publish.event,
                channel,
                data: publish.data,
            },
            self.wires(publish.app),
        );
        let frames = self.mark_receipt(publish.app, channel, publish.data, frames);
        inc(&self.counters.app(publish.app).publishes);
        self.audit_api_publish(
            publish.app,
            channel.as_str(),
            publish.event,
            publish.data.len(),
        );
        self.keep_for_inbox(publish.app, channel, publish.event, publish.data);
        let confirm = self.clustered().then(|| ReplyTo {
            shard: self.id,
            query: self.new_query(PendingQuery {
                awaiting: 1,
                answer: Answer::Applied,
            }),
        });
        self.publish_frames(publish.app, channel, frames, publish.except, confirm, now);
        self.drain_to_self(now);
        confirm.map(|reply_to| reply_to.query)
    }

    /// Queues an event for this shard's subscribers of the channel, each the shared frame of
    /// its wire; consumers whose queue overflows are closed.
    pub(super) fn deliver_local(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frames: &Frames,
        except: Option<SocketId>,
        published: Instant,
    ) {
        let Some(subscribers) = self.per_app[app].local.get(channel) else {
            return;
        };
        let cap = self.state.config.send_buffer_bytes;
        let tracked = frames.receipt();
        let mut overflowed = Vec::new();
        let mut delivered = 0u64;
        for &key in subscribers {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if Some(conn.socket_id) == except || conn.closing {
                continue;
            }
            delivered += 1;
            match enqueue(
                conn,
                key,
                (frames.get(conn.wire).clone(), Some(published)),
                cap,
                &mut self.ready,
                &self.counters,
            ) {
                Enqueued::Overflow => overflowed.push(key),
                Enqueued::Queued => {
                    if let Some(id) = tracked {
                        note_queued(conn, channel, id);
                    }
                }
            }
        }
        add(&self.counters.deliveries, delivered);
        add(&self.counters.app(app).deliveries, delivered);
        for key in overflowed {
            self.close_slow_consumer(key);
        }
    }
}
