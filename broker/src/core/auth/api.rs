//! Pusher HTTP API request signatures.
//!
//! `auth_signature = hex(HMAC-SHA256(secret, METHOD "\n" PATH "\n" QUERY))` where `QUERY` is
//! every other parameter with lower-cased keys, sorted, joined `k=v&...` without escaping.

use std::time::Duration;

use md5::{Digest, Md5};
use ring::hmac;

use super::{hmac_hex, verify_hex};
use crate::core::http::request::QueryPair;

/// A request as the API sees it.
pub struct ApiRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as sent.
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [QueryPair<'a>],
    /// The raw body.
    pub body: &'a [u8],
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    /// A required parameter is missing.
    #[error("missing query parameter {0}")]
    MissingParameter(&'static str),
    /// `auth_key` is not this app's key.
    #[error("auth_key does not match the app")]
    UnknownKey,
    /// `auth_version` is not `1.0`.
    #[error("unsupported auth_version (1.0 is supported)")]
    UnsupportedAuthVersion,
    /// `auth_timestamp` is not a number.
    #[error("auth_timestamp must be seconds since the Unix epoch")]
    InvalidTimestamp,
    /// `auth_timestamp` is too far from the server's clock.
    #[error(
        "auth_timestamp is {skew_secs} s away from the server's time (allowed: 600 s); check the clock"
    )]
    TimestampOutsideWindow {
        /// Request time minus server time.
        skew_secs: i64,
    },
    /// `body_md5` is missing for a body or does not match it.
    #[error("body_md5 does not match the body")]
    BodyMd5Mismatch,
    /// The signature does not match.
    #[error("invalid signature: check the app key and secret")]
    InvalidSignature,
}

impl ApiAuthError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiAuthError::MissingParameter(_) => 400,
            _ => 401,
        }
    }
}

fn param<'a>(query: &'a [QueryPair<'_>], name: &'static str) -> Result<&'a str, ApiAuthError> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
        .ok_or(ApiAuthError::MissingParameter(name))
}

/// Checks the signature, key, version, timestamp window and body digest of a request.
pub fn verify(
    req: &ApiRequest<'_>,
    app_key: &str,
    secret: &hmac::Key,
    now_unix_secs: u64,
    window: Duration,
) -> Result<(), ApiAuthError> {
    let key = param(req.query, "auth_key")?;
    let timestamp = param(req.query, "auth_timestamp")?;
    let version = param(req.query, "auth_version")?;
    let signature = param(req.query, "auth_signature")?;
    if key != app_key {
        return Err(ApiAuthError::UnknownKey);
    }
    if version != "1.0" {
        return Err(ApiAuthError::UnsupportedAuthVersion);
    }
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| ApiAuthError::InvalidTimestamp)?;
    let skew_secs = timestamp.saturating_sub(i64::try_from(now_unix_secs).unwrap_or(i64::MAX));
    if skew_secs.unsigned_abs() > window.as_secs() {
        return Err(ApiAuthError::TimestampOutsideWindow { skew_secs });
    }
    if !req.body.is_empty() {
        let sent = param(req.query, "body_md5").map_err(|_| ApiAuthError::BodyMd5Mismatch)?;
        if !body_md5_matches(req.body, sent) {
            return Err(ApiAuthError::BodyMd5Mismatch);
        }
    }
    let message = string_to_sign(req.method, req.path, req.query);
    if verify_hex(secret, message.as_bytes(), signature) {
        Ok(())
    } else {
        Err(ApiAuthError::InvalidSignature)
    }
}

/// Hex MD5 of a body.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Whether `sent_hex` (either case) is the MD5 of `body`, without formatting the digest.
fn body_md5_matches(body: &[u8], sent_hex: &str) -> bool {
    let mut sent = [0u8; 16];
    hex::decode_to_slice(sent_hex, &mut sent).is_ok() && Md5::digest(body).as_slice() == sent
}

/// `METHOD\nPATH\nk=v&...` over every parameter but `auth_signature`, keys lower-cased and
/// the pairs sorted by them. Built into one string: the pairs are sorted as borrowed slices and
/// lower-cased as they are written.
pub fn string_to_sign<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    path: &str,
    params: &[(K, V)],
) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != "auth_signature")
        .collect();
    pairs.sort_by(|(ka, va), (kb, vb)| lowercase(ka).cmp(lowercase(kb)).then_with(|| va.cmp(vb)));
    let query_len: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(method.len() + path.len() + 2 + query_len);
    out.push_str(method);
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(k.chars().map(|c| c.to_ascii_lowercase()));
        out.push('=');
        out.push_str(v);
    }
    out
}

