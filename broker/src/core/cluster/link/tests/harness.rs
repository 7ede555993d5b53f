//! A link under test: Redis is the test, which reads the commands the link writes and
//! scripts the replies; the clock moves only when the test says so.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::core::app::Revocation;
use crate::core::channel::ChannelName;
use crate::core::cluster::link::{AppOptions, Credentials, Effect, Link, LinkOptions, NodeView};
use crate::core::cluster::resp::{Decoder, Value};
use crate::core::cluster::scripts::Script;
use crate::core::cluster::{ChannelSync, ClusterOut, NodeId, PresenceOp, ResyncRound, Transitions};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::shard::{Join, MeshMsg, ShardId};
use crate::core::wire::Wire;

pub const SHARDS: usize = 2;
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const APP: AppIdx = AppIdx(0);
/// What the test node's wall clock says.
pub const UNIX_NOW: u64 = 1_800_000_000;

/// What the link reads of its node, as the test sets it.
#[derive(Default)]
pub struct Node {
    pub connections: RefCell<usize>,
    pub revoked: RefCell<Vec<(Revocation, u64)>>,
}

impl NodeView for Rc<Node> {
    fn connections(&self, _app: AppIdx) -> usize {
        *self.connections.borrow()
    }

    fn revocations(&self, _app: AppIdx) -> Vec<(Revocation, u64)> {
        self.revoked.borrow().clone()
    }

    fn unix_time(&self) -> u64 {
        UNIX_NOW
    }
}

pub fn options() -> LinkOptions {
    LinkOptions {
        node: node_id("n1"),
        prefix: "rc".into(),
        credentials: None,
        db: 0,
        heartbeat_interval: HEARTBEAT,
        dead_after: Duration::from_secs(5),
        shards: SHARDS,
        apps: vec![AppOptions {
            id: "app1".into(),
            cache_ttl: Duration::from_secs(30),
            max_user_id_chars: 64,
            wires: crate::core::wire::Wires::ALL,
        }],
        seed: 7,
    }
}

pub fn node_id(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

pub fn credentials() -> Credentials {
    Credentials {
        username: None,
        password: "hunter2".into(),
    }
}

/// One command the link wrote, as Redis reads it.
#[derive(Clone, Debug)]
pub struct Sent(Vec<Bytes>);

impl Sent {
    /// The script's name for `EVALSHA`, else the command itself (`PUBLISH`, `HELLO`...).
    pub fn name(&self) -> String {
        let word = self.text(0);
        if word != "EVALSHA" {
            return word;
        }
        let sha = self.text(1);
        Script::ALL
            .into_iter()
            .find(|s| s.sha1() == sha)
            .map_or(sha, |s| format!("{s:?}"))
    }

    /// A script's `ARGV[i]`, as Lua numbers them (`ARGV[1]` is the prefix).
    pub fn argv(&self, i: usize) -> String {
        assert_eq!(self.text(0), "EVALSHA");
        self.text(2 + i)
    }

    /// Argument `i`, the command being 0.
    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.0[i]).into_owned()
    }

    pub fn bytes(&self, i: usize) -> Bytes {
        self.0[i].clone()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The names of `sent`, in order.
pub fn names(sent: &[Sent]) -> Vec<String> {
    sent.iter().map(Sent::name).collect()
}

pub struct Test {
    pub link: Link,
    pub now: Instant,
    pub node: Rc<Node>,
    /// The epoch the scripted Redis holds.
    pub epoch: &'static str,
}

impl Test {
    /// A link just started: it has asked for a connection.
    pub fn new() -> Self {
        Self::with(options())
    }

    pub fn with(options: LinkOptions) -> Self {
        let node = Rc::new(Node::default());
        let now = Instant::now();
        let link = Link::new(options, Box::new(node.clone()), now);
        Self {
            link,
            now,
            node,
            epoch: "e1",
        }
    }

    /// A link connected and synchronized, with nothing left to read.
    pub fn up() -> Self {
        let mut test = Self::new();
        test.connect_and_sync(Vec::new());
        test.effects();
        test.mesh();
        test
    }

    pub fn effects(&mut self) -> Vec<Effect> {
        std::iter::from_fn(|| self.link.poll_effect()).collect()
    }

    pub fn mesh(&mut self) -> Vec<(ShardId, MeshMsg)> {
        std::iter::from_fn(|| self.link.poll_mesh()).collect()
    }

    /// Every command written since the last call.
    pub fn sent(&mut self) -> Vec<Sent> {
        let mut buf = BytesMut::new();
        self.link.poll_transmit(&mut buf);
        let mut decoder = Decoder::default();
        let mut sent = Vec::new();
        while let Some(value) = decoder.decode(&mut buf).unwrap() {
            let args = value.into_array().unwrap();
            sent.push(Sent(
                args.into_iter()
                    .map(|a| a.as_bytes().unwrap().clone())
                    .collect(),
            ));
        }
        assert!(buf.is_empty());
        sent
    }

    pub fn reply(&mut self, value: Value) {
        self.link.handle_value(value, self.now);
    }

    /// Replies to each of `sent` (but `SUBSCRIBE`, whose confirmation is a push) as a
    /// Redis that does what is asked and has nothing to say.
    pub fn answer(&mut self, sent: &[Sent]) {
        for command in sent {
            if command.name() != "SUBSCRIBE" {
                let reply = self.plain_reply(command);
                self.reply(reply);
            }
        }
    }

    fn plain_reply(&self, command: &Sent) -> Value {
        match command.name().as_str() {
            "HELLO" => Value::Map(Vec::new()),
            "SELECT" => Value::Simple(Bytes::from_static(b"OK")),
            "SCRIPT" => bulk(&Script::Sync.sha1()),
            "Epoch" => bulk(self.epoch),
            "Heartbeat" => heartbeat_reply(false, 1, &[]),
            "Sync" => sync_reply(0, 0, 1),
            "Channel" => array(vec![int(0), int(0)]),
            "HMGET" => array((2..command.len()).map(|_| Value::Null).collect()),
            "PUBLISH" | "PublishCached" | "Record" | "User" => int(1),
            _ => array(Vec::new()),
        }
    }

    /// Moves the clock by `by`, calling the link at each timeout on the way.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.link.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.link.handle_timeout(self.now);
        }
        self.now = until;
    }

    /// Makes the connection the link asked for; returns the handshake it wrote.
    pub fn connect(&mut self) -> Vec<Sent> {
        let effects = self.effects();
        assert!(
            effects.iter().any(|e| matches!(e, Effect::Connect)),
            "{effects:?}"
        );
        self.link.handle_connected(self.now);
        self.sent()
    }

    /// Connects, answers the handshake, hands in the shards' dumps (`channels` from the
    /// first shard) and answers the resynchronization; returns what the resynchronization
    /// wrote.
    pub fn connect_and_sync(&mut self, channels: Vec<ChannelSync>) -> Vec<Sent> {
        let handshake = self.connect();
        self.answer(&handshake);
        let resync = self.dump(channels);
        self.answer(&resync);
        assert!(self.link.is_up());
        resync
    }

    /// Answers the dump requests the shards got (`channels` from the first shard); returns
    /// what the resynchronization wrote.
    pub fn dump(&mut self, channels: Vec<ChannelSync>) -> Vec<Sent> {
        let asked = dump_requests(&self.mesh());
        assert_eq!(
            asked.iter().map(|&(shard, _)| shard).collect::<Vec<_>>(),
            (0..SHARDS).collect::<Vec<_>>()
        );
        let mut channels = Some(channels);
        for (_, round) in asked {
            self.link.handle_out(
                ClusterOut::Dump {
                    round,
                    channels: channels.take().unwrap_or_default(),
                    users: Vec::new(),
                    resources: Vec::new(),
                },
                self.now,
            );
        }
        self.sent()
    }

    /// The connection breaks; the link has not given it up itself.
    pub fn lose(&mut self) {
        self.link.handle_lost(self.now);
    }
}

