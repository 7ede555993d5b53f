//! Channel patterns for features that name channels (`[apps.typing] channels`,
//! `[apps.receipts] channels`), in the policy rules' syntax but written with their kind
//! prefix: `presence-chat.{id}` matches `presence-chat.7` and not `private-chat.7` nor
//! `presence-cache-chat.7`.

use serde::Deserialize;

use super::{Segment, compile_segments, match_pattern, unprefixed};
use crate::core::channel::{ChannelKind, ChannelName};

/// A channel pattern with its kind: the kind its prefix names (none: public) and the rules'
/// segments (`{name}` one segment, `**` the rest) for the name after the prefix.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ChannelPattern {
    raw: String,
    kind: ChannelKind,
    segments: Vec<Segment>,
}

impl ChannelPattern {
    /// Reads `raw`; `Err` says what in it is malformed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let kind = ChannelKind::of(raw);
        let rest = super::unprefixed_str(raw);
        let segments = compile_segments(rest).map_err(|why| format!("{raw:?}: {why}"))?;
        Ok(Self {
            raw: raw.to_owned(),
            kind,
            segments,
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
        if channel.kind() != self.kind {
            return false;
        }
        let segments: Vec<&str> = unprefixed(channel).split('.').collect();
        match_pattern(&self.segments, &segments).is_some()
    }
}

impl TryFrom<String> for ChannelPattern {
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
        let pattern = ChannelPattern::parse("presence-chat.{id}").unwrap();
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
        let rest = ChannelPattern::parse("presence-rooms.**").unwrap();
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
            let err = ChannelPattern::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
