//! The admin dashboard's HTTP side: the built UI at `/admin/`, sign-in, and the admin API
//! under `/admin/api/`.
//!
//! Every admin API call is authorized (a session cookie, plus the CSRF header for calls that
//! change something, or the configured bearer token for scripts) and audited. The dashboard
//! mirrors the app API under `/admin/api/apps/{id}/...` without app signatures.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ringcast_shared::{
    AdminSession, AppList, AppSummary, AuditDecision, AuditKind, Dispute, DisputeList, PusherAuth,
    SigninData,
};
use serde::Deserialize;
use serde_json::json;

use crate::config::ClientEvents;
use crate::core::admin::{CSRF_HEADER, SESSION_COOKIE, SESSION_TTL, SignInError};
use crate::core::auth::same_secret;
use crate::core::http::request::{Method, RequestHead};
use crate::core::http::response::{json_error, json_error_with, response};
use crate::core::shard::AuditAction;
use crate::core::shard::Shard;
use crate::metrics::Totals;
use crate::server::ServerState;

use super::admin_files::{self, BUILD_OUTPUT_DIR};
use super::api::{self, ApiRoute};
use super::routes::audit_query;
use super::{Clock, Reply, ServerView};
use crate::core::sync;

/// Headers on every admin response: no framing, no sniffing, no referrer, no caching.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
];

/// What the dashboard page may load: itself, its wasm, and WebSocket/HTTP calls back here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/admin_ui.rs"));
}
pub use embedded::EMBEDDED_ADMIN_UI;

/// Where `/admin/` is served from, chosen once at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminUiSource {
    /// `server.admin_ui_dir`, read at start (set: it wins over everything else).
    Configured(PathBuf),
    /// The dashboard built into this binary (see `broker/build.rs`).
    Embedded,
    /// [`BUILD_OUTPUT_DIR`], read at start: the binary was built before the dashboard.
    BuildOutput,
    /// Nowhere: not built into the binary, and no `index.html` in [`BUILD_OUTPUT_DIR`].
    Missing,
}

impl AdminUiSource {
    /// The configured directory when there is one; else the embedded dashboard when the
    /// binary has one (`embedded_built`), else the build output directory when it holds an
    /// `index.html` (`build_output_built`).
    pub fn choose(
        configured: Option<&Path>,
        embedded_built: bool,
        build_output_built: bool,
    ) -> Self {
        match configured {
            Some(dir) => Self::Configured(dir.to_owned()),
            None if embedded_built => Self::Embedded,
            None if build_output_built => Self::BuildOutput,
            None => Self::Missing,
        }
    }
}

impl std::fmt::Display for AdminUiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured(dir) => write!(f, "server.admin_ui_dir {}", dir.display()),
            Self::Embedded => f.write_str("built into the binary"),
            Self::BuildOutput => write!(f, "{BUILD_OUTPUT_DIR} in the working directory"),
            Self::Missing => f.write_str("nowhere"),
        }
    }
}

/// The admin dashboard's files, chosen and read once at start.
pub struct AdminAssets {
    /// By file name: content type and bytes (borrowed from the binary when embedded).
    files: HashMap<String, (&'static str, Cow<'static, [u8]>)>,
    source: AdminUiSource,
}

impl AdminAssets {
    /// The dashboard for `server.admin_ui_dir` (`configured`), from the source
    /// [`AdminUiSource::choose`] picks.
    pub fn for_config(configured: Option<&Path>) -> Self {
        let embedded_built = EMBEDDED_ADMIN_UI.iter().any(|(name, _)| *name == INDEX);
        let build_output_built = Path::new(BUILD_OUTPUT_DIR).join(INDEX).is_file();
        let source = AdminUiSource::choose(configured, embedded_built, build_output_built);
        let files = match &source {
            AdminUiSource::Configured(dir) => read_dir(dir),
            AdminUiSource::BuildOutput => read_dir(Path::new(BUILD_OUTPUT_DIR)),
            AdminUiSource::Embedded => EMBEDDED_ADMIN_UI
                .iter()
                .map(|(name, bytes)| {
                    let entry = (content_type(name), Cow::Borrowed(*bytes));
                    ((*name).to_owned(), entry)
                })
                .collect(),
            AdminUiSource::Missing => HashMap::new(),
        };
        Self { files, source }
    }

