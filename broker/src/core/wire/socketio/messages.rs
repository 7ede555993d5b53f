//! What a Socket.IO client sends, as the shard acts on it: laravel-echo-server's events on the
//! default namespace (`subscribe`, `unsubscribe`, `client event`) and Engine.IO's own packets.
//!
//! Malformed Engine.IO and Socket.IO packets close the connection, as the reference server
//! closes it ("parse error"); a well-formed event with a payload of the wrong shape is
//! answered with an `error` event and the connection stays open.

use std::borrow::Cow;

use serde_json::Value;

use super::engine::EnginePacket;
use super::packet::{Body, DEFAULT_NAMESPACE, Packet};
use crate::core::wire::pusher::message::RENEW;
use crate::core::wire::{Command, ForwardHeaders, ParseError, SubscribeRequest};
use crate::core::{receipts, typing};

/// laravel-echo-server's event for joining a channel: `{channel, auth}`.
pub const SUBSCRIBE: &str = "subscribe";
/// laravel-echo-server's event for leaving a channel: `{channel}`.
pub const UNSUBSCRIBE: &str = "unsubscribe";
/// laravel-echo-server's event for a whisper: `{channel, event, data}`.
pub const CLIENT_EVENT: &str = "client event";
/// The chat reference's "I am typing" on a channel, `{channel}`: the same as a
/// `client-typing` whisper there, its payload relayed as the whisper's data.
pub const TYPING: &str = "typing";
/// The chat reference's "I stopped typing", `{channel}`: a `client-typing-stop` whisper.
pub const TYPING_STOP: &str = "typing:stop";
/// Which members of a channel are typing, `{channel}`, answered to the acknowledgement
/// callback as `{"users":[{"id","since_ms"}]}` (or `{"error"}`).
pub const TYPING_GET: &str = "typing:get";
/// Most headers a client may ask to forward to the app's auth endpoint.
pub const MAX_FORWARDED_HEADERS: usize = 32;

/// Parses one text message (an Engine.IO packet) from a Socket.IO client.
pub fn parse(text: &[u8]) -> Result<Command<'static>, ParseError> {
    let text = std::str::from_utf8(text).map_err(|_| ParseError::NotUtf8)?;
    let message = match EnginePacket::decode(text).map_err(ParseError::Engine)? {
        EnginePacket::Message(message) => message,
        EnginePacket::Pong(_) => return Ok(Command::Pong),
        EnginePacket::Ping(_) => return Ok(Command::Ping),
        EnginePacket::Close => return Ok(Command::Quit),
        // An upgrade's last steps, after which the WebSocket is the transport anyway.
        EnginePacket::Upgrade | EnginePacket::Noop => return Ok(Command::Ignored),
        EnginePacket::Open(_) => unreachable!("EnginePacket::decode refuses open from clients"),
    };
    let packet = Packet::decode(message).map_err(ParseError::Packet)?;
    if packet.namespace != DEFAULT_NAMESPACE {
        return Ok(match packet.body {
            Body::Connect(_) => Command::OtherNamespace {
                namespace: Cow::Owned(packet.namespace),
            },
            // Packets for a namespace the client was refused: nothing to do.
            _ => Command::Ignored,
        });
    }
    match packet.body {
        // The client is already in the default namespace (the shell admitted it there).
        Body::Connect(_) | Body::Ack(_) => Ok(Command::Ignored),
        Body::Disconnect => Ok(Command::Quit),
        Body::Event { name, args } => event(&name, args, packet.ack),
    }
}

