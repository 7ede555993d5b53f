//! The Lua scripts that keep the cluster's shared state in Redis, and the readers of their
//! replies.
//!
//! Keys, with `P` the configured prefix, `A` an app id and `C` a channel name (neither can
//! contain `:` or a newline):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:nodes` | sorted set | node id → last heartbeat (ms, Redis clock) |
//! | `P:epoch` | string | a random value set once; a new one means Redis lost its data |
//! | `P:c:A` | hash | channel → subscribers on every node |
//! | `P:cn:A:C` | hash | node → subscribers of `C` on that node |
//! | `P:m:A:C` | hash | user → `user_info` JSON (the cluster roster) |
//! | `P:mr:A:C` | hash | user → how many nodes have the user in `C` |
//! | `P:cache:A:C` | string | a cache channel's last event (its envelope), expiring after the app's `cache_ttl_secs` |
//! | `P:u:A` | hash | user → how many nodes have a socket signed in as the user (for watchlists) |
//! | `P:k:A` | hash | node → connections of app `A` on that node (refreshed by every heartbeat) |
//! | `P:wh` | sorted set | webhook events waiting to be sent: `SEQ\nK\nA\nC\nUSER` → when due (ms, Redis clock), `K` being `o` occupied, `v` vacated, `a` member added, `r` member removed |
//! | `P:whk` | hash | `K\nA\nC\nUSER` → its member of `P:wh`, to cancel a pending vacated or member removed |
//! | `P:whseq` | string | a counter, so events due at the same time keep their order |
//! | `P:res:A` | hash | `TYPE\nID` → a policy resource as JSON (what a node started later loads) |
//! | `P:resinit:A` | string | set once some node has given Redis its resources: from then on Redis's copy decides |
//! | `P:rev:A` | hash | revocation (`jti:{id}` or `sub:{user}`) → until when (Unix seconds) |
//! | `P:n:NODE` | hash | what a node contributed: `c\nA\nC` → count, `m\nA\nC\nUSER` → the `member_removed` message to publish if the node dies, `u\nA\nUSER` → the offline message to publish if the node dies, `k\nA` → its connections of app `A` |
//!
//! Every script runs atomically, so the node whose call makes a transition happen is the only
//! one that learns of it.
//!
//! Webhooks for cluster-wide transitions are queued in Redis by the script that sees the
//! transition, `channel_vacated` and `member_removed` due [`LEAVE_DELAY_MS`] later and
//! cancelled when the channel or the user comes back within it, on whichever node. Every node
//! claims due events ([`Script::Due`]); each is claimed once, so it is sent once, even if the
//! node that caused it has died meanwhile.

use std::sync::LazyLock;

use super::Transitions;
use super::resp::Value;
use crate::core::ids::UserId;
use crate::core::webhook::{LEAVE_DELAY, WebhookKind};

/// [`LEAVE_DELAY`] in milliseconds, as the scripts queue leave events with it.
pub const LEAVE_DELAY_MS: u64 = LEAVE_DELAY.as_millis() as u64;

/// The Redis clock in milliseconds, and the queueing and cancelling of webhook events (shared
/// by the scripts that see transitions or read the clock), after the one definition of
/// `LEAVE_DELAY_MS` they read.
const WEBHOOK_FNS: &str = include_str!("scripts/webhook_fns.lua");

/// Removes one entry of a node's contribution, appending what became vacant or left the
/// cluster to `out` as `{kind, app, channel, user}` (needs [`WEBHOOK_FNS`]).
const DROP_ENTRY: &str = include_str!("scripts/drop_entry.lua");

