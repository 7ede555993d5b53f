//! `GET /apps/{id}/channels/{name}/history?since=ID&limit=N`: the request read into a
//! [`HistoryRequest`] at the edge, and the channel's page written as JSON.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::core::history::{DEFAULT_PAGE, HistoryPage, MAX_PAGE};
use crate::core::http::request::RequestHead;

/// What a history request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Only events after this id; `None`: every event held.
    pub since: Option<u64>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: usize,
}

impl HistoryRequest {
    /// Reads `since` and `limit` from the query, or says which is wrong.
    pub fn parse(head: &RequestHead) -> Result<Self, String> {
        let since = match head.query_param("since") {
            None => None,
            Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
                format!("since must be an event id (a whole number from 0), not {raw:?}")
            })?),
        };
        let limit = match head.query_param("limit") {
            None => DEFAULT_PAGE,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| format!("limit must be between 1 and {MAX_PAGE}, not {raw:?}"))?,
        };
        Ok(Self { since, limit })
    }
}

/// The page as the API answers it: `{"events":[{"id","event","data","published_at_ms"}],
/// "truncated"}`, each `data` as it was published (a JSON string for API events).
pub fn page_json(page: &HistoryPage) -> Value {
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            let data = RawValue::from_string(e.data.to_string())
                .ok()
                .and_then(|raw| serde_json::to_value(raw).ok())
                .unwrap_or(Value::Null);
            json!({
                "id": e.id,
                "event": &*e.event,
                "data": data,
                "published_at_ms": e.published_at_ms,
            })
        })
        .collect();
    json!({ "events": events, "truncated": page.truncated })
}
