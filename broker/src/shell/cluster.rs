//! The node's link to Redis: one thread, one connection (RESP3, so commands and pub/sub
//! share it), fanning Redis messages in to the shards that own them.
//!
//! Shards send [`ClusterOut`] requests here; the link turns them into commands, pipelines
//! them, and routes replies and pub/sub messages to the channel's home shard over the mesh.
//! While Redis cannot be reached the node is degraded: events are handed straight back for
//! local delivery, channel reports are answered with "not applied" (the home shard then acts
//! alone), queries are refused, and `/up` and `/metrics` say so. After every (re)connect the
//! link asks each shard for its complete state and reports it again (see [`Resync`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use super::runtime::{Mesh, Signal};
use crate::config::{ClusterConfig, Driver};
use crate::core::channel::ChannelName;
use crate::core::cluster::resp::{Decoder, Value, encode_command};
use crate::core::cluster::scripts::{self, DueWebhook, Script};
use crate::core::cluster::{
    ChannelSync, ClusterOut, ClusterStatus, Command, Envelope, PresenceOp, StoredResource,
};
use crate::core::ids::{AppIdx, UserId};
use crate::core::shard::{
    AnswerPart, ChannelStats, MeshMsg, Query, ReplyTo, Shared, Watcher, home_shard, user_home_shard,
};
use crate::core::webhook::WebhookEvent;
use crate::core::wire::Frames;

/// What shards (and the server) send to the link.
pub enum LinkMsg {
    /// A shard's request.
    Out(ClusterOut),
    /// Remove this node from the cluster and stop.
    Stop,
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a stopping node waits for Redis to confirm its removal.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a node claims due webhook events from the cluster's queue.
const WEBHOOK_POLL: Duration = Duration::from_millis(100);
/// Most webhook events claimed at once.
const WEBHOOK_CLAIM: &str = "500";
/// Reports held back while a resynchronization gathers the shards' state.
const MAX_HELD: usize = 1 << 20;

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
            let link = Rc::new(Link::new(config, state, mesh, audit));
            let main = async move { link.run(inbox).await };
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

/// What a reply in the pipeline is for, in send order.
enum Pending {
    /// Nothing to do with it (handshake steps, `PUBLISH`).
    Ignore,
    /// A handshake step whose error ends the connection.
    Required(&'static str),
    /// The epoch: compared with the one seen before.
    Epoch,
    /// A channel report; `announce` false for reports restoring a Redis that lost its
    /// data, whose transitions are not news.
    Sync {
        /// The report.
        sync: Box<ChannelSync>,
        /// Whether the home shard hears of the reply.
        announce: bool,
    },
    /// The sweep that ends a resynchronization.
    Sweep,
    /// A heartbeat.
    Heartbeat {
        /// Sent as part of a (re)connect: "this node is new" is expected.
        initial: bool,
    },
    /// The removal of this node at shutdown.
    Leave,
    /// A claim of due webhook events.
    Due,
    /// An app's policy resources as Redis has them, and this node's (`TYPE\nID` → JSON).
    Resources {
        /// The app.
        app: AppIdx,
        /// What this node had.
        local: std::collections::HashMap<String, String>,
    },
    /// An app's token revocations as Redis has them.
    Revoked(AppIdx),
    /// A query.
    Query(ReplyTo, QueryKind),
    /// Which of a watcher's users are online.
    Online {
        /// The app.
        app: AppIdx,
        /// The watching socket.
        watcher: Watcher,
        /// The users asked about, in the order asked.
        users: Vec<UserId>,
    },
}

#[derive(Clone, Copy)]
enum QueryKind {
    Channel,
    Channels,
    Users,
}

/// A resynchronization in progress: the shards' dumps being gathered, and reports
/// ([`ClusterOut::Sync`], [`ClusterOut::UserStatus`]) made meanwhile, which must reach Redis
/// after the dumps.
struct Resync {
    awaiting: usize,
    dumps: Vec<ChannelSync>,
    users: Vec<(AppIdx, UserId)>,
    resources: Vec<StoredResource>,
    held: VecDeque<ClusterOut>,
}

/// One connection's write side.
struct Connection {
    /// The socket, for shutting it down when Redis stops answering.
    fd: std::os::fd::RawFd,
    /// The reader has ended (so the socket may be closed).
    reader_done: Cell<bool>,
    /// When the last reply arrived.
    last_reply: Cell<Instant>,
    out: RefCell<BytesMut>,
    pending: RefCell<VecDeque<Pending>>,
    wake_writer: Signal,
    broken: Cell<bool>,
    closed: Signal,
}

struct Link {
    config: ClusterConfig,
    state: Arc<Shared>,
    mesh: Mesh,
    audit: crate::audit::AuditLog,
    events_channel: String,
    shard_count: usize,
    conn: RefCell<Option<Rc<Connection>>>,
    /// Each script's SHA-1, indexed by [`Script`].
    shas: [String; Script::ALL.len()],
    epoch: RefCell<Option<Bytes>>,
    /// The epoch changed since the last connection: Redis lost its data, so reports made to
    /// restore it announce nothing.
    quiet: Cell<bool>,
    resync: RefCell<Option<Resync>>,
    stopping: Cell<bool>,
    left: Signal,
    /// A webhook claim is waiting for its reply (claims are not piled up).
    claiming: Cell<bool>,
}

impl Link {
    fn new(
        config: ClusterConfig,
        state: Arc<Shared>,
        mesh: Mesh,
        audit: crate::audit::AuditLog,
    ) -> Self {
        let events_channel = format!("{}:events", config.prefix);
        let shard_count = state.config.shards.max(1);
        Self {
            config,
            state,
            mesh,
            audit,
            events_channel,
            shard_count,
            conn: RefCell::new(None),
            shas: Script::ALL.map(Script::sha1),
            epoch: RefCell::new(None),
            quiet: Cell::new(false),
            resync: RefCell::new(None),
            stopping: Cell::new(false),
            left: Signal::default(),
            claiming: Cell::new(false),
        }
    }

