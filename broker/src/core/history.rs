//! Channel history and recovery, as a channel's home shard keeps them (sans-IO: times are
//! parameters).
//!
//! A history channel (one `[apps.history] channels` covers) keeps its recent events, each with
//! an id (monotonic per channel, on this node), its publish time, its event name and data, and
//! its encoded frames for replay. Bounds: `max_events` per channel, `ttl`, and the app's
//! `max_bytes` shared evenly by the shards, over which the app's oldest event on the shard goes
//! first. Every eviction is counted and reported for the store.
//!
//! An identified user whose connection ended while subscribed leaves a [`Departure`]: the last
//! id queued to that connection on the channel. The same user subscribing again within
//! `recovery` consumes it and is replayed what came after.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::channel::ChannelName;
use crate::core::ids::UserId;
use crate::core::options::HistoryConfig;
use crate::core::policy::ChannelPattern;
use crate::core::wire::Frames;

/// Departures an app keeps on one shard; past it the oldest is dropped (and counted).
pub const MAX_DEPARTURES: usize = 10_000;
/// Most events one history API answer holds.
pub const MAX_PAGE: usize = 1_000;
/// Events one history API answer holds when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The event that opens a replay; its data is `{"count":N,"since":ID}`.
pub const REPLAY_START: &str = "ringcast:replay_start";
/// The event that closes a replay; its data is `{"count":N}`.
pub const REPLAY_END: &str = "ringcast:replay_end";

/// `[apps.history]` compiled: its channel patterns parsed, its limits as the shards use them.
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    patterns: Vec<ChannelPattern>,
    /// Events kept per channel.
    pub max_events: usize,
    /// Events older than this are dropped.
    pub ttl: Duration,
    /// How long a departure may be recovered.
    pub recovery: Duration,
    /// Bytes the whole app may hold (each shard holds its share).
    pub max_bytes: usize,
}

impl HistoryOptions {
    /// Compiles the table, or names the pattern that is wrong and why.
    pub fn compile(config: &HistoryConfig) -> Result<Self, String> {
        let patterns = config
            .channels
            .iter()
            .map(|p| ChannelPattern::parse(p).map_err(|e| format!("pattern {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            patterns,
            max_events: config.max_events,
            ttl: config.ttl,
            recovery: config.recovery,
            max_bytes: config.max_bytes,
        })
    }

    /// Whether `channel` keeps history.
    pub fn covers(&self, channel: &ChannelName) -> bool {
        self.patterns.iter().any(|p| p.matches(channel.as_str()))
    }
}

/// Where a Socket.IO client was in a history channel: the channel and the last event id it
/// received, written `{channel}:{id}` as the offset its events carry (channel names have no
/// `:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryOffset {
    /// The channel.
    pub channel: ChannelName,
    /// The last id received there.
    pub id: u64,
}

impl HistoryOffset {
    /// Reads an offset as a client sends it back (`auth.offset`); `None` when it is not one
    /// of ours (another server's offset, or garbage).
    pub fn parse(raw: &str, max_channel_chars: usize) -> Option<Self> {
        let (channel, id) = raw.rsplit_once(':')?;
        Some(Self {
            channel: ChannelName::parse(channel, max_channel_chars).ok()?,
            id: id.parse().ok()?,
        })
    }

    /// The offset's text.
    pub fn text(channel: &ChannelName, id: u64) -> String {
        format!("{}:{id}", channel.as_str())
    }
}

/// One kept event.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    /// Its id on the channel (on this node).
    pub id: u64,
    /// When it was published, in Unix milliseconds.
    pub published_ms: u64,
    /// The event name.
    pub event: Box<str>,
    /// The data as published: a JSON string for API events, any JSON value for client events.
    pub data: Box<RawValue>,
    /// The encoded frames, replayed as they are.
    pub frames: Frames,
    /// Its place among the app's events on this shard (breaks ties of `published_ms`).
    seq: u64,
}

