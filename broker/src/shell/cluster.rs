//! The node's link to Redis as a socket loop: one thread, one connection, driving the
//! protocol's state machine, [`Link`].
//!
//! One task owns the link. It feeds it the shards' requests, the values the connection's
//! reader decoded, and the passing of time; then it carries out what the link asks: effects
//! first, then bytes for the writer, then the shards' messages, whose delivery waits for room
//! in their inboxes and so holds the loop (and the reading of Redis) back, as a slow shard
//! should. The reader and the writer are tasks of their own, so that a write never waits for
//! a read; they report to the loop tagged with their connection, so that a late word from a
//! connection the link gave up is not taken for the next one's.

mod node;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};

use super::runtime::{Mesh, Signal};
use crate::config::{ClusterConfig, Driver, RedisTarget};
use crate::core::cluster::link::{Effect, Link};
use crate::core::cluster::resp::{Decoder, RespError, Value};
use crate::core::cluster::{ClusterOut, ClusterStatus};
use crate::core::shard::Shared;

/// What shards (and the server) send to the link.
pub enum LinkMsg {
    /// A shard's request.
    Out(ClusterOut),
    /// Remove this node from the cluster and stop.
    Stop,
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Batches of decoded values that may wait for the loop before the reader stops reading.
const READ_QUEUE: usize = 16;
/// Requests taken from the inbox at once, before what they produced is written and delivered.
const INBOX_BATCH: usize = 256;

/// Starts the link thread.
pub fn spawn(
    config: ClusterConfig,
    state: Arc<Shared>,
    mesh: Mesh,
    audit: crate::audit::AuditLog,
    inbox: async_channel::Receiver<LinkMsg>,
    driver: Driver,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringcast-cluster".into())
        .spawn(move || {
            let main = run(config, state, mesh, audit, inbox);
            match driver {
                Driver::IoUring => match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .build()
                {
                    Ok(mut rt) => rt.block_on(main),
                    Err(err) => tracing::error!(%err, "cannot start the cluster link"),
                },
                Driver::Epoll => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                {
                    Ok(mut rt) => rt.block_on(main),
                    Err(err) => tracing::error!(%err, "cannot start the cluster link"),
                },
            }
        })
}

/// What a connection's tasks tell the loop (this one, and the Redis broadcast
/// subscriber's).
pub(super) enum SocketEvent {
    Connected(TcpStream),
    Failed(std::io::Error),
    Values(Vec<Value>),
    Unreadable(RespError),
    Closed,
}

/// A [`SocketEvent`] with the number of the connection (attempt) it is about.
pub(super) type Tagged = (u64, SocketEvent);

/// One connection's write side, shared by the loop, which fills `out`, and the writer task.
pub(super) struct Wire {
    fd: RawFd,
    /// Halves of the socket still held by the reader and writer tasks: the fd is open while
    /// this is not zero.
    halves: Cell<u8>,
    pub(super) out: RefCell<BytesMut>,
    pub(super) wake: Signal,
    closing: Cell<bool>,
}

impl Wire {
    /// Ends the connection: the writer stops, and a pending read wakes up at end-of-stream.
    fn close(&self) {
        self.closing.set(true);
        self.out.borrow_mut().clear();
        self.wake.notify();
        if self.halves.get() > 0 {
            // SAFETY: a task still holds a half of the stream, so the fd is open and is this
            // connection's (one thread: nothing closes it between the check and the call).
            // shutdown(2) has no memory effects; it wakes a pending read and fails a pending
            // write.
            unsafe {
                libc::shutdown(self.fd, libc::SHUT_RDWR);
            }
        }
    }

    fn half_dropped(&self) {
        self.halves.set(self.halves.get().saturating_sub(1));
    }
}

/// The loop's side of the sockets, and the node the link serves.
struct Shell {
    node: node::Node,
    mesh: Mesh,
    connections: Connections,
}

/// One Redis's connections, one after another. They (and attempts) are numbered; only
/// the current one's events are the loop's.
pub(super) struct Connections {
    redis: RedisTarget,
    events: async_channel::Sender<Tagged>,
    numbered: u64,
    current: Option<u64>,
    wire: Option<Rc<Wire>>,
}

impl Connections {
    /// No connection yet; their tasks will report to `events`.
    pub(super) fn new(redis: RedisTarget, events: async_channel::Sender<Tagged>) -> Self {
        Self {
            redis,
            events,
            numbered: 0,
            current: None,
            wire: None,
        }
    }

