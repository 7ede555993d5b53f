//! Token renewal without reconnecting: a client sends `ringcast:renew` with a newer token for
//! the same subject; the connection takes it (new expiry, new claims) or keeps the old one.

use std::time::Instant;

use super::AuditAction;
use super::Shard;
use super::events::client_event_rate;
use super::mesh::ConnKey;
use crate::core::app::TokenError;
use crate::core::auth::jwt::Identity;
use crate::core::wire::Reply;
use ringcast_shared::{AuditDecision, AuditKind};

/// The wall clock as the shell last read it, so the shard can tell Unix time at a point of
/// its monotonic clock (token `exp` and `iat` are Unix seconds).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    at: Instant,
    unix: u64,
}

impl WallClock {
    /// Unix time `unix` (seconds) was read at `at`.
    pub fn new(at: Instant, unix: u64) -> Self {
        Self { at, unix }
    }

    /// Unix seconds at `now`.
    pub fn unix(&self, now: Instant) -> u64 {
        self.unix + now.saturating_duration_since(self.at).as_secs()
    }

    /// Unix milliseconds at `at`, which may be before the clock was read.
    pub fn unix_ms(&self, at: Instant) -> u64 {
        let base = self.unix.saturating_mul(1000);
        match at.checked_duration_since(self.at) {
            Some(after) => base.saturating_add(after.as_millis() as u64),
            None => base.saturating_sub(self.at.duration_since(at).as_millis() as u64),
        }
    }
}

/// Why a renewal was refused. The connection keeps its current token either way.
#[derive(Debug, thiserror::Error)]
enum RenewRefusal {
    #[error("this app does not use tokens ([apps.jwt])")]
    NoTokens,
    #[error("the connection has no token to renew: reconnect with one")]
    NoToken,
    #[error("too many renewals: retry in a second")]
    RateLimited,
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    #[error("the new token is for another {0}")]
    OtherSubject(&'static str),
}

impl Shard {
    /// Sets the wall clock (the shell reads it every tick, so a clock step is followed).
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.wall = wall;
    }

    /// Renews connection `key`'s token with `token`, answering `ringcast:renewed` or
    /// `ringcast:renew_failed`. Subscriptions its rules admitted are checked again when the
    /// new token's roles differ.
    pub(super) fn renew(&mut self, key: ConnKey, token: &str, now: Instant) {
        match self.try_renew(key, token, now) {
            Ok((expires_at, roles_changed)) => {
                self.reply(key, &Reply::Renewed { expires_at });
                self.audit_conn(
                    key,
                    AuditKind::Decision,
                    AuditAction::Renew,
                    AuditDecision::Allow,
                    None,
                    Some("jwt"),
                    None,
                );
                if roles_changed {
                    self.reauthorize_conn(key, "token renewed with other roles");
                }
            }
            Err(refusal) => {
                let reason = refusal.to_string();
                self.reply(key, &Reply::RenewFailed { reason: &reason });
                let (kind, rule) = match refusal {
                    RenewRefusal::RateLimited => (AuditKind::Security, "client_events"),
                    _ => (AuditKind::Decision, "jwt"),
                };
                self.audit_conn(
                    key,
                    kind,
                    AuditAction::Renew,
                    AuditDecision::Deny,
                    None,
                    Some(rule),
                    Some(reason),
                );
            }
        }
    }

    /// Takes the new token if it is valid and names the same user, tenant and actor; the new
    /// expiry and whether the roles changed.
    fn try_renew(
        &mut self,
        key: ConnKey,
        token: &str,
        now: Instant,
    ) -> Result<(u64, bool), RenewRefusal> {
        let now_unix = self.wall.unix(now);
        let Some(conn) = self.conns.get_mut(key) else {
            return Err(RenewRefusal::NoToken);
        };
        let app = self.state.apps.get(conn.app);
        if app.config.jwt.is_none() {
            return Err(RenewRefusal::NoTokens);
        }
        let rate = client_event_rate(app.config.client_events_per_second);
        if conn.client_events.try_acquire(rate, now).is_err() {
            return Err(RenewRefusal::RateLimited);
        }
        let current = conn.identity.as_deref().ok_or(RenewRefusal::NoToken)?;
        let renewed = app
            .authenticate(Some(token), now_unix)?
            .ok_or(RenewRefusal::NoToken)?;
        if let Some(field) = other_subject(current, &renewed) {
            return Err(RenewRefusal::OtherSubject(field));
        }
        let roles_changed = current.roles != renewed.roles;
        conn.token_expires = app.token_deadline(now, now_unix, renewed.expires_at);
        let expires_at = renewed.expires_at;
        conn.identity = Some(Box::new(renewed));
        Ok((expires_at, roles_changed))
    }
}

/// Which part of the subject a renewed token changes, if any: a renewal extends a session,
/// it never turns it into someone else's.
fn other_subject(current: &Identity, renewed: &Identity) -> Option<&'static str> {
    if current.user_id != renewed.user_id {
        Some("user")
    } else if current.tenant != renewed.tenant {
        Some("tenant")
    } else if current.actor != renewed.actor {
        Some("actor")
    } else {
        None
    }
}