impl HistoryEntry {
    /// Reads an event out of its frames (the Pusher frame says what it is). `None`: not an
    /// app event (a `pusher:` or `pusher_internal:` notice, or a frame that is no event).
    pub fn from_frames(id: u64, published_ms: u64, frames: Frames) -> Option<Self> {
        #[derive(Deserialize)]
        struct Published<'a> {
            #[serde(borrow)]
            event: std::borrow::Cow<'a, str>,
            data: Box<RawValue>,
        }
        let payload = crate::core::wire::socketio::frames::text_payload(frames.pusher())?;
        let published: Published = serde_json::from_slice(payload).ok()?;
        if published.event.starts_with("pusher:") || published.event.starts_with("pusher_internal:")
        {
            return None;
        }
        Some(Self {
            id,
            published_ms,
            event: published.event.into(),
            data: published.data,
            frames,
            seq: 0,
        })
    }

    /// What it costs the app's byte bound.
    pub fn bytes(&self) -> usize {
        self.event.len()
            + self.data.get().len()
            + frames_bytes(&self.frames)
            + std::mem::size_of::<Self>()
    }
}

fn frames_bytes(frames: &Frames) -> usize {
    frames.pusher().len() + frames.get(crate::core::wire::Wire::SocketIo).len()
}

/// An event as the store keeps it: the Pusher frame says the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id on the channel.
    pub id: u64,
    /// When it was published, in Unix milliseconds.
    pub published_ms: u64,
    /// The Pusher frame.
    pub frame: Bytes,
}

/// What the store is to do, in the order the shard decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryWrite {
    /// Keep a new event.
    Append {
        /// The app's id (what the store is keyed by, stable across restarts).
        app: String,
        /// The channel.
        channel: ChannelName,
        /// The event.
        event: StoredEvent,
    },
    /// Forget the channel's events up to and including id `through`.
    Evict {
        /// The app's id.
        app: String,
        /// The channel.
        channel: ChannelName,
        /// The last id forgotten.
        through: u64,
    },
}

/// One channel's kept events.
#[derive(Debug, Default)]
struct ChannelHistory {
    entries: VecDeque<HistoryEntry>,
    /// The last id given out (0: none yet).
    last_id: u64,
    /// The last id evicted (0: none).
    evicted_through: u64,
}

impl ChannelHistory {
    fn after(&self, since: u64) -> impl Iterator<Item = &HistoryEntry> {
        let start = self.entries.partition_point(|e| e.id <= since);
        self.entries.range(start..)
    }
}

/// Where a user left a history channel: the last id queued to the connection, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Departure {
    /// The last event id the connection was given (0: none).
    pub last_id: u64,
    /// When the connection ended.
    pub at: Instant,
}

/// The events a returning user missed, framed for one wire.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay {
    /// The departure's last id.
    pub since: u64,
    /// Every event after it that is still kept, oldest first.
    pub entries: Vec<Frames>,
    /// The last id the subscriber now has.
    pub last_id: u64,
}

/// A page of a channel's history, for the API.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The events after `since`, oldest first.
    pub events: Vec<PageEvent>,
    /// Events after `since` were evicted before the first one here.
    pub truncated: bool,
}

/// One event of a [`HistoryPage`].
#[derive(Debug, PartialEq, Eq)]
pub struct PageEvent {
    /// Its id.
    pub id: u64,
    /// The event name.
    pub event: Box<str>,
    /// The data, JSON text as published.
    pub data: Box<str>,
    /// When it was published, in Unix milliseconds.
    pub published_at_ms: u64,
}

/// What a record or an expiry changed, for the counters and the store.
#[derive(Debug, Default)]
pub struct Evicted {
    /// Per channel, the last id evicted.
    pub through: Vec<(ChannelName, u64)>,
    /// Events evicted (by count, bytes or age).
    pub count: u64,
}

/// One app's history on one shard: the channels homed here, and who left them.
#[derive(Debug, Default)]
pub struct AppHistory {
    channels: HashMap<ChannelName, ChannelHistory>,
    bytes: usize,
    events: usize,
    /// The last [`HistoryEntry`] sequence number given out.
    seq: u64,
    departures: HashMap<(UserId, ChannelName), Departure>,
}

impl AppHistory {
    /// Events held.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Departures held.
    pub fn departures(&self) -> usize {
        self.departures.len()
    }

