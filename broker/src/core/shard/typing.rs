//! Typing state (`[apps.typing]`): a member's `client-typing` on a configured presence
//! channel sets their flag at the channel's home shard, `client-typing-stop` clears it, and
//! the home shard's timer clears a flag not renewed for `expire_secs`, announcing it to the
//! channel as a `client-typing-stop` from that member. A member whose last socket leaves
//! stops typing silently: the channel has just been told `member_removed`.

use std::time::Instant;

use serde_json::value::RawValue;

use super::Answer;
use super::Shard;
use super::mesh::{AnswerPart, ConnKey, MeshMsg, QueryId, ReplyTo};
use super::queries::PendingQuery;
use crate::core::channel::ChannelName;
use crate::core::counters::inc;
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::typing::{TYPING_STOP_EVENT, TypingChange, TypingSignal, Typists};
use crate::core::wire::{Event, Frames, Reply};

/// A member typing on a channel, as the typing query answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypingMember {
    /// The member's user id.
    pub user: UserId,
    /// When they started typing, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
}

/// A Socket.IO client waiting for a query's answer in its acknowledgement callback.
#[derive(Clone, Copy, Debug)]
pub(super) struct AckTo {
    conn: ConnKey,
    socket_id: SocketId,
    ack: u64,
}

impl Shard {
    /// After a client event was relayed: a typing signal from a member of a channel with
    /// typing state goes to the channel's home shard.
    pub(super) fn note_typing(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        event: &str,
        user: Option<&UserId>,
        now: Instant,
    ) {
        let (Some(signal), Some(user)) = (TypingSignal::of_event(event), user) else {
            return;
        };
        let covered = self.state.apps.get(app).config.typing.as_ref();
        if !covered.is_some_and(|typing| typing.covers(channel)) {
            return;
        }
        let msg = MeshMsg::Typing {
            app,
            channel: channel.clone(),
            user: user.clone(),
            signal,
        };
        self.send_home(app, channel, msg);
        self.drain_to_self(now);
    }

    /// At the home shard: applies a member's typing signal. A signal from someone the roster
    /// no longer has (they left while it was on its way) is dropped.
    pub(super) fn home_typing(
        &mut self,
        app: AppIdx,
        channel: ChannelName,
        user: &UserId,
        signal: TypingSignal,
        now: Instant,
    ) {
        let max = self.state.apps.get(app).config.max_presence_members;
        let state = &mut self.per_app[app];
        let is_member = state
            .homes
            .get(&channel)
            .and_then(|home| home.roster())
            .is_some_and(|roster| roster.members().any(|(id, _)| id == user));
        if !is_member {
            return;
        }
        let typists = state.typing.entry(channel).or_default();
        match typists.apply(user, signal, max, now) {
            TypingChange::Started => inc_gauge(&self.counters.typing_members, 1),
            TypingChange::Stopped => inc_gauge(&self.counters.typing_members, -1),
            TypingChange::Renewed | TypingChange::Unchanged => {}
        }
        self.per_app[app].typing.retain(|_, t| !t.is_empty());
    }

    /// At the home shard: `user`'s last socket left `channel`; they stop typing without an
    /// announcement of their own (the channel hears `member_removed`).
    pub(super) fn forget_typist(&mut self, app: AppIdx, channel: &ChannelName, user: &UserId) {
        let state = &mut self.per_app[app];
        let Some(typists) = state.typing.get_mut(channel) else {
            return;
        };
        if typists.forget(user) {
            inc_gauge(&self.counters.typing_members, -1);
        }
        if typists.is_empty() {
            state.typing.remove(channel);
        }
    }

    /// At the home shard: clears the flags not renewed within `expire_secs` and announces
    /// each as a `client-typing-stop` from its member to the whole channel.
    pub(super) fn typing_timers(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (app, state) in self.per_app.iter_mut() {
            let Some(typing) = self.state.apps.get(app).config.typing.as_ref() else {
                continue;
            };
            state.typing.retain(|channel, typists| {
                for user in typists.expire(now, typing.expire) {
                    expired.push((app, channel.clone(), user));
                }
                !typists.is_empty()
            });
        }
        for (app, channel, user) in expired {
            inc_gauge(&self.counters.typing_members, -1);
            inc(&self.counters.typing_expired);
            let data = serde_json::json!({ "user_id": user.as_str(), "expired": true });
            let Ok(data) = serde_json::value::to_raw_value(&data) else {
                continue;
            };
            self.announce_typing_stop(app, &channel, &user, &data, now);
        }
    }

