//! The per-shard state machine (`core::shard::Shard`) driven with plain values, as the shell
//! drives it: connections are accepted with `accept_websocket`, bytes go in through
//! `handle_input`, frames come out through `take_ready` / `take_output`. One shard of one, so
//! every channel is homed here and mesh messages to itself are handled before each call
//! returns; the clock is a fixed `Instant` (nothing here expires).
//!
//! - `subscribe`: N accepted connections each send one masked `pusher:subscribe` frame for the
//!   same public channel (decode, parse, registry, home count, `subscription_succeeded`).
//!   Every iteration starts from a fresh shard, built outside the timing.
//! - `publish_fanout`: an HTTP API publish to a channel with N subscribers: the event is
//!   encoded into one frame and a clone queued for every subscriber. `publish_only` times
//!   `Shard::publish` alone, draining the queues between chunks outside the timing;
//!   `publish_and_drain` also hands every frame out, as the connection writers do.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::config::Config;
use ringcast::core::channel::ChannelName;
use ringcast::core::cluster::NodeId;
use ringcast::core::counters::ShardCounters;
use ringcast::core::ids::{AppIdx, SocketId};
use ringcast::core::shard::{
    Accept, Answer, ConnKey, ConnectRequest, Credentials, Publish, Query, Shard, Shared, WallClock,
};
use ringcast::core::wire::Wire;
use ringcast::core::ws::frame::{Opcode, encode_client_frame};

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";
const CHANNEL: &str = "chat.room-42";
/// The wall clock the shard is told (no tokens are used, so any value will do).
const NOW_UNIX: u64 = 1_800_000_000;
/// Publishes between two drains in `publish_only`: far below the 1 MiB per-connection send
/// buffer, so no subscriber is ever closed as a slow consumer.
const PUBLISHES_PER_DRAIN: u64 = 64;
/// What Laravel sends as `data` for a chat message (a JSON string, relayed as is).
const EVENT_DATA: &str =
    r#"{"message":{"id":981,"body":"Hello there, see you at 10?","user_id":1234},"room":42}"#;

/// A fresh single-shard server with one app, the demo defaults otherwise. Every shard gets
/// its own state, so connection quotas never carry over between iterations.
fn new_shard() -> Shard {
    let mut config = Config::demo();
    config.server.shards = 1;
    let app = &mut config.apps[0];
    app.key = KEY.into();
    app.secret = SECRET.into();
    let node = NodeId::from_bits(1);
    let state = Arc::new(Shared::new(config.server, &config.apps, node, 1));
    let counters = Arc::new(ShardCounters::new(state.apps.len()));
    Shard::new(0, 1, state, counters, WallClock::new(Instant::now(), 0))
}

fn connect(shard: &mut Shard, now: Instant) -> (ConnKey, SocketId) {
    let path = format!("/app/{KEY}");
    let request = ConnectRequest {
        wire: Wire::Pusher,
        path: &path,
        protocol: Some("7"),
        origin: None,
        remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
        credentials: Credentials::Token(None),
        now_unix: NOW_UNIX,
        recovery_pid: None,
    };
    match shard.accept_websocket(&request, now) {
        Accept::Open(key) => (key, shard.socket_id(key).expect("open connection")),
        Accept::Refused(_, code) => panic!("connection refused: {code:?}"),
    }
}

/// Hands out every queued frame, as the connection writers do; returns how many.
fn drain(shard: &mut Shard, ready: &mut Vec<ConnKey>, frames: &mut Vec<Bytes>) -> usize {
    ready.clear();
    shard.take_ready(ready);
    let mut handed_out = 0;
    for &key in ready.iter() {
        let Some(socket_id) = shard.socket_id(key) else {
            continue;
        };
        frames.clear();
        shard.take_output(key, socket_id, frames, usize::MAX, usize::MAX);
        handed_out += frames.len();
    }
    handed_out
}

