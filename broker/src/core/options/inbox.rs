//! `[apps.inbox]` (a user's notifications kept until read) and `[apps.legacy_broadcast]`
//! (the `POST /broadcast-message` route of Reverb-era backends).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The placeholder a channel pattern names its user by.
const ID: &str = "{id}";
/// The prefix a pattern also matches behind: `user.{id}` keeps `private-user.42` for `42`.
const PRIVATE: &str = "private-";

/// A channel name with one `{id}` in it (`user.{id}`, `App.Models.User.{id}`,
/// `#server-to-user-{id}`), parsed at load: the text before and after the placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPattern {
    before: String,
    after: String,
}

/// Why a channel pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// No `{id}`, or more than one.
    #[error("{0:?} must hold \"{{id}}\" exactly once")]
    Placeholder(String),
    /// A space or control character, which no channel name has.
    #[error("{0:?} has a space or control character")]
    Unprintable(String),
}

impl ChannelPattern {
    /// Parses `user.{id}`-style text.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(PatternError::Unprintable(text.to_owned()));
        }
        match text.split_once(ID) {
            Some((before, after)) if !after.contains(ID) => Ok(Self {
                before: before.to_owned(),
                after: after.to_owned(),
            }),
            _ => Err(PatternError::Placeholder(text.to_owned())),
        }
    }

    /// The user id `channel` names, if it has this pattern's shape, as written or behind
    /// `private-`; an empty id is no match.
    pub fn user_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        self.exact(channel)
            .or_else(|| channel.strip_prefix(PRIVATE).and_then(|c| self.exact(c)))
    }

    fn exact<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.before.as_str())?
            .strip_suffix(self.after.as_str())
            .filter(|id| !id.is_empty())
    }

    /// The channel of user `id`: the pattern with `{id}` replaced.
    pub fn channel_of(&self, id: &str) -> String {
        format!("{}{id}{}", self.before, self.after)
    }
}

impl std::fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{ID}{}", self.before, self.after)
    }
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ChannelPattern>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| ChannelPattern::parse(text))
        .collect::<Result<_, _>>()
        .map_err(|e| serde::de::Error::custom(format!("inbox.channels: {e}")))
}

fn pattern<'de, D: Deserializer<'de>>(d: D) -> Result<ChannelPattern, D::Error> {
    ChannelPattern::parse(&String::deserialize(d)?)
        .map_err(|e| serde::de::Error::custom(format!("legacy_broadcast: {e}")))
}

/// Which channels' events are kept per user, and how many for how long (`[apps.inbox]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// The channels whose events are kept for the user their `{id}` names.
    #[serde(deserialize_with = "patterns")]
    pub channels: Vec<ChannelPattern>,
    /// Notifications kept per user: one more evicts the oldest.
    #[serde(default = "default_max_per_user")]
    pub max_per_user: usize,
    /// How long a notification is kept, read or not.
    #[serde(
        rename = "ttl_secs",
        default = "default_ttl",
        with = "super::units::secs"
    )]
    pub ttl: Duration,
    /// Users with kept notifications; a notification for one more user is dropped (and
    /// counted) until expiry frees a place (read ones count until they expire or are evicted).
    #[serde(default = "default_max_users")]
    pub max_users: usize,
}

fn default_max_per_user() -> usize {
    50
}

fn default_ttl() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_max_users() -> usize {
    100_000
}

impl InboxConfig {
    /// The user whose inbox keeps `channel`'s events: the first pattern that matches.
    pub fn user_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        self.channels.iter().find_map(|p| p.user_of(channel))
    }
}

/// `POST /broadcast-message` (`[apps.legacy_broadcast]`): how a Laravel-side channel name
/// and the body's `userIds` / `workerIds` become channels.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyBroadcast {
    /// Put before a `channel` that names no channel kind (`user.42` is `private-user.42`);
    /// `""` publishes such names as public channels.
    #[serde(default = "default_channel_prefix")]
    pub channel_prefix: String,
    /// The channel each of `userIds` is published on.
    #[serde(default = "default_user_channel", deserialize_with = "pattern")]
    pub user_channel: ChannelPattern,
    /// The channel each of `workerIds` is published on.
    #[serde(default = "default_worker_channel", deserialize_with = "pattern")]
    pub worker_channel: ChannelPattern,
}

fn default_channel_prefix() -> String {
    PRIVATE.to_owned()
}

fn default_user_channel() -> ChannelPattern {
    ChannelPattern {
        before: "private-user.".into(),
        after: String::new(),
    }
}

fn default_worker_channel() -> ChannelPattern {
    ChannelPattern {
        before: "private-worker.".into(),
        after: String::new(),
    }
}

impl Default for LegacyBroadcast {
    fn default() -> Self {
        Self {
            channel_prefix: default_channel_prefix(),
            user_channel: default_user_channel(),
            worker_channel: default_worker_channel(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> ChannelPattern {
        ChannelPattern::parse(text).unwrap()
    }

    #[test]
    fn a_pattern_names_the_user_with_or_without_the_private_prefix() {
        let user = pattern("user.{id}");
        assert_eq!(user.user_of("user.42"), Some("42"));
        assert_eq!(user.user_of("private-user.42"), Some("42"));
        assert_eq!(user.user_of("presence-user.42"), None);
        assert_eq!(user.user_of("user."), None);
        assert_eq!(user.user_of("worker.42"), None);
        let laravel = pattern("App.Models.User.{id}");
        assert_eq!(laravel.user_of("private-App.Models.User.7"), Some("7"));
        let server = pattern("#server-to-user-{id}");
        assert_eq!(server.user_of("#server-to-user-abc"), Some("abc"));
        let suffixed = pattern("orders.{id}.inbox");
        assert_eq!(suffixed.user_of("private-orders.9.inbox"), Some("9"));
        assert_eq!(suffixed.user_of("orders.9"), None);
        assert_eq!(user.channel_of("42"), "user.42");
    }

    #[test]
    fn a_pattern_without_one_placeholder_is_refused() {
        assert_eq!(
            ChannelPattern::parse("user"),
            Err(PatternError::Placeholder("user".into()))
        );
        assert!(ChannelPattern::parse("{id}.{id}").is_err());
        assert!(ChannelPattern::parse("user {id}").is_err());
    }

    #[test]
    fn the_first_matching_pattern_names_the_user() {
        let inbox = InboxConfig {
            channels: vec![pattern("user.{id}"), pattern("worker.{id}")],
            max_per_user: 50,
            ttl: default_ttl(),
            max_users: 10,
        };
        assert_eq!(inbox.user_of("private-worker.5"), Some("5"));
        assert_eq!(inbox.user_of("group.5"), None);
    }
}