/// One of the cluster's Lua scripts. Each connection loads them all (`SCRIPT LOAD`) before
/// anything else and then calls them by SHA-1, which is computed here rather than read back
/// from the replies, so calls can follow the loads in the same pipeline.
///
/// Every script takes the key prefix as `ARGV[1]` and no keys (each derives its key names
/// from the prefix); the ARGV below follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Applies a channel's new state on one node.
    ///
    /// ARGV: node, app, channel, node subscribers, op (`""`, `join`, `leave`), user,
    /// user_info (`""` for none), added message, removed message, max members (0: no limit),
    /// events channel, quiet (`1`: publish nothing), want roster (`1`), want cache (`1`).
    ///
    /// Returns `{refused, member, occupied, total, roster, cached}`: `refused` 1 when a join
    /// found the roster full; `member` 1 / -1 when the user joined / left the cluster;
    /// `occupied` 1 / -1 when the channel became occupied / vacant; `total` the cluster's
    /// subscriber count; `roster` user, info, user, info, ... when asked for; `cached` the
    /// cache channel's last event and its remaining time to live in milliseconds, when asked
    /// for and there is one.
    Sync,
    /// Records this node's heartbeat and connection counts, and removes every node silent for
    /// longer than the timeout.
    ///
    /// ARGV: node, timeout (ms), events channel, then app id and this node's connections of
    /// that app, for every app. Returns `{new, alive, dead, removed, elsewhere}`: `new` 1 when
    /// this node was not registered (first beat, or it was itself declared dead: it must then
    /// report its state again); `alive` the nodes left; `dead` how many were removed;
    /// `removed` the `{kind, app, channel, user}` transitions; `elsewhere` each app's
    /// connections on the other live nodes, in ARGV's order.
    Heartbeat,
    /// Removes a node's whole contribution (a graceful shutdown).
    ///
    /// ARGV: node, events channel. Returns the transitions like [`Script::Heartbeat`].
    Leave,
    /// After a resynchronization re-reported everything this node has: removes what it had
    /// reported before but has no longer (sockets that left while Redis was out of reach).
    ///
    /// ARGV: node, events channel, quiet, then the fields to keep. Returns the transitions
    /// like [`Script::Heartbeat`].
    Sweep,
    /// Sets the epoch if there is none and returns it.
    ///
    /// ARGV: a fresh random value.
    Epoch,
    /// One channel's cluster-wide counts. ARGV: app, channel. Returns `{subscribers, users}`.
    Channel,
    /// Occupied channels. ARGV: app, name prefix. Returns `{name, subscribers, users, ...}`.
    Channels,
    /// Publishes an event of a cache channel and keeps it as the channel's last event, in one
    /// step, so that the kept event is always the last one every node delivered.
    ///
    /// ARGV: app, channel, time to live (ms), events channel, envelope.
    PublishCached,
    /// A signed-in user's first socket on this node arrived, or its last one left.
    ///
    /// ARGV: node, app, user, online (`1` / `0`), events channel, online message, offline
    /// message, quiet (`1`: publish nothing). The online (offline) message is published when
    /// the user comes online on the first node (goes offline on the last one); the offline
    /// one is kept so that another node can publish it if this one dies.
    User,
    /// Claims the webhook events that are due: removes them from the queue and returns them,
    /// so each is sent by exactly one node.
    ///
    /// ARGV: most events to claim. Returns `{K\nA\nC\nUSER, ...}` in due order.
    Due,
    /// Publishes a command and, in the same step, keeps what it changes for nodes started
    /// later: a policy resource (`kind` `res`: set, or deleted when the value is empty) or a
    /// token revocation (`kind` `rev`: kept until the later of the two times it was revoked
    /// until).
    ///
    /// ARGV: kind, app, field (`TYPE\nID`, or the revocation key), value, events channel, message.
    Record,
    /// Resynchronizes an app's policy resources: if no node has given Redis its resources yet
    /// (a new cluster, or Redis restarted empty), this node's are stored; then Redis's copy is
    /// returned, and it decides.
    ///
    /// ARGV: app, then `TYPE\nID`, JSON for each resource this node has. Returns
    /// `{TYPE\nID, JSON, ...}`.
    Resources,
    /// Resynchronizes an app's token revocations (the union of every node's, while they
    /// matter): stores this node's, forgets those past their time, returns the rest.
    ///
    /// ARGV: app, now (Unix seconds), then revocation key, until for each revocation this node
    /// has. Returns `{id, until, ...}`.
    Revoked,
}

/// Every script's text, built once: [`Script::source`] hands out `'static` slices of it.
static SOURCES: LazyLock<[String; Script::ALL.len()]> =
    LazyLock::new(|| Script::ALL.map(Script::assemble));

impl Script {
    /// Every script, in declaration order (`script as usize` indexes this).
    pub const ALL: [Script; 13] = [
        Script::Sync,
        Script::Heartbeat,
        Script::Leave,
        Script::Sweep,
        Script::Epoch,
        Script::Channel,
        Script::Channels,
        Script::PublishCached,
        Script::User,
        Script::Due,
        Script::Record,
        Script::Resources,
        Script::Revoked,
    ];

