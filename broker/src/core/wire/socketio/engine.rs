//! Engine.IO 4 packets, the transport under Socket.IO: one type digit, then the data. Over
//! WebSocket each text frame is one packet; an HTTP long-polling body carries several,
//! separated by the record separator (`0x1e`).

/// The separator between packets in a long-polling body.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// An Engine.IO packet, borrowing its data from the decoded text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0`: the handshake (server to client only), JSON data.
    Open(&'a str),
    /// `1`: the transport is being closed.
    Close,
    /// `2`: a ping, with optional data (`probe` during an upgrade).
    Ping(&'a str),
    /// `3`: a pong, echoing the ping's data.
    Pong(&'a str),
    /// `4`: a message: one Socket.IO packet.
    Message(&'a str),
    /// `5`: the client switches to the WebSocket transport.
    Upgrade,
    /// `6`: nothing (ends a pending poll during an upgrade).
    Noop,
}

/// Why a text is not an Engine.IO packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No type digit.
    #[error("empty Engine.IO packet")]
    Empty,
    /// A type other than `0` to `6`.
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownType(char),
    /// `open` sent by a client, or data on a packet that takes none.
    #[error("Engine.IO packet {0:?} is not valid from a client")]
    NotFromClient(char),
}

impl<'a> EnginePacket<'a> {
    /// Reads one packet a client sent.
    pub fn decode(text: &'a str) -> Result<Self, EngineError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(EngineError::Empty)?;
        let data = chars.as_str();
        match kind {
            '1' | '5' | '6' if !data.is_empty() => Err(EngineError::NotFromClient(kind)),
            '1' => Ok(Self::Close),
            '2' => Ok(Self::Ping(data)),
            '3' => Ok(Self::Pong(data)),
            '4' => Ok(Self::Message(data)),
            '5' => Ok(Self::Upgrade),
            '6' => Ok(Self::Noop),
            '0' => Err(EngineError::NotFromClient(kind)),
            other => Err(EngineError::UnknownType(other)),
        }
    }

    /// The packet's text.
    pub fn encode(&self) -> String {
        let (kind, data) = match *self {
            Self::Open(data) => ('0', data),
            Self::Close => ('1', ""),
            Self::Ping(data) => ('2', data),
            Self::Pong(data) => ('3', data),
            Self::Message(data) => ('4', data),
            Self::Upgrade => ('5', ""),
            Self::Noop => ('6', ""),
        };
        let mut out = String::with_capacity(1 + data.len());
        out.push(kind);
        out.push_str(data);
        out
    }
}

/// Why an Engine.IO request is refused before a session exists or is found, answered as
/// the reference server answers it: HTTP 400 (403 for [`HandshakeError::Forbidden`]) with
/// `{"code": n, "message": ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// `transport` is neither `polling` nor `websocket`.
    #[error("Transport unknown")]
    TransportUnknown,
    /// `sid` names no open session.
    #[error("Session ID unknown")]
    SessionIdUnknown,
    /// A new session must start with `GET`.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// Anything else the transport cannot serve (a WebSocket upgrade of a session that is
    /// already upgrading, a second pending poll, a body that is not packets).
    #[error("Bad request")]
    BadRequest,
    /// Refused by the server's own rules.
    #[error("Forbidden")]
    Forbidden,
    /// `EIO` is not 4.
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
}

impl HandshakeError {
    /// The reference server's number for it.
    pub fn code(self) -> u8 {
        match self {
            Self::TransportUnknown => 0,
            Self::SessionIdUnknown => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The HTTP status it is sent with.
    pub fn status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body it is sent with.
    pub fn body(self) -> String {
        serde_json::json!({ "code": self.code(), "message": self.to_string() }).to_string()
    }
}

/// The transports a client may name in `?transport=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

/// Checks an Engine.IO request's `EIO` and `transport` query parameters.
pub fn check_request(
    eio: Option<&str>,
    transport: Option<&str>,
) -> Result<Transport, HandshakeError> {
    if eio != Some(super::ENGINE_PROTOCOL) {
        return Err(HandshakeError::UnsupportedProtocolVersion);
    }
    match transport {
        Some("polling") => Ok(Transport::Polling),
        Some("websocket") => Ok(Transport::WebSocket),
        _ => Err(HandshakeError::TransportUnknown),
    }
}

/// The packets of a long-polling body, in order.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(RECORD_SEPARATOR)
}

/// A long-polling body holding `packets`, each already encoded.
pub fn join_payload<'a>(packets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.push_str(packet);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_packets_decode_and_encode_back() {
        for text in ["1", "2", "2probe", "3probe", "4hello", "40", "5", "6"] {
            let packet = EnginePacket::decode(text).unwrap();
            assert_eq!(packet.encode(), text);
        }
        assert_eq!(
            EnginePacket::decode("3probe"),
            Ok(EnginePacket::Pong("probe"))
        );
        assert_eq!(
            EnginePacket::decode("42[\"a\"]"),
            Ok(EnginePacket::Message("2[\"a\"]"))
        );
    }

    #[test]
    fn bad_packets_are_named() {
        assert_eq!(EnginePacket::decode(""), Err(EngineError::Empty));
        assert_eq!(
            EnginePacket::decode("7"),
            Err(EngineError::UnknownType('7'))
        );
        assert_eq!(
            EnginePacket::decode("x1"),
            Err(EngineError::UnknownType('x'))
        );
        assert_eq!(
            EnginePacket::decode("0{}"),
            Err(EngineError::NotFromClient('0'))
        );
        assert_eq!(
            EnginePacket::decode("5x"),
            Err(EngineError::NotFromClient('5'))
        );
        assert!(EnginePacket::decode("é").is_err());
    }

    #[test]
    fn requests_name_version_4_and_a_known_transport() {
        assert_eq!(
            check_request(Some("4"), Some("websocket")),
            Ok(Transport::WebSocket)
        );
        assert_eq!(
            check_request(Some("4"), Some("polling")),
            Ok(Transport::Polling)
        );
        assert_eq!(
            check_request(Some("3"), Some("polling")),
            Err(HandshakeError::UnsupportedProtocolVersion)
        );
        assert_eq!(
            check_request(None, Some("polling")),
            Err(HandshakeError::UnsupportedProtocolVersion)
        );
        assert_eq!(
            check_request(Some("4"), Some("flash")),
            Err(HandshakeError::TransportUnknown)
        );
        assert_eq!(
            HandshakeError::SessionIdUnknown.body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(HandshakeError::Forbidden.status(), 403);
    }

    #[test]
    fn a_polling_body_splits_on_the_record_separator() {
        let body = join_payload(["4hello", "2", "4€"]);
        assert_eq!(body, "4hello\u{1e}2\u{1e}4€");
        assert_eq!(
            split_payload(&body).collect::<Vec<_>>(),
            ["4hello", "2", "4€"]
        );
        assert_eq!(split_payload("").collect::<Vec<_>>(), [""]);
    }
}
