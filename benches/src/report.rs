//! Results: JSON for machines, a Markdown table for people.

use serde::{Deserialize, Serialize};

use crate::client::Wire;

/// Latency percentiles in microseconds.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// What a fan-out run measured.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct FanoutResult {
    /// Subscribers connected and subscribed.
    pub subscribers: usize,
    /// Channels.
    pub channels: usize,
    /// Target publish rate per second.
    pub rate: u32,
    /// Publishing time in seconds.
    pub seconds: f64,
    /// Publishes the server accepted.
    pub published: u64,
    /// Publishes that failed (non-2xx or I/O error).
    pub publish_errors: u64,
    /// Deliveries expected (accepted publishes × subscribers of their channel).
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// delivered / expected.
    pub delivery_ratio: f64,
    /// Deliveries per second over the publishing window.
    pub deliveries_per_sec: f64,
    /// Publish to receive.
    pub latency: Latency,
    /// HTTP publish round trip.
    pub publish_latency: Latency,
    /// From the server's `/metrics`: socket writes per delivered frame.
    pub writes_per_delivery: Option<f64>,
    /// From the server's `/metrics` (if it counts allocations): allocations per publish.
    pub allocations_per_publish: Option<f64>,
    /// From the server's `/metrics`: connections closed with 4100 during the run.
    pub slow_consumers_closed: Option<f64>,
    /// Server RSS at the end, in KiB.
    pub server_rss_kib: Option<u64>,
    /// Page faults the server took over the window and its drain (minor + major; every
    /// node's, for a cluster): memory it touched for the first time.
    #[serde(default)]
    pub server_page_faults: Option<u64>,
    /// Server CPU use over the window (100 = one core busy); every node's, for a cluster.
    #[serde(default)]
    pub server_cpu_percent: Option<f64>,
    /// Cluster runs: the part of the nodes' CPU spent in their Redis link threads.
    #[serde(default)]
    pub link_cpu_percent: Option<f64>,
    /// Cluster runs: Redis's CPU use over the window.
    #[serde(default)]
    pub redis_cpu_percent: Option<f64>,
    /// Nodes the subscribers and publishers were spread over.
    #[serde(default)]
    pub nodes: Option<usize>,
    /// The protocol the subscribers spoke (results written before it was recorded: Pusher).
    #[serde(default)]
    pub wire: Wire,
}

/// A Markdown table of fan-out results, one row per publish rate.
pub fn markdown(results: &[FanoutResult]) -> String {
    let mut out = String::from(
        "| publishes/s (target) | delivered / expected | deliveries/s | latency p50 / p99 / p99.9 / max (ms) | publish p99 (ms) | server CPU | writes per delivery | allocations per publish | slow closed | server RSS | server page faults |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    for r in results {
        out.push_str(&format!(
            "| {} | {} / {} ({:.4}) | {:.0} | {:.2} / {:.2} / {:.2} / {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |\n",
            r.rate,
            r.delivered,
            r.expected,
            r.delivery_ratio,
            r.deliveries_per_sec,
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.max_us),
            ms(r.publish_latency.p99_us),
            r.server_cpu_percent
                .map_or("-".to_owned(), |c| format!("{c:.0}%")),
            opt(r.writes_per_delivery, 4),
            opt(r.allocations_per_publish, 1),
            opt(r.slow_consumers_closed, 0),
            r.server_rss_kib.map_or("-".to_owned(), |k| format!("{k} KiB")),
            r.server_page_faults.map_or("-".to_owned(), |f| f.to_string()),
        ));
    }
    if results.iter().any(|r| r.redis_cpu_percent.is_some()) {
        out.push_str(
            "\n| publishes/s (target) | nodes' CPU | of it, Redis link threads | Redis CPU |\n|---|---|---|---|\n",
        );
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |c| format!("{c:.1}%"));
        for r in results {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.rate,
                pct(r.server_cpu_percent),
                pct(r.link_cpu_percent),
                pct(r.redis_cpu_percent),
            ));
        }
    }
    if let Some(r) = results.first() {
        if let Some(nodes) = r.nodes.filter(|n| *n > 1) {
            out.push_str(&format!(
                "\nSubscribers and publishers spread evenly over {nodes} nodes sharing one Redis.\n"
            ));
        }
        out.push_str(&format!(
            "\n{} subscribers speaking {} over {} channels, {:.0} s or more per rate (publishing falls behind the target rate when the server answers slowly); publish errors: {}\n",
            r.subscribers,
            r.wire.name(),
            r.channels,
            results.iter().map(|r| r.seconds).fold(f64::MAX, f64::min),
            results.iter().map(|r| r.publish_errors).sum::<u64>()
        ));
    }
    out
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One reading of the server's resident memory.
#[derive(Serialize, Debug)]
pub struct RssSample {
    /// Seconds since the churn started.
    pub at_s: f64,
    /// Resident set size in KiB.
    pub rss_kib: u64,
}

