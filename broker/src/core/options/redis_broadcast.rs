//! `[apps.redis_broadcast]`: events that Laravel's Redis broadcaster publishes, delivered to
//! the app's subscribers.

use serde::{Deserialize, Deserializer};

use super::RedisTarget;

/// Where an app's Laravel publishes its broadcasts (`[apps.redis_broadcast]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisBroadcast {
    /// The Redis server, `redis://[user:password@]host[:port][/db]`. Pub/sub channels do
    /// not belong to a database, so the database number changes nothing.
    #[serde(deserialize_with = "redis_url")]
    pub url: RedisTarget,
    /// What Laravel puts before every channel name (`database.redis.options.prefix`, e.g.
    /// `laravel_database_`): matched literally, and removed to give the channel name.
    #[serde(default)]
    pub prefix: String,
    /// The channels after the prefix to subscribe to, a Redis glob pattern.
    #[serde(default = "every_channel")]
    pub channels: String,
}

fn every_channel() -> String {
    "*".to_owned()
}

fn redis_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RedisTarget, D::Error> {
    let url = String::deserialize(deserializer)?;
    RedisTarget::parse(&url)
        .map_err(|e| serde::de::Error::custom(format!("redis_broadcast.url: {e}")))
}

impl RedisBroadcast {
    /// The `PSUBSCRIBE` pattern: the prefix, literally, then `channels`.
    pub fn pattern(&self) -> String {
        crate::core::broadcast::pattern(&self.prefix, &self.channels)
    }
}
