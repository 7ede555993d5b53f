//! What the server sends a Socket.IO client, as complete WebSocket text frames each holding
//! one Engine.IO packet: the replies to one socket, and the events every subscriber shares.
//!
//! Events go out as laravel-echo-server emits them, `emit(event, channel, data)`, so
//! laravel-echo's socket.io channels (which filter on the second argument) and Flutter's
//! `socket.on(event, (channel, data) => ...)` read them unchanged. Published `data` that is
//! the JSON text of an object or array (what Laravel and the Pusher SDKs send) is delivered
//! as that value; any other string stays a string.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::packet::{DEFAULT_NAMESPACE, encode_connect, encode_connect_error, encode_disconnect};
use crate::core::ids::UserId;
use crate::core::wire::pusher::{codes, message as pusher};
use crate::core::wire::{Event, Fault, Reply};
use crate::core::ws::frame::{self, Opcode};

/// Sent to a socket whose subscription is refused, as laravel-echo-server sends it:
/// `(channel, status)`, then `{type, error}` saying why.
pub const SUBSCRIPTION_ERROR: &str = "subscription_error";
/// Sent to a socket whose subscription is confirmed (public and private channels; presence
/// channels get [`PRESENCE_SUBSCRIBED`] instead).
pub const SUBSCRIPTION_SUCCEEDED: &str = "subscription_succeeded";
/// A presence channel's members, to the socket that joined: `(channel, [member])`.
pub const PRESENCE_SUBSCRIBED: &str = "presence:subscribed";
/// A user joined a presence channel: `(channel, member)` to everyone else.
pub const PRESENCE_JOINING: &str = "presence:joining";
/// A user's last socket left a presence channel: `(channel, member)`.
pub const PRESENCE_LEAVING: &str = "presence:leaving";
/// A fault: `{code, message}`, with the codes of Pusher's `pusher:error`.
pub const ERROR: &str = "error";
/// A channel's subscriber count (apps that opt in): `(channel, {subscription_count})`.
pub const SUBSCRIPTION_COUNT: &str = "pusher:subscription_count";

/// A reply to one Socket.IO socket.
pub fn encode_reply(reply: &Reply<'_>) -> Bytes {
    match reply {
        Reply::Established { socket_id, pid, .. } => message(&encode_connect(
            DEFAULT_NAMESPACE,
            &socket_id.to_string(),
            *pid,
        )),
        Reply::Refused { fault, text } => {
            let data = serde_json::json!({ "code": codes::code(*fault) });
            let text = connect_error_message(*fault, *text);
            message(&encode_connect_error(DEFAULT_NAMESPACE, &text, Some(&data)))
        }
        Reply::Error { fault, text } => {
            let body = serde_json::json!({
                "code": codes::code(*fault),
                "message": text.unwrap_or(codes::message(*fault)),
            });
            let error = event(ERROR, None, &[&body.to_string()]);
            if fault.closes_connection() && !reconnects(*fault) {
                // A server DISCONNECT: socket.io-client does not reconnect after it.
                let mut both = BytesMut::from(&error[..]);
                both.extend_from_slice(&message(&encode_disconnect(DEFAULT_NAMESPACE)));
                both.freeze()
            } else {
                error
            }
        }
        Reply::NamespaceRefused { namespace } => {
            message(&encode_connect_error(namespace, "Invalid namespace", None))
        }
        Reply::Ack { id, payload } => message(&super::packet::encode_ack(
            DEFAULT_NAMESPACE,
            *id,
            &[payload],
        )),
        Reply::Ping => engine("2"),
        Reply::Pong => engine("3"),
        Reply::Subscribed {
            channel,
            members: None,
        } => event(SUBSCRIPTION_SUCCEEDED, Some(channel.as_str()), &[]),
        Reply::Subscribed {
            channel,
            members: Some(members),
        } => {
            let list: Vec<String> = members
                .iter()
                .map(|&(user, info)| member(user, info))
                .collect();
            let list = format!("[{}]", list.join(","));
            event(PRESENCE_SUBSCRIBED, Some(channel.as_str()), &[&list])
        }
        Reply::SubscriptionRefused { channel, refusal } => {
            let why = serde_json::json!({
                "type": refusal.kind().name(),
                "error": refusal.to_string(),
            });
            let status = refusal.status().to_string();
            event(
                SUBSCRIPTION_ERROR,
                Some(channel),
                &[&status, &why.to_string()],
            )
        }
        Reply::SubscriptionRevoked {
            channel,
            rule,
            reason,
        } => {
            let why = serde_json::json!({ "rule": rule, "reason": reason });
            let name = pusher::SUBSCRIPTION_REVOKED;
            event(name, Some(channel.as_str()), &[&why.to_string()])
        }
        Reply::Renewed { expires_at } => {
            let body = serde_json::json!({ "expires_at": expires_at });
            event(pusher::RENEWED, None, &[&body.to_string()])
        }
        Reply::RenewFailed { reason } => {
            let body = serde_json::json!({ "reason": reason });
            event(pusher::RENEW_FAILED, None, &[&body.to_string()])
        }
        Reply::CacheMiss { channel } => event(pusher::CACHE_MISS, Some(channel.as_str()), &[]),
        // Sign-in and watchlists are Pusher's user features; a Socket.IO client cannot ask
        // for them, so these are written for completeness only.
        Reply::SignedIn { user_data } => {
            event(pusher::SIGNIN_SUCCESS, None, &[&json_string(user_data)])
        }
        Reply::Watchlist { online, users } => {
            let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            let body = serde_json::json!({ "online": online, "user_ids": ids });
            event(pusher::WATCHLIST_EVENTS, None, &[&body.to_string()])
        }
    }
}

