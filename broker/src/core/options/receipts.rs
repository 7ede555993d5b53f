//! `[apps.receipts]`: which channels' messages get delivery receipts, and the bounds on
//! what is kept.

use std::time::Duration;

use serde::Deserialize;

use super::units;
use crate::core::channel::ChannelName;
use crate::core::policy::PrefixedPattern;

/// Delivery receipts (`[apps.receipts]`): an event published on a channel it names whose
/// data carries an `id` is tracked per recipient, `DELIVERED` when its frame is written to
/// them and `READ` when their client says so, at the channel's home shard, in memory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// Channel patterns in the policy rules' syntax with the kind prefix
    /// (`private-dm.{id}`, `presence-chat.**`).
    pub channels: Vec<PrefixedPattern>,
    /// A message published while its channel has more subscribers is not tracked (and
    /// counted); a tracked message keeps at most this many recipients.
    pub max_recipients: usize,
    /// Messages tracked per app, split evenly over the shards; the oldest is forgotten
    /// (and counted) to make room.
    pub max_messages: usize,
    /// How long a message's receipts are kept after it was published.
    #[serde(rename = "ttl_secs", with = "units::secs")]
    pub ttl: Duration,
}

impl Default for ReceiptsConfig {
    /// No channels; 100 recipients, 10,000 messages for a day.
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            max_recipients: 100,
            max_messages: 10_000,
            ttl: Duration::from_secs(86_400),
        }
    }
}

impl ReceiptsConfig {
    /// Whether messages on `channel` are tracked.
    pub fn covers(&self, channel: &ChannelName) -> bool {
        self.channels.iter().any(|p| p.matches(channel))
    }

    /// Messages one of `shards` shards keeps.
    pub fn max_messages_per_shard(&self, shards: usize) -> usize {
        self.max_messages.div_ceil(shards.max(1)).max(1)
    }
}
