//! Who may connect: the WebSocket path, protocol version, app, origin, token and quotas;
//! and what a closed socket gives back.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::AuditAction;
use super::conn::{Conn, Ended, Recovery};
use super::events::client_event_rate;
use super::mesh::{ConnKey, MeshMsg, Watcher};
use super::outbox::mark_ready;
use super::{Accept, ConnectRequest, Credentials, Shard};
use crate::core::app::{App, QuotaExceeded, TokenError};
use crate::core::auth::jwt::Identity;
use crate::core::counters::inc;
use crate::core::ids::SocketId;
use crate::core::rate_limit::TokenBucket;
use crate::core::wire::{Fault, Reply, Wire};
use crate::core::ws::frame::{self, FrameLimits, MessageDecoder, Role};
use ringcast_shared::{AuditDecision, AuditKind};

/// The audit rule of a decision about a connection's JWT.
const JWT_RULE: &str = "jwt";
/// The audit rule of a decision about backend-verified credentials.
const TOKEN_VERIFICATION_RULE: &str = "token_verification";

/// Why a connection is refused.
#[derive(Debug)]
enum ConnectRefusal {
    /// The wire's checks on the URL failed (path, protocol version, no such app).
    Url(Fault),
    /// The app is disabled.
    AppDisabled,
    /// The `Origin` is not on the app's list.
    Origin,
    /// The token is missing (where required), invalid, expired or revoked.
    Token(TokenError),
    /// The server or the app is at its connection quota.
    Full(QuotaExceeded),
}

impl ConnectRefusal {
    fn fault(&self) -> Fault {
        match self {
            ConnectRefusal::Url(fault) => *fault,
            ConnectRefusal::AppDisabled => Fault::AppDisabled,
            ConnectRefusal::Origin | ConnectRefusal::Token(_) => Fault::Unauthorized,
            ConnectRefusal::Full(QuotaExceeded::Server) => Fault::OverCapacity,
            ConnectRefusal::Full(QuotaExceeded::App) => Fault::AppOverConnectionQuota,
        }
    }

    /// What the client is told beyond the fault's own words.
    fn text(&self) -> Option<String> {
        match self {
            ConnectRefusal::Origin => Some("origin not allowed".into()),
            ConnectRefusal::Token(err) => Some(format!("token refused: {err}")),
            _ => None,
        }
    }
}

impl Shard {
    /// Validates a WebSocket connection request (after the RFC 6455 upgrade succeeded) and
    /// opens the connection, or says which fault closes it.
    pub fn accept_websocket(&mut self, request: &ConnectRequest<'_>, now: Instant) -> Accept {
        match self.try_accept(request, now) {
            Ok(key) => Accept::Open(key),
            Err(refusal) => {
                let fault = refusal.fault();
                self.counters.error(fault);
                let text = refusal.text();
                let reply = Reply::Refused {
                    fault,
                    text: text.as_deref(),
                };
                let (code, reason) = request.wire.close_for(fault);
                let mut bytes = BytesMut::from(&request.wire.encode(&reply)[..]);
                bytes.extend_from_slice(&frame::encode_close(code, reason));
                Accept::Refused(bytes.freeze(), fault)
            }
        }
    }

