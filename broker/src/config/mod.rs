//! Loading the configuration: a TOML file (or the embedded demo), environment overrides,
//! validation, in that order.
//!
//! The result is [`Config`], core's option types ([`crate::core::options`]), re-exported
//! here for the shell. `file` is the file's shape, `env` the overrides (Laravel Reverb's
//! variable names and Ringcast's own), `validate` the checks and the parsing of origin
//! patterns, JWT keys and the Redis URL.

mod env;
mod file;
mod validate;

use std::path::{Path, PathBuf};

use self::file::FileConfig;
pub use crate::core::options::{
    AppConfig, ClientEvents, ClusterConfig, Config, Driver, JwksSource, JwtConfig, JwtKeys,
    RateLimits, RedisTarget, ServerConfig, WebhookConfig,
};

/// Why the config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped fields.
    #[error("{origin}: {message}")]
    Parse {
        /// The file, or "config".
        origin: String,
        /// What the parser said (it names the field).
        message: String,
    },
    /// A value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field or environment variable.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

const DEMO_ID: &str = "100001";
const DEMO_KEY: &str = "ringcast-demo-key";
const DEMO_SECRET: &str = "ringcast-demo-secret";

impl Config {
    /// Loads `path` (or the embedded demo), applies environment overrides read through
    /// `env`, then validates.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        match path {
            None => Self::finish(FileConfig::default(), true, env),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(&text, &path.display().to_string(), env)
            }
        }
    }

    /// Parses TOML text, applies environment overrides and validates.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::parse(text, "config", env)
    }

    fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.message().to_owned() + &span_hint(text, e.span()),
        })?;
        Self::finish(file, false, env)
    }

    fn finish(
        mut file: FileConfig,
        demo: bool,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut cluster = std::mem::take(&mut file.cluster);
        let url_field = env::apply_cluster(&mut cluster, vars);
        file.server.cluster = validate::cluster(cluster, url_field)?;
        let env_app = env::apply(&mut file, vars)?;
        file.read_key_files()?;
        if demo && !env_app && file.apps.is_empty() {
            file.apps
                .push(file::app_with_credentials(DEMO_ID, DEMO_KEY, DEMO_SECRET));
        }
        if file.server.shards == 0 {
            file.server.shards = std::thread::available_parallelism().map_or(1, usize::from);
        }
        let config = validate::validate(file)?;
        let server = &config.server;
        if !server.host.is_loopback()
            && !server.allow_demo_credentials
            && let Some(app) = config.apps.iter().find(|app| config.is_demo_app(app))
        {
            return Err(invalid(
                "server.host",
                format!(
                    "{} is reachable from other machines, and app {} has the demo credentials \
                     that the README publishes: configure an app of your own (or set \
                     server.allow_demo_credentials = true, RINGCAST_ALLOW_DEMO_CREDENTIALS=true \
                     or --allow-demo-credentials)",
                    server.host, app.id
                ),
            ));
        }
        Ok(config)
    }

    /// What a config that loads may still get wrong, to be logged at start: an app that
    /// admits every origin while the port is reachable from other machines.
    pub fn warnings(&self) -> Vec<String> {
        if self.server.host.is_loopback() {
            return Vec::new();
        }
        self.apps
            .iter()
            .filter(|app| app.allowed_origins.iter().any(|o| o.is_any()))
            .map(|app| {
                format!(
                    "app {} allows every origin (allowed_origins \"*\") on {}, which other \
                     machines can reach: any web page may connect to it; list your sites' origins",
                    app.id, self.server.host
                )
            })
            .collect()
    }

    /// The embedded default: one demo app on 127.0.0.1:8080, data under `./data`.
    pub fn demo() -> Config {
        Config {
            server: ServerConfig {
                shards: std::thread::available_parallelism().map_or(1, usize::from),
                ..ServerConfig::default()
            },
            apps: vec![AppConfig {
                socketio: Some(crate::core::options::SocketIoConfig::default()),
                ..AppConfig::with_credentials(DEMO_ID, DEMO_KEY, DEMO_SECRET)
            }],
            admins: Vec::new(),
            admin_jwt: None,
        }
    }

    /// Whether `app` is the demo app with its published credentials.
    pub fn is_demo_app(&self, app: &AppConfig) -> bool {
        app.key == DEMO_KEY && app.secret == DEMO_SECRET
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!(" (line {line})")
}

/// What the tests of every part of the loader share.
#[cfg(test)]
mod testing {
    use std::collections::HashMap;

    use super::Config;

    pub fn no_env(_: &str) -> Option<String> {
        None
    }