    /// Whether there is a dashboard to serve (its `index.html` is there).
    pub fn is_built(&self) -> bool {
        self.files.contains_key(INDEX)
    }

    /// Where the files came from.
    pub fn source(&self) -> &AdminUiSource {
        &self.source
    }

    /// How many files there are and their total size in bytes.
    pub fn size(&self) -> (usize, usize) {
        let bytes = self.files.values().map(|(_, b)| b.len()).sum();
        (self.files.len(), bytes)
    }
}

/// The page `/admin/` is.
const INDEX: &str = "index.html";

/// Reads the servable files of `dir` (see [`admin_files::list`]). A missing or unreadable
/// directory gives no files: `/admin/` then explains how to build the dashboard.
fn read_dir(dir: &Path) -> HashMap<String, (&'static str, Cow<'static, [u8]>)> {
    let listed = admin_files::list(dir).unwrap_or_default();
    listed
        .into_iter()
        .filter_map(|(name, path)| {
            let bytes = std::fs::read(&path).ok()?;
            Some((name.clone(), (content_type(&name), Cow::Owned(bytes))))
        })
        .collect()
}

/// What `/admin/` says when there is no dashboard to serve, for each place it was looked for.
fn not_built_page(source: &AdminUiSource) -> String {
    let where_and_fix = match source {
        AdminUiSource::Configured(dir) => format!(
            "There is no <code>index.html</code> in <code>{}</code> \
             (<code>server.admin_ui_dir</code>). Build the dashboard there with \
             <code>scripts/build-admin-ui</code> (it writes <code>{BUILD_OUTPUT_DIR}</code>) and \
             restart the broker, or remove the setting to serve the dashboard built into the \
             binary.",
            html_escape(&dir.display().to_string())
        ),
        _ => format!(
            "This binary was built without the dashboard, and there is no \
             <code>{BUILD_OUTPUT_DIR}/index.html</code> under the working directory. Run \
             <code>scripts/build-admin-ui</code>, then rebuild the broker (the build embeds the \
             dashboard) or restart it from the repository; or set \
             <code>server.admin_ui_dir</code> to a built dashboard."
        ),
    };
    format!(
        "<!doctype html><meta charset=utf-8><title>Ringcast admin</title>\
         <h1>The admin dashboard is not built</h1><p>{where_and_fix}</p>"
    )
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /admin/` and `/admin/{file}`.
pub fn static_file(assets: &AdminAssets, head: &RequestHead, file: &str) -> Reply {
    let keep_alive = head.keep_alive;
    if head.path == "/admin" {
        // Relative asset URLs need the trailing slash.
        return Reply::Now(response(
            308,
            "text/plain; charset=utf-8",
            b"see /admin/",
            &[("Location", "/admin/")],
            keep_alive,
        ));
    }
    let name = if file.is_empty() { INDEX } else { file };
    let mut headers: Vec<(&str, &str)> = SECURITY_HEADERS.to_vec();
    headers.push(("Content-Security-Policy", CONTENT_SECURITY_POLICY));
    match assets.files.get(name) {
        Some((content_type, bytes)) => {
            Reply::Now(response(200, content_type, bytes, &headers, keep_alive))
        }
        None if name == INDEX => {
            let page = not_built_page(&assets.source);
            Reply::Now(response(
                503,
                "text/html; charset=utf-8",
                page.as_bytes(),
                &headers,
                keep_alive,
            ))
        }
        None => Reply::Now(json_error(404, "not found", keep_alive)),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Routes `/admin/api/...` (the segments after `api`).
pub fn api(
    shard: &mut Shard,
    view: &ServerView<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
    rest: &[&str],
) -> Reply {
    let keep_alive = head.keep_alive;
    match (head.method, rest) {
        (Method::Post, ["login"]) => return sign_in(shard, view, head, body, clock),
        (Method::Get, ["session"]) => {
            return match session(view.server, head, clock) {
                Some((name, csrf)) => ok(&AdminSession { name, csrf }, keep_alive),
                None => Reply::Now(json_error(401, "not signed in", keep_alive)),
            };
        }
        _ => {}
    }
    let changes_state = !matches!(head.method, Method::Get | Method::Head);
    let admin = match authorize(shard, view.server, head, clock, changes_state) {
        Ok(admin) => admin,
        Err(refusal) => {
            shard.audit_admin(
                AuditKind::Security,
                AuditAction::AdminApi,
                None,
                AuditDecision::Deny,
                view.remote,
                Some(format!(
                    "{} {}: {}",
                    head.method.as_str(),
                    head.path,
                    refusal.1
                )),
            );
            return Reply::Now(json_error(refusal.0, refusal.1, keep_alive));
        }
    };
    shard.audit_admin(
        AuditKind::Decision,
        AuditAction::AdminApi,
        Some(&admin),
        AuditDecision::Allow,
        view.remote,
        Some(format!("{} {}", head.method.as_str(), head.path)),
    );
    match (head.method, rest) {
        (Method::Post, ["logout"]) => {
            if let Some(token) = cookie(head, SESSION_COOKIE) {
                lock(view.server).sign_out(token);
            }
            Reply::Now(response(
                200,
                "application/json",
                b"{}",
                &[("Set-Cookie", &expired_cookie())],
                keep_alive,
            ))
        }
        (Method::Get, ["apps"]) => ok(&apps(shard), keep_alive),
        (Method::Get, ["overview"]) => {
            let mut since_start = [0; crate::metrics::LATENCY_BUCKETS];
            let inbox = &view.server.inbox_metrics;
            let overview = overview(shard, view.metrics, inbox, &mut since_start);
            ok(
                &serde_json::to_value(overview).unwrap_or_default(),
                keep_alive,
            )
        }
        (Method::Get, ["live"]) => Reply::Live,
        (Method::Get, ["audit"]) => audit(head, false),
        (Method::Get, ["security-events"]) => audit(head, true),
        (Method::Get, ["apps", app, "channels"]) => {
            api::handle_for_admin(shard, app, ApiRoute::Channels, head, body, clock)
        }
        (Method::Get, ["apps", app, "channels", channel]) => {
            api::handle_for_admin(shard, app, ApiRoute::Channel(channel), head, body, clock)
        }
        (Method::Get, ["apps", app, "channels", channel, "users"]) => {
            api::handle_for_admin(shard, app, ApiRoute::Users(channel), head, body, clock)
        }
        (Method::Get, ["apps", app, "channels", channel, "history"]) => {
            api::handle_for_admin(shard, app, ApiRoute::History(channel), head, body, clock)
        }
        (Method::Post, ["apps", app, "events"]) => {
            api::handle_for_admin(shard, app, ApiRoute::Events, head, body, clock)
        }
        (Method::Get, ["apps", app, "disputes"]) => match disputes(shard, app) {
            Some(value) => ok(&value, keep_alive),
            None => Reply::Now(json_error(404, "unknown app", keep_alive)),
        },
        (Method::Post, ["apps", app, "pusher-auth"]) => {
            match pusher_auth(shard, app, &admin, body) {
                Ok(value) => ok(&value, keep_alive),
                Err((status, message)) => Reply::Now(json_error(status, &message, keep_alive)),
            }
        }
        (_, ["logout" | "apps" | "audit" | "security-events" | "overview" | "live"])
        | (
            _,
            [
                "apps",
                _,
                "channels" | "events" | "disputes" | "pusher-auth",
            ],
        )
        | (_, ["apps", _, "channels", _])
        | (_, ["apps", _, "channels", _, "users" | "history"]) => {
            Reply::Now(json_error(405, "method not allowed", keep_alive))
        }
        _ => Reply::Now(json_error(404, "not found", keep_alive)),
    }
}

/// A sign-in: a configured admin's name and password, or a token from `[admin_jwt]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, untagged)]
enum SignInBody {
    Password { name: String, password: String },
    Token { token: String },
}