    fn status(&self) -> &ClusterStatus {
        self.state
            .cluster
            .as_ref()
            .expect("the link runs only in cluster mode")
    }

    async fn run(self: Rc<Self>, inbox: async_channel::Receiver<LinkMsg>) {
        monoio::spawn(self.clone().keep_connected());
        monoio::spawn(self.clone().heartbeat());
        monoio::spawn(self.clone().claim_webhooks());
        while let Ok(msg) = inbox.recv().await {
            match msg {
                LinkMsg::Out(out) => self.handle(out).await,
                LinkMsg::Stop => {
                    self.leave().await;
                    return;
                }
            }
        }
    }

    /// The live connection, if Redis is reachable.
    fn connection(&self) -> Option<Rc<Connection>> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|c| !c.broken.get())
            .cloned()
    }

    async fn handle(&self, out: ClusterOut) {
        match out {
            ClusterOut::Publish {
                app,
                channel,
                frames,
                except,
            } => match self.connection() {
                Some(conn) => {
                    let app_id = self.app_id(app);
                    let envelope = Envelope::Event {
                        app: app_id.clone(),
                        channel: channel.as_str().to_owned(),
                        except,
                        frame: frames.pusher().clone(),
                        notice: false,
                    }
                    .encode();
                    self.status().published.fetch_add(1, Ordering::Relaxed);
                    let events = self.events_channel.as_bytes();
                    if channel.kind().is_cache() {
                        let ttl = self.state.apps.get(app).config.cache_ttl;
                        let ttl = ttl.as_millis().to_string();
                        let args = [
                            app_id.as_bytes(),
                            channel.as_str().as_bytes(),
                            ttl.as_bytes(),
                            events,
                            &envelope,
                        ];
                        send(
                            &conn,
                            &self.eval(Script::PublishCached, &args),
                            Pending::Ignore,
                        );
                    } else {
                        send(&conn, &[b"PUBLISH", events, &envelope], Pending::Ignore);
                    }
                }
                None => {
                    self.status().local_only.fetch_add(1, Ordering::Relaxed);
                    self.deliver_here(app, channel, frames, except, true).await;
                }
            },
            ClusterOut::Broadcast(command) => {
                if let Some(conn) = self.connection() {
                    self.send_command(&conn, command);
                }
            }
            report @ (ClusterOut::Sync(_) | ClusterOut::UserStatus { .. }) => {
                if let Some(resync) = self.resync.borrow_mut().as_mut()
                    && resync.held.len() < MAX_HELD
                {
                    resync.held.push_back(report);
                    return;
                }
                match self.connection().filter(|_| self.status().is_up()) {
                    Some(conn) => self.send_report(&conn, report),
                    None => self.degraded_report(report).await,
                }
            }
            ClusterOut::WhoIsOnline {
                app,
                watcher,
                users,
            } => match self.connection() {
                Some(conn) if !users.is_empty() => {
                    let key = format!("{}:u:{}", self.config.prefix, self.app_id(app));
                    let mut args: Vec<&[u8]> = vec![b"HMGET", key.as_bytes()];
                    args.extend(users.iter().map(|u| u.as_str().as_bytes()));
                    send(
                        &conn,
                        &args,
                        Pending::Online {
                            app,
                            watcher,
                            users: users.clone(),
                        },
                    );
                }
                _ => self.online_here(app, watcher, users).await,
            },
            ClusterOut::Query { reply_to, query } => match self.connection() {
                Some(conn) => self.send_query(&conn, reply_to, query),
                None => self.answer(reply_to, AnswerPart::Unavailable).await,
            },
            ClusterOut::Dump {
                channels,
                users,
                resources,
            } => {
                let finished = {
                    let mut resync = self.resync.borrow_mut();
                    match resync.as_mut() {
                        Some(r) => {
                            r.dumps.extend(channels);
                            r.users.extend(users);
                            r.resources.extend(resources);
                            r.awaiting = r.awaiting.saturating_sub(1);
                            r.awaiting == 0
                        }
                        None => false,
                    }
                };
                if finished {
                    self.finish_resync().await;
                }
            }
        }
    }