    /// The Lua text, as loaded into Redis.
    pub fn source(self) -> &'static str {
        &SOURCES[self as usize]
    }

    /// The name Redis gives the script: the hex SHA-1 of its text.
    pub fn sha1(self) -> String {
        sha1_hex(self.source().as_bytes())
    }

    /// The script's own file, and what it needs before it.
    fn parts(self) -> (&'static str, Needs) {
        match self {
            Script::Sync => (include_str!("scripts/sync.lua"), Needs::WebhookFns),
            Script::Heartbeat => (include_str!("scripts/heartbeat.lua"), Needs::DropEntry),
            Script::Leave => (include_str!("scripts/leave.lua"), Needs::DropEntry),
            Script::Sweep => (include_str!("scripts/sweep.lua"), Needs::DropEntry),
            Script::Epoch => (include_str!("scripts/epoch.lua"), Needs::Nothing),
            Script::Channel => (include_str!("scripts/channel.lua"), Needs::Nothing),
            Script::Channels => (include_str!("scripts/channels.lua"), Needs::Nothing),
            Script::PublishCached => (include_str!("scripts/publish_cached.lua"), Needs::Nothing),
            Script::User => (include_str!("scripts/user.lua"), Needs::Nothing),
            Script::Due => (include_str!("scripts/due.lua"), Needs::WebhookFns),
            Script::Record => (include_str!("scripts/record.lua"), Needs::Nothing),
            Script::Resources => (include_str!("scripts/resources.lua"), Needs::Nothing),
            Script::Revoked => (include_str!("scripts/revoked.lua"), Needs::Nothing),
        }
    }

    fn assemble(self) -> String {
        let (body, needs) = self.parts();
        let mut text = String::new();
        if matches!(needs, Needs::WebhookFns | Needs::DropEntry) {
            text.push_str(&format!("local LEAVE_DELAY_MS = {LEAVE_DELAY_MS}\n"));
            text.push_str(WEBHOOK_FNS);
        }
        if matches!(needs, Needs::DropEntry) {
            text.push_str(DROP_ENTRY);
        }
        text.push_str(body);
        text
    }
}

/// What a script's own text needs before it.
#[derive(Clone, Copy)]
enum Needs {
    Nothing,
    /// `LEAVE_DELAY_MS` and [`WEBHOOK_FNS`].
    WebhookFns,
    /// `LEAVE_DELAY_MS`, [`WEBHOOK_FNS`] and [`DROP_ENTRY`].
    DropEntry,
}

fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The node-index field of a channel count (what [`Script::Sweep`] keeps).
pub fn count_field(app: &str, channel: &str) -> String {
    format!("c\n{app}\n{channel}")
}

/// The node-index field of a signed-in user (what [`Script::Sweep`] keeps).
pub fn user_field(app: &str, user: &str) -> String {
    format!("u\n{app}\n{user}")
}

/// The node-index field of a presence member (what [`Script::Sweep`] keeps).
pub fn member_field(app: &str, channel: &str, user: &str) -> String {
    format!("m\n{app}\n{channel}\n{user}")
}

/// The reply to [`Script::Sync`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReply {
    /// A join found the roster full.
    pub refused: bool,
    /// Transitions this call caused.
    pub transitions: Transitions,
    /// The roster, when asked for.
    pub roster: super::Roster,
    /// The cache channel's last event, when asked for and there is one.
    pub cached: Option<Cached>,
}

/// A cache channel's last event as Redis keeps it.
#[derive(Debug, PartialEq, Eq)]
pub struct Cached {
    /// The complete WebSocket frame.
    pub frame: bytes::Bytes,
    /// How long Redis keeps it still.
    pub remaining: std::time::Duration,
}

/// Reads a [`Script::Sync`] reply; `None` if it is not shaped like one.
pub fn read_sync(reply: Value, user: Option<&UserId>, max_user_chars: usize) -> Option<SyncReply> {
    let mut parts = reply.into_array()?.into_iter();
    let refused = parts.next()?.as_int()? == 1;
    let member = parts.next()?.as_int()?;
    let occupied = parts.next()?.as_int()?;
    let total = parts.next()?.as_int()?.max(0) as u64;
    let roster = read_roster(parts.next()?, max_user_chars)?;
    let cached = parts.next().and_then(read_cached);
    let mut transitions = Transitions {
        occupied: match occupied {
            1 => Some(true),
            -1 => Some(false),
            _ => None,
        },
        total,
        ..Transitions::default()
    };
    if let Some(user) = user {
        match member {
            1 => transitions.added.push(user.clone()),
            -1 => transitions.removed.push(user.clone()),
            _ => {}
        }
    }
    Some(SyncReply {
        refused,
        transitions,
        roster,
        cached,
    })
}

