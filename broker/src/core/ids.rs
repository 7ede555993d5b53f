//! Validated identifiers: parse at the edge, carry types inside.

use std::fmt;
use std::sync::Arc;

/// A connection's Pusher socket id, `^\d+\.\d+$` on the wire.
///
/// The server SDKs (and Laravel's `toOthers`) reject any other shape, so the id is kept as two
/// integers and only ever rendered through [`fmt::Display`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SocketId {
    high: u64,
    low: u64,
}

impl SocketId {
    /// Builds a socket id from its two numeric halves.
    pub const fn new(high: u64, low: u64) -> Self {
        Self { high, low }
    }

    /// Parses `^\d+\.\d+$` (each half at most 20 digits and within `u64`).
    pub fn parse(raw: &str) -> Option<Self> {
        let (high, low) = raw.split_once('.')?;
        Some(Self {
            high: parse_digits(high)?,
            low: parse_digits(low)?,
        })
    }
}

fn parse_digits(part: &str) -> Option<u64> {
    // `u64::from_str` alone would accept a leading '+'.
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

/// A user id from signed presence `channel_data` or sign-in `user_data`.
///
/// Non-empty and bounded in length; cheap to clone because rosters and mesh messages share it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Validates a user id: non-empty, at most `max_chars` characters, no control characters.
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, UserIdError> {
        if raw.is_empty() {
            return Err(UserIdError::Empty);
        }
        if raw.chars().count() > max_chars {
            return Err(UserIdError::TooLong { max_chars });
        }
        if raw.chars().any(char::is_control) {
            return Err(UserIdError::ControlCharacter);
        }
        Ok(Self(Arc::from(raw)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    /// The id is the empty string.
    #[error("user id must not be empty")]
    Empty,
    /// The id is longer than the app allows.
    #[error("user id is longer than {max_chars} characters")]
    TooLong {
        /// The configured limit.
        max_chars: usize,
    },
    /// The id contains a control character.
    #[error("user id contains a control character")]
    ControlCharacter,
}

/// Index of an app in the server's app table; stable for the life of the process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AppIdx(pub u16);

impl AppIdx {
    /// The index as a `usize`, for table lookups.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// One `T` per app, indexed by [`AppIdx`]: the app table's order, fixed at start.
///
/// Indexing with an `AppIdx` from the same server's app table cannot go out of bounds, so
/// per-app state is one value (`PerApp<AppShard>`) rather than parallel vectors.
#[derive(Clone, Debug, Default)]
pub struct PerApp<T>(Vec<T>);

impl<T> PerApp<T> {
    /// `count` values made by `make`, in app order.
    pub fn new(count: usize, make: impl FnMut() -> T) -> Self {
        let mut make = make;
        Self((0..count).map(|_| make()).collect())
    }

    /// Every app's value, with its index.
    pub fn iter(&self) -> impl Iterator<Item = (AppIdx, &T)> {
        self.0.iter().enumerate().map(|(i, v)| (app_idx(i), v))
    }

    /// Every app's value, with its index, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (AppIdx, &mut T)> {
        self.0.iter_mut().enumerate().map(|(i, v)| (app_idx(i), v))
    }

    /// The values, in app order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    /// The values, in app order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut()
    }

    /// The value of `app`, or `None` for an index from another table.
    pub fn get(&self, app: AppIdx) -> Option<&T> {
        self.0.get(app.get())
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no apps.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> FromIterator<T> for PerApp<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<T> std::ops::Index<AppIdx> for PerApp<T> {
    type Output = T;
    fn index(&self, app: AppIdx) -> &T {
        &self.0[app.get()]
    }
}

impl<T> std::ops::IndexMut<AppIdx> for PerApp<T> {
    fn index_mut(&mut self, app: AppIdx) -> &mut T {
        &mut self.0[app.get()]
    }
}

/// The index of the `i`-th app; an app table never holds more than `u16::MAX` apps.
fn app_idx(i: usize) -> AppIdx {
    AppIdx(u16::try_from(i).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_id_round_trips_through_text() {
        let id = SocketId::new(123, 456);
        assert_eq!(id.to_string(), "123.456");
        assert_eq!(SocketId::parse("123.456"), Some(id));
    }

    #[test]
    fn socket_id_rejects_anything_but_digits_dot_digits() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1.2.3",
            "+1.2",
            "1.-2",
            "a.b",
            "1 .2",
            "1.2 ",
            "１.2",
            "123456789012345678901234.1",
        ] {
            assert_eq!(SocketId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn user_id_accepts_exactly_the_limit_and_refuses_one_more() {
        assert!(UserId::parse(&"é".repeat(128), 128).is_ok());
        assert_eq!(
            UserId::parse(&"é".repeat(129), 128),
            Err(UserIdError::TooLong { max_chars: 128 })
        );
    }

    #[test]
    fn user_id_refuses_empty_and_control_characters() {
        assert_eq!(UserId::parse("", 128), Err(UserIdError::Empty));
        assert_eq!(
            UserId::parse("a\nb", 128),
            Err(UserIdError::ControlCharacter)
        );
    }
}
