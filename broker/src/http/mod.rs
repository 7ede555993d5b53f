//! The HTTP side of the server: the route table and the Pusher HTTP API, as functions from a
//! parsed request to a response. Like the core, nothing here does I/O: a request that needs
//! other shards returns [`Reply::Later`] with the queries to await.

mod admin;
mod admin_files;
mod api;
mod history;
mod inbox;
mod routes;

pub use admin::{AdminAssets, AdminUiSource, EMBEDDED_ADMIN_UI, overview as admin_overview};

use std::sync::Arc;
use std::time::Instant;

use crate::core::shard::{Answer, QueryId};
use crate::metrics::ShardMetrics;

pub use api::Finish;
pub use inbox::{InboxCall, InboxOp};
pub use routes::{handle, refuse_upgrade_while_draining};

/// The time, as the handlers need it.
pub struct Clock {
    /// Monotonic time, for the shard.
    pub now: Instant,
    /// Wall-clock seconds since the Unix epoch, for API signature windows.
    pub unix_secs: u64,
}

/// What a handler may know about the whole server.
pub struct ServerView<'a> {
    /// The process-wide state (admins, dashboard assets, the writers' counters).
    pub server: &'a crate::server::ServerState,
    /// Every shard's counters.
    pub metrics: &'a [Arc<ShardMetrics>],
    /// The I/O driver name.
    pub driver: &'a str,
    /// Whether a graceful shutdown has begun.
    pub shutting_down: bool,
    /// The client's address (for audit records).
    pub remote: std::net::IpAddr,
    /// Whether the request came over TLS (the admin cookie is then `Secure`).
    pub tls: bool,
}

/// A handler's result.
pub enum Reply {
    /// The complete response.
    Now(Vec<u8>),
    /// Await these queries, then call [`finish`].
    Later(Later),
    /// Stream an [`ringcast_shared::Overview`] every second as server-sent events until the
    /// client goes away or the server shuts down.
    Live,
    /// Run this audit query on the audit thread, then answer with its page as JSON.
    Audit {
        /// The query.
        query: crate::audit::AuditQuery,
        /// Whether the connection stays open.
        keep_alive: bool,
    },
    /// Identify the caller (which may ask the app's backend), then read or ack their inbox
    /// on the inbox thread (`shell::inbox`).
    Inbox(InboxCall),
}

/// A response waiting for query answers.
pub struct Later {
    /// The queries, answered in this order: first the publishes' confirmations, then the
    /// queries whose answers [`finish`] reads.
    pub queries: Vec<QueryId>,
    /// How many of `queries` confirm publishes (cluster mode): every one must answer
    /// [`Answer::Applied`] before the response is sent.
    pub confirmations: usize,
    /// How to build the response from the answers.
    pub finish: Finish,
    /// Whether the connection stays open.
    pub keep_alive: bool,
    /// A change to persist once every shard has applied it.
    pub persist: Option<crate::audit::StoreWrite>,
}

/// Builds the response of a [`Reply::Later`] from its answers.
pub fn finish(later: Later, mut answers: Vec<Answer>) -> Vec<u8> {
    let rest = answers.split_off(later.confirmations.min(answers.len()));
    if answers.iter().any(|a| *a != Answer::Applied) {
        return crate::core::http::response::json_error(
            503,
            "the cluster did not confirm the event (Redis refused it or became unreachable); \
             it may not have been delivered: retry shortly",
            later.keep_alive,
        );
    }
    api::finish(later.finish, rest, later.keep_alive)
}