/// An event for every Socket.IO subscriber of its channel.
pub fn encode_event(published: &Event<'_>) -> Bytes {
    match published {
        Event::Channel {
            event: name,
            channel,
            data,
        } => event(name, Some(channel.as_str()), &[&data_value(data)]),
        Event::Client {
            event: name,
            channel,
            data,
            ..
        } => event(name, Some(channel.as_str()), &[data.get()]),
        Event::MemberAdded {
            channel,
            user,
            info,
        } => event(
            PRESENCE_JOINING,
            Some(channel.as_str()),
            &[&member(user, *info)],
        ),
        Event::MemberRemoved {
            channel,
            user,
            info,
        } => event(
            PRESENCE_LEAVING,
            Some(channel.as_str()),
            &[&member(user, *info)],
        ),
        Event::SubscriptionCount { channel, count } => {
            let body = format!(r#"{{"subscription_count":{count}}}"#);
            event(SUBSCRIPTION_COUNT, Some(channel.as_str()), &[&body])
        }
    }
}

/// The Pusher event frame as the same event for Socket.IO subscribers: what arrives from
/// other nodes (which exchange Pusher frames) and what a cache channel stored. `None` when the
/// frame is not an event this broker wrote.
pub fn from_pusher_frame(frame: &[u8]) -> Option<Bytes> {
    from_pusher_frame_with(frame, None)
}

/// [`from_pusher_frame`] for a `member_removed` whose member's `user_info` is known apart
/// from the frame.
pub fn from_pusher_frame_with(frame: &[u8], member_info: Option<&str>) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct PusherEvent<'a> {
        #[serde(borrow)]
        event: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        channel: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let payload = text_payload(frame)?;
    let pusher: PusherEvent = serde_json::from_slice(payload).ok()?;
    let channel = Some(&*pusher.channel);
    // Server events carry their data as a string; client events as any JSON value.
    let data_text: Option<String> = serde_json::from_str(pusher.data.get()).ok();
    let member_data = || data_text.as_deref().map_or("null", str::trim);
    let bytes = match &*pusher.event {
        pusher::MEMBER_ADDED => event(PRESENCE_JOINING, channel, &[member_data()]),
        pusher::MEMBER_REMOVED => {
            #[derive(Deserialize)]
            struct Removed {
                user_id: String,
            }
            let removed = data_text
                .as_deref()
                .and_then(|t| serde_json::from_str::<Removed>(t).ok());
            match (removed, member_info) {
                (Some(removed), Some(info)) => {
                    let user = UserId::parse(&removed.user_id, usize::MAX).ok()?;
                    event(PRESENCE_LEAVING, channel, &[&member(&user, Some(info))])
                }
                _ => event(PRESENCE_LEAVING, channel, &[member_data()]),
            }
        }
        pusher::SUBSCRIPTION_COUNT => event(SUBSCRIPTION_COUNT, channel, &[member_data()]),
        name => match &data_text {
            Some(text) => event(name, channel, &[&data_value(text)]),
            None => event(name, channel, &[pusher.data.get()]),
        },
    };
    Some(bytes)
}

