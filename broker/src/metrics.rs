//! Counters: written by one shard each (relaxed atomics, no contention), merged on read.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
}

/// Most tenants tracked; the rest are summed under `tenant="other"` so a flood of tenant ids
/// cannot grow memory or the metrics page without bound.
const MAX_TENANTS: usize = 1000;

/// Counters per app and tenant, shared by the shards: failed authorizations, and open
/// connections whose token or sign-in names a tenant (touched on denials, and on connect and
/// disconnect of such connections).
#[derive(Default, Debug)]
pub struct TenantCounters {
    counts: std::sync::Mutex<std::collections::BTreeMap<(u16, String), u64>>,
    connections: std::sync::Mutex<std::collections::BTreeMap<(u16, String), i64>>,
}

impl TenantCounters {
    /// Adds one for `tenant` of `app`.
    pub fn count(&self, app: crate::core::ids::AppIdx, tenant: &str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (app.0, tenant.to_owned());
        let key = if counts.contains_key(&key) || counts.len() < MAX_TENANTS {
            key
        } else {
            (app.0, "other".to_owned())
        };
        *counts.entry(key).or_insert(0) += 1;
    }

    /// A connection of `tenant` opened.
    pub fn connect(&self, app: crate::core::ids::AppIdx, tenant: &str) {
        self.change_connections(app, tenant, 1);
    }

    /// A connection of `tenant` closed.
    pub fn disconnect(&self, app: crate::core::ids::AppIdx, tenant: &str) {
        self.change_connections(app, tenant, -1);
    }

    fn change_connections(&self, app: crate::core::ids::AppIdx, tenant: &str, by: i64) {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (app.0, tenant.to_owned());
        let key = if open.contains_key(&key) || open.len() < MAX_TENANTS {
            key
        } else {
            (app.0, "other".to_owned())
        };
        let count = open.entry(key.clone()).or_insert(0);
        *count += by;
        if *count == 0 {
            open.remove(&key);
        }
    }

