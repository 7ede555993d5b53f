//! The counters the core writes: one [`ShardCounters`] per shard (relaxed atomics, written by
//! that shard alone, so there is no contention), and [`TenantCounters`] shared by all. The
//! shell reads them for `/metrics` and the dashboard.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::core::ids::{AppIdx, PerApp};
use crate::core::sync;
use crate::core::wire::Fault;

/// Counters of one app on one shard.
#[derive(Default, Debug)]
pub struct AppCounters {
    /// Open connections (gauge).
    pub connections: AtomicI64,
    /// Messages received from clients.
    pub messages_in: AtomicU64,
    /// Events published (HTTP API and client events).
    pub publishes: AtomicU64,
    /// Event frames queued to subscriber sockets.
    pub deliveries: AtomicU64,
    /// Denied authorization decisions (subscribe, sign-in, token, API signature).
    pub auth_failures: AtomicU64,
    /// Requests refused by a rate limit (connection attempts, client events, API calls).
    pub rate_limited: AtomicU64,
    /// Channel history: what is held, evicted and replayed.
    pub history: crate::core::history::HistoryCounters,
}

/// What one shard counts of its connections and their protocol.
#[derive(Debug)]
pub struct ShardCounters {
    /// Connections accepted as WebSockets.
    pub connections_opened: AtomicU64,
    /// Connections closed.
    pub connections_closed: AtomicU64,
    /// Active channel subscriptions (gauge).
    pub subscriptions: AtomicI64,
    /// WebSocket messages received.
    pub messages_in: AtomicU64,
    /// WebSocket frames queued for sending.
    pub messages_out: AtomicU64,
    /// Event frames queued to subscriber sockets (one per subscriber per event).
    pub deliveries: AtomicU64,
    /// Denied authorization decisions.
    pub auth_failures: AtomicU64,
    /// Connections closed because their send buffer was full.
    pub slow_consumers_closed: AtomicU64,
    /// Requests refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Members typing on `[apps.typing]` channels homed on this shard (gauge).
    pub typing_members: AtomicI64,
    /// Typing flags the broker cleared because `expire_secs` passed without a renewal.
    pub typing_expired: AtomicU64,
    /// `[apps.receipts]` messages whose receipts are kept.
    pub receipts_tracked: AtomicU64,
    /// Messages with an `id` not tracked because their channel had over `max_recipients`.
    pub receipts_untracked: AtomicU64,
    /// Tracked messages forgotten before being asked about: over `max_messages`, or past
    /// `ttl_secs`.
    pub receipts_forgotten: AtomicU64,
    /// Receipts not kept because their message had `max_recipients` already.
    pub receipts_recipients_dropped: AtomicU64,
    /// Faults reported to clients, indexed by [`Fault::index`].
    pub errors: [AtomicU64; Fault::ALL.len()],
    /// Per-app counters.
    pub apps: PerApp<AppCounters>,
}

impl ShardCounters {
    /// Counters for a server with `app_count` apps.
    pub fn new(app_count: usize) -> Self {
        Self {
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            subscriptions: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            slow_consumers_closed: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            typing_members: AtomicI64::new(0),
            typing_expired: AtomicU64::new(0),
            receipts_tracked: AtomicU64::new(0),
            receipts_untracked: AtomicU64::new(0),
            receipts_forgotten: AtomicU64::new(0),
            receipts_recipients_dropped: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            apps: PerApp::new(app_count, AppCounters::default),
        }
    }

    /// Counts one fault reported to a client.
    pub fn error(&self, fault: Fault) {
        inc(&self.errors[fault.index()]);
    }

    /// The counters of `app`.
    pub fn app(&self, app: AppIdx) -> &AppCounters {
        &self.apps[app]
    }
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Most tenants tracked; the rest are summed under `tenant="other"` so a flood of tenant ids
/// cannot grow memory or the metrics page without bound.
const MAX_TENANTS: usize = 1000;

/// Counters per app and tenant, shared by the shards: failed authorizations, and open
/// connections whose token or sign-in names a tenant (touched on denials, and on connect and
/// disconnect of such connections).
#[derive(Default, Debug)]
pub struct TenantCounters {
    counts: Mutex<BTreeMap<(u16, String), u64>>,
    connections: Mutex<BTreeMap<(u16, String), i64>>,
}

impl TenantCounters {
    /// Adds one failed authorization for `tenant` of `app`.
    pub fn count(&self, app: AppIdx, tenant: &str) {
        let mut counts = sync::lock(&self.counts);
        let key = bounded_key(&counts, app, tenant);
        *counts.entry(key).or_insert(0) += 1;
    }

    /// A connection of `tenant` opened.
    pub fn connect(&self, app: AppIdx, tenant: &str) {
        self.change_connections(app, tenant, 1);
    }

    /// A connection of `tenant` closed.
    pub fn disconnect(&self, app: AppIdx, tenant: &str) {
        self.change_connections(app, tenant, -1);
    }

    fn change_connections(&self, app: AppIdx, tenant: &str, by: i64) {
        let mut open = sync::lock(&self.connections);
        let key = bounded_key(&open, app, tenant);
        let count = open.entry(key.clone()).or_insert(0);
        *count += by;
        if *count == 0 {
            open.remove(&key);
        }
    }

    /// Every (app, tenant) with open connections, and how many.
    pub fn connections(&self) -> Vec<((u16, String), i64)> {
        let open = sync::lock(&self.connections);
        open.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Every (app, tenant) and its count of failed authorizations.
    pub fn snapshot(&self) -> Vec<((u16, String), u64)> {
        let counts = sync::lock(&self.counts);
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The key for `tenant`, or `other` once [`MAX_TENANTS`] distinct tenants are tracked.
fn bounded_key<V>(map: &BTreeMap<(u16, String), V>, app: AppIdx, tenant: &str) -> (u16, String) {
    let key = (app.0, tenant.to_owned());
    if map.contains_key(&key) || map.len() < MAX_TENANTS {
        key
    } else {
        (app.0, "other".to_owned())
    }
}
