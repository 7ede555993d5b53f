//! One shard's state: its connections, its local subscriber lists, and the channels homed on it.
//!
//! The shell owns the sockets and feeds this state machine: bytes in through
//! [`Shard::handle_input`], mesh messages through [`Shard::handle_mesh`], a clock tick through
//! [`Shard::handle_tick`]. Output leaves through [`Shard::take_ready`] / [`Shard::take_output`]
//! (frames per socket) and [`Shard::poll_mesh`] (messages to other shards). Messages addressed to
//! this shard itself are processed before the `handle_*` call returns, so a single-shard server
//! and a many-shard one run the same code.

mod cluster;
mod home;
pub mod mesh;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indexmap::IndexSet;
use serde_json::value::RawValue;
use slab::Slab;

use self::home::HomeChannel;
pub use self::mesh::{
    Admission, AnswerPart, ChannelStats, ConnKey, Join, MeshMsg, QueryId, ReplyTo, ShardId, Watcher,
};
use crate::core::app::{AppTable, QuotaExceeded};
use crate::core::auth::channel::{AuthContext, ChannelAuthorized, authorize_subscription};
use crate::core::auth::jwt::Identity;
use crate::core::auth::user::{SigninContext, SigninError, verify_signin};
use crate::core::channel::{ChannelKind, ChannelName, ChannelNameError};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::options::{ClientEvents, Config, ServerConfig};
use crate::core::policy::{Decision, Resource, Resources, Subject};
use crate::core::pusher::ErrorCode;
use crate::core::pusher::message::{self, ClientMessage, SubscribeRequest};
use crate::core::rate_limit::{Rate, TokenBucket};
use crate::core::webhook::{ClientEventInfo, LEAVE_DELAY, WebhookEvent, WebhookKind};
use crate::core::ws::close;
use crate::core::ws::frame::{self, FrameLimits, Message, MessageDecoder, Opcode, Role};
use crate::metrics::{ShardMetrics, add, inc};
use ringcast_shared::{AuditDecision, AuditKind, AuditRecord};

/// What every shard shares, read-only: the config and the app table.
pub struct ServerState {
    /// Server settings.
    pub config: ServerConfig,
    /// The apps.
    pub apps: AppTable,
    /// The webhook sender's counters (read by `/metrics`).
    pub webhook_metrics: std::sync::Arc<crate::metrics::WebhookMetrics>,
    /// The audit writer's counters (read by `/metrics`).
    pub audit_metrics: std::sync::Arc<crate::audit::AuditMetrics>,
    /// Resources loaded from the store at start, per app (each shard starts from a copy).
    pub initial_resources: Vec<Resources>,
    /// Failed authorizations and open connections per app and tenant (read by `/metrics`
    /// and the dashboard).
    pub tenants: crate::metrics::TenantCounters,
    /// Dashboard admins and their sessions, shared by every shard.
    pub admins: std::sync::Mutex<crate::core::admin::Admins>,
    /// The built dashboard, served at `/admin/`.
    pub admin_ui: crate::http::AdminAssets,
    /// The cluster link's state; `None` for a single node.
    pub cluster: Option<crate::core::cluster::ClusterStatus>,
}

impl ServerState {
    /// The state for `config`, with fresh counters, no stored resources, and the admin UI
    /// read from `server.admin_ui_dir`.
    pub fn new(config: Config) -> Self {
        let apps = AppTable::new(&config.apps, config.server.max_connections);
        let admin_ui = crate::http::AdminAssets::load(&config.server.admin_ui_dir);
        let cluster = config.server.cluster.as_ref().map(|_| {
            crate::core::cluster::ClusterStatus::new(crate::core::cluster::NodeId::random())
        });
        Self {
            initial_resources: (0..config.apps.len())
                .map(|_| Resources::default())
                .collect(),
            config: config.server,
            apps,
            webhook_metrics: Default::default(),
            audit_metrics: Default::default(),
            tenants: Default::default(),
            admins: std::sync::Mutex::new(crate::core::admin::Admins::new(
                config.admins,
                config
                    .admin_jwt
                    .as_ref()
                    .map(crate::core::admin::AdminTokens::new),
            )),
            cluster,
            admin_ui,
        }
    }
}

/// The Pusher protocol version spoken. Older clients (5, 6) expect different framing of some
/// events, so they are refused with 4007 rather than served subtly wrong.
const PROTOCOL_VERSION: u32 = 7;

/// Envelope slack over an app's `max_message_bytes`: a client event's frame carries the event
/// and channel names around its data.
const FRAME_ENVELOPE_BYTES: usize = 1024;

/// What the shell learned from a WebSocket upgrade request.
pub struct ConnectRequest<'a> {
    /// The request path, e.g. `/app/{key}`.
    pub path: &'a str,
    /// The `protocol` query parameter, if present.
    pub protocol: Option<&'a str>,
    /// The `Origin` header, if present.
    pub origin: Option<&'a str>,
    /// The peer's address.
    pub remote: IpAddr,
    /// A JWT from the `token` query parameter, `Sec-WebSocket-Protocol` or `Authorization`.
    pub token: Option<&'a str>,
    /// Wall-clock seconds since the Unix epoch, for token expiry.
    pub now_unix: u64,
}

/// The outcome of [`Shard::accept_websocket`].
pub enum Accept {
    /// The connection is open; `connection_established` is queued.
    Open(ConnKey),
    /// The connection is refused: write these frames (`pusher:error` then close) and close.
    Refused(Bytes, ErrorCode),
}

/// What the shell should do after writing what [`Shard::take_output`] returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutputState {
    /// Keep the connection open.
    Open,
    /// Everything, including the close frame, has been handed out: close the socket.
    Close,
}

/// What [`Shard::take_output`] handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    /// Whether the connection is to be closed once these frames are written.
    pub state: OutputState,
    /// When the oldest published event among the frames was accepted.
    pub oldest_event: Option<Instant>,
    /// How many of the frames are published events (the rest are replies and control).
    pub events: usize,
}

/// An event to publish on behalf of the HTTP API.
pub struct Publish<'a> {
    /// The app.
    pub app: AppIdx,
    /// The event name.
    pub event: &'a str,
    /// The data string.
    pub data: &'a str,
    /// A socket to exclude (`socket_id`, Laravel's `toOthers`).
    pub except: Option<SocketId>,
}

/// A query whose answer is gathered from one or more shards.
#[derive(Debug)]
pub enum Query {
    /// Stats of one channel.
    Channel {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
    /// Occupied channels, optionally filtered by prefix.
    Channels {
        /// The app.
        app: AppIdx,
        /// Only names starting with this.
        prefix: String,
    },
    /// Users of a presence channel.
    Users {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: ChannelName,
    },
}

/// A gathered answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// For [`Query::Channel`].
    Channel(ChannelStats),
    /// For [`Query::Channels`], sorted by name.
    Channels(Vec<(String, ChannelStats)>),
    /// For [`Query::Users`].
    Users(Vec<UserId>),
    /// Every shard applied an update.
    Applied,
    /// Cluster-wide state could not be read.
    Unavailable,
}

