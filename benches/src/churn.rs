//! Presence churn: clients join and leave presence channels for a bounded time while
//! observers check that every `member_added` / `member_removed` they see is consistent, and
//! afterwards the server is checked for ghost members, leaked channels and memory growth.
//!
//! Each worker repeats a session: connect, subscribe to a presence channel (signed locally
//! with the app secret), send a client event, publish through the HTTP API and wait for its
//! own event, stay a moment (`--hold`), then leave, alternately cleanly (unsubscribe and a close handshake) and
//! abruptly (the TCP connection is dropped). Workers share user ids in pairs, so a user is
//! sometimes in a channel from two sockets at once, which must produce one `member_added`
//! and one `member_removed`, not two.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::future::Future;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::time::timeout;
use ringcast::core::auth::{hmac_key, sign_channel};

use crate::ChurnArgs;
use crate::client::{ApiConn, PusherConn, connect_from};
use crate::report::{ChurnResult, RssSample};
use crate::util::{contains, open_fds, rss_kib};

/// How long one step of a session (connect, subscribe, a delivery) may take.
const STEP: Duration = Duration::from_secs(5);
/// How long the server has to settle (member leaves, vacated channels) after the churn.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counters {
    sessions: Cell<u64>,
    joins: Cell<u64>,
    session_errors: Cell<u64>,
    undelivered: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

impl Counters {
    fn error(&self, what: String) {
        self.session_errors.set(self.session_errors.get() + 1);
        self.first_error.borrow_mut().get_or_insert(what);
    }
}

/// One observer per channel: the roster it believes in, built only from member events.
#[derive(Default)]
struct Roster {
    members: HashSet<String>,
    added: u64,
    removed: u64,
    client_events: u64,
    /// `member_added` for a user already present, or `member_removed` for one absent.
    anomalies: u64,
}

/// Runs the churn and the checks after it.
pub fn run(args: &ChurnArgs) -> anyhow::Result<ChurnResult> {
    crate::util::block_on(churn(args.clone()))?
}

