//! Backend token verification, sans IO: what the app's verify endpoint answers, whether the
//! actor a client asked for is the one the backend verified, and the cache shared by all
//! shards that keeps one backend call per set of credentials (single flight).
//!
//! The shell makes the HTTP call; everything here takes time as a parameter and is tested
//! with plain values.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ring::digest;
use serde_json::Value;

/// Longest text (user id, actor, tenant, one role) taken from an answer, in characters.
pub const MAX_FIELD_CHARS: usize = 256;
/// Most roles taken from an answer; more refuses it rather than dropping some silently.
pub const MAX_ROLES: usize = 64;

/// The JSON field names read from a backend's answer (`[apps.token_verification.fields]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerFields {
    /// Names the verified user; a number is read as its decimal text.
    pub user_id: String,
    /// Names the actor type (`user`, `worker`, ...).
    pub actor: String,
    /// Names the tenant; absent or null means none.
    pub tenant: String,
    /// Names an array of role strings; absent or null means none.
    pub roles: String,
}

impl Default for AnswerFields {
    /// The fields of a backend answering `{"user_id": 1, "name": .., "email": .., "type": "user"}`.
    fn default() -> Self {
        Self {
            user_id: "user_id".to_owned(),
            actor: "type".to_owned(),
            tenant: "tenant_id".to_owned(),
            roles: "roles".to_owned(),
        }
    }
}

/// Who the backend says holds the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAnswer {
    /// Never empty.
    pub user_id: String,
    /// The answer's actor, or the configured default actor when it names none.
    pub actor: String,
    /// The tenant, if the answer names one.
    pub tenant: Option<String>,
    /// Without duplicates, in the answer's order.
    pub roles: Vec<String>,
}

/// Why a 200 answer was not accepted as an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is over the configured byte limit.
    #[error("answer is larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Not a JSON object.
    #[error("answer is not a JSON object")]
    NotAnObject,
    /// The user id field is absent, null or empty.
    #[error("answer has no {0}")]
    MissingUserId(String),
    /// A field has a type or size this broker does not take.
    #[error("answer field {0} has a bad type or size")]
    BadField(String),
}

/// Reads a 200 answer's body into a [`VerifiedAnswer`], with `default_actor` for an answer
/// that names no actor; `max_bytes` is checked before parsing.
pub fn parse_answer(
    body: &[u8],
    fields: &AnswerFields,
    default_actor: &str,
    max_bytes: usize,
) -> Result<VerifiedAnswer, AnswerError> {
    if body.len() > max_bytes {
        return Err(AnswerError::TooLarge { limit: max_bytes });
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| AnswerError::NotAnObject)?;
    let Value::Object(map) = value else {
        return Err(AnswerError::NotAnObject);
    };
    let text = |name: &str| -> Result<Option<String>, AnswerError> {
        let text = match map.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            // Laravel's integer keys: `1` and `"1"` name the same user.
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            Some(_) => return Err(AnswerError::BadField(name.to_owned())),
        };
        if text.chars().count() > MAX_FIELD_CHARS {
            return Err(AnswerError::BadField(name.to_owned()));
        }
        Ok(Some(text).filter(|t| !t.is_empty()))
    };
    let user_id =
        text(&fields.user_id)?.ok_or_else(|| AnswerError::MissingUserId(fields.user_id.clone()))?;
    let actor = text(&fields.actor)?.unwrap_or_else(|| default_actor.to_owned());
    let tenant = text(&fields.tenant)?;
    let roles = match map.get(&fields.roles) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_ROLES => {
            let mut roles: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(r) if r.chars().count() <= MAX_FIELD_CHARS => {
                        if !roles.contains(r) {
                            roles.push(r.clone());
                        }
                    }
                    _ => return Err(AnswerError::BadField(fields.roles.clone())),
                }
            }
            roles
        }
        Some(_) => return Err(AnswerError::BadField(fields.roles.clone())),
    };
    Ok(VerifiedAnswer {
        user_id,
        actor,
        tenant,
        roles,
    })
}

/// The actor a client asked for is not the one the backend verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actor type {requested} asked for, backend verified {verified}")]
pub struct ActorMismatch {
    /// From `x-actor-type`, or the default actor when the client sent none.
    pub requested: String,
    /// From the answer.
    pub verified: String,
}

