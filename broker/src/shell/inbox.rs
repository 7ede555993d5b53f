//! The inbox's I/O half: opening the store (`data/inbox`) when an app keeps an inbox,
//! forwarding the shards' writes to it, and finishing `/pending-notifications` requests off the
//! shard: the caller identified like a socket of the app (a JWT, or the backend-verified
//! headers through the app's verifier and its cache), then the store asked on its thread.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::StartError;
use super::conn::{Verification, unix_now};
use super::runtime::ShardRt;
use crate::core::http::request::RequestHead;
use crate::core::http::response::{json_error_with, response};
use crate::core::inbox::{InboxWrite, identify};
use crate::core::shard::AuditAction;
use crate::http::{InboxCall, InboxOp};
use crate::inbox::{AppLimits, Inbox, InboxError, InboxSettings, StoreEntry};
use crate::server::ServerState;
use ringcast_shared::{AuditDecision, AuditKind};

/// Notifications that may wait for the writer before new ones are dropped.
const QUEUE_CAPACITY: usize = 16_384;
/// The inbox store's page cache.
const CACHE_BYTES: u64 = 16 << 20;

/// Opens `data/inbox` and starts its writer, if any app has `[apps.inbox]`.
pub(super) fn open(
    state: &ServerState,
) -> Result<Option<(Inbox, std::thread::JoinHandle<()>)>, StartError> {
    let limits: Vec<Option<AppLimits>> = state
        .shared
        .apps
        .iter()
        .map(|app| {
            app.config.inbox.as_ref().map(|inbox| AppLimits {
                app_id: app.config.id.clone(),
                max_per_user: inbox.max_per_user,
                ttl: inbox.ttl,
                max_users: inbox.max_users,
            })
        })
        .collect();
    if limits.iter().all(Option::is_none) {
        return Ok(None);
    }
    let dir = state.shared.config.data_dir.join("inbox");
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Storage(format!("cannot create {}: {e}", dir.display())))?;
    let settings = InboxSettings {
        flush_interval: state.shared.config.audit_flush_interval,
        queue_capacity: QUEUE_CAPACITY,
        cache_bytes: CACHE_BYTES,
    };
    Inbox::open(&dir, settings, limits, state.inbox_metrics.clone())
        .map(Some)
        .map_err(|e| StartError::Storage(e.to_string()))
}

/// Flushes the store and waits (up to `timeout`) for its writer to end.
pub(super) fn stop(store: Inbox, thread: std::thread::JoinHandle<()>, timeout: Duration) {
    store.stop(timeout);
    let deadline = Instant::now() + timeout;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}

/// Stamps the shard's inbox writes with the wall clock and hands them to the store.
pub(super) fn store(rt: &ShardRt, writes: &mut Vec<InboxWrite>) {
    if writes.is_empty() {
        return;
    }
    let Some(store) = &rt.inbox_store else {
        writes.clear();
        return;
    };
    let created_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut entries: Vec<StoreEntry> = writes
        .drain(..)
        .map(|w| StoreEntry {
            app: w.app.get(),
            user: w.user.as_str().to_owned(),
            channel: w.channel.as_str().to_owned(),
            event: w.event,
            data: w.data,
            created_at_ms,
        })
        .collect();
    store.push_all(&mut entries);
}

/// Answers an inbox call: identifies the caller, then reads or acks their inbox.
pub(super) async fn serve(
    rt: &Rc<ShardRt>,
    head: &RequestHead,
    call: InboxCall,
    remote: std::net::IpAddr,
) -> Vec<u8> {
    let headers: Vec<(&str, &str)> = call.cors.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fail =
        |status: u16, message: &str| json_error_with(status, message, &headers, call.keep_alive);
    let Some(store) = &rt.inbox_store else {
        return fail(404, "this app keeps no inbox ([apps.inbox])");
    };
    let query_token = head.query_param("token");
    let bearer = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token = query_token.as_deref().or(bearer);
    let shared = rt.state.shared.clone();
    let app = shared.apps.get(call.app);
    let verification = Verification::run(rt, Some(app), head, token).await;
    let user = match identify(app, verification.credentials(token), unix_now()) {
        Ok(user) => user,
        Err(why) => {
            let reason = why.to_string();
            rt.with_core(|core| {
                core.audit_event(
                    call.app,
                    AuditKind::Decision,
                    AuditAction::Token,
                    AuditDecision::Deny,
                    Some(remote),
                    Some("pending_notifications"),
                    Some(reason.clone()),
                );
            });
            return fail(401, &reason);
        }
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let answered = match call.op {
        InboxOp::Pending { limit } => store
            .pending(call.app.get(), user.as_str(), limit, now_ms)
            .recv()
            .await
            .map(|r| r.map(|pending| json!(pending))),
        InboxOp::Ack { ids } => store
            .ack(call.app.get(), user.as_str(), ids)
            .recv()
            .await
            .map(|r| r.map(|acked| json!({ "acked": acked }))),
    };
    match answered {
        Ok(Ok(value)) => response(
            200,
            "application/json",
            value.to_string().as_bytes(),
            &headers,
            call.keep_alive,
        ),
        Ok(Err(InboxError::NoInbox)) => fail(404, &InboxError::NoInbox.to_string()),
        Ok(Err(err)) => fail(503, &err.to_string()),
        Err(_) => fail(503, "the inbox store is not available"),
    }
}