async fn churn(args: ChurnArgs) -> anyhow::Result<ChurnResult> {
    let target = &args.target;
    let channels: Rc<Vec<String>> = Rc::new(
        (0..args.channels.max(1))
            .map(|i| format!("presence-churn-{i}"))
            .collect(),
    );
    let fds_before = args.server_pid.and_then(open_fds);

    // Observers first, so every member event of the run reaches one.
    let mut observers = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let (mut conn, socket_id) = open(&args, None).await?;
        subscribe(
            &mut conn,
            &args,
            &socket_id,
            channel,
            &format!("observer-{i}"),
        )
        .await?;
        let roster = Rc::new(RefCell::new(Roster::default()));
        let stop = Rc::new(Cell::new(false));
        let handle = monoio::spawn(observe(conn, roster.clone(), stop.clone()));
        observers.push((roster, stop, handle));
    }

    let counters = Rc::new(Counters::default());
    let pacer = Rc::new(Pacer::new(args.session_rate));
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for w in 0..args.workers.max(1) {
        workers.push(monoio::spawn(worker(
            w,
            args.clone(),
            channels.clone(),
            counters.clone(),
            pacer.clone(),
            deadline,
        )));
    }
    let sampler = monoio::spawn(sample_rss(args.server_pid, args.sample_every, deadline));
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(200)).await;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "churn: {:>4.0} s, {} sessions, {} errors",
                started.elapsed().as_secs_f64(),
                counters.sessions.get(),
                counters.session_errors.get()
            );
        }
    }
    for handle in workers {
        handle.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss_samples = sampler.await;
    monoio::time::sleep(SETTLE).await;

    // With only the observers left, every channel has exactly its observer as member.
    let mut api = ApiConn::connect(target).await?;
    let mut ghost_members = 0u64;
    for (i, channel) in channels.iter().enumerate() {
        let path = format!("/apps/{}/channels/{channel}/users", target.app_id);
        let (status, body) = api.signed(target, "GET", &path, "").await?;
        anyhow::ensure!(status == 200, "GET {path}: {status}");
        let users: serde_json::Value = serde_json::from_slice(&body)?;
        let ids: Vec<&str> = users["users"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u["id"].as_str()).collect())
            .unwrap_or_default();
        ghost_members += ids
            .iter()
            .filter(|id| **id != format!("observer-{i}"))
            .count() as u64;
    }
    let observer_ghosts: u64 = observers
        .iter()
        .map(|(roster, _, _)| roster.borrow().members.len() as u64)
        .sum();

    // Then the observers leave, and no channel may remain.
    let mut rosters = Vec::new();
    for (roster, stop, handle) in observers {
        stop.set(true);
        handle.await;
        rosters.push(roster);
    }
    monoio::time::sleep(SETTLE).await;
    let path = format!("/apps/{}/channels", target.app_id);
    let (status, body) = api.signed(target, "GET", &path, "").await?;
    anyhow::ensure!(status == 200, "GET {path}: {status}");
    let listed: serde_json::Value = serde_json::from_slice(&body)?;
    let leaked_channels: Vec<String> = listed["channels"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();

    drop(api);
    monoio::time::sleep(Duration::from_millis(500)).await;
    let fds_after = args.server_pid.and_then(open_fds);

    let sum = |f: fn(&Roster) -> u64| rosters.iter().map(|r| f(&r.borrow())).sum::<u64>();
    let rss_start_kib = rss_samples.first().map(|s| s.rss_kib);
    // Caches (the audit store's, the allocator's) fill during the first part of a run; a
    // leak keeps growing in the second half.
    let rss_mid_kib = rss_samples
        .iter()
        .find(|s| s.at_s >= seconds / 2.0)
        .map(|s| s.rss_kib);
    let rss_end_kib = args.server_pid.and_then(rss_kib);
    Ok(ChurnResult {
        workers: args.workers.max(1),
        channels: channels.len(),
        seconds,
        sessions: counters.sessions.get(),
        sessions_per_sec: counters.sessions.get() as f64 / seconds.max(f64::EPSILON),
        joins: counters.joins.get(),
        session_errors: counters.session_errors.get(),
        first_error: counters.first_error.borrow().clone(),
        undelivered: counters.undelivered.get(),
        member_added: sum(|r| r.added),
        member_removed: sum(|r| r.removed),
        client_events_seen: sum(|r| r.client_events),
        member_event_anomalies: sum(|r| r.anomalies),
        ghost_members: ghost_members + observer_ghosts,
        leaked_channels,
        rss_start_kib,
        rss_mid_kib,
        rss_end_kib,
        rss_max_kib: rss_samples.iter().map(|s| s.rss_kib).max(),
        rss_samples,
        fds_before,
        fds_after,
    })
}

/// Spaces session starts so all workers together stay under the configured rate.
struct Pacer {
    interval: Duration,
    next: Cell<Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / f64::from(per_second.max(1))),
            next: Cell::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = self.next.get().max(Instant::now());
        self.next.set(slot + self.interval);
        let now = Instant::now();
        if slot > now {
            monoio::time::sleep(slot - now).await;
        }
    }
}

