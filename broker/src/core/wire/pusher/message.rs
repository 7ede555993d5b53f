//! Pusher protocol 7 messages: parsing what clients send, encoding what the server sends.
//!
//! Server events carry `data` as a JSON-encoded *string* (`"data":"{\"socket_id\":...}"`), except
//! `pusher:error` and `pusher:subscription_error`, whose `data` is an object, as pusher-js reads
//! them. Client events are relayed with their `data` exactly as the client sent it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::ids::{SocketId, UserId};
use crate::core::wire::pusher::codes;
use crate::core::wire::{Command, Fault, ParseError, SubscribeRequest};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SigninRequest<'a> {
    #[serde(borrow)]
    auth: Cow<'a, str>,
    #[serde(borrow)]
    user_data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RenewRequest<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
}

#[derive(Deserialize)]
struct UnsubscribeRequest<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

/// The length of the longest client event message whose event name, channel name and data
/// are within these limits (in bytes, written without spaces as pusher-js sends it, with names
/// that need no escaping), so the WebSocket message limit can be checked against the app's
/// limits at load.
pub fn largest_client_event(
    max_event_name_bytes: usize,
    max_channel_name_bytes: usize,
    max_data_bytes: usize,
) -> usize {
    const EMPTY: &str = r#"{"event":"","channel":"","data":}"#;
    EMPTY.len() + max_event_name_bytes + max_channel_name_bytes + max_data_bytes
}

/// Parses one text message from a Pusher client.
pub fn parse(text: &[u8]) -> Result<Command<'_>, ParseError> {
    let envelope: Envelope<'_> =
        serde_json::from_slice(text).map_err(|_| ParseError::NotAnEvent)?;
    let event = envelope.event;
    if event.starts_with("client-") {
        let bad = |field| ParseError::BadField {
            event: "client event",
            field,
        };
        return Ok(Command::ClientEvent {
            channel: envelope.channel.ok_or(bad("a string \"channel\""))?,
            data: Cow::Borrowed(envelope.data.ok_or(bad("\"data\""))?),
            event,
        });
    }
    match &*event {
        "pusher:ping" => Ok(Command::Ping),
        "pusher:pong" => Ok(Command::Pong),
        "pusher:subscribe" => {
            let request =
                data_object::<SubscribeRequest>(envelope.data).ok_or(ParseError::BadField {
                    event: "pusher:subscribe",
                    field: "data with a string \"channel\"",
                })?;
            Ok(Command::Subscribe(request))
        }
        "pusher:unsubscribe" => {
            let request =
                data_object::<UnsubscribeRequest>(envelope.data).ok_or(ParseError::BadField {
                    event: "pusher:unsubscribe",
                    field: "data with a string \"channel\"",
                })?;
            Ok(Command::Unsubscribe {
                channel: request.channel,
            })
        }
        "pusher:signin" => {
            let request =
                data_object::<SigninRequest>(envelope.data).ok_or(ParseError::BadField {
                    event: "pusher:signin",
                    field: "data with string \"auth\" and \"user_data\"",
                })?;
            Ok(Command::Signin {
                auth: request.auth,
                user_data: request.user_data,
            })
        }
        crate::core::receipts::READ_EVENT => {
            let value: Option<serde_json::Value> = envelope.data.and_then(|raw| {
                let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
                match value {
                    serde_json::Value::String(inner) => serde_json::from_str(&inner).ok(),
                    other => Some(other),
                }
            });
            let (channel, id) = value
                .as_ref()
                .and_then(crate::core::receipts::read_request)
                .ok_or(ParseError::BadField {
                    event: crate::core::receipts::READ_EVENT,
                    field: "data with a string \"channel\" and a string or number \"id\"",
                })?;
            Ok(Command::Read { channel, id })
        }
        RENEW => {
            let request =
                data_object::<RenewRequest>(envelope.data).ok_or(ParseError::BadField {
                    event: RENEW,
                    field: "data with a string \"token\"",
                })?;
            Ok(Command::Renew {
                token: request.token,
            })
        }
        _ => Ok(Command::Unsupported { event }),
    }
}