/// The Engine.IO handshake (`open`), the first packet of every Socket.IO connection.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u128,
    ping_timeout_ms: u128,
    max_payload: usize,
) -> String {
    let open = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms as u64,
        "pingTimeout": ping_timeout_ms as u64,
        "maxPayload": max_payload,
    });
    format!("0{open}")
}

/// The words of a `CONNECT_ERROR`: a refused identity always says "authentication", which
/// is what clients of the reference deployment look for.
fn connect_error_message(fault: Fault, text: Option<&str>) -> String {
    let text = text.unwrap_or(codes::message(fault));
    match fault {
        Fault::Unauthorized | Fault::TokenExpired => format!("authentication error: {text}"),
        _ => text.to_owned(),
    }
}

/// Whether socket.io-client should reconnect after the fault closes the connection: the
/// faults Pusher numbers 4100 to 4299, after which pusher-js reconnects too.
fn reconnects(fault: Fault) -> bool {
    codes::code(fault) >= 4100
}

/// A presence member as laravel-echo-server lists it: `{user_id, user_info}`.
fn member(user: &UserId, info: Option<&str>) -> String {
    format!(
        r#"{{"user_id":{},"user_info":{}}}"#,
        json_string(user.as_str()),
        info.unwrap_or("null")
    )
}

/// Published data as the value Socket.IO clients receive (see the module docs).
fn data_value(data: &str) -> String {
    let trimmed = data.trim_start();
    let structured = (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<&RawValue>(data).is_ok();
    if structured {
        data.to_owned()
    } else {
        json_string(data)
    }
}

fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// `42[name, channel?, ...args]` as one text frame.
fn event(name: &str, channel: Option<&str>, args: &[&str]) -> Bytes {
    let channel = channel.map(json_string);
    let mut all: Vec<&str> = Vec::with_capacity(args.len() + 1);
    all.extend(channel.as_deref());
    all.extend_from_slice(args);
    message(&super::packet::encode_event(DEFAULT_NAMESPACE, name, &all))
}

/// A Socket.IO packet inside an Engine.IO message, as one text frame.
fn message(packet: &str) -> Bytes {
    let mut text = String::with_capacity(1 + packet.len());
    text.push('4');
    text.push_str(packet);
    engine(&text)
}

fn engine(text: &str) -> Bytes {
    frame::encode_frame(Opcode::Text, text.as_bytes())
}

/// An event frame of [`encode_event`] with `offset` as its last argument, as Socket.IO's
/// connection state recovery marks each event (the client keeps the last one it received and
/// sends it back as `auth.offset`). `None`: `frame` is no event frame.
pub fn with_offset(frame: &[u8], offset: &str) -> Option<Bytes> {
    let payload = text_payload(frame)?;
    let open = payload.strip_suffix(b"]")?;
    let offset = json_string(offset);
    let mut text = Vec::with_capacity(payload.len() + offset.len() + 1);
    text.extend_from_slice(open);
    text.push(b',');
    text.extend_from_slice(offset.as_bytes());
    text.push(b']');
    Some(frame::encode_frame(Opcode::Text, &text))
}

/// The payload of an unmasked server text frame.
/// The payload of an unmasked server text frame (`None`: not one, or incomplete).
pub(crate) fn text_payload(frame: &[u8]) -> Option<&[u8]> {
    let (opcode, payload) = next_frame(frame, 0)?;
    (opcode == Some(Opcode::Text)).then(|| &frame[payload])
}

/// The opcode and payload range of the unmasked server frame at `at`, if one is complete.
fn next_frame(frames: &[u8], at: usize) -> Option<(Option<Opcode>, std::ops::Range<usize>)> {
    let opcode = Opcode::from_u8(frames.get(at)? & 0x0f);
    let len_byte = frames.get(at + 1)? & 0x7f;
    let (start, len) = match len_byte {
        126 => {
            let bytes = frames.get(at + 2..at + 4)?;
            (at + 4, u16::from_be_bytes([bytes[0], bytes[1]]) as usize)
        }
        127 => {
            let bytes: [u8; 8] = frames.get(at + 2..at + 10)?.try_into().ok()?;
            (at + 10, usize::try_from(u64::from_be_bytes(bytes)).ok()?)
        }
        short => (at + 2, short as usize),
    };
    let end = start.checked_add(len).filter(|&end| end <= frames.len())?;
    Some((opcode, start..end))
}

/// What the frames of one output hold for a long-polling body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PollingPackets {
    /// The Engine.IO packets, in order, sharing the frames' bytes.
    pub packets: Vec<Bytes>,
    /// A close frame came: the connection ends once these are delivered.
    pub closed: bool,
}

