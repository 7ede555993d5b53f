//! The seam between the channel model and a wire protocol.
//!
//! The shard speaks in connections, subscriptions, identities and deliveries; what a client
//! actually sends and reads is decided here, once per protocol:
//!
//! - **In:** a wire parses a client's text into a [`Command`] (`pusher:subscribe` becomes
//!   [`Command::Subscribe`]), or says which [`Fault`] it is.
//! - **Out to one socket:** a [`Reply`] (subscription confirmed, refused, signed in, an
//!   error...) is encoded for the socket's own [`Wire`] as one complete WebSocket frame.
//! - **Out to every subscriber:** an [`Event`] is encoded once per wire into [`Frames`], and
//!   every subscriber's queue holds a clone of its wire's buffer: encode once per protocol,
//!   never per subscriber.
//!
//! Adding a protocol is a new [`Wire`] variant, its module beside [`pusher`] and
//! [`socketio`], and a [`Frames`] field.

pub mod fault;
pub mod pusher;
pub mod socketio;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

pub use self::fault::Fault;
use crate::core::app::{App, AppTable};
use crate::core::auth::channel::SubscribeAuthError;
use crate::core::auth::endpoint::EndpointRefusal;
use crate::core::channel::{ChannelName, ChannelNameError};
use crate::core::ids::{SocketId, UserId};
use crate::core::receipts::MessageId;

/// The wire protocol a connection speaks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Wire {
    /// Pusher Channels protocol 7, and 4 to 6 served alike (pusher-js, laravel-echo's `pusher`
    /// and `reverb` broadcasters, the Flutter and Python Pusher clients).
    Pusher,
    /// Socket.IO 5 over Engine.IO 4, with laravel-echo-server's channel events (laravel-echo's
    /// `socket.io` broadcaster, socket.io-client, Flutter's `socket_io_client`).
    SocketIo,
}

impl Wire {
    /// Parses one text message from a client.
    pub fn parse(self, text: &[u8]) -> Result<Command<'_>, ParseError> {
        match self {
            Wire::Pusher => pusher::message::parse(text),
            Wire::SocketIo => socketio::messages::parse(text),
        }
    }

    /// One reply for one socket, as a complete WebSocket frame.
    pub fn encode(self, reply: &Reply<'_>) -> Bytes {
        match self {
            Wire::Pusher => pusher::encode_reply(reply),
            Wire::SocketIo => socketio::frames::encode_reply(reply),
        }
    }

    /// The app a connection's URL names, once the wire's own checks on the URL have passed
    /// (Pusher: the path `/app/{key}` and `protocol` 4 to 7; Socket.IO: an app's
    /// `[apps.socketio] path`, the Engine.IO version having been checked by the transport).
    pub fn app<'t>(
        self,
        apps: &'t AppTable,
        path: &str,
        protocol: Option<&str>,
    ) -> Result<&'t App, Fault> {
        match self {
            Wire::Pusher => {
                let key = pusher::app_key(path).ok_or(Fault::PathNotFound)?;
                pusher::check_version(protocol)?;
                apps.by_key(key).ok_or(Fault::AppNotFound)
            }
            Wire::SocketIo => apps.by_socketio_path(path).ok_or(Fault::PathNotFound),
        }
    }

    /// The app of a connection path, for counting attempts before the upgrade; `None` when
    /// the path names no app.
    pub fn app_of_path<'t>(self, apps: &'t AppTable, path: &str) -> Option<&'t App> {
        match self {
            Wire::Pusher => pusher::app_key(path).and_then(|key| apps.by_key(key)),
            Wire::SocketIo => apps.by_socketio_path(path),
        }
    }

    /// The WebSocket close code and reason that end a connection for `fault`. Socket.IO
    /// clients do not read close codes; they get Pusher's numbers, which say what happened
    /// to anyone watching the traffic.
    pub fn close_for(self, fault: Fault) -> (u16, &'static str) {
        (pusher::codes::code(fault), pusher::codes::message(fault))
    }
}

