//! Audit records of decisions and security events, with the counters they feed.

use std::net::IpAddr;

use super::Shard;
use super::mesh::ConnKey;
use crate::core::auth::SignedClaims;
use crate::core::auth::channel::PresenceMember;
use crate::core::counters::inc;
use crate::core::ids::{AppIdx, UserId};
use ringcast_shared::{AuditDecision, AuditKind, AuditRecord};

/// What was attempted, as audit records name it (the record's `action`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AuditAction {
    /// A channel subscription.
    Subscribe,
    /// A live subscription checked again after what its rules read changed.
    Reauthorize,
    /// A user sign-in on a connection.
    Signin,
    /// A connection's token.
    Token,
    /// A token renewal on a live connection (`ringcast:renew`).
    Renew,
    /// A signed HTTP API request.
    ApiSignature,
    /// Anything a rate limit refused; every rate-limit refusal is audited with this action.
    RateLimit,
    /// A connection's `Origin`.
    Origin,
    /// A frame that broke the WebSocket protocol or a size limit.
    Protocol,
    /// An admin's sign-in to the dashboard.
    AdminSignin,
    /// An admin's dashboard API call.
    AdminApi,
    /// An event published (HTTP API or client event): its name, channel, size and sender,
    /// never its data.
    Publish,
}

/// The rule of a publish record for an event from the HTTP API.
pub(super) const PUBLISHED_BY_API: &str = "http_api";
/// The rule of a publish record for a client event.
pub(super) const PUBLISHED_BY_CLIENT: &str = "client_event";

/// The reason of a publish record: the event's name and its data's size, never the data.
pub(super) fn publish_reason(event: &str, bytes: usize) -> String {
    format!("event {event:?}, {bytes} bytes")
}

impl AuditAction {
    /// The name stored in the record and searched by the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Subscribe => "subscribe",
            AuditAction::Reauthorize => "reauthorize",
            AuditAction::Signin => "signin",
            AuditAction::Token => "token",
            AuditAction::Renew => "renew",
            AuditAction::ApiSignature => "api_signature",
            AuditAction::RateLimit => "rate_limit",
            AuditAction::Origin => "origin",
            AuditAction::Protocol => "protocol",
            AuditAction::AdminSignin => "admin_signin",
            AuditAction::AdminApi => "admin_api",
            AuditAction::Publish => "publish",
        }
    }
}

impl Shard {
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
        action: AuditAction,
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
            action: action.as_str().to_owned(),
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

    /// Records the metadata of an event published to `channel` through the HTTP API (the
    /// event name and the data's size, never the data), if the app audits publishes.
    pub(super) fn audit_api_publish(
        &mut self,
        app: AppIdx,
        channel: &str,
        event: &str,
        bytes: usize,
    ) {
        if !self.state.apps.get(app).config.audit_publishes {
            return;
        }
        self.audit.push(AuditRecord {
            time_ms: 0,
            kind: AuditKind::Decision,
            action: AuditAction::Publish.as_str().to_owned(),
            app: self.state.apps.get(app).config.id.clone(),
            tenant: None,
            user: None,
            actor: None,
            socket: None,
            remote_ip: None,
            channel: Some(channel.to_owned()),
            decision: AuditDecision::Allow,
            rule: Some(PUBLISHED_BY_API.to_owned()),
            reason: Some(publish_reason(event, bytes)),
        });
    }

    /// Records an admin's action (sign-in, dashboard API call), with no app.
    pub fn audit_admin(
        &mut self,
        kind: AuditKind,
        action: AuditAction,
        admin: Option<&str>,
        decision: AuditDecision,
        remote: IpAddr,
        reason: Option<String>,
    ) {
        if kind == AuditKind::Decision && decision == AuditDecision::Deny {
            inc(&self.counters.auth_failures);
        }
        self.audit.push(AuditRecord {
            time_ms: 0,
            kind,
            action: action.as_str().to_owned(),
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

    /// Counts a rate-limit refusal (every one is audited as [`AuditAction::RateLimit`]).
    pub(super) fn count_rate_limit(&self, app: AppIdx, action: AuditAction) {
        if action != AuditAction::RateLimit {
            return;
        }
        inc(&self.counters.rate_limited);
        inc(&self.counters.app(app).rate_limited);
    }

    /// Counts a failed authorization (a denied decision) per app and per tenant.
    pub(super) fn count_denial(
        &self,
        app: AppIdx,
        kind: AuditKind,
        decision: AuditDecision,
        tenant: Option<&str>,
    ) {
        if kind != AuditKind::Decision || decision != AuditDecision::Deny {
            return;
        }
        inc(&self.counters.auth_failures);
        inc(&self.counters.app(app).auth_failures);
        if let Some(tenant) = tenant {
            self.state.tenants.count(app, tenant);
        }
    }

    /// Records an audit entry about connection `key`, with its identity filled in.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_conn(
        &mut self,
        key: ConnKey,
        kind: AuditKind,
        action: AuditAction,
        decision: AuditDecision,
        channel: Option<&str>,
        rule: Option<&str>,
        reason: Option<String>,
    ) {
        self.audit_about(key, None, kind, action, decision, channel, rule, reason);
    }

    /// Records an audit entry about connection `key`. The subject is the one policies judge:
    /// the connection's token identity; else its signed-in user (`tenant_id` and `actor`
    /// from the sign-in `user_info`); else `member`, the presence member it asked to be.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_about(
        &mut self,
        key: ConnKey,
        member: Option<&PresenceMember>,
        kind: AuditKind,
        action: AuditAction,
        decision: AuditDecision,
        channel: Option<&str>,
        rule: Option<&str>,
        reason: Option<String>,
    ) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let subject = match (conn.identity.as_deref(), &conn.user, member) {
            (Some(identity), ..) => AuditSubject {
                user: identity
                    .user_id
                    .clone()
                    .or_else(|| conn.user.as_ref().map(|u| u.as_str().to_owned())),
                tenant: identity.tenant.clone(),
                actor: identity.actor.clone(),
            },
            (None, Some(user), _) => AuditSubject::signed(user, conn.signin_info.as_deref()),
            (None, None, Some(member)) => {
                AuditSubject::signed(&member.user_id, member.user_info.as_deref())
            }
            (None, None, None) => AuditSubject::default(),
        };
        self.count_denial(conn.app, kind, decision, subject.tenant.as_deref());
        self.count_rate_limit(conn.app, action);
        self.audit.push(AuditRecord {
            time_ms: 0,
            kind,
            action: action.as_str().to_owned(),
            app: self.state.apps.get(conn.app).config.id.clone(),
            tenant: subject.tenant,
            user: subject.user,
            actor: subject.actor,
            socket: Some(conn.socket_id.to_string()),
            remote_ip: Some(conn.remote.to_string()),
            channel: channel.map(str::to_owned),
            decision,
            rule: rule.map(str::to_owned),
            reason,
        });
    }
}

/// Who an audited decision is about.
#[derive(Default)]
struct AuditSubject {
    user: Option<String>,
    tenant: Option<String>,
    actor: Option<String>,
}

impl AuditSubject {
    /// A user the app signed (sign-in `user_data` or presence `channel_data`), with
    /// `tenant_id` and `actor` read from its `user_info`.
    fn signed(user: &UserId, user_info: Option<&str>) -> Self {
        let claims = SignedClaims::parse(user_info);
        Self {
            user: Some(user.as_str().to_owned()),
            tenant: claims.tenant,
            actor: claims.actor,
        }
    }
}
