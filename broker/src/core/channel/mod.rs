//! Channels: typed names, presence rosters and the per-shard registry.

pub mod name;
pub mod presence;

pub use name::{ChannelKind, ChannelName, ChannelNameError};
