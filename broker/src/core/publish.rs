//! What makes an event publishable, whichever door it comes in by: the HTTP API
//! (`POST /apps/{id}/events`) or Laravel's Redis broadcaster (`[apps.redis_broadcast]`). Both
//! check an event with these functions, so one is refused exactly when the other would be.

use crate::core::channel::{ChannelName, ChannelNameError};
use crate::core::ids::SocketId;
use crate::core::options::AppConfig;

/// Why an event is not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    /// The event name is empty or longer than `max_event_name_chars`.
    #[error("\"name\" must be 1 to {max} characters")]
    NameLength {
        /// The app's `max_event_name_chars`.
        max: usize,
    },
    /// The event name is one of the protocol's own (`pusher:`, `pusher_internal:`).
    #[error("event names starting with \"pusher:\" are reserved")]
    ReservedName,
    /// The data is larger than `max_message_bytes` (the HTTP API answers 413).
    #[error("\"data\" is larger than {max} bytes")]
    TooLarge {
        /// The app's `max_message_bytes`.
        max: usize,
    },
    /// The channel name is not one.
    #[error("channel {raw:?}: {error}")]
    Channel {
        /// The name as given.
        raw: String,
        /// What is wrong with it.
        error: ChannelNameError,
    },
    /// The socket to exclude is not a socket id (`^\d+\.\d+$`).
    #[error("invalid socket_id {raw:?}")]
    SocketId {
        /// The id as given.
        raw: String,
    },
}

/// Checks an event's name and data (the data as subscribers receive it: a string).
pub fn check_event(config: &AppConfig, name: &str, data: &str) -> Result<(), PublishRefusal> {
    if name.is_empty() || name.chars().count() > config.max_event_name_chars {
        return Err(PublishRefusal::NameLength {
            max: config.max_event_name_chars,
        });
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return Err(PublishRefusal::ReservedName);
    }
    if data.len() > config.max_message_bytes {
        return Err(PublishRefusal::TooLarge {
            max: config.max_message_bytes,
        });
    }
    Ok(())
}

/// Parses a channel an event goes to.
pub fn channel(config: &AppConfig, raw: &str) -> Result<ChannelName, PublishRefusal> {
    ChannelName::parse(raw, config.max_channel_name_chars).map_err(|error| {
        PublishRefusal::Channel {
            raw: raw.to_owned(),
            error,
        }
    })
}

/// Parses the socket an event excludes (`socket_id`, Laravel's `toOthers`), if any.
pub fn except(raw: Option<&str>) -> Result<Option<SocketId>, PublishRefusal> {
    raw.map(|raw| {
        SocketId::parse(raw).ok_or_else(|| PublishRefusal::SocketId {
            raw: raw.to_owned(),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppConfig {
        AppConfig {
            max_event_name_chars: 5,
            max_message_bytes: 4,
            ..AppConfig::default()
        }
    }

    #[test]
    fn names_and_data_are_checked_at_their_limits() {
        assert_eq!(check_event(&app(), "abcde", "1234"), Ok(()));
        assert_eq!(
            check_event(&app(), "abcdef", "1"),
            Err(PublishRefusal::NameLength { max: 5 })
        );
        assert_eq!(
            check_event(&app(), "", "1"),
            Err(PublishRefusal::NameLength { max: 5 })
        );
        assert_eq!(
            check_event(&app(), "e", "12345"),
            Err(PublishRefusal::TooLarge { max: 4 })
        );
    }

    #[test]
    fn protocol_event_names_are_reserved() {
        let config = AppConfig::default();
        assert_eq!(
            check_event(&config, "pusher:ping", "{}"),
            Err(PublishRefusal::ReservedName)
        );
        assert_eq!(
            check_event(&config, "pusher_internal:member_added", "{}"),
            Err(PublishRefusal::ReservedName)
        );
        assert_eq!(check_event(&config, "pusherish", "{}"), Ok(()));
    }

    #[test]
    fn channels_and_sockets_are_parsed() {
        let config = AppConfig::default();
        assert!(
            channel(&config, "private-orders.1")
                .unwrap()
                .kind()
                .requires_signature()
        );
        assert!(matches!(
            channel(&config, "bad channel"),
            Err(PublishRefusal::Channel { .. })
        ));
        assert_eq!(except(None), Ok(None));
        assert!(except(Some("123.456")).unwrap().is_some());
        assert_eq!(
            except(Some("123")),
            Err(PublishRefusal::SocketId { raw: "123".into() })
        );
    }
}
