//! The Pusher HTTP API: signed requests from app backends (`POST /events`, channel queries).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::core::app::Revocation;
use crate::core::auth::api::{ApiRequest, verify};
use crate::core::channel::ChannelName;
use crate::core::http::request::RequestHead;
use crate::core::http::response::{json_error_with, response};
use crate::core::ids::{AppIdx, SocketId, UserId};
use crate::core::policy::Resource;
use crate::core::publish::{self, PublishRefusal};
use crate::core::shard::AuditAction;
use crate::core::shard::{Answer, ChannelStats, Publish, Query, QueryId, Shard};
use ringcast_shared::{AuditDecision, AuditKind};

use super::{Clock, Later, Reply, ServerView};

/// An API endpoint below `/apps/{id}`.
pub enum ApiRoute<'a> {
    /// `POST /events`.
    Events,
    /// `POST /batch_events`.
    BatchEvents,
    /// `GET /channels`.
    Channels,
    /// `GET /channels/{name}`.
    Channel(&'a str),
    /// `GET /channels/{name}/users`.
    Users(&'a str),
    /// `GET /channels/{name}/history`.
    History(&'a str),
    /// `GET /channels/{name}/typing`.
    Typing(&'a str),
    /// `GET /messages/{message_id}/status`.
    MessageStatus(&'a str),
    /// `POST /users/{user}/terminate_connections`.
    TerminateUser(&'a str),
    /// `POST /tokens/revoke`.
    RevokeToken,
    /// `PUT` / `DELETE /resources/{type}/{id}`.
    Resource {
        /// Resource type, e.g. `escrow`.
        kind: &'a str,
        /// Resource id.
        id: &'a str,
        /// `DELETE` rather than `PUT`.
        delete: bool,
    },
}

/// A client error with its HTTP status.
struct ApiError {
    status: u16,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
}

impl From<PublishRefusal> for ApiError {
    fn from(refusal: PublishRefusal) -> Self {
        let status = match refusal {
            PublishRefusal::TooLarge { .. } => 413,
            _ => 400,
        };
        Self::new(status, refusal.to_string())
    }
}

/// Which attributes an `info` parameter asked for.
#[derive(Clone, Copy, Default, Debug)]
pub struct Info {
    subscription_count: bool,
    user_count: bool,
}

/// How to turn query answers into the response.
pub enum Finish {
    /// `POST /events` with `info`: one channel stats answer per channel.
    Events {
        /// Channel names, in query order.
        channels: Vec<ChannelName>,
        /// Requested attributes.
        info: Info,
    },
    /// `POST /batch_events` with `info`: `None` for events that asked nothing.
    Batch {
        /// Per event: its channel, if its stats were queried.
        events: Vec<Option<ChannelName>>,
        /// Per event: requested attributes.
        infos: Vec<Info>,
    },
    /// `GET /channels`.
    Channels {
        /// Requested attributes.
        info: Info,
    },
    /// `GET /channels/{name}`.
    Channel {
        /// Requested attributes.
        info: Info,
    },
    /// `GET /channels/{name}/users`.
    Users,
    /// `GET /channels/{name}/history`.
    History,
    /// `GET /channels/{name}/typing`.
    Typing,
    /// `GET /messages/{message_id}/status`.
    MessageStatus,
    /// A change every shard has applied: `{}`.
    Applied,
}

/// Authenticates and serves one API request.
pub fn handle(
    shard: &mut Shard,
    app_id: &str,
    route: ApiRoute<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
    view: &ServerView<'_>,
) -> Reply {
    let served = authorized(shard, app_id, head, body, clock, view.remote)
        .and_then(|app| serve(shard, app, route, head, body, clock));
    reply(served, head.keep_alive)
}

/// Serves an API request for a caller authorized another way: a signed-in admin, whose
/// dashboard mirrors the app API under `/admin/api/apps/{id}/...`.
pub fn handle_for_admin(
    shard: &mut Shard,
    app_id: &str,
    route: ApiRoute<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
) -> Reply {
    let served = shard
        .state()
        .apps
        .by_id(app_id)
        .map(|app| app.idx)
        .ok_or_else(|| ApiError::new(404, format!("unknown app id {app_id:?}")))
        .and_then(|app| serve(shard, app, route, head, body, clock));
    reply(served, head.keep_alive)
}

fn reply(served: Result<Served, ApiError>, keep_alive: bool) -> Reply {
    match served {
        Ok(Served::Now(value)) => Reply::Now(json_response(&value, keep_alive)),
        Ok(Served::Later(queries, finish)) => Reply::Later(Later {
            queries,
            confirmations: 0,
            finish,
            keep_alive,
            persist: None,
        }),
        Ok(Served::Published {
            mut confirmations,
            queries,
            finish,
        }) => Reply::Later(Later {
            confirmations: confirmations.len(),
            queries: {
                confirmations.extend(queries);
                confirmations
            },
            finish,
            keep_alive,
            persist: None,
        }),
        Ok(Served::Persist(query, write)) => Reply::Later(Later {
            queries: query.into_iter().collect(),
            confirmations: 0,
            finish: Finish::Applied,
            keep_alive,
            persist: Some(write),
        }),
        Err(err) => {
            let retry_after = err.retry_after.map(|s| s.to_string());
            let headers: Vec<(&str, &str)> = retry_after
                .iter()
                .map(|s| ("Retry-After", s.as_str()))
                .collect();
            Reply::Now(json_error_with(
                err.status,
                &err.message,
                &headers,
                keep_alive,
            ))
        }
    }
}

enum Served {
    Now(Value),
    Later(Vec<QueryId>, Finish),
    /// Events published: await the cluster's confirmations, then the queries.
    Published {
        confirmations: Vec<QueryId>,
        queries: Vec<QueryId>,
        finish: Finish,
    },
    /// Await the query (if any: without one every shard has the change already), persist the
    /// write, then answer `{}`.
    Persist(Option<QueryId>, crate::audit::StoreWrite),
}

fn authorized(
    shard: &mut Shard,
    app_id: &str,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
    remote: std::net::IpAddr,
) -> Result<AppIdx, ApiError> {
    let state = shard.state().clone();
    let app = state
        .apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::new(404, format!("unknown app id {app_id:?}")))?;
    let query = head
        .query_pairs()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let request = ApiRequest {
        method: head.method.as_str(),
        path: &head.path,
        query: &query,
        body,
    };
    let window = state.config.api_timestamp_window;
    if let Err(e) = verify(
        &request,
        &app.config.key,
        &app.secret,
        clock.unix_secs,
        window,
    ) {
        shard.audit_event(
            app.idx,
            AuditKind::Decision,
            AuditAction::ApiSignature,
            AuditDecision::Deny,
            Some(remote),
            Some("signature"),
            Some(e.to_string()),
        );
        return Err(ApiError::new(e.status(), e.to_string()));
    }
    if !app.config.enabled {
        return Err(ApiError::new(403, "app is disabled"));
    }
    if let Err(wait) = app.admit_api_request(clock.now) {
        shard.audit_event(
            app.idx,
            AuditKind::Security,
            AuditAction::RateLimit,
            AuditDecision::Deny,
            Some(remote),
            Some("api_requests_per_second"),
            None,
        );
        return Err(ApiError {
            status: 429,
            message: "too many API requests for this app".into(),
            retry_after: Some(wait.as_secs().max(1)),
        });
    }
    Ok(app.idx)
}

fn serve(
    shard: &mut Shard,
    app: AppIdx,
    route: ApiRoute<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
) -> Result<Served, ApiError> {
    match route {
        ApiRoute::Events => {
            let mut copy = body.to_vec();
            let event: EventBody = parse_events(&mut copy)?;
            let event = validate_event(shard, app, &event)?;
            let mut confirmations = Vec::new();
            let (channels, info) = publish(shard, app, event, clock, &mut confirmations);
            if !info.subscription_count && !info.user_count {
                if confirmations.is_empty() {
                    return Ok(Served::Now(json!({})));
                }
                return Ok(Served::Published {
                    confirmations,
                    queries: Vec::new(),
                    finish: Finish::Applied,
                });
            }
            let queries = channels
                .iter()
                .map(|channel| start_stats(shard, app, channel, clock))
                .collect();
            Ok(Served::Published {
                confirmations,
                queries,
                finish: Finish::Events { channels, info },
            })
        }
        ApiRoute::BatchEvents => {
            let mut copy = body.to_vec();
            let batch: BatchBody = parse_events(&mut copy)?;
            let max = shard.state().apps.get(app).config.max_batch_events;
            if batch.batch.len() > max {
                return Err(ApiError::bad_request(format!(
                    "a batch holds at most {max} events"
                )));
            }
            // Validate every event before publishing any, so a bad batch publishes nothing.
            let valid = batch
                .batch
                .iter()
                .map(|event| validate_event(shard, app, event))
                .collect::<Result<Vec<_>, _>>()?;
            let mut confirmations = Vec::new();
            let mut queries = Vec::new();
            let mut events = Vec::new();
            let mut infos = Vec::new();
            for event in valid {
                let (channels, info) = publish(shard, app, event, clock, &mut confirmations);
                let wanted = (info.subscription_count || info.user_count)
                    .then(|| channels.into_iter().next())
                    .flatten();
                if let Some(channel) = &wanted {
                    queries.push(start_stats(shard, app, channel, clock));
                }
                events.push(wanted);
                infos.push(info);
            }
            Ok(Served::Published {
                confirmations,
                queries,
                finish: Finish::Batch { events, infos },
            })
        }
        ApiRoute::Channels => {
            let prefix = head.query_param("filter_by_prefix").unwrap_or_default();
            let info = parse_info(
                head.query_param("info").as_deref(),
                &["user_count", "subscription_count"],
            )?;
            if info.user_count && !prefix.starts_with("presence-") {
                return Err(ApiError::bad_request(
                    "info=user_count needs filter_by_prefix=presence- (user counts exist only for presence channels)",
                ));
            }
            let query = shard.start_query(Query::Channels { app, prefix }, clock.now);
            Ok(Served::Later(vec![query], Finish::Channels { info }))
        }
        ApiRoute::Channel(raw) => {
            let channel = channel_name(shard, app, raw)?;
            let info = parse_info(
                head.query_param("info").as_deref(),
                &["user_count", "subscription_count"],
            )?;
            if info.user_count && !channel.kind().is_presence() {
                return Err(ApiError::bad_request(
                    "info=user_count is only available for presence channels",
                ));
            }
            let query = start_stats(shard, app, &channel, clock);
            Ok(Served::Later(vec![query], Finish::Channel { info }))
        }
        ApiRoute::Resource { kind, id, delete } => {
            let valid = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            };
            if !valid(kind) || !valid(id) {
                return Err(ApiError::bad_request(
                    "resource type and id must be 1 to 64 characters of [A-Za-z0-9_.-]",
                ));
            }
            let value = if delete {
                None
            } else {
                let resource: Resource = parse_body(body)?;
                check_resource(&resource)?;
                Some(resource)
            };
            let query = shard.set_resource(app, kind, id, value.clone(), clock.now);
            let write = crate::audit::ResourceWrite {
                app: shard.state().apps.get(app).config.id.clone(),
                kind: kind.to_owned(),
                id: id.to_owned(),
                value,
            };
            Ok(Served::Persist(
                Some(query),
                crate::audit::StoreWrite::Resource(write),
            ))
        }
        ApiRoute::RevokeToken => {
            let request: RevokeBody = parse_body(body)?;
            let revocation = request.revocation()?;
            // Without a time the revocation is kept for a day, the longest token lifetime
            // the broker plans for.
            let until = request.until().unwrap_or(clock.unix_secs + 86_400);
            if until <= clock.unix_secs {
                return Err(ApiError::bad_request(
                    "the revocation would already be over",
                ));
            }
            shard.revoke_token(app, &revocation, until, clock.unix_secs, clock.now);
            let write = crate::audit::RevocationWrite {
                app: shard.state().apps.get(app).config.id.clone(),
                key: revocation.key(),
                until_unix: until,
            };
            Ok(Served::Persist(
                None,
                crate::audit::StoreWrite::Revocation(write),
            ))
        }
        ApiRoute::TerminateUser(raw) => {
            let max = shard.state().apps.get(app).config.max_user_id_chars;
            let user = UserId::parse(raw, max)
                .map_err(|e| ApiError::bad_request(format!("user id: {e}")))?;
            shard.terminate_user(app, user, clock.now);
            Ok(Served::Now(json!({})))
        }
        ApiRoute::Users(raw) => {
            let channel = channel_name(shard, app, raw)?;
            if !channel.kind().is_presence() {
                return Err(ApiError::bad_request(
                    "users can only be listed for presence channels",
                ));
            }
            let query = shard.start_query(Query::Users { app, channel }, clock.now);
            Ok(Served::Later(vec![query], Finish::Users))
        }
        ApiRoute::History(raw) => {
            let channel = channel_name(shard, app, raw)?;
            if !shard.keeps_history(app, &channel) {
                return Err(ApiError::new(
                    404,
                    format!(
                        "{raw:?} keeps no history (no [apps.history] channels pattern covers it)"
                    ),
                ));
            }
            let request =
                super::history::HistoryRequest::parse(head).map_err(ApiError::bad_request)?;
            let query = Query::History {
                app,
                channel,
                since: request.since,
                limit: request.limit,
            };
            let query = shard.start_query(query, clock.now);
            Ok(Served::Later(vec![query], Finish::History))
        }
        ApiRoute::MessageStatus(raw) => {
            if shard.state().apps.get(app).config.receipts.is_none() {
                return Err(ApiError::new(
                    404,
                    "this app keeps no delivery receipts ([apps.receipts])",
                ));
            }
            let message = crate::core::receipts::MessageId::parse(raw)
                .ok_or_else(|| ApiError::bad_request("message id: empty or too long"))?;
            let query = shard.start_query(Query::MessageStatus { app, message }, clock.now);
            Ok(Served::Later(vec![query], Finish::MessageStatus))
        }
        ApiRoute::Typing(raw) => {
            let channel = channel_name(shard, app, raw)?;
            let typing = shard.state().apps.get(app).config.typing.as_ref();
            if !typing.is_some_and(|t| t.covers(&channel)) {
                return Err(ApiError::new(
                    404,
                    "the channel keeps no typing state ([apps.typing] channels)",
                ));
            }
            let query = shard.start_query(Query::Typing { app, channel }, clock.now);
            Ok(Served::Later(vec![query], Finish::Typing))
        }
    }
}

/// One event of `POST /events` or of a batch, parsed with simd-json: the criterion
/// benchmarks (`benches/README.md`) measured it 2.4× faster than serde_json on this body.
/// simd-json unescapes strings in place, so every field borrows from the body's copy.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'a: 'de"))]
struct EventBody<'a> {
    #[serde(default)]
    name: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<simd_json::BorrowedValue<'a>>,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    channels: Option<Vec<&'a str>>,
    #[serde(default)]
    socket_id: Option<&'a str>,
    #[serde(default)]
    info: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// One token.
    jti: Option<String>,
    /// Every token of this user.
    sub: Option<String>,
    /// The token's `exp`: after it the token is refused anyway.
    expires_at: Option<u64>,
    /// Until when (Unix seconds) the revocation holds; another name for `expires_at`.
    until: Option<u64>,
}

impl RevokeBody {
    /// What the body revokes: exactly one of `jti` and `sub`, 1 to 128 characters.
    fn revocation(&self) -> Result<Revocation, ApiError> {
        let (value, revocation): (&str, fn(String) -> Revocation) = match (&self.jti, &self.sub) {
            (Some(jti), None) => (jti, Revocation::Token),
            (None, Some(sub)) => (sub, Revocation::User),
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of \"jti\" (one token) and \"sub\" (every token of a user)",
                ));
            }
        };
        if value.is_empty() || value.chars().count() > 128 {
            return Err(ApiError::bad_request(
                "\"jti\" and \"sub\" must be 1 to 128 characters",
            ));
        }
        Ok(revocation(value.to_owned()))
    }

    fn until(&self) -> Option<u64> {
        self.until.or(self.expires_at)
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'a: 'de"))]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<EventBody<'a>>,
}

