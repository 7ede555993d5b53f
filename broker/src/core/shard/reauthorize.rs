//! Live re-authorization: a subscription that policy rules admitted is checked again when
//! what they read changes (a resource is set or deleted, a token is renewed with other
//! claims). One no longer allowed is taken out of its channel: the subscriber gets
//! `ringcast:subscription_revoked` on it, a presence roster loses the member as on any
//! unsubscribe, and an audit record says which rule refused it and why.

use super::AuditAction;
use super::Shard;
use super::conn::Grant;
use super::mesh::ConnKey;
use super::subscribe::policy_decision;
use crate::core::auth::channel::PresenceMember;
use crate::core::channel::ChannelName;
use crate::core::ids::AppIdx;
use crate::core::policy::Decision;
use crate::core::wire::Reply;
use ringcast_shared::{AuditDecision, AuditKind};

/// A subscription the rules now refuse.
struct Withdrawn {
    channel: ChannelName,
    rule: String,
    reason: String,
}

impl Shard {
    /// Checks again, on this shard, every subscription to `app`'s channels that rules admitted,
    /// after resource `kind` `id` changed. Apps with no rule about `kind` are left alone.
    pub(super) fn reauthorize_app(&mut self, app: AppIdx, kind: &str, id: &str) {
        if !self.state.apps.get(app).policies.uses_resource(kind) {
            return;
        }
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.app == app
                    && c.subscriptions
                        .iter()
                        .any(|s| matches!(s.grant, Grant::Rules { .. }))
            })
            .map(|(k, _)| k)
            .collect();
        let cause = format!("{kind} {id:?} changed");
        for key in keys {
            self.reauthorize_conn(key, &cause);
        }
    }

    /// Checks again the rule-admitted subscriptions of connection `key` (whose identity or
    /// the resources its rules read changed), withdrawing those no longer allowed; `cause`
    /// opens the audit reason.
    pub(super) fn reauthorize_conn(&mut self, key: ConnKey, cause: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let app = self.state.apps.get(conn.app);
        let resources = &self.per_app[conn.app].resources;
        let withdrawn: Vec<Withdrawn> = conn
            .subscriptions
            .iter()
            .filter_map(|sub| {
                let Grant::Rules { member_info } = &sub.grant else {
                    return None;
                };
                let member = sub.user.as_ref().map(|u| (u, member_info.as_deref()));
                match policy_decision(app, conn, &sub.channel, member, resources) {
                    Decision::Allow { .. } => None,
                    Decision::Deny { rule, reason } => Some(Withdrawn {
                        channel: sub.channel.clone(),
                        rule,
                        reason,
                    }),
                }
            })
            .collect();
        for gone in withdrawn {
            self.withdraw(key, gone, cause);
        }
    }

    fn withdraw(&mut self, key: ConnKey, gone: Withdrawn, cause: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(position) = conn
            .subscriptions
            .iter()
            .position(|s| s.channel == gone.channel)
        else {
            return;
        };
        let sub = conn.subscriptions.swap_remove(position);
        let (app, socket_id) = (conn.app, conn.socket_id);
        // Without token or sign-in, the audited subject is the presence member it joined as.
        let member = sub.user.clone().map(|user_id| PresenceMember {
            user_id,
            user_info: match &sub.grant {
                Grant::Rules { member_info } => member_info.clone(),
                Grant::Signature => None,
            },
        });
        // A pending subscription is undone when its admission arrives and finds it gone.
        self.leave(key, app, socket_id, sub);
        self.reply(
            key,
            &Reply::SubscriptionRevoked {
                channel: &gone.channel,
                rule: &gone.rule,
                reason: &gone.reason,
            },
        );
        self.audit_about(
            key,
            member.as_ref(),
            AuditKind::Decision,
            AuditAction::Reauthorize,
            AuditDecision::Deny,
            Some(gone.channel.as_str()),
            Some(&gone.rule),
            Some(format!("{cause}: {}", gone.reason)),
        );
    }
}