    fn try_accept(
        &mut self,
        request: &ConnectRequest<'_>,
        now: Instant,
    ) -> Result<ConnKey, ConnectRefusal> {
        let app = request
            .wire
            .app(&self.state.apps, request.path, request.protocol)
            .map_err(ConnectRefusal::Url)?;
        if !app.config.enabled {
            return Err(ConnectRefusal::AppDisabled);
        }
        let app_idx = app.idx;
        if !app.config.origin_allowed(request.origin) {
            let reason = request
                .origin
                .map(|o| format!("origin {:?}", o.chars().take(128).collect::<String>()));
            self.audit_event(
                app_idx,
                AuditKind::Security,
                AuditAction::Origin,
                AuditDecision::Deny,
                Some(request.remote),
                Some("allowed_origins"),
                reason,
            );
            return Err(ConnectRefusal::Origin);
        }
        let (rule, checked) = match request.credentials {
            Credentials::Token(token) => {
                let rule = if app.config.jwt.is_none() && app.config.token_verification.is_some() {
                    TOKEN_VERIFICATION_RULE
                } else {
                    JWT_RULE
                };
                (rule, app.authenticate(token, request.now_unix))
            }
            Credentials::Backend {
                verdict,
                requested_actor,
            } => (
                TOKEN_VERIFICATION_RULE,
                app.backend_identity(verdict, requested_actor, request.now_unix)
                    .map(Some),
            ),
        };
        let identity = match checked {
            Ok(identity) => identity,
            Err(e) => {
                self.audit_event(
                    app_idx,
                    AuditKind::Decision,
                    AuditAction::Token,
                    AuditDecision::Deny,
                    Some(request.remote),
                    Some(rule),
                    Some(e.to_string()),
                );
                return Err(ConnectRefusal::Token(e));
            }
        };
        let app = self.state.apps.get(app_idx);
        let token_expires = identity
            .as_ref()
            .and_then(|id| app.token_deadline(now, request.now_unix, id.expires_at));
        // One limit for every app: the loader checked that each app's largest client event
        // fits, so data over `max_message_bytes` reaches the shard and gets 4306.
        let max_ws_message_bytes = self.state.config.max_ws_message_bytes;
        let limits = FrameLimits {
            max_frame_bytes: max_ws_message_bytes,
            max_message_bytes: max_ws_message_bytes,
        };
        let client_event_rate = client_event_rate(app.config.client_events_per_second);
        self.state
            .apps
            .try_connect(app_idx)
            .map_err(ConnectRefusal::Full)?;
        self.next_socket += 1;
        // The low half carries the shard id so ids never collide across shards.
        let socket_id = SocketId::new(
            self.socket_prefix,
            self.next_socket * self.shard_count as u64 + self.id as u64,
        );
        let tenant: Option<Box<str>> = identity
            .as_ref()
            .and_then(|i| i.tenant.as_deref())
            .map(Into::into);
        if let Some(tenant) = &tenant {
            self.state.tenants.connect(app_idx, tenant);
        }
        let key = self.conns.insert(Conn {
            socket_id,
            wire: request.wire,
            app: app_idx,
            decoder: MessageDecoder::new(Role::Server, limits),
            subscriptions: Vec::new(),
            connected_at: now,
            last_seen: now,
            ping_sent: None,
            user: None,
            watchlist: Vec::new(),
            watched_online: Vec::new(),
            signin_info: None,
            identity: identity.map(Box::new),
            tenant,
            remote: request.remote,
            token_expires,
            client_events: TokenBucket::new(
                client_event_rate.capacity,
                client_event_rate.period,
                now,
            ),
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            receipts: None,
            in_ready: false,
            closing: false,
            peer_closed: false,
            close: None,
            recovery: request
                .recovery_pid
                .filter(|_| recovery_window(app).is_some())
                .map(|pid| {
                    Box::new(Recovery {
                        pid: pid.into(),
                        parked_since: None,
                        history_offset: None,
                    })
                }),
        });
        inc(&self.counters.connections_opened);
        if self.conns.get(key).is_some_and(|c| c.identity.is_some()) {
            self.audit_conn(
                key,
                AuditKind::Decision,
                AuditAction::Token,
                AuditDecision::Allow,
                None,
                Some(rule),
                None,
            );
        }
        self.counters
            .app(app_idx)
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reply_established(key);
        Ok(key)
    }

    /// Queues the reply that opens connection `key` (Socket.IO: the `CONNECT` answer, with
    /// the `pid` a recoverable connection reconnects with).
    fn reply_established(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let established = Reply::Established {
            socket_id: conn.socket_id,
            activity_timeout: self.state.config.activity_timeout,
            pid: conn.recovery.as_deref().map(|r| &*r.pid),
        };
        let frame = conn.wire.encode(&established);
        self.send_frame(key, frame);
    }

    /// A client reconnecting with the `pid` of a connection whose transport was lost
    /// takes it over: same socket id, same subscriptions, and the events queued meanwhile
    /// follow the `CONNECT` answer, in order. `None` (a new connection is opened instead)
    /// when no such connection waits here, or the request names another app or subject.
    pub fn resume(
        &mut self,
        pid: &str,
        request: &ConnectRequest<'_>,
        now: Instant,
    ) -> Option<ConnKey> {
        let key = *self.parked.get(pid)?;
        let conn = self.conns.get(key)?;
        let app = request
            .wire
            .app(&self.state.apps, request.path, request.protocol)
            .ok()?;
        if app.idx != conn.app || conn.closing {
            return None;
        }
        let identity = match request.credentials {
            Credentials::Token(token) => app.authenticate(token, request.now_unix).ok()?,
            Credentials::Backend {
                verdict,
                requested_actor,
            } => Some(
                app.backend_identity(verdict, requested_actor, request.now_unix)
                    .ok()?,
            ),
        };
        let subject = |id: Option<&Identity>| id.and_then(|i| i.user_id.clone());
        if subject(identity.as_ref()) != subject(conn.identity.as_deref()) {
            return None;
        }
        self.parked.remove(pid);
        let conn = self.conns.get_mut(key)?;
        if let Some(recovery) = conn.recovery.as_mut() {
            recovery.parked_since = None;
        }
        conn.remote = request.remote;
        conn.peer_closed = false;
        conn.last_seen = now;
        conn.ping_sent = None;
        // The answer goes before what waited, so it is queued at the front.
        let established = Reply::Established {
            socket_id: conn.socket_id,
            activity_timeout: self.state.config.activity_timeout,
            pid: Some(pid),
        };
        let frame = conn.wire.encode(&established);
        conn.outbox_bytes += frame.len();
        conn.outbox.push_front((frame, None));
        mark_ready(conn, key, &mut self.ready);
        Some(key)
    }

