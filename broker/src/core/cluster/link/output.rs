//! What the link asks of the shell besides bytes for Redis and messages for the shards.

use std::time::Duration;

use crate::core::cluster::wire::WireError;
use crate::core::ids::AppIdx;
use crate::core::policy::Resource;

/// Something the shell does for the link. The effects of a step are carried out in order and
/// before that step's mesh messages are delivered, so that a revocation is in force on the node
/// before its shards hear of it.
#[derive(Debug)]
pub enum Effect {
    /// Open a connection to Redis, then call [`Link::handle_connected`], or
    /// [`Link::handle_lost`] if it cannot be made.
    ///
    /// [`Link::handle_connected`]: super::Link::handle_connected
    /// [`Link::handle_lost`]: super::Link::handle_lost
    Connect,
    /// Close the connection: the link has given up on it and has already answered whatever
    /// waited on it; nothing more read from it is to be handed to the link.
    Disconnect,
    /// Refuse what `revocation` of `app` covers on this node until `until_unix` (another
    /// node revoked it, or Redis had the revocation when this node connected).
    Revoke {
        /// The token's app.
        app: AppIdx,
        /// What is revoked.
        revocation: crate::core::app::Revocation,
        /// Until when, in Unix seconds (the token's expiry: later it is refused anyway).
        until_unix: u64,
    },
    /// Store a policy resource another node set (`value`) or deleted (`None`), so that this
    /// node still has it after a restart.
    StoreResource {
        /// The app's id, as the store names apps.
        app: String,
        /// The type the app backend gave the resource.
        kind: String,
        /// The resource's id within its type.
        id: String,
        /// The resource, or `None` to delete it.
        value: Option<Resource>,
    },
    /// What a heartbeat brought back.
    Heartbeat {
        /// Nodes alive, this one included: each app's API rate limit is shared among them.
        nodes_alive: u64,
        /// Each app's connections on the other nodes, in app order; taken pairwise with the
        /// apps, so a shorter list leaves the remaining apps' counts as they were.
        connections_elsewhere: Vec<u64>,
    },
    /// Something worth a line in the log.
    Notice(Notice),
}

/// An outcome the link reports for the log; none carries a message body or a secret.
#[derive(Debug)]
pub enum Notice {
    /// Redis refused a step of the handshake; the connection is given up.
    HandshakeRefused {
        /// The command, e.g. `HELLO 3 AUTH`.
        step: &'static str,
        /// Redis's error text.
        error: String,
    },
    /// Redis refused a command; whatever waited on it was answered as if Redis were out of
    /// reach.
    CommandRefused {
        /// Redis's error text.
        error: String,
    },
    /// Redis sent a reply to no command; the connection is given up.
    UnexpectedReply,
    /// Commands went unanswered for too long; the connection is given up.
    StoppedAnswering {
        /// Time since the last reply.
        silent: Duration,
    },
    /// A synchronized connection was lost: the node is degraded until it is back.
    Lost,
    /// Redis has a new epoch: it lost the cluster state (it restarted empty), and this node's
    /// reports restore it without announcing anything.
    EpochLost,
    /// The resynchronization after a connect is complete: the node is in sync.
    Synchronized {
        /// Entries Redis still had for this node that it no longer has, now removed.
        swept: usize,
    },
    /// This node's heartbeat removed nodes that had stopped beating.
    DeadNodesRemoved {
        /// How many nodes.
        nodes: u64,
        /// Channels vacated and members removed with them.
        changes: usize,
    },
    /// Another node had declared this one dead: its state is being reported again.
    DeclaredDead,
    /// A pub/sub message could not be read.
    UnreadableMessage(WireError),
    /// A resource from another node is not valid JSON for a resource; it was not applied.
    UnreadableResource(serde_json::Error),
}

/// What the link has counted since it started, and the last count of nodes; the shell shows
/// them in [`ClusterStatus`](crate::core::cluster::ClusterStatus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages published to Redis.
    pub published: u64,
    /// Pub/sub messages received from Redis.
    pub received: u64,
    /// Events delivered on this node only because Redis was out of reach.
    pub local_only: u64,
    /// Connections made (the first, then reconnects).
    pub connects: u64,
    /// Dead nodes this node removed.
    pub nodes_removed: u64,
    /// Nodes alive at the last heartbeat (this one included).
    pub nodes_alive: u64,
}
