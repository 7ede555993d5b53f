//! The audit log: authorization decisions and security events, stored in `sled`, encoded with
//! `rkyv`.
//!
//! Shards hand records over with `try_send` on a bounded queue (overflow is counted, a shard
//! never waits). One writer thread batches them and group-commits: every `flush_interval` it
//! applies the batch and calls `flush`, so after a crash every record older than the interval
//! is on disk. Keys are the record time (ms, big-endian) followed by a sled-generated id, so
//! they sort by time. Queries run on the same thread, never on a shard. Records hold no message
//! bodies: the type has no field for one.
//!
//! The same writer also persists the resources app backends set for channel policies (a
//! separate tree, same group commit), so they survive a restart.

use std::path::Path;

use crate::store::{self, Flow, GroupCommit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringcast_shared::{AuditDecision, AuditKind, AuditPage, AuditRecord};

/// Most records one query returns.
pub const MAX_PAGE: usize = 1000;
/// Most records one query looks at before returning what it has (with a cursor to go on).
const MAX_SCAN: usize = 100_000;
/// How often old records are pruned.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Audit settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// Group-commit interval.
    pub flush_interval: Duration,
    /// Records older than this are deleted.
    pub retention: Duration,
    /// At most this many records are kept (the oldest go first).
    pub max_records: u64,
    /// Records that may wait for the writer before new ones are dropped.
    pub queue_capacity: usize,
    /// sled's page cache, in bytes (sled's default, 1 GiB, would let the cache grow with
    /// every record written).
    pub cache_bytes: u64,
}

/// Counters of the audit writer.
#[derive(Default, Debug)]
pub struct AuditMetrics {
    /// Records stored.
    pub written: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Records deleted by retention.
    pub pruned: AtomicU64,
    /// Failed writes or flushes.
    pub errors: AtomicU64,
}

/// A search over the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only security events and denials.
    pub security_only: bool,
    /// App id.
    pub app: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Decision.
    pub decision: Option<AuditDecision>,
    /// From this time (ms, inclusive).
    pub since_ms: Option<u64>,
    /// Until this time (ms, inclusive).
    pub until_ms: Option<u64>,
    /// Page size (capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
}

/// A resource change to persist: `value` `None` deletes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceWrite {
    /// The app id.
    pub app: String,
    /// Resource type.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// The resource, or `None` to delete it.
    pub value: Option<crate::core::policy::Resource>,
}

/// A persisted resource, as loaded at start: app id, type, id, resource.
pub type LoadedResource = (String, String, String, crate::core::policy::Resource);

/// A token revocation to persist (`POST /apps/{id}/tokens/revoke`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationWrite {
    /// The app id.
    pub app: String,
    /// What is revoked, as a [`crate::core::app::Revocation::key`].
    pub key: String,
    /// Until when (Unix seconds); the store forgets it at the first start after.
    pub until_unix: u64,
}

/// A change the store keeps beside the audit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreWrite {
    /// A resource set or deleted.
    Resource(ResourceWrite),
    /// A token or a user's tokens revoked.
    Revocation(RevocationWrite),
}

/// What the store held at start, for the shards' shared state.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The resources.
    pub resources: Vec<LoadedResource>,
    /// The revocations still in force.
    pub revocations: Vec<RevocationWrite>,
}

enum Message {
    Record(AuditRecord),
    Resource(ResourceWrite),
    Revocation(RevocationWrite),
    Query(AuditQuery, async_channel::Sender<Result<AuditPage, String>>),
    Stop,
}

pub use crate::store::OpenError;

/// The store's name in errors.
const STORE: &str = "audit";

/// The shards' side of the audit log.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    metrics: Arc<AuditMetrics>,
}

