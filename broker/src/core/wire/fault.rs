//! Why the broker refuses a client or closes its connection, in words every wire protocol
//! shares. Each wire maps a [`Fault`] to its own form in one place: Pusher to its 4xxx codes
//! ([`super::pusher::codes`]).

/// A refusal or closing reason, named by what happened rather than by a protocol's number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Fault {
    /// No app has the key the client named.
    AppNotFound,
    /// The app exists but is disabled.
    AppDisabled,
    /// The app is over its connection quota.
    AppOverConnectionQuota,
    /// The connection path is not one the wire serves.
    PathNotFound,
    /// The protocol version the client sent is not a number.
    InvalidVersionFormat,
    /// The protocol version is not supported.
    UnsupportedProtocolVersion,
    /// The client sent no protocol version.
    NoProtocolVersion,
    /// The connection is not authorized (its `Origin`, its token, a revocation, a sign-in
    /// deadline, or the app's backend terminated it).
    Unauthorized,
    /// The connection's token expired; the client needs a new one to reconnect.
    TokenExpired,
    /// The server is over capacity, or this client fell too far behind.
    OverCapacity,
    /// Reconnect now, e.g. the server is shutting down.
    Reconnect,
    /// The client did not answer a ping in time.
    PongNotReceived,
    /// Closed after a long time without activity.
    ClosedForInactivity,
    /// A client event over the connection's or the user's rate limit.
    ClientEventRateLimited,
    /// A sign-in watchlist over its limit.
    WatchlistOverLimit,
    /// A message that is not valid for the wire or lacks a required field.
    InvalidMessage,
    /// An event in the protocol's own namespace the server does not know.
    UnsupportedEvent,
    /// A client event that is not allowed (public channel, not subscribed, disabled, ...).
    ClientEventRejected,
    /// A message or payload over the app's size limit.
    MessageTooLarge,
}

impl Fault {
    /// Whether the connection is closed after the client is told. Faults about one message
    /// (a rate limit, a bad message, a refused client event) leave the connection open.
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            Fault::ClientEventRateLimited
                | Fault::WatchlistOverLimit
                | Fault::InvalidMessage
                | Fault::UnsupportedEvent
                | Fault::ClientEventRejected
                | Fault::MessageTooLarge
        )
    }

    /// Every fault, for metrics label tables and exhaustive tests.
    pub const ALL: [Fault; 19] = [
        Fault::AppNotFound,
        Fault::AppDisabled,
        Fault::AppOverConnectionQuota,
        Fault::PathNotFound,
        Fault::InvalidVersionFormat,
        Fault::UnsupportedProtocolVersion,
        Fault::NoProtocolVersion,
        Fault::Unauthorized,
        Fault::TokenExpired,
        Fault::OverCapacity,
        Fault::Reconnect,
        Fault::PongNotReceived,
        Fault::ClosedForInactivity,
        Fault::ClientEventRateLimited,
        Fault::WatchlistOverLimit,
        Fault::InvalidMessage,
        Fault::UnsupportedEvent,
        Fault::ClientEventRejected,
        Fault::MessageTooLarge,
    ];

    /// The position of this fault in [`Fault::ALL`], for counter tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_fault_at_its_index() {
        for (i, fault) in Fault::ALL.iter().enumerate() {
            assert_eq!(fault.index(), i, "{fault:?}");
        }
    }
}
