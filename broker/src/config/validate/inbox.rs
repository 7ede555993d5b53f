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