/// `POST /admin/api/login`: `{"name", "password"}` or `{"token"}` (a JWT with role `admin`)
/// → a session cookie and the CSRF token.
fn sign_in(
    shard: &mut Shard,
    view: &ServerView<'_>,
    head: &RequestHead,
    body: &[u8],
    clock: &Clock,
) -> Reply {
    let keep_alive = head.keep_alive;
    let remote = view.remote;
    let Ok(request) = serde_json::from_slice::<SignInBody>(body) else {
        return Reply::Now(json_error(
            400,
            "send {\"name\": ..., \"password\": ...} or {\"token\": ...}",
            keep_alive,
        ));
    };
    let (who, outcome) = match &request {
        SignInBody::Password { name, password } => (
            Some(name.as_str()),
            lock(view.server).sign_in(name, password, remote, clock.now),
        ),
        SignInBody::Token { token } => (
            None,
            lock(view.server).sign_in_with_token(token, remote, clock.now, clock.unix_secs),
        ),
    };
    match outcome {
        Ok((token, session)) => {
            shard.audit_admin(
                AuditKind::Decision,
                AuditAction::AdminSignin,
                Some(&session.admin),
                AuditDecision::Allow,
                remote,
                who.is_none().then(|| "token".to_owned()),
            );
            let secure = view.tls
                || head
                    .header("x-forwarded-proto")
                    .is_some_and(|p| p.eq_ignore_ascii_case("https"));
            let cookie = format!(
                "{SESSION_COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
                SESSION_TTL.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            let body = serde_json::to_string(&AdminSession {
                name: session.admin,
                csrf: session.csrf,
            })
            .unwrap_or_default();
            Reply::Now(response(
                200,
                "application/json",
                body.as_bytes(),
                &[("Set-Cookie", &cookie), ("Cache-Control", "no-store")],
                keep_alive,
            ))
        }
        Err(err) => {
            let (status, message, retry) = match err {
                SignInError::BadCredentials if who.is_none() => {
                    (401, "invalid token, or no role admin in it", None)
                }
                SignInError::BadCredentials => (401, "wrong name or password", None),
                SignInError::Throttled(wait) => (
                    429,
                    "too many failed sign-ins from this address",
                    Some(wait.as_secs().max(1).to_string()),
                ),
            };
            shard.audit_admin(
                AuditKind::Security,
                AuditAction::AdminSignin,
                who,
                AuditDecision::Deny,
                remote,
                Some(message.to_owned()),
            );
            let headers: Vec<(&str, &str)> =
                retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
            Reply::Now(json_error_with(status, message, &headers, keep_alive))
        }
    }
}

fn lock(server: &ServerState) -> std::sync::MutexGuard<'_, crate::core::admin::Admins> {
    sync::lock(&server.admins)
}

