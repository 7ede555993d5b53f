//! The socket's side of a subscription: the signature and policies decide, the home shard
//! admits, the subscription goes from pending to active, and leaving undoes it.

use bytes::Bytes;

use super::AuditAction;
use super::AuthCall;
use super::Shard;
use super::conn::{Conn, Grant, SubState, Subscription};
use super::mesh::{Admission, ConnKey, Join, MeshMsg};
use crate::core::auth::SignedClaims;
use crate::core::auth::channel::{
    AuthContext, ChannelAuthorized, authorize_by_endpoint, authorize_subscription,
};
use crate::core::auth::endpoint::EndpointAnswer;
use crate::core::channel::{ChannelKind, ChannelName, ChannelNameError};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::policy::{Decision, Resources, Subject};
use crate::core::wire::{Refusal, Reply, SubscribeRequest};
use ringcast_shared::{AuditDecision, AuditKind};

/// Evaluates the app's policies for a subscription to `channel` whose signature holds (or
/// held, when a change re-checks it). The subject is the connection's JWT identity; without
/// one, the signed sign-in user, else the presence member `member` (with `tenant_id`, `actor`
/// and `roles` read from its signed `user_info`).
pub(super) fn policy_decision(
    app: &crate::core::app::App,
    conn: &Conn,
    channel: &ChannelName,
    member: Option<(&UserId, Option<&str>)>,
    resources: &Resources,
) -> Decision {
    if app.policies.is_empty() {
        return Decision::Allow { rules: Vec::new() };
    }
    if let Some(identity) = conn.identity.as_deref() {
        let subject = Subject {
            user_id: identity.user_id.as_deref(),
            tenant: identity.tenant.as_deref(),
            actor: identity.actor.as_deref(),
            roles: &identity.roles,
        };
        return app.policies.evaluate(channel, &subject, resources);
    }
    let info_text = match &conn.user {
        Some(_) => conn.signin_info.as_deref(),
        None => member.and_then(|(_, info)| info),
    };
    let claims = SignedClaims::parse(info_text);
    let subject = Subject {
        user_id: conn
            .user
            .as_ref()
            .or(member.map(|(user, _)| user))
            .map(UserId::as_str),
        tenant: claims.tenant.as_deref(),
        actor: claims.actor.as_deref(),
        roles: &claims.roles,
    };
    app.policies.evaluate(channel, &subject, resources)
}

/// The audit rule of a subscription a signature admitted (or refused).
const SIGNATURE_RULE: &str = "signature";
/// The audit rule of a subscription the app's auth endpoint admitted (or refused).
const ENDPOINT_RULE: &str = "auth_endpoint";

/// What the signature check needs to know about connection `conn` of `app`.
fn auth_context<'a>(app: &'a crate::core::app::App, conn: &'a Conn) -> AuthContext<'a> {
    AuthContext {
        app_key: &app.config.key,
        secret: &app.secret,
        socket_id: conn.socket_id,
        max_user_id_chars: app.config.max_user_id_chars,
        max_user_info_bytes: app.config.max_user_info_bytes,
        signed_in_user: conn.user.as_ref(),
    }
}

impl Shard {
    pub(super) fn subscribe(&mut self, key: ConnKey, request: SubscribeRequest<'_>) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let app = self.state.apps.get(conn.app);
        let channel = match ChannelName::parse(&request.channel, app.config.max_channel_name_chars)
        {
            Ok(channel) => channel,
            Err(err) => {
                self.refuse_channel_name(key, &request.channel, err);
                return;
            }
        };
        if conn.subscriptions.iter().any(|s| s.channel == channel) {
            // Clients never re-subscribe an active channel (pusher-js does not); a repeat is a
            // no-op.
            return;
        }
        if conn.subscriptions.len() >= app.max_subscriptions() {
            let refusal = Refusal::TooManySubscriptions {
                max: app.max_subscriptions(),
            };
            self.audit_conn(
                key,
                AuditKind::Security,
                AuditAction::RateLimit,
                AuditDecision::Deny,
                Some(channel.as_str()),
                Some("subscriptions_per_connection"),
                Some(refusal.to_string()),
            );
            self.refuse_subscription(key, &channel, &refusal);
            return;
        }
        let needs_endpoint = channel.kind().requires_signature()
            && request.auth.is_none()
            && app
                .config
                .socketio
                .as_ref()
                .is_some_and(|s| s.auth_endpoint.is_some());
        if let (true, Some(headers)) = (needs_endpoint, request.forward) {
            let call = AuthCall {
                app: app.idx,
                conn: key,
                socket_id: conn.socket_id,
                channel: channel.clone(),
                headers,
            };
            if let Some(conn) = self.conns.get_mut(key) {
                conn.subscriptions.push(Subscription {
                    channel,
                    user: None,
                    state: SubState::Authorizing,
                    grant: Grant::Signature,
                    history_id: None,
                });
            }
            self.auth_calls.push(call);
            return;
        }
        let ctx = auth_context(app, conn);
        let proof = authorize_subscription(
            &ctx,
            channel.clone(),
            request.auth.as_deref(),
            request.channel_data.as_deref(),
        )
        .map_err(Refusal::Signature);
        self.admit(key, &channel, proof, SIGNATURE_RULE);
    }