async fn worker(
    index: usize,
    args: ChurnArgs,
    channels: Rc<Vec<String>>,
    counters: Rc<Counters>,
    pacer: Rc<Pacer>,
    deadline: Instant,
) {
    let source = (args.source_addresses > 0).then(|| {
        Ipv4Addr::new(
            127,
            0,
            0,
            2 + (index % args.source_addresses as usize) as u8,
        )
    });
    // Two workers per user: the same user is at times in one channel from two sockets.
    let user = format!("user-{}", index / 2);
    let mut api = None;
    let mut round = 0usize;
    loop {
        pacer.wait().await;
        if Instant::now() >= deadline {
            return;
        }
        // The pair's two workers walk the channels at different strides, so they meet in one
        // channel on some rounds and not on others.
        let channel = &channels[(index / 2 + round * (1 + index % 2)) % channels.len()];
        let clean = round.is_multiple_of(2);
        round += 1;
        match session(&args, source, &user, channel, clean, &mut api, &counters).await {
            Ok(()) => counters.sessions.set(counters.sessions.get() + 1),
            Err(err) => {
                counters.error(format!("{user} on {channel}: {err}"));
                api = None;
                // Back off a little so a refusing server is not hammered.
                monoio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn session(
    args: &ChurnArgs,
    source: Option<Ipv4Addr>,
    user: &str,
    channel: &str,
    clean: bool,
    api: &mut Option<ApiConn>,
    counters: &Counters,
) -> anyhow::Result<()> {
    let target = &args.target;
    let (mut conn, socket_id) = open(args, source).await?;
    subscribe(&mut conn, args, &socket_id, channel, user).await?;
    counters.joins.set(counters.joins.get() + 1);

    let whisper =
        format!(r#"{{"event":"client-churn","channel":"{channel}","data":{{"from":"{user}"}}}}"#);
    conn.send_text(&whisper).await?;

    // Publish to the channel and wait for the event to come back to this socket.
    if api.is_none() {
        *api = Some(ApiConn::connect(target).await?);
    }
    let marker = format!("{socket_id}/{channel}");
    let body = serde_json::json!({"name": "churn", "channel": channel, "data": marker}).to_string();
    let path = format!("/apps/{}/events", target.app_id);
    if let Some(api) = api.as_mut() {
        let (status, answer) = step(api.signed(target, "POST", &path, &body)).await??;
        anyhow::ensure!(
            status == 200,
            "publish: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let received = step(async {
        while let Some(text) = conn.next_text().await? {
            if contains(&text, marker.as_bytes()) {
                return Ok::<_, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    if !matches!(received, Ok(Ok(true))) {
        counters.undelivered.set(counters.undelivered.get() + 1);
    }

    monoio::time::sleep(args.hold).await;
    if clean {
        conn.send_text(&format!(
            r#"{{"event":"pusher:unsubscribe","data":{{"channel":"{channel}"}}}}"#
        ))
        .await?;
        conn.close().await?;
    }
    // Otherwise dropping the connection closes the socket without a word.
    Ok(())
}

async fn open(args: &ChurnArgs, source: Option<Ipv4Addr>) -> anyhow::Result<(PusherConn, String)> {
    let stream = connect_from(&args.target, source).await?;
    Ok(step(PusherConn::open(stream, &args.target)).await??)
}

/// Subscribes to a presence channel as `user`, with an auth signed locally.
async fn subscribe(
    conn: &mut PusherConn,
    args: &ChurnArgs,
    socket_id: &str,
    channel: &str,
    user: &str,
) -> anyhow::Result<()> {
    let channel_data =
        serde_json::json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let auth = sign_channel(
        &args.target.key,
        &hmac_key(&args.target.secret),
        socket_id,
        channel,
        Some(&channel_data),
    );
    step(conn.subscribe(channel, Some((&auth, &channel_data)))).await??;
    Ok(())
}

/// Bounds one step of a session.
async fn step<T>(fut: impl Future<Output = T>) -> anyhow::Result<T> {
    timeout(STEP, fut)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {STEP:?}"))
}

async fn observe(mut conn: PusherConn, roster: Rc<RefCell<Roster>>, stop: Rc<Cell<bool>>) {
    while !stop.get() {
        let text = match timeout(Duration::from_millis(200), conn.next_text()).await {
            Err(_) => continue,
            Ok(Ok(Some(text))) => text,
            Ok(_) => break,
        };
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        let event = message["event"].as_str().unwrap_or_default();
        let mut roster = roster.borrow_mut();
        match event {
            "pusher_internal:member_added" | "pusher_internal:member_removed" => {
                let user = serde_json::from_str::<serde_json::Value>(
                    message["data"].as_str().unwrap_or("{}"),
                )
                .ok()
                .and_then(|d| d["user_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
                let consistent = if event.ends_with("added") {
                    roster.added += 1;
                    roster.members.insert(user)
                } else {
                    roster.removed += 1;
                    roster.members.remove(&user)
                };
                if !consistent {
                    roster.anomalies += 1;
                }
            }
            "client-churn" => roster.client_events += 1,
            "pusher:ping" => {
                drop(roster);
                if conn
                    .send_text(r#"{"event":"pusher:pong","data":{}}"#)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            _ => {}
        }
    }
    let _ = conn.close().await;
}

async fn sample_rss(pid: Option<u32>, every: Duration, deadline: Instant) -> Vec<RssSample> {
    let Some(pid) = pid else { return Vec::new() };
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        if let Some(rss_kib) = rss_kib(pid) {
            samples.push(RssSample {
                at_s: started.elapsed().as_secs_f64(),
                rss_kib,
            });
        }
        if Instant::now() >= deadline {
            return samples;
        }
        let next = (Instant::now() + every).min(deadline);
        monoio::time::sleep(next.saturating_duration_since(Instant::now())).await;
    }
}
