//! Messages between shards.
//!
//! A channel's home shard owns its authoritative state (subscriber counts per shard, presence
//! roster); other shards reach it only through these messages, carried by bounded FIFO queues,
//! so that every channel sees one order of events.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Shard, home_shard};

use bytes::Bytes;

use crate::core::auth::channel::PresenceMember;
use crate::core::channel::ChannelName;
use crate::core::cluster::scripts::SyncReply;
use crate::core::cluster::{ChannelSync, ResyncRound};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::wire::{Frames, Wire};

/// A shard's index, `0..shard_count`.
pub type ShardId = usize;

/// Index of a connection in its shard's table (reused after close; always paired with the
/// [`SocketId`] to detect reuse).
pub type ConnKey = usize;

/// A pending query in the shard that started it. Never reused: the shell may still be waiting
/// on an answered query's id when the next query starts.
pub type QueryId = u64;

/// Where a query's answer goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReplyTo {
    /// The shard that asked.
    pub shard: ShardId,
    /// Its query id there.
    pub query: QueryId,
}

/// One message on the mesh.
#[derive(Debug)]
pub enum MeshMsg {
    /// To the home shard: a socket wants to join (its authorization already checked).
    Subscribe(Join),
    /// From the home shard: the join is recorded.
    SubscribeAccepted(Admission),
    /// From the home shard: the join was refused.
    SubscribeRefused {
        /// The socket's key.
        conn: ConnKey,
        /// The socket.
        socket_id: SocketId,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// The refusal, encoded for the socket's wire.
        frame: Bytes,
    },
    /// To the home shard: a socket that had joined has left.
    Unsubscribe {
        /// The socket's shard.
        shard: ShardId,
        /// The socket.
        socket_id: SocketId,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// Presence channels: the member who leaves.
        user: Option<UserId>,
    },
    /// To the home shard: deliver `frames` to every subscriber (but `except`).
    Publish {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// The event, encoded once per wire.
        frames: Frames,
        /// A socket that must not receive it (the sender, or `socket_id` of the API call).
        except: Option<SocketId>,
        /// When the event was accepted, for the delivery latency.
        published: Instant,
        /// Whether a cache channel keeps it as its last event (not presence notices).
        remember: bool,
    },
    /// From the home shard to each shard with subscribers: deliver locally.
    Deliver {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// The same frames as published.
        frames: Frames,
        /// A socket that must not receive it.
        except: Option<SocketId>,
        /// When the event was accepted, for the delivery latency.
        published: Instant,
        /// History channels: the event's id, which each subscriber's subscription notes as
        /// the last one queued to it.
        history_id: Option<u64>,
    },
    /// To a history channel's home shard: an identified user's connection ended while
    /// subscribed (not an unsubscribe), having been given `last_id`.
    Departed {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// Who left.
        user: UserId,
        /// The last history id queued to the connection on the channel.
        last_id: u64,
    },
    /// To the home shard: a page of a history channel's events.
    History {
        /// Where to answer.
        reply_to: ReplyTo,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// Only events after this id.
        since: Option<u64>,
        /// At most this many.
        limit: usize,
    },
    /// To the home shard: describe a channel.
    ChannelInfo {
        /// Where to answer.
        reply_to: ReplyTo,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// To every shard: list the occupied channels homed there.
    ListChannels {
        /// Where to answer.
        reply_to: ReplyTo,
        /// The app.
        app: AppIdx,
        /// Only names starting with this.
        prefix: String,
    },
    /// To the home shard: list a presence channel's users.
    ChannelUsers {
        /// Where to answer.
        reply_to: ReplyTo,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// To the home shard of an `[apps.typing]` channel: a member's typing signal.
    Typing {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// The member.
        user: UserId,
        /// Start (or renew), or stop.
        signal: crate::core::typing::TypingSignal,
    },
    /// To the home shard of an `[apps.receipts]` channel: a recipient reached a status.
    Receipt {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// The message's `id`.
        message: crate::core::receipts::MessageId,
        /// Who.
        recipient: crate::core::receipts::Recipient,
        /// Delivered or read.
        status: crate::core::receipts::ReceiptStatus,
        /// When.
        at: Instant,
    },
    /// To every shard: the receipts of a message, if tracked there.
    MessageStatus {
        /// Where to answer.
        reply_to: ReplyTo,
        /// The app.
        app: AppIdx,
        /// The message's `id`.
        message: crate::core::receipts::MessageId,
    },
    /// To the home shard: list the members typing on a channel.
    ChannelTyping {
        /// Where to answer.
        reply_to: ReplyTo,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// To the user's home shard: a socket signed in as `user` (`online` true) or went away.
    UserSockets {
        /// The app.
        app: AppIdx,
        /// The user.
        user: UserId,
        /// Whether a socket arrived (true) or left (false).
        online: bool,
    },
    /// To the home shards of watched users: start (or stop) watching them.
    Watch {
        /// The app.
        app: AppIdx,
        /// The watching socket.
        watcher: Watcher,
        /// Watched users homed on the receiving shard.
        users: Vec<UserId>,
        /// Start (true) or stop (false).
        start: bool,
    },
    /// From the cluster link to a user's home: the user came online on the cluster or went
    /// offline (on this node alone while Redis is out of reach); the user's watchers hear.
    ClusterUserStatus {
        /// The app.
        app: AppIdx,
        /// The user.
        user: UserId,
        /// Online or offline.
        online: bool,
    },
    /// From the cluster link to users' home while Redis is out of reach: tell `watcher`
    /// which of `users` are online on this node.
    WhoIsOnlineHere {
        /// The app.
        app: AppIdx,
        /// The watching socket.
        watcher: Watcher,
        /// The users (homed on the receiving shard).
        users: Vec<UserId>,
    },
    /// To a watcher's shard: users came online or went offline.
    WatchlistNotify {
        /// The watching socket.
        watcher: Watcher,
        /// `online` or `offline`.
        online: bool,
        /// The users.
        users: Vec<UserId>,
    },
    /// To every shard: set (or delete) a resource, then answer (unless it came from another
    /// node).
    SetResource {
        /// Where to answer.
        reply_to: Option<ReplyTo>,
        /// The app.
        app: AppIdx,
        /// Resource type.
        kind: String,
        /// Resource id.
        id: String,
        /// The resource; `None` deletes it.
        resource: Option<std::sync::Arc<crate::core::policy::Resource>>,
    },
    /// To every shard: close every socket `revocation` covers.
    RevokeToken {
        /// The app.
        app: AppIdx,
        /// What is revoked.
        revocation: crate::core::app::Revocation,
    },
    /// To every shard: close every socket signed in as `user`.
    TerminateUser {
        /// The app.
        app: AppIdx,
        /// The user.
        user: UserId,
    },
    /// From the cluster link to a channel's home shard: Redis applied a [`ChannelSync`]
    /// (`reply`), or could not be reached (`None`: the node is degraded and acts alone).
    ClusterSynced {
        /// What the home shard reported.
        sync: Box<ChannelSync>,
        /// The script's reply.
        reply: Option<Box<SyncReply>>,
    },
    /// From the cluster link to a channel's home shard: a webhook event this node claimed
    /// from the cluster's queue; the shard sends it.
    ClusterWebhook {
        /// The app.
        app: AppIdx,
        /// The event.
        event: crate::core::webhook::WebhookEvent,
    },
    /// From the cluster link to every shard: report your channels' complete state
    /// (after a reconnect to Redis), for resynchronization `round`.
    ClusterDump {
        /// Which resynchronization asks; the dump answers with it.
        round: ResyncRound,
    },
    /// An answer to a query.
    Answer {
        /// The query at the receiving shard.
        query: QueryId,
        /// One shard's part of the answer.
        part: AnswerPart,
    },
}

/// A socket asking its channel's home shard to admit it.
#[derive(Clone, Debug)]
pub struct Join {
    /// The socket's shard.
    pub shard: ShardId,
    /// The socket's key there.
    pub conn: ConnKey,
    /// The socket.
    pub socket_id: SocketId,
    /// The app.
    pub app: AppIdx,
    /// The channel.
    pub channel: ChannelName,
    /// Presence channels: who joins.
    pub member: Option<PresenceMember>,
    /// The socket's wire, which the home shard's answer is encoded for.
    pub wire: Wire,
    /// The identified user subscribing (JWT or backend identity, sign-in, presence
    /// member), whose departure from a history channel the home shard may replay from.
    pub recover_as: Option<UserId>,
    /// Socket.IO: the history id its client's offset named for this channel, replayed
    /// after when no departure applies.
    pub replay_after: Option<u64>,
}

/// The home shard's confirmation of a [`Join`].
#[derive(Debug)]
pub struct Admission {
    /// The socket's key.
    pub conn: ConnKey,
    /// The socket (guards against key reuse).
    pub socket_id: SocketId,
    /// The app.
    pub app: AppIdx,
    /// The channel.
    pub channel: ChannelName,
    /// Presence channels: the member admitted (needed to undo the join if the socket left
    /// meanwhile).
    pub user: Option<UserId>,
    /// The confirmation, encoded for the socket's wire.
    pub frame: Bytes,
    /// Sent right after, in order: a cache channel's cached event or cache miss, then a
    /// returning user's replay (`ringcast:replay_start`, the missed events,
    /// `ringcast:replay_end`).
    pub then: Vec<Bytes>,
    /// History channels: the last id the subscriber now has (what its departure will
    /// name unless later events reach it).
    pub history_id: Option<u64>,
}

/// A socket following users' online status (sign-in `watchlist`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watcher {
    /// The socket's shard.
    pub shard: ShardId,
    /// Its key there.
    pub conn: ConnKey,
    /// The socket (guards against key reuse).
    pub socket_id: SocketId,
}

/// What the home shard knows of one channel.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ChannelStats {
    /// Subscribed sockets on every shard.
    pub subscription_count: usize,
    /// Distinct presence users (0 for other kinds).
    pub user_count: usize,
}

/// One shard's contribution to a query answer.
#[derive(Debug)]
pub enum AnswerPart {
    /// For [`MeshMsg::ChannelInfo`].
    Channel(ChannelStats),
    /// For [`MeshMsg::ListChannels`]: occupied channels homed on one shard.
    Channels(Vec<(ChannelName, ChannelStats)>),
    /// For [`MeshMsg::ChannelUsers`].
    Users(Vec<UserId>),
    /// For [`MeshMsg::History`].
    History(crate::core::history::HistoryPage),
    /// For [`MeshMsg::MessageStatus`]: the message if this shard tracks it.
    MessageStatus(Option<super::MessageStatus>),
    /// For [`MeshMsg::ChannelTyping`].
    Typing(Vec<super::TypingMember>),
    /// For [`MeshMsg::SetResource`].
    Applied,
    /// The cluster's state could not be read (Redis became unreachable meanwhile).
    Unavailable,
}

impl Shard {
    /// Handles a message from another shard.
    pub fn handle_mesh(&mut self, msg: MeshMsg, now: Instant) {
        self.dispatch(msg, now);
        self.drain_to_self(now);
    }

