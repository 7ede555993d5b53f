//! The whole route table in one place.

use ringcast_shared::AuditDecision;

use crate::audit::{AuditQuery, MAX_PAGE};
use crate::core::http::request::{Method, RequestHead};
use crate::core::http::response::{json_error, response};
use crate::core::shard::Shard;
use crate::metrics::{ServerFacts, Totals, render_prometheus};
use ringcast_shared::{Health, UpReport};

use super::admin;
use super::api::{self, ApiRoute};
use super::inbox::{self, InboxRoute};
use super::{Clock, Reply, ServerView};

/// Routes one HTTP request (WebSocket upgrades are handled before this).
///
/// | method | path | handler |
/// |---|---|---|
/// | GET | `/up` | health: 200, or 503 while shutting down |
/// | GET | `/metrics` | Prometheus text |
/// | POST | `/apps/{id}/events` | publish one event |
/// | POST | `/apps/{id}/batch_events` | publish up to `max_batch_events` events |
/// | GET | `/apps/{id}/channels` | occupied channels |
/// | GET | `/apps/{id}/channels/{name}` | one channel's state |
/// | GET | `/apps/{id}/channels/{name}/users` | a presence channel's users |
/// | GET | `/apps/{id}/channels/{name}/history` | a history channel's kept events |
/// | GET | `/apps/{id}/messages/{message_id}/status` | an `[apps.receipts]` message's receipts |
/// | GET | `/apps/{id}/channels/{name}/typing` | members typing on an `[apps.typing]` channel |
/// | POST | `/apps/{id}/users/{user}/terminate_connections` | close a signed-in user's sockets |
/// | POST | `/apps/{id}/tokens/revoke` | revoke a token (`jti`) or a user's tokens (`sub`), closing their live sockets |
/// | PUT, DELETE | `/apps/{id}/resources/{type}/{id}` | set or delete a policy resource |
/// | GET, OPTIONS | `/pending-notifications?app_key=` | the caller's unread notifications (see `http::inbox`) |
/// | POST, OPTIONS | `/pending-notifications/ack?app_key=` | mark the caller's notifications read |
/// | POST | `/broadcast-message` | the legacy Reverb-era publish (`[apps.legacy_broadcast]`) |
/// | GET | `/admin/`, `/admin/{file}` | the dashboard (see `http::admin`) |
/// | any | `/admin/api/...` | the admin API: sign-in, apps, channels, audit (see `http::admin`) |
pub fn handle(
    shard: &mut Shard,
    view: &ServerView<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
) -> Reply {
    let keep_alive = head.keep_alive;
    let segments = match head.path_segments() {
        Ok(segments) => segments,
        Err(err) => return Reply::Now(json_error(400, &err.to_string(), keep_alive)),
    };
    let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
    let route = match (head.method, segments.as_slice()) {
        // `GET /` is the health check Soketi users point their load balancers at.
        (Method::Get | Method::Head, ["up"] | [] | [""]) => {
            // A degraded node still serves its own clients, so it stays in the load
            // balancer's pool (200); the body and /metrics say what is wrong.
            let degraded = shard.state().cluster.as_ref().is_some_and(|c| !c.is_up());
            let (status, report) = if view.shutting_down {
                let report = UpReport {
                    health: Health::Draining,
                    cluster: None,
                    error: Some("shutting down".to_owned()),
                };
                (503, report)
            } else if degraded {
                let why = "Redis is unreachable: events reach this node's clients only";
                let report = UpReport {
                    health: Health::Degraded,
                    cluster: Some(why.to_owned()),
                    error: None,
                };
                (200, report)
            } else {
                let report = UpReport {
                    health: Health::Ok,
                    cluster: None,
                    error: None,
                };
                (200, report)
            };
            let body = serde_json::to_vec(&report).unwrap_or_default();
            let keep_alive = keep_alive && !view.shutting_down;
            return Reply::Now(response(status, "application/json", &body, &[], keep_alive));
        }
        (Method::Get, ["metrics"]) => {
            let apps = shard
                .state()
                .apps
                .iter()
                .map(|a| a.config.id.as_str())
                .collect();
            let facts = ServerFacts {
                driver: view.driver,
                app_ids: apps,
                webhooks: &view.server.webhook_metrics,
                audit: &view.server.audit_metrics,
                tenants: &shard.state().tenants,
                cluster: shard.state().cluster.as_ref(),
                cluster_app_connections: match shard.state().cluster {
                    Some(_) => shard
                        .state()
                        .apps
                        .iter()
                        .map(|a| a.cluster_connections())
                        .collect(),
                    None => Vec::new(),
                },
                verifiers: view.server.verifiers.metrics(),
                redis_broadcast: view
                    .server
                    .redis_broadcast
                    .iter()
                    .map(Option::as_ref)
                    .collect(),
                jwks: shard
                    .state()
                    .apps
                    .iter()
                    .filter_map(|a| a.jwks().map(|keys| (a.config.id.as_str(), &**keys)))
                    .collect(),
                history: (
                    shard
                        .state()
                        .apps
                        .iter()
                        .map(|a| a.history.is_some())
                        .collect(),
                    &view.server.history_metrics,
                ),
                inbox: Some((
                    &view.server.inbox_metrics,
                    shard
                        .state()
                        .apps
                        .iter()
                        .map(|a| {
                            a.config
                                .inbox
                                .as_ref()
                                .and_then(|_| view.server.inbox_metrics.apps.get(a.idx.get()))
                        })
                        .collect(),
                )),
            };
            let text = render_prometheus(&Totals::gather(view.metrics), &facts);
            return Reply::Now(response(
                200,
                "text/plain; version=0.0.4",
                text.as_bytes(),
                &[],
                keep_alive,
            ));
        }
        (Method::Get | Method::Options, ["pending-notifications"]) => {
            return inbox::serve(shard, view, head, body, clock, InboxRoute::Pending);
        }
        (Method::Post | Method::Options, ["pending-notifications", "ack"]) => {
            return inbox::serve(shard, view, head, body, clock, InboxRoute::Ack);
        }
        (Method::Post, ["broadcast-message"]) => {
            return inbox::broadcast_message(shard, view, head, body, clock);
        }
        (_, ["admin", "api", rest @ ..]) => {
            return admin::api(shard, view, head, body, clock, rest);
        }
        (Method::Get | Method::Head, ["admin"]) => {
            return admin::static_file(&view.server.admin_ui, head, "");
        }
        (Method::Get | Method::Head, ["admin", file]) => {
            return admin::static_file(&view.server.admin_ui, head, file);
        }
        (Method::Post, ["apps", app, "events"]) => (*app, ApiRoute::Events),
        (Method::Post, ["apps", app, "batch_events"]) => (*app, ApiRoute::BatchEvents),
        (Method::Get, ["apps", app, "channels"]) => (*app, ApiRoute::Channels),
        (Method::Get, ["apps", app, "channels", channel]) => (*app, ApiRoute::Channel(channel)),
        (Method::Get, ["apps", app, "channels", channel, "users"]) => {
            (*app, ApiRoute::Users(channel))
        }
        (Method::Get, ["apps", app, "channels", channel, "history"]) => {
            (*app, ApiRoute::History(channel))
        }
        (Method::Get, ["apps", app, "messages", message, "status"]) => {
            (*app, ApiRoute::MessageStatus(message))
        }
        (Method::Get, ["apps", app, "channels", channel, "typing"]) => {
            (*app, ApiRoute::Typing(channel))
        }
        (Method::Post, ["apps", app, "users", user, "terminate_connections"]) => {
            (*app, ApiRoute::TerminateUser(user))
        }
        (Method::Post, ["apps", app, "tokens", "revoke"]) => (*app, ApiRoute::RevokeToken),
        (Method::Put, ["apps", app, "resources", kind, id]) => (
            *app,
            ApiRoute::Resource {
                kind,
                id,
                delete: false,
            },
        ),
        (Method::Delete, ["apps", app, "resources", kind, id]) => (
            *app,
            ApiRoute::Resource {
                kind,
                id,
                delete: true,
            },
        ),
        (_, ["pending-notifications" | "broadcast-message"])
        | (_, ["pending-notifications", "ack"])
        | (_, ["up" | "metrics"])
        | (_, ["admin"])
        | (_, ["admin", _])
        | (_, ["apps", _, "events" | "batch_events" | "channels"])
        | (_, ["apps", _, "channels", _])
        | (_, ["apps", _, "channels", _, "users" | "history"])
        | (_, ["apps", _, "channels", _, "typing"])
        | (_, ["apps", _, "messages", _, "status"])
        | (_, ["apps", _, "users", _, "terminate_connections"])
        | (_, ["apps", _, "tokens", "revoke"])
        | (_, ["apps", _, "resources", _, _]) => {
            return Reply::Now(json_error(405, "method not allowed", keep_alive));
        }
        _ => return Reply::Now(json_error(404, "not found", keep_alive)),
    };
    let (app_id, route) = route;
    api::handle(shard, app_id, route, head, body, clock, view)
}