fn lowercase(text: &str) -> impl Iterator<Item = u8> + '_ {
    text.bytes().map(|b| b.to_ascii_lowercase())
}

/// A ready, percent-encoded query string for a signed request (tests and the load generator).
pub fn signed_query(
    method: &str,
    path: &str,
    key: &str,
    secret: &hmac::Key,
    timestamp: u64,
    body: &[u8],
    extra: &[(&str, &str)],
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), key.into()),
        ("auth_timestamp".into(), timestamp.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".into(), body_md5(body)));
    }
    params.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let signature = hmac_hex(secret, string_to_sign(method, path, &params).as_bytes());
    params.push(("auth_signature".into(), signature));
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::hmac_key;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const NOW: u64 = 1353088179;

    fn query(pairs: &[(&str, &str)]) -> Vec<QueryPair<'static>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned().into()))
            .collect()
    }

    fn vector_query() -> Vec<QueryPair<'static>> {
        query(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ])
    }

    fn check(q: &[QueryPair<'_>], body: &str, now: u64) -> Result<(), ApiAuthError> {
        let req = ApiRequest {
            method: "POST",
            path: "/apps/3/events",
            query: q,
            body: body.as_bytes(),
        };
        verify(&req, KEY, &hmac_key(SECRET), now, Duration::from_secs(600))
    }

    #[test]
    fn accepts_the_protocol_test_vector() {
        assert_eq!(
            body_md5(BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(check(&vector_query(), BODY, NOW), Ok(()));
    }

    #[test]
    fn timestamp_window_is_inclusive_at_600_seconds() {
        assert!(check(&vector_query(), BODY, NOW + 600).is_ok());
        assert!(check(&vector_query(), BODY, NOW - 600).is_ok());
        assert_eq!(
            check(&vector_query(), BODY, NOW + 601),
            Err(ApiAuthError::TimestampOutsideWindow { skew_secs: -601 })
        );
        assert!(check(&vector_query(), BODY, NOW - 601).is_err());
    }

    #[test]
    fn a_changed_body_or_signature_is_refused() {
        assert_eq!(
            check(&vector_query(), "{}", NOW),
            Err(ApiAuthError::BodyMd5Mismatch)
        );
        let mut q = vector_query();
        q[4].1 = "00".repeat(32).into();
        assert_eq!(check(&q, BODY, NOW), Err(ApiAuthError::InvalidSignature));
        let mut q = vector_query();
        q.remove(3);
        assert_eq!(check(&q, BODY, NOW), Err(ApiAuthError::BodyMd5Mismatch));
    }

    #[test]
    fn key_version_and_missing_parameters_are_checked() {
        let mut q = vector_query();
        q[0].1 = "other".into();
        assert_eq!(check(&q, BODY, NOW), Err(ApiAuthError::UnknownKey));
        let mut q = vector_query();
        q[2].1 = "2.0".into();
        assert_eq!(
            check(&q, BODY, NOW),
            Err(ApiAuthError::UnsupportedAuthVersion)
        );
        let mut q = vector_query();
        q[1].1 = "soon".into();
        assert_eq!(check(&q, BODY, NOW), Err(ApiAuthError::InvalidTimestamp));
        let q = query(&[("auth_key", KEY)]);
        let err = check(&q, BODY, NOW).unwrap_err();
        assert_eq!(
            (err.status(), err),
            (400, ApiAuthError::MissingParameter("auth_timestamp"))
        );
    }

    #[test]
    fn signed_query_round_trips_with_extra_parameters() {
        let secret = hmac_key(SECRET);
        let text = signed_query(
            "GET",
            "/apps/3/channels",
            KEY,
            &secret,
            NOW,
            b"",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        );
        let q: Vec<QueryPair<'_>> = text
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.into(), v.replace("%2D", "-").replace("%5F", "_").into())
            })
            .collect();
        let req = ApiRequest {
            method: "GET",
            path: "/apps/3/channels",
            query: &q,
            body: b"",
        };
        assert_eq!(
            verify(&req, KEY, &secret, NOW, Duration::from_secs(600)),
            Ok(())
        );
        let req = ApiRequest {
            method: "GET",
            path: "/apps/4/channels",
            query: &q,
            body: b"",
        };
        assert_eq!(
            verify(&req, KEY, &secret, NOW, Duration::from_secs(600)),
            Err(ApiAuthError::InvalidSignature)
        );
    }
}
