//! `[apps.token_verification]`: connections identified by the app's backend, which answers
//! whether the credentials a client sent with its WebSocket upgrade are good and whom they
//! name.

use std::time::Duration;

use serde::Deserialize;

use super::units;
use crate::core::auth::backend::{AnswerFields, CachePolicy};

/// The HTTP method of the verification request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum VerifyMethod {
    /// `GET` with the credentials in headers (the default).
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// `POST` with the credentials in headers and an empty body.
    #[serde(rename = "POST")]
    Post,
}

/// How an app's backend verifies connections (`[apps.token_verification]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenVerification {
    /// The verify endpoint, `http://` or `https://` (checked at load).
    pub url: String,
    /// `GET` or `POST`.
    pub method: VerifyMethod,
    /// Request headers of the upgrade forwarded to the backend (names match in any case). A
    /// browser cannot set headers on a WebSocket, so each may also come as a query parameter
    /// of the same name; the header wins.
    pub headers: Vec<String>,
    /// The header naming the actor the client asks to be (`user`, `worker`, ...). The
    /// backend's answer must name the same actor, else 4009.
    pub actor_header: String,
    /// The actor of a client that sends no `actor_header`, and of an answer that names none.
    pub default_actor: String,
    /// Refuse (4009) connections that send none of the forwarded credentials; when false,
    /// they connect anonymously.
    pub required: bool,
    /// Time the backend has to answer; later counts as a refusal.
    #[serde(rename = "timeout_ms", with = "units::millis")]
    pub timeout: Duration,
    /// How long an accepted answer is reused for the same credentials.
    #[serde(rename = "cache_secs", with = "units::secs")]
    pub cache: Duration,
    /// How long a definite refusal (a 4xx answer) is reused; 0 caches none. Timeouts,
    /// 5xx answers and unusable bodies are never cached.
    #[serde(rename = "negative_cache_secs", with = "units::secs")]
    pub negative_cache: Duration,
    /// Most credentials cached at once.
    pub max_cached: usize,
    /// Most backend calls at once (one thread each); more wait in a bounded queue.
    pub max_in_flight: usize,
    /// Largest answer body read.
    pub max_answer_bytes: usize,
    /// Where the answer names the user, actor, tenant and roles.
    pub fields: AnswerFields,
}

impl Default for TokenVerification {
    /// The reference deployment: `access-token`, `session-id`, `x-actor-type` and
    /// `authorization` forwarded, answers cached for an hour.
    fn default() -> Self {
        Self {
            url: String::new(),
            method: VerifyMethod::Get,
            headers: [
                "access-token",
                "session-id",
                "x-actor-type",
                "authorization",
            ]
            .map(String::from)
            .to_vec(),
            actor_header: "x-actor-type".to_owned(),
            default_actor: "user".to_owned(),
            required: false,
            timeout: Duration::from_millis(3000),
            cache: Duration::from_secs(3600),
            negative_cache: Duration::from_secs(10),
            max_cached: 100_000,
            max_in_flight: 16,
            max_answer_bytes: 16 * 1024,
            fields: AnswerFields::default(),
        }
    }
}

impl TokenVerification {
    /// The cache's lifetimes and bound.
    pub fn cache_policy(&self) -> CachePolicy {
        CachePolicy {
            positive: self.cache,
            negative: self.negative_cache,
            max_entries: self.max_cached,
        }
    }

    /// The forwarded headers that carry credentials: all but the actor header, which only
    /// says which actor is asked for.
    pub fn credential_headers(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .map(String::as_str)
            .filter(|h| !h.eq_ignore_ascii_case(&self.actor_header))
    }
}