    /// Publishes a command for the other nodes; resources and revocations are also kept in
    /// Redis, in the same step, for nodes started later.
    fn send_command(&self, conn: &Connection, command: Command) {
        let record = match &command {
            Command::Terminate { .. } => None,
            Command::Resource {
                app,
                kind,
                id,
                json,
            } => Some((
                "res",
                app.clone(),
                scripts::resource_field(kind, id),
                json.clone().unwrap_or_default(),
            )),
            Command::Revoke {
                app,
                jti,
                until_unix,
            } => Some(("rev", app.clone(), jti.clone(), until_unix.to_string())),
        };
        let envelope = Envelope::Command {
            origin: self.status().node.clone(),
            command,
        }
        .encode();
        self.status().published.fetch_add(1, Ordering::Relaxed);
        let events = self.events_channel.as_bytes();
        match &record {
            Some((kind, app, field, value)) => {
                let args = [
                    kind.as_bytes(),
                    app.as_bytes(),
                    field.as_bytes(),
                    value.as_bytes(),
                    events,
                    &envelope,
                ];
                send(conn, &self.eval(Script::Record, &args), Pending::Ignore);
            }
            None => send(conn, &[b"PUBLISH", events, &envelope], Pending::Ignore),
        }
    }

    /// After a resynchronization: gives Redis this node's resources if it has none yet, and
    /// adopts Redis's copy; merges token revocations.
    fn send_shared_state(&self, conn: &Connection, resources: Vec<StoredResource>) {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        for app in self.state.apps.iter() {
            let app_id = app.config.id.as_str();
            let local: std::collections::HashMap<String, String> = resources
                .iter()
                .filter(|r| r.app == app.idx)
                .map(|r| (scripts::resource_field(&r.kind, &r.id), r.json.clone()))
                .collect();
            let mut args: Vec<&[u8]> = vec![app_id.as_bytes()];
            for (field, json) in &local {
                args.extend([field.as_bytes(), json.as_bytes()]);
            }
            let command = self.eval(Script::Resources, &args);
            send(
                conn,
                &command,
                Pending::Resources {
                    app: app.idx,
                    local: local.clone(),
                },
            );
            let revoked: Vec<(String, String)> = app
                .revocations()
                .into_iter()
                .map(|(jti, until)| (jti, until.to_string()))
                .collect();
            let mut args: Vec<&[u8]> = vec![app_id.as_bytes(), now_unix.as_bytes()];
            for (jti, until) in &revoked {
                args.extend([jti.as_bytes(), until.as_bytes()]);
            }
            send(
                conn,
                &self.eval(Script::Revoked, &args),
                Pending::Revoked(app.idx),
            );
        }
    }

    /// Sends a report held or made while connected.
    fn send_report(&self, conn: &Connection, report: ClusterOut) {
        match report {
            ClusterOut::Sync(sync) => self.send_sync(conn, sync, false),
            ClusterOut::UserStatus { app, user, online } => {
                self.send_user(conn, app, &user, online, false);
            }
            _ => {}
        }
    }

    /// Acts on a report Redis cannot take: the home shard acts on its own.
    async fn degraded_report(&self, report: ClusterOut) {
        match report {
            ClusterOut::Sync(sync) => self.degraded_sync(sync).await,
            ClusterOut::UserStatus { app, user, online } => {
                let home = user_home_shard(app, &user, self.shard_count);
                let msg = MeshMsg::ClusterUserStatus { app, user, online };
                self.mesh.deliver(home, msg).await;
            }
            _ => {}
        }
    }

    /// Without Redis: the watcher hears who of `users` is online on this node.
    async fn online_here(&self, app: AppIdx, watcher: Watcher, users: Vec<UserId>) {
        let Some(first) = users.first() else {
            return;
        };
        let home = user_home_shard(app, first, self.shard_count);
        let msg = MeshMsg::WhoIsOnlineHere {
            app,
            watcher,
            users,
        };
        self.mesh.deliver(home, msg).await;
    }

    /// Reports a user's first socket on this node (`online`) or its last one leaving.
    fn send_user(&self, conn: &Connection, app: AppIdx, user: &UserId, online: bool, resync: bool) {
        let app_id = self.app_id(app);
        let status = |online| {
            Envelope::UserStatus {
                app: app_id.clone(),
                user: user.as_str().to_owned(),
                online,
            }
            .encode()
        };
        let (came, went) = (status(true), status(false));
        let node = self.status().node.to_string();
        let quiet = if resync && self.quiet.get() { "1" } else { "0" };
        let online = if online { "1" } else { "0" };
        let args = [
            node.as_bytes(),
            app_id.as_bytes(),
            user.as_str().as_bytes(),
            online.as_bytes(),
            self.events_channel.as_bytes(),
            &came,
            &went,
            quiet.as_bytes(),
        ];
        send(conn, &self.eval(Script::User, &args), Pending::Ignore);
    }

    /// Hands an event to the channel's home shard on this node, for its subscribers here.
    async fn deliver_here(
        &self,
        app: AppIdx,
        channel: ChannelName,
        frames: Frames,
        except: Option<crate::core::ids::SocketId>,
        remember: bool,
    ) {
        let home = home_shard(app, &channel, self.shard_count);
        let msg = MeshMsg::Publish {
            app,
            channel,
            frames,
            except,
            published: Instant::now(),
            remember,
        };
        self.mesh.deliver(home, msg).await;
    }

    /// Answers a channel report with "not applied": the home shard acts on its own.
    async fn degraded_sync(&self, sync: Box<ChannelSync>) {
        let home = home_shard(sync.app, &sync.channel, self.shard_count);
        let msg = MeshMsg::ClusterSynced { sync, reply: None };
        self.mesh.deliver(home, msg).await;
    }

