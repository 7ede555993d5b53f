//! Channel authorization by the app's auth endpoint, as laravel-echo-server does it: the
//! broker POSTs `channel_name` (and `socket_id`) with the headers the client gave
//! (`auth.headers`) to the endpoint, and a 200 admits. For a presence channel the answer
//! names the member: `{"channel_data": {"user_id": ..., "user_info": ...}}` as Laravel's
//! Redis broadcaster answers, or `channel_data` as a JSON string as its Pusher broadcaster
//! answers (whose `auth` signature is then not needed).
//!
//! The shell makes the call; this module only reads what came back.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::channel::SubscribeAuthError;

/// Largest answer body read from an auth endpoint.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the auth endpoint call came back with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointAnswer {
    /// The endpoint answered.
    Answered {
        /// The HTTP status.
        status: u16,
        /// The body (at most [`MAX_ANSWER_BYTES`]).
        body: Vec<u8>,
    },
    /// No answer: unreachable, timed out, or the queue of calls was full.
    Failed(String),
}

/// Why the auth endpoint's answer refuses a subscription.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRefusal {
    /// A status other than 200, as laravel-echo-server reports it.
    #[error("Client can not be authenticated, got HTTP status {0}")]
    Status(u16),
    /// The endpoint could not be asked.
    #[error("the auth endpoint could not be asked: {0}")]
    Unreachable(String),
    /// A presence channel whose answer names no member.
    #[error("the auth endpoint's answer has no channel_data for a presence channel")]
    NoChannelData,
    /// The member the answer names is not acceptable.
    #[error("the auth endpoint's channel_data: {0}")]
    Member(SubscribeAuthError),
}

impl EndpointRefusal {
    /// The `status` reported to the client: the endpoint's own (laravel-echo-server passes
    /// it on), 502 when it could not be asked or answered something unusable.
    pub fn status(&self) -> u16 {
        match self {
            EndpointRefusal::Status(status) => *status,
            EndpointRefusal::Unreachable(_) | EndpointRefusal::NoChannelData => 502,
            EndpointRefusal::Member(err) => err.status(),
        }
    }
}

impl EndpointAnswer {
    /// The body of an answer that admits, else why not.
    pub fn admitted(&self) -> Result<&[u8], EndpointRefusal> {
        match self {
            EndpointAnswer::Answered { status: 200, body } => Ok(body),
            EndpointAnswer::Answered { status, .. } => Err(EndpointRefusal::Status(*status)),
            EndpointAnswer::Failed(reason) => Err(EndpointRefusal::Unreachable(reason.clone())),
        }
    }
}

/// The presence member's JSON text in an admitting answer's `channel_data`.
pub fn channel_data(body: &[u8]) -> Result<String, EndpointRefusal> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        channel_data: Option<&'a RawValue>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| EndpointRefusal::NoChannelData)?;
    let raw = answer.channel_data.ok_or(EndpointRefusal::NoChannelData)?;
    match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => Ok(text),
        Err(_) if raw.get().starts_with('{') => Ok(raw.get().to_owned()),
        Err(_) => Err(EndpointRefusal::NoChannelData),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_admits() {
        let ok = EndpointAnswer::Answered {
            status: 200,
            body: b"true".to_vec(),
        };
        assert_eq!(ok.admitted(), Ok(&b"true"[..]));
        let forbidden = EndpointAnswer::Answered {
            status: 403,
            body: Vec::new(),
        };
        assert_eq!(forbidden.admitted(), Err(EndpointRefusal::Status(403)));
        assert_eq!(EndpointRefusal::Status(403).status(), 403);
        let failed = EndpointAnswer::Failed("timed out".into());
        assert_eq!(failed.admitted().unwrap_err().status(), 502);
    }

    #[test]
    fn channel_data_comes_as_an_object_or_as_a_string() {
        let redis = br#"{"channel_data":{"user_id":1,"user_info":{"name":"Ann"}}}"#;
        assert_eq!(
            channel_data(redis).unwrap(),
            r#"{"user_id":1,"user_info":{"name":"Ann"}}"#
        );
        let pusher = br#"{"auth":"k:s","channel_data":"{\"user_id\":\"1\"}"}"#;
        assert_eq!(channel_data(pusher).unwrap(), r#"{"user_id":"1"}"#);
        for unusable in [&b"true"[..], b"{}", br#"{"channel_data":7}"#, b"<html>"] {
            assert_eq!(channel_data(unusable), Err(EndpointRefusal::NoChannelData));
        }
    }
}