/// Checks the requested actor (`None`: the client sent no `x-actor-type`, meaning
/// `default_actor`) against a verified answer, cached or fresh: run on every connection.
pub fn check_actor(
    answer: &VerifiedAnswer,
    requested: Option<&str>,
    default_actor: &str,
) -> Result<(), ActorMismatch> {
    let requested = requested.unwrap_or(default_actor);
    if requested == answer.actor {
        Ok(())
    } else {
        Err(ActorMismatch {
            requested: requested.to_owned(),
            verified: answer.actor.clone(),
        })
    }
}

/// The cache key of a set of forwarded credentials: SHA-256 over the values, so no token is
/// kept or logged in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialKey([u8; 32]);

impl CredentialKey {
    /// Hashes `(header name, value)` pairs in the given order; each part is length-prefixed so
    /// that `("a", "bc")` and `("ab", "c")` differ, and an absent header differs from an
    /// empty one.
    pub fn of<'a>(forwarded: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (name, value) in forwarded {
            ctx.update(&(name.len() as u64).to_be_bytes());
            ctx.update(name.as_bytes());
            match value {
                None => ctx.update(&[0]),
                Some(v) => {
                    ctx.update(&[1]);
                    ctx.update(&(v.len() as u64).to_be_bytes());
                    ctx.update(v.as_bytes());
                }
            }
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        Self(key)
    }
}

/// What the backend decided about a set of credentials, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A 200 with a usable answer.
    Verified(VerifiedAnswer),
    /// Anything else (non-200, timeout, connection failure, bad answer); the reason is for the
    /// audit and never contains the credentials.
    Refused(String),
}

/// What a connection does after [`VerificationCache::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live cached verdict; `verified_at` is when the backend gave it.
    Cached {
        /// The cached verdict.
        verdict: Verdict,
        /// When the verdict was recorded.
        verified_at: Instant,
    },
    /// This connection must call the backend and then [`VerificationCache::finish`].
    Lead,
    /// Another connection is calling the backend with the same credentials: wait for its
    /// [`VerificationCache::finish`].
    Follow,
}

/// Lifetimes and bound of a [`VerificationCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a [`Verdict::Verified`] is reused.
    pub positive: Duration,
    /// How long a [`Verdict::Refused`] is reused; zero caches no refusal.
    pub negative: Duration,
    /// Most cached verdicts; calls in flight are not counted (they are bounded by the
    /// verifier's queue).
    pub max_entries: usize,
}

#[derive(Debug)]
struct Entry {
    verdict: Verdict,
    verified_at: Instant,
    expires_at: Instant,
}

/// Cached verdicts and calls in flight, by credentials, with who waits for each call (`W`:
/// whatever the shell hands the verdict to). Shared by all shards behind a mutex: touched
/// once per connection, never per message.
#[derive(Debug)]
pub struct VerificationCache<W> {
    policy: CachePolicy,
    entries: HashMap<CredentialKey, Entry>,
    in_flight: HashMap<CredentialKey, Vec<W>>,
}

impl<W> VerificationCache<W> {
    /// An empty cache.
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Starts a connection's verification: a live verdict, or lead or follow the one call
    /// in flight for these credentials, `waiter` then waiting for its verdict.
    pub fn begin(&mut self, key: CredentialKey, now: Instant, waiter: W) -> Lookup {
        if let Some(entry) = self.entries.get(&key) {
            if now < entry.expires_at {
                return Lookup::Cached {
                    verdict: entry.verdict.clone(),
                    verified_at: entry.verified_at,
                };
            }
            self.entries.remove(&key);
        }
        match self.in_flight.get_mut(&key) {
            Some(waiters) => {
                waiters.push(waiter);
                Lookup::Follow
            }
            None => {
                self.in_flight.insert(key, vec![waiter]);
                Lookup::Lead
            }
        }
    }

