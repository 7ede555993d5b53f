//! One shard's state: its connections, its local subscriber lists, and the channels homed on it.
//!
//! The shell owns the sockets and feeds this state machine: bytes in through
//! [`Shard::handle_input`], mesh messages through [`Shard::handle_mesh`], a clock tick through
//! [`Shard::handle_tick`]. Output leaves through [`Shard::take_ready`] / [`Shard::take_output`]
//! (frames per socket) and [`Shard::poll_mesh`] (messages to other shards). Messages addressed to
//! this shard itself are processed before the `handle_*` call returns, so a single-shard server
//! and a many-shard one run the same code.
//!
//! One `impl Shard` block per concern, each in its own file:
//!
//! | file | what it decides |
//! |---|---|
//! | `accept.rs` | who may connect (path, protocol, app, origin, token, quotas), and what a disconnect undoes |
//! | `dispatch.rs` | reading frames and routing each client message to its handler |
//! | `subscribe.rs` | the socket's side of a subscription: signature, policy, pending → active, leaving |
//! | `home.rs` | the home shard's side: admission, counts, presence member events, fan-out to shards |
//! | `events.rs` | client events and API publishes, and delivery to this shard's subscribers |
//! | `history.rs` | history channels' kept events, departures and replays, the history API |
//! | `users.rs` | sign-in, watchlists and user homes, `terminate_connections` |
//! | `commands.rs` | what the HTTP API applies on every shard: resources, token revocation |
//! | `queries.rs` | questions answered by one or more shards (`/channels`, `/users`) |
//! | `outbox.rs` | per-socket output queues, their byte cap, and closing |
//! | `audit.rs`, `webhooks.rs` | what is recorded about decisions, and what app backends are told |
//! | `inbox.rs` | which published events users' inboxes keep (`[apps.inbox]`) |
//! | `timers.rs` | pings, expiry, sign-in deadlines, delayed webhooks |
//! | `receipts.rs` | `[apps.receipts]`: messages tracked at home, deliveries seen by the writer, reads, the status query |
//! | `typing.rs` | typing flags on `[apps.typing]` channels, their expiry and the typing query |
//! | `mesh.rs` | the messages between shards and the one `match` that routes them |
//! | `cluster.rs` | what home shards report to the node's Redis link, and act on from it |

mod accept;
mod audit;
mod cluster;
mod commands;
mod conn;
mod dispatch;
mod events;
mod history;
mod home;
mod home_channel;
mod inbox;
pub mod mesh;
mod outbox;
mod queries;
mod reauthorize;
mod receipts;
mod renew;
mod subscribe;
mod timers;
mod typing;
mod users;
mod webhooks;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use indexmap::IndexSet;
use slab::Slab;

pub use self::audit::AuditAction;
use self::conn::Conn;
pub use self::conn::{Close, Closer, Ended};
use self::home_channel::HomeChannel;
pub use self::mesh::{
    Admission, AnswerPart, ChannelStats, ConnKey, Join, MeshMsg, QueryId, ReplyTo, ShardId, Watcher,
};
use self::queries::PendingQuery;
pub use self::receipts::{MessageStatus, RecipientStatus, status_json};
pub use self::renew::WallClock;
pub use self::typing::{TypingMember, typing_json};
use self::users::UserHome;
use crate::core::app::AppTable;
use crate::core::auth::backend::Verdict;
use crate::core::auth::jwt::Identity;
use crate::core::channel::ChannelName;
use crate::core::cluster::{ClusterStatus, NodeId};
use crate::core::counters::ShardCounters;
use crate::core::counters::TenantCounters;
use crate::core::ids::{AppIdx, PerApp, SocketId, UserId};
use crate::core::options::{AppConfig, ServerConfig};
use crate::core::policy::Resources;
use crate::core::rand::SplitMix64;
use crate::core::webhook::WebhookEvent;
use crate::core::wire::{Fault, ForwardHeaders, Wire, Wires};
use ringcast_shared::AuditRecord;

