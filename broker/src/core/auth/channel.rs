//! Channel subscription authorization: HMAC signatures and the proof the registry demands.
//!
//! [`ChannelAuthorized`] can only be built by [`authorize_subscription`] (a signature) and
//! [`authorize_by_endpoint`] (the app's auth endpoint admitted it), and subscribing needs
//! one, so no code path can add a subscriber without a check having run.

use std::sync::Arc;

use ring::hmac;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::endpoint::{self, EndpointAnswer, EndpointRefusal};
use super::{channel_auth_message, user_id_text, verify_hex};
use crate::core::channel::{ChannelKind, ChannelName};
use crate::core::ids::{SocketId, UserId, UserIdError};

/// A presence member as signed by the app backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceMember {
    /// The member's user id.
    pub user_id: UserId,
    /// `user_info` as raw JSON text, if any.
    pub user_info: Option<Arc<str>>,
}

/// Proof that a socket may subscribe to a channel. Only this module can construct it.
#[derive(Debug)]
pub struct ChannelAuthorized {
    channel: ChannelName,
    member: Option<PresenceMember>,
}

impl ChannelAuthorized {
    /// The authorized channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// For presence channels, the member the socket joins as.
    pub fn member(&self) -> Option<&PresenceMember> {
        self.member.as_ref()
    }

    /// Takes the proof apart once it has been used.
    pub fn into_parts(self) -> (ChannelName, Option<PresenceMember>) {
        (self.channel, self.member)
    }
}

/// What the check needs to know about the app and the socket.
pub struct AuthContext<'a> {
    /// The app's public key (the part before `:` in `auth`).
    pub app_key: &'a str,
    /// The app secret as an HMAC key.
    pub secret: &'a hmac::Key,
    /// The subscribing socket.
    pub socket_id: SocketId,
    /// Longest accepted presence user id, in characters.
    pub max_user_id_chars: usize,
    /// Largest accepted `user_info`, in bytes of JSON text.
    pub max_user_info_bytes: usize,
    /// The user this socket signed in as (`pusher:signin`), if any.
    pub signed_in_user: Option<&'a UserId>,
}

