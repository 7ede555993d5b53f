//! `[apps.history]`: which channels keep their recent events, how many and for how long, and
//! how long an identified user who lost the connection may come back for what was missed.

use std::time::Duration;

use serde::Deserialize;

use super::units;

/// Channel history and recovery (`[apps.history]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Channel name patterns, in the syntax of policy rules but on the whole name (kind
    /// prefix included): `private-chat.{id}`, `presence-room.*`, `orders.**`.
    pub channels: Vec<String>,
    /// Events kept per channel; the oldest go first.
    pub max_events: usize,
    /// Events older than this are dropped.
    #[serde(rename = "ttl_secs", with = "units::secs")]
    pub ttl: Duration,
    /// How long after an identified user's connection ended a resubscription of the same
    /// user replays what was published meanwhile.
    #[serde(rename = "recovery_secs", with = "units::secs")]
    pub recovery: Duration,
    /// Bytes of history the app may hold (event, data and encoded frames), shared evenly by
    /// the shards; over it the app's oldest events go first.
    pub max_bytes: usize,
}

impl Default for HistoryConfig {
    /// No channels; 100 events a channel for a day, a two-minute recovery window, 64 MiB.
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            max_events: 100,
            ttl: Duration::from_secs(86_400),
            recovery: Duration::from_secs(120),
            max_bytes: 64 << 20,
        }
    }
}

/// Most events a channel may be configured to keep.
pub const MAX_HISTORY_EVENTS: usize = 10_000;
