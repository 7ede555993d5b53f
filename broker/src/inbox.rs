//! The inbox store (`[apps.inbox]`): each user's notifications, kept in their own `sled`
//! database (`data/inbox`, apart from the audit store, which never holds a message body)
//! until read, evicted, or past their ttl.
//!
//! Shards' writes arrive with `try_send` on a bounded queue (overflow is counted, a shard never
//! waits). One writer thread applies them and group-commits: every `flush_interval` it flushes,
//! so after a crash every notification older than the interval is on disk. Reads and acks run
//! on the same thread, answered through an `async_channel`, so no shard blocks on sled.
//!
//! Keys are the app id, the user id and the entry id (big-endian), separated by `0` bytes
//! (neither an app id nor a user id may hold one), so one user's entries are one ordered range,
//! oldest first. Entry ids come from sled's id generator: monotonic across restarts, crashes
//! included (it may skip ahead, never back).
//!
//! A second tree indexes the entries by app and creation time, so expiry (at start and every
//! minute) deletes a time range instead of reading every entry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{self, Flow, GroupCommit};

/// How often entries past their ttl are deleted.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);
/// Most notifications one read returns.
pub const MAX_READ: usize = 1000;

/// The store's settings (the limits are per app: [`AppLimits`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxSettings {
    /// Group-commit interval (the audit log's).
    pub flush_interval: Duration,
    /// Writes that may wait for the writer before new ones are dropped.
    pub queue_capacity: usize,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
}

/// One app's inbox bounds, from its `[apps.inbox]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppLimits {
    /// The app id, which the store's keys begin with.
    pub app_id: String,
    /// Entries kept per user; one more evicts the oldest.
    pub max_per_user: usize,
    /// Entries older than this are gone.
    pub ttl: Duration,
    /// Users with entries; a write for one more is refused.
    pub max_users: usize,
}

/// One app's inbox counters (`/metrics`).
#[derive(Default, Debug)]
pub struct AppInboxMetrics {
    /// Entries stored.
    pub written: AtomicU64,
    /// Entries deleted to make room under `max_per_user`.
    pub evicted: AtomicU64,
    /// Entries deleted past their ttl.
    pub expired: AtomicU64,
    /// Entries marked read.
    pub acked: AtomicU64,
    /// `GET /pending-notifications` reads answered.
    pub reads: AtomicU64,
    /// Writes refused because the app's inbox already holds `max_users` users.
    pub refused_users: AtomicU64,
}

/// The inbox writer's counters.
#[derive(Default, Debug)]
pub struct InboxMetrics {
    /// Per app, by the app's index; apps without `[apps.inbox]` stay at zero.
    pub apps: Vec<AppInboxMetrics>,
    /// Writes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Failed writes or flushes.
    pub errors: AtomicU64,
}

impl InboxMetrics {
    /// Counters for `apps` apps.
    pub fn new(apps: usize) -> Self {
        Self {
            apps: (0..apps).map(|_| AppInboxMetrics::default()).collect(),
            ..Self::default()
        }
    }

    fn app(&self, app: usize) -> Option<&AppInboxMetrics> {
        self.apps.get(app)
    }
}

/// A notification to store, stamped by the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreEntry {
    /// The app's index.
    pub app: usize,
    /// Whose inbox.
    pub user: String,
    /// The channel it was published on.
    pub channel: String,
    /// The event name.
    pub event: String,
    /// The data string.
    pub data: String,
    /// When the node accepted the publish (Unix ms).
    pub created_at_ms: u64,
}

/// A stored notification as `/pending-notifications` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The store-wide id, for acks.
    pub id: u64,
    /// The channel it was published on.
    pub channel: String,
    /// The event name.
    pub event: String,
    /// The data string.
    pub data: String,
    /// When the node accepted the publish (Unix ms).
    pub created_at_ms: u64,
}

/// What a user has unread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The oldest unread ones, at most the limit asked for.
    pub notifications: Vec<Notification>,
    /// Every unread one.
    pub unread: usize,
}

/// The stored form of an entry (its id is in the key).
#[derive(Serialize, Deserialize)]
struct Stored {
    channel: String,
    event: String,
    data: String,
    created_at_ms: u64,
    read: bool,
}

