//! The options core runs with, as plain data.
//!
//! The loader (the crate's `config` module) builds them from a TOML file and the environment
//! and validates them; core only reads them. A type that mirrors a table of the file
//! deserializes from that table itself, so each setting has one definition and one default.
//! Two settings are parsed further at load, and [`AppConfig`] is generic over their form:
//! the origin patterns (text in the file, [`AllowedOrigin`]s after load) and the JWT options
//! (a table naming a key, [`JwtConfig`] holding the parsed key after load).

mod cluster;
mod history;
mod inbox;
mod origin;
mod receipts;
mod redis_broadcast;
mod socketio;
mod typing;
pub(crate) mod units;
mod verification;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use self::cluster::{ClusterConfig, RedisTarget, RedisUrlError};
pub use self::history::{HistoryConfig, MAX_HISTORY_EVENTS};
pub use self::inbox::{ChannelPattern, InboxConfig, LegacyBroadcast, PatternError};
pub use self::origin::{AllowedOrigin, MalformedOrigin, RequestOrigin, origin_allowed};
pub use self::receipts::ReceiptsConfig;
pub use self::redis_broadcast::RedisBroadcast;
pub use self::socketio::SocketIoConfig;
pub use self::typing::TypingConfig;
pub use self::verification::{TokenVerification, VerifyMethod};
use crate::core::admin::AdminAccount;
use crate::core::auth::jwks::FetchSchedule;
use crate::core::auth::jwt::{Algorithm, ClaimNames, VerifyOptions, VerifyingKey};
use crate::core::policy::RuleConfig;
use crate::core::proxy::TrustedProxies;
use crate::core::webhook::WebhookKind;

/// Everything the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server-wide settings.
    pub server: ServerConfig,
    /// The apps (at least one).
    pub apps: Vec<AppConfig>,
    /// Who may sign in to the admin dashboard.
    pub admins: Vec<AdminAccount>,
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

/// Whether each shard's thread is pinned to a CPU of its own (`server.pin_cores`).
///
/// Written `true`, `false` or `"auto"` (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PinCores {
    /// Pin when there are exactly as many shards as CPUs the process may run on.
    #[default]
    Auto,
    /// Pin whatever the counts; with more shards than CPUs, the CPUs are taken in turn.
    On,
    /// Leave the threads to the kernel's scheduler.
    Off,
}

impl<'de> Deserialize<'de> for PinCores {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Setting;
        impl serde::de::Visitor<'_> for Setting {
            type Value = PinCores;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"true, false or "auto""#)
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<PinCores, E> {
                Ok(if on { PinCores::On } else { PinCores::Off })
            }
            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<PinCores, E> {
                match word {
                    "auto" => Ok(PinCores::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(word), &self)),
                }
            }
        }
        deserializer.deserialize_any(Setting)
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

