//! Results: JSON for machines, a Markdown table for people.

use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Serialize, Default, Debug)]
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
#[derive(Serialize, Default, Debug)]
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
}

/// A Markdown table of one result.
pub fn markdown(r: &FanoutResult) -> String {
    let mut rows = vec![
        (
            "subscribers / channels",
            format!("{} / {}", r.subscribers, r.channels),
        ),
        (
            "publish rate (target)",
            format!("{}/s for {:.1} s", r.rate, r.seconds),
        ),
        (
            "published (errors)",
            format!("{} ({})", r.published, r.publish_errors),
        ),
        (
            "delivered / expected",
            format!("{} / {} ({:.4})", r.delivered, r.expected, r.delivery_ratio),
        ),
        (
            "deliveries per second",
            format!("{:.0}", r.deliveries_per_sec),
        ),
        (
            "latency p50 / p99 / p99.9 / max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms",
                ms(r.latency.p50_us),
                ms(r.latency.p99_us),
                ms(r.latency.p999_us),
                ms(r.latency.max_us)
            ),
        ),
        (
            "publish latency p50 / p99",
            format!(
                "{:.2} / {:.2} ms",
                ms(r.publish_latency.p50_us),
                ms(r.publish_latency.p99_us)
            ),
        ),
    ];
    if let Some(w) = r.writes_per_delivery {
        rows.push(("socket writes per delivery", format!("{w:.4}")));
    }
    if let Some(a) = r.allocations_per_publish {
        rows.push(("allocations per publish", format!("{a:.1}")));
    }
    if let Some(closed) = r.slow_consumers_closed {
        rows.push(("slow consumers closed (4100)", format!("{closed:.0}")));
    }
    if let Some(rss) = r.server_rss_kib {
        rows.push(("server RSS", format!("{rss} KiB")));
    }
    let mut out = String::from("| measure | value |\n|---|---|\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
