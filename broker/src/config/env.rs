//! Environment overrides, under Laravel Reverb's names and Ringcast's own.
//!
//! Reverb's `REVERB_SERVER_HOST`, `REVERB_SERVER_PORT`, `REVERB_APP_ID`, `REVERB_APP_KEY`,
//! `REVERB_APP_SECRET`, `REVERB_ALLOWED_ORIGINS`, `REVERB_APP_ACTIVITY_TIMEOUT`,
//! `REVERB_APP_MAX_MESSAGE_SIZE`, `REVERB_APP_MAX_CONNECTIONS` and
//! `REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM` and `REVERB_MAX_REQUEST_SIZE` are accepted so that a
//! Laravel `.env` works unchanged, and so are `PUSHER_APP_ID`, `PUSHER_APP_KEY` and
//! `PUSHER_APP_SECRET` (`BROADCAST_DRIVER=pusher`; Reverb's names win when both are set); `RINGCAST_HOST`, `RINGCAST_PORT`, `RINGCAST_SHARDS`, `RINGCAST_DRIVER` and
//! `RINGCAST_DATA_DIR` take precedence (and `ringcast serve --host/--port` over those);
//! `RINGCAST_ALLOW_DEMO_CREDENTIALS` sets `server.allow_demo_credentials`,
//! `RINGCAST_TRUSTED_PROXIES` (comma-separated CIDRs) `server.trusted_proxies`. The app variables set the first app.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{self, ClusterTable, FileConfig};
use super::{ConfigError, invalid};
use crate::core::options::units::zero_is_unlimited;
use crate::core::options::{ClientEvents, Driver};
use crate::core::proxy::MalformedCidr;

/// How the loader reads one variable.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `raw_env` with empty values unset: Laravel's `.env` templates list variables with empty
/// values, and those mean "not set".
fn set_only(raw_env: Env<'_>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| raw_env(name).filter(|v| !v.trim().is_empty())
}

/// Applies the overrides of `[server]` and the first app; returns whether they defined the
/// app credentials (which then need no file and no demo app).
pub(super) fn apply(file: &mut FileConfig, raw_env: Env<'_>) -> Result<bool, ConfigError> {
    let env = set_only(raw_env);
    let s = &mut file.server;
    for name in ["REVERB_SERVER_HOST", "RINGCAST_HOST"] {
        if let Some(v) = env(name) {
            s.host = parse_env(name, &v, "an IP address")?;
        }
    }
    for name in ["REVERB_SERVER_PORT", "RINGCAST_PORT"] {
        if let Some(v) = env(name) {
            s.port = parse_env(name, &v, "a port number")?;
        }
    }
    if let Some(v) = env("RINGCAST_SHARDS") {
        s.shards = parse_env("RINGCAST_SHARDS", &v, "a number of shards")?;
    }
    if let Some(v) = env("RINGCAST_DRIVER") {
        s.driver = match v.trim() {
            "io_uring" => Driver::IoUring,
            "epoll" => Driver::Epoll,
            _ => {
                return Err(invalid(
                    "RINGCAST_DRIVER",
                    format!("expected \"io_uring\" or \"epoll\", got {v:?}"),
                ));
            }
        };
    }
    if let Some(v) = env("RINGCAST_ALLOW_DEMO_CREDENTIALS") {
        s.allow_demo_credentials = match v.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(invalid(
                    "RINGCAST_ALLOW_DEMO_CREDENTIALS",
                    format!("expected \"true\" or \"false\", got {v:?}"),
                ));
            }
        };
    }
    if let Some(v) = env("RINGCAST_TRUSTED_PROXIES") {
        let ranges: Vec<String> = v.split(',').map(|r| r.trim().to_owned()).collect();
        s.trusted_proxies = ranges
            .try_into()
            .map_err(|e: MalformedCidr| invalid("RINGCAST_TRUSTED_PROXIES", e.to_string()))?;
    }
    if let Some(v) = env("RINGCAST_DATA_DIR") {
        s.data_dir = PathBuf::from(v);
    }
    if let Some(v) = env("REVERB_APP_ACTIVITY_TIMEOUT") {
        let secs: u64 = parse_env("REVERB_APP_ACTIVITY_TIMEOUT", &v, "seconds")?;
        s.activity_timeout = Duration::from_secs(secs);
    }

    if let Some(v) = env("REVERB_MAX_REQUEST_SIZE") {
        s.max_http_body_bytes = parse_env("REVERB_MAX_REQUEST_SIZE", &v, "a size in bytes")?;
    }

    let mut defined = false;
    // Laravel's `pusher` broadcaster, then Reverb's: the later set wins when both are given.
    for names in [PUSHER_CREDENTIALS, REVERB_CREDENTIALS] {
        let Some([id, key, secret]) = credentials(&env, names)? else {
            continue;
        };
        match file.apps.first_mut() {
            Some(app) => {
                app.id = id;
                app.key = key;
                app.secret = secret;
            }
            None => file
                .apps
                .push(file::app_with_credentials(&id, &key, &secret)),
        }
        defined = true;
    }
    let Some(app) = file.apps.first_mut() else {
        return Ok(defined);
    };
    if let Some(v) = env("REVERB_ALLOWED_ORIGINS") {
        app.allowed_origins = v
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(v) = env("REVERB_APP_MAX_MESSAGE_SIZE") {
        app.max_message_bytes = parse_env("REVERB_APP_MAX_MESSAGE_SIZE", &v, "a size in bytes")?;
    }
    if let Some(v) = env("REVERB_APP_MAX_CONNECTIONS") {
        let n = parse_env("REVERB_APP_MAX_CONNECTIONS", &v, "a number of connections")?;
        app.max_connections = zero_is_unlimited::limit(n);
    }
    if let Some(v) = env("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM") {
        app.client_events = match v.trim() {
            "all" | "members" => ClientEvents::Enabled,
            "none" => ClientEvents::Disabled,
            _ => {
                return Err(invalid(
                    "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
                    format!("expected \"all\", \"members\" or \"none\", got {v:?}"),
                ));
            }
        };
    }
    Ok(defined)
}