/// The server's certificate and key (`[server.tls]`), PEM files read at start and again on
/// `SIGHUP`; relative paths are relative to the working directory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate, followed by its chain if any.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Server-wide settings (`[server]`, and `[cluster]` once parsed).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port (0: any free port, for tests).
    pub port: u16,
    /// Shards (threads); 0 in the file means one per core, so always >= 1 after loading.
    pub shards: usize,
    /// I/O driver.
    pub driver: Driver,
    /// Whether shard `i` runs on the `i`-th CPU the process may use.
    pub pin_cores: PinCores,
    /// Connections on the whole server; over it new ones get 4100.
    pub max_connections: usize,
    /// Quiet time after which the server pings a client.
    #[serde(rename = "activity_timeout_secs", with = "units::secs")]
    pub activity_timeout: Duration,
    /// Time a pinged client has to answer before 4201.
    #[serde(rename = "pong_timeout_secs", with = "units::secs")]
    pub pong_timeout: Duration,
    /// Time to send a complete request head.
    #[serde(rename = "handshake_timeout_secs", with = "units::secs")]
    pub handshake_timeout: Duration,
    /// Time given to clients to close on shutdown.
    #[serde(rename = "shutdown_timeout_secs", with = "units::secs")]
    pub shutdown_timeout: Duration,
    /// Largest request head.
    pub max_request_head_bytes: usize,
    /// Most request headers.
    pub max_request_headers: usize,
    /// Largest HTTP request body.
    pub max_http_body_bytes: usize,
    /// Largest WebSocket message (and frame) a client may send; over it the connection is
    /// closed with 1009. Below it, a client event whose data is over the app's
    /// `max_message_bytes` gets 4306 and the connection stays open.
    pub max_ws_message_bytes: usize,
    /// Per-connection output cap; a client over it is closed with 4100.
    pub send_buffer_bytes: usize,
    /// Capacity of each queue between shards.
    pub mesh_queue_capacity: usize,
    /// Allowed clock difference for signed API requests.
    #[serde(rename = "api_timestamp_window_secs", with = "units::secs")]
    pub api_timestamp_window: Duration,
    /// Where persistent data lives.
    pub data_dir: PathBuf,
    /// Audit log group-commit interval: after a crash, every older record is on disk.
    #[serde(rename = "audit_flush_interval_ms", with = "units::millis")]
    pub audit_flush_interval: Duration,
    /// Audit records older than this are deleted.
    #[serde(rename = "audit_retention_days", with = "units::days")]
    pub audit_retention: Duration,
    /// At most this many audit records are kept.
    pub audit_max_records: u64,
    /// Memory for the audit store's page cache, in bytes.
    #[serde(rename = "audit_cache_mb", with = "units::mebibytes")]
    pub audit_cache_bytes: u64,
    /// Bearer token for the admin API (`/admin/api/...`); `None` disables it.
    pub admin_token: Option<String>,
    /// A directory to read the built admin dashboard (`index.html`, the wasm module and its
    /// glue) from at start, instead of the one built into the binary; `None`: the built-in
    /// one, else `target/admin-ui/dist` when it exists.
    pub admin_ui_dir: Option<PathBuf>,
    /// TLS on the port (`[server.tls]`): `wss://` and `https://` instead of `ws://` and
    /// `http://`. `None`: plain.
    pub tls: Option<TlsFiles>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` (and PROXY protocol header) name the
    /// client; every other peer is the client itself. Empty by default.
    pub trusted_proxies: TrustedProxies,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy's
    /// `send-proxy-v2` and AWS NLB send it) from a trusted proxy; others are refused.
    pub proxy_protocol: bool,
    /// Serve the demo app's published credentials on a non-loopback `host` (refused at load
    /// otherwise: anyone who read the README could connect and publish).
    pub allow_demo_credentials: bool,
    /// Scale-out through Redis; `None`: a single node. Its own table in the file.
    #[serde(skip)]
    pub cluster: Option<ClusterConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            shards: 0,
            driver: Driver::IoUring,
            pin_cores: PinCores::Auto,
            max_connections: 100_000,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            max_request_head_bytes: 8192,
            max_request_headers: 64,
            max_http_body_bytes: 1_048_576,
            max_ws_message_bytes: 65_536,
            send_buffer_bytes: 1_048_576,
            mesh_queue_capacity: 16_384,
            api_timestamp_window: Duration::from_secs(600),
            data_dir: PathBuf::from("./data"),
            audit_flush_interval: Duration::from_millis(100),
            audit_retention: Duration::from_secs(30 * 86_400),
            audit_max_records: 10_000_000,
            audit_cache_bytes: 16 << 20,
            admin_token: None,
            admin_ui_dir: None,
            tls: None,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            allow_demo_credentials: false,
            cluster: None,
        }
    }
}

/// One app (`[[apps]]`).
///
/// `Origins` and `Jwt` are the forms of the two settings parsed at load. The defaults are
/// the parsed forms the program uses; the loader reads an `[[apps]]` table as
/// `AppConfig<Vec<String>, _>`, with the patterns as written and a JWT table that names its
/// key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    bound(
        deserialize = "Origins: Deserialize<'de>, Jwt: Deserialize<'de>, AppConfig<Origins, Jwt>: Default"
    )
)]
pub struct AppConfig<Origins = Vec<AllowedOrigin>, Jwt = JwtConfig> {
    /// App id (HTTP API path).
    pub id: String,
    /// Public key (WebSocket path, signatures).
    pub key: String,
    /// Secret for HMAC signatures.
    pub secret: String,
    /// Whether the app accepts connections.
    pub enabled: bool,
    /// Connection quota (`None`, written `0`: unlimited); over it: 4004.
    #[serde(with = "units::zero_is_unlimited")]
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
    pub allowed_origins: Origins,
    /// Connections that have not signed in (`pusher:signin`) within this time are closed
    /// with 4009; `None` (the default, written `0`) lets anonymous connections stay.
    #[serde(rename = "signin_timeout_secs", with = "units::secs_or_off")]
    pub signin_timeout: Option<Duration>,
    /// How long a cache channel remembers its last event.
    #[serde(rename = "cache_ttl_secs", with = "units::secs")]
    pub cache_ttl: Duration,
    /// Where to send webhooks, and which.
    pub webhooks: Vec<WebhookConfig>,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels
    /// whenever their count changes (Pusher's opt-in "subscription counting").
    pub subscription_count_events: bool,
    /// Rate limits; `None` (no `[apps.rate_limits]` table) means none beyond
    /// `client_events_per_second`.
    pub rate_limits: Option<RateLimits>,
    /// JWT connection authentication; `None` (no `[apps.jwt]` table) means none.
    pub jwt: Option<Jwt>,
    /// Channel policies, evaluated in addition to channel signatures.
    pub policies: Vec<RuleConfig>,
    /// Connections identified by the app's backend; `None` (no
    /// `[apps.token_verification]` table) means none.
    pub token_verification: Option<TokenVerification>,
    /// Record every published event in the audit log: name, channel, size and sender,
    /// never the data.
    pub audit_publishes: bool,
    /// Socket.IO clients; `None` (no `[apps.socketio]` table) means Pusher clients only.
    pub socketio: Option<SocketIoConfig>,
    /// Events from Laravel's Redis broadcaster; `None` (no `[apps.redis_broadcast]` table)
    /// means none.
    pub redis_broadcast: Option<RedisBroadcast>,
    /// Channel history and recovery; `None` (no `[apps.history]` table) keeps nothing.
    pub history: Option<HistoryConfig>,
    /// Notifications kept per user until read; `None` (no `[apps.inbox]` table) means none.
    pub inbox: Option<InboxConfig>,
    /// `POST /broadcast-message`; `None` (no `[apps.legacy_broadcast]` table) means the
    /// route answers 404 for the app.
    pub legacy_broadcast: Option<LegacyBroadcast>,
    /// How long a connection's writer, woken by a first frame, waits for more before it
    /// writes them together (Centrifugo's `write_delay`); zero writes at once. Frames that
    /// queue while a write is in flight are always gathered into the next one.
    #[serde(rename = "write_delay_ms", with = "units::millis")]
    pub write_delay: Duration,
    /// Typing state on presence channels; `None` (no `[apps.typing]` table) means typing
    /// events are relayed like any client event and nothing is kept.
    pub typing: Option<TypingConfig>,
    /// Delivery receipts; `None` (no `[apps.receipts]` table) means none are kept.
    pub receipts: Option<ReceiptsConfig>,
}

impl Default for AppConfig {
    /// Empty credentials, every origin allowed, and every limit at its default.
    fn default() -> Self {
        Self {
            id: String::new(),
            key: String::new(),
            secret: String::new(),
            enabled: true,
            max_connections: None,
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
            allowed_origins: vec![AllowedOrigin::any()],
            signin_timeout: None,
            cache_ttl: Duration::from_secs(1800),
            webhooks: Vec::new(),
            subscription_count_events: false,
            rate_limits: None,
            jwt: None,
            policies: Vec::new(),
            token_verification: None,
            audit_publishes: true,
            socketio: None,
            redis_broadcast: None,
            history: None,
            inbox: None,
            legacy_broadcast: None,
            write_delay: Duration::ZERO,
            typing: None,
            receipts: None,
        }
    }
}

impl AppConfig {
    /// An app with `id`, `key`, `secret` and every limit at its default.
    pub fn with_credentials(id: &str, key: &str, secret: &str) -> Self {
        Self {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            ..Self::default()
        }
    }

    /// Whether a connection with this `Origin` header may connect (see [`origin_allowed`]).
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        origin_allowed(&self.allowed_origins, origin)
    }
}

impl<Origins, Jwt> AppConfig<Origins, Jwt> {
    /// The same app with its origins and JWT options in another form: the loader's step from
    /// the file's form to the program's, and the one place that lists every field twice.
    pub(crate) fn with_origins_and_jwt<O, J>(
        self,
        allowed_origins: O,
        jwt: Option<J>,
    ) -> AppConfig<O, J> {
        let Self {
            id,
            key,
            secret,
            enabled,
            max_connections,
            max_message_bytes,
            client_events,
            client_events_per_second,
            max_presence_members,
            max_user_info_bytes,
            max_user_id_chars,
            max_channel_name_chars,
            max_event_name_chars,
            max_channels_per_publish,
            max_batch_events,
            max_subscriptions_per_connection,
            allowed_origins: _,
            signin_timeout,
            cache_ttl,
            webhooks,
            subscription_count_events,
            rate_limits,
            jwt: _,
            policies,
            token_verification,
            audit_publishes,
            socketio,
            redis_broadcast,
            history,
            inbox,
            legacy_broadcast,
            write_delay,
            typing,
            receipts,
        } = self;
        AppConfig {
            id,
            key,
            secret,
            enabled,
            max_connections,
            max_message_bytes,
            client_events,
            client_events_per_second,
            max_presence_members,
            max_user_info_bytes,
            max_user_id_chars,
            max_channel_name_chars,
            max_event_name_chars,
            max_channels_per_publish,
            max_batch_events,
            max_subscriptions_per_connection,
            allowed_origins,
            signin_timeout,
            cache_ttl,
            webhooks,
            subscription_count_events,
            rate_limits,
            jwt,
            policies,
            token_verification,
            audit_publishes,
            socketio,
            redis_broadcast,
            history,
            inbox,
            legacy_broadcast,
            write_delay,
            typing,
            receipts,
        }
    }
}

impl<Origins: std::fmt::Debug, Jwt> std::fmt::Debug for AppConfig<Origins, Jwt> {
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

/// Per-app rate limits (`[apps.rate_limits]`). The defaults come from a production deployment.
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

/// One webhook endpoint (`[[apps.webhooks]]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL receiving POSTed batches.
    pub url: String,
    /// The kinds sent there; empty means all.
    #[serde(default)]
    pub event_types: Vec<WebhookKind>,
    /// Only events of channels whose name matches (Soketi's `filter`); empty: all channels.
    #[serde(default)]
    pub filter: ChannelFilter,
    /// Extra request headers, e.g. a token the receiver checks (validated at load: no
    /// header Ringcast sets itself, no control characters).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebhookConfig {
    /// An endpoint at `url` for every event.
    pub fn to(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            event_types: Vec::new(),
            filter: ChannelFilter::default(),
            headers: BTreeMap::new(),
        }
    }

    /// Whether events of `kind` on `channel` go to this endpoint.
    pub fn wants(&self, kind: WebhookKind, channel: &str) -> bool {
        let by_default = self.event_types.is_empty() && !kind.is_opt_in();
        (by_default || self.event_types.contains(&kind)) && self.filter.matches(channel)
    }
}