/// The signed-in admin and their CSRF token, from the session cookie.
fn session(server: &ServerState, head: &RequestHead, clock: &Clock) -> Option<(String, String)> {
    let token = cookie(head, SESSION_COOKIE)?;
    let admins = lock(server);
    let session = admins.session(token, clock.now)?;
    Some((session.admin.clone(), session.csrf.clone()))
}

/// Who is calling: the session's admin, or `token` for the bearer token. Refusals carry
/// their status and message.
fn authorize(
    shard: &Shard,
    server: &ServerState,
    head: &RequestHead,
    clock: &Clock,
    changes_state: bool,
) -> Result<String, (u16, &'static str)> {
    if let Some(presented) = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return match shard.state().config.admin_token.as_deref() {
            Some(token) if same_secret(token, presented.trim()) => Ok("token".to_owned()),
            _ => Err((401, "a valid admin token or session is required")),
        };
    }
    let Some((admin, csrf)) = session(server, head, clock) else {
        return Err((401, "sign in first"));
    };
    if changes_state
        && !head
            .header(CSRF_HEADER)
            .is_some_and(|t| same_secret(&csrf, t))
    {
        return Err((403, "missing or wrong CSRF token (X-CSRF-Token)"));
    }
    Ok(admin)
}

fn cookie<'h>(head: &'h RequestHead, name: &str) -> Option<&'h str> {
    head.header("cookie")?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

fn expired_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The configured apps and their limits; secrets never leave in full.
fn apps(shard: &Shard) -> AppList {
    let apps = shard
        .state()
        .apps
        .iter()
        .map(|app| {
            let c = &app.config;
            AppSummary {
                id: c.id.clone(),
                key: c.key.clone(),
                secret: mask(&c.secret),
                enabled: c.enabled,
                max_connections: c.max_connections,
                max_message_bytes: c.max_message_bytes as u64,
                client_events: match c.client_events {
                    ClientEvents::Enabled => "enabled",
                    ClientEvents::MembersOnly => "members_only",
                    ClientEvents::Disabled => "disabled",
                }
                .to_owned(),
                client_events_per_second: u64::from(c.client_events_per_second),
                max_presence_members: c.max_presence_members as u64,
                max_subscriptions_per_connection: c.max_subscriptions_per_connection as u64,
                allowed_origins: c.allowed_origins.iter().map(ToString::to_string).collect(),
                rate_limits: c.rate_limits.is_some(),
                jwt: c.jwt.is_some(),
                policies: c.policies.iter().map(|p| p.name.clone()).collect(),
                webhooks: c.webhooks.len() as u64,
            }
        })
        .collect();
    AppList { apps }
}

