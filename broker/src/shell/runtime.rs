//! One shard's runtime: the monoio executor, its tasks, and the glue that wakes them.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::TcpListener as StdListener;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpListener;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::io::FrameBatch;
use super::polling::{Handover, PollRequest, Sessions};
use crate::config::Driver;
use crate::core::shard::{Answer, AuthCall, ConnKey, MeshMsg, QueryId, Shard, ShardId, WallClock};
use crate::metrics::{ShardMetrics, inc};
use crate::server::ServerState;

/// What travels on a shard's inbox.
pub enum Inbound {
    /// A message from another shard.
    Mesh(MeshMsg),
    /// A long-polling request another shard received for a session of this one.
    Poll(PollRequest),
    /// A WebSocket for a session or connection of this one, handed over by another shard.
    Handover(Handover),
    /// Begin a graceful shutdown.
    Shutdown,
}

/// The bounded queues between shards: one inbox per shard, fed by every other shard.
#[derive(Clone)]
pub struct Mesh {
    inboxes: Arc<
        Vec<(
            async_channel::Sender<Inbound>,
            async_channel::Receiver<Inbound>,
        )>,
    >,
    shutdown: Arc<AtomicBool>,
}

impl Mesh {
    /// Inboxes for `shard_count` shards holding up to `capacity` messages each.
    pub fn new(shard_count: usize, capacity: usize) -> Self {
        let inboxes = (0..shard_count)
            .map(|_| async_channel::bounded(capacity.max(1)))
            .collect();
        Self {
            inboxes: Arc::new(inboxes),
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Asks every shard to shut down.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for (sender, _) in self.inboxes.iter() {
            // A full inbox is fine: the shard's ticker also watches the flag.
            let _ = sender.try_send(Inbound::Shutdown);
        }
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Delivers `msg` to shard `to` from outside the shards (the cluster link), waiting
    /// while its inbox is full.
    pub async fn deliver(&self, to: ShardId, msg: MeshMsg) {
        if let Some((sender, _)) = self.inboxes.get(to) {
            let _ = sender.send(Inbound::Mesh(msg)).await;
        }
    }
}

/// A bounded queue to another thread that never blocks the sender: what does not fit waits
/// in a local backlog, drained in order by a task.
pub struct Backlogged<T> {
    sender: async_channel::Sender<T>,
    backlog: RefCell<VecDeque<T>>,
    pumping: Cell<bool>,
}

impl<T: 'static> Backlogged<T> {
    /// Wraps `sender`.
    pub fn new(sender: async_channel::Sender<T>) -> Rc<Self> {
        Rc::new(Self {
            sender,
            backlog: RefCell::new(VecDeque::new()),
            pumping: Cell::new(false),
        })
    }

    /// Sends `msg` now, or after what is already waiting.
    pub fn send(self: &Rc<Self>, msg: T) {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            match self.sender.try_send(msg) {
                Ok(()) | Err(async_channel::TrySendError::Closed(_)) => return,
                Err(async_channel::TrySendError::Full(msg)) => backlog.push_back(msg),
            }
        } else {
            backlog.push_back(msg);
        }
        if !self.pumping.replace(true) {
            monoio::spawn(self.clone().pump());
        }
    }

    async fn pump(self: Rc<Self>) {
        loop {
            let next = self.backlog.borrow_mut().pop_front();
            let Some(msg) = next else { break };
            if self.sender.send(msg).await.is_err() {
                self.backlog.borrow_mut().clear();
                break;
            }
        }
        self.pumping.set(false);
    }
}

/// Submission queue entries of each shard's io_uring ring.
const SHARD_RING_ENTRIES: u32 = 4096;