thread_local! {
    /// simd-json's working buffers, kept between the publishes of this shard's thread.
    static PARSE_BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::default());
}

/// Parses an event body with simd-json, which needs a mutable copy to work in, in this
/// thread's reused buffers.
fn parse_events<'a, T: Deserialize<'a>>(copy: &'a mut [u8]) -> Result<T, ApiError> {
    PARSE_BUFFERS
        .with_borrow_mut(|buffers| simd_json::serde::from_slice_with_buffers(copy, buffers))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

struct ValidEvent<'a> {
    name: &'a str,
    data: Cow<'a, str>,
    channels: Vec<ChannelName>,
    except: Option<SocketId>,
    info: Info,
}

fn validate_event<'a>(
    shard: &Shard,
    app: AppIdx,
    event: &'a EventBody<'a>,
) -> Result<ValidEvent<'a>, ApiError> {
    let config = &shard.state().apps.get(app).config;
    let name = event
        .name
        .ok_or_else(|| ApiError::bad_request("\"name\" is required"))?;
    // The SDKs send `data` as a string; other JSON is passed on as its (compact) text.
    let data = match &event.data {
        None => return Err(ApiError::bad_request("\"data\" is required")),
        Some(simd_json::BorrowedValue::String(text)) => Cow::Borrowed(text.as_ref()),
        Some(other) => Cow::Owned(simd_json::prelude::Writable::encode(other)),
    };
    publish::check_event(config, name, &data)?;
    let raw_channels: &[&str] = match (&event.channel, &event.channels) {
        (Some(one), None) => std::slice::from_ref(one),
        (None, Some(many)) => many,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give \"channel\" or \"channels\", not both",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("\"channels\" is required")),
    };
    if raw_channels.is_empty() || raw_channels.len() > config.max_channels_per_publish {
        return Err(ApiError::bad_request(format!(
            "an event goes to 1 to {} channels",
            config.max_channels_per_publish
        )));
    }
    let channels = raw_channels
        .iter()
        .map(|raw| channel_name(shard, app, raw))
        .collect::<Result<Vec<_>, _>>()?;
    let except = publish::except(event.socket_id)?;
    let info = parse_info(event.info, &["user_count", "subscription_count"])?;
    if info.user_count && !channels.iter().all(|c| c.kind().is_presence()) {
        return Err(ApiError::bad_request(
            "info=user_count is only available for presence channels",
        ));
    }
    Ok(ValidEvent {
        name,
        data,
        channels,
        except,
        info,
    })
}

