//! Which browser origins may connect: the `allowed_origins` patterns, parsed once at load.
//!
//! Patterns and `Origin` headers compare ASCII-case-insensitively. A pattern is lowercased
//! when it is parsed and a header once per connection, so no comparison lowercases anything.

use std::fmt;
use std::str::FromStr;

/// One `allowed_origins` pattern: `*`, `*.domain` or `scheme://host[:port]`.
///
/// It keeps the text it was parsed from, which is what it displays and compares equal to, so
/// the dashboard shows the patterns as the config wrote them.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    written: String,
    pattern: Pattern,
}

/// What a pattern matches; every string in it is lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: every origin.
    Any,
    /// `*.domain`: hosts strictly below `domain` (not `domain` itself), any scheme, any port.
    Subdomains(String),
    /// `scheme://host[:port]`: that origin only (a trailing `/` on either side is ignored).
    Exact(String),
}

/// A pattern that is not `*`, `*.domain` or `scheme://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not \"*\", \"*.domain\" or \"scheme://host[:port]\"")]
pub struct MalformedOrigin(pub String);

impl AllowedOrigin {
    /// Every origin: the default pattern.
    pub fn any() -> Self {
        Self {
            written: "*".to_owned(),
            pattern: Pattern::Any,
        }
    }

    /// Reads a pattern. Hosts and domains are `[A-Za-z0-9.-]`, a scheme is letters, a port
    /// fits 16 bits (an empty one after `:` is accepted and must then be sent as such).
    pub fn parse(written: &str) -> Result<Self, MalformedOrigin> {
        let malformed = || MalformedOrigin(written.to_owned());
        let host_ok = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        };
        let pattern = if written == "*" {
            Pattern::Any
        } else if let Some(domain) = written.strip_prefix("*.") {
            if !host_ok(domain) {
                return Err(malformed());
            }
            Pattern::Subdomains(domain.to_ascii_lowercase())
        } else {
            let (scheme, rest) = written.split_once("://").ok_or_else(malformed)?;
            let authority = rest.trim_end_matches('/');
            let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
            let well_formed = !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphabetic())
                && host_ok(host)
                && (port.is_empty() || port.parse::<u16>().is_ok());
            if !well_formed {
                return Err(malformed());
            }
            Pattern::Exact(
                written
                    .to_ascii_lowercase()
                    .trim_end_matches('/')
                    .to_owned(),
            )
        };
        Ok(Self {
            written: written.to_owned(),
            pattern,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// Whether this is `*`.
    pub fn is_any(&self) -> bool {
        self.pattern == Pattern::Any
    }

    /// Whether a request with this `Origin` matches.
    pub fn allows(&self, origin: &RequestOrigin) -> bool {
        match &self.pattern {
            Pattern::Any => true,
            Pattern::Subdomains(domain) => origin
                .host()
                .strip_suffix(domain.as_str())
                .and_then(|below| below.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
            Pattern::Exact(exact) => origin.lowercase.trim_end_matches('/') == exact,
        }
    }
}

impl FromStr for AllowedOrigin {
    type Err = MalformedOrigin;

    fn from_str(written: &str) -> Result<Self, Self::Err> {
        Self::parse(written)
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl fmt::Debug for AllowedOrigin {
    /// The pattern as written, quoted, as a `String` would print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.written, f)
    }
}

impl PartialEq<&str> for AllowedOrigin {
    /// Whether the pattern was written as `other`.
    fn eq(&self, other: &&str) -> bool {
        self.written == *other
    }
}

/// A request's `Origin` header, lowercased once for all the patterns it is matched against.
pub struct RequestOrigin {
    lowercase: String,
}

impl RequestOrigin {
    /// From the header's value.
    pub fn new(header: &str) -> Self {
        Self {
            lowercase: header.to_ascii_lowercase(),
        }
    }

    /// What `*.domain` patterns look at: after the scheme's `://` (if any), up to the port.
    fn host(&self) -> &str {
        let origin = self.lowercase.as_str();
        origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .split(':')
            .next()
            .unwrap_or_default()
    }
}

/// Whether a request with `origin` may connect to an app allowing `patterns`.
///
/// A missing `Origin` is allowed: only browsers send it, and the allow-list exists to stop
/// other web pages from using the app's key from a visitor's browser. Servers and mobile apps
/// are not constrained by it.
pub fn origin_allowed(patterns: &[AllowedOrigin], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    if patterns.iter().any(AllowedOrigin::is_any) {
        return true;
    }
    let origin = RequestOrigin::new(origin);
    patterns.iter().any(|pattern| pattern.allows(&origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, origin: &str) -> bool {
        AllowedOrigin::parse(pattern)
            .unwrap()
            .allows(&RequestOrigin::new(origin))
    }

    #[test]
    fn well_formed_patterns_parse_and_keep_their_text() {
        for pattern in [
            "*",
            "*.example.com",
            "*.Example.COM",
            "https://app.example.com",
            "HTTPS://App.Example.com/",
            "http://localhost:3000",
            "http://127.0.0.1:65535",
            "https://a.com:",
        ] {
            let parsed = AllowedOrigin::parse(pattern).unwrap();
            assert_eq!(parsed.to_string(), pattern);
            assert_eq!(parsed, pattern);
            assert_eq!(format!("{parsed:?}"), format!("{pattern:?}"));
        }
    }

    #[test]
    fn malformed_patterns_are_refused_naming_the_pattern() {
        for pattern in [
            "",
            "example.com",
            "*.",
            "*.exa mple.com",
            "*.*",
            "**",
            "https://",
            "://a.com",
            "ht-tp://a.com",
            "https://*.example.com",
            "https://a.com/path",
            "https://a.com:65536",
            "https://a.com:80:90",
            "https://a.com:port",
            "https://exämple.com",
        ] {
            assert_eq!(
                AllowedOrigin::parse(pattern),
                Err(MalformedOrigin(pattern.to_owned())),
                "{pattern}"
            );
        }
        assert_eq!(
            MalformedOrigin("example.com".into()).to_string(),
            r#""example.com" is not "*", "*.domain" or "scheme://host[:port]""#
        );
    }

    #[test]
    fn any_allows_every_origin() {
        for origin in ["https://anything.test", "null", "", "http://[::1]:80"] {
            assert!(allows("*", origin), "{origin}");
        }
    }

    #[test]
    fn a_subdomain_wildcard_allows_hosts_strictly_below_the_domain_on_any_scheme_and_port() {
        assert!(allows("*.example.org", "https://a.example.org"));
        assert!(allows("*.example.org", "http://x.y.example.org:3000"));
        assert!(allows("*.example.org", "wss://A.EXAMPLE.ORG"));
        assert!(allows("*.Example.ORG", "https://a.example.org"));
        assert!(allows("*.example.org", "a.example.org"));
        assert!(!allows("*.example.org", "https://example.org"));
        assert!(!allows("*.example.org", "https://.example.org"));
        assert!(!allows("*.example.org", "https://badexample.org"));
        assert!(!allows("*.example.org", "https://a.example.org.evil.net"));
        assert!(!allows("*.example.org", "https://example.org:443"));
    }

    #[test]
    fn a_subdomain_wildcard_survives_non_ascii_hosts() {
        assert!(allows("*.example.org", "https://é.example.org"));
        assert!(!allows("*.example.org", "https://éxample.org"));
        assert!(!allows("*.example.org", "https://ééééééééééééé"));
    }

    #[test]
    fn an_exact_origin_needs_the_same_scheme_host_and_port_in_any_case() {
        assert!(allows("https://app.example.com", "https://APP.example.com"));
        assert!(allows("HTTPS://APP.EXAMPLE.COM", "https://app.example.com"));
        assert!(allows(
            "https://app.example.com/",
            "https://app.example.com"
        ));
        assert!(allows(
            "https://app.example.com",
            "https://app.example.com//"
        ));
        assert!(allows("http://localhost:3000", "http://localhost:3000"));
        assert!(!allows("https://app.example.com", "http://app.example.com"));
        assert!(!allows(
            "https://app.example.com",
            "https://app.example.com:8443"
        ));
        assert!(!allows("http://localhost:3000", "http://localhost"));
        assert!(!allows(
            "https://app.example.com",
            "https://sub.app.example.com"
        ));
    }

    #[test]
    fn a_missing_origin_is_allowed_and_any_matching_pattern_suffices() {
        let patterns =
            ["https://app.example.com", "*.example.org"].map(|p| AllowedOrigin::parse(p).unwrap());
        assert!(origin_allowed(&patterns, None));
        assert!(origin_allowed(&patterns, Some("https://a.example.org")));
        assert!(origin_allowed(&patterns, Some("https://app.example.com")));
        assert!(!origin_allowed(&patterns, Some("https://evil.test")));
        assert!(!origin_allowed(&[], Some("https://app.example.com")));
        assert!(origin_allowed(&[], None));
    }
}
