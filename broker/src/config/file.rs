//! The TOML file's shape: its tables as written, before the environment and the checks.
//!
//! Most tables are the program's own option types (`core::options`), which deserialize
//! themselves. Only what is parsed further at load differs: the origin patterns stay text,
//! `[apps.jwt]` and `[admin_jwt]` name a key instead of holding one, and `[cluster]` holds
//! `redis_url` as written.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::core::admin::AdminAccount;
use crate::core::auth::jwt::Algorithm;
use crate::core::options::{AppConfig, ClusterConfig, ServerConfig};

/// The whole file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub apps: Vec<AppTable>,
    #[serde(default)]
    pub admins: Vec<AdminAccount>,
    #[serde(default)]
    pub admin_jwt: Option<JwtTable>,
    #[serde(default)]
    pub cluster: ClusterTable,
}

/// An `[[apps]]` table: origin patterns as text, `[apps.jwt]` naming its key.
pub(super) type AppTable = AppConfig<Vec<String>, JwtTable>;

/// The `[cluster]` table: `redis_url` as written, absent when the cluster is off.
pub(super) type ClusterTable = ClusterConfig<Option<String>>;

impl Default for AppTable {
    /// The program's defaults, with the origin patterns written out.
    fn default() -> Self {
        let app = <AppConfig>::default();
        let origins = app
            .allowed_origins
            .iter()
            .map(ToString::to_string)
            .collect();
        app.with_origins_and_jwt(origins, None)
    }
}

/// An app with these credentials and every other setting at its default.
pub(super) fn app_with_credentials(id: &str, key: &str, secret: &str) -> AppTable {
    AppTable {
        id: id.into(),
        key: key.into(),
        secret: secret.into(),
        ..AppTable::default()
    }
}

/// A JWT table (`[apps.jwt]`, `[admin_jwt]`): the key it names and the claims it reads.
/// Absent settings take the defaults of `JwtConfig` and `ClaimNames`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtTable {
    #[serde(default)]
    pub required: bool,
    pub algorithm: Algorithm,
    /// HS256 secret.
    pub secret: Option<String>,
    /// RS256/ES256 public key, PEM SubjectPublicKeyInfo (filled from `public_key_file`).
    pub public_key: Option<String>,
    pub public_key_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: Option<u64>,
    pub user_id_claim: Option<String>,
    pub tenant_claim: Option<String>,
    pub actor_claim: Option<String>,
    pub roles_claim: Option<String>,
    /// RS256/ES256 keys from a JWKS document at this http(s) URL, instead of one key.
    pub jwks_url: Option<String>,
    pub jwks_refresh_secs: Option<u64>,
    pub jwks_min_refetch_secs: Option<u64>,
    /// Accepted `azp` values; empty (the default): `azp` is not checked.
    #[serde(default)]
    pub authorized_parties: Vec<String>,
}

impl JwtTable {
    /// Reads `public_key_file` into `public_key`; `field` names the table in errors.
    fn read_key_file(&mut self, field: &str) -> Result<(), ConfigError> {
        if let Some(path) = &self.public_key_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("{field}.public_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            self.public_key = Some(pem);
        }
        Ok(())
    }
}