impl AuditLog {
    /// Opens (or creates) the store in `dir`, loads the persisted resources and starts the
    /// writer thread.
    pub fn open(
        dir: &Path,
        settings: AuditSettings,
        metrics: Arc<AuditMetrics>,
    ) -> Result<(AuditLog, std::thread::JoinHandle<()>, Loaded), OpenError> {
        let failed = |source| OpenError::new(STORE, dir, source);
        let db = store::open_db(STORE, dir, settings.cache_bytes)?;
        let tree = db.open_tree("audit").map_err(failed)?;
        let resources = db.open_tree("resources").map_err(failed)?;
        let loaded = resources
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(key, value)| {
                let mut parts = key
                    .split(|&b| b == 0)
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let (app, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
                Some((app, kind, id, serde_json::from_slice(&value).ok()?))
            })
            .collect();
        let revocations = db.open_tree("revocations").map_err(failed)?;
        let now_unix = now_ms() / 1000;
        let mut live = Vec::new();
        for (key, value) in revocations.iter().filter_map(Result::ok) {
            let parsed = key.split(|&b| b == 0).collect::<Vec<_>>();
            let until = <[u8; 8]>::try_from(&value[..]).map(u64::from_be_bytes);
            match (parsed.as_slice(), until) {
                ([app, key], Ok(until_unix)) if until_unix > now_unix => {
                    live.push(RevocationWrite {
                        app: String::from_utf8_lossy(app).into_owned(),
                        key: String::from_utf8_lossy(key).into_owned(),
                        until_unix,
                    });
                }
                // Over, or not of this broker's making: forget it.
                _ => {
                    let _ = revocations.remove(key);
                }
            }
        }
        let loaded = Loaded {
            resources: loaded,
            revocations: live,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.queue_capacity.max(1));
        let writer = Writer {
            revocations,
            resources,
            dirty: false,
            count: tree.len() as u64,
            db,
            tree,
            settings,
            metrics: metrics.clone(),
            batch: Vec::new(),
            scratch: rkyv::util::AlignedVec::with_capacity(512),
        };
        let thread = store::spawn_writer(STORE, dir, "ringcast-audit", writer, rx)?;
        Ok((AuditLog { tx, metrics }, thread, loaded))
    }

