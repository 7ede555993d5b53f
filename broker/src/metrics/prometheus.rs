//! `/metrics`: every counter in the Prometheus text format, from one [`Totals`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::counters::{AppTotals, Totals};
use super::latency::{LATENCY_BUCKETS, latency_bucket_bound_us};
use super::{ALLOCATIONS, RedisBroadcastMetrics, VerifierMetrics, WebhookMetrics, process};
use crate::core::auth::jwks::LiveKeys;
use crate::core::counters::TenantCounters;
use crate::core::wire::Fault;

/// Server-wide facts rendered with the counters.
pub struct ServerFacts<'a> {
    /// `io_uring` or `epoll`.
    pub driver: &'a str,
    /// App ids, in app order.
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
    /// Each app's backend token verification counters, `None` where it has none (indexed
    /// like `app_ids`).
    pub verifiers: Vec<Option<&'a VerifierMetrics>>,
    /// Each app's Redis broadcast counters, `None` where it has none (indexed like
    /// `app_ids`).
    pub redis_broadcast: Vec<Option<&'a RedisBroadcastMetrics>>,
    /// The JWKS key sets of the apps whose keys come from `jwks_url`, by app id.
    pub jwks: Vec<(&'a str, &'a LiveKeys)>,
    /// Which apps keep history (indexed like `app_ids`), and the history store's counters.
    pub history: (Vec<bool>, &'a crate::history::HistoryMetrics),
    /// The inbox store's counters, with the apps that keep an inbox (`None` where one
    /// does not, indexed like `app_ids`).
    pub inbox: Option<(
        &'a crate::inbox::InboxMetrics,
        Vec<Option<&'a crate::inbox::AppInboxMetrics>>,
    )>,
}

