//! The io_uring shell: threads, sockets, timers and the mesh. No protocol rules live here.
//!
//! One shard per core, each a monoio runtime on its own thread with its own `SO_REUSEPORT`
//! listener. A connection task reads bytes, feeds the shard's [`Shard`](crate::core::shard::Shard)
//! and wakes the writer tasks of connections that got output; writers coalesce queued frames
//! into one `writev`.

pub mod channel_auth;
mod cluster;
mod conn;
pub mod cpus;
mod inbox;
pub mod io;
mod polling;
mod redis_broadcast;
mod runtime;
mod signals;
mod socketio;
pub mod tls;
pub mod verify;

pub use runtime::Signal;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::config::{Config, Driver};
use crate::core::app::Revocation;
use crate::metrics::ShardMetrics;
use crate::server::ServerState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another process already listens on the address.
    #[error("{addr} is already in use by another process (is a second ringcast running?)")]
    AddressInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Binding or configuring a socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard thread could not be started.
    #[error("cannot start shard thread: {0}")]
    Thread(std::io::Error),
    /// The data directory or the audit store could not be opened.
    #[error("{0}")]
    Storage(String),
    /// `[server.tls]` names a certificate or key that cannot be used.
    #[error("[server.tls]: {0}")]
    Tls(#[from] tls::CertError),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    driver: Driver,
    mesh: runtime::Mesh,
    threads: Vec<thread::JoinHandle<()>>,
    webhooks: crate::webhooks::WebhookQueue,
    webhook_thread: thread::JoinHandle<()>,
    jwks: crate::jwks::JwksFetchers,
    audit: crate::audit::AuditLog,
    audit_thread: thread::JoinHandle<()>,
    /// The history store, when an app keeps history.
    history: Option<(crate::history::HistoryStore, thread::JoinHandle<()>)>,
    inbox_store: Option<(crate::inbox::Inbox, thread::JoinHandle<()>)>,
    cluster: Option<(
        async_channel::Sender<cluster::LinkMsg>,
        thread::JoinHandle<()>,
    )>,
    shutdown_timeout: Duration,
    state: Arc<ServerState>,
}

/// Requests from the shards that may wait for the cluster link before shards keep a backlog.
const CLUSTER_QUEUE_CAPACITY: usize = 65_536;

/// Audit records that may wait for the writer before new ones are dropped.
const AUDIT_QUEUE_CAPACITY: usize = 16_384;

/// History writes that may wait for the writer before new ones are dropped.
const HISTORY_QUEUE_CAPACITY: usize = 65_536;

