//! Laravel's Redis broadcaster, received (`[apps.redis_broadcast]`).
//!
//! Laravel's `RedisBroadcaster` runs `PUBLISH {prefix}{channel} {payload}` for every channel
//! of an event, with the payload `{"event":"App\\Events\\X","data":{...},"socket":"1.2"|null}`
//! and the channel as Laravel names it (`private-orders.1`, `presence-chat.2`, `news`).
//! [`receive`] turns one such message into an event for [`crate::core::shard::Shard::publish`],
//! checked as the HTTP API checks one ([`crate::core::publish`]); [`link`] is the
//! subscription to Redis as a state machine.

pub mod link;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::channel::ChannelName;
use crate::core::ids::SocketId;
use crate::core::options::AppConfig;
use crate::core::publish::{self, PublishRefusal};

/// A Laravel broadcast payload, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaravelEvent {
    /// The event name (`App\Events\OrderShipped`, or the event's `broadcastAs`).
    pub event: String,
    /// The data as Pusher clients receive it, a string: Laravel's data object as it was
    /// written, or the content of a data string.
    pub data: String,
    /// The socket that sent the request (`toOthers`), to be left out.
    pub socket: Option<String>,
}

/// Why a payload is not a Laravel broadcast. Carries no part of the payload, so it can be
/// logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPayload {
    /// Not a JSON object with a string `event`, any `data` and an optional string `socket`.
    #[error("the payload is not a JSON object of event, data and socket")]
    Malformed,
    /// No `event`.
    #[error("the payload has no event name")]
    NoEvent,
    /// No `data`.
    #[error("the payload has no data")]
    NoData,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(default)]
    event: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    socket: Option<String>,
}

/// Parses a payload, once: the data is kept as the text Laravel wrote.
pub fn parse_payload(payload: &[u8]) -> Result<LaravelEvent, InvalidPayload> {
    let parsed: Payload<'_> =
        serde_json::from_slice(payload).map_err(|_| InvalidPayload::Malformed)?;
    let event = parsed.event.ok_or(InvalidPayload::NoEvent)?;
    let raw = parsed.data.ok_or(InvalidPayload::NoData)?.get();
    // Pusher event data is a string: a string is passed as it is, anything else as its JSON.
    let data = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).map_err(|_| InvalidPayload::Malformed)?
    } else {
        raw.to_owned()
    };
    Ok(LaravelEvent {
        event,
        data,
        socket: parsed.socket,
    })
}

/// The channel name Laravel gave, from the Redis channel it published to: `None` when the
/// Redis channel does not start with `prefix` or is not UTF-8.
pub fn strip_prefix<'a>(redis_channel: &'a [u8], prefix: &str) -> Option<&'a str> {
    let rest = redis_channel.strip_prefix(prefix.as_bytes())?;
    std::str::from_utf8(rest).ok()
}

/// The `PSUBSCRIBE` pattern for `prefix` and the channel pattern after it: the prefix is
/// matched literally (its glob characters escaped), the channel pattern as a glob.
pub fn pattern(prefix: &str, channels: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + channels.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(channels);
    pattern
}

/// An event from Redis, ready for [`crate::core::shard::Shard::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The event name.
    pub event: String,
    /// The data string.
    pub data: String,
    /// The channel.
    pub channel: ChannelName,
    /// The socket left out.
    pub except: Option<SocketId>,
}