/// Applies the overrides of `[cluster]`: `RINGCAST_REDIS_URL`, or Reverb's
/// `REVERB_SCALING_ENABLED=true` with Laravel's `REDIS_URL` or `REDIS_HOST` / `REDIS_PORT` /
/// `REDIS_USERNAME` / `REDIS_PASSWORD` / `REDIS_DB`; `REVERB_SCALING_CHANNEL` names the prefix.
/// Returns the setting `redis_url` came from, for errors.
pub(super) fn apply_cluster(cluster: &mut ClusterTable, raw_env: Env<'_>) -> &'static str {
    let env = set_only(raw_env);
    let mut field = "cluster.redis_url";
    let scaling = env("REVERB_SCALING_ENABLED")
        .is_some_and(|v| matches!(v.trim(), "true" | "1" | "on" | "yes"));
    if scaling {
        if let Some(u) = env("REDIS_URL") {
            (field, cluster.redis) = ("REDIS_URL", Some(u));
        } else {
            let host = env("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port = env("REDIS_PORT").unwrap_or_else(|| "6379".into());
            let auth = match (env("REDIS_USERNAME"), env("REDIS_PASSWORD")) {
                (user, Some(password)) => format!("{}:{password}@", user.unwrap_or_default()),
                _ => String::new(),
            };
            let db = env("REDIS_DB").unwrap_or_else(|| "0".into());
            let url = format!(
                "redis://{auth}{}:{}/{}",
                host.trim(),
                port.trim(),
                db.trim()
            );
            (field, cluster.redis) = ("REDIS_HOST", Some(url));
        }
        if let Some(channel) = env("REVERB_SCALING_CHANNEL") {
            cluster.prefix = channel.trim().to_owned();
        }
    }
    if let Some(u) = env("RINGCAST_REDIS_URL") {
        (field, cluster.redis) = ("RINGCAST_REDIS_URL", Some(u));
    }
    field
}

/// The first app's id, key and secret under Laravel's `BROADCAST_DRIVER=pusher` names.
const PUSHER_CREDENTIALS: [&str; 3] = ["PUSHER_APP_ID", "PUSHER_APP_KEY", "PUSHER_APP_SECRET"];
/// The first app's id, key and secret under Reverb's names.
const REVERB_CREDENTIALS: [&str; 3] = ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"];

/// The id, key and secret named by `names`: `None` when none is set, an error when only some
/// are.
fn credentials(
    env: &impl Fn(&str) -> Option<String>,
    names: [&'static str; 3],
) -> Result<Option<[String; 3]>, ConfigError> {
    let values = names.map(env);
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    match values {
        [Some(id), Some(key), Some(secret)] => Ok(Some([id, key, secret])),
        _ => {
            let missing = names
                .iter()
                .zip(&values)
                .find_map(|(name, v)| v.is_none().then_some(*name))
                .unwrap_or(names[0]);
            Err(invalid(
                missing,
                format!(
                    "{}, {} and {} must be set together",
                    names[0], names[1], names[2]
                ),
            ))
        }
    }
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, format!("expected {what}, got {value:?}")))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::testing::*;
    use crate::config::{ClientEvents, Config};

    #[test]
    fn reverb_scaling_variables_turn_the_cluster_on() {
        let env = with_env(&[
            ("REVERB_SCALING_ENABLED", "true"),
            ("REDIS_HOST", "redis.internal"),
            ("REDIS_PASSWORD", "secret"),
            ("REVERB_SCALING_CHANNEL", "reverb"),
        ]);
        let cluster = Config::from_toml_str(ONE_APP, &env)
            .unwrap()
            .server
            .cluster
            .unwrap();
        assert_eq!(cluster.redis.host, "redis.internal");
        assert_eq!(cluster.redis.port, 6379);
        assert_eq!(cluster.redis.password.as_deref(), Some("secret"));
        assert_eq!(cluster.prefix, "reverb");
        let env = with_env(&[("RINGCAST_REDIS_URL", "redis://127.0.0.2:7000")]);
        let cluster = Config::from_toml_str(ONE_APP, &env)
            .unwrap()
            .server
            .cluster
            .unwrap();
        assert_eq!(
            (cluster.redis.host.as_str(), cluster.redis.port),
            ("127.0.0.2", 7000)
        );
        let off = with_env(&[("REVERB_SCALING_ENABLED", "false"), ("REDIS_HOST", "x")]);
        assert_eq!(
            Config::from_toml_str(ONE_APP, &off).unwrap().server.cluster,
            None
        );
    }

    #[test]
    fn reverb_variables_override_the_file_and_ringcast_ones_win() {
        let env = with_env(&[
            ("REVERB_APP_ID", "9"),
            ("REVERB_APP_KEY", "rk"),
            ("REVERB_APP_SECRET", "rs"),
            ("REVERB_SERVER_PORT", "6001"),
            ("RINGCAST_PORT", "7001"),
            ("REVERB_SERVER_HOST", "0.0.0.0"),
            ("REVERB_ALLOWED_ORIGINS", "https://a.test, *.b.test"),
            ("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "none"),
        ]);
        let config = Config::from_toml_str(ONE_APP, &env).unwrap();
        assert_eq!(
            (config.apps[0].id.as_str(), config.apps[0].key.as_str()),
            ("9", "rk")
        );
        assert_eq!(config.server.port, 7001);
        assert_eq!(config.server.host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            config.apps[0].allowed_origins,
            ["https://a.test", "*.b.test"]
        );
        assert_eq!(config.apps[0].client_events, ClientEvents::Disabled);
        let only_env = Config::load(None, &env).unwrap();
        assert_eq!(only_env.apps.len(), 1);
        assert!(!only_env.is_demo_app(&only_env.apps[0]));
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_a_comma_separated_variable() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let text = format!("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{ONE_APP}");
        let from_file = Config::from_toml_str(&text, &no_env).unwrap();
        assert!(from_file.server.trusted_proxies.contains(loopback));
        let env = with_env(&[("RINGCAST_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]);
        let from_env = Config::from_toml_str(ONE_APP, &env).unwrap();
        assert!(from_env.server.trusted_proxies.contains(loopback));
        assert!(
            from_env
                .server
                .trusted_proxies
                .contains("10.2.3.4".parse().unwrap())
        );
        let bad = with_env(&[("RINGCAST_TRUSTED_PROXIES", "10.0.0.0/8,nginx")]);
        let e = Config::from_toml_str(ONE_APP, &bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("RINGCAST_TRUSTED_PROXIES: \"nginx\""), "{e}");
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let env = with_env(&[("REVERB_SERVER_PORT", ""), ("REVERB_APP_ID", " ")]);
        let config = Config::from_toml_str(ONE_APP, &env).unwrap();
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.apps[0].id, "1");
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let e = Config::from_toml_str(ONE_APP, &with_env(&[("REVERB_SERVER_PORT", "80x")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "REVERB_SERVER_PORT: expected a port number, got \"80x\""
        );
        let e = Config::load(None, &with_env(&[("REVERB_APP_ID", "1")])).unwrap_err();
        assert!(e.to_string().starts_with("REVERB_APP_KEY:"), "{e}");
    }

    #[test]
    fn laravel_pusher_variables_name_the_app_and_reverb_ones_win_over_them() {
        let pusher = [
            ("PUSHER_APP_ID", "12"),
            ("PUSHER_APP_KEY", "pk"),
            ("PUSHER_APP_SECRET", "ps"),
        ];
        let only_pusher = Config::load(None, &with_env(&pusher)).unwrap();
        let app = &only_pusher.apps[0];
        assert_eq!((app.id.as_str(), app.key.as_str()), ("12", "pk"));
        assert_eq!(app.secret, "ps");
        assert!(!only_pusher.is_demo_app(app));

        let both = [
            pusher.as_slice(),
            &[
                ("REVERB_APP_ID", "9"),
                ("REVERB_APP_KEY", "rk"),
                ("REVERB_APP_SECRET", "rs"),
            ],
        ]
        .concat();
        let config = Config::from_toml_str(ONE_APP, &with_env(&both)).unwrap();
        assert_eq!(config.apps[0].key, "rk");

        let e = Config::load(None, &with_env(&pusher[..2])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PUSHER_APP_SECRET: PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET must be set together"
        );
    }

    #[test]
    fn reverb_max_request_size_caps_http_bodies() {
        // Reverb's defaults together: 10,000-byte requests and messages.
        let env = with_env(&[
            ("REVERB_MAX_REQUEST_SIZE", "10000"),
            ("REVERB_APP_MAX_MESSAGE_SIZE", "10000"),
        ]);
        let config = Config::from_toml_str(ONE_APP, &env).unwrap();
        assert_eq!(config.server.max_http_body_bytes, 10_000);
        let e = Config::from_toml_str(ONE_APP, &with_env(&[("REVERB_MAX_REQUEST_SIZE", "10k")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "REVERB_MAX_REQUEST_SIZE: expected a size in bytes, got \"10k\""
        );
    }
}