    /// The last id given out on `channel`, if it ever kept an event.
    pub fn last_id(&self, channel: &ChannelName) -> Option<u64> {
        self.channels.get(channel).map(|c| c.last_id)
    }

    /// Keeps an event published at `published_ms`, giving it the channel's next id, then
    /// enforces the bounds (`budget`: this shard's share of the app's bytes). `None`: the
    /// frames are no app event, nothing kept.
    pub fn record(
        &mut self,
        options: &HistoryOptions,
        budget: usize,
        channel: &ChannelName,
        published_ms: u64,
        frames: Frames,
        evicted: &mut Evicted,
    ) -> Option<&HistoryEntry> {
        let history = self.channels.entry(channel.clone()).or_default();
        let id = history.last_id.saturating_add(1);
        let entry = HistoryEntry::from_frames(id, published_ms, frames)?;
        history.last_id = id;
        self.insert(channel, entry);
        self.enforce(options, budget, channel, evicted);
        self.channels.get(channel).and_then(|c| c.entries.back())
    }

    /// The id the next event on `channel` gets.
    pub fn next_id(&self, channel: &ChannelName) -> u64 {
        self.last_id(channel).unwrap_or(0).saturating_add(1)
    }

    /// Puts back an event read from the store (ids as stored; older ones first), with its
    /// `frames` as the shard made them again.
    pub fn restore(&mut self, channel: &ChannelName, stored: &StoredEvent, frames: Frames) {
        let Some(entry) = HistoryEntry::from_frames(stored.id, stored.published_ms, frames) else {
            return;
        };
        let history = self.channels.entry(channel.clone()).or_default();
        if stored.id <= history.last_id {
            return;
        }
        history.last_id = stored.id;
        if history.entries.is_empty() {
            history.evicted_through = stored.id.saturating_sub(1);
        }
        self.insert(channel, entry);
    }

    fn insert(&mut self, channel: &ChannelName, mut entry: HistoryEntry) {
        self.seq += 1;
        entry.seq = self.seq;
        self.bytes += entry.bytes();
        self.events += 1;
        if let Some(history) = self.channels.get_mut(channel) {
            history.entries.push_back(entry);
        }
    }

    /// Enforces every bound: `channel`'s count, then the shard's bytes, oldest first.
    pub fn enforce(
        &mut self,
        options: &HistoryOptions,
        budget: usize,
        channel: &ChannelName,
        evicted: &mut Evicted,
    ) {
        while self
            .channels
            .get(channel)
            .is_some_and(|c| c.entries.len() > options.max_events)
        {
            self.evict_front(channel, evicted);
        }
        while self.bytes > budget {
            // The app's oldest event on this shard: the earliest front of any channel.
            let oldest = self
                .channels
                .iter()
                .filter_map(|(name, c)| c.entries.front().map(|e| ((e.published_ms, e.seq), name)))
                .min_by_key(|(order, _)| *order)
                .map(|(_, name)| name.clone());
            let Some(oldest) = oldest else { break };
            self.evict_front(&oldest, evicted);
        }
    }

    fn evict_front(&mut self, channel: &ChannelName, evicted: &mut Evicted) {
        let Some(history) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(entry) = history.entries.pop_front() else {
            return;
        };
        history.evicted_through = entry.id;
        self.bytes = self.bytes.saturating_sub(entry.bytes());
        self.events = self.events.saturating_sub(1);
        evicted.count += 1;
        match evicted.through.last_mut() {
            Some((name, through)) if name == channel => *through = entry.id,
            _ => evicted.through.push((channel.clone(), entry.id)),
        }
    }

    /// Drops events published before `now_ms - ttl`, departures older than the recovery
    /// window, and channels left with neither.
    pub fn expire(
        &mut self,
        options: &HistoryOptions,
        now_ms: u64,
        now: Instant,
        evicted: &mut Evicted,
    ) {
        let cutoff = now_ms.saturating_sub(options.ttl.as_millis() as u64);
        let stale: Vec<ChannelName> = self
            .channels
            .iter()
            .filter(|(_, c)| c.entries.front().is_some_and(|e| e.published_ms < cutoff))
            .map(|(name, _)| name.clone())
            .collect();
        for channel in stale {
            while self
                .channels
                .get(&channel)
                .and_then(|c| c.entries.front())
                .is_some_and(|e| e.published_ms < cutoff)
            {
                self.evict_front(&channel, evicted);
            }
        }
        let window = options.recovery;
        self.departures
            .retain(|_, d| now.saturating_duration_since(d.at) <= window);
        // A channel with nothing kept and no departure naming it is forgotten, so that the
        // map is bounded by what is held; its ids start again at 1.
        let departed: std::collections::HashSet<&ChannelName> =
            self.departures.keys().map(|(_, channel)| channel).collect();
        self.channels
            .retain(|name, c| !c.entries.is_empty() || departed.contains(name));
    }

