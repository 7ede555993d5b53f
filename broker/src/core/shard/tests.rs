//! Drives whole shards with plain values: an in-memory mesh and a simulated clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};

use super::*;
use crate::core::auth::{hmac_hex, hmac_key};
use crate::core::options::{ClientEvents, Config};
use crate::core::ws::frame::{
    FrameLimits, Message, MessageDecoder, Opcode, Role, encode_client_frame,
};
use ringcast_shared::{AuditDecision, AuditKind, AuditRecord};

const KEY: &str = "test-key";
const SECRET: &str = "test-secret";
/// The wall clock of the simulated cluster at its start.
const NOW_UNIX: u64 = 1_800_000_000;
const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!";

struct Cluster {
    shards: Vec<Shard>,
    now: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Client {
    shard: ShardId,
    key: ConnKey,
    socket_id: SocketId,
}

fn state_with(shard_count: usize, tweak: impl FnOnce(&mut Config)) -> Arc<ServerState> {
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
    Arc::new(ServerState::new(config))
}

impl Cluster {
    fn new(shard_count: usize) -> Self {
        Self::with(shard_count, |_| {})
    }

    fn with(shard_count: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        let state = state_with(shard_count, tweak);
        let shards = (0..shard_count)
            .map(|id| {
                Shard::new(
                    id,
                    shard_count,
                    state.clone(),
                    Arc::new(ShardMetrics::new(state.apps.len())),
                )
            })
            .collect();
        Self {
            shards,
            now: Instant::now(),
        }
    }

    fn route(&mut self) {
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

    fn try_connect(
        &mut self,
        shard: ShardId,
        path: &str,
        protocol: Option<&str>,
    ) -> Result<Client, (Vec<Value>, ErrorCode)> {
        self.try_connect_with_token(shard, path, protocol, None)
    }

    fn try_connect_with_token(
        &mut self,
        shard: ShardId,
        path: &str,
        protocol: Option<&str>,
        token: Option<&str>,
    ) -> Result<Client, (Vec<Value>, ErrorCode)> {
        let request = ConnectRequest {
            path,
            protocol,
            origin: None,
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            token,
            now_unix: NOW_UNIX,
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

    fn connect(&mut self, shard: ShardId) -> Client {
        let client = self
            .try_connect(shard, &format!("/app/{KEY}"), Some("7"))
            .unwrap();
        let hello = self.recv(client);
        assert_eq!(hello[0]["event"], "pusher:connection_established");
        client
    }

    fn send_raw(&mut self, client: Client, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        let now = self.now;
        self.shards[client.shard].handle_input(client.key, client.socket_id, &mut buf, now);
        self.route();
    }

    fn send(&mut self, client: Client, message: Value) {
        let text = message.to_string();
        self.send_raw(
            client,
            &encode_client_frame(Opcode::Text, text.as_bytes(), [1, 2, 3, 4], true),
        );
    }

    /// Everything queued for the client, as JSON (close frames as `{"close": code}`).
    fn recv(&mut self, client: Client) -> Vec<Value> {
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
        let mut buf = BytesMut::new();
        for frame in frames {
            buf.extend_from_slice(&frame);
        }
        decode_all(&mut buf)
    }

    fn events(&mut self, client: Client) -> Vec<String> {
        self.recv(client)
            .iter()
            .map(|v| {
                v["event"]
                    .as_str()
                    .map_or_else(|| v.to_string(), str::to_owned)
            })
            .collect()
    }

    fn subscribe(&mut self, client: Client, channel: &str) -> Vec<Value> {
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        );
        self.recv(client)
    }

    fn subscribe_private(&mut self, client: Client, channel: &str) -> Vec<Value> {
        let sig = hmac_hex(
            &hmac_key(SECRET),
            format!("{}:{channel}", client.socket_id).as_bytes(),
        );
        let auth = format!("{KEY}:{sig}");
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
        );
        self.recv(client)
    }

    fn join_presence(&mut self, client: Client, channel: &str, user: &str) -> Vec<Value> {
        let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        let sig = hmac_hex(
            &hmac_key(SECRET),
            format!("{}:{channel}:{data}", client.socket_id).as_bytes(),
        );
        let auth = format!("{KEY}:{sig}");
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}),
        );
        self.recv(client)
    }

    fn publish(
        &mut self,
        from_shard: ShardId,
        channel: &str,
        data: &str,
        except: Option<SocketId>,
    ) {
        let channel = ChannelName::parse(channel, 200).unwrap();
        let now = self.now;
        let publish = Publish {
            app: AppIdx(0),
            event: "greeting",
            data,
            except,
        };
        self.shards[from_shard].publish(&publish, &channel, now);
        self.route();
    }

    fn query(&mut self, shard: ShardId, query: Query) -> Answer {
        let now = self.now;
        let id = self.shards[shard].start_query(query, now);
        self.route();
        let mut answers: Vec<_> = self.shards[shard].take_answers().collect();
        assert_eq!(answers.len(), 1);
        let (got, answer) = answers.remove(0);
        assert_eq!(got, id);
        answer
    }

    fn stats(&mut self, shard: ShardId, channel: &str) -> ChannelStats {
        let query = Query::Channel {
            app: AppIdx(0),
            channel: name(channel),
        };
        match self.query(shard, query) {
            Answer::Channel(stats) => stats,
            other => panic!("{other:?}"),
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for shard in &mut self.shards {
            shard.handle_tick(now);
        }
        self.route();
    }
}

fn decode_all(buf: &mut BytesMut) -> Vec<Value> {
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

fn inner(value: &Value) -> Value {
    serde_json::from_str(value["data"].as_str().unwrap()).unwrap()
}

fn name(raw: &str) -> ChannelName {
    ChannelName::parse(raw, 200).unwrap()
}

/// Channel names whose home is shard 0 and shard 1 of two.
fn channel_homed_on(shard: ShardId, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| home_shard(AppIdx(0), &name(n), 2) == shard)
        .unwrap()
}

#[test]
fn connection_established_carries_socket_id_and_activity_timeout() {
    let mut cluster = Cluster::new(1);
    let client = cluster.try_connect(0, "/app/test-key", Some("7")).unwrap();
    let hello = cluster.recv(client);
    assert_eq!(hello.len(), 1);
    let data = inner(&hello[0]);
    assert_eq!(data["activity_timeout"], 120);
    assert_eq!(data["socket_id"], client.socket_id.to_string());
}

#[test]
fn connection_errors_use_the_pusher_codes() {
    let mut cluster = Cluster::with(1, |c| {
        let mut disabled = c.apps[0].clone();
        disabled.id = "2".into();
        disabled.key = "disabled-key".into();
        disabled.enabled = false;
        c.apps.push(disabled);
    });
    for (path, protocol, code) in [
        ("/app/nope", Some("7"), 4001),
        ("/app/disabled-key", Some("7"), 4003),
        ("/elsewhere", Some("7"), 4005),
        ("/app/", Some("7"), 4005),
        ("/app/test-key", Some("seven"), 4006),
        ("/app/test-key", Some("8"), 4007),
        ("/app/test-key", Some("6"), 4007),
        ("/app/test-key", None, 4008),
    ] {
        let (frames, error) = cluster.try_connect(0, path, protocol).unwrap_err();
        assert_eq!(error.code(), code, "{path} {protocol:?}");
        assert_eq!(frames[0]["event"], "pusher:error");
        assert_eq!(frames[0]["data"]["code"], code);
        assert_eq!(frames[1]["close"], code);
    }
}

#[test]
fn app_connection_quota_counts_the_other_nodes_connections() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_connections = Some(3));
    let state = cluster.shards[0].state.clone();
    let app = state.apps.get(AppIdx(0));
    app.set_elsewhere(2);
    cluster.connect(0);
    assert_eq!(app.cluster_connections(), 3);
    let (_, code) = cluster
        .try_connect(0, "/app/test-key", Some("7"))
        .unwrap_err();
    assert_eq!(code, ErrorCode::AppOverConnectionQuota);
    // More elsewhere than the quota (a burst on other nodes) refuses, never underflows.
    app.set_elsewhere(10);
    assert!(cluster.try_connect(0, "/app/test-key", Some("7")).is_err());
    app.set_elsewhere(1);
    assert!(cluster.try_connect(0, "/app/test-key", Some("7")).is_ok());
}

