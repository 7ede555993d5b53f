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
//! | `P:rev:A` | hash | revoked token id → until when (Unix seconds) |
//! | `P:n:NODE` | hash | what a node contributed: `c\nA\nC` → count, `m\nA\nC\nUSER` → the `member_removed` message to publish if the node dies, `u\nA\nUSER` → the offline message to publish if the node dies, `k\nA` → its connections of app `A` |
//!
//! Every script runs atomically, so the node whose call makes a transition happen is the only
//! one that learns of it.
//!
//! Webhooks for cluster-wide transitions are queued in Redis by the script that sees the
//! transition, `channel_vacated` and `member_removed` due [`LEAVE_DELAY_MS`] later and
//! cancelled when the channel or the user comes back within it, on whichever node. Every node
//! claims due events ([`DUE`]); each is claimed once, so it is sent once, even if the node that
//! caused it has died meanwhile.

use super::Transitions;
use super::resp::Value;
use crate::core::ids::UserId;
use crate::core::webhook::WebhookKind;

/// [`crate::core::webhook::LEAVE_DELAY`] in milliseconds, as the scripts below write it.
pub const LEAVE_DELAY_MS: u64 = 3000;

/// The Redis clock in milliseconds, and the queueing and cancelling of webhook events (shared
/// by the scripts that see transitions or read the clock).
macro_rules! webhook_fns {
    () => {
        r#"
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function hook(p, kind, app, ch, user, delay)
  local key = kind .. '\n' .. app .. '\n' .. ch .. '\n' .. user
  local old = redis.call('HGET', p .. ':whk', key)
  if old then redis.call('ZREM', p .. ':wh', old) end
  local member = string.format('%015d', redis.call('INCR', p .. ':whseq')) .. '\n' .. key
  redis.call('ZADD', p .. ':wh', clock_ms() + delay, member)
  redis.call('HSET', p .. ':whk', key, member)
end
local function unhook(p, kind, app, ch, user)
  local key = kind .. '\n' .. app .. '\n' .. ch .. '\n' .. user
  local member = redis.call('HGET', p .. ':whk', key)
  if not member then return false end
  redis.call('ZREM', p .. ':wh', member)
  redis.call('HDEL', p .. ':whk', key)
  return true
end
"#
    };
}

/// Removes one entry of a node's contribution (shared by the scripts below). Appends what
/// became vacant or left the cluster to `out` as `{kind, app, channel, user}`.
macro_rules! drop_entry_fn {
    () => {
        r#"
-- (needs webhook_fns)
local function drop_entry(p, node, field, value, events, quiet, out)
  local kind = string.sub(field, 1, 1)
  local rest = string.sub(field, 3)
  if kind == 'k' then
    redis.call('HDEL', p .. ':k:' .. rest, node)
    redis.call('HDEL', p .. ':n:' .. node, field)
    return
  end
  local i = string.find(rest, '\n', 1, true)
  if not i then return end
  local app = string.sub(rest, 1, i - 1)
  rest = string.sub(rest, i + 1)
  if kind == 'c' then
    local ch = rest
    local cn = p .. ':cn:' .. app .. ':' .. ch
    local n = tonumber(redis.call('HGET', cn, node) or '0')
    redis.call('HDEL', cn, node)
    local totals = p .. ':c:' .. app
    local total = tonumber(redis.call('HGET', totals, ch) or '0') - n
    if total > 0 then
      redis.call('HSET', totals, ch, total)
    else
      if redis.call('HDEL', totals, ch) == 1 then
        if not quiet then hook(p, 'v', app, ch, '', 3000) end
        table.insert(out, {'v', app, ch, ''})
      end
    end
  elseif kind == 'm' then
    local j = string.find(rest, '\n', 1, true)
    if not j then return end
    local ch = string.sub(rest, 1, j - 1)
    local user = string.sub(rest, j + 1)
    local refs_key = p .. ':mr:' .. app .. ':' .. ch
    local refs = redis.call('HINCRBY', refs_key, user, -1)
    if refs <= 0 then
      redis.call('HDEL', refs_key, user)
      redis.call('HDEL', p .. ':m:' .. app .. ':' .. ch, user)
      if not quiet then
        redis.call('PUBLISH', events, value)
        hook(p, 'r', app, ch, user, 3000)
      end
      table.insert(out, {'r', app, ch, user})
    end
  elseif kind == 'u' then
    local counts = p .. ':u:' .. app
    if redis.call('HINCRBY', counts, rest, -1) <= 0 then
      redis.call('HDEL', counts, rest)
      if not quiet then redis.call('PUBLISH', events, value) end
    end
  end
  redis.call('HDEL', p .. ':n:' .. node, field)
end
"#
    };
}

