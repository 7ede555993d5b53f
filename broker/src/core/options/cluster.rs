//! Scale-out settings: several nodes sharing one Redis.

use std::time::Duration;

use serde::Deserialize;

use super::units;

/// Scale-out settings (`[cluster]`).
///
/// `Redis` is how Redis is named. The `[cluster]` table holds `redis_url` as written
/// (`ClusterConfig<Option<String>>`: it may be absent, or come from the environment), and
/// loading parses it into a [`RedisTarget`], the form the program uses.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    bound(deserialize = "Redis: Deserialize<'de> + Default")
)]
pub struct ClusterConfig<Redis = RedisTarget> {
    /// Where Redis is.
    #[serde(rename = "redis_url")]
    pub redis: Redis,
    /// Prefix of every Redis key and of the pub/sub channel, so clusters can share a Redis.
    pub prefix: String,
    /// A node silent this long is declared dead and its members are removed.
    #[serde(rename = "node_timeout_secs", with = "units::secs")]
    pub node_timeout: Duration,
}

impl<Redis: Default> Default for ClusterConfig<Redis> {
    fn default() -> Self {
        Self {
            redis: Redis::default(),
            prefix: "ringcast".into(),
            node_timeout: Duration::from_secs(30),
        }
    }
}

impl<Redis> ClusterConfig<Redis> {
    /// How often a node records its heartbeat: six times per timeout, so a live node would
    /// have to miss several in a row to be declared dead.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.node_timeout / 6).max(Duration::from_millis(100))
    }

    /// How long a node may be silent before the others remove it. Dead nodes are looked for
    /// at every heartbeat, so removal completes within `node_timeout`.
    pub fn dead_after(&self) -> Duration {
        self.node_timeout.saturating_sub(self.heartbeat_interval())
    }
}

/// A Redis server, from a `redis://[user:password@]host[:port][/db]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or address.
    pub host: String,
    /// Port (6379 by default).
    pub port: u16,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
}

/// Why a Redis URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlError {
    /// `rediss://`.
    #[error("TLS (rediss://) is not supported; reach Redis over a private network or a TLS tunnel")]
    Tls,
    /// Another scheme, or none.
    #[error("expected redis://host:port, got {0:?}")]
    NotRedis(String),
    /// The path is not a database number.
    #[error("database must be a number, got {0:?}")]
    Database(String),
    /// The port is not a number.
    #[error("port must be a number, got {0:?}")]
    Port(String),
    /// Nothing between the scheme (or credentials) and the port.
    #[error("the host is missing")]
    NoHost,
}

impl std::fmt::Debug for RedisTarget {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisTarget {
    /// Parses a `redis://` URL.
    pub fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let rest = url.trim().strip_prefix("redis://").ok_or_else(|| {
            if url.starts_with("rediss://") {
                RedisUrlError::Tls
            } else {
                RedisUrlError::NotRedis(url.to_owned())
            }
        })?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (
                authority,
                db.parse()
                    .map_err(|_| RedisUrlError::Database(db.to_owned()))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
                host,
                port.parse()
                    .map_err(|_| RedisUrlError::Port(port.to_owned()))?,
            ),
            _ => (authority, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(RedisUrlError::NoHost);
        }
        let (username, password) = match auth {
            None => (None, None),
            Some(auth) => match auth.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_owned()),
                    Some(password.to_owned()),
                ),
                None => (None, Some(auth.to_owned())),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }
}