impl PollingPackets {
    /// Adds the packets of `frames` (one or more server frames this module wrote); what
    /// follows a close frame is dropped.
    pub fn push(&mut self, frames: &Bytes) {
        let mut at = 0;
        while !self.closed
            && let Some((opcode, payload)) = next_frame(frames, at)
        {
            at = payload.end;
            match opcode {
                Some(Opcode::Close) => self.closed = true,
                Some(Opcode::Text) => self.packets.push(frames.slice(payload)),
                _ => {}
            }
        }
    }

    /// The long-polling body: the packets joined by the record separator.
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.packets.iter().map(|p| p.len() + 1).sum());
        for (i, packet) in self.packets.iter().enumerate() {
            if i > 0 {
                body.push(super::engine::RECORD_SEPARATOR as u8);
            }
            body.extend_from_slice(packet);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::channel::ChannelName;
    use crate::core::ids::SocketId;
    use crate::core::wire::Refusal;
    use crate::core::wire::pusher;

    fn text(frame: &Bytes) -> String {
        let mut packets = PollingPackets::default();
        packets.push(frame);
        String::from_utf8(packets.body()).unwrap()
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name, 200).unwrap()
    }

    #[test]
    fn published_events_go_out_as_laravel_echo_server_emits_them() {
        let orders = channel("private-orders.1");
        let object = Event::Channel {
            event: "App\\Events\\Shipped",
            channel: &orders,
            data: r#"{"id":7}"#,
        };
        assert_eq!(
            text(&encode_event(&object)),
            r#"42["App\\Events\\Shipped","private-orders.1",{"id":7}]"#
        );
        for (data, sent) in [
            ("hello", r#""hello""#),
            ("42", r#""42""#),
            ("{x", r#""{x""#),
        ] {
            let plain = Event::Channel {
                event: "e",
                channel: &orders,
                data,
            };
            assert_eq!(
                text(&encode_event(&plain)),
                format!(r#"42["e","private-orders.1",{sent}]"#)
            );
        }
        let user = UserId::parse("5", 128).unwrap();
        let left = Event::MemberRemoved {
            channel: &orders,
            user: &user,
            info: Some(r#"{"name":"Ann"}"#),
        };
        assert_eq!(
            text(&encode_event(&left)),
            r#"42["presence:leaving","private-orders.1",{"user_id":"5","user_info":{"name":"Ann"}}]"#
        );
    }

    #[test]
    fn a_pusher_frame_becomes_the_same_socket_io_event() {
        let chat = channel("presence-chat.2");
        let user = UserId::parse("5", 128).unwrap();
        let events = [
            Event::Channel {
                event: "Sent",
                channel: &chat,
                data: r#"{"body":"hi"}"#,
            },
            Event::Channel {
                event: "Sent",
                channel: &chat,
                data: "plain",
            },
            Event::MemberAdded {
                channel: &chat,
                user: &user,
                info: Some(r#"{"name":"Ann"}"#),
            },
            Event::SubscriptionCount {
                channel: &chat,
                count: 3,
            },
        ];
        for published in &events {
            let from_pusher = from_pusher_frame(&pusher::encode_event(published)).unwrap();
            assert_eq!(text(&from_pusher), text(&encode_event(published)));
        }
        assert_eq!(from_pusher_frame(b"\x81\x02hi"), None);
        let removed = pusher::encode_event(&Event::MemberRemoved {
            channel: &chat,
            user: &user,
            info: None,
        });
        let with_info = from_pusher_frame_with(&removed, Some(r#"{"name":"Ann"}"#)).unwrap();
        assert_eq!(
            text(&with_info),
            r#"42["presence:leaving","presence-chat.2",{"user_id":"5","user_info":{"name":"Ann"}}]"#
        );
    }

    #[test]
    fn replies_are_the_packets_socket_io_clients_expect() {
        let id = SocketId::parse("123.456").unwrap();
        let established = Reply::Established {
            socket_id: id,
            activity_timeout: std::time::Duration::from_secs(1),
            pid: None,
        };
        assert_eq!(text(&encode_reply(&established)), r#"40{"sid":"123.456"}"#);
        let recoverable = Reply::Established {
            socket_id: id,
            activity_timeout: std::time::Duration::from_secs(1),
            pid: Some("0.abc"),
        };
        assert_eq!(
            text(&encode_reply(&recoverable)),
            r#"40{"pid":"0.abc","sid":"123.456"}"#
        );
        let refused = Reply::Refused {
            fault: Fault::Unauthorized,
            text: Some("token refused: expired"),
        };
        assert_eq!(
            text(&encode_reply(&refused)),
            r#"44{"data":{"code":4009},"message":"authentication error: token refused: expired"}"#
        );
        assert_eq!(text(&encode_reply(&Reply::Ping)), "2");
        let news = channel("private-news");
        let refusal = Refusal::TooManySubscriptions { max: 1 };
        let refused = Reply::SubscriptionRefused {
            channel: news.as_str(),
            refusal: &refusal,
        };
        assert_eq!(
            text(&encode_reply(&refused)),
            r#"42["subscription_error","private-news",429,{"error":"a connection may hold at most 1 subscriptions","type":"LimitReached"}]"#
        );
    }

    #[test]
    fn a_fault_that_must_not_reconnect_ends_with_a_server_disconnect() {
        let error = encode_reply(&Reply::Error {
            fault: Fault::TokenExpired,
            text: None,
        });
        let expired = frame::encode_frame(
            Opcode::Text,
            br#"42["error",{"code":4010,"message":"Token expired"}]"#,
        );
        assert_eq!(&error[..expired.len()], &expired[..]);
        assert_eq!(&error[expired.len()..], &engine("41")[..]);
        let restart = encode_reply(&Reply::Error {
            fault: Fault::Reconnect,
            text: None,
        });
        assert!(text(&restart).starts_with(r#"42["error",{"code":4200"#));
        assert!(!text(&restart).contains("41"));
    }

    #[test]
    fn a_polling_body_joins_the_packets_of_frames_and_stops_at_a_close() {
        let mut packets = PollingPackets::default();
        packets.push(&encode_reply(&Reply::Error {
            fault: Fault::TokenExpired,
            text: None,
        }));
        let long = "x".repeat(70_000);
        packets.push(&engine(&format!("4{long}")));
        assert!(!packets.closed);
        packets.push(&frame::encode_close(4009, "bye"));
        packets.push(&engine("2"));
        assert!(packets.closed);
        let body = String::from_utf8(packets.body()).unwrap();
        let parts: Vec<&str> = body.split('\u{1e}').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            r#"42["error",{"code":4010,"message":"Token expired"}]"#
        );
        assert_eq!(parts[1], "41");
        assert_eq!(parts[2].len(), 70_001);
    }

    #[test]
    fn the_handshake_names_its_timings_and_payload_limit() {
        assert_eq!(
            open_packet("abc", &["websocket"], 25_000, 20_000, 65_536),
            r#"0{"maxPayload":65536,"pingInterval":25000,"pingTimeout":20000,"sid":"abc","upgrades":["websocket"]}"#
        );
    }
}