/// The I/O driver to use: io_uring unless configured otherwise or unavailable for
/// `shard_count` shards.
pub fn choose_driver(configured: Driver, shard_count: usize) -> Driver {
    if configured == Driver::Epoll {
        return Driver::Epoll;
    }
    // The probe builds every shard's ring, at the shards' size, and holds them together:
    // the kernel charges each ring to the locked-memory limit, so one small ring can be
    // allowed where the shards' are not (their runtimes would then never start). It runs on
    // a thread of its own: tearing a ring down queues task work to the thread that made it,
    // which interrupts that thread's blocking socket calls with EINTR (the caller may be a
    // test, or main, reading a socket with a timeout).
    let probe = std::thread::Builder::new()
        .name("ringcast-probe".into())
        .spawn(move || {
            let rings = (0..shard_count.max(1))
                .map(|_| shard_runtime_builder().build())
                .collect::<std::io::Result<Vec<_>>>();
            rings.map(drop)
        })
        .map_err(|err| err.to_string())
        .and_then(|probe| probe.join().map_err(|_| "the probe panicked".to_owned()));
    match probe {
        Ok(Ok(())) => Driver::IoUring,
        Ok(Err(err)) => {
            tracing::warn!(%err, "io_uring is unavailable; falling back to the epoll driver");
            Driver::Epoll
        }
        Err(err) => {
            tracing::warn!(%err, "cannot probe for io_uring; falling back to the epoll driver");
            Driver::Epoll
        }
    }
}

/// Everything a shard thread starts from.
pub struct ShardSetup {
    /// This shard.
    pub id: ShardId,
    /// How many shards there are.
    pub shard_count: usize,
    /// Shared config and apps.
    pub state: Arc<ServerState>,
    /// Every shard's counters (this one's at `id`).
    pub metrics: Arc<Vec<Arc<ShardMetrics>>>,
    /// The queues between shards.
    pub mesh: Mesh,
    /// This shard's `SO_REUSEPORT` listener.
    pub listener: StdListener,
    /// The driver chosen for all shards.
    pub driver: Driver,
    /// Where webhook events go.
    pub webhooks: crate::webhooks::WebhookQueue,
    /// Where audit records go.
    pub audit: crate::audit::AuditLog,
    /// Where history writes go, when an app keeps history.
    pub history: Option<crate::history::HistoryStore>,
    /// Where users' notifications go, when an app keeps an inbox (`[apps.inbox]`).
    pub inbox_store: Option<crate::inbox::Inbox>,
    /// The node's cluster link, in cluster mode.
    pub link: Option<async_channel::Sender<super::cluster::LinkMsg>>,
}

/// How a shard's io_uring runtime is built (and probed for).
fn shard_runtime_builder() -> RuntimeBuilder<monoio::time::TimeDriver<IoUringDriver>> {
    RuntimeBuilder::<IoUringDriver>::new()
        .enable_timer()
        .with_entries(SHARD_RING_ENTRIES)
}

/// Runs one shard to completion on the current thread.
pub fn run_shard(setup: ShardSetup) {
    match setup.driver {
        Driver::IoUring => match shard_runtime_builder().build() {
            Ok(mut rt) => rt.block_on(shard_main(setup)),
            Err(err) => {
                tracing::error!(%err, shard = setup.id, "cannot build the io_uring runtime");
            }
        },
        Driver::Epoll => match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
            Ok(mut rt) => rt.block_on(shard_main(setup)),
            Err(err) => tracing::error!(%err, shard = setup.id, "cannot build the epoll runtime"),
        },
    }
}

/// A one-shot wake-up flag for a task waiting on the shard (a connection's writer, a query).
#[derive(Default)]
pub struct Signal {
    notified: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiting task, if any.
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Waits until notified (returns at once if it already was), clearing the flag.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        SignalWait { signal: self }
    }
}

/// A connection's writer as the shard sees it: its wake-up flag, its socket, a deadline, and
/// the frame vectors it borrows while writing.
///
/// A write that makes no progress (the peer does not read) and a closing handshake the peer
/// never answers both end at a deadline. The shard's ticker checks every writer's deadline
/// once a second and shuts the socket down when one has passed, which fails the pending write
/// and wakes both tasks. So no connection carries a timer of its own, and an idle
/// connection's tasks stay small.
pub struct Writer {
    /// Wakes the writer task.
    pub signal: Signal,
    /// The socket; `None` for a transport without one of its own (long-polling).
    fd: Option<RawFd>,
    deadline: Cell<Option<Instant>>,
    expired: Cell<bool>,
    /// The reader has ended: whatever is queued now is not this socket's to write (a
    /// recoverable connection keeps its queue for the client's next transport).
    retired: Cell<bool>,
}

