//! The app table: configured apps with their HMAC keys and live connection counts.
//!
//! Shared read-only by every shard (`Arc`); the only mutable parts are atomic connection
//! counters, touched on connect and disconnect, never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::hmac;

use crate::core::auth::backend::{ActorMismatch, Verdict, check_actor};
use crate::core::auth::hmac_key;
use crate::core::auth::jwks::{KeyChoice, KeySet, LiveKeys};
use crate::core::auth::jwt::{self, Identity, Token, VerifyingKey};
use crate::core::ids::AppIdx;
use crate::core::options::{AppConfig, JwtConfig, JwtKeys};
use crate::core::policy::PolicySet;
use crate::core::rate_limit::{KeyedLimiter, Rate};
use crate::core::sync;

/// One configured app.
pub struct App {
    /// Its index in the table.
    pub idx: AppIdx,
    /// Its configuration (limits, credentials).
    pub config: AppConfig,
    /// The secret as an HMAC-SHA256 key.
    pub secret: hmac::Key,
    /// Channel policies (validated when the config was loaded).
    pub policies: PolicySet,
    /// `[apps.history]` compiled (validated when the config was loaded); `None`: no history.
    pub history: Option<crate::core::history::HistoryOptions>,
    connections: AtomicUsize,
    /// Cluster mode: this app's connections on the other nodes, as of the last heartbeat.
    elsewhere: AtomicUsize,
    limiters: Option<Limiters>,
    /// Revoked token ids, with the time (Unix seconds) after which they no longer matter.
    revoked: Mutex<HashMap<Revocation, u64>>,
    /// The keys fetched from `[apps.jwt] jwks_url`, when it is set.
    jwks: Option<Arc<LiveKeys>>,
}

/// What a revocation refuses: one token, or every token of a user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// The token with this `jti`.
    Token(String),
    /// Every token, and every backend-verified connection, naming this user (`sub`).
    User(String),
}

impl Revocation {
    /// The text form in the app's table, in Redis and in the store: `jti:{id}` or
    /// `sub:{user}`.
    pub fn key(&self) -> String {
        match self {
            Revocation::Token(jti) => format!("jti:{jti}"),
            Revocation::User(user) => format!("sub:{user}"),
        }
    }

    /// Reads a [`Revocation::key`].
    pub fn parse(key: &str) -> Option<Self> {
        match key.split_once(':')? {
            ("jti", jti) => Some(Revocation::Token(jti.to_owned())),
            ("sub", user) => Some(Revocation::User(user.to_owned())),
            _ => None,
        }
    }

    /// Whether this revocation refuses `identity`.
    pub fn covers(&self, identity: &Identity) -> bool {
        match self {
            Revocation::Token(jti) => identity.jti.as_ref() == Some(jti),
            Revocation::User(user) => identity.user_id.as_ref() == Some(user),
        }
    }
}

/// Most revoked token ids remembered; the ones expiring soonest are dropped first.
const MAX_REVOKED: usize = 100_000;