/// Renders every shard's counters, summed, in the Prometheus text format.
pub fn render_prometheus(totals: &Totals, facts: &ServerFacts<'_>) -> String {
    let mut out = String::with_capacity(4096);

    let _ = writeln!(out, "# HELP ringcast_info Static facts about this server.");
    let _ = writeln!(out, "# TYPE ringcast_info gauge");
    let _ = writeln!(
        out,
        "ringcast_info{{driver=\"{}\",shards=\"{}\",version=\"{}\"}} 1",
        facts.driver,
        totals.shard_connections.len(),
        env!("CARGO_PKG_VERSION")
    );
    let name = "ringcast_shard_cpu";
    let _ = writeln!(
        out,
        "# HELP {name} The CPU a pinned shard's thread runs on (shards not pinned are absent).\n# TYPE {name} gauge"
    );
    for (shard, cpu) in totals.shard_cpus.iter().enumerate() {
        if let Some(cpu) = cpu {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {cpu}");
        }
    }
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
    gauge(
        &mut out,
        "ringcast_connections",
        "Open WebSocket connections.",
        totals.connections(),
    );
    gauge(
        &mut out,
        "ringcast_subscriptions",
        "Active channel subscriptions.",
        totals.subscriptions,
    );
    gauge(
        &mut out,
        "ringcast_typing_members",
        "Members typing on [apps.typing] channels.",
        totals.typing_members,
    );
    let counters: [(&str, &str, u64); 19] = [
        (
            "ringcast_receipts_tracked_total",
            "[apps.receipts] messages whose delivery receipts are kept.",
            totals.receipts[0],
        ),
        (
            "ringcast_receipts_untracked_total",
            "Messages with an id not tracked: their channel had over max_recipients subscribers.",
            totals.receipts[1],
        ),
        (
            "ringcast_receipts_forgotten_total",
            "Tracked messages forgotten: over max_messages, or past ttl_secs.",
            totals.receipts[2],
        ),
        (
            "ringcast_receipts_recipients_dropped_total",
            "Receipts not kept: their message had max_recipients already.",
            totals.receipts[3],
        ),
        (
            "ringcast_typing_expired_total",
            "Typing flags the broker cleared after expire_secs without a renewal.",
            totals.typing_expired,
        ),
        (
            "ringcast_connections_opened_total",
            "WebSocket connections accepted.",
            totals.connections_opened,
        ),
        (
            "ringcast_connections_closed_total",
            "WebSocket connections closed.",
            totals.connections_closed,
        ),
        (
            "ringcast_messages_in_total",
            "WebSocket messages received.",
            totals.messages_in,
        ),
        (
            "ringcast_messages_out_total",
            "WebSocket frames queued for sending.",
            totals.messages_out,
        ),
        (
            "ringcast_deliveries_total",
            "Event frames queued to subscribers.",
            totals.deliveries,
        ),
        (
            "ringcast_bytes_in_total",
            "Bytes received on WebSocket connections.",
            totals.bytes_in,
        ),
        (
            "ringcast_bytes_out_total",
            "Bytes written to sockets.",
            totals.bytes_out,
        ),
        (
            "ringcast_write_calls_total",
            "write/writev calls on sockets.",
            totals.write_calls,
        ),
        (
            "ringcast_auth_failures_total",
            "Subscriptions refused by authorization.",
            totals.auth_failures,
        ),
        (
            "ringcast_slow_consumers_closed_total",
            "Connections closed with 4100 for a full send buffer.",
            totals.slow_consumers_closed,
        ),
        (
            "ringcast_rate_limited_total",
            "Requests refused by a rate limit (connection attempts, client events, API calls).",
            totals.rate_limited,
        ),
        (
            "ringcast_mesh_delayed_total",
            "Mesh messages that waited for a full queue.",
            totals.mesh_delayed,
        ),
        (
            "ringcast_http_requests_total",
            "HTTP requests served.",
            totals.http_requests,
        ),
        (
            "ringcast_publishes_total",
            "Events published.",
            totals.publishes(),
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
            "ringcast_history_store_written_total",
            "History events stored.",
            &facts.history.1.written,
        ),
        (
            "ringcast_history_store_deleted_total",
            "History events deleted from the store.",
            &facts.history.1.deleted,
        ),
        (
            "ringcast_history_store_dropped_total",
            "History writes dropped: the writer's queue was full.",
            &facts.history.1.dropped,
        ),
        (
            "ringcast_history_store_errors_total",
            "History store writes or flushes that failed.",
            &facts.history.1.errors,
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
    render_verifiers(&mut out, facts);
    render_redis_broadcast(&mut out, facts);
    render_inbox(&mut out, facts);
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
        let n = totals.errors[fault.index()];
        let code = crate::core::wire::pusher::codes::code(fault);
        let _ = writeln!(out, "ringcast_errors_total{{code=\"{code}\"}} {n}");
    }
    let per_app: [PerAppSeries<AppTotals>; 6] = [
        (
            "ringcast_app_connections",
            "Open connections per app.",
            "gauge",
            |a| a.connections,
        ),
        (
            "ringcast_app_messages_in_total",
            "Messages received per app.",
            "counter",
            |a| a.messages_in as i64,
        ),
        (
            "ringcast_app_publishes_total",
            "Events published per app.",
            "counter",
            |a| a.publishes as i64,
        ),
        (
            "ringcast_app_deliveries_total",
            "Event frames delivered per app.",
            "counter",
            |a| a.deliveries as i64,
        ),
        (
            "ringcast_app_auth_failures_total",
            "Denied authorization decisions per app.",
            "counter",
            |a| a.auth_failures as i64,
        ),
        (
            "ringcast_app_rate_limited_total",
            "Requests refused by a rate limit per app.",
            "counter",
            |a| a.rate_limited as i64,
        ),
    ];
    let apps: Vec<(&str, &AppTotals)> = facts.app_ids.iter().copied().zip(&totals.apps).collect();
    render_per_app(&mut out, &per_app, &apps);
    super::history::render_history(&mut out, &facts.app_ids, &totals.apps, &facts.history.0);
    render_jwks(&mut out, &facts.jwks);
    let _ = writeln!(
        out,
        "# HELP ringcast_delivery_latency_seconds From an event's acceptance to its frame written to the subscriber's socket.\n# TYPE ringcast_delivery_latency_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, count) in totals.latency.iter().enumerate() {
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

/// A per-app series: name, help, Prometheus type, and how to read it from a `T`.
pub(super) type PerAppSeries<T> = (&'static str, &'static str, &'static str, fn(&T) -> i64);

/// Per app with `jwks_url`: fetches that loaded keys, fetches that failed, keys in use.
fn render_jwks(out: &mut String, apps: &[(&str, &LiveKeys)]) {
    if apps.is_empty() {
        return;
    }
    let series: [PerAppSeries<LiveKeys>; 3] = [
        (
            "ringcast_app_jwks_fetches_total",
            "JWKS fetches that loaded a key set, per app.",
            "counter",
            |keys| keys.fetches_ok() as i64,
        ),
        (
            "ringcast_app_jwks_fetch_failures_total",
            "JWKS fetches that failed or gave no usable key (the keys in use stay), per app.",
            "counter",
            |keys| keys.fetches_failed() as i64,
        ),
        (
            "ringcast_app_jwks_keys",
            "JWKS keys in use per app (0 until the first successful fetch).",
            "gauge",
            |keys| keys.keys_loaded() as i64,
        ),
    ];
    render_per_app(out, &series, apps);
}

/// Per app with `[apps.redis_broadcast]`: events published, messages refused, reconnections.
fn render_redis_broadcast(out: &mut String, facts: &ServerFacts<'_>) {
    let apps = of_apps(&facts.app_ids, &facts.redis_broadcast);
    if apps.is_empty() {
        return;
    }
    let series: [PerAppSeries<RedisBroadcastMetrics>; 3] = [
        (
            "ringcast_redis_broadcast_messages_total",
            "Events from Laravel's Redis broadcaster published, per app.",
            "counter",
            |m| m.messages.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_redis_broadcast_invalid_total",
            "Messages from Redis refused (no Laravel payload, a bad channel, or an event the HTTP API would refuse), per app.",
            "counter",
            |m| m.invalid.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_redis_broadcast_reconnects_total",
            "Connections to Redis attempted again after one was lost or refused, per app.",
            "counter",
            |m| m.reconnects.load(Ordering::Relaxed) as i64,
        ),
    ];
    render_per_app(out, &series, &apps);
}

/// With `[apps.inbox]`: the store's drops and errors, and per app what was kept, evicted,
/// expired, acked, read and refused.
fn render_inbox(out: &mut String, facts: &ServerFacts<'_>) {
    let Some((store, per_app)) = &facts.inbox else {
        return;
    };
    let apps = of_apps(&facts.app_ids, per_app);
    if apps.is_empty() {
        return;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
    for (name, help, value) in [
        (
            "ringcast_inbox_dropped_total",
            "Notifications dropped before the inbox store: its writer's queue was full.",
            &store.dropped,
        ),
        (
            "ringcast_inbox_errors_total",
            "Inbox store writes or flushes that failed.",
            &store.errors,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            load(value)
        );
    }
    let series: [PerAppSeries<crate::inbox::AppInboxMetrics>; 6] = [
        (
            "ringcast_inbox_written_total",
            "Notifications kept in users' inboxes, per app.",
            "counter",
            |m| m.written.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_inbox_evicted_total",
            "Notifications deleted to keep a user's inbox within max_per_user, per app.",
            "counter",
            |m| m.evicted.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_inbox_expired_total",
            "Notifications deleted past their ttl, per app.",
            "counter",
            |m| m.expired.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_inbox_acked_total",
            "Notifications marked read by POST /pending-notifications/ack, per app.",
            "counter",
            |m| m.acked.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_inbox_pending_reads_total",
            "GET /pending-notifications reads answered, per app.",
            "counter",
            |m| m.reads.load(Ordering::Relaxed) as i64,
        ),
        (
            "ringcast_inbox_refused_users_total",
            "Notifications dropped because the app's inbox already held max_users users, per app.",
            "counter",
            |m| m.refused_users.load(Ordering::Relaxed) as i64,
        ),
    ];
    render_per_app(out, &series, &apps);
}

/// The apps that have a `T` (`per_app` is indexed like `app_ids`), with it.
fn of_apps<'a, T>(app_ids: &[&'a str], per_app: &[Option<&'a T>]) -> Vec<(&'a str, &'a T)> {
    app_ids
        .iter()
        .zip(per_app)
        .filter_map(|(app, t)| t.map(|t| (*app, t)))
        .collect()
}

/// Each series, with one line per app of `apps` (app id, what the series reads).
pub(super) fn render_per_app<T>(out: &mut String, series: &[PerAppSeries<T>], apps: &[(&str, &T)]) {
    for (name, help, kind, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (app_id, value) in apps {
            let _ = writeln!(out, "{name}{{app=\"{app_id}\"}} {}", get(value));
        }
    }
}

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

/// The backend token verifiers' counters, per app that has one.
fn render_verifiers(out: &mut String, facts: &ServerFacts<'_>) {
    let apps = of_apps(&facts.app_ids, &facts.verifiers);
    if apps.is_empty() {
        return;
    }
    let name = "ringcast_token_verification_calls_total";
    let _ = writeln!(
        out,
        "# HELP {name} Backend token verification calls, by result.\n# TYPE {name} counter"
    );
    for (app, v) in &apps {
        for (result, n) in [
            ("verified", &v.verified),
            ("refused", &v.refused),
            ("failed", &v.failed),
        ] {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{app=\"{app}\",result=\"{result}\"}} {n}");
        }
    }
    for (name, help, counter) in [
        (
            "ringcast_token_verification_cache_hits_total",
            "Connections verified from the cache.",
            (|v: &VerifierMetrics| &v.cache_hits) as fn(&VerifierMetrics) -> &AtomicU64,
        ),
        (
            "ringcast_token_verification_shared_total",
            "Connections that waited for another connection's backend call with the same credentials.",
            |v| &v.shared,
        ),
        (
            "ringcast_token_verification_overloaded_total",
            "Connections refused without a backend call: too many calls were waiting.",
            |v| &v.overloaded,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (app, v) in &apps {
            let n = counter(v).load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{app=\"{app}\"}} {n}");
        }
    }
}