#[test]
fn app_connection_quota_is_inclusive_and_freed_on_disconnect() {
    let mut cluster = Cluster::with(2, |c| c.apps[0].max_connections = Some(2));
    let a = cluster.connect(0);
    cluster.connect(1);
    let (_, code) = cluster
        .try_connect(0, "/app/test-key", Some("7"))
        .unwrap_err();
    assert_eq!(code, ErrorCode::AppOverConnectionQuota);
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(a.key, a.socket_id, now);
    assert!(cluster.try_connect(0, "/app/test-key", Some("7")).is_ok());
}

#[test]
fn server_connection_quota_closes_with_4100() {
    let mut cluster = Cluster::with(1, |c| c.server.max_connections = 1);
    cluster.connect(0);
    let (_, code) = cluster
        .try_connect(0, "/app/test-key", Some("7"))
        .unwrap_err();
    assert_eq!(code, ErrorCode::OverCapacity);
}

#[test]
fn ping_gets_pong() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    cluster.send(client, json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(cluster.events(client), ["pusher:pong"]);
}

#[test]
fn websocket_ping_frame_gets_pong_frame_with_same_payload() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    cluster.send_raw(
        client,
        &encode_client_frame(Opcode::Ping, b"abc", [9, 9, 9, 9], true),
    );
    let frames = cluster.recv(client);
    assert_eq!(frames.len(), 1);
    assert!(
        frames[0]["other"].as_str().unwrap().contains("Pong"),
        "{frames:?}"
    );
}

#[test]
fn public_subscribe_succeeds_and_receives_publishes_from_any_shard() {
    let mut cluster = Cluster::new(2);
    let client = cluster.connect(1);
    let reply = cluster.subscribe(client, "news");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(reply[0]["channel"], "news");
    cluster.publish(0, "news", "hello", None);
    let got = cluster.recv(client);
    assert_eq!(
        got,
        [json!({"event": "greeting", "channel": "news", "data": "hello"})]
    );
}

#[test]
fn subscribers_on_both_shards_receive_each_publish_once_in_order() {
    for home in 0..2 {
        let mut cluster = Cluster::new(2);
        let channel = channel_homed_on(home, "orders-");
        let a = cluster.connect(0);
        let b = cluster.connect(1);
        cluster.subscribe(a, &channel);
        cluster.subscribe(b, &channel);
        for i in 0..5 {
            cluster.publish(i % 2, &channel, &i.to_string(), None);
        }
        for client in [a, b] {
            let data: Vec<Value> = cluster
                .recv(client)
                .iter()
                .map(|v| v["data"].clone())
                .collect();
            assert_eq!(data, ["0", "1", "2", "3", "4"], "home {home}");
        }
    }
}

#[test]
fn publish_reuses_one_frame_buffer_for_every_subscriber() {
    let mut cluster = Cluster::new(1);
    let clients: Vec<Client> = (0..3).map(|_| cluster.connect(0)).collect();
    for &c in &clients {
        cluster.subscribe(c, "fan");
    }
    cluster.publish(0, "fan", "x", None);
    let mut pointers = Vec::new();
    for &c in &clients {
        let mut frames = Vec::new();
        cluster.shards[0].take_output(c.key, c.socket_id, &mut frames, usize::MAX, usize::MAX);
        assert_eq!(frames.len(), 1);
        pointers.push(frames[0].as_ptr());
    }
    assert!(pointers.windows(2).all(|w| w[0] == w[1]), "{pointers:?}");
}

#[test]
fn events_carry_their_acceptance_time_to_the_writer_across_shards() {
    let mut cluster = Cluster::new(2);
    let near = cluster.connect(0);
    let far = cluster.connect(1);
    for c in [near, far] {
        cluster.subscribe(c, "timed");
    }
    let accepted = cluster.now;
    cluster.publish(0, "timed", "x", None);
    cluster.tick(Duration::from_millis(5));
    cluster.publish(1, "timed", "y", None);
    for c in [near, far] {
        let mut ready = Vec::new();
        cluster.shards[c.shard].take_ready(&mut ready);
        let mut frames = Vec::new();
        let taken = cluster.shards[c.shard].take_output(
            c.key,
            c.socket_id,
            &mut frames,
            usize::MAX,
            usize::MAX,
        );
        // Both events, stamped with the oldest one's acceptance, on either shard.
        assert_eq!(frames.len(), 2);
        assert_eq!(taken.events, 2);
        assert_eq!(taken.oldest_event, Some(accepted));
        assert_eq!(taken.state, OutputState::Open);
    }
    // Replies are not events.
    let late = cluster.connect(0);
    let mut ready = Vec::new();
    cluster.shards[0].take_ready(&mut ready);
    let mut frames = Vec::new();
    let taken = cluster.shards[0].take_output(
        late.key,
        late.socket_id,
        &mut frames,
        usize::MAX,
        usize::MAX,
    );
    assert_eq!((taken.events, taken.oldest_event), (0, None));
}

#[test]
fn socket_id_exclusion_skips_only_that_socket() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.subscribe(b, "room");
    cluster.publish(0, "room", "x", Some(a.socket_id));
    assert!(cluster.recv(a).is_empty());
    assert_eq!(cluster.recv(b).len(), 1);
}

#[test]
fn unsubscribe_stops_delivery_and_gets_no_reply() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    );
    assert!(cluster.recv(a).is_empty());
    cluster.publish(0, "room", "x", None);
    assert!(cluster.recv(a).is_empty());
    assert_eq!(cluster.stats(0, "room"), ChannelStats::default());
}

#[test]
fn private_channel_needs_a_valid_signature() {
    let mut cluster = Cluster::new(2);
    let client = cluster.connect(0);
    let reply = cluster.subscribe(client, "private-a");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["channel"], "private-a");
    assert_eq!(reply[0]["data"]["status"], 401);
    assert_eq!(reply[0]["data"]["type"], "AuthError");
    // The connection stays usable.
    let reply = cluster.subscribe_private(client, "private-a");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn privateer_is_a_public_channel() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    let reply = cluster.subscribe(client, "privateer");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn invalid_channel_names_get_an_error_and_the_connection_stays_open() {
    let mut cluster = Cluster::new(1);
    let client = cluster.connect(0);
    for bad in ["", "a b", &"x".repeat(201)] {
        let reply = cluster.subscribe(client, bad);
        assert_eq!(reply[0]["data"]["code"], 4307, "{bad:?}");
    }
    assert!(
        cluster.subscribe(client, &"x".repeat(200))[0]["event"]
            == "pusher_internal:subscription_succeeded"
    );
}

#[test]
fn presence_roster_and_member_events_are_per_user_not_per_socket() {
    let mut cluster = Cluster::new(2);
    let channel = "presence-room";
    let alice1 = cluster.connect(0);
    let reply = cluster.join_presence(alice1, channel, "alice");
    assert_eq!(
        inner(&reply[0]),
        json!({"presence": {"ids": ["alice"], "hash": {"alice": {"name": "alice"}}, "count": 1}})
    );
    let bob = cluster.connect(1);
    let reply = cluster.join_presence(bob, channel, "bob");
    assert_eq!(inner(&reply[0])["presence"]["count"], 2);
    let added = cluster.recv(alice1);
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["event"], "pusher_internal:member_added");
    assert_eq!(
        inner(&added[0]),
        json!({"user_id": "bob", "user_info": {"name": "bob"}})
    );

    // Alice's second socket: no member_added for anyone, count stays 2.
    let alice2 = cluster.connect(1);
    let reply = cluster.join_presence(alice2, channel, "alice");
    assert_eq!(inner(&reply[0])["presence"]["count"], 2);
    assert!(cluster.recv(bob).is_empty());
    assert!(cluster.recv(alice1).is_empty());

    // Alice's first socket leaves: still present through the second.
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(alice1.key, alice1.socket_id, now);
    cluster.route();
    assert!(cluster.recv(bob).is_empty());
    let answer = cluster.query(
        1,
        Query::Users {
            app: AppIdx(0),
            channel: name(channel),
        },
    );
    let Answer::Users(mut users) = answer else {
        panic!()
    };
    users.sort();
    assert_eq!(
        users.iter().map(UserId::as_str).collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    // Her last socket leaves: member_removed once.
    cluster.send(
        alice2,
        json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    );
    let removed = cluster.recv(bob);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["event"], "pusher_internal:member_removed");
    assert_eq!(inner(&removed[0]), json!({"user_id": "alice"}));
}