/// One event on the default namespace; events laravel-echo-server does not know are ignored,
/// as it ignores them.
fn event(name: &str, args: Vec<Value>, ack: Option<u64>) -> Result<Command<'static>, ParseError> {
    let mut args = args.into_iter();
    let payload = args.next();
    match name {
        SUBSCRIBE => subscribe(payload).map(Command::Subscribe),
        UNSUBSCRIBE => {
            let mut object = object(payload, UNSUBSCRIBE_NEEDS)?;
            let channel = string(&mut object, "channel").ok_or(UNSUBSCRIBE_NEEDS)?;
            Ok(Command::Unsubscribe {
                channel: Cow::Owned(channel),
            })
        }
        CLIENT_EVENT => {
            let mut object = object(payload, CLIENT_EVENT_NEEDS)?;
            let channel = string(&mut object, "channel").ok_or(CLIENT_EVENT_NEEDS)?;
            let event = string(&mut object, "event").ok_or(CLIENT_EVENT_NEEDS)?;
            let data = object.remove("data").unwrap_or(Value::Null);
            let data = serde_json::value::to_raw_value(&data).map_err(|_| CLIENT_EVENT_NEEDS)?;
            Ok(Command::ClientEvent {
                event: Cow::Owned(event),
                channel: Cow::Owned(channel),
                data: Cow::Owned(data),
            })
        }
        TYPING | TYPING_STOP => {
            let (event, needs) = if name == TYPING {
                (typing::TYPING_EVENT, TYPING_NEEDS)
            } else {
                (typing::TYPING_STOP_EVENT, TYPING_STOP_NEEDS)
            };
            let mut object = object(payload, needs.clone())?;
            let channel = string(&mut object, "channel").ok_or_else(|| needs.clone())?;
            let data = serde_json::value::to_raw_value(&object).map_err(|_| needs)?;
            Ok(Command::ClientEvent {
                event: Cow::Borrowed(event),
                channel: Cow::Owned(channel),
                data: Cow::Owned(data),
            })
        }
        receipts::READ_EVENT | receipts::SEEN_EVENT => {
            let (channel, id) = payload
                .as_ref()
                .and_then(receipts::read_request)
                .ok_or(READ_NEEDS)?;
            Ok(Command::Read { channel, id })
        }
        TYPING_GET => {
            let mut object = object(payload, TYPING_GET_NEEDS)?;
            let channel = string(&mut object, "channel").ok_or(TYPING_GET_NEEDS)?;
            Ok(Command::TypingGet {
                channel: Cow::Owned(channel),
                ack,
            })
        }
        RENEW => {
            let mut object = object(payload, RENEW_NEEDS)?;
            let token = string(&mut object, "token").ok_or(RENEW_NEEDS)?;
            Ok(Command::Renew {
                token: Cow::Owned(token),
            })
        }
        _ => Ok(Command::Ignored),
    }
}

/// An event whose payload must be an object naming its channel.
const fn needs_channel(event: &'static str) -> ParseError {
    ParseError::BadField {
        event,
        field: "an object with a string \"channel\"",
    }
}

const SUBSCRIBE_NEEDS: ParseError = needs_channel(SUBSCRIBE);
const UNSUBSCRIBE_NEEDS: ParseError = needs_channel(UNSUBSCRIBE);
const CLIENT_EVENT_NEEDS: ParseError = ParseError::BadField {
    event: CLIENT_EVENT,
    field: "an object with string \"channel\" and \"event\"",
};
const TYPING_NEEDS: ParseError = needs_channel(TYPING);
const TYPING_STOP_NEEDS: ParseError = needs_channel(TYPING_STOP);
const TYPING_GET_NEEDS: ParseError = needs_channel(TYPING_GET);
const READ_NEEDS: ParseError = ParseError::BadField {
    event: receipts::READ_EVENT,
    field: "an object with a string \"channel\" and a string or number \"id\"",
};
const RENEW_NEEDS: ParseError = ParseError::BadField {
    event: RENEW,
    field: "an object with a string \"token\"",
};
const AUTH_NEEDS: ParseError = ParseError::BadField {
    event: SUBSCRIBE,
    field: "\"auth\" as \"key:signature\" or {\"headers\": {name: value}}",
};

/// `{channel, auth, channel_data}`: `auth` is either the Pusher signature (with
/// `channel_data` for presence) or laravel-echo-server's `{headers}` to forward to the app's
/// auth endpoint.
fn subscribe(payload: Option<Value>) -> Result<SubscribeRequest<'static>, ParseError> {
    let mut object = object(payload, SUBSCRIBE_NEEDS)?;
    let channel = string(&mut object, "channel").ok_or(SUBSCRIBE_NEEDS)?;
    let channel_data = match object.remove("channel_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(Cow::Owned(text)),
        // Sent as the object it describes: the signature then covers its compact text.
        Some(other) => Some(Cow::Owned(other.to_string())),
    };
    let (auth, forward) = match object.remove("auth") {
        None | Some(Value::Null) => (None, None),
        Some(Value::String(signature)) => (Some(Cow::Owned(signature)), None),
        Some(Value::Object(mut auth)) => (None, Some(headers(auth.remove("headers"))?)),
        Some(_) => return Err(AUTH_NEEDS),
    };
    Ok(SubscribeRequest {
        channel: Cow::Owned(channel),
        auth,
        channel_data,
        forward,
    })
}