    fn send_sync(&self, conn: &Connection, sync: Box<ChannelSync>, resync: bool) {
        let app_id = self.app_id(sync.app);
        let count = sync.node_subscribers.to_string();
        let (op, user, info, added, removed, max) = match &sync.op {
            Some(PresenceOp::Join {
                user,
                info,
                added,
                removed,
                max_members,
            }) => (
                "join",
                user.as_str(),
                info.as_deref().unwrap_or(""),
                added.clone(),
                removed.clone(),
                max_members.to_string(),
            ),
            Some(PresenceOp::Leave { user }) => (
                "leave",
                user.as_str(),
                "",
                Bytes::new(),
                Bytes::new(),
                "0".into(),
            ),
            None => ("", "", "", Bytes::new(), Bytes::new(), "0".into()),
        };
        let quiet = if resync && self.quiet.get() { "1" } else { "0" };
        let want_roster = if sync.waiting.is_some() { "1" } else { "0" };
        let want_cache = if sync.fetch_cache { "1" } else { "0" };
        let node = self.status().node.to_string();
        let args = self.eval(
            Script::Sync,
            &[
                node.as_bytes(),
                app_id.as_bytes(),
                sync.channel.as_str().as_bytes(),
                count.as_bytes(),
                op.as_bytes(),
                user.as_bytes(),
                info.as_bytes(),
                &added,
                &removed,
                max.as_bytes(),
                self.events_channel.as_bytes(),
                quiet.as_bytes(),
                want_roster.as_bytes(),
                want_cache.as_bytes(),
            ],
        );
        encode_command(&args, &mut conn.out.borrow_mut());
        let pending = Pending::Sync {
            sync,
            announce: !(resync && self.quiet.get()),
        };
        queued(conn, pending);
    }

    fn send_query(&self, conn: &Connection, reply_to: ReplyTo, query: Query) {
        match query {
            Query::Channel { app, channel } => {
                let app = self.app_id(app);
                let args = [app.as_bytes(), channel.as_str().as_bytes()];
                send(
                    conn,
                    &self.eval(Script::Channel, &args),
                    Pending::Query(reply_to, QueryKind::Channel),
                );
            }
            Query::Channels {
                app,
                prefix: filter,
            } => {
                let app = self.app_id(app);
                let args = [app.as_bytes(), filter.as_bytes()];
                send(
                    conn,
                    &self.eval(Script::Channels, &args),
                    Pending::Query(reply_to, QueryKind::Channels),
                );
            }
            Query::Users { app, channel } => {
                let key = format!(
                    "{}:m:{}:{}",
                    self.config.prefix,
                    self.app_id(app),
                    channel.as_str()
                );
                send(
                    conn,
                    &[b"HKEYS", key.as_bytes()],
                    Pending::Query(reply_to, QueryKind::Users),
                );
            }
        }
    }

    async fn answer(&self, reply_to: ReplyTo, part: AnswerPart) {
        let msg = MeshMsg::Answer {
            query: reply_to.query,
            part,
        };
        self.mesh.deliver(reply_to.shard, msg).await;
    }

