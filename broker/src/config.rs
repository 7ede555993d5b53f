//! Typed configuration: a TOML file (or the embedded demo), environment overrides, validation.
//!
//! Laravel Reverb's variable names are accepted so that a Laravel `.env` works unchanged:
//! `REVERB_SERVER_HOST`, `REVERB_SERVER_PORT`, `REVERB_APP_ID`, `REVERB_APP_KEY`,
//! `REVERB_APP_SECRET`, `REVERB_ALLOWED_ORIGINS`, `REVERB_APP_ACTIVITY_TIMEOUT`,
//! `REVERB_APP_MAX_MESSAGE_SIZE`, `REVERB_APP_MAX_CONNECTIONS`,
//! `REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM`. Ringcast's own `RINGCAST_HOST`, `RINGCAST_PORT`,
//! `RINGCAST_SHARDS`, `RINGCAST_DRIVER` and `RINGCAST_DATA_DIR` take precedence.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::webhook::WebhookKind;

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server-wide settings.
    pub server: ServerConfig,
    /// The apps (at least one).
    pub apps: Vec<AppConfig>,
    /// Who may sign in to the admin dashboard.
    pub admins: Vec<crate::core::admin::AdminAccount>,
    /// Tokens that sign admins in when they carry role `admin` (`[admin_jwt]`).
    pub admin_jwt: Option<JwtConfig>,
}

/// The I/O driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Driver {
    /// io_uring (the default).
    #[serde(rename = "io_uring")]
    IoUring,
    /// epoll, for kernels without io_uring.
    #[serde(rename = "epoll")]
    Epoll,
}

impl Driver {
    /// The name used in the config, the log and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Who may send `client-` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientEvents {
    /// Subscribers of private and presence channels.
    Enabled,
    /// Members of presence channels only.
    MembersOnly,
    /// Nobody.
    Disabled,
}

/// Server-wide settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port (0: any free port, for tests).
    pub port: u16,
    /// Shards (threads); always >= 1 after loading.
    pub shards: usize,
    /// I/O driver.
    pub driver: Driver,
    /// Connections on the whole server; over it new ones get 4100.
    pub max_connections: usize,
    /// Quiet time after which the server pings a client.
    pub activity_timeout: Duration,
    /// Time a pinged client has to answer before 4201.
    pub pong_timeout: Duration,
    /// Time to send a complete request head.
    pub handshake_timeout: Duration,
    /// Time given to clients to close on shutdown.
    pub shutdown_timeout: Duration,
    /// Largest request head.
    pub max_request_head_bytes: usize,
    /// Most request headers.
    pub max_request_headers: usize,
    /// Largest HTTP request body.
    pub max_http_body_bytes: usize,
    /// Per-connection output cap; a client over it is closed with 4100.
    pub send_buffer_bytes: usize,
    /// Capacity of each queue between shards.
    pub mesh_queue_capacity: usize,
    /// Allowed clock difference for signed API requests.
    pub api_timestamp_window: Duration,
    /// Where persistent data lives.
    pub data_dir: PathBuf,
    /// Audit log group-commit interval: after a crash, every older record is on disk.
    pub audit_flush_interval: Duration,
    /// Audit records older than this are deleted.
    pub audit_retention: Duration,
    /// At most this many audit records are kept.
    pub audit_max_records: u64,
    /// Memory for the audit store's page cache, in bytes.
    pub audit_cache_bytes: u64,
    /// Bearer token for the admin API (`/admin/api/...`); `None` disables it.
    pub admin_token: Option<String>,
    /// Where the built admin UI (`index.html`, the wasm module and its glue) is read from.
    pub admin_ui_dir: PathBuf,
    /// Scale-out through Redis (`[cluster]`); `None`: a single node.
    pub cluster: Option<ClusterConfig>,
}

/// Scale-out settings: several nodes sharing one Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where Redis is.
    pub redis: RedisTarget,
    /// Prefix of every Redis key and of the pub/sub channel, so clusters can share a Redis.
    pub prefix: String,
    /// A node silent this long is declared dead and its members are removed.
    pub node_timeout: Duration,
}

impl ClusterConfig {
    /// How often a node records its heartbeat: six times per timeout, so a live node would
    /// have to miss several in a row to be declared dead.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.node_timeout / 6).max(Duration::from_millis(100))
    }

    /// How long a node may be silent before the others remove it. Dead nodes are looked for
    /// at every heartbeat, so removal completes within `node_timeout`.
    pub fn dead_after(&self) -> Duration {
        self.node_timeout.saturating_sub(self.heartbeat_interval())
    }
}

/// A Redis server, from a `redis://[user:password@]host[:port][/db]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or address.
    pub host: String,
    /// Port (6379 by default).
    pub port: u16,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
}

impl std::fmt::Debug for RedisTarget {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisTarget {
    /// Parses a `redis://` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.trim().strip_prefix("redis://").ok_or_else(|| {
            if url.starts_with("rediss://") {
                "TLS (rediss://) is not supported; reach Redis over a private network or a TLS tunnel".to_owned()
            } else {
                format!("expected redis://host:port, got {url:?}")
            }
        })?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (
                authority,
                db.parse()
                    .map_err(|_| format!("database must be a number, got {db:?}"))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
                host,
                port.parse()
                    .map_err(|_| format!("port must be a number, got {port:?}"))?,
            ),
            _ => (authority, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the host is missing".into());
        }
        let (username, password) = match auth {
            None => (None, None),
            Some(auth) => match auth.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_owned()),
                    Some(password.to_owned()),
                ),
                None => (None, Some(auth.to_owned())),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }
}