    /// Counts a connection attempt on `path` (in `wire`'s form) from `remote` against the
    /// app's per-IP rate limit, before the upgrade; `Err` is the time to wait (HTTP 429 with
    /// `Retry-After`).
    pub fn connection_attempt(
        &mut self,
        wire: Wire,
        path: &str,
        remote: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(app) = wire.app_of_path(&self.state.apps, path) else {
            return Ok(());
        };
        let app_idx = app.idx;
        let result = app.admit_connection_attempt(remote, now);
        if result.is_err() {
            self.audit_event(
                app_idx,
                AuditKind::Security,
                AuditAction::RateLimit,
                AuditDecision::Deny,
                Some(remote),
                Some("connections_per_minute_per_ip"),
                None,
            );
        }
        result
    }

    /// The socket of `key` is gone (closed by either side, or failed): forget it.
    pub fn handle_disconnect(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        now: Instant,
    ) -> Option<Ended> {
        if self.socket_id(key) != Some(socket_id) || self.is_parked(key) || self.park(key, now) {
            return None;
        }
        self.forget(key, now)
    }

    /// Keeps a recoverable connection whose transport was lost (neither side closed it)
    /// for its app's recovery window; `false` when it is not one.
    pub(super) fn park(&mut self, key: ConnKey, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let Some(recovery) = conn.recovery.as_mut() else {
            return false;
        };
        if conn.closing || recovery.parked_since.is_some() {
            return false;
        }
        recovery.parked_since = Some(now);
        self.parked.insert(recovery.pid.clone(), key);
        true
    }

    /// Ends parked connections whose recovery window has passed (or that were closed
    /// meanwhile, their queue having filled).
    pub(super) fn forget_parked(&mut self, now: Instant) {
        let due: Vec<ConnKey> = self
            .parked
            .values()
            .copied()
            .filter(|&key| {
                self.conns.get(key).is_none_or(|conn| {
                    let since = conn.recovery.as_ref().and_then(|r| r.parked_since);
                    let window = recovery_window(self.state.apps.get(conn.app));
                    conn.closing
                        || since.zip(window).is_none_or(|(since, window)| {
                            now.saturating_duration_since(since) >= window
                        })
                })
            })
            .collect();
        for key in due {
            self.forget(key, now);
        }
    }

    /// Whether connection `key` waits for its client to recover it.
    pub(super) fn is_parked(&self, key: ConnKey) -> bool {
        self.conns
            .get(key)
            .and_then(|c| c.recovery.as_ref())
            .is_some_and(|r| r.parked_since.is_some())
    }

    /// Forgets connection `key`: it leaves its channels, users and quotas.
    fn forget(&mut self, key: ConnKey, now: Instant) -> Option<Ended> {
        if let Some(pid) = self
            .conns
            .get(key)
            .and_then(|c| c.recovery.as_ref())
            .map(|r| r.pid.clone())
        {
            self.parked.remove(&pid);
        }
        self.conns.get(key)?;
        self.leave_all(key);
        let conn = self.conns.remove(key);
        if let Some(user) = &conn.user {
            let sockets = &mut self.per_app[conn.app].users;
            if let Some(keys) = sockets.get_mut(user) {
                keys.retain(|&k| k != key);
                if keys.is_empty() {
                    sockets.remove(user);
                }
            }
            let msg = MeshMsg::UserSockets {
                app: conn.app,
                user: user.clone(),
                online: false,
            };
            self.send_to(self.user_home(conn.app, user), msg);
            let watcher = Watcher {
                shard: self.id,
                conn: key,
                socket_id: conn.socket_id,
            };
            self.send_watch(conn.app, watcher, conn.watchlist, false);
        }
        self.state.apps.disconnect(conn.app);
        if let Some(tenant) = &conn.tenant {
            self.state.tenants.disconnect(conn.app, tenant);
        }
        inc(&self.counters.connections_closed);
        self.counters
            .app(conn.app)
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.drain_to_self(now);
        Some(Ended {
            socket_id: conn.socket_id,
            app: conn.app,
            remote: conn.remote,
            lasted: now.saturating_duration_since(conn.connected_at),
            close: conn.close,
        })
    }
}

/// How long app `app` keeps a Socket.IO connection whose transport was lost; `None`: it
/// does not.
fn recovery_window(app: &App) -> Option<Duration> {
    app.config
        .socketio
        .as_ref()
        .map(|s| s.recovery)
        .filter(|w| !w.is_zero())
}
