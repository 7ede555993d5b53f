//! Serde readers for the units the config file writes numbers in.
//!
//! The file names each unit in the key (`activity_timeout_secs`, `audit_cache_mb`); the
//! program holds `Duration`s and byte counts. Conversions saturate instead of wrapping, so an
//! absurd value still fails the range check that names its field.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A `Duration` written as whole seconds.
pub(crate) mod secs {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A `Duration` written as whole seconds, `0` meaning none.
pub(crate) mod secs_or_off {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        u64::deserialize(d).map(|secs| (secs > 0).then(|| Duration::from_secs(secs)))
    }
}

/// A `Duration` written as milliseconds.
pub(crate) mod millis {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A `Duration` written as days.
pub(crate) mod days {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(|days| Duration::from_secs(days.saturating_mul(86_400)))
    }
}

/// A byte count written in mebibytes.
pub(crate) mod mebibytes {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d).map(|mb| mb.saturating_mul(1 << 20))
    }
}

/// A limit written as a number, `0` meaning unlimited.
pub(crate) mod zero_is_unlimited {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        u64::deserialize(d).map(limit)
    }

    /// `n`, or `None` (unlimited) for `0`: how the file and `REVERB_APP_MAX_CONNECTIONS`
    /// both write "no limit".
    pub(crate) fn limit(n: u64) -> Option<u64> {
        (n > 0).then_some(n)
    }
}
