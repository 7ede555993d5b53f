//! Ringcast: a Pusher-protocol-7 WebSocket broker on a thread-per-core io_uring runtime.
//!
//! ```text
//!  clients (pusher-js, Echo)      app backends (server SDKs)
//!        │ ws /app/{key}                │ signed HTTP /apps/{id}/...
//!        ▼                              ▼
//!  ┌──────────── shard 0 ────────────┐  ┌──────────── shard 1 ────────────┐
//!  │ SO_REUSEPORT listener           │  │ same code, own listener & state │
//!  │ conn tasks: read → core → write │◄─┼─► mesh: bounded queues           │
//!  │ homes of hash(app,ch) % N == 0  │  │ homes of hash(app,ch) % N == 1  │
//!  └─────────────────────────────────┘  └─────────────────────────────────┘
//! ```
//!
//! - [`core`] is sans-IO: the WebSocket codec, the Pusher protocol, channels, presence,
//!   signatures and the per-shard state machine [`core::shard::Shard`]. Time is a parameter.
//! - [`shell`] owns threads and sockets: one monoio runtime (io_uring, or epoll as a
//!   fallback) per shard. A connection's reader feeds [`core::shard::Shard::handle_input`];
//!   its writer drains [`core::shard::Shard::take_output`] and coalesces frames into one
//!   `writev`.
//! - [`http`] maps HTTP requests to responses (the Pusher HTTP API, resources, token
//!   revocation, the admin dashboard and its API with sign-in sessions, `/up`, `/metrics`).
//! - [`audit`] is the writer thread of the audit log and the resource store (sled, rkyv,
//!   group commit); [`webhooks`] is the webhook sender thread. Shards reach both only through
//!   bounded queues and never wait on them.
//!
//! A channel's *home* shard owns its authoritative state (subscriber counts, presence
//! roster). A publish is encoded into one WebSocket frame (`bytes::Bytes`) by the shard that
//! receives it, sent to the channel's home, and forwarded to every shard with subscribers; each
//! subscriber's queue holds a clone of the same buffer, stamped with the event's acceptance time
//! so writers can measure delivery latency.
//!
//! With `[cluster]` set, several nodes share one Redis ([`core::cluster`] has the rules): a
//! publish goes round through Redis so every node delivers it in one order, home shards report
//! their node's part of each channel to the node's link thread, and Lua scripts keep the
//! cluster-wide counts and rosters.

pub mod audit;
pub mod config;
pub mod core;
pub mod http;
pub mod metrics;
pub mod server;
pub mod shell;
pub mod webhooks;