/// What every shard shares, read-only (but for the atomics inside): the options, the app
/// table, the tenant counters and the cluster link's status.
pub struct Shared {
    /// Server settings.
    pub config: ServerConfig,
    /// The apps.
    pub apps: AppTable,
    /// Failed authorizations and open connections per app and tenant (read by `/metrics`
    /// and the dashboard).
    pub tenants: TenantCounters,
    /// The cluster link's status; `None` for a single node.
    pub cluster: Option<ClusterStatus>,
    /// Resources loaded from the store at start, per app (each shard starts from a copy).
    pub initial_resources: PerApp<Resources>,
    /// History loaded from the store at start, per app and channel (each shard keeps the
    /// channels homed on it).
    pub initial_history: PerApp<Vec<(ChannelName, Vec<crate::core::history::StoredEvent>)>>,
    /// Where the shards' randomness comes from: each derives its own stream from it, so a
    /// test (or a replay) that fixes the seed gets the same socket ids.
    pub seed: u64,
}

impl Shared {
    /// The shared state for `server` and `apps`, with fresh counters and no stored resources;
    /// `node` names this node when `server.cluster` is set.
    pub fn new(server: ServerConfig, apps: &[AppConfig], node: NodeId, seed: u64) -> Self {
        Self {
            apps: AppTable::new(apps, server.max_connections),
            tenants: TenantCounters::default(),
            cluster: server.cluster.as_ref().map(|_| ClusterStatus::new(node)),
            initial_resources: PerApp::new(apps.len(), Resources::default),
            initial_history: PerApp::new(apps.len(), Vec::new),
            config: server,
            seed,
        }
    }
}

/// What the shell learned from a WebSocket upgrade request.
pub struct ConnectRequest<'a> {
    /// The wire protocol the connection speaks (the shell knows it from the path).
    pub wire: Wire,
    /// The request path, e.g. `/app/{key}`.
    pub path: &'a str,
    /// The `protocol` query parameter, if present.
    pub protocol: Option<&'a str>,
    /// The `Origin` header, if present.
    pub origin: Option<&'a str>,
    /// The peer's address.
    pub remote: IpAddr,
    /// Who the client says it is.
    pub credentials: Credentials<'a>,
    /// Wall-clock seconds since the Unix epoch, for token expiry.
    pub now_unix: u64,
    /// Socket.IO connection state recovery: the private session id (`pid`) the connection
    /// is known by if its transport is lost; `None`: not recoverable.
    pub recovery_pid: Option<&'a str>,
}

/// What identifies a connection, as the shell found it in the upgrade request.
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    /// A JWT from the `token` query parameter, the path, `Sec-WebSocket-Protocol` or
    /// `Authorization`, or none.
    Token(Option<&'a str>),
    /// What the app's backend answered for the forwarded credentials
    /// (`[apps.token_verification]`).
    Backend {
        /// The backend's (or the cache's) verdict.
        verdict: &'a Verdict,
        /// The actor the client asked for (`actor_header`); `None`: the default actor.
        requested_actor: Option<&'a str>,
    },
}

/// The outcome of [`Shard::accept_websocket`].
pub enum Accept {
    /// The connection is open; `connection_established` is queued.
    Open(ConnKey),
    /// The connection is refused: write these frames (the error, then the close frame) and
    /// close the socket.
    Refused(Bytes, Fault),
}

/// What the shell should do after writing what [`Shard::take_output`] returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutputState {
    /// Keep the connection open.
    Open,
    /// Everything, including the close frame, has been handed out: close the socket.
    Close,
}

/// What [`Shard::take_output`] handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// Whether the connection is to be closed once these frames are written.
    pub state: OutputState,
    /// When the oldest published event among the frames was accepted.
    pub oldest_event: Option<Instant>,
    /// How many of the frames are published events (the rest are replies and control).
    pub events: usize,
    /// Frames of `[apps.receipts]` messages are among them: once they are written, call
    /// [`Shard::handle_written`] so that their recipients count as `DELIVERED`.
    pub receipts: bool,
}

/// A subscription for the app's auth endpoint to decide (Socket.IO clients, authorized the
/// way laravel-echo-server authorizes them): the shell POSTs, and hands the answer to
/// [`Shard::handle_channel_auth`].
#[derive(Debug)]
pub struct AuthCall {
    /// The app (whose `[apps.socketio] auth_endpoint` is asked).
    pub app: AppIdx,
    /// The subscribing connection.
    pub conn: ConnKey,
    /// Its socket id (sent to the endpoint as `socket_id`).
    pub socket_id: SocketId,
    /// The channel (sent as `channel_name`).
    pub channel: ChannelName,
    /// The client's `auth.headers`, forwarded as they are.
    pub headers: ForwardHeaders,
}