/// Reads `{envelope, ttl}`; `None` for an empty array or anything unreadable.
fn read_cached(value: Value) -> Option<Cached> {
    let mut parts = value.into_array()?.into_iter();
    let envelope = parts.next()?.as_bytes()?.clone();
    let remaining = parts.next()?.as_int()?;
    let super::Envelope::Event { frame, .. } = super::Envelope::decode(&envelope).ok()? else {
        return None;
    };
    Some(Cached {
        frame,
        remaining: std::time::Duration::from_millis(remaining.max(0) as u64),
    })
}

fn read_roster(value: Value, max_user_chars: usize) -> Option<super::Roster> {
    let items = match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect::<Vec<_>>(),
        other => other.into_array()?,
    };
    let mut roster = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(user), Some(info)) = (items.next(), items.next()) {
        let user = std::str::from_utf8(user.as_bytes()?).ok()?;
        let Ok(user) = UserId::parse(user, max_user_chars) else {
            continue;
        };
        let info = std::str::from_utf8(info.as_bytes()?).ok()?;
        let info = (!info.is_empty()).then(|| std::sync::Arc::from(info));
        roster.push((user, info));
    }
    Some(roster)
}

/// One transition found while removing a node's contribution.
#[derive(Debug, PartialEq, Eq)]
pub struct Removal {
    /// The app's id.
    pub app: String,
    /// The channel's name.
    pub channel: String,
    /// `Some(user)`: the user left the cluster; `None`: the channel became vacant.
    pub user: Option<String>,
}

/// Reads the transitions of [`Script::Heartbeat`], [`Script::Leave`] or [`Script::Sweep`].
pub fn read_removals(value: Value) -> Vec<Removal> {
    let Some(items) = value.into_array() else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let fields = item.into_array()?;
            let text = |i: usize| {
                fields
                    .get(i)
                    .and_then(Value::as_bytes)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map(str::to_owned)
            };
            let kind = text(0)?;
            let (app, channel, user) = (text(1)?, text(2)?, text(3)?);
            Some(Removal {
                app,
                channel,
                user: (kind == "r").then_some(user),
            })
        })
        .collect()
}

/// The reply to [`Script::Heartbeat`].
#[derive(Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// This node was not registered.
    pub new: bool,
    /// Nodes alive, this one included.
    pub alive: u64,
    /// Dead nodes removed by this call.
    pub dead: u64,
    /// What their removal changed.
    pub removals: Vec<Removal>,
    /// Each app's connections on the other nodes, in the order the apps were sent.
    pub elsewhere: Vec<u64>,
}

/// Reads the reply to [`Script::Heartbeat`].
pub fn read_heartbeat(value: Value) -> Option<Heartbeat> {
    let mut parts = value.into_array()?.into_iter();
    let new = parts.next()?.as_int()? == 1;
    let alive = parts.next()?.as_int()?.max(0) as u64;
    let dead = parts.next()?.as_int()?.max(0) as u64;
    let removals = read_removals(parts.next()?);
    let elsewhere = parts
        .next()
        .and_then(Value::into_array)
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_int().unwrap_or(0).max(0) as u64)
        .collect();
    Some(Heartbeat {
        new,
        alive,
        dead,
        removals,
        elsewhere,
    })
}

/// A webhook event claimed from the cluster's queue.
#[derive(Debug, PartialEq, Eq)]
pub struct DueWebhook {
    /// What happened.
    pub kind: WebhookKind,
    /// The app's id.
    pub app: String,
    /// The channel's name.
    pub channel: String,
    /// The user, for member events.
    pub user: Option<String>,
}

