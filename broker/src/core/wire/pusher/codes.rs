//! The one table of Pusher error codes: every `pusher:error` code and every Pusher close code
//! the broker sends comes from [`code`]; no other module writes a 4xxx number.
//!
//! Ranges follow the protocol: 4000–4099 the client must not reconnect, 4100–4199 reconnect
//! with back-off, 4200–4299 reconnect at once, 4300+ other errors (which Ringcast reports
//! without closing the connection).

use crate::core::wire::Fault;

/// The number on the wire (`pusher:error` `code` and WebSocket close code).
pub fn code(fault: Fault) -> u16 {
    match fault {
        Fault::AppNotFound => 4001,
        Fault::AppDisabled => 4003,
        Fault::AppOverConnectionQuota => 4004,
        Fault::PathNotFound => 4005,
        Fault::InvalidVersionFormat => 4006,
        Fault::UnsupportedProtocolVersion => 4007,
        Fault::NoProtocolVersion => 4008,
        Fault::Unauthorized => 4009,
        Fault::TokenExpired => 4010,
        Fault::OverCapacity => 4100,
        Fault::Reconnect => 4200,
        Fault::PongNotReceived => 4201,
        Fault::ClosedForInactivity => 4202,
        Fault::ClientEventRateLimited => 4301,
        Fault::WatchlistOverLimit => 4302,
        Fault::InvalidMessage => 4303,
        Fault::UnsupportedEvent => 4304,
        Fault::ClientEventRejected => 4305,
        Fault::MessageTooLarge => 4306,
    }
}

/// The default message sent with the code (and as the close frame's reason).
pub fn message(fault: Fault) -> &'static str {
    match fault {
        Fault::AppNotFound => "Application does not exist",
        Fault::AppDisabled => "Application is disabled",
        Fault::AppOverConnectionQuota => "Application is over its connection quota",
        Fault::PathNotFound => "Path not found",
        Fault::InvalidVersionFormat => "Invalid version string format",
        Fault::UnsupportedProtocolVersion => "Unsupported protocol version",
        Fault::NoProtocolVersion => "No protocol version supplied",
        Fault::Unauthorized => "Connection is unauthorized",
        Fault::TokenExpired => "Token expired",
        Fault::OverCapacity => "Over capacity",
        Fault::Reconnect => "Server is restarting, please reconnect",
        Fault::PongNotReceived => "Pong reply not received",
        Fault::ClosedForInactivity => "Closed after inactivity",
        Fault::ClientEventRateLimited => "Client event rejected due to rate limit",
        Fault::WatchlistOverLimit => "Watchlist is over its limit",
        Fault::InvalidMessage => "Invalid message",
        Fault::UnsupportedEvent => "Unsupported event",
        Fault::ClientEventRejected => "Client event rejected",
        Fault::MessageTooLarge => "Message too large",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn no_code_has_two_meanings() {
        let codes: HashSet<u16> = Fault::ALL.iter().map(|&f| code(f)).collect();
        assert_eq!(codes.len(), Fault::ALL.len());
    }

    #[test]
    fn faults_that_close_have_codes_below_4300_and_others_do_not() {
        for fault in Fault::ALL {
            assert_eq!(fault.closes_connection(), code(fault) < 4300, "{fault:?}");
        }
    }
}
