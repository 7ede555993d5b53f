//! The fan-out run: subscribers, an open-loop publisher, and the measurements.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::FanoutArgs;
use crate::client::{ApiConn, PusherConn, connect_from};
use crate::report::FanoutResult;
use crate::util::{histogram, percentiles, rss_kib};

/// Concurrent publishing connections.
const PUBLISHERS: u32 = 4;
/// How long to wait for in-flight deliveries after the last publish.
const DRAIN: Duration = Duration::from_secs(5);

struct Shared {
    epoch: Instant,
    /// Events sent before this (µs since `epoch`) belong to an earlier window.
    window_start_us: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
    publish_latency: RefCell<Histogram<u64>>,
    delivered: Cell<u64>,
    expected: Cell<u64>,
    published: Cell<u64>,
    publish_errors: Cell<u64>,
}

/// Connects the subscribers once, then measures one window per publish rate.
pub fn run(args: &FanoutArgs) -> anyhow::Result<Vec<FanoutResult>> {
    crate::util::block_on(fanout(args.clone()))?
}

async fn fanout(args: FanoutArgs) -> anyhow::Result<Vec<FanoutResult>> {
    let target = &args.target;
    let shared = Rc::new(Shared {
        epoch: Instant::now(),
        window_start_us: Cell::new(0),
        latency: RefCell::new(histogram()),
        publish_latency: RefCell::new(histogram()),
        delivered: Cell::new(0),
        expected: Cell::new(0),
        published: Cell::new(0),
        publish_errors: Cell::new(0),
    });
    let channels: Vec<String> = (0..args.channels.max(1))
        .map(|i| format!("bench-{i}"))
        .collect();
    let mut per_channel = vec![0u64; channels.len()];

    let connect_deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..args.subscribers {
        anyhow::ensure!(
            Instant::now() < connect_deadline,
            "connecting subscribers took over 120 s"
        );
        let source = (args.source_addresses > 0)
            .then(|| Ipv4Addr::new(127, 0, 0, 2 + (i % args.source_addresses as usize) as u8));
        let stream = connect_from(target, source).await?;
        let (mut conn, _) = PusherConn::open(stream, target).await?;
        let channel = i % channels.len();
        conn.subscribe(&channels[channel], None).await?;
        per_channel[channel] += 1;
        monoio::spawn(receive(conn, shared.clone()));
        if (i + 1) % 1000 == 0 {
            eprintln!("connected {} / {}", i + 1, args.subscribers);
        }
    }
    // Slow consumers: subscribed, then never read again (kept open until the run ends).
    let mut slow = Vec::new();
    for _ in 0..args.slow_subscribers {
        let stream = connect_from(target, None).await?;
        let (mut conn, _) = PusherConn::open(stream, target).await?;
        let subscribe = format!(
            r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
            channels[0]
        );
        conn.send_text(&subscribe).await?;
        slow.push(conn);
    }
    eprintln!(
        "{} subscribers (+{} that never read) ready",
        args.subscribers, args.slow_subscribers
    );
    let per_channel = Rc::new(per_channel);
    let channels = Rc::new(channels);
    let mut results = Vec::new();
    for &rate in &args.rate {
        eprintln!("publishing {rate}/s for {:?}", args.duration);
        let result = window(&args, rate, &channels, &per_channel, &shared).await?;
        eprintln!(
            "  delivered {:.4} of expected, p99 {:.2} ms",
            result.delivery_ratio,
            result.latency.p99_us as f64 / 1000.0
        );
        results.push(result);
    }
    drop(slow);
    Ok(results)
}

