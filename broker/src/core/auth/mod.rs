//! Signatures: HMAC-SHA256 with `ring`, always compared in constant time.

pub mod api;
pub mod backend;
pub mod channel;
pub mod endpoint;
pub mod jwks;
pub mod jwt;
pub mod user;

use std::fmt::Display;

use ring::hmac;
use serde_json::value::RawValue;

/// What a channel authorization signs: `socket_id:channel`, and for a presence channel
/// `socket_id:channel:channel_data` (the exact `channel_data` text the client sends).
pub fn channel_auth_message(
    socket_id: impl Display,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// What a user sign-in signs: `socket_id::user::user_data`.
pub fn signin_message(socket_id: impl Display, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The `auth` value of a subscription, `key:signature`, as an app's auth endpoint makes it.
pub fn sign_channel(
    app_key: &str,
    secret: &hmac::Key,
    socket_id: impl Display,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let message = channel_auth_message(socket_id, channel, channel_data);
    format!("{app_key}:{}", hmac_hex(secret, message.as_bytes()))
}

/// The `auth` value of a sign-in, `key:signature`, as an app's user-auth endpoint makes it.
pub fn sign_signin(
    app_key: &str,
    secret: &hmac::Key,
    socket_id: impl Display,
    user_data: &str,
) -> String {
    let message = signin_message(socket_id, user_data);
    format!("{app_key}:{}", hmac_hex(secret, message.as_bytes()))
}

/// Lower-case hex of `HMAC-SHA256(key, message)`.
pub fn hmac_hex(key: &hmac::Key, message: &[u8]) -> String {
    hex::encode(hmac::sign(key, message).as_ref())
}

/// Whether `signature_hex` is the hex HMAC-SHA256 of `message` under `key`.
///
/// The comparison is constant-time (`ring::hmac::verify`); malformed hex is simply "no".
/// Upper-case hex is accepted, as the Pusher server SDKs never send it but some proxies
/// normalise case.
pub fn verify_hex(key: &hmac::Key, message: &[u8], signature_hex: &str) -> bool {
    let mut tag = [0u8; 32];
    if hex::decode_to_slice(signature_hex, &mut tag).is_err() {
        return false;
    }
    hmac::verify(key, message, &tag).is_ok()
}

/// An HMAC-SHA256 key for an app secret.
pub fn hmac_key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// Compares secrets in constant time (over their SHA-256 digests, so lengths do not leak).
pub fn same_secret(expected: &str, presented: &str) -> bool {
    use ring::digest::{SHA256, digest};
    let (a, b) = (
        digest(&SHA256, expected.as_bytes()),
        digest(&SHA256, presented.as_bytes()),
    );
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// What policies and the audit log read from a `user_info` the app signed (in sign-in
/// `user_data` or presence `channel_data`): `tenant_id`, `actor` and `roles`. Fields that are
/// absent or not strings are `None` (or left out of `roles`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignedClaims {
    /// `tenant_id`.
    pub tenant: Option<String>,
    /// `actor`.
    pub actor: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
}

impl SignedClaims {
    /// Reads `user_info` (JSON text); anything that is not an object gives no claims.
    pub fn parse(user_info: Option<&str>) -> Self {
        let Some(info) = user_info.and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        else {
            return Self::default();
        };
        let text = |field: &str| info.get(field).and_then(|v| v.as_str()).map(str::to_owned);
        let roles = info
            .get("roles")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            tenant: text("tenant_id"),
            actor: text("actor"),
            roles,
        }
    }
}

/// The user id in a presence `user_id` or sign-in `id`: Laravel signs numeric ids
/// (`"user_id":1`, `{"id":1}`); Pusher treats ids as strings, so both `1` and `"1"` name the
/// same user. Anything else (a fraction, an object, `null`) is no id.
pub(super) fn user_id_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()
    } else if is_integer(text) {
        Some(text.to_owned())
    } else {
        None
    }
}

/// A JSON integer as written: an optional `-`, then digits.
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}
