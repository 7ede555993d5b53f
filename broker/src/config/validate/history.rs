//! `[apps.history]`: its channel patterns compile, and its bounds are ones a shard can keep.

use std::time::Duration;

use crate::core::history::HistoryOptions;
use crate::core::options::{HistoryConfig, MAX_HISTORY_EVENTS};

/// Longest `ttl_secs` (30 days): history is for reconnects and catching up, not an archive.
const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Longest `recovery_secs` (a day).
const MAX_RECOVERY: Duration = Duration::from_secs(86_400);
/// Smallest `max_bytes` (64 KiB) and largest (16 GiB).
const BYTES_RANGE: std::ops::RangeInclusive<usize> = (64 << 10)..=(16 << 30);

/// Checks the table; the error names the field (under `history.`) and says what is wrong.
pub(super) fn check_history(h: &HistoryConfig) -> Result<(), (&'static str, String)> {
    if h.channels.is_empty() {
        return Err((
            "channels",
            "must name at least one channel pattern, e.g. \"private-chat.{id}\"".into(),
        ));
    }
    HistoryOptions::compile(h).map_err(|e| ("channels", e))?;
    if !(1..=MAX_HISTORY_EVENTS).contains(&h.max_events) {
        return Err((
            "max_events",
            format!("must be between 1 and {MAX_HISTORY_EVENTS}"),
        ));
    }
    if h.ttl.is_zero() || h.ttl > MAX_TTL {
        return Err(("ttl_secs", "must be between 1 and 2592000 (30 days)".into()));
    }
    if h.recovery > MAX_RECOVERY || h.recovery > h.ttl {
        return Err((
            "recovery_secs",
            "must be at most 86400 and at most ttl_secs (a replay needs the events kept)".into(),
        ));
    }
    if !BYTES_RANGE.contains(&h.max_bytes) {
        return Err((
            "max_bytes",
            "must be between 65536 (64 KiB) and 17179869184 (16 GiB)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{ONE_APP, err, no_env};
    use crate::core::options::Config;
    use std::time::Duration;

    #[test]
    fn history_reads_its_table_with_its_defaults() {
        let text = format!("{ONE_APP}[apps.history]\nchannels = [\"private-chat.{{id}}\"]\n");
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let history = config.apps[0].history.as_ref().unwrap();
        assert_eq!(history.channels, ["private-chat.{id}"]);
        assert_eq!(history.max_events, 100);
        assert_eq!(history.ttl, Duration::from_secs(86_400));
        assert_eq!(history.recovery, Duration::from_secs(120));
        assert_eq!(history.max_bytes, 64 << 20);
        let without = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert_eq!(without.apps[0].history, None);
    }

    #[test]
    fn history_settings_that_cannot_work_are_named() {
        let cases = [
            ("channels = []", "history.channels"),
            ("channels = [\"a.**.b\"]", "history.channels"),
            ("channels = [\"x\"]\nmax_events = 0", "history.max_events"),
            (
                "channels = [\"x\"]\nmax_events = 10001",
                "history.max_events",
            ),
            ("channels = [\"x\"]\nttl_secs = 0", "history.ttl_secs"),
            (
                "channels = [\"x\"]\nttl_secs = 60\nrecovery_secs = 61",
                "history.recovery_secs",
            ),
            ("channels = [\"x\"]\nmax_bytes = 1024", "history.max_bytes"),
            ("channels = [\"x\"]\ntypo = 1", "typo"),
        ];
        for (extra, named) in cases {
            let message = err(&format!("{ONE_APP}[apps.history]\n{extra}\n"));
            assert!(message.contains(named), "{extra}: {message}");
        }
        let at_limit = format!("{ONE_APP}[apps.history]\nchannels = [\"x\"]\nmax_events = 10000\n");
        assert!(Config::from_toml_str(&at_limit, &no_env).is_ok());
    }
}
