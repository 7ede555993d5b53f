//! History in `/metrics`: per app, what is held, evicted and replayed (summed over the
//! shards).

use std::sync::atomic::{AtomicU64, Ordering};

use super::counters::AppTotals;
use super::prometheus::{PerAppSeries, render_per_app};
use crate::core::history::HistoryCounters;

/// One app's history counters, summed over the shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryTotals {
    /// Events held.
    pub events: i64,
    /// Bytes held.
    pub bytes: i64,
    /// Events evicted by count, bytes or age.
    pub evictions: u64,
    /// Replays sent.
    pub replays: u64,
    /// Events replayed.
    pub replayed_events: u64,
    /// Departures dropped over their bound.
    pub departures_dropped: u64,
}

impl HistoryTotals {
    /// Adds one shard's counters.
    pub fn add(&mut self, shard: &HistoryCounters) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.events += shard.events.load(Ordering::Relaxed);
        self.bytes += shard.bytes.load(Ordering::Relaxed);
        self.evictions += load(&shard.evictions);
        self.replays += load(&shard.replays);
        self.replayed_events += load(&shard.replayed_events);
        self.departures_dropped += load(&shard.departures_dropped);
    }
}

const SERIES: [PerAppSeries<HistoryTotals>; 6] = [
    (
        "ringcast_history_events",
        "History events held per app.",
        "gauge",
        |h| h.events,
    ),
    (
        "ringcast_history_bytes",
        "History bytes held per app (event, data, frames).",
        "gauge",
        |h| h.bytes,
    ),
    (
        "ringcast_history_evictions_total",
        "History events evicted per app (max_events, max_bytes, ttl_secs).",
        "counter",
        |h| h.evictions as i64,
    ),
    (
        "ringcast_history_replays_total",
        "Replays sent to returning users per app.",
        "counter",
        |h| h.replays as i64,
    ),
    (
        "ringcast_history_replayed_events_total",
        "Events replayed to returning users per app.",
        "counter",
        |h| h.replayed_events as i64,
    ),
    (
        "ringcast_history_departures_dropped_total",
        "Departures dropped over their bound per app.",
        "counter",
        |h| h.departures_dropped as i64,
    ),
];

/// The per-app series, for the apps with `[apps.history]` (`keeps[i]` says which; the
/// store's counters are among the writers' in `/metrics`).
pub fn render_history(out: &mut String, app_ids: &[&str], apps: &[AppTotals], keeps: &[bool]) {
    let kept: Vec<(&str, &HistoryTotals)> = app_ids
        .iter()
        .zip(apps)
        .zip(keeps)
        .filter(|(_, keeps)| **keeps)
        .map(|((id, totals), _)| (*id, &totals.history))
        .collect();
    if !kept.is_empty() {
        render_per_app(out, &SERIES, &kept);
    }
}