    fn announce_typing_stop(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        user: &UserId,
        data: &RawValue,
        now: Instant,
    ) {
        let frames = Frames::encode(
            &Event::Client {
                event: TYPING_STOP_EVENT,
                channel,
                data,
                user: Some(user),
            },
            self.wires(app),
        );
        self.publish_frames(app, channel, frames, None, None, now);
    }

    /// At the home shard: who is typing on a channel.
    pub(super) fn answer_channel_typing(
        &mut self,
        reply_to: ReplyTo,
        app: AppIdx,
        channel: &ChannelName,
    ) {
        let wall = self.wall;
        let members = self.per_app[app]
            .typing
            .get(channel)
            .map(Typists::list)
            .unwrap_or_default()
            .into_iter()
            .map(|(user, since)| TypingMember {
                user,
                since_unix_ms: wall.unix_ms(since),
            })
            .collect();
        self.answer(reply_to, AnswerPart::Typing(members));
    }

    /// Socket.IO `typing:get`: the channel's typing members, answered to the client's
    /// acknowledgement once the home shard replies; a channel the client is not subscribed
    /// to, or that keeps no typing state, is answered `{"error": ...}` at once.
    pub(super) fn typing_get(
        &mut self,
        key: ConnKey,
        raw_channel: &str,
        ack: Option<u64>,
        now: Instant,
    ) {
        let (Some(ack), Some(conn)) = (ack, self.conns.get(key)) else {
            return;
        };
        let app = conn.app;
        let subscribed = conn.active_channel(raw_channel);
        let to = AckTo {
            conn: key,
            socket_id: conn.socket_id,
            ack,
        };
        let Some(channel) = subscribed else {
            self.ack_error(to, "not subscribed to the channel");
            return;
        };
        let typing = self.state.apps.get(app).config.typing.as_ref();
        if !typing.is_some_and(|t| t.covers(&channel)) {
            self.ack_error(
                to,
                "the channel keeps no typing state ([apps.typing] channels)",
            );
            return;
        }
        let query = self.new_query(PendingQuery {
            awaiting: 1,
            answer: Answer::Typing(Vec::new()),
        });
        self.acks.insert(query, to);
        let reply_to = ReplyTo {
            shard: self.id,
            query,
        };
        self.ask_typing(reply_to, app, channel);
        self.drain_to_self(now);
    }

    /// Hands a completed query to the Socket.IO client that asked for it, if one did;
    /// `Err` gives the answer back for the shell.
    pub(super) fn answer_ack(&mut self, query: QueryId, answer: Answer) -> Result<(), Answer> {
        let Some(to) = self.acks.remove(&query) else {
            return Err(answer);
        };
        let body = match answer {
            Answer::Typing(members) => typing_json(&members),
            _ => serde_json::json!({ "error": "the answer could not be read" }),
        };
        self.ack(to, &body);
        Ok(())
    }

    fn ack_error(&mut self, to: AckTo, why: &str) {
        self.ack(to, &serde_json::json!({ "error": why }));
    }

    fn ack(&mut self, to: AckTo, body: &serde_json::Value) {
        if self.socket_id(to.conn) != Some(to.socket_id) {
            return;
        }
        let payload = body.to_string();
        self.reply(
            to.conn,
            &Reply::Ack {
                id: to.ack,
                payload: &payload,
            },
        );
    }

    /// Asks the channel's home shard on this node who is typing (typing state is kept per
    /// node; see the README).
    pub(super) fn ask_typing(&mut self, reply_to: ReplyTo, app: AppIdx, channel: ChannelName) {
        let msg = MeshMsg::ChannelTyping {
            reply_to,
            app,
            channel: channel.clone(),
        };
        self.send_home(app, &channel, msg);
    }
}

/// The typing list as the API and `typing:get` answer it:
/// `{"users":[{"id":..,"since_ms":..}]}`, in the order the members started typing.
pub fn typing_json(members: &[TypingMember]) -> serde_json::Value {
    let users: Vec<serde_json::Value> = members
        .iter()
        .map(|m| serde_json::json!({ "id": m.user.as_str(), "since_ms": m.since_unix_ms }))
        .collect();
    serde_json::json!({ "users": users })
}

fn inc_gauge(gauge: &std::sync::atomic::AtomicI64, by: i64) {
    gauge.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
}