/// A client's message, as the shard acts on it.
#[derive(Debug)]
pub enum Command<'a> {
    /// The client checks the connection is alive.
    Ping,
    /// The answer to the server's ping.
    Pong,
    /// Join a channel.
    Subscribe(SubscribeRequest<'a>),
    /// Leave a channel.
    Unsubscribe {
        /// The channel's name as sent (it is compared with subscribed names, not parsed).
        channel: Cow<'a, str>,
    },
    /// Authenticate the connection as a user (Pusher user authentication).
    Signin {
        /// `key:signature`.
        auth: Cow<'a, str>,
        /// The signed JSON text describing the user.
        user_data: Cow<'a, str>,
    },
    /// An event from a client to relay to the channel's other subscribers.
    ClientEvent {
        /// The event name (`client-...`).
        event: Cow<'a, str>,
        /// The channel it is sent on, as sent.
        channel: Cow<'a, str>,
        /// The payload, relayed as sent.
        data: Cow<'a, RawValue>,
    },
    /// Replace the connection's token with a newer one for the same subject.
    Renew {
        /// The new token, as sent.
        token: Cow<'a, str>,
    },
    /// A client read a message with delivery receipts (`ringcast:read`).
    Read {
        /// The channel's name as sent.
        channel: String,
        /// The message's `id` as sent (a number as its text).
        id: String,
    },
    /// Socket.IO `typing:get`: which members of a channel are typing, answered to the
    /// client's acknowledgement callback.
    TypingGet {
        /// The channel's name as sent.
        channel: Cow<'a, str>,
        /// The acknowledgement id the answer goes to; `None`: the client asked for no
        /// answer, so there is nothing to do.
        ack: Option<u64>,
    },
    /// An event the protocol reserves but the broker does not serve.
    Unsupported {
        /// The event name as sent.
        event: Cow<'a, str>,
    },
    /// The client ends the connection (Socket.IO: a `DISCONNECT`, or Engine.IO `close`).
    Quit,
    /// A Socket.IO `CONNECT` to a namespace other than `/`, the only one served.
    OtherNamespace {
        /// The namespace as sent.
        namespace: Cow<'a, str>,
    },
    /// Nothing to do: what the reference server ignores (Socket.IO events it has no handler
    /// for, acknowledgements, Engine.IO `noop`).
    Ignored,
}

/// What a client sends to join a channel.
#[derive(Debug, Deserialize)]
pub struct SubscribeRequest<'a> {
    /// The channel to join, as sent (parsed by the shard against the app's limits).
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// `key:signature` for signed channels.
    #[serde(borrow, default)]
    pub auth: Option<Cow<'a, str>>,
    /// For presence channels: the exact JSON text that was signed.
    #[serde(borrow, default)]
    pub channel_data: Option<Cow<'a, str>>,
    /// Socket.IO (laravel-echo-server): the client's `auth.headers`, for the app's auth
    /// endpoint to decide on a channel `auth` does not sign. Pusher clients send none.
    #[serde(skip)]
    pub forward: Option<ForwardHeaders>,
}

/// Request headers a Socket.IO client asks to be forwarded to the app's auth endpoint
/// (Echo's `auth.headers`: `Authorization`, `X-CSRF-TOKEN`, ...), as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardHeaders(pub Vec<(String, String)>);

