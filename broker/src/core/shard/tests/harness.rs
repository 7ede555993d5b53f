//! The test harness: whole shards over an in-memory mesh, with a simulated clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};

use crate::core::auth::{hmac_key, sign_channel, sign_signin};
use crate::core::channel::ChannelName;
use crate::core::counters::ShardCounters;
use crate::core::ids::{AppIdx, SocketId};
use crate::core::options::{ClientEvents, Config};
use crate::core::shard::*;
use crate::core::wire::{Fault, Wire};
use crate::core::ws::frame::{
    FrameLimits, Message, MessageDecoder, Opcode, Role, encode_client_frame,
};
use ringcast_shared::{AuditDecision, AuditRecord};

pub(super) const KEY: &str = "test-key";
pub(super) const SECRET: &str = "test-secret";
/// The wall clock of the simulated cluster at its start.
pub(super) const NOW_UNIX: u64 = 1_800_000_000;
/// The shards' seed: fixed, so socket ids are the same on every run.
pub(super) const SEED: u64 = 0x5eed;
pub(super) const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!";

pub(super) struct Cluster {
    pub(super) shards: Vec<Shard>,
    pub(super) now: Instant,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Client {
    pub(super) shard: ShardId,
    pub(super) key: ConnKey,
    pub(super) socket_id: SocketId,
}

pub(super) fn state_with(shard_count: usize, tweak: impl FnOnce(&mut Config)) -> Arc<Shared> {
    let mut config = Config::demo();
    config.server.shards = shard_count;
    config.server.activity_timeout = Duration::from_secs(120);
    config.server.pong_timeout = Duration::from_secs(30);
    config.server.send_buffer_bytes = 64 * 1024;
    let app = &mut config.apps[0];
    app.key = KEY.into();
    app.secret = SECRET.into();
    app.client_events = ClientEvents::Enabled;
    tweak(&mut config);
    let node = crate::core::cluster::NodeId::from_bits(1);
    Arc::new(Shared::new(config.server, &config.apps, node, SEED))
}

impl Cluster {
    pub(super) fn new(shard_count: usize) -> Self {
        Self::with(shard_count, |_| {})
    }

    pub(super) fn with(shard_count: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::from_state(shard_count, state_with(shard_count, tweak))
    }

    /// Shards started from `state` (as a restart starts them from what the stores held).
    pub(super) fn from_state(shard_count: usize, state: Arc<Shared>) -> Self {
        let now = Instant::now();
        let shards = (0..shard_count)
            .map(|id| {
                Shard::new(
                    id,
                    shard_count,
                    state.clone(),
                    Arc::new(ShardCounters::new(state.apps.len())),
                    WallClock::new(now, NOW_UNIX),
                )
            })
            .collect();
        Self { shards, now }
    }

    pub(super) fn route(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..self.shards.len() {
                while let Some((to, msg)) = self.shards[from].poll_mesh() {
                    moved = true;
                    let now = self.now;
                    self.shards[to].handle_mesh(msg, now);
                }
            }
            if !moved {
                break;
            }
        }
    }

    pub(super) fn try_connect(
        &mut self,
        shard: ShardId,
        path: &str,
        protocol: Option<&str>,
    ) -> Result<Client, (Vec<Value>, Fault)> {
        self.try_connect_with_token(shard, path, protocol, None)
    }

    pub(super) fn try_connect_with_token(
        &mut self,
        shard: ShardId,
        path: &str,
        protocol: Option<&str>,
        token: Option<&str>,
    ) -> Result<Client, (Vec<Value>, Fault)> {
        self.try_connect_with(shard, path, protocol, Credentials::Token(token))
    }

    /// Connects to `path` on `shard` with `credentials` as the shell found them.
    pub(super) fn try_connect_with(
        &mut self,
        shard: ShardId,
        path: &str,
        protocol: Option<&str>,
        credentials: Credentials<'_>,
    ) -> Result<Client, (Vec<Value>, Fault)> {
        let request = ConnectRequest {
            wire: Wire::Pusher,
            path,
            protocol,
            origin: None,
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            credentials,
            now_unix: NOW_UNIX,
            recovery_pid: None,
        };
        match self.shards[shard].accept_websocket(&request, self.now) {
            Accept::Open(key) => {
                let socket_id = self.shards[shard].socket_id(key).unwrap();
                Ok(Client {
                    shard,
                    key,
                    socket_id,
                })
            }
            Accept::Refused(bytes, code) => {
                let mut buf = BytesMut::from(&bytes[..]);
                Err((decode_all(&mut buf), code))
            }
        }
    }