    /// Hands records over without blocking; what does not fit is counted and dropped.
    pub fn push_all(&self, records: &mut Vec<AuditRecord>) {
        for record in records.drain(..) {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.tx.try_send(Message::Record(record))
            {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Persists a resource change or a revocation; `false` if the writer's queue is full (the
    /// caller reports the failure rather than losing the change silently).
    pub fn persist(&self, write: StoreWrite) -> bool {
        let message = match write {
            StoreWrite::Resource(write) => Message::Resource(write),
            StoreWrite::Revocation(write) => Message::Revocation(write),
        };
        self.tx.try_send(message).is_ok()
    }

    /// Runs a query on the writer thread; the answer arrives on the returned channel.
    pub fn query(&self, query: AuditQuery) -> async_channel::Receiver<Result<AuditPage, String>> {
        let (reply, answer) = async_channel::bounded(1);
        if self
            .tx
            .try_send(Message::Query(query, reply.clone()))
            .is_err()
        {
            let _ = reply.try_send(Err("the audit log is busy; try again".into()));
        }
        answer
    }

    /// Writes and flushes what is pending, then stops the writer.
    pub fn stop(&self, timeout: Duration) {
        send_stop(&self.tx, || Message::Stop, timeout);
    }
}

/// Queues a writer thread's stop message behind what is pending, waiting (at most
/// `timeout`) for room; a writer that has already gone needs none.
pub(crate) fn send_stop<M>(tx: &SyncSender<M>, stop: fn() -> M, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match tx.try_send(stop()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(_)) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

struct Writer {
    resources: sled::Tree,
    /// Revocations by app id and key, valued by their end (big-endian Unix seconds).
    revocations: sled::Tree,
    /// Resource changes since the last flush.
    dirty: bool,
    db: sled::Db,
    tree: sled::Tree,
    settings: AuditSettings,
    metrics: Arc<AuditMetrics>,
    batch: Vec<AuditRecord>,
    /// The buffer each record is serialized into, kept between records.
    scratch: rkyv::util::AlignedVec,
    count: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl GroupCommit for Writer {
    type Message = Message;

    fn flush_interval(&self) -> Duration {
        self.settings.flush_interval
    }

    fn chore_every(&self) -> Option<Duration> {
        Some(RETENTION_EVERY)
    }

    fn start(&mut self) {
        self.prune();
    }

    fn handle(&mut self, message: Message) -> Flow {
        match message {
            Message::Record(record) => self.batch.push(record),
            Message::Resource(write) => self.write_resource(&write),
            Message::Revocation(write) => self.write_revocation(&write),
            Message::Query(query, reply) => {
                // Queries see everything received so far.
                self.apply();
                let _ = reply.try_send(self.query(&query));
            }
            Message::Stop => return Flow::Stop,
        }
        Flow::Go
    }

    fn commit(&mut self) {
        Writer::commit(self);
    }

    fn chores(&mut self) {
        self.prune();
    }
}

impl Writer {
    /// Writes the batch (without flushing).
    fn apply(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut batch = sled::Batch::default();
        let mut written = 0u64;
        for record in self.batch.drain(..) {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let Ok(bytes) =
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&record, scratch)
            else {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let id = self.db.generate_id().unwrap_or(0);
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&record.time_ms.to_be_bytes());
            key[8..].copy_from_slice(&id.to_be_bytes());
            batch.insert(&key[..], bytes.as_slice());
            self.scratch = bytes;
            written += 1;
        }
        match self.tree.apply_batch(batch) {
            Ok(()) => {
                self.count += written;
                self.metrics.written.fetch_add(written, Ordering::Relaxed);
            }
            Err(err) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%err, "audit write failed");
            }
        }
    }

    fn write_revocation(&mut self, write: &RevocationWrite) {
        let key = [write.app.as_bytes(), write.key.as_bytes()].join(&0u8);
        if let Err(err) = self
            .revocations
            .insert(key, &write.until_unix.to_be_bytes()[..])
        {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%err, "revocation write failed");
        }
        self.dirty = true;
    }

    fn write_resource(&mut self, write: &ResourceWrite) {
        let key = [
            write.app.as_bytes(),
            write.kind.as_bytes(),
            write.id.as_bytes(),
        ]
        .join(&0u8);
        let result = match &write.value {
            Some(resource) => serde_json::to_vec(resource)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    self.resources
                        .insert(key, v)
                        .map(drop)
                        .map_err(|e| e.to_string())
                }),
            None => self
                .resources
                .remove(key)
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        if let Err(err) = result {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%err, "resource write failed");
        }
        self.dirty = true;
    }

    /// Writes the batch and flushes it to disk (group commit).
    fn commit(&mut self) {
        let had = !self.batch.is_empty() || std::mem::take(&mut self.dirty);
        self.apply();
        if had && let Err(err) = self.db.flush() {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%err, "audit flush failed");
        }
    }

    /// Deletes records past the retention age, then the oldest beyond `max_records`.
    fn prune(&mut self) {
        let cutoff = now_ms().saturating_sub(self.settings.retention.as_millis() as u64);
        let mut removed = 0u64;
        let mut doomed = Vec::new();
        for item in self.tree.range(..cutoff.to_be_bytes().to_vec()) {
            let Ok((key, _)) = item else { break };
            doomed.push(key);
        }
        let excess = self
            .count
            .saturating_sub(doomed.len() as u64)
            .saturating_sub(self.settings.max_records);
        if excess > 0 {
            for item in self.tree.iter().skip(doomed.len()).take(excess as usize) {
                let Ok((key, _)) = item else { break };
                doomed.push(key);
            }
        }
        for key in doomed {
            if self.tree.remove(key).ok().flatten().is_some() {
                removed += 1;
            }
        }
        self.count = self.count.saturating_sub(removed);
        self.metrics.pruned.fetch_add(removed, Ordering::Relaxed);
    }

    fn query(&self, query: &AuditQuery) -> Result<AuditPage, String> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let upper: Vec<u8> = match &query.cursor {
            Some(cursor) => hex::decode(cursor).map_err(|_| "invalid cursor".to_owned())?,
            None => (query.until_ms.unwrap_or(u64::MAX).saturating_add(1))
                .to_be_bytes()
                .to_vec(),
        };
        let lower = query.since_ms.unwrap_or(0).to_be_bytes().to_vec();
        let mut records = Vec::new();
        let mut next_cursor = None;
        let mut scanned = 0;
        for item in self.tree.range(lower..upper).rev() {
            let (key, value) = item.map_err(|e| e.to_string())?;
            scanned += 1;
            if scanned > MAX_SCAN || records.len() == limit {
                next_cursor = Some(hex::encode(&key).to_string());
                if records.len() == limit {
                    // The cursor is exclusive: continue just after the last record returned.
                    next_cursor = records
                        .last()
                        .map(|(k, _): &(sled::IVec, AuditRecord)| hex::encode(k));
                }
                break;
            }
            let Ok(record) = rkyv::from_bytes::<AuditRecord, rkyv::rancor::Error>(&value) else {
                continue;
            };
            if matches(query, &record) {
                records.push((key, record));
            }
        }
        Ok(AuditPage {
            records: records.into_iter().map(|(_, r)| r).collect(),
            next_cursor,
        })
    }
}