struct PendingQuery {
    awaiting: usize,
    answer: Answer,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SubState {
    /// Sent to the home shard, not yet confirmed.
    Pending,
    /// Confirmed; the socket is in the local subscriber list.
    Active,
}

#[derive(Debug)]
struct Subscription {
    channel: ChannelName,
    user: Option<UserId>,
    state: SubState,
}

/// A user homed on this shard: signed-in sockets on every shard, and who watches them.
#[derive(Default, Debug)]
struct UserHome {
    sockets: u32,
    watchers: Vec<Watcher>,
}

/// One WebSocket connection's protocol state.
struct Conn {
    socket_id: SocketId,
    app: AppIdx,
    decoder: MessageDecoder,
    subscriptions: Vec<Subscription>,
    connected_at: Instant,
    last_seen: Instant,
    ping_sent: Option<Instant>,
    /// The user this socket signed in as (`pusher:signin`).
    user: Option<UserId>,
    /// Users whose online status this socket follows.
    watchlist: Vec<UserId>,
    /// `user_info` of the signed sign-in `user_data` (JSON text), for policies without JWT.
    signin_info: Option<Box<str>>,
    /// The verified JWT identity, if the app uses tokens.
    identity: Option<Box<Identity>>,
    /// The tenant the connection counts toward (from its token, else its sign-in).
    tenant: Option<Box<str>>,
    /// The peer's address (for audit records).
    remote: IpAddr,
    /// When the token expires (4010 then).
    token_expires: Option<Instant>,
    client_events: TokenBucket,
    /// Frames waiting for the writer, with when their event was accepted (`None` for
    /// replies and control frames).
    outbox: VecDeque<(Bytes, Option<Instant>)>,
    outbox_bytes: usize,
    in_ready: bool,
    /// A close frame is queued; input is ignored and nothing else is sent.
    closing: bool,
    /// The peer's close frame has arrived: the closing handshake is complete once ours is out.
    peer_closed: bool,
}

/// One shard of the broker. See the module docs for the calling order.
pub struct Shard {
    id: ShardId,
    shard_count: usize,
    state: Arc<ServerState>,
    metrics: Arc<ShardMetrics>,
    conns: Slab<Conn>,
    /// Local subscribers per app and channel.
    local: Vec<HashMap<ChannelName, IndexSet<ConnKey>>>,
    /// Channels homed here, per app.
    homes: Vec<HashMap<ChannelName, HomeChannel>>,
    /// Signed-in sockets on this shard, per app and user.
    users: Vec<HashMap<UserId, Vec<ConnKey>>>,
    /// Users homed here: signed-in sockets on every shard, and who watches them.
    user_homes: Vec<HashMap<UserId, UserHome>>,
    /// Resources set by app backends (replicated to every shard), per app.
    resources: Vec<Resources>,
    to_self: VecDeque<MeshMsg>,
    to_others: VecDeque<(ShardId, MeshMsg)>,
    ready: Vec<ConnKey>,
    queries: HashMap<QueryId, PendingQuery>,
    next_query: QueryId,
    answers: Vec<(QueryId, Answer)>,
    webhooks: Vec<(AppIdx, WebhookEvent)>,
    audit: Vec<AuditRecord>,
    cluster_out: Vec<crate::core::cluster::ClusterOut>,
    next_socket: u64,
    socket_prefix: u64,
}

/// The home shard of a channel: a stable hash of the app and the name.
pub fn home_shard(app: AppIdx, channel: &ChannelName, shard_count: usize) -> ShardId {
    // DefaultHasher::new() uses fixed keys, so every shard computes the same home.
    let mut hasher = DefaultHasher::new();
    app.hash(&mut hasher);
    channel.as_str().hash(&mut hasher);
    (hasher.finish() % shard_count.max(1) as u64) as ShardId
}

/// The shard that counts a signed-in user's sockets and keeps their watchers.
pub fn user_home_shard(app: AppIdx, user: &UserId, shard_count: usize) -> ShardId {
    let mut hasher = DefaultHasher::new();
    app.hash(&mut hasher);
    user.as_str().hash(&mut hasher);
    (hasher.finish() % shard_count.max(1) as u64) as ShardId
}

impl Shard {
    /// A shard `id` of `shard_count`, sharing `state`.
    pub fn new(
        id: ShardId,
        shard_count: usize,
        state: Arc<ServerState>,
        metrics: Arc<ShardMetrics>,
    ) -> Self {
        let apps = state.apps.len();
        Self {
            id,
            shard_count,
            metrics,
            conns: Slab::new(),
            local: (0..apps).map(|_| HashMap::new()).collect(),
            homes: (0..apps).map(|_| HashMap::new()).collect(),
            users: (0..apps).map(|_| HashMap::new()).collect(),
            user_homes: (0..apps).map(|_| HashMap::new()).collect(),
            resources: state.initial_resources.clone(),
            to_self: VecDeque::new(),
            to_others: VecDeque::new(),
            ready: Vec::new(),
            queries: HashMap::new(),
            next_query: 0,
            answers: Vec::new(),
            webhooks: Vec::new(),
            audit: Vec::new(),
            cluster_out: Vec::new(),
            next_socket: 0,
            // The first half of a socket id is random so ids are not guessable across restarts.
            socket_prefix: fastrand::u64(1..1_000_000_000),
            state,
        }
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// This shard's counters.
    pub fn metrics(&self) -> &Arc<ShardMetrics> {
        &self.metrics
    }

    /// The shared server state.
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// The policy resources of `app` (every shard holds them all).
    pub fn resources(&self, app: AppIdx) -> &Resources {
        &self.resources[app.get()]
    }

    /// Open connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Validates a WebSocket connection request (after the RFC 6455 upgrade succeeded) and
    /// opens the Pusher connection, or says which Pusher error closes it.
    pub fn accept_websocket(&mut self, request: &ConnectRequest<'_>, now: Instant) -> Accept {
        match self.try_accept(request, now) {
            Ok(key) => Accept::Open(key),
            Err((code, text)) => {
                self.metrics.error(code);
                let mut bytes = Vec::with_capacity(128);
                let json =
                    message::error_with_message(code, text.as_deref().unwrap_or(code.message()));
                frame::encode_frame_into(&mut bytes, Opcode::Text, &json);
                bytes.extend_from_slice(&frame::encode_close(code.code(), code.message()));
                Accept::Refused(Bytes::from(bytes), code)
            }
        }
    }

    fn try_accept(
        &mut self,
        request: &ConnectRequest<'_>,
        now: Instant,
    ) -> Result<ConnKey, (ErrorCode, Option<String>)> {
        let plain = |code: ErrorCode| (code, None);
        let key = request
            .path
            .strip_prefix("/app/")
            .filter(|k| !k.is_empty() && !k.contains('/'))
            .ok_or(plain(ErrorCode::PathNotFound))?;
        let protocol = request
            .protocol
            .ok_or(plain(ErrorCode::NoProtocolVersion))?;
        let version: u32 = protocol
            .parse()
            .map_err(|_| plain(ErrorCode::InvalidVersionFormat))?;
        if version != PROTOCOL_VERSION {
            return Err(plain(ErrorCode::UnsupportedProtocolVersion));
        }
        let app = self
            .state
            .apps
            .by_key(key)
            .ok_or(plain(ErrorCode::AppNotFound))?;
        if !app.config.enabled {
            return Err(plain(ErrorCode::AppDisabled));
        }
        let app_idx = app.idx;
        if !app.config.origin_allowed(request.origin) {
            let reason = request
                .origin
                .map(|o| format!("origin {:?}", o.chars().take(128).collect::<String>()));
            self.audit_event(
                app_idx,
                AuditKind::Security,
                "origin",
                AuditDecision::Deny,
                Some(request.remote),
                Some("allowed_origins"),
                reason,
            );
            return Err((ErrorCode::Unauthorized, Some("origin not allowed".into())));
        }
        let uses_jwt = app.config.jwt.is_some();
        let identity = match app.authenticate(request.token, request.now_unix) {
            Ok(identity) => identity,
            Err(e) => {
                self.audit_event(
                    app_idx,
                    AuditKind::Decision,
                    "token",
                    AuditDecision::Deny,
                    Some(request.remote),
                    Some("jwt"),
                    Some(e.to_string()),
                );
                return Err((ErrorCode::Unauthorized, Some(format!("token refused: {e}"))));
            }
        };
        let app = self.state.apps.get(app_idx);
        // Expiry as a point on the monotonic clock the shard runs on.
        let token_expires = identity.as_ref().map(|id| {
            let left = id.expires_at.saturating_sub(request.now_unix);
            now + Duration::from_secs(left) + app.token_leeway()
        });
        let limits = FrameLimits {
            max_frame_bytes: app.config.max_message_bytes + FRAME_ENVELOPE_BYTES,
            max_message_bytes: app.config.max_message_bytes + FRAME_ENVELOPE_BYTES,
        };
        let client_event_rate = client_event_rate(app.config.client_events_per_second);
        self.state.apps.try_connect(app_idx).map_err(|e| match e {
            QuotaExceeded::Server => plain(ErrorCode::OverCapacity),
            QuotaExceeded::App => plain(ErrorCode::AppOverConnectionQuota),
        })?;
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
            app: app_idx,
            decoder: MessageDecoder::new(Role::Server, limits),
            subscriptions: Vec::new(),
            connected_at: now,
            last_seen: now,
            ping_sent: None,
            user: None,
            watchlist: Vec::new(),
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
            in_ready: false,
            closing: false,
            peer_closed: false,
        });
        inc(&self.metrics.connections_opened);
        if uses_jwt && self.conns.get(key).is_some_and(|c| c.identity.is_some()) {
            self.audit_conn(
                key,
                AuditKind::Decision,
                "token",
                AuditDecision::Allow,
                None,
                Some("jwt"),
                None,
            );
        }
        self.metrics.apps[app_idx.get()]
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = self.state.config.activity_timeout.as_secs();
        self.send_json(key, &message::connection_established(socket_id, timeout));
        Ok(key)
    }

    /// Counts a connection attempt on `path` from `remote` against the app's per-IP rate
    /// limit, before the upgrade; `Err` is the time to wait (HTTP 429 with `Retry-After`).
    pub fn connection_attempt(
        &mut self,
        path: &str,
        remote: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(app) = path
            .strip_prefix("/app/")
            .and_then(|key| self.state.apps.by_key(key))
        else {
            return Ok(());
        };
        let app_idx = app.idx;
        let result = app.admit_connection_attempt(remote, now);
        if result.is_err() {
            self.audit_event(
                app_idx,
                AuditKind::Security,
                "rate_limit",
                AuditDecision::Deny,
                Some(remote),
                Some("connections_per_minute_per_ip"),
                None,
            );
        }
        result
    }