/// Why a connection's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The app requires a token and none came.
    #[error(
        "a token is required (query parameter \"token\", path /token/{{jwt}}/app/{{key}}, Sec-WebSocket-Protocol or Authorization: Bearer)"
    )]
    Missing,
    /// The token did not verify.
    #[error("{0}")]
    Invalid(#[from] jwt::JwtError),
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// The app's backend identifies connections, requires it, and none of the credentials
    /// it reads came.
    #[error("credentials are required (headers or query parameters: {0})")]
    MissingCredentials(String),
    /// The app's backend did not verify the credentials.
    #[error("backend verification refused: {0}")]
    Backend(String),
    /// The backend verified another actor than the one asked for.
    #[error("{0}")]
    Actor(#[from] ActorMismatch),
    /// The app's JWKS has not been fetched yet (a fetch is asked for).
    #[error("token refused: keys not loaded yet (no fetch of jwks_url has succeeded)")]
    KeysNotLoaded,
    /// The token's `kid` is not in the app's JWKS (a refetch is asked for, in case the
    /// provider rotated its keys).
    #[error("token refused: unknown key id (kid) {0:?}")]
    UnknownKeyId(String),
    /// The token names no `kid` and the app's JWKS has several keys.
    #[error("token refused: it names no key id (kid) and the app's JWKS has several keys")]
    KidRequired,
}

/// Most distinct keys (IPs, users) a limiter remembers.
const MAX_LIMITER_KEYS: usize = 100_000;

/// Rate limiters shared by every shard. They are touched on connect, on client events and
/// on API requests, never per delivered message, so a mutex is cheap here.
struct Limiters {
    connection_attempts: Mutex<KeyedLimiter<IpAddr>>,
    client_events: Mutex<KeyedLimiter<String>>,
    api_requests: Mutex<KeyedLimiter<()>>,
}

fn take<K: std::hash::Hash + Eq + Clone>(
    limiter: &Mutex<KeyedLimiter<K>>,
    key: &K,
    now: Instant,
) -> Result<(), Duration> {
    sync::lock(limiter).try_acquire(key, now)
}

impl App {
    /// Checks a connection's token (if the app uses JWT) and returns its identity.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        now_unix: u64,
    ) -> Result<Option<Identity>, TokenError> {
        let (Some(config), Some(token)) = (&self.config.jwt, token) else {
            return self.anonymous();
        };
        let token = Token::parse(token)?;
        let mut held = None;
        let key = self.chosen_key(&config.keys, &mut held, token.kid())?;
        let opts = config.verify_options(key, self.config.max_user_id_chars);
        let identity = token.verify(&opts, now_unix)?;
        if self.is_revoked(&identity, now_unix) {
            return Err(TokenError::Revoked);
        }
        Ok(Some(identity))
    }

    /// The key a token naming `kid` is checked with: the table's own, or the one `kid`
    /// chooses in the app's JWKS, whose set is kept alive in `held` while the key is used.
    /// An unknown `kid`, or no set yet, asks the fetcher for a fetch.
    fn chosen_key<'a>(
        &self,
        keys: &'a JwtKeys,
        held: &'a mut Option<Arc<KeySet>>,
        kid: Option<&str>,
    ) -> Result<&'a VerifyingKey, TokenError> {
        let live = match keys {
            JwtKeys::Static(key) => return Ok(key),
            JwtKeys::Jwks(_) => self.jwks.as_ref().ok_or(TokenError::KeysNotLoaded)?,
        };
        let Some(current) = live.current() else {
            live.request_refetch();
            return Err(TokenError::KeysNotLoaded);
        };
        match held.insert(current).choose(kid) {
            KeyChoice::Key(key) => Ok(key),
            KeyChoice::UnknownKid => {
                live.request_refetch();
                let kid = kid.unwrap_or_default().chars().take(64).collect();
                Err(TokenError::UnknownKeyId(kid))
            }
            KeyChoice::KidRequired => Err(TokenError::KidRequired),
        }
    }

    /// The keys fetched from `[apps.jwt] jwks_url` (for the fetcher and `/metrics`), if set.
    pub fn jwks(&self) -> Option<&Arc<LiveKeys>> {
        self.jwks.as_ref()
    }

    /// The identity of a connection the app's backend answered for (`verdict`), asking to be
    /// `requested_actor` (`None`: the client named none, so the default actor).
    pub fn backend_identity(
        &self,
        verdict: &Verdict,
        requested_actor: Option<&str>,
        now_unix: u64,
    ) -> Result<Identity, TokenError> {
        let answer = match verdict {
            Verdict::Verified(answer) => answer,
            Verdict::Refused(reason) => return Err(TokenError::Backend(reason.clone())),
        };
        let default_actor = self
            .config
            .token_verification
            .as_ref()
            .map_or("user", |v| v.default_actor.as_str());
        check_actor(answer, requested_actor, default_actor)?;
        let identity = Identity::verified_by_backend(answer.clone());
        if self.is_revoked(&identity, now_unix) {
            return Err(TokenError::Revoked);
        }
        Ok(identity)
    }

    /// A connection without credentials: refused when the app requires a token or
    /// backend-verified credentials, else anonymous.
    fn anonymous(&self) -> Result<Option<Identity>, TokenError> {
        if self.config.jwt.as_ref().is_some_and(|j| j.required) {
            return Err(TokenError::Missing);
        }
        match self
            .config
            .token_verification
            .as_ref()
            .filter(|v| v.required)
        {
            Some(v) => Err(TokenError::MissingCredentials(
                v.credential_headers().collect::<Vec<_>>().join(", "),
            )),
            None => Ok(None),
        }
    }

    /// Whether `identity`'s token, or every token of its user, is revoked.
    pub fn is_revoked(&self, identity: &Identity, now_unix: u64) -> bool {
        let revoked = sync::lock(&self.revoked);
        let live = |r: Revocation| revoked.get(&r).is_some_and(|&until| until >= now_unix);
        identity
            .jti
            .clone()
            .is_some_and(|jti| live(Revocation::Token(jti)))
            || identity
                .user_id
                .clone()
                .is_some_and(|user| live(Revocation::User(user)))
    }

    /// The revocations, with the time (Unix seconds) until which each matters.
    pub fn revocations(&self) -> Vec<(Revocation, u64)> {
        sync::lock(&self.revoked)
            .iter()
            .map(|(revocation, until)| (revocation.clone(), *until))
            .collect()
    }

    /// Records `revocation` until `until_unix`.
    pub fn revoke(&self, revocation: &Revocation, until_unix: u64, now_unix: u64) {
        let mut revoked = sync::lock(&self.revoked);
        revoked.retain(|_, &mut until| until >= now_unix);
        if revoked.len() >= MAX_REVOKED
            && let Some(soonest) = revoked
                .iter()
                .min_by_key(|&(_, &until)| until)
                .map(|(k, _)| k.clone())
        {
            revoked.remove(&soonest);
        }
        revoked.insert(revocation.clone(), until_unix);
    }

    /// The leeway allowed after a token's `exp`.
    pub fn token_leeway(&self) -> Duration {
        Duration::from_secs(self.config.jwt.as_ref().map_or(0, |j| j.leeway_secs))
    }

    /// When, on the monotonic clock (`now` is `now_unix` there), a connection whose identity
    /// expires at `expires_at` (Unix seconds) is closed with 4010: the expiry plus the
    /// leeway. `None` for an identity that never expires (`u64::MAX`) or any expiry beyond
    /// what the clock can hold.
    pub fn token_deadline(&self, now: Instant, now_unix: u64, expires_at: u64) -> Option<Instant> {
        if expires_at == u64::MAX {
            return None;
        }
        let left = Duration::from_secs(expires_at.saturating_sub(now_unix));
        now.checked_add(left)?.checked_add(self.token_leeway())
    }

    /// Counts a WebSocket connection attempt from `ip`; `Err` says when to retry.
    pub fn admit_connection_attempt(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.limiters
            .as_ref()
            .map_or(Ok(()), |l| take(&l.connection_attempts, &ip, now))
    }

    /// Counts a client event from `sender` (a user id, or a socket id for anonymous sockets).
    pub fn admit_client_event(&self, sender: &str, now: Instant) -> Result<(), Duration> {
        self.limiters
            .as_ref()
            .map_or(Ok(()), |l| take(&l.client_events, &sender.to_owned(), now))
    }

    /// Cluster mode: shares the app's `api_requests_per_second` among the `nodes` alive, so
    /// that requests spread over the nodes by a load balancer meet the app's limit as a
    /// whole. Each node keeps at least one request per second.
    pub fn share_api_limit(&self, nodes: u64) {
        let (Some(limiters), Some(limits)) = (&self.limiters, &self.config.rate_limits) else {
            return;
        };
        let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
        let capacity = (limits.api_requests_per_second / nodes).max(1);
        let mut limiter = sync::lock(&limiters.api_requests);
        if limiter.rate().capacity != capacity {
            limiter.set_rate(Rate {
                capacity,
                period: Duration::from_secs(1),
            });
        }
    }

    /// Counts an HTTP API request.
    pub fn admit_api_request(&self, now: Instant) -> Result<(), Duration> {
        self.limiters
            .as_ref()
            .map_or(Ok(()), |l| take(&l.api_requests, &(), now))
    }

    /// Subscriptions one connection may hold.
    pub fn max_subscriptions(&self) -> usize {
        let cap = self.config.max_subscriptions_per_connection;
        self.config
            .rate_limits
            .map_or(cap, |r| cap.min(r.subscriptions_per_connection))
    }

    /// Open connections of this app on the whole server.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Cluster mode: records this app's connections on the other nodes (from a heartbeat).
    pub fn set_elsewhere(&self, connections: usize) {
        self.elsewhere.store(connections, Ordering::Relaxed);
    }

    /// Cluster mode: this app's connections on the other nodes, as of the last heartbeat.
    pub fn connections_elsewhere(&self) -> usize {
        self.elsewhere.load(Ordering::Relaxed)
    }

    /// This app's connections on every node: this one's now, the others' as of the last
    /// heartbeat (just [`App::connections`] on a single node).
    pub fn cluster_connections(&self) -> usize {
        self.connections()
            .saturating_add(self.connections_elsewhere())
    }
}

