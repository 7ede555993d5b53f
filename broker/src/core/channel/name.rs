//! Channel names and kinds, decided once by exact prefix.
//!
//! Handlers `match name.kind()`; nothing else looks at prefixes. Note that `privateer` and
//! `presenceful` are public channels: the hyphen is part of every prefix.

use std::fmt;
use std::sync::Arc;

/// What a channel's name makes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-`: subscription signed by the app backend.
    Private,
    /// `presence-`: signed, with a member roster.
    Presence,
    /// `private-encrypted-`: signed like private; payloads are end-to-end encrypted.
    PrivateEncrypted,
    /// `cache-`: public, remembers its last event.
    Cache,
    /// `private-cache-`.
    PrivateCache,
    /// `presence-cache-`.
    PresenceCache,
    /// `private-encrypted-cache-`.
    PrivateEncryptedCache,
    /// `#server-to-user-{id}`: only the signed-in user `id` may subscribe.
    ServerToUser,
}

/// Longest prefixes first, so that `private-encrypted-cache-` is not read as `private-`.
const PREFIXES: [(&str, ChannelKind); 8] = [
    (
        "private-encrypted-cache-",
        ChannelKind::PrivateEncryptedCache,
    ),
    ("private-encrypted-", ChannelKind::PrivateEncrypted),
    ("private-cache-", ChannelKind::PrivateCache),
    ("presence-cache-", ChannelKind::PresenceCache),
    ("private-", ChannelKind::Private),
    ("presence-", ChannelKind::Presence),
    ("cache-", ChannelKind::Cache),
    ("#server-to-user-", ChannelKind::ServerToUser),
];

impl ChannelKind {
    /// Decides the kind of a (syntactically valid) name.
    pub fn of(name: &str) -> Self {
        PREFIXES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map_or(ChannelKind::Public, |&(_, kind)| kind)
    }

    /// Whether subscribing needs an HMAC signature from the app backend.
    pub fn requires_signature(self) -> bool {
        !matches!(
            self,
            ChannelKind::Public | ChannelKind::Cache | ChannelKind::ServerToUser
        )
    }

    /// Whether the channel keeps a member roster.
    pub fn is_presence(self) -> bool {
        matches!(self, ChannelKind::Presence | ChannelKind::PresenceCache)
    }

    /// Whether the channel remembers its last event for new subscribers.
    pub fn is_cache(self) -> bool {
        matches!(
            self,
            ChannelKind::Cache
                | ChannelKind::PrivateCache
                | ChannelKind::PresenceCache
                | ChannelKind::PrivateEncryptedCache
        )
    }

    /// Whether payloads are end-to-end encrypted (the broker never sees plaintext).
    pub fn is_encrypted(self) -> bool {
        matches!(
            self,
            ChannelKind::PrivateEncrypted | ChannelKind::PrivateEncryptedCache
        )
    }

    /// Whether `client-` events may be sent on the channel: signed channels only, and not
    /// encrypted ones (the broker could not vouch for a ciphertext's sender).
    pub fn allows_client_events(self) -> bool {
        matches!(
            self,
            ChannelKind::Private
                | ChannelKind::Presence
                | ChannelKind::PrivateCache
                | ChannelKind::PresenceCache
        )
    }
}

/// A validated channel name with its kind. Cheap to clone (shared text).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ChannelName {
    name: Arc<str>,
    kind: ChannelKind,
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The empty string.
    #[error("channel name must not be empty")]
    Empty,
    /// Longer than the app allows.
    #[error("channel name is longer than {max_chars} characters")]
    TooLong {
        /// The configured limit.
        max_chars: usize,
    },
    /// A character outside `[A-Za-z0-9_\-=@,.;]` (and `#` for server-to-user channels).
    #[error("channel name contains an invalid character {0:?}")]
    InvalidCharacter(char),
}