/// Why a client message could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A binary message, on a wire whose messages are text.
    #[error("binary frames are not accepted; send JSON text")]
    Binary,
    /// A text message that is not UTF-8 (a decoder that got past the WebSocket layer's
    /// own check).
    #[error("message is not UTF-8")]
    NotUtf8,
    /// Not an Engine.IO packet a client may send.
    #[error("parse error: {0}")]
    Engine(#[from] socketio::engine::EngineError),
    /// Not a Socket.IO packet a client may send.
    #[error("parse error: {0}")]
    Packet(#[from] socketio::packet::PacketError),
    /// Not a JSON object with a string `event`.
    #[error("message is not a JSON object with a string \"event\"")]
    NotAnEvent,
    /// A required field is missing or has the wrong type.
    #[error("\"{event}\" needs {field}")]
    BadField {
        /// The event being parsed.
        event: &'static str,
        /// What was expected.
        field: &'static str,
    },
}

impl ParseError {
    /// The fault reported for it (the connection stays open).
    pub fn fault(&self) -> Fault {
        Fault::InvalidMessage
    }

    /// Whether the connection is closed for it rather than answered: a packet the wire
    /// cannot frame (the Socket.IO reference server closes on a "parse error"), where a
    /// well-formed message with a bad field is answered.
    pub fn closes(&self) -> bool {
        matches!(self, ParseError::Engine(_) | ParseError::Packet(_))
    }
}

/// Why a subscription is refused; the client is told on the channel and the connection
/// stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The signature (or the presence `channel_data`) does not hold.
    Signature(SubscribeAuthError),
    /// A policy denies it, although the signature holds.
    Policy {
        /// The rule that decided.
        rule: String,
        /// Why, in the rule's words.
        reason: String,
    },
    /// The connection already holds its most subscriptions.
    TooManySubscriptions {
        /// The limit.
        max: usize,
    },
    /// The presence channel already has its most members.
    PresenceFull {
        /// The limit.
        max: usize,
    },
    /// The name is empty, too long or has a character channel names may not have.
    InvalidName(ChannelNameError),
    /// The app's auth endpoint did not admit it (Socket.IO clients).
    Endpoint(EndpointRefusal),
}

/// What kind of refusal a [`Refusal`] is: the `type` of `pusher:subscription_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// Not allowed: signature, `channel_data`, policy (401, 403; 400 for a malformed
    /// `channel_data`).
    Auth,
    /// A limit: too many subscriptions (429), a full presence channel (403), `user_info`
    /// over its size (413).
    Limit,
    /// The channel name itself (400).
    InvalidChannel,
}

impl RefusalKind {
    /// Its name on the wire (the `type` of Pusher's `pusher:subscription_error`).
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Auth => "AuthError",
            RefusalKind::Limit => "LimitReached",
            RefusalKind::InvalidChannel => "InvalidChannel",
        }
    }
}

impl Refusal {
    /// The HTTP-style status that says whose fault it is (401/403 not allowed, 4xx a limit,
    /// 400 a malformed request).
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Signature(SubscribeAuthError::UserInfoTooLarge { .. }) => 413,
            Refusal::Signature(err) => err.status(),
            Refusal::Endpoint(err) => err.status(),
            Refusal::Policy { .. } | Refusal::PresenceFull { .. } => 403,
            Refusal::TooManySubscriptions { .. } => 429,
            Refusal::InvalidName(_) => 400,
        }
    }

    /// Which kind of refusal it is.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Signature(SubscribeAuthError::UserInfoTooLarge { .. })
            | Refusal::TooManySubscriptions { .. }
            | Refusal::PresenceFull { .. } => RefusalKind::Limit,
            Refusal::Signature(_) | Refusal::Policy { .. } | Refusal::Endpoint(_) => {
                RefusalKind::Auth
            }
            Refusal::InvalidName(_) => RefusalKind::InvalidChannel,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Signature(err) => err.fmt(f),
            Refusal::Policy { rule, reason } => write!(f, "denied by policy {rule:?}: {reason}"),
            Refusal::TooManySubscriptions { max } => {
                write!(f, "a connection may hold at most {max} subscriptions")
            }
            Refusal::PresenceFull { max } => write!(f, "presence channel is full ({max} members)"),
            Refusal::InvalidName(err) => err.fmt(f),
            Refusal::Endpoint(err) => err.fmt(f),
        }
    }
}

/// A presence channel's members as a reply lists them: user ids with their `user_info`.
pub type Members<'a> = [(&'a UserId, Option<&'a str>)];

