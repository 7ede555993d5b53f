//! The one sum over shards: [`Totals`] reads every shard's counters once, and both the
//! dashboard's [`overview`] and `/metrics` ([`super::prometheus`]) render from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::ShardMetrics;
use super::latency::{LATENCY_BUCKETS, latency_quantile_us};
use crate::core::counters::{AppCounters, TenantCounters};
use crate::core::wire::Fault;

/// One app's counters, summed over the shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppTotals {
    /// Open connections.
    pub connections: i64,
    /// Messages received from clients.
    pub messages_in: u64,
    /// Events published.
    pub publishes: u64,
    /// Event frames queued to subscribers.
    pub deliveries: u64,
    /// Denied authorization decisions.
    pub auth_failures: u64,
    /// Requests refused by a rate limit.
    pub rate_limited: u64,
    /// Channel history.
    pub history: super::history::HistoryTotals,
}

/// Every shard's counters, summed (and the open connections of each shard).
#[derive(Clone, Debug)]
pub struct Totals {
    /// Open connections per shard, in shard order.
    pub shard_connections: Vec<i64>,
    /// The CPU each shard is pinned to, in shard order (`None`: not pinned).
    pub shard_cpus: Vec<Option<usize>>,
    /// Active channel subscriptions.
    pub subscriptions: i64,
    /// Connections accepted as WebSockets.
    pub connections_opened: u64,
    /// Connections closed.
    pub connections_closed: u64,
    /// WebSocket messages received.
    pub messages_in: u64,
    /// WebSocket frames queued for sending.
    pub messages_out: u64,
    /// Event frames queued to subscribers.
    pub deliveries: u64,
    /// Bytes received on WebSocket connections.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// `write`/`writev` calls on sockets.
    pub write_calls: u64,
    /// Denied authorization decisions.
    pub auth_failures: u64,
    /// Connections closed for a full send buffer.
    pub slow_consumers_closed: u64,
    /// Requests refused by a rate limit.
    pub rate_limited: u64,
    /// Members typing on `[apps.typing]` channels.
    pub typing_members: i64,
    /// Typing flags cleared by their expiry.
    pub typing_expired: u64,
    /// `[apps.receipts]`: messages tracked, not tracked (over `max_recipients`), forgotten
    /// early (over `max_messages`, or expired), and recipients not kept.
    pub receipts: [u64; 4],
    /// Mesh messages that waited for a full queue.
    pub mesh_delayed: u64,
    /// HTTP requests served.
    pub http_requests: u64,
    /// Faults reported to clients, indexed by [`Fault::index`].
    pub errors: [u64; Fault::ALL.len()],
    /// Per-app sums, in app order.
    pub apps: Vec<AppTotals>,
    /// Delivery latency counts, bucket by bucket.
    pub latency: [u64; LATENCY_BUCKETS],
}

impl Totals {
    /// Reads and sums every shard's counters.
    pub fn gather(shards: &[Arc<ShardMetrics>]) -> Self {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicI64| a.load(Ordering::Relaxed);
        let sum = |f: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
        let app_count = shards.first().map_or(0, |s| s.core.apps.len());
        let mut apps = vec![AppTotals::default(); app_count];
        for shard in shards {
            for (total, app) in apps.iter_mut().zip(shard.core.apps.values()) {
                add_app(total, app);
            }
        }
        let mut latency = [0u64; LATENCY_BUCKETS];
        for shard in shards {
            for (total, count) in latency.iter_mut().zip(shard.delivery_latency.counts()) {
                *total += count;
            }
        }
        Self {
            shard_connections: shards.iter().map(|s| s.connections()).collect(),
            shard_cpus: shards.iter().map(|s| s.cpu()).collect(),
            subscriptions: shards.iter().map(|s| gauge(&s.core.subscriptions)).sum(),
            connections_opened: sum(&|s| load(&s.core.connections_opened)),
            connections_closed: sum(&|s| load(&s.core.connections_closed)),
            messages_in: sum(&|s| load(&s.core.messages_in)),
            messages_out: sum(&|s| load(&s.core.messages_out)),
            deliveries: sum(&|s| load(&s.core.deliveries)),
            bytes_in: sum(&|s| load(&s.bytes_in)),
            bytes_out: sum(&|s| load(&s.bytes_out)),
            write_calls: sum(&|s| load(&s.write_calls)),
            auth_failures: sum(&|s| load(&s.core.auth_failures)),
            slow_consumers_closed: sum(&|s| load(&s.core.slow_consumers_closed)),
            rate_limited: sum(&|s| load(&s.core.rate_limited)),
            typing_members: shards.iter().map(|s| gauge(&s.core.typing_members)).sum(),
            typing_expired: sum(&|s| load(&s.core.typing_expired)),
            receipts: [
                sum(&|s| load(&s.core.receipts_tracked)),
                sum(&|s| load(&s.core.receipts_untracked)),
                sum(&|s| load(&s.core.receipts_forgotten)),
                sum(&|s| load(&s.core.receipts_recipients_dropped)),
            ],
            mesh_delayed: sum(&|s| load(&s.mesh_delayed)),
            http_requests: sum(&|s| load(&s.http_requests)),
            errors: std::array::from_fn(|i| sum(&|s| load(&s.core.errors[i]))),
            apps,
            latency,
        }
    }