/// Publishes `event` to each of its channels; in cluster mode each publish's confirmation
/// is added to `confirmations`.
fn publish(
    shard: &mut Shard,
    app: AppIdx,
    event: ValidEvent<'_>,
    clock: &Clock,
    confirmations: &mut Vec<QueryId>,
) -> (Vec<ChannelName>, Info) {
    let publish = Publish {
        app,
        event: event.name,
        data: &event.data,
        except: event.except,
    };
    for channel in &event.channels {
        confirmations.extend(shard.publish(&publish, channel, clock.now));
    }
    (event.channels, event.info)
}

fn start_stats(shard: &mut Shard, app: AppIdx, channel: &ChannelName, clock: &Clock) -> QueryId {
    let query = Query::Channel {
        app,
        channel: channel.clone(),
    };
    shard.start_query(query, clock.now)
}

/// Bounds on what a backend may store per resource.
fn check_resource(resource: &Resource) -> Result<(), ApiError> {
    if resource.participants.len() > 1000
        || resource
            .participants
            .iter()
            .any(|p| p.is_empty() || p.chars().count() > 128)
    {
        return Err(ApiError::bad_request(
            "participants: at most 1000 user ids of 1 to 128 characters",
        ));
    }
    if resource.attributes.len() > 64
        || resource
            .attributes
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
    {
        return Err(ApiError::bad_request(
            "attributes: at most 64, keys up to 64 and values up to 256 bytes",
        ));
    }
    if resource
        .tenant
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.chars().count() > 128)
    {
        return Err(ApiError::bad_request("tenant: 1 to 128 characters"));
    }
    Ok(())
}

