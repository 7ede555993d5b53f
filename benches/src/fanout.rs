//! The fan-out run: subscribers, an open-loop publisher, and the measurements.
//!
//! Past what one process may open (20,000 files here), the subscribers are spread over
//! several processes: this one and children running `ringcast-bench fanout-child`, which
//! connect their share, say `ready`, and answer each `report` line on their stdin with
//! their deliveries and latency histogram since the last one, as one JSON line. Send
//! timestamps are wall-clock microseconds, so every process measures the same way.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::client::{ApiConn, Subscriber, Wire, connect_from};
use crate::report::FanoutResult;
use crate::util::{
    histogram, percentiles, rss_kib, thread_cpu_seconds, total_cpu_seconds, total_page_faults,
};
use crate::{FanoutArgs, FanoutChildArgs, Target};

/// Concurrent publishing connections (rounded up to a multiple of the node count).
const PUBLISHERS: u32 = 4;
/// The name of a Ringcast node's Redis link thread.
const LINK_THREAD: &str = "ringcast-cluster";
/// How long to wait for in-flight deliveries after the last publish.
const DRAIN: Duration = Duration::from_secs(5);
/// Subscribers per process, leaving room under the 20,000 open files for the rest.
const PER_PROCESS: usize = 15_000;

/// Wall-clock microseconds: send and receive times comparable across processes.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Shared {
    /// Events sent before this (wall-clock µs) belong to an earlier window.
    window_start_us: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
    publish_latency: RefCell<Histogram<u64>>,
    delivered: Cell<u64>,
    expected: Cell<u64>,
    /// Deliveries expected by this process's own subscribers.
    own_expected: Cell<u64>,
    published: Cell<u64>,
    publish_errors: Cell<u64>,
}

/// Connects the subscribers once, then measures one window per publish rate.
pub fn run(args: &FanoutArgs) -> anyhow::Result<Vec<FanoutResult>> {
    crate::util::block_on(fanout(args.clone()))?
}

/// Node 0 (`--host`, `--port`) and the `--node` ones, each with the same app.
fn node_targets(target: &Target, nodes: &[String]) -> anyhow::Result<Vec<Target>> {
    let mut targets = vec![target.clone()];
    for node in nodes {
        let (host, port) = node
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--node {node:?}: expected HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| anyhow::anyhow!("--node {node:?}: bad port"))?;
        targets.push(Target {
            host: host.to_owned(),
            port,
            ..target.clone()
        });
    }
    Ok(targets)
}

