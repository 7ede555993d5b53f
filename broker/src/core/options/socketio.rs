//! `[apps.socketio]`: the app's Socket.IO front door, where Socket.IO v4 clients (laravel-echo's
//! `socket.io` broadcaster, socket.io-client, Flutter's `socket_io_client`, python-socketio)
//! reach the same channels as the app's Pusher clients.

use std::time::Duration;

use serde::Deserialize;

use super::units;

/// How an app serves Socket.IO clients (`[apps.socketio]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketIoConfig {
    /// Where the app's clients connect: socket.io-client's `path` option (its default is
    /// `/socket.io`). Each app has its own; a trailing `/` is optional.
    pub path: String,
    /// Where private and presence subscriptions are authorized, as laravel-echo-server does
    /// it (its `authHost` followed by `authEndpoint`): a POST carrying the client's
    /// `auth.headers`, whose answer decides. `None`: only signed subscriptions (`auth` as
    /// `key:signature`) and public channels.
    pub auth_endpoint: Option<String>,
    /// Time the auth endpoint has to answer; later refuses the subscription.
    #[serde(rename = "auth_timeout_ms", with = "units::millis")]
    pub auth_timeout: Duration,
    /// Most auth endpoint calls at once (one thread each); more wait in a bounded queue.
    pub max_auth_in_flight: usize,
    /// How often the server pings (Engine.IO `pingInterval`): clients close a connection
    /// that has not been pinged for this long plus `ping_timeout`.
    #[serde(rename = "ping_interval_ms", with = "units::millis")]
    pub ping_interval: Duration,
    /// Time a pinged client has to answer (Engine.IO `pingTimeout`).
    #[serde(rename = "ping_timeout_ms", with = "units::millis")]
    pub ping_timeout: Duration,
    /// Connection state recovery (Socket.IO 4.6+): a connection whose transport is lost
    /// stays, subscribed and collecting its events, this long; a client that reconnects with
    /// its `pid` within it gets them, in order, once. Zero (the default, as in Socket.IO)
    /// turns it off: a lost connection leaves its channels at once.
    #[serde(rename = "recovery_secs", with = "units::secs")]
    pub recovery: Duration,
}

impl Default for SocketIoConfig {
    /// Socket.IO's own defaults: `/socket.io`, a ping every 25 s answered within 20 s.
    fn default() -> Self {
        Self {
            path: "/socket.io".to_owned(),
            auth_endpoint: None,
            auth_timeout: Duration::from_secs(5),
            max_auth_in_flight: 8,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            recovery: Duration::ZERO,
        }
    }
}

impl SocketIoConfig {
    /// Whether a request path is this app's Socket.IO endpoint (with or without the
    /// trailing `/` socket.io-client adds).
    pub fn serves(&self, path: &str) -> bool {
        let base = self.path.trim_end_matches('/');
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest == "/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_matches_with_or_without_its_trailing_slash() {
        let config = SocketIoConfig::default();
        for path in ["/socket.io", "/socket.io/"] {
            assert!(config.serves(path), "{path}");
        }
        for path in ["/socket.io/x", "/socket.iox", "/", "/app/key"] {
            assert!(!config.serves(path), "{path}");
        }
        let slashed = SocketIoConfig {
            path: "/rt/".into(),
            ..SocketIoConfig::default()
        };
        assert!(slashed.serves("/rt/") && slashed.serves("/rt"));
    }
}