/// Why a subscription was refused. Reported as `pusher:subscription_error`; the connection
/// stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeAuthError {
    /// A signed channel without `auth`.
    #[error("auth is required for {0} channels")]
    MissingAuth(&'static str),
    /// `auth` is not `key:signature`.
    #[error("auth must be \"key:signature\"")]
    MalformedAuth,
    /// `auth` was signed for another app key.
    #[error("auth was signed for another app key")]
    WrongKey,
    /// The signature does not match.
    #[error("invalid signature")]
    InvalidSignature,
    /// A presence channel without `channel_data`.
    #[error("channel_data is required for presence channels")]
    MissingChannelData,
    /// `channel_data` is not an object with a `user_id` string or number.
    #[error("channel_data must be a JSON object with a user_id")]
    InvalidChannelData,
    /// The user id is not acceptable.
    #[error("{0}")]
    UserId(#[from] UserIdError),
    /// `user_info` is over the app's limit.
    #[error("user_info is larger than {max_bytes} bytes")]
    UserInfoTooLarge {
        /// The configured limit.
        max_bytes: usize,
    },
    /// A `#server-to-user-` channel of another user, or before `pusher:signin`.
    #[error("only the signed-in user {0:?} may subscribe")]
    NotThatUser(String),
}

impl SubscribeAuthError {
    /// The `status` reported in `pusher:subscription_error`.
    pub fn status(&self) -> u16 {
        match self {
            SubscribeAuthError::NotThatUser(_) => 403,
            SubscribeAuthError::InvalidChannelData
            | SubscribeAuthError::UserId(_)
            | SubscribeAuthError::UserInfoTooLarge { .. } => 400,
            _ => 401,
        }
    }
}

/// Checks a `pusher:subscribe` request and returns the proof the registry needs.
///
/// Private and encrypted channels are signed over `socket_id:channel`; presence channels over
/// `socket_id:channel:channel_data`, using the exact `channel_data` text sent.
pub fn authorize_subscription(
    ctx: &AuthContext<'_>,
    channel: ChannelName,
    auth: Option<&str>,
    channel_data: Option<&str>,
) -> Result<ChannelAuthorized, SubscribeAuthError> {
    let kind = channel.kind();
    if kind == ChannelKind::ServerToUser {
        let owner = channel.server_to_user_id().unwrap_or_default();
        return match ctx.signed_in_user {
            Some(user) if user.as_str() == owner => Ok(ChannelAuthorized {
                channel,
                member: None,
            }),
            _ => Err(SubscribeAuthError::NotThatUser(owner.to_owned())),
        };
    }
    if !kind.requires_signature() {
        return Ok(ChannelAuthorized {
            channel,
            member: None,
        });
    }
    let kind_name = if kind.is_presence() {
        "presence"
    } else {
        "private"
    };
    let auth = auth.ok_or(SubscribeAuthError::MissingAuth(kind_name))?;
    let (key, signature) = auth
        .split_once(':')
        .ok_or(SubscribeAuthError::MalformedAuth)?;
    if key != ctx.app_key {
        return Err(SubscribeAuthError::WrongKey);
    }
    if !kind.is_presence() {
        let message = channel_auth_message(ctx.socket_id, channel.as_str(), None);
        return if verify_hex(ctx.secret, message.as_bytes(), signature) {
            Ok(ChannelAuthorized {
                channel,
                member: None,
            })
        } else {
            Err(SubscribeAuthError::InvalidSignature)
        };
    }
    let channel_data = channel_data.ok_or(SubscribeAuthError::MissingChannelData)?;
    let message = channel_auth_message(ctx.socket_id, channel.as_str(), Some(channel_data));
    if !verify_hex(ctx.secret, message.as_bytes(), signature) {
        return Err(SubscribeAuthError::InvalidSignature);
    }
    // Parsed only after the signature holds: unsigned input never reaches the JSON parser.
    let member = parse_channel_data(ctx, channel_data)?;
    Ok(ChannelAuthorized {
        channel,
        member: Some(member),
    })
}

/// Checks what the app's auth endpoint answered for a subscription to a private or presence
/// channel (see [`super::endpoint`]) and returns the proof the registry needs.
pub fn authorize_by_endpoint(
    ctx: &AuthContext<'_>,
    channel: ChannelName,
    answer: &EndpointAnswer,
) -> Result<ChannelAuthorized, EndpointRefusal> {
    let body = answer.admitted()?;
    if !channel.kind().is_presence() {
        return Ok(ChannelAuthorized {
            channel,
            member: None,
        });
    }
    let data = endpoint::channel_data(body)?;
    let member = parse_channel_data(ctx, &data).map_err(EndpointRefusal::Member)?;
    Ok(ChannelAuthorized {
        channel,
        member: Some(member),
    })
}

#[derive(Deserialize)]
struct ChannelData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

fn parse_channel_data(
    ctx: &AuthContext<'_>,
    text: &str,
) -> Result<PresenceMember, SubscribeAuthError> {
    let data: ChannelData =
        serde_json::from_str(text).map_err(|_| SubscribeAuthError::InvalidChannelData)?;
    let user_id = user_id_text(data.user_id).ok_or(SubscribeAuthError::InvalidChannelData)?;
    let user_id = UserId::parse(&user_id, ctx.max_user_id_chars)?;
    let user_info = match data.user_info {
        Some(raw) if raw.get() != "null" => {
            if raw.get().len() > ctx.max_user_info_bytes {
                return Err(SubscribeAuthError::UserInfoTooLarge {
                    max_bytes: ctx.max_user_info_bytes,
                });
            }
            Some(Arc::from(raw.get()))
        }
        _ => None,
    };
    Ok(PresenceMember { user_id, user_info })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::{hmac_key, sign_channel};

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    fn ctx<'a>(secret: &'a hmac::Key, signed_in: Option<&'a UserId>) -> AuthContext<'a> {
        AuthContext {
            app_key: KEY,
            secret,
            socket_id: SocketId::parse("1234.1234").unwrap(),
            max_user_id_chars: 128,
            max_user_info_bytes: 1024,
            signed_in_user: signed_in,
        }
    }

    fn name(raw: &str) -> ChannelName {
        ChannelName::parse(raw, 200).unwrap()
    }

    fn presence_auth(secret: &hmac::Key, channel: &str, data: &str) -> String {
        sign_channel(KEY, secret, "1234.1234", channel, Some(data))
    }

    #[test]
    fn private_channel_accepts_the_protocol_test_vector() {
        let secret = hmac_key(SECRET);
        let auth =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        let proof = authorize_subscription(
            &ctx(&secret, None),
            name("private-foobar"),
            Some(auth),
            None,
        )
        .unwrap();
        assert_eq!(proof.channel().as_str(), "private-foobar");
        assert!(proof.member().is_none());
    }

    #[test]
    fn private_signature_is_bound_to_the_channel_and_socket() {
        let secret = hmac_key(SECRET);
        let auth =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        let other = authorize_subscription(
            &ctx(&secret, None),
            name("private-foobaz"),
            Some(auth),
            None,
        );
        assert_eq!(other.unwrap_err(), SubscribeAuthError::InvalidSignature);
        let mut other_socket = ctx(&secret, None);
        other_socket.socket_id = SocketId::new(1234, 1235);
        let err = authorize_subscription(&other_socket, name("private-foobar"), Some(auth), None);
        assert_eq!(err.unwrap_err(), SubscribeAuthError::InvalidSignature);
    }

    #[test]
    fn signed_channels_need_well_formed_auth_for_this_key() {
        let secret = hmac_key(SECRET);
        let c = ctx(&secret, None);
        for (auth, expected) in [
            (None, SubscribeAuthError::MissingAuth("private")),
            (Some("no-colon"), SubscribeAuthError::MalformedAuth),
            (Some("otherkey:abcd"), SubscribeAuthError::WrongKey),
            (
                Some("278d425bdf160c739803:zz"),
                SubscribeAuthError::InvalidSignature,
            ),
        ] {
            let err = authorize_subscription(&c, name("private-encrypted-x"), auth, None);
            assert_eq!(err.unwrap_err(), expected);
        }
    }

    #[test]
    fn public_and_cache_channels_need_no_signature() {
        let secret = hmac_key(SECRET);
        for raw in ["public", "cache-x", "privateer"] {
            assert!(authorize_subscription(&ctx(&secret, None), name(raw), None, None).is_ok());
        }
    }

    #[test]
    fn presence_signature_covers_the_exact_channel_data_text() {
        let secret = hmac_key(SECRET);
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = presence_auth(&secret, "presence-foobar", data);
        let proof = authorize_subscription(
            &ctx(&secret, None),
            name("presence-foobar"),
            Some(&auth),
            Some(data),
        )
        .unwrap();
        let member = proof.member().unwrap();
        assert_eq!(member.user_id.as_str(), "10");
        assert_eq!(
            member.user_info.as_deref(),
            Some(r#"{"name":"Mr. Channels"}"#)
        );

        let respaced = r#"{"user_id":10, "user_info":{"name":"Mr. Channels"}}"#;
        let err = authorize_subscription(
            &ctx(&secret, None),
            name("presence-foobar"),
            Some(&auth),
            Some(respaced),
        );
        assert_eq!(err.unwrap_err(), SubscribeAuthError::InvalidSignature);
    }

    #[test]
    fn presence_user_info_limit_is_inclusive() {
        let secret = hmac_key(SECRET);
        // `"` + payload + `"` is the raw JSON text measured against the limit.
        for (len, ok) in [(1022, true), (1023, false)] {
            let data = format!(r#"{{"user_id":"u","user_info":"{}"}}"#, "x".repeat(len));
            let auth = presence_auth(&secret, "presence-a", &data);
            let result = authorize_subscription(
                &ctx(&secret, None),
                name("presence-a"),
                Some(&auth),
                Some(&data),
            );
            assert_eq!(result.is_ok(), ok, "len {len}: {result:?}");
        }
    }

    #[test]
    fn presence_refuses_missing_or_malformed_channel_data() {
        let secret = hmac_key(SECRET);
        let auth = presence_auth(&secret, "presence-a", "x");
        let err =
            authorize_subscription(&ctx(&secret, None), name("presence-a"), Some(&auth), None);
        assert_eq!(err.unwrap_err(), SubscribeAuthError::MissingChannelData);
        for data in [
            r#"{"user_info":{}}"#,
            r#"{"user_id":{}}"#,
            r#"{"user_id":1.5}"#,
            "[]",
            r#"{"user_id":""}"#,
        ] {
            let auth = presence_auth(&secret, "presence-a", data);
            let err = authorize_subscription(
                &ctx(&secret, None),
                name("presence-a"),
                Some(&auth),
                Some(data),
            );
            assert!(err.is_err(), "{data}");
            assert_eq!(err.unwrap_err().status(), 400, "{data}");
        }
    }

    #[test]
    fn server_to_user_channel_is_only_for_that_signed_in_user() {
        let secret = hmac_key(SECRET);
        let alice = UserId::parse("alice", 128).unwrap();
        let channel = "#server-to-user-alice";
        assert!(
            authorize_subscription(&ctx(&secret, Some(&alice)), name(channel), None, None).is_ok()
        );
        let bob = UserId::parse("bob", 128).unwrap();
        let err = authorize_subscription(&ctx(&secret, Some(&bob)), name(channel), None, None);
        assert_eq!(err.unwrap_err().status(), 403);
        assert!(authorize_subscription(&ctx(&secret, None), name(channel), None, None).is_err());
    }
}
