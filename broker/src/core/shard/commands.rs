//! What the HTTP API applies on every shard (and every node): policy resources and token
//! revocation.

use std::sync::Arc;
use std::time::Instant;

use super::mesh::{AnswerPart, ConnKey, MeshMsg, QueryId, ReplyTo};
use super::queries::PendingQuery;
use super::{Answer, Shard};
use crate::core::app::Revocation;
use crate::core::ids::AppIdx;
use crate::core::policy::Resource;
use crate::core::wire::Fault;

impl Shard {
    /// Sets (or, with `None`, deletes) a resource on every shard. The returned query completes
    /// once every shard has applied it, so a subscription after the API call sees it.
    pub fn set_resource(
        &mut self,
        app: AppIdx,
        kind: &str,
        id: &str,
        resource: Option<Resource>,
        now: Instant,
    ) -> QueryId {
        let query = self.new_query(PendingQuery {
            awaiting: self.shard_count,
            answer: Answer::Applied,
        });
        let reply_to = ReplyTo {
            shard: self.id,
            query,
        };
        self.broadcast(crate::core::cluster::Command::Resource {
            app: self.app_id(app),
            kind: kind.to_owned(),
            id: id.to_owned(),
            json: resource
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
        });
        let resource = resource.map(std::sync::Arc::new);
        for shard in 0..self.shard_count {
            let msg = MeshMsg::SetResource {
                reply_to: Some(reply_to),
                app,
                kind: kind.to_owned(),
                id: id.to_owned(),
                resource: resource.clone(),
            };
            self.send_to(shard, msg);
        }
        self.drain_to_self(now);
        query
    }

    /// Records `revocation` until `until_unix` and closes the live sockets it covers, on
    /// every shard and node (HTTP API `tokens/revoke`).
    pub fn revoke_token(
        &mut self,
        app: AppIdx,
        revocation: &Revocation,
        until_unix: u64,
        now_unix: u64,
        now: Instant,
    ) {
        self.state
            .apps
            .get(app)
            .revoke(revocation, until_unix, now_unix);
        self.broadcast(crate::core::cluster::Command::Revoke {
            app: self.app_id(app),
            revocation: revocation.clone(),
            until_unix,
        });
        for shard in 0..self.shard_count {
            let msg = MeshMsg::RevokeToken {
                app,
                revocation: revocation.clone(),
            };
            self.send_to(shard, msg);
        }
        self.drain_to_self(now);
    }

    /// On every shard: sets (or deletes) a resource, then answers the shard that asked.
    pub(super) fn apply_resource(
        &mut self,
        reply_to: Option<ReplyTo>,
        app: AppIdx,
        kind: String,
        id: String,
        resource: Option<Arc<Resource>>,
    ) {
        let key = (kind, id);
        match resource {
            Some(resource) => {
                self.per_app[app]
                    .resources
                    .insert(key.clone(), (*resource).clone());
            }
            None => {
                self.per_app[app].resources.remove(&key);
            }
        }
        self.reauthorize_app(app, &key.0, &key.1);
        if let Some(reply_to) = reply_to {
            self.answer(reply_to, AnswerPart::Applied);
        }
    }

    /// On every shard: closes the sockets `revocation` covers.
    pub(super) fn close_token_sockets(&mut self, app: AppIdx, revocation: &Revocation) {
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.app == app && c.identity.as_deref().is_some_and(|i| revocation.covers(i))
            })
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.send_error_message(key, Fault::Unauthorized, "token revoked");
        }
    }
}