    /// Records the leader's verdict and ends the call in flight; returns who waited for it,
    /// the leader first.
    pub fn finish(&mut self, key: CredentialKey, verdict: Verdict, now: Instant) -> Vec<W> {
        let waiters = self.in_flight.remove(&key).unwrap_or_default();
        let life = match verdict {
            Verdict::Verified(_) => self.policy.positive,
            Verdict::Refused(_) => self.policy.negative,
        };
        if life.is_zero() {
            return waiters;
        }
        if self.entries.len() >= self.policy.max_entries && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| now < e.expires_at);
            if self.entries.len() >= self.policy.max_entries {
                // Still full of live entries: drop the one nearest its end.
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_at)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        if self.policy.max_entries > 0 {
            self.entries.insert(
                key,
                Entry {
                    verdict,
                    verified_at: now,
                    expires_at: now + life,
                },
            );
        }
        waiters
    }

    /// Ends the call in flight without caching its outcome (a timeout, a 5xx, an overloaded
    /// verifier: the next connection asks again); returns who waited for it.
    pub fn abandon(&mut self, key: CredentialKey) -> Vec<W> {
        self.in_flight.remove(&key).unwrap_or_default()
    }

    /// Cached verdicts, live or not yet swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no verdict is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<VerifiedAnswer, AnswerError> {
        parse_answer(body.as_bytes(), &AnswerFields::default(), "user", 4096)
    }

    fn answer(actor: &str) -> VerifiedAnswer {
        VerifiedAnswer {
            user_id: "1".into(),
            actor: actor.into(),
            tenant: None,
            roles: vec![],
        }
    }

    fn key(token: &str) -> CredentialKey {
        CredentialKey::of([("access-token", Some(token)), ("session-id", Some("s"))])
    }

    fn policy(positive: u64, negative: u64, max_entries: usize) -> CachePolicy {
        CachePolicy {
            positive: Duration::from_secs(positive),
            negative: Duration::from_secs(negative),
            max_entries,
        }
    }

    #[test]
    fn default_fields_read_the_reference_backend_answer_with_a_numeric_id() {
        let a = parse(r#"{"user_id": 1, "name": "Ann", "email": "a@x", "type": "user"}"#).unwrap();
        assert_eq!(a, answer("user"));
    }

    #[test]
    fn absent_actor_is_the_default_and_tenant_and_roles_are_read() {
        let a = parse(r#"{"user_id": "u-1", "tenant_id": 7, "roles": ["a", "b", "a"]}"#).unwrap();
        assert_eq!(a.actor, "user");
        assert_eq!(a.tenant.as_deref(), Some("7"));
        assert_eq!(a.roles, vec!["a", "b"]);
    }

    #[test]
    fn missing_null_or_empty_user_id_is_refused() {
        for body in [
            r#"{"type": "user"}"#,
            r#"{"user_id": null}"#,
            r#"{"user_id": ""}"#,
        ] {
            assert_eq!(
                parse(body),
                Err(AnswerError::MissingUserId("user_id".into()))
            );
        }
    }

    #[test]
    fn wrong_types_are_refused() {
        for (body, field) in [
            (r#"{"user_id": true}"#, "user_id"),
            (r#"{"user_id": 1.5}"#, "user_id"),
            (r#"{"user_id": 1, "type": ["user"]}"#, "type"),
            (r#"{"user_id": 1, "roles": "admin"}"#, "roles"),
            (r#"{"user_id": 1, "roles": [1]}"#, "roles"),
        ] {
            assert_eq!(
                parse(body),
                Err(AnswerError::BadField(field.into())),
                "{body}"
            );
        }
        assert_eq!(parse("[1]"), Err(AnswerError::NotAnObject));
        assert_eq!(parse("not json"), Err(AnswerError::NotAnObject));
    }

    #[test]
    fn body_over_the_limit_is_refused_before_parsing_and_at_the_limit_is_read() {
        let body = br#"{"user_id": 1}"#;
        let fields = AnswerFields::default();
        assert!(parse_answer(body, &fields, "user", body.len()).is_ok());
        assert_eq!(
            parse_answer(body, &fields, "user", body.len() - 1),
            Err(AnswerError::TooLarge {
                limit: body.len() - 1
            })
        );
        let long = format!(r#"{{"user_id": "{}"}}"#, "x".repeat(MAX_FIELD_CHARS + 1));
        assert_eq!(parse(&long), Err(AnswerError::BadField("user_id".into())));
    }

    #[test]
    fn actor_must_equal_the_verified_one_and_absent_means_default() {
        assert!(check_actor(&answer("user"), None, "user").is_ok());
        assert!(check_actor(&answer("worker"), Some("worker"), "user").is_ok());
        assert_eq!(
            check_actor(&answer("worker"), Some("user"), "user"),
            Err(ActorMismatch {
                requested: "user".into(),
                verified: "worker".into()
            })
        );
        assert!(check_actor(&answer("worker"), None, "user").is_err());
    }

    #[test]
    fn key_depends_on_every_value_and_on_absence() {
        assert_eq!(key("a"), key("a"));
        assert_ne!(key("a"), key("b"));
        assert_ne!(
            CredentialKey::of([("access-token", Some("ab")), ("session-id", Some("c"))]),
            CredentialKey::of([("access-token", Some("a")), ("session-id", Some("bc"))])
        );
        assert_ne!(
            CredentialKey::of([("session-id", None)]),
            CredentialKey::of([("session-id", Some(""))])
        );
    }

    #[test]
    fn concurrent_connections_share_one_call_in_flight() {
        let t0 = Instant::now();
        let mut cache = VerificationCache::new(policy(3600, 30, 100));
        assert_eq!(cache.begin(key("a"), t0, 0), Lookup::Lead);
        for connection in 1..100 {
            assert_eq!(cache.begin(key("a"), t0, connection), Lookup::Follow);
        }
        assert_eq!(cache.begin(key("b"), t0, 100), Lookup::Lead);
        assert_eq!(
            cache.finish(key("a"), Verdict::Verified(answer("user")), t0),
            (0..100).collect::<Vec<_>>(),
            "everyone who waited, the leader first"
        );
        assert!(matches!(
            cache.begin(key("a"), t0, 0),
            Lookup::Cached { .. }
        ));
    }

    #[test]
    fn positive_verdict_lives_cache_secs() {
        let t0 = Instant::now();
        let mut cache = VerificationCache::new(policy(3600, 30, 100));
        cache.begin(key("a"), t0, 0);
        cache.finish(key("a"), Verdict::Verified(answer("user")), t0);
        let almost = t0 + Duration::from_secs(3599);
        assert!(matches!(
            cache.begin(key("a"), almost, 0),
            Lookup::Cached { .. }
        ));
        assert_eq!(
            cache.begin(key("a"), t0 + Duration::from_secs(3600), 0),
            Lookup::Lead
        );
    }

    #[test]
    fn negative_verdict_lives_negative_cache_secs_and_zero_caches_none() {
        let t0 = Instant::now();
        let mut cache = VerificationCache::new(policy(3600, 30, 100));
        cache.begin(key("a"), t0, 0);
        cache.finish(key("a"), Verdict::Refused("status 401".into()), t0);
        let almost = t0 + Duration::from_secs(29);
        assert!(matches!(
            cache.begin(key("a"), almost, 0),
            Lookup::Cached {
                verdict: Verdict::Refused(_),
                ..
            }
        ));
        assert_eq!(
            cache.begin(key("a"), t0 + Duration::from_secs(30), 0),
            Lookup::Lead
        );

        let mut off = VerificationCache::new(policy(3600, 0, 100));
        off.begin(key("a"), t0, 0);
        off.finish(key("a"), Verdict::Refused("status 401".into()), t0);
        assert!(off.is_empty());
        assert_eq!(off.begin(key("a"), t0, 0), Lookup::Lead);
    }

    #[test]
    fn cache_holds_at_most_max_entries() {
        let t0 = Instant::now();
        let mut cache = VerificationCache::new(policy(3600, 30, 2));
        for (i, token) in ["a", "b", "c"].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64);
            cache.begin(key(token), at, 0);
            cache.finish(key(token), Verdict::Verified(answer("user")), at);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.begin(key("a"), t0 + Duration::from_secs(3), 0),
            Lookup::Lead
        );
    }

    #[test]
    fn an_abandoned_call_caches_nothing_and_the_next_connection_leads() {
        let t0 = Instant::now();
        let mut cache = VerificationCache::new(policy(3600, 30, 100));
        assert_eq!(cache.begin(key("a"), t0, 1), Lookup::Lead);
        assert_eq!(cache.begin(key("a"), t0, 2), Lookup::Follow);
        assert_eq!(cache.abandon(key("a")), [1, 2]);
        assert!(cache.is_empty());
        assert_eq!(cache.begin(key("a"), t0, 0), Lookup::Lead);
    }
}
