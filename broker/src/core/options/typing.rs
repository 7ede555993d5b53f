//! `[apps.typing]`: which presence channels keep typing state, and how long a member stays
//! typing without renewing it.

use std::time::Duration;

use serde::Deserialize;

use super::units;
use crate::core::channel::ChannelName;
use crate::core::policy::PrefixedPattern;

/// Typing indicators kept by the broker (`[apps.typing]`): on the channels it names, a
/// member's `client-typing` sets their typing flag at the channel's home shard,
/// `client-typing-stop` clears it, and `expire_secs` without a renewal clears it with a
/// `client-typing-stop` announced on the member's behalf.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypingConfig {
    /// Channel patterns in the policy rules' syntax with the kind prefix
    /// (`presence-chat.{id}`); only presence patterns are accepted at load.
    pub channels: Vec<PrefixedPattern>,
    /// How long a member stays typing after their last `client-typing`.
    #[serde(rename = "expire_secs", with = "units::secs")]
    pub expire: Duration,
}

impl Default for TypingConfig {
    /// No channels, and the 5 seconds chat clients expect a typing indicator to last.
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            expire: Duration::from_secs(5),
        }
    }
}

impl TypingConfig {
    /// Whether `channel` keeps typing state.
    pub fn covers(&self, channel: &ChannelName) -> bool {
        self.channels.iter().any(|p| p.matches(channel))
    }
}