/// An event to publish on behalf of the HTTP API.
pub struct Publish<'a> {
    /// The app.
    pub app: AppIdx,
    /// The event name.
    pub event: &'a str,
    /// The data string.
    pub data: &'a str,
    /// A socket to exclude (`socket_id`, Laravel's `toOthers`).
    pub except: Option<SocketId>,
}

/// A query whose answer is gathered from one or more shards.
#[derive(Debug)]
pub enum Query {
    /// Stats of one channel.
    Channel {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// Occupied channels, optionally filtered by prefix.
    Channels {
        /// The app.
        app: AppIdx,
        /// Only names starting with this.
        prefix: String,
    },
    /// Users of a presence channel.
    Users {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// The receipts of an `[apps.receipts]` message, from whichever shard tracks it.
    MessageStatus {
        /// The app.
        app: AppIdx,
        /// The message's `id`.
        message: crate::core::receipts::MessageId,
    },
    /// Members typing on an `[apps.typing]` channel, as this node's home shard has them.
    Typing {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// A page of a history channel's events, from its home shard on this node (history is
    /// per node, even in a cluster).
    History {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// Only events after this id.
        since: Option<u64>,
        /// At most this many.
        limit: usize,
    },
}

/// A gathered answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// For [`Query::Channel`].
    Channel(ChannelStats),
    /// For [`Query::Channels`], sorted by name.
    Channels(Vec<(ChannelName, ChannelStats)>),
    /// For [`Query::Users`].
    Users(Vec<UserId>),
    /// For [`Query::History`].
    History(crate::core::history::HistoryPage),
    /// For [`Query::MessageStatus`]; `None`: no shard tracks the message.
    MessageStatus(Option<MessageStatus>),
    /// For [`Query::Typing`], in the order the members started typing.
    Typing(Vec<TypingMember>),
    /// Every shard applied an update.
    Applied,
    /// Cluster-wide state could not be read.
    Unavailable,
}

/// What one shard keeps for one app.
#[derive(Default)]
struct AppShard {
    /// Subscribers on this shard, per channel.
    local: HashMap<ChannelName, IndexSet<ConnKey>>,
    /// Channels homed here.
    homes: HashMap<ChannelName, HomeChannel>,
    /// Signed-in sockets on this shard, per user.
    users: HashMap<UserId, Vec<ConnKey>>,
    /// Users homed here: signed-in sockets on every shard, and who watches them.
    user_homes: HashMap<UserId, UserHome>,
    /// Resources set by the app's backend (replicated to every shard).
    resources: Resources,
    /// History channels homed here, and who left them.
    history: crate::core::history::AppHistory,
    /// History channels with subscribers here: the id of the last event delivered to them.
    /// Every active subscriber on this shard got every event up to it (events reach a
    /// shard's subscribers together, in order), so one id per channel is each one's.
    history_delivered: HashMap<ChannelName, u64>,
    /// `[apps.receipts]` messages of channels homed here.
    receipts: crate::core::receipts::ReceiptStore,
    /// `[apps.typing]` channels homed here with members typing.
    typing: HashMap<ChannelName, crate::core::typing::Typists>,
}

/// One shard of the broker. See the module docs for the calling order.
pub struct Shard {
    id: ShardId,
    shard_count: usize,
    state: Arc<Shared>,
    counters: Arc<ShardCounters>,
    conns: Slab<Conn>,
    per_app: PerApp<AppShard>,
    to_self: VecDeque<MeshMsg>,
    to_others: VecDeque<(ShardId, MeshMsg)>,
    ready: Vec<ConnKey>,
    queries: HashMap<QueryId, PendingQuery>,
    next_query: QueryId,
    answers: Vec<(QueryId, Answer)>,
    /// Queries asked by Socket.IO clients, whose answers go to their acknowledgements.
    acks: HashMap<QueryId, self::typing::AckTo>,
    webhooks: Vec<(AppIdx, WebhookEvent)>,
    audit: Vec<AuditRecord>,
    /// Events for users' inboxes, until the shell takes them for the store.
    inbox: Vec<crate::core::inbox::InboxWrite>,
    cluster_out: Vec<crate::core::cluster::ClusterOut>,
    auth_calls: Vec<AuthCall>,
    /// What the history store is to do.
    history_out: Vec<crate::core::history::HistoryWrite>,
    /// Recoverable connections whose transport is lost, by their `pid`.
    parked: HashMap<Box<str>, ConnKey>,
    next_socket: u64,
    socket_prefix: u64,
    /// Unix time for the monotonic clock, for tokens read after connect (renewals).
    wall: WallClock,
}

/// The home shard of a channel: a stable hash of the app and the name.
pub fn home_shard(app: AppIdx, channel: &ChannelName, shard_count: usize) -> ShardId {
    // DefaultHasher::new() uses fixed keys, so every shard computes the same home.
    let mut hasher = DefaultHasher::new();
    app.hash(&mut hasher);
    channel.as_str().hash(&mut hasher);
    (hasher.finish() % shard_count.max(1) as u64) as ShardId
}

/// The shard that counts a signed-in user's sockets and keeps their watchers.
pub fn user_home_shard(app: AppIdx, user: &UserId, shard_count: usize) -> ShardId {
    let mut hasher = DefaultHasher::new();
    app.hash(&mut hasher);
    user.as_str().hash(&mut hasher);
    (hasher.finish() % shard_count.max(1) as u64) as ShardId
}

impl Shard {
    /// A shard `id` of `shard_count`, sharing `state`, with the wall clock as of now.
    pub fn new(
        id: ShardId,
        shard_count: usize,
        state: Arc<Shared>,
        counters: Arc<ShardCounters>,
        wall: WallClock,
    ) -> Self {
        let per_app = state
            .initial_resources
            .values()
            .map(|resources| AppShard {
                resources: resources.clone(),
                ..AppShard::default()
            })
            .collect();
        let mut shard = Self {
            id,
            shard_count,
            counters,
            conns: Slab::new(),
            per_app,
            to_self: VecDeque::new(),
            to_others: VecDeque::new(),
            ready: Vec::new(),
            queries: HashMap::new(),
            next_query: 0,
            answers: Vec::new(),
            acks: HashMap::new(),
            webhooks: Vec::new(),
            audit: Vec::new(),
            inbox: Vec::new(),
            cluster_out: Vec::new(),
            auth_calls: Vec::new(),
            history_out: Vec::new(),
            parked: HashMap::new(),
            next_socket: 0,
            wall,
            // The first half of a socket id is random so ids are not guessable across restarts.
            socket_prefix: SplitMix64::new(state.seed ^ id as u64).below(999_999_999) + 1,
            state,
        };
        shard.restore_history();
        shard
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// This shard's counters.
    pub fn counters(&self) -> &Arc<ShardCounters> {
        &self.counters
    }

    /// What every shard shares.
    pub fn state(&self) -> &Arc<Shared> {
        &self.state
    }

    /// The policy resources of `app` (every shard holds them all).
    pub fn resources(&self, app: AppIdx) -> &Resources {
        &self.per_app[app].resources
    }

    /// Open connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Gives back the capacity of tables that grew during a connection peak (the connection
    /// table keeps its keys; only trailing free slots go).
    pub fn release_memory(&mut self) {
        self.conns.shrink_to_fit();
        for app in self.per_app.values_mut() {
            app.local.shrink_to_fit();
            app.homes.shrink_to_fit();
            app.users.shrink_to_fit();
        }
        self.ready.shrink_to_fit();
    }

    /// The socket id of an open connection.
    pub fn socket_id(&self, key: ConnKey) -> Option<SocketId> {
        self.conns.get(key).map(|c| c.socket_id)
    }

    /// The wires the connections of `app` speak, which its events are encoded for.
    pub(super) fn wires(&self, app: AppIdx) -> Wires {
        Wires::of(&self.state.apps.get(app).config)
    }

    /// The app of an open connection.
    pub fn conn_app(&self, key: ConnKey) -> Option<AppIdx> {
        self.conns.get(key).map(|c| c.app)
    }

    /// The verified token identity of a connection.
    pub fn identity(&self, key: ConnKey) -> Option<&Identity> {
        self.conns.get(key).and_then(|c| c.identity.as_deref())
    }
}