    /// `EVALSHA` of `script` with the prefix and then `args` as its ARGV (no keys: every
    /// script derives its key names from the prefix).
    fn eval<'a>(&'a self, script: Script, args: &[&'a [u8]]) -> Vec<&'a [u8]> {
        let mut command: Vec<&[u8]> = Vec::with_capacity(args.len() + 4);
        command.extend([
            b"EVALSHA".as_slice(),
            self.shas[script as usize].as_bytes(),
            b"0",
            self.config.prefix.as_bytes(),
        ]);
        command.extend_from_slice(args);
        command
    }

    fn app_id(&self, app: AppIdx) -> String {
        self.state.apps.get(app).config.id.clone()
    }

    fn app_idx(&self, id: &str) -> Option<AppIdx> {
        self.state.apps.by_id(id).map(|app| app.idx)
    }

    // ---- connection ------------------------------------------------------------------

    async fn keep_connected(self: Rc<Self>) {
        let mut backoff = Duration::from_millis(100);
        while !self.stopping.get() {
            match self.connect().await {
                Ok(stream) => {
                    backoff = Duration::from_millis(100);
                    self.status().connects.fetch_add(1, Ordering::Relaxed);
                    let conn = self.start(stream);
                    conn.closed.wait().await;
                    self.connection_lost(&conn).await;
                }
                Err(err) => {
                    tracing::warn!(redis = ?self.config.redis, %err, "cannot reach Redis; this node is degraded");
                }
            }
            monoio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let target = &self.config.redis;
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

    /// Starts the reader and writer of a new connection and queues the handshake: protocol
    /// 3 (and credentials), database, scripts, epoch, first heartbeat, then the events
    /// channel. The resynchronization starts when the epoch is known.
    fn start(self: &Rc<Self>, stream: TcpStream) -> Rc<Connection> {
        use std::os::fd::AsRawFd;
        let conn = Rc::new(Connection {
            fd: stream.as_raw_fd(),
            reader_done: Cell::new(false),
            last_reply: Cell::new(Instant::now()),
            out: RefCell::new(BytesMut::with_capacity(64 * 1024)),
            pending: RefCell::new(VecDeque::new()),
            wake_writer: Signal::default(),
            broken: Cell::new(false),
            closed: Signal::default(),
        });
        let target = &self.config.redis;
        match (&target.username, &target.password) {
            (user, Some(password)) => {
                let user = user.as_deref().unwrap_or("default");
                send(
                    &conn,
                    &[
                        b"HELLO",
                        b"3",
                        b"AUTH",
                        user.as_bytes(),
                        password.as_bytes(),
                    ],
                    Pending::Required("HELLO 3 AUTH"),
                );
            }
            _ => send(&conn, &[b"HELLO", b"3"], Pending::Required("HELLO 3")),
        }
        let db = target.db.to_string();
        send(
            &conn,
            &[b"SELECT", db.as_bytes()],
            Pending::Required("SELECT"),
        );
        for script in Script::ALL {
            send(
                &conn,
                &[b"SCRIPT", b"LOAD", script.source().as_bytes()],
                Pending::Ignore,
            );
        }
        let fresh = format!("{:016x}", fastrand::u64(..));
        send(
            &conn,
            &self.eval(Script::Epoch, &[fresh.as_bytes()]),
            Pending::Epoch,
        );
        self.send_heartbeat(&conn, true);
        // In RESP3 the confirmation is a push, not a reply: nothing waits for it.
        let events = self.events_channel.clone();
        let mut out = conn.out.borrow_mut();
        encode_command(&[b"SUBSCRIBE", events.as_bytes()], &mut out);
        drop(out);
        let (reader, writer) = stream.into_split();
        monoio::spawn(write_loop(conn.clone(), writer));
        monoio::spawn(self.clone().read_loop(conn.clone(), reader));
        *self.conn.borrow_mut() = Some(conn.clone());
        conn
    }

    async fn connection_lost(&self, conn: &Rc<Connection>) {
        let was_up = self.status().is_up();
        self.status().set_up(false);
        if was_up {
            tracing::warn!("lost the connection to Redis; this node is degraded until it returns");
        }
        *self.conn.borrow_mut() = None;
        self.claiming.set(false);
        // Whatever waited on this connection is answered as if Redis had not been reached.
        let pending: Vec<Pending> = conn.pending.borrow_mut().drain(..).collect();
        for item in pending {
            self.unanswered(item).await;
        }
        let resync = self.resync.borrow_mut().take();
        if let Some(resync) = resync {
            for report in resync.held {
                self.degraded_report(report).await;
            }
        }
        if self.stopping.get() {
            self.left.notify();
        }
    }

    async fn read_loop(
        self: Rc<Self>,
        conn: Rc<Connection>,
        mut reader: monoio::net::tcp::TcpOwnedReadHalf,
    ) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut decoder = Decoder::default();
        'read: loop {
            match super::io::read_more(&mut reader, &mut buf, 16 * 1024).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(Value::Push(items))) => self.handle_push(items).await,
                    Ok(Some(value)) => {
                        conn.last_reply.set(Instant::now());
                        let pending = conn.pending.borrow_mut().pop_front();
                        match pending {
                            Some(pending) => {
                                if !self.handle_reply(&conn, pending, value).await {
                                    break 'read;
                                }
                            }
                            None => {
                                tracing::warn!("Redis sent a reply nobody asked for");
                                break 'read;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(%err, "unreadable reply from Redis");
                        break 'read;
                    }
                }
            }
        }
        conn.reader_done.set(true);
        conn.broken.set(true);
        conn.wake_writer.notify();
        conn.closed.notify();
    }

    /// Answers what waited for a reply that will not come (Redis refused the command, or the
    /// connection broke) as if Redis had not been reached.
    async fn unanswered(&self, pending: Pending) {
        match pending {
            Pending::Sync { sync, .. } => self.degraded_sync(sync).await,
            Pending::Query(reply_to, _) => self.answer(reply_to, AnswerPart::Unavailable).await,
            Pending::Online {
                app,
                watcher,
                users,
            } => self.online_here(app, watcher, users).await,
            Pending::Due => self.claiming.set(false),
            _ => {}
        }
    }