fn channel_name(shard: &Shard, app: AppIdx, raw: &str) -> Result<ChannelName, ApiError> {
    Ok(publish::channel(&shard.state().apps.get(app).config, raw)?)
}

fn parse_info(raw: Option<&str>, allowed: &[&str]) -> Result<Info, ApiError> {
    let mut info = Info::default();
    for attribute in raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match attribute {
            "subscription_count" if allowed.contains(&attribute) => info.subscription_count = true,
            "user_count" if allowed.contains(&attribute) => info.user_count = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown info attribute {other:?} (supported: {})",
                    allowed.join(", ")
                )));
            }
        }
    }
    Ok(info)
}

fn stats_object(stats: &ChannelStats, info: Info, presence: bool) -> Map<String, Value> {
    let mut object = Map::new();
    if info.subscription_count {
        object.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    if info.user_count && presence {
        object.insert("user_count".into(), json!(stats.user_count));
    }
    object
}

/// Builds a deferred response.
pub fn finish(finish: Finish, answers: Vec<Answer>, keep_alive: bool) -> Vec<u8> {
    if answers.contains(&Answer::Unavailable) {
        return crate::core::http::response::json_error(
            503,
            "cluster state is unavailable (Redis became unreachable); retry shortly",
            keep_alive,
        );
    }
    let mut answers = answers.into_iter();
    let value = match finish {
        Finish::Events { channels, info } => {
            let mut out = Map::new();
            for channel in channels {
                if let Some(Answer::Channel(stats)) = answers.next() {
                    let presence = channel.kind().is_presence();
                    out.insert(
                        channel.as_str().to_owned(),
                        Value::Object(stats_object(&stats, info, presence)),
                    );
                }
            }
            json!({ "channels": out })
        }
        Finish::Batch { events, infos } => {
            let batch: Vec<Value> = events
                .iter()
                .zip(infos)
                .map(|(channel, info)| {
                    match (channel, channel.as_ref().and_then(|_| answers.next())) {
                        (Some(channel), Some(Answer::Channel(stats))) => {
                            Value::Object(stats_object(&stats, info, channel.kind().is_presence()))
                        }
                        _ => json!({}),
                    }
                })
                .collect();
            json!({ "batch": batch })
        }
        Finish::Channels { info } => {
            let mut out = Map::new();
            if let Some(Answer::Channels(list)) = answers.next() {
                for (name, stats) in list {
                    let presence = name.kind().is_presence();
                    let stats = stats_object(&stats, info, presence);
                    out.insert(name.as_str().to_owned(), Value::Object(stats));
                }
            }
            json!({ "channels": out })
        }
        Finish::Channel { info } => match answers.next() {
            Some(Answer::Channel(stats)) => {
                let mut object = stats_object(&stats, info, true);
                object.insert("occupied".into(), json!(stats.subscription_count > 0));
                Value::Object(object)
            }
            _ => json!({ "occupied": false }),
        },
        Finish::Applied => json!({}),
        Finish::Users => match answers.next() {
            Some(Answer::Users(users)) => {
                let users: Vec<Value> = users.iter().map(|u| json!({ "id": u.as_str() })).collect();
                json!({ "users": users })
            }
            _ => json!({ "users": [] }),
        },
        Finish::History => match answers.next() {
            Some(Answer::History(page)) => super::history::page_json(&page),
            _ => super::history::page_json(&Default::default()),
        },
        Finish::MessageStatus => match answers.next() {
            Some(Answer::MessageStatus(Some(status))) => crate::core::shard::status_json(&status),
            _ => {
                return crate::core::http::response::json_error(
                    404,
                    "no receipts for this message id (unknown, untracked or expired)",
                    keep_alive,
                );
            }
        },
        Finish::Typing => match answers.next() {
            Some(Answer::Typing(members)) => crate::core::shard::typing_json(&members),
            _ => json!({ "users": [] }),
        },
    };
    json_response(&value, keep_alive)
}

fn json_response(value: &Value, keep_alive: bool) -> Vec<u8> {
    // The answer to most publishes: no body to serialize.
    if value.as_object().is_some_and(Map::is_empty) {
        return response(200, "application/json", b"{}", &[], keep_alive);
    }
    response(
        200,
        "application/json",
        value.to_string().as_bytes(),
        &[],
        keep_alive,
    )
}
