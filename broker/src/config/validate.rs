//! The checks a config must pass, each refusal naming the field or variable at fault, and the
//! parsing of what the file only names: origin patterns, JWT keys and the Redis URL.
//!
//! The checks run in a fixed order (server, admins, then each app in turn) and the first
//! failure is reported, so a config with several faults always names the same one.

use std::time::Duration;

mod features;
mod history;
mod inbox;
mod tables;

use self::features::{check_receipts, check_typing};
use self::inbox::{check_inbox, check_legacy_broadcast};
use self::tables::{check_redis_broadcast, check_socketio, check_token_verification, is_http_url};
use super::file::{AppTable, ClusterTable, FileConfig, JwtTable};
use super::{ConfigError, invalid};
use crate::core::auth::jwks::FetchSchedule;
use crate::core::auth::jwt::{Algorithm, ClaimNames, KeyError, VerifyingKey};
use crate::core::options::{
    AllowedOrigin, ClusterConfig, Config, JwksSource, JwtConfig, JwtKeys, RedisTarget, ServerConfig,
};
use crate::core::wire::pusher::message::largest_client_event;

/// Longest accepted timeout or window.
const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// The longest `write_delay_ms`: Centrifugo suggests a few milliseconds; past this, batching buys
/// nothing a subscriber would not notice.
const MAX_WRITE_DELAY: Duration = Duration::from_millis(100);

/// Largest accepted `server.max_ws_message_bytes` (16 MiB): each connection may buffer one
/// message this large before it is parsed.
const MAX_WS_MESSAGE_BYTES: usize = 16 << 20;

/// What app ids, app keys and the cluster prefix must be: they stand unescaped in URL paths
/// (`/app/{key}`, `/apps/{id}`) and in Redis key names, whose parts `:` separates.
const NAME_RULE: &str = "must be 1 to 64 characters of [A-Za-z0-9_.-]";

fn is_name(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks `file` (with the environment applied and key files read) and builds the config.
pub(super) fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    let FileConfig {
        server,
        apps,
        admins,
        admin_jwt,
        cluster: _,
    } = file;
    check_server(&server)?;
    if apps.is_empty() {
        return Err(invalid("apps", "at least one app is required"));
    }
    if admin_jwt.as_ref().is_some_and(|t| t.jwks_url.is_some()) {
        return Err(invalid(
            "admin_jwt.jwks_url",
            "is not supported in [admin_jwt]: set public_key or public_key_file",
        ));
    }
    let admin_jwt = admin_jwt
        .as_ref()
        .map(jwt)
        .transpose()
        .map_err(|e| invalid("admin_jwt", e.to_string()))?;
    for (i, admin) in admins.iter().enumerate() {
        if admin.name.is_empty() || admin.name.len() > 64 {
            return Err(invalid(format!("admins[{i}].name"), "1 to 64 characters"));
        }
        if admins[..i].iter().any(|a| a.name == admin.name) {
            return Err(invalid(format!("admins[{i}].name"), "names must be unique"));
        }
        if !crate::core::admin::is_password_hash(&admin.password_hash) {
            return Err(invalid(
                format!("admins[{i}].password_hash"),
                "must be an argon2 PHC string (make one with `ringcast hash-password`)",
            ));
        }
    }
    let mut parsed = Vec::with_capacity(apps.len());
    for (i, app) in apps.iter().enumerate() {
        parsed.push(check_app(i, app, &apps[..i], &server)?);
    }
    let apps = apps
        .into_iter()
        .zip(parsed)
        .map(|(app, (origins, jwt))| app.with_origins_and_jwt(origins, jwt))
        .collect();
    Ok(Config {
        server,
        apps,
        admins,
        admin_jwt,
    })
}

fn check_server(s: &ServerConfig) -> Result<(), ConfigError> {
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
    if !(1024..=MAX_WS_MESSAGE_BYTES).contains(&s.max_ws_message_bytes) {
        return Err(invalid(
            "server.max_ws_message_bytes",
            format!("must be between 1024 and {MAX_WS_MESSAGE_BYTES}"),
        ));
    }
    if s.proxy_protocol && s.trusted_proxies.is_empty() {
        return Err(invalid(
            "server.proxy_protocol",
            "needs server.trusted_proxies: the addresses of the proxies that send the header",
        ));
    }
    if s.shards > 256 {
        return Err(invalid("server.shards", "at most 256"));
    }
    Ok(())
}

/// Headers every webhook request carries, set by Ringcast (the signature covers the body
/// these describe), so an endpoint's `headers` may not set them.
const OWN_WEBHOOK_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "x-pusher-key",
    "x-pusher-signature",
];