/// What a presence churn run measured and found.
#[derive(Serialize, Debug)]
pub struct ChurnResult {
    /// Concurrent churning clients.
    pub workers: usize,
    /// Presence channels.
    pub channels: usize,
    /// Churn time in seconds.
    pub seconds: f64,
    /// Sessions completed (connect .. leave).
    pub sessions: u64,
    /// Sessions per second.
    pub sessions_per_sec: f64,
    /// Presence subscriptions that succeeded.
    pub joins: u64,
    /// Sessions that failed (refused, timed out, closed by the server).
    pub session_errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Sessions whose own published event did not come back within the step time.
    pub undelivered: u64,
    /// `member_added` events the observers saw.
    pub member_added: u64,
    /// `member_removed` events the observers saw.
    pub member_removed: u64,
    /// Client events (whispers) the observers saw.
    pub client_events_seen: u64,
    /// Member events that contradict the roster: an add of a present user or a remove of an
    /// absent one.
    pub member_event_anomalies: u64,
    /// Members other than the observers still listed (by the server or in the observers'
    /// rosters) once the churn is over.
    pub ghost_members: u64,
    /// Channels `GET /channels` still lists after every client left.
    pub leaked_channels: Vec<String>,
    /// Server RSS when the churn began, in KiB.
    pub rss_start_kib: Option<u64>,
    /// Server RSS halfway through the run, in KiB.
    pub rss_mid_kib: Option<u64>,
    /// Server RSS after every client left, in KiB.
    pub rss_end_kib: Option<u64>,
    /// Highest RSS sampled during the churn, in KiB.
    pub rss_max_kib: Option<u64>,
    /// RSS readings during the churn.
    pub rss_samples: Vec<RssSample>,
    /// Server file descriptors before the run.
    pub fds_before: Option<u64>,
    /// Server file descriptors after every client left.
    pub fds_after: Option<u64>,
}