/// One app.
#[derive(Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// App id (HTTP API path).
    pub id: String,
    /// Public key (WebSocket path, signatures).
    pub key: String,
    /// Secret for HMAC signatures.
    pub secret: String,
    /// Whether the app accepts connections.
    pub enabled: bool,
    /// Connection quota (`None`: unlimited); over it: 4004.
    pub max_connections: Option<u64>,
    /// Largest event data / client event payload.
    pub max_message_bytes: usize,
    /// Client events policy.
    pub client_events: ClientEvents,
    /// Client events per second per connection; over it: 4301.
    pub client_events_per_second: u32,
    /// Distinct users per presence channel.
    pub max_presence_members: usize,
    /// Largest presence `user_info`.
    pub max_user_info_bytes: usize,
    /// Longest presence user id.
    pub max_user_id_chars: usize,
    /// Longest channel name.
    pub max_channel_name_chars: usize,
    /// Longest event name.
    pub max_event_name_chars: usize,
    /// Channels per published event.
    pub max_channels_per_publish: usize,
    /// Events per batch.
    pub max_batch_events: usize,
    /// Subscriptions per connection.
    pub max_subscriptions_per_connection: usize,
    /// Allowed `Origin`s: `scheme://host[:port]`, `*.domain` or `*`.
    pub allowed_origins: Vec<String>,
    /// How long a cache channel remembers its last event.
    pub cache_ttl: Duration,
    /// Where to send webhooks, and which.
    pub webhooks: Vec<WebhookConfig>,
    /// Channel policies, evaluated in addition to channel signatures.
    pub policies: Vec<crate::core::policy::RuleConfig>,
    /// JWT connection authentication; `None` (no `[apps.jwt]` table) means none.
    pub jwt: Option<JwtConfig>,
    /// Rate limits; `None` (no `[apps.rate_limits]` table) means none beyond
    /// `client_events_per_second`.
    pub rate_limits: Option<RateLimits>,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels
    /// whenever their count changes (Pusher's opt-in "subscription counting").
    pub subscription_count_events: bool,
    /// Connections that have not signed in (`pusher:signin`) within this time are closed
    /// with 4009; `None` (the default) lets anonymous connections stay.
    pub signin_timeout: Option<Duration>,
}

/// Signature algorithm of an app's connection tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `secret`.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSA with `public_key` / `public_key_file`.
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA P-256 with `public_key` / `public_key_file`.
    #[serde(rename = "ES256")]
    Es256,
}

/// JWT connection authentication for one app.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Refuse connections without a valid token (4009); when false a token is optional.
    #[serde(default)]
    pub required: bool,
    /// The algorithm tokens must be signed with.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256/ES256 public key, PEM SubjectPublicKeyInfo (filled from `public_key_file`).
    #[serde(default)]
    pub public_key: Option<String>,
    /// A file holding `public_key`.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Allowed clock difference for `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Claim holding the user id.
    #[serde(default = "default_user_claim")]
    pub user_id_claim: String,
    /// Claim holding the tenant id.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the actor type.
    #[serde(default = "default_actor_claim")]
    pub actor_claim: String,
    /// Claim holding the roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

impl JwtConfig {
    /// HS256 with `secret`, optional tokens, and every other setting at its default (as an
    /// `[apps.jwt]` table with only `algorithm` and `secret` would give).
    pub fn hs256(secret: &str) -> Self {
        Self {
            required: false,
            algorithm: JwtAlgorithm::Hs256,
            secret: Some(secret.to_owned()),
            public_key: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_secs: default_leeway(),
            user_id_claim: default_user_claim(),
            tenant_claim: default_tenant_claim(),
            actor_claim: default_actor_claim(),
            roles_claim: default_roles_claim(),
        }
    }
}

fn default_leeway() -> u64 {
    30
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_tenant_claim() -> String {
    "tenant_id".into()
}
fn default_actor_claim() -> String {
    "actor".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}

impl std::fmt::Debug for JwtConfig {
    /// Everything but the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("required", &self.required)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Per-app rate limits. The defaults come from a production deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// WebSocket connection attempts per minute from one IP address (over: HTTP 429).
    pub connections_per_minute_per_ip: u32,
    /// Client events per minute from one user (a signed-in or presence user, else one
    /// connection), on top of `client_events_per_second` (over: 4301).
    pub client_events_per_minute_per_user: u32,
    /// Channel subscriptions one connection may hold (over: `pusher:subscription_error` 429).
    pub subscriptions_per_connection: usize,
    /// HTTP API requests per second for the app (over: HTTP 429).
    pub api_requests_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            connections_per_minute_per_ip: 10,
            client_events_per_minute_per_user: 30,
            subscriptions_per_connection: 20,
            api_requests_per_second: 100,
        }
    }
}

/// One webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL receiving POSTed batches.
    pub url: String,
    /// The kinds sent there; empty means all.
    #[serde(default)]
    pub event_types: Vec<WebhookKind>,
}

impl WebhookConfig {
    /// Whether events of `kind` go to this endpoint.
    pub fn wants(&self, kind: WebhookKind) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&kind)
    }
}

/// Why the config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped fields.
    #[error("{origin}: {message}")]
    Parse {
        /// The file, or "config".
        origin: String,
        /// What the parser said (it names the field).
        message: String,
    },
    /// A value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field or environment variable.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Longest accepted timeout or window.
const MAX_DURATION: Duration = Duration::from_secs(86_400);

const DEMO_ID: &str = "100001";
const DEMO_KEY: &str = "ringcast-demo-key";
const DEMO_SECRET: &str = "ringcast-demo-secret";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    apps: Vec<FileApp>,
    #[serde(default)]
    admins: Vec<FileAdmin>,
    #[serde(default)]
    admin_jwt: Option<JwtConfig>,
    #[serde(default)]
    cluster: FileCluster,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileCluster {
    redis_url: Option<String>,
    prefix: String,
    node_timeout_secs: u64,
}