/// A custom webhook header: a token name (RFC 9110) that is not one of Ringcast's own, and a
/// value of visible characters, spaces and tabs.
fn check_webhook_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    if OWN_WEBHOOK_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name:?} is set by Ringcast itself"));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "the value of {name:?} has a control or non-ASCII character"
        ));
    }
    Ok(())
}

/// Checks app `i` against the apps before it and the server, and parses its origin patterns
/// and JWT key.
fn check_app(
    i: usize,
    app: &AppTable,
    earlier: &[AppTable],
    server: &ServerConfig,
) -> Result<(Vec<AllowedOrigin>, Option<JwtConfig>), ConfigError> {
    let field = |name: &str| format!("apps[{i}].{name}");
    for (name, value) in [("id", &app.id), ("key", &app.key)] {
        if !is_name(value) {
            return Err(invalid(field(name), NAME_RULE));
        }
    }
    if app.secret.is_empty() {
        return Err(invalid(field("secret"), "must not be empty"));
    }
    if let Some(j) = earlier.iter().position(|other| other.id == app.id) {
        return Err(invalid(
            field("id"),
            format!("duplicate id (also used by apps[{j}])"),
        ));
    }
    if let Some(j) = earlier.iter().position(|other| other.key == app.key) {
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
        if !is_http_url(&hook.url) {
            return Err(invalid(
                field(&format!("webhooks[{w}].url")),
                format!("{:?} is not an http:// or https:// URL", hook.url),
            ));
        }
        for (name, value) in &hook.headers {
            check_webhook_header(name, value)
                .map_err(|message| invalid(field(&format!("webhooks[{w}].headers")), message))?;
        }
    }
    if let Some(verification) = &app.token_verification {
        check_token_verification(verification).map_err(|(name, message)| {
            invalid(field(&format!("token_verification.{name}")), message)
        })?;
    }
    if let Some(socketio) = &app.socketio {
        check_socketio(socketio, earlier)
            .map_err(|(name, message)| invalid(field(&format!("socketio.{name}")), message))?;
    }
    if let Some(history) = &app.history {
        history::check_history(history)
            .map_err(|(name, message)| invalid(field(&format!("history.{name}")), message))?;
    }
    if let Some(typing) = &app.typing {
        check_typing(typing)
            .map_err(|(name, message)| invalid(field(&format!("typing.{name}")), message))?;
    }
    if let Some(receipts) = &app.receipts {
        check_receipts(receipts)
            .map_err(|(name, message)| invalid(field(&format!("receipts.{name}")), message))?;
    }
    if let Some(broadcast) = &app.redis_broadcast {
        check_redis_broadcast(broadcast).map_err(|(name, message)| {
            invalid(field(&format!("redis_broadcast.{name}")), message)
        })?;
    }
    if let Some(inbox) = &app.inbox {
        check_inbox(inbox)
            .map_err(|(name, message)| invalid(field(&format!("inbox.{name}")), message))?;
    }
    if let Some(legacy) = &app.legacy_broadcast {
        check_legacy_broadcast(legacy).map_err(|(name, message)| {
            invalid(field(&format!("legacy_broadcast.{name}")), message)
        })?;
    }
    crate::core::policy::PolicySet::compile(&app.policies)
        .map_err(|e| invalid(field("policies"), e.to_string()))?;
    let jwt = match &app.jwt {
        None => None,
        Some(table) => {
            let jwt = jwt(table).map_err(|e| invalid(field("jwt"), e.to_string()))?;
            if jwt.leeway_secs > MAX_DURATION.as_secs() {
                return Err(invalid(field("jwt.leeway_secs"), "must be at most 86400"));
            }
            Some(jwt)
        }
    };
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
    if app.write_delay > MAX_WRITE_DELAY {
        return Err(invalid(
            field("write_delay_ms"),
            format!(
                "must be at most {} (a longer wait is latency every subscriber pays)",
                MAX_WRITE_DELAY.as_millis()
            ),
        ));
    }
    if app.signin_timeout.is_some_and(|t| t > MAX_DURATION) {
        return Err(invalid(
            field("signin_timeout_secs"),
            "must be at most 86400 (one day)",
        ));
    }
    if app.max_message_bytes > server.max_http_body_bytes {
        return Err(invalid(
            field("max_message_bytes"),
            "must not exceed server.max_http_body_bytes",
        ));
    }
    let largest_client_event = largest_client_event(
        app.max_event_name_chars,
        app.max_channel_name_chars,
        app.max_message_bytes,
    );
    if largest_client_event > server.max_ws_message_bytes {
        return Err(invalid(
            field("max_message_bytes"),
            format!(
                "a client event with {} bytes of data and names at their limits is {largest_client_event} bytes, \
                 over server.max_ws_message_bytes ({}): raise that or lower this",
                app.max_message_bytes, server.max_ws_message_bytes
            ),
        ));
    }
    let origins = app
        .allowed_origins
        .iter()
        .map(|pattern| AllowedOrigin::parse(pattern))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(field("allowed_origins"), e.to_string()))?;
    Ok((origins, jwt))
}

