//! The checks of an app's service tables: `[apps.socketio]`, `[apps.redis_broadcast]` and
//! `[apps.token_verification]`. Each names the setting that is wrong and says how.

use std::time::Duration;

use super::super::file::AppTable;
use super::MAX_DURATION;
use crate::core::options::{RedisBroadcast, SocketIoConfig, TokenVerification};

/// Whether `url` is `http://` or `https://` followed by something.
pub(super) fn is_http_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty())
    })
}

/// Paths the broker serves itself, which no app's Socket.IO path may take.
const RESERVED_PATHS: [&str; 8] = [
    "/app",
    "/apps",
    "/admin",
    "/metrics",
    "/up",
    "/token",
    "/pending-notifications",
    "/broadcast-message",
];

/// Checks `[apps.socketio]` against the apps before it; `Err` names the setting and what is
/// wrong with it.
pub(super) fn check_socketio(
    v: &SocketIoConfig,
    earlier: &[AppTable],
) -> Result<(), (&'static str, String)> {
    let base = v.path.trim_end_matches('/');
    let first_segment = base.split('/').nth(1).map(|s| format!("/{s}"));
    if !v.path.starts_with('/') || base.is_empty() || v.path.contains(['?', '#', ' ']) {
        return Err((
            "path",
            format!("{:?} must be a path such as \"/socket.io\"", v.path),
        ));
    }
    if first_segment.is_some_and(|s| RESERVED_PATHS.contains(&s.as_str())) {
        return Err((
            "path",
            format!("{:?} is a path the broker serves itself", v.path),
        ));
    }
    if let Some(j) = earlier.iter().position(|other| {
        other
            .socketio
            .as_ref()
            .is_some_and(|o| o.path.trim_end_matches('/') == base)
    }) {
        return Err(("path", format!("{:?} is also used by apps[{j}]", v.path)));
    }
    if let Some(url) = &v.auth_endpoint
        && !is_http_url(url)
    {
        return Err((
            "auth_endpoint",
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    for (name, value) in [
        ("auth_timeout_ms", v.auth_timeout),
        ("ping_interval_ms", v.ping_interval),
        ("ping_timeout_ms", v.ping_timeout),
    ] {
        if value.is_zero() || value > MAX_DURATION {
            return Err((name, "must be between 1 ms and 86400 s".into()));
        }
    }
    if v.recovery > MAX_DURATION {
        return Err(("recovery_secs", "must be at most 86400".into()));
    }
    if v.max_auth_in_flight == 0 || v.max_auth_in_flight > MAX_VERIFY_THREADS {
        return Err((
            "max_auth_in_flight",
            format!("must be between 1 and {MAX_VERIFY_THREADS}"),
        ));
    }
    Ok(())
}

/// Checks `[apps.redis_broadcast]` (its URL was parsed with the table); `Err` names the
/// setting and what is wrong with it.
pub(super) fn check_redis_broadcast(
    broadcast: &RedisBroadcast,
) -> Result<(), (&'static str, String)> {
    // Laravel's channel names and prefixes have neither; one here is a typo.
    let unprintable = |text: &str| text.chars().any(|c| c.is_control() || c.is_whitespace());
    if broadcast.channels.is_empty() {
        return Err((
            "channels",
            "must not be empty (\"*\" is every channel)".into(),
        ));
    }
    for (name, value) in [
        ("prefix", &broadcast.prefix),
        ("channels", &broadcast.channels),
    ] {
        if unprintable(value) {
            return Err((name, format!("{value:?} has a space or control character")));
        }
    }
    Ok(())
}

/// Most backend calls in flight per app.
const MAX_VERIFY_THREADS: usize = 256;
/// Largest backend answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Checks `[apps.token_verification]`; `Err` names the setting and what is wrong with it.
pub(super) fn check_token_verification(
    v: &TokenVerification,
) -> Result<(), (&'static str, String)> {
    if !is_http_url(&v.url) {
        return Err((
            "url",
            format!("{:?} is not an http:// or https:// URL", v.url),
        ));
    }
    if v.headers.is_empty() {
        return Err(("headers", "must name at least one header".into()));
    }
    for name in v.headers.iter().chain([&v.actor_header]) {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(("headers", format!("{name:?} is not a header name")));
        }
    }
    if v.credential_headers().next().is_none() {
        return Err((
            "headers",
            "must name a credential header besides actor_header".into(),
        ));
    }
    if v.default_actor.is_empty() {
        return Err(("default_actor", "must not be empty".into()));
    }
    let fields = &v.fields;
    for (name, value) in [
        ("fields.user_id", &fields.user_id),
        ("fields.actor", &fields.actor),
        ("fields.tenant", &fields.tenant),
        ("fields.roles", &fields.roles),
    ] {
        if value.is_empty() {
            return Err((name, "must not be empty".into()));
        }
    }
    if v.timeout.is_zero() || v.timeout > Duration::from_secs(60) {
        return Err(("timeout_ms", "must be between 1 and 60000".into()));
    }
    for (name, life) in [
        ("cache_secs", v.cache),
        ("negative_cache_secs", v.negative_cache),
    ] {
        if life > MAX_DURATION {
            return Err((name, "must be at most 86400 (one day)".into()));
        }
    }
    if v.max_in_flight == 0 || v.max_in_flight > MAX_VERIFY_THREADS {
        return Err((
            "max_in_flight",
            format!("must be between 1 and {MAX_VERIFY_THREADS}"),
        ));
    }
    if v.max_answer_bytes == 0 || v.max_answer_bytes > MAX_ANSWER_BYTES {
        return Err((
            "max_answer_bytes",
            format!("must be between 1 and {MAX_ANSWER_BYTES}"),
        ));
    }
    Ok(())
}