    /// Every (app, tenant) with open connections, and how many.
    pub fn connections(&self) -> Vec<((u16, String), i64)> {
        let open = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Every (app, tenant) and its count of failed authorizations.
    pub fn snapshot(&self) -> Vec<((u16, String), u64)> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Counters of one shard.
#[derive(Debug)]
pub struct ShardMetrics {
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
    /// Bytes received on WebSocket connections.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// `write`/`writev` calls made to sockets.
    pub write_calls: AtomicU64,
    /// Subscriptions refused by authorization.
    pub auth_failures: AtomicU64,
    /// Connections closed because their send buffer was full.
    pub slow_consumers_closed: AtomicU64,
    /// Requests refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Mesh messages that waited because a queue to another shard was full.
    pub mesh_delayed: AtomicU64,
    /// HTTP requests served.
    pub http_requests: AtomicU64,
    /// Pusher errors sent, indexed like [`Fault::ALL`].
    pub errors: [AtomicU64; Fault::ALL.len()],
    /// Per-app counters, indexed by app.
    pub apps: Vec<AppCounters>,
    /// From an event's acceptance to its frame's write completing, per event frame written.
    pub delivery_latency: LatencyHistogram,
}

impl ShardMetrics {
    /// Counters for a server with `app_count` apps.
    pub fn new(app_count: usize) -> Self {
        Self {
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            subscriptions: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            write_calls: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            slow_consumers_closed: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            mesh_delayed: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            apps: (0..app_count).map(|_| AppCounters::default()).collect(),
            delivery_latency: LatencyHistogram::default(),
        }
    }

    /// Counts one Pusher error sent.
    pub fn error(&self, fault: Fault) {
        self.errors[fault.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Buckets of [`LatencyHistogram`]: four per doubling from 16 µs, the last one open.
pub const LATENCY_BUCKETS: usize = 96;

/// A latency histogram with logarithmic buckets (about 19% wide), written by one shard with
/// relaxed atomics and summed by readers. Bucket `i` holds latencies up to
/// [`latency_bucket_bound_us`]`(i)`; the last one everything longer (over about 70 s).
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyHistogram {
    /// Counts `n` samples of `latency`.
    pub fn record(&self, latency: std::time::Duration, n: u64) {
        let us = latency.as_micros().max(1) as f64;
        // Bucket i's upper bound is 16 µs · 2^(i/4).
        let i = (4.0 * (us / 16.0).log2()).ceil().max(0.0) as usize;
        self.buckets[i.min(LATENCY_BUCKETS - 1)].fetch_add(n, Ordering::Relaxed);
    }

    /// The counts, bucket by bucket.
    pub fn counts(&self) -> [u64; LATENCY_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// The upper bound of latency bucket `i`, in microseconds.
pub fn latency_bucket_bound_us(i: usize) -> u64 {
    (16.0 * 2f64.powf(i as f64 / 4.0)).round() as u64
}

/// The `q` quantile (0..1) of bucket counts, as its bucket's upper bound in microseconds;
/// `None` without samples.
pub fn latency_quantile_us(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(latency_bucket_bound_us(i));
        }
    }
    Some(latency_bucket_bound_us(counts.len() - 1))
}

/// The dashboard's picture of the server (see [`ringcast_shared::Overview`]). Latency
/// percentiles cover the samples since `previous_latency`, which is updated to now.
pub fn overview(
    shards: &[std::sync::Arc<ShardMetrics>],
    app_ids: &[&str],
    tenants: &TenantCounters,
    previous_latency: &mut [u64; LATENCY_BUCKETS],
) -> ringcast_shared::Overview {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let sum = |f: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    let shard_connections: Vec<i64> = shards
        .iter()
        .map(|s| {
            s.apps
                .iter()
                .map(|a| a.connections.load(Ordering::Relaxed))
                .sum()
        })
        .collect();
    let mut latency = [0u64; LATENCY_BUCKETS];
    for shard in shards {
        for (total, count) in latency.iter_mut().zip(shard.delivery_latency.counts()) {
            *total += count;
        }
    }
    let interval: Vec<u64> = latency
        .iter()
        .zip(previous_latency.iter())
        .map(|(now, before)| now.saturating_sub(*before))
        .collect();
    *previous_latency = latency;
    let apps = app_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let app = |f: &dyn Fn(&AppCounters) -> u64| {
                shards
                    .iter()
                    .filter_map(|s| s.apps.get(i))
                    .map(f)
                    .sum::<u64>()
            };
            ringcast_shared::AppLoad {
                id: (*id).to_owned(),
                connections: shards
                    .iter()
                    .filter_map(|s| s.apps.get(i))
                    .map(|a| a.connections.load(Ordering::Relaxed))
                    .sum(),
                publishes: app(&|a| load(&a.publishes)),
                deliveries: app(&|a| load(&a.deliveries)),
                auth_failures: app(&|a| load(&a.auth_failures)),
                rate_limited: app(&|a| load(&a.rate_limited)),
                cluster_connections: None,
            }
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
        connections: shard_connections.iter().sum(),
        subscriptions: shards
            .iter()
            .map(|s| s.subscriptions.load(Ordering::Relaxed))
            .sum(),
        messages_in: sum(&|s| load(&s.messages_in)),
        messages_out: sum(&|s| load(&s.messages_out)),
        deliveries: sum(&|s| load(&s.deliveries)),
        auth_failures: sum(&|s| load(&s.auth_failures)),
        rate_limited: sum(&|s| load(&s.rate_limited)),
        slow_consumers_closed: sum(&|s| load(&s.slow_consumers_closed)),
        latency_p50_us: latency_quantile_us(&interval, 0.5),
        latency_p99_us: latency_quantile_us(&interval, 0.99),
        shards: shard_connections,
        apps,
        tenants,
        cluster: None,
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

/// Counters of the webhook sender.
#[derive(Default, Debug)]
pub struct WebhookMetrics {
    /// Events handed to the sender.
    pub queued: AtomicU64,
    /// Events dropped because the sender's queue was full.
    pub dropped: AtomicU64,
    /// Requests answered with 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (non-2xx or network error).
    pub failed_attempts: AtomicU64,
    /// Requests given up after retrying for five minutes (or evicted from a full retry queue).
    pub abandoned: AtomicU64,
}

/// Heap allocations made by the process, when built with the `count-allocations` feature.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations into [`ALLOCATIONS`].
#[cfg(feature = "count-allocations")]
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the counter is a relaxed atomic with no effect on memory.
#[cfg(feature = "count-allocations")]
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Server-wide facts rendered with the counters.
pub struct ServerFacts<'a> {
    /// `io_uring` or `epoll`.
    pub driver: &'a str,
    /// App ids, indexed like [`ShardMetrics::apps`].
    pub app_ids: Vec<&'a str>,
    /// The webhook sender's counters.
    pub webhooks: &'a WebhookMetrics,
    /// The audit writer's counters.
    pub audit: &'a crate::audit::AuditMetrics,
    /// Failed authorizations per app and tenant.
    pub tenants: &'a TenantCounters,
    /// The cluster link, in cluster mode.
    pub cluster: Option<&'a crate::core::cluster::ClusterStatus>,
    /// Cluster mode: each app's connections on every node (indexed like `app_ids`).
    pub cluster_app_connections: Vec<usize>,
}

/// Renders every shard's counters, summed, in the Prometheus text format.
pub fn render_prometheus(
    shards: &[std::sync::Arc<ShardMetrics>],
    facts: &ServerFacts<'_>,
) -> String {
    let mut out = String::with_capacity(4096);
    let sum = |f: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    let sum_i = |f: &dyn Fn(&ShardMetrics) -> i64| shards.iter().map(|s| f(s)).sum::<i64>();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

    let _ = writeln!(out, "# HELP ringcast_info Static facts about this server.");
    let _ = writeln!(out, "# TYPE ringcast_info gauge");
    let _ = writeln!(
        out,
        "ringcast_info{{driver=\"{}\",shards=\"{}\",version=\"{}\"}} 1",
        facts.driver,
        shards.len(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(cluster) = facts.cluster {
        render_cluster(&mut out, cluster);
        let name = "ringcast_cluster_app_connections";
        let _ = writeln!(
            out,
            "# HELP {name} Open connections per app on every node (the others' as of their last heartbeat).\n# TYPE {name} gauge"
        );
        for (app_id, n) in facts.app_ids.iter().zip(&facts.cluster_app_connections) {
            let _ = writeln!(out, "{name}{{app=\"{app_id}\"}} {n}");
        }
    }
    let me = std::process::id();
    if let Some(rss) = process::rss_kib(me) {
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            (rss * 1024) as i64,
        );
    }
    if let Some(fds) = process::open_fds(me) {
        gauge(
            &mut out,
            "process_open_fds",
            "Open file descriptors.",
            fds as i64,
        );
    }
    let open = sum_i(&|s| {
        s.apps
            .iter()
            .map(|a| a.connections.load(Ordering::Relaxed))
            .sum()
    });
    gauge(
        &mut out,
        "ringcast_connections",
        "Open WebSocket connections.",
        open,
    );
    gauge(
        &mut out,
        "ringcast_subscriptions",
        "Active channel subscriptions.",
        sum_i(&|s| s.subscriptions.load(Ordering::Relaxed)),
    );
    let counters: [(&str, &str, u64); 14] = [
        (
            "ringcast_connections_opened_total",
            "WebSocket connections accepted.",
            sum(&|s| load(&s.connections_opened)),
        ),
        (
            "ringcast_connections_closed_total",
            "WebSocket connections closed.",
            sum(&|s| load(&s.connections_closed)),
        ),
        (
            "ringcast_messages_in_total",
            "WebSocket messages received.",
            sum(&|s| load(&s.messages_in)),
        ),
        (
            "ringcast_messages_out_total",
            "WebSocket frames queued for sending.",
            sum(&|s| load(&s.messages_out)),
        ),
        (
            "ringcast_deliveries_total",
            "Event frames queued to subscribers.",
            sum(&|s| load(&s.deliveries)),
        ),
        (
            "ringcast_bytes_in_total",
            "Bytes received on WebSocket connections.",
            sum(&|s| load(&s.bytes_in)),
        ),
        (
            "ringcast_bytes_out_total",
            "Bytes written to sockets.",
            sum(&|s| load(&s.bytes_out)),
        ),
        (
            "ringcast_write_calls_total",
            "write/writev calls on sockets.",
            sum(&|s| load(&s.write_calls)),
        ),
        (
            "ringcast_auth_failures_total",
            "Subscriptions refused by authorization.",
            sum(&|s| load(&s.auth_failures)),
        ),
        (
            "ringcast_slow_consumers_closed_total",
            "Connections closed with 4100 for a full send buffer.",
            sum(&|s| load(&s.slow_consumers_closed)),
        ),
        (
            "ringcast_rate_limited_total",
            "Requests refused by a rate limit (connection attempts, client events, API calls).",
            sum(&|s| load(&s.rate_limited)),
        ),
        (
            "ringcast_mesh_delayed_total",
            "Mesh messages that waited for a full queue.",
            sum(&|s| load(&s.mesh_delayed)),
        ),
        (
            "ringcast_http_requests_total",
            "HTTP requests served.",
            sum(&|s| load(&s.http_requests)),
        ),
        (
            "ringcast_publishes_total",
            "Events published.",
            sum(&|s| s.apps.iter().map(|a| load(&a.publishes)).sum()),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let w = facts.webhooks;
    let a = facts.audit;
    for (name, help, value) in [
        (
            "ringcast_audit_records_written_total",
            "Audit records stored.",
            &a.written,
        ),
        (
            "ringcast_audit_records_dropped_total",
            "Audit records dropped: the writer's queue was full.",
            &a.dropped,
        ),
        (
            "ringcast_audit_records_pruned_total",
            "Audit records deleted by retention.",
            &a.pruned,
        ),
        (
            "ringcast_audit_errors_total",
            "Audit writes or flushes that failed.",
            &a.errors,
        ),
        (
            "ringcast_webhook_events_queued_total",
            "Webhook events handed to the sender.",
            &w.queued,
        ),
        (
            "ringcast_webhook_events_dropped_total",
            "Webhook events dropped: the sender's queue was full.",
            &w.dropped,
        ),
        (
            "ringcast_webhook_requests_delivered_total",
            "Webhook requests answered with 2xx.",
            &w.delivered,
        ),
        (
            "ringcast_webhook_attempts_failed_total",
            "Webhook attempts that failed.",
            &w.failed_attempts,
        ),
        (
            "ringcast_webhook_requests_abandoned_total",
            "Webhook requests given up after retrying.",
            &w.abandoned,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringcast_tenant_auth_failures_total Denied authorization decisions per app and tenant.\n# TYPE ringcast_tenant_auth_failures_total counter"
    );
    for ((app, tenant), n) in facts.tenants.snapshot() {
        let app_id = facts.app_ids.get(usize::from(app)).copied().unwrap_or("?");
        let tenant = tenant.replace(['\\', '"', '\n'], "_");
        let _ = writeln!(
            out,
            "ringcast_tenant_auth_failures_total{{app=\"{app_id}\",tenant=\"{tenant}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringcast_tenant_connections Open connections whose token or sign-in names the tenant.\n# TYPE ringcast_tenant_connections gauge"
    );
    for ((app, tenant), n) in facts.tenants.connections() {
        let app_id = facts.app_ids.get(usize::from(app)).copied().unwrap_or("?");
        let tenant = tenant.replace(['\\', '"', '\n'], "_");
        let _ = writeln!(
            out,
            "ringcast_tenant_connections{{app=\"{app_id}\",tenant=\"{tenant}\"}} {n}"
        );
    }
    if cfg!(feature = "count-allocations") {
        let n = ALLOCATIONS.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP ringcast_allocations_total Heap allocations (count-allocations builds only).\n\
             # TYPE ringcast_allocations_total counter\nringcast_allocations_total {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringcast_errors_total Pusher errors sent, by code."
    );
    let _ = writeln!(out, "# TYPE ringcast_errors_total counter");
    for fault in Fault::ALL {
        let n = sum(&|s| load(&s.errors[fault.index()]));
        let code = crate::core::wire::pusher::codes::code(fault);
        let _ = writeln!(out, "ringcast_errors_total{{code=\"{code}\"}} {n}");
    }
    let per_app: [PerAppSeries; 6] = [
        (
            "ringcast_app_connections",
            "Open connections per app.",
            "gauge",
            |a| a.connections.load(Ordering::Relaxed),
        ),
        (
            "ringcast_app_messages_in_total",
            "Messages received per app.",
            "counter",
            |a| a.messages_in.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_app_publishes_total",
            "Events published per app.",
            "counter",
            |a| a.publishes.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_app_deliveries_total",
            "Event frames delivered per app.",
            "counter",
            |a| a.deliveries.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_app_auth_failures_total",
            "Denied authorization decisions per app.",
            "counter",
            |a| a.auth_failures.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_app_rate_limited_total",
            "Requests refused by a rate limit per app.",
            "counter",
            |a| a.rate_limited.load(Ordering::Relaxed) as i64,
        ),
    ];
    for (name, help, kind, get) in per_app {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, app_id) in facts.app_ids.iter().enumerate() {
            let v: i64 = shards.iter().filter_map(|s| s.apps.get(i)).map(get).sum();
            let _ = writeln!(out, "{name}{{app=\"{app_id}\"}} {v}");
        }
    }
    let mut latency = [0u64; LATENCY_BUCKETS];
    for shard in shards {
        for (sum, count) in latency.iter_mut().zip(shard.delivery_latency.counts()) {
            *sum += count;
        }
    }
    let _ = writeln!(
        out,
        "# HELP ringcast_delivery_latency_seconds From an event's acceptance to its frame written to the subscriber's socket.\n# TYPE ringcast_delivery_latency_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, count) in latency.iter().enumerate() {
        cumulative += count;
        // Every fourth bound (each doubling) keeps the page short; counts stay exact.
        if i % 4 == 3 && i + 1 < LATENCY_BUCKETS {
            let _ = writeln!(
                out,
                "ringcast_delivery_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
                latency_bucket_bound_us(i) as f64 / 1e6
            );
        }
    }
    let _ = writeln!(
        out,
        "ringcast_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}\nringcast_delivery_latency_seconds_count {cumulative}"
    );
    out
}

/// A per-app series: name, help, Prometheus type, and how to read it.
type PerAppSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&AppCounters) -> i64,
);

fn render_cluster(out: &mut String, cluster: &crate::core::cluster::ClusterStatus) {
    let up = cluster.is_up();
    let _ = writeln!(
        out,
        "# HELP ringcast_cluster_up 1 while the link to Redis is up and synchronized; 0 means degraded (local delivery only).\n# TYPE ringcast_cluster_up gauge\nringcast_cluster_up{{node=\"{}\"}} {}",
        cluster.node,
        u8::from(up)
    );
    gauge(
        out,
        "ringcast_cluster_degraded",
        "1 while Redis is unreachable and this node works alone.",
        i64::from(!up),
    );
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
    gauge(
        out,
        "ringcast_cluster_nodes",
        "Nodes alive at the last heartbeat, this one included.",
        load(&cluster.nodes_alive),
    );
    for (name, help, value) in [
        (
            "ringcast_cluster_published_total",
            "Messages published to the cluster.",
            &cluster.published,
        ),
        (
            "ringcast_cluster_received_total",
            "Messages received from the cluster.",
            &cluster.received,
        ),
        (
            "ringcast_cluster_local_only_total",
            "Events delivered on this node only because Redis was unreachable.",
            &cluster.local_only,
        ),
        (
            "ringcast_cluster_connects_total",
            "Connections made to Redis.",
            &cluster.connects,
        ),
        (
            "ringcast_cluster_nodes_removed_total",
            "Dead nodes this node removed from the cluster.",
            &cluster.nodes_removed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            load(value)
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// What Linux's `/proc` says about a process: for `/metrics`, and for tests and benchmarks
/// that watch a server from outside.
pub mod process {
    /// Resident memory (`VmRSS` in `/proc/PID/status`), in KiB.
    pub fn rss_kib(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fn open_fds(pid: u32) -> Option<u64> {
        Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reads_this_process() {
            let me = std::process::id();
            assert!(super::rss_kib(me).is_some_and(|kib| kib > 0));
            assert!(super::open_fds(me).is_some_and(|n| n >= 3));
            assert_eq!(super::rss_kib(u32::MAX), None);
        }
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latencies_land_in_buckets_about_a_fifth_wide() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(5), 1);
        h.record(Duration::from_millis(10), 98);
        h.record(Duration::from_secs(600), 1);
        let counts = h.counts();
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert_eq!(latency_quantile_us(&counts, 0.0), Some(16));
        let p50 = latency_quantile_us(&counts, 0.5).unwrap();
        assert!((10_000..=12_000).contains(&p50), "{p50}");
        assert_eq!(
            latency_quantile_us(&counts, 1.0),
            Some(latency_bucket_bound_us(LATENCY_BUCKETS - 1))
        );
        assert_eq!(latency_quantile_us(&[0; 4], 0.5), None);
        for i in 1..LATENCY_BUCKETS {
            let (lo, hi) = (latency_bucket_bound_us(i - 1), latency_bucket_bound_us(i));
            assert!(hi > lo && (hi as f64) < lo as f64 * 1.2 + 1.0, "{lo} {hi}");
        }
    }
}