    /// Where they go.
    pub(super) fn redis(&self) -> &RedisTarget {
        &self.redis
    }

    /// The current connection's write side, once it is open.
    pub(super) fn wire(&self) -> Option<&Rc<Wire>> {
        self.wire.as_ref()
    }

    /// Whether an event of connection `number` is about the current one.
    pub(super) fn is_current(&self, number: u64) -> bool {
        self.current == Some(number)
    }

    /// Starts a connection attempt, numbered anew.
    pub(super) fn connect(&mut self) {
        self.close();
        self.numbered += 1;
        let connection = self.numbered;
        self.current = Some(connection);
        let (target, events) = (self.redis.clone(), self.events.clone());
        monoio::spawn(async move {
            let event = match connect(&target).await {
                Ok(stream) => SocketEvent::Connected(stream),
                Err(err) => SocketEvent::Failed(err),
            };
            let _ = events.send((connection, event)).await;
        });
    }

    /// The current attempt connected: starts its reader and writer.
    pub(super) fn opened(&mut self, number: u64, stream: TcpStream) {
        self.wire = Some(start(number, stream, &self.events));
    }

    /// Ends the current connection (or forgets the attempt); nothing more it reports counts.
    pub(super) fn close(&mut self) {
        if let Some(wire) = self.wire.take() {
            wire.close();
        }
        self.current = None;
    }
}

async fn run(
    config: ClusterConfig,
    state: Arc<Shared>,
    mesh: Mesh,
    audit: crate::audit::AuditLog,
    inbox: async_channel::Receiver<LinkMsg>,
) {
    let Some(status) = state.cluster.as_ref() else {
        tracing::error!("the cluster link runs only in cluster mode");
        return;
    };
    let node = node::Node::new(state.clone(), audit, status.node.clone());
    let mut link = Link::new(node.options(&config), node.view(), Instant::now());
    let (events, socket_events) = async_channel::bounded(READ_QUEUE);
    let mut shell = Shell {
        node,
        mesh,
        connections: Connections::new(config.redis, events),
    };
    let mut stopping = false;
    loop {
        shell.carry_out(&mut link, status).await;
        if link.is_stopped() {
            break;
        }
        let timeout = link.poll_timeout();
        monoio::select! {
            msg = inbox.recv(), if !stopping => match msg {
                Ok(msg) => stopping = take_inbox(&mut link, msg, &inbox),
                Err(_) => break,
            },
            event = socket_events.recv() => {
                if let Ok((connection, event)) = event {
                    shell.socket_event(&mut link, connection, event);
                }
            },
            () = sleep_until(timeout) => link.handle_timeout(Instant::now()),
        }
    }
}

/// Feeds the link `first` and the requests waiting behind it, up to a batch; `true` once
/// told to stop.
fn take_inbox(link: &mut Link, first: LinkMsg, inbox: &async_channel::Receiver<LinkMsg>) -> bool {
    let mut msg = first;
    for _ in 0..INBOX_BATCH {
        match msg {
            LinkMsg::Out(out) => link.handle_out(out, Instant::now()),
            LinkMsg::Stop => {
                link.handle_stop(Instant::now());
                return true;
            }
        }
        match inbox.try_recv() {
            Ok(next) => msg = next,
            Err(_) => break,
        }
    }
    false
}

/// Sleeps until `at`; forever when there is nothing to wait for.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => monoio::time::sleep_until(monoio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// Does what the link asks: effects, then writes, then the shards' messages.
    async fn carry_out(&mut self, link: &mut Link, status: &ClusterStatus) {
        status.show(link.is_up(), link.stats());
        while let Some(effect) = link.poll_effect() {
            self.perform(effect);
        }
        if let Some(wire) = self.connections.wire()
            && link.poll_transmit(&mut wire.out.borrow_mut())
        {
            wire.wake.notify();
        }
        while let Some((shard, msg)) = link.poll_mesh() {
            self.mesh.deliver(shard, msg).await;
        }
    }

    fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Connect => self.connections.connect(),
            Effect::Disconnect => self.connections.close(),
            effect => self.node.apply(effect),
        }
    }

    fn socket_event(&mut self, link: &mut Link, connection: u64, event: SocketEvent) {
        if !self.connections.is_current(connection) {
            return;
        }
        match event {
            SocketEvent::Connected(stream) => {
                self.connections.opened(connection, stream);
                link.handle_connected(Instant::now());
            }
            SocketEvent::Failed(err) => {
                let redis = self.connections.redis();
                tracing::warn!(?redis, %err, "cannot reach Redis; this node is degraded");
                self.connections.close();
                link.handle_lost(Instant::now());
            }
            SocketEvent::Values(values) => {
                for value in values {
                    link.handle_value(value, Instant::now());
                }
            }
            SocketEvent::Unreadable(err) => {
                tracing::warn!(%err, "unreadable reply from Redis");
                self.connections.close();
                link.handle_lost(Instant::now());
            }
            SocketEvent::Closed => {
                self.connections.close();
                link.handle_lost(Instant::now());
            }
        }
    }
}

/// Opens a connection to Redis, trying each address of the host in turn.
async fn connect(target: &RedisTarget) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()?
        .collect();
    let mut last = std::io::Error::other("no address");
    for addr in addrs {
        match monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(err)) => last = err,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
        }
    }
    Err(last)
}

/// Starts the reader and the writer of a new connection.
fn start(connection: u64, stream: TcpStream, events: &async_channel::Sender<Tagged>) -> Rc<Wire> {
    let wire = Rc::new(Wire {
        fd: stream.as_raw_fd(),
        halves: Cell::new(2),
        out: RefCell::new(BytesMut::with_capacity(64 * 1024)),
        wake: Signal::default(),
        closing: Cell::new(false),
    });
    let (reader, writer) = stream.into_split();
    monoio::spawn(write_loop(connection, wire.clone(), writer, events.clone()));
    monoio::spawn(read_loop(connection, wire.clone(), reader, events.clone()));
    wire
}

/// Writes whatever the loop queued, in order, until the connection breaks or is closed.
async fn write_loop(
    connection: u64,
    wire: Rc<Wire>,
    mut writer: TcpOwnedWriteHalf,
    events: async_channel::Sender<Tagged>,
) {
    loop {
        let chunk = {
            let mut out = wire.out.borrow_mut();
            (!out.is_empty()).then(|| out.split().freeze())
        };
        match chunk {
            Some(chunk) => {
                let (result, _) = writer.write_all(chunk).await;
                if result.is_err() {
                    break;
                }
            }
            None if wire.closing.get() => break,
            None => wire.wake.wait().await,
        }
    }
    let _ = writer.shutdown().await;
    drop(writer);
    wire.half_dropped();
    let _ = events.send((connection, SocketEvent::Closed)).await;
}

/// Reads and decodes until the connection ends, handing the loop what each read completed.
async fn read_loop(
    connection: u64,
    wire: Rc<Wire>,
    mut reader: TcpOwnedReadHalf,
    events: async_channel::Sender<Tagged>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut decoder = Decoder::default();
    let end = loop {
        match super::io::read_more(&mut reader, &mut buf, 16 * 1024).await {
            Ok(0) | Err(_) => break SocketEvent::Closed,
            Ok(_) => {}
        }
        let mut values = Vec::new();
        let unreadable = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(value)) => values.push(value),
                Ok(None) => break None,
                Err(err) => break Some(err),
            }
        };
        if !values.is_empty() {
            let batch = (connection, SocketEvent::Values(values));
            if events.send(batch).await.is_err() {
                break SocketEvent::Closed;
            }
        }
        if let Some(err) = unreadable {
            break SocketEvent::Unreadable(err);
        }
    };
    drop(reader);
    wire.half_dropped();
    let _ = events.send((connection, end)).await;
}