impl Writer {
    /// The writer of the socket `fd`.
    pub fn new(fd: RawFd) -> Self {
        Self {
            fd: Some(fd),
            ..Self::detached()
        }
    }

    /// The writer of a connection whose output is fetched rather than written (a Socket.IO
    /// long-polling session): a wake-up and a deadline, no socket.
    pub fn detached() -> Self {
        Self {
            signal: Signal::default(),
            fd: None,
            deadline: Cell::new(None),
            expired: Cell::new(false),
            retired: Cell::new(false),
        }
    }

    /// Sets a deadline `after` from now for what the writer is about to wait on.
    pub fn arm(&self, after: Duration) {
        self.deadline.set(Some(Instant::now() + after));
    }

    /// Clears the deadline: the wait ended in time.
    pub fn disarm(&self) {
        self.deadline.set(None);
    }

    /// Tells the writer its reader has ended, and wakes it to finish.
    pub fn retire(&self) {
        self.retired.set(true);
        self.signal.notify();
    }

    /// Whether the reader has ended.
    pub fn retired(&self) -> bool {
        self.retired.get()
    }

    /// Whether a deadline passed (the socket has then been shut down).
    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    /// Shuts the socket down in both directions: the reader sees end-of-stream, a pending
    /// write fails.
    pub fn shutdown(&self) {
        if let Some(fd) = self.fd {
            // SAFETY: the fd stays open while either half of the connection lives. This is
            // called by the writer task, which owns the write half, or by the ticker for a
            // registered writer, whose reader (owning the read half) unregisters it before
            // dropping that half. So the fd is open and is this connection's. shutdown(2)
            // has no memory effects.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    fn expire_if_due(&self, now: Instant) {
        if self.deadline.get().is_some_and(|d| d <= now) {
            self.deadline.set(None);
            self.expired.set(true);
            self.shutdown();
            self.signal.notify();
        }
    }
}

struct SignalWait<'a> {
    signal: &'a Signal,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.notified.replace(false) {
            Poll::Ready(())
        } else {
            self.signal.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// The shard's state plus the task wake-up tables around it.
pub struct ShardRt {
    core: RefCell<Shard>,
    /// Connection writers, by connection key.
    writers: RefCell<Vec<Option<Rc<Writer>>>>,
    /// Frame vectors lent to writers while they write, so idle connections hold none.
    frame_vecs: RefCell<Vec<Vec<Bytes>>>,
    /// `writev` batches lent the same way.
    batches: RefCell<Vec<FrameBatch>>,
    /// Answers awaited by HTTP requests.
    queries: RefCell<HashMap<QueryId, Rc<QuerySlot>>>,
    mesh: Mesh,
    backlog: RefCell<Vec<VecDeque<MeshMsg>>>,
    pumping: RefCell<Vec<bool>>,
    scratch: RefCell<Vec<ConnKey>>,
    webhooks: crate::webhooks::WebhookQueue,
    webhook_scratch: RefCell<Vec<(crate::core::ids::AppIdx, crate::core::webhook::WebhookEvent)>>,
    /// The audit log (records go there; admin queries are sent there).
    pub audit: crate::audit::AuditLog,
    audit_scratch: RefCell<Vec<ringcast_shared::AuditRecord>>,
    history: Option<crate::history::HistoryStore>,
    history_scratch: RefCell<Vec<crate::core::history::HistoryWrite>>,
    /// The inbox store, when an app keeps an inbox (reads and acks are sent there).
    pub inbox_store: Option<crate::inbox::Inbox>,
    inbox_scratch: RefCell<Vec<crate::core::inbox::InboxWrite>>,
    /// Every shard's counters.
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    /// Config and apps.
    pub state: Arc<ServerState>,
    /// The driver in use.
    pub driver: Driver,
    /// Set once a shutdown has begun.
    pub shutting_down: Cell<bool>,
    link: Option<Rc<Backlogged<super::cluster::LinkMsg>>>,
    cluster_scratch: RefCell<Vec<crate::core::cluster::ClusterOut>>,
    auth_scratch: RefCell<Vec<AuthCall>>,
    /// Socket.IO long-polling sessions opened on this shard.
    pub polls: Sessions,
    /// The `Cookie` header of Socket.IO connections' upgrade requests, which the app's auth
    /// endpoint gets with their subscriptions (a Laravel session authorizes by it).
    cookies: RefCell<HashMap<ConnKey, String>>,
}

/// Where an HTTP request waits for a query answer.
#[derive(Default)]
pub struct QuerySlot {
    answer: RefCell<Option<Answer>>,
    signal: Signal,
}

impl ShardRt {
    /// Runs `f` on the shard, then delivers what it produced: writer wake-ups, mesh messages
    /// and query answers. The shard is never borrowed across an `.await`.
    pub fn with_core<R>(self: &Rc<Self>, f: impl FnOnce(&mut Shard) -> R) -> R {
        let mut ready = self.scratch.take();
        let mut outgoing = Vec::new();
        let mut answers = Vec::new();
        let result = {
            let mut core = self.core.borrow_mut();
            let result = f(&mut core);
            core.take_ready(&mut ready);
            while let Some(msg) = core.poll_mesh() {
                outgoing.push(msg);
            }
            answers.extend(core.take_answers());
            core.take_webhooks(&mut self.webhook_scratch.borrow_mut());
            core.take_audit(&mut self.audit_scratch.borrow_mut());
            core.take_history(&mut self.history_scratch.borrow_mut());
            core.take_inbox(&mut self.inbox_scratch.borrow_mut());
            core.take_cluster(&mut self.cluster_scratch.borrow_mut());
            core.take_auth_calls(&mut self.auth_scratch.borrow_mut());
            result
        };
        for call in self.auth_scratch.borrow_mut().drain(..) {
            monoio::spawn(self.clone().authorize(call));
        }
        if let Some(link) = &self.link {
            for out in self.cluster_scratch.borrow_mut().drain(..) {
                link.send(super::cluster::LinkMsg::Out(out));
            }
        }
        if let Some(store) = &self.history {
            store.push_all(&mut self.history_scratch.borrow_mut());
        }
        {
            let mut records = self.audit_scratch.borrow_mut();
            if !records.is_empty() {
                let time_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                for record in records.iter_mut() {
                    record.time_ms = time_ms;
                }
                self.audit.push_all(&mut records);
            }
        }
        super::inbox::store(self, &mut self.inbox_scratch.borrow_mut());
        {
            let mut hooks = self.webhook_scratch.borrow_mut();
            if !hooks.is_empty() {
                self.webhooks.push_all(&mut hooks);
            }
        }
        {
            let writers = self.writers.borrow();
            for &key in &ready {
                if let Some(Some(writer)) = writers.get(key) {
                    writer.signal.notify();
                }
            }
        }
        ready.clear();
        self.scratch.replace(ready);
        for (to, msg) in outgoing {
            self.forward(to, msg);
        }
        if !answers.is_empty() {
            let mut queries = self.queries.borrow_mut();
            // An answer may arrive before its request starts waiting (a query answered by
            // this shard itself completes inside the call that started it).
            for (id, answer) in answers {
                let slot = queries.entry(id).or_default();
                slot.answer.replace(Some(answer));
                slot.signal.notify();
            }
        }
        result
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.mesh.inboxes.len()
    }

    /// Sends a long-polling request to the shard owning its session; `false` if that shard
    /// is gone.
    pub async fn send_poll(&self, to: ShardId, request: PollRequest) -> bool {
        match self.mesh.inboxes.get(to) {
            Some((sender, _)) => sender.send(Inbound::Poll(request)).await.is_ok(),
            None => false,
        }
    }

    /// Hands a connection to the shard owning its session or its recovered connection.
    pub async fn send_handover(&self, to: ShardId, handover: Handover) {
        if let Some((sender, _)) = self.mesh.inboxes.get(to) {
            // A shard that is gone gives the message back: closing the fd ends it.
            if let Err(async_channel::SendError(Inbound::Handover(lost))) =
                sender.send(Inbound::Handover(handover)).await
            {
                drop(adopted_stream(lost.fd));
            }
        }
    }

    /// Remembers the `Cookie` header a Socket.IO connection's upgrade request carried.
    pub fn remember_cookie(&self, key: ConnKey, cookie: &str) {
        self.cookies.borrow_mut().insert(key, cookie.to_owned());
    }

    /// Asks the app's auth endpoint about a subscription and hands the answer to the shard.
    async fn authorize(self: Rc<Self>, call: AuthCall) {
        let Some(authorizer) = self.state.authorizers.get(call.app) else {
            return;
        };
        let (key, socket_id, channel) = (call.conn, call.socket_id, call.channel.clone());
        let cookie = self.cookies.borrow().get(&key).cloned();
        let answer = authorizer.ask(call, cookie).await;
        self.with_core(|core| {
            core.handle_channel_auth(key, socket_id, &channel, &answer, Instant::now())
        });
    }

    /// Hands out queued frames without anything else to deliver.
    pub fn core(&self) -> std::cell::RefMut<'_, Shard> {
        self.core.borrow_mut()
    }

    /// Registers the writer of connection `key`.
    pub fn register_writer(&self, key: ConnKey, writer: Rc<Writer>) {
        let mut writers = self.writers.borrow_mut();
        if writers.len() <= key {
            writers.resize(key + 1, None);
        }
        writers[key] = Some(writer);
    }

    /// Drops trailing empty writer slots and pooled vectors after a connection peak.
    fn release_writer_slots(&self) {
        let mut writers = self.writers.borrow_mut();
        while writers.last().is_some_and(Option::is_none) {
            writers.pop();
        }
        writers.shrink_to_fit();
        *self.frame_vecs.borrow_mut() = Vec::new();
        *self.batches.borrow_mut() = Vec::new();
    }

    /// Forgets the writer of `key`, if it is still `writer` (keys are reused).
    pub fn unregister_writer(&self, key: ConnKey, writer: &Rc<Writer>) {
        let mut writers = self.writers.borrow_mut();
        if let Some(slot) = writers.get_mut(key)
            && slot.as_ref().is_some_and(|w| Rc::ptr_eq(w, writer))
        {
            *slot = None;
            self.cookies.borrow_mut().remove(&key);
        }
    }

    /// Shuts down the sockets of writers whose deadline has passed.
    fn expire_writers(&self, now: Instant) {
        for writer in self.writers.borrow().iter().flatten() {
            writer.expire_if_due(now);
        }
    }

    /// Lends an empty frame vector (from the pool, or a new one).
    pub fn lend_frames(&self) -> Vec<Bytes> {
        self.frame_vecs.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes back a frame vector, emptied.
    pub fn return_frames(&self, mut frames: Vec<Bytes>) {
        frames.clear();
        self.frame_vecs.borrow_mut().push(frames);
    }

    /// Lends an empty `writev` batch.
    pub fn lend_batch(&self) -> FrameBatch {
        self.batches.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes back a batch, emptied.
    pub fn return_batch(&self, mut batch: FrameBatch) {
        batch.clear();
        self.batches.borrow_mut().push(batch);
    }

    /// Waits for the answers to `ids`, in order.
    pub async fn await_answers(&self, ids: &[QueryId]) -> Vec<Answer> {
        let mut answers = Vec::with_capacity(ids.len());
        for &id in ids {
            let slot = self.queries.borrow_mut().entry(id).or_default().clone();
            loop {
                if let Some(answer) = slot.answer.take() {
                    self.queries.borrow_mut().remove(&id);
                    answers.push(answer);
                    break;
                }
                slot.signal.wait().await;
            }
        }
        answers
    }

    fn forward(self: &Rc<Self>, to: ShardId, msg: MeshMsg) {
        let mut backlog = self.backlog.borrow_mut();
        let Some(queue) = backlog.get_mut(to) else {
            return;
        };
        if queue.is_empty() {
            match self.mesh.inboxes[to].0.try_send(Inbound::Mesh(msg)) {
                Ok(()) => return,
                Err(async_channel::TrySendError::Closed(_)) => return,
                Err(async_channel::TrySendError::Full(Inbound::Mesh(msg))) => queue.push_back(msg),
                Err(async_channel::TrySendError::Full(_)) => return,
            }
        } else {
            queue.push_back(msg);
        }
        let metrics = &self.all_metrics[self.core.borrow().id()];
        inc(&metrics.mesh_delayed);
        drop(backlog);
        let mut pumping = self.pumping.borrow_mut();
        if !pumping[to] {
            pumping[to] = true;
            let sender = self.mesh.inboxes[to].0.clone();
            monoio::spawn(self.clone().pump(to, sender));
        }
    }

    /// Drains a backlog to a full inbox, in order, waiting for room.
    async fn pump(self: Rc<Self>, to: ShardId, sender: async_channel::Sender<Inbound>) {
        loop {
            let next = self.backlog.borrow_mut()[to].pop_front();
            let Some(msg) = next else { break };
            if sender.send(Inbound::Mesh(msg)).await.is_err() {
                self.backlog.borrow_mut()[to].clear();
                break;
            }
        }
        self.pumping.borrow_mut()[to] = false;
    }
}

async fn shard_main(setup: ShardSetup) {
    let ShardSetup {
        id,
        shard_count,
        state,
        metrics,
        mesh,
        listener,
        driver,
        webhooks,
        audit,
        history,
        inbox_store,
        link,
    } = setup;
    let listener_fd = listener.as_raw_fd();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(err) => {
            tracing::error!(%err, shard = id, "cannot register the listener");
            return;
        }
    };
    let core = Shard::new(
        id,
        shard_count,
        state.shared.clone(),
        metrics[id].core.clone(),
        wall_clock(),
    );
    let rt = Rc::new(ShardRt {
        core: RefCell::new(core),
        writers: RefCell::new(Vec::new()),
        frame_vecs: RefCell::new(Vec::new()),
        batches: RefCell::new(Vec::new()),
        queries: RefCell::new(HashMap::new()),
        backlog: RefCell::new((0..shard_count).map(|_| VecDeque::new()).collect()),
        pumping: RefCell::new(vec![false; shard_count]),
        scratch: RefCell::new(Vec::new()),
        webhooks,
        webhook_scratch: RefCell::new(Vec::new()),
        audit,
        audit_scratch: RefCell::new(Vec::new()),
        history,
        history_scratch: RefCell::new(Vec::new()),
        inbox_store,
        inbox_scratch: RefCell::new(Vec::new()),
        mesh: mesh.clone(),
        all_metrics: metrics,
        state,
        driver,
        shutting_down: Cell::new(false),
        link: link.map(Backlogged::new),
        cluster_scratch: RefCell::new(Vec::new()),
        auth_scratch: RefCell::new(Vec::new()),
        polls: Sessions::default(),
        cookies: RefCell::new(HashMap::new()),
    });

    let inbox = mesh.inboxes[id].1.clone();
    monoio::spawn(receive_mesh(rt.clone(), inbox));
    monoio::spawn(tick(rt.clone()));
    super::redis_broadcast::spawn_for_shard(&rt, id, shard_count);

    // A shutdown drains: every client is closed with 4200, and until the last client of the
    // whole server has gone (or the shutdown timeout has passed) the listener keeps accepting,
    // so that health checks get 503 and new upgrades are refused with 503 (see `conn`) and a
    // load balancer sees the node leaving, instead of connections refused.
    let drained = Rc::new(Cell::new(false));
    let done = Rc::new(Signal::default());
    {
        let rt = rt.clone();
        let drained = drained.clone();
        let done = done.clone();
        monoio::spawn(async move {
            while !rt.shutting_down.get() {
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
            let deadline = Instant::now() + rt.state.shared.config.shutdown_timeout;
            while rt.state.shared.apps.connections() > 0 && Instant::now() < deadline {
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
            drained.set(true);
            // Makes the pending accept fail, so the accept loop ends.
            // SAFETY: the listener's fd is open for as long as `listener` lives, which is
            // until shard_main returns; shutdown(2) on it has no memory effects.
            unsafe {
                libc::shutdown(listener_fd, libc::SHUT_RDWR);
            }
            done.notify();
        });
    }
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                monoio::spawn(super::conn::serve(rt.clone(), stream, remote));
            }
            Err(err) => {
                if drained.get() {
                    break;
                }
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%err, shard = id, "accept failed");
                monoio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    done.wait().await;
    // Ends with the inbox closed, so a message sent to it later (by the server or another
    // shard) fails instead of waking this shard's inbox task once the runtime is gone: monoio
    // leaves a pending task to its wakers, and the sender's thread would then free the task
    // inside the channel's lock, whose drop takes that lock again (a deadlock, seen when a
    // shard drained and ended before `request_shutdown` had sent to it).
    mesh.inboxes[id].1.close();
}

fn begin_shutdown(rt: &Rc<ShardRt>) {
    if rt.shutting_down.replace(true) {
        return;
    }
    rt.with_core(|core| core.shutdown(Instant::now()));
}

async fn receive_mesh(rt: Rc<ShardRt>, inbox: async_channel::Receiver<Inbound>) {
    while let Ok(first) = inbox.recv().await {
        let mut next = Some(first);
        let mut shutdown = false;
        let mut polls = Vec::new();
        let mut adoptions = Vec::new();
        // Handle everything already queued in one go: one wake-up, one round of writer wakes.
        rt.with_core(|core| {
            let now = Instant::now();
            let mut handled = 0;
            while let Some(item) = next.take() {
                match item {
                    Inbound::Mesh(msg) => core.handle_mesh(msg, now),
                    Inbound::Poll(request) => polls.push(request),
                    Inbound::Handover(handover) => adoptions.push(handover),
                    Inbound::Shutdown => shutdown = true,
                }
                handled += 1;
                if handled < 256 {
                    next = inbox.try_recv().ok();
                }
            }
        });
        for request in polls {
            monoio::spawn(super::polling::serve_for(rt.clone(), request));
        }
        for adoption in adoptions {
            monoio::spawn(super::polling::adopt(rt.clone(), adoption));
        }
        if shutdown {
            begin_shutdown(&rt);
        }
    }
}

/// The socket of a connection handed over by another shard.
pub fn adopted_stream(fd: RawFd) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: the sending shard gave the fd up (`into_raw_fd`) and sent it in one message,
    // whose receiver is its one owner from then on.
    unsafe { std::net::TcpStream::from_raw_fd(fd) }
}

async fn tick(rt: Rc<ShardRt>) {
    let mut interval = monoio::time::interval(Duration::from_secs(1));
    // Most connections since the last trim.
    let mut high_water = 0usize;
    // Ticks until the trim that follows a trim: memory freed after it (writers ending their
    // close grace, buffers dropped on other paths) would otherwise stay in the arena.
    let mut retrim_in: Option<u32> = None;
    loop {
        interval.tick().await;
        if rt.mesh.shutdown_requested() {
            begin_shutdown(&rt);
        }
        rt.with_core(|core| {
            core.set_wall_clock(wall_clock());
            core.handle_tick(Instant::now())
        });
        rt.expire_writers(Instant::now());
        super::polling::expire(&rt, Instant::now());
        let connections = rt.core().connection_count();
        high_water = high_water.max(connections);
        // After many disconnects, give the freed per-connection memory back to the OS: glibc
        // keeps it in this thread's arena otherwise, and RSS would stay at its peak. Checked
        // every tick, so trims follow a drain that spans several ticks.
        if connections + TRIM_STEP <= high_water {
            rt.core().release_memory();
            rt.release_writer_slots();
            trim_heap();
            high_water = connections;
            retrim_in = Some(RETRIM_AFTER_TICKS);
        } else if let Some(ticks) = retrim_in {
            if ticks == 0 {
                rt.release_writer_slots();
                trim_heap();
                retrim_in = None;
            } else {
                retrim_in = Some(ticks - 1);
            }
        }
    }
}

/// A drop of this many connections since the last trim triggers another.
const TRIM_STEP: usize = 500;
/// Ticks between a trim and the one that follows it; longer than a closing connection's
/// grace period (2 s), so what it frees is trimmed too.
const RETRIM_AFTER_TICKS: u32 = 3;

fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages to the kernel; it is thread-safe and
    // does not touch memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The wall clock read now, for the shard's Unix-time reckoning.
fn wall_clock() -> WallClock {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    WallClock::new(Instant::now(), unix)
}
