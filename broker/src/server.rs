//! The process-wide context: what every shard shares ([`Shared`], the core's part), and what
//! only the HTTP side needs (the dashboard's admins and assets, the writer threads' counters).

use std::sync::{Arc, Mutex};

use crate::audit::AuditMetrics;
use crate::core::admin::{AdminTokens, Admins};
use crate::core::cluster::NodeId;
use crate::core::options::Config;
use crate::core::shard::Shared;
use crate::http::AdminAssets;
use crate::metrics::{RedisBroadcastMetrics, WebhookMetrics};
use crate::shell::channel_auth::Authorizers;
use crate::shell::tls::CertStore;
use crate::shell::verify::Verifiers;

/// The server's state, shared by every shard's runtime and the HTTP handlers.
pub struct ServerState {
    /// What the shards' state machines share.
    pub shared: Arc<Shared>,
    /// Dashboard admins and their sessions.
    pub admins: Mutex<Admins>,
    /// The admin dashboard, served at `/admin/`.
    pub admin_ui: AdminAssets,
    /// The webhook sender's counters (read by `/metrics`).
    pub webhook_metrics: Arc<WebhookMetrics>,
    /// The audit writer's counters (read by `/metrics`).
    pub audit_metrics: Arc<AuditMetrics>,
    /// The certificate served when `[server.tls]` is set (`SIGHUP` reloads it).
    pub tls: Option<CertStore>,
    /// The apps' backend token verifiers (`[apps.token_verification]`).
    pub verifiers: Verifiers,
    /// The apps' channel auth endpoint clients (`[apps.socketio] auth_endpoint`).
    pub authorizers: Authorizers,
    /// Each app's Redis broadcast counters, `None` where it has no `[apps.redis_broadcast]`
    /// (indexed like the apps).
    pub redis_broadcast: Vec<Option<RedisBroadcastMetrics>>,
    /// The history writer's counters (read by `/metrics`; the shell puts in the ones of the
    /// store it opened).
    pub history_metrics: Arc<crate::history::HistoryMetrics>,
    /// The inbox store's counters, per app (read by `/metrics`; zero without `[apps.inbox]`).
    pub inbox_metrics: Arc<crate::inbox::InboxMetrics>,
}

impl ServerState {
    /// The state for `config` with `shared` (built from the same config, and filled with the
    /// stored resources), the admin dashboard (see [`AdminAssets::for_config`]), the writers'
    /// counters, the certificate loaded from `[server.tls]` (if set), the apps' backend
    /// token verifiers and the counters of their Redis broadcast subscriptions.
    pub fn new(
        config: Config,
        shared: Shared,
        webhook_metrics: Arc<WebhookMetrics>,
        audit_metrics: Arc<AuditMetrics>,
        tls: Option<CertStore>,
        verifiers: Verifiers,
        authorizers: Authorizers,
    ) -> Self {
        let redis_broadcast = config
            .apps
            .iter()
            .map(|app| {
                app.redis_broadcast
                    .as_ref()
                    .map(|_| RedisBroadcastMetrics::default())
            })
            .collect();
        Self {
            inbox_metrics: Arc::new(crate::inbox::InboxMetrics::new(config.apps.len())),
            redis_broadcast,
            admin_ui: AdminAssets::for_config(config.server.admin_ui_dir.as_deref()),
            admins: Mutex::new(Admins::new(
                config.admins,
                config.admin_jwt.as_ref().map(AdminTokens::new),
            )),
            shared: Arc::new(shared),
            webhook_metrics,
            audit_metrics,
            tls,
            verifiers,
            authorizers,
            history_metrics: Arc::default(),
        }
    }
}

/// The shards' shared state for `config`, seeded and named from the process's randomness.
pub fn shared_for(config: &Config) -> Shared {
    Shared::new(
        config.server.clone(),
        &config.apps,
        NodeId::from_bits(fastrand::u64(..)),
        fastrand::u64(..),
    )
}
