//! Idle memory: how much server memory an idle, subscribed connection costs.
//!
//! Connections are opened and subscribed in steps (by default 1,000, 5,000 and 15,000 in
//! all), and after each step the server's RSS is read from `/proc/PID/status` once it has
//! settled. The cost per connection is the growth over the RSS before the first connection,
//! divided by the connections open. Finally every connection is dropped and the RSS read
//! again, to show what the server gives back.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::IdleArgs;
use crate::client::{PusherConn, connect_from};
use crate::report::{IdleResult, IdleStep};
use crate::util::{open_fds, rss_kib};

/// Longest wait for the server's RSS to stop moving after a step.
const SETTLE: Duration = Duration::from_secs(10);

/// Runs the idle-memory measurement.
pub fn run(args: &IdleArgs) -> anyhow::Result<IdleResult> {
    crate::util::block_on(idle(args.clone()))?
}

async fn idle(args: IdleArgs) -> anyhow::Result<IdleResult> {
    let pid = args.server_pid;
    let baseline_kib = settled_rss(pid).await?;
    let fds_before = open_fds(pid);
    let mut conns = Vec::new();
    let mut steps = Vec::new();
    let started = Instant::now();
    for &target in &args.steps {
        let step_started = Instant::now();
        while conns.len() < target {
            anyhow::ensure!(
                started.elapsed() < args.max_time,
                "connecting took longer than {:?}",
                args.max_time
            );
            let i = conns.len();
            let source = Ipv4Addr::new(
                127,
                0,
                0,
                2 + (i % args.source_addresses.max(1) as usize) as u8,
            );
            let stream = connect_from(&args.target, Some(source)).await?;
            let (mut conn, _) = PusherConn::open(stream, &args.target).await?;
            conn.subscribe(&format!("idle-{}", i % args.channels.max(1)), None)
                .await?;
            conns.push(conn);
        }
        let connect_seconds = step_started.elapsed().as_secs_f64();
        let rss_kib = settled_rss(pid).await?;
        let per_connection_bytes =
            (rss_kib.saturating_sub(baseline_kib) * 1024) as f64 / conns.len().max(1) as f64;
        eprintln!(
            "idle: {} connections, RSS {rss_kib} KiB, {per_connection_bytes:.0} bytes each",
            conns.len()
        );
        steps.push(IdleStep {
            connections: conns.len(),
            rss_kib,
            per_connection_bytes,
            connect_seconds,
        });
    }
    drop(conns);
    // Let the server see every close before reading what it kept.
    monoio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = settled_rss(pid).await?;
    Ok(IdleResult {
        baseline_kib,
        steps,
        after_disconnect_kib: after_kib,
        fds_before,
        fds_after: open_fds(pid),
    })
}

/// The server's RSS once two readings half a second apart agree within 1%, or after
/// [`SETTLE`].
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let read = || rss_kib(pid).ok_or_else(|| anyhow::anyhow!("no /proc/{pid}/status"));
    let deadline = Instant::now() + SETTLE;
    let mut last = read()?;
    loop {
        monoio::time::sleep(Duration::from_millis(500)).await;
        let now = read()?;
        if now.abs_diff(last) * 100 <= last || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}