/// What the broker tells one socket.
#[derive(Debug)]
pub enum Reply<'a> {
    /// The connection is open, with the id the socket is known by.
    Established {
        /// The socket's id.
        socket_id: SocketId,
        /// How long the client may stay quiet before the server pings it.
        activity_timeout: Duration,
        /// Socket.IO connection state recovery: the private session id to reconnect with.
        pid: Option<&'a str>,
    },
    /// The connection is refused before it opened (Socket.IO: `CONNECT_ERROR`; Pusher: the
    /// same `pusher:error` as [`Reply::Error`]); the close follows.
    Refused {
        /// Why.
        fault: Fault,
        /// Details for the client; `None` for the wire's default text.
        text: Option<&'a str>,
    },
    /// A Socket.IO `CONNECT` to a namespace that is not served.
    NamespaceRefused {
        /// The namespace as sent.
        namespace: &'a str,
    },
    /// Something the client did (or the server decided) went wrong; a fault that closes the
    /// connection is followed by the close.
    Error {
        /// What went wrong.
        fault: Fault,
        /// Details for the client; `None` for the wire's default text.
        text: Option<&'a str>,
    },
    /// The answer to a Socket.IO event the client sent with an acknowledgement id: its
    /// callback gets `payload`. Pusher has no acknowledgements (its clients never ask).
    Ack {
        /// The client's acknowledgement id.
        id: u64,
        /// The JSON text the callback gets as its argument.
        payload: &'a str,
    },
    /// The server checks a quiet connection is alive.
    Ping,
    /// The answer to a client's ping.
    Pong,
    /// A subscription is confirmed.
    Subscribed {
        /// The channel.
        channel: &'a ChannelName,
        /// Presence channels: everyone present, the new member included.
        members: Option<&'a Members<'a>>,
    },
    /// A subscription is refused.
    SubscriptionRefused {
        /// The channel, as the client named it.
        channel: &'a str,
        /// Why.
        refusal: &'a Refusal,
    },
    /// A live subscription is no longer allowed (its resource changed, its token was renewed
    /// with other claims): the socket has been taken out of the channel.
    SubscriptionRevoked {
        /// The channel.
        channel: &'a ChannelName,
        /// The rule that now refuses it.
        rule: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// The connection's token was renewed.
    Renewed {
        /// The new token's `exp`, in seconds since the Unix epoch.
        expires_at: u64,
    },
    /// A renewal was refused; the connection keeps its current token.
    RenewFailed {
        /// Why.
        reason: &'a str,
    },
    /// A cache channel has no (unexpired) event to replay.
    CacheMiss {
        /// The channel.
        channel: &'a ChannelName,
    },
    /// The sign-in succeeded.
    SignedIn {
        /// The signed user data, echoed.
        user_data: &'a str,
    },
    /// Watched users came online or went offline.
    Watchlist {
        /// Online (true) or offline.
        online: bool,
        /// The users.
        users: &'a [UserId],
    },
}

/// An event for every subscriber of a channel.
#[derive(Debug)]
pub enum Event<'a> {
    /// An event published by the app's backend; its data is a string.
    Channel {
        /// The event name.
        event: &'a str,
        /// The channel.
        channel: &'a ChannelName,
        /// The data string.
        data: &'a str,
    },
    /// An event sent by a client, relayed with its data as sent.
    Client {
        /// The event name.
        event: &'a str,
        /// The channel.
        channel: &'a ChannelName,
        /// The data, any JSON value.
        data: &'a RawValue,
        /// Presence channels: the sender.
        user: Option<&'a UserId>,
    },
    /// A user joined a presence channel.
    MemberAdded {
        /// The channel.
        channel: &'a ChannelName,
        /// The user.
        user: &'a UserId,
        /// Their `user_info` JSON text.
        info: Option<&'a str>,
    },
    /// A user left a presence channel.
    MemberRemoved {
        /// The channel.
        channel: &'a ChannelName,
        /// The user.
        user: &'a UserId,
        /// Their `user_info` JSON text, when the home still knows it (Socket.IO's
        /// `presence:leaving` carries it; Pusher's `member_removed` does not).
        info: Option<&'a str>,
    },
    /// A channel's subscriber count changed (apps that opt in).
    SubscriptionCount {
        /// The channel.
        channel: &'a ChannelName,
        /// Subscribers on every shard (and node).
        count: usize,
    },
}

/// The wires an app's connections may speak: its events are encoded for these only, so an
/// app without Socket.IO pays for no Socket.IO frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wires {
    socketio: bool,
}

