//! What the link is told when it starts, and what it reads of its node while it runs.

use std::fmt;
use std::time::Duration;

use crate::core::cluster::NodeId;
use crate::core::ids::AppIdx;

/// The link's settings, built by the shell from the cluster config and the app table.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// This node: the owner of its part of the shared state and the origin of its commands.
    pub node: NodeId,
    /// Prefix of every Redis key and of the events channel (`PREFIX:events`), so clusters can
    /// share a Redis.
    pub prefix: String,
    /// What `HELLO 3 AUTH` sends; `None`: a plain `HELLO 3`.
    pub credentials: Option<Credentials>,
    /// The database `SELECT`ed after `HELLO`.
    pub db: u32,
    /// Time between heartbeats, which are also when the link checks that Redis still answers.
    pub heartbeat_interval: Duration,
    /// How long a node may be silent before the others remove it.
    pub dead_after: Duration,
    /// The node's shards (taken as 1 if 0): a resynchronization waits for each one's dump.
    pub shards: usize,
    /// Every app, at the position of its [`AppIdx`].
    pub apps: Vec<AppOptions>,
    /// Seeds the epoch values the link proposes to a Redis that has none.
    pub seed: u64,
}

/// What the link needs to know of one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppOptions {
    /// The app's id, as Redis keys and pub/sub messages name the app.
    pub id: String,
    /// How long Redis keeps a cache channel's last event.
    pub cache_ttl: Duration,
    /// Longest user id accepted from Redis for this app.
    pub max_user_id_chars: usize,
    /// The wires its connections speak: what arrives from Redis is encoded for these.
    pub wires: crate::core::wire::Wires,
}

/// An ACL user and password for `HELLO 3 AUTH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The ACL user; `None` is Redis's `default` user.
    pub username: Option<String>,
    /// Sent in `HELLO` only; `Debug` leaves it out.
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// The user only: the password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the link reads of its node's live, shared state when it reports that state to Redis.
/// The shell's view reads the app table and the wall clock; a test's is a table of its own.
pub trait NodeView {
    /// Open connections of `app` on this node (every heartbeat carries them).
    fn connections(&self, app: AppIdx) -> usize;

    /// `app`'s token revocations on this node, and until when (Unix seconds).
    fn revocations(&self, app: AppIdx) -> Vec<(crate::core::app::Revocation, u64)>;

    /// The wall clock in Unix seconds: revocations are kept until a wall-clock time, which
    /// no `Instant` can name.
    fn unix_time(&self) -> u64;
}

/// Each app with the index that names it.
pub(super) fn indexed(apps: &[AppOptions]) -> impl Iterator<Item = (AppIdx, &AppOptions)> {
    // The same conversion as the app table's, which minted the indices the shards use.
    apps.iter()
        .enumerate()
        .map(|(i, app)| (AppIdx(u16::try_from(i).unwrap_or(u16::MAX)), app))
}