    /// The app's auth endpoint answered for the subscription of connection `key` to
    /// `channel` that [`Shard::take_auth_calls`] handed out (laravel-echo-server's way of
    /// authorizing); the subscription goes on as a signed one would. An answer for a socket
    /// that has gone or left the channel meanwhile is dropped.
    pub fn handle_channel_auth(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        channel: &ChannelName,
        answer: &EndpointAnswer,
        now: std::time::Instant,
    ) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
            return;
        };
        let Some(position) = conn
            .subscriptions
            .iter()
            .position(|s| &s.channel == channel && s.state == SubState::Authorizing)
        else {
            return;
        };
        conn.subscriptions.swap_remove(position);
        let conn = &self.conns[key];
        let app = self.state.apps.get(conn.app);
        let ctx = auth_context(app, conn);
        let proof = authorize_by_endpoint(&ctx, channel.clone(), answer).map_err(Refusal::Endpoint);
        self.admit(key, channel, proof, ENDPOINT_RULE);
        self.drain_to_self(now);
    }

    /// Hands out the subscriptions waiting for an app's auth endpoint.
    pub fn take_auth_calls(&mut self, out: &mut Vec<AuthCall>) {
        out.append(&mut self.auth_calls);
    }

    /// Policies come on top of the proof (`source` names what gave it, for the audit), then
    /// the socket joins or is told why not.
    fn admit(
        &mut self,
        key: ConnKey,
        channel: &ChannelName,
        proof: Result<ChannelAuthorized, Refusal>,
        source: &'static str,
    ) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let app = self.state.apps.get(conn.app);
        // The presence member the audit names when the socket has no token or sign-in.
        let member = proof.as_ref().ok().and_then(|p| p.member().cloned());
        let outcome = proof.and_then(|proof| {
            match policy_decision(
                app,
                conn,
                proof.channel(),
                proof.member().map(|m| (&m.user_id, m.user_info.as_deref())),
                &self.per_app[app.idx].resources,
            ) {
                Decision::Allow { rules } => Ok((proof, rules)),
                Decision::Deny { rule, reason } => Err(Refusal::Policy { rule, reason }),
            }
        });
        let signed =
            channel.kind().requires_signature() || channel.kind() == ChannelKind::ServerToUser;
        match outcome {
            Ok((proof, rules)) => {
                // Public channels no rule covers involve no authorization decision.
                if signed || !rules.is_empty() {
                    let rule = if rules.is_empty() {
                        source.to_owned()
                    } else {
                        rules.join(",")
                    };
                    self.audit_about(
                        key,
                        member.as_ref(),
                        AuditKind::Decision,
                        AuditAction::Subscribe,
                        AuditDecision::Allow,
                        Some(channel.as_str()),
                        Some(&rule),
                        None,
                    );
                }
                let grant = if rules.is_empty() {
                    Grant::Signature
                } else {
                    Grant::Rules {
                        member_info: member.and_then(|m| m.user_info),
                    }
                };
                self.join(key, proof, grant);
            }
            Err(refusal) => {
                let (rule, reason) = match &refusal {
                    Refusal::Policy { rule, reason } => (rule.as_str(), reason.clone()),
                    other => (source, other.to_string()),
                };
                self.audit_about(
                    key,
                    member.as_ref(),
                    AuditKind::Decision,
                    AuditAction::Subscribe,
                    AuditDecision::Deny,
                    Some(channel.as_str()),
                    Some(rule),
                    Some(reason),
                );
                self.refuse_subscription(key, channel, &refusal);
            }
        }
    }

    /// Tells the socket its subscription to `channel` is refused (the connection stays open).
    fn refuse_subscription(&mut self, key: ConnKey, channel: &ChannelName, refusal: &Refusal) {
        let reply = Reply::SubscriptionRefused {
            channel: channel.as_str(),
            refusal,
        };
        self.reply(key, &reply);
    }

    /// Refuses a subscription to a name that is no channel's, on that name as sent: pusher-js
    /// finds the channel object by it, so Echo's `.error()` fires instead of the channel
    /// waiting for ever. The message is bounded by `max_ws_message_bytes`.
    pub(super) fn refuse_channel_name(&mut self, key: ConnKey, raw: &str, err: ChannelNameError) {
        let reply = Reply::SubscriptionRefused {
            channel: raw,
            refusal: &Refusal::InvalidName(err),
        };
        self.reply(key, &reply);
    }

    /// Records a pending subscription and asks the channel's home shard to admit it.
    pub(super) fn join(&mut self, key: ConnKey, proof: ChannelAuthorized, grant: Grant) {
        let (channel, member) = proof.into_parts();
        let user = member.as_ref().map(|m| m.user_id.clone());
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let recover_as = self.recovery_user(conn, user.as_ref());
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let replay_after = Self::take_offset(conn, &channel);
        conn.subscriptions.push(Subscription {
            channel: channel.clone(),
            user,
            state: SubState::Pending,
            grant,
            history_id: None,
        });
        let msg = MeshMsg::Subscribe(Join {
            shard: self.id,
            conn: key,
            socket_id: conn.socket_id,
            app: conn.app,
            channel: channel.clone(),
            member,
            wire: conn.wire,
            recover_as,
            replay_after,
        });
        let app = conn.app;
        self.send_home(app, &channel, msg);
    }

    pub(super) fn unsubscribe(&mut self, key: ConnKey, raw: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(position) = conn
            .subscriptions
            .iter()
            .position(|s| s.channel.as_str() == raw)
        else {
            // Unsubscribing from a channel one is not in gets no reply, like any unsubscribe.
            return;
        };
        let sub = conn.subscriptions.swap_remove(position);
        let (app, socket_id) = (conn.app, conn.socket_id);
        self.leave(key, app, socket_id, sub);
    }

    /// Takes a socket out of a channel: locally at once, and at the home shard if it had
    /// been admitted there (a pending one is undone when its confirmation arrives).
    pub(super) fn leave(
        &mut self,
        key: ConnKey,
        app: AppIdx,
        socket_id: SocketId,
        sub: Subscription,
    ) {
        if sub.state != SubState::Active {
            return;
        }
        let shard = &mut self.per_app[app];
        if let Some(subscribers) = shard.local.get_mut(&sub.channel) {
            subscribers.swap_remove(&key);
            if subscribers.is_empty() {
                shard.local.remove(&sub.channel);
                shard.history_delivered.remove(&sub.channel);
            }
        }
        self.counters
            .subscriptions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let msg = MeshMsg::Unsubscribe {
            shard: self.id,
            socket_id,
            app,
            channel: sub.channel.clone(),
            user: sub.user,
        };
        self.send_home(app, &sub.channel, msg);
    }

    pub(super) fn leave_all(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let subscriptions = std::mem::take(&mut conn.subscriptions);
        let (app, socket_id) = (conn.app, conn.socket_id);
        for sub in subscriptions {
            // The connection ends (no unsubscribe): a history channel's home remembers where
            // an identified user left.
            self.report_departure(key, &sub);
            self.leave(key, app, socket_id, sub);
        }
    }

    pub(super) fn subscribe_accepted(&mut self, admission: Admission) {
        let Admission {
            conn: key,
            socket_id,
            app,
            channel,
            user,
            frame,
            then,
            history_id,
        } = admission;
        let pending = self
            .conns
            .get_mut(key)
            .filter(|c| c.socket_id == socket_id)
            .and_then(|conn| {
                conn.subscriptions
                    .iter_mut()
                    .find(|s| s.channel == channel && s.state == SubState::Pending)
            });
        match pending {
            Some(sub) => {
                sub.state = SubState::Active;
                sub.history_id = history_id;
                self.per_app[app]
                    .local
                    .entry(channel)
                    .or_default()
                    .insert(key);
                self.counters
                    .subscriptions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.send_frame(key, frame);
                for then in then {
                    self.send_frame(key, then);
                }
            }
            None => {
                // The socket left (or unsubscribed) while the home shard was admitting it:
                // undo the admission so counts and rosters stay exact.
                let msg = MeshMsg::Unsubscribe {
                    shard: self.id,
                    socket_id,
                    app,
                    channel: channel.clone(),
                    user,
                };
                self.send_home(app, &channel, msg);
            }
        }
    }

    pub(super) fn subscribe_refused(
        &mut self,
        key: ConnKey,
        socket_id: SocketId,
        channel: &ChannelName,
        frame: Bytes,
    ) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.socket_id == socket_id) else {
            return;
        };
        if let Some(position) = conn
            .subscriptions
            .iter()
            .position(|s| &s.channel == channel && s.state == SubState::Pending)
        {
            conn.subscriptions.swap_remove(position);
            self.send_frame(key, frame);
        }
    }
}
