//! Cluster mode, with the test standing in for the node's link to Redis.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::harness::*;
use crate::core::cluster::scripts::{Cached, SyncReply};
use crate::core::cluster::{ChannelSync, ClusterOut, Transitions};
use crate::core::ids::{AppIdx, UserId};
use crate::core::options::{ClusterConfig, RedisTarget};
use crate::core::shard::*;
use crate::core::wire::Frames;
use crate::core::ws::frame::{self, Opcode};

fn clustered(shard_count: usize) -> Cluster {
    clustered_with(shard_count, |_| {})
}

/// A node of a cluster whose link is up, its config tweaked by `tweak`.
fn clustered_with(
    shard_count: usize,
    tweak: impl FnOnce(&mut crate::core::options::Config),
) -> Cluster {
    let cluster = Cluster::with(shard_count, |c| {
        c.server.cluster = Some(ClusterConfig {
            redis: RedisTarget::parse("redis://127.0.0.1:6379").unwrap(),
            prefix: "test".into(),
            node_timeout: Duration::from_secs(30),
        });
        tweak(c);
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
            frames: Frames::from_pusher(frame, crate::core::wire::Wires::ALL),
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

    let confirmation = cluster
        .publish(0, "room", "hi", None)
        .expect("a cluster confirms");
    assert!(cluster.recv(a).is_empty());
    let published = cluster.link();
    let [
        ClusterOut::Publish {
            frames,
            confirm: Some(confirm),
            ..
        },
    ] = &published[..]
    else {
        panic!("{published:?}")
    };
    assert_eq!(
        *confirm,
        ReplyTo {
            shard: 0,
            query: confirmation
        }
    );
    assert_eq!(
        cluster.shards[0].take_answers().count(),
        0,
        "not before Redis"
    );
    let now = cluster.now;
    let accepted = MeshMsg::Answer {
        query: confirmation,
        part: AnswerPart::Applied,
    };
    cluster.shards[0].handle_mesh(accepted, now);
    let answers: Vec<_> = cluster.shards[0].take_answers().collect();
    assert_eq!(answers, [(confirmation, Answer::Applied)]);
    cluster.redis_delivers("room", frames.pusher().clone(), true);
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
    let notice = json!({"event": "pusher_internal:member_added", "channel": "presence-cache-room",
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
            ClusterOut::UserStatus { user, online, .. } => Some((user.as_str().to_owned(), online)),
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
        cluster.shards[shard].handle_mesh(MeshMsg::ClusterDump { round: 1 }, now);
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

#[test]
fn events_from_redis_are_kept_as_history_and_replayed_on_this_node() {
    let mut cluster = clustered_with(2, |c| {
        c.apps[0].history = Some(crate::core::options::HistoryConfig {
            channels: vec!["private-chat.*".into()],
            ..Default::default()
        });
    });
    let alice = cluster.connect(0);
    cluster.signin(alice, r#"{"id":"alice"}"#);
    let reply = cluster.subscribe_private(alice, "private-chat.1");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    let now = cluster.now;
    cluster.shards[0].handle_disconnect(alice.key, alice.socket_id, now);
    cluster.route();
    for data in ["one", "two"] {
        cluster.redis_delivers("private-chat.1", event_frame("private-chat.1", data), true);
    }
    let query = Query::History {
        app: AppIdx(0),
        channel: name("private-chat.1"),
        since: None,
        limit: 10,
    };
    let Answer::History(page) = cluster.query(1, query) else {
        panic!("a history query is answered by this node's home shard, not Redis");
    };
    let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2]);
    let back = cluster.connect(1);
    cluster.signin(back, r#"{"id":"alice"}"#);
    let got = cluster.subscribe_private(back, "private-chat.1");
    let names: Vec<&str> = got.iter().map(|f| f["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pusher_internal:subscription_succeeded",
            "ringcast:replay_start",
            "price",
            "price",
            "ringcast:replay_end"
        ]
    );
    assert_eq!(got[2]["data"], "one");
    assert_eq!(got[3]["data"], "two");
}
