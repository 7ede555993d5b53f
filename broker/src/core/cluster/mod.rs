//! Several broker nodes sharing one Redis: what travels between a node and Redis, as data.
//!
//! A node's shards keep running the single-node model (channel homes, one `Bytes` per publish).
//! Cluster mode adds one link per node (the state machine [`link::Link`], driven by a socket
//! loop in the shell) and these rules:
//!
//! - **Events go round through Redis.** A publish (HTTP API or client event) is sent to the
//!   cluster's one pub/sub channel as an [`Envelope::Event`] carrying the complete WebSocket
//!   frame; every node, the sender included, delivers it when it comes back. Redis orders
//!   everything published on one channel, so every subscriber on every node sees a channel's
//!   events in the same order, and each node delivers each event once. While Redis is
//!   unreachable the link hands events straight back for local delivery (degraded mode).
//! - **Shared state is per node and absolute.** A channel's home shard reports its node's
//!   subscriber count for the channel and which users it has there ([`ChannelSync`]). A Lua
//!   script ([`Script::Sync`]) stores these per node and keeps the cluster totals; because
//!   the reports are absolute and idempotent, re-sending them after a reconnect cannot double
//!   count. The script sees cluster-wide transitions atomically and queues their webhook
//!   events in Redis, where any node claims them once they are due (see [`scripts`]).
//!   `member_added` / `member_removed` frames are published by the script itself, in the same
//!   atomic step, so they are ordered with the channel's other events.
//! - **Cache channels are shared.** Their events are published with
//!   [`Script::PublishCached`], which keeps the envelope as the channel's last event in the
//!   same atomic step. A node with no copy of its own asks for Redis's in the subscription's
//!   [`ChannelSync`]. Presence notices travel as [`Envelope::Event`] with `notice` set, so
//!   they are never kept.
//! - **Nodes heartbeat.** Each node records a heartbeat in a sorted set; a node silent for
//!   longer than the timeout is removed by whichever node notices first
//!   ([`Script::Heartbeat`]): its counts are subtracted and its members removed, with the
//!   `member_removed` frames it stored when they joined. So a `kill -9` leaves no ghost
//!   members.
//! - **Watchlists are cluster-wide.** Each user's home shard reports the user's first and
//!   last socket on its node ([`Script::User`]); the script counts nodes per user and
//!   publishes [`Envelope::UserStatus`] when a user comes online on the first node or goes
//!   offline on the last, and keeps the offline message for a dead node, like presence.
//! - **Commands fan out.** `terminate_connections`, token revocation and policy resources are
//!   applied at once on the node that received the API call and broadcast to the others;
//!   resources and revocations are also kept in Redis ([`Script::Record`]) and loaded by
//!   every node when it (re)connects ([`Script::Resources`], [`Script::Revoked`]).
//!
//! [`Script::Sync`]: scripts::Script::Sync
//! [`Script::PublishCached`]: scripts::Script::PublishCached
//! [`Script::Heartbeat`]: scripts::Script::Heartbeat
//! [`Script::User`]: scripts::Script::User
//! [`Script::Record`]: scripts::Script::Record
//! [`Script::Resources`]: scripts::Script::Resources
//! [`Script::Revoked`]: scripts::Script::Revoked

pub mod link;
pub mod resp;
pub mod scripts;
pub mod wire;

use std::fmt;

use bytes::Bytes;

use crate::core::channel::ChannelName;
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::shard::ReplyTo;

pub use self::wire::Envelope;

/// Which resynchronization a dump belongs to: a dump asked for before the connection broke
/// must not count toward the next one.
pub type ResyncRound = u64;

/// A node's identity in the cluster: random per process, so a restarted node is a new node
/// and its previous incarnation is cleaned up like any dead node.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct NodeId(Box<str>);

impl NodeId {
    /// The id made of 64 random bits the shell drew (16 hex digits).
    pub fn from_bits(bits: u64) -> Self {
        Self(format!("{bits:016x}").into())
    }

    /// An id read back from Redis or the wire; `None` unless it is 1 to 64 characters of
    /// `[A-Za-z0-9_.-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        valid.then(|| Self(raw.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a shard asks of its node's cluster link.
#[derive(Debug)]
pub enum ClusterOut {
    /// Publish an event to every node (including this one).
    Publish {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
        /// The event, encoded once per wire.
        frames: crate::core::wire::Frames,
        /// The socket that must not receive it.
        except: Option<SocketId>,
        /// Where to answer [`crate::core::shard::AnswerPart::Applied`] once Redis has
        /// accepted the event (or this node delivered it alone, degraded), and `Unavailable`
        /// if Redis refused it or the connection broke before it answered. The HTTP API
        /// waits for it, so a backend's next publish, through any node, comes after this one.
        confirm: Option<ReplyTo>,
    },
    /// Tell the other nodes (this one has already applied it).
    Broadcast(Command),
    /// A channel's state on this node changed (sent by its home shard).
    Sync(Box<ChannelSync>),
    /// Answer a query from the cluster-wide state.
    Query {
        /// Where the answer goes.
        reply_to: ReplyTo,
        /// What is asked (answered for the whole cluster).
        query: crate::core::shard::Query,
    },
    /// A signed-in user's first socket on this node arrived (`online`), or its last one
    /// left (sent by the user's home shard).
    UserStatus {
        /// The app.
        app: AppIdx,
        /// The user.
        user: UserId,
        /// Whether the user now has a socket on this node.
        online: bool,
    },
    /// Tell `watcher` which of `users` are online anywhere in the cluster.
    WhoIsOnline {
        /// The app.
        app: AppIdx,
        /// The watching socket.
        watcher: crate::core::shard::Watcher,
        /// The users it watches, homed on the sending shard.
        users: Vec<UserId>,
    },
    /// One shard's part of a resynchronization: its homed channels' and users' state.
    Dump {
        /// The resynchronization that asked ([`MeshMsg::ClusterDump`]).
        ///
        /// [`MeshMsg::ClusterDump`]: crate::core::shard::MeshMsg::ClusterDump
        round: ResyncRound,
        /// The channels (each with `op` [`PresenceOp::Join`] for every user present).
        channels: Vec<ChannelSync>,
        /// Users homed on the shard with a socket on this node.
        users: Vec<(AppIdx, UserId)>,
        /// The node's policy resources (from one shard only: every shard has them all).
        resources: Vec<StoredResource>,
    },
}

/// A policy resource as nodes keep it in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResource {
    /// The app.
    pub app: AppIdx,
    /// Resource type.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// The resource as JSON.
    pub json: String,
}

