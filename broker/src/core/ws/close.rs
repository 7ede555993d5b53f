//! WebSocket close codes (RFC 6455 §7.4).

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type the endpoint cannot accept.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A text message that is not UTF-8 (or similar payload error).
pub const INVALID_PAYLOAD: u16 = 1007;
/// A policy was violated.
pub const POLICY_VIOLATION: u16 = 1008;
/// A message too big to process.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// An unexpected condition on the server.
pub const INTERNAL_ERROR: u16 = 1011;

/// Whether a peer may send `code` in a close frame.
///
/// 1004–1006 and 1015 are reserved for local use and must never be sent; 1016–2999 are
/// reserved for future standards; 1012–1014 are registered (service restart, try again
/// later, bad gateway); 3000–4999 belong to libraries and applications (Pusher uses 4xxx).
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_registered_and_application_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4000, 4999,
        ] {
            assert!(is_valid_received_code(code), "{code}");
        }
    }

    #[test]
    fn refuses_reserved_and_out_of_range_codes() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!is_valid_received_code(code), "{code}");
        }
    }
}