/// `auth.headers` as the name-value pairs to forward; values that are not strings are
/// refused rather than guessed at.
fn headers(headers: Option<Value>) -> Result<ForwardHeaders, ParseError> {
    let pairs = match headers {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) if map.len() <= MAX_FORWARDED_HEADERS => map
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(value) => Ok((name, value)),
                _ => Err(AUTH_NEEDS),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(AUTH_NEEDS),
    };
    Ok(ForwardHeaders(pairs))
}

fn object(
    payload: Option<Value>,
    needs: ParseError,
) -> Result<serde_json::Map<String, Value>, ParseError> {
    match payload {
        Some(Value::Object(object)) => Ok(object),
        _ => Err(needs),
    }
}

fn string(object: &mut serde_json::Map<String, Value>, field: &str) -> Option<String> {
    match object.remove(field) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> Command<'static> {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn echos_subscribe_forwards_its_headers() {
        let text = r#"42["subscribe",{"channel":"private-orders.1","auth":{"headers":{"Authorization":"Bearer t"}}}]"#;
        let Command::Subscribe(request) = command(text) else {
            panic!()
        };
        assert_eq!(request.channel, "private-orders.1");
        assert_eq!(request.auth, None);
        assert_eq!(
            request.forward,
            Some(ForwardHeaders(vec![(
                "Authorization".into(),
                "Bearer t".into()
            )]))
        );
        let public = command(r#"42["subscribe",{"channel":"news","auth":{}}]"#);
        let Command::Subscribe(request) = public else {
            panic!()
        };
        assert_eq!(request.forward, Some(ForwardHeaders(Vec::new())));
    }

    #[test]
    fn a_signed_subscribe_keeps_its_signature_and_channel_data() {
        let text = r#"42["subscribe",{"channel":"presence-a","auth":"key:sig","channel_data":{"user_id":"1"}}]"#;
        let Command::Subscribe(request) = command(text) else {
            panic!()
        };
        assert_eq!(request.auth.as_deref(), Some("key:sig"));
        assert_eq!(request.channel_data.as_deref(), Some(r#"{"user_id":"1"}"#));
        assert_eq!(request.forward, None);
    }

    #[test]
    fn whispers_unsubscribes_and_engine_packets_become_commands() {
        let Command::ClientEvent {
            event,
            channel,
            data,
        } = command(
            r#"42["client event",{"channel":"private-a","event":"client-typing","data":{"x":1}}]"#,
        )
        else {
            panic!()
        };
        assert_eq!(
            (&*event, &*channel, data.get()),
            ("client-typing", "private-a", r#"{"x":1}"#)
        );
        assert!(matches!(
            command(r#"42["unsubscribe",{"channel":"news"}]"#),
            Command::Unsubscribe { channel } if channel == "news"
        ));
        assert!(matches!(command("3"), Command::Pong));
        assert!(matches!(command("2"), Command::Ping));
        assert!(matches!(command("1"), Command::Quit));
        assert!(matches!(command("41"), Command::Quit));
        for ignored in ["5", "6", "40", r#"42["hello",1]"#, "431[true]"] {
            assert!(matches!(command(ignored), Command::Ignored), "{ignored}");
        }
        assert!(matches!(
            command("40/admin,"),
            Command::OtherNamespace { namespace } if namespace == "/admin"
        ));
    }

    #[test]
    fn malformed_packets_close_and_bad_payloads_do_not() {
        for closing in ["", "0", "9", "4", "42[", "42{}", "451-[\"x\"]", "44{}"] {
            let err = parse(closing.as_bytes()).unwrap_err();
            assert!(err.closes(), "{closing:?}: {err}");
        }
        for open in [
            r#"42["subscribe"]"#,
            r#"42["subscribe",{"channel":1}]"#,
            r#"42["subscribe",{"channel":"a","auth":7}]"#,
            r#"42["subscribe",{"channel":"a","auth":{"headers":{"x":1}}}]"#,
            r#"42["client event",{"channel":"a"}]"#,
            r#"42["unsubscribe",[]]"#,
        ] {
            let err = parse(open.as_bytes()).unwrap_err();
            assert!(!err.closes(), "{open}: {err}");
        }
        assert!(matches!(parse(b"\xff"), Err(ParseError::NotUtf8)));
    }
}
