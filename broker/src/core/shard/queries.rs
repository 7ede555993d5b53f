//! Questions answered by one or more shards (`/channels`, `/channels/{name}`, `/users`).

use std::time::Instant;

use super::home_channel::HomeChannel;
use super::mesh::{AnswerPart, ChannelStats, MeshMsg, QueryId, ReplyTo};
use super::{Answer, Query, Shard};
use crate::core::channel::ChannelName;
use crate::core::ids::AppIdx;

/// A query waiting for the shards' parts of its answer.
pub(super) struct PendingQuery {
    pub(super) awaiting: usize,
    pub(super) answer: Answer,
}

impl Shard {
    /// Starts a query; its answer appears in [`Shard::take_answers`] once every shard involved
    /// has replied (at once, if they are all this one).
    pub fn start_query(&mut self, query: Query, now: Instant) -> QueryId {
        let (awaiting, answer) = match &query {
            Query::Channel { .. } => (1, Answer::Channel(ChannelStats::default())),
            Query::Channels { .. } => (self.shard_count, Answer::Channels(Vec::new())),
            Query::Users { .. } => (1, Answer::Users(Vec::new())),
            Query::History { .. } => (1, Answer::History(Default::default())),
            Query::Typing { .. } => (1, Answer::Typing(Vec::new())),
            Query::MessageStatus { .. } => (self.shard_count, Answer::MessageStatus(None)),
        };
        let id = self.new_query(PendingQuery { awaiting, answer });
        let reply_to = ReplyTo {
            shard: self.id,
            query: id,
        };
        // A cluster answers from Redis, for every node at once; when Redis is out of reach,
        // this node's shards answer for this node.
        // Typing state, receipts and history are per node: this node's shards answer
        // them, even in a cluster.
        let node_local = matches!(
            query,
            Query::Typing { .. } | Query::MessageStatus { .. } | Query::History { .. }
        );
        if self.cluster_up() && !node_local {
            if let Some(pending) = self.queries.get_mut(&id) {
                pending.awaiting = 1;
            }
            self.cluster_out
                .push(crate::core::cluster::ClusterOut::Query { reply_to, query });
            return id;
        }
        match query {
            Query::Channel { app, channel } => {
                let msg = MeshMsg::ChannelInfo {
                    reply_to,
                    app,
                    channel: channel.clone(),
                };
                self.send_home(app, &channel, msg);
            }
            Query::Users { app, channel } => {
                let msg = MeshMsg::ChannelUsers {
                    reply_to,
                    app,
                    channel: channel.clone(),
                };
                self.send_home(app, &channel, msg);
            }
            Query::History {
                app,
                channel,
                since,
                limit,
            } => {
                let msg = MeshMsg::History {
                    reply_to,
                    app,
                    channel: channel.clone(),
                    since,
                    limit,
                };
                self.send_home(app, &channel, msg);
            }
            Query::Typing { app, channel } => self.ask_typing(reply_to, app, channel),
            Query::MessageStatus { app, message } => {
                for shard in 0..self.shard_count {
                    let msg = MeshMsg::MessageStatus {
                        reply_to,
                        app,
                        message: message.clone(),
                    };
                    self.send_to(shard, msg);
                }
            }
            Query::Channels { app, prefix } => {
                for shard in 0..self.shard_count {
                    let msg = MeshMsg::ListChannels {
                        reply_to,
                        app,
                        prefix: prefix.clone(),
                    };
                    self.send_to(shard, msg);
                }
            }
        }
        self.drain_to_self(now);
        id
    }

    pub(super) fn new_query(&mut self, pending: PendingQuery) -> QueryId {
        self.next_query += 1;
        self.queries.insert(self.next_query, pending);
        self.next_query
    }

    /// Completed query answers.
    pub fn take_answers(&mut self) -> std::vec::Drain<'_, (QueryId, Answer)> {
        self.answers.drain(..)
    }

    pub(super) fn answer(&mut self, reply_to: ReplyTo, part: AnswerPart) {
        let msg = MeshMsg::Answer {
            query: reply_to.query,
            part,
        };
        self.send_to(reply_to.shard, msg);
    }

    pub(super) fn gather(&mut self, query: QueryId, part: AnswerPart) {
        let Some(pending) = self.queries.get_mut(&query) else {
            return;
        };
        match (&mut pending.answer, part) {
            (Answer::Channel(stats), AnswerPart::Channel(part)) => *stats = part,
            (Answer::Users(users), AnswerPart::Users(part)) => *users = part,
            (Answer::History(page), AnswerPart::History(part)) => *page = part,
            (Answer::Typing(members), AnswerPart::Typing(part)) => *members = part,
            (Answer::MessageStatus(status @ None), AnswerPart::MessageStatus(part)) => {
                *status = part
            }
            (Answer::Channels(list), AnswerPart::Channels(part)) => list.extend(part),
            (Answer::Applied, AnswerPart::Applied) => {}
            (answer, AnswerPart::Unavailable) => *answer = Answer::Unavailable,
            _ => {}
        }
        pending.awaiting -= 1;
        if pending.awaiting == 0 {
            let Some(mut done) = self.queries.remove(&query) else {
                return;
            };
            if let Answer::Channels(list) = &mut done.answer {
                list.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            }
            if let Err(answer) = self.answer_ack(query, done.answer) {
                self.answers.push((query, answer));
            }
        }
    }

    /// At the home shard: one channel's counts.
    pub(super) fn answer_channel_info(
        &mut self,
        reply_to: ReplyTo,
        app: AppIdx,
        channel: &ChannelName,
    ) {
        let stats = self.per_app[app]
            .homes
            .get(channel)
            .map(HomeChannel::stats)
            .unwrap_or_default();
        self.answer(reply_to, AnswerPart::Channel(stats));
    }

    /// At the home shard: a presence channel's users.
    pub(super) fn answer_channel_users(
        &mut self,
        reply_to: ReplyTo,
        app: AppIdx,
        channel: &ChannelName,
    ) {
        let users = self.per_app[app]
            .homes
            .get(channel)
            .map(HomeChannel::users)
            .unwrap_or_default();
        self.answer(reply_to, AnswerPart::Users(users));
    }

    /// On every shard: the occupied channels homed here whose names start with `prefix`.
    pub(super) fn answer_list_channels(&mut self, reply_to: ReplyTo, app: AppIdx, prefix: &str) {
        let channels = self.per_app[app]
            .homes
            .iter()
            .filter(|(name, home)| name.as_str().starts_with(prefix) && home.is_occupied())
            .map(|(name, home)| (name.clone(), home.stats()))
            .collect();
        self.answer(reply_to, AnswerPart::Channels(channels));
    }
}