#[test]
fn presence_member_limit_refuses_the_next_user_with_subscription_error() {
    let mut cluster = Cluster::with(2, |c| c.apps[0].max_presence_members = 2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    let c = cluster.connect(0);
    cluster.join_presence(a, "presence-x", "a");
    cluster.join_presence(b, "presence-x", "b");
    let reply = cluster.join_presence(c, "presence-x", "c");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["type"], "LimitReached");
    // A refused socket may try again later once someone leaves.
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-x"}}),
    );
    let reply = cluster.join_presence(c, "presence-x", "c");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn client_events_reach_others_but_are_not_echoed() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe_private(a, "private-chat");
    cluster.subscribe_private(b, "private-chat");
    cluster.send(
        a,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"on": true}}),
    );
    assert!(cluster.recv(a).is_empty());
    assert_eq!(
        cluster.recv(b),
        [json!({"event": "client-typing", "channel": "private-chat", "data": {"on": true}})]
    );
}

#[test]
fn presence_client_events_carry_the_senders_user_id() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.join_presence(a, "presence-chat", "alice");
    cluster.join_presence(b, "presence-chat", "bob");
    cluster.recv(a);
    cluster.send(
        a,
        json!({"event": "client-hi", "channel": "presence-chat", "data": "yo"}),
    );
    let got = cluster.recv(b);
    assert_eq!(got[0]["user_id"], "alice");
    assert_eq!(got[0]["data"], "yo");
}

#[test]
fn client_events_are_refused_on_public_channels_and_when_not_subscribed() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.subscribe(a, "public");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "public", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-other", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
}

#[test]
fn client_events_mode_members_only_and_disabled() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].client_events = ClientEvents::MembersOnly);
    let a = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
    cluster.join_presence(a, "presence-x", "u");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "presence-x", "data": {}}),
    );
    assert!(cluster.recv(a).is_empty());

    let mut cluster = Cluster::with(1, |c| c.apps[0].client_events = ClientEvents::Disabled);
    let a = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4305);
}

#[test]
fn client_event_rate_limit_allows_the_limit_then_4301_without_closing() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.subscribe_private(b, "private-x");
    for _ in 0..10 {
        cluster.send(
            a,
            json!({"event": "client-x", "channel": "private-x", "data": {}}),
        );
    }
    assert!(cluster.recv(a).is_empty());
    assert_eq!(cluster.recv(b).len(), 10);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    let got = cluster.recv(a);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"]["code"], 4301);
    assert!(cluster.recv(b).is_empty());
    // A second later the bucket has refilled.
    cluster.now += Duration::from_secs(1);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    );
    assert_eq!(cluster.recv(b).len(), 1);
}

#[test]
fn client_event_data_size_limit_is_inclusive() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_message_bytes = 100);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.subscribe_private(a, "private-x");
    cluster.subscribe_private(b, "private-x");
    // `"` + 98 + `"` = 100 bytes of JSON data.
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": "y".repeat(98)}),
    );
    assert_eq!(cluster.recv(b).len(), 1);
    cluster.send(
        a,
        json!({"event": "client-x", "channel": "private-x", "data": "y".repeat(99)}),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4306);
    assert!(cluster.recv(b).is_empty());
}

#[test]
fn malformed_messages_get_errors_and_the_connection_survives() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    for text in ["not json", "[1]", "{}", r#"{"event":"pusher:subscribe"}"#] {
        cluster.send_raw(
            a,
            &encode_client_frame(Opcode::Text, text.as_bytes(), [7, 7, 7, 7], true),
        );
        let got = cluster.recv(a);
        assert_eq!(got[0]["data"]["code"], 4303, "{text}");
    }
    cluster.send(a, json!({"event": "pusher:bogus"}));
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4304);
    cluster.send_raw(
        a,
        &encode_client_frame(Opcode::Binary, b"\x00\x01", [7, 7, 7, 7], true),
    );
    assert_eq!(cluster.recv(a)[0]["data"]["code"], 4303);
    cluster.send(a, json!({"event": "pusher:ping"}));
    assert_eq!(cluster.events(a), ["pusher:pong"]);
}

#[test]
fn protocol_violations_close_with_the_rfc_code() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    // An unmasked client frame.
    cluster.send_raw(a, &[0x81, 0x02, b'h', b'i']);
    assert_eq!(cluster.recv(a), [json!({"close": 1002})]);
    let b = cluster.connect(0);
    cluster.send_raw(
        b,
        &encode_client_frame(Opcode::Text, &[0xff, 0xfe], [1, 1, 1, 1], true),
    );
    assert_eq!(cluster.recv(b), [json!({"close": 1007})]);
}

#[test]
fn oversized_frames_close_with_1009_before_the_payload_arrives() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].max_message_bytes = 100);
    let a = cluster.connect(0);
    // Only the header of a 1 MiB frame.
    let header = &encode_client_frame(Opcode::Text, &vec![b'a'; 1 << 20], [1, 2, 3, 4], true)[..14];
    cluster.send_raw(a, header);
    assert_eq!(cluster.recv(a), [json!({"close": 1009})]);
}

#[test]
fn close_frame_is_echoed_and_subscriptions_end() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.send_raw(
        a,
        &encode_client_frame(Opcode::Close, &1000u16.to_be_bytes(), [1, 2, 3, 4], true),
    );
    assert_eq!(cluster.recv(a), [json!({"close": 1000})]);
    assert_eq!(cluster.stats(0, "room"), ChannelStats::default());
}

#[test]
fn frames_split_across_reads_are_reassembled() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let frame = encode_client_frame(
        Opcode::Text,
        br#"{"event":"pusher:ping"}"#,
        [3, 1, 4, 1],
        true,
    );
    let mut buf = BytesMut::new();
    let now = cluster.now;
    for &byte in &frame {
        buf.extend_from_slice(&[byte]);
        cluster.shards[0].handle_input(a.key, a.socket_id, &mut buf, now);
    }
    assert_eq!(cluster.events(a), ["pusher:pong"]);
}

#[test]
fn quiet_connection_is_pinged_then_closed_with_4201() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.tick(Duration::from_secs(119));
    assert!(cluster.recv(a).is_empty());
    cluster.tick(Duration::from_secs(1));
    assert_eq!(cluster.events(a), ["pusher:ping"]);
    cluster.tick(Duration::from_secs(29));
    assert!(cluster.recv(a).is_empty());
    cluster.tick(Duration::from_secs(1));
    let got = cluster.recv(a);
    assert_eq!(got[0]["data"]["code"], 4201);
    assert_eq!(got[1], json!({"close": 4201}));
}

#[test]
fn answering_the_ping_keeps_the_connection_open() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.tick(Duration::from_secs(120));
    assert_eq!(cluster.events(a), ["pusher:ping"]);
    cluster.send(a, json!({"event": "pusher:pong", "data": {}}));
    cluster.tick(Duration::from_secs(30));
    assert!(cluster.recv(a).is_empty());
}

#[test]
fn slow_consumer_is_closed_with_4100_and_others_keep_receiving() {
    let mut cluster = Cluster::with(1, |c| c.server.send_buffer_bytes = 4096);
    let slow = cluster.connect(0);
    let fast = cluster.connect(0);
    cluster.subscribe(slow, "feed");
    cluster.subscribe(fast, "feed");
    let payload = "z".repeat(1000);
    let mut fast_got = 0;
    for _ in 0..10 {
        cluster.publish(0, "feed", &payload, None);
        fast_got += cluster.recv(fast).len();
    }
    assert_eq!(fast_got, 10);
    let got = cluster.recv(slow);
    let last_two = &got[got.len() - 2..];
    assert_eq!(last_two[0]["data"]["code"], 4100);
    assert_eq!(last_two[1], json!({"close": 4100}));
    assert_eq!(
        cluster.shards[0]
            .metrics()
            .slow_consumers_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn channel_queries_count_sockets_and_users_across_shards() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    let c = cluster.connect(1);
    cluster.join_presence(a, "presence-p", "u1");
    cluster.join_presence(b, "presence-p", "u1");
    cluster.join_presence(c, "presence-p", "u2");
    cluster.subscribe(a, "public-1");
    assert_eq!(
        cluster.stats(0, "presence-p"),
        ChannelStats {
            subscription_count: 3,
            user_count: 2
        }
    );
    let Answer::Channels(list) = cluster.query(
        1,
        Query::Channels {
            app: AppIdx(0),
            prefix: String::new(),
        },
    ) else {
        panic!()
    };
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["presence-p", "public-1"]);
    let Answer::Channels(list) = cluster.query(
        1,
        Query::Channels {
            app: AppIdx(0),
            prefix: "presence-".into(),
        },
    ) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
}