/// Reads the reply to [`Script::Due`], skipping anything unreadable.
pub fn read_due(value: Value) -> Vec<DueWebhook> {
    let Some(items) = value.into_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let text = std::str::from_utf8(item.as_bytes()?).ok()?;
            let mut parts = text.splitn(4, '\n');
            let kind = match parts.next()? {
                "o" => WebhookKind::ChannelOccupied,
                "v" => WebhookKind::ChannelVacated,
                "a" => WebhookKind::MemberAdded,
                "r" => WebhookKind::MemberRemoved,
                _ => return None,
            };
            let (app, channel, user) = (parts.next()?, parts.next()?, parts.next()?);
            let member = matches!(kind, WebhookKind::MemberAdded | WebhookKind::MemberRemoved);
            if member == user.is_empty() {
                return None;
            }
            Some(DueWebhook {
                kind,
                app: app.to_owned(),
                channel: channel.to_owned(),
                user: member.then(|| user.to_owned()),
            })
        })
        .collect()
}

/// The field a policy resource is kept under in Redis.
pub fn resource_field(kind: &str, id: &str) -> String {
    format!("{kind}\n{id}")
}

/// Reads a reply of field, value pairs (a hash's `HGETALL`, [`Script::Resources`], [`Script::Revoked`]) as
/// text, skipping pairs that are not UTF-8.
pub fn read_pairs(value: Value) -> Vec<(String, String)> {
    let items = match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect::<Vec<_>>(),
        other => other.into_array().unwrap_or_default(),
    };
    let text = |v: &Value| {
        v.as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    };
    items
        .chunks_exact(2)
        .filter_map(|pair| Some((text(&pair[0])?, text(&pair[1])?)))
        .collect()
}