/// Which channels' events an endpoint gets (`[apps.webhooks.filter]`, named as in Soketi).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFilter {
    /// The name starts with this (e.g. `"presence-"`).
    pub channel_name_starts_with: Option<String>,
    /// The name ends with this (e.g. `"-orders"`).
    pub channel_name_ends_with: Option<String>,
}

impl ChannelFilter {
    /// Whether `channel` passes every condition set.
    pub fn matches(&self, channel: &str) -> bool {
        self.channel_name_starts_with
            .as_deref()
            .is_none_or(|prefix| channel.starts_with(prefix))
            && self
                .channel_name_ends_with
                .as_deref()
                .is_none_or(|suffix| channel.ends_with(suffix))
    }
}

/// How tokens are checked (`[apps.jwt]`, `[admin_jwt]`), with the key already read and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfig {
    /// Refuse connections without a valid token (4009); when false a token is optional.
    pub required: bool,
    /// Where the keys tokens must be signed with come from; they fix the algorithm.
    pub keys: JwtKeys,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Allowed clock difference for `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Which claims carry the user id, tenant, actor type and roles.
    pub claims: ClaimNames,
    /// When not empty, a token's `azp` must be one of these (`authorized_parties`).
    pub authorized_parties: Vec<String>,
}

/// Where a JWT table's verifying keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtKeys {
    /// The one key the table writes (`secret`, `public_key` or `public_key_file`).
    Static(VerifyingKey),
    /// The keys of a JWKS document fetched from `jwks_url` (apps only), chosen by `kid`.
    Jwks(JwksSource),
}

/// Where and how often an app's JWKS document is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSource {
    /// `http://` or `https://` URL of the document.
    pub url: String,
    /// The algorithm its keys must be for (RS256 or ES256).
    pub algorithm: Algorithm,
    /// How often it is fetched.
    pub schedule: FetchSchedule,
}

