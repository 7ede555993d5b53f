//! The history store: history channels' kept events in a `sled` database of their own
//! (`data/history`, apart from the audit store, which never holds a message body).
//!
//! Shards decide what is kept and what is evicted ([`HistoryWrite`]s, in order) and hand them
//! over with `try_send` on a bounded queue (overflow is counted, a shard never waits). One
//! writer thread applies them and group-commits: every `flush_interval` (the audit flush
//! interval) it calls `flush`, so after a crash what is older than the interval is on disk.
//! Keys are the app id, the channel and the event id (big-endian), `\0` between, so a
//! channel's events sort by id; the value is the publish time (Unix ms, big-endian) followed
//! by the event's Pusher frame. At start the store is read back (past `ttl_secs` and beyond
//! `max_events` deleted first) and handed to the shards, each keeping its own channels.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::core::channel::ChannelName;
use crate::core::history::{HistoryWrite, StoredEvent};
use crate::core::options::{AppConfig, HistoryConfig};
use crate::store::{self, Flow, GroupCommit};

/// History store settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Group-commit interval.
    pub flush_interval: Duration,
    /// Writes that may wait for the writer before new ones are dropped.
    pub queue_capacity: usize,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
}

/// Counters of the history writer.
#[derive(Default, Debug)]
pub struct HistoryMetrics {
    /// Events stored.
    pub written: AtomicU64,
    /// Events deleted (evicted by a shard, or found expired or over a bound at start).
    pub deleted: AtomicU64,
    /// Writes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Failed writes or flushes.
    pub errors: AtomicU64,
}

/// One channel's stored events as loaded at start: the app's id, the channel, its events
/// oldest first.
pub type LoadedChannel = (String, ChannelName, Vec<StoredEvent>);

pub use crate::store::OpenError;

/// The store's name in errors.
const STORE: &str = "history";

enum Message {
    Write(HistoryWrite),
    Stop,
}

/// The shards' side of the history store.
#[derive(Clone)]
pub struct HistoryStore {
    tx: SyncSender<Message>,
    metrics: Arc<HistoryMetrics>,
}

/// What `app`'s history keeps, if it has any.
fn history_of<'a>(
    apps: &'a [AppConfig],
    app_id: &str,
) -> Option<(&'a AppConfig, &'a HistoryConfig)> {
    apps.iter()
        .find(|a| a.id == app_id)
        .and_then(|a| a.history.as_ref().map(|h| (a, h)))
}