    pub(super) fn connect(&mut self, shard: ShardId) -> Client {
        let client = self
            .try_connect(shard, &format!("/app/{KEY}"), Some("7"))
            .unwrap();
        let hello = self.recv(client);
        assert_eq!(hello[0]["event"], "pusher:connection_established");
        client
    }

    pub(super) fn send_raw(&mut self, client: Client, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        let now = self.now;
        self.shards[client.shard].handle_input(client.key, client.socket_id, &mut buf, now);
        self.route();
    }

    pub(super) fn send(&mut self, client: Client, message: Value) {
        let text = message.to_string();
        self.send_raw(
            client,
            &encode_client_frame(Opcode::Text, text.as_bytes(), [1, 2, 3, 4], true),
        );
    }

    /// Every frame queued for the client.
    pub(super) fn frames(&mut self, client: Client) -> Vec<bytes::Bytes> {
        let mut frames = Vec::new();
        let mut ready = Vec::new();
        self.shards[client.shard].take_ready(&mut ready);
        self.shards[client.shard].take_output(
            client.key,
            client.socket_id,
            &mut frames,
            usize::MAX,
            usize::MAX,
        );
        frames
    }

    /// Everything queued for the client, as JSON (close frames as `{"close": code}`).
    pub(super) fn recv(&mut self, client: Client) -> Vec<Value> {
        let frames = self.frames(client);
        let mut buf = BytesMut::new();
        for frame in frames {
            buf.extend_from_slice(&frame);
        }
        decode_all(&mut buf)
    }

    pub(super) fn events(&mut self, client: Client) -> Vec<String> {
        self.recv(client)
            .iter()
            .map(|v| {
                v["event"]
                    .as_str()
                    .map_or_else(|| v.to_string(), str::to_owned)
            })
            .collect()
    }

    pub(super) fn subscribe(&mut self, client: Client, channel: &str) -> Vec<Value> {
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        );
        self.recv(client)
    }

    pub(super) fn subscribe_private(&mut self, client: Client, channel: &str) -> Vec<Value> {
        let auth = sign_channel(KEY, &hmac_key(SECRET), client.socket_id, channel, None);
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
        );
        self.recv(client)
    }

    pub(super) fn join_presence(
        &mut self,
        client: Client,
        channel: &str,
        user: &str,
    ) -> Vec<Value> {
        let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        let auth = sign_presence(client, channel, &data);
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}),
        );
        self.recv(client)
    }

    pub(super) fn publish(
        &mut self,
        from_shard: ShardId,
        channel: &str,
        data: &str,
        except: Option<SocketId>,
    ) -> Option<QueryId> {
        let channel = ChannelName::parse(channel, 200).unwrap();
        let now = self.now;
        let publish = Publish {
            app: AppIdx(0),
            event: "greeting",
            data,
            except,
        };
        let confirmation = self.shards[from_shard].publish(&publish, &channel, now);
        self.route();
        confirmation
    }

    pub(super) fn query(&mut self, shard: ShardId, query: Query) -> Answer {
        let now = self.now;
        let id = self.shards[shard].start_query(query, now);
        self.route();
        let mut answers: Vec<_> = self.shards[shard].take_answers().collect();
        assert_eq!(answers.len(), 1);
        let (got, answer) = answers.remove(0);
        assert_eq!(got, id);
        answer
    }

    pub(super) fn stats(&mut self, shard: ShardId, channel: &str) -> ChannelStats {
        let query = Query::Channel {
            app: AppIdx(0),
            channel: name(channel),
        };
        match self.query(shard, query) {
            Answer::Channel(stats) => stats,
            other => panic!("{other:?}"),
        }
    }

    pub(super) fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for shard in &mut self.shards {
            shard.handle_tick(now);
        }
        self.route();
    }
}

pub(super) fn decode_all(buf: &mut BytesMut) -> Vec<Value> {
    let limits = FrameLimits {
        max_frame_bytes: 1 << 24,
        max_message_bytes: 1 << 24,
    };
    let mut decoder = MessageDecoder::new(Role::Client, limits);
    let mut out = Vec::new();
    while let Some(msg) = decoder.decode(buf).unwrap() {
        match msg {
            Message::Text(text) => out.push(serde_json::from_slice(&text).unwrap()),
            Message::Close(frame) => out.push(json!({"close": frame.map(|f| f.code)})),
            other => out.push(json!({"other": format!("{other:?}")})),
        }
    }
    out
}