fn subscribe_frame() -> Vec<u8> {
    let text = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{CHANNEL}"}}}}"#);
    encode_client_frame(
        Opcode::Text,
        text.as_bytes(),
        [0x37, 0xfa, 0x21, 0x3d],
        true,
    )
}

/// Subscribers of `channel` on the shard, through the public query API.
fn subscription_count(shard: &mut Shard, channel: &ChannelName, now: Instant) -> usize {
    let query = Query::Channel {
        app: AppIdx(0),
        channel: channel.clone(),
    };
    let id = shard.start_query(query, now);
    match shard.take_answers().find(|(answered, _)| *answered == id) {
        Some((_, Answer::Channel(stats))) => stats.subscription_count,
        other => panic!("no channel answer: {other:?}"),
    }
}

/// A shard with `n` accepted connections, their subscribe frames ready to feed.
struct Joining {
    shard: Shard,
    conns: Vec<(ConnKey, SocketId, BytesMut)>,
}

fn joining(n: usize, frame: &[u8], now: Instant) -> Joining {
    let mut shard = new_shard();
    let conns = (0..n)
        .map(|_| {
            let (key, socket_id) = connect(&mut shard, now);
            (key, socket_id, BytesMut::from(frame))
        })
        .collect();
    Joining { shard, conns }
}

fn subscribe_all(joining: &mut Joining, now: Instant) {
    for (key, socket_id, buf) in &mut joining.conns {
        joining.shard.handle_input(*key, *socket_id, buf, now);
    }
}

fn subscribe(c: &mut Criterion) {
    let now = Instant::now();
    let frame = subscribe_frame();
    let channel = ChannelName::parse(CHANNEL, 200).expect("channel");
    let mut group = c.benchmark_group("shard_subscribe");
    for n in [100, 1000] {
        let mut check = joining(n, &frame, now);
        subscribe_all(&mut check, now);
        assert_eq!(subscription_count(&mut check.shard, &channel, now), n);

        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("public_channel/{n}"), |b| {
            b.iter_batched_ref(
                || joining(n, &frame, now),
                |joining| subscribe_all(joining, now),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// A shard with `n` connections subscribed to `channel`, their queues drained.
fn subscribed(n: usize, now: Instant) -> Shard {
    let mut joining = joining(n, &subscribe_frame(), now);
    subscribe_all(&mut joining, now);
    let mut shard = joining.shard;
    drain(&mut shard, &mut Vec::new(), &mut Vec::new());
    shard
}

fn publish_fanout(c: &mut Criterion) {
    let now = Instant::now();
    let channel = ChannelName::parse(CHANNEL, 200).expect("channel");
    let publish = Publish {
        app: AppIdx(0),
        event: r"App\Events\MessageSent",
        data: EVENT_DATA,
        except: None,
    };
    let mut group = c.benchmark_group("shard_publish_fanout");
    for n in [1, 100, 1000] {
        let mut shard = subscribed(n, now);
        let (mut ready, mut frames) = (Vec::new(), Vec::new());
        shard.publish(&publish, &channel, now);
        assert_eq!(drain(&mut shard, &mut ready, &mut frames), n);

        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("publish_only/{n}"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(PUBLISHES_PER_DRAIN);
                    let start = Instant::now();
                    for _ in 0..chunk {
                        shard.publish(std::hint::black_box(&publish), &channel, now);
                    }
                    timed += start.elapsed();
                    drain(&mut shard, &mut ready, &mut frames);
                    left -= chunk;
                }
                timed
            })
        });
        group.bench_function(format!("publish_and_drain/{n}"), |b| {
            b.iter(|| {
                shard.publish(std::hint::black_box(&publish), &channel, now);
                drain(&mut shard, &mut ready, &mut frames)
            })
        });
        // Nobody was closed as a slow consumer along the way.
        assert_eq!(shard.connection_count(), n);
        assert_eq!(subscription_count(&mut shard, &channel, now), n);
    }
    group.finish();
}

criterion_group!(benches, subscribe, publish_fanout);
criterion_main!(benches);
