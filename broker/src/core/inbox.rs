//! The inbox's decisions, without its store: which published event a user's inbox keeps
//! (`[apps.inbox]`), who is asking for theirs (`GET /pending-notifications`), and what a
//! legacy `POST /broadcast-message` publishes (`[apps.legacy_broadcast]`).

use serde::Deserialize;

use crate::core::app::{App, TokenError};
use crate::core::channel::{ChannelKind, ChannelName};
use crate::core::ids::{AppIdx, UserId};
use crate::core::options::{AppConfig, InboxConfig};
use crate::core::publish::{self, PublishRefusal};
use crate::core::shard::Credentials;

/// An event a user's inbox keeps, as the shard hands it to the shell for the store (which
/// stamps its id and time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxWrite {
    /// The app whose inbox keeps it.
    pub app: AppIdx,
    /// Whose inbox: the `{id}` of the channel's pattern.
    pub user: UserId,
    /// The channel it was published on.
    pub channel: ChannelName,
    /// The event name.
    pub event: String,
    /// The data string, as subscribers received it.
    pub data: String,
}

/// The inbox write for an event published on `channel`, if `inbox` keeps it: the channel
/// matches a pattern and its id is a user id of the app.
pub fn keeps(
    app: AppIdx,
    config: &AppConfig,
    inbox: &InboxConfig,
    channel: &ChannelName,
    event: &str,
    data: &str,
) -> Option<InboxWrite> {
    let user = inbox.user_of(channel.as_str())?;
    let user = UserId::parse(user, config.max_user_id_chars).ok()?;
    Some(InboxWrite {
        app,
        user,
        channel: channel.clone(),
        event: event.to_owned(),
        data: data.to_owned(),
    })
}

/// Why a caller of `/pending-notifications` is not anyone.
#[derive(Debug, thiserror::Error)]
pub enum Unidentified {
    /// The credentials were refused (bad, expired or revoked token; the backend said no).
    #[error("{0}")]
    Refused(TokenError),
    /// Valid credentials that name no user (a token without a subject).
    #[error("the credentials name no user")]
    NoUser,
    /// No credentials at all.
    #[error(
        "credentials are required: a JWT (Authorization: Bearer or ?token=) or the app's verified headers"
    )]
    Missing,
}

/// The user the credentials of a request identify, exactly as a socket of `app` would be
/// identified by them; anonymous callers are refused even where sockets may be anonymous.
pub fn identify(
    app: &App,
    credentials: Credentials<'_>,
    now_unix: u64,
) -> Result<UserId, Unidentified> {
    let identity = match credentials {
        Credentials::Token(None) => return Err(Unidentified::Missing),
        Credentials::Token(token) => app
            .authenticate(token, now_unix)
            .map_err(Unidentified::Refused)?
            .ok_or(Unidentified::Missing)?,
        Credentials::Backend {
            verdict,
            requested_actor,
        } => app
            .backend_identity(verdict, requested_actor, now_unix)
            .map_err(Unidentified::Refused)?,
    };
    let user = identity.user_id.as_deref().ok_or(Unidentified::NoUser)?;
    UserId::parse(user, app.config.max_user_id_chars).map_err(|_| Unidentified::NoUser)
}

/// The body of `POST /broadcast-message`, as Reverb-era backends send it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyBody {
    /// A channel name, Laravel-side (`user.42`) or with its kind (`private-user.42`).
    pub channel: Option<String>,
    /// The event name.
    pub event: String,
    /// The data: a string is sent as it is, other JSON as its text.
    pub data: serde_json::Value,
    /// Users to notify on their own channel too.
    #[serde(default)]
    pub user_ids: Vec<LegacyId>,
    /// Workers to notify on their own channel too.
    #[serde(default)]
    pub worker_ids: Vec<LegacyId>,
}

/// An id of `userIds` / `workerIds`: backends send numbers or strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LegacyId {
    /// `42`.
    Number(u64),
    /// `"42"` or a UUID.
    Text(String),
}