/// Applies a channel's new state on one node.
///
/// ARGV: prefix, node, app, channel, node subscribers, op (`""`, `join`, `leave`), user,
/// user_info (`""` for none), added message, removed message, max members (0: no limit),
/// events channel, quiet (`1`: publish nothing), want roster (`1`), want cache (`1`).
///
/// Returns `{refused, member, occupied, total, roster, cached}`: `refused` 1 when a join
/// found the roster full; `member` 1 / -1 when the user joined / left the cluster; `occupied`
/// 1 / -1 when the channel became occupied / vacant; `total` the cluster's subscriber count;
/// `roster` user, info, user, info, ... when asked for; `cached` the cache channel's last
/// event and its remaining time to live in milliseconds, when asked for and there is one.
pub const SYNC: &str = concat!(
    webhook_fns!(),
    r#"
local p, node, app, ch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count = tonumber(ARGV[5])
local op, user = ARGV[6], ARGV[7]
local events, quiet = ARGV[12], ARGV[13] == '1'
local index = p .. ':n:' .. node
local roster_key = p .. ':m:' .. app .. ':' .. ch
local refs_key = p .. ':mr:' .. app .. ':' .. ch
local refused, member, occupied = 0, 0, 0
if op == 'join' then
  local field = 'm\n' .. app .. '\n' .. ch .. '\n' .. user
  if redis.call('HEXISTS', index, field) == 0 then
    local refs = tonumber(redis.call('HGET', refs_key, user) or '0')
    local max = tonumber(ARGV[11])
    if refs == 0 and max > 0 and redis.call('HLEN', roster_key) >= max then
      refused = 1
    else
      redis.call('HSET', index, field, ARGV[10])
      redis.call('HINCRBY', refs_key, user, 1)
      if refs == 0 then
        redis.call('HSET', roster_key, user, ARGV[8])
        member = 1
        if not quiet then redis.call('PUBLISH', events, ARGV[9]) end
      end
    end
  end
elseif op == 'leave' then
  local field = 'm\n' .. app .. '\n' .. ch .. '\n' .. user
  local removed = redis.call('HGET', index, field)
  if removed then
    redis.call('HDEL', index, field)
    local refs = redis.call('HINCRBY', refs_key, user, -1)
    if refs <= 0 then
      redis.call('HDEL', refs_key, user)
      redis.call('HDEL', roster_key, user)
      member = -1
      if not quiet then redis.call('PUBLISH', events, removed) end
    end
  end
end
local per_node = p .. ':cn:' .. app .. ':' .. ch
local totals = p .. ':c:' .. app
local old = tonumber(redis.call('HGET', per_node, node) or '0')
local total = tonumber(redis.call('HGET', totals, ch) or '0')
if count ~= old then
  local cfield = 'c\n' .. app .. '\n' .. ch
  if count > 0 then
    redis.call('HSET', per_node, node, count)
    redis.call('HSET', index, cfield, count)
  else
    redis.call('HDEL', per_node, node)
    redis.call('HDEL', index, cfield)
  end
  local new_total = total + count - old
  if new_total > 0 then
    redis.call('HSET', totals, ch, new_total)
  else
    redis.call('HDEL', totals, ch)
    new_total = 0
  end
  if total == 0 and new_total > 0 then occupied = 1 end
  if total > 0 and new_total == 0 then occupied = -1 end
  total = new_total
end
if not quiet then
  -- A channel or user back within the leave delay was never gone: its vacated or removed
  -- event is cancelled, and there is nothing to announce.
  if occupied == 1 and not unhook(p, 'v', app, ch, '') then hook(p, 'o', app, ch, '', 0) end
  if member == 1 and not unhook(p, 'r', app, ch, user) then hook(p, 'a', app, ch, user, 0) end
  if member == -1 then hook(p, 'r', app, ch, user, 3000) end
  if occupied == -1 then hook(p, 'v', app, ch, '', 3000) end
end
local roster = {}
if ARGV[14] == '1' then roster = redis.call('HGETALL', roster_key) end
local cached = {}
if ARGV[15] == '1' then
  local key = p .. ':cache:' .. app .. ':' .. ch
  local last = redis.call('GET', key)
  if last then cached = {last, redis.call('PTTL', key)} end
end
return {refused, member, occupied, total, roster, cached}
"#
);

