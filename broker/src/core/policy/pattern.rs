//! Channel patterns for features that name channels (`[apps.typing] channels`,
//! `[apps.receipts] channels`), in the policy rules' syntax but written with their kind
//! prefix: `presence-chat.{id}` matches `presence-chat.7` and not `private-chat.7` nor
//! `presence-cache-chat.7`.

use serde::Deserialize;

use super::{ChannelPattern, unprefixed};
use crate::core::channel::{ChannelKind, ChannelName};

/// A channel pattern with its kind: the kind its prefix names (none: public) and the rules'
/// pattern ([`ChannelPattern`]) for the name after the prefix.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PrefixedPattern {
    raw: String,
    kind: ChannelKind,
    rest: ChannelPattern,
}

impl PrefixedPattern {
    /// Reads `raw`; `Err` says what in it is malformed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let kind = ChannelKind::of(raw);
        let rest = ChannelPattern::parse(super::unprefixed_str(raw))
            .map_err(|why| format!("{raw:?}: {why}"))?;
        Ok(Self {
            raw: raw.to_owned(),
            kind,
            rest,
        })
    }

    /// The kind of the channels it can match.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `channel` is of the pattern's kind and its name after the prefix matches.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        channel.kind() == self.kind && self.rest.matches(unprefixed(channel))
    }
}

impl TryFrom<String> for PrefixedPattern {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name, 200).unwrap()
    }

    #[test]
    fn a_pattern_matches_only_channels_of_its_own_kind() {
        let pattern = PrefixedPattern::parse("presence-chat.{id}").unwrap();
        assert_eq!(pattern.kind(), ChannelKind::Presence);
        assert!(pattern.matches(&channel("presence-chat.7")));
        for other in [
            "private-chat.7",
            "presence-cache-chat.7",
            "chat.7",
            "presence-chat.7.x",
            "presence-chat",
        ] {
            assert!(!pattern.matches(&channel(other)), "{other}");
        }
        let rest = PrefixedPattern::parse("presence-rooms.**").unwrap();
        assert!(rest.matches(&channel("presence-rooms.a.b")));
    }

    #[test]
    fn a_malformed_pattern_is_refused_with_its_text() {
        for bad in [
            "presence-a.**.b",
            "presence-{}",
            "presence-a..b",
            "presence-a*",
        ] {
            let err = PrefixedPattern::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
