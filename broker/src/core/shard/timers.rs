//! What time decides: pings, token expiry, sign-in deadlines, delayed webhooks, cache expiry.

use std::time::{Duration, Instant};

use super::Shard;
use super::mesh::ConnKey;
use crate::core::webhook::{LEAVE_DELAY, WebhookEvent, WebhookKind};
use crate::core::wire::Fault;
use crate::core::wire::{Reply, Wire};

impl Shard {
    /// Pings connections that are due (Pusher: quiet ones; Socket.IO: every
    /// `ping_interval`) and closes those that did not answer in time.
    pub fn handle_tick(&mut self, now: Instant) {
        let mut to_ping = Vec::new();
        let mut to_close = Vec::new();
        let mut unsigned = Vec::new();
        let mut expired = Vec::new();
        self.forget_parked(now);
        for (key, conn) in &self.conns {
            if conn.closing || self.is_parked(key) {
                continue;
            }
            if conn.token_expires.is_some_and(|at| now >= at) {
                expired.push(key);
                continue;
            }
            let signin_timeout = self.state.apps.get(conn.app).config.signin_timeout;
            if let Some(limit) = signin_timeout
                && conn.user.is_none()
                && now.saturating_duration_since(conn.connected_at) >= limit
            {
                unsigned.push(key);
                continue;
            }
            let (interval, answer_within) = self.heartbeat(conn);
            match conn.ping_sent {
                Some(sent) if now.saturating_duration_since(sent) >= answer_within => {
                    to_close.push(key)
                }
                None if now.saturating_duration_since(conn.last_seen) >= interval => {
                    to_ping.push(key)
                }
                _ => {}
            }
        }
        for key in to_ping {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.ping_sent = Some(now);
            }
            self.reply(key, &Reply::Ping);
        }
        for key in to_close {
            self.send_error(key, Fault::PongNotReceived);
        }
        for key in expired {
            self.send_error(key, Fault::TokenExpired);
        }
        for key in unsigned {
            let text = "sign-in (pusher:signin) did not happen in time";
            self.send_error_message(key, Fault::Unauthorized, text);
        }
        self.home_timers(now);
        self.typing_timers(now);
        self.receipt_timers(now);
        self.drain_to_self(now);
    }

    /// How long after `last_seen` a connection is pinged, and how long it has to answer.
    /// Pusher clients are pinged after `activity_timeout` of silence; Engine.IO clients
    /// expect a ping every `pingInterval` and close the connection themselves when one is
    /// late, so for them `last_seen` moves only with their pongs.
    fn heartbeat(&self, conn: &super::conn::Conn) -> (Duration, Duration) {
        let socketio = match conn.wire {
            Wire::Pusher => None,
            Wire::SocketIo => self.state.apps.get(conn.app).config.socketio.as_ref(),
        };
        match socketio {
            Some(socketio) => (socketio.ping_interval, socketio.ping_timeout),
            None => (
                self.state.config.activity_timeout,
                self.state.config.pong_timeout,
            ),
        }
    }

    /// Sends delayed `channel_vacated` / `member_removed` webhooks that came due, forgets
    /// cached events past their TTL, and drops channels with nothing left to remember.
    pub(super) fn home_timers(&mut self, now: Instant) {
        self.history_timers(now);
        let mut due_events = Vec::new();
        for (app, state) in self.per_app.iter_mut() {
            let ttl = self.state.apps.get(app).config.cache_ttl;
            state.homes.retain(|name, home| {
                let due = home.due_leaves(now, LEAVE_DELAY);
                if due.vacated {
                    due_events.push((
                        app,
                        WebhookEvent::channel(WebhookKind::ChannelVacated, name.as_str()),
                    ));
                }
                for user in due.removed {
                    let event = WebhookEvent::member(
                        WebhookKind::MemberRemoved,
                        name.as_str(),
                        user.as_str(),
                    );
                    due_events.push((app, event));
                }
                home.forget_expired(now, ttl);
                !home.is_empty()
            });
        }
        for (app, event) in due_events {
            self.webhook(app, event);
        }
    }

    /// Closes every connection with 4200 (reconnect now), for a graceful shutdown.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<ConnKey> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.send_error(key, Fault::Reconnect);
        }
        self.drain_to_self(now);
    }
}