    pub fn with_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |name| map.get(name).cloned()
    }

    pub fn err(text: &str) -> String {
        Config::from_toml_str(text, &no_env)
            .unwrap_err()
            .to_string()
    }

    pub const ONE_APP: &str = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;
    use std::time::Duration;

    use super::testing::*;
    use super::*;

    #[test]
    fn the_cluster_is_off_by_default_and_configured_by_url() {
        let single = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert_eq!(single.server.cluster, None);
        let text = format!(
            "[cluster]\nredis_url = \"redis://:pw@10.0.0.5:6380/2\"\nnode_timeout_secs = 12\n{ONE_APP}"
        );
        let cluster = Config::from_toml_str(&text, &no_env)
            .unwrap()
            .server
            .cluster
            .unwrap();
        assert_eq!(cluster.redis.host, "10.0.0.5");
        assert_eq!(cluster.redis.port, 6380);
        assert_eq!(cluster.redis.db, 2);
        assert_eq!(cluster.redis.username, None);
        assert_eq!(cluster.redis.password.as_deref(), Some("pw"));
        assert_eq!(cluster.prefix, "ringcast");
        assert_eq!(cluster.heartbeat_interval(), Duration::from_secs(2));
        assert_eq!(cluster.dead_after(), Duration::from_secs(10));
        assert!(!format!("{:?}", cluster.redis).contains("pw"));
    }

    #[test]
    fn no_file_gives_the_demo_app_with_defaults() {
        let config = Config::load(None, &no_env).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert!(config.is_demo_app(&config.apps[0]));
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.server.host, IpAddr::from([127, 0, 0, 1]));
        assert!(config.server.shards >= 1);
        let app = &config.apps[0];
        assert_eq!(
            (
                app.max_message_bytes,
                app.max_presence_members,
                app.client_events_per_second
            ),
            (10_240, 100, 10)
        );
    }

    #[test]
    fn the_demo_credentials_are_refused_where_other_machines_can_reach_them() {
        let public = with_env(&[("RINGCAST_HOST", "0.0.0.0")]);
        let e = Config::load(None, &public).unwrap_err().to_string();
        assert!(e.starts_with("server.host: 0.0.0.0 is reachable from other machines, and app 100001 has the demo credentials"), "{e}");
        let asked = with_env(&[
            ("RINGCAST_HOST", "0.0.0.0"),
            ("RINGCAST_ALLOW_DEMO_CREDENTIALS", "true"),
        ]);
        assert!(Config::load(None, &asked).is_ok());
        // Own credentials on a public address, and the demo on any loopback address, load.
        assert!(Config::from_toml_str(ONE_APP, &public).is_ok());
        let loopback = with_env(&[("RINGCAST_HOST", "127.0.0.3")]);
        assert!(Config::load(None, &loopback).is_ok());
    }

    #[test]
    fn every_origin_on_a_public_address_is_warned_about() {
        let public = with_env(&[("RINGCAST_HOST", "10.1.2.3")]);
        let config = Config::from_toml_str(ONE_APP, &public).unwrap();
        assert_eq!(
            config.warnings(),
            [
                "app 1 allows every origin (allowed_origins \"*\") on 10.1.2.3, which other \
              machines can reach: any web page may connect to it; list your sites' origins"
            ]
        );
        let listed = format!("{ONE_APP}allowed_origins = [\"https://app.test\"]\n");
        assert!(
            Config::from_toml_str(&listed, &public)
                .unwrap()
                .warnings()
                .is_empty()
        );
        let local = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert!(local.warnings().is_empty());
    }

    #[test]
    fn the_full_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/full.toml");
        let config = Config::load(Some(&path), &no_env).unwrap();
        assert_eq!(config.apps.len(), 2);
        assert_eq!(config.server.driver, Driver::Epoll);
        assert_eq!(config.apps[1].client_events, ClientEvents::MembersOnly);
        assert_eq!(config.apps[1].max_connections, Some(500));
        assert_eq!(config.apps[0].max_connections, None);
        let broadcast = config.apps[0].redis_broadcast.as_ref().unwrap();
        assert_eq!(broadcast.pattern(), "laravel_database_*");
        assert_eq!(config.apps[1].redis_broadcast, None);
        let socketio = config.apps[0].socketio.as_ref().unwrap();
        assert_eq!(
            socketio.auth_endpoint.as_deref(),
            Some("http://127.0.0.1:8000/broadcasting/auth")
        );
        assert_eq!(config.apps[1].socketio, None);
        let history = config.apps[0].history.as_ref().unwrap();
        assert_eq!(history.channels, ["private-chat.{id}", "presence-room.*"]);
        assert_eq!(config.apps[1].history, None);
        let inbox = config.apps[0].inbox.as_ref().unwrap();
        assert_eq!(inbox.user_of("private-App.Models.User.7"), Some("7"));
        assert!(config.apps[0].legacy_broadcast.is_some());
        assert_eq!(config.apps[1].inbox, None);
        let jwt = config.apps[1].jwt.as_ref().unwrap();
        assert_eq!(
            jwt.jwks().map(|source| source.url.as_str()),
            Some("https://clerk.example.com/.well-known/jwks.json")
        );
    }
}