impl ChannelName {
    /// Validates `raw` against the Pusher charset and the app's length limit.
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, ChannelNameError> {
        if raw.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        // The charset is ASCII, so bytes are characters for every name that passes.
        if raw.len() > max_chars {
            return Err(ChannelNameError::TooLong { max_chars });
        }
        let kind = ChannelKind::of(raw);
        // `#` is only legal as the first byte of the server-to-user prefix.
        let body = if kind == ChannelKind::ServerToUser {
            &raw[1..]
        } else {
            raw
        };
        if let Some(bad) = body.chars().find(|&c| !is_name_char(c)) {
            return Err(ChannelNameError::InvalidCharacter(bad));
        }
        Ok(Self {
            name: Arc::from(raw),
            kind,
        })
    }

    /// The name as sent.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The kind decided by the name's prefix.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// For `#server-to-user-{id}`: the user id part.
    pub fn server_to_user_id(&self) -> Option<&str> {
        match self.kind {
            ChannelKind::ServerToUser => self.name.strip_prefix("#server-to-user-"),
            _ => None,
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(raw: &str) -> ChannelKind {
        ChannelName::parse(raw, 200).map(|n| n.kind()).unwrap()
    }

    #[test]
    fn kinds_are_decided_by_exact_prefix_longest_first() {
        assert_eq!(kind("my-channel"), ChannelKind::Public);
        assert_eq!(kind("private-a"), ChannelKind::Private);
        assert_eq!(kind("presence-a"), ChannelKind::Presence);
        assert_eq!(kind("private-encrypted-a"), ChannelKind::PrivateEncrypted);
        assert_eq!(kind("private-cache-a"), ChannelKind::PrivateCache);
        assert_eq!(kind("presence-cache-a"), ChannelKind::PresenceCache);
        assert_eq!(
            kind("private-encrypted-cache-a"),
            ChannelKind::PrivateEncryptedCache
        );
        assert_eq!(kind("cache-a"), ChannelKind::Cache);
        assert_eq!(kind("#server-to-user-42"), ChannelKind::ServerToUser);
    }

    #[test]
    fn names_that_only_look_like_prefixes_are_public() {
        for raw in [
            "privateer",
            "presenceful",
            "private",
            "cached-x",
            "private_x",
        ] {
            assert_eq!(kind(raw), ChannelKind::Public, "{raw}");
        }
    }

    #[test]
    fn length_limit_is_inclusive() {
        assert!(ChannelName::parse(&"a".repeat(200), 200).is_ok());
        assert_eq!(
            ChannelName::parse(&"a".repeat(201), 200),
            Err(ChannelNameError::TooLong { max_chars: 200 })
        );
    }

    #[test]
    fn full_charset_is_accepted_and_others_refused() {
        assert!(ChannelName::parse("aZ09_-=@,.;", 200).is_ok());
        for (raw, bad) in [
            ("a b", ' '),
            ("a#b", '#'),
            ("a/b", '/'),
            ("é", 'é'),
            ("a*", '*'),
        ] {
            assert_eq!(
                ChannelName::parse(raw, 200),
                Err(ChannelNameError::InvalidCharacter(bad))
            );
        }
        assert_eq!(ChannelName::parse("", 200), Err(ChannelNameError::Empty));
    }

    #[test]
    fn hash_is_only_legal_in_the_server_to_user_prefix() {
        let name = ChannelName::parse("#server-to-user-7", 200).unwrap();
        assert_eq!(name.server_to_user_id(), Some("7"));
        assert!(ChannelName::parse("#server-to-user-#7", 200).is_err());
        assert!(ChannelName::parse("#private-x", 200).is_err());
    }

    #[test]
    fn kind_properties_follow_the_protocol() {
        assert!(!ChannelKind::Public.requires_signature());
        assert!(!ChannelKind::Cache.requires_signature());
        assert!(ChannelKind::PrivateEncryptedCache.requires_signature());
        assert!(ChannelKind::PresenceCache.is_presence());
        assert!(ChannelKind::PresenceCache.is_cache());
        assert!(!ChannelKind::PrivateEncrypted.allows_client_events());
        assert!(!ChannelKind::Public.allows_client_events());
        assert!(ChannelKind::Presence.allows_client_events());
    }
}
