//! The checks of `[apps.inbox]` and `[apps.legacy_broadcast]`; each names the setting that is
//! wrong and says how (the channel patterns are parsed, and refused, as they are read).

use std::time::Duration;

use crate::core::options::{InboxConfig, LegacyBroadcast};

/// Most notifications kept per user: a read answers them all at once.
const MAX_PER_USER: usize = 10_000;
/// Longest a notification may be kept.
const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);
/// Most users an app's inbox may hold.
const MAX_USERS: usize = 10_000_000;

/// Checks `[apps.inbox]`; `Err` names the setting and what is wrong with it.
pub(super) fn check_inbox(inbox: &InboxConfig) -> Result<(), (&'static str, String)> {
    if inbox.channels.is_empty() {
        return Err((
            "channels",
            "must name at least one channel pattern, e.g. \"user.{id}\"".into(),
        ));
    }
    if !(1..=MAX_PER_USER).contains(&inbox.max_per_user) {
        return Err(("max_per_user", format!("must be 1 to {MAX_PER_USER}")));
    }
    if inbox.ttl.is_zero() || inbox.ttl > MAX_TTL {
        return Err((
            "ttl_secs",
            format!("must be 1 to {} (366 days)", MAX_TTL.as_secs()),
        ));
    }
    if !(1..=MAX_USERS).contains(&inbox.max_users) {
        return Err(("max_users", format!("must be 1 to {MAX_USERS}")));
    }
    Ok(())
}

/// Checks `[apps.legacy_broadcast]`; `Err` names the setting and what is wrong with it.
pub(super) fn check_legacy_broadcast(
    legacy: &LegacyBroadcast,
) -> Result<(), (&'static str, String)> {
    if legacy
        .channel_prefix
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err((
            "channel_prefix",
            format!(
                "{:?} has a space or control character",
                legacy.channel_prefix
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::testing::*;
    use crate::config::Config;

    #[test]
    fn an_inbox_table_loads_with_its_defaults() {
        let text = format!(
            "{ONE_APP}[apps.inbox]\nchannels = [\"user.{{id}}\"]\n[apps.legacy_broadcast]\n"
        );
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let inbox = config.apps[0].inbox.as_ref().unwrap();
        assert_eq!(inbox.max_per_user, 50);
        assert_eq!(inbox.ttl.as_secs(), 30 * 86_400);
        assert_eq!(inbox.user_of("private-user.42"), Some("42"));
        let legacy = config.apps[0].legacy_broadcast.as_ref().unwrap();
        assert_eq!(legacy.channel_prefix, "private-");
        assert_eq!(legacy.worker_channel.channel_of("9"), "private-worker.9");
        let without = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert_eq!(without.apps[0].inbox, None);
        assert_eq!(without.apps[0].legacy_broadcast, None);
    }

    #[test]
    fn inbox_settings_that_cannot_work_are_named() {
        for (table, named) in [
            ("[apps.inbox]\nchannels = []\n", "apps[0].inbox.channels"),
            ("[apps.inbox]\nchannels = [\"user\"]\n", "inbox.channels"),
            (
                "[apps.inbox]\nchannels = [\"u.{id}\"]\nmax_per_user = 0\n",
                "apps[0].inbox.max_per_user",
            ),
            (
                "[apps.inbox]\nchannels = [\"u.{id}\"]\nttl_secs = 0\n",
                "apps[0].inbox.ttl_secs",
            ),
            (
                "[apps.inbox]\nchannels = [\"u.{id}\"]\nmax_users = 0\n",
                "apps[0].inbox.max_users",
            ),
            (
                "[apps.legacy_broadcast]\nchannel_prefix = \"a b\"\n",
                "apps[0].legacy_broadcast.channel_prefix",
            ),
            (
                "[apps.legacy_broadcast]\nuser_channel = \"user\"\n",
                "legacy_broadcast",
            ),
            (
                "[apps.socketio]\npath = \"/pending-notifications\"\n",
                "apps[0].socketio.path",
            ),
        ] {
            let message = err(&format!("{ONE_APP}{table}"));
            assert!(message.contains(named), "{table}: {message}");
        }
    }
}