impl JwksSource {
    /// `jwks_refresh_secs` and `jwks_min_refetch_secs` when a table does not set them.
    pub const DEFAULT_SCHEDULE: FetchSchedule = FetchSchedule {
        refresh: Duration::from_secs(300),
        min_refetch: Duration::from_secs(10),
    };

    /// The document at `url`, for `algorithm`, with the default schedule.
    pub fn new(url: impl Into<String>, algorithm: Algorithm) -> Self {
        Self {
            url: url.into(),
            algorithm,
            schedule: Self::DEFAULT_SCHEDULE,
        }
    }
}

impl JwtConfig {
    /// `leeway_secs` when a table does not set it.
    pub const DEFAULT_LEEWAY_SECS: u64 = 30;

    /// Tokens signed with keys from `keys`, optional, and every other setting at its default.
    pub fn with_keys(keys: JwtKeys) -> Self {
        Self {
            required: false,
            keys,
            issuer: None,
            audience: None,
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
            claims: ClaimNames::default(),
            authorized_parties: Vec::new(),
        }
    }

    /// Tokens signed with `key`, optional, and every other setting at its default.
    pub fn new(key: VerifyingKey) -> Self {
        Self::with_keys(JwtKeys::Static(key))
    }

    /// HS256 with `secret`, as an `[apps.jwt]` table with only `algorithm` and `secret` gives.
    pub fn hs256(secret: &str) -> Self {
        Self::new(VerifyingKey::hs256(secret.as_bytes()))
    }