async fn fanout(args: FanoutArgs) -> anyhow::Result<Vec<FanoutResult>> {
    let target = &args.target;
    let targets = node_targets(target, &args.nodes)?;
    let shared = Rc::new(Shared::new());
    let channels = channel_names(args.channels);
    let mut per_channel = vec![0u64; channels.len()];

    // Subscriber i listens on channel i % C, whichever process holds it.
    for i in 0..args.subscribers {
        per_channel[i % channels.len()] += 1;
    }
    let processes = if args.processes == 0 {
        args.subscribers.div_ceil(PER_PROCESS).max(1)
    } else {
        args.processes
    };
    let share = args.subscribers.div_ceil(processes);
    let mut children = Vec::new();
    for p in 1..processes {
        let range = (p * share).min(args.subscribers)..((p + 1) * share).min(args.subscribers);
        if !range.is_empty() {
            children.push(ChildProcess::spawn(&args, range)?);
        }
    }
    let own = 0..share.min(args.subscribers);
    subscribe_range(
        &targets,
        own.clone(),
        &channels,
        args.source_addresses,
        args.wire,
        &shared,
    )
    .await?;
    let mut own_per_channel = vec![0u64; channels.len()];
    for i in own {
        own_per_channel[i % channels.len()] += 1;
    }
    for child in &mut children {
        child.wait_ready()?;
    }
    // Slow consumers: subscribed, then never read again (kept open until the run ends).
    let mut slow = Vec::new();
    for _ in 0..args.slow_subscribers {
        let stream = connect_from(target, None).await?;
        let mut conn = Subscriber::open(stream, target, args.wire).await?;
        conn.subscribe(&channels[0]).await?;
        slow.push(conn);
    }
    eprintln!(
        "{} {} subscribers (+{} that never read) ready",
        args.subscribers,
        args.wire.name(),
        args.slow_subscribers
    );
    let counts = Counts {
        all: Rc::new(per_channel),
        own: Rc::new(own_per_channel),
    };
    let channels = Rc::new(channels);
    let mut results = Vec::new();
    for &rate in &args.rate {
        eprintln!("publishing {rate}/s for {:?}", args.duration);
        let result = window(
            &args,
            &targets,
            rate,
            &channels,
            &counts,
            &shared,
            &mut children,
        )
        .await?;
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

/// Subscribers per channel: in all processes, and in this one.
#[derive(Clone)]
struct Counts {
    all: Rc<Vec<u64>>,
    own: Rc<Vec<u64>>,
}

/// One measurement window at `rate` publishes per second.
async fn window(
    args: &FanoutArgs,
    targets: &[Target],
    rate: u32,
    channels: &Rc<Vec<String>>,
    counts: &Counts,
    shared: &Rc<Shared>,
    children: &mut [ChildProcess],
) -> anyhow::Result<FanoutResult> {
    shared.reset();
    let before = if args.scrape_metrics {
        scrape(targets).await.ok()
    } else {
        None
    };
    let pids = &args.server_pid;
    let link_cpu = || -> Option<f64> {
        pids.iter()
            .map(|&pid| thread_cpu_seconds(pid, LINK_THREAD))
            .sum()
    };
    let cpu_before = total_cpu_seconds(pids);
    let faults_before = total_page_faults(pids);
    let link_before = link_cpu();
    let redis_before = args.redis_pid.and_then(|pid| total_cpu_seconds(&[pid]));
    let start = Instant::now();
    let nodes = targets.len() as u32;
    let publishers = PUBLISHERS
        .div_ceil(nodes)
        .saturating_mul(nodes)
        .min(rate.max(1));
    let mut handles = Vec::new();
    for p in 0..publishers {
        handles.push(monoio::spawn(publish(
            p,
            publishers,
            rate,
            args.clone(),
            targets[p as usize % targets.len()].clone(),
            channels.clone(),
            counts.clone(),
            shared.clone(),
        )));
    }
    for handle in handles {
        handle.await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let percent = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) => Some(100.0 * (after - before) / seconds.max(f64::EPSILON)),
        _ => None,
    };
    let server_cpu_percent = percent(cpu_before, total_cpu_seconds(pids));
    let clustered = args.redis_pid.is_some();
    let link_cpu_percent = percent(link_before, link_cpu()).filter(|_| clustered);
    let redis_cpu_percent = percent(
        redis_before,
        args.redis_pid.and_then(|pid| total_cpu_seconds(&[pid])),
    );
    let drain_until = Instant::now() + DRAIN;
    while shared.delivered.get() < shared.own_expected.get() && Instant::now() < drain_until {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    if !children.is_empty() {
        // The children's subscribers get the same events; give them a moment more.
        monoio::time::sleep(Duration::from_millis(500)).await;
        for child in children.iter_mut() {
            let report = child.report()?;
            shared
                .delivered
                .set(shared.delivered.get() + report.delivered);
            let mut latency = shared.latency.borrow_mut();
            for (value, count) in report.latency {
                let _ = latency.record_n(value, count);
            }
        }
    }
    let server_page_faults = match (faults_before, total_page_faults(pids)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let after = if args.scrape_metrics {
        scrape(targets).await.ok()
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
        let sum = |texts: &[String]| -> Option<f64> { texts.iter().map(|t| metric(t, name)).sum() };
        Some(sum(a)? - sum(b)?)
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
        server_rss_kib: (!pids.is_empty())
            .then(|| pids.iter().map(|&pid| rss_kib(pid)).sum())
            .flatten(),
        server_page_faults,
        server_cpu_percent,
        link_cpu_percent,
        redis_cpu_percent,
        nodes: Some(targets.len()),
        wire: args.wire,
    })
}

/// The channels of a run: `bench-0` .. `bench-(n-1)` (at least one).
fn channel_names(n: usize) -> Vec<String> {
    (0..n.max(1)).map(|i| format!("bench-{i}")).collect()
}

impl Shared {
    fn new() -> Self {
        Self {
            window_start_us: Cell::new(0),
            latency: RefCell::new(histogram()),
            publish_latency: RefCell::new(histogram()),
            delivered: Cell::new(0),
            expected: Cell::new(0),
            own_expected: Cell::new(0),
            published: Cell::new(0),
            publish_errors: Cell::new(0),
        }
    }

    /// Starts a new window: counters at zero, and deliveries of earlier events ignored.
    fn reset(&self) {
        self.window_start_us.set(now_us());
        self.latency.borrow_mut().reset();
        self.publish_latency.borrow_mut().reset();
        for counter in [
            &self.delivered,
            &self.expected,
            &self.own_expected,
            &self.published,
            &self.publish_errors,
        ] {
            counter.set(0);
        }
    }
}

async fn receive(mut conn: Subscriber, wire: Wire, shared: Rc<Shared>) {
    while let Ok(Some(text)) = conn.next_event().await {
        if let Some(sent_us) = timestamp(&text, wire)
            && sent_us >= shared.window_start_us.get()
        {
            let _ = shared
                .latency
                .borrow_mut()
                .record(now_us().saturating_sub(sent_us).max(1));
            shared.delivered.set(shared.delivered.get() + 1);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    index: u32,
    publishers: u32,
    rate: u32,
    args: FanoutArgs,
    target: Target,
    channels: Rc<Vec<String>>,
    counts: Counts,
    shared: Rc<Shared>,
) -> anyhow::Result<()> {
    let target = &target;
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
        let sent_us = now_us();
        let data = format!(r#"{{"t":{sent_us},"s":{seq},"p":"{padding}"}}"#);
        let body = serde_json::json!({"name": "bench", "channel": channels[channel], "data": data})
            .to_string();
        let began = Instant::now();
        match api.signed(target, "POST", &path, &body).await {
            Ok((200, _)) => {
                shared.published.set(shared.published.get() + 1);
                shared
                    .expected
                    .set(shared.expected.get() + counts.all[channel]);
                shared
                    .own_expected
                    .set(shared.own_expected.get() + counts.own[channel]);
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

/// Connects and subscribes subscribers `range` (subscriber i on channel i % C), each then
/// counted by a receive task.
async fn subscribe_range(
    targets: &[Target],
    range: std::ops::Range<usize>,
    channels: &[String],
    source_addresses: u8,
    wire: Wire,
    shared: &Rc<Shared>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let total = range.len();
    for (n, i) in range.enumerate() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "connecting subscribers took over 120 s"
        );
        let source = (source_addresses > 0)
            .then(|| Ipv4Addr::new(127, 0, 0, 2 + (i % source_addresses as usize) as u8));
        let target = &targets[i % targets.len()];
        let stream = connect_from(target, source).await?;
        let mut conn = Subscriber::open(stream, target, wire).await?;
        conn.subscribe(&channels[i % channels.len()]).await?;
        monoio::spawn(receive(conn, wire, shared.clone()));
        if (n + 1) % 1000 == 0 {
            eprintln!("connected {} / {total}", n + 1);
        }
    }
    Ok(())
}

/// What a child process received since its last report.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildReport {
    delivered: u64,
    /// Latency histogram as (value µs, count) pairs.
    latency: Vec<(u64, u64)>,
}

/// A `fanout-child` process holding part of the subscribers.
struct ChildProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildProcess {
    fn spawn(args: &FanoutArgs, range: std::ops::Range<usize>) -> anyhow::Result<Self> {
        let t = &args.target;
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "fanout-child",
                "--host",
                &t.host,
                "--port",
                &t.port.to_string(),
            ])
            .args([
                "--app-id", &t.app_id, "--key", &t.key, "--secret", &t.secret,
            ])
            .args([
                "--first",
                &range.start.to_string(),
                "--end",
                &range.end.to_string(),
            ])
            .args(["--channels", &args.channels.max(1).to_string()])
            .args(["--source-addresses", &args.source_addresses.to_string()])
            .args(["--wire", wire_arg(args.wire)])
            .args(args.nodes.iter().flat_map(|node| ["--node", node.as_str()]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("child process without pipes");
        };
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        anyhow::ensure!(
            self.stdout.read_line(&mut line)? > 0,
            "a fan-out child process ended early"
        );
        Ok(line)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let line = self.line()?;
        anyhow::ensure!(line.trim() == "ready", "child said {line:?}");
        Ok(())
    }

    fn report(&mut self) -> anyhow::Result<ChildReport> {
        writeln!(self.stdin, "report")?;
        self.stdin.flush()?;
        Ok(serde_json::from_str(&self.line()?)?)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a child: subscribers `first..end`, then a report per `report` line on stdin.
pub fn run_child(args: &FanoutChildArgs) -> anyhow::Result<()> {
    crate::util::block_on(child(args.clone()))?
}

async fn child(args: FanoutChildArgs) -> anyhow::Result<()> {
    let shared = Rc::new(Shared::new());
    let channels = channel_names(args.channels);
    subscribe_range(
        &node_targets(&args.target, &args.nodes)?,
        args.first..args.end,
        &channels,
        args.source_addresses,
        args.wire,
        &shared,
    )
    .await?;
    println!("ready");
    // Commands come from the parent on stdin, read by a thread so the runtime keeps going.
    let (tx, rx) = async_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send_blocking(line).is_err() {
                break;
            }
        }
    });
    while let Ok(command) = rx.recv().await {
        if command.trim() != "report" {
            continue;
        }
        let report = ChildReport {
            delivered: shared.delivered.get(),
            latency: shared
                .latency
                .borrow()
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        };
        println!("{}", serde_json::to_string(&report)?);
        shared.reset();
    }
    Ok(())
}

/// `wire`'s `--wire` value, for a child process.
fn wire_arg(wire: Wire) -> &'static str {
    match wire {
        Wire::Pusher => "pusher",
        Wire::SocketIo => "socketio",
    }
}

/// The send timestamp in an event's data, which the publisher wrote as `{"t":123,...}`.
/// A Pusher event carries data as a JSON string (`"data":"{\"t\":123,...`); a Socket.IO event
/// as the value it holds (`42["bench","bench-0",{"t":123,...`).
fn timestamp(text: &[u8], wire: Wire) -> Option<u64> {
    let marker: &[u8] = match wire {
        Wire::Pusher => br#"\"t\":"#,
        Wire::SocketIo => br#"{"t":"#,
    };
    let at = text.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Every node's `/metrics` text.
async fn scrape(targets: &[Target]) -> std::io::Result<Vec<String>> {
    let mut texts = Vec::with_capacity(targets.len());
    for target in targets {
        let mut conn = ApiConn::connect(target).await?;
        let (_, body) = conn.request(target, "GET", "/metrics", "").await?;
        texts.push(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(texts)
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
        assert_eq!(timestamp(text, Wire::Pusher), Some(12345));
        assert_eq!(timestamp(br#"{"event":"pusher:pong"}"#, Wire::Pusher), None);
    }

    #[test]
    fn finds_the_send_timestamp_in_the_socketio_event_data_value() {
        let text = br#"42["bench","bench-0",{"t":12345,"s":1,"p":"xx"}]"#;
        assert_eq!(timestamp(text, Wire::SocketIo), Some(12345));
        assert_eq!(
            timestamp(br#"42["subscription_succeeded","bench-0"]"#, Wire::SocketIo),
            None
        );
        let pusher = br#"{"event":"bench","channel":"c","data":"{\"t\":12345,\"s\":1}"}"#;
        assert_eq!(timestamp(pusher, Wire::SocketIo), None);
    }

    #[test]
    fn a_child_reads_back_the_wire_its_parent_names() {
        use clap::ValueEnum;
        for wire in [Wire::Pusher, Wire::SocketIo] {
            assert_eq!(Wire::from_str(wire_arg(wire), false), Ok(wire));
        }
    }

    #[test]
    fn nodes_are_the_target_and_each_host_port() {
        let target = Target {
            host: "127.0.0.11".into(),
            port: 1,
            app_id: "a".into(),
            key: "k".into(),
            secret: "s".into(),
            tls_ca: None,
        };
        let nodes = ["127.0.0.12:2".to_owned(), "127.0.0.13:3".to_owned()];
        let targets = node_targets(&target, &nodes).unwrap();
        let addrs: Vec<_> = targets.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(
            addrs,
            [("127.0.0.11", 1), ("127.0.0.12", 2), ("127.0.0.13", 3)]
        );
        assert!(targets.iter().all(|t| t.app_id == "a" && t.secret == "s"));
        assert!(node_targets(&target, &["nohost".to_owned()]).is_err());
        assert!(node_targets(&target, &["h:x".to_owned()]).is_err());
    }

    #[test]
    fn reads_prometheus_counters() {
        let text = "# HELP x\nringcast_deliveries_total 42\nringcast_deliveries_total_other 1\n";
        assert_eq!(metric(text, "ringcast_deliveries_total"), Some(42.0));
    }
}