impl FileConfig {
    /// Reads every `public_key_file` the JWT tables name.
    pub fn read_key_files(&mut self) -> Result<(), ConfigError> {
        if let Some(jwt) = &mut self.admin_jwt {
            jwt.read_key_file("admin_jwt")?;
        }
        for (i, app) in self.apps.iter_mut().enumerate() {
            if let Some(jwt) = &mut app.jwt {
                jwt.read_key_file(&format!("apps[{i}].jwt"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::config::{Config, JwtConfig};

    #[test]
    fn unknown_fields_and_bad_types_are_named() {
        assert!(err("[server]\nprot = 1\n").contains("prot"));
        assert!(err(&format!("{ONE_APP}client_events = \"sometimes\"\n")).contains("sometimes"));
        assert!(err("[server]\nport = \"x\"\n").contains("line 2"));
    }

    #[test]
    fn jwt_hs256_constructor_matches_a_minimal_toml_table() {
        let text = format!(
            "{ONE_APP}[apps.jwt]\nalgorithm = \"HS256\"\nsecret = \"{}\"\n",
            "s".repeat(32)
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        assert_eq!(config.apps[0].jwt, Some(JwtConfig::hs256(&"s".repeat(32))));
    }

    #[test]
    fn token_verification_reads_its_table_with_the_reference_defaults() {
        use crate::core::options::{TokenVerification, VerifyMethod};
        let text = format!(
            "{ONE_APP}[apps.token_verification]\nurl = \"https://api.example.com/api/verify-token\"\n\
             method = \"POST\"\ntimeout_ms = 1500\n[apps.token_verification.fields]\nuser_id = \"id\"\n"
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let v = config.apps[0].token_verification.as_ref().unwrap();
        assert_eq!(v.url, "https://api.example.com/api/verify-token");
        assert_eq!(v.method, VerifyMethod::Post);
        assert_eq!(v.timeout, std::time::Duration::from_millis(1500));
        assert_eq!(v.fields.user_id, "id");
        assert_eq!(v.fields.actor, "type");
        let defaults = TokenVerification::default();
        assert_eq!(v.headers, defaults.headers);
        assert_eq!(v.cache, std::time::Duration::from_secs(3600));
        assert_eq!(v.default_actor, "user");
    }

    #[test]
    fn token_verification_settings_out_of_range_are_named() {
        let table = |extra: &str| {
            format!("{ONE_APP}[apps.token_verification]\nurl = \"http://127.0.0.1/v\"\n{extra}")
        };
        let cases = [
            ("url = \"ftp://x\"", "token_verification.url"),
            ("timeout_ms = 0", "token_verification.timeout_ms"),
            ("max_in_flight = 0", "token_verification.max_in_flight"),
            ("headers = [\"x-actor-type\"]", "token_verification.headers"),
            ("headers = [\"bad header\"]", "token_verification.headers"),
            ("cache_secs = 100000", "token_verification.cache_secs"),
            ("typo = 1", "typo"),
        ];
        for (extra, named) in cases {
            let text = table(extra).replace("url = \"http://127.0.0.1/v\"\nurl", "url");
            let message = err(&text);
            assert!(message.contains(named), "{extra}: {message}");
        }
    }

    #[test]
    fn socketio_reads_its_table_with_socket_io_defaults() {
        let text = format!(
            "{ONE_APP}[apps.socketio]\nauth_endpoint = \"http://127.0.0.1:8000/broadcasting/auth\"\n"
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let socketio = config.apps[0].socketio.as_ref().unwrap();
        assert_eq!(socketio.path, "/socket.io");
        assert_eq!(socketio.ping_interval, std::time::Duration::from_secs(25));
        assert_eq!(socketio.ping_timeout, std::time::Duration::from_secs(20));
        assert_eq!(
            socketio.auth_endpoint.as_deref(),
            Some("http://127.0.0.1:8000/broadcasting/auth")
        );
        let without = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert_eq!(without.apps[0].socketio, None);
    }

    #[test]
    fn socketio_settings_that_cannot_work_are_named() {
        let cases = [
            ("path = \"socket.io\"", "socketio.path"),
            ("path = \"/\"", "socketio.path"),
            ("path = \"/app/x\"", "socketio.path"),
            ("path = \"/admin\"", "socketio.path"),
            ("auth_endpoint = \"ftp://x\"", "socketio.auth_endpoint"),
            ("ping_interval_ms = 0", "socketio.ping_interval_ms"),
            ("max_auth_in_flight = 0", "socketio.max_auth_in_flight"),
            ("typo = 1", "typo"),
        ];
        for (extra, named) in cases {
            let message = err(&format!("{ONE_APP}[apps.socketio]\n{extra}\n"));
            assert!(message.contains(named), "{extra}: {message}");
        }
        let second = "[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s\"\n[apps.socketio]\npath = \"/socket.io/\"\n";
        let message = err(&format!("{ONE_APP}[apps.socketio]\n{second}"));
        assert!(message.contains("also used by apps[0]"), "{message}");
    }

    #[test]
    fn redis_broadcast_reads_its_table_with_every_channel_by_default() {
        let text = format!(
            "{ONE_APP}[apps.redis_broadcast]\nurl = \"redis://:pw@10.0.0.7:6380/1\"\nprefix = \"laravel_database_\"\n"
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let broadcast = config.apps[0].redis_broadcast.as_ref().unwrap();
        assert_eq!(broadcast.url.host, "10.0.0.7");
        assert_eq!(broadcast.url.port, 6380);
        assert_eq!(broadcast.url.password.as_deref(), Some("pw"));
        assert_eq!(broadcast.prefix, "laravel_database_");
        assert_eq!(broadcast.channels, "*");
        assert_eq!(broadcast.pattern(), "laravel_database_*");
        let minimal = format!("{ONE_APP}[apps.redis_broadcast]\nurl = \"redis://127.0.0.1\"\n");
        let config = Config::from_toml_str(&minimal, &no_env).unwrap();
        assert_eq!(config.apps[0].redis_broadcast.as_ref().unwrap().prefix, "");
        assert_eq!(
            Config::from_toml_str(ONE_APP, &no_env).unwrap().apps[0].redis_broadcast,
            None
        );
    }

    #[test]
    fn redis_broadcast_settings_out_of_range_are_named() {
        let table = |extra: &str| format!("{ONE_APP}[apps.redis_broadcast]\n{extra}");
        let cases = [
            (
                "url = \"http://x\"",
                "redis_broadcast.url: expected redis://host:port",
            ),
            ("url = \"rediss://x\"", "redis_broadcast.url: TLS"),
            (
                "url = \"redis://x:port\"",
                "redis_broadcast.url: port must be a number",
            ),
            ("prefix = \"p\"", "missing field `url`"),
            (
                "url = \"redis://x\"\nchannels = \"\"",
                "apps[0].redis_broadcast.channels: must not be empty",
            ),
            (
                "url = \"redis://x\"\nprefix = \"a b\"",
                "apps[0].redis_broadcast.prefix",
            ),
            (
                "url = \"redis://x\"\nchannels = \"news\\n\"",
                "apps[0].redis_broadcast.channels",
            ),
            ("url = \"redis://x\"\ntypo = 1", "typo"),
        ];
        for (extra, named) in cases {
            let message = err(&table(extra));
            assert!(message.contains(named), "{extra}: {message}");
        }
    }
}