/// The dashboard's picture of the server now (see [`crate::metrics::overview`]).
pub fn overview(
    shard: &Shard,
    metrics: &[std::sync::Arc<crate::metrics::ShardMetrics>],
    inbox: &crate::inbox::InboxMetrics,
    previous_latency: &mut [u64; crate::metrics::LATENCY_BUCKETS],
) -> ringcast_shared::Overview {
    let state = shard.state();
    let app_ids: Vec<&str> = state.apps.iter().map(|a| a.config.id.as_str()).collect();
    let totals = Totals::gather(metrics);
    let mut overview =
        crate::metrics::overview(&totals, &app_ids, &state.tenants, previous_latency);
    for ((load, app), counted) in overview
        .apps
        .iter_mut()
        .zip(state.apps.iter())
        .zip(&totals.apps)
    {
        if app.config.history.is_some() {
            let h = &counted.history;
            load.history = Some(ringcast_shared::HistoryLoad {
                events: h.events,
                bytes: h.bytes,
                replays: h.replays,
                replayed_events: h.replayed_events,
            });
        }
        if app.config.inbox.is_some()
            && let Some(kept) = inbox.apps.get(app.idx.get())
        {
            let load_of =
                |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
            let gone = load_of(&kept.evicted).saturating_add(load_of(&kept.expired));
            load.inbox = Some(ringcast_shared::InboxLoad {
                held: load_of(&kept.written).saturating_sub(gone),
                acked: load_of(&kept.acked),
            });
        }
    }
    if let Some(cluster) = &state.cluster {
        overview.cluster = Some(ringcast_shared::ClusterView {
            node: cluster.node.to_string(),
            in_sync: cluster.is_up(),
            nodes: cluster
                .nodes_alive
                .load(std::sync::atomic::Ordering::Relaxed),
        });
        for (load, app) in overview.apps.iter_mut().zip(state.apps.iter()) {
            // The other nodes' part, from heartbeats, added to this node's figure.
            let elsewhere = app.connections_elsewhere();
            load.cluster_connections =
                Some(load.connections + i64::try_from(elsewhere).unwrap_or(i64::MAX));
        }
    }
    overview
}