/// All apps, looked up by index, id or key.
pub struct AppTable {
    apps: Vec<App>,
    by_id: HashMap<String, AppIdx>,
    by_key: HashMap<String, AppIdx>,
    connections: AtomicUsize,
    max_connections: usize,
}

/// A connection slot that could not be taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QuotaExceeded {
    /// The whole server is at `server.max_connections`.
    Server,
    /// The app is at its `max_connections`.
    App,
}

impl AppTable {
    /// Builds the table from validated app configs (ids and keys are unique).
    pub fn new(configs: &[AppConfig], max_connections: usize) -> Self {
        let apps: Vec<App> = configs
            .iter()
            .enumerate()
            .map(|(i, config)| App {
                idx: AppIdx(u16::try_from(i).unwrap_or(u16::MAX)),
                secret: hmac_key(&config.secret),
                policies: PolicySet::compile(&config.policies).unwrap_or_default(),
                history: config
                    .history
                    .as_ref()
                    .and_then(|h| crate::core::history::HistoryOptions::compile(h).ok()),
                config: config.clone(),
                connections: AtomicUsize::new(0),
                elsewhere: AtomicUsize::new(0),
                revoked: Mutex::new(HashMap::new()),
                jwks: config
                    .jwt
                    .as_ref()
                    .and_then(JwtConfig::jwks)
                    .map(|_| Arc::new(LiveKeys::default())),
                limiters: config.rate_limits.map(|r| Limiters {
                    connection_attempts: Mutex::new(KeyedLimiter::new(
                        Rate {
                            capacity: r.connections_per_minute_per_ip,
                            period: Duration::from_secs(60),
                        },
                        MAX_LIMITER_KEYS,
                    )),
                    client_events: Mutex::new(KeyedLimiter::new(
                        Rate {
                            capacity: r.client_events_per_minute_per_user,
                            period: Duration::from_secs(60),
                        },
                        MAX_LIMITER_KEYS,
                    )),
                    api_requests: Mutex::new(KeyedLimiter::new(
                        Rate {
                            capacity: r.api_requests_per_second,
                            period: Duration::from_secs(1),
                        },
                        1,
                    )),
                }),
            })
            .collect();
        let by_id = apps.iter().map(|a| (a.config.id.clone(), a.idx)).collect();
        let by_key = apps.iter().map(|a| (a.config.key.clone(), a.idx)).collect();
        Self {
            apps,
            by_id,
            by_key,
            connections: AtomicUsize::new(0),
            max_connections,
        }
    }