#[test]
fn disconnect_while_admission_is_in_flight_leaves_no_ghost() {
    let mut cluster = Cluster::new(2);
    let channel = channel_homed_on(1, "presence-g");
    let a = cluster.connect(0);
    let data = json!({"user_id": "ghost"}).to_string();
    let sig = hmac_hex(
        &hmac_key(SECRET),
        format!("{}:{channel}:{data}", a.socket_id).as_bytes(),
    );
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": format!("{KEY}:{sig}"), "channel_data": data}});
    let frame = encode_client_frame(Opcode::Text, msg.to_string().as_bytes(), [1, 2, 3, 4], true);
    let mut buf = BytesMut::from(&frame[..]);
    let now = cluster.now;
    cluster.shards[0].handle_input(a.key, a.socket_id, &mut buf, now);
    // The subscribe request is on its way to shard 1; the socket goes away before the answer.
    cluster.shards[0].handle_disconnect(a.key, a.socket_id, now);
    cluster.route();
    assert_eq!(cluster.stats(0, &channel), ChannelStats::default());
}

#[test]
fn shutdown_closes_every_connection_with_4200() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let now = cluster.now;
    cluster.shards[0].shutdown(now);
    let got = cluster.recv(a);
    assert_eq!(got[0]["data"]["code"], 4200);
    assert_eq!(got[1], json!({"close": 4200}));
}

impl Cluster {
    fn signin(&mut self, client: Client, user_data: &str) -> Vec<Value> {
        let sig = hmac_hex(
            &hmac_key(SECRET),
            format!("{}::user::{user_data}", client.socket_id).as_bytes(),
        );
        self.send(
            client,
            json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{sig}"), "user_data": user_data}}),
        );
        self.recv(client)
    }
}

#[test]
fn signin_succeeds_and_echoes_the_signed_user_data() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let reply = cluster.signin(a, r#"{"id":"u1","user_info":{"n":1}}"#);
    assert_eq!(reply[0]["event"], "pusher:signin_success");
    assert_eq!(
        inner(&reply[0]),
        json!({"user_data": r#"{"id":"u1","user_info":{"n":1}}"#})
    );
}

#[test]
fn signin_with_a_bad_signature_closes_with_4009() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.send(a, json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:00"), "user_data": r#"{"id":"u"}"#}}));
    let reply = cluster.recv(a);
    assert_eq!(reply[0]["data"]["code"], 4009);
    assert_eq!(reply[1], json!({"close": 4009}));
}

#[test]
fn server_to_user_channel_is_only_for_the_signed_in_user() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let reply = cluster.subscribe(a, "#server-to-user-u1");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["status"], 403);
    cluster.signin(a, r#"{"id":"u1"}"#);
    assert!(cluster.subscribe(a, "#server-to-user-u2")[0]["event"] == "pusher:subscription_error");
    let reply = cluster.subscribe(a, "#server-to-user-u1");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    cluster.publish(1, "#server-to-user-u1", "for you", None);
    assert_eq!(cluster.recv(a)[0]["data"], "for you");
}

#[test]
fn terminate_closes_every_socket_of_the_user_on_every_shard() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    let other = cluster.connect(1);
    cluster.signin(a, r#"{"id":"kicked"}"#);
    cluster.signin(b, r#"{"id":"kicked"}"#);
    cluster.signin(other, r#"{"id":"stays"}"#);
    let now = cluster.now;
    cluster.shards[0].terminate_user(AppIdx(0), UserId::parse("kicked", 128).unwrap(), now);
    cluster.route();
    for client in [a, b] {
        let got = cluster.recv(client);
        assert_eq!(got[0]["data"]["code"], 4009);
        assert_eq!(got[1], json!({"close": 4009}));
    }
    assert!(cluster.recv(other).is_empty());
}

#[test]
fn signin_timeout_closes_anonymous_connections_only() {
    let mut cluster = Cluster::with(1, |c| {
        c.apps[0].signin_timeout = Some(Duration::from_secs(30))
    });
    let anonymous = cluster.connect(0);
    let signed = cluster.connect(0);
    cluster.signin(signed, r#"{"id":"u"}"#);
    cluster.tick(Duration::from_secs(29));
    assert!(cluster.recv(anonymous).is_empty());
    cluster.tick(Duration::from_secs(1));
    assert_eq!(cluster.recv(anonymous)[1], json!({"close": 4009}));
    assert!(cluster.recv(signed).is_empty());
}

#[test]
fn watchlist_over_the_limit_is_refused_with_4302_without_closing() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let data = json!({"id": "u", "watchlist": ids}).to_string();
    let reply = cluster.signin(a, &data);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["data"]["code"], 4302);
}

#[test]
fn server_initiated_close_completes_when_the_peer_answers() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    let now = cluster.now;
    cluster.shards[0].shutdown(now);
    cluster.recv(a);
    assert!(!cluster.shards[0].peer_closed(a.key, a.socket_id));
    // Data still in flight from the client is ignored; its close frame completes the handshake.
    cluster.send(a, json!({"event": "pusher:ping"}));
    assert!(!cluster.shards[0].peer_closed(a.key, a.socket_id));
    cluster.send_raw(
        a,
        &encode_client_frame(Opcode::Close, &4200u16.to_be_bytes(), [1, 2, 3, 4], true),
    );
    assert!(cluster.shards[0].peer_closed(a.key, a.socket_id));
    assert!(cluster.recv(a).is_empty());
}

#[test]
fn cache_channel_replays_the_last_event_or_reports_a_miss() {
    let mut cluster = Cluster::new(2);
    let early = cluster.connect(0);
    let reply = cluster.subscribe(early, "cache-prices");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        reply[1],
        json!({"event": "pusher:cache_miss", "channel": "cache-prices"})
    );
    cluster.publish(1, "cache-prices", "first", None);
    cluster.publish(1, "cache-prices", "second", None);
    assert_eq!(cluster.recv(early).len(), 2);
    let late = cluster.connect(1);
    let reply = cluster.subscribe(late, "cache-prices");
    assert_eq!(reply[1]["data"], "second");
}

#[test]
fn cache_is_kept_without_subscribers_until_its_ttl() {
    let mut cluster = Cluster::with(1, |c| c.apps[0].cache_ttl = Duration::from_secs(60));
    cluster.publish(0, "private-cache-x", "kept", None);
    cluster.tick(Duration::from_secs(59));
    let a = cluster.connect(0);
    let reply = cluster.subscribe_private(a, "private-cache-x");
    assert_eq!(reply[1]["data"], "kept");
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-cache-x"}}),
    );
    cluster.tick(Duration::from_secs(1));
    let reply = cluster.subscribe_private(a, "private-cache-x");
    assert_eq!(reply[1]["event"], "pusher:cache_miss");
}

#[test]
fn presence_member_events_do_not_replace_the_cached_event() {
    let mut cluster = Cluster::new(1);
    let a = cluster.connect(0);
    cluster.join_presence(a, "presence-cache-room", "a");
    cluster.publish(0, "presence-cache-room", "news", None);
    let b = cluster.connect(0);
    cluster.join_presence(b, "presence-cache-room", "b");
    let c = cluster.connect(0);
    let reply = cluster.join_presence(c, "presence-cache-room", "c");
    assert_eq!(reply[1]["data"], "news");
}

fn with_webhooks(c: &mut Config) {
    c.apps[0].webhooks = vec![crate::core::options::WebhookConfig {
        url: "http://127.0.0.1:1/hook".into(),
        event_types: Vec::new(),
    }];
}

