//! Connection storms: how fast a server takes new subscribed connections.
//!
//! For each concurrency level in turn, `connections` clients are opened by that many
//! concurrent openers, each connection upgraded and subscribed (to one of `channels`) and
//! then held; the run records the rate, the handshake-to-subscribed latency and the failures,
//! then drops every connection at once and checks that the server takes a new connection
//! promptly afterwards. Levels go up until one has failures (or all were run).

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::StormArgs;
use crate::client::{PusherConn, connect_from};
use crate::report::{StormLevel, StormResult};
use crate::util::{histogram, open_fds, percentiles, rss_kib};

/// Runs the storm levels.
pub fn run(args: &StormArgs) -> anyhow::Result<StormResult> {
    crate::util::block_on(storm(args.clone()))?
}

struct Level {
    next: Cell<usize>,
    failures: Cell<u64>,
    first_error: RefCell<Option<String>>,
    latency: RefCell<Histogram<u64>>,
    held: RefCell<Vec<PusherConn>>,
}

async fn storm(args: StormArgs) -> anyhow::Result<StormResult> {
    // A run just before may have left closes for the server to process.
    monoio::time::sleep(Duration::from_secs(2)).await;
    let fds_before = args.server_pid.and_then(open_fds);
    let rss_before_kib = args.server_pid.and_then(rss_kib);
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        let level = Rc::new(Level {
            next: Cell::new(0),
            failures: Cell::new(0),
            first_error: RefCell::new(None),
            latency: RefCell::new(histogram()),
            held: RefCell::new(Vec::with_capacity(args.connections)),
        });
        let started = Instant::now();
        let deadline = started + args.max_time;
        let openers: Vec<_> = (0..concurrency.max(1))
            .map(|_| monoio::spawn(opener(args.clone(), level.clone(), deadline)))
            .collect();
        for handle in openers {
            handle.await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let subscribed = level.held.borrow().len();
        let rss_peak_kib = args.server_pid.and_then(rss_kib);
        // Everyone leaves at once; then a newcomer must be served promptly.
        level.held.borrow_mut().clear();
        let probe = Instant::now();
        let accepted_after = match open_subscribed(&args, 0).await {
            Ok(conn) => {
                drop(conn);
                Some(probe.elapsed().as_secs_f64() * 1000.0)
            }
            Err(_) => None,
        };
        let latency = percentiles(&level.latency.borrow());
        let failures = level.failures.get();
        eprintln!(
            "storm: concurrency {concurrency}: {subscribed} subscribed in {seconds:.2} s, {failures} failed"
        );
        levels.push(StormLevel {
            concurrency,
            subscribed,
            failures,
            first_error: level.first_error.borrow().clone(),
            seconds,
            connections_per_sec: subscribed as f64 / seconds.max(f64::EPSILON),
            latency,
            rss_peak_kib,
            accept_after_drop_ms: accepted_after,
        });
        // Give the server a moment to process the mass close before the next level.
        monoio::time::sleep(Duration::from_secs(2)).await;
        if failures > 0 {
            break;
        }
    }
    monoio::time::sleep(Duration::from_secs(2)).await;
    Ok(StormResult {
        connections: args.connections,
        levels,
        fds_before,
        fds_after: args.server_pid.and_then(open_fds),
        rss_before_kib,
        rss_after_kib: args.server_pid.and_then(rss_kib),
    })
}

/// Opens connections one after another until the level has them all (or time is up).
async fn opener(args: StormArgs, level: Rc<Level>, deadline: Instant) {
    loop {
        let i = level.next.get();
        if i >= args.connections || Instant::now() >= deadline {
            return;
        }
        level.next.set(i + 1);
        let began = Instant::now();
        match open_subscribed(&args, i).await {
            Ok(conn) => {
                let _ = level
                    .latency
                    .borrow_mut()
                    .record(began.elapsed().as_micros().max(1) as u64);
                level.held.borrow_mut().push(conn);
            }
            Err(err) => {
                level.failures.set(level.failures.get() + 1);
                level
                    .first_error
                    .borrow_mut()
                    .get_or_insert(err.to_string());
            }
        }
    }
}

async fn open_subscribed(args: &StormArgs, i: usize) -> anyhow::Result<PusherConn> {
    let source = Ipv4Addr::new(
        127,
        0,
        0,
        2 + (i % args.source_addresses.max(1) as usize) as u8,
    );
    let step = Duration::from_secs(10);
    let opened = monoio::time::timeout(step, async {
        let stream = connect_from(&args.target, Some(source)).await?;
        let (mut conn, _) = PusherConn::open(stream, &args.target).await?;
        conn.subscribe(&format!("storm-{}", i % args.channels.max(1)), None)
            .await?;
        Ok::<_, anyhow::Error>(conn)
    })
    .await;
    opened.map_err(|_| anyhow::anyhow!("not subscribed within {step:?}"))?
}