impl ChurnResult {
    /// What is wrong, if anything: errors, lost events, inconsistent or ghost members,
    /// leaked channels or descriptors, or memory that kept growing (over 10% above the
    /// halfway reading once every client left).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sessions == 0 {
            out.push("no session completed".to_owned());
        }
        if self.session_errors > 0 {
            out.push(format!(
                "{} sessions failed (first: {})",
                self.session_errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.undelivered > 0 {
            out.push(format!("{} events not delivered", self.undelivered));
        }
        if self.member_event_anomalies > 0 {
            out.push(format!(
                "{} inconsistent member events",
                self.member_event_anomalies
            ));
        }
        if self.ghost_members > 0 {
            out.push(format!("{} ghost presence members", self.ghost_members));
        }
        if !self.leaked_channels.is_empty() {
            out.push(format!("leaked channels: {:?}", self.leaked_channels));
        }
        if let (Some(before), Some(after)) = (self.fds_before, self.fds_after)
            && after > before
        {
            out.push(format!("file descriptors {before} -> {after}"));
        }
        if let (Some(mid), Some(end)) = (self.rss_mid_kib, self.rss_end_kib)
            && end * 10 > mid * 11
        {
            out.push(format!("RSS grew: {mid} KiB halfway, {end} KiB at the end"));
        }
        out
    }
}

/// A Markdown table of a churn result.
pub fn churn_markdown(r: &ChurnResult) -> String {
    let kib = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} KiB"));
    let rows = [
        (
            "workers / presence channels",
            format!("{} / {}", r.workers, r.channels),
        ),
        (
            "sessions (per second)",
            format!(
                "{} in {:.0} s ({:.1}/s)",
                r.sessions, r.seconds, r.sessions_per_sec
            ),
        ),
        ("session errors", r.session_errors.to_string()),
        ("events not delivered", r.undelivered.to_string()),
        (
            "member_added / member_removed seen",
            format!("{} / {}", r.member_added, r.member_removed),
        ),
        ("client events seen", r.client_events_seen.to_string()),
        (
            "inconsistent member events",
            r.member_event_anomalies.to_string(),
        ),
        ("ghost members afterwards", r.ghost_members.to_string()),
        (
            "channels left afterwards",
            r.leaked_channels.len().to_string(),
        ),
        (
            "server RSS start / halfway / max / end",
            format!(
                "{} / {} / {} / {}",
                kib(r.rss_start_kib),
                kib(r.rss_mid_kib),
                kib(r.rss_max_kib),
                kib(r.rss_end_kib)
            ),
        ),
        (
            "server fds before / after",
            format!(
                "{} / {}",
                r.fds_before.map_or("-".to_owned(), |v| v.to_string()),
                r.fds_after.map_or("-".to_owned(), |v| v.to_string())
            ),
        ),
    ];
    let mut out = String::from("| measure | value |\n|---|---|\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out
}

/// RSS with a number of idle subscribed connections open.
#[derive(Serialize, Debug)]
pub struct IdleStep {
    /// Connections open (each subscribed to one channel).
    pub connections: usize,
    /// Server RSS, settled, in KiB.
    pub rss_kib: u64,
    /// (RSS - baseline) / connections, in bytes.
    pub per_connection_bytes: f64,
    /// Time to open and subscribe this step's new connections.
    pub connect_seconds: f64,
}

/// What an idle-memory run measured.
#[derive(Serialize, Debug)]
pub struct IdleResult {
    /// Server RSS before the first connection, in KiB.
    pub baseline_kib: u64,
    /// One reading per step.
    pub steps: Vec<IdleStep>,
    /// Server RSS after every connection was dropped, in KiB.
    pub after_disconnect_kib: u64,
    /// Server file descriptors before.
    pub fds_before: Option<u64>,
    /// Server file descriptors after every connection was dropped.
    pub fds_after: Option<u64>,
}

/// A Markdown table of an idle-memory result.
pub fn idle_markdown(r: &IdleResult) -> String {
    let mut out = String::from("| connections | server RSS | per connection |\n|---|---|---|\n");
    out.push_str(&format!("| 0 | {} KiB | |\n", r.baseline_kib));
    for step in &r.steps {
        out.push_str(&format!(
            "| {} | {} KiB | {:.0} bytes |\n",
            step.connections, step.rss_kib, step.per_connection_bytes
        ));
    }
    out.push_str(&format!(
        "| 0 (after disconnect) | {} KiB | |\n",
        r.after_disconnect_kib
    ));
    out
}

/// One concurrency level of a connection storm.
#[derive(Serialize, Debug)]
pub struct StormLevel {
    /// Connections opened at once.
    pub concurrency: usize,
    /// Connections upgraded and subscribed.
    pub subscribed: usize,
    /// Connections that failed (refused, timed out, closed).
    pub failures: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Time until every connection was subscribed (or failed).
    pub seconds: f64,
    /// Subscribed connections per second.
    pub connections_per_sec: f64,
    /// TCP connect to `subscription_succeeded`, per connection.
    pub latency: Latency,
    /// Server RSS with every connection open, in KiB.
    pub rss_peak_kib: Option<u64>,
    /// After all connections dropped at once: time for a new one to be subscribed, in ms.
    pub accept_after_drop_ms: Option<f64>,
}

/// What a connection storm measured.
#[derive(Serialize, Debug)]
pub struct StormResult {
    /// Connections per level.
    pub connections: usize,
    /// One entry per concurrency level run.
    pub levels: Vec<StormLevel>,
    /// Server file descriptors before the storms.
    pub fds_before: Option<u64>,
    /// Server file descriptors after the last drop.
    pub fds_after: Option<u64>,
    /// Server RSS before the storms, in KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS after the last drop, in KiB.
    pub rss_after_kib: Option<u64>,
}

/// A Markdown table of a storm result.
pub fn storm_markdown(r: &StormResult) -> String {
    let mut out = String::from(
        "| concurrency | subscribed | failed | time (s) | connections/s | connect→subscribed p50 / p99 / max (ms) | server RSS peak | new connection after drop (ms) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for l in &r.levels {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} / {:.1} / {:.1} | {} | {} |\n",
            l.concurrency,
            l.subscribed,
            l.failures,
            l.seconds,
            l.connections_per_sec,
            ms(l.latency.p50_us),
            ms(l.latency.p99_us),
            ms(l.latency.max_us),
            l.rss_peak_kib
                .map_or("-".to_owned(), |k| format!("{k} KiB")),
            l.accept_after_drop_ms
                .map_or("refused".to_owned(), |v| format!("{v:.1}")),
        ));
    }
    let fmt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    out.push_str(&format!(
        "\nserver fds {} before, {} after; RSS {} KiB before, {} KiB after\n",
        fmt(r.fds_before),
        fmt(r.fds_after),
        fmt(r.rss_before_kib),
        fmt(r.rss_after_kib)
    ));
    out
}