/// A signed-in user's first socket on this node arrived, or its last one left.
///
/// ARGV: prefix, node, app, user, online (`1` / `0`), events channel, online message,
/// offline message, quiet (`1`: publish nothing). The online (offline) message is published
/// when the user comes online on the first node (goes offline on the last one); the offline
/// one is kept so that another node can publish it if this one dies.
pub const USER: &str = r#"
local p, node, app, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local events, quiet = ARGV[6], ARGV[9] == '1'
local index = p .. ':n:' .. node
local field = 'u\n' .. app .. '\n' .. user
local counts = p .. ':u:' .. app
if ARGV[5] == '1' then
  if redis.call('HSETNX', index, field, ARGV[8]) == 1 then
    if redis.call('HINCRBY', counts, user, 1) == 1 and not quiet then
      redis.call('PUBLISH', events, ARGV[7])
    end
  end
elseif redis.call('HDEL', index, field) == 1 then
  if redis.call('HINCRBY', counts, user, -1) <= 0 then
    redis.call('HDEL', counts, user)
    if not quiet then redis.call('PUBLISH', events, ARGV[8]) end
  end
end
return 1
"#;

/// Records this node's heartbeat and connection counts, and removes every node silent for
/// longer than the timeout.
///
/// ARGV: prefix, node, timeout (ms), events channel, then app id and this node's connections
/// of that app, for every app. Returns `{new, alive, dead, removed, elsewhere}`: `new` 1 when
/// this node was not registered (first beat, or it was itself declared dead: it must then
/// report its state again); `alive` the nodes left; `dead` how many were removed; `removed`
/// the `{kind, app, channel, user}` transitions; `elsewhere` each app's connections on the
/// other live nodes, in ARGV's order.
pub const HEARTBEAT: &str = concat!(
    webhook_fns!(),
    drop_entry_fn!(),
    r#"
local p, node, timeout, events = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = clock_ms()
local nodes = p .. ':nodes'
local new = redis.call('ZADD', nodes, now, node)
local out = {}
local removed_nodes = 0
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now - timeout)) do
  if dead ~= node then
    removed_nodes = removed_nodes + 1
    local entries = redis.call('HGETALL', p .. ':n:' .. dead)
    for i = 1, #entries, 2 do
      drop_entry(p, dead, entries[i], entries[i + 1], events, false, out)
    end
    redis.call('DEL', p .. ':n:' .. dead)
    redis.call('ZREM', nodes, dead)
  end
end
local elsewhere = {}
for i = 5, #ARGV - 1, 2 do
  local app, mine = ARGV[i], tonumber(ARGV[i + 1])
  local counts = p .. ':k:' .. app
  if mine > 0 then
    redis.call('HSET', counts, node, mine)
    redis.call('HSET', p .. ':n:' .. node, 'k\n' .. app, mine)
  else
    redis.call('HDEL', counts, node)
    redis.call('HDEL', p .. ':n:' .. node, 'k\n' .. app)
  end
  local others = 0
  local all = redis.call('HGETALL', counts)
  for j = 1, #all, 2 do
    if all[j] ~= node then others = others + tonumber(all[j + 1]) end
  end
  table.insert(elsewhere, others)
end
return {new, redis.call('ZCARD', nodes), removed_nodes, out, elsewhere}
"#
);

/// Removes a node's whole contribution (a graceful shutdown).
///
/// ARGV: prefix, node, events channel. Returns the transitions like [`HEARTBEAT`].
pub const LEAVE: &str = concat!(
    webhook_fns!(),
    drop_entry_fn!(),
    r#"
local p, node, events = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local entries = redis.call('HGETALL', p .. ':n:' .. node)
for i = 1, #entries, 2 do
  drop_entry(p, node, entries[i], entries[i + 1], events, false, out)
end
redis.call('DEL', p .. ':n:' .. node)
redis.call('ZREM', p .. ':nodes', node)
return out
"#
);