    /// The app at `idx`.
    pub fn get(&self, idx: AppIdx) -> &App {
        // Indices are only ever minted by this table, so they are in range.
        &self.apps[idx.get()]
    }

    /// The app with this public key.
    pub fn by_key(&self, key: &str) -> Option<&App> {
        self.by_key.get(key).map(|&idx| self.get(idx))
    }

    /// The app with this id.
    pub fn by_id(&self, id: &str) -> Option<&App> {
        self.by_id.get(id).map(|&idx| self.get(idx))
    }

    /// The app whose `[apps.socketio] path` is `path` (apps are few: a scan).
    pub fn by_socketio_path(&self, path: &str) -> Option<&App> {
        self.apps.iter().find(|app| {
            app.config
                .socketio
                .as_ref()
                .is_some_and(|socketio| socketio.serves(path))
        })
    }

    /// Every app.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.iter()
    }

    /// Number of apps.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether there are no apps (never true for a validated config).
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Open connections on the whole server.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Takes a connection slot for `idx`, checking the server and app quotas. An app's quota
    /// counts its connections on the cluster's other nodes too (as of their last heartbeat).
    pub fn try_connect(&self, idx: AppIdx) -> Result<(), QuotaExceeded> {
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaExceeded::Server);
        }
        let app = self.get(idx);
        let limit = app
            .config
            .max_connections
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
            .saturating_sub(app.connections_elsewhere());
        if app.connections.fetch_add(1, Ordering::AcqRel) >= limit {
            app.connections.fetch_sub(1, Ordering::AcqRel);
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaExceeded::App);
        }
        Ok(())
    }

    /// Gives back a slot taken by [`AppTable::try_connect`].
    pub fn disconnect(&self, idx: AppIdx) {
        self.get(idx).connections.fetch_sub(1, Ordering::AcqRel);
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::jwks::tests::{doc, ec_jwk, new_ec_key};
    use crate::core::auth::jwks::{FetchSchedule, KeySet};
    use crate::core::auth::jwt::{Algorithm, JwtError, sign_es256};
    use crate::core::options::{JwksSource, RateLimits};

    const NOW: u64 = 1_800_000_000;

    fn jwks_app() -> AppTable {
        let mut config = AppConfig::with_credentials("1", "k", "s");
        config.jwt = Some(JwtConfig::with_keys(JwtKeys::Jwks(JwksSource::new(
            "http://127.0.0.1:9/jwks.json",
            Algorithm::Es256,
        ))));
        AppTable::new(&[config], 1000)
    }

    #[test]
    fn a_jwks_app_chooses_the_key_by_kid_and_asks_a_refetch_for_an_unknown_one() {
        let table = jwks_app();
        let app = table.get(AppIdx(0));
        let live = app.jwks().unwrap();
        let (a, b) = (new_ec_key(), new_ec_key());
        let claims = serde_json::json!({"sub": "u1", "exp": NOW + 60});
        let signed = |kid, key| sign_es256(&claims, kid, key).unwrap();

        // Before the first fetch: refused, and a fetch is asked for.
        let early = app.authenticate(Some(&signed(Some("a"), &a)), NOW);
        assert_eq!(early, Err(TokenError::KeysNotLoaded));
        assert!(early.unwrap_err().to_string().contains("not loaded yet"));
        assert!(live.refetch_requested());
        // The fetcher takes the request (at once: min_refetch is 0 here).
        let at_once = FetchSchedule {
            min_refetch: Duration::ZERO,
            ..JwksSource::DEFAULT_SCHEDULE
        };
        assert!(live.wait_for_fetch(at_once, Instant::now()));

        live.install(KeySet::parse(&doc(&[ec_jwk("a", &a)]), Algorithm::Es256).unwrap());
        let identity = app.authenticate(Some(&signed(Some("a"), &a)), NOW).unwrap();
        assert_eq!(identity.unwrap().user_id.as_deref(), Some("u1"));
        // One key: a token without kid takes it.
        assert!(app.authenticate(Some(&signed(None, &a)), NOW).is_ok());
        assert!(!live.refetch_requested());

        let unknown = app.authenticate(Some(&signed(Some("b"), &b)), NOW);
        assert_eq!(unknown, Err(TokenError::UnknownKeyId("b".into())));
        assert!(unknown.unwrap_err().to_string().contains("unknown key id"));
        assert!(live.refetch_requested());

        // After the rotation the new key is chosen and the retired one is unknown.
        live.install(
            KeySet::parse(
                &doc(&[ec_jwk("b", &b), ec_jwk("c", &new_ec_key())]),
                Algorithm::Es256,
            )
            .unwrap(),
        );
        assert!(app.authenticate(Some(&signed(Some("b"), &b)), NOW).is_ok());
        assert_eq!(
            app.authenticate(Some(&signed(Some("a"), &a)), NOW),
            Err(TokenError::UnknownKeyId("a".into()))
        );
        assert_eq!(
            app.authenticate(Some(&signed(None, &b)), NOW),
            Err(TokenError::KidRequired)
        );
        // The kid picks the key, but the signature must still be that key's.
        assert_eq!(
            app.authenticate(Some(&signed(Some("b"), &a)), NOW),
            Err(TokenError::Invalid(JwtError::BadSignature))
        );
    }

    #[test]
    fn a_clusters_nodes_share_an_apps_api_request_limit() {
        let mut config = AppConfig::with_credentials("1", "k", "s");
        config.rate_limits = Some(RateLimits {
            api_requests_per_second: 10,
            ..RateLimits::default()
        });
        let table = AppTable::new(&[config], 1000);
        let app = table.get(AppIdx(0));
        let now = Instant::now();
        let admitted = |at: Instant| {
            (0..20)
                .filter(|_| app.admit_api_request(at).is_ok())
                .count()
        };
        app.share_api_limit(3);
        assert_eq!(admitted(now), 3, "10 per second over 3 nodes");
        app.share_api_limit(1);
        assert_eq!(admitted(now + Duration::from_secs(1)), 10);
        // However many nodes, each keeps one request per second.
        app.share_api_limit(50);
        assert_eq!(admitted(now + Duration::from_secs(2)), 1);
    }
}