    /// Where the JWKS document comes from, if the keys are fetched.
    pub fn jwks(&self) -> Option<&JwksSource> {
        match &self.keys {
            JwtKeys::Jwks(source) => Some(source),
            JwtKeys::Static(_) => None,
        }
    }

    /// What a token checked with `key` (the static key, or the one its `kid` chose) must
    /// satisfy; user ids longer than `max_user_id_chars` are refused.
    pub fn verify_options<'a>(
        &'a self,
        key: &'a VerifyingKey,
        max_user_id_chars: usize,
    ) -> VerifyOptions<'a> {
        VerifyOptions {
            key,
            issuer: self.issuer.as_deref(),
            audience: self.audience.as_deref(),
            leeway_secs: self.leeway_secs,
            claims: &self.claims,
            max_user_id_chars,
            authorized_parties: &self.authorized_parties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_allow_list_matches_exact_origins_and_subdomain_wildcards() {
        let mut app = AppConfig::with_credentials("1", "k", "s");
        app.allowed_origins = vec![
            "https://app.example.com".parse().unwrap(),
            "*.example.org".parse().unwrap(),
        ];
        assert!(app.origin_allowed(None));
        assert!(app.origin_allowed(Some("https://APP.example.com")));
        assert!(!app.origin_allowed(Some("http://app.example.com")));
        assert!(!app.origin_allowed(Some("https://app.example.com:8443")));
        assert!(app.origin_allowed(Some("https://a.example.org")));
        assert!(app.origin_allowed(Some("http://x.y.example.org:3000")));
        assert!(!app.origin_allowed(Some("https://example.org")));
        assert!(!app.origin_allowed(Some("https://badexample.org")));
        app.allowed_origins = vec!["*".parse().unwrap()];
        assert!(app.origin_allowed(Some("https://anything.test")));
    }

    #[test]
    fn pin_cores_is_written_as_a_flag_or_auto() {
        let read = |text: &str| toml::from_str::<ServerConfig>(text).map(|s| s.pin_cores);
        assert_eq!(read("").unwrap(), PinCores::Auto);
        assert_eq!(read(r#"pin_cores = "auto""#).unwrap(), PinCores::Auto);
        assert_eq!(read("pin_cores = true").unwrap(), PinCores::On);
        assert_eq!(read("pin_cores = false").unwrap(), PinCores::Off);
        for bad in [r#"pin_cores = "yes""#, "pin_cores = 1"] {
            let err = read(bad).unwrap_err().to_string();
            assert!(err.contains(r#"true, false or "auto""#), "{bad}: {err}");
        }
    }

    #[test]
    fn jwt_hs256_has_the_defaults_of_a_table_naming_only_the_secret() {
        let jwt = JwtConfig::hs256("a-jwt-secret-of-at-least-32-bytes!");
        assert!(!jwt.required);
        assert_eq!(jwt.leeway_secs, 30);
        assert_eq!(jwt.claims, ClaimNames::default());
        assert!(jwt.authorized_parties.is_empty() && jwt.jwks().is_none());
        assert_eq!((jwt.issuer, jwt.audience), (None, None));
    }
}
