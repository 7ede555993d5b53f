//! The inbox's HTTP routes: `GET /pending-notifications` and `POST /pending-notifications/ack`
//! (a user's kept notifications, for browsers on the app's origins: CORS), and the legacy
//! `POST /broadcast-message` of Reverb-era backends (`[apps.legacy_broadcast]`).
//!
//! What can be decided on the shard is decided here: the app, its inbox, the origin, the
//! rate, the body. Who the caller is may need the app's backend, so the shell finishes a
//! [`Reply::Inbox`] off the shard (`shell::inbox`).

use serde::Deserialize;
use serde_json::json;

use crate::core::auth::same_secret;
use crate::core::http::request::{Method, RequestHead};
use crate::core::http::response::{json_error_with, response};
use crate::core::ids::AppIdx;
use crate::core::inbox::{LegacyBody, LegacyRefusal, legacy_publish};
use crate::core::publish::PublishRefusal;
use crate::core::shard::{AuditAction, Publish, Shard};
use crate::inbox::MAX_READ;
use ringcast_shared::{AuditDecision, AuditKind};

use super::{Clock, Finish, Later, Reply, ServerView};

/// Unread notifications a read returns when it names no `limit`.
const DEFAULT_LIMIT: usize = 50;
/// Most ids one ack may name.
pub const MAX_ACK_IDS: usize = 1000;
/// The rule of an audit denial for a wrong `X-Reverb-App-Secret`.
const LEGACY_SECRET_RULE: &str = "legacy_broadcast_secret";

/// What a caller of the inbox asks, once the shell knows who they are.
#[derive(Debug, PartialEq, Eq)]
pub enum InboxOp {
    /// `GET /pending-notifications`: the oldest `limit` unread.
    Pending {
        /// At most this many (1 to [`MAX_READ`]).
        limit: usize,
    },
    /// `POST /pending-notifications/ack`: mark these read.
    Ack {
        /// The ids; others' are ignored.
        ids: Vec<u64>,
    },
}

/// An inbox request checked on the shard, for the shell to identify and answer.
#[derive(Debug)]
pub struct InboxCall {
    /// The app (`?app_key=`).
    pub app: AppIdx,
    /// What is asked.
    pub op: InboxOp,
    /// `Access-Control-Allow-Origin` and `Vary`, for a caller from one of the app's origins.
    pub cors: Vec<(&'static str, String)>,
    /// Whether the connection stays open.
    pub keep_alive: bool,
}

/// Which inbox route a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxRoute {
    /// `/pending-notifications`.
    Pending,
    /// `/pending-notifications/ack`.
    Ack,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    ids: Vec<u64>,
}