/// Two shards; alice on shard 0 and bob on shard 1, both members of a `presence-chat.`
/// channel homed on shard 1, so everything about it crosses the mesh.
pub(super) fn presence_chat(tweak: impl FnOnce(&mut Config)) -> (Cluster, Client, Client, String) {
    let mut c = Cluster::with(2, tweak);
    let channel = channel_homed_on(1, "presence-chat.");
    let alice = c.connect(0);
    let bob = c.connect(1);
    c.join_presence(alice, &channel, "alice");
    c.join_presence(bob, &channel, "bob");
    c.recv(alice);
    (c, alice, bob, channel)
}

/// A counter summed over every shard.
pub(super) fn total(
    c: &Cluster,
    counter: impl Fn(&ShardCounters) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    c.shards
        .iter()
        .map(|s| counter(s.counters()).load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

/// The app's signature of `client` joining presence `channel` with `channel_data` `data`.
pub(super) fn sign_presence(client: Client, channel: &str, data: &str) -> String {
    sign_channel(
        KEY,
        &hmac_key(SECRET),
        client.socket_id,
        channel,
        Some(data),
    )
}

pub(super) fn inner(value: &Value) -> Value {
    serde_json::from_str(value["data"].as_str().unwrap()).unwrap()
}

pub(super) fn name(raw: &str) -> ChannelName {
    ChannelName::parse(raw, 200).unwrap()
}

/// Channel names whose home is shard 0 and shard 1 of two.
pub(super) fn channel_homed_on(shard: ShardId, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| home_shard(AppIdx(0), &name(n), 2) == shard)
        .unwrap()
}

impl Cluster {
    pub(super) fn signin(&mut self, client: Client, user_data: &str) -> Vec<Value> {
        let auth = sign_signin(KEY, &hmac_key(SECRET), client.socket_id, user_data);
        self.send(
            client,
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        );
        self.recv(client)
    }
}

pub(super) fn with_webhooks(c: &mut Config) {
    c.apps[0].webhooks = vec![crate::core::options::WebhookConfig::to(
        "http://127.0.0.1:1/hook",
    )];
}

impl Cluster {
    pub(super) fn webhooks(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        for shard in &mut self.shards {
            shard.take_webhooks(&mut out);
        }
        out.iter()
            .map(|(_, e)| e.to_json())
            .filter(|e| e["name"] != "subscription_count")
            .collect()
    }
}

pub(super) fn watchlist_event(frames: &[Value]) -> Option<Value> {
    frames
        .iter()
        .find(|f| f["event"] == "pusher_internal:watchlist_events")
        .map(inner)
}

pub(super) fn with_rate_limits(c: &mut Config) {
    c.apps[0].rate_limits = Some(crate::core::options::RateLimits {
        connections_per_minute_per_ip: 3,
        client_events_per_minute_per_user: 3,
        subscriptions_per_connection: 2,
        api_requests_per_second: 5,
    });
}

pub(super) fn with_jwt(required: bool) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.apps[0].jwt = Some(crate::core::options::JwtConfig {
            required,
            leeway_secs: 0,
            ..crate::core::options::JwtConfig::hs256(JWT_SECRET)
        });
    }
}

pub(super) fn hs256(claims: &Value) -> String {
    crate::core::auth::jwt::sign_hs256(claims, JWT_SECRET.as_bytes())
}

pub(super) fn with_policies(c: &mut Config) {
    use crate::core::policy::RuleConfig;
    let rule = RuleConfig::new;
    c.apps[0].policies = vec![
        RuleConfig {
            tenant: Some("{tenant}".into()),
            ..rule("tenant-isolation", "tenant.{tenant}.**")
        },
        RuleConfig {
            user: Some("{id}".into()),
            actors: vec!["user".into()],
            ..rule("personal", "user.{id}")
        },
    ];
}

impl Cluster {
    pub(super) fn audit(&mut self) -> Vec<AuditRecord> {
        let mut out = Vec::new();
        for shard in &mut self.shards {
            shard.take_audit(&mut out);
        }
        out
    }
}

pub(super) fn summary(records: &[AuditRecord]) -> Vec<(String, AuditDecision, Option<String>)> {
    records
        .iter()
        .map(|r| (r.action.clone(), r.decision, r.rule.clone()))
        .collect()
}
