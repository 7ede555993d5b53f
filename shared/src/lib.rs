//! Types shared by the Ringcast broker and its admin UI.
//!
//! Everything here compiles for `wasm32-unknown-unknown` as well as for the broker: plain
//! data with `serde` (the admin API's JSON) and `rkyv` (the audit store's encoding), no I/O.

use serde::{Deserialize, Serialize};

/// The broker's health, as `GET /up` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving.
    Ok,
    /// Cluster mode with Redis out of reach: serving this node's own clients only, so the
    /// node stays in a load balancer's pool (200).
    Degraded,
    /// Shutting down: not accepting new work (503).
    Draining,
}

/// The body of `GET /up`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpReport {
    /// The health.
    pub health: Health,
    /// Degraded: what is wrong with the cluster link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Draining: why new work is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether an audit record is an authorization decision or another security event.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An authorization decision (subscribe, sign-in, token, API signature).
    Decision,
    /// A security event (rate limit hit, origin refused, protocol violation, ...).
    Security,
}

/// The outcome recorded.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// Allowed.
    Allow,
    /// Refused.
    Deny,
}

/// One audit record. It never holds a message body: only who, where, what was decided and why.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Decision or security event.
    pub kind: AuditKind,
    /// What was attempted: `subscribe`, `signin`, `token`, `api_signature`, `rate_limit`,
    /// `origin`, `protocol`, ...
    pub action: String,
    /// The app id.
    pub app: String,
    /// Tenant of the subject, if known.
    pub tenant: Option<String>,
    /// User of the subject, if known.
    pub user: Option<String>,
    /// Actor type of the subject, if known.
    pub actor: Option<String>,
    /// Socket id, for WebSocket events.
    pub socket: Option<String>,
    /// Remote IP address.
    pub remote_ip: Option<String>,
    /// Channel, for channel events.
    pub channel: Option<String>,
    /// Allowed or refused.
    pub decision: AuditDecision,
    /// The rule that decided (policy name, limit name, check name).
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
}

/// A page of audit records, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A live picture of the broker for the dashboard: `GET /admin/api/overview` once, or
/// `GET /admin/api/live`, one per second as server-sent events. Counters are totals since
/// start; the dashboard turns consecutive snapshots into rates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Open WebSocket connections.
    pub connections: i64,
    /// Channel subscriptions.
    pub subscriptions: i64,
    /// WebSocket messages received.
    pub messages_in: u64,
    /// Frames queued for sending.
    pub messages_out: u64,
    /// Event frames queued to subscribers.
    pub deliveries: u64,
    /// Denied authorization decisions.
    pub auth_failures: u64,
    /// Requests refused by a rate limit.
    pub rate_limited: u64,
    /// Connections closed for not reading (4100).
    pub slow_consumers_closed: u64,
    /// Delivery latency (acceptance to socket write) since the previous snapshot, median
    /// and 99th percentile in microseconds; `None` when nothing was delivered.
    pub latency_p50_us: Option<u64>,
    /// See `latency_p50_us`.
    pub latency_p99_us: Option<u64>,
    /// Connections per shard (the balance between cores).
    pub shards: Vec<i64>,
    /// Per app.
    pub apps: Vec<AppLoad>,
    /// Open connections and denied authorizations per app and tenant.
    pub tenants: Vec<TenantLoad>,
    /// In a cluster: this node's place in it (every other figure is this node's).
    #[serde(default)]
    pub cluster: Option<ClusterView>,
    /// `[apps.receipts]` messages whose delivery receipts were kept, every app.
    #[serde(default)]
    pub receipts_tracked: u64,
}

/// A node of a cluster, as its dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's id.
    pub node: String,
    /// Whether the node is connected to Redis and in sync (otherwise it is degraded).
    pub in_sync: bool,
    /// Nodes alive at the last heartbeat, this one included.
    pub nodes: u64,
}

/// One app in an [`Overview`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLoad {
    /// The app id.
    pub id: String,
    /// Open connections.
    pub connections: i64,
    /// Events published.
    pub publishes: u64,
    /// Event frames delivered.
    pub deliveries: u64,
    /// Denied authorization decisions.
    pub auth_failures: u64,
    /// Rate-limit refusals.
    pub rate_limited: u64,
    /// In a cluster: open connections on every node (the others' as of their last
    /// heartbeat).
    #[serde(default)]
    pub cluster_connections: Option<i64>,
    /// With `[apps.history]`: what this node's history channels hold and replayed.
    #[serde(default)]
    pub history: Option<HistoryLoad>,
    /// With `[apps.inbox]`: what this node's inbox store holds for the app's users.
    #[serde(default)]
    pub inbox: Option<InboxLoad>,
}