/// A fan-out window passes when every event arrived and p99 stayed under 50 ms.
pub fn sustained(r: &FanoutResult) -> bool {
    r.expected > 0
        && r.delivered >= r.expected
        && r.publish_errors == 0
        && r.latency.p99_us < 50_000
}

/// The highest window that passed, if any.
pub fn best_sustained(results: &[FanoutResult]) -> Option<&FanoutResult> {
    results
        .iter()
        .filter(|r| sustained(r))
        .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec))
}

/// Deliveries per second of the server's CPU over the window, when its CPU was measured.
fn per_cpu_second(r: &FanoutResult) -> Option<f64> {
    let cpu = r.server_cpu_percent.filter(|c| *c > 0.0)?;
    Some(r.deliveries_per_sec / (cpu / 100.0))
}

/// A window fully delivered: every event arrived, no publish failed, and the publishers
/// kept within 5% of the target rate (they wait for each answer, so a server that answers
/// slowly is published to more slowly than asked). Latency does not count here.
pub fn fully_delivered(r: &FanoutResult) -> bool {
    r.expected > 0
        && r.delivered >= r.expected
        && r.publish_errors == 0
        && r.published as f64 >= 0.95 * f64::from(r.rate) * r.seconds
}

/// What one server did in one run of the suite, for [`summary_markdown`].
pub struct ServerRuns<'a> {
    /// The server's label.
    pub label: &'a str,
    /// Its fan-out windows at rising publish rates, in order.
    pub fanout: &'a [FanoutResult],
    /// The light-load window measured after the warm-up, where nothing is saturated.
    pub light: Option<&'a FanoutResult>,
    /// The same light load as the first fan-out after the server started, kept apart.
    pub warmup: Option<&'a FanoutResult>,
}