    /// Gives back the capacity of tables that grew during a connection peak (the connection
    /// table keeps its keys; only trailing free slots go).
    pub fn release_memory(&mut self) {
        self.conns.shrink_to_fit();
        for channels in &mut self.local {
            channels.shrink_to_fit();
        }
        for homes in &mut self.homes {
            homes.shrink_to_fit();
        }
        for users in &mut self.users {
            users.shrink_to_fit();
        }
        self.ready.shrink_to_fit();
    }

    /// The socket id of an open connection.
    pub fn socket_id(&self, key: ConnKey) -> Option<SocketId> {
        self.conns.get(key).map(|c| c.socket_id)
    }

    /// Feeds bytes read from connection `key`. Complete frames are consumed from `buf`; a
    /// partial frame is left for the next read.
    pub fn handle_input(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        buf: &mut BytesMut,
        now: Instant,
    ) {
        loop {
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
                buf.clear();
                return;
            };
            if conn.closing {
                // Only the peer's answering close frame matters now (RFC 6455 §7.1.1).
                match conn.decoder.decode(buf) {
                    Ok(Some(Message::Close(_))) => {
                        conn.peer_closed = true;
                        mark_ready(conn, key, &mut self.ready);
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => {
                        conn.peer_closed = true;
                        mark_ready(conn, key, &mut self.ready);
                        buf.clear();
                        break;
                    }
                }
                continue;
            }
            match conn.decoder.decode(buf) {
                Ok(None) => break,
                Ok(Some(msg)) => {
                    conn.last_seen = now;
                    conn.ping_sent = None;
                    inc(&self.metrics.messages_in);
                    self.handle_message(key, msg, now);
                }
                Err(err) => {
                    let rule = if err.close_code() == close::MESSAGE_TOO_BIG {
                        "max_message_bytes"
                    } else {
                        "rfc6455"
                    };
                    self.audit_conn(
                        key,
                        AuditKind::Security,
                        "protocol",
                        AuditDecision::Deny,
                        None,
                        Some(rule),
                        Some(err.to_string()),
                    );
                    self.close_ws(key, err.close_code(), &err.to_string());
                    buf.clear();
                    break;
                }
            }
        }
        self.drain_to_self(now);
    }