fn error(status: u16, message: &str, cors: &[(&'static str, String)], keep_alive: bool) -> Reply {
    let headers: Vec<(&str, &str)> = cors.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Reply::Now(json_error_with(status, message, &headers, keep_alive))
}

/// Records a rate limit's refusal of a request from `view.remote`.
fn audit_rate_limit(shard: &mut Shard, app: AppIdx, view: &ServerView<'_>, rule: &str) {
    shard.audit_event(
        app,
        AuditKind::Security,
        AuditAction::RateLimit,
        AuditDecision::Deny,
        Some(view.remote),
        Some(rule),
        None,
    );
}

/// Serves an inbox route: the preflight itself, or everything but the caller's identity.
pub fn serve(
    shard: &mut Shard,
    view: &ServerView<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
    route: InboxRoute,
) -> Reply {
    let keep_alive = head.keep_alive;
    let state = shard.state().clone();
    let app = match head.query_param("app_key") {
        Some(key) => match state.apps.by_key(&key) {
            Some(app) => app,
            None => return error(404, &format!("unknown app_key {key:?}"), &[], keep_alive),
        },
        // The reference deployment's clients name no app: the one app that keeps an inbox.
        None => match the_inbox_app(&state.apps) {
            Some(app) => app,
            None => {
                let message = "app_key is required (no single app keeps an inbox)";
                return error(400, message, &[], keep_alive);
            }
        },
    };
    let origin = head.header("origin");
    if origin.is_some() && !app.config.origin_allowed(origin) {
        shard.audit_event(
            app.idx,
            AuditKind::Security,
            AuditAction::Origin,
            AuditDecision::Deny,
            Some(view.remote),
            Some("allowed_origins"),
            origin.map(|o| format!("origin {:?}", o.chars().take(128).collect::<String>())),
        );
        return error(403, "origin not allowed for this app", &[], keep_alive);
    }
    let cors: Vec<(&'static str, String)> = origin
        .map(|o| {
            vec![
                ("Access-Control-Allow-Origin", o.to_owned()),
                ("Vary", "Origin".to_owned()),
            ]
        })
        .unwrap_or_default();
    if app.config.inbox.is_none() {
        return error(
            404,
            "this app keeps no inbox ([apps.inbox])",
            &cors,
            keep_alive,
        );
    }
    if head.method == Method::Options {
        return preflight(app, cors, keep_alive);
    }
    if !app.config.enabled {
        return error(403, "app is disabled", &cors, keep_alive);
    }
    if let Err(wait) = app.admit_connection_attempt(view.remote, clock.now) {
        audit_rate_limit(shard, app.idx, view, "connections_per_minute_per_ip");
        let mut headers = cors.clone();
        headers.push(("Retry-After", wait.as_secs().max(1).to_string()));
        return error(
            429,
            "too many requests from this address",
            &headers,
            keep_alive,
        );
    }
    let op = match (route, head.method) {
        (InboxRoute::Pending, Method::Get) => {
            let limit = match head.query_param("limit").map(|l| l.parse::<usize>()) {
                None => DEFAULT_LIMIT,
                Some(Ok(limit)) if (1..=MAX_READ).contains(&limit) => limit,
                Some(_) => {
                    let message = format!("limit must be 1 to {MAX_READ}");
                    return error(400, &message, &cors, keep_alive);
                }
            };
            InboxOp::Pending { limit }
        }
        (InboxRoute::Ack, Method::Post) => match serde_json::from_slice::<AckBody>(body) {
            Ok(ack) if ack.ids.len() <= MAX_ACK_IDS => InboxOp::Ack { ids: ack.ids },
            Ok(_) => {
                let message = format!("at most {MAX_ACK_IDS} ids per ack");
                return error(400, &message, &cors, keep_alive);
            }
            Err(e) => {
                let message = format!("the body must be {{\"ids\":[numbers]}}: {e}");
                return error(400, &message, &cors, keep_alive);
            }
        },
        _ => return error(405, "method not allowed", &cors, keep_alive),
    };
    Reply::Inbox(InboxCall {
        app: app.idx,
        op,
        cors,
        keep_alive,
    })
}

/// The app with `[apps.inbox]`, if exactly one has it.
fn the_inbox_app(apps: &crate::core::app::AppTable) -> Option<&crate::core::app::App> {
    let mut keeping = apps.iter().filter(|app| app.config.inbox.is_some());
    match (keeping.next(), keeping.next()) {
        (Some(app), None) => Some(app),
        _ => None,
    }
}

/// The answer to a CORS preflight from one of the app's origins: the methods, and the
/// headers credentials may come in (`Authorization`, or the backend-verified ones).
fn preflight(
    app: &crate::core::app::App,
    cors: Vec<(&'static str, String)>,
    keep_alive: bool,
) -> Reply {
    let mut allowed = vec!["Authorization".to_owned(), "Content-Type".to_owned()];
    if let Some(v) = &app.config.token_verification {
        allowed.extend(v.headers.iter().cloned());
    }
    let mut headers: Vec<(&str, &str)> = cors.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let allowed = allowed.join(", ");
    headers.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS"));
    headers.push(("Access-Control-Allow-Headers", &allowed));
    headers.push(("Access-Control-Max-Age", "600"));
    Reply::Now(response(204, "application/json", b"", &headers, keep_alive))
}

/// `POST /broadcast-message`: the app by `X-Reverb-App-ID`, its secret by
/// `X-Reverb-App-Secret` (constant time), then the body published like an API event on its
/// channel and each id's channel (which keeps it in the id's inbox when the app has one).
pub fn broadcast_message(
    shard: &mut Shard,
    view: &ServerView<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
) -> Reply {
    let keep_alive = head.keep_alive;
    let refuse = |status: u16, message: &str| error(status, message, &[], keep_alive);
    let Some(app_id) = head.header("x-reverb-app-id") else {
        return refuse(401, "X-Reverb-App-ID and X-Reverb-App-Secret are required");
    };
    let state = shard.state().clone();
    let Some(app) = state.apps.by_id(app_id) else {
        return refuse(404, &format!("unknown app id {app_id:?}"));
    };
    let Some(legacy) = &app.config.legacy_broadcast else {
        return refuse(
            404,
            "this app has no /broadcast-message ([apps.legacy_broadcast])",
        );
    };
    let presented = head.header("x-reverb-app-secret").unwrap_or_default();
    if !same_secret(&app.config.secret, presented) {
        shard.audit_event(
            app.idx,
            AuditKind::Decision,
            AuditAction::ApiSignature,
            AuditDecision::Deny,
            Some(view.remote),
            Some(LEGACY_SECRET_RULE),
            Some("wrong or missing X-Reverb-App-Secret".into()),
        );
        return refuse(401, "wrong or missing X-Reverb-App-Secret");
    }
    if !app.config.enabled {
        return refuse(403, "app is disabled");
    }
    if let Err(wait) = app.admit_api_request(clock.now) {
        audit_rate_limit(shard, app.idx, view, "api_requests_per_second");
        let seconds = wait.as_secs().max(1).to_string();
        return Reply::Now(json_error_with(
            429,
            "too many API requests for this app",
            &[("Retry-After", &seconds)],
            keep_alive,
        ));
    }
    let body: LegacyBody = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(e) => return refuse(400, &format!("invalid JSON body: {e}")),
    };
    let valid = match legacy_publish(&app.config, legacy, &body) {
        Ok(valid) => valid,
        Err(refusal) => {
            let status = match refusal {
                LegacyRefusal::Publish(PublishRefusal::TooLarge { .. }) => 413,
                _ => 400,
            };
            return refuse(status, &refusal.to_string());
        }
    };
    let publish = Publish {
        app: app.idx,
        event: &valid.event,
        data: &valid.data,
        except: None,
    };
    let confirmations: Vec<_> = valid
        .channels
        .iter()
        .filter_map(|channel| shard.publish(&publish, channel, clock.now))
        .collect();
    if confirmations.is_empty() {
        let answer = json!({}).to_string();
        return Reply::Now(response(
            200,
            "application/json",
            answer.as_bytes(),
            &[],
            keep_alive,
        ));
    }
    Reply::Later(Later {
        confirmations: confirmations.len(),
        queries: confirmations,
        finish: Finish::Applied,
        keep_alive,
        persist: None,
    })
}