    /// Remembers that `user` left `channel` having been given `last_id`; `true` if an older
    /// departure had to be dropped to stay within [`MAX_DEPARTURES`].
    pub fn depart(
        &mut self,
        user: UserId,
        channel: ChannelName,
        last_id: u64,
        at: Instant,
    ) -> bool {
        let key = (user, channel);
        let mut dropped = false;
        if !self.departures.contains_key(&key) && self.departures.len() >= MAX_DEPARTURES {
            let oldest = self
                .departures
                .iter()
                .min_by_key(|(_, d)| d.at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.departures.remove(&oldest);
                dropped = true;
            }
        }
        self.departures.insert(key, Departure { last_id, at });
        dropped
    }

    /// The events `user` missed on `channel` since leaving, if they left within `window`;
    /// the departure is consumed either way.
    pub fn recover(
        &mut self,
        user: &UserId,
        channel: &ChannelName,
        now: Instant,
        window: Duration,
    ) -> Option<Replay> {
        let departure = self.departures.remove(&(user.clone(), channel.clone()))?;
        if now.saturating_duration_since(departure.at) > window {
            return None;
        }
        let history = self.channels.get(channel);
        let entries: Vec<Frames> = history
            .into_iter()
            .flat_map(|c| c.after(departure.last_id))
            .map(|e| e.frames.clone())
            .collect();
        Some(Replay {
            since: departure.last_id,
            entries,
            last_id: history.map_or(departure.last_id, |c| c.last_id),
        })
    }

    /// The events after `since` for a client that names it as its offset, if the first of
    /// them was published within `window` of `now_ms` (a client gone longer gets nothing,
    /// as past a departure's window).
    pub fn since_offset(
        &self,
        channel: &ChannelName,
        since: u64,
        now_ms: u64,
        window: Duration,
    ) -> Option<Replay> {
        let history = self.channels.get(channel)?;
        let entries: Vec<&HistoryEntry> = history.after(since).collect();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let first = entries.first()?;
        if first.published_ms < now_ms.saturating_sub(window_ms) {
            return None;
        }
        Some(Replay {
            since,
            entries: entries.iter().map(|e| e.frames.clone()).collect(),
            last_id: history.last_id,
        })
    }

    /// Up to `limit` events after `since` (all held when `None`), oldest first.
    pub fn page(&self, channel: &ChannelName, since: Option<u64>, limit: usize) -> HistoryPage {
        let Some(history) = self.channels.get(channel) else {
            return HistoryPage::default();
        };
        let since = since.unwrap_or(0);
        HistoryPage {
            events: history
                .after(since)
                .take(limit)
                .map(|e| PageEvent {
                    id: e.id,
                    event: e.event.clone(),
                    data: e.data.get().into(),
                    published_at_ms: e.published_ms,
                })
                .collect(),
            truncated: since < history.evicted_through,
        }
    }
}

/// History counters of one app on one shard (gauges are this shard's part; `/metrics` sums).
#[derive(Debug, Default)]
pub struct HistoryCounters {
    /// Events held (gauge).
    pub events: AtomicI64,
    /// Bytes held (gauge).
    pub bytes: AtomicI64,
    /// Events evicted by count, bytes or age.
    pub evictions: AtomicU64,
    /// Replays sent to returning users.
    pub replays: AtomicU64,
    /// Events replayed.
    pub replayed_events: AtomicU64,
    /// Departures dropped to stay within [`MAX_DEPARTURES`].
    pub departures_dropped: AtomicU64,
}

#[cfg(test)]
mod tests;