/// Webhook events that may wait for the sender thread before new ones are dropped.
const WEBHOOK_QUEUE_CAPACITY: usize = 16_384;
/// How long shutdown waits for the JWKS fetchers (one in a fetch ends by itself later).
const JWKS_STOP_TIMEOUT: Duration = Duration::from_millis(200);
/// How long shutdown waits for the webhook sender's last attempt.
const WEBHOOK_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl Server {
    /// Binds every shard's listener and starts the shard threads.
    pub fn start(config: Config) -> Result<Server, StartError> {
        // Before any thread exists, so that every thread inherits the mask.
        signals::block_handled_signals();
        let tls = config
            .server
            .tls
            .as_ref()
            .map(tls::CertStore::load)
            .transpose()?;
        let requested = SocketAddr::new(config.server.host, config.server.port);
        let shard_count = config.server.shards.max(1);
        let driver = runtime::choose_driver(config.server.driver, shard_count);
        let listeners = bind_listeners(requested, shard_count)?;
        let addr = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(requested);
        let shutdown_timeout = config.server.shutdown_timeout;
        let webhook_metrics = Arc::new(crate::metrics::WebhookMetrics::default());
        let audit_metrics = Arc::new(crate::audit::AuditMetrics::default());
        let audit_dir = config.server.data_dir.join("audit");
        std::fs::create_dir_all(&audit_dir).map_err(|e| {
            StartError::Storage(format!("cannot create {}: {e}", audit_dir.display()))
        })?;
        let settings = crate::audit::AuditSettings {
            flush_interval: config.server.audit_flush_interval,
            retention: config.server.audit_retention,
            max_records: config.server.audit_max_records,
            queue_capacity: AUDIT_QUEUE_CAPACITY,
            cache_bytes: config.server.audit_cache_bytes,
        };
        let (audit, audit_thread, loaded) =
            crate::audit::AuditLog::open(&audit_dir, settings, audit_metrics.clone())
                .map_err(|e| StartError::Storage(e.to_string()))?;
        let mut shared = crate::server::shared_for(&config);
        for (app_id, kind, id, resource) in loaded.resources {
            // Resources of apps no longer configured stay on disk but are not loaded.
            if let Some(idx) = shared.apps.by_id(&app_id).map(|app| app.idx) {
                shared.initial_resources[idx].insert((kind, id), resource);
            }
        }
        let history_metrics = Arc::new(crate::history::HistoryMetrics::default());
        let history = open_history(&config, &mut shared, history_metrics.clone())?;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for stored in loaded.revocations {
            // The store holds what this node wrote; an entry it cannot read is skipped.
            let app = shared.apps.by_id(&stored.app);
            if let (Some(app), Some(revocation)) = (app, Revocation::parse(&stored.key)) {
                app.revoke(&revocation, stored.until_unix, now_unix);
            }
        }
        let verifiers = verify::Verifiers::start(&config.apps).map_err(StartError::Thread)?;
        let authorizers =
            channel_auth::Authorizers::start(&config.apps).map_err(StartError::Thread)?;
        let mut state = ServerState::new(
            config,
            shared,
            webhook_metrics.clone(),
            audit_metrics,
            tls,
            verifiers,
            authorizers,
        );
        state.history_metrics = history_metrics;
        let dashboard = &state.admin_ui;
        if dashboard.is_built() {
            let (files, bytes) = dashboard.size();
            let source = dashboard.source();
            tracing::info!(%source, files, bytes, "admin dashboard served at /admin/");
        } else {
            tracing::warn!(
                source = %dashboard.source(),
                "the admin dashboard is not built (scripts/build-admin-ui); /admin/ says how to build it"
            );
        }
        let inbox_store = inbox::open(&state)?;
        let state = Arc::new(state);
        let shared = state.shared.clone();
        let (webhooks, webhook_thread) =
            crate::webhooks::spawn(shared.clone(), WEBHOOK_QUEUE_CAPACITY, webhook_metrics)
                .map_err(StartError::Thread)?;
        let jwks = crate::jwks::spawn(&shared.apps).map_err(StartError::Thread)?;
        let metrics: Arc<Vec<Arc<ShardMetrics>>> = Arc::new(
            (0..shard_count)
                .map(|_| Arc::new(ShardMetrics::new(shared.apps.len())))
                .collect(),
        );
        let mesh = runtime::Mesh::new(shard_count, shared.config.mesh_queue_capacity);
        let cluster = match shared.config.cluster.clone() {
            Some(config) => {
                let (sender, receiver) = async_channel::bounded(CLUSTER_QUEUE_CAPACITY);
                let node = shared.cluster.as_ref().map(|c| c.node.to_string());
                tracing::info!(redis = ?config.redis, node, "cluster mode");
                let thread = cluster::spawn(
                    config,
                    shared.clone(),
                    mesh.clone(),
                    audit.clone(),
                    receiver,
                    driver,
                )
                .map_err(StartError::Thread)?;
                Some((sender, thread))
            }
            None => None,
        };
        let placement = cpus::place(&cpus::allowed_cpus(), shard_count, shared.config.pin_cores);
        // Each shard says when it has placed itself, so that /metrics shows every pin from
        // the first request on.
        let (placed, all_placed) = std::sync::mpsc::channel::<()>();
        let mut threads = Vec::with_capacity(shard_count);
        for (id, listener) in listeners.into_iter().enumerate() {
            let cpu = placement.cpu_of(id);
            let shard_metrics = metrics[id].clone();
            let placed = placed.clone();
            let setup = runtime::ShardSetup {
                id,
                shard_count,
                state: state.clone(),
                metrics: metrics.clone(),
                mesh: mesh.clone(),
                listener,
                driver,
                webhooks: webhooks.clone(),
                audit: audit.clone(),
                history: history.as_ref().map(|(store, _)| store.clone()),
                inbox_store: inbox_store.as_ref().map(|(store, _)| store.clone()),
                link: cluster.as_ref().map(|(sender, _)| sender.clone()),
            };
            let thread = thread::Builder::new()
                .name(format!("ringcast-shard-{id}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        match cpus::pin_current_thread(cpu) {
                            Ok(()) => shard_metrics.pin_to(cpu),
                            Err(err) => {
                                tracing::warn!(%err, shard = id, cpu, "cannot pin the shard to its CPU; it runs unpinned");
                            }
                        }
                    }
                    let _ = placed.send(());
                    runtime::run_shard(setup)
                })
                .map_err(StartError::Thread)?;
            threads.push(thread);
        }
        drop(placed);
        // Ends early only if a shard thread died before placing itself.
        all_placed.iter().take(threads.len()).for_each(drop);
        let scheme = if state.tls.is_some() {
            "https/wss"
        } else {
            "http/ws"
        };
        tracing::info!(%addr, shards = shard_count, driver = driver.name(), scheme, cpus = %placement, "listening");
        Ok(Server {
            state,
            addr,
            driver,
            mesh,
            threads,
            webhooks,
            webhook_thread,
            jwks,
            audit,
            audit_thread,
            history,
            inbox_store,
            cluster,
            shutdown_timeout,
        })
    }

    /// The address the shards listen on (with the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The I/O driver in use.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Reads `[server.tls]`'s files again: new connections get the new certificate, live
    /// ones keep theirs; on an error the old certificate stays. `Ok(false)`: no TLS.
    pub fn reload_tls(&self) -> Result<bool, tls::CertError> {
        reload_tls(&self.state)
    }

    /// Blocks until SIGTERM or SIGINT, then shuts down gracefully. Meanwhile SIGHUP reloads
    /// the TLS certificate.
    pub fn run_until_signal(self) {
        let state = self.state.clone();
        let reloader = thread::Builder::new()
            .name("ringcast-sighup".into())
            .spawn(move || {
                loop {
                    signals::wait_for_reload();
                    match reload_tls(&state) {
                        Ok(true) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                        Ok(false) => tracing::info!("SIGHUP: no [server.tls], nothing to reload"),
                        Err(err) => tracing::error!(
                            %err,
                            "SIGHUP: TLS certificate not reloaded; the previous one stays in use"
                        ),
                    }
                }
            });
        if let Err(err) = reloader {
            tracing::warn!(%err, "cannot start the SIGHUP thread; certificates will not reload");
        }
        let signal = signals::wait_for_termination();
        tracing::info!(signal, "shutting down");
        self.shutdown();
    }

    /// Drains, then stops: closes every client with 4200 and, until the last one has gone
    /// (at most `shutdown_timeout_secs`), still answers on the port (`/up` and upgrades get
    /// 503); then stops accepting and waits (bounded) for the shards and the writer threads.
    pub fn shutdown(mut self) {
        self.mesh.request_shutdown();
        // No connection is admitted from here on: renewals while draining use the keys in use.
        self.jwks
            .stop(std::time::Instant::now() + JWKS_STOP_TIMEOUT);
        let deadline = std::time::Instant::now() + self.shutdown_timeout + Duration::from_secs(1);
        for thread in self.threads {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("a shard did not stop within the shutdown timeout");
            }
        }
        // The node leaves the cluster: its members are removed now rather than at the timeout.
        if let Some((link, thread)) = self.cluster {
            let _ = link.try_send(cluster::LinkMsg::Stop);
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
        // The shards are done producing: the sender sends what is pending and ends.
        self.webhooks.stop(WEBHOOK_FLUSH_TIMEOUT);
        let deadline = std::time::Instant::now() + WEBHOOK_FLUSH_TIMEOUT;
        while !self.webhook_thread.is_finished() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if self.webhook_thread.is_finished() {
            let _ = self.webhook_thread.join();
        }
        // Last: everything the shards recorded is written and flushed before the process ends.
        self.audit.stop(WEBHOOK_FLUSH_TIMEOUT);
        let deadline = std::time::Instant::now() + WEBHOOK_FLUSH_TIMEOUT;
        while !self.audit_thread.is_finished() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if self.audit_thread.is_finished() {
            let _ = self.audit_thread.join();
        }
        if let Some((store, thread)) = self.history.take() {
            store.stop(WEBHOOK_FLUSH_TIMEOUT);
            let deadline = std::time::Instant::now() + WEBHOOK_FLUSH_TIMEOUT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        if let Some((store, thread)) = self.inbox_store {
            inbox::stop(store, thread, WEBHOOK_FLUSH_TIMEOUT);
        }
    }
}