/// A command every node applies to its own sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Close every socket signed in as `user` (`terminate_connections`).
    Terminate {
        /// The app's id.
        app: String,
        /// The user.
        user: String,
    },
    /// Refuse what `revocation` covers until `until_unix`, and close the sockets it covers.
    Revoke {
        /// The app's id.
        app: String,
        /// What is revoked (sent as its [`Revocation::key`]).
        revocation: crate::core::app::Revocation,
        /// Until when (Unix seconds).
        until_unix: u64,
    },
    /// Set (JSON text) or delete (`None`) a policy resource.
    Resource {
        /// The app's id.
        app: String,
        /// Resource type.
        kind: String,
        /// Resource id.
        id: String,
        /// The resource as JSON, or `None` to delete it.
        json: Option<String>,
    },
}

/// A channel's state on this node, reported by its home shard.
#[derive(Debug, Clone)]
pub struct ChannelSync {
    /// The app.
    pub app: AppIdx,
    /// The channel.
    pub channel: ChannelName,
    /// Subscribed sockets on this node (absolute, not a difference).
    pub node_subscribers: u32,
    /// Presence membership change of this node, if any.
    pub op: Option<PresenceOp>,
    /// A socket waiting for the cluster's answer before it is confirmed: presence
    /// subscriptions (for the roster) and cache channels this node has no last event for.
    pub waiting: Option<crate::core::shard::Join>,
    /// Ask Redis for the cache channel's last event (this node has none).
    pub fetch_cache: bool,
    /// The transitions as this node alone sees them, acted on instead of the cluster's when
    /// Redis cannot be reached.
    pub local: Transitions,
}

/// A user's presence on this node changed.
#[derive(Debug, Clone)]
pub enum PresenceOp {
    /// The user's first socket on this node joined.
    Join {
        /// The user.
        user: UserId,
        /// `user_info` JSON text.
        info: Option<std::sync::Arc<str>>,
        /// The envelope to publish if the user is new to the cluster (`member_added`).
        added: Bytes,
        /// The envelope to publish when the user leaves the cluster (`member_removed`);
        /// Redis keeps it so that another node can send it if this one dies.
        removed: Bytes,
        /// The roster's capacity (0: unlimited).
        max_members: usize,
    },
    /// The user's last socket on this node left.
    Leave {
        /// The user.
        user: UserId,
    },
}

/// Cluster-wide transitions of one channel, found by the script that applied a change; the
/// node that receives them is the only one that does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transitions {
    /// `Some(true)`: the channel became occupied; `Some(false)`: it became vacant.
    pub occupied: Option<bool>,
    /// Users new to the cluster.
    pub added: Vec<UserId>,
    /// Users gone from the cluster.
    pub removed: Vec<UserId>,
    /// The channel's subscriber count on every node, after the change.
    pub total: u64,
}

/// The roster of a presence channel across the cluster: user ids with their `user_info`.
pub type Roster = Vec<(UserId, Option<std::sync::Arc<str>>)>;

/// The cluster link as the rest of the node sees it: shared by the link thread, the shards
/// and `/metrics`.
#[derive(Debug)]
pub struct ClusterStatus {
    /// This node.
    pub node: NodeId,
    up: std::sync::atomic::AtomicBool,
    /// Messages published to Redis.
    pub published: std::sync::atomic::AtomicU64,
    /// Messages received from Redis.
    pub received: std::sync::atomic::AtomicU64,
    /// Events delivered locally only because Redis was unreachable.
    pub local_only: std::sync::atomic::AtomicU64,
    /// Connections to Redis made (the first, then reconnects).
    pub connects: std::sync::atomic::AtomicU64,
    /// Dead nodes this node removed.
    pub nodes_removed: std::sync::atomic::AtomicU64,
    /// Nodes seen alive at the last heartbeat (this one included).
    pub nodes_alive: std::sync::atomic::AtomicU64,
}

impl ClusterStatus {
    /// A node not yet connected.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            up: Default::default(),
            published: Default::default(),
            received: Default::default(),
            local_only: Default::default(),
            connects: Default::default(),
            nodes_removed: Default::default(),
            nodes_alive: Default::default(),
        }
    }

    /// Whether the link to Redis is up and synchronized (otherwise the node is degraded:
    /// it delivers locally and answers queries from its own state).
    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records whether the link is up.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Release);
    }

    /// Shows what the link reports: whether it is up, and its counts (the link is their only
    /// writer, so its totals replace the shown ones).
    pub fn show(&self, up: bool, stats: link::LinkStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.set_up(up);
        self.published.store(stats.published, Relaxed);
        self.received.store(stats.received, Relaxed);
        self.local_only.store(stats.local_only, Relaxed);
        self.connects.store(stats.connects, Relaxed);
        self.nodes_removed.store(stats.nodes_removed, Relaxed);
        self.nodes_alive.store(stats.nodes_alive, Relaxed);
    }
}
