//! The app table: configured apps with their HMAC keys and live connection counts.
//!
//! Shared read-only by every shard (`Arc`); the only mutable parts are atomic connection
//! counters, touched on connect and disconnect, never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ring::hmac;

use crate::config::AppConfig;
use crate::core::auth::hmac_key;
use crate::core::ids::AppIdx;
use crate::core::rate_limit::{KeyedLimiter, Rate};

/// One configured app.
pub struct App {
    /// Its index in the table.
    pub idx: AppIdx,
    /// Its configuration (limits, credentials).
    pub config: AppConfig,
    /// The secret as an HMAC-SHA256 key.
    pub secret: hmac::Key,
    connections: AtomicUsize,
    limiters: Option<Limiters>,
}

/// Most distinct keys (IPs, users) a limiter remembers.
const MAX_LIMITER_KEYS: usize = 100_000;

/// Rate limiters shared by every shard. They are touched on connect, on client events and
/// on API requests, never per delivered message, so a mutex is cheap here.
struct Limiters {
    connection_attempts: Mutex<KeyedLimiter<IpAddr>>,
    client_events: Mutex<KeyedLimiter<String>>,
    api_requests: Mutex<KeyedLimiter<()>>,
}

fn take<K: std::hash::Hash + Eq + Clone>(
    limiter: &Mutex<KeyedLimiter<K>>,
    key: &K,
    now: Instant,
) -> Result<(), Duration> {
    // A poisoned lock only means another thread panicked mid-update; the counts are still usable.
    limiter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .try_acquire(key, now)
}

impl App {
    /// Counts a WebSocket connection attempt from `ip`; `Err` says when to retry.
    pub fn admit_connection_attempt(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.limiters
            .as_ref()
            .map_or(Ok(()), |l| take(&l.connection_attempts, &ip, now))
    }

    /// Counts a client event from `sender` (a user id, or a socket id for anonymous sockets).
    pub fn admit_client_event(&self, sender: &str, now: Instant) -> Result<(), Duration> {
        self.limiters
            .as_ref()
            .map_or(Ok(()), |l| take(&l.client_events, &sender.to_owned(), now))
    }

    /// Counts an HTTP API request.
    pub fn admit_api_request(&self, now: Instant) -> Result<(), Duration> {
        self.limiters
            .as_ref()
            .map_or(Ok(()), |l| take(&l.api_requests, &(), now))
    }

    /// Subscriptions one connection may hold.
    pub fn max_subscriptions(&self) -> usize {
        let cap = self.config.max_subscriptions_per_connection;
        self.config
            .rate_limits
            .map_or(cap, |r| cap.min(r.subscriptions_per_connection))
    }

    /// Open connections of this app on the whole server.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// All apps, looked up by index, id or key.
pub struct AppTable {
    apps: Vec<App>,
    by_id: HashMap<String, AppIdx>,
    by_key: HashMap<String, AppIdx>,
    connections: AtomicUsize,
    max_connections: usize,
}

/// A connection slot that could not be taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QuotaExceeded {
    /// The whole server is at `server.max_connections`.
    Server,
    /// The app is at its `max_connections`.
    App,
}

impl AppTable {
    /// Builds the table from validated app configs (ids and keys are unique).
    pub fn new(configs: &[AppConfig], max_connections: usize) -> Self {
        let apps: Vec<App> = configs
            .iter()
            .enumerate()
            .map(|(i, config)| App {
                idx: AppIdx(u16::try_from(i).unwrap_or(u16::MAX)),
                secret: hmac_key(&config.secret),
                config: config.clone(),
                connections: AtomicUsize::new(0),
                limiters: config.rate_limits.map(|r| Limiters {
                    connection_attempts: Mutex::new(KeyedLimiter::new(
                        Rate {
                            capacity: r.connections_per_minute_per_ip,
                            period: Duration::from_secs(60),
                        },
                        MAX_LIMITER_KEYS,
                    )),
                    client_events: Mutex::new(KeyedLimiter::new(
                        Rate {
                            capacity: r.client_events_per_minute_per_user,
                            period: Duration::from_secs(60),
                        },
                        MAX_LIMITER_KEYS,
                    )),
                    api_requests: Mutex::new(KeyedLimiter::new(
                        Rate {
                            capacity: r.api_requests_per_second,
                            period: Duration::from_secs(1),
                        },
                        1,
                    )),
                }),
            })
            .collect();
        let by_id = apps.iter().map(|a| (a.config.id.clone(), a.idx)).collect();
        let by_key = apps.iter().map(|a| (a.config.key.clone(), a.idx)).collect();
        Self {
            apps,
            by_id,
            by_key,
            connections: AtomicUsize::new(0),
            max_connections,
        }
    }

    /// The app at `idx`.
    pub fn get(&self, idx: AppIdx) -> &App {
        // Indices are only ever minted by this table, so they are in range.
        &self.apps[idx.get()]
    }

    /// The app with this public key.
    pub fn by_key(&self, key: &str) -> Option<&App> {
        self.by_key.get(key).map(|&idx| self.get(idx))
    }

    /// The app with this id.
    pub fn by_id(&self, id: &str) -> Option<&App> {
        self.by_id.get(id).map(|&idx| self.get(idx))
    }

    /// Every app.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.iter()
    }

    /// Number of apps.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether there are no apps (never true for a validated config).
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Open connections on the whole server.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Takes a connection slot for `idx`, checking the server and app quotas.
    pub fn try_connect(&self, idx: AppIdx) -> Result<(), QuotaExceeded> {
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaExceeded::Server);
        }
        let app = self.get(idx);
        let limit = app
            .config
            .max_connections
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if app.connections.fetch_add(1, Ordering::AcqRel) >= limit {
            app.connections.fetch_sub(1, Ordering::AcqRel);
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaExceeded::App);
        }
        Ok(())
    }

    /// Gives back a slot taken by [`AppTable::try_connect`].
    pub fn disconnect(&self, idx: AppIdx) {
        self.get(idx).connections.fetch_sub(1, Ordering::AcqRel);
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