impl LegacyId {
    fn text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

/// A `/broadcast-message` body checked against the app: the event, its data string and the
/// distinct channels it goes to, in the order the body named them.
#[derive(Debug, PartialEq, Eq)]
pub struct LegacyPublish {
    /// The event name.
    pub event: String,
    /// The data string.
    pub data: String,
    /// `channel`, then each user's and each worker's channel, without repeats.
    pub channels: Vec<ChannelName>,
}

/// Why a `/broadcast-message` body is not published.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LegacyRefusal {
    /// Neither a channel nor any id: nothing to publish to.
    #[error("give \"channel\", \"userIds\" or \"workerIds\"")]
    NoChannel,
    /// More channels than an API publish may name.
    #[error("a broadcast goes to at most {max} channels")]
    TooManyChannels {
        /// The app's `max_channels_per_publish`.
        max: usize,
    },
    /// The event, its data or a channel fails the API's checks.
    #[error(transparent)]
    Publish(#[from] PublishRefusal),
}

/// Checks a `/broadcast-message` body against `config` (whose `legacy_broadcast` is set) with
/// the same limits as an API publish.
pub fn legacy_publish(
    config: &AppConfig,
    legacy: &crate::core::options::LegacyBroadcast,
    body: &LegacyBody,
) -> Result<LegacyPublish, LegacyRefusal> {
    let data = match &body.data {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    publish::check_event(config, &body.event, &data)?;
    let mut raw = Vec::new();
    if let Some(channel) = &body.channel {
        let named = publish::channel(config, channel)?;
        raw.push(if matches!(named.kind(), ChannelKind::Public) {
            format!("{}{channel}", legacy.channel_prefix)
        } else {
            channel.clone()
        });
    }
    raw.extend(
        body.user_ids
            .iter()
            .map(|id| legacy.user_channel.channel_of(&id.text())),
    );
    raw.extend(
        body.worker_ids
            .iter()
            .map(|id| legacy.worker_channel.channel_of(&id.text())),
    );
    if raw.is_empty() {
        return Err(LegacyRefusal::NoChannel);
    }
    if raw.len() > config.max_channels_per_publish {
        return Err(LegacyRefusal::TooManyChannels {
            max: config.max_channels_per_publish,
        });
    }
    let mut channels: Vec<ChannelName> = Vec::with_capacity(raw.len());
    for name in &raw {
        let channel = publish::channel(config, name)?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    Ok(LegacyPublish {
        event: body.event.clone(),
        data,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::options::{ChannelPattern, LegacyBroadcast};

    fn body(json: &str) -> LegacyBody {
        serde_json::from_str(json).unwrap()
    }

    fn names(publish: &LegacyPublish) -> Vec<&str> {
        publish.channels.iter().map(ChannelName::as_str).collect()
    }

    #[test]
    fn a_laravel_side_channel_and_each_id_become_private_channels() {
        let config = AppConfig::default();
        let published = legacy_publish(
            &config,
            &LegacyBroadcast::default(),
            &body(r#"{"channel":"user.1","event":"notification","data":{"a":1},"userIds":["1",2],"workerIds":[3]}"#),
        )
        .unwrap();
        assert_eq!(
            names(&published),
            ["private-user.1", "private-user.2", "private-worker.3"]
        );
        assert_eq!(published.data, r#"{"a":1}"#);
    }

    #[test]
    fn a_channel_with_its_kind_is_kept_and_the_prefix_is_a_setting() {
        let config = AppConfig::default();
        let legacy = LegacyBroadcast {
            channel_prefix: String::new(),
            user_channel: ChannelPattern::parse("App.Models.User.{id}").unwrap(),
            ..LegacyBroadcast::default()
        };
        let published = legacy_publish(
            &config,
            &legacy,
            &body(r#"{"channel":"presence-room.1","event":"e","data":"x","userIds":[7]}"#),
        )
        .unwrap();
        assert_eq!(names(&published), ["presence-room.1", "App.Models.User.7"]);
        let public = legacy_publish(
            &config,
            &legacy,
            &body(r#"{"channel":"news","event":"e","data":"x"}"#),
        )
        .unwrap();
        assert_eq!(names(&public), ["news"]);
    }

    #[test]
    fn bodies_over_the_api_limits_are_refused() {
        let config = AppConfig {
            max_channels_per_publish: 2,
            max_message_bytes: 4,
            ..AppConfig::default()
        };
        let legacy = LegacyBroadcast::default();
        assert_eq!(
            legacy_publish(
                &config,
                &legacy,
                &body(r#"{"event":"e","data":"x","userIds":[1,2,3]}"#)
            ),
            Err(LegacyRefusal::TooManyChannels { max: 2 })
        );
        assert_eq!(
            legacy_publish(&config, &legacy, &body(r#"{"event":"e","data":"x"}"#)),
            Err(LegacyRefusal::NoChannel)
        );
        assert_eq!(
            legacy_publish(
                &config,
                &legacy,
                &body(r#"{"channel":"user.1","event":"e","data":"12345"}"#)
            ),
            Err(LegacyRefusal::Publish(PublishRefusal::TooLarge { max: 4 }))
        );
        assert!(matches!(
            legacy_publish(
                &config,
                &legacy,
                &body(r#"{"event":"e","data":"x","userIds":["a b"]}"#)
            ),
            Err(LegacyRefusal::Publish(PublishRefusal::Channel { .. }))
        ));
    }
}