impl Default for FileCluster {
    fn default() -> Self {
        Self {
            redis_url: None,
            prefix: "ringcast".into(),
            node_timeout_secs: 30,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    name: String,
    password_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileServer {
    host: IpAddr,
    port: u16,
    shards: usize,
    driver: Driver,
    max_connections: usize,
    activity_timeout_secs: u64,
    pong_timeout_secs: u64,
    handshake_timeout_secs: u64,
    shutdown_timeout_secs: u64,
    max_request_head_bytes: usize,
    max_request_headers: usize,
    max_http_body_bytes: usize,
    send_buffer_bytes: usize,
    mesh_queue_capacity: usize,
    api_timestamp_window_secs: u64,
    data_dir: PathBuf,
    audit_flush_interval_ms: u64,
    audit_retention_days: u64,
    audit_max_records: u64,
    audit_cache_mb: u64,
    admin_token: Option<String>,
    admin_ui_dir: PathBuf,
}

impl Default for FileServer {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            shards: 0,
            driver: Driver::IoUring,
            max_connections: 100_000,
            activity_timeout_secs: 120,
            pong_timeout_secs: 30,
            handshake_timeout_secs: 10,
            shutdown_timeout_secs: 10,
            max_request_head_bytes: 8192,
            max_request_headers: 64,
            max_http_body_bytes: 1_048_576,
            send_buffer_bytes: 1_048_576,
            mesh_queue_capacity: 16_384,
            api_timestamp_window_secs: 600,
            data_dir: PathBuf::from("./data"),
            audit_flush_interval_ms: 100,
            audit_retention_days: 30,
            audit_max_records: 10_000_000,
            audit_cache_mb: 16,
            admin_token: None,
            admin_ui_dir: PathBuf::from("target/admin-ui/dist"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileApp {
    id: String,
    key: String,
    secret: String,
    enabled: bool,
    max_connections: u64,
    max_message_bytes: usize,
    client_events: ClientEvents,
    client_events_per_second: u32,
    max_presence_members: usize,
    max_user_info_bytes: usize,
    max_user_id_chars: usize,
    max_channel_name_chars: usize,
    max_event_name_chars: usize,
    max_channels_per_publish: usize,
    max_batch_events: usize,
    max_subscriptions_per_connection: usize,
    allowed_origins: Vec<String>,
    signin_timeout_secs: u64,
    cache_ttl_secs: u64,
    webhooks: Vec<WebhookConfig>,
    subscription_count_events: bool,
    rate_limits: Option<RateLimits>,
    jwt: Option<JwtConfig>,
    policies: Vec<crate::core::policy::RuleConfig>,
}

impl Default for FileApp {
    fn default() -> Self {
        Self {
            id: String::new(),
            key: String::new(),
            secret: String::new(),
            enabled: true,
            max_connections: 0,
            max_message_bytes: 10_240,
            client_events: ClientEvents::Enabled,
            client_events_per_second: 10,
            max_presence_members: 100,
            max_user_info_bytes: 1024,
            max_user_id_chars: 128,
            max_channel_name_chars: 200,
            max_event_name_chars: 200,
            max_channels_per_publish: 100,
            max_batch_events: 10,
            max_subscriptions_per_connection: 100,
            allowed_origins: vec!["*".into()],
            signin_timeout_secs: 0,
            cache_ttl_secs: 1800,
            webhooks: Vec::new(),
            subscription_count_events: false,
            rate_limits: None,
            jwt: None,
            policies: Vec::new(),
        }
    }
}

impl FileApp {
    fn into_app(self) -> AppConfig {
        AppConfig {
            id: self.id,
            key: self.key,
            secret: self.secret,
            enabled: self.enabled,
            max_connections: (self.max_connections > 0).then_some(self.max_connections),
            max_message_bytes: self.max_message_bytes,
            client_events: self.client_events,
            client_events_per_second: self.client_events_per_second,
            max_presence_members: self.max_presence_members,
            max_user_info_bytes: self.max_user_info_bytes,
            max_user_id_chars: self.max_user_id_chars,
            max_channel_name_chars: self.max_channel_name_chars,
            max_event_name_chars: self.max_event_name_chars,
            max_channels_per_publish: self.max_channels_per_publish,
            max_batch_events: self.max_batch_events,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            allowed_origins: self.allowed_origins,
            cache_ttl: Duration::from_secs(self.cache_ttl_secs),
            webhooks: self.webhooks,
            subscription_count_events: self.subscription_count_events,
            rate_limits: self.rate_limits,
            jwt: self.jwt,
            policies: self.policies,
            signin_timeout: (self.signin_timeout_secs > 0)
                .then(|| Duration::from_secs(self.signin_timeout_secs)),
        }
    }
}

impl FileServer {
    fn into_server(self) -> ServerConfig {
        ServerConfig {
            host: self.host,
            port: self.port,
            shards: self.shards,
            driver: self.driver,
            max_connections: self.max_connections,
            activity_timeout: Duration::from_secs(self.activity_timeout_secs),
            pong_timeout: Duration::from_secs(self.pong_timeout_secs),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            max_request_head_bytes: self.max_request_head_bytes,
            max_request_headers: self.max_request_headers,
            max_http_body_bytes: self.max_http_body_bytes,
            send_buffer_bytes: self.send_buffer_bytes,
            mesh_queue_capacity: self.mesh_queue_capacity,
            api_timestamp_window: Duration::from_secs(self.api_timestamp_window_secs),
            data_dir: self.data_dir,
            audit_flush_interval: Duration::from_millis(self.audit_flush_interval_ms),
            audit_retention: Duration::from_secs(self.audit_retention_days.saturating_mul(86_400)),
            audit_max_records: self.audit_max_records,
            audit_cache_bytes: self.audit_cache_mb.saturating_mul(1 << 20),
            admin_token: self.admin_token,
            admin_ui_dir: self.admin_ui_dir,
            cluster: None,
        }
    }
}

impl std::fmt::Debug for AppConfig {
    /// Everything but the secret, so configs can be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("max_connections", &self.max_connections)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("client_events", &self.client_events)
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl AppConfig {
    /// An app with `id`, `key`, `secret` and every limit at its default.
    pub fn with_credentials(id: &str, key: &str, secret: &str) -> Self {
        FileApp {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            ..FileApp::default()
        }
        .into_app()
    }

    /// Whether a connection with this `Origin` header may connect.
    ///
    /// A missing `Origin` is allowed: only browsers send it, and the allow-list exists to
    /// stop other web pages from using the app's key from a visitor's browser. Servers and
    /// mobile apps are not constrained by it.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.to_ascii_lowercase();
        let host = origin
            .split_once("://")
            .map_or(origin.as_str(), |(_, rest)| rest)
            .split(':')
            .next()
            .unwrap_or_default();
        self.allowed_origins.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            if allowed == "*" {
                true
            } else if let Some(domain) = allowed.strip_prefix("*.") {
                host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host[..host.len() - domain.len()].ends_with('.')
            } else {
                allowed.trim_end_matches('/') == origin.trim_end_matches('/')
            }
        })
    }
}

impl Config {
    /// Loads `path` (or the embedded demo), applies environment overrides read through
    /// `env`, then validates.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        match path {
            None => Self::finish(FileConfig::default(), true, env),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(&text, &path.display().to_string(), env)
            }
        }
    }