/// Opens `data/history` when an app keeps history, and puts what it holds into `shared`
/// for the shards to start from.
fn open_history(
    config: &Config,
    shared: &mut crate::core::shard::Shared,
    metrics: Arc<crate::history::HistoryMetrics>,
) -> Result<Option<(crate::history::HistoryStore, thread::JoinHandle<()>)>, StartError> {
    if config.apps.iter().all(|app| app.history.is_none()) {
        return Ok(None);
    }
    let dir = config.server.data_dir.join("history");
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Storage(format!("cannot create {}: {e}", dir.display())))?;
    let settings = crate::history::HistorySettings {
        flush_interval: config.server.audit_flush_interval,
        queue_capacity: HISTORY_QUEUE_CAPACITY,
        cache_bytes: config.server.audit_cache_bytes,
    };
    let (store, thread, loaded) =
        crate::history::HistoryStore::open(&dir, settings, metrics, &config.apps)
            .map_err(|e| StartError::Storage(e.to_string()))?;
    for (app_id, channel, events) in loaded {
        if let Some(idx) = shared.apps.by_id(&app_id).map(|app| app.idx) {
            shared.initial_history[idx].push((channel, events));
        }
    }
    Ok(Some((store, thread)))
}

fn reload_tls(state: &ServerState) -> Result<bool, tls::CertError> {
    match &state.tls {
        Some(store) => store.reload().map(|()| true),
        None => Ok(false),
    }
}

/// Binds one `SO_REUSEPORT` listener per shard on the same address.
///
/// With `SO_REUSEPORT` a second broker on the same port would silently share it. A plain bind
/// without the option comes first: it fails when anybody already listens there.
fn bind_listeners(addr: SocketAddr, count: usize) -> Result<Vec<StdListener>, StartError> {
    if addr.port() != 0 {
        match StdListener::bind(addr) {
            Ok(probe) => drop(probe),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(StartError::AddressInUse { addr });
            }
            Err(source) => return Err(StartError::Listen { addr, source }),
        }
    }
    let first = reuseport_listener(addr)?;
    let bound = first
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(reuseport_listener(bound)?);
    }
    Ok(listeners)
}

fn reuseport_listener(addr: SocketAddr) -> Result<StdListener, StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let fail = |source| StartError::Listen { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(4096).map_err(fail)?;
    Ok(socket.into())
}