/// Reads the reply to [`Script::Channels`]: `(name, subscribers, users)`.
pub fn read_channels(value: Value) -> Vec<(String, u64, u64)> {
    let Some(items) = value.into_array() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len() / 3);
    let mut items = items.into_iter();
    while let (Some(name), Some(subs), Some(users)) = (items.next(), items.next(), items.next()) {
        let Some(name) = name.as_bytes().and_then(|b| std::str::from_utf8(b).ok()) else {
            continue;
        };
        out.push((
            name.to_owned(),
            subs.as_int().unwrap_or(0).max(0) as u64,
            users.as_int().unwrap_or(0).max(0) as u64,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn a_sync_reply_is_read_with_its_transitions_and_roster() {
        let reply = Value::Array(vec![
            Value::Integer(0),
            Value::Integer(1),
            Value::Integer(1),
            Value::Integer(3),
            Value::Array(vec![
                bulk("u1"),
                bulk(r#"{"name":"A"}"#),
                bulk("u2"),
                bulk(""),
            ]),
        ]);
        let user = UserId::parse("u1", 64).unwrap();
        let read = read_sync(reply, Some(&user), 64).unwrap();
        assert!(!read.refused);
        assert_eq!(read.transitions.occupied, Some(true));
        assert_eq!(read.transitions.added, vec![user.clone()]);
        assert_eq!(read.transitions.total, 3);
        assert_eq!(read.roster.len(), 2);
        assert_eq!(read.roster[0].1.as_deref(), Some(r#"{"name":"A"}"#));
        assert_eq!(read.roster[1].1, None);
    }

    #[test]
    fn a_sync_reply_carries_the_cached_event_when_there_is_one() {
        let frame = Bytes::from_static(b"\x81\x02hi");
        let envelope = crate::core::cluster::Envelope::Event {
            app: "1".into(),
            channel: "cache-x".into(),
            except: None,
            frame: frame.clone(),
            notice: false,
            member_info: None,
        }
        .encode();
        let reply = |cached: Value| {
            Value::Array(vec![
                Value::Integer(0),
                Value::Integer(0),
                Value::Integer(0),
                Value::Integer(1),
                Value::Array(vec![]),
                cached,
            ])
        };
        let read = read_sync(
            reply(Value::Array(vec![
                Value::Bulk(envelope),
                Value::Integer(1500),
            ])),
            None,
            64,
        )
        .unwrap();
        assert_eq!(
            read.cached,
            Some(Cached {
                frame,
                remaining: std::time::Duration::from_millis(1500)
            })
        );
        let none = read_sync(reply(Value::Array(vec![])), None, 64).unwrap();
        assert_eq!(none.cached, None);
        let garbage = reply(Value::Array(vec![bulk("Zz"), Value::Integer(5)]));
        assert_eq!(read_sync(garbage, None, 64).unwrap().cached, None);
    }

    #[test]
    fn a_malformed_sync_reply_is_none() {
        assert!(read_sync(Value::Integer(1), None, 64).is_none());
        assert!(read_sync(Value::Array(vec![Value::Integer(0)]), None, 64).is_none());
    }

    #[test]
    fn removals_and_heartbeats_are_read() {
        let removals = Value::Array(vec![
            Value::Array(vec![bulk("v"), bulk("1"), bulk("room"), bulk("")]),
            Value::Array(vec![bulk("r"), bulk("1"), bulk("presence-r"), bulk("u9")]),
            Value::Integer(5),
        ]);
        let beat = read_heartbeat(Value::Array(vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(1),
            removals,
            Value::Array(vec![Value::Integer(7), Value::Integer(0)]),
        ]))
        .unwrap();
        assert!(beat.new);
        assert_eq!((beat.alive, beat.dead), (2, 1));
        assert_eq!(beat.elsewhere, [7, 0]);
        assert_eq!(
            beat.removals,
            vec![
                Removal {
                    app: "1".into(),
                    channel: "room".into(),
                    user: None
                },
                Removal {
                    app: "1".into(),
                    channel: "presence-r".into(),
                    user: Some("u9".into())
                },
            ]
        );
    }

    #[test]
    fn due_webhooks_are_read_and_garbage_is_skipped() {
        let reply = Value::Array(vec![
            bulk("o\n1\nroom\n"),
            bulk("r\n1\npresence-r\nu9"),
            bulk("a\n1\npresence-r\n"),
            bulk("v\n1\nroom\nstray-user"),
            bulk("x\n1\nroom\n"),
            bulk("o\n1"),
            Value::Integer(3),
        ]);
        assert_eq!(
            read_due(reply),
            vec![
                DueWebhook {
                    kind: WebhookKind::ChannelOccupied,
                    app: "1".into(),
                    channel: "room".into(),
                    user: None
                },
                DueWebhook {
                    kind: WebhookKind::MemberRemoved,
                    app: "1".into(),
                    channel: "presence-r".into(),
                    user: Some("u9".into())
                },
            ]
        );
    }

    #[test]
    fn scripts_queue_leave_events_after_the_webhooks_leave_delay() {
        let defined = format!("local LEAVE_DELAY_MS = {}\n", LEAVE_DELAY.as_millis());
        for script in [
            Script::Sync,
            Script::Heartbeat,
            Script::Leave,
            Script::Sweep,
        ] {
            let text = script.source();
            assert!(text.starts_with(&defined), "{script:?}");
            assert!(text.contains(", LEAVE_DELAY_MS)"), "{script:?}");
        }
    }

    #[test]
    fn pairs_are_read_from_arrays_and_maps() {
        let array = Value::Array(vec![bulk("escrow\n42"), bulk("{}"), bulk("odd")]);
        assert_eq!(read_pairs(array), vec![("escrow\n42".into(), "{}".into())]);
        let map = Value::Map(vec![(bulk("t-1"), bulk("1800000000"))]);
        assert_eq!(read_pairs(map), vec![("t-1".into(), "1800000000".into())]);
        assert!(read_pairs(Value::Integer(1)).is_empty());
        assert_eq!(resource_field("escrow", "42"), "escrow\n42");
    }

    #[test]
    fn channel_lists_are_read() {
        let reply = Value::Array(vec![
            bulk("a"),
            Value::Integer(2),
            Value::Integer(0),
            bulk("presence-b"),
            Value::Integer(3),
            Value::Integer(1),
        ]);
        assert_eq!(
            read_channels(reply),
            vec![("a".into(), 2, 0), ("presence-b".into(), 3, 1)]
        );
    }

    #[test]
    fn scripts_are_named_by_the_sha1_of_their_text() {
        // FIPS 180-1's example: SHA-1("abc").
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            Script::Sync.sha1(),
            sha1_hex(Script::Sync.source().as_bytes())
        );
        for (i, script) in Script::ALL.iter().enumerate() {
            assert_eq!(*script as usize, i);
        }
    }

    #[test]
    fn index_fields_are_the_scripts_format() {
        assert_eq!(count_field("1", "room"), "c\n1\nroom");
        assert_eq!(member_field("1", "presence-r", "u"), "m\n1\npresence-r\nu");
        assert_eq!(user_field("1", "alice"), "u\n1\nalice");
    }
}