/// Reads `data` as an object of type `T`; some clients send the object JSON-encoded in a
/// string, which is accepted too.
fn data_object<'a, T>(data: Option<&'a RawValue>) -> Option<T>
where
    T: Deserialize<'a> + OwnedFromStr,
{
    let raw = data?;
    if raw.get().starts_with('"') {
        let inner: String = serde_json::from_str(raw.get()).ok()?;
        T::parse_owned(&inner)
    } else {
        serde_json::from_str(raw.get()).ok()
    }
}

/// Parsing from a temporary string into a value that owns its text.
trait OwnedFromStr: Sized {
    fn parse_owned(text: &str) -> Option<Self>;
}

fn owned(cow: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(cow.into_owned())
}

impl OwnedFromStr for SubscribeRequest<'_> {
    fn parse_owned(text: &str) -> Option<Self> {
        let r: SubscribeRequest = serde_json::from_str(text).ok()?;
        Some(SubscribeRequest {
            channel: owned(r.channel),
            auth: r.auth.map(owned),
            channel_data: r.channel_data.map(owned),
            forward: None,
        })
    }
}

impl OwnedFromStr for UnsubscribeRequest<'_> {
    fn parse_owned(text: &str) -> Option<Self> {
        let r: UnsubscribeRequest = serde_json::from_str(text).ok()?;
        Some(UnsubscribeRequest {
            channel: owned(r.channel),
        })
    }
}

impl OwnedFromStr for RenewRequest<'_> {
    fn parse_owned(text: &str) -> Option<Self> {
        let r: RenewRequest = serde_json::from_str(text).ok()?;
        Some(RenewRequest {
            token: owned(r.token),
        })
    }
}

impl OwnedFromStr for SigninRequest<'_> {
    fn parse_owned(text: &str) -> Option<Self> {
        let r: SigninRequest = serde_json::from_str(text).ok()?;
        Some(SigninRequest {
            auth: owned(r.auth),
            user_data: owned(r.user_data),
        })
    }
}

/// A small JSON writer for server messages: the shapes are fixed, so writing them directly is
/// both faster and clearer than building `serde_json::Value`s.
struct Json(Vec<u8>);