fn key(app: &str, channel: &str, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(app.len() + channel.len() + 10);
    key.extend_from_slice(app.as_bytes());
    key.push(0);
    key.extend_from_slice(channel.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Reads a key back: app id, channel, event id.
fn parse_key(key: &[u8]) -> Option<(&str, &str, u64)> {
    let (rest, id) = key.split_last_chunk::<8>()?;
    let rest = rest.strip_suffix(&[0])?;
    let split = rest.iter().position(|&b| b == 0)?;
    let app = std::str::from_utf8(rest.get(..split)?).ok()?;
    let channel = std::str::from_utf8(rest.get(split + 1..)?).ok()?;
    Some((app, channel, u64::from_be_bytes(*id)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl HistoryStore {
    /// Opens (or creates) the store in `dir`, loads what `apps` still keep (deleting the
    /// rest: expired, over `max_events`, of an app or channel no longer kept, unreadable) and
    /// starts the writer thread.
    pub fn open(
        dir: &Path,
        settings: HistorySettings,
        metrics: Arc<HistoryMetrics>,
        apps: &[AppConfig],
    ) -> Result<
        (
            HistoryStore,
            std::thread::JoinHandle<()>,
            Vec<LoadedChannel>,
        ),
        OpenError,
    > {
        let fail = |source| OpenError::new(STORE, dir, source);
        let db = store::open_db(STORE, dir, settings.cache_bytes)?;
        let tree = db.open_tree("events").map_err(fail)?;
        let loaded = load(&tree, apps, now_ms(), &metrics);
        db.flush().map_err(fail)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.queue_capacity.max(1));
        let writer = Writer {
            db,
            tree,
            flush_interval: settings.flush_interval,
            metrics: metrics.clone(),
            dirty: false,
        };
        let thread = store::spawn_writer(STORE, dir, "ringcast-history", writer, rx)?;
        Ok((HistoryStore { tx, metrics }, thread, loaded))
    }

    /// Hands writes over without blocking; what does not fit is counted and dropped.
    pub fn push_all(&self, writes: &mut Vec<HistoryWrite>) {
        for write in writes.drain(..) {
            if self.tx.try_send(Message::Write(write)).is_err() {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes and flushes what is pending, then stops the writer.
    pub fn stop(&self, timeout: Duration) {
        crate::audit::send_stop(&self.tx, || Message::Stop, timeout);
    }
}

/// Reads the store, deleting what is no longer to be kept, into channels of events.
fn load(
    tree: &sled::Tree,
    apps: &[AppConfig],
    now_ms: u64,
    metrics: &HistoryMetrics,
) -> Vec<LoadedChannel> {
    let mut channels: BTreeMap<(String, String), Vec<StoredEvent>> = BTreeMap::new();
    let mut doomed = Vec::new();
    for (raw_key, value) in tree.iter().filter_map(Result::ok) {
        let parsed = parse_key(&raw_key).and_then(|(app, channel, id)| {
            let (config, history) = history_of(apps, app)?;
            let name = ChannelName::parse(channel, config.max_channel_name_chars).ok()?;
            let options = crate::core::history::HistoryOptions::compile(history).ok()?;
            let (published, frame) = value.split_first_chunk::<8>()?;
            let published_ms = u64::from_be_bytes(*published);
            let ttl_ms = u64::try_from(history.ttl.as_millis()).unwrap_or(u64::MAX);
            let fresh = published_ms >= now_ms.saturating_sub(ttl_ms);
            (options.covers(&name) && fresh).then(|| {
                let event = StoredEvent {
                    id,
                    published_ms,
                    frame: Bytes::copy_from_slice(frame),
                };
                ((app.to_owned(), channel.to_owned()), event)
            })
        });
        match parsed {
            Some((at, event)) => channels.entry(at).or_default().push(event),
            None => doomed.push(raw_key),
        }
    }
    let mut out = Vec::with_capacity(channels.len());
    for ((app, channel), mut events) in channels {
        let (Some((_, history)), Ok(name)) = (
            history_of(apps, &app),
            ChannelName::parse(&channel, usize::MAX),
        ) else {
            continue;
        };
        let excess = events.len().saturating_sub(history.max_events);
        doomed.extend(
            events
                .drain(..excess)
                .map(|e| key(&app, &channel, e.id).into()),
        );
        out.push((app, name, events));
    }
    let mut batch = sled::Batch::default();
    let deleted = doomed.len() as u64;
    for key in doomed {
        batch.remove(key);
    }
    match tree.apply_batch(batch) {
        Ok(()) => {
            metrics.deleted.fetch_add(deleted, Ordering::Relaxed);
        }
        Err(err) => {
            metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%err, "history store: deleting at start failed");
        }
    }
    out
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    flush_interval: Duration,
    metrics: Arc<HistoryMetrics>,
    /// Writes since the last flush.
    dirty: bool,
}

impl GroupCommit for Writer {
    type Message = Message;

    fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    fn handle(&mut self, message: Message) -> Flow {
        match message {
            Message::Write(write) => self.apply(write),
            Message::Stop => return Flow::Stop,
        }
        Flow::Go
    }

    fn commit(&mut self) {
        Writer::commit(self);
    }
}

impl Writer {
    fn apply(&mut self, write: HistoryWrite) {
        let result = match write {
            HistoryWrite::Append {
                app,
                channel,
                event,
            } => {
                let mut value = Vec::with_capacity(8 + event.frame.len());
                value.extend_from_slice(&event.published_ms.to_be_bytes());
                value.extend_from_slice(&event.frame);
                let written = self
                    .tree
                    .insert(key(&app, channel.as_str(), event.id), value);
                written.map(|_| self.metrics.written.fetch_add(1, Ordering::Relaxed))
            }
            HistoryWrite::Evict {
                app,
                channel,
                through,
            } => {
                let range = key(&app, channel.as_str(), 0)..=key(&app, channel.as_str(), through);
                let mut batch = sled::Batch::default();
                let mut count = 0u64;
                for (k, _) in self.tree.range(range).filter_map(Result::ok) {
                    batch.remove(k);
                    count += 1;
                }
                let applied = self.tree.apply_batch(batch);
                applied.map(|()| self.metrics.deleted.fetch_add(count, Ordering::Relaxed))
            }
        };
        match result {
            Ok(_) => self.dirty = true,
            Err(err) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%err, "history store write failed");
            }
        }
    }

    /// Flushes what was written since the last commit (group commit).
    fn commit(&mut self) {
        if std::mem::take(&mut self.dirty)
            && let Err(err) = self.db.flush()
        {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%err, "history store flush failed");
        }
    }
}

#[cfg(test)]
mod tests;