impl Cluster {
    fn webhooks(&mut self) -> Vec<Value> {
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

#[test]
fn apps_without_webhooks_produce_none() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    cluster.subscribe(a, "quiet");
    assert!(cluster.webhooks().is_empty());
}

#[test]
fn channel_occupied_once_and_vacated_after_the_delay() {
    let mut cluster = Cluster::with(2, with_webhooks);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe(a, "room");
    cluster.subscribe(b, "room");
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_occupied", "channel": "room"})]
    );
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    );
    cluster.send(
        b,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    );
    cluster.tick(Duration::from_secs(2));
    assert!(cluster.webhooks().is_empty());
    cluster.tick(Duration::from_secs(1));
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_vacated", "channel": "room"})]
    );
    cluster.subscribe(a, "room");
    assert_eq!(
        cluster.webhooks(),
        [json!({"name": "channel_occupied", "channel": "room"})]
    );
}

#[test]
fn reoccupied_within_the_delay_sends_neither_vacated_nor_occupied() {
    let mut cluster = Cluster::with(1, with_webhooks);
    let a = cluster.connect(0);
    cluster.subscribe(a, "flap");
    cluster.webhooks();
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "flap"}}),
    );
    cluster.tick(Duration::from_secs(1));
    cluster.subscribe(a, "flap");
    cluster.tick(Duration::from_secs(5));
    assert!(cluster.webhooks().is_empty());
}

#[test]
fn member_webhooks_are_per_user_and_removal_waits_for_the_delay() {
    let mut cluster = Cluster::with(2, with_webhooks);
    let a1 = cluster.connect(0);
    let a2 = cluster.connect(1);
    cluster.join_presence(a1, "presence-m", "alice");
    cluster.join_presence(a2, "presence-m", "alice");
    let hooks = cluster.webhooks();
    assert!(
        hooks.contains(
            &json!({"name": "member_added", "channel": "presence-m", "user_id": "alice"})
        )
    );
    assert_eq!(
        hooks.iter().filter(|h| h["name"] == "member_added").count(),
        1
    );
    cluster.send(
        a1,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-m"}}),
    );
    cluster.send(
        a2,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-m"}}),
    );
    cluster.tick(Duration::from_secs(2));
    assert!(cluster.webhooks().is_empty());
    cluster.tick(Duration::from_secs(1));
    let hooks = cluster.webhooks();
    assert!(
        hooks.contains(
            &json!({"name": "member_removed", "channel": "presence-m", "user_id": "alice"})
        )
    );
    assert!(hooks.contains(&json!({"name": "channel_vacated", "channel": "presence-m"})));
}

#[test]
fn a_user_back_within_the_delay_sends_neither_removed_nor_added() {
    let mut cluster = Cluster::with(1, with_webhooks);
    let stay = cluster.connect(0);
    let a = cluster.connect(0);
    cluster.join_presence(stay, "presence-r", "bob");
    cluster.join_presence(a, "presence-r", "alice");
    cluster.webhooks();
    cluster.send(
        a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-r"}}),
    );
    cluster.tick(Duration::from_secs(1));
    cluster.join_presence(a, "presence-r", "alice");
    cluster.tick(Duration::from_secs(5));
    assert!(cluster.webhooks().is_empty());
}

#[test]
fn client_event_and_cache_miss_webhooks() {
    let mut cluster = Cluster::with(1, with_webhooks);
    let a = cluster.connect(0);
    let b = cluster.connect(0);
    cluster.join_presence(a, "presence-c", "alice");
    cluster.join_presence(b, "presence-c", "bob");
    cluster.webhooks();
    cluster.send(
        a,
        json!({"event": "client-typing", "channel": "presence-c", "data": {"on": true}}),
    );
    assert_eq!(
        cluster.webhooks(),
        [
            json!({"name": "client_event", "channel": "presence-c", "event": "client-typing",
                "data": "{\"on\":true}", "socket_id": a.socket_id.to_string(), "user_id": "alice"})
        ]
    );
    cluster.subscribe(a, "cache-empty");
    let hooks = cluster.webhooks();
    assert!(
        hooks.contains(&json!({"name": "cache_miss", "channel": "cache-empty"})),
        "{hooks:?}"
    );
}

#[test]
fn subscription_count_webhooks_follow_the_count() {
    let mut cluster = Cluster::with(2, with_webhooks);
    let a = cluster.connect(0);
    let b = cluster.connect(1);
    cluster.subscribe(a, "counted");
    cluster.subscribe(b, "counted");
    let mut out = Vec::new();
    for shard in &mut cluster.shards {
        shard.take_webhooks(&mut out);
    }
    let counts: Vec<Value> = out
        .iter()
        .map(|(_, e)| e.to_json())
        .filter(|e| e["name"] == "subscription_count")
        .map(|e| e["subscription_count"].clone())
        .collect();
    assert_eq!(counts, [json!(1), json!(2)]);
}

#[test]
fn subscription_count_events_are_opt_in_and_reach_every_subscriber() {
    let mut cluster = Cluster::new(2);
    let a = cluster.connect(0);
    cluster.subscribe(a, "plain");
    let b = cluster.connect(1);
    cluster.subscribe(b, "plain");
    assert!(cluster.recv(a).is_empty());

    let mut cluster = Cluster::with(2, |c| c.apps[0].subscription_count_events = true);
    let a = cluster.connect(0);
    let reply = cluster.subscribe(a, "counted");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(reply[1]["event"], "pusher_internal:subscription_count");
    assert_eq!(inner(&reply[1]), json!({"subscription_count": 1}));
    let b = cluster.connect(1);
    let reply = cluster.subscribe(b, "counted");
    assert_eq!(inner(&reply[1]), json!({"subscription_count": 2}));
    assert_eq!(inner(&cluster.recv(a)[0]), json!({"subscription_count": 2}));
    cluster.send(
        b,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "counted"}}),
    );
    assert_eq!(inner(&cluster.recv(a)[0]), json!({"subscription_count": 1}));
    // Presence channels report members instead.
    cluster.join_presence(a, "presence-p", "u");
    assert!(cluster.recv(a).is_empty());
}

fn watchlist_event(frames: &[Value]) -> Option<Value> {
    frames
        .iter()
        .find(|f| f["event"] == "pusher_internal:watchlist_events")
        .map(inner)
}