    fn handle_message(&mut self, key: ConnKey, msg: Message, now: Instant) {
        match msg {
            Message::Text(text) => self.handle_text(key, &text, now),
            Message::Binary(_) => self.send_error_message(
                key,
                ErrorCode::InvalidMessage,
                "binary frames are not part of the Pusher protocol; send JSON text",
            ),
            Message::Ping(payload) => {
                self.send_frame(key, frame::encode_frame(Opcode::Pong, &payload))
            }
            Message::Pong(_) => {}
            Message::Close(frame) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.peer_closed = true;
                }
                // Echo the peer's code, as RFC 6455 §5.5.1 asks; a close without one gets 1000.
                let code = frame.map_or(close::NORMAL, |f| f.code);
                self.close_ws(key, code, "");
            }
        }
    }

    fn handle_text(&mut self, key: ConnKey, text: &[u8], now: Instant) {
        let app = match self.conns.get(key) {
            Some(conn) => conn.app,
            None => return,
        };
        self.metrics.apps[app.get()]
            .messages_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = match ClientMessage::parse(text) {
            Ok(msg) => msg,
            Err(err) => {
                self.send_error_message(key, err.code(), &err.to_string());
                return;
            }
        };
        match msg {
            ClientMessage::Ping => self.send_json(key, message::pong()),
            ClientMessage::Pong => {}
            ClientMessage::Subscribe(request) => self.subscribe(key, request),
            ClientMessage::Unsubscribe { channel } => self.unsubscribe(key, &channel),
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => {
                self.client_event(key, &event, &channel, data, now);
            }
            ClientMessage::Signin { auth, user_data } => self.signin(key, &auth, &user_data),
            ClientMessage::Unsupported { event } => {
                let text = format!("unsupported event {event:?}");
                self.send_error_message(key, ErrorCode::UnsupportedEvent, &text);
            }
        }
    }

    fn subscribe(&mut self, key: ConnKey, request: SubscribeRequest<'_>) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let app = self.state.apps.get(conn.app);
        let channel = match ChannelName::parse(&request.channel, app.config.max_channel_name_chars)
        {
            Ok(channel) => channel,
            Err(err) => {
                self.refuse_channel_name(key, &request.channel, err);
                return;
            }
        };
        if conn.subscriptions.iter().any(|s| s.channel == channel) {
            // pusher-js never re-subscribes an active channel; a repeat is a no-op.
            return;
        }
        if conn.subscriptions.len() >= app.max_subscriptions() {
            let text = format!(
                "a connection may hold at most {} subscriptions",
                app.max_subscriptions()
            );
            let frame = message::subscription_error(channel.as_str(), "LimitReached", &text, 429);
            self.send_json(key, &frame);
            return;
        }
        let ctx = AuthContext {
            app_key: &app.config.key,
            secret: &app.secret,
            socket_id: conn.socket_id,
            max_user_id_chars: app.config.max_user_id_chars,
            max_user_info_bytes: app.config.max_user_info_bytes,
            signed_in_user: conn.user.as_ref(),
        };
        let proof = authorize_subscription(
            &ctx,
            channel.clone(),
            request.auth.as_deref(),
            request.channel_data.as_deref(),
        );
        // Policies come on top of the signature, never instead of it.
        let outcome = match proof {
            Err(e) => Err((
                e.to_string(),
                e.status(),
                "signature".to_owned(),
                e.to_string(),
            )),
            Ok(proof) => match policy_decision(app, conn, &proof, &self.resources[app.idx.get()]) {
                Decision::Allow { rules } => Ok((proof, rules)),
                Decision::Deny { rule, reason } => Err((
                    format!("denied by policy {rule:?}: {reason}"),
                    403,
                    rule,
                    reason,
                )),
            },
        };
        let signed =
            channel.kind().requires_signature() || channel.kind() == ChannelKind::ServerToUser;
        match outcome {
            Ok((proof, rules)) => {
                // Public channels no rule covers involve no authorization decision.
                if signed || !rules.is_empty() {
                    let rule = if rules.is_empty() {
                        "signature".to_owned()
                    } else {
                        rules.join(",")
                    };
                    self.audit_conn(
                        key,
                        AuditKind::Decision,
                        "subscribe",
                        AuditDecision::Allow,
                        Some(channel.as_str()),
                        Some(&rule),
                        None,
                    );
                }
                self.join(key, proof);
            }
            Err((text, status, rule, reason)) => {
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    "subscribe",
                    AuditDecision::Deny,
                    Some(channel.as_str()),
                    Some(&rule),
                    Some(reason),
                );
                let frame =
                    message::subscription_error(channel.as_str(), "AuthError", &text, status);
                self.send_json(key, &frame);
            }
        }
    }

    fn signin(&mut self, key: ConnKey, auth: &str, user_data: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.user.is_some() {
            let text = "this connection is already signed in";
            self.send_error_message(key, ErrorCode::InvalidMessage, text);
            return;
        }
        let app = self.state.apps.get(conn.app);
        let ctx = SigninContext {
            app_key: &app.config.key,
            secret: &app.secret,
            socket_id: conn.socket_id,
            max_user_id_chars: app.config.max_user_id_chars,
        };
        match verify_signin(&ctx, auth, user_data) {
            Ok(proof) => {
                let (app_idx, socket_id) = (conn.app, conn.socket_id);
                let (user, user_data, watchlist) = proof.into_parts();
                self.users[app_idx.get()]
                    .entry(user.clone())
                    .or_default()
                    .push(key);
                let info = serde_json::from_str::<serde_json::Value>(&user_data)
                    .ok()
                    .and_then(|data| data.get("user_info").map(ToString::to_string));
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.user = Some(user.clone());
                    conn.watchlist = watchlist.clone();
                    if conn.tenant.is_none()
                        && let Some(tenant) = info
                            .as_deref()
                            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
                            .and_then(|i| i["tenant_id"].as_str().map(Box::<str>::from))
                    {
                        self.state.tenants.connect(conn.app, &tenant);
                        conn.tenant = Some(tenant);
                    }
                    conn.signin_info = info.map(Into::into);
                }
                self.send_json(key, &message::signin_success(&user_data));
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    "signin",
                    AuditDecision::Allow,
                    None,
                    Some("signature"),
                    None,
                );
                let msg = MeshMsg::UserSockets {
                    app: app_idx,
                    user: user.clone(),
                    online: true,
                };
                self.send_to(self.user_home(app_idx, &user), msg);
                let watcher = Watcher {
                    shard: self.id,
                    conn: key,
                    socket_id,
                };
                self.send_watch(app_idx, watcher, watchlist, true);
            }
            Err(SigninError::WatchlistTooLong) => {
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    "signin",
                    AuditDecision::Deny,
                    None,
                    Some("watchlist"),
                    Some(SigninError::WatchlistTooLong.to_string()),
                );
                let text = SigninError::WatchlistTooLong.to_string();
                self.send_error_message(key, ErrorCode::WatchlistOverLimit, &text);
            }
            Err(err) => {
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    "signin",
                    AuditDecision::Deny,
                    None,
                    Some("signature"),
                    Some(err.to_string()),
                );
                let text = format!("sign-in refused: {err}");
                self.send_error_message(key, ErrorCode::Unauthorized, &text);
            }
        }
    }

    /// Sets (or, with `None`, deletes) a resource on every shard. The returned query completes
    /// once every shard has applied it, so a subscription after the API call sees it.
    pub fn set_resource(
        &mut self,
        app: AppIdx,
        kind: &str,
        id: &str,
        resource: Option<Resource>,
        now: Instant,
    ) -> QueryId {
        let query = self.new_query(PendingQuery {
            awaiting: self.shard_count,
            answer: Answer::Applied,
        });
        let reply_to = ReplyTo {
            shard: self.id,
            query,
        };
        self.broadcast(crate::core::cluster::Command::Resource {
            app: self.app_id(app),
            kind: kind.to_owned(),
            id: id.to_owned(),
            json: resource
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
        });
        let resource = resource.map(std::sync::Arc::new);
        for shard in 0..self.shard_count {
            let msg = MeshMsg::SetResource {
                reply_to: Some(reply_to),
                app,
                kind: kind.to_owned(),
                id: id.to_owned(),
                resource: resource.clone(),
            };
            self.send_to(shard, msg);
        }
        self.drain_to_self(now);
        query
    }

    /// Revokes token id `jti` until `until_unix` and closes live sockets using it, on every
    /// shard (HTTP API `tokens/revoke`).
    pub fn revoke_token(
        &mut self,
        app: AppIdx,
        jti: &str,
        until_unix: u64,
        now_unix: u64,
        now: Instant,
    ) {
        self.state.apps.get(app).revoke(jti, until_unix, now_unix);
        self.broadcast(crate::core::cluster::Command::Revoke {
            app: self.app_id(app),
            jti: jti.to_owned(),
            until_unix,
        });
        for shard in 0..self.shard_count {
            let msg = MeshMsg::RevokeToken {
                app,
                jti: jti.to_owned(),
            };
            self.send_to(shard, msg);
        }
        self.drain_to_self(now);
    }

    /// The verified token identity of a connection.
    pub fn identity(&self, key: ConnKey) -> Option<&Identity> {
        self.conns.get(key).and_then(|c| c.identity.as_deref())
    }

    /// The shard that counts `user`'s sockets and keeps their watchers.
    fn user_home(&self, app: AppIdx, user: &UserId) -> ShardId {
        user_home_shard(app, user, self.shard_count)
    }

    /// Starts or stops watching `users`, one message per home shard.
    fn send_watch(&mut self, app: AppIdx, watcher: Watcher, users: Vec<UserId>, start: bool) {
        let mut by_home: Vec<Vec<UserId>> = vec![Vec::new(); self.shard_count];
        for user in users {
            let home = self.user_home(app, &user);
            by_home[home].push(user);
        }
        for (home, users) in by_home.into_iter().enumerate() {
            if !users.is_empty() {
                let msg = MeshMsg::Watch {
                    app,
                    watcher,
                    users,
                    start,
                };
                self.send_to(home, msg);
            }
        }
    }

    /// At a user's home: count a socket arriving or leaving, and tell watchers when the user
    /// comes online (first socket) or goes offline (last socket). In a cluster the node's
    /// first and last sockets are reported instead, and watchers hear when the user comes
    /// online on the first node or goes offline on the last.
    fn home_user_sockets(&mut self, app: AppIdx, user: UserId, online: bool) {
        let homes = &mut self.user_homes[app.get()];
        let entry = homes.entry(user.clone()).or_default();
        let changed = if online {
            entry.sockets += 1;
            entry.sockets == 1
        } else {
            entry.sockets = entry.sockets.saturating_sub(1);
            entry.sockets == 0
        };
        if entry.sockets == 0 && entry.watchers.is_empty() {
            homes.remove(&user);
        }
        if !changed {
            return;
        }
        if self.clustered() {
            self.cluster_out
                .push(crate::core::cluster::ClusterOut::UserStatus { app, user, online });
        } else {
            self.notify_watchers(app, &user, online);
        }
    }

    /// At a user's home: tells the user's watchers that the user came online or went
    /// offline.
    pub(super) fn notify_watchers(&mut self, app: AppIdx, user: &UserId, online: bool) {
        let watchers = match self.user_homes[app.get()].get(user) {
            Some(entry) => entry.watchers.clone(),
            None => return,
        };
        for watcher in watchers {
            let msg = MeshMsg::WatchlistNotify {
                watcher,
                online,
                users: vec![user.clone()],
            };
            self.send_to(watcher.shard, msg);
        }
    }

    /// At users' home: tells `watcher` which of `users` have a socket on this node.
    pub(super) fn tell_online_here(&mut self, app: AppIdx, watcher: Watcher, users: &[UserId]) {
        let homes = &self.user_homes[app.get()];
        let online: Vec<UserId> = users
            .iter()
            .filter(|user| homes.get(*user).is_some_and(|entry| entry.sockets > 0))
            .cloned()
            .collect();
        if !online.is_empty() {
            let msg = MeshMsg::WatchlistNotify {
                watcher,
                online: true,
                users: online,
            };
            self.send_to(watcher.shard, msg);
        }
    }

    /// At users' home: register (or drop) a watcher; a new watcher hears at once who is online.
    fn home_watch(&mut self, app: AppIdx, watcher: Watcher, users: Vec<UserId>, start: bool) {
        let homes = &mut self.user_homes[app.get()];
        for user in &users {
            if start {
                let entry = homes.entry(user.clone()).or_default();
                if !entry.watchers.contains(&watcher) {
                    entry.watchers.push(watcher);
                }
            } else if let Some(entry) = homes.get_mut(user) {
                entry.watchers.retain(|w| *w != watcher);
                if entry.sockets == 0 && entry.watchers.is_empty() {
                    homes.remove(user);
                }
            }
        }
        if !start {
            return;
        }
        if self.cluster_up() {
            // Online anywhere in the cluster: Redis knows.
            self.cluster_out
                .push(crate::core::cluster::ClusterOut::WhoIsOnline {
                    app,
                    watcher,
                    users,
                });
        } else {
            self.tell_online_here(app, watcher, &users);
        }
    }

    /// Closes every socket signed in as `user`, on every shard (HTTP API
    /// `terminate_connections`).
    pub fn terminate_user(&mut self, app: AppIdx, user: UserId, now: Instant) {
        self.broadcast(crate::core::cluster::Command::Terminate {
            app: self.app_id(app),
            user: user.as_str().to_owned(),
        });
        for shard in 0..self.shard_count {
            let msg = MeshMsg::TerminateUser {
                app,
                user: user.clone(),
            };
            self.send_to(shard, msg);
        }
        self.drain_to_self(now);
    }

    fn refuse_channel_name(&mut self, key: ConnKey, raw: &str, err: ChannelNameError) {
        // Echo at most a bounded prefix of the peer's text back.
        let shown: String = raw.chars().take(64).collect();
        let text = format!("{err}: {shown:?}");
        self.send_error_message(key, ErrorCode::InvalidChannelName, &text);
    }

    /// Records a pending subscription and asks the channel's home shard to admit it.
    fn join(&mut self, key: ConnKey, proof: ChannelAuthorized) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (channel, member) = proof.into_parts();
        conn.subscriptions.push(Subscription {
            channel: channel.clone(),
            user: member.as_ref().map(|m| m.user_id.clone()),
            state: SubState::Pending,
        });
        let msg = MeshMsg::Subscribe(Join {
            shard: self.id,
            conn: key,
            socket_id: conn.socket_id,
            app: conn.app,
            channel: channel.clone(),
            member,
        });
        let app = conn.app;
        self.send_home(app, &channel, msg);
    }

    fn unsubscribe(&mut self, key: ConnKey, raw: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(position) = conn
            .subscriptions
            .iter()
            .position(|s| s.channel.as_str() == raw)
        else {
            // Unsubscribing from a channel one is not in gets no reply, like any unsubscribe.
            return;
        };
        let sub = conn.subscriptions.swap_remove(position);
        let (app, socket_id) = (conn.app, conn.socket_id);
        self.leave(key, app, socket_id, sub);
    }

    /// Takes a socket out of a channel: locally at once, and at the home shard if it had
    /// been admitted there (a pending one is undone when its confirmation arrives).
    fn leave(&mut self, key: ConnKey, app: AppIdx, socket_id: SocketId, sub: Subscription) {
        if sub.state != SubState::Active {
            return;
        }
        let channels = &mut self.local[app.get()];
        if let Some(subscribers) = channels.get_mut(&sub.channel) {
            subscribers.swap_remove(&key);
            if subscribers.is_empty() {
                channels.remove(&sub.channel);
            }
        }
        self.metrics
            .subscriptions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let msg = MeshMsg::Unsubscribe {
            shard: self.id,
            socket_id,
            app,
            channel: sub.channel.clone(),
            user: sub.user,
        };
        self.send_home(app, &sub.channel, msg);
    }

    fn client_event(
        &mut self,
        key: ConnKey,
        event: &str,
        raw_channel: &str,
        data: &RawValue,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let app = self.state.apps.get(conn.app);
        let refuse =
            |why: &str| format!("client event {event:?} on {raw_channel:?} refused: {why}");
        let Some(sub) = conn
            .subscriptions
            .iter()
            .find(|s| s.channel.as_str() == raw_channel && s.state == SubState::Active)
        else {
            let text = refuse("not subscribed to the channel");
            self.send_error_message(key, ErrorCode::ClientEventRejected, &text);
            return;
        };
        let kind = sub.channel.kind();
        let allowed = match app.config.client_events {
            ClientEvents::Disabled => Err("client events are disabled for this app"),
            _ if !kind.allows_client_events() => {
                Err("client events are only allowed on private and presence channels")
            }
            ClientEvents::MembersOnly if !kind.is_presence() => {
                Err("this app allows client events on presence channels only")
            }
            _ => Ok(()),
        };
        if let Err(why) = allowed {
            let text = refuse(why);
            self.send_error_message(key, ErrorCode::ClientEventRejected, &text);
            return;
        }
        if event.len() > app.config.max_event_name_chars {
            let text = refuse("event name too long");
            self.send_error_message(key, ErrorCode::ClientEventRejected, &text);
            return;
        }
        if data.get().len() > app.config.max_message_bytes {
            let text = format!(
                "client event data is over {} bytes",
                app.config.max_message_bytes
            );
            self.send_error_message(key, ErrorCode::MessageTooLarge, &text);
            return;
        }
        let rate = client_event_rate(app.config.client_events_per_second);
        let sender = sub
            .user
            .as_ref()
            .or(conn.user.as_ref())
            .map_or_else(|| conn.socket_id.to_string(), |u| u.as_str().to_owned());
        if conn.client_events.try_acquire(rate, now).is_err()
            || app.admit_client_event(&sender, now).is_err()
        {
            let channel = sub.channel.as_str().to_owned();
            self.audit_conn(
                key,
                AuditKind::Security,
                "rate_limit",
                AuditDecision::Deny,
                Some(&channel),
                Some("client_events"),
                None,
            );
            self.send_error(key, ErrorCode::ClientEventRateLimited);
            return;
        }
        let channel = sub.channel.clone();
        let user = sub.user.clone();
        let (app_idx, socket_id) = (conn.app, conn.socket_id);
        if self.wants_webhook(app_idx, WebhookKind::ClientEvent) {
            // Pusher's webhook carries data as a string: a string's content, else the JSON text.
            let data_text = serde_json::from_str::<String>(data.get())
                .unwrap_or_else(|_| data.get().to_owned());
            let hook = WebhookEvent {
                user_id: user.as_ref().map(|u| u.as_str().to_owned()),
                client: Some(ClientEventInfo {
                    event: event.to_owned(),
                    data: data_text,
                    socket_id: socket_id.to_string(),
                }),
                ..WebhookEvent::channel(WebhookKind::ClientEvent, channel.as_str())
            };
            self.webhooks.push((app_idx, hook));
        }
        let json = message::client_event(event, channel.as_str(), data, user.as_ref());
        let frame = frame::encode_frame(Opcode::Text, &json);
        self.metrics.apps[app_idx.get()]
            .publishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.publish_frame(app_idx, &channel, frame, Some(socket_id), now);
    }

    /// Publishes an event from the HTTP API to one channel: the frame is encoded once here
    /// and the same bytes reach every subscriber on every shard.
    pub fn publish(&mut self, publish: &Publish<'_>, channel: &ChannelName, now: Instant) {
        let json = message::channel_event(publish.event, channel.as_str(), publish.data);
        let frame = frame::encode_frame(Opcode::Text, &json);
        self.metrics.apps[publish.app.get()]
            .publishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.publish_frame(publish.app, channel, frame, publish.except, now);
        self.drain_to_self(now);
    }

    /// Starts a query; its answer appears in [`Shard::take_answers`] once every shard involved
    /// has replied (at once, if they are all this one).
    pub fn start_query(&mut self, query: Query, now: Instant) -> QueryId {
        let (awaiting, answer) = match &query {
            Query::Channel { .. } => (1, Answer::Channel(ChannelStats::default())),
            Query::Channels { .. } => (self.shard_count, Answer::Channels(Vec::new())),
            Query::Users { .. } => (1, Answer::Users(Vec::new())),
        };
        let id = self.new_query(PendingQuery { awaiting, answer });
        let reply_to = ReplyTo {
            shard: self.id,
            query: id,
        };
        // A cluster answers from Redis, for every node at once; when Redis is out of reach,
        // this node's shards answer for this node.
        if self.cluster_up() {
            if let Some(pending) = self.queries.get_mut(&id) {
                pending.awaiting = 1;
            }
            self.cluster_out
                .push(crate::core::cluster::ClusterOut::Query { reply_to, query });
            return id;
        }
        match query {
            Query::Channel { app, channel } => {
                let msg = MeshMsg::ChannelInfo {
                    reply_to,
                    app,
                    channel: channel.clone(),
                };
                self.send_home(app, &channel, msg);
            }
            Query::Users { app, channel } => {
                let msg = MeshMsg::ChannelUsers {
                    reply_to,
                    app,
                    channel: channel.clone(),
                };
                self.send_home(app, &channel, msg);
            }
            Query::Channels { app, prefix } => {
                for shard in 0..self.shard_count {
                    let msg = MeshMsg::ListChannels {
                        reply_to,
                        app,
                        prefix: prefix.clone(),
                    };
                    self.send_to(shard, msg);
                }
            }
        }
        self.drain_to_self(now);
        id
    }

    /// Audit records produced since the last call. Their `time_ms` is 0: the shell stamps
    /// them with the wall clock as it hands them to the audit log.
    pub fn take_audit(&mut self, out: &mut Vec<AuditRecord>) {
        out.append(&mut self.audit);
    }

    /// Records an audit entry not tied to a connection (HTTP API, refused connections).
    #[allow(clippy::too_many_arguments)]
    pub fn audit_event(
        &mut self,
        app: AppIdx,
        kind: AuditKind,
        action: &str,
        decision: AuditDecision,
        remote: Option<IpAddr>,
        rule: Option<&str>,
        reason: Option<String>,
    ) {
        self.count_denial(app, kind, decision, None);
        self.count_rate_limit(app, action);
        self.audit.push(AuditRecord {
            time_ms: 0,
            kind,
            action: action.to_owned(),
            app: self.state.apps.get(app).config.id.clone(),
            tenant: None,
            user: None,
            actor: None,
            socket: None,
            remote_ip: remote.map(|ip| ip.to_string()),
            channel: None,
            decision,
            rule: rule.map(str::to_owned),
            reason,
        });
    }

    /// Records an admin's action (sign-in, dashboard API call), with no app.
    pub fn audit_admin(
        &mut self,
        kind: AuditKind,
        action: &str,
        admin: Option<&str>,
        decision: AuditDecision,
        remote: IpAddr,
        reason: Option<String>,
    ) {
        if kind == AuditKind::Decision && decision == AuditDecision::Deny {
            inc(&self.metrics.auth_failures);
        }
        self.audit.push(AuditRecord {
            time_ms: 0,
            kind,
            action: action.to_owned(),
            app: String::new(),
            tenant: None,
            user: admin.map(str::to_owned),
            actor: Some("admin".to_owned()),
            socket: None,
            remote_ip: Some(remote.to_string()),
            channel: None,
            decision,
            rule: None,
            reason,
        });
    }

    /// Counts a rate-limit refusal (every one is audited with the action `rate_limit`).
    fn count_rate_limit(&self, app: AppIdx, action: &str) {
        if action != "rate_limit" {
            return;
        }
        inc(&self.metrics.rate_limited);
        if let Some(counters) = self.metrics.apps.get(app.get()) {
            inc(&counters.rate_limited);
        }
    }

    /// Counts a failed authorization (a denied decision) per app and per tenant.
    fn count_denial(
        &self,
        app: AppIdx,
        kind: AuditKind,
        decision: AuditDecision,
        tenant: Option<&str>,
    ) {
        if kind != AuditKind::Decision || decision != AuditDecision::Deny {
            return;
        }
        inc(&self.metrics.auth_failures);
        if let Some(counters) = self.metrics.apps.get(app.get()) {
            inc(&counters.auth_failures);
        }
        if let Some(tenant) = tenant {
            self.state.tenants.count(app, tenant);
        }
    }

    /// Records an audit entry about connection `key`, with its identity filled in.
    #[allow(clippy::too_many_arguments)]
    fn audit_conn(
        &mut self,
        key: ConnKey,
        kind: AuditKind,
        action: &str,
        decision: AuditDecision,
        channel: Option<&str>,
        rule: Option<&str>,
        reason: Option<String>,
    ) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let identity = conn.identity.as_deref();
        self.count_denial(
            conn.app,
            kind,
            decision,
            identity.and_then(|i| i.tenant.as_deref()),
        );
        self.count_rate_limit(conn.app, action);
        self.audit.push(AuditRecord {
            time_ms: 0,
            kind,
            action: action.to_owned(),
            app: self.state.apps.get(conn.app).config.id.clone(),
            tenant: identity.and_then(|i| i.tenant.clone()),
            user: identity
                .and_then(|i| i.user_id.clone())
                .or_else(|| conn.user.as_ref().map(|u| u.as_str().to_owned())),
            actor: identity.and_then(|i| i.actor.clone()),
            socket: Some(conn.socket_id.to_string()),
            remote_ip: Some(conn.remote.to_string()),
            channel: channel.map(str::to_owned),
            decision,
            rule: rule.map(str::to_owned),
            reason,
        });
    }

    /// Webhook events produced since the last call, for the webhook sender.
    pub fn take_webhooks(&mut self, out: &mut Vec<(AppIdx, WebhookEvent)>) {
        out.append(&mut self.webhooks);
    }

    /// Whether any of the app's webhook endpoints wants `kind` (so nothing is built for apps
    /// without webhooks).
    fn wants_webhook(&self, app: AppIdx, kind: WebhookKind) -> bool {
        self.state
            .apps
            .get(app)
            .config
            .webhooks
            .iter()
            .any(|w| w.wants(kind))
    }

    fn webhook(&mut self, app: AppIdx, event: WebhookEvent) {
        if self.wants_webhook(app, event.kind) {
            self.webhooks.push((app, event));
        }
    }

    fn new_query(&mut self, pending: PendingQuery) -> QueryId {
        self.next_query += 1;
        self.queries.insert(self.next_query, pending);
        self.next_query
    }

    /// Completed query answers.
    pub fn take_answers(&mut self) -> std::vec::Drain<'_, (QueryId, Answer)> {
        self.answers.drain(..)
    }

    /// Handles a message from another shard.
    pub fn handle_mesh(&mut self, msg: MeshMsg, now: Instant) {
        self.dispatch(msg, now);
        self.drain_to_self(now);
    }

    /// The next message for another shard.
    pub fn poll_mesh(&mut self) -> Option<(ShardId, MeshMsg)> {
        self.to_others.pop_front()
    }

    /// Moves the keys of connections with new output (or a pending close) into `out`.
    pub fn take_ready(&mut self, out: &mut Vec<ConnKey>) {
        for &key in &self.ready {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.in_ready = false;
            }
        }
        out.append(&mut self.ready);
    }

    /// Hands out queued frames of `key`, up to `max_frames` or about `max_bytes`.
    pub fn take_output(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        out: &mut Vec<Bytes>,
        max_frames: usize,
        max_bytes: usize,
    ) -> Taken {
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
            return Taken {
                state: OutputState::Close,
                oldest_event: None,
                events: 0,
            };
        };
        let mut bytes = 0;
        let mut oldest_event: Option<Instant> = None;
        let mut events = 0;
        while out.len() < max_frames && bytes < max_bytes {
            let Some((frame, published)) = conn.outbox.pop_front() else {
                break;
            };
            if let Some(published) = published {
                events += 1;
                oldest_event = Some(oldest_event.map_or(published, |o| o.min(published)));
            }
            bytes += frame.len();
            out.push(frame);
        }
        conn.outbox_bytes -= bytes;
        let state = if conn.closing && conn.outbox.is_empty() {
            OutputState::Close
        } else {
            OutputState::Open
        };
        Taken {
            state,
            oldest_event,
            events,
        }
    }

    /// Whether the closing handshake of `key` is complete (the peer's close frame arrived),
    /// or the connection is gone. The shell closes the socket then, or after a grace period.
    pub fn peer_closed(&self, key: ConnKey, socket_id: SocketId) -> bool {
        self.conns
            .get(key)
            .filter(|c| c.socket_id == socket_id)
            .is_none_or(|c| c.peer_closed)
    }

    /// The socket of `key` is gone (closed by either side, or failed): forget it.
    pub fn handle_disconnect(&mut self, key: ConnKey, socket_id: SocketId, now: Instant) {
        if self.socket_id(key) != Some(socket_id) {
            return;
        }
        self.leave_all(key);
        let conn = self.conns.remove(key);
        if let Some(user) = &conn.user {
            let sockets = &mut self.users[conn.app.get()];
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
        inc(&self.metrics.connections_closed);
        self.metrics.apps[conn.app.get()]
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.drain_to_self(now);
    }

    /// Pings quiet connections and closes those that did not answer in time.
    pub fn handle_tick(&mut self, now: Instant) {
        let activity = self.state.config.activity_timeout;
        let pong = self.state.config.pong_timeout;
        let mut to_ping = Vec::new();
        let mut to_close = Vec::new();
        let mut unsigned = Vec::new();
        let mut expired = Vec::new();
        for (key, conn) in &self.conns {
            if conn.closing {
                continue;
            }
            if conn.token_expires.is_some_and(|at| now >= at) {
                expired.push(key);
                continue;
            }
            let signin_timeout = self.state.apps.get(conn.app).config.signin_timeout;
            if let Some(limit) = signin_timeout
                && conn.user.is_none()
                && now.saturating_duration_since(conn.connected_at) >= limit
            {
                unsigned.push(key);
                continue;
            }
            match conn.ping_sent {
                Some(sent) if now.saturating_duration_since(sent) >= pong => to_close.push(key),
                None if now.saturating_duration_since(conn.last_seen) >= activity => {
                    to_ping.push(key)
                }
                _ => {}
            }
        }
        for key in to_ping {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.ping_sent = Some(now);
            }
            self.send_json(key, message::ping());
        }
        for key in to_close {
            self.close_with(key, ErrorCode::PongNotReceived);
        }
        for key in expired {
            self.close_with(key, ErrorCode::TokenExpired);
        }
        for key in unsigned {
            let text = "sign-in (pusher:signin) did not happen in time";
            self.send_error_message(key, ErrorCode::Unauthorized, text);
        }
        self.home_timers(now);
        self.drain_to_self(now);
    }

    /// Sends delayed `channel_vacated` / `member_removed` webhooks that came due, forgets
    /// cached events past their TTL, and drops channels with nothing left to remember.
    fn home_timers(&mut self, now: Instant) {
        let mut due_events = Vec::new();
        for (app, homes) in self.homes.iter_mut().enumerate() {
            let app = AppIdx(app as u16);
            let ttl = self.state.apps.get(app).config.cache_ttl;
            homes.retain(|name, home| {
                let due = home.due_leaves(now, LEAVE_DELAY);
                if due.vacated {
                    due_events.push((
                        app,
                        WebhookEvent::channel(WebhookKind::ChannelVacated, name.as_str()),
                    ));
                }
                for user in due.removed {
                    let event = WebhookEvent::member(
                        WebhookKind::MemberRemoved,
                        name.as_str(),
                        user.as_str(),
                    );
                    due_events.push((app, event));
                }
                home.forget_expired(now, ttl);
                !home.is_empty()
            });
        }
        for (app, event) in due_events {
            self.webhook(app, event);
        }
    }

    /// Closes every connection with 4200 (reconnect now), for a graceful shutdown.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<ConnKey> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close_with(key, ErrorCode::Reconnect);
        }
        self.drain_to_self(now);
    }

    // ---- output helpers ----------------------------------------------------------------

    fn send_json(&mut self, key: ConnKey, json: &[u8]) {
        self.send_frame(key, frame::encode_frame(Opcode::Text, json));
    }

    fn send_error(&mut self, key: ConnKey, code: ErrorCode) {
        self.send_error_message(key, code, code.message());
    }

    fn send_error_message(&mut self, key: ConnKey, code: ErrorCode, text: &str) {
        self.metrics.error(code);
        self.send_json(key, &message::error_with_message(code, text));
        if code.closes_connection() {
            self.close_ws(key, code.code(), code.message());
        }
    }

    /// Sends `pusher:error` and closes with the same code.
    fn close_with(&mut self, key: ConnKey, code: ErrorCode) {
        self.send_error(key, code);
    }

    fn send_frame(&mut self, key: ConnKey, frame: Bytes) {
        let cap = self.state.config.send_buffer_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        if enqueue(
            conn,
            key,
            (frame, None),
            cap,
            &mut self.ready,
            &self.metrics,
        ) == Enqueued::Overflow
        {
            self.close_slow_consumer(key);
        }
    }

    /// Queues a close frame and stops the connection taking part in anything.
    fn close_ws(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing {
            return;
        }
        let frame = frame::encode_close(code, reason);
        conn.outbox_bytes += frame.len();
        conn.outbox.push_back((frame, None));
        conn.closing = true;
        mark_ready(conn, key, &mut self.ready);
        self.leave_all(key);
    }

    /// A consumer whose send buffer is full: drop what it has not taken and close it with 4100.
    fn close_slow_consumer(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outbox.clear();
        conn.outbox_bytes = 0;
        inc(&self.metrics.slow_consumers_closed);
        self.metrics.error(ErrorCode::OverCapacity);
        let json = message::error_with_message(
            ErrorCode::OverCapacity,
            "send buffer full: the client is not reading fast enough",
        );
        let frame = frame::encode_frame(Opcode::Text, &json);
        conn.outbox_bytes += frame.len();
        conn.outbox.push_back((frame, None));
        self.close_ws(key, ErrorCode::OverCapacity.code(), "Over capacity");
    }

    fn leave_all(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let subscriptions = std::mem::take(&mut conn.subscriptions);
        let (app, socket_id) = (conn.app, conn.socket_id);
        for sub in subscriptions {
            self.leave(key, app, socket_id, sub);
        }
    }

    // ---- mesh --------------------------------------------------------------------------

    fn send_home(&mut self, app: AppIdx, channel: &ChannelName, msg: MeshMsg) {
        let home = home_shard(app, channel, self.shard_count);
        self.send_to(home, msg);
    }

    fn send_to(&mut self, shard: ShardId, msg: MeshMsg) {
        if shard == self.id {
            self.to_self.push_back(msg);
        } else {
            self.to_others.push_back((shard, msg));
        }
    }

    fn drain_to_self(&mut self, now: Instant) {
        while let Some(msg) = self.to_self.pop_front() {
            self.dispatch(msg, now);
        }
    }

    fn dispatch(&mut self, msg: MeshMsg, now: Instant) {
        match msg {
            MeshMsg::Subscribe(join) => self.home_subscribe(join, now),
            MeshMsg::SubscribeAccepted(admission) => self.subscribe_accepted(admission),
            MeshMsg::SubscribeRefused {
                conn,
                socket_id,
                channel,
                frame,
                ..
            } => {
                self.subscribe_refused(conn, socket_id, &channel, frame);
            }
            MeshMsg::Unsubscribe {
                shard,
                socket_id,
                app,
                channel,
                user,
            } => {
                self.home_unsubscribe(shard, socket_id, app, &channel, user.as_ref(), now);
            }
            MeshMsg::Publish {
                app,
                channel,
                frame,
                except,
                published,
                remember,
            } => {
                if remember && channel.kind().is_cache() {
                    self.homes[app.get()]
                        .entry(channel.clone())
                        .or_insert_with(|| HomeChannel::new(self.shard_count))
                        .remember(frame.clone(), now);
                }
                self.home_publish(app, &channel, frame, except, published);
            }
            MeshMsg::Deliver {
                app,
                channel,
                frame,
                except,
                published,
            } => {
                self.deliver_local(app, &channel, &frame, except, published);
            }
            MeshMsg::ChannelInfo {
                reply_to,
                app,
                channel,
            } => {
                let stats = self.homes[app.get()]
                    .get(&channel)
                    .map(HomeChannel::stats)
                    .unwrap_or_default();
                self.answer(reply_to, AnswerPart::Channel(stats));
            }
            MeshMsg::ChannelUsers {
                reply_to,
                app,
                channel,
            } => {
                let users = self.homes[app.get()]
                    .get(&channel)
                    .map(HomeChannel::users)
                    .unwrap_or_default();
                self.answer(reply_to, AnswerPart::Users(users));
            }
            MeshMsg::ListChannels {
                reply_to,
                app,
                prefix,
            } => {
                let channels = self.homes[app.get()]
                    .iter()
                    .filter(|(name, home)| name.as_str().starts_with(&prefix) && home.is_occupied())
                    .map(|(name, home)| (name.as_str().to_owned(), home.stats()))
                    .collect();
                self.answer(reply_to, AnswerPart::Channels(channels));
            }
            MeshMsg::UserSockets { app, user, online } => self.home_user_sockets(app, user, online),
            MeshMsg::Watch {
                app,
                watcher,
                users,
                start,
            } => self.home_watch(app, watcher, users, start),
            MeshMsg::ClusterUserStatus { app, user, online } => {
                self.notify_watchers(app, &user, online);
            }
            MeshMsg::WhoIsOnlineHere {
                app,
                watcher,
                users,
            } => self.tell_online_here(app, watcher, &users),
            MeshMsg::WatchlistNotify {
                watcher,
                online,
                users,
            } => {
                if self.socket_id(watcher.conn) == Some(watcher.socket_id) {
                    let json = message::watchlist_events(online, &users);
                    self.send_json(watcher.conn, &json);
                }
            }
            MeshMsg::SetResource {
                reply_to,
                app,
                kind,
                id,
                resource,
            } => {
                let key = (kind, id);
                match resource {
                    Some(resource) => {
                        self.resources[app.get()].insert(key, (*resource).clone());
                    }
                    None => {
                        self.resources[app.get()].remove(&key);
                    }
                }
                if let Some(reply_to) = reply_to {
                    self.answer(reply_to, AnswerPart::Applied);
                }
            }
            MeshMsg::RevokeToken { app, jti } => {
                let keys: Vec<ConnKey> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        c.app == app
                            && c.identity.as_ref().and_then(|i| i.jti.as_deref())
                                == Some(jti.as_str())
                    })
                    .map(|(k, _)| k)
                    .collect();
                for key in keys {
                    self.send_error_message(key, ErrorCode::Unauthorized, "token revoked");
                }
            }
            MeshMsg::TerminateUser { app, user } => {
                let keys = self.users[app.get()]
                    .get(&user)
                    .cloned()
                    .unwrap_or_default();
                for key in keys {
                    let text = "connection terminated by the app";
                    self.send_error_message(key, ErrorCode::Unauthorized, text);
                }
            }
            MeshMsg::ClusterSynced { sync, reply } => self.cluster_synced(sync, reply, now),
            MeshMsg::ClusterWebhook { app, event } => {
                self.webhook(app, event);
            }
            MeshMsg::ClusterDump => self.cluster_dump(),
            MeshMsg::Answer { query, part } => self.gather(query, part),
        }
    }

    fn home_subscribe(&mut self, join: Join, now: Instant) {
        let (app, channel) = (join.app, join.channel.clone());
        let max_members = self.state.apps.get(app).config.max_presence_members;
        let clustered = self.clustered();
        let home = self.homes[app.get()]
            .entry(channel.clone())
            .or_insert_with(|| HomeChannel::new(self.shard_count));
        let admitted = home.admit(
            join.shard,
            join.socket_id,
            join.member.as_ref(),
            max_members,
        );
        let Some(admitted) = admitted else {
            if home.is_empty() {
                self.homes[app.get()].remove(&channel);
            }
            self.refuse_full(&join);
            return;
        };
        let count = home.stats().subscription_count;
        if clustered {
            self.cluster_subscribe(join, admitted.first_socket_of_user, count, now);
            return;
        }
        let json = match home.roster() {
            Some(roster) => {
                message::presence_subscription_succeeded(channel.as_str(), roster.members())
            }
            None => message::subscription_succeeded(channel.as_str()),
        };
        let member = join.member.clone();
        let occupancy = home.note_admission(&admitted, member.as_ref().map(|m| &m.user_id));
        if occupancy.announce_occupied {
            self.webhook(
                app,
                WebhookEvent::channel(WebhookKind::ChannelOccupied, channel.as_str()),
            );
        }
        if let (true, Some(member)) = (occupancy.announce_member, &member) {
            let event = WebhookEvent::member(
                WebhookKind::MemberAdded,
                channel.as_str(),
                member.user_id.as_str(),
            );
            self.webhook(app, event);
        }
        let socket_id = join.socket_id;
        self.confirm(join, json, now);
        self.subscription_count_changed(app, &channel, count, now);
        if admitted.first_socket_of_user
            && let Some(member) = member
        {
            let json = message::member_added(
                channel.as_str(),
                &member.user_id,
                member.user_info.as_deref(),
            );
            let frame = frame::encode_frame(Opcode::Text, &json);
            self.home_publish(app, &channel, frame, Some(socket_id), now);
        }
    }

    fn subscribe_accepted(&mut self, admission: Admission) {
        let Admission {
            conn: key,
            socket_id,
            app,
            channel,
            user,
            frame,
            then,
        } = admission;
        let pending = self
            .conns
            .get_mut(key)
            .filter(|c| c.socket_id == socket_id)
            .and_then(|conn| {
                conn.subscriptions
                    .iter_mut()
                    .find(|s| s.channel == channel && s.state == SubState::Pending)
            });
        match pending {
            Some(sub) => {
                sub.state = SubState::Active;
                self.local[app.get()]
                    .entry(channel)
                    .or_default()
                    .insert(key);
                self.metrics
                    .subscriptions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.send_frame(key, frame);
                if let Some(then) = then {
                    self.send_frame(key, then);
                }
            }
            None => {
                // The socket left (or unsubscribed) while the home shard was admitting it:
                // undo the admission so counts and rosters stay exact.
                let msg = MeshMsg::Unsubscribe {
                    shard: self.id,
                    socket_id,
                    app,
                    channel: channel.clone(),
                    user,
                };
                self.send_home(app, &channel, msg);
            }
        }
    }

    fn subscribe_refused(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        channel: &ChannelName,
        frame: Bytes,
    ) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
            return;
        };
        if let Some(position) = conn
            .subscriptions
            .iter()
            .position(|s| &s.channel == channel && s.state == SubState::Pending)
        {
            conn.subscriptions.swap_remove(position);
            self.send_frame(key, frame);
        }
    }

    fn home_unsubscribe(
        &mut self,
        shard: ShardId,
        socket_id: SocketId,
        app: AppIdx,
        channel: &ChannelName,
        user: Option<&UserId>,
        now: Instant,
    ) {
        let clustered = self.clustered();
        let Some(home) = self.homes[app.get()].get_mut(channel) else {
            return;
        };
        let removed = home.release(shard, socket_id, user);
        if clustered {
            let count = home.stats().subscription_count;
            if home.is_empty() {
                self.homes[app.get()].remove(channel);
            }
            let left = user.filter(|_| removed.last_socket_of_user);
            self.cluster_unsubscribe(app, channel, left, count);
            return;
        }
        home.note_release(&removed, user, now);
        let count = home.stats().subscription_count;
        if home.is_empty() {
            self.homes[app.get()].remove(channel);
        }
        self.subscription_count_changed(app, channel, count, now);
        if let (Some(user), true) = (user, removed.last_socket_of_user) {
            let json = message::member_removed(channel.as_str(), user);
            let frame = frame::encode_frame(Opcode::Text, &json);
            self.home_publish(app, channel, frame, None, now);
        }
    }

    /// A channel's subscriber count changed: the `subscription_count` webhook and, when the
    /// app opts in, `pusher_internal:subscription_count` to the subscribers. Presence channels
    /// have member events instead.
    fn subscription_count_changed(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        count: usize,
        now: Instant,
    ) {
        if channel.kind().is_presence() {
            return;
        }
        let event = WebhookEvent {
            subscription_count: Some(count),
            ..WebhookEvent::channel(WebhookKind::SubscriptionCount, channel.as_str())
        };
        self.webhook(app, event);
        if count > 0 && self.state.apps.get(app).config.subscription_count_events {
            let json = message::subscription_count(channel.as_str(), count);
            let frame = frame::encode_frame(Opcode::Text, &json);
            if self.clustered() {
                self.publish_frame(app, channel, frame, None, now);
            } else {
                self.home_publish(app, channel, frame, None, now);
            }
        }
    }

    /// At the home shard: forward a frame to every shard that has subscribers.
    fn home_publish(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frame: Bytes,
        except: Option<SocketId>,
        published: Instant,
    ) {
        let Some(home) = self.homes[app.get()].get(channel) else {
            return;
        };
        let shards: Vec<ShardId> = home.shards_with_subscribers().collect();
        for shard in shards {
            let msg = MeshMsg::Deliver {
                app,
                channel: channel.clone(),
                frame: frame.clone(),
                except,
                published,
            };
            self.send_to(shard, msg);
        }
    }

    fn deliver_local(
        &mut self,
        app: AppIdx,
        channel: &ChannelName,
        frame: &Bytes,
        except: Option<SocketId>,
        published: Instant,
    ) {
        let Some(subscribers) = self.local[app.get()].get(channel) else {
            return;
        };
        let cap = self.state.config.send_buffer_bytes;
        let mut overflowed = Vec::new();
        let mut delivered = 0u64;
        for &key in subscribers {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if Some(conn.socket_id) == except || conn.closing {
                continue;
            }
            delivered += 1;
            if enqueue(
                conn,
                key,
                (frame.clone(), Some(published)),
                cap,
                &mut self.ready,
                &self.metrics,
            ) == Enqueued::Overflow
            {
                overflowed.push(key);
            }
        }
        add(&self.metrics.deliveries, delivered);
        self.metrics.apps[app.get()]
            .deliveries
            .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
        for key in overflowed {
            self.close_slow_consumer(key);
        }
    }

    fn answer(&mut self, reply_to: ReplyTo, part: AnswerPart) {
        let msg = MeshMsg::Answer {
            query: reply_to.query,
            part,
        };
        self.send_to(reply_to.shard, msg);
    }

    fn gather(&mut self, query: QueryId, part: AnswerPart) {
        let Some(pending) = self.queries.get_mut(&query) else {
            return;
        };
        match (&mut pending.answer, part) {
            (Answer::Channel(stats), AnswerPart::Channel(part)) => *stats = part,
            (Answer::Users(users), AnswerPart::Users(part)) => *users = part,
            (Answer::Channels(list), AnswerPart::Channels(part)) => list.extend(part),
            (Answer::Applied, AnswerPart::Applied) => {}
            (answer, AnswerPart::Unavailable) => *answer = Answer::Unavailable,
            _ => {}
        }
        pending.awaiting -= 1;
        if pending.awaiting == 0 {
            let Some(mut done) = self.queries.remove(&query) else {
                return;
            };
            if let Answer::Channels(list) = &mut done.answer {
                list.sort_by(|a, b| a.0.cmp(&b.0));
            }
            self.answers.push((query, done.answer));
        }
    }
}

