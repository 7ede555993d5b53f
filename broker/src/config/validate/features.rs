//! The checks of an app's feature tables: `[apps.typing]` and `[apps.receipts]`. Each names the setting that is
//! wrong and says how.

use std::time::Duration;

use super::MAX_DURATION;
use crate::core::options::{ReceiptsConfig, TypingConfig};

/// Checks `[apps.typing]`; `Err` names the setting and what is wrong with it.
pub(super) fn check_typing(v: &TypingConfig) -> Result<(), (&'static str, String)> {
    if v.channels.is_empty() {
        return Err((
            "channels",
            "names no channel: give presence patterns such as \"presence-chat.{id}\"".into(),
        ));
    }
    if let Some(pattern) = v.channels.iter().find(|p| !p.kind().is_presence()) {
        return Err((
            "channels",
            format!(
                "{:?} is not a presence channel pattern: typing state needs members",
                pattern.as_str()
            ),
        ));
    }
    if v.expire < Duration::from_secs(1) || v.expire > MAX_DURATION {
        return Err(("expire_secs", "must be 1 to 86400".into()));
    }
    Ok(())
}

/// Checks `[apps.receipts]`; `Err` names the setting and what is wrong with it.
pub(super) fn check_receipts(v: &ReceiptsConfig) -> Result<(), (&'static str, String)> {
    if v.channels.is_empty() {
        return Err((
            "channels",
            "names no channel: give patterns such as \"private-dm.{id}\"".into(),
        ));
    }
    if !(1..=100_000).contains(&v.max_recipients) {
        return Err(("max_recipients", "must be 1 to 100000".into()));
    }
    if !(1..=1_000_000).contains(&v.max_messages) {
        return Err(("max_messages", "must be 1 to 1000000".into()));
    }
    if v.ttl < Duration::from_secs(1) || v.ttl > MAX_DURATION {
        return Err(("ttl_secs", "must be 1 to 86400".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::testing::*;
    use crate::config::Config;
    use crate::core::channel::ChannelName;
    use std::time::Duration;

    #[test]
    fn typing_reads_its_patterns_with_a_five_second_expiry_by_default() {
        let text = format!("{ONE_APP}[apps.typing]\nchannels = [\"presence-chat.{{id}}\"]\n");
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let typing = config.apps[0].typing.as_ref().unwrap();
        assert_eq!(typing.expire, Duration::from_secs(5));
        let chat = ChannelName::parse("presence-chat.7", 200).unwrap();
        let other = ChannelName::parse("presence-room.7", 200).unwrap();
        assert!(typing.covers(&chat) && !typing.covers(&other));
        let without = Config::from_toml_str(ONE_APP, &no_env).unwrap();
        assert_eq!(without.apps[0].typing, None);
    }

    #[test]
    fn the_full_example_file_has_a_typing_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/full.toml");
        let config = Config::load(Some(&path), &no_env).unwrap();
        let typing = config.apps[0].typing.as_ref().unwrap();
        assert_eq!(typing.channels[0].as_str(), "presence-chat.{id}");
        assert_eq!(config.apps[1].typing, None);
        let receipts = config.apps[0].receipts.as_ref().unwrap();
        assert_eq!(receipts.channels[1].as_str(), "private-dm.**");
        assert_eq!(
            (receipts.max_recipients, receipts.max_messages),
            (100, 10_000)
        );
    }

    #[test]
    fn receipts_settings_that_cannot_work_are_named() {
        let cases = [
            ("channels = []", "receipts.channels"),
            (
                "channels = [\"private-a\"]\nmax_recipients = 0",
                "receipts.max_recipients",
            ),
            (
                "channels = [\"private-a\"]\nmax_messages = 0",
                "receipts.max_messages",
            ),
            (
                "channels = [\"private-a\"]\nttl_secs = 0",
                "receipts.ttl_secs",
            ),
            ("channels = [\"private-a.**.b\"]", "may only end"),
        ];
        for (extra, named) in cases {
            let message = err(&format!("{ONE_APP}[apps.receipts]\n{extra}\n"));
            assert!(message.contains(named), "{extra}: {message}");
        }
        let text = format!("{ONE_APP}[apps.receipts]\nchannels = [\"private-dm.{{id}}\"]\n");
        let config = Config::from_toml_str(&text, &no_env).unwrap();
        let receipts = config.apps[0].receipts.as_ref().unwrap();
        assert_eq!(receipts.ttl, Duration::from_secs(86_400));
    }

    #[test]
    fn typing_settings_that_cannot_work_are_named() {
        let cases = [
            ("channels = []", "typing.channels"),
            (
                "channels = [\"private-chat.{id}\"]",
                "not a presence channel",
            ),
            ("channels = [\"chat.{id}\"]", "not a presence channel"),
            ("channels = [\"presence-chat.**.x\"]", "may only end"),
            (
                "channels = [\"presence-a\"]\nexpire_secs = 0",
                "typing.expire_secs",
            ),
            ("channels = [\"presence-a\"]\ntypo = 1", "typo"),
        ];
        for (extra, named) in cases {
            let message = err(&format!("{ONE_APP}[apps.typing]\n{extra}\n"));
            assert!(message.contains(named), "{extra}: {message}");
        }
    }
}