/// Why a JWT table's key is unusable.
#[derive(Debug, thiserror::Error)]
enum JwtKeyError {
    /// An HS256 secret shorter than the hash output, which RFC 7518 requires.
    #[error("HS256 secret must be at least 32 bytes")]
    ShortSecret,
    /// HS256 without `secret`.
    #[error("HS256 needs a secret")]
    NoSecret,
    /// RS256 or ES256 without `public_key` or `public_key_file`.
    #[error("RS256/ES256 need public_key or public_key_file")]
    NoPublicKey,
    /// The PEM is not a usable public key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The public key is for another algorithm than `algorithm`.
    #[error("the public key is a {} key, not {}", .found.name(), .expected.name())]
    WrongAlgorithm {
        /// The key's algorithm.
        found: Algorithm,
        /// The table's `algorithm`.
        expected: Algorithm,
    },
    /// `jwks_url` is not an http(s) URL.
    #[error("jwks_url {0:?} is not an http:// or https:// URL")]
    JwksUrl(String),
    /// `jwks_url` with HS256, whose secret no JWKS publishes.
    #[error("jwks_url needs algorithm \"RS256\" or \"ES256\" (a JWKS publishes public keys)")]
    JwksAlgorithm,
    /// `jwks_url` beside a key of the table's own.
    #[error("jwks_url and {0} exclude each other: with jwks_url the keys come from the JWKS")]
    JwksAndKey(&'static str),
    /// A JWKS interval out of range.
    #[error("{0} must be between 1 and 86400")]
    JwksSecs(&'static str),
    /// A JWKS setting without `jwks_url`.
    #[error("{0} needs jwks_url")]
    NeedsJwksUrl(&'static str),
    /// An empty string among `authorized_parties`.
    #[error("authorized_parties must not contain an empty string")]
    EmptyAuthorizedParty,
}

/// The JWT options a table describes, with its key parsed.
fn jwt(table: &JwtTable) -> Result<JwtConfig, JwtKeyError> {
    let keys = match &table.jwks_url {
        Some(url) => JwtKeys::Jwks(jwks_source(table, url)?),
        None => {
            for (name, set) in [
                ("jwks_refresh_secs", table.jwks_refresh_secs.is_some()),
                (
                    "jwks_min_refetch_secs",
                    table.jwks_min_refetch_secs.is_some(),
                ),
            ] {
                if set {
                    return Err(JwtKeyError::NeedsJwksUrl(name));
                }
            }
            JwtKeys::Static(static_key(table)?)
        }
    };
    if table.authorized_parties.iter().any(String::is_empty) {
        return Err(JwtKeyError::EmptyAuthorizedParty);
    }
    let claims = ClaimNames::default();
    Ok(JwtConfig {
        required: table.required,
        keys,
        issuer: table.issuer.clone(),
        audience: table.audience.clone(),
        leeway_secs: table.leeway_secs.unwrap_or(JwtConfig::DEFAULT_LEEWAY_SECS),
        claims: ClaimNames {
            user_id: table.user_id_claim.clone().unwrap_or(claims.user_id),
            tenant: table.tenant_claim.clone().unwrap_or(claims.tenant),
            actor: table.actor_claim.clone().unwrap_or(claims.actor),
            roles: table.roles_claim.clone().unwrap_or(claims.roles),
        },
        authorized_parties: table.authorized_parties.clone(),
    })
}

/// The one key a table without `jwks_url` writes.
fn static_key(table: &JwtTable) -> Result<VerifyingKey, JwtKeyError> {
    match table.algorithm {
        Algorithm::Hs256 => match table.secret.as_deref() {
            Some(secret) if secret.len() >= 32 => Ok(VerifyingKey::hs256(secret.as_bytes())),
            Some(_) => Err(JwtKeyError::ShortSecret),
            None => Err(JwtKeyError::NoSecret),
        },
        expected @ (Algorithm::Rs256 | Algorithm::Es256) => {
            let pem = table
                .public_key
                .as_deref()
                .ok_or(JwtKeyError::NoPublicKey)?;
            let key = VerifyingKey::from_public_pem(pem)?;
            if key.algorithm() != expected {
                return Err(JwtKeyError::WrongAlgorithm {
                    found: key.algorithm(),
                    expected,
                });
            }
            Ok(key)
        }
    }
}

/// Where a table with `jwks_url` fetches its keys from, and how often.
fn jwks_source(table: &JwtTable, url: &str) -> Result<JwksSource, JwtKeyError> {
    if !is_http_url(url) {
        return Err(JwtKeyError::JwksUrl(url.to_owned()));
    }
    if table.algorithm == Algorithm::Hs256 {
        return Err(JwtKeyError::JwksAlgorithm);
    }
    // By now `public_key_file` has been read into `public_key`: name the setting written.
    let static_key = [
        ("secret", table.secret.is_some()),
        ("public_key_file", table.public_key_file.is_some()),
        ("public_key", table.public_key.is_some()),
    ];
    if let Some((name, _)) = static_key.into_iter().find(|(_, set)| *set) {
        return Err(JwtKeyError::JwksAndKey(name));
    }
    let secs = |name: &'static str, value: Option<u64>, default: Duration| match value {
        None => Ok(default),
        Some(secs @ 1..=86_400) => Ok(Duration::from_secs(secs)),
        Some(_) => Err(JwtKeyError::JwksSecs(name)),
    };
    let defaults = JwksSource::DEFAULT_SCHEDULE;
    Ok(JwksSource {
        url: url.to_owned(),
        algorithm: table.algorithm,
        schedule: FetchSchedule {
            refresh: secs(
                "jwks_refresh_secs",
                table.jwks_refresh_secs,
                defaults.refresh,
            )?,
            min_refetch: secs(
                "jwks_min_refetch_secs",
                table.jwks_min_refetch_secs,
                defaults.min_refetch,
            )?,
        },
    })
}

/// The cluster `table` describes once the environment is applied; `url_field` is where its
/// `redis_url` came from. Without a URL the cluster is off and nothing else is checked.
pub(super) fn cluster(
    table: ClusterTable,
    url_field: &str,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(url) = table.redis else {
        return Ok(None);
    };
    let redis = RedisTarget::parse(&url).map_err(|e| invalid(url_field, e.to_string()))?;
    let prefix = table.prefix;
    if !is_name(&prefix) {
        return Err(invalid("cluster.prefix", NAME_RULE));
    }
    if table.node_timeout.is_zero() || table.node_timeout > Duration::from_secs(3600) {
        return Err(invalid(
            "cluster.node_timeout_secs",
            "must be between 1 and 3600",
        ));
    }
    Ok(Some(ClusterConfig {
        redis,
        prefix,
        node_timeout: table.node_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use crate::config::Config;

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
            err(&format!("{ONE_APP}write_delay_ms = 101\n")).starts_with("apps[0].write_delay_ms")
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
    fn every_apps_largest_client_event_must_fit_in_a_websocket_message() {
        // 65,536 bytes hold 200-byte names around at most 65,103 bytes of data.
        let fits = format!("{ONE_APP}max_message_bytes = 65103\n");
        assert!(Config::from_toml_str(&fits, &no_env).is_ok());
        let over = format!("{ONE_APP}max_message_bytes = 65104\n");
        assert_eq!(
            err(&over),
            "apps[0].max_message_bytes: a client event with 65104 bytes of data and names at \
             their limits is 65537 bytes, over server.max_ws_message_bytes (65536): raise that \
             or lower this"
        );
        let raised = format!("[server]\nmax_ws_message_bytes = 131072\n{over}");
        assert!(Config::from_toml_str(&raised, &no_env).is_ok());
        let small = format!("[server]\nmax_ws_message_bytes = 1023\n{ONE_APP}");
        assert!(err(&small).starts_with("server.max_ws_message_bytes"));
    }

    #[test]
    fn the_proxy_protocol_needs_trusted_proxies() {
        let alone = format!("[server]\nproxy_protocol = true\n{ONE_APP}");
        assert!(err(&alone).starts_with("server.proxy_protocol: needs server.trusted_proxies"));
        let with = format!(
            "[server]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n{ONE_APP}"
        );
        assert!(
            Config::from_toml_str(&with, &no_env)
                .unwrap()
                .server
                .proxy_protocol
        );
        let bad = format!("[server]\ntrusted_proxies = [\"127.0.0.1/40\"]\n{ONE_APP}");
        assert!(
            err(&bad).contains("\"127.0.0.1/40\" is not an address range"),
            "{}",
            err(&bad)
        );
    }

    #[test]
    fn webhook_filters_and_headers_load_and_bad_headers_are_named() {
        let hook = |extra: &str| {
            format!("{ONE_APP}[[apps.webhooks]]\nurl = \"http://127.0.0.1:9/h\"\n{extra}")
        };
        let text = hook(
            "headers = { Authorization = \"Bearer abc\" }\n\
             [apps.webhooks.filter]\nchannel_name_starts_with = \"presence-\"\n",
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let endpoint = &config.apps[0].webhooks[0];
        assert_eq!(endpoint.headers["Authorization"], "Bearer abc");
        assert!(endpoint.filter.matches("presence-room"));
        assert!(!endpoint.filter.matches("private-room"));
        for (headers, says) in [
            (
                "headers = { \"X-Pusher-Signature\" = \"x\" }",
                "set by Ringcast itself",
            ),
            ("headers = { \"Bad Name\" = \"x\" }", "is not a header name"),
            ("headers = { X-Token = \"a\\nb\" }", "control or non-ASCII"),
        ] {
            let e = err(&hook(&format!("{headers}\n")));
            assert!(e.starts_with("apps[0].webhooks[0].headers: "), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_jwks_url_loads_with_its_schedule_and_authorized_parties() {
        use crate::core::auth::jwt::Algorithm;
        use crate::core::options::JwksSource;
        let text = format!(
            "{ONE_APP}[apps.jwt]\nalgorithm = \"RS256\"\n\
             jwks_url = \"https://clerk.example.com/.well-known/jwks.json\"\n\
             jwks_refresh_secs = 60\nauthorized_parties = [\"https://app.example.com\"]\n"
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let jwt = config.apps[0].jwt.as_ref().unwrap();
        let source = jwt.jwks().unwrap();
        assert_eq!(
            source.url,
            "https://clerk.example.com/.well-known/jwks.json"
        );
        assert_eq!(source.algorithm, Algorithm::Rs256);
        assert_eq!(source.schedule.refresh, Duration::from_secs(60));
        assert_eq!(
            source.schedule.min_refetch,
            JwksSource::DEFAULT_SCHEDULE.min_refetch
        );
        assert_eq!(jwt.authorized_parties, ["https://app.example.com"]);
    }

    #[test]
    fn jwks_settings_are_refused_with_the_field_named() {
        let table = |lines: &str| format!("{ONE_APP}[apps.jwt]\n{lines}\n");
        let url = "jwks_url = \"https://x.test/jwks.json\"";
        let pem = "public_key = \"-----BEGIN PUBLIC KEY-----\"";
        for (lines, says) in [
            (
                format!("algorithm = \"HS256\"\n{url}"),
                "jwks_url needs algorithm \"RS256\" or \"ES256\"",
            ),
            (
                format!(
                    "algorithm = \"HS256\"\nsecret = \"{}\"\n{url}",
                    "s".repeat(32)
                ),
                "jwks_url needs algorithm",
            ),
            (
                format!("algorithm = \"RS256\"\n{pem}\n{url}"),
                "jwks_url and public_key exclude each other",
            ),
            (
                format!("algorithm = \"ES256\"\nsecret = \"x\"\n{url}"),
                "jwks_url and secret exclude each other",
            ),
            (
                "algorithm = \"ES256\"\njwks_url = \"ftp://x.test/k\"".to_owned(),
                "jwks_url \"ftp://x.test/k\" is not an http:// or https:// URL",
            ),
            (
                format!("algorithm = \"ES256\"\n{url}\njwks_refresh_secs = 0"),
                "jwks_refresh_secs must be between 1 and 86400",
            ),
            (
                format!("algorithm = \"ES256\"\n{url}\njwks_min_refetch_secs = 86401"),
                "jwks_min_refetch_secs must be between 1 and 86400",
            ),
            (
                format!("algorithm = \"RS256\"\n{pem}\njwks_refresh_secs = 5"),
                "jwks_refresh_secs needs jwks_url",
            ),
            (
                format!("algorithm = \"ES256\"\n{url}\nauthorized_parties = [\"\"]"),
                "authorized_parties must not contain an empty string",
            ),
        ] {
            let e = err(&table(&lines));
            assert!(e.starts_with("apps[0].jwt: "), "{lines}: {e}");
            assert!(e.contains(says), "{lines}: {e}");
        }
        let admin = format!("[admin_jwt]\nalgorithm = \"ES256\"\n{url}\n{ONE_APP}");
        assert_eq!(
            err(&admin),
            "admin_jwt.jwks_url: is not supported in [admin_jwt]: set public_key or public_key_file"
        );
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
}
