//! User authentication (`pusher:signin`): `HMAC(secret, socket_id "::user::" user_data)`.
//!
//! [`UserAuthenticated`] can only be built by [`verify_signin`]; a connection's signed-in user
//! (which alone may subscribe to its `#server-to-user-{id}` channel) comes from one.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{signin_message, user_id_text, verify_hex};
use crate::core::ids::{SocketId, UserId, UserIdError};

/// Most user ids in a sign-in watchlist.
pub const MAX_WATCHLIST: usize = 100;

/// Proof that a socket signed in as a user.
#[derive(Debug)]
pub struct UserAuthenticated {
    user: UserId,
    user_data: String,
    watchlist: Vec<UserId>,
}

impl UserAuthenticated {
    /// The signed-in user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The exact `user_data` text that was signed.
    pub fn user_data(&self) -> &str {
        &self.user_data
    }

    /// Users whose online status the client wants to follow.
    pub fn watchlist(&self) -> &[UserId] {
        &self.watchlist
    }

    /// Takes the proof apart.
    pub fn into_parts(self) -> (UserId, String, Vec<UserId>) {
        (self.user, self.user_data, self.watchlist)
    }
}

/// What the check needs.
pub struct SigninContext<'a> {
    /// The app's key.
    pub app_key: &'a str,
    /// The app secret.
    pub secret: &'a ring::hmac::Key,
    /// The socket signing in.
    pub socket_id: SocketId,
    /// Longest accepted user id.
    pub max_user_id_chars: usize,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigninError {
    /// `auth` is not `key:signature`.
    #[error("auth must be \"key:signature\"")]
    MalformedAuth,
    /// Signed for another app.
    #[error("auth was signed for another app key")]
    WrongKey,
    /// The signature does not match.
    #[error("invalid signature")]
    InvalidSignature,
    /// `user_data` is not an object with a string or integer `id`.
    #[error("user_data must be a JSON object with a non-empty string or integer \"id\"")]
    InvalidUserData,
    /// The id is unacceptable.
    #[error("{0}")]
    UserId(#[from] UserIdError),
    /// The watchlist is too long.
    #[error("watchlist has more than {MAX_WATCHLIST} user ids")]
    WatchlistTooLong,
}

#[derive(Deserialize)]
struct UserData<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    watchlist: Option<Vec<String>>,
}

/// Checks a `pusher:signin` request.
pub fn verify_signin(
    ctx: &SigninContext<'_>,
    auth: &str,
    user_data: &str,
) -> Result<UserAuthenticated, SigninError> {
    let (key, signature) = auth.split_once(':').ok_or(SigninError::MalformedAuth)?;
    if key != ctx.app_key {
        return Err(SigninError::WrongKey);
    }
    let message = signin_message(ctx.socket_id, user_data);
    if !verify_hex(ctx.secret, message.as_bytes(), signature) {
        return Err(SigninError::InvalidSignature);
    }
    // Parsed only once the signature holds.
    let data: UserData =
        serde_json::from_str(user_data).map_err(|_| SigninError::InvalidUserData)?;
    // A number is taken as its text, as a presence `user_id` is: Laravel's ids are integers.
    let raw_id = data.id.ok_or(SigninError::InvalidUserData)?;
    let id = user_id_text(raw_id).ok_or(SigninError::InvalidUserData)?;
    let user = UserId::parse(&id, ctx.max_user_id_chars)?;
    let raw_watchlist = data.watchlist.unwrap_or_default();
    if raw_watchlist.len() > MAX_WATCHLIST {
        return Err(SigninError::WatchlistTooLong);
    }
    let watchlist = raw_watchlist
        .iter()
        .map(|id| UserId::parse(id, ctx.max_user_id_chars))
        .collect::<Result<_, _>>()?;
    Ok(UserAuthenticated {
        user,
        user_data: with_string_id(user_data, raw_id),
        watchlist,
    })
}