    /// Acts on one reply; `false` ends the connection.
    async fn handle_reply(&self, conn: &Rc<Connection>, pending: Pending, value: Value) -> bool {
        if let Value::Error(text) = &value {
            let text = String::from_utf8_lossy(text).into_owned();
            match pending {
                Pending::Required(step) => {
                    tracing::error!(step, error = %text, "Redis refused the handshake");
                    return false;
                }
                other => {
                    tracing::warn!(error = %text, "Redis refused a command");
                    self.unanswered(other).await;
                }
            }
            return true;
        }
        match pending {
            Pending::Ignore | Pending::Required(_) => {}
            Pending::Epoch => {
                let epoch = value.as_bytes().cloned();
                let previous = self.epoch.replace(epoch.clone());
                let lost = previous.is_some() && previous != epoch;
                if lost {
                    tracing::warn!("Redis lost the cluster state (restarted empty); restoring it");
                }
                self.quiet.set(lost);
                self.begin_resync().await;
            }
            Pending::Sync { sync, announce } => {
                if !announce {
                    return true;
                }
                let user = match &sync.op {
                    Some(PresenceOp::Join { user, .. } | PresenceOp::Leave { user }) => {
                        Some(user.clone())
                    }
                    None => None,
                };
                let max_chars = self.state.apps.get(sync.app).config.max_user_id_chars;
                let reply = scripts::read_sync(value, user.as_ref(), max_chars).map(Box::new);
                let home = home_shard(sync.app, &sync.channel, self.shard_count);
                let msg = MeshMsg::ClusterSynced { sync, reply };
                self.mesh.deliver(home, msg).await;
            }
            Pending::Sweep => {
                let swept = scripts::read_removals(value).len();
                if swept > 0 {
                    tracing::info!(swept, "removed what this node no longer has");
                }
                self.status().set_up(true);
                tracing::info!(node = %self.status().node, "connected to Redis; cluster state synchronized");
                let held = self
                    .resync
                    .borrow_mut()
                    .take()
                    .map(|r| r.held)
                    .unwrap_or_default();
                for report in held {
                    self.send_report(conn, report);
                }
            }
            Pending::Heartbeat { initial } => {
                if let Some(beat) = scripts::read_heartbeat(value) {
                    let new = beat.new;
                    self.status()
                        .nodes_alive
                        .store(beat.alive, Ordering::Relaxed);
                    for (app, others) in self.state.apps.iter().zip(&beat.elsewhere) {
                        app.set_elsewhere(usize::try_from(*others).unwrap_or(usize::MAX));
                        app.share_api_limit(beat.alive);
                    }
                    if beat.dead > 0 {
                        self.status()
                            .nodes_removed
                            .fetch_add(beat.dead, Ordering::Relaxed);
                        tracing::warn!(
                            nodes = beat.dead,
                            changes = beat.removals.len(),
                            "removed dead nodes from the cluster"
                        );
                    }
                    if new && !initial && self.resync.borrow().is_none() {
                        tracing::warn!(
                            "this node had been declared dead; reporting its state again"
                        );
                        self.begin_resync().await;
                    }
                }
            }
            Pending::Leave => self.left.notify(),
            Pending::Due => {
                self.claiming.set(false);
                self.route_webhooks(scripts::read_due(value)).await;
            }
            Pending::Resources { app, mut local } => {
                let app_id = self.app_id(app);
                for (field, json) in scripts::read_pairs(value) {
                    let unchanged = local.remove(&field).is_some_and(|mine| mine == json);
                    let Some((kind, id)) = field.split_once('\n') else {
                        continue;
                    };
                    if !unchanged {
                        let command = Command::Resource {
                            app: app_id.clone(),
                            kind: kind.to_owned(),
                            id: id.to_owned(),
                            json: Some(json),
                        };
                        self.apply(command).await;
                    }
                }
                // What Redis no longer has was deleted while this node was away.
                for field in local.into_keys() {
                    if let Some((kind, id)) = field.split_once('\n') {
                        let command = Command::Resource {
                            app: app_id.clone(),
                            kind: kind.to_owned(),
                            id: id.to_owned(),
                            json: None,
                        };
                        self.apply(command).await;
                    }
                }
            }
            Pending::Revoked(app) => {
                let app_id = self.app_id(app);
                let known: std::collections::HashMap<String, u64> =
                    self.state.apps.get(app).revocations().into_iter().collect();
                for (jti, until) in scripts::read_pairs(value) {
                    let Ok(until_unix) = until.parse::<u64>() else {
                        continue;
                    };
                    if known.get(&jti).is_none_or(|mine| *mine < until_unix) {
                        let command = Command::Revoke {
                            app: app_id.clone(),
                            jti,
                            until_unix,
                        };
                        self.apply(command).await;
                    }
                }
            }
            Pending::Online {
                app: _,
                watcher,
                users,
            } => {
                let counts = value.into_array().unwrap_or_default();
                let online: Vec<UserId> = users
                    .into_iter()
                    .zip(counts)
                    .filter(|(_, count)| !matches!(count, Value::Null))
                    .map(|(user, _)| user)
                    .collect();
                if !online.is_empty() {
                    let msg = MeshMsg::WatchlistNotify {
                        watcher,
                        online: true,
                        users: online,
                    };
                    self.mesh.deliver(watcher.shard, msg).await;
                }
            }
            Pending::Query(reply_to, kind) => {
                let part = match kind {
                    QueryKind::Channel => {
                        let counts: Vec<i64> = value
                            .into_array()
                            .unwrap_or_default()
                            .iter()
                            .filter_map(Value::as_int)
                            .collect();
                        AnswerPart::Channel(ChannelStats {
                            subscription_count: counts.first().copied().unwrap_or(0).max(0)
                                as usize,
                            user_count: counts.get(1).copied().unwrap_or(0).max(0) as usize,
                        })
                    }
                    QueryKind::Channels => AnswerPart::Channels(
                        scripts::read_channels(value)
                            .into_iter()
                            .map(|(name, subs, users)| {
                                (
                                    name,
                                    ChannelStats {
                                        subscription_count: subs as usize,
                                        user_count: users as usize,
                                    },
                                )
                            })
                            .collect(),
                    ),
                    QueryKind::Users => AnswerPart::Users(
                        value
                            .into_array()
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|v| {
                                let text = std::str::from_utf8(v.as_bytes()?).ok()?;
                                UserId::parse(text, usize::MAX).ok()
                            })
                            .collect(),
                    ),
                };
                self.answer(reply_to, part).await;
            }
        }
        true
    }

    /// Asks every shard for its state; [`Link::finish_resync`] follows once all answered.
    async fn begin_resync(&self) {
        *self.resync.borrow_mut() = Some(Resync {
            awaiting: self.shard_count,
            dumps: Vec::new(),
            users: Vec::new(),
            resources: Vec::new(),
            held: VecDeque::new(),
        });
        for shard in 0..self.shard_count {
            self.mesh.deliver(shard, MeshMsg::ClusterDump).await;
        }
    }

    /// Reports every dumped channel, then sweeps what this node no longer has.
    async fn finish_resync(&self) {
        let Some(conn) = self.connection() else {
            return;
        };
        let (dumps, users, resources) = match self.resync.borrow_mut().as_mut() {
            Some(r) => (
                std::mem::take(&mut r.dumps),
                std::mem::take(&mut r.users),
                std::mem::take(&mut r.resources),
            ),
            None => return,
        };
        let mut keep: Vec<String> = Vec::with_capacity(dumps.len());
        for sync in dumps {
            let app = self.app_id(sync.app);
            keep.push(scripts::count_field(&app, sync.channel.as_str()));
            if let Some(PresenceOp::Join { user, .. }) = &sync.op {
                keep.push(scripts::member_field(
                    &app,
                    sync.channel.as_str(),
                    user.as_str(),
                ));
            }
            self.send_sync(&conn, Box::new(sync), true);
        }
        for (app, user) in users {
            keep.push(scripts::user_field(&self.app_id(app), user.as_str()));
            self.send_user(&conn, app, &user, true, true);
        }
        let node = self.status().node.to_string();
        let quiet = if self.quiet.get() { "1" } else { "0" };
        let mut args: Vec<&[u8]> = vec![
            node.as_bytes(),
            self.events_channel.as_bytes(),
            quiet.as_bytes(),
        ];
        args.extend(keep.iter().map(|k| k.as_bytes()));
        // Before the sweep, whose reply says the node is in sync: by then it has Redis's
        // resources and revocations.
        self.send_shared_state(&conn, resources);
        send(&conn, &self.eval(Script::Sweep, &args), Pending::Sweep);
    }

    /// Claims due webhook events every [`WEBHOOK_POLL`], one claim at a time.
    async fn claim_webhooks(self: Rc<Self>) {
        loop {
            monoio::time::sleep(WEBHOOK_POLL).await;
            if self.stopping.get() {
                return;
            }
            if self.claiming.get() || !self.status().is_up() {
                continue;
            }
            if let Some(conn) = self.connection() {
                self.claiming.set(true);
                let args = [WEBHOOK_CLAIM.as_bytes()];
                send(&conn, &self.eval(Script::Due, &args), Pending::Due);
            }
        }
    }

    /// Hands claimed webhook events to their channels' home shards, which send them.
    async fn route_webhooks(&self, due: Vec<DueWebhook>) {
        for hook in due {
            let Some(app) = self.app_idx(&hook.app) else {
                continue;
            };
            let Ok(channel) = ChannelName::parse(&hook.channel, usize::MAX) else {
                continue;
            };
            let event = match &hook.user {
                Some(user) => WebhookEvent::member(hook.kind, &hook.channel, user),
                None => WebhookEvent::channel(hook.kind, &hook.channel),
            };
            let home = home_shard(app, &channel, self.shard_count);
            self.mesh
                .deliver(home, MeshMsg::ClusterWebhook { app, event })
                .await;
        }
    }

    /// A pub/sub message: an event for the channel's home shard, or another node's command.
    async fn handle_push(&self, items: Vec<Value>) {
        let mut items = items.into_iter();
        let kind = items.next();
        if kind.as_ref().and_then(Value::as_bytes).map(|b| &b[..]) != Some(b"message") {
            return; // subscribe confirmations
        }
        let Some(payload) = items.nth(1).and_then(|v| v.as_bytes().cloned()) else {
            return;
        };
        self.status().received.fetch_add(1, Ordering::Relaxed);
        match Envelope::decode(&payload) {
            Ok(Envelope::Event {
                app,
                channel,
                except,
                frame,
                notice,
            }) => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                let Ok(channel) = ChannelName::parse(&channel, usize::MAX) else {
                    return;
                };
                self.deliver_here(app, channel, Frames::from_pusher(frame), except, !notice)
                    .await;
            }
            Ok(Envelope::UserStatus { app, user, online }) => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                let max = self.state.apps.get(app).config.max_user_id_chars.max(1);
                let Ok(user) = UserId::parse(&user, max) else {
                    return;
                };
                let home = user_home_shard(app, &user, self.shard_count);
                let msg = MeshMsg::ClusterUserStatus { app, user, online };
                self.mesh.deliver(home, msg).await;
            }
            Ok(Envelope::Command { origin, command }) => {
                if origin != self.status().node {
                    self.apply(command).await;
                }
            }
            Err(err) => tracing::warn!(%err, "unreadable cluster message"),
        }
    }

    /// Applies another node's command to this node's shards.
    async fn apply(&self, command: Command) {
        match command {
            Command::Terminate { app, user } => {
                let Some(app) = self.app_idx(&app) else {
                    return;
                };
                let Ok(user) = UserId::parse(&user, usize::MAX) else {
                    return;
                };
                for shard in 0..self.shard_count {
                    let msg = MeshMsg::TerminateUser {
                        app,
                        user: user.clone(),
                    };
                    self.mesh.deliver(shard, msg).await;
                }
            }
            Command::Revoke {
                app,
                jti,
                until_unix,
            } => {
                let Some(idx) = self.app_idx(&app) else {
                    return;
                };
                let now_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.state.apps.get(idx).revoke(&jti, until_unix, now_unix);
                for shard in 0..self.shard_count {
                    let msg = MeshMsg::RevokeToken {
                        app: idx,
                        jti: jti.clone(),
                    };
                    self.mesh.deliver(shard, msg).await;
                }
            }
            Command::Resource {
                app,
                kind,
                id,
                json,
            } => {
                let Some(idx) = self.app_idx(&app) else {
                    return;
                };
                let value: Option<crate::core::policy::Resource> = match &json {
                    Some(json) => match serde_json::from_str(json) {
                        Ok(resource) => Some(resource),
                        Err(err) => {
                            tracing::warn!(%err, "unreadable resource from another node");
                            return;
                        }
                    },
                    None => None,
                };
                let shared = value.clone().map(Arc::new);
                for shard in 0..self.shard_count {
                    let msg = MeshMsg::SetResource {
                        reply_to: None,
                        app: idx,
                        kind: kind.clone(),
                        id: id.clone(),
                        resource: shared.clone(),
                    };
                    self.mesh.deliver(shard, msg).await;
                }
                let write = crate::audit::ResourceWrite {
                    app,
                    kind,
                    id,
                    value,
                };
                if !self.audit.persist_resource(write) {
                    tracing::warn!(
                        "the audit writer is full; a resource from another node was applied but not stored"
                    );
                }
            }
        }
    }

    // ---- heartbeats and leaving --------------------------------------------------------

    fn send_heartbeat(&self, conn: &Connection, initial: bool) {
        let node = self.status().node.to_string();
        let timeout = self.config.dead_after().as_millis().to_string();
        let counts: Vec<(&str, String)> = self
            .state
            .apps
            .iter()
            .map(|app| (app.config.id.as_str(), app.connections().to_string()))
            .collect();
        let mut args = vec![
            node.as_bytes(),
            timeout.as_bytes(),
            self.events_channel.as_bytes(),
        ];
        for (app, count) in &counts {
            args.extend([app.as_bytes(), count.as_bytes()]);
        }
        send(
            conn,
            &self.eval(Script::Heartbeat, &args),
            Pending::Heartbeat { initial },
        );
    }

    async fn heartbeat(self: Rc<Self>) {
        let every = self.config.heartbeat_interval();
        loop {
            monoio::time::sleep(every).await;
            if self.stopping.get() {
                return;
            }
            if let Some(conn) = self.connection() {
                let silent = conn.last_reply.get().elapsed();
                if !conn.pending.borrow().is_empty() && silent > every * 2 + Duration::from_secs(1)
                {
                    tracing::warn!(?silent, "Redis stopped answering; reconnecting");
                    conn.broken.set(true);
                    if !conn.reader_done.get() {
                        // SAFETY: the reader task owns the read half until it sets
                        // `reader_done`, so the fd is open and is this connection's;
                        // shutdown(2) has no memory effects and wakes the pending read.
                        unsafe {
                            libc::shutdown(conn.fd, libc::SHUT_RDWR);
                        }
                    }
                    continue;
                }
                self.send_heartbeat(&conn, false);
            }
        }
    }

    /// Removes this node's part from the cluster (members leave at once, not after the
    /// timeout), waiting briefly for Redis to confirm.
    async fn leave(&self) {
        self.stopping.set(true);
        let Some(conn) = self.connection() else {
            return;
        };
        let node = self.status().node.to_string();
        let args = [node.as_bytes(), self.events_channel.as_bytes()];
        send(&conn, &self.eval(Script::Leave, &args), Pending::Leave);
        let _ = monoio::time::timeout(LEAVE_TIMEOUT, self.left.wait()).await;
        self.status().set_up(false);
    }
}

/// Queues a command and what to do with its reply.
fn send(conn: &Connection, args: &[&[u8]], pending: Pending) {
    if conn.broken.get() {
        return;
    }
    encode_command(args, &mut conn.out.borrow_mut());
    queued(conn, pending);
}

/// Records what to do with the reply to a command just encoded, and wakes the writer.
fn queued(conn: &Connection, pending: Pending) {
    conn.pending.borrow_mut().push_back(pending);
    conn.wake_writer.notify();
}

/// Writes whatever was queued, in order, until the connection breaks.
async fn write_loop(conn: Rc<Connection>, mut writer: monoio::net::tcp::TcpOwnedWriteHalf) {
    loop {
        let chunk = {
            let mut out = conn.out.borrow_mut();
            (!out.is_empty()).then(|| out.split().freeze())
        };
        match chunk {
            Some(chunk) => {
                let (result, _) = writer.write_all(chunk).await;
                if result.is_err() {
                    break;
                }
            }
            None if conn.broken.get() => break,
            None => conn.wake_writer.wait().await,
        }
    }
    conn.broken.set(true);
    let _ = writer.shutdown().await;
    conn.closed.notify();
}