/// Why a message from Redis was not delivered. Names no part of the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The Redis channel is not under the prefix (or not UTF-8).
    #[error("the Redis channel is not under the configured prefix")]
    OutsidePrefix,
    /// The payload is no Laravel broadcast.
    #[error(transparent)]
    Payload(#[from] InvalidPayload),
    /// The event would be refused by the HTTP API too.
    #[error(transparent)]
    Publish(#[from] PublishRefusal),
}

/// Turns a `pmessage` into an event of the app `config`, with the checks of the HTTP API.
pub fn receive(
    config: &AppConfig,
    prefix: &str,
    redis_channel: &[u8],
    payload: &[u8],
) -> Result<Broadcast, Refused> {
    let raw_channel = strip_prefix(redis_channel, prefix).ok_or(Refused::OutsidePrefix)?;
    let channel = publish::channel(config, raw_channel)?;
    let LaravelEvent {
        event,
        data,
        socket,
    } = parse_payload(payload)?;
    publish::check_event(config, &event, &data)?;
    let except = publish::except(socket.as_deref())?;
    Ok(Broadcast {
        event,
        data,
        channel,
        except,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &str = r#"{"event":"App\\Events\\Sent","data":{"id":7},"socket":null}"#;

    #[test]
    fn a_laravel_payload_is_parsed_with_its_data_as_written() {
        let event = parse_payload(SENT.as_bytes()).unwrap();
        assert_eq!(event.event, r"App\Events\Sent");
        assert_eq!(event.data, r#"{"id":7}"#);
        assert_eq!(event.socket, None);
        let nested = r#"{"event":"e","data":{"b":[1,{"a":"\u00e9\/"}],"a":null},"socket":"1.2"}"#;
        let event = parse_payload(nested.as_bytes()).unwrap();
        assert_eq!(event.data, r#"{"b":[1,{"a":"\u00e9\/"}],"a":null}"#);
        assert_eq!(event.socket.as_deref(), Some("1.2"));
    }

    #[test]
    fn string_data_is_passed_as_it_is() {
        let event = parse_payload(br#"{"event":"e","data":"{\"id\":7}"}"#).unwrap();
        assert_eq!(event.data, r#"{"id":7}"#);
        assert_eq!(event.socket, None);
        let event = parse_payload(br#"{"event":"e","data":"plain \"text\""}"#).unwrap();
        assert_eq!(event.data, r#"plain "text""#);
    }

    #[test]
    fn payloads_that_are_no_broadcast_are_named_by_what_is_missing() {
        for payload in [
            &b"not json"[..],
            b"[1,2]",
            b"{\"event\":7,\"data\":{}}",
            b"{\"event\":\"e\",\"data\":{},\"socket\":5}",
            b"{\"event\":\"e\",\"data\":{}",
            b"\xff",
        ] {
            assert_eq!(parse_payload(payload), Err(InvalidPayload::Malformed));
        }
        assert_eq!(
            parse_payload(br#"{"data":{}}"#),
            Err(InvalidPayload::NoEvent)
        );
        assert_eq!(
            parse_payload(br#"{"event":"e"}"#),
            Err(InvalidPayload::NoData)
        );
    }

    #[test]
    fn the_prefix_is_stripped_only_where_it_is() {
        let prefix = "laravel_database_";
        assert_eq!(
            strip_prefix(b"laravel_database_private-orders.1", prefix),
            Some("private-orders.1")
        );
        assert_eq!(strip_prefix(b"news", ""), Some("news"));
        assert_eq!(strip_prefix(b"other_news", prefix), None);
        assert_eq!(strip_prefix(b"laravel_database_\xff", prefix), None);
    }

    #[test]
    fn the_pattern_matches_the_prefix_literally() {
        assert_eq!(pattern("laravel_database_", "*"), "laravel_database_*");
        assert_eq!(pattern("a*b?[c]\\", "news*"), r"a\*b\?\[c\]\\news*");
        assert_eq!(pattern("", "*"), "*");
    }

    #[test]
    fn a_message_becomes_an_event_for_its_channel() {
        let config = AppConfig::default();
        let redis_channel = b"laravel_database_presence-chat.2";
        let payload = br#"{"event":"App\\Events\\Sent","data":{"id":7},"socket":"123.456"}"#;
        let broadcast = receive(&config, "laravel_database_", redis_channel, payload).unwrap();
        assert_eq!(broadcast.channel.as_str(), "presence-chat.2");
        assert_eq!(broadcast.event, r"App\Events\Sent");
        assert_eq!(broadcast.data, r#"{"id":7}"#);
        assert_eq!(broadcast.except, SocketId::parse("123.456"));
    }

    #[test]
    fn a_message_the_http_api_would_refuse_is_refused() {
        let config = AppConfig {
            max_message_bytes: 8,
            ..AppConfig::default()
        };
        let at_limit = br#"{"event":"e","data":{"a":12}}"#;
        assert!(receive(&config, "p_", b"p_news", at_limit).is_ok());
        let over = br#"{"event":"e","data":{"a":123}}"#;
        assert_eq!(
            receive(&config, "p_", b"p_news", over),
            Err(Refused::Publish(PublishRefusal::TooLarge { max: 8 }))
        );
        assert_eq!(
            receive(&config, "p_", b"q_news", SENT.as_bytes()),
            Err(Refused::OutsidePrefix)
        );
        assert!(matches!(
            receive(&config, "p_", b"p_bad channel", SENT.as_bytes()),
            Err(Refused::Publish(PublishRefusal::Channel { .. }))
        ));
        let reserved = br#"{"event":"pusher:ping","data":{}}"#;
        assert_eq!(
            receive(&config, "p_", b"p_news", reserved),
            Err(Refused::Publish(PublishRefusal::ReservedName))
        );
        let bad_socket = br#"{"event":"e","data":{},"socket":"abc"}"#;
        assert!(matches!(
            receive(&config, "p_", b"p_news", bad_socket),
            Err(Refused::Publish(PublishRefusal::SocketId { .. }))
        ));
        assert_eq!(
            receive(&config, "p_", b"p_news", b"nope"),
            Err(Refused::Payload(InvalidPayload::Malformed))
        );
    }
}