impl Json {
    fn with_capacity(n: usize) -> Self {
        Json(Vec::with_capacity(n))
    }
    fn raw(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }
    fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// A user joined a presence channel.
pub const MEMBER_ADDED: &str = "pusher_internal:member_added";
/// A user's last socket left a presence channel.
pub const MEMBER_REMOVED: &str = "pusher_internal:member_removed";
/// A channel's subscriber count changed (subscription counting).
pub const SUBSCRIPTION_COUNT: &str = "pusher_internal:subscription_count";
/// A cache channel has nothing to replay.
pub const CACHE_MISS: &str = "pusher:cache_miss";
/// A sign-in succeeded.
pub const SIGNIN_SUCCESS: &str = "pusher:signin_success";
/// Watched users came online or went offline.
pub const WATCHLIST_EVENTS: &str = "pusher_internal:watchlist_events";

/// `pusher:connection_established`.
pub fn connection_established(socket_id: SocketId, activity_timeout_secs: u64) -> Vec<u8> {
    let inner =
        format!(r#"{{"socket_id":"{socket_id}","activity_timeout":{activity_timeout_secs}}}"#);
    let mut json = Json::with_capacity(128);
    json.raw(r#"{"event":"pusher:connection_established","data":"#)
        .string(&inner)
        .raw("}");
    json.finish()
}

/// `pusher:pong`.
pub fn pong() -> &'static [u8] {
    br#"{"event":"pusher:pong","data":"{}"}"#
}

/// `pusher:ping`, sent by the server after a quiet `activity_timeout`.
pub fn ping() -> &'static [u8] {
    br#"{"event":"pusher:ping","data":"{}"}"#
}

/// `pusher:error` with the code's default message.
pub fn error(fault: Fault) -> Vec<u8> {
    error_with_message(fault, codes::message(fault))
}

/// `pusher:error` with a specific message.
pub fn error_with_message(fault: Fault, message: &str) -> Vec<u8> {
    let mut json = Json::with_capacity(96 + message.len());
    json.raw(r#"{"event":"pusher:error","data":{"code":"#)
        .raw(&codes::code(fault).to_string())
        .raw(r#","message":"#)
        .string(message)
        .raw("}}");
    json.finish()
}

/// `pusher_internal:subscription_succeeded` for a channel without a roster.
pub fn subscription_succeeded(channel: &str) -> Vec<u8> {
    let mut json = Json::with_capacity(96 + channel.len());
    json.raw(r#"{"event":"pusher_internal:subscription_succeeded","channel":"#)
        .string(channel)
        .raw(r#","data":"{}"}"#);
    json.finish()
}

/// `pusher_internal:subscription_succeeded` for a presence channel; `data` is the string
/// `{"presence":{"ids":[...],"hash":{...},"count":n}}`.
pub fn presence_subscription_succeeded<'m>(
    channel: &str,
    members: impl Iterator<Item = (&'m UserId, Option<&'m str>)>,
) -> Vec<u8> {
    let mut ids = Json::with_capacity(256);
    let mut hash = Json::with_capacity(256);
    let mut count = 0usize;
    for (user_id, info) in members {
        if count > 0 {
            ids.raw(",");
            hash.raw(",");
        }
        ids.string(user_id.as_str());
        hash.string(user_id.as_str())
            .raw(":")
            .raw(info.unwrap_or("null"));
        count += 1;
    }
    let ids = String::from_utf8(ids.finish()).unwrap_or_default();
    let hash = String::from_utf8(hash.finish()).unwrap_or_default();
    let inner = format!(r#"{{"presence":{{"ids":[{ids}],"hash":{{{hash}}},"count":{count}}}}}"#);
    let mut json = Json::with_capacity(96 + channel.len() + inner.len() * 2);
    json.raw(r#"{"event":"pusher_internal:subscription_succeeded","channel":"#)
        .string(channel)
        .raw(r#","data":"#)
        .string(&inner)
        .raw("}");
    json.finish()
}

/// `pusher_internal:watchlist_events`: `data` is the string
/// `{"events":[{"name":"online"|"offline","user_ids":[...]}]}`.
pub fn watchlist_events(online: bool, users: &[UserId]) -> Vec<u8> {
    let mut ids = Json::with_capacity(16 * users.len());
    for (i, user) in users.iter().enumerate() {
        if i > 0 {
            ids.raw(",");
        }
        ids.string(user.as_str());
    }
    let ids = String::from_utf8(ids.finish()).unwrap_or_default();
    let name = if online { "online" } else { "offline" };
    let inner = format!(r#"{{"events":[{{"name":"{name}","user_ids":[{ids}]}}]}}"#);
    let mut json = Json::with_capacity(64 + inner.len() * 2);
    json.raw(r#"{"event":""#)
        .raw(WATCHLIST_EVENTS)
        .raw(r#"","data":"#)
        .string(&inner)
        .raw("}");
    json.finish()
}

/// `pusher_internal:subscription_count`; `data` is the string `{"subscription_count":n}`.
pub fn subscription_count(channel: &str, count: usize) -> Vec<u8> {
    let inner = format!(r#"{{"subscription_count":{count}}}"#);
    member_event(SUBSCRIPTION_COUNT, channel, &inner)
}

/// `pusher:cache_miss`: a cache channel has no (unexpired) event to replay.
pub fn cache_miss(channel: &str) -> Vec<u8> {
    let mut json = Json::with_capacity(48 + channel.len());
    json.raw(r#"{"event":""#)
        .raw(CACHE_MISS)
        .raw(r#"","channel":"#)
        .string(channel)
        .raw("}");
    json.finish()
}

/// `pusher:signin_success`; `data` is the string `{"user_data":"<the signed text>"}`.
pub fn signin_success(user_data: &str) -> Vec<u8> {
    let mut inner = Json::with_capacity(32 + user_data.len() * 2);
    inner.raw(r#"{"user_data":"#).string(user_data).raw("}");
    let inner = String::from_utf8(inner.finish()).unwrap_or_default();
    let mut json = Json::with_capacity(64 + inner.len() * 2);
    json.raw(r#"{"event":""#)
        .raw(SIGNIN_SUCCESS)
        .raw(r#"","data":"#)
        .string(&inner)
        .raw("}");
    json.finish()
}

/// `pusher:subscription_error`, which pusher-js (and so Echo's `.error()`) reports on the channel.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Vec<u8> {
    let mut json = Json::with_capacity(128 + channel.len() + error.len());
    json.raw(r#"{"event":"pusher:subscription_error","channel":"#)
        .string(channel)
        .raw(r#","data":{"type":"#)
        .string(kind)
        .raw(r#","error":"#)
        .string(error)
        .raw(r#","status":"#)
        .raw(&status.to_string())
        .raw("}}");
    json.finish()
}

/// The event a subscriber gets on a channel it may no longer hear (live re-authorization):
/// `data` is the string `{"rule":...,"reason":...}`. pusher-js hands it to the channel's
/// bindings, as it does every event not named `pusher_internal:`.
pub const SUBSCRIPTION_REVOKED: &str = "ringcast:subscription_revoked";

/// The client event that renews the connection's token without reconnecting; pusher-js sends
/// it with `pusher.send_event('ringcast:renew', {token})`.
pub const RENEW: &str = "ringcast:renew";

/// The answer to [`RENEW`] when the new token was taken, with its `expires_at`.
pub const RENEWED: &str = "ringcast:renewed";

/// The answer to [`RENEW`] when the token was refused; the old one stays in force.
pub const RENEW_FAILED: &str = "ringcast:renew_failed";

/// [`RENEWED`], a connection-level event (pusher-js hands it to `pusher.bind`).
pub fn renewed(expires_at: u64) -> Vec<u8> {
    format!(r#"{{"event":"{RENEWED}","data":"{{\"expires_at\":{expires_at}}}"}}"#).into_bytes()
}

/// [`RENEW_FAILED`], saying why.
pub fn renew_failed(reason: &str) -> Vec<u8> {
    let mut inner = Json::with_capacity(16 + reason.len());
    inner.raw(r#"{"reason":"#).string(reason).raw("}");
    let inner = String::from_utf8(inner.finish()).unwrap_or_default();
    let mut json = Json::with_capacity(48 + inner.len() * 2);
    json.raw(r#"{"event":""#)
        .raw(RENEW_FAILED)
        .raw(r#"","data":"#)
        .string(&inner)
        .raw("}");
    json.finish()
}

/// [`SUBSCRIPTION_REVOKED`] on `channel`.
pub fn subscription_revoked(channel: &str, rule: &str, reason: &str) -> Vec<u8> {
    let mut inner = Json::with_capacity(32 + rule.len() + reason.len());
    inner
        .raw(r#"{"rule":"#)
        .string(rule)
        .raw(r#","reason":"#)
        .string(reason)
        .raw("}");
    let inner = String::from_utf8(inner.finish()).unwrap_or_default();
    member_event(SUBSCRIPTION_REVOKED, channel, &inner)
}

/// `pusher_internal:member_added`.
pub fn member_added(channel: &str, user_id: &UserId, user_info: Option<&str>) -> Vec<u8> {
    let mut inner = Json::with_capacity(64);
    inner
        .raw(r#"{"user_id":"#)
        .string(user_id.as_str())
        .raw(r#","user_info":"#)
        .raw(user_info.unwrap_or("null"))
        .raw("}");
    let inner = String::from_utf8(inner.finish()).unwrap_or_default();
    member_event(MEMBER_ADDED, channel, &inner)
}

/// `pusher_internal:member_removed`.
pub fn member_removed(channel: &str, user_id: &UserId) -> Vec<u8> {
    let mut inner = Json::with_capacity(32);
    inner
        .raw(r#"{"user_id":"#)
        .string(user_id.as_str())
        .raw("}");
    let inner = String::from_utf8(inner.finish()).unwrap_or_default();
    member_event(MEMBER_REMOVED, channel, &inner)
}

fn member_event(event: &str, channel: &str, inner: &str) -> Vec<u8> {
    let mut json = Json::with_capacity(64 + channel.len() + inner.len() * 2);
    json.raw(r#"{"event":"#)
        .string(event)
        .raw(r#","channel":"#)
        .string(channel)
        .raw(r#","data":"#)
        .string(inner)
        .raw("}");
    json.finish()
}

/// An event published through the HTTP API: `data` is the string the backend sent.
pub fn channel_event(event: &str, channel: &str, data: &str) -> Vec<u8> {
    let mut json = Json::with_capacity(48 + event.len() + channel.len() + data.len() * 5 / 4);
    json.raw(r#"{"event":"#)
        .string(event)
        .raw(r#","channel":"#)
        .string(channel)
        .raw(r#","data":"#)
        .string(data)
        .raw("}");
    json.finish()
}

/// A relayed client event: `data` exactly as the sender wrote it, plus `user_id` on presence
/// channels so receivers know who sent it.
pub fn client_event(
    event: &str,
    channel: &str,
    data: &RawValue,
    user_id: Option<&UserId>,
) -> Vec<u8> {
    let mut json = Json::with_capacity(64 + event.len() + channel.len() + data.get().len());
    json.raw(r#"{"event":"#)
        .string(event)
        .raw(r#","channel":"#)
        .string(channel)
        .raw(r#","data":"#)
        .raw(data.get());
    if let Some(user_id) = user_id {
        json.raw(r#","user_id":"#).string(user_id.as_str());
    }
    json.raw("}");
    json.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse_text(text: &str) -> Result<Command<'_>, ParseError> {
        parse(text.as_bytes())
    }

    #[test]
    fn a_client_event_at_every_limit_is_exactly_the_largest_client_event() {
        let (event, channel) = ("client-".to_owned() + &"e".repeat(13), "c".repeat(30));
        let data = json!({"text": "x".repeat(90)}).to_string();
        let message = json!({"event": event, "channel": channel, "data": value(data.as_bytes())});
        let text = message.to_string();
        assert_eq!(
            text.len(),
            largest_client_event(event.len(), channel.len(), data.len())
        );
        let Ok(Command::ClientEvent { data: parsed, .. }) = parse_text(&text) else {
            panic!("not a client event: {text}");
        };
        assert_eq!(parsed.get().len(), data.len());
    }

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn parses_ping_and_pong_with_or_without_data() {
        assert!(matches!(
            parse_text(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(Command::Ping)
        ));
        assert!(matches!(
            parse_text(r#"{"event":"pusher:ping"}"#),
            Ok(Command::Ping)
        ));
        assert!(matches!(
            parse_text(r#"{"event":"pusher:pong","data":"{}"}"#),
            Ok(Command::Pong)
        ));
    }

    #[test]
    fn parses_subscribe_as_object_or_encoded_string() {
        let msg = parse_text(
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":1}"}}"#,
        );
        let Ok(Command::Subscribe(req)) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(req.channel, "presence-a");
        assert_eq!(req.auth.as_deref(), Some("k:s"));
        assert_eq!(req.channel_data.as_deref(), Some(r#"{"user_id":1}"#));

        let msg = parse_text(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#);
        let Ok(Command::Subscribe(req)) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(req.channel, "a");
        assert_eq!(req.auth, None);
    }

    #[test]
    fn subscribe_without_a_string_channel_is_a_bad_field() {
        for text in [
            r#"{"event":"pusher:subscribe"}"#,
            r#"{"event":"pusher:subscribe","data":{}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"a","channel_data":{"user_id":1}}}"#,
            r#"{"event":"pusher:subscribe","data":"not json"}"#,
        ] {
            assert!(
                matches!(parse_text(text), Err(ParseError::BadField { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn non_objects_and_missing_events_are_not_events() {
        for text in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"event":5}"#,
            "{\"event\":\"a\"",
            "\u{0}",
        ] {
            assert_eq!(
                parse_text(text).unwrap_err(),
                ParseError::NotAnEvent,
                "{text:?}"
            );
        }
    }

    #[test]
    fn parses_client_events_keeping_raw_data() {
        let msg =
            parse_text(r#"{"event":"client-typing","channel":"private-a","data":{"x": [1, 2]}}"#);
        let Ok(Command::ClientEvent {
            event,
            channel,
            data,
        }) = msg
        else {
            panic!()
        };
        assert_eq!(event, "client-typing");
        assert_eq!(channel, "private-a");
        assert_eq!(data.get(), r#"{"x": [1, 2]}"#);
        assert!(parse_text(r#"{"event":"client-typing","data":{}}"#).is_err());
    }

    #[test]
    fn unknown_events_are_reported_as_unsupported() {
        let msg = parse_text(r#"{"event":"pusher:frobnicate","data":{}}"#);
        assert!(matches!(msg, Ok(Command::Unsupported { event }) if event == "pusher:frobnicate"));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let msg = parse_text(r#"{"event":"pusher:unsubscribe","data":{"channel":"a\u0062c"}}"#);
        assert!(matches!(msg, Ok(Command::Unsubscribe { channel }) if channel == "abc"));
    }

    #[test]
    fn connection_established_data_is_a_json_string() {
        let v = value(&connection_established(SocketId::new(12, 34), 120));
        assert_eq!(v["event"], "pusher:connection_established");
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            inner,
            json!({"socket_id": "12.34", "activity_timeout": 120})
        );
    }

    #[test]
    fn error_data_is_an_object_with_code_and_message() {
        let v = value(&error(Fault::ClientEventRateLimited));
        assert_eq!(v["event"], "pusher:error");
        assert_eq!(v["data"]["code"], 4301);
        assert_eq!(
            v["data"]["message"],
            "Client event rejected due to rate limit"
        );
    }

    #[test]
    fn presence_succeeded_lists_ids_hash_and_count() {
        let a = UserId::parse("1", 10).unwrap();
        let b = UserId::parse("two\"", 10).unwrap();
        let frame = presence_subscription_succeeded(
            "presence-x",
            [(&a, Some(r#"{"name":"A"}"#)), (&b, None)].into_iter(),
        );
        let v = value(&frame);
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(v["channel"], "presence-x");
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            inner,
            json!({"presence": {"ids": ["1", "two\""], "hash": {"1": {"name": "A"}, "two\"": null}, "count": 2}})
        );
    }

    #[test]
    fn a_revoked_subscription_names_its_rule_and_reason_in_string_data() {
        let v = value(&subscription_revoked(
            "private-chat.1",
            "escrow",
            "no \"x\"",
        ));
        assert_eq!(v["event"], SUBSCRIPTION_REVOKED);
        assert_eq!(v["channel"], "private-chat.1");
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"rule": "escrow", "reason": "no \"x\""}));
    }

    #[test]
    fn renewal_is_parsed_and_answered_with_string_data() {
        let msg = parse_text(r#"{"event":"ringcast:renew","data":{"token":"a.b.c"}}"#);
        assert!(matches!(msg, Ok(Command::Renew { token }) if token == "a.b.c"));
        let msg = parse_text(r#"{"event":"ringcast:renew","data":"{\"token\":\"a.b.c\"}"}"#);
        assert!(matches!(msg, Ok(Command::Renew { token }) if token == "a.b.c"));
        assert!(parse_text(r#"{"event":"ringcast:renew","data":{"token":7}}"#).is_err());
        let v = value(&renewed(1_800_000_060));
        assert_eq!(v["event"], RENEWED);
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"expires_at": 1_800_000_060u64}));
        let v = value(&renew_failed("a \"new\" subject"));
        assert_eq!(v["event"], RENEW_FAILED);
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"reason": "a \"new\" subject"}));
    }

    #[test]
    fn member_events_carry_string_data() {
        let a = UserId::parse("7", 10).unwrap();
        let v = value(&member_added("presence-x", &a, Some(r#"{"n":1}"#)));
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"user_id": "7", "user_info": {"n": 1}}));
        let v = value(&member_removed("presence-x", &a));
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"user_id": "7"}));
    }

    #[test]
    fn channel_event_escapes_data_as_a_string() {
        let v = value(&channel_event("e\"", "c", "{\"a\":\"<\\u2028>\"}"));
        assert_eq!(
            v,
            json!({"event": "e\"", "channel": "c", "data": "{\"a\":\"<\\u2028>\"}"})
        );
    }

    #[test]
    fn client_event_relays_data_verbatim_and_adds_user_id() {
        let data = RawValue::from_string(r#"{"typing": true}"#.into()).unwrap();
        let user = UserId::parse("u1", 10).unwrap();
        let v = value(&client_event("client-t", "presence-a", &data, Some(&user)));
        assert_eq!(
            v,
            json!({"event": "client-t", "channel": "presence-a", "data": {"typing": true}, "user_id": "u1"})
        );
    }

    #[test]
    fn signin_success_wraps_user_data_in_a_json_string() {
        let v = value(&signin_success(r#"{"id":"1"}"#));
        assert_eq!(v["event"], "pusher:signin_success");
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"user_data": "{\"id\":\"1\"}"}));
    }

    #[test]
    fn subscription_error_has_type_error_and_status() {
        let v = value(&subscription_error(
            "private-a",
            "AuthError",
            "Invalid signature",
            401,
        ));
        assert_eq!(v["event"], "pusher:subscription_error");
        assert_eq!(
            v["data"],
            json!({"type": "AuthError", "error": "Invalid signature", "status": 401})
        );
    }
}
