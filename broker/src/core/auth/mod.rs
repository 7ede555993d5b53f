//! Signatures: HMAC-SHA256 with `ring`, always compared in constant time.

pub mod api;
pub mod channel;
pub mod jwt;
pub mod user;

use ring::hmac;

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