#[test]
fn watchers_hear_when_a_user_comes_online_and_goes_offline() {
    let mut cluster = Cluster::new(2);
    let watcher = cluster.connect(0);
    let reply = cluster.signin(watcher, r#"{"id":"w","watchlist":["bob","carol"]}"#);
    assert_eq!(reply.len(), 1, "nobody is online yet: {reply:?}");
    let bob1 = cluster.connect(1);
    cluster.signin(bob1, r#"{"id":"bob"}"#);
    assert_eq!(
        watchlist_event(&cluster.recv(watcher)),
        Some(json!({"events": [{"name": "online", "user_ids": ["bob"]}]}))
    );
    let bob2 = cluster.connect(0);
    cluster.signin(bob2, r#"{"id":"bob"}"#);
    assert!(
        cluster.recv(watcher).is_empty(),
        "a second socket is not news"
    );
    let now = cluster.now;
    cluster.shards[1].handle_disconnect(bob1.key, bob1.socket_id, now);
    cluster.route();
    assert!(
        cluster.recv(watcher).is_empty(),
        "bob is still online through his other socket"
    );
    cluster.shards[0].handle_disconnect(bob2.key, bob2.socket_id, now);
    cluster.route();
    assert_eq!(
        watchlist_event(&cluster.recv(watcher)),
        Some(json!({"events": [{"name": "offline", "user_ids": ["bob"]}]}))
    );
}

#[test]
fn a_new_watcher_hears_at_once_who_is_already_online() {
    let mut cluster = Cluster::new(2);
    for (shard, id) in [(0, "a"), (1, "b")] {
        let client = cluster.connect(shard);
        cluster.signin(client, &format!(r#"{{"id":"{id}"}}"#));
    }
    let watcher = cluster.connect(1);
    let reply = cluster.signin(watcher, r#"{"id":"w","watchlist":["a","b","nobody"]}"#);
    let mut online: Vec<String> = reply
        .iter()
        .filter(|f| f["event"] == "pusher_internal:watchlist_events")
        .flat_map(|f| {
            inner(f)["events"][0]["user_ids"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    online.sort();
    assert_eq!(online, ["a", "b"]);
}

#[test]
fn a_watcher_that_left_is_no_longer_told() {
    let mut cluster = Cluster::new(1);
    let watcher = cluster.connect(0);
    cluster.signin(watcher, r#"{"id":"w","watchlist":["bob"]}"#);
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(watcher.key, watcher.socket_id, now);
    // The key is reused by a newcomer, who must not receive the old watcher's events.
    let newcomer = cluster.connect(0);
    assert_eq!(newcomer.key, watcher.key);
    let bob = cluster.connect(0);
    cluster.signin(bob, r#"{"id":"bob"}"#);
    assert!(cluster.recv(newcomer).is_empty());
}

fn with_rate_limits(c: &mut Config) {
    c.apps[0].rate_limits = Some(crate::core::options::RateLimits {
        connections_per_minute_per_ip: 3,
        client_events_per_minute_per_user: 3,
        subscriptions_per_connection: 2,
        api_requests_per_second: 5,
    });
}

#[test]
fn connection_attempts_per_ip_are_limited_per_minute() {
    let mut cluster = Cluster::with(2, with_rate_limits);
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let path = format!("/app/{KEY}");
    for shard in [0, 1, 0] {
        assert!(
            cluster.shards[shard]
                .connection_attempt(&path, ip, cluster.now)
                .is_ok()
        );
    }
    // The limit is per server, not per shard.
    let wait = cluster.shards[1]
        .connection_attempt(&path, ip, cluster.now)
        .unwrap_err();
    assert_eq!(wait, Duration::from_secs(20));
    assert!(
        cluster.shards[1]
            .connection_attempt(&path, other, cluster.now)
            .is_ok()
    );
    assert!(
        cluster.shards[0]
            .connection_attempt(&path, ip, cluster.now + Duration::from_secs(20))
            .is_ok()
    );
    // Apps without rate limits, and unknown keys, are not limited here.
    assert!(
        cluster.shards[0]
            .connection_attempt("/app/unknown", ip, cluster.now)
            .is_ok()
    );
}

#[test]
fn client_events_per_user_are_limited_across_the_users_sockets() {
    let mut cluster = Cluster::with(2, with_rate_limits);
    let tab1 = cluster.connect(0);
    let tab2 = cluster.connect(1);
    let listener = cluster.connect(0);
    for (client, user) in [(tab1, "same"), (tab2, "same"), (listener, "listener")] {
        cluster.join_presence(client, "presence-chat", user);
    }
    cluster.recv(listener);
    for tab in [tab1, tab2, tab1] {
        cluster.send(
            tab,
            json!({"event": "client-x", "channel": "presence-chat", "data": {}}),
        );
    }
    assert_eq!(cluster.recv(listener).len(), 3);
    cluster.send(
        tab2,
        json!({"event": "client-x", "channel": "presence-chat", "data": {}}),
    );
    assert_eq!(
        cluster
            .recv(tab2)
            .iter()
            .filter(|f| f["data"]["code"] == 4301)
            .count(),
        1
    );
    assert!(cluster.recv(listener).is_empty());
}

#[test]
fn rate_limits_cap_subscriptions_per_connection() {
    let mut cluster = Cluster::with(1, with_rate_limits);
    let a = cluster.connect(0);
    cluster.subscribe(a, "one");
    cluster.subscribe(a, "two");
    let reply = cluster.subscribe(a, "three");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["status"], 429);
}

fn with_jwt(required: bool) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.apps[0].jwt = Some(crate::core::options::JwtConfig {
            required,
            leeway_secs: 0,
            ..crate::core::options::JwtConfig::hs256(JWT_SECRET)
        });
    }
}

fn hs256(claims: &Value) -> String {
    crate::core::auth::jwt::sign_hs256(claims, JWT_SECRET.as_bytes())
}

#[test]
fn a_required_token_must_be_present_and_valid() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let path = format!("/app/{KEY}");
    let (frames, code) = cluster
        .try_connect_with_token(0, &path, Some("7"), None)
        .unwrap_err();
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(
        frames[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("token is required")
    );
    let expired = hs256(&json!({"sub": "u", "exp": NOW_UNIX - 1}));
    let (frames, _) = cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&expired))
        .unwrap_err();
    assert!(
        frames[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{frames:?}"
    );
    let good = hs256(
        &json!({"sub": "u1", "tenant_id": "t1", "actor": "user", "roles": ["admin"], "exp": NOW_UNIX + 60}),
    );
    let client = cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&good))
        .unwrap();
    let identity = cluster.shards[0].identity(client.key).unwrap();
    assert_eq!(identity.user_id.as_deref(), Some("u1"));
    assert_eq!(identity.tenant.as_deref(), Some("t1"));
    assert_eq!(identity.roles, ["admin"]);
}

#[test]
fn an_optional_token_may_be_absent_but_not_invalid() {
    let mut cluster = Cluster::with(1, with_jwt(false));
    let path = format!("/app/{KEY}");
    assert!(
        cluster
            .try_connect_with_token(0, &path, Some("7"), None)
            .is_ok()
    );
    let forged = hs256(&json!({"sub": "u", "exp": NOW_UNIX + 60})).replace('.', ".x");
    assert!(
        cluster
            .try_connect_with_token(0, &path, Some("7"), Some(&forged))
            .is_err()
    );
}

#[test]
fn a_live_socket_is_closed_with_4010_when_its_token_expires() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let token = hs256(&json!({"sub": "u", "exp": NOW_UNIX + 30}));
    let client = cluster
        .try_connect_with_token(0, &format!("/app/{KEY}"), Some("7"), Some(&token))
        .unwrap();
    cluster.recv(client);
    cluster.tick(Duration::from_secs(29));
    assert!(cluster.recv(client).is_empty());
    cluster.tick(Duration::from_secs(1));
    let got = cluster.recv(client);
    assert_eq!(got[0]["data"]["code"], 4010);
    assert_eq!(got[1], json!({"close": 4010}));
}

#[test]
fn revoking_a_token_closes_its_sockets_on_every_shard_and_refuses_it_later() {
    let mut cluster = Cluster::with(2, with_jwt(true));
    let path = format!("/app/{KEY}");
    let revoked = hs256(&json!({"sub": "u", "jti": "t-1", "exp": NOW_UNIX + 600}));
    let kept = hs256(&json!({"sub": "u", "jti": "t-2", "exp": NOW_UNIX + 600}));
    let a = cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&revoked))
        .unwrap();
    let b = cluster
        .try_connect_with_token(1, &path, Some("7"), Some(&revoked))
        .unwrap();
    let c = cluster
        .try_connect_with_token(1, &path, Some("7"), Some(&kept))
        .unwrap();
    for client in [a, b, c] {
        cluster.recv(client);
    }
    let now = cluster.now;
    cluster.shards[0].revoke_token(AppIdx(0), "t-1", NOW_UNIX + 600, NOW_UNIX, now);
    cluster.route();
    for client in [a, b] {
        let got = cluster.recv(client);
        assert_eq!(got[0]["data"]["message"], "token revoked");
        assert_eq!(got[1], json!({"close": 4009}));
    }
    assert!(cluster.recv(c).is_empty());
    assert!(
        cluster
            .try_connect_with_token(1, &path, Some("7"), Some(&revoked))
            .is_err()
    );
}

fn with_policies(c: &mut Config) {
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

#[test]
fn policies_refuse_a_validly_signed_cross_tenant_presence_subscription() {
    let mut cluster = Cluster::with(1, with_policies);
    let a = cluster.connect(0);
    let channel = "presence-tenant.t1.room.1";
    let join = |cluster: &mut Cluster, tenant: &str| {
        let data = json!({"user_id": "u", "user_info": {"tenant_id": tenant, "actor": "user"}})
            .to_string();
        let sig = hmac_hex(
            &hmac_key(SECRET),
            format!("{}:{channel}:{data}", a.socket_id).as_bytes(),
        );
        cluster.send(a, json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": format!("{KEY}:{sig}"), "channel_data": data}}));
        cluster.recv(a)
    };
    let reply = join(&mut cluster, "t2");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["status"], 403);
    assert!(
        reply[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("tenant-isolation")
    );
    let reply = join(&mut cluster, "t1");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn policies_use_the_jwt_identity_when_there_is_one() {
    let mut cluster = Cluster::with(1, |c| {
        with_policies(c);
        with_jwt(true)(c);
    });
    let token =
        hs256(&json!({"sub": "w1", "actor": "worker", "tenant_id": "t1", "exp": NOW_UNIX + 60}));
    let worker = cluster
        .try_connect_with_token(0, &format!("/app/{KEY}"), Some("7"), Some(&token))
        .unwrap();
    cluster.recv(worker);
    let reply = cluster.subscribe_private(worker, "private-user.w1");
    assert!(
        reply[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("personal"),
        "{reply:?}"
    );
    let reply = cluster.subscribe_private(worker, "private-tenant.t1.jobs");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    let reply = cluster.subscribe_private(worker, "private-tenant.t2.jobs");
    assert_eq!(reply[0]["data"]["status"], 403);
}

impl Cluster {
    fn audit(&mut self) -> Vec<AuditRecord> {
        let mut out = Vec::new();
        for shard in &mut self.shards {
            shard.take_audit(&mut out);
        }
        out
    }
}

fn summary(records: &[AuditRecord]) -> Vec<(String, AuditDecision, Option<String>)> {
    records
        .iter()
        .map(|r| (r.action.clone(), r.decision, r.rule.clone()))
        .collect()
}

#[test]
fn authorization_decisions_are_audited_with_rule_and_subject() {
    let mut cluster = Cluster::with(1, with_policies);
    let a = cluster.connect(0);
    cluster.audit();
    cluster.subscribe(a, "public-news");
    assert!(
        cluster.audit().is_empty(),
        "public channels involve no decision"
    );
    cluster.subscribe(a, "private-x");
    cluster.subscribe_private(a, "private-x");
    cluster.signin(a, r#"{"id":"alice"}"#);
    cluster.subscribe_private(a, "private-user.bob");
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [
            (
                "subscribe".into(),
                AuditDecision::Deny,
                Some("signature".into())
            ),
            (
                "subscribe".into(),
                AuditDecision::Allow,
                Some("signature".into())
            ),
            (
                "signin".into(),
                AuditDecision::Allow,
                Some("signature".into())
            ),
            (
                "subscribe".into(),
                AuditDecision::Deny,
                Some("personal".into())
            ),
        ]
    );
    let denied = &records[3];
    assert_eq!(denied.user.as_deref(), Some("alice"));
    assert_eq!(denied.channel.as_deref(), Some("private-user.bob"));
    assert_eq!(denied.remote_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        denied.socket.as_deref(),
        Some(a.socket_id.to_string().as_str())
    );
    assert!(records.iter().all(|r| r.app == "100001"));
}

#[test]
fn security_events_are_audited() {
    let mut cluster = Cluster::with(1, |c| {
        c.apps[0].allowed_origins = vec!["https://app.example.com".parse().unwrap()];
        c.apps[0].client_events_per_second = 1;
    });
    let request = ConnectRequest {
        path: "/app/test-key",
        protocol: Some("7"),
        origin: Some("https://evil.example.net"),
        remote: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        token: None,
        now_unix: NOW_UNIX,
    };
    let now = cluster.now;
    assert!(matches!(
        cluster.shards[0].accept_websocket(&request, now),
        Accept::Refused(..)
    ));
    let a = cluster.connect(0);
    cluster.subscribe_private(a, "private-c");
    cluster.audit();
    for _ in 0..2 {
        cluster.send(
            a,
            json!({"event": "client-x", "channel": "private-c", "data": {}}),
        );
    }
    cluster.send_raw(a, &[0x81, 0x01, b'x']);
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [
            (
                "rate_limit".into(),
                AuditDecision::Deny,
                Some("client_events".into())
            ),
            (
                "protocol".into(),
                AuditDecision::Deny,
                Some("rfc6455".into())
            ),
        ]
    );
    assert!(records.iter().all(|r| r.kind == AuditKind::Security));

    let mut cluster = Cluster::with(1, |c| {
        c.apps[0].allowed_origins = vec!["https://app.example.com".parse().unwrap()]
    });
    let now = cluster.now;
    cluster.shards[0].accept_websocket(&request, now);
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [(
            "origin".into(),
            AuditDecision::Deny,
            Some("allowed_origins".into())
        )]
    );
    assert_eq!(records[0].remote_ip.as_deref(), Some("10.1.2.3"));
}

#[test]
fn token_decisions_are_audited() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let path = format!("/app/{KEY}");
    let _ = cluster.try_connect_with_token(0, &path, Some("7"), None);
    let good = hs256(&json!({"sub": "u1", "tenant_id": "t1", "exp": NOW_UNIX + 60}));
    cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&good))
        .unwrap();
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [
            ("token".into(), AuditDecision::Deny, Some("jwt".into())),
            ("token".into(), AuditDecision::Allow, Some("jwt".into())),
        ]
    );
    assert_eq!(records[1].tenant.as_deref(), Some("t1"));
}