/// After a resynchronization re-reported everything this node has: removes what it had
/// reported before but has no longer (sockets that left while Redis was out of reach).
///
/// ARGV: prefix, node, events channel, quiet, then the fields to keep. Returns the
/// transitions like [`HEARTBEAT`].
pub const SWEEP: &str = concat!(
    webhook_fns!(),
    drop_entry_fn!(),
    r#"
local p, node, events, quiet = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local keep = {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
local out = {}
local entries = redis.call('HGETALL', p .. ':n:' .. node)
for i = 1, #entries, 2 do
  -- Connection counts ('k') are refreshed by heartbeats, not reports.
  if not keep[entries[i]] and string.sub(entries[i], 1, 1) ~= 'k' then
    drop_entry(p, node, entries[i], entries[i + 1], events, quiet, out)
  end
end
return out
"#
);

/// Publishes an event of a cache channel and keeps it as the channel's last event, in one
/// step, so that the kept event is always the last one every node delivered.
///
/// ARGV: prefix, app, channel, time to live (ms), events channel, envelope.
pub const PUBLISH_CACHED: &str = r#"
local p, app, ch = ARGV[1], ARGV[2], ARGV[3]
redis.call('SET', p .. ':cache:' .. app .. ':' .. ch, ARGV[6], 'PX', ARGV[4])
return redis.call('PUBLISH', ARGV[5], ARGV[6])
"#;

/// Claims the webhook events that are due: removes them from the queue and returns them, so
/// each is sent by exactly one node.
///
/// ARGV: prefix, most events to claim. Returns `{K\nA\nC\nUSER, ...}` in due order.
pub const DUE: &str = concat!(
    webhook_fns!(),
    r#"
local p, limit = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', p .. ':wh', '-inf', clock_ms(), 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', p .. ':wh', member)
  local key = string.sub(member, 17)
  if redis.call('HGET', p .. ':whk', key) == member then
    redis.call('HDEL', p .. ':whk', key)
  end
  table.insert(out, key)
end
return out
"#
);

/// Publishes a command and, in the same step, keeps what it changes for nodes started later:
/// a policy resource (`kind` `res`: set, or deleted when the value is empty) or a token
/// revocation (`kind` `rev`: kept until the later of the two times it was revoked until).
///
/// ARGV: prefix, kind, app, field (`TYPE\nID`, or the token id), value, events channel,
/// message.
pub const RECORD: &str = r#"
local p, kind, app, field, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = p .. ':' .. kind .. ':' .. app
if kind == 'res' then
  if value == '' then redis.call('HDEL', key, field) else redis.call('HSET', key, field, value) end
  redis.call('SET', p .. ':resinit:' .. app, '1')
else
  local old = tonumber(redis.call('HGET', key, field) or '0')
  if tonumber(value) > old then redis.call('HSET', key, field, value) end
end
return redis.call('PUBLISH', ARGV[6], ARGV[7])
"#;

/// Resynchronizes an app's policy resources: if no node has given Redis its resources yet
/// (a new cluster, or Redis restarted empty), this node's are stored; then Redis's copy is
/// returned, and it decides.
///
/// ARGV: prefix, app, then `TYPE\nID`, JSON for each resource this node has. Returns
/// `{TYPE\nID, JSON, ...}`.
pub const RESOURCES: &str = r#"
local p, app = ARGV[1], ARGV[2]
local key = p .. ':res:' .. app
if redis.call('SET', p .. ':resinit:' .. app, '1', 'NX') then
  for i = 3, #ARGV - 1, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
return redis.call('HGETALL', key)
"#;