    /// The next message for another shard.
    pub fn poll_mesh(&mut self) -> Option<(ShardId, MeshMsg)> {
        self.to_others.pop_front()
    }

    pub(super) fn send_home(&mut self, app: AppIdx, channel: &ChannelName, msg: MeshMsg) {
        let home = home_shard(app, channel, self.shard_count);
        self.send_to(home, msg);
    }

    pub(super) fn send_to(&mut self, shard: ShardId, msg: MeshMsg) {
        route(self.id, &mut self.to_self, &mut self.to_others, shard, msg);
    }

    pub(super) fn drain_to_self(&mut self, now: Instant) {
        while let Some(msg) = self.to_self.pop_front() {
            self.dispatch(msg, now);
        }
    }

    /// Routes one mesh message to the handler of its concern.
    pub(super) fn dispatch(&mut self, msg: MeshMsg, now: Instant) {
        match msg {
            MeshMsg::Subscribe(join) => self.home_subscribe(join, now),
            MeshMsg::SubscribeAccepted(admission) => self.subscribe_accepted(admission),
            MeshMsg::SubscribeRefused {
                conn,
                socket_id,
                channel,
                frame,
                ..
            } => self.subscribe_refused(conn, socket_id, &channel, frame),
            MeshMsg::Unsubscribe {
                shard,
                socket_id,
                app,
                channel,
                user,
            } => self.home_unsubscribe(shard, socket_id, app, &channel, user.as_ref(), now),
            MeshMsg::Publish {
                app,
                channel,
                frames,
                except,
                published,
                remember,
            } => self.home_event(app, &channel, frames, except, published, remember, now),
            MeshMsg::Deliver {
                app,
                channel,
                frames,
                except,
                published,
                history_id,
            } => {
                self.note_history_id(app, &channel, history_id);
                self.deliver_local(app, &channel, &frames, except, published)
            }
            MeshMsg::Departed {
                app,
                channel,
                user,
                last_id,
            } => self.home_departed(app, channel, user, last_id, now),
            MeshMsg::History {
                reply_to,
                app,
                channel,
                since,
                limit,
            } => self.answer_history(reply_to, app, &channel, since, limit),
            MeshMsg::ChannelInfo {
                reply_to,
                app,
                channel,
            } => self.answer_channel_info(reply_to, app, &channel),
            MeshMsg::ChannelUsers {
                reply_to,
                app,
                channel,
            } => self.answer_channel_users(reply_to, app, &channel),
            MeshMsg::ListChannels {
                reply_to,
                app,
                prefix,
            } => self.answer_list_channels(reply_to, app, &prefix),
            MeshMsg::Typing {
                app,
                channel,
                user,
                signal,
            } => self.home_typing(app, channel, &user, signal, now),
            MeshMsg::Receipt {
                app,
                channel,
                message,
                recipient,
                status,
                at,
            } => self.home_receipt(app, &channel, &message, recipient, status, at),
            MeshMsg::MessageStatus {
                reply_to,
                app,
                message,
            } => self.answer_message_status(reply_to, app, &message),
            MeshMsg::ChannelTyping {
                reply_to,
                app,
                channel,
            } => self.answer_channel_typing(reply_to, app, &channel),
            MeshMsg::UserSockets { app, user, online } => self.home_user_sockets(app, user, online),
            MeshMsg::Watch {
                app,
                watcher,
                users,
                start,
            } => self.home_watch(app, watcher, users, start),
            MeshMsg::ClusterUserStatus { app, user, online } => {
                self.notify_watchers(app, &user, online)
            }
            MeshMsg::WhoIsOnlineHere {
                app,
                watcher,
                users,
            } => self.tell_online_here(app, watcher, &users),
            MeshMsg::WatchlistNotify {
                watcher,
                online,
                users,
            } => self.notify_watcher(watcher, online, &users),
            MeshMsg::SetResource {
                reply_to,
                app,
                kind,
                id,
                resource,
            } => self.apply_resource(reply_to, app, kind, id, resource),
            MeshMsg::RevokeToken { app, revocation } => self.close_token_sockets(app, &revocation),
            MeshMsg::TerminateUser { app, user } => self.close_user_sockets(app, &user),
            MeshMsg::ClusterSynced { sync, reply } => self.cluster_synced(sync, reply, now),
            MeshMsg::ClusterWebhook { app, event } => self.webhook(app, event),
            MeshMsg::ClusterDump { round } => self.cluster_dump(round),
            MeshMsg::Answer { query, part } => self.gather(query, part),
        }
    }
}

/// Queues `msg` for `shard`: on this shard's own queue when it is `me`, else for the mesh.
pub(super) fn route(
    me: ShardId,
    to_self: &mut VecDeque<MeshMsg>,
    to_others: &mut VecDeque<(ShardId, MeshMsg)>,
    shard: ShardId,
    msg: MeshMsg,
) {
    if shard == me {
        to_self.push_back(msg);
    } else {
        to_others.push_back((shard, msg));
    }
}