    /// Parses TOML text, applies environment overrides and validates.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::parse(text, "config", env)
    }

    fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.message().to_owned() + &span_hint(text, e.span()),
        })?;
        Self::finish(file, false, env)
    }

    fn finish(
        file: FileConfig,
        demo: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let cluster = file.cluster;
        let mut config = Config {
            server: file.server.into_server(),
            apps: file.apps.into_iter().map(FileApp::into_app).collect(),
            admins: file
                .admins
                .into_iter()
                .map(|a| crate::core::admin::AdminAccount {
                    name: a.name,
                    password_hash: a.password_hash,
                })
                .collect(),
            admin_jwt: file.admin_jwt,
        };
        config.server.cluster = cluster_from(cluster, env)?;
        let env_app = apply_env(&mut config, env)?;
        load_jwt_keys(&mut config)?;
        if demo && !env_app && config.apps.is_empty() {
            config
                .apps
                .push(AppConfig::with_credentials(DEMO_ID, DEMO_KEY, DEMO_SECRET));
        }
        if config.server.shards == 0 {
            config.server.shards = std::thread::available_parallelism().map_or(1, usize::from);
        }
        config.validate()?;
        Ok(config)
    }

    /// The embedded default: one demo app on 127.0.0.1:8080, data under `./data`.
    pub fn demo() -> Config {
        let mut config = Config {
            server: FileServer::default().into_server(),
            apps: vec![AppConfig::with_credentials(DEMO_ID, DEMO_KEY, DEMO_SECRET)],
            admins: Vec::new(),
            admin_jwt: None,
        };
        config.server.shards = std::thread::available_parallelism().map_or(1, usize::from);
        config
    }

    /// Whether `app` is the demo app with its published credentials.
    pub fn is_demo_app(&self, app: &AppConfig) -> bool {
        app.key == DEMO_KEY && app.secret == DEMO_SECRET
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        for (field, value) in [
            ("server.max_connections", s.max_connections),
            ("server.max_request_head_bytes", s.max_request_head_bytes),
            ("server.max_request_headers", s.max_request_headers),
            ("server.max_http_body_bytes", s.max_http_body_bytes),
            ("server.send_buffer_bytes", s.send_buffer_bytes),
            ("server.mesh_queue_capacity", s.mesh_queue_capacity),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        for (field, value) in [
            ("server.activity_timeout_secs", s.activity_timeout),
            ("server.pong_timeout_secs", s.pong_timeout),
            ("server.handshake_timeout_secs", s.handshake_timeout),
            ("server.shutdown_timeout_secs", s.shutdown_timeout),
            ("server.api_timestamp_window_secs", s.api_timestamp_window),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be greater than 0"));
            }
            // Timers add these to `Instant`s; absurd values would overflow.
            if value > MAX_DURATION {
                return Err(invalid(field, "must be at most 86400 (one day)"));
            }
        }
        if s.audit_flush_interval.is_zero() || s.audit_flush_interval > Duration::from_secs(10) {
            return Err(invalid(
                "server.audit_flush_interval_ms",
                "must be between 1 and 10000",
            ));
        }
        if s.audit_retention.is_zero() || s.audit_retention > Duration::from_secs(3650 * 86_400) {
            return Err(invalid(
                "server.audit_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if s.audit_max_records == 0 {
            return Err(invalid(
                "server.audit_max_records",
                "must be greater than 0",
            ));
        }
        if !(1 << 20..=64 << 30).contains(&s.audit_cache_bytes) {
            return Err(invalid(
                "server.audit_cache_mb",
                "must be between 1 and 65536",
            ));
        }
        if s.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "server.admin_token",
                "must be at least 16 characters",
            ));
        }
        if s.shards > 256 {
            return Err(invalid("server.shards", "at most 256"));
        }
        if self.apps.is_empty() {
            return Err(invalid("apps", "at least one app is required"));
        }
        if let Some(jwt) = &self.admin_jwt {
            jwt_key(jwt).map_err(|message| invalid("admin_jwt", message))?;
        }
        for (i, admin) in self.admins.iter().enumerate() {
            if admin.name.is_empty() || admin.name.len() > 64 {
                return Err(invalid(format!("admins[{i}].name"), "1 to 64 characters"));
            }
            if self.admins[..i].iter().any(|a| a.name == admin.name) {
                return Err(invalid(format!("admins[{i}].name"), "names must be unique"));
            }
            if !crate::core::admin::is_password_hash(&admin.password_hash) {
                return Err(invalid(
                    format!("admins[{i}].password_hash"),
                    "must be an argon2 PHC string (make one with `ringcast hash-password`)",
                ));
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            let field = |name: &str| format!("apps[{i}].{name}");
            for (name, value) in [("id", &app.id), ("key", &app.key)] {
                if value.is_empty()
                    || value.len() > 64
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                {
                    return Err(invalid(
                        field(name),
                        "must be 1 to 64 characters of [A-Za-z0-9_.-]",
                    ));
                }
            }
            if app.secret.is_empty() {
                return Err(invalid(field("secret"), "must not be empty"));
            }
            if let Some(j) = self.apps[..i].iter().position(|other| other.id == app.id) {
                return Err(invalid(
                    field("id"),
                    format!("duplicate id (also used by apps[{j}])"),
                ));
            }
            if let Some(j) = self.apps[..i].iter().position(|other| other.key == app.key) {
                return Err(invalid(
                    field("key"),
                    format!("duplicate key (also used by apps[{j}])"),
                ));
            }
            for (name, value) in [
                ("max_message_bytes", app.max_message_bytes),
                (
                    "client_events_per_second",
                    app.client_events_per_second as usize,
                ),
                ("max_presence_members", app.max_presence_members),
                ("max_user_info_bytes", app.max_user_info_bytes),
                ("max_user_id_chars", app.max_user_id_chars),
                ("max_channel_name_chars", app.max_channel_name_chars),
                ("max_event_name_chars", app.max_event_name_chars),
                ("max_channels_per_publish", app.max_channels_per_publish),
                ("max_batch_events", app.max_batch_events),
                (
                    "max_subscriptions_per_connection",
                    app.max_subscriptions_per_connection,
                ),
            ] {
                if value == 0 {
                    return Err(invalid(field(name), "must be greater than 0"));
                }
            }
            for (w, hook) in app.webhooks.iter().enumerate() {
                let url_ok = ["http://", "https://"].iter().any(|scheme| {
                    hook.url
                        .strip_prefix(scheme)
                        .is_some_and(|rest| !rest.is_empty())
                });
                if !url_ok {
                    return Err(invalid(
                        field(&format!("webhooks[{w}].url")),
                        format!("{:?} is not an http:// or https:// URL", hook.url),
                    ));
                }
            }
            crate::core::policy::PolicySet::compile(&app.policies)
                .map_err(|e| invalid(field("policies"), e.to_string()))?;
            if let Some(jwt) = &app.jwt {
                jwt_key(jwt).map_err(|message| invalid(field("jwt"), message))?;
                if jwt.leeway_secs > MAX_DURATION.as_secs() {
                    return Err(invalid(field("jwt.leeway_secs"), "must be at most 86400"));
                }
            }
            if let Some(limits) = &app.rate_limits {
                for (name, value) in [
                    (
                        "connections_per_minute_per_ip",
                        limits.connections_per_minute_per_ip as usize,
                    ),
                    (
                        "client_events_per_minute_per_user",
                        limits.client_events_per_minute_per_user as usize,
                    ),
                    (
                        "subscriptions_per_connection",
                        limits.subscriptions_per_connection,
                    ),
                    (
                        "api_requests_per_second",
                        limits.api_requests_per_second as usize,
                    ),
                ] {
                    if value == 0 {
                        return Err(invalid(
                            field(&format!("rate_limits.{name}")),
                            "must be greater than 0",
                        ));
                    }
                }
            }
            if app.cache_ttl.is_zero() || app.cache_ttl > MAX_DURATION {
                return Err(invalid(
                    field("cache_ttl_secs"),
                    "must be between 1 and 86400",
                ));
            }
            if app.signin_timeout.is_some_and(|t| t > MAX_DURATION) {
                return Err(invalid(
                    field("signin_timeout_secs"),
                    "must be at most 86400 (one day)",
                ));
            }
            if app.max_message_bytes > s.max_http_body_bytes {
                return Err(invalid(
                    field("max_message_bytes"),
                    "must not exceed server.max_http_body_bytes",
                ));
            }
            for origin in &app.allowed_origins {
                if !origin_is_well_formed(origin) {
                    return Err(invalid(
                        field("allowed_origins"),
                        format!(
                            "{origin:?} is not \"*\", \"*.domain\" or \"scheme://host[:port]\""
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads `public_key_file`s into `public_key`.
fn load_jwt_keys(config: &mut Config) -> Result<(), ConfigError> {
    if let Some(jwt) = &mut config.admin_jwt
        && let Some(path) = &jwt.public_key_file
    {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                "admin_jwt.public_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        jwt.public_key = Some(pem);
    }
    for (i, app) in config.apps.iter_mut().enumerate() {
        let Some(jwt) = &mut app.jwt else { continue };
        if let Some(path) = &jwt.public_key_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("apps[{i}].jwt.public_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            jwt.public_key = Some(pem);
        }
    }
    Ok(())
}

/// The verifying key an app's JWT settings describe, or why there is none.
pub fn jwt_key(jwt: &JwtConfig) -> Result<crate::core::auth::jwt::VerifyingKey, String> {
    use crate::core::auth::jwt::VerifyingKey;
    match jwt.algorithm {
        JwtAlgorithm::Hs256 => match jwt.secret.as_deref() {
            Some(secret) if secret.len() >= 32 => Ok(VerifyingKey::hs256(secret.as_bytes())),
            Some(_) => Err("HS256 secret must be at least 32 bytes".into()),
            None => Err("HS256 needs a secret".into()),
        },
        JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 => {
            let pem = jwt
                .public_key
                .as_deref()
                .ok_or("RS256/ES256 need public_key or public_key_file")?;
            let key = VerifyingKey::from_public_pem(pem).map_err(|e| e.to_string())?;
            let expected = if jwt.algorithm == JwtAlgorithm::Rs256 {
                "RS256"
            } else {
                "ES256"
            };
            if key.algorithm().name() != expected {
                return Err(format!(
                    "the public key is a {} key, not {expected}",
                    key.algorithm().name()
                ));
            }
            Ok(key)
        }
    }
}

fn origin_is_well_formed(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    };
    if let Some(domain) = origin.strip_prefix("*.") {
        return host_ok(domain);
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let (host, port) = rest
        .trim_end_matches('/')
        .split_once(':')
        .unwrap_or((rest.trim_end_matches('/'), ""));
    !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        && host_ok(host)
        && (port.is_empty() || port.parse::<u16>().is_ok())
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!(" (line {line})")
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, format!("expected {what}, got {value:?}")))
}

/// The `[cluster]` table with its environment overrides: `RINGCAST_REDIS_URL`, or Reverb's
/// `REVERB_SCALING_ENABLED=true` with Laravel's `REDIS_URL` or `REDIS_HOST` / `REDIS_PORT` /
/// `REDIS_USERNAME` / `REDIS_PASSWORD` / `REDIS_DB`; `REVERB_SCALING_CHANNEL` names the prefix.
fn cluster_from(
    file: FileCluster,
    raw_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let env = |name: &str| raw_env(name).filter(|v| !v.trim().is_empty());
    let mut url = file.redis_url.map(|u| ("cluster.redis_url", u));
    let mut prefix = file.prefix;
    let scaling = env("REVERB_SCALING_ENABLED")
        .is_some_and(|v| matches!(v.trim(), "true" | "1" | "on" | "yes"));
    if scaling {
        if let Some(u) = env("REDIS_URL") {
            url = Some(("REDIS_URL", u));
        } else {
            let host = env("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port = env("REDIS_PORT").unwrap_or_else(|| "6379".into());
            let auth = match (env("REDIS_USERNAME"), env("REDIS_PASSWORD")) {
                (user, Some(password)) => format!("{}:{password}@", user.unwrap_or_default()),
                _ => String::new(),
            };
            let db = env("REDIS_DB").unwrap_or_else(|| "0".into());
            url = Some((
                "REDIS_HOST",
                format!(
                    "redis://{auth}{}:{}/{}",
                    host.trim(),
                    port.trim(),
                    db.trim()
                ),
            ));
        }
        if let Some(channel) = env("REVERB_SCALING_CHANNEL") {
            prefix = channel.trim().to_owned();
        }
    }
    if let Some(u) = env("RINGCAST_REDIS_URL") {
        url = Some(("RINGCAST_REDIS_URL", u));
    }
    let Some((field, url)) = url else {
        return Ok(None);
    };
    let redis = RedisTarget::parse(&url).map_err(|message| invalid(field, message))?;
    if prefix.is_empty()
        || prefix.len() > 64
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid(
            "cluster.prefix",
            "must be 1 to 64 characters of [A-Za-z0-9_.-]",
        ));
    }
    if !(1..=3600).contains(&file.node_timeout_secs) {
        return Err(invalid(
            "cluster.node_timeout_secs",
            "must be between 1 and 3600",
        ));
    }
    Ok(Some(ClusterConfig {
        redis,
        prefix,
        node_timeout: Duration::from_secs(file.node_timeout_secs),
    }))
}

/// Applies environment overrides; returns whether they defined the app credentials.
fn apply_env(
    config: &mut Config,
    raw_env: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, ConfigError> {
    // Laravel's `.env` templates list variables with empty values: those mean "not set".
    let env = |name: &str| raw_env(name).filter(|v| !v.trim().is_empty());
    let s = &mut config.server;
    for name in ["REVERB_SERVER_HOST", "RINGCAST_HOST"] {
        if let Some(v) = env(name) {
            s.host = parse_env(name, &v, "an IP address")?;
        }
    }
    for name in ["REVERB_SERVER_PORT", "RINGCAST_PORT"] {
        if let Some(v) = env(name) {
            s.port = parse_env(name, &v, "a port number")?;
        }
    }
    if let Some(v) = env("RINGCAST_SHARDS") {
        s.shards = parse_env("RINGCAST_SHARDS", &v, "a number of shards")?;
    }
    if let Some(v) = env("RINGCAST_DRIVER") {
        s.driver = match v.trim() {
            "io_uring" => Driver::IoUring,
            "epoll" => Driver::Epoll,
            _ => {
                return Err(invalid(
                    "RINGCAST_DRIVER",
                    format!("expected \"io_uring\" or \"epoll\", got {v:?}"),
                ));
            }
        };
    }
    if let Some(v) = env("RINGCAST_DATA_DIR") {
        s.data_dir = PathBuf::from(v);
    }
    if let Some(v) = env("REVERB_APP_ACTIVITY_TIMEOUT") {
        let secs: u64 = parse_env("REVERB_APP_ACTIVITY_TIMEOUT", &v, "seconds")?;
        s.activity_timeout = Duration::from_secs(secs);
    }

    let credentials = ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"].map(|n| (n, env(n)));
    let given = credentials.iter().filter(|(_, v)| v.is_some()).count();
    let mut defined = false;
    if given > 0 {
        if let Some((missing, _)) = credentials.iter().find(|(_, v)| v.is_none()) {
            return Err(invalid(
                *missing,
                "REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET must be set together",
            ));
        }
        let [id, key, secret] = credentials.map(|(_, v)| v.unwrap_or_default());
        match config.apps.first_mut() {
            Some(app) => {
                app.id = id;
                app.key = key;
                app.secret = secret;
            }
            None => config
                .apps
                .push(AppConfig::with_credentials(&id, &key, &secret)),
        }
        defined = true;
    }
    let Some(app) = config.apps.first_mut() else {
        return Ok(defined);
    };
    if let Some(v) = env("REVERB_ALLOWED_ORIGINS") {
        app.allowed_origins = v
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(v) = env("REVERB_APP_MAX_MESSAGE_SIZE") {
        app.max_message_bytes = parse_env("REVERB_APP_MAX_MESSAGE_SIZE", &v, "a size in bytes")?;
    }
    if let Some(v) = env("REVERB_APP_MAX_CONNECTIONS") {
        let n: u64 = parse_env("REVERB_APP_MAX_CONNECTIONS", &v, "a number of connections")?;
        app.max_connections = (n > 0).then_some(n);
    }
    if let Some(v) = env("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM") {
        app.client_events = match v.trim() {
            "all" | "members" => ClientEvents::Enabled,
            "none" => ClientEvents::Disabled,
            _ => {
                return Err(invalid(
                    "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
                    format!("expected \"all\", \"members\" or \"none\", got {v:?}"),
                ));
            }
        };
    }
    Ok(defined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn with_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text, &no_env)
            .unwrap_err()
            .to_string()
    }

    const ONE_APP: &str = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";

    #[test]
    fn the_cluster_is_off_by_default_and_configured_by_url() {
        let single = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert_eq!(single.server.cluster, None);
        let text = format!(
            "[cluster]\nredis_url = \"redis://:pw@10.0.0.5:6380/2\"\nnode_timeout_secs = 12\n{ONE_APP}"
        );
        let cluster = Config::from_toml_str(&text, &no_env)
            .unwrap()
            .server
            .cluster
            .unwrap();
        assert_eq!(cluster.redis.host, "10.0.0.5");
        assert_eq!(cluster.redis.port, 6380);
        assert_eq!(cluster.redis.db, 2);
        assert_eq!(cluster.redis.username, None);
        assert_eq!(cluster.redis.password.as_deref(), Some("pw"));
        assert_eq!(cluster.prefix, "ringcast");
        assert_eq!(cluster.heartbeat_interval(), Duration::from_secs(2));
        assert_eq!(cluster.dead_after(), Duration::from_secs(10));
        assert!(!format!("{:?}", cluster.redis).contains("pw"));
    }

    #[test]
    fn cluster_settings_are_validated_with_the_field_named() {
        let e = err(&format!("[cluster]\nredis_url = \"http://x\"\n{ONE_APP}"));
        assert!(e.contains("cluster.redis_url"), "{e}");
        let e = err(&format!("[cluster]\nredis_url = \"rediss://x\"\n{ONE_APP}"));
        assert!(e.contains("TLS"), "{e}");
        let e = err(&format!(
            "[cluster]\nredis_url = \"redis://x\"\nprefix = \"a b\"\n{ONE_APP}"
        ));
        assert!(e.contains("cluster.prefix"), "{e}");
        let e = err(&format!(
            "[cluster]\nredis_url = \"redis://x\"\nnode_timeout_secs = 0\n{ONE_APP}"
        ));
        assert!(e.contains("cluster.node_timeout_secs"), "{e}");
    }

    #[test]
    fn reverb_scaling_variables_turn_the_cluster_on() {
        let env = with_env(&[
            ("REVERB_SCALING_ENABLED", "true"),
            ("REDIS_HOST", "redis.internal"),
            ("REDIS_PASSWORD", "secret"),
            ("REVERB_SCALING_CHANNEL", "reverb"),
        ]);
        let cluster = Config::from_toml_str(ONE_APP, &env)
            .unwrap()
            .server
            .cluster
            .unwrap();
        assert_eq!(cluster.redis.host, "redis.internal");
        assert_eq!(cluster.redis.port, 6379);
        assert_eq!(cluster.redis.password.as_deref(), Some("secret"));
        assert_eq!(cluster.prefix, "reverb");
        let env = with_env(&[("RINGCAST_REDIS_URL", "redis://127.0.0.2:7000")]);
        let cluster = Config::from_toml_str(ONE_APP, &env)
            .unwrap()
            .server
            .cluster
            .unwrap();
        assert_eq!(
            (cluster.redis.host.as_str(), cluster.redis.port),
            ("127.0.0.2", 7000)
        );
        let off = with_env(&[("REVERB_SCALING_ENABLED", "false"), ("REDIS_HOST", "x")]);
        assert_eq!(
            Config::from_toml_str(ONE_APP, &off).unwrap().server.cluster,
            None
        );
    }

    #[test]
    fn no_file_gives_the_demo_app_with_defaults() {
        let config = Config::load(None, &no_env).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert!(config.is_demo_app(&config.apps[0]));
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.server.host, IpAddr::from([127, 0, 0, 1]));
        assert!(config.server.shards >= 1);
        let app = &config.apps[0];
        assert_eq!(
            (
                app.max_message_bytes,
                app.max_presence_members,
                app.client_events_per_second
            ),
            (10_240, 100, 10)
        );
    }

    #[test]
    fn the_full_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/full.toml");
        let config = Config::load(Some(&path), &no_env).unwrap();
        assert_eq!(config.apps.len(), 2);
        assert_eq!(config.server.driver, Driver::Epoll);
        assert_eq!(config.apps[1].client_events, ClientEvents::MembersOnly);
        assert_eq!(config.apps[1].max_connections, Some(500));
        assert_eq!(config.apps[0].max_connections, None);
    }

    #[test]
    fn unknown_fields_and_bad_types_are_named() {
        assert!(err("[server]\nprot = 1\n").contains("prot"));
        assert!(err(&format!("{ONE_APP}client_events = \"sometimes\"\n")).contains("sometimes"));
        assert!(err("[server]\nport = \"x\"\n").contains("line 2"));
    }

    #[test]
    fn a_file_without_apps_is_refused() {
        assert_eq!(
            err("[server]\nport = 1\n"),
            "apps: at least one app is required"
        );
    }

    #[test]
    fn validation_messages_name_the_field() {
        let dup = format!("{ONE_APP}{}", ONE_APP.replace("id = \"1\"", "id = \"2\""));
        assert_eq!(
            err(&dup),
            "apps[1].key: duplicate key (also used by apps[0])"
        );
        assert!(
            err(&ONE_APP.replace("secret = \"s\"", "secret = \"\"")).starts_with("apps[0].secret")
        );
        assert!(err(&ONE_APP.replace("key = \"k\"", "key = \"a b\"")).starts_with("apps[0].key"));
        assert!(
            err(&format!("{ONE_APP}max_batch_events = 0\n"))
                .starts_with("apps[0].max_batch_events")
        );
        assert!(
            err(&format!("[server]\npong_timeout_secs = 0\n{ONE_APP}"))
                .starts_with("server.pong_timeout_secs")
        );
        assert!(
            err(&format!("{ONE_APP}allowed_origins = [\"example.com\"]\n"))
                .starts_with("apps[0].allowed_origins")
        );
        assert!(
            err(&format!("[server]\nmax_http_body_bytes = 100\n{ONE_APP}"))
                .starts_with("apps[0].max_message_bytes")
        );
    }

    #[test]
    fn reverb_variables_override_the_file_and_ringcast_ones_win() {
        let env = with_env(&[
            ("REVERB_APP_ID", "9"),
            ("REVERB_APP_KEY", "rk"),
            ("REVERB_APP_SECRET", "rs"),
            ("REVERB_SERVER_PORT", "6001"),
            ("RINGCAST_PORT", "7001"),
            ("REVERB_SERVER_HOST", "0.0.0.0"),
            ("REVERB_ALLOWED_ORIGINS", "https://a.test, *.b.test"),
            ("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "none"),
        ]);
        let config = Config::from_toml_str(ONE_APP, &env).unwrap();
        assert_eq!(
            (config.apps[0].id.as_str(), config.apps[0].key.as_str()),
            ("9", "rk")
        );
        assert_eq!(config.server.port, 7001);
        assert_eq!(config.server.host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            config.apps[0].allowed_origins,
            ["https://a.test", "*.b.test"]
        );
        assert_eq!(config.apps[0].client_events, ClientEvents::Disabled);
        let only_env = Config::load(None, &env).unwrap();
        assert_eq!(only_env.apps.len(), 1);
        assert!(!only_env.is_demo_app(&only_env.apps[0]));
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let env = with_env(&[("REVERB_SERVER_PORT", ""), ("REVERB_APP_ID", " ")]);
        let config = Config::from_toml_str(ONE_APP, &env).unwrap();
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.apps[0].id, "1");
    }

    #[test]
    fn durations_are_capped_at_one_day_and_secrets_are_not_debug_printed() {
        let at_cap = format!("[server]\nactivity_timeout_secs = 86400\n{ONE_APP}");
        assert!(Config::from_toml_str(&at_cap, &no_env).is_ok());
        let over = format!("[server]\nactivity_timeout_secs = 86401\n{ONE_APP}");
        assert!(err(&over).starts_with("server.activity_timeout_secs"));
        let config = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert!(!format!("{:?}", config.apps[0]).contains("\"s\""));
    }

    #[test]
    fn jwt_hs256_constructor_matches_a_minimal_toml_table() {
        let text = format!(
            "{ONE_APP}[apps.jwt]\nalgorithm = \"HS256\"\nsecret = \"{}\"\n",
            "s".repeat(32)
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        assert_eq!(config.apps[0].jwt, Some(JwtConfig::hs256(&"s".repeat(32))));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let e = Config::from_toml_str(ONE_APP, &with_env(&[("REVERB_SERVER_PORT", "80x")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "REVERB_SERVER_PORT: expected a port number, got \"80x\""
        );
        let e = Config::load(None, &with_env(&[("REVERB_APP_ID", "1")])).unwrap_err();
        assert!(e.to_string().starts_with("REVERB_APP_KEY:"), "{e}");
    }

    #[test]
    fn origin_allow_list_matches_exact_origins_and_subdomain_wildcards() {
        let mut app = AppConfig::with_credentials("1", "k", "s");
        app.allowed_origins = vec!["https://app.example.com".into(), "*.example.org".into()];
        assert!(app.origin_allowed(None));
        assert!(app.origin_allowed(Some("https://APP.example.com")));
        assert!(!app.origin_allowed(Some("http://app.example.com")));
        assert!(!app.origin_allowed(Some("https://app.example.com:8443")));
        assert!(app.origin_allowed(Some("https://a.example.org")));
        assert!(app.origin_allowed(Some("http://x.y.example.org:3000")));
        assert!(!app.origin_allowed(Some("https://example.org")));
        assert!(!app.origin_allowed(Some("https://badexample.org")));
        app.allowed_origins = vec!["*".into()];
        assert!(app.origin_allowed(Some("https://anything.test")));
    }
}