/// Why a read or an ack was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    /// The writer's queue is full.
    #[error("the inbox store is busy; try again")]
    Busy,
    /// The app has no `[apps.inbox]`.
    #[error("the app keeps no inbox")]
    NoInbox,
    /// sled failed.
    #[error("the inbox store failed: {0}")]
    Store(String),
}

enum Message {
    Write(StoreEntry),
    Pending {
        app: usize,
        user: String,
        limit: usize,
        now_ms: u64,
        reply: async_channel::Sender<Result<Pending, InboxError>>,
    },
    Ack {
        app: usize,
        user: String,
        ids: Vec<u64>,
        reply: async_channel::Sender<Result<usize, InboxError>>,
    },
    Stop,
}

pub use crate::store::OpenError;

/// The store's name in errors.
const STORE: &str = "inbox";

/// The shards' and the HTTP side's handle on the inbox store.
#[derive(Clone)]
pub struct Inbox {
    tx: SyncSender<Message>,
    metrics: Arc<InboxMetrics>,
}

impl Inbox {
    /// Opens (or creates) the store in `dir` for the apps `limits` (by app index; `None`:
    /// no inbox), deletes what is past its ttl, and starts the writer thread.
    pub fn open(
        dir: &Path,
        settings: InboxSettings,
        limits: Vec<Option<AppLimits>>,
        metrics: Arc<InboxMetrics>,
    ) -> Result<(Inbox, std::thread::JoinHandle<()>), OpenError> {
        let failed = |source| OpenError::new(STORE, dir, source);
        let db = store::open_db(STORE, dir, settings.cache_bytes)?;
        let tree = db.open_tree("entries").map_err(failed)?;
        let by_time = db.open_tree("by_time").map_err(failed)?;
        let mut writer = Writer {
            users: limits.iter().map(|_| HashMap::new()).collect(),
            limits,
            db,
            tree,
            by_time,
            settings: settings.clone(),
            metrics: metrics.clone(),
            dirty: false,
        };
        writer.count_users();
        writer.expire(now_ms());
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.queue_capacity.max(1));
        let thread = store::spawn_writer(STORE, dir, "ringcast-inbox", writer, rx)?;
        Ok((Inbox { tx, metrics }, thread))
    }

    /// Hands entries over without blocking; what does not fit is counted and dropped.
    pub fn push_all(&self, entries: &mut Vec<StoreEntry>) {
        for entry in entries.drain(..) {
            if self.tx.try_send(Message::Write(entry)).is_err() {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The oldest `limit` unread notifications of `user` and how many are unread, as of
    /// `now_ms` (what is past its ttl is not).
    pub fn pending(
        &self,
        app: usize,
        user: &str,
        limit: usize,
        now_ms: u64,
    ) -> async_channel::Receiver<Result<Pending, InboxError>> {
        let (reply, answer) = async_channel::bounded(1);
        let message = Message::Pending {
            app,
            user: user.to_owned(),
            limit,
            now_ms,
            reply: reply.clone(),
        };
        if self.tx.try_send(message).is_err() {
            let _ = reply.try_send(Err(InboxError::Busy));
        }
        answer
    }

    /// Marks those of `ids` that are `user`'s read; answers how many were unread.
    pub fn ack(
        &self,
        app: usize,
        user: &str,
        ids: Vec<u64>,
    ) -> async_channel::Receiver<Result<usize, InboxError>> {
        let (reply, answer) = async_channel::bounded(1);
        let message = Message::Ack {
            app,
            user: user.to_owned(),
            ids,
            reply: reply.clone(),
        };
        if self.tx.try_send(message).is_err() {
            let _ = reply.try_send(Err(InboxError::Busy));
        }
        answer
    }

    /// Flushes what is written, then stops the writer.
    pub fn stop(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.tx.try_send(Message::Stop) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(_)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The key prefix of `user`'s entries in `app`.
fn user_prefix(app_id: &str, user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(app_id.len() + user.len() + 10);
    key.extend_from_slice(app_id.as_bytes());
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key
}

/// The key of entry `id` of `app_id`, created at `created_at_ms`, in the time index: the app,
/// then the time and the id (big-endian), so each app's entries sort by time.
fn time_key(app_id: &str, created_at_ms: u64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(app_id.len() + 17);
    key.extend_from_slice(app_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&created_at_ms.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The app id, the user id and the entry id of a key.
fn split_key(key: &[u8]) -> Option<(&[u8], &[u8], u64)> {
    let id_at = key.len().checked_sub(8)?;
    let (head, id) = key.split_at(id_at);
    let head = head.strip_suffix(&[0])?;
    let sep = head.iter().position(|&b| b == 0)?;
    let (app, user) = head.split_at(sep);
    let id = u64::from_be_bytes(id.try_into().ok()?);
    Some((app, user.get(1..)?, id))
}

fn failed(metrics: &InboxMetrics, err: &sled::Error) {
    metrics.errors.fetch_add(1, Ordering::Relaxed);
    tracing::error!(%err, "inbox store operation failed");
}

struct Writer {
    limits: Vec<Option<AppLimits>>,
    /// Per app, each user with entries and how many.
    users: Vec<HashMap<String, usize>>,
    db: sled::Db,
    tree: sled::Tree,
    /// Each entry by its app and time ([`time_key`]), valued by its key in `tree`: what is
    /// past a ttl is one range, found without reading the entries.
    by_time: sled::Tree,
    settings: InboxSettings,
    metrics: Arc<InboxMetrics>,
    /// Changes since the last flush.
    dirty: bool,
}

impl GroupCommit for Writer {
    type Message = Message;

    fn flush_interval(&self) -> Duration {
        self.settings.flush_interval
    }

    fn chore_every(&self) -> Option<Duration> {
        Some(EXPIRY_EVERY)
    }

    fn handle(&mut self, message: Message) -> Flow {
        match message {
            Message::Write(entry) => self.write(entry),
            Message::Pending {
                app,
                user,
                limit,
                now_ms,
                reply,
            } => {
                let _ = reply.try_send(self.pending(app, &user, limit, now_ms));
            }
            Message::Ack {
                app,
                user,
                ids,
                reply,
            } => {
                let _ = reply.try_send(self.ack(app, &user, &ids));
            }
            Message::Stop => return Flow::Stop,
        }
        Flow::Go
    }

    fn commit(&mut self) {
        Writer::commit(self);
    }

    fn chores(&mut self) {
        self.expire(now_ms());
    }
}

impl Writer {
    /// Counts each user's entries (at start).
    fn count_users(&mut self) {
        let ids: HashMap<Vec<u8>, usize> = self
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((l.as_ref()?.app_id.as_bytes().to_vec(), i)))
            .collect();
        for item in self.tree.iter().keys() {
            let Ok(key) = item else { break };
            let Some((app, user, _)) = split_key(&key) else {
                continue;
            };
            if let (Some(&i), Ok(user)) = (ids.get(app), std::str::from_utf8(user))
                && let Some(users) = self.users.get_mut(i)
            {
                *users.entry(user.to_owned()).or_default() += 1;
            }
        }
    }

    fn write(&mut self, entry: StoreEntry) {
        let Some(Some(limits)) = self.limits.get(entry.app) else {
            return;
        };
        let Some(metrics) = self.metrics.app(entry.app) else {
            return;
        };
        let Some(users) = self.users.get_mut(entry.app) else {
            return;
        };
        if !users.contains_key(&entry.user) && users.len() >= limits.max_users {
            metrics.refused_users.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let prefix = user_prefix(&limits.app_id, &entry.user);
        let id = match self.db.generate_id() {
            Ok(id) => id,
            Err(err) => return failed(&self.metrics, &err),
        };
        let stored = Stored {
            channel: entry.channel,
            event: entry.event,
            data: entry.data,
            created_at_ms: entry.created_at_ms,
            read: false,
        };
        let Ok(value) = serde_json::to_vec(&stored) else {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut key = prefix.clone();
        key.extend_from_slice(&id.to_be_bytes());
        // The index first: a crash between the two leaves an index entry for nothing, which
        // expiry skips, never an entry that no expiry finds.
        let indexed = self
            .by_time
            .insert(time_key(&limits.app_id, stored.created_at_ms, id), &key[..]);
        if let Err(err) = indexed.and_then(|_| self.tree.insert(&key, value)) {
            return failed(&self.metrics, &err);
        }
        self.dirty = true;
        metrics.written.fetch_add(1, Ordering::Relaxed);
        let count = users.entry(entry.user).or_default();
        *count += 1;
        while *count > limits.max_per_user {
            match self.tree.scan_prefix(&prefix).next() {
                Some(Ok((oldest, value))) => {
                    if self.tree.remove(&oldest).is_err() {
                        break;
                    }
                    let created = serde_json::from_slice::<Stored>(&value).map(|s| s.created_at_ms);
                    if let (Ok(created), Some((_, _, id))) = (created, split_key(&oldest)) {
                        let _ = self.by_time.remove(time_key(&limits.app_id, created, id));
                    }
                    *count -= 1;
                    metrics.evicted.fetch_add(1, Ordering::Relaxed);
                }
                _ => break,
            }
        }
    }

    fn pending(
        &self,
        app: usize,
        user: &str,
        limit: usize,
        now_ms: u64,
    ) -> Result<Pending, InboxError> {
        let limits = self
            .limits
            .get(app)
            .and_then(Option::as_ref)
            .ok_or(InboxError::NoInbox)?;
        if let Some(metrics) = self.metrics.app(app) {
            metrics.reads.fetch_add(1, Ordering::Relaxed);
        }
        let cutoff = now_ms.saturating_sub(limits.ttl.as_millis() as u64);
        let mut notifications = Vec::new();
        let mut unread = 0;
        for item in self.tree.scan_prefix(user_prefix(&limits.app_id, user)) {
            let (key, value) = item.map_err(|e| InboxError::Store(e.to_string()))?;
            let Some((_, _, id)) = split_key(&key) else {
                continue;
            };
            let Ok(stored) = serde_json::from_slice::<Stored>(&value) else {
                continue;
            };
            if stored.read || stored.created_at_ms < cutoff {
                continue;
            }
            unread += 1;
            if notifications.len() < limit {
                notifications.push(Notification {
                    id,
                    channel: stored.channel,
                    event: stored.event,
                    data: stored.data,
                    created_at_ms: stored.created_at_ms,
                });
            }
        }
        Ok(Pending {
            notifications,
            unread,
        })
    }

    fn ack(&mut self, app: usize, user: &str, ids: &[u64]) -> Result<usize, InboxError> {
        let limits = self
            .limits
            .get(app)
            .and_then(Option::as_ref)
            .ok_or(InboxError::NoInbox)?;
        let prefix = user_prefix(&limits.app_id, user);
        let mut acked = 0;
        for id in ids {
            let mut key = prefix.clone();
            key.extend_from_slice(&id.to_be_bytes());
            let found = self
                .tree
                .get(&key)
                .map_err(|e| InboxError::Store(e.to_string()))?;
            let Some(mut stored) = found.and_then(|v| serde_json::from_slice::<Stored>(&v).ok())
            else {
                continue;
            };
            if stored.read {
                continue;
            }
            stored.read = true;
            let value =
                serde_json::to_vec(&stored).map_err(|e| InboxError::Store(e.to_string()))?;
            self.tree
                .insert(key, value)
                .map_err(|e| InboxError::Store(e.to_string()))?;
            acked += 1;
        }
        if acked > 0 {
            self.dirty = true;
            if let Some(metrics) = self.metrics.app(app) {
                metrics.acked.fetch_add(acked as u64, Ordering::Relaxed);
            }
        }
        Ok(acked)
    }

    /// Deletes entries past their app's ttl as of `now_ms` (and those of apps that no longer
    /// keep an inbox are left alone: turning `[apps.inbox]` back on finds them).
    fn expire(&mut self, now_ms: u64) {
        for (app, limits) in self.limits.iter().enumerate() {
            let Some(limits) = limits else { continue };
            let cutoff = now_ms.saturating_sub(limits.ttl.as_millis() as u64);
            let mut doomed = Vec::new();
            let from = time_key(&limits.app_id, 0, 0);
            let until = time_key(&limits.app_id, cutoff, 0);
            for item in self.by_time.range(from..until) {
                let Ok((time, key)) = item else { break };
                doomed.push((time, key));
            }
            for (time, key) in doomed {
                let _ = self.by_time.remove(&time);
                self.dirty = true;
                if self.tree.remove(&key).ok().flatten().is_none() {
                    continue;
                }
                if let Some(metrics) = self.metrics.app(app) {
                    metrics.expired.fetch_add(1, Ordering::Relaxed);
                }
                let user = split_key(&key).and_then(|(_, u, _)| std::str::from_utf8(u).ok());
                if let (Some(user), Some(users)) = (user, self.users.get_mut(app))
                    && let Some(count) = users.get_mut(user)
                {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        users.remove(user);
                    }
                }
            }
        }
    }

    fn commit(&mut self) {
        if std::mem::take(&mut self.dirty)
            && let Err(err) = self.db.flush()
        {
            failed(&self.metrics, &err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> InboxSettings {
        InboxSettings {
            flush_interval: Duration::from_millis(20),
            queue_capacity: 1000,
            cache_bytes: 1 << 20,
        }
    }

    fn limits(max_per_user: usize, max_users: usize) -> Vec<Option<AppLimits>> {
        vec![Some(AppLimits {
            app_id: "1".into(),
            max_per_user,
            ttl: Duration::from_secs(3600),
            max_users,
        })]
    }

    fn entry(user: &str, event: &str, created_at_ms: u64) -> StoreEntry {
        StoreEntry {
            app: 0,
            user: user.into(),
            channel: format!("private-user.{user}"),
            event: event.into(),
            data: format!("{{\"for\":\"{user}\"}}"),
            created_at_ms,
        }
    }

    fn pending(inbox: &Inbox, user: &str) -> Pending {
        inbox
            .pending(0, user, MAX_READ, now_ms())
            .recv_blocking()
            .unwrap()
            .unwrap()
    }

    fn events(pending: &Pending) -> Vec<&str> {
        pending
            .notifications
            .iter()
            .map(|n| n.event.as_str())
            .collect()
    }

    fn open(dir: &Path, limits: Vec<Option<AppLimits>>) -> (Inbox, std::thread::JoinHandle<()>) {
        opened(dir, limits, Arc::new(InboxMetrics::new(1)))
    }

    /// Opens the store in `dir`; a reopen may find sled's lock still held for a moment after
    /// the last handle went (its own threads let go of it), so it is tried for up to 5 s.
    fn opened(
        dir: &Path,
        limits: Vec<Option<AppLimits>>,
        metrics: Arc<InboxMetrics>,
    ) -> (Inbox, std::thread::JoinHandle<()>) {
        retrying(|| Inbox::open(dir, settings(), limits.clone(), metrics.clone()))
    }

    /// `open`'s answer once it is `Ok`, asked for up to 5 s (see [`opened`]).
    fn retrying<T, E: std::fmt::Display>(open: impl Fn() -> Result<T, E>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match open() {
                Ok(opened) => return opened,
                Err(err) if Instant::now() >= deadline => panic!("{err}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    #[test]
    fn ids_keep_rising_across_a_reopen_and_entries_survive_it() {
        let dir = tempdir();
        let first = {
            let (inbox, thread) = open(&dir, limits(50, 10));
            inbox.push_all(&mut vec![
                entry("42", "a", now_ms()),
                entry("42", "b", now_ms()),
            ]);
            let first = pending(&inbox, "42");
            inbox.stop(Duration::from_secs(1));
            thread.join().unwrap();
            first
        };
        assert_eq!(events(&first), ["a", "b"]);
        let (inbox, _thread) = open(&dir, limits(50, 10));
        inbox.push_all(&mut vec![entry("42", "c", now_ms())]);
        let again = pending(&inbox, "42");
        assert_eq!(events(&again), ["a", "b", "c"]);
        let ids: Vec<u64> = again.notifications.iter().map(|n| n.id).collect();
        assert_eq!(
            &ids[..2],
            &[first.notifications[0].id, first.notifications[1].id]
        );
        assert!(ids[2] > ids[1], "{ids:?}");
        inbox.stop(Duration::from_secs(1));
    }

    #[test]
    fn the_entry_past_max_per_user_evicts_the_oldest() {
        let dir = tempdir();
        let metrics = Arc::new(InboxMetrics::new(1));
        let (inbox, thread) = opened(&dir, limits(50, 10), metrics.clone());
        let mut entries: Vec<StoreEntry> = (0..50)
            .map(|i| entry("7", &format!("e{i}"), now_ms()))
            .collect();
        inbox.push_all(&mut entries);
        let fifty = pending(&inbox, "7");
        assert_eq!(fifty.unread, 50);
        assert_eq!(fifty.notifications[0].event, "e0");
        assert_eq!(metrics.apps[0].evicted.load(Ordering::Relaxed), 0);
        inbox.push_all(&mut vec![entry("7", "e50", now_ms())]);
        let kept = pending(&inbox, "7");
        assert_eq!(kept.unread, 50);
        assert_eq!(kept.notifications[0].event, "e1");
        assert_eq!(kept.notifications[49].event, "e50");
        assert_eq!(metrics.apps[0].evicted.load(Ordering::Relaxed), 1);
        inbox.stop(Duration::from_secs(1));
        thread.join().unwrap();
        drop(inbox);
        // The evicted entry left the time index with it.
        let db = retrying(|| sled::open(&dir));
        assert_eq!(db.open_tree("entries").unwrap().len(), 50);
        assert_eq!(db.open_tree("by_time").unwrap().len(), 50);
    }

    #[test]
    fn entries_past_the_ttl_are_neither_read_nor_kept() {
        let dir = tempdir();
        let (inbox, thread) = open(&dir, limits(50, 10));
        let hour_and_a_bit_ago = now_ms() - 3_601_000;
        inbox.push_all(&mut vec![
            entry("9", "old", hour_and_a_bit_ago),
            entry("9", "new", now_ms()),
        ]);
        let read = pending(&inbox, "9");
        assert_eq!(events(&read), ["new"]);
        assert_eq!(read.unread, 1);
        inbox.stop(Duration::from_secs(1));
        thread.join().unwrap();
        drop(inbox);
        // Expiry runs when a writer starts.
        let metrics = Arc::new(InboxMetrics::new(1));
        let (inbox, _thread) = opened(&dir, limits(50, 10), metrics.clone());
        assert_eq!(metrics.apps[0].expired.load(Ordering::Relaxed), 1);
        assert_eq!(events(&pending(&inbox, "9")), ["new"]);
        inbox.stop(Duration::from_secs(1));
    }

    #[test]
    fn an_ack_marks_only_the_callers_own_entries_read() {
        let dir = tempdir();
        let (inbox, _thread) = open(&dir, limits(50, 10));
        inbox.push_all(&mut vec![
            entry("1", "mine-a", now_ms()),
            entry("1", "mine-b", now_ms()),
            entry("2", "theirs", now_ms()),
        ]);
        let mine: Vec<u64> = pending(&inbox, "1")
            .notifications
            .iter()
            .map(|n| n.id)
            .collect();
        let theirs = pending(&inbox, "2").notifications[0].id;
        let acked = inbox
            .ack(0, "1", vec![mine[0], theirs, 999_999_999])
            .recv_blocking()
            .unwrap();
        assert_eq!(acked, Ok(1));
        assert_eq!(events(&pending(&inbox, "1")), ["mine-b"]);
        assert_eq!(events(&pending(&inbox, "2")), ["theirs"]);
        let again = inbox.ack(0, "1", vec![mine[0]]).recv_blocking().unwrap();
        assert_eq!(again, Ok(0));
        inbox.stop(Duration::from_secs(1));
    }

    #[test]
    fn a_user_past_max_users_is_refused_and_counted() {
        let dir = tempdir();
        let metrics = Arc::new(InboxMetrics::new(1));
        let (inbox, _thread) = opened(&dir, limits(50, 2), metrics.clone());
        inbox.push_all(&mut vec![
            entry("a", "1", now_ms()),
            entry("b", "1", now_ms()),
            entry("c", "1", now_ms()),
            entry("a", "2", now_ms()),
        ]);
        assert_eq!(events(&pending(&inbox, "a")), ["1", "2"]);
        assert_eq!(pending(&inbox, "c").unread, 0);
        assert_eq!(metrics.apps[0].refused_users.load(Ordering::Relaxed), 1);
        inbox.stop(Duration::from_secs(1));
    }

    #[test]
    fn keys_split_into_app_user_and_id() {
        let mut key = user_prefix("app", "u.1");
        key.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(split_key(&key), Some((&b"app"[..], &b"u.1"[..], 7)));
        assert_eq!(split_key(b"short"), None);
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ringcast-inbox-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
