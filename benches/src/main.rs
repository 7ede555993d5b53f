//! `ringcast-bench`: a load generator that speaks Pusher protocol 7 to any compatible server.
//!
//! `fanout` opens N subscribers over C channels (spread over several 127.0.0.x source
//! addresses; speaking Pusher, or Socket.IO with `--wire socketio`), publishes through the
//! signed HTTP API at a fixed open-loop rate with a send timestamp in every payload, and
//! reports delivered messages per second, the delivery ratio and end-to-end latency
//! percentiles.
//!
//! `churn` makes clients join and leave presence channels for a bounded time, checks every
//! member event on the way, and afterwards checks the server for ghost members, leaked
//! channels, descriptors and memory growth. Every run is bounded in time and count.

mod bare;
mod churn;
mod client;
mod fanout;
mod idle;
mod plot;
mod report;
mod storm;
mod util;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::Wire;

#[derive(Parser)]
#[command(name = "ringcast-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N subscribers, one publisher at a fixed rate: throughput, delivery ratio, latency.
    Fanout(FanoutArgs),
    /// Presence churn for a bounded time, then checks for ghost members, leaked channels
    /// and memory growth. Exits with status 1 if a check fails.
    Churn(ChurnArgs),
    /// Server RSS per idle subscribed connection at several connection counts.
    Idle(IdleArgs),
    /// Connection storms at rising concurrency: rate, latency to subscribed, failures.
    Storm(StormArgs),
    /// Compare fan-out results of several servers: a table and one plot.
    Compare(CompareArgs),
    /// Part of a fan-out's subscribers in another process (started by `fanout`).
    #[command(hide = true)]
    FanoutChild(FanoutChildArgs),
    /// Run the bare-loop baseline server: subscribe and fan out pre-encoded frames, nothing
    /// else, on one thread.
    BareServer(BareArgs),
}

/// Options of `bare-server`.
#[derive(Args, Clone, Debug)]
pub struct BareArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8099)]
    pub port: u16,
}

/// Which server to load.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Server host (IPv4, loopback only in this project's tests).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// App id for the HTTP API.
    #[arg(long, default_value = "100001")]
    pub app_id: String,
    /// App key.
    #[arg(long, default_value = "ringcast-demo-key")]
    pub key: String,
    /// App secret.
    #[arg(long, default_value = "ringcast-demo-secret")]
    pub secret: String,
    /// Connect with TLS (`wss://`, `https://`), trusting the CA certificate in this PEM file;
    /// the server's certificate must name `localhost` or the host.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
}

/// Options of `fanout`.
#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: Target,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Channels the subscribers are spread over (round-robin).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Publishes per second (each to one channel, round-robin); several, comma-separated,
    /// measure one window each over the same subscribers.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub rate: Vec<u32>,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Event data size in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Extra subscribers (on channel 0) that subscribe and then never read: slow consumers
    /// the server must cut off (4100) without slowing the others.
    #[arg(long, default_value_t = 0)]
    pub slow_subscribers: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) for the subscribers.
    #[arg(long, default_value_t = 4)]
    pub source_addresses: u8,
    /// Scrape the server's `/metrics` (Ringcast) before and after, for per-delivery figures.
    #[arg(long)]
    pub scrape_metrics: bool,
    /// The server's pid, for its CPU and RSS; repeat for every node of a cluster (summed).
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Further nodes of the same cluster (`HOST:PORT`, repeatable): subscriber i and
    /// publisher p connect to node i (or p) modulo the node count, `--host` being node 0.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// The cluster's Redis pid, for its CPU use.
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw latency against delivery rate into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Processes holding the subscribers (0: one per 15,000, to stay under the open-file
    /// limit).
    #[arg(long, default_value_t = 0)]
    pub processes: usize,
    /// The server's name in reports and plots.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// The protocol the subscribers speak (`socketio`: the app needs `[apps.socketio]` at
    /// its default path, `/socket.io`). Publishing is the HTTP API either way.
    #[arg(long, value_enum, default_value_t = Wire::Pusher)]
    pub wire: Wire,
}

/// Options of `fanout-child` (started by `fanout`, not by hand).
#[derive(Args, Clone, Debug)]
pub struct FanoutChildArgs {
    #[command(flatten)]
    pub target: Target,
    /// First subscriber index held here.
    #[arg(long)]
    pub first: usize,
    /// One past the last subscriber index held here.
    #[arg(long)]
    pub end: usize,
    /// Channels, as in the parent.
    #[arg(long)]
    pub channels: usize,
    /// Source addresses, as in the parent.
    #[arg(long)]
    pub source_addresses: u8,
    /// Cluster nodes, as in the parent.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// The subscribers' protocol, as in the parent.
    #[arg(long, value_enum, default_value_t = Wire::Pusher)]
    pub wire: Wire,
}

/// Options of `compare`.
#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    /// `label=path` of a `fanout --json` file; repeat for each server.
    #[arg(long = "fanout", required = true)]
    pub fanout: Vec<String>,
    /// The label of the baseline the others are compared with (e.g. the bare loop).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Draw every server's latency against delivery rate into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// `measured/reference` (two labels): a table of the two runs' deliveries per server
    /// CPU-second at each rate and their ratio; repeatable.
    #[arg(long)]
    pub ratio: Vec<String>,
    /// `label=path` of a light-load `fanout --json` file (its first window) for the server
    /// of that `--fanout` label, shown in the summary; repeatable.
    #[arg(long)]
    pub light: Vec<String>,
    /// `label=path` of the warm-up run (the first fan-out after the server started) for the
    /// server of that `--fanout` label, shown apart in the summary; repeatable.
    #[arg(long)]
    pub warmup: Vec<String>,
}

