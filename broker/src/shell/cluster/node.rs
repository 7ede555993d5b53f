//! The node's side of its link to Redis: the options the link starts from, what it reads of
//! the node, and what it does to the node (app state, the resource store, the log).

use std::sync::Arc;

use crate::audit::{AuditLog, ResourceWrite};
use crate::config::ClusterConfig;
use crate::core::cluster::NodeId;
use crate::core::cluster::link::{AppOptions, Credentials, Effect, LinkOptions, NodeView, Notice};
use crate::core::ids::AppIdx;
use crate::core::shard::Shared;

/// The node the link serves.
pub(super) struct Node {
    state: Arc<Shared>,
    audit: AuditLog,
    id: NodeId,
}

impl Node {
    pub fn new(state: Arc<Shared>, audit: AuditLog, id: NodeId) -> Self {
        Self { state, audit, id }
    }

    /// The link's options: the cluster config, this node, and what the link needs of each
    /// app.
    pub fn options(&self, config: &ClusterConfig) -> LinkOptions {
        let redis = &config.redis;
        LinkOptions {
            node: self.id.clone(),
            prefix: config.prefix.clone(),
            credentials: redis.password.clone().map(|password| Credentials {
                username: redis.username.clone(),
                password,
            }),
            db: redis.db,
            heartbeat_interval: config.heartbeat_interval(),
            dead_after: config.dead_after(),
            shards: self.state.config.shards,
            apps: self
                .state
                .apps
                .iter()
                .map(|app| AppOptions {
                    id: app.config.id.clone(),
                    cache_ttl: app.config.cache_ttl,
                    max_user_id_chars: app.config.max_user_id_chars,
                    wires: crate::core::wire::Wires::of(&app.config),
                })
                .collect(),
            seed: fastrand::u64(..),
        }
    }

    /// What the link reads of the node: the live app table and the wall clock.
    pub fn view(&self) -> Box<dyn NodeView> {
        Box::new(AppsView(self.state.clone()))
    }

    /// Carries out an effect on the node; the connection's own effects are not for it.
    pub fn apply(&self, effect: Effect) {
        match effect {
            Effect::Connect | Effect::Disconnect => {}
            Effect::Revoke {
                app,
                revocation,
                until_unix,
            } => self
                .state
                .apps
                .get(app)
                .revoke(&revocation, until_unix, unix_now()),
            Effect::StoreResource {
                app,
                kind,
                id,
                value,
            } => {
                let write = ResourceWrite {
                    app,
                    kind,
                    id,
                    value,
                };
                if !self
                    .audit
                    .persist(crate::audit::StoreWrite::Resource(write))
                {
                    tracing::warn!(
                        "the audit writer is full; a resource from another node was applied but not stored"
                    );
                }
            }
            Effect::Heartbeat {
                nodes_alive,
                connections_elsewhere,
            } => {
                for (app, others) in self.state.apps.iter().zip(&connections_elsewhere) {
                    app.set_elsewhere(usize::try_from(*others).unwrap_or(usize::MAX));
                    app.share_api_limit(nodes_alive);
                }
            }
            Effect::Notice(notice) => log(&notice, &self.id),
        }
    }
}

struct AppsView(Arc<Shared>);

impl NodeView for AppsView {
    fn connections(&self, app: AppIdx) -> usize {
        self.0.apps.get(app).connections()
    }

    fn revocations(&self, app: AppIdx) -> Vec<(crate::core::app::Revocation, u64)> {
        self.0.apps.get(app).revocations()
    }

    fn unix_time(&self) -> u64 {
        unix_now()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One log line per notice, at the level it deserves.
fn log(notice: &Notice, node: &NodeId) {
    match notice {
        Notice::HandshakeRefused { step, error } => {
            tracing::error!(step, %error, "Redis refused the handshake");
        }
        Notice::CommandRefused { error } => tracing::warn!(%error, "Redis refused a command"),
        Notice::UnexpectedReply => tracing::warn!("Redis sent a reply nobody asked for"),
        Notice::StoppedAnswering { silent } => {
            tracing::warn!(?silent, "Redis stopped answering; reconnecting");
        }
        Notice::Lost => {
            tracing::warn!("lost the connection to Redis; this node is degraded until it returns");
        }
        Notice::EpochLost => {
            tracing::warn!("Redis lost the cluster state (restarted empty); restoring it");
        }
        Notice::Synchronized { swept } => {
            if *swept > 0 {
                tracing::info!(swept, "removed what this node no longer has");
            }
            tracing::info!(%node, "connected to Redis; cluster state synchronized");
        }
        Notice::DeadNodesRemoved { nodes, changes } => {
            tracing::warn!(nodes, changes, "removed dead nodes from the cluster");
        }
        Notice::DeclaredDead => {
            tracing::warn!("this node had been declared dead; reporting its state again");
        }
        Notice::UnreadableMessage(err) => tracing::warn!(%err, "unreadable cluster message"),
        Notice::UnreadableResource(err) => {
            tracing::warn!(%err, "unreadable resource from another node");
        }
    }
}