/// One row per server: deliveries per server CPU-second at each publish rate (with the
/// ratio to `baseline`'s at the same rate), the highest rate fully delivered, and the
/// latency of the light-load and warm-up runs with the page faults the server took in each.
pub fn summary_markdown(servers: &[ServerRuns<'_>], baseline: Option<&str>) -> String {
    let mut rates: Vec<u32> = Vec::new();
    for server in servers {
        for r in server.fanout {
            if !rates.contains(&r.rate) {
                rates.push(r.rate);
            }
        }
    }
    rates.sort_unstable();
    fn at<'a>(server: &ServerRuns<'a>, rate: u32) -> Option<&'a FanoutResult> {
        server.fanout.iter().find(|r| r.rate == rate)
    }
    let base = baseline.and_then(|name| servers.iter().find(|s| s.label == name));
    let mut out = String::from("| server |");
    for rate in &rates {
        out.push_str(&format!(" deliveries per server CPU-second at {rate}/s |"));
    }
    out.push_str(
        " highest rate fully delivered | light load p50 / p99 (ms) | warm-up p50 / p99 (ms) | server page faults, warm-up / light |\n|---|",
    );
    out.push_str(&"---|".repeat(rates.len() + 4));
    out.push('\n');
    let latency = |r: Option<&FanoutResult>| match r {
        Some(r) if fully_delivered(r) => {
            format!("{:.2} / {:.2}", ms(r.latency.p50_us), ms(r.latency.p99_us))
        }
        Some(r) => format!(
            "{:.2} / {:.2} ({:.4} delivered)",
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            r.delivery_ratio
        ),
        None => "-".to_owned(),
    };
    let faults = |r: Option<&FanoutResult>| {
        r.and_then(|r| r.server_page_faults)
            .map_or("-".to_owned(), |f| f.to_string())
    };
    for server in servers {
        out.push_str(&format!("| {} |", server.label));
        for &rate in &rates {
            let window = at(server, rate);
            let cell = match window.zip(window.and_then(per_cpu_second)) {
                Some((r, d)) => {
                    let ratio = base
                        .filter(|b| b.label != server.label)
                        .and_then(|b| at(b, rate))
                        .and_then(per_cpu_second)
                        .map_or(String::new(), |b| format!(" ({:.0}%)", 100.0 * d / b));
                    // Work per CPU-second says little where events were lost: say so.
                    let lost = if r.delivered < r.expected {
                        format!(", {:.1}% delivered", 100.0 * r.delivery_ratio)
                    } else {
                        String::new()
                    };
                    format!("{:.1} k{ratio}{lost}", d / 1000.0)
                }
                None => "-".to_owned(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        let highest = server
            .fanout
            .iter()
            .filter(|r| fully_delivered(r))
            .max_by_key(|r| r.rate)
            .map_or("none".to_owned(), |r| {
                format!("{}/s ({:.0} deliveries/s)", r.rate, r.deliveries_per_sec)
            });
        out.push_str(&format!(
            " {highest} | {} | {} | {} / {} |\n",
            latency(server.light),
            latency(server.warmup),
            faults(server.warmup),
            faults(server.light),
        ));
    }
    if let Some(base) = base {
        out.push_str(&format!(
            "\nPercentages: of {}'s deliveries per server CPU-second at the same rate.",
            base.label
        ));
    }
    out.push_str(
        "\nFully delivered: every event arrived, no publish failed and the publishers kept within 5% of the target rate, whatever the latency.\n",
    );
    out
}

/// One row per server: its best sustained fan-out and, if a baseline is named, the ratio.
pub fn compare_markdown(servers: &[(String, Vec<FanoutResult>)], baseline: Option<&str>) -> String {
    let base = baseline
        .and_then(|name| servers.iter().find(|(label, _)| label == name))
        .and_then(|(_, results)| best_sustained(results))
        .map(|r| r.deliveries_per_sec);
    let mut out = String::from(
        "| server | subscribers speak | best sustained deliveries/s | at publishes/s | p50 / p99 (ms) | vs baseline | server CPU | deliveries per server CPU-second |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (label, results) in servers {
        let wire = results.first().map_or("-", |r| r.wire.name());
        match best_sustained(results) {
            Some(r) => {
                out.push_str(&format!(
                    "| {label} | {wire} | {:.0} | {} | {:.2} / {:.2} | {} | {} | {} |\n",
                    r.deliveries_per_sec,
                    r.rate,
                    ms(r.latency.p50_us),
                    ms(r.latency.p99_us),
                    base.map_or("-".to_owned(), |b| format!(
                        "{:.0}%",
                        100.0 * r.deliveries_per_sec / b
                    )),
                    r.server_cpu_percent
                        .filter(|c| *c > 0.0)
                        .map_or("-".to_owned(), |c| format!("{c:.0}%")),
                    per_cpu_second(r).map_or("-".to_owned(), |d| format!("{d:.0}")),
                ));
            }
            None => out.push_str(&format!(
                "| {label} | {wire} | none of the rates was sustained | | | | | |\n"
            )),
        }
    }
    out.push_str(
        "\nSustained: every event delivered, no publish error, p99 end-to-end latency under 50 ms.\n",
    );
    out
}

/// Two runs rate by rate (the rates both measured): deliveries per server CPU-second of
/// each, `measured` over `reference`, and their latencies. For two runs against one server
/// build, such as its Pusher and its Socket.IO subscribers, where the best sustained rates
/// of [`compare_markdown`] may differ.
pub fn ratio_markdown(
    (measured, measured_results): (&str, &[FanoutResult]),
    (reference, reference_results): (&str, &[FanoutResult]),
) -> String {
    let mut out = format!(
        "{measured} against {reference}, rate by rate:\n\n| publishes/s (target) | {reference}: deliveries per server CPU-second | {measured} | {measured} / {reference} | p50 / p99 {reference} (ms) | p50 / p99 {measured} (ms) |\n|---|---|---|---|---|---|\n"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    for m in measured_results {
        let Some(r) = reference_results.iter().find(|r| r.rate == m.rate) else {
            continue;
        };
        let ratio = match (per_cpu_second(m), per_cpu_second(r)) {
            (Some(m), Some(r)) => format!("{:.0}%", 100.0 * m / r),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} | {:.2} / {:.2} | {:.2} / {:.2} |\n",
            m.rate,
            opt(per_cpu_second(r)),
            opt(per_cpu_second(m)),
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            ms(m.latency.p50_us),
            ms(m.latency.p99_us),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean_run() -> ChurnResult {
        ChurnResult {
            workers: 2,
            channels: 1,
            seconds: 10.0,
            sessions: 100,
            sessions_per_sec: 10.0,
            joins: 100,
            session_errors: 0,
            first_error: None,
            undelivered: 0,
            member_added: 60,
            member_removed: 60,
            client_events_seen: 100,
            member_event_anomalies: 0,
            ghost_members: 0,
            leaked_channels: Vec::new(),
            rss_start_kib: Some(50_000),
            rss_mid_kib: Some(52_000),
            rss_end_kib: Some(57_000),
            rss_max_kib: Some(58_000),
            rss_samples: Vec::new(),
            fds_before: Some(12),
            fds_after: Some(12),
        }
    }

    fn window(rate: u32, delivered: u64, p99_ms: u64) -> FanoutResult {
        FanoutResult {
            rate,
            expected: u64::from(rate) * 100,
            delivered,
            deliveries_per_sec: delivered as f64 / 10.0,
            latency: Latency {
                p99_us: p99_ms * 1000,
                ..Latency::default()
            },
            ..FanoutResult::default()
        }
    }

    #[test]
    fn the_best_sustained_rate_needs_full_delivery_and_a_p99_under_50_ms() {
        let ringcast = vec![
            window(100, 10_000, 2),
            window(200, 20_000, 30),
            window(400, 40_000, 80),
            window(800, 70_000, 20),
        ];
        assert_eq!(best_sustained(&ringcast).map(|r| r.rate), Some(200));
        let bare = vec![window(100, 10_000, 1), window(400, 40_000, 5)];
        let table = compare_markdown(
            &[("ringcast".into(), ringcast), ("bare".into(), bare)],
            Some("bare"),
        );
        assert!(
            table.contains("| ringcast | Pusher | 2000 | 200 |"),
            "{table}"
        );
        assert!(table.contains("| 50% |"), "{table}");
        assert!(table.contains("| bare | Pusher | 4000 | 400 |"), "{table}");
    }

    #[test]
    fn the_ratio_compares_work_per_cpu_second_at_each_rate_both_measured() {
        let at = |rate: u32, delivered: u64, cpu: f64, wire: Wire| FanoutResult {
            server_cpu_percent: Some(cpu),
            wire,
            ..window(rate, delivered, 5)
        };
        let pusher = vec![
            at(200, 20_000, 50.0, Wire::Pusher),
            at(1000, 60_000, 100.0, Wire::Pusher),
        ];
        let socketio = vec![
            at(200, 20_000, 75.0, Wire::SocketIo),
            at(500, 40_000, 100.0, Wire::SocketIo),
            at(1000, 45_000, 100.0, Wire::SocketIo),
        ];
        let table = ratio_markdown(("sio", &socketio), ("pusher", &pusher));
        assert!(table.contains("| 200 | 4000 | 2667 | 67% |"), "{table}");
        assert!(table.contains("| 1000 | 6000 | 4500 | 75% |"), "{table}");
        assert!(!table.contains("| 500 |"), "{table}");
        let compared = compare_markdown(&[("sio".into(), socketio)], None);
        assert!(compared.contains("| sio | Socket.IO |"), "{compared}");
    }

    #[test]
    fn the_summary_gives_work_per_cpu_second_at_each_rate_the_highest_rate_fully_delivered_and_the_light_and_warm_up_latencies()
     {
        let at = |rate: u32, delivered: u64, cpu: f64| FanoutResult {
            server_cpu_percent: Some(cpu),
            published: u64::from(rate) * 10,
            seconds: 10.0,
            ..window(rate, delivered, 5)
        };
        let light = |p50_ms: u64, p99_ms: u64, faults: u64| FanoutResult {
            subscribers: 100,
            rate: 50,
            published: 500,
            seconds: 10.0,
            expected: 50_000,
            delivered: 50_000,
            delivery_ratio: 1.0,
            server_page_faults: Some(faults),
            latency: Latency {
                p50_us: p50_ms * 1000,
                p99_us: p99_ms * 1000,
                ..Latency::default()
            },
            ..FanoutResult::default()
        };
        let bare = vec![at(200, 20_000, 50.0), at(1000, 100_000, 100.0)];
        // Every event at 200/s; at 1,000/s a tenth were lost.
        let peer = vec![
            at(200, 20_000, 100.0),
            FanoutResult {
                delivery_ratio: 0.9,
                ..at(1000, 90_000, 100.0)
            },
        ];
        let (warm, steady) = (light(2, 13, 900), light(1, 4, 20));
        let table = summary_markdown(
            &[
                ServerRuns {
                    label: "bare",
                    fanout: &bare,
                    light: None,
                    warmup: None,
                },
                ServerRuns {
                    label: "peer",
                    fanout: &peer,
                    light: Some(&steady),
                    warmup: Some(&warm),
                },
            ],
            Some("bare"),
        );
        assert!(
            table.contains(
                "| bare | 4.0 k | 10.0 k | 1000/s (10000 deliveries/s) | - | - | - / - |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| peer | 2.0 k (50%) | 9.0 k (90%), 90.0% delivered | 200/s (2000 deliveries/s) | 1.00 / 4.00 | 2.00 / 13.00 | 900 / 20 |"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_publisher_that_fell_behind_its_rate_did_not_fully_deliver_it() {
        let kept_up = FanoutResult {
            published: 9_600,
            seconds: 10.0,
            ..window(1000, 1_000_000, 5)
        };
        assert!(fully_delivered(&kept_up));
        let behind = FanoutResult {
            seconds: 12.0,
            ..kept_up
        };
        assert!(!fully_delivered(&behind));
    }

    #[test]
    fn a_clean_churn_passes() {
        assert_eq!(clean_run().failures(), Vec::<String>::new());
        assert!(churn_markdown(&clean_run()).contains("| ghost members afterwards | 0 |"));
    }

    #[test]
    fn every_kind_of_leak_fails_the_churn() {
        type Spoil = fn(&mut ChurnResult);
        let cases: [(Spoil, &str); 6] = [
            (|r| r.ghost_members = 1, "ghost"),
            (|r| r.leaked_channels = vec!["presence-x".into()], "leaked"),
            (|r| r.fds_after = Some(13), "descriptors"),
            (|r| r.rss_end_kib = Some(57_300), "RSS grew"),
            (|r| r.member_event_anomalies = 2, "inconsistent"),
            (|r| r.undelivered = 1, "not delivered"),
        ];
        for (spoil, expected) in cases {
            let mut run = clean_run();
            spoil(&mut run);
            let failures = run.failures();
            assert!(
                failures.iter().any(|f| f.contains(expected)),
                "{expected}: {failures:?}"
            );
        }
    }
}