/// Options of `storm`.
#[derive(Args, Clone, Debug)]
pub struct StormArgs {
    #[command(flatten)]
    pub target: Target,
    /// Connections per level (at most about 19,000 in one process: 20,000 open files).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Concurrent openers, one level each, comma-separated; stops after a level with failures.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256,1024")]
    pub concurrency: Vec<usize>,
    /// Channels the connections subscribe to.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N).
    #[arg(long, default_value_t = 4)]
    pub source_addresses: u8,
    /// A level that takes longer than this stops opening.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub max_time: Duration,
    /// A server pid whose RSS and descriptors to report.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `idle`.
#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,
    /// The server's pid (its RSS is what is measured).
    #[arg(long)]
    pub server_pid: u32,
    /// Connection counts to measure at, in increasing order.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,15000")]
    pub steps: Vec<usize>,
    /// Channels the connections are spread over.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) for the connections.
    #[arg(long, default_value_t = 4)]
    pub source_addresses: u8,
    /// Give up if connecting takes longer than this.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub max_time: Duration,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `churn`.
#[derive(Args, Clone, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub target: Target,
    /// Concurrent churning clients (two share each user id).
    #[arg(long, default_value_t = 50)]
    pub workers: usize,
    /// Presence channels the clients rotate over.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Upper bound on sessions started per second, over all workers.
    #[arg(long, default_value_t = 200)]
    pub session_rate: u32,
    /// How long to churn.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long each client stays in its channel before leaving.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub hold: Duration,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) for the clients.
    #[arg(long, default_value_t = 4)]
    pub source_addresses: u8,
    /// A server pid whose RSS and descriptors to watch.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// How often to read the server's RSS.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sample_every: Duration,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {raw:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {raw:?} (ms, s or m)")),
    }
}

/// Reads `label=path` entries of `fanout --json` files, in order.
fn read_fanouts(
    option: &str,
    entries: &[String],
) -> anyhow::Result<Vec<(String, Vec<report::FanoutResult>)>> {
    let mut runs = Vec::new();
    for entry in entries {
        let (label, path) = entry
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{option} wants label=path, got {entry:?}"))?;
        let results: Vec<report::FanoutResult> = serde_json::from_slice(
            &std::fs::read(path).map_err(|e| anyhow::anyhow!("{option} {path}: {e}"))?,
        )?;
        runs.push((label.to_owned(), results));
    }
    Ok(runs)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Fanout(args) => {
            let results = fanout::run(&args)?;
            println!("{}", report::markdown(&results));
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
            }
            if let Some(path) = &args.plot {
                let series = [plot::Series {
                    label: &args.label,
                    results: &results,
                }];
                plot::latency_vs_rate(path, "fan-out latency", &series)?;
            }
        }
        Command::BareServer(args) => bare::serve(&args)?,
        Command::FanoutChild(args) => fanout::run_child(&args)?,
        Command::Compare(args) => {
            let servers = read_fanouts("--fanout", &args.fanout)?;
            let light = read_fanouts("--light", &args.light)?;
            let warmup = read_fanouts("--warmup", &args.warmup)?;
            fn first<'a>(
                runs: &'a [(String, Vec<report::FanoutResult>)],
                label: &str,
            ) -> Option<&'a report::FanoutResult> {
                runs.iter()
                    .find(|(l, _)| l == label)
                    .and_then(|(_, results)| results.first())
            }
            let summary: Vec<report::ServerRuns<'_>> = servers
                .iter()
                .map(|(label, results)| report::ServerRuns {
                    label,
                    fanout: results,
                    light: first(&light, label),
                    warmup: first(&warmup, label),
                })
                .collect();
            println!(
                "{}",
                report::summary_markdown(&summary, args.baseline.as_deref())
            );
            println!(
                "{}",
                report::compare_markdown(&servers, args.baseline.as_deref())
            );
            for pair in &args.ratio {
                let find = |label: &str| {
                    servers
                        .iter()
                        .find(|(l, _)| l == label)
                        .map(|(l, results)| (l.as_str(), results.as_slice()))
                        .ok_or_else(|| anyhow::anyhow!("--ratio {pair:?}: no --fanout {label}"))
                };
                let (measured, reference) = pair.split_once('/').ok_or_else(|| {
                    anyhow::anyhow!("--ratio wants measured/reference, got {pair:?}")
                })?;
                println!(
                    "{}",
                    report::ratio_markdown(find(measured)?, find(reference)?)
                );
            }
            if let Some(path) = &args.plot {
                let series: Vec<plot::Series<'_>> = servers
                    .iter()
                    .map(|(label, results)| plot::Series { label, results })
                    .collect();
                plot::latency_vs_rate(path, "fan-out: latency against delivery rate", &series)?;
            }
        }
        Command::Storm(args) => {
            let result = storm::run(&args)?;
            println!("{}", report::storm_markdown(&result));
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
            }
        }
        Command::Idle(args) => {
            let result = idle::run(&args)?;
            println!("{}", report::idle_markdown(&result));
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
            }
        }
        Command::Churn(args) => {
            let result = churn::run(&args)?;
            println!("{}", report::churn_markdown(&result));
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
            }
            let failures = result.failures();
            if !failures.is_empty() {
                for failure in &failures {
                    eprintln!("churn check failed: {failure}");
                }
                std::process::exit(1);
            }
            eprintln!("churn checks passed");
        }
    }
    Ok(())
}
