//! The one table of Pusher error codes.
//!
//! Every `pusher:error` and every Pusher close code the broker sends comes from [`ErrorCode`]; no
//! other module writes a 4xxx number. Ranges follow the protocol: 4000–4099 the client must not
//! reconnect, 4100–4199 reconnect with back-off, 4200–4299 reconnect at once, 4300+ other errors
//! (which Ringcast reports without closing the connection).

/// A Pusher error: its wire code, whether it closes the connection, and a default message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ErrorCode {
    /// 4001: no app has the key in the URL.
    AppNotFound,
    /// 4003: the app exists but is disabled.
    AppDisabled,
    /// 4004: the app is over its connection quota.
    AppOverConnectionQuota,
    /// 4005: the WebSocket path is not `/app/{key}`.
    PathNotFound,
    /// 4006: the `protocol` query parameter is not a number.
    InvalidVersionFormat,
    /// 4007: the protocol version is not supported.
    UnsupportedProtocolVersion,
    /// 4008: the `protocol` query parameter is missing.
    NoProtocolVersion,
    /// 4009: the connection is not authorized (for example its `Origin` is not allowed).
    Unauthorized,
    /// 4010: the connection's token expired; the client needs a new one to reconnect.
    TokenExpired,
    /// 4100: the server is over capacity, or this client fell too far behind.
    OverCapacity,
    /// 4200: generic "reconnect now", e.g. the server is shutting down.
    Reconnect,
    /// 4201: the client did not answer a ping in time.
    PongNotReceived,
    /// 4202: closed after a long time without activity.
    ClosedForInactivity,
    /// 4301: client event rejected by the per-connection rate limit.
    ClientEventRateLimited,
    /// 4302: a sign-in watchlist is over its limit.
    WatchlistOverLimit,
    /// 4303: the message was not valid JSON or lacked a required field.
    InvalidMessage,
    /// 4304: an event in the `pusher:` namespace the server does not know.
    UnsupportedEvent,
    /// 4305: a client event that is not allowed (public channel, not subscribed, disabled, ...).
    ClientEventRejected,
    /// 4306: a message or payload over the app's size limit.
    MessageTooLarge,
    /// 4307: a channel name that is not valid.
    InvalidChannelName,
}

impl ErrorCode {
    /// The number on the wire (`pusher:error` `code` and WebSocket close code).
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::AppNotFound => 4001,
            ErrorCode::AppDisabled => 4003,
            ErrorCode::AppOverConnectionQuota => 4004,
            ErrorCode::PathNotFound => 4005,
            ErrorCode::InvalidVersionFormat => 4006,
            ErrorCode::UnsupportedProtocolVersion => 4007,
            ErrorCode::NoProtocolVersion => 4008,
            ErrorCode::Unauthorized => 4009,
            ErrorCode::TokenExpired => 4010,
            ErrorCode::OverCapacity => 4100,
            ErrorCode::Reconnect => 4200,
            ErrorCode::PongNotReceived => 4201,
            ErrorCode::ClosedForInactivity => 4202,
            ErrorCode::ClientEventRateLimited => 4301,
            ErrorCode::WatchlistOverLimit => 4302,
            ErrorCode::InvalidMessage => 4303,
            ErrorCode::UnsupportedEvent => 4304,
            ErrorCode::ClientEventRejected => 4305,
            ErrorCode::MessageTooLarge => 4306,
            ErrorCode::InvalidChannelName => 4307,
        }
    }

    /// Whether the connection is closed (with this code) after the error is sent.
    pub fn closes_connection(self) -> bool {
        self.code() < 4300
    }

    /// A human-readable default message.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::AppNotFound => "Application does not exist",
            ErrorCode::AppDisabled => "Application is disabled",
            ErrorCode::AppOverConnectionQuota => "Application is over its connection quota",
            ErrorCode::PathNotFound => "Path not found",
            ErrorCode::InvalidVersionFormat => "Invalid version string format",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
            ErrorCode::NoProtocolVersion => "No protocol version supplied",
            ErrorCode::Unauthorized => "Connection is unauthorized",
            ErrorCode::TokenExpired => "Token expired",
            ErrorCode::OverCapacity => "Over capacity",
            ErrorCode::Reconnect => "Server is restarting, please reconnect",
            ErrorCode::PongNotReceived => "Pong reply not received",
            ErrorCode::ClosedForInactivity => "Closed after inactivity",
            ErrorCode::ClientEventRateLimited => "Client event rejected due to rate limit",
            ErrorCode::WatchlistOverLimit => "Watchlist is over its limit",
            ErrorCode::InvalidMessage => "Invalid message",
            ErrorCode::UnsupportedEvent => "Unsupported event",
            ErrorCode::ClientEventRejected => "Client event rejected",
            ErrorCode::MessageTooLarge => "Message too large",
            ErrorCode::InvalidChannelName => "Invalid channel name",
        }
    }

    /// Every code, for metrics label tables and exhaustive tests.
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::AppNotFound,
        ErrorCode::AppDisabled,
        ErrorCode::AppOverConnectionQuota,
        ErrorCode::PathNotFound,
        ErrorCode::InvalidVersionFormat,
        ErrorCode::UnsupportedProtocolVersion,
        ErrorCode::NoProtocolVersion,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::OverCapacity,
        ErrorCode::Reconnect,
        ErrorCode::PongNotReceived,
        ErrorCode::ClosedForInactivity,
        ErrorCode::ClientEventRateLimited,
        ErrorCode::WatchlistOverLimit,
        ErrorCode::InvalidMessage,
        ErrorCode::UnsupportedEvent,
        ErrorCode::ClientEventRejected,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidChannelName,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_code_has_two_meanings() {
        let codes: HashSet<u16> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn codes_below_4300_close_and_others_do_not() {
        assert!(ErrorCode::PongNotReceived.closes_connection());
        assert!(ErrorCode::OverCapacity.closes_connection());
        assert!(!ErrorCode::ClientEventRateLimited.closes_connection());
        assert!(!ErrorCode::InvalidMessage.closes_connection());
    }
}