/// The answer to a WebSocket upgrade while the server drains (from SIGTERM until its last
/// client has gone): 503, like `/up` then, so that the client's reconnect, through a load
/// balancer, reaches another node.
pub fn refuse_upgrade_while_draining() -> Vec<u8> {
    json_error(503, "shutting down: connect to another node", false)
}

/// The audit search parameters of `GET /admin/api/audit` and `/admin/api/security-events`.
pub(super) fn audit_query(head: &RequestHead, security_only: bool) -> Result<AuditQuery, String> {
    let pairs = head.query_pairs().map_err(|e| e.to_string())?;
    let mut query = AuditQuery {
        security_only,
        limit: 100,
        ..AuditQuery::default()
    };
    for (key, value) in pairs {
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{key} must be a number, got {v:?}"))
        };
        match key.as_ref() {
            "app" => query.app = Some(value.into_owned()),
            "tenant" => query.tenant = Some(value.into_owned()),
            "user" => query.user = Some(value.into_owned()),
            "channel" => query.channel = Some(value.into_owned()),
            "decision" => {
                query.decision = Some(match value.as_ref() {
                    "allow" => AuditDecision::Allow,
                    "deny" => AuditDecision::Deny,
                    _ => return Err(format!("decision must be allow or deny, got {value:?}")),
                });
            }
            "since" => query.since_ms = Some(number(&value)?),
            "until" => query.until_ms = Some(number(&value)?),
            "limit" => {
                let limit = number(&value)?;
                if limit == 0 || limit > MAX_PAGE as u64 {
                    return Err(format!("limit must be 1 to {MAX_PAGE}"));
                }
                query.limit = limit as usize;
            }
            "cursor" => query.cursor = Some(value.into_owned()),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(query)
}