#[test]
fn policies_use_the_signed_in_users_info_without_jwt() {
    let mut cluster = Cluster::with(1, with_policies);
    let a = cluster.connect(0);
    cluster.signin(
        a,
        r#"{"id":"alice","user_info":{"tenant_id":"t1","actor":"user"}}"#,
    );
    let reply = cluster.subscribe_private(a, "private-tenant.t1.orders");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    let reply = cluster.subscribe_private(a, "private-tenant.t2.orders");
    assert_eq!(reply[0]["data"]["status"], 403);
    let reply = cluster.subscribe_private(a, "private-user.alice");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn query_ids_are_never_reused_even_when_queries_complete_at_once() {
    // On one shard every query completes inside the call that starts it; the shell may not
    // have collected the first answer when the second query starts.
    let mut cluster = Cluster::new(1);
    let now = cluster.now;
    let first = cluster.shards[0].start_query(
        Query::Channel {
            app: AppIdx(0),
            channel: name("a"),
        },
        now,
    );
    let second = cluster.shards[0].start_query(
        Query::Channel {
            app: AppIdx(0),
            channel: name("b"),
        },
        now,
    );
    assert_ne!(first, second);
    let answered: Vec<QueryId> = cluster.shards[0].take_answers().map(|(id, _)| id).collect();
    assert_eq!(answered, [first, second]);
}

/// Cluster mode, with the test standing in for the node's link to Redis.
mod cluster_mode {
    use super::*;
    use crate::core::cluster::scripts::{Cached, SyncReply};
    use crate::core::cluster::{ChannelSync, ClusterOut, Transitions};
    use crate::core::options::{ClusterConfig, RedisTarget};

    fn clustered(shard_count: usize) -> Cluster {
        let cluster = Cluster::with(shard_count, |c| {
            c.server.cluster = Some(ClusterConfig {
                redis: RedisTarget::parse("redis://127.0.0.1:6379").unwrap(),
                prefix: "test".into(),
                node_timeout: Duration::from_secs(30),
            });
        });
        cluster.shards[0]
            .state
            .cluster
            .as_ref()
            .unwrap()
            .set_up(true);
        cluster
    }

    impl Cluster {
        /// What the shards asked of the link.
        fn link(&mut self) -> Vec<ClusterOut> {
            let mut out = Vec::new();
            for shard in &mut self.shards {
                shard.take_cluster(&mut out);
            }
            out
        }

        /// The one channel report the shards made.
        fn sync(&mut self) -> Box<ChannelSync> {
            let mut syncs: Vec<_> = self
                .link()
                .into_iter()
                .filter_map(|out| match out {
                    ClusterOut::Sync(sync) => Some(sync),
                    _ => None,
                })
                .collect();
            assert_eq!(syncs.len(), 1);
            syncs.remove(0)
        }

        /// Answers a channel report as Redis would.
        fn synced(&mut self, sync: Box<ChannelSync>, reply: Option<SyncReply>) {
            let home = home_shard(sync.app, &sync.channel, self.shards.len());
            let msg = MeshMsg::ClusterSynced {
                sync,
                reply: reply.map(Box::new),
            };
            let now = self.now;
            self.shards[home].handle_mesh(msg, now);
            self.route();
        }

        /// An event coming back from Redis.
        fn redis_delivers(&mut self, channel: &str, frame: Bytes, remember: bool) {
            let channel = name(channel);
            let home = home_shard(AppIdx(0), &channel, self.shards.len());
            let msg = MeshMsg::Publish {
                app: AppIdx(0),
                channel,
                frame,
                except: None,
                published: self.now,
                remember,
            };
            let now = self.now;
            self.shards[home].handle_mesh(msg, now);
            self.route();
        }
    }

    fn event_frame(channel: &str, data: &str) -> Bytes {
        let json = json!({"event": "price", "channel": channel, "data": data}).to_string();
        frame::encode_frame(Opcode::Text, json.as_bytes())
    }

    fn reply(total: u64, cached: Option<Cached>) -> SyncReply {
        SyncReply {
            transitions: Transitions {
                total,
                ..Transitions::default()
            },
            cached,
            ..SyncReply::default()
        }
    }

    #[test]
    fn a_publish_is_delivered_only_when_redis_hands_it_back() {
        let mut cluster = clustered(2);
        let a = cluster.connect(1);
        let reply = cluster.subscribe(a, "room");
        assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
        let sync = cluster.sync();
        assert_eq!(sync.node_subscribers, 1);
        assert!(sync.waiting.is_none() && !sync.fetch_cache);

        cluster.publish(0, "room", "hi", None);
        assert!(cluster.recv(a).is_empty());
        let published = cluster.link();
        let [ClusterOut::Publish { frame, .. }] = &published[..] else {
            panic!("{published:?}")
        };
        cluster.redis_delivers("room", frame.clone(), true);
        assert_eq!(cluster.recv(a)[0]["data"], "hi");
    }

    #[test]
    fn a_cache_channel_this_node_has_no_copy_of_waits_for_redis() {
        let mut cluster = clustered(2);
        let a = cluster.connect(0);
        assert!(cluster.subscribe(a, "cache-prices").is_empty());
        let sync = cluster.sync();
        assert!(sync.fetch_cache && sync.waiting.is_some());
        let cached = Cached {
            frame: event_frame("cache-prices", "101"),
            remaining: Duration::from_secs(60),
        };
        cluster.synced(sync, Some(reply(1, Some(cached))));
        let got = cluster.recv(a);
        assert_eq!(got[0]["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(got[1]["data"], "101");

        // The node keeps the copy: the next subscriber is confirmed at once.
        let b = cluster.connect(1);
        let got = cluster.subscribe(b, "cache-prices");
        assert_eq!(got[1]["data"], "101");
        assert!(!cluster.sync().fetch_cache);

        // ... for as long as Redis would have kept it.
        cluster.tick(Duration::from_secs(1800 - 60 + 1));
        let c = cluster.connect(1);
        assert!(cluster.subscribe(c, "cache-prices").is_empty());
        assert!(cluster.sync().fetch_cache);
    }

    #[test]
    fn a_cache_channel_redis_has_nothing_for_is_a_miss() {
        let mut cluster = clustered(1);
        let a = cluster.connect(0);
        cluster.subscribe(a, "cache-empty");
        let sync = cluster.sync();
        cluster.synced(sync, Some(reply(1, None)));
        assert_eq!(
            cluster.events(a),
            [
                "pusher_internal:subscription_succeeded",
                "pusher:cache_miss"
            ]
        );
    }

    #[test]
    fn without_redis_a_waiting_cache_subscription_uses_what_the_node_has() {
        let mut cluster = clustered(1);
        let a = cluster.connect(0);
        cluster.subscribe(a, "cache-empty");
        let sync = cluster.sync();
        cluster.synced(sync, None);
        assert_eq!(
            cluster.events(a),
            [
                "pusher_internal:subscription_succeeded",
                "pusher:cache_miss"
            ]
        );
    }

    #[test]
    fn presence_notices_are_never_a_cache_channels_last_event() {
        let mut cluster = clustered(1);
        cluster.redis_delivers("presence-cache-room", event_frame("x", "news"), true);
        let notice =
            json!({"event": "pusher_internal:member_added", "channel": "presence-cache-room",
            "data": "{\"user_id\":\"b\"}"})
            .to_string();
        let notice = frame::encode_frame(Opcode::Text, notice.as_bytes());
        cluster.redis_delivers("presence-cache-room", notice, false);
        let a = cluster.connect(0);
        assert!(
            cluster
                .join_presence(a, "presence-cache-room", "a")
                .is_empty()
        );
        let sync = cluster.sync();
        assert!(!sync.fetch_cache, "the node has the news event");
        cluster.synced(sync, Some(reply(1, None)));
        let got = cluster.recv(a);
        assert_eq!(got[0]["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(got[1]["data"], "news");
    }

    fn user_reports(outs: Vec<ClusterOut>) -> Vec<(String, bool)> {
        outs.into_iter()
            .filter_map(|out| match out {
                ClusterOut::UserStatus { user, online, .. } => {
                    Some((user.as_str().to_owned(), online))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn watchlists_go_through_redis() {
        let mut cluster = clustered(2);
        let bob_1 = cluster.connect(1);
        cluster.signin(bob_1, r#"{"id":"bob"}"#);
        let bob_2 = cluster.connect(0);
        cluster.signin(bob_2, r#"{"id":"bob"}"#);
        let reports = user_reports(cluster.link());
        assert_eq!(
            reports,
            [("bob".to_owned(), true)],
            "the node's first socket only"
        );

        // A new watcher's online users come from Redis, not from this node.
        let watcher = cluster.connect(0);
        cluster.signin(watcher, r#"{"id":"w","watchlist":["bob","carol"]}"#);
        let mut asked: Vec<String> = cluster
            .link()
            .into_iter()
            .filter_map(|out| match out {
                ClusterOut::WhoIsOnline { users, .. } => Some(users),
                _ => None,
            })
            .flatten()
            .map(|u| u.as_str().to_owned())
            .collect();
        asked.sort();
        assert_eq!(asked, ["bob", "carol"]);
        assert_eq!(watchlist_event(&cluster.recv(watcher)), None);

        // Redis announces carol, online on another node.
        let carol = UserId::parse("carol", 64).unwrap();
        let home = user_home_shard(AppIdx(0), &carol, 2);
        let msg = MeshMsg::ClusterUserStatus {
            app: AppIdx(0),
            user: carol,
            online: true,
        };
        let now = cluster.now;
        cluster.shards[home].handle_mesh(msg, now);
        cluster.route();
        assert_eq!(
            watchlist_event(&cluster.recv(watcher)),
            Some(json!({"events": [{"name": "online", "user_ids": ["carol"]}]}))
        );

        // A resynchronization reports who is signed in here.
        for shard in 0..2 {
            cluster.shards[shard].handle_mesh(MeshMsg::ClusterDump, now);
        }
        let mut dumped: Vec<String> = cluster
            .link()
            .into_iter()
            .filter_map(|out| match out {
                ClusterOut::Dump { users, .. } => Some(users),
                _ => None,
            })
            .flatten()
            .map(|(_, u)| u.as_str().to_owned())
            .collect();
        dumped.sort();
        assert_eq!(dumped, ["bob", "w"]);

        // Only the node's last socket going is reported; watchers wait for Redis.
        cluster.shards[1].handle_disconnect(bob_1.key, bob_1.socket_id, now);
        cluster.route();
        assert!(user_reports(cluster.link()).is_empty());
        cluster.shards[0].handle_disconnect(bob_2.key, bob_2.socket_id, now);
        cluster.route();
        assert_eq!(user_reports(cluster.link()), [("bob".to_owned(), false)]);
        assert_eq!(watchlist_event(&cluster.recv(watcher)), None);
    }

    #[test]
    fn a_full_cluster_roster_refuses_the_join_and_gives_the_count_back() {
        let mut cluster = clustered(1);
        let a = cluster.connect(0);
        cluster.join_presence(a, "presence-room", "a");
        let sync = cluster.sync();
        assert_eq!(sync.node_subscribers, 1);
        let refused = SyncReply {
            refused: true,
            ..SyncReply::default()
        };
        cluster.synced(sync, Some(refused));
        let got = cluster.recv(a);
        assert_eq!(got[0]["event"], "pusher:subscription_error");
        assert_eq!(got[0]["data"]["type"], "LimitReached");
        assert_eq!(cluster.sync().node_subscribers, 0);
    }
}
