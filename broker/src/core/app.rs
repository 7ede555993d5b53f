//! The app table: configured apps with their HMAC keys and live connection counts.
//!
//! Shared read-only by every shard (`Arc`); the only mutable parts are atomic connection
//! counters, touched on connect and disconnect, never per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ring::hmac;

use crate::config::AppConfig;
use crate::core::auth::hmac_key;
use crate::core::ids::AppIdx;

/// One configured app.
pub struct App {
    /// Its index in the table.
    pub idx: AppIdx,
    /// Its configuration (limits, credentials).
    pub config: AppConfig,
    /// The secret as an HMAC-SHA256 key.
    pub secret: hmac::Key,
    connections: AtomicUsize,
}

impl App {
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