    /// Open connections on every shard.
    pub fn connections(&self) -> i64 {
        self.shard_connections.iter().sum()
    }

    /// Events published, every app.
    pub fn publishes(&self) -> u64 {
        self.apps.iter().map(|a| a.publishes).sum()
    }
}

fn add_app(total: &mut AppTotals, app: &AppCounters) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    total.connections += app.connections.load(Ordering::Relaxed);
    total.messages_in += load(&app.messages_in);
    total.publishes += load(&app.publishes);
    total.deliveries += load(&app.deliveries);
    total.auth_failures += load(&app.auth_failures);
    total.rate_limited += load(&app.rate_limited);
    total.history.add(&app.history);
}

/// The dashboard's picture of the server (see [`ringcast_shared::Overview`]). Latency
/// percentiles cover the samples since `previous_latency`, which is updated to now.
pub fn overview(
    totals: &Totals,
    app_ids: &[&str],
    tenants: &TenantCounters,
    previous_latency: &mut [u64; LATENCY_BUCKETS],
) -> ringcast_shared::Overview {
    let interval: Vec<u64> = totals
        .latency
        .iter()
        .zip(previous_latency.iter())
        .map(|(now, before)| now.saturating_sub(*before))
        .collect();
    *previous_latency = totals.latency;
    let apps = app_ids
        .iter()
        .zip(&totals.apps)
        .map(|(id, app)| ringcast_shared::AppLoad {
            id: (*id).to_owned(),
            connections: app.connections,
            publishes: app.publishes,
            deliveries: app.deliveries,
            auth_failures: app.auth_failures,
            rate_limited: app.rate_limited,
            cluster_connections: None,
            history: None,
            inbox: None,
        })
        .collect();
    let mut merged: std::collections::BTreeMap<(u16, String), (i64, u64)> = Default::default();
    for (key, open) in tenants.connections() {
        merged.entry(key).or_default().0 = open;
    }
    for (key, failures) in tenants.snapshot() {
        merged.entry(key).or_default().1 = failures;
    }
    let tenants = merged
        .into_iter()
        .map(
            |((app, tenant), (connections, auth_failures))| ringcast_shared::TenantLoad {
                app: app_ids
                    .get(usize::from(app))
                    .map_or_else(String::new, |id| (*id).to_owned()),
                tenant,
                connections,
                auth_failures,
            },
        )
        .collect();
    ringcast_shared::Overview {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        connections: totals.connections(),
        subscriptions: totals.subscriptions,
        messages_in: totals.messages_in,
        messages_out: totals.messages_out,
        deliveries: totals.deliveries,
        auth_failures: totals.auth_failures,
        rate_limited: totals.rate_limited,
        slow_consumers_closed: totals.slow_consumers_closed,
        latency_p50_us: latency_quantile_us(&interval, 0.5),
        latency_p99_us: latency_quantile_us(&interval, 0.99),
        receipts_tracked: totals.receipts[0],
        shards: totals.shard_connections.clone(),
        apps,
        tenants,
        cluster: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::AppIdx;

    #[test]
    fn totals_sum_every_shard_and_app() {
        let shards: Vec<Arc<ShardMetrics>> =
            (0..2).map(|_| Arc::new(ShardMetrics::new(2))).collect();
        shards[0].core.deliveries.fetch_add(3, Ordering::Relaxed);
        shards[1].core.deliveries.fetch_add(4, Ordering::Relaxed);
        shards[1].bytes_out.fetch_add(10, Ordering::Relaxed);
        let app = |shard: usize, app: u16| shards[shard].core.app(AppIdx(app));
        app(0, 1).connections.fetch_add(2, Ordering::Relaxed);
        app(1, 1).connections.fetch_add(1, Ordering::Relaxed);
        app(1, 0).publishes.fetch_add(5, Ordering::Relaxed);
        shards[0].core.error(Fault::Unauthorized);
        shards[1].pin_to(3);

        let totals = Totals::gather(&shards);

        assert_eq!(totals.deliveries, 7);
        assert_eq!(totals.bytes_out, 10);
        assert_eq!(totals.shard_connections, [2, 1]);
        assert_eq!(totals.shard_cpus, [None, Some(3)]);
        assert_eq!(totals.connections(), 3);
        assert_eq!(totals.apps[1].connections, 3);
        assert_eq!(totals.publishes(), 5);
        assert_eq!(totals.errors[Fault::Unauthorized.index()], 1);
    }
}