impl Wires {
    /// Pusher only (also what travels between nodes).
    pub const PUSHER: Wires = Wires { socketio: false };
    /// Every wire.
    pub const ALL: Wires = Wires { socketio: true };

    /// The wires of an app with these options (`[apps.socketio]` adds Socket.IO).
    pub fn of(config: &crate::core::options::AppConfig) -> Self {
        Wires {
            socketio: config.socketio.is_some(),
        }
    }
}

/// One event encoded for every wire: each subscriber gets a clone of its wire's buffer.
///
/// Cloning is a reference-count increment per wire; the bytes are shared by every shard and
/// every subscriber. A wire the app does not speak has no frame (an empty buffer), and no
/// connection of the app asks for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frames {
    pusher: Bytes,
    socketio: Bytes,
    /// `[apps.receipts]`: the message whose deliveries are recorded; `None` (every event of
    /// a channel without receipts) costs the fan-out nothing.
    receipt: Option<MessageId>,
}

impl Frames {
    /// `event`, encoded once for each of `wires`.
    pub fn encode(event: &Event<'_>, wires: Wires) -> Self {
        let socketio = match wires.socketio {
            true => socketio::frames::encode_event(event),
            false => Bytes::new(),
        };
        Self {
            pusher: pusher::encode_event(event),
            socketio,
            receipt: None,
        }
    }

    /// Frames as they travel between nodes, which exchange the Pusher frame: the other
    /// wires' frames are made from it, once per node.
    pub fn from_pusher(frame: Bytes, wires: Wires) -> Self {
        Self::from_pusher_notice(frame, None, wires)
    }

    /// [`Frames::from_pusher`] for a presence notice, whose `member_removed` member's
    /// `user_info` travels beside the Pusher frame (the Socket.IO frame carries it).
    pub fn from_pusher_notice(frame: Bytes, member_info: Option<&str>, wires: Wires) -> Self {
        let socketio = match wires.socketio {
            true => {
                socketio::frames::from_pusher_frame_with(&frame, member_info).unwrap_or_default()
            }
            false => Bytes::new(),
        };
        Self {
            pusher: frame,
            socketio,
            receipt: None,
        }
    }

    /// The frame for subscribers speaking `wire`.
    pub fn get(&self, wire: Wire) -> &Bytes {
        match wire {
            Wire::Pusher => &self.pusher,
            Wire::SocketIo => &self.socketio,
        }
    }

    /// The Pusher frame (what travels between nodes).
    pub fn pusher(&self) -> &Bytes {
        &self.pusher
    }

    /// The same event with its history `id` as an extra top-level `"id"` field of the Pusher
    /// frame (pusher-js and the other Pusher clients ignore fields they do not know);
    /// unchanged if the frame is no JSON object.
    pub fn with_pusher_id(self, id: u64) -> Self {
        let Some(open) = socketio::frames::text_payload(&self.pusher)
            .and_then(|payload| payload.strip_suffix(b"}"))
        else {
            return self;
        };
        let mut text = Vec::with_capacity(open.len() + 24);
        text.extend_from_slice(open);
        text.extend_from_slice(format!(",\"id\":{id}}}").as_bytes());
        Self {
            pusher: crate::core::ws::frame::encode_frame(
                crate::core::ws::frame::Opcode::Text,
                &text,
            ),
            ..self
        }
    }

    /// The same frames, with their deliveries recorded as receipts of message `id`.
    pub fn with_receipt(self, id: MessageId) -> Self {
        Self {
            receipt: Some(id),
            ..self
        }
    }

    /// The same event with `offset` as the Socket.IO frame's last argument (Socket.IO's
    /// connection state recovery); unchanged where the app has no Socket.IO frame.
    pub fn with_socketio_offset(self, offset: &str) -> Self {
        match socketio::frames::with_offset(&self.socketio, offset) {
            Some(socketio) => Self { socketio, ..self },
            None => self,
        }
    }

    /// The message whose deliveries are recorded, if any.
    pub fn receipt(&self) -> Option<&MessageId> {
        self.receipt.as_ref()
    }

    /// Stops recording deliveries (the home shard decided the message is not tracked).
    pub fn untrack(&mut self) {
        self.receipt = None;
    }
}