/// Resynchronizes an app's token revocations (the union of every node's, while they
/// matter): stores this node's, forgets those past their time, returns the rest.
///
/// ARGV: prefix, app, now (Unix seconds), then token id, until for each revocation this node
/// has. Returns `{id, until, ...}`.
pub const REVOKED: &str = r#"
local p, app, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = p .. ':rev:' .. app
for i = 4, #ARGV - 1, 2 do
  if tonumber(ARGV[i + 1]) > tonumber(redis.call('HGET', key, ARGV[i]) or '0') then
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  end
end
local all = redis.call('HGETALL', key)
local out = {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < now then
    redis.call('HDEL', key, all[i])
  else
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
return out
"#;

/// Sets the epoch if there is none and returns it.
///
/// ARGV: prefix, a fresh random value.
pub const EPOCH: &str = r#"
local key = ARGV[1] .. ':epoch'
redis.call('SET', key, ARGV[2], 'NX')
return redis.call('GET', key)
"#;

/// One channel's cluster-wide counts. ARGV: prefix, app, channel. Returns `{subscribers,
/// users}`.
pub const CHANNEL: &str = r#"
local p, app, ch = ARGV[1], ARGV[2], ARGV[3]
return {tonumber(redis.call('HGET', p .. ':c:' .. app, ch) or '0'),
        redis.call('HLEN', p .. ':m:' .. app .. ':' .. ch)}
"#;

/// Occupied channels. ARGV: prefix, app, name prefix. Returns `{name, subscribers, users,
/// ...}`.
pub const CHANNELS: &str = r#"
local p, app, prefix = ARGV[1], ARGV[2], ARGV[3]
local all = redis.call('HGETALL', p .. ':c:' .. app)
local out = {}
for i = 1, #all, 2 do
  local name = all[i]
  if string.sub(name, 1, #prefix) == prefix then
    table.insert(out, name)
    table.insert(out, tonumber(all[i + 1]))
    table.insert(out, redis.call('HLEN', p .. ':m:' .. app .. ':' .. name))
  end
end
return out
"#;

/// One of the scripts above. Each connection loads them all (`SCRIPT LOAD`) before anything
/// else and then calls them by SHA-1, which is computed here rather than read back from the
/// replies, so calls can follow the loads in the same pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// [`SYNC`].
    Sync,
    /// [`HEARTBEAT`].
    Heartbeat,
    /// [`LEAVE`].
    Leave,
    /// [`SWEEP`].
    Sweep,
    /// [`EPOCH`].
    Epoch,
    /// [`CHANNEL`].
    Channel,
    /// [`CHANNELS`].
    Channels,
    /// [`PUBLISH_CACHED`].
    PublishCached,
    /// [`USER`].
    User,
    /// [`DUE`].
    Due,
    /// [`RECORD`].
    Record,
    /// [`RESOURCES`].
    Resources,
    /// [`REVOKED`].
    Revoked,
}

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

    /// The Lua text.
    pub fn source(self) -> &'static str {
        match self {
            Script::Sync => SYNC,
            Script::Heartbeat => HEARTBEAT,
            Script::Leave => LEAVE,
            Script::Sweep => SWEEP,
            Script::Epoch => EPOCH,
            Script::Channel => CHANNEL,
            Script::Channels => CHANNELS,
            Script::PublishCached => PUBLISH_CACHED,
            Script::User => USER,
            Script::Due => DUE,
            Script::Record => RECORD,
            Script::Resources => RESOURCES,
            Script::Revoked => REVOKED,
        }
    }

    /// The name Redis gives the script: the hex SHA-1 of its text.
    pub fn sha1(self) -> String {
        sha1_hex(self.source().as_bytes())
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The node-index field of a channel count (what [`SWEEP`] keeps).
pub fn count_field(app: &str, channel: &str) -> String {
    format!("c\n{app}\n{channel}")
}

/// The node-index field of a signed-in user (what [`SWEEP`] keeps).
pub fn user_field(app: &str, user: &str) -> String {
    format!("u\n{app}\n{user}")
}

/// The node-index field of a presence member (what [`SWEEP`] keeps).
pub fn member_field(app: &str, channel: &str, user: &str) -> String {
    format!("m\n{app}\n{channel}\n{user}")
}

/// The reply to [`SYNC`].
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

/// Reads a [`SYNC`] reply; `None` if it is not shaped like one.
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

/// Reads the transitions of [`HEARTBEAT`], [`LEAVE`] or [`SWEEP`].
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

/// The reply to [`HEARTBEAT`].
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

/// Reads the reply to [`HEARTBEAT`].
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

/// Reads the reply to [`DUE`], skipping anything unreadable.
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

/// Reads a reply of field, value pairs (a hash's `HGETALL`, [`RESOURCES`], [`REVOKED`]) as
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

/// Reads the reply to [`CHANNELS`]: `(name, subscribers, users)`.
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
    fn the_scripts_leave_delay_is_the_webhooks() {
        assert_eq!(
            std::time::Duration::from_millis(LEAVE_DELAY_MS),
            crate::core::webhook::LEAVE_DELAY
        );
        // The scripts write the delay literally.
        let delay = format!(", {LEAVE_DELAY_MS})");
        for script in [SYNC, HEARTBEAT, LEAVE, SWEEP] {
            assert!(script.contains(&delay));
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
        assert_eq!(Script::Sync.sha1(), sha1_hex(SYNC.as_bytes()));
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
