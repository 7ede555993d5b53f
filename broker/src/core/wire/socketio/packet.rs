//! Socket.IO 5 packets, carried in Engine.IO messages:
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`.
//!
//! A client's packet is parsed once into a [`Packet`] whose payload already has the shape its
//! type requires, so the rest of the broker never looks at the text again. Binary
//! attachments are refused with [`PacketError::Binary`]: Ringcast's channels carry JSON.

use serde_json::Value;

/// The default namespace, which the text form leaves out.
pub const DEFAULT_NAMESPACE: &str = "/";
/// Longest namespace name taken, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;
/// Largest acknowledgement id taken (socket.io-client counts up from 0).
pub const MAX_ACK_ID: u64 = u32::MAX as u64;

/// What a client asks for, with the payload its type requires.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// `0`: join the namespace, with the client's `auth` object (absent: none).
    Connect(Option<serde_json::Map<String, Value>>),
    /// `1`: leave the namespace.
    Disconnect,
    /// `2`: an event: its name and arguments.
    Event {
        /// The event name (the array's first element).
        name: String,
        /// The remaining elements.
        args: Vec<Value>,
    },
    /// `3`: the answer to a server event that asked for one.
    Ack(Vec<Value>),
}

/// A client's Socket.IO packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// The namespace, `/` unless the text names one.
    pub namespace: String,
    /// The acknowledgement id: the client wants an answer to this event (or this answers
    /// the server's event with that id).
    pub ack: Option<u64>,
    /// What the packet asks for.
    pub body: Body,
}

/// Why a text is not a Socket.IO packet a client may send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// No type digit.
    #[error("empty Socket.IO packet")]
    Empty,
    /// A type other than `0` to `6`.
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownType(char),
    /// `CONNECT_ERROR`, which only a server sends.
    #[error("CONNECT_ERROR is sent by servers only")]
    ServerOnly,
    /// `BINARY_EVENT` or `BINARY_ACK`.
    #[error("binary attachments are not supported: send JSON")]
    Binary,
    /// The namespace is not `/...` followed by `,`, or is too long.
    #[error("bad namespace")]
    BadNamespace,
    /// The acknowledgement id is over [`MAX_ACK_ID`].
    #[error("acknowledgement id too large")]
    BadAckId,
    /// The payload is not JSON.
    #[error("payload is not JSON")]
    NotJson,
    /// The payload does not have the shape the type requires.
    #[error("{0}")]
    BadPayload(&'static str),
}

impl Packet {
    /// Reads one packet a client sent (the data of an Engine.IO message).
    pub fn decode(text: &str) -> Result<Self, PacketError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(PacketError::Empty)?;
        let rest = chars.as_str();
        match kind {
            '0'..='3' => {}
            '4' => return Err(PacketError::ServerOnly),
            '5' | '6' => return Err(PacketError::Binary),
            other => return Err(PacketError::UnknownType(other)),
        }
        let (namespace, rest) = match rest.strip_prefix('/') {
            None => (DEFAULT_NAMESPACE, rest),
            Some(_) => {
                // The namespace runs to the first ',' (or, with no payload, to the end).
                let end = rest.find(',').unwrap_or(rest.len());
                let name = &rest[..end];
                if name.len() > MAX_NAMESPACE_BYTES {
                    return Err(PacketError::BadNamespace);
                }
                (name, rest.get(end + 1..).unwrap_or(""))
            }
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack = match digits {
            0 => None,
            _ => Some(
                rest[..digits]
                    .parse::<u64>()
                    .ok()
                    .filter(|&id| id <= MAX_ACK_ID)
                    .ok_or(PacketError::BadAckId)?,
            ),
        };
        let payload = &rest[digits..];
        let value: Option<Value> = if payload.is_empty() {
            None
        } else {
            Some(serde_json::from_str(payload).map_err(|_| PacketError::NotJson)?)
        };
        let body = match (kind, value) {
            ('0', None) => Body::Connect(None),
            ('0', Some(Value::Object(auth))) => Body::Connect(Some(auth)),
            ('0', Some(_)) => {
                return Err(PacketError::BadPayload("CONNECT payload must be an object"));
            }
            ('1', None) => Body::Disconnect,
            ('1', Some(_)) => return Err(PacketError::BadPayload("DISCONNECT takes no payload")),
            ('2', Some(Value::Array(mut items))) => {
                if !matches!(items.first(), Some(Value::String(_))) {
                    return Err(PacketError::BadPayload(
                        "EVENT payload must start with the event name",
                    ));
                }
                let Value::String(name) = items.remove(0) else {
                    unreachable!("checked above");
                };
                Body::Event { name, args: items }
            }
            ('2', _) => return Err(PacketError::BadPayload("EVENT payload must be an array")),
            ('3', Some(Value::Array(items))) if ack.is_some() => Body::Ack(items),
            ('3', _) => {
                return Err(PacketError::BadPayload(
                    "ACK needs an id and an array payload",
                ));
            }
            _ => unreachable!("other types returned above"),
        };
        if matches!(body, Body::Connect(_) | Body::Disconnect) && ack.is_some() {
            return Err(PacketError::BadAckId);
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            ack,
            body,
        })
    }
}

/// The `<type>[<namespace>,][<ack id>]` start of a packet the server sends.
fn head(kind: char, namespace: &str, ack: Option<u64>) -> String {
    let mut out = String::with_capacity(16 + namespace.len());
    out.push(kind);
    if namespace != DEFAULT_NAMESPACE {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = ack {
        out.push_str(&id.to_string());
    }
    out
}

/// `CONNECT` accepted: `{"sid": ...}` for the namespace, with `pid` when the session can
/// be recovered.
pub fn encode_connect(namespace: &str, sid: &str, pid: Option<&str>) -> String {
    let mut out = head('0', namespace, None);
    let body = match pid {
        Some(pid) => serde_json::json!({ "sid": sid, "pid": pid }),
        None => serde_json::json!({ "sid": sid }),
    };
    out.push_str(&body.to_string());
    out
}

/// `CONNECT_ERROR` with `{"message": ..., "data": ...}`, which socket.io-client hands to
/// `connect_error` as an `Error` with that message and `data`.
pub fn encode_connect_error(namespace: &str, message: &str, data: Option<&Value>) -> String {
    let mut out = head('4', namespace, None);
    let body = match data {
        Some(data) => serde_json::json!({ "message": message, "data": data }),
        None => serde_json::json!({ "message": message }),
    };
    out.push_str(&body.to_string());
    out
}

/// `EVENT` `[name, ...args]`, where `args_json` is each argument's JSON text.
pub fn encode_event(namespace: &str, name: &str, args_json: &[&str]) -> String {
    let mut out = head('2', namespace, None);
    out.push('[');
    out.push_str(&Value::from(name).to_string());
    for arg in args_json {
        out.push(',');
        out.push_str(arg);
    }
    out.push(']');
    out
}

/// `ACK` with id `ack` answering with `args_json`.
pub fn encode_ack(namespace: &str, ack: u64, args_json: &[&str]) -> String {
    let mut out = head('3', namespace, Some(ack));
    out.push('[');
    out.push_str(&args_json.join(","));
    out.push(']');
    out
}

/// `DISCONNECT` from the namespace.
pub fn encode_disconnect(namespace: &str) -> String {
    head('1', namespace, None)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(text: &str) -> Packet {
        Packet::decode(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_protocols_examples_decode() {
        let connect = decode("0");
        assert_eq!(
            (connect.namespace.as_str(), connect.body),
            ("/", Body::Connect(None))
        );
        let admin = decode(r#"0/admin,{"token":"123"}"#);
        assert_eq!(admin.namespace, "/admin");
        let auth = json!({"token": "123"}).as_object().cloned();
        assert_eq!(admin.body, Body::Connect(auth));
        assert_eq!(decode("1/admin,").body, Body::Disconnect);
        assert_eq!(decode("1/admin").namespace, "/admin");
        let event = decode(r#"2["hello",1]"#);
        assert_eq!(
            event.body,
            Body::Event {
                name: "hello".into(),
                args: vec![json!(1)]
            }
        );
        let with_ack = decode(r#"2/admin,456["project:delete",123]"#);
        assert_eq!(
            (with_ack.namespace.as_str(), with_ack.ack),
            ("/admin", Some(456))
        );
        let ack = decode("3/admin,456[]");
        assert_eq!((ack.ack, ack.body), (Some(456), Body::Ack(vec![])));
        assert_eq!(decode(r#"212["a"]"#).ack, Some(12));
    }

    #[test]
    fn what_a_client_may_not_send_is_refused_with_its_reason() {
        let cases = [
            ("", PacketError::Empty),
            ("9", PacketError::UnknownType('9')),
            (r#"4{"message":"x"}"#, PacketError::ServerOnly),
            (
                r#"51-["hello",{"_placeholder":true,"num":0}]"#,
                PacketError::Binary,
            ),
            ("61-0[]", PacketError::Binary),
            (
                r#"2{"a":1}"#,
                PacketError::BadPayload("EVENT payload must be an array"),
            ),
            (
                "2",
                PacketError::BadPayload("EVENT payload must be an array"),
            ),
            (
                "2[]",
                PacketError::BadPayload("EVENT payload must start with the event name"),
            ),
            (
                "2[1]",
                PacketError::BadPayload("EVENT payload must start with the event name"),
            ),
            ("2[\"a\"", PacketError::NotJson),
            (
                "0[1]",
                PacketError::BadPayload("CONNECT payload must be an object"),
            ),
            (
                "1{}",
                PacketError::BadPayload("DISCONNECT takes no payload"),
            ),
            (
                "3[]",
                PacketError::BadPayload("ACK needs an id and an array payload"),
            ),
            (
                "35{}",
                PacketError::BadPayload("ACK needs an id and an array payload"),
            ),
            ("099999999999[\"a\"]", PacketError::BadAckId),
            ("299999999999[\"a\"]", PacketError::BadAckId),
            ("012", PacketError::BadAckId),
        ];
        for (text, expected) in cases {
            assert_eq!(Packet::decode(text), Err(expected), "{text:?}");
        }
        let long = format!("0/{},", "n".repeat(MAX_NAMESPACE_BYTES));
        assert_eq!(Packet::decode(&long), Err(PacketError::BadNamespace));
    }

    #[test]
    fn server_packets_read_back_as_socket_io_clients_read_them() {
        assert_eq!(encode_connect("/", "abc", None), r#"0{"sid":"abc"}"#);
        assert_eq!(
            encode_connect_error("/admin", "authentication failed", None),
            r#"4/admin,{"message":"authentication failed"}"#
        );
        let event = encode_event(
            "/",
            "App\\Events\\Sent",
            &[r#""private-chat.1""#, r#"{"id":7}"#],
        );
        assert_eq!(event, r#"2["App\\Events\\Sent","private-chat.1",{"id":7}]"#);
        assert_eq!(
            decode(&event).body,
            Body::Event {
                name: "App\\Events\\Sent".into(),
                args: vec![json!("private-chat.1"), json!({"id": 7})]
            }
        );
        assert_eq!(encode_ack("/", 3, &["true", "null"]), "33[true,null]");
        assert_eq!(decode(&encode_ack("/x", 3, &[])).body, Body::Ack(vec![]));
        assert_eq!(encode_disconnect("/admin"), "1/admin,");
        assert_eq!(encode_disconnect("/"), "1");
    }

    /// Found by the fuzz target: a 40-digit integer became a float whose shortest text did
    /// not parse back to the same float until serde_json parsed floats exactly.
    #[test]
    fn a_huge_number_survives_a_round_trip() {
        let text = r#"2["h",9999999999990000000000000001847017170]"#;
        let packet = Packet::decode(text).unwrap();
        let Body::Event { name, args } = &packet.body else {
            panic!("{packet:?}")
        };
        let arg = args[0].to_string();
        let again = encode_event("/", name, &[&arg]);
        assert_eq!(Packet::decode(&again), Ok(packet));
    }
}
