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
    /// Server RSS after a tenth of the run (warmed up), in KiB.
    pub rss_warm_kib: Option<u64>,
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
    /// warmed-up reading once every client left).
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
        if let (Some(warm), Some(end)) = (self.rss_warm_kib, self.rss_end_kib)
            && end * 10 > warm * 11
        {
            out.push(format!(
                "RSS grew: {warm} KiB warmed up, {end} KiB at the end"
            ));
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
            "server RSS start / warmed up / max / end",
            format!(
                "{} / {} / {} / {}",
                kib(r.rss_start_kib),
                kib(r.rss_warm_kib),
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
            rss_warm_kib: Some(52_000),
            rss_end_kib: Some(57_000),
            rss_max_kib: Some(58_000),
            rss_samples: Vec::new(),
            fds_before: Some(12),
            fds_after: Some(12),
        }
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