/// One app's channel history in an [`AppLoad`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLoad {
    /// Events held.
    pub events: i64,
    /// Bytes they take.
    pub bytes: i64,
    /// Replays sent to returning users.
    pub replays: u64,
    /// Events those replays carried.
    pub replayed_events: u64,
}

/// One app's inbox in an [`AppLoad`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxLoad {
    /// Notifications held (kept, less those evicted or expired), read or not.
    pub held: u64,
    /// Notifications marked read.
    pub acked: u64,
}

/// One tenant of one app in an [`Overview`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLoad {
    /// The app id.
    pub app: String,
    /// The tenant.
    pub tenant: String,
    /// Open connections whose token or sign-in names this tenant.
    pub connections: i64,
    /// Denied authorization decisions.
    pub auth_failures: u64,
}

/// The signed-in admin (`POST /admin/api/login`, `GET /admin/api/session`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSession {
    /// Who.
    pub name: String,
    /// Sent back as `X-CSRF-Token` on every call that changes something.
    pub csrf: String,
}

/// One configured app as the dashboard shows it (`GET /admin/api/apps`); the secret is
/// masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// App id.
    pub id: String,
    /// App key.
    pub key: String,
    /// The secret with all but its first and last two characters hidden.
    pub secret: String,
    /// Whether connections are accepted.
    pub enabled: bool,
    /// Connection quota; `None` is unlimited.
    pub max_connections: Option<u64>,
    /// Largest event data.
    pub max_message_bytes: u64,
    /// `enabled`, `members_only` or `disabled`.
    pub client_events: String,
    /// Client events per second per connection.
    pub client_events_per_second: u64,
    /// Distinct users per presence channel.
    pub max_presence_members: u64,
    /// Subscriptions per connection.
    pub max_subscriptions_per_connection: u64,
    /// Allowed browser origins.
    pub allowed_origins: Vec<String>,
    /// Whether `[apps.rate_limits]` is set.
    pub rate_limits: bool,
    /// Whether JWT connection auth is configured.
    pub jwt: bool,
    /// Policy rule names.
    pub policies: Vec<String>,
    /// Webhook endpoints.
    pub webhooks: u64,
}

/// `GET /admin/api/apps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppList {
    /// Every configured app.
    pub apps: Vec<AppSummary>,
}

/// A resource the app backend marked `status = DISPUTED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// Resource type, e.g. `escrow`.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// Who takes part.
    pub participants: Vec<String>,
    /// Its attributes (e.g. `status`).
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The tenant it belongs to, if the backend scoped it to one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Channels its policy rules name, without a `private-` prefix.
    pub channels: Vec<String>,
}

/// `GET /admin/api/apps/{id}/disputes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeList {
    /// The app's key, for the dashboard's WebSocket URL.
    pub key: String,
    /// The disputed resources.
    pub disputes: Vec<Dispute>,
}

/// `pusher:signin` data signed by the broker for the dashboard's own socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigninData {
    /// `key:signature`.
    pub auth: String,
    /// The signed user data (JSON text).
    pub user_data: String,
}

/// `POST /admin/api/apps/{id}/pusher-auth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PusherAuth {
    /// Signs the socket in as the admin.
    pub signin: SigninData,
    /// The private channel's subscription auth, when a channel was asked for.
    pub channel_auth: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            time_ms: 1_800_000_000_000,
            kind: AuditKind::Decision,
            action: "subscribe".into(),
            app: "1".into(),
            tenant: Some("t1".into()),
            user: Some("u1".into()),
            actor: None,
            socket: Some("1.2".into()),
            remote_ip: Some("127.0.0.1".into()),
            channel: Some("private-x".into()),
            decision: AuditDecision::Deny,
            rule: Some("tenant-isolation".into()),
            reason: Some("tenant mismatch".into()),
        }
    }

    #[test]
    fn records_round_trip_through_rkyv() {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&record()).unwrap();
        let back = rkyv::from_bytes::<AuditRecord, rkyv::rancor::Error>(&bytes).unwrap();
        assert_eq!(back, record());
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&record()).unwrap();
        let mut broken = bytes.to_vec();
        broken.truncate(broken.len() / 2);
        assert!(rkyv::from_bytes::<AuditRecord, rkyv::rancor::Error>(&broken).is_err());
    }

    #[test]
    fn records_serialize_to_json_for_the_admin_api() {
        let json = serde_json::to_value(record()).unwrap();
        assert_eq!(json["decision"], "deny");
        assert_eq!(json["kind"], "decision");
    }
}