/// Evaluates the app's policies for a subscription whose signature already holds. The subject
/// is the connection's JWT identity; without one, the signed sign-in user or presence member
/// (with `tenant_id`, `actor` and `roles` read from its signed `user_info`).
fn policy_decision(
    app: &crate::core::app::App,
    conn: &Conn,
    proof: &ChannelAuthorized,
    resources: &Resources,
) -> Decision {
    if app.policies.is_empty() {
        return Decision::Allow { rules: Vec::new() };
    }
    if let Some(identity) = conn.identity.as_deref() {
        let subject = Subject {
            user_id: identity.user_id.as_deref(),
            tenant: identity.tenant.as_deref(),
            actor: identity.actor.as_deref(),
            roles: &identity.roles,
        };
        return app.policies.evaluate(proof.channel(), &subject, resources);
    }
    // Without a token: the signed-in user (sign-in `user_data`), else the presence member,
    // each with `tenant_id`, `actor` and `roles` read from its signed `user_info`.
    let member = proof.member();
    let info_text = match &conn.user {
        Some(_) => conn.signin_info.as_deref(),
        None => member.and_then(|m| m.user_info.as_deref()),
    };
    let info: Option<serde_json::Value> =
        info_text.and_then(|text| serde_json::from_str(text).ok());
    let text = |field: &str| {
        info.as_ref()
            .and_then(|i| i.get(field))
            .and_then(|v| v.as_str())
    };
    let roles: Vec<String> = info
        .as_ref()
        .and_then(|i| i.get("roles"))
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let subject = Subject {
        user_id: conn
            .user
            .as_ref()
            .map(UserId::as_str)
            .or(member.map(|m| m.user_id.as_str())),
        tenant: text("tenant_id"),
        actor: text("actor"),
        roles: &roles,
    };
    app.policies.evaluate(proof.channel(), &subject, resources)
}

fn client_event_rate(per_second: u32) -> Rate {
    Rate {
        capacity: per_second,
        period: Duration::from_secs(1),
    }
}

#[derive(PartialEq, Eq)]
enum Enqueued {
    Queued,
    Overflow,
}

fn enqueue(
    conn: &mut Conn,
    key: ConnKey,
    queued: (Bytes, Option<Instant>),
    cap: usize,
    ready: &mut Vec<ConnKey>,
    metrics: &ShardMetrics,
) -> Enqueued {
    if conn.outbox_bytes + queued.0.len() > cap {
        return Enqueued::Overflow;
    }
    conn.outbox_bytes += queued.0.len();
    conn.outbox.push_back(queued);
    inc(&metrics.messages_out);
    mark_ready(conn, key, ready);
    Enqueued::Queued
}

fn mark_ready(conn: &mut Conn, key: ConnKey, ready: &mut Vec<ConnKey>) {
    if !conn.in_ready {
        conn.in_ready = true;
        ready.push(key);
    }
}
