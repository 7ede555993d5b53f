//! What the sled stores (the audit log, the inbox, channel history) share: how a database is
//! opened for group commit, why opening failed, and the writer thread's loop, which flushes
//! on an interval of its own rather than sled's.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Why a store could not be opened (or its writer thread started).
#[derive(Debug, thiserror::Error)]
#[error("cannot open the {store} store in {path}: {source}")]
pub struct OpenError {
    store: &'static str,
    path: String,
    source: sled::Error,
}

impl OpenError {
    /// `source` met while opening the `store` store in `dir`.
    pub(crate) fn new(store: &'static str, dir: &Path, source: sled::Error) -> Self {
        Self {
            store,
            path: dir.display().to_string(),
            source,
        }
    }
}

/// Opens (or creates) the `store` database in `dir` with a page cache of `cache_bytes`. The
/// writer flushes at its own group-commit interval; sled's flusher thread would only add
/// wake-ups (and hold the store's lock after it is closed).
pub(crate) fn open_db(
    store: &'static str,
    dir: &Path,
    cache_bytes: u64,
) -> Result<sled::Db, OpenError> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None)
        .open()
        .map_err(|source| OpenError::new(store, dir, source))
}

/// Starts `writer` on a thread named `name`.
pub(crate) fn spawn_writer<W: GroupCommit + Send + 'static>(
    store: &'static str,
    dir: &Path,
    name: &str,
    writer: W,
    rx: Receiver<W::Message>,
) -> Result<std::thread::JoinHandle<()>, OpenError>
where
    W::Message: Send,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(writer, rx))
        .map_err(|e| OpenError::new(store, dir, sled::Error::Io(e)))
}

/// Whether a writer goes on after a message.
pub(crate) enum Flow {
    /// Wait for the next message.
    Go,
    /// Commit what is written and end the thread.
    Stop,
}

/// A store's writer thread: it handles messages, commits (writes and flushes) every
/// `flush_interval`, and does its periodic chores (retention, expiry) every `chore_every`.
pub(crate) trait GroupCommit {
    /// What the store's handles send.
    type Message;
    /// The group-commit interval.
    fn flush_interval(&self) -> Duration;
    /// How often [`GroupCommit::chores`] runs; `None`: never.
    fn chore_every(&self) -> Option<Duration> {
        None
    }
    /// Work before the first message (on the writer's thread, so start-up does not wait).
    fn start(&mut self) {}
    /// Handles one message.
    fn handle(&mut self, message: Self::Message) -> Flow;
    /// Writes what is pending and flushes it to disk.
    fn commit(&mut self);
    /// Periodic work beside the flush.
    fn chores(&mut self) {}
}

/// The writer loop: until a [`Flow::Stop`] or every handle is gone, then a last commit.
fn run<W: GroupCommit>(mut writer: W, rx: Receiver<W::Message>) {
    writer.start();
    let flush_interval = writer.flush_interval();
    let chore_every = writer.chore_every();
    let mut next_flush = Instant::now() + flush_interval;
    let mut next_chores = chore_every.map(|every| Instant::now() + every);
    loop {
        let wait = next_flush.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(message) => {
                if let Flow::Stop = writer.handle(message) {
                    writer.commit();
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                writer.commit();
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if now >= next_flush {
            writer.commit();
            next_flush = now + flush_interval;
        }
        if let (Some(at), Some(every)) = (next_chores, chore_every)
            && now >= at
        {
            writer.chores();
            next_chores = Some(now + every);
        }
    }
}
