//! Ringcast: a Pusher-protocol-7 WebSocket broker on a thread-per-core io_uring runtime.
//!
//! ```text
//!  clients (pusher-js, Echo)      app backends (server SDKs)         admins (browser)
//!        │ ws /app/{key}                │ signed HTTP /apps/{id}/...        │ /admin
//!        ▼                              ▼                                   ▼
//!  ┌──────────── shard 0 ────────────┐  ┌──────────── shard 1 ────────────┐
//!  │ SO_REUSEPORT listener           │  │ same code, own listener & state │
//!  │ conn tasks: read → core → write │◄─┼─► mesh: bounded queues           │
//!  │ homes of hash(app,ch) % N == 0  │  │ homes of hash(app,ch) % N == 1  │
//!  └─────────────────────────────────┘  └─────────────────────────────────┘
//!        │ audit records, webhook events (never message bodies)   │ cluster reports
//!        ▼                                                        ▼
//!  audit writer (sled) · webhook sender             Redis link (one per node, optional)
//! ```
//!
//! # Where each rule lives
//!
//! [`core`] is sans-IO: plain values in, plain values out, time as a parameter, no file, no
//! global RNG. It imports nothing from the shell modules below it.
//!
//! | module | what it decides |
//! |---|---|
//! | [`core::wire`] | the seam to a wire protocol: client text → [`core::wire::Command`], a [`core::wire::Reply`] for one socket, an [`core::wire::Event`] encoded once per wire into [`core::wire::Frames`]; [`core::wire::Fault`] and [`core::wire::Refusal`] name what went wrong |
//! | [`core::wire::pusher`] | everything Pusher-specific: `/app/{key}?protocol=7`, `pusher:*` parsing, frame texts, the 4xxx table |
//! | [`core::shard`] | one shard's state machine, one file per concern: `accept` (who may connect), `dispatch` (frames → commands), `subscribe` (signature, policy, pending → active), `home` (a channel's home shard: admission, counts, presence), `events` (publishes and local fan-out), `history` (kept events, departures, replays), `users` (sign-in, watchlists), `commands` (resources, revocation), `queries`, `outbox` (per-socket queues and closing), `audit`, `webhooks`, `timers`, `mesh` (messages between shards), `cluster` (reports to the Redis link) |
//! | [`core::cluster`] | cluster mode as data: envelopes, the Lua scripts, the RESP3 codec, and [`core::cluster::link::Link`], the node's Redis link as a state machine |
//! | [`core::options`] | the option types core runs with, built and validated by [`config`] |
//! | [`core::auth`], [`core::policy`], [`core::rate_limit`] | signatures (the one place signed strings are built), JWTs, policies, token buckets |
//! | [`core::channel`], [`core::ids`] | typed channel names and kinds, presence rosters, ids, [`core::ids::PerApp`] |
//! | [`core::ws`], [`core::http`] | the RFC 6455 codec and handshake, HTTP request heads and responses |
//! | [`core::counters`] | what the core counts, read by [`metrics`] |
//! | [`core::history`] | a history channel's kept events and their bounds, departures, replays, offsets |
//!
//! The shell owns threads, sockets and the outside world:
//!
//! - [`shell`] runs one monoio runtime (io_uring, or epoll as a fallback) per shard. A
//!   connection's reader feeds [`core::shard::Shard::handle_input`]; its writer drains
//!   [`core::shard::Shard::take_output`] and coalesces frames into one `writev`. Its
//!   `cluster` module is the socket loop around the Redis link; [`shell::cpus`] pins each
//!   shard's thread to a CPU.
//! - [`http`] maps HTTP requests to responses: the Pusher HTTP API, resources, token
//!   revocation, the admin dashboard (built into the binary by `build.rs` when it was built
//!   first) and its API, `/up`, `/metrics`.
//! - [`config`] loads the TOML file and the environment (Reverb's variable names included)
//!   into [`core::options`]; [`server`] holds the process-wide state; [`metrics`] sums the
//!   shards' counters once for both `/metrics` and the dashboard.
//! - [`audit`] is the writer thread of the audit log and the resource store (sled, rkyv,
//!   group commit); [`webhooks`] is the webhook sender thread. Shards reach both only through
//!   bounded queues and never wait on them. [`history`] is the history store's writer thread
//!   (`data/history`, its own sled database, the same pattern). [`jwks`] runs a thread per app whose JWT keys
//!   come from a JWKS URL; shards only read the key set it replaces.
//!
//! A channel's *home* shard owns its authoritative state (subscriber counts, presence
//! roster). A publish is encoded once per wire by the shard that receives it, sent to the
//! channel's home, and forwarded to every shard with subscribers; each subscriber's queue
//! holds a clone of its wire's buffer, stamped with the event's acceptance time so writers can
//! measure delivery latency.
//!
//! With `[cluster]` set, several nodes share one Redis ([`core::cluster`] has the rules): a
//! publish goes round through Redis so every node delivers it in one order, home shards report
//! their node's part of each channel to the node's link, and Lua scripts keep the
//! cluster-wide counts and rosters.

pub mod audit;
pub mod config;
pub mod core;
pub mod history;
pub mod http;
pub mod inbox;
pub mod jwks;
pub mod metrics;
pub mod server;
pub mod shell;
pub mod store;
pub mod webhooks;