/// `GET /admin/api/apps/{id}/disputes`: the resources whose `status` attribute is
/// `DISPUTED`, each with the channels its policy rules name (see
/// [`crate::core::policy::resource_channels`]).
fn disputes(shard: &Shard, app_id: &str) -> Option<DisputeList> {
    let app = shard.state().apps.by_id(app_id)?;
    let mut disputes: Vec<Dispute> = shard
        .resources(app.idx)
        .iter()
        .filter(|(_, r)| r.attributes.get("status").is_some_and(|s| s == "DISPUTED"))
        .map(|((kind, id), r)| Dispute {
            kind: kind.clone(),
            id: id.clone(),
            participants: r.participants.clone(),
            attributes: r.attributes.clone(),
            tenant: r.tenant.clone(),
            channels: crate::core::policy::resource_channels(&app.config.policies, kind, id, r),
        })
        .collect();
    disputes.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    Some(DisputeList {
        key: app.config.key.clone(),
        disputes,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PusherAuthBody {
    socket_id: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
}

/// `POST /admin/api/apps/{id}/pusher-auth`: signs the dashboard's own WebSocket in as the
/// admin (`pusher:signin` user data with role `admin`, actor `admin` and, when given, the
/// tenant being looked at) and, for a private channel, its subscription. Policies still
/// decide: an admin reaches a chat only when a rule admits role `admin` there.
fn pusher_auth(
    shard: &Shard,
    app_id: &str,
    admin: &str,
    body: &[u8],
) -> Result<PusherAuth, (u16, String)> {
    use crate::core::auth::{sign_channel, sign_signin};
    use crate::core::channel::{ChannelKind, ChannelName};
    let request: PusherAuthBody = serde_json::from_slice(body).map_err(|e| {
        (
            400,
            format!("send {{\"socket_id\", \"channel\", \"tenant\"}}: {e}"),
        )
    })?;
    let app = shard
        .state()
        .apps
        .by_id(app_id)
        .ok_or_else(|| (404, format!("unknown app id {app_id:?}")))?;
    if crate::core::ids::SocketId::parse(&request.socket_id).is_none() {
        return Err((400, format!("invalid socket_id {:?}", request.socket_id)));
    }
    let key = &app.secret;
    let mut user_info = json!({ "roles": ["admin"], "actor": "admin" });
    if let Some(tenant) = &request.tenant {
        user_info["tenant_id"] = json!(tenant);
    }
    let user_data = json!({ "id": format!("admin:{admin}"), "user_info": user_info }).to_string();
    let app_key = &app.config.key;
    let signin = sign_signin(app_key, key, &request.socket_id, &user_data);
    let channel_auth = match &request.channel {
        None => None,
        Some(raw) => {
            let channel = ChannelName::parse(raw, app.config.max_channel_name_chars)
                .map_err(|e| (400, format!("{e}: {raw:?}")))?;
            if !matches!(
                channel.kind(),
                ChannelKind::Private | ChannelKind::PrivateCache
            ) {
                return Err((400, "only private channels are signed here".to_owned()));
            }
            let socket_id = &request.socket_id;
            Some(sign_channel(
                app_key,
                key,
                socket_id,
                channel.as_str(),
                None,
            ))
        }
    };
    Ok(PusherAuth {
        signin: SigninData {
            auth: signin,
            user_data,
        },
        channel_auth,
    })
}

/// The first and last two characters of a secret, the rest hidden.
fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return "•".repeat(chars.len());
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "•".repeat(chars.len() - 4))
}

fn audit(head: &RequestHead, security_only: bool) -> Reply {
    match audit_query(head, security_only) {
        Ok(query) => Reply::Audit {
            query,
            keep_alive: head.keep_alive,
        },
        Err(message) => Reply::Now(json_error(400, &message, head.keep_alive)),
    }
}

fn ok<T: serde::Serialize>(value: &T, keep_alive: bool) -> Reply {
    Reply::Now(response(
        200,
        "application/json",
        &serde_json::to_vec(value).unwrap_or_default(),
        &[("Cache-Control", "no-store")],
        keep_alive,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_but_recognisable() {
        assert_eq!(mask("ringcast-demo-secret"), "ri••••••••••••••••et");
        assert_eq!(mask("short"), "•••••");
    }

    #[test]
    fn a_configured_directory_wins_then_the_embedded_dashboard_then_the_build_output() {
        let dir = Path::new("/srv/dashboard");
        for (embedded, build_output) in [(false, false), (true, true)] {
            assert_eq!(
                AdminUiSource::choose(Some(dir), embedded, build_output),
                AdminUiSource::Configured(dir.to_owned())
            );
        }
        assert_eq!(
            AdminUiSource::choose(None, true, true),
            AdminUiSource::Embedded
        );
        assert_eq!(
            AdminUiSource::choose(None, false, true),
            AdminUiSource::BuildOutput
        );
        assert_eq!(
            AdminUiSource::choose(None, false, false),
            AdminUiSource::Missing
        );
    }

    #[test]
    fn the_not_built_page_says_where_it_looked_and_how_to_build() {
        let configured = not_built_page(&AdminUiSource::Configured("/srv/<ui>".into()));
        assert!(
            configured.contains("<code>/srv/&lt;ui&gt;</code>"),
            "{configured}"
        );
        assert!(
            configured.contains("scripts/build-admin-ui"),
            "{configured}"
        );
        let missing = not_built_page(&AdminUiSource::Missing);
        assert!(missing.contains("built without the dashboard"), "{missing}");
        assert!(missing.contains(BUILD_OUTPUT_DIR), "{missing}");
        assert!(missing.contains("scripts/build-admin-ui"), "{missing}");
    }

    #[test]
    fn a_directory_serves_its_visible_files_only() {
        let dir = std::env::temp_dir().join(format!("ringcast-admin-files-{}", fastrand::u64(..)));
        std::fs::create_dir_all(dir.join("nested")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join(".stamp"), "recipe").unwrap();
        std::fs::write(dir.join("nested/x.js"), "").unwrap();
        let assets = AdminAssets::for_config(Some(&dir));
        assert!(assets.is_built());
        assert_eq!(assets.size(), (1, "<!doctype html>".len()));
        assert_eq!(assets.source(), &AdminUiSource::Configured(dir.clone()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn assets_get_their_content_types() {
        assert_eq!(content_type("admin_ui_bg.wasm"), "application/wasm");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("admin_ui.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