/// `user_data` with its `id` (`raw_id`, a slice of it) written as a JSON string: pusher-js
/// drops a sign-in whose `pusher:signin_success` carries a numeric id, so `{"id":1}` goes back
/// as `{"id":"1"}`. Everything else is kept byte for byte.
fn with_string_id(user_data: &str, raw_id: &RawValue) -> String {
    let id = raw_id.get();
    // Where the id lies in `user_data`: an offset out of it (wrapped, or past its end) makes
    // `get` answer `None`, so nothing is spliced.
    let start = (id.as_ptr() as usize).wrapping_sub(user_data.as_ptr() as usize);
    let end = start.saturating_add(id.len());
    if id.starts_with('"') || user_data.get(start..end) != Some(id) {
        return user_data.to_owned();
    }
    format!("{}\"{id}\"{}", &user_data[..start], &user_data[end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::{hmac_key, sign_signin};

    fn ctx(secret: &ring::hmac::Key) -> SigninContext<'_> {
        SigninContext {
            app_key: "key",
            secret,
            socket_id: SocketId::new(1234, 1234),
            max_user_id_chars: 128,
        }
    }

    fn sign(secret: &ring::hmac::Key, user_data: &str) -> String {
        sign_signin("key", secret, "1234.1234", user_data)
    }

    #[test]
    fn accepts_a_signed_user_with_info_and_watchlist() {
        let secret = hmac_key("secret");
        let data = r#"{"id":"42","user_info":{"name":"A"},"watchlist":["1","2"]}"#;
        let proof = verify_signin(&ctx(&secret), &sign(&secret, data), data).unwrap();
        assert_eq!(proof.user().as_str(), "42");
        assert_eq!(proof.user_data(), data);
        assert_eq!(proof.watchlist().len(), 2);
    }

    #[test]
    fn signature_covers_the_exact_user_data() {
        let secret = hmac_key("secret");
        let auth = sign(&secret, r#"{"id":"42"}"#);
        let err = verify_signin(&ctx(&secret), &auth, r#"{"id":"43"}"#).unwrap_err();
        assert_eq!(err, SigninError::InvalidSignature);
        assert_eq!(
            verify_signin(&ctx(&secret), "other:00", r#"{"id":"42"}"#).unwrap_err(),
            SigninError::WrongKey
        );
        assert_eq!(
            verify_signin(&ctx(&secret), "nocolon", "{}").unwrap_err(),
            SigninError::MalformedAuth
        );
    }

    #[test]
    fn user_data_needs_a_string_or_integer_id() {
        let secret = hmac_key("secret");
        for (data, id) in [(r#"{"id":42}"#, "42"), (r#"{"id":"42"}"#, "42")] {
            let signed = verify_signin(&ctx(&secret), &sign(&secret, data), data).unwrap();
            assert_eq!(signed.user.as_str(), id, "{data}");
            assert_eq!(signed.user_data, r#"{"id":"42"}"#, "{data}");
        }
        for data in [
            r#"{"id":4.2}"#,
            r#"{"id":null}"#,
            r#"{"name":"x"}"#,
            r#"{"id":""}"#,
            "[]",
            "nope",
        ] {
            assert!(
                verify_signin(&ctx(&secret), &sign(&secret, data), data).is_err(),
                "{data}"
            );
        }
    }

    #[test]
    fn a_numeric_id_goes_back_as_a_string_and_the_rest_as_sent() {
        let secret = hmac_key("secret");
        let data = r#"{ "user_info": {"id": 7}, "id" : -12 ,"watchlist":["1"]}"#;
        let signed = verify_signin(&ctx(&secret), &sign(&secret, data), data).unwrap();
        assert_eq!(signed.user.as_str(), "-12");
        assert_eq!(
            signed.user_data,
            r#"{ "user_info": {"id": 7}, "id" : "-12" ,"watchlist":["1"]}"#
        );
    }

    #[test]
    fn watchlist_limit_is_inclusive() {
        let secret = hmac_key("secret");
        for (n, ok) in [(100, true), (101, false)] {
            let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let data = serde_json::json!({"id": "u", "watchlist": ids}).to_string();
            let result = verify_signin(&ctx(&secret), &sign(&secret, &data), &data);
            assert_eq!(result.is_ok(), ok, "{n}");
            if !ok {
                assert_eq!(result.unwrap_err(), SigninError::WatchlistTooLong);
            }
        }
    }
}