/// The dump requests among `mesh`: which shard, for which round.
pub fn dump_requests(mesh: &[(ShardId, MeshMsg)]) -> Vec<(ShardId, ResyncRound)> {
    mesh.iter()
        .filter_map(|(shard, msg)| match msg {
            MeshMsg::ClusterDump { round } => Some((*shard, *round)),
            _ => None,
        })
        .collect()
}

pub fn bulk(text: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

pub fn int(n: i64) -> Value {
    Value::Integer(n)
}

pub fn array(items: Vec<Value>) -> Value {
    Value::Array(items)
}

pub fn error(text: &str) -> Value {
    Value::Error(Bytes::copy_from_slice(text.as_bytes()))
}

/// A pub/sub message on the events channel.
pub fn message(payload: Bytes) -> Value {
    Value::Push(vec![
        bulk("message"),
        bulk("rc:events"),
        Value::Bulk(payload),
    ])
}

pub fn heartbeat_reply(new: bool, alive: i64, elsewhere: &[i64]) -> Value {
    array(vec![
        int(i64::from(new)),
        int(alive),
        int(0),
        array(Vec::new()),
        array(elsewhere.iter().map(|n| int(*n)).collect()),
    ])
}

pub fn sync_reply(member: i64, occupied: i64, total: i64) -> Value {
    array(vec![
        int(0),
        int(member),
        int(occupied),
        int(total),
        array(Vec::new()),
        array(Vec::new()),
    ])
}

pub fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name, 200).unwrap()
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id, 64).unwrap()
}

/// A home shard's report of `name`'s subscribers on this node.
pub fn report(name: &str, subscribers: u32) -> ChannelSync {
    ChannelSync {
        app: APP,
        channel: channel(name),
        node_subscribers: subscribers,
        op: None,
        waiting: None,
        fetch_cache: false,
        local: Transitions::default(),
    }
}

/// A home shard's report of `who` joining presence channel `name`, with the socket that
/// waits for the cluster's roster.
pub fn join(name: &str, who: &str) -> ChannelSync {
    ChannelSync {
        op: Some(PresenceOp::Join {
            user: user(who),
            info: None,
            added: Bytes::from_static(b"added"),
            removed: Bytes::from_static(b"removed"),
            max_members: 0,
        }),
        waiting: Some(Join {
            shard: 1,
            conn: 3,
            socket_id: SocketId::parse("1.2").unwrap(),
            app: APP,
            channel: channel(name),
            member: None,
            wire: Wire::Pusher,
            recover_as: None,
            replay_after: None,
        }),
        ..report(name, 1)
    }
}
