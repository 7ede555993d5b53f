//! The whole route table in one place.

use crate::core::http::request::{Method, RequestHead};
use crate::core::http::response::{json_error, response};
use crate::core::shard::Shard;
use crate::metrics::{ServerFacts, render_prometheus};

use super::api::{self, ApiRoute};
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
/// | POST | `/apps/{id}/users/{user}/terminate_connections` | close a signed-in user's sockets |
/// | POST | `/apps/{id}/tokens/revoke` | revoke a JWT by `jti`, closing its live sockets |
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
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match (head.method, segments.as_slice()) {
        (Method::Get | Method::Head, ["up"]) => {
            return Reply::Now(if view.shutting_down {
                json_error(503, "shutting down", false)
            } else {
                response(
                    200,
                    "application/json",
                    br#"{"health":"ok"}"#,
                    &[],
                    keep_alive,
                )
            });
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
                webhooks: &shard.state().webhook_metrics,
            };
            let text = render_prometheus(view.metrics, &facts);
            return Reply::Now(response(
                200,
                "text/plain; version=0.0.4",
                text.as_bytes(),
                &[],
                keep_alive,
            ));
        }
        (Method::Post, ["apps", app, "events"]) => (*app, ApiRoute::Events),
        (Method::Post, ["apps", app, "batch_events"]) => (*app, ApiRoute::BatchEvents),
        (Method::Get, ["apps", app, "channels"]) => (*app, ApiRoute::Channels),
        (Method::Get, ["apps", app, "channels", channel]) => (*app, ApiRoute::Channel(channel)),
        (Method::Get, ["apps", app, "channels", channel, "users"]) => {
            (*app, ApiRoute::Users(channel))
        }
        (Method::Post, ["apps", app, "users", user, "terminate_connections"]) => {
            (*app, ApiRoute::TerminateUser(user))
        }
        (Method::Post, ["apps", app, "tokens", "revoke"]) => (*app, ApiRoute::RevokeToken),
        (_, ["up" | "metrics"])
        | (_, ["apps", _, "events" | "batch_events" | "channels"])
        | (_, ["apps", _, "channels", _])
        | (_, ["apps", _, "channels", _, "users"])
        | (_, ["apps", _, "users", _, "terminate_connections"])
        | (_, ["apps", _, "tokens", "revoke"]) => {
            return Reply::Now(json_error(405, "method not allowed", keep_alive));
        }
        _ => return Reply::Now(json_error(404, "not found", keep_alive)),
    };
    let (app_id, route) = route;
    api::handle(shard, app_id, route, head, body, clock)
}