/// One measurement window at `rate` publishes per second.
async fn window(
    args: &FanoutArgs,
    rate: u32,
    channels: &Rc<Vec<String>>,
    per_channel: &Rc<Vec<u64>>,
    shared: &Rc<Shared>,
) -> anyhow::Result<FanoutResult> {
    let target = &args.target;
    shared.reset();
    let before = if args.scrape_metrics {
        scrape(target).await.ok()
    } else {
        None
    };
    let start = Instant::now();
    let publishers = PUBLISHERS.min(rate.max(1));
    let mut handles = Vec::new();
    for p in 0..publishers {
        handles.push(monoio::spawn(publish(
            p,
            publishers,
            rate,
            args.clone(),
            channels.clone(),
            per_channel.clone(),
            shared.clone(),
        )));
    }
    for handle in handles {
        handle.await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let drain_until = Instant::now() + DRAIN;
    while shared.delivered.get() < shared.expected.get() && Instant::now() < drain_until {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = if args.scrape_metrics {
        scrape(target).await.ok()
    } else {
        None
    };

    let (expected, delivered, published) = (
        shared.expected.get(),
        shared.delivered.get(),
        shared.published.get(),
    );
    let delta = |name: &str| -> Option<f64> {
        let (b, a) = (before.as_ref()?, after.as_ref()?);
        Some(metric(a, name)? - metric(b, name)?)
    };
    let writes_per_delivery = match (
        delta("ringcast_write_calls_total"),
        delta("ringcast_deliveries_total"),
    ) {
        (Some(w), Some(d)) if d > 0.0 => Some(w / d),
        _ => None,
    };
    let slow_consumers_closed = delta("ringcast_slow_consumers_closed_total");
    let allocations_per_publish = match (
        delta("ringcast_allocations_total"),
        delta("ringcast_publishes_total"),
    ) {
        (Some(a), Some(p)) if p > 0.0 => Some(a / p),
        _ => None,
    };
    let latency = percentiles(&shared.latency.borrow());
    let publish_latency = percentiles(&shared.publish_latency.borrow());
    Ok(FanoutResult {
        subscribers: args.subscribers,
        channels: args.channels.max(1),
        rate,
        seconds,
        published,
        publish_errors: shared.publish_errors.get(),
        expected,
        delivered,
        delivery_ratio: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        deliveries_per_sec: delivered as f64 / seconds.max(f64::EPSILON),
        latency,
        publish_latency,
        writes_per_delivery,
        allocations_per_publish,
        slow_consumers_closed,
        server_rss_kib: args.server_pid.and_then(rss_kib),
    })
}

impl Shared {
    /// Starts a new window: counters at zero, and deliveries of earlier events ignored.
    fn reset(&self) {
        self.window_start_us
            .set(self.epoch.elapsed().as_micros() as u64);
        self.latency.borrow_mut().reset();
        self.publish_latency.borrow_mut().reset();
        for counter in [
            &self.delivered,
            &self.expected,
            &self.published,
            &self.publish_errors,
        ] {
            counter.set(0);
        }
    }
}

async fn receive(mut conn: PusherConn, shared: Rc<Shared>) {
    while let Ok(Some(text)) = conn.next_text().await {
        if let Some(sent_us) = timestamp(&text)
            && sent_us >= shared.window_start_us.get()
        {
            let now_us = shared.epoch.elapsed().as_micros() as u64;
            let _ = shared
                .latency
                .borrow_mut()
                .record(now_us.saturating_sub(sent_us).max(1));
            shared.delivered.set(shared.delivered.get() + 1);
        }
    }
}

async fn publish(
    index: u32,
    publishers: u32,
    rate: u32,
    args: FanoutArgs,
    channels: Rc<Vec<String>>,
    per_channel: Rc<Vec<u64>>,
    shared: Rc<Shared>,
) -> anyhow::Result<()> {
    let target = &args.target;
    let mut api = ApiConn::connect(target).await?;
    let path = format!("/apps/{}/events", args.target.app_id);
    let interval = Duration::from_secs_f64(f64::from(publishers) / f64::from(rate.max(1)));
    let start = Instant::now() + interval.mul_f64(f64::from(index) / f64::from(publishers));
    let padding = "x".repeat(args.payload.saturating_sub(40));
    let mut k: u64 = 0;
    loop {
        let due = start + interval.mul_f64(k as f64);
        if due.duration_since(start) >= args.duration {
            return Ok(());
        }
        let now = Instant::now();
        if due > now {
            monoio::time::sleep(due - now).await;
        }
        let seq = k * u64::from(publishers) + u64::from(index);
        let channel = (seq % channels.len() as u64) as usize;
        let sent_us = shared.epoch.elapsed().as_micros() as u64;
        let data = format!(r#"{{"t":{sent_us},"s":{seq},"p":"{padding}"}}"#);
        let body = serde_json::json!({"name": "bench", "channel": channels[channel], "data": data})
            .to_string();
        let began = Instant::now();
        match api.signed(target, "POST", &path, &body).await {
            Ok((200, _)) => {
                shared.published.set(shared.published.get() + 1);
                shared
                    .expected
                    .set(shared.expected.get() + per_channel[channel]);
                let _ = shared
                    .publish_latency
                    .borrow_mut()
                    .record(began.elapsed().as_micros().max(1) as u64);
            }
            Ok(_) => shared.publish_errors.set(shared.publish_errors.get() + 1),
            Err(_) => {
                shared.publish_errors.set(shared.publish_errors.get() + 1);
                api = ApiConn::connect(target).await?;
            }
        }
        k += 1;
    }
}

/// The send timestamp in an event's data: the data string holds `{\"t\":123,...`.
fn timestamp(text: &[u8]) -> Option<u64> {
    let marker = br#"\"t\":"#;
    let at = text.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

async fn scrape(target: &crate::Target) -> std::io::Result<String> {
    let mut conn = ApiConn::connect(target).await?;
    let (_, body) = conn.request(target, "GET", "/metrics", "").await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_send_timestamp_inside_the_escaped_data_string() {
        let text = br#"{"event":"bench","channel":"c","data":"{\"t\":12345,\"s\":1}"}"#;
        assert_eq!(timestamp(text), Some(12345));
        assert_eq!(timestamp(br#"{"event":"pusher:pong"}"#), None);
    }

    #[test]
    fn reads_prometheus_counters() {
        let text = "# HELP x\nringcast_deliveries_total 42\nringcast_deliveries_total_other 1\n";
        assert_eq!(metric(text, "ringcast_deliveries_total"), Some(42.0));
    }
}