fn matches(query: &AuditQuery, record: &AuditRecord) -> bool {
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    (!query.security_only
        || record.kind == AuditKind::Security
        || record.decision == AuditDecision::Deny)
        && query.app.as_ref().is_none_or(|a| *a == record.app)
        && eq(&query.tenant, &record.tenant)
        && eq(&query.user, &record.user)
        && eq(&query.channel, &record.channel)
        && query.decision.is_none_or(|d| d == record.decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuditSettings {
        AuditSettings {
            flush_interval: Duration::from_millis(20),
            retention: Duration::from_secs(3600),
            max_records: 1000,
            queue_capacity: 1000,
            cache_bytes: 1 << 20,
        }
    }

    fn record(i: u64, decision: AuditDecision) -> AuditRecord {
        AuditRecord {
            time_ms: now_ms() - 1000 + i,
            kind: AuditKind::Decision,
            action: "subscribe".into(),
            app: "1".into(),
            tenant: Some(format!("t{}", i % 2)),
            user: Some(format!("u{i}")),
            actor: None,
            socket: None,
            remote_ip: None,
            channel: Some("private-x".into()),
            decision,
            rule: None,
            reason: None,
        }
    }

    fn page(log: &AuditLog, query: AuditQuery) -> AuditPage {
        log.query(query).recv_blocking().unwrap().unwrap()
    }

    #[test]
    fn records_are_stored_newest_first_filtered_and_paged() {
        let dir = tempdir();
        let (log, _thread, _) = AuditLog::open(&dir, settings(), Arc::default()).unwrap();
        let mut records: Vec<AuditRecord> = (0..10)
            .map(|i| {
                record(
                    i,
                    if i % 3 == 0 {
                        AuditDecision::Deny
                    } else {
                        AuditDecision::Allow
                    },
                )
            })
            .collect();
        log.push_all(&mut records);
        let all = page(
            &log,
            AuditQuery {
                limit: 100,
                ..Default::default()
            },
        );
        let users: Vec<_> = all
            .records
            .iter()
            .map(|r| r.user.clone().unwrap())
            .collect();
        assert_eq!(
            users,
            ["u9", "u8", "u7", "u6", "u5", "u4", "u3", "u2", "u1", "u0"]
        );
        let denied = page(
            &log,
            AuditQuery {
                security_only: true,
                limit: 100,
                ..Default::default()
            },
        );
        assert_eq!(denied.records.len(), 4);
        let t1 = page(
            &log,
            AuditQuery {
                tenant: Some("t1".into()),
                limit: 100,
                ..Default::default()
            },
        );
        assert_eq!(t1.records.len(), 5);
        let first = page(
            &log,
            AuditQuery {
                limit: 4,
                ..Default::default()
            },
        );
        assert_eq!(first.records.len(), 4);
        let second = page(
            &log,
            AuditQuery {
                limit: 4,
                cursor: first.next_cursor.clone(),
                ..Default::default()
            },
        );
        assert_eq!(second.records[0].user.as_deref(), Some("u5"));
        let last = page(
            &log,
            AuditQuery {
                limit: 4,
                cursor: second.next_cursor.clone(),
                ..Default::default()
            },
        );
        assert_eq!(last.records.len(), 2);
        assert_eq!(last.next_cursor, None);
        log.stop(Duration::from_secs(1));
    }

    #[test]
    fn records_survive_a_reopen_after_stop() {
        let dir = tempdir();
        {
            let (log, thread, _) = AuditLog::open(&dir, settings(), Arc::default()).unwrap();
            log.push_all(&mut vec![record(1, AuditDecision::Deny)]);
            let resource = crate::core::policy::Resource {
                participants: vec!["buyer".into()],
                attributes: [("status".to_owned(), "DISPUTED".to_owned())].into(),
                tenant: Some("acme".into()),
            };
            assert!(log.persist(StoreWrite::Resource(ResourceWrite {
                app: "1".into(),
                kind: "escrow".into(),
                id: "42".into(),
                value: Some(resource),
            })));
            log.stop(Duration::from_secs(1));
            thread.join().unwrap();
        }
        let (log, _thread, loaded) = reopened(&dir, settings(), Arc::default());
        let resources = loaded.resources;
        assert_eq!(resources.len(), 1);
        let (app, kind, id, resource) = &resources[0];
        assert_eq!(
            (app.as_str(), kind.as_str(), id.as_str()),
            ("1", "escrow", "42")
        );
        assert_eq!(resource.attributes["status"], "DISPUTED");
        assert_eq!(
            page(
                &log,
                AuditQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .records
            .len(),
            1
        );
        log.stop(Duration::from_secs(1));
    }

    #[test]
    fn retention_keeps_at_most_max_records() {
        let dir = tempdir();
        let mut s = settings();
        s.max_records = 3;
        let (log, thread, _) = AuditLog::open(&dir, s.clone(), Arc::default()).unwrap();
        log.push_all(&mut (0..5).map(|i| record(i, AuditDecision::Allow)).collect());
        log.stop(Duration::from_secs(1));
        thread.join().unwrap();
        // The store is locked while any handle to it lives.
        drop(log);
        // Retention runs when a writer starts.
        let metrics = Arc::new(AuditMetrics::default());
        let (log, _thread, _) = reopened(&dir, s, metrics.clone());
        let kept = page(
            &log,
            AuditQuery {
                limit: 10,
                ..Default::default()
            },
        );
        let users: Vec<_> = kept
            .records
            .iter()
            .map(|r| r.user.clone().unwrap())
            .collect();
        assert_eq!(users, ["u4", "u3", "u2"]);
        assert_eq!(metrics.pruned.load(Ordering::Relaxed), 2);
        log.stop(Duration::from_secs(1));
    }

    /// The store in `dir` opened again: sled may hold the directory's lock a moment after the
    /// last handle went, so opening is tried for up to 5 s.
    fn reopened(
        dir: &Path,
        settings: AuditSettings,
        metrics: Arc<AuditMetrics>,
    ) -> (AuditLog, std::thread::JoinHandle<()>, Loaded) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match AuditLog::open(dir, settings.clone(), metrics.clone()) {
                Ok(opened) => return opened,
                Err(err) if Instant::now() >= deadline => panic!("{err}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ringcast-audit-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
