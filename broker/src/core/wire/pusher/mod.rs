//! Pusher Channels protocol 7 behind the [`crate::core::wire`] seam (versions 4 to 6 are served
//! the same way, as Pusher does): the connection URL, message parsing ([`message::parse`]), the frames of every [`Reply`] and [`Event`], and the
//! one table of error codes ([`codes`]).

pub mod codes;
pub mod message;

use bytes::Bytes;

use super::{Event, Fault, Reply};
use crate::core::ws::frame::{self, Opcode};

/// The protocol versions accepted in `?protocol=N`. Pusher serves 4 to 7 alike ("protocols 1,
/// 2 and 3 are no longer supported"), and clients in use still send older ones: pysher 1.0.8
/// and Flutter's `pusher_channels` send 6, the old Android SDK 5. Every version gets the
/// frames of 7, the current one.
pub const PROTOCOL_VERSIONS: std::ops::RangeInclusive<u32> = 4..=7;

/// The path prefix of a Pusher WebSocket, `/app/{key}`.
const APP_PATH: &str = "/app/";

/// The app key of a WebSocket path `/app/{key}`, if the path is one.
pub fn app_key(path: &str) -> Option<&str> {
    path.strip_prefix(APP_PATH)
        .filter(|key| !key.is_empty() && !key.contains('/'))
}

/// Checks the `protocol` query parameter of a connection.
pub fn check_version(protocol: Option<&str>) -> Result<(), Fault> {
    let version: u32 = protocol
        .ok_or(Fault::NoProtocolVersion)?
        .parse()
        .map_err(|_| Fault::InvalidVersionFormat)?;
    if PROTOCOL_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(Fault::UnsupportedProtocolVersion)
    }
}

/// A reply as one WebSocket text frame.
pub fn encode_reply(reply: &Reply<'_>) -> Bytes {
    let json = match reply {
        Reply::Established {
            socket_id,
            activity_timeout,
            ..
        } => message::connection_established(*socket_id, activity_timeout.as_secs()),
        Reply::Error { fault, text } | Reply::Refused { fault, text } => {
            message::error_with_message(*fault, text.unwrap_or(codes::message(*fault)))
        }
        Reply::NamespaceRefused { .. } | Reply::Ack { .. } => message::error(Fault::InvalidMessage),
        Reply::Ping => return text_frame(message::ping()),
        Reply::Pong => return text_frame(message::pong()),
        Reply::Subscribed {
            channel,
            members: None,
        } => message::subscription_succeeded(channel.as_str()),
        Reply::Subscribed {
            channel,
            members: Some(members),
        } => message::presence_subscription_succeeded(
            channel.as_str(),
            members.iter().map(|&(user, info)| (user, info)),
        ),
        Reply::SubscriptionRefused { channel, refusal } => {
            let text = refusal.to_string();
            message::subscription_error(channel, refusal.kind().name(), &text, refusal.status())
        }
        Reply::SubscriptionRevoked {
            channel,
            rule,
            reason,
        } => message::subscription_revoked(channel.as_str(), rule, reason),
        Reply::Renewed { expires_at } => message::renewed(*expires_at),
        Reply::RenewFailed { reason } => message::renew_failed(reason),
        Reply::CacheMiss { channel } => message::cache_miss(channel.as_str()),
        Reply::SignedIn { user_data } => message::signin_success(user_data),
        Reply::Watchlist { online, users } => message::watchlist_events(*online, users),
    };
    text_frame(&json)
}

/// An event as one WebSocket text frame, shared by every Pusher subscriber.
pub fn encode_event(event: &Event<'_>) -> Bytes {
    let json = match event {
        Event::Channel {
            event,
            channel,
            data,
        } => message::channel_event(event, channel.as_str(), data),
        Event::Client {
            event,
            channel,
            data,
            user,
        } => message::client_event(event, channel.as_str(), data, *user),
        Event::MemberAdded {
            channel,
            user,
            info,
        } => message::member_added(channel.as_str(), user, *info),
        Event::MemberRemoved { channel, user, .. } => {
            message::member_removed(channel.as_str(), user)
        }
        Event::SubscriptionCount { channel, count } => {
            message::subscription_count(channel.as_str(), *count)
        }
    };
    text_frame(&json)
}

fn text_frame(json: &[u8]) -> Bytes {
    frame::encode_frame(Opcode::Text, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_key_is_the_one_segment_after_app() {
        assert_eq!(app_key("/app/key"), Some("key"));
        assert_eq!(app_key("/app/"), None);
        assert_eq!(app_key("/app/key/more"), None);
        assert_eq!(app_key("/apps/key"), None);
    }

    #[test]
    fn protocols_4_to_7_are_spoken_and_others_refused() {
        for version in ["4", "5", "6", "7"] {
            assert_eq!(check_version(Some(version)), Ok(()), "{version}");
        }
        assert_eq!(check_version(None), Err(Fault::NoProtocolVersion));
        for bad in ["seven", "", "7.0", "-7"] {
            assert_eq!(
                check_version(Some(bad)),
                Err(Fault::InvalidVersionFormat),
                "{bad:?}"
            );
        }
        for unsupported in ["0", "1", "3", "8", "70"] {
            assert_eq!(
                check_version(Some(unsupported)),
                Err(Fault::UnsupportedProtocolVersion),
                "{unsupported}"
            );
        }
    }
}
